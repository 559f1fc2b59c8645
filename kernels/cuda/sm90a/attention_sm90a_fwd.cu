/* kernels/cuda/sm90a/attention_sm90a_fwd.cu — wgmma attention forward (sm_90a), bf16, dh 64 / 128.
 *
 * Same function and conventions as attn_fwd_tc in attention.cu (packed qkv [B,T,(Hq+2Hkv)·dh],
 * GQA, causal + optional sliding window, base-2 online softmax with the scores scaled in the
 * exponent, P rounded to bf16 for P·V, out bf16, lse fp32 [B,Hq,T] in natural log). One kernel,
 * configured per head size (f90_cfg); attention.cu calls it on CC 9.0 for dh 64 and 128
 * (HLAB_ATTN_WGMMA=0 there selects the mma.sync kernels instead).
 *
 * Block = NWG consumer warpgroups of 64 query rows + one producer warpgroup; setmaxnreg moves
 * registers from the producer to the consumers (FlashAttention-3's split):
 *   dh 64:  3 consumers (192 queries, 512 threads, 32 / 160 registers), lazy rescale, masked
 *           tails skipped; 3 stages, 121 KB of shared memory;
 *   dh 128: 2 consumers (128 queries, 384 threads, 40 / 232 registers); 3 stages, 225 KB.
 *  - Producer: streams Q (with the first tile) and the 128-key K and V tiles through a ring of
 *    3 stages by cp.async into SW128 layout (wgmma.cuh), with strength-reduced addressing
 *    (f90_load_sr: the producer warps share the schedulers with the consumers' softmax) and
 *    2 tiles in flight; it fences each landed tile for the async proxy and signals it on a
 *    named barrier per consumer (FULL), and refills a stage once every consumer released it
 *    (EMPTY). No block-wide barrier.
 *  - Consumer: S = Q·Kᵀ by wgmma m64n128k16 (both operands K-major in shared memory), online
 *    softmax on the accumulator registers, P packed to bf16 registers as the A operand of
 *    O += P·V (wgmma rs, V MN-major through the descriptor's transpose bit). Software pipeline
 *    (FlashAttention-3's intra-warpgroup overlap): the next tile's S and this tile's P·V are
 *    issued together; the next tile's softmax runs while P·V is in flight. The consumers take
 *    turns to issue their wgmmas (ping-pong, TURN barriers).
 *  - dh 64 is MUFU / issue bound, hence there: a third consumer (more warps per scheduler to
 *    hide the softmax, prologue / epilogue and K / V traffic spread over 1.5× the rows); lazy
 *    rescale (the running max moves only when a tile's max exceeds it by more than 2^8, so most
 *    tiles skip the O and l rescale; exact, P ≤ 2^8); and, causal, a warpgroup stops computing
 *    after the last key tile its rows can see (with 192-row blocks the first warpgroups'
 *    trailing tiles are fully masked) and only takes part in the barriers for the rest.
 *  - Causal: key tiles past the block's last query are never loaded; only tiles on the
 *    diagonal, past T or at the window's edge are masked. Grid (heads, B, tiles), longest
 *    tiles first (attention.cu's tc_coords order). No atomics: deterministic.
 *  - ptxas (CUDA 13.0): no spills; 128 registers at launch (dh 64), 168 (dh 128).
 * Measured (H100 80GB HBM3, 2026-11-23; test_cuda_attention_tc parity passes):
 *   dh 64  B4 T8192 Hq12 Hkv4 1.228 ms (mma.sync 1.590), B16 T2048 0.349 ms (mma.sync 0.388);
 *   dh 128 B4 T8192 Hq6 Hkv2  0.798 ms (first wgmma version 1.33, mma.sync 1.49).
 * History: the first version (2 consumers, generic producer address arithmetic, one tile in
 * flight) took 1.89 ms at dh 64, slower than mma.sync: its producer starved the consumers.
 * Turning ping-pong off made little difference. At dh 64, producer v2 with 2 consumers took
 * 1.51 ms (with or without lazy rescale); 3 consumers 1.33, + lazy 1.20, + skipped tails
 * without lazy 1.24; kept: 3 consumers + lazy + skip (1.228, the fastest at T 2048: 0.349).
 * At dh 128 lazy rescale measured slower (0.826 ms).
 * Host emulation: tests/cuda/emu/attention_sm90a_fwd_emu.cpp (WG_EMU).
 */
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/sm90a/attention_sm90a.h"
#include "kernels/cuda/sm90a/sm90a_async.cuh"
#include "kernels/cuda/sm90a/wgmma.cuh"

