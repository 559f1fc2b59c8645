/* reports/reports.h — what results.db says, as files a person opens: the Pareto
 * front (CSV + SVG scatter), per-axis ablation tables (CSV + Markdown) and loss
 * curves (SVG). Everything reads through db/db.h.
 *
 * Conventions:
 *  - A design is the set of points of a study that share a label (the same
 *    axes, different seeds). Reports aggregate each design over its seeds:
 *    mean, and sample standard deviation (n-1; NaN with fewer than two seeds,
 *    a blank CSV cell, left out of tables and whiskers). A seed whose
 *    value is missing (no result, NaN) is left out of that metric's mean.
 *  - Pareto dominance (hlab_pareto): a dominates b when a is no worse in every
 *    objective and strictly better in at least one. So equal points (ties and
 *    exact duplicates) never dominate each other: all copies of a
 *    non-dominated value are on the front. A row with any objective missing
 *    (NaN) is excluded from the comparison and flagged (HLAB_FRONT_MISSING):
 *    it neither joins the front nor removes anyone from it.
 *  - Files are written atomically (hlab_write_file_atomic); `written` (may be
 *    NULL) receives one line per file written.
 */
#ifndef HLAB_REPORTS_H
#define HLAB_REPORTS_H

#include "common/hlab.h"
#include "db/db.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- objectives --------------------------------------------------------------- */
typedef enum { HLAB_MINIMIZE = 0, HLAB_MAXIMIZE = 1 } hlab_sense;
typedef struct {
    char metric[64]; /* a name hlab_db_metric_known accepts */
    hlab_sense sense;
} hlab_objective;
#define HLAB_MAX_OBJECTIVES 16

/* Parses "val_loss:min, train_flops:min,tokens_per_s:max" (the study's
 * objectives; a bare name takes hlab_metric_default_sense). Fails naming the
 * bad entry and the expected form. */
int hlab_objectives_parse(const char *text, hlab_objective *out, int cap, int *n, hlab_err *err);
/* min for losses, costs, sizes and times; max for tokens_per_s and eval.* scores. */
hlab_sense hlab_metric_default_sense(const char *metric);
/* Unit for axis labels and table headers: "nats/token", "FLOPs", "bytes", "tokens/s", "" when none. */
const char *hlab_metric_unit(const char *metric);

/* ---- Pareto front --------------------------------------------------------------- */
enum { HLAB_FRONT_MISSING = -1, HLAB_FRONT_DOMINATED = 0, HLAB_FRONT_ON = 1 };
/* values: n rows x k objectives, row-major. on_front[i] receives HLAB_FRONT_ON,
 * HLAB_FRONT_DOMINATED or HLAB_FRONT_MISSING (see the top of this file).
 * O(n^2 k), fine for the hundreds of designs of a study. */
int hlab_pareto(const double *values, int n, int k, const hlab_sense *sense, int *on_front, hlab_err *err);

/* ---- designs: points aggregated over seeds ---------------------------------------- */
typedef struct {
    char *label;       /* the design's label ("" becomes "point <id>") */
    char *axes_json;   /* of its first point */
    int64_t point_id;  /* first point (lowest id) */
    int n_seeds;       /* points of the design */
    int n_done;        /* of those, points with status done */
    double *mean, *std;/* n_metrics each; mean NaN when no seed has a value, std when < 2 */
    int *n_values;     /* n_metrics: seeds that had a value */
    int on_front;      /* HLAB_FRONT_*, filled by hlab_designs_pareto */
} hlab_design;
typedef struct {
    int n, n_metrics;
    hlab_design *items; /* in order of first appearance (point id) */
} hlab_design_table;
/* Groups t's rows by label; metrics are t's columns. */
int hlab_designs_aggregate(const hlab_db_table *t, hlab_design_table *out, hlab_err *err);
/* Fills on_front of every design from the means of the metric columns
 * cols[0..k) (indices into the table's metrics) with their senses. */
int hlab_designs_pareto(hlab_design_table *d, const int *cols, const hlab_sense *sense, int k, hlab_err *err);
void hlab_design_table_free(hlab_design_table *d);

/* Axis names and values of a flat JSON object of scalars ({"model.ratio": "1:5",
 * "model.n_layers": 12}); values come back as their text. Fails on anything
 * else with the offset of the problem. keys/vals are malloc'ed arrays of
 * malloc'ed strings: free with hlab_axes_free. */
int hlab_axes_parse(const char *json, char ***keys, char ***vals, int *n, hlab_err *err);
void hlab_axes_free(char **keys, char **vals, int n);

/* ---- report files ------------------------------------------------------------------ */
typedef struct {
    const char *study;     /* study name (required) */
    const char *x, *y;     /* scatter / curve axes; NULL: train_flops and val_loss */
    const hlab_objective *objectives; /* the front's objectives; n_objectives 0: the
                                         study's, else x and y with default senses */
    int n_objectives;
    const char *out_dir;   /* created when missing; NULL: "reports_out" */
} hlab_report_options;

/* OUT/STUDY_pareto.csv: every design (label, its axes, n_seeds, n_done, each
 * objective's mean and std, on_frontier as 1/0/"" for missing), and
 * OUT/STUDY_pareto.svg: the x/y scatter with the front. */
int hlab_report_pareto(hlab_db *db, const hlab_report_options *o, hlab_buf *written, hlab_err *err);
/* OUT/STUDY_ablation.csv and OUT/STUDY_ablation.md: for each axis and each of
 * its values, each objective as mean ± std over seeds (per seed, the mean over
 * the points with that value; then mean and std of those across seeds), and the
 * per-design table. */
int hlab_report_table(hlab_db *db, const hlab_report_options *o, hlab_buf *written, hlab_err *err);
/* OUT/STUDY_curves.svg: training loss (solid) and validation loss (dashed,
 * dots) against step for every point with metrics; one colour per design. */
int hlab_report_curves(hlab_db *db, const hlab_report_options *o, hlab_buf *written, hlab_err *err);

/* The text of a Markdown/plain ablation table, for the terminal
 * (hlab report --table prints it). */
int hlab_report_table_text(hlab_db *db, const hlab_report_options *o, hlab_buf *out, hlab_err *err);

#ifdef __cplusplus
}
#endif

#endif
