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
 *  - tensor-core path (bf16 mode, dh 64 or 128, 16-byte aligned rows): 64×64 tiles,
 *    4 warps per block, each warp 16 rows, mma.sync m16n8k16 bf16 with fp32
 *    accumulation, operands through ldmatrix (.trans for the P·V-like products).
 *    P and dS are rounded to bf16 for their products (as FlashAttention-2 does). Tiles
 *    stream through shared memory in two cp.async stages (the next tile loads while this
 *    one is multiplied); in the forward, interior tiles skip the mask.
 *    Forward: block per (b, h, 64 queries). Backward: D_i = dO_i·O_i first, then a
 *    dK/dV kernel (block per (b, kv head, 64 keys), looping over the group's query
 *    heads and the visible query tiles) and a dQ kernel (block per (b, h, 64 queries),
 *    looping over the visible key tiles). No atomics: results are deterministic.
 *  - scalar path (fp32 mode, other head dims up to 256, or unaligned): one warp per
 *    row, lanes over 32 keys at a time, fp32 throughout. Used by the parity tests
 *    and as the portable fallback; same backward split (D, dK/dV, dQ).
 * dh > 256 records HLAB_EUNSUPPORTED.
 */
#include <math.h>

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

#define TC_TILE 64
#define TC_THREADS 128

__device__ __forceinline__ void mma16816(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
__device__ __forceinline__ void ldsm_x4(uint32_t r[4], const hk_bf16 *p) {
    uint32_t a = (uint32_t)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
}
__device__ __forceinline__ void ldsm_x4_t(uint32_t r[4], const hk_bf16 *p) {
    uint32_t a = (uint32_t)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
}
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&v);
}

/* 64 rows × DH columns of a strided bf16 matrix into a padded smem tile; rows >= T are zeros
 * (masked scores times garbage would still be NaN). */
template <int DH>
__device__ __forceinline__ void tc_load_tile(hk_bf16 *s, const hk_bf16 *g, size_t ld, int r0, int T_) {
    constexpr int LD = DH + 8, VPR = DH / 8;
    for (int idx = threadIdx.x; idx < TC_TILE * VPR; idx += TC_THREADS) {
        const int r = idx / VPR, c = (idx % VPR) * 8;
        uint4 v = make_uint4(0u, 0u, 0u, 0u);
        if (r0 + r < T_) v = *reinterpret_cast<const uint4 *>(g + (size_t)(r0 + r) * ld + c);
        *reinterpret_cast<uint4 *>(s + r * LD + c) = v;
    }
}

/* The same tile through cp.async (16 bytes per copy, zero-filled rows past T): issued now,
 * complete after cp_wait. Lets the next tile's loads overlap this tile's math. */
__device__ __forceinline__ void cp_async16(void *smem, const void *gmem, int bytes) {
    const uint32_t a = (uint32_t)__cvta_generic_to_shared(smem);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(a), "l"(gmem), "r"(bytes));
}
__device__ __forceinline__ void cp_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> __device__ __forceinline__ void cp_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

template <int DH>
__device__ __forceinline__ void tc_load_tile_async(hk_bf16 *s, const hk_bf16 *g, size_t ld, int r0, int T_) {
    constexpr int LD = DH + 8, VPR = DH / 8;
    for (int idx = threadIdx.x; idx < TC_TILE * VPR; idx += TC_THREADS) {
        const int r = idx / VPR, c = (idx % VPR) * 8;
        const bool ok = r0 + r < T_;
        cp_async16(s + r * LD + c, g + (ok ? (size_t)(r0 + r) * ld + c : 0), ok ? 16 : 0);
    }
}

/* A operand (16 rows of the warp × DH) from a smem tile into registers, DH/16 k-steps. */
template <int DH>
__device__ __forceinline__ void tc_load_afrag(uint32_t f[DH / 16][4], const hk_bf16 *tile, int row0, int lane) {
    constexpr int LD = DH + 8;
    const int mid = lane >> 3, r = lane & 7;
#pragma unroll
    for (int kk = 0; kk < DH / 16; kk++) ldsm_x4(f[kk], tile + (row0 + (mid & 1) * 8 + r) * LD + kk * 16 + (mid >> 1) * 8);
}

