/* tests/cuda/emu/grouped_gemm_emu.cpp — host emulation of the grouped GEMM's
 * tile bodies (kernels/cuda/grouped_gemm_core.cuh) against a plain loop, for
 * machines without a GPU. Not part of ctest (it is C++ and slow); build and run:
 *
 *   g++ -std=c++20 -O1 -g -fsanitize=address,undefined -I. -I/usr/local/cuda/include \
 *       tests/cuda/emu/grouped_gemm_emu.cpp -o /tmp/gg_emu -lpthread && /tmp/gg_emu
 *   (or -fsanitize=thread: missing barriers show up as data races on shared memory)
 *
 * Every CUDA thread of a block is an OS thread; __syncthreads is a std::barrier
 * over the block. Warp-collective instructions publish each lane's operands,
 * wait on a warp barrier and compute every lane's result in the PTX fragment
 * layouts (ldmatrix .x4 / .x4.trans, mma.m16n8k16 row.col). cp.async is
 * deferred: at issue the destination is poisoned (bf16 NaN) and the data lands
 * only at the issuing thread's cp.async.wait_group, so reading a stage too early
 * or refilling one still in use shows up as NaN in the result. Shared and global
 * addresses are bounds- and alignment-checked. Blocks run one at a time in a
 * shuffled order (the split weight-gradient reduction must not depend on which
 * split finishes last; its tickets must end at zero). Prints one line per case and
 * "emu: all N cases pass" (exit 0) or the failures (exit 1).
 */
#define GG_EMULATE 1
#include <algorithm>
#include <barrier>
#include <cassert>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include <cuda_bf16.h>

#define GG_DEV inline
#define float2 float2_

/* ---- emulated intrinsics ------------------------------------------------------------ */

struct copy_op {
    void *dst;
    const void *src;
    bool valid;
};
struct emu_block {
    std::barrier<> *bar;
    std::barrier<> *warp_bar[32];
    const void *ptr[32][32];
    uint32_t a[32][32][4], b[32][32][2];
    float c[32][32][4];
    char *smem;
    size_t smem_bytes;
};
static emu_block *g_blk;
static thread_local int t_tid;
static thread_local std::vector<std::vector<copy_op>> t_groups;
static thread_local std::vector<copy_op> t_open;
struct range {
    const char *lo, *hi;
};
static std::vector<range> g_global; /* readable global ranges */
static bool g_eager;                /* cp.async lands at issue instead of at the wait */

