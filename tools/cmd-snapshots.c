/* cmd-snapshots.c -- placeholder until the subcommand lands. */
#include "cli.h"

int
cmd_snapshots (int argc, char **argv)
{
  (void) argc;
  (void) argv;
  return cli_error ("snapshots", "not implemented yet");
}
