/* cli-chain.c -- the image options every qcow2 subcommand shares: --chain,
 * the qcow_open_opts flags, --output-format, the "IMAGE or --chain" command
 * line of info/map/export/bitmap, and opening the chain with a one-line
 * error. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

/* A chain longer than this is refused while parsing; qcowlib has its own
 * (smaller) depth limit, this only bounds the allocation. */
#define CLI_CHAIN_MAX 4096

/* Copy one name of "a,b,,c,d" starting at *P into a new string; ",," stands
 * for a literal comma (QEMU's escaping in option strings), so any file name
 * can be given.  Advances *P past the name and sets *SEP when a separating
 * comma followed it. */
static char *
next_name (const char **p, bool *sep)
{
  const char *s = *p;
  size_t n = 0, i;
  char *name;

  for (i = 0; s[i] && !(s[i] == ',' && s[i + 1] != ','); i++) {
    if (s[i] == ',')
      i++;
    n++;
  }
  name = malloc (n + 1);
  if (!name)
    return NULL;
  for (i = 0, n = 0; s[i] && !(s[i] == ',' && s[i + 1] != ','); i++) {
    if (s[i] == ',')
      i++;
    name[n++] = s[i];
  }
  name[n] = '\0';
  *sep = s[i] == ',';
  *p = *sep ? s + i + 1 : s + i;
  return name;
}

int
cli_parse_chain (const char *arg, struct qcow_open_opts *opts,
                 struct cli_err *err)
{
  char **names = NULL, **grown;
  size_t n = 0, cap = 0;
  const char *p = arg;
  bool sep = true;

  if (opts->chain) {
    return cli_err_arg (err, "--chain", "given more than once");
  }
  while (sep) {
    if (n + 2 > cap) {
      if (cap >= CLI_CHAIN_MAX) {
        cli_err_arg (err, "--chain", "more than %d images", CLI_CHAIN_MAX);
        goto err;
      }
      cap = cap ? cap * 2 : 8;
      grown = realloc (names, cap * sizeof *names);
      if (!grown)
        goto nomem;
      names = grown;
    }
    names[n] = next_name (&p, &sep);
    if (!names[n])
      goto nomem;
    if (!*names[n]) {
      free (names[n]);
      cli_err_arg (err, "--chain", "empty image name in '%s'", arg);
      goto err;
    }
    names[++n] = NULL;
  }
  opts->chain = (const char *const *) names;
  opts->chain_len = n;
  return 0;

nomem:
  cli_err_arg (err, "--chain", "%s", strerror (ENOMEM));
err:
  while (n > 0)
    free (names[--n]);
  free (names);
  return -1;
}

void
cli_free_chain (struct qcow_open_opts *opts)
{
  size_t i;

  /* The allowed directories are borrowed from argv: only the array. */
  free ((void *) opts->allowed_dirs);
  opts->allowed_dirs = NULL;
  opts->allowed_dirs_len = 0;
  if (!opts->chain)
    return;
  for (i = 0; i < opts->chain_len; i++)
    free ((char *) opts->chain[i]);
  free ((void *) opts->chain);
  opts->chain = NULL;
  opts->chain_len = 0;
}

int
cli_image_option (int opt, const char *arg, struct qcow_open_opts *opts,
                  struct cli_err *err)
{
  switch (opt) {
  case CLI_OPT_CHAIN:
    return cli_parse_chain (arg, opts, err);
  case CLI_OPT_ALLOW_ABSOLUTE_DATA_FILE:
    opts->flags |= QCOW_OPEN_ALLOW_ABSOLUTE_DATA_FILE;
    return 0;
  case CLI_OPT_PROBE_BACKING_FORMAT:
    opts->flags |= QCOW_OPEN_PROBE_BACKING_FORMAT;
    return 0;
  case CLI_OPT_FORCE_SHARE:
  case 'U':
    opts->flags |= QCOW_OPEN_FORCE_SHARE;
    return 0;
  case CLI_OPT_ALLOW_BACKING_DIR: {
    const char **dirs;
    if (!*arg)
      return cli_err_arg (err, "--allow-backing-dir", "empty directory name");
    dirs = realloc ((void *) opts->allowed_dirs,
                    (opts->allowed_dirs_len + 1) * sizeof *dirs);
    if (!dirs)
      return cli_err_arg (err, "--allow-backing-dir", "%s",
                          strerror (ENOMEM));
    dirs[opts->allowed_dirs_len++] = arg;
    opts->allowed_dirs = dirs;
    return 0;
  }
  default:
    return cli_err_arg (err, "option", "unknown option code %d", opt);
  }
}

