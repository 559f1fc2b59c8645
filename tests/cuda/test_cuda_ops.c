/* tests/cuda/test_cuda_ops.c — every CUDA op (except the mixers: attention,
 * conv1d, SSD, gated RMSNorm; and MoE, see test_cuda_moe.c) against the fp32 CPU
 * reference, in the fp32 mode (tolerance 1e-5) and the bf16 mode (1e-2), at an
 * aligned shape (16-byte vector paths) and an odd one (scalar paths).
 * Conventions: see parity.h. Skips (exit 77) where no CUDA device is usable.
 */
#include "parity.h"

/* ---- embedding ------------------------------------------------------------------- */
static void t_embedding(par_ctx *x, int N, int V, int C) {
    buf2 tok = par_ints(x, (size_t)N, V), wte = par_rand(x, (size_t)V * C, KA, 1.0);
    buf2 out = par_poison(x, (size_t)N * C, KA);
    ON_BOTH(hk->embedding_fwd(hk, D(out), (const int32_t *)D(tok), D(wte), N, C));
    if (par_ran(x, "embedding_fwd")) par_cmp(x, out, "embedding_fwd");
    buf2 dout = par_rand(x, (size_t)N * C, KA, 1.0), dwte = par_rand(x, (size_t)V * C, KR, 1.0);
    ON_BOTH(hk->embedding_bwd(hk, D(dwte), D(dout), (const int32_t *)D(tok), N, C));
    if (par_ran(x, "embedding_bwd")) par_cmp(x, dwte, "embedding_bwd dwte");
    par_free(x, &tok); par_free(x, &wte); par_free(x, &out); par_free(x, &dout); par_free(x, &dwte);
    par_recover(x);
}

/* ---- matmul ------------------------------------------------------------------------- */
static void t_matmul(par_ctx *x, int N, int C, int OC, int with_bias, int accum) {
    buf2 inp = par_rand(x, (size_t)N * C, KA, 1.0), w = par_rand(x, (size_t)OC * C, KA, 0.2);
    buf2 bias = par_rand(x, (size_t)OC, KR, 1.0), out = par_poison(x, (size_t)N * OC, KA);
    ON_BOTH(hk->matmul_fwd(hk, D(out), D(inp), D(w), with_bias ? D(bias) : NULL, N, C, OC));
    if (par_ran(x, "matmul_fwd")) par_cmp(x, out, with_bias ? "matmul_fwd +bias" : "matmul_fwd");
    buf2 dout = par_rand(x, (size_t)N * OC, KA, 1.0);
    buf2 dinp = accum ? par_rand(x, (size_t)N * C, KA, 1.0) : par_poison(x, (size_t)N * C, KA);
    buf2 dw = par_rand(x, (size_t)OC * C, KR, 1.0), db = par_rand(x, (size_t)OC, KR, 1.0);
    ON_BOTH(hk->matmul_bwd(hk, D(dinp), D(dw), with_bias ? D(db) : NULL, D(dout), D(inp), D(w), N, C, OC, accum));
    if (par_ran(x, "matmul_bwd")) {
        par_cmp(x, dinp, accum ? "matmul_bwd dinp (accum)" : "matmul_bwd dinp");
        par_cmp(x, dw, "matmul_bwd dw");
        if (with_bias) par_cmp(x, db, "matmul_bwd dbias");
    }
    par_free(x, &inp); par_free(x, &w); par_free(x, &bias); par_free(x, &out);
    par_free(x, &dout); par_free(x, &dinp); par_free(x, &dw); par_free(x, &db);
    par_recover(x);
}

