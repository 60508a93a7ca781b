/* backup-env.c -- the backup protocol's HTTP/2 routes (docs/pbs-protocol.md
 * §3, src/api2/backup/mod.rs): parameter schemas and handler kinds here, the
 * value rules in pbs_ds_backup_*. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server.h"

#define MAX_CHUNK PBS_CHUNK_MAX_RAW

const struct srv_param srv_backup_upgrade_schema[] = {
  { "store", SRV_P_STRING, false, 3, 32, srv_fmt_safe_id },
  { "ns", SRV_P_STRING, true, 0, 256, srv_fmt_ns },
  { "backup-type", SRV_P_STRING, false, 0, 0, srv_fmt_backup_type },
  /* BACKUP_ID_SCHEMA: the regex only, no length limits */
  { "backup-id", SRV_P_STRING, false, 0, 0, srv_fmt_backup_id },
  { "backup-time", SRV_P_INT, false, 1, INT64_MAX, NULL },
  { "debug", SRV_P_BOOL, true, 0, 0, NULL },
  { "benchmark", SRV_P_BOOL, true, 0, 0, NULL },
  { NULL, 0, false, 0, 0, NULL },
};

static const struct srv_param none_schema[] = {
  { NULL, 0, false, 0, 0, NULL },
};

/* BACKUP_ARCHIVE_NAME_SCHEMA: a safe id (the regex only, no length
 * limits; pbs-api-types src/datastore.rs). */
static const struct srv_param previous_schema[] = {
  { "archive-name", SRV_P_STRING, false, 0, 0, srv_fmt_safe_id },
  { NULL, 0, false, 0, 0, NULL },
};

static const struct srv_param fixed_index_schema[] = {
  { "archive-name", SRV_P_STRING, false, 0, 0, srv_fmt_safe_id },
  { "size", SRV_P_INT, false, 1, INT64_MAX, NULL },
  { "reuse-csum", SRV_P_STRING, true, 0, 0, NULL },
  { NULL, 0, false, 0, 0, NULL },
};

static const struct srv_param fixed_append_schema[] = {
  { "wid", SRV_P_INT, false, 1, 256, NULL },
  { "digest-list", SRV_P_DIGEST_LIST, false, 0, 0, srv_fmt_digest },
  { "offset-list", SRV_P_INT_LIST, false, 0, INT64_MAX, NULL },
  { NULL, 0, false, 0, 0, NULL },
};

static const struct srv_param fixed_chunk_schema[] = {
  { "wid", SRV_P_INT, false, 1, 256, NULL },
  { "digest", SRV_P_STRING, false, 0, 0, srv_fmt_digest },
  { "size", SRV_P_INT, false, 1, MAX_CHUNK, NULL },
  /* DataBlobHeader + 1 .. 16 MiB + EncryptedDataBlobHeader */
  { "encoded-size", SRV_P_INT, false, 13, PBS_BLOB_MAX_ENCODED, NULL },
  { NULL, 0, false, 0, 0, NULL },
};

static const struct srv_param fixed_close_schema[] = {
  { "wid", SRV_P_INT, false, 1, 256, NULL },
  { "chunk-count", SRV_P_INT, false, 0, INT64_MAX, NULL },
  { "size", SRV_P_INT, false, 0, INT64_MAX, NULL },
  { "csum", SRV_P_STRING, false, 0, 0, NULL },
  { NULL, 0, false, 0, 0, NULL },
};

static const struct srv_param blob_schema[] = {
  { "file-name", SRV_P_STRING, false, 0, 0, srv_fmt_safe_id },
  { "encoded-size", SRV_P_INT, false, 12, PBS_BLOB_MAX_ENCODED, NULL },
  { NULL, 0, false, 0, 0, NULL },
};

struct backup_env {
  struct srv_env base;
  struct pbs_ds_backup *b;
  unsigned conn_id;
  bool finished;
};

enum kind {
  SYNC,   /* JSON body, or form body + query */
  UPLOAD, /* query only; the body is data */
};

