/* cli-errors.c -- one-line errors in the "qcow2pbs: CONTEXT: message"
 * form every subcommand uses, or, once a command line asks for
 * --output-format json, the same line as one JSON object on stderr:
 *   {"error": "CONTEXT: message", "context": "CONTEXT"}
 * ("error" is the text line without its "qcow2pbs: " prefix; usage errors
 * add "usage": true).  stderr in both modes: stdout holds only a result
 * (or the disk, for export/restore to '-'), so it stays empty on error.
 * Exit statuses are the same in both modes. */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"
#include "pbsproto.h"
#include "qcowlib.h"

static bool json_errors;

void
cli_set_json_errors (bool on)
{
  json_errors = on;
}

bool
cli_json_errors (void)
{
  return json_errors;
}

/* Print LINE ("CONTEXT: message", or "CMD: message" for usage errors) in
 * the current mode.  CONTEXT may be NULL: then it is LINE's text up to the
 * first ": ". */
static void
emit (const char *context, const char *line, bool usage)
{
  fflush (stdout);
  if (json_errors) {
    json_t *o = json_object ();
    char *ctx = NULL, *text;
    const char *sep;

    if (!context && (sep = strstr (line, ": ")) != NULL)
      ctx = strndup (line, (size_t) (sep - line));
    /* _nocheck: a path need not be UTF-8; its bytes pass unchanged. */
    json_object_set_new (o, "error", json_string_nocheck (line));
    if (context || ctx)
      json_object_set_new (o, "context",
                           json_string_nocheck (context ? context : ctx));
    if (usage)
      json_object_set_new (o, "usage", json_true ());
    text = json_dumps (o, JSON_COMPACT | JSON_PRESERVE_ORDER
                              | JSON_ENSURE_ASCII);
    json_decref (o);
    free (ctx);
    if (text) {
      fprintf (stderr, "%s\n", text);
      free (text);
      return;
    }
  }
  /* Escaped (cli-escape.c): an error often quotes a name or a server
   * message, and must stay one harmless line. */
  fputs (usage ? "qcow2pbs " : "qcow2pbs: ", stderr);
  cli_fputs_escaped (line, stderr);
  fputc ('\n', stderr);
}

static int
vreport (const char *context, bool usage, const char *fmt, va_list ap)
{
  char *msg = NULL, *line = NULL;

  if (vasprintf (&msg, fmt, ap) == -1)
    msg = NULL;
  if (usage) {
    if (asprintf (&line, "%s: %s; try 'qcow2pbs %s --help'", context,
                  msg ? msg : "usage error", context) == -1)
      line = NULL;
  }
  else if (asprintf (&line, "%s: %s", context, msg ? msg : "error") == -1)
    line = NULL;
  if (line)
    emit (context, line, usage);
  else
    fprintf (stderr, "qcow2pbs: %s: out of memory\n", context);
  free (line);
  free (msg);
  return usage ? 2 : 1;
}

int
cli_error (const char *context, const char *fmt, ...)
{
  va_list ap;
  int r;

  va_start (ap, fmt);
  r = vreport (context, false, fmt, ap);
  va_end (ap);
  return r;
}

int
cli_usage_error (const char *cmd, const char *fmt, ...)
{
  va_list ap;
  int r;

  va_start (ap, fmt);
  r = vreport (cmd, true, fmt, ap);
  va_end (ap);
  return r;
}

static int
err_fill (struct cli_err *e, const char *context, int status, bool usage,
          const char *fmt, va_list ap)
{
  snprintf (e->ctx, sizeof e->ctx, "%s", context);
  vsnprintf (e->msg, sizeof e->msg, fmt, ap);
  e->status = status;
  e->usage = usage;
  return -1;
}

int
cli_err_set (struct cli_err *e, const char *context, const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  err_fill (e, context, 1, false, fmt, ap);
  va_end (ap);
  return -1;
}

int
cli_err_usage (struct cli_err *e, const char *cmd, const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  err_fill (e, cmd, 2, true, fmt, ap);
  va_end (ap);
  return -1;
}

int
cli_err_arg (struct cli_err *e, const char *context, const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  err_fill (e, context, 2, false, fmt, ap);
  va_end (ap);
  return -1;
}

void
cli_err_clear (struct cli_err *e)
{
  e->ctx[0] = e->msg[0] = '\0';
  e->status = 1;
  e->usage = false;
}

int
cli_err_print (const struct cli_err *e)
{
  if (!e->msg[0]) /* cli_err_clear: no message */
    return e->status;
  if (e->usage)
    return cli_usage_error (e->ctx, "%s", e->msg);
  if (!e->ctx[0]) /* the message names its file */
    cli_error_line (e->msg);
  else
    cli_error (e->ctx, "%s", e->msg);
  return e->status;
}

void
cli_note (const char *context, const char *fmt, ...)
{
  va_list ap;
  char *msg;

  va_start (ap, fmt);
  if (vasprintf (&msg, fmt, ap) == -1)
    msg = NULL;
  va_end (ap);
  if (!msg)
    return;
  fflush (stdout);
  fputs ("qcow2pbs: ", stderr);
  cli_fputs_escaped (context, stderr);
  fputs (": ", stderr);
  cli_fputs_escaped (msg, stderr);
  fputc ('\n', stderr);
  free (msg);
}

