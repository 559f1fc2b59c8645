/* kernels/cuda/ssd_fast.cu — the Mamba-2 SSD scan (chunked form) with the chunk
 * products on tensor cores: bf16 mode only, P = 64, N in {64, 128}. Same function
 * and same formulas as kernels/cuda/ssd.cu and kernels/cpu/ssd.c:
 *   y_i   = Σ_{j≤i} (C_i·B_j) e^{cum_i−cum_j} Δ_j x_j + e^{cum_i} S_in C_i + D x_i
 *   S_out = e^{cum_last} S_in + Σ_j e^{cum_last−cum_j} Δ_j x_j B_jᵀ
 * with cum the chunk-inclusive cumsum of Δ·A (fp32), every decay an exponent ≤ 0.
 * hk_cuda_ssd_fast_fwd / _bwd have the signatures of hk_cuda_ssd_fwd / _bwd (C linkage, see
 * cuda_ops.h); the backend's ssd_fwd / ssd_bwd are the dispatchers at the end of this file.
 * Files: ssd_fast.cuh (shared helpers and the decay, chunk-state and state-passing kernels),
 * this file (forward, dispatch), ssd_fast_bwd.cu (backward).
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
 * Forward (one design): decay_w · state_local (chunk-local states, all chunks in parallel,
 * cp.async ring, ldmatrix) · state_scan (the short sequential pass over chunks, in place) ·
 * out_group (C·Bᵀ once per (chunk, group), the group's heads looped inside). These support
 * chunks ≤ 256 (qt ≤ 4 row tiles); longer chunks go automatically (no switch) to the legacy
 * kernels: decay · chunk_state · state_pass · chunk_out. hk_cuda_ssd_fast_fwd_kernel_ms times the
 * kernels one by one (test-only). Emulation check without a GPU: tests/cuda/emu/ssd_fast_fwd_emu.cpp.
 */
#include <stdlib.h>

#include "kernels/cuda/ssd_fast.cuh"

/* ==== forward: decay_w · state_local · state_scan · out_group ==================================
 * Bytes at B 4, T 8192, H 24, P 64, N 128, G 1, Q 256: state_local reads x 100.7 MB (+ B, w) and
 * writes the fp32 local states 96 MB; state_scan reads them and writes `states` fp32 100.7 MB and
 * the bf16 copy `sbf` 50.3 MB for out_group; out_group reads xbc 117 MB + sbf 50 MB + Δ/cum 6 MB and
 * writes y 100.7 MB (24 heads × 9.4 MFLOP + C·Bᵀ 12.6 MFLOP per (b, chunk) = 30.5 GFLOP).
 *
 * decay_w: sf_decay_kernel plus the chunk-state weight w_j = e^{cum_last − cum_j} Δ_j. */
static __global__ void sf_decay_w_kernel(float *delta, float *cum, float *wst, const hk_bf16 *dt,
                                         const float *dt_bias, const float *A_log, ssd_geom s) {
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
        carry = __shfl_sync(0xffffffffu, v, 31); /* lanes past L add 0: carry ends as cum[L − 1] */
    }
    for (int i = lane; i < L; i += 32) wst[o + i] = expf(fminf(carry - cum[o + i], 0.0f)) * delta[o + i];
}

/* ---- two-phase state: chunk-local states, all chunks in parallel, then a short scan ----------
 * A single state kernel walking the chunks in sequence per block was latency-bound on that chain
 * (0.280 ms at B 4 T 8192, floor 0.088; removed). Here the chain is split:
 *  (a) state_local: block per (chunk c < nc − 1, group of up to SF_LOC_HB heads of one B group,
 *      b), 8 warps; the chunk's B rows stay in shared memory for all its heads, the heads' 64-row
 *      x tiles stream through a cp.async ring. local[c] = Σ_j w_j x_jᵀ B_j (P × N) goes into the
 *      slot S_in[c + 1] occupies later in `states` (fp32; bf16 locals saved 0.01 ms of 0.39 and
 *      cost accuracy: removed). The last chunk's local state feeds nothing in the forward and is
 *      not computed; every chunk computed is full (L = Q).
 *  (b) state_scan: one thread per 4 state entries of (h, b), in place over the chunks:
 *      S_in[0] = 0, S_in[c] = e^{cum_last[c − 1]} S_in[c − 1] + local[c − 1], written to `states`
 *      (fp32) and `sbf` (bf16). 8 chunks' loads issued before their stores: the chain's
 *      latency is paid once per 8 chunks, not per chunk.
 * Warp w of (a) owns state rows 16·(w & 3) .. +15 and the N/2 columns of half w >> 2. */
#define SF_LOC_HB 4     /* heads per state_local block (they share the chunk's B rows) */
#define SF_LOC_STAGES 4 /* x ring depth: 3 tiles in flight */
#define SF_SCAN_BATCH 8 /* chunks whose loads state_scan issues together */

template <int N> __host__ __device__ constexpr size_t sf_loc_smem(int qt) {
    return (size_t)qt * SF_TILE * (N + 8) * sizeof(hk_bf16) +
           (size_t)SF_LOC_STAGES * (SF_TILE * SF_LDP * sizeof(hk_bf16) + SF_TILE * sizeof(float));
}

