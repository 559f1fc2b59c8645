/* kernels/cuda/attention.cu — causal self-attention over packed qkv (GQA, optional
 * sliding window), flash-style forward and backward: online softmax, the T×T
 * scores never reach device memory; lse [B,Hq,T] is saved by the forward.
 *
 * Conventions. qkv row n = b*T + t is [q heads | k heads | v heads]; query head h
 * reads kv head h / (Hq/Hkv); key j is visible from query i iff j <= i and
 * (window == 0 or i − j < window); scores are scaled by 1/√dh. Softmax runs in
 * base 2 (scores pre-multiplied by log2 e), so every exponential is one ex2.
 *
 * Two implementations of the same function:
 *  - tensor-core path (bf16 mode, dh 64 or 128, 16-byte aligned rows): 4 warps per block,
 *    each warp MT m-tiles of 16 rows (MT = 2 at dh 64, 1 at dh 128), mma.sync m16n8k16 bf16
 *    with fp32 accumulation, operands through ldmatrix (.trans for the P·V-like products);
 *    each B fragment read from shared memory feeds MT mmas. P and dS are rounded to bf16 for
 *    their products (as FlashAttention-2 does). Streamed tiles of 64 rows go through two
 *    cp.async stages (the next tile loads while this one is multiplied) and are consumed NC
 *    columns at a time where registers require it (backward: 16). Warps skip columns none
 *    of their rows see; only chunks on the diagonal, at the window's edge or past T are
 *    masked. Grids are (heads, B, tiles), longest tile first over the whole grid.
 *    Forward: block per (b, h, 64·MT queries). Backward: D_i = dO_i·O_i first, then a
 *    dK/dV kernel (block per (b, kv head, 64·MT keys), looping over the group's query
 *    heads and the visible query tiles) and a dQ kernel (block per (b, h, 64·MT queries),
 *    looping over the visible key tiles). No atomics: results are deterministic.
 *  - scalar path (fp32 mode, other head dims up to 256, or unaligned): one warp per
 *    row, lanes over 32 keys at a time, fp32 throughout. Used by the parity tests
 *    and as the portable fallback; same backward split (D, dK/dV, dQ).
 * dh > 256 records HLAB_EUNSUPPORTED. Design and measurements: docs/CUDA_MIXERS.md.
 */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/common.cuh"

#define ATT_LOG2E 1.4426950408889634f
#define ATT_LN2 0.6931471805599453f
#define ATT_MAX_DH 256

/* ---- shared: D_i = dO_i · O_i (fp32), one warp per (row, head) ---------------------- */

template <typename T>
__global__ void attn_rowdot_kernel(float *Dv, const T *dout, const T *out, int T_, int Hq, int dh, int rows) {
    const int warp = (blockIdx.x * blockDim.x + threadIdx.x) >> 5, lane = threadIdx.x & 31;
    if (warp >= rows) return; /* rows = B*T*Hq, warp = n*Hq + h */
    const int h = warp % Hq, n = warp / Hq, b = n / T_, t = n % T_;
    const T *o = out + (size_t)n * Hq * dh + (size_t)h * dh, *d = dout + (size_t)n * Hq * dh + (size_t)h * dh;
    float s = 0.0f;
    for (int c = lane; c < dh; c += 32) s += ld(o[c]) * ld(d[c]);
    s = warp_sum(s);
    if (lane == 0) Dv[((size_t)b * Hq + h) * T_ + t] = s;
}

/* ===================================================================================
 * Scalar path
 * =================================================================================== */

#define SC_WARPS 4
#define SC_PER (ATT_MAX_DH / 32) /* dims per lane at most */

__device__ __forceinline__ int att_visible(int i, int j, int window) { return j <= i && (window == 0 || i - j < window); }

template <typename T>
__global__ void __launch_bounds__(SC_WARPS * 32)
    attn_fwd_scalar(T *out, float *lse, const T *qkv, int T_, int Hq, int Hkv, int dh, int window, float sl2) {
    __shared__ float qs[SC_WARPS][ATT_MAX_DH];
    const int w = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int i = blockIdx.x * SC_WARPS + w, h = blockIdx.y, b = blockIdx.z;
    if (i >= T_) return;
    const size_t W = (size_t)(Hq + 2 * Hkv) * dh;
    const int kvh = h / (Hq / Hkv);
    const T *base = qkv + (size_t)b * T_ * W;
    const T *kb = base + (size_t)(Hq + kvh) * dh, *vb = base + (size_t)(Hq + Hkv + kvh) * dh;
    for (int c = lane; c < dh; c += 32) qs[w][c] = ld(base[(size_t)i * W + (size_t)h * dh + c]) * sl2;
    __syncwarp();
    float o[SC_PER];
#pragma unroll
    for (int k = 0; k < SC_PER; k++) o[k] = 0.0f;
    float m = -INFINITY, l = 0.0f;
    const int j0 = window > 0 && i - window + 1 > 0 ? i - window + 1 : 0;
    for (int jb = j0; jb <= i; jb += 32) {
        const int j = jb + lane;
        float s = -INFINITY;
        if (j <= i) {
            const T *kr = kb + (size_t)j * W;
            float acc = 0.0f;
            for (int c = 0; c < dh; c++) acc += qs[w][c] * ld(kr[c]);
            s = acc;
        }
        const float mn = fmaxf(m, warp_max(s));
        const float corr = exp2f(m - mn), p = j <= i ? exp2f(s - mn) : 0.0f;
        l = l * corr + warp_sum(p);
        m = mn;
#pragma unroll
        for (int k = 0; k < SC_PER; k++) o[k] *= corr;
        const int cnt = min(32, i - jb + 1);
        for (int kk = 0; kk < cnt; kk++) {
            const float pk = __shfl_sync(0xffffffffu, p, kk);
            const T *vr = vb + (size_t)(jb + kk) * W;
#pragma unroll
            for (int k = 0; k < SC_PER; k++)
                if (lane + 32 * k < dh) o[k] += pk * ld(vr[lane + 32 * k]);
        }
    }
    const float inv = 1.0f / l;
    T *orow = out + ((size_t)b * T_ + i) * Hq * dh + (size_t)h * dh;
#pragma unroll
    for (int k = 0; k < SC_PER; k++)
        if (lane + 32 * k < dh) orow[lane + 32 * k] = st<T>(o[k] * inv);
    if (lane == 0) lse[((size_t)b * Hq + h) * T_ + i] = (m + log2f(l)) * ATT_LN2;
}

