/* search/scheduler.c — trains a study's points into results.db, resumably,
 * with one or more workers (threads, one backend and one db connection each).
 * Conventions: results.db is the only state. A point is finished iff its
 * status is done/diverged/failed (a result row is written in the same
 * transaction as 'done'); everything else is trained again, from its
 * checkpoint RUNS/STUDY/HASH.safetensors when one exists, so a kill -9 at any
 * moment loses at most the steps since the last checkpoint and never trains a
 * finished point twice (unless asked: retry_failed / retry_diverged put those
 * points back to pending without their checkpoint). Successive halving is
 * recomputed from the results of earlier rungs on every run, so it resumes
 * the same way.
 * Threads share one `sched` under its mutex: the task queue, the counters, the
 * ETA and the user's callback (called with the mutex held, so it needs no
 * locking of its own).
 */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "db/db.h"
#include "search/search.h"

typedef struct {
    int point;        /* index into ps->items */
    int stop_at;      /* 0 = the point's whole schedule */
    int steps_done;   /* where its checkpoint should be */
} task;

typedef struct {
    const hlab_study *s;
    const hlab_point_set *ps;
    const hlab_search_options *o;
    char runs_dir[1100];
    int64_t *ids;              /* db id of ps->items[i] */
    pthread_mutex_t mu;
    /* guarded by mu */
    task *tasks;
    int n_tasks, next_task;
    int points_done, points_total;
    double work_total, work_done, t_start; /* work in training FLOPs, so big and small points weigh right */
    int stop;                  /* the callback asked to stop, or a worker hit a fatal error */
    int fatal_rc;
    hlab_err fatal_err;
    hlab_search_summary *sum;
} sched;

typedef struct {
    sched *S;
    int id;
    char device[64];
    hlab_db *db;
    hk_backend *hk;
    const hlab_design_point *cur;
    int64_t run_id;
    int cur_start_step;
    double work_base;          /* S->work_done contributed by this worker before the current point */
    double work_cur;           /* ... and by the current point so far */
    int db_failed;
    hlab_err db_err;
} worker;

static double flops_per_step(const hlab_design_point *d) {
    const hlab_train_config *t = &d->point.train;
    return d->counts.train_flops_per_token * (double)t->batch * t->seq_len * t->grad_accum;
}

/* Called with S->mu held. */
static int emit_locked(sched *S, hlab_search_event *ev) {
    ev->points_done = S->points_done;
    ev->points_total = S->points_total;
    double elapsed = hlab_now_s() - S->t_start, left = S->work_total - S->work_done;
    ev->study_eta_s = S->work_done > 0 && elapsed > 0 ? (left > 0 ? left * elapsed / S->work_done : 0) : NAN;
    int stop = S->o->cb ? S->o->cb(S->o->user, ev) : 0;
    if (stop) S->stop = 1;
    return S->stop;
}

static int emit(sched *S, hlab_search_event *ev) {
    pthread_mutex_lock(&S->mu);
    int stop = emit_locked(S, ev);
    pthread_mutex_unlock(&S->mu);
    return stop;
}

static int on_train_event(void *user, const hlab_train_event *te) {
    worker *W = user;
    sched *S = W->S;
    hlab_db_metric m = {.step = te->step, .loss = te->loss, .lr = te->lr, .grad_norm = te->grad_norm,
                        .tokens_per_s = te->tokens_per_s, .val_loss = te->val_loss, .peak_bytes = te->peak_bytes,
                        .elapsed_s = te->elapsed_s};
    if (hlab_db_append_metrics(W->db, W->run_id, &m, 1, &W->db_err)) {
        W->db_failed = 1;
        return 1;
    }
    pthread_mutex_lock(&S->mu);
    double w = flops_per_step(W->cur) * (te->step - W->cur_start_step);
    S->work_done += w - W->work_cur;
    W->work_cur = w;
    hlab_search_event ev = {.kind = HLAB_SEARCH_STEP, .point = W->cur, .train = te};
    int stop = emit_locked(S, &ev);
    pthread_mutex_unlock(&S->mu);
    return stop;
}

