/* kernels/cuda/matmul.cu — linear layers through cuBLASLt (gemm.h), and the
 * GEMM plumbing every other file uses.
 *
 * Row-major tensors are column-major transposes, so out[N,OC] = inp[N,C]·wᵀ is
 * the column-major product outᵀ = w·inpᵀ (transa = T). cuBLASLt's heuristic is
 * asked once per (shape, dtypes, alignment) and its answer cached; the actual
 * alignment of every pointer is declared, so no algorithm that needs more is
 * picked. If cuBLASLt has no algorithm for a shape, cublasGemmEx runs it.
 *
 * Bias (rare in this model family): added by its own kernel in fp32 and
 * reduced for dbias by the deterministic column sum (common.cuh).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cublasLt.h>
#include <cublas_v2.h>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/gemm.h"

#define HK_GEMM_CACHE 128
#define HK_GEMM_WORKSPACE (32u << 20) /* 32 MiB: what cuBLAS advises for Hopper */

typedef struct {
    int valid, ok;
    int transa, transb, m, n, k, lda, ldb, ldd;
    int at, bt, dt, align_a, align_b, align_d, beta_zero;
    cublasLtMatmulAlgo_t algo;
} gemm_cache_entry;

struct hk_cuda_blas {
    cublasLtHandle_t lt;
    cublasHandle_t blas;
    cudaStream_t stream;
    void *workspace;
    size_t workspace_bytes;
    gemm_cache_entry cache[HK_GEMM_CACHE];
    int next_slot;
};

hk_cuda_blas *hk_cuda_blas_create(cudaStream_t stream, char *msg, size_t msg_size) {
    hk_cuda_blas *b = (hk_cuda_blas *)calloc(1, sizeof *b);
    if (!b) {
        snprintf(msg, msg_size, "cuBLASLt: out of host memory");
        return NULL;
    }
    b->stream = stream;
    if (cublasLtCreate(&b->lt) != CUBLAS_STATUS_SUCCESS) {
        snprintf(msg, msg_size, "cuBLASLt: handle creation failed");
        free(b);
        return NULL;
    }
    if (cublasCreate(&b->blas) != CUBLAS_STATUS_SUCCESS) {
        snprintf(msg, msg_size, "cuBLAS: handle creation failed");
        cublasLtDestroy(b->lt);
        free(b);
        return NULL;
    }
    cudaError_t e = cudaMalloc(&b->workspace, HK_GEMM_WORKSPACE);
    if (e != cudaSuccess) {
        cudaGetLastError();
        snprintf(msg, msg_size, "cuBLASLt: workspace of %u bytes: %s", HK_GEMM_WORKSPACE, cudaGetErrorString(e));
        cublasDestroy(b->blas);
        cublasLtDestroy(b->lt);
        free(b);
        return NULL;
    }
    b->workspace_bytes = HK_GEMM_WORKSPACE;
    cublasSetStream(b->blas, stream);
    cublasSetWorkspace(b->blas, b->workspace, b->workspace_bytes);
    /* Pure fp32 in the fp32 mode: never let cuBLAS down-convert to TF32. */
    cublasSetMathMode(b->blas, CUBLAS_DEFAULT_MATH);
    return b;
}

void hk_cuda_blas_destroy(hk_cuda_blas *b) {
    if (!b) return;
    cudaFree(b->workspace);
    cublasDestroy(b->blas);
    cublasLtDestroy(b->lt);
    free(b);
}

static cudaDataType_t cuda_type(hk_dtype t) { return t == HK_BF16 ? CUDA_R_16BF : t == HK_F64 ? CUDA_R_64F : CUDA_R_32F; }

/* Largest power of two (<= 256) dividing the address. */
static int alignment_of(const void *p) {
    uintptr_t a = (uintptr_t)p;
    int al = 256;
    while (al > 1 && (a & (uintptr_t)(al - 1))) al >>= 1;
    return al;
}

static int lt_find_algo(hk_cuda_blas *b, cublasLtMatmulDesc_t desc, cublasLtMatrixLayout_t la,
                        cublasLtMatrixLayout_t lb, cublasLtMatrixLayout_t ld, int align_a, int align_b, int align_d,
                        cublasLtMatmulAlgo_t *algo) {
    cublasLtMatmulPreference_t pref;
    if (cublasLtMatmulPreferenceCreate(&pref) != CUBLAS_STATUS_SUCCESS) return 0;
    size_t ws = b->workspace_bytes;
    uint32_t a32 = (uint32_t)align_a, b32 = (uint32_t)align_b, d32 = (uint32_t)align_d;
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &a32, sizeof a32);
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &b32, sizeof b32);
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &d32, sizeof d32);
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &d32, sizeof d32);
    cublasLtMatmulHeuristicResult_t res;
    int found = 0;
    cublasStatus_t st =
        cublasLtMatmulAlgoGetHeuristic(b->lt, desc, la, lb, ld, ld, pref, 1, &res, &found);
    cublasLtMatmulPreferenceDestroy(pref);
    if (st != CUBLAS_STATUS_SUCCESS || found < 1) return 0;
    *algo = res.algo;
    return 1;
}