#define F90_LOG2E 1.4426950408889634f
#define F90_LN2 0.6931471805599453f

enum {
    F90_BN = 128,               /* keys per streamed tile */
    F90_FULL_COUNT = 128 + 128, /* one consumer warpgroup + the producer warpgroup */
};

/* Lazy rescale (dh 64): the running max m moves only when a tile's max exceeds it by more than
 * F90_LAZY_THRESH (log2 units); otherwise P = exp2(s·sl2 − m) ≤ 2^8 uses the stale m for both
 * l and O, which is exact, and the warp skips the O and l rescale. */
#define F90_LAZY_THRESH 8.0f

/* setmaxnreg: the producer warpgroup gives registers back so that the consumers can hold S, P
 * and O without spilling (FlashAttention-3); no-op in the emulation. */
template <int N> __device__ __forceinline__ void f90_setmaxnreg_dec() {
#ifndef WG_EMU
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(N));
#endif
}
template <int N> __device__ __forceinline__ void f90_setmaxnreg_inc() {
#ifndef WG_EMU
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(N));
#endif
}

/* The configuration per head size (see the header comment for why dh 64 differs). */
template <int DH> struct f90_cfg {
    static_assert(DH == 64 || DH == 128, "head size");
    static constexpr int nwg = DH == 64 ? 3 : 2;         /* consumer warpgroups */
    static constexpr bool lazy = DH == 64, skip = DH == 64;
    static constexpr int bm = 64 * nwg;                   /* queries per block */
    static constexpr int consumers = 128 * nwg;           /* threads 0 .. consumers − 1 */
    static constexpr int threads = consumers + 128;       /* + the producer warpgroup */
    static constexpr int empty_count = consumers + 128;
    /* registers per thread after setmaxnreg: 128 × 32 + 384 × 160 = 64 K (launch: 128), or
     * 128 × 40 + 256 × 232 ≤ 64 K (launch: 168) */
    static constexpr int producer_regs = nwg == 2 ? 40 : 32, consumer_regs = nwg == 2 ? 232 : 160;
    /* ring of 3 stages (16 named barriers): dh 64 3 × 32 KB, dh 128 3 × 64 KB (+ Q 24 / 32 KB,
     * + 1 KB for alignment) */
    static constexpr int stages = 3;
    static constexpr uint32_t q_bytes = bm * DH * 2, kv_bytes = F90_BN * DH * 2;
    static constexpr size_t smem = 1024 + q_bytes + (size_t)stages * 2 * kv_bytes;
    /* Named barriers (0 is __syncthreads): FULL(stage, warpgroup), EMPTY(stage), TURN(warpgroup):
     * (nwg + 1)·stages + nwg + 1 ≤ 16. TURN is the ping-pong (FlashAttention-3's warp-scheduler
     * barrier): warpgroup wg waits on TURN(wg) before it issues its wgmmas and then passes the
     * turn to the next one, so that they take turns on the tensor cores and one's softmax
     * overlaps the others' products. */
    static __host__ __device__ constexpr int bar_full(int stage, int wg) { return 1 + nwg * stage + wg; }
    static __host__ __device__ constexpr int bar_empty(int stage) { return 1 + nwg * stages + stage; }
    static __host__ __device__ constexpr int bar_turn(int wg) { return 1 + (nwg + 1) * stages + wg; }
};

__device__ __forceinline__ uint32_t f90_pack(float lo, float hi) {
#ifdef WG_EMU
    return (uint32_t)__bfloat16_as_ushort(__float2bfloat16_rn(lo)) |
           ((uint32_t)__bfloat16_as_ushort(__float2bfloat16_rn(hi)) << 16);
#else
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&v);
#endif
}

/* Any lane of the warp true (warp-uniform result). */
__device__ __forceinline__ bool f90_warp_any(bool v) {
#ifdef WG_EMU
    uint32_t x = v ? 1u : 0u;
    for (int o = 1; o < 32; o <<= 1) x |= __shfl_xor_sync(0xffffffffu, x, o);
    return x != 0;
#else
    return __any_sync(0xffffffffu, v);
#endif
}