/* Polled every training step: a stop asked through any worker's event, or by
 * the caller's should_stop, stops every worker within one step. */
static int stop_poll(void *user) {
    worker *W = user;
    sched *S = W->S;
    pthread_mutex_lock(&S->mu);
    if (!S->stop && S->o->should_stop && S->o->should_stop(S->o->user)) S->stop = 1;
    int stop = S->stop;
    pthread_mutex_unlock(&S->mu);
    return stop;
}

static int make_dir(const char *path, hlab_err *err) {
    if (mkdir(path, 0777) == 0 || errno == EEXIST) return HLAB_OK;
    return hlab_fail(err, HLAB_EIO, "%s: cannot create the folder: %s", path, strerror(errno));
}

/* Trains one task. Returns HLAB_OK when the point ended (done, diverged or
 * failed: the study goes on), HLAB_EINTERRUPTED when stopped, or a db error. */
static int train_point(worker *W, const task *t, hlab_err *err) {
    sched *S = W->S;
    const hlab_design_point *d = &S->ps->items[t->point];
    char ckpt[2400];
    snprintf(ckpt, sizeof ckpt, "%s/%s/%s.safetensors", S->runs_dir, S->s->name, d->hash);
    int rc = hlab_db_start_run(W->db, S->ids[t->point], W->hk->name, ckpt, &W->run_id, err);
    if (rc) return rc;
    W->cur = d;
    W->cur_start_step = t->steps_done;
    W->work_cur = 0;
    W->db_failed = 0;
    hlab_search_event ev = {.kind = HLAB_SEARCH_POINT_START, .point = d};
    if (emit(S, &ev)) {
        hlab_db_finish_run(W->db, W->run_id, HLAB_DB_INTERRUPTED, -1, "stopped before training", err);
        return hlab_fail(err, HLAB_EINTERRUPTED, "stopped");
    }
    hlab_train_config tc = d->point.train;
    tc.stop_at = t->stop_at;
    hlab_train_result res;
    hlab_err terr = {0};
    int trc = hlab_train_run_polled(&d->point.model, &tc, &d->point.data, W->hk, ckpt, on_train_event, stop_poll, W,
                                    &res, &terr);
    if (W->db_failed) {
        hlab_db_finish_run(W->db, W->run_id, HLAB_DB_INTERRUPTED, res.steps_done, W->db_err.msg, err);
        *err = W->db_err;
        return err->code;
    }
    hlab_db_status status;
    if (trc == HLAB_OK) {
        hlab_db_result_in r = {.steps_done = res.steps_done, .val_loss = res.val_loss, .val_bpb = res.val_bpb,
                               .train_loss = res.train_loss, .tokens_per_s = res.tokens_per_s,
                               .train_flops = res.train_flops, .wall_s = res.wall_s, .peak_bytes = res.peak_bytes,
                               .infer_bytes_per_token = d->counts.infer_bytes_per_token, .eval_json = NULL};
        if ((rc = hlab_db_record_result(W->db, W->run_id, &r, err))) return rc;
        status = HLAB_DB_DONE;
    } else if (trc == HLAB_EINTERRUPTED) {
        if ((rc = hlab_db_finish_run(W->db, W->run_id, HLAB_DB_INTERRUPTED, res.steps_done, terr.msg, err))) return rc;
        *err = terr;
        return HLAB_EINTERRUPTED;
    } else {
        status = trc == HLAB_EDIVERGED ? HLAB_DB_DIVERGED : HLAB_DB_FAILED;
        /* Errors about the checkpoint start with its path (truncated, not a
         * checkpoint, of another run, cannot be written): only a fresh start helps. */
        if (!strncmp(terr.msg, ckpt, strlen(ckpt))) {
            char why[sizeof terr.msg];
            snprintf(why, sizeof why, "%s", terr.msg);
            /* the cause is clipped, never the advice */
            hlab_fail(&terr, trc,
                      "%.500s; to train this point again from scratch run `hlab search %.200s --db %.200s "
                      "--retry-failed`",
                      why, S->s->path[0] ? S->s->path : "STUDY.yaml", S->o->db_path);
        }
        hlab_log(HLAB_LOG_WARN, "point %d (%s, seed %lld) %s: %s", d->index, d->label, (long long)d->seed,
                 hlab_db_status_name(status), terr.msg);
        if ((rc = hlab_db_finish_run(W->db, W->run_id, status, res.steps_done, terr.msg, err))) return rc;
    }
    pthread_mutex_lock(&S->mu);
    /* the point's share of the work is spent, however it ended */
    const int end = t->stop_at ? t->stop_at : tc.steps;
    S->work_done += flops_per_step(d) * (end - t->steps_done) - W->work_cur;
    S->sum->trained++;
    S->points_done++;
    ev = (hlab_search_event){.kind = HLAB_SEARCH_POINT_END, .point = d, .status = (int)status,
                             .message = trc == HLAB_OK ? "" : terr.msg};
    int stop = emit_locked(S, &ev);
    pthread_mutex_unlock(&S->mu);
    if (stop) return hlab_fail(err, HLAB_EINTERRUPTED, "stopped after point %d", d->index);
    return HLAB_OK;
}

