/* cmd-verify.c -- placeholder until the subcommand lands. */
#include "cli.h"

int
cmd_verify (int argc, char **argv)
{
  (void) argc;
  (void) argv;
  return cli_error ("verify", "not implemented yet");
}
