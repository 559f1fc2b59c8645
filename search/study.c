/* search/study.c — parses and validates a study file (docs/STUDY.md) into an
 * hlab_study. Conventions: every error is "FILE:LINE:COL: what was expected"
 * at the node that is wrong; unknown keys get a did-you-mean; the YAML document
 * stays alive inside the study so later stages (expansion, budget) can point
 * at nodes too. Model/train/data fields go through train/'s point API, so the
 * keys and their checks are the same as in POINT.yaml files and CLI overrides.
 */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "db/db.h"
#include "search/search.h"

static const char *const top_keys[] = {"name",     "description", "data",  "base",       "space", "constraints",
                                       "budget",   "strategy",    "seeds", "objectives", "eval",  NULL};

typedef struct {
    hlab_study *s;
    const hlab_yaml_doc *doc;
    hlab_err *err;
} ctx;

static int fail(ctx *c, const hlab_yaml_node *n, const char *fmt, const char *a, const char *b) {
    hlab_buf msg;
    hlab_buf_init(&msg);
    hlab_buf_printf(&msg, fmt, a ? a : "", b ? b : "");
    int rc = hlab_yaml_fail(c->doc, n, c->err, "%s", msg.data ? msg.data : "out of memory");
    hlab_buf_free(&msg);
    return rc;
}

static int unknown_key(ctx *c, const hlab_yaml_node *kn, const char *where, const char *const *valid) {
    const char *near = hlab_did_you_mean(kn->scalar ? kn->scalar : "", valid);
    hlab_buf b;
    hlab_buf_init(&b);
    hlab_buf_printf(&b, "unknown key '%s' in %s", kn->scalar ? kn->scalar : "", where);
    if (near) {
        hlab_buf_printf(&b, " (did you mean '%s'?)", near);
    } else {
        hlab_buf_puts(&b, " (expected one of:");
        for (int i = 0; valid[i]; i++) hlab_buf_printf(&b, " %s", valid[i]);
        hlab_buf_puts(&b, ")");
    }
    int rc = hlab_yaml_fail(c->doc, kn, c->err, "%s", b.data ? b.data : "unknown key");
    hlab_buf_free(&b);
    return rc;
}

/* Checks that every key of map is in valid. */
static int check_keys(ctx *c, const hlab_yaml_node *map, const char *where, const char *const *valid) {
    for (int i = 0; i < map->n; i++) {
        const hlab_yaml_node *kn = map->items[2 * i];
        int ok = 0;
        for (int j = 0; valid[j] && !ok; j++) ok = kn->scalar && !strcmp(kn->scalar, valid[j]);
        if (!ok) return unknown_key(c, kn, where, valid);
    }
    return HLAB_OK;
}

static int want_kind(ctx *c, const hlab_yaml_node *n, hlab_yaml_kind kind, const char *what) {
    if (n->kind == kind) return HLAB_OK;
    static const char *const names[] = {"a single value", "a list", "a mapping"};
    return fail(c, n, "%s: expected %s", what, names[kind]);
}

static int get_int(ctx *c, const hlab_yaml_node *n, const char *what, long long lo, long long *out) {
    if (n->kind != HLAB_YAML_SCALAR || n->quoted) return fail(c, n, "%s: expected an integer", what, NULL);
    char *end;
    *out = strtoll(n->scalar, &end, 10);
    if (end == n->scalar || *end) return fail(c, n, "%s: expected an integer, got '%s'", what, n->scalar);
    if (*out < lo) {
        char lim[64];
        snprintf(lim, sizeof lim, "%lld", lo);
        return fail(c, n, "%s: expected an integer >= %s", what, lim);
    }
    return HLAB_OK;
}

static int get_double(ctx *c, const hlab_yaml_node *n, const char *what, double *out) {
    if (n->kind != HLAB_YAML_SCALAR || n->quoted) return fail(c, n, "%s: expected a number", what, NULL);
    char *end;
    double v = strtod(n->scalar, &end);
    if (end == n->scalar || *end || !isfinite(v))
        return fail(c, n, "%s: expected a number, got '%s'", what, n->scalar);
    *out = v;
    return HLAB_OK;
}

static const hlab_yaml_node *find_key_node(const hlab_yaml_node *map, const char *key) {
    for (int i = 0; map && map->kind == HLAB_YAML_MAP && i < map->n; i++)
        if (map->items[2 * i]->scalar && !strcmp(map->items[2 * i]->scalar, key)) return map->items[2 * i];
    return NULL;
}

static const hlab_yaml_node *get_in(const hlab_yaml_node *map, const char *key) {
    return map && map->kind == HLAB_YAML_MAP ? hlab_yaml_get(map, key) : NULL;
}

