/* tests/kernels/test_cpu_ssd.c — the chunked SSD scan (hk->ssd_fwd / ssd_bwd) equals
 * the plain sequential recurrence (ssd_sequential_fwd / bwd), forward and every
 * gradient, on the cpu (fp32, rel err < 1e-5) and cpu-f64 (< 1e-10) backends, for
 * chunk lengths that divide T and that do not, with one and two groups.
 *
 * Conventions: inputs are random (decays moderate, so the state carried between
 * chunks matters); written outputs are poisoned with NaN before each run; the
 * accumulated (+=) parameter grads start from a random offset that is subtracted
 * afterwards. The CPU backend's memory is host memory, so host arrays are passed directly.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "test.h"

/* The sequential reference ops (kernels/cpu/cpu.h declares them per build). */
#define SSD_SEQ_DECL(prefix)                                                                                         \
    void prefix##ssd_sequential_fwd(hk_backend *hk, void *y, void *states, const void *xbc, const void *dt,         \
                                    const void *dt_bias, const void *A_log, const void *Dskip, hk_ssd_dims d);      \
    void prefix##ssd_sequential_bwd(hk_backend *hk, void *dxbc, void *ddt, void *ddt_bias, void *dA_log,            \
                                    void *dDskip, const void *dy, const void *states, const void *xbc,              \
                                    const void *dt, const void *dt_bias, const void *A_log, const void *Dskip,      \
                                    hk_ssd_dims d);
SSD_SEQ_DECL(hk_cpu32_)
SSD_SEQ_DECL(hk_cpu64_)

typedef struct {
    hk_ssd_dims d;
    double *xbc, *dt, *dt_bias, *A_log, *Dskip, *dy, *offset; /* offset: start value of the += grads */
} ssd_case;

typedef struct {
    double *y, *dxbc, *ddt, *ddt_bias, *dA_log, *dDskip;
} ssd_result;

static size_t n_xbc(hk_ssd_dims d) { return (size_t)d.B * d.T * ((size_t)d.H * d.P + 2 * (size_t)d.G * d.N); }
static size_t n_y(hk_ssd_dims d) { return (size_t)d.B * d.T * d.H * d.P; }
static size_t n_dt(hk_ssd_dims d) { return (size_t)d.B * d.T * d.H; }
static size_t n_states(hk_ssd_dims d) {
    return (size_t)d.B * ((d.T + d.chunk - 1) / d.chunk) * d.H * d.P * d.N;
}

/* host array of dtype t holding src (or NaN when src is NULL) */
static void *dev_array(hk_dtype t, const double *src, size_t n) {
    void *p = malloc(n * (t == HK_F64 ? sizeof(double) : sizeof(float)));
    for (size_t i = 0; i < n; i++) {
        double v = src ? src[i] : NAN;
        if (t == HK_F64)
            ((double *)p)[i] = v;
        else
            ((float *)p)[i] = (float)v;
    }
    return p;
}
static double *host_copy(hk_dtype t, const void *p, size_t n) {
    double *out = malloc(n * sizeof(double));
    for (size_t i = 0; i < n; i++) out[i] = t == HK_F64 ? ((const double *)p)[i] : (double)((const float *)p)[i];
    return out;
}

static void make_case(ssd_case *c, hk_ssd_dims d, uint64_t seed) {
    hlab_rng r;
    hlab_rng_seed(&r, seed);
    c->d = d;
    c->xbc = malloc(n_xbc(d) * sizeof(double));
    c->dt = malloc(n_dt(d) * sizeof(double));
    c->dy = malloc(n_y(d) * sizeof(double));
    c->dt_bias = malloc(d.H * sizeof(double));
    c->A_log = malloc(d.H * sizeof(double));
    c->Dskip = malloc(d.H * sizeof(double));
    c->offset = malloc(d.H * sizeof(double));
    test_fill_f64(&r, c->xbc, n_xbc(d), 1.0);
    test_fill_f64(&r, c->dt, n_dt(d), 1.0);
    test_fill_f64(&r, c->dy, n_y(d), 1.0);
    test_fill_f64(&r, c->Dskip, d.H, 1.0);
    test_fill_f64(&r, c->offset, d.H, 1.0);
    for (int h = 0; h < d.H; h++) {
        c->dt_bias[h] = -1.0 + hlab_rng_uniform(&r);                /* Δ ≈ 0.1 .. 1.3 */
        c->A_log[h] = log(0.05 + 0.5 * hlab_rng_uniform(&r));      /* |A| in [0.05, 0.55] */
    }
}