/* A worker: takes tasks from the queue until it is empty or the study stops. */
static void *worker_main(void *arg) {
    worker *W = arg;
    sched *S = W->S;
    for (;;) {
        pthread_mutex_lock(&S->mu);
        int k = S->stop || S->next_task >= S->n_tasks ? -1 : S->next_task++;
        pthread_mutex_unlock(&S->mu);
        if (k < 0) break;
        hlab_err err = {0};
        int rc = train_point(W, &S->tasks[k], &err);
        if (rc) {
            pthread_mutex_lock(&S->mu);
            S->stop = 1;
            /* the first real error wins over the interruptions it causes in other workers */
            if (!S->fatal_rc || (S->fatal_rc == HLAB_EINTERRUPTED && rc != HLAB_EINTERRUPTED)) {
                S->fatal_rc = rc;
                S->fatal_err = err;
            }
            pthread_mutex_unlock(&S->mu);
            break;
        }
    }
    return NULL;
}

/* Runs S->tasks on the workers; returns the first error (or EINTERRUPTED). */
static int run_tasks(sched *S, worker *W, int n_workers, hlab_err *err) {
    S->next_task = 0;
    S->fatal_rc = HLAB_OK;
    if (n_workers == 1 || S->n_tasks <= 1) {
        worker_main(&W[0]);
    } else {
        pthread_t th[64];
        int started = 0;
        for (int i = 0; i < n_workers && i < 64; i++, started++)
            if (pthread_create(&th[i], NULL, worker_main, &W[i])) break;
        if (started == 0) worker_main(&W[0]);
        for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
    }
    if (S->fatal_rc) *err = S->fatal_err;
    return S->fatal_rc;
}

/* Removes the .safetensors files of RUNS/STUDY (for --restart). */
static void remove_checkpoints(const sched *S) {
    char dir[1400];
    snprintf(dir, sizeof dir, "%s/%s", S->runs_dir, S->s->name);
    DIR *dh = opendir(dir);
    if (!dh) return;
    struct dirent *e;
    while ((e = readdir(dh))) {
        size_t n = strlen(e->d_name);
        if (n > 12 && !strcmp(e->d_name + n - 12, ".safetensors")) {
            char path[1700];
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            unlink(path);
        }
    }
    closedir(dh);
}

