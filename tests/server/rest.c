/* rest.c -- the plain HTTP/1.1 API calls a backup client makes
 * (docs/pbs-protocol.md §2.2, §6.4): ticket login, version, snapshot
 * listing. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "server.h"

/* CreateTicket (proxmox-auth-api src/types.rs): Userid is 3..64
 * characters of PROXMOX_USER_ID_REGEX; the password is optional (a
 * ticket may come in a cookie instead); port is a u16. */
static const struct srv_param ticket_schema[] = {
  { "username", SRV_P_STRING, false, 3, 64, srv_fmt_userid },
  { "password", SRV_P_STRING, true, 0, 0, NULL },
  { "path", SRV_P_STRING, true, 0, 0, NULL },
  { "privs", SRV_P_STRING, true, 0, 0, NULL },
  { "port", SRV_P_INT, true, 0, 65535, NULL },
  { "tfa-challenge", SRV_P_STRING, true, 0, 0, NULL },
  { NULL, 0, false, 0, 0, NULL },
};

static const struct srv_param no_params[] = {
  { NULL, 0, false, 0, 0, NULL },
};

/* list_snapshots (src/api2/admin/datastore.rs); "store" comes from the
 * URI. */
static const struct srv_param snapshots_schema[] = {
  { "store", SRV_P_STRING, false, 3, 32, srv_fmt_safe_id },
  { "ns", SRV_P_STRING, true, 0, 256, srv_fmt_ns },
  { "backup-type", SRV_P_STRING, true, 0, 0, srv_fmt_backup_type },
  { "backup-id", SRV_P_STRING, true, 0, 0, srv_fmt_backup_id },
  { NULL, 0, false, 0, 0, NULL },
};

json_t *
srv_params_or_reply (const struct srv_request *req,
                     const struct srv_param *schema,
                     const char *const *uri_params, struct srv_reply *rep)
{
  char *errtext = NULL;
  json_t *p = srv_sync_params_uri (srv_header (req, "content-type"),
                                   req->body, req->body_len, req->query,
                                   uri_params, schema, &errtext);
  if (p == NULL) {
    srv_reply_error (rep, 400, "%s", errtext ? errtext : "out of memory");
    free (errtext);
  }
  return p;
}

static void
ticket (const struct srv_request *req, struct srv_reply *rep)
{
  json_t *p = srv_params_or_reply (req, ticket_schema, NULL, rep);
  const char *user, *pass;
  char *t = NULL, *csrf = NULL;

  if (p == NULL)
    return;
  user = json_string_value (json_object_get (p, "username"));
  pass = json_string_value (json_object_get (p, "password"));
  /* handle_ticket_creation (proxmox-auth-api src/api/access.rs) */
  if (pass == NULL)
    srv_reply_error (rep, 400, "no password provided");
  else if (srv_login (user, pass, &t, &csrf) == -1) {
    srv_log ("authentication failure; user=%s", user);
    srv_reply_error (rep, 401, "permission check failed.");
  }
  else
    srv_reply_data (rep, json_pack ("{s:s, s:s, s:s}", "username", user,
                                    "ticket", t, "CSRFPreventionToken",
                                    csrf));
  free (t);
  free (csrf);
  json_decref (p);
}

static void
version (const struct srv_request *req, struct srv_reply *rep)
{
  json_t *p = srv_params_or_reply (req, no_params, NULL, rep);

  if (p == NULL)
    return;
  json_decref (p);
  srv_reply_data (rep, json_pack ("{s:s, s:s, s:s}", "version", "3.2.4",
                                  "release", "1", "repoid",
                                  "pbs-test-server"));
}

/* <store>/[ns/a/ns/b/]TYPE/ID/TIME/NAME */
static char *
snapshot_file (const struct srv_store *st, const struct pbs_snapshot *s,
               const char *name)
{
  char t[21], *out = NULL, *nsp = strdup ("");
  const char *p = s->ns ? s->ns : "";

  while (nsp && *p) {
    size_t n = strcspn (p, "/");
    char *x = NULL;
    if (asprintf (&x, "%sns/%.*s/", nsp, (int) n, p) < 0)
      x = NULL;
    free (nsp);
    nsp = x;
    p += n + (p[n] == '/');
  }
  if (nsp == NULL)
    return NULL;
  pbs_time_to_rfc3339 (s->time, t);
  if (asprintf (&out, "%s/%s%s/%s/%s/%s", st->path, nsp, s->type, s->id, t,
                name) < 0)
    out = NULL;
  free (nsp);
  return out;
}

