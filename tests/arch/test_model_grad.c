/* tests/arch/test_model_grad.c — whole-model gradient checks: every parameter
 * tensor's analytic gradient (hlab_model_backward on the cpu-f64 backend)
 * against central finite differences of hlab_model_forward's loss, for every
 * model kind (attention, Mamba-2, sequential hybrid, parallel with each fusion
 * operator; dense / MoE top-1 / top-2 / shared; RMSNorm / LayerNorm; QK-norm,
 * window, untied head, GQA, B/C groups), on tiny odd sizes (D = 24, heads of 8,
 * T = 11 with SSD chunk 4, vocabulary 19, B = 2).
 *
 * Per tensor, a few elements chosen at random are perturbed (all of them for
 * small tensors); the error is ‖num − ana‖ / max(‖ana‖, 1e-6) over those.
 * Parameters are redrawn at O(1) scale after init so every gradient is
 * well above the finite-difference noise.
 * MoE: top-k routing is piecewise constant, so a perturbation that flips a
 * token's expert choice makes the difference quotient meaningless. Such a flip
 * is detected by comparing the quotient at h and h/2 (they agree to ~1e-9 on a
 * smooth piece, and differ at O(1) across a jump); those elements are skipped,
 * counted, and must stay rare.
 * Also: the fp32 backend's loss equals the float64 loss, init is deterministic
 * per seed, the decayed-first layout, counts agree with the model, Bn < B rows.
 */
#include <string.h>

#include "arch/arch.h"
#include "test.h"

enum { B = 2, T = 11, SAMPLES = 8 };
static int samples = SAMPLES; /* elements per tensor; 3 under HLAB_TEST_QUICK (the sanitizer run) */

static hk_backend *hk64, *hk32;
static int total_skipped, total_checked;

static void base_config(hlab_model_config *c) {
    hlab_model_config_defaults(c);
    c->d_model = 24;
    c->n_layers = 2;
    c->vocab_size = 19;
    c->head_dim = 8;     /* 3 query heads */
    c->n_kv_heads = 1;   /* GQA group of 3 */
    c->mamba_headdim = 8;/* d_inner 48 → 6 heads; parallel branch: 24/8 = 3 heads */
    c->mamba_d_state = 8;
    c->mamba_chunk = 4;  /* T = 11: chunks 4, 4, 3 */
    c->d_ff = 20;
    c->moe_experts = 3;
    c->moe_top_k = 2;
    c->moe_d_ff = 12;
    c->moe_aux_alpha = 0.1f;
}

static double uniform(hlab_rng *r, double lo, double hi) { return lo + (hi - lo) * hlab_rng_uniform(r); }
static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

/* Redraws every parameter at O(1) scale (see the file comment), on the host in f64. */
static void randomize(hlab_model *m, uint64_t seed) {
    int nt;
    int64_t ne;
    hlab_model_n_params(m, &nt, &ne);
    double *p = malloc((size_t)ne * sizeof *p);
    hlab_rng r;
    hlab_rng_seed(&r, seed);
    for (int i = 0; i < nt; i++) {
        const hlab_param_info *t = hlab_model_param(m, i);
        double *x = p + t->offset;
        for (int64_t j = 0; j < t->numel; j++) {
            if (strstr(t->name, "A_log")) x[j] = uniform(&r, 0.0, 1.5);
            else if (strstr(t->name, "dt_bias")) x[j] = uniform(&r, -2.0, 0.5);
            else if (strstr(t->name, "conv.weight")) x[j] = uniform(&r, -0.5, 0.5);
            else if (ends_with(t->name, "bias")) x[j] = uniform(&r, -0.2, 0.2);
            else if (t->decay) {
                double a = 1.0 / sqrt((double)t->shape[t->ndim - 1]);
                x[j] = uniform(&r, -a, a);
            } else x[j] = 1.0 + uniform(&r, -0.3, 0.3); /* norm scales, β, D */
        }
    }
    hk_backend *hk = hlab_model_backend(m);
    hk->from_host(hk, hlab_model_params(m), hk->real, p, HK_F64, (size_t)ne);
    hlab_model_params_changed(m);
    free(p);
}