template <int N>
__global__ void __launch_bounds__(2 * SF_THREADS)
    sf_state_local_kernel(float *states, const hk_bf16 *xbc, const float *wst, ssd_geom s) {
    constexpr int LDN = N + 8, NW = N / 2, NT = NW / 8;
    SF_DYN_SMEM(sf_sm);
    const int qt = (s.Q + SF_TILE - 1) / SF_TILE, hgb = (s.hpg + SF_LOC_HB - 1) / SF_LOC_HB;
    const int c = blockIdx.x, g = blockIdx.y / hgb, hb0 = (blockIdx.y % hgb) * SF_LOC_HB, b = blockIdx.z;
    const int nh = min(SF_LOC_HB, s.hpg - hb0), h0 = g * s.hpg + hb0, total = nh * qt;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, gr = lane >> 2, t = lane & 3;
    const int strip = warp & 3, nw0 = (warp >> 2) * NW, t0 = c * s.Q, L = s.Q; /* c < nc − 1: full */
    hk_bf16 *Bs = (hk_bf16 *)sf_sm, *Xs = Bs + qt * SF_TILE * LDN;
    float *Ws = (float *)(Xs + SF_LOC_STAGES * SF_TILE * SF_LDP);
    const hk_bf16 *xr = xbc + ((size_t)b * s.T + t0) * s.W;
    /* the chunk's B rows (zeros past L), committed with item 0 */
    for (int idx = tid; idx < qt * SF_TILE * (N / 8); idx += 2 * SF_THREADS) {
        const int r = idx / (N / 8), v = idx % (N / 8);
        const bool ok = r < L;
        sf_cp16(Bs + r * LDN + v * 8, xr + (size_t)(ok ? r : 0) * s.W + s.HP + (size_t)g * N + v * 8, ok);
    }
    auto issue = [&](int k) {
        if (k < total) {
            const int h = h0 + k / qt, j0 = (k % qt) * SF_TILE, st = k % SF_LOC_STAGES;
            hk_bf16 *xs = Xs + st * SF_TILE * SF_LDP;
            for (int idx = tid; idx < SF_TILE * 8; idx += 2 * SF_THREADS) {
                const int r = idx >> 3, v = idx & 7;
                const bool ok = j0 + r < L;
                sf_cp16(xs + r * SF_LDP + v * 8, xr + (size_t)(ok ? j0 + r : 0) * s.W + (size_t)h * SF_P + v * 8, ok);
            }
            if (tid < SF_TILE) {
                const bool ok = j0 + tid < L;
                sf_cp4(Ws + st * SF_TILE + tid, wst + ((size_t)b * s.H + h) * s.T + t0 + (ok ? j0 + tid : 0), ok);
            }
        }
        sf_cp_commit(); /* one group per item, also past the end: the wait counts stay uniform */
    };
    float acc[NT][4];
    sf_zero<NT>(acc);
#pragma unroll
    for (int k = 0; k < SF_LOC_STAGES - 1; k++) issue(k);
    for (int k = 0; k < total; k++) {
        sf_cp_wait(SF_LOC_STAGES - 2); /* this thread's copies of item k (and B) have landed */
        __syncthreads();               /* everyone's have; item k − 1's stage is consumed */
        issue(k + SF_LOC_STAGES - 1);
        const int jt = k % qt, j0 = jt * SF_TILE, st = k % SF_LOC_STAGES;
        const hk_bf16 *xs = Xs + st * SF_TILE * SF_LDP;
        const float *ws = Ws + st * SF_TILE;
        const int ksteps = min(4, (L - j0 + 15) >> 4); /* rows past L are zeros: skip whole k-steps of them */
#pragma unroll
        for (int kk = 0; kk < 4; kk++) {
            if (kk >= ksteps) break;
            uint32_t a[4];
            sf_ldA_t(a, xs, SF_LDP, kk * 16, strip * 16); /* A(p, j) = x[j][p] */
            const float w0 = ws[kk * 16 + 2 * t], w1 = ws[kk * 16 + 2 * t + 1];
            const float w8 = ws[kk * 16 + 2 * t + 8], w9 = ws[kk * 16 + 2 * t + 9];
            a[0] = sf_scale2(a[0], w0, w1), a[1] = sf_scale2(a[1], w0, w1);
            a[2] = sf_scale2(a[2], w8, w9), a[3] = sf_scale2(a[3], w8, w9);
#pragma unroll
            for (int q = 0; q < NT / 2; q++) {
                uint32_t bq[4];
                sf_ldB_t(bq, Bs, LDN, j0 + kk * 16, nw0 + q * 16); /* B(j, n) = B[j][n] */
                sf_mma16816(acc[2 * q], a[0], a[1], a[2], a[3], bq[0], bq[1]);
                sf_mma16816(acc[2 * q + 1], a[0], a[1], a[2], a[3], bq[2], bq[3]);
            }
        }
        if (jt == qt - 1) { /* the head's last tile: local[c] into slot c + 1 */
            const size_t so = (((size_t)b * s.nc + c + 1) * s.H + h0 + k / qt) * s.PN;
#pragma unroll
            for (int nt = 0; nt < NT; nt++) {
                const int p = strip * 16 + gr, n = nw0 + nt * 8 + 2 * t;
                *reinterpret_cast<float2 *>(states + so + (size_t)p * N + n) = make_float2(acc[nt][0], acc[nt][1]);
                *reinterpret_cast<float2 *>(states + so + (size_t)(p + 8) * N + n) = make_float2(acc[nt][2], acc[nt][3]);
            }
            sf_zero<NT>(acc);
        }
    }
}

