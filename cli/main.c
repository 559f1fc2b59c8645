/* cli/main.c — `hlab COMMAND ...`: dispatch, --help, --version. */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/hlab.h"

typedef struct {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
} command;

static const command commands[] = {
    {"train", cmd_train, "train one design point from a POINT.yaml"},
    {"search", cmd_search, "train every design point of a study into results.db (resumable)"},
    {"report", cmd_report, "Pareto front, ablation table and loss curves from results.db"},
    {"list", cmd_list, "list studies and points in results.db"},
    {"show", cmd_show, "show one point: config, runs, results"},
    {"bench", cmd_bench, "measure training speed (tokens/s, TFLOP/s, MFU)"},
};

static void usage(FILE *f) {
    fprintf(f,
            "usage: hlab COMMAND [options]\n\n"
            "Find the best hybrid of attention and Mamba-2: describe a design space in YAML,\n"
            "train every point briefly, compare them in results.db.\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n`hlab COMMAND --help` describes each command. `hlab --version` prints the version.\n");
}

int cli_exit_code(int status) {
    switch (status) {
    case HLAB_OK: return HLAB_EXIT_OK;
    case HLAB_EINVAL:
    case HLAB_EPARSE:
    case HLAB_EIO: return HLAB_EXIT_USAGE;
    case HLAB_ENOMEM:
    case HLAB_EDEVICE:
    case HLAB_EDB:
    case HLAB_EUNSUPPORTED: return HLAB_EXIT_ENV;
    case HLAB_EINTERRUPTED: return HLAB_EXIT_INTERRUPTED;
    default: return HLAB_EXIT_FAILED;
    }
}

void cli_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("hlab: error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static volatile sig_atomic_t stop_requested;
static void on_stop_signal(int sig) {
    /* A second Ctrl-C while stopping kills at once, as users expect. */
    if (stop_requested) {
        signal(sig, SIG_DFL);
        raise(sig);
    }
    stop_requested = 1;
}
void cli_install_stop_handler(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}
int cli_stop_requested(void) { return stop_requested != 0; }

/* The CPU backend runs short OpenMP regions between OpenBLAS calls; libgomp's
 * default spin-waiting then starves the other threads whenever the machine
 * has more runnable threads than cores (measured: 2-5x slower on a busy 2-core
 * machine, identical results). libgomp reads OMP_WAIT_POLICY once, before
 * main, so when the user has not chosen one we set "passive" and re-execute. */
static void prefer_passive_openmp_waits(char **argv) {
    if (getenv("OMP_WAIT_POLICY")) return; /* the user's choice, or we already re-executed */
    setenv("OMP_WAIT_POLICY", "passive", 1);
    execv("/proc/self/exe", argv); /* returns only on failure: then carry on as we are */
}

int main(int argc, char **argv) {
    prefer_passive_openmp_waits(argv);
    if (argc < 2) {
        usage(stderr);
        return HLAB_EXIT_USAGE;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return HLAB_EXIT_OK;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
        printf("hlab %s\n", HLAB_VERSION);
        return HLAB_EXIT_OK;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    cli_error("unknown command '%s' (try: hlab --help)", argv[1]);
    return HLAB_EXIT_USAGE;
}
