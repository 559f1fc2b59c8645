/* tests/cuda/test_cuda_bench_mixers.c — timings of the CUDA mixer kernels against their
 * floors (a benchmark program that never fails on timing: under ctest it skips unless
 * HLAB_CUDA_BENCH=1 is set, and always where no GPU is present).
 *
 * bf16 mode, training shapes of ../shared/docs/BENCH.md at 4 × 8192:
 *   attention (T config: Hq 12, Hkv 4, dh 64) fwd, bwd, fwd+bwd: causal FLOPs
 *     fwd = 2·B·Hq·dh·T² (two T×T×dh products over the causal half), bwd = 2.5 × fwd
 *     (the FlashAttention convention), compared with the bf16 matmul rate measured here;
 *     and the backward's rowdot / dK/dV / dQ kernels alone;
 *   SSD (M config: H 24, P 64, N 128, G 1, chunk 256) fwd and bwd against the memory floor
 *     (each A input read once, each output written once, states R written / read once);
 *   conv1d + SiLU and gated RMSNorm against their memory floors (the default paths, then
 *   the conv window path at other time chunks and both ops' legacy kernels, selected
 *   through HLAB_CONV_CHUNK / HLAB_CONV_LEGACY / HLAB_GN_LEGACY, for comparison).
 * Ceilings measured first in the same run: a bf16 device copy (bytes read + written)
 * and an 8192³ bf16 matmul through the backend. Median of 5 samples after a warm-up.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "kernels/kernels.h"
#include "test.h"

static hk_backend *hk;
static hlab_rng rng;
static double bw_gbs, mm_tflops;

static void *rand_dev(size_t n, hk_dtype t, double scale) { return bench_rand_dev(hk, &rng, n, t, scale, 1e-3); }
static double time_op(op_fn f, void *arg, int reps) { return bench_time_op(hk, f, arg, reps, 5); }

static void report(const char *op, const char *shape, double sec, double bytes, double flops) {
    const double fm = bytes / (bw_gbs * 1e9), ff = flops / (mm_tflops * 1e12), fl = fm > ff ? fm : ff;
    printf("BENCH %-18s %-30s %9.3f ms %8.1f GB/s %7.1f TFLOP/s (%5.1f%% of matmul)  floor %8.3f ms (%s)  %5.2fx floor\n",
           op, shape, sec * 1e3, bytes / sec / 1e9, flops / sec / 1e12, 100.0 * flops / sec / 1e12 / mm_tflops,
           fl * 1e3, fm > ff ? "memory" : "compute", sec / fl);
}

typedef struct { void *a, *b; size_t n; } copy_args;
static void op_copy(void *p) { copy_args *a = p; hk->convert(hk, a->b, HK_BF16, a->a, HK_BF16, a->n); }
typedef struct { void *out, *inp, *w; int N; } mm_args;
static void op_mm(void *p) { mm_args *a = p; hk->matmul_fwd(hk, a->out, a->inp, a->w, NULL, a->N, a->N, a->N); }

typedef struct { void *qkv, *out, *lse, *dout, *dqkv; hk_attn_dims d; } att_args;
static void op_att_fwd(void *p) { att_args *a = p; hk->attention_fwd(hk, a->out, a->lse, a->qkv, a->d); }
static void op_att_bwd(void *p) {
    att_args *a = p;
    hk->attention_bwd(hk, a->dqkv, a->dout, a->out, a->lse, a->qkv, a->d);
}
static void op_att_both(void *p) { op_att_fwd(p); op_att_bwd(p); }

typedef struct { void *xbc, *dt, *bias, *alog, *D, *y, *st, *dy, *dxbc, *ddt, *g1, *g2, *g3; hk_ssd_dims d; } ssd_args;
static void op_ssd_fwd(void *p) {
    ssd_args *a = p;
    hk->ssd_fwd(hk, a->y, a->st, a->xbc, a->dt, a->bias, a->alog, a->D, a->d);
}
static void op_ssd_bwd(void *p) {
    ssd_args *a = p;
    hk->ssd_bwd(hk, a->dxbc, a->ddt, a->g1, a->g2, a->g3, a->dy, a->st, a->xbc, a->dt, a->bias, a->alog, a->D, a->d);
}

typedef struct { void *inp, *out, *w, *b, *dout, *dinp, *dw, *db; int B, T, C, K; } conv_args;
static void op_conv_fwd(void *p) { conv_args *a = p; hk->conv1d_silu_fwd(hk, a->out, a->inp, a->w, a->b, a->B, a->T, a->C, a->K); }
static void op_conv_bwd(void *p) {
    conv_args *a = p;
    hk->conv1d_silu_bwd(hk, a->dinp, a->dw, a->db, a->dout, a->inp, a->w, a->b, a->B, a->T, a->C, a->K);
}
typedef struct { void *y, *z, *w, *out, *rstd, *dout, *dy, *dz, *dw; int N, Di, G; } gn_args;
static void op_gn_fwd(void *p) { gn_args *a = p; hk->gated_rmsnorm_fwd(hk, a->out, a->rstd, a->y, a->z, a->w, a->N, a->Di, a->G, 1e-5f); }
static void op_gn_bwd(void *p) {
    gn_args *a = p;
    hk->gated_rmsnorm_bwd(hk, a->dy, a->dz, a->dw, a->dout, a->y, a->z, a->w, a->rstd, a->N, a->Di, a->G);
}

int main(void) {
    if (hk_cuda_available() <= 0) test_skip("no CUDA device");
    const char *on = getenv("HLAB_CUDA_BENCH");
    if (!on || strcmp(on, "1") != 0) test_skip("benchmark: set HLAB_CUDA_BENCH=1 to run it");
    hlab_err err = {0};
    hk = hk_cuda_create(0, HK_BF16, &err);
    if (!hk) {
        fprintf(stderr, "cuda backend: %s\n", err.msg);
        return 1;
    }
    hlab_rng_seed(&rng, 99);
    { /* ceilings */
        copy_args c = {rand_dev((size_t)1 << 29, HK_BF16, 1.0), rand_dev((size_t)1 << 29, HK_BF16, 1.0), (size_t)1 << 29};
        double t = time_op(op_copy, &c, 5);
        bw_gbs = 2.0 * 2.0 * (double)c.n / t / 1e9;
        hk->free(hk, c.a); hk->free(hk, c.b);
        mm_args m = {NULL, rand_dev((size_t)8192 * 8192, HK_BF16, 1.0), rand_dev((size_t)8192 * 8192, HK_BF16, 0.1), 8192};
        m.out = hk->alloc(hk, (size_t)8192 * 8192 * 2);
        t = time_op(op_mm, &m, 5);
        mm_tflops = 2.0 * 8192.0 * 8192.0 * 8192.0 / t / 1e12;
        hk->free(hk, m.out); hk->free(hk, m.inp); hk->free(hk, m.w);
        printf("CEILING copy %.0f GB/s, bf16 matmul %.1f TFLOP/s\n", bw_gbs, mm_tflops);
    }
    /* attention, T config at both bench shapes (dh 128: same width, half the heads) */
    static const int att_shapes[3][3] = {{4, 8192, 64}, {4, 8192, 128}, {16, 2048, 64}};
    for (int si = 0; si < 3; si++) {
        const int B = att_shapes[si][0], T = att_shapes[si][1], dh = att_shapes[si][2];
        hk_attn_dims d = {B, T, 12 * 64 / dh, 4 * 64 / dh, dh, 0};
        const size_t N = (size_t)B * T, W = (size_t)(d.Hq + 2 * d.Hkv) * dh, OW = (size_t)d.Hq * dh;
        att_args a = {rand_dev(N * W, HK_BF16, 1.5), hk->alloc(hk, N * OW * 2), hk->alloc(hk, (size_t)B * d.Hq * T * 4),
                      rand_dev(N * OW, HK_BF16, 1.0), hk->alloc(hk, N * W * 2), d};
        const double ff = 2.0 * B * d.Hq * (double)dh * T * (double)T;
        char shape[64];
        snprintf(shape, sizeof shape, "B%d T%d Hq%d Hkv%d dh%d", B, T, d.Hq, d.Hkv, dh);
        const double by = (double)N * (W + OW) * 2;
        /* the backward's three kernels alone through HLAB_ATTN_BWD_PART (read per call), at the
         * FLOPs they execute: dK/dV 4 tile products (S, dP, dV, dK), dQ 3 (S and dP again, dQ) */
        report("attention_fwd", shape, time_op(op_att_fwd, &a, 3), by, ff);
        report("attention_bwd", shape, time_op(op_att_bwd, &a, 3), 2 * by + N * W * 2, 2.5 * ff);
        report("attention_fwd+bwd", shape, time_op(op_att_both, &a, 3), 3 * by + N * W * 2, 3.5 * ff);
        setenv("HLAB_ATTN_BWD_PART", "rowdot", 1);
        report("attn_bwd_rowdot", shape, time_op(op_att_bwd, &a, 3), 2.0 * N * OW * 2 + (double)B * d.Hq * T * 4, 0);
        setenv("HLAB_ATTN_BWD_PART", "dkdv", 1);
        report("attn_bwd_dkdv", shape, time_op(op_att_bwd, &a, 3), by + N * W * 2, 2.0 * ff);
        setenv("HLAB_ATTN_BWD_PART", "dq", 1);
        report("attn_bwd_dq", shape, time_op(op_att_bwd, &a, 3), by + N * OW * 2, 1.5 * ff);
        unsetenv("HLAB_ATTN_BWD_PART");
        hk->free(hk, a.qkv); hk->free(hk, a.out); hk->free(hk, a.lse); hk->free(hk, a.dout); hk->free(hk, a.dqkv);
    }
    const char *only = getenv("HLAB_BENCH_ATTN_ONLY"); /* 1: the attention rows alone (comparing variants) */
    if (only && strcmp(only, "1") == 0) {
        if (hk->check(hk, &err) != HLAB_OK) printf("backend error: %s\n", err.msg);
        hk->destroy(hk);
        return 0;
    }
    int B = 4, T = 8192;
    { /* SSD, M config */
        hk_ssd_dims d = {B, T, 24, 64, 1, 128, 256};
        const size_t N = (size_t)B * T, W = (size_t)d.H * d.P + 2 * (size_t)d.G * d.N, HP = (size_t)d.H * d.P;
        const size_t nst = (size_t)B * (T / d.chunk) * d.H * d.P * d.N;
        ssd_args a = {rand_dev(N * W, HK_BF16, 1.0), rand_dev(N * d.H, HK_BF16, 1.0), rand_dev(d.H, HK_F32, 0.5),
                      rand_dev(d.H, HK_F32, 0.5), rand_dev(d.H, HK_F32, 1.0), hk->alloc(hk, N * HP * 2),
                      hk->alloc(hk, nst * 4), rand_dev(N * HP, HK_BF16, 1.0), hk->alloc(hk, N * W * 2),
                      hk->alloc(hk, N * d.H * 2), rand_dev(d.H, HK_F32, 1.0), rand_dev(d.H, HK_F32, 1.0),
                      rand_dev(d.H, HK_F32, 1.0), d};
        const double Q = d.chunk;
        const double ffwd = (double)N * 2.0 * d.H * (Q * (d.N + d.P) + 2.0 * d.P * d.N);
        const double fbwd = (double)N * 2.0 * d.H * (Q * (3.0 * d.N + 2.0 * d.P) + 4.0 * d.P * d.N);
        const double bfwd = (double)N * (W + d.H + HP) * 2 + nst * 4.0;
        const double bbwd = (double)N * (W + d.H + HP + W + d.H) * 2 + nst * 4.0;
        report("ssd_fwd", "B4 T8192 H24 P64 N128 Q256", time_op(op_ssd_fwd, &a, 2), bfwd, ffwd);
        report("ssd_bwd", "B4 T8192 H24 P64 N128 Q256", time_op(op_ssd_bwd, &a, 2), bbwd, fbwd);
        printf("NOTE ssd floors above: compute term at the bf16 matmul rate; memory-only floor fwd %.3f ms, bwd %.3f ms\n",
               bfwd / (bw_gbs * 1e9) * 1e3, bbwd / (bw_gbs * 1e9) * 1e3);
        void *ps[] = {a.xbc, a.dt, a.bias, a.alog, a.D, a.y, a.st, a.dy, a.dxbc, a.ddt, a.g1, a.g2, a.g3};
        for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++) hk->free(hk, ps[i]);
    }
    { /* conv1d over xBC (Cc = 2·768 + 2·128), gated RMSNorm over d_inner 1536 */
        conv_args c = {NULL};
        c.B = B, c.T = T, c.C = 1536 + 256, c.K = 4;
        const size_t n = (size_t)B * T * c.C;
        c.inp = rand_dev(n, HK_BF16, 1.0), c.out = hk->alloc(hk, n * 2), c.w = rand_dev((size_t)c.C * 4, HK_F32, 0.5);
        c.b = rand_dev(c.C, HK_F32, 0.5), c.dout = rand_dev(n, HK_BF16, 1.0), c.dinp = hk->alloc(hk, n * 2);
        c.dw = rand_dev((size_t)c.C * 4, HK_F32, 1.0), c.db = rand_dev(c.C, HK_F32, 1.0);
        report("conv1d_silu_fwd", "B4 T8192 C1792 K4", time_op(op_conv_fwd, &c, 5), 2.0 * n * 2, 0);
        report("conv1d_silu_bwd", "B4 T8192 C1792 K4", time_op(op_conv_bwd, &c, 5), 3.0 * n * 2, 0);
        /* the window path's time chunk (default 64), then the legacy kernels, for comparison */
        static const char *chunks[] = {"16", "32", "128"};
        for (int k = 0; k < 3; k++) {
            char shape[64];
            snprintf(shape, sizeof shape, "B4 T8192 C1792 K4 chunk%s", chunks[k]);
            setenv("HLAB_CONV_CHUNK", chunks[k], 1);
            report("conv1d_silu_fwd", shape, time_op(op_conv_fwd, &c, 5), 2.0 * n * 2, 0);
            report("conv1d_silu_bwd", shape, time_op(op_conv_bwd, &c, 5), 3.0 * n * 2, 0);
        }
        unsetenv("HLAB_CONV_CHUNK");
        setenv("HLAB_CONV_LEGACY", "1", 1);
        report("conv1d_silu_fwd", "B4 T8192 C1792 K4 legacy", time_op(op_conv_fwd, &c, 5), 2.0 * n * 2, 0);
        report("conv1d_silu_bwd", "B4 T8192 C1792 K4 legacy", time_op(op_conv_bwd, &c, 5), 3.0 * n * 2, 0);
        unsetenv("HLAB_CONV_LEGACY");
        hk->free(hk, c.inp); hk->free(hk, c.out); hk->free(hk, c.w); hk->free(hk, c.b);
        hk->free(hk, c.dout); hk->free(hk, c.dinp); hk->free(hk, c.dw); hk->free(hk, c.db);
        gn_args g = {NULL};
        g.N = B * T, g.Di = 1536, g.G = 1;
        const size_t m = (size_t)g.N * g.Di;
        g.y = rand_dev(m, HK_BF16, 1.0), g.z = rand_dev(m, HK_BF16, 2.0), g.w = rand_dev(g.Di, HK_F32, 1.0);
        g.out = hk->alloc(hk, m * 2), g.rstd = hk->alloc(hk, (size_t)g.N * 4), g.dout = rand_dev(m, HK_BF16, 1.0);
        g.dy = hk->alloc(hk, m * 2), g.dz = hk->alloc(hk, m * 2), g.dw = rand_dev(g.Di, HK_F32, 1.0);
        report("gated_rmsnorm_fwd", "N32768 Di1536 G1", time_op(op_gn_fwd, &g, 5), 3.0 * m * 2, 0);
        report("gated_rmsnorm_bwd", "N32768 Di1536 G1", time_op(op_gn_bwd, &g, 5), 5.0 * m * 2, 0);
        setenv("HLAB_GN_LEGACY", "1", 1);
        report("gated_rmsnorm_fwd", "N32768 Di1536 G1 legacy", time_op(op_gn_fwd, &g, 5), 3.0 * m * 2, 0);
        report("gated_rmsnorm_bwd", "N32768 Di1536 G1 legacy", time_op(op_gn_bwd, &g, 5), 5.0 * m * 2, 0);
        unsetenv("HLAB_GN_LEGACY");
        void *ps[] = {g.y, g.z, g.w, g.out, g.rstd, g.dout, g.dy, g.dz, g.dw};
        for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++) hk->free(hk, ps[i]);
    }
    if (hk->check(hk, &err) != HLAB_OK) printf("backend error: %s\n", err.msg);
    hk->destroy(hk);
    return 0;
}
