/* kernels/cuda/embedding.cu — token embedding lookup and its (deterministic)
 * backward.
 *
 * fwd: one block per token row, 16-byte vector copies when aligned.
 * bwd: dwte[v] += Σ_{n: tokens[n] = v} dout[n]; negative ids are skipped (as on the
 * CPU). In fwd a negative id gives a zero row and a sticky HLAB_EINVAL at the
 * next sync (common.cuh: input flags). Instead of float atomics
 * (whose order, hence rounding, changes run to run) the token ids are sorted
 * with their positions (CUB's stable radix sort), and each run of equal ids is
 * summed in ascending n, in fp32, in fixed chunks of sorted positions (long runs
 * are split, then their chunk partials summed in order): the same inputs always
 * give the same bits.
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

/* ---- backward --------------------------------------------------------------------
 * After the sort, the sorted positions are cut into fixed chunks of EMB_CHUNK. Pass 1:
 * thread (chunk k, column vector) walks its chunk in order, summing dout rows while the
 * id stays the same (a segment). A segment that is a whole run adds its sum into dwte
 * directly (no other thread touches that row's columns); the segment of a run that
 * crosses the chunk's start goes to first[k], one that crosses its end to last[k].
 * Pass 2: for each run that crosses a chunk boundary, the thread at its first boundary
 * adds last[k−1] + first[k] + first[k+1] + ... (in chunk order) into dwte. Every sum is
 * in a fixed order and the chunking does not depend on the GPU: same bits everywhere.
 * Negative ids (sorted first) carry no gradient. */
#define EMB_CHUNK 32 /* sorted positions per chunk */
#define EMB_BATCH 4  /* positions whose loads (dout row, dwte row) are issued together */

/* V floats of dwte or of a partial (VEC: 16-byte vectors). */
template <int V, bool VEC> __device__ __forceinline__ void fvec_load(float (&d)[V], const float *p) {
    if (VEC) {
#pragma unroll
        for (int q = 0; q < V / 4; q++) {
            float4 t = reinterpret_cast<const float4 *>(p)[q];
            d[4 * q] = t.x, d[4 * q + 1] = t.y, d[4 * q + 2] = t.z, d[4 * q + 3] = t.w;
        }
    } else {
#pragma unroll
        for (int k = 0; k < V; k++) d[k] = p[k];
    }
}
template <int V, bool VEC> __device__ __forceinline__ void fvec_store(float *p, const float (&d)[V]) {
    if (VEC) {
#pragma unroll
        for (int q = 0; q < V / 4; q++)
            reinterpret_cast<float4 *>(p)[q] = make_float4(d[4 * q], d[4 * q + 1], d[4 * q + 2], d[4 * q + 3]);
    } else {
#pragma unroll
        for (int k = 0; k < V; k++) p[k] = d[k];
    }
}

/* Pass 1. grid (chunks, column-vector slices). */
template <typename T, bool VEC>
__global__ void embedding_bwd_chunk_kernel(float *dwte, float *first, float *last, const T *dout,
                                           const int32_t *keys, const int32_t *rows, int N, int C) {
    constexpr int V = VEC ? hk_vec<T>::n : 1;
    const int k = blockIdx.x, c = (blockIdx.y * blockDim.x + threadIdx.x) * V;
    if (c >= C) return;
    const int i0 = k * EMB_CHUNK, i1 = min(i0 + EMB_CHUNK, N);
    const bool cont_before = i0 > 0 && keys[i0 - 1] == keys[i0], cont_after = i1 < N && keys[i1] == keys[i1 - 1];
    float acc[V], base[V]; /* the segment's sum; dwte of its id, loaded with its first row */
    int seg_key = -1;
    bool started = false, seg_first = true;
    for (int i = i0; i < i1; i += EMB_BATCH) {
        int key[EMB_BATCH];
        hk_vec<T> x[EMB_BATCH];
        float old[EMB_BATCH][V];
#pragma unroll
        for (int u = 0; u < EMB_BATCH; u++) { /* every load of the batch before any store */
            key[u] = i + u < i1 ? keys[i + u] : -1;
            if (key[u] >= 0) {
                const T *src = dout + (size_t)rows[i + u] * C + c;
                if (VEC) x[u] = vload(src);
                else x[u].v[0] = src[0];
                fvec_load<V, VEC>(old[u], dwte + (size_t)key[u] * C + c);
            }
        }
#pragma unroll
        for (int u = 0; u < EMB_BATCH; u++) {
            if (i + u >= i1) break;
            if (!started || key[u] != seg_key) {
                if (started && seg_key >= 0) { /* the segment ended inside the chunk */
                    if (seg_first && cont_before) {
                        fvec_store<V, VEC>(first + (size_t)k * C + c, acc);
                    } else {
#pragma unroll
                        for (int e = 0; e < V; e++) acc[e] += base[e];
                        fvec_store<V, VEC>(dwte + (size_t)seg_key * C + c, acc);
                    }
                }
                seg_first = !started;
                started = true;
                seg_key = key[u];
#pragma unroll
                for (int e = 0; e < V; e++) {
                    acc[e] = 0.0f;
                    base[e] = key[u] >= 0 ? old[u][e] : 0.0f;
                }
            }
            if (key[u] >= 0)
#pragma unroll
                for (int e = 0; e < V; e++) acc[e] += ld(x[u].v[e]);
        }
    }
    if (seg_key < 0) return; /* the chunk's last segment */
    if (seg_first && cont_before) {
        fvec_store<V, VEC>(first + (size_t)k * C + c, acc);
    } else if (cont_after) {
        fvec_store<V, VEC>(last + (size_t)k * C + c, acc);
    } else {
#pragma unroll
        for (int e = 0; e < V; e++) acc[e] += base[e];
        fvec_store<V, VEC>(dwte + (size_t)seg_key * C + c, acc);
    }
}

