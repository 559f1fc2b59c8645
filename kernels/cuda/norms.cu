/* kernels/cuda/norms.cu — RMSNorm, LayerNorm (forward, backward with accum),
 * both also fused with the residual add before them (forward only: the backward
 * is the plain norm backward with accum), and the per-head QK-norm of attention.
 *
 * Conventions: statistics, dot products and every sum in fp32; LayerNorm's
 * variance is two-pass (mean first) for accuracy. Rows move in 16-byte vectors
 * when the row length and the pointers allow.
 *  - Forward (all four): one warp per row for rows of up to 256 vectors (C ≤ 2048
 *    bf16), else one block per row; either way each thread keeps its pieces of
 *    the row in registers, so the row is read once.
 *  - Backward: persistent grids whose threads own fixed columns, so dw/db are
 *    accumulated in registers in the row pass; per-block partials are then
 *    summed in a fixed order (same inputs, same bits). One block per row (row =
 *    a multiple of 32 vectors, at most 1024), else a row pass plus the two-stage
 *    hk_colsum (common.cuh). A warp-per-row backward was tried and measured
 *    slower on an H100 (RMSNorm N32768 C768 bf16: 0.107 ms against 0.085 ms).
 */
#include "kernels/cuda/common.cuh"

static int row_threads(int per_thread_items) {
    int t = ((per_thread_items + 31) / 32) * 32;
    return t < 32 ? 32 : t > 256 ? 256 : t;
}

/* A thread's piece of a row: V consecutive elements (one 16-byte vector when
 * VEC, else one element), widened to fp32. */
template <typename T, bool VEC> struct piece {
    static constexpr int V = VEC ? hk_vec<T>::n : 1;
    float v[V];
    __device__ void load(const T *p) {
        if (VEC) {
            hk_vec<T> x = vload(p);
#pragma unroll
            for (int k = 0; k < V; k++) v[k] = ld(x.v[k]);
        } else {
            v[0] = ld(p[0]);
        }
    }
    __device__ void store(T *p) const {
        if (VEC) {
            hk_vec<T> x;
#pragma unroll
            for (int k = 0; k < V; k++) x.v[k] = st<T>(v[k]);
            vstore(p, x);
        } else {
            p[0] = st<T>(v[0]);
        }
    }
};

/* Loads V consecutive floats of an R vector (weights): plain loads, they hit L1. */
template <int V> __device__ __forceinline__ void load_w(float *dst, const float *w, int c) {
#pragma unroll
    for (int k = 0; k < V; k++) dst[k] = w[c + k];
}

/* ---- forward: RMSNorm / LayerNorm, optionally fused with the residual add before them ----
 *
 * One code path for the four forwards: ADD = the fused residual add
 *   res_out = round_T(res_in + x), statistics and output from the rounded values,
 * !ADD = the plain norm of inp (res_in). res_out may alias res_in or x: every piece
 * of the row is loaded before any is stored. Each thread keeps its pieces of the row
 * in registers between the statistics and the output pass, so the row is read once.
 *  - warp path (vector rows of at most 8·32 vectors: C ≤ 2048 bf16, ≤ 1024 fp32): one
 *    warp per row, lane l holds vectors l, l + 32, ...; warp-shuffle reductions only.
 *  - block path (longer rows, or rows that do not allow vectors): one block per row,
 *    NORM_CACHE pieces per thread in registers, the rest of a longer row re-read
 *    (from res_out, which this same thread wrote, or from inp). */

#define NORM_CACHE 4      /* block path: row pieces per thread held in registers */
#define NORM_WARP_ROWS 4  /* warp path: rows (warps) per block */

/* Block path, one piece: h = inp (+ x, rounded to T and stored to res_out when ADD); adds h
 * (LN) or h² (RMS) to s. */
template <typename T, bool VEC, bool LN, bool ADD>
__device__ __forceinline__ piece<T, VEC> stat_piece(T *res_out, const T *inp, const T *x, size_t i, float &s) {
    piece<T, VEC> h;
    h.load(inp + i);
    if (ADD) {
        piece<T, VEC> px;
        px.load(x + i);
#pragma unroll
        for (int k = 0; k < piece<T, VEC>::V; k++) h.v[k] = ld(st<T>(h.v[k] + px.v[k]));
        h.store(res_out + i);
    }
#pragma unroll
    for (int k = 0; k < piece<T, VEC>::V; k++) s += LN ? h.v[k] : h.v[k] * h.v[k];
    return h;
}

