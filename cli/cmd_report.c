/* STUB: replaced by the report/list/show commands. */
#include "cli/cli.h"
int cmd_report(int argc, char **argv) { (void)argc; (void)argv; cli_error("hlab report: not implemented yet"); return HLAB_EXIT_ENV; }
int cmd_list(int argc, char **argv) { (void)argc; (void)argv; cli_error("hlab list: not implemented yet"); return HLAB_EXIT_ENV; }
int cmd_show(int argc, char **argv) { (void)argc; (void)argv; cli_error("hlab show: not implemented yet"); return HLAB_EXIT_ENV; }
