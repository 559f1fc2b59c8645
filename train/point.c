/* train/point.c — a design point (model, train and data sections) addressed by
 * dotted keys, the same keys in POINT.yaml, study files and CLI overrides.
 *
 * Conventions: one table (point_keys) lists every key with its type and the
 * field it writes; set_str, set_yaml, apply_section and to_json all walk it,
 * so adding a field is one line. Keys of a sub-group ("model.mamba.expand")
 * may be written nested in YAML (model: {mamba: {expand: 2}}) or dotted
 * (model: {mamba.expand: 2}). Errors name the key and what was expected.
 */
#define _XOPEN_SOURCE 700 /* realpath */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <pthread.h>

#include "train/train.h"

typedef enum {
    K_INT,       /* int, >= min */
    K_U64,       /* uint64_t */
    K_FLOAT,     /* float, >= 0 unless noted by min */
    K_BOOL,      /* int 0/1 */
    K_STR,       /* char[size] */
    K_NORM,      /* hlab_norm_kind */
    K_FUSION,    /* hlab_fusion */
    K_FUSE,      /* hlab_fuse_op */
    K_CHANNEL,   /* hlab_channel */
    K_CHANNELS,  /* all three channel fields at once */
    K_RATIO,     /* "a:m" into ratio_attn, ratio_mamba */
    K_PLACEMENT, /* name or list of layer indices */
    K_LAYOUT,    /* string over {A, M, P} */
    K_ROPE,      /* bool, or "none" */
    K_TOKENIZER  /* bytes | shards */
} key_type;

typedef struct {
    const char *key;  /* full dotted key */
    key_type type;
    size_t offset;    /* into hlab_point */
    size_t size;      /* K_STR: buffer size */
    double min;       /* numeric lower bound (inclusive) */
    const char *help; /* what a value means; docs/TRAINING.md mirrors it */
} point_key;

#define M_(f) offsetof(hlab_point, model.f)
#define T_(f) offsetof(hlab_point, train.f)
#define D_(f) offsetof(hlab_point, data.f)

