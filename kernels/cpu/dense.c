/* kernels/cpu/dense.c — the dense transformer ops of the CPU backend: embedding,
 * linear (cblas GEMM), RMSNorm, LayerNorm (each also fused with the residual add
 * before it), QK-norm and RoPE.
 *
 * Conventions: every pointer is `real` (A = R on the CPU), rows are token rows
 * n = b*T + t, row-major. Activation grads are written (=) unless `accum` asks
 * for +=; parameter grads always accumulate (+=). Parameter-grad reductions over
 * rows run in a fixed order (per column stripe, or per fixed row block reduced
 * in block order), so results do not depend on the thread count. Statistics
 * (mean square, mean, variance) are summed in double even in the fp32 build.
 */
#include <cblas.h>
#include <stdlib.h>
#include <string.h>
#include <tgmath.h>

#include "kernels/cpu/cpu.h"

#ifdef HK_CPU_F64
#define GEMM_R cblas_dgemm
#else
#define GEMM_R cblas_sgemm
#endif

#define COL_STRIPE 64  /* columns per task in column-parallel parameter-grad sums */
#define ROW_BLOCK 64   /* rows per partial in row-block parameter-grad sums */
#define PAR_MIN 16384  /* below this many elements a loop runs on one thread */
/* RMSNorm streams its rows once or twice for a few flops per element: below this many
 * elements (~1-2 ms on one core) a team fork costs more than it saves on a loaded machine,
 * where a join can wait a scheduler slice (measured ~7 ms per fork at load 6 on 2 cores). */
#define NORM_PAR_MIN (1 << 20)

/* names: what a, b, c are, e.g. "N, C, OC" (pass 1 for an unused slot). */
static int dims_positive(hk_backend *hk, const char *op, const char *names, int a, int b, int c) {
    if (a > 0 && b > 0 && c > 0) return 1;
    CPU_FN(fail)(hk, HLAB_EINVAL, "%s: sizes (%s) = (%d, %d, %d) (expected all > 0)", op, names, a, b, c);
    return 0;
}

/* ---- embedding --------------------------------------------------------------- */

void CPU_FN(embedding_fwd)(hk_backend *hk, void *out_, const int32_t *tokens, const void *wte_, int N, int C) {
    if (!dims_positive(hk, "embedding_fwd", "N, C, -", N, C, 1)) return;
    real *out = out_;
    const real *wte = wte_;
    int bad = -1;
    #pragma omp parallel for reduction(max : bad) if ((size_t)N * C >= PAR_MIN)
    for (int n = 0; n < N; n++) {
        if (tokens[n] < 0) {
            bad = n;
            continue;
        }
        memcpy(out + (size_t)n * C, wte + (size_t)tokens[n] * C, (size_t)C * sizeof(real));
    }
    if (bad >= 0) CPU_FN(fail)(hk, HLAB_EINVAL, "embedding_fwd: token %d at row %d (expected >= 0)", tokens[bad], bad);
}

/* Parallel over column stripes so that repeated tokens never race. */
void CPU_FN(embedding_bwd)(hk_backend *hk, void *dwte_, const void *dout_, const int32_t *tokens, int N, int C) {
    if (!dims_positive(hk, "embedding_bwd", "N, C, -", N, C, 1)) return;
    real *dwte = dwte_;
    const real *dout = dout_;
    const int stripes = (C + COL_STRIPE - 1) / COL_STRIPE;
    #pragma omp parallel for if ((size_t)N * C >= PAR_MIN)
    for (int s = 0; s < stripes; s++) {
        const int c0 = s * COL_STRIPE, c1 = c0 + COL_STRIPE < C ? c0 + COL_STRIPE : C;
        for (int n = 0; n < N; n++) {
            if (tokens[n] < 0) continue;
            real *dst = dwte + (size_t)tokens[n] * C;
            const real *src = dout + (size_t)n * C;
            for (int c = c0; c < c1; c++) dst[c] += src[c];
        }
    }
}

/* ---- linear ---------------------------------------------------------------------- */

void CPU_FN(matmul_fwd)(hk_backend *hk, void *out_, const void *inp, const void *w, const void *bias_, int N, int C,
                        int OC) {
    if (!dims_positive(hk, "matmul_fwd", "N, C, OC", N, C, OC)) return;
    real *out = out_;
    const real *bias = bias_;
    real beta = 0;
    if (bias) {
        #pragma omp parallel for if ((size_t)N * OC >= PAR_MIN)
        for (int n = 0; n < N; n++) memcpy(out + (size_t)n * OC, bias, (size_t)OC * sizeof(real));
        beta = 1;
    }
    GEMM_R(CblasRowMajor, CblasNoTrans, CblasTrans, N, OC, C, 1, inp, C, w, C, beta, out, OC);
}

