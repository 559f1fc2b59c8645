/* kernels/kernels.h — the op set that every backend implements.
 *
 * One backend = one hk_backend value: a table of functions over device pointers
 * (llm.c style: every op is an op_fwd / op_bwd pair over plain pointers and
 * sizes). Backends:
 *   cpu      fp32 reference, OpenMP + OpenBLAS: the truth every other backend is tested against
 *   cpu-f64  the same source compiled for double: used by the finite-difference gradient tests
 *   cuda:N   bf16 activations/matrix weights with fp32 master weights, or fp32 throughout
 *
 * Dtypes. Every pointer argument is `void *` and its dtype is one of:
 *   A  the backend's activation dtype (hk->act): activations, activation grads,
 *      and matrix weights as read by matmul / embedding / moe (the bf16 mirror on CUDA)
 *   R  the backend's real dtype (hk->real): master weights, parameter grads,
 *      optimizer state, norm statistics (rstd, mean, lse), losses, vector parameters
 *      (norm scales/biases, linear biases, conv weights/biases, A_log, dt_bias, D)
 *   I  int32 (tokens, targets)
 *   F64 double on every backend: the few step statistics (loss_reduce, grad_clip_scale,
 *      adamw's scale_dev) that stay on the device until the step ends
 * CPU: A = R = float (cpu) or double (cpu-f64). CUDA: R = float, A = bf16 or float.
 *
 * Shapes. N = B*T token rows, row-major, token n = b*T + t. Sizes are in elements.
 *
 * Gradients. Parameter gradients ACCUMULATE (+=). Activation gradients are
 * WRITTEN (=), except where an op takes `accum`: then accum=1 adds into dinp.
 * Aliasing is allowed only where a comment says so.
 *
 * Errors. Ops return void. The first failure (device error, bad size) is kept
 * in the backend and returned by hk->check(); after a failure ops may do nothing.
 * Asynchronous backends may report a failure only at check/sync/copy time.
 */
#ifndef HLAB_KERNELS_H
#define HLAB_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "common/hlab.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { HK_F32 = 0, HK_F64 = 1, HK_BF16 = 2 } hk_dtype;
size_t hk_dtype_size(hk_dtype t);
const char *hk_dtype_name(hk_dtype t);

typedef struct {
    int B, T;   /* batch, sequence */
    int Hq, Hkv; /* query heads, key/value heads (Hq % Hkv == 0) */
    int dh;     /* head dim */
    int window; /* 0: full causal; else key j visible from query i iff j <= i && i - j < window */
} hk_attn_dims;

typedef struct {
    int B, T;
    int H;      /* heads */
    int P;      /* head dim */
    int G;      /* groups: heads h read B, C of group h / (H / G) */
    int N;      /* state size */
    int chunk;  /* chunk length Q of the chunked (SSD) algorithm; T need not be a multiple */
} hk_ssd_dims;

typedef struct {
    int N;        /* token rows */
    int C;        /* model width */
    int E;        /* routed experts */
    int k;        /* experts per token (top-k) */
    int F;        /* routed expert SwiGLU width */
    int S;        /* shared experts (0 = none) */
    int Fs;       /* shared expert SwiGLU width */
    int renorm;   /* 1: renormalise the top-k probabilities to sum to 1 */
    float alpha;  /* auxiliary load-balancing loss coefficient */
} hk_moe_dims;

typedef struct hk_backend hk_backend;

struct hk_backend {
    char name[32];  /* "cpu", "cpu-f64", "cuda:0" */
    hk_dtype real;  /* R */
    hk_dtype act;   /* A */
    void *impl;     /* backend-private state */

