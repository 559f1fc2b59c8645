/* tests/reports/test_reports.c — Pareto fronts on hand-made cases (2 and 3
 * objectives, min and max mixed, ties, duplicates, NaN) and against a brute
 * force on random points; objectives and axes parsing; aggregation over seeds;
 * the report files of a synthetic study, with the CSV parsed back (RFC 4180)
 * and its frontier flags checked against hlab_pareto.
 *
 * `test_reports --make-db PATH` only writes the synthetic results.db and exits;
 * tests/reports/test_report_cli.sh uses it to drive the hlab binary. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "db/db.h"
#include "reports/plot.h"
#include "reports/reports.h"
#include "test.h"

/* ---- Pareto on hand-made cases ------------------------------------------------- */
static void expect_front(const double *v, int n, int k, const hlab_sense *s, const int *want, const char *what) {
    int got[64];
    for (int i = 0; i < n; i++) got[i] = 42; /* poison */
    hlab_err err = {0};
    CHECK(hlab_pareto(v, n, k, s, got, &err) == HLAB_OK, "%s: %s", what, err.msg);
    for (int i = 0; i < n; i++) CHECK(got[i] == want[i], "%s: row %d is %d, expected %d", what, i, got[i], want[i]);
}

static void test_pareto_cases(void) {
    const int ON = HLAB_FRONT_ON, DOM = HLAB_FRONT_DOMINATED, MISS = HLAB_FRONT_MISSING;
    /* 2 objectives, both min; row 4 duplicates row 1 (both stay on the front). */
    const double v2[] = {1, 5, 2, 3, 3, 4, 4, 1, 2, 3, 5, 5};
    const hlab_sense minmin[] = {HLAB_MINIMIZE, HLAB_MINIMIZE};
    expect_front(v2, 6, 2, minmin, (const int[]){ON, ON, DOM, ON, ON, DOM}, "2-D min/min with a duplicate");
    /* Same points, second objective maximised: (5,5) now beats everything with x<=5... no: x is still min. */
    const hlab_sense minmax[] = {HLAB_MINIMIZE, HLAB_MAXIMIZE};
    /* (1,5) has the lowest x and the highest y (tied with (5,5)): it dominates all others. */
    expect_front(v2, 6, 2, minmax, (const int[]){ON, DOM, DOM, DOM, DOM, DOM}, "2-D min/max");
    const hlab_sense maxmax[] = {HLAB_MAXIMIZE, HLAB_MAXIMIZE};
    expect_front(v2, 6, 2, maxmax, (const int[]){DOM, DOM, DOM, DOM, DOM, ON}, "2-D max/max");
    /* Ties in one objective: the better other objective wins; exact ties both stay. */
    const double tie[] = {1, 2, 1, 3, 0, 9, 0, 9};
    expect_front(tie, 4, 2, minmin, (const int[]){ON, DOM, ON, ON}, "ties");
    /* NaN: excluded and flagged; (0, NaN) must not knock anyone off. */
    const double nan_rows[] = {0, NAN, 2, 2, 3, 1, NAN, NAN, 3, 3};
    expect_front(nan_rows, 5, 2, minmin, (const int[]){MISS, ON, ON, MISS, DOM}, "NaN rows");
    /* All missing: nobody on the front. */
    const double all_nan[] = {NAN, 1, 2, NAN};
    expect_front(all_nan, 2, 2, minmin, (const int[]){MISS, MISS}, "all missing");
    /* 3 objectives (min loss, min cost, max speed): a point best in one objective
     * is always on the front; (2,2,2) is beaten by (1,1,3). */
    const double v3[] = {1, 1, 3, 2, 2, 2, 0.5, 9, 1, 9, 0.1, 0.5, 1, 1, 3, 3, 3, 1};
    const hlab_sense s3[] = {HLAB_MINIMIZE, HLAB_MINIMIZE, HLAB_MAXIMIZE};
    expect_front(v3, 6, 3, s3, (const int[]){ON, DOM, ON, ON, ON, DOM}, "3 objectives with a duplicate");
    /* One objective: every copy of the minimum. */
    const double v1[] = {3, 1, 2, 1};
    const hlab_sense s1[] = {HLAB_MINIMIZE};
    expect_front(v1, 4, 1, s1, (const int[]){DOM, ON, DOM, ON}, "1 objective");
    hlab_err err = {0};
    int out[1];
    CHECK(hlab_pareto(v1, 1, 0, s1, out, &err) == HLAB_EINVAL, "k = 0 accepted");
}