/* dQ_i = scale · Σ_j p_ij (dO_i·v_j − D_i) k_j ; one warp per (query, head) */
template <typename T>
__global__ void __launch_bounds__(SC_WARPS * 32)
    attn_dq_scalar(T *dqkv, const T *dout, const float *lse, const float *Dv, const T *qkv, int T_, int Hq, int Hkv,
                   int dh, int window, float scale) {
    __shared__ float qs[SC_WARPS][ATT_MAX_DH], ds_[SC_WARPS][ATT_MAX_DH];
    const int w = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int i = blockIdx.x * SC_WARPS + w, h = blockIdx.y, b = blockIdx.z;
    if (i >= T_) return;
    const size_t W = (size_t)(Hq + 2 * Hkv) * dh;
    const int kvh = h / (Hq / Hkv);
    const T *base = qkv + (size_t)b * T_ * W;
    const T *kb = base + (size_t)(Hq + kvh) * dh, *vb = base + (size_t)(Hq + Hkv + kvh) * dh;
    const T *dor = dout + ((size_t)b * T_ + i) * Hq * dh + (size_t)h * dh;
    for (int c = lane; c < dh; c += 32) {
        qs[w][c] = ld(base[(size_t)i * W + (size_t)h * dh + c]) * scale;
        ds_[w][c] = ld(dor[c]);
    }
    __syncwarp();
    const float L = lse[((size_t)b * Hq + h) * T_ + i], Di = Dv[((size_t)b * Hq + h) * T_ + i];
    float acc[SC_PER];
#pragma unroll
    for (int k = 0; k < SC_PER; k++) acc[k] = 0.0f;
    const int j0 = window > 0 && i - window + 1 > 0 ? i - window + 1 : 0;
    for (int jb = j0; jb <= i; jb += 32) {
        const int j = jb + lane;
        float dsv = 0.0f;
        if (j <= i) {
            const T *kr = kb + (size_t)j * W, *vr = vb + (size_t)j * W;
            float s = 0.0f, dp = 0.0f;
            for (int c = 0; c < dh; c++) {
                s += qs[w][c] * ld(kr[c]);
                dp += ds_[w][c] * ld(vr[c]);
            }
            const float p = expf(s - L);
            dsv = p * (dp - Di) * scale;
        }
        const int cnt = min(32, i - jb + 1);
        for (int kk = 0; kk < cnt; kk++) {
            const float d = __shfl_sync(0xffffffffu, dsv, kk);
            const T *kr = kb + (size_t)(jb + kk) * W;
#pragma unroll
            for (int k = 0; k < SC_PER; k++)
                if (lane + 32 * k < dh) acc[k] += d * ld(kr[lane + 32 * k]);
        }
    }
    T *dq = dqkv + ((size_t)b * T_ + i) * W + (size_t)h * dh;
#pragma unroll
    for (int k = 0; k < SC_PER; k++)
        if (lane + 32 * k < dh) dq[lane + 32 * k] = st<T>(acc[k]);
}

/* dK_j, dV_j summed over the group's query heads; one warp per (key, kv head) */
template <typename T>
__global__ void __launch_bounds__(SC_WARPS * 32)
    attn_dkdv_scalar(T *dqkv, const T *dout, const float *lse, const float *Dv, const T *qkv, int T_, int Hq, int Hkv,
                     int dh, int window, float scale) {
    __shared__ float ks[SC_WARPS][ATT_MAX_DH], vs[SC_WARPS][ATT_MAX_DH];
    const int w = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int j = blockIdx.x * SC_WARPS + w, g = blockIdx.y, b = blockIdx.z;
    if (j >= T_) return;
    const size_t W = (size_t)(Hq + 2 * Hkv) * dh, OW = (size_t)Hq * dh;
    const int group = Hq / Hkv;
    const T *base = qkv + (size_t)b * T_ * W;
    for (int c = lane; c < dh; c += 32) {
        ks[w][c] = ld(base[(size_t)j * W + (size_t)(Hq + g) * dh + c]) * scale;
        vs[w][c] = ld(base[(size_t)j * W + (size_t)(Hq + Hkv + g) * dh + c]);
    }
    __syncwarp();
    float dk[SC_PER], dv[SC_PER];
#pragma unroll
    for (int k = 0; k < SC_PER; k++) dk[k] = dv[k] = 0.0f;
    const int iend = window > 0 ? min(T_, j + window) : T_; /* exclusive */
    for (int h = g * group; h < (g + 1) * group; h++) {
        const float *Lh = lse + ((size_t)b * Hq + h) * T_, *Dh = Dv + ((size_t)b * Hq + h) * T_;
        for (int ib = j; ib < iend; ib += 32) {
            const int i = ib + lane;
            float p = 0.0f, dsv = 0.0f;
            if (i < iend) {
                const T *qr = base + (size_t)i * W + (size_t)h * dh;
                const T *dor = dout + ((size_t)b * T_ + i) * OW + (size_t)h * dh;
                float s = 0.0f, dp = 0.0f;
                for (int c = 0; c < dh; c++) {
                    s += ks[w][c] * ld(qr[c]);
                    dp += vs[w][c] * ld(dor[c]);
                }
                p = expf(s - Lh[i]);
                dsv = p * (dp - Dh[i]) * scale;
            }
            const int cnt = min(32, iend - ib);
            for (int kk = 0; kk < cnt; kk++) {
                const float pk = __shfl_sync(0xffffffffu, p, kk), dk_ = __shfl_sync(0xffffffffu, dsv, kk);
                const T *qr = base + (size_t)(ib + kk) * W + (size_t)h * dh;
                const T *dor = dout + ((size_t)b * T_ + ib + kk) * OW + (size_t)h * dh;
#pragma unroll
                for (int k = 0; k < SC_PER; k++)
                    if (lane + 32 * k < dh) {
                        dv[k] += pk * ld(dor[lane + 32 * k]);
                        dk[k] += dk_ * ld(qr[lane + 32 * k]);
                    }
            }
        }
    }
    T *drow = dqkv + ((size_t)b * T_ + j) * W;
#pragma unroll
    for (int k = 0; k < SC_PER; k++)
        if (lane + 32 * k < dh) {
            drow[(size_t)(Hq + g) * dh + lane + 32 * k] = st<T>(dk[k]);
            drow[(size_t)(Hq + Hkv + g) * dh + lane + 32 * k] = st<T>(dv[k]);
        }
}


/* ===================================================================================
 * Tensor-core path (bf16, dh 64 / 128)
 * =================================================================================== */