/* out piece = (h − mu)·r·w + b (LN; b may be NULL) or h·r·w (RMS). */
template <typename T, bool VEC, bool LN>
__device__ __forceinline__ void norm_piece(piece<T, VEC> h, T *out, const float *w, const float *b, int c, float mu,
                                           float r) {
    typedef piece<T, VEC> P;
    float wv[P::V], bv[P::V];
    load_w<P::V>(wv, w, c);
    if (LN && b) {
        load_w<P::V>(bv, b, c);
    } else {
#pragma unroll
        for (int k = 0; k < P::V; k++) bv[k] = 0.0f;
    }
#pragma unroll
    for (int k = 0; k < P::V; k++) h.v[k] = LN ? (h.v[k] - mu) * r * wv[k] + bv[k] : h.v[k] * r * wv[k];
    h.store(out + c);
}

template <typename T, bool VEC, bool LN, bool ADD>
__global__ void norm_fwd_block_kernel(T *res_out, T *out, float *mean, float *rstd, const T *inp, const T *x,
                                      const float *w, const float *b, int C, float eps) {
    typedef piece<T, VEC> P;
    const size_t row = (size_t)blockIdx.x * C;
    const int c0 = threadIdx.x * P::V, step = blockDim.x * P::V, tail = c0 + NORM_CACHE * step;
    const T *h_row = (ADD ? (const T *)res_out : inp) + row;
    P cache[NORM_CACHE];
    float s = 0.0f;
#pragma unroll
    for (int i = 0; i < NORM_CACHE; i++)
        if (c0 + i * step < C) cache[i] = stat_piece<T, VEC, LN, ADD>(res_out, inp, x, row + c0 + i * step, s);
    for (int c = tail; c < C; c += step) stat_piece<T, VEC, LN, ADD>(res_out, inp, x, row + c, s);

    float mu = 0.0f, r;
    if (LN) { /* two-pass variance */
        mu = block_sum(s) / (float)C;
        float ss = 0.0f;
#pragma unroll
        for (int i = 0; i < NORM_CACHE; i++)
            if (c0 + i * step < C)
#pragma unroll
                for (int k = 0; k < P::V; k++) ss += (cache[i].v[k] - mu) * (cache[i].v[k] - mu);
        for (int c = tail; c < C; c += step) {
            P h;
            h.load(h_row + c);
#pragma unroll
            for (int k = 0; k < P::V; k++) ss += (h.v[k] - mu) * (h.v[k] - mu);
        }
        r = rsqrtf(block_sum(ss) / (float)C + eps);
    } else {
        r = rsqrtf(block_sum(s) / (float)C + eps);
    }

    T *out_row = out + row;
#pragma unroll
    for (int i = 0; i < NORM_CACHE; i++)
        if (c0 + i * step < C) norm_piece<T, VEC, LN>(cache[i], out_row, w, b, c0 + i * step, mu, r);
    for (int c = tail; c < C; c += step) {
        P h;
        h.load(h_row + c);
        norm_piece<T, VEC, LN>(h, out_row, w, b, c, mu, r);
    }
    if (threadIdx.x == 0) {
        if (LN) mean[blockIdx.x] = mu;
        rstd[blockIdx.x] = r;
    }
}

