/* cli/cmd_report.c — `hlab report`, `hlab list` and `hlab show`: reading
 * commands over results.db. They never create a database (a missing file is a
 * usage error, exit 2) and open it read-only (HLAB_DB_READONLY: no journal
 * switch, no migration), so a read-only file or mount works. They hold no
 * logic beyond argument parsing and printing; the work is in reports/ and db/. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/hlab.h"
#include "db/db.h"
#include "reports/reports.h"

#define DEFAULT_DB "results.db"


/* "--name VALUE" or "--name=VALUE"; advances *i past the value. 1 when matched. */
static int option_value(int argc, char **argv, int *i, const char *name, const char **out, int *bad) {
    size_t n = strlen(name);
    if (strncmp(argv[*i], name, n) != 0) return 0;
    if (argv[*i][n] == '=') {
        *out = argv[*i] + n + 1;
        return 1;
    }
    if (argv[*i][n] != 0) return 0;
    if (*i + 1 >= argc) {
        cli_error("%s needs a value", name);
        *bad = 1;
        return 1;
    }
    *out = argv[++*i];
    return 1;
}

static int open_existing(const char *path, hlab_db **db) {
    hlab_err err = {0};
    if (hlab_db_open(path, HLAB_DB_READONLY, db, &err)) {
        cli_error("%s", err.msg);
        return cli_exit_code(err.code);
    }
    return HLAB_EXIT_OK;
}

/* ---- hlab report ------------------------------------------------------------------ */
static void report_usage(FILE *f) {
    fprintf(f,
            "usage: hlab report [--pareto] [--table] [--curves] [--db FILE] [--study NAME]\n"
            "                   [--x METRIC] [--y METRIC] [--objectives LIST] [--out DIR]\n\n"
            "Writes report files for the studies of a results database.\n\n"
            "  --pareto          STUDY_pareto.csv (every design: axes, objective mean/std over seeds,\n"
            "                    on_frontier) and STUDY_pareto.svg (scatter of --y against --x, front drawn)\n"
            "  --table           STUDY_ablation.csv and STUDY_ablation.md (per axis value: mean \xC2\xB1 std\n"
            "                    over seeds of each objective; per design); also printed\n"
            "  --curves          STUDY_curves.svg (training and validation loss against step)\n"
            "                    (none of the three: all of them)\n"
            "  --db FILE         results database (default %s); never created by this command\n"
            "  --study NAME      one study (default: every study in the database)\n"
            "  --x METRIC        scatter x axis (default train_flops)\n"
            "  --y METRIC        scatter y axis (default val_loss)\n"
            "  --objectives LIST the front's objectives, e.g. val_loss:min,tokens_per_s:max\n"
            "                    (default: the study's objectives; else --x and --y)\n"
            "  --out DIR         output folder, created when missing (default reports_out)\n\n"
            "METRIC: params params_non_embedding flops_per_token train_flops est_memory_bytes val_loss\n"
            "        val_bpb train_loss tokens_per_s peak_bytes infer_bytes_per_token wall_s steps_done\n"
            "        seed, or eval.NAME for an evaluation score.\n",
            DEFAULT_DB);
}