static void gemm_fallback(hk_backend *hk, hk_cuda_blas *b, int transa, int transb, int m, int n, int k,
                          const void *A, hk_dtype at, int lda, const void *B, hk_dtype bt, int ldb, void *D,
                          hk_dtype dt, int ldd, float alpha, float beta) {
    cublasStatus_t st = cublasGemmEx(b->blas, transa ? CUBLAS_OP_T : CUBLAS_OP_N, transb ? CUBLAS_OP_T : CUBLAS_OP_N,
                                     m, n, k, &alpha, A, cuda_type(at), lda, B, cuda_type(bt), ldb, &beta, D,
                                     cuda_type(dt), ldd, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    if (st != CUBLAS_STATUS_SUCCESS)
        hk_cuda_fail(hk, HLAB_EDEVICE, "gemm m=%d n=%d k=%d: cublasGemmEx failed (status %d)", m, n, k, (int)st);
}

void hk_cuda_gemm(hk_backend *hk, int transa, int transb, int m, int n, int k, const void *A, hk_dtype at, int lda,
                  const void *B, hk_dtype bt, int ldb, void *D, hk_dtype dt, int ldd, float alpha, float beta) {
    if (m <= 0 || n <= 0) return;
    hk_cuda_blas *b = hk_cuda_blas_of(hk);
    if (k <= 0) return; /* empty product: callers (MoE experts with no tokens) skip it */
    cublasLtMatmulDesc_t desc = NULL;
    cublasLtMatrixLayout_t la = NULL, lb = NULL, ld = NULL;
    cublasOperation_t opa = transa ? CUBLAS_OP_T : CUBLAS_OP_N, opb = transb ? CUBLAS_OP_T : CUBLAS_OP_N;
    int ok = cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F) == CUBLAS_STATUS_SUCCESS;
    ok = ok && cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof opa) == CUBLAS_STATUS_SUCCESS;
    ok = ok && cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof opb) == CUBLAS_STATUS_SUCCESS;
    ok = ok && cublasLtMatrixLayoutCreate(&la, cuda_type(at), transa ? k : m, transa ? m : k, lda) == CUBLAS_STATUS_SUCCESS;
    ok = ok && cublasLtMatrixLayoutCreate(&lb, cuda_type(bt), transb ? n : k, transb ? k : n, ldb) == CUBLAS_STATUS_SUCCESS;
    ok = ok && cublasLtMatrixLayoutCreate(&ld, cuda_type(dt), m, n, ldd) == CUBLAS_STATUS_SUCCESS;

    int align_a = alignment_of(A), align_b = alignment_of(B), align_d = alignment_of(D);
    gemm_cache_entry key;
    memset(&key, 0, sizeof key);
    key.valid = 1;
    key.transa = transa; key.transb = transb; key.m = m; key.n = n; key.k = k;
    key.lda = lda; key.ldb = ldb; key.ldd = ldd;
    key.at = (int)at; key.bt = (int)bt; key.dt = (int)dt;
    key.align_a = align_a; key.align_b = align_b; key.align_d = align_d;
    key.beta_zero = beta == 0.0f;
    gemm_cache_entry *hit = NULL;
    for (int i = 0; i < HK_GEMM_CACHE && ok; i++) {
        gemm_cache_entry *c = &b->cache[i];
        if (c->valid && c->transa == key.transa && c->transb == key.transb && c->m == m && c->n == n && c->k == k &&
            c->lda == lda && c->ldb == ldb && c->ldd == ldd && c->at == key.at && c->bt == key.bt &&
            c->dt == key.dt && c->align_a == align_a && c->align_b == align_b && c->align_d == align_d &&
            c->beta_zero == key.beta_zero) {
            hit = c;
            break;
        }
    }
    if (ok && !hit) {
        key.ok = lt_find_algo(b, desc, la, lb, ld, align_a, align_b, align_d, &key.algo);
        hit = &b->cache[b->next_slot];
        *hit = key;
        b->next_slot = (b->next_slot + 1) % HK_GEMM_CACHE;
    }
    int done = 0;
    if (ok && hit->ok) {
        cublasStatus_t st = cublasLtMatmul(b->lt, desc, &alpha, A, la, B, lb, &beta, D, ld, D, ld, &hit->algo,
                                           b->workspace, b->workspace_bytes, b->stream);
        done = st == CUBLAS_STATUS_SUCCESS;
        if (!done) hit->ok = 0; /* remember: use the fallback for this shape */
    }
    if (ld) cublasLtMatrixLayoutDestroy(ld);
    if (lb) cublasLtMatrixLayoutDestroy(lb);
    if (la) cublasLtMatrixLayoutDestroy(la);
    if (desc) cublasLtMatmulDescDestroy(desc);
    if (!done) gemm_fallback(hk, b, transa, transb, m, n, k, A, at, lda, B, bt, ldb, D, dt, ldd, alpha, beta);
}

