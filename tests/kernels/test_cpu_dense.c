/* tests/kernels/test_cpu_dense.c — the dense ops of the CPU backend (embedding,
 * matmul, RMSNorm, LayerNorm, QK-norm, RoPE, cross-entropy):
 *   - every backward against central finite differences of L = Σ wout·out on
 *     the cpu-f64 backend (gradcheck.h), with odd sizes, accum 0 and 1;
 *   - the fp32 backend against the f64 backend on the same inputs (forward
 *     outputs and all gradients, relative norm error < 1e-5);
 *   - op-specific properties (gather exactness, RoPE in place and inverse,
 *     cross-entropy value and dlogits aliasing logits).
 * Conventions: inputs random, written outputs poisoned with NaN before the op,
 * accumulated (+=) grads start from a random offset subtracted afterwards. The
 * CPU backends' memory is host memory, so f64 buffers are used as double *.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "test.h"
#include "gradcheck.h"

#define GRAD_TOL 1e-6   /* finite differences vs analytic, float64 */
#define AGREE_TOL 1e-5  /* fp32 backend vs f64 backend */

/* ---- small arena: everything a test allocates, released at its end ----------- */
typedef struct {
    hk_backend *hk[256]; /* NULL: host malloc */
    void *p[256];
    int n;
} arena;

static void *keep(arena *a, hk_backend *hk, void *p) {
    if (a->n < 256) {
        a->hk[a->n] = hk;
        a->p[a->n++] = p;
    }
    return p;
}

static void release(arena *a) {
    for (int i = a->n - 1; i >= 0; i--) {
        if (a->hk[i])
            a->hk[i]->free(a->hk[i], a->p[i]);
        else
            free(a->p[i]);
    }
    a->n = 0;
}

static double *rnd(arena *a, hlab_rng *r, size_t n, double scale) {
    double *x = keep(a, NULL, malloc((n ? n : 1) * sizeof(double)));
    test_fill_f64(r, x, n, scale);
    return x;
}

static double *nans(arena *a, size_t n) {
    double *x = keep(a, NULL, malloc((n ? n : 1) * sizeof(double)));
    for (size_t i = 0; i < n; i++) x[i] = NAN;
    return x;
}

static double *copy(arena *a, const double *x, size_t n) {
    double *y = keep(a, NULL, malloc((n ? n : 1) * sizeof(double)));
    memcpy(y, x, n * sizeof(double));
    return y;
}

static void sub(double *x, const double *y, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] -= y[i];
}

static void *up(arena *a, hk_backend *hk, const double *x, size_t n) { return keep(a, hk, gc_upload(hk, x, n)); }

/* Downloads p (n elements of hk's real), subtracts offset when non-NULL, and
 * checks it against ref to AGREE_TOL. */
static void agree(hk_backend *hk, const void *p, const double *offset, const double *ref, size_t n, const char *what) {
    double *x = gc_download(hk, p, n);
    if (offset) sub(x, offset, n);
    char label[160];
    snprintf(label, sizeof label, "%s: %s vs cpu-f64", what, hk->name);
    CHECK_REL(x, ref, n, AGREE_TOL, label);
    free(x);
}

/* ---- embedding ------------------------------------------------------------------- */
typedef struct {
    hk_backend *hk;
    int N, C;
    const int32_t *tok;
    double *wte, *out, *wout;
} emb_case;

static double emb_loss(void *u, const double *x) {
    emb_case *c = u;
    (void)x;
    c->hk->embedding_fwd(c->hk, c->out, c->tok, c->wte, c->N, c->C);
    return gc_dot(c->wout, c->out, (size_t)c->N * c->C);
}

