/* db/db.c — results.db over SQLite: open, schema migrations, and every write
 * the scheduler makes (studies, points, runs, metrics, results).
 *
 * Conventions: statements are prepared per call (a handful per point, nothing
 * hot) and finalized before return; writes that belong together run inside
 * BEGIN IMMEDIATE ... COMMIT (IMMEDIATE takes the write lock up front so a
 * concurrent writer waits in busy_timeout instead of failing mid-transaction);
 * any failure rolls back. Reading queries live in db_query.c.
 */
#include "db/db_internal.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void process_signature(int64_t pid, char *out, size_t cap);

/* ---- schema: migration i brings user_version from i to i+1 ------------------ */
static const char *const migrations[HLAB_DB_SCHEMA_VERSION] = {
    /* 1: the tables */
    "CREATE TABLE studies ("
    "  id INTEGER PRIMARY KEY,"
    "  name TEXT NOT NULL UNIQUE,"
    "  description TEXT NOT NULL DEFAULT '',"
    "  file TEXT,"
    "  spec_json TEXT NOT NULL DEFAULT '{}',"
    "  objectives TEXT NOT NULL DEFAULT '',"
    "  created_at TEXT NOT NULL DEFAULT (" DB_NOW "),"
    "  updated_at TEXT NOT NULL DEFAULT (" DB_NOW "));"
    "CREATE TABLE points ("
    "  id INTEGER PRIMARY KEY,"
    "  study_id INTEGER NOT NULL REFERENCES studies(id) ON DELETE CASCADE,"
    "  hash TEXT NOT NULL CHECK (length(hash) > 0),"
    "  label TEXT NOT NULL DEFAULT '',"
    "  axes_json TEXT NOT NULL DEFAULT '{}',"
    "  config_json TEXT NOT NULL DEFAULT '{}',"
    "  seed INTEGER NOT NULL DEFAULT 0,"
    "  params INTEGER,"
    "  params_non_embedding INTEGER,"
    "  flops_per_token REAL,"
    "  train_flops REAL,"
    "  est_memory_bytes INTEGER,"
    "  status TEXT NOT NULL DEFAULT 'pending'"
    "    CHECK (status IN ('pending','running','done','diverged','failed','interrupted')),"
    "  created_at TEXT NOT NULL DEFAULT (" DB_NOW "),"
    "  UNIQUE (study_id, hash));"
    "CREATE TABLE runs ("
    "  id INTEGER PRIMARY KEY,"
    "  point_id INTEGER NOT NULL REFERENCES points(id) ON DELETE CASCADE,"
    "  status TEXT NOT NULL DEFAULT 'running'"
    "    CHECK (status IN ('running','done','diverged','failed','interrupted')),"
    "  device TEXT,"
    "  host TEXT,"
    "  pid INTEGER,"
    "  started_at TEXT NOT NULL DEFAULT (" DB_NOW "),"
    "  finished_at TEXT,"
    "  steps_done INTEGER NOT NULL DEFAULT 0,"
    "  error TEXT,"
    "  checkpoint_path TEXT);"
    "CREATE INDEX runs_by_point ON runs(point_id);"
    "CREATE INDEX runs_by_status ON runs(status);"
    "CREATE TABLE metrics ("
    "  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,"
    "  step INTEGER NOT NULL,"
    "  loss REAL,"
    "  lr REAL,"
    "  grad_norm REAL,"
    "  tokens_per_s REAL,"
    "  val_loss REAL,"
    "  peak_bytes INTEGER,"
    "  elapsed_s REAL,"
    "  PRIMARY KEY (run_id, step)) WITHOUT ROWID;"
    "CREATE TABLE results ("
    "  id INTEGER PRIMARY KEY,"
    "  run_id INTEGER NOT NULL UNIQUE REFERENCES runs(id) ON DELETE CASCADE,"
    "  point_id INTEGER NOT NULL REFERENCES points(id) ON DELETE CASCADE,"
    "  steps_done INTEGER NOT NULL,"
    "  val_loss REAL,"
    "  val_bpb REAL,"
    "  train_loss REAL,"
    "  tokens_per_s REAL,"
    "  train_flops REAL,"
    "  peak_bytes INTEGER,"
    "  infer_bytes_per_token REAL,"
    "  eval_json TEXT NOT NULL DEFAULT '{}',"
    "  wall_s REAL,"
    "  created_at TEXT NOT NULL DEFAULT (" DB_NOW "));"
    "CREATE INDEX results_by_point ON results(point_id);",

    /* 2: the view that answers the usual questions: each point with its newest
     * result (NULL columns when it has none). */
    "CREATE VIEW point_results AS"
    " SELECT s.id AS study_id, s.name AS study, p.id AS point_id, p.hash, p.label, p.seed, p.status,"
    "  p.params, p.params_non_embedding, p.flops_per_token, p.est_memory_bytes,"
    "  r.run_id, ru.device, r.steps_done, r.val_loss, r.val_bpb, r.train_loss, r.tokens_per_s,"
    "  coalesce(r.train_flops, p.train_flops) AS train_flops, r.peak_bytes, r.infer_bytes_per_token,"
    "  r.wall_s, r.eval_json, p.axes_json, p.config_json"
    " FROM points p JOIN studies s ON s.id = p.study_id"
    " LEFT JOIN results r ON r.id = (SELECT max(id) FROM results WHERE point_id = p.id)"
    " LEFT JOIN runs ru ON ru.id = r.run_id;",

    /* 3: a process's start signature beside its pid, so that a recycled pid is
     * not mistaken for the process that started a run. */
    "ALTER TABLE runs ADD COLUMN process_start TEXT;",
};

