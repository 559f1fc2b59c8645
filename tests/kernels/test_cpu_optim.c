/* tests/kernels/test_cpu_optim.c — AdamW, sumsq and the step statistics on the CPU backends.
 *   - adamw over several steps against the contract's formula written out per
 *     element in double (bias-corrected moments, decoupled weight decay,
 *     grad_scale), on cpu-f64 (rel < 1e-13) and cpu (the parameter UPDATES and
 *     the moments, rel < 1e-5); the mirror receives exactly the new params, and
 *     mirror == params or NULL is accepted;
 *   - sumsq against a plain double sum, for sizes below and above the block and
 *     threading thresholds, and n = 0;
 *   - loss_reduce and grad_clip_scale against the host arithmetic the training
 *     loop used before they moved to the backend, BIT FOR BIT (sequential sums,
 *     the same float roundings): clipping on and off, several micro-batches,
 *     n_aux = 0, and a NaN scale for a non-finite loss or gradient;
 *   - adamw with scale_dev: bit-identical to the host grad_scale it holds, and a
 *     non-finite scale (NaN, inf) leaves params, m, v and mirror untouched.
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
        hk->adamw(hk, dp, dg, dm, dv, mir, n, hp.lr, hp.b1, hp.b2, hp.eps, hp.wd, step, hp.grad_scale, NULL);
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
    hk->adamw(hk, dp, dg, dm, dv, NULL, n, hp.lr, hp.b1, hp.b2, hp.eps, hp.wd, 0, hp.grad_scale, NULL);
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


/* Doubles into and out of backend memory (the step statistics are F64 everywhere). */
static void *f64_upload(hk_backend *hk, const double *x, size_t n) {
    void *d = hk->alloc(hk, n * sizeof(double));
    hk->from_host(hk, d, HK_F64, x, HK_F64, n);
    return d;
}
static void f64_download(hk_backend *hk, double *x, const void *d, size_t n) { hk->to_host(hk, x, HK_F64, d, HK_F64, n); }

static int same_bits(double a, double b) { return memcmp(&a, &b, sizeof a) == 0; }

/* hlab_model_forward's former host arithmetic: losses and aux widened to double, summed in order. */
static void test_loss_reduce(hk_backend *hk, hlab_rng *r) {
    const int sizes[][2] = {{1, 0}, {7, 0}, {4096, 3}, {32771, 12}};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        const int N = sizes[k][0], n_aux = sizes[k][1];
        double *l = malloc((size_t)N * sizeof(double)), aux[16], stat[2] = {NAN, NAN};
        for (int i = 0; i < N; i++) l[i] = 2.0 + 3.0 * hlab_rng_uniform(r);
        for (int j = 0; j < n_aux; j++) aux[j] = 0.01 * hlab_rng_uniform(r);
        round_to(hk, l, (size_t)N);
        if (n_aux) round_to(hk, aux, (size_t)n_aux);
        void *dl = gc_upload(hk, l, (size_t)N), *da = n_aux ? gc_upload(hk, aux, (size_t)n_aux) : NULL;
        void *ds = hk->alloc(hk, 2 * sizeof(double));
        hk->loss_reduce(hk, ds, dl, N, da, n_aux);
        f64_download(hk, stat, ds, 2);
        double ce = 0, aux_sum = 0;
        for (int i = 0; i < N; i++) ce += l[i];
        for (int j = 0; j < n_aux; j++) aux_sum += aux[j];
        ce /= N;
        CHECK(same_bits(stat[0], ce + aux_sum) && same_bits(stat[1], aux_sum),
              "%s loss_reduce N=%d n_aux=%d: %.17g %.17g vs %.17g %.17g", hk->name, N, n_aux, stat[0], stat[1],
              ce + aux_sum, aux_sum);
        hk->free(hk, dl), hk->free(hk, ds);
        if (da) hk->free(hk, da);
        free(l);
    }
    hlab_err err = {0};
    CHECK(hk->check(hk, &err) == HLAB_OK, "%s after loss_reduce: %s", hk->name, err.msg);
}

