/* kernels/cuda/moe.cu — the mixture-of-SwiGLU-experts channel sublayer,
 * forward and backward (kernels.h: moe_fwd / moe_bwd), dropless.
 *
 * Forward:
 *   1. router logits (GEMM, fp32 out) -> softmax -> top-k (ties: lower expert
 *      id) -> combine weights (renormalised over the k unless renorm = 0);
 *   2. permutation by expert: token slots s = n·k + j are grouped by expert in
 *      ascending s (chunked counts, prefix sums, stable ranks: deterministic);
 *   3. each expert runs its SwiGLU as two grouped GEMMs (grouped_gemm.h) over
 *      its contiguous rows, the first gathering its input rows in its loads;
 *   4. combine: out[n] = Σ_j w[n,j] · y[row of slot (n,j)] + shared experts
 *      (computed in fp32 and added in the same pass);
 *   5. aux = α·E·Σ_e f_e·P_e (f_e = share of the N·k slots routed to e,
 *      P_e = mean router probability).
 * The per-expert GEMM sizes are data-dependent; the grouped GEMM reads the
 * expert offsets on the device, so nothing waits for the host. HLAB_MOE_SYNC=1
 * selects the earlier path instead: the E counts read back to the host (one
 * sync per fwd and per bwd) and one cuBLASLt GEMM per expert.
 *
 * Cache (moe_cache_bytes): probs R[N,E], topk ids I[N,k], weights R[N,k],
 * counts I[E], offsets I[E+1], row-tile starts I[E+1] (grouped GEMM), slot->row
 * I[N·k], row->slot I[N·k],
 * h13 A[N·k, 2F] (pre-SwiGLU), y A[N·k, C] (expert outputs), hs13 A[S, N, 2Fs].
 * The backward recomputes the SwiGLU activations (and, on the sync path, the
 * gathered inputs; the grouped GEMM gathers them in its loads).
 */
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/grouped_gemm.h"

#include <stdlib.h>
#include <string.h>

#define MOE_MAX_E 1024 /* 32 lanes x 32 mask bits in the routing warp */

static size_t align256(size_t x) { return (x + 255) & ~(size_t)255; }

typedef struct {
    float *probs;
    int32_t *ids;
    float *wts;
    int32_t *counts, *offsets, *tile_start, *slot_row, *row_slot;
    void *h13, *y, *hs13;
    size_t bytes;
} moe_cache;

static moe_cache cache_layout(void *base, hk_moe_dims d, size_t es) {
    moe_cache c;
    size_t NK = (size_t)d.N * d.k, off = 0;
    char *b = (char *)base;
#define MOE_PART(field, type, bytes_)     \
    c.field = (type)(b ? b + off : NULL); \
    off += align256(bytes_);
    MOE_PART(probs, float *, (size_t)d.N * d.E * 4);
    MOE_PART(ids, int32_t *, NK * 4);
    MOE_PART(wts, float *, NK * 4);
    MOE_PART(counts, int32_t *, (size_t)d.E * 4);
    MOE_PART(offsets, int32_t *, ((size_t)d.E + 1) * 4);
    MOE_PART(tile_start, int32_t *, ((size_t)d.E + 1) * 4);
    MOE_PART(slot_row, int32_t *, NK * 4);
    MOE_PART(row_slot, int32_t *, NK * 4);
    MOE_PART(h13, void *, NK * 2 * d.F * es);
    MOE_PART(y, void *, NK * d.C * es);
    MOE_PART(hs13, void *, (size_t)d.S * d.N * 2 * d.Fs * es);
#undef MOE_PART
    c.bytes = off;
    return c;
}

static int moe_dims_ok(hk_backend *hk, hk_moe_dims d, const char *what) {
    if (d.N < 0 || d.C <= 0 || d.E <= 0 || d.E > MOE_MAX_E || d.k < 1 || d.k > d.E || d.F <= 0 || d.S < 0 ||
        (d.S > 0 && d.Fs <= 0)) {
        hk_cuda_fail(hk, HLAB_EINVAL,
                     "%s: bad dims N=%d C=%d E=%d k=%d F=%d S=%d Fs=%d (need 1 <= k <= E <= %d, C, F > 0)", what, d.N,
                     d.C, d.E, d.k, d.F, d.S, d.Fs, MOE_MAX_E);
        return 0;
    }
    return 1;
}

size_t hk_cuda_moe_cache_bytes(hk_backend *hk, hk_moe_dims d) {
    if (!moe_dims_ok(hk, d, "moe_cache_bytes")) return 0;
    return cache_layout(NULL, d, hk->act == HK_BF16 ? 2 : 4).bytes;
}

/* ---- routing -------------------------------------------------------------------- */

