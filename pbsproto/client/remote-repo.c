/* remote-repo.c -- the remote repository backend: repository strings
 * (docs/pbs-protocol.md §2.3), authentication (§2), the snapshot listing
 * (§6.4) and the ops table that makes a PBS server look like the local
 * datastore to repo.c. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "remote-internal.h"

/* ------------------------------------------------- repository strings */

static bool
is_safe_id (const char *s, size_t len)
{
  /* PROXMOX_SAFE_ID_REGEX_STR: [A-Za-z0-9_][A-Za-z0-9._\-]* */
  if (len == 0 || !(isalnum ((unsigned char) s[0]) || s[0] == '_'))
    return false;
  for (size_t i = 1; i < len; i++)
    if (!(isalnum ((unsigned char) s[i]) || strchr ("._-", s[i])))
      return false;
  return true;
}

static bool
is_dns_name (const char *s, size_t len)
{
  /* labels [a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])? joined by '.'; an IPv4
   * address is one of these too. */
  size_t i = 0;
  if (len == 0)
    return false;
  while (i < len) {
    size_t start = i;
    while (i < len && s[i] != '.') {
      if (!(isalnum ((unsigned char) s[i]) || s[i] == '-'))
        return false;
      i++;
    }
    if (i == start || s[start] == '-' || s[i - 1] == '-')
      return false;
    if (i < len) {
      i++; /* '.' */
      if (i == len)
        return false;
    }
  }
  return true;
}

static bool
is_ipv6 (const char *s, size_t len)
{
  if (len == 0 || len > 45)
    return false;
  for (size_t i = 0; i < len; i++)
    if (!(isxdigit ((unsigned char) s[i]) || s[i] == ':' || s[i] == '.'))
      return false;
  return memchr (s, ':', len) != NULL;
}

/* user@realm or user@realm!token (USER_ID_REGEX_STR, APITOKEN_ID). */
static bool
is_auth_id (const char *s, size_t len, bool *token)
{
  const char *at = memchr (s, '@', len), *bang;
  size_t realm_len;

  if (!at || at == s)
    return false;
  for (const char *p = s; p < at; p++)
    if (isspace ((unsigned char) *p) || iscntrl ((unsigned char) *p)
        || *p == ':' || *p == '/')
      return false;
  bang = memchr (at + 1, '!', len - (size_t) (at + 1 - s));
  realm_len = (size_t) ((bang ? bang : s + len) - (at + 1));
  if (!is_safe_id (at + 1, realm_len))
    return false;
  *token = bang != NULL;
  if (bang && !is_safe_id (bang + 1, (size_t) (s + len - bang - 1)))
    return false;
  return true;
}

/* [auth@]host with host a DNS name, IPv4 or [IPv6]. */
static bool
parse_auth_host (const char *s, size_t len, struct pbs_remote_spec *out)
{
  const char *at = NULL, *h;
  size_t hl;

  for (size_t i = 0; i < len; i++)
    if (s[i] == '@')
      at = s + i;
  h = at ? at + 1 : s;
  hl = len - (size_t) (h - s);
  if (at && !is_auth_id (s, (size_t) (at - s), &out->is_token))
    return false;
  if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
    if (!is_ipv6 (h + 1, hl - 2))
      return false;
    out->host = strndup (h + 1, hl - 2);
  }
  else {
    if (!is_dns_name (h, hl))
      return false;
    out->host = strndup (h, hl);
  }
  if (at)
    out->auth_id = strndup (s, (size_t) (at - s));
  return true;
}

char *
pbs__authority (const char *host, unsigned port)
{
  bool v6 = strchr (host, ':') != NULL;
  char *a = NULL;

  if (asprintf (&a, "%s%s%s:%u", v6 ? "[" : "", host, v6 ? "]" : "", port)
      == -1) {
    pbs__set_error (ENOMEM, "out of memory");
    return NULL;
  }
  return a;
}

int
pbs__remote_parse_spec (const char *spec, struct pbs_remote_spec *out)
{
  const char *colon = strrchr (spec, ':');
  const char *store = colon ? colon + 1 : spec;
  size_t rl = colon ? (size_t) (colon - spec) : 0;

  memset (out, 0, sizeof *out);
  out->port = PBS_REMOTE_DEFAULT_PORT;
  if (strlen (spec) > 256 || !is_safe_id (store, strlen (store)))
    goto bad;
  if (colon) {
    /* The regex engine (leftmost-first) tries "[auth@]host" before
     * "[auth@]host:port" and before a bare port, so "8007:store" names
     * host "8007", as BACKUP_REPO_URL_REGEX does. */
    if (!parse_auth_host (spec, rl, out)) {
      const char *pc = NULL;
      char *end;
      unsigned long port;

      pbs__remote_spec_free (out);
      out->port = PBS_REMOTE_DEFAULT_PORT;
      for (size_t i = 0; i < rl; i++)
        if (spec[i] == ':')
          pc = spec + i;
      if (!pc || pc + 1 == spec + rl || spec + rl - (pc + 1) > 5)
        goto bad;
      for (const char *p = pc + 1; p < spec + rl; p++)
        if (!isdigit ((unsigned char) *p))
          goto bad;
      errno = 0;
      port = strtoul (pc + 1, &end, 10);
      if (port == 0 || port > 65535)
        goto bad;
      out->port = (unsigned) port;
      if (pc > spec && !parse_auth_host (spec, (size_t) (pc - spec), out))
        goto bad;
    }
  }
  if (!out->host)
    out->host = strdup ("localhost");
  if (!out->auth_id)
    out->auth_id = strdup ("root@pam");
  out->store = strdup (store);
  if (out->host)
    out->authority = pbs__authority (out->host, out->port);
  if (!out->host || !out->auth_id || !out->store || !out->authority) {
    pbs__remote_spec_free (out);
    pbs__set_error (ENOMEM, "out of memory");
    return -1;
  }
  return 0;
bad:
  pbs__remote_spec_free (out);
  pbs__set_error (EINVAL, "unable to parse repository url '%s'", spec);
  return -1;
}