static const point_key point_keys[] = {
    {"model.d_model", K_INT, M_(d_model), 0, 1, "model width D"},
    {"model.n_layers", K_INT, M_(n_layers), 0, 1, "layers L"},
    {"model.vocab_size", K_INT, M_(vocab_size), 0, 0, "vocabulary (0 = from the data)"},
    {"model.tied_head", K_BOOL, M_(tied_head), 0, 0, "output head tied to the embedding"},
    {"model.norm", K_NORM, M_(norm), 0, 0, "rmsnorm | layernorm"},
    {"model.norm_eps", K_FLOAT, M_(norm_eps), 0, 0, "norm epsilon"},
    {"model.layout", K_LAYOUT, M_(layout), 0, 0, "layer string over A, M, P (\"\" = derive)"},
    {"model.ratio", K_RATIO, 0, 0, 0, "attention:Mamba ratio a:m"},
    {"model.placement", K_PLACEMENT, 0, 0, 0, "uniform | front | middle | back | [indices]"},
    {"model.fusion", K_FUSION, M_(fusion), 0, 0, "sequential | parallel"},
    {"model.fuse", K_FUSE, M_(fuse_op), 0, 0, "add | mean | normadd | concat | gate"},
    {"model.n_heads", K_INT, M_(n_heads), 0, 0, "query heads (0 = d_model / head_dim)"},
    {"model.n_kv_heads", K_INT, M_(n_kv_heads), 0, 0, "key/value heads (0 = n_heads)"},
    {"model.head_dim", K_INT, M_(head_dim), 0, 1, "attention head dim"},
    {"model.qk_norm", K_BOOL, M_(qk_norm), 0, 0, "RMSNorm on q and k per head"},
    {"model.rope", K_ROPE, M_(rope), 0, 0, "true | false | none"},
    {"model.rope_theta", K_FLOAT, M_(rope_theta), 0, 1, "RoPE base"},
    {"model.window", K_INT, M_(window), 0, 0, "sliding window (0 = full causal)"},
    {"model.parallel.attn_heads", K_INT, M_(par_attn_heads), 0, 0, "P layers: attention-branch query heads"},
    {"model.parallel.attn_kv_heads", K_INT, M_(par_attn_kv_heads), 0, 0, "P layers: attention-branch kv heads"},
    {"model.parallel.mamba_heads", K_INT, M_(par_mamba_heads), 0, 0, "P layers: Mamba-branch heads"},
    {"model.mamba.expand", K_INT, M_(mamba_expand), 0, 1, "d_inner = expand * d_model"},
    {"model.mamba.headdim", K_INT, M_(mamba_headdim), 0, 1, "Mamba-2 head dim P"},
    {"model.mamba.d_state", K_INT, M_(mamba_d_state), 0, 1, "state size N"},
    {"model.mamba.groups", K_INT, M_(mamba_groups), 0, 1, "B/C groups G"},
    {"model.mamba.conv", K_INT, M_(mamba_conv), 0, 1, "conv width K"},
    {"model.mamba.chunk", K_INT, M_(mamba_chunk), 0, 1, "SSD chunk length Q"},
    {"model.ffn", K_CHANNELS, 0, 0, 0, "channel sublayer of every layer kind: dense | moe | none"},
    {"model.ffn.attention", K_CHANNEL, M_(channel_attn), 0, 0, "channel sublayer of A layers"},
    {"model.ffn.mamba", K_CHANNEL, M_(channel_mamba), 0, 0, "channel sublayer of M layers"},
    {"model.ffn.parallel", K_CHANNEL, M_(channel_parallel), 0, 0, "channel sublayer of P layers"},
    {"model.d_ff", K_INT, M_(d_ff), 0, 0, "SwiGLU width (0 = 8/3 D rounded up to 64)"},
    {"model.moe.experts", K_INT, M_(moe_experts), 0, 0, "routed experts E"},
    {"model.moe.top_k", K_INT, M_(moe_top_k), 0, 0, "experts per token k"},
    {"model.moe.shared", K_INT, M_(moe_shared), 0, 0, "shared experts"},
    {"model.moe.d_ff", K_INT, M_(moe_d_ff), 0, 0, "expert SwiGLU width (0 = d_ff)"},
    {"model.moe.renorm", K_BOOL, M_(moe_renorm), 0, 0, "renormalise top-k probabilities"},
    {"model.moe.aux_alpha", K_FLOAT, M_(moe_aux_alpha), 0, 0, "load-balancing loss coefficient"},

    {"train.steps", K_INT, T_(steps), 0, 1, "schedule horizon"},
    {"train.stop_at", K_INT, T_(stop_at), 0, 0, "stop after this step (0 = steps)"},
    {"train.batch", K_INT, T_(batch), 0, 1, "sequences per micro-batch"},
    {"train.seq_len", K_INT, T_(seq_len), 0, 1, "tokens per sequence"},
    {"train.grad_accum", K_INT, T_(grad_accum), 0, 1, "micro-batches per step"},
    {"train.lr", K_FLOAT, T_(lr), 0, 0, "peak learning rate"},
    {"train.min_lr_frac", K_FLOAT, T_(min_lr_frac), 0, 0, "final lr as a fraction of lr"},
    {"train.warmup", K_INT, T_(warmup), 0, 0, "linear warm-up steps"},
    {"train.weight_decay", K_FLOAT, T_(weight_decay), 0, 0, "AdamW decay on matrices"},
    {"train.grad_clip", K_FLOAT, T_(grad_clip), 0, 0, "global-norm clip (0 = off)"},
    {"train.beta1", K_FLOAT, T_(beta1), 0, 0, "AdamW beta1"},
    {"train.beta2", K_FLOAT, T_(beta2), 0, 0, "AdamW beta2"},
    {"train.eps", K_FLOAT, T_(eps), 0, 0, "AdamW epsilon"},
    {"train.seed", K_U64, T_(seed), 0, 0, "init and data seed"},
    {"train.eval_every", K_INT, T_(eval_every), 0, 0, "steps between evaluations (0 = end only)"},
    {"train.eval_batches", K_INT, T_(eval_batches), 0, 1, "validation batches per evaluation"},
    {"train.log_every", K_INT, T_(log_every), 0, 1, "steps between progress events"},
    {"train.ckpt_every", K_INT, T_(ckpt_every), 0, 0, "steps between checkpoints (0 = end/stop only)"},
    {"train.diverge_factor", K_FLOAT, T_(diverge_factor), 0, 0, "diverged when loss > factor * first loss"},

    {"data.train", K_STR, D_(train), sizeof(((hlab_data_config *)0)->train), 0, "text file, or shard file / glob"},
    {"data.val", K_STR, D_(val), sizeof(((hlab_data_config *)0)->val), 0, "validation file (\"\" = split train)"},
    {"data.tokenizer", K_TOKENIZER, D_(tokenizer), 0, 0, "bytes | shards"},
    {"data.val_fraction", K_FLOAT, D_(val_fraction), 0, 0, "tail fraction kept for validation"},
};
#define N_KEYS (sizeof point_keys / sizeof point_keys[0])

