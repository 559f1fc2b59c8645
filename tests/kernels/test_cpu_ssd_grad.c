/* tests/kernels/test_cpu_ssd_grad.c — ssd_bwd (chunked) and ssd_sequential_bwd against
 * central finite differences of L = Σ y ⊙ w in float64 (cpu-f64), for every input:
 * x, B, C (inside xbc), raw dt, dt_bias, A_log, Dskip. Odd sizes, T not a multiple
 * of the chunk, G = 1 and G = 2.
 *
 * Conventions: random inputs with moderate decays; written grads poisoned with NaN;
 * the finite differences come from tests/kernels/gradcheck.h;
 * the += parameter grads start from zero here (test_cpu_ssd.c checks the += offset).
 * The CPU backend's memory is host memory, so host arrays are passed directly.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "test.h"
#include "kernels/gradcheck.h"

/* The sequential reference ops of cpu-f64 (kernels/cpu/cpu.h declares them per build). */
void hk_cpu64_ssd_sequential_fwd(hk_backend *hk, void *y, void *states, const void *xbc, const void *dt,
                                 const void *dt_bias, const void *A_log, const void *Dskip, hk_ssd_dims d);
void hk_cpu64_ssd_sequential_bwd(hk_backend *hk, void *dxbc, void *ddt, void *ddt_bias, void *dA_log, void *dDskip,
                                 const void *dy, const void *states, const void *xbc, const void *dt,
                                 const void *dt_bias, const void *A_log, const void *Dskip, hk_ssd_dims d);

typedef struct {
    hk_backend *hk;
    int chunked;
    hk_ssd_dims d;
    size_t nxbc, ny, ndt;
    double *xbc, *dt, *dt_bias, *A_log, *Dskip, *w; /* w: the loss weights = dy */
    double *y, *states;
} ssd_problem;

static double loss(ssd_problem *p) {
    for (size_t i = 0; i < p->ny; i++) p->y[i] = NAN;
    if (p->chunked)
        p->hk->ssd_fwd(p->hk, p->y, p->states, p->xbc, p->dt, p->dt_bias, p->A_log, p->Dskip, p->d);
    else
        hk_cpu64_ssd_sequential_fwd(p->hk, p->y, NULL, p->xbc, p->dt, p->dt_bias, p->A_log, p->Dskip, p->d);
    double l = 0;
    for (size_t i = 0; i < p->ny; i++) l += p->y[i] * p->w[i];
    return l;
}

/* gradcheck.h's callback: the arrays being perturbed live in the problem itself. */
static double ssd_loss(void *user, const double *x) {
    (void)x;
    return loss(user);
}

static void fd_compare(ssd_problem *p, double *x, size_t n, const double *grad, const char *what) {
    char label[160];
    snprintf(label, sizeof label, "%s T=%d Q=%d G=%d %s", p->chunked ? "chunked" : "sequential", p->d.T, p->d.chunk,
             p->d.G, what);
    gc_result r = gc_check(ssd_loss, p, x, grad, n, GC_EPS, 0, NULL);
    GC_EXPECT(r, 1e-6, label);
}

static double *rand_array(hlab_rng *r, size_t n, double scale) {
    double *a = malloc(n * sizeof(double));
    test_fill_f64(r, a, n, scale);
    return a;
}

static double *nan_array(size_t n) {
    double *a = malloc(n * sizeof(double));
    for (size_t i = 0; i < n; i++) a[i] = NAN;
    return a;
}