    /* ---- lifetime, memory and errors -------------------------------------- */
    void (*destroy)(hk_backend *hk);
    int (*check)(hk_backend *hk, hlab_err *err);  /* first sticky error, HLAB_OK if none */
    int (*sync)(hk_backend *hk, hlab_err *err);   /* wait for queued work, then check */
    void *(*alloc)(hk_backend *hk, size_t bytes); /* NULL + sticky HLAB_ENOMEM on failure */
    void (*free)(hk_backend *hk, void *ptr);
    void (*zero)(hk_backend *hk, void *ptr, size_t bytes);
    /* Copies n elements between host and device, converting dtypes (F32/F64/BF16). */
    void (*from_host)(hk_backend *hk, void *dst, hk_dtype dst_t, const void *src, hk_dtype src_t, size_t n);
    void (*to_host)(hk_backend *hk, void *dst, hk_dtype dst_t, const void *src, hk_dtype src_t, size_t n);
    /* Device-to-device copy with conversion (e.g. master R -> mirror A). */
    void (*convert)(hk_backend *hk, void *dst, hk_dtype dst_t, const void *src, hk_dtype src_t, size_t n);
    size_t (*peak_bytes)(hk_backend *hk);         /* high-water mark of live alloc() bytes */

    /* ---- embedding (tied head = matmul_fwd against wte) -------------------- */
    /* out[N,C] (A) = wte[tokens[n], :]; wte A [V,C] */
    void (*embedding_fwd)(hk_backend *hk, void *out, const int32_t *tokens, const void *wte, int N, int C);
    /* dwte (R) [V,C] += scatter of dout (A) [N,C] */
    void (*embedding_bwd)(hk_backend *hk, void *dwte, const void *dout, const int32_t *tokens, int N, int C);

    /* ---- linear: out = inp · wᵀ (+ bias) ---------------------------------- */
    /* out A [N,OC]; inp A [N,C]; w A [OC,C]; bias R [OC] or NULL */
    void (*matmul_fwd)(hk_backend *hk, void *out, const void *inp, const void *w, const void *bias, int N, int C, int OC);
    /* dinp A [N,C] (= or += by accum; NULL skips); dw R [OC,C] +=; dbias R [OC] += or NULL */
    void (*matmul_bwd)(hk_backend *hk, void *dinp, void *dw, void *dbias, const void *dout, const void *inp,
                       const void *w, int N, int C, int OC, int accum);

    /* ---- norms (eps e.g. 1e-5; weight/bias R [C]; rstd/mean R [N]) -------- */
    /* out = inp * rstd * w, rstd = 1/sqrt(mean(inp²) + eps). out may alias nothing. */
    void (*rmsnorm_fwd)(hk_backend *hk, void *out, void *rstd, const void *inp, const void *w, int N, int C, float eps);
    void (*rmsnorm_bwd)(hk_backend *hk, void *dinp, void *dw, const void *dout, const void *inp, const void *w,
                        const void *rstd, int N, int C, int accum);
    void (*layernorm_fwd)(hk_backend *hk, void *out, void *mean, void *rstd, const void *inp, const void *w,
                          const void *b, int N, int C, float eps);
    void (*layernorm_bwd)(hk_backend *hk, void *dinp, void *dw, void *db, const void *dout, const void *inp,
                          const void *w, const void *mean, const void *rstd, int N, int C, int accum);
    /* Residual add fused with the next pre-norm, one pass over the rows:
     *   res_out A [N,C] = res_in + x  (rounded to A), then
     *   out = rmsnorm_fwd(res_out) (resp. layernorm_fwd), statistics from the rounded res_out,
     * so the results equal add() followed by the norm, bit for bit on the CPU. res_out may
     * alias res_in or x; out aliases nothing. No backward op: the norm's backward on res_out
     * with accum = 1 adds into the residual gradient, which is d(res_in) = d(x). */
    void (*add_rmsnorm_fwd)(hk_backend *hk, void *res_out, void *out, void *rstd, const void *res_in, const void *x,
                            const void *w, int N, int C, float eps);
    void (*add_layernorm_fwd)(hk_backend *hk, void *res_out, void *out, void *mean, void *rstd, const void *res_in,
                              const void *x, const void *w, const void *b, int N, int C, float eps);