__global__ void __launch_bounds__(256) sf_state_scan_kernel(float *states, hk_bf16 *sbf, const float *cum, ssd_geom s) {
    const size_t e = 4 * ((size_t)blockIdx.x * blockDim.x + threadIdx.x);
    const int h = blockIdx.y, b = blockIdx.z;
    if (e >= s.PN) return;
    const size_t bh = ((size_t)b * s.H + h) * s.T, cs = (size_t)s.H * s.PN; /* slot stride over chunks */
    const size_t o = ((size_t)b * s.nc * s.H + h) * s.PN + e;             /* slot 0 */
    float4 S = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    *reinterpret_cast<float4 *>(states + o) = S;
    *reinterpret_cast<uint2 *>(sbf + o) = make_uint2(0u, 0u);
    for (int c0 = 1; c0 < s.nc; c0 += SF_SCAN_BATCH) {
        float4 v[SF_SCAN_BATCH]; /* local states */
        float last[SF_SCAN_BATCH]; /* exponentiated after the batch's loads: no use waits inside them */
#pragma unroll
        for (int k = 0; k < SF_SCAN_BATCH; k++) {
            const int c = c0 + k;
            if (c >= s.nc) break;
            v[k] = *reinterpret_cast<const float4 *>(states + o + c * cs);
            last[k] = cum[bh + (size_t)c * s.Q - 1]; /* chunk c − 1 is full: its last row is c·Q − 1 */
        }
#pragma unroll
        for (int k = 0; k < SF_SCAN_BATCH; k++) {
            const int c = c0 + k;
            if (c >= s.nc) break;
            const float dec = expf(last[k]);
            const float4 l = v[k];
            S.x = dec * S.x + l.x, S.y = dec * S.y + l.y;
            S.z = dec * S.z + l.z, S.w = dec * S.w + l.w;
            *reinterpret_cast<float4 *>(states + o + c * cs) = S;
            *reinterpret_cast<uint2 *>(sbf + o + c * cs) = make_uint2(sf_pack(S.x, S.y), sf_pack(S.z, S.w));
        }
    }
}

/* ---- out_group: y for two 64-row tiles of one (chunk, group, b), every head of the group ----
 * Block (tile pair, chunk) × group × b, 8 warps = 2 head groups of 4 warps (even / odd heads of
 * the group, each with its own x / S buffers and named barrier, so one's loads overlap the
 * other's products). Tiles ta = pr and tb = qt − 1 − pr pair a cheap and an expensive row tile;
 * warp w owns strip w of ta and strip 3 − w of tb (16 rows each: equal work per warp).
 * C·Bᵀ of the strips is computed once per block and shared by the heads:
 *  - the diagonal tile (fp32, in registers) gets the per-head mask e^{cum_i − cum_j} Δ_j (j ≤ i)
 *    and goes straight into the A fragments of the next product;
 *  - columns left of the tile (j < i0, bf16 in shared memory) factor through the tile's first
 *    row: e^{cum_i − cum_j} = e^{cum_i − cum_i0} · e^{cum_i0 − cum_j}, both exponents ≤ 0
 *    (so an underflow only drops what is smaller still), the column factor scales the A
 *    fragments, the row factor the accumulator, which also carries e^{cum_i} C_i S_inᵀ =
 *    e^{cum_i − cum_i0} · e^{cum_i0} (C S_inᵀ)_i.
 * Supports Q ≤ 256 (qt ≤ 4 row tiles). */
template <int N> __host__ __device__ static size_t sf_og_group_bytes(int qt) {
    return sizeof(hk_bf16) * ((size_t)qt * SF_TILE * SF_LDP + (size_t)SF_P * (N + 8)) +
           sizeof(float) * 4 * (size_t)qt * SF_TILE;
}
/* y goes out through a per-warp staging strip in shared memory (16 rows × 64, padded), one
 * 16-byte store per lane per quarter row instead of 4-byte fragment stores (8 rows × 16 bytes per
 * warp instruction); the strip sits after the head-group buffers. */
#define SF_OG_YST_BYTES (2 * 4 * 16 * SF_LDP * sizeof(hk_bf16)) /* 8 warps × 16 rows */
template <int N> __host__ __device__ static size_t sf_og_main_bytes(int qt) {
    const size_t head = sizeof(hk_bf16) * (2 * (size_t)SF_TILE * (N + 8) + (size_t)SF_TILE * ((qt - 1) * SF_TILE + 16));
    const size_t groups = 2 * sf_og_group_bytes<N>(qt), bs = sizeof(hk_bf16) * (size_t)qt * SF_TILE * (N + 8);
    return head + (groups > bs ? groups : bs);
}
template <int N> static size_t sf_og_smem(int qt) { return sf_og_main_bytes<N>(qt) + SF_OG_YST_BYTES; }

