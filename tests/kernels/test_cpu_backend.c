/* tests/kernels/test_cpu_backend.c — the CPU backend's plumbing and hk_open:
 *   - dtype conversions: bf16 round-to-nearest-even at exact ties and just
 *     past them, signs, overflow to inf, NaN kept; f32 <-> f64 <-> bf16 round
 *     trips; device-to-device convert;
 *   - memory: 64-byte alignment, live/peak byte accounting, zero;
 *   - the sticky first error (kept across later failures, returned by check
 *     and sync), an impossible allocation;
 *   - device specs accepted and rejected by hk_open, dtype helpers.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "test.h"

static float f32_of_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static void test_bf16(hk_backend *hk) {
    /* 1 + 2^-8 lies exactly between bf16 1.0 (even) and 1 + 2^-7 (odd): ties to even go down;
     * 1 + 3·2^-8 lies between 1 + 2^-7 (odd) and 1 + 2^-6 (even): ties go up. */
    const float in[] = {1.0f, 1.0f + 0x1p-8f, 1.0f + 3 * 0x1p-8f, 1.0f + 0x1p-8f + 0x1p-20f, -2.5f,
                        f32_of_bits(0x7f7fffffu) /* FLT_MAX rounds up to inf */, -0.0f, 0x1p-130f /* subnormal */};
    const uint16_t want[] = {0x3f80, 0x3f80, 0x3f82, 0x3f81, 0xc020, 0x7f80, 0x8000, 0x0008};
    const size_t n = sizeof in / sizeof in[0];
    uint16_t *dev = hk->alloc(hk, n * sizeof(uint16_t));
    hk->from_host(hk, dev, HK_BF16, in, HK_F32, n);
    for (size_t i = 0; i < n; i++)
        CHECK(dev[i] == want[i], "bf16(%a) = 0x%04x, expected 0x%04x", (double)in[i], dev[i], want[i]);
    /* back to f32 and f64: exact (bf16 is the top half of a float) */
    float back[8];
    double back64[8];
    hk->to_host(hk, back, HK_F32, dev, HK_BF16, n);
    hk->to_host(hk, back64, HK_F64, dev, HK_BF16, n);
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &back[i], sizeof u);
        CHECK(u == (uint32_t)want[i] << 16, "bf16 0x%04x -> f32 bits 0x%08x", want[i], u);
        CHECK(back64[i] == (double)back[i], "bf16 0x%04x -> f64 %g vs f32 %g", want[i], back64[i], (double)back[i]);
    }
    const float nan_in = f32_of_bits(0x7fc12345u);
    hk->from_host(hk, dev, HK_BF16, &nan_in, HK_F32, 1);
    hk->to_host(hk, back, HK_F32, dev, HK_BF16, 1);
    CHECK(isnan(back[0]), "NaN did not survive f32 -> bf16 -> f32 (bits 0x%04x)", dev[0]);
    /* signalling NaN whose payload sits only in the low half must not become inf */
    const float snan = f32_of_bits(0x7f800001u);
    hk->from_host(hk, dev, HK_BF16, &snan, HK_F32, 1);
    hk->to_host(hk, back, HK_F32, dev, HK_BF16, 1);
    CHECK(isnan(back[0]), "low-payload NaN became 0x%04x", dev[0]);
    hk->free(hk, dev);
}

static void test_round_trips(hk_backend *hk, hlab_rng *r) {
    enum { N = 1000 };
    double x[N], y[N];
    float f[N], g[N];
    test_fill_f64(r, x, N, 100);
    void *dev = hk->alloc(hk, N * sizeof(double));
    void *dev2 = hk->alloc(hk, N * sizeof(double));
    hk->from_host(hk, dev, HK_F64, x, HK_F64, N);
    hk->convert(hk, dev2, HK_F32, dev, HK_F64, N);
    hk->to_host(hk, f, HK_F32, dev2, HK_F32, N);
    int ok = 1;
    for (int i = 0; i < N; i++) ok &= f[i] == (float)x[i];
    CHECK(ok, "f64 -> f32 convert is not the C conversion");
    hk->to_host(hk, y, HK_F64, dev2, HK_F32, N);
    ok = 1;
    for (int i = 0; i < N; i++) ok &= y[i] == (double)f[i];
    CHECK(ok, "f32 -> f64 to_host is not exact");
    /* bf16 keeps 8 significant bits: half an ulp is at most 2^-8 of the value */
    hk->convert(hk, dev, HK_BF16, dev2, HK_F32, N);
    hk->to_host(hk, g, HK_F32, dev, HK_BF16, N);
    ok = 1;
    for (int i = 0; i < N; i++) ok &= fabsf(g[i] - f[i]) <= fabsf(f[i]) * 0x1p-8f;
    CHECK(ok, "f32 -> bf16 -> f32 error above half an ulp of bf16");
    hk->free(hk, dev);
    hk->free(hk, dev2);
}

