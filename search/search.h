/* search/search.h — a study: the YAML file that describes a design space and
 * its training budget, the points it expands to, and the scheduler that trains
 * them into results.db (resumable). docs/STUDY.md is the user's reference.
 *
 * Conventions:
 *  - Every function that can fail returns an int status (HLAB_OK == 0) and fills
 *    err with one line; errors about the study file read "FILE:LINE:COL: ...".
 *  - hlab_study_load validates everything it can without training: every
 *    expanded point is sized to the budget and resolved (hlab_model_config_resolve)
 *    by hlab_study_expand, so a bad point is found before the first step runs.
 *  - A point's identity is hlab_fnv1a64 over its resolved config JSON (data paths
 *    as written in the study, so the hash does not depend on the working
 *    directory) followed by its seed: editing a study re-adds only new points.
 *  - Library code never prints: the scheduler reports through a callback.
 */
#ifndef HLAB_SEARCH_H
#define HLAB_SEARCH_H

#include <stdint.h>

#include "arch/arch.h"
#include "common/hlab.h"
#include "train/train.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- constraint expressions ---------------------------------------------------
 * expr    := or
 * or      := and ("or" and)*
 * and     := not ("and" not)*
 * not     := "not" not | cmp
 * cmp     := value (("==" | "!=" | "<" | "<=" | ">" | ">=") value | "in" "[" value ("," value)* "]")?
 * value   := NUMBER | 'string' | "string" | true | false | FIELD | "(" expr ")" | "-" value
 * FIELD is a dotted key of the point ("model.ratio", "train.lr"). Numbers compare
 * as numbers, strings as strings; == between a number and a string is false, an
 * ordering between them an error. A bare field or literal is true when it is
 * true, a non-zero number or a non-empty string. */
typedef struct hlab_expr hlab_expr;

typedef enum { HLAB_VAL_NUM = 0, HLAB_VAL_STR = 1, HLAB_VAL_BOOL = 2 } hlab_val_kind;
typedef struct {
    hlab_val_kind kind;
    double num;     /* NUM; BOOL: 0 or 1 */
    char str[256];  /* STR */
} hlab_value;

/* Looks a field up; returns HLAB_OK or an error (unknown field). */
typedef int (*hlab_expr_lookup)(void *user, const char *field, hlab_value *out, hlab_err *err);

/* Parses text. On a syntax error returns HLAB_EPARSE, sets *err_col (1-based
 * column inside text; may be NULL) and err to "column N: expected ...". Field
 * names are checked against known (NULL-terminated; NULL = any name) with a
 * did-you-mean. */
int hlab_expr_parse(const char *text, const char *const *known, hlab_expr **out, int *err_col, hlab_err *err);
/* Evaluates to *result (0/1). Type errors name the column of the operator. */
int hlab_expr_eval(const hlab_expr *e, hlab_expr_lookup lookup, void *user, int *result, hlab_err *err);
void hlab_expr_free(hlab_expr *e); /* NULL-safe */

/* ---- the study ------------------------------------------------------------------ */
typedef enum { HLAB_MATCH_NONE = 0, HLAB_MATCH_PARAMS, HLAB_MATCH_FLOPS_PER_TOKEN, HLAB_MATCH_TRAIN_FLOPS } hlab_match;
typedef enum { HLAB_ADJUST_D_MODEL = 0, HLAB_ADJUST_N_LAYERS, HLAB_ADJUST_D_FF } hlab_adjust;
typedef enum { HLAB_STRATEGY_GRID = 0, HLAB_STRATEGY_RANDOM, HLAB_STRATEGY_HALVING } hlab_strategy_kind;

typedef struct {
    char key[128];        /* dotted key, e.g. "model.ratio" */
    int n;                /* values */
    char **values;        /* each value's text ("1:5", "0.003") */
    const hlab_yaml_node **nodes; /* each value's node (NULL for generated range values) */
    const hlab_yaml_node *key_node;
} hlab_axis;

typedef struct {
    char *text;
    hlab_expr *expr;
    const hlab_yaml_node *node;
} hlab_constraint;

typedef struct {
    hlab_match match;     /* NONE: no sizing */
    double target;
    hlab_adjust adjust;
    double tolerance;     /* relative, default 0.02 */
    const hlab_yaml_node *node;
} hlab_budget;

typedef struct {
    hlab_strategy_kind kind;
    int n;                /* random: samples */
    uint64_t seed;        /* random: sampler seed */
    int eta, min_steps, max_steps; /* halving: keep 1/eta per rung; rung r trains to min_steps·eta^r (≤ max_steps) */
} hlab_strategy;

#define HLAB_STUDY_MAX_OBJECTIVES 16
typedef struct {
    char metric[64];
    int maximize;         /* 0 = min */
} hlab_objective;

typedef struct {
    hlab_yaml_doc doc;    /* kept: axes and constraints point into it for messages */
    char path[1024];
    char dir[1024];       /* the study file's folder: relative data paths start here */
    char name[128];
    char *description;    /* "" when absent */
    hlab_point base;      /* defaults + data + base sections, data paths as written */
    int n_axes;
    hlab_axis *axes;
    int n_constraints;
    hlab_constraint *constraints;
    hlab_budget budget;
    hlab_strategy strategy;
    int n_seeds;
    int64_t *seeds;       /* default [base train.seed] */
    int n_objectives;
    hlab_objective objectives[HLAB_STUDY_MAX_OBJECTIVES];
    char *eval_json;      /* the eval mapping as JSON ("{}" when absent) */
} hlab_study;

/* Parses and validates path (syntax, types, keys, ranges, expressions, data
 * file present). Does not expand: call hlab_study_expand to check the points. */
