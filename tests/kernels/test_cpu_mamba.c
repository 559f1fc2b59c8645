/* tests/kernels/test_cpu_mamba.c — the Mamba-2 ops around the scan: causal depthwise
 * conv1d + bias + SiLU, and the grouped gated RMSNorm.
 *   forward: cpu (fp32) and cpu-f64 against the direct formula written here in double;
 *   backward: cpu-f64 against central finite differences of L = Σ out ⊙ w (gradcheck.h).
 * Odd sizes, kernel width larger than T, G = 1 and G > 1.
 *
 * Conventions: random inputs; written outputs poisoned with NaN before each run; the
 * += parameter grads start from a random offset that is subtracted afterwards. The
 * CPU backend's memory is host memory, so host arrays are passed directly.
 */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "test.h"
#include "kernels/gradcheck.h"

static double sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }

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

static float *to_f32(const double *a, size_t n) {
    float *f = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) f[i] = a ? (float)a[i] : NAN;
    return f;
}

/* x lives inside ctx, which the loss reads; gradcheck.h perturbs it in place. */
static void check_grad(gc_loss_fn f, void *ctx, double *x, size_t n, const double *grad, const char *what) {
    gc_result r = gc_check(f, ctx, x, grad, n, GC_EPS, 0, NULL);
    GC_EXPECT(r, 1e-6, what);
}

/* ---- conv1d + SiLU ------------------------------------------------------------------ */

typedef struct {
    hk_backend *hk;
    int B, T, Cc, K;
    double *inp, *w, *b, *wout, *out;
} conv_problem;

static void conv_direct(const conv_problem *p, double *out) {
    for (int b = 0; b < p->B; b++)
        for (int t = 0; t < p->T; t++)
            for (int c = 0; c < p->Cc; c++) {
                double pre = p->b[c];
                for (int j = 0; j < p->K; j++) {
                    int s = t - (p->K - 1) + j;
                    if (s >= 0) pre += p->w[c * p->K + j] * p->inp[((size_t)b * p->T + s) * p->Cc + c];
                }
                out[((size_t)b * p->T + t) * p->Cc + c] = pre * sigmoid(pre);
            }
}

static double conv_loss(void *ctx, const double *x) {
    (void)x;
    conv_problem *p = ctx;
    const size_t n = (size_t)p->B * p->T * p->Cc;
    for (size_t i = 0; i < n; i++) p->out[i] = NAN;
    p->hk->conv1d_silu_fwd(p->hk, p->out, p->inp, p->w, p->b, p->B, p->T, p->Cc, p->K);
    return gc_dot(p->wout, p->out, n);
}

static void test_conv(hk_backend *hk64, hk_backend *hk32, int B, int T, int Cc, int K, uint64_t seed) {
    hlab_rng r;
    hlab_rng_seed(&r, seed);
    const size_t n = (size_t)B * T * Cc, nw = (size_t)Cc * K;
    conv_problem p = {.hk = hk64, .B = B, .T = T, .Cc = Cc, .K = K};
    p.inp = rand_array(&r, n, 1.0);
    p.w = rand_array(&r, nw, 1.0);
    p.b = rand_array(&r, Cc, 0.5);
    p.wout = rand_array(&r, n, 1.0);
    p.out = nan_array(n);
    double *ref = malloc(n * sizeof(double));
    conv_direct(&p, ref);
    char what[128];

    /* forward, f64 and f32 */
    conv_loss(&p, NULL);
    snprintf(what, sizeof what, "conv f64 fwd B=%d T=%d Cc=%d K=%d", B, T, Cc, K);
    CHECK_REL(p.out, (const double *)ref, n, 1e-13, what);
    float *inp32 = to_f32(p.inp, n), *w32 = to_f32(p.w, nw), *b32 = to_f32(p.b, Cc), *out32 = to_f32(NULL, n);
    hk32->conv1d_silu_fwd(hk32, out32, inp32, w32, b32, B, T, Cc, K);
    double *out32d = malloc(n * sizeof(double));
    for (size_t i = 0; i < n; i++) out32d[i] = out32[i];
    snprintf(what, sizeof what, "conv f32 fwd B=%d T=%d Cc=%d K=%d", B, T, Cc, K);
    CHECK_REL(out32d, (const double *)ref, n, 1e-6, what);

    /* backward, f64, against finite differences */
    double *dinp = nan_array(n), *dw = rand_array(&r, nw, 1.0), *db = rand_array(&r, Cc, 1.0);
    double *dw0 = malloc(nw * sizeof(double)), *db0 = malloc(Cc * sizeof(double));
    memcpy(dw0, dw, nw * sizeof(double));
    memcpy(db0, db, Cc * sizeof(double));
    hk64->conv1d_silu_bwd(hk64, dinp, dw, db, p.wout, p.inp, p.w, p.b, B, T, Cc, K);
    for (size_t i = 0; i < nw; i++) dw[i] -= dw0[i];
    for (int c = 0; c < Cc; c++) db[c] -= db0[c];
    snprintf(what, sizeof what, "conv dinp B=%d T=%d Cc=%d K=%d", B, T, Cc, K);
    check_grad(conv_loss, &p, p.inp, n, dinp, what);
    snprintf(what, sizeof what, "conv dw B=%d T=%d Cc=%d K=%d", B, T, Cc, K);
    check_grad(conv_loss, &p, p.w, nw, dw, what);
    snprintf(what, sizeof what, "conv db B=%d T=%d Cc=%d K=%d", B, T, Cc, K);
    check_grad(conv_loss, &p, p.b, Cc, db, what);

    free(p.inp), free(p.w), free(p.b), free(p.wout), free(p.out), free(ref);
    free(inp32), free(w32), free(b32), free(out32), free(out32d);
    free(dinp), free(dw), free(db), free(dw0), free(db0);
}

