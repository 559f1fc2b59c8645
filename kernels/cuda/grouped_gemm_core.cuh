/* kernels/cuda/grouped_gemm_core.cuh — the tile bodies of the grouped GEMM
 * (grouped_gemm.h), kept free of CUDA built-ins so that the host emulator
 * (tests/cuda/emu/grouped_gemm_emu.cpp, GG_EMULATE) compiles the very same
 * index math with mma/ldmatrix/cp.async emulated in their PTX fragment layouts.
 *
 * Products (rows r of expert e are offsets[e] .. offsets[e+1]; src(r) is r, or
 * gather[r] / gather_div when a gather list is given):
 *   GG_NT  C[r, n]   = Σ_k A[src(r), k] · B_e[n, k]     B_e = B + e·b_estride, [N][K]
 *   GG_NN  C[r, n]   = Σ_k A[r, k]      · B_e[k, n]     B_e [K][N]
 *   GG_TN  C_e[m, n] += Σ_r A[r, m]     · B[src(r), n]  C_e = C + e·c_estride, [M][N], fp32
 * Row-tile products (NT, NN) map a linear block index to (row tile, column
 * tile); row tiles are found through tile_start (prefix of ceil(count/128)
 * per expert) by binary search, so the host sizes the grid without knowing the
 * counts. GG_TN blocks own one output tile of one expert and reduce over all
 * its rows in order, or (split) over one chunk of them, the chunks' partials
 * summed in split order: deterministic, no float atomics.
 */
#ifndef HLAB_KERNELS_CUDA_GROUPED_GEMM_CORE_CUH
#define HLAB_KERNELS_CUDA_GROUPED_GEMM_CORE_CUH

#include <stddef.h>
#include <stdint.h>

#include <cuda_bf16.h>

#ifndef GG_EMULATE
#define GG_DEV __device__ __forceinline__

