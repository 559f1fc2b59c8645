/* tests/train/test_data.c — token shards and byte data: round trips, the
 * train/validation split, window sampling, and the errors on bad files.
 * Shards whose token i is i make every window's position checkable. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test.h"
#include "train/train.h"

static char tmpdir[256];

static void path_in_tmp(char *out, size_t cap, const char *name) { snprintf(out, cap, "%s/%s", tmpdir, name); }

static void write_raw(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        exit(1);
    }
    fwrite(data, 1, n, f);
    fclose(f);
}

static void test_shard_round_trip(void) {
    hlab_rng rng;
    hlab_rng_seed(&rng, 7);
    int64_t n = 1000 + (int64_t)hlab_rng_below(&rng, 500);
    uint16_t *tok = malloc((size_t)n * sizeof *tok);
    int maxtok = 0;
    for (int64_t i = 0; i < n; i++) {
        tok[i] = (uint16_t)hlab_rng_below(&rng, 60000);
        if (tok[i] > maxtok) maxtok = tok[i];
    }
    char path[512];
    path_in_tmp(path, sizeof path, "round.bin");
    hlab_err err = {0};
    CHECK(hlab_shard_write(path, tok, n, &err) == HLAB_OK, "shard write: %s", err.msg);

    /* the same file as train and val; one val window of n-1 tokens covers it all */
    hlab_data_config dc;
    hlab_data_config_defaults(&dc);
    dc.tokenizer = HLAB_TOK_SHARDS;
    snprintf(dc.train, sizeof dc.train, "%s", path);
    snprintf(dc.val, sizeof dc.val, "%s", path);
    hlab_dataset *d = NULL;
    CHECK(hlab_dataset_open(&dc, &d, &err) == HLAB_OK, "open: %s", err.msg);
    if (!d) return;
    CHECK(hlab_dataset_tokens(d, 0) == n && hlab_dataset_tokens(d, 1) == n, "token counts %lld %lld, expected %lld",
          (long long)hlab_dataset_tokens(d, 0), (long long)hlab_dataset_tokens(d, 1), (long long)n);
    int vocab = hlab_dataset_vocab(d);
    CHECK(vocab > maxtok && vocab % 64 == 0 && vocab - maxtok <= 64, "vocab %d for max token %d", vocab, maxtok);
    int32_t *x = malloc((size_t)n * sizeof *x), *y = malloc((size_t)n * sizeof *y);
    for (int64_t i = 0; i < n; i++) x[i] = y[i] = -1;
    CHECK(hlab_dataset_val_batch(d, 0, 1, (int)(n - 1), x, y, &err) == HLAB_OK, "val batch: %s", err.msg);
    int bad = 0;
    for (int64_t i = 0; i < n - 1; i++) bad += x[i] != tok[i] || y[i] != tok[i + 1];
    CHECK(bad == 0, "%d tokens differ after the shard round trip", bad);
    hlab_dataset_close(d);

    /* a glob over two shards reads them in name order */
    char p1[512], p2[512];
    path_in_tmp(p1, sizeof p1, "glob_000.bin");
    path_in_tmp(p2, sizeof p2, "glob_001.bin");
    hlab_shard_write(p1, tok, n / 2, &err);
    hlab_shard_write(p2, tok + n / 2, n - n / 2, &err);
    path_in_tmp(dc.train, sizeof dc.train, "glob_*.bin");
    snprintf(dc.val, sizeof dc.val, "%s", path);
    CHECK(hlab_dataset_open(&dc, &d, &err) == HLAB_OK, "open glob: %s", err.msg);
    if (d) {
        CHECK(hlab_dataset_tokens(d, 0) == n, "glob read %lld tokens, expected %lld", (long long)hlab_dataset_tokens(d, 0),
              (long long)n);
        hlab_dataset_close(d);
    }
    free(x);
    free(y);
    free(tok);
}