template <int N>
__global__ void __launch_bounds__(2 * SF_THREADS)
    sf_out_group_kernel(hk_bf16 *y, const hk_bf16 *sbf, const hk_bf16 *xbc, const float *delta, const float *cum,
                        const float *Dskip, ssd_geom s) {
    constexpr int LDN = N + 8, KN = N / 16;
    SF_DYN_SMEM(sf_sm);
    const int qt = (s.Q + SF_TILE - 1) / SF_TILE, np = (qt + 1) / 2;
    const int c = blockIdx.x / np, pr = blockIdx.x % np, g = blockIdx.y, b = blockIdx.z;
    const int ta = pr, tb = qt - 1 - pr, t0 = c * s.Q, L = min(s.Q, s.T - t0);
    if (ta * SF_TILE >= L) return; /* both tiles past the (short) last chunk */
    const bool two = ta != tb;
    const int tid = threadIdx.x, warp = tid >> 5, grp = warp >> 2, w = warp & 3, lane = tid & 31, gr = lane >> 2,
              t = lane & 3;
    const int rows = (tb + 1) * SF_TILE; /* x and B rows this block reads */
    const int ld0 = ta * SF_TILE + 8, ld1 = tb * SF_TILE + 8;
    hk_bf16 *Cs = (hk_bf16 *)sf_sm, *CBo = Cs + 2 * SF_TILE * LDN;
    unsigned char *gbase = (unsigned char *)(CBo + SF_TILE * ((qt - 1) * SF_TILE + 16));
    hk_bf16 *Bs = (hk_bf16 *)gbase; /* prologue only: aliases the head groups' buffers */
    const hk_bf16 *xr = xbc + ((size_t)b * s.T + t0) * s.W;

    /* prologue: C rows of the two tiles, B rows 0 .. rows (zeros past L) */
    for (int idx = tid; idx < 2 * SF_TILE * (N / 8); idx += 2 * SF_THREADS) {
        const int tile = idx / (SF_TILE * (N / 8)), r = (idx / (N / 8)) % SF_TILE, v = idx % (N / 8);
        const int i = (tile ? tb : ta) * SF_TILE + r;
        const bool ok = i < L;
        sf_cp16(Cs + (tile * SF_TILE + r) * LDN + v * 8, xr + (size_t)(ok ? i : 0) * s.W + s.HP + (size_t)(s.G + g) * N + v * 8,
                ok);
    }
    for (int idx = tid; idx < rows * (N / 8); idx += 2 * SF_THREADS) {
        const int r = idx / (N / 8), v = idx % (N / 8);
        const bool ok = r < L;
        sf_cp16(Bs + r * LDN + v * 8, xr + (size_t)(ok ? r : 0) * s.W + s.HP + (size_t)g * N + v * 8, ok);
    }
    sf_cp_commit();
    sf_cp_wait(0);
    __syncthreads();

    /* C·Bᵀ of this warp's strips: the diagonal tile into cbd (only the column blocks a strip
     * can see), the columns left of the tile (group s computes strip s) into CBo as bf16 */
    float cbd[2][8][4];
#pragma unroll
    for (int sI = 0; sI < 2; sI++) {
        sf_zero<8>(cbd[sI]);
        const int T = sI ? tb : ta, ws = sI ? 3 - w : w, r0 = T * SF_TILE + ws * 16;
        if ((sI == 1 && !two) || r0 >= L) continue;
        const hk_bf16 *Cst = Cs + sI * SF_TILE * LDN;
        for (int kk = 0; kk < KN; kk++) {
            uint32_t a[4];
            sf_ldA(a, Cst, LDN, ws * 16, kk * 16);
#pragma unroll
            for (int q = 0; q < 4; q++) {
                if (q > ws) break;
                uint32_t bq[4];
                sf_ldB(bq, Bs, LDN, T * SF_TILE + q * 16, kk * 16); /* B(n, j) = B[j][n] */
                sf_mma16816(cbd[sI][2 * q], a[0], a[1], a[2], a[3], bq[0], bq[1]);
                sf_mma16816(cbd[sI][2 * q + 1], a[0], a[1], a[2], a[3], bq[2], bq[3]);
            }
        }
        if (grp != sI) continue;
        hk_bf16 *cbo = sI ? CBo + SF_TILE * ld0 : CBo;
        const int ldc = sI ? ld1 : ld0;
        for (int jt = 0; jt < T; jt++) {
            float tmp[8][4];
            sf_zero<8>(tmp);
            for (int kk = 0; kk < KN; kk++) {
                uint32_t a[4];
                sf_ldA(a, Cst, LDN, ws * 16, kk * 16);
#pragma unroll
                for (int q = 0; q < 4; q++) {
                    uint32_t bq[4];
                    sf_ldB(bq, Bs, LDN, jt * SF_TILE + q * 16, kk * 16);
                    sf_mma16816(tmp[2 * q], a[0], a[1], a[2], a[3], bq[0], bq[1]);
                    sf_mma16816(tmp[2 * q + 1], a[0], a[1], a[2], a[3], bq[2], bq[3]);
                }
            }
#pragma unroll
            for (int nt = 0; nt < 8; nt++) {
                const int col = jt * SF_TILE + nt * 8 + 2 * t;
                sf_st2(cbo + (ws * 16 + gr) * ldc + col, tmp[nt][0], tmp[nt][1]);
                sf_st2(cbo + (ws * 16 + gr + 8) * ldc + col, tmp[nt][2], tmp[nt][3]);
            }
        }
    }
    __syncthreads(); /* CBo complete; Bs consumed (its space becomes the head buffers) */

    const int ra = qt * SF_TILE; /* rows allocated per head buffer */
    hk_bf16 *Xs = (hk_bf16 *)(gbase + grp * sf_og_group_bytes<N>(qt)), *Ss = Xs + ra * SF_LDP;
    float *cumS = (float *)(Ss + SF_P * LDN), *dlS = cumS + ra, *col0 = dlS + ra, *col1 = col0 + ra;
    const int gt = tid & (SF_THREADS - 1), bar = 1 + grp;
    hk_bf16 *Ys = (hk_bf16 *)(sf_sm + sf_og_main_bytes<N>(qt)) + warp * 16 * SF_LDP; /* this warp's y strip */
    for (int hh = grp; hh < s.hpg; hh += 2) {
        const int h = g * s.hpg + hh;
        sf_bar(bar, SF_THREADS); /* the previous head's reads of this group's buffers are done */
        for (int idx = gt; idx < rows * 8; idx += SF_THREADS) {
            const int r = idx >> 3, v = idx & 7;
            const bool ok = r < L;
            sf_cp16(Xs + r * SF_LDP + v * 8, xr + (size_t)(ok ? r : 0) * s.W + (size_t)h * SF_P + v * 8, ok);
        }
        const hk_bf16 *sg = sbf + (((size_t)b * s.nc + c) * s.H + h) * s.PN;
        for (int idx = gt; idx < SF_P * (N / 8); idx += SF_THREADS) {
            const int p = idx / (N / 8), v = idx % (N / 8);
            sf_cp16(Ss + p * LDN + v * 8, sg + (size_t)p * N + v * 8, true);
        }
        const size_t ob = ((size_t)b * s.H + h) * s.T + t0;
        for (int i = gt; i < rows; i += SF_THREADS) {
            const bool ok = i < L;
            sf_cp4(cumS + i, cum + ob + (ok ? i : 0), ok);
            sf_cp4(dlS + i, delta + ob + (ok ? i : 0), ok);
        }
        sf_cp_commit();
        sf_cp_wait(0);
        sf_bar(bar, SF_THREADS);
        /* column factors e^{cum_i0 − cum_j} Δ_j of the columns left of each tile */
        for (int j = gt; j < tb * SF_TILE; j += SF_THREADS) {
            const float cj = cumS[j], dj = dlS[j];
            if (j < ta * SF_TILE) col0[j] = expf(fminf(cumS[ta * SF_TILE] - cj, 0.0f)) * dj;
            col1[j] = expf(fminf(cumS[tb * SF_TILE] - cj, 0.0f)) * dj;
        }
        sf_bar(bar, SF_THREADS);
        const float Dh = Dskip[h];
#pragma unroll
        for (int sI = 0; sI < 2; sI++) {
            const int T = sI ? tb : ta, ws = sI ? 3 - w : w, i0 = T * SF_TILE, r0 = i0 + ws * 16;
            if ((sI == 1 && !two) || r0 >= L) continue;
            const hk_bf16 *Cst = Cs + sI * SF_TILE * LDN, *cbo = sI ? CBo + SF_TILE * ld0 : CBo;
            const int ldc = sI ? ld1 : ld0;
            const float *col = sI ? col1 : col0;
            float acc[8][4];
            sf_zero<8>(acc);
            /* inter-chunk: (C S_inᵀ)(i, p), A(i, n) = C[i][n], B(n, p) = S[p][n] */
            for (int kk = 0; kk < KN; kk++) {
                uint32_t a[4];
                sf_ldA(a, Cst, LDN, ws * 16, kk * 16);
#pragma unroll
                for (int q = 0; q < 4; q++) {
                    uint32_t bq[4];
                    sf_ldB(bq, Ss, LDN, q * 16, kk * 16);
                    sf_mma16816(acc[2 * q], a[0], a[1], a[2], a[3], bq[0], bq[1]);
                    sf_mma16816(acc[2 * q + 1], a[0], a[1], a[2], a[3], bq[2], bq[3]);
                }
            }
            const float ci = cumS[i0], e0 = expf(ci);
#pragma unroll
            for (int nt = 0; nt < 8; nt++) acc[nt][0] *= e0, acc[nt][1] *= e0, acc[nt][2] *= e0, acc[nt][3] *= e0;
            /* columns left of the tile: A = CB[i][j] · col_j, B(j, p) = x[j][p] */
            for (int kk = 0; kk < 4 * T; kk++) {
                uint32_t a[4];
                sf_ldA(a, cbo, ldc, ws * 16, kk * 16);
                const int j = kk * 16 + 2 * t;
                const float w0 = col[j], w1 = col[j + 1], w8 = col[j + 8], w9 = col[j + 9];
                a[0] = sf_scale2(a[0], w0, w1), a[1] = sf_scale2(a[1], w0, w1);
                a[2] = sf_scale2(a[2], w8, w9), a[3] = sf_scale2(a[3], w8, w9);
#pragma unroll
                for (int q = 0; q < 4; q++) {
                    uint32_t bq[4];
                    sf_ldB_t(bq, Xs, SF_LDP, kk * 16, q * 16);
                    sf_mma16816(acc[2 * q], a[0], a[1], a[2], a[3], bq[0], bq[1]);
                    sf_mma16816(acc[2 * q + 1], a[0], a[1], a[2], a[3], bq[2], bq[3]);
                }
            }
            const int il0 = ws * 16 + gr, il1 = il0 + 8; /* tile-local rows of this lane */
            const float c0 = cumS[i0 + il0], c1 = cumS[i0 + il1];
            {
                const float f0 = expf(fminf(c0 - ci, 0.0f)), f1 = expf(fminf(c1 - ci, 0.0f));
#pragma unroll
                for (int nt = 0; nt < 8; nt++) acc[nt][0] *= f0, acc[nt][1] *= f0, acc[nt][2] *= f1, acc[nt][3] *= f1;
            }
            /* diagonal tile: M = CB ∘ e^{cum_i − cum_j} Δ_j (j ≤ i, else exactly 0), k-steps up to the strip */
#pragma unroll
            for (int kk = 0; kk < 4; kk++) {
                if (kk > ws) break;
                uint32_t a[4];
#pragma unroll
                for (int half = 0; half < 2; half++) {
                    const int nt = 2 * kk + half, jl = nt * 8 + 2 * t;
                    float m[4];
#pragma unroll
                    for (int q = 0; q < 2; q++) {
                        const float cj = cumS[i0 + jl + q], dj = dlS[i0 + jl + q];
                        m[q] = jl + q <= il0 ? cbd[sI][nt][q] * expf(fminf(c0 - cj, 0.0f)) * dj : 0.0f;
                        m[2 + q] = jl + q <= il1 ? cbd[sI][nt][2 + q] * expf(fminf(c1 - cj, 0.0f)) * dj : 0.0f;
                    }
                    a[2 * half] = sf_pack(m[0], m[1]);     /* row gr:     k = 8·half + 2t, +1 */
                    a[2 * half + 1] = sf_pack(m[2], m[3]); /* row gr + 8 */
                }
#pragma unroll
                for (int q = 0; q < 4; q++) {
                    uint32_t bq[4];
                    sf_ldB_t(bq, Xs, SF_LDP, i0 + kk * 16, q * 16);
                    sf_mma16816(acc[2 * q], a[0], a[1], a[2], a[3], bq[0], bq[1]);
                    sf_mma16816(acc[2 * q + 1], a[0], a[1], a[2], a[3], bq[2], bq[3]);
                }
            }
            /* acc + D x into the strip, then 16-byte rows out: lane l stores quarter l & 7 of rows
             * l >> 3, +4, +8, +12 (8 lanes cover one 128-byte row) */
#pragma unroll
            for (int hr = 0; hr < 2; hr++) {
                const int il = gr + 8 * hr, i = r0 + il;
#pragma unroll
                for (int nt = 0; nt < 8; nt++) {
                    const int p = nt * 8 + 2 * t;
                    const uint32_t xv = *reinterpret_cast<const uint32_t *>(Xs + i * SF_LDP + p);
                    sf_st2(Ys + il * SF_LDP + p, acc[nt][2 * hr] + Dh * sf_lo(xv),
                           acc[nt][2 * hr + 1] + Dh * sf_hi(xv));
                }
            }
            __syncwarp();
#pragma unroll
            for (int rr = 0; rr < 4; rr++) {
                const int il = (lane >> 3) + 4 * rr, i = r0 + il, v = lane & 7;
                if (i < L)
                    *reinterpret_cast<uint4 *>(y + ((size_t)b * s.T + t0 + i) * s.HP + (size_t)h * SF_P + v * 8) =
                        *reinterpret_cast<const uint4 *>(Ys + il * SF_LDP + v * 8);
            }
            __syncwarp(); /* the strip is read out before the next strip or head writes it */
        }
    }
}

