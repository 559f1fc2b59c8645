/* train/data.c — token streams: any file as bytes (vocabulary 256), or llm.c
 * token shards. The whole stream is held in memory as uint16 tokens.
 *
 * Conventions: split 0 is training, 1 validation. Without a separate
 * validation file, the LAST val_fraction of the training stream is validation
 * (deterministic, no shuffling). Training windows are random and contiguous,
 * drawn from the caller's hlab_rng; validation windows are fixed: batch i
 * always reads the same non-overlapping windows, so every evaluation and
 * every run sees the same text.
 *
 * Shard format (llm.c): 256 little-endian int32 header words — [0] magic
 * 20240520, [1] version 1, [2] token count — then count uint16 tokens.
 */
#include <errno.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/train.h"

#define SHARD_MAGIC 20240520
#define SHARD_VERSION 1
#define SHARD_HEADER_WORDS 256
#define SHARD_HEADER_BYTES (SHARD_HEADER_WORDS * 4)

struct hlab_dataset {
    uint16_t *train, *val; /* val may point into train's buffer */
    int64_t n_train, n_val;
    uint16_t *owned[2];    /* buffers to free */
    int vocab;
};

static uint32_t read_le32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static void write_le32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}

void hlab_data_config_defaults(hlab_data_config *c) {
    memset(c, 0, sizeof *c);
    c->tokenizer = HLAB_TOK_BYTES;
    c->val_fraction = 0.05f;
}

/* ---- readers --------------------------------------------------------------- */
static int read_bytes_file(const char *path, uint16_t **out, int64_t *n, hlab_err *err) {
    char *raw;
    size_t len;
    int rc = hlab_read_file(path, &raw, &len, err);
    if (rc) return rc;
    if (len == 0) {
        free(raw);
        return hlab_fail(err, HLAB_EINVAL, "%s: the data file is empty", path);
    }
    uint16_t *t = malloc(len * sizeof *t);
    if (!t) {
        free(raw);
        return hlab_fail(err, HLAB_ENOMEM, "%s: out of memory for %zu tokens", path, len);
    }
    for (size_t i = 0; i < len; i++) t[i] = (unsigned char)raw[i];
    free(raw);
    *out = t;
    *n = (int64_t)len;
    return HLAB_OK;
}

/* Appends one shard's tokens to *buf (grown with realloc). */
static int read_shard(const char *path, uint16_t **buf, int64_t *n, hlab_err *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return hlab_fail(err, HLAB_EIO, "%s: cannot open (%s)", path, strerror(errno));
    unsigned char hdr[SHARD_HEADER_BYTES];
    int rc = HLAB_OK;
    size_t got = fread(hdr, 1, sizeof hdr, f);
    if (got < 12) {
        rc = hlab_fail(err, HLAB_EINVAL, "%s: not a token shard (%zu bytes, shorter than the %d-byte header)", path, got,
                       SHARD_HEADER_BYTES);
        goto done;
    }
    uint32_t magic = read_le32(hdr), version = read_le32(hdr + 4), count = read_le32(hdr + 8);
    if (magic != SHARD_MAGIC) {
        rc = hlab_fail(err, HLAB_EINVAL, "%s: not a token shard (magic %u, expected %d)", path, magic, SHARD_MAGIC);
        goto done;
    }
    if (version != SHARD_VERSION) {
        rc = hlab_fail(err, HLAB_EINVAL, "%s: unsupported token shard version %u (expected %d)", path, version,
                       SHARD_VERSION);
        goto done;
    }
    if (got < sizeof hdr) {
        rc = hlab_fail(err, HLAB_EINVAL, "%s: truncated token shard header (%zu of %d bytes)", path, got,
                       SHARD_HEADER_BYTES);
        goto done;
    }
    if (fseek(f, 0, SEEK_END) != 0) {
        rc = hlab_fail(err, HLAB_EIO, "%s: cannot seek (%s)", path, strerror(errno));
        goto done;
    }
    long size = ftell(f);
    int64_t expect = SHARD_HEADER_BYTES + 2 * (int64_t)count;
    if (size != expect) {
        rc = hlab_fail(err, HLAB_EINVAL, "%s: header says %u tokens (%lld bytes) but the file has %ld bytes", path, count,
                       (long long)expect, size);
        goto done;
    }
    if (count == 0) {
        rc = hlab_fail(err, HLAB_EINVAL, "%s: the token shard holds no tokens", path);
        goto done;
    }
    uint16_t *grown = realloc(*buf, (size_t)(*n + count) * sizeof **buf);
    if (!grown) {
        rc = hlab_fail(err, HLAB_ENOMEM, "%s: out of memory for %u tokens", path, count);
        goto done;
    }
    *buf = grown;
    unsigned char *raw = (unsigned char *)(grown + *n);
    if (fseek(f, SHARD_HEADER_BYTES, SEEK_SET) != 0 || fread(raw, 2, count, f) != count) {
        rc = hlab_fail(err, HLAB_EIO, "%s: read failed", path);
        goto done;
    }
    for (uint32_t i = 0; i < count; i++) /* little-endian on disk, whatever the host */
        grown[*n + i] = (uint16_t)(raw[2 * i] | raw[2 * i + 1] << 8);
    *n += count;
done:
    fclose(f);
    return rc;
}

