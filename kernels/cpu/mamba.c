/* kernels/cpu/mamba.c — the Mamba-2 elementwise-ish ops of the CPU backend:
 * causal depthwise conv1d + bias + SiLU, and the grouped gated RMSNorm.
 * (The SSD scan itself lives in ssd.c.)
 *
 * Conventions: activations [B, T, C] row-major with the channel contiguous;
 * activation grads are written (=), parameter grads accumulated (+=). Parameter
 * grads are summed through per-batch / per-row-block partials reduced in a fixed
 * order, so results are bit-identical whatever the thread count.
 */
#include <stdlib.h>
#include <string.h>
#include <tgmath.h>

#include "kernels/cpu/cpu.h"

/* Below this many elements an op runs on the calling thread: an OpenMP team costs more. */
#define MAMBA_PAR_MIN 32768

static inline real mamba_sigmoid(real u) {
    if (u >= 0) return 1 / (1 + exp(-u));
    real e = exp(u);
    return e / (1 + e);
}

/* ---- causal depthwise conv1d + SiLU ------------------------------------------ */

static int conv_dims_ok(hk_backend *hk, const char *op, int B, int T, int Cc, int K) {
    if (B <= 0 || T <= 0 || Cc <= 0 || K <= 0) {
        CPU_FN(fail)(hk, HLAB_EINVAL, "%s: bad dims B=%d T=%d Cc=%d K=%d (expected all > 0)", op, B, T, Cc, K);
        return 0;
    }
    return 1;
}

/* Taps transposed to [K][Cc] (wT[j*Cc + c] = w[c*K + j]) so the per-tap loops run over
 * contiguous channels and vectorise. NULL when out of memory. */
static real *conv_taps_transposed(const real *w, int Cc, int K) {
    real *wT = malloc(sizeof(real) * (size_t)Cc * K);
    if (wT)
        for (int c = 0; c < Cc; c++)
            for (int j = 0; j < K; j++) wT[(size_t)j * Cc + c] = w[(size_t)c * K + j];
    return wT;
}

/* pre[b,t,c] = bias[c] + Σ_{j<K} w[c,j] inp[b, t−(K−1)+j, c], zero before t = 0: one row
 * (b, t) into o[0..Cc), the taps summed in order j = 0..K−1 */
static inline void conv_pre_row(real *restrict o, const real *inp_b, const real *wT, const real *bias, int t, int Cc,
                                int K) {
    memcpy(o, bias, sizeof(real) * Cc);
    for (int j = 0; j < K; j++) {
        const int s_t = t - (K - 1) + j;
        if (s_t < 0) continue;
        const real *restrict x = inp_b + (size_t)s_t * Cc, *restrict wj = wT + (size_t)j * Cc;
        for (int c = 0; c < Cc; c++) o[c] += wj[c] * x[c];
    }
}

void CPU_FN(conv1d_silu_fwd)(hk_backend *hk, void *out_, const void *inp_, const void *w_, const void *b_, int B,
                             int T, int Cc, int K) {
    if (!conv_dims_ok(hk, "conv1d_silu_fwd", B, T, Cc, K)) return;
    real *out = out_;
    const real *inp = inp_, *w = w_, *bias = b_;
    real *wT = conv_taps_transposed(w, Cc, K);
    if (!wT) {
        CPU_FN(fail)(hk, HLAB_ENOMEM, "conv1d_silu_fwd: out of host memory for %d x %d taps", Cc, K);
        return;
    }
#pragma omp parallel for collapse(2) schedule(static) if ((size_t)B * T * Cc >= MAMBA_PAR_MIN)
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            real *o = out + ((size_t)b * T + t) * Cc;
            conv_pre_row(o, inp + (size_t)b * T * Cc, wT, bias, t, Cc, K);
            for (int c = 0; c < Cc; c++) o[c] *= mamba_sigmoid(o[c]);
        }
    }
    free(wT);
}

