/* tests/kernels/test_cpu_moe_grad.c — hk->moe_bwd against central finite
 * differences of L = Σ dout·out + daux·aux on the cpu-f64 backend, for every
 * input and parameter gradient (inp, w_router, w13, w2, ws13, ws2), top-k 1 and
 * 2, renorm on and off, with and without a shared expert. A second pass with
 * dout = 0 isolates the aux-loss path (router and input grads only).
 *
 * The routing must not flip under a perturbation: inputs are redrawn until every
 * token's k-th and (k+1)-th router logits differ by a margin far larger than any
 * perturbation can move them, and the test asserts that margin.
 *
 * Conventions: inputs are random; dinp is poisoned with NaN; the accumulated (+=)
 * parameter grads start from a random offset that is subtracted afterwards.
 * The CPU backend's memory is host memory, so host arrays are passed directly.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "test.h"

enum { P_INP, P_WR, P_W13, P_W2, P_WS13, P_WS2, P_COUNT };
static const char *param_name[P_COUNT] = {"inp", "w_router", "w13", "w2", "ws13", "ws2"};

static const double FD_STEP = 1e-6;
static const double ROUTE_MARGIN = 1e-2; /* minimum logit gap between the k-th and (k+1)-th expert */

typedef struct {
    hk_moe_dims d;
    double *x[P_COUNT];  /* inputs and parameters */
    size_t n[P_COUNT];   /* their element counts */
    double *dout, daux;
} moe_case;

static void sizes(hk_moe_dims d, size_t n[P_COUNT]) {
    n[P_INP] = (size_t)d.N * d.C;
    n[P_WR] = (size_t)d.E * d.C;
    n[P_W13] = (size_t)d.E * 2 * d.F * d.C;
    n[P_W2] = (size_t)d.E * d.C * d.F;
    n[P_WS13] = (size_t)d.S * 2 * d.Fs * d.C;
    n[P_WS2] = (size_t)d.S * d.C * d.Fs;
}

/* Smallest (k-th − (k+1)-th) router logit gap over the tokens; +inf when k = E. */
static double routing_margin(const moe_case *c) {
    const hk_moe_dims d = c->d;
    double margin = INFINITY, *logit = malloc(d.E * sizeof(double));
    for (int n = 0; n < d.N; n++) {
        for (int e = 0; e < d.E; e++) {
            logit[e] = 0;
            for (int k = 0; k < d.C; k++) logit[e] += c->x[P_INP][(size_t)n * d.C + k] * c->x[P_WR][(size_t)e * d.C + k];
        }
        /* sort descending (E is small) */
        for (int i = 1; i < d.E; i++)
            for (int j = i; j > 0 && logit[j] > logit[j - 1]; j--) {
                double t = logit[j];
                logit[j] = logit[j - 1];
                logit[j - 1] = t;
            }
        if (d.k < d.E) margin = fmin(margin, logit[d.k - 1] - logit[d.k]);
    }
    free(logit);
    return margin;
}

static void make_case(moe_case *c, hk_moe_dims d, uint64_t seed) {
    hlab_rng r;
    hlab_rng_seed(&r, seed);
    c->d = d;
    sizes(d, c->n);
    for (int p = 0; p < P_COUNT; p++) {
        c->x[p] = malloc((c->n[p] ? c->n[p] : 1) * sizeof(double));
        test_fill_f64(&r, c->x[p], c->n[p], p == P_INP || p == P_WR ? 1.0 : 0.5);
    }
    c->dout = malloc(c->n[P_INP] * sizeof(double));
    test_fill_f64(&r, c->dout, c->n[P_INP], 1.0);
    c->daux = 0.5 + hlab_rng_uniform(&r);
    /* redraw token rows whose top-k is nearly tied, until the margin is clear */
    for (int tries = 0; tries < 1000 && routing_margin(c) < ROUTE_MARGIN; tries++)
        test_fill_f64(&r, c->x[P_INP], c->n[P_INP], 1.0);
}

static void free_case(moe_case *c) {
    for (int p = 0; p < P_COUNT; p++) free(c->x[p]);
    free(c->dout);
}

static double moe_loss(hk_backend *hk, const moe_case *c, void *cache, double *out, const double *dout) {
    double aux = NAN;
    const hk_moe_dims d = c->d;
    hk->moe_fwd(hk, out, &aux, cache, c->x[P_INP], c->x[P_WR], c->x[P_W13], c->x[P_W2], d.S ? c->x[P_WS13] : NULL,
                d.S ? c->x[P_WS2] : NULL, d);
    double L = c->daux * aux;
    if (dout)
        for (size_t i = 0; i < c->n[P_INP]; i++) L += dout[i] * out[i];
    return L;
}