/* One warp per token: softmax of the E logits in place, then top-k. */
__global__ void moe_route_kernel(float *probs, int32_t *ids, float *wts, int N, int E, int k, int renorm) {
    int lane = threadIdx.x & 31;
    int n = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (n >= N) return;
    float *p = probs + (size_t)n * E;
    float m = -INFINITY;
    for (int e = lane; e < E; e += 32) m = fmaxf(m, p[e]);
    m = warp_max(m);
    float s = 0.0f;
    for (int e = lane; e < E; e += 32) s += expf(p[e] - m);
    s = warp_sum(s);
    for (int e = lane; e < E; e += 32) p[e] = expf(p[e] - m) / s;
    __syncwarp();
    unsigned taken = 0; /* bit q: expert lane + 32q already chosen */
    float sel = 0.0f;
    for (int j = 0; j < k; j++) {
        float bv = -1.0f;
        int be = 0x7fffffff;
        for (int q = 0, e = lane; e < E; q++, e += 32)
            if (!((taken >> q) & 1u) && p[e] > bv) {
                bv = p[e];
                be = e;
            }
        for (int o = 16; o > 0; o >>= 1) {
            float ov = __shfl_xor_sync(0xffffffffu, bv, o);
            int oe = __shfl_xor_sync(0xffffffffu, be, o);
            if (ov > bv || (ov == bv && oe < be)) {
                bv = ov;
                be = oe;
            }
        }
        if ((be & 31) == lane) taken |= 1u << (be >> 5);
        sel += bv;
        if (lane == 0) {
            ids[(size_t)n * k + j] = be;
            wts[(size_t)n * k + j] = bv;
        }
    }
    if (lane == 0 && renorm)
        for (int j = 0; j < k; j++) wts[(size_t)n * k + j] /= sel;
}

/* The permutation by expert, in three parallel steps over chunks of 256 slots
 * (integer counts only, so the result does not depend on scheduling):
 *   1. per chunk, how many of its slots chose each expert;
 *   2. per expert, an exclusive prefix over chunks, the totals (counts) and
 *      the expert offsets (prefix over experts);
 *   3. per slot, row = offset[e] + chunk prefix[e] + rank among the chunk's
 *      earlier slots with the same expert: slots keep ascending order. */
#define MOE_CHUNK 256

__global__ void moe_chunk_count_kernel(int32_t *chunk_counts, const int32_t *ids, size_t NK, int E) {
    extern __shared__ int hist[];
    for (int e = threadIdx.x; e < E; e += blockDim.x) hist[e] = 0;
    __syncthreads();
    size_t s = (size_t)blockIdx.x * MOE_CHUNK + threadIdx.x;
    if (s < NK) atomicAdd(&hist[ids[s]], 1);
    __syncthreads();
    for (int e = threadIdx.x; e < E; e += blockDim.x) chunk_counts[(size_t)blockIdx.x * E + e] = hist[e];
}

/* One block, thread e per expert (blockDim >= E). Also the grouped GEMM's
 * row-tile starts: tile_start[e] = Σ_{e' < e} ceil(count_e' / HK_GG_ROW_TILE). */
__global__ void moe_scan_kernel(int32_t *chunk_counts, int32_t *counts, int32_t *offsets, int32_t *tile_start,
                                int chunks, int E) {
    int e = threadIdx.x;
    if (e < E) {
        int run = 0;
        for (int c = 0; c < chunks; c++) {
            int v = chunk_counts[(size_t)c * E + e];
            chunk_counts[(size_t)c * E + e] = run;
            run += v;
        }
        counts[e] = run;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        int acc = 0, tiles = 0;
        for (int k = 0; k < E; k++) {
            offsets[k] = acc;
            tile_start[k] = tiles;
            acc += counts[k];
            tiles += (counts[k] + HK_GG_ROW_TILE - 1) / HK_GG_ROW_TILE;
        }
        offsets[E] = acc;
        tile_start[E] = tiles;
    }
}

__global__ void moe_chunk_assign_kernel(int32_t *slot_row, int32_t *row_slot, const int32_t *ids,
                                        const int32_t *chunk_prefix, const int32_t *offsets, size_t NK, int E) {
    __shared__ int sid[MOE_CHUNK];
    size_t s = (size_t)blockIdx.x * MOE_CHUNK + threadIdx.x;
    int e = s < NK ? ids[s] : -1;
    sid[threadIdx.x] = e;
    __syncthreads();
    if (e < 0) return;
    int rank = 0;
    for (int j = 0; j < (int)threadIdx.x; j++) rank += sid[j] == e;
    int row = offsets[e] + chunk_prefix[(size_t)blockIdx.x * E + e] + rank;
    slot_row[s] = row;
    row_slot[row] = (int32_t)s;
}

/* xg[row] = inp[token of row] */
template <typename T>
__global__ void moe_gather_kernel(T *xg, const T *inp, const int32_t *row_slot, int k, int C) {
    size_t row = blockIdx.x;
    const T *src = inp + (size_t)(row_slot[row] / k) * C;
    T *dst = xg + row * C;
    for (int c = threadIdx.x; c < C; c += blockDim.x) dst[c] = src[c];
}

/* out[n] = Σ_j w[n,j] · y[row(n,j)] (+ ys[n]) */
template <typename T>
__global__ void moe_combine_kernel(T *out, const T *y, const float *ys, const float *wts, const int32_t *slot_row,
                                   int k, int C) {
    size_t n = blockIdx.x;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float acc = ys ? ys[n * C + c] : 0.0f;
        for (int j = 0; j < k; j++) acc += wts[n * k + j] * ld(y[(size_t)slot_row[n * k + j] * C + c]);
        out[n * C + c] = st<T>(acc);
    }
}

