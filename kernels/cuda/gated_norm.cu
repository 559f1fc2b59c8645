/* kernels/cuda/gated_norm.cu — the grouped gated RMSNorm of Mamba-2, forward and backward.
 *
 * Conventions: g = y ⊙ SiLU(z); each row's Di channels form G groups of Dg = Di/G;
 * out = g · rstd_group · w. Sums in fp32. Two implementations of the same function:
 *  - warp (default where Dg fits: Dg ≤ 256 vectors of 16 bytes, or Dg ≤ 256 scalars when
 *    Dg or a pointer does not allow vectors): gated_norm_warp.cuh, one warp per (row, group),
 *    the row held in registers, 16-byte accesses; the backward accumulates dw per lane over
 *    a block's rows (BWD_ROWS_PER_BLOCK), sums the block's warps in order in shared memory,
 *    and a finish kernel sums the blocks in order (deterministic, no atomics).
 *  - legacy (larger Dg, or HLAB_GN_LEGACY=1): one block per (row, group); the weight gradient
 *    a column sum over rows through hk_colsum (common.cuh), recomputing ĝ from y, z, rstd.
 */
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/gated_norm_warp.cuh"

#define GN_THREADS 128

template <typename T>
__global__ void gated_rmsnorm_fwd_kernel(T *out, float *rstd, const T *y, const T *z, const float *w, int Di, int G,
                                         float eps) {
    const int n = blockIdx.x, g = blockIdx.y, Dg = Di / G;
    const size_t base = (size_t)n * Di + (size_t)g * Dg;
    float ss = 0.0f;
    for (int k = threadIdx.x; k < Dg; k += blockDim.x) {
        const float zz = ld(z[base + k]), gate = ld(y[base + k]) * silu_f(zz);
        ss += gate * gate;
    }
    ss = block_sum(ss);
    const float r = 1.0f / sqrtf(ss / (float)Dg + eps);
    if (threadIdx.x == 0) rstd[(size_t)n * G + g] = r;
    for (int k = threadIdx.x; k < Dg; k += blockDim.x) {
        const float zz = ld(z[base + k]), gate = ld(y[base + k]) * silu_f(zz);
        out[base + k] = st<T>(gate * r * w[(size_t)g * Dg + k]);
    }
}

/* dg = rstd·(w⊙dout − ĝ·mean(w⊙dout⊙ĝ)); dy = dg·SiLU(z); dz = dg·y·SiLU'(z). */
template <typename T>
__global__ void gated_rmsnorm_bwd_kernel(T *dy, T *dz, const T *dout, const T *y, const T *z, const float *w,
                                         const float *rstd, int Di, int G) {
    const int n = blockIdx.x, g = blockIdx.y, Dg = Di / G;
    const size_t base = (size_t)n * Di + (size_t)g * Dg;
    const float r = rstd[(size_t)n * G + g];
    const float *wg = w + (size_t)g * Dg;
    float dot = 0.0f;
    for (int k = threadIdx.x; k < Dg; k += blockDim.x) {
        const float gh = ld(y[base + k]) * silu_f(ld(z[base + k])) * r;
        dot += wg[k] * ld(dout[base + k]) * gh;
    }
    const float mean = block_sum(dot) / (float)Dg;
    for (int k = threadIdx.x; k < Dg; k += blockDim.x) {
        const float zz = ld(z[base + k]), yy = ld(y[base + k]), s = sigmoid_f(zz), silu = zz * s;
        const float dg = r * (wg[k] * ld(dout[base + k]) - yy * silu * r * mean);
        dy[base + k] = st<T>(dg * silu);
        dz[base + k] = st<T>(dg * yy * s * (1.0f + zz * (1.0f - s)));
    }
}

/* dw[c] += Σ_n dout[n,c] · ĝ[n,c] */
template <typename T> struct gn_dw_term {
    const T *dout, *y, *z;
    const float *rstd;
    int Di, Dg, G;
    __device__ float operator()(int r, int c) const {
        const size_t i = (size_t)r * Di + c;
        return ld(dout[i]) * ld(y[i]) * silu_f(ld(z[i])) * rstd[(size_t)r * G + c / Dg];
    }
};

/* ---- warp path ------------------------------------------------------------------- */

template <typename T, int NV, int MAXV>
__global__ __launch_bounds__(32 * gn_warp::WARPS) void gated_rmsnorm_fwd_warp_kernel(T *out, float *rstd, const T *y,
                                                                                     const T *z, const float *w,
                                                                                     int N, int Di, int G, float eps) {
    const int unit = blockIdx.x * gn_warp::WARPS + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (unit >= N * G) return; /* whole warps leave together */
    const int n = unit / G, g = unit % G, Dg = Di / G, nvec = Dg / NV;
    const size_t base = (size_t)n * Di + (size_t)g * Dg;
    float gate[MAXV][NV];
    const float ss = warp_sum(gn_warp::fwd_gates<T, NV, MAXV>(gate, y + base, z + base, nvec, lane));
    const float r = 1.0f / sqrtf(ss / (float)Dg + eps);
    if (lane == 0) rstd[unit] = r;
    gn_warp::fwd_out<T, NV, MAXV>(out + base, gate, w + (size_t)g * Dg, r, nvec, lane);
}

