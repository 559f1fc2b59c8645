/* tests/db/test_db.c — results.db: schema creation and migration, WAL, the
 * scheduler's write path (points, runs, metrics, results), resume after a
 * killed process, result-exactly-once under kill -9, and the report queries.
 * Every database lives in a fresh mkdtemp folder; values are random (hlab_rng). */
#include <math.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "db/db.h"
#include "test.h"

static char dir[256];

static void path_in_dir(char *out, size_t cap, const char *name) { snprintf(out, cap, "%s/%s", dir, name); }

static long long scalar(hlab_db *db, const char *sql) {
    sqlite3_stmt *st;
    long long v = -999;
    if (sqlite3_prepare_v2(hlab_db_sqlite(db), sql, -1, &st, NULL) != SQLITE_OK) return v;
    if (sqlite3_step(st) == SQLITE_ROW) v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static void text_scalar(hlab_db *db, const char *sql, char *out, size_t cap) {
    sqlite3_stmt *st;
    out[0] = 0;
    if (sqlite3_prepare_v2(hlab_db_sqlite(db), sql, -1, &st, NULL) != SQLITE_OK) return;
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
        snprintf(out, cap, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
}

/* n random points with distinct random hashes; strings live in the caller's storage. */
typedef struct { char hash[40], label[64], axes[96]; } point_text;
static void random_points(hlab_rng *r, hlab_db_point_in *p, point_text *t, int n, int seeds) {
    for (int i = 0; i < n; i++) {
        snprintf(t[i].hash, sizeof t[i].hash, "%016llx%04x", (unsigned long long)hlab_rng_u64(r), i);
        int design = i / seeds;
        snprintf(t[i].label, sizeof t[i].label, "ratio=1:%d", design + 1);
        snprintf(t[i].axes, sizeof t[i].axes, "{\"model.ratio\": \"1:%d\"}", design + 1);
        memset(&p[i], 0, sizeof p[i]);
        p[i].hash = t[i].hash;
        p[i].label = t[i].label;
        p[i].axes_json = t[i].axes;
        p[i].config_json = "{\"model\": {\"layout\": \"MMMA\"}}";
        p[i].seed = i % seeds;
        p[i].params = 1000000 + (int64_t)hlab_rng_below(r, 1000000);
        p[i].params_non_embedding = p[i].params / 2;
        p[i].flops_per_token = 6.0 * (double)p[i].params;
        p[i].train_flops = p[i].flops_per_token * 1e6;
        p[i].est_memory_bytes = (int64_t)hlab_rng_below(r, 1u << 30);
    }
}

static void test_open_and_migrate(void) {
    hlab_err err = {0};
    hlab_db *db = NULL;
    char path[512];
    path_in_dir(path, sizeof path, "missing.db");
    CHECK(hlab_db_open(path, 0, &db, &err) == HLAB_EIO, "open of a missing file without CREATE: %s", err.msg);
    CHECK(db == NULL && access(path, F_OK) != 0, "a read-only open created %s", path);
    CHECK(strstr(err.msg, "does not exist") != NULL, "message names the problem: %s", err.msg);

    /* A file that is not a database. */
    path_in_dir(path, sizeof path, "garbage.db");
    FILE *f = fopen(path, "w");
    for (int i = 0; i < 200; i++) fputs("not sqlite at all ", f);
    fclose(f);
    CHECK(hlab_db_open(path, HLAB_DB_CREATE, &db, &err) == HLAB_EDB, "garbage file opens: %s", err.msg);
    CHECK(db == NULL, "handle left after failed open");

    /* Migration from version 0, one step at a time, data kept. */
    path_in_dir(path, sizeof path, "migrate.db");
    CHECK(hlab_db_open(path, HLAB_DB_CREATE | HLAB_DB_NO_MIGRATE, &db, &err) == HLAB_OK, "open: %s", err.msg);
    int v = -1;
    CHECK(hlab_db_schema_version(db, &v, &err) == HLAB_OK && v == 0, "fresh file version %d, expected 0", v);
    CHECK(hlab_db_migrate(db, 1, &err) == HLAB_OK, "migrate to 1: %s", err.msg);
    CHECK(hlab_db_schema_version(db, &v, &err) == HLAB_OK && v == 1, "version %d, expected 1", v);
    CHECK(scalar(db, "SELECT count(*) FROM sqlite_master WHERE name = 'point_results'") == 0,
          "view exists before migration 2");
    CHECK(hlab_db_migrate(db, HLAB_DB_SCHEMA_VERSION + 1, &err) == HLAB_EINVAL, "migrate past the schema accepted");
    hlab_db_study_in s = {.name = "kept", .description = "from version 1"};
    int64_t sid = 0;
    CHECK(hlab_db_upsert_study(db, &s, &sid, &err) == HLAB_OK && sid > 0, "study at version 1: %s", err.msg);
    hlab_db_close(db);
    CHECK(hlab_db_open(path, 0, &db, &err) == HLAB_OK, "reopen migrates: %s", err.msg);
    CHECK(hlab_db_schema_version(db, &v, &err) == HLAB_OK && v == HLAB_DB_SCHEMA_VERSION, "version %d after reopen",
          v);
    CHECK(scalar(db, "SELECT count(*) FROM point_results") == 0, "view missing after migration");
    int64_t found = 0;
    CHECK(hlab_db_find_study(db, "kept", &found, &err) == HLAB_OK && found == sid, "study lost by migration");
    char mode[32];
    text_scalar(db, "PRAGMA journal_mode", mode, sizeof mode);
    CHECK(!strcmp(mode, "wal"), "journal_mode is '%s', expected wal", mode);
    CHECK(scalar(db, "PRAGMA foreign_keys") == 1, "foreign keys off");
    /* Reopening a current database applies nothing (and does not fail). */
    hlab_db_close(db);
    CHECK(hlab_db_open(path, 0, &db, &err) == HLAB_OK, "second reopen: %s", err.msg);
    CHECK(sqlite3_exec(hlab_db_sqlite(db), "PRAGMA user_version = 99", NULL, NULL, NULL) == SQLITE_OK, "set version");
    hlab_db_close(db);
    CHECK(hlab_db_open(path, 0, &db, &err) == HLAB_EDB && strstr(err.msg, "newer"), "newer schema accepted: %s",
          err.msg);
}

static void test_write_path(hlab_rng *r) {
    hlab_err err = {0};
    hlab_db *db = NULL;
    char path[512];
    path_in_dir(path, sizeof path, "write.db");
    if (hlab_db_open(path, HLAB_DB_CREATE, &db, &err)) {
        CHECK(0, "open: %s", err.msg);
        return;
    }
    hlab_db_study_in s = {.name = "sweep", .description = "first", .file = "sweep.yaml",
                          .spec_json = "{\"name\": \"sweep\"}", .objectives = "val_loss:min,train_flops:min"};
    int64_t sid = 0, sid2 = 0;
    CHECK(hlab_db_upsert_study(db, &s, &sid, &err) == HLAB_OK, "upsert: %s", err.msg);
    s.description = "second";
    CHECK(hlab_db_upsert_study(db, &s, &sid2, &err) == HLAB_OK && sid2 == sid, "upsert kept id %lld vs %lld",
          (long long)sid2, (long long)sid);
    char desc[64];
    text_scalar(db, "SELECT description FROM studies", desc, sizeof desc);
    CHECK(!strcmp(desc, "second"), "description not updated: %s", desc);
    hlab_db_study_in bad = {.name = ""};
    CHECK(hlab_db_upsert_study(db, &bad, &sid2, &err) == HLAB_EINVAL, "empty study name accepted");
    CHECK(hlab_db_find_study(db, "nope", &sid2, &err) == HLAB_EINVAL && strstr(err.msg, "sweep"),
          "missing study message should list studies: %s", err.msg);

    enum { N = 12, SEEDS = 2 };
    hlab_db_point_in pts[N + 3];
    point_text txt[N + 3];
    random_points(r, pts, txt, N + 3, SEEDS);
    int64_t ids[N + 3];
    int is_new[N + 3], n_new = -1;
    CHECK(hlab_db_add_points(db, sid, pts, N, ids, is_new, &n_new, &err) == HLAB_OK, "add: %s", err.msg);
    CHECK(n_new == N, "n_new %d, expected %d", n_new, N);
    /* Re-adding with three extra points inserts only those. */
    int64_t ids2[N + 3];
    CHECK(hlab_db_add_points(db, sid, pts, N + 3, ids2, is_new, &n_new, &err) == HLAB_OK, "re-add: %s", err.msg);
    CHECK(n_new == 3, "re-add n_new %d, expected 3", n_new);
    int same = 1;
    for (int i = 0; i < N; i++) same &= ids2[i] == ids[i] && !is_new[i];
    for (int i = N; i < N + 3; i++) same &= is_new[i] == 1;
    CHECK(same, "ids or is_new of re-added points differ");
    /* A batch that fails half way (no such study) leaves nothing behind. */
    CHECK(hlab_db_add_points(db, 9999, pts, 2, NULL, NULL, &n_new, &err) == HLAB_EDB, "foreign key not enforced");
    CHECK(scalar(db, "SELECT count(*) FROM points") == N + 3, "failed batch left rows");
    hlab_db_point_in empty = pts[0];
    empty.hash = "";
    CHECK(hlab_db_add_points(db, sid, &empty, 1, NULL, NULL, NULL, &err) == HLAB_EINVAL, "empty hash accepted");

    hlab_db_point_list todo;
    CHECK(hlab_db_pending_points(db, sid, &todo, &err) == HLAB_OK && todo.n == N + 3, "pending %d", todo.n);
    CHECK(todo.n > 0 && todo.items[0].params == pts[0].params && !strcmp(todo.items[0].hash, pts[0].hash) &&
              !strcmp(todo.items[0].label, pts[0].label),
          "point read back differs");
    hlab_db_point_list_free(&todo);

    /* Run 1 of point 0: metrics in two batches, the second overlapping one step. */
    int64_t run = 0;
    CHECK(hlab_db_start_run(db, ids[0], "cpu", NULL, &run, &err) == HLAB_OK, "start: %s", err.msg);
    int64_t no_run = 0;
    CHECK(hlab_db_start_run(db, 424242, "cpu", NULL, &no_run, &err) == HLAB_EDB, "run of a missing point started");
    CHECK(hlab_db_start_run(db, ids[0], "cpu", "/tmp/ckpt0.bin", &run, &err) == HLAB_OK, "start: %s", err.msg);
    enum { STEPS = 30 };
    hlab_db_metric m[STEPS];
    for (int i = 0; i < STEPS; i++) {
        m[i] = (hlab_db_metric){.step = i + 1, .loss = 5.0 * hlab_rng_uniform(r) + 1.0,
                                .lr = 1e-3 * hlab_rng_uniform(r), .grad_norm = hlab_rng_uniform(r),
                                .tokens_per_s = 1e4 * (1.0 + hlab_rng_uniform(r)), .val_loss = NAN,
                                .peak_bytes = (int64_t)hlab_rng_below(r, 1u << 20), .elapsed_s = 0.1 * i};
        if (i % 10 == 9) m[i].val_loss = 3.0 + hlab_rng_uniform(r);
    }
    CHECK(hlab_db_append_metrics(db, run, m, 20, &err) == HLAB_OK, "metrics: %s", err.msg);
    CHECK(hlab_db_append_metrics(db, run, m + 19, STEPS - 19, &err) == HLAB_OK, "metrics: %s", err.msg);
    /* Step 5 logged again with only a validation loss keeps its train loss. */
    hlab_db_metric val_only = {.step = 5, .loss = NAN, .lr = NAN, .grad_norm = NAN, .tokens_per_s = NAN,
                               .val_loss = 2.5, .peak_bytes = -1, .elapsed_s = NAN};
    CHECK(hlab_db_append_metrics(db, run, &val_only, 1, &err) == HLAB_OK, "metrics: %s", err.msg);
    m[4].val_loss = 2.5;
    hlab_db_curve c;
    CHECK(hlab_db_loss_curve(db, ids[0], &c, &err) == HLAB_OK && c.n == STEPS, "curve n %d", c.n);
    double got[STEPS], want[STEPS];
    int nval = 0, vals_ok = 1;
    for (int i = 0; i < c.n && i < STEPS; i++) {
        got[i] = c.loss[i];
        want[i] = m[i].loss;
        if (!isnan(m[i].val_loss)) vals_ok &= c.val_loss[i] == m[i].val_loss, nval++;
        else vals_ok &= isnan(c.val_loss[i]);
    }
    CHECK_REL(got, want, STEPS, 1e-15, "loss curve");
    CHECK(vals_ok && nval == 4, "validation losses read back wrong (%d)", nval);
    hlab_db_curve_free(&c);

    hlab_db_point p;
    CHECK(hlab_db_get_point(db, ids[0], &p, &err) == HLAB_OK, "get: %s", err.msg);
    CHECK(p.status == HLAB_DB_RUNNING && p.n_runs == 2 && p.steps_done == STEPS && p.last_checkpoint &&
              !strcmp(p.last_checkpoint, "/tmp/ckpt0.bin"),
          "point after run start: status %s runs %d steps %d", hlab_db_status_name(p.status), p.n_runs, p.steps_done);
    hlab_db_point_free(&p);

    /* Result exactly once. */
    hlab_db_result_in res = {.steps_done = STEPS, .val_loss = 3.1, .val_bpb = 4.4, .train_loss = 3.0,
                             .tokens_per_s = 12345, .train_flops = 1e12, .wall_s = 3.0, .peak_bytes = 1 << 20,
                             .infer_bytes_per_token = 2048, .eval_json = "{\"hellaswag\": 0.31}"};
    CHECK(hlab_db_finish_run(db, run, HLAB_DB_DONE, STEPS, NULL, &err) == HLAB_EINVAL, "finish as done accepted");
    CHECK(hlab_db_record_result(db, run, &res, &err) == HLAB_OK, "result: %s", err.msg);
    CHECK(hlab_db_record_result(db, run, &res, &err) == HLAB_EINVAL, "second result accepted");
    CHECK(hlab_db_finish_run(db, run, HLAB_DB_FAILED, 1, "late", &err) == HLAB_EINVAL, "finish after result");
    CHECK(scalar(db, "SELECT count(*) FROM results") == 1, "results rows %lld", scalar(db, "SELECT count(*) FROM results"));
    char st[32];
    text_scalar(db, "SELECT status FROM points WHERE id = (SELECT point_id FROM results)", st, sizeof st);
    CHECK(!strcmp(st, "done"), "point status '%s' after result", st);

    /* A diverged run on point 1 and a failed one on point 2. */
    int64_t run_d, run_f;
    CHECK(hlab_db_start_run(db, ids[1], "cpu", NULL, &run_d, &err) == HLAB_OK, "start: %s", err.msg);
    CHECK(hlab_db_finish_run(db, run_d, HLAB_DB_DIVERGED, 7, "loss became nan at step 7", &err) == HLAB_OK, "%s",
          err.msg);
    CHECK(hlab_db_start_run(db, ids[2], "cuda:0", NULL, &run_f, &err) == HLAB_OK, "start: %s", err.msg);
    CHECK(hlab_db_finish_run(db, run_f, HLAB_DB_FAILED, -1, "out of memory", &err) == HLAB_OK, "%s", err.msg);
    hlab_db_run_list runs;
    CHECK(hlab_db_list_runs(db, ids[1], &runs, &err) == HLAB_OK && runs.n == 1, "runs of point 1");
    CHECK(runs.n == 1 && runs.items[0].status == HLAB_DB_DIVERGED && runs.items[0].steps_done == 7 &&
              runs.items[0].error && strstr(runs.items[0].error, "nan") && !runs.items[0].has_result &&
              runs.items[0].finished_at[0],
          "diverged run read back wrong");
    hlab_db_run_list_free(&runs);
    CHECK(hlab_db_list_runs(db, ids[0], &runs, &err) == HLAB_OK && runs.n == 2, "runs of point 0: %d", runs.n);
    CHECK(runs.n == 2 && runs.items[1].has_result && runs.items[1].val_loss == 3.1 &&
              runs.items[1].eval_json && strstr(runs.items[1].eval_json, "hellaswag"),
          "result read back wrong");
    hlab_db_run_list_free(&runs);

    /* Report queries: one row per point, NaN where there is no result. */
    const char *metrics[] = {"val_loss", "params", "eval.hellaswag", "tokens_per_s"};
    hlab_db_table t;
    CHECK(hlab_db_query_metrics(db, sid, metrics, 4, &t, &err) == HLAB_OK, "query: %s", err.msg);
    CHECK(t.n_rows == N + 3, "table rows %d", t.n_rows);
    if (t.n_rows == N + 3) {
        CHECK(t.values[0] == 3.1 && t.values[1] == (double)pts[0].params && fabs(t.values[2] - 0.31) < 1e-12 &&
                  t.values[3] == 12345,
              "row 0 values %g %g %g %g", t.values[0], t.values[1], t.values[2], t.values[3]);
        CHECK(isnan(t.values[4]) && t.values[5] == (double)pts[1].params && t.status[1] == HLAB_DB_DIVERGED,
              "row 1 should miss val_loss but have params");
        CHECK(!strcmp(t.label[2], pts[2].label) && t.seed[3] == pts[3].seed, "labels / seeds");
    }
    hlab_db_table_free(&t);
    const char *bad_metric[] = {"val_loss; DROP TABLE points"};
    CHECK(hlab_db_query_metrics(db, sid, bad_metric, 1, &t, &err) == HLAB_EINVAL && strstr(err.msg, "unknown metric"),
          "bad metric accepted: %s", err.msg);
    CHECK(!hlab_db_metric_known("eval.a'b") && hlab_db_metric_known("eval.mmlu_5shot") &&
              hlab_db_metric_known("train_flops"),
          "metric_known");

    /* find_point: by id, by hash prefix, ambiguous. */
    int64_t fid = 0;
    char key[64];
    snprintf(key, sizeof key, "%lld", (long long)ids[3]);
    CHECK(hlab_db_find_point(db, key, &fid, &err) == HLAB_OK && fid == ids[3], "find by id: %s", err.msg);
    snprintf(key, sizeof key, "%.10s", pts[4].hash);
    CHECK(hlab_db_find_point(db, key, &fid, &err) == HLAB_OK && fid == ids[4], "find by hash: %s", err.msg);
    hlab_db_point_in twins[2] = {pts[0], pts[0]};
    twins[0].hash = "abcdef01";
    twins[1].hash = "abcdef02";
    CHECK(hlab_db_add_points(db, sid, twins, 2, NULL, NULL, NULL, &err) == HLAB_OK, "add twins: %s", err.msg);
    CHECK(hlab_db_find_point(db, "abcdef", &fid, &err) == HLAB_EINVAL && strstr(err.msg, "several"),
          "ambiguous prefix: %s", err.msg);
    CHECK(hlab_db_find_point(db, "zzzzzz", &fid, &err) == HLAB_EINVAL, "missing prefix found");

    hlab_db_study_list sl;
    CHECK(hlab_db_list_studies(db, &sl, &err) == HLAB_OK && sl.n == 1, "studies");
    if (sl.n == 1)
        CHECK(sl.items[0].n_points == N + 5 && sl.items[0].n_by_status[HLAB_DB_DONE] == 1 &&
                  sl.items[0].n_by_status[HLAB_DB_DIVERGED] == 1 && sl.items[0].n_by_status[HLAB_DB_FAILED] == 1 &&
                  sl.items[0].n_by_status[HLAB_DB_PENDING] == N + 2 &&
                  !strcmp(sl.items[0].objectives, "val_loss:min,train_flops:min"),
              "study counts wrong: %d points", sl.items[0].n_points);
    hlab_db_study_list_free(&sl);

    /* --restart: everything of the study goes, the study stays. */
    CHECK(hlab_db_reset_study(db, sid, &err) == HLAB_OK, "reset: %s", err.msg);
    CHECK(scalar(db, "SELECT count(*) FROM points") + scalar(db, "SELECT count(*) FROM runs") +
                  scalar(db, "SELECT count(*) FROM metrics") + scalar(db, "SELECT count(*) FROM results") ==
              0,
          "rows left after reset");
    CHECK(scalar(db, "SELECT count(*) FROM studies") == 1, "study deleted by reset");
    hlab_db_close(db);
}

/* A process that starts a run and dies leaves it 'running'; the next start
 * marks it interrupted and the point is pending again, with its checkpoint. */
static void test_resume_after_dead_process(hlab_rng *r) {
    hlab_err err = {0};
    hlab_db *db = NULL;
    char path[512];
    path_in_dir(path, sizeof path, "resume.db");
    if (hlab_db_open(path, HLAB_DB_CREATE, &db, &err)) {
        CHECK(0, "open: %s", err.msg);
        return;
    }
    hlab_db_study_in s = {.name = "resume"};
    int64_t sid, ids[3];
    hlab_db_point_in pts[3];
    point_text txt[3];
    random_points(r, pts, txt, 3, 1);
    CHECK(hlab_db_upsert_study(db, &s, &sid, &err) == HLAB_OK &&
              hlab_db_add_points(db, sid, pts, 3, ids, NULL, NULL, &err) == HLAB_OK,
          "setup: %s", err.msg);
    int64_t live_run;
    CHECK(hlab_db_start_run(db, ids[2], "cpu", NULL, &live_run, &err) == HLAB_OK, "live run: %s", err.msg);
    pid_t child = fork();
    if (child == 0) {
        hlab_db *cdb = NULL;
        hlab_err cerr = {0};
        int64_t run;
        if (hlab_db_open(path, 0, &cdb, &cerr) || hlab_db_start_run(cdb, ids[0], "cpu", "/tmp/p0.ckpt", &run, &cerr))
            _exit(3);
        hlab_db_metric m = {.step = 10, .loss = 4.0, .lr = 1e-3, .grad_norm = 1, .tokens_per_s = 1,
                            .val_loss = NAN, .peak_bytes = -1, .elapsed_s = 1};
        if (hlab_db_append_metrics(cdb, run, &m, 1, &cerr)) _exit(4);
        kill(getpid(), SIGKILL); /* no close, no finish: as a crash leaves it */
        _exit(5);
    }
    int wst = 0;
    waitpid(child, &wst, 0);
    CHECK(WIFSIGNALED(wst) && WTERMSIG(wst) == SIGKILL, "child did not die by SIGKILL (status %d)", wst);
    hlab_db_close(db);
    CHECK(hlab_db_open(path, 0, &db, &err) == HLAB_OK, "reopen after crash: %s", err.msg);
    if (!db) return;
    int marked = -1;
    CHECK(hlab_db_mark_interrupted(db, sid, &marked, &err) == HLAB_OK, "mark: %s", err.msg);
    CHECK(marked == 1, "marked %d runs, expected 1 (the live run of this process must stay)", marked);
    hlab_db_point_list todo;
    CHECK(hlab_db_pending_points(db, sid, &todo, &err) == HLAB_OK, "pending: %s", err.msg);
    CHECK(todo.n == 2 && todo.items[0].id == ids[0] && todo.items[0].status == HLAB_DB_INTERRUPTED &&
              todo.items[0].steps_done == 10 && todo.items[0].last_checkpoint &&
              !strcmp(todo.items[0].last_checkpoint, "/tmp/p0.ckpt") && todo.items[1].id == ids[1],
          "queue after crash: %d points", todo.n);
    hlab_db_point_list_free(&todo);
    CHECK(hlab_db_mark_interrupted(db, 0, &marked, &err) == HLAB_OK && marked == 0, "second mark found %d", marked);
    /* A recycled pid: a run recorded under this very pid by an earlier process
     * (another start signature) is not ours and must be marked. */
    char sql[512];
    char host[256] = "";
    text_scalar(db, "SELECT host FROM runs LIMIT 1", host, sizeof host);
    snprintf(sql, sizeof sql,
             "INSERT INTO runs(point_id, status, device, host, pid, process_start) VALUES(%lld, 'running', 'cpu', "
             "'%s', %lld, 'an-earlier-boot/123')",
             (long long)ids[1], host, (long long)getpid());
    CHECK(sqlite3_exec(hlab_db_sqlite(db), sql, NULL, NULL, NULL) == SQLITE_OK, "insert stale run");
    CHECK(hlab_db_mark_interrupted(db, sid, &marked, &err) == HLAB_OK && marked == 1,
          "a run of a recycled pid counted as live (marked %d)", marked);
    CHECK(scalar(db, "SELECT count(*) FROM runs WHERE status = 'running'") == 1, "the live run was marked");
    hlab_db_close(db);
}

/* kill -9 a writer at random moments: the database always opens, every done
 * run has exactly one result, every result belongs to a done run and point. */
static void test_kill9_atomicity(hlab_rng *r) {
    hlab_err err = {0};
    hlab_db *db = NULL;
    char path[512];
    path_in_dir(path, sizeof path, "kill.db");
    enum { NPTS = 1000 };
    hlab_db_point_in *pts = calloc(NPTS, sizeof *pts);
    point_text *txt = calloc(NPTS, sizeof *txt);
    int64_t sid;
    random_points(r, pts, txt, NPTS, 1);
    hlab_db_study_in s = {.name = "kill"};
    if (hlab_db_open(path, HLAB_DB_CREATE, &db, &err) || hlab_db_upsert_study(db, &s, &sid, &err) ||
        hlab_db_add_points(db, sid, pts, NPTS, NULL, NULL, NULL, &err)) {
        CHECK(0, "setup: %s", err.msg);
        goto out;
    }
    hlab_db_close(db);
    db = NULL;
    /* Eight rounds killed at random moments, then one left to finish. */
    for (int round = 0; round < 9; round++) {
        int last = round == 8;
        uint64_t child_seed = hlab_rng_u64(r);
        pid_t child = fork();
        if (child == 0) {
            hlab_db *cdb = NULL;
            hlab_err cerr = {0};
            hlab_rng cr;
            hlab_rng_seed(&cr, child_seed);
            if (hlab_db_open(path, 0, &cdb, &cerr) || hlab_db_mark_interrupted(cdb, sid, NULL, &cerr)) _exit(3);
            hlab_db_point_list todo;
            if (hlab_db_pending_points(cdb, sid, &todo, &cerr)) _exit(4);
            for (int i = 0; i < todo.n; i++) {
                int64_t run;
                if (hlab_db_start_run(cdb, todo.items[i].id, "cpu", NULL, &run, &cerr)) _exit(5);
                hlab_db_metric m[4];
                for (int k = 0; k < 4; k++)
                    m[k] = (hlab_db_metric){.step = k + 1, .loss = hlab_rng_uniform(&cr), .lr = 1, .grad_norm = 1,
                                            .tokens_per_s = 1, .val_loss = NAN, .peak_bytes = 1, .elapsed_s = k};
                if (hlab_db_append_metrics(cdb, run, m, 4, &cerr)) _exit(6);
                hlab_db_result_in res = {.steps_done = 4, .val_loss = hlab_rng_uniform(&cr), .val_bpb = NAN,
                                         .train_loss = 1, .tokens_per_s = 1, .train_flops = 1, .wall_s = 1,
                                         .peak_bytes = 1, .infer_bytes_per_token = 1};
                if (hlab_db_record_result(cdb, run, &res, &cerr)) _exit(7);
            }
            hlab_db_point_list_free(&todo);
            hlab_db_close(cdb);
            _exit(0);
        }
        struct timespec ts = {0, (long)(2e6 + 25e6 * hlab_rng_uniform(r))};
        if (!last) {
            nanosleep(&ts, NULL);
            kill(child, SIGKILL);
        }
        int wst;
        waitpid(child, &wst, 0);
        CHECK(last ? WIFEXITED(wst) && WEXITSTATUS(wst) == 0 : WIFSIGNALED(wst) || (WIFEXITED(wst) && WEXITSTATUS(wst) == 0),
              "writer of round %d failed with exit %d", round, WIFEXITED(wst) ? WEXITSTATUS(wst) : -1);
    }
    if (hlab_db_open(path, 0, &db, &err)) {
        CHECK(0, "database does not open after kill -9: %s", err.msg);
        goto out;
    }
    CHECK(scalar(db, "PRAGMA integrity_check") != -999, "integrity check ran");
    char ok[32];
    text_scalar(db, "PRAGMA integrity_check", ok, sizeof ok);
    CHECK(!strcmp(ok, "ok"), "integrity_check: %s", ok);
    CHECK(scalar(db, "SELECT count(*) FROM runs r WHERE (r.status = 'done') !="
                     " (EXISTS (SELECT 1 FROM results x WHERE x.run_id = r.id))") == 0,
          "a done run without its result, or a result of an unfinished run");
    CHECK(scalar(db, "SELECT count(*) FROM points p WHERE p.status = 'done' AND"
                     " (SELECT count(*) FROM results WHERE point_id = p.id) != 1") == 0,
          "a done point without exactly one result (retrained or lost)");
    long long done = scalar(db, "SELECT count(*) FROM points WHERE status = 'done'");
    long long done_runs = scalar(db, "SELECT count(*) FROM runs WHERE status = 'done'");
    long long results = scalar(db, "SELECT count(*) FROM results");
    CHECK(done == NPTS && done_runs == NPTS && results == NPTS,
          "after the final round: %lld points done, %lld done runs, %lld results; expected %d each (nothing "
          "finished may be trained twice)",
          done, done_runs, results, NPTS);
    CHECK(scalar(db, "SELECT count(*) FROM runs WHERE status = 'running'") == 0, "runs left running");
    printf("kill -9: 8 rounds killed, %lld runs interrupted on the way, all %d points done once\n",
           scalar(db, "SELECT count(*) FROM runs WHERE status = 'interrupted'"), NPTS);
out:
    hlab_db_close(db);
    free(pts);
    free(txt);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/hlab_test_db_XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    hlab_log_set_level(HLAB_LOG_WARN);
    hlab_rng r;
    hlab_rng_seed(&r, 20261123);
    test_open_and_migrate();
    test_write_path(&r);
    test_resume_after_dead_process(&r);
    test_kill9_atomicity(&r);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return test_summary();
}