/* ---- sections ----------------------------------------------------------------- */
static int parse_name(ctx *c, const hlab_yaml_node *v) {
    if (v->kind != HLAB_YAML_SCALAR || !v->scalar[0])
        return fail(c, v, "name: expected a study name (letters, digits, '_', '-', '.')", NULL, NULL);
    for (const char *p = v->scalar; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '_' && *p != '-' && *p != '.')
            return fail(c, v, "name: '%s' has characters other than letters, digits, '_', '-', '.' (it names a folder)",
                        v->scalar, NULL);
    if (strlen(v->scalar) >= sizeof c->s->name) return fail(c, v, "name: longer than 127 characters", NULL, NULL);
    snprintf(c->s->name, sizeof c->s->name, "%s", v->scalar);
    return HLAB_OK;
}

static int parse_base(ctx *c, const hlab_yaml_node *v) {
    static const char *const sections[] = {"model", "train", "data", NULL};
    int rc;
    if ((rc = want_kind(c, v, HLAB_YAML_MAP, "base"))) return rc;
    if ((rc = check_keys(c, v, "base", sections))) return rc;
    for (int i = 0; i < v->n; i++)
        if ((rc = hlab_point_apply_section(&c->s->base, v->items[2 * i]->scalar, c->doc, v->items[2 * i + 1], c->err)))
            return rc;
    return HLAB_OK;
}

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

static int axis_add(hlab_axis *a, const char *text, const hlab_yaml_node *node) {
    char **vals = realloc(a->values, (size_t)(a->n + 1) * sizeof *vals);
    if (!vals) return HLAB_ENOMEM;
    a->values = vals;
    const hlab_yaml_node **nodes = realloc(a->nodes, (size_t)(a->n + 1) * sizeof *nodes);
    if (!nodes) return HLAB_ENOMEM;
    a->nodes = nodes;
    if (!(a->values[a->n] = dup_or_null(text))) return HLAB_ENOMEM;
    a->nodes[a->n] = node;
    a->n++;
    return HLAB_OK;
}

/* Text of a list value ([0, 5] for placement indices) for labels and JSON. */
static void seq_text(const hlab_yaml_node *n, char *out, size_t cap) {
    size_t used = (size_t)snprintf(out, cap, "[");
    for (int i = 0; i < n->n && used < cap; i++)
        used += (size_t)snprintf(out + used, cap - used, "%s%s", i ? "," : "",
                                 n->items[i]->scalar ? n->items[i]->scalar : "?");
    if (used < cap) snprintf(out + used, cap - used, "]");
}

/* {from, to, steps, scale} or {from, to, step}: numeric values of an axis. */
static int parse_range(ctx *c, hlab_axis *a, const hlab_yaml_node *v) {
    static const char *const keys[] = {"from", "to", "steps", "step", "scale", NULL};
    int rc;
    if ((rc = check_keys(c, v, "a range", keys))) return rc;
    const hlab_yaml_node *from = hlab_yaml_get(v, "from"), *to = hlab_yaml_get(v, "to"),
                         *steps = hlab_yaml_get(v, "steps"), *step = hlab_yaml_get(v, "step"),
                         *scale = hlab_yaml_get(v, "scale");
    if (!from || !to) return fail(c, v, "range of %s: expected both 'from' and 'to'", a->key, NULL);
    if (!!steps == !!step)
        return fail(c, v, "range of %s: expected either 'steps' (how many values) or 'step' (the spacing)", a->key, NULL);
    double f, t;
    if ((rc = get_double(c, from, "from", &f)) || (rc = get_double(c, to, "to", &t))) return rc;
    int is_log = 0;
    if (scale) {
        if (scale->kind != HLAB_YAML_SCALAR || (strcmp(scale->scalar, "linear") && strcmp(scale->scalar, "log")))
            return fail(c, scale, "scale: expected linear or log", NULL, NULL);
        is_log = !strcmp(scale->scalar, "log");
    }
    int integral = floor(f) == f && floor(t) == t && !strpbrk(from->scalar, ".eE") && !strpbrk(to->scalar, ".eE");
    long long n;
    double spacing = 0;
    if (steps) {
        if ((rc = get_int(c, steps, "steps", 1, &n))) return rc;
        if (n > 10000) return fail(c, steps, "steps: expected at most 10000 values", NULL, NULL);
        if (n == 1 && f != t) return fail(c, steps, "steps: 1 value cannot span from %s to %s", from->scalar, to->scalar);
    } else {
        if (is_log) return fail(c, step, "step: a log range takes 'steps' (how many values), not 'step'", NULL, NULL);
        if ((rc = get_double(c, step, "step", &spacing))) return rc;
        if (spacing <= 0) return fail(c, step, "step: expected a positive spacing", NULL, NULL);
        if (t < f) return fail(c, to, "to: expected a value >= from (%s)", from->scalar, NULL);
        if ((t - f) / spacing > 10000) return fail(c, step, "step: the range would have more than 10000 values", NULL, NULL);
        n = (long long)floor((t - f) / spacing * (1 + 1e-12)) + 1;
        integral = integral && floor(spacing) == spacing && !strpbrk(step->scalar, ".eE");
    }
    if (is_log && (f <= 0 || t <= 0)) return fail(c, from, "log range: expected from and to > 0", NULL, NULL);
    for (long long i = 0; i < n; i++) {
        double x;
        if (step) x = f + (double)i * spacing;
        else if (n == 1) x = f;
        else if (is_log) x = exp(log(f) + (log(t) - log(f)) * (double)i / (double)(n - 1));
        else x = f + (t - f) * (double)i / (double)(n - 1);
        char text[64];
        if (integral) snprintf(text, sizeof text, "%lld", (long long)llround(x));
        else snprintf(text, sizeof text, "%.6g", x);
        /* rounding can repeat a value (log ranges over small integers): keep one */
        if (a->n && !strcmp(a->values[a->n - 1], text)) continue;
        if (axis_add(a, text, NULL)) return hlab_fail(c->err, HLAB_ENOMEM, "out of memory");
    }
    return HLAB_OK;
}

