/* kernels/cpu/ssd.c — the Mamba-2 SSD scan on the CPU, forward and exact backward:
 * the chunked state-space-duality form (the training kernel) and the plain
 * sequential recurrence (the reference the tests hold the chunked form to).
 *
 * Conventions. xbc row n = b*T + t holds [x (H·P) | B (G·N) | C (G·N)]; head h
 * reads group g = h / (H/G). Per head: Δ_t = softplus(dt_t + dt_bias), A = −exp(A_log),
 * a_t = Δ_t·A (log-decay, ≤ 0). Within a chunk, cum_i = a_{t0} + … + a_{t0+i}, and every
 * decay is exp(cum_i − cum_j) with j ≤ i (an exponent ≤ 0, never a quotient of exps).
 * Chunk c (rows t0 .. t0+L−1, L ≤ Q) with entering state S_in (P×N):
 *   y_i   = Σ_{j≤i} (C_i·B_j) e^{cum_i−cum_j} Δ_j x_j  +  e^{cum_i} S_in C_i  +  D x_i
 *   S_out = e^{cum_{L−1}} S_in + Σ_j e^{cum_{L−1}−cum_j} Δ_j x_j B_jᵀ
 * fwd stores each chunk's S_in in `states`; bwd walks the chunks in reverse, carrying
 * dS_out, and differentiates exactly these formulas (the scores recomputed).
 *
 * Loop order: batch row, chunk, group, head. C·Bᵀ of a chunk is formed once per group
 * and shared by its heads; in bwd its gradient (dscore) is summed over the heads
 * first, so dC, dB through C·Bᵀ are two GEMMs per group, not per head.
 *
 * Threads: one OpenMP team per call, over batch rows (each row's chunks are a
 * sequential state recurrence; its heads share dB/dC, so a row is one task). The
 * GEMMs inside run on their task's thread: OpenBLAS (the OpenMP build) goes single-
 * threaded inside a parallel region. One fork per call instead of one OpenBLAS fork
 * per small GEMM (thousands per step, each a chance to wait on a descheduled thread
 * of a loaded machine: measured 10-40x slower end to end). Every row's arithmetic
 * is the same whatever the thread count, and the per-row parameter-grad partials are
 * reduced in row order, so results are bit-identical for any thread count.
 * The sequential reference runs OpenMP over (batch, head) in fwd, over batch in bwd
 * (both only from SSD_PAR_MIN of work, like the chunked form).
 *
 * FLOPs per token of the chunked algorithm (2 per multiply-accumulate), T a multiple
 * of Q. The GEMMs compute full Q×Q score blocks (the upper triangle is zeros):
 *   forward  = 2·G·Q·N          scores C·Bᵀ, once per group
 *            + 2·H·Q·P          scores·x (intra-chunk output)
 *            + 2·H·P·N          inter-chunk output C·S_inᵀ
 *            + 2·H·P·N          chunk state (diag(w) x)ᵀ·B
 *            [+ H·P·N/Q         state passing: the P×N state scaled by its chunk decay]
 *            = 2·G·Q·N + 2·H·(Q·P + 2·P·N)
 *   backward = 6·G·Q·N          C·Bᵀ recomputed; dC += dscore·B, dB += dscoreᵀ·C (per group)
 *            + 4·H·Q·P          dM = dy·xᵀ, dx += Mᵀ·dy
 *            + 8·H·P·N          dy·S_in, (e∘dy)ᵀ·C → dS_in, B·dSᵀ, (w∘x)·dS → dB
 *            [+ 2·H·P·N/Q       ⟨dS, S_in⟩ and the dS decay-scale, once per chunk]
 *            = 6·G·Q·N + 4·H·Q·P + 8·H·P·N
 * For general T replace Q by Σ_c L_c² / T over the chunk lengths L_c (and 1/Q by
 * nchunks/T); for T ≤ Q the effective Q is T. The bracketed terms are elementwise.
 * The sequential reference costs 2·H·2·P·N forward.
 * Elementwise work per chunk and head: L(L+1)/2 exps for the decays (fwd and bwd).
 */
