/* cmd-key.c -- placeholder until the subcommand lands. */
#include "cli.h"

int
cmd_key (int argc, char **argv)
{
  (void) argc;
  (void) argv;
  return cli_error ("key", "not implemented yet");
}
