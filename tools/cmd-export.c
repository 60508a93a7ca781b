/* cmd-export.c -- placeholder until the subcommand lands. */
#include "cli.h"

int
cmd_export (int argc, char **argv)
{
  (void) argc;
  (void) argv;
  return cli_error ("export", "not implemented yet");
}
