/* tests/test.h — the tiny harness every C test uses.
 *   CHECK(cond, fmt, ...)   counts a pass or prints the failure with file:line
 *   CHECK_REL(got, ref, n, tol, what)  relative norm error ‖got − ref‖ / ‖ref‖ ≤ tol (NaN fails)
 *   return test_summary();  prints "N passed, M failed" and returns the exit code
 *   test_skip("why")        prints "SKIP: why" and exits 77 (ctest: skipped)
 *   TEST_UNIT(t_op(x, …));  runs one unit of a long test unless the environment leaves it out:
 *                           HLAB_TEST_SHARD=k/n takes units k, k + n, k + 2n, … (counted from 0);
 *                           HLAB_TEST_SKIP=a,b skips units whose call text contains a or b.
 *                           For splitting a slow run (compute-sanitizer) over several processes.
 */
#ifndef HLAB_TEST_H
#define HLAB_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/hlab.h"

static int test_passed_, test_failed_;

#define CHECK(cond, ...)                                                   \
    do {                                                                   \
        if (cond) {                                                        \
            test_passed_++;                                                \
        } else {                                                           \
            test_failed_++;                                                \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);           \
            fprintf(stderr, __VA_ARGS__);                                  \
            fputc('\n', stderr);                                           \
        }                                                                  \
    } while (0)

/* ‖a − b‖ / max(‖b‖, tiny); NaN anywhere gives NaN. */
static inline double test_rel_err_f64(const double *a, const double *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = a[i] - b[i];
        num += d * d;
        den += b[i] * b[i];
    }
    if (isnan(num) || isnan(den)) return NAN;
    return sqrt(num) / (den > 1e-300 ? sqrt(den) : 1e-150);
}
static inline double test_rel_err_f32(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        num += d * d;
        den += (double)b[i] * (double)b[i];
    }
    if (isnan(num) || isnan(den)) return NAN;
    return sqrt(num) / (den > 1e-300 ? sqrt(den) : 1e-150);
}

#define CHECK_REL(got, ref, n, tol, what)                                           \
    do {                                                                            \
        double e_ = _Generic((got), double *: test_rel_err_f64, const double *: test_rel_err_f64, \
                             float *: test_rel_err_f32, const float *: test_rel_err_f32)((got), (ref), (n)); \
        CHECK(e_ <= (tol), "%s: relative error %.3e > %.1e", (what), e_, (double)(tol)); \
    } while (0)

static inline void test_fill_f64(hlab_rng *r, double *x, size_t n, double scale) {
    for (size_t i = 0; i < n; i++) x[i] = scale * (2.0 * hlab_rng_uniform(r) - 1.0);
}
static inline void test_fill_f32(hlab_rng *r, float *x, size_t n, double scale) {
    for (size_t i = 0; i < n; i++) x[i] = (float)(scale * (2.0 * hlab_rng_uniform(r) - 1.0));
}

static inline int test_summary(void) {
    printf("%d passed, %d failed\n", test_passed_, test_failed_);
    return test_failed_ ? 1 : 0;
}

static inline int test_unit_take(const char *call) {
    static int unit = 0, k = 0, n = 0;
    if (n == 0) {
        const char *e = getenv("HLAB_TEST_SHARD");
        if (!e || sscanf(e, "%d/%d", &k, &n) != 2 || n < 1 || k < 0 || k >= n) k = 0, n = 1;
        if (n > 1) printf("shard %d of %d (HLAB_TEST_SHARD)\n", k, n);
    }
    if (unit++ % n != k) return 0;
    const char *skip = getenv("HLAB_TEST_SKIP");
    for (const char *p = skip; p && *p;) { /* comma-separated substrings */
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        for (const char *c = call; len && *c; c++)
            if (strncmp(c, p, len) == 0) {
                printf("skipped (HLAB_TEST_SKIP): %s\n", call);
                return 0;
            }
        p = end ? end + 1 : p + len;
    }
    return 1;
}
#define TEST_UNIT(call)                             \
    do {                                            \
        if (test_unit_take(#call)) call;            \
    } while (0)

static inline void test_skip(const char *why) {
    printf("SKIP: %s\n", why);
    exit(77);
}

#endif
