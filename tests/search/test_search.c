/* tests/search/test_search.c — the study library without training:
 *  1. constraint expressions: random comparisons against C's own answer,
 *     precedence, `in`, strings vs numbers, and syntax errors with columns;
 *  2. expansion: grid counts and constraint filtering against a brute-force
 *     count done here, log/linear ranges, random sampling (distinct, seeded,
 *     a subset of the grid);
 *  3. budget matching: random targets land within tolerance (checked with an
 *     independent hlab_count), the adjusted field stays a valid multiple, and
 *     an unreachable target fails saying the closest value;
 *  4. identity hashes: stable across loads and working directories, distinct
 *     per seed and config, and editing a study keeps the old points' hashes.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "search/search.h"
#include "test.h"

/* ---- 1. expressions ---------------------------------------------------------- */
typedef struct {
    double a, b;
    const char *s;
} fields;

static int lookup(void *user, const char *field, hlab_value *out, hlab_err *err) {
    const fields *f = user;
    memset(out, 0, sizeof *out);
    if (!strcmp(field, "x.a")) out->kind = HLAB_VAL_NUM, out->num = f->a;
    else if (!strcmp(field, "x.b")) out->kind = HLAB_VAL_NUM, out->num = f->b;
    else if (!strcmp(field, "x.s")) out->kind = HLAB_VAL_STR, snprintf(out->str, sizeof out->str, "%s", f->s);
    else return hlab_fail(err, HLAB_EINVAL, "no field %s", field);
    return HLAB_OK;
}

static int eval_text(const char *text, const fields *f, int *res) {
    static const char *const known[] = {"x.a", "x.b", "x.s", NULL};
    hlab_expr *e;
    hlab_err err = {0};
    int rc = hlab_expr_parse(text, known, &e, NULL, &err);
    if (rc) {
        fprintf(stderr, "parse '%s': %s\n", text, err.msg);
        return rc;
    }
    rc = hlab_expr_eval(e, lookup, (void *)f, res, &err);
    hlab_expr_free(e);
    return rc;
}