/* part[e] = f_e · P_e; one block per expert, then aux = α·E·Σ part (fixed order). */
__global__ void moe_aux_part_kernel(float *part, const float *probs, const int32_t *counts, int N, int E, size_t NK) {
    int e = blockIdx.x;
    float s = 0.0f;
    for (int n = threadIdx.x; n < N; n += blockDim.x) s += probs[(size_t)n * E + e];
    s = block_sum(s);
    if (threadIdx.x == 0) part[e] = ((float)counts[e] / (float)NK) * (s / (float)N);
}
__global__ void moe_aux_final_kernel(float *aux, const float *part, int E, float alpha) {
    if (threadIdx.x == 0 && blockIdx.x == 0) {
        float t = 0.0f;
        for (int e = 0; e < E; e++) t += part[e];
        aux[0] = alpha * (float)E * t;
    }
}

/* ---- backward kernels --------------------------------------------------------------- */

/* One warp per slot s = (n, j): dwts[s] = dout[n]·y[row]; dyg[row] = w[s]·dout[n]. */
template <typename T>
__global__ void moe_combine_bwd_kernel(T *dyg, float *dwts, const T *dout, const T *y, const float *wts,
                                       const int32_t *slot_row, size_t NK, int k, int C) {
    int lane = threadIdx.x & 31;
    size_t s = blockIdx.x * (size_t)(blockDim.x >> 5) + (threadIdx.x >> 5);
    if (s >= NK) return;
    size_t n = s / k, row = slot_row[s];
    float w = wts[s], dot = 0.0f;
    for (int c = lane; c < C; c += 32) {
        float g = ld(dout[n * C + c]);
        dot += g * ld(y[row * C + c]);
        dyg[row * C + c] = st<T>(w * g);
    }
    dot = warp_sum(dot);
    if (lane == 0) dwts[s] = dot;
}

/* One warp per token: d(loss)/d(router logits) through top-k weights, the aux
 * loss (aux_coef = daux·α·E / (N·N·k), times count_e) and the softmax. */
template <typename T>
__global__ void moe_router_bwd_kernel(T *dr, const float *probs, const int32_t *ids, const float *wts,
                                      const float *dwts, const int32_t *counts, int N, int E, int k, int renorm,
                                      float aux_coef) {
    int lane = threadIdx.x & 31;
    int n = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (n >= N) return;
    const float *p = probs + (size_t)n * E;
    const int32_t *id = ids + (size_t)n * k;
    const float *w = wts + (size_t)n * k, *g = dwts + (size_t)n * k;
    float sel = 0.0f, gw = 0.0f;
    for (int j = 0; j < k; j++) {
        sel += p[id[j]];
        gw += g[j] * w[j];
    }
    float pdp = 0.0f;
    for (int e = lane; e < E; e += 32) {
        float dp = aux_coef * (float)counts[e];
        for (int j = 0; j < k; j++)
            if (id[j] == e) dp += renorm ? (g[j] - gw) / sel : g[j];
        pdp += p[e] * dp;
    }
    pdp = warp_sum(pdp);
    for (int e = lane; e < E; e += 32) {
        float dp = aux_coef * (float)counts[e];
        for (int j = 0; j < k; j++)
            if (id[j] == e) dp += renorm ? (g[j] - gw) / sel : g[j];
        dr[(size_t)n * E + e] = st<T>(p[e] * (dp - pdp));
    }
}

/* dinp[n] = dxf[n] + Σ_j dxg[row(n,j)] */
template <typename T>
__global__ void moe_scatter_bwd_kernel(T *dinp, const float *dxf, const float *dxg, const int32_t *slot_row, int k,
                                       int C) {
    size_t n = blockIdx.x;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float acc = dxf[n * C + c];
        for (int j = 0; j < k; j++) acc += dxg[(size_t)slot_row[n * k + j] * C + c];
        dinp[n * C + c] = st<T>(acc);
    }
}

/* ---- host side -------------------------------------------------------------------- */

static int row_block(int C) { return C >= 256 ? 256 : ((C + 31) / 32) * 32; }

/* HLAB_MOE_SYNC=1: the earlier path (counts read back, one cuBLASLt GEMM per expert). */
static int moe_sync_path(void) { return hk_cuda_env_int("HLAB_MOE_SYNC", 0) == 1; }

/* Reads the expert offsets[E+1] back (the synchronous step) into the
 * backend's pinned buffer; NULL on failure (recorded). */
static const int32_t *read_offsets(hk_backend *hk, const moe_cache *c, int E) {
    int32_t *pin = (int32_t *)hk_cuda_pinned(hk, ((size_t)E + 1) * sizeof(int32_t));
    if (!pin) return NULL;
    cudaStream_t s = hk_cuda_stream(hk);
    if (hk_cuda_record(hk, cudaMemcpyAsync(pin, c->offsets, ((size_t)E + 1) * 4, cudaMemcpyDeviceToHost, s),
                       "moe counts read-back"))
        return NULL;
    if (hk_cuda_record(hk, cudaStreamSynchronize(s), "moe counts read-back")) return NULL;
    return pin;
}