/* Random points on a coarse grid (so ties and duplicates happen) against a
 * second, differently written definition: sort by objective 0, sweep. 2-D only. */
static void test_pareto_random(hlab_rng *r) {
    enum { N = 60 };
    for (int trial = 0; trial < 40; trial++) {
        double v[2 * N];
        hlab_sense s[2] = {(hlab_sense)hlab_rng_below(r, 2), (hlab_sense)hlab_rng_below(r, 2)};
        for (int i = 0; i < 2 * N; i++) v[i] = (double)hlab_rng_below(r, 12) + (hlab_rng_below(r, 10) == 0 ? NAN : 0);
        int got[N], want[N];
        hlab_err err = {0};
        hlab_pareto(v, N, 2, s, got, &err);
        /* Reference: i is on the front iff no j has (a_j <= a_i and b_j < b_i) or (a_j < a_i and b_j <= b_i),
         * in sign-flipped coordinates; written as the negation of "some row is at least as good and differs". */
        for (int i = 0; i < N; i++) {
            double ai = s[0] ? -v[2 * i] : v[2 * i], bi = s[1] ? -v[2 * i + 1] : v[2 * i + 1];
            if (isnan(ai) || isnan(bi)) {
                want[i] = HLAB_FRONT_MISSING;
                continue;
            }
            want[i] = HLAB_FRONT_ON;
            for (int j = 0; j < N; j++) {
                double aj = s[0] ? -v[2 * j] : v[2 * j], bj = s[1] ? -v[2 * j + 1] : v[2 * j + 1];
                if (isnan(aj) || isnan(bj)) continue;
                if (aj <= ai && bj <= bi && (aj != ai || bj != bi)) want[i] = HLAB_FRONT_DOMINATED;
            }
        }
        int same = 1, n_on = 0;
        for (int i = 0; i < N; i++) {
            same &= got[i] == want[i];
            n_on += got[i] == HLAB_FRONT_ON;
        }
        CHECK(same && n_on > 0, "random trial %d: front differs from the reference (%d on)", trial, n_on);
    }
}

static void test_objectives_and_axes(void) {
    hlab_objective o[HLAB_MAX_OBJECTIVES];
    int n = 0;
    hlab_err err = {0};
    CHECK(hlab_objectives_parse(" val_loss:min, tokens_per_s:max,train_flops , eval.hellaswag", o,
                                HLAB_MAX_OBJECTIVES, &n, &err) == HLAB_OK,
          "parse: %s", err.msg);
    CHECK(n == 4 && !strcmp(o[0].metric, "val_loss") && o[0].sense == HLAB_MINIMIZE && o[1].sense == HLAB_MAXIMIZE &&
              !strcmp(o[2].metric, "train_flops") && o[2].sense == HLAB_MINIMIZE &&
              o[3].sense == HLAB_MAXIMIZE,
          "parsed objectives wrong (n %d)", n);
    CHECK(hlab_objectives_parse("val_loss:smallest", o, HLAB_MAX_OBJECTIVES, &n, &err) == HLAB_EINVAL &&
              strstr(err.msg, "min or"),
          "bad sense: %s", err.msg);
    CHECK(hlab_objectives_parse("vall_loss", o, HLAB_MAX_OBJECTIVES, &n, &err) == HLAB_EINVAL &&
              strstr(err.msg, "unknown metric"),
          "unknown metric: %s", err.msg);
    CHECK(hlab_objectives_parse("val_loss,params", o, 1, &n, &err) == HLAB_EINVAL, "cap ignored");

    char **k, **v;
    int na;
    CHECK(hlab_axes_parse("{\"model.ratio\": \"1:5\", \"model.n_layers\": 12, \"x\": \"a\\\"b\\u00e9\", \"t\": true}",
                          &k, &v, &na, &err) == HLAB_OK,
          "axes: %s", err.msg);
    CHECK(na == 4 && !strcmp(k[0], "model.ratio") && !strcmp(v[0], "1:5") && !strcmp(v[1], "12") &&
              !strcmp(v[2], "a\"b\xC3\xA9") && !strcmp(v[3], "true"),
          "axes values wrong");
    hlab_axes_free(k, v, na);
    CHECK(hlab_axes_parse("{}", &k, &v, &na, &err) == HLAB_OK && na == 0, "empty axes");
    hlab_axes_free(k, v, na);
    CHECK(hlab_axes_parse("{\"a\": [1, 2]}", &k, &v, &na, &err) == HLAB_EPARSE && na == 0 && !k,
          "nested value accepted");
    CHECK(hlab_axes_parse("{\"a\": 1", &k, &v, &na, &err) == HLAB_EPARSE, "unterminated object accepted");
}

