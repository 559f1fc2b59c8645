/* tests/train/test_checkpoint.c — checkpoints and the loop on a tiny model:
 * save/load round trip (bit-exact weights and moments), truncated and corrupt
 * files, a config mismatch, and through hlab_train_run: same seed = same
 * losses, stop + resume = the uninterrupted curve, interruption, divergence. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test.h"
#include "train/train.h"

static char tmpdir[256];
static hk_backend *hk;

static void tiny_model(hlab_model_config *c, int d_model) {
    hlab_model_config_defaults(c);
    c->d_model = d_model;
    c->n_layers = 3;
    c->vocab_size = 256;
    snprintf(c->layout, sizeof c->layout, "MAP");
    c->head_dim = 16;
    c->mamba_headdim = 16;
    c->mamba_d_state = 8;
    c->mamba_chunk = 8;
    c->d_ff = 64;
    c->channel_parallel = HLAB_CHANNEL_MOE;
    c->moe_experts = 3;
    c->moe_top_k = 2;
}

static void fill_device(void *dst, size_t n, hlab_rng *rng) {
    float *h = malloc(n * sizeof *h);
    test_fill_f32(rng, h, n, 1.0);
    hk->from_host(hk, dst, hk->real, h, HK_F32, n);
    free(h);
}

static float *to_host(const void *src, size_t n) {
    float *h = malloc(n * sizeof *h);
    hk->to_host(hk, h, HK_F32, src, hk->real, n);
    return h;
}

static void expect_read_error(const char *path, hlab_model *m, const char *want) {
    hlab_err err = {0};
    hlab_checkpoint_meta meta;
    int rc = hlab_checkpoint_read(path, m, NULL, NULL, &meta, &err);
    CHECK(rc != HLAB_OK, "reading %s should fail", path);
    CHECK(strstr(err.msg, want) && strstr(err.msg, path) && !strchr(err.msg, '\n'), "message '%s' lacks '%s'", err.msg,
          want);
}

static void test_round_trip(void) {
    hlab_model_config c;
    tiny_model(&c, 32);
    hlab_err err = {0};
    CHECK(hlab_model_config_resolve(&c, &err) == HLAB_OK, "resolve: %s", err.msg);
    hlab_model *a = hlab_model_create(&c, hk, 2, 16, &err), *b = hlab_model_create(&c, hk, 2, 16, &err);
    CHECK(a && b, "create: %s", err.msg);
    if (!a || !b) return;
    hlab_model_init(a, 1, &err);
    hlab_model_init(b, 2, &err);
    int nt;
    int64_t n;
    hlab_model_n_params(a, &nt, &n);
    size_t bytes = (size_t)n * hk_dtype_size(hk->real);
    void *ma = hk->alloc(hk, bytes), *va = hk->alloc(hk, bytes), *mb = hk->alloc(hk, bytes), *vb = hk->alloc(hk, bytes);
    hlab_rng rng;
    hlab_rng_seed(&rng, 11);
    fill_device(ma, (size_t)n, &rng);
    fill_device(va, (size_t)n, &rng);
    fill_device(mb, (size_t)n, &rng);
    fill_device(vb, (size_t)n, &rng);
    char path[512];
    snprintf(path, sizeof path, "%s/a.safetensors", tmpdir);
    hlab_checkpoint_meta meta = {.step = 17, .seed = 12345678901234ULL, .run_hash = 0xfeedbeefcafe1234ULL,
                                 .first_loss = 5.5451774444795623};
    CHECK(hlab_checkpoint_write(path, a, ma, va, &meta, &err) == HLAB_OK, "write: %s", err.msg);
    hlab_checkpoint_meta got = {0};
    CHECK(hlab_checkpoint_read(path, b, mb, vb, &got, &err) == HLAB_OK, "read: %s", err.msg);
    CHECK(got.step == meta.step && got.seed == meta.seed && got.run_hash == meta.run_hash &&
              got.first_loss == meta.first_loss,
          "metadata round trip: step %d seed %llu hash %llx first_loss %.17g", got.step, (unsigned long long)got.seed,
          (unsigned long long)got.run_hash, got.first_loss);
    float *pa = to_host(hlab_model_params(a), (size_t)n), *pb = to_host(hlab_model_params(b), (size_t)n);
    float *xa = to_host(ma, (size_t)n), *xb = to_host(mb, (size_t)n);
    float *ya = to_host(va, (size_t)n), *yb = to_host(vb, (size_t)n);
    CHECK(!memcmp(pa, pb, (size_t)n * sizeof *pa), "weights differ after the round trip");
    CHECK(!memcmp(xa, xb, (size_t)n * sizeof *xa), "first moments differ after the round trip");
    CHECK(!memcmp(ya, yb, (size_t)n * sizeof *ya), "second moments differ after the round trip");
    free(pa), free(pb), free(xa), free(xb), free(ya), free(yb);

    /* the file is a safetensors file: u64 header length, JSON naming the tensors */
    char *file;
    size_t size;
    hlab_read_file(path, &file, &size, &err);
    uint64_t hlen = 0;
    for (int i = 0; i < 8; i++) hlen |= (uint64_t)(unsigned char)file[i] << (8 * i);
    CHECK(hlen % 8 == 0 && 8 + hlen < size && file[8] == '{', "header length %llu of %zu", (unsigned long long)hlen, size);
    char name[200];
    snprintf(name, sizeof name, "\"optim.v.%s\":{\"dtype\":\"F32\"", hlab_model_param(a, nt - 1)->name);
    CHECK(strstr(file + 8, name) != NULL, "header lacks %s", name);
    CHECK(strstr(file + 8, "\"__metadata__\"") != NULL, "header lacks __metadata__");

    /* truncations and corruption: one clear line each */
    char bad[512];
    snprintf(bad, sizeof bad, "%s/bad.safetensors", tmpdir);
    hlab_write_file_atomic(bad, file, size - 100, &err);
    expect_read_error(bad, b, "truncated checkpoint");
    hlab_write_file_atomic(bad, file, 5, &err);
    expect_read_error(bad, b, "truncated checkpoint");
    hlab_write_file_atomic(bad, file, 8 + hlen / 2, &err);
    expect_read_error(bad, b, "truncated");
    file[8] = '[';
    hlab_write_file_atomic(bad, file, size, &err);
    expect_read_error(bad, b, "corrupt checkpoint header");
    free(file);

    /* a different model */
    hlab_model_config c2;
    tiny_model(&c2, 48);
    hlab_model_config_resolve(&c2, &err);
    hlab_model *other = hlab_model_create(&c2, hk, 2, 16, &err);
    if (other) {
        expect_read_error(path, other, "different model");
        hlab_model_destroy(other);
    }
    hk->free(hk, ma), hk->free(hk, va), hk->free(hk, mb), hk->free(hk, vb);
    hlab_model_destroy(a);
    hlab_model_destroy(b);
}

