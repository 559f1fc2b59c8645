/* reports/pareto.c — objectives, Pareto dominance, aggregation of points into
 * designs (over seeds), and the flat axes JSON of a point.
 *
 * Conventions: NaN means missing everywhere; a missing value never wins or
 * loses a comparison, its row is excluded from the front and flagged. Means and
 * standard deviations are over the seeds that have a value; a spread needs two
 * of them (NaN otherwise, never a made-up 0).
 */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reports/reports.h"

/* ---- metrics: sense and unit ---------------------------------------------------- */
hlab_sense hlab_metric_default_sense(const char *m) {
    if (!strcmp(m, "tokens_per_s") || !strncmp(m, "eval.", 5)) return HLAB_MAXIMIZE;
    return HLAB_MINIMIZE;
}

const char *hlab_metric_unit(const char *m) {
    static const struct { const char *metric, *unit; } units[] = {
        {"val_loss", "nats/token"},      {"train_loss", "nats/token"}, {"val_bpb", "bits/byte"},
        {"train_flops", "FLOPs"},        {"flops_per_token", "FLOPs/token"},
        {"params", "parameters"},        {"params_non_embedding", "parameters"},
        {"tokens_per_s", "tokens/s"},    {"peak_bytes", "bytes"},      {"est_memory_bytes", "bytes"},
        {"infer_bytes_per_token", "bytes/token"}, {"wall_s", "s"},     {"steps_done", "steps"},
    };
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (!strcmp(m, units[i].metric)) return units[i].unit;
    if (!strncmp(m, "eval.", 5)) return "score";
    return "";
}

int hlab_objectives_parse(const char *text, hlab_objective *out, int cap, int *n, hlab_err *err) {
    *n = 0;
    const char *p = text ? text : "";
    while (*p) {
        while (*p == ' ' || *p == ',' || *p == '\t') p++;
        if (!*p) break;
        const char *end = p;
        while (*end && *end != ',') end++;
        char item[128];
        size_t len = (size_t)(end - p);
        while (len && isspace((unsigned char)p[len - 1])) len--;
        if (len >= sizeof item) return hlab_fail(err, HLAB_EINVAL, "objective '%.40s...' is too long", p);
        memcpy(item, p, len);
        item[len] = 0;
        p = end;
        if (*n == cap) return hlab_fail(err, HLAB_EINVAL, "more than %d objectives in '%s'", cap, text);
        hlab_objective *o = &out[*n];
        char *colon = strchr(item, ':');
        if (colon) *colon = 0;
        if (!hlab_db_metric_known(item))
            return hlab_fail(err, HLAB_EINVAL,
                             "objective '%s': unknown metric (expected e.g. val_loss, train_flops, tokens_per_s, "
                             "infer_bytes_per_token, params or eval.NAME)",
                             item);
        if (strlen(item) >= sizeof o->metric)
            return hlab_fail(err, HLAB_EINVAL, "objective '%s': metric name too long", item);
        memcpy(o->metric, item, strlen(item) + 1);
        o->sense = hlab_metric_default_sense(item);
        if (colon) {
            const char *s = colon + 1;
            if (!strcmp(s, "min")) o->sense = HLAB_MINIMIZE;
            else if (!strcmp(s, "max")) o->sense = HLAB_MAXIMIZE;
            else return hlab_fail(err, HLAB_EINVAL, "objective '%s:%s': expected METRIC:min or METRIC:max", item, s);
        }
        (*n)++;
    }
    return HLAB_OK;
}

/* ---- Pareto -------------------------------------------------------------------- */
/* 1 when row a dominates row b (both complete). */
static int dominates(const double *a, const double *b, int k, const hlab_sense *sense) {
    int strictly = 0;
    for (int j = 0; j < k; j++) {
        double x = sense[j] == HLAB_MAXIMIZE ? -a[j] : a[j];
        double y = sense[j] == HLAB_MAXIMIZE ? -b[j] : b[j];
        if (x > y) return 0;
        if (x < y) strictly = 1;
    }
    return strictly;
}

int hlab_pareto(const double *values, int n, int k, const hlab_sense *sense, int *on_front, hlab_err *err) {
    if (n < 0 || k < 1) return hlab_fail(err, HLAB_EINVAL, "Pareto front of %d rows x %d objectives (expected k >= 1)", n, k);
    for (int i = 0; i < n; i++) {
        on_front[i] = HLAB_FRONT_ON;
        for (int j = 0; j < k; j++)
            if (isnan(values[(size_t)i * k + j])) on_front[i] = HLAB_FRONT_MISSING;
    }
    for (int i = 0; i < n; i++) {
        if (on_front[i] == HLAB_FRONT_MISSING) continue;
        for (int o = 0; o < n; o++) {
            if (o == i || on_front[o] == HLAB_FRONT_MISSING) continue;
            if (dominates(values + (size_t)o * k, values + (size_t)i * k, k, sense)) {
                on_front[i] = HLAB_FRONT_DOMINATED;
                break;
            }
        }
    }
    return HLAB_OK;
}