int hlab_study_load(const char *path, hlab_study *s, hlab_err *err);
int hlab_study_load_string(const char *name, const char *text, hlab_study *s, hlab_err *err);
void hlab_study_free(hlab_study *s);
/* The validated study as JSON (stored in studies.spec_json). */
int hlab_study_to_json(const hlab_study *s, hlab_buf *out, hlab_err *err);
/* "val_loss:min,train_flops:min" */
void hlab_study_objectives_text(const hlab_study *s, char *out, size_t cap);

/* ---- expansion ------------------------------------------------------------------ */
typedef struct {
    int index;            /* 1-based position in the expansion (messages: "point 7") */
    int design;           /* 0-based design index (seeds of one design share it) */
    hlab_point point;     /* sized and resolved; data paths resolved for training */
    char hash[17];        /* 16 hex digits */
    char label[512];      /* "ratio=1:5 placement=front" (seed excluded) */
    char *axes_json;      /* {"model.ratio":"1:5",...} */
    char *config_json;    /* hlab_point_to_json of point */
    int64_t seed;
    hlab_counts counts;   /* at train.seq_len */
    double train_flops;   /* counts.train_flops_per_token × planned tokens */
    int64_t est_memory_bytes; /* weights, grads, AdamW (16 B/param) + fp32 activations */
} hlab_design_point;

typedef struct {
    hlab_design_point *items;
    int n;                /* points (designs × seeds) */
    int n_designs;
    int n_combinations;   /* before constraints */
    int n_filtered;       /* designs removed by constraints */
} hlab_point_set;

/* Expands the space (grid: cartesian product in file order; random: n seeded
 * samples of it; halving: the grid), filters by constraints, sizes each design
 * to the budget, resolves it, and multiplies by seeds. Any point that cannot be
 * sized or resolved fails the whole expansion with its reason. */
int hlab_study_expand(const hlab_study *s, hlab_point_set *out, hlab_err *err);
void hlab_point_set_free(hlab_point_set *ps);

/* Sizes p (unresolved) in place so the matched count lands within b->tolerance
 * of b->target, by solving for b->adjust over valid values; *counts receives the
 * counts of the chosen config. On failure the message says the closest value
 * reached ("no d_model multiple of 64 gives params within 2% of 2.5e+07
 * (closest 2.41e+07 at d_model 576)"). */
int hlab_budget_fit(const hlab_budget *b, hlab_point *p, hlab_counts *counts, hlab_err *err);

/* ---- the scheduler ---------------------------------------------------------------- */
typedef enum {
    HLAB_SEARCH_POINT_START = 0, /* a point begins (or resumes) training */
    HLAB_SEARCH_STEP = 1,        /* a training progress event of the current point */
    HLAB_SEARCH_POINT_END = 2,   /* status says how it ended; message for failures */
    HLAB_SEARCH_RUNG = 3         /* halving: a rung begins (rung, rung_steps, rung_points) */
} hlab_search_event_kind;

typedef struct {
    hlab_search_event_kind kind;
    int points_done, points_total;   /* finished (any end state) / all points of the study */
    const hlab_design_point *point;  /* current point (NULL for RUNG) */
    const hlab_train_event *train;   /* STEP only */
    int status;                      /* POINT_END: hlab_db_status */
    const char *message;             /* POINT_END: error text or "" */
    double study_eta_s;              /* NaN until something was measured */
    int rung, rung_steps, rung_points;
} hlab_search_event;
/* Return non-zero to stop: the current point checkpoints and is recorded
 * 'interrupted'; hlab_search_run returns HLAB_EINTERRUPTED. */
typedef int (*hlab_search_callback)(void *user, const hlab_search_event *ev);

typedef struct {
    const char *db_path;   /* results.db */
    const char *runs_dir;  /* NULL = "runs" next to the db; checkpoints go to RUNS/STUDY/HASH.safetensors */
    const char *device;    /* hk_open spec ("cpu", "cuda:0", "auto") */
    int restart;           /* forget the study's runs (and checkpoints) first */
    int retry_failed;      /* points recorded 'failed' go back to pending and train again from
                              step 0: their checkpoint is removed (a truncated checkpoint is a
                              usual cause), their old runs stay in the db as history */
    int retry_diverged;    /* the same for points recorded 'diverged' */
    int workers;           /* training threads, each with its own backend and db connection (0 = 1);
                              with several, "cuda"/"auto" become cuda:0..N-1, "cuda:K" cuda:K..K+N-1 */
    hlab_search_callback cb;
    /* Optional: polled every training step and validation batch (from the
     * workers); non-zero stops the study as a callback's non-zero return does,
     * but without waiting for the next progress event (e.g. Ctrl-C). */
    int (*should_stop)(void *user);
    void *user;
} hlab_search_options;

typedef struct {
    int points_total, points_new;
    int done, diverged, failed, trained;  /* end states now; trained = runs finished by this call */
    int retried;                          /* failed/diverged points put back to pending (retry_*) */
} hlab_search_summary;

/* Records the study and its points in the db (only new points are added),
 * then trains every point still to do on o->workers workers, streaming metrics
 * to the db. The callback is called from the workers, one call at a time. Returns HLAB_OK when the study is complete (some points may have
 * diverged or failed: see summary), HLAB_EINTERRUPTED when stopped, or an error
 * (db, device). */
int hlab_search_run(const hlab_study *s, const hlab_point_set *ps, const hlab_search_options *o,
                    hlab_search_summary *summary, hlab_err *err);

#ifdef __cplusplus
}
#endif

#endif
