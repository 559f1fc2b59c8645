/* db/db.h — results.db: the one SQLite database of a lab (studies, design
 * points, runs, per-step metrics, results) and every statement that touches it.
 * docs/DATABASE.md documents each table and column, with example queries.
 *
 * Conventions:
 *  - Every function that can fail returns an int status (HLAB_OK == 0) and fills
 *    err (never NULL) with a one-line message; SQLite failures are HLAB_EDB and carry
 *    SQLite's own message ("db results.db: insert run: database is locked").
 *  - One hlab_db handle per thread (SQLite connections are not shared here);
 *    worker threads each open their own. WAL mode lets readers run beside the
 *    one writer; busy_timeout (10 s) makes concurrent writers wait, not fail.
 *  - Every group of writes that belongs together is one transaction, so a
 *    process killed at any instant (kill -9) leaves a database that opens and
 *    from which a re-run resumes: a run is 'done' iff its result row exists.
 *  - Strings passed in are copied; strings and lists handed out are owned by
 *    the caller and released with the matching *_free function.
 *  - Ids are SQLite rowids (int64, > 0). Times are text, ISO-8601 UTC
 *    ("2026-11-23T12:34:56.789Z"). Missing numbers are SQL NULL in the
 *    database and NaN (doubles) or -1 (integers) in these structs; a NaN
 *    (or inf) or a negative count passed in is stored as NULL.
 */
#ifndef HLAB_DB_H
#define HLAB_DB_H

#include <stdint.h>

#include "common/hlab.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Schema version stored in PRAGMA user_version; opening an older database
 * applies the missing migrations (each one transaction), a newer one is refused. */
#define HLAB_DB_SCHEMA_VERSION 3

typedef struct hlab_db hlab_db;
typedef struct sqlite3 sqlite3;

/* ---- statuses ---------------------------------------------------------------
 * Points: pending -> running -> done | diverged | failed | interrupted.
 * Runs (one per attempt at a point) use the same names except pending.
 * 'interrupted' is resumable: the scheduler trains it again from its checkpoint. */
typedef enum {
    HLAB_DB_PENDING = 0,
    HLAB_DB_RUNNING = 1,
    HLAB_DB_DONE = 2,
    HLAB_DB_DIVERGED = 3,
    HLAB_DB_FAILED = 4,
    HLAB_DB_INTERRUPTED = 5
} hlab_db_status;
#define HLAB_DB_N_STATUS 6
#define HLAB_DB_MASK(status) (1u << (status))
/* The points a scheduler still has to train: pending, interrupted (and running
 * ones left over, once hlab_db_mark_interrupted has looked at them). */
#define HLAB_DB_MASK_TODO (HLAB_DB_MASK(HLAB_DB_PENDING) | HLAB_DB_MASK(HLAB_DB_INTERRUPTED))
#define HLAB_DB_MASK_ALL ((1u << HLAB_DB_N_STATUS) - 1u)

const char *hlab_db_status_name(hlab_db_status s); /* "pending", "running", ... */
/* Parses a status name; HLAB_EINVAL naming the six valid names otherwise. */
int hlab_db_status_parse(const char *name, hlab_db_status *out, hlab_err *err);

/* ---- open / close -------------------------------------------------------- */
enum {
    HLAB_DB_CREATE = 1,    /* create the file when missing (writers: hlab search) */
    HLAB_DB_NO_MIGRATE = 2, /* leave the schema as found (tests; see hlab_db_migrate) */
    HLAB_DB_READONLY = 4    /* read commands (list, show, report): SQLITE_OPEN_READONLY, so a
                               read-only file or mount works; writes through the handle fail
                               with HLAB_EDB "attempt to write a readonly database" */
};
/* Opens path (WAL, foreign keys on, busy_timeout 10 s) and brings the schema up
 * to HLAB_DB_SCHEMA_VERSION. Without HLAB_DB_CREATE a missing file is HLAB_EIO
 * "results database 'x.db' does not exist" and nothing is created (read
 * commands). With HLAB_DB_READONLY (never with HLAB_DB_CREATE: HLAB_EINVAL)
 * nothing is written: the journal mode stays as found and no migration runs,
 * so a schema older than HLAB_DB_SCHEMA_VERSION is HLAB_EDB telling the user
 * to run a writing command (hlab search) on it once. On failure *out is NULL. */