/* ---- designs ------------------------------------------------------------------- */
static char *dup_str(const char *s) {
    size_t n = strlen(s ? s : "");
    char *d = malloc(n + 1);
    if (d) memcpy(d, s ? s : "", n + 1);
    return d;
}

void hlab_design_table_free(hlab_design_table *d) {
    if (!d) return;
    for (int i = 0; i < d->n; i++) {
        free(d->items[i].label);
        free(d->items[i].axes_json);
        free(d->items[i].mean);
        free(d->items[i].std);
        free(d->items[i].n_values);
    }
    free(d->items);
    memset(d, 0, sizeof *d);
}

int hlab_designs_aggregate(const hlab_db_table *t, hlab_design_table *out, hlab_err *err) {
    memset(out, 0, sizeof *out);
    out->n_metrics = t->n_metrics;
    int m = t->n_metrics;
    /* design index of each row; designs are few, a linear search keeps this plain. */
    int *design_of = malloc((size_t)(t->n_rows ? t->n_rows : 1) * sizeof *design_of);
    out->items = calloc((size_t)(t->n_rows ? t->n_rows : 1), sizeof *out->items);
    if (!design_of || !out->items) goto oom;
    for (int r = 0; r < t->n_rows; r++) {
        const char *label = t->label[r] ? t->label[r] : "";
        char fallback[48];
        if (!*label) {
            snprintf(fallback, sizeof fallback, "point %lld", (long long)t->point_id[r]);
            label = fallback;
        }
        int d = 0;
        while (d < out->n && strcmp(out->items[d].label, label) != 0) d++;
        if (d == out->n) {
            hlab_design *g = &out->items[out->n++];
            g->label = dup_str(label);
            g->axes_json = dup_str(t->axes_json[r]);
            g->point_id = t->point_id[r];
            g->mean = calloc((size_t)(m ? m : 1), sizeof *g->mean);
            g->std = calloc((size_t)(m ? m : 1), sizeof *g->std);
            g->n_values = calloc((size_t)(m ? m : 1), sizeof *g->n_values);
            g->on_front = HLAB_FRONT_MISSING;
            if (!g->label || !g->axes_json || !g->mean || !g->std || !g->n_values) goto oom;
        }
        design_of[r] = d;
        out->items[d].n_seeds++;
        if (t->status[r] == HLAB_DB_DONE) out->items[d].n_done++;
    }
    /* Two passes (mean, then squared deviations): exact enough and simple. */
    for (int r = 0; r < t->n_rows; r++)
        for (int j = 0; j < m; j++) {
            double v = t->values[(size_t)r * m + j];
            if (isnan(v)) continue;
            out->items[design_of[r]].mean[j] += v;
            out->items[design_of[r]].n_values[j]++;
        }
    for (int d = 0; d < out->n; d++)
        for (int j = 0; j < m; j++) {
            hlab_design *g = &out->items[d];
            g->mean[j] = g->n_values[j] ? g->mean[j] / g->n_values[j] : NAN;
        }
    for (int r = 0; r < t->n_rows; r++)
        for (int j = 0; j < m; j++) {
            double v = t->values[(size_t)r * m + j];
            hlab_design *g = &out->items[design_of[r]];
            if (!isnan(v)) g->std[j] += (v - g->mean[j]) * (v - g->mean[j]);
        }
    for (int d = 0; d < out->n; d++)
        for (int j = 0; j < m; j++) {
            hlab_design *g = &out->items[d];
            int c = g->n_values[j];
            g->std[j] = c > 1 ? sqrt(g->std[j] / (c - 1)) : NAN;
        }
    free(design_of);
    return HLAB_OK;
oom:
    free(design_of);
    hlab_design_table_free(out);
    return hlab_fail(err, HLAB_ENOMEM, "reports: out of memory aggregating %d points", t->n_rows);
}

int hlab_designs_pareto(hlab_design_table *d, const int *cols, const hlab_sense *sense, int k, hlab_err *err) {
    for (int j = 0; j < k; j++)
        if (cols[j] < 0 || cols[j] >= d->n_metrics)
            return hlab_fail(err, HLAB_EINVAL, "objective column %d out of range (table has %d metrics)", cols[j],
                             d->n_metrics);
    double *v = malloc((size_t)(d->n ? d->n : 1) * (size_t)k * sizeof *v);
    int *front = malloc((size_t)(d->n ? d->n : 1) * sizeof *front);
    if (!v || !front) {
        free(v);
        free(front);
        return hlab_fail(err, HLAB_ENOMEM, "reports: out of memory for the Pareto front");
    }
    for (int i = 0; i < d->n; i++)
        for (int j = 0; j < k; j++) v[(size_t)i * k + j] = d->items[i].mean[cols[j]];
    int rc = hlab_pareto(v, d->n, k, sense, front, err);
    if (rc == HLAB_OK)
        for (int i = 0; i < d->n; i++) d->items[i].on_front = front[i];
    free(v);
    free(front);
    return rc;
}