static int parse_space(ctx *c, const hlab_yaml_node *v) {
    int rc;
    if ((rc = want_kind(c, v, HLAB_YAML_MAP, "space"))) return rc;
    hlab_study *s = c->s;
    s->axes = calloc((size_t)(v->n ? v->n : 1), sizeof *s->axes);
    if (!s->axes) return hlab_fail(c->err, HLAB_ENOMEM, "out of memory");
    const char *const *keys = hlab_point_keys();
    for (int i = 0; i < v->n; i++) {
        const hlab_yaml_node *kn = v->items[2 * i], *vn = v->items[2 * i + 1];
        hlab_axis *a = &s->axes[s->n_axes++];
        a->key_node = kn;
        snprintf(a->key, sizeof a->key, "%s", kn->scalar);
        int known = 0;
        for (int j = 0; keys[j] && !known; j++) known = !strcmp(keys[j], kn->scalar);
        if (!known) {
            const char *near = hlab_did_you_mean(kn->scalar, keys);
            if (near) return fail(c, kn, "unknown axis '%s' (did you mean '%s'?)", kn->scalar, near);
            return fail(c, kn, "unknown axis '%s' (expected a dotted key such as model.ratio; docs/TRAINING.md lists them)",
                        kn->scalar, NULL);
        }
        if (!strcmp(a->key, "train.seed"))
            return fail(c, kn, "train.seed cannot be an axis: list the seeds under 'seeds'", NULL, NULL);
        if (vn->kind == HLAB_YAML_MAP) {
            if ((rc = parse_range(c, a, vn))) return rc;
        } else if (vn->kind == HLAB_YAML_SEQ) {
            if (vn->n == 0) return fail(c, vn, "%s: expected at least one value", a->key, NULL);
            for (int j = 0; j < vn->n; j++) {
                const hlab_yaml_node *it = vn->items[j];
                char text[512];
                if (it->kind == HLAB_YAML_SCALAR) snprintf(text, sizeof text, "%s", it->scalar);
                else if (it->kind == HLAB_YAML_SEQ) seq_text(it, text, sizeof text);
                else return fail(c, it, "%s: expected a value, found a mapping", a->key, NULL);
                for (int k = 0; k < a->n; k++)
                    if (!strcmp(a->values[k], text)) return fail(c, it, "%s: the value '%s' is listed twice", a->key, text);
                if (axis_add(a, text, it)) return hlab_fail(c->err, HLAB_ENOMEM, "out of memory");
            }
        } else {
            return fail(c, vn, "%s: expected a list of values or a range {from, to, steps}", a->key, NULL);
        }
        /* Type-check every value now, at its own position. */
        for (int j = 0; j < a->n; j++) {
            hlab_point tmp = s->base;
            if (a->nodes[j]) rc = hlab_point_set_yaml(&tmp, a->key, c->doc, a->nodes[j], c->err);
            else if ((rc = hlab_point_set_str(&tmp, a->key, a->values[j], c->err)))
                hlab_err_prefix(c->err, "%s:%d:%d", c->doc->path, vn->line, vn->col);
            if (rc) return rc;
        }
    }
    return HLAB_OK;
}