#define TC_TILE 64 /* rows of a streamed Q / K / V / dO tile */
#define TC_THREADS 128

#ifndef ATT_EMU /* tests/cuda/emu/attention.cpp supplies host emulations of the PTX helpers */
__device__ __forceinline__ void mma16816(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&v);
}
__device__ __forceinline__ uint32_t smem_u32(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }
/* cp.async: issued now, complete after cp_wait, so that the next tile's loads overlap this
 * tile's math; bytes = 0 zero-fills */
__device__ __forceinline__ void cp_async16_u32(uint32_t smem, const void *gmem, uint32_t bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem), "l"(gmem), "r"(bytes));
}
__device__ __forceinline__ void cp_async4(float *smem, const float *gmem, uint32_t bytes) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(smem_u32(smem)), "l"(gmem), "r"(bytes));
}
__device__ __forceinline__ void cp_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> __device__ __forceinline__ void cp_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }
/* ldmatrix on 32-bit shared addresses: one per-lane base register plus compile-time
 * offsets, instead of a 64-bit generic pointer per fragment (registers). */
__device__ __forceinline__ void ldsm4(uint32_t r[4], uint32_t a) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
}
__device__ __forceinline__ void ldsm4_t(uint32_t r[4], uint32_t a) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
}
#endif

/* ROWS rows × DH columns into a padded smem tile through cp.async, rows >= T zero-filled
 * (masked scores times garbage would still be NaN). */
template <int DH, int ROWS>
__device__ __forceinline__ void tc_load_async(hk_bf16 *s, const hk_bf16 *g, size_t ld, int r0, int T_) {
    constexpr int LD = DH + 8, VPR = DH / 8, STEP = TC_THREADS / VPR; /* rows per pass */
    static_assert((ROWS * VPR) % TC_THREADS == 0, "whole passes");
    const int rt = threadIdx.x / VPR, c = (threadIdx.x % VPR) * 8;
    const hk_bf16 *gr = g + (size_t)(r0 + rt) * ld + c;
    const uint32_t sr = smem_u32(s + rt * LD + c);
#pragma unroll
    for (int k = 0; k < ROWS / STEP; k++) {
        const bool ok = r0 + rt + k * STEP < T_;
        cp_async16_u32(sr + (uint32_t)(k * STEP * LD * 2), ok ? gr + (size_t)k * STEP * ld : g, ok ? 16u : 0u);
    }
}

/* A operand of MT m-tiles (rows row0 + 16·mt) × DH into registers. */
template <int DH, int MT>
__device__ __forceinline__ void tc_load_afrag(uint32_t f[MT][DH / 16][4], const hk_bf16 *tile, int row0, int lane) {
    constexpr int LD = DH + 8;
    const int mid = lane >> 3, r = lane & 7;
    const uint32_t a0 = smem_u32(tile + (row0 + (mid & 1) * 8 + r) * LD + (mid >> 1) * 8);
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int kk = 0; kk < DH / 16; kk++) ldsm4(f[mt][kk], a0 + (uint32_t)(mt * 16 * LD + kk * 16) * 2u);
}

/* acc[MT][NC/8] += A[MT·16 × DH] · Bt[NC × DH]ᵀ  (Bt rows = the NC n-columns, as stored;
 * bt = smem_u32(Bt)) */
template <int DH, int MT, int NC>
__device__ __forceinline__ void tc_mm_abt(float acc[MT][NC / 8][4], const uint32_t a[MT][DH / 16][4], uint32_t bt,
                                          int lane) {
    constexpr int LD = DH + 8;
    const uint32_t b0 = bt + (uint32_t)((lane & 7) * LD + (lane >> 3) * 8) * 2u;
#pragma unroll
    for (int nt = 0; nt < NC / 8; nt++)
#pragma unroll
        for (int kp = 0; kp < DH / 32; kp++) {
            uint32_t r[4];
            ldsm4(r, b0 + (uint32_t)(nt * 8 * LD + kp * 32) * 2u);
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
                mma16816(acc[mt][nt], a[mt][2 * kp], r[0], r[1]);
                mma16816(acc[mt][nt], a[mt][2 * kp + 1], r[2], r[3]);
            }
        }
}

/* acc[MT][DH/8] += P[MT·16 × NC] (C fragments, rounded to bf16) · Bm[NC × DH] (rows = k;
 * bm = smem_u32(Bm)) */
template <int DH, int MT, int NC>
__device__ __forceinline__ void tc_mm_pb(float acc[MT][DH / 8][4], const float p[MT][NC / 8][4], uint32_t bm,
                                         int lane) {
    constexpr int LD = DH + 8;
    const int mid = lane >> 3, r = lane & 7;
    const uint32_t b0 = bm + (uint32_t)(((mid & 1) * 8 + r) * LD + (mid >> 1) * 8) * 2u;
#pragma unroll
    for (int kk = 0; kk < NC / 16; kk++) {
        uint32_t a[MT][4];
#pragma unroll
        for (int mt = 0; mt < MT; mt++) {
            a[mt][0] = pack_bf16(p[mt][2 * kk][0], p[mt][2 * kk][1]);
            a[mt][1] = pack_bf16(p[mt][2 * kk][2], p[mt][2 * kk][3]);
            a[mt][2] = pack_bf16(p[mt][2 * kk + 1][0], p[mt][2 * kk + 1][1]);
            a[mt][3] = pack_bf16(p[mt][2 * kk + 1][2], p[mt][2 * kk + 1][3]);
        }
#pragma unroll
        for (int np = 0; np < DH / 16; np++) {
            uint32_t b[4];
            ldsm4_t(b, b0 + (uint32_t)(kk * 16 * LD + np * 16) * 2u);
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
                mma16816(acc[mt][2 * np], a[mt], b[0], b[1]);
                mma16816(acc[mt][2 * np + 1], a[mt], b[2], b[3]);
            }
        }
    }
}

/* Key j visible from query i < T, without short-circuit branches (evaluated per element). */
__device__ __forceinline__ bool tc_visible(int i, int j, int T_, int window) {
    return (i < T_) & (j <= i) & ((window == 0) | (i - j < window));
}

template <int MT, int N> __device__ __forceinline__ void tc_zero(float a[MT][N][4]) {
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int n = 0; n < N; n++) a[mt][n][0] = a[mt][n][1] = a[mt][n][2] = a[mt][n][3] = 0.0f;
}

/* Block coordinates of the (heads, B, tiles) grids: every head's longest tile is dispatched
 * before any head's next one, longest-first over the whole grid (simulated for 4×8192: within
 * 1 % of an even split; a (tiles, heads, B) grid left the last heads' long tiles to start late
 * and end alone, 29 % after an even split in dK/dV). rank 0 = most work. */