/* ---- flat JSON object of scalars -------------------------------------------------- */
void hlab_axes_free(char **keys, char **vals, int n) {
    for (int i = 0; i < n; i++) {
        if (keys) free(keys[i]);
        if (vals) free(vals[i]);
    }
    free(keys);
    free(vals);
}

static const char *skip_ws(const char *p) {
    while (*p && isspace((unsigned char)*p)) p++;
    return p;
}

/* Reads a JSON string at p (at the quote) into a malloc'ed UTF-8 string. */
static const char *read_json_string(const char *p, char **out) {
    hlab_buf b;
    hlab_buf_init(&b);
    p++;
    while (*p && *p != '"') {
        if (*p != '\\') {
            char c[2] = {*p++, 0};
            hlab_buf_puts(&b, c);
            continue;
        }
        p++;
        char c = *p ? *p++ : 0;
        switch (c) {
        case 'n': hlab_buf_puts(&b, "\n"); break;
        case 't': hlab_buf_puts(&b, "\t"); break;
        case 'r': hlab_buf_puts(&b, "\r"); break;
        case 'b': hlab_buf_puts(&b, "\b"); break;
        case 'f': hlab_buf_puts(&b, "\f"); break;
        case 'u': {
            unsigned cp = 0;
            for (int i = 0; i < 4; i++) {
                if (!isxdigit((unsigned char)*p)) goto bad;
                cp = cp * 16 + (unsigned)(isdigit((unsigned char)*p) ? *p - '0' : (tolower((unsigned char)*p) - 'a' + 10));
                p++;
            }
            /* Axis values are ASCII in practice; other code points are kept as UTF-8 (BMP only). */
            char u[4] = {0};
            if (cp < 0x80) u[0] = (char)cp;
            else if (cp < 0x800) u[0] = (char)(0xC0 | (cp >> 6)), u[1] = (char)(0x80 | (cp & 0x3F));
            else u[0] = (char)(0xE0 | (cp >> 12)), u[1] = (char)(0x80 | ((cp >> 6) & 0x3F)), u[2] = (char)(0x80 | (cp & 0x3F));
            hlab_buf_puts(&b, u);
            break;
        }
        case '"': case '\\': case '/': {
            char s[2] = {c, 0};
            hlab_buf_puts(&b, s);
            break;
        }
        default: goto bad;
        }
    }
    if (*p != '"' || b.oom) goto bad;
    *out = b.data ? b.data : dup_str("");
    return p + 1;
bad:
    hlab_buf_free(&b);
    return NULL;
}

int hlab_axes_parse(const char *json, char ***keys, char ***vals, int *n, hlab_err *err) {
    *keys = *vals = NULL;
    *n = 0;
    const char *start = json ? json : "{}", *p = skip_ws(start), *at = p;
    int cap = 0;
    if (*p != '{') goto bad;
    p = skip_ws(p + 1);
    if (*p == '}') return HLAB_OK;
    for (;;) {
        if (*p != '"') goto bad;
        if (*n == cap) {
            int ncap = cap ? 2 * cap : 8;
            char **k = realloc(*keys, (size_t)ncap * sizeof *k);
            if (k) *keys = k;
            char **v = realloc(*vals, (size_t)ncap * sizeof *v);
            if (v) *vals = v;
            if (!k || !v) {
                hlab_axes_free(*keys, *vals, *n);
                *keys = *vals = NULL;
                *n = 0;
                return hlab_fail(err, HLAB_ENOMEM, "reports: out of memory reading axes");
            }
            cap = ncap;
        }
        char *key = NULL, *val = NULL;
        at = p;
        p = read_json_string(p, &key);
        if (!p) goto bad;
        (*keys)[*n] = key;
        (*vals)[*n] = NULL;
        (*n)++;
        p = skip_ws(p);
        if (*p != ':') goto bad;
        p = skip_ws(p + 1);
        at = p;
        if (*p == '"') {
            p = read_json_string(p, &val);
            if (!p) goto bad;
        } else {
            /* number, true, false, null: kept as written */
            const char *e = p;
            while (*e && (isalnum((unsigned char)*e) || *e == '.' || *e == '-' || *e == '+')) e++;
            if (e == p) goto bad;
            val = malloc((size_t)(e - p) + 1);
            if (!val) goto bad;
            memcpy(val, p, (size_t)(e - p));
            val[e - p] = 0;
            p = e;
        }
        (*vals)[*n - 1] = val;
        p = skip_ws(p);
        if (*p == ',') {
            p = skip_ws(p + 1);
            continue;
        }
        if (*p == '}') return HLAB_OK;
        goto bad;
    }
bad:
    hlab_fail(err, HLAB_EPARSE, "axes JSON: expected a flat object of scalars at offset %d of '%.60s'",
              (int)((p ? p : at) - start), start);
    hlab_axes_free(*keys, *vals, *n);
    *keys = *vals = NULL;
    *n = 0;
    return HLAB_EPARSE;
}
