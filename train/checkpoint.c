/* train/checkpoint.c — checkpoints as safetensors files.
 *
 * Layout: u64 little-endian header length N; N bytes of JSON (padded with
 * spaces to a multiple of 8 so tensor data stays aligned); raw little-endian
 * tensor data. The header maps each tensor name to {"dtype", "shape",
 * "data_offsets": [begin, end)} (offsets relative to the data section) and
 * holds "__metadata__" (string values only, as the format requires).
 *
 * Tensors: every model parameter under its hlab_param_info name, then its
 * AdamW moments as "optim.m.<name>" and "optim.v.<name>". dtype is the
 * backend's real dtype (F32, or F64 for cpu-f64), so a resumed run restarts
 * from exactly the bits it stopped with. docs/TRAINING.md lists the names.
 *
 * The writer builds the whole file in memory and writes it atomically (tmp,
 * fsync, rename), so a crash leaves either the old or the new checkpoint.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/train.h"

#define CKPT_FORMAT "hlab-checkpoint-1"

/* ---- writing --------------------------------------------------------------- */
static const char *st_dtype(hk_dtype t) { return t == HK_F64 ? "F64" : "F32"; }

static void put_tensor_header(hlab_buf *h, const char *prefix, const hlab_param_info *p, const char *dtype,
                              uint64_t begin, uint64_t end, int *first) {
    if (!*first) hlab_buf_puts(h, ",");
    *first = 0;
    char name[160];
    snprintf(name, sizeof name, "%s%s", prefix, p->name);
    hlab_buf_json_string(h, name);
    hlab_buf_printf(h, ":{\"dtype\":\"%s\",\"shape\":[", dtype);
    for (int d = 0; d < p->ndim; d++) hlab_buf_printf(h, "%s%d", d ? "," : "", p->shape[d]);
    hlab_buf_printf(h, "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}", begin, end);
}

static void meta_pair(hlab_buf *h, const char *key, const char *value) {
    hlab_buf_puts(h, ",");
    hlab_buf_json_string(h, key);
    hlab_buf_puts(h, ":");
    hlab_buf_json_string(h, value);
}

int hlab_checkpoint_write(const char *path, hlab_model *m, const void *adam_m, const void *adam_v,
                          const hlab_checkpoint_meta *meta, hlab_err *err) {
    hk_backend *hk = hlab_model_backend(m);
    hk_dtype rt = hk->real;
    size_t es = hk_dtype_size(rt);
    int n_tensors;
    int64_t n_elements;
    hlab_model_n_params(m, &n_tensors, &n_elements);
    const void *blocks[3] = {hlab_model_params(m), adam_m, adam_v};
    const char *prefixes[3] = {"", "optim.m.", "optim.v."};
    int n_blocks = adam_m && adam_v ? 3 : 1;

    hlab_buf h, cfg;
    hlab_buf_init(&h);
    hlab_buf_init(&cfg);
    int rc = hlab_model_config_to_json(hlab_model_config_of(m), &cfg, err);
    if (rc) goto out;
    hlab_buf_puts(&h, "{\"__metadata__\":{\"format\":\"" CKPT_FORMAT "\"");
    char tmp[64];
    snprintf(tmp, sizeof tmp, "%d", meta->step);
    meta_pair(&h, "step", tmp);
    snprintf(tmp, sizeof tmp, "%" PRIu64, meta->seed);
    meta_pair(&h, "seed", tmp);
    snprintf(tmp, sizeof tmp, "%016" PRIx64, meta->run_hash);
    meta_pair(&h, "run_hash", tmp);
    snprintf(tmp, sizeof tmp, "%a", meta->first_loss); /* hex float: exact round trip */
    meta_pair(&h, "first_loss", tmp);
    meta_pair(&h, "data_rng", "xoshiro256** seeded per step from (seed, step)");
    meta_pair(&h, "backend", hk->name);
    meta_pair(&h, "model_config", cfg.data ? cfg.data : "");
    hlab_buf_puts(&h, "}");
    int first = 0;
    uint64_t off = 0;
    for (int b = 0; b < n_blocks; b++)
        for (int i = 0; i < n_tensors; i++) {
            const hlab_param_info *p = hlab_model_param(m, i);
            uint64_t bytes = (uint64_t)p->numel * es;
            put_tensor_header(&h, prefixes[b], p, st_dtype(rt), off, off + bytes, &first);
            off += bytes;
        }
    hlab_buf_puts(&h, "}");
    while (h.len % 8) hlab_buf_puts(&h, " ");
    if ((rc = hlab_buf_status(&h, err))) goto out;

    size_t total = 8 + h.len + (size_t)off;
    unsigned char *file = malloc(total);
    if (!file) {
        rc = hlab_fail(err, HLAB_ENOMEM, "%s: out of memory for a %zu-byte checkpoint", path, total);
        goto out;
    }
    for (int i = 0; i < 8; i++) file[i] = (unsigned char)((uint64_t)h.len >> (8 * i));
    memcpy(file + 8, h.data, h.len);
    unsigned char *data = file + 8 + h.len;
    /* Parameters are one contiguous block in hlab_param_info order of offsets;
     * copy tensor by tensor so the file order is the documented one. */
    size_t pos = 0;
    for (int b = 0; b < n_blocks; b++)
        for (int i = 0; i < n_tensors; i++) {
            const hlab_param_info *p = hlab_model_param(m, i);
            hk->to_host(hk, data + pos, rt, (const char *)blocks[b] + (size_t)p->offset * es, rt, (size_t)p->numel);
            pos += (size_t)p->numel * es;
        }
    rc = hk->sync(hk, err);
    if (!rc) rc = hlab_write_file_atomic(path, file, total, err);
    free(file);
out:
    hlab_buf_free(&h);
    hlab_buf_free(&cfg);
    return rc;
}