__device__ __forceinline__ void tc_coords(int &rank, int &ntiles, int &h, int &b) {
    rank = blockIdx.z, ntiles = gridDim.z, h = blockIdx.x, b = blockIdx.y;
}

/* Forward: block per (b, h, 64·MT queries), 64-key tiles, one online-softmax step per tile;
 * warp w owns rows q0 + 16·MT·w .. +16·MT. Longest blocks (last queries) first. The min-blocks
 * hint 2 changes no occupancy (255 registers already fit 2 blocks of 128 threads) but ptxas
 * then allocates without the 4-byte spill it makes at dh 64 without it. (32-key softmax chunks
 * at 168 registers and 3 blocks per SM were slower on the H100: docs/CUDA_MIXERS.md.) */
template <int DH, int MT>
__global__ void __launch_bounds__(TC_THREADS, 2)
    attn_fwd_tc(hk_bf16 *out, float *lse, const hk_bf16 *qkv, int T_, int Hq, int Hkv, int window, float sl2) {
    extern __shared__ __align__(16) unsigned char smem_raw[];
    constexpr int LD = DH + 8, BM = 64 * MT, WR = 16 * MT;
    hk_bf16 *Qs = (hk_bf16 *)smem_raw, *Kb = Qs + BM * LD, *Vb = Kb + 2 * TC_TILE * LD; /* K, V: 2 stages */
    int rank, ntiles, h, b;
    tc_coords(rank, ntiles, h, b);
    const int qt = ntiles - 1 - rank, q0 = qt * BM;
    const int w = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t4 = lane & 3;
    const int wr0 = q0 + w * WR; /* the warp's first query */
    const size_t W = (size_t)(Hq + 2 * Hkv) * DH;
    const int kvh = h / (Hq / Hkv);
    const hk_bf16 *base = qkv + (size_t)b * T_ * W;
    const hk_bf16 *kg = base + (size_t)(Hq + kvh) * DH, *vg = base + (size_t)(Hq + Hkv + kvh) * DH;
    uint32_t qf[MT][DH / 16][4];
    float o[MT][DH / 8][4];
    tc_zero<MT, DH / 8>(o);
    float m[MT][2], l[MT][2]; /* m in scaled (log2) units */
#pragma unroll
    for (int mt = 0; mt < MT; mt++) m[mt][0] = m[mt][1] = -INFINITY, l[mt][0] = l[mt][1] = 0.0f;
    const int kstart = window > 0 && q0 - window + 1 > 0 ? ((q0 - window + 1) / TC_TILE) * TC_TILE : 0;
    const int kend = min(T_, q0 + BM);
    tc_load_async<DH, BM>(Qs, base + (size_t)h * DH, W, q0, T_);
    tc_load_async<DH, TC_TILE>(Kb, kg, W, kstart, T_);
    tc_load_async<DH, TC_TILE>(Vb, vg, W, kstart, T_);
    cp_commit();
    for (int k0 = kstart, it = 0; k0 < kend; k0 += TC_TILE, it++) {
        const hk_bf16 *Ks = Kb + (it & 1) * TC_TILE * LD, *Vs = Vb + (it & 1) * TC_TILE * LD;
        if (k0 + TC_TILE < kend) { /* prefetch the next tile into the other stage */
            tc_load_async<DH, TC_TILE>(Kb + ((it + 1) & 1) * TC_TILE * LD, kg, W, k0 + TC_TILE, T_);
            tc_load_async<DH, TC_TILE>(Vb + ((it + 1) & 1) * TC_TILE * LD, vg, W, k0 + TC_TILE, T_);
        }
        cp_commit();
        cp_wait<1>();
        __syncthreads();
        if (it == 0) tc_load_afrag<DH, MT>(qf, Qs, w * WR, lane);
        /* the warp sees none of these keys: all after its last row, or all out of its window */
        const bool none = k0 > wr0 + WR - 1 || (window > 0 && wr0 - (k0 + TC_TILE - 1) >= window);
        if (!none) {
            float s[MT][TC_TILE / 8][4];
            tc_zero<MT, TC_TILE / 8>(s);
            tc_mm_abt<DH, MT, TC_TILE>(s, qf, smem_u32(Ks), lane);
            /* only tiles on the diagonal, at the window's edge or past T need the mask */
            const bool masked = k0 + TC_TILE - 1 > wr0 || k0 + TC_TILE > T_ ||
                                (window > 0 && wr0 + WR - 1 - k0 >= window);
            if (masked) { /* key kj < T visible from query qi (rows qi >= T are never stored) */
#pragma unroll
                for (int mt = 0; mt < MT; mt++)
#pragma unroll
                    for (int nt = 0; nt < TC_TILE / 8; nt++)
#pragma unroll
                        for (int e = 0; e < 4; e++) {
                            const int qi = wr0 + mt * 16 + g + (e >> 1) * 8, kj = k0 + nt * 8 + t4 * 2 + (e & 1);
                            if (!tc_visible(kj, kj, T_, 0) | !tc_visible(qi, kj, INT_MAX, window))
                                s[mt][nt][e] = -INFINITY;
                        }
            }
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
                float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
                for (int nt = 0; nt < TC_TILE / 8; nt++)
#pragma unroll
                    for (int e = 0; e < 4; e++) mx[e >> 1] = fmaxf(mx[e >> 1], s[mt][nt][e]);
                float ref[2], corr[2];
#pragma unroll
                for (int r = 0; r < 2; r++) {
                    mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
                    mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
                    const float mn = fmaxf(m[mt][r], mx[r] * sl2); /* sl2 > 0: max commutes with it */
                    ref[r] = mn == -INFINITY ? 0.0f : mn;
                    corr[r] = exp2f(m[mt][r] - ref[r]);
                    m[mt][r] = mn;
                    l[mt][r] *= corr[r];
                }
#pragma unroll
                for (int nt = 0; nt < TC_TILE / 8; nt++)
#pragma unroll
                    for (int e = 0; e < 4; e++) {
                        const float p = exp2f(fmaf(s[mt][nt][e], sl2, -ref[e >> 1]));
                        s[mt][nt][e] = p;
                        l[mt][e >> 1] += p;
                    }
#pragma unroll
                for (int k = 0; k < DH / 8; k++) {
                    o[mt][k][0] *= corr[0];
                    o[mt][k][1] *= corr[0];
                    o[mt][k][2] *= corr[1];
                    o[mt][k][3] *= corr[1];
                }
            }
            tc_mm_pb<DH, MT, TC_TILE>(o, s, smem_u32(Vs), lane);
        }
        __syncthreads(); /* this stage is refilled by the next iteration's prefetch */
    }
    const size_t OW = (size_t)Hq * DH;
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int r = 0; r < 2; r++) {
            float lr = l[mt][r];
            lr += __shfl_xor_sync(0xffffffffu, lr, 1);
            lr += __shfl_xor_sync(0xffffffffu, lr, 2);
            const int qi = wr0 + mt * 16 + g + r * 8;
            if (qi >= T_) continue;
            const float inv = 1.0f / lr;
            hk_bf16 *orow = out + ((size_t)b * T_ + qi) * OW + (size_t)h * DH;
#pragma unroll
            for (int k = 0; k < DH / 8; k++)
                *reinterpret_cast<uint32_t *>(orow + k * 8 + t4 * 2) =
                    pack_bf16(o[mt][k][2 * r] * inv, o[mt][k][2 * r + 1] * inv);
            if (t4 == 0) lse[((size_t)b * Hq + h) * T_ + qi] = (m[mt][r] + log2f(lr)) * ATT_LN2;
        }
}