void CPU_FN(matmul_bwd)(hk_backend *hk, void *dinp, void *dw, void *dbias_, const void *dout_, const void *inp,
                        const void *w, int N, int C, int OC, int accum) {
    if (!dims_positive(hk, "matmul_bwd", "N, C, OC", N, C, OC)) return;
    const real *dout = dout_;
    /* dinp[N,C] (=/+=) dout[N,OC] · w[OC,C] */
    if (dinp) GEMM_R(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, C, OC, 1, dout, OC, w, C, accum ? 1 : 0, dinp, C);
    /* dw[OC,C] += doutᵀ · inp */
    if (dw) GEMM_R(CblasRowMajor, CblasTrans, CblasNoTrans, OC, C, N, 1, dout, OC, inp, C, 1, dw, C);
    if (dbias_) {
        real *dbias = dbias_;
        const int stripes = (OC + COL_STRIPE - 1) / COL_STRIPE;
        #pragma omp parallel for if ((size_t)N * OC >= PAR_MIN)
        for (int s = 0; s < stripes; s++) {
            const int o0 = s * COL_STRIPE, o1 = o0 + COL_STRIPE < OC ? o0 + COL_STRIPE : OC;
            for (int n = 0; n < N; n++) {
                const real *row = dout + (size_t)n * OC;
                for (int o = o0; o < o1; o++) dbias[o] += row[o];
            }
        }
    }
}

/* ---- RMSNorm ------------------------------------------------------------------- */

/* One row: the unfused op and the fused residual-add variant share it, so they agree bit for bit. */
static inline void rmsnorm_row(real *y, real *rstd, const real *x, const real *w, int C, float eps) {
    double ss = 0;
    for (int c = 0; c < C; c++) ss += (double)x[c] * x[c];
    const real r = (real)(1.0 / sqrt(ss / C + (double)eps));
    *rstd = r;
    for (int c = 0; c < C; c++) y[c] = x[c] * r * w[c];
}

void CPU_FN(rmsnorm_fwd)(hk_backend *hk, void *out_, void *rstd_, const void *inp_, const void *w_, int N, int C,
                         float eps) {
    if (!dims_positive(hk, "rmsnorm_fwd", "N, C, -", N, C, 1)) return;
    real *out = out_, *rstd = rstd_;
    const real *inp = inp_, *w = w_;
    #pragma omp parallel for if ((size_t)N * C >= NORM_PAR_MIN)
    for (int n = 0; n < N; n++) rmsnorm_row(out + (size_t)n * C, rstd + n, inp + (size_t)n * C, w, C, eps);
}

/* The row's sum is written first and the norm reads it back: the statistics see the
 * stored (rounded) residual, exactly as add() followed by rmsnorm_fwd(). */
void CPU_FN(add_rmsnorm_fwd)(hk_backend *hk, void *res_out_, void *out_, void *rstd_, const void *res_in_,
                             const void *x_, const void *w_, int N, int C, float eps) {
    if (!dims_positive(hk, "add_rmsnorm_fwd", "N, C, -", N, C, 1)) return;
    real *res_out = res_out_, *out = out_, *rstd = rstd_;
    const real *res_in = res_in_, *x = x_, *w = w_;
    #pragma omp parallel for if ((size_t)N * C >= NORM_PAR_MIN)
    for (int n = 0; n < N; n++) {
        const size_t off = (size_t)n * C;
        real *h = res_out + off;
        for (int c = 0; c < C; c++) h[c] = res_in[off + c] + x[off + c];
        rmsnorm_row(out + off, rstd + n, h, w, C, eps);
    }
}

/* y = x r w, r = (mean x² + eps)^(-1/2):
 *   dx_c = r w_c dy_c − x_c r³/C Σ_j dy_j w_j x_j ;  dw_c += Σ_n dy_c x_c r */