/* Warp path: NP vector pieces per lane (the last ones masked off where the row is shorter). */
template <typename T, int NP, bool LN, bool ADD>
__global__ void __launch_bounds__(NORM_WARP_ROWS * 32)
    norm_fwd_warp_kernel(T *res_out, T *out, float *mean, float *rstd, const T *inp, const T *x, const float *w,
                         const float *b, int N, int C, float eps) {
    constexpr int V = hk_vec<T>::n;
    const int lane = threadIdx.x & 31, row = blockIdx.x * NORM_WARP_ROWS + (threadIdx.x >> 5);
    if (row >= N) return;
    const int nv = C / V;
    const size_t off = (size_t)row * C;
    hk_vec<T> ra[NP], rb[NP];
#pragma unroll
    for (int p = 0; p < NP; p++) /* all loads first: res_out may alias inp or x */
        if (lane + 32 * p < nv) {
            ra[p] = vload(inp + off + (size_t)(lane + 32 * p) * V);
            if (ADD) rb[p] = vload(x + off + (size_t)(lane + 32 * p) * V);
        }
    float h[NP][V], s = 0.0f;
#pragma unroll
    for (int p = 0; p < NP; p++)
        if (lane + 32 * p < nv) {
#pragma unroll
            for (int k = 0; k < V; k++) {
                h[p][k] = ADD ? ld(st<T>(ld(ra[p].v[k]) + ld(rb[p].v[k]))) : ld(ra[p].v[k]);
                s += LN ? h[p][k] : h[p][k] * h[p][k];
            }
            if (ADD) {
                hk_vec<T> o;
#pragma unroll
                for (int k = 0; k < V; k++) o.v[k] = st<T>(h[p][k]);
                vstore(res_out + off + (size_t)(lane + 32 * p) * V, o);
            }
        }
    float mu = 0.0f, r;
    if (LN) { /* two-pass variance */
        mu = warp_sum(s) / (float)C;
        float ss = 0.0f;
#pragma unroll
        for (int p = 0; p < NP; p++)
            if (lane + 32 * p < nv)
#pragma unroll
                for (int k = 0; k < V; k++) ss += (h[p][k] - mu) * (h[p][k] - mu);
        r = rsqrtf(warp_sum(ss) / (float)C + eps);
    } else {
        r = rsqrtf(warp_sum(s) / (float)C + eps);
    }
#pragma unroll
    for (int p = 0; p < NP; p++)
        if (lane + 32 * p < nv) {
            const int c = (lane + 32 * p) * V;
            float wv[V], bv[V];
            load_w<V>(wv, w, c);
            if (LN && b) {
                load_w<V>(bv, b, c);
            } else {
#pragma unroll
                for (int k = 0; k < V; k++) bv[k] = 0.0f;
            }
            hk_vec<T> o;
#pragma unroll
            for (int k = 0; k < V; k++) o.v[k] = st<T>(LN ? (h[p][k] - mu) * r * wv[k] + bv[k] : h[p][k] * r * wv[k]);
            vstore(out + off + c, o);
        }
    if (lane == 0) {
        if (LN) mean[row] = mu;
        rstd[row] = r;
    }
}

/* Pieces per lane for the warp-per-row kernels: the smallest instantiated count
 * (1, 2, 3, 4, 6, 8) of at least ceil(nv / 32) and at most max_np; 0 if none. */
static int warp_pieces(int nv, int max_np) {
    static const int counts[] = {1, 2, 3, 4, 6, 8};
    int need = (nv + 31) / 32;
    for (int i = 0; i < 6; i++)
        if (counts[i] >= need) return counts[i] <= max_np ? counts[i] : 0;
    return 0;
}

template <typename T, int NP, bool LN, bool ADD>
static void launch_fwd_warp(cudaStream_t s, void *res_out, void *out, void *mean, void *rstd, const void *inp,
                            const void *x, const void *w, const void *b, int N, int C, float eps) {
    unsigned grid = (unsigned)((N + NORM_WARP_ROWS - 1) / NORM_WARP_ROWS);
    norm_fwd_warp_kernel<T, NP, LN, ADD><<<grid, NORM_WARP_ROWS * 32, 0, s>>>(
        (T *)res_out, (T *)out, (float *)mean, (float *)rstd, (const T *)inp, (const T *)x, (const float *)w,
        (const float *)b, N, C, eps);
}