int cmd_report(int argc, char **argv) {
    const char *db_path = DEFAULT_DB, *study = NULL, *x = NULL, *y = NULL, *objectives = NULL, *out = NULL;
    int pareto = 0, table = 0, curves = 0, bad = 0;
    for (int i = 1; i < argc && !bad; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            report_usage(stdout);
            return HLAB_EXIT_OK;
        }
        if (!strcmp(a, "--pareto")) pareto = 1;
        else if (!strcmp(a, "--table")) table = 1;
        else if (!strcmp(a, "--curves")) curves = 1;
        else if (option_value(argc, argv, &i, "--db", &db_path, &bad) ||
                 option_value(argc, argv, &i, "--study", &study, &bad) ||
                 option_value(argc, argv, &i, "--x", &x, &bad) || option_value(argc, argv, &i, "--y", &y, &bad) ||
                 option_value(argc, argv, &i, "--objectives", &objectives, &bad) ||
                 option_value(argc, argv, &i, "--out", &out, &bad))
            continue;
        else {
            cli_error("hlab report: unknown option '%s' (try: hlab report --help)", a);
            return HLAB_EXIT_USAGE;
        }
    }
    if (bad) return HLAB_EXIT_USAGE;
    if (!pareto && !table && !curves) pareto = table = curves = 1;

    hlab_err err = {0};
    hlab_objective obj[HLAB_MAX_OBJECTIVES];
    int n_obj = 0;
    if (objectives && hlab_objectives_parse(objectives, obj, HLAB_MAX_OBJECTIVES, &n_obj, &err)) {
        cli_error("--objectives: %s", err.msg);
        return HLAB_EXIT_USAGE;
    }
    for (int i = 0; i < 2; i++) {
        const char *m = i ? y : x;
        if (m && !hlab_db_metric_known(m)) {
            cli_error("--%c %s: unknown metric (see hlab report --help)", i ? 'y' : 'x', m);
            return HLAB_EXIT_USAGE;
        }
    }
    hlab_db *db = NULL;
    int code = open_existing(db_path, &db);
    if (code) return code;

    hlab_db_study_list studies = {0};
    int rc = HLAB_OK;
    if (study) {
        int64_t id;
        rc = hlab_db_find_study(db, study, &id, &err);
    } else {
        rc = hlab_db_list_studies(db, &studies, &err);
        if (rc == HLAB_OK && studies.n == 0) rc = hlab_fail(&err, HLAB_EINVAL, "%s holds no study yet", db_path);
    }
    int n_studies = study ? 1 : studies.n;
    hlab_buf written, text;
    hlab_buf_init(&written);
    hlab_buf_init(&text);
    for (int s = 0; s < n_studies && rc == HLAB_OK; s++) {
        hlab_report_options o = {.study = study ? study : studies.items[s].name, .x = x, .y = y,
                                 .objectives = n_obj ? obj : NULL, .n_objectives = n_obj, .out_dir = out};
        if (pareto) rc = hlab_report_pareto(db, &o, &written, &err);
        if (rc == HLAB_OK && table) {
            rc = hlab_report_table(db, &o, &written, &err);
            if (rc == HLAB_OK) rc = hlab_report_table_text(db, &o, &text, &err);
        }
        if (rc == HLAB_OK && curves) rc = hlab_report_curves(db, &o, &written, &err);
    }
    if (text.len) fputs(text.data, stdout);
    if (written.len) {
        /* Each path on its own "wrote" line. */
        for (char *line = written.data; *line;) {
            char *nl = strchr(line, '\n');
            if (nl) *nl = 0;
            printf("wrote %s\n", line);
            if (!nl) break;
            line = nl + 1;
        }
    }
    hlab_buf_free(&written);
    hlab_buf_free(&text);
    hlab_db_study_list_free(&studies);
    hlab_db_close(db);
    if (rc) {
        cli_error("%s", err.msg);
        return cli_exit_code(rc);
    }
    return HLAB_EXIT_OK;
}

/* ---- hlab list ------------------------------------------------------------------- */
static void list_usage(FILE *f) {
    fprintf(f,
            "usage: hlab list [--db FILE] [--study NAME]\n\n"
            "Without --study: every study with its point counts by status.\n"
            "With --study: its points (id, hash, status, seed, parameters, validation loss, label).\n\n"
            "  --db FILE     results database (default %s); never created by this command\n"
            "  --study NAME  list the points of this study\n",
            DEFAULT_DB);
}

static int list_points(hlab_db *db, const char *study, hlab_err *err) {
    int64_t sid;
    if (hlab_db_find_study(db, study, &sid, err)) return err->code;
    hlab_db_point_list pts;
    if (hlab_db_list_points(db, sid, HLAB_DB_MASK_ALL, &pts, err)) return err->code;
    const char *metrics[] = {"val_loss", "tokens_per_s"};
    hlab_db_table t;
    if (hlab_db_query_metrics(db, sid, metrics, 2, &t, err)) {
        hlab_db_point_list_free(&pts);
        return err->code;
    }
    printf("%6s  %-12s  %-11s  %4s  %9s  %10s  %9s  %5s  %s\n", "id", "hash", "status", "seed", "params",
           "FLOPs/tok", "val_loss", "runs", "label");
    for (int i = 0; i < pts.n; i++) {
        const hlab_db_point *p = &pts.items[i];
        double val = NAN;
        for (int r = 0; r < t.n_rows; r++)
            if (t.point_id[r] == p->id) val = t.values[(size_t)r * 2];
        char params[32], flops[32], vl[32];
        cli_si(params, sizeof params, p->params >= 0 ? (double)p->params : NAN);
        cli_si(flops, sizeof flops, p->flops_per_token);
        if (isnan(val)) snprintf(vl, sizeof vl, "-");
        else snprintf(vl, sizeof vl, "%.4f", val);
        printf("%6lld  %-12.12s  %-11s  %4lld  %9s  %10s  %9s  %5d  %s\n", (long long)p->id, p->hash,
               hlab_db_status_name(p->status), (long long)p->seed, params, flops, vl, p->n_runs,
               p->label && *p->label ? p->label : "-");
    }
    printf("%d point(s)\n", pts.n);
    hlab_db_table_free(&t);
    hlab_db_point_list_free(&pts);
    return HLAB_OK;
}

