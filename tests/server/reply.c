/* reply.c -- the answer formats of proxmox-rest-server (formatter.rs):
 * success {"data": ...} compact, errors as the plain message text but
 * labelled application/json (docs/pbs-protocol.md §1.4, trap 17). */
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
srv_reply_pbs_error (struct srv_reply *r)
{
  int st = pbs_http_status ();

  srv_reply_error (r, st >= 400 ? st : 400, "%s", pbs_errmsg ());
}

void
srv_reply_free (struct srv_reply *r)
{
  free (r->body);
  r->body = NULL;
  r->len = 0;
  r->streamed = false;
}