#include <stdlib.h>
#include <string.h>
#include <tgmath.h>

#include <cblas.h>

#include "kernels/cpu/cpu.h"

/* Below this much work (B·T·H·P·N, the state updates) a call runs on the calling thread:
 * a team fork costs more than such a problem, and far more on a loaded machine. */
#define SSD_PAR_MIN (1 << 15)

#ifdef HK_CPU_F64
#define SSD_GEMM cblas_dgemm
#else
#define SSD_GEMM cblas_sgemm
#endif

static inline real ssd_softplus(real u) { return u > 0 ? u + log1p(exp(-u)) : log1p(exp(u)); }
static inline real ssd_sigmoid(real u) {
    if (u >= 0) return 1 / (1 + exp(-u));
    real e = exp(u);
    return e / (1 + e);
}

/* The simd pragmas let the compiler vectorise (and so reassociate) these reductions;
 * the order is still fixed by the code, so results stay run-to-run identical. */
static inline real ssd_dot(const real *a, const real *b, int n) {
    real s = 0;
#pragma omp simd reduction(+ : s)
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

/* y += a·x */
static inline void ssd_axpy(real *restrict y, real a, const real *restrict x, int n) {
#pragma omp simd
    for (int i = 0; i < n; i++) y[i] += a * x[i];
}

static int ssd_dims_ok(hk_backend *hk, hk_ssd_dims d, const char *op) {
    if (d.B <= 0 || d.T <= 0 || d.H <= 0 || d.P <= 0 || d.N <= 0 || d.G <= 0 || d.chunk <= 0 || d.H % d.G != 0) {
        CPU_FN(fail)(hk, HLAB_EINVAL,
                     "%s: bad dims B=%d T=%d H=%d P=%d G=%d N=%d chunk=%d (expected all > 0 and H %% G == 0)", op, d.B,
                     d.T, d.H, d.P, d.G, d.N, d.chunk);
        return 0;
    }
    return 1;
}

/* Row width of xbc and the column offsets of head h's x and group g's B and C. */
static inline size_t ssd_width(hk_ssd_dims d) { return (size_t)d.H * d.P + 2 * (size_t)d.G * d.N; }
static inline size_t ssd_boff(hk_ssd_dims d, int g) { return (size_t)d.H * d.P + (size_t)g * d.N; }
static inline size_t ssd_coff(hk_ssd_dims d, int g) { return (size_t)d.H * d.P + (size_t)(d.G + g) * d.N; }

/* ---- chunked forward ------------------------------------------------------------ */

/* Δ, raw dt + dt_bias and the inclusive cumulative log-decay of one chunk of one head. */
static void ssd_chunk_decay(const real *dt, size_t dt_stride, real bias, real A, int L, real *uraw, real *delta,
                            real *cum) {
    real run = 0;
    for (int i = 0; i < L; i++) {
        uraw[i] = dt[(size_t)i * dt_stride] + bias;
        delta[i] = ssd_softplus(uraw[i]);
        run += delta[i] * A;
        cum[i] = run;
    }
}

void CPU_FN(ssd_fwd)(hk_backend *hk, void *y_, void *states_, const void *xbc_, const void *dt_, const void *dt_bias_,
                     const void *A_log_, const void *Dskip_, hk_ssd_dims d) {
    if (!ssd_dims_ok(hk, d, "ssd_fwd")) return;
    real *y = y_, *states = states_;
    const real *xbc = xbc_, *dt = dt_, *dt_bias = dt_bias_, *A_log = A_log_, *Dskip = Dskip_;
    const int B = d.B, T = d.T, H = d.H, P = d.P, N = d.N, G = d.G, Q = d.chunk;
    const int nchunks = (T - 1) / Q + 1, heads_per_group = d.H / d.G;
    const int QL = Q < T ? Q : T; /* the longest chunk: the scratch's row count and score stride */
    const size_t W = ssd_width(d), HP = (size_t)H * P, PN = (size_t)P * N, QQ = (size_t)QL * QL;
    const size_t scratch_elems = 3 * (size_t)QL + 2 * QQ + H * PN + (size_t)QL * N + (size_t)QL * P;
    int failed = 0;
#pragma omp parallel reduction(| : failed) if (B > 1 && (double)B * T * H * P * N >= SSD_PAR_MIN)
    {
        real *scratch = malloc(sizeof(real) * scratch_elems); /* per thread */
        failed = !scratch;
        real *uraw = scratch, *delta = uraw + QL, *cum = delta + QL, *CB = cum + QL, *M = CB + QQ;
        real *S_all = M + QQ, *Ce = S_all + H * PN, *Xw = Ce + (size_t)QL * N; /* S_all: every head's state */

#pragma omp for schedule(static)
        for (int b = 0; b < B; b++) {
            if (!scratch) continue;
            memset(S_all, 0, sizeof(real) * H * PN);
            for (int c = 0; c < nchunks; c++) {
                const int t0 = c * Q, L = T - t0 < Q ? T - t0 : Q;
                const real *rows = xbc + ((size_t)b * T + t0) * W; /* chunk row i at rows + i*W */
                for (int g = 0; g < G; g++) {
                    const real *Bm = rows + ssd_boff(d, g), *Cm = rows + ssd_coff(d, g);
                    /* C Bᵀ is the same for every head of the group */
                    SSD_GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, L, L, N, 1, Cm, (int)W, Bm, (int)W, 0, CB, QL);
                    for (int h = g * heads_per_group; h < (g + 1) * heads_per_group; h++) {
                        const real A = -exp(A_log[h]);
                        const real *X = rows + (size_t)h * P;
                        real *Y = y + ((size_t)b * T + t0) * HP + (size_t)h * P, *S = S_all + h * PN;
                        memcpy(states + (((size_t)b * nchunks + c) * H + h) * PN, S, sizeof(real) * PN);
                        ssd_chunk_decay(dt + ((size_t)b * T + t0) * H + h, (size_t)H, dt_bias[h], A, L, uraw,
                                delta, cum);

                        /* scores M = (C Bᵀ) ∘ [e^{cum_i − cum_j} Δ_j for j ≤ i, exactly 0 above] */
                        for (int i = 0; i < L; i++) {
                            const real *CBi = CB + (size_t)i * QL;
                            real *Mi = M + (size_t)i * QL;
                            for (int j = 0; j <= i; j++) Mi[j] = CBi[j] * exp(cum[i] - cum[j]) * delta[j];
                            for (int j = i + 1; j < L; j++) Mi[j] = 0;
                        }
                        /* Y = M X + diag(e^{cum}) C S_inᵀ + D X */
                        for (int i = 0; i < L; i++) {
                            const real ei = exp(cum[i]);
                            for (int n = 0; n < N; n++) Ce[(size_t)i * N + n] = ei * Cm[(size_t)i * W + n];
                        }
                        SSD_GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, L, P, L, 1, M, QL, X, (int)W, 0,
                                Y, (int)HP);
                        SSD_GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, L, P, N, 1, Ce, N, S, N, 1, Y, (int)HP);
                        for (int i = 0; i < L; i++) ssd_axpy(Y + i * HP, Dskip[h], X + i * W, P);

                        /* S_out = e^{cum_last} S_in + (diag(w) X)ᵀ B, w_j = e^{cum_last − cum_j} Δ_j */
                        const real last = cum[L - 1];
                        for (int j = 0; j < L; j++) {
                            const real w = exp(last - cum[j]) * delta[j];
                            for (int p = 0; p < P; p++) Xw[(size_t)j * P + p] = w * X[(size_t)j * W + p];
                        }
                        SSD_GEMM(CblasRowMajor, CblasTrans, CblasNoTrans, P, N, L, 1, Xw, P, Bm, (int)W,
                                exp(last), S, N);
                    }
                }
            }
        }
        free(scratch);
    }
    if (failed) CPU_FN(fail)(hk, HLAB_ENOMEM, "ssd_fwd: out of host memory for the chunk scratch (chunk=%d)", Q);
}

