/* reports/report.c — the report files: Pareto CSV + SVG, ablation CSV +
 * Markdown, loss-curve SVG, for one study of a results.db.
 *
 * Conventions: every report first gathers a report_data (the study, the
 * objectives, one table row per point and the designs aggregated over seeds),
 * then renders text into an hlab_buf and writes it atomically. Metric columns
 * of the table are: the objectives first, then x and y when they are not
 * objectives themselves.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "reports/plot.h"
#include "reports/reports.h"

#define DEFAULT_X "train_flops"
#define DEFAULT_Y "val_loss"
#define DEFAULT_OUT "reports_out"

static int isalnum_ascii(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

typedef struct {
    char study[256];
    char out_dir[1024];
    char file_stem[1400];       /* OUT/STUDY (sanitised) */
    int64_t study_id;
    hlab_objective obj[HLAB_MAX_OBJECTIVES];
    int n_obj;
    const char *metric[HLAB_MAX_OBJECTIVES + 2];
    int n_metric;
    int ix, iy;                 /* columns of x and y */
    hlab_sense sx, sy;
    hlab_db_table t;            /* one row per point */
    hlab_design_table d;        /* rows aggregated per design, with on_front */
} report_data;

static void report_data_free(report_data *r) {
    hlab_db_table_free(&r->t);
    hlab_design_table_free(&r->d);
}

static int metric_index(report_data *r, const char *m) {
    for (int i = 0; i < r->n_metric; i++)
        if (!strcmp(r->metric[i], m)) return i;
    if (r->n_metric == HLAB_MAX_OBJECTIVES + 2) return -1;
    r->metric[r->n_metric] = m;
    return r->n_metric++;
}

/* mkdir -p */
static int make_dirs(const char *path, hlab_err *err) {
    char tmp[1024];
    if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp)
        return hlab_fail(err, HLAB_EINVAL, "output folder path too long: %s", path);
    for (char *p = tmp + 1;; p++) {
        if (*p == '/' || *p == 0) {
            char c = *p;
            *p = 0;
            if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
                return hlab_fail(err, HLAB_EIO, "cannot create output folder '%s': %s", tmp, strerror(errno));
            *p = c;
            if (!c) break;
        }
    }
    struct stat sb;
    if (stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return hlab_fail(err, HLAB_EIO, "output path '%s' exists and is not a folder", path);
    return HLAB_OK;
}

static int report_data_load(hlab_db *db, const hlab_report_options *o, report_data *r, hlab_err *err) {
    memset(r, 0, sizeof *r);
    if (!o->study || !*o->study) return hlab_fail(err, HLAB_EINVAL, "no study given (expected a study name)");
    snprintf(r->study, sizeof r->study, "%s", o->study);
    snprintf(r->out_dir, sizeof r->out_dir, "%s", o->out_dir && *o->out_dir ? o->out_dir : DEFAULT_OUT);
    char safe[256];
    size_t k = 0;
    for (const char *c = r->study; *c && k + 1 < sizeof safe; c++)
        safe[k++] = (isalnum_ascii(*c) || *c == '-' || *c == '_' || *c == '.') ? *c : '_';
    safe[k] = 0;
    snprintf(r->file_stem, sizeof r->file_stem, "%s/%s", r->out_dir, safe);
    if (hlab_db_find_study(db, r->study, &r->study_id, err)) return err->code;

    const char *x = o->x && *o->x ? o->x : DEFAULT_X, *y = o->y && *o->y ? o->y : DEFAULT_Y;
    for (int i = 0; i < 2; i++)
        if (!hlab_db_metric_known(i ? y : x))
            return hlab_fail(err, HLAB_EINVAL, "--%c %s: unknown metric (expected e.g. train_flops, val_loss, "
                             "tokens_per_s, params, infer_bytes_per_token or eval.NAME)", i ? 'y' : 'x', i ? y : x);
    if (o->n_objectives > 0) {
        if (o->n_objectives > HLAB_MAX_OBJECTIVES)
            return hlab_fail(err, HLAB_EINVAL, "%d objectives (at most %d)", o->n_objectives, HLAB_MAX_OBJECTIVES);
        memcpy(r->obj, o->objectives, (size_t)o->n_objectives * sizeof *r->obj);
        r->n_obj = o->n_objectives;
    } else {
        hlab_db_study_list sl;
        if (hlab_db_list_studies(db, &sl, err)) return err->code;
        int rc = HLAB_OK;
        for (int i = 0; i < sl.n; i++)
            if (sl.items[i].id == r->study_id && sl.items[i].objectives)
                rc = hlab_objectives_parse(sl.items[i].objectives, r->obj, HLAB_MAX_OBJECTIVES, &r->n_obj, err);
        hlab_db_study_list_free(&sl);
        if (rc) return hlab_err_prefix(err, "objectives of study '%s'", r->study);
    }
    if (r->n_obj == 0) { /* no objectives anywhere: the plotted pair */
        snprintf(r->obj[0].metric, sizeof r->obj[0].metric, "%s", x);
        snprintf(r->obj[1].metric, sizeof r->obj[1].metric, "%s", y);
        r->obj[0].sense = hlab_metric_default_sense(x);
        r->obj[1].sense = hlab_metric_default_sense(y);
        r->n_obj = strcmp(x, y) ? 2 : 1;
    }
    /* The objectives are the first n_obj metric columns, in order (so a metric
     * may be named once). */
    for (int i = 0; i < r->n_obj; i++)
        if (metric_index(r, r->obj[i].metric) != i)
            return hlab_fail(err, HLAB_EINVAL, "objective '%s' is listed twice (expected each metric once)",
                             r->obj[i].metric);
    r->ix = metric_index(r, x);
    r->iy = metric_index(r, y);
    r->sx = r->ix < r->n_obj ? r->obj[r->ix].sense : hlab_metric_default_sense(x);
    r->sy = r->iy < r->n_obj ? r->obj[r->iy].sense : hlab_metric_default_sense(y);

    if (hlab_db_query_metrics(db, r->study_id, r->metric, r->n_metric, &r->t, err) ||
        hlab_designs_aggregate(&r->t, &r->d, err))
        goto fail;
    int cols[HLAB_MAX_OBJECTIVES];
    hlab_sense sense[HLAB_MAX_OBJECTIVES];
    for (int i = 0; i < r->n_obj; i++) {
        cols[i] = i;
        sense[i] = r->obj[i].sense;
    }
    if (hlab_designs_pareto(&r->d, cols, sense, r->n_obj, err)) goto fail;
    return HLAB_OK;
fail:
    report_data_free(r);
    return err->code;
}