void CPU_FN(rmsnorm_bwd)(hk_backend *hk, void *dinp_, void *dw_, const void *dout_, const void *inp_, const void *w_,
                         const void *rstd_, int N, int C, int accum) {
    if (!dims_positive(hk, "rmsnorm_bwd", "N, C, -", N, C, 1)) return;
    real *dinp = dinp_, *dw = dw_;
    const real *dout = dout_, *inp = inp_, *w = w_, *rstd = rstd_;
    if (dinp) {
        #pragma omp parallel for if ((size_t)N * C >= NORM_PAR_MIN)
        for (int n = 0; n < N; n++) {
            const real *x = inp + (size_t)n * C, *dy = dout + (size_t)n * C;
            real *dx = dinp + (size_t)n * C;
            const real r = rstd[n];
            double dot = 0;
            for (int c = 0; c < C; c++) dot += (double)dy[c] * w[c] * x[c];
            const real k = (real)(dot * r * r * r / C);
            if (accum)
                for (int c = 0; c < C; c++) dx[c] += r * w[c] * dy[c] - x[c] * k;
            else
                for (int c = 0; c < C; c++) dx[c] = r * w[c] * dy[c] - x[c] * k;
        }
    }
    if (dw) {
        const int stripes = (C + COL_STRIPE - 1) / COL_STRIPE;
        #pragma omp parallel for if ((size_t)N * C >= NORM_PAR_MIN)
        for (int s = 0; s < stripes; s++) {
            const int c0 = s * COL_STRIPE, c1 = c0 + COL_STRIPE < C ? c0 + COL_STRIPE : C;
            for (int n = 0; n < N; n++) {
                const real *x = inp + (size_t)n * C, *dy = dout + (size_t)n * C;
                const real r = rstd[n];
                for (int c = c0; c < c1; c++) dw[c] += dy[c] * x[c] * r;
            }
        }
    }
}

/* ---- LayerNorm ------------------------------------------------------------------- */

static inline void layernorm_row(real *y, real *mean, real *rstd, const real *x, const real *w, const real *b, int C,
                                 float eps) {
    double s = 0;
    for (int c = 0; c < C; c++) s += x[c];
    const double mu = s / C;
    double v = 0;
    for (int c = 0; c < C; c++) v += ((double)x[c] - mu) * ((double)x[c] - mu);
    const real r = (real)(1.0 / sqrt(v / C + (double)eps)), m = (real)mu;
    *mean = m;
    *rstd = r;
    for (int c = 0; c < C; c++) y[c] = (x[c] - m) * r * w[c] + (b ? b[c] : 0);
}

void CPU_FN(layernorm_fwd)(hk_backend *hk, void *out_, void *mean_, void *rstd_, const void *inp_, const void *w_,
                           const void *b_, int N, int C, float eps) {
    if (!dims_positive(hk, "layernorm_fwd", "N, C, -", N, C, 1)) return;
    real *out = out_, *mean = mean_, *rstd = rstd_;
    const real *inp = inp_, *w = w_, *b = b_;
    #pragma omp parallel for if ((size_t)N * C >= PAR_MIN)
    for (int n = 0; n < N; n++)
        layernorm_row(out + (size_t)n * C, mean + n, rstd + n, inp + (size_t)n * C, w, b, C, eps);
}

void CPU_FN(add_layernorm_fwd)(hk_backend *hk, void *res_out_, void *out_, void *mean_, void *rstd_,
                               const void *res_in_, const void *x_, const void *w_, const void *b_, int N, int C,
                               float eps) {
    if (!dims_positive(hk, "add_layernorm_fwd", "N, C, -", N, C, 1)) return;
    real *res_out = res_out_, *out = out_, *mean = mean_, *rstd = rstd_;
    const real *res_in = res_in_, *x = x_, *w = w_, *b = b_;
    #pragma omp parallel for if ((size_t)N * C >= PAR_MIN)
    for (int n = 0; n < N; n++) {
        const size_t off = (size_t)n * C;
        real *h = res_out + off;
        for (int c = 0; c < C; c++) h[c] = res_in[off + c] + x[off + c];
        layernorm_row(out + off, mean + n, rstd + n, h, w, b, C, eps);
    }
}