static int is_finished(hlab_db_status st) {
    return st == HLAB_DB_DONE || st == HLAB_DB_DIVERGED || st == HLAB_DB_FAILED;
}

/* Where a task of point i starts: the db's steps_done when its checkpoint is
 * there to resume from, else 0 (training starts over, e.g. after --retry-failed). */
static int resume_step(const sched *S, int i, int steps_done) {
    char ckpt[2400];
    snprintf(ckpt, sizeof ckpt, "%s/%s/%s.safetensors", S->runs_dir, S->s->name, S->ps->items[i].hash);
    return access(ckpt, F_OK) == 0 ? steps_done : 0;
}

/* --retry-failed / --retry-diverged: the study's points whose status is in
 * mask go back to pending, their checkpoint removed first (it may be the
 * cause, e.g. truncated), so they train again from step 0. Their runs stay. */
static int retry_points(sched *S, hlab_db *db, int64_t study_id, unsigned mask, hlab_err *err) {
    hlab_db_point_list pl = {0};
    int rc = hlab_db_list_points(db, study_id, mask, &pl, err);
    for (int i = 0; i < S->ps->n && !rc; i++)
        for (int j = 0; j < pl.n && !rc; j++) {
            if (pl.items[j].id != S->ids[i]) continue;
            char ckpt[2400];
            snprintf(ckpt, sizeof ckpt, "%s/%s/%s.safetensors", S->runs_dir, S->s->name, S->ps->items[i].hash);
            if (unlink(ckpt) != 0 && errno != ENOENT) {
                rc = hlab_fail(err, HLAB_EIO, "%s: cannot remove the checkpoint of point %d to retry it: %s", ckpt,
                               S->ps->items[i].index, strerror(errno));
                break;
            }
            if ((rc = hlab_db_set_point_status(db, S->ids[i], HLAB_DB_PENDING, err))) break;
            hlab_log(HLAB_LOG_INFO, "point %d (%s, seed %lld) was %s: training it again from scratch",
                     S->ps->items[i].index, S->ps->items[i].label, (long long)S->ps->items[i].seed,
                     hlab_db_status_name(pl.items[j].status));
            S->sum->retried++;
        }
    hlab_db_point_list_free(&pl);
    return rc;
}

static int run_grid(sched *S, hlab_db *db, int64_t study_id, worker *W, int n_workers, hlab_err *err) {
    hlab_db_point_list pl = {0};
    int rc = hlab_db_list_points(db, study_id, HLAB_DB_MASK_ALL, &pl, err);
    if (rc) return rc;
    for (int i = 0; i < S->ps->n; i++)
        for (int j = 0; j < pl.n; j++) {
            if (pl.items[j].id != S->ids[i]) continue;
            hlab_db_status st = pl.items[j].status;
            if (is_finished(st)) {
                S->points_done++;
            } else if (st != HLAB_DB_RUNNING) { /* running: another live hlab search has it */
                const int from = resume_step(S, i, pl.items[j].steps_done);
                S->tasks[S->n_tasks++] = (task){i, 0, from};
                S->work_total += flops_per_step(&S->ps->items[i]) * (S->ps->items[i].point.train.steps - from);
            }
        }
    hlab_db_point_list_free(&pl);
    return run_tasks(S, W, n_workers, err);
}

/* The newest result of point i that reached exactly `steps` (val_loss, NaN if
 * none), the most steps any of its results reached, and its status. */
static int point_state(hlab_db *db, int64_t id, int steps, double *val, int *reached, hlab_db_status *status,
                       int *steps_done, hlab_err *err) {
    hlab_db_point pt;
    hlab_db_run_list runs;
    int rc = hlab_db_get_point(db, id, &pt, err);
    if (rc) return rc;
    *status = pt.status;
    *steps_done = pt.steps_done;
    hlab_db_point_free(&pt);
    if ((rc = hlab_db_list_runs(db, id, &runs, err))) return rc;
    *reached = 0;
    *val = NAN;
    for (int j = 0; j < runs.n; j++)
        if (runs.items[j].has_result) {
            if (runs.items[j].result_steps_done > *reached) *reached = runs.items[j].result_steps_done;
            if (runs.items[j].result_steps_done == steps) *val = runs.items[j].val_loss;
        }
    hlab_db_run_list_free(&runs);
    return HLAB_OK;
}