/* dpre = dout · SiLU'(pre), SiLU'(x) = σ(x)(1 + x(1 − σ(x))); dinp[s] = Σ_j w[j] dpre[s + K−1−j]. */
void CPU_FN(conv1d_silu_bwd)(hk_backend *hk, void *dinp_, void *dw_, void *db_, const void *dout_, const void *inp_,
                             const void *w_, const void *b_, int B, int T, int Cc, int K) {
    if (!conv_dims_ok(hk, "conv1d_silu_bwd", B, T, Cc, K)) return;
    real *dinp = dinp_, *dw = dw_, *db = db_;
    const real *dout = dout_, *inp = inp_, *w = w_, *bias = b_;
    /* per-batch partial: dw transposed [K][Cc] (contiguous over channels), then db [Cc] */
    const size_t PK = (size_t)Cc * (K + 1);
    real *dpre = malloc(sizeof(real) * (size_t)B * T * Cc);
    real *part = calloc((size_t)B * PK, sizeof(real));
    real *wT = conv_taps_transposed(w, Cc, K);
    if (!dpre || !part || !wT) {
        free(dpre);
        free(part);
        free(wT);
        CPU_FN(fail)(hk, HLAB_ENOMEM, "conv1d_silu_bwd: out of host memory for %d x %d x %d scratch", B, T, Cc);
        return;
    }
#pragma omp parallel for collapse(2) schedule(static) if ((size_t)B * T * Cc >= MAMBA_PAR_MIN)
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            const size_t r = ((size_t)b * T + t) * Cc;
            real *dp = dpre + r;
            conv_pre_row(dp, inp + (size_t)b * T * Cc, wT, bias, t, Cc, K); /* pre, then dpre in place */
            for (int c = 0; c < Cc; c++) {
                const real pre = dp[c], s = mamba_sigmoid(pre);
                dp[c] = dout[r + c] * s * (1 + pre * (1 - s));
            }
        }
    }
#pragma omp parallel for schedule(static) if ((size_t)B * T * Cc >= MAMBA_PAR_MIN)
    for (int b = 0; b < B; b++) {
        const real *inp_b = inp + (size_t)b * T * Cc, *dpre_b = dpre + (size_t)b * T * Cc;
        real *dinp_b = dinp + (size_t)b * T * Cc, *pw = part + (size_t)b * PK, *pb = pw + (size_t)Cc * K;
        for (int s_t = 0; s_t < T; s_t++) {
            real *restrict di = dinp_b + (size_t)s_t * Cc;
            for (int c = 0; c < Cc; c++) di[c] = 0;
            for (int j = 0; j < K; j++) {
                const int t = s_t + (K - 1) - j; /* output row that reads inp row s_t through tap j */
                if (t >= T) continue;
                const real *restrict dp = dpre_b + (size_t)t * Cc, *restrict wj = wT + (size_t)j * Cc;
                for (int c = 0; c < Cc; c++) di[c] += wj[c] * dp[c];
            }
        }
        for (int t = 0; t < T; t++) {
            const real *restrict dp = dpre_b + (size_t)t * Cc;
            for (int c = 0; c < Cc; c++) pb[c] += dp[c];
            for (int j = 0; j < K; j++) {
                const int s_t = t - (K - 1) + j;
                if (s_t < 0) continue;
                const real *restrict x = inp_b + (size_t)s_t * Cc;
                real *restrict pwj = pw + (size_t)j * Cc;
                for (int c = 0; c < Cc; c++) pwj[c] += dp[c] * x[c];
            }
        }
    }
    for (int b = 0; b < B; b++) {
        const real *pw = part + (size_t)b * PK, *pb = pw + (size_t)Cc * K;
        for (int c = 0; c < Cc; c++)
            for (int j = 0; j < K; j++) dw[(size_t)c * K + j] += pw[(size_t)j * Cc + c];
        for (int c = 0; c < Cc; c++) db[c] += pb[c];
    }
    free(dpre);
    free(part);
    free(wT);
}

/* ---- grouped gated RMSNorm ------------------------------------------------------ */

static int gnorm_dims_ok(hk_backend *hk, const char *op, int N, int Di, int G) {
    if (N <= 0 || Di <= 0 || G <= 0 || Di % G != 0) {
        CPU_FN(fail)(hk, HLAB_EINVAL, "%s: bad dims N=%d Di=%d G=%d (expected all > 0 and Di %% G == 0)", op, N, Di, G);
        return 0;
    }
    return 1;
}

