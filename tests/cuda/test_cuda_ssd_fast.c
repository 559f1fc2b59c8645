/* tests/cuda/test_cuda_ssd_fast.c — the tensor-core SSD scan (hk_cuda_ssd_fast_fwd/bwd,
 * kernels/cuda/ssd_fast.cu) against the fp32 CPU backend, in bf16 mode (tolerance 1e-2 by
 * relative norm error; NaN never passes), and against the SIMT CUDA kernels
 * (hk_cuda_ssd_fwd/bwd) at the benchmark shape.
 *
 * Parity: fresh random inputs drawn as in test_cuda_mixers.c (xbc, dt raw ~ U(−1, 1),
 * dt_bias ~ U(−0.5, 0.5), A_log ~ U(−1, 1), D ~ U(−1, 1); bf16-representable on both sides),
 * outputs NaN-poisoned, parameter grads pre-filled with random values (+= checked).
 * Shapes: T a multiple of the chunk and not (T = 300, chunk 64), chunk shorter and longer
 * than the 64-row tile, G = 1 and 2, N = 64 and 128, P = 64, B = 2, H = 4 (and one B·H·T not a
 * multiple of 4, which offsets the kernels' float4 scratch; one of 47 chunks with 6 heads per group);
 * an unsupported
 * P must record HLAB_EUNSUPPORTED.
 *
 * Forward parity: the fast forward (decay_w · state_local · state_scan · out_group) on every
 * shape with chunks ≤ 256, the legacy kernels (the automatic path for longer chunks) on the
 * chunk-512 shape.
 * Bench (HLAB_CUDA_BENCH=1): H 24, P 64, N 128, G 1, chunk 256 at B 4 T 8192 (the M config) and
 * B 16 T 2048: fast vs SIMT fwd and bwd, CUDA events on the backend
 * stream, 2 warm-up runs, median of 10,
 * with the floor (bytes / 3.0 TB/s, FLOPs / 780 TFLOP/s, the larger) and the relative
 * difference between the two implementations' outputs (they compute the same function); then each
 * forward kernel timed on its own (hk_cuda_ssd_fast_fwd_kernel_ms: CUDA events between the kernels,
 * median of 20), each with its own floor (its bytes, each touched once,
 * / 3.0 TB/s; the FLOPs it executes / 780 TFLOP/s).
 * Backward parity: v5 on every shape with chunks ≤ 256, v1 (the automatic path for longer chunks)
 * on the chunk-512 shape; bench: the backward whole (row "bwd") and every v5 kernel on its own, with
 * its floor.
 * Skips (exit 77) where no CUDA device is usable or the build has no CUDA.
 */
#include <stdlib.h>
#include <string.h>

#include "parity.h"

#ifdef HLAB_HAVE_CUDA
#include "kernels/cuda/cuda_ops.h"

/* test-only entry of ssd_fast.cu: the forward's kernels timed one by one (median ms each into ms[];
 * returns how many kernels, 0 on failure) */
int hk_cuda_ssd_fast_fwd_kernel_ms(hk_backend *hk, float *ms, int max_k, int reps, void *y, void *states,
                                   const void *xbc, const void *dt, const void *dt_bias, const void *A_log,
                                   const void *Dskip, hk_ssd_dims d);

/* test-only entry of ssd_fast_bwd.cu: the backward (v5; v1 for chunks > 256) run `reps` times
 * with an event after every kernel; per kernel its name, median ms and the model's DRAM bytes and
 * FLOPs; returns the kernel count (0: nothing ran) */
int hk_cuda_ssd_fast_bwd_profile(hk_backend *hk, int reps, int max, const char **names, double *ms,
                                 double *bytes, double *flops, void *dxbc, void *ddt, void *ddt_bias, void *dA_log,
                                 void *dDskip, const void *dy, const void *states, const void *xbc, const void *dt,
                                 const void *dt_bias, const void *A_log, const void *Dskip, hk_ssd_dims d);

#define P0(buf) ((buf).p[0])
#define P1(buf) ((buf).p[1])

