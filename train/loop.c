/* train/loop.c — the training loop, its schedule, and the timed step that
 * `hlab bench` measures (the same step function, so bench measures training).
 *
 * Conventions:
 *  - Steps are 1-based: step s uses lr(s) and AdamW's bias correction for s.
 *  - The data RNG of step s is seeded from (seed, s), never carried over from
 *    step s-1, so a checkpoint needs only (seed, step) to resume the exact
 *    batch sequence. Initialisation uses the seed itself (hlab_model_init).
 *  - Gradient accumulation: each micro-batch's backward adds the gradient of
 *    its mean loss; AdamW's grad_scale divides by the micro-batch count and
 *    applies clipping in the same pass (no extra sweep over the gradients).
 *  - A step does not wait for the device until its end: the losses, the
 *    gradient norm and the clip scale stay in a few device doubles (loss_reduce,
 *    grad_clip_scale, adamw's scale_dev; a non-finite loss or norm makes AdamW
 *    skip on the device), and one read-back of (loss, norm) closes the step.
 *  - Parameters [0, n_decay) take weight decay, the rest do not (arch/ puts
 *    every decayed tensor first).
 *  - Validation uses fixed windows (hlab_dataset_val_batch) and the pure
 *    cross-entropy (the MoE auxiliary loss is subtracted).
 *  - Stopping: the optional should_stop poll runs after every step and before
 *    every validation batch (so Ctrl-C waits for at most one step or batch);
 *    the progress callback can also stop the run when it is called. A stop
 *    checkpoints the last finished step; it is an interruption only when it
 *    cut the run short (steps left, or the final evaluation unfinished).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "train/train.h"

#define PI_ 3.14159265358979323846
#define LN2_ 0.69314718055994530942

/* ---- schedule ---------------------------------------------------------------- */
double hlab_lr_at(const hlab_train_config *c, int step) {
    double peak = c->lr, floor_lr = c->min_lr_frac * c->lr;
    if (c->warmup > 0 && step <= c->warmup) return peak * step / c->warmup;
    int decay_steps = c->steps - c->warmup;
    if (decay_steps <= 0) return peak;
    double progress = (double)(step - c->warmup) / decay_steps;
    if (progress > 1) progress = 1;
    return floor_lr + 0.5 * (peak - floor_lr) * (1.0 + cos(PI_ * progress));
}

static uint64_t hash_bytes(uint64_t h, const void *p, size_t n) { return hlab_fnv1a64(p, n, h); }
static uint64_t hash_int(uint64_t h, int64_t v) { return hash_bytes(h, &v, sizeof v); }
static uint64_t hash_float(uint64_t h, float v) { return hash_bytes(h, &v, sizeof v); }

uint64_t hlab_train_run_hash(const hlab_model_config *m, const hlab_train_config *tc, const hlab_data_config *dc) {
    uint64_t h = HLAB_FNV_OFFSET;
    hlab_buf b;
    hlab_buf_init(&b);
    if (m && !hlab_model_config_to_json(m, &b, NULL) && b.data) h = hash_bytes(h, b.data, b.len);
    hlab_buf_free(&b);
    h = hash_int(h, tc->steps);
    h = hash_int(h, tc->batch);
    h = hash_int(h, tc->seq_len);
    h = hash_int(h, tc->grad_accum);
    h = hash_float(h, tc->lr);
    h = hash_float(h, tc->min_lr_frac);
    h = hash_int(h, tc->warmup);
    h = hash_float(h, tc->weight_decay);
    h = hash_float(h, tc->grad_clip);
    h = hash_float(h, tc->beta1);
    h = hash_float(h, tc->beta2);
    h = hash_float(h, tc->eps);
    h = hash_int(h, (int64_t)tc->seed);
    if (dc) {
        h = hash_bytes(h, dc->train, strlen(dc->train));
        h = hash_bytes(h, "|", 1);
        h = hash_bytes(h, dc->val, strlen(dc->val));
        h = hash_int(h, dc->tokenizer);
        h = hash_float(h, dc->val_fraction);
    }
    return h;
}