template <bool LN, bool ADD>
static void norm_fwd(hk_backend *hk, void *res_out, void *out, void *mean, void *rstd, const void *inp,
                     const void *x, const void *w, const void *b, int N, int C, float eps, const char *what) {
    if (N <= 0 || C <= 0) {
        if (N < 0 || C < 0) hk_cuda_fail(hk, HLAB_EINVAL, "%s: negative size N=%d C=%d", what, N, C);
        return;
    }
    cudaStream_t s = hk_cuda_stream(hk);
    HK_DISPATCH_ACT(hk, T, {
        const int V = hk_vec<T>::n;
        int vec = hk_vec_ok(sizeof(T), (size_t)C, out, inp, res_out, x); /* NULLs pass */
        switch (vec ? warp_pieces(C / V, 8) : 0) {
        case 1: launch_fwd_warp<T, 1, LN, ADD>(s, res_out, out, mean, rstd, inp, x, w, b, N, C, eps); break;
        case 2: launch_fwd_warp<T, 2, LN, ADD>(s, res_out, out, mean, rstd, inp, x, w, b, N, C, eps); break;
        case 3: launch_fwd_warp<T, 3, LN, ADD>(s, res_out, out, mean, rstd, inp, x, w, b, N, C, eps); break;
        case 4: launch_fwd_warp<T, 4, LN, ADD>(s, res_out, out, mean, rstd, inp, x, w, b, N, C, eps); break;
        case 6: launch_fwd_warp<T, 6, LN, ADD>(s, res_out, out, mean, rstd, inp, x, w, b, N, C, eps); break;
        case 8: launch_fwd_warp<T, 8, LN, ADD>(s, res_out, out, mean, rstd, inp, x, w, b, N, C, eps); break;
        default: {
            int th = row_threads(vec ? C / V : C);
            if (vec)
                norm_fwd_block_kernel<T, true, LN, ADD><<<N, th, 0, s>>>(
                    (T *)res_out, (T *)out, (float *)mean, (float *)rstd, (const T *)inp, (const T *)x,
                    (const float *)w, (const float *)b, C, eps);
            else
                norm_fwd_block_kernel<T, false, LN, ADD><<<N, th, 0, s>>>(
                    (T *)res_out, (T *)out, (float *)mean, (float *)rstd, (const T *)inp, (const T *)x,
                    (const float *)w, (const float *)b, C, eps);
        }
        }
    });
    hk_cuda_check_launch(hk, what);
}

void hk_cuda_add_rmsnorm_fwd(hk_backend *hk, void *res_out, void *out, void *rstd, const void *res_in, const void *x,
                             const void *w, int N, int C, float eps) {
    norm_fwd<false, true>(hk, res_out, out, NULL, rstd, res_in, x, w, NULL, N, C, eps, "add_rmsnorm_fwd");
}

void hk_cuda_add_layernorm_fwd(hk_backend *hk, void *res_out, void *out, void *mean, void *rstd, const void *res_in,
                               const void *x, const void *w, const void *b, int N, int C, float eps) {
    norm_fwd<true, true>(hk, res_out, out, mean, rstd, res_in, x, w, b, N, C, eps, "add_layernorm_fwd");
}

/* ---- RMSNorm ------------------------------------------------------------------ */

/* dinp = rstd·w·dout − rstd³·x·(Σ w·dout·x)/C  (= or += by accum) */
template <typename T, bool VEC>
__global__ void rmsnorm_bwd_kernel(T *dinp, const T *dout, const T *inp, const float *w, const float *rstd, int C,
                                   int accum) {
    typedef piece<T, VEC> P;
    size_t off = (size_t)blockIdx.x * C;
    const T *x = inp + off, *g = dout + off;
    T *dx = dinp + off;
    float r = rstd[blockIdx.x], dot = 0.0f;
    for (int c = threadIdx.x * P::V; c < C; c += blockDim.x * P::V) {
        P px, pg;
        float wv[P::V];
        px.load(x + c);
        pg.load(g + c);
        load_w<P::V>(wv, w, c);
#pragma unroll
        for (int k = 0; k < P::V; k++) dot += wv[k] * pg.v[k] * px.v[k];
    }
    float coef = block_sum(dot) * r * r * r / (float)C;
    for (int c = threadIdx.x * P::V; c < C; c += blockDim.x * P::V) {
        P px, pg, pd;
        float wv[P::V];
        px.load(x + c);
        pg.load(g + c);
        load_w<P::V>(wv, w, c);
        if (accum) pd.load(dx + c);
#pragma unroll
        for (int k = 0; k < P::V; k++) {
            float d = r * wv[k] * pg.v[k] - coef * px.v[k];
            pd.v[k] = accum ? pd.v[k] + d : d;
        }
        pd.store(dx + c);
    }
}

template <typename T> struct rms_dw_term {
    const T *dout, *inp;
    const float *rstd;
    int C;
    __device__ float operator()(int r, int c) const {
        size_t i = (size_t)r * C + c;
        return ld(dout[i]) * ld(inp[i]) * rstd[r];
    }
};

/* Fused backward for the common shapes (C / V a multiple of 32, at most 1024):
 * a persistent grid where each thread owns one 16-byte piece of the row for
 * all its block's rows, so it also accumulates its columns' dw (and db) in
 * registers; per-block partials are then summed in a fixed order. One pass
 * over dout and inp instead of two. */