static void test_embedding(hk_backend *h64, hk_backend *h32, hlab_rng *r) {
    arena a = {0};
    const int N = 11, C = 13, V = 5; /* N > V: tokens repeat, so scatter-adds collide */
    int32_t tok[11];
    for (int n = 0; n < N; n++) tok[n] = (int32_t)hlab_rng_below(r, V);
    const size_t nw = (size_t)V * C, no = (size_t)N * C;
    emb_case c = {h64, N, C, tok, rnd(&a, r, nw, 1), nans(&a, no), rnd(&a, r, no, 1)};
    h64->embedding_fwd(h64, c.out, tok, c.wte, N, C);
    int exact = 1;
    for (int n = 0; n < N; n++)
        exact &= memcmp(c.out + (size_t)n * C, c.wte + (size_t)tok[n] * C, C * sizeof(double)) == 0;
    CHECK(exact, "embedding_fwd: rows are not exact copies of wte rows");
    double *off = rnd(&a, r, nw, 1), *dwte = copy(&a, off, nw);
    h64->embedding_bwd(h64, dwte, c.wout, tok, N, C);
    sub(dwte, off, nw);
    GC_EXPECT(gc_check(emb_loss, &c, c.wte, dwte, nw, GC_EPS, 0, NULL), GRAD_TOL, "embedding dwte");

    void *out32 = up(&a, h32, nans(&a, no), no), *dwte32 = up(&a, h32, off, nw);
    h32->embedding_fwd(h32, out32, tok, up(&a, h32, c.wte, nw), N, C);
    h32->embedding_bwd(h32, dwte32, up(&a, h32, c.wout, no), tok, N, C);
    h64->embedding_fwd(h64, c.out, tok, c.wte, N, C);
    agree(h32, out32, NULL, c.out, no, "embedding out");
    agree(h32, dwte32, off, dwte, nw, "embedding dwte");
    release(&a);
}

/* ---- matmul ------------------------------------------------------------------------- */
typedef struct {
    hk_backend *hk;
    int N, C, OC;
    double *inp, *w, *bias, *out, *wout;
} mm_case;

static double mm_loss(void *u, const double *x) {
    mm_case *c = u;
    (void)x;
    c->hk->matmul_fwd(c->hk, c->out, c->inp, c->w, c->bias, c->N, c->C, c->OC);
    return gc_dot(c->wout, c->out, (size_t)c->N * c->OC);
}

static void test_matmul(hk_backend *h64, hk_backend *h32, hlab_rng *r, int with_bias) {
    arena a = {0};
    const int N = 7, C = 13, OC = 11;
    const size_t ni = (size_t)N * C, nw = (size_t)OC * C, no = (size_t)N * OC;
    mm_case c = {h64, N, C, OC, rnd(&a, r, ni, 1), rnd(&a, r, nw, 1), with_bias ? rnd(&a, r, OC, 1) : NULL,
                 nans(&a, no), rnd(&a, r, no, 1)};
    double *dinp = nans(&a, ni), *off_w = rnd(&a, r, nw, 1), *off_b = rnd(&a, r, OC, 1);
    double *dw = copy(&a, off_w, nw), *db = with_bias ? copy(&a, off_b, OC) : NULL;
    h64->matmul_fwd(h64, c.out, c.inp, c.w, c.bias, N, C, OC);
    double *out_ref = copy(&a, c.out, no);
    h64->matmul_bwd(h64, dinp, dw, db, c.wout, c.inp, c.w, N, C, OC, 0);
    sub(dw, off_w, nw);
    GC_EXPECT(gc_check(mm_loss, &c, c.inp, dinp, ni, GC_EPS, 0, NULL), GRAD_TOL, "matmul dinp");
    GC_EXPECT(gc_check(mm_loss, &c, c.w, dw, nw, GC_EPS, 0, NULL), GRAD_TOL, "matmul dw");
    if (with_bias) {
        sub(db, off_b, OC);
        GC_EXPECT(gc_check(mm_loss, &c, c.bias, db, OC, GC_EPS, 0, NULL), GRAD_TOL, "matmul dbias");
    }
    /* accum = 1 adds into dinp; NULL dw / dbias are skipped */
    double *off_i = rnd(&a, r, ni, 1), *dinp_acc = copy(&a, off_i, ni);
    h64->matmul_bwd(h64, dinp_acc, NULL, NULL, c.wout, c.inp, c.w, N, C, OC, 1);
    sub(dinp_acc, off_i, ni);
    CHECK_REL(dinp_acc, dinp, ni, 1e-12, "matmul dinp accum=1");

    void *out32 = up(&a, h32, nans(&a, no), no), *dinp32 = up(&a, h32, off_i, ni);
    void *dw32 = up(&a, h32, off_w, nw), *db32 = with_bias ? up(&a, h32, off_b, OC) : NULL;
    void *inp32 = up(&a, h32, c.inp, ni), *w32 = up(&a, h32, c.w, nw);
    h32->matmul_fwd(h32, out32, inp32, w32, with_bias ? up(&a, h32, c.bias, OC) : NULL, N, C, OC);
    h32->matmul_bwd(h32, dinp32, dw32, db32, up(&a, h32, c.wout, no), inp32, w32, N, C, OC, 1);
    agree(h32, out32, NULL, out_ref, no, "matmul out");
    agree(h32, dinp32, off_i, dinp, ni, "matmul dinp");
    agree(h32, dw32, off_w, dw, nw, "matmul dw");
    if (with_bias) agree(h32, db32, off_b, db, OC, "matmul dbias");
    release(&a);
}