static int write_output(const char *path, hlab_buf *b, hlab_buf *written, hlab_err *err) {
    if (hlab_buf_status(b, err)) return err->code;
    if (hlab_write_file_atomic(path, b->data ? b->data : "", b->len, err)) return err->code;
    if (written) hlab_buf_printf(written, "%s\n", path);
    return HLAB_OK;
}

static void objectives_text(const report_data *r, char *out, size_t cap) {
    size_t n = 0;
    out[0] = 0;
    for (int i = 0; i < r->n_obj && n < cap; i++)
        n += (size_t)snprintf(out + n, cap - n, "%s%s:%s", i ? ", " : "", r->obj[i].metric,
                              r->obj[i].sense == HLAB_MAXIMIZE ? "max" : "min");
}

/* Union of the axis names of every design, in order of first appearance. */
typedef struct { char **name; int n, cap; } name_set;
static int name_set_add(name_set *s, const char *name) {
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->name[i], name)) return i;
    if (s->n == s->cap) {
        int ncap = s->cap ? 2 * s->cap : 8;
        char **p = realloc(s->name, (size_t)ncap * sizeof *p);
        if (!p) return -1;
        s->name = p;
        s->cap = ncap;
    }
    size_t len = strlen(name);
    s->name[s->n] = malloc(len + 1);
    if (!s->name[s->n]) return -1;
    memcpy(s->name[s->n], name, len + 1);
    return s->n++;
}
static void name_set_free(name_set *s) {
    for (int i = 0; i < s->n; i++) free(s->name[i]);
    free(s->name);
    memset(s, 0, sizeof *s);
}

/* The value of axis `name` in axes_json as a malloc'ed string, "" when absent. */
static char *axis_value(const char *axes_json, const char *name) {
    char **k = NULL, **v = NULL, *out = NULL;
    int n = 0;
    hlab_err e = {0};
    if (hlab_axes_parse(axes_json, &k, &v, &n, &e) == HLAB_OK)
        for (int i = 0; i < n; i++)
            if (!strcmp(k[i], name)) {
                out = v[i];
                v[i] = NULL;
                break;
            }
    hlab_axes_free(k, v, n);
    if (!out) {
        out = malloc(1);
        if (out) out[0] = 0;
    }
    return out;
}

static int collect_axes(const report_data *r, name_set *axes, hlab_err *err) {
    memset(axes, 0, sizeof *axes);
    for (int i = 0; i < r->d.n; i++) {
        char **k = NULL, **v = NULL;
        int n = 0;
        if (hlab_axes_parse(r->d.items[i].axes_json, &k, &v, &n, err))
            return hlab_err_prefix(err, "design '%s'", r->d.items[i].label);
        for (int j = 0; j < n; j++)
            if (name_set_add(axes, k[j]) < 0) {
                hlab_axes_free(k, v, n);
                name_set_free(axes);
                return hlab_fail(err, HLAB_ENOMEM, "reports: out of memory collecting axes");
            }
        hlab_axes_free(k, v, n);
    }
    return HLAB_OK;
}

static void csv_number(hlab_buf *b, double v) {
    /* Empty cell for missing: spreadsheets read it as blank, not as text "nan". */
    if (isfinite(v)) hlab_buf_printf(b, ",%.10g", v);
    else hlab_buf_puts(b, ",");
}

/* ---- Pareto: CSV ------------------------------------------------------------- */
static int pareto_csv(const report_data *r, const name_set *axes, hlab_buf *written, hlab_err *err) {
    hlab_buf b;
    hlab_buf_init(&b);
    hlab_buf_puts(&b, "label,point_id");
    for (int a = 0; a < axes->n; a++) {
        hlab_buf_puts(&b, ",");
        hlab_buf_csv_field(&b, axes->name[a]);
    }
    hlab_buf_puts(&b, ",n_seeds,n_done");
    for (int m = 0; m < r->n_metric; m++) {
        char col[96];
        snprintf(col, sizeof col, "%s_mean", r->metric[m]);
        hlab_buf_puts(&b, ",");
        hlab_buf_csv_field(&b, col);
        snprintf(col, sizeof col, "%s_std", r->metric[m]);
        hlab_buf_puts(&b, ",");
        hlab_buf_csv_field(&b, col);
    }
    hlab_buf_puts(&b, ",on_frontier,missing\r\n");
    for (int i = 0; i < r->d.n; i++) {
        const hlab_design *g = &r->d.items[i];
        hlab_buf_csv_field(&b, g->label);
        hlab_buf_printf(&b, ",%lld", (long long)g->point_id);
        for (int a = 0; a < axes->n; a++) {
            char *v = axis_value(g->axes_json, axes->name[a]);
            hlab_buf_puts(&b, ",");
            hlab_buf_csv_field(&b, v ? v : "");
            free(v);
        }
        hlab_buf_printf(&b, ",%d,%d", g->n_seeds, g->n_done);
        for (int m = 0; m < r->n_metric; m++) {
            csv_number(&b, g->mean[m]);
            csv_number(&b, g->std[m]);
        }
        /* on_frontier: 1 / 0, blank when an objective is missing (named in `missing`). */
        hlab_buf_puts(&b, g->on_front == HLAB_FRONT_ON ? ",1," : g->on_front == HLAB_FRONT_DOMINATED ? ",0," : ",,");
        hlab_buf missing;
        hlab_buf_init(&missing);
        for (int m = 0; m < r->n_obj; m++)
            if (isnan(g->mean[m])) hlab_buf_printf(&missing, "%s%s", missing.len ? ";" : "", r->metric[m]);
        hlab_buf_csv_field(&b, missing.data ? missing.data : "");
        hlab_buf_free(&missing);
        hlab_buf_puts(&b, "\r\n");
    }
    char path[1500];
    snprintf(path, sizeof path, "%s_pareto.csv", r->file_stem);
    int rc = write_output(path, &b, written, err);
    hlab_buf_free(&b);
    return rc;
}

