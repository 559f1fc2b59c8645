/* kernels/cuda/xent.cu — fused softmax cross-entropy over the vocabulary.
 *
 * One block per token row. Each thread keeps an online (max, sum of exp) pair
 * over its share of the row, in fp32, then the block merges the pairs: one
 * read of the logits for the loss. The backward, which may write its gradient
 * over the logits in place, keeps the row in shared memory between its
 * statistics pass and its gradient pass when the row fits (one read, one
 * write), else reads it twice. Logits move in 16-byte vectors when the row
 * allows.
 */
#include "kernels/cuda/common.cuh"

struct online_sm {
    float m, s; /* running max, Σ exp(x − m) */
};
__device__ __forceinline__ void online_add(online_sm &a, float x) {
    if (x > a.m) {
        a.s = a.s * expf(a.m - x) + 1.0f;
        a.m = x;
    } else {
        a.s += expf(x - a.m);
    }
}

/* Log-sum-exp of row x (length V) over the block; every thread gets it. */
template <typename T, bool VEC> __device__ float row_lse(const T *x, int V) {
    constexpr int W = VEC ? hk_vec<T>::n : 1;
    online_sm a = {-INFINITY, 0.0f};
    for (int c = threadIdx.x * W; c < V; c += blockDim.x * W) {
        if (VEC) {
            hk_vec<T> v = vload(x + c);
#pragma unroll
            for (int k = 0; k < W; k++) online_add(a, ld(v.v[k]));
        } else {
            online_add(a, ld(x[c]));
        }
    }
    float m = block_max(a.m);
    float s = block_sum(a.m == -INFINITY ? 0.0f : a.s * expf(a.m - m));
    return m + logf(s);
}

/* A target outside [0, V) is flagged (reported at the next sync); its row's
 * loss is NaN and its gradient carries no one-hot term: nothing out of bounds. */
__device__ __forceinline__ int target_of(const int32_t *targets, int V, unsigned *flags) {
    int t = targets[blockIdx.x];
    if ((t < 0 || t >= V) && threadIdx.x == 0) atomicOr(flags, HK_BAD_TARGET);
    return t;
}

template <typename T, bool VEC>
__global__ void xent_fwd_kernel(float *losses, const T *logits, const int32_t *targets, int V, unsigned *flags) {
    const T *x = logits + (size_t)blockIdx.x * V;
    float lse = row_lse<T, VEC>(x, V);
    int t = target_of(targets, V, flags);
    if (threadIdx.x == 0) losses[blockIdx.x] = (t >= 0 && t < V) ? lse - ld(x[t]) : NAN;
}

template <typename T, bool VEC>
__global__ void xent_bwd_kernel(T *dlogits, const T *logits, const int32_t *targets, float dloss, int V,
                                unsigned *flags) {
    constexpr int W = VEC ? hk_vec<T>::n : 1;
    const T *x = logits + (size_t)blockIdx.x * V;
    T *d = dlogits + (size_t)blockIdx.x * V;
    float lse = row_lse<T, VEC>(x, V);
    int tgt = target_of(targets, V, flags);
    __syncthreads(); /* in place: every thread has read the row before any writes */
    for (int c = threadIdx.x * W; c < V; c += blockDim.x * W) {
        if (VEC) {
            hk_vec<T> v = vload(x + c), o;
#pragma unroll
            for (int k = 0; k < W; k++)
                o.v[k] = st<T>(dloss * (expf(ld(v.v[k]) - lse) - (c + k == tgt ? 1.0f : 0.0f)));
            vstore(d + c, o);
        } else {
            d[c] = st<T>(dloss * (expf(ld(x[c]) - lse) - (c == tgt ? 1.0f : 0.0f)));
        }
    }
}

/* The backward when the row fits in shared memory (V·sizeof(T) up to the
 * opt-in limit: V ~ 113k for bf16 on Hopper): the row is read from device
 * memory once, kept in shared memory for the gradient pass, and written once:
 * two passes over the logits instead of three. */