void hk_gemm_xwT(hk_backend *hk, void *out, hk_dtype ot, const void *X, hk_dtype xt, const void *W, hk_dtype wt,
                 int M, int K, int Nout, float beta) {
    hk_cuda_gemm(hk, 1, 0, Nout, M, K, W, wt, K, X, xt, K, out, ot, Nout, 1.0f, beta);
}
void hk_gemm_xw(hk_backend *hk, void *out, hk_dtype ot, const void *X, hk_dtype xt, const void *W, hk_dtype wt,
                int M, int K, int Nout, float beta) {
    hk_cuda_gemm(hk, 0, 0, Nout, M, K, W, wt, Nout, X, xt, K, out, ot, Nout, 1.0f, beta);
}
void hk_gemm_xTy(hk_backend *hk, void *out, hk_dtype ot, const void *X, hk_dtype xt, const void *Y, hk_dtype yt,
                 int M, int P, int Q, float beta) {
    hk_cuda_gemm(hk, 0, 1, Q, P, M, Y, yt, Q, X, xt, P, out, ot, Q, 1.0f, beta);
}

/* ---- linear ------------------------------------------------------------------ */

template <typename T> __global__ void add_bias_kernel(T *out, const float *bias, int N, int OC) {
    size_t total = (size_t)N * OC;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x)
        out[i] = st<T>(ld(out[i]) + bias[i % OC]);
}

template <typename T> struct dout_term {
    const T *dout;
    int OC;
    __device__ float operator()(int r, int c) const { return ld(dout[(size_t)r * OC + c]); }
};

void hk_cuda_matmul_fwd(hk_backend *hk, void *out, const void *inp, const void *w, const void *bias, int N, int C,
                        int OC) {
    if (N <= 0 || C <= 0 || OC <= 0) {
        if (N < 0 || C < 0 || OC < 0) hk_cuda_fail(hk, HLAB_EINVAL, "matmul_fwd: negative size N=%d C=%d OC=%d", N, C, OC);
        return;
    }
    hk_gemm_xwT(hk, out, hk->act, inp, hk->act, w, hk->act, N, C, OC, 0.0f);
    if (bias) {
        /* Out-of-band fp32 bias; the rounding of out to A happens twice here. */
        size_t total = (size_t)N * OC;
        HK_DISPATCH_ACT(hk, T, add_bias_kernel<T><<<hk_grid_for(hk, total, 256), 256, 0, hk_cuda_stream(hk)>>>(
                                   (T *)out, (const float *)bias, N, OC));
        hk_cuda_check_launch(hk, "matmul_fwd bias");
    }
}

void hk_cuda_matmul_bwd(hk_backend *hk, void *dinp, void *dw, void *dbias, const void *dout, const void *inp,
                        const void *w, int N, int C, int OC, int accum) {
    if (N <= 0 || C <= 0 || OC <= 0) {
        if (N < 0 || C < 0 || OC < 0) hk_cuda_fail(hk, HLAB_EINVAL, "matmul_bwd: negative size N=%d C=%d OC=%d", N, C, OC);
        return;
    }
    hk_dtype a = hk->act;
    if (dinp) hk_gemm_xw(hk, dinp, a, dout, a, w, a, N, OC, C, accum ? 1.0f : 0.0f);
    if (dw) hk_gemm_xTy(hk, dw, HK_F32, dout, a, inp, a, N, OC, C, 1.0f);
    if (dbias) {
        HK_DISPATCH_ACT(hk, T, {
            dout_term<T> term = {(const T *)dout, OC};
            hk_colsum(hk, (float *)dbias, N, OC, term, "matmul_bwd dbias");
        });
    }
}