/* ROWS rows × DH columns from global rows r0.. (stride ld elements) into an SW128 tile at shared
 * address dst (64-column slabs of ROWS·128 bytes); rows >= T zero-filled (0 × garbage would be
 * NaN in P·V). Called by the 128 threads of the producer warpgroup (pt = 0..127).
 * Strength-reduced: 128 % (DH / 8) == 0, so each thread keeps one 16-byte column chunk c and
 * rows rb + k·RSTEP (RSTEP = 1024 / DH, a multiple of 8: the SW128 XOR pattern row % 8 stays that
 * of rb); shared offsets are immediates and the global address advances by a constant stride.
 * Only a tile that runs past T tests rows. (A generic loop over i = row·chunks + chunk cost ~34
 * instructions per cp.async in the producer warps, which share the schedulers with the
 * consumers; this one ~3.) */
template <int DH, int ROWS>
__device__ __forceinline__ void f90_load_sr(uint32_t dst, const hk_bf16 *g, size_t ld, int r0, int T_, int pt) {
    constexpr int CPR = DH / 8, RSTEP = 128 / CPR, NK = ROWS / RSTEP;
    static_assert(128 % CPR == 0 && RSTEP % 8 == 0 && ROWS % RSTEP == 0, "chunk pattern");
    const int c = pt % CPR, rb = pt / CPR;
    const uint32_t d0 = dst + (uint32_t)(c >> 3) * (ROWS * 128u) + wg_sw128_offset(rb, (c & 7) * 8);
    const hk_bf16 *s0 = g + (size_t)(r0 + rb) * ld + c * 8;
    const size_t step = (size_t)RSTEP * ld;
    if (r0 + ROWS <= T_) {
#pragma unroll
        for (int k = 0; k < NK; k++) wg_cp_async16(d0 + (uint32_t)(k * RSTEP * 128), s0 + k * step, 16u);
    } else {
#pragma unroll
        for (int k = 0; k < NK; k++) {
            const bool ok = r0 + rb + k * RSTEP < T_;
            wg_cp_async16(d0 + (uint32_t)(k * RSTEP * 128), ok ? (const void *)(s0 + k * step) : (const void *)g,
                          ok ? 16u : 0u);
        }
    }
}

/* Descriptors move by adding to their start-address field (address >> 4 in bits 0-13: shared
 * addresses stay below 256 KB, so the sum never carries into LBO). Only the low 32 bits (start
 * address, LBO) vary; the high word (SBO 1024, SW128) is the same constant for both layouts,
 * so the kernels keep one 32-bit register per operand (fewer live registers at 160). */
__device__ __forceinline__ uint32_t f90_desc_lo(uint64_t desc) { return (uint32_t)desc; }
__device__ __forceinline__ uint64_t f90_desc_add(uint32_t lo, uint32_t bytes) {
    return ((uint64_t)(uint32_t)(wg_desc_kmajor(0, 0) >> 32) << 32) | (uint64_t)(lo + (bytes >> 4));
}

/* s = Q·Kᵀ for the warpgroup's 64 query rows (dq: K-major descriptor of its first Q row in slab
 * 0) and the 128 keys of a K tile (dk: K-major descriptor of its first row). */
template <int DH, int BM> __device__ __forceinline__ void f90_qk(float (&s)[F90_BN / 2], uint32_t dq, uint32_t dk) {
#pragma unroll
    for (int kk = 0; kk < DH / 16; kk++)
        wg_mma<F90_BN>::ss<0, 0>(s, f90_desc_add(dq, (kk / 4) * (BM * 128u) + (kk % 4) * 32u),
                                 f90_desc_add(dk, (kk / 4) * (F90_BN * 128u) + (kk % 4) * 32u), kk > 0);
}

/* o += P·V: P from registers (8 k-steps of 16 keys), dv: MN-major descriptor of the V tile. */
template <int DH> __device__ __forceinline__ void f90_pv(float (&o)[DH / 2], const uint32_t (&p)[F90_BN / 16][4], uint32_t dv) {
#pragma unroll
    for (int kk = 0; kk < F90_BN / 16; kk++) wg_mma<DH>::template rs<1>(o, p[kk], f90_desc_add(dv, kk * 2048u), 1);
}