    /* ---- attention over packed qkv ----------------------------------------
     * qkv A [N, (Hq + 2 Hkv) dh]: each row is [q heads | k heads | v heads],
     * head h's slice contiguous. Query head h uses kv head h / (Hq / Hkv). */
    /* QK-norm: RMSNorm over dh on every q head (scale wq R [dh]) and k head (wk R [dh]);
     * v copied through. rstd R [N, Hq + Hkv]. out must not alias inp. */
    void (*qknorm_fwd)(hk_backend *hk, void *out, void *rstd, const void *inp, const void *wq, const void *wk,
                       int N, int Hq, int Hkv, int dh, float eps);
    /* dinp A [N, W] (=, v part copied from dout); dwq, dwk R [dh] += */
    void (*qknorm_bwd)(hk_backend *hk, void *dinp, void *dwq, void *dwk, const void *dout, const void *inp,
                       const void *wq, const void *wk, const void *rstd, int N, int Hq, int Hkv, int dh);
    /* RoPE on the q and k parts (v copied), position t = n % T. Rotation pairs are
     * (i, i + dh/2) for i < dh/2 with angle t · theta^(−2i/dh) (Llama / GPT-NeoX
     * "rotate half"). out may alias inp. bwd applies the inverse rotation. */
    void (*rope_fwd)(hk_backend *hk, void *out, const void *inp, int B, int T, int Hq, int Hkv, int dh, float theta);
    void (*rope_bwd)(hk_backend *hk, void *dinp, const void *dout, int B, int T, int Hq, int Hkv, int dh, float theta);
    /* out A [N, Hq dh] = softmax(q kᵀ/√dh + causal/window mask) v per head;
     * lse R [B, Hq, T] = log-sum-exp of each scaled score row (saved for bwd). */
    void (*attention_fwd)(hk_backend *hk, void *out, void *lse, const void *qkv, hk_attn_dims d);
    /* dqkv A [N, (Hq + 2 Hkv) dh] = */
    void (*attention_bwd)(hk_backend *hk, void *dqkv, const void *dout, const void *out, const void *lse,
                          const void *qkv, hk_attn_dims d);

    /* ---- Mamba-2 ------------------------------------------------------------ */
    /* out A [B,T,Cc] = SiLU(causal depthwise conv1d(inp) + b):
     *   pre[b,t,c] = b[c] + Σ_{j<K} w[c,j] · inp[b, t−(K−1)+j, c]  (zero before t = 0)
     * w R [Cc,K], b R [Cc]. bwd recomputes pre from inp. */
    void (*conv1d_silu_fwd)(hk_backend *hk, void *out, const void *inp, const void *w, const void *b,
                            int B, int T, int Cc, int K);
    void (*conv1d_silu_bwd)(hk_backend *hk, void *dinp, void *dw, void *db, const void *dout, const void *inp,
                            const void *w, const void *b, int B, int T, int Cc, int K);
    /* The SSD scan, chunked form. xbc A [N, H·P + 2·G·N_state] rows [x | B | C]
     * (conv output); dt A [N, H] raw (before dt_bias); dt_bias, A_log, Dskip R [H].
     *   Δ = softplus(dt + dt_bias), A = −exp(A_log)
     *   S_t = exp(Δ_t A) S_{t−1} + Δ_t x_t ⊗ B_t ;  y_t = S_t C_t + Dskip · x_t
     * y A [N, H·P]. states R [B, nchunks, H, P, N_state]: the state entering each
     * chunk (nchunks = ceil(T / chunk)), written by fwd, read by bwd. */
    void (*ssd_fwd)(hk_backend *hk, void *y, void *states, const void *xbc, const void *dt, const void *dt_bias,
                    const void *A_log, const void *Dskip, hk_ssd_dims d);
    /* dxbc A [N, H·P + 2·G·N_state] =; ddt A [N,H] =; ddt_bias, dA_log, dDskip R [H] += */
    void (*ssd_bwd)(hk_backend *hk, void *dxbc, void *ddt, void *ddt_bias, void *dA_log, void *dDskip,
                    const void *dy, const void *states, const void *xbc, const void *dt, const void *dt_bias,
                    const void *A_log, const void *Dskip, hk_ssd_dims d);
    /* Grouped gated RMSNorm: g = y ⊙ SiLU(z); each row's Di channels split into G
     * groups of Di/G; out = g · rstd_group · w. y, z, out A [N, Di]; w R [Di];
     * rstd R [N, G]. */
    void (*gated_rmsnorm_fwd)(hk_backend *hk, void *out, void *rstd, const void *y, const void *z, const void *w,
                              int N, int Di, int G, float eps);
    void (*gated_rmsnorm_bwd)(hk_backend *hk, void *dy, void *dz, void *dw, const void *dout, const void *y,
                              const void *z, const void *w, const void *rstd, int N, int Di, int G);

