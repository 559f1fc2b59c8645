/* db/db_query.c — the reading side of results.db: studies, points, runs,
 * metric tables and loss curves for reports, list and show.
 *
 * Conventions: lists grow by doubling and are handed to the caller, who frees
 * them with the matching *_free (safe on a zeroed or half-filled list, so every
 * error path here simply frees what it built). Metric names that become SQL
 * text are checked against a fixed list first: nothing a user types is pasted
 * into SQL unchecked.
 */
#include "db/db_internal.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Grows *items (element size sz) to hold at least n+1; 0 on success. */
static int grow(void **items, int n, int *cap, size_t sz) {
    if (n < *cap) return 0;
    int ncap = *cap ? 2 * *cap : 16;
    void *p = realloc(*items, (size_t)ncap * sz);
    if (!p) return -1;
    memset((char *)p + (size_t)*cap * sz, 0, (size_t)(ncap - *cap) * sz);
    *items = p;
    *cap = ncap;
    return 0;
}

/* ---- studies --------------------------------------------------------------------- */
int hlab_db_find_study(hlab_db *db, const char *name, int64_t *study_id, hlab_err *err) {
    sqlite3_stmt *st;
    if (db_prepare(db, "SELECT id FROM studies WHERE name = ?1", &st, "find study", err)) return err->code;
    sqlite3_bind_text(st, 1, name ? name : "", -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) *study_id = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    if (rc == SQLITE_ROW) return HLAB_OK;
    if (rc != SQLITE_DONE) return db_fail(db, err, "find study");
    /* Name the studies there are, so the user can pick. */
    hlab_buf names;
    hlab_buf_init(&names);
    if (db_prepare(db, "SELECT name FROM studies ORDER BY id LIMIT 20", &st, "list studies", err) == HLAB_OK) {
        while (sqlite3_step(st) == SQLITE_ROW)
            hlab_buf_printf(&names, "%s%s", names.len ? ", " : "", (const char *)sqlite3_column_text(st, 0));
        sqlite3_finalize(st);
    }
    hlab_fail(err, HLAB_EINVAL, "no study '%s' in %s (studies: %s)", name ? name : "", db->path,
              names.len ? names.data : "none");
    hlab_buf_free(&names);
    return HLAB_EINVAL;
}

void hlab_db_study_list_free(hlab_db_study_list *l) {
    if (!l) return;
    for (int i = 0; i < l->n; i++) {
        hlab_db_study *s = &l->items[i];
        free(s->name);
        free(s->description);
        free(s->file);
        free(s->spec_json);
        free(s->objectives);
    }
    free(l->items);
    l->items = NULL;
    l->n = 0;
}

int hlab_db_list_studies(hlab_db *db, hlab_db_study_list *out, hlab_err *err) {
    memset(out, 0, sizeof *out);
    sqlite3_stmt *st = NULL, *counts = NULL;
    int cap = 0;
    if (db_prepare(db, "SELECT id, name, description, file, spec_json, objectives, created_at FROM studies ORDER BY id",
                   &st, "list studies", err) ||
        db_prepare(db, "SELECT status, count(*) FROM points WHERE study_id = ?1 GROUP BY status", &counts,
                   "count points", err))
        goto fail;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (grow((void **)&out->items, out->n, &cap, sizeof *out->items)) {
            hlab_fail(err, HLAB_ENOMEM, "db: out of memory listing studies");
            goto fail;
        }
        hlab_db_study *s = &out->items[out->n++];
        s->id = sqlite3_column_int64(st, 0);
        s->name = db_col_text(st, 1);
        s->description = db_col_text(st, 2);
        s->file = db_col_text(st, 3);
        s->spec_json = db_col_text(st, 4);
        s->objectives = db_col_text(st, 5);
        db_col_copy(st, 6, s->created_at, sizeof s->created_at);
        sqlite3_reset(counts);
        sqlite3_bind_int64(counts, 1, s->id);
        while (sqlite3_step(counts) == SQLITE_ROW) {
            hlab_db_status status = db_col_status(counts, 0);
            int c = sqlite3_column_int(counts, 1);
            s->n_by_status[status] += c;
            s->n_points += c;
        }
    }
    if (rc != SQLITE_DONE) {
        db_fail(db, err, "list studies");
        goto fail;
    }
    sqlite3_finalize(st);
    sqlite3_finalize(counts);
    return HLAB_OK;
