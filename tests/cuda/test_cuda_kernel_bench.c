/* tests/cuda/test_cuda_kernel_bench.c — per-kernel timings of the CUDA backend
 * against their floors (a benchmark program, not a timed test: under ctest it
 * skips unless HLAB_CUDA_BENCH=1 is set; tests/cuda/run_gpu_tests.sh sets it).
 *
 * For each op at a training-sized shape (bf16 mode): median wall time of the
 * repeated op (host clock after sync; several launches per sample so launch
 * gaps are included, as in training), and the floor: bytes / bandwidth for
 * memory-bound ops, FLOPs / matmul rate for GEMMs. The two ceilings are
 * measured here first: a device-to-device copy and a large bf16 GEMM.
 * Inputs are random (never zeros).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/grouped_gemm.h" /* hk_cuda_moe_time_parts (test-only) */
#include "bench.h"
#include "kernels/kernels.h"
#include "test.h"

static hk_backend *hk;
static hlab_rng rng;
static double bw_gbs, mm_tflops; /* measured ceilings */


static void *rand_dev(size_t n, hk_dtype t, double scale) { return bench_rand_dev(hk, &rng, n, t, scale, 1e-4); }

static void *ints_dev(size_t n, int below) {
    int32_t *h = malloc(n * sizeof *h);
    for (size_t i = 0; i < n; i++) h[i] = (int32_t)hlab_rng_below(&rng, (uint64_t)below);
    void *d = hk->alloc(hk, n * 4);
    hk->from_host(hk, d, HK_F32, h, HK_F32, n);
    free(h);
    return d;
}

/* Median seconds per call over 7 samples of `reps` calls, after a warm-up. */
static double time_op(op_fn f, void *arg, int reps) { return bench_time_op(hk, f, arg, reps, 7); }

static void report(const char *op, const char *shape, double sec, double bytes, double flops) {
    double floor_mem = bytes / (bw_gbs * 1e9), floor_mm = flops / (mm_tflops * 1e12);
    double fl = floor_mem > floor_mm ? floor_mem : floor_mm;
    printf("BENCH %-22s %-34s %9.3f ms  %7.1f GB/s  %6.1f TFLOP/s  floor %8.3f ms  (%4.0f%% of floor)\n", op, shape,
           sec * 1e3, bytes / sec / 1e9, flops / sec / 1e12, fl * 1e3, 100.0 * fl / sec);
}

/* ---- ops under test (args packed in small structs) ------------------------------ */
typedef struct { void *a, *b; size_t n; } copy_args;
static void op_copy(void *p) { copy_args *a = p; hk->convert(hk, a->b, HK_BF16, a->a, HK_BF16, a->n); }

typedef struct { void *out, *inp, *w, *dout, *dinp, *dw; int N, C, OC; } mm_args;
static void op_mm_fwd(void *p) { mm_args *a = p; hk->matmul_fwd(hk, a->out, a->inp, a->w, NULL, a->N, a->C, a->OC); }
static void op_mm_bwd(void *p) {
    mm_args *a = p;
    hk->matmul_bwd(hk, a->dinp, a->dw, NULL, a->dout, a->inp, a->w, a->N, a->C, a->OC, 0);
}

typedef struct { void *out, *rstd, *inp, *w, *dout, *dinp, *dw; int N, C; } norm_args;
static void op_rms_fwd(void *p) { norm_args *a = p; hk->rmsnorm_fwd(hk, a->out, a->rstd, a->inp, a->w, a->N, a->C, 1e-5f); }
static void op_rms_bwd(void *p) {
    norm_args *a = p;
    hk->rmsnorm_bwd(hk, a->dinp, a->dw, a->dout, a->inp, a->w, a->rstd, a->N, a->C, 1);
}