/* x̂ = (x − μ) r, g = dy w:  dx = r (g − mean(g) − x̂ mean(g x̂)); dw += dy x̂; db += dy */
void CPU_FN(layernorm_bwd)(hk_backend *hk, void *dinp_, void *dw_, void *db_, const void *dout_, const void *inp_,
                           const void *w_, const void *mean_, const void *rstd_, int N, int C, int accum) {
    if (!dims_positive(hk, "layernorm_bwd", "N, C, -", N, C, 1)) return;
    real *dinp = dinp_, *dw = dw_, *db = db_;
    const real *dout = dout_, *inp = inp_, *w = w_, *mean = mean_, *rstd = rstd_;
    if (dinp) {
        #pragma omp parallel for if ((size_t)N * C >= PAR_MIN)
        for (int n = 0; n < N; n++) {
            const real *x = inp + (size_t)n * C, *dy = dout + (size_t)n * C;
            real *dx = dinp + (size_t)n * C;
            const real m = mean[n], r = rstd[n];
            double sg = 0, sgx = 0;
            for (int c = 0; c < C; c++) {
                const double g = (double)dy[c] * w[c];
                sg += g;
                sgx += g * ((x[c] - m) * r);
            }
            const real mg = (real)(sg / C), mgx = (real)(sgx / C);
            for (int c = 0; c < C; c++) {
                const real d = r * (dy[c] * w[c] - mg - (x[c] - m) * r * mgx);
                dx[c] = accum ? dx[c] + d : d;
            }
        }
    }
    if (dw || db) {
        const int stripes = (C + COL_STRIPE - 1) / COL_STRIPE;
        #pragma omp parallel for if ((size_t)N * C >= PAR_MIN)
        for (int s = 0; s < stripes; s++) {
            const int c0 = s * COL_STRIPE, c1 = c0 + COL_STRIPE < C ? c0 + COL_STRIPE : C;
            for (int n = 0; n < N; n++) {
                const real *x = inp + (size_t)n * C, *dy = dout + (size_t)n * C;
                const real m = mean[n], r = rstd[n];
                if (dw)
                    for (int c = c0; c < c1; c++) dw[c] += dy[c] * (x[c] - m) * r;
                if (db)
                    for (int c = c0; c < c1; c++) db[c] += dy[c];
            }
        }
    }
}

/* ---- QK-norm: RMSNorm over dh on every q and k head of packed qkv ----------------- */

void CPU_FN(qknorm_fwd)(hk_backend *hk, void *out_, void *rstd_, const void *inp_, const void *wq_, const void *wk_,
                        int N, int Hq, int Hkv, int dh, float eps) {
    if (!dims_positive(hk, "qknorm_fwd", "N, Hq, Hkv", N, Hq, Hkv) ||
        !dims_positive(hk, "qknorm_fwd", "dh, -, -", dh, 1, 1))
        return;
    real *out = out_, *rstd = rstd_;
    const real *inp = inp_, *wq = wq_, *wk = wk_;
    const int H = Hq + Hkv, W = (Hq + 2 * Hkv) * dh;
    #pragma omp parallel for if ((size_t)N * W >= PAR_MIN)
    for (int n = 0; n < N; n++) {
        const real *xr = inp + (size_t)n * W;
        real *yr = out + (size_t)n * W;
        for (int h = 0; h < H; h++) {
            const real *x = xr + (size_t)h * dh, *w = h < Hq ? wq : wk;
            real *y = yr + (size_t)h * dh;
            double ss = 0;
            for (int i = 0; i < dh; i++) ss += (double)x[i] * x[i];
            const real r = (real)(1.0 / sqrt(ss / dh + (double)eps));
            rstd[(size_t)n * H + h] = r;
            for (int i = 0; i < dh; i++) y[i] = x[i] * r * w[i];
        }
        memcpy(yr + (size_t)H * dh, xr + (size_t)H * dh, (size_t)Hkv * dh * sizeof(real));
    }
}

/* dwq, dwk: each fixed block of ROW_BLOCK rows sums into its own partial, and
 * the partials are reduced in block order (thread-count independent). */
