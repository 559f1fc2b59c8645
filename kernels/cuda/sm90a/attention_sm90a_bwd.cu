/* kernels/cuda/sm90a/attention_sm90a_bwd.cu — wgmma attention backward (sm_90a), bf16, dh 64
 * and 128. Same function, conventions and split as attn_dkdv_tc / attn_dq_tc in attention.cu
 * (D_i = dO_i·O_i already computed by attention.cu; a dK/dV kernel and a dQ kernel that
 * recomputes S and dP; no atomics, so the result is deterministic), with the tile products on
 * warpgroup MMAs (wgmma.cuh: layouts, descriptors, ordering rules). One kernel per (op, dh).
 *
 * Each warpgroup (WG) owns 64 rows (keys or queries) of its block. Streamed tiles of 64 rows go
 * through a ring of AB_NS = 4 cp.async stages, loaded 2 steps ahead by the first 256 threads, in
 * the SW128 layout (dh 128 as two 64-column slabs), and are read by wgmma both K-major (as the B
 * of S-like products) and MN-major (as the B of the P·V-like products), so each tile is stored
 * once. Every wgmma operand that stays the same across the loop (K, V; Q, dO) is read from shared
 * memory (see the dK/dV kernel for why not from registers). One barrier per step: the last
 * products of a step (dV, dK; dQ) stay in flight into the next step and retire at its first wait.
 *
 *  dK/dV: block per (64·NWG keys, kv head, b), looping over the group's query heads and the
 *    visible 64-query tiles (flattened so that the prefetch crosses heads). Per tile and WG:
 *    Sᵀ = K·Qᵀ (ss), Pᵀ = ex2(Sᵀ·scale·log2e − lse·log2e), then dPᵀ = V·dOᵀ (ss) and dV += Pᵀ·dO
 *    (rs: Pᵀ rounded to bf16 from the accumulator registers) issued together, dSᵀ = Pᵀ∘(dPᵀ − D)
 *    (under dV), dK += dSᵀ·Q (rs). dh 64: 3 WGs (192 keys, 384 threads, 168 registers); dh 128:
 *    2 WGs (128 keys, 252 registers). One block per SM.
 *  dQ: block per (128 queries, head, b), 2 WGs, looping over the visible 64-key tiles: S = Q·Kᵀ,
 *    dP = dO·Vᵀ (ss), P, dS, dQ += dS·K (rs). dh 64: dP issued after the exponentials, 126
 *    registers, two blocks per SM; dh 128: dP issued with S (under the exponentials), 192
 *    registers, one block per SM (its shared memory allows no more; at 128 registers it spills).
 * No spills, no wgmma serialization (C7515). A WG whose rows see none of a tile's columns skips
 * it; only tiles on the diagonal, at the window's edge or past T are masked. Grids (heads, B,
 * tiles), longest tiles first, as in attention.cu (tc_coords).
 *
 * H100 80GB HBM3 (2026-11-23), causal, against the mma.sync kernels of attention.cu:
 *   dK/dV dh 64   B4 T8192 Hq12 Hkv4: 1.793 ms (2 WGs 1.937, mma.sync 2.630);
 *                 B16 T2048 Hq12 Hkv4: 0.501 ms (2 WGs 0.547, mma.sync 0.743)
 *   dK/dV dh 128  B4 T8192 Hq6 Hkv2:   1.41-1.46 ms (mma.sync 3.085)
 *   dQ dh 64      B4 T8192 Hq12 Hkv4:  1.175 ms (mma.sync 1.774); B16 T2048: 0.340 ms
 *   dQ dh 128     B4 T8192 Hq6 Hkv2:   1.16-1.20 ms (mma.sync 2.121)
 * Measured and dropped: dK/dV dh 64 with 2 WGs (dPᵀ issued with Sᵀ), with 3 WGs and Pᵀ kept
 * only as bf16, with K, V in registers; dQ dh 64 with dP issued early, with 3 WGs, with Q in
 * registers; dQ dh 128 with Q in registers.
 *
 * HLAB_ATTN_WGMMA_BWD=0 keeps the backward on the mma.sync kernels (the forward may still use
 * wgmma); HLAB_ATTN_WGMMA=0 turns both off.
 *
 * Host emulation: tests/cuda/emu/attention_sm90a_bwd_emu.cpp compiles this file with WG_EMU.
 */
#include "kernels/cuda/common.cuh" /* under WG_EMU: the shim in tests/cuda/emu/sm90a_inc */
#include "kernels/cuda/sm90a/wgmma.cuh"