int hlab_checkpoint_save(const char *path, hlab_model *m, const void *adam_m, const void *adam_v, int step,
                         uint64_t rng_state_hash, hlab_err *err) {
    hlab_checkpoint_meta meta = {.step = step, .seed = 0, .run_hash = rng_state_hash, .first_loss = NAN};
    return hlab_checkpoint_write(path, m, adam_m, adam_v, &meta, err);
}

/* ---- a minimal JSON reader for the header --------------------------------------
 * Enough for what the writer produces and for other writers' safetensors:
 * objects, arrays, strings with escapes, numbers, true/false/null. */
typedef struct {
    const char *s, *end, *begin;
    const char *path;
    hlab_err *err;
    int failed;
} jreader;

static int jfail(jreader *r, const char *what) {
    if (!r->failed)
        hlab_fail(r->err, HLAB_EINVAL, "%s: corrupt checkpoint header (at byte %ld of the JSON: %s)", r->path,
                  (long)(r->s - r->begin), what);
    r->failed = 1;
    return HLAB_EINVAL;
}

static void jspace(jreader *r) {
    while (r->s < r->end && (*r->s == ' ' || *r->s == '\n' || *r->s == '\t' || *r->s == '\r')) r->s++;
}

static int jexpect(jreader *r, char c) {
    jspace(r);
    if (r->s >= r->end || *r->s != c) {
        char what[32];
        snprintf(what, sizeof what, "expected '%c'", c);
        return jfail(r, what);
    }
    r->s++;
    return HLAB_OK;
}

/* Reads a string into out (truncated to cap; escapes \uXXXX kept as '?'). */
static int jstring(jreader *r, char *out, size_t cap) {
    if (jexpect(r, '"')) return HLAB_EINVAL;
    size_t n = 0;
    while (r->s < r->end && *r->s != '"') {
        char c = *r->s++;
        if (c == '\\') {
            if (r->s >= r->end) break;
            char e = *r->s++;
            c = e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r' : e == 'b' ? '\b' : e == 'f' ? '\f' : e;
            if (e == 'u') {
                if (r->end - r->s < 4) break;
                r->s += 4;
                c = '?';
            }
        }
        if (out && n + 1 < cap) out[n++] = c;
    }
    if (r->s >= r->end) return jfail(r, "unterminated string");
    r->s++;
    if (out) out[n] = 0;
    return HLAB_OK;
}

static int jint(jreader *r, uint64_t *out) {
    jspace(r);
    if (r->s >= r->end || *r->s < '0' || *r->s > '9') return jfail(r, "expected a non-negative integer");
    uint64_t v = 0;
    while (r->s < r->end && *r->s >= '0' && *r->s <= '9') {
        if (v > (UINT64_MAX - 9) / 10) return jfail(r, "integer too large");
        v = v * 10 + (uint64_t)(*r->s++ - '0');
    }
    *out = v;
    return HLAB_OK;
}