/* ---- the step ------------------------------------------------------------------ */
/* Fills one micro-batch's tokens and targets (host, B*T each). */
typedef int (*batch_fn)(void *ctx, int step, int micro, int32_t *tokens, int32_t *targets, hlab_err *err);

typedef struct {
    hlab_model *m;
    hk_backend *hk;
    void *adam_m, *adam_v; /* R, n elements each */
    /* F64 [STAT_MICRO + grad_accum]: grad_clip_scale's {loss, norm, scale}, then each
     * micro-batch's loss; the host reads {loss, norm} once per step. */
    void *stats;
    int grad_accum;
    int64_t n, n_decay;
    int B, T;
    int32_t *tokens, *targets;
} trainer;

static void trainer_free(trainer *tr) {
    if (tr->hk) {
        if (tr->adam_m) tr->hk->free(tr->hk, tr->adam_m);
        if (tr->adam_v) tr->hk->free(tr->hk, tr->adam_v);
        if (tr->stats) tr->hk->free(tr->hk, tr->stats);
    }
    free(tr->tokens);
    free(tr->targets);
    hlab_model_destroy(tr->m);
    memset(tr, 0, sizeof *tr);
}

enum { STAT_LOSS = 0, STAT_NORM = 1, STAT_SCALE = 2, STAT_MICRO = 3 }; /* trainer.stats, in doubles */

/* Creates the model on hk (resolved cfg), initialises it from seed, the zeroed
 * AdamW moments and the step statistics for grad_accum micro-batches. */
static int trainer_open(trainer *tr, const hlab_model_config *cfg, hk_backend *hk, int B, int T, int grad_accum,
                        uint64_t seed, hlab_err *err) {
    memset(tr, 0, sizeof *tr);
    tr->hk = hk;
    tr->B = B;
    tr->T = T;
    tr->grad_accum = grad_accum;
    tr->m = hlab_model_create(cfg, hk, B, T, err);
    if (!tr->m) return err ? err->code : HLAB_EINVAL;
    int rc = hlab_model_init(tr->m, seed, err);
    if (rc) return rc;
    int n_tensors;
    hlab_model_n_params(tr->m, &n_tensors, &tr->n);
    tr->n_decay = hlab_model_n_decay(tr->m);
    size_t bytes = (size_t)tr->n * hk_dtype_size(hk->real);
    tr->adam_m = hk->alloc(hk, bytes);
    tr->adam_v = hk->alloc(hk, bytes);
    tr->stats = hk->alloc(hk, (STAT_MICRO + (size_t)grad_accum) * sizeof(double));
    tr->tokens = malloc((size_t)B * T * sizeof *tr->tokens);
    tr->targets = malloc((size_t)B * T * sizeof *tr->targets);
    if (!tr->tokens || !tr->targets) return hlab_fail(err, HLAB_ENOMEM, "out of host memory for the token batch");
    if ((rc = hk->check(hk, err))) return rc;
    hk->zero(hk, tr->adam_m, bytes);
    hk->zero(hk, tr->adam_v, bytes);
    hk->zero(hk, tr->stats, (STAT_MICRO + (size_t)grad_accum) * sizeof(double));
    return hk->check(hk, err);
}

/* One optimizer step. *loss: mean over micro-batches (incl. MoE aux);
 * *grad_norm: global norm of the averaged gradient, before clipping.
 * A non-finite loss or gradient leaves the parameters untouched (AdamW skips on
 * the device). The host waits for the device once, at the end (the read-back of
 * loss and norm); *lr_out is set when the step updated the parameters. */