/* Step 3 on the sync path: gather, then per expert two cuBLASLt GEMMs with SwiGLU between. */
static void moe_experts_fwd_sync(hk_backend *hk, const moe_cache *cp, void *xg, void *hact, const void *inp,
                                 const void *w13, const void *w2, const int32_t *host_off, hk_moe_dims d) {
    hk_dtype A = hk->act;
    size_t es = A == HK_BF16 ? 2 : 4, NK = (size_t)d.N * d.k;
    cudaStream_t s = hk_cuda_stream(hk);
    const moe_cache &c = *cp;
    HK_DISPATCH_ACT(hk, T, moe_gather_kernel<T><<<(unsigned)NK, row_block(d.C), 0, s>>>(
                               (T *)xg, (const T *)inp, c.row_slot, d.k, d.C));
    if (hk_cuda_check_launch(hk, "moe_fwd gather")) return;
    for (int e = 0; e < d.E; e++) {
        int rows = host_off[e + 1] - host_off[e];
        if (!rows) continue;
        size_t r0 = (size_t)host_off[e];
        hk_gemm_xwT(hk, (char *)c.h13 + r0 * 2 * d.F * es, A, (char *)xg + r0 * d.C * es, A,
                    (const char *)w13 + (size_t)e * 2 * d.F * d.C * es, A, rows, d.C, 2 * d.F, 0.0f);
    }
    hk_cuda_swiglu_fwd(hk, hact, c.h13, (int)NK, d.F);
    for (int e = 0; e < d.E; e++) {
        int rows = host_off[e + 1] - host_off[e];
        if (!rows) continue;
        size_t r0 = (size_t)host_off[e];
        hk_gemm_xwT(hk, (char *)c.y + r0 * d.C * es, A, (char *)hact + r0 * d.F * es, A,
                    (const char *)w2 + (size_t)e * d.C * d.F * es, A, rows, d.F, d.C, 0.0f);
    }
}

void hk_cuda_moe_fwd(hk_backend *hk, void *out, void *aux, void *cache, const void *inp, const void *w_router,
                     const void *w13, const void *w2, const void *ws13, const void *ws2, hk_moe_dims d) {
    if (!moe_dims_ok(hk, d, "moe_fwd")) return;
    hk_dtype A = hk->act;
    size_t es = A == HK_BF16 ? 2 : 4, NK = (size_t)d.N * d.k;
    cudaStream_t s = hk_cuda_stream(hk);
    moe_cache c = cache_layout(cache, d, es);
    if (d.N == 0) {
        hk_cuda_zero(hk, aux, sizeof(float));
        return;
    }
    /* scratch: xg A[NK,C] (sync path only) | hact A[NK,F] | hs A[N,Fs] | ys f32[N,C] | aux parts f32[E]
     *          | chunk counts I[chunks,E] */
    int chunks = (int)((NK + MOE_CHUNK - 1) / MOE_CHUNK), sync_path = moe_sync_path();
    size_t o_xg = 0, o_hact = o_xg + (sync_path ? align256(NK * d.C * es) : 0);
    size_t o_hs = o_hact + align256(NK * d.F * es);
    size_t o_ys = o_hs + align256((size_t)d.N * d.Fs * es), o_part = o_ys + align256((size_t)d.N * d.C * 4);
    size_t o_chunk = o_part + align256((size_t)d.E * 4);
    char *scr = (char *)hk_cuda_scratch(hk, o_chunk + align256((size_t)chunks * d.E * 4));
    if (!scr) return;
    void *xg = scr + o_xg, *hact = scr + o_hact, *hs = scr + o_hs;
    float *ys = (float *)(scr + o_ys), *part = (float *)(scr + o_part);
    int32_t *chunk_counts = (int32_t *)(scr + o_chunk);

    /* 1. routing */
    hk_gemm_xwT(hk, c.probs, HK_F32, inp, A, w_router, A, d.N, d.C, d.E, 0.0f);
    moe_route_kernel<<<(d.N + 7) / 8, 256, 0, s>>>(c.probs, c.ids, c.wts, d.N, d.E, d.k, d.renorm);
    if (hk_cuda_check_launch(hk, "moe_fwd route")) return;
    /* 2. permutation by expert */
    moe_chunk_count_kernel<<<chunks, MOE_CHUNK, d.E * sizeof(int), s>>>(chunk_counts, c.ids, NK, d.E);
    moe_scan_kernel<<<1, ((d.E + 31) / 32) * 32, 0, s>>>(chunk_counts, c.counts, c.offsets, c.tile_start, chunks,
                                                          d.E);
    moe_chunk_assign_kernel<<<chunks, MOE_CHUNK, 0, s>>>(c.slot_row, c.row_slot, c.ids, chunk_counts, c.offsets,
                                                          NK, d.E);
    if (hk_cuda_check_launch(hk, "moe_fwd permute")) return;
    /* 3. experts */
    if (!sync_path) {
        hk_gg_groups g = {c.offsets, c.tile_start, d.E, (int)NK, c.row_slot, d.k}; /* input rows gathered */
        hk_grouped_xwT(hk, c.h13, A, inp, w13, g, d.C, 2 * d.F);
        hk_cuda_swiglu_fwd(hk, hact, c.h13, (int)NK, d.F);
        g.gather = NULL;
        hk_grouped_xwT(hk, c.y, A, hact, w2, g, d.F, d.C);
    } else {
        const int32_t *host_off = read_offsets(hk, &c, d.E);
        if (!host_off) return;
        moe_experts_fwd_sync(hk, &c, xg, hact, inp, w13, w2, host_off, d);
    }
    /* shared experts, summed in fp32 */
    for (int j = 0; j < d.S; j++) {
        void *h = (char *)c.hs13 + (size_t)j * d.N * 2 * d.Fs * es;
        hk_gemm_xwT(hk, h, A, inp, A, (const char *)ws13 + (size_t)j * 2 * d.Fs * d.C * es, A, d.N, d.C, 2 * d.Fs,
                    0.0f);
        hk_cuda_swiglu_fwd(hk, hs, h, d.N, d.Fs);
        hk_gemm_xwT(hk, ys, HK_F32, hs, A, (const char *)ws2 + (size_t)j * d.C * d.Fs * es, A, d.N, d.Fs, d.C,
                    j ? 1.0f : 0.0f);
    }
    /* 4. combine, 5. aux */
    HK_DISPATCH_ACT(hk, T, moe_combine_kernel<T><<<d.N, row_block(d.C), 0, s>>>(
                               (T *)out, (const T *)c.y, d.S ? ys : NULL, c.wts, c.slot_row, d.k, d.C));
    if (hk_cuda_check_launch(hk, "moe_fwd combine")) return;
    moe_aux_part_kernel<<<d.E, 256, 0, s>>>(part, c.probs, c.counts, d.N, d.E, NK);
    moe_aux_final_kernel<<<1, 32, 0, s>>>((float *)aux, part, d.E, d.alpha);
    hk_cuda_check_launch(hk, "moe_fwd aux");
}

