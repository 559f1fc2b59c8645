/* tests/kernels/gradcheck.h — a float64 central-finite-difference gradient checker.
 *
 * Use (with the cpu-f64 backend, whose memory is host memory):
 *
 *   // 1. a callback that runs the forward pass at x and returns a scalar loss,
 *   //    usually L = Σ_i w_i · out_i with fixed random weights w (gc_dot helps):
 *   static double my_loss(void *user, const double *x) {
 *       my_case *c = user;
 *       hk->matmul_fwd(hk, c->out, x, c->w, NULL, N, C, OC);   // x = the input here
 *       return gc_dot(c->wout, c->out, (size_t)N * OC);
 *   }
 *   // 2. the analytic gradient: run the backward with dout = wout into grad[]
 *   // 3. compare (x is perturbed in place and restored exactly):
 *   gc_result r = gc_check(my_loss, &c, x, grad, n, GC_EPS, 0, NULL);
 *   GC_EXPECT(r, 1e-6, "matmul dinp");        // a CHECK from tests/test.h
 *
 * Several inputs/parameters: call gc_check once per array, each time with x
 * pointing at the array the callback reads. Large arrays: pass max_checks > 0
 * and an hlab_rng to check that many distinct random elements (without
 * replacement) instead of all. The error is the relative norm error
 * ‖analytic − numeric‖ / ‖numeric‖ over the checked elements; the worst single
 * element (largest |analytic − numeric|) is reported for diagnosis.
 * Central differences with step h have truncation error O(h²) and rounding error
 * O(1e-16·|L|/h): h = 1e-6 gives ~1e-9 relative accuracy for smooth losses of
 * order one, so tolerances of 1e-6 .. 1e-5 leave a wide margin while a wrong
 * gradient term (typically an O(1) relative error) still fails clearly.
 * gc_upload / gc_download move double host arrays into / out of any backend
 * (converting to its dtypes), so one test body can run on cpu, cpu-f64 and cuda.
 * Needs tests/test.h included first (CHECK).
 */
#ifndef HLAB_TESTS_GRADCHECK_H
#define HLAB_TESTS_GRADCHECK_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/hlab.h"
#include "kernels/kernels.h"

#define GC_EPS 1e-6

/* Returns the scalar loss at x (the array being checked, of the length given to gc_check). */
typedef double (*gc_loss_fn)(void *user, const double *x);

typedef struct {
    double rel_err;          /* ‖analytic − numeric‖ / ‖numeric‖ over the checked elements (NaN if any NaN) */
    size_t checked;          /* how many elements were compared */
    size_t worst;            /* index of the element with the largest |analytic − numeric| */
    double worst_analytic;   /* its analytic gradient */
    double worst_numeric;    /* its central difference */
} gc_result;

/* Σ w_i · x_i, the usual way to make a scalar loss from an output array. */
static inline double gc_dot(const double *w, const double *x, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += w[i] * x[i];
    return s;
}

/* Central difference at element i; x[i] is restored to its exact old value. */
static inline double gc_central_diff(gc_loss_fn loss, void *user, double *x, size_t i, double h) {
    const double x0 = x[i];
    x[i] = x0 + h;
    const double lp = loss(user, x);
    x[i] = x0 - h;
    const double lm = loss(user, x);
    x[i] = x0;
    return (lp - lm) / (2 * h);
}

/* Compares grad[0..n) with central differences of loss around x. max_checks = 0
 * (or >= n) checks every element; otherwise max_checks distinct elements drawn
 * with rng. */
static inline gc_result gc_check(gc_loss_fn loss, void *user, double *x, const double *grad, size_t n, double h,
                                 size_t max_checks, hlab_rng *rng) {
    gc_result r = {0, 0, 0, 0, 0};
    size_t *idx = NULL;
    size_t count = n;
    if (max_checks > 0 && max_checks < n && rng) {
        idx = malloc(n * sizeof(size_t));
        if (idx) {
            for (size_t i = 0; i < n; i++) idx[i] = i;
            for (size_t i = 0; i < max_checks; i++) { /* partial Fisher-Yates */
                size_t j = i + (size_t)hlab_rng_below(rng, n - i);
                size_t t = idx[i];
                idx[i] = idx[j];
                idx[j] = t;
            }
            count = max_checks;
        }
    }
    double num = 0, den = 0, worst = -1;
    for (size_t k = 0; k < count; k++) {
        const size_t i = idx ? idx[k] : k;
        const double fd = gc_central_diff(loss, user, x, i, h);
        const double diff = grad[i] - fd;
        num += diff * diff;
        den += fd * fd;
        if (!(fabs(diff) <= worst)) { /* also catches NaN */
            worst = isnan(diff) ? INFINITY : fabs(diff);
            r.worst = i;
            r.worst_analytic = grad[i];
            r.worst_numeric = fd;
        }
    }
    free(idx);
    r.checked = count;
    r.rel_err = isnan(num) || isnan(den) ? NAN : sqrt(num) / (den > 1e-300 ? sqrt(den) : 1e-150);
    return r;
}

/* Backend buffer of n elements of the backend's real dtype holding x (converted);
 * NULL (and a sticky backend error) when out of memory. */
static inline void *gc_upload(hk_backend *hk, const double *x, size_t n) {
    void *p = hk->alloc(hk, (n ? n : 1) * hk_dtype_size(hk->real));
    if (p && n) hk->from_host(hk, p, hk->real, x, HK_F64, n);
    return p;
}

/* Newly malloc'ed double copy of n elements of the backend's real dtype. */
static inline double *gc_download(hk_backend *hk, const void *p, size_t n) {
    double *x = malloc((n ? n : 1) * sizeof(double));
    if (x && n) hk->to_host(hk, x, HK_F64, p, hk->real, n);
    return x;
}

/* A CHECK (tests/test.h) that the gradient matches to tol, naming the worst element. */
#define GC_EXPECT(res, tol, what)                                                                              \
    CHECK((res).rel_err <= (tol), "%s: gradient relative error %.3e > %.1e over %zu elements (worst [%zu]: "    \
          "analytic %.9e, numeric %.9e)", (what), (res).rel_err, (double)(tol), (res).checked, (res).worst,    \
          (res).worst_analytic, (res).worst_numeric)

#endif
