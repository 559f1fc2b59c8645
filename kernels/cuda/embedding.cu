/* kernels/cuda/embedding.cu — token embedding lookup and its (deterministic)
 * backward.
 *
 * fwd: one block per token row, 16-byte vector copies when aligned.
 * bwd: dwte[v] += Σ_{n: tokens[n] = v} dout[n]; negative ids are skipped (as on the
 * CPU). In fwd a negative id gives a zero row and a sticky HLAB_EINVAL at the
 * next sync (common.cuh: input flags). Instead of float atomics
 * (whose order, hence rounding, changes run to run) the token ids are sorted
 * with their positions (CUB's stable radix sort), and each run of equal ids is
 * summed in ascending n by one block per column slice, in fp32: the same
 * inputs always give the same bits.
 */
#include <cub/device/device_radix_sort.cuh>

#include "kernels/cuda/common.cuh"

template <typename T, bool VEC>
__global__ void embedding_fwd_kernel(T *out, const int32_t *tokens, const T *wte, int C, unsigned *flags) {
    constexpr int V = VEC ? hk_vec<T>::n : 1;
    int32_t tok = tokens[blockIdx.x];
    if (tok < 0 && threadIdx.x == 0) atomicOr(flags, HK_BAD_TOKEN);
    const T *src = wte + (size_t)(tok < 0 ? 0 : tok) * C;
    T *dst = out + (size_t)blockIdx.x * C;
    for (int c = threadIdx.x * V; c < C; c += blockDim.x * V) {
        if (tok < 0) { /* invalid id: a zero row rather than a read out of bounds */
#pragma unroll
            for (int k = 0; k < V; k++) dst[c + k] = st<T>(0.0f);
        } else if (VEC) {
            vstore(dst + c, vload(src + c));
        } else {
            dst[c] = src[c];
        }
    }
}

__global__ void iota_kernel(int32_t *x, int n) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) x[i] = i;
}

/* Block (i, slice): if sorted position i starts a run of equal ids, sums the
 * run's dout rows over the slice's columns and adds them into dwte. */
template <typename T>
__global__ void embedding_bwd_kernel(float *dwte, const T *dout, const int32_t *keys, const int32_t *rows, int N,
                                     int C) {
    int i = blockIdx.x;
    int32_t v = keys[i];
    if (v < 0 || (i > 0 && keys[i - 1] == v)) return; /* negative ids carry no gradient */
    int c = blockIdx.y * blockDim.x + threadIdx.x;
    if (c >= C) return;
    float acc = 0.0f;
    for (int j = i; j < N && keys[j] == v; j++) acc += ld(dout[(size_t)rows[j] * C + c]);
    dwte[(size_t)v * C + c] += acc;
}

void hk_cuda_embedding_fwd(hk_backend *hk, void *out, const int32_t *tokens, const void *wte, int N, int C) {
    if (N <= 0 || C <= 0) return;
    HK_DISPATCH_ACT(hk, T, {
        int vec = hk_vec_ok(sizeof(T), (size_t)C, out, wte);
        int per = vec ? C / hk_vec<T>::n : C;
        int th = per >= 256 ? 256 : ((per + 31) / 32) * 32;
        if (vec)
            embedding_fwd_kernel<T, true><<<N, th, 0, hk_cuda_stream(hk)>>>((T *)out, tokens, (const T *)wte, C,
                                                                            hk_cuda_input_flags(hk));
        else
            embedding_fwd_kernel<T, false><<<N, th, 0, hk_cuda_stream(hk)>>>((T *)out, tokens, (const T *)wte, C,
                                                                             hk_cuda_input_flags(hk));
    });
    hk_cuda_check_launch(hk, "embedding_fwd");
}

void hk_cuda_embedding_bwd(hk_backend *hk, void *dwte, const void *dout, const int32_t *tokens, int N, int C) {
    if (N <= 0 || C <= 0) return;
    cudaStream_t s = hk_cuda_stream(hk);
    size_t temp_bytes = 0;
    cub::DeviceRadixSort::SortPairs(NULL, temp_bytes, (const int32_t *)NULL, (int32_t *)NULL, (const int32_t *)NULL,
                                    (int32_t *)NULL, N, 0, 32, s);
    size_t ints = (((size_t)N * 3 * sizeof(int32_t)) + 255) & ~(size_t)255;
    char *scratch = (char *)hk_cuda_scratch(hk, ints + temp_bytes);
    if (!scratch) return;
    int32_t *keys = (int32_t *)scratch, *rows_in = keys + N, *rows = rows_in + N;
    iota_kernel<<<hk_grid_for(hk, (size_t)N, 256), 256, 0, s>>>(rows_in, N);
    if (hk_cuda_check_launch(hk, "embedding_bwd iota")) return;
    cudaError_t e = cub::DeviceRadixSort::SortPairs(scratch + ints, temp_bytes, tokens, keys, rows_in, rows, N, 0, 32, s);
    if (hk_cuda_record(hk, e, "embedding_bwd sort")) return;
    dim3 grid(N, (C + 127) / 128);
    HK_DISPATCH_ACT(hk, T, embedding_bwd_kernel<T><<<grid, 128, 0, s>>>((float *)dwte, (const T *)dout, keys, rows, N, C));
    hk_cuda_check_launch(hk, "embedding_bwd");
}
