/* tests/train/test_point.c — the point's dotted keys: strict parsing with
 * messages naming the key, YAML sections (nested and dotted keys, positions,
 * did-you-mean), JSON output, and the learning-rate schedule. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "test.h"
#include "train/train.h"

static void expect_set_error(const char *key, const char *value, const char *want) {
    hlab_point p;
    hlab_point_defaults(&p);
    hlab_point before = p;
    hlab_err err = {0};
    int rc = hlab_point_set_str(&p, key, value, &err);
    CHECK(rc != HLAB_OK, "%s = '%s' should fail", key, value);
    CHECK(strstr(err.msg, want) != NULL, "%s = '%s': message '%s' lacks '%s'", key, value, err.msg, want);
    CHECK(memcmp(&p, &before, sizeof p) == 0, "%s = '%s': a failed set changed the point", key, value);
}

static void test_set_str(void) {
    hlab_point p;
    hlab_point_defaults(&p);
    hlab_err err = {0};
    CHECK(!hlab_point_set_str(&p, "model.d_model", "136", &err) && p.model.d_model == 136, "d_model: %s", err.msg);
    CHECK(!hlab_point_set_str(&p, "train.lr", "2.5e-3", &err) && fabsf(p.train.lr - 2.5e-3f) < 1e-9f, "lr");
    CHECK(!hlab_point_set_str(&p, "train.steps", "3e3", &err) && p.train.steps == 3000, "steps written 3e3");
    CHECK(!hlab_point_set_str(&p, "train.seed", "18446744073709551615", &err) && p.train.seed == UINT64_MAX, "seed u64");
    CHECK(!hlab_point_set_str(&p, "model.ratio", "2:7", &err) && p.model.ratio_attn == 2 && p.model.ratio_mamba == 7,
          "ratio");
    CHECK(!hlab_point_set_str(&p, "model.placement", "back", &err) && p.model.placement == HLAB_PLACE_BACK, "placement");
    CHECK(!hlab_point_set_str(&p, "model.placement", "[1, 4,9]", &err) && p.model.placement == HLAB_PLACE_INDICES &&
              p.model.n_attn_indices == 3 && p.model.attn_indices[2] == 9,
          "placement indices: %s", err.msg);
    CHECK(!hlab_point_set_str(&p, "model.layout", "MMPA", &err) && !strcmp(p.model.layout, "MMPA"), "layout");
    CHECK(!hlab_point_set_str(&p, "model.norm", "layernorm", &err) && p.model.norm == HLAB_NORM_LAYER, "norm");
    CHECK(!hlab_point_set_str(&p, "model.fusion", "parallel", &err) && p.model.fusion == HLAB_FUSION_PARALLEL, "fusion");
    CHECK(!hlab_point_set_str(&p, "model.fuse", "gate", &err) && p.model.fuse_op == HLAB_FUSE_GATE, "fuse");
    CHECK(!hlab_point_set_str(&p, "model.ffn", "moe", &err) && p.model.channel_attn == HLAB_CHANNEL_MOE &&
              p.model.channel_mamba == HLAB_CHANNEL_MOE && p.model.channel_parallel == HLAB_CHANNEL_MOE,
          "ffn sets every kind");
    CHECK(!hlab_point_set_str(&p, "model.ffn.mamba", "none", &err) && p.model.channel_mamba == HLAB_CHANNEL_NONE &&
              p.model.channel_attn == HLAB_CHANNEL_MOE,
          "ffn.mamba alone");
    CHECK(!hlab_point_set_str(&p, "model.rope", "none", &err) && p.model.rope == 0, "rope none");
    CHECK(!hlab_point_set_str(&p, "model.qk_norm", "true", &err) && p.model.qk_norm == 1, "qk_norm");
    CHECK(!hlab_point_set_str(&p, "model.mamba.d_state", "16", &err) && p.model.mamba_d_state == 16, "mamba.d_state");
    CHECK(!hlab_point_set_str(&p, "model.moe.top_k", "2", &err) && p.model.moe_top_k == 2, "moe.top_k");
    CHECK(!hlab_point_set_str(&p, "data.tokenizer", "shards", &err) && p.data.tokenizer == HLAB_TOK_SHARDS, "tokenizer");
    CHECK(!hlab_point_set_str(&p, "data.train", "/x/y.txt", &err) && !strcmp(p.data.train, "/x/y.txt"), "data.train");

    expect_set_error("model.d_model", "abc", "model.d_model: expected a positive integer, got 'abc'");
    expect_set_error("model.d_model", "0", "expected a positive integer");
    expect_set_error("model.d_model", "12.5", "expected a positive integer");
    expect_set_error("model.window", "-1", "model.window: expected a non-negative integer");
    expect_set_error("train.lr", "fast", "train.lr: expected a non-negative number");
    expect_set_error("train.lr", "-1e-3", "train.lr");
    expect_set_error("model.ratio", "1/5", "model.ratio: expected attention:mamba like 1:5");
    expect_set_error("model.ratio", "0:0", "model.ratio");
    expect_set_error("model.placement", "sideways", "model.placement: expected uniform, front, middle, back");
    expect_set_error("model.layout", "MMX", "model.layout: expected a string over A, M and P");
    expect_set_error("model.norm", "batchnorm", "model.norm: expected rmsnorm or layernorm");
    expect_set_error("model.fuse", "multiply", "model.fuse: expected add, mean, normadd, concat or gate");
    expect_set_error("model.ffn.attention", "sparse", "expected dense, moe or none");
    expect_set_error("model.qk_norm", "maybe", "model.qk_norm: expected true or false");
    expect_set_error("data.tokenizer", "bpe", "data.tokenizer: expected bytes or shards");
    expect_set_error("train.seed", "-3", "train.seed");
    expect_set_error("model.d_modle", "128", "did you mean 'model.d_model'");
    expect_set_error("train.stepz", "1", "did you mean 'train.steps'");

    /* every listed key is settable from its own JSON rendering's kind of value */
    const char *const *keys = hlab_point_keys();
    int n = 0;
    for (; keys[n]; n++) CHECK(!strncmp(keys[n], "model.", 6) || !strncmp(keys[n], "train.", 6) ||
                                   !strncmp(keys[n], "data.", 5),
                               "key %s outside the three sections", keys[n]);
    CHECK(n > 50, "only %d keys listed", n);
}