/* dK, dV for 64·MT keys of kv head gk, summed over the group's query heads, in the
 * transposed orientation (keys = mma rows, warp w owns keys k0 + 16·MT·w ..). Q / dO tiles
 * of 64 queries stream through two stages and are consumed NC columns at a time. */
template <int DH, int MT, int NC>
__global__ void __launch_bounds__(TC_THREADS)
    attn_dkdv_tc(hk_bf16 *dqkv, const hk_bf16 *dout, const float *lse, const float *Dv, const hk_bf16 *qkv, int T_,
                  int Hq, int Hkv, int window, float sl2, float scale) {
    extern __shared__ __align__(16) unsigned char smem_raw[];
    constexpr int LD = DH + 8, BK = 64 * MT, WR = 16 * MT;
    static_assert(BK <= 2 * TC_TILE, "K and V pass through the two Q / dO stages");
    /* two stages of (Q tile, dO tile, lse row, D row); K and V pass through the stages first */
    hk_bf16 *Qb = (hk_bf16 *)smem_raw, *Ob = Qb + 2 * TC_TILE * LD;
    float *Lb = (float *)(Ob + 2 * TC_TILE * LD), *Db = Lb + 2 * TC_TILE;
    int kt, ntiles, gk, b; /* low keys: most work, first */
    tc_coords(kt, ntiles, gk, b);
    const int k0 = kt * BK;
    const int w = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t4 = lane & 3;
    const int wk0 = k0 + w * WR; /* the warp's first key */
    const size_t W = (size_t)(Hq + 2 * Hkv) * DH, OW = (size_t)Hq * DH;
    const int group = Hq / Hkv;
    const hk_bf16 *base = qkv + (size_t)b * T_ * W;
    tc_load_async<DH, BK>(Qb, base + (size_t)(Hq + gk) * DH, W, k0, T_);
    tc_load_async<DH, BK>(Ob, base + (size_t)(Hq + Hkv + gk) * DH, W, k0, T_);
    cp_commit();
    cp_wait<0>();
    __syncthreads();
    uint32_t kf[MT][DH / 16][4], vf[MT][DH / 16][4];
    tc_load_afrag<DH, MT>(kf, Qb, w * WR, lane);
    tc_load_afrag<DH, MT>(vf, Ob, w * WR, lane);
    __syncthreads();
    float dk[MT][DH / 8][4], dv[MT][DH / 8][4];
    tc_zero<MT, DH / 8>(dk);
    tc_zero<MT, DH / 8>(dv);
    const int qend = window > 0 ? min(T_, k0 + BK - 1 + window) : T_;
    const int nq = (qend - k0 + TC_TILE - 1) / TC_TILE, steps = nq * group;
    /* step = (query head, query tile), flattened so that the prefetch crosses heads */
    auto issue = [&](int step, int stage) {
        const int h = gk * group + step / nq, q0 = k0 + (step % nq) * TC_TILE;
        tc_load_async<DH, TC_TILE>(Qb + stage * TC_TILE * LD, base + (size_t)h * DH, W, q0, T_);
        tc_load_async<DH, TC_TILE>(Ob + stage * TC_TILE * LD, dout + (size_t)b * T_ * OW + (size_t)h * DH, OW, q0, T_);
        if (threadIdx.x < TC_TILE) {
            const int i = q0 + threadIdx.x;
            const size_t li = ((size_t)b * Hq + h) * T_ + i;
            const bool ok = i < T_; /* asynchronous too: a plain load here stalls two warps per step */
            cp_async4(Lb + stage * TC_TILE + threadIdx.x, ok ? lse + li : lse, ok ? 4u : 0u);
            cp_async4(Db + stage * TC_TILE + threadIdx.x, ok ? Dv + li : Dv, ok ? 4u : 0u);
        }
    };
    if (steps > 0) issue(0, 0);
    cp_commit();
    for (int step = 0; step < steps; step++) {
        const int stage = step & 1, q0 = k0 + (step % nq) * TC_TILE;
        if (step + 1 < steps) issue(step + 1, stage ^ 1);
        cp_commit();
        cp_wait<1>();
        __syncthreads();
        const hk_bf16 *Qs = Qb + stage * TC_TILE * LD, *Os = Ob + stage * TC_TILE * LD;
        const float *Ls = Lb + stage * TC_TILE, *Ds = Db + stage * TC_TILE;
#pragma unroll 1
        for (int c0 = 0; c0 < TC_TILE; c0 += NC) {
            const int i0 = q0 + c0; /* first query of the chunk */
            /* no visible pair: every query before the warp's first key, or past its window */
            if (i0 + NC - 1 < wk0 || (window > 0 && i0 - (wk0 + WR - 1) >= window)) continue;
            float s[MT][NC / 8][4], dp[MT][NC / 8][4];
            tc_zero<MT, NC / 8>(s);
            tc_zero<MT, NC / 8>(dp);
            tc_mm_abt<DH, MT, NC>(s, kf, smem_u32(Qs + c0 * LD), lane);
            tc_mm_abt<DH, MT, NC>(dp, vf, smem_u32(Os + c0 * LD), lane);
            const bool masked = i0 < wk0 + WR - 1 || i0 + NC > T_ || (window > 0 && i0 + NC - 1 - wk0 >= window);
            if (masked) /* invisible: s = −∞ gives p = 0 and dS = 0 below */
#pragma unroll
                for (int mt = 0; mt < MT; mt++)
#pragma unroll
                    for (int nt = 0; nt < NC / 8; nt++)
#pragma unroll
                        for (int e = 0; e < 4; e++) {
                            const int i = i0 + nt * 8 + t4 * 2 + (e & 1), kj = wk0 + mt * 16 + g + 8 * (e >> 1);
                            if (!tc_visible(i, kj, T_, window)) s[mt][nt][e] = -INFINITY;
                        }
#pragma unroll
            for (int nt = 0; nt < NC / 8; nt++)
#pragma unroll
                for (int e1 = 0; e1 < 2; e1++) {
                    const int col = c0 + nt * 8 + t4 * 2 + e1;
                    const float Lc = Ls[col] * ATT_LOG2E, Dc = Ds[col]; /* lse rows are copied as stored */
#pragma unroll
                    for (int mt = 0; mt < MT; mt++)
#pragma unroll
                        for (int r = 0; r < 2; r++) {
                            const int e = 2 * r + e1;
                            const float p = exp2f(fmaf(s[mt][nt][e], sl2, -Lc));
                            s[mt][nt][e] = p;
                            dp[mt][nt][e] = p * (dp[mt][nt][e] - Dc);
                        }
                }
            tc_mm_pb<DH, MT, NC>(dv, s, smem_u32(Os + c0 * LD), lane);
            tc_mm_pb<DH, MT, NC>(dk, dp, smem_u32(Qs + c0 * LD), lane);
        }
        __syncthreads();
    }
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int r = 0; r < 2; r++) {
            const int kj = wk0 + mt * 16 + g + 8 * r;
            if (kj >= T_) continue;
            hk_bf16 *drow = dqkv + ((size_t)b * T_ + kj) * W;
#pragma unroll
            for (int k = 0; k < DH / 8; k++) {
                *reinterpret_cast<uint32_t *>(drow + (size_t)(Hq + gk) * DH + k * 8 + t4 * 2) =
                    pack_bf16(dk[mt][k][2 * r] * scale, dk[mt][k][2 * r + 1] * scale);
                *reinterpret_cast<uint32_t *>(drow + (size_t)(Hq + Hkv + gk) * DH + k * 8 + t4 * 2) =
                    pack_bf16(dv[mt][k][2 * r], dv[mt][k][2 * r + 1]);
            }
        }
}

