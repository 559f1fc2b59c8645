/* kernels/cuda/optim.cu — AdamW, the sum of squares behind gradient-norm
 * clipping, and the step statistics (loss_reduce, grad_clip_scale).
 *
 * AdamW is one launch over one contiguous buffer (llm.c style: all parameters,
 * grads and moments live in single allocations, so one call updates the whole
 * model), float4 vectors when aligned; it writes the bf16 (or f32) mirror of
 * the updated weights in the same pass. Bias corrections are computed on the
 * host in double. With scale_dev the gradient scale is read on the device, so
 * the step's clipping needs no read-back.
 *
 * sumsq is the one op that returns a value to the host, so it synchronises: a
 * grid fixed by n of per-block partial sums (double), then one block sums them in
 * a fixed order, so the result is deterministic (and the same on every GPU).
 * grad_clip_scale runs the same two kernels but leaves the norm and the clip
 * scale in device memory (F64), and loss_reduce sums the token losses in one
 * block with a fixed tree: no float atomics, nothing returns to the host.
 */
#include <math.h>

#include "kernels/cuda/common.cuh"

/* sumsq: a grid that depends on n only (so the bits do not depend on the GPU), each
 * thread summing squares in double over a grid-stride run of 16-byte vectors, a fixed
 * shuffle tree per block, then one block summing the per-block partials in a fixed
 * order. Squares are formed and summed in double: no fp32 accumulation error at all. */
#define SUMSQ_THREADS 256
#define SUMSQ_BLOCKS 1024 /* ~8 blocks per SM on a 132-SM H100: one wave */