static int jskip(jreader *r, int depth);
static int jskip_container(jreader *r, char close, int is_obj, int depth) {
    r->s++;
    jspace(r);
    if (r->s < r->end && *r->s == close) {
        r->s++;
        return HLAB_OK;
    }
    for (;;) {
        if (is_obj) {
            if (jstring(r, NULL, 0) || jexpect(r, ':')) return HLAB_EINVAL;
        }
        if (jskip(r, depth + 1)) return HLAB_EINVAL;
        jspace(r);
        if (r->s < r->end && *r->s == ',') {
            r->s++;
            continue;
        }
        return jexpect(r, close);
    }
}
static int jskip(jreader *r, int depth) {
    jspace(r);
    if (depth > 32) return jfail(r, "nesting too deep");
    if (r->s >= r->end) return jfail(r, "unexpected end");
    char c = *r->s;
    if (c == '"') return jstring(r, NULL, 0);
    if (c == '{') return jskip_container(r, '}', 1, depth);
    if (c == '[') return jskip_container(r, ']', 0, depth);
    const char *start = r->s;
    while (r->s < r->end && (strchr("+-.eE", *r->s) || (*r->s >= '0' && *r->s <= '9') || (*r->s >= 'a' && *r->s <= 'z')))
        r->s++;
    return r->s > start ? HLAB_OK : jfail(r, "expected a value");
}

typedef struct {
    char name[160];
    char dtype[8];
    int ndim;
    int64_t shape[8];
    uint64_t begin, end;
} st_tensor;

typedef struct {
    st_tensor *t;
    int n, cap;
    char format[64], step[32], seed[32], run_hash[32], first_loss[64];
    char *model_config; /* malloc'ed */
} st_header;

static int parse_tensor(jreader *r, st_tensor *t) {
    if (jexpect(r, '{')) return HLAB_EINVAL;
    for (;;) {
        char key[32];
        if (jstring(r, key, sizeof key) || jexpect(r, ':')) return HLAB_EINVAL;
        if (!strcmp(key, "dtype")) {
            if (jstring(r, t->dtype, sizeof t->dtype)) return HLAB_EINVAL;
        } else if (!strcmp(key, "shape") || !strcmp(key, "data_offsets")) {
            int is_shape = key[0] == 's', n = 0;
            uint64_t v[8];
            if (jexpect(r, '[')) return HLAB_EINVAL;
            jspace(r);
            if (r->s < r->end && *r->s == ']') r->s++;
            else
                for (;;) {
                    if (n == 8) return jfail(r, "too many dimensions");
                    if (jint(r, &v[n++])) return HLAB_EINVAL;
                    jspace(r);
                    if (r->s < r->end && *r->s == ',') {
                        r->s++;
                        continue;
                    }
                    if (jexpect(r, ']')) return HLAB_EINVAL;
                    break;
                }
            if (is_shape) {
                t->ndim = n;
                for (int i = 0; i < n; i++) t->shape[i] = (int64_t)v[i];
            } else {
                if (n != 2 || v[1] < v[0]) return jfail(r, "data_offsets must be [begin, end]");
                t->begin = v[0];
                t->end = v[1];
            }
        } else if (jskip(r, 1)) {
            return HLAB_EINVAL;
        }
        jspace(r);
        if (r->s < r->end && *r->s == ',') {
            r->s++;
            continue;
        }
        return jexpect(r, '}');
    }
}

