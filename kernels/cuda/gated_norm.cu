/* kernels/cuda/gated_norm.cu — the grouped gated RMSNorm of Mamba-2, forward and backward.
 *
 * Conventions: g = y ⊙ SiLU(z); each row's Di channels form G groups of Dg = Di/G;
 * out = g · rstd_group · w. One block per (row, group); sums in fp32. The weight
 * gradient is a column sum over rows through the deterministic hk_colsum
 * (common.cuh), recomputing ĝ = g·rstd from y, z and the saved rstd.
 */
#include "kernels/cuda/common.cuh"

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
        gated_rmsnorm_fwd_kernel<T><<<dim3(N, G), GN_THREADS, 0, hk_cuda_stream(hk)>>>(
            (T *)out, (float *)rstd, (const T *)y, (const T *)z, (const float *)w, Di, G, eps);
    });
    hk_cuda_check_launch(hk, "gated_rmsnorm_fwd");
}

void hk_cuda_gated_rmsnorm_bwd(hk_backend *hk, void *dy, void *dz, void *dw, const void *dout, const void *y,
                               const void *z, const void *w, const void *rstd, int N, int Di, int G) {
    if (!gn_dims_ok(hk, "gated_rmsnorm_bwd", N, Di, G)) return;
    HK_DISPATCH_ACT(hk, T, {
        gated_rmsnorm_bwd_kernel<T><<<dim3(N, G), GN_THREADS, 0, hk_cuda_stream(hk)>>>(
            (T *)dy, (T *)dz, (const T *)dout, (const T *)y, (const T *)z, (const float *)w, (const float *)rstd, Di,
            G);
        if (hk_cuda_check_launch(hk, "gated_rmsnorm_bwd")) return;
        gn_dw_term<T> term = {(const T *)dout, (const T *)y, (const T *)z, (const float *)rstd, Di, Di / G, G};
        hk_colsum(hk, (float *)dw, N, Di, term, "gated_rmsnorm_bwd dw");
    });
}