struct route {
  const char *method, *path;
  enum kind kind;
  const struct srv_param *schema;
  void (*fn) (struct backup_env *e, json_t *p,
              const struct srv_h2_request *req, struct srv_reply *rep);
};

static int64_t
iparam (json_t *p, const char *k)
{
  return (int64_t) json_integer_value (json_object_get (p, k));
}

static const char *
sparam (json_t *p, const char *k)
{
  return json_string_value (json_object_get (p, k));
}

static void
previous_backup_time (struct backup_env *e, json_t *p,
                      const struct srv_h2_request *req, struct srv_reply *rep)
{
  int64_t t;

  (void) p;
  (void) req;
  if (pbs_ds_backup_previous_time (e->b, &t) == -1)
    srv_reply_ds_error (rep, 400, 400);
  else
    srv_reply_data (rep, t < 0 ? NULL : json_integer ((json_int_t) t));
}

static void
previous (struct backup_env *e, json_t *p, const struct srv_h2_request *req,
          struct srv_reply *rep)
{
  const char *name = sparam (p, "archive-name");
  size_t nl = strlen (name), len = 0;
  uint8_t *data = NULL;
  int64_t t = -1;
  bool blob;

  (void) req;
  /* A missing blob of the base is create_download_response's 404; a
   * missing base ("no valid previous backup") and a missing index
   * (FixedIndexReader::open) are 400. */
  blob = nl >= 5 && strcmp (name + nl - 5, ".blob") == 0
         && pbs_ds_backup_previous_time (e->b, &t) == 0 && t >= 0;
  if (pbs_ds_backup_previous (e->b, name, &data, &len) == -1) {
    srv_reply_ds_error (rep, blob ? 404 : 400, 400);
    return;
  }
  srv_reply_free (rep);
  rep->status = 200;
  rep->content_type = SRV_CT_OCTET;
  rep->body = data;
  rep->len = len;
  rep->streamed = true; /* no content-length (§8b) */
}

static void
fixed_index (struct backup_env *e, json_t *p,
             const struct srv_h2_request *req, struct srv_reply *rep)
{
  const char *name = sparam (p, "archive-name"), *reuse = sparam (p, "reuse-csum");
  const struct pbs_ds_error_context *c;
  uint8_t csum[32];
  int wid;

  (void) req;
  /* PBS compares reuse-csum as a string with the lower-case hex of the
   * base's checksum (schema: any string): anything but lower-case hex
   * never matches.  Such a string gets a checksum that is not the
   * base's, so the session fails at the same check with the same text. */
  if (reuse && srv_digest_parse (reuse, csum) == -1) {
    if (pbs_ds_backup_base_csum (e->b, name, csum) == 0)
      csum[0] ^= 1;
    else
      memset (csum, 0, sizeof csum);
  }
  wid = pbs_ds_backup_fixed_index (e->b, name, (uint64_t) iparam (p, "size"),
                                   reuse ? csum : NULL);
  c = wid == -1 ? pbs_ds_error_context () : NULL;
  if (c && c->failure == PBS_DS_FAIL_REUSE_CSUM)
    srv_reply_error (rep, 400,
                     "expected csum (%s) doesn't match last backup's (%s), "
                     "cannot do incremental backup",
                     reuse, c->detail);
  else if (wid == -1) /* a failed create or write of the index: 400 */
    srv_reply_ds_error (rep, 400, 400);
  else
    srv_reply_data (rep, json_integer (wid));
}

