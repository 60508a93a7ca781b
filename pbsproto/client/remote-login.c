/* remote-login.c -- ticket login (§2.2) for users with a password, and its
 * renewal before a ticket runs out; API tokens need neither (§2.1). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "remote-internal.h"

static int64_t
monotonic_s (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  return ts.tv_sec;
}

int
pbs__remote_login (struct pbs_remote *r)
{
  struct pbs_http_resp resp;
  json_t *req, *root = NULL, *data, *ticket, *csrf;
  char *body;
  int rc = -1;

  /* A renewal logs in afresh with the password: no stale cookie. */
  if (r->ticket) {
    explicit_bzero (r->ticket, strlen (r->ticket));
    free (r->ticket);
    r->ticket = NULL;
  }
  if (r->csrf) {
    explicit_bzero (r->csrf, strlen (r->csrf));
    free (r->csrf);
    r->csrf = NULL;
  }
  req = json_pack ("{s:s, s:s}", "username", r->spec.auth_id, "password",
                   r->secret);
  body = req ? json_dumps (req, JSON_COMPACT) : NULL;
  json_decref (req);
  if (!body) {
    pbs__set_error (ENOMEM, "out of memory");
    return -1;
  }
  rc = pbs__remote_rest (r, "POST", "/api2/json/access/ticket", body, &resp);
  explicit_bzero (body, strlen (body));
  free (body);
  if (rc == -1) {
    if (pbs_http_status () == 401) {
      static const char prefix[] = "/api2/json/access/ticket: ";
      const char *m = pbs_errmsg ();
      char msg[400];
      if (strncmp (m, prefix, sizeof prefix - 1) == 0)
        m += sizeof prefix - 1;
      snprintf (msg, sizeof msg, "%s", m);
      pbs__set_http_error (401, EACCES, "login as %s failed: %s",
                           r->spec.auth_id, msg);
    }
    return -1;
  }
  rc = -1;
  root = json_loadb ((const char *) resp.body, resp.body_len, 0, NULL);
  data = json_object_get (root, "data");
  ticket = json_object_get (data, "ticket");
  csrf = json_object_get (data, "CSRFPreventionToken");
  if (!json_is_string (ticket) || !json_is_string (csrf)) {
    pbs__set_error (EPROTO, "login as %s: unexpected answer from the server",
                    r->spec.auth_id);
    goto out;
  }
  r->ticket = strdup (json_string_value (ticket));
  r->csrf = strdup (json_string_value (csrf));
  if (!r->ticket || !r->csrf) {
    pbs__set_error (ENOMEM, "out of memory");
    goto out;
  }
  r->ticket_time = monotonic_s ();
  rc = 0;
out:
  json_decref (root);
  pbs__http_resp_free (&resp);
  return rc;
}

int
pbs__remote_refresh (struct pbs_remote *r)
{
  if (r->spec.is_token || monotonic_s () - r->ticket_time < 3600)
    return 0;
  return pbs__remote_login (r);
}