/* The name list is derived from the table once (C cannot take it from the
 * struct array at compile time); pthread_once keeps that race-free. */
static const char *key_names[N_KEYS + 1];
static pthread_once_t key_names_once = PTHREAD_ONCE_INIT;
static void fill_key_names(void) {
    for (size_t i = 0; i < N_KEYS; i++) key_names[i] = point_keys[i].key;
}
const char *const *hlab_point_keys(void) {
    pthread_once(&key_names_once, fill_key_names);
    return key_names;
}

static const point_key *find_key(const char *key) {
    for (size_t i = 0; i < N_KEYS; i++)
        if (!strcmp(point_keys[i].key, key)) return &point_keys[i];
    return NULL;
}

static int unknown_key(const char *key, hlab_err *err) {
    const char *near = hlab_did_you_mean(key, hlab_point_keys());
    if (near) return hlab_fail(err, HLAB_EINVAL, "unknown key '%s' (did you mean '%s'?)", key, near);
    return hlab_fail(err, HLAB_EINVAL, "unknown key '%s' (keys start with model., train. or data.)", key);
}

/* ---- defaults ------------------------------------------------------------- */
void hlab_train_config_defaults(hlab_train_config *c) {
    memset(c, 0, sizeof *c);
    c->steps = 1000;
    c->batch = 8;
    c->seq_len = 256;
    c->grad_accum = 1;
    c->lr = 3e-3f;
    c->min_lr_frac = 0.1f;
    c->warmup = 100;
    c->weight_decay = 0.1f;
    c->grad_clip = 1.0f;
    c->beta1 = 0.9f;
    c->beta2 = 0.95f;
    c->eps = 1e-8f;
    c->seed = 0;
    c->eval_every = 0;
    c->eval_batches = 8;
    c->log_every = 10;
    c->ckpt_every = 0;
    c->diverge_factor = 3.0f;
}

void hlab_point_defaults(hlab_point *p) {
    memset(p, 0, sizeof *p);
    hlab_model_config_defaults(&p->model);
    hlab_train_config_defaults(&p->train);
    hlab_data_config_defaults(&p->data);
}