/* The expert GEMMs of the backward on the sync path: per expert dW2, dH; SwiGLU backward; per expert dW13, dX. */
static void moe_experts_bwd_sync(hk_backend *hk, const moe_cache *cp, void *xg, const void *hact, const void *dyg,
                                 void *dhact, void *dh13, float *dxg, void *dw13, void *dw2, const void *inp,
                                 const void *w13, const void *w2, const int32_t *host_off, hk_moe_dims d) {
    hk_dtype A = hk->act;
    size_t es = A == HK_BF16 ? 2 : 4, NK = (size_t)d.N * d.k;
    cudaStream_t s = hk_cuda_stream(hk);
    const moe_cache &c = *cp;
    HK_DISPATCH_ACT(hk, T, moe_gather_kernel<T><<<(unsigned)NK, row_block(d.C), 0, s>>>(
                               (T *)xg, (const T *)inp, c.row_slot, d.k, d.C));
    if (hk_cuda_check_launch(hk, "moe_bwd gather")) return;
    for (int e = 0; e < d.E; e++) {
        int rows = host_off[e + 1] - host_off[e];
        if (!rows) continue;
        size_t r0 = (size_t)host_off[e];
        const void *dy_e = (char *)dyg + r0 * d.C * es;
        hk_gemm_xTy(hk, (char *)dw2 + (size_t)e * d.C * d.F * 4, HK_F32, dy_e, A, (char *)hact + r0 * d.F * es, A,
                    rows, d.C, d.F, 1.0f);
        hk_gemm_xw(hk, (char *)dhact + r0 * d.F * es, A, dy_e, A, (const char *)w2 + (size_t)e * d.C * d.F * es, A,
                   rows, d.C, d.F, 0.0f);
    }
    hk_cuda_swiglu_bwd(hk, dh13, dhact, c.h13, (int)NK, d.F);
    for (int e = 0; e < d.E; e++) {
        int rows = host_off[e + 1] - host_off[e];
        if (!rows) continue;
        size_t r0 = (size_t)host_off[e];
        const void *dh_e = (char *)dh13 + r0 * 2 * d.F * es;
        hk_gemm_xTy(hk, (char *)dw13 + (size_t)e * 2 * d.F * d.C * 4, HK_F32, dh_e, A, (char *)xg + r0 * d.C * es,
                    A, rows, 2 * d.F, d.C, 1.0f);
        hk_gemm_xw(hk, dxg + r0 * d.C, HK_F32, dh_e, A, (const char *)w13 + (size_t)e * 2 * d.F * d.C * es, A, rows,
                   2 * d.F, d.C, 0.0f);
    }
}