/* ---- chunked backward ----------------------------------------------------------- */

void CPU_FN(ssd_bwd)(hk_backend *hk, void *dxbc_, void *ddt_, void *ddt_bias_, void *dA_log_, void *dDskip_,
                     const void *dy_, const void *states_, const void *xbc_, const void *dt_, const void *dt_bias_,
                     const void *A_log_, const void *Dskip_, hk_ssd_dims d) {
    if (!ssd_dims_ok(hk, d, "ssd_bwd")) return;
    real *dxbc = dxbc_, *ddt = ddt_, *ddt_bias = ddt_bias_, *dA_log = dA_log_, *dDskip = dDskip_;
    const real *dy = dy_, *states = states_, *xbc = xbc_, *dt = dt_, *dt_bias = dt_bias_, *A_log = A_log_,
               *Dskip = Dskip_;
    const int B = d.B, T = d.T, H = d.H, P = d.P, N = d.N, G = d.G, Q = d.chunk;
    const int nchunks = (T - 1) / Q + 1, heads_per_group = d.H / d.G;
    const int QL = Q < T ? Q : T; /* the longest chunk: the scratch's row count and score stride */
    const size_t W = ssd_width(d), HP = (size_t)H * P, PN = (size_t)P * N, QQ = (size_t)QL * QL;
    const size_t scratch_elems = 6 * (size_t)QL + 3 * QQ + (H + 1) * PN + (size_t)QL * N + 3 * (size_t)QL * P;
    /* per batch row and head: ddt_bias, dA, dDskip partials, reduced in row order at the end */
    real *par_all = malloc(sizeof(real) * 3 * (size_t)H * B);
    int failed = !par_all;
#pragma omp parallel reduction(| : failed) if (B > 1 && (double)B * T * H * P * N >= SSD_PAR_MIN)
    {
        real *scratch = par_all ? malloc(sizeof(real) * scratch_elems) : NULL; /* per thread */
        failed = !scratch;
        real *uraw = scratch, *delta = uraw + QL, *cum = delta + QL, *dcum = cum + QL, *ddelta = dcum + QL;
        real *colsum = ddelta + QL, *CB = colsum + QL, *M = CB + QQ, *dscore = M + QQ;
        real *dS_all = dscore + QQ, *dS_in = dS_all + H * PN; /* dS_all: every head's dS_out */
        real *Qm = dS_in + PN, *U = Qm + (size_t)QL * N, *Xw = U + (size_t)QL * P, *dYe = Xw + (size_t)QL * P;

#pragma omp for schedule(static)
        for (int b = 0; b < B; b++) {
            if (!scratch) continue;
            real *par = par_all + 3 * (size_t)H * b;
            /* dB, dC are summed over the heads of a group: start them at zero */
            for (size_t r = (size_t)b * T; r < (size_t)(b + 1) * T; r++)
                memset(dxbc + r * W + HP, 0, sizeof(real) * 2 * G * N);
            memset(dS_all, 0, sizeof(real) * H * PN); /* dS_out of the last chunk */
            memset(par, 0, sizeof(real) * 3 * H);
            for (int c = nchunks - 1; c >= 0; c--) {
                const int t0 = c * Q, L = T - t0 < Q ? T - t0 : Q;
                const real *rows = xbc + ((size_t)b * T + t0) * W;
                real *drows = dxbc + ((size_t)b * T + t0) * W;
                for (int g = 0; g < G; g++) {
                    const real *Bm = rows + ssd_boff(d, g), *Cm = rows + ssd_coff(d, g);
                    real *dB = drows + ssd_boff(d, g), *dC = drows + ssd_coff(d, g);
                    /* C Bᵀ and d(C Bᵀ) = dscore are shared by the heads of the group */
                    SSD_GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, L, L, N, 1, Cm, (int)W, Bm, (int)W, 0, CB, QL);
                    for (int i = 0; i < L; i++) memset(dscore + (size_t)i * QL, 0, sizeof(real) * L);
                    for (int h = g * heads_per_group; h < (g + 1) * heads_per_group; h++) {
                        const real A = -exp(A_log[h]), Dh = Dskip[h];
                        const real *X = rows + (size_t)h * P, *dY = dy + ((size_t)b * T + t0) * HP + (size_t)h * P;
                        const real *S_in = states + (((size_t)b * nchunks + c) * H + h) * PN;
                        real *dX = drows + (size_t)h * P, *dS = dS_all + h * PN;
                        ssd_chunk_decay(dt + ((size_t)b * T + t0) * H + h, (size_t)H, dt_bias[h], A, L, uraw,
                                delta, cum);
                        memset(dcum, 0, sizeof(real) * L);
                        memset(ddelta, 0, sizeof(real) * L);
                        const real last = cum[L - 1], eL = exp(last);

                        /* D skip: dX = D dY (the first write of dX for this chunk) */
                        for (int i = 0; i < L; i++) {
                            const real *dyi = dY + i * HP;
                            real *dxi = dX + i * W;
                            for (int p = 0; p < P; p++) dxi[p] = Dh * dyi[p];
                            par[3 * h + 2] += ssd_dot(dyi, X + i * W, P);
                        }

                        /* inter-chunk output Y += diag(e^{cum}) C S_inᵀ:
                         *   Qm = dY S_in; dC_i += e_i Qm_i; dcum_i += e_i C_i·Qm_i;
                         *   dS_in = e^{cum_last} dS + (diag(e) dY)ᵀ C */
                        SSD_GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, L, N, P, 1, dY, (int)HP, S_in, N, 0, Qm, N);
                        for (int i = 0; i < L; i++) {
                            const real ei = exp(cum[i]), *qi = Qm + (size_t)i * N;
                            ssd_axpy(dC + i * W, ei, qi, N);
                            dcum[i] += ei * ssd_dot(Cm + i * W, qi, N);
                            for (int p = 0; p < P; p++) dYe[(size_t)i * P + p] = ei * dY[i * HP + p];
                        }
                        memcpy(dS_in, dS, sizeof(real) * PN);
                        SSD_GEMM(CblasRowMajor, CblasTrans, CblasNoTrans, P, N, L, 1, dYe, P, Cm, (int)W, eL, dS_in, N);

                        /* chunk state S_out = e^{cum_last} S_in + (diag(w) X)ᵀ B:
                         *   U = B dSᵀ; dX_j += w_j U_j; dw_j = x_j·U_j; dB += diag(w) X dS */
                        dcum[L - 1] += eL * ssd_dot(dS, S_in, (int)PN);
                        SSD_GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, L, P, N, 1, Bm, (int)W, dS, N, 0, U, P);
                        for (int j = 0; j < L; j++) {
                            const real ej = exp(last - cum[j]), w = ej * delta[j], *uj = U + (size_t)j * P;
                            ssd_axpy(dX + j * W, w, uj, P);
                            const real dw = ssd_dot(X + j * W, uj, P), r = dw * w;
                            ddelta[j] += dw * ej;
                            dcum[L - 1] += r;
                            dcum[j] -= r;
                            for (int p = 0; p < P; p++) Xw[(size_t)j * P + p] = w * X[(size_t)j * W + p];
                        }
                        SSD_GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, L, N, P, 1, Xw, P, dS, N, 1, dB, (int)W);

                        /* intra-chunk Y += M X, M_ij = CB_ij E_ij Δ_j (j ≤ i), E_ij = e^{cum_i − cum_j}:
                         *   dM = dY Xᵀ (into M, then overwritten by M itself); G_ij = dM_ij CB_ij E_ij (= ∂L/∂Δ_j
                         *   through M_ij); dscore += dM ∘ E Δ (= ∂L/∂CB, summed over the group's heads);
                         *   dcum_i += Σ_j G_ij Δ_j, dcum_j −= Σ_i G_ij Δ_j; dX += Mᵀ dY */
                        SSD_GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, L, L, P, 1, dY, (int)HP, X, (int)W, 0, M, QL);
                        memset(colsum, 0, sizeof(real) * L);
                        for (int i = 0; i < L; i++) {
                            const real *CBi = CB + (size_t)i * QL;
                            real *Mi = M + (size_t)i * QL, *Di = dscore + (size_t)i * QL;
                            real rowsum = 0;
                            for (int j = 0; j <= i; j++) {
                                const real e = exp(cum[i] - cum[j]), dm = Mi[j], gij = dm * CBi[j] * e;
                                colsum[j] += gij;
                                rowsum += gij * delta[j];
                                Mi[j] = CBi[j] * e * delta[j];
                                Di[j] += dm * e * delta[j];
                            }
                            for (int j = i + 1; j < L; j++) Mi[j] = 0;
                            dcum[i] += rowsum;
                        }
                        for (int j = 0; j < L; j++) {
                            ddelta[j] += colsum[j];
                            dcum[j] -= colsum[j] * delta[j];
                        }
                        SSD_GEMM(CblasRowMajor, CblasTrans, CblasNoTrans, L, P, L, 1, M, QL, dY, (int)HP, 1,
                                dX, (int)W);

                        /* cum_i = Σ_{s≤i} Δ_s A  →  da_s = Σ_{i≥s} dcum_i; then softplus back to raw dt */
                        real da = 0;
                        for (int i = L - 1; i >= 0; i--) {
                            da += dcum[i];
                            par[3 * h + 1] += da * delta[i];
                            const real du = (ddelta[i] + da * A) * ssd_sigmoid(uraw[i]);
                            ddt[((size_t)b * T + t0 + i) * H + h] = du;
                            par[3 * h] += du;
                        }
                        memcpy(dS, dS_in, sizeof(real) * PN); /* dS_in of this chunk is dS_out of the previous one */
                    }
                    /* through C Bᵀ: dC += dscore B, dB += dscoreᵀ C, once for the whole group */
                    SSD_GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, L, N, L, 1, dscore, QL, Bm, (int)W,
                            1, dC, (int)W);
                    SSD_GEMM(CblasRowMajor, CblasTrans, CblasNoTrans, L, N, L, 1, dscore, QL, Cm, (int)W, 1,
                            dB, (int)W);
                }
            }
        }
        free(scratch);
    }
    if (failed) {
        free(par_all);
        CPU_FN(fail)(hk, HLAB_ENOMEM, "ssd_bwd: out of host memory for the chunk scratch (chunk=%d)", Q);
        return;
    }
    for (int b = 0; b < B; b++) {
        const real *par = par_all + 3 * (size_t)H * b;
        for (int h = 0; h < H; h++) {
            ddt_bias[h] += par[3 * h];
            dA_log[h] += par[3 * h + 1] * -exp(A_log[h]); /* A = −exp(A_log): dA/dA_log = A */
            dDskip[h] += par[3 * h + 2];
        }
    }
    free(par_all);
}

