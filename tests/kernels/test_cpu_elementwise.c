/* tests/kernels/test_cpu_elementwise.c — the elementwise and parallel-fusion ops:
 * add and axpby (plain, out aliasing an input, b = NULL), concat_fwd/bwd and
 * gate_fwd/bwd. Forwards against the direct formulas on cpu (fp32, rel err
 * < 1e-6) and cpu-f64 (< 1e-14); concat_bwd and gate_bwd against central finite
 * differences of Σ dout·out on cpu-f64. add and axpby are linear with no bwd op
 * (the model's backward applies them to the gradients directly).
 *
 * Conventions: inputs are random; written outputs are poisoned with NaN before
 * each run. The CPU backend's memory is host memory, so host arrays are passed directly.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "test.h"

static double sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }

/* host array of the backend's dtype holding src (NaN when src is NULL) */
static void *dev(hk_backend *hk, const double *src, size_t n) {
    void *p = malloc((n ? n : 1) * hk_dtype_size(hk->real));
    for (size_t i = 0; i < n; i++) {
        double v = src ? src[i] : NAN;
        if (hk->real == HK_F64)
            ((double *)p)[i] = v;
        else
            ((float *)p)[i] = (float)v;
    }
    return p;
}
/* host copy as double (of the backend's rounding of src when src is its input) */
static double *host(hk_backend *hk, const void *p, size_t n) {
    double *o = malloc((n ? n : 1) * sizeof(double));
    for (size_t i = 0; i < n; i++) o[i] = hk->real == HK_F64 ? ((const double *)p)[i] : ((const float *)p)[i];
    return o;
}

static double *rand_array(hlab_rng *r, size_t n, double scale) {
    double *p = calloc(n ? n : 1, sizeof(double));
    test_fill_f64(r, p, n, scale);
    return p;
}

static double fwd_tol(hk_backend *hk) { return hk->real == HK_F64 ? 1e-14 : 1e-6; }

static void check_add_axpby(hk_backend *hk, size_t n, uint64_t seed) {
    hlab_rng r;
    hlab_rng_seed(&r, seed);
    double *a0 = rand_array(&r, n, 1.0), *b0 = rand_array(&r, n, 1.0), *ref = malloc(n * sizeof(double));
    void *a = dev(hk, a0, n), *b = dev(hk, b0, n), *out = dev(hk, NULL, n);
    double *ar = host(hk, a, n), *br = host(hk, b, n); /* the inputs as the backend sees them */
    const float alpha = 0.75f, beta = -1.25f;
    char what[96];

    hk->add(hk, out, a, b, n);
    double *got = host(hk, out, n);
    for (size_t i = 0; i < n; i++) ref[i] = ar[i] + br[i];
    snprintf(what, sizeof what, "%s add n=%zu", hk->name, n);
    CHECK_REL(got, ref, n, fwd_tol(hk), what);
    free(got);

    hk->axpby(hk, out, alpha, a, beta, b, n);
    got = host(hk, out, n);
    for (size_t i = 0; i < n; i++) ref[i] = alpha * ar[i] + beta * br[i];
    snprintf(what, sizeof what, "%s axpby n=%zu", hk->name, n);
    CHECK_REL(got, ref, n, fwd_tol(hk), what);
    free(got);

    void *poison = dev(hk, NULL, n); /* b = NULL must not read b */
    hk->axpby(hk, poison, alpha, a, beta, NULL, n);
    got = host(hk, poison, n);
    for (size_t i = 0; i < n; i++) ref[i] = alpha * ar[i];
    snprintf(what, sizeof what, "%s axpby b=NULL n=%zu", hk->name, n);
    CHECK_REL(got, ref, n, fwd_tol(hk), what);
    free(got);
    free(poison);

    hk->axpby(hk, b, alpha, a, beta, b, n); /* out aliases b */
    got = host(hk, b, n);
    for (size_t i = 0; i < n; i++) ref[i] = alpha * ar[i] + beta * br[i];
    snprintf(what, sizeof what, "%s axpby out=b n=%zu", hk->name, n);
    CHECK_REL(got, ref, n, fwd_tol(hk), what);
    free(got);

    hk->add(hk, a, a, b, n); /* out aliases a; b now holds alpha·a + beta·b */
    got = host(hk, a, n);
    for (size_t i = 0; i < n; i++) ref[i] = ar[i] + (alpha * ar[i] + beta * br[i]);
    snprintf(what, sizeof what, "%s add out=a n=%zu", hk->name, n);
    CHECK_REL(got, ref, n, fwd_tol(hk), what);
    free(got);

    free(a0);
    free(b0);
    free(ref);
    free(a);
    free(b);
    free(out);
    free(ar);
    free(br);
}

