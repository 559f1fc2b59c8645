/* STUB: replaced by the train/bench commands. */
#include "cli/cli.h"
int cmd_train(int argc, char **argv) { (void)argc; (void)argv; cli_error("hlab train: not implemented yet"); return HLAB_EXIT_ENV; }
int cmd_bench(int argc, char **argv) { (void)argc; (void)argv; cli_error("hlab bench: not implemented yet"); return HLAB_EXIT_ENV; }
