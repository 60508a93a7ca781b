/* cli-escape.c -- names from a manifest, a server listing or an image file
 * (backup ids, archive and file names, layer paths, server messages) are
 * untrusted text: printed raw, an ESC sequence would drive the terminal
 * (retitle it, rewrite earlier lines, fake output) and a newline would
 * forge another line.  Text output passes them through here: control
 * characters become \xNN (C0, DEL) or \u00NN (C1, which some terminals
 * obey in UTF-8 too), and a backslash doubles, so the result is
 * unambiguous.  JSON output needs none of this: jansson escapes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* Bytes needed for the escaped form of S (without the NUL); the same walk
 * as cli_escape_into. */
static size_t
escape_into (const char *s, char *out)
{
  const unsigned char *p = (const unsigned char *) s;
  size_t n = 0;

  for (; *p; p++) {
    if (*p < 0x20 || *p == 0x7f) {
      if (out)
        snprintf (out + n, 5, "\\x%02x", *p);
      n += 4;
    }
    else if (*p == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) {
      if (out)
        snprintf (out + n, 7, "\\u00%02x", p[1]);
      n += 6;
      p++;
    }
    else if (*p == '\\') {
      if (out)
        memcpy (out + n, "\\\\", 2);
      n += 2;
    }
    else {
      if (out)
        out[n] = (char) *p;
      n++;
    }
  }
  return n;
}

char *
cli_escape (const char *s)
{
  size_t n;
  char *out;

  if (!s)
    s = "(null)";
  n = escape_into (s, NULL);
  out = malloc (n + 1);
  if (!out)
    return NULL;
  escape_into (s, out);
  out[n] = 0;
  return out;
}

void
cli_fputs_escaped (const char *s, FILE *f)
{
  char *e = cli_escape (s);

  /* Out of memory: better nothing than the raw bytes. */
  fputs (e ? e : "?", f);
  free (e);
}