int cmd_list(int argc, char **argv) {
    const char *db_path = DEFAULT_DB, *study = NULL;
    int bad = 0;
    for (int i = 1; i < argc && !bad; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            list_usage(stdout);
            return HLAB_EXIT_OK;
        }
        if (option_value(argc, argv, &i, "--db", &db_path, &bad) ||
            option_value(argc, argv, &i, "--study", &study, &bad))
            continue;
        cli_error("hlab list: unknown argument '%s' (try: hlab list --help)", argv[i]);
        return HLAB_EXIT_USAGE;
    }
    if (bad) return HLAB_EXIT_USAGE;
    hlab_db *db = NULL;
    int code = open_existing(db_path, &db);
    if (code) return code;
    hlab_err err = {0};
    int rc = HLAB_OK;
    if (study) {
        rc = list_points(db, study, &err);
    } else {
        hlab_db_study_list sl;
        rc = hlab_db_list_studies(db, &sl, &err);
        if (rc == HLAB_OK) {
            printf("%4s  %-24s  %6s  %7s  %7s  %5s  %8s  %6s  %11s  %s\n", "id", "study", "points", "pending",
                   "running", "done", "diverged", "failed", "interrupted", "created");
            for (int i = 0; i < sl.n; i++) {
                const hlab_db_study *s = &sl.items[i];
                printf("%4lld  %-24s  %6d  %7d  %7d  %5d  %8d  %6d  %11d  %s\n", (long long)s->id, s->name,
                       s->n_points, s->n_by_status[HLAB_DB_PENDING], s->n_by_status[HLAB_DB_RUNNING],
                       s->n_by_status[HLAB_DB_DONE], s->n_by_status[HLAB_DB_DIVERGED], s->n_by_status[HLAB_DB_FAILED],
                       s->n_by_status[HLAB_DB_INTERRUPTED], s->created_at);
            }
            if (sl.n == 0) printf("no studies in %s\n", db_path);
            hlab_db_study_list_free(&sl);
        }
    }
    hlab_db_close(db);
    if (rc) {
        cli_error("%s", err.msg);
        return cli_exit_code(rc);
    }
    return HLAB_EXIT_OK;
}

/* ---- hlab show ------------------------------------------------------------------- */
static void show_usage(FILE *f) {
    fprintf(f,
            "usage: hlab show POINT [--db FILE]\n\n"
            "Shows one design point: its identity, sizes, axes, full config, every run (status,\n"
            "device, times, steps, error, checkpoint) and every result.\n\n"
            "  POINT       a point id (as hlab list prints it) or a prefix (4+ characters) of its hash\n"
            "  --db FILE   results database (default %s); never created by this command\n",
            DEFAULT_DB);
}

/* Indents compact JSON two spaces per level; strings are copied verbatim. */
static void print_json_pretty(const char *s) {
    int depth = 0, in_str = 0;
    for (const char *p = s; *p; p++) {
        char c = *p;
        if (in_str) {
            putchar(c);
            if (c == '\\' && p[1]) putchar(*++p);
            else if (c == '"') in_str = 0;
            continue;
        }
        switch (c) {
        case '"': in_str = 1; putchar(c); break;
        case '{': case '[':
            putchar(c);
            if (p[1] == '}' || p[1] == ']') break;
            printf("\n%*s", 2 * ++depth + 2, "");
            break;
        case '}': case ']':
            if (p > s && (p[-1] == '{' || p[-1] == '[')) {
                putchar(c);
                break;
            }
            printf("\n%*s%c", 2 * --depth + 2, "", c);
            break;
        case ',': printf(",\n%*s", 2 * depth + 2, ""); break;
        case ':': printf(": "); break;
        case ' ': case '\n': case '\t': case '\r': break;
        default: putchar(c);
        }
    }
    putchar('\n');
}

static void print_num(const char *name, double v, const char *unit) {
    char t[32];
    cli_si(t, sizeof t, v);
    printf("  %-22s %s%s%s\n", name, t, isfinite(v) && *unit ? " " : "", isfinite(v) ? unit : "");
}

