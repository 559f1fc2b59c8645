/* tests/kernels/test_cpu_attention.c — causal attention over packed qkv (GQA,
 * sliding window) on the CPU backends:
 *   - forward (out and lse) against a naive full-matrix softmax reference in
 *     double, with the mask written out explicitly;
 *   - attention_bwd against central finite differences of L = Σ wout·out on
 *     the cpu-f64 backend (gradcheck.h), for every element of qkv;
 *   - the fp32 backend against the f64 backend (out, lse, dqkv; rel < 1e-5).
 * Shapes: odd T, GQA groups 1..3, window off, smaller than T, 1, and > T; one
 * case with large scores (softmax stability); T = 131 crosses the kernel's
 * 64-row query tiles (with windows narrower and wider than a tile), and there
 * a random sample of the qkv elements is finite-differenced.
 * Conventions: random inputs, outputs poisoned with NaN before each op.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "test.h"
#include "gradcheck.h"

#define GRAD_TOL 1e-6
#define AGREE_TOL 1e-5

typedef struct {
    hk_backend *hk;
    hk_attn_dims d;
    double *qkv, *out, *lse, *wout;
} attn_case;

static size_t qkv_elems(hk_attn_dims d) { return (size_t)d.B * d.T * (d.Hq + 2 * d.Hkv) * d.dh; }
static size_t out_elems(hk_attn_dims d) { return (size_t)d.B * d.T * d.Hq * d.dh; }
static size_t lse_elems(hk_attn_dims d) { return (size_t)d.B * d.Hq * d.T; }

static double attn_loss(void *u, const double *x) {
    attn_case *c = u;
    (void)x;
    c->hk->attention_fwd(c->hk, c->out, c->lse, c->qkv, c->d);
    return gc_dot(c->wout, c->out, out_elems(c->d));
}

/* The textbook computation: full T×T scores, −inf outside the causal window. */
static void naive_attention(const double *qkv, hk_attn_dims d, double *out, double *lse) {
    const int W = (d.Hq + 2 * d.Hkv) * d.dh, group = d.Hq / d.Hkv;
    double *s = malloc((size_t)d.T * sizeof(double));
    for (int b = 0; b < d.B; b++)
        for (int h = 0; h < d.Hq; h++)
            for (int i = 0; i < d.T; i++) {
                const double *q = qkv + ((size_t)b * d.T + i) * W + (size_t)h * d.dh;
                double mx = -INFINITY;
                for (int j = 0; j < d.T; j++) {
                    const int visible = j <= i && (d.window == 0 || i - j < d.window);
                    const double *k = qkv + ((size_t)b * d.T + j) * W + (size_t)(d.Hq + h / group) * d.dh;
                    double dot = 0;
                    for (int c = 0; c < d.dh; c++) dot += q[c] * k[c];
                    s[j] = visible ? dot / sqrt((double)d.dh) : -INFINITY;
                    mx = fmax(mx, s[j]);
                }
                double sum = 0;
                for (int j = 0; j < d.T; j++) sum += exp(s[j] - mx);
                double *o = out + ((size_t)b * d.T + i) * d.Hq * d.dh + (size_t)h * d.dh;
                for (int c = 0; c < d.dh; c++) {
                    double acc = 0;
                    for (int j = 0; j < d.T; j++) {
                        const double *v =
                            qkv + ((size_t)b * d.T + j) * W + (size_t)(d.Hq + d.Hkv + h / group) * d.dh;
                        acc += exp(s[j] - mx) / sum * v[c];
                    }
                    o[c] = acc;
                }
                lse[((size_t)b * d.Hq + h) * d.T + i] = mx + log(sum);
            }
    free(s);
}

static double *alloc_nan(size_t n) {
    double *x = malloc(n * sizeof(double));
    for (size_t i = 0; i < n; i++) x[i] = NAN;
    return x;
}