static const char *point_yaml = "model:\n"
                                "  d_model: 96\n"
                                "  n_layers: 4\n"
                                "  ratio: 1:3\n"
                                "  placement: [0, 2]\n"
                                "  mamba:\n"
                                "    d_state: 32\n"
                                "    chunk: 16\n"
                                "  moe.experts: 4\n"
                                "  ffn: {attention: moe}\n"
                                "train: {steps: 50, lr: 1e-3, seed: 5}\n"
                                "data:\n"
                                "  train: some.txt\n"
                                "  val_fraction: 0.1\n";

static int load_text(const char *text, hlab_point *p, hlab_err *err) {
    hlab_yaml_doc doc;
    int rc = hlab_yaml_load_string("point.yaml", text, &doc, err);
    if (rc) return rc;
    for (int i = 0; i < doc.root->n && !rc; i++)
        rc = hlab_point_apply_section(p, doc.root->items[2 * i]->scalar, &doc, doc.root->items[2 * i + 1], err);
    hlab_yaml_free(&doc);
    return rc;
}

static void expect_yaml_error(const char *text, const char *want) {
    hlab_point p;
    hlab_point_defaults(&p);
    hlab_err err = {0};
    int rc = load_text(text, &p, &err);
    CHECK(rc != HLAB_OK, "YAML should fail: %s", text);
    CHECK(strstr(err.msg, want) != NULL, "message '%s' lacks '%s'", err.msg, want);
}

static void test_yaml(void) {
    hlab_point p;
    hlab_point_defaults(&p);
    hlab_err err = {0};
    CHECK(load_text(point_yaml, &p, &err) == HLAB_OK, "load: %s", err.msg);
    CHECK(p.model.d_model == 96 && p.model.n_layers == 4, "model ints");
    CHECK(p.model.ratio_attn == 1 && p.model.ratio_mamba == 3, "ratio 1:3 unquoted");
    CHECK(p.model.placement == HLAB_PLACE_INDICES && p.model.n_attn_indices == 2 && p.model.attn_indices[1] == 2,
          "placement list");
    CHECK(p.model.mamba_d_state == 32 && p.model.mamba_chunk == 16, "nested mamba keys");
    CHECK(p.model.moe_experts == 4, "dotted key inside a section");
    CHECK(p.model.channel_attn == HLAB_CHANNEL_MOE, "ffn flow map");
    CHECK(p.train.steps == 50 && p.train.seed == 5, "train");
    CHECK(!strcmp(p.data.train, "some.txt") && fabsf(p.data.val_fraction - 0.1f) < 1e-7f, "data");

    expect_yaml_error("model:\n  d_model: 96\n  n_layer: 4\n", "point.yaml:3:3: unknown key 'model.n_layer' (did you mean 'model.n_layers'?)");
    expect_yaml_error("model:\n  d_model: wide\n", "point.yaml:2:12: model.d_model: expected a positive integer, got 'wide'");
    expect_yaml_error("train:\n  lr: \"3e-3\"\n", "point.yaml:2:7: train.lr: expected a number");
    expect_yaml_error("model:\n  mamba: {d_stat: 3}\n", "did you mean 'model.mamba.d_state'");
    expect_yaml_error("model:\n  d_model: [1, 2]\n", "point.yaml:2:12: model.d_model: expected a single value");
    expect_yaml_error("model:\n  placement: [0, x]\n", "point.yaml:2:18: model.placement: expected a layer index");
    expect_yaml_error("model: 5\n", "expected a mapping");
}