/* ---- Pareto: SVG --------------------------------------------------------------- */
static void svg_text(hlab_buf *b, const char *s, size_t max_chars) {
    /* XML 1.0 forbids most control characters even when escaped: drop them. */
    char tmp[256];
    size_t n = 0, len = strlen(s);
    for (size_t i = 0; i < len && n + 4 < sizeof tmp; i++) {
        if ((unsigned char)s[i] < 0x20) continue;
        if (n >= max_chars && ((unsigned char)s[i] & 0xC0) != 0x80) {
            memcpy(tmp + n, "\xE2\x80\xA6", 3); /* … */
            n += 3;
            break;
        }
        tmp[n++] = s[i];
    }
    tmp[n] = 0;
    hlab_buf_xml_text(b, tmp);
}

/* Sorts indices by transformed x (ascending), then y. */
static const double *sort_keys;
static int cmp_idx(const void *a, const void *b) {
    int i = *(const int *)a, j = *(const int *)b;
    double xi = sort_keys[2 * i], xj = sort_keys[2 * j];
    if (xi != xj) return xi < xj ? -1 : 1;
    double yi = sort_keys[2 * i + 1], yj = sort_keys[2 * j + 1];
    return yi < yj ? -1 : yi > yj;
}

/* Label placement: each label tries six spots around its marker and takes the
 * first that overlaps no marker, no placed label and stays inside the frame.
 * Front designs go first (they matter most); a dominated design whose label
 * fits nowhere goes unlabelled (its marker keeps a hover title), a front
 * design takes the spot with the least overlap. Widths are estimated at 6.1 px
 * per character of 11 px Helvetica, which is close enough for avoidance. */
typedef struct { double x0, y0, x1, y1; } label_box;

static double box_overlap(label_box a, label_box b) {
    double w = fmin(a.x1, b.x1) - fmax(a.x0, b.x0), h = fmin(a.y1, b.y1) - fmax(a.y0, b.y0);
    return w > 0 && h > 0 ? w * h : 0;
}

static void place_labels(hlab_buf *b, const report_data *r, const plot_frame *f, const double *xy) {
    int n = r->d.n, n_boxes = 0;
    label_box *boxes = malloc((size_t)(n ? n : 1) * 2 * sizeof *boxes);
    if (!boxes) return; /* labels are a nicety; the markers carry titles */
    for (int i = 0; i < n; i++)
        if (isfinite(xy[2 * i]) && isfinite(xy[2 * i + 1])) {
            double px = plot_map(&f->x, xy[2 * i]), py = plot_map(&f->y, xy[2 * i + 1]);
            boxes[n_boxes++] = (label_box){px - 7, py - 7, px + 7, py + 7};
        }
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < n; i++) {
            const hlab_design *g = &r->d.items[i];
            int front = g->on_front == HLAB_FRONT_ON;
            if (front != (pass == 0) || !isfinite(xy[2 * i]) || !isfinite(xy[2 * i + 1])) continue;
            double px = plot_map(&f->x, xy[2 * i]), py = plot_map(&f->y, xy[2 * i + 1]);
            size_t chars = strlen(g->label) > 34 ? 35 : strlen(g->label);
            double w = 6.1 * (double)chars + (front ? 8 : 0), h = 13;
            /* (x of the text box's left edge, baseline y) for each candidate spot */
            double cand[6][2] = {{px + 9, py - 5},      {px + 9, py + 15},     {px - 9 - w, py - 5},
                                 {px - 9 - w, py + 15}, {px - w / 2, py - 11}, {px - w / 2, py + 22}};
            int best = -1;
            double best_cost = INFINITY;
            for (int c = 0; c < 6; c++) {
                label_box bx = {cand[c][0], cand[c][1] - h + 3, cand[c][0] + w, cand[c][1] + 3};
                double cost = 0;
                if (bx.x0 < f->left + 2 || bx.x1 > f->right - 2 || bx.y0 < f->top + 2 || bx.y1 > f->bottom - 2)
                    cost += 1e6; /* outside the frame: last resort */
                for (int k = 0; k < n_boxes; k++) cost += box_overlap(bx, boxes[k]);
                if (cost < best_cost) {
                    best_cost = cost;
                    best = c;
                }
                if (cost == 0) break;
            }
            if (best < 0 || (!front && best_cost > 0)) continue;
            boxes[n_boxes++] = (label_box){cand[best][0], cand[best][1] - h + 3, cand[best][0] + w, cand[best][1] + 3};
            hlab_buf_printf(b, "<text x=\"%.1f\" y=\"%.1f\" fill=\"%s\"%s>", cand[best][0], cand[best][1],
                            front ? "#222" : "#777", front ? " font-weight=\"bold\"" : "");
            svg_text(b, g->label, 34);
            hlab_buf_puts(b, "</text>\n");
        }
    free(boxes);
}