template <typename T, bool LN>
__global__ void norm_bwd_rows_kernel(T *dinp, float *partial_w, float *partial_b, const T *dout, const T *inp,
                                     const float *w, const float *mean, const float *rstd, int N, int C, int accum) {
    typedef piece<T, true> P;
    int c = threadIdx.x * P::V;
    float wv[P::V], aw[P::V], ab[P::V];
    load_w<P::V>(wv, w, c);
#pragma unroll
    for (int k = 0; k < P::V; k++) aw[k] = ab[k] = 0.0f;
    for (int row = blockIdx.x; row < N; row += gridDim.x) {
        size_t off = (size_t)row * C + c;
        P px, pg, pd;
        px.load(inp + off);
        pg.load(dout + off);
        float r = rstd[row], mu = LN ? mean[row] : 0.0f, s1 = 0.0f, s2 = 0.0f;
#pragma unroll
        for (int k = 0; k < P::V; k++) {
            float xh = (px.v[k] - mu) * r, dxh = pg.v[k] * wv[k];
            s1 += dxh;
            s2 += dxh * xh;
            aw[k] += pg.v[k] * xh;
            ab[k] += pg.v[k];
        }
        /* rms: dinp = r·(dxh − xh·mean(dxh·xh)); ln: also − mean(dxh) */
        float m1 = LN ? block_sum(s1) / (float)C : 0.0f;
        float m2 = block_sum(s2) / (float)C;
        if (accum) pd.load(dinp + off);
#pragma unroll
        for (int k = 0; k < P::V; k++) {
            float xh = (px.v[k] - mu) * r;
            float d = r * (pg.v[k] * wv[k] - m1 - xh * m2);
            pd.v[k] = accum ? pd.v[k] + d : d;
        }
        pd.store(dinp + off);
    }
#pragma unroll
    for (int k = 0; k < P::V; k++) {
        partial_w[(size_t)blockIdx.x * C + c + k] = aw[k];
        if (LN) partial_b[(size_t)blockIdx.x * C + c + k] = ab[k];
    }
}

struct partial_term { /* reads a [rows, C] float matrix */
    const float *p;
    int C;
    __device__ float operator()(int r, int c) const { return p[(size_t)r * C + c]; }
};

/* Sums `blocks` per-block rows of partial [blocks, C] into out (+=), in two
 * fixed-order stages; tmp holds ceil(blocks / HK_COLSUM_CHUNK) rows. */
static void sum_partials(hk_backend *hk, float *out, const float *partial, float *tmp, int blocks, int C,
                         const char *what) {
    int chunks = (blocks + HK_COLSUM_CHUNK - 1) / HK_COLSUM_CHUNK;
    partial_term term = {partial, C};
    dim3 grid((C + HK_COLSUM_TILE - 1) / HK_COLSUM_TILE, chunks), block(HK_COLSUM_TILE, HK_COLSUM_ROWS);
    colsum_partial_kernel<<<grid, block, 0, hk_cuda_stream(hk)>>>(tmp, blocks, C, term);
    if (hk_cuda_check_launch(hk, what)) return;
    colsum_finish_kernel<><<<(C + 255) / 256, 256, 0, hk_cuda_stream(hk)>>>(out, tmp, chunks, C);
    hk_cuda_check_launch(hk, what);
}

