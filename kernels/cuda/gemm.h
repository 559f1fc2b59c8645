/* kernels/cuda/gemm.h — matrix products of the CUDA backend (cuBLASLt), internal.
 *
 * One hk_cuda_blas per backend (created once in backend.cu): the cuBLASLt
 * handle, its workspace, a cuBLAS handle for the rare shape cuBLASLt declines,
 * and a cache of chosen algorithms keyed by shape, dtypes, alignment and epilogue.
 * The helpers below take the heuristic's choice; the linear ops (matmul_fwd/bwd)
 * also time the heuristic's top candidates once per key and keep the fastest for
 * the rest of the run (HLAB_GEMM_AUTOTUNE=0 turns that off; matmul.cu says more).
 *
 * Precision: fp32 accumulation always (CUBLAS_COMPUTE_32F, never TF32), so the
 * fp32 mode is pure fp32; bf16 operands in training mode. Outputs may be bf16
 * or fp32 (parameter gradients are fp32 R).
 *
 * The row-major helpers below are what ops call; `beta` is 0 (write) or 1 (add).
 */
#ifndef HLAB_KERNELS_CUDA_GEMM_H
#define HLAB_KERNELS_CUDA_GEMM_H

#include "kernels/cuda/cuda_ops.h"

typedef struct hk_cuda_blas hk_cuda_blas;

/* Creates the handles and workspace on the current device, bound to stream.
 * Returns NULL and fills msg on failure. */
hk_cuda_blas *hk_cuda_blas_create(cudaStream_t stream, char *msg, size_t msg_size);
void hk_cuda_blas_destroy(hk_cuda_blas *b);
/* The backend's instance (backend.cu). */
hk_cuda_blas *hk_cuda_blas_of(hk_backend *hk);

/* Column-major D[m,n] = alpha · op(A) · op(B) + beta · D (cuBLAS conventions:
 * transa = 1 means A is stored k×m). */
void hk_cuda_gemm(hk_backend *hk, int transa, int transb, int m, int n, int k, const void *A, hk_dtype at,
                  int lda, const void *B, hk_dtype bt, int ldb, void *D, hk_dtype dt, int ldd, float alpha,
                  float beta);

/* Row-major helpers (X, W, Y of element type xt/wt, out of type ot):
 *   out[M,Nout] = X[M,K] · W[Nout,K]ᵀ      (linear forward)         */
void hk_gemm_xwT(hk_backend *hk, void *out, hk_dtype ot, const void *X, hk_dtype xt, const void *W, hk_dtype wt,
                 int M, int K, int Nout, float beta);
/*   out[M,Nout] = X[M,K] · W[K,Nout]       (input gradient)          */
void hk_gemm_xw(hk_backend *hk, void *out, hk_dtype ot, const void *X, hk_dtype xt, const void *W, hk_dtype wt,
                int M, int K, int Nout, float beta);
/*   out[P,Q] = X[M,P]ᵀ · Y[M,Q]            (weight gradient)         */
void hk_gemm_xTy(hk_backend *hk, void *out, hk_dtype ot, const void *X, hk_dtype xt, const void *Y, hk_dtype yt,
                 int M, int P, int Q, float beta);

#endif