static int parse_constraints(ctx *c, const hlab_yaml_node *v) {
    int rc;
    if ((rc = want_kind(c, v, HLAB_YAML_SEQ, "constraints"))) return rc;
    hlab_study *s = c->s;
    s->constraints = calloc((size_t)(v->n ? v->n : 1), sizeof *s->constraints);
    if (!s->constraints) return hlab_fail(c->err, HLAB_ENOMEM, "out of memory");
    for (int i = 0; i < v->n; i++) {
        const hlab_yaml_node *it = v->items[i];
        if (it->kind != HLAB_YAML_SCALAR)
            return fail(c, it, "constraints: expected an expression in quotes, e.g. \"model.n_layers >= 4\"", NULL, NULL);
        hlab_constraint *k = &s->constraints[s->n_constraints++];
        k->node = it;
        if (!(k->text = strdup(it->scalar))) return hlab_fail(c->err, HLAB_ENOMEM, "out of memory");
        int col = 0;
        hlab_err e = {0};
        if ((rc = hlab_expr_parse(k->text, hlab_point_keys(), &k->expr, &col, &e))) {
            /* point at the character inside the file where the text is plain
               or quoted on one line; the message keeps the in-expression column */
            hlab_yaml_node at = *it;
            if (col > 0) at.col = it->col + (it->quoted ? 1 : 0) + col - 1;
            return hlab_yaml_fail(c->doc, &at, c->err, "constraint %d \"%s\": %s", i + 1, k->text, e.msg);
        }
    }
    return HLAB_OK;
}

static int parse_budget(ctx *c, const hlab_yaml_node *v) {
    static const char *const keys[] = {"match", "target", "adjust", "tolerance", NULL};
    int rc;
    if ((rc = want_kind(c, v, HLAB_YAML_MAP, "budget")) || (rc = check_keys(c, v, "budget", keys))) return rc;
    hlab_budget *b = &c->s->budget;
    b->node = v;
    b->tolerance = 0.02;
    b->adjust = HLAB_ADJUST_D_MODEL;
    const hlab_yaml_node *m = hlab_yaml_get(v, "match"), *t = hlab_yaml_get(v, "target"),
                         *a = hlab_yaml_get(v, "adjust"), *tol = hlab_yaml_get(v, "tolerance");
    if (!m) return fail(c, v, "budget: expected 'match: params | flops_per_token | train_flops'", NULL, NULL);
    if (!t) return fail(c, v, "budget: expected 'target' (e.g. 25e6)", NULL, NULL);
    static const char *const matches[] = {"params", "flops_per_token", "train_flops", NULL};
    static const char *const adjusts[] = {"d_model", "n_layers", "d_ff", NULL};
    b->match = HLAB_MATCH_NONE;
    for (int i = 0; matches[i] && m->scalar; i++)
        if (!strcmp(m->scalar, matches[i])) b->match = (hlab_match)(i + 1);
    if (b->match == HLAB_MATCH_NONE) {
        const char *near = m->scalar ? hlab_did_you_mean(m->scalar, matches) : NULL;
        return fail(c, m, "budget.match: expected params, flops_per_token or train_flops%s%s", near ? ", did you mean " : "",
                    near ? near : "");
    }
    if ((rc = get_double(c, t, "budget.target", &b->target))) return rc;
    if (b->target <= 0) return fail(c, t, "budget.target: expected a positive number", NULL, NULL);
    if (a) {
        int found = 0;
        for (int i = 0; adjusts[i] && a->scalar && !found; i++)
            if (!strcmp(a->scalar, adjusts[i])) b->adjust = (hlab_adjust)i, found = 1;
        if (!found) return fail(c, a, "budget.adjust: expected d_model, n_layers or d_ff", NULL, NULL);
    }
    if (tol) {
        if ((rc = get_double(c, tol, "budget.tolerance", &b->tolerance))) return rc;
        if (!(b->tolerance > 0 && b->tolerance < 1))
            return fail(c, tol, "budget.tolerance: expected a fraction in (0, 1), e.g. 0.02", NULL, NULL);
    }
    return HLAB_OK;
}

