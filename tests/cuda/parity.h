/* tests/cuda/parity.h — a small harness for CUDA-vs-CPU op parity tests.
 *
 * Every test runs an op on two backends: be[0] = the fp32 CPU reference,
 * be[1] = CUDA in fp32 or bf16 mode. Inputs are fresh random values (never
 * zeros), identical on both sides: in bf16 mode A-typed inputs are rounded to
 * bf16 on the host first, so the comparison measures the op and not the input
 * rounding. Outputs are poisoned with NaN on both sides before the op runs, so
 * an element the op forgets to write fails. Parameter gradients are pre-filled
 * with random values so that += is checked. Comparison: relative norm error
 * ‖cuda − cpu‖ / ‖cpu‖ against the mode's tolerance; each figure is printed as
 * a "PARITY" line that run_gpu_tests.sh collects.
 */
#ifndef HLAB_TESTS_CUDA_PARITY_H
#define HLAB_TESTS_CUDA_PARITY_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "test.h"

enum { KA = 0, KR = 1, KI = 2 }; /* A-typed, R-typed, int32 */

typedef struct {
    hk_backend *be[2]; /* 0: cpu (reference), 1: cuda */
    hk_dtype act;      /* the cuda backend's activation dtype */
    const char *mode;  /* "f32" or "bf16" */
    double tol;
    hlab_rng rng;
    int cpu_failed, gpu_failed;
} par_ctx;

typedef struct {
    void *p[2];
    size_t n;
    int kind;
} buf2;

#define ON_BOTH(...)                          \
    for (int b_ = 0; b_ < 2; b_++) {          \
        hk_backend *hk = x->be[b_];           \
        __VA_ARGS__;                          \
    }
#define D(buf) ((buf).p[b_])

static inline float par_round_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    u += 0x7fffu + ((u >> 16) & 1u);
    u &= 0xffff0000u;
    memcpy(&f, &u, 4);
    return f;
}

/* Element size of a dtype (kept local: the tests link only what they use). */
static inline size_t par_size(hk_dtype t) { return t == HK_F64 ? 8 : t == HK_BF16 ? 2 : 4; }

static inline hk_dtype par_dtype(hk_backend *hk, int kind) { return kind == KA ? hk->act : kind == KR ? hk->real : HK_F32; }

static inline int par_open(par_ctx *x, hk_dtype act, uint64_t seed) {
    hlab_err err = {0};
    memset(x, 0, sizeof *x);
    x->act = act;
    x->mode = act == HK_BF16 ? "bf16" : "f32";
    x->tol = act == HK_BF16 ? 1e-2 : 1e-5;
    hlab_rng_seed(&x->rng, seed);
    x->be[0] = hk_cpu_create(HK_F32, 0, &err);
    if (!x->be[0]) {
        fprintf(stderr, "cpu backend: %s\n", err.msg);
        return 0;
    }
    x->be[1] = hk_cuda_create(0, act, &err);
    if (!x->be[1]) {
        fprintf(stderr, "cuda backend: %s\n", err.msg);
        if (x->be[0]) x->be[0]->destroy(x->be[0]);
        return 0;
    }
    return 1;
}

static inline void par_close(par_ctx *x) {
    if (x->be[0]) x->be[0]->destroy(x->be[0]);
    if (x->be[1]) x->be[1]->destroy(x->be[1]);
    x->be[0] = x->be[1] = NULL;
}

/* Uploads host floats (or int32 when kind == KI) to both backends. */
static inline buf2 par_from(par_ctx *x, const void *host, size_t n, int kind) {
    buf2 b = {{NULL, NULL}, n, kind};
    float *tmp = NULL;
    if (kind == KA && x->act == HK_BF16) { /* identical bf16-representable inputs on both sides */
        tmp = (float *)malloc((n ? n : 1) * sizeof(float));
        for (size_t i = 0; i < n; i++) tmp[i] = par_round_bf16(((const float *)host)[i]);
        host = tmp;
    }
    for (int k = 0; k < 2; k++) {
        hk_backend *hk = x->be[k];
        hk_dtype t = par_dtype(hk, kind);
        b.p[k] = hk->alloc(hk, (n ? n : 1) * par_size(t));
        if (!b.p[k]) continue;
        if (kind == KI && k == 0) memcpy(b.p[k], host, n * 4); /* cpu memory is host memory */
        else hk->from_host(hk, b.p[k], t, host, HK_F32, n);
    }
    free(tmp);
    return b;
}