static int
read_file (const char *path, uint8_t **data, size_t *len)
{
  int fd = open (path, O_RDONLY | O_CLOEXEC);
  struct stat sb;
  ssize_t n;

  if (fd == -1)
    return -1;
  if (fstat (fd, &sb) == -1 || sb.st_size > 64 * 1024 * 1024) {
    close (fd);
    return -1;
  }
  *data = malloc ((size_t) sb.st_size + 1);
  n = *data ? read (fd, *data, (size_t) sb.st_size) : -1;
  close (fd);
  if (n != sb.st_size) {
    free (*data);
    return -1;
  }
  *len = (size_t) n;
  return 0;
}

/* One SnapshotListItem (src/api2/admin/datastore.rs). */
static json_t *
snapshot_item (const struct srv_store *st, const struct pbs_snapshot *s)
{
  json_t *item = json_pack ("{s:s, s:s, s:I, s:b}", "backup-type", s->type,
                            "backup-id", s->id, "backup-time",
                            (json_int_t) s->time, "protected",
                            (int) s->protected_);
  json_t *files = json_array ();
  char *mpath = snapshot_file (st, s, PBS_MANIFEST_NAME);
  uint8_t *blob = NULL, *json = NULL;
  size_t blen = 0, jlen = 0, i;
  struct pbs_manifest *m = NULL;
  uint64_t total = 0;

  if (s->owner)
    json_object_set_new (item, "owner", json_string (s->owner));
  if (s->finished && mpath && read_file (mpath, &blob, &blen) == 0
      && pbs_blob_decode (blob, blen, NULL, PBS_CHUNK_MAX_RAW, &json, &jlen)
           == 0)
    m = pbs_manifest_parse ((const char *) json, jlen, NULL,
                            PBS_MANIFEST_NO_VERIFY);
  if (m) {
    struct pbs_manifest_file f;
    char *vs, *notes;
    const char *fp = pbs_manifest_key_fingerprint (m);

    for (i = 0; i < pbs_manifest_file_count (m); i++)
      if (pbs_manifest_file (m, i, &f) == 0) {
        json_array_append_new (files, json_pack ("{s:s, s:s, s:I}",
                                                 "filename", f.filename,
                                                 "crypt-mode", f.crypt_mode,
                                                 "size",
                                                 (json_int_t) f.size));
        total += f.size;
      }
    json_array_append_new (files, json_pack ("{s:s, s:s, s:I}", "filename",
                                             PBS_MANIFEST_NAME, "crypt-mode",
                                             fp ? "sign-only" : "none",
                                             "size", (json_int_t) blen));
    total += blen;
    json_object_set_new (item, "size", json_integer ((json_int_t) total));
    if (fp)
      json_object_set_new (item, "fingerprint", json_string (fp));
    vs = pbs_manifest_get_unprotected (m, "verify_state");
    if (vs) {
      json_t *v = json_loads (vs, 0, NULL);
      if (json_is_object (v))
        json_object_set (item, "verification", v);
      json_decref (v);
      free (vs);
    }
    notes = pbs_manifest_get_unprotected (m, "notes");
    if (notes) {
      json_t *v = json_loads (notes, JSON_DECODE_ANY, NULL);
      if (json_is_string (v)) {
        const char *n = json_string_value (v);
        size_t len = strcspn (n, "\n"); /* Rust's lines() */
        if (len > 0 && n[len - 1] == '\r')
          len--;
        if (*n) /* "".lines().next() is None */
          json_object_set_new (item, "comment", json_stringn (n, len));
      }
      json_decref (v);
      free (notes);
    }
  }
  else
    /* Unfinished (or unreadable): file names only, no sizes. */
    for (i = 0; i < s->nfiles; i++)
      json_array_append_new (files, json_pack ("{s:s}", "filename",
                                               s->files[i]));
  json_object_set_new (item, "files", files);
  pbs_manifest_free (m);
  free (json);
  free (blob);
  free (mpath);
  return item;
}