/* ---- RMSNorm and LayerNorm ---------------------------------------------------------- */
typedef struct {
    hk_backend *hk;
    int N, C, layer; /* layer: LayerNorm, else RMSNorm */
    double *inp, *w, *b, *out, *mean, *rstd, *wout;
} norm_case;

static const float NORM_EPS = 1e-5f;

static void norm_fwd(norm_case *c) {
    if (c->layer)
        c->hk->layernorm_fwd(c->hk, c->out, c->mean, c->rstd, c->inp, c->w, c->b, c->N, c->C, NORM_EPS);
    else
        c->hk->rmsnorm_fwd(c->hk, c->out, c->rstd, c->inp, c->w, c->N, c->C, NORM_EPS);
}

static double norm_loss(void *u, const double *x) {
    norm_case *c = u;
    (void)x;
    norm_fwd(c);
    return gc_dot(c->wout, c->out, (size_t)c->N * c->C);
}

static void norm_bwd(hk_backend *hk, int layer, void *dinp, void *dw, void *db, const void *dout, const void *inp,
                     const void *w, const void *mean, const void *rstd, int N, int C, int accum) {
    if (layer)
        hk->layernorm_bwd(hk, dinp, dw, db, dout, inp, w, mean, rstd, N, C, accum);
    else
        hk->rmsnorm_bwd(hk, dinp, dw, dout, inp, w, rstd, N, C, accum);
}

static void test_norm(hk_backend *h64, hk_backend *h32, hlab_rng *r, int layer) {
    arena a = {0};
    const int N = 9, C = 21;
    const size_t nx = (size_t)N * C;
    const char *name = layer ? "layernorm" : "rmsnorm";
    char what[64];
    norm_case c = {h64, N, C, layer, rnd(&a, r, nx, 2), rnd(&a, r, C, 1), rnd(&a, r, C, 1), nans(&a, nx),
                   nans(&a, N), nans(&a, N), rnd(&a, r, nx, 1)};
    /* offset the mean so LayerNorm's centring matters */
    for (size_t i = 0; i < nx; i++) c.inp[i] += 0.7;
    norm_fwd(&c);
    double *out_ref = copy(&a, c.out, nx), *mean_ref = copy(&a, c.mean, N), *rstd_ref = copy(&a, c.rstd, N);
    double *dinp = nans(&a, nx), *off_w = rnd(&a, r, C, 1), *off_b = rnd(&a, r, C, 1);
    double *dw = copy(&a, off_w, C), *db = copy(&a, off_b, C);
    norm_bwd(h64, layer, dinp, dw, db, c.wout, c.inp, c.w, mean_ref, rstd_ref, N, C, 0);
    sub(dw, off_w, C);
    sub(db, off_b, C);
    snprintf(what, sizeof what, "%s dinp", name);
    GC_EXPECT(gc_check(norm_loss, &c, c.inp, dinp, nx, GC_EPS, 0, NULL), GRAD_TOL, what);
    snprintf(what, sizeof what, "%s dw", name);
    GC_EXPECT(gc_check(norm_loss, &c, c.w, dw, C, GC_EPS, 0, NULL), GRAD_TOL, what);
    if (layer) GC_EXPECT(gc_check(norm_loss, &c, c.b, db, C, GC_EPS, 0, NULL), GRAD_TOL, "layernorm db");

    double *off_i = rnd(&a, r, nx, 1), *dinp_acc = copy(&a, off_i, nx);
    norm_bwd(h64, layer, dinp_acc, NULL, NULL, c.wout, c.inp, c.w, mean_ref, rstd_ref, N, C, 1);
    sub(dinp_acc, off_i, nx);
    snprintf(what, sizeof what, "%s dinp accum=1", name);
    CHECK_REL(dinp_acc, dinp, nx, 1e-12, what);

    void *inp32 = up(&a, h32, c.inp, nx), *w32 = up(&a, h32, c.w, C), *b32 = up(&a, h32, c.b, C);
    void *out32 = up(&a, h32, nans(&a, nx), nx), *mean32 = up(&a, h32, nans(&a, N), N);
    void *rstd32 = up(&a, h32, nans(&a, N), N);
    void *dinp32 = up(&a, h32, nans(&a, nx), nx), *dw32 = up(&a, h32, off_w, C), *db32 = up(&a, h32, off_b, C);
    if (layer)
        h32->layernorm_fwd(h32, out32, mean32, rstd32, inp32, w32, b32, N, C, NORM_EPS);
    else
        h32->rmsnorm_fwd(h32, out32, rstd32, inp32, w32, N, C, NORM_EPS);
    norm_bwd(h32, layer, dinp32, dw32, db32, up(&a, h32, c.wout, nx), inp32, w32, mean32, rstd32, N, C, 0);
    snprintf(what, sizeof what, "%s out", name);
    agree(h32, out32, NULL, out_ref, nx, what);
    snprintf(what, sizeof what, "%s rstd", name);
    agree(h32, rstd32, NULL, rstd_ref, N, what);
    if (layer) agree(h32, mean32, NULL, mean_ref, N, "layernorm mean");
    snprintf(what, sizeof what, "%s dinp", name);
    agree(h32, dinp32, NULL, dinp, nx, what);
    snprintf(what, sizeof what, "%s dw", name);
    agree(h32, dw32, off_w, dw, C, what);
    if (layer) agree(h32, db32, off_b, db, C, "layernorm db");
    release(&a);
}