int
cli_check_chain_top (const char *cmd, const char *image,
                     const struct qcow_open_opts *opts, struct cli_err *err)
{
  const char *top;
  struct stat si, st;

  if (!opts->chain_len || !image)
    return 0;
  top = opts->chain[opts->chain_len - 1];
  if (stat (image, &si) == -1)
    return cli_err_set (err, image, "%s", strerror (errno));
  if (stat (top, &st) == -1)
    return 0; /* opening the chain reports it */
  if (si.st_dev == st.st_dev && si.st_ino == st.st_ino)
    return 0;
  return cli_err_usage (err, cmd,
                        "IMAGE %s is not the top of --chain (%s): give "
                        "IMAGE alone, or --chain ending with it",
                        image, top);
}

struct qcow_chain *
cli_open_chain (const char *image, const struct qcow_open_opts *opts,
                struct cli_err *err)
{
  struct qcow_chain *c;
  const char *context = image;

  if (!context && opts && opts->chain_len > 0)
    context = opts->chain[opts->chain_len - 1];
  if (!context)
    context = "image";
  c = qcow_open (opts && opts->chain_len ? NULL : image, opts);
  if (!c)
    cli_err_qcow (err, context);
  else if (cli_check_chain_names (c, err) != 0) {
    qcow_close (c);
    c = NULL;
  }
  return c;
}

/* info, map, export and bitmap differ only in their own options and in
 * the one argument that may follow IMAGE, so the rest of their command
 * line is parsed here, with the same messages for all four. */
int
cli_parse_image_args (struct cli_image_args *a, int argc, char **argv,
                      const struct option *longopts)
{
  int opt, nargs = a->arg_name ? 2 : 1;

  optind = 1;
  opterr = 0;
  while ((opt = getopt_long (argc, argv, ":h" CLI_IMAGE_SHORTOPTS, longopts,
                             NULL))
         != -1) {
    switch (opt) {
    case '?':
    case ':':
      cli_err_getopt (&a->err, a->cmd, opt, argv, longopts);
      goto error;
    case 'h':
      fputs (a->usage, stdout);
      a->status = 0;
      goto stop;
    case CLI_OPT_OUTPUT_FORMAT:
      if (cli_parse_output_format (optarg, &a->json) == -1) {
        cli_err_usage (&a->err, a->cmd, "unknown output format '%s'",
                       optarg);
        goto error;
      }
      break;
    case CLI_OPT_CHAIN:
    case CLI_OPT_ALLOW_ABSOLUTE_DATA_FILE:
    case CLI_OPT_PROBE_BACKING_FORMAT:
    case CLI_OPT_FORCE_SHARE:
    case 'U':
    case CLI_OPT_ALLOW_BACKING_DIR:
      if (cli_image_option (opt, optarg, &a->opts, &a->err) == -1)
        goto error;
      break;
    default:
      if (opt < CLI_OPT_FIRST_FREE || !a->option) {
        cli_err_usage (&a->err, a->cmd, "bad option");
        goto error;
      }
      if (a->option (a->opaque, opt, optarg, &a->err) != 0)
        goto error;
      break;
    }
  }
  /* --chain stands for IMAGE; an IMAGE given too must be its top. */
  if (a->opts.chain && argc - optind == nargs) {
    if (cli_check_chain_top (a->cmd, argv[optind], &a->opts, &a->err) != 0)
      goto error;
    optind++;
  }
  if (a->opts.chain)
    nargs--;
  if (argc - optind != nargs) {
    if (!a->arg_name)
      cli_err_usage (&a->err, a->cmd, a->opts.chain
                                        ? "at most one IMAGE with --chain"
                                        : "expected exactly one IMAGE");
    else if (a->opts.chain)
      cli_err_usage (&a->err, a->cmd, "expected [IMAGE] %s after --chain",
                     a->arg_name);
    else
      cli_err_usage (&a->err, a->cmd, "expected IMAGE and %s", a->arg_name);
    goto error;
  }
  a->image = a->opts.chain ? NULL : argv[optind++];
  a->arg = a->arg_name ? argv[optind] : NULL;
  a->context = a->image ? a->image : a->opts.chain[a->opts.chain_len - 1];
  return 0;

error:
  a->status = a->err.status;
stop:
  cli_free_chain (&a->opts);
  return -1;
}

int
cli_parse_output_format (const char *s, bool *json)
{
  if (strcmp (s, "text") == 0 || strcmp (s, "human") == 0) {
    *json = false;
    cli_set_json_errors (false);
    return 0;
  }
  if (strcmp (s, "json") == 0) {
    *json = true;
    cli_set_json_errors (true);
    return 0;
  }
  return -1;
}