static void check_case(hk_backend *hk, int chunked, hk_ssd_dims d, uint64_t seed) {
    hlab_rng r;
    hlab_rng_seed(&r, seed);
    ssd_problem p = {.hk = hk, .chunked = chunked, .d = d};
    p.nxbc = (size_t)d.B * d.T * ((size_t)d.H * d.P + 2 * (size_t)d.G * d.N);
    p.ny = (size_t)d.B * d.T * d.H * d.P;
    p.ndt = (size_t)d.B * d.T * d.H;
    p.xbc = rand_array(&r, p.nxbc, 1.0);
    p.dt = rand_array(&r, p.ndt, 1.0);
    p.w = rand_array(&r, p.ny, 1.0);
    p.Dskip = rand_array(&r, d.H, 1.0);
    p.dt_bias = malloc(d.H * sizeof(double));
    p.A_log = malloc(d.H * sizeof(double));
    for (int h = 0; h < d.H; h++) {
        p.dt_bias[h] = -1.0 + hlab_rng_uniform(&r);
        p.A_log[h] = log(0.05 + 0.5 * hlab_rng_uniform(&r));
    }
    p.y = nan_array(p.ny);
    p.states = nan_array((size_t)d.B * ((d.T + d.chunk - 1) / d.chunk) * d.H * d.P * d.N);

    double *dxbc = nan_array(p.nxbc), *ddt = nan_array(p.ndt);
    double *ddt_bias = calloc(d.H, sizeof(double)), *dA_log = calloc(d.H, sizeof(double));
    double *dDskip = calloc(d.H, sizeof(double));
    loss(&p); /* fills states for the chunked bwd */
    if (chunked)
        hk->ssd_bwd(hk, dxbc, ddt, ddt_bias, dA_log, dDskip, p.w, p.states, p.xbc, p.dt, p.dt_bias, p.A_log, p.Dskip,
                    d);
    else
        hk_cpu64_ssd_sequential_bwd(hk, dxbc, ddt, ddt_bias, dA_log, dDskip, p.w, NULL, p.xbc, p.dt, p.dt_bias,
                                    p.A_log, p.Dskip, d);
    hlab_err err = {0};
    CHECK(hk->check(hk, &err) == HLAB_OK, "ssd ops failed: %s", err.msg);

    fd_compare(&p, p.xbc, p.nxbc, dxbc, "dxbc");
    fd_compare(&p, p.dt, p.ndt, ddt, "ddt");
    fd_compare(&p, p.dt_bias, d.H, ddt_bias, "ddt_bias");
    fd_compare(&p, p.A_log, d.H, dA_log, "dA_log");
    fd_compare(&p, p.Dskip, d.H, dDskip, "dDskip");

    double *bufs[] = {p.xbc, p.dt, p.w, p.Dskip, p.dt_bias, p.A_log, p.y, p.states,
                      dxbc, ddt, ddt_bias, dA_log, dDskip};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
}

int main(void) {
    hlab_err err = {0};
    hk_backend *hk = hk_cpu_create(HK_F64, 2, &err);
    if (!hk) {
        CHECK(0, "hk_cpu_create(HK_F64): %s", err.msg);
        return test_summary();
    }
    const hk_ssd_dims cases[] = {
        {.B = 2, .T = 11, .H = 4, .P = 3, .G = 2, .N = 5, .chunk = 4}, /* T not a multiple of Q */
        {.B = 1, .T = 9, .H = 3, .P = 5, .G = 1, .N = 3, .chunk = 3},  /* Q divides T */
        {.B = 1, .T = 7, .H = 2, .P = 3, .G = 1, .N = 4, .chunk = 16}, /* one partial chunk */
    };
    uint64_t seed = 11;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        check_case(hk, 1, cases[i], seed++);
        check_case(hk, 0, cases[i], seed++);
    }
    /* and a few shapes drawn at random (seeded): odd sizes, groups dividing the heads */
    hlab_rng r;
    hlab_rng_seed(&r, 2024);
    for (int k = 0; k < 3; k++) {
        hk_ssd_dims d = {.B = 1 + (int)hlab_rng_below(&r, 2), .T = 5 + (int)hlab_rng_below(&r, 9),
                         .P = 1 + 2 * (int)hlab_rng_below(&r, 3), .N = 1 + 2 * (int)hlab_rng_below(&r, 3),
                         .chunk = 2 + (int)hlab_rng_below(&r, 6)};
        d.G = 1 + (int)hlab_rng_below(&r, 2);
        d.H = d.G * (1 + (int)hlab_rng_below(&r, 3));
        check_case(hk, 1, d, seed++);
    }
    hk_destroy(hk);
    return test_summary();
}
