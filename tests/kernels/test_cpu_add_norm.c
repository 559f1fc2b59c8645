/* tests/kernels/test_cpu_add_norm.c — the residual add fused with RMSNorm / LayerNorm
 * (add_rmsnorm_fwd, add_layernorm_fwd) on the CPU backends:
 *   - bit for bit equal to add() followed by rmsnorm_fwd / layernorm_fwd, on cpu and
 *     cpu-f64, at an odd size, in place (res_out aliasing res_in, then x), and at a size
 *     above the threading threshold on 2 threads;
 *   - the backward it relies on (no op of its own): with L = Σ wout·out + Σ wres·res_out,
 *     dres = wres, then the norm's backward with accum = 1 on res_out gives d(res_in) =
 *     d(x) = dres; checked against central finite differences on cpu-f64 (gradcheck.h),
 *     together with dw (and db).
 * Outputs are poisoned with NaN before every op. CPU memory is host memory.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "test.h"
#include "gradcheck.h"

#define GRAD_TOL 1e-6
static const float EPS = 1e-5f;

static void *alloc_fill(hk_backend *hk, hlab_rng *r, size_t n, double scale, double shift) {
    double *h = malloc(n * sizeof(double));
    test_fill_f64(r, h, n, scale);
    for (size_t i = 0; i < n; i++) h[i] += shift;
    void *p = gc_upload(hk, h, n);
    free(h);
    return p;
}

static void *alloc_nan(hk_backend *hk, size_t n) {
    double *h = malloc(n * sizeof(double));
    for (size_t i = 0; i < n; i++) h[i] = NAN;
    void *p = gc_upload(hk, h, n);
    free(h);
    return p;
}

static void fill_nan(hk_backend *hk, void *p, size_t n) {
    void *tmp = alloc_nan(hk, n);
    memcpy(p, tmp, n * hk_dtype_size(hk->real));
    hk->free(hk, tmp);
}

static void copy_buf(hk_backend *hk, void *dst, const void *src, size_t n) { memcpy(dst, src, n * hk_dtype_size(hk->real)); }

static int same_bits(hk_backend *hk, const void *a, const void *b, size_t n) {
    return memcmp(a, b, n * hk_dtype_size(hk->real)) == 0;
}

/* The fused op against add + norm on one backend, bit for bit; also in place. */
static void check_equal(hk_backend *hk, hlab_rng *r, int layer, int N, int C, const char *tag) {
    const size_t n = (size_t)N * C;
    const char *name = layer ? "add_layernorm_fwd" : "add_rmsnorm_fwd";
    void *res_in = alloc_fill(hk, r, n, 2, 0.7), *x = alloc_fill(hk, r, n, 1, 0);
    void *w = alloc_fill(hk, r, (size_t)C, 1, 0), *b = alloc_fill(hk, r, (size_t)C, 1, 0);
    void *res_ref = alloc_nan(hk, n), *out_ref = alloc_nan(hk, n), *mean_ref = alloc_nan(hk, N), *rstd_ref = alloc_nan(hk, N);
    void *res = alloc_nan(hk, n), *out = alloc_nan(hk, n), *mean = alloc_nan(hk, N), *rstd = alloc_nan(hk, N);

    hk->add(hk, res_ref, res_in, x, n);
    if (layer) hk->layernorm_fwd(hk, out_ref, mean_ref, rstd_ref, res_ref, w, b, N, C, EPS);
    else hk->rmsnorm_fwd(hk, out_ref, rstd_ref, res_ref, w, N, C, EPS);

    /* out of place, then res_out aliasing res_in, then aliasing x */
    for (int alias = 0; alias < 3; alias++) {
        void *dst = res;
        if (alias == 1) copy_buf(hk, dst, res_in, n);
        else if (alias == 2) copy_buf(hk, dst, x, n);
        else fill_nan(hk, dst, n);
        const void *a_in = alias == 1 ? dst : res_in, *x_in = alias == 2 ? dst : x;
        fill_nan(hk, out, n);
        fill_nan(hk, mean, N);
        fill_nan(hk, rstd, N);
        if (layer) hk->add_layernorm_fwd(hk, dst, out, mean, rstd, a_in, x_in, w, b, N, C, EPS);
        else hk->add_rmsnorm_fwd(hk, dst, out, rstd, a_in, x_in, w, N, C, EPS);
        static const char *const how[3] = {"out of place", "res_out = res_in", "res_out = x"};
        CHECK(same_bits(hk, dst, res_ref, n), "%s %s %s (%s, N=%d C=%d): res_out differs from add()", hk->name, name,
              how[alias], tag, N, C);
        CHECK(same_bits(hk, out, out_ref, n), "%s %s %s (%s, N=%d C=%d): out differs from add + norm", hk->name,
              name, how[alias], tag, N, C);
        CHECK(same_bits(hk, rstd, rstd_ref, N), "%s %s %s (%s): rstd differs", hk->name, name, how[alias], tag);
        if (layer) CHECK(same_bits(hk, mean, mean_ref, N), "%s %s %s (%s): mean differs", hk->name, name, how[alias], tag);
    }
    void *bufs[] = {res_in, x, w, b, res_ref, out_ref, mean_ref, rstd_ref, res, out, mean, rstd};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) hk->free(hk, bufs[i]);
}

