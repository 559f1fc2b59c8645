/* kernels/cuda/sm90a/wgmma_probe.cu — checks the wgmma operand layouts of wgmma.cuh on the
 * device: one warpgroup multiplies random bf16 matrices through each descriptor / register form
 * the sm_90a kernels use and the host compares with a float64 product. Test hook only
 * (tests/cuda/test_cuda_wgmma.c); the library never calls it.
 *
 * Cases (M 64, K 64 = four 16-wide steps):
 *   0  ss, A K-major, B K-major, N 128      (S = Q·Kᵀ)
 *   1  rs, A registers, B K-major, N 128    (dP = dO·Vᵀ with dO from registers)
 *   2  rs, A registers, B MN-major, N 128   (O += P·V at dh 128: two 64-column slabs, LBO)
 *   3  rs, A registers, B MN-major, N 64    (O += P·V at dh 64)
 *   4  ss, A K-major, B MN-major, N 64
 */
#include <math.h>
#include <stdlib.h>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/sm90a/wgmma.cuh"

enum { PR_M = 64, PR_K = 64, PR_N = 128, PR_CASES = 5 };

template <int N>
__device__ void probe_store(float *D, const float (&d)[N / 2]) {
    const int w = threadIdx.x >> 5, lane = threadIdx.x & 31, r = 16 * w + (lane >> 2), c = 2 * (lane & 3);
#pragma unroll
    for (int j = 0; j < N / 8; j++) {
        D[r * N + 8 * j + c] = d[4 * j];
        D[r * N + 8 * j + c + 1] = d[4 * j + 1];
        D[(r + 8) * N + 8 * j + c] = d[4 * j + 2];
        D[(r + 8) * N + 8 * j + c + 1] = d[4 * j + 3];
    }
}

__device__ uint32_t probe_pack(hk_bf16 lo, hk_bf16 hi) {
    return (uint32_t)__bfloat16_as_ushort(lo) | ((uint32_t)__bfloat16_as_ushort(hi) << 16);
}

/* A: [64][64] row-major (M × K). Bk: [128][64] (N × K). Bm: [64][128] (K × N). D: [64][N]. */
__global__ void __launch_bounds__(128) wgmma_probe_kernel(float *D, const hk_bf16 *A, const hk_bf16 *Bk,
                                                          const hk_bf16 *Bm, int which) {
    extern __shared__ __align__(1024) unsigned char smem[];
    unsigned char *sA = smem, *sBk = smem + 8192, *sBm = smem + 8192 + 16384;
    const int tid = threadIdx.x;
    for (int i = tid; i < PR_M * PR_K; i += 128) {
        const int r = i / PR_K, c = i % PR_K;
        *(hk_bf16 *)(sA + wg_sw128_offset(r, c)) = A[i];
    }
    for (int i = tid; i < PR_N * PR_K; i += 128) {
        const int r = i / PR_K, c = i % PR_K;
        *(hk_bf16 *)(sBk + wg_sw128_offset(r, c)) = Bk[i];
    }
    for (int i = tid; i < PR_K * PR_N; i += 128) { /* 64-column slabs of 64 rows (8 KB each) */
        const int r = i / PR_N, c = i % PR_N;
        *(hk_bf16 *)(sBm + (c / 64) * 8192 + wg_sw128_offset(r, c % 64)) = Bm[i];
    }
    wg_fence_proxy_async();
    __syncthreads();

    const int w = tid >> 5, lane = tid & 31, ar = 16 * w + (lane >> 2), ac = 2 * (lane & 3);
    const uint32_t aA = wg_smem_addr(sA), aBk = wg_smem_addr(sBk), aBm = wg_smem_addr(sBm);
    float d128[64], d64[32];
#pragma unroll
    for (int i = 0; i < 64; i++) d128[i] = 0.f;
#pragma unroll
    for (int i = 0; i < 32; i++) d64[i] = 0.f;
    wg_fence_operand(d128);
    wg_fence_operand(d64);
    wg_arrive();
#pragma unroll
    for (int ks = 0; ks < PR_K / 16; ks++) {
        uint32_t a[4];
        const int c0 = 16 * ks + ac;
        a[0] = probe_pack(A[ar * PR_K + c0], A[ar * PR_K + c0 + 1]);
        a[1] = probe_pack(A[(ar + 8) * PR_K + c0], A[(ar + 8) * PR_K + c0 + 1]);
        a[2] = probe_pack(A[ar * PR_K + c0 + 8], A[ar * PR_K + c0 + 9]);
        a[3] = probe_pack(A[(ar + 8) * PR_K + c0 + 8], A[(ar + 8) * PR_K + c0 + 9]);
        switch (which) {
        case 0: wg_mma<128>::ss<0, 0>(d128, wg_desc_kmajor(aA, ks), wg_desc_kmajor(aBk, ks), 1); break;
        case 1: wg_mma<128>::rs<0>(d128, a, wg_desc_kmajor(aBk, ks), 1); break;
        case 2: wg_mma<128>::rs<1>(d128, a, wg_desc_mnmajor(aBm, ks, 8192), 1); break;
        case 3: wg_mma<64>::rs<1>(d64, a, wg_desc_mnmajor(aBm, ks, 8192), 1); break;
        default: wg_mma<64>::ss<0, 1>(d64, wg_desc_kmajor(aA, ks), wg_desc_mnmajor(aBm, ks, 8192), 1); break;
        }
    }
    wg_commit();
    wg_wait<0>();
    wg_fence_operand(d128);
    wg_fence_operand(d64);
    if (which <= 2) probe_store<128>(D, d128);
    else probe_store<64>(D, d64);
}

