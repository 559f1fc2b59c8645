/* tests/cuda/test_cuda_ops.c — every CUDA op (except the mixers: attention,
 * conv1d, SSD, gated RMSNorm; and MoE, see test_cuda_moe.c) against the fp32 CPU
 * reference, in the fp32 mode (tolerance 1e-5) and the bf16 mode (1e-2), at an
 * aligned shape (16-byte vector paths) and an odd one (scalar paths). With
 * HLAB_CUDA_BENCH=1 it also times the fused residual add + norm against add then norm.
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

/* A bias that is only 4-byte aligned (the epilogue needs 16): the separate bias kernel. */
static void t_matmul_bias_offset(par_ctx *x, int N, int C, int OC) {
    buf2 inp = par_rand(x, (size_t)N * C, KA, 1.0), w = par_rand(x, (size_t)OC * C, KA, 0.2);
    buf2 bias = par_rand(x, (size_t)OC + 1, KR, 1.0), out = par_poison(x, (size_t)N * OC, KA);
    ON_BOTH(hk->matmul_fwd(hk, D(out), D(inp), D(w), (const float *)D(bias) + 1, N, C, OC));
    if (par_ran(x, "matmul_fwd")) par_cmp(x, out, "matmul_fwd +bias (4B aligned)");
    par_free(x, &inp); par_free(x, &w); par_free(x, &bias); par_free(x, &out);
    par_recover(x);
}

/* The linear ops give the same bits every time for a shape: the first call picks (and,
 * with autotuning, times) an algorithm, later calls reuse it. Includes the accumulating
 * dinp and dw products, whose timing must not touch the real outputs. */