static void test_aggregate(hlab_rng *r) {
    enum { ROWS = 9, M = 2 };
    const char *labels[ROWS] = {"a", "b", "a", "c", "b", "a", "", "c", "b"};
    hlab_db_table t = {0};
    t.n_rows = ROWS;
    t.n_metrics = M;
    int64_t ids[ROWS], seeds[ROWS];
    char *lab[ROWS], *axes[ROWS];
    hlab_db_status st[ROWS];
    double val[ROWS * M];
    for (int i = 0; i < ROWS; i++) {
        ids[i] = 10 + i;
        seeds[i] = i % 3;
        lab[i] = (char *)labels[i];
        axes[i] = (char *)"{}";
        st[i] = HLAB_DB_DONE;
        val[i * M] = 3 + hlab_rng_uniform(r);
        val[i * M + 1] = 1e9 * (1 + hlab_rng_uniform(r));
    }
    val[4 * M] = NAN; /* b seed 1 has no val_loss */
    st[4] = HLAB_DB_FAILED;
    t.point_id = ids;
    t.seed = seeds;
    t.label = lab;
    t.axes_json = axes;
    t.status = st;
    t.values = val;
    hlab_design_table d;
    hlab_err err = {0};
    CHECK(hlab_designs_aggregate(&t, &d, &err) == HLAB_OK, "aggregate: %s", err.msg);
    CHECK(d.n == 4, "designs %d, expected 4 (a, b, c, and the unlabelled point)", d.n);
    if (d.n == 4) {
        double a0[3] = {val[0], val[2 * M], val[5 * M]};
        double mean = (a0[0] + a0[1] + a0[2]) / 3, ss = 0;
        for (int i = 0; i < 3; i++) ss += (a0[i] - mean) * (a0[i] - mean);
        CHECK(!strcmp(d.items[0].label, "a") && d.items[0].n_seeds == 3 && d.items[0].n_done == 3,
              "design a counts");
        CHECK(fabs(d.items[0].mean[0] - mean) < 1e-12 && fabs(d.items[0].std[0] - sqrt(ss / 2)) < 1e-12,
              "design a mean/std %g %g vs %g %g", d.items[0].mean[0], d.items[0].std[0], mean, sqrt(ss / 2));
        double b0 = (val[1 * M] + val[8 * M]) / 2;
        CHECK(d.items[1].n_values[0] == 2 && fabs(d.items[1].mean[0] - b0) < 1e-12 && d.items[1].n_values[1] == 3 &&
                  d.items[1].n_done == 2,
              "design b: NaN seed must be left out of the mean only");
        CHECK(!strcmp(d.items[3].label, "point 16") && isnan(d.items[3].std[0]) && d.items[3].mean[0] == val[6 * M], "unlabelled point design '%s'",
              d.items[3].label);
        int cols[2] = {0, 1};
        hlab_sense s[2] = {HLAB_MINIMIZE, HLAB_MINIMIZE};
        CHECK(hlab_designs_pareto(&d, cols, s, 2, &err) == HLAB_OK, "designs_pareto: %s", err.msg);
        int any = 0;
        for (int i = 0; i < d.n; i++) any += d.items[i].on_front == HLAB_FRONT_ON;
        CHECK(any >= 1, "no design on the front");
        cols[1] = 7;
        CHECK(hlab_designs_pareto(&d, cols, s, 2, &err) == HLAB_EINVAL, "bad column accepted");
    }
    hlab_design_table_free(&d);
}

