/* cmd-snapshots.c -- qcow2pbs snapshots: list a namespace's snapshots as
 * proxmox-backup-client's "snapshot list" does (snapshot, size, files), or as
 * JSON entries shaped like PBS's admin snapshots API (docs/pbs-protocol.md
 * §6.4). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"
#include "push.h"

static const struct option longopts[] = {
  { "repository", required_argument, NULL, 'r' },
  CLI_REPO_OPTIONS,
  { "ns", required_argument, NULL, 'n' },
  { "output-format", required_argument, NULL, 'o' },
  { "help", no_argument, NULL, 'h' },
  { NULL, 0, NULL, 0 },
};

static const char usage_text[] =
  "Usage: qcow2pbs snapshots [OPTIONS]\n"
  "List the snapshots of namespace NS (default: the root), with their\n"
  "files, protection and the first line of their notes.  JSON is an\n"
  "array of entries shaped like PBS's snapshot list API.\n"
  "\n"
  CLI_REPO_ARGS_HELP
  CLI_REPO_OPTIONS_HELP
  "  --output-format text|json  output format (default text)\n"
  "  -h, --help                this help\n";

static void
print_json (const struct pbs_snapshot *s, size_t n)
{
  json_t *arr = json_array ();
  char *text;
  size_t i, j;

  for (i = 0; i < n; i++) {
    json_t *o = json_object (), *files = json_array ();
    for (j = 0; j < s[i].nfiles; j++)
      json_array_append_new (files,
                             json_pack ("{s:s}", "filename", s[i].files[j]));
    json_object_set_new (o, "backup-type", json_string (s[i].type));
    json_object_set_new (o, "backup-id", json_string (s[i].id));
    json_object_set_new (o, "backup-time", json_integer (s[i].time));
    json_object_set_new (o, "files", files);
    if (s[i].finished)
      json_object_set_new (o, "size", json_integer ((json_int_t) s[i].size));
    if (s[i].owner)
      json_object_set_new (o, "owner", json_string (s[i].owner));
    json_object_set_new (o, "protected", json_boolean (s[i].protected_));
    if (s[i].comment) /* PBS's name for the first line of the notes */
      json_object_set_new (o, "comment", json_string (s[i].comment));
    if (s[i].verify_state)
      json_object_set_new (o, "verification",
                           json_pack ("{s:s}", "state", s[i].verify_state));
    if (s[i].fingerprint)
      json_object_set_new (o, "fingerprint", json_string (s[i].fingerprint));
    json_array_append_new (arr, o);
  }
  text = json_dumps (arr, JSON_INDENT (2) | JSON_PRESERVE_ORDER);
  if (text)
    printf ("%s\n", text);
  free (text);
  json_decref (arr);
}

/* "1.5 GiB" style, as the PBS client's HumanByte. */
static void
human (uint64_t v, char *out, size_t len)
{
  static const char *const unit[] = { "B", "KiB", "MiB", "GiB", "TiB",
                                      "PiB" };
  double x = (double) v;
  size_t u = 0;

  while (x >= 1024 && u < 5) {
    x /= 1024;
    u++;
  }
  if (u == 0)
    snprintf (out, len, "%llu B", (unsigned long long) v);
  else
    snprintf (out, len, "%.3g %s", x, unit[u]);
}

static void
print_text (const struct pbs_snapshot *s, size_t n)
{
  size_t i, j;
  char sz[32];

  printf ("%-40s %10s  %s\n", "snapshot", "size", "files");
  for (i = 0; i < n; i++) {
    char *name = push_snapshot_name (s[i].type, s[i].id, s[i].time);
    if (s[i].finished)
      human (s[i].size, sz, sizeof sz);
    else
      snprintf (sz, sizeof sz, "unfinished");
    /* Names come from the server or a manifest: escaped (cli-escape.c). */
    char *shown = cli_escape (name ? name : s[i].id);
    printf ("%-40s %10s ", shown ? shown : "?", sz);
    for (j = 0; j < s[i].nfiles; j++) {
      putchar (' ');
      cli_fputs_escaped (s[i].files[j], stdout);
    }
    if (s[i].protected_)
      printf ("  [protected]");
    if (s[i].comment) {
      printf ("  notes: ");
      cli_fputs_escaped (s[i].comment, stdout);
    }
    printf ("\n");
    free (shown);
    free (name);
  }
}

int
cmd_snapshots (int argc, char **argv)
{
  const char *fingerprint = NULL;
  const char *repo_spec = NULL, *ns = "";
  bool json = false;
  struct pbs_repo *repo;
  struct cli_err err;
  struct pbs_snapshot *s = NULL;
  size_t n = 0;
  int opt;

  optind = 1;
  opterr = 0;
  while ((opt = getopt_long (argc, argv, ":h", longopts, NULL)) != -1) {
    switch (opt) {
    case 'r': repo_spec = optarg; break;
    case CLI_OPT_FINGERPRINT: fingerprint = optarg; break;
    case 'n': ns = optarg; break;
    case 'o':
      if (cli_parse_output_format (optarg, &json) == -1)
        return cli_usage_error ("snapshots", "invalid --output-format '%s'",
                                optarg);
      break;
    case 'h': fputs (usage_text, stdout); return 0;
    default: return cli_getopt_error ("snapshots", opt, argv, longopts);
    }
  }
  if (optind != argc)
    return cli_usage_error ("snapshots", "unexpected argument '%s'",
                            argv[optind]);
  if (!pbs_valid_ns (ns))
    return cli_usage_error ("snapshots", "invalid namespace '%s'", ns);
  repo = cli_open_repo (repo_spec, fingerprint, &err);
  if (!repo)
    return cli_err_print (&err);
  if (pbs_repo_snapshots (repo, ns, NULL, NULL, &s, &n) == -1) {
    cli_pbs_error (repo_spec ? repo_spec : "repository");
    pbs_repo_close (repo);
    return 1;
  }
  if (json)
    print_json (s, n);
  else
    print_text (s, n);
  pbs_snapshots_free (s, n);
  pbs_repo_close (repo);
  return 0;
}
