/* tests/cuda/test_cuda_backend.c — the CUDA backend's plumbing: creation and its
 * errors, alloc/free with live and peak byte counts, zero, host<->device copies
 * and device conversions between every pair of F32/F64/BF16 (exact against the
 * host's round-to-nearest-even), and sticky errors.
 * Skips (exit 77) where no CUDA device is usable.
 */
#include "parity.h"

static double quantize(double v, hk_dtype t) {
    if (t == HK_F64) return v;
    if (t == HK_F32) return (double)(float)v;
    return (double)par_round_bf16((float)v);
}

static void *host_array(const double *v, size_t n, hk_dtype t) {
    void *h = malloc(n * 8);
    for (size_t i = 0; i < n; i++) {
        double q = quantize(v[i], t);
        if (t == HK_F64) ((double *)h)[i] = q;
        else if (t == HK_F32) ((float *)h)[i] = (float)q;
        else {
            float f = (float)q;
            uint32_t u;
            memcpy(&u, &f, 4);
            ((uint16_t *)h)[i] = (uint16_t)(u >> 16);
        }
    }
    return h;
}

static const char *tname(hk_dtype t) { return t == HK_F32 ? "f32" : t == HK_F64 ? "f64" : "bf16"; }

static void t_conversions(hk_backend *hk, hlab_rng *rng) {
    enum { n = 1003 };
    double v[n], back[n];
    for (size_t i = 0; i < n; i++) v[i] = 10.0 * hlab_rng_normal(rng) + 1e-3;
    hk_dtype ts[3] = {HK_F32, HK_F64, HK_BF16};
    for (int si = 0; si < 3; si++) {
        void *h = host_array(v, n, ts[si]);
        for (int di = 0; di < 3; di++) {
            void *dev = hk->alloc(hk, n * par_size(ts[di]));
            hk->from_host(hk, dev, ts[di], h, ts[si], n);
            hk->to_host(hk, back, HK_F64, dev, ts[di], n);
            int bad = 0;
            for (size_t i = 0; i < n; i++) bad += back[i] != quantize(quantize(v[i], ts[si]), ts[di]);
            CHECK(bad == 0, "from_host %s -> %s: %d of %d values differ", tname(ts[si]), tname(ts[di]), bad, n);
            for (int ci = 0; ci < 3; ci++) {
                void *dev2 = hk->alloc(hk, n * par_size(ts[ci]));
                hk->convert(hk, dev2, ts[ci], dev, ts[di], n);
                hk->to_host(hk, back, HK_F64, dev2, ts[ci], n);
                bad = 0;
                for (size_t i = 0; i < n; i++)
                    bad += back[i] != quantize(quantize(quantize(v[i], ts[si]), ts[di]), ts[ci]);
                CHECK(bad == 0, "convert %s -> %s: %d of %d values differ", tname(ts[di]), tname(ts[ci]), bad, n);
                hk->free(hk, dev2);
            }
            hk->free(hk, dev);
        }
        free(h);
    }
    hlab_err err = {0};
    CHECK(hk->sync(hk, &err) == HLAB_OK, "conversions: %s", err.msg);
}

/* A bad target / token id is seen only on the device: it must come back as a
 * sticky HLAB_EINVAL at sync(), without any out-of-bounds access. */
static void t_bad_inputs(hk_dtype act) {
    hlab_err err = {0};
    for (int which = 0; which < 2; which++) {
        hk_backend *hk = hk_cuda_create(0, act, &err);
        if (!hk) continue;
        enum { N = 4, V = 16, C = 8 };
        int32_t ids[N] = {1, 2, which == 0 ? V : -1, 3};
        float vals[V * C];
        for (int i = 0; i < V * C; i++) vals[i] = 0.25f * (float)(i % 7) - 0.5f;
        void *ids_d = hk->alloc(hk, sizeof ids), *x = hk->alloc(hk, sizeof vals), *out = hk->alloc(hk, sizeof vals);
        hk->from_host(hk, ids_d, HK_F32, ids, HK_F32, N);
        hk->from_host(hk, x, hk->act, vals, HK_F32, V * C);
        if (which == 0) hk->xent_fwd(hk, out, x, (const int32_t *)ids_d, N, V); /* target V: out of range */
        else hk->embedding_fwd(hk, out, (const int32_t *)ids_d, x, N, C);       /* token -1 */
        int rc = hk->sync(hk, &err);
        CHECK(rc == HLAB_EINVAL && strstr(err.msg, which == 0 ? "xent" : "embedding") != NULL,
              "%s: bad %s must give HLAB_EINVAL at sync, got %d: %s", hk->act == HK_BF16 ? "bf16" : "f32",
              which == 0 ? "target" : "token", rc, err.msg);
        hk->destroy(hk);
    }
}