typedef struct { void *h, *o, *dh, *dout; int N, F; } sw_args;
static void op_sw_fwd(void *p) { sw_args *a = p; hk->swiglu_fwd(hk, a->o, a->h, a->N, a->F); }
static void op_sw_bwd(void *p) { sw_args *a = p; hk->swiglu_bwd(hk, a->dh, a->dout, a->h, a->N, a->F); }

typedef struct { void *logits, *losses, *tgt; int N, V; } xent_args;
static void op_xent_fwd(void *p) { xent_args *a = p; hk->xent_fwd(hk, a->losses, a->logits, a->tgt, a->N, a->V); }
static void op_xent_bwd(void *p) { xent_args *a = p; hk->xent_bwd(hk, a->logits, a->logits, a->tgt, 1e-9f, a->N, a->V); }
static void op_xent_fwd_bwd(void *p) {
    xent_args *a = p;
    hk->xent_fwd_bwd(hk, a->losses, a->logits, a->logits, a->tgt, 1e-9f, a->N, a->V);
}
static void op_xent_separate(void *p) { op_xent_fwd(p); op_xent_bwd(p); }

typedef struct { void *out, *a, *b; size_t n; } axpby_args; /* b NULL: out = alpha·a */
static void op_axpby(void *p) { axpby_args *a = p; hk->axpby(hk, a->out, 0.5f, a->a, 0.5f, a->b, a->n); }

typedef struct { void *p, *g, *m, *v, *mirror; size_t n; } adam_args;
static void op_adamw(void *p) {
    adam_args *a = p;
    hk->adamw(hk, a->p, a->g, a->m, a->v, a->mirror, a->n, 1e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, 10, 1.0f, NULL);
}

typedef struct { void *out, *tok, *wte, *dwte; int N, C; } emb_args;
static void op_emb_fwd(void *p) { emb_args *a = p; hk->embedding_fwd(hk, a->out, a->tok, a->wte, a->N, a->C); }
static void op_emb_bwd(void *p) { emb_args *a = p; hk->embedding_bwd(hk, a->dwte, a->out, a->tok, a->N, a->C); }

typedef struct { void *x, *y; int B, T, Hq, Hkv, dh; } rope_args;
static void op_rope(void *p) { rope_args *a = p; hk->rope_fwd(hk, a->x, a->x, a->B, a->T, a->Hq, a->Hkv, a->dh, 1e4f); }
static void op_rope_bwd(void *p) {
    rope_args *a = p;
    hk->rope_bwd(hk, a->y, a->x, a->B, a->T, a->Hq, a->Hkv, a->dh, 1e4f);
}

/* the other norm ops at the same shape (norm_args: out, rstd, inp, w, dout, dinp, dw; mean, res, b, db below) */
typedef struct { norm_args n; void *mean, *res, *b, *db; } norm2_args;
static void op_add_rms_fwd(void *p) {
    norm2_args *a = p;
    hk->add_rmsnorm_fwd(hk, a->res, a->n.out, a->n.rstd, a->n.inp, a->n.dout, a->n.w, a->n.N, a->n.C, 1e-5f);
}
static void op_ln_fwd(void *p) {
    norm2_args *a = p;
    hk->layernorm_fwd(hk, a->n.out, a->mean, a->n.rstd, a->n.inp, a->n.w, a->b, a->n.N, a->n.C, 1e-5f);
}
static void op_ln_bwd(void *p) {
    norm2_args *a = p;
    hk->layernorm_bwd(hk, a->n.dinp, a->n.dw, a->db, a->n.dout, a->n.inp, a->n.w, a->mean, a->n.rstd, a->n.N, a->n.C,
                      1);
}

typedef struct { void *x; size_t n; double result; } sumsq_args;
static void op_sumsq(void *p) { sumsq_args *a = p; a->result = hk->sumsq(hk, a->x, a->n); }