static int parse_metadata(jreader *r, st_header *h) {
    if (jexpect(r, '{')) return HLAB_EINVAL;
    jspace(r);
    if (r->s < r->end && *r->s == '}') {
        r->s++;
        return HLAB_OK;
    }
    for (;;) {
        char key[64];
        if (jstring(r, key, sizeof key) || jexpect(r, ':')) return HLAB_EINVAL;
        char *dst = NULL;
        size_t cap = 0;
        if (!strcmp(key, "format")) dst = h->format, cap = sizeof h->format;
        else if (!strcmp(key, "step")) dst = h->step, cap = sizeof h->step;
        else if (!strcmp(key, "seed")) dst = h->seed, cap = sizeof h->seed;
        else if (!strcmp(key, "run_hash")) dst = h->run_hash, cap = sizeof h->run_hash;
        else if (!strcmp(key, "first_loss")) dst = h->first_loss, cap = sizeof h->first_loss;
        else if (!strcmp(key, "model_config")) {
            cap = (size_t)(r->end - r->s) + 1;
            free(h->model_config);
            h->model_config = dst = malloc(cap);
            if (!dst) return jfail(r, "out of memory");
        }
        if (dst ? jstring(r, dst, cap) : jskip(r, 1)) return HLAB_EINVAL;
        jspace(r);
        if (r->s < r->end && *r->s == ',') {
            r->s++;
            continue;
        }
        return jexpect(r, '}');
    }
}

static int parse_header(jreader *r, st_header *h) {
    if (jexpect(r, '{')) return HLAB_EINVAL;
    jspace(r);
    if (r->s < r->end && *r->s == '}') {
        r->s++;
        return HLAB_OK;
    }
    for (;;) {
        char key[160];
        if (jstring(r, key, sizeof key) || jexpect(r, ':')) return HLAB_EINVAL;
        if (!strcmp(key, "__metadata__")) {
            if (parse_metadata(r, h)) return HLAB_EINVAL;
        } else {
            if (h->n == h->cap) {
                int cap = h->cap ? 2 * h->cap : 64;
                st_tensor *t = realloc(h->t, (size_t)cap * sizeof *t);
                if (!t) return jfail(r, "out of memory");
                h->t = t;
                h->cap = cap;
            }
            st_tensor *t = &h->t[h->n++];
            memset(t, 0, sizeof *t);
            snprintf(t->name, sizeof t->name, "%s", key);
            if (parse_tensor(r, t)) return HLAB_EINVAL;
        }
        jspace(r);
        if (r->s < r->end && *r->s == ',') {
            r->s++;
            continue;
        }
        return jexpect(r, '}');
    }
}

static const st_tensor *find_tensor(const st_header *h, const char *name) {
    for (int i = 0; i < h->n; i++)
        if (!strcmp(h->t[i].name, name)) return &h->t[i];
    return NULL;
}

/* Names the key of the first difference between two JSON texts written by
 * the same code: the nearest '"key":' before the first differing byte. */
static void first_difference(const char *a, const char *b, char *out, size_t cap) {
    size_t i = 0;
    while (a[i] && a[i] == b[i]) i++;
    size_t close = i; /* the closing quote of that key */
    while (close > 0 && !(a[close] == '"' && a[close + 1] == ':')) close--;
    size_t open = close > 0 ? close - 1 : 0;
    while (open > 0 && a[open] != '"') open--;
    if (close > open + 1) snprintf(out, cap, "%.*s", (int)(close - open - 1), a + open + 1);
    else snprintf(out, cap, "?");
}