/* ---- grouped gated RMSNorm -------------------------------------------------------------- */

typedef struct {
    hk_backend *hk;
    int N, Di, G;
    float eps;
    double *y, *z, *w, *wout, *out, *rstd;
} gnorm_problem;

static void gnorm_direct(const gnorm_problem *p, double *out, double *rstd) {
    const int Dg = p->Di / p->G;
    for (int n = 0; n < p->N; n++)
        for (int g = 0; g < p->G; g++) {
            double ss = 0;
            for (int k = g * Dg; k < (g + 1) * Dg; k++) {
                const size_t i = (size_t)n * p->Di + k;
                const double gate = p->y[i] * p->z[i] * sigmoid(p->z[i]);
                ss += gate * gate;
            }
            const double rs = 1.0 / sqrt(ss / Dg + (double)p->eps);
            rstd[(size_t)n * p->G + g] = rs;
            for (int k = g * Dg; k < (g + 1) * Dg; k++) {
                const size_t i = (size_t)n * p->Di + k;
                out[i] = p->y[i] * p->z[i] * sigmoid(p->z[i]) * rs * p->w[k];
            }
        }
}

static double gnorm_loss(void *ctx, const double *x) {
    (void)x;
    gnorm_problem *p = ctx;
    const size_t n = (size_t)p->N * p->Di;
    for (size_t i = 0; i < n; i++) p->out[i] = NAN;
    p->hk->gated_rmsnorm_fwd(p->hk, p->out, p->rstd, p->y, p->z, p->w, p->N, p->Di, p->G, p->eps);
    return gc_dot(p->wout, p->out, n);
}

