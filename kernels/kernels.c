/* kernels/kernels.c — backend-neutral part of kernels/: dtype helpers, opening a
 * backend from a device spec, and (in a build without CUDA) the CUDA stubs.
 *
 * Device specs: "cpu", "cpu-f64", "cuda" (= cuda:0), "cuda:N", "cuda-f32",
 * "cuda-f32:N" (fp32 activations, for parity tests) and "auto" (cuda:0 when a
 * GPU is usable, else cpu). CUDA backends opened by spec use bf16 activations
 * unless the spec says f32.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"

/* The two CPU builds (kernels/cpu/backend.c compiled as f32 and as f64). */
hk_backend *hk_cpu32_create(int threads, hlab_err *err);
hk_backend *hk_cpu64_create(int threads, hlab_err *err);

size_t hk_dtype_size(hk_dtype t) {
    switch (t) {
    case HK_F32: return 4;
    case HK_F64: return 8;
    case HK_BF16: return 2;
    }
    return 0;
}

const char *hk_dtype_name(hk_dtype t) {
    switch (t) {
    case HK_F32: return "f32";
    case HK_F64: return "f64";
    case HK_BF16: return "bf16";
    }
    return "unknown";
}

hk_backend *hk_cpu_create(hk_dtype real, int threads, hlab_err *err) {
    switch (real) {
    case HK_F32: return hk_cpu32_create(threads, err);
    case HK_F64: return hk_cpu64_create(threads, err);
    default: break;
    }
    hlab_fail(err, HLAB_EINVAL, "cpu backend: real dtype %s is not supported (expected f32 or f64)",
              hk_dtype_name(real));
    return NULL;
}

/* Parses the device index after "cuda:" / "cuda-f32:"; -1 when it is not a
 * plain non-negative decimal number. */
static int parse_device_index(const char *s) {
    if (*s < '0' || *s > '9') return -1;
    errno = 0;
    char *end = NULL;
    long v = strtol(s, &end, 10);
    if (errno || *end != '\0' || v > 1024) return -1;
    return (int)v;
}

hk_backend *hk_open(const char *spec, hlab_err *err) {
    if (!spec || !*spec) {
        hlab_fail(err, HLAB_EINVAL, "device: empty spec (expected cpu, cpu-f64, cuda, cuda:N, cuda-f32[:N] or auto)");
        return NULL;
    }
    if (strcmp(spec, "cpu") == 0) return hk_cpu_create(HK_F32, 0, err);
    if (strcmp(spec, "cpu-f64") == 0) return hk_cpu_create(HK_F64, 0, err);
    if (strcmp(spec, "auto") == 0)
        return hk_cuda_available() > 0 ? hk_cuda_create(0, HK_BF16, err) : hk_cpu_create(HK_F32, 0, err);

    hk_dtype act = HK_BF16;
    const char *rest = NULL;
    if (strncmp(spec, "cuda-f32", 8) == 0) {
        act = HK_F32;
        rest = spec + 8;
    } else if (strncmp(spec, "cuda", 4) == 0) {
        rest = spec + 4;
    }
    if (rest) {
        if (*rest == '\0') return hk_cuda_create(0, act, err);
        int device = *rest == ':' ? parse_device_index(rest + 1) : -1;
        if (device >= 0) return hk_cuda_create(device, act, err);
        hlab_fail(err, HLAB_EINVAL,
                  "device '%s': bad CUDA device (expected cuda, cuda:N, cuda-f32 or cuda-f32:N with N >= 0)", spec);
        return NULL;
    }
    static const char *const known[] = {"cpu", "cpu-f64", "cuda", "cuda-f32", "auto", NULL};
    const char *guess = hlab_did_you_mean(spec, known);
    hlab_fail(err, HLAB_EINVAL,
              "device '%s' is unknown%s%s%s (expected cpu, cpu-f64, cuda, cuda:N, cuda-f32[:N] or auto)", spec,
              guess ? ": did you mean '" : "", guess ? guess : "", guess ? "'?" : "");
    return NULL;
}

void hk_destroy(hk_backend *hk) {
    if (hk) hk->destroy(hk);
}

#ifndef HLAB_HAVE_CUDA
hk_backend *hk_cuda_create(int device, hk_dtype act, hlab_err *err) {
    (void)act;
    hlab_fail(err, HLAB_EUNSUPPORTED, "cuda:%d: this hlab was built without the CUDA backend", device);
    return NULL;
}

int hk_cuda_available(void) { return 0; }
#endif
