/* kernels/cpu/moe.c — the mixture-of-SwiGLU-experts channel sublayer as one op
 * (MODEL.md §6), CPU backend.
 *
 * Forward, for N tokens of width C:
 *   r = inp · W_rᵀ, p = softmax(r) over E; per token the k largest p (ties go to
 *   the lower expert index), weights w_j = p_j (or p_j / Σ_chosen p when renorm);
 *   dropless dispatch: the N·k token slots (slot = n·k + j) are counting-sorted by
 *   expert, stable in slot order, so each expert's rows are one contiguous block;
 *   each block runs its expert's SwiGLU as two GEMMs; out[n] = Σ_j w_j y_slot
 *   + Σ_s SwiGLU_s(inp[n]); aux = α·E·Σ_e f_e·P_e with f_e = count_e / (N·k) and
 *   P_e = mean_n p[n,e].
 * The combine sums each token's slots in j order, so results do not depend on
 * the thread count.
 *
 * Cache (moe_cache_bytes, laid out by moe_layout): router probabilities, the
 * chosen experts and weights, the sort (expert offsets, sorted order, inverse)
 * and the SwiGLU pre-activations x·[W1;W3]ᵀ of every routed slot and of every
 * shared expert. Backward recomputes the gathered inputs (a copy), the SiLU
 * products (elementwise) and nothing that needs a GEMM; the gradient of a
 * routing weight uses dout·y = (dout·W2)·act, so expert outputs are not kept.
 *
 * Threads: GEMMs go through cblas (OpenBLAS threads); per-token and per-slot
 * loops use OpenMP. Experts run one after another. Host scratch comes from
 * malloc and is freed before the op returns.
 */
#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/cpu.h"

#ifdef HK_CPU_F64
#define GEMM_R cblas_dgemm
#define EXP_R exp
#else
#define GEMM_R cblas_sgemm
#define EXP_R expf
#endif

/* Below this many elements a loop runs on one thread. */
#define MOE_PAR_MIN 32768

/* Row-major C[M,Nc] = alpha·op(A)·op(B) + beta·C. */
static void gemm(int ta, int tb, int M, int Nc, int K, real alpha, const real *A, int lda, const real *B, int ldb,
                 real beta, real *C, int ldc) {
    if (M == 0 || Nc == 0) return;
    GEMM_R(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, Nc, K, alpha, A, lda, B,
           ldb, beta, C, ldc);
}

/* Byte offsets of the cache's parts; every part starts on a 64-byte boundary. */
typedef struct {
    size_t probs;   /* real  [N, E]      router softmax */
    size_t weight;  /* real  [N, k]      combine weight of each slot */
    size_t expert;  /* int32 [N, k]      chosen expert of each slot, in rank order */
    size_t offset;  /* int32 [E + 1]     expert e's rows are sorted positions offset[e] .. offset[e+1] */
    size_t order;   /* int32 [N·k]       sorted position -> slot */
    size_t where;   /* int32 [N·k]       slot -> sorted position */
    size_t h13;     /* real  [N·k, 2F]   routed pre-activations, sorted order */
    size_t hs13;    /* real  [S, N, 2Fs] shared pre-activations */
    size_t total;
} moe_layout;

static size_t align64(size_t x) { return (x + 63) & ~(size_t)63; }

static moe_layout moe_layout_of(hk_moe_dims d) {
    const size_t N = (size_t)d.N, slots = N * (size_t)d.k;
    moe_layout L;
    size_t at = 0;
    L.probs = at;  at = align64(at + N * (size_t)d.E * sizeof(real));
    L.weight = at; at = align64(at + slots * sizeof(real));
    L.expert = at; at = align64(at + slots * sizeof(int32_t));
    L.offset = at; at = align64(at + ((size_t)d.E + 1) * sizeof(int32_t));
    L.order = at;  at = align64(at + slots * sizeof(int32_t));
    L.where = at;  at = align64(at + slots * sizeof(int32_t));
    L.h13 = at;    at = align64(at + slots * 2 * (size_t)d.F * sizeof(real));
    L.hs13 = at;   at = align64(at + (size_t)d.S * N * 2 * (size_t)(d.S > 0 ? d.Fs : 0) * sizeof(real));
    L.total = at;
    return L;
}

