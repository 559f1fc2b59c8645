/* kernels/cuda/grouped_gemm.h — GEMMs over experts whose row ranges live on
 * the device (MoE), internal to the CUDA backend.
 *
 * The row ranges (offsets[E+1]) and the row-tile prefix (tile_start[E+1],
 * Σ_{e'<e} ceil(count_e' / HK_GG_ROW_TILE)) are read by the kernels, never by
 * the host: the grid is sized for the worst case (ceil(rows / tile) + E row
 * tiles) and blocks past the end exit. No host-device synchronisation.
 *
 * Operands are of the backend's activation type A (bf16: tensor cores through
 * mma.sync when every width is a multiple of 8 and every pointer 16-byte
 * aligned; otherwise, and in the fp32 mode, a SIMT kernel). Accumulation is
 * fp32 in a fixed order; no atomics.
 */
#ifndef HLAB_KERNELS_CUDA_GROUPED_GEMM_H
#define HLAB_KERNELS_CUDA_GROUPED_GEMM_H

#include "kernels/cuda/cuda_ops.h"

#define HK_GG_ROW_TILE 128 /* rows per tile of the row-tile products (tile_start's unit) */

typedef struct {
    const int32_t *offsets;    /* device [E+1]: expert e's rows are offsets[e] .. offsets[e+1] */
    const int32_t *tile_start; /* device [E+1]: prefix of ceil(count_e / HK_GG_ROW_TILE) */
    int E;
    int rows;              /* host-known bound on offsets[E] (N·k) */
    const int32_t *gather; /* NULL, or the gathered operand's row r is source row gather[r] / gather_div */
    int gather_div;
} hk_gg_groups;

/* out[r, 0:N] (=) = X[src(r), 0:K] · W_eᵀ for r in expert e's rows; W A [E][N][K];
 * X rows are gathered (src) when g.gather is set; out of type ot (A or F32). */
void hk_grouped_xwT(hk_backend *hk, void *out, hk_dtype ot, const void *X, const void *W, hk_gg_groups g, int K,
                    int N);
/* out[r, 0:N] (=) = X[r, 0:K] · W_e; W A [E][K][N]; g.gather must be NULL. */
void hk_grouped_xw(hk_backend *hk, void *out, hk_dtype ot, const void *X, const void *W, hk_gg_groups g, int K,
                   int N);
/* out_e[P, Q] (+=, fp32) = Σ over expert e's rows r of X[r, 0:P]ᵀ · Y[src(r), 0:Q]; out R [E][P][Q];
 * Y rows are gathered when g.gather is set. ws (device, ws_bytes): where the tensor-core path keeps the
 * split reduction's fp32 partials and tickets; with less than hk_grouped_xTy_ws_bytes (or NULL) it splits
 * less or not at all (same result up to fp32 summation order; fixed for a given ws_bytes). */
void hk_grouped_xTy_acc(hk_backend *hk, float *out, const void *X, const void *Y, hk_gg_groups g, int P, int Q,
                        void *ws, size_t ws_bytes);
/* The workspace hk_grouped_xTy_acc splits fully with, for E experts, P x Q outputs and `rows` rows in all
 * (0: it would not split). */
size_t hk_grouped_xTy_ws_bytes(hk_backend *hk, int E, int P, int Q, int rows);

/* Test-only (moe.cu; C linkage for tests/cuda/test_cuda_kernel_bench.c): each pass of the routed experts'
 * forward and backward timed alone with CUDA events (mean of `reps` calls after one warm-up), through the
 * grouped GEMM and, for comparison, through one cuBLASLt GEMM per expert (the HLAB_MOE_SYNC=1 path; the
 * expert offsets are read back once, outside the timing). Runs on the routing that `cache` holds from a
 * moe_fwd of the same inputs and rewrites the cache's h13 and y with the same values; dw13, dw2 (fp32) are
 * accumulated into. Scratch is overwritten. Fills up to max entries, returns how many (0 on failure,
 * recorded). */
typedef struct {
    const char *name;
    double ms;    /* per call */
    double flops; /* of the product (0: a memory pass) */
    double bytes; /* least bytes a memory pass moves (0: a product) */
} hk_moe_part_time;
#ifdef __cplusplus
extern "C" {
#endif
int hk_cuda_moe_time_parts(hk_backend *hk, hk_moe_part_time *parts, int max, void *cache, const void *inp,
                           const void *w13, const void *w2, void *dw13, void *dw2, hk_moe_dims d, int reps);
#ifdef __cplusplus
}
#endif

#endif
