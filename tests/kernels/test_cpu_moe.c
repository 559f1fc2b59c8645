/* tests/kernels/test_cpu_moe.c — hk->moe_fwd against a dense loop that runs every
 * expert on every token and weights it by the masked (and renormalised) router
 * probabilities, on cpu (fp32, rel err < 1e-5) and cpu-f64 (< 1e-12); for top-k 1
 * and 2, renorm on and off, 0 and 1 shared experts, odd sizes (C not a multiple
 * of 8). One case has two identical router rows: the tie must go to the lower
 * expert index. The aux loss is checked against the same reference.
 *
 * Conventions: inputs are random; out and aux are poisoned with NaN before each
 * run; the cache comes from hk->alloc. The CPU backend's memory is host memory,
 * so host arrays are passed directly.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "test.h"

typedef struct {
    hk_moe_dims d;
    double *inp, *wr, *w13, *w2, *ws13, *ws2;
} moe_case;

static size_t n_inp(hk_moe_dims d) { return (size_t)d.N * d.C; }
static size_t n_wr(hk_moe_dims d) { return (size_t)d.E * d.C; }
static size_t n_w13(hk_moe_dims d) { return (size_t)d.E * 2 * d.F * d.C; }
static size_t n_w2(hk_moe_dims d) { return (size_t)d.E * d.C * d.F; }
static size_t n_ws13(hk_moe_dims d) { return (size_t)d.S * 2 * d.Fs * d.C; }
static size_t n_ws2(hk_moe_dims d) { return (size_t)d.S * d.C * d.Fs; }

static double *rand_array(hlab_rng *r, size_t n, double scale) {
    double *p = malloc((n ? n : 1) * sizeof(double));
    test_fill_f64(r, p, n, scale);
    return p;
}

static void make_case(moe_case *c, hk_moe_dims d, uint64_t seed) {
    hlab_rng r;
    hlab_rng_seed(&r, seed);
    c->d = d;
    c->inp = rand_array(&r, n_inp(d), 1.0);
    c->wr = rand_array(&r, n_wr(d), 1.0);
    c->w13 = rand_array(&r, n_w13(d), 0.5);
    c->w2 = rand_array(&r, n_w2(d), 0.5);
    c->ws13 = rand_array(&r, n_ws13(d), 0.5);
    c->ws2 = rand_array(&r, n_ws2(d), 0.5);
}

static void free_case(moe_case *c) {
    free(c->inp);
    free(c->wr);
    free(c->w13);
    free(c->w2);
    free(c->ws13);
    free(c->ws2);
}

static double silu(double a) { return a / (1.0 + exp(-a)); }

/* out += scale · SwiGLU(x) for one token; w13 [2F, C], w2 [C, F] */
static void swiglu_token(double *out, double scale, const double *x, const double *w13, const double *w2, int C, int F) {
    for (int f = 0; f < F; f++) {
        double a = 0, b = 0;
        for (int c = 0; c < C; c++) {
            a += x[c] * w13[(size_t)f * C + c];
            b += x[c] * w13[(size_t)(F + f) * C + c];
        }
        double act = silu(a) * b;
        for (int c = 0; c < C; c++) out[c] += scale * act * w2[(size_t)c * F + f];
    }
}

/* The dense reference: every expert on every token, masked weights. */
static void moe_dense(const moe_case *c, double *out, double *aux) {
    const hk_moe_dims d = c->d;
    double *P = calloc(d.E, sizeof(double)), *count = calloc(d.E, sizeof(double));
    double *p = malloc(d.E * sizeof(double)), *mask = malloc(d.E * sizeof(double));
    for (int n = 0; n < d.N; n++) {
        const double *x = c->inp + (size_t)n * d.C;
        double mx = -INFINITY, sum = 0, chosen = 0;
        for (int e = 0; e < d.E; e++) {
            p[e] = 0;
            for (int k = 0; k < d.C; k++) p[e] += x[k] * c->wr[(size_t)e * d.C + k];
            mx = fmax(mx, p[e]);
        }
        for (int e = 0; e < d.E; e++) sum += p[e] = exp(p[e] - mx);
        for (int e = 0; e < d.E; e++) {
            p[e] /= sum;
            P[e] += p[e] / d.N;
            mask[e] = 0;
        }
        for (int j = 0; j < d.k; j++) { /* largest unchosen p, first index on ties */
            int best = -1;
            for (int e = 0; e < d.E; e++)
                if (mask[e] == 0 && (best < 0 || p[e] > p[best])) best = e;
            mask[best] = p[best];
            chosen += p[best];
            count[best] += 1;
        }
        double *o = out + (size_t)n * d.C;
        for (int k = 0; k < d.C; k++) o[k] = 0;
        for (int e = 0; e < d.E; e++) {
            double w = d.renorm ? mask[e] / chosen : mask[e];
            double *tmp = calloc(d.C, sizeof(double));
            swiglu_token(tmp, 1.0, x, c->w13 + (size_t)e * 2 * d.F * d.C, c->w2 + (size_t)e * d.C * d.F, d.C, d.F);
            for (int k = 0; k < d.C; k++) o[k] += w * tmp[k]; /* w = 0 for experts not chosen */
            free(tmp);
        }
        for (int s = 0; s < d.S; s++)
            swiglu_token(o, 1.0, x, c->ws13 + (size_t)s * 2 * d.Fs * d.C, c->ws2 + (size_t)s * d.C * d.Fs, d.C, d.Fs);
    }
    double a = 0;
    for (int e = 0; e < d.E; e++) a += count[e] / ((double)d.N * d.k) * P[e];
    *aux = (double)d.alpha * d.E * a;
    free(P);
    free(count);
    free(p);
    free(mask);
}

