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
  { "restore", cmd_restore, "write a snapshot's disk as a sparse raw file" },
  { "verify", cmd_verify, "prove that a snapshot equals a chain" },
  { "check", cmd_check, "prove that snapshots restore: read every chunk" },
  { "snapshots", cmd_snapshots, "list the snapshots of a repository" },
  { "key", cmd_key, "create or show an encryption key file" },
};

static void
usage (FILE *f)
{
  size_t i;
  fprintf (f, "Usage: qcow2pbs COMMAND [OPTIONS] ...\n\nCommands:\n");
  for (i = 0; i < sizeof commands / sizeof commands[0]; i++)
    fprintf (f, "  %-10s %s\n", commands[i].name, commands[i].summary);
  fprintf (f, "\n'qcow2pbs COMMAND --help' describes each command.\n");
}

int
main (int argc, char **argv)
{
  size_t i;

  cli_protect_secrets ();
  if (argc < 2) {
    usage (stderr);
    return 2;
  }
  if (strcmp (argv[1], "--help") == 0 || strcmp (argv[1], "-h") == 0
      || strcmp (argv[1], "help") == 0) {
    usage (stdout);
    return 0;
  }
  if (strcmp (argv[1], "--version") == 0) {
    printf ("qcow2pbs 0.1\n");
    return 0;
  }
  for (i = 0; i < sizeof commands / sizeof commands[0]; i++)
    if (strcmp (argv[1], commands[i].name) == 0)
      return commands[i].fn (argc - 1, argv + 1);
  fprintf (stderr, "qcow2pbs: unknown command '%s'\n", argv[1]);
  usage (stderr);
  return 2;
}
