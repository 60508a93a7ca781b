/* cli-errors.c -- one-line errors in the "qcow2pbs: CONTEXT: message"
 * form every subcommand uses. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
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

/* pbsproto's messages about a file start with its path ("key.json: not a
 * PBS key file (...)"), so the path is dropped from the message when it is
 * CONTEXT too.  Control characters (a file name may hold a newline) become
 * '?' so the error stays one line, as in cli_qcow_error. */
int
cli_pbs_error (const char *context)
{
  const char *msg = pbs_errmsg ();
  size_t n = strlen (context), i;
  char *line;

  if (strncmp (msg, context, n) == 0 && (msg[n] == ':' || msg[n] == ' '))
    msg += n + 1 + (msg[n] == ':' && msg[n + 1] == ' ');
  if (asprintf (&line, "%s: %s", context, msg) == -1)
    return cli_error (context, "%s", msg);
  for (i = 0; line[i]; i++)
    if ((unsigned char) line[i] < 0x20 || line[i] == 0x7f)
      line[i] = '?';
  fflush (stdout);
  fprintf (stderr, "qcow2pbs: %s\n", line);
  free (line);
  return 1;
}
