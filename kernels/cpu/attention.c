/* kernels/cpu/attention.c — causal self-attention over packed qkv (GQA, optional
 * sliding window), forward and backward, CPU backend.
 *
 * Conventions. qkv row n = b*T + t is [q heads | k heads | v heads], each head dh
 * wide; query head h reads kv head h / (Hq/Hkv). Query i sees keys j with
 * j <= i and (window == 0 or i − j < window). Scores are scaled by 1/√dh.
 *
 * Algorithm. Queries go in tiles of ATTN_QTILE rows; a tile's visible keys are one
 * contiguous range [j0, j1), so every product is a GEMM straight on the strided
 * packed rows (cblas, lda = the qkv row width); the few masked entries inside
 * the range are zeroed after the exponential.
 *   forward : S = Q Kᵀ; per row max, p = exp(scale·S − max), sum; lse = max +
 *             log(sum); P = p / sum; O = P V.
 *   backward: P = exp(scale·S − lse) (recomputed), dP = dO Vᵀ, D_i = dO_i·O_i,
 *             dS = scale · P ⊙ (dP − D); dQ = dS K (=), dK += dSᵀ Q, dV += Pᵀ dO.
 * Threads: one OpenMP team per call, over (b, query head) in fwd and (b, kv head)
 * in bwd (a kv head's query heads accumulate into its dK/dV, so they stay in one
 * task); each task has its own score tiles, and its GEMMs run on its thread
 * (OpenBLAS, the OpenMP build, goes single-threaded inside a parallel region). One
 * fork per call, not one OpenBLAS fork per small GEMM: those thousands of forks,
 * each able to wait on a descheduled thread, made this op 10-30x slower on a loaded
 * 2-core machine. A task's arithmetic does not depend on the thread count.
 * dK/dV rows are zeroed per (b, kv head) before its query heads accumulate.
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

#define ATTN_QTILE 64 /* query rows per tile: diagonal-tile waste vs GEMM size */
/* Below this much work (B·Hq·T·keys·dh) a call runs on the calling thread: a team fork
 * costs more than such a problem, and far more on a loaded machine. */
#define ATTN_PAR_MIN (1 << 15)

/* multiply-accumulates of one score product over all heads: the size that pays for a team */
static double attn_work(hk_attn_dims d) {
    const double keys = d.window > 0 && d.window < d.T ? d.window : 0.5 * (d.T + 1);
    return (double)d.B * d.Hq * d.T * keys * d.dh;
}

static int attn_dims_ok(hk_backend *hk, const char *op, hk_attn_dims d) {
    if (d.B <= 0 || d.T <= 0 || d.Hq <= 0 || d.Hkv <= 0 || d.dh <= 0 || d.window < 0 || d.Hq % d.Hkv) {
        CPU_FN(fail)(hk, HLAB_EINVAL,
                     "%s: bad dims B=%d T=%d Hq=%d Hkv=%d dh=%d window=%d (expected positive sizes, Hq %% Hkv == 0, "
                     "window >= 0)",
                     op, d.B, d.T, d.Hq, d.Hkv, d.dh, d.window);
        return 0;
    }
    return 1;
}

/* First visible key of query i. */
static inline int first_key(int i, int window) { return window > 0 && i - window + 1 > 0 ? i - window + 1 : 0; }

/* Widest key range of any tile: the scratch row length. */
static int max_key_range(hk_attn_dims d) {
    int r = d.window > 0 ? ATTN_QTILE + d.window - 1 : d.T;
    return r < d.T ? r : d.T;
}

void CPU_FN(attention_fwd)(hk_backend *hk, void *out_, void *lse_, const void *qkv_, hk_attn_dims d) {
    if (!attn_dims_ok(hk, "attention_fwd", d)) return;
    real *out = out_, *lse = lse_;
    const real *qkv = qkv_;
    const int T = d.T, dh = d.dh, group = d.Hq / d.Hkv, KR = max_key_range(d);
    const int W = (d.Hq + 2 * d.Hkv) * dh, OW = d.Hq * dh;
    const real scale = (real)(1.0 / sqrt((double)dh));
    int failed = 0;
#pragma omp parallel reduction(| : failed) if (d.B * d.Hq > 1 && attn_work(d) >= ATTN_PAR_MIN)
    {
        real *S = malloc((size_t)ATTN_QTILE * KR * sizeof(real)); /* per thread */
        failed = !S;
#pragma omp for collapse(2) schedule(static)
        for (int b = 0; b < d.B; b++)
            for (int h = 0; h < d.Hq; h++) {
                if (!S) continue;
                const int g = h / group;
                const real *base = qkv + (size_t)b * T * W;
                for (int i0 = 0; i0 < T; i0 += ATTN_QTILE) {
                    const int i1 = i0 + ATTN_QTILE < T ? i0 + ATTN_QTILE : T, qn = i1 - i0;
                    const int j0 = first_key(i0, d.window), kn = i1 - j0;
                    const real *Q = base + (size_t)i0 * W + (size_t)h * dh;
                    const real *K = base + (size_t)j0 * W + (size_t)(d.Hq + g) * dh;
                    const real *V = base + (size_t)j0 * W + (size_t)(d.Hq + d.Hkv + g) * dh;
                    GEMM_R(CblasRowMajor, CblasNoTrans, CblasTrans, qn, kn, dh, scale, Q, W, K, W, 0, S, kn);
                    real *L = lse + ((size_t)b * d.Hq + h) * T;
                    for (int r = 0; r < qn; r++) {
                        const int i = i0 + r, lo = first_key(i, d.window) - j0, hi = i - j0; /* visible: lo..hi */
                        real *s = S + (size_t)r * kn;
                        real mx = s[lo];
                        for (int c = lo + 1; c <= hi; c++) mx = s[c] > mx ? s[c] : mx;
                        real sum = 0;
                        for (int c = lo; c <= hi; c++) {
                            s[c] = exp(s[c] - mx);
                            sum += s[c];
                        }
                        for (int c = 0; c < lo; c++) s[c] = 0;
                        for (int c = hi + 1; c < kn; c++) s[c] = 0;
                        const real inv = 1 / sum;
                        for (int c = lo; c <= hi; c++) s[c] *= inv;
                        L[i] = mx + log(sum);
                    }
                    real *O = out + ((size_t)b * T + i0) * OW + (size_t)h * dh;
                    GEMM_R(CblasRowMajor, CblasNoTrans, CblasNoTrans, qn, dh, kn, 1, S, kn, V, W, 0, O, OW);
                }
            }
        free(S);
    }
    if (failed)
        CPU_FN(fail)(hk, HLAB_ENOMEM, "attention_fwd: out of host memory for a %d x %d score tile", ATTN_QTILE, KR);
}

