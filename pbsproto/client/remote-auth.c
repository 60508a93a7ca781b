/* remote-auth.c -- the authentication headers of a request (§2): an API
 * token, or the ticket of a login (remote-login.c) with its CSRF token
 * for requests that change something. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "remote-internal.h"

char *
pbs__remote_auth_headers (const struct pbs_remote *r, bool is_get)
{
  char *out = NULL, *enc;
  int rc;

  if (r->spec.is_token) {
    enc = pbs__pct_encode (r->secret ? r->secret : "", false);
    if (!enc)
      return NULL;
    rc = asprintf (&out, "Authorization: PBSAPIToken %s:%s\r\n",
                   r->spec.auth_id, enc);
    explicit_bzero (enc, strlen (enc));
    free (enc);
  }
  else if (r->ticket) {
    enc = pbs__pct_encode (r->ticket, false);
    if (!enc)
      return NULL;
    rc = asprintf (&out, "Cookie: PBSAuthCookie=%s\r\n%s%s%s", enc,
                   is_get ? "" : "CSRFPreventionToken: ",
                   is_get ? "" : r->csrf, is_get ? "" : "\r\n");
    explicit_bzero (enc, strlen (enc));
    free (enc);
  }
  else
    rc = asprintf (&out, "%s", "");
  if (rc == -1) {
    pbs__set_error (ENOMEM, "out of memory");
    return NULL;
  }
  return out;
}
