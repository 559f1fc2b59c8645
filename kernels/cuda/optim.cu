/* kernels/cuda/optim.cu — AdamW and the sum of squares behind gradient-norm
 * clipping.
 *
 * AdamW is one launch over one contiguous buffer (llm.c style: all parameters,
 * grads and moments live in single allocations, so one call updates the whole
 * model), float4 vectors when aligned; it writes the bf16 (or f32) mirror of
 * the updated weights in the same pass. Bias corrections are computed on the
 * host in double.
 *
 * sumsq is the one op that returns a value to the host, so it synchronises: a
 * fixed grid of per-block partial sums (double), then one block sums them in
 * a fixed order, so the result is deterministic.
 */
#include <math.h>

#include "kernels/cuda/common.cuh"

#define SUMSQ_BLOCKS 512

__global__ void sumsq_partial_kernel(double *partial, const float *x, size_t n) {
    float acc = 0.0f;
    double dacc = 0.0;
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x, stride = (size_t)gridDim.x * blockDim.x;
    int k = 0;
    for (; i < n; i += stride) {
        float v = x[i];
        acc += v * v;
        if (++k == 256) { /* flush the fp32 run into double every 256 terms */
            dacc += acc;
            acc = 0.0f;
            k = 0;
        }
    }
    dacc += acc;
    /* block reduction in double */
    __shared__ double part[256];
    part[threadIdx.x] = dacc;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if ((int)threadIdx.x < s) part[threadIdx.x] += part[threadIdx.x + s];
        __syncthreads();
    }
    if (threadIdx.x == 0) partial[blockIdx.x] = part[0];
}

__global__ void sumsq_final_kernel(double *out, const double *partial, int n) {
    if (threadIdx.x == 0 && blockIdx.x == 0) {
        double t = 0.0;
        for (int i = 0; i < n; i++) t += partial[i];
        *out = t;
    }
}

double hk_cuda_sumsq(hk_backend *hk, const void *x, size_t n) {
    if (!n) return 0.0;
    cudaStream_t s = hk_cuda_stream(hk);
    double *partial = (double *)hk_cuda_scratch(hk, (SUMSQ_BLOCKS + 1) * sizeof(double));
    double *host = (double *)hk_cuda_pinned(hk, sizeof(double));
    if (!partial || !host) return NAN;
    unsigned blocks = (unsigned)((n + 255) / 256);
    if (blocks > SUMSQ_BLOCKS) blocks = SUMSQ_BLOCKS;
    sumsq_partial_kernel<<<blocks, 256, 0, s>>>(partial, (const float *)x, n);
    if (hk_cuda_check_launch(hk, "sumsq")) return NAN;
    sumsq_final_kernel<<<1, 32, 0, s>>>(partial + SUMSQ_BLOCKS, partial, (int)blocks);
    if (hk_cuda_check_launch(hk, "sumsq")) return NAN;
    if (hk_cuda_record(hk, cudaMemcpyAsync(host, partial + SUMSQ_BLOCKS, sizeof(double), cudaMemcpyDeviceToHost, s),
                       "sumsq read-back"))
        return NAN;
    if (hk_cuda_record(hk, cudaStreamSynchronize(s), "sumsq")) return NAN;
    return *host;
}

struct adamw_hyper {
    float lr, b1, b2, eps, wd, grad_scale, bc1, bc2; /* bc: 1 / (1 − β^step) */
};

__device__ __forceinline__ float adamw_one(float &p, float g, float &m, float &v, const adamw_hyper &h) {
    g *= h.grad_scale;
    m = h.b1 * m + (1.0f - h.b1) * g;
    v = h.b2 * v + (1.0f - h.b2) * g * g;
    float mh = m * h.bc1, vh = v * h.bc2;
    p -= h.lr * (mh / (sqrtf(vh) + h.eps) + h.wd * p);
    return p;
}

template <typename M, bool VEC>
__global__ void adamw_kernel(float *params, const float *grads, float *m, float *v, M *mirror, size_t n,
                             adamw_hyper h) {
    size_t tid = blockIdx.x * (size_t)blockDim.x + threadIdx.x, stride = (size_t)gridDim.x * blockDim.x;
    if (VEC) {
        for (size_t i = tid; i < n / 4; i += stride) {
            float4 p = reinterpret_cast<float4 *>(params)[i], g = reinterpret_cast<const float4 *>(grads)[i];
            float4 mm = reinterpret_cast<float4 *>(m)[i], vv = reinterpret_cast<float4 *>(v)[i];
            adamw_one(p.x, g.x, mm.x, vv.x, h);
            adamw_one(p.y, g.y, mm.y, vv.y, h);
            adamw_one(p.z, g.z, mm.z, vv.z, h);
            adamw_one(p.w, g.w, mm.w, vv.w, h);
            reinterpret_cast<float4 *>(params)[i] = p;
            reinterpret_cast<float4 *>(m)[i] = mm;
            reinterpret_cast<float4 *>(v)[i] = vv;
            if (mirror) {
                mirror[4 * i] = st<M>(p.x);
                mirror[4 * i + 1] = st<M>(p.y);
                mirror[4 * i + 2] = st<M>(p.z);
                mirror[4 * i + 3] = st<M>(p.w);
            }
        }
    } else {
        for (size_t i = tid; i < n; i += stride) {
            float p = params[i], mm = m[i], vv = v[i];
            adamw_one(p, grads[i], mm, vv, h);
            params[i] = p;
            m[i] = mm;
            v[i] = vv;
            if (mirror) mirror[i] = st<M>(p);
        }
    }
}

void hk_cuda_adamw(hk_backend *hk, void *params, const void *grads, void *m, void *v, void *mirror, size_t n,
                   float lr, float b1, float b2, float eps, float wd, int step, float grad_scale) {
    if (!n) return;
    if (step < 1) {
        hk_cuda_fail(hk, HLAB_EINVAL, "adamw: step %d must be >= 1 (1-based)", step);
        return;
    }
    adamw_hyper h;
    h.lr = lr;
    h.b1 = b1;
    h.b2 = b2;
    h.eps = eps;
    h.wd = wd;
    h.grad_scale = grad_scale;
    h.bc1 = (float)(1.0 / (1.0 - pow((double)b1, (double)step)));
    h.bc2 = (float)(1.0 / (1.0 - pow((double)b2, (double)step)));
    int vec = hk_vec_ok(4, n, params, grads, m, v);
    unsigned grid = hk_grid_for(hk, vec ? n / 4 : n, 256);
    cudaStream_t s = hk_cuda_stream(hk);
    HK_DISPATCH_ACT(hk, T, {
        if (vec)
            adamw_kernel<T, true><<<grid, 256, 0, s>>>((float *)params, (const float *)grads, (float *)m, (float *)v,
                                                      (T *)mirror, n, h);
        else
            adamw_kernel<T, false><<<grid, 256, 0, s>>>((float *)params, (const float *)grads, (float *)m, (float *)v,
                                                       (T *)mirror, n, h);
    });
    hk_cuda_check_launch(hk, "adamw");
}