/* acc[16 × 64] += A[16 × DH] · Bt[64 × DH]ᵀ  (Bt rows = the 64 n-columns, as stored) */
template <int DH>
__device__ __forceinline__ void tc_mm_abt(float acc[8][4], const uint32_t a[DH / 16][4], const hk_bf16 *Bt, int lane) {
    constexpr int LD = DH + 8;
#pragma unroll
    for (int nt = 0; nt < 8; nt++) {
#pragma unroll
        for (int kp = 0; kp < DH / 32; kp++) {
            uint32_t r[4];
            ldsm_x4(r, Bt + (nt * 8 + (lane & 7)) * LD + kp * 32 + (lane >> 3) * 8);
            mma16816(acc[nt], a[2 * kp], r[0], r[1]);
            mma16816(acc[nt], a[2 * kp + 1], r[2], r[3]);
        }
    }
}

/* acc[16 × DH] += P[16 × 64] (C fragments, rounded to bf16) · Bm[64 × DH] (rows = k) */
template <int DH>
__device__ __forceinline__ void tc_mm_pb(float acc[DH / 8][4], const float p[8][4], const hk_bf16 *Bm, int lane) {
    constexpr int LD = DH + 8;
    const int mid = lane >> 3, r = lane & 7;
#pragma unroll
    for (int kk = 0; kk < 4; kk++) {
        uint32_t a[4] = {pack_bf16(p[2 * kk][0], p[2 * kk][1]), pack_bf16(p[2 * kk][2], p[2 * kk][3]),
                         pack_bf16(p[2 * kk + 1][0], p[2 * kk + 1][1]), pack_bf16(p[2 * kk + 1][2], p[2 * kk + 1][3])};
#pragma unroll
        for (int np = 0; np < DH / 16; np++) {
            uint32_t b[4];
            ldsm_x4_t(b, Bm + (kk * 16 + (mid & 1) * 8 + r) * LD + np * 16 + (mid >> 1) * 8);
            mma16816(acc[2 * np], a, b[0], b[1]);
            mma16816(acc[2 * np + 1], a, b[2], b[3]);
        }
    }
}

template <int DH> static constexpr size_t tc_tile_bytes() { return (size_t)TC_TILE * (DH + 8) * sizeof(hk_bf16); }