/* Mask (MASKED) and online-softmax step for the scores s of the key tile at k0 (rows row_lo,
 * row_lo + 8): m, l, corr updated; s becomes P (fp32). */
template <bool MASKED, bool LAZY>
__device__ __forceinline__ void f90_softmax_step(float (&s)[F90_BN / 2], float (&m)[2], float (&l)[2], float (&corr)[2],
                                                 int k0, int row_lo, int t4, int T_, int window, float sl2) {
    if (MASKED) { /* key kj = kb + off (off = 8j + (e & 1), a constant) visible from row qi
                   * when off ≤ min(qi, T − 1) − kb and (window) off > qi − window − kb */
        const int kb = k0 + 2 * t4;
        int hi[2], lo[2];
#pragma unroll
        for (int r = 0; r < 2; r++) {
            hi[r] = min(row_lo + 8 * r, T_ - 1) - kb;
            lo[r] = window > 0 ? row_lo + 8 * r - window - kb : -1 - F90_BN;
        }
#pragma unroll
        for (int j = 0; j < F90_BN / 8; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int off = 8 * j + (e & 1);
                if (off > hi[e >> 1] || off <= lo[e >> 1]) s[4 * j + e] = -INFINITY;
            }
    }
    float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int j = 0; j < F90_BN / 8; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) mx[e >> 1] = fmaxf(mx[e >> 1], s[4 * j + e]);
    float ref[2];
#pragma unroll
    for (int r = 0; r < 2; r++) {
        mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
        mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
        if (LAZY) { /* move m only past the threshold (m = −∞: any finite max moves it) */
            const float cand = mx[r] * sl2;
            const bool up = cand > m[r] + F90_LAZY_THRESH;
            const float mn = up ? cand : m[r];
            ref[r] = mn == -INFINITY ? 0.0f : mn;
            corr[r] = up ? exp2f(m[r] - ref[r]) : 1.0f;
            m[r] = mn;
        } else {
            const float mn = fmaxf(m[r], mx[r] * sl2); /* sl2 > 0: max commutes with it */
            ref[r] = mn == -INFINITY ? 0.0f : mn;      /* a row that has seen no key yet */
            corr[r] = exp2f(m[r] - ref[r]);
            m[r] = mn;
        }
        l[r] *= corr[r];
    }
#pragma unroll
    for (int j = 0; j < F90_BN / 8; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const float pe = exp2f(fmaf(s[4 * j + e], sl2, -ref[e >> 1]));
            s[4 * j + e] = pe;
            l[e >> 1] += pe;
        }
}

/* The whole step sits inside the branch on the mask: a basic block ending right after the
 * softmax keeps ptxas from hoisting the following wgmma wait (WARPGROUP.DEPBAR) above it,
 * which would serialise the softmax after P·V instead of overlapping them. Only tiles on the
 * diagonal, past T or at the window's edge of the warpgroup's rows (wr0..wr0 + 63) are masked. */
template <bool LAZY>
__device__ __forceinline__ void f90_softmax(float (&s)[F90_BN / 2], float (&m)[2], float (&l)[2], float (&corr)[2], int k0,
                                            int wr0, int row_lo, int t4, int T_, int window, float sl2) {
    const bool masked = k0 + F90_BN - 1 > wr0 || k0 + F90_BN > T_ || (window > 0 && wr0 + 63 - k0 >= window);
    if (masked) f90_softmax_step<true, LAZY>(s, m, l, corr, k0, row_lo, t4, T_, window, sl2);
    else f90_softmax_step<false, LAZY>(s, m, l, corr, k0, row_lo, t4, T_, window, sl2);
}

/* P (fp32 accumulator layout) → bf16 A fragments, k-step kk = keys 16kk .. 16kk + 15: two
 * adjacent 8-column blocks are exactly the m16n8k16 A layout (wgmma.cuh). */
__device__ __forceinline__ void f90_pack_p(uint32_t (&p)[F90_BN / 16][4], const float (&s)[F90_BN / 2]) {
#pragma unroll
    for (int kk = 0; kk < F90_BN / 16; kk++)
#pragma unroll
        for (int i = 0; i < 4; i++) p[kk][i] = f90_pack(s[8 * kk + 2 * i], s[8 * kk + 2 * i + 1]);
}