/* ---- norms -------------------------------------------------------------------------- */
static void t_rmsnorm(par_ctx *x, int N, int C, int accum) {
    buf2 inp = par_rand(x, (size_t)N * C, KA, 2.0), w = par_rand(x, (size_t)C, KR, 1.5);
    buf2 out = par_poison(x, (size_t)N * C, KA), rstd = par_poison(x, (size_t)N, KR);
    ON_BOTH(hk->rmsnorm_fwd(hk, D(out), D(rstd), D(inp), D(w), N, C, 1e-5f));
    if (par_ran(x, "rmsnorm_fwd")) {
        par_cmp(x, out, "rmsnorm_fwd out");
        par_cmp(x, rstd, "rmsnorm_fwd rstd");
    }
    buf2 dout = par_rand(x, (size_t)N * C, KA, 1.0), dw = par_rand(x, (size_t)C, KR, 1.0);
    buf2 dinp = accum ? par_rand(x, (size_t)N * C, KA, 1.0) : par_poison(x, (size_t)N * C, KA);
    ON_BOTH(hk->rmsnorm_bwd(hk, D(dinp), D(dw), D(dout), D(inp), D(w), D(rstd), N, C, accum));
    if (par_ran(x, "rmsnorm_bwd")) {
        par_cmp(x, dinp, accum ? "rmsnorm_bwd dinp (accum)" : "rmsnorm_bwd dinp");
        par_cmp(x, dw, "rmsnorm_bwd dw");
    }
    par_free(x, &inp); par_free(x, &w); par_free(x, &out); par_free(x, &rstd);
    par_free(x, &dout); par_free(x, &dw); par_free(x, &dinp);
    par_recover(x);
}

static void t_layernorm(par_ctx *x, int N, int C, int accum) {
    buf2 inp = par_rand(x, (size_t)N * C, KA, 2.0), w = par_rand(x, (size_t)C, KR, 1.5);
    buf2 bb = par_rand(x, (size_t)C, KR, 0.5);
    buf2 out = par_poison(x, (size_t)N * C, KA), mean = par_poison(x, (size_t)N, KR);
    buf2 rstd = par_poison(x, (size_t)N, KR);
    ON_BOTH(hk->layernorm_fwd(hk, D(out), D(mean), D(rstd), D(inp), D(w), D(bb), N, C, 1e-5f));
    if (par_ran(x, "layernorm_fwd")) {
        par_cmp(x, out, "layernorm_fwd out");
        par_cmp(x, mean, "layernorm_fwd mean");
        par_cmp(x, rstd, "layernorm_fwd rstd");
    }
    buf2 dout = par_rand(x, (size_t)N * C, KA, 1.0), dw = par_rand(x, (size_t)C, KR, 1.0);
    buf2 db = par_rand(x, (size_t)C, KR, 1.0);
    buf2 dinp = accum ? par_rand(x, (size_t)N * C, KA, 1.0) : par_poison(x, (size_t)N * C, KA);
    ON_BOTH(hk->layernorm_bwd(hk, D(dinp), D(dw), D(db), D(dout), D(inp), D(w), D(mean), D(rstd), N, C, accum));
    if (par_ran(x, "layernorm_bwd")) {
        par_cmp(x, dinp, accum ? "layernorm_bwd dinp (accum)" : "layernorm_bwd dinp");
        par_cmp(x, dw, "layernorm_bwd dw");
        par_cmp(x, db, "layernorm_bwd db");
    }
    par_free(x, &inp); par_free(x, &w); par_free(x, &bb); par_free(x, &out); par_free(x, &mean);
    par_free(x, &rstd); par_free(x, &dout); par_free(x, &dw); par_free(x, &db); par_free(x, &dinp);
    par_recover(x);
}

static void t_qknorm(par_ctx *x, int N, int Hq, int Hkv, int dh) {
    size_t W = (size_t)(Hq + 2 * Hkv) * dh;
    buf2 inp = par_rand(x, (size_t)N * W, KA, 2.0), wq = par_rand(x, (size_t)dh, KR, 1.5);
    buf2 wk = par_rand(x, (size_t)dh, KR, 1.5);
    buf2 out = par_poison(x, (size_t)N * W, KA), rstd = par_poison(x, (size_t)N * (Hq + Hkv), KR);
    ON_BOTH(hk->qknorm_fwd(hk, D(out), D(rstd), D(inp), D(wq), D(wk), N, Hq, Hkv, dh, 1e-5f));
    if (par_ran(x, "qknorm_fwd")) {
        par_cmp(x, out, "qknorm_fwd out");
        par_cmp(x, rstd, "qknorm_fwd rstd");
    }
    buf2 dout = par_rand(x, (size_t)N * W, KA, 1.0), dinp = par_poison(x, (size_t)N * W, KA);
    buf2 dwq = par_rand(x, (size_t)dh, KR, 1.0), dwk = par_rand(x, (size_t)dh, KR, 1.0);
    ON_BOTH(hk->qknorm_bwd(hk, D(dinp), D(dwq), D(dwk), D(dout), D(inp), D(wq), D(wk), D(rstd), N, Hq, Hkv, dh));
    if (par_ran(x, "qknorm_bwd")) {
        par_cmp(x, dinp, "qknorm_bwd dinp");
        par_cmp(x, dwq, "qknorm_bwd dwq");
        par_cmp(x, dwk, "qknorm_bwd dwk");
    }
    par_free(x, &inp); par_free(x, &wq); par_free(x, &wk); par_free(x, &out); par_free(x, &rstd);
    par_free(x, &dout); par_free(x, &dinp); par_free(x, &dwq); par_free(x, &dwk);
    par_recover(x);
}

