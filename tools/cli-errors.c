/* cli-errors.c -- one-line errors in the "qcow2pbs: CONTEXT: message"
 * form every subcommand uses. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "pbsproto.h"

int
cli_error (const char *context, const char *fmt, ...)
{
  va_list ap;
  fflush (stdout);
  fprintf (stderr, "qcow2pbs: %s: ", context);
  va_start (ap, fmt);
  vfprintf (stderr, fmt, ap);
  va_end (ap);
  fputc ('\n', stderr);
  return 1;
}

int
cli_usage_error (const char *cmd, const char *fmt, ...)
{
  va_list ap;
  fprintf (stderr, "qcow2pbs %s: ", cmd);
  va_start (ap, fmt);
  vfprintf (stderr, fmt, ap);
  va_end (ap);
  fprintf (stderr, "\nTry 'qcow2pbs %s --help'.\n", cmd);
  return 2;
}

int
cli_pbs_error (const char *context)
{
  const char *msg = pbs_errmsg ();
  size_t n = strlen (context);

  if (strncmp (msg, context, n) == 0 && (msg[n] == ':' || msg[n] == ' '))
    msg += n + 1 + (msg[n] == ':' && msg[n + 1] == ' ');
  return cli_error (context, "%s", msg);
}
