/* tests/db/test_db_readonly.c — HLAB_DB_READONLY, the open of the read
 * commands (hlab list, show, report): a database written by the scheduler's
 * path is read back through a read-only handle with the report queries and
 * gives the same answers as a writable one; writes through the handle fail
 * with HLAB_EDB and leave no transaction open; the open changes nothing in the
 * file (journal mode, schema); an older schema is refused with advice; a
 * missing file is not created; a WAL database in a folder the reader cannot
 * write (no -shm can be created) is still read.
 * Every database lives in a fresh mkdtemp folder; values are random (hlab_rng). */
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "db/db.h"
#include "test.h"

enum { N_POINTS = 6, N_STEPS = 8 };

static char dir[256];

static void path_in_dir(char *out, size_t cap, const char *name) { snprintf(out, cap, "%s/%s", dir, name); }

/* A raw SQLite connection's one-value answer as text ("" on failure). */
static void raw_text(const char *path, const char *sql, char *out, size_t cap) {
    sqlite3 *c = NULL;
    sqlite3_stmt *st = NULL;
    out[0] = 0;
    if (sqlite3_open_v2(path, &c, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(c, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW &&
        sqlite3_column_text(st, 0))
        snprintf(out, cap, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    sqlite3_close(c);
}

/* Writes a study of N_POINTS points through the scheduler's path: each point
 * gets a run with N_STEPS random metrics; all but the last a result (the last
 * fails). Stores the study id and point ids. */
static int write_study(const char *path, hlab_rng *r, int64_t *study_id, int64_t *ids, hlab_err *err) {
    hlab_db *db = NULL;
    char hash[N_POINTS][40], label[N_POINTS][32], axes[N_POINTS][64];
    hlab_db_point_in pts[N_POINTS];
    for (int i = 0; i < N_POINTS; i++) {
        snprintf(hash[i], sizeof hash[i], "%016llx%02x", (unsigned long long)hlab_rng_u64(r), i);
        snprintf(label[i], sizeof label[i], "ratio=1:%d", i / 2 + 1);
        snprintf(axes[i], sizeof axes[i], "{\"model.ratio\": \"1:%d\"}", i / 2 + 1);
        pts[i] = (hlab_db_point_in){.hash = hash[i], .label = label[i], .axes_json = axes[i], .config_json = "{}",
                                    .seed = i % 2, .params = 1000 + (int64_t)hlab_rng_below(r, 100000),
                                    .params_non_embedding = 500, .flops_per_token = 1e4 * (1 + hlab_rng_uniform(r)),
                                    .train_flops = 1e9 * (1 + hlab_rng_uniform(r)), .est_memory_bytes = 1 << 20};
    }
    hlab_db_study_in s = {.name = "ro", .description = "read-only test", .objectives = "val_loss:min"};
    int rc = hlab_db_open(path, HLAB_DB_CREATE, &db, err);
    if (!rc) rc = hlab_db_upsert_study(db, &s, study_id, err);
    if (!rc) rc = hlab_db_add_points(db, *study_id, pts, N_POINTS, ids, NULL, NULL, err);
    for (int i = 0; i < N_POINTS && !rc; i++) {
        int64_t run;
        if ((rc = hlab_db_start_run(db, ids[i], "cpu", NULL, &run, err))) break;
        hlab_db_metric m[N_STEPS];
        for (int k = 0; k < N_STEPS; k++)
            m[k] = (hlab_db_metric){.step = k + 1, .loss = 5 * hlab_rng_uniform(r) + 0.1, .lr = 1e-3,
                                    .grad_norm = hlab_rng_uniform(r), .tokens_per_s = 1e3 * (1 + hlab_rng_uniform(r)),
                                    .val_loss = k % 4 == 3 ? 4 * hlab_rng_uniform(r) + 0.1 : NAN, .peak_bytes = 1 << 20,
                                    .elapsed_s = k};
        if ((rc = hlab_db_append_metrics(db, run, m, N_STEPS, err))) break;
        if (i == N_POINTS - 1) {
            rc = hlab_db_finish_run(db, run, HLAB_DB_FAILED, N_STEPS, "out of memory", err);
        } else {
            hlab_db_result_in res = {.steps_done = N_STEPS, .val_loss = 4 * hlab_rng_uniform(r) + 0.1,
                                     .val_bpb = NAN, .train_loss = 4 * hlab_rng_uniform(r) + 0.1,
                                     .tokens_per_s = 1e3 * (1 + hlab_rng_uniform(r)), .train_flops = 1e9,
                                     .wall_s = 1 + hlab_rng_uniform(r), .peak_bytes = 1 << 20,
                                     .infer_bytes_per_token = 64};
            rc = hlab_db_record_result(db, run, &res, err);
        }
    }
    hlab_db_close(db);
    return rc;
}

/* The report queries through a handle, flattened into one vector of numbers
 * (NaN kept as a sentinel value) so two handles can be compared. */
static int report_numbers(hlab_db *db, int64_t study_id, const int64_t *ids, double *out, int cap, int *n,
                          hlab_err *err) {
    static const char *const metrics[] = {"val_loss", "train_loss", "tokens_per_s", "params", "train_flops",
                                          "wall_s"};
    const int n_metrics = (int)(sizeof metrics / sizeof *metrics);
    *n = 0;
#define PUT(v) (*n < cap ? (void)(out[(*n)++] = isnan(v) ? -12345.0 : (v)) : (void)0)
    hlab_db_study_list sl = {0};
    int rc = hlab_db_list_studies(db, &sl, err);
    if (rc) return rc;
    for (int i = 0; i < sl.n; i++) {
        PUT((double)sl.items[i].n_points);
        for (int k = 0; k < HLAB_DB_N_STATUS; k++) PUT((double)sl.items[i].n_by_status[k]);
    }
    hlab_db_study_list_free(&sl);
    hlab_db_table t = {0};
    if ((rc = hlab_db_query_metrics(db, study_id, metrics, n_metrics, &t, err))) return rc;
    for (int i = 0; i < t.n_rows; i++) {
        PUT((double)t.status[i]);
        for (int k = 0; k < n_metrics; k++) PUT(t.values[i * n_metrics + k]);
    }
    hlab_db_table_free(&t);
    for (int p = 0; p < N_POINTS && !rc; p++) {
        hlab_db_curve c = {0};
        if ((rc = hlab_db_loss_curve(db, ids[p], &c, err))) break;
        for (int i = 0; i < c.n; i++) {
            PUT((double)c.step[i]);
            PUT(c.loss[i]);
            PUT(c.val_loss[i]);
        }
        hlab_db_curve_free(&c);
        hlab_db_run_list runs = {0};
        if ((rc = hlab_db_list_runs(db, ids[p], &runs, err))) break;
        for (int i = 0; i < runs.n; i++) PUT(runs.items[i].has_result ? runs.items[i].val_loss : NAN);
        hlab_db_run_list_free(&runs);
    }
#undef PUT
    return rc;
}

static void test_read_and_refuse_writes(hlab_rng *r) {
    hlab_err err = {0};
    char path[512], mode[32], version[32];
    path_in_dir(path, sizeof path, "results.db");
    int64_t sid = 0, ids[N_POINTS];
    if (write_study(path, r, &sid, ids, &err)) {
        CHECK(0, "setup: %s", err.msg);
        return;
    }
    enum { CAP = 512 };
    double want[CAP], got[CAP];
    int n_want = 0, n_got = 0;
    hlab_db *rw = NULL, *ro = NULL;
    CHECK(hlab_db_open(path, 0, &rw, &err) == HLAB_OK, "writable open: %s", err.msg);
    if (rw) CHECK(report_numbers(rw, sid, ids, want, CAP, &n_want, &err) == HLAB_OK, "queries (writable): %s", err.msg);
    hlab_db_close(rw);
    CHECK(n_want > 3 * N_POINTS * N_STEPS / 4, "the report queries returned only %d numbers", n_want);

    /* The file goes back to a rollback journal: a read-only open must leave it so. */
    raw_text(path, "PRAGMA journal_mode = DELETE", mode, sizeof mode);
    CHECK(!strcmp(mode, "delete"), "could not switch the test database to journal_mode delete (%s)", mode);

    for (int i = 0; i < CAP; i++) got[i] = -777.0; /* poison */
    CHECK(hlab_db_open(path, HLAB_DB_READONLY, &ro, &err) == HLAB_OK && ro, "read-only open: %s", err.msg);
    if (!ro) return;
    CHECK(report_numbers(ro, sid, ids, got, CAP, &n_got, &err) == HLAB_OK, "queries (read-only): %s", err.msg);
    CHECK(n_got == n_want, "read-only queries gave %d numbers, writable %d", n_got, n_want);
    int same = n_got == n_want;
    for (int i = 0; i < n_want && same; i++) same = got[i] == want[i];
    CHECK(same, "read-only and writable handles answer the report queries differently");
    int64_t found = 0;
    CHECK(hlab_db_find_study(ro, "ro", &found, &err) == HLAB_OK && found == sid, "find study read-only: %s", err.msg);

    /* Writes fail cleanly: HLAB_EDB naming the cause, no transaction left open,
     * the handle still reads. */
    hlab_db_study_in s = {.name = "intruder"};
    int64_t new_id = 0, run = 0;
    int rc = hlab_db_upsert_study(ro, &s, &new_id, &err);
    CHECK(rc == HLAB_EDB && strstr(err.msg, "readonly"), "upsert through a read-only handle: rc %d, '%s'", rc,
          err.msg);
    rc = hlab_db_start_run(ro, ids[0], "cpu", NULL, &run, &err);
    CHECK(rc == HLAB_EDB, "start_run through a read-only handle: rc %d, '%s'", rc, err.msg);
    CHECK(sqlite3_get_autocommit(hlab_db_sqlite(ro)) == 1, "a failed write left a transaction open");
    rc = hlab_db_set_point_status(ro, ids[0], HLAB_DB_PENDING, &err);
    CHECK(rc == HLAB_EDB, "set_point_status through a read-only handle: rc %d", rc);
    CHECK(hlab_db_mark_interrupted(ro, sid, NULL, &err) == HLAB_EDB, "mark_interrupted through a read-only handle");
    CHECK(report_numbers(ro, sid, ids, got, CAP, &n_got, &err) == HLAB_OK && n_got == n_want,
          "the handle does not read after refused writes: %s", err.msg);
    hlab_db_close(ro);

    raw_text(path, "PRAGMA journal_mode", mode, sizeof mode);
    CHECK(!strcmp(mode, "delete"), "the read-only open changed journal_mode to '%s'", mode);
    raw_text(path, "SELECT count(*) FROM studies WHERE name = 'intruder'", version, sizeof version);
    CHECK(!strcmp(version, "0"), "a write through the read-only handle landed (%s rows)", version);
    raw_text(path, "SELECT status FROM points ORDER BY id LIMIT 1", version, sizeof version);
    CHECK(!strcmp(version, "done"), "point 1 is '%s' after refused writes, want done", version);

    /* READONLY with CREATE is a caller's mistake. */
    CHECK(hlab_db_open(path, HLAB_DB_READONLY | HLAB_DB_CREATE, &ro, &err) == HLAB_EINVAL && !ro,
          "READONLY|CREATE accepted: %s", err.msg);
}

static void test_missing_and_old(void) {
    hlab_err err = {0};
    hlab_db *db = NULL;
    char path[512], v[32];
    path_in_dir(path, sizeof path, "missing.db");
    CHECK(hlab_db_open(path, HLAB_DB_READONLY, &db, &err) == HLAB_EIO && !db, "read-only open of a missing file: %s",
          err.msg);
    CHECK(access(path, F_OK) != 0, "a read-only open created %s", path);
    CHECK(strstr(err.msg, "does not exist") != NULL, "message names the problem: %s", err.msg);

    /* A database at schema version 2 (before process_start): refused, not migrated. */
    path_in_dir(path, sizeof path, "old.db");
    CHECK(hlab_db_open(path, HLAB_DB_CREATE | HLAB_DB_NO_MIGRATE, &db, &err) == HLAB_OK, "create: %s", err.msg);
    if (!db) return;
    CHECK(hlab_db_migrate(db, HLAB_DB_SCHEMA_VERSION - 1, &err) == HLAB_OK, "migrate: %s", err.msg);
    hlab_db_close(db);
    db = NULL;
    int rc = hlab_db_open(path, HLAB_DB_READONLY, &db, &err);
    CHECK(rc == HLAB_EDB && !db && strstr(err.msg, "older") && strstr(err.msg, "hlab search"),
          "an older schema opened read-only: rc %d, '%s'", rc, err.msg);
    raw_text(path, "PRAGMA user_version", v, sizeof v);
    CHECK(atoi(v) == HLAB_DB_SCHEMA_VERSION - 1, "the read-only open migrated the schema to %s", v);
    /* ... unless the caller takes the old schema as it is. */
    CHECK(hlab_db_open(path, HLAB_DB_READONLY | HLAB_DB_NO_MIGRATE, &db, &err) == HLAB_OK,
          "READONLY|NO_MIGRATE on an older schema: %s", err.msg);
    hlab_db_close(db);
    db = NULL;
    /* A writable open migrates it, after which a read-only open is fine. */
    CHECK(hlab_db_open(path, 0, &db, &err) == HLAB_OK, "writable open migrates: %s", err.msg);
    hlab_db_close(db);
    db = NULL;
    CHECK(hlab_db_open(path, HLAB_DB_READONLY, &db, &err) == HLAB_OK, "read-only after migration: %s", err.msg);
    hlab_db_close(db);
}

/* A WAL database (its -wal and -shm gone after a clean close) in a folder the
 * reader cannot write: SQLite cannot create -shm, so the plain open fails and
 * hlab_db_open must fall back. As root, permissions do not stop writes, so a
 * child drops to uid/gid 65534 (nobody); otherwise the folder is made
 * read-only for the check. */
static void test_readonly_folder(hlab_rng *r) {
    hlab_err err = {0};
    char sub[300], path[512], shm[520], mode[32];
    snprintf(sub, sizeof sub, "%s/ro_folder", dir);
    snprintf(path, sizeof path, "%s/results.db", sub);
    snprintf(shm, sizeof shm, "%s-shm", path);
    int64_t sid, ids[N_POINTS];
    if (mkdir(sub, 0755) != 0 || write_study(path, r, &sid, ids, &err)) {
        CHECK(0, "setup: %s", err.msg);
        return;
    }
    raw_text(path, "PRAGMA journal_mode", mode, sizeof mode);
    CHECK(!strcmp(mode, "wal"), "test database is in '%s' mode, want wal", mode);
    CHECK(access(shm, F_OK) != 0, "%s left behind after a clean close", shm);
    const int as_root = geteuid() == 0;
    if (as_root) {
        chmod(dir, 0755); /* mkdtemp made it 0700: nobody could not even look inside */
        chmod(path, 0644);
    } else {
        chmod(sub, 0555);
    }
    pid_t child = fork();
    if (child == 0) {
        if (as_root && (setgid(65534) != 0 || setuid(65534) != 0)) _exit(10);
        if (access(sub, W_OK) == 0) _exit(11); /* the folder must not be writable for this check */
        hlab_db *db = NULL;
        hlab_err e = {0};
        if (hlab_db_open(path, HLAB_DB_READONLY, &db, &e)) {
            fprintf(stderr, "read-only folder: %s\n", e.msg);
            _exit(12);
        }
        hlab_db_table t = {0};
        const char *m[] = {"val_loss"};
        int ok = hlab_db_query_metrics(db, sid, m, 1, &t, &e) == HLAB_OK && t.n_rows == N_POINTS &&
                 !isnan(t.values[0]) && isnan(t.values[N_POINTS - 1]);
        hlab_db_table_free(&t);
        hlab_db_close(db);
        _exit(ok ? 0 : 13);
    }
    int wst = 0;
    waitpid(child, &wst, 0);
    int code = WIFEXITED(wst) ? WEXITSTATUS(wst) : -1;
    if (code == 10 || code == 11) {
        printf("read-only folder check not possible here (exit %d): skipped\n", code);
    } else {
        CHECK(code == 0, "reading a WAL database in a read-only folder failed (child exit %d)", code);
    }
    chmod(dir, 0700);
    chmod(sub, 0755);
    CHECK(access(shm, F_OK) != 0, "the read-only reader created %s", shm);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/hlab_test_db_ro_XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    hlab_log_set_level(HLAB_LOG_WARN);
    hlab_rng r;
    hlab_rng_seed(&r, 20261124);
    test_read_and_refuse_writes(&r);
    test_missing_and_old();
    test_readonly_folder(&r);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return test_summary();
}