/* The training loop's former host arithmetic for one step's loss, norm and clip scale. */
static void clip_reference(hk_backend *hk, const void *dg, size_t n, const double *micro, int n_micro, float clip,
                           double out[3]) {
    double loss_sum = 0;
    for (int k = 0; k < n_micro; k++) {
        float l = (float)micro[k];
        loss_sum += l;
    }
    out[0] = loss_sum / n_micro;
    out[1] = sqrt(hk->sumsq(hk, dg, n)) / n_micro;
    double scale = 1.0 / n_micro;
    if (clip > 0 && out[1] > clip) scale *= clip / out[1];
    out[2] = (float)scale;
}

static void test_grad_clip_scale(hk_backend *hk, hlab_rng *r) {
    const size_t n = 100003;
    double *g = malloc(n * sizeof(double));
    test_fill_f64(r, g, n, 0.01);
    round_to(hk, g, n);
    void *dg = gc_upload(hk, g, n), *ds = hk->alloc(hk, 3 * sizeof(double));
    double micro[3] = {3.25 + hlab_rng_uniform(r), 3.5 + hlab_rng_uniform(r), 3.0 + hlab_rng_uniform(r)};
    void *dmicro = f64_upload(hk, micro, 3);
    /* norm of g is ~1.8: clip 1 clips, clip 10 does not, clip 0 is off */
    const float clips[] = {1.0f, 10.0f, 0.0f};
    for (int c = 0; c < 3; c++)
        for (int n_micro = 1; n_micro <= 3; n_micro += 2) {
            double got[3] = {NAN, NAN, NAN}, ref[3];
            hk->grad_clip_scale(hk, ds, dg, n, dmicro, n_micro, clips[c]);
            f64_download(hk, got, ds, 3);
            clip_reference(hk, dg, n, micro, n_micro, clips[c], ref);
            CHECK(same_bits(got[0], ref[0]) && same_bits(got[1], ref[1]) && same_bits(got[2], ref[2]),
                  "%s grad_clip_scale clip %g, %d micro: %.17g %.17g %.17g vs %.17g %.17g %.17g", hk->name,
                  clips[c], n_micro, got[0], got[1], got[2], ref[0], ref[1], ref[2]);
        }
    /* non-finite loss (a NaN micro-batch) or gradient (an inf element): the scale says skip */
    double bad_micro[2] = {micro[0], NAN}, got[3];
    void *dbad = f64_upload(hk, bad_micro, 2);
    hk->grad_clip_scale(hk, ds, dg, n, dbad, 2, 1.0f);
    f64_download(hk, got, ds, 3);
    CHECK(isnan(got[0]) && isfinite(got[1]) && isnan(got[2]), "%s grad_clip_scale, NaN loss: %g %g %g", hk->name,
          got[0], got[1], got[2]);
    g[n / 2] = INFINITY;
    hk->from_host(hk, dg, hk->real, g, HK_F64, n);
    hk->grad_clip_scale(hk, ds, dg, n, dmicro, 1, 1.0f);
    f64_download(hk, got, ds, 3);
    CHECK(isfinite(got[0]) && isinf(got[1]) && isnan(got[2]), "%s grad_clip_scale, inf gradient: %g %g %g", hk->name,
          got[0], got[1], got[2]);
    hk->grad_clip_scale(hk, ds, NULL, 0, dmicro, 1, 1.0f); /* no gradient: norm 0, scale 1 */
    f64_download(hk, got, ds, 3);
    CHECK(got[1] == 0 && got[2] == 1, "%s grad_clip_scale of 0 elements: norm %g scale %g", hk->name, got[1], got[2]);
    hlab_err err = {0};
    CHECK(hk->check(hk, &err) == HLAB_OK, "%s after grad_clip_scale: %s", hk->name, err.msg);
    hk->grad_clip_scale(hk, ds, dg, n, dmicro, 0, 1.0f);
    CHECK(hk->check(hk, &err) == HLAB_EINVAL, "%s grad_clip_scale with 0 micro-batches: expected EINVAL", hk->name);
    hk->free(hk, dg), hk->free(hk, ds), hk->free(hk, dmicro), hk->free(hk, dbad);
    free(g);
}

