/* reply.c -- the answer formats of proxmox-rest-server (formatter.rs):
 * success {"data": ...} compact, errors as the plain message text but
 * labelled application/json (docs/pbs-protocol.md §1.4, trap 17), with
 * the HTTP status PBS uses (the datastore reports errno only). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server.h"

void
srv_reply_data (struct srv_reply *r, json_t *value)
{
  json_t *o = json_object ();
  char *text;

  json_object_set_new (o, "data", value ? value : json_null ());
  text = json_dumps (o, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
  json_decref (o);
  srv_reply_free (r);
  r->status = 200;
  r->content_type = SRV_CT_JSON;
  r->body = (uint8_t *) text;
  r->len = text ? strlen (text) : 0;
}

void
srv_reply_error (struct srv_reply *r, int status, const char *fmt, ...)
{
  va_list ap;
  char *text = NULL;
  int n;

  va_start (ap, fmt);
  n = vasprintf (&text, fmt, ap);
  va_end (ap);
  srv_reply_free (r);
  r->status = status ? status : 400;
  r->content_type = SRV_CT_JSON;
  r->body = n < 0 ? NULL : (uint8_t *) text;
  r->len = n < 0 ? 0 : (size_t) n;
}

void
srv_reply_ds_error (struct srv_reply *r, int enoent_status, int enospc_status)
{
  int e = pbs_errno (), st = 400;
  char text[1024];

  if (e == ENOMEM)
    st = 500;
  else if (e == ENOENT)
    st = enoent_status;
  else if (e == ENOSPC)
    st = enospc_status;
  srv_reply_error (r, st, "%s", srv_ds_error_text (text, sizeof text));
}

int
srv_digest_parse (const char *s, uint8_t out[32])
{
  if (!s || !srv_fmt_digest (s))
    return -1;
  return pbs_digest_parse (s, out);
}

void
srv_reply_free (struct srv_reply *r)
{
  free (r->body);
  r->body = NULL;
  r->len = 0;
  r->streamed = false;
}
