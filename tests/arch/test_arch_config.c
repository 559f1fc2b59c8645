/* tests/arch/test_arch_config.c — config defaults, layout derivation for every
 * placement rule, validation messages, JSON, and exact parameter / FLOP counts
 * against values computed by hand (the arithmetic is in the comments).
 */
#include <string.h>

#include "arch/arch.h"
#include "test.h"

static void check_layout(int L, int a, int m, hlab_placement p, const int *idx, int n_idx, const char *want) {
    char out[HLAB_MAX_LAYERS + 1];
    memset(out, '?', sizeof out);
    hlab_err err = {0};
    int rc = hlab_layout_derive(L, a, m, p, idx, n_idx, out, &err);
    CHECK(rc == HLAB_OK, "layout %d:%d over %d (%s): %s", a, m, L, hlab_placement_name(p), err.msg);
    CHECK(rc || !strcmp(out, want), "layout %d:%d over %d (%s): got %s, want %s", a, m, L, hlab_placement_name(p), out,
          want);
}

static void test_layouts(void) {
    /* n_attn = round(L·a/(a+m)); uniform puts the attention layer last in each period */
    check_layout(12, 1, 5, HLAB_PLACE_UNIFORM, NULL, 0, "MMMMMAMMMMMA"); /* 2 periods of 6 */
    check_layout(8, 1, 3, HLAB_PLACE_UNIFORM, NULL, 0, "MMMAMMMA");     /* n = 2: layers 3, 7 */
    check_layout(8, 1, 3, HLAB_PLACE_FRONT, NULL, 0, "AAMMMMMM");
    check_layout(8, 1, 3, HLAB_PLACE_BACK, NULL, 0, "MMMMMMAA");
    check_layout(8, 1, 3, HLAB_PLACE_MIDDLE, NULL, 0, "MMMAAMMM"); /* start ⌊(8−2)/2⌋ = 3 */
    check_layout(5, 1, 1, HLAB_PLACE_UNIFORM, NULL, 0, "AMAMA");   /* n = round(2.5) = 3: ⌊5/3⌋−1, ⌊10/3⌋−1, 4 */
    check_layout(5, 1, 1, HLAB_PLACE_MIDDLE, NULL, 0, "MAAAM");    /* start ⌊(5−3)/2⌋ = 1 */
    check_layout(4, 1, 11, HLAB_PLACE_UNIFORM, NULL, 0, "MMMA");   /* round(1/3) = 0, raised to 1 since a > 0 */
    check_layout(4, 5, 1, HLAB_PLACE_UNIFORM, NULL, 0, "AAMA");    /* round(10/3) = 3: layers 0, 1, 3 */
    check_layout(3, 1, 0, HLAB_PLACE_UNIFORM, NULL, 0, "AAA");
    check_layout(3, 0, 1, HLAB_PLACE_BACK, NULL, 0, "MMM");
    check_layout(2, 9, 1, HLAB_PLACE_FRONT, NULL, 0, "AM"); /* round(1.8) = 2 = L, lowered to 1 since m > 0 */
    int idx[] = {5, 1};
    check_layout(6, 1, 5, HLAB_PLACE_INDICES, idx, 2, "MAMMMA"); /* indices: ratio unused, order free */

    char out[HLAB_MAX_LAYERS + 1];
    hlab_err err = {0};
    int dup[] = {1, 1}, far[] = {0, 6}, many[] = {0, 1, 2, 3};
    CHECK(hlab_layout_derive(6, 1, 1, HLAB_PLACE_INDICES, dup, 2, out, &err) == HLAB_EINVAL && strstr(err.msg, "twice"),
          "duplicate index: %s", err.msg);
    CHECK(hlab_layout_derive(6, 1, 1, HLAB_PLACE_INDICES, far, 2, out, &err) == HLAB_EINVAL &&
              strstr(err.msg, "index 6 is out of range"),
          "index out of range: %s", err.msg);
    CHECK(hlab_layout_derive(3, 1, 1, HLAB_PLACE_INDICES, many, 4, out, &err) == HLAB_EINVAL &&
              strstr(err.msg, "4 attention layer indices but the layout has only 3 layers"),
          "more attention layers than layers: %s", err.msg);
    CHECK(hlab_layout_derive(3, 0, 0, HLAB_PLACE_UNIFORM, NULL, 0, out, &err) == HLAB_EINVAL &&
              strstr(err.msg, "model.ratio 0:0"),
          "ratio 0:0: %s", err.msg);

    hlab_model_config c;
    hlab_model_config_defaults(&c);
    c.n_layers = 4;
    c.fusion = HLAB_FUSION_PARALLEL;
    CHECK(hlab_model_config_resolve(&c, &err) == HLAB_OK && !strcmp(c.layout, "PPPP"), "parallel layout: %s %s",
          c.layout, err.msg);
}