int hlab_train_config_validate(const hlab_train_config *c, hlab_err *err) {
    if (c->steps < 1) return hlab_fail(err, HLAB_EINVAL, "train.steps %d must be at least 1", c->steps);
    if (c->stop_at < 0 || c->stop_at > c->steps)
        return hlab_fail(err, HLAB_EINVAL, "train.stop_at %d must lie in [0, train.steps %d]", c->stop_at, c->steps);
    if (c->batch < 1 || c->seq_len < 1 || c->grad_accum < 1)
        return hlab_fail(err, HLAB_EINVAL, "train.batch %d, train.seq_len %d and train.grad_accum %d must be positive",
                         c->batch, c->seq_len, c->grad_accum);
    if (!(c->lr > 0) || !isfinite(c->lr)) return hlab_fail(err, HLAB_EINVAL, "train.lr %g must be positive", c->lr);
    if (!(c->min_lr_frac >= 0 && c->min_lr_frac <= 1))
        return hlab_fail(err, HLAB_EINVAL, "train.min_lr_frac %g must lie in [0, 1]", c->min_lr_frac);
    if (c->warmup < 0) /* warmup >= steps is allowed: the whole run warms up */
        return hlab_fail(err, HLAB_EINVAL, "train.warmup %d must be >= 0", c->warmup);
    if (!(c->beta1 >= 0 && c->beta1 < 1) || !(c->beta2 >= 0 && c->beta2 < 1))
        return hlab_fail(err, HLAB_EINVAL, "train.beta1 %g and train.beta2 %g must lie in [0, 1)", c->beta1, c->beta2);
    if (!(c->eps > 0)) return hlab_fail(err, HLAB_EINVAL, "train.eps %g must be positive", c->eps);
    if (!(c->weight_decay >= 0) || !(c->grad_clip >= 0))
        return hlab_fail(err, HLAB_EINVAL, "train.weight_decay %g and train.grad_clip %g must be >= 0", c->weight_decay,
                         c->grad_clip);
    if (c->eval_every < 0 || c->eval_batches < 1 || c->log_every < 1 || c->ckpt_every < 0)
        return hlab_fail(err, HLAB_EINVAL,
                         "train.eval_every, train.ckpt_every must be >= 0 and train.eval_batches, train.log_every >= 1");
    if (!(c->diverge_factor > 1))
        return hlab_fail(err, HLAB_EINVAL, "train.diverge_factor %g must be greater than 1", c->diverge_factor);
    return HLAB_OK;
}

/* ---- parsing one value ----------------------------------------------------- */
static int parse_long(const char *s, long long *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end || errno) {
        /* accept exact integers written as floats, like 25e6 */
        double d = strtod(s, &end);
        if (end == s || *end || !(d == floor(d)) || !(fabs(d) < 9e18)) return 0;
        v = (long long)d;
    }
    *out = v;
    return 1;
}

static int parse_bool(const char *s, int *out) {
    if (!strcasecmp(s, "true") || !strcasecmp(s, "yes") || !strcasecmp(s, "on") || !strcmp(s, "1")) *out = 1;
    else if (!strcasecmp(s, "false") || !strcasecmp(s, "no") || !strcasecmp(s, "off") || !strcmp(s, "0")) *out = 0;
    else return 0;
    return 1;
}

/* "3,7,11" or "[3, 7, 11]" → indices. */
static int parse_indices(const char *key, const char *s, hlab_model_config *m, hlab_err *err) {
    int n = 0;
    const char *p = s;
    while (*p == ' ' || *p == '[') p++;
    while (*p && *p != ']') {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v >= HLAB_MAX_LAYERS)
            return hlab_fail(err, HLAB_EINVAL, "%s: expected uniform, front, middle, back or a list of layer indices, got '%s'",
                             key, s);
        if (n >= HLAB_MAX_LAYERS) return hlab_fail(err, HLAB_EINVAL, "%s: more than %d indices", key, HLAB_MAX_LAYERS);
        m->attn_indices[n++] = (int)v;
        p = end;
        while (*p == ' ') p++;
        if (*p == ',') p++;
        while (*p == ' ') p++;
    }
    m->n_attn_indices = n;
    m->placement = HLAB_PLACE_INDICES;
    return HLAB_OK;
}