static int pareto_svg(const report_data *r, const name_set *axes, hlab_buf *written, hlab_err *err) {
    const int W = 1040, H = 660;
    plot_frame f = {.left = 100, .top = 74, .right = 760, .bottom = 570};
    int n = r->d.n;
    double *xy = malloc((size_t)(n ? n : 1) * 2 * sizeof *xy);
    int *idx = malloc((size_t)(n ? n : 1) * sizeof *idx);
    int *front2 = malloc((size_t)(n ? n : 1) * sizeof *front2);
    hlab_buf b;
    hlab_buf_init(&b);
    if (!xy || !idx || !front2) {
        free(xy);
        free(idx);
        free(front2);
        return hlab_fail(err, HLAB_ENOMEM, "reports: out of memory drawing the Pareto plot");
    }
    int shown = 0, on_front = 0;
    for (int i = 0; i < n; i++) {
        xy[2 * i] = r->d.items[i].mean[r->ix];
        xy[2 * i + 1] = r->d.items[i].mean[r->iy];
        if (isfinite(xy[2 * i]) && isfinite(xy[2 * i + 1])) shown++;
        if (r->d.items[i].on_front == HLAB_FRONT_ON) on_front++;
    }
    /* Scales include the ±std whiskers so none pokes out of the frame:
     * ext holds x-std, x+std for every design, then y-std, y+std. */
    double *ext = malloc((size_t)(n ? n : 1) * 4 * sizeof *ext);
    if (!ext) {
        free(xy);
        free(idx);
        free(front2);
        return hlab_fail(err, HLAB_ENOMEM, "reports: out of memory drawing the Pareto plot");
    }
    double *ey = ext + 2 * n;
    for (int i = 0; i < n; i++) {
        const hlab_design *g = &r->d.items[i];
        double drop = isfinite(xy[2 * i]) && isfinite(xy[2 * i + 1]) ? 0 : NAN; /* not plotted */
        double sx = isfinite(g->std[r->ix]) ? g->std[r->ix] : 0, sy = isfinite(g->std[r->iy]) ? g->std[r->iy] : 0;
        ext[2 * i] = xy[2 * i] - sx + drop;
        ext[2 * i + 1] = xy[2 * i] + sx + drop;
        ey[2 * i] = xy[2 * i + 1] - sy + drop;
        ey[2 * i + 1] = xy[2 * i + 1] + sy + drop;
    }
    /* On a log axis a whisker can reach <= 0; fit to the means there. */
    plot_scale_fit(&f.x, ext, 2 * n, 1, 1);
    if (f.x.log) plot_scale_fit(&f.x, xy, n, 2, 1);
    plot_scale_fit(&f.y, ey, 2 * n, 1, 1);
    if (f.y.log) plot_scale_fit(&f.y, xy + 1, n, 2, 1);
    free(ext);
    f.x.px0 = f.left + 12;
    f.x.px1 = f.right - 12;
    f.y.px0 = f.bottom - 12;
    f.y.px1 = f.top + 12;

    char title[400], subtitle[700], objs[400], xt[160], yt[160];
    snprintf(title, sizeof title, "%s: Pareto front, %s vs %s", r->study, r->metric[r->iy], r->metric[r->ix]);
    objectives_text(r, objs, sizeof objs);
    snprintf(subtitle, sizeof subtitle,
             "%d designs (%d plotted), %d on the front of {%s}; mean over seeds, whiskers \xC2\xB1" "1 std",
             n, shown, on_front, objs);
    plot_svg_begin(&b, W, H, title, subtitle);
    plot_axis_title(xt, sizeof xt, r->metric[r->ix], hlab_metric_unit(r->metric[r->ix]), f.x.log);
    plot_axis_title(yt, sizeof yt, r->metric[r->iy], hlab_metric_unit(r->metric[r->iy]), f.y.log);
    plot_axes(&b, &f, xt, yt);

    /* Colour by the first axis (the study's main question), legend on the right. */
    const char *colour_axis = axes->n ? axes->name[0] : NULL;
    name_set values = {0};
    int *colour = calloc((size_t)(n ? n : 1), sizeof *colour);
    for (int i = 0; i < n && colour; i++) {
        char *v = colour_axis ? axis_value(r->d.items[i].axes_json, colour_axis) : NULL;
        colour[i] = v ? name_set_add(&values, v) : 0;
        free(v);
    }

    /* The 2-D front of (x, y) under their senses, drawn as a staircase. */
    double *tr = malloc((size_t)(n ? n : 1) * 2 * sizeof *tr);
    int n2 = 0;
    hlab_sense s2[2] = {r->sx, r->sy};
    if (tr) {
        hlab_pareto(xy, n, 2, s2, front2, err);
        for (int i = 0; i < n; i++) {
            tr[2 * i] = r->sx == HLAB_MAXIMIZE ? -xy[2 * i] : xy[2 * i];
            tr[2 * i + 1] = r->sy == HLAB_MAXIMIZE ? -xy[2 * i + 1] : xy[2 * i + 1];
            if (front2[i] == HLAB_FRONT_ON && isfinite(xy[2 * i]) && isfinite(xy[2 * i + 1])) idx[n2++] = i;
        }
        sort_keys = tr;
        qsort(idx, (size_t)n2, sizeof *idx, cmp_idx);
        sort_keys = NULL;
    }
    hlab_buf_printf(&b, "<clipPath id=\"plot-area\"><rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\"/></clipPath>\n",
                    f.left, f.top, f.right - f.left, f.bottom - f.top);
    if (n2 > 0) {
        hlab_buf_puts(&b, "<polyline clip-path=\"url(#plot-area)\" fill=\"none\" stroke=\"#333\" stroke-width=\"1.6\" "
                          "stroke-dasharray=\"6 3\" points=\"");
        for (int q = 0; q < n2; q++) {
            int i = idx[q];
            double px = plot_map(&f.x, xy[2 * i]), py = plot_map(&f.y, xy[2 * i + 1]);
            if (q > 0) /* horizontal, then vertical: the boundary of the dominated region */
                hlab_buf_printf(&b, "%.1f,%.1f ", px, plot_map(&f.y, xy[2 * idx[q - 1] + 1]));
            hlab_buf_printf(&b, "%.1f,%.1f ", px, py);
        }
        hlab_buf_puts(&b, "\"/>\n");
    }
    free(tr);

    /* Whiskers, then markers, then labels (labels on top). */
    hlab_buf_puts(&b, "<g clip-path=\"url(#plot-area)\" stroke-width=\"1\">\n");
    for (int i = 0; i < n; i++) {
        const hlab_design *g = &r->d.items[i];
        if (!isfinite(xy[2 * i]) || !isfinite(xy[2 * i + 1])) continue;
        double px = plot_map(&f.x, xy[2 * i]), py = plot_map(&f.y, xy[2 * i + 1]);
        const char *c = plot_color(colour ? colour[i] : 0);
        double sx = g->std[r->ix], sy = g->std[r->iy];
        if (isfinite(sx) && sx > 0 && (!f.x.log || xy[2 * i] - sx > 0))
            hlab_buf_printf(&b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\"/>\n",
                            plot_map(&f.x, xy[2 * i] - sx), py, plot_map(&f.x, xy[2 * i] + sx), py, c);
        if (isfinite(sy) && sy > 0 && (!f.y.log || xy[2 * i + 1] - sy > 0))
            hlab_buf_printf(&b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\"/>\n", px,
                            plot_map(&f.y, xy[2 * i + 1] - sy), px, plot_map(&f.y, xy[2 * i + 1] + sy), c);
    }
    hlab_buf_puts(&b, "</g>\n<g stroke-width=\"1.8\">\n");
    for (int i = 0; i < n; i++) {
        const hlab_design *g = &r->d.items[i];
        if (!isfinite(xy[2 * i]) || !isfinite(xy[2 * i + 1])) continue;
        double px = plot_map(&f.x, xy[2 * i]), py = plot_map(&f.y, xy[2 * i + 1]);
        const char *c = plot_color(colour ? colour[i] : 0);
        hlab_buf_puts(&b, "<circle");
        hlab_buf_printf(&b, " cx=\"%.1f\" cy=\"%.1f\" r=\"%s\" stroke=\"%s\" fill=\"%s\"%s><title>", px, py,
                        g->on_front == HLAB_FRONT_ON ? "6" : "5", g->on_front == HLAB_FRONT_MISSING ? "#999" : c,
                        g->on_front == HLAB_FRONT_ON ? c : "#fff",
                        g->on_front == HLAB_FRONT_MISSING ? " stroke-dasharray=\"2 2\"" : "");
        /* Hover text: the design and its numbers. */
        char tip[512];
        char xs[32], ys[32];
        plot_fmt_num(xs, sizeof xs, xy[2 * i]);
        plot_fmt_num(ys, sizeof ys, xy[2 * i + 1]);
        snprintf(tip, sizeof tip, "%s: %s = %s, %s = %s, %d seed(s)%s", g->label, r->metric[r->ix], xs,
                 r->metric[r->iy], ys, g->n_seeds,
                 g->on_front == HLAB_FRONT_ON ? ", on the front" : g->on_front == HLAB_FRONT_MISSING ? ", an objective is missing" : "");
        svg_text(&b, tip, 200);
        hlab_buf_puts(&b, "</title></circle>\n");
    }
    hlab_buf_puts(&b, "</g>\n<g font-size=\"11\">\n");
    place_labels(&b, r, &f, xy);
    hlab_buf_puts(&b, "</g>\n");
    if (shown == 0)
        hlab_buf_printf(&b,
                        "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" fill=\"#777\" font-size=\"14\">no "
                        "design has both values yet</text>\n",
                        (f.left + f.right) / 2, (f.top + f.bottom) / 2);

    /* Legend. */
    double lx = f.right + 24, ly = f.top + 6;
    hlab_buf_printf(&b, "<g font-size=\"12\" fill=\"#222\">\n");
    hlab_buf_printf(&b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"6\" fill=\"#555\" stroke=\"#555\"/>", lx + 6, ly);
    hlab_buf_printf(&b, "<text x=\"%.1f\" y=\"%.1f\">on the Pareto front (%d objective%s)</text>\n", lx + 20, ly + 4,
                    r->n_obj, r->n_obj == 1 ? "" : "s");
    ly += 22;
    hlab_buf_printf(&b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"5\" fill=\"#fff\" stroke=\"#555\" stroke-width=\"1.8\"/>",
                    lx + 6, ly);
    hlab_buf_printf(&b, "<text x=\"%.1f\" y=\"%.1f\">dominated</text>\n", lx + 20, ly + 4);
    ly += 22;
    hlab_buf_printf(&b,
                    "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#333\" stroke-width=\"1.6\" "
                    "stroke-dasharray=\"6 3\"/>",
                    lx - 2, ly, lx + 14, ly);
    hlab_buf_printf(&b, "<text x=\"%.1f\" y=\"%.1f\">front in this plane (%s, %s)</text>\n", lx + 20, ly + 4,
                    r->sx == HLAB_MAXIMIZE ? "max x" : "min x", r->sy == HLAB_MAXIMIZE ? "max y" : "min y");
    ly += 22;
    if (shown < n) {
        hlab_buf_printf(&b, "<text x=\"%.1f\" y=\"%.1f\" fill=\"#777\">%d design(s) without results not shown</text>\n",
                        lx, ly + 4, n - shown);
        ly += 22;
    }
    if (colour_axis && values.n > 0) {
        ly += 10;
        hlab_buf_printf(&b, "<text x=\"%.1f\" y=\"%.1f\" font-weight=\"bold\">colour: ", lx, ly + 4);
        svg_text(&b, colour_axis, 30);
        hlab_buf_puts(&b, "</text>\n");
        ly += 20;
        int shown_values = values.n > 20 ? 19 : values.n;
        for (int v = 0; v < shown_values; v++, ly += 20) {
            hlab_buf_printf(&b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"12\" height=\"12\" rx=\"2\" fill=\"%s\"/>", lx,
                            ly - 6, plot_color(v));
            hlab_buf_printf(&b, "<text x=\"%.1f\" y=\"%.1f\">", lx + 20, ly + 4);
            svg_text(&b, values.name[v], 30);
            hlab_buf_puts(&b, "</text>\n");
        }
        if (values.n > shown_values)
            hlab_buf_printf(&b, "<text x=\"%.1f\" y=\"%.1f\" fill=\"#777\">and %d more (colours repeat)</text>\n", lx,
                            ly + 4, values.n - shown_values);
    }
    hlab_buf_puts(&b, "</g>\n");
    plot_svg_end(&b);
    name_set_free(&values);
    free(colour);
    free(xy);
    free(idx);
    free(front2);
    char path[1500];
    snprintf(path, sizeof path, "%s_pareto.svg", r->file_stem);
    int rc = write_output(path, &b, written, err);
    hlab_buf_free(&b);
    return rc;
}

