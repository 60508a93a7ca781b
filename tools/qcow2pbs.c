/* qcow2pbs -- turn QEMU qcow2 backup chains into complete Proxmox Backup
 * Server image snapshots.  This file is only the command table. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

struct command {
  const char *name;
  int (*fn) (int argc, char **argv);
  const char *summary;
};

static const struct command commands[] = {
  { "info", cmd_info, "show a backing chain layer by layer" },
  { "map", cmd_map, "show which layer owns every range of the disk" },
  { "export", cmd_export, "write the merged disk as a sparse raw file" },
  { "bitmap", cmd_bitmap, "show the dirty ranges of a persistent bitmap" },
  { "push", cmd_push, "store a chain as a complete PBS image snapshot" },
  { "import", cmd_import, "push every point in time of backup folders" },
  { "restore", cmd_restore, "write a snapshot's disk as a sparse raw file" },
  { "verify", cmd_verify, "prove that a snapshot equals a chain" },
  { "check", cmd_check, "prove that snapshots restore: read every chunk" },
  { "snapshots", cmd_snapshots, "list the snapshots of a repository" },
  { "key", cmd_key, "create or show an encryption key file" },
};

#define NCOMMANDS (sizeof commands / sizeof commands[0])

static void
usage (FILE *f)
{
  size_t i;
  fprintf (f, "Usage: qcow2pbs COMMAND [OPTIONS] ...\n"
              "       qcow2pbs help [COMMAND]\n"
              "       qcow2pbs -V|--version\n\nCommands:\n");
  for (i = 0; i < NCOMMANDS; i++)
    fprintf (f, "  %-10s %s\n", commands[i].name, commands[i].summary);
  fprintf (f, "\n'qcow2pbs help COMMAND' (or 'qcow2pbs COMMAND --help') "
              "describes each command.\n");
}

static const struct command *
find_command (const char *name)
{
  size_t i;
  for (i = 0; i < NCOMMANDS; i++)
    if (strcmp (name, commands[i].name) == 0)
      return &commands[i];
  return NULL;
}

/* A script that asks for JSON gets JSON errors even from a usage error
 * found before getopt reaches --output-format. */
static void
scan_output_format (int argc, char **argv)
{
  int i;
  for (i = 1; i < argc && strcmp (argv[i], "--") != 0; i++)
    if (strcmp (argv[i], "--output-format=json") == 0
        || (strcmp (argv[i], "--output-format") == 0 && i + 1 < argc
            && strcmp (argv[i + 1], "json") == 0))
      cli_set_json_errors (true);
}

/* "help COMMAND [SUB]": the same text as "COMMAND [SUB] --help". */
static int
help (int argc, char **argv)
{
  const struct command *c;
  char *args[4];
  int n = 0;

  if (argc < 2) {
    usage (stdout);
    return 0;
  }
  c = find_command (argv[1]);
  if (!c || argc > 3) {
    fprintf (stderr, "qcow2pbs: help: unknown command '%s'; try "
                     "'qcow2pbs --help'\n", argv[1]);
    return 2;
  }
  args[n++] = argv[1];
  if (argc == 3)
    args[n++] = argv[2];
  args[n++] = (char *) "--help";
  args[n] = NULL;
  return c->fn (n, args);
}

int
main (int argc, char **argv)
{
  const struct command *c;

  cli_protect_secrets ();
  if (argc < 2) {
    usage (stderr);
    return 2;
  }
  if (strcmp (argv[1], "--help") == 0 || strcmp (argv[1], "-h") == 0) {
    usage (stdout);
    return 0;
  }
  if (strcmp (argv[1], "help") == 0)
    return help (argc - 1, argv + 1);
  if (strcmp (argv[1], "--version") == 0 || strcmp (argv[1], "-V") == 0) {
    printf ("qcow2pbs 0.1\n");
    return 0;
  }
  c = find_command (argv[1]);
  if (c) {
    scan_output_format (argc - 1, argv + 1);
    return c->fn (argc - 1, argv + 1);
  }
  fprintf (stderr, "qcow2pbs: unknown command '%s'; try 'qcow2pbs --help'\n",
           argv[1]);
  return 2;
}