static int rung_steps(const hlab_strategy *st, int rung) {
    int steps = st->min_steps;
    for (int r = 0; r < rung && steps < st->max_steps; r++)
        steps = steps > st->max_steps / st->eta ? st->max_steps : steps * st->eta;
    return steps < st->max_steps ? steps : st->max_steps;
}

/* Successive halving: rung r trains the surviving designs to min_steps·eta^r
 * (the last rung to max_steps); the best 1/eta of the designs by mean
 * val_loss over seeds survive (diverged or failed count as worst). Every point
 * keeps max_steps as its schedule horizon, so a survivor continues from its
 * checkpoint on the same schedule. */
static int run_halving(sched *S, hlab_db *db, worker *W, int n_workers, hlab_err *err) {
    const hlab_strategy *st = &S->s->strategy;
    int n_designs = S->ps->n_designs, n_seeds = S->s->n_seeds, rc = HLAB_OK;
    int *alive = malloc((size_t)n_designs * sizeof *alive);
    double *score = malloc((size_t)n_designs * sizeof *score);
    if (!alive || !score) {
        free(alive), free(score);
        return hlab_fail(err, HLAB_ENOMEM, "out of memory");
    }
    for (int d = 0; d < n_designs; d++) alive[d] = d;
    double mean_fps = 0; /* work estimate: every rung's survivors x the steps it adds */
    for (int i = 0; i < S->ps->n; i++) mean_fps += flops_per_step(&S->ps->items[i]) / S->ps->n;
    for (int r = 0, n = n_designs, prev = 0;; r++) {
        int steps = rung_steps(st, r);
        S->work_total += mean_fps * (double)n * n_seeds * (steps - prev);
        prev = steps;
        n = n / st->eta > 0 ? n / st->eta : 1;
        if (steps >= st->max_steps) break;
    }
    int n_alive = n_designs;
    for (int rung = 0, prev_steps = 0;; rung++) {
        int steps = rung_steps(st, rung), last = steps >= st->max_steps;
        S->points_done = 0;
        S->points_total = n_alive * n_seeds;
        S->n_tasks = 0;
        for (int a = 0; a < n_alive && !rc; a++)
            for (int k = 0; k < n_seeds && !rc; k++) {
                int i = alive[a] * n_seeds + k, reached, steps_done;
                double val;
                hlab_db_status status;
                if ((rc = point_state(db, S->ids[i], steps, &val, &reached, &status, &steps_done, err))) break;
                if (is_finished(status) && (status != HLAB_DB_DONE || reached >= steps)) S->points_done++;
                else if (status != HLAB_DB_RUNNING)
                    S->tasks[S->n_tasks++] = (task){
                        i, last ? 0 : steps, resume_step(S, i, steps_done > prev_steps ? steps_done : prev_steps)};
            }
        if (rc) break;
        hlab_search_event ev = {.kind = HLAB_SEARCH_RUNG, .rung = rung, .rung_steps = steps, .rung_points = n_alive * n_seeds};
        if (emit(S, &ev)) {
            rc = hlab_fail(err, HLAB_EINTERRUPTED, "stopped");
            break;
        }
        if ((rc = run_tasks(S, W, n_workers, err))) break;
        if (last) break;
        for (int a = 0; a < n_alive && !rc; a++) {
            double sum = 0;
            for (int k = 0; k < n_seeds && !rc; k++) {
                int reached, steps_done;
                double val;
                hlab_db_status status;
                rc = point_state(db, S->ids[alive[a] * n_seeds + k], steps, &val, &reached, &status, &steps_done, err);
                sum += status == HLAB_DB_DONE && !isnan(val) ? val : INFINITY;
            }
            score[alive[a]] = sum / n_seeds;
        }
        if (rc) break;
        /* keep the best n/eta designs (at least one); ties keep file order */
        for (int x = 1; x < n_alive; x++)
            for (int y = x; y > 0 && (score[alive[y]] < score[alive[y - 1]] ||
                                      (score[alive[y]] == score[alive[y - 1]] && alive[y] < alive[y - 1])); y--) {
                int t = alive[y];
                alive[y] = alive[y - 1];
                alive[y - 1] = t;
            }
        n_alive = n_alive / st->eta > 0 ? n_alive / st->eta : 1;
        for (int x = 1; x < n_alive; x++) /* back to file order */
            for (int y = x; y > 0 && alive[y] < alive[y - 1]; y--) {
                int t = alive[y];
                alive[y] = alive[y - 1];
                alive[y - 1] = t;
            }
        prev_steps = steps;
    }
    free(alive);
    free(score);
    return rc;
}

