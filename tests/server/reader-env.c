/* reader-env.c -- the reader protocol's HTTP/2 routes (docs/pbs-protocol.md
 * §3.10, src/api2/reader/mod.rs); the rules are in pbs_ds_reader_*. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server.h"

const struct srv_param srv_reader_upgrade_schema[] = {
  { "store", SRV_P_STRING, false, 3, 32, srv_fmt_safe_id },
  { "ns", SRV_P_STRING, true, 0, 256, srv_fmt_ns },
  { "backup-type", SRV_P_STRING, false, 0, 0, srv_fmt_backup_type },
  { "backup-id", SRV_P_STRING, false, 0, 0, srv_fmt_backup_id },
  { "backup-time", SRV_P_INT, false, 1, INT64_MAX, NULL },
  { "debug", SRV_P_BOOL, true, 0, 0, NULL },
  { NULL, 0, false, 0, 0, NULL },
};

static const struct srv_param download_schema[] = {
  /* BACKUP_ARCHIVE_NAME_SCHEMA: the regex only */
  { "file-name", SRV_P_STRING, false, 0, 0, srv_fmt_safe_id },
  { NULL, 0, false, 0, 0, NULL },
};

static const struct srv_param chunk_schema[] = {
  { "digest", SRV_P_STRING, false, 0, 0, srv_fmt_digest },
  { NULL, 0, false, 0, 0, NULL },
};

static const struct srv_param none_schema[] = {
  { NULL, 0, false, 0, 0, NULL },
};

struct reader_env {
  struct srv_env base;
  struct pbs_ds_reader *r;
  unsigned conn_id;
};

static void
octets (struct srv_reply *rep, uint8_t *data, size_t len, bool streamed)
{
  srv_reply_free (rep);
  rep->status = 200;
  rep->content_type = SRV_CT_OCTET;
  rep->body = data;
  rep->len = len;
  rep->streamed = streamed;
}

static void
handle (struct srv_env *env, const struct srv_h2_request *req,
        struct srv_reply *rep)
{
  struct reader_env *e = (struct reader_env *) env;
  const struct srv_param *schema;
  char *errtext = NULL;
  json_t *p;
  uint8_t *data = NULL;
  size_t len = 0;

  if (strcmp (req->method, "GET") != 0)
    schema = NULL;
  else if (!strcmp (req->path, "/download"))
    schema = download_schema;
  else if (!strcmp (req->path, "/chunk"))
    schema = chunk_schema;
  else if (!strcmp (req->path, "/speedtest"))
    schema = none_schema;
  else
    schema = NULL;
  if (schema == NULL) {
    srv_reply_error (rep, 404, "Path '%s' not found.", req->path);
    return;
  }
  /* All reader calls are download handlers: query parameters only. */
  p = srv_query_params (req->query, schema, &errtext);
  if (p == NULL) {
    srv_reply_error (rep, 400, "%s", errtext ? errtext : "out of memory");
    /* H2Service answers parameter errors without a content type */
    rep->content_type = NULL;
    free (errtext);
    return;
  }
  if (schema == download_schema) {
    const char *name = json_string_value (json_object_get (p, "file-name"));
    size_t nl = strlen (name);
    /* A missing index is FixedIndexReader::open's 400, any other missing
     * file create_download_response's 404. */
    bool fidx = nl >= 5 && strcmp (name + nl - 5, ".fidx") == 0;

    if (pbs_ds_reader_download (e->r, name, &data, &len) == -1)
      srv_reply_ds_error (rep, fidx ? 400 : 404, 400);
    else
      octets (rep, data, len, true);
  }
  else if (schema == chunk_schema) {
    uint8_t d[32];

    if (srv_digest_parse (json_string_value (json_object_get (p, "digest")),
                          d) == -1) /* the schema checked it */
      srv_reply_error (rep, 400, "parameter verification failed - "
                       "'digest': value does not match the regex pattern");
    else if (pbs_ds_reader_chunk (e->r, d, &data, &len) == 0)
      octets (rep, data, len, false);
    else if (pbs_errno () == EACCES) /* "download chunk ... not allowed" */
      srv_reply_error (rep, 401, "%s", pbs_errmsg ());
    else
      srv_reply_ds_error (rep, 400, 400);
  }
  else {
    /* 1 MiB of 'A' (reader/mod.rs speedtest) */
    data = malloc (1024 * 1024);
    if (data == NULL)
      srv_reply_error (rep, 500, "out of memory");
    else {
      memset (data, 'A', 1024 * 1024);
      octets (rep, data, 1024 * 1024, false);
    }
  }
  json_decref (p);
}

static size_t
body_limit (struct srv_env *env, const char *method, const char *path)
{
  (void) env;
  (void) method;
  (void) path;
  return SRV_MAX_PARAM_BODY - 1;
}

static void
end (struct srv_env *env)
{
  struct reader_env *e = (struct reader_env *) env;

  pbs_ds_reader_end (e->r);
  srv_log ("conn %u: reader session closed", e->conn_id);
  free (e);
}

struct srv_env *
srv_reader_env_new (struct srv_store *st, const struct srv_auth *auth,
                    json_t *params, unsigned conn_id, struct srv_reply *rep)
{
  const char *ns = json_string_value (json_object_get (params, "ns"));
  struct reader_env *e = calloc (1, sizeof *e);

  if (e == NULL) {
    srv_reply_error (rep, 500, "out of memory");
    return NULL;
  }
  e->r = pbs_ds_reader_start (
      st->ds, auth->auth_id, ns ? ns : "",
      json_string_value (json_object_get (params, "backup-type")),
      json_string_value (json_object_get (params, "backup-id")),
      (int64_t) json_integer_value (json_object_get (params, "backup-time")));
  if (e->r == NULL) { /* ENOENT: "snapshot ... does not exist." */
    srv_reply_ds_error (rep, 400, 400);
    srv_log ("conn %u: reader refused: %s", conn_id, pbs_errmsg ());
    free (e);
    return NULL;
  }
  e->conn_id = conn_id;
  e->base.handle = handle;
  e->base.body_limit = body_limit;
  e->base.end = end;
  return &e->base;
}