static int parse_strategy(ctx *c, const hlab_yaml_node *v) {
    hlab_strategy *st = &c->s->strategy;
    const hlab_yaml_node *kind = v;
    int rc;
    if (v->kind == HLAB_YAML_MAP) {
        kind = hlab_yaml_get(v, "kind");
        if (!kind) return fail(c, v, "strategy: expected 'kind: grid | random | halving'", NULL, NULL);
    } else if (v->kind != HLAB_YAML_SCALAR) {
        return fail(c, v, "strategy: expected grid, or a mapping {kind: random, n: 20, seed: 0}", NULL, NULL);
    }
    static const char *const kinds[] = {"grid", "random", "halving", NULL};
    int found = 0;
    for (int i = 0; kinds[i] && kind->scalar && !found; i++)
        if (!strcmp(kind->scalar, kinds[i])) st->kind = (hlab_strategy_kind)i, found = 1;
    if (!found) {
        const char *near = kind->scalar ? hlab_did_you_mean(kind->scalar, kinds) : NULL;
        return fail(c, kind, "strategy.kind: expected grid, random or halving%s%s", near ? ", did you mean " : "",
                    near ? near : "");
    }
    if (v->kind != HLAB_YAML_MAP) {
        if (st->kind != HLAB_STRATEGY_GRID)
            return fail(c, v, "strategy %s needs its settings: write it as a mapping with kind", kind->scalar, NULL);
        return HLAB_OK;
    }
    static const char *const grid_keys[] = {"kind", NULL};
    static const char *const random_keys[] = {"kind", "n", "seed", NULL};
    static const char *const halving_keys[] = {"kind", "eta", "min_steps", "max_steps", NULL};
    const char *const *valid = st->kind == HLAB_STRATEGY_GRID ? grid_keys : st->kind == HLAB_STRATEGY_RANDOM ? random_keys : halving_keys;
    char where[64];
    snprintf(where, sizeof where, "strategy %s", kind->scalar);
    if ((rc = check_keys(c, v, where, valid))) return rc;
    long long x;
    const hlab_yaml_node *n;
    if (st->kind == HLAB_STRATEGY_RANDOM) {
        if (!(n = hlab_yaml_get(v, "n"))) return fail(c, v, "strategy random: expected 'n' (how many points to sample)", NULL, NULL);
        if ((rc = get_int(c, n, "strategy.n", 1, &x))) return rc;
        st->n = (int)x;
        if ((n = hlab_yaml_get(v, "seed"))) {
            if ((rc = get_int(c, n, "strategy.seed", 0, &x))) return rc;
            st->seed = (uint64_t)x;
        }
    }
    if (st->kind == HLAB_STRATEGY_HALVING) {
        st->eta = 3;
        st->max_steps = c->s->base.train.steps;
        if ((n = hlab_yaml_get(v, "eta"))) {
            if ((rc = get_int(c, n, "strategy.eta", 2, &x))) return rc;
            st->eta = (int)x;
        }
        if (!(n = hlab_yaml_get(v, "min_steps")))
            return fail(c, v, "strategy halving: expected 'min_steps' (steps of the first rung)", NULL, NULL);
        if ((rc = get_int(c, n, "strategy.min_steps", 1, &x))) return rc;
        st->min_steps = (int)x;
        const hlab_yaml_node *mx = hlab_yaml_get(v, "max_steps");
        if (mx) {
            if ((rc = get_int(c, mx, "strategy.max_steps", 1, &x))) return rc;
            st->max_steps = (int)x;
        }
        if (st->min_steps > st->max_steps) {
            char a[32], b[32];
            snprintf(a, sizeof a, "%d", st->min_steps);
            snprintf(b, sizeof b, "%d", st->max_steps);
            return fail(c, n, "strategy.min_steps %s exceeds max_steps %s", a, b);
        }
    }
    return HLAB_OK;
}

static int parse_seeds(ctx *c, const hlab_yaml_node *v) {
    hlab_study *s = c->s;
    int count = v->kind == HLAB_YAML_SEQ ? v->n : 1;
    if (v->kind == HLAB_YAML_MAP) return fail(c, v, "seeds: expected a list of integers, e.g. [0, 1]", NULL, NULL);
    if (count == 0) return fail(c, v, "seeds: expected at least one seed", NULL, NULL);
    if (!(s->seeds = calloc((size_t)count, sizeof *s->seeds))) return hlab_fail(c->err, HLAB_ENOMEM, "out of memory");
    for (int i = 0; i < count; i++) {
        const hlab_yaml_node *it = v->kind == HLAB_YAML_SEQ ? v->items[i] : v;
        long long x;
        int rc = get_int(c, it, "seeds", 0, &x);
        if (rc) return rc;
        for (int j = 0; j < s->n_seeds; j++)
            if (s->seeds[j] == x) return fail(c, it, "seeds: seed %s is listed twice", it->scalar, NULL);
        s->seeds[s->n_seeds++] = x;
    }
    return HLAB_OK;
}