/* ---- small helpers shared with db_query.c ------------------------------------- */
int db_fail(hlab_db *db, hlab_err *err, const char *what) {
    return hlab_fail(err, HLAB_EDB, "db %s: %s: %s", db->path, what, sqlite3_errmsg(db->conn));
}

int db_prepare(hlab_db *db, const char *sql, sqlite3_stmt **st, const char *what, hlab_err *err) {
    if (sqlite3_prepare_v2(db->conn, sql, -1, st, NULL) != SQLITE_OK) {
        *st = NULL;
        return db_fail(db, err, what);
    }
    return HLAB_OK;
}

int db_exec(hlab_db *db, const char *sql, const char *what, hlab_err *err) {
    char *msg = NULL;
    if (sqlite3_exec(db->conn, sql, NULL, NULL, &msg) != SQLITE_OK) {
        hlab_fail(err, HLAB_EDB, "db %s: %s: %s", db->path, what, msg ? msg : sqlite3_errmsg(db->conn));
        sqlite3_free(msg);
        return HLAB_EDB;
    }
    return HLAB_OK;
}

int db_begin(hlab_db *db, hlab_err *err) { return db_exec(db, "BEGIN IMMEDIATE", "begin transaction", err); }
int db_commit(hlab_db *db, hlab_err *err) { return db_exec(db, "COMMIT", "commit", err); }
void db_rollback(hlab_db *db) {
    if (!sqlite3_get_autocommit(db->conn)) sqlite3_exec(db->conn, "ROLLBACK", NULL, NULL, NULL);
}

void db_bind_text(sqlite3_stmt *st, int i, const char *s) {
    if (s) sqlite3_bind_text(st, i, s, -1, SQLITE_TRANSIENT);
    else sqlite3_bind_null(st, i);
}
void db_bind_double(sqlite3_stmt *st, int i, double v) {
    if (isfinite(v)) sqlite3_bind_double(st, i, v);
    else sqlite3_bind_null(st, i); /* NaN means missing; inf is not a measurement either */
}
void db_bind_int64(sqlite3_stmt *st, int i, int64_t v) {
    if (v >= 0) sqlite3_bind_int64(st, i, v);
    else sqlite3_bind_null(st, i);
}

char *db_col_text(sqlite3_stmt *st, int i) {
    const unsigned char *s = sqlite3_column_text(st, i);
    if (!s) return NULL;
    size_t n = strlen((const char *)s);
    char *out = malloc(n + 1);
    if (out) memcpy(out, s, n + 1);
    return out;
}
double db_col_double(sqlite3_stmt *st, int i) {
    int t = sqlite3_column_type(st, i);
    if (t == SQLITE_INTEGER || t == SQLITE_FLOAT) return sqlite3_column_double(st, i);
    return NAN;
}
int64_t db_col_int64(sqlite3_stmt *st, int i) {
    return sqlite3_column_type(st, i) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, i);
}
void db_col_copy(sqlite3_stmt *st, int i, char *dst, size_t cap) {
    const unsigned char *s = sqlite3_column_text(st, i);
    snprintf(dst, cap, "%s", s ? (const char *)s : "");
}

/* ---- statuses ------------------------------------------------------------------ */
static const char *const status_names[HLAB_DB_N_STATUS] = {"pending", "running", "done",
                                                           "diverged", "failed", "interrupted"};

const char *hlab_db_status_name(hlab_db_status s) {
    return (unsigned)s < HLAB_DB_N_STATUS ? status_names[s] : "unknown";
}

int hlab_db_status_parse(const char *name, hlab_db_status *out, hlab_err *err) {
    for (int i = 0; i < HLAB_DB_N_STATUS; i++)
        if (name && !strcmp(name, status_names[i])) {
            *out = (hlab_db_status)i;
            return HLAB_OK;
        }
    return hlab_fail(err, HLAB_EINVAL,
                     "unknown status '%s' (expected pending, running, done, diverged, failed or interrupted)",
                     name ? name : "(null)");
}

hlab_db_status db_col_status(sqlite3_stmt *st, int i) {
    hlab_db_status s = HLAB_DB_PENDING;
    hlab_db_status_parse((const char *)sqlite3_column_text(st, i), &s, NULL);
    return s;
}

/* ---- open / migrate -------------------------------------------------------------- */
static int read_user_version(hlab_db *db, int *version, hlab_err *err) {
    sqlite3_stmt *st;
    if (db_prepare(db, "PRAGMA user_version", &st, "read schema version", err)) return err->code;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) *version = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? HLAB_OK : db_fail(db, err, "read schema version");
}

int hlab_db_schema_version(hlab_db *db, int *version, hlab_err *err) { return read_user_version(db, version, err); }

