/* kernels/cuda/grouped_gemm.cu — kernels and launchers of the grouped GEMM
 * (grouped_gemm.h); the tile bodies are in grouped_gemm_core.cuh.
 *
 * Grid: one block per output tile, linear index. Row-tile products: column
 * tile fastest, so the blocks that run together share their rows of X (read
 * from HBM once) and their expert's weights (L2); ceil(rows / 128) + min(E,
 * rows) row tiles bound what the device may need. Weight-gradient products:
 * E × (P/128) × (Q/BN) tiles, each reducing over its expert's rows, split
 * over row chunks (splits adjacent in the grid) when there are too few tiles
 * to fill the device.
 */
#include <limits.h>
#include <stdint.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/grouped_gemm.h"
#include "kernels/cuda/grouped_gemm_core.cuh"

static_assert(GG_ROW_TILE == HK_GG_ROW_TILE && GG_BM == GG_ROW_TILE && GS_BM == GG_ROW_TILE,
              "one row tile for every grouped kernel: tile_start is computed with it");

/* 128 x 256 tiles hold 128 accumulators a thread: one block per SM; 128 x 128: two. */
template <int MODE, typename OutT, int BN, int BK>
__global__ void __launch_bounds__(GG_THREADS, BN == 256 ? 1 : 2) gg_mma_kernel(gg_params p) {
    extern __shared__ __align__(16) char gg_smem[];
    gg_mma_tile<MODE, OutT, BN, BK>(p, gg_smem, (int)threadIdx.x, (int)blockIdx.x);
}

template <int MODE, typename T, typename OutT>
__global__ void __launch_bounds__(GS_THREADS) gg_simt_kernel(gg_params p) {
    __shared__ float gs_smem[GS_SMEM_FLOATS];
    gg_simt_tile<MODE, T, OutT>(p, gs_smem, (int)threadIdx.x, (int)blockIdx.x);
}

template <int MODE, typename OutT, int BN, int BK>
static void launch_mma(hk_backend *hk, const gg_params &p, unsigned blocks, const char *what) {
    size_t smem = gg_mma_shape<MODE, BN, BK>::smem_bytes;
    /* above the 48 KiB default: opt in (per device, so every launch; it is cheap). All of the SM's unified
     * L1/shared memory as shared: two 128 x 128 x 64 blocks need 2 x 108 KiB. */
    if (hk_cuda_record(hk, cudaFuncSetAttribute(gg_mma_kernel<MODE, OutT, BN, BK>,
                                                cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem),
                       what) ||
        hk_cuda_record(hk, cudaFuncSetAttribute(gg_mma_kernel<MODE, OutT, BN, BK>,
                                                cudaFuncAttributePreferredSharedMemoryCarveout,
                                                (int)cudaSharedmemCarveoutMaxShared),
                       what))
        return;
    gg_mma_kernel<MODE, OutT, BN, BK><<<blocks, GG_THREADS, smem, hk_cuda_stream(hk)>>>(p);
    hk_cuda_check_launch(hk, what);
}

template <int MODE, typename OutT>
static void launch_mma_bn(hk_backend *hk, const gg_params &p, int bn, int bk, unsigned blocks, const char *what) {
    if (bn == 256) {
        if (bk == 64) launch_mma<MODE, OutT, 256, 64>(hk, p, blocks, what);
        else launch_mma<MODE, OutT, 256, 32>(hk, p, blocks, what);
    } else {
        if (bk == 64) launch_mma<MODE, OutT, 128, 64>(hk, p, blocks, what);
        else launch_mma<MODE, OutT, 128, 32>(hk, p, blocks, what);
    }
}

template <int MODE, typename T, typename OutT>
static void launch_simt(hk_backend *hk, const gg_params &p, unsigned blocks, const char *what) {
    gg_simt_kernel<MODE, T, OutT><<<blocks, GS_THREADS, 0, hk_cuda_stream(hk)>>>(p);
    hk_cuda_check_launch(hk, what);
}

static int aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }

/* Tensor-core tile width: 128 unless HLAB_GG_BN=256 (measured on the H100, E8 C768 F1024: 128 x 128 is
 * faster on every product, the weight gradients most: dW13 1.28 vs 1.97 ms, dW2 0.50 vs 0.67 ms). */