fail:
    sqlite3_finalize(st);
    sqlite3_finalize(counts);
    hlab_db_study_list_free(out);
    return err->code;
}

/* ---- points ----------------------------------------------------------------------- */
#define POINT_COLUMNS                                                                                    \
    "SELECT p.id, p.study_id, p.hash, p.label, p.axes_json, p.config_json, p.seed, p.params,"            \
    " p.params_non_embedding, p.est_memory_bytes, p.flops_per_token, p.train_flops, p.status,"           \
    " (SELECT count(*) FROM runs WHERE point_id = p.id),"                                                \
    " (SELECT coalesce(max(steps_done), 0) FROM runs WHERE point_id = p.id),"                            \
    " (SELECT checkpoint_path FROM runs WHERE point_id = p.id AND checkpoint_path IS NOT NULL"           \
    "  ORDER BY id DESC LIMIT 1) FROM points p "

static void read_point(sqlite3_stmt *st, hlab_db_point *p) {
    p->id = sqlite3_column_int64(st, 0);
    p->study_id = sqlite3_column_int64(st, 1);
    p->hash = db_col_text(st, 2);
    p->label = db_col_text(st, 3);
    p->axes_json = db_col_text(st, 4);
    p->config_json = db_col_text(st, 5);
    p->seed = sqlite3_column_int64(st, 6);
    p->params = db_col_int64(st, 7);
    p->params_non_embedding = db_col_int64(st, 8);
    p->est_memory_bytes = db_col_int64(st, 9);
    p->flops_per_token = db_col_double(st, 10);
    p->train_flops = db_col_double(st, 11);
    p->status = db_col_status(st, 12);
    p->n_runs = sqlite3_column_int(st, 13);
    p->steps_done = sqlite3_column_int(st, 14);
    p->last_checkpoint = db_col_text(st, 15);
}

void hlab_db_point_free(hlab_db_point *p) {
    if (!p) return;
    free(p->hash);
    free(p->label);
    free(p->axes_json);
    free(p->config_json);
    free(p->last_checkpoint);
    memset(p, 0, sizeof *p);
}

void hlab_db_point_list_free(hlab_db_point_list *l) {
    if (!l) return;
    for (int i = 0; i < l->n; i++) hlab_db_point_free(&l->items[i]);
    free(l->items);
    l->items = NULL;
    l->n = 0;
}

int hlab_db_list_points(hlab_db *db, int64_t study_id, unsigned status_mask, hlab_db_point_list *out,
                        hlab_err *err) {
    memset(out, 0, sizeof *out);
    sqlite3_stmt *st;
    int cap = 0, rc;
    if (db_prepare(db, POINT_COLUMNS "WHERE p.study_id = ?1 ORDER BY p.id", &st, "list points", err))
        return err->code;
    sqlite3_bind_int64(st, 1, study_id);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (!(status_mask & HLAB_DB_MASK(db_col_status(st, 12)))) continue;
        if (grow((void **)&out->items, out->n, &cap, sizeof *out->items)) {
            hlab_fail(err, HLAB_ENOMEM, "db: out of memory listing points");
            goto fail;
        }
        read_point(st, &out->items[out->n++]);
    }
    if (rc != SQLITE_DONE) {
        db_fail(db, err, "list points");
        goto fail;
    }
    sqlite3_finalize(st);
    return HLAB_OK;
fail:
    sqlite3_finalize(st);
    hlab_db_point_list_free(out);
    return err->code;
}

int hlab_db_pending_points(hlab_db *db, int64_t study_id, hlab_db_point_list *out, hlab_err *err) {
    return hlab_db_list_points(db, study_id, HLAB_DB_MASK_TODO, out, err);
}

int hlab_db_get_point(hlab_db *db, int64_t point_id, hlab_db_point *out, hlab_err *err) {
    memset(out, 0, sizeof *out);
    sqlite3_stmt *st;
    if (db_prepare(db, POINT_COLUMNS "WHERE p.id = ?1", &st, "get point", err)) return err->code;
    sqlite3_bind_int64(st, 1, point_id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) read_point(st, out);
    sqlite3_finalize(st);
    if (rc == SQLITE_ROW) return HLAB_OK;
    if (rc == SQLITE_DONE) return hlab_fail(err, HLAB_EINVAL, "no point with id %lld in %s", (long long)point_id, db->path);
    return db_fail(db, err, "get point");
}

