/* kernels/cuda/ssd_fast.cuh — what the tensor-core SSD forward (ssd_fast.cu) and backward
 * (ssd_fast_bwd.cu) share: tile constants, the warp-level mma and tile loaders, the decay,
 * chunk-state and state-passing kernels, and the host-side checks. */
#ifndef HLAB_KERNELS_CUDA_SSD_FAST_CUH
#define HLAB_KERNELS_CUDA_SSD_FAST_CUH

#include <math.h>
#include <stdint.h>

#include "kernels/cuda/ssd_common.cuh"

#define SF_TILE 64
#define SF_THREADS 128
#define SF_P 64
#define SF_LDP (SF_P + 8)     /* row stride (elements) of 64-wide bf16 tiles */
#define SF_LDQ (SF_TILE + 8)  /* row stride of 64×64 score tiles */

/* ---- warp-level tensor-core product ------------------------------------------------- */

__device__ __forceinline__ void sf_mma16816(float c[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                            uint32_t b0, uint32_t b1) {
#ifdef SF_EMU /* host emulation harness (not part of the build): the product through per-warp arrays */
    sf_emu_mma(c, a0, a1, a2, a3, b0, b1);
#else
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
#endif
}

/* Two consecutive-k elements (p[0], p[S]) packed low-k first. */
template <int S> __device__ __forceinline__ uint32_t sf_ld2(const hk_bf16 *p) {
    if (S == 1) return *reinterpret_cast<const uint32_t *>(p);
    const uint32_t lo = __bfloat16_as_ushort(p[0]), hi = __bfloat16_as_ushort(p[S]);
    return lo | (hi << 16);
}

/* acc[nt] (16 × 8 fragment) += Σ_{k<K} A(m, k) B(k, nt·8 + n) for the warp's 16 rows of A
 * (A points at its row 0) and NT·8 columns of B (B points at column 0). K % 16 == 0.
 * Fragment element r of acc[nt]: row g + 8·(r ≥ 2), column nt·8 + 2·t + (r & 1), with
 * g = lane / 4, t = lane % 4. */
template <int NT, int ASM, int ASK, int BSK, int BSN>
__device__ __forceinline__ void sf_mma(float (*acc)[4], const hk_bf16 *A, const hk_bf16 *B, int K) {
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    for (int k0 = 0; k0 < K; k0 += 16) {
        const hk_bf16 *a = A + (k0 + 2 * t) * ASK;
        const uint32_t a0 = sf_ld2<ASK>(a + g * ASM), a1 = sf_ld2<ASK>(a + (g + 8) * ASM);
        const uint32_t a2 = sf_ld2<ASK>(a + g * ASM + 8 * ASK), a3 = sf_ld2<ASK>(a + (g + 8) * ASM + 8 * ASK);
        const hk_bf16 *bb = B + (k0 + 2 * t) * BSK + g * BSN;
#pragma unroll
        for (int nt = 0; nt < NT; nt++) {
            const uint32_t b0 = sf_ld2<BSK>(bb + nt * 8 * BSN), b1 = sf_ld2<BSK>(bb + nt * 8 * BSN + 8 * BSK);
            sf_mma16816(acc[nt], a0, a1, a2, a3, b0, b1);
        }
    }
}

template <int NT> __device__ __forceinline__ void sf_zero(float (*acc)[4]) {
#pragma unroll
    for (int nt = 0; nt < NT; nt++) acc[nt][0] = acc[nt][1] = acc[nt][2] = acc[nt][3] = 0.0f;
}

/* Sum over the 4 lanes of a quad (the lanes holding one fragment row). */
__device__ __forceinline__ float sf_quad_sum(float v) {
    v += __shfl_xor_sync(0xffffffffu, v, 1);
    return v + __shfl_xor_sync(0xffffffffu, v, 2);
}

__device__ __forceinline__ void sf_st2(hk_bf16 *p, float lo, float hi) {
    *reinterpret_cast<__nv_bfloat162 *>(p) = __floats2bfloat162_rn(lo, hi);
}

/* ---- ldmatrix, cp.async, named barriers (sm_80+) -------------------------------------------
 * Fragment loaders for mma m16n8k16 from bf16 tiles in shared memory (row stride `ld` elements,
 * rows 16-byte aligned). "[m][k]" names the storage order of an A operand, "[n][k]" of a B
 * operand; the _t forms read the other order through ldmatrix.trans. A: a[0..3] as sf_mma16816
 * takes them, rows m0..m0+15, k0..k0+15. B: b[0], b[1] for columns n0..n0+7 and b[2], b[3] for
 * n0+8..n0+15, k0..k0+15. The "memory" clobbers keep the compiler from moving shared-memory
 * stores across them. */
#ifdef SF_EMU
#define SF_LDSM4(r, p, trans) sf_emu_ldsm4(r, p, trans)
#else
#define SF_LDSM4(r, p, trans)                                                                                    \
    do {                                                                                                        \
        const uint32_t sf_a_ = (uint32_t)__cvta_generic_to_shared(p);                                           \
        if (trans)                                                                                              \
            asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"              \
                         : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])                                     \
                         : "r"(sf_a_)                                                                           \
                         : "memory");                                                                           \
        else                                                                                                    \
            asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"                     \
                         : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])                                     \
                         : "r"(sf_a_)                                                                           \
                         : "memory");                                                                           \
    } while (0)
