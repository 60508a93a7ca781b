/* remote-repo.c -- the top of the remote backend: opening a repository
 * (options, first login), the snapshot listing (§6.4) and the ops table
 * that makes a PBS server look like the local datastore to repo.c. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "remote-internal.h"

/* ------------------------------------------------- open / close */

static char *
dup_lower (const char *s)
{
  char *d = strdup (s);
  if (d)
    for (char *p = d; *p; p++)
      *p = (char) tolower ((unsigned char) *p);
  return d;
}

static void
remote_close (void *state)
{
  struct pbs_remote *r = state;
  if (!r)
    return;
  pbs__remote_spec_free (&r->spec);
  pbs__proxy_free (&r->proxy);
  if (r->secret) {
    explicit_bzero (r->secret, strlen (r->secret));
    free (r->secret);
  }
  if (r->ticket) {
    explicit_bzero (r->ticket, strlen (r->ticket));
    free (r->ticket);
  }
  if (r->csrf) {
    explicit_bzero (r->csrf, strlen (r->csrf));
    free (r->csrf);
  }
  free (r->fingerprint);
  free (r->ca_file);
  free (r);
}

void *
pbs__remote_open (const char *spec, const struct pbs_repo_opts *opts)
{
  struct pbs_remote *r = calloc (1, sizeof *r);

  if (!r) {
    pbs__set_error (ENOMEM, "out of memory");
    return NULL;
  }
  if (pbs__remote_parse_spec (spec, &r->spec) == -1) {
    free (r);
    return NULL;
  }
  r->cancel_fd = -1;
  if (opts) {
    r->quiet = opts->quiet;
    if (opts->cancel_fd > 0)
      r->cancel_fd = opts->cancel_fd;
    if (pbs__proxy_parse (opts->proxy, &r->proxy) == -1)
      goto err;
    if ((opts->secret && !(r->secret = strdup (opts->secret)))
        || (opts->fingerprint
            && !(r->fingerprint = dup_lower (opts->fingerprint)))
        || (opts->ca_file && !(r->ca_file = strdup (opts->ca_file)))) {
      pbs__set_error (ENOMEM, "out of memory");
      goto err;
    }
  }
  if (!r->secret) {
    pbs__set_error (EACCES, "no %s given for %s",
                    r->spec.is_token ? "API token secret" : "password",
                    r->spec.auth_id);
    goto err;
  }
  /* A ticket now: a wrong password or certificate shows up before any
   * work is done.  Tokens need no round trip (§2.1). */
  if (!r->spec.is_token && pbs__remote_login (r) == -1)
    goto err;
  return r;
err:
  remote_close (r);
  return NULL;
}

/* ------------------------------------------------- snapshots (§6.4) */

static char *
json_strdup (json_t *o, const char *key)
{
  json_t *v = json_object_get (o, key);
  return json_is_string (v) ? strdup (json_string_value (v)) : NULL;
}

static int
snap_cmp (const void *a, const void *b)
{
  const struct pbs_snapshot *x = a, *y = b;
  int c = strcmp (x->type, y->type);
  if (c == 0)
    c = strcmp (x->id, y->id);
  if (c == 0)
    c = (x->time > y->time) - (x->time < y->time);
  return c;
}


static int
fill_snapshot (json_t *e, const char *ns, struct pbs_snapshot *s)
{
  json_t *t = json_object_get (e, "backup-time"), *files, *f, *v;
  size_t i;

  s->ns = strdup (ns);
  s->type = json_strdup (e, "backup-type");
  s->id = json_strdup (e, "backup-id");
  if (!s->ns || !s->type || !s->id || !json_is_integer (t))
    return -1;
  s->time = json_integer_value (t);
  s->owner = json_strdup (e, "owner");
  s->fingerprint = json_strdup (e, "fingerprint");
  s->comment = json_strdup (e, "comment");
  s->protected_ = json_is_true (json_object_get (e, "protected"));
  v = json_object_get (json_object_get (e, "verification"), "state");
  if (json_is_string (v))
    s->verify_state = strdup (json_string_value (v));
  files = json_object_get (e, "files");
  if (json_is_array (files) && json_array_size (files) > 0) {
    s->files = calloc (json_array_size (files), sizeof *s->files);
    if (!s->files)
      return -1;
    json_array_foreach (files, i, f) {
      const char *name = json_string_value (json_object_get (f, "filename"));
      json_t *sz = json_object_get (f, "size");
      if (!name)
        continue;
      /* Finished = the manifest exists (§4.2); unfinished snapshots list
       * their file names without sizes. */
      if (strcmp (name, "index.json.blob") == 0)
        s->finished = true;
      else if (json_is_integer (sz))
        s->size += (uint64_t) json_integer_value (sz);
      s->files[s->nfiles] = strdup (name);
      if (!s->files[s->nfiles])
        return -1;
      s->nfiles++;
    }
  }
  return 0;
}

