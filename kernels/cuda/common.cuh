/* kernels/cuda/common.cuh — device helpers shared by the CUDA kernel files.
 *
 * Conventions:
 *  - Every kernel is templated on the activation type `act` (__nv_bfloat16 in
 *    training mode, float in the fp32 parity mode); HK_DISPATCH_ACT picks it
 *    from hk->act. R pointers are always float.
 *  - Arithmetic and every reduction run in fp32 (ld() widens, st() rounds once,
 *    round-to-nearest-even).
 *  - 16-byte vector accesses go through hk_vec<T>; a kernel takes the vector
 *    path only when the host checked alignment and divisibility (hk_vec_ok).
 *  - Launches use the backend's stream and are followed by hk_cuda_check_launch.
 */
#ifndef HLAB_KERNELS_CUDA_COMMON_CUH
#define HLAB_KERNELS_CUDA_COMMON_CUH

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "kernels/cuda/cuda_ops.h"

typedef __nv_bfloat16 hk_bf16;

/* A pinned host buffer of at least `bytes` owned by the backend, for the few
 * synchronous read-backs (sumsq, MoE expert counts). NULL on failure (recorded). */
void *hk_cuda_pinned(hk_backend *hk, size_t bytes);

/* Bad inputs that only the device sees (a token id < 0, a target outside
 * [0, V)) cannot be reported without a sync, so kernels set a bit in a device
 * word (atomicOr) and the backend turns it into a sticky HLAB_EINVAL at the next
 * sync() or to_host(). Kernels never read or write out of bounds for them. */
enum { HK_BAD_TOKEN = 1u, HK_BAD_TARGET = 2u };
unsigned *hk_cuda_input_flags(hk_backend *hk);

__device__ __forceinline__ float ld(float x) { return x; }
__device__ __forceinline__ float ld(hk_bf16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float ld(double x) { return (float)x; }

template <typename T> __device__ __forceinline__ T st(float x);
template <> __device__ __forceinline__ float st<float>(float x) { return x; }
template <> __device__ __forceinline__ hk_bf16 st<hk_bf16>(float x) { return __float2bfloat16_rn(x); }
template <> __device__ __forceinline__ double st<double>(float x) { return (double)x; }

/* 16 bytes of T: 8 bf16 or 4 floats, loaded and stored in one instruction. */
template <typename T> struct alignas(16) hk_vec {
    static constexpr int n = 16 / (int)sizeof(T);
    T v[16 / sizeof(T)];
};
template <typename T> __device__ __forceinline__ hk_vec<T> vload(const T *p) {
    return *reinterpret_cast<const hk_vec<T> *>(p);
}
template <typename T> __device__ __forceinline__ void vstore(T *p, const hk_vec<T> &x) {
    *reinterpret_cast<hk_vec<T> *>(p) = x;
}

/* Host: may pointers be read as hk_vec<T> with rows of `row` elements? */
static inline int hk_vec_ok(size_t elem_size, size_t row, const void *p0, const void *p1 = 0,
                            const void *p2 = 0, const void *p3 = 0) {
    size_t per = 16 / elem_size;
    uintptr_t bits = (uintptr_t)p0 | (uintptr_t)p1 | (uintptr_t)p2 | (uintptr_t)p3;
    return row % per == 0 && (bits & 15) == 0;
}

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
/* Sum over the block (blockDim.x a multiple of 32); every thread gets the total.
 * Safe to call repeatedly in one kernel (leading barrier protects the buffer). */
__device__ __forceinline__ float block_sum(float v) {
    __shared__ float part[32];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) part[warp] = v;
    __syncthreads();
    float t = lane < nw ? part[lane] : 0.0f;
    return warp_sum(t);
}
__device__ __forceinline__ float block_max(float v) {
    __shared__ float part[32];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) part[warp] = v;
    __syncthreads();
    float t = lane < nw ? part[lane] : -INFINITY;
    return warp_max(t);
}

__device__ __forceinline__ float silu_f(float x) { return x / (1.0f + expf(-x)); }
__device__ __forceinline__ float sigmoid_f(float x) { return 1.0f / (1.0f + expf(-x)); }

/* Grid for a grid-stride loop over n items: enough blocks to fill the chip, no more. */
static inline unsigned hk_grid_for(hk_backend *hk, size_t n, int block) {
    size_t want = (n + (size_t)block - 1) / (size_t)block;
    size_t cap = (size_t)hk_cuda_sm_count(hk) * 16;
    if (want > cap) want = cap;
    return want ? (unsigned)want : 1u;
}

#define HK_DISPATCH_ACT(hk, T, ...)        \
    do {                                   \
        if ((hk)->act == HK_BF16) {        \
            typedef hk_bf16 T;             \
            __VA_ARGS__;                   \
        } else {                           \
            typedef float T;               \
            __VA_ARGS__;                   \
        }                                  \
    } while (0)

/* Deterministic column sums over rows (fixed order, no atomics):
 * partial[chunk, c] = Σ_{rows of chunk} term(r, c), then out[c] += Σ_chunk partial.
 * Used for every parameter gradient that is a sum over token rows. */
#define HK_COLSUM_TILE 32
#define HK_COLSUM_ROWS 8
#define HK_COLSUM_CHUNK 256 /* rows per partial */

template <typename Term>
__global__ void colsum_partial_kernel(float *partial, int rows, int cols, Term term) {
    __shared__ float acc[HK_COLSUM_ROWS][HK_COLSUM_TILE + 1];
    int c = blockIdx.x * HK_COLSUM_TILE + threadIdx.x;
    int r0 = blockIdx.y * HK_COLSUM_CHUNK;
    int r1 = min(rows, r0 + HK_COLSUM_CHUNK);
    float s = 0.0f;
    if (c < cols)
        for (int r = r0 + threadIdx.y; r < r1; r += HK_COLSUM_ROWS) s += term(r, c);
    acc[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && c < cols) {
        float t = 0.0f;
        for (int i = 0; i < HK_COLSUM_ROWS; i++) t += acc[i][threadIdx.x];
        partial[(size_t)blockIdx.y * cols + c] = t;
    }
}
template <typename Unused = void>
__global__ void colsum_finish_kernel(float *out, const float *partial, int chunks, int cols) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= cols) return;
    float t = 0.0f;
    for (int k = 0; k < chunks; k++) t += partial[(size_t)k * cols + c];
    out[c] += t;
}

/* out[c] += Σ_r term(r, c) over rows × cols. Uses the scratch buffer. */
template <typename Term>
static void hk_colsum(hk_backend *hk, float *out, int rows, int cols, Term term, const char *what) {
    if (rows <= 0 || cols <= 0) return;
    int chunks = (rows + HK_COLSUM_CHUNK - 1) / HK_COLSUM_CHUNK;
    float *partial = (float *)hk_cuda_scratch(hk, (size_t)chunks * cols * sizeof(float));
    if (!partial) return;
    dim3 grid((cols + HK_COLSUM_TILE - 1) / HK_COLSUM_TILE, chunks);
    dim3 block(HK_COLSUM_TILE, HK_COLSUM_ROWS);
    colsum_partial_kernel<<<grid, block, 0, hk_cuda_stream(hk)>>>(partial, rows, cols, term);
    if (hk_cuda_check_launch(hk, what)) return;
    colsum_finish_kernel<><<<(cols + 255) / 256, 256, 0, hk_cuda_stream(hk)>>>(out, partial, chunks, cols);
    hk_cuda_check_launch(hk, what);
}

#endif