static void random_tokens(hlab_rng *r, int32_t *t, int n, int V) {
    for (int i = 0; i < n; i++) t[i] = (int32_t)hlab_rng_below(r, (uint64_t)V);
}

static double loss_at(hlab_model *m, const int32_t *tok, const int32_t *tgt) {
    hlab_err err = {0};
    if (hlab_model_forward(m, tok, tgt, B, NULL, NULL, &err)) {
        fprintf(stderr, "forward: %s\n", err.msg);
        return NAN;
    }
    return hlab_model_last_loss(m);
}

static void set_param(hlab_model *m, int64_t idx, double v) {
    hk_backend *hk = hlab_model_backend(m);
    hk->from_host(hk, (double *)hlab_model_params(m) + idx, HK_F64, &v, HK_F64, 1);
}

static void grad_check(const char *what, const hlab_model_config *cfg, int moe) {
    hlab_err err = {0};
    hlab_model *m = hlab_model_create(cfg, hk64, B, T, &err);
    CHECK(m != NULL, "%s: create: %s", what, err.msg);
    if (!m) return;
    CHECK(hlab_model_init(m, 11, &err) == HLAB_OK, "%s: init: %s", what, err.msg);
    randomize(m, 1234);
    hlab_rng r;
    hlab_rng_seed(&r, 99);
    int32_t tok[B * T], tgt[B * T];
    random_tokens(&r, tok, B * T, cfg->vocab_size);
    random_tokens(&r, tgt, B * T, cfg->vocab_size);

    int nt;
    int64_t ne;
    hlab_model_n_params(m, &nt, &ne);
    hlab_model_zero_grads(m);
    float loss = 0;
    int rc = hlab_model_forward(m, tok, tgt, B, &loss, NULL, &err);
    if (!rc) rc = hlab_model_backward(m, &err);
    CHECK(rc == HLAB_OK && isfinite(loss), "%s: forward/backward: %s", what, err.msg);
    if (rc) {
        hlab_model_destroy(m);
        return;
    }
    double *grad = malloc((size_t)ne * sizeof *grad), *params = malloc((size_t)ne * sizeof *params);
    hk64->to_host(hk64, grad, HK_F64, hlab_model_grads(m), HK_F64, (size_t)ne);
    hk64->to_host(hk64, params, HK_F64, hlab_model_params(m), HK_F64, (size_t)ne);

    const double h = 3e-5; /* balances truncation (h²) against rounding (ε/h) */
    int skipped = 0, checked = 0;
    double worst = 0;
    for (int i = 0; i < nt; i++) {
        const hlab_param_info *t = hlab_model_param(m, i);
        int n = t->numel <= samples ? (int)t->numel : samples;
        double num[SAMPLES], ana[SAMPLES];
        int k = 0;
        for (int s = 0; s < n; s++) {
            int64_t j = t->numel <= samples ? s : (int64_t)hlab_rng_below(&r, (uint64_t)t->numel);
            int64_t idx = t->offset + j;
            double p0 = params[idx];
            set_param(m, idx, p0 + h);
            double lp = loss_at(m, tok, tgt);
            set_param(m, idx, p0 - h);
            double lm = loss_at(m, tok, tgt);
            double q = (lp - lm) / (2 * h);
            if (moe) {
                set_param(m, idx, p0 + h / 2);
                double lp2 = loss_at(m, tok, tgt);
                set_param(m, idx, p0 - h / 2);
                double lm2 = loss_at(m, tok, tgt);
                double q2 = (lp2 - lm2) / h;
                if (fabs(q - q2) > 1e-6 * (fabs(q2) + 1e-3)) {
                    skipped++;
                    set_param(m, idx, p0);
                    continue;
                }
            }
            set_param(m, idx, p0);
            num[k] = q;
            ana[k] = grad[idx];
            k++;
        }
        checked += k;
        double dn = 0, an = 0;
        for (int s = 0; s < k; s++) {
            dn += (num[s] - ana[s]) * (num[s] - ana[s]);
            an += ana[s] * ana[s];
        }
        double e = sqrt(dn) / fmax(sqrt(an), 1e-6);
        worst = fmax(worst, e);
        CHECK(e <= 1e-6, "%s: %s: gradient relative error %.3e (|grad| %.3e over %d elements)", what, t->name, e,
              sqrt(an), k);
    }
    CHECK(skipped * 10 <= checked, "%s: %d of %d perturbations flipped the MoE routing", what, skipped,
          skipped + checked);
    total_skipped += skipped;
    total_checked += checked;
    printf("%-58s %3d tensors, %4d elements, worst relative error %.1e\n", what, nt, checked, worst);

    /* the fp32 reference backend computes the same loss */
    hlab_model *m32 = hlab_model_create(cfg, hk32, B, T, &err);
    CHECK(m32 != NULL, "%s: fp32 create: %s", what, err.msg);
    if (m32) {
        hlab_model_init(m32, 11, &err);
        randomize(m32, 1234);
        float l32 = 0;
        rc = hlab_model_forward(m32, tok, tgt, B, &l32, NULL, &err);
        double l64 = loss_at(m, tok, tgt);
        CHECK(rc == HLAB_OK && fabs(l32 - l64) <= 1e-5 * fabs(l64), "%s: fp32 loss %.9g vs f64 %.12g (%s)", what,
              (double)l32, l64, err.msg);
        hlab_model_destroy(m32);
    }
    free(grad);
    free(params);
    hlab_model_destroy(m);
}