/* ---- QK-norm ------------------------------------------------------------------------ */
typedef struct {
    hk_backend *hk;
    int N, Hq, Hkv, dh;
    double *inp, *wq, *wk, *out, *rstd, *wout;
} qkn_case;

static double qkn_loss(void *u, const double *x) {
    qkn_case *c = u;
    (void)x;
    c->hk->qknorm_fwd(c->hk, c->out, c->rstd, c->inp, c->wq, c->wk, c->N, c->Hq, c->Hkv, c->dh, NORM_EPS);
    return gc_dot(c->wout, c->out, (size_t)c->N * (c->Hq + 2 * c->Hkv) * c->dh);
}

static void test_qknorm(hk_backend *h64, hk_backend *h32, hlab_rng *r) {
    arena a = {0};
    const int N = 7, Hq = 4, Hkv = 2, dh = 6;
    const size_t nx = (size_t)N * (Hq + 2 * Hkv) * dh, nr = (size_t)N * (Hq + Hkv);
    qkn_case c = {h64, N, Hq, Hkv, dh, rnd(&a, r, nx, 2), rnd(&a, r, dh, 1), rnd(&a, r, dh, 1), nans(&a, nx),
                  nans(&a, nr), rnd(&a, r, nx, 1)};
    h64->qknorm_fwd(h64, c.out, c.rstd, c.inp, c.wq, c.wk, N, Hq, Hkv, dh, NORM_EPS);
    double *out_ref = copy(&a, c.out, nx), *rstd_ref = copy(&a, c.rstd, nr);
    double *dinp = nans(&a, nx), *off = rnd(&a, r, 2 * dh, 1), *dwq = copy(&a, off, dh), *dwk = copy(&a, off + dh, dh);
    h64->qknorm_bwd(h64, dinp, dwq, dwk, c.wout, c.inp, c.wq, c.wk, rstd_ref, N, Hq, Hkv, dh);
    sub(dwq, off, dh);
    sub(dwk, off + dh, dh);
    GC_EXPECT(gc_check(qkn_loss, &c, c.inp, dinp, nx, GC_EPS, 0, NULL), GRAD_TOL, "qknorm dinp");
    GC_EXPECT(gc_check(qkn_loss, &c, c.wq, dwq, dh, GC_EPS, 0, NULL), GRAD_TOL, "qknorm dwq");
    GC_EXPECT(gc_check(qkn_loss, &c, c.wk, dwk, dh, GC_EPS, 0, NULL), GRAD_TOL, "qknorm dwk");

    void *inp32 = up(&a, h32, c.inp, nx), *wq32 = up(&a, h32, c.wq, dh), *wk32 = up(&a, h32, c.wk, dh);
    void *out32 = up(&a, h32, nans(&a, nx), nx), *rstd32 = up(&a, h32, nans(&a, nr), nr);
    void *dinp32 = up(&a, h32, nans(&a, nx), nx), *dwq32 = up(&a, h32, off, dh), *dwk32 = up(&a, h32, off + dh, dh);
    h32->qknorm_fwd(h32, out32, rstd32, inp32, wq32, wk32, N, Hq, Hkv, dh, NORM_EPS);
    h32->qknorm_bwd(h32, dinp32, dwq32, dwk32, up(&a, h32, c.wout, nx), inp32, wq32, wk32, rstd32, N, Hq, Hkv, dh);
    agree(h32, out32, NULL, out_ref, nx, "qknorm out");
    agree(h32, rstd32, NULL, rstd_ref, nr, "qknorm rstd");
    agree(h32, dinp32, NULL, dinp, nx, "qknorm dinp");
    agree(h32, dwq32, off, dwq, dh, "qknorm dwq");
    agree(h32, dwk32, off + dh, dwk, dh, "qknorm dwk");
    release(&a);
}