int hlab_report_pareto(hlab_db *db, const hlab_report_options *o, hlab_buf *written, hlab_err *err) {
    report_data r;
    if (report_data_load(db, o, &r, err)) return err->code;
    name_set axes;
    int rc = collect_axes(&r, &axes, err);
    if (rc == HLAB_OK) {
        rc = make_dirs(r.out_dir, err);
        if (rc == HLAB_OK) rc = pareto_csv(&r, &axes, written, err);
        if (rc == HLAB_OK) rc = pareto_svg(&r, &axes, written, err);
        name_set_free(&axes);
    }
    report_data_free(&r);
    return rc;
}

/* ---- ablation table ------------------------------------------------------------ */
/* "3.412 ± 0.012"; big numbers share one SI suffix ("702T ± 9.6T"); the
 * spread is left out when fewer than two seeds had a value; "n/a" when none. */
static void fmt_mean_std(char *out, size_t cap, double mean, double std) {
    static const char *const suffix[] = {"", "k", "M", "G", "T", "P", "E"};
    if (isnan(mean)) {
        snprintf(out, cap, "n/a");
        return;
    }
    int k = 0;
    double scale = 1;
    while (fabs(mean) / scale >= 1e3 && k < 6) {
        scale *= 1000;
        k++;
    }
    int n = snprintf(out, cap, k ? "%.3g%s" : "%.4g%s", mean / scale, suffix[k]);
    if (!isnan(std) && n > 0 && (size_t)n < cap)
        snprintf(out + n, cap - (size_t)n, " \xC2\xB1 %.2g%s", std / scale, suffix[k]);
}

