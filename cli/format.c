/* cli/format.c — number and time formats shared by the commands' output. */
#include <math.h>
#include <stdio.h>

#include "cli/cli.h"

void cli_si(char *out, size_t cap, double v) {
    static const char *const suffix[] = {"", "k", "M", "G", "T", "P", "E"};
    if (!isfinite(v)) {
        snprintf(out, cap, "-");
        return;
    }
    int k = 0;
    while (fabs(v) >= 1e3 && k < 6) {
        v /= 1000.0;
        k++;
    }
    snprintf(out, cap, "%.3g%s", v, suffix[k]);
}

void cli_duration(char *out, size_t cap, double s) {
    if (!isfinite(s) || s < 0) {
        snprintf(out, cap, "?");
        return;
    }
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(out, cap, "%ldh%02ldm", t / 3600, t / 60 % 60);
    else if (t >= 60) snprintf(out, cap, "%ldm%02lds", t / 60, t % 60);
    else snprintf(out, cap, "%lds", t);
}
