/* kernels/profile.c — a backend that times every op of another one.
 *
 * hk_profile_wrap(inner) returns a backend whose table starts as a copy of the
 * inner table (so a field this file does not know, e.g. an op added later,
 * keeps the inner function and is simply not timed) with every op listed in
 * PROFILE_OPS replaced by a wrapper. While profiling is on, a wrapper syncs the
 * inner backend, reads the host monotonic clock, runs the inner op, syncs again
 * and adds to that op's counters: calls, seconds, and the FLOPs and bytes the
 * call has to do at minimum (from its arguments and dtypes):
 *   - bytes: every input read once and every output written once, in its dtype
 *     (an accumulated output is read and written); scratch and caches the
 *     implementation chooses (the MoE cache) are not counted;
 *   - FLOPs: 2 per multiply-accumulate of the matrix work only; elementwise,
 *     norm, softmax and optimiser arithmetic counts 0 (those ops are bounded by
 *     their bytes). Matmul: 2·N·C·OC forward, twice that backward with dinp
 *     (+ N·OC for a bias). Attention: 4·dh·Hq per visible (query, key) pair
 *     forward (q·kᵀ and p·v; causal and window mask respected), 2.5× that
 *     backward (the FlashAttention convention: 5 products over the pairs, the
 *     scores recomputed). SSD: kernels/cpu/ssd.c's chunked form, full chunk
 *     score blocks (the same figures as docs/CUDA_SSD_FAST.md's floor).
 * Ops reach the inner backend with the inner pointer; fields passed through
 * unwrapped receive the wrapper, which shares the inner `impl`, `name` and
 * dtypes (kernels.h: backends find their state through hk->impl).
 *
 * Not thread-safe (nor are the backends): one thread drives one wrapper.
 */
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"

/* Every op the wrapper times, in table order: X(field, counted toward the device floor). */
#define PROFILE_OPS(X)                                                                                        \
    X(zero, 1) X(from_host, 0) X(to_host, 0) X(convert, 1) X(embedding_fwd, 1) X(embedding_bwd, 1)                  \
    X(matmul_fwd, 1) X(matmul_bwd, 1) X(rmsnorm_fwd, 1) X(rmsnorm_bwd, 1) X(layernorm_fwd, 1) X(layernorm_bwd, 1)   \
    X(add_rmsnorm_fwd, 1) X(add_layernorm_fwd, 1) X(qknorm_fwd, 1) X(qknorm_bwd, 1) X(rope_fwd, 1) X(rope_bwd, 1)  \
    X(attention_fwd, 1) X(attention_bwd, 1) X(conv1d_silu_fwd, 1) X(conv1d_silu_bwd, 1) X(ssd_fwd, 1)               \
    X(ssd_bwd, 1) X(gated_rmsnorm_fwd, 1) X(gated_rmsnorm_bwd, 1) X(swiglu_fwd, 1) X(swiglu_bwd, 1) X(moe_fwd, 1)  \
    X(moe_bwd, 1) X(add, 1) X(axpby, 1) X(concat_fwd, 1) X(concat_bwd, 1) X(gate_fwd, 1) X(gate_bwd, 1)             \
    X(xent_fwd, 1) X(xent_bwd, 1) X(xent_fwd_bwd, 1) X(sumsq, 1) X(adamw, 1) X(loss_reduce, 1) X(grad_clip_scale, 1)

enum {
#define X(name, dev) OP_##name,
    PROFILE_OPS(X)
#undef X
        OP_COUNT
};

static const char *const op_names[OP_COUNT] = {
#define X(name, dev) #name,
    PROFILE_OPS(X)
#undef X
};

static const int op_on_device[OP_COUNT] = {
#define X(name, dev) dev,
    PROFILE_OPS(X)
#undef X
};

_Static_assert(OP_COUNT <= HK_PROFILE_MAX_OPS, "raise HK_PROFILE_MAX_OPS in kernels.h");