static int set_value(hlab_point *p, const point_key *k, const char *v, hlab_err *err) {
    char *field = (char *)p + k->offset;
    long long iv;
    char *end;
    switch (k->type) {
    case K_INT:
        if (!parse_long(v, &iv) || iv < (long long)k->min || iv > INT_MAX)
            return hlab_fail(err, HLAB_EINVAL, "%s: expected %s integer, got '%s'", k->key,
                             k->min >= 1 ? "a positive" : "a non-negative", v);
        *(int *)field = (int)iv;
        return HLAB_OK;
    case K_U64: {
        errno = 0;
        unsigned long long u = strtoull(v, &end, 10);
        if (end == v || *end || errno || v[0] == '-')
            return hlab_fail(err, HLAB_EINVAL, "%s: expected a non-negative integer, got '%s'", k->key, v);
        *(uint64_t *)field = (uint64_t)u;
        return HLAB_OK;
    }
    case K_FLOAT: {
        errno = 0;
        double d = strtod(v, &end);
        if (end == v || *end || errno || !isfinite(d) || d < k->min)
            return hlab_fail(err, HLAB_EINVAL, "%s: expected a non-negative number, got '%s'", k->key, v);
        *(float *)field = (float)d;
        return HLAB_OK;
    }
    case K_BOOL:
        if (!parse_bool(v, (int *)field))
            return hlab_fail(err, HLAB_EINVAL, "%s: expected true or false, got '%s'", k->key, v);
        return HLAB_OK;
    case K_ROPE:
        if (!strcasecmp(v, "none")) *(int *)field = 0;
        else if (!parse_bool(v, (int *)field))
            return hlab_fail(err, HLAB_EINVAL, "%s: expected true, false or none, got '%s'", k->key, v);
        return HLAB_OK;
    case K_STR:
        if (strlen(v) >= k->size)
            return hlab_fail(err, HLAB_EINVAL, "%s: value longer than %zu characters", k->key, k->size - 1);
        memcpy(field, v, strlen(v) + 1);
        return HLAB_OK;
    case K_NORM:
        if (hlab_norm_parse(v, (hlab_norm_kind *)field))
            return hlab_fail(err, HLAB_EINVAL, "%s: expected rmsnorm or layernorm, got '%s'", k->key, v);
        return HLAB_OK;
    case K_FUSION:
        if (!strcmp(v, "sequential")) *(hlab_fusion *)field = HLAB_FUSION_SEQUENTIAL;
        else if (!strcmp(v, "parallel")) *(hlab_fusion *)field = HLAB_FUSION_PARALLEL;
        else return hlab_fail(err, HLAB_EINVAL, "%s: expected sequential or parallel, got '%s'", k->key, v);
        return HLAB_OK;
    case K_FUSE:
        if (hlab_fuse_op_parse(v, (hlab_fuse_op *)field))
            return hlab_fail(err, HLAB_EINVAL, "%s: expected add, mean, normadd, concat or gate, got '%s'", k->key, v);
        return HLAB_OK;
    case K_CHANNEL:
    case K_CHANNELS: {
        hlab_channel c;
        if (hlab_channel_parse(v, &c))
            return hlab_fail(err, HLAB_EINVAL, "%s: expected dense, moe or none, got '%s'", k->key, v);
        if (k->type == K_CHANNEL) *(hlab_channel *)field = c;
        else p->model.channel_attn = p->model.channel_mamba = p->model.channel_parallel = c;
        return HLAB_OK;
    }
    case K_RATIO: {
        int a, m, used = 0;
        if (sscanf(v, "%d:%d%n", &a, &m, &used) != 2 || v[used] || a < 0 || m < 0 || a + m == 0)
            return hlab_fail(err, HLAB_EINVAL, "%s: expected attention:mamba like 1:5 (0:1 pure Mamba-2, 1:0 pure attention), got '%s'",
                             k->key, v);
        p->model.ratio_attn = a;
        p->model.ratio_mamba = m;
        return HLAB_OK;
    }
    case K_PLACEMENT: {
        hlab_placement pl;
        if (!hlab_placement_parse(v, &pl) && pl != HLAB_PLACE_INDICES) {
            p->model.placement = pl;
            p->model.n_attn_indices = 0;
            return HLAB_OK;
        }
        return parse_indices(k->key, v, &p->model, err);
    }
    case K_LAYOUT: {
        size_t n = strlen(v);
        if (n > HLAB_MAX_LAYERS)
            return hlab_fail(err, HLAB_EINVAL, "%s: longer than %d layers", k->key, HLAB_MAX_LAYERS);
        for (size_t i = 0; i < n; i++)
            if (v[i] != 'A' && v[i] != 'M' && v[i] != 'P')
                return hlab_fail(err, HLAB_EINVAL, "%s: expected a string over A, M and P (e.g. MMMMMA), got '%s'", k->key, v);
        memcpy(p->model.layout, v, n + 1);
        return HLAB_OK;
    }
    case K_TOKENIZER:
        if (!strcmp(v, "bytes")) *(hlab_tokenizer *)field = HLAB_TOK_BYTES;
        else if (!strcmp(v, "shards")) *(hlab_tokenizer *)field = HLAB_TOK_SHARDS;
        else return hlab_fail(err, HLAB_EINVAL, "%s: expected bytes or shards, got '%s'", k->key, v);
        return HLAB_OK;
    }
    return hlab_fail(err, HLAB_EINVAL, "%s: unhandled key type", k->key);
}