static int parse_objectives(ctx *c, const hlab_yaml_node *v) {
    int rc;
    if ((rc = want_kind(c, v, HLAB_YAML_SEQ, "objectives"))) return rc;
    hlab_study *s = c->s;
    if (v->n > HLAB_STUDY_MAX_OBJECTIVES) return fail(c, v, "objectives: at most 16", NULL, NULL);
    for (int i = 0; i < v->n; i++) {
        const hlab_yaml_node *it = v->items[i];
        const char *colon = it->kind == HLAB_YAML_SCALAR ? strrchr(it->scalar, ':') : NULL;
        if (!colon || (strcmp(colon, ":min") && strcmp(colon, ":max")))
            return fail(c, it, "objectives: expected METRIC:min or METRIC:max, e.g. val_loss:min", NULL, NULL);
        hlab_objective *o = &s->objectives[s->n_objectives++];
        snprintf(o->metric, sizeof o->metric, "%.*s", (int)(colon - it->scalar), it->scalar);
        o->maximize = !strcmp(colon, ":max");
        if (!hlab_db_metric_known(o->metric)) {
            const char *near = hlab_did_you_mean(o->metric, hlab_db_metric_names());
            if (near) return fail(c, it, "objectives: unknown metric '%s' (did you mean '%s'?)", o->metric, near);
            return fail(c, it, "objectives: unknown metric '%s' (docs/STUDY.md lists them; eval.NAME for eval scores)",
                        o->metric, NULL);
        }
        for (int j = 0; j + 1 < s->n_objectives; j++)
            if (!strcmp(s->objectives[j].metric, o->metric))
                return fail(c, it, "objectives: '%s' is listed twice", o->metric, NULL);
    }
    return HLAB_OK;
}

/* Any YAML node as JSON (scalars: numbers and booleans bare, the rest strings). */
static void node_json(hlab_buf *b, const hlab_yaml_node *n) {
    if (n->kind == HLAB_YAML_SCALAR) {
        char *end;
        strtod(n->scalar, &end);
        if (!n->quoted && n->scalar[0] && !*end && !strpbrk(n->scalar, "xXnN")) hlab_buf_puts(b, n->scalar);
        else if (!n->quoted && (!strcmp(n->scalar, "true") || !strcmp(n->scalar, "false"))) hlab_buf_puts(b, n->scalar);
        else hlab_buf_json_string(b, n->scalar);
        return;
    }
    hlab_buf_puts(b, n->kind == HLAB_YAML_SEQ ? "[" : "{");
    for (int i = 0; i < n->n; i++) {
        if (i) hlab_buf_puts(b, ",");
        if (n->kind == HLAB_YAML_SEQ) {
            node_json(b, n->items[i]);
        } else {
            hlab_buf_json_string(b, n->items[2 * i]->scalar ? n->items[2 * i]->scalar : "");
            hlab_buf_puts(b, ":");
            node_json(b, n->items[2 * i + 1]);
        }
    }
    hlab_buf_puts(b, n->kind == HLAB_YAML_SEQ ? "]" : "}");
}

/* eval: room for the evaluation suites to come; the keys are checked loosely
 * (known names only) and the mapping is stored as JSON with the study. */
static int parse_eval(ctx *c, const hlab_yaml_node *v) {
    static const char *const keys[] = {"suites", "tasks", "every", "batches", "max_examples", "few_shot", "seq_len", NULL};
    int rc;
    if ((rc = want_kind(c, v, HLAB_YAML_MAP, "eval")) || (rc = check_keys(c, v, "eval", keys))) return rc;
    hlab_buf b;
    hlab_buf_init(&b);
    node_json(&b, v);
    if ((rc = hlab_buf_status(&b, c->err))) return hlab_buf_free(&b), rc;
    free(c->s->eval_json);
    c->s->eval_json = b.data;
    return HLAB_OK;
}

/* data.train must name a readable file, relative to the study's folder or to
 * the working directory (docs/STUDY.md). */
static int check_data(ctx *c, const hlab_yaml_node *root) {
    hlab_study *s = c->s;
    /* point at the value that set data.train: base.data wins over data */
    const hlab_yaml_node *where = get_in(get_in(hlab_yaml_get(root, "base"), "data"), "train");
    if (!where) where = get_in(hlab_yaml_get(root, "data"), "train");
    if (!where) where = find_key_node(root, "data");
    if (!where) where = root;
    if (!s->base.data.train[0])
        return fail(c, where, "data: expected 'train: PATH' naming the training text (or token shards)", NULL, NULL);
    if (s->base.data.tokenizer == HLAB_TOK_SHARDS && strpbrk(s->base.data.train, "*?[")) return HLAB_OK; /* a glob */
    char path[2200];
    if (s->base.data.train[0] != '/') {
        snprintf(path, sizeof path, "%s/%s", s->dir, s->base.data.train);
        if (access(path, R_OK) == 0) return HLAB_OK;
    }
    if (access(s->base.data.train, R_OK) == 0) return HLAB_OK;
    return fail(c, where, "data.train: cannot read '%s' (relative paths start at the study file's folder, %s, or the working directory)",
                s->base.data.train, s->dir);
}