/* Scales: log exactly when positive data span more than a decade; ticks are
 * 1/2/5 x 10^k steps (or powers of ten) that cover the data; labels escape. */
static void test_plot_scales(hlab_rng *r) {
    for (int trial = 0; trial < 30; trial++) {
        double lo = pow(10.0, 6 * hlab_rng_uniform(r) - 3), span = pow(10.0, 3 * hlab_rng_uniform(r)) * 1.0001;
        double v[8];
        for (int i = 0; i < 8; i++) v[i] = lo * (1 + (span - 1) * hlab_rng_uniform(r));
        v[0] = lo;
        v[7] = lo * span;
        plot_scale s;
        plot_scale_fit(&s, v, 8, 1, 1);
        CHECK(s.log == (span > 10.0), "trial %d: span %.3g gave log %d", trial, span, s.log);
        CHECK(s.lo <= lo && s.hi >= lo * span, "trial %d: scale [%g, %g] does not cover [%g, %g]", trial, s.lo, s.hi,
              lo, lo * span);
        double t[64];
        int n = plot_ticks(&s, t, 64);
        CHECK(n >= 2 && n <= 12, "trial %d: %d ticks", trial, n);
        int nice = 1;
        for (int i = 1; i < n; i++) {
            double step = s.log ? log10(t[i] / t[i - 1]) : (t[i] - t[i - 1]) / pow(10.0, floor(log10(t[i] - t[i - 1]) + 1e-9));
            nice &= s.log ? fabs(step - round(step)) < 1e-9 : (fabs(step - 1) < 1e-6 || fabs(step - 2) < 1e-6 || fabs(step - 5) < 1e-6);
        }
        CHECK(nice, "trial %d: ticks are not nice steps", trial);
        s.px0 = 100;
        s.px1 = 500;
        CHECK(fabs(plot_map(&s, s.lo) - 100) < 1e-9 && fabs(plot_map(&s, s.hi) - 500) < 1e-9, "map ends");
    }
    double neg[3] = {-5, 2, 1000};
    plot_scale s;
    plot_scale_fit(&s, neg, 3, 1, 1);
    CHECK(!s.log, "log scale chosen for data with a negative value");
    char buf[32];
    plot_fmt_num(buf, sizeof buf, 2.5e15);
    CHECK(!strcmp(buf, "2.5P"), "2.5e15 formatted as '%s'", buf);
    plot_fmt_num(buf, sizeof buf, NAN);
    CHECK(!strcmp(buf, "n/a"), "NaN formatted as '%s'", buf);
}