int hlab_db_find_point(hlab_db *db, const char *key, int64_t *point_id, hlab_err *err) {
    if (!key || !*key) return hlab_fail(err, HLAB_EINVAL, "empty point reference (expected an id or a hash prefix)");
    sqlite3_stmt *st;
    int rc, all_digits = 1;
    for (const char *c = key; *c; c++)
        if (!isdigit((unsigned char)*c)) all_digits = 0;
    /* An id wins over a hash prefix made of digits: ids are what list prints first. */
    if (all_digits && strlen(key) < 19) {
        if (db_prepare(db, "SELECT id FROM points WHERE id = ?1", &st, "find point", err)) return err->code;
        sqlite3_bind_int64(st, 1, strtoll(key, NULL, 10));
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) *point_id = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
        if (rc == SQLITE_ROW) return HLAB_OK;
        if (rc != SQLITE_DONE) return db_fail(db, err, "find point");
    }
    if (strlen(key) < 4)
        return hlab_fail(err, HLAB_EINVAL, "no point with id %s (a hash prefix needs at least 4 characters)", key);
    if (db_prepare(db,
                   "SELECT p.id, p.hash, s.name, p.label FROM points p JOIN studies s ON s.id = p.study_id"
                   " WHERE substr(p.hash, 1, length(?1)) = ?1 ORDER BY p.id LIMIT 6",
                   &st, "find point", err))
        return err->code;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_TRANSIENT);
    hlab_buf matches;
    hlab_buf_init(&matches);
    int n = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == 0) *point_id = sqlite3_column_int64(st, 0);
        hlab_buf_printf(&matches, "%s%lld %.12s (%s %s)", n ? ", " : "", (long long)sqlite3_column_int64(st, 0),
                        (const char *)sqlite3_column_text(st, 1), (const char *)sqlite3_column_text(st, 2),
                        (const char *)sqlite3_column_text(st, 3));
        n++;
    }
    sqlite3_finalize(st);
    int status = HLAB_OK;
    if (rc != SQLITE_DONE) status = db_fail(db, err, "find point");
    else if (n == 0) status = hlab_fail(err, HLAB_EINVAL, "no point with id or hash prefix '%s' in %s", key, db->path);
    else if (n > 1)
        status = hlab_fail(err, HLAB_EINVAL, "'%s' matches several points: %s%s (give more of the hash)", key,
                           matches.data, n > 5 ? ", ..." : "");
    hlab_buf_free(&matches);
    return status;
}

/* ---- runs ------------------------------------------------------------------------- */
void hlab_db_run_list_free(hlab_db_run_list *l) {
    if (!l) return;
    for (int i = 0; i < l->n; i++) {
        hlab_db_run *r = &l->items[i];
        free(r->device);
        free(r->error);
        free(r->checkpoint);
        free(r->host);
        free(r->eval_json);
    }
    free(l->items);
    l->items = NULL;
    l->n = 0;
}

int hlab_db_list_runs(hlab_db *db, int64_t point_id, hlab_db_run_list *out, hlab_err *err) {
    memset(out, 0, sizeof *out);
    sqlite3_stmt *st;
    int cap = 0, rc;
    if (db_prepare(db,
                   "SELECT r.id, r.point_id, r.status, r.device, r.error, r.checkpoint_path, r.host, r.pid,"
                   " r.started_at, r.finished_at, r.steps_done, x.id, x.steps_done, x.val_loss, x.val_bpb,"
                   " x.train_loss, x.tokens_per_s, x.train_flops, x.wall_s, x.infer_bytes_per_token, x.peak_bytes,"
                   " x.eval_json FROM runs r LEFT JOIN results x ON x.run_id = r.id"
                   " WHERE r.point_id = ?1 ORDER BY r.id",
                   &st, "list runs", err))
        return err->code;
    sqlite3_bind_int64(st, 1, point_id);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (grow((void **)&out->items, out->n, &cap, sizeof *out->items)) {
            hlab_fail(err, HLAB_ENOMEM, "db: out of memory listing runs");
            sqlite3_finalize(st);
            hlab_db_run_list_free(out);
            return err->code;
        }
        hlab_db_run *r = &out->items[out->n++];
        r->id = sqlite3_column_int64(st, 0);
        r->point_id = sqlite3_column_int64(st, 1);
        r->status = db_col_status(st, 2);
        r->device = db_col_text(st, 3);
        r->error = db_col_text(st, 4);
        r->checkpoint = db_col_text(st, 5);
        r->host = db_col_text(st, 6);
        r->pid = db_col_int64(st, 7);
        db_col_copy(st, 8, r->started_at, sizeof r->started_at);
        db_col_copy(st, 9, r->finished_at, sizeof r->finished_at);
        r->steps_done = sqlite3_column_int(st, 10);
        r->has_result = sqlite3_column_type(st, 11) != SQLITE_NULL;
        r->result_steps_done = sqlite3_column_int(st, 12);
        r->val_loss = db_col_double(st, 13);
        r->val_bpb = db_col_double(st, 14);
        r->train_loss = db_col_double(st, 15);
        r->tokens_per_s = db_col_double(st, 16);
        r->train_flops = db_col_double(st, 17);
        r->wall_s = db_col_double(st, 18);
        r->infer_bytes_per_token = db_col_double(st, 19);
        r->peak_bytes = db_col_int64(st, 20);
        r->eval_json = db_col_text(st, 21);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        hlab_db_run_list_free(out);
        return db_fail(db, err, "list runs");
    }
    return HLAB_OK;
}