int
pbs__snapshots_parse (const char *body, size_t len, const char *ns,
                      const char *type, const char *id,
                      struct pbs_snapshot **out, size_t *n)
{
  struct pbs_snapshot *list = NULL;
  json_t *root, *data, *e;
  size_t i, count = 0;
  int rc = -1;

  *out = NULL;
  *n = 0;
  root = json_loadb (body, len, 0, NULL);
  data = json_object_get (root, "data");
  if (!json_is_array (data)) {
    pbs__set_error (EPROTO, "snapshot list: unexpected answer from the server");
    goto out;
  }
  list = calloc (json_array_size (data) + 1, sizeof *list);
  if (!list) {
    pbs__set_error (ENOMEM, "out of memory");
    goto out;
  }
  json_array_foreach (data, i, e) {
    if (fill_snapshot (e, ns, &list[count]) == -1) {
      for (size_t j = 0; j <= count; j++)
        pbs__snapshot_clear (&list[j]);
      free (list);
      pbs__set_error (EPROTO, "snapshot list: bad entry from the server");
      goto out;
    }
    /* The server filters too; this keeps the contract if it did not. */
    if ((type && strcmp (list[count].type, type) != 0)
        || (id && strcmp (list[count].id, id) != 0)) {
      pbs__snapshot_clear (&list[count]);
      continue;
    }
    count++;
  }
  /* The listing comes in directory order (§8b). */
  qsort (list, count, sizeof *list, snap_cmp);
  *out = list;
  *n = count;
  rc = 0;
out:
  json_decref (root);
  return rc;
}

static int
remote_snapshots (void *state, const char *ns, const char *type,
                  const char *id, struct pbs_snapshot **out, size_t *n)
{
  struct pbs_remote *r = state;
  struct pbs_http_resp resp;
  char *query = NULL, *store = NULL, *target = NULL;
  int rc = -1;

  if (!ns)
    ns = "";
  *out = NULL;
  *n = 0;
  if ((*ns && pbs__query_add (&query, "ns", ns) == -1)
      || (type && pbs__query_add (&query, "backup-type", type) == -1)
      || (id && pbs__query_add (&query, "backup-id", id) == -1))
    goto out;
  store = pbs__pct_encode (r->spec.store, false);
  if (!store
      || asprintf (&target, "/api2/json/admin/datastore/%s/snapshots%s%s",
                   store, query ? "?" : "", query ? query : "")
             == -1) {
    target = NULL;
    pbs__set_error (ENOMEM, "out of memory");
    goto out;
  }
  if (pbs__remote_refresh (r) == -1
      || pbs__remote_rest (r, "GET", target, NULL, &resp) == -1)
    goto out;
  rc = pbs__snapshots_parse ((const char *) resp.body, resp.body_len, ns,
                             type, id, out, n);
  pbs__http_resp_free (&resp);
out:
  free (query);
  free (store);
  free (target);
  return rc;
}

static uint64_t
remote_bytes_sent (void *state)
{
  struct pbs_remote *r = state;
  return __atomic_load_n (&r->bytes_sent, __ATOMIC_RELAXED);
}

const struct pbs_backend_ops pbs__remote_ops = {
  .name = "remote",
  .close = remote_close,
  .bytes_sent = remote_bytes_sent,
  .snapshots = remote_snapshots,
  .set_protected = pbs__remote_set_protected,
  .backup_start = pbs__remote_backup_start,
  .previous_time = pbs__remote_previous_time,
  .download_previous = pbs__remote_download_previous,
  .fixed_index = pbs__remote_fixed_index,
  .fixed_chunk = pbs__remote_fixed_chunk,
  .fixed_append = pbs__remote_fixed_append,
  .fixed_close = pbs__remote_fixed_close,
  .blob = pbs__remote_blob,
  .finish = pbs__remote_finish,
  .backup_free = pbs__remote_backup_free,
  .reader_start = pbs__remote_reader_start,
  .reader_download = pbs__remote_reader_download,
  .reader_chunk = pbs__remote_reader_chunk,
  .reader_prefetch = pbs__remote_reader_prefetch,
  .reader_free = pbs__remote_reader_free,
};