void CPU_FN(gated_rmsnorm_fwd)(hk_backend *hk, void *out_, void *rstd_, const void *y_, const void *z_,
                               const void *w_, int N, int Di, int G, float eps) {
    if (!gnorm_dims_ok(hk, "gated_rmsnorm_fwd", N, Di, G)) return;
    real *out = out_, *rstd = rstd_;
    const real *y = y_, *z = z_, *w = w_;
    const int Dg = Di / G;
#pragma omp parallel for schedule(static) if ((size_t)N * Di >= MAMBA_PAR_MIN)
    for (int n = 0; n < N; n++) {
        const real *yr = y + (size_t)n * Di, *zr = z + (size_t)n * Di;
        real *o = out + (size_t)n * Di;
        for (int g = 0; g < G; g++) {
            real ss = 0;
            for (int k = g * Dg; k < (g + 1) * Dg; k++) {
                const real gate = yr[k] * zr[k] * mamba_sigmoid(zr[k]);
                o[k] = gate; /* g kept in out until rstd is known */
                ss += gate * gate;
            }
            const real r = 1 / sqrt(ss / Dg + (real)eps);
            rstd[(size_t)n * G + g] = r;
            for (int k = g * Dg; k < (g + 1) * Dg; k++) o[k] *= r * w[k];
        }
    }
}

/* Per group, with ĝ = g·rstd: dg = rstd·(w⊙dout − ĝ · mean(w⊙dout⊙ĝ)); dw += dout⊙ĝ;
 * then dy = dg·SiLU(z), dz = dg·y·SiLU'(z). */
void CPU_FN(gated_rmsnorm_bwd)(hk_backend *hk, void *dy_, void *dz_, void *dw_, const void *dout_, const void *y_,
                               const void *z_, const void *w_, const void *rstd_, int N, int Di, int G) {
    if (!gnorm_dims_ok(hk, "gated_rmsnorm_bwd", N, Di, G)) return;
    real *dy = dy_, *dz = dz_, *dw = dw_;
    const real *dout = dout_, *y = y_, *z = z_, *w = w_, *rstd = rstd_;
    const int Dg = Di / G;
    /* a fixed number of row blocks, not of threads, keeps the dw sum order fixed */
    const int nblocks = N < 64 ? N : 64;
    real *part = calloc((size_t)nblocks * Di, sizeof(real));
    if (!part) {
        CPU_FN(fail)(hk, HLAB_ENOMEM, "gated_rmsnorm_bwd: out of host memory for %d x %d partials", nblocks, Di);
        return;
    }
#pragma omp parallel for schedule(static) if ((size_t)N * Di >= MAMBA_PAR_MIN)
    for (int blk = 0; blk < nblocks; blk++) {
        real *pw = part + (size_t)blk * Di;
        const int n0 = (int)((long long)N * blk / nblocks), n1 = (int)((long long)N * (blk + 1) / nblocks);
        for (int n = n0; n < n1; n++) {
            const real *yr = y + (size_t)n * Di, *zr = z + (size_t)n * Di, *dor = dout + (size_t)n * Di;
            real *dyr = dy + (size_t)n * Di, *dzr = dz + (size_t)n * Di;
            for (int g = 0; g < G; g++) {
                const real r = rstd[(size_t)n * G + g];
                real dot = 0; /* Σ w·dout·ĝ over the group */
                for (int k = g * Dg; k < (g + 1) * Dg; k++) {
                    const real gh = yr[k] * zr[k] * mamba_sigmoid(zr[k]) * r;
                    dot += w[k] * dor[k] * gh;
                    pw[k] += dor[k] * gh;
                }
                const real mean = dot / Dg;
                for (int k = g * Dg; k < (g + 1) * Dg; k++) {
                    const real s = mamba_sigmoid(zr[k]), silu = zr[k] * s;
                    const real gh = yr[k] * silu * r;
                    const real dg = r * (w[k] * dor[k] - gh * mean);
                    dyr[k] = dg * silu;
                    dzr[k] = dg * yr[k] * s * (1 + zr[k] * (1 - s));
                }
            }
        }
    }
    for (int blk = 0; blk < nblocks; blk++)
        for (int k = 0; k < Di; k++) dw[k] += part[(size_t)blk * Di + k];
    free(part);
}