static int train_step(trainer *tr, const hlab_train_config *tc, int step, batch_fn next_batch, void *ctx,
                      double *loss, double *grad_norm, double *lr_out, hlab_err *err) {
    hk_backend *hk = tr->hk;
    int rc;
    if (tc->grad_accum != tr->grad_accum)
        return hlab_fail(err, HLAB_EINVAL, "train_step: %d micro-batches, the trainer was opened for %d", tc->grad_accum,
                         tr->grad_accum);
    char *stats = tr->stats;
    hlab_model_zero_grads(tr->m);
    for (int micro = 0; micro < tc->grad_accum; micro++) {
        if ((rc = next_batch(ctx, step, micro, tr->tokens, tr->targets, err))) return rc;
        if ((rc = hlab_model_forward(tr->m, tr->tokens, tr->targets, tr->B, NULL, NULL, err))) return rc;
        hk->convert(hk, stats + (STAT_MICRO + micro) * sizeof(double), HK_F64, hlab_model_loss_dev(tr->m), HK_F64, 1);
        if ((rc = hlab_model_backward(tr->m, err))) return rc;
    }
    void *grads = hlab_model_grads(tr->m);
    hk->grad_clip_scale(hk, stats, grads, (size_t)tr->n, stats + STAT_MICRO * sizeof(double), tc->grad_accum,
                        tc->grad_clip);
    const void *scale = stats + STAT_SCALE * sizeof(double);
    double lr = hlab_lr_at(tc, step);
    size_t rs = hk_dtype_size(hk->real), as = hk_dtype_size(hk->act);
    char *params = hlab_model_params(tr->m), *mirror = hlab_model_mirror(tr->m);
    if (mirror == params) mirror = NULL; /* A == R: the ops read the master weights */
    char *g = grads, *mm = tr->adam_m, *vv = tr->adam_v;
    size_t nd = (size_t)tr->n_decay, nr = (size_t)(tr->n - tr->n_decay);
    if (nd)
        hk->adamw(hk, params, g, mm, vv, mirror, nd, (float)lr, tc->beta1, tc->beta2, tc->eps, tc->weight_decay, step,
                  1.0f, scale);
    if (nr)
        hk->adamw(hk, params + nd * rs, g + nd * rs, mm + nd * rs, vv + nd * rs, mirror ? mirror + nd * as : NULL, nr,
                  (float)lr, tc->beta1, tc->beta2, tc->eps, 0.0f, step, 1.0f, scale);
    /* The step's one read-back: what the log, the metrics and the divergence check need. */
    double host[2] = {NAN, NAN};
    hk->to_host(hk, host, HK_F64, stats, HK_F64, 2);
    if ((rc = hk->check(hk, err))) return rc;
    *loss = host[STAT_LOSS];
    *grad_norm = host[STAT_NORM];
    if (isfinite(*loss) && isfinite(*grad_norm)) *lr_out = lr; /* else the caller reports the divergence */
    return HLAB_OK;
}

/* ---- training on a dataset -------------------------------------------------------- */
typedef struct {
    const hlab_dataset *data;
    uint64_t seed;
    int B, T;
} data_source;

static int dataset_batch(void *ctx, int step, int micro, int32_t *tokens, int32_t *targets, hlab_err *err) {
    const data_source *s = ctx;
    /* the RNG of (seed, step, micro): resumable from (seed, step) alone */
    uint64_t key[3] = {s->seed, (uint64_t)step, (uint64_t)micro};
    hlab_rng rng;
    hlab_rng_seed(&rng, hlab_fnv1a64(key, sizeof key, HLAB_FNV_OFFSET));
    return hlab_dataset_batch(s->data, 0, &rng, s->B, s->T, tokens, targets, err);
}

typedef struct {
    hlab_train_stop_poll fn; /* NULL = never */
    void *user;
} stop_poll;

static int stop_wanted(const stop_poll *p) { return p->fn && p->fn(p->user); }

/* Mean validation cross-entropy over eval_batches fixed batches. Sets *cut
 * (and leaves *val_loss alone) when the poll asks to stop before it is done. */
static int evaluate(trainer *tr, const hlab_dataset *data, int batches, const stop_poll *poll, double *val_loss,
                    int *cut, hlab_err *err) {
    double sum = 0;
    *cut = 0;
    for (int i = 0; i < batches; i++) {
        if (stop_wanted(poll)) {
            *cut = 1;
            return HLAB_OK;
        }
        int rc = hlab_dataset_val_batch(data, i, tr->B, tr->T, tr->tokens, tr->targets, err);
        float loss, aux;
        if (!rc) rc = hlab_model_forward(tr->m, tr->tokens, tr->targets, tr->B, &loss, &aux, err);
        if (rc) return rc;
        sum += (double)loss - (double)aux;
    }
    *val_loss = sum / batches;
    return HLAB_OK;
}