void hk_cuda_moe_bwd(hk_backend *hk, void *dinp, void *dw_router, void *dw13, void *dw2, void *dws13, void *dws2,
                     const void *dout, float daux, const void *cache, const void *inp, const void *w_router,
                     const void *w13, const void *w2, const void *ws13, const void *ws2, hk_moe_dims d) {
    if (!moe_dims_ok(hk, d, "moe_bwd")) return;
    if (d.N == 0) return;
    hk_dtype A = hk->act;
    size_t es = A == HK_BF16 ? 2 : 4, NK = (size_t)d.N * d.k;
    cudaStream_t s = hk_cuda_stream(hk);
    moe_cache c = cache_layout((void *)cache, d, es);
    /* scratch: xg A[NK,C] (sync path only) | hact A[NK,F] | dyg A[NK,C] | dhact A[NK,F] | dh13 A[NK,2F] | dxg f32[NK,C]
     *          | dxf f32[N,C] | dwts f32[NK] | dr A[N,E] | hs A[N,Fs] | dhs A[N,Fs] | dhs13 A[N,2Fs]
     *          | weight-gradient split workspace (grouped path) */
    int sync_path = moe_sync_path();
    size_t ws_bytes = 0;
    if (!sync_path) {
        size_t w2b = hk_grouped_xTy_ws_bytes(hk, d.E, d.C, d.F, (int)NK);
        size_t w13b = hk_grouped_xTy_ws_bytes(hk, d.E, 2 * d.F, d.C, (int)NK);
        ws_bytes = w2b > w13b ? w2b : w13b;
    }
    size_t sz[13] = {sync_path ? NK * d.C * es : 0, NK * d.F * es,        NK * d.C * es,          NK * d.F * es,
                     NK * 2 * d.F * es,     NK * d.C * 4,         (size_t)d.N * d.C * 4,  NK * 4,
                     (size_t)d.N * d.E * es, (size_t)d.N * d.Fs * es, (size_t)d.N * d.Fs * es,
                     (size_t)d.N * 2 * d.Fs * es, ws_bytes};
    size_t off[13], total = 0;
    for (int i = 0; i < 13; i++) {
        off[i] = total;
        total += align256(sz[i]);
    }
    char *scr = (char *)hk_cuda_scratch(hk, total);
    if (!scr) return;
    void *xg = scr + off[0], *hact = scr + off[1], *dyg = scr + off[2], *dhact = scr + off[3], *dh13 = scr + off[4];
    float *dxg = (float *)(scr + off[5]), *dxf = (float *)(scr + off[6]), *dwts = (float *)(scr + off[7]);
    void *dr = scr + off[8], *hs = scr + off[9], *dhs = scr + off[10], *dhs13 = scr + off[11];
    void *ws = ws_bytes ? scr + off[12] : NULL;

    /* routed experts: combine backward, then dW2, dH, SwiGLU backward, dW13, dX */
    HK_DISPATCH_ACT(hk, T, moe_combine_bwd_kernel<T><<<(unsigned)((NK + 7) / 8), 256, 0, s>>>(
                               (T *)dyg, dwts, (const T *)dout, (const T *)c.y, c.wts, c.slot_row, NK, d.k, d.C));
    if (hk_cuda_check_launch(hk, "moe_bwd combine")) return;
    hk_cuda_swiglu_fwd(hk, hact, c.h13, (int)NK, d.F);
    if (!sync_path) {
        hk_gg_groups g = {c.offsets, c.tile_start, d.E, (int)NK, NULL, 1};
        hk_grouped_xTy_acc(hk, (float *)dw2, dyg, hact, g, d.C, d.F, ws, ws_bytes);
        hk_grouped_xw(hk, dhact, A, dyg, w2, g, d.C, d.F);
        hk_cuda_swiglu_bwd(hk, dh13, dhact, c.h13, (int)NK, d.F);
        hk_grouped_xw(hk, dxg, HK_F32, dh13, w13, g, 2 * d.F, d.C);
        g.gather = c.row_slot; /* the inputs of expert rows, gathered in the loads */
        g.gather_div = d.k;
        hk_grouped_xTy_acc(hk, (float *)dw13, dh13, inp, g, 2 * d.F, d.C, ws, ws_bytes);
    } else {
        const int32_t *host_off = read_offsets(hk, &c, d.E);
        if (!host_off) return;
        moe_experts_bwd_sync(hk, &c, xg, hact, dyg, dhact, dh13, dxg, dw13, dw2, inp, w13, w2, host_off, d);
    }
    /* router: top-k weights, aux loss and softmax backward, then its two GEMMs */
    HK_DISPATCH_ACT(hk, T, moe_router_bwd_kernel<T><<<(d.N + 7) / 8, 256, 0, s>>>(
                               (T *)dr, c.probs, c.ids, c.wts, dwts, c.counts, d.N, d.E, d.k, d.renorm,
                               daux * d.alpha * (float)d.E / ((float)d.N * (float)NK)));
    if (hk_cuda_check_launch(hk, "moe_bwd router")) return;
    hk_gemm_xTy(hk, dw_router, HK_F32, dr, A, inp, A, d.N, d.E, d.C, 1.0f);
    hk_gemm_xw(hk, dxf, HK_F32, dr, A, w_router, A, d.N, d.E, d.C, 0.0f);
    /* shared experts */
    for (int j = 0; j < d.S; j++) {
        const void *h = (const char *)c.hs13 + (size_t)j * d.N * 2 * d.Fs * es;
        const void *w13s = (const char *)ws13 + (size_t)j * 2 * d.Fs * d.C * es;
        hk_cuda_swiglu_fwd(hk, hs, h, d.N, d.Fs);
        hk_gemm_xTy(hk, (char *)dws2 + (size_t)j * d.C * d.Fs * 4, HK_F32, dout, A, hs, A, d.N, d.C, d.Fs, 1.0f);
        hk_gemm_xw(hk, dhs, A, dout, A, (const char *)ws2 + (size_t)j * d.C * d.Fs * es, A, d.N, d.C, d.Fs, 0.0f);
        hk_cuda_swiglu_bwd(hk, dhs13, dhs, h, d.N, d.Fs);
        hk_gemm_xTy(hk, (char *)dws13 + (size_t)j * 2 * d.Fs * d.C * 4, HK_F32, dhs13, A, inp, A, d.N, 2 * d.Fs, d.C,
                    1.0f);
        hk_gemm_xw(hk, dxf, HK_F32, dhs13, A, w13s, A, d.N, 2 * d.Fs, d.C, 1.0f);
    }
    /* dinp = router and shared parts + Σ over each token's k expert rows */
    HK_DISPATCH_ACT(hk, T, moe_scatter_bwd_kernel<T><<<d.N, row_block(d.C), 0, s>>>((T *)dinp, dxf, dxg, c.slot_row,
                                                                                   d.k, d.C));
    hk_cuda_check_launch(hk, "moe_bwd scatter");
}