/* Pass 2. grid (chunks, column-vector slices): block k handles the run, if any, that starts
 * in chunk k − 1 and crosses into chunk k. */
template <bool VEC>
__global__ void embedding_bwd_cross_kernel(float *dwte, const float *first, const float *last, const int32_t *keys,
                                           int N, int C) {
    constexpr int V = VEC ? 4 : 1;
    const int k = blockIdx.x, c = (blockIdx.y * blockDim.x + threadIdx.x) * V, i = k * EMB_CHUNK;
    if (k == 0 || c >= C) return;
    const int32_t key = keys[i];
    if (key < 0 || keys[i - 1] != key || (i - EMB_CHUNK > 0 && keys[i - EMB_CHUNK - 1] == key)) return;
    float acc[V], part[V];
    fvec_load<V, VEC>(acc, last + (size_t)(k - 1) * C + c);
    for (int kk = k;; kk++) {
        fvec_load<V, VEC>(part, first + (size_t)kk * C + c);
#pragma unroll
        for (int e = 0; e < V; e++) acc[e] += part[e];
        const int end = (kk + 1) * EMB_CHUNK;
        if (end >= N || keys[end] != key) break;
    }
    fvec_load<V, VEC>(part, dwte + (size_t)key * C + c);
#pragma unroll
    for (int e = 0; e < V; e++) acc[e] += part[e];
    fvec_store<V, VEC>(dwte + (size_t)key * C + c, acc);
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
    const int chunks = (N + EMB_CHUNK - 1) / EMB_CHUNK;
    const size_t ints = (((size_t)N * 3 * sizeof(int32_t)) + 255) & ~(size_t)255;
    const size_t parts = (((size_t)chunks * C * sizeof(float)) + 255) & ~(size_t)255;
    char *scratch = (char *)hk_cuda_scratch(hk, ints + 2 * parts + temp_bytes);
    if (!scratch) return;
    int32_t *keys = (int32_t *)scratch, *rows_in = keys + N, *rows = rows_in + N;
    float *first = (float *)(scratch + ints), *last = (float *)(scratch + ints + parts);
    iota_kernel<<<hk_grid_for(hk, (size_t)N, 256), 256, 0, s>>>(rows_in, N);
    if (hk_cuda_check_launch(hk, "embedding_bwd iota")) return;
    cudaError_t e = cub::DeviceRadixSort::SortPairs(scratch + ints + 2 * parts, temp_bytes, tokens, keys, rows_in,
                                                    rows, N, 0, 32, s);
    if (hk_cuda_record(hk, e, "embedding_bwd sort")) return;
    HK_DISPATCH_ACT(hk, T, {
        const int vec = hk_vec_ok(sizeof(T), (size_t)C, dout, dwte);
        const int V = vec ? hk_vec<T>::n : 1, cvecs = C / V;
        const int th = cvecs >= 128 ? 128 : (cvecs + 31) / 32 * 32;
        const dim3 grid(chunks, (cvecs + th - 1) / th);
        if (vec)
            embedding_bwd_chunk_kernel<T, true><<<grid, th, 0, s>>>((float *)dwte, first, last, (const T *)dout, keys,
                                                                   rows, N, C);
        else
            embedding_bwd_chunk_kernel<T, false><<<grid, th, 0, s>>>((float *)dwte, first, last, (const T *)dout,
                                                                    keys, rows, N, C);
        if (hk_cuda_check_launch(hk, "embedding_bwd")) return;
        /* pass 2 in float4s of the partials (any row of C % 4 == 0 floats, as pass 1's vectors imply) */
        const int fv = vec ? 4 : 1, fvecs = C / fv, th2 = fvecs >= 128 ? 128 : (fvecs + 31) / 32 * 32;
        const dim3 grid2(chunks, (fvecs + th2 - 1) / th2);
        if (vec)
            embedding_bwd_cross_kernel<true><<<grid2, th2, 0, s>>>((float *)dwte, first, last, keys, N, C);
        else
            embedding_bwd_cross_kernel<false><<<grid2, th2, 0, s>>>((float *)dwte, first, last, keys, N, C);
    });
    hk_cuda_check_launch(hk, "embedding_bwd");
}
