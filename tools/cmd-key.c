/* cmd-key.c -- `qcow2pbs key create|show`: PBS encryption key files in
 * proxmox-backup-client's format (pbs-key-config), so either tool can use
 * the other's keys.  The passphrase never comes from argv. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"
#include "pbsproto.h"

static const char create_help[]
    = "Usage: qcow2pbs key create [OPTIONS] FILE\n"
      "\n"
      "Create a new random AES-256 encryption key in FILE (mode 0600; an\n"
      "existing FILE is never replaced).  With a kdf (default scrypt) the key\n"
      "is protected by a password from PBS_ENCRYPTION_PASSWORD (or _FD, _FILE,\n"
      "_CMD; first line) or, on a terminal, a prompt.\n"
      "\n"
      "  --kdf none|scrypt|pbkdf2  key derivation (none: unprotected key)\n"
      "  --hint TEXT               password hint stored in the file\n"
      "  --output-format text|json  JSON: describe the new key as 'key show'\n"
      "                            does (default text: print nothing)\n"
      "  -h, --help                this help\n";

static const char show_help[]
    = "Usage: qcow2pbs key show [OPTIONS] FILE\n"
      "\n"
      "Describe a key file (kdf, times, fingerprint, hint) without\n"
      "decrypting it.\n"
      "\n"
      "  --output-format text|json  output format (default text)\n"
      "  -h, --help                 this help\n";

static const char key_help[]
    = "Usage: qcow2pbs key create [OPTIONS] FILE\n"
      "       qcow2pbs key show [OPTIONS] FILE\n"
      "\n"
      "Create or show a Proxmox Backup Server encryption key file.\n"
      "'qcow2pbs key create --help' and 'qcow2pbs key show --help' tell "
      "more.\n";

static int
key_create (int argc, char **argv)
{
  static const struct option opts[]
      = { { "kdf", required_argument, NULL, 'k' },
          { "hint", required_argument, NULL, 'H' },
          { "output-format", required_argument, NULL, 'o' },
          { "help", no_argument, NULL, 'h' },
          { NULL, 0, NULL, 0 } };
  const char *kdf = "scrypt", *hint = NULL, *file;
  char *password = NULL, *text;
  bool json = false;
  int c, r;

  optind = 1;
  opterr = 0;
  while ((c = getopt_long (argc, argv, ":h", opts, NULL)) != -1) {
    switch (c) {
    case 'k':
      kdf = optarg;
      if (strcmp (kdf, "none") && strcmp (kdf, "scrypt")
          && strcmp (kdf, "pbkdf2"))
        return cli_usage_error ("key create", "--kdf: none, scrypt or "
                                "pbkdf2, not '%s'", kdf);
      break;
    case 'H':
      hint = optarg;
      break;
    case 'o':
      if (cli_parse_output_format (optarg, &json) == -1)
        return cli_usage_error ("key create", "--output-format: text or "
                                "json, not '%s'", optarg);
      break;
    case 'h':
      fputs (create_help, stdout);
      return 0;
    default:
      return cli_getopt_error ("key create", c, argv, opts);
    }
  }
  if (argc - optind != 1)
    return cli_usage_error ("key create", "expected one FILE");
  file = argv[optind];
  if (strcmp (kdf, "none") != 0) {
    struct cli_err err;
    password = cli_read_new_secret ("PBS_ENCRYPTION_PASSWORD",
                                    "Encryption Key Password: ", &err);
    if (!password)
      return cli_err_print (&err);
  }
  r = pbs_key_create_hint (file, kdf, password, hint);
  if (password) {
    explicit_bzero (password, strlen (password));
    free (password);
  }
  if (r == -1)
    return cli_error (file, "%s", pbs_errmsg ());
  if (!json)
    return 0;
  text = pbs_key_show (file);
  if (!text)
    return cli_error (file, "%s", pbs_errmsg ());
  printf ("%s\n", text);
  free (text);
  if (fflush (stdout) == EOF || ferror (stdout))
    return cli_error ("stdout", "write error");
  return 0;
}

static void
print_time (const char *label, json_t *v)
{
  char t[21];
  if (json_is_integer (v)) {
    pbs_time_to_rfc3339 ((int64_t) json_integer_value (v), t);
    printf ("%-12s %s\n", label, t);
  }
}

static int
key_show (int argc, char **argv)
{
  static const struct option opts[]
      = { { "output-format", required_argument, NULL, 'o' },
          { "help", no_argument, NULL, 'h' },
          { NULL, 0, NULL, 0 } };
  bool json = false;
  const char *file;
  char *text;
  json_t *root;
  int c;

  optind = 1;
  opterr = 0;
  while ((c = getopt_long (argc, argv, ":h", opts, NULL)) != -1) {
    switch (c) {
    case 'o':
      if (cli_parse_output_format (optarg, &json) == -1)
        return cli_usage_error ("key show", "--output-format: text or json, "
                                "not '%s'", optarg);
      break;
    case 'h':
      fputs (show_help, stdout);
      return 0;
    default:
      return cli_getopt_error ("key show", c, argv, opts);
    }
  }
  if (argc - optind != 1)
    return cli_usage_error ("key show", "expected one FILE");
  file = argv[optind];
  text = pbs_key_show (file);
  if (!text)
    return cli_error (file, "%s", pbs_errmsg ());
  if (json) {
    printf ("%s\n", text);
    free (text);
    return 0;
  }
  root = json_loads (text, 0, NULL);
  free (text);
  if (!root)
    return cli_error (file, "out of memory");
  printf ("%-12s %s\n", "path:", file);
  printf ("%-12s %s\n", "kdf:",
          json_string_value (json_object_get (root, "kdf")));
  print_time ("created:", json_object_get (root, "created"));
  print_time ("modified:", json_object_get (root, "modified"));
  {
    const char *fp = json_string_value (json_object_get (root,
                                                         "fingerprint"));
    const char *hint = json_string_value (json_object_get (root, "hint"));
    printf ("%-12s %s\n", "fingerprint:", fp ? fp : "-");
    if (hint)
      printf ("%-12s %s\n", "hint:", hint);
  }
  json_decref (root);
  return 0;
}

int
cmd_key (int argc, char **argv)
{
  if (argc < 2)
    return cli_usage_error ("key", "expected 'create' or 'show'");
  if (strcmp (argv[1], "--help") == 0 || strcmp (argv[1], "-h") == 0
      || strcmp (argv[1], "help") == 0) {
    fputs (key_help, stdout);
    return 0;
  }
  if (strcmp (argv[1], "create") == 0)
    return key_create (argc - 1, argv + 1);
  if (strcmp (argv[1], "show") == 0)
    return key_show (argc - 1, argv + 1);
  return cli_usage_error ("key", "unknown subcommand '%s' (create or show)",
                          argv[1]);
}