int hlab_point_set_str(hlab_point *p, const char *key, const char *value, hlab_err *err) {
    const point_key *k = find_key(key);
    if (!k) return unknown_key(key, err);
    return set_value(p, k, value, err);
}

static int is_numeric(key_type t) { return t == K_INT || t == K_U64 || t == K_FLOAT; }

int hlab_point_set_yaml(hlab_point *p, const char *key, const hlab_yaml_doc *doc, const hlab_yaml_node *value,
                        hlab_err *err) {
    const point_key *k = find_key(key);
    if (!k) {
        hlab_err e;
        unknown_key(key, &e);
        return hlab_yaml_fail(doc, value, err, "%s", e.msg);
    }
    if (value->kind == HLAB_YAML_SEQ && k->type == K_PLACEMENT) {
        hlab_point tmp = *p;
        tmp.model.n_attn_indices = 0;
        for (int i = 0; i < value->n; i++) {
            long long v;
            const hlab_yaml_node *it = value->items[i];
            if (it->kind != HLAB_YAML_SCALAR || it->quoted || !parse_long(it->scalar, &v) || v < 0 ||
                v >= HLAB_MAX_LAYERS)
                return hlab_yaml_fail(doc, it, err, "%s: expected a layer index in [0, %d)", key, HLAB_MAX_LAYERS);
            tmp.model.attn_indices[tmp.model.n_attn_indices++] = (int)v;
        }
        tmp.model.placement = HLAB_PLACE_INDICES;
        *p = tmp;
        return HLAB_OK;
    }
    if (value->kind != HLAB_YAML_SCALAR)
        return hlab_yaml_fail(doc, value, err, "%s: expected a single value (%s), found a %s", key, k->help,
                              value->kind == HLAB_YAML_MAP ? "mapping" : "list");
    if (value->quoted && is_numeric(k->type))
        return hlab_yaml_fail(doc, value, err, "%s: expected a number, got the quoted string \"%s\"", key, value->scalar);
    hlab_err e;
    if (set_value(p, k, value->scalar, &e)) return hlab_yaml_fail(doc, value, err, "%s", e.msg);
    return HLAB_OK;
}

/* Walks a mapping under prefix ("model" or "model.mamba"); nested maps recurse
 * when some key continues the prefix. */
static int apply_map(hlab_point *p, const char *prefix, const hlab_yaml_doc *doc, const hlab_yaml_node *map,
                     hlab_err *err) {
    if (map->kind != HLAB_YAML_MAP)
        return hlab_yaml_fail(doc, map, err, "%s: expected a mapping of keys to values", prefix);
    for (int i = 0; i < map->n; i++) {
        const hlab_yaml_node *kn = map->items[2 * i], *vn = map->items[2 * i + 1];
        char full[256];
        if (snprintf(full, sizeof full, "%s.%s", prefix, kn->scalar ? kn->scalar : "") >= (int)sizeof full)
            return hlab_yaml_fail(doc, kn, err, "key too long");
        if (vn->kind == HLAB_YAML_MAP) {
            size_t n = strlen(full);
            int group = 0;
            for (size_t j = 0; j < N_KEYS && !group; j++)
                group = !strncmp(point_keys[j].key, full, n) && point_keys[j].key[n] == '.';
            if (group) {
                int rc = apply_map(p, full, doc, vn, err);
                if (rc) return rc;
                continue;
            }
        }
        if (!find_key(full)) {
            const char *near = hlab_did_you_mean(full, hlab_point_keys());
            if (near) return hlab_yaml_fail(doc, kn, err, "unknown key '%s' (did you mean '%s'?)", full, near);
            return hlab_yaml_fail(doc, kn, err, "unknown key '%s' (docs/TRAINING.md lists the keys)", full);
        }
        int rc = hlab_point_set_yaml(p, full, doc, vn, err);
        if (rc) return rc;
    }
    return HLAB_OK;
}

