/* kernels/cuda/cuda_ops.h — internal to the CUDA backend (not a public header).
 * Every op has exactly the signature of its hk_backend member, named hk_cuda_<op>.
 * Compiled as CUDA C++ (.cu); the C side sees only kernels.h.
 */
#ifndef HLAB_KERNELS_CUDA_OPS_H
#define HLAB_KERNELS_CUDA_OPS_H

#include <cuda_runtime.h>

#include "kernels/kernels.h"

#define HK_CUDA_FN(name) hk_cuda_##name

void HK_CUDA_FN(destroy)(hk_backend *hk);
int HK_CUDA_FN(check)(hk_backend *hk, hlab_err *err);
int HK_CUDA_FN(sync)(hk_backend *hk, hlab_err *err);
void * HK_CUDA_FN(alloc)(hk_backend *hk, size_t bytes);
void HK_CUDA_FN(free)(hk_backend *hk, void *ptr);
void HK_CUDA_FN(zero)(hk_backend *hk, void *ptr, size_t bytes);
void HK_CUDA_FN(from_host)(hk_backend *hk, void *dst, hk_dtype dst_t, const void *src, hk_dtype src_t, size_t n);
void HK_CUDA_FN(to_host)(hk_backend *hk, void *dst, hk_dtype dst_t, const void *src, hk_dtype src_t, size_t n);
void HK_CUDA_FN(convert)(hk_backend *hk, void *dst, hk_dtype dst_t, const void *src, hk_dtype src_t, size_t n);
size_t HK_CUDA_FN(peak_bytes)(hk_backend *hk);
void HK_CUDA_FN(embedding_fwd)(hk_backend *hk, void *out, const int32_t *tokens, const void *wte, int N, int C);
void HK_CUDA_FN(embedding_bwd)(hk_backend *hk, void *dwte, const void *dout, const int32_t *tokens, int N, int C);
void HK_CUDA_FN(matmul_fwd)(hk_backend *hk, void *out, const void *inp, const void *w, const void *bias, int N, int C, int OC);
void HK_CUDA_FN(matmul_bwd)(hk_backend *hk, void *dinp, void *dw, void *dbias, const void *dout, const void *inp, const void *w, int N, int C, int OC, int accum);
void HK_CUDA_FN(rmsnorm_fwd)(hk_backend *hk, void *out, void *rstd, const void *inp, const void *w, int N, int C, float eps);
void HK_CUDA_FN(rmsnorm_bwd)(hk_backend *hk, void *dinp, void *dw, const void *dout, const void *inp, const void *w, const void *rstd, int N, int C, int accum);
void HK_CUDA_FN(layernorm_fwd)(hk_backend *hk, void *out, void *mean, void *rstd, const void *inp, const void *w, const void *b, int N, int C, float eps);
void HK_CUDA_FN(layernorm_bwd)(hk_backend *hk, void *dinp, void *dw, void *db, const void *dout, const void *inp, const void *w, const void *mean, const void *rstd, int N, int C, int accum);
void HK_CUDA_FN(add_rmsnorm_fwd)(hk_backend *hk, void *res_out, void *out, void *rstd, const void *res_in, const void *x, const void *w, int N, int C, float eps);
void HK_CUDA_FN(add_layernorm_fwd)(hk_backend *hk, void *res_out, void *out, void *mean, void *rstd, const void *res_in, const void *x, const void *w, const void *b, int N, int C, float eps);
void HK_CUDA_FN(qknorm_fwd)(hk_backend *hk, void *out, void *rstd, const void *inp, const void *wq, const void *wk, int N, int Hq, int Hkv, int dh, float eps);
void HK_CUDA_FN(qknorm_bwd)(hk_backend *hk, void *dinp, void *dwq, void *dwk, const void *dout, const void *inp, const void *wq, const void *wk, const void *rstd, int N, int Hq, int Hkv, int dh);
void HK_CUDA_FN(rope_fwd)(hk_backend *hk, void *out, const void *inp, int B, int T, int Hq, int Hkv, int dh, float theta);
void HK_CUDA_FN(rope_bwd)(hk_backend *hk, void *dinp, const void *dout, int B, int T, int Hq, int Hkv, int dh, float theta);
void HK_CUDA_FN(attention_fwd)(hk_backend *hk, void *out, void *lse, const void *qkv, hk_attn_dims d);
void HK_CUDA_FN(attention_bwd)(hk_backend *hk, void *dqkv, const void *dout, const void *out, const void *lse, const void *qkv, hk_attn_dims d);
void HK_CUDA_FN(conv1d_silu_fwd)(hk_backend *hk, void *out, const void *inp, const void *w, const void *b, int B, int T, int Cc, int K);
void HK_CUDA_FN(conv1d_silu_bwd)(hk_backend *hk, void *dinp, void *dw, void *db, const void *dout, const void *inp, const void *w, const void *b, int B, int T, int Cc, int K);
void HK_CUDA_FN(ssd_fwd)(hk_backend *hk, void *y, void *states, const void *xbc, const void *dt, const void *dt_bias, const void *A_log, const void *Dskip, hk_ssd_dims d);
void HK_CUDA_FN(ssd_bwd)(hk_backend *hk, void *dxbc, void *ddt, void *ddt_bias, void *dA_log, void *dDskip, const void *dy, const void *states, const void *xbc, const void *dt, const void *dt_bias, const void *A_log, const void *Dskip, hk_ssd_dims d);
void HK_CUDA_FN(gated_rmsnorm_fwd)(hk_backend *hk, void *out, void *rstd, const void *y, const void *z, const void *w, int N, int Di, int G, float eps);
void HK_CUDA_FN(gated_rmsnorm_bwd)(hk_backend *hk, void *dy, void *dz, void *dw, const void *dout, const void *y, const void *z, const void *w, const void *rstd, int N, int Di, int G);
void HK_CUDA_FN(swiglu_fwd)(hk_backend *hk, void *out, const void *inp, int N, int F);
void HK_CUDA_FN(swiglu_bwd)(hk_backend *hk, void *dinp, const void *dout, const void *inp, int N, int F);
size_t HK_CUDA_FN(moe_cache_bytes)(hk_backend *hk, hk_moe_dims d);
void HK_CUDA_FN(moe_fwd)(hk_backend *hk, void *out, void *aux, void *cache, const void *inp, const void *w_router, const void *w13, const void *w2, const void *ws13, const void *ws2, hk_moe_dims d);
void HK_CUDA_FN(moe_bwd)(hk_backend *hk, void *dinp, void *dw_router, void *dw13, void *dw2, void *dws13, void *dws2, const void *dout, float daux, const void *cache, const void *inp, const void *w_router, const void *w13, const void *w2, const void *ws13, const void *ws2, hk_moe_dims d);
void HK_CUDA_FN(add)(hk_backend *hk, void *out, const void *a, const void *b, size_t n);
void HK_CUDA_FN(axpby)(hk_backend *hk, void *out, float alpha, const void *a, float beta, const void *b, size_t n);
void HK_CUDA_FN(concat_fwd)(hk_backend *hk, void *out, const void *a, const void *b, int N, int C1, int C2);
void HK_CUDA_FN(concat_bwd)(hk_backend *hk, void *da, void *db, const void *dout, int N, int C1, int C2);
void HK_CUDA_FN(gate_fwd)(hk_backend *hk, void *out, const void *g, const void *a, const void *m, size_t n);
void HK_CUDA_FN(gate_bwd)(hk_backend *hk, void *dg, void *da, void *dm, const void *dout, const void *g, const void *a, const void *m, size_t n);
void HK_CUDA_FN(xent_fwd)(hk_backend *hk, void *losses, const void *logits, const int32_t *targets, int N, int V);
void HK_CUDA_FN(xent_bwd)(hk_backend *hk, void *dlogits, const void *logits, const int32_t *targets, float dloss, int N, int V);
void HK_CUDA_FN(xent_fwd_bwd)(hk_backend *hk, void *losses, void *dlogits, const void *logits, const int32_t *targets, float dloss, int N, int V);
double HK_CUDA_FN(sumsq)(hk_backend *hk, const void *x, size_t n);
void HK_CUDA_FN(adamw)(hk_backend *hk, void *params, const void *grads, void *m, void *v, void *mirror, size_t n, float lr, float b1, float b2, float eps, float wd, int step, float grad_scale, const void *scale_dev);
void HK_CUDA_FN(loss_reduce)(hk_backend *hk, void *stat, const void *losses, int N, const void *aux, int n_aux);
void HK_CUDA_FN(grad_clip_scale)(hk_backend *hk, void *stat, const void *grads, size_t n, const void *micro_loss, int n_micro, float clip);