/* Records a sticky error and returns 0 when the dims are not a valid MoE. */
static int moe_dims_ok(hk_backend *hk, hk_moe_dims d, const char *op) {
    if (d.N < 0 || d.C <= 0 || d.E <= 0 || d.F <= 0 || d.k < 1 || d.k > d.E || d.S < 0 || (d.S > 0 && d.Fs <= 0)) {
        CPU_FN(fail)(hk, HLAB_EINVAL,
                     "%s: bad dims N=%d C=%d E=%d k=%d F=%d S=%d Fs=%d (expected N >= 0, C, E, F > 0, 1 <= k <= E, "
                     "S >= 0, Fs > 0 when S > 0)",
                     op, d.N, d.C, d.E, d.k, d.F, d.S, d.Fs);
        return 0;
    }
    return 1;
}

static inline real sigmoid_r(real x) { return (real)1 / ((real)1 + EXP_R(-x)); }

/* act[m,F] = SiLU(h[:, :F]) ⊙ h[:, F:] for h [m, 2F]. */
static void swiglu_rows(real *act, const real *h, size_t m, int F) {
    #pragma omp parallel for if (m * (size_t)F >= MOE_PAR_MIN)
    for (size_t r = 0; r < m; r++) {
        const real *a = h + r * 2 * (size_t)F, *b = a + F;
        real *o = act + r * (size_t)F;
        for (int f = 0; f < F; f++) o[f] = a[f] * sigmoid_r(a[f]) * b[f];
    }
}

/* dh[m,2F] = ∂(SiLU(a) ⊙ b)/∂[a|b] · g for h = [a|b] [m, 2F], g [m, F]. */
static void swiglu_rows_bwd(real *dh, const real *g, const real *h, size_t m, int F) {
    #pragma omp parallel for if (m * (size_t)F >= MOE_PAR_MIN)
    for (size_t r = 0; r < m; r++) {
        const real *a = h + r * 2 * (size_t)F, *b = a + F, *gr = g + r * (size_t)F;
        real *da = dh + r * 2 * (size_t)F, *db = da + F;
        for (int f = 0; f < F; f++) {
            real s = sigmoid_r(a[f]);
            da[f] = gr[f] * b[f] * s * ((real)1 + a[f] * ((real)1 - s));
            db[f] = gr[f] * a[f] * s;
        }
    }
}

/* dst[p, :] = src[order[p] / k, :] for every sorted position p. */
static void gather_rows(real *dst, const real *src, const int32_t *order, size_t slots, int k, int C) {
    #pragma omp parallel for if (slots * (size_t)C >= MOE_PAR_MIN)
    for (size_t p = 0; p < slots; p++)
        memcpy(dst + p * (size_t)C, src + (size_t)(order[p] / k) * C, (size_t)C * sizeof(real));
}

size_t CPU_FN(moe_cache_bytes)(hk_backend *hk, hk_moe_dims d) {
    if (!moe_dims_ok(hk, d, "moe_cache_bytes")) return 0;
    return moe_layout_of(d).total;
}