static void *to_dtype(hk_dtype t, const double *src, size_t n) {
    void *p = malloc((n ? n : 1) * hk_dtype_size(t));
    for (size_t i = 0; i < n; i++) {
        double v = src ? src[i] : NAN;
        if (t == HK_F64)
            ((double *)p)[i] = v;
        else
            ((float *)p)[i] = (float)v;
    }
    return p;
}
static void to_f64(double *dst, hk_dtype t, const void *p, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = t == HK_F64 ? ((const double *)p)[i] : (double)((const float *)p)[i];
}

static void check_case(hk_backend *hk, const moe_case *c, double tol, const char *label) {
    const hk_moe_dims d = c->d;
    const hk_dtype t = hk->real;
    void *inp = to_dtype(t, c->inp, n_inp(d)), *wr = to_dtype(t, c->wr, n_wr(d));
    void *w13 = to_dtype(t, c->w13, n_w13(d)), *w2 = to_dtype(t, c->w2, n_w2(d));
    void *ws13 = d.S ? to_dtype(t, c->ws13, n_ws13(d)) : NULL, *ws2 = d.S ? to_dtype(t, c->ws2, n_ws2(d)) : NULL;
    void *out = to_dtype(t, NULL, n_inp(d)), *aux = to_dtype(t, NULL, 1);
    hlab_err err;
    size_t bytes = hk->moe_cache_bytes(hk, d);
    void *cache = hk->alloc(hk, bytes);
    CHECK(bytes > 0 && cache != NULL, "%s: cache of %zu bytes", label, bytes);
    hk->moe_fwd(hk, out, aux, cache, inp, wr, w13, w2, ws13, ws2, d);
    CHECK(hk->check(hk, &err) == HLAB_OK, "%s: moe_fwd failed: %s", label, err.msg);

    double *got = malloc(n_inp(d) * sizeof(double)), *ref = malloc(n_inp(d) * sizeof(double));
    double got_aux, ref_aux;
    to_f64(got, t, out, n_inp(d));
    to_f64(&got_aux, t, aux, 1);
    moe_dense(c, ref, &ref_aux);
    char what[160];
    snprintf(what, sizeof what, "%s %s out", hk->name, label);
    CHECK_REL(got, ref, n_inp(d), tol, what);
    snprintf(what, sizeof what, "%s %s aux", hk->name, label);
    CHECK_REL(&got_aux, &ref_aux, 1, tol, what);

    hk->free(hk, cache);
    free(got);
    free(ref);
    free(inp);
    free(wr);
    free(w13);
    free(w2);
    free(ws13);
    free(ws2);
    free(out);
    free(aux);
}

int main(void) {
    hlab_err err;
    hk_backend *cpu32 = hk_cpu_create(HK_F32, 2, &err);
    if (!cpu32) {
        fprintf(stderr, "hk_cpu_create(f32): %s\n", err.msg);
        return 1;
    }
    hk_backend *cpu64 = hk_cpu_create(HK_F64, 2, &err);
    if (!cpu64) {
        fprintf(stderr, "hk_cpu_create(f64): %s\n", err.msg);
        return 1;
    }

    uint64_t seed = 1000;
    for (int k = 1; k <= 2; k++)
        for (int renorm = 0; renorm <= 1; renorm++)
            for (int S = 0; S <= 1; S++) {
                hk_moe_dims d = {.N = 37, .C = 13, .E = 5, .k = k, .F = 11, .S = S, .Fs = 7, .renorm = renorm,
                                 .alpha = 0.3f};
                moe_case c;
                make_case(&c, d, seed++);
                char label[96];
                snprintf(label, sizeof label, "k=%d renorm=%d S=%d", k, renorm, S);
                check_case(cpu32, &c, 1e-5, label);
                check_case(cpu64, &c, 1e-12, label);
                free_case(&c);
            }

    /* ties: experts 1 and 3 have the same router row, so equal probabilities on
     * every token; the reference picks expert 1 first, as the contract says */
    {
        hk_moe_dims d = {.N = 29, .C = 9, .E = 4, .k = 2, .F = 6, .S = 0, .Fs = 0, .renorm = 0, .alpha = 0.1f};
        moe_case c;
        make_case(&c, d, 77);
        memcpy(c.wr + 3 * d.C, c.wr + 1 * d.C, d.C * sizeof(double));
        for (int kk = 1; kk <= 2; kk++) {
            c.d.k = kk;
            char label[64];
            snprintf(label, sizeof label, "tied router rows, k=%d", kk);
            check_case(cpu32, &c, 1e-5, label);
            check_case(cpu64, &c, 1e-12, label);
        }
        free_case(&c);
    }

    /* a larger case, with many rows per expert (exercises the threaded paths) */
    {
        hk_moe_dims d = {.N = 300, .C = 24, .E = 8, .k = 2, .F = 20, .S = 1, .Fs = 16, .renorm = 1, .alpha = 0.01f};
        moe_case c;
        make_case(&c, d, 4242);
        check_case(cpu32, &c, 1e-5, "N=300 E=8");
        check_case(cpu64, &c, 1e-12, "N=300 E=8");
        free_case(&c);
    }

    /* bad dims are a sticky error, not a crash */
    {
        hk_backend *hk = hk_cpu_create(HK_F32, 1, &err);
        hk_moe_dims d = {.N = 4, .C = 3, .E = 2, .k = 3, .F = 2, .S = 0, .Fs = 0, .renorm = 1, .alpha = 0.01f};
        size_t bytes = hk->moe_cache_bytes(hk, d);
        CHECK(bytes == 0 && hk->check(hk, &err) == HLAB_EINVAL, "k > E must fail with EINVAL (got %zu bytes)", bytes);
        hk_destroy(hk);
    }

    hk_destroy(cpu32);
    hk_destroy(cpu64);
    return test_summary();
}