static void free_case(ssd_case *c) {
    free(c->xbc);
    free(c->dt);
    free(c->dy);
    free(c->dt_bias);
    free(c->A_log);
    free(c->Dskip);
    free(c->offset);
}

static void free_result(ssd_result *r) {
    free(r->y);
    free(r->dxbc);
    free(r->ddt);
    free(r->ddt_bias);
    free(r->dA_log);
    free(r->dDskip);
}

/* Runs fwd + bwd, chunked (hk's ops) or sequential (the reference), into host doubles. */
static void run_ssd(hk_backend *hk, int chunked, const ssd_case *c, ssd_result *res) {
    const hk_dtype t = hk->real;
    const hk_ssd_dims d = c->d;
    void *xbc = dev_array(t, c->xbc, n_xbc(d)), *dt = dev_array(t, c->dt, n_dt(d)), *dy = dev_array(t, c->dy, n_y(d));
    void *dt_bias = dev_array(t, c->dt_bias, d.H), *A_log = dev_array(t, c->A_log, d.H);
    void *Dskip = dev_array(t, c->Dskip, d.H);
    void *y = dev_array(t, NULL, n_y(d)), *dxbc = dev_array(t, NULL, n_xbc(d)), *ddt = dev_array(t, NULL, n_dt(d));
    void *states = chunked ? dev_array(t, NULL, n_states(d)) : NULL;
    void *ddt_bias = dev_array(t, c->offset, d.H), *dA_log = dev_array(t, c->offset, d.H);
    void *dDskip = dev_array(t, c->offset, d.H);
    if (chunked) {
        hk->ssd_fwd(hk, y, states, xbc, dt, dt_bias, A_log, Dskip, d);
        hk->ssd_bwd(hk, dxbc, ddt, ddt_bias, dA_log, dDskip, dy, states, xbc, dt, dt_bias, A_log, Dskip, d);
    } else if (t == HK_F64) {
        hk_cpu64_ssd_sequential_fwd(hk, y, NULL, xbc, dt, dt_bias, A_log, Dskip, d);
        hk_cpu64_ssd_sequential_bwd(hk, dxbc, ddt, ddt_bias, dA_log, dDskip, dy, NULL, xbc, dt, dt_bias, A_log,
                                      Dskip, d);
    } else {
        hk_cpu32_ssd_sequential_fwd(hk, y, NULL, xbc, dt, dt_bias, A_log, Dskip, d);
        hk_cpu32_ssd_sequential_bwd(hk, dxbc, ddt, ddt_bias, dA_log, dDskip, dy, NULL, xbc, dt, dt_bias, A_log,
                                      Dskip, d);
    }
    hlab_err err = {0};
    CHECK(hk->check(hk, &err) == HLAB_OK, "ssd ops failed: %s", err.msg);
    res->y = host_copy(t, y, n_y(d));
    res->dxbc = host_copy(t, dxbc, n_xbc(d));
    res->ddt = host_copy(t, ddt, n_dt(d));
    res->ddt_bias = host_copy(t, ddt_bias, d.H);
    res->dA_log = host_copy(t, dA_log, d.H);
    res->dDskip = host_copy(t, dDskip, d.H);
    for (int h = 0; h < d.H; h++) {
        res->ddt_bias[h] -= c->offset[h];
        res->dA_log[h] -= c->offset[h];
        res->dDskip[h] -= c->offset[h];
    }
    void *bufs[] = {xbc, dt, dy, dt_bias, A_log, Dskip, y, dxbc, ddt, states, ddt_bias, dA_log, dDskip};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
}