#endif

/* lane l addresses row (l & 7) of 8×8 matrix l >> 3 */
__device__ __forceinline__ void sf_ldA(uint32_t a[4], const hk_bf16 *s, int ld, int m0, int k0) { /* [m][k] */
    const int l = threadIdx.x & 31, mi = l >> 3;
    SF_LDSM4(a, s + (m0 + (l & 7) + (mi & 1) * 8) * ld + k0 + (mi >> 1) * 8, false);
}
__device__ __forceinline__ void sf_ldA_t(uint32_t a[4], const hk_bf16 *s, int ld, int k0, int m0) { /* [k][m] */
    const int l = threadIdx.x & 31, mi = l >> 3;
    SF_LDSM4(a, s + (k0 + (l & 7) + (mi >> 1) * 8) * ld + m0 + (mi & 1) * 8, true);
}
__device__ __forceinline__ void sf_ldB(uint32_t b[4], const hk_bf16 *s, int ld, int n0, int k0) { /* [n][k] */
    const int l = threadIdx.x & 31, mi = l >> 3;
    SF_LDSM4(b, s + (n0 + (l & 7) + (mi >> 1) * 8) * ld + k0 + (mi & 1) * 8, false);
}
__device__ __forceinline__ void sf_ldB_t(uint32_t b[4], const hk_bf16 *s, int ld, int k0, int n0) { /* [k][n] */
    const int l = threadIdx.x & 31, mi = l >> 3;
    SF_LDSM4(b, s + (k0 + (l & 7) + (mi & 1) * 8) * ld + n0 + (mi >> 1) * 8, true);
}

/* bf16 pair → floats, and back (round to nearest even) */
__device__ __forceinline__ float sf_lo(uint32_t v) { return __uint_as_float(v << 16); }
__device__ __forceinline__ float sf_hi(uint32_t v) { return __uint_as_float(v & 0xffff0000u); }
__device__ __forceinline__ uint32_t sf_pack(float lo, float hi) {
    const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<const uint32_t *>(&v);
}
/* a bf16 pair scaled elementwise, rounded once */
__device__ __forceinline__ uint32_t sf_scale2(uint32_t v, float lo, float hi) {
    return sf_pack(sf_lo(v) * lo, sf_hi(v) * hi);
}

/* Asynchronous global → shared copies: `bytes` (16 or 4) when valid, else zeros. */
#ifdef SF_EMU
#define sf_cp16(dst, src, valid) sf_emu_cp(dst, src, 16, valid)
#define sf_cp4(dst, src, valid) sf_emu_cp(dst, src, 4, valid)
#define sf_cp_commit() sf_emu_cp_commit()
#define sf_cp_wait(n) sf_emu_cp_wait(n)
#define sf_bar(id, count) sf_emu_bar(id, count)
#else
__device__ __forceinline__ void sf_cp16(void *dst, const void *src, bool valid) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"((uint32_t)__cvta_generic_to_shared(dst)),
                 "l"(src), "r"(valid ? 16 : 0)
                 : "memory");
}
__device__ __forceinline__ void sf_cp4(void *dst, const void *src, bool valid) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"((uint32_t)__cvta_generic_to_shared(dst)),
                 "l"(src), "r"(valid ? 4 : 0)
                 : "memory");
}
__device__ __forceinline__ void sf_cp_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
/* every group but the newest n has landed (this thread's copies) */
#define sf_cp_wait(n) asm volatile("cp.async.wait_group %0;\n" ::"n"(n) : "memory")
/* barrier `id` (1..15; 0 is __syncthreads) over `count` threads, whole warps */
__device__ __forceinline__ void sf_bar(int id, int count) {
    asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(count) : "memory");
}
#endif

/* the block's dynamic shared memory (the emulation harness hands out its own) */
#ifdef SF_EMU
#define SF_DYN_SMEM(name) unsigned char *name = sf_emu_smem()
#else
#define SF_DYN_SMEM(name) extern __shared__ __align__(16) unsigned char name[]
#endif

/* ---- shared-memory tile loads --------------------------------------------------------- */