int hlab_point_apply_section(hlab_point *p, const char *section, const hlab_yaml_doc *doc, const hlab_yaml_node *map,
                             hlab_err *err) {
    if (strcmp(section, "model") && strcmp(section, "train") && strcmp(section, "data"))
        return hlab_yaml_fail(doc, map, err, "unknown section '%s' (expected model, train or data)", section);
    return apply_map(p, section, doc, map, err);
}

/* A relative data path written in a POINT.yaml names a file next to that
 * YAML, not one under the working directory: joins it to the YAML's folder
 * and canonicalises it when it exists (so a checkpoint's run hash does not
 * depend on where hlab runs). Globs and missing files keep the joined form,
 * which the data loader's error then names. Absolute paths are left alone. */
static int resolve_beside(char *field, size_t cap, const char *key, const char *yaml_path, hlab_err *err) {
    if (!field[0] || field[0] == '/') return HLAB_OK;
    const char *slash = strrchr(yaml_path, '/');
    if (!slash) return HLAB_OK; /* the YAML is in the working directory */
    char joined[2200];
    int n = snprintf(joined, sizeof joined, "%.*s/%s", (int)(slash - yaml_path), yaml_path, field);
    char canonical[PATH_MAX];
    const char *resolved = realpath(joined, canonical) ? canonical : joined;
    if (n < 0 || (size_t)n >= sizeof joined || strlen(resolved) >= cap)
        return hlab_fail(err, HLAB_EINVAL, "%s: %s: the path relative to the YAML's folder is longer than %zu bytes",
                         yaml_path, key, cap - 1);
    snprintf(field, cap, "%s", resolved);
    return HLAB_OK;
}

int hlab_point_load(const char *path, hlab_point *p, hlab_err *err) {
    hlab_yaml_doc doc;
    int rc = hlab_yaml_load(path, &doc, err);
    if (rc) return rc;
    char train_before[sizeof p->data.train], val_before[sizeof p->data.val];
    memcpy(train_before, p->data.train, sizeof train_before);
    memcpy(val_before, p->data.val, sizeof val_before);
    const hlab_yaml_node *root = doc.root;
    if (!root || root->kind != HLAB_YAML_MAP) {
        rc = hlab_yaml_fail(&doc, root, err, "expected a mapping with model, train and data sections");
        goto done;
    }
    for (int i = 0; i < root->n && !rc; i++) {
        const hlab_yaml_node *kn = root->items[2 * i];
        const char *s = kn->scalar ? kn->scalar : "";
        if (strcmp(s, "model") && strcmp(s, "train") && strcmp(s, "data")) {
            static const char *const sections[] = {"model", "train", "data", NULL};
            const char *near = hlab_did_you_mean(s, sections);
            rc = hlab_yaml_fail(&doc, kn, err, "unknown section '%s' (%s%s%s)", s, near ? "did you mean '" : "expected model, train or data",
                                near ? near : "", near ? "'?" : "");
            break;
        }
        rc = hlab_point_apply_section(p, s, &doc, root->items[2 * i + 1], err);
    }
    /* Only paths this YAML set are resolved; values p held before, and CLI
       overrides applied after this call, stay relative to the working directory. */
    if (!rc && strcmp(p->data.train, train_before))
        rc = resolve_beside(p->data.train, sizeof p->data.train, "data.train", path, err);
    if (!rc && strcmp(p->data.val, val_before))
        rc = resolve_beside(p->data.val, sizeof p->data.val, "data.val", path, err);
done:
    hlab_yaml_free(&doc);
    return rc;
}