int hlab_db_migrate(hlab_db *db, int target_version, hlab_err *err) {
    if (target_version < 0 || target_version > HLAB_DB_SCHEMA_VERSION)
        return hlab_fail(err, HLAB_EINVAL, "schema version %d is out of range (expected 0..%d)", target_version,
                         HLAB_DB_SCHEMA_VERSION);
    int version;
    if (read_user_version(db, &version, err)) return err->code;
    if (version > HLAB_DB_SCHEMA_VERSION)
        return hlab_fail(err, HLAB_EDB,
                         "db %s: schema version %d is newer than this hlab understands (%d); use a newer hlab",
                         db->path, version, HLAB_DB_SCHEMA_VERSION);
    for (int step = version; step < target_version; step++) {
        if (db_begin(db, err)) return err->code;
        /* Re-read under the write lock: another process may have migrated meanwhile. */
        int now;
        if (read_user_version(db, &now, err)) goto fail;
        if (now > step) {
            db_rollback(db);
            continue;
        }
        char what[64], bump[64];
        snprintf(what, sizeof what, "migration to schema version %d", step + 1);
        snprintf(bump, sizeof bump, "PRAGMA user_version = %d", step + 1);
        if (db_exec(db, migrations[step], what, err) || db_exec(db, bump, what, err) || db_commit(db, err)) goto fail;
        hlab_log(HLAB_LOG_DEBUG, "db %s: migrated to schema version %d", db->path, step + 1);
    }
    return HLAB_OK;
fail:
    db_rollback(db);
    return err->code;
}

/* The read-only half of hlab_db_open: the schema must already be current,
 * since upgrading it is a write (HLAB_DB_NO_MIGRATE: an older one is the
 * caller's business, as for writers). */
static int check_readonly_schema(hlab_db *db, int allow_older, hlab_err *err) {
    int version;
    if (read_user_version(db, &version, err)) return err->code;
    if (version > HLAB_DB_SCHEMA_VERSION)
        return hlab_fail(err, HLAB_EDB,
                         "db %s: schema version %d is newer than this hlab understands (%d); use a newer hlab",
                         db->path, version, HLAB_DB_SCHEMA_VERSION);
    if (version < HLAB_DB_SCHEMA_VERSION && !allow_older)
        return hlab_fail(err, HLAB_EDB,
                         "db %s: schema version %d is older than this hlab's (%d) and a read-only open cannot "
                         "upgrade it; run a writing command such as `hlab search STUDY.yaml --db %s` once (or "
                         "read a writable copy)",
                         db->path, version, HLAB_DB_SCHEMA_VERSION, db->path);
    return HLAB_OK;
}

/* Reopens db->path read-only as file:PATH?immutable=1 (the path
 * percent-encoded, as URIs want). */