/* Opens a file expected to fail; the message must contain want. */
static void expect_open_error(const char *train, hlab_tokenizer tk, const char *want) {
    hlab_data_config dc;
    hlab_data_config_defaults(&dc);
    dc.tokenizer = tk;
    snprintf(dc.train, sizeof dc.train, "%s", train);
    hlab_dataset *d = NULL;
    hlab_err err = {0};
    int rc = hlab_dataset_open(&dc, &d, &err);
    CHECK(rc != HLAB_OK && d == NULL, "opening %s should fail", train);
    CHECK(strstr(err.msg, want) != NULL, "message '%s' lacks '%s'", err.msg, want);
    CHECK(strstr(err.msg, train) != NULL, "message '%s' lacks the file name", err.msg);
    CHECK(strchr(err.msg, '\n') == NULL, "message has a newline");
    hlab_dataset_close(d);
}

static void test_corrupt_shards(void) {
    uint16_t tok[300];
    for (int i = 0; i < 300; i++) tok[i] = (uint16_t)(i * 7);
    char good[512], path[512];
    hlab_err err;
    path_in_tmp(good, sizeof good, "good.bin");
    hlab_shard_write(good, tok, 300, &err);
    char *bytes;
    size_t n;
    if (hlab_read_file(good, &bytes, &n, &err)) exit(1);
    char *copy = malloc(n);

    memcpy(copy, bytes, n);
    path_in_tmp(path, sizeof path, "badmagic.bin");
    copy[0] = (char)0xd2, copy[1] = 0x04, copy[2] = 0, copy[3] = 0; /* 1234 little-endian */
    write_raw(path, copy, n);
    expect_open_error(path, HLAB_TOK_SHARDS, "not a token shard (magic 1234, expected 20240520)");

    memcpy(copy, bytes, n);
    path_in_tmp(path, sizeof path, "badversion.bin");
    copy[4] = 9;
    write_raw(path, copy, n);
    expect_open_error(path, HLAB_TOK_SHARDS, "version 9");

    path_in_tmp(path, sizeof path, "truncated.bin");
    write_raw(path, bytes, n - 101);
    expect_open_error(path, HLAB_TOK_SHARDS, "header says 300 tokens");
    path_in_tmp(path, sizeof path, "tiny.bin");
    write_raw(path, bytes, 6);
    expect_open_error(path, HLAB_TOK_SHARDS, "not a token shard");
    free(copy);
    free(bytes);

    path_in_tmp(path, sizeof path, "does_not_exist.txt");
    expect_open_error(path, HLAB_TOK_BYTES, "cannot open");
    path_in_tmp(path, sizeof path, "empty.txt");
    write_raw(path, "", 0);
    expect_open_error(path, HLAB_TOK_BYTES, "empty");
}

