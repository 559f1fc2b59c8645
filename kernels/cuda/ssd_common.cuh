/* kernels/cuda/ssd_common.cuh — what the two SSD implementations share: the
 * geometry of an hk_ssd_dims problem (row width W = H·P + 2·G·N of xbc, chunk
 * count) and the scalar functions of Δ = softplus(dt + dt_bias). */
#ifndef HLAB_KERNELS_CUDA_SSD_COMMON_CUH
#define HLAB_KERNELS_CUDA_SSD_COMMON_CUH

#include "kernels/cuda/common.cuh"

struct ssd_geom {
    int B, T, H, P, G, N, Q, nc, hpg;
    size_t W, HP, PN;
};

static inline ssd_geom ssd_make(hk_ssd_dims d) {
    ssd_geom s;
    s.B = d.B, s.T = d.T, s.H = d.H, s.P = d.P, s.G = d.G, s.N = d.N, s.Q = d.chunk;
    s.nc = (d.T + d.chunk - 1) / d.chunk, s.hpg = d.H / d.G;
    s.W = (size_t)d.H * d.P + 2 * (size_t)d.G * d.N, s.HP = (size_t)d.H * d.P, s.PN = (size_t)d.P * d.N;
    return s;
}

__device__ __forceinline__ float ssd_softplus(float u) { return u > 0.0f ? u + log1pf(expf(-u)) : log1pf(expf(u)); }
__device__ __forceinline__ float ssd_sigmoid(float u) {
    if (u >= 0.0f) return 1.0f / (1.0f + expf(-u));
    const float e = expf(u);
    return e / (1.0f + e);
}

/* Per-head parameter gradients from per-(head, batch, chunk) partials
 * [H][count][3] = (d dt_bias, d A_log, d D), summed in a fixed order (no
 * atomics: the same inputs give the same bits); += into the R buffers. */
static __global__ void ssd_param_sum_kernel(float *ddt_bias, float *dA_log, float *dDskip, const float *partial,
                                            int H, int count) {
    const int h = blockIdx.x * blockDim.x + threadIdx.x;
    if (h >= H) return;
    float a = 0.0f, bb = 0.0f, cc = 0.0f;
    for (int k = 0; k < count; k++) {
        const float *p = partial + ((size_t)h * count + k) * 3;
        a += p[0], bb += p[1], cc += p[2];
    }
    ddt_bias[h] += a, dA_log[h] += bb, dDskip[h] += cc;
}

#endif