/* Rows [r0, r0+64) ∩ [0, L) of a bf16 matrix (COLS contiguous columns, row stride
 * `stride`) into s[64][LD]; rows ≥ L are zeros. 16-byte accesses (host checked alignment). */
template <int COLS, int LD>
__device__ __forceinline__ void sf_load_rows(hk_bf16 *s, const hk_bf16 *g, size_t stride, int r0, int L) {
    constexpr int VPR = COLS / 8;
    for (int idx = threadIdx.x; idx < SF_TILE * VPR; idx += SF_THREADS) {
        const int r = idx / VPR, v = idx % VPR;
        uint4 val = make_uint4(0u, 0u, 0u, 0u);
        if (r0 + r < L) val = *reinterpret_cast<const uint4 *>(g + (size_t)(r0 + r) * stride + v * 8);
        *reinterpret_cast<uint4 *>(s + r * LD + v * 8) = val;
    }
}

/* An fp32 P×N state (row-major [p][n]) into s[P][N + 8] as bf16. */
template <int N> __device__ __forceinline__ void sf_load_state(hk_bf16 *s, const float *S) {
    constexpr int VPR = N / 4;
    for (int idx = threadIdx.x; idx < SF_P * VPR; idx += SF_THREADS) {
        const int p = idx / VPR, v = idx % VPR;
        const float4 f = *reinterpret_cast<const float4 *>(S + (size_t)p * N + v * 4);
        sf_st2(s + p * (N + 8) + v * 4, f.x, f.y);
        sf_st2(s + p * (N + 8) + v * 4 + 2, f.z, f.w);
    }
}

/* ---- decay: Δ and the chunk-inclusive cumsum of Δ·A, one warp per (chunk, h, b) ---------- */

static __global__ void sf_decay_kernel(float *delta, float *cum, const hk_bf16 *dt, const float *dt_bias,
                                const float *A_log, ssd_geom s) {
    const int c = blockIdx.x, h = blockIdx.y, b = blockIdx.z, lane = threadIdx.x;
    const int t0 = c * s.Q, L = min(s.Q, s.T - t0);
    const float A = -expf(A_log[h]), bias = dt_bias[h];
    const size_t o = ((size_t)b * s.H + h) * s.T + t0;
    float carry = 0.0f;
    for (int i0 = 0; i0 < L; i0 += 32) {
        const int i = i0 + lane;
        const float dl = i < L ? ssd_softplus(ld(dt[((size_t)b * s.T + t0 + i) * s.H + h]) + bias) : 0.0f;
        float v = dl * A;
#pragma unroll
        for (int off = 1; off < 32; off <<= 1) {
            const float u = __shfl_up_sync(0xffffffffu, v, off);
            if (lane >= off) v += u;
        }
        v += carry;
        if (i < L) delta[o + i] = dl, cum[o + i] = v;
        carry = __shfl_sync(0xffffffffu, v, 31);
    }
}

/* ---- chunk_state: out[b,c,h] (P×N) = Σ_{j<L} wt_j X_jᵀ Y_j ------------------------------
 * fwd: wt_j = e^{cum_last − cum_j} Δ_j, X = x (head h), Y = B (group g).
 * bwd: wt_j = e^{cum_j},               X = dy (head h), Y = C (group g).
 * Block per (chunk, h, b); warp w owns state rows p = 16w .. 16w+15. */
