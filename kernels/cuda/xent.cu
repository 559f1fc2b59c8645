/* kernels/cuda/xent.cu — fused softmax cross-entropy over the vocabulary.
 *
 * One block per token row. Each thread keeps an online (max, sum of exp) pair
 * over its share of the row, in fp32, then the block merges the pairs: one
 * read of the logits for the loss. The backward, which may write its gradient
 * over the logits in place, keeps the row in shared memory between its
 * statistics pass and its gradient pass when the row fits (one read, one
 * write), else reads it twice. Logits move in 16-byte vectors when the row
 * allows. The fused xent_fwd_bwd is the backward that also writes each row's
 * loss (taken from the row before its gradient overwrites it): a training
 * step then reads the logits once instead of twice.
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

/* The loss of the block's row; target_logit is used only for a valid target
 * (else NaN: the bad target is reported at the next sync). */
__device__ __forceinline__ void write_loss(float *losses, float lse, int tgt, int V, float target_logit) {
    losses[blockIdx.x] = (tgt >= 0 && tgt < V) ? lse - target_logit : NAN;
}

template <typename T, bool VEC>
__global__ void xent_fwd_kernel(float *losses, const T *logits, const int32_t *targets, int V, unsigned *flags) {
    const T *x = logits + (size_t)blockIdx.x * V;
    float lse = row_lse<T, VEC>(x, V);
    int t = target_of(targets, V, flags);
    if (threadIdx.x == 0) write_loss(losses, lse, t, V, (t >= 0 && t < V) ? ld(x[t]) : 0.0f);
}