static void
snapshots (const struct srv_request *req, struct srv_reply *rep,
           const struct srv_auth *auth, const char *store)
{
  const char *uri[] = { "store", store, NULL };
  json_t *p = srv_params_or_reply (req, snapshots_schema, uri, rep), *list;
  struct srv_store *st;
  struct pbs_snapshot *s = NULL;
  size_t n = 0, i;
  const char *ns, *type, *id;

  if (p == NULL)
    return;
  st = srv_find_store (store);
  if (st == NULL) {
    srv_reply_error (rep, 400, "no such datastore '%s'", store);
    goto out;
  }
  ns = json_string_value (json_object_get (p, "ns"));
  type = json_string_value (json_object_get (p, "backup-type"));
  id = json_string_value (json_object_get (p, "backup-id"));
  if (pbs_datastore_snapshots (st->ds, ns, NULL, NULL, &s, &n) == -1) {
    srv_reply_ds_error (rep, 404, 400); /* "namespace not found" */
    goto out;
  }
  list = json_array ();
  for (i = 0; i < n; i++) {
    if ((type && strcmp (type, s[i].type)) || (id && strcmp (id, s[i].id)))
      continue;
    /* Datastore.Backup without Datastore.Audit: only owned groups. */
    if (s[i].owner == NULL || !srv_owner_ok (s[i].owner, auth->auth_id))
      continue;
    json_array_append_new (list, snapshot_item (st, &s[i]));
  }
  pbs_snapshots_free (s, n);
  srv_reply_data (rep, list);
  rep->streamed = true;
out:
  json_decref (p);
}

void
srv_rest (const struct srv_request *req, struct srv_reply *rep)
{
  static const char prefix[] = "/api2/json/admin/datastore/";
  struct srv_auth auth;
  char err[300], store[256];
  const char *path = req->path, *rest;
  size_t l;
  int route = 0;

  /* ApiConfig::handle_request (proxmox-rest-server src/rest.rs): paths
   * outside /api2 are static files (none here); errors returned from
   * there carry no content type. */
  if (strcmp (path, "/api2") != 0 && strncmp (path, "/api2/", 6) != 0) {
    if (strcmp (req->method, "GET") != 0)
      srv_reply_error (rep, 400, "invalid http method for path");
    else
      srv_reply_error (rep, 404, "no such file: '%s'", path + (*path == '/'));
    rep->content_type = NULL;
    return;
  }
  if (strcmp (path, "/api2") == 0) {
    srv_reply_error (rep, 404, "invalid api path '%s'", path);
    rep->content_type = NULL;
    return;
  }
  l = strcspn (path + 6, "/");
  if (!((l == 4 && !strncmp (path + 6, "json", 4))
        || (l == 5 && !strncmp (path + 6, "extjs", 5)))) {
    srv_reply_error (rep, 400, "Unsupported output format '%.*s'.", (int) l,
                     path + 6);
    rep->content_type = NULL;
    return;
  }
  /* XXX the extjs formatter is answered like json */
  if (!strcmp (path, "/api2/json/access/ticket")
      && !strcmp (req->method, "POST")) {
    ticket (req, rep);
    return;
  }
  if (!strcmp (path, "/api2/json/version") && !strcmp (req->method, "GET"))
    route = 1;
  else if (!strncmp (path, prefix, strlen (prefix))) {
    bool get = !strcmp (req->method, "GET"), put = !strcmp (req->method, "PUT");
    rest = path + strlen (prefix);
    l = strcspn (rest, "/");
    if (l > 0 && l < sizeof store) {
      memcpy (store, rest, l);
      store[l] = 0;
      if (get && !strcmp (rest + l, "/snapshots"))
        route = 2;
      else if ((get || put) && !strcmp (rest + l, "/notes"))
        route = 3;
      else if ((get || put) && !strcmp (rest + l, "/protected"))
        route = 4;
    }
  }
  /* Formatted::handle_request: authentication comes first (only World
   * methods such as the ticket login skip it), then "not found".  A 401
   * is returned as an error, i.e. without a content type, and names no
   * reason (only the log does). */
  if (srv_authenticate (req, &auth, err, sizeof err) == -1) {
    srv_log ("authentication failure: %s", err);
    srv_reply_error (rep, 401, "authentication failed");
    rep->content_type = NULL;
    return;
  }
  if (route == 0)
    srv_reply_error (rep, 404, "Path '%s' not found.", path);
  else if (route == 1)
    version (req, rep);
  else if (route == 2)
    snapshots (req, rep, &auth, store);
  else
    srv_admin (req, rep, &auth, store, route == 3 ? "notes" : "protected");
}
