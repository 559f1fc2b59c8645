/* tests/train/test_step_sync.c — what a training step waits for, and that moving
 * its statistics to the device changed no result.
 *   - A shim backend logs every call that can make the host wait for the device
 *     (to_host 'H', sync 'S', sumsq 'Q') next to the step's landmarks (from_host
 *     'F' = a micro-batch upload, loss_reduce 'L', grad_clip_scale 'G', adamw 'A',
 *     the progress callback 'C'). A step must read like FFL..FFL G AA H: no wait
 *     before its one read-back, which comes after AdamW was queued. Checked
 *     through hlab_bench_model (1 micro-batch) and hlab_train_run (2 micro-batches,
 *     then the evaluation, which may read back), on the CPU and, where present,
 *     on CUDA (bf16). Waits inside an op (the CUDA MoE expert counts) are not
 *     visible here, so the model is dense.
 *   - Bit-identity on the CPU: hlab_train_run's logged losses and gradient norms,
 *     and its final weights and AdamW moments (from the checkpoint), equal a
 *     reference step written out with the former host arithmetic (the float loss
 *     of each forward, sumsq read back, the clip scale formed on the host and
 *     passed to adamw as a float) over 3 steps with clipping active.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test.h"
#include "train/train.h"

/* ---- the logging shim ---------------------------------------------------------- */
#define LOG_MAX 4096
typedef struct {
    hk_backend hk; /* first: the table the model and the loop call */
    hk_backend *inner;
    char log[LOG_MAX];
    int n;
} shim;

static shim *shim_of(hk_backend *hk) { return (shim *)hk; }
static void note(hk_backend *hk, char c) {
    shim *s = shim_of(hk);
    if (s->n < LOG_MAX - 1) s->log[s->n++] = c;
    s->log[s->n] = '\0';
}

static void s_destroy(hk_backend *hk) {
    hk_destroy(shim_of(hk)->inner);
    free(hk);
}
static int s_sync(hk_backend *hk, hlab_err *err) {
    note(hk, 'S');
    return shim_of(hk)->inner->sync(shim_of(hk)->inner, err);
}
static void s_from_host(hk_backend *hk, void *dst, hk_dtype dt, const void *src, hk_dtype st, size_t n) {
    note(hk, 'F');
    shim_of(hk)->inner->from_host(shim_of(hk)->inner, dst, dt, src, st, n);
}
static void s_to_host(hk_backend *hk, void *dst, hk_dtype dt, const void *src, hk_dtype st, size_t n) {
    note(hk, 'H');
    shim_of(hk)->inner->to_host(shim_of(hk)->inner, dst, dt, src, st, n);
}
static double s_sumsq(hk_backend *hk, const void *x, size_t n) {
    note(hk, 'Q');
    return shim_of(hk)->inner->sumsq(shim_of(hk)->inner, x, n);
}
static void s_adamw(hk_backend *hk, void *p, const void *g, void *m, void *v, void *mirror, size_t n, float lr,
                    float b1, float b2, float eps, float wd, int step, float gs, const void *scale_dev) {
    note(hk, 'A');
    shim_of(hk)->inner->adamw(shim_of(hk)->inner, p, g, m, v, mirror, n, lr, b1, b2, eps, wd, step, gs, scale_dev);
}
static void s_loss_reduce(hk_backend *hk, void *stat, const void *losses, int N, const void *aux, int n_aux) {
    note(hk, 'L');
    shim_of(hk)->inner->loss_reduce(shim_of(hk)->inner, stat, losses, N, aux, n_aux);
}
static void s_grad_clip_scale(hk_backend *hk, void *stat, const void *grads, size_t n, const void *micro_loss,
                              int n_micro, float clip) {
    note(hk, 'G');
    shim_of(hk)->inner->grad_clip_scale(shim_of(hk)->inner, stat, grads, n, micro_loss, n_micro, clip);
}

/* Every other op is the inner one, called with the shim: it shares impl (kernels.h). */
static hk_backend *shim_open(const char *spec, hlab_err *err) {
    hk_backend *inner = hk_open(spec, err);
    if (!inner) return NULL;
    shim *s = calloc(1, sizeof *s);
    if (!s) {
        hk_destroy(inner);
        return NULL;
    }
    s->inner = inner;
    s->hk = *inner;
    s->hk.destroy = s_destroy;
    s->hk.sync = s_sync;
    s->hk.from_host = s_from_host;
    s->hk.to_host = s_to_host;
    s->hk.sumsq = s_sumsq;
    s->hk.adamw = s_adamw;
    s->hk.loss_reduce = s_loss_reduce;
    s->hk.grad_clip_scale = s_grad_clip_scale;
    return &s->hk;
}

/* The log after the set-up (which must not have trained: no L, G, A) equals want. */
static void expect_log(hk_backend *hk, const char *want, const char *what) {
    const char *log = shim_of(hk)->log;
    size_t n = strlen(log), w = strlen(want);
    int ok = n >= w && !strcmp(log + n - w, want);
    for (size_t i = 0; ok && i < n - w; i++) ok = !strchr("LGAHSQ", log[i]);
    CHECK(ok, "%s: call log\n  %s\nexpected <set-up>%s", what, log, want);
}

