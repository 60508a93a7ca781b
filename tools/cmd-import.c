/* cmd-import.c -- qcow2pbs import: every point in time of backup folders
 * (qmpbackup's layout, or chains linked by backing pointers) becomes its
 * own snapshot, oldest first, each incremental over the one before
 * (docs/import.md). */
#include <errno.h>
#include <ftw.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "cli.h"
#include "import-run.h"
#include "import-stream.h"
#include "push.h"
#include "pve-push.h"
#include "tar-index.h"

enum {
  OPT_REPOSITORY = 0x400,
  OPT_NS,
  OPT_TYPE,
  OPT_ID,
  OPT_KEYFILE,
  OPT_JOBS,
  OPT_SHARD,
  OPT_DRY_RUN,
  OPT_OUTPUT,
  OPT_TIME_FROM,
  OPT_ARCHIVE_NAME,
  OPT_INCLUDE_RAW,
  OPT_TMPDIR,
  OPT_ALLOW_MISSING,
};

static const struct option longopts[] = {
  { "repository", required_argument, NULL, OPT_REPOSITORY },
  CLI_REPO_OPTIONS,
  { "ns", required_argument, NULL, OPT_NS },
  { "backup-type", required_argument, NULL, OPT_TYPE },
  { "backup-id", required_argument, NULL, OPT_ID },
  { "keyfile", required_argument, NULL, OPT_KEYFILE },
  { "jobs", required_argument, NULL, OPT_JOBS },
  { "shard", required_argument, NULL, OPT_SHARD },
  { "dry-run", no_argument, NULL, OPT_DRY_RUN },
  { "output-format", required_argument, NULL, OPT_OUTPUT },
  { "time-from", required_argument, NULL, OPT_TIME_FROM },
  { "archive-name", required_argument, NULL, OPT_ARCHIVE_NAME },
  { "include-raw", no_argument, NULL, OPT_INCLUDE_RAW },
  { "tmpdir", required_argument, NULL, OPT_TMPDIR },
  { "allow-missing-disks", no_argument, NULL, OPT_ALLOW_MISSING },
  PVE_PUSH_OPTIONS,
  { "help", no_argument, NULL, 'h' },
  { NULL, 0, NULL, 0 },
};

static void
usage (void)
{
  printf (
      "Usage: qcow2pbs import [--repository REPO] [--ns NS]\n"
      "         [--backup-type vm|host|ct] [--backup-id ID] [--keyfile FILE]\n"
      "         [--jobs N] [--shard K/N] [--dry-run]\n"
      "         [--output-format text|json] [--tmpdir DIR] SOURCE...\n\n"
      "Push every point in time of the backup folders SOURCE as its own\n"
      "snapshot, oldest first, each incremental over the one before.  A\n"
      "SOURCE is a qmpbackup target folder (one folder per disk, named\n"
      "after the disk's image file, holding FULL-<time>-<file>,\n"
      "INC-<time>-<file> and COPY-<time>-<file>; YYYY-MM/ monthly folders\n"
      "and the --no-subdir layout too), or a folder of qcow2 chains linked\n"
      "by backing pointers (every layer is a point), or a folder holding\n"
      "such folders (one group each), or a tar archive of any of these\n"
      "(tar, tar.gz, tar.zst, tar.xz; told by content, not name).  Layers\n"
      "of several disks with the\n"
      "same time form one snapshot with one archive per disk.\n\n"
      "Points already in the group (same time, same files) are skipped\n"
      "without reading, so a re-run adds only what is new and an\n"
      "interrupted import resumes.  Exit status: 0 when every point is\n"
      "stored or present, 1 if any failed (the others still go in).\n\n"
      "  --repository REPO  local datastore path or [USER@REALM@]HOST:STORE\n"
      "                     (default $PBS_REPOSITORY)\n"
      "  --ns NS            the namespace (default: the root)\n"
      "  --backup-type vm|host|ct  the groups' type (default vm)\n"
      "  --backup-id ID     the group (one SOURCE group only); default the\n"
      "                     folder's name (an archive: its one top folder's,\n"
      "                     else its own without .tar...)\n"
      "  --keyfile FILE     encrypt with this key (password asked once)\n"
      "  --jobs N           import up to N groups at once (default 1); the\n"
      "                     points of one group stay in order\n"
      "  --shard K/N        only the groups whose stable hash falls in shard\n"
      "                     K of N (1 <= K <= N), to split a large set over\n"
      "                     N machines\n"
      "  --dry-run          print the plan; write nothing\n"
      "  --time-from name|mtime  where a chain layer's time comes from (by\n"
      "                     default its name when it holds one, e.g.\n"
      "                     20240605T150640 or an epoch, else its mtime);\n"
      "                     qmpbackup files always use their names\n"
      "  --archive-name DISK=NAME  archive name of a disk (default\n"
      "                     drive-DISK, DISK the folder name without its\n"
      "                     image extension)\n"
      "  --output-format text|json  output format (default text); JSON:\n"
      "                     {\"points\": [{backup-id, time, snapshot, status,\n"
      "                     reason, archives}]}\n"
      "  --include-raw      take raw FULL files (raw disks) too\n"
      "  --allow-missing-disks  push a point that lacks a disk whose chain\n"
      "                     began earlier (default: skip it as incomplete)\n"
      "  --tmpdir DIR       where a compressed archive's members are put,\n"
      "                     sparse, one group at a time as they stream in\n"
      "                     (default $TMPDIR, else /var/tmp); removed\n"
      "                     afterwards; the plan says how much room it\n"
      "                     needs and a shortage stops before any work\n"
      CLI_REPO_OPTIONS_HELP
      PVE_PUSH_OPTIONS_HELP
      "  -h, --help         this help\n");
}