void CPU_FN(qknorm_bwd)(hk_backend *hk, void *dinp_, void *dwq_, void *dwk_, const void *dout_, const void *inp_,
                        const void *wq_, const void *wk_, const void *rstd_, int N, int Hq, int Hkv, int dh) {
    if (!dims_positive(hk, "qknorm_bwd", "N, Hq, Hkv", N, Hq, Hkv) ||
        !dims_positive(hk, "qknorm_bwd", "dh, -, -", dh, 1, 1))
        return;
    real *dinp = dinp_, *dwq = dwq_, *dwk = dwk_;
    const real *dout = dout_, *inp = inp_, *wq = wq_, *wk = wk_, *rstd = rstd_;
    const int H = Hq + Hkv, W = (Hq + 2 * Hkv) * dh;
    const int nblocks = (N + ROW_BLOCK - 1) / ROW_BLOCK;
    real *partial = calloc((size_t)nblocks * 2 * dh, sizeof(real));
    if (!partial) {
        CPU_FN(fail)(hk, HLAB_ENOMEM, "qknorm_bwd: out of host memory for %d partial sums", nblocks * 2 * dh);
        return;
    }
    #pragma omp parallel for if ((size_t)N * W >= PAR_MIN)
    for (int blk = 0; blk < nblocks; blk++) {
        real *pq = partial + (size_t)blk * 2 * dh, *pk = pq + dh;
        const int n1 = (blk + 1) * ROW_BLOCK < N ? (blk + 1) * ROW_BLOCK : N;
        for (int n = blk * ROW_BLOCK; n < n1; n++) {
            const real *xr = inp + (size_t)n * W, *dyr = dout + (size_t)n * W;
            real *dxr = dinp + (size_t)n * W;
            for (int h = 0; h < H; h++) {
                const real *x = xr + (size_t)h * dh, *dy = dyr + (size_t)h * dh, *w = h < Hq ? wq : wk;
                real *dx = dxr + (size_t)h * dh, *pw = h < Hq ? pq : pk;
                const real r = rstd[(size_t)n * H + h];
                double dot = 0;
                for (int i = 0; i < dh; i++) dot += (double)dy[i] * w[i] * x[i];
                const real k = (real)(dot * r * r * r / dh);
                for (int i = 0; i < dh; i++) {
                    dx[i] = r * w[i] * dy[i] - x[i] * k;
                    pw[i] += dy[i] * x[i] * r;
                }
            }
            memcpy(dxr + (size_t)H * dh, dyr + (size_t)H * dh, (size_t)Hkv * dh * sizeof(real));
        }
    }
    for (int blk = 0; blk < nblocks; blk++) {
        const real *pq = partial + (size_t)blk * 2 * dh, *pk = pq + dh;
        for (int i = 0; i < dh; i++) {
            dwq[i] += pq[i];
            dwk[i] += pk[i];
        }
    }
    free(partial);
}

/* ---- RoPE ("rotate half": pairs (i, i + dh/2), angle t·theta^(−2i/dh)) --------------- */

/* sign = +1 rotates forward, −1 applies the inverse rotation (the backward). */
static void rope_apply(hk_backend *hk, const char *op, real *out, const real *inp, int B, int T, int Hq, int Hkv,
                       int dh, float theta, real sign) {
    if (!dims_positive(hk, op, "B, T, dh", B, T, dh) || !dims_positive(hk, op, "Hq, Hkv, -", Hq, Hkv, 1)) return;
    if (dh % 2) {
        CPU_FN(fail)(hk, HLAB_EINVAL, "%s: head dim %d is odd (expected even)", op, dh);
        return;
    }
    const int half = dh / 2, Hrot = Hq + Hkv, W = (Hq + 2 * Hkv) * dh;
    const int N = B * T;
    real *cs = malloc((size_t)T * half * 2 * sizeof(real));
    if (!cs) {
        CPU_FN(fail)(hk, HLAB_ENOMEM, "%s: out of host memory for a %d x %d angle table", op, T, half);
        return;
    }
    for (int t = 0; t < T; t++)
        for (int i = 0; i < half; i++) {
            const double ang = (double)t * pow((double)theta, -2.0 * i / dh);
            cs[((size_t)t * half + i) * 2] = (real)cos(ang);
            cs[((size_t)t * half + i) * 2 + 1] = sign * (real)sin(ang);
        }
    #pragma omp parallel for if ((size_t)N * W >= PAR_MIN)
    for (int n = 0; n < N; n++) {
        const real *xr = inp + (size_t)n * W, *tab = cs + (size_t)(n % T) * half * 2;
        real *yr = out + (size_t)n * W;
        for (int h = 0; h < Hrot; h++) {
            const real *x = xr + (size_t)h * dh;
            real *y = yr + (size_t)h * dh;
            for (int i = 0; i < half; i++) {
                const real c = tab[2 * i], s = tab[2 * i + 1];
                const real x1 = x[i], x2 = x[i + half];
                y[i] = x1 * c - x2 * s;
                y[i + half] = x2 * c + x1 * s;
            }
        }
        if (yr != xr) memcpy(yr + (size_t)Hrot * dh, xr + (size_t)Hrot * dh, (size_t)Hkv * dh * sizeof(real));
    }
    free(cs);
}

void CPU_FN(rope_fwd)(hk_backend *hk, void *out, const void *inp, int B, int T, int Hq, int Hkv, int dh, float theta) {
    rope_apply(hk, "rope_fwd", out, inp, B, T, Hq, Hkv, dh, theta, 1);
}

void CPU_FN(rope_bwd)(hk_backend *hk, void *dinp, const void *dout, int B, int T, int Hq, int Hkv, int dh,
                      float theta) {
    rope_apply(hk, "rope_bwd", dinp, dout, B, T, Hq, Hkv, dh, theta, -1);
}
