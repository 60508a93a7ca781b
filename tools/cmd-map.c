/* cmd-map.c -- placeholder until the subcommand lands. */
#include "cli.h"

int
cmd_map (int argc, char **argv)
{
  (void) argc;
  (void) argv;
  return cli_error ("map", "not implemented yet");
}