/* A path or a glob pattern; shards are read in sorted name order. */
static int read_shards(const char *pattern, uint16_t **out, int64_t *n, hlab_err *err) {
    *out = NULL;
    *n = 0;
    int rc = HLAB_OK;
    if (!strpbrk(pattern, "*?[")) {
        rc = read_shard(pattern, out, n, err);
    } else {
        glob_t g;
        int grc = glob(pattern, 0, NULL, &g);
        if (grc == GLOB_NOMATCH || (grc == 0 && g.gl_pathc == 0)) {
            if (grc == 0) globfree(&g);
            return hlab_fail(err, HLAB_EIO, "%s: no shard files match", pattern);
        }
        if (grc != 0) return hlab_fail(err, HLAB_EIO, "%s: cannot expand the pattern", pattern);
        for (size_t i = 0; i < g.gl_pathc && !rc; i++) rc = read_shard(g.gl_pathv[i], out, n, err);
        globfree(&g);
    }
    if (rc) {
        free(*out);
        *out = NULL;
        *n = 0;
    }
    return rc;
}

static int read_stream(const hlab_data_config *c, const char *path, uint16_t **out, int64_t *n, hlab_err *err) {
    return c->tokenizer == HLAB_TOK_SHARDS ? read_shards(path, out, n, err) : read_bytes_file(path, out, n, err);
}

int hlab_dataset_open(const hlab_data_config *c, hlab_dataset **out, hlab_err *err) {
    *out = NULL;
    if (!c->train[0]) return hlab_fail(err, HLAB_EINVAL, "data.train: no training data file given");
    if (!(c->val_fraction >= 0 && c->val_fraction < 1))
        return hlab_fail(err, HLAB_EINVAL, "data.val_fraction %g must lie in [0, 1)", c->val_fraction);
    hlab_dataset *d = calloc(1, sizeof *d);
    if (!d) return hlab_fail(err, HLAB_ENOMEM, "out of memory");
    int rc = read_stream(c, c->train, &d->owned[0], &d->n_train, err);
    if (rc) goto fail;
    d->train = d->owned[0];
    if (c->val[0]) {
        rc = read_stream(c, c->val, &d->owned[1], &d->n_val, err);
        if (rc) goto fail;
        d->val = d->owned[1];
    } else {
        int64_t nv = (int64_t)((double)d->n_train * c->val_fraction);
        d->n_train -= nv;
        d->val = d->train + d->n_train;
        d->n_val = nv;
    }
    if (c->tokenizer == HLAB_TOK_BYTES) {
        d->vocab = 256;
    } else {
        int maxtok = 0;
        for (int64_t i = 0; i < d->n_train; i++) maxtok = d->train[i] > maxtok ? d->train[i] : maxtok;
        for (int64_t i = 0; i < d->n_val; i++) maxtok = d->val[i] > maxtok ? d->val[i] : maxtok;
        d->vocab = (maxtok + 1 + 63) / 64 * 64; /* padded like llm.c's 50257 -> 50304 */
    }
    *out = d;
    return HLAB_OK;
fail:
    hlab_dataset_close(d);
    return rc;
}