template <int DH>
__global__ void __launch_bounds__(TC_THREADS)
    attn_fwd_tc(hk_bf16 *out, float *lse, const hk_bf16 *qkv, int T_, int Hq, int Hkv, int window, float sl2) {
    extern __shared__ __align__(16) unsigned char smem_raw[];
    constexpr int LD = DH + 8;
    hk_bf16 *Qs = (hk_bf16 *)smem_raw, *Kb = Qs + TC_TILE * LD, *Vb = Kb + 2 * TC_TILE * LD; /* K, V: 2 stages */
    const int qt = gridDim.x - 1 - blockIdx.x, h = blockIdx.y, b = blockIdx.z, q0 = qt * TC_TILE;
    const int w = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t4 = lane & 3;
    const size_t W = (size_t)(Hq + 2 * Hkv) * DH;
    const int kvh = h / (Hq / Hkv);
    const hk_bf16 *base = qkv + (size_t)b * T_ * W;
    const hk_bf16 *kg = base + (size_t)(Hq + kvh) * DH, *vg = base + (size_t)(Hq + Hkv + kvh) * DH;
    uint32_t qf[DH / 16][4];
    float o[DH / 8][4];
#pragma unroll
    for (int k = 0; k < DH / 8; k++) o[k][0] = o[k][1] = o[k][2] = o[k][3] = 0.0f;
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
    const int qi[2] = {q0 + w * 16 + g, q0 + w * 16 + g + 8};
    const int kstart = window > 0 && q0 - window + 1 > 0 ? ((q0 - window + 1) / TC_TILE) * TC_TILE : 0;
    const int kend = min(T_, q0 + TC_TILE);
    tc_load_tile_async<DH>(Qs, base + (size_t)h * DH, W, q0, T_);
    tc_load_tile_async<DH>(Kb, kg, W, kstart, T_);
    tc_load_tile_async<DH>(Vb, vg, W, kstart, T_);
    cp_commit();
    for (int k0 = kstart, it = 0; k0 < kend; k0 += TC_TILE, it++) {
        const hk_bf16 *Ks = Kb + (it & 1) * TC_TILE * LD, *Vs = Vb + (it & 1) * TC_TILE * LD;
        if (k0 + TC_TILE < kend) { /* prefetch the next tile into the other stage */
            tc_load_tile_async<DH>(Kb + ((it + 1) & 1) * TC_TILE * LD, kg, W, k0 + TC_TILE, T_);
            tc_load_tile_async<DH>(Vb + ((it + 1) & 1) * TC_TILE * LD, vg, W, k0 + TC_TILE, T_);
        }
        cp_commit();
        cp_wait<1>();
        __syncthreads();
        if (it == 0) tc_load_afrag<DH>(qf, Qs, w * 16, lane);
        float s[8][4];
#pragma unroll
        for (int nt = 0; nt < 8; nt++) s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
        tc_mm_abt<DH>(s, qf, Ks, lane);
        float mx[2] = {-INFINITY, -INFINITY};
        /* only tiles on the diagonal, at the window's edge or past T need the mask */
        const bool masked = k0 + TC_TILE - 1 > q0 || k0 + TC_TILE > T_ || (window > 0 && q0 + TC_TILE - 1 - k0 >= window);
#pragma unroll
        for (int nt = 0; nt < 8; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int r = e >> 1, kj = k0 + nt * 8 + t4 * 2 + (e & 1);
                const float v =
                    (!masked || (kj < T_ && att_visible(qi[r], kj, window))) ? s[nt][e] * sl2 : -INFINITY;
                s[nt][e] = v;
                mx[r] = fmaxf(mx[r], v);
            }
        float corr[2];
#pragma unroll
        for (int r = 0; r < 2; r++) {
            mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
            mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
            const float mn = fmaxf(m[r], mx[r]), ref = mn == -INFINITY ? 0.0f : mn;
            corr[r] = exp2f(m[r] - ref);
            m[r] = mn;
            mx[r] = ref; /* reused as the exponent reference */
            l[r] *= corr[r];
        }
#pragma unroll
        for (int nt = 0; nt < 8; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const float p = exp2f(s[nt][e] - mx[e >> 1]);
                s[nt][e] = p;
                l[e >> 1] += p;
            }
#pragma unroll
        for (int k = 0; k < DH / 8; k++) {
            o[k][0] *= corr[0];
            o[k][1] *= corr[0];
            o[k][2] *= corr[1];
            o[k][3] *= corr[1];
        }
        tc_mm_pb<DH>(o, s, Vs, lane);
        __syncthreads(); /* this stage is refilled by the next iteration's prefetch */
    }
#pragma unroll
    for (int r = 0; r < 2; r++) {
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
    }
    const size_t OW = (size_t)Hq * DH;
#pragma unroll
    for (int r = 0; r < 2; r++) {
        if (qi[r] >= T_) continue;
        const float inv = 1.0f / l[r];
        hk_bf16 *orow = out + ((size_t)b * T_ + qi[r]) * OW + (size_t)h * DH;
#pragma unroll
        for (int k = 0; k < DH / 8; k++)
            *reinterpret_cast<uint32_t *>(orow + k * 8 + t4 * 2) = pack_bf16(o[k][2 * r] * inv, o[k][2 * r + 1] * inv);
        if (t4 == 0) lse[((size_t)b * Hq + h) * T_ + qi[r]] = (m[r] + log2f(l[r])) * ATT_LN2;
    }
}

/* dK, dV for 64 keys of kv head g, summed over the group's query heads. Transposed
 * orientation: the warp's 16 keys are the rows, queries the columns. */
