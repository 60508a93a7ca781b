/* cmd-bitmap.c -- placeholder until the subcommand lands. */
#include "cli.h"

int
cmd_bitmap (int argc, char **argv)
{
  (void) argc;
  (void) argv;
  return cli_error ("bitmap", "not implemented yet");
}