#define AB_LOG2E 1.4426950408889634f

enum {
    AB_TILE = 64,    /* rows of a streamed tile, rows per warpgroup */
    AB_THREADS = 256, /* the dQ kernel's two warpgroups; the threads that load tiles */
    AB_ROWS = 128,   /* rows (keys or queries) of a 2-warpgroup block */
    AB_SLAB = 8192,  /* bytes of a 64-row × 64-column bf16 SW128 slab */
    AB_NS = 4,       /* stages of the streamed tiles */
    AB_PD = AB_NS - 2 /* prefetch distance in steps: the stage refilled at step s was last read at
                         step s − 2, whose last wgmmas retire at step s − 1 (see the loops) */
};

#ifndef WG_EMU
/* cp.async: issued now, complete after ab_cp_wait, so that the next tile loads while this one
 * is multiplied; bytes = 0 zero-fills (rows past T: masked scores times garbage would be NaN). */
__device__ __forceinline__ void ab_cp16(uint32_t dst, const void *gmem, uint32_t bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(gmem), "r"(bytes));
}
__device__ __forceinline__ void ab_cp4(uint32_t dst, const void *gmem, uint32_t bytes) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(dst), "l"(gmem), "r"(bytes));
}
__device__ __forceinline__ void ab_cp_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> __device__ __forceinline__ void ab_cp_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }
__device__ __forceinline__ uint32_t ab_pack(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&v);
}
#else /* implemented by the emulation harness */
void ab_cp16(uint32_t dst, const void *gmem, uint32_t bytes);
void ab_cp4(uint32_t dst, const void *gmem, uint32_t bytes);
void ab_cp_commit();
void ab_cp_wait_n(int n);
template <int N> static inline void ab_cp_wait() { ab_cp_wait_n(N); }
uint32_t ab_pack(float lo, float hi);
#endif

/* Byte offset of element (r, c) in a 64-row tile of DH columns: DH/64 slabs one after the other. */
__device__ __forceinline__ uint32_t ab_off(int r, int c) {
    return (uint32_t)(c >> 6) * AB_SLAB + wg_sw128_offset(r, c & 63);
}

/* Descriptors are built once per tile and advanced by adding to the start-address field (bits
 * 0-13, address / 16): shared addresses stay below 256 KB, so the add never carries out of it.
 * ab_dk: K-major, the ks-th 16-wide step along dh of a 64-row tile (slab ks / 4, 32 bytes per
 * step inside it); ab_dm: MN-major, the kk-th 16-row step (2048 bytes). */
__device__ __forceinline__ uint64_t ab_dk(uint64_t tile_desc, int ks) {
    return tile_desc + (((uint32_t)(ks >> 2) * AB_SLAB + 32u * (uint32_t)(ks & 3)) >> 4);
}
__device__ __forceinline__ uint64_t ab_dm(uint64_t tile_desc, int kk) { return tile_desc + 128u * (uint32_t)kk; }
__device__ __forceinline__ uint64_t ab_desc_kmajor(uint32_t tile) { return wg_desc_kmajor(tile, 0); }
__device__ __forceinline__ uint64_t ab_desc_mnmajor(uint32_t tile) { return wg_desc_mnmajor(tile, 0, AB_SLAB); }

/* Tile loads: thread tid copies the 16-byte chunks of column ab_col(tid) in rows ab_row(tid)
 * + k·AB_THREADS/(DH/8) of a tile of ROWS rows × DH columns into consecutive 64-row tiles at
 * shared address s. gp points at the thread's first chunk in global memory (row stride ld
 * elements); rows from `left` on (T − the tile's first row − ab_row) are zero-filled (with
 * `any`, a 16-byte aligned pointer, as the unread source). The streaming loops keep gp as a
 * running pointer: no 64-bit index arithmetic per tile. */
