/* kernels/cuda/conv1d.cu — causal depthwise conv1d + bias + SiLU (Mamba-2), forward and backward.
 *
 * Conventions: activations [B, T, Cc] with the channel contiguous; w R [Cc, K], b R [Cc].
 *   pre[b,t,c] = b[c] + Σ_{j<K} w[c,j] · inp[b, t−(K−1)+j, c]  (zero before t = 0)
 * One thread per output element (grid-stride), fp32 sums. The backward first writes
 * dpre = dout · SiLU'(pre) (fp32) into the backend's scratch, then dinp[s] =
 * Σ_j w[j] · dpre[s + K−1−j], and dw, db as deterministic column sums over token rows
 * (the colsum kernels of common.cuh, their partials placed after dpre in the scratch).
 */
#include "kernels/cuda/common.cuh"

template <typename T>
__device__ __forceinline__ float conv_pre(const T *inp, const float *w, const float *bias, size_t row0, int t, int c,
                                          int Cc, int K) {
    float s = bias[c];
    for (int j = 0; j < K; j++) {
        const int st_ = t - (K - 1) + j;
        if (st_ >= 0) s += w[(size_t)c * K + j] * ld(inp[(row0 + st_) * Cc + c]);
    }
    return s;
}

/* dpre at (batch row0, time t, channel c) */
template <typename T>
__device__ __forceinline__ float conv_dpre(const T *dout, const T *inp, const float *w, const float *bias, size_t row0,
                                           int t, int c, int Cc, int K) {
    const float pre = conv_pre(inp, w, bias, row0, t, c, Cc, K), s = sigmoid_f(pre);
    return ld(dout[(row0 + t) * Cc + c]) * s * (1.0f + pre * (1.0f - s));
}

template <typename T>
__global__ void conv1d_silu_fwd_kernel(T *out, const T *inp, const float *w, const float *bias, int B, int T_, int Cc,
                                       int K) {
    const size_t total = (size_t)B * T_ * Cc;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        const int c = (int)(i % Cc);
        const size_t bt = i / Cc;
        const int t = (int)(bt % T_);
        const float pre = conv_pre(inp, w, bias, bt - t, t, c, Cc, K);
        out[i] = st<T>(silu_f(pre));
    }
}

template <typename T>
__global__ void conv1d_dpre_kernel(float *dpre, const T *dout, const T *inp, const float *w, const float *bias, int B,
                                   int T_, int Cc, int K) {
    const size_t total = (size_t)B * T_ * Cc;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        const int c = (int)(i % Cc);
        const size_t bt = i / Cc;
        const int t = (int)(bt % T_);
        dpre[i] = conv_dpre(dout, inp, w, bias, bt - t, t, c, Cc, K);
    }
}

template <typename T>
__global__ void conv1d_dinp_kernel(T *dinp, const float *dpre, const float *w, int B, int T_, int Cc, int K) {
    const size_t total = (size_t)B * T_ * Cc;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        const int c = (int)(i % Cc);
        const size_t bt = i / Cc;
        const int s = (int)(bt % T_);
        float acc = 0.0f;
        for (int j = 0; j < K; j++) {
            const int t = s + (K - 1) - j; /* output row that reads input row s through tap j */
            if (t < T_) acc += w[(size_t)c * K + j] * dpre[i + (size_t)(t - s) * Cc];
        }
        dinp[i] = st<T>(acc);
    }
}

/* dw[c,j] += Σ_rows dpre[r,c] · inp[r−(K−1)+j, c]; column index = c·K + j */
template <typename T> struct conv_dw_term {
    const float *dpre;
    const T *inp;
    int T_, Cc, K;
    __device__ float operator()(int r, int col) const {
        const int c = col / K, j = col % K, t = r % T_, s = t - (K - 1) + j;
        if (s < 0) return 0.0f;
        return dpre[(size_t)r * Cc + c] * ld(inp[((size_t)r - t + s) * Cc + c]);
    }
};
struct conv_db_term {
    const float *dpre;
    int Cc;
    __device__ float operator()(int r, int c) const { return dpre[(size_t)r * Cc + c]; }
};