GG_DEV uint32_t gg_smem_addr(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }
/* 16 bytes global -> shared, asynchronous; zero-filled when !valid (src not read). */
GG_DEV void gg_cp_async16(void *dst, const void *src, bool valid) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(gg_smem_addr(dst)), "l"(src),
                 "r"(valid ? 16 : 0));
}
GG_DEV void gg_cp_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> GG_DEV void gg_cp_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }
GG_DEV void gg_ldsm_x4(uint32_t (&r)[4], const void *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(gg_smem_addr(p)));
}
GG_DEV void gg_ldsm_x4_t(uint32_t (&r)[4], const void *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(gg_smem_addr(p)));
}
/* d += a·b, m16n8k16, bf16 in, fp32 accumulate */
GG_DEV void gg_mma(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
GG_DEV void gg_sync() { __syncthreads(); }
GG_DEV void gg_threadfence() { __threadfence(); }
GG_DEV int gg_atomic_add(int *p, int v) { return atomicAdd(p, v); } /* integer tickets only */
GG_DEV float2 gg_ldcg2(const float *p) { return __ldcg(reinterpret_cast<const float2 *>(p)); } /* past L1 */
#endif

enum { GG_NT = 0, GG_NN = 1, GG_TN = 2 };

/* Row tile of the row-tile products; moe's scan computes tile_start with it. */
#define GG_ROW_TILE 128

struct gg_params {
    const void *A, *B;
    void *C;
    long long lda, ldb, ldc;        /* leading dimensions, elements */
    long long b_estride, c_estride; /* per-expert offset of B (NT, NN) or C (TN), elements */
    const int32_t *offsets;         /* [E+1] */
    const int32_t *tile_start;      /* [E+1] (NT, NN) */
    const int32_t *gather;          /* NULL or the row list of the row-indexed input (A of NT, B of TN) */
    int gather_div;
    int E, M, N, K; /* NT, NN: N columns, K reduction (M unused); TN: C_e is [M][N] */
    int m_tiles, n_tiles;
    int splits;  /* GG_TN: row chunks per output tile (1: one block reduces all rows, straight into C) */
    float *part; /* GG_TN, splits > 1: fp32 partials [splits][E·c_estride] */
    int *ticket; /* GG_TN, splits > 1: [E·m_tiles·n_tiles], zero on entry, left zero */
};

struct gg_tile {
    int live, e, row0, row_end, m0, n0;
};

/* Which tile a block owns. NT/NN: rows row0 .. min(row0 + 128, row_end) of
 * expert e, columns n0 ..; TN: expert e's output tile (m0, n0), reduced over
 * rows row0 .. row_end. live = 0: past the end (or an empty expert), exit. */
template <int MODE, int BN>
GG_DEV gg_tile gg_locate(const gg_params &p, int bid) {
    gg_tile t = {0, 0, 0, 0, 0, 0};
    if (MODE != GG_TN) {
        int mt = bid / p.n_tiles;
        t.n0 = (bid % p.n_tiles) * BN;
        if (mt >= p.tile_start[p.E]) return t;
        int lo = 0, hi = p.E - 1; /* largest e with tile_start[e] <= mt (skips empty experts) */
        while (lo < hi) {
            int mid = (lo + hi + 1) >> 1;
            if (p.tile_start[mid] <= mt) lo = mid;
            else hi = mid - 1;
        }
        t.e = lo;
        t.row0 = p.offsets[lo] + (mt - p.tile_start[lo]) * GG_ROW_TILE;
        t.row_end = p.offsets[lo + 1];
        t.live = 1;
    } else {
        int per = p.m_tiles * p.n_tiles, rest = bid % per;
        t.e = bid / per;
        t.m0 = (rest / p.n_tiles) * GG_ROW_TILE;
        t.n0 = (rest % p.n_tiles) * BN;
        t.row0 = p.offsets[t.e];
        t.row_end = p.offsets[t.e + 1];
        t.live = t.row_end > t.row0;
    }
    return t;
}

GG_DEV size_t gg_src_row(const gg_params &p, int r) {
    return p.gather ? (size_t)(p.gather[r] / p.gather_div) : (size_t)r;
}

GG_DEV void gg_store2(float *d, float a, float b) {
    d[0] = a;
    d[1] = b;
}
GG_DEV void gg_store2(__nv_bfloat16 *d, float a, float b) {
    *reinterpret_cast<__nv_bfloat162 *>(d) = __floats2bfloat162_rn(a, b);
}
GG_DEV void gg_store1(float *d, float a) { *d = a; }
GG_DEV void gg_store1(__nv_bfloat16 *d, float a) { *d = __float2bfloat16_rn(a); }
GG_DEV float gg_ld(float x) { return x; }
GG_DEV float gg_ld(__nv_bfloat16 x) { return __bfloat162float(x); }

/* ---- tensor-core tile: 128 x BN x BK (BN = 128 or 256, BK = 64 or 32), 8 warps (2 x 4, 64 x BN/4 each),
 * cp.async pipeline of gg_stages<BK> stages. BN = 256 halves the operand bytes per FLOP that the block pulls
 * through L2 and halves ldmatrix per mma, but runs one block per SM (measured slower: 128 x 128 is the
 * default). BK = 64 (3 stages) halves the barriers and cp.async waits per mma against BK = 32 (4 stages):
 * with 32, each barrier covers only two k16 steps, too few to hide it. Needs K, N (and M for TN) multiples
 * of 8 and 16-byte aligned operands (the host checks). Shared tiles are padded by 8 elements a row: rows of
 * 80 / 144 or 272 / 528 bytes put ldmatrix's eight 16-byte rows in distinct banks. */
#define GG_BM 128
#define GG_THREADS 256

template <int BK> struct gg_stages {
    static constexpr int value = BK == 64 ? 3 : 4;
};

template <int MODE, int BN, int BK> struct gg_mma_shape {
    static constexpr int stages = gg_stages<BK>::value;
    static constexpr bool a_kmaj = MODE != GG_TN; /* A tile stored [m][k] (else [k][m]) */
    static constexpr bool b_kmaj = MODE == GG_NT; /* B tile stored [n][k] (else [k][n]) */
    static constexpr int a_ld = a_kmaj ? BK + 8 : GG_BM + 8;
    static constexpr int b_ld = b_kmaj ? BK + 8 : BN + 8;
    static constexpr int a_stage = a_kmaj ? GG_BM * a_ld : BK * a_ld;
    static constexpr int b_stage = b_kmaj ? BN * b_ld : BK * b_ld;
    static constexpr size_t smem_bytes = (size_t)stages * (a_stage + b_stage) * 2;
    static constexpr int warp_n = BN / 4;                        /* columns per warp */
    static constexpr int ni = warp_n / 8;                        /* m16n8 tiles per warp row */
    static constexpr int a_chunks = GG_BM * BK / 8 / GG_THREADS; /* 16-byte A chunks per thread per stage */
    static constexpr int b_chunks = BN * BK / 8 / GG_THREADS;    /* 16-byte B chunks per thread per stage */
};

/* GG_TN split over row chunks (p.splits > 1): the split's block stores its fp32 tile in p.part[split] and
 * takes a ticket; the block that draws the last ticket adds Σ over splits 0, 1, .. (fixed order, whichever
 * block is last) into C and resets the ticket. The splits of a tile are adjacent in the grid, so the
 * partials are still in L2 when they are summed. */
template <int BK> GG_DEV void gg_tn_chunk(const gg_params &p, gg_tile &t, int split) {
    int count = t.row_end - t.row0;
    int chunk = (count + p.splits - 1) / p.splits;
    chunk = (chunk + BK - 1) / BK * BK; /* whole k-tiles per split */
    int r0 = t.row0 + split * chunk;
    int r1 = r0 + chunk;
    t.row0 = r0 < t.row_end ? r0 : t.row_end;
    t.row_end = r1 < t.row_end ? r1 : t.row_end;
}

template <int MODE, typename OutT, int BN, int BK>
GG_DEV void gg_mma_tile(const gg_params &p, char *smem, int tid, int bid) {
    typedef __nv_bfloat16 bf;
    typedef gg_mma_shape<MODE, BN, BK> S;
    constexpr int NI = S::ni, STAGES = S::stages, AC = S::a_chunks, BC = S::b_chunks;
    int split = 0;
    if (MODE == GG_TN && p.splits > 1) {
        split = bid % p.splits;
        bid /= p.splits;
    }
    gg_tile t = gg_locate<MODE, BN>(p, bid);
    if (!t.live) return;
    if (MODE == GG_TN && p.splits > 1) gg_tn_chunk<BK>(p, t, split);
    bf *sA = reinterpret_cast<bf *>(smem), *sB = sA + STAGES * S::a_stage;
    const bf *A = static_cast<const bf *>(p.A), *B = static_cast<const bf *>(p.B);
    const bf *Bx = MODE == GG_TN ? B : B + (size_t)t.e * (size_t)p.b_estride;
    const int K = MODE == GG_TN ? t.row_end - t.row0 : p.K;
    const int ktiles = (K + BK - 1) / BK;

    /* Each thread moves AC A chunks and BC B chunks of 16 bytes per stage. Chunk i of a stage is the same
     * (row, column) of the stored tile at every k-tile; its global source moves by a fixed step per k-tile
     * (BK elements along a row for a k-major operand, BK rows otherwise). So the source pointers are
     * resolved once (gather included) and stepped: recomputing them per stage with 64-bit products cost
     * ~90 instructions per 32-wide k-tile ahead of the first ldmatrix. The validity that does not change with k
     * (row or column inside the tile's range) is one bit per chunk; the k test is one compare. */
    constexpr int a_per_row = S::a_kmaj ? BK / 8 : GG_BM / 8; /* 16-byte chunks per stored A row */
    constexpr int b_per_row = S::b_kmaj ? BK / 8 : BN / 8;    /* 16-byte chunks per stored B row */
    /* TN with a gather: B's source rows change with k and come through the gather list; its entries are
     * fetched one stage ahead (b_gather), so that the list's global-load latency is not waited out on the
     * issue path of the cp.async in the main loop. */
    const bool b_use_gather = MODE == GG_TN && p.gather != nullptr;
    const long long a_step = S::a_kmaj ? BK : (long long)BK * p.lda;
    const long long b_step = S::b_kmaj ? BK : (long long)BK * p.ldb;
    const bf *a_src[AC];
    const bf *b_src[BC];
    unsigned a_ok = 0, b_ok = 0;
#pragma unroll
    for (int i = 0; i < AC; i++) {
        const int c = tid + i * GG_THREADS, sr = c / a_per_row, sc = (c % a_per_row) * 8;
        bool ok;
        size_t off = 0;
        if constexpr (S::a_kmaj) { /* [128 rows][BK/8 chunks]: row sr, k sc */
            int r = t.row0 + sr;
            ok = r < t.row_end;
            if (ok) off = gg_src_row(p, r) * (size_t)p.lda + (size_t)sc;
        } else { /* [BK k][16 chunks of m]: k sr, m sc */
            int m = t.m0 + sc;
            ok = m < p.M;
            off = (size_t)(t.row0 + sr) * (size_t)p.lda + (size_t)m;
        }
        a_src[i] = A + (ok ? off : 0);
        a_ok |= (unsigned)ok << i;
    }
#pragma unroll
    for (int i = 0; i < BC; i++) {
        const int c = tid + i * GG_THREADS, sr = c / b_per_row, sc = (c % b_per_row) * 8;
        bool ok;
        size_t off = 0;
        if constexpr (S::b_kmaj) { /* [BN n][BK/8 chunks of k]: n sr, k sc */
            int n = t.n0 + sr;
            ok = n < p.N;
            off = (size_t)n * (size_t)p.ldb + (size_t)sc;
        } else { /* [BK k][BN/8 chunks of n]: k sr, n sc */
            int n = t.n0 + sc;
            ok = n < p.N;
            off = (size_t)((MODE == GG_TN ? t.row0 : 0) + sr) * (size_t)p.ldb + (size_t)n;
        }
        b_src[i] = Bx + (ok ? off : 0);
        b_ok |= (unsigned)ok << i;
    }
    int b_gather[BC];
#pragma unroll
    for (int i = 0; i < BC; i++) b_gather[i] = 0;
    /* gather_div is top-k, mostly a power of two: a shift instead of a division per chunk and stage */
    int gather_shift = -1;
    if (b_use_gather && (p.gather_div & (p.gather_div - 1)) == 0) {
        gather_shift = 0;
        while ((1 << gather_shift) < p.gather_div) gather_shift++;
    }
    auto fetch_gather = [&](int kt) {
        if (b_use_gather && kt < ktiles) {
#pragma unroll
            for (int i = 0; i < BC; i++) {
                int k = kt * BK + (tid + i * GG_THREADS) / b_per_row;
                b_gather[i] = k < K ? p.gather[t.row0 + k] : 0;
            }
        }
    };
    /* stages are issued in k order, each once: kt is the next k-tile of every chunk's stepped pointer */
    auto load_stage = [&](int stage, int kt) {
        bf *dA = sA + stage * S::a_stage, *dB = sB + stage * S::b_stage;
        const int k0 = kt * BK;
#pragma unroll
        for (int i = 0; i < AC; i++) {
            const int c = tid + i * GG_THREADS, sr = c / a_per_row, sc = (c % a_per_row) * 8;
            bool ok = ((a_ok >> i) & 1) && k0 + (S::a_kmaj ? sc : sr) < K;
            gg_cp_async16(dA + sr * S::a_ld + sc, ok ? a_src[i] : A, ok);
            a_src[i] += a_step;
        }
#pragma unroll
        for (int i = 0; i < BC; i++) {
            const int c = tid + i * GG_THREADS, sr = c / b_per_row, sc = (c % b_per_row) * 8;
            bool ok = ((b_ok >> i) & 1) && k0 + (S::b_kmaj ? sc : sr) < K;
            const bf *src = b_src[i];
            if (b_use_gather) { /* (b_src unused) */
                unsigned g = (unsigned)b_gather[i];
                g = gather_shift >= 0 ? g >> gather_shift : g / (unsigned)p.gather_div;
                src = Bx + (size_t)g * (size_t)p.ldb + (size_t)(t.n0 + sc);
            }
            gg_cp_async16(dB + sr * S::b_ld + sc, ok ? src : B, ok);
            b_src[i] += b_step;
        }
    };

    const int warp = tid >> 5, lane = tid & 31;
    const int wm0 = (warp >> 2) * 64, wn0 = (warp & 3) * S::warp_n;
    float acc[4][NI][4];
#pragma unroll
    for (int mi = 0; mi < 4; mi++)
#pragma unroll
        for (int ni = 0; ni < NI; ni++)
#pragma unroll
            for (int q = 0; q < 4; q++) acc[mi][ni][q] = 0.0f;

    fetch_gather(0);
#pragma unroll
    for (int s = 0; s < STAGES - 1; s++) {
        if (s < ktiles) {
            load_stage(s, s);
            fetch_gather(s + 1);
        }
        gg_cp_commit();
    }
    for (int kt = 0; kt < ktiles; kt++) {
        gg_cp_wait<STAGES - 2>();
        gg_sync(); /* stage kt landed for everyone; stage kt-1 is free to refill */
        const bf *tA = sA + (kt % STAGES) * S::a_stage, *tB = sB + (kt % STAGES) * S::b_stage;
#pragma unroll
        for (int kk = 0; kk < BK / 16; kk++) {
            uint32_t af[4][4], bfr[NI][2];
#pragma unroll
            for (int mi = 0; mi < 4; mi++) {
                if constexpr (S::a_kmaj) {
                    int row = wm0 + mi * 16 + (lane & 7) + ((lane >> 3) & 1) * 8, col = kk * 16 + (lane >> 4) * 8;
                    gg_ldsm_x4(af[mi], tA + row * S::a_ld + col);
                } else {
                    int kr = kk * 16 + (lane & 7) + (lane >> 4) * 8, col = wm0 + mi * 16 + ((lane >> 3) & 1) * 8;
                    gg_ldsm_x4_t(af[mi], tA + kr * S::a_ld + col);
                }
            }
#pragma unroll
            for (int nj = 0; nj < NI / 2; nj++) {
                uint32_t r[4];
                if constexpr (S::b_kmaj) {
                    int row = wn0 + nj * 16 + (lane & 7) + (lane >> 4) * 8, col = kk * 16 + ((lane >> 3) & 1) * 8;
                    gg_ldsm_x4(r, tB + row * S::b_ld + col);
                } else {
                    int kr = kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8, col = wn0 + nj * 16 + (lane >> 4) * 8;
                    gg_ldsm_x4_t(r, tB + kr * S::b_ld + col);
                }
                bfr[2 * nj][0] = r[0];
                bfr[2 * nj][1] = r[1];
                bfr[2 * nj + 1][0] = r[2];
                bfr[2 * nj + 1][1] = r[3];
            }
#pragma unroll
            for (int mi = 0; mi < 4; mi++)
#pragma unroll
                for (int ni = 0; ni < NI; ni++) gg_mma(acc[mi][ni], af[mi], bfr[ni]);
            if (kk == 0) {
                /* refill stage kt-1 with k-tile kt+STAGES-1: issued behind the first k16 step's mma, so that
                 * they run under the copies' address work (ptxas keeps the copies in program order with the
                 * ldmatrix reads); after the mma, not before, as the fragments' registers are free again */
                int nk = kt + STAGES - 1;
                if (nk < ktiles) {
                    load_stage(nk % STAGES, nk);
                    fetch_gather(nk + 1);
                }
                gg_cp_commit();
            }
        }
    }
    gg_cp_wait<0>(); /* no copy may outlive the block (empty groups only, but keep it exact) */

    /* accumulator (mi, ni, q): row g (+8 for q >= 2), columns 2·tq, 2·tq + 1 of the m16n8 tile */
    const int g = lane >> 2, tq = lane & 3;
    if constexpr (MODE != GG_TN) {
#pragma unroll
        for (int mi = 0; mi < 4; mi++)
#pragma unroll
            for (int ni = 0; ni < NI; ni++)
#pragma unroll
                for (int h = 0; h < 2; h++) {
                    int r = t.row0 + wm0 + mi * 16 + g + h * 8, n = t.n0 + wn0 + ni * 8 + tq * 2;
                    if (r < t.row_end && n < p.N)
                        gg_store2(static_cast<OutT *>(p.C) + (size_t)r * (size_t)p.ldc + n, acc[mi][ni][2 * h],
                                  acc[mi][ni][2 * h + 1]);
                }
    } else {
        const size_t tile_elems = (size_t)p.E * (size_t)p.c_estride; /* one split's partial: all of C */
        const size_t cbase = (size_t)t.e * (size_t)p.c_estride;
        if (p.splits > 1) {
            float *part = p.part + (size_t)split * tile_elems + cbase;
#pragma unroll
            for (int mi = 0; mi < 4; mi++)
#pragma unroll
                for (int ni = 0; ni < NI; ni++)
#pragma unroll
                    for (int h = 0; h < 2; h++) {
                        int m = t.m0 + wm0 + mi * 16 + g + h * 8, n = t.n0 + wn0 + ni * 8 + tq * 2;
                        if (m < p.M && n < p.N)
                            gg_store2(part + (size_t)m * (size_t)p.ldc + n, acc[mi][ni][2 * h],
                                      acc[mi][ni][2 * h + 1]);
                    }
            /* publish the partial, then draw a ticket; the last of the tile's splits reduces */
            gg_threadfence();
            gg_sync();
            int *flag = reinterpret_cast<int *>(smem); /* the pipeline is drained: smem is free */
            if (tid == 0) {
                int ticket = gg_atomic_add(p.ticket + bid, 1);
                flag[0] = ticket == p.splits - 1;
                if (flag[0]) p.ticket[bid] = 0; /* ready for the next call */
            }
            gg_sync();
            if (!flag[0]) return;
            gg_threadfence();
#pragma unroll
            for (int mi = 0; mi < 4; mi++)
#pragma unroll
                for (int ni = 0; ni < NI; ni++)
#pragma unroll
                    for (int h = 0; h < 2; h++) {
                        int m = t.m0 + wm0 + mi * 16 + g + h * 8, n = t.n0 + wn0 + ni * 8 + tq * 2;
                        if (m < p.M && n < p.N) {
                            size_t off = cbase + (size_t)m * (size_t)p.ldc + n;
                            float v0 = 0.0f, v1 = 0.0f;
                            for (int s = 0; s < p.splits; s++) {
                                float2 q = gg_ldcg2(p.part + (size_t)s * tile_elems + off);
                                v0 += q.x;
                                v1 += q.y;
                            }
                            float *d = static_cast<float *>(p.C) + off;
                            d[0] += v0;
                            d[1] += v1;
                        }
                    }
        } else {
#pragma unroll
            for (int mi = 0; mi < 4; mi++)
#pragma unroll
                for (int ni = 0; ni < NI; ni++)
#pragma unroll
                    for (int h = 0; h < 2; h++) {
                        int m = t.m0 + wm0 + mi * 16 + g + h * 8, n = t.n0 + wn0 + ni * 8 + tq * 2;
                        if (m < p.M && n < p.N) {
                            float *d = static_cast<float *>(p.C) + cbase + (size_t)m * (size_t)p.ldc + n;
                            d[0] += acc[mi][ni][2 * h];
                            d[1] += acc[mi][ni][2 * h + 1];
                        }
                    }
        }
    }
}

/* ---- SIMT tile (fp32 parity mode, and bf16 shapes the tensor-core tile does not take):
 * 128 x 64 x 16, 256 threads of 8 x 4 outputs, fp32 fused multiply-adds in k order. */
#define GS_BM 128
#define GS_BN 64
#define GS_BK 16
#define GS_THREADS 256
#define GS_SMEM_FLOATS (GS_BK * (GS_BM + 4) + GS_BK * (GS_BN + 4))

template <int MODE, typename T, typename OutT>
GG_DEV void gg_simt_tile(const gg_params &p, float *smem, int tid, int bid) {
    const gg_tile t = gg_locate<MODE, GS_BN>(p, bid);
    if (!t.live) return;
    float *sA = smem, *sB = smem + GS_BK * (GS_BM + 4); /* both [k][m or n] */
    const T *A = static_cast<const T *>(p.A), *B = static_cast<const T *>(p.B);
    const T *Bx = MODE == GG_TN ? B : B + (size_t)t.e * (size_t)p.b_estride;
    const int K = MODE == GG_TN ? t.row_end - t.row0 : p.K;
    const int ty = tid >> 4, tx = tid & 15;
    float acc[8][4];
    for (int i = 0; i < 8; i++)
        for (int j = 0; j < 4; j++) acc[i][j] = 0.0f;
    for (int k0 = 0; k0 < K; k0 += GS_BK) {
        for (int idx = tid; idx < GS_BM * GS_BK; idx += GS_THREADS) {
            int m, k;
            float v = 0.0f;
            if (MODE != GG_TN) { /* k fastest: rows are contiguous in k */
                m = idx / GS_BK;
                k = idx % GS_BK;
                int r = t.row0 + m;
                if (r < t.row_end && k0 + k < K) v = gg_ld(A[gg_src_row(p, r) * (size_t)p.lda + k0 + k]);
            } else {
                k = idx / GS_BM;
                m = idx % GS_BM;
                if (k0 + k < K && t.m0 + m < p.M) v = gg_ld(A[(size_t)(t.row0 + k0 + k) * (size_t)p.lda + t.m0 + m]);
            }
            sA[k * (GS_BM + 4) + m] = v;
        }
        for (int idx = tid; idx < GS_BN * GS_BK; idx += GS_THREADS) {
            int n, k;
            float v = 0.0f;
            if (MODE == GG_NT) {
                n = idx / GS_BK;
                k = idx % GS_BK;
                if (t.n0 + n < p.N && k0 + k < K) v = gg_ld(Bx[(size_t)(t.n0 + n) * (size_t)p.ldb + k0 + k]);
            } else {
                k = idx / GS_BN;
                n = idx % GS_BN;
                if (k0 + k < K && t.n0 + n < p.N) {
                    size_t row = MODE == GG_TN ? gg_src_row(p, t.row0 + k0 + k) : (size_t)(k0 + k);
                    v = gg_ld(Bx[row * (size_t)p.ldb + t.n0 + n]);
                }
            }
            sB[k * (GS_BN + 4) + n] = v;
        }
        gg_sync();
        for (int k = 0; k < GS_BK; k++) {
            float a[8], b[4];
            for (int i = 0; i < 8; i++) a[i] = sA[k * (GS_BM + 4) + ty + 16 * i];
            for (int j = 0; j < 4; j++) b[j] = sB[k * (GS_BN + 4) + tx + 16 * j];
            for (int i = 0; i < 8; i++)
                for (int j = 0; j < 4; j++) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
        }
        gg_sync();
    }
    for (int i = 0; i < 8; i++)
        for (int j = 0; j < 4; j++) {
            int lr = ty + 16 * i, lc = tx + 16 * j;
            if (MODE != GG_TN) {
                int r = t.row0 + lr, n = t.n0 + lc;
                if (r < t.row_end && n < p.N)
                    gg_store1(static_cast<OutT *>(p.C) + (size_t)r * (size_t)p.ldc + n, acc[i][j]);
            } else {
                int m = t.m0 + lr, n = t.n0 + lc;
                if (m < p.M && n < p.N)
                    static_cast<float *>(p.C)[(size_t)t.e * (size_t)p.c_estride + (size_t)m * (size_t)p.ldc + n] +=
                        acc[i][j];
            }
        }
}

#endif
