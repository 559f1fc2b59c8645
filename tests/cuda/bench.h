/* tests/cuda/bench.h — what the CUDA timing programs (test_cuda_kernel_bench.c,
 * test_cuda_bench_mixers.c) share: device buffers of random values and a
 * median-of-samples timer. Timing is host clock after sync, so launch gaps count. */
#ifndef HLAB_TESTS_CUDA_BENCH_H
#define HLAB_TESTS_CUDA_BENCH_H

#include <stdio.h>
#include <stdlib.h>

#include "kernels/kernels.h"
#include "test.h"

/* A device buffer of n random values in [offset − scale, offset + scale] (never all zero):
 * one random chunk is uploaded once and tiled on the device (convert), so filling
 * gigabytes costs no host time. */
static inline void *bench_rand_dev(hk_backend *hk, hlab_rng *rng, size_t n, hk_dtype t, double scale, double offset) {
    enum { chunk = 1 << 20 };
    static float h[chunk];
    const size_t es = hk_dtype_size(t);
    void *d = hk->alloc(hk, n * es), *stage = hk->alloc(hk, chunk * sizeof(float));
    if (!d || !stage) return d;
    for (size_t i = 0; i < chunk; i++) h[i] = (float)(scale * (2.0 * hlab_rng_uniform(rng) - 1.0) + offset);
    hk->from_host(hk, stage, HK_F32, h, HK_F32, chunk);
    for (size_t off = 0; off < n; off += chunk) {
        size_t m = n - off < chunk ? n - off : chunk;
        hk->convert(hk, (char *)d + off * es, t, stage, HK_F32, m);
    }
    hk->free(hk, stage);
    return d;
}

static inline int bench_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef void (*op_fn)(void *arg);

/* Median seconds per call over `samples` (≤ 15) samples of `reps` calls, after one warm-up call. */
static inline double bench_time_op(hk_backend *hk, op_fn f, void *arg, int reps, int samples) {
    hlab_err err = {0};
    double s[15];
    if (samples > 15) samples = 15;
    f(arg);
    hk->sync(hk, &err);
    for (int k = 0; k < samples; k++) {
        double t0 = hlab_now_s();
        for (int r = 0; r < reps; r++) f(arg);
        hk->sync(hk, &err);
        s[k] = (hlab_now_s() - t0) / reps;
    }
    qsort(s, (size_t)samples, sizeof s[0], bench_cmp_double);
    if (hk->check(hk, &err) != HLAB_OK) fprintf(stderr, "bench: %s\n", err.msg);
    return s[samples / 2];
}

#endif