static int parse_root(ctx *c) {
    hlab_study *s = c->s;
    const hlab_yaml_node *root = c->doc->root;
    int rc;
    if (!root || root->kind != HLAB_YAML_MAP)
        return hlab_yaml_fail(c->doc, root, c->err, "expected a study: a mapping with name, data, base, space, ...");
    if ((rc = check_keys(c, root, "the study", top_keys))) return rc;
    const hlab_yaml_node *v;
    if (!(v = hlab_yaml_get(root, "name"))) return fail(c, root, "expected 'name: STUDY_NAME' at the top level", NULL, NULL);
    if ((rc = parse_name(c, v))) return rc;
    if ((v = hlab_yaml_get(root, "description"))) {
        if (v->kind != HLAB_YAML_SCALAR) return fail(c, v, "description: expected text", NULL, NULL);
        free(s->description);
        if (!(s->description = strdup(v->scalar))) return hlab_fail(c->err, HLAB_ENOMEM, "out of memory");
    }
    /* data first, then base (base.data may override it), then strategy (halving
       defaults max_steps to base train.steps). */
    if ((v = hlab_yaml_get(root, "data")) && (rc = hlab_point_apply_section(&s->base, "data", c->doc, v, c->err))) return rc;
    if (!(v = hlab_yaml_get(root, "base"))) return fail(c, root, "expected 'base:' with model and train sections", NULL, NULL);
    if ((rc = parse_base(c, v))) return rc;
    if ((rc = hlab_train_config_validate(&s->base.train, c->err)))
        return hlab_err_prefix(c->err, "%s:%d:%d: base.train", c->doc->path, v->line, v->col);
    if ((rc = check_data(c, root))) return rc;
    if ((v = hlab_yaml_get(root, "space")) && (rc = parse_space(c, v))) return rc;
    if ((v = hlab_yaml_get(root, "constraints")) && (rc = parse_constraints(c, v))) return rc;
    if ((v = hlab_yaml_get(root, "budget")) && (rc = parse_budget(c, v))) return rc;
    if ((v = hlab_yaml_get(root, "strategy")) && (rc = parse_strategy(c, v))) return rc;
    if ((v = hlab_yaml_get(root, "seeds"))) {
        if ((rc = parse_seeds(c, v))) return rc;
    } else {
        if (!(s->seeds = calloc(1, sizeof *s->seeds))) return hlab_fail(c->err, HLAB_ENOMEM, "out of memory");
        s->seeds[0] = (int64_t)s->base.train.seed;
        s->n_seeds = 1;
    }
    if ((v = hlab_yaml_get(root, "objectives"))) {
        if ((rc = parse_objectives(c, v))) return rc;
    } else {
        s->n_objectives = 1;
        snprintf(s->objectives[0].metric, sizeof s->objectives[0].metric, "val_loss");
    }
    if ((v = hlab_yaml_get(root, "eval")) && (rc = parse_eval(c, v))) return rc;
    return HLAB_OK;
}

static int study_init(hlab_study *s, const char *path) {
    memset(s, 0, sizeof *s);
    hlab_point_defaults(&s->base);
    snprintf(s->path, sizeof s->path, "%s", path);
    const char *slash = strrchr(path, '/');
    if (slash) snprintf(s->dir, sizeof s->dir, "%.*s", (int)(slash - path ? slash - path : 1), path);
    else snprintf(s->dir, sizeof s->dir, ".");
    s->description = strdup("");
    s->eval_json = strdup("{}");
    return s->description && s->eval_json ? HLAB_OK : HLAB_ENOMEM;
}

static int study_finish(hlab_study *s, int rc, hlab_err *err) {
    if (rc == HLAB_OK) {
        ctx c = {s, &s->doc, err};
        rc = parse_root(&c);
    }
    if (rc) hlab_study_free(s);
    return rc;
}

int hlab_study_load(const char *path, hlab_study *s, hlab_err *err) {
    if (study_init(s, path)) {
        hlab_study_free(s);
        return hlab_fail(err, HLAB_ENOMEM, "out of memory");
    }
    return study_finish(s, hlab_yaml_load(path, &s->doc, err), err);
}