int hlab_db_open(const char *path, int flags, hlab_db **out, hlab_err *err);
void hlab_db_close(hlab_db *db); /* NULL is fine */
/* Applies migrations up to target_version (<= HLAB_DB_SCHEMA_VERSION), each in
 * its own transaction together with the user_version bump. */
int hlab_db_migrate(hlab_db *db, int target_version, hlab_err *err);
int hlab_db_schema_version(hlab_db *db, int *version, hlab_err *err);
/* The underlying connection, for tests and ad-hoc read-only queries. */
sqlite3 *hlab_db_sqlite(hlab_db *db);
const char *hlab_db_path(const hlab_db *db);

/* ---- studies ----------------------------------------------------------------- */
typedef struct {
    const char *name;        /* unique; the study file's `name:` */
    const char *description; /* may be NULL */
    const char *file;        /* path of the study YAML as given; may be NULL */
    const char *spec_json;   /* the whole validated study as JSON; NULL = "{}" */
    const char *objectives;  /* "val_loss:min,train_flops:min,tokens_per_s:max"; NULL = "" */
} hlab_db_study_in;

/* Inserts the study, or updates description/file/spec/objectives of the study
 * with that name (keeping its id, created_at and points). */
int hlab_db_upsert_study(hlab_db *db, const hlab_db_study_in *s, int64_t *study_id, hlab_err *err);
/* HLAB_EINVAL "no study 'x' in results.db (studies: a, b)" when absent. */
int hlab_db_find_study(hlab_db *db, const char *name, int64_t *study_id, hlab_err *err);

typedef struct {
    int64_t id;
    char *name, *description, *file, *spec_json, *objectives;
    char created_at[32];
    int n_points;
    int n_by_status[HLAB_DB_N_STATUS]; /* points per hlab_db_status */
} hlab_db_study;
typedef struct { hlab_db_study *items; int n; } hlab_db_study_list;
/* Every study, oldest first, with point counts. */
int hlab_db_list_studies(hlab_db *db, hlab_db_study_list *out, hlab_err *err);
void hlab_db_study_list_free(hlab_db_study_list *l);

/* ---- points ------------------------------------------------------------------
 * A point is one design at one seed; its hash (computed by search/ from the
 * resolved config and seed) is its identity within the study. Points of one
 * study with the same label are the seeds of one design: reports aggregate them. */
typedef struct {
    const char *hash;        /* stable identity, unique per study (hex text) */
    const char *label;       /* distinguishing axes, seed excluded: "ratio=1:5 placement=front" */
    const char *axes_json;   /* {"model.ratio": "1:5", ...}: the axis values of this point */
    const char *config_json; /* the full resolved point (model, train, data sections) */
    int64_t seed;
    int64_t params, params_non_embedding;
    double flops_per_token;  /* training FLOPs per token (3 x forward) */
    double train_flops;      /* flops_per_token x tokens of the planned run */
    int64_t est_memory_bytes;
} hlab_db_point_in;

/* Adds n points to the study in one transaction; a hash already present is left
 * untouched (INSERT OR IGNORE), so a re-run after editing a study adds only the
 * new points. ids (n entries, may be NULL) receives each point's id, new or
 * existing; is_new (n entries, may be NULL) 1 where inserted; *n_new (may be
 * NULL) the number inserted. */
int hlab_db_add_points(hlab_db *db, int64_t study_id, const hlab_db_point_in *pts, int n, int64_t *ids,
                       int *is_new, int *n_new, hlab_err *err);

