/* kernels/cuda/conv1d_window.cuh — the per-thread bodies of the sliding-window causal
 * depthwise conv1d + SiLU (Mamba-2), forward and backward.
 *
 * One thread owns NV consecutive channels (one 8- or 16-byte vector) of one batch row
 * over a time chunk [t0, t0 + L): it reads each input row once, keeping the K − 1
 * previous inputs (and, backward, the K − 1 previous dpre) in registers, so nothing
 * but the inputs and outputs touches memory. Loads are issued U rows at a time so
 * that several are in flight per thread.
 *
 * The bodies are __host__ __device__ so that tests/cuda/emu/conv_gn.cu can run exactly
 * this code on the CPU (no GPU on the build machine) against kernels/cpu/mamba.c.
 * Formulas and tap order are the CPU reference's:
 *   pre[t] = b + Σ_{j<K} w[j] · x[t − (K−1) + j]   (zero before t = 0)
 *   dpre[t] = dout[t] · σ(pre)(1 + pre(1 − σ(pre)))
 *   dinp[s] = Σ_{j<K} w[j] · dpre[s + K−1 − j]     (zero at or after T)
 *   dw[j] += Σ_t dpre[t] · x[t − (K−1) + j],  db += Σ_t dpre[t]
 */
#ifndef HLAB_KERNELS_CUDA_CONV1D_WINDOW_CUH
#define HLAB_KERNELS_CUDA_CONV1D_WINDOW_CUH

#include <cuda_bf16.h>
#include <math.h>
#include <stddef.h>

#define CW_HD __host__ __device__ __forceinline__
/* the host pass (emulation, and the host side of nvcc) does not know the pragma */
#ifdef __CUDA_ARCH__
#define CW_UNROLL _Pragma("unroll")
#else
#define CW_UNROLL
#endif

namespace conv_window {

CW_HD float widen(float x) { return x; }
CW_HD float widen(__nv_bfloat16 x) { return __bfloat162float(x); }
template <typename T> CW_HD T narrow(float x);
template <> CW_HD float narrow<float>(float x) { return x; }
template <> CW_HD __nv_bfloat16 narrow<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }

/* NV elements of T read or written in one access */
template <typename T, int NV> struct alignas(sizeof(T) * NV) pack {
    T v[NV];
};
template <typename T, int NV> CW_HD pack<T, NV> load_pack(const T *p) {
    return *reinterpret_cast<const pack<T, NV> *>(p);
}
template <typename T, int NV> CW_HD void store_pack(T *p, const pack<T, NV> &x) {
    *reinterpret_cast<pack<T, NV> *>(p) = x;
}

CW_HD float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }
CW_HD int imin(int a, int b) { return a < b ? a : b; }

/* rows t0 .. t0+U−1 of the column vector at c0, those at or after `end` zero */
template <typename T, int NV, int U>
CW_HD void load_rows(pack<T, NV> (&r)[U], const T *__restrict__ p, int t0, int end, int Cc, int c0) {
CW_UNROLL
    for (int u = 0; u < U; u++) {
        if (t0 + u < end)
            r[u] = load_pack<T, NV>(p + (size_t)(t0 + u) * Cc + c0);
        else
            r[u] = pack<T, NV>{};
    }
}

/* Register arrays need a length ≥ 1 even when K = 1 leaves the window empty. */
template <int K> struct win_len {
    static constexpr int n = K > 1 ? K - 1 : 1;
};

/* Forward for one (batch row, channel vector c0, time chunk [t0, min(t0 + L, T))).
 * inp and out point at the batch row's [T, Cc] block. */
