/* kernels/cuda/conv1d.cu — causal depthwise conv1d + bias + SiLU (Mamba-2), forward and backward.
 *
 * Conventions: activations [B, T, Cc] with the channel contiguous; w R [Cc, K], b R [Cc].
 *   pre[b,t,c] = b[c] + Σ_{j<K} w[c,j] · inp[b, t−(K−1)+j, c]  (zero before t = 0)
 *
 * Two implementations of the same function:
 *  - window (default for 2 ≤ K ≤ 4): conv1d_window.cuh — a thread slides over a time chunk
 *    for one 8/16-byte channel vector (or one channel when Cc or the pointers do not allow
 *    vectors), reading every input once; the backward computes dpre, dinp and the dw/db
 *    partials in the same pass (no dpre round trip), per-block partials reduced over the
 *    block's time chunks in shared memory, then over blocks in a fixed order (deterministic).
 *  - legacy (other K, or HLAB_CONV_LEGACY=1): one thread per output element, grid-stride.
 *    The backward first writes dpre = dout · SiLU'(pre) (fp32) into the backend's scratch,
 *    then dinp[s] = Σ_j w[j] · dpre[s + K−1−j], and dw, db as deterministic column sums over
 *    token rows (the colsum kernels of common.cuh, their partials placed after dpre).
 * HLAB_CONV_CHUNK=n (a multiple of 8, 8..1024) overrides the window path's time chunk, for tuning.
 */
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/conv1d_window.cuh"

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

/* ---- window path ----------------------------------------------------------------- */

template <typename T, int NV, int K>
__global__ __launch_bounds__(conv_window::LANES_X *conv_window::FWD_TCH) void conv1d_fwd_window_kernel(
    T *out, const T *inp, const float *w, const float *bias, int T_, int Cc, int L) {
    const int nvec = Cc / NV, cv = blockIdx.x * conv_window::LANES_X + threadIdx.x;
    const int t0 = (blockIdx.y * conv_window::FWD_TCH + threadIdx.y) * L;
    if (cv >= nvec || t0 >= T_) return;
    const size_t row0 = (size_t)blockIdx.z * T_ * Cc;
    conv_window::fwd_thread<T, NV, K, conv_window::FWD_U>(out + row0, inp + row0, w, bias, T_, Cc, cv * NV, t0, L);
}

template <typename T, int NV, int K>
__global__ __launch_bounds__(conv_window::LANES_X *conv_window::BWD_TCH) void conv1d_bwd_window_kernel(
    T *dinp, float *part, const T *dout, const T *inp, const float *w, const float *bias, int T_, int Cc, int L) {
    constexpr int X = conv_window::LANES_X, TCH = conv_window::BWD_TCH, COLS = (K + 1) * NV * X;
    __shared__ float red[TCH][COLS]; /* [time chunk][q · NV + i][lane]: q < K dw tap, q = K db */
    const int nvec = Cc / NV, cv = blockIdx.x * X + threadIdx.x;
    const int t0 = (blockIdx.y * TCH + threadIdx.y) * L;
    float dwacc[K][NV], dbacc[NV];
#pragma unroll
    for (int i = 0; i < NV; i++) {
        dbacc[i] = 0.0f;
#pragma unroll
        for (int j = 0; j < K; j++) dwacc[j][i] = 0.0f;
    }
    if (cv < nvec && t0 < T_) {
        const size_t row0 = (size_t)blockIdx.z * T_ * Cc;
        conv_window::bwd_thread<T, NV, K, conv_window::BWD_U>(dinp + row0, dout + row0, inp + row0, w, bias, T_, Cc,
                                                              cv * NV, t0, L, dwacc, dbacc);
    }
#pragma unroll
    for (int i = 0; i < NV; i++) {
#pragma unroll
        for (int j = 0; j < K; j++) red[threadIdx.y][(j * NV + i) * X + threadIdx.x] = dwacc[j][i];
        red[threadIdx.y][(K * NV + i) * X + threadIdx.x] = dbacc[i];
    }
    __syncthreads();
    float *dst = part + ((size_t)blockIdx.z * gridDim.y + blockIdx.y) * (size_t)(K + 1) * Cc;
    for (int col = threadIdx.y * X + threadIdx.x; col < COLS; col += X * TCH) {
        float s = 0.0f;
        for (int y = 0; y < TCH; y++) s += red[y][col]; /* time chunks in order */
        const int q = col / (NV * X), i = (col / X) % NV, lane = col % X;
        const int c = (blockIdx.x * X + lane) * NV + i;
        if (c < Cc) dst[(size_t)q * Cc + c] = s;
    }
}

/* dw[c, j] += Σ_rows part[row, j·Cc + c]; db[c] += Σ_rows part[row, K·Cc + c]; rows in order */
__global__ void conv1d_param_finish_kernel(float *dw, float *db, const float *part, int rows, int Cc, int K) {
    const int col = blockIdx.x * blockDim.x + threadIdx.x, cols = (K + 1) * Cc;
    if (col >= cols) return;
    float s = 0.0f;
    for (int r = 0; r < rows; r++) s += part[(size_t)r * cols + col];
    const int q = col / Cc, c = col % Cc;
    if (q < K)
        dw[(size_t)c * K + q] += s;
    else
        db[c] += s;
}

/* Time chunk of the window path: HLAB_CONV_CHUNK when set and sane, else the default. */
static int conv_chunk(void) {
    const int n = hk_cuda_env_int("HLAB_CONV_CHUNK", 0);
    return n >= 8 && n <= 1024 && n % 8 == 0 ? n : conv_window::DEFAULT_CHUNK;
}