/* ---- gradient of the composition (cpu-f64) ---------------------------------------- */
typedef struct {
    hk_backend *hk;
    int N, C, layer;
    double *res_in, *x, *w, *b, *res_out, *out, *mean, *rstd, *wout, *wres;
} an_case;

static double an_loss(void *u, const double *ignored) {
    an_case *c = u;
    (void)ignored;
    const size_t n = (size_t)c->N * c->C;
    if (c->layer)
        c->hk->add_layernorm_fwd(c->hk, c->res_out, c->out, c->mean, c->rstd, c->res_in, c->x, c->w, c->b, c->N, c->C,
                                 EPS);
    else
        c->hk->add_rmsnorm_fwd(c->hk, c->res_out, c->out, c->rstd, c->res_in, c->x, c->w, c->N, c->C, EPS);
    return gc_dot(c->wout, c->out, n) + gc_dot(c->wres, c->res_out, n);
}

static double *host_rand(hlab_rng *r, size_t n, double scale) {
    double *p = malloc(n * sizeof(double));
    test_fill_f64(r, p, n, scale);
    return p;
}

static void check_grad(hk_backend *h64, hlab_rng *r, int layer) {
    const int N = 7, C = 19;
    const size_t n = (size_t)N * C;
    an_case c = {h64, N, C, layer, host_rand(r, n, 2), host_rand(r, n, 1), host_rand(r, C, 1), host_rand(r, C, 1),
                 malloc(n * sizeof(double)), malloc(n * sizeof(double)), malloc(N * sizeof(double)),
                 malloc(N * sizeof(double)), host_rand(r, n, 1), host_rand(r, n, 1)};
    for (size_t i = 0; i < n; i++) c.res_in[i] += 0.5; /* a mean offset: LayerNorm's centring matters */
    an_loss(&c, NULL);
    /* the model's backward: dres = the downstream residual gradient, then the norm adds into it */
    double *dres = malloc(n * sizeof(double)), *dw = calloc(C, sizeof(double)), *db = calloc(C, sizeof(double));
    memcpy(dres, c.wres, n * sizeof(double));
    if (layer) h64->layernorm_bwd(h64, dres, dw, db, c.wout, c.res_out, c.w, c.mean, c.rstd, N, C, 1);
    else h64->rmsnorm_bwd(h64, dres, dw, c.wout, c.res_out, c.w, c.rstd, N, C, 1);
    const char *name = layer ? "add_layernorm" : "add_rmsnorm";
    char what[64];
    snprintf(what, sizeof what, "%s d(res_in)", name);
    GC_EXPECT(gc_check(an_loss, &c, c.res_in, dres, n, GC_EPS, 0, NULL), GRAD_TOL, what);
    snprintf(what, sizeof what, "%s d(x)", name);
    GC_EXPECT(gc_check(an_loss, &c, c.x, dres, n, GC_EPS, 0, NULL), GRAD_TOL, what);
    snprintf(what, sizeof what, "%s dw", name);
    GC_EXPECT(gc_check(an_loss, &c, c.w, dw, C, GC_EPS, 0, NULL), GRAD_TOL, what);
    if (layer) GC_EXPECT(gc_check(an_loss, &c, c.b, db, C, GC_EPS, 0, NULL), GRAD_TOL, "add_layernorm db");
    double *all[] = {c.res_in, c.x, c.w, c.b, c.res_out, c.out, c.mean, c.rstd, c.wout, c.wres, dres, dw, db};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) free(all[i]);
}

int main(void) {
    hlab_err err = {0};
    hk_backend *h64 = hk_cpu_create(HK_F64, 2, &err);
    CHECK(h64 != NULL, "hk_cpu_create(HK_F64): %s", err.msg);
    hk_backend *h32 = hk_cpu_create(HK_F32, 2, &err);
    CHECK(h32 != NULL, "hk_cpu_create(HK_F32): %s", err.msg);
    if (!h64 || !h32) return test_summary();
    hlab_rng r;
    hlab_rng_seed(&r, 4242);
    for (int layer = 0; layer < 2; layer++) {
        check_equal(h32, &r, layer, 9, 21, "odd");
        check_equal(h64, &r, layer, 9, 21, "odd");
        check_equal(h32, &r, layer, 1100, 1000, "threaded"); /* above the norms' 2^20-element threading threshold */
        check_grad(h64, &r, layer);
    }
    CHECK(h32->check(h32, &err) == HLAB_OK, "fp32 backend error: %s", err.msg);
    CHECK(h64->check(h64, &err) == HLAB_OK, "f64 backend error: %s", err.msg);
    hk_destroy(h32);
    hk_destroy(h64);
    return test_summary();
}