/* ---- RoPE ---------------------------------------------------------------------------- */
typedef struct {
    hk_backend *hk;
    int B, T, Hq, Hkv, dh;
    float theta;
    double *inp, *out, *wout;
} rope_case;

static double rope_loss(void *u, const double *x) {
    rope_case *c = u;
    (void)x;
    c->hk->rope_fwd(c->hk, c->out, c->inp, c->B, c->T, c->Hq, c->Hkv, c->dh, c->theta);
    return gc_dot(c->wout, c->out, (size_t)c->B * c->T * (c->Hq + 2 * c->Hkv) * c->dh);
}

static void test_rope(hk_backend *h64, hk_backend *h32, hlab_rng *r) {
    arena a = {0};
    const int B = 2, T = 7, Hq = 3, Hkv = 1, dh = 10;
    const float theta = 100.0f; /* small theta: every pair rotates noticeably over 7 positions */
    const size_t nx = (size_t)B * T * (Hq + 2 * Hkv) * dh;
    rope_case c = {h64, B, T, Hq, Hkv, dh, theta, rnd(&a, r, nx, 1), nans(&a, nx), rnd(&a, r, nx, 1)};
    h64->rope_fwd(h64, c.out, c.inp, B, T, Hq, Hkv, dh, theta);
    double *out_ref = copy(&a, c.out, nx);
    /* position 0 is the identity; a rotation keeps each pair's norm */
    CHECK_REL(out_ref, c.inp, (size_t)(Hq + 2 * Hkv) * dh, 1e-15, "rope at t=0 is the identity");
    double *dinp = nans(&a, nx);
    h64->rope_bwd(h64, dinp, c.wout, B, T, Hq, Hkv, dh, theta);
    GC_EXPECT(gc_check(rope_loss, &c, c.inp, dinp, nx, GC_EPS, 0, NULL), GRAD_TOL, "rope dinp");
    /* in place gives the same result; bwd (the inverse rotation) undoes fwd */
    double *inplace = copy(&a, c.inp, nx);
    h64->rope_fwd(h64, inplace, inplace, B, T, Hq, Hkv, dh, theta);
    CHECK_REL(inplace, out_ref, nx, 1e-15, "rope_fwd in place");
    h64->rope_bwd(h64, inplace, inplace, B, T, Hq, Hkv, dh, theta);
    CHECK_REL(inplace, c.inp, nx, 1e-13, "rope_bwd(rope_fwd(x)) == x");

    void *out32 = up(&a, h32, nans(&a, nx), nx), *dinp32 = up(&a, h32, nans(&a, nx), nx);
    h32->rope_fwd(h32, out32, up(&a, h32, c.inp, nx), B, T, Hq, Hkv, dh, theta);
    h32->rope_bwd(h32, dinp32, up(&a, h32, c.wout, nx), B, T, Hq, Hkv, dh, theta);
    agree(h32, out32, NULL, out_ref, nx, "rope out");
    agree(h32, dinp32, NULL, dinp, nx, "rope dinp");
    release(&a);
}