/* losses == NULL: xent_bwd; else xent_fwd_bwd (the loss read before any write). */
template <typename T, bool VEC>
__global__ void xent_bwd_kernel(float *losses, T *dlogits, const T *logits, const int32_t *targets, float dloss, int V,
                                unsigned *flags) {
    constexpr int W = VEC ? hk_vec<T>::n : 1;
    const T *x = logits + (size_t)blockIdx.x * V;
    T *d = dlogits + (size_t)blockIdx.x * V;
    float lse = row_lse<T, VEC>(x, V);
    int tgt = target_of(targets, V, flags);
    if (losses && threadIdx.x == 0) write_loss(losses, lse, tgt, V, (tgt >= 0 && tgt < V) ? ld(x[tgt]) : 0.0f);
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

/* Adds U vectors to the running (max, sum): their max first, then one rescale
 * of the sum and U·W independent exponentials in U partial sums, so the
 * exponentials overlap instead of forming one dependent chain per element.
 * Vectors with live[u] = 0 and values of -inf contribute 0; NaN propagates. */
template <typename T, int U>
__device__ __forceinline__ void online_add_vecs(online_sm &a, const hk_vec<T> (&v)[U], const bool (&live)[U]) {
    constexpr int W = hk_vec<T>::n;
    float f[U][W], mx = a.m;
#pragma unroll
    for (int u = 0; u < U; u++)
#pragma unroll
        for (int k = 0; k < W; k++) {
            f[u][k] = live[u] ? ld(v[u].v[k]) : -INFINITY;
            mx = fmaxf(mx, f[u][k]);
        }
    if (mx == -INFINITY) return; /* nothing finite yet: the state stays empty */
    float part[U];
#pragma unroll
    for (int u = 0; u < U; u++) {
        part[u] = 0.0f;
#pragma unroll
        for (int k = 0; k < W; k++) part[u] += expf(f[u][k] - mx);
    }
    float s = a.s * expf(a.m - mx); /* a.m = -inf: 0 */
#pragma unroll
    for (int u = 0; u < U; u++) s += part[u];
    a.m = mx;
    a.s = s;
}

/* The backward when the row fits in shared memory (V·sizeof(T) up to the
 * opt-in limit: V ~ 113k for bf16 on Hopper): the row is read from device
 * memory once, kept in shared memory for the gradient pass, and written once:
 * two passes over the logits instead of three. A 50304-wide bf16 row takes
 * 98 KiB, so two blocks share an SM: each thread issues XENT_UNROLL vector
 * loads before using any (64 KiB in flight per SM) to keep DRAM busy. */
#define XENT_SMEM_THREADS 512
#define XENT_UNROLL 4
template <typename T>
__global__ void __launch_bounds__(XENT_SMEM_THREADS, 2)
    xent_bwd_smem_kernel(float *losses, T *dlogits, const T *logits, const int32_t *targets, float dloss, int V,
                         unsigned *flags) {
    extern __shared__ __align__(16) unsigned char xent_smem[];
    constexpr int W = hk_vec<T>::n, U = XENT_UNROLL;
    T *row = reinterpret_cast<T *>(xent_smem);
    const T *x = logits + (size_t)blockIdx.x * V;
    T *d = dlogits + (size_t)blockIdx.x * V;
    const int nv = V / W, step = U * blockDim.x;
    online_sm a = {-INFINITY, 0.0f};
    for (int base = threadIdx.x; base < nv; base += step) {
        /* all U loads issue back to back: past the row end, a clamped (valid) address, masked below */
        hk_vec<T> v[U];
        bool live[U];
#pragma unroll
        for (int u = 0; u < U; u++) {
            int i = base + u * blockDim.x;
            live[u] = i < nv;
            v[u] = vload(x + (size_t)min(i, nv - 1) * W);
        }
#pragma unroll
        for (int u = 0; u < U; u++)
            if (live[u]) vstore(row + (size_t)(base + u * blockDim.x) * W, v[u]);
        online_add_vecs<T, U>(a, v, live);
    }
    float m = block_max(a.m);
    float lse = m + logf(block_sum(a.m == -INFINITY ? 0.0f : a.s * expf(a.m - m)));
    int tgt = target_of(targets, V, flags);
    /* the block reductions' barriers made every thread's shared-row stores visible */
    if (losses && threadIdx.x == 0) write_loss(losses, lse, tgt, V, (tgt >= 0 && tgt < V) ? ld(row[tgt]) : 0.0f);
    /* same thread, same elements as above: no barrier needed for the shared row;
     * in place, every thread has read its global row share before the barriers above */
    for (int base = threadIdx.x; base < nv; base += step) {
        hk_vec<T> v[U];
#pragma unroll
        for (int u = 0; u < U; u++) v[u] = vload(row + min(base + u * (int)blockDim.x, nv - 1) * W);
#pragma unroll
        for (int u = 0; u < U; u++) {
            int c = (base + u * blockDim.x) * W;
            if (c >= V) break;
            hk_vec<T> o;
#pragma unroll
            for (int k = 0; k < W; k++)
                o.v[k] = st<T>(dloss * (expf(ld(v[u].v[k]) - lse) - (c + k == tgt ? 1.0f : 0.0f)));
            vstore(d + c, o);
        }
    }
}

/* Launches the shared-memory backward if the row fits; returns 0 otherwise. */
template <typename T>
static int xent_bwd_smem(hk_backend *hk, float *losses, void *dlogits, const void *logits, const int32_t *targets,
                         float dloss, int N, int V, const char *what) {
    if (!hk_vec_ok(sizeof(T), (size_t)V, logits, dlogits)) return 0;
    int dev = 0, optin = 0;
    size_t bytes = (size_t)V * sizeof(T);
    /* the block's static reduction buffers take shared memory too: keep a margin */
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess ||
        bytes + 1024 > (size_t)optin) {
        cudaGetLastError();
        return 0;
    }
    /* all of L1 as shared memory, so two 98 KiB rows (bf16, V = 50304) share an SM */
    if (bytes > 48 * 1024 &&
        (hk_cuda_record(hk, cudaFuncSetAttribute(xent_bwd_smem_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                 (int)bytes),
                        what) ||
         hk_cuda_record(hk, cudaFuncSetAttribute(xent_bwd_smem_kernel<T>,
                                                 cudaFuncAttributePreferredSharedMemoryCarveout,
                                                 (int)cudaSharedmemCarveoutMaxShared),
                        what)))
        return 1;
    xent_bwd_smem_kernel<T><<<N, XENT_SMEM_THREADS, bytes, hk_cuda_stream(hk)>>>(
        losses, (T *)dlogits, (const T *)logits, targets, dloss, V, hk_cuda_input_flags(hk));
    hk_cuda_check_launch(hk, what);
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

/* The backward, and with losses != NULL the fused forward + backward. */
static void xent_bwd_launch(hk_backend *hk, float *losses, void *dlogits, const void *logits, const int32_t *targets,
                            float dloss, int N, int V, const char *what) {
    if (N <= 0 || V <= 0) return;
    HK_DISPATCH_ACT(hk, T, {
        if (xent_bwd_smem<T>(hk, losses, dlogits, logits, targets, dloss, N, V, what)) return;
        if (hk_vec_ok(sizeof(T), (size_t)V, logits, dlogits))
            xent_bwd_kernel<T, true><<<N, 256, 0, hk_cuda_stream(hk)>>>(losses, (T *)dlogits, (const T *)logits,
                                                                       targets, dloss, V, hk_cuda_input_flags(hk));
        else
            xent_bwd_kernel<T, false><<<N, 256, 0, hk_cuda_stream(hk)>>>(losses, (T *)dlogits, (const T *)logits,
                                                                        targets, dloss, V, hk_cuda_input_flags(hk));
    });
    hk_cuda_check_launch(hk, what);
}

void hk_cuda_xent_bwd(hk_backend *hk, void *dlogits, const void *logits, const int32_t *targets, float dloss, int N,
                      int V) {
    xent_bwd_launch(hk, NULL, dlogits, logits, targets, dloss, N, V, "xent_bwd");
}

void hk_cuda_xent_fwd_bwd(hk_backend *hk, void *losses, void *dlogits, const void *logits, const int32_t *targets,
                          float dloss, int N, int V) {
    xent_bwd_launch(hk, (float *)losses, dlogits, logits, targets, dloss, N, V, "xent_fwd_bwd");
}