#ifndef SF_EMU /* the emulation harness compiles only the kernels above */

/* ==== legacy forward: chunks longer than 256 (out_group supports qt ≤ 4) ========================
 * decay · chunk_state (fp32 local states) · state_pass · chunk_out (C·Bᵀ per head). */

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

/* ---- host -------------------------------------------------------------------------------------- */

/* ev (timing, test-only; else NULL): ev[k] is recorded before kernel k and ev[nk] after the last. */
#define SF_REC(k)                                                                                               \
    do {                                                                                                        \
        if (ev) cudaEventRecord(ev[k], st_);                                                                    \
    } while (0)

template <int N>
static void sf_fwd_legacy(hk_backend *hk, hk_bf16 *y, float *states, const hk_bf16 *xbc, const hk_bf16 *dt,
                          const float *dt_bias, const float *A_log, const float *Dskip, const ssd_geom &s,
                          cudaEvent_t *ev) {
    /* bht rounded up to 4 floats: the state buffers after it are read as float4 */
    const size_t bht = ((size_t)s.B * s.H * s.T + 3) & ~(size_t)3, nst = (size_t)s.B * s.nc * s.H * s.PN;
    float *scr = (float *)hk_cuda_scratch(hk, sizeof(float) * (2 * bht + nst));
    if (!scr) return;
    float *delta = scr, *cum = delta + bht, *local = cum + bht;
    cudaStream_t st_ = hk_cuda_stream(hk);
    const int itiles = (s.Q + SF_TILE - 1) / SF_TILE;
    const size_t smem = sf_out_smem<N>();
    if (!sf_smem_attr(hk, sf_chunk_out_kernel<N>, smem)) return;
    SF_REC(0);
    sf_decay_kernel<<<dim3(s.nc, s.H, s.B), 32, 0, st_>>>(delta, cum, dt, dt_bias, A_log, s);
    if (hk_cuda_check_launch(hk, "ssd_fast_fwd decay")) return;
    SF_REC(1);
    sf_chunk_state_kernel<N, false><<<dim3(s.nc, s.H, s.B), SF_THREADS, 0, st_>>>(local, xbc, s.W, xbc, delta, cum, s);
    if (hk_cuda_check_launch(hk, "ssd_fast_fwd chunk states")) return;
    SF_REC(2);
    sf_state_pass_kernel<false><<<dim3((unsigned)((s.PN + 255) / 256), s.H, s.B), 256, 0, st_>>>(states, local, cum, s);
    if (hk_cuda_check_launch(hk, "ssd_fast_fwd state passing")) return;
    SF_REC(3);
    sf_chunk_out_kernel<N><<<dim3(s.nc * itiles, s.H, s.B), SF_THREADS, smem, st_>>>(y, states, xbc, delta, cum,
                                                                                   Dskip, s);
    if (hk_cuda_check_launch(hk, "ssd_fast_fwd output")) return;
    SF_REC(4);
}