/* ---- JSON ---------------------------------------------------------------- */
static void json_value(hlab_buf *b, const hlab_point *p, const point_key *k) {
    const char *field = (const char *)p + k->offset;
    char tmp[64];
    switch (k->type) {
    case K_INT: hlab_buf_printf(b, "%d", *(const int *)field); break;
    case K_U64: hlab_buf_printf(b, "%llu", (unsigned long long)*(const uint64_t *)field); break;
    case K_FLOAT: hlab_buf_printf(b, "%.9g", (double)*(const float *)field); break;
    case K_BOOL:
    case K_ROPE: hlab_buf_puts(b, *(const int *)field ? "true" : "false"); break;
    case K_STR: hlab_buf_json_string(b, field); break;
    case K_NORM: hlab_buf_json_string(b, hlab_norm_name(*(const hlab_norm_kind *)field)); break;
    case K_FUSION:
        hlab_buf_json_string(b, *(const hlab_fusion *)field == HLAB_FUSION_PARALLEL ? "parallel" : "sequential");
        break;
    case K_FUSE: hlab_buf_json_string(b, hlab_fuse_op_name(*(const hlab_fuse_op *)field)); break;
    case K_CHANNEL: hlab_buf_json_string(b, hlab_channel_name(*(const hlab_channel *)field)); break;
    case K_CHANNELS: break; /* not emitted: the three per-kind keys carry it */
    case K_RATIO:
        snprintf(tmp, sizeof tmp, "%d:%d", p->model.ratio_attn, p->model.ratio_mamba);
        hlab_buf_json_string(b, tmp);
        break;
    case K_PLACEMENT:
        if (p->model.placement == HLAB_PLACE_INDICES) {
            hlab_buf_puts(b, "[");
            for (int i = 0; i < p->model.n_attn_indices; i++)
                hlab_buf_printf(b, "%s%d", i ? "," : "", p->model.attn_indices[i]);
            hlab_buf_puts(b, "]");
        } else {
            hlab_buf_json_string(b, hlab_placement_name(p->model.placement));
        }
        break;
    case K_LAYOUT: hlab_buf_json_string(b, p->model.layout); break;
    case K_TOKENIZER:
        hlab_buf_json_string(b, *(const hlab_tokenizer *)field == HLAB_TOK_SHARDS ? "shards" : "bytes");
        break;
    }
}

/* Emits the keys of one section, nesting "section.group.name" as
 * {"group":{"name":...}}; keys of a group are contiguous in the table. */
static void json_section(hlab_buf *b, const hlab_point *p, const char *section) {
    size_t sl = strlen(section);
    char group[64] = "";
    int first = 1, first_in_group = 1;
    hlab_buf_puts(b, "{");
    for (size_t i = 0; i < N_KEYS; i++) {
        const point_key *k = &point_keys[i];
        if (strncmp(k->key, section, sl) || k->key[sl] != '.' || k->type == K_CHANNELS) continue;
        const char *rest = k->key + sl + 1;
        const char *dot = strchr(rest, '.');
        char g[64] = "";
        if (dot) snprintf(g, sizeof g, "%.*s", (int)(dot - rest), rest);
        if (strcmp(g, group)) {
            if (group[0]) hlab_buf_puts(b, "}");
            snprintf(group, sizeof group, "%s", g);
            if (group[0]) {
                hlab_buf_puts(b, first ? "" : ",");
                hlab_buf_json_string(b, group);
                hlab_buf_puts(b, ":{");
                first = 0;
                first_in_group = 1;
            }
        }
        if (group[0]) {
            if (!first_in_group) hlab_buf_puts(b, ",");
            first_in_group = 0;
            hlab_buf_json_string(b, dot + 1);
        } else {
            if (!first) hlab_buf_puts(b, ",");
            first = 0;
            hlab_buf_json_string(b, rest);
        }
        hlab_buf_puts(b, ":");
        json_value(b, p, k);
    }
    if (group[0]) hlab_buf_puts(b, "}");
    hlab_buf_puts(b, "}");
}

int hlab_point_to_json(const hlab_point *p, hlab_buf *out, hlab_err *err) {
    hlab_buf_puts(out, "{\"model\":");
    json_section(out, p, "model");
    hlab_buf_puts(out, ",\"train\":");
    json_section(out, p, "train");
    hlab_buf_puts(out, ",\"data\":");
    json_section(out, p, "data");
    hlab_buf_puts(out, "}");
    return hlab_buf_status(out, err);
}

int hlab_train_config_to_json(const hlab_train_config *c, hlab_buf *out, hlab_err *err) {
    hlab_point p;
    memset(&p, 0, sizeof p);
    p.train = *c;
    json_section(out, &p, "train");
    return hlab_buf_status(out, err);
}