int main(void) {
    if (hk_cuda_available() <= 0) test_skip("no CUDA device");
    hlab_err err = {0};
    hlab_rng rng;
    hlab_rng_seed(&rng, 99);

    CHECK(hk_cuda_create(0, HK_F64, &err) == NULL && err.code == HLAB_EINVAL, "f64 activations must be refused");
    CHECK(hk_cuda_create(4096, HK_F32, &err) == NULL && err.code == HLAB_EDEVICE, "device 4096 must not exist");

    hk_dtype modes[2] = {HK_F32, HK_BF16};
    for (int mi = 0; mi < 2; mi++) {
        hk_backend *hk = hk_cuda_create(0, modes[mi], &err);
        CHECK(hk != NULL, "create: %s", err.msg);
        if (!hk) continue;
        CHECK(strcmp(hk->name, "cuda:0") == 0, "name %s", hk->name);
        CHECK(hk->real == HK_F32 && hk->act == modes[mi], "dtypes real=%d act=%d", hk->real, hk->act);

        /* live / peak bytes */
        size_t base = hk->peak_bytes(hk);
        void *a = hk->alloc(hk, 1 << 20), *b = hk->alloc(hk, 3 << 20);
        CHECK(a && b, "alloc");
        CHECK(hk->peak_bytes(hk) >= base + (4u << 20), "peak %zu after 4 MiB", hk->peak_bytes(hk));
        hk->free(hk, b);
        void *c = hk->alloc(hk, 1 << 20);
        size_t peak = hk->peak_bytes(hk);
        CHECK(peak >= base + (4u << 20) && peak < base + (5u << 20), "peak %zu must stay at the 4 MiB mark", peak);

        /* zero after poison */
        enum { n = 777 };
        float h[n];
        for (int i = 0; i < n; i++) h[i] = NAN;
        hk->from_host(hk, a, HK_F32, h, HK_F32, n);
        hk->zero(hk, a, n * sizeof(float));
        hk->to_host(hk, h, HK_F32, a, HK_F32, n);
        int nz = 0;
        for (int i = 0; i < n; i++) nz += h[i] != 0.0f;
        CHECK(nz == 0, "zero left %d elements non-zero", nz);
        hk->free(hk, a);
        hk->free(hk, c);

        t_conversions(hk, &rng);

        /* sticky errors: the first one is kept */
        CHECK(hk->check(hk, &err) == HLAB_OK, "no error expected yet: %s", err.msg);
        int dummy;
        hk->free(hk, &dummy);
        hk->adamw(hk, NULL, NULL, NULL, NULL, NULL, 4, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.0f, 0, 1.0f, NULL);
        CHECK(hk->check(hk, &err) == HLAB_EINVAL && strstr(err.msg, "free") != NULL,
              "first error (bad free) must stick, got %d: %s", err.code, err.msg);
        if (hk) hk->destroy(hk);
    }
    t_bad_inputs(HK_F32);
    t_bad_inputs(HK_BF16);
    /* Leftover allocations are released by destroy (checked by compute-sanitizer's leak report). */
    hk_backend *hk = hk_cuda_create(0, HK_BF16, &err);
    if (hk) {
        hk->alloc(hk, 12345);
        if (hk) hk->destroy(hk);
    }
    return test_summary();
}