/* the legacy kernels for chunks the new ones do not support */
static int sf_fwd_is_legacy(const ssd_geom &s) { return s.Q > 4 * SF_TILE; }

/* state_local · state_scan; SF_REC(2) between them (ev: timing, else NULL) */
template <int N>
static int sf_launch_state(hk_backend *hk, cudaStream_t st_, float *states, hk_bf16 *sbf, const hk_bf16 *xbc,
                           const float *wst, const float *cum, const ssd_geom &s, cudaEvent_t *ev) {
    const int qt = (s.Q + SF_TILE - 1) / SF_TILE, hgb = (s.hpg + SF_LOC_HB - 1) / SF_LOC_HB;
    const size_t smem = sf_loc_smem<N>(qt);
    if (!sf_smem_attr(hk, sf_state_local_kernel<N>, smem)) return 0;
    if (s.nc > 1) { /* the last chunk's local state is not needed */
        sf_state_local_kernel<N><<<dim3(s.nc - 1, s.G * hgb, s.B), 2 * SF_THREADS, smem, st_>>>(states, xbc, wst, s);
        if (hk_cuda_check_launch(hk, "ssd_fast_fwd local states")) return 0;
    }
    SF_REC(2);
    sf_state_scan_kernel<<<dim3((unsigned)((s.PN / 4 + 255) / 256), s.H, s.B), 256, 0, st_>>>(states, sbf, cum, s);
    return !hk_cuda_check_launch(hk, "ssd_fast_fwd state scan");
}