static void test_expressions(hlab_rng *rng) {
    static const char *const ops[] = {"==", "!=", "<", "<=", ">", ">="};
    for (int t = 0; t < 300; t++) {
        fields f = {(double)hlab_rng_below(rng, 5), (double)hlab_rng_below(rng, 5), "1:5"};
        int op1 = (int)hlab_rng_below(rng, 6), op2 = (int)hlab_rng_below(rng, 6), join = (int)hlab_rng_below(rng, 2);
        int neg = (int)hlab_rng_below(rng, 2);
        double c = (double)hlab_rng_below(rng, 5);
        char text[256];
        snprintf(text, sizeof text, "%sx.a %s x.b %s (x.b %s %g)", neg ? "not " : "", ops[op1], join ? "and" : "or",
                 ops[op2], c);
        int l1 = op1 == 0 ? f.a == f.b : op1 == 1 ? f.a != f.b : op1 == 2 ? f.a < f.b : op1 == 3 ? f.a <= f.b
                 : op1 == 4 ? f.a > f.b : f.a >= f.b;
        int l2 = op2 == 0 ? f.b == c : op2 == 1 ? f.b != c : op2 == 2 ? f.b < c : op2 == 3 ? f.b <= c : op2 == 4 ? f.b > c
                 : f.b >= c;
        if (neg) l1 = !l1; /* not binds tighter than and/or */
        int want = join ? (l1 && l2) : (l1 || l2), got = -1;
        CHECK(eval_text(text, &f, &got) == HLAB_OK && got == want, "'%s' with a=%g b=%g: got %d, want %d", text, f.a, f.b,
              got, want);
    }
    fields f = {3, -2, "1:5"};
    struct {
        const char *text;
        int want;
    } cases[] = {
        {"x.s == '1:5'", 1},
        {"x.s == \"1:5\"", 1},
        {"x.s != '1:5'", 0},
        {"x.s in ['1:3', '1:5']", 1},
        {"x.s in ['1:3']", 0},
        {"x.a in [1, 2, 3]", 1},
        {"x.s == 3", 0},                 /* string vs number: never equal */
        {"x.b == -2", 1},
        {"x.b < -1.5e0", 1},
        {"true and not false", 1},
        {"x.a > 1 or x.a > 100 and false", 1}, /* and binds tighter than or */
        {"(x.a > 1 or x.a > 100) and false", 0},
        {"x.s", 1},
        {"not (x.a == 3)", 0},
        {"x.s > '1:3'", 1},              /* strings order lexicographically */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int got = -1;
        CHECK(eval_text(cases[i].text, &f, &got) == HLAB_OK && got == cases[i].want, "'%s': got %d, want %d",
              cases[i].text, got, cases[i].want);
    }
    /* type error at evaluation */
    {
        hlab_expr *e;
        hlab_err err = {0};
        int r;
        CHECK(hlab_expr_parse("x.s < 3", NULL, &e, NULL, &err) == HLAB_OK, "parse x.s < 3");
        CHECK(hlab_expr_eval(e, lookup, &f, &r, &err) != HLAB_OK && strstr(err.msg, "column 5"),
              "ordering a string and a number must fail at column 5: %s", err.msg);
        hlab_expr_free(e);
    }
    struct {
        const char *text;
        int col;
        const char *msg;
    } bad[] = {
        {"", 1, "expected an expression"},
        {"x.a ==", 7, "expected a value"},
        {"x.a = 3", 5, "did you mean '=='"},
        {"(x.a > 1", 9, "expected ')'"},
        {"x.a > 1 x.b", 9, "expected 'and', 'or'"},
        {"x.s == 'abc", 8, "unterminated string"},
        {"x.c > 1", 1, "unknown field 'x.c'"},
        {"x.a in [1, 2", 13, "expected ',' or ']'"},
        {"x.a in 1", 8, "expected '['"},
        {"x.a > 3x", 7, "malformed number"},
        {"x.a > 1 and", 12, "expected a value"},
        {"x.a # 1", 5, "unexpected character '#'"},
    };
    static const char *const known[] = {"x.a", "x.b", "x.s", NULL};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        hlab_expr *e = (hlab_expr *)1;
        hlab_err err = {0};
        int col = -1;
        int rc = hlab_expr_parse(bad[i].text, known, &e, &col, &err);
        CHECK(rc == HLAB_EPARSE && e == NULL && col == bad[i].col && strstr(err.msg, bad[i].msg),
              "'%s': rc %d col %d (want %d) msg '%s' (want '%s')", bad[i].text, rc, col, bad[i].col, err.msg, bad[i].msg);
    }
}

/* ---- helpers for studies ---------------------------------------------------------- */
static char data_path[900];

static int load(const char *text, hlab_study *s, hlab_err *err) {
    char full[8192];
    snprintf(full, sizeof full, "name: t\ndata: { train: %s }\n%s", data_path, text);
    return hlab_study_load_string("t.yaml", full, s, err);
}

static int expand_text(const char *text, hlab_study *s, hlab_point_set *ps, hlab_err *err) {
    int rc = load(text, s, err);
    if (rc) return rc;
    rc = hlab_study_expand(s, ps, err);
    if (rc) hlab_study_free(s);
    return rc;
}

static const char *small_base = "base:\n  model: { d_model: 64, n_layers: 4, head_dim: 32, mamba: { headdim: 32, d_state: 16, chunk: 32 } }\n"
                                "  train: { steps: 10, batch: 2, seq_len: 32 }\n";