/* ---- rope (out of place, then in place) ---------------------------------------------- */
static void t_rope(par_ctx *x, int B, int T, int Hq, int Hkv, int dh) {
    size_t n = (size_t)B * T * (Hq + 2 * Hkv) * dh;
    buf2 inp = par_rand(x, n, KA, 1.0), out = par_poison(x, n, KA);
    ON_BOTH(hk->rope_fwd(hk, D(out), D(inp), B, T, Hq, Hkv, dh, 10000.0f));
    if (par_ran(x, "rope_fwd")) par_cmp(x, out, "rope_fwd");
    ON_BOTH(hk->rope_fwd(hk, D(inp), D(inp), B, T, Hq, Hkv, dh, 10000.0f));
    if (par_ran(x, "rope_fwd in place")) par_cmp(x, inp, "rope_fwd in place");
    buf2 dout = par_rand(x, n, KA, 1.0), dinp = par_poison(x, n, KA);
    ON_BOTH(hk->rope_bwd(hk, D(dinp), D(dout), B, T, Hq, Hkv, dh, 10000.0f));
    if (par_ran(x, "rope_bwd")) par_cmp(x, dinp, "rope_bwd");
    par_free(x, &inp); par_free(x, &out); par_free(x, &dout); par_free(x, &dinp);
    par_recover(x);
}

/* ---- elementwise and fusion ------------------------------------------------------------ */
static void t_elementwise(par_ctx *x, size_t n, int N, int C1, int C2, int F) {
    buf2 a = par_rand(x, n, KA, 1.0), b = par_rand(x, n, KA, 1.0), g = par_rand(x, n, KA, 3.0);
    buf2 out = par_poison(x, n, KA);
    ON_BOTH(hk->add(hk, D(out), D(a), D(b), n));
    if (par_ran(x, "add")) par_cmp(x, out, "add");
    ON_BOTH(hk->axpby(hk, D(out), 0.7f, D(a), -1.3f, D(b), n));
    if (par_ran(x, "axpby")) par_cmp(x, out, "axpby");
    ON_BOTH(hk->axpby(hk, D(out), 0.5f, D(out), 0.0f, NULL, n));
    if (par_ran(x, "axpby in place, b NULL")) par_cmp(x, out, "axpby in place, b=NULL");
    ON_BOTH(hk->gate_fwd(hk, D(out), D(g), D(a), D(b), n));
    if (par_ran(x, "gate_fwd")) par_cmp(x, out, "gate_fwd");
    buf2 dout = par_rand(x, n, KA, 1.0), dg = par_poison(x, n, KA), da = par_poison(x, n, KA);
    buf2 dm = par_poison(x, n, KA);
    ON_BOTH(hk->gate_bwd(hk, D(dg), D(da), D(dm), D(dout), D(g), D(a), D(b), n));
    if (par_ran(x, "gate_bwd")) {
        par_cmp(x, dg, "gate_bwd dg");
        par_cmp(x, da, "gate_bwd da");
        par_cmp(x, dm, "gate_bwd dm");
    }
    par_free(x, &a); par_free(x, &b); par_free(x, &g); par_free(x, &out);
    par_free(x, &dout); par_free(x, &dg); par_free(x, &da); par_free(x, &dm);

    buf2 c1 = par_rand(x, (size_t)N * C1, KA, 1.0), c2 = par_rand(x, (size_t)N * C2, KA, 1.0);
    buf2 cat = par_poison(x, (size_t)N * (C1 + C2), KA);
    ON_BOTH(hk->concat_fwd(hk, D(cat), D(c1), D(c2), N, C1, C2));
    if (par_ran(x, "concat_fwd")) par_cmp(x, cat, "concat_fwd");
    buf2 dcat = par_rand(x, (size_t)N * (C1 + C2), KA, 1.0);
    buf2 d1 = par_poison(x, (size_t)N * C1, KA), d2 = par_poison(x, (size_t)N * C2, KA);
    ON_BOTH(hk->concat_bwd(hk, D(d1), D(d2), D(dcat), N, C1, C2));
    if (par_ran(x, "concat_bwd")) {
        par_cmp(x, d1, "concat_bwd da");
        par_cmp(x, d2, "concat_bwd db");
    }
    par_free(x, &c1); par_free(x, &c2); par_free(x, &cat); par_free(x, &dcat); par_free(x, &d1); par_free(x, &d2);

    buf2 h = par_rand(x, (size_t)N * 2 * F, KA, 3.0), sw = par_poison(x, (size_t)N * F, KA);
    ON_BOTH(hk->swiglu_fwd(hk, D(sw), D(h), N, F));
    if (par_ran(x, "swiglu_fwd")) par_cmp(x, sw, "swiglu_fwd");
    buf2 dsw = par_rand(x, (size_t)N * F, KA, 1.0), dh = par_poison(x, (size_t)N * 2 * F, KA);
    ON_BOTH(hk->swiglu_bwd(hk, D(dh), D(dsw), D(h), N, F));
    if (par_ran(x, "swiglu_bwd")) par_cmp(x, dh, "swiglu_bwd");
    par_free(x, &h); par_free(x, &sw); par_free(x, &dsw); par_free(x, &dh);
    par_recover(x);
}

