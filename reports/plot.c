/* reports/plot.c — scales, nice ticks and SVG axes for the report figures.
 * Conventions: SVG y grows downwards, so y scales map lo to the bottom pixel
 * (px0 > px1); coordinates are written with one decimal. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "reports/plot.h"

/* 1, 2 or 5 times a power of ten, at least x. */
static double nice_step(double x) {
    double p = pow(10.0, floor(log10(x)));
    double m = x / p;
    return (m <= 1.0 ? 1.0 : m <= 2.0 ? 2.0 : m <= 5.0 ? 5.0 : 10.0) * p;
}

void plot_scale_fit(plot_scale *s, const double *v, int n, int stride, int allow_log) {
    double lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < n; i++) {
        double x = v[(size_t)i * stride];
        if (!isfinite(x)) continue;
        if (x < lo) lo = x;
        if (x > hi) hi = x;
    }
    s->log = 0;
    if (!(lo <= hi)) { /* no data: an honest empty axis */
        s->lo = 0;
        s->hi = 1;
        return;
    }
    if (allow_log && lo > 0 && hi / lo > 10.0) {
        s->log = 1;
        /* Whole decades around the data keep the labelled ticks at both ends. */
        s->lo = pow(10.0, floor(log10(lo) + 1e-9));
        s->hi = pow(10.0, ceil(log10(hi) - 1e-9));
        return;
    }
    if (hi == lo) { /* one value: centre it in a small band */
        double pad = lo != 0 ? fabs(lo) * 0.1 : 1.0;
        lo -= pad;
        hi += pad;
    }
    double pad = 0.05 * (hi - lo);
    lo -= pad;
    hi += pad;
    double step = nice_step((hi - lo) / 5.0);
    s->lo = floor(lo / step) * step;
    s->hi = ceil(hi / step) * step;
}

void plot_scale_exact(plot_scale *s, double lo, double hi) {
    s->log = 0;
    if (!(hi > lo)) hi = lo + 1;
    double step = nice_step((hi - lo) / 5.0);
    s->lo = floor(lo / step + 1e-9) * step;
    s->hi = ceil(hi / step - 1e-9) * step;
}

double plot_map(const plot_scale *s, double v) {
    double t = s->log ? (log10(v) - log10(s->lo)) / (log10(s->hi) - log10(s->lo)) : (v - s->lo) / (s->hi - s->lo);
    return s->px0 + t * (s->px1 - s->px0);
}

int plot_ticks(const plot_scale *s, double *ticks, int cap) {
    int n = 0;
    if (s->log) {
        int d0 = (int)floor(log10(s->lo) + 1e-9), d1 = (int)ceil(log10(s->hi) - 1e-9);
        int every = 1 + (d1 - d0) / 8; /* at most ~8 labelled decades */
        for (int d = d0; d <= d1 && n < cap; d += every) ticks[n++] = pow(10.0, d);
        return n;
    }
    double step = nice_step((s->hi - s->lo) / 5.0);
    for (double t = s->lo; t <= s->hi + step * 1e-6 && n < cap; t += step)
        ticks[n++] = fabs(t) < step * 1e-9 ? 0.0 : t;
    return n;
}

int plot_minor_ticks(const plot_scale *s, double *ticks, int cap) {
    int n = 0;
    if (!s->log) return 0;
    int d0 = (int)floor(log10(s->lo) + 1e-9), d1 = (int)ceil(log10(s->hi) - 1e-9);
    if (d1 - d0 > 4) return 0; /* many decades: minor ticks would be noise */
    for (int d = d0; d < d1; d++)
        for (int m = 2; m <= 9 && n < cap; m++) ticks[n++] = m * pow(10.0, d);
    return n;
}

void plot_fmt_num(char *out, size_t cap, double v) {
    static const char *const suffix[] = {"", "k", "M", "G", "T", "P", "E"};
    if (!isfinite(v)) {
        snprintf(out, cap, "%s", isnan(v) ? "n/a" : (v > 0 ? "inf" : "-inf"));
        return;
    }
    double a = fabs(v);
    int k = 0;
    while (a >= 1e3 && k < 6) {
        a /= 1000.0;
        v /= 1000.0;
        k++;
    }
    if (k == 0 && a != 0 && a < 1e-3) snprintf(out, cap, "%.2e", v);
    else snprintf(out, cap, "%.3g%s", v, suffix[k]);
}

void plot_tick_label(hlab_buf *b, const plot_scale *s, double v) {
    if (s->log) {
        int d = (int)lround(log10(v));
        if (fabs(v - pow(10.0, d)) <= 1e-9 * v) {
            if (d == 0) hlab_buf_puts(b, "1");
            else if (d == 1) hlab_buf_puts(b, "10");
            else hlab_buf_printf(b, "10<tspan dy=\"-0.6em\" font-size=\"0.75em\">%d</tspan>", d);
            return;
        }
    }
    char t[32];
    plot_fmt_num(t, sizeof t, v);
    hlab_buf_xml_text(b, t);
}