template <typename T, int NV, int K, int U>
CW_HD void fwd_thread(T *__restrict__ out, const T *__restrict__ inp, const float *__restrict__ w,
                      const float *__restrict__ bias, int T_, int Cc, int c0, int t0, int L) {
    float wr[K][NV], br[NV], win[win_len<K>::n][NV]; /* win[m] = x[t − (K−1) + m] */
CW_UNROLL
    for (int i = 0; i < NV; i++) {
        br[i] = bias[c0 + i];
CW_UNROLL
        for (int j = 0; j < K; j++) wr[j][i] = w[(size_t)(c0 + i) * K + j];
    }
CW_UNROLL
    for (int m = 0; m < K - 1; m++) {
        const int s = t0 - (K - 1) + m;
        if (s >= 0) {
            const pack<T, NV> p = load_pack<T, NV>(inp + (size_t)s * Cc + c0);
CW_UNROLL
            for (int i = 0; i < NV; i++) win[m][i] = widen(p.v[i]);
        } else {
CW_UNROLL
            for (int i = 0; i < NV; i++) win[m][i] = 0.0f;
        }
    }
    const int t1 = imin(t0 + L, T_);
    pack<T, NV> raw[U], nxt[U]; /* this batch of U rows, and the next one in flight meanwhile */
    load_rows<T, NV, U>(raw, inp, t0, t1, Cc, c0);
    for (int tb = t0; tb < t1; tb += U) {
        load_rows<T, NV, U>(nxt, inp, tb + U, t1, Cc, c0);
CW_UNROLL
        for (int u = 0; u < U; u++) {
            if (tb + u >= t1) break;
            float x[NV];
            pack<T, NV> o;
CW_UNROLL
            for (int i = 0; i < NV; i++) {
                x[i] = widen(raw[u].v[i]);
                float pre = br[i];
CW_UNROLL
                for (int j = 0; j < K - 1; j++) pre += wr[j][i] * win[j][i];
                pre += wr[K - 1][i] * x[i];
                o.v[i] = narrow<T>(pre * sigmoid(pre));
            }
            store_pack<T, NV>(out + (size_t)(tb + u) * Cc + c0, o);
CW_UNROLL
            for (int m = 0; m + 1 < K - 1; m++)
CW_UNROLL
                for (int i = 0; i < NV; i++) win[m][i] = win[m + 1][i];
            if (K > 1)
CW_UNROLL
                for (int i = 0; i < NV; i++) win[win_len<K>::n - 1][i] = x[i];
        }
CW_UNROLL
        for (int u = 0; u < U; u++) raw[u] = nxt[u];
    }
}

/* Backward for one (batch row, channel vector, time chunk [t0, t1 = min(t0 + L, T))).
 * Walks t over [t0, t1 + K − 1): dpre[t] from the input window (zero at t ≥ T), dinp of
 * row t − (K−1) once that row's K dpre values are known, and the dw / db partial of the
 * owned rows t < t1 into dwacc / dbacc (+=). Rows t1..t1+K−2 are the next chunk's:
 * their dpre is recomputed here (a K − 1 row halo) and not counted in the partials. */