/* Runs the fused backward when the shape allows; returns 0 to ask for the general path. */
template <typename T, bool LN>
static int norm_bwd_rows(hk_backend *hk, void *dinp, void *dw, void *db, const void *dout, const void *inp,
                         const void *w, const void *mean, const void *rstd, int N, int C, int accum, const char *what) {
    const int V = hk_vec<T>::n;
    if (!dinp || !dw || (LN && !db) || !hk_vec_ok(sizeof(T), (size_t)C, dinp, dout, inp) || (C / V) % 32 || C / V > 1024)
        return 0;
    int threads = C / V;
    int blocks = hk_cuda_sm_count(hk) * (1024 / threads); /* half the SM's threads: enough loads in flight */
    if (blocks > N) blocks = N;
    int chunks = (blocks + HK_COLSUM_CHUNK - 1) / HK_COLSUM_CHUNK, nb = LN ? 2 : 1;
    float *partial = (float *)hk_cuda_scratch(hk, (size_t)(blocks + chunks) * C * sizeof(float) * nb);
    if (!partial) return 1;
    float *partial_b = partial + (size_t)blocks * C; /* used by LN only */
    float *tmp = partial + (size_t)blocks * C * nb;
    cudaStream_t s = hk_cuda_stream(hk);
    norm_bwd_rows_kernel<T, LN><<<blocks, threads, 0, s>>>((T *)dinp, partial, partial_b, (const T *)dout,
                                                          (const T *)inp, (const float *)w, (const float *)mean,
                                                          (const float *)rstd, N, C, accum);
    if (hk_cuda_check_launch(hk, what)) return 1;
    sum_partials(hk, (float *)dw, partial, tmp, blocks, C, what);
    if (LN) sum_partials(hk, (float *)db, partial_b, tmp + (size_t)chunks * C, blocks, C, what);
    return 1;
}

void hk_cuda_rmsnorm_fwd(hk_backend *hk, void *out, void *rstd, const void *inp, const void *w, int N, int C,
                         float eps) {
    norm_fwd<false, false>(hk, NULL, out, NULL, rstd, inp, NULL, w, NULL, N, C, eps, "rmsnorm_fwd");
}

void hk_cuda_rmsnorm_bwd(hk_backend *hk, void *dinp, void *dw, const void *dout, const void *inp, const void *w,
                         const void *rstd, int N, int C, int accum) {
    if (N <= 0 || C <= 0) return;
    HK_DISPATCH_ACT(hk, T, {
        if (norm_bwd_rows<T, false>(hk, dinp, dw, NULL, dout, inp, w, NULL, rstd, N, C, accum, "rmsnorm_bwd"))
            return;
        int vec = hk_vec_ok(sizeof(T), (size_t)C, dinp, dout, inp);
        int th = row_threads(vec ? C / hk_vec<T>::n : C);
        if (!dinp) { /* parameter gradient only */
        } else if (vec)
            rmsnorm_bwd_kernel<T, true><<<N, th, 0, hk_cuda_stream(hk)>>>(
                (T *)dinp, (const T *)dout, (const T *)inp, (const float *)w, (const float *)rstd, C, accum);
        else
            rmsnorm_bwd_kernel<T, false><<<N, th, 0, hk_cuda_stream(hk)>>>(
                (T *)dinp, (const T *)dout, (const T *)inp, (const float *)w, (const float *)rstd, C, accum);
        if (hk_cuda_check_launch(hk, "rmsnorm_bwd")) return;
        if (dw) {
            rms_dw_term<T> term = {(const T *)dout, (const T *)inp, (const float *)rstd, C};
            hk_colsum(hk, (float *)dw, N, C, term, "rmsnorm_bwd dw");
        }
    });
}

/* ---- LayerNorm -------------------------------------------------------------------- */

/* dinp = rstd·(dxhat − mean(dxhat) − xhat·mean(dxhat·xhat)), dxhat = dout·w */
template <typename T, bool VEC>
__global__ void layernorm_bwd_kernel(T *dinp, const T *dout, const T *inp, const float *w, const float *mean,
                                     const float *rstd, int C, int accum) {
    typedef piece<T, VEC> P;
    size_t off = (size_t)blockIdx.x * C;
    const T *x = inp + off, *g = dout + off;
    T *dx = dinp + off;
    float mu = mean[blockIdx.x], r = rstd[blockIdx.x], s1 = 0.0f, s2 = 0.0f;
    for (int c = threadIdx.x * P::V; c < C; c += blockDim.x * P::V) {
        P px, pg;
        float wv[P::V];
        px.load(x + c);
        pg.load(g + c);
        load_w<P::V>(wv, w, c);
#pragma unroll
        for (int k = 0; k < P::V; k++) {
            float dxh = pg.v[k] * wv[k];
            s1 += dxh;
            s2 += dxh * (px.v[k] - mu) * r;
        }
    }
    float m1 = block_sum(s1) / (float)C;
    float m2 = block_sum(s2) / (float)C;
    for (int c = threadIdx.x * P::V; c < C; c += blockDim.x * P::V) {
        P px, pg, pd;
        float wv[P::V];
        px.load(x + c);
        pg.load(g + c);
        load_w<P::V>(wv, w, c);
        if (accum) pd.load(dx + c);
#pragma unroll
        for (int k = 0; k < P::V; k++) {
            float xh = (px.v[k] - mu) * r;
            float d = r * (pg.v[k] * wv[k] - m1 - xh * m2);
            pd.v[k] = accum ? pd.v[k] + d : d;
        }
        pd.store(dx + c);
    }
}