/* dQ for 64·MT queries of head h (warp w owns queries q0 + 16·MT·w ..): dQ = scale · Σ dS K,
 * K / V tiles of 64 keys in two stages, consumed NC keys at a time. */
template <int DH, int MT, int NC>
__global__ void __launch_bounds__(TC_THREADS)
    attn_dq_tc(hk_bf16 *dqkv, const hk_bf16 *dout, const float *lse, const float *Dv, const hk_bf16 *qkv, int T_,
                int Hq, int Hkv, int window, float sl2, float scale) {
    extern __shared__ __align__(16) unsigned char smem_raw[];
    constexpr int LD = DH + 8, BM = 64 * MT, WR = 16 * MT;
    hk_bf16 *Qs = (hk_bf16 *)smem_raw, *Os = Qs + BM * LD, *Kb = Os + BM * LD, *Vb = Kb + 2 * TC_TILE * LD;
    int rank, ntiles, h, b;
    tc_coords(rank, ntiles, h, b);
    const int qt = ntiles - 1 - rank, q0 = qt * BM;
    const int w = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t4 = lane & 3;
    const int wr0 = q0 + w * WR;
    const size_t W = (size_t)(Hq + 2 * Hkv) * DH, OW = (size_t)Hq * DH;
    const int kvh = h / (Hq / Hkv);
    const hk_bf16 *base = qkv + (size_t)b * T_ * W;
    const hk_bf16 *kg = base + (size_t)(Hq + kvh) * DH, *vg = base + (size_t)(Hq + Hkv + kvh) * DH;
    const int kstart = window > 0 && q0 - window + 1 > 0 ? ((q0 - window + 1) / TC_TILE) * TC_TILE : 0;
    const int kend = min(T_, q0 + BM);
    tc_load_async<DH, BM>(Qs, base + (size_t)h * DH, W, q0, T_);
    tc_load_async<DH, BM>(Os, dout + (size_t)b * T_ * OW + (size_t)h * DH, OW, q0, T_);
    tc_load_async<DH, TC_TILE>(Kb, kg, W, kstart, T_);
    tc_load_async<DH, TC_TILE>(Vb, vg, W, kstart, T_);
    cp_commit();
    uint32_t qf[MT][DH / 16][4], of[MT][DH / 16][4];
    float L[MT][2], Dr[MT][2];
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int r = 0; r < 2; r++) {
            const int qi = wr0 + mt * 16 + g + 8 * r;
            const size_t li = ((size_t)b * Hq + h) * T_ + qi;
            L[mt][r] = qi < T_ ? lse[li] * ATT_LOG2E : 0.0f;
            Dr[mt][r] = qi < T_ ? Dv[li] : 0.0f;
        }
    float dq[MT][DH / 8][4];
    tc_zero<MT, DH / 8>(dq);
    for (int k0 = kstart, it = 0; k0 < kend; k0 += TC_TILE, it++) {
        const hk_bf16 *Ks = Kb + (it & 1) * TC_TILE * LD, *Vs = Vb + (it & 1) * TC_TILE * LD;
        if (k0 + TC_TILE < kend) {
            tc_load_async<DH, TC_TILE>(Kb + ((it + 1) & 1) * TC_TILE * LD, kg, W, k0 + TC_TILE, T_);
            tc_load_async<DH, TC_TILE>(Vb + ((it + 1) & 1) * TC_TILE * LD, vg, W, k0 + TC_TILE, T_);
        }
        cp_commit();
        cp_wait<1>();
        __syncthreads();
        if (it == 0) {
            tc_load_afrag<DH, MT>(qf, Qs, w * WR, lane);
            tc_load_afrag<DH, MT>(of, Os, w * WR, lane);
        }
#pragma unroll 1
        for (int c0 = 0; c0 < TC_TILE; c0 += NC) {
            const int j0 = k0 + c0; /* first key of the chunk */
            if (j0 > wr0 + WR - 1 || (window > 0 && wr0 - (j0 + NC - 1) >= window)) continue;
            float s[MT][NC / 8][4], dp[MT][NC / 8][4];
            tc_zero<MT, NC / 8>(s);
            tc_zero<MT, NC / 8>(dp);
            tc_mm_abt<DH, MT, NC>(s, qf, smem_u32(Ks + c0 * LD), lane);
            tc_mm_abt<DH, MT, NC>(dp, of, smem_u32(Vs + c0 * LD), lane);
            const bool masked = j0 + NC - 1 > wr0 || j0 + NC > T_ || (window > 0 && wr0 + WR - 1 - j0 >= window);
            if (masked) /* invisible: s = −∞ gives p = 0 and dS = 0 below (rows qi >= T are never stored) */
#pragma unroll
                for (int mt = 0; mt < MT; mt++)
#pragma unroll
                    for (int nt = 0; nt < NC / 8; nt++)
#pragma unroll
                        for (int e = 0; e < 4; e++) {
                            const int qi = wr0 + mt * 16 + g + 8 * (e >> 1), kj = j0 + nt * 8 + t4 * 2 + (e & 1);
                            if (!tc_visible(kj, kj, T_, 0) | !tc_visible(qi, kj, INT_MAX, window))
                                s[mt][nt][e] = -INFINITY;
                        }
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int nt = 0; nt < NC / 8; nt++)
#pragma unroll
                    for (int e = 0; e < 4; e++) {
                        const int r = e >> 1;
                        const float p = exp2f(fmaf(s[mt][nt][e], sl2, -L[mt][r]));
                        dp[mt][nt][e] = p * (dp[mt][nt][e] - Dr[mt][r]);
                    }
            tc_mm_pb<DH, MT, NC>(dq, dp, smem_u32(Ks + c0 * LD), lane);
        }
        __syncthreads();
    }
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int r = 0; r < 2; r++) {
            const int qi = wr0 + mt * 16 + g + 8 * r;
            if (qi >= T_) continue;
            hk_bf16 *drow = dqkv + ((size_t)b * T_ + qi) * W + (size_t)h * DH;
#pragma unroll
            for (int k = 0; k < DH / 8; k++)
                *reinterpret_cast<uint32_t *>(drow + k * 8 + t4 * 2) =
                    pack_bf16(dq[mt][k][2 * r] * scale, dq[mt][k][2 * r + 1] * scale);
        }
}