typedef struct {
    int64_t calls;
    double seconds, flops, bytes;
} op_counter;

typedef struct {
    hk_backend hk; /* first member: a wrapper op's hk is the profiler */
    hk_backend *inner;
    int enabled;
    op_counter ops[OP_COUNT];
} profiler;

static void profile_destroy(hk_backend *hk);

static profiler *profiler_of(hk_backend *hk) { return (profiler *)hk; }

int hk_profile_is(const hk_backend *hk) { return hk && hk->destroy == profile_destroy; }

/* Syncs before the clock starts so the op's time holds no earlier queued work. */
static double op_begin(profiler *p) {
    hlab_err ignored; /* errors stay sticky in the inner backend; check() reports them */
    p->inner->sync(p->inner, &ignored);
    return hlab_now_s();
}

static void op_end(profiler *p, int op, double t0, double flops, double bytes) {
    hlab_err ignored;
    p->inner->sync(p->inner, &ignored);
    op_counter *c = &p->ops[op];
    c->seconds += hlab_now_s() - t0;
    c->calls++;
    c->flops += flops;
    c->bytes += bytes;
}

/* Runs CALL (which names the inner backend `in`) timed when profiling is on.
 * FLOPS and BYTES are evaluated only then. */
#define TIMED(op, flops, bytes, CALL)                                                                                 \
    do {                                                                                                           \
        profiler *p_ = profiler_of(hk);                                                                            \
        hk_backend *in = p_->inner;                                                                                \
        if (!p_->enabled) {                                                                                        \
            CALL;                                                                                                  \
            break;                                                                                                 \
        }                                                                                                          \
        double t0_ = op_begin(p_);                                                                                 \
        CALL;                                                                                                      \
        op_end(p_, OP_##op, t0_, (flops), (bytes));                                                                \
    } while (0)

/* Element sizes of the activation (A) and real (R) dtypes, as doubles for the counts. */
#define SA ((double)hk_dtype_size(hk->act))
#define SR ((double)hk_dtype_size(hk->real))

/* ---- untimed: lifetime, memory, errors --------------------------------------- */

static void profile_destroy(hk_backend *hk) {
    if (!hk) return;
    profiler *p = profiler_of(hk);
    hk_destroy(p->inner);
    free(p);
}
static int w_check(hk_backend *hk, hlab_err *err) { return profiler_of(hk)->inner->check(profiler_of(hk)->inner, err); }
static int w_sync(hk_backend *hk, hlab_err *err) { return profiler_of(hk)->inner->sync(profiler_of(hk)->inner, err); }
static void *w_alloc(hk_backend *hk, size_t bytes) {
    return profiler_of(hk)->inner->alloc(profiler_of(hk)->inner, bytes);
}
static void w_free(hk_backend *hk, void *ptr) { profiler_of(hk)->inner->free(profiler_of(hk)->inner, ptr); }
static size_t w_peak_bytes(hk_backend *hk) { return profiler_of(hk)->inner->peak_bytes(profiler_of(hk)->inner); }

/* ---- memory traffic --------------------------------------------------------- */

static void w_zero(hk_backend *hk, void *ptr, size_t bytes) {
    TIMED(zero, 0, (double)bytes, in->zero(in, ptr, bytes));
}
static void w_from_host(hk_backend *hk, void *dst, hk_dtype dst_t, const void *src, hk_dtype src_t, size_t n) {
    TIMED(from_host, 0, (double)n * hk_dtype_size(dst_t), in->from_host(in, dst, dst_t, src, src_t, n));
}
static void w_to_host(hk_backend *hk, void *dst, hk_dtype dst_t, const void *src, hk_dtype src_t, size_t n) {
    TIMED(to_host, 0, (double)n * hk_dtype_size(src_t), in->to_host(in, dst, dst_t, src, src_t, n));
}
static void w_convert(hk_backend *hk, void *dst, hk_dtype dst_t, const void *src, hk_dtype src_t, size_t n) {
    TIMED(convert, 0, (double)n * (double)(hk_dtype_size(dst_t) + hk_dtype_size(src_t)),
          in->convert(in, dst, dst_t, src, src_t, n));
}

/* ---- embedding ------------------------------------------------------------------ */

static void w_embedding_fwd(hk_backend *hk, void *out, const int32_t *tokens, const void *wte, int N, int C) {
    double nc = (double)N * C;
    TIMED(embedding_fwd, 0, 4.0 * N + 2 * nc * SA, in->embedding_fwd(in, out, tokens, wte, N, C));
}
/* Rows touched: at most N (fewer when tokens repeat); counted as N, read and written. */
static void w_embedding_bwd(hk_backend *hk, void *dwte, const void *dout, const int32_t *tokens, int N, int C) {
    double nc = (double)N * C;
    TIMED(embedding_bwd, 0, 4.0 * N + nc * SA + 2 * nc * SR, in->embedding_bwd(in, dwte, dout, tokens, N, C));
}

/* ---- linear --------------------------------------------------------------------- */

static void w_matmul_fwd(hk_backend *hk, void *out, const void *inp, const void *w, const void *bias, int N, int C,
                         int OC) {
    double n = N, c = C, oc = OC;
    TIMED(matmul_fwd, 2 * n * c * oc + (bias ? n * oc : 0), SA * (n * c + oc * c + n * oc) + (bias ? SR * oc : 0),
          in->matmul_fwd(in, out, inp, w, bias, N, C, OC));
}
static void w_matmul_bwd(hk_backend *hk, void *dinp, void *dw, void *dbias, const void *dout, const void *inp,
                         const void *w, int N, int C, int OC, int accum) {
    double n = N, c = C, oc = OC;
    double flops = 2 * n * c * oc * (dinp ? 2 : 1) + (dbias ? n * oc : 0);
    double bytes = SA * (n * oc + n * c) + 2 * SR * oc * c + (dbias ? 2 * SR * oc : 0) +
                   (dinp ? SA * (oc * c + n * c * (accum ? 2 : 1)) : 0);
    TIMED(matmul_bwd, flops, bytes, in->matmul_bwd(in, dinp, dw, dbias, dout, inp, w, N, C, OC, accum));
}

/* ---- norms ---------------------------------------------------------------------- */

static void w_rmsnorm_fwd(hk_backend *hk, void *out, void *rstd, const void *inp, const void *w, int N, int C,
                          float eps) {
    double nc = (double)N * C;
    TIMED(rmsnorm_fwd, 0, 2 * nc * SA + SR * ((double)C + N), in->rmsnorm_fwd(in, out, rstd, inp, w, N, C, eps));
}
static void w_rmsnorm_bwd(hk_backend *hk, void *dinp, void *dw, const void *dout, const void *inp, const void *w,
                          const void *rstd, int N, int C, int accum) {
    double nc = (double)N * C;
    TIMED(rmsnorm_bwd, 0, nc * SA * (accum ? 4 : 3) + SR * (3.0 * C + N),
          in->rmsnorm_bwd(in, dinp, dw, dout, inp, w, rstd, N, C, accum));
}
static void w_layernorm_fwd(hk_backend *hk, void *out, void *mean, void *rstd, const void *inp, const void *w,
                            const void *b, int N, int C, float eps) {
    double nc = (double)N * C;
    TIMED(layernorm_fwd, 0, 2 * nc * SA + SR * (2.0 * C + 2.0 * N),
          in->layernorm_fwd(in, out, mean, rstd, inp, w, b, N, C, eps));
}
static void w_layernorm_bwd(hk_backend *hk, void *dinp, void *dw, void *db, const void *dout, const void *inp,
                            const void *w, const void *mean, const void *rstd, int N, int C, int accum) {
    double nc = (double)N * C;
    TIMED(layernorm_bwd, 0, nc * SA * (accum ? 4 : 3) + SR * (5.0 * C + 2.0 * N),
          in->layernorm_bwd(in, dinp, dw, db, dout, inp, w, mean, rstd, N, C, accum));
}

/* res_in and x read, res_out and out written (even where res_out aliases an input). */
static void w_add_rmsnorm_fwd(hk_backend *hk, void *res_out, void *out, void *rstd, const void *res_in, const void *x,
                              const void *w, int N, int C, float eps) {
    double nc = (double)N * C;
    TIMED(add_rmsnorm_fwd, 0, 4 * nc * SA + SR * ((double)C + N),
          in->add_rmsnorm_fwd(in, res_out, out, rstd, res_in, x, w, N, C, eps));
}
static void w_add_layernorm_fwd(hk_backend *hk, void *res_out, void *out, void *mean, void *rstd, const void *res_in,
                                const void *x, const void *w, const void *b, int N, int C, float eps) {
    double nc = (double)N * C;
    TIMED(add_layernorm_fwd, 0, 4 * nc * SA + SR * (2.0 * C + 2.0 * N),
          in->add_layernorm_fwd(in, res_out, out, mean, rstd, res_in, x, w, b, N, C, eps));
}

/* ---- attention ------------------------------------------------------------------ */

static void w_qknorm_fwd(hk_backend *hk, void *out, void *rstd, const void *inp, const void *wq, const void *wk, int N,
                         int Hq, int Hkv, int dh, float eps) {
    double row = (double)(Hq + 2 * Hkv) * dh;
    TIMED(qknorm_fwd, 0, 2 * (double)N * row * SA + SR * ((double)N * (Hq + Hkv) + 2.0 * dh),
          in->qknorm_fwd(in, out, rstd, inp, wq, wk, N, Hq, Hkv, dh, eps));
}
/* Reads dout (all of it: v is copied through) and the q, k part of inp. */
static void w_qknorm_bwd(hk_backend *hk, void *dinp, void *dwq, void *dwk, const void *dout, const void *inp,
                         const void *wq, const void *wk, const void *rstd, int N, int Hq, int Hkv, int dh) {
    double row = (double)(Hq + 2 * Hkv) * dh, qk = (double)(Hq + Hkv) * dh;
    TIMED(qknorm_bwd, 0, (double)N * (2 * row + qk) * SA + SR * ((double)N * (Hq + Hkv) + 6.0 * dh),
          in->qknorm_bwd(in, dinp, dwq, dwk, dout, inp, wq, wk, rstd, N, Hq, Hkv, dh));
}
/* In place, v is left alone: only q and k move. */
static double rope_bytes(hk_backend *hk, const void *out, const void *inp, int B, int T, int Hq, int Hkv, int dh) {
    double tokens = (double)B * T, moved = (double)(out == inp ? Hq + Hkv : Hq + 2 * Hkv) * dh;
    return 2 * tokens * moved * SA;
}
static void w_rope_fwd(hk_backend *hk, void *out, const void *inp, int B, int T, int Hq, int Hkv, int dh, float theta) {
    TIMED(rope_fwd, 0, rope_bytes(hk, out, inp, B, T, Hq, Hkv, dh), in->rope_fwd(in, out, inp, B, T, Hq, Hkv, dh, theta));
}
static void w_rope_bwd(hk_backend *hk, void *dinp, const void *dout, int B, int T, int Hq, int Hkv, int dh,
                       float theta) {
    TIMED(rope_bwd, 0, rope_bytes(hk, dinp, dout, B, T, Hq, Hkv, dh),
          in->rope_bwd(in, dinp, dout, B, T, Hq, Hkv, dh, theta));
}

double hk_profile_attention_pairs(hk_attn_dims d) {
    /* Query t sees min(t + 1, window) keys. */
    double T = d.T, per_seq;
    if (d.window <= 0 || d.window >= d.T) per_seq = T * (T + 1) / 2;
    else {
        double W = d.window;
        per_seq = W * (W + 1) / 2 + (T - W) * W;
    }
    return (double)d.B * per_seq;
}

double hk_profile_attention_flops(hk_attn_dims d, int backward) {
    double fwd = 4.0 * d.dh * d.Hq * hk_profile_attention_pairs(d);
    return backward ? 2.5 * fwd : fwd;
}

static void w_attention_fwd(hk_backend *hk, void *out, void *lse, const void *qkv, hk_attn_dims d) {
    double n = (double)d.B * d.T, row = (double)(d.Hq + 2 * d.Hkv) * d.dh, o = (double)d.Hq * d.dh;
    TIMED(attention_fwd, hk_profile_attention_flops(d, 0), n * (row + o) * SA + n * d.Hq * SR,
          in->attention_fwd(in, out, lse, qkv, d));
}
static void w_attention_bwd(hk_backend *hk, void *dqkv, const void *dout, const void *out, const void *lse,
                            const void *qkv, hk_attn_dims d) {
    double n = (double)d.B * d.T, row = (double)(d.Hq + 2 * d.Hkv) * d.dh, o = (double)d.Hq * d.dh;
    TIMED(attention_bwd, hk_profile_attention_flops(d, 1), n * (2 * row + 2 * o) * SA + n * d.Hq * SR,
          in->attention_bwd(in, dqkv, dout, out, lse, qkv, d));
}

/* ---- Mamba-2 -------------------------------------------------------------------- */

static void w_conv1d_silu_fwd(hk_backend *hk, void *out, const void *inp, const void *w, const void *b, int B, int T,
                              int Cc, int K) {
    double nc = (double)B * T * Cc;
    TIMED(conv1d_silu_fwd, 2 * nc * K, 2 * nc * SA + SR * (double)Cc * (K + 1),
          in->conv1d_silu_fwd(in, out, inp, w, b, B, T, Cc, K));
}
/* The op recomputes the pre-activation (kernels.h), then dinp and dw: 3 passes of 2·K per element. */
static void w_conv1d_silu_bwd(hk_backend *hk, void *dinp, void *dw, void *db, const void *dout, const void *inp,
                              const void *w, const void *b, int B, int T, int Cc, int K) {
    double nc = (double)B * T * Cc;
    TIMED(conv1d_silu_bwd, 6 * nc * K, 3 * nc * SA + 3 * SR * (double)Cc * (K + 1),
          in->conv1d_silu_bwd(in, dinp, dw, db, dout, inp, w, b, B, T, Cc, K));
}

/* Σ over a sequence's chunks of (chunk length)²: T·Q for full chunks. */
static double ssd_sum_sq_chunks(hk_ssd_dims d) {
    int Q = d.chunk > 0 ? d.chunk : d.T;
    double full = d.T / Q, rest = d.T % Q;
    return full * Q * Q + rest * rest;
}

double hk_profile_ssd_flops(hk_ssd_dims d, int backward) {
    double L2 = ssd_sum_sq_chunks(d), T = d.T, G = d.G, H = d.H, P = d.P, Ns = d.N;
    double per_seq = backward ? 6 * G * Ns * L2 + 4 * H * P * L2 + 8 * H * P * Ns * T
                              : 2 * G * Ns * L2 + 2 * H * P * L2 + 4 * H * P * Ns * T;
    return (double)d.B * per_seq;
}

/* xbc, dt (A) and the fp32 chunk states of one call, in bytes. */
static void ssd_sizes(hk_backend *hk, hk_ssd_dims d, double *xbc, double *dt, double *y, double *states) {
    double n = (double)d.B * d.T, hp = (double)d.H * d.P;
    int Q = d.chunk > 0 ? d.chunk : d.T;
    double nchunks = (d.T + Q - 1) / Q;
    *xbc = n * (hp + 2.0 * d.G * d.N) * SA;
    *dt = n * d.H * SA;
    *y = n * hp * SA;
    *states = (double)d.B * nchunks * hp * d.N * SR;
}

static void w_ssd_fwd(hk_backend *hk, void *y, void *states, const void *xbc, const void *dt, const void *dt_bias,
                      const void *A_log, const void *Dskip, hk_ssd_dims d) {
    double bx, bdt, by, bs;
    ssd_sizes(hk, d, &bx, &bdt, &by, &bs);
    TIMED(ssd_fwd, hk_profile_ssd_flops(d, 0), bx + bdt + by + bs + 3.0 * d.H * SR,
          in->ssd_fwd(in, y, states, xbc, dt, dt_bias, A_log, Dskip, d));
}
static void w_ssd_bwd(hk_backend *hk, void *dxbc, void *ddt, void *ddt_bias, void *dA_log, void *dDskip, const void *dy,
                      const void *states, const void *xbc, const void *dt, const void *dt_bias, const void *A_log,
                      const void *Dskip, hk_ssd_dims d) {
    double bx, bdt, by, bs;
    ssd_sizes(hk, d, &bx, &bdt, &by, &bs);
    TIMED(ssd_bwd, hk_profile_ssd_flops(d, 1), 2 * bx + 2 * bdt + by + bs + 9.0 * d.H * SR,
          in->ssd_bwd(in, dxbc, ddt, ddt_bias, dA_log, dDskip, dy, states, xbc, dt, dt_bias, A_log, Dskip, d));
}

static void w_gated_rmsnorm_fwd(hk_backend *hk, void *out, void *rstd, const void *y, const void *z, const void *w,
                                int N, int Di, int G, float eps) {
    double nd = (double)N * Di;
    TIMED(gated_rmsnorm_fwd, 0, 3 * nd * SA + SR * ((double)Di + (double)N * G),
          in->gated_rmsnorm_fwd(in, out, rstd, y, z, w, N, Di, G, eps));
}
static void w_gated_rmsnorm_bwd(hk_backend *hk, void *dy, void *dz, void *dw, const void *dout, const void *y,
                                const void *z, const void *w, const void *rstd, int N, int Di, int G) {
    double nd = (double)N * Di;
    TIMED(gated_rmsnorm_bwd, 0, 5 * nd * SA + SR * (3.0 * Di + (double)N * G),
          in->gated_rmsnorm_bwd(in, dy, dz, dw, dout, y, z, w, rstd, N, Di, G));
}

/* ---- channel -------------------------------------------------------------------- */

static void w_swiglu_fwd(hk_backend *hk, void *out, const void *inp, int N, int F) {
    TIMED(swiglu_fwd, 0, 3.0 * N * F * SA, in->swiglu_fwd(in, out, inp, N, F));
}
static void w_swiglu_bwd(hk_backend *hk, void *dinp, const void *dout, const void *inp, int N, int F) {
    TIMED(swiglu_bwd, 0, 5.0 * N * F * SA, in->swiglu_bwd(in, dinp, dout, inp, N, F));
}

static size_t w_moe_cache_bytes(hk_backend *hk, hk_moe_dims d) {
    return profiler_of(hk)->inner->moe_cache_bytes(profiler_of(hk)->inner, d);
}
/* Router product plus the k routed and S shared SwiGLU experts of each token (3 products each). */
static double moe_fwd_flops(hk_moe_dims d) {
    double n = d.N, c = d.C;
    return 2 * n * c * d.E + n * d.k * 6 * c * d.F + n * d.S * 6 * c * d.Fs;
}
static double moe_weight_elems(hk_moe_dims d) {
    double c = d.C;
    return c * d.E + 3 * c * d.F * d.E + 3 * c * d.Fs * d.S;
}
static void w_moe_fwd(hk_backend *hk, void *out, void *aux, void *cache, const void *inp, const void *w_router,
                      const void *w13, const void *w2, const void *ws13, const void *ws2, hk_moe_dims d) {
    double nc = (double)d.N * d.C;
    TIMED(moe_fwd, moe_fwd_flops(d), (2 * nc + moe_weight_elems(d)) * SA + SR,
          in->moe_fwd(in, out, aux, cache, inp, w_router, w13, w2, ws13, ws2, d));
}
/* Twice the forward products (input and weight gradients); weights read (A), grads accumulated (R). */
static void w_moe_bwd(hk_backend *hk, void *dinp, void *dw_router, void *dw13, void *dw2, void *dws13, void *dws2,
                      const void *dout, float daux, const void *cache, const void *inp, const void *w_router,
                      const void *w13, const void *w2, const void *ws13, const void *ws2, hk_moe_dims d) {
    double nc = (double)d.N * d.C, we = moe_weight_elems(d);
    TIMED(moe_bwd, 2 * moe_fwd_flops(d), (3 * nc + we) * SA + 2 * we * SR,
          in->moe_bwd(in, dinp, dw_router, dw13, dw2, dws13, dws2, dout, daux, cache, inp, w_router, w13, w2, ws13,
                      ws2, d));
}

/* ---- elementwise and fusion ------------------------------------------------------ */

static void w_add(hk_backend *hk, void *out, const void *a, const void *b, size_t n) {
    TIMED(add, 0, 3.0 * n * SA, in->add(in, out, a, b, n));
}
static void w_axpby(hk_backend *hk, void *out, float alpha, const void *a, float beta, const void *b, size_t n) {
    TIMED(axpby, 0, (b ? 3.0 : 2.0) * n * SA, in->axpby(in, out, alpha, a, beta, b, n));
}
static void w_concat_fwd(hk_backend *hk, void *out, const void *a, const void *b, int N, int C1, int C2) {
    TIMED(concat_fwd, 0, 2.0 * N * ((double)C1 + C2) * SA, in->concat_fwd(in, out, a, b, N, C1, C2));
}
static void w_concat_bwd(hk_backend *hk, void *da, void *db, const void *dout, int N, int C1, int C2) {
    TIMED(concat_bwd, 0, 2.0 * N * ((double)C1 + C2) * SA, in->concat_bwd(in, da, db, dout, N, C1, C2));
}
static void w_gate_fwd(hk_backend *hk, void *out, const void *g, const void *a, const void *m, size_t n) {
    TIMED(gate_fwd, 0, 4.0 * n * SA, in->gate_fwd(in, out, g, a, m, n));
}
static void w_gate_bwd(hk_backend *hk, void *dg, void *da, void *dm, const void *dout, const void *g, const void *a,
                       const void *m, size_t n) {
    TIMED(gate_bwd, 0, 7.0 * n * SA, in->gate_bwd(in, dg, da, dm, dout, g, a, m, n));
}

/* ---- loss and optimiser ---------------------------------------------------------- */

static void w_xent_fwd(hk_backend *hk, void *losses, const void *logits, const int32_t *targets, int N, int V) {
    TIMED(xent_fwd, 0, (double)N * V * SA + 4.0 * N + N * SR, in->xent_fwd(in, losses, logits, targets, N, V));
}
static void w_xent_bwd(hk_backend *hk, void *dlogits, const void *logits, const int32_t *targets, float dloss, int N,
                       int V) {
    TIMED(xent_bwd, 0, 2.0 * N * V * SA + 4.0 * N, in->xent_bwd(in, dlogits, logits, targets, dloss, N, V));
}
/* The logits read once and the gradient written once, targets read, losses written. */
static void w_xent_fwd_bwd(hk_backend *hk, void *losses, void *dlogits, const void *logits, const int32_t *targets,
                           float dloss, int N, int V) {
    TIMED(xent_fwd_bwd, 0, 2.0 * N * V * SA + 4.0 * N + N * SR,
          in->xent_fwd_bwd(in, losses, dlogits, logits, targets, dloss, N, V));
}
static double w_sumsq(hk_backend *hk, const void *x, size_t n) {
    double r = 0;
    TIMED(sumsq, 0, (double)n * SR, r = in->sumsq(in, x, n));
    return r;
}
/* params, m, v read and written, grads read; the mirror written; the device scale read. */
static void w_adamw(hk_backend *hk, void *params, const void *grads, void *m, void *v, void *mirror, size_t n, float lr,
                    float b1, float b2, float eps, float wd, int step, float grad_scale, const void *scale_dev) {
    TIMED(adamw, 0, 7.0 * n * SR + (mirror ? (double)n * SA : 0) + (scale_dev ? 8.0 : 0),
          in->adamw(in, params, grads, m, v, mirror, n, lr, b1, b2, eps, wd, step, grad_scale, scale_dev));
}
/* The step statistics are F64 (8 bytes) on every backend. */
static void w_loss_reduce(hk_backend *hk, void *stat, const void *losses, int N, const void *aux, int n_aux) {
    TIMED(loss_reduce, 0, ((double)N + n_aux) * SR + 2 * 8.0, in->loss_reduce(in, stat, losses, N, aux, n_aux));
}
/* grads read once (as sumsq), the micro-batch losses read, three statistics written. */
static void w_grad_clip_scale(hk_backend *hk, void *stat, const void *grads, size_t n, const void *micro_loss,
                              int n_micro, float clip) {
    TIMED(grad_clip_scale, 0, (double)n * SR + 8.0 * n_micro + 3 * 8.0,
          in->grad_clip_scale(in, stat, grads, n, micro_loss, n_micro, clip));
}

/* ---- public ------------------------------------------------------------------------ */

hk_backend *hk_profile_wrap(hk_backend *inner, hlab_err *err) {
    if (!inner) {
        hlab_fail(err, HLAB_EINVAL, "profile: no backend to wrap");
        return NULL;
    }
    profiler *p = calloc(1, sizeof *p);
    if (!p) {
        hlab_fail(err, HLAB_ENOMEM, "profile: out of host memory");
        return NULL;
    }
    p->inner = inner;
    p->enabled = 1;
    hk_backend *hk = &p->hk;
    *hk = *inner; /* name, dtypes, impl, and any field not replaced below */
    hk->destroy = profile_destroy;
    hk->check = w_check;
    hk->sync = w_sync;
    hk->alloc = w_alloc;
    hk->free = w_free;
    hk->peak_bytes = w_peak_bytes;
    hk->moe_cache_bytes = w_moe_cache_bytes;
    /* A NULL inner op stays NULL, so callers that test for an optional op see the same table. */
#define X(name, dev) hk->name = inner->name ? w_##name : NULL;
    PROFILE_OPS(X)
#undef X
    return hk;
}

hk_backend *hk_profile_inner(hk_backend *hk) { return hk_profile_is(hk) ? profiler_of(hk)->inner : NULL; }

void hk_profile_enable(hk_backend *hk, int on) {
    if (hk_profile_is(hk)) profiler_of(hk)->enabled = on != 0;
}

void hk_profile_reset(hk_backend *hk) {
    if (hk_profile_is(hk)) memset(profiler_of(hk)->ops, 0, sizeof profiler_of(hk)->ops);
}

int hk_profile_read(hk_backend *hk, hk_profile_op *ops, int cap) {
    if (!hk_profile_is(hk)) return 0;
    const profiler *p = profiler_of(hk);
    int n = 0;
    for (int i = 0; i < OP_COUNT; i++) {
        const op_counter *c = &p->ops[i];
        if (!c->calls) continue;
        if (ops && n < cap)
            ops[n] = (hk_profile_op){.op = op_names[i], .calls = c->calls, .seconds = c->seconds, .flops = c->flops,
                                     .bytes = c->bytes, .host_link = !op_on_device[i]};
        n++;
    }
    return n;
}