void hlab_dataset_close(hlab_dataset *d) {
    if (!d) return;
    free(d->owned[0]);
    free(d->owned[1]);
    free(d);
}

int hlab_dataset_vocab(const hlab_dataset *d) { return d->vocab; }

int64_t hlab_dataset_tokens(const hlab_dataset *d, int split) { return split ? d->n_val : d->n_train; }

static void copy_window(const uint16_t *src, int64_t start, int T, int32_t *tokens, int32_t *targets) {
    for (int t = 0; t < T; t++) {
        tokens[t] = src[start + t];
        targets[t] = src[start + t + 1];
    }
}

int hlab_dataset_batch(const hlab_dataset *d, int split, hlab_rng *rng, int B, int T, int32_t *tokens,
                       int32_t *targets, hlab_err *err) {
    const uint16_t *src = split ? d->val : d->train;
    int64_t n = split ? d->n_val : d->n_train;
    if (n < (int64_t)T + 1)
        return hlab_fail(err, HLAB_EINVAL, "the %s split has %lld tokens, fewer than seq_len + 1 = %d",
                         split ? "validation" : "training", (long long)n, T + 1);
    for (int b = 0; b < B; b++) {
        int64_t start = (int64_t)hlab_rng_below(rng, (uint64_t)(n - T));
        copy_window(src, start, T, tokens + (size_t)b * T, targets + (size_t)b * T);
    }
    return HLAB_OK;
}

int hlab_dataset_val_batch(const hlab_dataset *d, int i, int B, int T, int32_t *tokens, int32_t *targets,
                           hlab_err *err) {
    if (d->n_val < (int64_t)T + 1)
        return hlab_fail(err, HLAB_EINVAL,
                         "the validation split has %lld tokens, fewer than seq_len + 1 = %d (raise data.val_fraction or "
                         "set data.val)",
                         (long long)d->n_val, T + 1);
    int64_t windows = (d->n_val - 1) / T; /* non-overlapping; wraps when evaluation asks for more */
    for (int b = 0; b < B; b++) {
        int64_t w = ((int64_t)i * B + b) % windows;
        copy_window(d->val, w * T, T, tokens + (size_t)b * T, targets + (size_t)b * T);
    }
    return HLAB_OK;
}

int hlab_shard_write(const char *path, const uint16_t *tokens, int64_t n, hlab_err *err) {
    if (n < 0 || n > 0x7fffffff) return hlab_fail(err, HLAB_EINVAL, "%s: %lld tokens do not fit a shard", path, (long long)n);
    size_t bytes = SHARD_HEADER_BYTES + 2 * (size_t)n;
    unsigned char *buf = calloc(1, bytes);
    if (!buf) return hlab_fail(err, HLAB_ENOMEM, "%s: out of memory", path);
    write_le32(buf, SHARD_MAGIC);
    write_le32(buf + 4, SHARD_VERSION);
    write_le32(buf + 8, (uint32_t)n);
    for (int64_t i = 0; i < n; i++) {
        buf[SHARD_HEADER_BYTES + 2 * i] = (unsigned char)(tokens[i] & 0xff);
        buf[SHARD_HEADER_BYTES + 2 * i + 1] = (unsigned char)(tokens[i] >> 8);
    }
    int rc = hlab_write_file_atomic(path, buf, bytes, err);
    free(buf);
    return rc;
}