/* ---- the loop ------------------------------------------------------------------ */
typedef struct {
    double loss[64];
    int n_events, stop_after;
} recorder;

static int record(void *user, const hlab_train_event *ev) {
    recorder *r = user;
    if (ev->step < 64) r->loss[ev->step] = ev->loss;
    r->n_events++;
    return r->stop_after && ev->step >= r->stop_after;
}

static void setup_run(hlab_model_config *c, hlab_train_config *tc, hlab_data_config *dc) {
    tiny_model(c, 32);
    hlab_train_config_defaults(tc);
    tc->steps = 8;
    tc->batch = 2;
    tc->seq_len = 16;
    tc->warmup = 2;
    tc->lr = 1e-2f;
    tc->log_every = 1;
    tc->eval_batches = 2;
    tc->seed = 7;
    hlab_data_config_defaults(dc);
    snprintf(dc->train, sizeof dc->train, "%s/text.txt", tmpdir);
    dc->val_fraction = 0.2f;
}

static int run(const hlab_train_config *tc, const char *ckpt, recorder *r, hlab_train_result *res, hlab_err *err) {
    hlab_model_config c;
    hlab_train_config unused;
    hlab_data_config dc;
    setup_run(&c, &unused, &dc);
    return hlab_train_run(&c, tc, &dc, hk, ckpt, record, r, res, err);
}