__device__ __forceinline__ void f90_fence_p(uint32_t (&p)[F90_BN / 16][4]) {
#pragma unroll
    for (int kk = 0; kk < F90_BN / 16; kk++)
#pragma unroll
        for (int i = 0; i < 4; i++) wg_fence_operand(p[kk][i]);
}

template <int DH>
__global__ void __launch_bounds__(f90_cfg<DH>::threads, 1)
    attn_fwd_sm90a_kernel(hk_bf16 *out, float *lse, const hk_bf16 *qkv, int T_, int Hq, int Hkv, int window, float sl2) {
    typedef f90_cfg<DH> C;
    constexpr int STAGES = C::stages, BM = C::bm, NWG = C::nwg;
    extern __shared__ __align__(1024) unsigned char smem_raw[];
    /* SW128 tiles need 1024-byte aligned shared addresses: align by hand (the extern array's
     * __align__ is not a guarantee for dynamic shared memory) */
    const uint32_t raw = wg_smem_addr(smem_raw), sbase = (raw + 1023u) & ~1023u;
    const uint32_t sQ = sbase, sKV = sbase + C::q_bytes; /* stage s: K at sKV + 2s·kv, V after it */
    const int h = blockIdx.x, b = blockIdx.y, ntiles = gridDim.z, qt = ntiles - 1 - (int)blockIdx.z;
    const int q0 = qt * BM;
    const size_t W = (size_t)(Hq + 2 * Hkv) * DH;
    const int kvh = h / (Hq / Hkv);
    const hk_bf16 *base = qkv + (size_t)b * T_ * W;
    const int kstart = window > 0 && q0 - window + 1 > 0 ? ((q0 - window + 1) / F90_BN) * F90_BN : 0;
    const int kend = min(T_, q0 + BM);
    const int nk = (kend - kstart + F90_BN - 1) / F90_BN;

    if (threadIdx.x >= C::consumers) { /* ---- producer warpgroup ---- */
        f90_setmaxnreg_dec<C::producer_regs>();
        const int pt = threadIdx.x - C::consumers;
        const hk_bf16 *kg = base + (size_t)(Hq + kvh) * DH, *vg = base + (size_t)(Hq + Hkv + kvh) * DH;
        /* tile jt has landed (later tiles may still be in flight): hand it over */
        auto hand_over = [&](int jt) {
            wg_fence_proxy_async();
#pragma unroll
            for (int c = 0; c < NWG; c++) wg_bar_arrive(C::bar_full(jt % STAGES, c), F90_FULL_COUNT);
        };
        f90_load_sr<DH, BM>(sQ, base + (size_t)h * DH, W, q0, T_, pt); /* Q: in tile 0's group */
        for (int j = 0; j < nk; j++) {
            const int s = j % STAGES;
            if (j >= STAGES) wg_bar_sync(C::bar_empty(s), C::empty_count); /* all consumers done with it */
            const uint32_t sk = sKV + (uint32_t)s * 2u * C::kv_bytes;
            f90_load_sr<DH, F90_BN>(sk, kg, W, kstart + j * F90_BN, T_, pt);
            f90_load_sr<DH, F90_BN>(sk + C::kv_bytes, vg, W, kstart + j * F90_BN, T_, pt);
            wg_cp_commit();
            /* STAGES − 1 tiles in flight: tile j is issued, then j − STAGES + 2 handed over
             * (no deadlock: the EMPTY wait of tile j needs tile j − STAGES released, which needs
             * FULL of j − STAGES + 1, handed over in the previous iteration) */
            if (j >= STAGES - 2) {
                wg_cp_wait<STAGES - 2>();
                hand_over(j - (STAGES - 2));
            }
        }
        wg_cp_wait<0>();
        for (int t = max(0, nk - (STAGES - 2)); t < nk; t++) hand_over(t);
        return;
    }

    /* ---- consumer warpgroup wg: query rows wr0 .. wr0 + 63 ---- */
    f90_setmaxnreg_inc<C::consumer_regs>();
    const int wg = threadIdx.x >> 7, w = (threadIdx.x >> 5) & 3, lane = threadIdx.x & 31, g = lane >> 2, t4 = lane & 3;
    const int wr0 = q0 + 64 * wg;
    const int row_lo = wr0 + 16 * w + g; /* this thread's rows: row_lo and row_lo + 8 */
    const uint32_t q_wg = sQ + (uint32_t)wg * (64u * 128u);
    /* tiles this warpgroup computes (skip: up to the one holding key wr0 + 63; kstart ≤ wr0) */
    const int nkw = C::skip ? max(1, min(nk, (wr0 + 63 - kstart) / F90_BN + 1)) : nk;
    float s[F90_BN / 2], o[DH / 2];
    uint32_t p[F90_BN / 16][4];
#pragma unroll
    for (int i = 0; i < DH / 2; i++) o[i] = 0.0f;
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f}, corr[2] = {1.0f, 1.0f}; /* m in log2 units */

    /* descriptors of Q (this warpgroup's rows), and of stage 0's K and V tiles */
    const uint32_t dq = f90_desc_lo(wg_desc_kmajor(q_wg, 0)), dk0 = f90_desc_lo(wg_desc_kmajor(sKV, 0)),
                   dv0 = f90_desc_lo(wg_desc_mnmajor(sKV + C::kv_bytes, 0, F90_BN * 128u));
    constexpr uint32_t STAGE_BYTES = 2u * C::kv_bytes;
    /* nk + 1 issue points per warpgroup; warpgroup 0 goes first; the last warpgroup does not
     * pass its last turn (nobody waits for it) */
    auto turn_wait = [&]() { wg_bar_sync(C::bar_turn(wg), 256); };
    auto turn_pass = [&](bool last) {
        if (!(last && wg == NWG - 1)) wg_bar_arrive(C::bar_turn((wg + 1) % NWG), 256);
    };
    if (wg == NWG - 1) wg_bar_arrive(C::bar_turn(0), 256);
    if (C::skip && wr0 >= T_) { /* all rows past T (the last block's last warpgroups): take part only */
        for (int t = 0; t < nk; t++) {
            wg_bar_sync(C::bar_full(t % STAGES, wg), F90_FULL_COUNT);
            turn_wait();
            turn_pass(false);
            if (t + STAGES < nk) wg_bar_arrive(C::bar_empty(t % STAGES), C::empty_count);
        }
        turn_wait();
        turn_pass(true);
        return;
    }

    /* first tile: S, softmax, P */
    wg_bar_sync(C::bar_full(0, wg), F90_FULL_COUNT);
    turn_wait();
    wg_arrive();
    f90_qk<DH, BM>(s, dq, dk0);
    wg_commit();
    turn_pass(false);
    wg_wait<0>();
    wg_fence_operand(s);
    f90_softmax<C::lazy>(s, m, l, corr, kstart, wr0, row_lo, t4, T_, window, sl2);
    f90_pack_p(p, s);

    /* steady state (no branch between issue and wait: ptxas serialises wgmma otherwise) */
    /* the loop runs to the block-uniform nk (the descriptors then stay in uniform registers);
     * skip leaves it after the warpgroup's last tile */
    for (int j = 0; j + 1 < nk; j++) {
        if (C::skip && j + 1 >= nkw) break;
        const uint32_t dk_next = dk0 + (((uint32_t)((j + 1) % STAGES) * STAGE_BYTES) >> 4);
        const uint32_t dv = dv0 + (((uint32_t)(j % STAGES) * STAGE_BYTES) >> 4);
        wg_bar_sync(C::bar_full((j + 1) % STAGES, wg), F90_FULL_COUNT);
        wg_fence_operand(o);
        f90_fence_p(p);
        turn_wait();
        wg_arrive();
        f90_qk<DH, BM>(s, dq, dk_next);
        wg_commit();
        f90_pv<DH>(o, p, dv);
        wg_commit();
        turn_pass(false);
        wg_wait<1>(); /* S of tile j + 1 done; P·V of tile j in flight */
        wg_fence_operand(s);
        f90_softmax<C::lazy>(s, m, l, corr, kstart + (j + 1) * F90_BN, wr0, row_lo, t4, T_, window, sl2);
        /* pin the softmax before the wait (the compiler would otherwise sink it past the wait and
         * lose its overlap with P·V) */
        wg_fence_operand(s);
        wg_fence_operand(l);
        wg_fence_operand(corr);
        wg_wait<0>();
        wg_fence_operand(o);
        /* tile j is consumed (K by the previous S, V now): release its stage if it is refilled */
        if (j + STAGES < nk) wg_bar_arrive(C::bar_empty(j % STAGES), C::empty_count);
        /* lazy: most tiles leave every row's max in place; the warp then skips the rescale */
        if (!C::lazy || f90_warp_any(corr[0] != 1.0f || corr[1] != 1.0f)) {
#pragma unroll
            for (int i = 0; i < DH / 8; i++) {
                o[4 * i] *= corr[0];
                o[4 * i + 1] *= corr[0];
                o[4 * i + 2] *= corr[1];
                o[4 * i + 3] *= corr[1];
            }
        }
        f90_pack_p(p, s);
    }
    /* last tile: P·V only */
    wg_fence_operand(o);
    f90_fence_p(p);
    turn_wait();
    wg_arrive();
    f90_pv<DH>(o, p, dv0 + (((uint32_t)((nkw - 1) % STAGES) * STAGE_BYTES) >> 4));
    wg_commit();
    turn_pass(nkw == nk);
    wg_wait<0>();
    wg_fence_operand(o);
    if (C::skip) { /* release the last computed tile, then take part in the rest without computing */
        if (nkw - 1 + STAGES < nk) wg_bar_arrive(C::bar_empty((nkw - 1) % STAGES), C::empty_count);
        for (int t = nkw; t < nk; t++) {
            wg_bar_sync(C::bar_full(t % STAGES, wg), F90_FULL_COUNT);
            turn_wait();
            turn_pass(t == nk - 1);
            if (t + STAGES < nk) wg_bar_arrive(C::bar_empty(t % STAGES), C::empty_count);
        }
    }

    const size_t OW = (size_t)Hq * DH;