void
cli_cmd_note (const char *cmd, const char *fmt, ...)
{
  va_list ap;
  char *msg;

  va_start (ap, fmt);
  if (vasprintf (&msg, fmt, ap) == -1)
    msg = NULL;
  va_end (ap);
  if (!msg)
    return;
  fputs (cmd, stderr);
  fputs (": ", stderr);
  cli_fputs_escaped (msg, stderr);
  fputc ('\n', stderr);
  free (msg);
}

void
cli_warning (const char *fmt, ...)
{
  va_list ap;
  char *line;
  size_t i;

  va_start (ap, fmt);
  if (vasprintf (&line, fmt, ap) == -1)
    line = NULL;
  va_end (ap);
  if (!line)
    return;
  for (i = 0; line[i]; i++) /* one line, whatever a file name holds */
    if ((unsigned char) line[i] < 0x20 || line[i] == 0x7f)
      line[i] = '?';
  fflush (stdout);
  fprintf (stderr, "qcow2pbs: warning: %s\n", line);
  free (line);
}

int
cli_err_qcow (struct cli_err *e, const char *context)
{
  const char *msg = qcow_errmsg ();

  if (!msg || !*msg)
    return cli_err_set (e, context, "%s",
                        strerror (qcow_errno () ? qcow_errno () : EIO));
  if (!strstr (msg, ": "))
    return cli_err_set (e, context, "%s", msg);
  return cli_err_set (e, "", "%s", msg);
}

/* "qcow2pbs: FILE: message" for the last qcowlib error.  qcowlib's
 * messages already start with the file they are about ("incr0.qcow2: L2
 * entry ..."); only a message that does not is given CONTEXT.  Control
 * characters (a file name may hold a newline) are replaced so the error
 * stays one line. */
int
cli_qcow_error (const char *context)
{
  const char *msg = qcow_errmsg ();

  if (!msg || !*msg)
    msg = strerror (qcow_errno () ? qcow_errno () : EIO);
  if (!strstr (msg, ": "))
    return cli_error (context, "%s", msg);
  return cli_error_line (msg);
}

int
cli_error_line (const char *line)
{
  char *copy = strdup (line);

  if (!copy)
    return cli_error ("qcow2pbs", "out of memory");
  emit (NULL, copy, false);
  free (copy);
  return 1;
}

/* getopt_long with opterr = 0 and a ':' first in its short options reports
 * here: ':' = a missing argument, '?' = an unknown or ambiguous option or
 * an argument given to one that takes none.  glibc sets optopt to 0 for an
 * unknown or ambiguous long option, to the option's value for the other
 * long-option errors (then argv[optind - 1] is the option as written), and
 * to the character for a short one (which may sit in a cluster "-qZ"). */
int
cli_err_getopt (struct cli_err *e, const char *cmd, int opt, char **argv,
                const struct option *longopts)
{
  const char *arg = optind > 0 ? argv[optind - 1] : NULL;
  char name[128];
  size_t n = 0, i, matches = 0;
  const struct option *found = NULL;

  if (arg && strncmp (arg, "--", 2) == 0 && arg[2]) {
    n = strcspn (arg + 2, "=");
    for (i = 0; longopts && longopts[i].name; i++) {
      if (strncmp (longopts[i].name, arg + 2, n) != 0)
        continue;
      if (strlen (longopts[i].name) == n) { /* exact: no ambiguity */
        found = &longopts[i];
        matches = 1;
        break;
      }
      found = &longopts[i];
      matches++;
    }
    if (matches != 1)
      found = NULL;
  }
  else
    arg = NULL;
  if (!arg || (optopt != 0 && !(found && found->val == optopt))) {
    snprintf (name, sizeof name, "-%c", optopt > 32 && optopt < 127
                                            ? optopt : '?');
    if (opt == ':')
      return cli_err_usage (e, cmd, "option '%s' needs an argument", name);
    return cli_err_usage (e, cmd, "unknown option '%s'", name);
  }
  if (found)
    snprintf (name, sizeof name, "--%s", found->name);
  else
    snprintf (name, sizeof name, "--%.*s", (int) (n < 100 ? n : 100),
              arg + 2);
  if (opt == ':')
    return cli_err_usage (e, cmd, "option '%s' needs an argument", name);
  if (found && arg[2 + n] == '=')
    return cli_err_usage (e, cmd, "option '%s' takes no argument", name);
  if (matches > 1)
    return cli_err_usage (e, cmd, "ambiguous option '%s'", name);
  return cli_err_usage (e, cmd, "unknown option '%s'", name);
}

int
cli_getopt_error (const char *cmd, int opt, char **argv,
                  const struct option *longopts)
{
  struct cli_err e;

  cli_err_getopt (&e, cmd, opt, argv, longopts);
  return cli_err_print (&e);
}

/* The failed pbsproto call's message after CONTEXT, the name the caller
 * gave it (a repository, a snapshot, a file).  pbsproto's messages never
 * repeat that name (pbsproto.h "Errors"); a path they contain is that of
 * another file.  cli_error escapes control characters (a file name may
 * hold a newline) so the error stays one line. */
int
cli_pbs_error (const char *context)
{
  return cli_error (context, "%s", pbs_errmsg ());
}

/* cli_pbs_error for a helper that returns the error: pbsproto's messages
 * never repeat the name the caller gives (pbsproto.h, "Errors"). */
int
cli_err_pbs (struct cli_err *e, const char *context)
{
  return cli_err_set (e, context, "%s", pbs_errmsg ());
}