typedef struct {
    int64_t id, study_id;
    char *hash, *label, *axes_json, *config_json;
    int64_t seed, params, params_non_embedding, est_memory_bytes;
    double flops_per_token, train_flops;
    hlab_db_status status;
    int n_runs;
    int steps_done;          /* most steps reached by any run of the point, 0 if none */
    char *last_checkpoint;   /* checkpoint path of the newest run that has one, else NULL */
} hlab_db_point;
typedef struct { hlab_db_point *items; int n; } hlab_db_point_list;

/* Points of a study whose status is in status_mask (HLAB_DB_MASK(...) bits),
 * in insertion order (id). */
int hlab_db_list_points(hlab_db *db, int64_t study_id, unsigned status_mask, hlab_db_point_list *out,
                        hlab_err *err);
/* The scheduler's queue: hlab_db_list_points(..., HLAB_DB_MASK_TODO, ...). */
int hlab_db_pending_points(hlab_db *db, int64_t study_id, hlab_db_point_list *out, hlab_err *err);
/* One point by id. HLAB_EINVAL when there is none. out is freed with hlab_db_point_free. */
int hlab_db_get_point(hlab_db *db, int64_t point_id, hlab_db_point *out, hlab_err *err);
/* Resolves what a user typed: a decimal id, or a prefix (>= 4 chars) of a hash.
 * HLAB_EINVAL when nothing or more than one point matches (names them). */
int hlab_db_find_point(hlab_db *db, const char *id_or_hash_prefix, int64_t *point_id, hlab_err *err);
void hlab_db_point_free(hlab_db_point *p);
void hlab_db_point_list_free(hlab_db_point_list *l);
/* Sets a point's status directly (e.g. a point the scheduler skips). Prefer the
 * run functions below, which keep run and point status in step. */
int hlab_db_set_point_status(hlab_db *db, int64_t point_id, hlab_db_status status, hlab_err *err);

/* ---- runs: one per attempt at a point ------------------------------------------ */
/* Records a new attempt (status running, started_at now, this process's pid and
 * host) and sets the point running, in one transaction. device: "cpu", "cuda:0".
 * checkpoint_path may be NULL (set later with hlab_db_set_run_checkpoint). */
int hlab_db_start_run(hlab_db *db, int64_t point_id, const char *device, const char *checkpoint_path,
                      int64_t *run_id, hlab_err *err);
int hlab_db_set_run_checkpoint(hlab_db *db, int64_t run_id, const char *checkpoint_path, hlab_err *err);

typedef struct {
    int step;
    double loss, lr, grad_norm, tokens_per_s;
    double val_loss;      /* NaN on steps without evaluation */
    int64_t peak_bytes;   /* -1 when unknown */
    double elapsed_s;
} hlab_db_metric;
/* Appends metrics of a run in one transaction and raises runs.steps_done to the
 * largest step seen. A (run, step) already present is overwritten, so a step
 * logged twice (train loss, then val loss) keeps the non-missing values of both. */
int hlab_db_append_metrics(hlab_db *db, int64_t run_id, const hlab_db_metric *m, int n, hlab_err *err);

/* Ends a run that has no result: status is HLAB_DB_DIVERGED, HLAB_DB_FAILED or
 * HLAB_DB_INTERRUPTED (HLAB_DB_DONE is refused: use hlab_db_record_result).
 * Sets finished_at, steps_done (when >= 0), error (may be NULL) and the point's
 * status, in one transaction. A run that already ended is HLAB_EINVAL. */
int hlab_db_finish_run(hlab_db *db, int64_t run_id, hlab_db_status status, int steps_done, const char *error,
                       hlab_err *err);

typedef struct {
    int steps_done;
    double val_loss, val_bpb, train_loss; /* nats per token; bpb = bits per byte (NaN if not byte data) */
    double tokens_per_s, train_flops, wall_s;
    int64_t peak_bytes;
    double infer_bytes_per_token;         /* KV cache + SSM state per token at seq_len */
    const char *eval_json;                /* eval suite scores {"name": value}; NULL = "{}" */
} hlab_db_result_in;
/* Finishes a running run successfully: the result row, the run's status 'done'
 * and finished_at, and the point's status 'done' are written in ONE transaction,
 * so a kill -9 never leaves a finished run without its result. A run that is not
 * 'running' (already finished, or has a result) is HLAB_EINVAL and nothing is
 * written: a result exists at most once per run. */
