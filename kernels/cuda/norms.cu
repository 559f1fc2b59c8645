/* kernels/cuda/norms.cu — RMSNorm, LayerNorm (forward, backward with accum)
 * and the per-head QK-norm of attention.
 *
 * Conventions: one block per token row (rmsnorm/layernorm) or one warp per
 * (token, head) (qknorm); statistics, dot products and every sum in fp32;
 * LayerNorm's variance is two-pass (mean first) for accuracy. The row kernels
 * read 16-byte vectors when the row length and the pointers allow.
 * Parameter gradients are column sums over rows in a fixed order (same inputs,
 * same bits): for the common widths (row = a multiple of 32 vectors, at most
 * 1024) the backward is one persistent pass that also accumulates dw/db per
 * thread, then sums the per-block partials; otherwise a row pass plus the
 * two-stage hk_colsum (common.cuh).
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

/* ---- RMSNorm ------------------------------------------------------------------ */

template <typename T, bool VEC>
__global__ void rmsnorm_fwd_kernel(T *out, float *rstd, const T *inp, const float *w, int C, float eps) {
    typedef piece<T, VEC> P;
    const T *x = inp + (size_t)blockIdx.x * C;
    T *y = out + (size_t)blockIdx.x * C;
    float ss = 0.0f;
    for (int c = threadIdx.x * P::V; c < C; c += blockDim.x * P::V) {
        P p;
        p.load(x + c);
#pragma unroll
        for (int k = 0; k < P::V; k++) ss += p.v[k] * p.v[k];
    }
    float r = rsqrtf(block_sum(ss) / (float)C + eps);
    for (int c = threadIdx.x * P::V; c < C; c += blockDim.x * P::V) {
        P p;
        float wv[P::V];
        p.load(x + c);
        load_w<P::V>(wv, w, c);
#pragma unroll
        for (int k = 0; k < P::V; k++) p.v[k] = p.v[k] * r * wv[k];
        p.store(y + c);
    }
    if (threadIdx.x == 0) rstd[blockIdx.x] = r;
}

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
    if (N <= 0 || C <= 0) return;
    HK_DISPATCH_ACT(hk, T, {
        int vec = hk_vec_ok(sizeof(T), (size_t)C, out, inp);
        int th = row_threads(vec ? C / hk_vec<T>::n : C);
        if (vec)
            rmsnorm_fwd_kernel<T, true><<<N, th, 0, hk_cuda_stream(hk)>>>((T *)out, (float *)rstd, (const T *)inp,
                                                                         (const float *)w, C, eps);
        else
            rmsnorm_fwd_kernel<T, false><<<N, th, 0, hk_cuda_stream(hk)>>>((T *)out, (float *)rstd, (const T *)inp,
                                                                          (const float *)w, C, eps);
    });
    hk_cuda_check_launch(hk, "rmsnorm_fwd");
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

template <typename T, bool VEC>
__global__ void layernorm_fwd_kernel(T *out, float *mean, float *rstd, const T *inp, const float *w, const float *b,
                                     int C, float eps) {
    typedef piece<T, VEC> P;
    const T *x = inp + (size_t)blockIdx.x * C;
    T *y = out + (size_t)blockIdx.x * C;
    float s = 0.0f;
    for (int c = threadIdx.x * P::V; c < C; c += blockDim.x * P::V) {
        P p;
        p.load(x + c);
#pragma unroll
        for (int k = 0; k < P::V; k++) s += p.v[k];
    }
    float mu = block_sum(s) / (float)C, ss = 0.0f;
    for (int c = threadIdx.x * P::V; c < C; c += blockDim.x * P::V) {
        P p;
        p.load(x + c);
#pragma unroll
        for (int k = 0; k < P::V; k++) ss += (p.v[k] - mu) * (p.v[k] - mu);
    }
    float r = rsqrtf(block_sum(ss) / (float)C + eps);
    for (int c = threadIdx.x * P::V; c < C; c += blockDim.x * P::V) {
        P p;
        float wv[P::V], bv[P::V];
        p.load(x + c);
        load_w<P::V>(wv, w, c);
        if (b) {
            load_w<P::V>(bv, b, c);
        } else {
            for (int k = 0; k < P::V; k++) bv[k] = 0.0f; /* LayerNorm without bias */
        }
#pragma unroll
        for (int k = 0; k < P::V; k++) p.v[k] = (p.v[k] - mu) * r * wv[k] + bv[k];
        p.store(y + c);
    }
    if (threadIdx.x == 0) {
        mean[blockIdx.x] = mu;
        rstd[blockIdx.x] = r;
    }
}

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
    if (N <= 0 || C <= 0) return;
    HK_DISPATCH_ACT(hk, T, {
        int vec = hk_vec_ok(sizeof(T), (size_t)C, out, inp);
        int th = row_threads(vec ? C / hk_vec<T>::n : C);
        if (vec)
            layernorm_fwd_kernel<T, true><<<N, th, 0, hk_cuda_stream(hk)>>>(
                (T *)out, (float *)mean, (float *)rstd, (const T *)inp, (const float *)w, (const float *)b, C, eps);
        else
            layernorm_fwd_kernel<T, false><<<N, th, 0, hk_cuda_stream(hk)>>>(
                (T *)out, (float *)mean, (float *)rstd, (const T *)inp, (const float *)w, (const float *)b, C, eps);
    });
    hk_cuda_check_launch(hk, "layernorm_fwd");
}

void hk_cuda_layernorm_bwd(hk_backend *hk, void *dinp, void *dw, void *db, const void *dout, const void *inp,
                           const void *w, const void *mean, const void *rstd, int N, int C, int accum) {
    if (N <= 0 || C <= 0) return;
    HK_DISPATCH_ACT(hk, T, {
        if (norm_bwd_rows<T, true>(hk, dinp, dw, db, dout, inp, w, mean, rstd, N, C, accum, "layernorm_bwd")) return;
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