/* ---- cross-entropy ---------------------------------------------------------------------- */
typedef struct {
    hk_backend *hk;
    int N, V;
    const int32_t *tgt;
    double *logits, *losses, dloss;
} xent_case;

static double xent_loss(void *u, const double *x) {
    xent_case *c = u;
    (void)x;
    c->hk->xent_fwd(c->hk, c->losses, c->logits, c->tgt, c->N, c->V);
    double s = 0;
    for (int n = 0; n < c->N; n++) s += c->losses[n];
    return c->dloss * s;
}

static void test_xent(hk_backend *h64, hk_backend *h32, hlab_rng *r) {
    arena a = {0};
    const int N = 6, V = 19;
    const size_t nl = (size_t)N * V;
    int32_t tgt[6];
    for (int n = 0; n < N; n++) tgt[n] = (int32_t)hlab_rng_below(r, V);
    xent_case c = {h64, N, V, tgt, rnd(&a, r, nl, 4), nans(&a, N), 0.3 + hlab_rng_uniform(r)};
    for (int v = 0; v < V; v++) c.logits[v] += 30; /* a large shift: the softmax must be stable */
    h64->xent_fwd(h64, c.losses, c.logits, tgt, N, V);
    double *ref = nans(&a, N);
    for (int n = 0; n < N; n++) {
        const double *x = c.logits + (size_t)n * V;
        double mx = x[0], s = 0;
        for (int v = 1; v < V; v++) mx = fmax(mx, x[v]);
        for (int v = 0; v < V; v++) s += exp(x[v] - mx);
        ref[n] = mx + log(s) - x[tgt[n]];
    }
    CHECK_REL(c.losses, ref, N, 1e-13, "xent_fwd vs direct formula");
    double *losses_ref = copy(&a, c.losses, N);
    double *dlogits = nans(&a, nl);
    h64->xent_bwd(h64, dlogits, c.logits, tgt, (float)c.dloss, N, V);
    /* the kernel receives dloss as a float: use exactly that value in the loss */
    c.dloss = (float)c.dloss;
    GC_EXPECT(gc_check(xent_loss, &c, c.logits, dlogits, nl, GC_EPS, 0, NULL), GRAD_TOL, "xent dlogits");
    double *alias = copy(&a, c.logits, nl);
    h64->xent_bwd(h64, alias, alias, tgt, (float)c.dloss, N, V);
    CHECK_REL(alias, dlogits, nl, 1e-15, "xent_bwd with dlogits aliasing logits");

    void *logits32 = up(&a, h32, c.logits, nl), *losses32 = up(&a, h32, nans(&a, N), N);
    void *dlogits32 = up(&a, h32, nans(&a, nl), nl);
    h32->xent_fwd(h32, losses32, logits32, tgt, N, V);
    h32->xent_bwd(h32, dlogits32, logits32, tgt, (float)c.dloss, N, V);
    agree(h32, losses32, NULL, losses_ref, N, "xent losses");
    agree(h32, dlogits32, NULL, dlogits, nl, "xent dlogits");
    /* an out-of-range target is a sticky error, not a crash */
    int32_t bad[6];
    memcpy(bad, tgt, sizeof bad);
    bad[3] = V;
    hlab_err err = {0};
    CHECK(h32->check(h32, &err) == HLAB_OK, "fp32 backend failed before the bad-target call: %s", err.msg);
    h32->xent_fwd(h32, losses32, logits32, bad, N, V);
    CHECK(h32->check(h32, &err) == HLAB_EINVAL, "xent_fwd with target == V: expected a sticky EINVAL");
    release(&a);
}

/* The parameter-grad reductions sum in a fixed order: the same bits on 1 and 2
 * threads (sizes above the threading threshold). Thread counts are process-wide,
 * so each run opens its own backend with the count. */