static const char *
status_name (enum import_status s, bool dry)
{
  switch (s) {
  case IMPORT_TODO: return dry ? "planned" : "failed";
  case IMPORT_STORED: return "stored";
  case IMPORT_PRESENT: return "present";
  case IMPORT_SKIPPED: return "skipped";
  case IMPORT_FAILED: return "failed";
  }
  return "failed";
}

static void
human (uint64_t v, char *out, size_t len)
{
  static const char *const unit[] = { "B", "KiB", "MiB", "GiB", "TiB" };
  double x = (double) v;
  size_t u = 0;

  while (x >= 1024 && u < 4) {
    x /= 1024;
    u++;
  }
  snprintf (out, len, u ? "%.1f %s" : "%.0f %s", x, unit[u]);
}

static const char *
base (const char *p)
{
  const char *s = strrchr (p, '/');
  return s ? s + 1 : p;
}

static void
print_point_text (const char *type, const struct import_group *g,
                  const struct import_point *p, bool dry, bool layers)
{
  char ts[21], rb[32];
  size_t i, k;

  pbs_time_to_rfc3339 (p->time, ts);
  human (p->read_bytes, rb, sizeof rb);
  printf ("%-8s %s/%s/%s (time from %s)", status_name (p->status, dry), type,
          g->id, ts, p->time_from_name ? "name" : "mtime");
  if (p->reason[0] && p->status != IMPORT_STORED)
    printf (": %s", p->reason);
  else if (dry)
    printf (", reads %s", rb);
  else /* what the snapshot holds */
    for (i = 0; i < p->nd; i++)
      printf ("%s %s", i ? "," : ":", p->d[i].archive);
  printf ("\n");
  if (!layers)
    return;
  for (i = 0; i < p->nd; i++) {
    printf ("         %s <-", p->d[i].archive);
    for (k = p->d[i].first; k <= p->d[i].last; k++)
      printf ("%s %s", k > p->d[i].first ? "," : "",
              base (p->d[i].chain->l[k].path));
    printf ("\n");
  }
  /* A disk of the group with no layer at this time is not in this
   * snapshot, as PBS would hold the disks a run backed up. */
  for (i = 0; i < g->nc; i++) {
    bool in = false, named = false;
    for (k = 0; k < p->nd; k++)
      in |= !strcmp (p->d[k].chain->disk, g->c[i].disk);
    for (k = 0; k < i; k++)
      named |= !strcmp (g->c[k].disk, g->c[i].disk);
    if (!in && !named)
      printf ("         (disk %s has no layer at this time: not in this "
              "snapshot)\n", g->c[i].disk);
  }
}