static void t_fast(par_ctx *x, hk_ssd_dims d) {
    const size_t N = (size_t)d.B * d.T, W = (size_t)d.H * d.P + 2 * (size_t)d.G * d.N, HP = (size_t)d.H * d.P;
    const int nc = (d.T + d.chunk - 1) / d.chunk;
    const size_t nst = (size_t)d.B * nc * d.H * d.P * d.N;
    char tag[96], what[160];
    snprintf(tag, sizeof tag, "T%d H%d P%d G%d N%d Q%d", d.T, d.H, d.P, d.G, d.N, d.chunk);
    buf2 xbc = par_rand(x, N * W, KA, 1.0), dt = par_rand(x, N * d.H, KA, 1.0);
    buf2 dt_bias = par_rand(x, (size_t)d.H, KR, 0.5), A_log = par_rand_pos(x, (size_t)d.H, KR, -1.0, 1.0);
    buf2 Dskip = par_rand(x, (size_t)d.H, KR, 1.0);
    buf2 y = par_poison(x, N * HP, KA), states = par_poison(x, nst, KR);
    hk_backend *cpu = x->be[0], *gpu = x->be[1];
    cpu->ssd_fwd(cpu, P0(y), P0(states), P0(xbc), P0(dt), P0(dt_bias), P0(A_log), P0(Dskip), d);
    /* the fast forward; its states feed the backward below */
    {
        const char *fwd_name = d.chunk > 256 ? "legacy" : "default"; /* the path that runs */
        hk_cuda_ssd_fast_fwd(gpu, P1(y), P1(states), P1(xbc), P1(dt), P1(dt_bias), P1(A_log), P1(Dskip), d);
        if (par_ran(x, "ssd_fast_fwd")) {
            snprintf(what, sizeof what, "fast fwd [%s] y %s", fwd_name, tag);
            par_cmp(x, y, what);
            snprintf(what, sizeof what, "fast fwd [%s] states %s", fwd_name, tag);
            par_cmp(x, states, what);
        }
    }
    /* the backward (ssd_fast_bwd.cu): v5, or v1 where the chunk is over 256 (its only path) */
    const char *bwd_name = d.chunk > 256 ? "v1" : "v5";
    buf2 dy = par_rand(x, N * HP, KA, 1.0);
    {
        buf2 dxbc = par_poison(x, N * W, KA), ddt = par_poison(x, N * d.H, KA);
        buf2 ddt_bias = par_rand(x, (size_t)d.H, KR, 1.0), dA_log = par_rand(x, (size_t)d.H, KR, 1.0);
        buf2 dDskip = par_rand(x, (size_t)d.H, KR, 1.0);
        cpu->ssd_bwd(cpu, P0(dxbc), P0(ddt), P0(ddt_bias), P0(dA_log), P0(dDskip), P0(dy), P0(states), P0(xbc),
                     P0(dt), P0(dt_bias), P0(A_log), P0(Dskip), d);
        hk_cuda_ssd_fast_bwd(gpu, P1(dxbc), P1(ddt), P1(ddt_bias), P1(dA_log), P1(dDskip), P1(dy), P1(states),
                             P1(xbc), P1(dt), P1(dt_bias), P1(A_log), P1(Dskip), d);
        if (par_ran(x, "ssd_fast_bwd")) {
            snprintf(what, sizeof what, "fast bwd [%s] dxbc %s", bwd_name, tag);
            par_cmp(x, dxbc, what);
            snprintf(what, sizeof what, "fast bwd [%s] ddt %s", bwd_name, tag);
            par_cmp(x, ddt, what);
            snprintf(what, sizeof what, "fast bwd [%s] ddt_bias %s", bwd_name, tag);
            par_cmp(x, ddt_bias, what);
            snprintf(what, sizeof what, "fast bwd [%s] dA_log %s", bwd_name, tag);
            par_cmp(x, dA_log, what);
            snprintf(what, sizeof what, "fast bwd [%s] dDskip %s", bwd_name, tag);
            par_cmp(x, dDskip, what);
        }
        par_free(x, &dxbc); par_free(x, &ddt); par_free(x, &ddt_bias); par_free(x, &dA_log); par_free(x, &dDskip);
    }
    par_free(x, &xbc); par_free(x, &dt); par_free(x, &dt_bias); par_free(x, &A_log); par_free(x, &Dskip);
    par_free(x, &y); par_free(x, &states); par_free(x, &dy);
    par_recover(x);
}