/* ---- cross-entropy (bwd out of place, then in place over the logits) ------------------- */
static void t_xent(par_ctx *x, int N, int V) {
    buf2 logits = par_rand(x, (size_t)N * V, KA, 4.0), tgt = par_ints(x, (size_t)N, V);
    buf2 losses = par_poison(x, (size_t)N, KR);
    ON_BOTH(hk->xent_fwd(hk, D(losses), D(logits), (const int32_t *)D(tgt), N, V));
    if (par_ran(x, "xent_fwd")) par_cmp(x, losses, "xent_fwd losses");
    buf2 dl = par_poison(x, (size_t)N * V, KA);
    ON_BOTH(hk->xent_bwd(hk, D(dl), D(logits), (const int32_t *)D(tgt), 1.0f / N, N, V));
    if (par_ran(x, "xent_bwd")) par_cmp(x, dl, "xent_bwd dlogits");
    ON_BOTH(hk->xent_bwd(hk, D(logits), D(logits), (const int32_t *)D(tgt), 0.5f, N, V));
    if (par_ran(x, "xent_bwd in place")) par_cmp(x, logits, "xent_bwd in place");
    par_free(x, &logits); par_free(x, &tgt); par_free(x, &losses); par_free(x, &dl);
    par_recover(x);
}

/* ---- optimiser ----------------------------------------------------------------------- */
static void t_optim(par_ctx *x, size_t n) {
    buf2 p = par_rand(x, n, KR, 1.0), g = par_rand(x, n, KR, 0.1), m = par_rand(x, n, KR, 0.01);
    buf2 v = par_rand_pos(x, n, KR, 1e-6, 1e-3), mirror = par_poison(x, n, KA);
    double s[2];
    for (int k = 0; k < 2; k++) s[k] = x->be[k]->sumsq(x->be[k], g.p[k], n);
    if (par_ran(x, "sumsq")) {
        double e = fabs(s[1] - s[0]) / fabs(s[0]);
        printf("PARITY %-5s %-28s %.3e  (tol %.0e, n=%zu)\n", x->mode, "sumsq", e, 1e-5, n);
        CHECK(e <= 1e-5, "%s sumsq: %.9g vs cpu %.9g", x->mode, s[1], s[0]);
    }
    for (int step = 1; step <= 3; step++) {
        ON_BOTH(hk->adamw(hk, D(p), D(g), D(m), D(v), D(mirror), n, 1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, step, 0.5f));
    }
    if (par_ran(x, "adamw")) {
        /* fp32 R state in both modes: same tolerance as the fp32 mode */
        par_cmp_tol(x, p, "adamw params (3 steps)", 1e-5);
        par_cmp_tol(x, m, "adamw m", 1e-5);
        par_cmp_tol(x, v, "adamw v", 1e-5);
        par_cmp(x, mirror, "adamw mirror");
    }
    par_free(x, &p); par_free(x, &g); par_free(x, &m); par_free(x, &v); par_free(x, &mirror);
    par_recover(x);
}

