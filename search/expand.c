/* search/expand.c — from a study to its design points: the cartesian product of
 * the axes (or seeded samples of it), constraint filtering, budget sizing,
 * resolution and identity hashes.
 * Conventions: designs are numbered 1.. in expansion order ("point 7" in
 * messages), seeds multiply designs last; constraints see the point after the
 * axes are applied and before budget sizing (so the adjusted field still holds
 * its base value); a point's hash covers its resolved config JSON with data
 * paths as written in the study, then its seed.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "search/search.h"

/* ---- field lookup over a point's JSON (for constraints) ----------------------- */
static const char *skip_ws(const char *p) {
    while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r') p++;
    return p;
}

/* Returns the end of the JSON value starting at p. */
static const char *skip_value(const char *p) {
    p = skip_ws(p);
    if (*p == '"') {
        for (p++; *p && *p != '"'; p++)
            if (*p == '\\' && p[1]) p++;
        return *p ? p + 1 : p;
    }
    if (*p == '{' || *p == '[') {
        int depth = 0;
        for (; *p; p++) {
            if (*p == '"') {
                p = skip_value(p) - 1;
                continue;
            }
            if (*p == '{' || *p == '[') depth++;
            if (*p == '}' || *p == ']') {
                if (--depth == 0) return p + 1;
            }
        }
        return p;
    }
    while (*p && *p != ',' && *p != '}' && *p != ']') p++;
    return p;
}

/* Finds member `name` (length n) of the object at p; returns its value or NULL. */
static const char *json_member(const char *p, const char *name, size_t n) {
    p = skip_ws(p);
    if (*p != '{') return NULL;
    p++;
    for (;;) {
        p = skip_ws(p);
        if (*p != '"') return NULL;
        const char *k = p + 1, *kend = skip_value(p) - 1;
        p = skip_ws(kend + 1);
        if (*p != ':') return NULL;
        p = skip_ws(p + 1);
        if ((size_t)(kend - k) == n && !strncmp(k, name, n)) return p;
        p = skip_ws(skip_value(p));
        if (*p != ',') return NULL;
        p++;
    }
}

typedef struct {
    const char *json;
} lookup_ctx;

static int lookup_field(void *user, const char *field, hlab_value *out, hlab_err *err) {
    const char *p = ((lookup_ctx *)user)->json;
    if (!strcmp(field, "model.ffn")) {
        /* model.ffn sets all three per-kind channels: it reads as their common
           value, or "mixed" where they differ */
        hlab_value kinds[3];
        static const char *const names[] = {"model.ffn.attention", "model.ffn.mamba", "model.ffn.parallel"};
        for (int i = 0; i < 3; i++)
            if (lookup_field(user, names[i], &kinds[i], err)) return err->code;
        *out = kinds[0];
        if (strcmp(kinds[0].str, kinds[1].str) || strcmp(kinds[0].str, kinds[2].str)) snprintf(out->str, sizeof out->str, "mixed");
        return HLAB_OK;
    }
    for (const char *part = field; p;) {
        const char *dot = strchr(part, '.');
        size_t n = dot ? (size_t)(dot - part) : strlen(part);
        p = json_member(p, part, n);
        if (!dot) break;
        part = dot + 1;
    }
    if (!p) return hlab_fail(err, HLAB_EINVAL, "field '%s' has no single value", field);
    memset(out, 0, sizeof *out);
    if (*p == '"') {
        const char *end = skip_value(p);
        out->kind = HLAB_VAL_STR;
        snprintf(out->str, sizeof out->str, "%.*s", (int)(end - p - 2), p + 1);
    } else if (!strncmp(p, "true", 4) || !strncmp(p, "false", 5)) {
        out->kind = HLAB_VAL_BOOL;
        out->num = *p == 't';
    } else if (*p == '[' || *p == '{') {
        const char *end = skip_value(p);
        out->kind = HLAB_VAL_STR;
        snprintf(out->str, sizeof out->str, "%.*s", (int)(end - p), p);
    } else {
        out->kind = HLAB_VAL_NUM;
        out->num = strtod(p, NULL);
    }
    return HLAB_OK;
}

/* ---- budget --------------------------------------------------------------------- */
static double matched_value(const hlab_budget *b, const hlab_point *p, const hlab_counts *c) {
    switch (b->match) {
    case HLAB_MATCH_PARAMS: return (double)c->params;
    case HLAB_MATCH_FLOPS_PER_TOKEN: return c->train_flops_per_token;
    case HLAB_MATCH_TRAIN_FLOPS:
        return c->train_flops_per_token * (double)p->train.steps * p->train.batch * p->train.grad_accum * p->train.seq_len;
    default: return 0;
    }
}

