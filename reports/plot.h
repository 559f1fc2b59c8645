/* reports/plot.h — the small SVG plotting kit behind the report figures
 * (internal to reports/). A plot is a frame in pixel space with one scale per
 * axis; scales go linear, or log10 when the data are positive and span more
 * than a decade. Text always goes through hlab_buf_xml_text. */
#ifndef HLAB_REPORTS_PLOT_H
#define HLAB_REPORTS_PLOT_H

#include "common/hlab.h"

typedef struct {
    double lo, hi;     /* data range shown (log: of the values, not their logs) */
    int log;           /* 1: log10 axis */
    double px0, px1;   /* pixel positions of lo and hi */
} plot_scale;

/* Fits the scale to the finite values of v (n of them, stride apart), padded
 * and rounded to nice ticks; log when allow_log, all > 0 and max/min > 10. */
void plot_scale_fit(plot_scale *s, const double *v, int n, int stride, int allow_log);
/* Linear lo..hi rounded outward to nice ticks, without padding (e.g. steps). */
void plot_scale_exact(plot_scale *s, double lo, double hi);
double plot_map(const plot_scale *s, double v);
/* Major ticks (at most cap) in data units; returns how many. */
int plot_ticks(const plot_scale *s, double *ticks, int cap);
/* Minor log ticks (2..9 x 10^k) when the axis spans few decades; returns how many. */
int plot_minor_ticks(const plot_scale *s, double *ticks, int cap);
/* Appends a tick label as SVG text content: "10<tspan ...>15</tspan>" on log
 * axes at powers of ten, SI-suffixed ("12.5k", "3M") or %g otherwise. */
void plot_tick_label(hlab_buf *b, const plot_scale *s, double v);
/* Compact number for labels and tables: 3 significant digits, SI suffix. */
void plot_fmt_num(char *out, size_t cap, double v);

/* The i-th colour of a 20-colour palette that stays readable on white. */
const char *plot_color(int i);

typedef struct {
    double left, top, right, bottom; /* plot area in pixels */
    plot_scale x, y;
} plot_frame;
/* <svg> start with viewBox, white background, default font and title. */
void plot_svg_begin(hlab_buf *b, int width, int height, const char *title, const char *subtitle);
/* Grid, ticks, tick labels and axis titles ("name (unit, log scale)"). */
void plot_axes(hlab_buf *b, const plot_frame *f, const char *x_title, const char *y_title);
void plot_svg_end(hlab_buf *b);
/* "metric (unit, log scale)" */
void plot_axis_title(char *out, size_t cap, const char *metric, const char *unit, int log);

#endif