static void
fixed_append (struct backup_env *e, json_t *p,
              const struct srv_h2_request *req, struct srv_reply *rep)
{
  json_t *dl = json_object_get (p, "digest-list");
  json_t *ol = json_object_get (p, "offset-list");
  size_t nd = json_array_size (dl), no = json_array_size (ol), i;
  uint8_t (*digests)[32];
  uint64_t *offsets;

  (void) req;
  /* The schema checked each digest and offset; the handler checks the
   * lengths (backup/mod.rs dynamic_append / fixed_append). */
  if (no != nd) {
    srv_reply_error (rep, 400, "offset list has wrong length (%zu != %zu)",
                     no, nd);
    return;
  }
  digests = calloc (nd + 1, sizeof *digests);
  offsets = calloc (no + 1, sizeof *offsets);
  if (digests == NULL || offsets == NULL) {
    srv_reply_error (rep, 500, "out of memory");
    goto out;
  }
  for (i = 0; i < nd; i++)
    if (srv_digest_parse (json_string_value (json_array_get (dl, i)),
                          digests[i]) == -1) {
      srv_reply_error (rep, 400, "parameter verification failed - "
                       "'digest-list': [%zu]: value does not match the "
                       "regex pattern", i);
      goto out;
    }
  for (i = 0; i < no; i++)
    offsets[i] = (uint64_t) json_integer_value (json_array_get (ol, i));
  if (pbs_ds_backup_fixed_append (e->b, (int) iparam (p, "wid"), nd,
                                  (const uint8_t (*)[32]) digests, offsets)
      == -1)
    srv_reply_ds_error (rep, 400, 400);
  else
    srv_reply_data (rep, NULL);
out:
  free (digests);
  free (offsets);
}

static void
fixed_chunk (struct backup_env *e, json_t *p,
             const struct srv_h2_request *req, struct srv_reply *rep)
{
  uint64_t enc = (uint64_t) iparam (p, "encoded-size");
  const char *digest = sparam (p, "digest");
  uint8_t d[32];

  /* upload_chunk.rs checks the length while reading the body. */
  if (req->body_len > enc) {
    srv_reply_error (rep, 400, "uploaded chunk is larger than announced.");
    return;
  }
  if (req->body_len != enc) {
    srv_reply_error (rep, 400, "uploaded chunk has unexpected size.");
    return;
  }
  if (srv_digest_parse (digest, d) == -1) { /* the schema checked it */
    srv_reply_error (rep, 400, "parameter verification failed - 'digest': "
                     "value does not match the regex pattern");
    return;
  }
  if (pbs_ds_backup_fixed_chunk (e->b, (int) iparam (p, "wid"), d,
                                 (uint64_t) iparam (p, "size"), enc,
                                 req->body, req->body_len) == -1)
    srv_reply_ds_error (rep, 400, 500); /* insert_chunk */
  else
    srv_reply_data (rep, json_string (digest));
}

/* "csum" is any-case hex of exactly 32 bytes: <[u8; 32]>::from_hex,
 * with the hex crate's FromHexError texts (odd length first, then the
 * length, then the first bad character).  0, or -1 with the error
 * answered. */
static int
parse_csum (const char *hex, uint8_t csum[32], struct srv_reply *rep)
{
  size_t i, n = hex ? strlen (hex) : 0;

  if (n % 2 != 0) {
    srv_reply_error (rep, 400, "Odd number of digits");
    return -1;
  }
  if (n != 64) {
    srv_reply_error (rep, 400, "Invalid string length");
    return -1;
  }
  for (i = 0; i < 64; i++)
    if (!isxdigit ((unsigned char) hex[i])) {
      unsigned char c = (unsigned char) hex[i];
      /* {:?} of the byte as a char: printable ASCII as is, a quote and a
       * backslash escaped, anything else as \u{..} (approximately). */
      if (c == '\'' || c == '\\')
        srv_reply_error (rep, 400, "Invalid character '\\%c' at position %zu",
                         c, i);
      else if (c >= 0x20 && c < 0x7f)
        srv_reply_error (rep, 400, "Invalid character '%c' at position %zu",
                         c, i);
      else
        srv_reply_error (rep, 400,
                         "Invalid character '\\u{%x}' at position %zu", c, i);
      return -1;
    }
  if (pbs_digest_parse (hex, csum) == -1) {
    srv_reply_error (rep, 400, "Invalid string length");
    return -1;
  }
  return 0;
}