/* Init is deterministic per seed, follows MODEL.md §7 and §4, decayed tensors come first. */
static void test_init(void) {
    hlab_model_config c;
    base_config(&c);
    c.n_layers = 3;
    strcpy(c.layout, "AMP");
    c.fuse_op = HLAB_FUSE_CONCAT;
    c.channel_mamba = HLAB_CHANNEL_MOE;
    c.moe_shared = 1;
    hlab_err err = {0};
    hlab_model *a = hlab_model_create(&c, hk64, B, T, &err), *b = hlab_model_create(&c, hk64, B, T, &err);
    CHECK(a && b, "init models: %s", err.msg);
    if (!a || !b) return;
    int nt;
    int64_t ne;
    hlab_model_n_params(a, &nt, &ne);
    double *pa = malloc((size_t)ne * sizeof *pa), *pb = malloc((size_t)ne * sizeof *pb);
    hlab_model_init(a, 5, &err);
    hlab_model_init(b, 5, &err);
    hk64->to_host(hk64, pa, HK_F64, hlab_model_params(a), HK_F64, (size_t)ne);
    hk64->to_host(hk64, pb, HK_F64, hlab_model_params(b), HK_F64, (size_t)ne);
    CHECK(!memcmp(pa, pb, (size_t)ne * sizeof *pa), "same seed, same weights");
    hlab_model_init(b, 6, &err);
    hk64->to_host(hk64, pb, HK_F64, hlab_model_params(b), HK_F64, (size_t)ne);
    CHECK(memcmp(pa, pb, (size_t)ne * sizeof *pa), "another seed, other weights");

    hlab_counts k;
    hlab_count(hlab_model_config_of(a), T, &k, &err);
    CHECK(k.params == ne, "hlab_count %lld == model elements %lld", (long long)k.params, (long long)ne);
    int64_t n_decay = hlab_model_n_decay(a), covered = 0;
    for (int i = 0; i < nt; i++) {
        const hlab_param_info *t = hlab_model_param(a, i);
        const double *x = pa + t->offset;
        covered += t->numel;
        CHECK(t->decay ? t->offset + t->numel <= n_decay : t->offset >= n_decay, "%s: decayed tensors first", t->name);
        double mean = 0, sq = 0, lo = INFINITY, hi = -INFINITY;
        for (int64_t j = 0; j < t->numel; j++) {
            mean += x[j];
            sq += x[j] * x[j];
            lo = fmin(lo, x[j]);
            hi = fmax(hi, x[j]);
        }
        mean /= t->numel;
        double sd = sqrt(sq / t->numel - mean * mean);
        if (!strcmp(t->name, "embed.weight")) CHECK(fabs(sd - 0.02) < 0.002, "embed std %.4f", sd);
        if (strstr(t->name, "attn.out.weight")) CHECK(fabs(sd - 0.02 / sqrt(6.0)) < 0.003, "Wo std %.4f", sd);
        if (strstr(t->name, "A_log")) CHECK(lo >= 0 && hi <= log(16.0), "A_log in [0, log 16]: %g %g", lo, hi);
        if (strstr(t->name, "dt_bias")) {
            double dlo = log1p(exp(lo)), dhi = log1p(exp(hi)); /* softplus back to Δ0 */
            CHECK(dlo >= 1e-3 * 0.999 && dhi <= 0.1 * 1.001, "Δ0 in [1e-3, 1e-1]: %g %g", dlo, dhi);
        }
        if (ends_with(t->name, ".D") || (strstr(t->name, "norm") && ends_with(t->name, "weight"))) CHECK(lo == 1 && hi == 1, "%s is ones", t->name);
        if (strstr(t->name, "conv.")) CHECK(lo >= -0.5 && hi <= 0.5 && sd > 0.1, "%s in ±1/√K", t->name);
    }
    CHECK(covered == ne, "tensors cover the block");

    /* at init the logits are small, so the loss is close to ln V */
    hlab_rng r0;
    hlab_rng_seed(&r0, 4);
    int32_t tk[B * T], tg[B * T];
    random_tokens(&r0, tk, B * T, c.vocab_size);
    random_tokens(&r0, tg, B * T, c.vocab_size);
    hlab_model_forward(a, tk, tg, B, NULL, NULL, &err);
    double l0 = hlab_model_last_loss(a);
    CHECK(fabs(l0 - log((double)c.vocab_size)) < 0.05 * log((double)c.vocab_size), "init loss %.4f vs ln V %.4f", l0,
          log((double)c.vocab_size));

    /* Bn < B: the first row alone gives the first row's token losses */
    hlab_rng r;
    hlab_rng_seed(&r, 3);
    int32_t tok[B * T], tgt[B * T];
    random_tokens(&r, tok, B * T, c.vocab_size);
    random_tokens(&r, tgt, B * T, c.vocab_size);
    float l2[B * T], l1[T];
    hlab_model_forward(a, tok, tgt, B, NULL, NULL, &err);
    hlab_model_token_losses(a, l2, &err);
    int rc = hlab_model_forward(a, tok, tgt, 1, NULL, NULL, &err);
    hlab_model_token_losses(a, l1, &err);
    CHECK(rc == HLAB_OK, "Bn = 1: %s", err.msg);
    CHECK_REL(l1, l2, (size_t)T, 1e-12, "token losses of row 0 with Bn = 1");
    tok[3] = c.vocab_size;
    CHECK(hlab_model_forward(a, tok, tgt, B, NULL, NULL, &err) == HLAB_EINVAL && strstr(err.msg, "tokens[3]"),
          "bad token: %s", err.msg);
    CHECK(hlab_model_forward(a, tok, tgt, B + 1, NULL, NULL, &err) == HLAB_EINVAL, "Bn > B refused");
    tok[3] = 0;
    CHECK(hlab_model_forward(a, tok, NULL, B, NULL, NULL, &err) == HLAB_OK, "logits-only forward: %s", err.msg);
    CHECK(hlab_model_backward(a, &err) == HLAB_EINVAL && strstr(err.msg, "forward with targets"),
          "backward without targets refused: %s", err.msg);
    CHECK(hlab_model_token_losses(a, l1, &err) == HLAB_EINVAL, "no token losses without targets");

    /* a config that cannot be built fails at create with resolve's message */
    hlab_model_config bad = c;
    bad.moe_top_k = 5;
    CHECK(hlab_model_create(&bad, hk64, B, T, &err) == NULL && strstr(err.msg, "model.moe.top_k 5 > model.moe.experts 3"),
          "create refuses a bad config: %s", err.msg);
    free(pa);
    free(pb);
    hlab_model_destroy(a);
    hlab_model_destroy(b);
}