template <typename T, int NV, int K, int U>
CW_HD void bwd_thread(T *__restrict__ dinp, const T *__restrict__ dout, const T *__restrict__ inp,
                      const float *__restrict__ w, const float *__restrict__ bias, int T_, int Cc, int c0, int t0,
                      int L, float (&dwacc)[K][NV], float (&dbacc)[NV]) {
    constexpr int KW = win_len<K>::n;
    float wr[K][NV], br[NV], xw[KW][NV], dw[KW][NV]; /* xw[m] = x[t−(K−1)+m], dw[m] = dpre[t−(K−1)+m] */
CW_UNROLL
    for (int i = 0; i < NV; i++) {
        br[i] = bias[c0 + i];
CW_UNROLL
        for (int j = 0; j < K; j++) wr[j][i] = w[(size_t)(c0 + i) * K + j];
    }
CW_UNROLL
    for (int m = 0; m < KW; m++) {
        const int s = t0 - (K - 1) + m;
        if (K > 1 && s >= 0) {
            const pack<T, NV> p = load_pack<T, NV>(inp + (size_t)s * Cc + c0);
CW_UNROLL
            for (int i = 0; i < NV; i++) xw[m][i] = widen(p.v[i]);
        } else {
CW_UNROLL
            for (int i = 0; i < NV; i++) xw[m][i] = 0.0f;
        }
CW_UNROLL
        for (int i = 0; i < NV; i++) dw[m][i] = 0.0f; /* dpre before t0 is never used */
    }
    const int t1 = imin(t0 + L, T_), te = t1 + K - 1, tl = imin(te, T_);
    pack<T, NV> xr[U], gr[U], xn[U], gn[U]; /* this batch of U rows, and the next one in flight meanwhile */
    load_rows<T, NV, U>(xr, inp, t0, tl, Cc, c0);
    load_rows<T, NV, U>(gr, dout, t0, tl, Cc, c0);
    for (int tb = t0; tb < te; tb += U) {
        load_rows<T, NV, U>(xn, inp, tb + U, tl, Cc, c0);
        load_rows<T, NV, U>(gn, dout, tb + U, tl, Cc, c0);
CW_UNROLL
        for (int u = 0; u < U; u++) {
            const int t = tb + u;
            if (t >= te) break;
            float x[NV], dp[NV];
            if (t < T_) {
CW_UNROLL
                for (int i = 0; i < NV; i++) {
                    x[i] = widen(xr[u].v[i]);
                    float pre = br[i];
CW_UNROLL
                    for (int j = 0; j < K - 1; j++) pre += wr[j][i] * xw[j][i];
                    pre += wr[K - 1][i] * x[i];
                    const float s = sigmoid(pre);
                    dp[i] = widen(gr[u].v[i]) * s * (1.0f + pre * (1.0f - s));
                }
            } else {
CW_UNROLL
                for (int i = 0; i < NV; i++) x[i] = dp[i] = 0.0f;
            }
            if (t < t1) {
CW_UNROLL
                for (int i = 0; i < NV; i++) {
                    dbacc[i] += dp[i];
CW_UNROLL
                    for (int j = 0; j < K - 1; j++) dwacc[j][i] += dp[i] * xw[j][i];
                    dwacc[K - 1][i] += dp[i] * x[i];
                }
            }
            if (t - (K - 1) >= t0) { /* row s = t − (K−1): Σ_j w[j] dpre[t − j], j ascending */
                pack<T, NV> o;
CW_UNROLL
                for (int i = 0; i < NV; i++) {
                    float acc = wr[0][i] * dp[i];
CW_UNROLL
                    for (int j = 1; j < K; j++) acc += wr[j][i] * dw[K - 1 - j][i];
                    o.v[i] = narrow<T>(acc);
                }
                store_pack<T, NV>(dinp + (size_t)(t - (K - 1)) * Cc + c0, o);
            }
CW_UNROLL
            for (int m = 0; m + 1 < K - 1; m++)
CW_UNROLL
                for (int i = 0; i < NV; i++) {
                    xw[m][i] = xw[m + 1][i];
                    dw[m][i] = dw[m + 1][i];
                }
            if (K > 1)
CW_UNROLL
                for (int i = 0; i < NV; i++) {
                    xw[KW - 1][i] = x[i];
                    dw[KW - 1][i] = dp[i];
                }
        }
CW_UNROLL
        for (int u = 0; u < U; u++) {
            xr[u] = xn[u];
            gr[u] = gn[u];
        }
    }
}

/* Launch geometry shared by the kernels and the host emulation: a block is 32 channel
 * vectors (x) × TCH time chunks (y); grid (ceil(nvec / 32), ceil(nchunks / TCH), B).
 * The backward's per-block dw/db partial is row (b · gridDim.y + blockIdx.y) of a
 * [rows][(K+1) · Cc] buffer: columns j·Cc + c for dw[c, j], K·Cc + c for db[c]. */
enum { LANES_X = 32, FWD_TCH = 4, BWD_TCH = 4, FWD_U = 8, BWD_U = 4, DEFAULT_CHUNK = 64 };

} // namespace conv_window

#endif