void CPU_FN(attention_bwd)(hk_backend *hk, void *dqkv_, const void *dout_, const void *out_, const void *lse_,
                           const void *qkv_, hk_attn_dims d) {
    if (!attn_dims_ok(hk, "attention_bwd", d)) return;
    real *dqkv = dqkv_;
    const real *dout = dout_, *out = out_, *lse = lse_, *qkv = qkv_;
    const int T = d.T, dh = d.dh, group = d.Hq / d.Hkv, KR = max_key_range(d);
    const int W = (d.Hq + 2 * d.Hkv) * dh, OW = d.Hq * dh;
    const real scale = (real)(1.0 / sqrt((double)dh));
    int failed = 0;
#pragma omp parallel reduction(| : failed) if (d.B * d.Hkv > 1 && attn_work(d) >= ATTN_PAR_MIN)
    {
        /* per thread */
        real *P = malloc((size_t)ATTN_QTILE * KR * sizeof(real)), *dP = malloc((size_t)ATTN_QTILE * KR * sizeof(real));
        failed = !P || !dP;
#pragma omp for collapse(2) schedule(static)
        for (int b = 0; b < d.B; b++)
            for (int g = 0; g < d.Hkv; g++) {
                if (!P || !dP) continue;
                const real *base = qkv + (size_t)b * T * W;
                real *dbase = dqkv + (size_t)b * T * W;
                const size_t koff = (size_t)(d.Hq + g) * dh, voff = (size_t)(d.Hq + d.Hkv + g) * dh;
                for (int j = 0; j < T; j++) {
                    memset(dbase + (size_t)j * W + koff, 0, (size_t)dh * sizeof(real));
                    memset(dbase + (size_t)j * W + voff, 0, (size_t)dh * sizeof(real));
                }
                for (int h = g * group; h < (g + 1) * group; h++) {
                    const real *L = lse + ((size_t)b * d.Hq + h) * T;
                    for (int i0 = 0; i0 < T; i0 += ATTN_QTILE) {
                        const int i1 = i0 + ATTN_QTILE < T ? i0 + ATTN_QTILE : T, qn = i1 - i0;
                        const int j0 = first_key(i0, d.window), kn = i1 - j0;
                        const real *Q = base + (size_t)i0 * W + (size_t)h * dh;
                        const real *K = base + (size_t)j0 * W + koff, *V = base + (size_t)j0 * W + voff;
                        const real *dO = dout + ((size_t)b * T + i0) * OW + (size_t)h * dh;
                        const real *O = out + ((size_t)b * T + i0) * OW + (size_t)h * dh;
                        GEMM_R(CblasRowMajor, CblasNoTrans, CblasTrans, qn, kn, dh, scale, Q, W, K, W, 0, P, kn);
                        GEMM_R(CblasRowMajor, CblasNoTrans, CblasTrans, qn, kn, dh, 1, dO, OW, V, W, 0, dP, kn);
                        for (int r = 0; r < qn; r++) {
                            const int i = i0 + r, lo = first_key(i, d.window) - j0, hi = i - j0;
                            const real *o = O + (size_t)r * OW, *go = dO + (size_t)r * OW;
                            real D = 0;
                            for (int c = 0; c < dh; c++) D += go[c] * o[c];
                            real *p = P + (size_t)r * kn, *dp = dP + (size_t)r * kn; /* dp becomes dS */
                            for (int c = lo; c <= hi; c++) {
                                p[c] = exp(p[c] - L[i]);
                                dp[c] = scale * p[c] * (dp[c] - D);
                            }
                            for (int c = 0; c < lo; c++) p[c] = dp[c] = 0;
                            for (int c = hi + 1; c < kn; c++) p[c] = dp[c] = 0;
                        }
                        GEMM_R(CblasRowMajor, CblasNoTrans, CblasNoTrans, qn, dh, kn, 1, dP, kn, K, W, 0,
                               dbase + (size_t)i0 * W + (size_t)h * dh, W);
                        GEMM_R(CblasRowMajor, CblasTrans, CblasNoTrans, kn, dh, qn, 1, dP, kn, Q, W, 1,
                               dbase + (size_t)j0 * W + koff, W);
                        GEMM_R(CblasRowMajor, CblasTrans, CblasNoTrans, kn, dh, qn, 1, P, kn, dO, OW, 1,
                               dbase + (size_t)j0 * W + voff, W);
                    }
                }
            }
        free(P);
        free(dP);
    }
    if (failed)
        CPU_FN(fail)(hk, HLAB_ENOMEM, "attention_bwd: out of host memory for two %d x %d tiles", ATTN_QTILE, KR);
}