/* Per (axis value): per seed the mean over the points with that value, then
 * mean and std across seeds. Fills mean/std/n_seeds (n_metric each) and n_points. */
typedef struct {
    char *value;
    int n_points, n_seeds;
    double *mean, *std;
} axis_row;

static int ablation_rows(const report_data *r, const char *axis, axis_row **rows_out, int *n_rows, hlab_err *err) {
    int m = r->n_metric, nr = r->t.n_rows, nv = 0, ns = 0, rc = HLAB_OK;
    char **val = calloc((size_t)(nr ? nr : 1), sizeof *val);
    name_set values = {0}, seeds = {0};
    int *vi = calloc((size_t)(nr ? nr : 1), sizeof *vi), *si = calloc((size_t)(nr ? nr : 1), sizeof *si);
    axis_row *rows = NULL;
    double *sum = NULL;
    int *cnt = NULL;
    *rows_out = NULL;
    *n_rows = 0;
    if (!val || !vi || !si) goto oom;
    for (int i = 0; i < nr; i++) {
        val[i] = axis_value(r->t.axes_json[i], axis);
        char seed[32];
        snprintf(seed, sizeof seed, "%lld", (long long)r->t.seed[i]);
        if (!val[i] || (vi[i] = name_set_add(&values, val[i])) < 0 || (si[i] = name_set_add(&seeds, seed)) < 0)
            goto oom;
    }
    nv = values.n;
    ns = seeds.n;
    rows = calloc((size_t)(nv ? nv : 1), sizeof *rows);
    sum = calloc((size_t)(nv ? nv : 1) * (size_t)(ns ? ns : 1) * (size_t)(m ? m : 1), sizeof *sum);
    cnt = calloc((size_t)(nv ? nv : 1) * (size_t)(ns ? ns : 1) * (size_t)(m ? m : 1), sizeof *cnt);
    if (!rows || !sum || !cnt) goto oom;
#define CELL(v, s, j) (((size_t)(v) * (size_t)ns + (size_t)(s)) * (size_t)m + (size_t)(j))
    for (int i = 0; i < nr; i++) {
        rows[vi[i]].n_points++;
        for (int j = 0; j < m; j++) {
            double x = r->t.values[(size_t)i * m + j];
            if (isnan(x)) continue;
            sum[CELL(vi[i], si[i], j)] += x;
            cnt[CELL(vi[i], si[i], j)]++;
        }
    }
    for (int v = 0; v < nv; v++) {
        axis_row *row = &rows[v];
        row->value = values.name[v];
        values.name[v] = NULL;
        row->mean = calloc((size_t)(m ? m : 1), sizeof *row->mean);
        row->std = calloc((size_t)(m ? m : 1), sizeof *row->std);
        if (!row->mean || !row->std) {
            *n_rows = v + 1;
            goto oom;
        }
        for (int j = 0; j < m; j++) {
            double s1 = 0, s2 = 0;
            int k = 0;
            for (int s = 0; s < ns; s++)
                if (cnt[CELL(v, s, j)]) {
                    s1 += sum[CELL(v, s, j)] / cnt[CELL(v, s, j)];
                    k++;
                }
            double mean = k ? s1 / k : NAN;
            for (int s = 0; s < ns; s++)
                if (cnt[CELL(v, s, j)]) {
                    double d = sum[CELL(v, s, j)] / cnt[CELL(v, s, j)] - mean;
                    s2 += d * d;
                }
            row->mean[j] = mean;
            row->std[j] = k > 1 ? sqrt(s2 / (k - 1)) : NAN;
            if (j == 0 || k > row->n_seeds) row->n_seeds = k;
        }
    }
#undef CELL
    *rows_out = rows;
    *n_rows = nv;
    rows = NULL;
    goto done;
oom:
    rc = hlab_fail(err, HLAB_ENOMEM, "reports: out of memory building the ablation table for %s", axis);
done:
    if (rows)
        for (int v = 0; v < *n_rows; v++) free(rows[v].value), free(rows[v].mean), free(rows[v].std);
    if (rc) *n_rows = 0;
    free(rows);
    for (int i = 0; val && i < nr; i++) free(val[i]);
    free(val);
    free(vi);
    free(si);
    free(sum);
    free(cnt);
    name_set_free(&values);
    name_set_free(&seeds);
    return rc;
}

static void free_axis_rows(axis_row *rows, int n) {
    for (int v = 0; v < n; v++) {
        free(rows[v].value);
        free(rows[v].mean);
        free(rows[v].std);
    }
    free(rows);
}

static void md_cell(hlab_buf *b, const char *s) {
    /* A | inside a cell would end it. */
    for (; *s; s++) {
        if (*s == '|') hlab_buf_puts(b, "\\|");
        else if ((unsigned char)*s >= 0x20) {
            char c[2] = {*s, 0};
            hlab_buf_puts(b, c);
        }
    }
}

static void md_header(hlab_buf *md, const report_data *r, const char *first, const char *third, int with_front) {
    hlab_buf_printf(md, "| %s | points | %s |", first, third);
    for (int j = 0; j < r->n_metric; j++) {
        const char *u = hlab_metric_unit(r->metric[j]);
        hlab_buf_printf(md, " %s%s%s%s |", r->metric[j], *u ? " (" : "", u, *u ? ")" : "");
    }
    if (with_front) hlab_buf_puts(md, " front |");
    hlab_buf_puts(md, "\n|---|---:|---:|");
    for (int j = 0; j < r->n_metric; j++) hlab_buf_puts(md, "---:|");
    if (with_front) hlab_buf_puts(md, ":---:|");
    hlab_buf_puts(md, "\n");
}