struct report {
  bool json, dry, quiet_progress;
  const char *type;
  json_t *points;
  time_t start;
};

static struct report rep;

static void
on_point (struct import_ctx *x, const struct import_group *g,
          const struct import_point *p)
{
  if (!rep.json)
    print_point_text (rep.type, g, p, rep.dry, false);
  fflush (stdout);
  if (isatty (STDERR_FILENO) && !rep.json) {
    char a[32], b[32], eta[32] = "";
    double el = difftime (time (NULL), rep.start);
    human (x->done_bytes, a, sizeof a);
    human (x->total_bytes, b, sizeof b);
    if (x->done_bytes && x->total_bytes > x->done_bytes && el > 1)
      snprintf (eta, sizeof eta, ", ETA %.0f s",
                el * (double) (x->total_bytes - x->done_bytes)
                    / (double) x->done_bytes);
    fprintf (stderr, "import: %zu/%zu points, %s of %s%s\n", x->done_points,
             x->total_points, a, b, eta);
  }
}

static json_t *
point_json (const char *type, const struct import_group *g,
            const struct import_point *p, bool dry)
{
  char ts[21];
  json_t *o, *arch = NULL;
  size_t i, k;

  pbs_time_to_rfc3339 (p->time, ts);
  if (p->push_json)
    arch = json_loads (p->push_json, 0, NULL);
  if (!arch) {
    arch = json_array ();
    for (i = 0; i < p->nd; i++) {
      json_t *layers = json_array ();
      for (k = p->d[i].first; k <= p->d[i].last; k++)
        json_array_append_new (layers,
                               json_string (p->d[i].chain->l[k].path));
      json_array_append_new (arch, json_pack ("{s:s, s:o}", "name",
                                              p->d[i].archive, "layers",
                                              layers));
    }
  }
  o = json_pack ("{s:s, s:I, s:o, s:s, s:o, s:s, s:I, s:o}", "backup-id",
                 g->id, "time", (json_int_t) p->time, "snapshot",
                 (p->status == IMPORT_STORED || p->status == IMPORT_PRESENT)
                     ? json_sprintf ("%s/%s/%s", type, g->id, ts)
                     : json_null (),
                 "status", status_name (p->status, dry), "reason",
                 p->reason[0] && p->status != IMPORT_STORED
                     ? json_string (p->reason)
                     : json_null (),
                 "time-from", p->time_from_name ? "name" : "mtime",
                 "read-bytes", (json_int_t) p->read_bytes, "archives", arch);
  return o;
}

static int
remove_one (const char *path, const struct stat *st, int flag,
            struct FTW *ftw)
{
  (void) st;
  (void) ftw;
  return (flag == FTW_DP ? rmdir (path) : unlink (path)) == -1 ? 0 : 0;
}