int hlab_study_load_string(const char *name, const char *text, hlab_study *s, hlab_err *err) {
    if (study_init(s, name)) {
        hlab_study_free(s);
        return hlab_fail(err, HLAB_ENOMEM, "out of memory");
    }
    return study_finish(s, hlab_yaml_load_string(name, text, &s->doc, err), err);
}

void hlab_study_free(hlab_study *s) {
    if (!s) return;
    for (int i = 0; i < s->n_axes; i++) {
        for (int j = 0; j < s->axes[i].n; j++) free(s->axes[i].values[j]);
        free(s->axes[i].values);
        free(s->axes[i].nodes);
    }
    free(s->axes);
    for (int i = 0; i < s->n_constraints; i++) {
        free(s->constraints[i].text);
        hlab_expr_free(s->constraints[i].expr);
    }
    free(s->constraints);
    free(s->seeds);
    free(s->description);
    free(s->eval_json);
    hlab_yaml_free(&s->doc);
    memset(s, 0, sizeof *s);
}

void hlab_study_objectives_text(const hlab_study *s, char *out, size_t cap) {
    size_t used = 0;
    out[0] = 0;
    for (int i = 0; i < s->n_objectives && used < cap; i++)
        used += (size_t)snprintf(out + used, cap - used, "%s%s:%s", i ? "," : "", s->objectives[i].metric,
                                 s->objectives[i].maximize ? "max" : "min");
}

int hlab_study_to_json(const hlab_study *s, hlab_buf *b, hlab_err *err) {
    static const char *const match_names[] = {"none", "params", "flops_per_token", "train_flops"};
    static const char *const adjust_names[] = {"d_model", "n_layers", "d_ff"};
    static const char *const strategy_names[] = {"grid", "random", "halving"};
    hlab_buf_puts(b, "{\"name\":");
    hlab_buf_json_string(b, s->name);
    hlab_buf_puts(b, ",\"description\":");
    hlab_buf_json_string(b, s->description ? s->description : "");
    hlab_buf_puts(b, ",\"base\":");
    int rc = hlab_point_to_json(&s->base, b, err);
    if (rc) return rc;
    hlab_buf_puts(b, ",\"space\":{");
    for (int i = 0; i < s->n_axes; i++) {
        hlab_buf_printf(b, "%s", i ? "," : "");
        hlab_buf_json_string(b, s->axes[i].key);
        hlab_buf_puts(b, ":[");
        for (int j = 0; j < s->axes[i].n; j++) {
            if (j) hlab_buf_puts(b, ",");
            hlab_buf_json_string(b, s->axes[i].values[j]);
        }
        hlab_buf_puts(b, "]");
    }
    hlab_buf_puts(b, "},\"constraints\":[");
    for (int i = 0; i < s->n_constraints; i++) {
        if (i) hlab_buf_puts(b, ",");
        hlab_buf_json_string(b, s->constraints[i].text);
    }
    hlab_buf_puts(b, "],\"budget\":");
    if (s->budget.match == HLAB_MATCH_NONE) hlab_buf_puts(b, "null");
    else
        hlab_buf_printf(b, "{\"match\":\"%s\",\"target\":%.17g,\"adjust\":\"%s\",\"tolerance\":%.17g}",
                        match_names[s->budget.match], s->budget.target, adjust_names[s->budget.adjust],
                        s->budget.tolerance);
    hlab_buf_printf(b, ",\"strategy\":{\"kind\":\"%s\"", strategy_names[s->strategy.kind]);
    if (s->strategy.kind == HLAB_STRATEGY_RANDOM)
        hlab_buf_printf(b, ",\"n\":%d,\"seed\":%llu", s->strategy.n, (unsigned long long)s->strategy.seed);
    if (s->strategy.kind == HLAB_STRATEGY_HALVING)
        hlab_buf_printf(b, ",\"eta\":%d,\"min_steps\":%d,\"max_steps\":%d", s->strategy.eta, s->strategy.min_steps,
                        s->strategy.max_steps);
    hlab_buf_puts(b, "},\"seeds\":[");
    for (int i = 0; i < s->n_seeds; i++) hlab_buf_printf(b, "%s%lld", i ? "," : "", (long long)s->seeds[i]);
    char obj[1024];
    hlab_study_objectives_text(s, obj, sizeof obj);
    hlab_buf_puts(b, "],\"objectives\":");
    hlab_buf_json_string(b, obj);
    hlab_buf_printf(b, ",\"eval\":%s}", s->eval_json ? s->eval_json : "{}");
    return hlab_buf_status(b, err);
}
