/* kernels/cpu/cpu.h — internal to the CPU backend (not a public header).
 * The CPU sources are compiled twice: as the fp32 reference (`cpu`) and, with
 * HK_CPU_F64 defined, as float64 (`cpu-f64`) for the finite-difference tests.
 * Each op has exactly the signature of its hk_backend member; `real` is the
 * element type of every A and R pointer.
 */
#ifndef HLAB_KERNELS_CPU_H
#define HLAB_KERNELS_CPU_H

#include "kernels/kernels.h"

#ifdef HK_CPU_F64
typedef double real;
#define CPU_FN(name) hk_cpu64_##name
#define HK_CPU_REAL HK_F64
#else
typedef float real;
#define CPU_FN(name) hk_cpu32_##name
#define HK_CPU_REAL HK_F32
#endif

/* backend plumbing (kernels/cpu/backend.c) */
void CPU_FN(destroy)(hk_backend *hk);
int CPU_FN(check)(hk_backend *hk, hlab_err *err);
int CPU_FN(sync)(hk_backend *hk, hlab_err *err);
void * CPU_FN(alloc)(hk_backend *hk, size_t bytes);
void CPU_FN(free)(hk_backend *hk, void *ptr);
void CPU_FN(zero)(hk_backend *hk, void *ptr, size_t bytes);
void CPU_FN(from_host)(hk_backend *hk, void *dst, hk_dtype dst_t, const void *src, hk_dtype src_t, size_t n);
void CPU_FN(to_host)(hk_backend *hk, void *dst, hk_dtype dst_t, const void *src, hk_dtype src_t, size_t n);
void CPU_FN(convert)(hk_backend *hk, void *dst, hk_dtype dst_t, const void *src, hk_dtype src_t, size_t n);
size_t CPU_FN(peak_bytes)(hk_backend *hk);
void CPU_FN(embedding_fwd)(hk_backend *hk, void *out, const int32_t *tokens, const void *wte, int N, int C);
void CPU_FN(embedding_bwd)(hk_backend *hk, void *dwte, const void *dout, const int32_t *tokens, int N, int C);
void CPU_FN(matmul_fwd)(hk_backend *hk, void *out, const void *inp, const void *w, const void *bias, int N, int C, int OC);
void CPU_FN(matmul_bwd)(hk_backend *hk, void *dinp, void *dw, void *dbias, const void *dout, const void *inp, const void *w, int N, int C, int OC, int accum);
void CPU_FN(rmsnorm_fwd)(hk_backend *hk, void *out, void *rstd, const void *inp, const void *w, int N, int C, float eps);
void CPU_FN(rmsnorm_bwd)(hk_backend *hk, void *dinp, void *dw, const void *dout, const void *inp, const void *w, const void *rstd, int N, int C, int accum);
void CPU_FN(layernorm_fwd)(hk_backend *hk, void *out, void *mean, void *rstd, const void *inp, const void *w, const void *b, int N, int C, float eps);
void CPU_FN(layernorm_bwd)(hk_backend *hk, void *dinp, void *dw, void *db, const void *dout, const void *inp, const void *w, const void *mean, const void *rstd, int N, int C, int accum);
void CPU_FN(add_rmsnorm_fwd)(hk_backend *hk, void *res_out, void *out, void *rstd, const void *res_in, const void *x, const void *w, int N, int C, float eps);
void CPU_FN(add_layernorm_fwd)(hk_backend *hk, void *res_out, void *out, void *mean, void *rstd, const void *res_in, const void *x, const void *w, const void *b, int N, int C, float eps);
void CPU_FN(qknorm_fwd)(hk_backend *hk, void *out, void *rstd, const void *inp, const void *wq, const void *wk, int N, int Hq, int Hkv, int dh, float eps);
void CPU_FN(qknorm_bwd)(hk_backend *hk, void *dinp, void *dwq, void *dwk, const void *dout, const void *inp, const void *wq, const void *wk, const void *rstd, int N, int Hq, int Hkv, int dh);
void CPU_FN(rope_fwd)(hk_backend *hk, void *out, const void *inp, int B, int T, int Hq, int Hkv, int dh, float theta);
void CPU_FN(rope_bwd)(hk_backend *hk, void *dinp, const void *dout, int B, int T, int Hq, int Hkv, int dh, float theta);
void CPU_FN(attention_fwd)(hk_backend *hk, void *out, void *lse, const void *qkv, hk_attn_dims d);
void CPU_FN(attention_bwd)(hk_backend *hk, void *dqkv, const void *dout, const void *out, const void *lse, const void *qkv, hk_attn_dims d);
void CPU_FN(conv1d_silu_fwd)(hk_backend *hk, void *out, const void *inp, const void *w, const void *b, int B, int T, int Cc, int K);
void CPU_FN(conv1d_silu_bwd)(hk_backend *hk, void *dinp, void *dw, void *db, const void *dout, const void *inp, const void *w, const void *b, int B, int T, int Cc, int K);
void CPU_FN(ssd_fwd)(hk_backend *hk, void *y, void *states, const void *xbc, const void *dt, const void *dt_bias, const void *A_log, const void *Dskip, hk_ssd_dims d);
void CPU_FN(ssd_bwd)(hk_backend *hk, void *dxbc, void *ddt, void *ddt_bias, void *dA_log, void *dDskip, const void *dy, const void *states, const void *xbc, const void *dt, const void *dt_bias, const void *A_log, const void *Dskip, hk_ssd_dims d);
void CPU_FN(gated_rmsnorm_fwd)(hk_backend *hk, void *out, void *rstd, const void *y, const void *z, const void *w, int N, int Di, int G, float eps);
void CPU_FN(gated_rmsnorm_bwd)(hk_backend *hk, void *dy, void *dz, void *dw, const void *dout, const void *y, const void *z, const void *w, const void *rstd, int N, int Di, int G);
void CPU_FN(swiglu_fwd)(hk_backend *hk, void *out, const void *inp, int N, int F);
void CPU_FN(swiglu_bwd)(hk_backend *hk, void *dinp, const void *dout, const void *inp, int N, int F);
size_t CPU_FN(moe_cache_bytes)(hk_backend *hk, hk_moe_dims d);
void CPU_FN(moe_fwd)(hk_backend *hk, void *out, void *aux, void *cache, const void *inp, const void *w_router, const void *w13, const void *w2, const void *ws13, const void *ws2, hk_moe_dims d);
void CPU_FN(moe_bwd)(hk_backend *hk, void *dinp, void *dw_router, void *dw13, void *dw2, void *dws13, void *dws2, const void *dout, float daux, const void *cache, const void *inp, const void *w_router, const void *w13, const void *w2, const void *ws13, const void *ws2, hk_moe_dims d);
void CPU_FN(add)(hk_backend *hk, void *out, const void *a, const void *b, size_t n);
void CPU_FN(axpby)(hk_backend *hk, void *out, float alpha, const void *a, float beta, const void *b, size_t n);
void CPU_FN(concat_fwd)(hk_backend *hk, void *out, const void *a, const void *b, int N, int C1, int C2);
void CPU_FN(concat_bwd)(hk_backend *hk, void *da, void *db, const void *dout, int N, int C1, int C2);
void CPU_FN(gate_fwd)(hk_backend *hk, void *out, const void *g, const void *a, const void *m, size_t n);
void CPU_FN(gate_bwd)(hk_backend *hk, void *dg, void *da, void *dm, const void *dout, const void *g, const void *a, const void *m, size_t n);
void CPU_FN(xent_fwd)(hk_backend *hk, void *losses, const void *logits, const int32_t *targets, int N, int V);
void CPU_FN(xent_bwd)(hk_backend *hk, void *dlogits, const void *logits, const int32_t *targets, float dloss, int N, int V);
void CPU_FN(xent_fwd_bwd)(hk_backend *hk, void *losses, void *dlogits, const void *logits, const int32_t *targets, float dloss, int N, int V);
double CPU_FN(sumsq)(hk_backend *hk, const void *x, size_t n);
void CPU_FN(adamw)(hk_backend *hk, void *params, const void *grads, void *m, void *v, void *mirror, size_t n, float lr, float b1, float b2, float eps, float wd, int step, float grad_scale, const void *scale_dev);
void CPU_FN(loss_reduce)(hk_backend *hk, void *stat, const void *losses, int N, const void *aux, int n_aux);
void CPU_FN(grad_clip_scale)(hk_backend *hk, void *stat, const void *grads, size_t n, const void *micro_loss, int n_micro, float clip);

/* Reference-only extras (tests): the plain sequential SSD recurrence, same
 * contract as ssd_fwd / ssd_bwd; `states` is ignored (may be NULL). */
void CPU_FN(ssd_sequential_fwd)(hk_backend *hk, void *y, void *states, const void *xbc, const void *dt,
                                const void *dt_bias, const void *A_log, const void *Dskip, hk_ssd_dims d);
void CPU_FN(ssd_sequential_bwd)(hk_backend *hk, void *dxbc, void *ddt, void *ddt_bias, void *dA_log,
                                void *dDskip, const void *dy, const void *states, const void *xbc, const void *dt,
                                const void *dt_bias, const void *A_log, const void *Dskip, hk_ssd_dims d);
/* Records the backend's first failure (sticky); later calls keep the first. */
void CPU_FN(fail)(hk_backend *hk, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Fills a backend table with this build's ops (backend.c). */
hk_backend *CPU_FN(create)(int threads, hlab_err *err);

#endif
