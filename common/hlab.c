/* common/hlab.c — errors, the logger, the RNG, string buffers, file helpers.
 * The logger's sink is the only process-wide state in hlab (set once at start). */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/hlab.h"

/* ---- errors ----------------------------------------------------------------- */
int hlab_fail(hlab_err *err, int code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

int hlab_err_prefix(hlab_err *err, const char *fmt, ...) {
    if (!err) return HLAB_EINVAL;
    char prefix[512], old[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    /* Truncation of an over-long message is acceptable; build it piecewise so
     * the compiler can see the bounds. */
    size_t n = strlen(prefix);
    if (n > sizeof err->msg - 3) n = sizeof err->msg - 3;
    memcpy(err->msg, prefix, n);
    memcpy(err->msg + n, ": ", 2);
    size_t rest = sizeof err->msg - n - 3, lo = strlen(old);
    if (lo > rest) lo = rest;
    memcpy(err->msg + n + 2, old, lo);
    err->msg[n + 2 + lo] = 0;
    return err->code;
}

void hlab_err_clear(hlab_err *err) {
    if (!err) return;
    err->code = HLAB_OK;
    err->msg[0] = 0;
}

const char *hlab_status_name(int code) {
    switch (code) {
    case HLAB_OK: return "ok";
    case HLAB_EINVAL: return "invalid";
    case HLAB_EIO: return "io";
    case HLAB_ENOMEM: return "out-of-memory";
    case HLAB_EPARSE: return "parse";
    case HLAB_EDEVICE: return "device";
    case HLAB_EDIVERGED: return "diverged";
    case HLAB_EINTERRUPTED: return "interrupted";
    case HLAB_EDB: return "database";
    case HLAB_EUNSUPPORTED: return "unsupported";
    default: return "unknown";
    }
}

/* ---- logging ------------------------------------------------------------------ */
static void default_sink(void *user, hlab_log_level level, const char *line) {
    (void)user;
    static const char *const names[] = {"error", "warning", "info", "debug"};
    fprintf(stderr, "hlab: %s: %s\n", names[level], line);
}
static hlab_log_sink log_sink = default_sink;
static void *log_user;
static hlab_log_level log_max = HLAB_LOG_INFO;

void hlab_log_set_sink(hlab_log_sink sink, void *user) {
    log_sink = sink ? sink : default_sink;
    log_user = user;
}
void hlab_log_set_level(hlab_log_level max_level) { log_max = max_level; }
void hlab_log(hlab_log_level level, const char *fmt, ...) {
    if (level > log_max) return;
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    log_sink(log_user, level, line);
}

/* ---- RNG ---------------------------------------------------------------------- */
static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

void hlab_rng_seed(hlab_rng *r, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}
uint64_t hlab_rng_u64(hlab_rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}
double hlab_rng_uniform(hlab_rng *r) { return (double)(hlab_rng_u64(r) >> 11) * 0x1.0p-53; }
double hlab_rng_normal(hlab_rng *r) {
    double u1 = hlab_rng_uniform(r), u2 = hlab_rng_uniform(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}
uint64_t hlab_rng_below(hlab_rng *r, uint64_t n) {
    if (n == 0) return 0;
    uint64_t limit = UINT64_MAX - UINT64_MAX % n; /* reject the biased tail */
    uint64_t x;
    do x = hlab_rng_u64(r);
    while (x >= limit);
    return x % n;
}

/* ---- string buffer ------------------------------------------------------------ */
void hlab_buf_init(hlab_buf *b) { memset(b, 0, sizeof *b); }
void hlab_buf_free(hlab_buf *b) {
    free(b->data);
    memset(b, 0, sizeof *b);
}
void hlab_buf_reset(hlab_buf *b) {
    b->len = 0;
    if (b->data) b->data[0] = 0;
}
static int buf_reserve(hlab_buf *b, size_t extra) {
    if (b->oom) return 0;
    if (b->len + extra + 1 <= b->cap) return 1;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1) cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p) {
        b->oom = 1;
        return 0;
    }
    b->data = p;
    b->cap = cap;
    return 1;
}
static void buf_append(hlab_buf *b, const char *s, size_t n) {
    if (!buf_reserve(b, n)) return;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = 0;
}
void hlab_buf_puts(hlab_buf *b, const char *s) { buf_append(b, s, strlen(s)); }
void hlab_buf_printf(hlab_buf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n >= 0 && buf_reserve(b, (size_t)n)) {
        vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap2);
        b->len += (size_t)n;
    }
    va_end(ap2);
}
void hlab_buf_json_string(hlab_buf *b, const char *s) {
    buf_append(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': buf_append(b, "\\\"", 2); break;
        case '\\': buf_append(b, "\\\\", 2); break;
        case '\n': buf_append(b, "\\n", 2); break;
        case '\r': buf_append(b, "\\r", 2); break;
        case '\t': buf_append(b, "\\t", 2); break;
        default:
            if (*p < 0x20) hlab_buf_printf(b, "\\u%04x", *p);
            else buf_append(b, (const char *)p, 1);
        }
    }
    buf_append(b, "\"", 1);
}
void hlab_buf_xml_text(hlab_buf *b, const char *s) {
    for (; *s; s++) {
        switch (*s) {
        case '&': hlab_buf_puts(b, "&amp;"); break;
        case '<': hlab_buf_puts(b, "&lt;"); break;
        case '>': hlab_buf_puts(b, "&gt;"); break;
        case '"': hlab_buf_puts(b, "&quot;"); break;
        case '\'': hlab_buf_puts(b, "&apos;"); break;
        default: buf_append(b, s, 1);
        }
    }
}
void hlab_buf_csv_field(hlab_buf *b, const char *s) {
    if (!strpbrk(s, ",\"\r\n") && s[0] != ' ' && (s[0] == 0 || s[strlen(s) - 1] != ' ')) {
        hlab_buf_puts(b, s);
        return;
    }
    buf_append(b, "\"", 1);
    for (; *s; s++) {
        if (*s == '"') buf_append(b, "\"\"", 2);
        else buf_append(b, s, 1);
    }
    buf_append(b, "\"", 1);
}
int hlab_buf_status(const hlab_buf *b, hlab_err *err) {
    return b->oom ? hlab_fail(err, HLAB_ENOMEM, "out of memory building a text buffer") : HLAB_OK;
}