static void t_fast_unsupported(par_ctx *x) {
    hk_ssd_dims d = {1, 16, 2, 32, 1, 64, 16}; /* P = 32: not a tensor-core shape */
    hk_backend *hk = x->be[1];
    const size_t W = 2 * 32 + 2 * 64;
    void *xbc = hk->alloc(hk, 16 * W * 2), *y = hk->alloc(hk, 16 * 64 * 2), *st = hk->alloc(hk, 2 * 32 * 64 * 4);
    void *dt = hk->alloc(hk, 16 * 2 * 2), *par = hk->alloc(hk, 2 * 4);
    hk_cuda_ssd_fast_fwd(hk, y, st, xbc, dt, par, par, par, d);
    hlab_err err = {0};
    const int rc = hk->sync(hk, &err);
    printf("unsupported ssd_fast P=32: rc=%d (%s)\n", rc, err.msg);
    CHECK(rc == HLAB_EUNSUPPORTED, "ssd_fast P=32: expected HLAB_EUNSUPPORTED, got %d (%s)", rc, err.msg);
    hk->free(hk, xbc); hk->free(hk, y); hk->free(hk, st); hk->free(hk, dt); hk->free(hk, par);
    x->gpu_failed = 1;
    par_recover(x);
}

/* ---- bench ----------------------------------------------------------------------------------- */

typedef struct {
    hk_backend *hk;
    hk_ssd_dims d;
    void *xbc, *dt, *dt_bias, *A_log, *Dskip, *dy;
    void *y[2], *states[2], *dxbc[2], *ddt[2], *ddt_bias, *dA_log, *dDskip;
} bench_ctx;

static void *bench_rand(hk_backend *hk, hlab_rng *rng, size_t n, hk_dtype t, double lo, double hi) {
    float *h = malloc(n * sizeof(float));
    void *d = hk->alloc(hk, n * par_size(t));
    if (!h || !d) {
        free(h);
        return d;
    }
    for (size_t i = 0; i < n; i++) h[i] = (float)(lo + (hi - lo) * hlab_rng_uniform(rng));
    hk->from_host(hk, d, t, h, HK_F32, n);
    free(h);
    return d;
}

/* which: 0 fast fwd, 1 SIMT fwd, 2 fast bwd, 3 SIMT bwd (the SIMT kernels are the backend's vtable
 * kernels of ssd.cu, reached through hk_cuda_ssd_simt_fwd/bwd); k picks the output set */
static void bench_op(bench_ctx *c, int which) {
    hk_backend *hk = c->hk;
    const int k = which & 1;
    if (which == 0)
        hk_cuda_ssd_fast_fwd(hk, c->y[0], c->states[0], c->xbc, c->dt, c->dt_bias, c->A_log, c->Dskip, c->d);
    else if (which == 1)
        hk_cuda_ssd_simt_fwd(hk, c->y[1], c->states[1], c->xbc, c->dt, c->dt_bias, c->A_log, c->Dskip, c->d);
    else if (which == 2)
        hk_cuda_ssd_fast_bwd(hk, c->dxbc[k], c->ddt[k], c->ddt_bias, c->dA_log, c->dDskip, c->dy, c->states[1], c->xbc,
                             c->dt, c->dt_bias, c->A_log, c->Dskip, c->d);
    else
        hk_cuda_ssd_simt_bwd(hk, c->dxbc[k], c->ddt[k], c->ddt_bias, c->dA_log, c->dDskip, c->dy, c->states[1],
                             c->xbc, c->dt, c->dt_bias, c->A_log, c->Dskip, c->d);
}

