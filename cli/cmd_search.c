/* cli/cmd_search.c — `hlab search STUDY.yaml`: validates and expands a study,
 * prints its points (--dry-run) or trains them into results.db with progress.
 * All logic lives in search/ (hlab_study_load, hlab_study_expand,
 * hlab_search_run); this file parses argv and prints.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "db/db.h"
#include "search/search.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: hlab search STUDY.yaml [options]\n\n"
            "Expands the design space of a study, sizes every point to its budget, records\n"
            "the points in results.db and trains the pending ones (one at a time, or N\n"
            "with --workers N), streaming metrics into the database as they happen.\n"
            "Running the same command again resumes: finished points are never retrained,\n"
            "an interrupted point continues from its checkpoint, and points added by\n"
            "editing the study are trained next. docs/STUDY.md describes the file.\n\n"
            "options:\n"
            "  --db FILE        results database (default results.db); checkpoints go to\n"
            "                   runs/STUDY/HASH.safetensors next to it\n"
            "  --dry-run        print the table of points (axes, params, FLOPs/token,\n"
            "                   estimated memory) and train nothing\n"
            "  --device SPEC    cpu | cuda | cuda:N | auto (default: auto)\n"
            "  --restart        forget the study's runs and checkpoints, start over\n"
            "  --retry-failed   train the points recorded 'failed' (out of memory, truncated\n"
            "                   checkpoint, ...) again from step 0: their checkpoint is\n"
            "                   removed, their old runs stay in the database; other\n"
            "                   finished points are kept\n"
            "  --retry-diverged the same for the points recorded 'diverged'\n"
            "  --workers N      train N points at a time, each on its own device: with\n"
            "                   cuda (or auto on a GPU machine) worker i uses cuda:i;\n"
            "                   on the CPU they share the cores (default 1)\n"
            "  --quiet          print only point starts and ends\n"
            "  --help           this text\n\n"
            "exit codes: 0 every point done, 1 some point diverged or failed, 2 bad study or\n"
            "usage, 3 environment (device, database), 130 interrupted (run again to resume)\n");
}



static void print_table(const hlab_study *s, const hlab_point_set *ps) {
    static const char *const strategies[] = {"grid", "random", "halving"};
    printf("study %s (%s): %d combinations, %d excluded by constraints, %d designs x %d seeds = %d points\n", s->name,
           strategies[s->strategy.kind], ps->n_combinations, ps->n_filtered, ps->n_designs, s->n_seeds, ps->n);
    if (s->strategy.kind == HLAB_STRATEGY_HALVING)
        printf("successive halving: eta %d, rungs from %d to %d steps\n", s->strategy.eta, s->strategy.min_steps,
               s->strategy.max_steps);
    printf("%4s  %-16s %4s  %5s %5s %6s  %10s %11s %9s  %s\n", "#", "hash", "seed", "d", "L", "d_ff", "params",
           "FLOPs/token", "memory", "design");
    for (int i = 0; i < ps->n; i++) {
        const hlab_design_point *d = &ps->items[i];
        char f[32], m[32];
        cli_si(f, sizeof f, d->counts.train_flops_per_token);
        cli_si(m, sizeof m, (double)d->est_memory_bytes);
        printf("%4d  %-16s %4lld  %5d %5d %6d  %10lld %11s %8sB  %s\n", d->index, d->hash, (long long)d->seed,
               d->point.model.d_model, d->point.model.n_layers, d->point.model.d_ff, (long long)d->counts.params, f, m,
               d->label);
    }
}

typedef struct {
    int quiet;
} progress;

static int on_event(void *user, const hlab_search_event *ev) {
    progress *pr = user;
    char eta[32], a[32];
    cli_duration(eta, sizeof eta, ev->study_eta_s);
    const hlab_design_point *d = ev->point;
    switch (ev->kind) {
    case HLAB_SEARCH_RUNG:
        printf("rung %d: %d points to %d steps\n", ev->rung, ev->rung_points, ev->rung_steps);
        break;
    case HLAB_SEARCH_POINT_START:
        cli_si(a, sizeof a, (double)d->counts.params);
        printf("point %d (%s) seed %lld, %s params, %s: training [%d/%d done, study ETA %s]\n", d->index, d->label,
               (long long)d->seed, a, d->hash, ev->points_done, ev->points_total, eta);
        break;
    case HLAB_SEARCH_STEP:
        if (!pr->quiet) {
            const hlab_train_event *t = ev->train;
            cli_si(a, sizeof a, t->tokens_per_s);
            printf("  step %5d/%d  loss %.4f", t->step, t->steps, t->loss);
            if (!isnan(t->val_loss)) printf("  val %.4f", t->val_loss);
            printf("  %s tok/s  point %d (seed %lld)  %d/%d done  study ETA %s\n", a, d->index, (long long)d->seed,
                   ev->points_done, ev->points_total, eta);
        }
        break;
    case HLAB_SEARCH_POINT_END:
        printf("[%d/%d] point %d (%s) seed %lld: %s%s%s\n", ev->points_done, ev->points_total, d->index, d->label,
               (long long)d->seed, hlab_db_status_name((hlab_db_status)ev->status), ev->message[0] ? ": " : "",
               ev->message);
        break;
    }
    fflush(stdout);
    return cli_stop_requested();
}

static int poll_stop(void *user) {
    (void)user;
    return cli_stop_requested();
}

int cmd_search(int argc, char **argv) {
    const char *study_path = NULL, *db_path = "results.db", *device = "auto";
    int dry_run = 0, restart = 0, retry_failed = 0, retry_diverged = 0, workers = 1, quiet = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return HLAB_EXIT_OK;
        }
        if (!strcmp(a, "--dry-run")) dry_run = 1;
        else if (!strcmp(a, "--restart")) restart = 1;
        else if (!strcmp(a, "--retry-failed")) retry_failed = 1;
        else if (!strcmp(a, "--retry-diverged")) retry_diverged = 1;
        else if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) quiet = 1;
        else if (!strcmp(a, "--db") || !strcmp(a, "--device") || !strcmp(a, "--workers")) {
            if (i + 1 >= argc) {
                cli_error("hlab search: %s needs a value", a);
                return HLAB_EXIT_USAGE;
            }
            const char *v = argv[++i];
            if (!strcmp(a, "--db")) db_path = v;
            else if (!strcmp(a, "--device")) device = v;
            else {
                char *end;
                workers = (int)strtol(v, &end, 10);
                if (*end || workers < 1) {
                    cli_error("hlab search: --workers expects a positive integer, got '%s'", v);
                    return HLAB_EXIT_USAGE;
                }
            }
        } else if (!strncmp(a, "--db=", 5)) db_path = a + 5;
        else if (!strncmp(a, "--device=", 9)) device = a + 9;
        else if (!strncmp(a, "-", 1)) {
            cli_error("hlab search: unknown option '%s' (try: hlab search --help)", a);
            return HLAB_EXIT_USAGE;
        } else if (study_path) {
            cli_error("hlab search: more than one study ('%s' and '%s')", study_path, a);
            return HLAB_EXIT_USAGE;
        } else study_path = a;
    }
    if (!study_path) {
        cli_error("hlab search: expected a STUDY.yaml (try: hlab search --help)");
        return HLAB_EXIT_USAGE;
    }
    hlab_err err = {0};
    hlab_study study;
    if (hlab_study_load(study_path, &study, &err)) {
        cli_error("%s", err.msg);
        return cli_exit_code(err.code);
    }
    hlab_point_set ps;
    if (hlab_study_expand(&study, &ps, &err)) {
        cli_error("%s", err.msg);
        hlab_study_free(&study);
        return cli_exit_code(err.code);
    }
    int code = HLAB_EXIT_OK;
    if (dry_run) {
        print_table(&study, &ps);
    } else {
        progress pr = {quiet};
        hlab_search_options o = {.db_path = db_path, .device = device, .restart = restart,
                                 .retry_failed = retry_failed, .retry_diverged = retry_diverged,
                                 .workers = workers, .cb = on_event, .should_stop = poll_stop, .user = &pr};
        hlab_search_summary sum;
        cli_install_stop_handler();
        if (quiet) hlab_log_set_level(HLAB_LOG_WARN);
        printf("study %s: %d points (%d designs x %d seeds) into %s\n", study.name, ps.n, ps.n_designs, study.n_seeds,
               db_path);
        fflush(stdout);
        int rc = hlab_search_run(&study, &ps, &o, &sum, &err);
        if (rc == HLAB_EINTERRUPTED) {
            printf("stopped: run the same command again to resume\n");
            code = HLAB_EXIT_INTERRUPTED;
        } else if (rc) {
            cli_error("%s", err.msg);
            code = cli_exit_code(rc);
        } else {
            printf("study %s: %d points (%d new this time): %d done, %d diverged, %d failed; %d trained now\n", study.name,
                   sum.points_total, sum.points_new, sum.done, sum.diverged, sum.failed, sum.trained);
            if (sum.diverged || sum.failed) code = HLAB_EXIT_FAILED;
        }
    }
    hlab_point_set_free(&ps);
    hlab_study_free(&study);
    return code;
}