/* ---- 2. expansion ----------------------------------------------------------------- */
static void test_expansion(hlab_rng *rng) {
    hlab_err err = {0};
    for (int t = 0; t < 4; t++) {
        /* random axis sizes and a random threshold constraint, counted here by brute force */
        int nl = 1 + (int)hlab_rng_below(rng, 4), nd = 1 + (int)hlab_rng_below(rng, 3), ns = 1 + (int)hlab_rng_below(rng, 3);
        int thr_l = 2 + (int)hlab_rng_below(rng, 4), thr_d = 64 * (1 + (int)hlab_rng_below(rng, 3));
        char text[4096];
        int used = snprintf(text, sizeof text, "%sspace:\n  model.n_layers: [", small_base);
        for (int i = 0; i < nl; i++) used += snprintf(text + used, sizeof text - (size_t)used, "%s%d", i ? ", " : "", 2 + i);
        used += snprintf(text + used, sizeof text - (size_t)used, "]\n  model.d_model: [");
        for (int i = 0; i < nd; i++) used += snprintf(text + used, sizeof text - (size_t)used, "%s%d", i ? ", " : "", 64 * (i + 1));
        used += snprintf(text + used, sizeof text - (size_t)used,
                         "]\nconstraints: [\"model.n_layers >= %d or model.d_model == %d\"]\nseeds: [", thr_l, thr_d);
        for (int i = 0; i < ns; i++) used += snprintf(text + used, sizeof text - (size_t)used, "%s%d", i ? ", " : "", 7 * i + 1);
        snprintf(text + used, sizeof text - (size_t)used, "]\n");
        int want = 0;
        for (int i = 0; i < nl; i++)
            for (int j = 0; j < nd; j++) want += (2 + i >= thr_l || 64 * (j + 1) == thr_d);
        hlab_study s;
        hlab_point_set ps;
        int rc = expand_text(text, &s, &ps, &err);
        if (want == 0) {
            CHECK(rc != HLAB_OK && strstr(err.msg, "exclude all"), "no design passes: expected an error, got rc %d (%s)", rc,
                  err.msg);
            continue;
        }
        CHECK(rc == HLAB_OK, "expand: %s", err.msg);
        if (rc) continue;
        CHECK(ps.n_combinations == nl * nd && ps.n_designs == want && ps.n == want * ns && ps.n_filtered == nl * nd - want,
              "grid %dx%d seeds %d: combos %d designs %d (want %d) points %d", nl, nd, ns, ps.n_combinations, ps.n_designs,
              want, ps.n);
        /* file order: the first axis varies slowest; seeds innermost */
        for (int i = 1; i < ps.n; i++) {
            const hlab_point *a = &ps.items[i - 1].point, *b = &ps.items[i].point;
            int ka = a->model.n_layers * 100000 + a->model.d_model * 100 + (int)ps.items[i - 1].seed;
            int kb = b->model.n_layers * 100000 + b->model.d_model * 100 + (int)ps.items[i].seed;
            CHECK(ka < kb, "expansion order at %d", i);
            CHECK(b->model.n_layers >= thr_l || b->model.d_model == thr_d, "constraint not applied at point %d", i);
        }
        hlab_point_set_free(&ps);
        hlab_study_free(&s);
    }
    /* constraints over text fields, model.ffn (three fields read as one) and `in` */
    {
        char text[2048];
        snprintf(text, sizeof text,
                 "%sspace:\n  model.ffn: [dense, moe]\n  model.placement: [uniform, front, back]\n"
                 "constraints: [\"model.ffn == 'moe'\", \"model.placement in ['front', 'back']\"]\n",
                 small_base);
        hlab_study s;
        hlab_point_set ps;
        int rc = expand_text(text, &s, &ps, &err);
        CHECK(rc == HLAB_OK, "ffn/in constraints: %s", err.msg);
        if (!rc) {
            CHECK(ps.n_designs == 2 && ps.n_filtered == 4, "ffn/in constraints kept %d designs (want 2)", ps.n_designs);
            for (int i = 0; i < ps.n; i++)
                CHECK(ps.items[i].point.model.channel_mamba == HLAB_CHANNEL_MOE &&
                          ps.items[i].point.model.placement != HLAB_PLACE_UNIFORM,
                      "point %d violates the constraints", i);
            hlab_point_set_free(&ps);
            hlab_study_free(&s);
        }
    }
    /* ranges: log and linear, integer and float */
    {
        hlab_study s;
        char text[2048];
        snprintf(text, sizeof text,
                 "%sspace:\n  train.lr: { from: 1e-4, to: 1e-2, steps: 5, scale: log }\n"
                 "  train.warmup: { from: 0, to: 6, step: 3 }\n",
                 small_base);
        int rc = load(text, &s, &err);
        CHECK(rc == HLAB_OK, "ranges: %s", err.msg);
        if (!rc) {
            CHECK(s.axes[0].n == 5 && s.axes[1].n == 3, "range sizes %d %d", s.axes[0].n, s.axes[1].n);
            for (int i = 0; i < s.axes[0].n; i++) {
                double want = 1e-4 * pow(10.0, 0.5 * i), got = atof(s.axes[0].values[i]);
                CHECK(fabs(got - want) / want < 1e-5, "log range value %d: %g, want %g", i, got, want);
            }
            for (int i = 0; i < s.axes[1].n; i++) CHECK(atoi(s.axes[1].values[i]) == 3 * i, "linear step value %d", i);
            hlab_study_free(&s);
        }
    }
    /* random sampling: n distinct designs of the grid, the same for the same seed */
    {
        char text[2048];
        const char *space = "space:\n  model.n_layers: [2, 3, 4, 5]\n  train.lr: [1e-3, 2e-3, 3e-3]\n";
        hlab_study s1, s2, s3, g;
        hlab_point_set p1, p2, p3, pg;
        snprintf(text, sizeof text, "%s%sstrategy: { kind: random, n: 5, seed: 11 }\n", small_base, space);
        int ok = expand_text(text, &s1, &p1, &err) == HLAB_OK;
        ok = ok && expand_text(text, &s2, &p2, &err) == HLAB_OK;
        snprintf(text, sizeof text, "%s%sstrategy: { kind: random, n: 5, seed: 12 }\n", small_base, space);
        ok = ok && expand_text(text, &s3, &p3, &err) == HLAB_OK;
        snprintf(text, sizeof text, "%s%s", small_base, space);
        ok = ok && expand_text(text, &g, &pg, &err) == HLAB_OK;
        CHECK(ok, "random expansion: %s", err.msg);
        if (ok) {
            CHECK(p1.n == 5 && p3.n == 5 && pg.n == 12, "random sizes %d %d grid %d", p1.n, p3.n, pg.n);
            int same = 1, same_other = 1;
            for (int i = 0; i < p1.n; i++) {
                same &= !strcmp(p1.items[i].hash, p2.items[i].hash);
                same_other &= !strcmp(p1.items[i].hash, p3.items[i].hash);
                int in_grid = 0;
                for (int j = 0; j < pg.n; j++) in_grid |= !strcmp(p1.items[i].hash, pg.items[j].hash);
                CHECK(in_grid, "random point %d is not a grid point", i);
                for (int j = 0; j < i; j++) CHECK(strcmp(p1.items[i].hash, p1.items[j].hash), "random points repeat");
            }
            CHECK(same, "the same sampler seed gave different points");
            CHECK(!same_other, "sampler seeds 11 and 12 gave the same 5 of 12 points");
            hlab_point_set_free(&p1), hlab_point_set_free(&p2), hlab_point_set_free(&p3), hlab_point_set_free(&pg);
            hlab_study_free(&s1), hlab_study_free(&s2), hlab_study_free(&s3), hlab_study_free(&g);
        }
    }
}