/* Builds both the CSV and the Markdown (either may be NULL). */
static int ablation_build(const report_data *r, hlab_buf *csv, hlab_buf *md, hlab_err *err) {
    name_set axes;
    if (collect_axes(r, &axes, err)) return err->code;
    char objs[400];
    objectives_text(r, objs, sizeof objs);
    if (md) {
        hlab_buf_printf(md, "# %s: ablation\n\n", r->study);
        hlab_buf_printf(md,
                        "Objectives: %s. Each cell is mean \xC2\xB1 std over seeds: per seed, the mean over the "
                        "points with that value; then mean and spread across seeds. n/a: no finished run.\n\n",
                        objs);
    }
    if (csv) {
        hlab_buf_puts(csv, "axis,value,n_points,n_seeds");
        for (int j = 0; j < r->n_metric; j++) {
            char col[96];
            snprintf(col, sizeof col, "%s_mean", r->metric[j]);
            hlab_buf_puts(csv, ",");
            hlab_buf_csv_field(csv, col);
            snprintf(col, sizeof col, "%s_std", r->metric[j]);
            hlab_buf_puts(csv, ",");
            hlab_buf_csv_field(csv, col);
        }
        hlab_buf_puts(csv, "\r\n");
    }
    int rc = HLAB_OK;
    for (int a = 0; a < axes.n && rc == HLAB_OK; a++) {
        axis_row *rows;
        int nv;
        rc = ablation_rows(r, axes.name[a], &rows, &nv, err);
        if (rc) break;
        if (md) {
            hlab_buf_puts(md, "## ");
            md_cell(md, axes.name[a]);
            hlab_buf_puts(md, "\n\n");
            md_header(md, r, "value", "seeds", 0);
        }
        for (int v = 0; v < nv; v++) {
            if (csv) {
                hlab_buf_csv_field(csv, axes.name[a]);
                hlab_buf_puts(csv, ",");
                hlab_buf_csv_field(csv, rows[v].value);
                hlab_buf_printf(csv, ",%d,%d", rows[v].n_points, rows[v].n_seeds);
                for (int j = 0; j < r->n_metric; j++) {
                    csv_number(csv, rows[v].mean[j]);
                    csv_number(csv, rows[v].std[j]);
                }
                hlab_buf_puts(csv, "\r\n");
            }
            if (md) {
                hlab_buf_puts(md, "| ");
                md_cell(md, *rows[v].value ? rows[v].value : "(unset)");
                hlab_buf_printf(md, " | %d | %d |", rows[v].n_points, rows[v].n_seeds);
                for (int j = 0; j < r->n_metric; j++) {
                    char cell[80];
                    fmt_mean_std(cell, sizeof cell, rows[v].mean[j], rows[v].std[j]);
                    hlab_buf_printf(md, " %s |", cell);
                }
                hlab_buf_puts(md, "\n");
            }
        }
        if (md) hlab_buf_puts(md, "\n");
        free_axis_rows(rows, nv);
    }
    name_set_free(&axes);
    if (rc == HLAB_OK && md) {
        hlab_buf_puts(md, "## designs\n\n");
        md_header(md, r, "design", "done", 1);
        for (int i = 0; i < r->d.n; i++) {
            const hlab_design *g = &r->d.items[i];
            hlab_buf_puts(md, "| ");
            md_cell(md, g->label);
            hlab_buf_printf(md, " | %d | %d |", g->n_seeds, g->n_done);
            for (int j = 0; j < r->n_metric; j++) {
                char cell[80];
                fmt_mean_std(cell, sizeof cell, g->mean[j], g->std[j]);
                hlab_buf_printf(md, " %s |", cell);
            }
            hlab_buf_puts(md, g->on_front == HLAB_FRONT_ON ? " \xE2\x97\x8F |\n" /* ● */
                                                          : g->on_front == HLAB_FRONT_MISSING ? " n/a |\n" : "  |\n");
        }
    }
    return rc;
}

int hlab_report_table(hlab_db *db, const hlab_report_options *o, hlab_buf *written, hlab_err *err) {
    report_data r;
    if (report_data_load(db, o, &r, err)) return err->code;
    hlab_buf csv, md;
    hlab_buf_init(&csv);
    hlab_buf_init(&md);
    int rc = ablation_build(&r, &csv, &md, err);
    if (rc == HLAB_OK) rc = make_dirs(r.out_dir, err);
    char path[1500];
    if (rc == HLAB_OK) {
        snprintf(path, sizeof path, "%s_ablation.csv", r.file_stem);
        rc = write_output(path, &csv, written, err);
    }
    if (rc == HLAB_OK) {
        snprintf(path, sizeof path, "%s_ablation.md", r.file_stem);
        rc = write_output(path, &md, written, err);
    }
    hlab_buf_free(&csv);
    hlab_buf_free(&md);
    report_data_free(&r);
    return rc;
}

int hlab_report_table_text(hlab_db *db, const hlab_report_options *o, hlab_buf *out, hlab_err *err) {
    report_data r;
    if (report_data_load(db, o, &r, err)) return err->code;
    int rc = ablation_build(&r, NULL, out, err);
    if (rc == HLAB_OK) rc = hlab_buf_status(out, err);
    report_data_free(&r);
    return rc;
}

/* ---- loss curves ---------------------------------------------------------------- */
static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Appends one polyline of finite (step, value) pairs, at most ~600 vertices. */
static void curve_polyline(hlab_buf *b, const plot_frame *f, const hlab_db_curve *c, const double *v,
                           const char *style) {
    int finite = 0;
    for (int i = 0; i < c->n; i++) finite += isfinite(v[i]) != 0;
    if (finite < 1) return;
    int stride = finite > 600 ? (finite + 599) / 600 : 1, k = 0;
    hlab_buf_printf(b, "<polyline fill=\"none\" %s points=\"", style);
    for (int i = 0; i < c->n; i++) {
        if (!isfinite(v[i])) continue;
        if (k++ % stride == 0 || k == finite) /* keeps the last vertex */
            hlab_buf_printf(b, "%.1f,%.1f ", plot_map(&f->x, c->step[i]), plot_map(&f->y, v[i]));
    }
    hlab_buf_puts(b, "\"/>\n");
}

