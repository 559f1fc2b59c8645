/* kernels/cuda/ssd_fast.cu — the Mamba-2 SSD scan (chunked form) with the chunk
 * products on tensor cores: bf16 mode only, P = 64, N in {64, 128}. Same function
 * and same formulas as kernels/cuda/ssd.cu and kernels/cpu/ssd.c:
 *   y_i   = Σ_{j≤i} (C_i·B_j) e^{cum_i−cum_j} Δ_j x_j + e^{cum_i} S_in C_i + D x_i
 *   S_out = e^{cum_last} S_in + Σ_j e^{cum_last−cum_j} Δ_j x_j B_jᵀ
 * with cum the chunk-inclusive cumsum of Δ·A (fp32), every decay an exponent ≤ 0.
 * Not wired into the backend vtable: hk_cuda_ssd_fast_fwd / _bwd have the signatures of
 * hk_cuda_ssd_fwd / _bwd (C linkage, see cuda_ops.h). fp32 mode calls those.
 *
 * Conventions.
 *  - Tiles are 64 rows of a chunk (i for outputs/rows, j for inputs/columns); 4 warps per
 *    block, warp w owns tile rows 16w .. 16w+15. Operands sit in shared memory as bf16
 *    with rows padded by 8 elements (conflict-free fragment loads).
 *  - Every product is mma.sync m16n8k16 bf16 → fp32 through one generic warp routine
 *    (sf_mma) that reads A(m, k) = A[m·ASM + k·ASK] and B(k, n) = B[k·BSK + n·BSN]:
 *    one 32-bit load per pair when the k stride is 1, two 16-bit loads otherwise.
 *  - Score tiles (C·Bᵀ, dy·xᵀ) stay in registers; the decay mask is applied to the
 *    accumulator fragment in fp32 and the result rounded once to bf16 for the next product.
 *    States S_in and dS_out are fp32 in memory and rounded to bf16 as mma operands.
 *  - Masked positions (j > i, rows past the chunk end) are exactly 0 (select, not product).
 *  - Deterministic: no atomics; dB/dC are summed over the group's heads inside one block;
 *    parameter gradients are per-(b, chunk) partials summed in a fixed order.
 * Kernels: decay (warp scan) · chunk_state (P×N per chunk, fwd and bwd flavours) ·
 * state_pass (sequential over chunks, fp32) · chunk_out (fwd output) · bwd_cols (dx, dB,
 * j-side decay grads) · bwd_rows (dC, i-side decay grads, dD rows) · bwd_final (ddt,
 * parameter partials) · param_sum.
 */
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
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
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

