/* STUB: replaced by the search command. */
#include "cli/cli.h"
int cmd_search(int argc, char **argv) { (void)argc; (void)argv; cli_error("hlab search: not implemented yet"); return HLAB_EXIT_ENV; }