static void test_gnorm(hk_backend *hk64, hk_backend *hk32, int N, int Di, int G, uint64_t seed) {
    hlab_rng r;
    hlab_rng_seed(&r, seed);
    const size_t n = (size_t)N * Di, ng = (size_t)N * G;
    gnorm_problem p = {.hk = hk64, .N = N, .Di = Di, .G = G, .eps = 1e-5f};
    p.y = rand_array(&r, n, 1.0);
    p.z = rand_array(&r, n, 2.0);
    p.w = rand_array(&r, Di, 1.0);
    p.wout = rand_array(&r, n, 1.0);
    p.out = nan_array(n);
    p.rstd = nan_array(ng);
    double *ref = malloc(n * sizeof(double)), *ref_rstd = malloc(ng * sizeof(double));
    gnorm_direct(&p, ref, ref_rstd);
    char what[128];

    gnorm_loss(&p, NULL);
    snprintf(what, sizeof what, "gated norm f64 fwd N=%d Di=%d G=%d", N, Di, G);
    CHECK_REL(p.out, (const double *)ref, n, 1e-13, what);
    snprintf(what, sizeof what, "gated norm f64 rstd N=%d Di=%d G=%d", N, Di, G);
    CHECK_REL(p.rstd, (const double *)ref_rstd, ng, 1e-13, what);
    float *y32 = to_f32(p.y, n), *z32 = to_f32(p.z, n), *w32 = to_f32(p.w, Di), *out32 = to_f32(NULL, n);
    float *rstd32 = to_f32(NULL, ng);
    hk32->gated_rmsnorm_fwd(hk32, out32, rstd32, y32, z32, w32, N, Di, G, p.eps);
    double *out32d = malloc(n * sizeof(double));
    for (size_t i = 0; i < n; i++) out32d[i] = out32[i];
    snprintf(what, sizeof what, "gated norm f32 fwd N=%d Di=%d G=%d", N, Di, G);
    CHECK_REL(out32d, (const double *)ref, n, 1e-6, what);

    double *dy = nan_array(n), *dz = nan_array(n), *dw = rand_array(&r, Di, 1.0);
    double *dw0 = malloc(Di * sizeof(double));
    memcpy(dw0, dw, Di * sizeof(double));
    gnorm_loss(&p, NULL); /* rstd for bwd */
    hk64->gated_rmsnorm_bwd(hk64, dy, dz, dw, p.wout, p.y, p.z, p.w, p.rstd, N, Di, G);
    for (int k = 0; k < Di; k++) dw[k] -= dw0[k];
    snprintf(what, sizeof what, "gated norm dy N=%d Di=%d G=%d", N, Di, G);
    check_grad(gnorm_loss, &p, p.y, n, dy, what);
    snprintf(what, sizeof what, "gated norm dz N=%d Di=%d G=%d", N, Di, G);
    check_grad(gnorm_loss, &p, p.z, n, dz, what);
    snprintf(what, sizeof what, "gated norm dw N=%d Di=%d G=%d", N, Di, G);
    check_grad(gnorm_loss, &p, p.w, Di, dw, what);

    free(p.y), free(p.z), free(p.w), free(p.wout), free(p.out), free(p.rstd), free(ref), free(ref_rstd);
    free(y32), free(z32), free(w32), free(out32), free(rstd32), free(out32d);
    free(dy), free(dz), free(dw), free(dw0);
}

/* ---- threaded paths: big enough for OpenMP teams; 1 and 2 threads must agree bit for bit ---- */

typedef struct {
    float *conv_out, *conv_dinp, *conv_dw, *conv_db, *gn_out, *gn_rstd, *gn_dy, *gn_dz, *gn_dw;
} mamba_outputs;

enum { BIG_B = 2, BIG_T = 300, BIG_C = 64, BIG_K = 4, BIG_N = 600, BIG_DI = 64, BIG_G = 2 };

static void run_big(hk_backend *hk, const float *in, const float *w, const float *dout, mamba_outputs *o) {
    const size_t nc = (size_t)BIG_B * BIG_T * BIG_C, ng = (size_t)BIG_N * BIG_DI;
    o->conv_out = to_f32(NULL, nc), o->conv_dinp = to_f32(NULL, nc);
    o->conv_dw = calloc((size_t)BIG_C * BIG_K, sizeof(float)), o->conv_db = calloc(BIG_C, sizeof(float));
    o->gn_out = to_f32(NULL, ng), o->gn_rstd = to_f32(NULL, (size_t)BIG_N * BIG_G);
    o->gn_dy = to_f32(NULL, ng), o->gn_dz = to_f32(NULL, ng), o->gn_dw = calloc(BIG_DI, sizeof(float));
    hk->conv1d_silu_fwd(hk, o->conv_out, in, w, w + BIG_C * BIG_K, BIG_B, BIG_T, BIG_C, BIG_K);
    hk->conv1d_silu_bwd(hk, o->conv_dinp, o->conv_dw, o->conv_db, dout, in, w, w + BIG_C * BIG_K, BIG_B, BIG_T, BIG_C,
                        BIG_K);
    /* gated norm: y = in, z = dout (both [BIG_N, BIG_DI] views of the same sized buffers) */
    hk->gated_rmsnorm_fwd(hk, o->gn_out, o->gn_rstd, in, dout, w, BIG_N, BIG_DI, BIG_G, 1e-5f);
    hk->gated_rmsnorm_bwd(hk, o->gn_dy, o->gn_dz, o->gn_dw, in, in, dout, w, o->gn_rstd, BIG_N, BIG_DI, BIG_G);
}

static void free_big(mamba_outputs *o) {
    free(o->conv_out), free(o->conv_dinp), free(o->conv_dw), free(o->conv_db);
    free(o->gn_out), free(o->gn_rstd), free(o->gn_dy), free(o->gn_dz), free(o->gn_dw);
}