static void repeat(char *dst, size_t cap, const char *unit, int times) {
    for (int i = 0; i < times; i++) strncat(dst, unit, cap - strlen(dst) - 1);
}

static void model_config(hlab_model_config *c) {
    hlab_model_config_defaults(c);
    c->d_model = 32;
    c->n_layers = 2;
    c->vocab_size = 256;
    snprintf(c->layout, sizeof c->layout, "AM");
    c->head_dim = 8;
    c->mamba_headdim = 8;
    c->mamba_d_state = 8;
    c->mamba_chunk = 8;
    c->d_ff = 64;
}

enum { B = 2, T = 16, STEPS = 3, ACCUM = 2, EVAL_BATCHES = 2 };

static void train_config(hlab_train_config *tc) {
    hlab_train_config_defaults(tc);
    tc->steps = STEPS;
    tc->batch = B;
    tc->seq_len = T;
    tc->grad_accum = ACCUM;
    tc->warmup = 1;
    tc->lr = 1e-2f;
    tc->grad_clip = 0.05f; /* small: every step clips */
    tc->eval_batches = EVAL_BATCHES;
    tc->log_every = 1;
    tc->seed = 11;
}

typedef struct {
    hk_backend *hk; /* the shim, or NULL */
    double loss[STEPS + 1], grad_norm[STEPS + 1];
} run_log;

static int on_event(void *user, const hlab_train_event *ev) {
    run_log *r = user;
    if (r->hk) note(r->hk, 'C');
    if (ev->step >= 1 && ev->step <= STEPS) {
        r->loss[ev->step] = ev->loss;
        r->grad_norm[ev->step] = ev->grad_norm;
    }
    return 0;
}

static void test_sync_pattern(const char *spec, const char *data) {
    hlab_err err = {0};
    hk_backend *hk = shim_open(spec, &err);
    if (!hk) {
        CHECK(0, "%s: %s", spec, err.msg);
        return;
    }
    hlab_model_config cfg;
    model_config(&cfg);
    hlab_bench_result br;
    int rc = hlab_bench_model(&cfg, hk, B, T, 1, 2, 5, &br, &err);
    CHECK(rc == HLAB_OK && isfinite(br.loss_last), "%s bench: %s", spec, err.msg);
    char want[LOG_MAX] = "";
    repeat(want, sizeof want, "FFLGAAHS", 3); /* the bench syncs after each step itself */
    expect_log(hk, want, "bench steps");
    hk_destroy(hk);

    hk = shim_open(spec, &err);
    if (!hk) return;
    hlab_train_config tc;
    train_config(&tc);
    hlab_data_config dc;
    hlab_data_config_defaults(&dc);
    snprintf(dc.train, sizeof dc.train, "%s", data);
    run_log rl = {.hk = hk};
    hlab_train_result res;
    rc = hlab_train_run(&cfg, &tc, &dc, hk, NULL, on_event, &rl, &res, &err);
    CHECK(rc == HLAB_OK && res.steps_done == STEPS, "%s train: rc %d %s", spec, rc, err.msg);
    want[0] = '\0';
    repeat(want, sizeof want, "FFLFFLGAAHC", STEPS - 1);
    strncat(want, "FFLFFLGAAH", sizeof want - strlen(want) - 1);
    repeat(want, sizeof want, "FFLH", EVAL_BATCHES); /* the evaluation reads each batch's loss */
    strncat(want, "C", sizeof want - strlen(want) - 1);
    expect_log(hk, want, "train steps with 2 micro-batches");
    printf("%s: one read-back per step, at its end\n", spec);
    hk_destroy(hk);
}

/* ---- the former host arithmetic, written out ----------------------------------- */
static int same_bits(double a, double b) { return !memcmp(&a, &b, sizeof a); }