#pragma unroll
    for (int r = 0; r < 2; r++) {
        float lr = l[r];
        lr += __shfl_xor_sync(0xffffffffu, lr, 1);
        lr += __shfl_xor_sync(0xffffffffu, lr, 2);
        const int qi = row_lo + 8 * r;
        if (qi >= T_) continue;
        const float inv = 1.0f / lr;
        hk_bf16 *orow = out + ((size_t)b * T_ + qi) * OW + (size_t)h * DH;
#pragma unroll
        for (int i = 0; i < DH / 8; i++)
            *reinterpret_cast<uint32_t *>(orow + 8 * i + 2 * t4) = f90_pack(o[4 * i + 2 * r] * inv, o[4 * i + 2 * r + 1] * inv);
        if (t4 == 0) lse[((size_t)b * Hq + h) * T_ + qi] = (m[r] + log2f(lr)) * F90_LN2;
    }
}

/* Grid (heads, B, query tiles of bm), longest tiles first (blockIdx.z = rank). */
static inline dim3 f90_grid(hk_attn_dims d, int bm) {
    return dim3((unsigned)d.Hq, (unsigned)d.B, (unsigned)((d.T + bm - 1) / bm));
}

#ifndef WG_EMU
template <int DH> static void f90_launch(hk_backend *hk, void *out, void *lse, const void *qkv, hk_attn_dims d) {
    typedef f90_cfg<DH> C;
    auto kernel = attn_fwd_sm90a_kernel<DH>;
    if (hk_cuda_record(hk, cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)C::smem),
                       "attention_fwd sm90a smem"))
        return;
    kernel<<<f90_grid(d, C::bm), C::threads, C::smem, hk_cuda_stream(hk)>>>(
        (hk_bf16 *)out, (float *)lse, (const hk_bf16 *)qkv, d.T, d.Hq, d.Hkv, d.window, F90_LOG2E / sqrtf((float)DH));
}

int hk_cuda_attn_fwd_sm90a(hk_backend *hk, void *out, void *lse, const void *qkv, hk_attn_dims d) {
    if (!hk_cuda_sm90a_enabled(hk) || (d.dh != 64 && d.dh != 128) || d.T > 65535 * 128) return 0;
    if (d.dh == 64) f90_launch<64>(hk, out, lse, qkv, d);
    else f90_launch<128>(hk, out, lse, qkv, d);
    return 1;
}
#endif