static const char *match_name(hlab_match m) {
    return m == HLAB_MATCH_PARAMS ? "params" : m == HLAB_MATCH_FLOPS_PER_TOKEN ? "flops_per_token" : "train_flops";
}

static int gcd(int a, int b) { return b ? gcd(b, a % b) : a; }

int hlab_budget_fit(const hlab_budget *b, hlab_point *p, hlab_counts *counts, hlab_err *err) {
    const char *field = b->adjust == HLAB_ADJUST_D_MODEL ? "d_model" : b->adjust == HLAB_ADJUST_N_LAYERS ? "n_layers" : "d_ff";
    int step = 1, first = 1, last = HLAB_MAX_LAYERS;
    if (b->adjust == HLAB_ADJUST_D_MODEL) {
        int hd = p->model.head_dim > 0 ? p->model.head_dim : 64;
        step = hd / gcd(hd, 64) * 64; /* lcm(head_dim, 64): heads and Mamba heads stay whole */
        first = step;
        last = 32768;
    } else if (b->adjust == HLAB_ADJUST_D_FF) {
        step = 64, first = 64, last = 65536;
    } else if (p->model.layout[0]) {
        return hlab_fail(err, HLAB_EINVAL, "adjust n_layers needs a layout derived from ratio and placement, not model.layout");
    }
    double best_rel = INFINITY, best_value = 0, lo = b->target * (1 - b->tolerance), hi = b->target * (1 + b->tolerance);
    int best = 0;
    hlab_err last_err = {0};
    for (int x = first; x <= last; x += step) {
        hlab_point q = *p;
        int *f = b->adjust == HLAB_ADJUST_D_MODEL ? &q.model.d_model
                 : b->adjust == HLAB_ADJUST_N_LAYERS ? &q.model.n_layers : &q.model.d_ff;
        *f = x;
        hlab_counts c;
        hlab_err e = {0};
        if (hlab_model_config_resolve(&q.model, &e) || hlab_count(&q.model, q.train.seq_len, &c, &e)) {
            last_err = e;
            continue;
        }
        double v = matched_value(b, &q, &c), rel = fabs(v - b->target) / b->target;
        if (rel < best_rel) best_rel = rel, best_value = v, best = x;
        if (v > 2 * hi) break; /* counts grow with the adjusted field */
    }
    char tol[32];
    snprintf(tol, sizeof tol, "%g%%", b->tolerance * 100);
    if (!best)
        return hlab_fail(err, HLAB_EINVAL, "no valid %s (multiples of %d) gives a config that resolves: %s", field, step,
                         last_err.msg[0] ? last_err.msg : "?");
    if (best_value < lo || best_value > hi) {
        if (step > 1)
            return hlab_fail(err, HLAB_EINVAL, "no %s multiple of %d gives %s within %s of %.3g (closest %.3g at %s %d)",
                             field, step, match_name(b->match), tol, b->target, best_value, field, best);
        return hlab_fail(err, HLAB_EINVAL, "no %s gives %s within %s of %.3g (closest %.3g at %s %d)", field,
                         match_name(b->match), tol, b->target, best_value, field, best);
    }
    int *f = b->adjust == HLAB_ADJUST_D_MODEL ? &p->model.d_model
             : b->adjust == HLAB_ADJUST_N_LAYERS ? &p->model.n_layers : &p->model.d_ff;
    *f = best;
    hlab_point q = *p;
    if (hlab_model_config_resolve(&q.model, err) || hlab_count(&q.model, q.train.seq_len, counts, err)) return err->code;
    return HLAB_OK;
}

/* ---- expansion ------------------------------------------------------------------- */
static void point_free(hlab_design_point *d) {
    free(d->axes_json);
    free(d->config_json);
}

void hlab_point_set_free(hlab_point_set *ps) {
    if (!ps) return;
    for (int i = 0; i < ps->n; i++) point_free(&ps->items[i]);
    free(ps->items);
    memset(ps, 0, sizeof *ps);
}

/* "ratio": the key without its section, for labels. */
static const char *short_key(const char *key) {
    if (!strncmp(key, "model.", 6)) return key + 6;
    return key;
}

static int apply_axes(const hlab_study *s, const int *choice, hlab_point *p, hlab_err *err) {
    for (int a = 0; a < s->n_axes; a++) {
        const hlab_axis *ax = &s->axes[a];
        int rc = ax->nodes[choice[a]] ? hlab_point_set_yaml(p, ax->key, &s->doc, ax->nodes[choice[a]], err)
                                      : hlab_point_set_str(p, ax->key, ax->values[choice[a]], err);
        if (rc) return rc;
    }
    return HLAB_OK;
}

/* The data path for training: relative to the study's folder when the file is
 * there, else as written (relative to the working directory). */