static int file_exists(const char *path) { return path && path[0] && access(path, F_OK) == 0; }

int hlab_train_run(const hlab_model_config *cfg, const hlab_train_config *tc, const hlab_data_config *dc,
                   hk_backend *hk, const char *ckpt_path, hlab_train_callback cb, void *user, hlab_train_result *res,
                   hlab_err *err) {
    return hlab_train_run_polled(cfg, tc, dc, hk, ckpt_path, cb, NULL, user, res, err);
}

int hlab_train_run_polled(const hlab_model_config *cfg_in, const hlab_train_config *tc, const hlab_data_config *dc,
                          hk_backend *hk, const char *ckpt_path, hlab_train_callback cb,
                          hlab_train_stop_poll should_stop, void *user, hlab_train_result *res, hlab_err *err) {
    const stop_poll poll = {should_stop, user};
    double t_start = hlab_now_s();
    memset(res, 0, sizeof *res);
    res->train_loss = res->val_loss = res->val_bpb = NAN;
    int rc = hlab_train_config_validate(tc, err);
    if (rc) return rc;
    hlab_dataset *data = NULL;
    trainer tr;
    memset(&tr, 0, sizeof tr);
    if ((rc = hlab_dataset_open(dc, &data, err))) return rc;

    /* The vocabulary always comes from the data. */
    hlab_model_config cfg = *cfg_in;
    cfg.vocab_size = hlab_dataset_vocab(data);
    if ((rc = hlab_model_config_resolve(&cfg, err))) goto out;
    if ((rc = hlab_count(&cfg, tc->seq_len, &res->counts, err))) goto out;
    /* Fail before training when evaluation could not run at the end. */
    if (hlab_dataset_tokens(data, 1) < (int64_t)tc->seq_len + 1) {
        rc = hlab_fail(err, HLAB_EINVAL,
                       "%s: the validation split has %lld tokens, fewer than train.seq_len + 1 = %d (raise "
                       "data.val_fraction or set data.val)",
                       dc->val[0] ? dc->val : dc->train, (long long)hlab_dataset_tokens(data, 1), tc->seq_len + 1);
        goto out;
    }
    if (hlab_dataset_tokens(data, 0) < (int64_t)tc->seq_len + 1) {
        rc = hlab_fail(err, HLAB_EINVAL, "%s: the training split has %lld tokens, fewer than train.seq_len + 1 = %d",
                       dc->train, (long long)hlab_dataset_tokens(data, 0), tc->seq_len + 1);
        goto out;
    }
    if ((rc = trainer_open(&tr, &cfg, hk, tc->batch, tc->seq_len, tc->grad_accum, tc->seed, err))) goto out;

    hlab_checkpoint_meta meta = {.step = 0, .seed = tc->seed, .run_hash = hlab_train_run_hash(&cfg, tc, dc),
                                 .first_loss = NAN};
    const int bytes_data = dc->tokenizer == HLAB_TOK_BYTES;
    if (file_exists(ckpt_path)) {
        hlab_checkpoint_meta saved;
        if ((rc = hlab_checkpoint_read(ckpt_path, tr.m, tr.adam_m, tr.adam_v, &saved, err))) goto out;
        if (saved.run_hash != meta.run_hash) {
            rc = hlab_fail(err, HLAB_EINVAL,
                           "%s: checkpoint belongs to a different run (training config, seed or data differ); "
                           "remove it or pass another --ckpt",
                           ckpt_path);
            goto out;
        }
        if (saved.step > tc->steps) {
            rc = hlab_fail(err, HLAB_EINVAL, "%s: checkpoint is at step %d, beyond train.steps %d", ckpt_path, saved.step,
                           tc->steps);
            goto out;
        }
        meta.step = saved.step;
        meta.first_loss = saved.first_loss;
        res->steps_done = saved.step;
        hlab_log(HLAB_LOG_INFO, "resuming from %s at step %d", ckpt_path, saved.step);
    }

    const int stop = tc->stop_at ? tc->stop_at : tc->steps;
    const int64_t tokens_per_step = (int64_t)tc->batch * tc->seq_len * tc->grad_accum;
    data_source src = {data, tc->seed, tc->batch, tc->seq_len};
    double train_time = 0; /* excludes evaluation and checkpoints */
    int start_step = meta.step, step = meta.step;
    double loss = NAN;
    while (step < stop) {
        int s = step + 1;
        double t0 = hlab_now_s(), grad_norm = NAN, lr = hlab_lr_at(tc, s);
        rc = train_step(&tr, tc, s, dataset_batch, &src, &loss, &grad_norm, &lr, err);
        if (rc) goto out;
        train_time += hlab_now_s() - t0;
        res->train_loss = loss;
        if (!isfinite(loss) || !isfinite(grad_norm)) {
            rc = hlab_fail(err, HLAB_EDIVERGED, "diverged at step %d: loss %g, gradient norm %g (not finite)", s, loss,
                           grad_norm);
            goto out;
        }
        if (s == 1 || isnan(meta.first_loss)) meta.first_loss = loss;
        if (loss > tc->diverge_factor * meta.first_loss) {
            rc = hlab_fail(err, HLAB_EDIVERGED, "diverged at step %d: loss %.4f exceeds %g x the first loss %.4f", s, loss,
                           tc->diverge_factor, meta.first_loss);
            goto out;
        }
        step = s;
        meta.step = step;
        res->steps_done = step;

        hlab_train_event ev = {.step = step, .steps = tc->steps, .loss = loss, .lr = lr, .grad_norm = grad_norm,
                               .val_loss = NAN, .val_bpb = NAN};
        int evaluate_now = step == stop || (tc->eval_every > 0 && step % tc->eval_every == 0);
        int eval_cut = 0;
        if (evaluate_now) {
            if ((rc = evaluate(&tr, data, tc->eval_batches, &poll, &ev.val_loss, &eval_cut, err))) goto out;
            if (!eval_cut) {
                ev.val_bpb = bytes_data ? ev.val_loss / LN2_ : NAN;
                res->val_loss = ev.val_loss;
                res->val_bpb = ev.val_bpb;
            }
        }
        int done_here = step - start_step;
        ev.elapsed_s = hlab_now_s() - t_start;
        ev.tokens_per_s = train_time > 0 ? (double)done_here * tokens_per_step / train_time : 0;
        ev.eta_s = done_here > 0 ? (stop - step) * (train_time / done_here) : 0;
        ev.peak_bytes = (int64_t)hk->peak_bytes(hk);
        int stop_requested = eval_cut; /* a cut evaluation has no event to report */
        if (!eval_cut && cb && (evaluate_now || step % tc->log_every == 0 || step == stop)) stop_requested = cb(user, &ev);
        if (!stop_requested && step < stop) stop_requested = stop_wanted(&poll);
        int ckpt_now = step == stop || (tc->ckpt_every > 0 && step % tc->ckpt_every == 0) || stop_requested;
        if (ckpt_now && ckpt_path && ckpt_path[0] &&
            (rc = hlab_checkpoint_write(ckpt_path, tr.m, tr.adam_m, tr.adam_v, &meta, err)))
            goto out;
        if (stop_requested && (step < stop || eval_cut)) {
            rc = hlab_fail(err, HLAB_EINTERRUPTED, "interrupted at step %d of %d%s%s%s", step, tc->steps,
                           eval_cut ? " during evaluation" : "",
                           ckpt_path && ckpt_path[0] ? "; checkpoint " : " (no checkpoint: pass --ckpt to resume)",
                           ckpt_path && ckpt_path[0] ? ckpt_path : "");
            goto out;
        }
        res->tokens_per_s = ev.tokens_per_s;
    }
    if (start_step >= stop) { /* nothing left to train: still report the evaluation */
        int eval_cut = 0;
        if ((rc = evaluate(&tr, data, tc->eval_batches, &poll, &res->val_loss, &eval_cut, err))) goto out;
        if (eval_cut) {
            rc = hlab_fail(err, HLAB_EINTERRUPTED, "interrupted during the evaluation at step %d", step);
            goto out;
        }
        res->val_bpb = bytes_data ? res->val_loss / LN2_ : NAN;
    }
    rc = HLAB_OK;
out:
    res->train_flops = res->counts.train_flops_per_token * (double)res->steps_done * tc->batch * tc->seq_len *
                       tc->grad_accum;
    res->peak_bytes = (int64_t)hk->peak_bytes(hk);
    res->wall_s = hlab_now_s() - t_start;
    trainer_free(&tr);
    hlab_dataset_close(data);
    return rc;
}