static void test_bit_identity(const char *data) {
    hlab_err err = {0};
    hlab_model_config cfg;
    model_config(&cfg);
    hlab_train_config tc;
    train_config(&tc);
    hlab_data_config dc;
    hlab_data_config_defaults(&dc);
    snprintf(dc.train, sizeof dc.train, "%s", data);
    char ckpt[] = "/tmp/hlab_step_sync_ckpt_XXXXXX";
    int fd = mkstemp(ckpt);
    CHECK(fd >= 0, "mkstemp");
    if (fd < 0) return;
    close(fd);
    unlink(ckpt); /* hlab_train_run resumes from an existing file: start from none */

    hk_backend *hk = hk_open("cpu", &err);
    run_log rl = {.hk = NULL};
    hlab_train_result res;
    int rc = hk ? hlab_train_run(&cfg, &tc, &dc, hk, ckpt, on_event, &rl, &res, &err) : err.code;
    CHECK(rc == HLAB_OK, "train: %s", err.msg);
    hk_destroy(hk);

    /* the reference: the same batches, lr and init, the step as the host computed it */
    hk = hk_open("cpu", &err);
    hlab_dataset *ds = NULL;
    rc = hk ? hlab_dataset_open(&dc, &ds, &err) : err.code;
    hlab_model *m = rc ? NULL : hlab_model_create(&cfg, hk, B, T, &err);
    if (!m || hlab_model_init(m, tc.seed, &err)) {
        CHECK(0, "reference model: %s", err.msg);
        hlab_model_destroy(m);
        hlab_dataset_close(ds);
        hk_destroy(hk);
        unlink(ckpt);
        return;
    }
    int64_t n;
    hlab_model_n_params(m, NULL, &n);
    const int64_t nd = hlab_model_n_decay(m);
    float *am = calloc((size_t)n, sizeof *am), *av = calloc((size_t)n, sizeof *av); /* cpu memory is host memory */
    int32_t tok[B * T], tgt[B * T];
    for (int step = 1; step <= STEPS; step++) {
        double loss_sum = 0;
        hlab_model_zero_grads(m);
        for (int micro = 0; micro < ACCUM; micro++) {
            uint64_t key[3] = {tc.seed, (uint64_t)step, (uint64_t)micro};
            hlab_rng rng;
            hlab_rng_seed(&rng, hlab_fnv1a64(key, sizeof key, HLAB_FNV_OFFSET));
            float l = NAN;
            rc = hlab_dataset_batch(ds, 0, &rng, B, T, tok, tgt, &err);
            if (!rc) rc = hlab_model_forward(m, tok, tgt, B, &l, NULL, &err);
            if (!rc) rc = hlab_model_backward(m, &err);
            CHECK(rc == HLAB_OK, "reference step %d: %s", step, err.msg);
            loss_sum += l;
        }
        const double loss = loss_sum / ACCUM;
        float *p = hlab_model_params(m), *g = hlab_model_grads(m);
        const double norm = sqrt(hk->sumsq(hk, g, (size_t)n)) / ACCUM;
        double scale = 1.0 / ACCUM;
        if (tc.grad_clip > 0 && norm > tc.grad_clip) scale *= tc.grad_clip / norm;
        const double lr = hlab_lr_at(&tc, step);
        hk->adamw(hk, p, g, am, av, NULL, (size_t)nd, (float)lr, tc.beta1, tc.beta2, tc.eps, tc.weight_decay, step,
                  (float)scale, NULL);
        hk->adamw(hk, p + nd, g + nd, am + nd, av + nd, NULL, (size_t)(n - nd), (float)lr, tc.beta1, tc.beta2, tc.eps,
                  0.0f, step, (float)scale, NULL);
        CHECK(norm > tc.grad_clip, "step %d does not clip (norm %g): raise the test's lr or lower grad_clip", step,
              norm);
        CHECK(same_bits(rl.loss[step], loss) && same_bits(rl.grad_norm[step], norm),
              "step %d: loss %.17g norm %.17g, the host arithmetic gives %.17g %.17g", step, rl.loss[step],
              rl.grad_norm[step], loss, norm);
    }
    /* the trained run's final weights and moments, from its checkpoint */
    hlab_model *m2 = hlab_model_create(&cfg, hk, B, T, &err);
    float *am2 = calloc((size_t)n, sizeof *am2), *av2 = calloc((size_t)n, sizeof *av2);
    hlab_checkpoint_meta meta;
    rc = m2 ? hlab_checkpoint_read(ckpt, m2, am2, av2, &meta, &err) : err.code;
    CHECK(rc == HLAB_OK && meta.step == STEPS, "checkpoint: %s", err.msg);
    if (rc == HLAB_OK) {
        CHECK(!memcmp(hlab_model_params(m), hlab_model_params(m2), (size_t)n * sizeof(float)),
              "weights after %d steps differ from the host arithmetic's", STEPS);
        CHECK(!memcmp(am, am2, (size_t)n * sizeof(float)) && !memcmp(av, av2, (size_t)n * sizeof(float)),
              "AdamW moments after %d steps differ from the host arithmetic's", STEPS);
    }
    printf("cpu: %d steps of 2 micro-batches, clipped: bit-identical to the host arithmetic\n", STEPS);
    free(am), free(av), free(am2), free(av2);
    hlab_model_destroy(m2);
    hlab_model_destroy(m);
    hlab_dataset_close(ds);
    hk_destroy(hk);
    unlink(ckpt);
}

int main(void) {
    /* ~24 KB of text-like bytes: the split leaves ~1.2 KB of validation, > T + 1 */
    char data[] = "/tmp/hlab_step_sync_data_XXXXXX";
    int fd = mkstemp(data);
    CHECK(fd >= 0, "mkstemp");
    if (fd < 0) return test_summary();
    FILE *f = fdopen(fd, "w");
    hlab_rng r;
    hlab_rng_seed(&r, 3);
    for (int i = 0; i < 24000; i++) fputc(i % 61 == 60 ? '\n' : 'a' + (int)hlab_rng_below(&r, 26), f);
    fclose(f);

    test_sync_pattern("cpu", data);
    test_bit_identity(data);
    if (hk_cuda_available() > 0) test_sync_pattern("cuda", data);
    else printf("no CUDA device: the call pattern checked on the CPU only\n");
    unlink(data);
    return test_summary();
}