template <int DH> __device__ __forceinline__ int ab_row(int tid) { return tid / (DH / 8); }
template <int DH> __device__ __forceinline__ int ab_col(int tid) { return (tid % (DH / 8)) * 8; }
template <int DH, int ROWS>
__device__ __forceinline__ void ab_load_at(uint32_t s, const hk_bf16 *gp, size_t ld, int left, int tid,
                                           const hk_bf16 *any) {
    constexpr int CPR = DH / 8, STEP = AB_THREADS / CPR, PER = ROWS / STEP;
    static_assert(AB_THREADS % CPR == 0 && ROWS % STEP == 0, "whole passes");
    const int r1 = ab_row<DH>(tid), c = ab_col<DH>(tid);
#pragma unroll
    for (int k = 0; k < PER; k++) {
        const int r = r1 + k * STEP;
        const bool ok = k * STEP < left;
        ab_cp16(s + (uint32_t)(r >> 6) * (DH * 128) + ab_off(r & 63, c), ok ? gp + (size_t)(k * STEP) * ld : any,
                ok ? 16u : 0u);
    }
}
/* The same from the tile's first row r0 of g (one-off loads). */
template <int DH, int ROWS>
__device__ __forceinline__ void ab_load(uint32_t s, const hk_bf16 *g, size_t ld, int r0, int T_, int tid) {
    const int r1 = ab_row<DH>(tid);
    ab_load_at<DH, ROWS>(s, g + (size_t)(r0 + r1) * ld + ab_col<DH>(tid), ld, T_ - r0 - r1, tid, g);
}

/* Element q of 8-column block j of a 64×64 accumulator: row 16w + g + 8·(q/2), column 8j + 2t + q%2
 * (wgmma.cuh). A fragment kk (16 columns) of the same tile rounded to bf16: */
__device__ __forceinline__ void ab_afrag(uint32_t (&a)[4], const float (&x)[32], int kk) {
    a[0] = ab_pack(x[8 * kk + 0], x[8 * kk + 1]);
    a[1] = ab_pack(x[8 * kk + 2], x[8 * kk + 3]);
    a[2] = ab_pack(x[8 * kk + 4], x[8 * kk + 5]);
    a[3] = ab_pack(x[8 * kk + 6], x[8 * kk + 7]);
}

__device__ __forceinline__ bool ab_visible(int i, int j, int T_, int window) {
    return (i < T_) & (j <= i) & ((window == 0) | (i - j < window));
}

/* Block coordinates of the (heads, B, tiles) grids, rank 0 = most work (attention.cu's tc_coords). */
__device__ __forceinline__ void ab_coords(int &rank, int &ntiles, int &h, int &b) {
    rank = blockIdx.z, ntiles = gridDim.z, h = blockIdx.x, b = blockIdx.y;
}

/* Warpgroups per dK/dV block. dh 64: 3 (192 keys, 384 threads) sharing each streamed Q / dO
 * tile. Why: the dQ kernel with two blocks (4 WGs) per SM beat the 2-WG dK/dV kernel although
 * its products read more shared memory per FLOP, so dK/dV was short of WGs whose products fill
 * the tensor pipe while the others run their exponentials; 4 WGs need ≤ 128 registers, where
 * ptxas spills and serializes the wgmmas (C7511); 3 fit (168, the most for 384 threads), and the
 * Q / dO copies per FLOP drop by a third. dh 128: 2 (252 registers). */
template <int DH> struct ab_dkdv_shape {
    static constexpr int nwg = DH == 64 ? 3 : 2, threads = 128 * nwg, rows = 64 * nwg;
};

/* Shared memory of the dK/dV kernel: K, V (64·nwg rows each), AB_NS stages of (Q, dO) tiles and
 * of lse and D rows; + 1024 for aligning the base. */
template <int DH> struct ab_dkdv_smem {
    static constexpr int NWG = ab_dkdv_shape<DH>::nwg;
    static constexpr int tile = 64 * DH * 2, k = 0, v = NWG * tile, q = 2 * NWG * tile, o = q + AB_NS * tile,
                         l = o + AB_NS * tile, d = l + AB_NS * AB_TILE * 4, bytes = d + AB_NS * AB_TILE * 4 + 1024;
};