/* ---- 3. budget ---------------------------------------------------------------------- */
static void test_budget(hlab_rng *rng) {
    static const char *const adjusts[] = {"d_model", "n_layers", "d_ff"};
    for (int t = 0; t < 9; t++) {
        int adj = t % 3;
        hlab_point p;
        hlab_point_defaults(&p);
        p.model.d_model = 128, p.model.n_layers = 6, p.model.head_dim = 32;
        p.model.mamba_headdim = 32, p.model.mamba_d_state = 16;
        p.train.seq_len = 64;
        /* a reachable target: the count of a random valid config nearby, jittered within 1% */
        hlab_point ref = p;
        if (adj == 0) ref.model.d_model = 64 * (2 + (int)hlab_rng_below(rng, 6));
        if (adj == 1) ref.model.n_layers = 2 + (int)hlab_rng_below(rng, 12);
        if (adj == 2) ref.model.d_ff = 64 * (2 + (int)hlab_rng_below(rng, 10));
        hlab_counts c;
        hlab_err err = {0};
        hlab_model_config_resolve(&ref.model, &err);
        hlab_count(&ref.model, ref.train.seq_len, &c, &err);
        hlab_budget b = {.match = t < 6 ? HLAB_MATCH_PARAMS : HLAB_MATCH_FLOPS_PER_TOKEN, .adjust = (hlab_adjust)adj,
                         .tolerance = 0.02};
        double ref_value = b.match == HLAB_MATCH_PARAMS ? (double)c.params : c.train_flops_per_token;
        b.target = ref_value * (1 + 0.01 * (2 * hlab_rng_uniform(rng) - 1));
        hlab_counts got;
        int rc = hlab_budget_fit(&b, &p, &got, &err);
        CHECK(rc == HLAB_OK, "budget %s: %s", adjusts[adj], err.msg);
        if (rc) continue;
        hlab_point q = p; /* independent check of the sized point */
        hlab_counts chk;
        CHECK(hlab_model_config_resolve(&q.model, &err) == HLAB_OK && hlab_count(&q.model, q.train.seq_len, &chk, &err) == HLAB_OK,
              "sized point does not resolve: %s", err.msg);
        double v = b.match == HLAB_MATCH_PARAMS ? (double)chk.params : chk.train_flops_per_token;
        CHECK(fabs(v - b.target) <= b.tolerance * b.target, "budget %s: %g is not within 2%% of %g", adjusts[adj], v, b.target);
        CHECK(chk.params == got.params, "returned counts differ from the sized point's");
        if (adj == 0) CHECK(p.model.d_model % 64 == 0, "d_model %d is not a multiple of 64", p.model.d_model);
        if (adj == 2) CHECK(p.model.d_ff % 64 == 0, "d_ff %d is not a multiple of 64", p.model.d_ff);
    }
    /* unreachable: between two consecutive d_model multiples, far from both */
    hlab_point p;
    hlab_point_defaults(&p);
    p.model.n_layers = 4, p.model.head_dim = 64, p.train.seq_len = 64;
    hlab_counts c1, c2;
    hlab_err err = {0};
    hlab_point a = p, b2 = p;
    a.model.d_model = 128, b2.model.d_model = 192;
    hlab_model_config_resolve(&a.model, &err), hlab_model_config_resolve(&b2.model, &err);
    hlab_count(&a.model, 64, &c1, &err), hlab_count(&b2.model, 64, &c2, &err);
    hlab_budget b = {.match = HLAB_MATCH_PARAMS, .adjust = HLAB_ADJUST_D_MODEL, .tolerance = 0.02,
                     .target = 0.5 * ((double)c1.params + (double)c2.params)};
    hlab_counts got;
    int rc = hlab_budget_fit(&b, &p, &got, &err);
    CHECK(rc != HLAB_OK && strstr(err.msg, "no d_model multiple of 64") && strstr(err.msg, "closest"),
          "an unreachable target must fail naming the closest value: %s", err.msg);
}