static void check_concat_fwd(hk_backend *hk, int N, int C1, int C2, uint64_t seed) {
    hlab_rng r;
    hlab_rng_seed(&r, seed);
    const size_t na = (size_t)N * C1, nb = (size_t)N * C2, no = na + nb;
    double *a0 = rand_array(&r, na, 1.0), *b0 = rand_array(&r, nb, 1.0), *ref = malloc(no * sizeof(double));
    void *a = dev(hk, a0, na), *b = dev(hk, b0, nb), *out = dev(hk, NULL, no);
    double *ar = host(hk, a, na), *br = host(hk, b, nb);
    for (int n = 0; n < N; n++) {
        for (int c = 0; c < C1; c++) ref[(size_t)n * (C1 + C2) + c] = ar[(size_t)n * C1 + c];
        for (int c = 0; c < C2; c++) ref[(size_t)n * (C1 + C2) + C1 + c] = br[(size_t)n * C2 + c];
    }
    hk->concat_fwd(hk, out, a, b, N, C1, C2);
    double *got = host(hk, out, no);
    char what[96];
    snprintf(what, sizeof what, "%s concat_fwd N=%d C1=%d C2=%d", hk->name, N, C1, C2);
    CHECK(memcmp(got, ref, no * sizeof(double)) == 0, "%s: not an exact copy", what);
    free(got);
    free(a0);
    free(b0);
    free(ref);
    free(a);
    free(b);
    free(out);
    free(ar);
    free(br);
}

static void check_gate_fwd(hk_backend *hk, size_t n, uint64_t seed) {
    hlab_rng r;
    hlab_rng_seed(&r, seed);
    double *g0 = rand_array(&r, n, 4.0), *a0 = rand_array(&r, n, 1.0), *m0 = rand_array(&r, n, 1.0);
    double *ref = malloc(n * sizeof(double));
    void *g = dev(hk, g0, n), *a = dev(hk, a0, n), *m = dev(hk, m0, n), *out = dev(hk, NULL, n);
    double *gr = host(hk, g, n), *ar = host(hk, a, n), *mr = host(hk, m, n);
    for (size_t i = 0; i < n; i++) ref[i] = sigmoid(gr[i]) * ar[i] + (1 - sigmoid(gr[i])) * mr[i];
    hk->gate_fwd(hk, out, g, a, m, n);
    double *got = host(hk, out, n);
    char what[96];
    snprintf(what, sizeof what, "%s gate_fwd n=%zu", hk->name, n);
    CHECK_REL(got, ref, n, fwd_tol(hk), what);
    free(got);
    free(g0);
    free(a0);
    free(m0);
    free(ref);
    free(g);
    free(a);
    free(m);
    free(out);
    free(gr);
    free(ar);
    free(mr);
}

/* Central differences of Σ dout·out with respect to x[0..n), out from run(). */
typedef void (*fwd_fn)(hk_backend *hk, double *out, double *const *in, const int *dims);
static void finite_diff(hk_backend *hk, fwd_fn run, double *const *in, const int *dims, double *x, size_t n,
                        const double *dout, double *out, size_t nout, double *fd) {
    const double h = 1e-6;
    for (size_t i = 0; i < n; i++) {
        double keep = x[i], L[2];
        for (int s = 0; s < 2; s++) {
            x[i] = keep + (s ? -h : h);
            run(hk, out, in, dims);
            L[s] = 0;
            for (size_t j = 0; j < nout; j++) L[s] += dout[j] * out[j];
        }
        x[i] = keep;
        fd[i] = (L[0] - L[1]) / (2 * h);
    }
}

static void run_concat(hk_backend *hk, double *out, double *const *in, const int *dims) {
    hk->concat_fwd(hk, out, in[0], in[1], dims[0], dims[1], dims[2]);
}
static void run_gate(hk_backend *hk, double *out, double *const *in, const int *dims) {
    hk->gate_fwd(hk, out, in[0], in[1], in[2], (size_t)dims[0]);
}