template <int DH>
__global__ void __launch_bounds__(ab_dkdv_shape<DH>::threads, 1)
    attn_dkdv_wg(hk_bf16 *dqkv, const hk_bf16 *dout, const float *lse, const float *Dv, const hk_bf16 *qkv, int T_,
                 int Hq, int Hkv, int window, float sl2, float scale) {
    extern __shared__ __align__(1024) unsigned char smem_raw[];
    typedef ab_dkdv_smem<DH> L;
    constexpr int ROWS = ab_dkdv_shape<DH>::rows;
    unsigned char *sb = smem_raw + ((1024u - (wg_smem_addr(smem_raw) & 1023u)) & 1023u); /* SW128 tiles: 1024-aligned */
    const uint32_t sa = wg_smem_addr(sb);
    const float *Lb = (const float *)(sb + L::l), *Db = (const float *)(sb + L::d);
    int kt, ntiles, gk, b;
    ab_coords(kt, ntiles, gk, b); /* low keys: most work, first */
    (void)ntiles;
    const int k0 = kt * ROWS, tid = threadIdx.x;
    const bool loader = ROWS == AB_ROWS || tid < AB_THREADS; /* the threads that copy tiles */
    const int wg = tid >> 7, w = (tid >> 5) & 3, lane = tid & 31, g = lane >> 2, t = lane & 3;
    const int wk0 = k0 + wg * AB_TILE; /* the WG's first key */
    const size_t W = (size_t)(Hq + 2 * Hkv) * DH, OW = (size_t)Hq * DH;
    const int group = Hq / Hkv;
    const hk_bf16 *base = qkv + (size_t)b * T_ * W;
    if (loader) {
        ab_load<DH, ROWS>(sa + L::k, base + (size_t)(Hq + gk) * DH, W, k0, T_, tid);
        ab_load<DH, ROWS>(sa + L::v, base + (size_t)(Hq + Hkv + gk) * DH, W, k0, T_, tid);
    }
    const int qend = window > 0 ? min(T_, k0 + ROWS - 1 + window) : T_;
    const int nq = (qend - k0 + AB_TILE - 1) / AB_TILE, steps = nq * group, qlim = k0 + nq * AB_TILE;
    /* step = (query head, query tile), flattened so that the prefetch crosses heads. The next
     * step to load starts at query iq; qp, op: this thread's first Q / dO chunk of it; lp: its
     * lse (threads 0..63) or D (64..127) element. All advance without divisions or 64-bit
     * multiplies; at the end of a head's tiles they move to the next head's first tile. */
    const int r1 = ab_row<DH>(tid), li = tid & (AB_TILE - 1), h0 = gk * group;
    int iq = k0;
    const hk_bf16 *qp = base + (size_t)(k0 + r1) * W + (size_t)h0 * DH + ab_col<DH>(tid);
    const hk_bf16 *op = dout + ((size_t)b * T_ + k0 + r1) * OW + (size_t)h0 * DH + ab_col<DH>(tid);
    const float *lp = (tid < AB_TILE ? lse : Dv) + ((size_t)b * Hq + h0) * T_ + k0 + li;
    auto issue = [&](int stage) {
        if (loader) {
            ab_load_at<DH, AB_TILE>(sa + L::q + stage * L::tile, qp, W, T_ - iq - r1, tid, qkv);
            ab_load_at<DH, AB_TILE>(sa + L::o + stage * L::tile, op, OW, T_ - iq - r1, tid, dout);
        }
        if (tid < 2 * AB_TILE) { /* lse row by threads 0..63, D row by 64..127 */
            const bool ok = iq + li < T_;
            ab_cp4(sa + (tid < AB_TILE ? L::l : L::d) + (stage * AB_TILE + li) * 4, ok ? lp : lse, ok ? 4u : 0u);
        }
        iq += AB_TILE, qp += AB_TILE * W, op += AB_TILE * OW, lp += AB_TILE;
        if (iq == qlim) { /* next query head, back to the first tile */
            const int back = qlim - k0;
            iq = k0, qp = qp - back * W + DH, op = op - back * OW + DH, lp += T_ - back;
        }
    };
#pragma unroll
    for (int p = 0; p < AB_PD; p++) { /* the first group also holds K and V */
        if (p < steps) issue(p);
        ab_cp_commit();
    }
    /* Not zeroed: the first visible step's products overwrite them (scale-d 0); zeroing them
     * with plain instructions makes ptxas serialize every wgmma of the loop (C7515), whose dV and
     * dK stay in flight across iterations. A WG whose keys are < T has a visible step (the
     * query tile of its own keys); the others store nothing. */
    float dk[DH / 2], dv[DH / 2];
    int acc = 0; /* 1 once dK, dV hold products */
    /* K and V (and the dQ kernel's Q and dO) are wgmma A operands that stay the same across the
     * loop, read from shared memory by every product. Kept in registers instead (dh 64, read once
     * per block), they passed the emulation but gave wrong results on the H100 (2026-11-23):
     * ptxas (CUDA 13.0.88) gave their registers to other values inside the loop (SASS), so the
     * next iteration's wgmma read those. Feeding the wgmmas per-iteration copies fixed it (verified
     * on the H100) but was slower than these ss products. */
    const uint64_t kA = ab_desc_kmajor(sa + L::k + wg * L::tile), vA = ab_desc_kmajor(sa + L::v + wg * L::tile);
    const uint64_t qK0 = ab_desc_kmajor(sa + L::q), oK0 = ab_desc_kmajor(sa + L::o); /* stage 0 */
    const uint64_t qM0 = ab_desc_mnmajor(sa + L::q), oM0 = ab_desc_mnmajor(sa + L::o);
    /* One barrier per step. dV and dK of a step stay in flight into the next one and retire at
     * its first wgmma wait (or at the wait of a skipped step), so before the barrier of step
     * s + 1, which lets step s + 1 refill the stage of step s − 1. */
    for (int step = 0, q0 = k0; step < steps; step++, q0 = q0 + AB_TILE == qlim ? k0 : q0 + AB_TILE) {
        const int stage = step % AB_NS;
        ab_cp_wait<AB_PD - 1>(); /* this step's group is in */
        wg_fence_proxy_async(); /* this thread's cp.async writes → the wgmma (async proxy) reads */
        __syncthreads();
        if (step + AB_PD < steps) issue((step + AB_PD) % AB_NS);
        ab_cp_commit();
        /* no visible pair: every query before the WG's first key, or past its window */
        const bool none = q0 + AB_TILE - 1 < wk0 || (window > 0 && q0 - (wk0 + AB_TILE - 1) >= window);
        if (!none) {
            const uint32_t so = (uint32_t)(stage * L::tile) >> 4; /* the stage, in descriptor units */
            const uint64_t qB = qK0 + so, oB = oK0 + so, qBm = qM0 + so, oBm = oM0 + so;
            const float *Ls = Lb + stage * AB_TILE, *Ds = Db + stage * AB_TILE;
            float s[32], dp[32];
            wg_arrive();
#pragma unroll
            for (int ks = 0; ks < DH / 16; ks++) wg_mma<64>::ss<0, 0>(s, ab_dk(kA, ks), ab_dk(qB, ks), ks > 0);
            wg_commit();
            /* dPᵀ is issued after the exponentials, where Sᵀ's registers are free: with both live,
             * dh 128 spills at 255 registers and dh 64 exceeds the 168 of 3 WGs (issuing dPᵀ with Sᵀ
             * was slower at dh 64 with 2 WGs too) */
            wg_wait<0>(); /* Sᵀ done (and the previous step's dV, dK) */
            wg_fence_operand(s);
            wg_fence_operand(dk);
            wg_fence_operand(dv);
            const bool masked = q0 < wk0 + AB_TILE - 1 || q0 + AB_TILE > T_ ||
                                (window > 0 && q0 + AB_TILE - 1 - wk0 >= window);
            if (masked) /* invisible: s = −∞ gives p = 0 and dS = 0 */
#pragma unroll
                for (int e = 0; e < 32; e++) {
                    const int kj = wk0 + 16 * w + g + 8 * ((e >> 1) & 1), i = q0 + 8 * (e >> 2) + 2 * t + (e & 1);
                    if (!ab_visible(i, kj, T_, window)) s[e] = -INFINITY;
                }
            float p[32];
#pragma unroll
            for (int e = 0; e < 32; e++) {
                const float Lc = Ls[8 * (e >> 2) + 2 * t + (e & 1)] * AB_LOG2E; /* lse rows are copied as stored */
                p[e] = exp2f(fmaf(s[e], sl2, -Lc));
            }
            uint32_t pa[4][4];
#pragma unroll
            for (int kk = 0; kk < 4; kk++) ab_afrag(pa[kk], p, kk);
            wg_fence_operand(dv);
            wg_arrive();
#pragma unroll
            for (int ks = 0; ks < DH / 16; ks++) wg_mma<64>::ss<0, 0>(dp, ab_dk(vA, ks), ab_dk(oB, ks), ks > 0);
            wg_commit();
#pragma unroll
            for (int kk = 0; kk < 4; kk++)
                wg_mma<DH>::template rs<1>(dv, pa[kk], ab_dm(oBm, kk), kk > 0 || acc);
            wg_commit();
            wg_wait<1>(); /* dPᵀ done, dV may still run */
            wg_fence_operand(dp);
            /* dSᵀ straight into the A fragments */
            uint32_t da[4][4];
#pragma unroll
            for (int kk = 0; kk < 4; kk++)
#pragma unroll
                for (int r = 0; r < 4; r++) {
                    const int e = 8 * kk + 2 * r, c = 8 * (e >> 2) + 2 * t;
                    da[kk][r] = ab_pack(p[e] * (dp[e] - Ds[c]), p[e + 1] * (dp[e + 1] - Ds[c + 1]));
                }
            wg_fence_operand(dk);
            wg_arrive();
#pragma unroll
            for (int kk = 0; kk < 4; kk++)
                wg_mma<DH>::template rs<1>(dk, da[kk], ab_dm(qBm, kk), kk > 0 || acc);
            acc = 1;
            wg_commit(); /* dV and dK retire at the next step's first wait */
        } else {
            wg_wait<0>(); /* a skipped step retires the previous one's wgmmas all the same */
        }
    }
    wg_wait<0>();
    wg_fence_operand(dk);
    wg_fence_operand(dv);
#pragma unroll
    for (int r = 0; r < 2; r++) {
        const int kj = wk0 + 16 * w + g + 8 * r;
        if (kj >= T_) continue;
        hk_bf16 *drow = dqkv + ((size_t)b * T_ + kj) * W;
        uint32_t *dkr = (uint32_t *)(drow + (size_t)(Hq + gk) * DH), *dvr = (uint32_t *)(drow + (size_t)(Hq + Hkv + gk) * DH);
#pragma unroll
        for (int j = 0; j < DH / 8; j++) {
            dkr[4 * j + t] = ab_pack(dk[4 * j + 2 * r] * scale, dk[4 * j + 2 * r + 1] * scale);
            dvr[4 * j + t] = ab_pack(dv[4 * j + 2 * r], dv[4 * j + 2 * r + 1]);
        }
    }
}