template <int N, bool BWD>
__global__ void __launch_bounds__(SF_THREADS)
    sf_chunk_state_kernel(float *out, const hk_bf16 *X, size_t xstride, const hk_bf16 *xbc, const float *delta,
                          const float *cum, ssd_geom s) {
    constexpr int LDN = N + 8;
    __shared__ __align__(16) hk_bf16 Xs[SF_TILE * SF_LDP];
    __shared__ __align__(16) hk_bf16 Ys[SF_TILE * LDN];
    __shared__ float ws[SF_TILE];
    const int c = blockIdx.x, h = blockIdx.y, b = blockIdx.z, g = h / s.hpg;
    const int t0 = c * s.Q, L = min(s.Q, s.T - t0), warp = threadIdx.x >> 5;
    const size_t ob = ((size_t)b * s.H + h) * s.T + t0;
    const float last = cum[ob + L - 1];
    const hk_bf16 *Xb = X + ((size_t)b * s.T + t0) * xstride + (size_t)h * SF_P;
    const hk_bf16 *Yb = xbc + ((size_t)b * s.T + t0) * s.W + s.HP + (size_t)(BWD ? s.G + g : g) * N;
    float acc[N / 8][4];
    sf_zero<N / 8>(acc);
    for (int j0 = 0; j0 < L; j0 += SF_TILE) {
        __syncthreads(); /* the previous tile's products are done */
        sf_load_rows<N, LDN>(Ys, Yb, s.W, j0, L);
        if (threadIdx.x < SF_TILE) {
            const int j = j0 + threadIdx.x;
            ws[threadIdx.x] =
                j < L ? (BWD ? expf(cum[ob + j]) : expf(fminf(last - cum[ob + j], 0.0f)) * delta[ob + j]) : 0.0f;
        }
        __syncthreads();
        for (int idx = threadIdx.x; idx < SF_TILE * (SF_P / 2); idx += SF_THREADS) {
            const int r = idx / (SF_P / 2), p = 2 * (idx % (SF_P / 2)), j = j0 + r;
            float x0 = 0.0f, x1 = 0.0f;
            if (j < L) {
                const __nv_bfloat162 v = *reinterpret_cast<const __nv_bfloat162 *>(Xb + (size_t)j * xstride + p);
                x0 = __low2float(v) * ws[r], x1 = __high2float(v) * ws[r];
            }
            sf_st2(Xs + r * SF_LDP + p, x0, x1);
        }
        __syncthreads();
        /* A(m = p, k = j) = Xs[j][p]; B(k = j, n) = Ys[j][n] */
        sf_mma<N / 8, 1, SF_LDP, LDN, 1>(acc, Xs + warp * 16, Ys, SF_TILE);
    }
    float *o = out + (((size_t)b * s.nc + c) * s.H + h) * s.PN;
    const int lane = threadIdx.x & 31, gr = lane >> 2, t = lane & 3;
#pragma unroll
    for (int nt = 0; nt < N / 8; nt++) {
        const int p = warp * 16 + gr, n = nt * 8 + 2 * t;
        *reinterpret_cast<float2 *>(o + (size_t)p * N + n) = make_float2(acc[nt][0], acc[nt][1]);
        *reinterpret_cast<float2 *>(o + (size_t)(p + 8) * N + n) = make_float2(acc[nt][2], acc[nt][3]);
    }
}

/* ---- state_pass: fwd S_in[c] = S; S = e^{last_c} S + local[c].  bwd (reverse chunks):
 * dS_out[c] = dS; dS = e^{last_c} dS + local[c]. fp32, one thread per state entry. */
template <bool BWD>
__global__ void sf_state_pass_kernel(float *dst, const float *local, const float *cum, ssd_geom s) {
    const size_t e = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    const int h = blockIdx.y, b = blockIdx.z;
    if (e >= s.PN) return;
    float S = 0.0f;
    for (int k = 0; k < s.nc; k++) {
        const int c = BWD ? s.nc - 1 - k : k;
        const int t0 = c * s.Q, L = min(s.Q, s.T - t0);
        const size_t off = (((size_t)b * s.nc + c) * s.H + h) * s.PN + e;
        dst[off] = S;
        S = expf(cum[((size_t)b * s.H + h) * s.T + t0 + L - 1]) * S + local[off];
    }
}

/* ---- host -------------------------------------------------------------------------------------- */

/* 1: run the fast path; 0: a failure was recorded. */
static inline int sf_check(hk_backend *hk, hk_ssd_dims d, const char *op, const void *p0, const void *p1, const void *p2) {
    if (d.B <= 0 || d.T <= 0 || d.H <= 0 || d.P <= 0 || d.N <= 0 || d.G <= 0 || d.chunk <= 0 || d.H % d.G != 0 ||
        d.B > 65535 || d.H > 65535 || d.G > 65535) {
        hk_cuda_fail(hk, HLAB_EINVAL,
                     "%s: bad dims B=%d T=%d H=%d P=%d G=%d N=%d chunk=%d (expected all > 0, H %% G == 0, B, H <= 65535)",
                     op, d.B, d.T, d.H, d.P, d.G, d.N, d.chunk);
        return 0;
    }
    const uintptr_t bits = (uintptr_t)p0 | (uintptr_t)p1 | (uintptr_t)p2;
    const long long gx = ((long long)d.T + d.chunk - 1) / d.chunk * ((d.chunk + SF_TILE - 1) / SF_TILE);
    if (d.P != SF_P || (d.N != 64 && d.N != 128) || (bits & 15) != 0 || gx > 0x7fffffffLL) {
        hk_cuda_fail(hk, HLAB_EUNSUPPORTED,
                     "%s: the tensor-core SSD supports P = 64, N = 64 or 128 and 16-byte aligned buffers (got P=%d "
                     "N=%d, alignment bits %u)",
                     op, d.P, d.N, (unsigned)(bits & 15));
        return 0;
    }
    return 1;
}

template <typename K> static int sf_smem_attr(hk_backend *hk, K kernel, size_t smem) {
    return !hk_cuda_record(hk, cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem),
                           "ssd_fast shared memory");
}

#endif