__global__ void sf_decay_kernel(float *delta, float *cum, const hk_bf16 *dt, const float *dt_bias,
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

/* ---- chunk_out: y for 64 rows i of one (chunk, h, b) ---------------------------------------- */

template <int N> static size_t sf_out_smem() {
    return sizeof(hk_bf16) * (3 * SF_TILE * (N + 8) + 2 * SF_TILE * SF_LDP) + sizeof(float) * 3 * SF_TILE;
}

template <int N>
__global__ void __launch_bounds__(SF_THREADS)
    sf_chunk_out_kernel(hk_bf16 *y, const float *states, const hk_bf16 *xbc, const float *delta, const float *cum,
                        const float *Dskip, ssd_geom s) {
    constexpr int LDN = N + 8;
    extern __shared__ __align__(16) unsigned char sf_sm[];
    hk_bf16 *Cs = (hk_bf16 *)sf_sm, *Bs = Cs + SF_TILE * LDN, *Ss = Bs + SF_TILE * LDN;
    hk_bf16 *Xs = Ss + SF_P * LDN, *Ms = Xs + SF_TILE * SF_LDP;
    float *cum_i = (float *)(Ms + SF_TILE * SF_LDQ), *cum_j = cum_i + SF_TILE, *dl_j = cum_j + SF_TILE;
    const int itiles = (s.Q + SF_TILE - 1) / SF_TILE;
    const int c = blockIdx.x / itiles, it = blockIdx.x % itiles, h = blockIdx.y, b = blockIdx.z, g = h / s.hpg;
    const int t0 = c * s.Q, L = min(s.Q, s.T - t0), i0 = it * SF_TILE;
    if (i0 >= L) return;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, gr = lane >> 2, t = lane & 3, wr = warp * 16;
    const size_t ob = ((size_t)b * s.H + h) * s.T + t0;
    const hk_bf16 *rows = xbc + ((size_t)b * s.T + t0) * s.W;
    sf_load_rows<N, LDN>(Cs, rows + s.HP + (size_t)(s.G + g) * N, s.W, i0, L);
    sf_load_state<N>(Ss, states + (((size_t)b * s.nc + c) * s.H + h) * s.PN);
    if (threadIdx.x < SF_TILE) cum_i[threadIdx.x] = i0 + threadIdx.x < L ? cum[ob + i0 + threadIdx.x] : 0.0f;
    __syncthreads();
    /* inter-chunk: acc(i, p) = e^{cum_i} Σ_n C_i[n] S_in[p][n]; A(i, n) = Cs[i][n], B(n, p) = Ss[p][n] */
    float acc[SF_P / 8][4];
    sf_zero<SF_P / 8>(acc);
    sf_mma<SF_P / 8, LDN, 1, 1, LDN>(acc, Cs + wr * LDN, Ss, N);
    const float ci0 = cum_i[wr + gr], ci1 = cum_i[wr + gr + 8];
    {
        const float e0 = expf(ci0), e1 = expf(ci1);
#pragma unroll
        for (int nt = 0; nt < SF_P / 8; nt++) acc[nt][0] *= e0, acc[nt][1] *= e0, acc[nt][2] *= e1, acc[nt][3] *= e1;
    }
    /* intra-chunk: acc += M X over the visible column tiles, M = (C Bᵀ) ∘ e^{cum_i − cum_j} Δ_j (j ≤ i) */
    for (int j0 = 0; j0 <= i0; j0 += SF_TILE) {
        __syncthreads(); /* Bs, Xs of the previous tile are consumed */
        sf_load_rows<N, LDN>(Bs, rows + s.HP + (size_t)g * N, s.W, j0, L);
        sf_load_rows<SF_P, SF_LDP>(Xs, rows + (size_t)h * SF_P, s.W, j0, L);
        if (threadIdx.x < SF_TILE) {
            const int j = j0 + threadIdx.x;
            cum_j[threadIdx.x] = j < L ? cum[ob + j] : 0.0f;
            dl_j[threadIdx.x] = j < L ? delta[ob + j] : 0.0f;
        }
        __syncthreads();
        float cb[SF_TILE / 8][4];
        sf_zero<SF_TILE / 8>(cb);
        sf_mma<SF_TILE / 8, LDN, 1, 1, LDN>(cb, Cs + wr * LDN, Bs, N); /* B(n, j) = Bs[j][n] */
#pragma unroll
        for (int nt = 0; nt < SF_TILE / 8; nt++) {
#pragma unroll
            for (int hr = 0; hr < 2; hr++) { /* fragment rows gr (hr 0) and gr + 8 (hr 1) */
                const int il = wr + gr + 8 * hr, i = i0 + il, jl = nt * 8 + 2 * t;
                const float ci = hr ? ci1 : ci0;
                float m[2];
#pragma unroll
                for (int q = 0; q < 2; q++) {
                    const int j = j0 + jl + q;
                    const float e = expf(fminf(ci - cum_j[jl + q], 0.0f));
                    m[q] = (j <= i && i < L && j < L) ? cb[nt][2 * hr + q] * e * dl_j[jl + q] : 0.0f;
                }
                sf_st2(Ms + il * SF_LDQ + jl, m[0], m[1]);
            }
        }
        __syncwarp(); /* each warp reads back only its own 16 rows of Ms */
        sf_mma<SF_P / 8, SF_LDQ, 1, SF_LDP, 1>(acc, Ms + wr * SF_LDQ, Xs, SF_TILE); /* B(j, p) = Xs[j][p] */
    }
    const float Dh = Dskip[h];
#pragma unroll
    for (int nt = 0; nt < SF_P / 8; nt++) {
#pragma unroll
        for (int hr = 0; hr < 2; hr++) {
            const int i = i0 + wr + gr + 8 * hr, p = nt * 8 + 2 * t;
            if (i >= L) continue;
            const __nv_bfloat162 xv =
                *reinterpret_cast<const __nv_bfloat162 *>(rows + (size_t)i * s.W + (size_t)h * SF_P + p);
            sf_st2(y + ((size_t)b * s.T + t0 + i) * s.HP + (size_t)h * SF_P + p,
                   acc[nt][2 * hr] + Dh * __low2float(xv), acc[nt][2 * hr + 1] + Dh * __high2float(xv));
        }
    }
}

/* ---- backward, j side: 64 columns j of one (chunk, group, b), the group's heads in turn ------
 * Per head: U = B_j dSᵀ → dx_j += w_j U_j, dw_j = x_j·U_j, dB_j += w_j x_j dS; then over the
 * row tiles i ≥ j: (C Bᵀ)ᵀ and (dy xᵀ)ᵀ in the [j][i] orientation, Mᵀ, dscoreᵀ, G; dx_j += Mᵀ dy_i,
 * dB_j += dscoreᵀ C_i, colG_j = Σ_i G_ij. Writes dx (with D dy), dB, ddelta_j, the j-side dcum, rlast. */

template <int N> static size_t sf_cols_smem() {
    return sizeof(hk_bf16) * (3 * SF_TILE * (N + 8) + 4 * SF_TILE * SF_LDP) + sizeof(float) * 3 * SF_TILE;
}

template <int N>
__global__ void __launch_bounds__(SF_THREADS)
    sf_bwd_cols_kernel(hk_bf16 *dxbc, float *ddelta, float *dcum_j, float *rlast, const hk_bf16 *dy,
                       const float *dSout, const hk_bf16 *xbc, const float *delta, const float *cum,
                       const float *Dskip, ssd_geom s) {
    constexpr int LDN = N + 8;
    extern __shared__ __align__(16) unsigned char sf_sm[];
    hk_bf16 *Bs = (hk_bf16 *)sf_sm, *Cs = Bs + SF_TILE * LDN, *dSs = Cs + SF_TILE * LDN;
    hk_bf16 *Xs = dSs + SF_P * LDN, *dYs = Xs + SF_TILE * SF_LDP, *MTs = dYs + SF_TILE * SF_LDP;
    hk_bf16 *DTs = MTs + SF_TILE * SF_LDQ;
    float *cum_j = (float *)(DTs + SF_TILE * SF_LDQ), *dl_j = cum_j + SF_TILE, *cum_i = dl_j + SF_TILE;
    const int jtiles = (s.Q + SF_TILE - 1) / SF_TILE;
    const int c = blockIdx.x / jtiles, jt = blockIdx.x % jtiles, g = blockIdx.y, b = blockIdx.z;
    const int t0 = c * s.Q, L = min(s.Q, s.T - t0), j0 = jt * SF_TILE;
    if (j0 >= L) return;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, gr = lane >> 2, t = lane & 3, wr = warp * 16;
    const hk_bf16 *rows = xbc + ((size_t)b * s.T + t0) * s.W;
    sf_load_rows<N, LDN>(Bs, rows + s.HP + (size_t)g * N, s.W, j0, L);
    float accB[N / 8][4];
    sf_zero<N / 8>(accB);
    const int jl0 = wr + gr, jl1 = wr + gr + 8; /* this lane's two fragment rows */
    for (int h = g * s.hpg; h < (g + 1) * s.hpg; h++) {
        const size_t ob = ((size_t)b * s.H + h) * s.T + t0;
        const float last = cum[ob + L - 1];
        __syncthreads(); /* Xs, dSs, cum_j of the previous head are consumed */
        sf_load_rows<SF_P, SF_LDP>(Xs, rows + (size_t)h * SF_P, s.W, j0, L);
        sf_load_state<N>(dSs, dSout + (((size_t)b * s.nc + c) * s.H + h) * s.PN);
        if (threadIdx.x < SF_TILE) {
            const int j = j0 + threadIdx.x;
            cum_j[threadIdx.x] = j < L ? cum[ob + j] : 0.0f;
            dl_j[threadIdx.x] = j < L ? delta[ob + j] : 0.0f;
        }
        __syncthreads();
        /* U(j, p) = Σ_n B_j[n] dS[p][n]: A(j, n) = Bs[j][n], B(n, p) = dSs[p][n] */
        float accX[SF_P / 8][4];
        sf_zero<SF_P / 8>(accX);
        sf_mma<SF_P / 8, LDN, 1, 1, LDN>(accX, Bs + wr * LDN, dSs, N);
        const bool v0 = j0 + jl0 < L, v1 = j0 + jl1 < L;
        const float w0 = v0 ? expf(fminf(last - cum_j[jl0], 0.0f)) * dl_j[jl0] : 0.0f;
        const float w1 = v1 ? expf(fminf(last - cum_j[jl1], 0.0f)) * dl_j[jl1] : 0.0f;
        float dw0 = 0.0f, dw1 = 0.0f;
#pragma unroll
        for (int nt = 0; nt < SF_P / 8; nt++) {
            const int p = nt * 8 + 2 * t;
            const __nv_bfloat162 xa = *reinterpret_cast<const __nv_bfloat162 *>(Xs + jl0 * SF_LDP + p);
            const __nv_bfloat162 xb = *reinterpret_cast<const __nv_bfloat162 *>(Xs + jl1 * SF_LDP + p);
            dw0 += accX[nt][0] * __low2float(xa) + accX[nt][1] * __high2float(xa);
            dw1 += accX[nt][2] * __low2float(xb) + accX[nt][3] * __high2float(xb);
            accX[nt][0] *= w0, accX[nt][1] *= w0, accX[nt][2] *= w1, accX[nt][3] *= w1;
        }
        /* dB_j += w_j Σ_p x_j[p] dS[p][n]: A(j, p) = Xs[j][p], B(p, n) = dSs[p][n], 64 columns n at a time */
#pragma unroll
        for (int half = 0; half < N / 64; half++) {
            float tmp[8][4];
            sf_zero<8>(tmp);
            sf_mma<8, SF_LDP, 1, LDN, 1>(tmp, Xs + wr * SF_LDP, dSs + half * 64, SF_P);
#pragma unroll
            for (int nt = 0; nt < 8; nt++) {
                accB[half * 8 + nt][0] += w0 * tmp[nt][0], accB[half * 8 + nt][1] += w0 * tmp[nt][1];
                accB[half * 8 + nt][2] += w1 * tmp[nt][2], accB[half * 8 + nt][3] += w1 * tmp[nt][3];
            }
        }
        float colG0 = 0.0f, colG1 = 0.0f;
        for (int i0 = j0; i0 < L; i0 += SF_TILE) {
            __syncthreads(); /* Cs, dYs, cum_i of the previous row tile are consumed */
            sf_load_rows<N, LDN>(Cs, rows + s.HP + (size_t)(s.G + g) * N, s.W, i0, L);
            sf_load_rows<SF_P, SF_LDP>(dYs, dy + ((size_t)b * s.T + t0) * s.HP + (size_t)h * SF_P, s.HP, i0, L);
            if (threadIdx.x < SF_TILE) cum_i[threadIdx.x] = i0 + threadIdx.x < L ? cum[ob + i0 + threadIdx.x] : 0.0f;
            __syncthreads();
            float cbT[SF_TILE / 8][4], dmT[SF_TILE / 8][4];
            sf_zero<SF_TILE / 8>(cbT);
            sf_zero<SF_TILE / 8>(dmT);
            sf_mma<SF_TILE / 8, LDN, 1, 1, LDN>(cbT, Bs + wr * LDN, Cs, N);            /* B(n, i) = Cs[i][n] */
            sf_mma<SF_TILE / 8, SF_LDP, 1, 1, SF_LDP>(dmT, Xs + wr * SF_LDP, dYs, SF_P); /* B(p, i) = dYs[i][p] */
#pragma unroll
            for (int nt = 0; nt < SF_TILE / 8; nt++) {
#pragma unroll
                for (int hr = 0; hr < 2; hr++) {
                    const int jl = hr ? jl1 : jl0, j = j0 + jl, il = nt * 8 + 2 * t;
                    const float cj = cum_j[jl], dlj = dl_j[jl];
                    float mt[2], dt2[2];
#pragma unroll
                    for (int q = 0; q < 2; q++) {
                        const int i = i0 + il + q;
                        const bool vis = j <= i && i < L && j < L;
                        const float e = expf(fminf(cum_i[il + q] - cj, 0.0f));
                        const float cbv = cbT[nt][2 * hr + q], dmv = dmT[nt][2 * hr + q];
                        mt[q] = vis ? cbv * e * dlj : 0.0f;
                        dt2[q] = vis ? dmv * e * dlj : 0.0f;
                        const float gg = vis ? dmv * cbv * e : 0.0f;
                        if (hr) colG1 += gg;
                        else colG0 += gg;
                    }
                    sf_st2(MTs + jl * SF_LDQ + il, mt[0], mt[1]);
                    sf_st2(DTs + jl * SF_LDQ + il, dt2[0], dt2[1]);
                }
            }
            __syncwarp(); /* each warp reads back only its own 16 rows of MTs, DTs */
            sf_mma<SF_P / 8, SF_LDQ, 1, SF_LDP, 1>(accX, MTs + wr * SF_LDQ, dYs, SF_TILE); /* B(i, p) = dYs[i][p] */
            sf_mma<N / 8, SF_LDQ, 1, LDN, 1>(accB, DTs + wr * SF_LDQ, Cs, SF_TILE);       /* B(i, n) = Cs[i][n] */
        }
        dw0 = sf_quad_sum(dw0), dw1 = sf_quad_sum(dw1);
        colG0 = sf_quad_sum(colG0), colG1 = sf_quad_sum(colG1);
        const float Dh = Dskip[h];
#pragma unroll
        for (int hr = 0; hr < 2; hr++) {
            const int jl = hr ? jl1 : jl0, j = j0 + jl;
            if (j >= L) continue;
            const size_t row = (size_t)b * s.T + t0 + j;
#pragma unroll
            for (int nt = 0; nt < SF_P / 8; nt++) {
                const int p = nt * 8 + 2 * t;
                const __nv_bfloat162 dv = *reinterpret_cast<const __nv_bfloat162 *>(dy + row * s.HP + (size_t)h * SF_P + p);
                sf_st2(dxbc + row * s.W + (size_t)h * SF_P + p, accX[nt][2 * hr] + Dh * __low2float(dv),
                       accX[nt][2 * hr + 1] + Dh * __high2float(dv));
            }
            if (t == 0) {
                const float dw = hr ? dw1 : dw0, colG = hr ? colG1 : colG0, w = hr ? w1 : w0;
                const float e = expf(fminf(last - cum_j[jl], 0.0f));
                ddelta[ob + j] = dw * e + colG;
                dcum_j[ob + j] = -dw * w - colG * dl_j[jl];
                rlast[ob + j] = dw * w;
            }
        }
    }
#pragma unroll
    for (int hr = 0; hr < 2; hr++) {
        const int j = j0 + (hr ? jl1 : jl0);
        if (j >= L) continue;
        hk_bf16 *dBj = dxbc + ((size_t)b * s.T + t0 + j) * s.W + s.HP + (size_t)g * N;
#pragma unroll
        for (int nt = 0; nt < N / 8; nt++) sf_st2(dBj + nt * 8 + 2 * t, accB[nt][2 * hr], accB[nt][2 * hr + 1]);
    }
}

/* ---- backward, i side: 64 rows i of one (chunk, group, b), the group's heads in turn ---------
 * Per head: Z = dy_i S_in → dC_i += e_i Z_i, dcum_i += e_i C_i·Z_i; over the column tiles j ≤ i:
 * dscore = (dy xᵀ) ∘ e^{cum_i−cum_j} Δ_j, rowG_i = Σ_j dM CB e Δ_j, dC_i += dscore B_j.
 * Writes dC (summed over heads), the i-side dcum and the per-row D gradient. */

template <int N> static size_t sf_rows_smem() {
    return sizeof(hk_bf16) * (3 * SF_TILE * (N + 8) + 3 * SF_TILE * SF_LDP) + sizeof(float) * 3 * SF_TILE;
}

template <int N>
__global__ void __launch_bounds__(SF_THREADS)
    sf_bwd_rows_kernel(hk_bf16 *dxbc, float *dcum_i, float *dDrow, const hk_bf16 *dy, const float *states,
                       const hk_bf16 *xbc, const float *delta, const float *cum, ssd_geom s) {
    constexpr int LDN = N + 8;
    extern __shared__ __align__(16) unsigned char sf_sm[];
    hk_bf16 *Cs = (hk_bf16 *)sf_sm, *Bs = Cs + SF_TILE * LDN, *Ss = Bs + SF_TILE * LDN;
    hk_bf16 *dYs = Ss + SF_P * LDN, *Xs = dYs + SF_TILE * SF_LDP, *DSs = Xs + SF_TILE * SF_LDP;
    float *cum_i = (float *)(DSs + SF_TILE * SF_LDQ), *cum_j = cum_i + SF_TILE, *dl_j = cum_j + SF_TILE;
    const int itiles = (s.Q + SF_TILE - 1) / SF_TILE;
    const int c = blockIdx.x / itiles, it = blockIdx.x % itiles, g = blockIdx.y, b = blockIdx.z;
    const int t0 = c * s.Q, L = min(s.Q, s.T - t0), i0 = it * SF_TILE;
    if (i0 >= L) return;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, gr = lane >> 2, t = lane & 3, wr = warp * 16;
    const hk_bf16 *rows = xbc + ((size_t)b * s.T + t0) * s.W;
    sf_load_rows<N, LDN>(Cs, rows + s.HP + (size_t)(s.G + g) * N, s.W, i0, L);
    float accC[N / 8][4];
    sf_zero<N / 8>(accC);
    const int il0 = wr + gr, il1 = wr + gr + 8;
    for (int h = g * s.hpg; h < (g + 1) * s.hpg; h++) {
        const size_t ob = ((size_t)b * s.H + h) * s.T + t0;
        __syncthreads(); /* dYs, Ss, cum_i of the previous head are consumed */
        sf_load_rows<SF_P, SF_LDP>(dYs, dy + ((size_t)b * s.T + t0) * s.HP + (size_t)h * SF_P, s.HP, i0, L);
        sf_load_state<N>(Ss, states + (((size_t)b * s.nc + c) * s.H + h) * s.PN);
        if (threadIdx.x < SF_TILE) cum_i[threadIdx.x] = i0 + threadIdx.x < L ? cum[ob + i0 + threadIdx.x] : 0.0f;
        __syncthreads();
        const float ci0 = cum_i[il0], ci1 = cum_i[il1];
        const float e0 = i0 + il0 < L ? expf(ci0) : 0.0f, e1 = i0 + il1 < L ? expf(ci1) : 0.0f;
        float dc0 = 0.0f, dc1 = 0.0f;
        /* Z(i, n) = Σ_p dy_i[p] S_in[p][n]: A(i, p) = dYs[i][p], B(p, n) = Ss[p][n], 64 columns at a time */
#pragma unroll
        for (int half = 0; half < N / 64; half++) {
            float tmp[8][4];
            sf_zero<8>(tmp);
            sf_mma<8, SF_LDP, 1, LDN, 1>(tmp, dYs + wr * SF_LDP, Ss + half * 64, SF_P);
#pragma unroll
            for (int nt = 0; nt < 8; nt++) {
                const int n = half * 64 + nt * 8 + 2 * t;
                const __nv_bfloat162 ca = *reinterpret_cast<const __nv_bfloat162 *>(Cs + il0 * LDN + n);
                const __nv_bfloat162 cb = *reinterpret_cast<const __nv_bfloat162 *>(Cs + il1 * LDN + n);
                const float z0 = e0 * tmp[nt][0], z1 = e0 * tmp[nt][1], z2 = e1 * tmp[nt][2], z3 = e1 * tmp[nt][3];
                accC[half * 8 + nt][0] += z0, accC[half * 8 + nt][1] += z1;
                accC[half * 8 + nt][2] += z2, accC[half * 8 + nt][3] += z3;
                dc0 += z0 * __low2float(ca) + z1 * __high2float(ca);
                dc1 += z2 * __low2float(cb) + z3 * __high2float(cb);
            }
        }
        float rowG0 = 0.0f, rowG1 = 0.0f;
        for (int j0 = 0; j0 <= i0; j0 += SF_TILE) {
            __syncthreads(); /* Bs, Xs, cum_j of the previous column tile are consumed */
            sf_load_rows<N, LDN>(Bs, rows + s.HP + (size_t)g * N, s.W, j0, L);
            sf_load_rows<SF_P, SF_LDP>(Xs, rows + (size_t)h * SF_P, s.W, j0, L);
            if (threadIdx.x < SF_TILE) {
                const int j = j0 + threadIdx.x;
                cum_j[threadIdx.x] = j < L ? cum[ob + j] : 0.0f;
                dl_j[threadIdx.x] = j < L ? delta[ob + j] : 0.0f;
            }
            __syncthreads();
            float cb[SF_TILE / 8][4], dm[SF_TILE / 8][4];
            sf_zero<SF_TILE / 8>(cb);
            sf_zero<SF_TILE / 8>(dm);
            sf_mma<SF_TILE / 8, LDN, 1, 1, LDN>(cb, Cs + wr * LDN, Bs, N);             /* B(n, j) = Bs[j][n] */
            sf_mma<SF_TILE / 8, SF_LDP, 1, 1, SF_LDP>(dm, dYs + wr * SF_LDP, Xs, SF_P); /* B(p, j) = Xs[j][p] */
#pragma unroll
            for (int nt = 0; nt < SF_TILE / 8; nt++) {
#pragma unroll
                for (int hr = 0; hr < 2; hr++) {
                    const int il = hr ? il1 : il0, i = i0 + il, jl = nt * 8 + 2 * t;
                    const float ci = hr ? ci1 : ci0;
                    float ds[2];
#pragma unroll
                    for (int q = 0; q < 2; q++) {
                        const int j = j0 + jl + q;
                        const bool vis = j <= i && i < L && j < L;
                        const float e = expf(fminf(ci - cum_j[jl + q], 0.0f)), dlj = dl_j[jl + q];
                        const float dmv = dm[nt][2 * hr + q];
                        ds[q] = vis ? dmv * e * dlj : 0.0f;
                        const float gg = vis ? dmv * cb[nt][2 * hr + q] * e * dlj : 0.0f;
                        if (hr) rowG1 += gg;
                        else rowG0 += gg;
                    }
                    sf_st2(DSs + il * SF_LDQ + jl, ds[0], ds[1]);
                }
            }
            __syncwarp(); /* each warp reads back only its own 16 rows of DSs */
            sf_mma<N / 8, SF_LDQ, 1, LDN, 1>(accC, DSs + wr * SF_LDQ, Bs, SF_TILE); /* B(j, n) = Bs[j][n] */
        }
        dc0 = sf_quad_sum(dc0), dc1 = sf_quad_sum(dc1);
        rowG0 = sf_quad_sum(rowG0), rowG1 = sf_quad_sum(rowG1);
        /* dD per row: Σ_p dy_i[p] x_i[p], the quad's 4 lanes split p */
#pragma unroll
        for (int hr = 0; hr < 2; hr++) {
            const int il = hr ? il1 : il0, i = i0 + il;
            float dd = 0.0f;
            if (i < L) {
                const hk_bf16 *xi = rows + (size_t)i * s.W + (size_t)h * SF_P;
                for (int p = 2 * t; p < SF_P; p += 8) {
                    const __nv_bfloat162 xv = *reinterpret_cast<const __nv_bfloat162 *>(xi + p);
                    const __nv_bfloat162 dv = *reinterpret_cast<const __nv_bfloat162 *>(dYs + il * SF_LDP + p);
                    dd += __low2float(xv) * __low2float(dv) + __high2float(xv) * __high2float(dv);
                }
            }
            dd = sf_quad_sum(dd);
            if (i < L && t == 0) {
                dcum_i[ob + i] = (hr ? dc1 + rowG1 : dc0 + rowG0);
                dDrow[ob + i] = dd;
            }
        }
    }
#pragma unroll
    for (int hr = 0; hr < 2; hr++) {
        const int i = i0 + (hr ? il1 : il0);
        if (i >= L) continue;
        hk_bf16 *dCi = dxbc + ((size_t)b * s.T + t0 + i) * s.W + s.HP + (size_t)(s.G + g) * N;
#pragma unroll
        for (int nt = 0; nt < N / 8; nt++) sf_st2(dCi + nt * 8 + 2 * t, accC[nt][2 * hr], accC[nt][2 * hr + 1]);
    }
}

/* ---- backward: per (chunk, h, b) the decay chain rule → ddt and parameter partials -----------
 * The block sums ⟨dS_out, S_in⟩; then warp 0 walks the chunk from its end in 32-row pieces:
 * da_i = Σ_{k≥i} dcum_k by a warp scan (lane 0 holds the highest row), carried between pieces. */

__global__ void sf_bwd_final_kernel(hk_bf16 *ddt, float *partial, const float *dSout, const float *states,
                                    const float *ddelta, const float *dcum_j, const float *dcum_i, const float *rlast,
                                    const float *dDrow, const hk_bf16 *dt, const float *dt_bias, const float *A_log,
                                    const float *delta, const float *cum, ssd_geom s) {
    const int c = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
    const int t0 = c * s.Q, L = min(s.Q, s.T - t0);
    const size_t so = (((size_t)b * s.nc + c) * s.H + h) * s.PN, ob = ((size_t)b * s.H + h) * s.T + t0;
    float v = 0.0f;
    for (size_t e = threadIdx.x; e < s.PN; e += blockDim.x) v += dSout[so + e] * states[so + e];
    v = block_sum(v);
    if (threadIdx.x >= 32) return;
    const int lane = threadIdx.x;
    const float A = -expf(A_log[h]), bias = dt_bias[h];
    float rs = 0.0f;
    for (int j = lane; j < L; j += 32) rs += rlast[ob + j];
    const float extra = expf(cum[ob + L - 1]) * v + warp_sum(rs);
    float carry = 0.0f, dA = 0.0f, dbias = 0.0f, dD = 0.0f;
    for (int top = L - 1; top >= 0; top -= 32) {
        const int i = top - lane;
        float da = i >= 0 ? dcum_j[ob + i] + dcum_i[ob + i] + (i == L - 1 ? extra : 0.0f) : 0.0f;
#pragma unroll
        for (int off = 1; off < 32; off <<= 1) {
            const float u = __shfl_up_sync(0xffffffffu, da, off);
            if (lane >= off) da += u;
        }
        da += carry;
        carry = __shfl_sync(0xffffffffu, da, 31);
        if (i >= 0) {
            dA += da * delta[ob + i];
            const size_t n = ((size_t)b * s.T + t0 + i) * s.H + h;
            const float du = (ddelta[ob + i] + da * A) * ssd_sigmoid(ld(dt[n]) + bias);
            ddt[n] = st<hk_bf16>(du);
            dbias += du;
            dD += dDrow[ob + i];
        }
    }
    dA = warp_sum(dA), dbias = warp_sum(dbias), dD = warp_sum(dD);
    if (lane == 0) {
        float *pp = partial + (((size_t)h * s.B + b) * s.nc + c) * 3;
        pp[0] = dbias, pp[1] = dA * A, pp[2] = dD;
    }
}

/* ---- host -------------------------------------------------------------------------------------- */

/* 1: run the fast path; 0: a failure was recorded. */
static int sf_check(hk_backend *hk, hk_ssd_dims d, const char *op, const void *p0, const void *p1, const void *p2) {
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

template <int N>
static void sf_fwd(hk_backend *hk, hk_bf16 *y, float *states, const hk_bf16 *xbc, const hk_bf16 *dt,
                   const float *dt_bias, const float *A_log, const float *Dskip, const ssd_geom &s) {
    /* bht rounded up to 4 floats: the state buffers after it are read as float4 */
    const size_t bht = ((size_t)s.B * s.H * s.T + 3) & ~(size_t)3, nst = (size_t)s.B * s.nc * s.H * s.PN;
    float *scr = (float *)hk_cuda_scratch(hk, sizeof(float) * (2 * bht + nst));
    if (!scr) return;
    float *delta = scr, *cum = delta + bht, *local = cum + bht;
    cudaStream_t st_ = hk_cuda_stream(hk);
    const int itiles = (s.Q + SF_TILE - 1) / SF_TILE;
    sf_decay_kernel<<<dim3(s.nc, s.H, s.B), 32, 0, st_>>>(delta, cum, dt, dt_bias, A_log, s);
    if (hk_cuda_check_launch(hk, "ssd_fast_fwd decay")) return;
    sf_chunk_state_kernel<N, false><<<dim3(s.nc, s.H, s.B), SF_THREADS, 0, st_>>>(local, xbc, s.W, xbc, delta, cum, s);
    if (hk_cuda_check_launch(hk, "ssd_fast_fwd chunk states")) return;
    sf_state_pass_kernel<false><<<dim3((unsigned)((s.PN + 255) / 256), s.H, s.B), 256, 0, st_>>>(states, local, cum, s);
    if (hk_cuda_check_launch(hk, "ssd_fast_fwd state passing")) return;
    const size_t smem = sf_out_smem<N>();
    if (!sf_smem_attr(hk, sf_chunk_out_kernel<N>, smem)) return;
    sf_chunk_out_kernel<N><<<dim3(s.nc * itiles, s.H, s.B), SF_THREADS, smem, st_>>>(y, states, xbc, delta, cum,
                                                                                   Dskip, s);
    hk_cuda_check_launch(hk, "ssd_fast_fwd output");
}

template <int N>
static void sf_bwd(hk_backend *hk, hk_bf16 *dxbc, hk_bf16 *ddt, float *ddt_bias, float *dA_log, float *dDskip,
                   const hk_bf16 *dy, const float *states, const hk_bf16 *xbc, const hk_bf16 *dt, const float *dt_bias,
                   const float *A_log, const float *Dskip, const ssd_geom &s) {
    /* bht rounded up to 4 floats: the state buffers after it are read as float4 */
    const size_t bht = ((size_t)s.B * s.H * s.T + 3) & ~(size_t)3, nst = (size_t)s.B * s.nc * s.H * s.PN;
    const size_t npart = (size_t)s.H * s.B * s.nc * 3;
    float *scr = (float *)hk_cuda_scratch(hk, sizeof(float) * (7 * bht + 2 * nst + npart));
    if (!scr) return;
    float *delta = scr, *cum = delta + bht, *ddelta = cum + bht, *dcum_j = ddelta + bht, *dcum_i = dcum_j + bht;
    float *rlast = dcum_i + bht, *dDrow = rlast + bht, *local = dDrow + bht, *dSout = local + nst;
    float *partial = dSout + nst;
    cudaStream_t st_ = hk_cuda_stream(hk);
    const int qtiles = (s.Q + SF_TILE - 1) / SF_TILE;
    sf_decay_kernel<<<dim3(s.nc, s.H, s.B), 32, 0, st_>>>(delta, cum, dt, dt_bias, A_log, s);
    if (hk_cuda_check_launch(hk, "ssd_fast_bwd decay")) return;
    sf_chunk_state_kernel<N, true><<<dim3(s.nc, s.H, s.B), SF_THREADS, 0, st_>>>(local, dy, s.HP, xbc, delta, cum, s);
    if (hk_cuda_check_launch(hk, "ssd_fast_bwd chunk dstates")) return;
    sf_state_pass_kernel<true><<<dim3((unsigned)((s.PN + 255) / 256), s.H, s.B), 256, 0, st_>>>(dSout, local, cum, s);
    if (hk_cuda_check_launch(hk, "ssd_fast_bwd state passing")) return;
    const size_t smem_c = sf_cols_smem<N>(), smem_r = sf_rows_smem<N>();
    if (!sf_smem_attr(hk, sf_bwd_cols_kernel<N>, smem_c)) return;
    sf_bwd_cols_kernel<N><<<dim3(s.nc * qtiles, s.G, s.B), SF_THREADS, smem_c, st_>>>(
        dxbc, ddelta, dcum_j, rlast, dy, dSout, xbc, delta, cum, Dskip, s);
    if (hk_cuda_check_launch(hk, "ssd_fast_bwd columns")) return;
    if (!sf_smem_attr(hk, sf_bwd_rows_kernel<N>, smem_r)) return;
    sf_bwd_rows_kernel<N><<<dim3(s.nc * qtiles, s.G, s.B), SF_THREADS, smem_r, st_>>>(dxbc, dcum_i, dDrow, dy,
                                                                                     states, xbc, delta, cum, s);
    if (hk_cuda_check_launch(hk, "ssd_fast_bwd rows")) return;
    sf_bwd_final_kernel<<<dim3(s.nc, s.H, s.B), 256, 0, st_>>>(ddt, partial, dSout, states, ddelta, dcum_j, dcum_i,
                                                              rlast, dDrow, dt, dt_bias, A_log, delta, cum, s);
    if (hk_cuda_check_launch(hk, "ssd_fast_bwd decay chain")) return;
    ssd_param_sum_kernel<<<(s.H + 127) / 128, 128, 0, st_>>>(ddt_bias, dA_log, dDskip, partial, s.H, s.B * s.nc);
    hk_cuda_check_launch(hk, "ssd_fast_bwd parameters");
}

extern "C" void hk_cuda_ssd_fast_fwd(hk_backend *hk, void *y, void *states, const void *xbc, const void *dt,
                                     const void *dt_bias, const void *A_log, const void *Dskip, hk_ssd_dims d) {
    if (hk->act != HK_BF16) { /* the fp32 parity mode keeps the SIMT kernels */
        hk_cuda_ssd_fwd(hk, y, states, xbc, dt, dt_bias, A_log, Dskip, d);
        return;
    }
    if (!sf_check(hk, d, "ssd_fast_fwd", y, states, xbc)) return;
    const ssd_geom s = ssd_make(d);
    if (d.N == 64)
        sf_fwd<64>(hk, (hk_bf16 *)y, (float *)states, (const hk_bf16 *)xbc, (const hk_bf16 *)dt,
                   (const float *)dt_bias, (const float *)A_log, (const float *)Dskip, s);
    else
        sf_fwd<128>(hk, (hk_bf16 *)y, (float *)states, (const hk_bf16 *)xbc, (const hk_bf16 *)dt,
                    (const float *)dt_bias, (const float *)A_log, (const float *)Dskip, s);
}

extern "C" void hk_cuda_ssd_fast_bwd(hk_backend *hk, void *dxbc, void *ddt, void *ddt_bias, void *dA_log,
                                     void *dDskip, const void *dy, const void *states, const void *xbc, const void *dt,
                                     const void *dt_bias, const void *A_log, const void *Dskip, hk_ssd_dims d) {
    if (hk->act != HK_BF16) {
        hk_cuda_ssd_bwd(hk, dxbc, ddt, ddt_bias, dA_log, dDskip, dy, states, xbc, dt, dt_bias, A_log, Dskip, d);
        return;
    }
    if (!sf_check(hk, d, "ssd_fast_bwd", dxbc, dy, xbc) || !sf_check(hk, d, "ssd_fast_bwd", states, dxbc, dy)) return;
    const ssd_geom s = ssd_make(d);
    if (d.N == 64)
        sf_bwd<64>(hk, (hk_bf16 *)dxbc, (hk_bf16 *)ddt, (float *)ddt_bias, (float *)dA_log, (float *)dDskip,
                   (const hk_bf16 *)dy, (const float *)states, (const hk_bf16 *)xbc, (const hk_bf16 *)dt,
                   (const float *)dt_bias, (const float *)A_log, (const float *)Dskip, s);
    else
        sf_bwd<128>(hk, (hk_bf16 *)dxbc, (hk_bf16 *)ddt, (float *)ddt_bias, (float *)dA_log, (float *)dDskip,
                    (const hk_bf16 *)dy, (const float *)states, (const hk_bf16 *)xbc, (const hk_bf16 *)dt,
                    (const float *)dt_bias, (const float *)A_log, (const float *)Dskip, s);
}

/* The backend's ssd_fwd / ssd_bwd: the tensor-core path where it applies (bf16
 * mode, P = 64, N = 64 or 128, 16-byte aligned buffers), else the SIMT kernels
 * of ssd.cu, which handle every shape and the fp32 parity mode. */
static int sf_applies(hk_backend *hk, hk_ssd_dims d, const void *p0, const void *p1, const void *p2, const void *p3) {
    const uintptr_t bits = (uintptr_t)p0 | (uintptr_t)p1 | (uintptr_t)p2 | (uintptr_t)p3;
    return hk->act == HK_BF16 && d.P == SF_P && (d.N == 64 || d.N == 128) && (bits & 15) == 0 && d.B > 0 &&
           d.T > 0 && d.H > 0 && d.G > 0 && d.chunk > 0 && d.H % d.G == 0 && d.B <= 65535 && d.H <= 65535;
}

extern "C" void hk_cuda_ssd_dispatch_fwd(hk_backend *hk, void *y, void *states, const void *xbc, const void *dt,
                                         const void *dt_bias, const void *A_log, const void *Dskip, hk_ssd_dims d) {
    if (sf_applies(hk, d, y, states, xbc, xbc))
        hk_cuda_ssd_fast_fwd(hk, y, states, xbc, dt, dt_bias, A_log, Dskip, d);
    else
        hk_cuda_ssd_fwd(hk, y, states, xbc, dt, dt_bias, A_log, Dskip, d);
}

extern "C" void hk_cuda_ssd_dispatch_bwd(hk_backend *hk, void *dxbc, void *ddt, void *ddt_bias, void *dA_log,
                                         void *dDskip, const void *dy, const void *states, const void *xbc,
                                         const void *dt, const void *dt_bias, const void *A_log, const void *Dskip,
                                         hk_ssd_dims d) {
    if (sf_applies(hk, d, dxbc, dy, xbc, states))
        hk_cuda_ssd_fast_bwd(hk, dxbc, ddt, ddt_bias, dA_log, dDskip, dy, states, xbc, dt, dt_bias, A_log, Dskip, d);
    else
        hk_cuda_ssd_bwd(hk, dxbc, ddt, ddt_bias, dA_log, dDskip, dy, states, xbc, dt, dt_bias, A_log, Dskip, d);
}

/* The SIMT kernels under C linkage, so the C test can time them beside the fast path. */
extern "C" void hk_cuda_ssd_simt_fwd(hk_backend *hk, void *y, void *states, const void *xbc, const void *dt,
                                     const void *dt_bias, const void *A_log, const void *Dskip, hk_ssd_dims d) {
    hk_cuda_ssd_fwd(hk, y, states, xbc, dt, dt_bias, A_log, Dskip, d);
}
extern "C" void hk_cuda_ssd_simt_bwd(hk_backend *hk, void *dxbc, void *ddt, void *ddt_bias, void *dA_log,
                                     void *dDskip, const void *dy, const void *states, const void *xbc, const void *dt,
                                     const void *dt_bias, const void *A_log, const void *Dskip, hk_ssd_dims d) {
    hk_cuda_ssd_bwd(hk, dxbc, ddt, ddt_bias, dA_log, dDskip, dy, states, xbc, dt, dt_bias, A_log, Dskip, d);
}

extern "C" cudaStream_t hk_cuda_ssd_fast_stream(hk_backend *hk) { return hk_cuda_stream(hk); }