static void test_threads_agree(hk_backend *hk32) {
    _Static_assert((size_t)BIG_B * BIG_T * BIG_C == (size_t)BIG_N * BIG_DI, "conv and norm share the input buffers");
    hlab_rng r;
    hlab_rng_seed(&r, 77);
    const size_t n = (size_t)BIG_B * BIG_T * BIG_C;
    double *ind = rand_array(&r, n, 1.0), *wd = rand_array(&r, (size_t)BIG_C * (BIG_K + 1), 0.5);
    double *doutd = rand_array(&r, n, 2.0);
    float *in = to_f32(ind, n), *w = to_f32(wd, (size_t)BIG_C * (BIG_K + 1)), *dout = to_f32(doutd, n);
    mamba_outputs one, two;
    const int threads_before = omp_get_max_threads();
    omp_set_num_threads(1);
    run_big(hk32, in, w, dout, &one);
    omp_set_num_threads(2);
    run_big(hk32, in, w, dout, &two);
    omp_set_num_threads(threads_before);
#define SAME(field, count) \
    CHECK(memcmp(one.field, two.field, (count) * sizeof(float)) == 0, "%s differs between 1 and 2 threads", #field)
    SAME(conv_out, n);
    SAME(conv_dinp, n);
    SAME(conv_dw, (size_t)BIG_C * BIG_K);
    SAME(conv_db, (size_t)BIG_C);
    SAME(gn_out, n);
    SAME(gn_rstd, (size_t)BIG_N * BIG_G);
    SAME(gn_dy, n);
    SAME(gn_dz, n);
    SAME(gn_dw, (size_t)BIG_DI);
#undef SAME
    /* and the threaded forward is right: conv against the direct formula */
    conv_problem p = {.B = BIG_B, .T = BIG_T, .Cc = BIG_C, .K = BIG_K, .inp = ind, .w = wd, .b = wd + BIG_C * BIG_K};
    double *ref = malloc(n * sizeof(double)), *got = malloc(n * sizeof(double));
    conv_direct(&p, ref);
    for (size_t i = 0; i < n; i++) got[i] = two.conv_out[i];
    CHECK_REL(got, (const double *)ref, n, 1e-6, "conv f32 fwd, threaded size");
    free(ref), free(got), free(ind), free(wd), free(doutd), free(in), free(w), free(dout);
    free_big(&one);
    free_big(&two);
}

int main(void) {
    hlab_err err = {0};
    hk_backend *hk64 = hk_cpu_create(HK_F64, 2, &err);
    CHECK(hk64 != NULL, "hk_cpu_create(HK_F64): %s", err.msg);
    hk_backend *hk32 = hk_cpu_create(HK_F32, 2, &err);
    CHECK(hk32 != NULL, "hk_cpu_create(HK_F32): %s", err.msg);
    if (!hk64 || !hk32) {
        hk_destroy(hk64);
        hk_destroy(hk32);
        return test_summary();
    }
    test_conv(hk64, hk32, 2, 9, 7, 4, 1);
    test_conv(hk64, hk32, 3, 3, 5, 5, 2); /* kernel wider than the sequence */
    test_conv(hk64, hk32, 1, 6, 3, 1, 3); /* width 1: a pointwise affine + SiLU */
    test_gnorm(hk64, hk32, 5, 12, 3, 4);
    test_gnorm(hk64, hk32, 3, 7, 1, 5);
    test_gnorm(hk64, hk32, 4, 10, 5, 6); /* groups of two channels */
    test_threads_agree(hk32);
    CHECK(hk64->check(hk64, &err) == HLAB_OK, "ops failed: %s", err.msg);
    CHECK(hk32->check(hk32, &err) == HLAB_OK, "ops failed: %s", err.msg);

    /* bad dims: a sticky HLAB_EINVAL naming the op */
    float buf[16] = {0};
    hk32->gated_rmsnorm_fwd(hk32, buf, buf, buf, buf, buf, 1, 7, 2, 1e-5f);
    CHECK(hk32->check(hk32, &err) == HLAB_EINVAL && strstr(err.msg, "gated_rmsnorm_fwd"),
          "gated_rmsnorm_fwd with Di %% G != 0 should fail with HLAB_EINVAL: '%s'", err.msg);
    hk_destroy(hk64);
    hk_destroy(hk32);
    return test_summary();
}