int main(void) {
    hlab_err err = {0};
    if (getenv("HLAB_TEST_QUICK")) samples = 3;
    hk64 = hk_cpu_create(HK_F64, 1, &err);
    hk32 = hk_cpu_create(HK_F32, 1, &err);
    if (!hk64 || !hk32) {
        fprintf(stderr, "cpu backends: %s\n", err.msg);
        return 1;
    }
    test_init();

    hlab_model_config c;
    char what[128];
    /* pure attention */
    base_config(&c);
    c.ratio_attn = 1, c.ratio_mamba = 0;
    grad_check("attention rmsnorm dense", &c, 0);
    c.norm = HLAB_NORM_LAYER, c.qk_norm = 1, c.window = 5, c.tied_head = 0;
    c.channel_attn = HLAB_CHANNEL_MOE, c.moe_top_k = 2, c.moe_shared = 1;
    grad_check("attention layernorm qk-norm window untied moe-top2+shared", &c, 1);
    base_config(&c);
    c.ratio_attn = 1, c.ratio_mamba = 0, c.rope = 0, c.n_kv_heads = 3;
    grad_check("attention no-rope mha", &c, 0);
    /* pure Mamba-2 */
    base_config(&c);
    c.ratio_attn = 0, c.ratio_mamba = 1;
    grad_check("mamba rmsnorm dense", &c, 0);
    c.norm = HLAB_NORM_LAYER, c.mamba_groups = 2, c.channel_mamba = HLAB_CHANNEL_MOE, c.moe_top_k = 1;
    grad_check("mamba layernorm groups2 moe-top1", &c, 1);
    base_config(&c);
    c.ratio_attn = 0, c.ratio_mamba = 1, c.channel_mamba = HLAB_CHANNEL_NONE;
    grad_check("mamba no channel", &c, 0);
    /* sequential hybrid */
    base_config(&c);
    c.n_layers = 3, c.ratio_attn = 1, c.ratio_mamba = 2; /* MAM? uniform: round(1) = 1 → MMA */
    grad_check("hybrid MMA rmsnorm dense", &c, 0);
    c.norm = HLAB_NORM_LAYER, c.channel_attn = HLAB_CHANNEL_MOE, c.moe_top_k = 1, c.qk_norm = 1;
    grad_check("hybrid MMA layernorm attn-moe-top1", &c, 1);
    /* parallel with each fusion operator, dense and MoE, alternating norms; one mixes P with A and M */
    for (int f = HLAB_FUSE_ADD; f <= HLAB_FUSE_GATE; f++) {
        for (int moe = 0; moe <= 1; moe++) {
            base_config(&c);
            c.fusion = HLAB_FUSION_PARALLEL;
            c.fuse_op = (hlab_fuse_op)f;
            c.norm = (f + moe) % 2 ? HLAB_NORM_LAYER : HLAB_NORM_RMS;
            if (moe) {
                c.channel_parallel = HLAB_CHANNEL_MOE;
                c.moe_top_k = f % 2 ? 1 : 2;
                c.moe_shared = f == HLAB_FUSE_GATE;
            }
            if (f == HLAB_FUSE_CONCAT && !moe) {
                c.n_layers = 3;
                strcpy(c.layout, "PAM");
            }
            snprintf(what, sizeof what, "parallel %s %s %s%s", hlab_fuse_op_name((hlab_fuse_op)f),
                     hlab_norm_name(c.norm), moe ? "moe-top" : "dense", moe ? (c.moe_top_k == 1 ? "1" : "2") : "");
            grad_check(what, &c, moe);
        }
    }
    printf("checked %d perturbed elements, skipped %d that flipped MoE routing\n", total_checked, total_skipped);
    hk_destroy(hk32);
    hk_destroy(hk64);
    return test_summary();
}