/* out[c] += Σ_r term(r, c), deterministic, partials in the given buffer (rows/256 × cols floats). */
template <typename Term>
static void conv_colsum(hk_backend *hk, float *out, float *partial, int rows, int cols, Term term, const char *what) {
    const int chunks = (rows + HK_COLSUM_CHUNK - 1) / HK_COLSUM_CHUNK;
    dim3 grid((cols + HK_COLSUM_TILE - 1) / HK_COLSUM_TILE, chunks), block(HK_COLSUM_TILE, HK_COLSUM_ROWS);
    colsum_partial_kernel<<<grid, block, 0, hk_cuda_stream(hk)>>>(partial, rows, cols, term);
    if (hk_cuda_check_launch(hk, what)) return;
    colsum_finish_kernel<><<<(cols + 255) / 256, 256, 0, hk_cuda_stream(hk)>>>(out, partial, chunks, cols);
    hk_cuda_check_launch(hk, what);
}

static int conv_dims_ok(hk_backend *hk, const char *op, int B, int T, int Cc, int K) {
    if (B <= 0 || T <= 0 || Cc <= 0 || K <= 0 || (long long)B * T > 2147483647LL / 2) {
        hk_cuda_fail(hk, HLAB_EINVAL, "%s: bad dims B=%d T=%d Cc=%d K=%d (expected all > 0, B*T < 2^30)", op, B, T, Cc,
                     K);
        return 0;
    }
    return 1;
}

void hk_cuda_conv1d_silu_fwd(hk_backend *hk, void *out, const void *inp, const void *w, const void *b, int B, int T,
                             int Cc, int K) {
    if (!conv_dims_ok(hk, "conv1d_silu_fwd", B, T, Cc, K)) return;
    const size_t n = (size_t)B * T * Cc;
    HK_DISPATCH_ACT(hk, A, {
        conv1d_silu_fwd_kernel<A><<<hk_grid_for(hk, n, 256), 256, 0, hk_cuda_stream(hk)>>>(
            (A *)out, (const A *)inp, (const float *)w, (const float *)b, B, T, Cc, K);
    });
    hk_cuda_check_launch(hk, "conv1d_silu_fwd");
}

void hk_cuda_conv1d_silu_bwd(hk_backend *hk, void *dinp, void *dw, void *db, const void *dout, const void *inp,
                             const void *w, const void *b, int B, int T, int Cc, int K) {
    if (!conv_dims_ok(hk, "conv1d_silu_bwd", B, T, Cc, K)) return;
    const size_t n = (size_t)B * T * Cc;
    const int rows = B * T, chunks = (rows + HK_COLSUM_CHUNK - 1) / HK_COLSUM_CHUNK;
    float *dpre = (float *)hk_cuda_scratch(hk, sizeof(float) * (n + (size_t)chunks * Cc * (K + 1)));
    if (!dpre) return;
    float *partial = dpre + n;
    const unsigned grid = hk_grid_for(hk, n, 256);
    HK_DISPATCH_ACT(hk, A, {
        conv1d_dpre_kernel<A><<<grid, 256, 0, hk_cuda_stream(hk)>>>(dpre, (const A *)dout, (const A *)inp,
                                                                     (const float *)w, (const float *)b, B, T, Cc, K);
        if (hk_cuda_check_launch(hk, "conv1d_silu_bwd dpre")) return;
        conv1d_dinp_kernel<A><<<grid, 256, 0, hk_cuda_stream(hk)>>>((A *)dinp, dpre, (const float *)w, B, T, Cc, K);
        if (hk_cuda_check_launch(hk, "conv1d_silu_bwd dinp")) return;
        conv_dw_term<A> tw = {dpre, (const A *)inp, T, Cc, K};
        conv_colsum(hk, (float *)dw, partial, rows, Cc * K, tw, "conv1d_silu_bwd dw");
        conv_db_term tb = {dpre, Cc};
        conv_colsum(hk, (float *)db, partial + (size_t)chunks * Cc * K, rows, Cc, tb, "conv1d_silu_bwd db");
    });
}