/* ---- the synthetic study ------------------------------------------------------- */
static int make_db(const char *path, hlab_rng *r, hlab_err *err) {
    hlab_db *db = NULL;
    if (hlab_db_open(path, HLAB_DB_CREATE, &db, err)) return err->code;
    hlab_db_study_in s = {.name = "synthetic sweep", .description = "made by test_reports", .file = "synthetic.yaml",
                          .objectives = "val_loss:min,train_flops:min,tokens_per_s:max"};
    int64_t sid;
    const char *ratios[] = {"0:1", "1:11", "1:5", "1:1", "1:0"};
    const char *placements[] = {"uniform", "front", "back, \"odd\" <&>"};
    hlab_db_point_in pts[64];
    char hash[64][32], label[64][128], axes[64][160];
    int n = 0;
    for (int a = 0; a < 5; a++)
        for (int p = 0; p < 3; p++) {
            if ((a == 0 || a == 4) && p > 0) continue; /* placement only matters for hybrids */
            for (int seed = 0; seed < 2; seed++) {
                snprintf(hash[n], sizeof hash[n], "%016llx", (unsigned long long)hlab_rng_u64(r));
                snprintf(label[n], sizeof label[n], "ratio=%s placement=%s", ratios[a], placements[p]);
                hlab_buf ax;
                hlab_buf_init(&ax);
                hlab_buf_puts(&ax, "{\"model.ratio\": ");
                hlab_buf_json_string(&ax, ratios[a]);
                hlab_buf_puts(&ax, ", \"model.placement\": ");
                hlab_buf_json_string(&ax, placements[p]);
                hlab_buf_puts(&ax, "}");
                snprintf(axes[n], sizeof axes[n], "%s", ax.data);
                hlab_buf_free(&ax);
                double params = 25e6 * (0.98 + 0.04 * hlab_rng_uniform(r));
                pts[n] = (hlab_db_point_in){.hash = hash[n], .label = label[n], .axes_json = axes[n],
                                            .config_json = "{\"model\":{\"layout\":\"MMMMMA\",\"d_model\":512},"
                                                           "\"train\":{\"steps\":50}}",
                                            .seed = seed, .params = (int64_t)params,
                                            .params_non_embedding = (int64_t)(params * 0.9),
                                            .flops_per_token = 6 * params * (1 + 0.5 * a),
                                            .train_flops = 6 * params * (1 + 0.5 * a) * 1e5 * (1 + 30 * a),
                                            .est_memory_bytes = (int64_t)(1e9 * (1 + a))};
                n++;
            }
        }
    int64_t ids[64];
    int rc = hlab_db_upsert_study(db, &s, &sid, err) || hlab_db_add_points(db, sid, pts, n, ids, NULL, NULL, err);
    for (int i = 0; i < n && !rc; i++) {
        int64_t run;
        if ((rc = hlab_db_start_run(db, ids[i], "cpu", NULL, &run, err))) break;
        if (i == 3) { /* a point that failed at build time: no metrics, no result */
            rc = hlab_db_finish_run(db, run, HLAB_DB_FAILED, 0, "out of memory building the model", err);
            continue;
        }
        double base = 3.2 - 0.15 * (i / 2 % 5) + 0.05 * hlab_rng_uniform(r);
        hlab_db_metric m[50];
        for (int k = 0; k < 50; k++) {
            double step = k + 1;
            m[k] = (hlab_db_metric){.step = k + 1, .loss = base + 2.4 * exp(-step / 12.0) + 0.05 * hlab_rng_normal(r),
                                    .lr = 3e-3, .grad_norm = 1, .tokens_per_s = 1e4, .val_loss = NAN,
                                    .peak_bytes = 1 << 28, .elapsed_s = 0.1 * step};
            if ((k + 1) % 10 == 0) m[k].val_loss = base + 0.05 + 2.4 * exp(-step / 12.0);
        }
        if (i == 7) { /* diverged half way */
            if ((rc = hlab_db_append_metrics(db, run, m, 25, err))) break;
            rc = hlab_db_finish_run(db, run, HLAB_DB_DIVERGED, 25, "loss became nan at step 26", err);
            continue;
        }
        if ((rc = hlab_db_append_metrics(db, run, m, 50, err))) break;
        hlab_db_result_in res = {.steps_done = 50, .val_loss = m[49].val_loss, .val_bpb = m[49].val_loss / log(2),
                                 .train_loss = m[49].loss, .tokens_per_s = 1e4 * (1 + hlab_rng_uniform(r)),
                                 .train_flops = pts[i].train_flops, .wall_s = 5, .peak_bytes = 1 << 28,
                                 .infer_bytes_per_token = 1024.0 * (1 + i % 5), .eval_json = "{\"copy\": 0.5}"};
        rc = hlab_db_record_result(db, run, &res, err);
    }
    hlab_db_close(db);
    return rc ? (err->code ? err->code : rc) : HLAB_OK;
}