static void reduction_run(int threads, const double *x, const double *dy, const double *w, const int32_t *tok, int N,
                          int C, double *dw_out, double *demb_out, double *ss_out) {
    hlab_err err = {0};
    hk_backend *hk = hk_cpu_create(HK_F32, threads, &err);
    CHECK(hk != NULL, "hk_cpu_create(threads=%d): %s", threads, err.msg);
    if (!hk) return;
    const size_t nx = (size_t)N * C;
    void *dx = gc_upload(hk, x, nx), *ddy = gc_upload(hk, dy, nx), *dwgt = gc_upload(hk, w, C);
    void *rstd = gc_upload(hk, w, N), *out = gc_upload(hk, x, nx), *dw = gc_upload(hk, w, C);
    void *demb = gc_upload(hk, x, (size_t)C * 8);
    hk->rmsnorm_fwd(hk, out, rstd, dx, dwgt, N, C, NORM_EPS);
    hk->rmsnorm_bwd(hk, out, dw, ddy, dx, dwgt, rstd, N, C, 0);
    hk->embedding_bwd(hk, demb, ddy, tok, N, C);
    hk->to_host(hk, dw_out, HK_F64, dw, hk->real, C);
    hk->to_host(hk, demb_out, HK_F64, demb, hk->real, (size_t)C * 8);
    *ss_out = hk->sumsq(hk, ddy, nx);
    void *bufs[] = {dx, ddy, dwgt, rstd, out, dw, demb};
    for (int i = 0; i < 7; i++) hk->free(hk, bufs[i]);
    hk_destroy(hk);
}

static void test_thread_independence(hlab_rng *r) {
    arena a = {0};
    const int N = 700, C = 97; /* 67900 elements: threaded */
    const size_t nx = (size_t)N * C;
    int32_t *tok = keep(&a, NULL, malloc(N * sizeof(int32_t)));
    for (int n = 0; n < N; n++) tok[n] = (int32_t)hlab_rng_below(r, 8);
    double *x = rnd(&a, r, nx, 1), *dy = rnd(&a, r, nx, 1), *w = rnd(&a, r, nx, 1);
    double *dw1 = nans(&a, C), *dw2 = nans(&a, C), *de1 = nans(&a, (size_t)C * 8), *de2 = nans(&a, (size_t)C * 8);
    double ss1 = NAN, ss2 = NAN;
    reduction_run(1, x, dy, w, tok, N, C, dw1, de1, &ss1);
    reduction_run(2, x, dy, w, tok, N, C, dw2, de2, &ss2);
    CHECK(memcmp(dw1, dw2, C * sizeof(double)) == 0, "rmsnorm dw differs between 1 and 2 threads");
    CHECK(memcmp(de1, de2, (size_t)C * 8 * sizeof(double)) == 0, "embedding dwte differs between 1 and 2 threads");
    CHECK(ss1 == ss2, "sumsq differs between 1 and 2 threads: %.17g vs %.17g", ss1, ss2);
    release(&a);
}

int main(void) {
    hlab_err err = {0};
    hk_backend *h64 = hk_cpu_create(HK_F64, 2, &err);
    CHECK(h64 != NULL, "hk_cpu_create(HK_F64): %s", err.msg);
    hk_backend *h32 = hk_cpu_create(HK_F32, 2, &err);
    CHECK(h32 != NULL, "hk_cpu_create(HK_F32): %s", err.msg);
    if (!h64 || !h32) return test_summary();
    hlab_rng r;
    hlab_rng_seed(&r, 20261123);
    test_embedding(h64, h32, &r);
    test_matmul(h64, h32, &r, 1);
    test_matmul(h64, h32, &r, 0);
    test_norm(h64, h32, &r, 0);
    test_norm(h64, h32, &r, 1);
    test_qknorm(h64, h32, &r);
    test_rope(h64, h32, &r);
    test_thread_independence(&r);
    CHECK(h32->check(h32, &err) == HLAB_OK, "fp32 backend error: %s", err.msg);
    test_xent(h64, h32, &r); /* last: leaves a sticky error on h32 on purpose */
    CHECK(h64->check(h64, &err) == HLAB_OK, "f64 backend error: %s", err.msg);
    hk_destroy(h32);
    hk_destroy(h64);
    return test_summary();
}