static void test_loop(void) {
    /* some text with structure to learn */
    char path[512];
    snprintf(path, sizeof path, "%s/text.txt", tmpdir);
    hlab_rng rng;
    hlab_rng_seed(&rng, 5);
    const char *words[] = {"the ", "cat ", "sat ", "on ", "a ", "mat, ", "and ", "dog ", "ran.\n"};
    hlab_buf text;
    hlab_buf_init(&text);
    while (text.len < 6000) hlab_buf_puts(&text, words[hlab_rng_below(&rng, 9)]);
    hlab_err err = {0};
    hlab_write_file_atomic(path, text.data, text.len, &err);
    hlab_buf_free(&text);

    hlab_model_config c;
    hlab_train_config tc;
    hlab_data_config dc;
    setup_run(&c, &tc, &dc);
    recorder r1 = {0}, r2 = {0}, r3 = {0}, r4 = {0};
    hlab_train_result res;
    CHECK(run(&tc, NULL, &r1, &res, &err) == HLAB_OK, "run 1: %s", err.msg);
    CHECK(res.steps_done == 8 && r1.n_events == 8 && isfinite(res.val_loss), "run 1: %d steps, %d events, val %g",
          res.steps_done, r1.n_events, res.val_loss);
    CHECK(fabs(res.val_bpb - res.val_loss / log(2.0)) < 1e-9, "bits per byte %g for val loss %g", res.val_bpb,
          res.val_loss);
    CHECK(res.counts.params > 0 && res.train_flops > 0, "counts in the result");
    CHECK(r1.loss[8] < r1.loss[1], "loss did not go down: %g -> %g", r1.loss[1], r1.loss[8]);
    CHECK(run(&tc, NULL, &r2, &res, &err) == HLAB_OK, "run 2: %s", err.msg);
    CHECK(!memcmp(r1.loss, r2.loss, sizeof r1.loss), "the same seed gave different losses");

    /* stop at step 3 with a checkpoint, then resume: the same curve, bit for bit */
    char ckpt[512];
    snprintf(ckpt, sizeof ckpt, "%s/run.safetensors", tmpdir);
    hlab_train_config part = tc;
    part.stop_at = 3;
    CHECK(run(&part, ckpt, &r3, &res, &err) == HLAB_OK && res.steps_done == 3, "stopped run: %s", err.msg);
    CHECK(run(&tc, ckpt, &r3, &res, &err) == HLAB_OK && res.steps_done == 8, "resumed run: %s", err.msg);
    int same = 1;
    for (int s = 1; s <= 8; s++) same &= r3.loss[s] == r1.loss[s];
    CHECK(same, "the resumed curve differs from the uninterrupted one (step 4: %.9g vs %.9g)", r3.loss[4], r1.loss[4]);

    /* a checkpoint of another run is refused */
    hlab_train_config other = tc;
    other.lr = 2e-2f;
    CHECK(run(&other, ckpt, &r4, &res, &err) != HLAB_OK && strstr(err.msg, "different run"), "foreign checkpoint: %s",
          err.msg);

    /* interruption through the callback: checkpoint, then HLAB_EINTERRUPTED */
    unlink(ckpt);
    recorder r5 = {0};
    r5.stop_after = 2;
    int rc = run(&tc, ckpt, &r5, &res, &err);
    CHECK(rc == HLAB_EINTERRUPTED && res.steps_done == 2, "interrupt: rc %d, %d steps: %s", rc, res.steps_done, err.msg);
    hlab_model *m = NULL;
    hlab_model_config rc_cfg;
    tiny_model(&rc_cfg, 32);
    hlab_model_config_resolve(&rc_cfg, &err);
    m = hlab_model_create(&rc_cfg, hk, 2, 16, &err);
    hlab_checkpoint_meta meta = {0};
    CHECK(m && hlab_checkpoint_read(ckpt, m, NULL, NULL, &meta, &err) == HLAB_OK && meta.step == 2,
          "checkpoint after interruption: step %d (%s)", meta.step, err.msg);
    hlab_model_destroy(m);

    /* divergence: an absurd learning rate */
    hlab_train_config wild = tc;
    wild.lr = 1e3f;
    wild.warmup = 0;
    wild.grad_clip = 0;
    wild.diverge_factor = 1.5f;
    recorder r6 = {0};
    rc = run(&wild, NULL, &r6, &res, &err);
    CHECK(rc == HLAB_EDIVERGED && strstr(err.msg, "diverged at step"), "divergence: rc %d: %s", rc, err.msg);

    /* gradient accumulation: two micro-batches per step still learn */
    hlab_train_config accum = tc;
    accum.grad_accum = 2;
    recorder r7 = {0};
    rc = run(&accum, NULL, &r7, &res, &err);
    CHECK(rc == HLAB_OK && res.steps_done == 8 && r7.loss[8] < r7.loss[1], "grad_accum 2: rc %d, loss %g -> %g: %s",
          rc, r7.loss[1], r7.loss[8], err.msg);

    /* a validation split shorter than one window is refused before training */
    hlab_model_config c3;
    hlab_data_config dc3;
    setup_run(&c3, &tc, &dc3);
    dc3.val_fraction = 0.001f;
    rc = hlab_train_run(&c3, &tc, &dc3, hk, NULL, NULL, NULL, &res, &err);
    CHECK(rc == HLAB_EINVAL && strstr(err.msg, "validation split has") && res.steps_done == 0, "short val split: %s",
          err.msg);

    /* a missing data file is one clear line */
    hlab_model_config c2;
    hlab_data_config dc2;
    setup_run(&c2, &tc, &dc2);
    snprintf(dc2.train, sizeof dc2.train, "%s/missing.txt", tmpdir);
    rc = hlab_train_run(&c2, &tc, &dc2, hk, NULL, NULL, NULL, &res, &err);
    CHECK(rc == HLAB_EIO && strstr(err.msg, "missing.txt: cannot open"), "missing data: %s", err.msg);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/hlab_test_ckpt_XXXXXX");
    if (!mkdtemp(tmpdir)) return 1;
    hlab_err err = {0};
    hk = hk_cpu_create(HK_F32, 2, &err);
    if (!hk) {
        fprintf(stderr, "cpu backend: %s\n", err.msg);
        return 1;
    }
    hlab_log_set_level(HLAB_LOG_WARN);
    test_round_trip();
    test_loop();
    hk_destroy(hk);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    return test_summary();
}