/* Shard token i = i: windows reveal where they start. */
static void test_split_and_windows(void) {
    const int64_t n = 20000;
    uint16_t *tok = malloc((size_t)n * sizeof *tok);
    for (int64_t i = 0; i < n; i++) tok[i] = (uint16_t)i;
    char path[512];
    hlab_err err = {0};
    path_in_tmp(path, sizeof path, "ramp.bin");
    hlab_shard_write(path, tok, n, &err);
    hlab_data_config dc;
    hlab_data_config_defaults(&dc);
    dc.tokenizer = HLAB_TOK_SHARDS;
    dc.val_fraction = 0.1f;
    snprintf(dc.train, sizeof dc.train, "%s", path);
    hlab_dataset *d = NULL;
    CHECK(hlab_dataset_open(&dc, &d, &err) == HLAB_OK, "open: %s", err.msg);
    if (!d) return;
    int64_t ntr = hlab_dataset_tokens(d, 0), nva = hlab_dataset_tokens(d, 1);
    CHECK(nva == (int64_t)(n * 0.1f) && ntr + nva == n, "split %lld + %lld of %lld", (long long)ntr, (long long)nva,
          (long long)n);

    const int B = 5, T = 37;
    int32_t x[5 * 37], y[5 * 37], x2[5 * 37], y2[5 * 37];
    hlab_rng r1, r2;
    hlab_rng_seed(&r1, 99);
    hlab_rng_seed(&r2, 99);
    int bad_contig = 0, bad_region = 0, differ = 0;
    for (int it = 0; it < 50; it++) {
        memset(x, 0xff, sizeof x);
        memset(x2, 0xff, sizeof x2);
        hlab_dataset_batch(d, 0, &r1, B, T, x, y, &err);
        hlab_dataset_batch(d, 0, &r2, B, T, x2, y2, &err);
        differ += memcmp(x, x2, sizeof x) != 0 || memcmp(y, y2, sizeof y) != 0;
        for (int b = 0; b < B; b++) {
            int32_t s = x[b * T];
            for (int t = 0; t < T; t++) bad_contig += x[b * T + t] != s + t || y[b * T + t] != s + t + 1;
            bad_region += s < 0 || s + T >= ntr; /* the last target must stay in the training split */
        }
    }
    CHECK(differ == 0, "the same seed gave different batches %d times", differ);
    CHECK(bad_contig == 0, "%d window tokens not contiguous", bad_contig);
    CHECK(bad_region == 0, "%d windows reach outside the training split", bad_region);

    /* validation windows: fixed, inside the validation split, non-overlapping */
    int bad_val = 0;
    for (int i = 0; i < 4; i++) {
        hlab_dataset_val_batch(d, i, B, T, x, y, &err);
        hlab_dataset_val_batch(d, i, B, T, x2, y2, &err);
        bad_val += memcmp(x, x2, sizeof x) != 0;
        for (int b = 0; b < B; b++) {
            int32_t s = x[b * T];
            bad_val += s < ntr || s + T >= n || (s - ntr) % T != 0 || y[b * T + T - 1] != s + T;
        }
    }
    CHECK(bad_val == 0, "%d validation windows wrong", bad_val);
    CHECK(hlab_dataset_val_batch(d, 0, 1, (int)nva, x, y, &err) != HLAB_OK && strstr(err.msg, "validation"),
          "a window longer than the validation split must fail: %s", err.msg);
    hlab_dataset_close(d);
    free(tok);
}

/* Bytes: vocabulary 256, the split is the file's tail, bit for bit. */
static void test_bytes(void) {
    char path[512];
    path_in_tmp(path, sizeof path, "text.txt");
    hlab_rng rng;
    hlab_rng_seed(&rng, 3);
    size_t n = 4321;
    unsigned char *text = malloc(n);
    for (size_t i = 0; i < n; i++) text[i] = (unsigned char)hlab_rng_below(&rng, 256);
    write_raw(path, text, n);
    hlab_data_config dc;
    hlab_data_config_defaults(&dc);
    dc.val_fraction = 0.25f;
    snprintf(dc.train, sizeof dc.train, "%s", path);
    hlab_dataset *d = NULL;
    hlab_err err = {0};
    CHECK(hlab_dataset_open(&dc, &d, &err) == HLAB_OK, "open: %s", err.msg);
    if (!d) return;
    CHECK(hlab_dataset_vocab(d) == 256, "byte vocabulary %d", hlab_dataset_vocab(d));
    int64_t nva = hlab_dataset_tokens(d, 1), ntr = hlab_dataset_tokens(d, 0);
    CHECK(nva == (int64_t)(n * 0.25f) && ntr + nva == (int64_t)n, "split %lld + %lld", (long long)ntr, (long long)nva);
    int T = (int)nva - 1;
    int32_t *x = malloc((size_t)T * sizeof *x), *y = malloc((size_t)T * sizeof *y);
    hlab_dataset_val_batch(d, 0, 1, T, x, y, &err);
    int bad = 0;
    for (int t = 0; t < T; t++) bad += x[t] != text[ntr + t] || y[t] != text[ntr + t + 1];
    CHECK(bad == 0, "%d validation bytes differ from the file's tail", bad);
    free(x);
    free(y);
    free(text);
    hlab_dataset_close(d);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/hlab_test_data_XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    test_shard_round_trip();
    test_corrupt_shards();
    test_split_and_windows();
    test_bytes();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    return test_summary();
}