/* Fresh uniform(−scale, scale) values; never exactly zero. */
static inline buf2 par_rand(par_ctx *x, size_t n, int kind, double scale) {
    float *h = (float *)malloc((n ? n : 1) * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        double u = 2.0 * hlab_rng_uniform(&x->rng) - 1.0;
        if (fabs(u) < 1e-3) u = 0.5;
        h[i] = (float)(scale * u);
    }
    buf2 b = par_from(x, h, n, kind);
    free(h);
    return b;
}

/* Positive values in [lo, hi). */
static inline buf2 par_rand_pos(par_ctx *x, size_t n, int kind, double lo, double hi) {
    float *h = (float *)malloc((n ? n : 1) * sizeof(float));
    for (size_t i = 0; i < n; i++) h[i] = (float)(lo + (hi - lo) * hlab_rng_uniform(&x->rng));
    buf2 b = par_from(x, h, n, kind);
    free(h);
    return b;
}

static inline buf2 par_ints(par_ctx *x, size_t n, int below) {
    int32_t *h = (int32_t *)malloc((n ? n : 1) * sizeof(int32_t));
    for (size_t i = 0; i < n; i++) h[i] = (int32_t)hlab_rng_below(&x->rng, (uint64_t)below);
    buf2 b = par_from(x, h, n, KI);
    free(h);
    return b;
}

static inline buf2 par_poison(par_ctx *x, size_t n, int kind) {
    float *h = (float *)malloc((n ? n : 1) * sizeof(float));
    for (size_t i = 0; i < n; i++) h[i] = NAN;
    buf2 b = par_from(x, h, n, kind);
    free(h);
    return b;
}

static inline void par_free(par_ctx *x, buf2 *b) {
    for (int k = 0; k < 2; k++)
        if (b->p[k]) x->be[k]->free(x->be[k], b->p[k]);
    b->p[0] = b->p[1] = NULL;
}

/* After an op: did both backends run it? A CPU failure (e.g. a reference op
 * not implemented yet) skips the comparison; a CUDA failure fails the test. */
static inline int par_ran(par_ctx *x, const char *op) {
    hlab_err err = {0};
    int ok = 1;
    if (x->be[0]->check(x->be[0], &err) != HLAB_OK) {
        printf("SKIP %-5s %-24s cpu reference failed: %s\n", x->mode, op, err.msg);
        x->cpu_failed = 1;
        ok = 0;
    }
    if (x->be[1]->sync(x->be[1], &err) != HLAB_OK) {
        CHECK(0, "%s %s: cuda failed: %s", x->mode, op, err.msg);
        x->gpu_failed = 1;
        ok = 0;
    }
    return ok;
}

/* Re-opens a backend whose sticky error is set (call after freeing buffers). */
static inline void par_recover(par_ctx *x) {
    hlab_err err = {0};
    if (x->cpu_failed) {
        if (x->be[0]) x->be[0]->destroy(x->be[0]);
        x->be[0] = hk_cpu_create(HK_F32, 0, &err);
        x->cpu_failed = 0;
    }
    if (x->gpu_failed) {
        if (x->be[1]) x->be[1]->destroy(x->be[1]);
        x->be[1] = hk_cuda_create(0, x->act, &err);
        x->gpu_failed = 0;
    }
    if (!x->be[0] || !x->be[1]) {
        fprintf(stderr, "could not re-open a backend: %s\n", err.msg);
        exit(1);
    }
}

static inline float *par_get(par_ctx *x, int k, buf2 b) {
    float *h = (float *)malloc((b.n ? b.n : 1) * sizeof(float));
    hk_backend *hk = x->be[k];
    hk->to_host(hk, h, HK_F32, b.p[k], par_dtype(hk, b.kind), b.n);
    return h;
}

/* Compares the two sides of b; prints and checks the relative error. */
static inline double par_cmp_tol(par_ctx *x, buf2 b, const char *what, double tol) {
    float *ref = par_get(x, 0, b), *got = par_get(x, 1, b);
    double e = test_rel_err_f32(got, ref, b.n);
    printf("PARITY %-5s %-28s %.3e  (tol %.0e, n=%zu)\n", x->mode, what, e, tol, b.n);
    CHECK(e <= tol, "%s %s: relative error %.3e > %.1e", x->mode, what, e, tol);
    free(ref);
    free(got);
    return e;
}
static inline double par_cmp(par_ctx *x, buf2 b, const char *what) { return par_cmp_tol(x, b, what, x->tol); }

#endif