/* ---- metric tables for reports -------------------------------------------------- */
static const char *const metric_columns[] = {
    "params", "params_non_embedding", "flops_per_token", "train_flops", "est_memory_bytes", "val_loss",
    "val_bpb", "train_loss", "tokens_per_s", "peak_bytes", "infer_bytes_per_token", "wall_s", "steps_done",
    "seed", NULL};

const char *const *hlab_db_metric_names(void) { return metric_columns; }

int hlab_db_metric_known(const char *name) {
    if (!name) return 0;
    for (int i = 0; metric_columns[i]; i++)
        if (!strcmp(name, metric_columns[i])) return 1;
    if (strncmp(name, "eval.", 5) != 0 || !name[5]) return 0;
    for (const char *c = name + 5; *c; c++)
        if (!isalnum((unsigned char)*c) && *c != '_' && *c != '.' && *c != '-') return 0;
    return 1;
}

void hlab_db_table_free(hlab_db_table *t) {
    if (!t) return;
    for (int i = 0; i < t->n_rows; i++) {
        if (t->label) free(t->label[i]);
        if (t->axes_json) free(t->axes_json[i]);
    }
    free(t->point_id);
    free(t->label);
    free(t->axes_json);
    free(t->seed);
    free(t->status);
    free(t->values);
    memset(t, 0, sizeof *t);
}

int hlab_db_query_metrics(hlab_db *db, int64_t study_id, const char *const *metrics, int n_metrics,
                          hlab_db_table *out, hlab_err *err) {
    memset(out, 0, sizeof *out);
    out->n_metrics = n_metrics;
    hlab_buf sql;
    hlab_buf_init(&sql);
    hlab_buf_puts(&sql, "SELECT point_id, label, axes_json, seed, status");
    for (int j = 0; j < n_metrics; j++) {
        if (!hlab_db_metric_known(metrics[j])) {
            hlab_buf names;
            hlab_buf_init(&names);
            for (int i = 0; metric_columns[i]; i++) hlab_buf_printf(&names, "%s%s", i ? ", " : "", metric_columns[i]);
            hlab_fail(err, HLAB_EINVAL, "unknown metric '%s' (expected one of %s, or eval.NAME)", metrics[j],
                      names.data ? names.data : "");
            hlab_buf_free(&names);
            hlab_buf_free(&sql);
            return HLAB_EINVAL;
        }
        /* Checked above: a column name, or eval. followed by [A-Za-z0-9_.-]. */
        if (!strncmp(metrics[j], "eval.", 5)) hlab_buf_printf(&sql, ", json_extract(eval_json, '$.%s')", metrics[j] + 5);
        else hlab_buf_printf(&sql, ", %s", metrics[j]);
    }
    hlab_buf_puts(&sql, " FROM point_results WHERE study_id = ?1 ORDER BY point_id");
    if (hlab_buf_status(&sql, err)) {
        hlab_buf_free(&sql);
        return err->code;
    }
    sqlite3_stmt *st;
    int rc = db_prepare(db, sql.data, &st, "query metrics", err);
    hlab_buf_free(&sql);
    if (rc) return err->code;
    sqlite3_bind_int64(st, 1, study_id);
    int cap = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (out->n_rows == cap) {
            int ncap = cap ? 2 * cap : 16;
            int64_t *pid = realloc(out->point_id, (size_t)ncap * sizeof *pid);
            if (pid) out->point_id = pid;
            char **lab = realloc(out->label, (size_t)ncap * sizeof *lab);
            if (lab) out->label = lab;
            char **ax = realloc(out->axes_json, (size_t)ncap * sizeof *ax);
            if (ax) out->axes_json = ax;
            int64_t *seed = realloc(out->seed, (size_t)ncap * sizeof *seed);
            if (seed) out->seed = seed;
            hlab_db_status *stat = realloc(out->status, (size_t)ncap * sizeof *stat);
            if (stat) out->status = stat;
            double *val = realloc(out->values, (size_t)ncap * (size_t)(n_metrics ? n_metrics : 1) * sizeof *val);
            if (val) out->values = val;
            if (!pid || !lab || !ax || !seed || !stat || !val) {
                hlab_fail(err, HLAB_ENOMEM, "db: out of memory reading metrics");
                goto fail;
            }
            cap = ncap;
        }
        int i = out->n_rows++;
        out->point_id[i] = sqlite3_column_int64(st, 0);
        out->label[i] = db_col_text(st, 1);
        out->axes_json[i] = db_col_text(st, 2);
        out->seed[i] = sqlite3_column_int64(st, 3);
        out->status[i] = db_col_status(st, 4);
        for (int j = 0; j < n_metrics; j++) out->values[(size_t)i * (size_t)n_metrics + (size_t)j] = db_col_double(st, 5 + j);
    }
    if (rc != SQLITE_DONE) {
        db_fail(db, err, "query metrics");
        goto fail;
    }
    sqlite3_finalize(st);
    return HLAB_OK;