int hlab_checkpoint_read(const char *path, hlab_model *m, void *adam_m, void *adam_v, hlab_checkpoint_meta *meta,
                         hlab_err *err) {
    char *file;
    size_t size;
    int rc = hlab_read_file(path, &file, &size, err);
    if (rc) return rc;
    st_header h;
    memset(&h, 0, sizeof h);
    hlab_buf cfg;
    hlab_buf_init(&cfg);
    const unsigned char *u = (const unsigned char *)file;
    if (size < 8) {
        rc = hlab_fail(err, HLAB_EINVAL, "%s: truncated checkpoint (%zu bytes, shorter than the 8-byte header length)",
                       path, size);
        goto out;
    }
    uint64_t hlen = 0;
    for (int i = 0; i < 8; i++) hlen |= (uint64_t)u[i] << (8 * i);
    if (hlen > size - 8) {
        rc = hlab_fail(err, HLAB_EINVAL, "%s: truncated or not a checkpoint (header length %" PRIu64 ", file has %zu bytes)",
                       path, hlen, size);
        goto out;
    }
    jreader r = {file + 8, file + 8 + hlen, file + 8, path, err, 0};
    if (parse_header(&r, &h)) {
        rc = HLAB_EINVAL;
        goto out;
    }
    if (strcmp(h.format, CKPT_FORMAT) || !h.model_config) {
        rc = hlab_fail(err, HLAB_EINVAL, "%s: not an hlab checkpoint (metadata format '%s', expected '%s')", path,
                       h.format, CKPT_FORMAT);
        goto out;
    }
    {
        /* every tensor the header lists must lie inside the file, whichever we load */
        uint64_t data_len = size - 8 - hlen;
        for (int i = 0; i < h.n; i++)
            if (h.t[i].end > data_len) {
                rc = hlab_fail(err, HLAB_EINVAL,
                               "%s: truncated checkpoint (tensor '%s' ends at byte %" PRIu64 " of data, file holds %" PRIu64
                               ")",
                               path, h.t[i].name, h.t[i].end, data_len);
                goto out;
            }
    }
    if ((rc = hlab_model_config_to_json(hlab_model_config_of(m), &cfg, err))) goto out;
    if (strcmp(cfg.data, h.model_config)) {
        char key[96];
        first_difference(cfg.data, h.model_config, key, sizeof key);
        rc = hlab_fail(err, HLAB_EINVAL, "%s: checkpoint holds a different model (config differs at '%s'); "
                                         "use another --ckpt file or the checkpoint's config",
                       path, key);
        goto out;
    }
    hk_backend *hk = hlab_model_backend(m);
    size_t es = hk_dtype_size(hk->real);
    const unsigned char *data = u + 8 + hlen;
    uint64_t data_len = size - 8 - hlen;
    int n_tensors;
    int64_t n_elements;
    hlab_model_n_params(m, &n_tensors, &n_elements);
    void *blocks[3] = {hlab_model_params(m), adam_m, adam_v};
    const char *prefixes[3] = {"", "optim.m.", "optim.v."};
    for (int b = 0; b < 3; b++) {
        if (!blocks[b]) continue;
        for (int i = 0; i < n_tensors; i++) {
            const hlab_param_info *p = hlab_model_param(m, i);
            char name[160];
            snprintf(name, sizeof name, "%s%s", prefixes[b], p->name);
            const st_tensor *t = find_tensor(&h, name);
            if (!t) {
                rc = hlab_fail(err, HLAB_EINVAL, "%s: checkpoint has no tensor '%s'", path, name);
                goto out;
            }
            hk_dtype ft = !strcmp(t->dtype, "F64") ? HK_F64 : HK_F32;
            if (strcmp(t->dtype, "F32") && strcmp(t->dtype, "F64")) {
                rc = hlab_fail(err, HLAB_EINVAL, "%s: tensor '%s' has dtype %s (expected F32 or F64)", path, name,
                               t->dtype);
                goto out;
            }
            int same = t->ndim == p->ndim;
            for (int d = 0; same && d < p->ndim; d++) same = t->shape[d] == p->shape[d];
            if (!same || t->end - t->begin != (uint64_t)p->numel * hk_dtype_size(ft)) {
                rc = hlab_fail(err, HLAB_EINVAL, "%s: tensor '%s' has the wrong shape or size", path, name);
                goto out;
            }
            if (t->end > data_len) {
                rc = hlab_fail(err, HLAB_EINVAL,
                               "%s: truncated checkpoint (tensor '%s' ends at byte %" PRIu64 " of data, file holds %" PRIu64
                               ")",
                               path, name, t->end, data_len);
                goto out;
            }
            /* from_host needs aligned source; copy through an aligned buffer */
            void *tmp = malloc((size_t)(t->end - t->begin));
            if (!tmp) {
                rc = hlab_fail(err, HLAB_ENOMEM, "%s: out of memory", path);
                goto out;
            }
            memcpy(tmp, data + t->begin, (size_t)(t->end - t->begin));
            hk->from_host(hk, (char *)blocks[b] + (size_t)p->offset * es, hk->real, tmp, ft, (size_t)p->numel);
            rc = hk->sync(hk, err);
            free(tmp);
            if (rc) goto out;
        }
    }
    hlab_model_params_changed(m);
    if (meta) {
        meta->step = atoi(h.step);
        meta->seed = strtoull(h.seed, NULL, 10);
        meta->run_hash = strtoull(h.run_hash, NULL, 16);
        meta->first_loss = h.first_loss[0] ? strtod(h.first_loss, NULL) : NAN;
    }
out:
    free(h.t);
    free(h.model_config);
    hlab_buf_free(&cfg);
    free(file);
    return rc;
}