/* Services of the backend (backend.cu) used by every kernel file. */
cudaStream_t hk_cuda_stream(hk_backend *hk);
/* Records the first failure (sticky); returns 1 if err != cudaSuccess. */
int hk_cuda_record(hk_backend *hk, cudaError_t err, const char *what);
/* Records cudaGetLastError() after a launch; returns 1 on failure. */
int hk_cuda_check_launch(hk_backend *hk, const char *what);
/* The integer value of environment variable `name` (a tuning or comparison switch, see
 * docs/CUDA.md), or dflt when it is unset or empty. */
int hk_cuda_env_int(const char *name, int dflt);
/* A scratch buffer of at least `bytes`, owned by the backend, valid until the
 * next call of hk_cuda_scratch (grows; never shrinks). NULL on failure (recorded). */
void *hk_cuda_scratch(hk_backend *hk, size_t bytes);
int hk_cuda_sm_count(hk_backend *hk);
/* Compute capability of the backend's device, 10 * major + minor (90: H100 / H200). */
int hk_cuda_cc(hk_backend *hk);
/* Records a non-CUDA failure (bad size: HLAB_EINVAL, missing op: HLAB_EUNSUPPORTED);
 * the first failure is kept. */
void hk_cuda_fail(hk_backend *hk, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* The SSD scan with the chunk products on tensor cores (ssd_fast.cu; bf16 mode, P = 64,
 * N = 64 or 128; the fp32 mode calls hk_cuda_ssd_fwd/bwd). Same signatures as those;
 * the vtable reaches them through hk_cuda_ssd_dispatch_fwd/bwd below. C linkage so that C tests can call them; the stream accessor lets a
 * test time them with CUDA events. */
#ifdef __cplusplus
extern "C" {
#endif
void hk_cuda_ssd_fast_fwd(hk_backend *hk, void *y, void *states, const void *xbc, const void *dt, const void *dt_bias,
                          const void *A_log, const void *Dskip, hk_ssd_dims d);
void hk_cuda_ssd_fast_bwd(hk_backend *hk, void *dxbc, void *ddt, void *ddt_bias, void *dA_log, void *dDskip,
                          const void *dy, const void *states, const void *xbc, const void *dt, const void *dt_bias,
                          const void *A_log, const void *Dskip, hk_ssd_dims d);
cudaStream_t hk_cuda_ssd_fast_stream(hk_backend *hk);
void hk_cuda_ssd_simt_fwd(hk_backend *hk, void *y, void *states, const void *xbc, const void *dt,
                          const void *dt_bias, const void *A_log, const void *Dskip, hk_ssd_dims d);
void hk_cuda_ssd_simt_bwd(hk_backend *hk, void *dxbc, void *ddt, void *ddt_bias, void *dA_log, void *dDskip,
                          const void *dy, const void *states, const void *xbc, const void *dt, const void *dt_bias,
                          const void *A_log, const void *Dskip, hk_ssd_dims d);
/* What the backend table holds for ssd_fwd / ssd_bwd: the fast path where it
 * applies, the SIMT kernels of ssd.cu otherwise. */
void hk_cuda_ssd_dispatch_fwd(hk_backend *hk, void *y, void *states, const void *xbc, const void *dt,
                              const void *dt_bias, const void *A_log, const void *Dskip, hk_ssd_dims d);
void hk_cuda_ssd_dispatch_bwd(hk_backend *hk, void *dxbc, void *ddt, void *ddt_bias, void *dA_log, void *dDskip,
                              const void *dy, const void *states, const void *xbc, const void *dt, const void *dt_bias,
                              const void *A_log, const void *Dskip, hk_ssd_dims d);
#ifdef __cplusplus
}
#endif

#endif