    /* ---- channel ------------------------------------------------------------- */
    /* out A [N,F] = SiLU(inp[:, :F]) ⊙ inp[:, F:], inp A [N, 2F] (= x·[W1;W3]ᵀ) */
    void (*swiglu_fwd)(hk_backend *hk, void *out, const void *inp, int N, int F);
    void (*swiglu_bwd)(hk_backend *hk, void *dinp, const void *dout, const void *inp, int N, int F);
    /* Mixture of SwiGLU experts, the whole channel sublayer in one op (router
     * matmul, softmax, top-k, renorm, dropless dispatch, expert SwiGLUs, combine,
     * shared experts, aux loss). inp, out A [N,C]; w_router A [E,C];
     * w13 A [E, 2F, C] (expert e's [W1;W3]); w2 A [E, C, F]; ws13 A [S, 2Fs, C];
     * ws2 A [S, C, Fs] (NULL when S = 0). aux R [1] (device scalar) = alpha·E·Σ f_e P_e.
     * cache: moe_cache_bytes() bytes of backend memory holding what bwd needs. */
    size_t (*moe_cache_bytes)(hk_backend *hk, hk_moe_dims d);
    void (*moe_fwd)(hk_backend *hk, void *out, void *aux, void *cache, const void *inp, const void *w_router,
                    const void *w13, const void *w2, const void *ws13, const void *ws2, hk_moe_dims d);
    /* dinp A =; parameter grads R +=; daux: d(total loss)/d(aux), usually 1. The
     * router gradient includes the aux-loss path through P_e (f_e is constant). */
    void (*moe_bwd)(hk_backend *hk, void *dinp, void *dw_router, void *dw13, void *dw2, void *dws13, void *dws2,
                    const void *dout, float daux, const void *cache, const void *inp, const void *w_router,
                    const void *w13, const void *w2, const void *ws13, const void *ws2, hk_moe_dims d);

    /* ---- elementwise and parallel fusion (A, n elements) -------------------- */
    void (*add)(hk_backend *hk, void *out, const void *a, const void *b, size_t n);  /* out = a + b; may alias */
    /* out = alpha·a + beta·b; out may alias a or b; b may be NULL (then out = alpha·a) */
    void (*axpby)(hk_backend *hk, void *out, float alpha, const void *a, float beta, const void *b, size_t n);
    /* out A [N, C1 + C2] = [a | b]; bwd splits (=) */
    void (*concat_fwd)(hk_backend *hk, void *out, const void *a, const void *b, int N, int C1, int C2);
    void (*concat_bwd)(hk_backend *hk, void *da, void *db, const void *dout, int N, int C1, int C2);
    /* out = σ(g) ⊙ a + (1 − σ(g)) ⊙ m; g = x·W_gᵀ pre-sigmoid; bwd writes dg, da, dm (=) */
    void (*gate_fwd)(hk_backend *hk, void *out, const void *g, const void *a, const void *m, size_t n);
    void (*gate_bwd)(hk_backend *hk, void *dg, void *da, void *dm, const void *dout, const void *g, const void *a,
                     const void *m, size_t n);