#define EMU_CHECK(cond, ...)                                                    \
    do {                                                                        \
        if (!(cond)) {                                                          \
            fprintf(stderr, "emu check failed: %s (%s:%d) ", #cond, __FILE__, __LINE__); \
            fprintf(stderr, __VA_ARGS__);                                       \
            fprintf(stderr, "\n");                                              \
            abort();                                                            \
        }                                                                       \
    } while (0)

static void check_smem(const void *p, size_t n) {
    const char *c = (const char *)p;
    EMU_CHECK(c >= g_blk->smem && c + n <= g_blk->smem + g_blk->smem_bytes, "smem %p outside", p);
}
static void check_global(const void *p, size_t n) {
    const char *c = (const char *)p;
    for (const range &r : g_global)
        if (c >= r.lo && c + n <= r.hi) return;
    EMU_CHECK(false, "global %p outside every operand", p);
}

static void do_copy(const copy_op &o) {
    if (o.valid) memcpy(o.dst, o.src, 16);
    else memset(o.dst, 0, 16);
}
inline void gg_cp_async16(void *dst, const void *src, bool valid) {
    check_smem(dst, 16);
    EMU_CHECK(((uintptr_t)dst & 15) == 0 && ((uintptr_t)src & 15) == 0, "cp.async misaligned");
    if (valid) check_global(src, 16);
    copy_op o = {dst, src, valid};
    if (g_eager) {
        do_copy(o);
        return;
    }
    memset(dst, 0xff, 16); /* bf16 0xffff = NaN until the wait */
    t_open.push_back(o);
}
inline void gg_cp_commit() {
    t_groups.push_back(t_open);
    t_open.clear();
}
template <int N> inline void gg_cp_wait() {
    while ((int)t_groups.size() > N) {
        for (const copy_op &o : t_groups.front()) do_copy(o);
        t_groups.erase(t_groups.begin());
    }
}
inline void gg_sync() { g_blk->bar->arrive_and_wait(); }
inline void gg_threadfence() {}
/* Blocks run one at a time (in a shuffled order), so a plain add is the atomic. */
inline int gg_atomic_add(int *p, int v) {
    check_global(p, sizeof(int));
    int old = *p;
    *p = old + v;
    return old;
}
struct float2_ {
    float x, y;
};
inline float2_ gg_ldcg2(const float *p) {
    check_global(p, 8);
    return {p[0], p[1]};
}

static inline float bf_bits(uint32_t h) {
    uint32_t u = (h & 0xffffu) << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static void ldsm(uint32_t (&r)[4], const void *p, bool trans) {
    int w = t_tid >> 5, l = t_tid & 31;
    check_smem(p, 16);
    EMU_CHECK(((uintptr_t)p & 15) == 0, "ldmatrix row misaligned");
    g_blk->ptr[w][l] = p;
    g_blk->warp_bar[w]->arrive_and_wait();
    for (int j = 0; j < 4; j++) {
        uint32_t lo, hi;
        if (!trans) { /* lane l: row l/4 of matrix j, columns 2(l%4), +1 */
            const uint16_t *row = (const uint16_t *)g_blk->ptr[w][j * 8 + l / 4];
            lo = row[2 * (l % 4)];
            hi = row[2 * (l % 4) + 1];
        } else { /* lane l: column l/4 of stored rows 2(l%4), +1 */
            lo = ((const uint16_t *)g_blk->ptr[w][j * 8 + 2 * (l % 4)])[l / 4];
            hi = ((const uint16_t *)g_blk->ptr[w][j * 8 + 2 * (l % 4) + 1])[l / 4];
        }
        r[j] = lo | (hi << 16);
    }
    g_blk->warp_bar[w]->arrive_and_wait();
}
inline void gg_ldsm_x4(uint32_t (&r)[4], const void *p) { ldsm(r, p, false); }
inline void gg_ldsm_x4_t(uint32_t (&r)[4], const void *p) { ldsm(r, p, true); }

inline void gg_mma(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
    int w = t_tid >> 5, l = t_tid & 31;
    memcpy(g_blk->a[w][l], a, sizeof a);
    memcpy(g_blk->b[w][l], b, sizeof b);
    g_blk->warp_bar[w]->arrive_and_wait();
    float Am[16][16], Bm[16][8];
    for (int L = 0; L < 32; L++) {
        for (int i = 0; i < 4; i++)
            for (int h = 0; h < 2; h++)
                Am[L / 4 + 8 * (i % 2)][2 * (L % 4) + h + 8 * (i / 2)] = bf_bits(g_blk->a[w][L][i] >> (16 * h));
        for (int i = 0; i < 2; i++)
            for (int h = 0; h < 2; h++) Bm[2 * (L % 4) + h + 8 * i][L / 4] = bf_bits(g_blk->b[w][L][i] >> (16 * h));
    }
    for (int i = 0; i < 4; i++) {
        int row = l / 4 + 8 * (i / 2), col = 2 * (l % 4) + i % 2;
        float s = d[i];
        for (int k = 0; k < 16; k++) s += Am[row][k] * Bm[k][col];
        d[i] = s;
    }
    g_blk->warp_bar[w]->arrive_and_wait();
}

#include "kernels/cuda/grouped_gemm_core.cuh"

/* ---- grid runner ---------------------------------------------------------------------- */

static std::mt19937 rng(1234);

/* Blocks run one at a time in a shuffled order: the GPU gives no order either, and a split
 * reduction must not depend on which split of a tile finishes last. */
template <class Body>
static void run_grid(const gg_params &p, int mode, int blocks, int threads, size_t smem_bytes, Body body) {
    std::vector<int> order(blocks);
    for (int b = 0; b < blocks; b++) order[b] = b;
    std::shuffle(order.begin(), order.end(), rng);
    for (int bid : order) {
        int tile = mode == GG_TN && p.splits > 1 ? bid / p.splits : bid;
        gg_tile t = mode == GG_TN ? gg_locate<GG_TN, 0>(p, tile) : gg_locate<GG_NT, 0>(p, tile);
        if (!t.live) continue; /* the kernel returns before touching anything */
        emu_block *blk = new emu_block();
        std::barrier<> bar(threads);
        std::vector<std::barrier<> *> wb;
        for (int w = 0; w < threads / 32; w++) blk->warp_bar[w] = new std::barrier<>(32);
        blk->bar = &bar;
        std::vector<char> smem(smem_bytes + 64);
        char *base = (char *)(((uintptr_t)smem.data() + 15) & ~(uintptr_t)15);
        memset(base, 0xff, smem_bytes);
        blk->smem = base;
        blk->smem_bytes = smem_bytes;
        g_blk = blk;
        std::vector<std::thread> ts;
        for (int tid = 0; tid < threads; tid++)
            ts.emplace_back([&, tid] {
                t_tid = tid;
                t_groups.clear();
                t_open.clear();
                body(base, tid, bid);
                EMU_CHECK(t_open.empty(), "uncommitted cp.async at exit");
                for (auto &g : t_groups) EMU_CHECK(g.empty(), "cp.async group outlives the block");
            });
        for (auto &t : ts) t.join();
        for (int w = 0; w < threads / 32; w++) delete blk->warp_bar[w];
        delete blk;
    }
}

/* ---- cases ---------------------------------------------------------------------------- */

static float urand() { return std::uniform_real_distribution<float>(-1.0f, 1.0f)(rng); }

template <typename T> static T cvt(float x);
template <> float cvt<float>(float x) { return x; }
template <> __nv_bfloat16 cvt<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }
static float tof(float x) { return x; }
static float tof(__nv_bfloat16 x) { return __bfloat162float(x); }

static int failures, cases;
static int g_gather_div = 2; /* the gather list's divisor (top-k): 2 takes the kernels' shift, 3 the division */

/* mode GG_NT/GG_NN: out[rows, N] from A[src rows, K] and B[E]...; GG_TN: out[E][M][N] += ...
 * tc: the tensor-core tile of width bn (T must be bf16); else the SIMT tile. splits: GG_TN row chunks. */
template <typename T, typename OutT>
static void run_case(const char *name, int mode, bool tc, std::vector<int> counts, int M, int N, int K, bool gather,
                     bool eager, int bn_tc = 128, int splits = 1, int bk_tc = 64) {
    int E = (int)counts.size();
    std::vector<int32_t> offsets(E + 1), tile_start(E + 1);
    offsets[0] = tile_start[0] = 0;
    for (int e = 0; e < E; e++) {
        offsets[e + 1] = offsets[e] + counts[e];
        tile_start[e + 1] = tile_start[e] + (counts[e] + GG_ROW_TILE - 1) / GG_ROW_TILE;
    }
    int rows = offsets[E];
    int div = g_gather_div, src_rows = rows / 2 + 3;
    std::vector<int32_t> gidx(rows);
    for (int r = 0; r < rows; r++) gidx[r] = (int32_t)(rng() % (uint32_t)(src_rows * div));
    /* operands (values rounded to T so the reference sees the same numbers) */
    size_t a_rows = mode == GG_NT && gather ? (size_t)src_rows : (size_t)rows;
    size_t a_cols = mode == GG_TN ? (size_t)M : (size_t)K;
    size_t b_elems = mode == GG_TN ? (size_t)(gather ? src_rows : rows) * N : (size_t)E * N * K;
    std::vector<T> A(a_rows * a_cols + 8), B(b_elems + 8);
    for (auto &x : A) x = cvt<T>(urand());
    for (auto &x : B) x = cvt<T>(urand());
    size_t out_elems = mode == GG_TN ? (size_t)E * M * N : (size_t)(rows + 5) * N;
    std::vector<OutT> C(out_elems + 8);
    std::vector<double> ref(out_elems);
    for (size_t i = 0; i < out_elems; i++) {
        float init = mode == GG_TN ? urand() : 12345.0f; /* TN accumulates; others: sentinel */
        C[i] = cvt<OutT>(init);
        ref[i] = tof(C[i]);
    }
    /* plain loop */
    for (int e = 0; e < E; e++)
        for (int r = offsets[e]; r < offsets[e + 1]; r++) {
            if (mode == GG_TN) {
                size_t br = gather ? (size_t)(gidx[r] / div) : (size_t)r;
                for (int m = 0; m < M; m++)
                    for (int n = 0; n < N; n++)
                        ref[(size_t)e * M * N + (size_t)m * N + n] +=
                            (double)tof(A[(size_t)r * M + m]) * tof(B[br * N + n]);
            } else {
                size_t ar = mode == GG_NT && gather ? (size_t)(gidx[r] / div) : (size_t)r;
                for (int n = 0; n < N; n++) {
                    double s = 0;
                    for (int k = 0; k < K; k++) {
                        double b = mode == GG_NT ? tof(B[(size_t)e * N * K + (size_t)n * K + k])
                                                 : tof(B[(size_t)e * K * N + (size_t)k * N + n]);
                        s += (double)tof(A[ar * K + k]) * b;
                    }
                    ref[(size_t)r * N + n] = s;
                }
            }
        }
    /* the kernel, with gg_run's grid */
    gg_params p;
    memset(&p, 0, sizeof p);
    p.A = A.data();
    p.B = B.data();
    p.C = C.data();
    p.offsets = offsets.data();
    p.tile_start = tile_start.data();
    p.gather = gather ? gidx.data() : nullptr;
    p.gather_div = div;
    p.E = E;
    int bn = tc ? bn_tc : GS_BN;
    int blocks;
    std::vector<float> part;
    std::vector<int> ticket;
    size_t bad = 0;
    if (mode == GG_TN) {
        p.lda = M;
        p.ldb = N;
        p.ldc = N;
        p.c_estride = (long long)M * N;
        p.M = M;
        p.N = N;
        p.m_tiles = (M + GG_ROW_TILE - 1) / GG_ROW_TILE;
        p.n_tiles = (N + bn - 1) / bn;
        blocks = E * p.m_tiles * p.n_tiles;
        p.splits = splits;
        if (splits > 1) {
            part.assign((size_t)splits * E * M * N, std::nanf(""));
            ticket.assign((size_t)blocks, 0);
            p.part = part.data();
            p.ticket = ticket.data();
            blocks *= splits;
        }
    } else {
        p.lda = K;
        p.ldb = mode == GG_NT ? K : N;
        p.ldc = N;
        p.b_estride = (long long)N * K;
        p.N = N;
        p.K = K;
        p.n_tiles = (N + bn - 1) / bn;
        blocks = ((rows + GG_ROW_TILE - 1) / GG_ROW_TILE + std::min(E, rows)) * p.n_tiles;
    }
    g_global = {{(const char *)A.data(), (const char *)(A.data() + A.size())},
                {(const char *)B.data(), (const char *)(B.data() + B.size())},
                {(const char *)part.data(), (const char *)(part.data() + part.size())},
                {(const char *)ticket.data(), (const char *)(ticket.data() + ticket.size())}};
    g_eager = eager;
    if (tc) {
        auto go = [&](auto bn_c, auto bk_c) {
            constexpr int BN = decltype(bn_c)::value, BK = decltype(bk_c)::value;
            size_t smem = mode == GG_NT   ? gg_mma_shape<GG_NT, BN, BK>::smem_bytes
                          : mode == GG_NN ? gg_mma_shape<GG_NN, BN, BK>::smem_bytes
                                          : gg_mma_shape<GG_TN, BN, BK>::smem_bytes;
            run_grid(p, mode, blocks, GG_THREADS, smem, [&](char *sm, int tid, int bid) {
                if constexpr (sizeof(T) == 2) {
                    if (mode == GG_NT) gg_mma_tile<GG_NT, OutT, BN, BK>(p, sm, tid, bid);
                    else if (mode == GG_NN) gg_mma_tile<GG_NN, OutT, BN, BK>(p, sm, tid, bid);
                    else gg_mma_tile<GG_TN, float, BN, BK>(p, sm, tid, bid);
                }
            });
        };
        using I256 = std::integral_constant<int, 256>;
        using I128 = std::integral_constant<int, 128>;
        using I64 = std::integral_constant<int, 64>;
        using I32 = std::integral_constant<int, 32>;
        if (bn == 256) {
            if (bk_tc == 64) go(I256(), I64());
            else go(I256(), I32());
        } else {
            if (bk_tc == 64) go(I128(), I64());
            else go(I128(), I32());
        }
    } else {
        run_grid(p, mode, blocks, GS_THREADS, GS_SMEM_FLOATS * sizeof(float), [&](char *sm, int tid, int bid) {
            float *f = (float *)sm;
            if (mode == GG_NT) gg_simt_tile<GG_NT, T, OutT>(p, f, tid, bid);
            else if (mode == GG_NN) gg_simt_tile<GG_NN, T, OutT>(p, f, tid, bid);
            else gg_simt_tile<GG_TN, T, float>(p, f, tid, bid);
        });
    }
    for (int tk : ticket)
        if (tk != 0) bad++; /* the split reduction leaves its tickets at zero */
    /* compare: relative norm error over the computed part; past the rows the sentinel must be intact */
    double num = 0, den = 0;
    size_t computed = mode == GG_TN ? out_elems : (size_t)rows * N;
    for (size_t i = 0; i < out_elems; i++) {
        double g = tof(C[i]);
        if (!std::isfinite(g)) bad++;
        if (i >= computed) {
            if (g != ref[i]) bad++;
            continue;
        }
        num += (g - ref[i]) * (g - ref[i]);
        den += ref[i] * ref[i];
    }
    double rel = std::sqrt(num / (den > 0 ? den : 1));
    double tol = sizeof(OutT) == 2 ? 1e-2 : (sizeof(T) == 2 && mode != GG_TN ? 1e-5 : 1e-5);
    bool ok = bad == 0 && rel <= tol;
    cases++;
    if (!ok) failures++;
    printf("%s %-44s E%-2d rows%-5d M%-4d N%-4d K%-4d gather%d BN%-3d BK%-2d split%d %s rel %.2e bad %zu\n",
           ok ? "PASS" : "FAIL", name, E, rows, M, N, K, gather ? div : 0, tc ? bn : GS_BN, tc ? bk_tc : GS_BK, splits,
           eager ? "eager" : "deferred", rel, bad);
    fflush(stdout);
}

int main() {
    typedef __nv_bfloat16 bf;
    std::vector<int> mixed = {130, 0, 1, 257, 40};     /* empty expert, 1 row, > 2 tiles, a partial tile */
    std::vector<int> one = {0, 0, 300, 0};             /* one expert takes every row */
    std::vector<int> even = {64, 64, 64, 64, 64, 64};  /* sub-tile experts */
    for (int eager = 0; eager < 2; eager++) {
        /* tensor-core tile, 128 x 128 x 64 (the default on the GPU); K 72 / 40 / 48 end in partial k-tiles */
        run_case<bf, bf>("mma NT x·wT gather, bf16 out", GG_NT, true, mixed, 0, 200, 72, true, eager);
        run_case<bf, float>("mma NT x·wT, fp32 out", GG_NT, true, one, 0, 136, 40, false, eager);
        run_case<bf, bf>("mma NN x·w, bf16 out", GG_NN, true, mixed, 0, 72, 136, false, eager);
        run_case<bf, float>("mma NN x·w, fp32 out", GG_NN, true, one, 0, 256, 48, false, eager);
        run_case<bf, float>("mma TN xT·y gather (+=)", GG_TN, true, mixed, 136, 40, 0, true, eager);
        run_case<bf, float>("mma TN xT·y (+=)", GG_TN, true, one, 64, 200, 0, false, eager);
        /* 128 x 256 tiles (HLAB_GG_BN=256) */
        run_case<bf, bf>("mma256 NT x·wT gather, bf16 out", GG_NT, true, mixed, 0, 296, 72, true, eager, 256);
        run_case<bf, float>("mma256 NN x·w, fp32 out", GG_NN, true, one, 0, 264, 48, false, eager, 256);
        run_case<bf, float>("mma256 TN xT·y gather (+=)", GG_TN, true, mixed, 136, 264, 0, true, eager, 256);
        /* weight gradients split over row chunks: partials summed by the last ticket */
        run_case<bf, float>("mma TN split 3 gather (+=)", GG_TN, true, mixed, 136, 40, 0, true, eager, 128, 3);
        run_case<bf, float>("mma256 TN split 2 (+=)", GG_TN, true, one, 64, 200, 0, false, eager, 256, 2);
        run_case<bf, float>("mma256 TN split 8, empty chunks (+=)", GG_TN, true, mixed, 40, 24, 0, true, eager,
                            256, 8);
        /* a gather divisor that is no power of two (top-k 3) */
        g_gather_div = 3;
        run_case<bf, float>("mma TN gather div3 (+=)", GG_TN, true, mixed, 136, 40, 0, true, eager);
        run_case<bf, bf>("mma NT gather div3", GG_NT, true, mixed, 0, 72, 72, true, eager);
        g_gather_div = 2;
        /* the earlier k-tile of 32, 4 stages (HLAB_GG_BK=32) */
        run_case<bf, bf>("mma bk32 NT x·wT gather, bf16 out", GG_NT, true, mixed, 0, 200, 72, true, eager, 128, 1,
                         32);
        run_case<bf, float>("mma bk32 NN x·w, fp32 out", GG_NN, true, one, 0, 256, 48, false, eager, 128, 1, 32);
        run_case<bf, float>("mma bk32 TN split 3 gather (+=)", GG_TN, true, mixed, 136, 40, 0, true, eager, 128, 3,
                            32);
        run_case<bf, float>("mma256 bk32 TN gather (+=)", GG_TN, true, mixed, 136, 264, 0, true, eager, 256, 1, 32);
        if (eager) break; /* the SIMT tile has no cp.async */
        /* SIMT tile */
        run_case<float, float>("simt f32 NT gather", GG_NT, false, mixed, 0, 70, 37, true, false);
        run_case<float, float>("simt f32 NN", GG_NN, false, one, 0, 130, 19, false, false);
        run_case<float, float>("simt f32 TN gather (+=)", GG_TN, false, mixed, 131, 65, 0, true, false);
        run_case<bf, bf>("simt bf16 NT", GG_NT, false, even, 0, 33, 21, false, false);
        run_case<bf, float>("simt bf16 NN fp32 out", GG_NN, false, mixed, 0, 45, 70, false, false);
        run_case<bf, float>("simt bf16 TN (+=)", GG_TN, false, one, 20, 70, 0, true, false);
    }
    if (failures) {
        printf("emu: %d of %d cases FAIL\n", failures, cases);
        return 1;
    }
    printf("emu: all %d cases pass\n", cases);
    return 0;
}