/* Shared memory of the dQ kernel: Q, dO (128 rows each), AB_NS stages of (K, V) tiles. */
template <int DH> struct ab_dq_smem {
    static constexpr int tile = 64 * DH * 2, q = 0, o = 2 * tile, k = 4 * tile, v = k + AB_NS * tile,
                         bytes = v + AB_NS * tile + 1024;
};

/* dh 64: dP is issued after the exponentials, so that the kernel fits 128 registers (126): two
 * blocks (4 WGs) per SM, faster than one block issuing dP with S (156 registers) or 3 WGs.
 * dh 128: its shared memory allows one block per SM either way and 128 registers would spill:
 * dP issued with S, under the exponentials. */
template <int DH>
__global__ void __launch_bounds__(AB_THREADS, DH == 64 ? 2 : 1)
    attn_dq_wg(hk_bf16 *dqkv, const hk_bf16 *dout, const float *lse, const float *Dv, const hk_bf16 *qkv, int T_,
               int Hq, int Hkv, int window, float sl2, float scale) {
    extern __shared__ __align__(1024) unsigned char smem_raw[];
    typedef ab_dq_smem<DH> L;
    unsigned char *sb = smem_raw + ((1024u - (wg_smem_addr(smem_raw) & 1023u)) & 1023u);
    const uint32_t sa = wg_smem_addr(sb);
    int rank, ntiles, h, b;
    ab_coords(rank, ntiles, h, b);
    const int q0 = (ntiles - 1 - rank) * AB_ROWS, tid = threadIdx.x;
    const int wg = tid >> 7, w = (tid >> 5) & 3, lane = tid & 31, g = lane >> 2, t = lane & 3;
    const int wq0 = q0 + wg * AB_TILE; /* the WG's first query */
    const size_t W = (size_t)(Hq + 2 * Hkv) * DH, OW = (size_t)Hq * DH;
    const int kvh = h / (Hq / Hkv);
    const hk_bf16 *base = qkv + (size_t)b * T_ * W;
    const hk_bf16 *kg = base + (size_t)(Hq + kvh) * DH, *vg = base + (size_t)(Hq + Hkv + kvh) * DH;
    const int kstart = window > 0 && q0 - window + 1 > 0 ? ((q0 - window + 1) / AB_TILE) * AB_TILE : 0;
    const int kend = min(T_, q0 + AB_ROWS);
    ab_load<DH, AB_ROWS>(sa + L::q, base + (size_t)h * DH, W, q0, T_, tid);
    ab_load<DH, AB_ROWS>(sa + L::o, dout + (size_t)b * T_ * OW + (size_t)h * DH, OW, q0, T_, tid);
    /* the K / V tile stream: the next tile starts at key ik; kp, vp: this thread's first chunks */
    const int r1 = ab_row<DH>(tid);
    int ik = kstart;
    const hk_bf16 *kp = kg + (size_t)(kstart + r1) * W + ab_col<DH>(tid), *vp = vg + (size_t)(kstart + r1) * W + ab_col<DH>(tid);
    auto issue = [&](int stage) {
        ab_load_at<DH, AB_TILE>(sa + L::k + stage * L::tile, kp, W, T_ - ik - r1, tid, qkv);
        ab_load_at<DH, AB_TILE>(sa + L::v + stage * L::tile, vp, W, T_ - ik - r1, tid, qkv);
        ik += AB_TILE, kp += AB_TILE * W, vp += AB_TILE * W;
    };
#pragma unroll
    for (int p = 0; p < AB_PD; p++) { /* the first group also holds Q and dO */
        if (kstart + p * AB_TILE < kend) issue(p);
        ab_cp_commit();
    }
    float Lr[2], Dr[2];
#pragma unroll
    for (int r = 0; r < 2; r++) {
        const int qi = wq0 + 16 * w + g + 8 * r;
        const size_t li = ((size_t)b * Hq + h) * T_ + qi;
        Lr[r] = qi < T_ ? lse[li] * AB_LOG2E : 0.0f;
        Dr[r] = qi < T_ ? Dv[li] : 0.0f;
    }
    float dq[DH / 2]; /* not zeroed: the first visible tile's product overwrites it (as dK, dV above) */
    int acc = 0;
    /* Q and dO from shared memory: loop-invariant register A operands are unsafe (dK/dV kernel) */
    const uint64_t qA = ab_desc_kmajor(sa + L::q + wg * L::tile), oA = ab_desc_kmajor(sa + L::o + wg * L::tile);
    const uint64_t kK0 = ab_desc_kmajor(sa + L::k), vK0 = ab_desc_kmajor(sa + L::v), kM0 = ab_desc_mnmajor(sa + L::k);
    constexpr bool early_dp = DH == 128; /* see above */
    /* one barrier per tile; dQ += dS·K stays in flight into the next tile (as dV, dK above) */
    for (int k0 = kstart, it = 0; k0 < kend; k0 += AB_TILE, it++) {
        const int stage = it % AB_NS;
        ab_cp_wait<AB_PD - 1>();
        wg_fence_proxy_async();
        __syncthreads();
        if (k0 + AB_PD * AB_TILE < kend) issue((it + AB_PD) % AB_NS);
        ab_cp_commit();
        /* the WG sees none of these keys: all after its last query, or all out of its window */
        const bool none = k0 > wq0 + AB_TILE - 1 || (window > 0 && wq0 - (k0 + AB_TILE - 1) >= window);
        if (!none) {
            const uint32_t so = (uint32_t)(stage * L::tile) >> 4;
            const uint64_t kB = kK0 + so, vB = vK0 + so, kBm = kM0 + so;
            float s[32], dp[32];
            wg_arrive();
#pragma unroll
            for (int ks = 0; ks < DH / 16; ks++) wg_mma<64>::ss<0, 0>(s, ab_dk(qA, ks), ab_dk(kB, ks), ks > 0);
            wg_commit();
            if (early_dp) {
#pragma unroll
                for (int ks = 0; ks < DH / 16; ks++) wg_mma<64>::ss<0, 0>(dp, ab_dk(oA, ks), ab_dk(vB, ks), ks > 0);
                wg_commit();
                wg_wait<1>(); /* S done (and the previous tile's dQ product) */
            } else {
                wg_wait<0>();
            }
            wg_fence_operand(s);
            wg_fence_operand(dq);
            const bool masked = k0 + AB_TILE - 1 > wq0 || k0 + AB_TILE > T_ ||
                                (window > 0 && wq0 + AB_TILE - 1 - k0 >= window);
            if (masked) /* key kj < T visible from query qi (rows qi >= T are never stored) */
#pragma unroll
                for (int e = 0; e < 32; e++) {
                    const int qi = wq0 + 16 * w + g + 8 * ((e >> 1) & 1), kj = k0 + 8 * (e >> 2) + 2 * t + (e & 1);
                    if (!ab_visible(kj, kj, T_, 0) | !ab_visible(qi, kj, 0x7fffffff, window)) s[e] = -INFINITY;
                }
#pragma unroll
            for (int e = 0; e < 32; e++) s[e] = exp2f(fmaf(s[e], sl2, -Lr[(e >> 1) & 1]));
            if (!early_dp) {
                wg_arrive();
#pragma unroll
                for (int ks = 0; ks < DH / 16; ks++)
                    wg_mma<64>::ss<0, 0>(dp, ab_dk(oA, ks), ab_dk(vB, ks), ks > 0);
                wg_commit();
            }
            wg_wait<0>();
            wg_fence_operand(dp);
#pragma unroll
            for (int e = 0; e < 32; e++) dp[e] = s[e] * (dp[e] - Dr[(e >> 1) & 1]);
            uint32_t da[4][4];
#pragma unroll
            for (int kk = 0; kk < 4; kk++) ab_afrag(da[kk], dp, kk);
            wg_fence_operand(dq);
            wg_arrive();
#pragma unroll
            for (int kk = 0; kk < 4; kk++) wg_mma<DH>::template rs<1>(dq, da[kk], ab_dm(kBm, kk), kk > 0 || acc);
            acc = 1;
            wg_commit();
        } else {
            wg_wait<0>();
        }
    }
    wg_wait<0>();
    wg_fence_operand(dq);
#pragma unroll
    for (int r = 0; r < 2; r++) {
        const int qi = wq0 + 16 * w + g + 8 * r;
        if (qi >= T_) continue;
        uint32_t *dqr = (uint32_t *)(dqkv + ((size_t)b * T_ + qi) * W + (size_t)h * DH);
#pragma unroll
        for (int j = 0; j < DH / 8; j++) dqr[4 * j + t] = ab_pack(dq[4 * j + 2 * r] * scale, dq[4 * j + 2 * r + 1] * scale);
    }
}