/* adamw reading its scale from backend memory: finite = the same bits as that host scale;
 * NaN or inf = nothing changes (params, m, v, mirror). */
static void test_adamw_scale_dev(hk_backend *hk, hlab_rng *r) {
    const size_t n = 20011;
    const size_t bytes = n * hk_dtype_size(hk->real);
    double *x = malloc(n * sizeof(double));
    void *dev[2][4]; /* [run][p, m, v, mirror] */
    test_fill_f64(r, x, n, 1);
    for (int k = 0; k < 2; k++) dev[k][0] = gc_upload(hk, x, n), dev[k][3] = gc_upload(hk, x, n);
    test_fill_f64(r, x, n, 0.1);
    for (int k = 0; k < 2; k++) dev[k][1] = gc_upload(hk, x, n);
    for (size_t i = 0; i < n; i++) x[i] = 0.01 * (0.1 + hlab_rng_uniform(r));
    for (int k = 0; k < 2; k++) dev[k][2] = gc_upload(hk, x, n);
    test_fill_f64(r, x, n, 2);
    void *dg = gc_upload(hk, x, n);
    const float scale = 0.3716f;
    double sd = scale;
    void *dscale = f64_upload(hk, &sd, 1);
    hk->adamw(hk, dev[0][0], dg, dev[0][1], dev[0][2], dev[0][3], n, 1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, 2, scale, NULL);
    hk->adamw(hk, dev[1][0], dg, dev[1][1], dev[1][2], dev[1][3], n, 1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, 2, 123.0f,
              dscale);
    int same = 1;
    for (int a = 0; a < 4; a++) same &= memcmp(dev[0][a], dev[1][a], bytes) == 0; /* cpu memory is host memory */
    CHECK(same, "%s adamw with scale_dev: differs from the same host grad_scale", hk->name);
    const double skips[] = {NAN, INFINITY, -INFINITY};
    for (int k = 0; k < 3; k++) {
        char *before = malloc(4 * bytes);
        for (int a = 0; a < 4; a++) memcpy(before + a * bytes, dev[1][a], bytes);
        hk->from_host(hk, dscale, HK_F64, &skips[k], HK_F64, 1);
        hk->adamw(hk, dev[1][0], dg, dev[1][1], dev[1][2], dev[1][3], n, 1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, 3, 1.0f,
                  dscale);
        int untouched = 1;
        for (int a = 0; a < 4; a++) untouched &= memcmp(before + a * bytes, dev[1][a], bytes) == 0;
        CHECK(untouched, "%s adamw with scale %g: the step was not skipped", hk->name, skips[k]);
        free(before);
    }
    hlab_err err = {0};
    CHECK(hk->check(hk, &err) == HLAB_OK, "%s after adamw with scale_dev: %s", hk->name, err.msg);
    for (int k = 0; k < 2; k++)
        for (int a = 0; a < 4; a++) hk->free(hk, dev[k][a]);
    hk->free(hk, dg), hk->free(hk, dscale);
    free(x);
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
    /* fresh backends: the step-0 case above left its sticky error */
    void (*const step_tests[])(hk_backend *, hlab_rng *) = {test_loss_reduce, test_grad_clip_scale,
                                                           test_adamw_scale_dev};
    for (size_t t = 0; t < sizeof step_tests / sizeof step_tests[0]; t++)
        for (int k = 0; k < 2; k++) {
            hk_backend *hk = hk_cpu_create(k ? HK_F32 : HK_F64, 2, &err);
            CHECK(hk != NULL, "hk_cpu_create: %s", err.msg);
            if (!hk) continue;
            step_tests[t](hk, &r);
            hk_destroy(hk);
        }
    hk_destroy(h32);
    hk_destroy(h64);
    return test_summary();
}