void
pbs__remote_spec_free (struct pbs_remote_spec *s)
{
  free (s->auth_id);
  free (s->host);
  free (s->authority);
  free (s->store);
  memset (s, 0, sizeof *s);
}

/* ------------------------------------------------- encoding, errors */

/* Percent-encode everything but unreserved characters: a superset of
 * PBS's DEFAULT_ENCODE_SET, which the server decodes all the same. */
static char *
pct_encode (const char *s, bool form)
{
  size_t n = strlen (s);
  char *out = malloc (3 * n + 1), *p = out;
  if (!out) {
    pbs__set_error (ENOMEM, "out of memory");
    return NULL;
  }
  for (; *s; s++) {
    unsigned char c = (unsigned char) *s;
    if (isalnum (c) || c == '-' || c == '.' || c == '_' || c == '~')
      *p++ = (char) c;
    else if (form && c == ' ')
      *p++ = '+';
    else {
      snprintf (p, 4, "%%%02X", c);
      p += 3;
    }
  }
  *p = 0;
  return out;
}

int
pbs__query_add (char **buf, const char *key, const char *value)
{
  char *v = pct_encode (value, true), *nb;
  int rc;

  if (!v)
    return -1;
  rc = asprintf (&nb, "%s%s%s=%s", *buf ? *buf : "", *buf && **buf ? "&" : "",
                 key, v);
  free (v);
  if (rc == -1) {
    pbs__set_error (ENOMEM, "out of memory");
    return -1;
  }
  free (*buf);
  *buf = nb;
  return 0;
}

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

/* ------------------------------------------------- authentication */

char *
pbs__remote_auth_headers (struct pbs_remote *r, bool is_get)
{
  char *out = NULL, *enc;
  int rc;

  if (r->spec.is_token) {
    enc = pct_encode (r->secret ? r->secret : "", false);
    if (!enc)
      return NULL;
    rc = asprintf (&out, "Authorization: PBSAPIToken %s:%s\r\n",
                   r->spec.auth_id, enc);
    explicit_bzero (enc, strlen (enc));
    free (enc);
  }
  else if (r->ticket) {
    enc = pct_encode (r->ticket, false);
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

static int64_t
monotonic_s (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  return ts.tv_sec;
}

/* POST /api2/json/access/ticket (§2.2). */
static int
ticket_login (struct pbs_remote *r)
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
  return ticket_login (r);
}

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
  if (pbs__proxy_from_env (&r->proxy) == -1)
    goto err;
  if (opts) {
    r->quiet = opts->quiet;
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
  if (!r->spec.is_token && ticket_login (r) == -1)
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

static void
snap_clear (struct pbs_snapshot *s)
{
  free (s->ns);
  free (s->type);
  free (s->id);
  for (size_t i = 0; i < s->nfiles; i++)
    free (s->files[i]);
  free (s->files);
  free (s->owner);
  free (s->verify_state);
  free (s->fingerprint);
  free (s->comment);
  memset (s, 0, sizeof *s);
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

static int
remote_snapshots (void *state, const char *ns, const char *type,
                  const char *id, struct pbs_snapshot **out, size_t *n)
{
  struct pbs_remote *r = state;
  struct pbs_http_resp resp;
  struct pbs_snapshot *list = NULL;
  char *query = NULL, *store = NULL, *target = NULL;
  json_t *root = NULL, *data, *e;
  size_t i, count = 0;
  int rc = -1;

  if (!ns)
    ns = "";
  *out = NULL;
  *n = 0;
  if ((*ns && pbs__query_add (&query, "ns", ns) == -1)
      || (type && pbs__query_add (&query, "backup-type", type) == -1)
      || (id && pbs__query_add (&query, "backup-id", id) == -1))
    goto out;
  store = pct_encode (r->spec.store, false);
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
  root = json_loadb ((const char *) resp.body, resp.body_len, 0, NULL);
  pbs__http_resp_free (&resp);
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
        snap_clear (&list[j]);
      free (list);
      pbs__set_error (EPROTO, "snapshot list: bad entry from the server");
      goto out;
    }
    /* The server filters too; this keeps the contract if it did not. */
    if ((type && strcmp (list[count].type, type) != 0)
        || (id && strcmp (list[count].id, id) != 0)) {
      snap_clear (&list[count]);
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
  free (query);
  free (store);
  free (target);
  return rc;
}

/* ------------------------------------------------- sessions */

char *
pbs__remote_session_query (const struct pbs_remote *r, const char *ns,
                           const char *type, const char *id, int64_t time,
                           bool backup)
{
  char *q = NULL, tbuf[32];

  snprintf (tbuf, sizeof tbuf, "%lld", (long long) time);
  /* ns only when not the root namespace; benchmark only for backups
   * (§1.3).  No 4.x-only parameters: a 3.x server rejects them. */
  if (pbs__query_add (&q, "backup-type", type) == -1
      || pbs__query_add (&q, "backup-id", id) == -1
      || pbs__query_add (&q, "backup-time", tbuf) == -1
      || pbs__query_add (&q, "store", r->spec.store) == -1
      || (ns && *ns && pbs__query_add (&q, "ns", ns) == -1)
      || pbs__query_add (&q, "debug", "false") == -1
      || (backup && pbs__query_add (&q, "benchmark", "false") == -1)) {
    free (q);
    return NULL;
  }
  return q;
}

const struct pbs_backend_ops pbs__remote_ops = {
  .name = "remote",
  .close = remote_close,
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