const char *plot_color(int i) {
    /* Tableau 10 (distinct for colour-blind readers in most pairs), then ten
     * darker or shifted hues so that studies of up to 20 designs never repeat. */
    static const char *const c[] = {"#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1",
                                    "#ff9da7", "#9c755f", "#bab0ac", "#1b3a5c", "#a0522d", "#8b1e3f", "#2a7f62",
                                    "#6b8e23", "#b8860b", "#5d3a7a", "#c71585", "#4b4b4b", "#008b8b"};
    return c[((i % 20) + 20) % 20];
}

void plot_svg_begin(hlab_buf *b, int width, int height, const char *title, const char *subtitle) {
    hlab_buf_printf(b,
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                    "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\""
                    " font-family=\"Helvetica, Arial, sans-serif\" font-size=\"12\">\n",
                    width, height, width, height);
    hlab_buf_puts(b, "<title>");
    hlab_buf_xml_text(b, title);
    hlab_buf_puts(b, "</title>\n");
    hlab_buf_printf(b, "<rect x=\"0\" y=\"0\" width=\"%d\" height=\"%d\" fill=\"#ffffff\"/>\n", width, height);
    hlab_buf_puts(b, "<text x=\"24\" y=\"30\" font-size=\"18\" font-weight=\"bold\" fill=\"#222\">");
    hlab_buf_xml_text(b, title);
    hlab_buf_puts(b, "</text>\n");
    if (subtitle && *subtitle) {
        hlab_buf_puts(b, "<text x=\"24\" y=\"50\" font-size=\"12\" fill=\"#666\">");
        hlab_buf_xml_text(b, subtitle);
        hlab_buf_puts(b, "</text>\n");
    }
}

void plot_axis_title(char *out, size_t cap, const char *metric, const char *unit, int log) {
    if (unit && *unit) snprintf(out, cap, "%s (%s%s)", metric, unit, log ? ", log scale" : "");
    else snprintf(out, cap, "%s%s", metric, log ? " (log scale)" : "");
}

void plot_axes(hlab_buf *b, const plot_frame *f, const char *x_title, const char *y_title) {
    double ticks[64];
    int n;
    hlab_buf_puts(b, "<g stroke=\"#e6e6e6\" stroke-width=\"1\">\n");
    n = plot_minor_ticks(&f->x, ticks, 64);
    for (int i = 0; i < n; i++) {
        double px = plot_map(&f->x, ticks[i]);
        hlab_buf_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#f3f3f3\"/>\n", px, f->top,
                        px, f->bottom);
    }
    n = plot_minor_ticks(&f->y, ticks, 64);
    for (int i = 0; i < n; i++) {
        double py = plot_map(&f->y, ticks[i]);
        hlab_buf_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#f3f3f3\"/>\n", f->left,
                        py, f->right, py);
    }
    n = plot_ticks(&f->x, ticks, 64);
    for (int i = 0; i < n; i++) {
        double px = plot_map(&f->x, ticks[i]);
        hlab_buf_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", px, f->top, px, f->bottom);
    }
    int nx = n;
    double xt[64];
    memcpy(xt, ticks, sizeof xt);
    n = plot_ticks(&f->y, ticks, 64);
    for (int i = 0; i < n; i++) {
        double py = plot_map(&f->y, ticks[i]);
        hlab_buf_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", f->left, py, f->right, py);
    }
    hlab_buf_puts(b, "</g>\n");
    hlab_buf_printf(b,
                    "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"#888\"/>\n",
                    f->left, f->top, f->right - f->left, f->bottom - f->top);
    hlab_buf_puts(b, "<g fill=\"#444\" font-size=\"11\">\n");
    for (int i = 0; i < nx; i++) {
        hlab_buf_printf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">", plot_map(&f->x, xt[i]),
                        f->bottom + 18);
        plot_tick_label(b, &f->x, xt[i]);
        hlab_buf_puts(b, "</text>\n");
    }
    for (int i = 0; i < n; i++) {
        hlab_buf_printf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">", f->left - 8,
                        plot_map(&f->y, ticks[i]) + 4);
        plot_tick_label(b, &f->y, ticks[i]);
        hlab_buf_puts(b, "</text>\n");
    }
    hlab_buf_puts(b, "</g>\n");
    hlab_buf_printf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"13\" fill=\"#222\">",
                    (f->left + f->right) / 2, f->bottom + 44);
    hlab_buf_xml_text(b, x_title);
    hlab_buf_puts(b, "</text>\n");
    double cy = (f->top + f->bottom) / 2, cx = f->left - 62;
    hlab_buf_printf(b,
                    "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"13\" fill=\"#222\""
                    " transform=\"rotate(-90 %.1f %.1f)\">",
                    cx, cy, cx, cy);
    hlab_buf_xml_text(b, y_title);
    hlab_buf_puts(b, "</text>\n");
}

void plot_svg_end(hlab_buf *b) { hlab_buf_puts(b, "</svg>\n"); }