int cmd_show(int argc, char **argv) {
    const char *db_path = DEFAULT_DB, *key = NULL;
    int bad = 0;
    for (int i = 1; i < argc && !bad; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            show_usage(stdout);
            return HLAB_EXIT_OK;
        }
        if (option_value(argc, argv, &i, "--db", &db_path, &bad)) continue;
        if (argv[i][0] == '-' || key) {
            cli_error("hlab show: unexpected argument '%s' (try: hlab show --help)", argv[i]);
            return HLAB_EXIT_USAGE;
        }
        key = argv[i];
    }
    if (bad) return HLAB_EXIT_USAGE;
    if (!key) {
        cli_error("hlab show: which point? (expected an id or a hash prefix; see hlab list --study NAME)");
        return HLAB_EXIT_USAGE;
    }
    hlab_db *db = NULL;
    int code = open_existing(db_path, &db);
    if (code) return code;
    hlab_err err = {0};
    int64_t id;
    hlab_db_point p = {0};
    hlab_db_run_list runs = {0};
    hlab_db_study_list sl = {0};
    hlab_db_curve curve = {0};
    int rc = hlab_db_find_point(db, key, &id, &err);
    if (rc == HLAB_OK) rc = hlab_db_get_point(db, id, &p, &err);
    if (rc == HLAB_OK) rc = hlab_db_list_runs(db, id, &runs, &err);
    if (rc == HLAB_OK) rc = hlab_db_list_studies(db, &sl, &err);
    if (rc == HLAB_OK) rc = hlab_db_loss_curve(db, id, &curve, &err);
    if (rc == HLAB_OK) {
        const char *study = "?";
        for (int i = 0; i < sl.n; i++)
            if (sl.items[i].id == p.study_id) study = sl.items[i].name;
        printf("point %lld of study %s\n", (long long)p.id, study);
        printf("  %-22s %s\n", "hash", p.hash);
        printf("  %-22s %s\n", "label", p.label && *p.label ? p.label : "-");
        printf("  %-22s %s\n", "status", hlab_db_status_name(p.status));
        printf("  %-22s %lld\n", "seed", (long long)p.seed);
        print_num("params", p.params >= 0 ? (double)p.params : NAN, "");
        print_num("params_non_embedding", p.params_non_embedding >= 0 ? (double)p.params_non_embedding : NAN, "");
        print_num("flops_per_token", p.flops_per_token, "FLOPs");
        print_num("train_flops", p.train_flops, "FLOPs");
        print_num("est_memory_bytes", p.est_memory_bytes >= 0 ? (double)p.est_memory_bytes : NAN, "bytes");
        printf("  %-22s %s\n", "axes", p.axes_json);
        if (curve.n > 0) {
            double first = NAN, last = NAN, last_val = NAN;
            for (int i = 0; i < curve.n; i++) {
                if (isnan(first) && isfinite(curve.loss[i])) first = curve.loss[i];
                if (isfinite(curve.loss[i])) last = curve.loss[i];
                if (isfinite(curve.val_loss[i])) last_val = curve.val_loss[i];
            }
            printf("  %-22s %d logged steps up to %d; loss %.4f -> %.4f, last val_loss %.4f\n", "metrics", curve.n,
                   curve.step[curve.n - 1], first, last, last_val);
        }
        printf("\nruns (%d):\n", runs.n);
        for (int i = 0; i < runs.n; i++) {
            const hlab_db_run *r = &runs.items[i];
            printf("  run %lld: %s on %s, %d steps, started %s%s%s (host %s, pid %lld)\n", (long long)r->id,
                   hlab_db_status_name(r->status), r->device ? r->device : "?", r->steps_done, r->started_at,
                   r->finished_at[0] ? ", finished " : "", r->finished_at, r->host ? r->host : "?", (long long)r->pid);
            if (r->error) printf("    error: %s\n", r->error);
            if (r->checkpoint) printf("    checkpoint: %s\n", r->checkpoint);
            if (r->has_result) {
                printf("    result after %d steps:\n", r->result_steps_done);
                print_num("  val_loss", r->val_loss, "nats/token");
                print_num("  val_bpb", r->val_bpb, "bits/byte");
                print_num("  train_loss", r->train_loss, "nats/token");
                print_num("  tokens_per_s", r->tokens_per_s, "tokens/s");
                print_num("  train_flops", r->train_flops, "FLOPs");
                print_num("  peak_bytes", r->peak_bytes >= 0 ? (double)r->peak_bytes : NAN, "bytes");
                print_num("  infer_bytes_per_token", r->infer_bytes_per_token, "bytes/token");
                print_num("  wall_s", r->wall_s, "s");
                if (r->eval_json && strcmp(r->eval_json, "{}") != 0) printf("      eval %s\n", r->eval_json);
            }
        }
        printf("\nconfig:\n  ");
        print_json_pretty(p.config_json ? p.config_json : "{}");
    }
    hlab_db_curve_free(&curve);
    hlab_db_study_list_free(&sl);
    hlab_db_run_list_free(&runs);
    hlab_db_point_free(&p);
    hlab_db_close(db);
    if (rc) {
        cli_error("%s", err.msg);
        return cli_exit_code(rc);
    }
    return HLAB_EXIT_OK;
}