    /* ---- loss ------------------------------------------------------------------ */
    /* losses R [N] = −log softmax(logits[n])[targets[n]]; logits A [N,V] */
    void (*xent_fwd)(hk_backend *hk, void *losses, const void *logits, const int32_t *targets, int N, int V);
    /* dlogits A [N,V] = dloss · (softmax(logits) − onehot); dlogits may alias logits */
    void (*xent_bwd)(hk_backend *hk, void *dlogits, const void *logits, const int32_t *targets, float dloss,
                     int N, int V);
    /* xent_fwd and xent_bwd in one pass over the logits (a training forward whose
     * backward follows): losses R [N] as xent_fwd, dlogits A [N,V] as xent_bwd with
     * dloss; dlogits may alias logits. The CPU backends give the bits of the two
     * separate calls. */
    void (*xent_fwd_bwd)(hk_backend *hk, void *losses, void *dlogits, const void *logits, const int32_t *targets,
                         float dloss, int N, int V);

    /* ---- optimiser ----------------------------------------------------------- */
    /* Σ grads² over n elements of R, returned to the host (synchronous: not used by the
     * training step, which calls grad_clip_scale instead). */
    double (*sumsq)(hk_backend *hk, const void *x, size_t n);
    /* AdamW on n elements of R (step is 1-based; bias-corrected moments):
     *   g = s · grads; m = b1 m + (1−b1) g; v = b2 v + (1−b2) g²
     *   p −= lr · ( m̂ / (√v̂ + eps) + wd · p )
     * s = grad_scale when scale_dev is NULL. Otherwise scale_dev is an F64 [1] in backend
     * memory (grad_clip_scale's stat[2]) read on the device, s = (float)*scale_dev, and
     * grad_scale is ignored; a non-finite *scale_dev skips the update: params, m, v and
     * mirror are left untouched (a diverged step changes nothing, decided without a
     * read-back). mirror (A, or NULL): receives the updated p converted to A. */
    void (*adamw)(hk_backend *hk, void *params, const void *grads, void *m, void *v, void *mirror, size_t n,
                  float lr, float b1, float b2, float eps, float wd, int step, float grad_scale,
                  const void *scale_dev);

    /* ---- step statistics ------------------------------------------------------
     * A training step keeps its scalars on the device and reads them back once, at
     * its end (docs/TRAINING.md). They are F64 on every backend (not R), so they are
     * the same doubles the host computed when the sums ran on the host: the CPU
     * backends sum in the same order, bit for bit. Outputs must not overlap inputs. */
    /* stat F64 [2] = { Σ_n losses[n] / N + Σ_j aux[j],  Σ_j aux[j] }: the loss (mean
     * cross-entropy + MoE aux) and its aux part. losses R [N]; aux R [n_aux], NULL when
     * n_aux = 0. Sums in double, fixed order (CPU: n = 0, 1, ...; j = 0, 1, ...). */
    void (*loss_reduce)(hk_backend *hk, void *stat, const void *losses, int N, const void *aux, int n_aux);
    /* Gradient norm and clip scale of one optimizer step, left on the device for adamw.
     * grads R [n]: the sum of n_micro micro-batch gradients; micro_loss F64 [n_micro]:
     * each micro-batch's loss_reduce stat[0]. Writes stat F64 [3]:
     *   stat[0] loss  = (Σ_k (double)(float)micro_loss[k]) / n_micro, k in order
     *                   (each micro-batch loss as the float hlab_model_forward reports)
     *   stat[1] norm  = √(Σ grads²) / n_micro, the sum as sumsq forms it
     *   stat[2] scale = (float)(1/n_micro · (clip > 0 && norm > clip ? clip / norm : 1)),
     *                   NaN when loss or norm is not finite (adamw then skips the step). */
    void (*grad_clip_scale)(hk_backend *hk, void *stat, const void *grads, size_t n, const void *micro_loss,
                            int n_micro, float clip);
};