template <int N>
static int sf_launch_out_group(hk_backend *hk, cudaStream_t st_, hk_bf16 *y, const hk_bf16 *sbf, const hk_bf16 *xbc,
                               const float *delta, const float *cum, const float *Dskip, const ssd_geom &s) {
    const int qt = (s.Q + SF_TILE - 1) / SF_TILE, np = (qt + 1) / 2;
    const size_t smem = sf_og_smem<N>(qt);
    if (!sf_smem_attr(hk, sf_out_group_kernel<N>, smem)) return 0;
    sf_out_group_kernel<N><<<dim3(s.nc * np, s.G, s.B), 2 * SF_THREADS, smem, st_>>>(y, sbf, xbc, delta, cum, Dskip,
                                                                                    s);
    return !hk_cuda_check_launch(hk, "ssd_fast_fwd output");
}

template <int N>
static void sf_fwd(hk_backend *hk, hk_bf16 *y, float *states, const hk_bf16 *xbc, const hk_bf16 *dt,
                   const float *dt_bias, const float *A_log, const float *Dskip, const ssd_geom &s,
                   cudaEvent_t *ev) {
    if (sf_fwd_is_legacy(s)) {
        sf_fwd_legacy<N>(hk, y, states, xbc, dt, dt_bias, A_log, Dskip, s, ev);
        return;
    }
    /* bht rounded up to 4 floats: the buffers after it are read 16 bytes at a time */
    const size_t bht = ((size_t)s.B * s.H * s.T + 3) & ~(size_t)3, nst = (size_t)s.B * s.nc * s.H * s.PN;
    float *scr = (float *)hk_cuda_scratch(hk, sizeof(float) * 3 * bht + sizeof(hk_bf16) * nst);
    if (!scr) return;
    float *delta = scr, *cum = delta + bht, *wst = cum + bht;
    hk_bf16 *sbf = (hk_bf16 *)(wst + bht);
    cudaStream_t st_ = hk_cuda_stream(hk);
    SF_REC(0);
    sf_decay_w_kernel<<<dim3(s.nc, s.H, s.B), 32, 0, st_>>>(delta, cum, wst, dt, dt_bias, A_log, s);
    if (hk_cuda_check_launch(hk, "ssd_fast_fwd decay")) return;
    SF_REC(1);
    if (!sf_launch_state<N>(hk, st_, states, sbf, xbc, wst, cum, s, ev)) return;
    SF_REC(3);
    if (!sf_launch_out_group<N>(hk, st_, y, sbf, xbc, delta, cum, Dskip, s)) return;
    SF_REC(4);
}