/* ---- benchmarking ------------------------------------------------------------------- */
typedef struct {
    hlab_rng rng;
    int B, T, V;
} random_source;

static int random_batch(void *ctx, int step, int micro, int32_t *tokens, int32_t *targets, hlab_err *err) {
    (void)step;
    (void)micro;
    (void)err;
    random_source *s = ctx;
    for (int b = 0; b < s->B; b++) {
        int32_t prev = (int32_t)hlab_rng_below(&s->rng, (uint64_t)s->V);
        for (int t = 0; t < s->T; t++) {
            size_t i = (size_t)b * s->T + t;
            tokens[i] = prev;
            prev = targets[i] = (int32_t)hlab_rng_below(&s->rng, (uint64_t)s->V);
        }
    }
    return HLAB_OK;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int hlab_bench_model(const hlab_model_config *cfg_in, hk_backend *hk, int B, int T, int warmup, int steps, uint64_t seed,
                     hlab_bench_result *res, hlab_err *err) {
    return hlab_bench_model_profiled(cfg_in, hk, B, T, warmup, steps, 0, seed, res, err);
}

int hlab_bench_model_profiled(const hlab_model_config *cfg_in, hk_backend *hk, int B, int T, int warmup, int steps,
                              int profile_steps, uint64_t seed, hlab_bench_result *res, hlab_err *err) {
    memset(res, 0, sizeof *res);
    if (B < 1 || T < 1 || warmup < 0 || steps < 1)
        return hlab_fail(err, HLAB_EINVAL, "bench: batch %d, length %d and steps %d must be positive, warm-up %d >= 0", B, T,
                         steps, warmup);
    if (profile_steps < 0 || (profile_steps > 0 && !hk_profile_is(hk)))
        return hlab_fail(err, HLAB_EINVAL, "bench: %d profiled steps need a profiling backend (hk_profile_wrap)",
                         profile_steps);
    if (profile_steps > 0) hk_profile_enable(hk, 0); /* else a wrapper keeps its state: all steps profiled if on */
    hlab_model_config cfg = *cfg_in;
    int rc = hlab_model_config_resolve(&cfg, err);
    if (rc) return rc;
    if ((rc = hlab_count(&cfg, T, &res->counts, err))) return rc;
    hlab_train_config tc;
    hlab_train_config_defaults(&tc);
    tc.steps = warmup + steps;
    tc.warmup = 0;
    tc.batch = B;
    tc.seq_len = T;
    tc.lr = 1e-4f; /* small: a benchmark must not diverge on random tokens */
    trainer tr;
    if ((rc = trainer_open(&tr, &cfg, hk, B, T, tc.grad_accum, seed, err))) goto out;
    random_source src;
    hlab_rng_seed(&src.rng, seed ^ 0x5bd1e995u);
    src.B = B;
    src.T = T;
    src.V = cfg.vocab_size;
    double *times = malloc((size_t)steps * sizeof *times);
    if (!times) {
        rc = hlab_fail(err, HLAB_ENOMEM, "out of memory");
        goto out;
    }
    for (int s = 1; s <= warmup + steps && !rc; s++) {
        double t0 = hlab_now_s(), loss = NAN, gn = NAN, lr = 0;
        rc = train_step(&tr, &tc, s, random_batch, &src, &loss, &gn, &lr, err);
        if (!rc) rc = hk->sync(hk, err);
        double dt = hlab_now_s() - t0;
        if (s == 1) res->loss_first = loss;
        res->loss_last = loss;
        if (s > warmup) times[s - warmup - 1] = dt;
    }
    if (!rc) {
        qsort(times, (size_t)steps, sizeof *times, cmp_double);
        res->step_s_median = steps % 2 ? times[steps / 2] : 0.5 * (times[steps / 2 - 1] + times[steps / 2]);
        res->tokens_per_s = (double)B * T / res->step_s_median;
        res->peak_bytes = (int64_t)hk->peak_bytes(hk);
    }
    if (!rc && profile_steps > 0) {
        /* After the timed steps, so their median and the peak are the unprofiled ones;
         * steps past the schedule's end run at its final lr. */
        hk_profile_reset(hk);
        hk_profile_enable(hk, 1);
        double t0 = hlab_now_s();
        for (int s = warmup + steps + 1; s <= warmup + steps + profile_steps && !rc; s++) {
            double loss = NAN, gn = NAN, lr = 0;
            rc = train_step(&tr, &tc, s, random_batch, &src, &loss, &gn, &lr, err);
            if (!rc) rc = hk->sync(hk, err);
        }
        hk_profile_enable(hk, 0);
        if (!rc) {
            res->profile_steps = profile_steps;
            res->profile_step_s = (hlab_now_s() - t0) / profile_steps;
        }
    }
    free(times);
out:
    trainer_free(&tr);
    return rc;
}

int hlab_bench_matmul(hk_backend *hk, int n, int reps, double *flops_per_s, hlab_err *err) {
    *flops_per_s = 0;
    size_t elems = (size_t)n * n;
    size_t as = hk_dtype_size(hk->act);
    void *a = hk->alloc(hk, elems * as), *w = hk->alloc(hk, elems * as), *out = hk->alloc(hk, elems * as);
    float *host = malloc(elems * sizeof *host);
    int rc = hk->check(hk, err);
    if (!rc && !host) rc = hlab_fail(err, HLAB_ENOMEM, "out of host memory");
    if (!rc) {
        hlab_rng rng;
        hlab_rng_seed(&rng, 12345);
        for (size_t i = 0; i < elems; i++) host[i] = (float)(hlab_rng_uniform(&rng) - 0.5);
        hk->from_host(hk, a, hk->act, host, HK_F32, elems);
        hk->from_host(hk, w, hk->act, host, HK_F32, elems);
        hk->matmul_fwd(hk, out, a, w, NULL, n, n, n); /* warm-up: library init, page faults */
        rc = hk->sync(hk, err);
        double best = 1e30;
        for (int r = 0; r < reps && !rc; r++) {
            double t0 = hlab_now_s();
            hk->matmul_fwd(hk, out, a, w, NULL, n, n, n);
            rc = hk->sync(hk, err);
            double dt = hlab_now_s() - t0;
            if (dt < best) best = dt;
        }
        if (!rc) *flops_per_s = 2.0 * n * (double)n * n / best;
    }
    free(host);
    if (a) hk->free(hk, a);
    if (w) hk->free(hk, w);
    if (out) hk->free(hk, out);
    return rc;
}

int hlab_bench_copy(hk_backend *hk, size_t n, int reps, double *bytes_per_s, hlab_err *err) {
    *bytes_per_s = 0;
    size_t bytes = n * hk_dtype_size(hk->act);
    void *src = hk->alloc(hk, bytes), *dst = hk->alloc(hk, bytes);
    int rc = hk->check(hk, err);
    if (!rc) {
        hk->zero(hk, src, bytes);
        hk->convert(hk, dst, hk->act, src, hk->act, n); /* warm-up: first touch of the pages */
        rc = hk->sync(hk, err);
        double best = 1e30;
        for (int r = 0; r < reps && !rc; r++) {
            double t0 = hlab_now_s();
            hk->convert(hk, dst, hk->act, src, hk->act, n);
            rc = hk->sync(hk, err);
            double dt = hlab_now_s() - t0;
            if (dt < best) best = dt;
        }
        if (!rc) *bytes_per_s = 2.0 * (double)bytes / best;
    }
    if (src) hk->free(hk, src);
    if (dst) hk->free(hk, dst);
    return rc;
}