/* Shapes per head dim: MT m-tiles per warp, NC columns per backward chunk (a smaller NC costs
 * no shared-memory traffic, each B fragment still feeds MT mmas; it only saves registers).
 * dh 128 has MT = 1: two m-tiles would not fit the O / dK / dV accumulators. 128 threads per
 * block: up to 255 registers still fit 2 blocks per SM (and the dh 128 forward's 87 KB of
 * shared memory allows no more). Registers (ptxas): see docs/CUDA_MIXERS.md. */
template <int DH> struct tc_cfg;
template <> struct tc_cfg<64> {
    static constexpr int fwd_mt = 2, dkdv_mt = 2, dkdv_nc = 16, dq_mt = 2, dq_nc = 16;
};
template <> struct tc_cfg<128> {
    static constexpr int fwd_mt = 1, dkdv_mt = 1, dkdv_nc = 16, dq_mt = 1, dq_nc = 16;
};

#ifndef ATT_EMU
#include "kernels/cuda/sm90a/attention_sm90a.h"

/* ===================================================================================
 * Host side
 * =================================================================================== */

static int attn_dims_ok(hk_backend *hk, const char *op, hk_attn_dims d) {
    if (d.B <= 0 || d.T <= 0 || d.Hq <= 0 || d.Hkv <= 0 || d.dh <= 0 || d.window < 0 || d.Hq % d.Hkv ||
        d.Hq > 65535 || d.B > 65535) {
        hk_cuda_fail(hk, HLAB_EINVAL,
                     "%s: bad dims B=%d T=%d Hq=%d Hkv=%d dh=%d window=%d (expected positive sizes, Hq %% Hkv == 0, "
                     "window >= 0, B and Hq <= 65535)",
                     op, d.B, d.T, d.Hq, d.Hkv, d.dh, d.window);
        return 0;
    }
    if (d.dh > ATT_MAX_DH) {
        hk_cuda_fail(hk, HLAB_EUNSUPPORTED, "%s: head dim %d is not supported on CUDA (at most %d)", op, d.dh,
                     ATT_MAX_DH);
        return 0;
    }
    return 1;
}

/* Tensor cores for bf16 with dh 64 or 128 and 16-byte aligned rows. */
static int attn_use_tc(hk_backend *hk, hk_attn_dims d, const void *p0, const void *p1, const void *p2, const void *p3) {
    return hk->act == HK_BF16 && (d.dh == 64 || d.dh == 128) && hk_vec_ok(2, 8, p0, p1, p2, p3);
}

template <typename K> static int tc_prepare(hk_backend *hk, K kernel, size_t smem, const char *what) {
    return !hk_cuda_record(hk, cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem),
                           what);
}

/* Timing hook for tests/cuda/test_cuda_bench_mixers.c: HLAB_ATTN_BWD_PART=rowdot, dkdv or dq
 * makes attention_bwd launch only that kernel (the others' outputs are left as they are).
 * Read once per attention_bwd call (one getenv next to three launches) so that the bench can
 * switch it between calls. */
static int attn_bwd_parts(void) {
    const char *e = getenv("HLAB_ATTN_BWD_PART");
    if (!e) return ATT_PART_ALL;
    if (strcmp(e, "rowdot") == 0) return ATT_PART_ROWDOT;
    if (strcmp(e, "dkdv") == 0) return ATT_PART_DKDV;
    if (strcmp(e, "dq") == 0) return ATT_PART_DQ;
    return ATT_PART_ALL;
}

/* (heads, B, tiles): see tc_coords */
static dim3 tc_grid(int tiles, int heads, int B) { return dim3(heads, B, tiles); }

template <int DH> static void attn_fwd_tc_launch(hk_backend *hk, void *out, void *lse, const void *qkv, hk_attn_dims d) {
    constexpr int MT = tc_cfg<DH>::fwd_mt, BM = 64 * MT;
    const size_t smem = (size_t)(BM + 4 * TC_TILE) * (DH + 8) * sizeof(hk_bf16);
    if (!tc_prepare(hk, attn_fwd_tc<DH, MT>, smem, "attention_fwd smem")) return;
    attn_fwd_tc<DH, MT><<<tc_grid((d.T + BM - 1) / BM, d.Hq, d.B), TC_THREADS, smem, hk_cuda_stream(hk)>>>(
        (hk_bf16 *)out, (float *)lse, (const hk_bf16 *)qkv, d.T, d.Hq, d.Hkv, d.window, ATT_LOG2E / sqrtf((float)DH));
}