/* Block (row block bx, group g): warps take rows bx·R + warp, + WARPS, ...; part[bx, g·Dg + c]
 * = the block's Σ dout·ĝ, warps summed in order. */
template <typename T, int NV, int MAXV>
__global__ __launch_bounds__(32 * gn_warp::WARPS) void gated_rmsnorm_bwd_warp_kernel(
    T *dy, T *dz, float *part, const T *dout, const T *y, const T *z, const float *w, const float *rstd, int N, int Di,
    int G) {
    constexpr int ROW = MAXV * 32 * NV;
    __shared__ __align__(32) float acc[gn_warp::WARPS][ROW]; /* each warp's dw partial (32-byte packs) */
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = blockIdx.y, Dg = Di / G, nvec = Dg / NV;
    const int n0 = blockIdx.x * gn_warp::BWD_ROWS_PER_BLOCK, n1 = min(N, n0 + gn_warp::BWD_ROWS_PER_BLOCK);
    const float *wg = w + (size_t)g * Dg;
    for (int c = lane; c < ROW; c += 32) acc[warp][c] = 0.0f;
    __syncwarp();
    for (int n = n0 + warp; n < n1; n += gn_warp::WARPS) {
        const size_t base = (size_t)n * Di + (size_t)g * Dg;
        const float r = rstd[(size_t)n * G + g];
        gn_warp::bwd_row<T, NV, MAXV> row;
        const float dot =
            warp_sum(gn_warp::bwd_dot<T, NV, MAXV>(row, acc[warp], y + base, z + base, dout + base, wg, r, nvec, lane));
        gn_warp::keep_packed(row);
        gn_warp::bwd_out<T, NV, MAXV>(dy + base, dz + base, row, wg, r, dot / (float)Dg, nvec, lane);
    }
    __syncthreads();
    float *dst = part + (size_t)blockIdx.x * Di + (size_t)g * Dg;
    for (int c = threadIdx.x; c < Dg; c += blockDim.x) {
        float s = 0.0f;
        for (int wi = 0; wi < gn_warp::WARPS; wi++) s += acc[wi][c]; /* warps in order */
        dst[c] = s;
    }
}

/* dw[c] += Σ_blocks part[block, c], blocks in order */
__global__ void gated_rmsnorm_dw_finish_kernel(float *dw, const float *part, int blocks, int Di) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= Di) return;
    float s = 0.0f;
    for (int b = 0; b < blocks; b++) s += part[(size_t)b * Di + c];
    dw[c] += s;
}

/* Vector width (elements) of the warp path for this call: 16 bytes when Dg and every pointer
 * allow it (w: one vector of floats), else 1; 0 when Dg does not fit the registers
 * (MAXV ≤ 8 vectors per lane) or HLAB_GN_LEGACY=1. */
static int gn_warp_lanes(size_t elem, int Dg, const void *a0, const void *a1, const void *a2, const void *w,
                         const void *a3 = 0) {
    if (hk_cuda_env_int("HLAB_GN_LEGACY", 0) == 1) return 0;
    const int vec = 16 / (int)elem;
    const uintptr_t bits = (uintptr_t)a0 | (uintptr_t)a1 | (uintptr_t)a2 | (uintptr_t)a3;
    const int nv = Dg % vec == 0 && bits % 16 == 0 && (uintptr_t)w % (sizeof(float) * vec) == 0 ? vec : 1;
    return Dg / nv <= 32 * 8 ? nv : 0;
}

/* MAXV = vectors per lane, the smallest of 2, 4, 6, 8 that holds Dg / NV / 32 */
#define GN_MAXV_SWITCH(nvec, ...)                                           \
    do {                                                                    \
        const int per_lane_ = ((nvec) + 31) / 32;                           \
        if (per_lane_ <= 2) { constexpr int MV = 2; __VA_ARGS__; }          \
        else if (per_lane_ <= 4) { constexpr int MV = 4; __VA_ARGS__; }     \
        else if (per_lane_ <= 6) { constexpr int MV = 6; __VA_ARGS__; }     \
        else { constexpr int MV = 8; __VA_ARGS__; }                         \
    } while (0)

template <typename T>
static void gn_fwd_warp(hk_backend *hk, int nv, T *out, float *rstd, const T *y, const T *z, const float *w, int N,
                        int Di, int G, float eps) {
    constexpr int VEC = 16 / (int)sizeof(T);
    const unsigned blocks = (unsigned)(((long long)N * G + gn_warp::WARPS - 1) / gn_warp::WARPS);
    const int nvec = Di / G / nv;
    if (nv == VEC)
        GN_MAXV_SWITCH(nvec, gated_rmsnorm_fwd_warp_kernel<T, VEC, MV><<<blocks, 32 * gn_warp::WARPS, 0,
                                                                          hk_cuda_stream(hk)>>>(out, rstd, y, z, w, N,
                                                                                                Di, G, eps));
    else
        GN_MAXV_SWITCH(nvec, gated_rmsnorm_fwd_warp_kernel<T, 1, MV><<<blocks, 32 * gn_warp::WARPS, 0,
                                                                        hk_cuda_stream(hk)>>>(out, rstd, y, z, w, N,
                                                                                              Di, G, eps));
}

