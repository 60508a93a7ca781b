/* cmd-push.c -- placeholder until the subcommand lands. */
#include "cli.h"

int
cmd_push (int argc, char **argv)
{
  (void) argc;
  (void) argv;
  return cli_error ("push", "not implemented yet");
}
