/* cli/cli.h — the thin command-line front: one function per sub-command
 * (git style), each with its own option table and --help. Exit codes:
 *   0 success, 1 the work failed (a run diverged, a test of the data failed),
 *   2 bad usage or bad input (unknown flag, malformed YAML, missing file),
 *   3 environment (no GPU, out of memory, database locked), 130 interrupted.
 */
#ifndef HLAB_CLI_H
#define HLAB_CLI_H

#include <stddef.h>

#define HLAB_EXIT_OK 0
#define HLAB_EXIT_FAILED 1
#define HLAB_EXIT_USAGE 2
#define HLAB_EXIT_ENV 3
#define HLAB_EXIT_INTERRUPTED 130

int cmd_train(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_search(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_list(int argc, char **argv);
int cmd_show(int argc, char **argv);

/* Maps an hlab status code to the exit code above. */
int cli_exit_code(int status);
/* Prints "hlab: error: MSG" to stderr. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Installs SIGINT/SIGTERM handlers that set the flag cli_stop_requested(). */
void cli_install_stop_handler(void);
int cli_stop_requested(void);

/* 3 significant digits with an SI suffix ("12.3M"); "-" when not finite. */
void cli_si(char *out, size_t cap, double v);
/* "1h05m", "3m07s", "42s"; "?" when unknown (NaN, negative). */
void cli_duration(char *out, size_t cap, double s);

#endif