template <typename T> struct ln_dw_term {
    const T *dout, *inp;
    const float *mean, *rstd;
    int C;
    __device__ float operator()(int r, int c) const {
        size_t i = (size_t)r * C + c;
        return ld(dout[i]) * (ld(inp[i]) - mean[r]) * rstd[r];
    }
};
template <typename T> struct ln_db_term {
    const T *dout;
    int C;
    __device__ float operator()(int r, int c) const { return ld(dout[(size_t)r * C + c]); }
};

void hk_cuda_layernorm_fwd(hk_backend *hk, void *out, void *mean, void *rstd, const void *inp, const void *w,
                           const void *b, int N, int C, float eps) {
    norm_fwd<true, false>(hk, NULL, out, mean, rstd, inp, NULL, w, b, N, C, eps, "layernorm_fwd");
}

void hk_cuda_layernorm_bwd(hk_backend *hk, void *dinp, void *dw, void *db, const void *dout, const void *inp,
                           const void *w, const void *mean, const void *rstd, int N, int C, int accum) {
    if (N <= 0 || C <= 0) return;
    HK_DISPATCH_ACT(hk, T, {
        if (norm_bwd_rows<T, true>(hk, dinp, dw, db, dout, inp, w, mean, rstd, N, C, accum, "layernorm_bwd"))
            return;
        int vec = hk_vec_ok(sizeof(T), (size_t)C, dinp, dout, inp);
        int th = row_threads(vec ? C / hk_vec<T>::n : C);
        if (!dinp) { /* parameter gradients only */
        } else if (vec)
            layernorm_bwd_kernel<T, true><<<N, th, 0, hk_cuda_stream(hk)>>>(
                (T *)dinp, (const T *)dout, (const T *)inp, (const float *)w, (const float *)mean,
                (const float *)rstd, C, accum);
        else
            layernorm_bwd_kernel<T, false><<<N, th, 0, hk_cuda_stream(hk)>>>(
                (T *)dinp, (const T *)dout, (const T *)inp, (const float *)w, (const float *)mean,
                (const float *)rstd, C, accum);
        if (hk_cuda_check_launch(hk, "layernorm_bwd")) return;
        if (dw) {
            ln_dw_term<T> term = {(const T *)dout, (const T *)inp, (const float *)mean, (const float *)rstd, C};
            hk_colsum(hk, (float *)dw, N, C, term, "layernorm_bwd dw");
        }
        if (db) {
            ln_db_term<T> term = {(const T *)dout, C};
            hk_colsum(hk, (float *)db, N, C, term, "layernorm_bwd db");
        }
    });
}

/* ---- QK-norm: RMSNorm over dh on every q and k head, v copied ---------------------- */

#define QK_WARPS 8

/* One warp per (token n, head h) of the Hq + 2 Hkv heads of a packed qkv row. */
template <typename T>
__global__ void qknorm_fwd_kernel(T *out, float *rstd, const T *inp, const float *wq, const float *wk, int N, int Hq,
                                  int Hkv, int dh, float eps) {
    int H = Hq + 2 * Hkv, lane = threadIdx.x & 31;
    size_t item = (size_t)blockIdx.x * QK_WARPS + (threadIdx.x >> 5);
    if (item >= (size_t)N * H) return;
    size_t n = item / H;
    int h = (int)(item % H);
    size_t off = n * (size_t)H * dh + (size_t)h * dh;
    const T *x = inp + off;
    T *y = out + off;
    if (h >= Hq + Hkv) { /* v: copy */
        for (int i = lane; i < dh; i += 32) y[i] = x[i];
        return;
    }
    const float *w = h < Hq ? wq : wk;
    float ss = 0.0f;
    for (int i = lane; i < dh; i += 32) {
        float v = ld(x[i]);
        ss += v * v;
    }
    float r = rsqrtf(warp_sum(ss) / (float)dh + eps);
    for (int i = lane; i < dh; i += 32) y[i] = st<T>(ld(x[i]) * r * w[i]);
    if (lane == 0) rstd[n * (Hq + Hkv) + h] = r;
}