/* ---- misc --------------------------------------------------------------------- */
double hlab_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

uint64_t hlab_fnv1a64(const void *data, size_t n, uint64_t h) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ULL;
    }
    return h;
}

int hlab_write_file_atomic(const char *path, const void *data, size_t n, hlab_err *err) {
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return hlab_fail(err, HLAB_EINVAL, "%s: path too long", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return hlab_fail(err, HLAB_EIO, "%s: cannot create (%s)", tmp, strerror(errno));
    const char *p = data;
    size_t left = n;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            close(fd);
            unlink(tmp);
            return hlab_fail(err, HLAB_EIO, "%s: write failed (%s)", tmp, strerror(e));
        }
        p += w;
        left -= (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        int e = errno;
        unlink(tmp);
        return hlab_fail(err, HLAB_EIO, "%s: cannot flush (%s)", tmp, strerror(e));
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return hlab_fail(err, HLAB_EIO, "%s: cannot rename into place (%s)", path, strerror(e));
    }
    return HLAB_OK;
}

int hlab_read_file(const char *path, char **out, size_t *n, hlab_err *err) {
    *out = NULL;
    if (n) *n = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return hlab_fail(err, HLAB_EIO, "%s: cannot open (%s)", path, strerror(errno));
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (len + 1 >= cap) {
            char *p = realloc(buf, cap * 2);
            if (!p) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = p;
            cap *= 2;
        }
        size_t r = fread(buf + len, 1, cap - len - 1, f);
        len += r;
        if (r == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (!buf) return hlab_fail(err, HLAB_ENOMEM, "%s: out of memory reading the file", path);
    if (bad) {
        free(buf);
        return hlab_fail(err, HLAB_EIO, "%s: read error", path);
    }
    buf[len] = 0;
    *out = buf;
    if (n) *n = len;
    return HLAB_OK;
}