/* rm -rf DIR (no symlink is followed). */
static void
remove_tree (const char *dir)
{
  nftw (dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Plan archive SOURCE as stream S (a new folder below TMPDIR holds its
 * skeleton, then, while it runs, the members of the groups in progress)
 * and scan its groups, marked as S's.  0, or -1 (E). */
static int
plan_stream (const char *source, const char *tmpdir, struct import_stream *s,
             size_t id, const struct import_opts *o, struct import_group **g,
             size_t *ng, struct cli_err *e)
{
  size_t before = *ng;

  memset (s, 0, sizeof *s);
  s->archive = source;
  s->id = id;
  if (asprintf (&s->dir, "%s/qcow2pbs-import.XXXXXX", tmpdir) == -1) {
    s->dir = NULL;
    return cli_err_set (e, source, "out of memory");
  }
  if (!mkdtemp (s->dir))
    return cli_err_set (e, tmpdir, "cannot make a temporary folder: %s "
                        "(--tmpdir)", strerror (errno));
  if (import_archive_skeleton (source, s->dir, &s->ms, e) == -1)
    return -1;
  if (import_scan (s->dir, source, import_top_name (&s->ms.top), o, g, ng,
                   e) == -1)
    return -1;
  for (size_t i = before; i < *ng; i++)
    (*g)[i].stream = id;
  return 0;
}

static int
parse_shard (const char *s, unsigned *k, unsigned *n)
{
  char *end;
  unsigned long a, b;

  errno = 0;
  a = strtoul (s, &end, 10);
  if (errno || end == s || *end != '/')
    return -1;
  b = strtoul (end + 1, &end, 10);
  if (errno || *end || a < 1 || b < 1 || a > b || b > 100000)
    return -1;
  *k = (unsigned) a;
  *n = (unsigned) b;
  return 0;
}

int
cmd_import (int argc, char **argv)
{
  struct import_opts o = { 0 };
  struct import_ctx x = { 0 };
  struct import_group *g = NULL;
  struct import_rename *ren = NULL;
  struct pve_push pve = { 0 };
  const char *pass[40], *keyfile = NULL, *fingerprint = NULL;
  char *owned[16];
  size_t nowned = 0;
  const char *tmpdir = getenv ("TMPDIR");
  struct import_stream streams[64];
  size_t nstreams = 0;
  struct tar_index tix[64];
  size_t ntix = 0;
  uint64_t temp_bytes = 0, skeleton_bytes = 0, stream_peak = 0;
  struct cli_err err = { .status = 0 };
  struct import_runner runner = { 0 };
  size_t ng = 0, i, j, npass = 0, nren = 0;
  size_t counts[5] = { 0 };
  unsigned shard_k = 0, shard_n = 0;
  int opt, ret = 1;
  char *end;

  x.ns = "";
  x.type = "vm";
  x.jobs = 1;
  optind = 1;
  opterr = 0;
  while ((opt = getopt_long (argc, argv, ":h", longopts, NULL)) != -1) {
    switch (opt) {
    case OPT_REPOSITORY: x.repo_spec = optarg; break;
    case CLI_OPT_FINGERPRINT:
      fingerprint = optarg;
      pass[npass++] = "--fingerprint";
      pass[npass++] = optarg;
      break;
    case OPT_NS: x.ns = optarg; break;
    case OPT_TYPE: x.type = optarg; break;
    case OPT_ID: o.backup_id = optarg; break;
    case OPT_KEYFILE: keyfile = optarg; break;
    case OPT_JOBS:
      errno = 0;
      x.jobs = strtoul (optarg, &end, 10);
      if (errno || *end || !*optarg || x.jobs < 1 || x.jobs > 64)
        { ret = cli_usage_error ("import", "invalid --jobs '%s' (1 to 64)",
                                optarg); goto out; }
      break;
    case OPT_SHARD:
      if (parse_shard (optarg, &shard_k, &shard_n) == -1)
        { ret = cli_usage_error ("import", "invalid --shard '%s' (K/N with "
                                "1 <= K <= N)", optarg); goto out; }
      break;
    case OPT_DRY_RUN: rep.dry = true; break;
    case OPT_OUTPUT:
      if (cli_parse_output_format (optarg, &rep.json) == -1)
        { ret = cli_usage_error ("import", "invalid --output-format '%s'",
                                optarg); goto out; }
      break;
    case OPT_TIME_FROM:
      if (!strcmp (optarg, "name"))
        o.time_from = IMPORT_TIME_NAME;
      else if (!strcmp (optarg, "mtime"))
        o.time_from = IMPORT_TIME_MTIME;
      else
        { ret = cli_usage_error ("import", "invalid --time-from '%s' (name "
                                "or mtime)", optarg); goto out; }
      break;
    case OPT_ARCHIVE_NAME: {
      const char *eq = strchr (optarg, '=');
      struct import_rename *r2 = realloc (ren, (nren + 1) * sizeof *ren);
      if (!r2)
        { ret = cli_error ("import", "out of memory"); goto out; }
      ren = r2;
      if (!eq || eq == optarg || !eq[1])
        { ret = cli_usage_error ("import", "--archive-name takes DISK=NAME"); goto out; }
      ren[nren].disk = strndup (optarg, (size_t) (eq - optarg));
      ren[nren++].name = eq + 1;
      break;
    }
    case OPT_INCLUDE_RAW: o.include_raw = true; break;
    case OPT_TMPDIR: tmpdir = optarg; break;
    case OPT_ALLOW_MISSING: o.allow_missing_disks = true; break;
    case 'h': usage (); ret = 0; goto out;
    default:
      if (opt >= PVE_OPT_CONFIG && opt <= PVE_OPT_LAST
          && npass + 2 < sizeof pass / sizeof pass[0]) {
        /* Checked here, applied by each push. */
        for (i = 0; longopts[i].name; i++)
          if (longopts[i].val == opt)
            break;
        if (pve_push_option (&pve, opt, optarg, &err) != 0)
          { ret = cli_err_print (&err); goto out; }
        if (opt == PVE_OPT_CONFIG)
          x.pve_config = true;
        {
          char *flag = NULL;
          if (nowned == sizeof owned / sizeof owned[0]
              || asprintf (&flag, "--%s", longopts[i].name) == -1)
            { ret = cli_error ("import", "out of memory"); goto out; }
          pass[npass++] = owned[nowned++] = flag;
        }
        if (longopts[i].has_arg)
          pass[npass++] = optarg;
        break;
      }
      { ret = cli_getopt_error ("import", opt, argv, longopts); goto out; }
    }
  }
  if (optind >= argc)
    { ret = cli_usage_error ("import", "no SOURCE given"); goto out; }
  if (!pbs_valid_backup_type (x.type))
    { ret = cli_usage_error ("import", "invalid backup type '%s'", x.type); goto out; }
  if (!pbs_valid_ns (x.ns))
    { ret = cli_usage_error ("import", "invalid namespace '%s'", x.ns); goto out; }
  if (o.backup_id && !pbs_valid_backup_id (o.backup_id))
    { ret = cli_usage_error ("import", "invalid backup id '%s'", o.backup_id); goto out; }
  if (o.backup_id && argc - optind > 1)
    { ret = cli_usage_error ("import", "--backup-id names one group: give "
                            "one SOURCE"); goto out; }
  if ((pve.config_arg || pve.fw_path) && strcmp (x.type, "vm") != 0)
    { ret = cli_usage_error ("import", "--pve-config and --fw-config need "
                            "--backup-type vm"); goto out; }
  o.rename = ren;
  o.nrename = nren;
  rep.type = x.type;
  rep.start = time (NULL);

  if (!tmpdir || !*tmpdir)
    tmpdir = "/var/tmp";
  if (cli_catch_interrupts () == -1) {
    cli_error ("import", "cannot catch signals: %s", strerror (errno));
    goto out;
  }
  for (i = (size_t) optind; i < (size_t) argc; i++) {
    struct stat st;
    if (stat (argv[i], &st) == 0 && S_ISREG (st.st_mode)) {
      struct qcow_probe_info pi;
      bool q = qcow_probe (argv[i], &pi) == 0 && pi.is_qcow2;
      if (q)
        qcow_probe_free (&pi);
      if (q) {
        cli_error (argv[i], "a qcow2 image, not a backup folder or archive: "
                   "push it with 'qcow2pbs push' (--chain or --disk for its "
                   "layers)");
        goto out;
      }
      /* An uncompressed tar of plain members is read in place: no
       * temporary copy.  Compressed ones and GNU sparse members are
       * streamed. */
      struct tar_index *ix = &tix[ntix];
      if (ntix == sizeof tix / sizeof tix[0]) {
        cli_error (argv[i], "more than 64 archives in one import");
        goto out;
      }
      if (tar_index_read (argv[i], ix, &err) == -1) {
        cli_err_print (&err);
        goto out;
      }
      ntix++;
      if (!ix->compressed && !ix->any_sparse) {
        if (import_scan_archive (argv[i], ix, &o, &g, &ng, &err) == -1) {
          cli_err_print (&err);
          goto out;
        }
        continue;
      }
      /* Read as a stream: a skeleton now for the plan, the data once
       * while the groups run (import-stream.c). */
      tar_index_free (&tix[--ntix]);
      if (nstreams == sizeof streams / sizeof streams[0]) {
        cli_error (argv[i], "more than 64 archives in one import");
        goto out;
      }
      nstreams++;
      if (plan_stream (argv[i], tmpdir, &streams[nstreams - 1], nstreams,
                       &o, &g, &ng, &err) == -1) {
        if (err.msg[0])
          cli_err_print (&err);
        goto out;
      }
    }
    else if (import_scan (argv[i], argv[i], NULL, &o, &g, &ng, &err) == -1) {
      cli_err_print (&err);
      goto out;
    }
  }
  /* --shard: keep the groups of this shard. */
  if (shard_n) {
    size_t keep = 0;
    for (i = 0; i < ng; i++)
      if (g[i].hash % shard_n == shard_k - 1)
        g[keep++] = g[i];
      else
        import_group_clear (&g[i]);
    ng = keep;
  }
  for (i = 0; i < ng; i++)
    for (j = i + 1; j < ng; j++)
      if (!strcmp (g[i].id, g[j].id)) {
        cli_error (g[j].source, "its group %s/%s is also %s's; give each "
                   "SOURCE its own --backup-id run", x.type, g[j].id,
                   g[i].source);
        goto out;
      }
  /* Proxmox VE maps disks by config key: check every archive name now,
   * not point by point. */
  for (i = 0; pve.config_arg && i < ng; i++)
    for (j = 0; j < g[i].np; j++)
      for (size_t d = 0; d < g[i].p[j].nd; d++) {
        char key[16];
        if (!pve_disk_key (g[i].p[j].d[d].archive, key)) {
          cli_error (g[i].source, "disk %s: its archive %s is no Proxmox VE "
                     "disk key (ide0-3, sata0-5, scsi0-30, virtio0-15, ...); "
                     "give --archive-name %s=drive-scsi0 (or another key)",
                     g[i].p[j].d[d].chain->disk, g[i].p[j].d[d].archive,
                     g[i].p[j].d[d].chain->disk);
          goto out;
        }
      }
  /* pve-storage's PBS plugin lists only numeric ids: refuse the group
   * now, not each of its points with push's message. */
  for (i = 0; pve.config_arg && i < ng; i++)
    if (!*g[i].id || strspn (g[i].id, "0123456789") != strlen (g[i].id)) {
      cli_error (g[i].source, "its group id '%s' is not numeric, but "
                 "--pve-config needs a VMID (Proxmox VE lists only vm "
                 "groups named by one): give --backup-id 100 (one SOURCE) "
                 "or name the folder after the VM id", g[i].id);
      goto out;
    }
  for (i = 0; i < ng; i++)
    for (j = 0; j < g[i].np; j++) {
      x.total_points++;
      x.total_bytes += g[i].p[j].read_bytes;
    }

  /* The repository: required unless this is a dry run. */
  if (!x.repo_spec)
    x.repo_spec = getenv ("PBS_REPOSITORY");
  if (x.repo_spec && *x.repo_spec
      && (!rep.dry || !strchr (x.repo_spec, '/')
          || access (x.repo_spec, F_OK) == 0)) {
    if (!strchr (x.repo_spec, '/')) {
      x.secret = cli_read_secret ("PBS_PASSWORD", "Password: ", &err);
      if (!x.secret) {
        cli_err_print (&err);
        goto out;
      }
    }
    /* A real import makes a missing local datastore, as push does. */
    x.repo = cli_open_repo_with (x.repo_spec, fingerprint, x.secret,
                                 !rep.dry, &err);
    if (!x.repo) {
      cli_err_print (&err);
      goto out;
    }
  }
  else if (!rep.dry) {
    cli_error ("repository", "no repository given (--repository or "
               "PBS_REPOSITORY)");
    goto out;
  }
  if (keyfile) {
    char *show = pbs_key_show (keyfile);
    json_t *k = show ? json_loads (show, 0, NULL) : NULL;
    const char *kdf = json_string_value (json_object_get (k, "kdf"));
    struct pbs_key *key;
    free (show);
    if (!k) {
      cli_error (keyfile, "%s", pbs_errmsg ());
      goto out;
    }
    if (kdf && strcmp (kdf, "none") != 0) {
      x.key_secret = cli_read_secret ("PBS_ENCRYPTION_PASSWORD",
                                      "Encryption key password: ", &err);
      if (!x.key_secret) {
        cli_err_print (&err);
        json_decref (k);
        goto out;
      }
    }
    json_decref (k);
    key = pbs_key_load (keyfile, x.key_secret); /* fail before any work */
    if (!key) {
      cli_error (keyfile, "%s", pbs_errmsg ());
      goto out;
    }
    pbs_key_free (key);
    pass[npass++] = "--keyfile";
    pass[npass++] = keyfile;
  }
  x.pass = pass;
  x.npass = npass;
  x.dry_run = rep.dry;
  x.on_point = rep.dry ? NULL : on_point;

  /* Points the group holds already or cannot take need no member of a
   * streamed archive: settle them before planning its temporary space.
   * (Other groups are judged again just before each push.) */
  for (i = 0; i < ng; i++)
    if (x.repo && (rep.dry || g[i].stream)
        && import_judge (&x, &g[i], &err) == -1) {
      cli_err_print (&err);
      goto out;
    }
  for (i = 0; i < nstreams; i++) {
    if (import_stream_plan (&streams[i], g, ng, x.jobs, &err) == -1) {
      cli_err_print (&err);
      goto out;
    }
    skeleton_bytes += streams[i].ms.skeleton_bytes;
    if (streams[i].peak > stream_peak)
      stream_peak = streams[i].peak;
  }
  /* The skeletons stay until the end; one archive streams at a time. */
  temp_bytes = skeleton_bytes + stream_peak;
  if (!rep.dry && nstreams) {
    struct statvfs vfs;
    if (statvfs (tmpdir, &vfs) == 0
        && (uint64_t) vfs.f_bavail * vfs.f_frsize < stream_peak) {
      char a[32], b[32];
      human (stream_peak, a, sizeof a);
      human ((uint64_t) vfs.f_bavail * vfs.f_frsize, b, sizeof b);
      cli_error (tmpdir, "the archive%s need%s %s more of temporary space "
                 "at once while streaming, but it has %s free: give "
                 "--tmpdir DIR with room%s",
                 nstreams > 1 ? "s" : "", nstreams > 1 ? "" : "s", a, b,
                 x.jobs > 1 ? " (or fewer --jobs: each takes a group's room)"
                            : "");
      goto out;
    }
  }

  if (!rep.dry) {
    /* Folders and tars read in place first, then each streamed archive,
     * its groups started as their members arrive. */
    if (import_runner_init (&x, &runner, &err) == -1) {
      cli_err_print (&err);
      goto out;
    }
    x.on_group_done = import_stream_group_done;
    for (i = 0; i < ng && !x.interrupted; i++)
      if (!g[i].stream && import_runner_add (&x, &runner, &g[i]) == -1)
        break;
    for (i = 0; i < nstreams && !x.interrupted && !cli_interrupted (); i++)
      if (import_stream_run (&streams[i], &x, &runner, &err) == -1
          && !x.interrupted && !cli_interrupted ())
        cli_err_print (&err); /* its groups' points failed with it */
    if (import_runner_wait (&x, &runner) == -1)
      cli_error ("import", "waiting for a push: %s", strerror (errno));
    import_runner_free (&runner);
    for (i = 0; i < ng; i++)
      for (j = 0; j < g[i].np; j++)
        if (g[i].p[j].status == IMPORT_TODO) {
          g[i].p[j].status = IMPORT_FAILED;
          snprintf (g[i].p[j].reason, sizeof g[i].p[j].reason,
                    "not pushed: the import was interrupted; run it again "
                    "to resume");
        }
  }

  /* Report. */
  rep.points = json_array ();
  for (i = 0; i < ng; i++) {
    if (!rep.json && rep.dry) {
      uint64_t bytes = 0;
      char b[32];
      for (j = 0; j < g[i].np; j++)
        bytes += g[i].p[j].status == IMPORT_TODO ? g[i].p[j].read_bytes : 0;
      human (bytes, b, sizeof b);
      printf ("group %s/%s from %s: %zu points, %s to read\n", x.type,
              g[i].id, g[i].source, g[i].np, b);
    }
    for (j = 0; j < g[i].np; j++) {
      const struct import_point *p = &g[i].p[j];
      counts[p->status]++;
      if (rep.json)
        json_array_append_new (rep.points, point_json (x.type, &g[i], p,
                                                       rep.dry));
      else if (rep.dry)
        print_point_text (x.type, &g[i], p, true, true);
    }
  }
  if (rep.json) {
    json_t *o2 = json_pack ("{s:b, s:I, s:o}", "dry_run", rep.dry,
                            "temporary-bytes", (json_int_t) temp_bytes,
                            "points", rep.points);
    char *s = o2 ? json_dumps (o2, JSON_INDENT (2) | JSON_PRESERVE_ORDER)
                 : NULL;
    if (s)
      printf ("%s\n", s);
    free (s);
    json_decref (o2);
    rep.points = NULL;
  }
  else if (rep.dry) {
    char tb[32];
    for (i = 0; i < nstreams; i++) {
      char pk[32], sk[32];
      human (streams[i].ms.skeleton_bytes, sk, sizeof sk);
      human (streams[i].peak, pk, sizeof pk);
      printf ("archive %s: read twice as a stream (the plan: %s of "
              "skeleton; the data: at most %s at once with --jobs %zu)\n",
              streams[i].archive, sk, pk, x.jobs);
    }
    human (temp_bytes, tb, sizeof tb);
    printf ("import: %zu points: %zu to push, %zu present, %zu skipped, %zu "
            "failed; %s of temporary space in %s\n", x.total_points,
            counts[IMPORT_TODO], counts[IMPORT_PRESENT],
            counts[IMPORT_SKIPPED], counts[IMPORT_FAILED], tb, tmpdir);
  }
  else
    printf ("import: %zu points: %zu stored, %zu present, %zu skipped, %zu "
            "failed\n", x.total_points, counts[IMPORT_STORED],
            counts[IMPORT_PRESENT], counts[IMPORT_SKIPPED],
            counts[IMPORT_FAILED]);
  json_decref (rep.points);
  if (x.interrupted || cli_interrupted ())
    ret = 128 + (cli_interrupted () ? cli_interrupted () : 2);
  else
    ret = counts[IMPORT_FAILED] ? 1 : 0;
out:
  /* Stopped by Ctrl-C before the pushes (while planning): 128+signal,
   * as when the pushes are stopped. */
  if (ret == 1 && cli_interrupted ())
    ret = 128 + cli_interrupted ();
  import_groups_free (g, ng);
  pbs_repo_close (x.repo);
  if (x.secret) {
    explicit_bzero (x.secret, strlen (x.secret));
    free (x.secret);
  }
  if (x.key_secret) {
    explicit_bzero (x.key_secret, strlen (x.key_secret));
    free (x.key_secret);
  }
  for (i = 0; i < nren; i++)
    free ((char *) ren[i].disk);
  free (ren);
  pve_push_free (&pve);
  for (i = 0; i < nowned; i++)
    free (owned[i]);
  for (i = 0; i < nstreams; i++) {
    if (streams[i].dir)
      remove_tree (streams[i].dir);
    import_stream_free (&streams[i]);
  }
  for (i = 0; i < ntix; i++)
    tar_index_free (&tix[i]);
  return ret;
}