static int mma_bn(void) { return hk_cuda_env_int("HLAB_GG_BN", 128) == 256 ? 256 : 128; }
/* Tensor-core k-tile: 64 (3 stages) unless HLAB_GG_BK=32 (the earlier 4-stage 32, a switch for measuring). */
static int mma_bk(void) { return hk_cuda_env_int("HLAB_GG_BK", 64) == 32 ? 32 : 64; }

static int use_tc(hk_backend *hk, int mode, const gg_params &p) {
    return hk->act == HK_BF16 && p.N % 8 == 0 && (mode == GG_TN ? p.M % 8 == 0 : p.K % 8 == 0) && p.lda % 8 == 0 &&
           p.ldb % 8 == 0 && p.b_estride % 8 == 0 && aligned16(p.A) && aligned16(p.B) && aligned16(p.C);
}

/* Row chunks per weight-gradient tile. One block per (expert, tile) gives few
 * blocks with long reductions (E8 C768 F1024, dW2: 384 tiles of 128 x 128 for
 * 2 x 132 block slots, 1.45 waves); splitting fills the waves: the count whose last wave is
 * fullest, 2 % of a wave charged per extra split (the partials' traffic), at
 * least 512 rows a chunk on average, at most 8 and what ws holds.
 * HLAB_GG_SPLITK=n forces n (1: off). */
static int tn_splits(hk_backend *hk, int tiles, int E, int rows, size_t part_floats_per_split, size_t ws_bytes,
                     int bn) {
    int forced = hk_cuda_env_int("HLAB_GG_SPLITK", 0), best = 1;
    size_t ticket_bytes = (size_t)tiles * sizeof(int);
    size_t fits = ws_bytes > ticket_bytes ? (ws_bytes - ticket_bytes) / (part_floats_per_split * sizeof(float)) : 0;
    int cap = fits > 8 ? 8 : (int)fits;
    if (forced > 0) best = forced;
    else {
        double slots = (double)hk_cuda_sm_count(hk) * (bn == 256 ? 1 : 2), best_score = -1.0;
        for (int s = 1; s <= 8; s++) {
            if (s > 1 && (double)rows / E / s < 512.0) break;
            double waves = (double)tiles * s / slots, score = waves / ceil(waves) - 0.02 * (s - 1);
            if (score > best_score + 1e-9) {
                best_score = score;
                best = s;
            }
        }
    }
    if (best > cap) best = cap;
    return best < 1 ? 1 : best;
}

/* Picks the kernel, sizes the grid, launches. ot: F32 or the activation type. ws: GG_TN split workspace. */
static void gg_run(hk_backend *hk, int mode, gg_params p, hk_dtype ot, int rows, void *ws, size_t ws_bytes,
                   const char *what) {
    if (p.E <= 0 || p.N <= 0 || (mode != GG_TN && p.K <= 0) || (mode == GG_TN && p.M <= 0) || rows <= 0) return;
    int tc = use_tc(hk, mode, p);
    int bn = tc ? mma_bn() : GS_BN, bk = mma_bk();
    p.n_tiles = (p.N + bn - 1) / bn;
    p.splits = 1;
    size_t blocks;
    if (mode != GG_TN) {
        size_t row_tiles = ((size_t)rows + GG_ROW_TILE - 1) / GG_ROW_TILE + (size_t)(p.E < rows ? p.E : rows);
        blocks = row_tiles * (size_t)p.n_tiles;
    } else {
        p.m_tiles = (p.M + GG_ROW_TILE - 1) / GG_ROW_TILE;
        blocks = (size_t)p.E * (size_t)p.m_tiles * (size_t)p.n_tiles;
        if (tc && blocks <= (size_t)INT_MAX) {
            size_t per_split = (size_t)p.E * (size_t)p.c_estride;
            p.splits = tn_splits(hk, (int)blocks, p.E, rows, per_split, ws ? ws_bytes : 0, bn);
            if (p.splits > 1) {
                p.ticket = (int *)ws;
                p.part = (float *)((char *)ws + ((blocks * sizeof(int) + 255) & ~(size_t)255));
                if (hk_cuda_record(hk, cudaMemsetAsync(p.ticket, 0, blocks * sizeof(int), hk_cuda_stream(hk)), what))
                    return;
                blocks *= (size_t)p.splits;
            }
        }
    }
    if (blocks > (size_t)INT_MAX) {
        hk_cuda_fail(hk, HLAB_EINVAL, "%s: %zu tiles exceed one grid", what, blocks);
        return;
    }
    unsigned nb = (unsigned)blocks;
    if (tc) {
        if (mode == GG_NT) {
            if (ot == HK_F32) launch_mma_bn<GG_NT, float>(hk, p, bn, bk, nb, what);
            else launch_mma_bn<GG_NT, hk_bf16>(hk, p, bn, bk, nb, what);
        } else if (mode == GG_NN) {
            if (ot == HK_F32) launch_mma_bn<GG_NN, float>(hk, p, bn, bk, nb, what);
            else launch_mma_bn<GG_NN, hk_bf16>(hk, p, bn, bk, nb, what);
        } else {
            launch_mma_bn<GG_TN, float>(hk, p, bn, bk, nb, what);
        }
        return;
    }
    HK_DISPATCH_ACT(hk, T, {
        if (mode == GG_NT) {
            if (ot == HK_F32) launch_simt<GG_NT, T, float>(hk, p, nb, what);
            else launch_simt<GG_NT, T, T>(hk, p, nb, what);
        } else if (mode == GG_NN) {
            if (ot == HK_F32) launch_simt<GG_NN, T, float>(hk, p, nb, what);
            else launch_simt<GG_NN, T, T>(hk, p, nb, what);
        } else {
            launch_simt<GG_TN, T, float>(hk, p, nb, what);
        }
    });
}