/* resolve must fail with a message containing `want` */
static void expect_invalid(const hlab_model_config *c0, const char *want) {
    hlab_model_config c = *c0;
    hlab_err err = {0};
    int rc = hlab_model_config_resolve(&c, &err);
    CHECK(rc == HLAB_EINVAL && strstr(err.msg, want), "expected an error containing '%s', got rc %d '%s'", want, rc,
          err.msg);
}

static void test_validation(void) {
    hlab_model_config c, base;
    hlab_model_config_defaults(&base);
    c = base;
    c.d_model = 500;
    expect_invalid(&c, "model.d_model 500 is not divisible by model.head_dim 64");
    c = base;
    c.channel_attn = HLAB_CHANNEL_MOE;
    c.moe_experts = 2;
    c.moe_top_k = 3;
    expect_invalid(&c, "model.moe.top_k 3 > model.moe.experts 2");
    c = base;
    c.n_layers = 8;
    c.placement = HLAB_PLACE_INDICES;
    c.n_attn_indices = 9;
    for (int i = 0; i < 9; i++) c.attn_indices[i] = i;
    expect_invalid(&c, "9 attention layer indices but the layout has only 8 layers");
    c = base;
    strcpy(c.layout, "MMXMMA");
    expect_invalid(&c, "has 'X' at layer 2");
    c = base;
    strcpy(c.layout, "MMA");
    expect_invalid(&c, "model.layout 'MMA' has 3 layers but model.n_layers is 6");
    c = base;
    c.n_heads = 6;
    c.n_kv_heads = 4;
    c.d_model = 384;
    expect_invalid(&c, "model.n_heads 6 is not divisible by model.n_kv_heads 4");
    c = base;
    c.d_model = 96; /* d_inner 192 with headdim 64: 3 heads, fine; with headdim 128 not */
    c.head_dim = 32;
    c.mamba_headdim = 128;
    expect_invalid(&c, "is not divisible by model.mamba.headdim 128");
    c = base;
    c.vocab_size = 0;
    expect_invalid(&c, "model.vocab_size 0");
    c = base;
    c.n_layers = 0;
    expect_invalid(&c, "model.n_layers 0");

    /* defaults resolve, and resolving twice changes nothing */
    hlab_err err = {0};
    c = base;
    CHECK(hlab_model_config_resolve(&c, &err) == HLAB_OK, "defaults resolve: %s", err.msg);
    hlab_model_config again = c;
    CHECK(hlab_model_config_resolve(&again, &err) == HLAB_OK && !memcmp(&again, &c, sizeof c), "resolve is idempotent");
    CHECK(c.n_heads == 4 && c.n_kv_heads == 4 && c.d_ff == 704 && !strcmp(c.layout, "MMMMMA"),
          "derived: heads %d kv %d d_ff %d layout %s", c.n_heads, c.n_kv_heads, c.d_ff, c.layout);
    /* d_ff: 8/3·256 = 682.67 → 683 → next multiple of 64 = 704 */

    /* names round-trip */
    for (int i = 0; i < 5; i++) {
        hlab_fuse_op f;
        hlab_placement p;
        CHECK(!hlab_fuse_op_parse(hlab_fuse_op_name((hlab_fuse_op)i), &f) && (int)f == i, "fuse name %d", i);
        CHECK(!hlab_placement_parse(hlab_placement_name((hlab_placement)i), &p) && (int)p == i, "placement name %d", i);
    }
    hlab_norm_kind nk;
    hlab_channel ch;
    CHECK(!hlab_norm_parse("layernorm", &nk) && nk == HLAB_NORM_LAYER, "norm parse");
    CHECK(!hlab_channel_parse("none", &ch) && ch == HLAB_CHANNEL_NONE, "channel parse");
    CHECK(hlab_channel_parse("sparse", &ch) == HLAB_EINVAL && hlab_norm_parse(NULL, &nk) == HLAB_EINVAL, "bad names");

    /* JSON: every section present, stable */
    hlab_buf a, b;
    hlab_buf_init(&a);
    hlab_buf_init(&b);
    CHECK(hlab_model_config_to_json(&c, &a, &err) == HLAB_OK && hlab_model_config_to_json(&c, &b, &err) == HLAB_OK,
          "json: %s", err.msg);
    CHECK(!strcmp(a.data, b.data), "json is stable");
    const char *keys[] = {"\"d_model\":256", "\"layout\":\"MMMMMA\"", "\"ratio\":\"1:5\"", "\"mamba\":{\"expand\":2",
                          "\"moe\":{\"experts\":", "\"d_ff\":704", "\"fuse\":\"add\"", "\"norm\":\"rmsnorm\""};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) CHECK(strstr(a.data, keys[i]), "json lacks %s: %s", keys[i], a.data);
    hlab_buf_free(&a);
    hlab_buf_free(&b);
}