int hlab_db_record_result(hlab_db *db, int64_t run_id, const hlab_db_result_in *r, hlab_err *err);

/* At startup: every run still 'running' whose process is gone (same host, and
 * no process with that pid and the same start signature (boot id + start time,
 * so a recycled pid, e.g. in a restarted container, does not count as alive);
 * or pid unknown) becomes 'interrupted' with error "process ended without
 * finishing the run", and its point 'interrupted' unless another run of it is
 * live. Runs of live processes (another hlab search on the same db) are
 * left alone. study_id 0 = all studies. *n_marked (may be NULL) counts them. */
int hlab_db_mark_interrupted(hlab_db *db, int64_t study_id, int *n_marked, hlab_err *err);

/* hlab search --restart: deletes the study's points with their runs, metrics and
 * results (one transaction); the study row stays. Checkpoint files are not
 * touched (the caller owns them). */
int hlab_db_reset_study(hlab_db *db, int64_t study_id, hlab_err *err);

typedef struct {
    int64_t id, point_id;
    hlab_db_status status;
    char *device, *error, *checkpoint, *host; /* NULL when unset */
    int64_t pid;
    char started_at[32], finished_at[32];     /* "" when unset */
    int steps_done;
    int has_result;                           /* the fields below are valid iff 1 */
    int result_steps_done;
    double val_loss, val_bpb, train_loss, tokens_per_s, train_flops, wall_s, infer_bytes_per_token;
    int64_t peak_bytes;
    char *eval_json;
} hlab_db_run;
typedef struct { hlab_db_run *items; int n; } hlab_db_run_list;
/* Every run of a point, oldest first, each with its result when it has one. */
int hlab_db_list_runs(hlab_db *db, int64_t point_id, hlab_db_run_list *out, hlab_err *err);
void hlab_db_run_list_free(hlab_db_run_list *l);

/* ---- queries for reports ------------------------------------------------------- */
/* Metric names that reports can ask for: columns of the point_results view
 *   params params_non_embedding flops_per_token train_flops est_memory_bytes
 *   val_loss val_bpb train_loss tokens_per_s peak_bytes infer_bytes_per_token
 *   wall_s steps_done seed
 * and "eval.NAME" (json_extract of results.eval_json, NAME of [A-Za-z0-9_.-]).
 * Returns 1 when name is one of them. */
int hlab_db_metric_known(const char *name);
/* NULL-terminated list of the column metric names above. */
const char *const *hlab_db_metric_names(void);

/* One row per point of a study (insertion order): the point and, for each
 * requested metric, its value from the point's newest result (or, for point
 * columns such as params, the point itself). NaN where missing (no result:
 * pending, diverged, failed...). values is n_rows x n_metrics, row-major. */
typedef struct {
    int n_rows, n_metrics;
    int64_t *point_id;
    char **label;     /* design label (seeds share it) */
    char **axes_json;
    int64_t *seed;
    hlab_db_status *status;
    double *values;
} hlab_db_table;
int hlab_db_query_metrics(hlab_db *db, int64_t study_id, const char *const *metrics, int n_metrics,
                          hlab_db_table *out, hlab_err *err);
void hlab_db_table_free(hlab_db_table *t);

/* The loss curve of a point across all its runs (a resumed attempt continues
 * the curve; where two runs logged the same step, the newer run wins), by step.
 * loss / val_loss are NaN where a step has none. */
typedef struct {
    int n;
    int *step;
    double *loss, *val_loss, *lr, *tokens_per_s;
} hlab_db_curve;
int hlab_db_loss_curve(hlab_db *db, int64_t point_id, hlab_db_curve *out, hlab_err *err);
void hlab_db_curve_free(hlab_db_curve *c);

#ifdef __cplusplus
}
#endif

#endif