static void test_json(void) {
    hlab_point p;
    hlab_point_defaults(&p);
    hlab_err err = {0};
    load_text(point_yaml, &p, &err);
    hlab_buf b;
    hlab_buf_init(&b);
    CHECK(hlab_point_to_json(&p, &b, &err) == HLAB_OK, "to_json: %s", err.msg);
    const char *want[] = {"{\"model\":{\"d_model\":96,", "\"ratio\":\"1:3\"", "\"placement\":[0,2]",
                          "\"mamba\":{\"expand\":", "\"d_state\":32", "\"ffn\":{\"attention\":\"moe\"",
                          "\"train\":{\"steps\":50,", "\"seed\":5", "\"data\":{\"train\":\"some.txt\""};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        CHECK(b.data && strstr(b.data, want[i]), "JSON lacks %s: %s", want[i], b.data ? b.data : "(null)");
    /* balanced braces, no trailing comma before a brace */
    int depth = 0, bad = 0;
    for (const char *s = b.data; s && *s; s++) {
        depth += *s == '{';
        depth -= *s == '}';
        bad += (*s == ',' && (s[1] == '}' || s[1] == ',')) || (*s == '{' && s[1] == ',');
    }
    CHECK(depth == 0 && bad == 0, "malformed JSON: %s", b.data);
    hlab_buf_free(&b);
}

static void test_schedule(void) {
    hlab_train_config c;
    hlab_train_config_defaults(&c);
    c.steps = 200;
    c.warmup = 20;
    c.lr = 2e-3f;
    c.min_lr_frac = 0.1f;
    double peak = c.lr, floor_lr = c.min_lr_frac * c.lr;
    CHECK(fabs(hlab_lr_at(&c, 1) - peak / 20) < 1e-12, "first warm-up step lr %g", hlab_lr_at(&c, 1));
    CHECK(fabs(hlab_lr_at(&c, 10) - peak / 2) < 1e-12, "mid warm-up lr %g", hlab_lr_at(&c, 10));
    CHECK(fabs(hlab_lr_at(&c, 20) - peak) < 1e-12, "peak at the end of warm-up: %g", hlab_lr_at(&c, 20));
    CHECK(fabs(hlab_lr_at(&c, 110) - 0.5 * (peak + floor_lr)) < 1e-12, "cosine midpoint %g", hlab_lr_at(&c, 110));
    CHECK(fabs(hlab_lr_at(&c, 200) - floor_lr) < 1e-12, "final lr %g, expected %g", hlab_lr_at(&c, 200), floor_lr);
    int mono = 1;
    for (int s = 21; s <= 200; s++) mono &= hlab_lr_at(&c, s) <= hlab_lr_at(&c, s - 1);
    CHECK(mono, "lr not non-increasing after warm-up");
    c.warmup = 0;
    CHECK(fabs(hlab_lr_at(&c, 1) - (floor_lr + 0.5 * (peak - floor_lr) * (1 + cos(3.14159265358979 / 200)))) < 1e-9,
          "no warm-up: step 1 lr %g", hlab_lr_at(&c, 1));

    hlab_err err = {0};
    CHECK(hlab_train_config_validate(&c, &err) == HLAB_OK, "defaults valid: %s", err.msg);
    c.warmup = -1;
    CHECK(hlab_train_config_validate(&c, &err) != HLAB_OK && strstr(err.msg, "train.warmup"), "negative warmup: %s",
          err.msg);
    c.warmup = 500; /* longer than the run: linear throughout */
    CHECK(hlab_train_config_validate(&c, &err) == HLAB_OK, "warmup > steps: %s", err.msg);
    CHECK(fabs(hlab_lr_at(&c, 200) - peak * 200 / 500) < 1e-12, "lr during a long warm-up %g", hlab_lr_at(&c, 200));
    c.warmup = 0;
    c.stop_at = 300;
    CHECK(hlab_train_config_validate(&c, &err) != HLAB_OK && strstr(err.msg, "train.stop_at"), "stop_at: %s", err.msg);
}

int main(void) {
    test_set_str();
    test_yaml();
    test_json();
    test_schedule();
    return test_summary();
}