__device__ __forceinline__ double block_sum_double(double v) {
    __shared__ double part[32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if (lane == 0) part[warp] = v;
    __syncthreads();
    v = lane < nw ? part[lane] : 0.0;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

template <bool VEC>
__global__ void __launch_bounds__(SUMSQ_THREADS) sumsq_partial_kernel(double *partial, const float *x, size_t n) {
    const size_t tid = blockIdx.x * (size_t)blockDim.x + threadIdx.x, stride = (size_t)gridDim.x * blockDim.x;
    double a0 = 0.0, a1 = 0.0;
    if (VEC) {
        const float4 *x4 = reinterpret_cast<const float4 *>(x);
        const size_t n4 = n / 4;
        size_t i = tid;
        for (; i + 3 * stride < n4; i += 4 * stride) { /* four loads in flight per thread */
            float4 v[4];
#pragma unroll
            for (int u = 0; u < 4; u++) v[u] = __ldg(x4 + i + u * stride);
#pragma unroll
            for (int u = 0; u < 4; u++) {
                a0 = fma((double)v[u].x, (double)v[u].x, a0);
                a1 = fma((double)v[u].y, (double)v[u].y, a1);
                a0 = fma((double)v[u].z, (double)v[u].z, a0);
                a1 = fma((double)v[u].w, (double)v[u].w, a1);
            }
        }
        for (; i < n4; i += stride) {
            const float4 v = __ldg(x4 + i);
            a0 = fma((double)v.x, (double)v.x, a0);
            a1 = fma((double)v.y, (double)v.y, a1);
            a0 = fma((double)v.z, (double)v.z, a0);
            a1 = fma((double)v.w, (double)v.w, a1);
        }
        for (size_t i = n4 * 4 + tid; i < n; i += stride) a0 = fma((double)x[i], (double)x[i], a0); /* n % 4 tail */
    } else {
        for (size_t i = tid; i < n; i += stride) a0 = fma((double)x[i], (double)x[i], a0);
    }
    const double t = block_sum_double(a0 + a1);
    if (threadIdx.x == 0) partial[blockIdx.x] = t;
}

__global__ void __launch_bounds__(SUMSQ_THREADS) sumsq_final_kernel(double *out, const double *partial, int n) {
    double t = 0.0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) t += partial[i];
    t = block_sum_double(t);
    if (threadIdx.x == 0) *out = t;
}

/* Queues the per-block partial sums of squares of x [n > 0] into partial; returns the
 * number of blocks (0 after a launch failure, recorded). */
static unsigned sumsq_partials(hk_backend *hk, double *partial, const void *x, size_t n, const char *what) {
    cudaStream_t s = hk_cuda_stream(hk);
    const size_t per_block = (size_t)SUMSQ_THREADS * 16; /* at least 4 vectors per thread */
    unsigned blocks = (unsigned)((n + per_block - 1) / per_block);
    if (blocks > SUMSQ_BLOCKS) blocks = SUMSQ_BLOCKS;
    if (((uintptr_t)x & 15) == 0)
        sumsq_partial_kernel<true><<<blocks, SUMSQ_THREADS, 0, s>>>(partial, (const float *)x, n);
    else
        sumsq_partial_kernel<false><<<blocks, SUMSQ_THREADS, 0, s>>>(partial, (const float *)x, n);
    return hk_cuda_check_launch(hk, what) ? 0u : blocks;
}

double hk_cuda_sumsq(hk_backend *hk, const void *x, size_t n) {
    if (!n) return 0.0;
    cudaStream_t s = hk_cuda_stream(hk);
    double *partial = (double *)hk_cuda_scratch(hk, (SUMSQ_BLOCKS + 1) * sizeof(double));
    double *host = (double *)hk_cuda_pinned(hk, sizeof(double));
    if (!partial || !host) return NAN;
    const unsigned blocks = sumsq_partials(hk, partial, x, n, "sumsq");
    if (!blocks) return NAN;
    sumsq_final_kernel<<<1, SUMSQ_THREADS, 0, s>>>(partial + SUMSQ_BLOCKS, partial, (int)blocks);
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

__device__ __forceinline__ float adamw_one(float &p, float g, float &m, float &v, const adamw_hyper &h, float gs) {
    g *= gs;
    m = h.b1 * m + (1.0f - h.b1) * g;
    v = h.b2 * v + (1.0f - h.b2) * g * g;
    float mh = m * h.bc1, vh = v * h.bc2;
    p -= h.lr * (mh / (sqrtf(vh) + h.eps) + h.wd * p);
    return p;
}

/* scale_dev (or NULL: h.grad_scale): the clip scale grad_clip_scale left on the device;
 * non-finite = a diverged step, which every thread skips whole. */
template <typename M, bool VEC>
__global__ void adamw_kernel(float *params, const float *grads, float *m, float *v, M *mirror, size_t n,
                             adamw_hyper h, const double *scale_dev) {
    float gs = h.grad_scale;
    if (scale_dev) {
        const double sd = *scale_dev;
        if (!isfinite(sd)) return;
        gs = (float)sd;
    }
    size_t tid = blockIdx.x * (size_t)blockDim.x + threadIdx.x, stride = (size_t)gridDim.x * blockDim.x;
    if (VEC) {
        for (size_t i = tid; i < n / 4; i += stride) {
            float4 p = reinterpret_cast<float4 *>(params)[i], g = reinterpret_cast<const float4 *>(grads)[i];
            float4 mm = reinterpret_cast<float4 *>(m)[i], vv = reinterpret_cast<float4 *>(v)[i];
            adamw_one(p.x, g.x, mm.x, vv.x, h, gs);
            adamw_one(p.y, g.y, mm.y, vv.y, h, gs);
            adamw_one(p.z, g.z, mm.z, vv.z, h, gs);
            adamw_one(p.w, g.w, mm.w, vv.w, h, gs);
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
            adamw_one(p, grads[i], mm, vv, h, gs);
            params[i] = p;
            m[i] = mm;
            v[i] = vv;
            if (mirror) mirror[i] = st<M>(p);
        }
    }
}

void hk_cuda_adamw(hk_backend *hk, void *params, const void *grads, void *m, void *v, void *mirror, size_t n,
                   float lr, float b1, float b2, float eps, float wd, int step, float grad_scale,
                   const void *scale_dev) {
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
                                                      (T *)mirror, n, h, (const double *)scale_dev);
        else
            adamw_kernel<T, false><<<grid, 256, 0, s>>>((float *)params, (const float *)grads, (float *)m, (float *)v,
                                                       (T *)mirror, n, h, (const double *)scale_dev);
    });
    hk_cuda_check_launch(hk, "adamw");
}