template <typename T>
static void gn_bwd_warp(hk_backend *hk, int nv, T *dy, T *dz, float *dw, const T *dout, const T *y, const T *z,
                        const float *w, const float *rstd, int N, int Di, int G) {
    constexpr int VEC = 16 / (int)sizeof(T);
    const int blocks = (N + gn_warp::BWD_ROWS_PER_BLOCK - 1) / gn_warp::BWD_ROWS_PER_BLOCK;
    const int nvec = Di / G / nv;
    float *part = (float *)hk_cuda_scratch(hk, sizeof(float) * (size_t)blocks * Di);
    if (!part) return;
    const dim3 grid(blocks, G);
    if (nv == VEC)
        GN_MAXV_SWITCH(nvec, gated_rmsnorm_bwd_warp_kernel<T, VEC, MV><<<grid, 32 * gn_warp::WARPS, 0,
                                                                          hk_cuda_stream(hk)>>>(dy, dz, part, dout, y,
                                                                                                z, w, rstd, N, Di, G));
    else
        GN_MAXV_SWITCH(nvec, gated_rmsnorm_bwd_warp_kernel<T, 1, MV><<<grid, 32 * gn_warp::WARPS, 0,
                                                                        hk_cuda_stream(hk)>>>(dy, dz, part, dout, y, z,
                                                                                              w, rstd, N, Di, G));
    if (hk_cuda_check_launch(hk, "gated_rmsnorm_bwd warp")) return;
    gated_rmsnorm_dw_finish_kernel<<<(Di + 255) / 256, 256, 0, hk_cuda_stream(hk)>>>(dw, part, blocks, Di);
}

/* ---- entry points ----------------------------------------------------------------- */

static int gn_dims_ok(hk_backend *hk, const char *op, int N, int Di, int G) {
    if (N <= 0 || Di <= 0 || G <= 0 || Di % G != 0 || G > 65535) {
        hk_cuda_fail(hk, HLAB_EINVAL, "%s: bad dims N=%d Di=%d G=%d (expected all > 0, Di %% G == 0, G <= 65535)", op,
                     N, Di, G);
        return 0;
    }
    return 1;
}

void hk_cuda_gated_rmsnorm_fwd(hk_backend *hk, void *out, void *rstd, const void *y, const void *z, const void *w,
                               int N, int Di, int G, float eps) {
    if (!gn_dims_ok(hk, "gated_rmsnorm_fwd", N, Di, G)) return;
    HK_DISPATCH_ACT(hk, T, {
        const int nv = gn_warp_lanes(sizeof(T), Di / G, out, y, z, w);
        if (nv) {
            gn_fwd_warp<T>(hk, nv, (T *)out, (float *)rstd, (const T *)y, (const T *)z, (const float *)w, N, Di, G,
                           eps);
            hk_cuda_check_launch(hk, "gated_rmsnorm_fwd warp");
            return;
        }
    });
    HK_DISPATCH_ACT(hk, T, {
        gated_rmsnorm_fwd_kernel<T><<<dim3(N, G), GN_THREADS, 0, hk_cuda_stream(hk)>>>(
            (T *)out, (float *)rstd, (const T *)y, (const T *)z, (const float *)w, Di, G, eps);
    });
    hk_cuda_check_launch(hk, "gated_rmsnorm_fwd");
}

void hk_cuda_gated_rmsnorm_bwd(hk_backend *hk, void *dy, void *dz, void *dw, const void *dout, const void *y,
                               const void *z, const void *w, const void *rstd, int N, int Di, int G) {
    if (!gn_dims_ok(hk, "gated_rmsnorm_bwd", N, Di, G)) return;
    HK_DISPATCH_ACT(hk, T, {
        const int nv = gn_warp_lanes(sizeof(T), Di / G, dy, dz, dout, w, y);
        if (nv && (uintptr_t)z % 16 == 0) {
            gn_bwd_warp<T>(hk, nv, (T *)dy, (T *)dz, (float *)dw, (const T *)dout, (const T *)y, (const T *)z,
                           (const float *)w, (const float *)rstd, N, Di, G);
            hk_cuda_check_launch(hk, "gated_rmsnorm_bwd warp finish");
            return;
        }
    });
    HK_DISPATCH_ACT(hk, T, {
        gated_rmsnorm_bwd_kernel<T><<<dim3(N, G), GN_THREADS, 0, hk_cuda_stream(hk)>>>(
            (T *)dy, (T *)dz, (const T *)dout, (const T *)y, (const T *)z, (const float *)w, (const float *)rstd, Di,
            G);
        if (hk_cuda_check_launch(hk, "gated_rmsnorm_bwd")) return;
        gn_dw_term<T> term = {(const T *)dout, (const T *)y, (const T *)z, (const float *)rstd, Di, Di / G, G};
        hk_colsum(hk, (float *)dw, N, Di, term, "gated_rmsnorm_bwd dw");
    });
}