fail:
    sqlite3_finalize(st);
    hlab_db_table_free(out);
    return err->code;
}

/* ---- loss curves ----------------------------------------------------------------- */
void hlab_db_curve_free(hlab_db_curve *c) {
    if (!c) return;
    free(c->step);
    free(c->loss);
    free(c->val_loss);
    free(c->lr);
    free(c->tokens_per_s);
    memset(c, 0, sizeof *c);
}

int hlab_db_loss_curve(hlab_db *db, int64_t point_id, hlab_db_curve *out, hlab_err *err) {
    memset(out, 0, sizeof *out);
    sqlite3_stmt *st;
    /* Ordered by step, then run: the newer run's row comes last and wins. */
    if (db_prepare(db,
                   "SELECT m.step, m.loss, m.val_loss, m.lr, m.tokens_per_s FROM metrics m"
                   " JOIN runs r ON r.id = m.run_id WHERE r.point_id = ?1 ORDER BY m.step, m.run_id",
                   &st, "loss curve", err))
        return err->code;
    sqlite3_bind_int64(st, 1, point_id);
    int cap = 0, rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int step = sqlite3_column_int(st, 0);
        double v[4] = {db_col_double(st, 1), db_col_double(st, 2), db_col_double(st, 3), db_col_double(st, 4)};
        int i = out->n;
        if (i > 0 && out->step[i - 1] == step) {
            i--; /* same step from a newer run: its values replace, missing ones keep the older */
        } else {
            if (out->n == cap) {
                int ncap = cap ? 2 * cap : 64;
                int *s = realloc(out->step, (size_t)ncap * sizeof *s);
                if (s) out->step = s;
                double **cols[4] = {&out->loss, &out->val_loss, &out->lr, &out->tokens_per_s};
                int ok = s != NULL;
                for (int k = 0; k < 4; k++) {
                    double *p = realloc(*cols[k], (size_t)ncap * sizeof *p);
                    if (p) *cols[k] = p;
                    else ok = 0;
                }
                if (!ok) {
                    sqlite3_finalize(st);
                    hlab_db_curve_free(out);
                    return hlab_fail(err, HLAB_ENOMEM, "db: out of memory reading a loss curve");
                }
                cap = ncap;
            }
            out->n++;
            out->step[i] = step;
            out->loss[i] = out->val_loss[i] = out->lr[i] = out->tokens_per_s[i] = NAN;
        }
        double *cols[4] = {out->loss, out->val_loss, out->lr, out->tokens_per_s};
        for (int k = 0; k < 4; k++)
            if (!isnan(v[k])) cols[k][i] = v[k];
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        hlab_db_curve_free(out);
        return db_fail(db, err, "loss curve");
    }
    return HLAB_OK;
}