static int open_immutable(hlab_db *db, hlab_err *err) {
    char uri[3 * sizeof db->path + 32];
    size_t n = (size_t)snprintf(uri, sizeof uri, "file:");
    for (const unsigned char *c = (const unsigned char *)db->path; *c; c++) {
        if ((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || strchr("/-._~", *c))
            uri[n++] = (char)*c;
        else n += (size_t)snprintf(uri + n, sizeof uri - n, "%%%02X", *c);
    }
    snprintf(uri + n, sizeof uri - n, "?immutable=1");
    if (sqlite3_open_v2(uri, &db->conn, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, NULL) != SQLITE_OK) {
        hlab_fail(err, db->conn ? HLAB_EDB : HLAB_ENOMEM, "cannot open results database '%s' read-only: %s", db->path,
                  db->conn ? sqlite3_errmsg(db->conn) : "out of memory");
        return err->code;
    }
    sqlite3_extended_result_codes(db->conn, 1);
    return HLAB_OK;
}

int hlab_db_open(const char *path, int flags, hlab_db **out, hlab_err *err) {
    *out = NULL;
    if (!path || !*path) return hlab_fail(err, HLAB_EINVAL, "results database path is empty");
    const int readonly = (flags & HLAB_DB_READONLY) != 0;
    if (readonly && (flags & HLAB_DB_CREATE))
        return hlab_fail(err, HLAB_EINVAL, "results database '%s': HLAB_DB_READONLY cannot be combined with "
                         "HLAB_DB_CREATE", path);
    if (!(flags & HLAB_DB_CREATE) && access(path, F_OK) != 0)
        return hlab_fail(err, HLAB_EIO, "results database '%s' does not exist (run hlab search first, or pass --db)",
                         path);
    hlab_db *db = calloc(1, sizeof *db);
    if (!db) return hlab_fail(err, HLAB_ENOMEM, "db: out of memory");
    snprintf(db->path, sizeof db->path, "%s", path);
    if (gethostname(db->host, sizeof db->host - 1) != 0) snprintf(db->host, sizeof db->host, "unknown");
    process_signature((int64_t)getpid(), db->process_start, sizeof db->process_start);
    int oflags = readonly ? SQLITE_OPEN_READONLY
                          : SQLITE_OPEN_READWRITE | ((flags & HLAB_DB_CREATE) ? SQLITE_OPEN_CREATE : 0);
    if (sqlite3_open_v2(path, &db->conn, oflags, NULL) != SQLITE_OK) {
        hlab_fail(err, db->conn ? HLAB_EDB : HLAB_ENOMEM, "cannot open results database '%s': %s", path,
                  db->conn ? sqlite3_errmsg(db->conn) : "out of memory");
        hlab_db_close(db);
        return err->code;
    }
    sqlite3_extended_result_codes(db->conn, 1);
    sqlite3_busy_timeout(db->conn, 10000);
    if (readonly) {
        /* Whatever journal mode the file has is kept (switching it is a write);
         * a WAL database is read beside its writer as usual. */
        const int allow_older = (flags & HLAB_DB_NO_MIGRATE) != 0;
        if (check_readonly_schema(db, allow_older, err)) {
            /* A WAL database whose -shm file is absent and cannot be created
             * (read-only folder or mount) cannot be read normally. No writer
             * has it open then (a writer keeps -shm in existence), so SQLite's
             * documented answer for this case, an immutable open, is safe. */
            int primary = sqlite3_extended_errcode(db->conn) & 0xff;
            if (primary != SQLITE_READONLY && primary != SQLITE_CANTOPEN) goto fail;
            sqlite3_close_v2(db->conn);
            db->conn = NULL;
            if (open_immutable(db, err) || check_readonly_schema(db, allow_older, err)) goto fail;
            hlab_log(HLAB_LOG_DEBUG, "db %s: read-only folder: opened immutable", path);
        }
        if (db_exec(db, "PRAGMA foreign_keys = ON", "configure connection", err)) goto fail;
        *out = db;
        return HLAB_OK;
    }
    /* journal_mode answers with the mode in force; anything but wal (e.g. a
     * file system without shared memory) is worth refusing loudly. */
    sqlite3_stmt *st = NULL;
    if (db_prepare(db, "PRAGMA journal_mode = WAL", &st, "set WAL mode (is it an SQLite database?)", err))
        goto fail;
    int rc = sqlite3_step(st);
    int wal = rc == SQLITE_ROW && sqlite3_column_text(st, 0) &&
              !strcmp((const char *)sqlite3_column_text(st, 0), "wal");
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW) {
        db_fail(db, err, "set WAL mode (is it an SQLite database?)");
        goto fail;
    }
    if (!wal) {
        hlab_fail(err, HLAB_EDB, "db %s: WAL journal mode is not available here (network file system?)", path);
        goto fail;
    }
    /* synchronous=NORMAL under WAL survives a killed process; only a power cut
     * can lose the last commits, never corrupt the file. */
    if (db_exec(db, "PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL", "configure connection", err)) goto fail;
    if (!(flags & HLAB_DB_NO_MIGRATE) && hlab_db_migrate(db, HLAB_DB_SCHEMA_VERSION, err)) goto fail;
    *out = db;
    return HLAB_OK;
fail:
    hlab_db_close(db);
    return err->code;
}

void hlab_db_close(hlab_db *db) {
    if (!db) return;
    if (db->conn) sqlite3_close_v2(db->conn);
    free(db);
}

sqlite3 *hlab_db_sqlite(hlab_db *db) { return db->conn; }
const char *hlab_db_path(const hlab_db *db) { return db->path; }

/* ---- studies --------------------------------------------------------------------- */
int hlab_db_upsert_study(hlab_db *db, const hlab_db_study_in *s, int64_t *study_id, hlab_err *err) {
    if (!s->name || !*s->name) return hlab_fail(err, HLAB_EINVAL, "study name is empty (expected the study's name:)");
    sqlite3_stmt *st;
    if (db_prepare(db,
                   "INSERT INTO studies(name, description, file, spec_json, objectives) VALUES(?1, ?2, ?3, ?4, ?5)"
                   " ON CONFLICT(name) DO UPDATE SET description = excluded.description, file = excluded.file,"
                   " spec_json = excluded.spec_json, objectives = excluded.objectives, updated_at = " DB_NOW
                   " RETURNING id",
                   &st, "upsert study", err))
        return err->code;
    sqlite3_bind_text(st, 1, s->name, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, s->description ? s->description : "", -1, SQLITE_TRANSIENT);
    db_bind_text(st, 3, s->file);
    sqlite3_bind_text(st, 4, s->spec_json ? s->spec_json : "{}", -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 5, s->objectives ? s->objectives : "", -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) *study_id = sqlite3_column_int64(st, 0);
    /* RETURNING commits its write only when the statement is run to completion. */
    if (rc == SQLITE_ROW) rc = sqlite3_step(st);
    if (rc != SQLITE_DONE) db_fail(db, err, "upsert study");
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? HLAB_OK : err->code;
}