static void resolve_data_path(const hlab_study *s, char *path, size_t cap) {
    if (!path[0] || path[0] == '/') return;
    char joined[2200];
    snprintf(joined, sizeof joined, "%s/%s", s->dir, path);
    if (access(joined, R_OK) == 0 && strlen(joined) < cap) snprintf(path, cap, "%s", joined);
}

static int is_number_text(const char *s) {
    char *end;
    if (!*s) return 0;
    strtod(s, &end);
    return !*end;
}

/* Builds one design (all seeds) into out[0..n_seeds). */
static int build_design(const hlab_study *s, const int *choice, int index, int design, hlab_design_point *out,
                        hlab_err *err) {
    hlab_point p = s->base;
    int rc = apply_axes(s, choice, &p, err);
    char label[512] = "";
    size_t used = 0;
    hlab_buf axes;
    hlab_buf_init(&axes);
    hlab_buf_puts(&axes, "{");
    for (int a = 0, first = 1; a < s->n_axes; a++) {
        const hlab_axis *ax = &s->axes[a];
        const char *v = ax->values[choice[a]];
        hlab_buf_puts(&axes, a ? "," : "");
        hlab_buf_json_string(&axes, ax->key);
        hlab_buf_puts(&axes, ":");
        if (is_number_text(v) || v[0] == '[') hlab_buf_puts(&axes, v);
        else hlab_buf_json_string(&axes, v);
        if (ax->n > 1 && used < sizeof label) {
            used += (size_t)snprintf(label + used, sizeof label - used, "%s%s=%s", first ? "" : " ", short_key(ax->key), v);
            first = 0;
        }
    }
    hlab_buf_puts(&axes, "}");
    if (!label[0]) snprintf(label, sizeof label, "base");
    if (s->strategy.kind == HLAB_STRATEGY_HALVING) p.train.steps = s->strategy.max_steps;

    hlab_counts counts;
    memset(&counts, 0, sizeof counts);
    if (!rc && s->budget.match != HLAB_MATCH_NONE) {
        rc = hlab_budget_fit(&s->budget, &p, &counts, err);
        if (rc) {
            hlab_err e = *err;
            rc = hlab_yaml_fail(&s->doc, s->budget.node, err, "point %d (%s): %s", index, label, e.msg);
        }
    }
    if (!rc && ((rc = hlab_model_config_resolve(&p.model, err)) || (rc = hlab_count(&p.model, p.train.seq_len, &counts, err)))) {
        hlab_err e = *err;
        const hlab_yaml_node *at = s->n_axes ? s->axes[0].key_node : s->doc.root;
        rc = hlab_yaml_fail(&s->doc, at, err, "point %d (%s): %s", index, label, e.msg);
    }
    if (!rc) rc = hlab_buf_status(&axes, err);
    for (int k = 0; !rc && k < s->n_seeds; k++) {
        hlab_design_point *d = &out[k];
        memset(d, 0, sizeof *d);
        d->index = index;
        d->design = design;
        d->point = p;
        d->point.train.seed = (uint64_t)s->seeds[k];
        d->seed = s->seeds[k];
        d->counts = counts;
        snprintf(d->label, sizeof d->label, "%s", label);
        hlab_buf cfg;
        hlab_buf_init(&cfg);
        rc = hlab_point_to_json(&d->point, &cfg, err);
        uint64_t h = hlab_fnv1a64(cfg.data ? cfg.data : "", cfg.len, HLAB_FNV_OFFSET);
        h = hlab_fnv1a64(&d->seed, sizeof d->seed, h);
        snprintf(d->hash, sizeof d->hash, "%016llx", (unsigned long long)h);
        resolve_data_path(s, d->point.data.train, sizeof d->point.data.train);
        resolve_data_path(s, d->point.data.val, sizeof d->point.data.val);
        hlab_buf_reset(&cfg);
        if (!rc) rc = hlab_point_to_json(&d->point, &cfg, err);
        d->config_json = cfg.data;
        d->axes_json = strdup(axes.data);
        if (!rc && !d->axes_json) rc = hlab_fail(err, HLAB_ENOMEM, "out of memory");
        const hlab_train_config *t = &d->point.train;
        d->train_flops = counts.train_flops_per_token * (double)t->steps * t->batch * t->grad_accum * t->seq_len;
        d->est_memory_bytes = 16 * counts.params + hlab_activation_bytes(&d->point.model, t->batch, t->seq_len, 4);
        if (rc) point_free(d);
    }
    hlab_buf_free(&axes);
    return rc;
}

