/* tests/kernels/test_cpu_optim.c — AdamW and sumsq on the CPU backends.
 *   - adamw over several steps against the contract's formula written out per
 *     element in double (bias-corrected moments, decoupled weight decay,
 *     grad_scale), on cpu-f64 (rel < 1e-13) and cpu (the parameter UPDATES and
 *     the moments, rel < 1e-5); the mirror receives exactly the new params, and
 *     mirror == params or NULL is accepted;
 *   - sumsq against a plain double sum, for sizes below and above the block and
 *     threading thresholds, and n = 0.
 * Conventions: random inputs (v > 0), state arrays not zero, poisoned mirror.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "test.h"
#include "gradcheck.h"

typedef struct {
    float lr, b1, b2, eps, wd, grad_scale;
} adamw_hp;

/* The contract (kernels.h) per element. */
static void adamw_reference(double *p, const double *g, double *m, double *v, size_t n, adamw_hp hp, int step) {
    const double b1 = hp.b1, b2 = hp.b2;
    for (size_t i = 0; i < n; i++) {
        const double gi = (double)hp.grad_scale * g[i];
        m[i] = b1 * m[i] + (1 - b1) * gi;
        v[i] = b2 * v[i] + (1 - b2) * gi * gi;
        const double mhat = m[i] / (1 - pow(b1, step)), vhat = v[i] / (1 - pow(b2, step));
        p[i] -= (double)hp.lr * (mhat / (sqrt(vhat) + (double)hp.eps) + (double)hp.wd * p[i]);
    }
}

/* Rounds x to the backend's real dtype and back (so both sides start equal). */
static void round_to(hk_backend *hk, double *x, size_t n) {
    void *t = gc_upload(hk, x, n);
    hk->to_host(hk, x, HK_F64, t, hk->real, n);
    hk->free(hk, t);
}

static void test_adamw(hk_backend *hk, hlab_rng *r, double tol) {
    const size_t n = 50021; /* odd, and above the threading threshold */
    const adamw_hp hp = {3e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.5f};
    double *p = malloc(n * sizeof(double)), *m = malloc(n * sizeof(double)), *v = malloc(n * sizeof(double));
    double *g = malloc(n * sizeof(double)), *nan_fill = malloc(n * sizeof(double));
    test_fill_f64(r, p, n, 1);
    test_fill_f64(r, m, n, 0.1);
    for (size_t i = 0; i < n; i++) v[i] = 0.01 * (0.1 + hlab_rng_uniform(r));
    for (size_t i = 0; i < n; i++) nan_fill[i] = NAN;
    round_to(hk, p, n), round_to(hk, m, n), round_to(hk, v, n);
    void *dp = gc_upload(hk, p, n), *dm = gc_upload(hk, m, n), *dv = gc_upload(hk, v, n);
    void *dg = hk->alloc(hk, n * hk_dtype_size(hk->real)), *mirror = gc_upload(hk, nan_fill, n);
    char what[128];
    for (int step = 1; step <= 3; step++) {
        test_fill_f64(r, g, n, 2);
        round_to(hk, g, n);
        hk->from_host(hk, dg, hk->real, g, HK_F64, n);
        double *p_old = malloc(n * sizeof(double));
        memcpy(p_old, p, n * sizeof(double));
        adamw_reference(p, g, m, v, n, hp, step);
        /* step 1 with a distinct mirror, step 2 with mirror == params, step 3 without */
        void *mir = step == 1 ? mirror : step == 2 ? dp : NULL;
        hk->adamw(hk, dp, dg, dm, dv, mir, n, hp.lr, hp.b1, hp.b2, hp.eps, hp.wd, step, hp.grad_scale);
        double *got_p = gc_download(hk, dp, n), *got_m = gc_download(hk, dm, n), *got_v = gc_download(hk, dv, n);
        /* compare the updates, not the parameters: an update is ~lr·p, so comparing p hides errors */
        double *du_got = malloc(n * sizeof(double)), *du_ref = malloc(n * sizeof(double));
        for (size_t i = 0; i < n; i++) du_got[i] = got_p[i] - p_old[i], du_ref[i] = p[i] - p_old[i];
        snprintf(what, sizeof what, "%s adamw update, step %d", hk->name, step);
        CHECK_REL(du_got, du_ref, n, tol, what);
        snprintf(what, sizeof what, "%s adamw m, step %d", hk->name, step);
        CHECK_REL(got_m, m, n, tol, what);
        snprintf(what, sizeof what, "%s adamw v, step %d", hk->name, step);
        CHECK_REL(got_v, v, n, tol, what);
        if (step == 1) {
            double *got_mirror = gc_download(hk, mirror, n);
            CHECK(memcmp(got_mirror, got_p, n * sizeof(double)) == 0, "%s adamw: mirror != updated params", hk->name);
            free(got_mirror);
        }
        /* continue from the backend's state so rounding does not accumulate apart */
        memcpy(p, got_p, n * sizeof(double));
        memcpy(m, got_m, n * sizeof(double));
        memcpy(v, got_v, n * sizeof(double));
        free(p_old), free(got_p), free(got_m), free(got_v), free(du_got), free(du_ref);
    }
    hlab_err err = {0};
    CHECK(hk->check(hk, &err) == HLAB_OK, "%s after adamw: %s", hk->name, err.msg);
    hk->adamw(hk, dp, dg, dm, dv, NULL, n, hp.lr, hp.b1, hp.b2, hp.eps, hp.wd, 0, hp.grad_scale);
    CHECK(hk->check(hk, &err) == HLAB_EINVAL, "%s adamw with step 0: expected a sticky EINVAL", hk->name);
    hk->free(hk, dp), hk->free(hk, dm), hk->free(hk, dv), hk->free(hk, dg), hk->free(hk, mirror);
    free(p), free(m), free(v), free(g), free(nan_fill);
}

static void test_sumsq(hk_backend *hk, hlab_rng *r, double tol) {
    const size_t sizes[] = {1, 7, 8193, 100003};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        const size_t n = sizes[k];
        double *x = malloc(n * sizeof(double));
        test_fill_f64(r, x, n, 3);
        round_to(hk, x, n);
        void *dx = gc_upload(hk, x, n);
        double ref = 0;
        for (size_t i = 0; i < n; i++) ref += x[i] * x[i];
        const double got = hk->sumsq(hk, dx, n);
        CHECK(fabs(got - ref) <= tol * ref, "%s sumsq n=%zu: %.17g vs %.17g", hk->name, n, got, ref);
        hk->free(hk, dx);
        free(x);
    }
    CHECK(hk->sumsq(hk, NULL, 0) == 0, "%s sumsq of 0 elements is not 0", hk->name);
}

int main(void) {
    hlab_err err = {0};
    hk_backend *h64 = hk_cpu_create(HK_F64, 2, &err);
    CHECK(h64 != NULL, "hk_cpu_create(HK_F64): %s", err.msg);
    hk_backend *h32 = hk_cpu_create(HK_F32, 2, &err);
    CHECK(h32 != NULL, "hk_cpu_create(HK_F32): %s", err.msg);
    if (!h64 || !h32) return test_summary();
    hlab_rng r;
    hlab_rng_seed(&r, 99);
    test_sumsq(h64, &r, 1e-13);
    test_sumsq(h32, &r, 1e-12); /* sums in double over fp32 values: only the order differs */
    test_adamw(h64, &r, 1e-13);
    test_adamw(h32, &r, 1e-5);
    hk_destroy(h32);
    hk_destroy(h64);
    return test_summary();
}