static int cmp_float(const void *a, const void *b) {
    const float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

static double bench_time_ms(bench_ctx *c, int which) {
    cudaStream_t s = hk_cuda_ssd_fast_stream(c->hk);
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    bench_op(c, which);
    bench_op(c, which);
    float t[10];
    for (int r = 0; r < 10; r++) {
        cudaEventRecord(e0, s);
        bench_op(c, which);
        cudaEventRecord(e1, s);
        cudaEventSynchronize(e1);
        cudaEventElapsedTime(&t[r], e0, e1);
    }
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    hlab_err err = {0};
    if (c->hk->sync(c->hk, &err) != HLAB_OK) {
        CHECK(0, "bench op %d: %s", which, err.msg);
        return NAN;
    }
    qsort(t, 10, sizeof t[0], cmp_float);
    return 0.5 * (t[4] + t[5]);
}

static double bench_rel(hk_backend *hk, const void *a, const void *b, hk_dtype t, size_t n) {
    float *ha = malloc(n * sizeof(float)), *hb = malloc(n * sizeof(float));
    hk->to_host(hk, ha, HK_F32, a, t, n);
    hk->to_host(hk, hb, HK_F32, b, t, n);
    const double e = test_rel_err_f32(ha, hb, n);
    free(ha);
    free(hb);
    return e;
}

/* Each forward kernel on its own, with its floor. Bytes: what the kernel must touch, each once
 * (scratch Δ, cum, w fp32; states fp32, their bf16 copy, fp32 local states; state_local skips the
 * last chunk: fraction f = (nc − 1) / nc); FLOPs: the mma work it executes (64-row tiles:
 * qt(qt+1)/2 tile pairs on or below the diagonal per chunk). */
static void bench_fwd_kernels(bench_ctx *c) {
    const hk_ssd_dims d = c->d;
    const double tok = (double)d.B * d.T, bht = tok * d.H, H = d.H, P = d.P, N = d.N, G = d.G, Q = d.chunk;
    const int nc = (d.T + d.chunk - 1) / d.chunk, qt = (d.chunk + 63) / 64;
    const double nst = (double)d.B * nc * d.H * d.P * d.N, chunks = (double)d.B * nc, pairs = qt * (qt + 1) / 2.0;
    const double x = tok * H * P * 2, bc = tok * G * N * 2, dtb = tok * H * 2, y = tok * H * P * 2;
    const double state_flop = 2 * tok * H * P * N;
    const double inter = 2 * Q * P * N, tile = 2.0 * 64 * 64;
    /* [path][kernel]: bytes, flops; path 0 the fast forward, 1 legacy (chunks > 256) */
    const char *names[2][4] = {{"decay_w", "state_local", "state_scan", "out_group"},
                               {"decay", "chunk_state", "state_pass", "chunk_out"}};
    const double f = (nc - 1.0) / nc, og_flop = chunks * (H * (inter + pairs * tile * P) + G * pairs * tile * N);
    const double og_bytes = x + 2 * bc + nst * 2 + 2 * bht * 4 + y;
    const double bytes[2][4] = {
        {dtb + 3 * bht * 4, f * (x + bc + bht * 4 + nst * 4), f * nst * 4 + nst * 6 + bht * 4 / Q, og_bytes},
        {dtb + 2 * bht * 4, x + bc + 2 * bht * 4 + nst * 4, 2 * nst * 4 + bht * 4 / Q,
         x + 2 * bc + nst * 4 + 2 * bht * 4 + y}};
    const double flops[2][4] = {{0, f * state_flop, 0, og_flop},
                                {0, state_flop, 0, chunks * H * (inter + pairs * tile * (N + P))}};
    const double bw = 3.0e12, rate = 780e12;
    printf("SSD fwd kernels B%d T%d H%d P%d N%d G%d Q%d, bf16, each kernel alone, median of 20 (CUDA events)\n", d.B,
           d.T, d.H, d.P, d.N, d.G, d.chunk);
    printf("| path | kernel | ms | floor ms (mem / flop) | x floor | GB/s | TFLOP/s |\n");
    const int kind = d.chunk > 256; /* the path that runs */
    const char *path = kind ? "legacy" : "fwd";
    float ms[4] = {0};
    const int nk = hk_cuda_ssd_fast_fwd_kernel_ms(c->hk, ms, 4, 20, c->y[0], c->states[0], c->xbc, c->dt, c->dt_bias,
                                                  c->A_log, c->Dskip, d);
    hlab_err err = {0};
    if (nk == 0 || c->hk->check(c->hk, &err) != HLAB_OK) {
        CHECK(0, "fwd kernel timing: %s", err.msg);
        return;
    }
    double total = 0, tfloor = 0;
    for (int k = 0; k < nk; k++) {
        const double mem = 1e3 * bytes[kind][k] / bw, fl = 1e3 * flops[kind][k] / rate, fl0 = mem > fl ? mem : fl;
        total += ms[k], tfloor += fl0;
        printf("| %s | %s | %.3f | %.3f (%.3f / %.3f) | %.1f | %.0f | %.0f |\n", path, names[kind][k], ms[k], fl0, mem,
               fl, ms[k] / fl0, bytes[kind][k] / (ms[k] * 1e6), flops[kind][k] / (ms[k] * 1e9));
    }
    printf("| %s | sum | %.3f | %.3f | %.1f | | |\n", path, total, tfloor, total / tfloor);
}

/* Every kernel of the backward (v5 at the bench shapes) on its own (hk_cuda_ssd_fast_bwd_profile: CUDA
 * events between the kernels, median of 20), each with its floor (the model's DRAM bytes / 3.0 TB/s,
 * its FLOPs / 780 TFLOP/s). */
static void bench_bwd_kernels(bench_ctx *c) {
    {
        const int v = c->d.chunk > 256 ? 1 : 5; /* the version that runs */
        const char *names[16];
        double ms[16], by[16], fl[16], tms = 0, tby = 0, tfl = 0, tfloor = 0;
        const int n = hk_cuda_ssd_fast_bwd_profile(c->hk, 20, 16, names, ms, by, fl, c->dxbc[0], c->ddt[0],
                                                   c->ddt_bias, c->dA_log, c->dDskip, c->dy, c->states[1], c->xbc,
                                                   c->dt, c->dt_bias, c->A_log, c->Dskip, c->d);
        hlab_err err = {0};
        CHECK(n > 0 && c->hk->sync(c->hk, &err) == HLAB_OK, "bwd v%d profile: %s", v, err.msg);
        printf("| bwd v%d kernel | ms | MB | GFLOP | floor ms | x floor |\n", v);
        for (int k = 0; k < n; k++) {
            const char *nm = names[k] + (strncmp(names[k], "ssd_fast_bwd ", 13) == 0 ? 13 : 0);
            const double fm = 1e3 * (by[k] / 3.0e12 > fl[k] / 780e12 ? by[k] / 3.0e12 : fl[k] / 780e12);
            printf("| v%d %-18s | %7.3f | %8.1f | %7.2f | %6.3f | %6.1f |\n", v, nm, ms[k], by[k] / 1e6, fl[k] / 1e9, fm,
                   fm > 0 ? ms[k] / fm : 0.0);
            tms += ms[k], tby += by[k], tfl += fl[k], tfloor += fm;
        }
        printf("| v%d sum                | %7.3f | %8.1f | %7.2f | %6.3f | %6.1f |\n", v, tms, tby / 1e6, tfl / 1e9, tfloor,
               tfloor > 0 ? tms / tfloor : 0.0);
    }
}

static void bench(hk_ssd_dims dims) {
    hlab_err err = {0};
    bench_ctx c = {0};
    c.hk = hk_cuda_create(0, HK_BF16, &err);
    if (!c.hk) {
        CHECK(0, "cuda backend: %s", err.msg);
        return;
    }
    hk_backend *hk = c.hk;
    hlab_rng rng;
    hlab_rng_seed(&rng, 99);
    c.d = dims;
    const hk_ssd_dims d = c.d;
    const size_t N = (size_t)d.B * d.T, W = (size_t)d.H * d.P + 2 * (size_t)d.G * d.N, HP = (size_t)d.H * d.P;
    const int nc = (d.T + d.chunk - 1) / d.chunk;
    const size_t nst = (size_t)d.B * nc * d.H * d.P * d.N;
    c.xbc = bench_rand(hk, &rng, N * W, HK_BF16, -1, 1);
    c.dt = bench_rand(hk, &rng, N * d.H, HK_BF16, -1, 1);
    c.dy = bench_rand(hk, &rng, N * HP, HK_BF16, -1, 1);
    c.dt_bias = bench_rand(hk, &rng, (size_t)d.H, HK_F32, -0.5, 0.5);
    c.A_log = bench_rand(hk, &rng, (size_t)d.H, HK_F32, -1, 1);
    c.Dskip = bench_rand(hk, &rng, (size_t)d.H, HK_F32, -1, 1);
    c.ddt_bias = bench_rand(hk, &rng, (size_t)d.H, HK_F32, -1, 1);
    c.dA_log = bench_rand(hk, &rng, (size_t)d.H, HK_F32, -1, 1);
    c.dDskip = bench_rand(hk, &rng, (size_t)d.H, HK_F32, -1, 1);
    for (int k = 0; k < 2; k++) {
        c.y[k] = hk->alloc(hk, N * HP * 2);
        c.states[k] = hk->alloc(hk, nst * 4);
        c.dxbc[k] = hk->alloc(hk, N * W * 2);
        c.ddt[k] = hk->alloc(hk, N * d.H * 2);
    }
    if (hk->check(hk, &err) != HLAB_OK) {
        CHECK(0, "bench alloc: %s", err.msg);
        hk_destroy(hk);
        return;
    }
    /* floors: each input read once, each output written once (states R written by fwd, read by bwd);
     * FLOPs of kernels/cpu/ssd.c's chunked form (C·Bᵀ once per group) */
    const double Q = d.chunk, Hh = d.H, Pp = d.P, Nn = d.N, Gg = d.G, tok = (double)N;
    const double fwd_flop = tok * (2 * Gg * Q * Nn + 2 * Hh * (Q * Pp + 2 * Pp * Nn));
    const double bwd_flop = tok * (6 * Gg * Q * Nn + 4 * Hh * Q * Pp + 8 * Hh * Pp * Nn);
    const double fwd_bytes = tok * (W + d.H + HP) * 2 + (double)nst * 4;
    const double bwd_bytes = tok * (HP + W + d.H) * 2 + (double)nst * 4 + tok * (W + d.H) * 2;
    const double bw = 3.0e12, rate = 780e12;
    const double fwd_floor = 1e3 * (fwd_bytes / bw > fwd_flop / rate ? fwd_bytes / bw : fwd_flop / rate);
    const double bwd_floor = 1e3 * (bwd_bytes / bw > bwd_flop / rate ? bwd_bytes / bw : bwd_flop / rate);
    double t[4];
    for (int w = 0; w < 4; w++) t[w] = bench_time_ms(&c, w);
    /* the last runs of each: fast fwd wrote y[0], states[0]; SIMT y[1], states[1]; bwd (both from states[1]):
     * fast dxbc[0], ddt[0], SIMT dxbc[1], ddt[1] */
    const double ey = bench_rel(hk, c.y[0], c.y[1], HK_BF16, N * HP);
    const double es = bench_rel(hk, c.states[0], c.states[1], HK_F32, nst);
    const double ex = bench_rel(hk, c.dxbc[0], c.dxbc[1], HK_BF16, N * W);
    const double et = bench_rel(hk, c.ddt[0], c.ddt[1], HK_BF16, N * d.H);
    printf("fast vs SIMT at the bench shape: y %.3e states %.3e dxbc %.3e ddt %.3e\n", ey, es, ex, et);
    CHECK(ey <= 1e-2 && es <= 1e-2 && ex <= 1e-2 && et <= 1e-2, "fast vs SIMT differ at the bench shape");
    printf("SSD B%d T%d H%d P%d N%d G%d Q%d, bf16, median of 10 (CUDA events)\n", d.B, d.T, d.H, d.P, d.N, d.G,
           d.chunk);
    printf("| op  | floor ms (mem / flop)   | SIMT ms | fast ms | fast x floor | speed-up |\n");
    printf("| fwd | %.3f (%.3f / %.3f) | %7.3f | %7.3f | %6.1f | %6.1f |\n", fwd_floor, 1e3 * fwd_bytes / bw,
           1e3 * fwd_flop / rate, t[1], t[0], t[0] / fwd_floor, t[1] / t[0]);
    printf("| bwd | %.3f (%.3f / %.3f) | %7.3f | %7.3f | %6.1f | %6.1f |\n", bwd_floor, 1e3 * bwd_bytes / bw,
           1e3 * bwd_flop / rate, t[3], t[2], t[2] / bwd_floor, t[3] / t[2]);
    bench_fwd_kernels(&c);
    bench_bwd_kernels(&c);
    for (int k = 0; k < 2; k++) {
        hk->free(hk, c.y[k]); hk->free(hk, c.states[k]); hk->free(hk, c.dxbc[k]); hk->free(hk, c.ddt[k]);
    }
    hk->free(hk, c.xbc); hk->free(hk, c.dt); hk->free(hk, c.dy); hk->free(hk, c.dt_bias); hk->free(hk, c.A_log);
    hk->free(hk, c.Dskip); hk->free(hk, c.ddt_bias); hk->free(hk, c.dA_log); hk->free(hk, c.dDskip);
    hk_destroy(hk);
}
#endif

int main(void) {
#ifndef HLAB_HAVE_CUDA
    test_skip("no CUDA device (built without CUDA)");
#else
    if (hk_cuda_available() <= 0) test_skip("no CUDA device");
    par_ctx ctx, *x = &ctx;
    if (!par_open(x, HK_BF16, 5150)) return 1;
    t_fast(x, (hk_ssd_dims){2, 256, 4, 64, 1, 64, 64});   /* T a multiple of the chunk */
    t_fast(x, (hk_ssd_dims){2, 300, 4, 64, 1, 64, 64});   /* a short last chunk */
    t_fast(x, (hk_ssd_dims){2, 300, 4, 64, 2, 128, 64});  /* G = 2, N = 128 */
    t_fast(x, (hk_ssd_dims){2, 300, 4, 64, 1, 128, 256}); /* several row tiles per chunk, T < 2 chunks */
    t_fast(x, (hk_ssd_dims){2, 520, 4, 64, 2, 64, 128});  /* 2 tiles per chunk, ragged last chunk */
    t_fast(x, (hk_ssd_dims){2, 100, 4, 64, 2, 128, 48});  /* chunk shorter than the tile */
    t_fast(x, (hk_ssd_dims){1, 301, 2, 64, 1, 64, 64});   /* B·H·T not a multiple of 4 (scratch alignment) */
    t_fast(x, (hk_ssd_dims){2, 3000, 12, 64, 2, 64, 64}); /* 47 chunks (a long state pass), 6 heads per group */
    t_fast(x, (hk_ssd_dims){1, 600, 2, 64, 1, 64, 512});  /* chunk > 256: the v1 backward, ragged last chunk */
    t_fast_unsupported(x);
    par_close(x);
    const char *b = getenv("HLAB_CUDA_BENCH");
    if (b && strcmp(b, "1") == 0) {
        bench((hk_ssd_dims){4, 8192, 24, 64, 1, 128, 256}); /* the M config */
        bench((hk_ssd_dims){16, 2048, 24, 64, 1, 128, 256}); /* the bench config's B, T */
    }
    return test_summary();
#endif
}