/* ---- sequential reference ----------------------------------------------------------- */

void CPU_FN(ssd_sequential_fwd)(hk_backend *hk, void *y_, void *states, const void *xbc_, const void *dt_,
                                const void *dt_bias_, const void *A_log_, const void *Dskip_, hk_ssd_dims d) {
    (void)states;
    if (!ssd_dims_ok(hk, d, "ssd_sequential_fwd")) return;
    real *y = y_;
    const real *xbc = xbc_, *dt = dt_, *dt_bias = dt_bias_, *A_log = A_log_, *Dskip = Dskip_;
    const int B = d.B, T = d.T, H = d.H, P = d.P, N = d.N, heads_per_group = d.H / d.G;
    const size_t W = ssd_width(d), PN = (size_t)P * N;
    int failed = 0;

#pragma omp parallel for collapse(2) schedule(dynamic) reduction(| : failed) \
    if ((double)B * T * H * P * N >= SSD_PAR_MIN)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < H; h++) {
            real *S = calloc(PN, sizeof(real));
            if (!S) {
                failed = 1;
                continue;
            }
            const int g = h / heads_per_group;
            const size_t xoff = (size_t)h * P, boff = ssd_boff(d, g), coff = ssd_coff(d, g);
            const real A = -exp(A_log[h]);
            for (int t = 0; t < T; t++) {
                const real *row = xbc + ((size_t)b * T + t) * W, *xt = row + xoff, *Bt = row + boff, *Ct = row + coff;
                const real delta = ssd_softplus(dt[((size_t)b * T + t) * H + h] + dt_bias[h]), decay = exp(delta * A);
                real *yt = y + ((size_t)b * T + t) * H * P + xoff;
                for (int p = 0; p < P; p++) {
                    real *Sp = S + (size_t)p * N;
                    const real s = delta * xt[p];
                    for (int n = 0; n < N; n++) Sp[n] = decay * Sp[n] + s * Bt[n];
                    yt[p] = ssd_dot(Sp, Ct, N) + Dskip[h] * xt[p];
                }
            }
            free(S);
        }
    }
    if (failed) CPU_FN(fail)(hk, HLAB_ENOMEM, "ssd_sequential_fwd: out of host memory for the state (P=%d N=%d)", P, N);
}