/* ---- opening backends ------------------------------------------------------ */
/* real: HK_F32 (the reference) or HK_F64 (gradient tests). threads <= 0: all cores. */
hk_backend *hk_cpu_create(hk_dtype real, int threads, hlab_err *err);
/* act: HK_BF16 (training) or HK_F32 (parity tests). Returns NULL with
 * HLAB_EUNSUPPORTED in a build without CUDA, HLAB_EDEVICE where no GPU is found. */
hk_backend *hk_cuda_create(int device, hk_dtype act, hlab_err *err);
int hk_cuda_available(void); /* number of CUDA devices usable now (0 without CUDA) */
/* "cpu", "cpu-f64", "cuda", "cuda:N", or "auto" (cuda:0 where a GPU is present, else cpu). */
hk_backend *hk_open(const char *spec, hlab_err *err);
void hk_destroy(hk_backend *hk); /* NULL-safe */

/* ==== profiling wrapper (kernels/profile.c) ======================================
 * hk_profile_wrap(inner) returns a backend that runs every op of `inner` and, while
 * enabled (the default), times each one alone: it syncs inner, reads the host
 * monotonic clock, calls the op, syncs again, and adds to the op's counters the
 * calls, seconds, and the FLOPs and bytes the call needs at minimum (profile.c
 * lists the conventions). The syncs add launch latency to every op: small ops
 * look slower than they are inside an unprofiled step.
 * Ownership: the wrapper takes `inner`; hk_destroy(wrapper) destroys both. On
 * failure it returns NULL and the caller still owns `inner`. Memory from the
 * wrapper's alloc is inner memory (free it through either).
 * Fields the wrapper does not know (ops added later) keep the inner functions and
 * are called with the wrapper as hk: the wrapper shares inner's `impl`, `name`
 * and dtypes, so a backend must find its state through hk->impl, not by casting hk.
 * Counters live in the wrapper; one thread drives it. */
#define HK_PROFILE_MAX_OPS 64
typedef struct {
    const char *op;  /* the hk_backend field: "matmul_fwd" (static string) */
    int64_t calls;
    double seconds;  /* host wall time, inner synced before and after each call */
    double flops;    /* minimum FLOPs (matrix work; 0 for elementwise, norm, loss, optimiser ops) */
    double bytes;    /* minimum bytes: each input read once, each output written once, in its dtype */
    int host_link;   /* 1: the bytes cross the host link (from_host, to_host): no device floor */
} hk_profile_op;
hk_backend *hk_profile_wrap(hk_backend *inner, hlab_err *err);
int hk_profile_is(const hk_backend *hk);         /* 1 for a wrapper made by hk_profile_wrap */
hk_backend *hk_profile_inner(hk_backend *hk);    /* the wrapped backend; NULL if hk is not a wrapper */
void hk_profile_enable(hk_backend *hk, int on);  /* off: ops run straight through, untimed, uncounted */
void hk_profile_reset(hk_backend *hk);           /* zeroes every counter */
/* Copies the counters of the ops called since the last reset (table order) into
 * ops[0 .. cap); returns how many ops were called (may exceed cap). */
int hk_profile_read(hk_backend *hk, hk_profile_op *ops, int cap);
/* The FLOP conventions, for tests and reports: visible (query, key) pairs of a
 * causal (windowed) attention call; its FLOPs = 4·dh·Hq·pairs forward, 2.5× that
 * backward (FlashAttention's convention); SSD FLOPs in kernels/cpu/ssd.c's form. */
double hk_profile_attention_pairs(hk_attn_dims d);
double hk_profile_attention_flops(hk_attn_dims d, int backward);
double hk_profile_ssd_flops(hk_ssd_dims d, int backward);
/* ==== end of profiling wrapper ==================================================== */

#ifdef __cplusplus
}
#endif

#endif