/* Relative norm error ‖D − ref‖ / ‖ref‖ per case into err[0..PR_CASES); returns PR_CASES, -1
 * when a CUDA call failed, -3 when the current device is not compute capability 9.0 (-2 comes
 * from the stub in backend.cu when this file is not built). */
extern "C" int hk_cuda_wgmma_probe(double *err) {
    int device = 0, major = 0, minor = 0;
    if (cudaGetDevice(&device) != cudaSuccess ||
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess ||
        cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device) != cudaSuccess)
        return -1;
    if (major != 9 || minor != 0) return -3;
    const size_t na = PR_M * PR_K, nbk = PR_N * PR_K, nbm = PR_K * PR_N, nd = PR_M * PR_N;
    hk_bf16 *h = (hk_bf16 *)malloc((na + nbk + nbm) * sizeof(hk_bf16));
    float *hd = (float *)malloc(nd * sizeof(float));
    hk_bf16 *dev = NULL;
    float *dd = NULL;
    int rc = -1;
    if (!h || !hd) goto done;
    srand(12345);
    for (size_t i = 0; i < na + nbk + nbm; i++) h[i] = __float2bfloat16((float)rand() / RAND_MAX * 2.f - 1.f);
    if (cudaMalloc((void **)&dev, (na + nbk + nbm) * sizeof(hk_bf16)) != cudaSuccess) goto done;
    if (cudaMalloc((void **)&dd, nd * sizeof(float)) != cudaSuccess) goto done;
    if (cudaMemcpy(dev, h, (na + nbk + nbm) * sizeof(hk_bf16), cudaMemcpyHostToDevice) != cudaSuccess) goto done;
    if (cudaFuncSetAttribute(wgmma_probe_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 48 * 1024 + 1024) !=
        cudaSuccess)
        goto done;
    for (int which = 0; which < PR_CASES; which++) {
        const int N = which <= 2 ? 128 : 64;
        cudaMemset(dd, 0xff, nd * sizeof(float)); /* NaN poison */
        wgmma_probe_kernel<<<1, 128, 40 * 1024>>>(dd, dev, dev + na, dev + na + nbk, which);
        if (cudaGetLastError() != cudaSuccess || cudaDeviceSynchronize() != cudaSuccess) goto done;
        if (cudaMemcpy(hd, dd, (size_t)PR_M * N * sizeof(float), cudaMemcpyDeviceToHost) != cudaSuccess) goto done;
        const hk_bf16 *A = h, *Bk = h + na, *Bm = h + na + nbk;
        double num = 0, den = 0;
        for (int r = 0; r < PR_M; r++)
            for (int c = 0; c < N; c++) {
                double ref = 0;
                for (int k = 0; k < PR_K; k++) {
                    const double b = (which <= 1) ? (double)__bfloat162float(Bk[c * PR_K + k])
                                                  : (double)__bfloat162float(Bm[k * PR_N + c]);
                    ref += (double)__bfloat162float(A[r * PR_K + k]) * b;
                }
                const double diff = (double)hd[r * N + c] - ref;
                num += diff * diff;
                den += ref * ref;
            }
        err[which] = isfinite(num) ? sqrt(num / den) : INFINITY;
    }
    rc = PR_CASES;
done:
    cudaFree(dev);
    cudaFree(dd);
    free(h);
    free(hd);
    return rc;
}