static void compare_case(hk_backend *hk, hk_ssd_dims d, double tol, uint64_t seed) {
    ssd_case c;
    make_case(&c, d, seed);
    ssd_result chunked, seq;
    run_ssd(hk, 1, &c, &chunked);
    run_ssd(hk, 0, &c, &seq);
    char what[160];
#define CMP(field, n)                                                                                            \
    do {                                                                                                         \
        snprintf(what, sizeof what, "%s T=%d Q=%d G=%d %s", hk->real == HK_F64 ? "f64" : "f32", d.T, d.chunk, d.G, \
                 #field);                                                                                        \
        CHECK_REL(chunked.field, (const double *)seq.field, (n), tol, what);                                    \
    } while (0)
    CMP(y, n_y(d));
    CMP(dxbc, n_xbc(d));
    CMP(ddt, n_dt(d));
    CMP(ddt_bias, (size_t)d.H);
    CMP(dA_log, (size_t)d.H);
    CMP(dDskip, (size_t)d.H);
#undef CMP
    free_result(&chunked);
    free_result(&seq);
    free_case(&c);
}

/* The comparison is only sharp if the state carried between chunks is not
 * negligible with these decays: keep x only in chunk 0; every later y then comes
 * through the carried state alone and must be clearly non-zero. */
static void check_state_matters(hk_backend *hk) {
    hk_ssd_dims d = {.B = 1, .T = 24, .H = 2, .P = 3, .G = 1, .N = 4, .chunk = 8};
    ssd_case c;
    make_case(&c, d, 99);
    const size_t W = (size_t)d.H * d.P + 2 * (size_t)d.G * d.N;
    for (int t = d.chunk; t < d.T; t++)
        for (int k = 0; k < d.H * d.P; k++) c.xbc[(size_t)t * W + k] = 0;
    ssd_result res;
    run_ssd(hk, 1, &c, &res);
    double late = 0, all = 0;
    for (size_t i = 0; i < n_y(d); i++) {
        all += fabs(res.y[i]);
        if (i >= (size_t)d.chunk * d.H * d.P) late += fabs(res.y[i]);
    }
    CHECK(late > 0.05 * all, "the state carried out of chunk 0 barely reaches later chunks (%.3e of %.3e)", late, all);
    free_result(&res);
    free_case(&c);
}

int main(void) {
    hlab_err err = {0};
    const hk_dtype dtypes[2] = {HK_F64, HK_F32};
    const double tols[2] = {1e-10, 1e-5};
    for (int k = 0; k < 2; k++) {
        hk_backend *hk = hk_cpu_create(dtypes[k], 2, &err);
        CHECK(hk != NULL, "hk_cpu_create: %s", err.msg);
        if (!hk) continue;
        /* {T, Q}: Q dividing T or not, Q > T, Q = 1; T = 150 takes the threaded decay loops (L >= 64) */
        const int cases[][2] = {{37, 8}, {37, 16}, {37, 37}, {37, 64}, {32, 8}, {37, 1}, {150, 64}, {150, 100}};
        uint64_t seed = 1;
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            for (int G = 1; G <= 2; G++) {
                hk_ssd_dims d = {.B = 2, .T = cases[i][0], .H = 4, .P = 5, .G = G, .N = 7, .chunk = cases[i][1]};
                compare_case(hk, d, tols[k], seed++);
            }
        }
        if (dtypes[k] == HK_F64) check_state_matters(hk);
        hk_destroy(hk);
    }

    /* bad dims: a sticky HLAB_EINVAL, not a crash */
    hk_backend *hk = hk_cpu_create(HK_F32, 1, &err);
    if (hk) {
        hk_ssd_dims bad = {.B = 1, .T = 4, .H = 3, .P = 2, .G = 2, .N = 2, .chunk = 2};
        float buf[64] = {0};
        hk->ssd_fwd(hk, buf, buf, buf, buf, buf, buf, buf, bad);
        CHECK(hk->check(hk, &err) == HLAB_EINVAL, "ssd_fwd with H %% G != 0 should fail with HLAB_EINVAL");
        CHECK(strstr(err.msg, "ssd_fwd") != NULL, "error message should name the op: '%s'", err.msg);
        hk_destroy(hk);
    }
    return test_summary();
}
