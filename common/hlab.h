/* common/hlab.h — what every hlab module shares: status codes with messages,
 * the one logging facility, a deterministic RNG and a growable string buffer.
 *
 * Conventions (SQLite-style):
 *  - A function that can fail returns an int status (HLAB_OK == 0) and, when it
 *    fails, fills the caller's hlab_err with a one-line message that names what
 *    was wrong and what was expected. It never calls exit() and never prints.
 *  - Library code reports progress and warnings only through hlab_log().
 */
#ifndef HLAB_COMMON_H
#define HLAB_COMMON_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HLAB_VERSION "0.1.0"

enum {
    HLAB_OK = 0,
    HLAB_EINVAL = 1,       /* bad argument, bad config, bad input file contents */
    HLAB_EIO = 2,          /* file could not be opened, read or written */
    HLAB_ENOMEM = 3,       /* host or device allocation failed */
    HLAB_EPARSE = 4,       /* YAML / JSON / expression syntax */
    HLAB_EDEVICE = 5,      /* CUDA, cuBLAS or NCCL error, or no such device */
    HLAB_EDIVERGED = 6,    /* training loss became NaN/inf or exploded */
    HLAB_EINTERRUPTED = 7, /* stopped on request (Ctrl-C); resumable */
    HLAB_EDB = 8,          /* SQLite error */
    HLAB_EUNSUPPORTED = 9  /* feature not available in this build/backend */
};

typedef struct hlab_err {
    int code;       /* HLAB_OK when nothing failed */
    char msg[1024]; /* one line, no trailing newline */
} hlab_err;

/* Sets err (when non-NULL) to code and the formatted message; returns code. */
int hlab_fail(hlab_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Prefixes an existing message: "prefix: old message". Returns err->code. */
int hlab_err_prefix(hlab_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void hlab_err_clear(hlab_err *err);
const char *hlab_status_name(int code); /* "ok", "invalid", "io", ... */

/* ---- logging: the one place library code may write text ---------------- */
typedef enum { HLAB_LOG_ERROR = 0, HLAB_LOG_WARN = 1, HLAB_LOG_INFO = 2, HLAB_LOG_DEBUG = 3 } hlab_log_level;
typedef void (*hlab_log_sink)(void *user, hlab_log_level level, const char *line);
/* The sink is process-wide (like sqlite3_config(SQLITE_CONFIG_LOG)); the
 * default writes INFO and above to stderr. Set it once, before threads start. */
void hlab_log_set_sink(hlab_log_sink sink, void *user);
void hlab_log_set_level(hlab_log_level max_level);
void hlab_log(hlab_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- deterministic RNG (splitmix64-seeded xoshiro256**) ----------------- */
typedef struct hlab_rng { uint64_t s[4]; } hlab_rng;
void hlab_rng_seed(hlab_rng *r, uint64_t seed);
uint64_t hlab_rng_u64(hlab_rng *r);
double hlab_rng_uniform(hlab_rng *r);            /* [0, 1) */
double hlab_rng_normal(hlab_rng *r);             /* N(0, 1), Box-Muller, no cached state */
uint64_t hlab_rng_below(hlab_rng *r, uint64_t n); /* [0, n), unbiased */

/* ---- growable NUL-terminated string buffer ------------------------------ */
typedef struct hlab_buf { char *data; size_t len, cap; int oom; } hlab_buf;
void hlab_buf_init(hlab_buf *b);
void hlab_buf_free(hlab_buf *b);
void hlab_buf_reset(hlab_buf *b); /* len = 0, keeps memory */
void hlab_buf_puts(hlab_buf *b, const char *s);
void hlab_buf_printf(hlab_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void hlab_buf_json_string(hlab_buf *b, const char *s); /* appends "s" with JSON escapes */
void hlab_buf_xml_text(hlab_buf *b, const char *s);    /* appends s with &<>"' escaped */
void hlab_buf_csv_field(hlab_buf *b, const char *s);   /* quotes when needed (RFC 4180) */
/* Returns HLAB_OK, or HLAB_ENOMEM if any append failed (b->oom). */
int hlab_buf_status(const hlab_buf *b, hlab_err *err);

/* ---- small helpers ------------------------------------------------------ */
double hlab_now_s(void);                 /* monotonic seconds */
uint64_t hlab_fnv1a64(const void *data, size_t n, uint64_t h); /* start with HLAB_FNV_OFFSET */
#define HLAB_FNV_OFFSET 1469598103934665603ULL
/* Writes path atomically: to path.tmp, fsync, rename. */
int hlab_write_file_atomic(const char *path, const void *data, size_t n, hlab_err *err);
/* Reads a whole file; *out is malloc'ed and NUL-terminated. */
int hlab_read_file(const char *path, char **out, size_t *n, hlab_err *err);

/* ---- YAML documents (libyaml underneath) ----------------------------------
 * A loaded document is a tree of scalars, sequences and mappings, each node
 * knowing its 1-based line and column so that every error can name them. */
typedef enum { HLAB_YAML_SCALAR = 0, HLAB_YAML_SEQ = 1, HLAB_YAML_MAP = 2 } hlab_yaml_kind;
typedef struct hlab_yaml_node hlab_yaml_node;
struct hlab_yaml_node {
    hlab_yaml_kind kind;
    int line, col;          /* 1-based position of the node's start */
    char *scalar;           /* SCALAR: its text */
    int quoted;             /* SCALAR: written in quotes (so "1:5" stays a string) */
    int n;                  /* SEQ: items; MAP: pairs */
    hlab_yaml_node **items; /* SEQ: n items; MAP: 2n nodes, key then value */
};
typedef struct hlab_yaml_doc { char path[1024]; hlab_yaml_node *root; } hlab_yaml_doc;
/* Parses path. Syntax errors read "FILE:LINE:COL: what libyaml expected". */
int hlab_yaml_load(const char *path, hlab_yaml_doc *doc, hlab_err *err);
int hlab_yaml_load_string(const char *name, const char *text, hlab_yaml_doc *doc, hlab_err *err);
void hlab_yaml_free(hlab_yaml_doc *doc);
/* MAP lookup by key; NULL when absent. */
const hlab_yaml_node *hlab_yaml_get(const hlab_yaml_node *map, const char *key);
/* Fails with "FILE:LINE:COL: fmt" at node's position. */
int hlab_yaml_fail(const hlab_yaml_doc *doc, const hlab_yaml_node *node, hlab_err *err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Scalar conversions; each fails with position and "expected an integer" etc. */
int hlab_yaml_int(const hlab_yaml_doc *doc, const hlab_yaml_node *n, long long *out, hlab_err *err);
int hlab_yaml_double(const hlab_yaml_doc *doc, const hlab_yaml_node *n, double *out, hlab_err *err);
int hlab_yaml_bool(const hlab_yaml_doc *doc, const hlab_yaml_node *n, int *out, hlab_err *err);
/* Edit distance, for "did you mean" suggestions. Returns the closest of
 * candidates (NULL-terminated) within distance 3, else NULL. */
const char *hlab_did_you_mean(const char *word, const char *const *candidates);

#ifdef __cplusplus
}
#endif

#endif