static void sf_fwd_any(hk_backend *hk, void *y, void *states, const void *xbc, const void *dt, const void *dt_bias,
                       const void *A_log, const void *Dskip, const ssd_geom &s, cudaEvent_t *ev) {
    if (s.N == 64)
        sf_fwd<64>(hk, (hk_bf16 *)y, (float *)states, (const hk_bf16 *)xbc, (const hk_bf16 *)dt,
                   (const float *)dt_bias, (const float *)A_log, (const float *)Dskip, s, ev);
    else
        sf_fwd<128>(hk, (hk_bf16 *)y, (float *)states, (const hk_bf16 *)xbc, (const hk_bf16 *)dt,
                    (const float *)dt_bias, (const float *)A_log, (const float *)Dskip, s, ev);
}

static int sf_cmp_float(const void *a, const void *b) {
    const float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

/* Test-only (declared in tests/cuda/test_cuda_ssd_fast.c): the forward's kernels timed one by one.
 * Runs the forward as hk_cuda_ssd_fast_fwd would, 2 warm-up runs, then `reps` (1..64) runs with
 * a CUDA event between consecutive kernels; ms[k] = the median time of kernel k (chunks ≤ 256:
 * decay_w, state_local, state_scan, out_group; longer: decay, chunk_state, state_pass, chunk_out).
 * Returns the number of kernels timed (4; ≤ max_k), 0 on failure (recorded on hk, or the dims/mode
 * unsupported). */
extern "C" int hk_cuda_ssd_fast_fwd_kernel_ms(hk_backend *hk, float *ms, int max_k, int reps, void *y, void *states,
                                             const void *xbc, const void *dt, const void *dt_bias, const void *A_log,
                                             const void *Dskip, hk_ssd_dims d) {
    if (hk->act != HK_BF16 || reps < 1 || reps > 64) return 0;
    if (!sf_check(hk, d, "ssd_fast_fwd (kernel timing)", y, states, xbc)) return 0;
    const ssd_geom s = ssd_make(d);
    const int nk = 4;
    if (max_k < nk) return 0;
    cudaEvent_t ev[5];
    for (int k = 0; k <= nk; k++)
        if (hk_cuda_record(hk, cudaEventCreate(&ev[k]), "ssd_fast_fwd timing events")) {
            for (int j = 0; j < k; j++) cudaEventDestroy(ev[j]);
            return 0;
        }
    float t[4][64];
    int ok = 1;
    for (int r = -2; r < reps && ok; r++) {
        sf_fwd_any(hk, y, states, xbc, dt, dt_bias, A_log, Dskip, s, ev);
        ok = !hk_cuda_record(hk, cudaEventSynchronize(ev[nk]), "ssd_fast_fwd timing");
        for (int k = 0; k < nk && ok && r >= 0; k++)
            ok = !hk_cuda_record(hk, cudaEventElapsedTime(&t[k][r], ev[k], ev[k + 1]), "ssd_fast_fwd timing");
    }
    for (int k = 0; k <= nk; k++) cudaEventDestroy(ev[k]);
    if (!ok) return 0;
    for (int k = 0; k < nk; k++) {
        qsort(t[k], (size_t)reps, sizeof(float), sf_cmp_float);
        ms[k] = reps & 1 ? t[k][reps / 2] : 0.5f * (t[k][reps / 2 - 1] + t[k][reps / 2]);
    }
    return nk;
}

extern "C" void hk_cuda_ssd_fast_fwd(hk_backend *hk, void *y, void *states, const void *xbc, const void *dt,
                                     const void *dt_bias, const void *A_log, const void *Dskip, hk_ssd_dims d) {
    if (hk->act != HK_BF16) { /* the fp32 parity mode keeps the SIMT kernels */
        hk_cuda_ssd_fwd(hk, y, states, xbc, dt, dt_bias, A_log, Dskip, d);
        return;
    }
    if (!sf_check(hk, d, "ssd_fast_fwd", y, states, xbc)) return;
    sf_fwd_any(hk, y, states, xbc, dt, dt_bias, A_log, Dskip, ssd_make(d), NULL);
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

#endif /* SF_EMU */