/* Does the design chosen by `choice` pass every constraint? */
static int passes(const hlab_study *s, const int *choice, int *ok, hlab_err *err) {
    *ok = 1;
    if (!s->n_constraints) return HLAB_OK;
    hlab_point p = s->base;
    int rc = apply_axes(s, choice, &p, err);
    if (rc) return rc;
    hlab_buf json;
    hlab_buf_init(&json);
    rc = hlab_point_to_json(&p, &json, err);
    lookup_ctx lc = {json.data};
    for (int i = 0; !rc && i < s->n_constraints && *ok; i++) {
        hlab_err e = {0};
        if ((rc = hlab_expr_eval(s->constraints[i].expr, lookup_field, &lc, ok, &e)))
            hlab_yaml_fail(&s->doc, s->constraints[i].node, err, "constraint %d \"%s\": %s", i + 1,
                           s->constraints[i].text, e.msg);
    }
    hlab_buf_free(&json);
    return rc;
}

#define MAX_COMBINATIONS 1000000

int hlab_study_expand(const hlab_study *s, hlab_point_set *out, hlab_err *err) {
    memset(out, 0, sizeof *out);
    long long total = 1;
    for (int a = 0; a < s->n_axes; a++) {
        total *= s->axes[a].n;
        if (total > MAX_COMBINATIONS)
            return hlab_yaml_fail(&s->doc, s->axes[a].key_node, err, "the space has more than %d combinations", MAX_COMBINATIONS);
    }
    out->n_combinations = (int)total;
    /* Combination c in file order: the first axis varies slowest. */
    int *valid = malloc((size_t)total * sizeof *valid);
    int choice[256], n_valid = 0, rc = HLAB_OK;
    if (!valid) return hlab_fail(err, HLAB_ENOMEM, "out of memory");
    if (s->n_axes > 256) {
        free(valid);
        return hlab_fail(err, HLAB_EINVAL, "%s: more than 256 axes", s->path);
    }
    for (long long c = 0; c < total && !rc; c++) {
        long long r = c;
        for (int a = s->n_axes - 1; a >= 0; a--) choice[a] = (int)(r % s->axes[a].n), r /= s->axes[a].n;
        int ok;
        if (!(rc = passes(s, choice, &ok, err)) && ok) valid[n_valid++] = (int)c;
    }
    if (rc) return free(valid), rc;
    out->n_filtered = (int)total - n_valid;
    if (n_valid == 0) {
        free(valid);
        const hlab_yaml_node *at = s->n_constraints ? s->constraints[0].node : s->doc.root;
        return hlab_yaml_fail(&s->doc, at, err, "the constraints exclude all %lld combinations of the space: no point to train",
                              total);
    }
    int n_designs = n_valid;
    if (s->strategy.kind == HLAB_STRATEGY_RANDOM) {
        if (s->strategy.n > n_valid) {
            free(valid);
            const hlab_yaml_node *st = hlab_yaml_get(s->doc.root, "strategy");
            return hlab_yaml_fail(&s->doc, st ? st : s->doc.root, err,
                                  "strategy.n %d exceeds the %d combinations the constraints allow (use grid, or a smaller n)",
                                  s->strategy.n, n_valid);
        }
        /* partial Fisher-Yates with the study's seed, then back to file order */
        hlab_rng rng;
        hlab_rng_seed(&rng, s->strategy.seed);
        for (int i = 0; i < s->strategy.n; i++) {
            int j = i + (int)hlab_rng_below(&rng, (uint64_t)(n_valid - i));
            int t = valid[i];
            valid[i] = valid[j];
            valid[j] = t;
        }
        n_designs = s->strategy.n;
        for (int i = 1; i < n_designs; i++)
            for (int j = i; j > 0 && valid[j - 1] > valid[j]; j--) {
                int t = valid[j];
                valid[j] = valid[j - 1];
                valid[j - 1] = t;
            }
    }
    out->items = calloc((size_t)n_designs * (size_t)s->n_seeds, sizeof *out->items);
    if (!out->items) return free(valid), hlab_fail(err, HLAB_ENOMEM, "out of memory");
    for (int d = 0; d < n_designs && !rc; d++) {
        long long r = valid[d];
        for (int a = s->n_axes - 1; a >= 0; a--) choice[a] = (int)(r % s->axes[a].n), r /= s->axes[a].n;
        rc = build_design(s, choice, d + 1, d, &out->items[out->n], err);
        if (!rc) out->n += s->n_seeds;
    }
    free(valid);
    out->n_designs = n_designs;
    /* two designs that resolve to the same config (an axis the others override) would share a hash */
    for (int i = 0; !rc && i < out->n; i++)
        for (int j = 0; j < i && !rc; j++)
            if (!strcmp(out->items[i].hash, out->items[j].hash))
                rc = hlab_yaml_fail(&s->doc, s->n_axes ? s->axes[0].key_node : s->doc.root, err,
                                    "points %d (%s) and %d (%s) resolve to the same config: an axis has no effect",
                                    out->items[j].index, out->items[j].label, out->items[i].index, out->items[i].label);
    if (rc) hlab_point_set_free(out);
    return rc;
}
