/* push-options.c -- push's command line: the options, the help text and
 * the archives they name, parsed into struct push. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "push-run.h"

enum { OPT_SKIP_UNCHANGED = CLI_OPT_FIRST_FREE + 0x40 };

static const struct option longopts[] = {
  { "repository", required_argument, NULL, 'r' },
  CLI_REPO_OPTIONS,
  { "backup-id", required_argument, NULL, 'i' },
  { "backup-type", required_argument, NULL, 't' },
  { "ns", required_argument, NULL, 'n' },
  { "backup-time", required_argument, NULL, 'T' },
  { "keyfile", required_argument, NULL, 'k' },
  CLI_IMAGE_OPTIONS,
  { "full", no_argument, NULL, 'F' },
  { "skip-unchanged", no_argument, NULL, OPT_SKIP_UNCHANGED },
  { "dry-run", no_argument, NULL, 'd' },
  { "retries", required_argument, NULL, 'R' },
  { "output-format", required_argument, NULL, 'o' },
  CLI_PROGRESS_OPTIONS,
  { "disk", required_argument, NULL, 'D' },
  { "from-archive", required_argument, NULL, 'A' },
  PVE_PUSH_OPTIONS,
  { "help", no_argument, NULL, 'h' },
  { NULL, 0, NULL, 0 },
};

static const char usage_text[] =
  "Usage: qcow2pbs push [OPTIONS] --backup-id ID [NAME=]IMAGE ...\n"
  "       qcow2pbs push [OPTIONS] --backup-id ID --chain FULL,INCR0,...\n"
  "       qcow2pbs push [OPTIONS] --backup-id ID --disk NAME=L0,L1,... ...\n"
  "Store each IMAGE (the newest layer of a qcow2 chain) as the complete\n"
  "disk NAME.img.fidx of one new snapshot.  NAME defaults to drive-scsi0,\n"
  "drive-scsi1, ... in argument order.  Chunks the new layers did not\n"
  "touch are taken from the group's previous snapshot when its qcow2pbs\n"
  "record proves it was made from the layers below them; otherwise the\n"
  "whole chain is read (still storing only chunks the repository lacks).\n"
  "\n"
  CLI_REPO_ARGS_HELP
  "  --backup-id ID            the snapshot group's id, e.g. the VM id\n"
  "  --backup-type vm|host|ct  the group's type (default vm)\n"
  "  --backup-time TIME        the snapshot's time, epoch seconds or\n"
  "                            RFC 3339 (default: now)\n"
  "  --keyfile FILE            encrypt with this key (password from\n"
  "                            PBS_ENCRYPTION_PASSWORD or a prompt)\n"
  CLI_IMAGE_OPTIONS_HELP
  CLI_REPO_OPTIONS_HELP
  "  --disk NAME=L0,L1,...     instead of IMAGE arguments: the disk\n"
  "                            archive NAME from this chain, oldest layer\n"
  "                            first (the --chain syntax; ',,' = ',');\n"
  "                            repeat it for each disk of the VM\n"
  "  --from-archive TAR        the --disk layers are members of the\n"
  "                            uncompressed tar TAR (paths as tar -tf\n"
  "                            lists them), read in place: no copy\n"
  "  --full                    read everything, reuse nothing\n"
  "  --skip-unchanged          make no snapshot when the group's last one\n"
  "                            was made from these same, unchanged layers\n"
  "                            (exit 0)\n"
  "  --dry-run                 report what would be read and stored (an\n"
  "                            upper bound: repeats far apart count twice);\n"
  "                            write nothing\n"
  "  --retries N               restart a remote session after transient\n"
  "                            errors (default 3), with backoff; each new\n"
  "                            session takes the current time unless\n"
  "                            --backup-time was given\n"
  "  --output-format text|json  output format (default text)\n"
  CLI_PROGRESS_OPTIONS_HELP
  PVE_PUSH_OPTIONS_HELP
  "  -h, --help                this help\n";

int
push_parse_options (struct push *p, struct push_args *args, int argc,
                    char **argv)
{
  struct qcow_open_opts *oo = &args->oo;
  char *end;
  struct cli_err *e = &args->err;
  int opt;

  optind = 1;
  opterr = 0;
  while ((opt = getopt_long (argc, argv, ":hq" CLI_IMAGE_SHORTOPTS, longopts,
                             NULL))
         != -1) {
    switch (opt) {
    case 'r': p->repo_spec = optarg; break;
    case CLI_OPT_FINGERPRINT: p->fingerprint = optarg; break;
    case 'i': p->id = optarg; break;
    case 't': p->type = optarg; break;
    case 'n': p->ns = optarg; break;
    case 'T':
      if (pbs_parse_time (optarg, &p->time) == -1)
        return cli_err_usage (e, "push", "invalid --backup-time: %s",
                              pbs_errmsg ()), 2;
      if (p->time < 1) /* PBS's minimum: 1970-01-01T00:00:01Z */
        return cli_err_usage (e, "push", "invalid --backup-time '%s': the "
                              "earliest is 1", optarg), 2;
      p->time_given = true;
      break;
    case 'k': args->keyfile = optarg; break;
    case CLI_OPT_CHAIN:
    case CLI_OPT_ALLOW_ABSOLUTE_DATA_FILE:
    case CLI_OPT_PROBE_BACKING_FORMAT:
    case CLI_OPT_FORCE_SHARE:
    case 'U':
    case CLI_OPT_ALLOW_BACKING_DIR:
      if (cli_image_option (opt, optarg, oo, e) == -1) {
        cli_free_chain (oo);
        return e->status;
      }
      break;
    case 'F': p->full = true; break;
    case OPT_SKIP_UNCHANGED: p->skip_unchanged = true; break;
    case 'd': p->dry_run = true; break;
    case 'R':
      errno = 0;
      p->retries = (unsigned) strtoul (optarg, &end, 10);
      if (errno || *end || !*optarg || p->retries > 100)
        return cli_err_usage (e, "push", "invalid --retries '%s'", optarg),
               2;
      break;
    case 'o':
      if (cli_parse_output_format (optarg, &p->json) == -1)
        return cli_err_usage (e, "push", "invalid --output-format '%s'",
                              optarg), 2;
      break;
    case 'q': cli_set_progress_mode (CLI_PROGRESS_QUIET); break;
    case CLI_OPT_PROGRESS: cli_set_progress_mode (CLI_PROGRESS_LINES); break;
    case 'h': fputs (usage_text, stdout); cli_free_chain (oo); return 0;
    case 'A': args->from_archive = optarg; break;
    case 'D':
      if (push_disk_option (&args->disks, &args->ndisks, optarg, e) != 0) {
        push_disks_free (args->disks, args->ndisks);
        args->disks = NULL;
        args->ndisks = 0;
        cli_free_chain (oo);
        return e->status;
      }
      break;
    case PVE_OPT_CONFIG: case PVE_OPT_STORAGE: case PVE_OPT_MEMORY:
    case PVE_OPT_CORES: case PVE_OPT_FW_CONFIG: case PVE_OPT_NOTES:
    case PVE_OPT_NOTES_FILE: case PVE_OPT_PROTECTED: case PVE_OPT_DISK_FORMAT:
      if (pve_push_option (&p->pve, opt, optarg, e) != 0) {
        cli_free_chain (oo);
        return e->status;
      }
      break;
    default:
      cli_free_chain (oo);
      return cli_err_getopt (e, "push", opt, argv, longopts), 2;
    }
  }
  args->first_image = optind;
  args->chain = oo->chain_len ? oo->chain[oo->chain_len - 1] : NULL;
  if (!p->id)
    return cli_err_usage (e, "push", "--backup-id is required"), 2;
  if (!pbs_valid_backup_id (p->id))
    return cli_err_usage (e, "push", "invalid backup id '%s'", p->id), 2;
  if (!pbs_valid_backup_type (p->type))
    return cli_err_usage (e, "push", "invalid backup type '%s'", p->type),
           2;
  if (!pbs_valid_ns (p->ns))
    return cli_err_usage (e, "push", "invalid namespace '%s'", p->ns), 2;
  if (args->ndisks && (args->chain || optind < argc)) {
    push_disks_free (args->disks, args->ndisks);
    args->disks = NULL;
    args->ndisks = 0;
    cli_free_chain (oo);
    return cli_err_usage (e, "push", "--disk replaces IMAGE arguments and "
                          "--chain: give the disks one way"), 2;
  }
  if (optind >= argc && !args->chain && !args->ndisks)
    return cli_err_usage (e, "push", "no image given"), 2;
  if (args->from_archive && !args->ndisks)
    return cli_err_usage (e, "push", "--from-archive names the archive "
                          "whose members --disk gives: give --disk"), 2;
  if (args->from_archive
      && push_disks_from_archive (args->disks, args->ndisks,
                                  args->from_archive, &args->tix, e)
             != 0)
    return e->status;
  if (args->chain && argc - optind > 1)
    return cli_err_usage (e, "push", "--chain works with one image only"),
           2;
  return -1;
}