/* ---- points -------------------------------------------------------------------- */
int hlab_db_add_points(hlab_db *db, int64_t study_id, const hlab_db_point_in *pts, int n, int64_t *ids,
                       int *is_new, int *n_new, hlab_err *err) {
    if (n_new) *n_new = 0;
    for (int i = 0; i < n; i++)
        if (!pts[i].hash || !*pts[i].hash)
            return hlab_fail(err, HLAB_EINVAL, "point %d of %d has an empty hash (expected its identity hash)", i,
                             n);
    sqlite3_stmt *ins = NULL, *find = NULL;
    if (db_prepare(db,
                   "INSERT INTO points(study_id, hash, label, axes_json, config_json, seed, params,"
                   " params_non_embedding, flops_per_token, train_flops, est_memory_bytes)"
                   " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
                   " ON CONFLICT(study_id, hash) DO NOTHING",
                   &ins, "insert point", err) ||
        db_prepare(db, "SELECT id FROM points WHERE study_id = ?1 AND hash = ?2", &find, "find point", err))
        goto fail;
    if (db_begin(db, err)) goto fail;
    for (int i = 0; i < n; i++) {
        const hlab_db_point_in *p = &pts[i];
        sqlite3_reset(ins);
        sqlite3_bind_int64(ins, 1, study_id);
        sqlite3_bind_text(ins, 2, p->hash, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(ins, 3, p->label ? p->label : "", -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(ins, 4, p->axes_json ? p->axes_json : "{}", -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(ins, 5, p->config_json ? p->config_json : "{}", -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(ins, 6, p->seed);
        db_bind_int64(ins, 7, p->params);
        db_bind_int64(ins, 8, p->params_non_embedding);
        db_bind_double(ins, 9, p->flops_per_token);
        db_bind_double(ins, 10, p->train_flops);
        db_bind_int64(ins, 11, p->est_memory_bytes);
        if (sqlite3_step(ins) != SQLITE_DONE) {
            db_fail(db, err, "insert point");
            hlab_err_prefix(err, "point '%s'", p->label ? p->label : p->hash);
            goto fail;
        }
        int inserted = sqlite3_changes(db->conn) == 1;
        if (inserted && n_new) (*n_new)++;
        if (is_new) is_new[i] = inserted;
        if (!ids) continue;
        if (inserted) {
            ids[i] = sqlite3_last_insert_rowid(db->conn);
            continue;
        }
        sqlite3_reset(find);
        sqlite3_bind_int64(find, 1, study_id);
        sqlite3_bind_text(find, 2, p->hash, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(find) != SQLITE_ROW) {
            db_fail(db, err, "find existing point");
            goto fail;
        }
        ids[i] = sqlite3_column_int64(find, 0);
    }
    sqlite3_finalize(ins);
    sqlite3_finalize(find);
    ins = find = NULL;
    if (db_commit(db, err)) goto fail;
    return HLAB_OK;
fail:
    sqlite3_finalize(ins);
    sqlite3_finalize(find);
    db_rollback(db);
    if (n_new) *n_new = 0;
    return err->code;
}

int hlab_db_set_point_status(hlab_db *db, int64_t point_id, hlab_db_status status, hlab_err *err) {
    sqlite3_stmt *st;
    if (db_prepare(db, "UPDATE points SET status = ?1 WHERE id = ?2", &st, "set point status", err))
        return err->code;
    sqlite3_bind_text(st, 1, hlab_db_status_name(status), -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, point_id);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) return db_fail(db, err, "set point status");
    if (sqlite3_changes(db->conn) != 1) return hlab_fail(err, HLAB_EINVAL, "no point with id %lld", (long long)point_id);
    return HLAB_OK;
}

/* ---- runs ----------------------------------------------------------------------- */
int hlab_db_start_run(hlab_db *db, int64_t point_id, const char *device, const char *checkpoint_path,
                      int64_t *run_id, hlab_err *err) {
    sqlite3_stmt *st = NULL;
    if (db_begin(db, err)) return err->code;
    if (db_prepare(db,
                   "INSERT INTO runs(point_id, status, device, host, pid, checkpoint_path, process_start)"
                   " VALUES(?1, 'running', ?2, ?3, ?4, ?5, ?6)",
                   &st, "insert run", err))
        goto fail;
    sqlite3_bind_int64(st, 1, point_id);
    db_bind_text(st, 2, device);
    sqlite3_bind_text(st, 3, db->host, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, (int64_t)getpid());
    db_bind_text(st, 5, checkpoint_path && *checkpoint_path ? checkpoint_path : NULL);
    db_bind_text(st, 6, db->process_start[0] ? db->process_start : NULL);
    if (sqlite3_step(st) != SQLITE_DONE) {
        /* The usual cause is a point id that does not exist (foreign key). */
        db_fail(db, err, "insert run");
        hlab_err_prefix(err, "start run of point %lld", (long long)point_id);
        goto fail;
    }
    *run_id = sqlite3_last_insert_rowid(db->conn);
    sqlite3_finalize(st);
    st = NULL;
    if (db_prepare(db, "UPDATE points SET status = 'running' WHERE id = ?1", &st, "set point running", err)) goto fail;
    sqlite3_bind_int64(st, 1, point_id);
    if (sqlite3_step(st) != SQLITE_DONE) {
        db_fail(db, err, "set point running");
        goto fail;
    }
    sqlite3_finalize(st);
    st = NULL;
    if (db_commit(db, err)) goto fail;
    return HLAB_OK;
fail:
    sqlite3_finalize(st);
    db_rollback(db);
    return err->code;
}

int hlab_db_set_run_checkpoint(hlab_db *db, int64_t run_id, const char *checkpoint_path, hlab_err *err) {
    sqlite3_stmt *st;
    if (db_prepare(db, "UPDATE runs SET checkpoint_path = ?1 WHERE id = ?2", &st, "set run checkpoint", err))
        return err->code;
    db_bind_text(st, 1, checkpoint_path && *checkpoint_path ? checkpoint_path : NULL);
    sqlite3_bind_int64(st, 2, run_id);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) return db_fail(db, err, "set run checkpoint");
    if (sqlite3_changes(db->conn) != 1) return hlab_fail(err, HLAB_EINVAL, "no run with id %lld", (long long)run_id);
    return HLAB_OK;
}

int hlab_db_append_metrics(hlab_db *db, int64_t run_id, const hlab_db_metric *m, int n, hlab_err *err) {
    if (n <= 0) return HLAB_OK;
    sqlite3_stmt *ins = NULL, *upd = NULL;
    if (db_prepare(db,
                   "INSERT INTO metrics(run_id, step, loss, lr, grad_norm, tokens_per_s, val_loss, peak_bytes,"
                   " elapsed_s) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
                   " ON CONFLICT(run_id, step) DO UPDATE SET"
                   " loss = coalesce(excluded.loss, loss), lr = coalesce(excluded.lr, lr),"
                   " grad_norm = coalesce(excluded.grad_norm, grad_norm),"
                   " tokens_per_s = coalesce(excluded.tokens_per_s, tokens_per_s),"
                   " val_loss = coalesce(excluded.val_loss, val_loss),"
                   " peak_bytes = coalesce(excluded.peak_bytes, peak_bytes),"
                   " elapsed_s = coalesce(excluded.elapsed_s, elapsed_s)",
                   &ins, "insert metrics", err) ||
        db_prepare(db, "UPDATE runs SET steps_done = max(steps_done, ?1) WHERE id = ?2", &upd, "update run steps",
                   err))
        goto fail;
    if (db_begin(db, err)) goto fail;
    int max_step = 0;
    for (int i = 0; i < n; i++) {
        sqlite3_reset(ins);
        sqlite3_bind_int64(ins, 1, run_id);
        sqlite3_bind_int(ins, 2, m[i].step);
        db_bind_double(ins, 3, m[i].loss);
        db_bind_double(ins, 4, m[i].lr);
        db_bind_double(ins, 5, m[i].grad_norm);
        db_bind_double(ins, 6, m[i].tokens_per_s);
        db_bind_double(ins, 7, m[i].val_loss);
        db_bind_int64(ins, 8, m[i].peak_bytes);
        db_bind_double(ins, 9, m[i].elapsed_s);
        if (sqlite3_step(ins) != SQLITE_DONE) {
            db_fail(db, err, "insert metrics");
            hlab_err_prefix(err, "run %lld step %d", (long long)run_id, m[i].step);
            goto fail;
        }
        if (m[i].step > max_step) max_step = m[i].step;
    }
    sqlite3_bind_int(upd, 1, max_step);
    sqlite3_bind_int64(upd, 2, run_id);
    if (sqlite3_step(upd) != SQLITE_DONE) {
        db_fail(db, err, "update run steps");
        goto fail;
    }
    sqlite3_finalize(ins);
    sqlite3_finalize(upd);
    ins = upd = NULL;
    if (db_commit(db, err)) goto fail;
    return HLAB_OK;
fail:
    sqlite3_finalize(ins);
    sqlite3_finalize(upd);
    db_rollback(db);
    return err->code;
}

/* Inside a transaction: the run's point, after checking it is still running. */
static int running_run_point(hlab_db *db, int64_t run_id, int64_t *point_id, hlab_err *err) {
    sqlite3_stmt *st;
    if (db_prepare(db, "SELECT point_id, status FROM runs WHERE id = ?1", &st, "find run", err)) return err->code;
    sqlite3_bind_int64(st, 1, run_id);
    int rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        if (rc == SQLITE_DONE) hlab_fail(err, HLAB_EINVAL, "no run with id %lld", (long long)run_id);
        else db_fail(db, err, "find run");
        sqlite3_finalize(st);
        return err->code;
    }
    *point_id = sqlite3_column_int64(st, 0);
    const char *status = (const char *)sqlite3_column_text(st, 1);
    int running = status && !strcmp(status, "running");
    if (!running)
        hlab_fail(err, HLAB_EINVAL, "run %lld already ended as '%s' (expected a running run)", (long long)run_id,
                  status ? status : "?");
    sqlite3_finalize(st);
    return running ? HLAB_OK : err->code;
}

static int exec_bound(hlab_db *db, const char *sql, const char *what, int64_t a, const char *text, hlab_err *err) {
    sqlite3_stmt *st;
    if (db_prepare(db, sql, &st, what, err)) return err->code;
    sqlite3_bind_int64(st, 1, a);
    if (text) sqlite3_bind_text(st, 2, text, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? HLAB_OK : db_fail(db, err, what);
}

int hlab_db_finish_run(hlab_db *db, int64_t run_id, hlab_db_status status, int steps_done, const char *error,
                       hlab_err *err) {
    if (status != HLAB_DB_DIVERGED && status != HLAB_DB_FAILED && status != HLAB_DB_INTERRUPTED)
        return hlab_fail(err, HLAB_EINVAL,
                         "cannot finish run %lld as '%s' (expected diverged, failed or interrupted; a done run "
                         "is recorded with hlab_db_record_result)",
                         (long long)run_id, hlab_db_status_name(status));
    int64_t point_id;
    sqlite3_stmt *st = NULL;
    if (db_begin(db, err)) return err->code;
    if (running_run_point(db, run_id, &point_id, err)) goto fail;
    if (db_prepare(db,
                   "UPDATE runs SET status = ?1, finished_at = " DB_NOW
                   ", steps_done = CASE WHEN ?2 >= 0 THEN ?2 ELSE steps_done END, error = ?3 WHERE id = ?4",
                   &st, "finish run", err))
        goto fail;
    sqlite3_bind_text(st, 1, hlab_db_status_name(status), -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, steps_done);
    db_bind_text(st, 3, error);
    sqlite3_bind_int64(st, 4, run_id);
    if (sqlite3_step(st) != SQLITE_DONE) {
        db_fail(db, err, "finish run");
        goto fail;
    }
    sqlite3_finalize(st);
    st = NULL;
    if (exec_bound(db, "UPDATE points SET status = ?2 WHERE id = ?1", "set point status", point_id,
                   hlab_db_status_name(status), err) ||
        db_commit(db, err))
        goto fail;
    return HLAB_OK;
fail:
    sqlite3_finalize(st);
    db_rollback(db);
    return err->code;
}

int hlab_db_record_result(hlab_db *db, int64_t run_id, const hlab_db_result_in *r, hlab_err *err) {
    int64_t point_id;
    sqlite3_stmt *st = NULL;
    if (db_begin(db, err)) return err->code;
    if (running_run_point(db, run_id, &point_id, err)) goto fail;
    if (db_prepare(db,
                   "INSERT INTO results(run_id, point_id, steps_done, val_loss, val_bpb, train_loss, tokens_per_s,"
                   " train_flops, peak_bytes, infer_bytes_per_token, eval_json, wall_s)"
                   " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                   &st, "insert result", err))
        goto fail;
    sqlite3_bind_int64(st, 1, run_id);
    sqlite3_bind_int64(st, 2, point_id);
    sqlite3_bind_int(st, 3, r->steps_done);
    db_bind_double(st, 4, r->val_loss);
    db_bind_double(st, 5, r->val_bpb);
    db_bind_double(st, 6, r->train_loss);
    db_bind_double(st, 7, r->tokens_per_s);
    db_bind_double(st, 8, r->train_flops);
    db_bind_int64(st, 9, r->peak_bytes);
    db_bind_double(st, 10, r->infer_bytes_per_token);
    sqlite3_bind_text(st, 11, r->eval_json && *r->eval_json ? r->eval_json : "{}", -1, SQLITE_TRANSIENT);
    db_bind_double(st, 12, r->wall_s);
    if (sqlite3_step(st) != SQLITE_DONE) {
        db_fail(db, err, "insert result");
        hlab_err_prefix(err, "run %lld", (long long)run_id);
        goto fail;
    }
    sqlite3_finalize(st);
    st = NULL;
    if (db_prepare(db,
                   "UPDATE runs SET status = 'done', finished_at = " DB_NOW
                   ", steps_done = max(steps_done, ?1), error = NULL WHERE id = ?2",
                   &st, "finish run", err))
        goto fail;
    sqlite3_bind_int(st, 1, r->steps_done);
    sqlite3_bind_int64(st, 2, run_id);
    if (sqlite3_step(st) != SQLITE_DONE) {
        db_fail(db, err, "finish run");
        goto fail;
    }
    sqlite3_finalize(st);
    st = NULL;
    if (exec_bound(db, "UPDATE points SET status = 'done' WHERE id = ?1", "set point done", point_id, NULL, err) ||
        db_commit(db, err))
        goto fail;
    return HLAB_OK;
fail:
    sqlite3_finalize(st);
    db_rollback(db);
    return err->code;
}

/* "BOOT_ID/START_TICKS" of a process on Linux: the boot id and the start time
 * (field 22 of /proc/PID/stat, clock ticks since boot) identify one process
 * even after its pid is reused. "" where /proc cannot tell. */
static void process_signature(int64_t pid, char *out, size_t cap) {
    out[0] = 0;
    char path[64], boot[64] = "", stat[1024];
    FILE *f = fopen("/proc/sys/kernel/random/boot_id", "r");
    if (!f) return;
    if (!fgets(boot, sizeof boot, f)) boot[0] = 0;
    fclose(f);
    boot[strcspn(boot, "\n")] = 0;
    snprintf(path, sizeof path, "/proc/%lld/stat", (long long)pid);
    f = fopen(path, "r");
    if (!f) return;
    size_t n = fread(stat, 1, sizeof stat - 1, f);
    fclose(f);
    stat[n] = 0;
    /* The command name (field 2) may hold spaces and parentheses: count from the last ')'. */
    char *p = strrchr(stat, ')');
    if (!p || !boot[0]) return;
    int field = 2;
    char *save = NULL;
    for (char *tok = strtok_r(p + 1, " ", &save); tok; tok = strtok_r(NULL, " ", &save))
        if (++field == 22) {
            snprintf(out, cap, "%s/%s", boot, tok);
            return;
        }
}

/* Whether the process that started a run still runs: the same pid with the same
 * start signature; without signatures, whether signal 0 reaches the pid
 * (EPERM: alive, someone else's). */
static int process_alive(int64_t pid, const char *signature) {
    if (pid <= 0) return 0;
    if (signature && *signature) {
        char now[96];
        process_signature(pid, now, sizeof now);
        return now[0] && strcmp(now, signature) == 0; /* no /proc entry now: no such process */
    }
    return kill((pid_t)pid, 0) == 0 || errno == EPERM;
}

int hlab_db_mark_interrupted(hlab_db *db, int64_t study_id, int *n_marked, hlab_err *err) {
    if (n_marked) *n_marked = 0;
    sqlite3_stmt *sel = NULL, *upd_run = NULL, *upd_point = NULL;
    int marked = 0;
    if (db_begin(db, err)) return err->code;
    if (db_prepare(db,
                   "SELECT r.id, r.point_id, r.host, r.pid, r.process_start FROM runs r"
                   " JOIN points p ON p.id = r.point_id"
                   " WHERE r.status = 'running' AND (?1 = 0 OR p.study_id = ?1) ORDER BY r.id",
                   &sel, "find running runs", err) ||
        db_prepare(db,
                   "UPDATE runs SET status = 'interrupted', finished_at = " DB_NOW
                   ", error = 'process ended without finishing the run' WHERE id = ?1",
                   &upd_run, "mark run interrupted", err) ||
        /* The point stays running while another of its runs is live. */
        db_prepare(db,
                   "UPDATE points SET status = 'interrupted' WHERE id = ?1 AND status = 'running'"
                   " AND NOT EXISTS (SELECT 1 FROM runs WHERE point_id = ?1 AND status = 'running')",
                   &upd_point, "mark point interrupted", err))
        goto fail;
    sqlite3_bind_int64(sel, 1, study_id);
    int rc;
    while ((rc = sqlite3_step(sel)) == SQLITE_ROW) {
        int64_t run_id = sqlite3_column_int64(sel, 0), point_id = sqlite3_column_int64(sel, 1);
        const char *host = (const char *)sqlite3_column_text(sel, 2);
        int64_t pid = db_col_int64(sel, 3);
        /* A run of another host cannot be checked from here: it is left alone. */
        if (host && strcmp(host, db->host) != 0) continue;
        if (process_alive(pid, (const char *)sqlite3_column_text(sel, 4))) continue;
        sqlite3_reset(upd_run);
        sqlite3_bind_int64(upd_run, 1, run_id);
        if (sqlite3_step(upd_run) != SQLITE_DONE) {
            db_fail(db, err, "mark run interrupted");
            goto fail;
        }
        sqlite3_reset(upd_point);
        sqlite3_bind_int64(upd_point, 1, point_id);
        if (sqlite3_step(upd_point) != SQLITE_DONE) {
            db_fail(db, err, "mark point interrupted");
            goto fail;
        }
        marked++;
    }
    if (rc != SQLITE_DONE) {
        db_fail(db, err, "find running runs");
        goto fail;
    }
    /* Points left 'running' without any running run (their run row was never
     * written) go back to the queue too. */
    sqlite3_finalize(upd_point);
    upd_point = NULL;
    if (db_prepare(db,
                   "UPDATE points SET status = 'interrupted' WHERE status = 'running' AND (?1 = 0 OR study_id = ?1)"
                   " AND NOT EXISTS (SELECT 1 FROM runs WHERE point_id = points.id AND status = 'running')",
                   &upd_point, "mark orphan points interrupted", err))
        goto fail;
    sqlite3_bind_int64(upd_point, 1, study_id);
    if (sqlite3_step(upd_point) != SQLITE_DONE) {
        db_fail(db, err, "mark orphan points interrupted");
        goto fail;
    }
    sqlite3_finalize(sel);
    sqlite3_finalize(upd_run);
    sqlite3_finalize(upd_point);
    sel = upd_run = upd_point = NULL;
    if (db_commit(db, err)) goto fail;
    if (n_marked) *n_marked = marked;
    if (marked) hlab_log(HLAB_LOG_INFO, "db %s: %d run(s) of ended processes marked interrupted", db->path, marked);
    return HLAB_OK;
fail:
    sqlite3_finalize(sel);
    sqlite3_finalize(upd_run);
    sqlite3_finalize(upd_point);
    db_rollback(db);
    return err->code;
}

int hlab_db_reset_study(hlab_db *db, int64_t study_id, hlab_err *err) {
    if (db_begin(db, err)) return err->code;
    /* Foreign keys cascade from points to runs, metrics and results. */
    if (exec_bound(db, "DELETE FROM points WHERE study_id = ?1", "reset study", study_id, NULL, err) ||
        exec_bound(db, "UPDATE studies SET updated_at = " DB_NOW " WHERE id = ?1", "reset study", study_id, NULL,
                   err) ||
        db_commit(db, err)) {
        db_rollback(db);
        return err->code;
    }
    return HLAB_OK;
}