template <int DH>
__global__ void __launch_bounds__(TC_THREADS)
    attn_dkdv_tc(hk_bf16 *dqkv, const hk_bf16 *dout, const float *lse, const float *Dv, const hk_bf16 *qkv, int T_,
                 int Hq, int Hkv, int window, float sl2, float scale) {
    extern __shared__ __align__(16) unsigned char smem_raw[];
    constexpr int LD = DH + 8;
    /* two stages of (Q tile, dO tile, lse row, D row); K and V pass through stage 1 first */
    hk_bf16 *Qb = (hk_bf16 *)smem_raw, *Ob = Qb + 2 * TC_TILE * LD;
    float *Lb = (float *)(Ob + 2 * TC_TILE * LD), *Db = Lb + 2 * TC_TILE;
    const int kt = blockIdx.x, gk = blockIdx.y, b = blockIdx.z, k0 = kt * TC_TILE; /* low tiles: most work, first */
    const int w = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t4 = lane & 3;
    const size_t W = (size_t)(Hq + 2 * Hkv) * DH, OW = (size_t)Hq * DH;
    const int group = Hq / Hkv;
    const hk_bf16 *base = qkv + (size_t)b * T_ * W;
    tc_load_tile_async<DH>(Qb + TC_TILE * LD, base + (size_t)(Hq + gk) * DH, W, k0, T_);
    tc_load_tile_async<DH>(Ob + TC_TILE * LD, base + (size_t)(Hq + Hkv + gk) * DH, W, k0, T_);
    cp_commit();
    cp_wait<0>();
    __syncthreads();
    uint32_t kf[DH / 16][4], vf[DH / 16][4];
    tc_load_afrag<DH>(kf, Qb + TC_TILE * LD, w * 16, lane);
    tc_load_afrag<DH>(vf, Ob + TC_TILE * LD, w * 16, lane);
    __syncthreads();
    float dk[DH / 8][4], dv[DH / 8][4];
#pragma unroll
    for (int k = 0; k < DH / 8; k++)
#pragma unroll
        for (int e = 0; e < 4; e++) dk[k][e] = dv[k][e] = 0.0f;
    const int kj[2] = {k0 + w * 16 + g, k0 + w * 16 + g + 8};
    const int qend = window > 0 ? min(T_, k0 + TC_TILE - 1 + window) : T_;
    const int nq = (qend - k0 + TC_TILE - 1) / TC_TILE, steps = nq * group;
    /* step = (query head, query tile), flattened so that the prefetch crosses heads */
    auto issue = [&](int step, int stage) {
        const int h = gk * group + step / nq, q0 = k0 + (step % nq) * TC_TILE;
        tc_load_tile_async<DH>(Qb + stage * TC_TILE * LD, base + (size_t)h * DH, W, q0, T_);
        tc_load_tile_async<DH>(Ob + stage * TC_TILE * LD, dout + (size_t)b * T_ * OW + (size_t)h * DH, OW, q0, T_);
        if (threadIdx.x < TC_TILE) {
            const int i = q0 + threadIdx.x;
            const size_t li = ((size_t)b * Hq + h) * T_ + i;
            Lb[stage * TC_TILE + threadIdx.x] = i < T_ ? lse[li] * ATT_LOG2E : 0.0f;
            Db[stage * TC_TILE + threadIdx.x] = i < T_ ? Dv[li] : 0.0f;
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
        {
            float s[8][4], dp[8][4];
#pragma unroll
            for (int nt = 0; nt < 8; nt++)
#pragma unroll
                for (int e = 0; e < 4; e++) s[nt][e] = dp[nt][e] = 0.0f;
            tc_mm_abt<DH>(s, kf, Qs, lane);
            tc_mm_abt<DH>(dp, vf, Os, lane);
#pragma unroll
            for (int nt = 0; nt < 8; nt++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int col = nt * 8 + t4 * 2 + (e & 1), i = q0 + col;
                    const float p =
                        (i < T_ && att_visible(i, kj[e >> 1], window)) ? exp2f(s[nt][e] * sl2 - Ls[col]) : 0.0f;
                    s[nt][e] = p;
                    dp[nt][e] = p * (dp[nt][e] - Ds[col]);
                }
            tc_mm_pb<DH>(dv, s, Os, lane);
            tc_mm_pb<DH>(dk, dp, Qs, lane);
        }
        __syncthreads();
    }
#pragma unroll
    for (int r = 0; r < 2; r++) {
        if (kj[r] >= T_) continue;
        hk_bf16 *drow = dqkv + ((size_t)b * T_ + kj[r]) * W;
#pragma unroll
        for (int k = 0; k < DH / 8; k++) {
            *reinterpret_cast<uint32_t *>(drow + (size_t)(Hq + gk) * DH + k * 8 + t4 * 2) =
                pack_bf16(dk[k][2 * r] * scale, dk[k][2 * r + 1] * scale);
            *reinterpret_cast<uint32_t *>(drow + (size_t)(Hq + Hkv + gk) * DH + k * 8 + t4 * 2) =
                pack_bf16(dv[k][2 * r], dv[k][2 * r + 1]);
        }
    }
}

/* dQ for 64 queries of head h: dQ = scale · Σ_keys dS K */
template <int DH>
__global__ void __launch_bounds__(TC_THREADS)
    attn_dq_tc(hk_bf16 *dqkv, const hk_bf16 *dout, const float *lse, const float *Dv, const hk_bf16 *qkv, int T_, int Hq,
               int Hkv, int window, float sl2, float scale) {
    extern __shared__ __align__(16) unsigned char smem_raw[];
    constexpr int LD = DH + 8;
    hk_bf16 *Qs = (hk_bf16 *)smem_raw, *Os = Qs + TC_TILE * LD, *Kb = Os + TC_TILE * LD, *Vb = Kb + 2 * TC_TILE * LD;
    const int qt = gridDim.x - 1 - blockIdx.x, h = blockIdx.y, b = blockIdx.z, q0 = qt * TC_TILE;
    const int w = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t4 = lane & 3;
    const size_t W = (size_t)(Hq + 2 * Hkv) * DH, OW = (size_t)Hq * DH;
    const int kvh = h / (Hq / Hkv);
    const hk_bf16 *base = qkv + (size_t)b * T_ * W;
    const hk_bf16 *kg = base + (size_t)(Hq + kvh) * DH, *vg = base + (size_t)(Hq + Hkv + kvh) * DH;
    const int kstart = window > 0 && q0 - window + 1 > 0 ? ((q0 - window + 1) / TC_TILE) * TC_TILE : 0;
    const int kend = min(T_, q0 + TC_TILE);
    tc_load_tile_async<DH>(Qs, base + (size_t)h * DH, W, q0, T_);
    tc_load_tile_async<DH>(Os, dout + (size_t)b * T_ * OW + (size_t)h * DH, OW, q0, T_);
    tc_load_tile_async<DH>(Kb, kg, W, kstart, T_);
    tc_load_tile_async<DH>(Vb, vg, W, kstart, T_);
    cp_commit();
    uint32_t qf[DH / 16][4], of[DH / 16][4];
    const int qi[2] = {q0 + w * 16 + g, q0 + w * 16 + g + 8};
    float L[2], Dr[2];
#pragma unroll
    for (int r = 0; r < 2; r++) {
        const size_t li = ((size_t)b * Hq + h) * T_ + qi[r];
        L[r] = qi[r] < T_ ? lse[li] * ATT_LOG2E : 0.0f;
        Dr[r] = qi[r] < T_ ? Dv[li] : 0.0f;
    }
    float dq[DH / 8][4];
#pragma unroll
    for (int k = 0; k < DH / 8; k++) dq[k][0] = dq[k][1] = dq[k][2] = dq[k][3] = 0.0f;
    for (int k0 = kstart, it = 0; k0 < kend; k0 += TC_TILE, it++) {
        const hk_bf16 *Ks = Kb + (it & 1) * TC_TILE * LD, *Vs = Vb + (it & 1) * TC_TILE * LD;
        if (k0 + TC_TILE < kend) {
            tc_load_tile_async<DH>(Kb + ((it + 1) & 1) * TC_TILE * LD, kg, W, k0 + TC_TILE, T_);
            tc_load_tile_async<DH>(Vb + ((it + 1) & 1) * TC_TILE * LD, vg, W, k0 + TC_TILE, T_);
        }
        cp_commit();
        cp_wait<1>();
        __syncthreads();
        if (it == 0) {
            tc_load_afrag<DH>(qf, Qs, w * 16, lane);
            tc_load_afrag<DH>(of, Os, w * 16, lane);
        }
        float s[8][4], dp[8][4];
#pragma unroll
        for (int nt = 0; nt < 8; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) s[nt][e] = dp[nt][e] = 0.0f;
        tc_mm_abt<DH>(s, qf, Ks, lane);
        tc_mm_abt<DH>(dp, of, Vs, lane);
#pragma unroll
        for (int nt = 0; nt < 8; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int r = e >> 1, kj = k0 + nt * 8 + t4 * 2 + (e & 1);
                const float p = (kj < T_ && att_visible(qi[r], kj, window)) ? exp2f(s[nt][e] * sl2 - L[r]) : 0.0f;
                dp[nt][e] = p * (dp[nt][e] - Dr[r]);
            }
        tc_mm_pb<DH>(dq, dp, Ks, lane);
        __syncthreads();
    }
#pragma unroll
    for (int r = 0; r < 2; r++) {
        if (qi[r] >= T_) continue;
        hk_bf16 *drow = dqkv + ((size_t)b * T_ + qi[r]) * W + (size_t)h * DH;
#pragma unroll
        for (int k = 0; k < DH / 8; k++)
            *reinterpret_cast<uint32_t *>(drow + k * 8 + t4 * 2) = pack_bf16(dq[k][2 * r] * scale, dq[k][2 * r + 1] * scale);
    }
}

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

template <int DH> static void attn_fwd_tc_launch(hk_backend *hk, void *out, void *lse, const void *qkv, hk_attn_dims d) {
    const size_t smem = 5 * tc_tile_bytes<DH>();
    if (!tc_prepare(hk, attn_fwd_tc<DH>, smem, "attention_fwd smem")) return;
    dim3 grid((d.T + TC_TILE - 1) / TC_TILE, d.Hq, d.B);
    attn_fwd_tc<DH><<<grid, TC_THREADS, smem, hk_cuda_stream(hk)>>>((hk_bf16 *)out, (float *)lse, (const hk_bf16 *)qkv,
                                                                     d.T, d.Hq, d.Hkv, d.window,
                                                                     ATT_LOG2E / sqrtf((float)DH));
}

template <int DH>
static void attn_bwd_tc_launch(hk_backend *hk, void *dqkv, const void *dout, const void *lse, const float *Dv,
                               const void *qkv, hk_attn_dims d) {
    const float scale = 1.0f / sqrtf((float)DH), sl2 = ATT_LOG2E * scale;
    const size_t smem_kv = 4 * tc_tile_bytes<DH>() + 4 * TC_TILE * sizeof(float), smem_q = 6 * tc_tile_bytes<DH>();
    if (!tc_prepare(hk, attn_dkdv_tc<DH>, smem_kv, "attention_bwd smem")) return;
    if (!tc_prepare(hk, attn_dq_tc<DH>, smem_q, "attention_bwd smem")) return;
    const int tiles = (d.T + TC_TILE - 1) / TC_TILE;
    attn_dkdv_tc<DH><<<dim3(tiles, d.Hkv, d.B), TC_THREADS, smem_kv, hk_cuda_stream(hk)>>>(
        (hk_bf16 *)dqkv, (const hk_bf16 *)dout, (const float *)lse, Dv, (const hk_bf16 *)qkv, d.T, d.Hq, d.Hkv,
        d.window, sl2, scale);
    if (hk_cuda_check_launch(hk, "attention_bwd dk dv")) return;
    attn_dq_tc<DH><<<dim3(tiles, d.Hq, d.B), TC_THREADS, smem_q, hk_cuda_stream(hk)>>>(
        (hk_bf16 *)dqkv, (const hk_bf16 *)dout, (const float *)lse, Dv, (const hk_bf16 *)qkv, d.T, d.Hq, d.Hkv,
        d.window, sl2, scale);
}

void hk_cuda_attention_fwd(hk_backend *hk, void *out, void *lse, const void *qkv, hk_attn_dims d) {
    if (!attn_dims_ok(hk, "attention_fwd", d)) return;
    if (attn_use_tc(hk, d, out, qkv, NULL, NULL)) {
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
    HK_DISPATCH_ACT(hk, A, {
        attn_rowdot_kernel<A><<<(unsigned)((rows * 32 + 255) / 256), 256, 0, hk_cuda_stream(hk)>>>(
            Dv, (const A *)dout, (const A *)out, d.T, d.Hq, d.dh, (int)rows);
    });
    if (hk_cuda_check_launch(hk, "attention_bwd rowdot")) return;
    if (attn_use_tc(hk, d, dqkv, dout, qkv, NULL)) {
        if (d.dh == 64) attn_bwd_tc_launch<64>(hk, dqkv, dout, lse, Dv, qkv, d);
        else attn_bwd_tc_launch<128>(hk, dqkv, dout, lse, Dv, qkv, d);
    } else {
        const float scale = 1.0f / sqrtf((float)d.dh);
        HK_DISPATCH_ACT(hk, A, {
            attn_dkdv_scalar<A><<<dim3((d.T + SC_WARPS - 1) / SC_WARPS, d.Hkv, d.B), SC_WARPS * 32, 0,
                                  hk_cuda_stream(hk)>>>((A *)dqkv, (const A *)dout, (const float *)lse, Dv,
                                                        (const A *)qkv, d.T, d.Hq, d.Hkv, d.dh, d.window, scale);
            if (hk_cuda_check_launch(hk, "attention_bwd dk dv")) return;
            attn_dq_scalar<A><<<dim3((d.T + SC_WARPS - 1) / SC_WARPS, d.Hq, d.B), SC_WARPS * 32, 0,
                                hk_cuda_stream(hk)>>>((A *)dqkv, (const A *)dout, (const float *)lse, Dv,
                                                      (const A *)qkv, d.T, d.Hq, d.Hkv, d.dh, d.window, scale);
        });
    }
    hk_cuda_check_launch(hk, "attention_bwd");
}