template <typename T>
__global__ void qknorm_bwd_kernel(T *dinp, const T *dout, const T *inp, const float *wq, const float *wk,
                                  const float *rstd, int N, int Hq, int Hkv, int dh) {
    int H = Hq + 2 * Hkv, lane = threadIdx.x & 31;
    size_t item = (size_t)blockIdx.x * QK_WARPS + (threadIdx.x >> 5);
    if (item >= (size_t)N * H) return;
    size_t n = item / H;
    int h = (int)(item % H);
    size_t off = n * (size_t)H * dh + (size_t)h * dh;
    const T *x = inp + off, *g = dout + off;
    T *dx = dinp + off;
    if (h >= Hq + Hkv) {
        for (int i = lane; i < dh; i += 32) dx[i] = g[i];
        return;
    }
    const float *w = h < Hq ? wq : wk;
    float r = rstd[n * (Hq + Hkv) + h], dot = 0.0f;
    for (int i = lane; i < dh; i += 32) dot += w[i] * ld(g[i]) * ld(x[i]);
    float coef = warp_sum(dot) * r * r * r / (float)dh;
    for (int i = lane; i < dh; i += 32) dx[i] = st<T>(r * w[i] * ld(g[i]) - coef * ld(x[i]));
}

/* Rows of the column sum: (token n, head j) of the q part (first = 0, count = Hq)
 * or of the k part (first = Hq, count = Hkv). */
template <typename T> struct qk_dw_term {
    const T *dout, *inp;
    const float *rstd;
    int H, Hqk, first, count, dh;
    __device__ float operator()(int r, int i) const {
        int n = r / count, h = first + r % count;
        size_t e = (size_t)n * H * dh + (size_t)h * dh + i;
        return ld(dout[e]) * ld(inp[e]) * rstd[(size_t)n * Hqk + h];
    }
};

void hk_cuda_qknorm_fwd(hk_backend *hk, void *out, void *rstd, const void *inp, const void *wq, const void *wk, int N,
                        int Hq, int Hkv, int dh, float eps) {
    if (N <= 0 || dh <= 0) return;
    size_t items = (size_t)N * (Hq + 2 * Hkv);
    unsigned grid = (unsigned)((items + QK_WARPS - 1) / QK_WARPS);
    HK_DISPATCH_ACT(hk, T, qknorm_fwd_kernel<T><<<grid, QK_WARPS * 32, 0, hk_cuda_stream(hk)>>>(
                               (T *)out, (float *)rstd, (const T *)inp, (const float *)wq, (const float *)wk, N, Hq,
                               Hkv, dh, eps));
    hk_cuda_check_launch(hk, "qknorm_fwd");
}

void hk_cuda_qknorm_bwd(hk_backend *hk, void *dinp, void *dwq, void *dwk, const void *dout, const void *inp,
                        const void *wq, const void *wk, const void *rstd, int N, int Hq, int Hkv, int dh) {
    if (N <= 0 || dh <= 0) return;
    size_t items = (size_t)N * (Hq + 2 * Hkv);
    unsigned grid = (unsigned)((items + QK_WARPS - 1) / QK_WARPS);
    int H = Hq + 2 * Hkv;
    HK_DISPATCH_ACT(hk, T, {
        qknorm_bwd_kernel<T><<<grid, QK_WARPS * 32, 0, hk_cuda_stream(hk)>>>(
            (T *)dinp, (const T *)dout, (const T *)inp, (const float *)wq, (const float *)wk, (const float *)rstd, N,
            Hq, Hkv, dh);
        if (hk_cuda_check_launch(hk, "qknorm_bwd")) return;
        if (dwq) {
            qk_dw_term<T> term = {(const T *)dout, (const T *)inp, (const float *)rstd, H, Hq + Hkv, 0, Hq, dh};
            hk_colsum(hk, (float *)dwq, N * Hq, dh, term, "qknorm_bwd dwq");
        }
        if (dwk) {
            qk_dw_term<T> term = {(const T *)dout, (const T *)inp, (const float *)rstd, H, Hq + Hkv, Hq, Hkv, dh};
            hk_colsum(hk, (float *)dwk, N * Hkv, dh, term, "qknorm_bwd dwk");
        }
    });
}