/* ---- step statistics ------------------------------------------------------------------ */

/* The norm and the clip scale from sumsq's partials (kernels.h: grad_clip_scale), in one
 * block: the partials summed as sumsq_final_kernel sums them, then thread 0 forms the
 * scalars in double exactly as the host loop formed them. */
__global__ void __launch_bounds__(SUMSQ_THREADS)
    grad_clip_final_kernel(double *stat, const double *partial, int nparts, const double *micro_loss, int n_micro,
                           float clip) {
    double t = 0.0;
    for (int i = threadIdx.x; i < nparts; i += blockDim.x) t += partial[i];
    t = block_sum_double(t);
    if (threadIdx.x != 0) return;
    double loss_sum = 0.0;
    for (int k = 0; k < n_micro; k++) loss_sum += (double)(float)micro_loss[k];
    const double loss = loss_sum / n_micro, norm = sqrt(t) / n_micro;
    double scale = 1.0 / n_micro;
    if (clip > 0.0f && norm > (double)clip) scale *= (double)clip / norm;
    stat[0] = loss;
    stat[1] = norm;
    stat[2] = isfinite(loss) && isfinite(norm) ? (double)(float)scale : (double)NAN;
}

void hk_cuda_grad_clip_scale(hk_backend *hk, void *stat, const void *grads, size_t n, const void *micro_loss,
                             int n_micro, float clip) {
    if (n_micro < 1) {
        hk_cuda_fail(hk, HLAB_EINVAL, "grad_clip_scale: %d micro-batches (expected >= 1)", n_micro);
        return;
    }
    double *partial = (double *)hk_cuda_scratch(hk, SUMSQ_BLOCKS * sizeof(double));
    if (!partial) return;
    unsigned blocks = 0;
    if (n && !(blocks = sumsq_partials(hk, partial, grads, n, "grad_clip_scale"))) return;
    grad_clip_final_kernel<<<1, SUMSQ_THREADS, 0, hk_cuda_stream(hk)>>>(
        (double *)stat, partial, (int)blocks, (const double *)micro_loss, n_micro, clip);
    hk_cuda_check_launch(hk, "grad_clip_scale");
}

/* One block: each thread sums a strided run of the token losses in double, a fixed
 * shuffle tree adds the runs, thread 0 adds the aux losses in order. */
#define LOSS_THREADS 1024
__global__ void __launch_bounds__(LOSS_THREADS)
    loss_reduce_kernel(double *stat, const float *losses, int N, const float *aux, int n_aux) {
    double t = 0.0;
    for (int i = threadIdx.x; i < N; i += blockDim.x) t += (double)losses[i];
    t = block_sum_double(t);
    if (threadIdx.x != 0) return;
    double aux_sum = 0.0;
    for (int j = 0; j < n_aux; j++) aux_sum += (double)aux[j];
    stat[0] = t / N + aux_sum;
    stat[1] = aux_sum;
}

void hk_cuda_loss_reduce(hk_backend *hk, void *stat, const void *losses, int N, const void *aux, int n_aux) {
    if (N <= 0 || n_aux < 0 || (n_aux > 0 && !aux)) {
        hk_cuda_fail(hk, HLAB_EINVAL, "loss_reduce: N=%d n_aux=%d (expected N > 0, aux for n_aux > 0)", N, n_aux);
        return;
    }
    loss_reduce_kernel<<<1, LOSS_THREADS, 0, hk_cuda_stream(hk)>>>((double *)stat, (const float *)losses, N,
                                                                  (const float *)aux, n_aux);
    hk_cuda_check_launch(hk, "loss_reduce");
}