typedef struct {
    void *out, *aux, *cache, *inp, *wr, *w13, *w2, *dinp, *dwr, *dw13, *dw2;
    hk_moe_dims d;
} moe_args;
static void op_moe_fwd(void *p) {
    moe_args *a = p;
    hk->moe_fwd(hk, a->out, a->aux, a->cache, a->inp, a->wr, a->w13, a->w2, NULL, NULL, a->d);
}
static void op_moe_bwd(void *p) {
    moe_args *a = p;
    hk->moe_bwd(hk, a->dinp, a->dwr, a->dw13, a->dw2, NULL, NULL, a->out, 1.0f, a->cache, a->inp, a->wr, a->w13,
                a->w2, NULL, NULL, a->d);
}

int main(void) {
    if (hk_cuda_available() <= 0) test_skip("no CUDA device");
    const char *on = getenv("HLAB_CUDA_BENCH");
    if (!on || strcmp(on, "1") != 0) test_skip("benchmark: set HLAB_CUDA_BENCH=1 to run it");
    hlab_err err = {0};
    hk = hk_cuda_create(0, HK_BF16, &err);
    if (!hk) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    hlab_rng_seed(&rng, 5);
    const size_t A = 2; /* bf16 bytes */

    /* ceilings */
    copy_args ca = {NULL, NULL, (size_t)1 << 29};
    ca.a = rand_dev(ca.n, HK_BF16, 1.0);
    ca.b = hk->alloc(hk, ca.n * A);
    double t = time_op(op_copy, &ca, 5);
    bw_gbs = 2.0 * ca.n * A / t / 1e9;
    hk->free(hk, ca.a);
    hk->free(hk, ca.b);
    mm_args big = {0};
    big.N = big.C = big.OC = 8192;
    big.inp = rand_dev((size_t)8192 * 8192, HK_BF16, 1.0);
    big.w = rand_dev((size_t)8192 * 8192, HK_BF16, 0.02);
    big.out = hk->alloc(hk, (size_t)8192 * 8192 * A);
    t = time_op(op_mm_fwd, &big, 5);
    mm_tflops = 2.0 * 8192.0 * 8192.0 * 8192.0 / t / 1e12;
    hk->free(hk, big.inp);
    hk->free(hk, big.w);
    hk->free(hk, big.out);
    printf("BENCH ceilings: device copy %.0f GB/s (read + write), bf16 GEMM 8192^3 %.0f TFLOP/s\n", bw_gbs, mm_tflops);

    /* Shapes of BENCH.md's config T at 16 x 2048 tokens: D = 768, d_ff = 2048,
     * V = 50304, Hq = 12, Hkv = 4, dh = 64 (the MoE line is an extra: 8 experts, top-2). */
    const int N = 16 * 2048, C = 768, FF = 2048, VOC = 50304;
    char shape[96];
    int ocs[4] = {1280, 2 * FF, C, VOC}, ics[4] = {C, C, FF, C};
    const char *names[4] = {"qkv", "mlp w13", "mlp w2", "lm head"};
    for (int i = 0; i < 4; i++) { /* linear layers of one block, and the tied head */
        mm_args a = {0};
        a.N = N; a.C = ics[i]; a.OC = ocs[i];
        a.inp = rand_dev((size_t)N * a.C, HK_BF16, 1.0);
        a.w = rand_dev((size_t)a.OC * a.C, HK_BF16, 0.02);
        a.out = hk->alloc(hk, (size_t)N * a.OC * A);
        a.dout = rand_dev((size_t)N * a.OC, HK_BF16, 1.0);
        a.dinp = hk->alloc(hk, (size_t)N * a.C * A);
        a.dw = rand_dev((size_t)a.OC * a.C, HK_F32, 0.1);
        double fl = 2.0 * N * a.C * a.OC;
        snprintf(shape, sizeof shape, "%s N%d C%d OC%d", names[i], N, a.C, a.OC);
        report("matmul_fwd", shape, time_op(op_mm_fwd, &a, i == 3 ? 3 : 10), 0, fl);
        report("matmul_bwd", shape, time_op(op_mm_bwd, &a, i == 3 ? 3 : 10), 0, 2 * fl);
        hk->free(hk, a.inp); hk->free(hk, a.w); hk->free(hk, a.out); hk->free(hk, a.dout);
        hk->free(hk, a.dinp); hk->free(hk, a.dw);
    }
    { /* rmsnorm */
        norm_args a = {0};
        a.N = N; a.C = C;
        a.inp = rand_dev((size_t)N * C, HK_BF16, 1.0);
        a.dout = rand_dev((size_t)N * C, HK_BF16, 1.0);
        a.w = rand_dev((size_t)C, HK_F32, 1.0);
        a.dw = rand_dev((size_t)C, HK_F32, 1.0);
        a.out = hk->alloc(hk, (size_t)N * C * A);
        a.dinp = rand_dev((size_t)N * C, HK_BF16, 1.0);
        a.rstd = hk->alloc(hk, (size_t)N * 4);
        snprintf(shape, sizeof shape, "N%d C%d", N, C);
        report("rmsnorm_fwd", shape, time_op(op_rms_fwd, &a, 20), 2.0 * N * C * A, 0);
        report("rmsnorm_bwd (accum)", shape, time_op(op_rms_bwd, &a, 20), 4.0 * N * C * A, 0);
        /* same shape: the fused residual add + RMSNorm (read 2, write 2), LayerNorm fwd / bwd (accum) */
        norm2_args b2 = {a, NULL, NULL, NULL, NULL};
        b2.res = hk->alloc(hk, (size_t)N * C * A);
        b2.mean = hk->alloc(hk, (size_t)N * 4);
        b2.b = rand_dev((size_t)C, HK_F32, 0.5);
        b2.db = rand_dev((size_t)C, HK_F32, 1.0);
        report("add_rmsnorm_fwd", shape, time_op(op_add_rms_fwd, &b2, 20), 4.0 * N * C * A, 0);
        report("layernorm_fwd", shape, time_op(op_ln_fwd, &b2, 20), 2.0 * N * C * A, 0);
        report("layernorm_bwd (accum)", shape, time_op(op_ln_bwd, &b2, 20), 4.0 * N * C * A, 0);
        hk->free(hk, b2.res); hk->free(hk, b2.mean); hk->free(hk, b2.b); hk->free(hk, b2.db);
        hk->free(hk, a.inp); hk->free(hk, a.dout); hk->free(hk, a.w); hk->free(hk, a.dw);
        hk->free(hk, a.out); hk->free(hk, a.dinp); hk->free(hk, a.rstd);
    }
    { /* swiglu */
        sw_args a = {0};
        a.N = N; a.F = FF;
        size_t nf = (size_t)N * a.F;
        a.h = rand_dev(2 * nf, HK_BF16, 2.0);
        a.dout = rand_dev(nf, HK_BF16, 1.0);
        a.o = hk->alloc(hk, nf * A);
        a.dh = hk->alloc(hk, 2 * nf * A);
        snprintf(shape, sizeof shape, "N%d F%d", N, FF);
        report("swiglu_fwd", shape, time_op(op_sw_fwd, &a, 20), 3.0 * nf * A, 0);
        report("swiglu_bwd", shape, time_op(op_sw_bwd, &a, 20), 5.0 * nf * A, 0);
        hk->free(hk, a.h); hk->free(hk, a.dout); hk->free(hk, a.o); hk->free(hk, a.dh);
    }
    { /* axpby at config P's fusion size (mix = ½fa + ½fm forward, ½dmix backward); then an odd n
       * with every pointer one element past a 16-byte boundary (scalar head and tail around the
       * vector body), and pointers at different offsets (the all-scalar path) */
        size_t n = (size_t)N * C, odd = n - 1;
        char *xa = rand_dev(n + 8, HK_BF16, 1.0), *xb = rand_dev(n + 8, HK_BF16, 1.0);
        char *xo = hk->alloc(hk, (n + 8) * A);
        struct { const char *name; size_t n, oa, ob, oo; int two; } cases[] = {
            {"axpby", n, 0, 0, 0, 1},
            {"axpby (b NULL)", n, 0, 0, 0, 0},
            {"axpby (odd n, +1 elem)", odd, 1, 1, 1, 1},
            {"axpby (b NULL, odd, +1)", odd, 1, 1, 1, 0},
            {"axpby (odd, out +2: scalar)", odd, 1, 1, 2, 1},
        };
        for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
            axpby_args a = {xo + cases[i].oo * A, xa + cases[i].oa * A, cases[i].two ? xb + cases[i].ob * A : NULL,
                            cases[i].n};
            snprintf(shape, sizeof shape, "n=%zu", cases[i].n);
            report(cases[i].name, shape, time_op(op_axpby, &a, 20), (cases[i].two ? 3.0 : 2.0) * cases[i].n * A, 0);
        }
        hk->free(hk, xa); hk->free(hk, xb); hk->free(hk, xo);
    }
    { /* cross-entropy over the vocabulary */
        xent_args a = {0};
        a.N = N; a.V = VOC;
        size_t nv = (size_t)a.N * a.V;
        a.logits = rand_dev(nv, HK_BF16, 3.0);
        a.tgt = ints_dev((size_t)a.N, a.V);
        a.losses = hk->alloc(hk, (size_t)a.N * 4);
        snprintf(shape, sizeof shape, "N%d V%d", N, VOC);
        report("xent_fwd", shape, time_op(op_xent_fwd, &a, 5), 1.0 * nv * A, 0);
        report("xent_bwd (in place)", shape, time_op(op_xent_bwd, &a, 5), 2.0 * nv * A, 0);
        /* the training step's loss: fused (one read, one write) against the two calls it replaces */
        report("xent_fwd_bwd (in place)", shape, time_op(op_xent_fwd_bwd, &a, 5), 2.0 * nv * A, 0);
        report("xent_fwd + xent_bwd", shape, time_op(op_xent_separate, &a, 5), 2.0 * nv * A, 0);
        hk->free(hk, a.logits); hk->free(hk, a.tgt); hk->free(hk, a.losses);
    }
    { /* AdamW over the ~114M parameters of config T, with the bf16 mirror */
        adam_args a = {0};
        a.n = (size_t)VOC * C + 12 * ((size_t)C * 1280 + (size_t)C * C + 3 * (size_t)C * FF + 2 * (size_t)C);
        a.p = rand_dev(a.n, HK_F32, 1.0);
        a.g = rand_dev(a.n, HK_F32, 0.01);
        a.m = rand_dev(a.n, HK_F32, 0.001);
        a.v = rand_dev(a.n, HK_F32, 1e-6);
        hk->zero(hk, a.v, a.n * 4); /* v >= 0: the second moments restart from zero */
        a.mirror = hk->alloc(hk, a.n * A);
        snprintf(shape, sizeof shape, "n=%zu", a.n);
        report("adamw (+mirror)", shape, time_op(op_adamw, &a, 5), 30.0 * a.n, 0);
        sumsq_args sq = {a.g, a.n, 0.0}; /* gradient-norm clipping reads the grads once (host sync included) */
        report("sumsq", shape, time_op(op_sumsq, &sq, 10), 4.0 * a.n, 0);
        hk->free(hk, a.p); hk->free(hk, a.g); hk->free(hk, a.m); hk->free(hk, a.v); hk->free(hk, a.mirror);
    }
    { /* embedding over the GPT-2 vocabulary and over bytes */
        int Vs[2] = {VOC, 256};
        for (int vi = 0; vi < 2; vi++) {
            emb_args a = {0};
            a.N = N; a.C = C;
            a.tok = ints_dev((size_t)N, Vs[vi]);
            a.wte = rand_dev((size_t)Vs[vi] * C, HK_BF16, 0.02);
            a.dwte = rand_dev((size_t)Vs[vi] * C, HK_F32, 0.02);
            a.out = hk->alloc(hk, (size_t)N * C * A);
            snprintf(shape, sizeof shape, "N%d C%d V%d", N, C, Vs[vi]);
            report("embedding_fwd", shape, time_op(op_emb_fwd, &a, 20), 2.0 * N * C * A, 0);
            report("embedding_bwd", shape, time_op(op_emb_bwd, &a, 10), 1.0 * N * C * A + 8.0 * N * C, 0);
            hk->free(hk, a.tok); hk->free(hk, a.wte); hk->free(hk, a.dwte); hk->free(hk, a.out);
        }
    }
    { /* rope on packed qkv */
        rope_args a = {0};
        a.B = 16; a.T = 2048; a.Hq = 12; a.Hkv = 4; a.dh = 64;
        size_t n = (size_t)a.B * a.T * (a.Hq + 2 * a.Hkv) * a.dh, rot = n / (a.Hq + 2 * a.Hkv) * (a.Hq + a.Hkv);
        a.x = rand_dev(n, HK_BF16, 1.0);
        report("rope_fwd (in place)", "B16 T2048 Hq12 Hkv4 dh64", time_op(op_rope, &a, 20), 2.0 * rot * A, 0);
        a.y = hk->alloc(hk, n * A); /* out of place: the v part is copied too */
        report("rope_bwd (+v copy)", "B16 T2048 Hq12 Hkv4 dh64", time_op(op_rope_bwd, &a, 20), 2.0 * n * A, 0);
        hk->free(hk, a.x);
        hk->free(hk, a.y);
    }
    { /* MoE: 8 experts, top-2 */
        moe_args a = {0};
        hk_moe_dims d = {N, C, 8, 2, 1024, 0, 0, 1, 0.01f};
        a.d = d;
        a.inp = rand_dev((size_t)N * C, HK_BF16, 1.0);
        a.wr = rand_dev((size_t)8 * C, HK_BF16, 0.02);
        a.w13 = rand_dev((size_t)8 * 2 * 1024 * C, HK_BF16, 0.02);
        a.w2 = rand_dev((size_t)8 * C * 1024, HK_BF16, 0.02);
        a.out = hk->alloc(hk, (size_t)N * C * A);
        a.aux = hk->alloc(hk, 4);
        a.cache = hk->alloc(hk, hk->moe_cache_bytes(hk, d));
        a.dinp = hk->alloc(hk, (size_t)N * C * A);
        a.dwr = rand_dev((size_t)8 * C, HK_F32, 0.1);
        a.dw13 = rand_dev((size_t)8 * 2 * 1024 * C, HK_F32, 0.1);
        a.dw2 = rand_dev((size_t)8 * C * 1024, HK_F32, 0.1);
        double fl = 2.0 * N * 2 * (3.0 * 1024 * C) + 2.0 * N * C * 8;
        /* the device-side grouped GEMM (default), then the host-synced per-expert cuBLASLt path */
        report("moe_fwd", "N32768 C768 E8 k2 F1024", time_op(op_moe_fwd, &a, 5), 0, fl);
        report("moe_bwd", "N32768 C768 E8 k2 F1024", time_op(op_moe_bwd, &a, 5), 0, 2 * fl);
        setenv("HLAB_MOE_SYNC", "1", 1);
        report("moe_fwd (sync path)", "N32768 C768 E8 k2 F1024", time_op(op_moe_fwd, &a, 5), 0, fl);
        report("moe_bwd (sync path)", "N32768 C768 E8 k2 F1024", time_op(op_moe_bwd, &a, 5), 0, 2 * fl);
        unsetenv("HLAB_MOE_SYNC");
        /* Each expert pass alone (CUDA events): the grouped GEMM ("gg", in its tile/split variants:
         * HLAB_GG_BN, HLAB_GG_BK, HLAB_GG_SPLITK) and one cuBLASLt GEMM per expert ("lt") on the same routing.
         * The default first; "BN128 BK32" is the tile measured before the 64-wide k-tile. */
        op_moe_fwd(&a); /* the cache's routing for these inputs */
        static const char *variant_env[5][3] = {
            {NULL, NULL, NULL}, {"256", NULL, NULL}, {NULL, NULL, "32"}, {"256", NULL, "32"}, {NULL, "1", NULL}};
        static const char *variant_name[5] = {"BN128 BK64 split auto", "BN256 BK64 split auto",
                                              "BN128 BK32 split auto", "BN256 BK32 split auto",
                                              "BN128 BK64 no split"};
        for (int v = 0; v < 5; v++) {
            if (variant_env[v][0]) setenv("HLAB_GG_BN", variant_env[v][0], 1);
            else unsetenv("HLAB_GG_BN");
            if (variant_env[v][1]) setenv("HLAB_GG_SPLITK", variant_env[v][1], 1);
            else unsetenv("HLAB_GG_SPLITK");
            if (variant_env[v][2]) setenv("HLAB_GG_BK", variant_env[v][2], 1);
            else unsetenv("HLAB_GG_BK");
            hk_moe_part_time parts[32];
#ifdef HLAB_HAVE_CUDA
            int np = hk_cuda_moe_time_parts(hk, parts, 32, a.cache, a.inp, a.w13, a.w2, a.dw13, a.dw2, d, 10);
#else
            int np = 0; /* a build without CUDA has no parts to time (and this test skips there) */
#endif
            for (int i = 0; i < np; i++) {
                if (v > 0 && strncmp(parts[i].name, "gg ", 3) != 0) continue; /* the rest does not vary */
                char label[96];
                snprintf(label, sizeof label, "moe part %s", parts[i].name);
                snprintf(shape, sizeof shape, "%s", strncmp(parts[i].name, "gg ", 3) ? "E8 k2" : variant_name[v]);
                report(label, shape, parts[i].ms * 1e-3, parts[i].bytes, parts[i].flops);
            }
        }
        unsetenv("HLAB_GG_SPLITK");
        /* the whole layer with the other tiles */
        static const char *layer_env[3][2] = {{"256", NULL}, {NULL, "32"}, {"256", "32"}};
        static const char *layer_name[3][2] = {{"moe_fwd (BN256)", "moe_bwd (BN256)"},
                                               {"moe_fwd (BK32)", "moe_bwd (BK32)"},
                                               {"moe_fwd (BN256 BK32)", "moe_bwd (BN256 BK32)"}};
        for (int v = 0; v < 3; v++) {
            if (layer_env[v][0]) setenv("HLAB_GG_BN", layer_env[v][0], 1);
            else unsetenv("HLAB_GG_BN");
            if (layer_env[v][1]) setenv("HLAB_GG_BK", layer_env[v][1], 1);
            else unsetenv("HLAB_GG_BK");
            report(layer_name[v][0], "N32768 C768 E8 k2 F1024", time_op(op_moe_fwd, &a, 5), 0, fl);
            report(layer_name[v][1], "N32768 C768 E8 k2 F1024", time_op(op_moe_bwd, &a, 5), 0, 2 * fl);
        }
        unsetenv("HLAB_GG_BN");
        unsetenv("HLAB_GG_BK");
        hk->free(hk, a.inp); hk->free(hk, a.wr); hk->free(hk, a.w13); hk->free(hk, a.w2); hk->free(hk, a.out);
        hk->free(hk, a.aux); hk->free(hk, a.cache); hk->free(hk, a.dinp); hk->free(hk, a.dwr);
        hk->free(hk, a.dw13); hk->free(hk, a.dw2);
    }
    printf("BENCH peak device bytes %zu\n", hk->peak_bytes(hk));
    int rc = hk->check(hk, &err);
    if (rc != HLAB_OK) fprintf(stderr, "bench: %s\n", err.msg);
    if (hk) hk->destroy(hk);
    return rc == HLAB_OK ? 0 : 1;
}
