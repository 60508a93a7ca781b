/* remote-errors.c -- the error of a failed HTTP answer, as the user
 * should read it (§1.6). */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "remote-internal.h"

void
pbs__remote_http_error (const char *what, int status, const char *body,
                        size_t len)
{
  char msg[400];
  size_t n = 0;
  int errnum;

  /* PBS error bodies are the plain message (§1.6, trap 17); a JSON body
   * can come from a proxy in between.  Keep one line. */
  if (body) {
    while (len > 0 && isspace ((unsigned char) *body)) {
      body++;
      len--;
    }
    while (n < len && n < sizeof msg - 1 && body[n] != '\n'
           && body[n] != '\r')
      n++;
    memcpy (msg, body, n);
  }
  while (n > 0 && isspace ((unsigned char) msg[n - 1]))
    n--;
  msg[n] = 0;
  for (size_t i = 0; i < n; i++)
    if (iscntrl ((unsigned char) msg[i]))
      msg[i] = '?';
  if (status == 401 || status == 403)
    errnum = EACCES;
  else if (status == 404)
    errnum = ENOENT;
  else if (status >= 500)
    errnum = EIO;
  else
    errnum = EINVAL;
  if (!n)
    snprintf (msg, sizeof msg, "HTTP status %d", status);
  if (status == 401 && n)
    pbs__set_http_error (status, errnum, "%s%s%s (HTTP 401)",
                         what ? what : "", what ? ": " : "", msg);
  else
    pbs__set_http_error (status, errnum, "%s%s%s", what ? what : "",
                         what ? ": " : "", msg);
}

void
pbs__remote_explain_401 (const struct pbs_remote *r)
{
  char msg[400];

  if (pbs_http_status () != 401)
    return;
  snprintf (msg, sizeof msg, "%s", pbs_errmsg ());
  pbs__set_http_error (401, EACCES,
                       "%s; check %s %s and its %s, and whether it has "
                       "expired or been disabled",
                       msg, r->spec.is_token ? "the API token" : "the user",
                       r->spec.auth_id,
                       r->spec.is_token ? "secret" : "password");
}
