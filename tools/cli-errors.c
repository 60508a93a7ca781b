/* cli-errors.c -- one-line errors in the "qcow2pbs: CONTEXT: message"
 * form every subcommand uses. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "pbsproto.h"

/* Every error line goes out escaped (cli-escape.c): it often quotes a
 * name or a server message, and must stay one harmless line. */
static void
put_line (const char *head, const char *fmt, va_list ap)
{
  char *msg = NULL;

  fflush (stdout);
  fputs (head, stderr);
  if (vasprintf (&msg, fmt, ap) == -1)
    msg = NULL;
  cli_fputs_escaped (msg ? msg : "out of memory", stderr);
  free (msg);
}

int
cli_error (const char *context, const char *fmt, ...)
{
  va_list ap;

  fflush (stdout);
  fputs ("qcow2pbs: ", stderr);
  cli_fputs_escaped (context, stderr);
  va_start (ap, fmt);
  put_line (": ", fmt, ap);
  va_end (ap);
  fputc ('\n', stderr);
  return 1;
}

int
cli_usage_error (const char *cmd, const char *fmt, ...)
{
  va_list ap;
  char head[64];

  snprintf (head, sizeof head, "qcow2pbs %s: ", cmd);
  va_start (ap, fmt);
  put_line (head, fmt, ap);
  va_end (ap);
  fprintf (stderr, "\nTry 'qcow2pbs %s --help'.\n", cmd);
  return 2;
}

/* pbsproto's messages about a file start with its path ("key.json: not a
 * PBS key file (...)"), so the path is dropped from the message when it is
 * CONTEXT too.  Control characters (a file name may hold a newline) are
 * escaped so the error stays one line. */
int
cli_pbs_error (const char *context)
{
  const char *msg = pbs_errmsg ();
  size_t n = strlen (context);
  char *line;

  if (strncmp (msg, context, n) == 0 && (msg[n] == ':' || msg[n] == ' '))
    msg += n + 1 + (msg[n] == ':' && msg[n + 1] == ' ');
  if (asprintf (&line, "%s: %s", context, msg) == -1)
    return cli_error (context, "%s", msg);
  fflush (stdout);
  fputs ("qcow2pbs: ", stderr);
  cli_fputs_escaped (line, stderr);
  fputc ('\n', stderr);
  free (line);
  return 1;
}