/* max_checks: 0 finite-differences every qkv element, else that many sampled ones. */
static void run_case(hk_backend *h64, hk_backend *h32, hlab_rng *r, hk_attn_dims d, double scale,
                     size_t max_checks) {
    char what[160], tag[96];
    snprintf(tag, sizeof tag, "B=%d T=%d Hq=%d Hkv=%d dh=%d window=%d", d.B, d.T, d.Hq, d.Hkv, d.dh, d.window);
    const size_t nq = qkv_elems(d), no = out_elems(d), nl = lse_elems(d);
    attn_case c = {h64, d, malloc(nq * sizeof(double)), alloc_nan(no), alloc_nan(nl), malloc(no * sizeof(double))};
    test_fill_f64(r, c.qkv, nq, scale);
    test_fill_f64(r, c.wout, no, 1);
    double *out_ref = alloc_nan(no), *lse_ref = alloc_nan(nl), *dqkv = alloc_nan(nq);

    naive_attention(c.qkv, d, out_ref, lse_ref);
    h64->attention_fwd(h64, c.out, c.lse, c.qkv, d);
    snprintf(what, sizeof what, "attention out vs naive (%s)", tag);
    CHECK_REL(c.out, out_ref, no, 1e-13, what);
    snprintf(what, sizeof what, "attention lse vs naive (%s)", tag);
    CHECK_REL(c.lse, lse_ref, nl, 1e-13, what);

    h64->attention_bwd(h64, dqkv, c.wout, c.out, c.lse, c.qkv, d);
    snprintf(what, sizeof what, "attention dqkv (%s)", tag);
    GC_EXPECT(gc_check(attn_loss, &c, c.qkv, dqkv, nq, GC_EPS, max_checks, r), GRAD_TOL, what);

    void *qkv32 = gc_upload(h32, c.qkv, nq), *out32 = gc_upload(h32, out_ref, no);
    void *lse32 = gc_upload(h32, lse_ref, nl), *wout32 = gc_upload(h32, c.wout, no);
    double *poison = alloc_nan(nq);
    void *dqkv32 = gc_upload(h32, poison, nq);
    h32->from_host(h32, out32, h32->real, poison, HK_F64, no);
    h32->from_host(h32, lse32, h32->real, poison, HK_F64, nl);
    h32->attention_fwd(h32, out32, lse32, qkv32, d);
    h32->attention_bwd(h32, dqkv32, wout32, out32, lse32, qkv32, d);
    double *o = gc_download(h32, out32, no), *l = gc_download(h32, lse32, nl), *g = gc_download(h32, dqkv32, nq);
    snprintf(what, sizeof what, "attention out, cpu vs naive (%s)", tag);
    CHECK_REL(o, out_ref, no, AGREE_TOL, what);
    snprintf(what, sizeof what, "attention lse, cpu vs naive (%s)", tag);
    CHECK_REL(l, lse_ref, nl, AGREE_TOL, what);
    snprintf(what, sizeof what, "attention dqkv, cpu vs cpu-f64 (%s)", tag);
    CHECK_REL(g, dqkv, nq, AGREE_TOL, what);

    free(o), free(l), free(g), free(poison);
    h32->free(h32, qkv32), h32->free(h32, out32), h32->free(h32, lse32), h32->free(h32, wout32);
    h32->free(h32, dqkv32);
    free(c.qkv), free(c.out), free(c.lse), free(c.wout), free(out_ref), free(lse_ref), free(dqkv);
}

int main(void) {
    hlab_err err = {0};
    hk_backend *h64 = hk_cpu_create(HK_F64, 2, &err);
    CHECK(h64 != NULL, "hk_cpu_create(HK_F64): %s", err.msg);
    hk_backend *h32 = hk_cpu_create(HK_F32, 2, &err);
    CHECK(h32 != NULL, "hk_cpu_create(HK_F32): %s", err.msg);
    if (!h64 || !h32) return test_summary();
    hlab_rng r;
    hlab_rng_seed(&r, 7);
    /* B, T, Hq, Hkv, dh, window */
    run_case(h64, h32, &r, (hk_attn_dims){2, 7, 4, 2, 5, 0}, 1.0, 0);    /* full causal, GQA group 2 */
    run_case(h64, h32, &r, (hk_attn_dims){2, 9, 6, 2, 3, 3}, 1.0, 0);    /* window < T, group 3 */
    run_case(h64, h32, &r, (hk_attn_dims){1, 8, 3, 3, 4, 1}, 1.0, 0);    /* window 1: each query sees itself */
    run_case(h64, h32, &r, (hk_attn_dims){1, 11, 2, 1, 7, 20}, 1.0, 0);  /* window > T == full causal; MQA */
    run_case(h64, h32, &r, (hk_attn_dims){1, 13, 2, 1, 6, 5}, 4.0, 0);   /* large scores: stable softmax */
    run_case(h64, h32, &r, (hk_attn_dims){1, 131, 2, 1, 3, 0}, 1.0, 150);  /* several query tiles */
    run_case(h64, h32, &r, (hk_attn_dims){1, 131, 4, 2, 5, 23}, 1.0, 150); /* window narrower than a tile */
    run_case(h64, h32, &r, (hk_attn_dims){1, 131, 2, 2, 4, 97}, 1.0, 150); /* window wider than a tile */

    /* bad dims are a sticky error, not a crash */
    CHECK(h32->check(h32, &err) == HLAB_OK, "fp32 backend error: %s", err.msg);
    h32->attention_fwd(h32, NULL, NULL, NULL, (hk_attn_dims){1, 4, 3, 2, 4, 0});
    CHECK(h32->check(h32, &err) == HLAB_EINVAL, "attention_fwd with Hq %% Hkv != 0: expected a sticky EINVAL");
    CHECK(h64->check(h64, &err) == HLAB_OK, "f64 backend error: %s", err.msg);
    hk_destroy(h32);
    hk_destroy(h64);
    return test_summary();
}
