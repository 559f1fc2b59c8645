/* tests/kernels/test_cpu_swiglu.c — hk->swiglu_fwd against the direct formula
 * SiLU(a) ⊙ b on cpu (fp32, rel err < 1e-6) and cpu-f64 (< 1e-14), and
 * hk->swiglu_bwd against central finite differences of Σ dout·out on cpu-f64,
 * for odd sizes.
 *
 * Conventions: inputs are random (pre-activations up to ±4, so SiLU's curved
 * part is exercised); written outputs are poisoned with NaN before each run.
 * The CPU backend's memory is host memory, so host arrays are passed directly.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "kernels/kernels.h"
#include "test.h"

static double swiglu_ref(double a, double b) { return a / (1.0 + exp(-a)) * b; }

static void check_fwd(hk_backend *hk32, hk_backend *hk64, int N, int F, uint64_t seed) {
    hlab_rng r;
    hlab_rng_seed(&r, seed);
    const size_t ni = (size_t)N * 2 * F, no = (size_t)N * F;
    double *x = malloc(ni * sizeof(double)), *ref = malloc(no * sizeof(double)), *out = malloc(no * sizeof(double));
    float *x32 = malloc(ni * sizeof(float)), *out32 = malloc(no * sizeof(float));
    double *got32 = malloc(no * sizeof(double));
    test_fill_f64(&r, x, ni, 4.0);
    for (size_t i = 0; i < ni; i++) x32[i] = (float)x[i];
    for (int n = 0; n < N; n++)
        for (int f = 0; f < F; f++) {
            size_t i = (size_t)n * 2 * F + f;
            ref[(size_t)n * F + f] = swiglu_ref(x32[i], x32[i + F]); /* on the fp32-rounded inputs */
        }
    for (size_t i = 0; i < no; i++) out32[i] = NAN;
    hk32->swiglu_fwd(hk32, out32, x32, N, F);
    for (size_t i = 0; i < no; i++) got32[i] = out32[i];
    CHECK_REL(got32, ref, no, 1e-6, "cpu swiglu_fwd");

    for (int n = 0; n < N; n++)
        for (int f = 0; f < F; f++) {
            size_t i = (size_t)n * 2 * F + f;
            ref[(size_t)n * F + f] = swiglu_ref(x[i], x[i + F]);
        }
    for (size_t i = 0; i < no; i++) out[i] = NAN;
    hk64->swiglu_fwd(hk64, out, x, N, F);
    CHECK_REL(out, ref, no, 1e-14, "cpu-f64 swiglu_fwd");
    free(x);
    free(ref);
    free(out);
    free(x32);
    free(out32);
    free(got32);
}

static void check_bwd(hk_backend *hk, int N, int F, uint64_t seed) {
    hlab_rng r;
    hlab_rng_seed(&r, seed);
    const size_t ni = (size_t)N * 2 * F, no = (size_t)N * F;
    const double h = 1e-6;
    double *x = malloc(ni * sizeof(double)), *dout = malloc(no * sizeof(double)), *out = malloc(no * sizeof(double));
    double *dx = malloc(ni * sizeof(double)), *fd = malloc(ni * sizeof(double));
    test_fill_f64(&r, x, ni, 4.0);
    test_fill_f64(&r, dout, no, 1.0);
    for (size_t i = 0; i < ni; i++) dx[i] = NAN;
    hk->swiglu_bwd(hk, dx, dout, x, N, F);
    for (size_t i = 0; i < ni; i++) {
        double keep = x[i], L[2];
        for (int s = 0; s < 2; s++) {
            x[i] = keep + (s ? -h : h);
            hk->swiglu_fwd(hk, out, x, N, F);
            L[s] = 0;
            for (size_t j = 0; j < no; j++) L[s] += dout[j] * out[j];
        }
        x[i] = keep;
        fd[i] = (L[0] - L[1]) / (2 * h);
    }
    char what[96];
    snprintf(what, sizeof what, "swiglu_bwd N=%d F=%d", N, F);
    CHECK_REL(dx, fd, ni, 1e-7, what);
    free(x);
    free(dout);
    free(out);
    free(dx);
    free(fd);
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
    check_fwd(hk32, hk64, 7, 13, 1);
    check_fwd(hk32, hk64, 301, 130, 2); /* above the threaded-loop threshold */
    check_bwd(hk64, 5, 7, 3);
    check_bwd(hk64, 3, 1, 4);
    hlab_err e2;
    CHECK(hk32->check(hk32, &e2) == HLAB_OK && hk64->check(hk64, &e2) == HLAB_OK, "backend error: %s", e2.msg);
    hk_destroy(hk32);
    hk_destroy(hk64);
    return test_summary();
}