#ifndef WG_EMU
#include "kernels/cuda/sm90a/attention_sm90a.h"

template <typename K> static int ab_prepare(hk_backend *hk, K kernel, int smem) {
    return !hk_cuda_record(hk, cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem),
                           "attention_bwd (wgmma) smem");
}

template <int DH>
static void ab_launch(hk_backend *hk, void *dqkv, const void *dout, const void *lse, const float *Dv, const void *qkv,
                      hk_attn_dims d, int parts) {
    const float scale = 1.0f / sqrtf((float)DH), sl2 = AB_LOG2E * scale;
    if (parts & ATT_PART_DKDV) {
        typedef ab_dkdv_shape<DH> S;
        const int smem = ab_dkdv_smem<DH>::bytes;
        if (!ab_prepare(hk, attn_dkdv_wg<DH>, smem)) return;
        const unsigned ktiles = (unsigned)((d.T + S::rows - 1) / S::rows);
        attn_dkdv_wg<DH><<<dim3(d.Hkv, d.B, ktiles), S::threads, smem, hk_cuda_stream(hk)>>>(
            (hk_bf16 *)dqkv, (const hk_bf16 *)dout, (const float *)lse, Dv, (const hk_bf16 *)qkv, d.T, d.Hq, d.Hkv,
            d.window, sl2, scale);
        if (hk_cuda_check_launch(hk, "attention_bwd dk dv (wgmma)")) return;
    }
    if (parts & ATT_PART_DQ) {
        const int smem = ab_dq_smem<DH>::bytes;
        if (!ab_prepare(hk, attn_dq_wg<DH>, smem)) return;
        const unsigned qtiles = (unsigned)((d.T + AB_ROWS - 1) / AB_ROWS);
        attn_dq_wg<DH><<<dim3(d.Hq, d.B, qtiles), AB_THREADS, smem, hk_cuda_stream(hk)>>>(
            (hk_bf16 *)dqkv, (const hk_bf16 *)dout, (const float *)lse, Dv, (const hk_bf16 *)qkv, d.T, d.Hq, d.Hkv,
            d.window, sl2, scale);
        hk_cuda_check_launch(hk, "attention_bwd dq (wgmma)");
    }
}
/* attention.cu calls this for bf16, dh 64 / 128, 16-byte aligned rows, after computing D. */
int hk_cuda_attn_bwd_sm90a(hk_backend *hk, void *dqkv, const void *dout, const void *lse, const float *Dv,
                           const void *qkv, hk_attn_dims d, int parts) {
    if (!hk_cuda_sm90a_enabled(hk) || hk_cuda_env_int("HLAB_ATTN_WGMMA_BWD", 1) == 0) return 0;
    if (d.dh == 64) ab_launch<64>(hk, dqkv, dout, lse, Dv, qkv, d, parts);
    else if (d.dh == 128) ab_launch<128>(hk, dqkv, dout, lse, Dv, qkv, d, parts);
    else return 0;
    return 1;
}
#endif