/* Runs moe_bwd and compares each gradient with central differences of the loss.
 * only_router: compare inp and w_router only (the aux-only pass). */
static void check_grads(hk_backend *hk, moe_case *c, const double *dout, const char *label, int only_router) {
    const hk_moe_dims d = c->d;
    hlab_rng r;
    hlab_rng_seed(&r, 99);
    void *cache = hk->alloc(hk, hk->moe_cache_bytes(hk, d));
    double *out = malloc(c->n[P_INP] * sizeof(double));
    double *zero_dout = calloc(c->n[P_INP], sizeof(double));
    const double *dy = dout ? dout : zero_dout;

    double *grad[P_COUNT], *offset[P_COUNT];
    for (int p = 0; p < P_COUNT; p++) {
        size_t n = c->n[p] ? c->n[p] : 1;
        grad[p] = malloc(n * sizeof(double));
        offset[p] = malloc(n * sizeof(double));
        test_fill_f64(&r, offset[p], c->n[p], 1.0);
        for (size_t i = 0; i < c->n[p]; i++) grad[p][i] = p == P_INP ? NAN : offset[p][i];
    }
    moe_loss(hk, c, cache, out, dout);
    hk->moe_bwd(hk, grad[P_INP], grad[P_WR], grad[P_W13], grad[P_W2], d.S ? grad[P_WS13] : NULL,
                d.S ? grad[P_WS2] : NULL, dy, (float)c->daux, cache, c->x[P_INP], c->x[P_WR], c->x[P_W13], c->x[P_W2],
                d.S ? c->x[P_WS13] : NULL, d.S ? c->x[P_WS2] : NULL, d);
    hlab_err err;
    CHECK(hk->check(hk, &err) == HLAB_OK, "%s: moe fwd/bwd failed: %s", label, err.msg);

    for (int p = 0; p < P_COUNT; p++) {
        if (c->n[p] == 0 || (only_router && p != P_INP && p != P_WR)) continue;
        for (size_t i = 0; i < c->n[p]; i++)
            if (p != P_INP) grad[p][i] -= offset[p][i];
        double *fd = malloc(c->n[p] * sizeof(double));
        for (size_t i = 0; i < c->n[p]; i++) {
            double keep = c->x[p][i];
            c->x[p][i] = keep + FD_STEP;
            double Lp = moe_loss(hk, c, cache, out, dout);
            c->x[p][i] = keep - FD_STEP;
            double Lm = moe_loss(hk, c, cache, out, dout);
            c->x[p][i] = keep;
            fd[i] = (Lp - Lm) / (2 * FD_STEP);
        }
        char what[160];
        snprintf(what, sizeof what, "%s d%s", label, param_name[p]);
        CHECK_REL(grad[p], fd, c->n[p], 1e-6, what);
        free(fd);
    }
    for (int p = 0; p < P_COUNT; p++) {
        free(grad[p]);
        free(offset[p]);
    }
    hk->free(hk, cache);
    free(out);
    free(zero_dout);
}

int main(void) {
    hlab_err err;
    hk_backend *hk = hk_cpu_create(HK_F64, 1, &err);
    if (!hk) {
        fprintf(stderr, "hk_cpu_create(f64): %s\n", err.msg);
        return 1;
    }
    uint64_t seed = 500;
    for (int k = 1; k <= 2; k++)
        for (int renorm = 0; renorm <= 1; renorm++)
            for (int S = 0; S <= 1; S++) {
                hk_moe_dims d = {.N = 9, .C = 5, .E = 4, .k = k, .F = 3, .S = S, .Fs = 2, .renorm = renorm,
                                 .alpha = 0.5f};
                moe_case c;
                make_case(&c, d, seed++);
                char label[96];
                snprintf(label, sizeof label, "k=%d renorm=%d S=%d", k, renorm, S);
                double margin = routing_margin(&c);
                CHECK(margin >= ROUTE_MARGIN, "%s: routing margin %.3g below %.3g, finite differences would flip it",
                      label, margin, ROUTE_MARGIN);
                check_grads(hk, &c, c.dout, label, 0);
                char aux_label[128];
                snprintf(aux_label, sizeof aux_label, "%s aux only", label);
                check_grads(hk, &c, NULL, aux_label, 1);
                free_case(&c);
            }
    hk_destroy(hk);
    return test_summary();
}