static void test_memory(void) {
    hlab_err err = {0};
    hk_backend *hk = hk_cpu_create(HK_F32, 1, &err);
    CHECK(hk != NULL, "hk_cpu_create: %s", err.msg);
    if (!hk) return;
    CHECK(hk->peak_bytes(hk) == 0, "fresh backend peak %zu bytes", hk->peak_bytes(hk));
    unsigned char *a = hk->alloc(hk, 1000), *b = hk->alloc(hk, 3001);
    CHECK(a && b && (uintptr_t)a % 64 == 0 && (uintptr_t)b % 64 == 0, "alloc not 64-byte aligned");
    memset(a, 0xab, 1000);
    memset(b, 0xcd, 3001);
    hk->zero(hk, b, 3001);
    int zero = 1;
    for (int i = 0; i < 3001; i++) zero &= b[i] == 0;
    CHECK(zero && a[999] == 0xab, "zero() did not clear exactly its range");
    CHECK(hk->peak_bytes(hk) == 4001, "peak %zu bytes, expected 4001", hk->peak_bytes(hk));
    hk->free(hk, a);
    void *c = hk->alloc(hk, 500);
    CHECK(hk->peak_bytes(hk) == 4001, "peak after free + smaller alloc %zu, expected 4001", hk->peak_bytes(hk));
    void *d = hk->alloc(hk, 600);
    CHECK(hk->peak_bytes(hk) == 4101, "peak %zu, expected 4101 (3001 + 500 + 600)", hk->peak_bytes(hk));
    hk->free(hk, b), hk->free(hk, c), hk->free(hk, d);
    hk->free(hk, NULL);
    CHECK(hk->check(hk, &err) == HLAB_OK, "plumbing raised an error: %s", err.msg);
    /* an impossible size fails cleanly and sticks */
    void *huge = hk->alloc(hk, SIZE_MAX - 10);
    CHECK(huge == NULL, "alloc(SIZE_MAX - 10) returned non-NULL");
    CHECK(hk->check(hk, &err) == HLAB_ENOMEM, "impossible alloc: check gave %d, expected ENOMEM", err.code);
    hk_destroy(hk);
}

static void test_sticky(void) {
    hlab_err err = {0};
    hk_backend *hk = hk_cpu_create(HK_F64, 1, &err);
    CHECK(hk != NULL, "hk_cpu_create(f64): %s", err.msg);
    if (!hk) return;
    CHECK(strcmp(hk->name, "cpu-f64") == 0 && hk->real == HK_F64 && hk->act == HK_F64, "f64 backend identity: %s",
          hk->name);
    double x[4] = {1, 2, 3, 4}, y[4];
    hk->matmul_fwd(hk, y, x, x, NULL, 0, 2, 2); /* N = 0: rejected */
    int32_t bad_target = 9;
    hk->xent_fwd(hk, y, x, &bad_target, 1, 4); /* a second, different failure */
    hlab_err e1 = {0}, e2 = {0};
    CHECK(hk->check(hk, &e1) == HLAB_EINVAL, "check after a bad matmul: %d, expected EINVAL", e1.code);
    CHECK(strstr(e1.msg, "matmul_fwd") != NULL, "the first error was not kept: '%s'", e1.msg);
    CHECK(hk->sync(hk, &e2) == HLAB_EINVAL && strcmp(e1.msg, e2.msg) == 0, "sync disagrees with check: '%s'", e2.msg);
    hk_destroy(hk);
}

static void test_open(void) {
    hlab_err err = {0};
    hk_backend *hk = hk_open("cpu", &err);
    CHECK(hk && strcmp(hk->name, "cpu") == 0 && hk->real == HK_F32 && hk->act == HK_F32, "hk_open(cpu): %s",
          hk ? hk->name : err.msg);
    hk_destroy(hk);
    hk = hk_open("cpu-f64", &err);
    CHECK(hk && strcmp(hk->name, "cpu-f64") == 0, "hk_open(cpu-f64): %s", hk ? hk->name : err.msg);
    hk_destroy(hk);
    if (hk_cuda_available() == 0) {
        hk = hk_open("auto", &err);
        CHECK(hk && strcmp(hk->name, "cpu") == 0, "hk_open(auto) without a GPU: %s", hk ? hk->name : err.msg);
        hk_destroy(hk);
        const char *cuda_specs[] = {"cuda", "cuda:0", "cuda-f32", "cuda-f32:1"};
        for (int i = 0; i < 4; i++) {
            hlab_err_clear(&err);
            hk = hk_open(cuda_specs[i], &err);
            CHECK(!hk && (err.code == HLAB_EUNSUPPORTED || err.code == HLAB_EDEVICE),
                  "hk_open(%s) without a GPU: code %d '%s'", cuda_specs[i], err.code, err.msg);
            hk_destroy(hk);
        }
    }
    const char *bad[] = {"", "cpu64", "gpu", "cuda:", "cuda:x", "cuda:-1", "cuda:0x", "cuda-f32:", "cudaa", "CPU"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        hlab_err_clear(&err);
        hk = hk_open(bad[i], &err);
        CHECK(!hk && err.code == HLAB_EINVAL && err.msg[0], "hk_open('%s'): expected EINVAL, got %d '%s'", bad[i],
              err.code, err.msg);
        hk_destroy(hk);
    }
    hlab_err_clear(&err);
    CHECK(hk_open(NULL, &err) == NULL && err.code == HLAB_EINVAL, "hk_open(NULL) should fail with EINVAL");
    CHECK(hk_cpu_create(HK_BF16, 1, &err) == NULL && err.code == HLAB_EINVAL, "hk_cpu_create(BF16) should fail");
    hk_destroy(NULL);
    CHECK(hk_dtype_size(HK_F32) == 4 && hk_dtype_size(HK_F64) == 8 && hk_dtype_size(HK_BF16) == 2, "dtype sizes");
    CHECK(strcmp(hk_dtype_name(HK_BF16), "bf16") == 0 && strcmp(hk_dtype_name(HK_F64), "f64") == 0, "dtype names");
}

int main(void) {
    hlab_err err = {0};
    hk_backend *hk = hk_cpu_create(HK_F32, 2, &err);
    CHECK(hk != NULL, "hk_cpu_create: %s", err.msg);
    if (!hk) return test_summary();
    hlab_rng r;
    hlab_rng_seed(&r, 3);
    test_bf16(hk);
    test_round_trips(hk, &r);
    CHECK(hk->check(hk, &err) == HLAB_OK, "conversions raised an error: %s", err.msg);
    hk_destroy(hk);
    test_memory();
    test_sticky();
    test_open();
    return test_summary();
}
