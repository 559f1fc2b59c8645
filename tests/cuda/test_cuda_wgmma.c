/* tests/cuda/test_cuda_wgmma.c — the Hopper wgmma operand layouts of kernels/cuda/sm90a/wgmma.cuh
 * on the device (kernels/cuda/sm90a/wgmma_probe.cu): each descriptor / register form the sm_90a
 * kernels use, one warpgroup, random bf16 inputs, against a float64 product. Relative norm error
 * ≤ 1e-5 (fp32 accumulation of exact bf16 products; a wrong layout gives errors near 1).
 * Skips (exit 77) without a CUDA device, without the sm_90a build, or on a device that is not
 * compute capability 9.0.
 */
#include <stdio.h>

#include "kernels/kernels.h"
#include "test.h"

#ifdef HLAB_HAVE_CUDA
int hk_cuda_wgmma_probe(double *err); /* C linkage, defined by the CUDA backend (test hook) */
#endif

int main(void) {
#ifndef HLAB_HAVE_CUDA
    test_skip("no CUDA device (built without CUDA)");
#else
    if (hk_cuda_available() <= 0) test_skip("no CUDA device");
    static const char *names[] = {"ss  A K-major   B K-major   N128", "rs  A registers B K-major   N128",
                                  "rs  A registers B MN-major  N128", "rs  A registers B MN-major  N64",
                                  "ss  A K-major   B MN-major  N64"};
    double err[5] = {0};
    const int n = hk_cuda_wgmma_probe(err);
    if (n == -2) test_skip("sm_90a kernels not built (HLAB_CUDA_ARCHS without 90)");
    if (n == -3) test_skip("device is not compute capability 9.0 (wgmma needs Hopper)");
    CHECK(n == 5, "probe failed to run (CUDA error)");
    for (int i = 0; i < n && i < 5; i++) {
        printf("PARITY wgmma %-36s rel %.3e\n", names[i], err[i]);
        CHECK(err[i] <= 1e-5, "wgmma %s: relative error %.3e > 1e-5", names[i], err[i]);
    }
    return test_summary();
#endif
}