/* A small RFC 4180 reader: fields, quotes, doubled quotes, CRLF. Returns rows. */
typedef struct { char *cell[64]; int n; } csv_row;
static int csv_read(const char *text, csv_row *rows, int cap, int *ok) {
    int nr = 0;
    const char *p = text;
    *ok = 1;
    while (*p && nr < cap) {
        csv_row *row = &rows[nr++];
        row->n = 0;
        for (;;) {
            char buf[512];
            size_t k = 0;
            if (*p == '"') {
                p++;
                for (;;) {
                    if (!*p) { *ok = 0; return nr; }
                    if (*p == '"' && p[1] == '"') { buf[k++] = '"'; p += 2; continue; }
                    if (*p == '"') { p++; break; }
                    if (k < sizeof buf - 1) buf[k++] = *p;
                    p++;
                }
            } else {
                while (*p && *p != ',' && *p != '\r' && *p != '\n') {
                    if (*p == '"') *ok = 0; /* a bare quote inside an unquoted field */
                    if (k < sizeof buf - 1) buf[k++] = *p;
                    p++;
                }
            }
            buf[k] = 0;
            if (row->n < 64) {
                row->cell[row->n] = malloc(k + 1);
                memcpy(row->cell[row->n++], buf, k + 1);
            }
            if (*p == ',') { p++; continue; }
            if (*p == '\r' && p[1] == '\n') p += 2;
            else if (*p == '\n') p++;
            else if (*p) *ok = 0;
            break;
        }
    }
    return nr;
}
static void csv_free(csv_row *rows, int n) {
    for (int i = 0; i < n; i++)
        for (int j = 0; j < rows[i].n; j++) free(rows[i].cell[j]);
}
static int col_of(const csv_row *h, const char *name) {
    for (int j = 0; j < h->n; j++)
        if (!strcmp(h->cell[j], name)) return j;
    return -1;
}