int
push_name_archives (struct push *p, struct push_args *args, int argc,
                    char **argv)
{
  int first = args->first_image;
  size_t na, i;

  na = args->ndisks ? args->ndisks
       : argc - first > 0 ? (size_t) (argc - first) : 1;
  p->a = calloc (na, sizeof *p->a);
  if (!p->a)
    return cli_err_set (&args->err, "push", "out of memory");
  p->na = na;
  for (i = 0; i < args->ndisks; i++) {
    p->a[i].name = args->disks[i].name; /* taken */
    args->disks[i].name = NULL;
    p->a[i].oo = &args->disks[i].oo;
    p->a[i].image = args->disks[i].spans
                        ? args->disks[i].spans[args->disks[i].oo.chain_len - 1].name
                        : args->disks[i].oo.chain[args->disks[i].oo.chain_len - 1];
    p->a[i].member = args->disks[i].member;
  }
  for (i = 0; i < p->na && !args->ndisks; i++) {
    const char *arg = first + (int) i < argc ? argv[first + i] : "";
    if (!*arg) { /* --chain alone: the image is the chain's top */
      char *nm = push_archive_name ("drive-scsi0");
      p->a[i].name = nm;
      p->a[i].image = args->chain;
      if (!nm)
        return cli_err_set (&args->err, "push", "out of memory");
    }
    else if (push_parse_image_arg (arg, i, &p->a[i].name, &p->a[i].image,
                                   &args->err)
             == -1)
      return -1;
    else if (cli_check_chain_top ("push", p->a[i].image, &args->oo,
                                  &args->err)
             != 0)
      return -1;
  }
  return 0;
}