/* ---- determinism: parameter-gradient reductions give the same bits twice ---------------- */
static void t_determinism(par_ctx *x, int N, int V, int C) {
    hk_backend *hk = x->be[1];
    buf2 tok = par_ints(x, (size_t)N, V), dout = par_rand(x, (size_t)N * C, KA, 1.0);
    buf2 inp = par_rand(x, (size_t)N * C, KA, 1.0), w = par_rand(x, (size_t)C, KR, 1.0);
    buf2 rstd = par_rand_pos(x, (size_t)N, KR, 0.5, 2.0), dinp = par_poison(x, (size_t)N * C, KA);
    float *first[2] = {NULL, NULL}, *again[2] = {NULL, NULL};
    for (int rep = 0; rep < 2; rep++) {
        buf2 dwte = par_poison(x, (size_t)V * C, KR), dw = par_poison(x, (size_t)C, KR);
        hk->zero(hk, dwte.p[1], (size_t)V * C * 4); /* zero start: the sums themselves are compared */
        hk->zero(hk, dw.p[1], (size_t)C * 4);
        hk->embedding_bwd(hk, dwte.p[1], dout.p[1], (const int32_t *)tok.p[1], N, C);
        hk->rmsnorm_bwd(hk, dinp.p[1], dw.p[1], dout.p[1], inp.p[1], w.p[1], rstd.p[1], N, C, 0);
        float **dst = rep ? again : first;
        dst[0] = par_get(x, 1, dwte);
        dst[1] = par_get(x, 1, dw);
        par_free(x, &dwte);
        par_free(x, &dw);
    }
    CHECK(memcmp(first[0], again[0], (size_t)V * C * 4) == 0, "%s embedding_bwd is not bitwise reproducible", x->mode);
    CHECK(memcmp(first[1], again[1], (size_t)C * 4) == 0, "%s rmsnorm_bwd dw is not bitwise reproducible", x->mode);
    for (int k = 0; k < 2; k++) {
        free(first[k]);
        free(again[k]);
    }
    par_free(x, &tok); par_free(x, &dout); par_free(x, &inp); par_free(x, &w); par_free(x, &rstd); par_free(x, &dinp);
    par_recover(x);
}

int main(void) {
    if (hk_cuda_available() <= 0) test_skip("no CUDA device");
    hk_dtype modes[2] = {HK_F32, HK_BF16};
    for (int mi = 0; mi < 2; mi++) {
        par_ctx ctx, *x = &ctx;
        if (!par_open(x, modes[mi], 1234 + mi)) return 1;
        t_embedding(x, 96, 64, 128);
        t_embedding(x, 53, 37, 45);
        t_matmul(x, 96, 128, 80, 0, 0);
        t_matmul(x, 67, 45, 33, 1, 1);
        t_matmul(x, 256, 512, 384, 1, 0);
        t_rmsnorm(x, 64, 256, 0);
        t_rmsnorm(x, 37, 77, 1);
        t_rmsnorm(x, 300, 1024, 1);
        t_rmsnorm(x, 29, 200, 1); /* vector loads, but not the fused one-thread-per-piece path */
        t_layernorm(x, 64, 256, 1);
        t_layernorm(x, 37, 77, 0);
        t_layernorm(x, 29, 200, 1);
        t_qknorm(x, 24, 4, 2, 64);
        t_qknorm(x, 13, 3, 1, 20);
        t_rope(x, 2, 40, 4, 2, 64);
        t_rope(x, 3, 17, 3, 1, 22);
        t_elementwise(x, 4096, 64, 64, 128, 96);
        t_elementwise(x, 1001, 37, 13, 21, 45);
        t_xent(x, 32, 1024);
        t_xent(x, 19, 259);
        t_xent(x, 3, 65544); /* f32: a row too large for shared memory (the two-read backward) */
        t_optim(x, 100000);
        t_optim(x, 4097);
        t_determinism(x, 4096, 50, 96);
        printf("peak device bytes (%s): %zu\n", x->mode, x->be[1]->peak_bytes(x->be[1]));
        par_close(x);
    }
    return test_summary();
}