template <typename T>
__global__ void xent_bwd_smem_kernel(T *dlogits, const T *logits, const int32_t *targets, float dloss, int V,
                                     unsigned *flags) {
    extern __shared__ __align__(16) unsigned char xent_smem[];
    constexpr int W = hk_vec<T>::n;
    T *row = reinterpret_cast<T *>(xent_smem);
    const T *x = logits + (size_t)blockIdx.x * V;
    T *d = dlogits + (size_t)blockIdx.x * V;
    online_sm a = {-INFINITY, 0.0f};
    for (int c = threadIdx.x * W; c < V; c += blockDim.x * W) {
        hk_vec<T> v = vload(x + c);
        vstore(row + c, v);
#pragma unroll
        for (int k = 0; k < W; k++) online_add(a, ld(v.v[k]));
    }
    float m = block_max(a.m);
    float lse = m + logf(block_sum(a.m == -INFINITY ? 0.0f : a.s * expf(a.m - m)));
    int tgt = target_of(targets, V, flags);
    for (int c = threadIdx.x * W; c < V; c += blockDim.x * W) { /* same thread, same elements: no barrier needed */
        hk_vec<T> v = vload(row + c), o;
#pragma unroll
        for (int k = 0; k < W; k++) o.v[k] = st<T>(dloss * (expf(ld(v.v[k]) - lse) - (c + k == tgt ? 1.0f : 0.0f)));
        vstore(d + c, o);
    }
}

/* Launches the shared-memory backward if the row fits; returns 0 otherwise. */
template <typename T>
static int xent_bwd_smem(hk_backend *hk, void *dlogits, const void *logits, const int32_t *targets, float dloss, int N,
                         int V) {
    if (!hk_vec_ok(sizeof(T), (size_t)V, logits, dlogits)) return 0;
    int dev = 0, optin = 0;
    size_t bytes = (size_t)V * sizeof(T);
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess ||
        bytes > (size_t)optin) {
        cudaGetLastError();
        return 0;
    }
    if (bytes > 48 * 1024 &&
        hk_cuda_record(hk, cudaFuncSetAttribute(xent_bwd_smem_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                (int)bytes),
                       "xent_bwd"))
        return 1;
    xent_bwd_smem_kernel<T><<<N, 512, bytes, hk_cuda_stream(hk)>>>((T *)dlogits, (const T *)logits, targets, dloss, V,
                                                                  hk_cuda_input_flags(hk));
    hk_cuda_check_launch(hk, "xent_bwd");
    return 1;
}

void hk_cuda_xent_fwd(hk_backend *hk, void *losses, const void *logits, const int32_t *targets, int N, int V) {
    if (N <= 0 || V <= 0) return;
    HK_DISPATCH_ACT(hk, T, {
        if (hk_vec_ok(sizeof(T), (size_t)V, logits))
            xent_fwd_kernel<T, true><<<N, 256, 0, hk_cuda_stream(hk)>>>((float *)losses, (const T *)logits, targets, V,
                                                                       hk_cuda_input_flags(hk));
        else
            xent_fwd_kernel<T, false><<<N, 256, 0, hk_cuda_stream(hk)>>>((float *)losses, (const T *)logits, targets,
                                                                        V, hk_cuda_input_flags(hk));
    });
    hk_cuda_check_launch(hk, "xent_fwd");
}

void hk_cuda_xent_bwd(hk_backend *hk, void *dlogits, const void *logits, const int32_t *targets, float dloss, int N,
                      int V) {
    if (N <= 0 || V <= 0) return;
    HK_DISPATCH_ACT(hk, T, {
        if (xent_bwd_smem<T>(hk, dlogits, logits, targets, dloss, N, V)) return;
        if (hk_vec_ok(sizeof(T), (size_t)V, logits, dlogits))
            xent_bwd_kernel<T, true><<<N, 256, 0, hk_cuda_stream(hk)>>>((T *)dlogits, (const T *)logits, targets,
                                                                       dloss, V, hk_cuda_input_flags(hk));
        else
            xent_bwd_kernel<T, false><<<N, 256, 0, hk_cuda_stream(hk)>>>((T *)dlogits, (const T *)logits, targets,
                                                                        dloss, V, hk_cuda_input_flags(hk));
    });
    hk_cuda_check_launch(hk, "xent_bwd");
}
