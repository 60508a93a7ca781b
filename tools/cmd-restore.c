/* cmd-restore.c -- placeholder until the subcommand lands. */
#include "cli.h"

int
cmd_restore (int argc, char **argv)
{
  (void) argc;
  (void) argv;
  return cli_error ("restore", "not implemented yet");
}