static void test_report_files(hlab_rng *r) {
    char dir[] = "/tmp/hlab_test_reports_XXXXXX";
    if (!mkdtemp(dir)) {
        CHECK(0, "mkdtemp");
        return;
    }
    char db_path[256], out[256];
    snprintf(db_path, sizeof db_path, "%s/results.db", dir);
    snprintf(out, sizeof out, "%s/out/nested", dir);
    hlab_err err = {0};
    CHECK(make_db(db_path, r, &err) == HLAB_OK, "synthetic db: %s", err.msg);
    hlab_db *db = NULL;
    if (hlab_db_open(db_path, 0, &db, &err)) {
        CHECK(0, "open: %s", err.msg);
        return;
    }
    hlab_buf written;
    hlab_buf_init(&written);
    hlab_report_options o = {.study = "synthetic sweep", .out_dir = out};
    CHECK(hlab_report_pareto(db, &o, &written, &err) == HLAB_OK, "pareto: %s", err.msg);
    CHECK(hlab_report_table(db, &o, &written, &err) == HLAB_OK, "table: %s", err.msg);
    CHECK(hlab_report_curves(db, &o, &written, &err) == HLAB_OK, "curves: %s", err.msg);
    const char *files[] = {"pareto.csv", "pareto.svg", "ablation.csv", "ablation.md", "curves.svg"};
    for (int i = 0; i < 5; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/synthetic_sweep_%s", out, files[i]);
        struct stat sb;
        CHECK(stat(path, &sb) == 0 && sb.st_size > 100, "%s missing or tiny", path);
        CHECK(strstr(written.data ? written.data : "", path) != NULL, "%s not reported as written", path);
    }
    hlab_report_options bad = o;
    bad.study = "no such study";
    CHECK(hlab_report_pareto(db, &bad, NULL, &err) == HLAB_EINVAL && strstr(err.msg, "synthetic sweep"),
          "missing study: %s", err.msg);
    hlab_objective twice[2] = {{"val_loss", HLAB_MINIMIZE}, {"val_loss", HLAB_MAXIMIZE}};
    bad = o;
    bad.objectives = twice;
    bad.n_objectives = 2;
    CHECK(hlab_report_pareto(db, &bad, NULL, &err) == HLAB_EINVAL && strstr(err.msg, "twice"),
          "an objective listed twice: %s", err.msg);
    bad = o;
    bad.x = "flops";
    CHECK(hlab_report_pareto(db, &bad, NULL, &err) == HLAB_EINVAL, "unknown --x accepted");

    /* The CSV: parse it back, one row per design, frontier as hlab_pareto says. */
    char path[512], *text = NULL;
    size_t len;
    snprintf(path, sizeof path, "%s/synthetic_sweep_pareto.csv", out);
    CHECK(hlab_read_file(path, &text, &len, &err) == HLAB_OK, "read csv: %s", err.msg);
    csv_row rows[64];
    int ok = 0, nr = text ? csv_read(text, rows, 64, &ok) : 0;
    CHECK(ok && nr == 1 + 11, "CSV: %d rows (expected header + 11 designs), well-formed %d", nr, ok);
    if (nr == 12) {
        int same_width = 1;
        for (int i = 1; i < nr; i++) same_width &= rows[i].n == rows[0].n;
        CHECK(same_width, "CSV rows of different widths");
        int c_front = col_of(&rows[0], "on_frontier"), c_loss = col_of(&rows[0], "val_loss_mean"),
            c_flops = col_of(&rows[0], "train_flops_mean"), c_tps = col_of(&rows[0], "tokens_per_s_mean"),
            c_place = col_of(&rows[0], "model.placement"), c_missing = col_of(&rows[0], "missing");
        CHECK(c_front >= 0 && c_loss >= 0 && c_flops >= 0 && c_tps >= 0 && c_place >= 0 && c_missing >= 0,
              "CSV header lacks columns");
        if (c_front >= 0 && c_loss >= 0 && c_flops >= 0 && c_tps >= 0 && c_place >= 0) {
            double v[3 * 11];
            hlab_sense s[3] = {HLAB_MINIMIZE, HLAB_MINIMIZE, HLAB_MAXIMIZE};
            int front[11], odd = 0, n_on = 0, n_missing = 0;
            for (int i = 0; i < 11; i++) {
                const char *cells[3] = {rows[i + 1].cell[c_loss], rows[i + 1].cell[c_flops], rows[i + 1].cell[c_tps]};
                for (int j = 0; j < 3; j++) v[3 * i + j] = *cells[j] ? strtod(cells[j], NULL) : NAN;
                odd += strstr(rows[i + 1].cell[c_place], "\"odd\" <&>") != NULL;
            }
            hlab_pareto(v, 11, 3, s, front, &err);
            int agree = 1;
            for (int i = 0; i < 11; i++) {
                const char *f = rows[i + 1].cell[c_front];
                int want = front[i] == HLAB_FRONT_ON ? '1' : front[i] == HLAB_FRONT_DOMINATED ? '0' : 0;
                agree &= want ? f[0] == want : f[0] == 0;
                n_on += front[i] == HLAB_FRONT_ON;
                n_missing += front[i] == HLAB_FRONT_MISSING;
            }
            CHECK(agree, "on_frontier column disagrees with hlab_pareto of the CSV's own means");
            CHECK(n_on >= 1 && n_missing == 0, "front of %d, %d missing (one seed of each design finished)", n_on,
                  n_missing);
            CHECK(odd == 3, "the quoted placement value came back %d times, expected 3 designs", odd);
        }
    }
    csv_free(rows, nr);
    free(text);
    /* The Markdown table names each axis and shows mean ± std. */
    snprintf(path, sizeof path, "%s/synthetic_sweep_ablation.md", out);
    text = NULL;
    CHECK(hlab_read_file(path, &text, &len, &err) == HLAB_OK, "read md: %s", err.msg);
    CHECK(text && strstr(text, "## model.ratio") && strstr(text, "## model.placement") && strstr(text, "\xC2\xB1") &&
              strstr(text, "back, \"odd\" <&>"),
          "ablation.md lacks sections");
    free(text);
    hlab_buf_free(&written);
    hlab_db_close(db);
    if (!getenv("HLAB_KEEP_TEST_FILES")) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    } else {
        printf("files kept in %s\n", dir);
    }
}

int main(int argc, char **argv) {
    hlab_rng r;
    hlab_rng_seed(&r, 7031);
    if (argc == 3 && !strcmp(argv[1], "--make-db")) {
        hlab_err err = {0};
        if (make_db(argv[2], &r, &err)) {
            fprintf(stderr, "make-db: %s\n", err.msg);
            return 1;
        }
        return 0;
    }
    hlab_log_set_level(HLAB_LOG_WARN);
    test_pareto_cases();
    test_pareto_random(&r);
    test_objectives_and_axes();
    test_aggregate(&r);
    test_plot_scales(&r);
    test_report_files(&r);
    return test_summary();
}