static void t_gemm_repeat(par_ctx *x, int N, int C, int OC) {
    hk_backend *hk = x->be[1];
    buf2 inp = par_rand(x, (size_t)N * C, KA, 1.0), w = par_rand(x, (size_t)OC * C, KA, 0.2);
    buf2 dout = par_rand(x, (size_t)N * OC, KA, 1.0);
    float *first[3] = {NULL, NULL, NULL};
    int same = 1;
    for (int rep = 0; rep < 3; rep++) {
        buf2 out = par_poison(x, (size_t)N * OC, KA), dinp = par_poison(x, (size_t)N * C, KA);
        buf2 dw = par_poison(x, (size_t)OC * C, KR);
        hk->zero(hk, dinp.p[1], (size_t)N * C * par_size(hk->act));
        hk->zero(hk, dw.p[1], (size_t)OC * C * 4);
        hk->matmul_fwd(hk, out.p[1], inp.p[1], w.p[1], NULL, N, C, OC);
        hk->matmul_bwd(hk, dinp.p[1], dw.p[1], NULL, dout.p[1], inp.p[1], w.p[1], N, C, OC, 1);
        float *got[3] = {par_get(x, 1, out), par_get(x, 1, dinp), par_get(x, 1, dw)};
        size_t bytes[3] = {(size_t)N * OC * 4, (size_t)N * C * 4, (size_t)OC * C * 4};
        for (int k = 0; k < 3; k++) {
            if (rep == 0) first[k] = got[k];
            else {
                same &= memcmp(first[k], got[k], bytes[k]) == 0;
                free(got[k]);
            }
        }
        par_free(x, &out); par_free(x, &dinp); par_free(x, &dw);
    }
    hlab_err err = {0};
    CHECK(hk->sync(hk, &err) == HLAB_OK, "%s gemm repeat: %s", x->mode, err.msg);
    CHECK(same, "%s matmul %dx%dx%d: results differ between calls (algorithm changed within the run?)", x->mode, N, C,
          OC);
    for (int k = 0; k < 3; k++) free(first[k]);
    par_free(x, &inp); par_free(x, &w); par_free(x, &dout);
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

/* Residual add fused with the norm: out of place, then res_out aliasing res_in.
 * layer: 0 RMSNorm, 1 LayerNorm with bias, 2 LayerNorm without bias. */
static void t_add_norm(par_ctx *x, int N, int C, int layer) {
    size_t n = (size_t)N * C;
    const char *op = layer ? "add_layernorm_fwd" : "add_rmsnorm_fwd";
    char what[64];
    buf2 res_in = par_rand(x, n, KA, 2.0), xx = par_rand(x, n, KA, 1.0), w = par_rand(x, (size_t)C, KR, 1.5);
    buf2 bb = par_rand(x, (size_t)C, KR, 0.5);
    for (int in_place = 0; in_place < 2; in_place++) {
        buf2 res = in_place ? res_in : par_poison(x, n, KA);
        buf2 out = par_poison(x, n, KA), mean = par_poison(x, (size_t)N, KR), rstd = par_poison(x, (size_t)N, KR);
        if (layer) {
            ON_BOTH(hk->add_layernorm_fwd(hk, D(res), D(out), D(mean), D(rstd), D(res_in), D(xx), D(w),
                                          layer == 1 ? D(bb) : NULL, N, C, 1e-5f));
        } else {
            ON_BOTH(hk->add_rmsnorm_fwd(hk, D(res), D(out), D(rstd), D(res_in), D(xx), D(w), N, C, 1e-5f));
        }
        if (par_ran(x, op)) {
            const char *how = in_place ? " (in place)" : layer == 2 ? " (no bias)" : "";
            snprintf(what, sizeof what, "%s res_out%s", op, how);
            par_cmp(x, res, what);
            snprintf(what, sizeof what, "%s out%s", op, how);
            par_cmp(x, out, what);
            if (layer) {
                snprintf(what, sizeof what, "%s mean%s", op, how);
                par_cmp(x, mean, what);
            }
            snprintf(what, sizeof what, "%s rstd%s", op, how);
            par_cmp(x, rstd, what);
        }
        if (!in_place) par_free(x, &res);
        par_free(x, &out); par_free(x, &mean); par_free(x, &rstd);
    }
    par_free(x, &res_in); par_free(x, &xx); par_free(x, &w); par_free(x, &bb);
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

/* Pointers off 16-byte boundaries: every input at element offset oi, every output at
 * oo >= 1 (equal offsets: scalar head, vector body, scalar tail; unequal: all scalar).
 * Compares the n-element window; the elements just outside it must stay poisoned. */
static void cmp_window(par_ctx *x, buf2 b, size_t off, size_t n, const char *op, size_t oi) {
    float *ref = par_get(x, 0, b), *got = par_get(x, 1, b);
    char what[64];
    snprintf(what, sizeof what, "%s @%zu/%zu", op, oi, off);
    double e = test_rel_err_f32(got + off, ref + off, n);
    printf("PARITY %-5s %-28s %.3e  (tol %.0e, n=%zu)\n", x->mode, what, e, x->tol, n);
    CHECK(e <= x->tol, "%s %s: relative error %.3e > %.1e", x->mode, what, e, x->tol);
    CHECK(isnan(got[off - 1]) && isnan(got[off + n]), "%s %s: wrote outside its window", x->mode, what);
    free(ref);
    free(got);
}

static void t_elementwise_offsets(par_ctx *x, size_t n, size_t oi, size_t oo) {
    size_t nb = n + 16;
#define AT(buf, off) ((void *)((char *)D(buf) + (off) * par_size(hk->act)))
    buf2 a = par_rand(x, nb, KA, 1.0), b = par_rand(x, nb, KA, 1.0), g = par_rand(x, nb, KA, 3.0);
    buf2 out = par_poison(x, nb, KA);
    ON_BOTH(hk->add(hk, AT(out, oo), AT(a, oi), AT(b, oi), n));
    if (par_ran(x, "add")) cmp_window(x, out, oo, n, "add", oi);
    ON_BOTH(hk->axpby(hk, AT(out, oo), 0.7f, AT(a, oi), -1.3f, AT(b, oi), n));
    if (par_ran(x, "axpby")) cmp_window(x, out, oo, n, "axpby", oi);
    ON_BOTH(hk->axpby(hk, AT(out, oo), 0.5f, AT(out, oo), 0.0f, NULL, n));
    if (par_ran(x, "axpby in place")) cmp_window(x, out, oo, n, "axpby in place, b=NULL", oo);
    ON_BOTH(hk->gate_fwd(hk, AT(out, oo), AT(g, oi), AT(a, oi), AT(b, oi), n));
    if (par_ran(x, "gate_fwd")) cmp_window(x, out, oo, n, "gate_fwd", oi);
    buf2 dout = par_rand(x, nb, KA, 1.0), dg = par_poison(x, nb, KA), da = par_poison(x, nb, KA);
    buf2 dm = par_poison(x, nb, KA);
    ON_BOTH(hk->gate_bwd(hk, AT(dg, oo), AT(da, oo), AT(dm, oo), AT(dout, oi), AT(g, oi), AT(a, oi), AT(b, oi), n));
    if (par_ran(x, "gate_bwd")) {
        cmp_window(x, dg, oo, n, "gate_bwd dg", oi);
        cmp_window(x, da, oo, n, "gate_bwd da", oi);
        cmp_window(x, dm, oo, n, "gate_bwd dm", oi);
    }
#undef AT
    par_free(x, &a); par_free(x, &b); par_free(x, &g); par_free(x, &out);
    par_free(x, &dout); par_free(x, &dg); par_free(x, &da); par_free(x, &dm);
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

/* The fused forward + backward (the training step's loss), out of place then in place;
 * the CPU reference's fused op is bit for bit its xent_fwd + xent_bwd. */
static void t_xent_fused(par_ctx *x, int N, int V) {
    buf2 logits = par_rand(x, (size_t)N * V, KA, 4.0), tgt = par_ints(x, (size_t)N, V);
    buf2 losses = par_poison(x, (size_t)N, KR), dl = par_poison(x, (size_t)N * V, KA);
    char what[64];
    ON_BOTH(hk->xent_fwd_bwd(hk, D(losses), D(dl), D(logits), (const int32_t *)D(tgt), 1.0f / N, N, V));
    if (par_ran(x, "xent_fwd_bwd")) {
        snprintf(what, sizeof what, "xent_fwd_bwd losses V%d", V);
        par_cmp(x, losses, what);
        snprintf(what, sizeof what, "xent_fwd_bwd dlogits V%d", V);
        par_cmp(x, dl, what);
    }
    { /* the same kernel code as xent_bwd: the same gradient bits on the GPU */
        hk_backend *g = x->be[1];
        buf2 dl2 = par_poison(x, (size_t)N * V, KA);
        g->xent_bwd(g, dl2.p[1], logits.p[1], (const int32_t *)tgt.p[1], 1.0f / N, N, V);
        float *a = par_get(x, 1, dl), *b = par_get(x, 1, dl2);
        CHECK(memcmp(a, b, (size_t)N * V * sizeof(float)) == 0, "%s V%d: xent_fwd_bwd dlogits != xent_bwd bits",
              x->mode, V);
        free(a);
        free(b);
        par_free(x, &dl2);
    }
    buf2 losses2 = par_poison(x, (size_t)N, KR);
    ON_BOTH(hk->xent_fwd_bwd(hk, D(losses2), D(logits), D(logits), (const int32_t *)D(tgt), 0.5f, N, V));
    if (par_ran(x, "xent_fwd_bwd in place")) {
        snprintf(what, sizeof what, "xent_fwd_bwd in place loss V%d", V);
        par_cmp(x, losses2, what);
        snprintf(what, sizeof what, "xent_fwd_bwd in place V%d", V);
        par_cmp(x, logits, what);
    }
    par_free(x, &logits); par_free(x, &tgt); par_free(x, &losses); par_free(x, &dl); par_free(x, &losses2);
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
        ON_BOTH(hk->adamw(hk, D(p), D(g), D(m), D(v), D(mirror), n, 1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, step, 0.5f, NULL));
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

/* ---- step statistics (F64 on both backends; R inputs, so bf16 mode = fp32 mode) ------- */
typedef struct {
    void *p[2];
    size_t n;
} f64buf;

static f64buf f64_from(par_ctx *x, const double *host, size_t n) {
    f64buf b = {{NULL, NULL}, n};
    for (int k = 0; k < 2; k++) {
        b.p[k] = x->be[k]->alloc(x->be[k], n * sizeof(double));
        if (b.p[k]) x->be[k]->from_host(x->be[k], b.p[k], HK_F64, host, HK_F64, n);
    }
    return b;
}
static f64buf f64_poison(par_ctx *x, size_t n) {
    double h[8];
    for (int i = 0; i < 8; i++) h[i] = NAN;
    return f64_from(x, h, n);
}
static void f64_get(par_ctx *x, int k, f64buf b, double *out) { x->be[k]->to_host(x->be[k], out, HK_F64, b.p[k], HK_F64, b.n); }
static void f64_free(par_ctx *x, f64buf *b) {
    for (int k = 0; k < 2; k++)
        if (b->p[k]) x->be[k]->free(x->be[k], b->p[k]);
}
/* Compares element i of a statistic; 1e-5 in both modes (R inputs, double sums). */
static void f64_cmp(par_ctx *x, f64buf b, size_t i, const char *what) {
    double ref[8], got[8];
    f64_get(x, 0, b, ref);
    f64_get(x, 1, b, got);
    double e = fabs(got[i] - ref[i]) / fmax(fabs(ref[i]), 1e-300);
    printf("PARITY %-5s %-28s %.3e  (tol %.0e, n=1)\n", x->mode, what, e, 1e-5);
    CHECK(e <= 1e-5, "%s %s: %.17g vs cpu %.17g", x->mode, what, got[i], ref[i]);
}

/* loss_reduce, grad_clip_scale, then adamw reading the clip scale on the device; last, a
 * non-finite loss must leave params, m, v and the mirror untouched on the GPU. */
static void t_step_stats(par_ctx *x, int N, int n_aux, size_t n, int n_micro, float clip) {
    buf2 losses = par_rand_pos(x, (size_t)N, KR, 0.5, 6.0);
    buf2 aux = par_rand_pos(x, (size_t)(n_aux ? n_aux : 1), KR, 0.0, 0.02);
    f64buf ls = f64_poison(x, 2);
    ON_BOTH(hk->loss_reduce(hk, ls.p[b_], D(losses), N, n_aux ? D(aux) : NULL, n_aux));
    if (par_ran(x, "loss_reduce")) {
        f64_cmp(x, ls, 0, "loss_reduce loss");
        if (n_aux) f64_cmp(x, ls, 1, "loss_reduce aux");
    }
    double micro[4];
    for (int k = 0; k < n_micro; k++) micro[k] = 3.0 + hlab_rng_uniform(&x->rng);
    f64buf mic = f64_from(x, micro, (size_t)n_micro), st = f64_poison(x, 3);
    buf2 g = par_rand(x, n, KR, 0.01), p = par_rand(x, n, KR, 1.0), m = par_rand(x, n, KR, 0.01);
    buf2 v = par_rand_pos(x, n, KR, 1e-6, 1e-3), mirror = par_poison(x, n, KA);
    ON_BOTH(hk->grad_clip_scale(hk, st.p[b_], D(g), n, mic.p[b_], n_micro, clip));
    if (par_ran(x, "grad_clip_scale")) {
        f64_cmp(x, st, 0, "grad_clip_scale loss");
        f64_cmp(x, st, 1, "grad_clip_scale norm");
        f64_cmp(x, st, 2, "grad_clip_scale scale");
    }
    for (int step = 1; step <= 2; step++) /* each backend reads its own scale */
        ON_BOTH(hk->adamw(hk, D(p), D(g), D(m), D(v), D(mirror), n, 1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, step, 7.0f,
                          (const double *)st.p[b_] + 2));
    if (par_ran(x, "adamw scale_dev")) {
        par_cmp_tol(x, p, "adamw params (scale_dev)", 1e-5);
        par_cmp_tol(x, m, "adamw m (scale_dev)", 1e-5);
        par_cmp_tol(x, v, "adamw v (scale_dev)", 1e-5);
        par_cmp(x, mirror, "adamw mirror (scale_dev)");
    }
    /* a NaN micro-batch loss: scale NaN, and the update is skipped on the device */
    micro[n_micro - 1] = NAN;
    f64buf bad = f64_from(x, micro, (size_t)n_micro);
    hk_backend *gpu = x->be[1];
    float *before[4] = {par_get(x, 1, p), par_get(x, 1, m), par_get(x, 1, v), par_get(x, 1, mirror)};
    gpu->grad_clip_scale(gpu, st.p[1], g.p[1], n, bad.p[1], n_micro, clip);
    gpu->adamw(gpu, p.p[1], g.p[1], m.p[1], v.p[1], mirror.p[1], n, 1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, 3, 1.0f,
               (const double *)st.p[1] + 2);
    double stat[3];
    f64_get(x, 1, st, stat);
    float *after[4] = {par_get(x, 1, p), par_get(x, 1, m), par_get(x, 1, v), par_get(x, 1, mirror)};
    int untouched = 1;
    for (int k = 0; k < 4; k++) {
        untouched &= memcmp(before[k], after[k], n * sizeof(float)) == 0;
        free(before[k]);
        free(after[k]);
    }
    hlab_err err = {0};
    CHECK(gpu->sync(gpu, &err) == HLAB_OK, "%s step stats: %s", x->mode, err.msg);
    CHECK(isnan(stat[0]) && isnan(stat[2]) && isfinite(stat[1]), "%s grad_clip_scale, NaN loss: %g %g %g", x->mode,
          stat[0], stat[1], stat[2]);
    CHECK(untouched, "%s adamw with a NaN scale changed params, m, v or the mirror", x->mode);
    printf("PARITY %-5s %-28s %s\n", x->mode, "adamw skip (NaN loss)", untouched ? "untouched" : "CHANGED");
    f64_free(x, &ls); f64_free(x, &mic); f64_free(x, &st); f64_free(x, &bad);
    par_free(x, &losses); par_free(x, &aux); par_free(x, &g); par_free(x, &p); par_free(x, &m); par_free(x, &v);
    par_free(x, &mirror);
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

/* ---- HLAB_CUDA_BENCH=1: the fused residual add + norm against add then norm ---------- */
static double bench_seconds(hk_backend *hk, int fused, int layer, void *res, void *out, void *mean, void *rstd,
                            const void *a, const void *b, const void *w, const void *bias, int N, int C) {
    hlab_err err = {0};
    double best = 1e30;
    for (int sample = 0; sample < 6; sample++) { /* the first is the warm-up */
        double t0 = hlab_now_s();
        for (int r = 0; r < 20; r++) {
            if (fused && layer) hk->add_layernorm_fwd(hk, res, out, mean, rstd, a, b, w, bias, N, C, 1e-5f);
            else if (fused) hk->add_rmsnorm_fwd(hk, res, out, rstd, a, b, w, N, C, 1e-5f);
            else {
                hk->add(hk, res, a, b, (size_t)N * C);
                if (layer) hk->layernorm_fwd(hk, out, mean, rstd, res, w, bias, N, C, 1e-5f);
                else hk->rmsnorm_fwd(hk, out, rstd, res, w, N, C, 1e-5f);
            }
        }
        hk->sync(hk, &err);
        double t = (hlab_now_s() - t0) / 20;
        if (sample > 0 && t < best) best = t;
    }
    return best;
}

static void bench_add_norm(void) {
    hlab_err err = {0};
    hk_backend *hk = hk_cuda_create(0, HK_BF16, &err);
    if (!hk) {
        fprintf(stderr, "bench: %s\n", err.msg);
        return;
    }
    static const int shapes[][2] = {{16 * 2048, 1024}, {4 * 8192, 1024}, {16 * 2048, 2048}};
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
        int N = shapes[i][0], C = shapes[i][1];
        size_t n = (size_t)N * C;
        void *a = hk->alloc(hk, n * 2), *b = hk->alloc(hk, n * 2), *res = hk->alloc(hk, n * 2);
        void *out = hk->alloc(hk, n * 2), *mean = hk->alloc(hk, (size_t)N * 4), *rstd = hk->alloc(hk, (size_t)N * 4);
        void *w = hk->alloc(hk, (size_t)C * 4), *bias = hk->alloc(hk, (size_t)C * 4);
        hk->zero(hk, a, n * 2);
        hk->zero(hk, b, n * 2);
        hk->zero(hk, w, (size_t)C * 4);
        hk->zero(hk, bias, (size_t)C * 4);
        for (int layer = 0; layer < 2; layer++) {
            double t_un = bench_seconds(hk, 0, layer, res, out, mean, rstd, a, b, w, bias, N, C);
            double t_fu = bench_seconds(hk, 1, layer, res, out, mean, rstd, a, b, w, bias, N, C);
            double bytes = 4.0 * n * 2; /* fused minimum: read a, b; write res, out */
            printf("BENCH %-18s N=%-6d C=%-5d unfused %7.3f ms  fused %7.3f ms  (%.2fx; fused %6.0f GB/s)\n",
                   layer ? "add+layernorm" : "add+rmsnorm", N, C, t_un * 1e3, t_fu * 1e3, t_un / t_fu,
                   bytes / t_fu / 1e9);
        }
        void *bufs[] = {a, b, res, out, mean, rstd, w, bias};
        for (size_t k = 0; k < sizeof bufs / sizeof *bufs; k++) hk->free(hk, bufs[k]);
    }
    CHECK(hk->check(hk, &err) == HLAB_OK, "bench: %s", err.msg);
    hk_destroy(hk);
}

int main(void) {
    if (hk_cuda_available() <= 0) test_skip("no CUDA device");
    hk_dtype modes[2] = {HK_F32, HK_BF16};
    for (int mi = 0; mi < 2; mi++) {
        par_ctx ctx, *x = &ctx;
        if (!par_open(x, modes[mi], 1234 + mi)) return 1;
        TEST_UNIT(t_embedding(x, 96, 64, 128));
        TEST_UNIT(t_embedding(x, 53, 37, 45));
        TEST_UNIT(t_embedding(x, 3000, 3, 64));  /* runs of ~1000 equal ids: split over many chunks of sorted positions */
        TEST_UNIT(t_embedding(x, 700, 256, 72)); /* runs crossing chunk boundaries, aligned rows */
        TEST_UNIT(t_matmul(x, 96, 128, 80, 0, 0));
        TEST_UNIT(t_matmul(x, 67, 45, 33, 1, 1));
        TEST_UNIT(t_matmul(x, 256, 512, 384, 1, 0));
        TEST_UNIT(t_matmul(x, 256, 512, 384, 1, 1));
        TEST_UNIT(t_matmul_bias_offset(x, 96, 128, 80));
        TEST_UNIT(t_gemm_repeat(x, 512, 256, 768));
        TEST_UNIT(t_rmsnorm(x, 64, 256, 0));
        TEST_UNIT(t_rmsnorm(x, 37, 77, 1));
        TEST_UNIT(t_rmsnorm(x, 300, 1024, 1));
        TEST_UNIT(t_rmsnorm(x, 29, 200, 1)); /* vector loads, but not the fused one-thread-per-piece path */
        TEST_UNIT(t_rmsnorm(x, 300, 768, 1));  /* the model width: warp-per-row fwd and bwd */
        TEST_UNIT(t_rmsnorm(x, 70, 1536, 0));  /* fwd: 6 or 12 vectors per lane; bwd: one block per row */
        TEST_UNIT(t_rmsnorm(x, 20, 4104, 1));  /* fwd: one block per row, row cached in registers */
        TEST_UNIT(t_layernorm(x, 64, 256, 1));
        TEST_UNIT(t_layernorm(x, 37, 77, 0));
        TEST_UNIT(t_layernorm(x, 29, 200, 1));
        TEST_UNIT(t_layernorm(x, 300, 512, 1));  /* warp-per-row fwd and bwd */
        TEST_UNIT(t_layernorm(x, 70, 768, 0));
        TEST_UNIT(t_layernorm(x, 20, 4104, 1));
        for (int layer = 0; layer < 3; layer++) {
            TEST_UNIT(t_add_norm(x, 64, 256, layer));   /* vector path, one cached piece per thread */
            TEST_UNIT(t_add_norm(x, 37, 77, layer));    /* scalar path */
            TEST_UNIT(t_add_norm(x, 5, 12296, layer));  /* vector path past the register cache (re-read tail) */
            TEST_UNIT(t_add_norm(x, 9, 2001, layer));   /* scalar path past the register cache */
            TEST_UNIT(t_add_norm(x, 130, 768, layer));  /* warp per row */
            TEST_UNIT(t_add_norm(x, 40, 2048, layer));  /* warp per row, 8 (bf16) vectors per lane */
        }
        TEST_UNIT(t_qknorm(x, 24, 4, 2, 64));
        TEST_UNIT(t_qknorm(x, 13, 3, 1, 20));
        TEST_UNIT(t_rope(x, 2, 40, 4, 2, 64));
        TEST_UNIT(t_rope(x, 3, 17, 3, 1, 22));
        TEST_UNIT(t_rope(x, 2, 33, 5, 3, 96));      /* a partial group of heads; 6 or 12 vectors per half-head */
        TEST_UNIT(t_rope(x, 1, 16384, 2, 1, 128));  /* long T: angles up to 16383 rad must stay accurate */
        TEST_UNIT(t_elementwise(x, 4096, 64, 64, 128, 96));
        TEST_UNIT(t_elementwise(x, 1001, 37, 13, 21, 45));
        TEST_UNIT(t_elementwise_offsets(x, 1001, 3, 3));    /* same offset: head, vector body, tail */
        TEST_UNIT(t_elementwise_offsets(x, 70001, 1, 1));   /* many vectors, over several blocks */
        TEST_UNIT(t_elementwise_offsets(x, 70001, 5, 5));
        TEST_UNIT(t_elementwise_offsets(x, 7, 1, 1));       /* shorter than the head: all single */
        TEST_UNIT(t_elementwise_offsets(x, 1001, 2, 7));    /* mutually misaligned: all scalar */
        TEST_UNIT(t_elementwise_offsets(x, 4096, 0, 1));
        TEST_UNIT(t_xent(x, 32, 1024));
        TEST_UNIT(t_xent(x, 19, 259));
        TEST_UNIT(t_xent(x, 3, 65544)); /* f32: a row too large for shared memory (the two-read backward) */
        TEST_UNIT(t_xent(x, 5, 50304)); /* the GPT-2 vocabulary: shared-memory backward, a partial last chunk */
        TEST_UNIT(t_xent_fused(x, 32, 1024));
        TEST_UNIT(t_xent_fused(x, 19, 259));    /* odd V: the scalar two-read kernel */
        TEST_UNIT(t_xent_fused(x, 5, 50304));   /* shared-memory kernel, a partial last chunk */
        TEST_UNIT(t_xent_fused(x, 3, 65544));   /* f32: too large for shared memory (two-read vector kernel); bf16: fits */
        TEST_UNIT(t_xent_fused(x, 2, 131072));  /* too large for shared memory in both modes */
        TEST_UNIT(t_optim(x, 100000));
        TEST_UNIT(t_optim(x, 4097));
        TEST_UNIT(t_optim(x, 3000001)); /* sumsq over many blocks, an n % 4 tail */
        TEST_UNIT(t_step_stats(x, 32768, 0, 100000, 1, 4.0f));    /* 16 x 2048 tokens, no MoE; norm ~1.8 < clip */
        TEST_UNIT(t_step_stats(x, 1001, 12, 3000001, 3, 1.0f));   /* MoE aux; 3 micro-batches; clipped; n % 4 tail */
        TEST_UNIT(t_step_stats(x, 7, 1, 4097, 2, 0.0f));          /* clipping disabled; unaligned grid */
        TEST_UNIT(t_determinism(x, 4096, 50, 96));
        printf("peak device bytes (%s): %zu\n", x->mode, x->be[1]->peak_bytes(x->be[1]));
        par_close(x);
    }
    const char *bench = getenv("HLAB_CUDA_BENCH");
    if (bench && strcmp(bench, "1") == 0) bench_add_norm();
    return test_summary();
}