static void
fixed_close (struct backup_env *e, json_t *p,
             const struct srv_h2_request *req, struct srv_reply *rep)
{
  uint8_t csum[32];

  (void) req;
  if (parse_csum (sparam (p, "csum"), csum, rep) == -1)
    return;
  if (pbs_ds_backup_fixed_close (e->b, (int) iparam (p, "wid"),
                                 (uint64_t) iparam (p, "chunk-count"),
                                 (uint64_t) iparam (p, "size"), csum) == -1)
    srv_reply_ds_error (rep, 400, 400);
  else
    srv_reply_data (rep, NULL);
}

static void
blob (struct backup_env *e, json_t *p, const struct srv_h2_request *req,
      struct srv_reply *rep)
{
  uint64_t enc = (uint64_t) iparam (p, "encoded-size");
  const char *name = sparam (p, "file-name");
  size_t nl = strlen (name);

  /* upload_chunk.rs upload_blob checks the extension before it reads the
   * body (pbs_ds_backup_blob has the text). */
  if ((nl < 5 || strcmp (name + nl - 5, ".blob") != 0)
      && pbs_ds_backup_blob (e->b, name, enc, req->body, req->body_len)
           == -1) {
    srv_reply_ds_error (rep, 400, 500);
    return;
  }
  if (req->body_len != enc || req->body_too_large) {
    srv_reply_error (rep, 400, "got blob with unexpected length (%llu != %zu)",
                     (unsigned long long) enc, req->body_len);
    return;
  }
  if (pbs_ds_backup_blob (e->b, sparam (p, "file-name"), enc, req->body,
                          req->body_len) == -1)
    srv_reply_ds_error (rep, 400, 500);
  else
    srv_reply_data (rep, NULL);
}

static void
finish (struct backup_env *e, json_t *p, const struct srv_h2_request *req,
        struct srv_reply *rep)
{
  (void) p;
  (void) req;
  if (pbs_ds_backup_finish (e->b) == -1)
    srv_reply_ds_error (rep, 400, 500);
  else {
    e->finished = true;
    srv_log ("conn %u: backup finished successfully", e->conn_id);
    srv_reply_data (rep, NULL);
  }
}

static void
speedtest (struct backup_env *e, json_t *p, const struct srv_h2_request *req,
           struct srv_reply *rep)
{
  (void) p;
  (void) req;
  srv_log ("conn %u: speedtest upload", e->conn_id);
  srv_reply_data (rep, NULL);
}

static const struct route routes[] = {
  { "GET", "/previous_backup_time", SYNC, none_schema, previous_backup_time },
  { "GET", "/previous", UPLOAD, previous_schema, previous },
  { "POST", "/fixed_index", SYNC, fixed_index_schema, fixed_index },
  { "PUT", "/fixed_index", SYNC, fixed_append_schema, fixed_append },
  { "POST", "/fixed_chunk", UPLOAD, fixed_chunk_schema, fixed_chunk },
  { "POST", "/fixed_close", SYNC, fixed_close_schema, fixed_close },
  { "POST", "/blob", UPLOAD, blob_schema, blob },
  { "POST", "/finish", SYNC, none_schema, finish },
  { "POST", "/speedtest", UPLOAD, none_schema, speedtest },
  { NULL, NULL, SYNC, NULL, NULL },
};

static const struct route *
find_route (const char *method, const char *path)
{
  const struct route *r;

  for (r = routes; r->method; r++)
    if (!strcmp (r->method, method) && !strcmp (r->path, path))
      return r;
  return NULL;
}

static bool
is_dynamic (const char *path)
{
  return !strcmp (path, "/dynamic_index") || !strcmp (path, "/dynamic_chunk")
         || !strcmp (path, "/dynamic_close");
}

static void
handle (struct srv_env *env, const struct srv_h2_request *req,
        struct srv_reply *rep)
{
  struct backup_env *e = (struct backup_env *) env;
  const struct route *r = find_route (req->method, req->path);
  char *errtext = NULL;
  json_t *p;