/* ---- test-only: the expert passes timed one by one (grouped_gemm.h) ---------------------------- */

template <class Fn> static double time_part_ms(hk_backend *hk, Fn fn, int reps) {
    cudaStream_t s = hk_cuda_stream(hk);
    cudaEvent_t t0, t1;
    float ms = 0.0f;
    if (hk_cuda_record(hk, cudaEventCreate(&t0), "moe parts event")) return 0.0;
    if (hk_cuda_record(hk, cudaEventCreate(&t1), "moe parts event")) {
        cudaEventDestroy(t0);
        return 0.0;
    }
    fn(); /* warm-up (and first-launch attribute setup) */
    cudaEventRecord(t0, s);
    for (int r = 0; r < reps; r++) fn();
    cudaEventRecord(t1, s);
    if (!hk_cuda_record(hk, cudaEventSynchronize(t1), "moe parts timing"))
        hk_cuda_record(hk, cudaEventElapsedTime(&ms, t0, t1), "moe parts timing");
    cudaEventDestroy(t0);
    cudaEventDestroy(t1);
    return (double)ms / (reps > 0 ? reps : 1);
}

extern "C" int hk_cuda_moe_time_parts(hk_backend *hk, hk_moe_part_time *parts, int max, void *cache,
                                      const void *inp, const void *w13, const void *w2, void *dw13, void *dw2,
                                      hk_moe_dims d, int reps) {
    if (!moe_dims_ok(hk, d, "moe_time_parts") || d.N <= 0 || max <= 0) return 0;
    hk_dtype A = hk->act;
    size_t es = A == HK_BF16 ? 2 : 4, NK = (size_t)d.N * d.k;
    const size_t F = (size_t)d.F, C = (size_t)d.C;
    moe_cache c = cache_layout(cache, d, es);
    size_t ws_bytes = hk_grouped_xTy_ws_bytes(hk, d.E, d.C, d.F, (int)NK);
    size_t w13b = hk_grouped_xTy_ws_bytes(hk, d.E, 2 * d.F, d.C, (int)NK);
    if (w13b > ws_bytes) ws_bytes = w13b;
    /* scratch: xg A[NK,C] | hact A[NK,F] | dhact A[NK,F] | dh13 A[NK,2F] | dxg f32[NK,C] | ws */
    size_t o_hact = align256(NK * C * es), o_dhact = o_hact + align256(NK * F * es);
    size_t o_dh13 = o_dhact + align256(NK * F * es), o_dxg = o_dh13 + align256(NK * 2 * F * es);
    size_t o_ws = o_dxg + align256(NK * C * 4);
    char *scr = (char *)hk_cuda_scratch(hk, o_ws + ws_bytes);
    if (!scr) return 0;
    void *xg = scr, *hact = scr + o_hact, *dhact = scr + o_dhact, *dh13 = scr + o_dh13;
    float *dxg = (float *)(scr + o_dxg);
    void *ws = ws_bytes ? scr + o_ws : NULL;
    const void *dyg = c.y; /* stand-ins of the right shape and scale: dy [NK,C], dH13 [NK,2F] */
    const void *dh13_in = c.h13;
    cudaStream_t s = hk_cuda_stream(hk);
    hk_gg_groups g = {c.offsets, c.tile_start, d.E, (int)NK, NULL, 1};
    hk_gg_groups gx = {c.offsets, c.tile_start, d.E, (int)NK, c.row_slot, d.k};
    int n = 0;
    double mm = 2.0 * (double)NK * (double)C * (double)F; /* one C x F product over all rows */
#define MOE_PART(name_, flops_, bytes_, ...)                                          \
    do {                                                                              \
        if (n < max) {                                                                \
            parts[n].name = name_;                                                    \
            parts[n].flops = flops_;                                                  \
            parts[n].bytes = bytes_;                                                  \
            parts[n].ms = time_part_ms(hk, [&]() { __VA_ARGS__; }, reps);             \
            n++;                                                                      \
        }                                                                             \
    } while (0)
    MOE_PART("gg fwd h13=gather(x)W13T", 2 * mm, 0, hk_grouped_xwT(hk, c.h13, A, inp, w13, gx, d.C, 2 * d.F));
    MOE_PART("fwd swiglu", 0, (double)NK * 3 * F * es, hk_cuda_swiglu_fwd(hk, hact, c.h13, (int)NK, d.F));
    MOE_PART("gg fwd y=act W2T", mm, 0, hk_grouped_xwT(hk, c.y, A, hact, w2, g, d.F, d.C));
    MOE_PART("gg bwd dW2+=dyT act", mm, 0,
             hk_grouped_xTy_acc(hk, (float *)dw2, dyg, hact, g, d.C, d.F, ws, ws_bytes));
    MOE_PART("gg bwd dH=dy W2", mm, 0, hk_grouped_xw(hk, dhact, A, dyg, w2, g, d.C, d.F));
    MOE_PART("bwd swiglu", 0, (double)NK * 5 * F * es, hk_cuda_swiglu_bwd(hk, dh13, dhact, c.h13, (int)NK, d.F));
    MOE_PART("gg bwd dX=dH13 W13 (f32)", 2 * mm, 0, hk_grouped_xw(hk, dxg, HK_F32, dh13_in, w13, g, 2 * d.F, d.C));
    MOE_PART("gg bwd dW13+=dH13T gather(x)", 2 * mm, 0,
             hk_grouped_xTy_acc(hk, (float *)dw13, dh13_in, inp, gx, 2 * d.F, d.C, ws, ws_bytes));
    /* the same products through cuBLASLt, one GEMM per expert (the offsets read back once, untimed) */
    const int32_t *host_off = read_offsets(hk, &c, d.E);
    if (host_off) {
        int32_t off[MOE_MAX_E + 1];
        memcpy(off, host_off, ((size_t)d.E + 1) * sizeof(int32_t));
#define MOE_PER_EXPERT(body)                               \
    for (int e = 0; e < d.E; e++) {                        \
        int rows = off[e + 1] - off[e];                    \
        size_t r0 = (size_t)off[e];                        \
        if (rows) {                                        \
            body;                                          \
        }                                                  \
    }
        MOE_PART("gather x (sync path)", 0, 2.0 * (double)NK * C * es,
                 HK_DISPATCH_ACT(hk, T, moe_gather_kernel<T><<<(unsigned)NK, row_block(d.C), 0, s>>>(
                                            (T *)xg, (const T *)inp, c.row_slot, d.k, d.C)));
        MOE_PART("lt fwd h13=xg W13T", 2 * mm, 0,
                 MOE_PER_EXPERT(hk_gemm_xwT(hk, (char *)c.h13 + r0 * 2 * F * es, A, (char *)xg + r0 * C * es, A,
                                            (const char *)w13 + (size_t)e * 2 * F * C * es, A, rows, d.C, 2 * d.F,
                                            0.0f)));
        MOE_PART("lt fwd y=act W2T", mm, 0,
                 MOE_PER_EXPERT(hk_gemm_xwT(hk, (char *)c.y + r0 * C * es, A, (char *)hact + r0 * F * es, A,
                                            (const char *)w2 + (size_t)e * C * F * es, A, rows, d.F, d.C, 0.0f)));
        MOE_PART("lt bwd dW2+=dyT act", mm, 0,
                 MOE_PER_EXPERT(hk_gemm_xTy(hk, (char *)dw2 + (size_t)e * C * F * 4, HK_F32,
                                            (const char *)dyg + r0 * C * es, A, (char *)hact + r0 * F * es, A, rows,
                                            d.C, d.F, 1.0f)));
        MOE_PART("lt bwd dH=dy W2", mm, 0,
                 MOE_PER_EXPERT(hk_gemm_xw(hk, (char *)dhact + r0 * F * es, A, (const char *)dyg + r0 * C * es, A,
                                           (const char *)w2 + (size_t)e * C * F * es, A, rows, d.C, d.F, 0.0f)));
        MOE_PART("lt bwd dX=dH13 W13 (f32)", 2 * mm, 0,
                 MOE_PER_EXPERT(hk_gemm_xw(hk, dxg + r0 * C, HK_F32, (const char *)dh13_in + r0 * 2 * F * es, A,
                                           (const char *)w13 + (size_t)e * 2 * F * C * es, A, rows, 2 * d.F, d.C,
                                           0.0f)));
        MOE_PART("lt bwd dW13+=dH13T xg", 2 * mm, 0,
                 MOE_PER_EXPERT(hk_gemm_xTy(hk, (char *)dw13 + (size_t)e * 2 * F * C * 4, HK_F32,
                                            (const char *)dh13_in + r0 * 2 * F * es, A, (char *)xg + r0 * C * es, A,
                                            rows, 2 * d.F, d.C, 1.0f)));
#undef MOE_PER_EXPERT
    }
#undef MOE_PART
    /* the forward's h13 and y are rewritten by the cuBLASLt passes from the same inputs: put the grouped
     * results back so the cache is exactly what moe_fwd leaves */
    hk_grouped_xwT(hk, c.h13, A, inp, w13, gx, d.C, 2 * d.F);
    hk_cuda_swiglu_fwd(hk, hact, c.h13, (int)NK, d.F);
    hk_grouped_xwT(hk, c.y, A, hact, w2, g, d.F, d.C);
    return n;
}