static gg_params params_of(hk_gg_groups g) {
    gg_params p;
    memset(&p, 0, sizeof p);
    p.offsets = g.offsets;
    p.tile_start = g.tile_start;
    p.E = g.E;
    p.gather = g.gather;
    p.gather_div = g.gather_div > 0 ? g.gather_div : 1;
    return p;
}

void hk_grouped_xwT(hk_backend *hk, void *out, hk_dtype ot, const void *X, const void *W, hk_gg_groups g, int K,
                    int N) {
    gg_params p = params_of(g);
    p.A = X;
    p.B = W;
    p.C = out;
    p.lda = K;
    p.ldb = K;
    p.ldc = N;
    p.b_estride = (long long)N * K;
    p.N = N;
    p.K = K;
    gg_run(hk, GG_NT, p, ot, g.rows, NULL, 0, "grouped gemm x·wT");
}

void hk_grouped_xw(hk_backend *hk, void *out, hk_dtype ot, const void *X, const void *W, hk_gg_groups g, int K,
                   int N) {
    gg_params p = params_of(g);
    p.gather = NULL;
    p.A = X;
    p.B = W;
    p.C = out;
    p.lda = K;
    p.ldb = N;
    p.ldc = N;
    p.b_estride = (long long)K * N;
    p.N = N;
    p.K = K;
    gg_run(hk, GG_NN, p, ot, g.rows, NULL, 0, "grouped gemm x·w");
}

size_t hk_grouped_xTy_ws_bytes(hk_backend *hk, int E, int P, int Q, int rows) {
    if (E <= 0 || P <= 0 || Q <= 0 || rows <= 0) return 0;
    int bn = mma_bn();
    size_t tiles = (size_t)E * (size_t)((P + GG_ROW_TILE - 1) / GG_ROW_TILE) * (size_t)((Q + bn - 1) / bn);
    if (tiles > (size_t)INT_MAX / 8) return 0;
    size_t per_split = (size_t)E * (size_t)P * (size_t)Q;
    int splits = tn_splits(hk, (int)tiles, E, rows, per_split, SIZE_MAX, bn);
    if (splits <= 1) return 0;
    return ((tiles * sizeof(int) + 255) & ~(size_t)255) + (size_t)splits * per_split * sizeof(float);
}

void hk_grouped_xTy_acc(hk_backend *hk, float *out, const void *X, const void *Y, hk_gg_groups g, int P, int Q,
                        void *ws, size_t ws_bytes) {
    gg_params p = params_of(g);
    p.A = X;
    p.B = Y;
    p.C = out;
    p.lda = P;
    p.ldb = Q;
    p.ldc = Q;
    p.c_estride = (long long)P * Q;
    p.M = P;
    p.N = Q;
    gg_run(hk, GG_TN, p, HK_F32, g.rows, ws, ws_bytes, "grouped gemm xT·y");
}