/* Worker i's device: with several workers, "cuda" / "auto" (on a GPU machine)
 * become cuda:i and "cuda:N" becomes cuda:N+i; CPU workers share "cpu". */
static void worker_device(const char *spec, int i, int n_workers, char *out, size_t cap) {
    if (n_workers == 1) {
        snprintf(out, cap, "%s", spec);
        return;
    }
    if (!strcmp(spec, "auto")) spec = hk_cuda_available() > 0 ? "cuda" : "cpu";
    if (!strcmp(spec, "cuda")) snprintf(out, cap, "cuda:%d", i);
    else if (!strncmp(spec, "cuda:", 5)) snprintf(out, cap, "cuda:%d", atoi(spec + 5) + i);
    else snprintf(out, cap, "%s", spec);
}

int hlab_search_run(const hlab_study *s, const hlab_point_set *ps, const hlab_search_options *o,
                    hlab_search_summary *sum, hlab_err *err) {
    memset(sum, 0, sizeof *sum);
    int n_workers = o->workers > 0 ? o->workers : 1;
    if (n_workers > 64) return hlab_fail(err, HLAB_EINVAL, "workers: at most 64, got %d", n_workers);
    sched S = {.s = s, .ps = ps, .o = o, .sum = sum, .points_total = ps->n};
    sum->points_total = ps->n;
    if (o->runs_dir) {
        snprintf(S.runs_dir, sizeof S.runs_dir, "%s", o->runs_dir);
    } else {
        const char *slash = strrchr(o->db_path, '/');
        if (slash) snprintf(S.runs_dir, sizeof S.runs_dir, "%.*s/runs", (int)(slash - o->db_path), o->db_path);
        else snprintf(S.runs_dir, sizeof S.runs_dir, "runs");
    }
    char dir[1400];
    snprintf(dir, sizeof dir, "%s/%s", S.runs_dir, s->name);
    int rc = make_dir(S.runs_dir, err);
    if (!rc) rc = make_dir(dir, err);
    if (rc) return rc;
    if (pthread_mutex_init(&S.mu, NULL)) return hlab_fail(err, HLAB_ENOMEM, "cannot create a mutex");

    hlab_buf spec;
    hlab_buf_init(&spec);
    hlab_db *db = NULL;
    worker W[64];
    memset(W, 0, sizeof W);
    hlab_db_point_in *in = calloc((size_t)ps->n + 1, sizeof *in);
    S.ids = calloc((size_t)ps->n + 1, sizeof *S.ids);
    S.tasks = calloc((size_t)ps->n + 1, sizeof *S.tasks);
    if (!in || !S.ids || !S.tasks) {
        rc = hlab_fail(err, HLAB_ENOMEM, "out of memory");
        goto out;
    }
    /* devices first: a missing GPU is reported before the db is touched */
    for (int i = 0; i < n_workers; i++) {
        W[i].S = &S;
        W[i].id = i;
        worker_device(o->device ? o->device : "auto", i, n_workers, W[i].device, sizeof W[i].device);
        if (!(W[i].hk = hk_open(W[i].device, err))) {
            if (!err->code) hlab_fail(err, HLAB_EDEVICE, "cannot open device '%s'", W[i].device);
            rc = n_workers > 1 ? hlab_err_prefix(err, "worker %d", i) : err->code;
            goto out;
        }
    }
    if ((rc = hlab_study_to_json(s, &spec, err))) goto out;
    if ((rc = hlab_db_open(o->db_path, HLAB_DB_CREATE, &db, err))) goto out;
    char objectives[1024];
    hlab_study_objectives_text(s, objectives, sizeof objectives);
    hlab_db_study_in si = {.name = s->name, .description = s->description, .file = s->path, .spec_json = spec.data,
                           .objectives = objectives};
    int64_t study_id;
    if ((rc = hlab_db_upsert_study(db, &si, &study_id, err))) goto out;
    if (o->restart) {
        if ((rc = hlab_db_reset_study(db, study_id, err))) goto out;
        remove_checkpoints(&S);
    }
    for (int i = 0; i < ps->n; i++) {
        const hlab_design_point *d = &ps->items[i];
        in[i] = (hlab_db_point_in){.hash = d->hash, .label = d->label, .axes_json = d->axes_json,
                                   .config_json = d->config_json, .seed = d->seed, .params = d->counts.params,
                                   .params_non_embedding = d->counts.params_non_embedding,
                                   .flops_per_token = d->counts.train_flops_per_token, .train_flops = d->train_flops,
                                   .est_memory_bytes = d->est_memory_bytes};
    }
    if ((rc = hlab_db_add_points(db, study_id, in, ps->n, S.ids, NULL, &sum->points_new, err))) goto out;
    if ((o->retry_failed || o->retry_diverged) &&
        (rc = retry_points(&S, db, study_id,
                           (o->retry_failed ? HLAB_DB_MASK(HLAB_DB_FAILED) : 0u) |
                               (o->retry_diverged ? HLAB_DB_MASK(HLAB_DB_DIVERGED) : 0u),
                           err)))
        goto out;
    if ((rc = hlab_db_mark_interrupted(db, study_id, NULL, err))) goto out;
    for (int i = 0; i < n_workers; i++)
        if ((rc = hlab_db_open(o->db_path, 0, &W[i].db, err))) goto out;
    S.t_start = hlab_now_s();
    rc = s->strategy.kind == HLAB_STRATEGY_HALVING ? run_halving(&S, db, W, n_workers, err)
                                                   : run_grid(&S, db, study_id, W, n_workers, err);
    {   /* end states of this study's points, as the db has them now */
        hlab_err e2 = {0};
        hlab_db_point_list pl = {0};
        if (!hlab_db_list_points(db, study_id, HLAB_DB_MASK_ALL, &pl, &e2))
            for (int i = 0; i < ps->n; i++)
                for (int j = 0; j < pl.n; j++)
                    if (pl.items[j].id == S.ids[i]) {
                        sum->done += pl.items[j].status == HLAB_DB_DONE;
                        sum->diverged += pl.items[j].status == HLAB_DB_DIVERGED;
                        sum->failed += pl.items[j].status == HLAB_DB_FAILED;
                    }
        hlab_db_point_list_free(&pl);
    }
out:
    for (int i = 0; i < n_workers; i++) {
        hk_destroy(W[i].hk);
        hlab_db_close(W[i].db);
    }
    hlab_db_close(db);
    pthread_mutex_destroy(&S.mu);
    free(S.tasks);
    free(S.ids);
    free(in);
    hlab_buf_free(&spec);
    return rc;
}
