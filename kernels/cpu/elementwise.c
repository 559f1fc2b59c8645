/* kernels/cpu/elementwise.c — SwiGLU activation, elementwise ops and the
 * parallel-fusion helpers (add, axpby, concat, gate) of the CPU backend.
 *
 * Conventions: every pointer is `real` (A = R on the CPU); activation grads are
 * WRITTEN (=). add and axpby allow out to alias their inputs (each element is
 * read before it is written, at the same index). Loops are OpenMP-parallel only
 * above a size where the fork/join pays for itself.
 */
#include <math.h>

#include "kernels/cpu/cpu.h"

/* Below this many elements a loop runs on one thread. */
#define EW_PAR_MIN 32768
/* The same for pure streaming ops (add, axpby: one flop per 8-12 bytes moved): a second
 * thread gains little on memory bandwidth, while a team fork on a loaded machine can wait
 * a scheduler slice for a descheduled thread. A residual add of 8 x 256 x 256 stays single. */
#define EW_STREAM_PAR_MIN (1u << 21)

#ifdef HK_CPU_F64
#define EXP_R exp
#else
#define EXP_R expf
#endif

static inline real sigmoid_r(real x) { return (real)1 / ((real)1 + EXP_R(-x)); }

void CPU_FN(swiglu_fwd)(hk_backend *hk, void *out, const void *inp, int N, int F) {
    (void)hk;
    real *o = out;
    const real *x = inp;
    #pragma omp parallel for if ((size_t)N * F >= EW_PAR_MIN)
    for (int n = 0; n < N; n++) {
        const real *a = x + (size_t)n * 2 * F, *b = a + F;
        real *on = o + (size_t)n * F;
        for (int f = 0; f < F; f++) on[f] = a[f] * sigmoid_r(a[f]) * b[f];
    }
}

/* d/da [a σ(a)] = σ(a) (1 + a (1 − σ(a))) */
void CPU_FN(swiglu_bwd)(hk_backend *hk, void *dinp, const void *dout, const void *inp, int N, int F) {
    (void)hk;
    real *dx = dinp;
    const real *dy = dout, *x = inp;
    #pragma omp parallel for if ((size_t)N * F >= EW_PAR_MIN)
    for (int n = 0; n < N; n++) {
        const real *a = x + (size_t)n * 2 * F, *b = a + F, *g = dy + (size_t)n * F;
        real *da = dx + (size_t)n * 2 * F, *db = da + F;
        for (int f = 0; f < F; f++) {
            real s = sigmoid_r(a[f]);
            da[f] = g[f] * b[f] * s * ((real)1 + a[f] * ((real)1 - s));
            db[f] = g[f] * a[f] * s;
        }
    }
}

void CPU_FN(add)(hk_backend *hk, void *out, const void *a, const void *b, size_t n) {
    (void)hk;
    real *o = out;
    const real *x = a, *y = b;
    #pragma omp parallel for if (n >= EW_STREAM_PAR_MIN)
    for (size_t i = 0; i < n; i++) o[i] = x[i] + y[i];
}

void CPU_FN(axpby)(hk_backend *hk, void *out, float alpha, const void *a, float beta, const void *b, size_t n) {
    (void)hk;
    real *o = out;
    const real *x = a, *y = b;
    const real al = (real)alpha, be = (real)beta;
    if (y == NULL) {
        #pragma omp parallel for if (n >= EW_STREAM_PAR_MIN)
        for (size_t i = 0; i < n; i++) o[i] = al * x[i];
    } else {
        #pragma omp parallel for if (n >= EW_STREAM_PAR_MIN)
        for (size_t i = 0; i < n; i++) o[i] = al * x[i] + be * y[i];
    }
}

void CPU_FN(concat_fwd)(hk_backend *hk, void *out, const void *a, const void *b, int N, int C1, int C2) {
    (void)hk;
    real *o = out;
    const real *x = a, *y = b;
    const int W = C1 + C2;
    #pragma omp parallel for if ((size_t)N * W >= EW_PAR_MIN)
    for (int n = 0; n < N; n++) {
        real *on = o + (size_t)n * W;
        const real *xn = x + (size_t)n * C1, *yn = y + (size_t)n * C2;
        for (int c = 0; c < C1; c++) on[c] = xn[c];
        for (int c = 0; c < C2; c++) on[C1 + c] = yn[c];
    }
}

void CPU_FN(concat_bwd)(hk_backend *hk, void *da, void *db, const void *dout, int N, int C1, int C2) {
    (void)hk;
    real *dx = da, *dy = db;
    const real *g = dout;
    const int W = C1 + C2;
    #pragma omp parallel for if ((size_t)N * W >= EW_PAR_MIN)
    for (int n = 0; n < N; n++) {
        const real *gn = g + (size_t)n * W;
        real *dxn = dx + (size_t)n * C1, *dyn = dy + (size_t)n * C2;
        for (int c = 0; c < C1; c++) dxn[c] = gn[c];
        for (int c = 0; c < C2; c++) dyn[c] = gn[C1 + c];
    }
}

void CPU_FN(gate_fwd)(hk_backend *hk, void *out, const void *g, const void *a, const void *m, size_t n) {
    (void)hk;
    real *o = out;
    const real *gg = g, *x = a, *y = m;
    #pragma omp parallel for if (n >= EW_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        real s = sigmoid_r(gg[i]);
        o[i] = s * x[i] + ((real)1 - s) * y[i];
    }
}

/* out = m + σ(g)(a − m): dg = dout (a − m) σ (1 − σ), da = dout σ, dm = dout (1 − σ) */
void CPU_FN(gate_bwd)(hk_backend *hk, void *dg, void *da, void *dm, const void *dout, const void *g, const void *a,
                      const void *m, size_t n) {
    (void)hk;
    real *dgg = dg, *dx = da, *dy = dm;
    const real *go = dout, *gg = g, *x = a, *y = m;
    #pragma omp parallel for if (n >= EW_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        real s = sigmoid_r(gg[i]), d = go[i];
        dgg[i] = d * (x[i] - y[i]) * s * ((real)1 - s);
        dx[i] = d * s;
        dy[i] = d * ((real)1 - s);
    }
}