void CPU_FN(moe_fwd)(hk_backend *hk, void *out, void *aux, void *cache, const void *inp, const void *w_router,
                     const void *w13, const void *w2, const void *ws13, const void *ws2, hk_moe_dims d) {
    if (!moe_dims_ok(hk, d, "moe_fwd")) return;
    if (!cache) {
        CPU_FN(fail)(hk, HLAB_EINVAL, "moe_fwd: cache is NULL (expected moe_cache_bytes() bytes from hk->alloc)");
        return;
    }
    const int N = d.N, C = d.C, E = d.E, k = d.k, F = d.F, S = d.S, Fs = d.Fs;
    const size_t slots = (size_t)N * k;
    const moe_layout L = moe_layout_of(d);
    char *cb = cache;
    real *probs = (real *)(cb + L.probs), *weight = (real *)(cb + L.weight);
    int32_t *expert = (int32_t *)(cb + L.expert), *offset = (int32_t *)(cb + L.offset);
    int32_t *order = (int32_t *)(cb + L.order), *where = (int32_t *)(cb + L.where);
    real *h13 = (real *)(cb + L.h13), *hs13 = (real *)(cb + L.hs13);
    real *o = out;
    const real *x = inp;

    if (N == 0) {
        *(real *)aux = 0;
        return;
    }
    /* scratch: gathered inputs and expert outputs [N·k, C], SwiGLU products
     * (an expert block has at most N rows: a token picks an expert once) */
    const size_t act_n = (size_t)N * (S > 0 && Fs > F ? Fs : F);
    real *xg = malloc((2 * slots * C + act_n + 1) * sizeof(real));
    if (!xg) {
        CPU_FN(fail)(hk, HLAB_ENOMEM, "moe_fwd: out of host memory for %zu scratch elements", 2 * slots * C + act_n);
        return;
    }
    real *yg = xg + slots * C, *act = yg + slots * C;

    /* router: logits -> softmax -> top-k -> weights */
    gemm(0, 1, N, E, C, 1, x, C, w_router, C, 0, probs, E);
    #pragma omp parallel for if ((size_t)N * E >= MOE_PAR_MIN / 8)
    for (int n = 0; n < N; n++) {
        real *p = probs + (size_t)n * E;
        real mx = p[0], sum = 0;
        for (int e = 1; e < E; e++) mx = p[e] > mx ? p[e] : mx;
        for (int e = 0; e < E; e++) sum += p[e] = EXP_R(p[e] - mx);
        for (int e = 0; e < E; e++) p[e] /= sum;
        int32_t *ex = expert + (size_t)n * k;
        real *w = weight + (size_t)n * k, chosen = 0;
        for (int j = 0; j < k; j++) {
            int best = -1;
            for (int e = 0; e < E; e++) {
                int taken = 0;
                for (int i = 0; i < j; i++) taken |= ex[i] == e;
                if (!taken && (best < 0 || p[e] > p[best])) best = e; /* strict >: ties keep the lower index */
            }
            ex[j] = best;
            w[j] = p[best];
            chosen += p[best];
        }
        if (d.renorm)
            for (int j = 0; j < k; j++) w[j] /= chosen;
    }

    /* dispatch: stable counting sort of the slots by expert */
    memset(offset, 0, ((size_t)E + 1) * sizeof(int32_t));
    for (size_t s = 0; s < slots; s++) offset[expert[s] + 1]++;
    for (int e = 0; e < E; e++) offset[e + 1] += offset[e];
    for (size_t s = 0; s < slots; s++) { /* offset[e] walks through e's block, then is restored below */
        int32_t p = offset[expert[s]]++;
        order[p] = (int32_t)s;
        where[s] = p;
    }
    for (int e = E; e > 0; e--) offset[e] = offset[e - 1];
    offset[0] = 0;

    /* aux = α E Σ_e f_e P_e */
    double aux_sum = 0;
    for (int e = 0; e < E; e++) {
        double P = 0;
        for (int n = 0; n < N; n++) P += probs[(size_t)n * E + e];
        aux_sum += (double)(offset[e + 1] - offset[e]) / (double)slots * (P / N);
    }
    *(real *)aux = (real)((double)d.alpha * E * aux_sum);

    /* routed experts on their contiguous row blocks */
    gather_rows(xg, x, order, slots, k, C);
    const real *W13 = w13, *W2 = w2;
    for (int e = 0; e < E; e++) {
        const size_t o0 = (size_t)offset[e];
        const int m = offset[e + 1] - offset[e];
        if (m == 0) continue;
        real *h = h13 + o0 * 2 * F;
        gemm(0, 1, m, 2 * F, C, 1, xg + o0 * C, C, W13 + (size_t)e * 2 * F * C, C, 0, h, 2 * F);
        swiglu_rows(act, h, (size_t)m, F);
        gemm(0, 1, m, C, F, 1, act, F, W2 + (size_t)e * C * F, F, 0, yg + o0 * C, C);
    }

    /* shared experts write out first, then the routed combine adds in slot order */
    const real *WS13 = ws13, *WS2 = ws2;
    for (int s = 0; s < S; s++) {
        real *h = hs13 + (size_t)s * N * 2 * Fs;
        gemm(0, 1, N, 2 * Fs, C, 1, x, C, WS13 + (size_t)s * 2 * Fs * C, C, 0, h, 2 * Fs);
        swiglu_rows(act, h, (size_t)N, Fs);
        gemm(0, 1, N, C, Fs, 1, act, Fs, WS2 + (size_t)s * C * Fs, Fs, s > 0 ? 1 : 0, o, C);
    }
    #pragma omp parallel for if ((size_t)N * C * k >= MOE_PAR_MIN)
    for (int n = 0; n < N; n++) {
        real *on = o + (size_t)n * C;
        if (S == 0) memset(on, 0, (size_t)C * sizeof(real));
        for (int j = 0; j < k; j++) {
            const size_t slot = (size_t)n * k + j;
            const real w = weight[slot], *y = yg + (size_t)where[slot] * C;
            for (int c = 0; c < C; c++) on[c] += w * y[c];
        }
    }
    free(xg);
}