static void check_concat_bwd(hk_backend *hk, int N, int C1, int C2, uint64_t seed) {
    hlab_rng r;
    hlab_rng_seed(&r, seed);
    const size_t n[2] = {(size_t)N * C1, (size_t)N * C2}, no = n[0] + n[1];
    double *in[2], *grad[2], *dout = malloc(no * sizeof(double)), *out = malloc(no * sizeof(double));
    for (int k = 0; k < 2; k++) {
        in[k] = malloc(n[k] * sizeof(double));
        grad[k] = malloc(n[k] * sizeof(double));
        test_fill_f64(&r, in[k], n[k], 1.0);
        for (size_t i = 0; i < n[k]; i++) grad[k][i] = NAN;
    }
    test_fill_f64(&r, dout, no, 1.0);
    hk->concat_bwd(hk, grad[0], grad[1], dout, N, C1, C2);
    const int dims[3] = {N, C1, C2};
    for (int k = 0; k < 2; k++) {
        double *fd = malloc(n[k] * sizeof(double));
        finite_diff(hk, run_concat, in, dims, in[k], n[k], dout, out, no, fd);
        char what[96];
        snprintf(what, sizeof what, "concat_bwd d%s N=%d C1=%d C2=%d", k ? "b" : "a", N, C1, C2);
        CHECK_REL(grad[k], fd, n[k], 1e-8, what);
        free(fd);
    }
    for (int k = 0; k < 2; k++) {
        free(in[k]);
        free(grad[k]);
    }
    free(dout);
    free(out);
}

static void check_gate_bwd(hk_backend *hk, size_t n, uint64_t seed) {
    hlab_rng r;
    hlab_rng_seed(&r, seed);
    static const char *names[3] = {"g", "a", "m"};
    double *in[3], *grad[3], *dout = malloc(n * sizeof(double)), *out = malloc(n * sizeof(double));
    for (int k = 0; k < 3; k++) {
        in[k] = malloc(n * sizeof(double));
        grad[k] = malloc(n * sizeof(double));
        test_fill_f64(&r, in[k], n, k == 0 ? 4.0 : 1.0);
        for (size_t i = 0; i < n; i++) grad[k][i] = NAN;
    }
    test_fill_f64(&r, dout, n, 1.0);
    hk->gate_bwd(hk, grad[0], grad[1], grad[2], dout, in[0], in[1], in[2], n);
    const int dims[1] = {(int)n};
    for (int k = 0; k < 3; k++) {
        double *fd = malloc(n * sizeof(double));
        finite_diff(hk, run_gate, in, dims, in[k], n, dout, out, n, fd);
        char what[96];
        snprintf(what, sizeof what, "gate_bwd d%s n=%zu", names[k], n);
        CHECK_REL(grad[k], fd, n, 1e-7, what);
        free(fd);
    }
    for (int k = 0; k < 3; k++) {
        free(in[k]);
        free(grad[k]);
    }
    free(dout);
    free(out);
}

int main(void) {
    hlab_err err;
    hk_backend *hk32 = hk_cpu_create(HK_F32, 2, &err);
    hk_backend *hk64 = hk32 ? hk_cpu_create(HK_F64, 2, &err) : NULL;
    if (!hk32 || !hk64) {
        fprintf(stderr, "hk_cpu_create: %s\n", err.msg);
        hk_destroy(hk32);
        return 1;
    }
    hk_backend *both[2] = {hk32, hk64};
    for (int b = 0; b < 2; b++) {
        check_add_axpby(both[b], 37, 10 + b);
        check_add_axpby(both[b], 70001, 20 + b); /* above the threaded-loop threshold */
        check_concat_fwd(both[b], 5, 3, 7, 30 + b);
        check_concat_fwd(both[b], 1201, 33, 17, 40 + b);
        check_gate_fwd(both[b], 41, 50 + b);
        check_gate_fwd(both[b], 50003, 60 + b);
    }
    check_concat_bwd(hk64, 4, 3, 5, 70);
    check_gate_bwd(hk64, 29, 80);
    hlab_err e2;
    CHECK(hk32->check(hk32, &e2) == HLAB_OK && hk64->check(hk64, &e2) == HLAB_OK, "backend error: %s", e2.msg);
    hk_destroy(hk32);
    hk_destroy(hk64);
    return test_summary();
}