template <int DH>
static void attn_bwd_tc_launch(hk_backend *hk, void *dqkv, const void *dout, const void *lse, const float *Dv,
                               const void *qkv, hk_attn_dims d, int parts) {
    typedef tc_cfg<DH> C;
    const float scale = 1.0f / sqrtf((float)DH), sl2 = ATT_LOG2E * scale;
    constexpr int BK = 64 * C::dkdv_mt, BQ = 64 * C::dq_mt;
    /* dK/dV: two stages of (Q tile, dO tile, lse row, D row); dQ: Q, dO blocks, two K / V stages */
    const size_t smem_kv = (size_t)4 * TC_TILE * (DH + 8) * sizeof(hk_bf16) + 4 * TC_TILE * sizeof(float);
    const size_t smem_q = (size_t)(2 * BQ + 4 * TC_TILE) * (DH + 8) * sizeof(hk_bf16);
    auto kdkdv = attn_dkdv_tc<DH, C::dkdv_mt, C::dkdv_nc>;
    auto kdq = attn_dq_tc<DH, C::dq_mt, C::dq_nc>;
    if (parts & ATT_PART_DKDV) {
        if (!tc_prepare(hk, kdkdv, smem_kv, "attention_bwd smem")) return;
        kdkdv<<<tc_grid((d.T + BK - 1) / BK, d.Hkv, d.B), TC_THREADS, smem_kv, hk_cuda_stream(hk)>>>(
            (hk_bf16 *)dqkv, (const hk_bf16 *)dout, (const float *)lse, Dv, (const hk_bf16 *)qkv, d.T, d.Hq, d.Hkv,
            d.window, sl2, scale);
        if (hk_cuda_check_launch(hk, "attention_bwd dk dv")) return;
    }
    if (parts & ATT_PART_DQ) {
        if (!tc_prepare(hk, kdq, smem_q, "attention_bwd smem")) return;
        kdq<<<tc_grid((d.T + BQ - 1) / BQ, d.Hq, d.B), TC_THREADS, smem_q, hk_cuda_stream(hk)>>>(
            (hk_bf16 *)dqkv, (const hk_bf16 *)dout, (const float *)lse, Dv, (const hk_bf16 *)qkv, d.T, d.Hq, d.Hkv,
            d.window, sl2, scale);
    }
}

void hk_cuda_attention_fwd(hk_backend *hk, void *out, void *lse, const void *qkv, hk_attn_dims d) {
    if (!attn_dims_ok(hk, "attention_fwd", d)) return;
    if (attn_use_tc(hk, d, out, qkv, NULL, NULL)) {
        if (hk_cuda_attn_fwd_sm90a(hk, out, lse, qkv, d)) { /* Hopper: the wgmma kernels */
            hk_cuda_check_launch(hk, "attention_fwd");
            return;
        }
        if (d.dh == 64) attn_fwd_tc_launch<64>(hk, out, lse, qkv, d);
        else attn_fwd_tc_launch<128>(hk, out, lse, qkv, d);
    } else {
        dim3 grid((d.T + SC_WARPS - 1) / SC_WARPS, d.Hq, d.B);
        const float sl2 = ATT_LOG2E / sqrtf((float)d.dh);
        HK_DISPATCH_ACT(hk, A, {
            attn_fwd_scalar<A><<<grid, SC_WARPS * 32, 0, hk_cuda_stream(hk)>>>(
                (A *)out, (float *)lse, (const A *)qkv, d.T, d.Hq, d.Hkv, d.dh, d.window, sl2);
        });
    }
    hk_cuda_check_launch(hk, "attention_fwd");
}

void hk_cuda_attention_bwd(hk_backend *hk, void *dqkv, const void *dout, const void *out, const void *lse,
                           const void *qkv, hk_attn_dims d) {
    if (!attn_dims_ok(hk, "attention_bwd", d)) return;
    const size_t rows = (size_t)d.B * d.T * d.Hq;
    float *Dv = (float *)hk_cuda_scratch(hk, rows * sizeof(float));
    if (!Dv) return;
    const int parts = attn_bwd_parts();
    if (parts & ATT_PART_ROWDOT) {
        HK_DISPATCH_ACT(hk, A, {
            attn_rowdot_kernel<A><<<(unsigned)((rows * 32 + 255) / 256), 256, 0, hk_cuda_stream(hk)>>>(
                Dv, (const A *)dout, (const A *)out, d.T, d.Hq, d.dh, (int)rows);
        });
        if (hk_cuda_check_launch(hk, "attention_bwd rowdot")) return;
    }
    if (!(parts & (ATT_PART_DKDV | ATT_PART_DQ))) return;
    if (attn_use_tc(hk, d, dqkv, dout, qkv, NULL)) {
        if (hk_cuda_attn_bwd_sm90a(hk, dqkv, dout, lse, Dv, qkv, d, parts)) {
            hk_cuda_check_launch(hk, "attention_bwd");
            return;
        }
        if (d.dh == 64) attn_bwd_tc_launch<64>(hk, dqkv, dout, lse, Dv, qkv, d, parts);
        else attn_bwd_tc_launch<128>(hk, dqkv, dout, lse, Dv, qkv, d, parts);
    } else {
        const float scale = 1.0f / sqrtf((float)d.dh);
        HK_DISPATCH_ACT(hk, A, {
            if (parts & ATT_PART_DKDV) {
                attn_dkdv_scalar<A><<<dim3((d.T + SC_WARPS - 1) / SC_WARPS, d.Hkv, d.B), SC_WARPS * 32, 0,
                                      hk_cuda_stream(hk)>>>((A *)dqkv, (const A *)dout, (const float *)lse, Dv,
                                                            (const A *)qkv, d.T, d.Hq, d.Hkv, d.dh, d.window, scale);
                if (hk_cuda_check_launch(hk, "attention_bwd dk dv")) return;
            }
            if (parts & ATT_PART_DQ)
                attn_dq_scalar<A><<<dim3((d.T + SC_WARPS - 1) / SC_WARPS, d.Hq, d.B), SC_WARPS * 32, 0,
                                    hk_cuda_stream(hk)>>>((A *)dqkv, (const A *)dout, (const float *)lse, Dv,
                                                          (const A *)qkv, d.T, d.Hq, d.Hkv, d.dh, d.window, scale);
        });
    }
    hk_cuda_check_launch(hk, "attention_bwd");
}
#endif /* ATT_EMU */