void CPU_FN(moe_bwd)(hk_backend *hk, void *dinp, void *dw_router, void *dw13, void *dw2, void *dws13, void *dws2,
                     const void *dout, float daux, const void *cache, const void *inp, const void *w_router,
                     const void *w13, const void *w2, const void *ws13, const void *ws2, hk_moe_dims d) {
    if (!moe_dims_ok(hk, d, "moe_bwd")) return;
    if (!cache) {
        CPU_FN(fail)(hk, HLAB_EINVAL, "moe_bwd: cache is NULL (expected the cache filled by moe_fwd)");
        return;
    }
    const int N = d.N, C = d.C, E = d.E, k = d.k, F = d.F, S = d.S, Fs = d.Fs;
    const size_t slots = (size_t)N * k;
    const moe_layout L = moe_layout_of(d);
    const char *cb = cache;
    const real *probs = (const real *)(cb + L.probs), *weight = (const real *)(cb + L.weight);
    const int32_t *expert = (const int32_t *)(cb + L.expert), *offset = (const int32_t *)(cb + L.offset);
    const int32_t *order = (const int32_t *)(cb + L.order), *where = (const int32_t *)(cb + L.where);
    const real *h13 = (const real *)(cb + L.h13), *hs13 = (const real *)(cb + L.hs13);
    const real *x = inp, *dy = dout;
    real *dx = dinp;

    if (N == 0) return;
    /* scratch: gathered inputs xg and gathered dout dg [N·k, C] (dg is reused for
     * the slots' input grads), SwiGLU products act and their grads gu [rows, F],
     * pre-activation grads dh [rows, 2F] (rows <= N: a token picks an expert
     * once), routing-weight grads dwt [N·k], router-logit grads dr [N, E], and
     * the aux loss's per-expert probability grad aux_grad [E] */
    const size_t rowsF = (size_t)N * (S > 0 && Fs > F ? Fs : F);
    const size_t need = 2 * slots * C + 4 * rowsF + slots + (size_t)N * E + (size_t)E;
    real *xg = malloc(need * sizeof(real));
    if (!xg) {
        CPU_FN(fail)(hk, HLAB_ENOMEM, "moe_bwd: out of host memory for %zu scratch elements", need);
        return;
    }
    real *dg = xg + slots * C, *act = dg + slots * C, *gu = act + rowsF, *dh = gu + rowsF, *dwt = dh + 2 * rowsF;
    real *dr = dwt + slots, *aux_grad = dr + (size_t)N * E;

    /* routed experts: per block, gu = dout·W2 gives both the routing-weight
     * grad (gu·act = dout·y) and, scaled by the weight, the SwiGLU output grad */
    gather_rows(xg, x, order, slots, k, C);
    gather_rows(dg, dy, order, slots, k, C);
    const real *W13 = w13, *W2 = w2;
    real *dW13 = dw13, *dW2 = dw2;
    for (int e = 0; e < E; e++) {
        const size_t o0 = (size_t)offset[e];
        const int m = offset[e + 1] - offset[e];
        if (m == 0) continue;
        const real *h = h13 + o0 * 2 * F, *xe = xg + o0 * C;
        real *de = dg + o0 * C;
        swiglu_rows(act, h, (size_t)m, F);
        gemm(0, 0, m, F, C, 1, de, C, W2 + (size_t)e * C * F, F, 0, gu, F);
        #pragma omp parallel for if ((size_t)m * (F + C) >= MOE_PAR_MIN)
        for (int r = 0; r < m; r++) {
            const int32_t slot = order[o0 + r];
            const real w = weight[slot];
            real *gr = gu + (size_t)r * F, *der = de + (size_t)r * C;
            const real *ar = act + (size_t)r * F;
            real dot = 0;
            for (int f = 0; f < F; f++) dot += gr[f] * ar[f];
            dwt[slot] = dot;
            for (int f = 0; f < F; f++) gr[f] *= w;
            for (int c = 0; c < C; c++) der[c] *= w;
        }
        gemm(1, 0, C, F, m, 1, de, C, act, F, 1, dW2 + (size_t)e * C * F, F);
        swiglu_rows_bwd(dh, gu, h, (size_t)m, F);
        gemm(1, 0, 2 * F, C, m, 1, dh, 2 * F, xe, C, 1, dW13 + (size_t)e * 2 * F * C, C);
        gemm(0, 0, m, C, 2 * F, 1, dh, 2 * F, W13 + (size_t)e * 2 * F * C, C, 0, de, C); /* slot input grads */
    }

    /* router: dp from the combine weights (through the renormalisation) and
     * from the aux loss's P_e (f_e constant), then through the softmax */
    for (int e = 0; e < E; e++) /* ∂(daux·aux)/∂p[n,e] = daux α E f_e / N */
        aux_grad[e] = (real)((double)daux * d.alpha * E * (double)(offset[e + 1] - offset[e]) / (double)slots / N);
    #pragma omp parallel for if ((size_t)N * E >= MOE_PAR_MIN / 8)
    for (int n = 0; n < N; n++) {
        const real *p = probs + (size_t)n * E, *w = weight + (size_t)n * k, *gw = dwt + (size_t)n * k;
        const int32_t *ex = expert + (size_t)n * k;
        real *g = dr + (size_t)n * E;
        for (int e = 0; e < E; e++) g[e] = aux_grad[e];
        if (d.renorm) { /* w_j = p_j / Σp: ∂/∂p_j = (gw_j − Σ_l gw_l w_l) / Σp */
            real chosen = 0, gww = 0;
            for (int j = 0; j < k; j++) {
                chosen += p[ex[j]];
                gww += gw[j] * w[j];
            }
            for (int j = 0; j < k; j++) g[ex[j]] += (gw[j] - gww) / chosen;
        } else {
            for (int j = 0; j < k; j++) g[ex[j]] += gw[j];
        }
        real pg = 0;
        for (int e = 0; e < E; e++) pg += p[e] * g[e];
        for (int e = 0; e < E; e++) g[e] = p[e] * (g[e] - pg);
    }
    gemm(1, 0, E, C, N, 1, dr, E, x, C, 1, dw_router, C);
    gemm(0, 0, N, C, E, 1, dr, E, w_router, C, 0, dx, C);

    /* shared experts */
    const real *WS13 = ws13, *WS2 = ws2;
    real *dWS13 = dws13, *dWS2 = dws2;
    for (int s = 0; s < S; s++) {
        const real *h = hs13 + (size_t)s * N * 2 * Fs;
        swiglu_rows(act, h, (size_t)N, Fs);
        gemm(0, 0, N, Fs, C, 1, dy, C, WS2 + (size_t)s * C * Fs, Fs, 0, gu, Fs);
        gemm(1, 0, C, Fs, N, 1, dy, C, act, Fs, 1, dWS2 + (size_t)s * C * Fs, Fs);
        swiglu_rows_bwd(dh, gu, h, (size_t)N, Fs);
        gemm(1, 0, 2 * Fs, C, N, 1, dh, 2 * Fs, x, C, 1, dWS13 + (size_t)s * 2 * Fs * C, C);
        gemm(0, 0, N, C, 2 * Fs, 1, dh, 2 * Fs, WS13 + (size_t)s * 2 * Fs * C, C, 1, dx, C);
    }

    /* combine the routed slots' input grads, in slot order */
    #pragma omp parallel for if ((size_t)N * C * k >= MOE_PAR_MIN)
    for (int n = 0; n < N; n++) {
        real *dxn = dx + (size_t)n * C;
        for (int j = 0; j < k; j++) {
            const real *g = dg + (size_t)where[(size_t)n * k + j] * C;
            for (int c = 0; c < C; c++) dxn[c] += g[c];
        }
    }
    free(xg);
}