/* Channels per thread: a 16-byte (fwd) or 8-byte (bwd) vector when Cc and every pointer
 * allow it, else 1. */
static int conv_lanes(size_t elem, int bytes, int Cc, const void *p0, const void *p1, const void *p2 = 0) {
    const int nv = bytes / (int)elem;
    const uintptr_t bits = (uintptr_t)p0 | (uintptr_t)p1 | (uintptr_t)p2;
    return Cc % nv == 0 && bits % (uintptr_t)bytes == 0 ? nv : 1;
}

/* grid.z holds the batch, hence B ≤ 65535 */
static int conv_use_window(int B, int K) {
    return K >= 2 && K <= 4 && B <= 65535 && hk_cuda_env_int("HLAB_CONV_LEGACY", 0) != 1;
}

/* Instantiates the window kernels for K = 2..4 and NV ∈ {1, the vector width}. */
#define CONV_K_SWITCH(K, ...)                      \
    switch (K) {                                   \
    case 2: { constexpr int KK = 2; __VA_ARGS__; } break; \
    case 3: { constexpr int KK = 3; __VA_ARGS__; } break; \
    default: { constexpr int KK = 4; __VA_ARGS__; } break; \
    }

template <typename A>
static void conv_fwd_window(hk_backend *hk, A *out, const A *inp, const float *w, const float *b, int B, int T, int Cc,
                            int K) {
    using namespace conv_window;
    constexpr int VEC = 8 / (int)sizeof(A);
    const int nv = conv_lanes(sizeof(A), 8, Cc, out, inp), L = conv_chunk();
    const int nchunks = (T + L - 1) / L;
    const dim3 block(LANES_X, FWD_TCH), grid((Cc / nv + LANES_X - 1) / LANES_X, (nchunks + FWD_TCH - 1) / FWD_TCH, B);
    if (nv == VEC) {
        CONV_K_SWITCH(K, conv1d_fwd_window_kernel<A, VEC, KK><<<grid, block, 0, hk_cuda_stream(hk)>>>(out, inp, w, b, T, Cc, L));
    } else {
        CONV_K_SWITCH(K, conv1d_fwd_window_kernel<A, 1, KK><<<grid, block, 0, hk_cuda_stream(hk)>>>(out, inp, w, b, T, Cc, L));
    }
}

template <typename A>
static void conv_bwd_window(hk_backend *hk, A *dinp, float *dw, float *db, const A *dout, const A *inp, const float *w,
                            const float *b, int B, int T, int Cc, int K) {
    using namespace conv_window;
    constexpr int VEC = 8 / (int)sizeof(A);
    const int nv = conv_lanes(sizeof(A), 8, Cc, dinp, dout, inp), L = conv_chunk();
    const int nchunks = (T + L - 1) / L;
    const dim3 block(LANES_X, BWD_TCH), grid((Cc / nv + LANES_X - 1) / LANES_X, (nchunks + BWD_TCH - 1) / BWD_TCH, B);
    const int rows = B * (int)grid.y, cols = (K + 1) * Cc;
    float *part = (float *)hk_cuda_scratch(hk, sizeof(float) * (size_t)rows * cols);
    if (!part) return;
    if (nv == VEC) {
        CONV_K_SWITCH(K, conv1d_bwd_window_kernel<A, VEC, KK><<<grid, block, 0, hk_cuda_stream(hk)>>>(dinp, part, dout, inp, w, b, T, Cc, L));
    } else {
        CONV_K_SWITCH(K, conv1d_bwd_window_kernel<A, 1, KK><<<grid, block, 0, hk_cuda_stream(hk)>>>(dinp, part, dout, inp, w, b, T, Cc, L));
    }
    if (hk_cuda_check_launch(hk, "conv1d_silu_bwd window")) return;
    conv1d_param_finish_kernel<<<(cols + 255) / 256, 256, 0, hk_cuda_stream(hk)>>>(dw, db, part, rows, Cc, K);
}

/* ---- entry points ----------------------------------------------------------------- */

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
    if (conv_use_window(B, K)) {
        HK_DISPATCH_ACT(hk, A, {
            conv_fwd_window<A>(hk, (A *)out, (const A *)inp, (const float *)w, (const float *)b, B, T, Cc, K);
        });
        hk_cuda_check_launch(hk, "conv1d_silu_fwd window");
        return;
    }
    HK_DISPATCH_ACT(hk, A, {
        conv1d_silu_fwd_kernel<A><<<hk_grid_for(hk, n, 256), 256, 0, hk_cuda_stream(hk)>>>(
            (A *)out, (const A *)inp, (const float *)w, (const float *)b, B, T, Cc, K);
    });
    hk_cuda_check_launch(hk, "conv1d_silu_fwd");
}

void hk_cuda_conv1d_silu_bwd(hk_backend *hk, void *dinp, void *dw, void *db, const void *dout, const void *inp,
                             const void *w, const void *b, int B, int T, int Cc, int K) {
    if (!conv_dims_ok(hk, "conv1d_silu_bwd", B, T, Cc, K)) return;
    if (conv_use_window(B, K)) {
        HK_DISPATCH_ACT(hk, A, {
            conv_bwd_window<A>(hk, (A *)dinp, (float *)dw, (float *)db, (const A *)dout, (const A *)inp,
                               (const float *)w, (const float *)b, B, T, Cc, K);
        });
        hk_cuda_check_launch(hk, "conv1d_silu_bwd window finish");
        return;
    }
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