/* Keeps every S_t of one (b, h) and walks back: dS accumulates dy_t C_tᵀ, then decays. Parallel over
 * the batch only, the heads in order, so dB/dC of a group accumulate without races. */
void CPU_FN(ssd_sequential_bwd)(hk_backend *hk, void *dxbc_, void *ddt_, void *ddt_bias_, void *dA_log_,
                                void *dDskip_, const void *dy_, const void *states, const void *xbc_, const void *dt_,
                                const void *dt_bias_, const void *A_log_, const void *Dskip_, hk_ssd_dims d) {
    (void)states;
    if (!ssd_dims_ok(hk, d, "ssd_sequential_bwd")) return;
    real *dxbc = dxbc_, *ddt = ddt_, *ddt_bias = ddt_bias_, *dA_log = dA_log_, *dDskip = dDskip_;
    const real *dy = dy_, *xbc = xbc_, *dt = dt_, *dt_bias = dt_bias_, *A_log = A_log_, *Dskip = Dskip_;
    const int B = d.B, T = d.T, H = d.H, P = d.P, N = d.N, heads_per_group = d.H / d.G;
    const size_t W = ssd_width(d), PN = (size_t)P * N;
    real *par_part = calloc((size_t)B * H * 3, sizeof(real));
    int failed = !par_part;

#pragma omp parallel for schedule(dynamic) reduction(| : failed) if ((double)B * T * H * P * N >= SSD_PAR_MIN)
    for (int b = 0; b < B; b++) {
        if (!par_part) continue;
        real *Sall = malloc(sizeof(real) * ((size_t)(T + 1) * PN + PN + 2 * (size_t)T));
        if (!Sall) {
            failed = 1;
            continue;
        }
        real *dS = Sall + (size_t)(T + 1) * PN, *delta = dS + PN, *uraw = delta + T;
        for (int t = 0; t < T; t++) memset(dxbc + ((size_t)b * T + t) * W, 0, sizeof(real) * W);
        for (int h = 0; h < H; h++) {
            const int g = h / heads_per_group;
            const size_t xoff = (size_t)h * P, boff = ssd_boff(d, g), coff = ssd_coff(d, g);
            const real A = -exp(A_log[h]);
            /* Sall + (t+1)·PN holds S_t; Sall + 0 holds S_{−1} = 0 */
            memset(Sall, 0, sizeof(real) * PN);
            for (int t = 0; t < T; t++) {
                const real *row = xbc + ((size_t)b * T + t) * W, *xt = row + xoff, *Bt = row + boff;
                uraw[t] = dt[((size_t)b * T + t) * H + h] + dt_bias[h];
                delta[t] = ssd_softplus(uraw[t]);
                const real decay = exp(delta[t] * A);
                const real *Sprev = Sall + (size_t)t * PN;
                real *St = Sall + (size_t)(t + 1) * PN;
                for (int p = 0; p < P; p++)
                    for (int n = 0; n < N; n++)
                        St[(size_t)p * N + n] = decay * Sprev[(size_t)p * N + n] + delta[t] * xt[p] * Bt[n];
            }
            memset(dS, 0, sizeof(real) * PN);
            real dbias = 0, dA = 0, dD = 0;
            for (int t = T - 1; t >= 0; t--) {
                const real *row = xbc + ((size_t)b * T + t) * W, *xt = row + xoff, *Bt = row + boff, *Ct = row + coff;
                const real *dyt = dy + ((size_t)b * T + t) * H * P + xoff;
                const real *St = Sall + (size_t)(t + 1) * PN, *Sprev = Sall + (size_t)t * PN;
                real *drow = dxbc + ((size_t)b * T + t) * W, *dxt = drow + xoff, *dBt = drow + boff, *dCt = drow + coff;
                const real decay = exp(delta[t] * A);
                real ddelta = 0;
                for (int p = 0; p < P; p++) {
                    real *dSp = dS + (size_t)p * N;
                    const real *Sp = St + (size_t)p * N;
                    for (int n = 0; n < N; n++) {
                        dSp[n] += dyt[p] * Ct[n]; /* y_t = S_t C_t */
                        dCt[n] += Sp[n] * dyt[p];
                    }
                    const real u = ssd_dot(dSp, Bt, N); /* (dS B_t)_p */
                    dxt[p] = Dskip[h] * dyt[p] + delta[t] * u;
                    ddelta += xt[p] * u;
                    for (int n = 0; n < N; n++) dBt[n] += delta[t] * xt[p] * dSp[n];
                }
                dD += ssd_dot(dyt, xt, P);
                const real da = decay * ssd_dot(dS, Sprev, (int)PN); /* S_t = e^{a_t} S_{t−1} + … */
                for (size_t k = 0; k < PN; k++) dS[k] *= decay;
                ddelta += da * A;
                dA += da * delta[t];
                const real du = ddelta * ssd_sigmoid(uraw[t]);
                ddt[((size_t)b * T + t) * H + h] = du;
                dbias += du;
            }
            real *par = par_part + ((size_t)b * H + h) * 3;
            par[0] = dbias;
            par[1] = dA * A;
            par[2] = dD;
        }
        free(Sall);
    }
    if (failed) {
        free(par_part);
        CPU_FN(fail)(hk, HLAB_ENOMEM, "ssd_sequential_bwd: out of host memory for the states (T=%d P=%d N=%d)", T, P,
                     N);
        return;
    }
    for (int h = 0; h < H; h++) {
        for (int b = 0; b < B; b++) {
            const real *par = par_part + ((size_t)b * H + h) * 3;
            ddt_bias[h] += par[0];
            dA_log[h] += par[1];
            dDskip[h] += par[2];
        }
    }
    free(par_part);
}