  if (r == NULL) {
    if (is_dynamic (req->path))
      srv_reply_error (rep, 501, "pbs-test-server: dynamic indexes (%s) are "
                       "not implemented", req->path);
    else
      srv_reply_error (rep, 404, "Path '%s' not found.", req->path);
    return;
  }
  if (r->kind == SYNC) {
    if (req->body_too_large) {
      srv_reply_error (rep, 400, "Request body too large");
      /* Parameter errors leave handle_api_request through '?', and
       * H2Service answers those without a content type (h2service.rs). */
      rep->content_type = NULL;
      return;
    }
    p = srv_sync_params (req->content_type, req->body, req->body_len,
                         req->query, r->schema, &errtext);
  }
  else
    p = srv_query_params (req->query, r->schema, &errtext);
  if (p == NULL) {
    srv_reply_error (rep, 400, "%s", errtext ? errtext : "out of memory");
    rep->content_type = NULL; /* as above */
    free (errtext);
    return;
  }
  r->fn (e, p, req, rep);
  json_decref (p);
}

static size_t
body_limit (struct srv_env *env, const char *method, const char *path)
{
  const struct route *r = find_route (method, path);

  (void) env;
  if (r && r->fn == speedtest)
    return 0; /* counted, not kept */
  if (r && r->kind == UPLOAD)
    /* one byte more than any valid upload, to tell "too large" */
    return PBS_BLOB_MAX_ENCODED + 1;
  return SRV_MAX_PARAM_BODY - 1;
}

static void
end (struct srv_env *env)
{
  struct backup_env *e = (struct backup_env *) env;

  if (!e->finished)
    srv_log ("conn %u: backup ended but finished flag is not set.",
             e->conn_id);
  pbs_ds_backup_end (e->b);
  /* Logged once the directory is gone, so that tests can wait for it. */
  if (!e->finished)
    srv_log ("conn %u: removing unfinished backup", e->conn_id);
  srv_log ("conn %u: backup session closed", e->conn_id);
  free (e);
}

struct srv_env *
srv_backup_env_new (struct srv_store *st, const struct srv_auth *auth,
                    json_t *params, unsigned conn_id, struct srv_reply *rep)
{
  const char *type = sparam (params, "backup-type");
  const char *id = sparam (params, "backup-id");
  const char *ns = sparam (params, "ns");
  json_t *bench = json_object_get (params, "benchmark");
  bool benchmark = json_is_true (bench);
  struct backup_env *e;

  /* §1.3 step 7 */
  if (!strcmp (type, "host") && !strcmp (id, "benchmark")) {
    if (!benchmark) {
      srv_reply_error (rep, 400,
                       "unable to run benchmark without --benchmark flags");
      return NULL;
    }
  }
  else if (benchmark) {
    srv_reply_error (rep, 400,
                     "benchmark flags is only allowed on 'host/benchmark'");
    return NULL;
  }
  e = calloc (1, sizeof *e);
  if (e == NULL) {
    srv_reply_error (rep, 500, "out of memory");
    return NULL;
  }
  /* The schema allows any i64; no snapshot name exists past 9999 (PBS
   * fails formatting the time). */
  if (iparam (params, "backup-time") > PBS_TIME_MAX) {
    srv_reply_error (rep, 400, "parameter verification failed - "
                     "'backup-time': %lld is after 9999-12-31T23:59:59Z",
                     (long long) iparam (params, "backup-time"));
    free (e);
    return NULL;
  }
  e->b = pbs_ds_backup_start (st->ds, auth->auth_id, ns ? ns : "", type, id,
                              iparam (params, "backup-time"));
  if (e->b == NULL) { /* ENOENT: "namespace not found" */
    srv_reply_ds_error (rep, 404, 500);
    srv_log ("conn %u: backup refused: %s", conn_id, pbs_errmsg ());
    free (e);
    return NULL;
  }
  e->conn_id = conn_id;
  e->base.handle = handle;
  e->base.body_limit = body_limit;
  e->base.end = end;
  return &e->base;
}