static void resolve_ok(hlab_model_config *c) {
    hlab_err err = {0};
    int rc = hlab_model_config_resolve(c, &err);
    CHECK(rc == HLAB_OK, "resolve: %s", err.msg);
}

#define NEAR(a, b) (fabs((double)(a) - (double)(b)) <= 1e-9 * (fabs((double)(b)) + 1))

static void test_counts(void) {
    hlab_counts k;
    hlab_err err = {0};

    /* 1. Pure attention, D=64, L=2, V=256, head_dim 32 → 2 heads, 2 kv heads,
     * d_ff = 8/3·64 = 170.7 → 171 → 192 (multiple of 64), RMSNorm, tied head.
     *   embed 256·64 = 16384
     *   layer: norm1 64 + qkv (2+2+2)·32·64 = 12288 + out 64·64 = 4096 + norm2 64
     *          + w13 2·192·64 = 24576 + w2 64·192 = 12288            = 53376
     *   total 16384 + 2·53376 + final norm 64 = 123200; non-embedding 106816. */
    hlab_model_config c;
    hlab_model_config_defaults(&c);
    c.d_model = 64;
    c.n_layers = 2;
    c.head_dim = 32;
    c.ratio_attn = 1;
    c.ratio_mamba = 0;
    resolve_ok(&c);
    CHECK(hlab_count(&c, 16, &k, &err) == HLAB_OK, "count: %s", err.msg);
    CHECK(k.params == 123200 && k.params_embedding == 16384 && k.params_non_embedding == 106816 &&
              k.params_active == 123200,
          "attention params %lld/%lld/%lld/%lld", (long long)k.params, (long long)k.params_embedding,
          (long long)k.params_non_embedding, (long long)k.params_active);
    /* FLOPs at T = 16: matmuls 2·(12288+4096+24576+12288) = 106496 per layer, ×2,
     * + head 2·64·256 = 32768 → 245760. Attention: mean visible keys (T+1)/2 = 8.5,
     * 4·Hq·dh·8.5 = 4·2·32·8.5 = 2176 per layer → 4352. Train = 3·(245760+4352) = 750336.
     * KV cache: 2 (k,v) · 2 bytes · Hkv 2 · dh 32 = 256 B per layer → 512. */
    CHECK(NEAR(k.fwd_matmul_flops_per_token, 245760) && NEAR(k.fwd_attn_flops_per_token, 4352) &&
              NEAR(k.fwd_ssd_flops_per_token, 0) && NEAR(k.train_flops_per_token, 750336) &&
              NEAR(k.infer_bytes_per_token, 512),
          "attention flops %.1f %.1f %.1f %.1f bytes %.1f", k.fwd_matmul_flops_per_token, k.fwd_attn_flops_per_token,
          k.fwd_ssd_flops_per_token, k.train_flops_per_token, k.infer_bytes_per_token);
    CHECK(k.elementwise_flops_per_token > 0, "elementwise counted apart");
    /* window 4 at T = 16: keys (1+2+3+4·13)/16 = 3.625 → 4·64·3.625 = 928 per layer;
     * KV cache holds 4 of 16 tokens: 512·4/16 = 128 */
    c.window = 4;
    hlab_count(&c, 16, &k, &err);
    CHECK(NEAR(k.fwd_attn_flops_per_token, 1856) && NEAR(k.infer_bytes_per_token, 128), "window: %.2f %.2f",
          k.fwd_attn_flops_per_token, k.infer_bytes_per_token);

    /* 2. Pure Mamba-2, D=32, L=3, V=50, expand 2 → d_inner 64, headdim 16 → H 4,
     * d_state 8, G 1, K 4, no channel sublayer, LayerNorm, untied head.
     *   embed 50·32 = 1600, head 1600
     *   layer: norm1 2·32 = 64; in_proj (2·64 + 2·8 + 4)·32 = 148·32 = 4736;
     *          conv channels 64+16 = 80: weight 80·4 = 320, bias 80; A_log, dt_bias, D 3·4 = 12;
     *          gated norm 64; out 32·64 = 2048                               = 7324
     *   total 3200 + 3·7324 + final norm 64 = 25236; non-embedding 22036. */
    hlab_model_config_defaults(&c);
    c.d_model = 32;
    c.n_layers = 3;
    c.vocab_size = 50;
    c.ratio_attn = 0;
    c.ratio_mamba = 1;
    c.mamba_headdim = 16;
    c.mamba_d_state = 8;
    c.mamba_chunk = 4;
    c.channel_mamba = HLAB_CHANNEL_NONE;
    c.norm = HLAB_NORM_LAYER;
    c.tied_head = 0;
    resolve_ok(&c);
    CHECK(!strcmp(c.layout, "MMM"), "pure mamba layout %s", c.layout);
    hlab_count(&c, 10, &k, &err);
    CHECK(k.params == 25236 && k.params_embedding == 3200 && k.params_non_embedding == 22036,
          "mamba params %lld/%lld/%lld", (long long)k.params, (long long)k.params_embedding,
          (long long)k.params_non_embedding);
    /* SSD at T = 10, chunk 4 (chunks 4, 4, 2): mean in-chunk positions
     * q̄ = (10 + 10 + 3)/10 = 2.3, 3 chunks. Per layer, H = 4, H·P = 64, N = 8:
     *   2·H·N·q̄ = 147.2 (C·Bᵀ per head); 2·HP·q̄ = 294.4; 4·HP·N = 2048; 2·HP·N·3/10 = 307.2
     *   → 2796.8 per layer, × 3 layers = 8390.4.
     * Matmuls: 2·32·148 + 2·64·32 = 13568 per layer → 40704, + head 2·32·50 = 3200 → 43904.
     * State bytes: 2·(H·P·N + (K−1)·Cc)/T = 2·(512 + 240)/10 = 150.4 per layer → 451.2. */
    CHECK(NEAR(k.fwd_ssd_flops_per_token, 8390.4) && NEAR(k.fwd_matmul_flops_per_token, 43904) &&
              NEAR(k.fwd_attn_flops_per_token, 0) && NEAR(k.infer_bytes_per_token, 451.2),
          "mamba flops ssd %.2f mm %.2f bytes %.2f", k.fwd_ssd_flops_per_token, k.fwd_matmul_flops_per_token,
          k.infer_bytes_per_token);

    /* 3. Parallel MoE hybrid, concat fusion, D=48, L=2, V=100, head_dim 16 → 3 heads,
     * n_kv_heads 1; attention branch 3/2 = 1 head, 1 kv head; Mamba branch
     * 48/16 = 3 heads of 16 → d_inner 48, d_state 8; MoE E=4, k=2, 1 shared, F=32; tied, RMSNorm.
     *   embed 100·48 = 4800
     *   layer: norm1 48; qkv (1+2)·16·48 = 2304; attn out 48·16 = 768;
     *          in_proj (2·48 + 16 + 3)·48 = 5520; conv (48+16)·4 = 256 + bias 64; 3·3 = 9;
     *          gated norm 48; mamba out 48·48 = 2304; fuse.weight 48·96 = 4608;
     *          norm2 48; router 4·48 = 192; w13 4·64·48 = 12288; w2 4·48·32 = 6144;
     *          shared w13 64·48 = 3072; shared w2 48·32 = 1536                = 39209
     *   total 4800 + 2·39209 + 48 = 83266; active drops (4−2)·3·32·48 = 9216 per layer → 64834. */
    hlab_model_config_defaults(&c);
    c.d_model = 48;
    c.n_layers = 2;
    c.vocab_size = 100;
    c.fusion = HLAB_FUSION_PARALLEL;
    c.fuse_op = HLAB_FUSE_CONCAT;
    c.head_dim = 16;
    c.n_kv_heads = 1;
    c.mamba_headdim = 16;
    c.mamba_d_state = 8;
    c.channel_parallel = HLAB_CHANNEL_MOE;
    c.moe_experts = 4;
    c.moe_top_k = 2;
    c.moe_shared = 1;
    c.moe_d_ff = 32;
    resolve_ok(&c);
    hlab_count(&c, 8, &k, &err);
    CHECK(c.par_attn_heads == 1 && c.par_attn_kv_heads == 1 && c.par_mamba_heads == 3, "branch split %d %d %d",
          c.par_attn_heads, c.par_attn_kv_heads, c.par_mamba_heads);
    CHECK(k.params == 83266 && k.params_embedding == 4800 && k.params_active == 64834, "moe params %lld/%lld/%lld",
          (long long)k.params, (long long)k.params_embedding, (long long)k.params_active);
    int64_t a2 = hlab_activation_bytes(&c, 2, 8, 2), a4 = hlab_activation_bytes(&c, 4, 8, 2);
    CHECK(a2 > 0 && llabs(a4 - 2 * a2) <= 2, "activation bytes scale with B: %lld, %lld", (long long)a2, (long long)a4);
}

int main(void) {
    test_layouts();
    test_validation();
    test_counts();
    return test_summary();
}