/* ---- 4. hashes ------------------------------------------------------------------------ */
static void test_hashes(void) {
    hlab_err err = {0};
    char text[2048];
    snprintf(text, sizeof text, "%sspace:\n  model.ratio: [\"0:1\", \"1:1\"]\nseeds: [0, 1]\n", small_base);
    hlab_study s1, s2;
    hlab_point_set p1, p2;
    int ok = expand_text(text, &s1, &p1, &err) == HLAB_OK;
    CHECK(ok, "hash study: %s", err.msg);
    if (!ok) return;
    /* another working directory: data paths resolve differently, hashes must not move */
    char cwd[1024];
    if (!getcwd(cwd, sizeof cwd)) cwd[0] = 0;
    if (chdir("/") == 0) {
        ok = expand_text(text, &s2, &p2, &err) == HLAB_OK;
        CHECK(ok, "hash study from /: %s", err.msg);
        if (ok) {
            for (int i = 0; i < p1.n && i < p2.n; i++)
                CHECK(!strcmp(p1.items[i].hash, p2.items[i].hash), "hash %d changed with the working directory", i);
            hlab_point_set_free(&p2), hlab_study_free(&s2);
        }
        if (cwd[0] && chdir(cwd)) fprintf(stderr, "cannot return to %s\n", cwd);
    }
    for (int i = 0; i < p1.n; i++) {
        CHECK(strlen(p1.items[i].hash) == 16, "hash length");
        for (int j = 0; j < i; j++) CHECK(strcmp(p1.items[i].hash, p1.items[j].hash), "points %d and %d share a hash", i, j);
    }
    /* the hash is FNV-1a of the config JSON (data paths as written) then the seed */
    {
        hlab_point q = p1.items[0].point;
        snprintf(q.data.train, sizeof q.data.train, "%s", data_path);
        hlab_buf b;
        hlab_buf_init(&b);
        hlab_point_to_json(&q, &b, &err);
        uint64_t h = hlab_fnv1a64(b.data, b.len, HLAB_FNV_OFFSET);
        int64_t seed = p1.items[0].seed;
        h = hlab_fnv1a64(&seed, sizeof seed, h);
        char want[17];
        snprintf(want, sizeof want, "%016llx", (unsigned long long)h);
        CHECK(!strcmp(want, p1.items[0].hash), "hash %s, recomputed %s", p1.items[0].hash, want);
        hlab_buf_free(&b);
    }
    /* editing the study: a new axis value and a new seed keep every old hash */
    snprintf(text, sizeof text, "%sspace:\n  model.ratio: [\"0:1\", \"1:3\", \"1:1\"]\nseeds: [0, 1, 2]\n", small_base);
    ok = expand_text(text, &s2, &p2, &err) == HLAB_OK;
    CHECK(ok, "edited study: %s", err.msg);
    if (ok) {
        CHECK(p2.n == 9, "edited study has %d points, want 9", p2.n);
        int kept = 0;
        for (int i = 0; i < p1.n; i++)
            for (int j = 0; j < p2.n; j++) kept += !strcmp(p1.items[i].hash, p2.items[j].hash);
        CHECK(kept == p1.n, "editing the study kept %d of %d hashes", kept, p1.n);
        hlab_point_set_free(&p2), hlab_study_free(&s2);
    }
    hlab_point_set_free(&p1), hlab_study_free(&s1);
}

int main(void) {
    const char *src = getenv("HLAB_SRC");
    snprintf(data_path, sizeof data_path, "%s/../shared/data/tinyshakespeare.txt", src ? src : ".");
    if (access(data_path, R_OK)) test_skip("shared data (tinyshakespeare.txt) is missing");
    hlab_rng rng;
    hlab_rng_seed(&rng, 20261123);
    test_expressions(&rng);
    test_expansion(&rng);
    test_budget(&rng);
    test_hashes();
    return test_summary();
}