int hlab_report_curves(hlab_db *db, const hlab_report_options *o, hlab_buf *written, hlab_err *err) {
    report_data r;
    if (report_data_load(db, o, &r, err)) return err->code;
    int np = r.t.n_rows, rc = HLAB_OK;
    hlab_db_curve *curves = calloc((size_t)(np ? np : 1), sizeof *curves);
    int *design = calloc((size_t)(np ? np : 1), sizeof *design);
    hlab_buf b;
    hlab_buf_init(&b);
    double *all = NULL;
    if (!curves || !design) {
        rc = hlab_fail(err, HLAB_ENOMEM, "reports: out of memory reading loss curves");
        goto out;
    }
    size_t n_all = 0;
    int max_step = 0, with_data = 0;
    for (int i = 0; i < np; i++) {
        if ((rc = hlab_db_loss_curve(db, r.t.point_id[i], &curves[i], err))) goto out;
        n_all += 2 * (size_t)curves[i].n;
        if (curves[i].n) {
            with_data++;
            if (curves[i].step[curves[i].n - 1] > max_step) max_step = curves[i].step[curves[i].n - 1];
        }
        const char *label = r.t.label[i] && *r.t.label[i] ? r.t.label[i] : NULL;
        design[i] = 0;
        for (int d = 0; d < r.d.n; d++) {
            char fallback[48];
            snprintf(fallback, sizeof fallback, "point %lld", (long long)r.t.point_id[i]);
            if (!strcmp(r.d.items[d].label, label ? label : fallback)) design[i] = d;
        }
    }
    all = malloc((n_all ? n_all : 1) * sizeof *all);
    if (!all) {
        rc = hlab_fail(err, HLAB_ENOMEM, "reports: out of memory reading loss curves");
        goto out;
    }
    size_t k = 0;
    for (int i = 0; i < np; i++)
        for (int s = 0; s < curves[i].n; s++) {
            if (isfinite(curves[i].loss[s])) all[k++] = curves[i].loss[s];
            if (isfinite(curves[i].val_loss[s])) all[k++] = curves[i].val_loss[s];
        }
    /* The y range ends at the 99th percentile: one diverging run or the first
     * steps' spike must not flatten every other curve (lines are clipped). */
    qsort(all, k, sizeof *all, cmp_double);
    double yr[2] = {k ? all[0] : NAN, k ? all[(size_t)((double)(k - 1) * 0.99)] : NAN};
    const int W = 1040, H = 640;
    plot_frame f = {.left = 100, .top = 74, .right = 760, .bottom = 550};
    plot_scale_exact(&f.x, 0, max_step > 0 ? max_step : 1);
    plot_scale_fit(&f.y, yr, 2, 1, 1);
    f.x.px0 = f.left;
    f.x.px1 = f.right - 6; /* the last validation dot stays whole */
    f.y.px0 = f.bottom - 8;
    f.y.px1 = f.top + 8;
    char title[400], subtitle[300];
    snprintf(title, sizeof title, "%s: loss curves", r.study);
    snprintf(subtitle, sizeof subtitle, "%d point(s) with metrics of %d, %d design(s); colour = design", with_data, np,
             r.d.n);
    plot_svg_begin(&b, W, H, title, subtitle);
    plot_axes(&b, &f, "step", f.y.log ? "loss (nats/token, log scale)" : "loss (nats/token)");
    hlab_buf_printf(&b, "<clipPath id=\"plot-area\"><rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\"/></clipPath>\n",
                    f.left, f.top, f.right - f.left, f.bottom - f.top);
    hlab_buf_puts(&b, "<g clip-path=\"url(#plot-area)\" stroke-linejoin=\"round\">\n");
    for (int i = 0; i < np; i++) {
        const char *c = plot_color(design[i]);
        char style[160];
        hlab_buf_puts(&b, "<g><title>");
        svg_text(&b, r.d.items[design[i]].label, 120);
        hlab_buf_printf(&b, " (seed %lld)</title>\n", (long long)r.t.seed[i]);
        snprintf(style, sizeof style, "stroke=\"%s\" stroke-width=\"1.5\" stroke-opacity=\"0.85\"", c);
        curve_polyline(&b, &f, &curves[i], curves[i].loss, style);
        snprintf(style, sizeof style, "stroke=\"%s\" stroke-width=\"2\" stroke-dasharray=\"5 3\"", c);
        curve_polyline(&b, &f, &curves[i], curves[i].val_loss, style);
        for (int s = 0; s < curves[i].n; s++)
            if (isfinite(curves[i].val_loss[s]))
                hlab_buf_printf(&b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.8\" fill=\"%s\"/>\n",
                                plot_map(&f.x, curves[i].step[s]), plot_map(&f.y, curves[i].val_loss[s]), c);
        hlab_buf_puts(&b, "</g>\n");
    }
    hlab_buf_puts(&b, "</g>\n");
    /* Legend: line styles, then one entry per design. */
    double lx = f.right + 24, ly = f.top + 6;
    hlab_buf_puts(&b, "<g font-size=\"12\" fill=\"#222\">\n");
    hlab_buf_printf(&b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#555\" stroke-width=\"1.5\"/>",
                    lx, ly, lx + 22, ly);
    hlab_buf_printf(&b, "<text x=\"%.1f\" y=\"%.1f\">training loss</text>\n", lx + 30, ly + 4);
    ly += 20;
    hlab_buf_printf(&b,
                    "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#555\" stroke-width=\"2\" "
                    "stroke-dasharray=\"5 3\"/><circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.8\" fill=\"#555\"/>",
                    lx, ly, lx + 22, ly, lx + 11, ly);
    hlab_buf_printf(&b, "<text x=\"%.1f\" y=\"%.1f\">validation loss</text>\n", lx + 30, ly + 4);
    ly += 30;
    int max_entries = 22, shown = r.d.n > max_entries ? max_entries - 1 : r.d.n;
    for (int d = 0; d < shown; d++, ly += 20) {
        hlab_buf_printf(&b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"22\" height=\"4\" fill=\"%s\"/>", lx, ly - 2,
                        plot_color(d));
        hlab_buf_printf(&b, "<text x=\"%.1f\" y=\"%.1f\">", lx + 30, ly + 4);
        svg_text(&b, r.d.items[d].label, 30);
        hlab_buf_puts(&b, "</text>\n");
    }
    if (r.d.n > shown)
        hlab_buf_printf(&b, "<text x=\"%.1f\" y=\"%.1f\" fill=\"#777\">and %d more (colours repeat)</text>\n", lx,
                        ly + 4, r.d.n - shown);
    if (with_data == 0)
        hlab_buf_printf(&b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" fill=\"#777\" font-size=\"14\">no "
                            "metrics recorded yet</text>\n",
                        (f.left + f.right) / 2, (f.top + f.bottom) / 2);
    hlab_buf_puts(&b, "</g>\n");
    plot_svg_end(&b);
    if ((rc = make_dirs(r.out_dir, err)) == HLAB_OK) {
        char path[1500];
        snprintf(path, sizeof path, "%s_curves.svg", r.file_stem);
        rc = write_output(path, &b, written, err);
    }
out:
    for (int i = 0; curves && i < np; i++) hlab_db_curve_free(&curves[i]);
    free(curves);
    free(design);
    free(all);
    hlab_buf_free(&b);
    report_data_free(&r);
    return rc;
}
