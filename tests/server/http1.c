/* http1.c -- HTTP/1.1 over TLS: read requests with a bounded header block,
 * answer REST calls, and switch to HTTP/2 after a protocol upgrade
 * (docs/pbs-protocol.md §1.3). */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/err.h>

#include "server.h"

int
srv_read_more (struct srv_conn *c)
{
  int n;

  if (c->cap - c->len < 65536) {
    size_t cap = c->cap ? c->cap * 2 : 131072;
    uint8_t *p = realloc (c->buf, cap);
    if (p == NULL)
      return -1;
    c->buf = p;
    c->cap = cap;
  }
  n = SSL_read (c->ssl, c->buf + c->len, 65536);
  if (n <= 0) {
    int e = SSL_get_error (c->ssl, n);
    ERR_clear_error ();
    return e == SSL_ERROR_ZERO_RETURN || e == SSL_ERROR_SYSCALL ? 0 : -1;
  }
  c->len += (size_t) n;
  return n;
}

int
srv_write_all (struct srv_conn *c, const void *p, size_t n)
{
  const uint8_t *b = p;

  while (n > 0) {
    int w = SSL_write (c->ssl, b, n > (1u << 30) ? 1 << 30 : (int) n);
    if (w <= 0) {
      ERR_clear_error ();
      return -1;
    }
    b += w;
    n -= (size_t) w;
  }
  return 0;
}

void
srv_consume (struct srv_conn *c, size_t n)
{
  memmove (c->buf, c->buf + n, c->len - n);
  c->len -= n;
}

const char *
srv_header (const struct srv_request *r, const char *name)
{
  size_t i;

  for (i = 0; i < r->nheaders; i++)
    if (!strcmp (r->headers[i].name, name))
      return r->headers[i].value;
  return NULL;
}

static void
request_free (struct srv_request *r)
{
  size_t i;

  free (r->method);
  free (r->target);
  free (r->path);
  free (r->query);
  for (i = 0; i < r->nheaders; i++) {
    free (r->headers[i].name);
    /* may hold a secret */
    if (r->headers[i].value)
      OPENSSL_cleanse (r->headers[i].value, strlen (r->headers[i].value));
    free (r->headers[i].value);
  }
  free (r->headers);
  free (r->body);
  memset (r, 0, sizeof *r);
}

static const char *
reason (int status)
{
  switch (status) {
  case 101: return "Switching Protocols";
  case 200: return "OK";
  case 400: return "Bad Request";
  case 401: return "Unauthorized";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 411: return "Length Required";
  case 413: return "Payload Too Large";
  case 414: return "URI Too Long";
  case 431: return "Request Header Fields Too Large";
  case 500: return "Internal Server Error";
  case 501: return "Not Implemented";
  default: return "Unknown";
  }
}

static void
auth_delay (void)
{
  struct timespec ts;

  if (srv_config.auth_delay <= 0)
    return;
  /* proxmox-rest-server delays every 401 by about 3 s to slow down
   * password guessing; configurable here (--auth-delay). */
  ts.tv_sec = (time_t) srv_config.auth_delay;
  ts.tv_nsec = (long) ((srv_config.auth_delay - (double) ts.tv_sec) * 1e9);
  nanosleep (&ts, NULL);
}

static int
write_reply (struct srv_conn *c, const struct srv_reply *rep, bool close)
{
  char head[512];
  int n;

  if (rep->status == 401)
    auth_delay ();
  if (rep->streamed) {
    char sz[32];
    /* The listing is a streaming API in PBS: chunked transfer (§8b). */
    n = snprintf (head, sizeof head,
                  "HTTP/1.1 %d %s\r\ncontent-type: %s\r\n"
                  "transfer-encoding: chunked\r\n%s\r\n",
                  rep->status, reason (rep->status), rep->content_type,
                  close ? "connection: close\r\n" : "");
    if (srv_write_all (c, head, (size_t) n) == -1)
      return -1;
    if (rep->len) {
      n = snprintf (sz, sizeof sz, "%zx\r\n", rep->len);
      if (srv_write_all (c, sz, (size_t) n) == -1
          || srv_write_all (c, rep->body, rep->len) == -1
          || srv_write_all (c, "\r\n", 2) == -1)
        return -1;
    }
    return srv_write_all (c, "0\r\n\r\n", 5);
  }
  n = snprintf (head, sizeof head,
                "HTTP/1.1 %d %s\r\n%s%s%scontent-length: %zu\r\n%s\r\n",
                rep->status, reason (rep->status),
                rep->content_type ? "content-type: " : "",
                rep->content_type ? rep->content_type : "",
                rep->content_type ? "\r\n" : "", rep->len,
                close ? "connection: close\r\n" : "");
  if (srv_write_all (c, head, (size_t) n) == -1)
    return -1;
  return rep->len ? srv_write_all (c, rep->body, rep->len) : 0;
}

static char *
dupn (const char *s, size_t n)
{
  char *p = malloc (n + 1);
  if (p) {
    memcpy (p, s, n);
    p[n] = 0;
  }
  return p;
}

/* Read one request.  1: got one; 0: clean EOF; -1: broken (REP filled
 * when worth an answer). */
static int
read_request (struct srv_conn *c, struct srv_request *r,
              struct srv_reply *rep)
{
  uint8_t *end = NULL;
  size_t hlen, i, clen = 0;
  char *line, *p, *q;
  const char *cl, *te;

  memset (r, 0, sizeof *r);
  for (;;) {
    end = c->len >= 4 ? memmem (c->buf, c->len, "\r\n\r\n", 4) : NULL;
    if (end)
      break;
    if (c->len > SRV_MAX_HEADER) {
      /* Drop the rest of the header block (up to 1 MiB) before the
       * answer, so that closing with unread data cannot reset it. */
      size_t seen = 0;
      while (seen < 1024 * 1024) {
        uint8_t *e = c->len >= 4 ? memmem (c->buf, c->len, "\r\n\r\n", 4)
                                 : NULL;
        if (e) {
          srv_consume (c, (size_t) (e - c->buf) + 4);
          break;
        }
        seen += c->len - 3;
        srv_consume (c, c->len - 3); /* keep a possible partial marker */
        if (srv_read_more (c) <= 0)
          break;
      }
      srv_reply_error (rep, 431, "request header too large");
      return -1;
    }
    int n = srv_read_more (c);
    if (n <= 0)
      return c->len == 0 && n == 0 ? 0 : -1;
  }
  hlen = (size_t) (end - c->buf) + 4;
  if (hlen > SRV_MAX_HEADER) {
    srv_reply_error (rep, 431, "request header too large");
    return -1;
  }
  line = dupn ((const char *) c->buf, hlen - 4);
  srv_consume (c, hlen);
  if (line == NULL)
    return -1;
  /* Request line: METHOD SP TARGET SP HTTP/1.x */
  p = strstr (line, "\r\n");
  if (p)
    *p = 0;
  q = strchr (line, ' ');
  if (q == NULL)
    goto bad;
  r->method = dupn (line, (size_t) (q - line));
  q++;
  p = strchr (q, ' ');
  if (p == NULL)
    goto bad;
  r->target = dupn (q, (size_t) (p - q));
  if (!strcmp (p + 1, "HTTP/1.1"))
    r->minor_version = 1;
  else if (!strcmp (p + 1, "HTTP/1.0"))
    r->minor_version = 0;
  else
    goto bad;
  /* Headers */
  q = line + strlen (line) + 2;
  while (q < line + hlen - 4 && *q) {
    char *eol = strstr (q, "\r\n"), *colon;
    struct srv_header *h;
    if (eol)
      *eol = 0;
    colon = strchr (q, ':');
    if (colon == NULL || r->nheaders >= 100)
      goto bad;
    h = realloc (r->headers, (r->nheaders + 1) * sizeof *h);
    if (h == NULL)
      goto bad;
    r->headers = h;
    h = &r->headers[r->nheaders++];
    h->name = dupn (q, (size_t) (colon - q));
    for (i = 0; h->name[i]; i++)
      h->name[i] = (char) tolower ((unsigned char) h->name[i]);
    colon++;
    while (*colon == ' ' || *colon == '\t')
      colon++;
    h->value = strdup (colon);
    for (i = strlen (h->value); i > 0 && (h->value[i - 1] == ' '
                                          || h->value[i - 1] == '\t');)
      h->value[--i] = 0;
    if (eol == NULL)
      break;
    q = eol + 2;
  }
  OPENSSL_cleanse (line, hlen - 4);
  free (line);
  line = NULL;
  /* Path and query.  r->path stays NULL for an illegal path, which is
   * answered after the request is read. */
  p = strchr (r->target, '?');
  r->path = srv_normalize_path (r->target, p ? (size_t) (p - r->target)
                                             : strlen (r->target));
  r->query = p ? strdup (p + 1) : NULL;
  te = srv_header (r, "transfer-encoding");
  if (te) {
    srv_reply_error (rep, 411, "chunked request bodies are not supported");
    return -1;
  }
  cl = srv_header (r, "content-length");
  if (cl) {
    char *e;
    errno = 0;
    clen = strtoul (cl, &e, 10);
    if (*cl == 0 || *e || errno) {
      srv_reply_error (rep, 400, "bad content-length");
      return -1;
    }
    if (clen >= SRV_MAX_PARAM_BODY) {
      /* Read and drop a moderate body first, so that closing the socket
       * with unread data (a TCP reset) cannot destroy our answer. */
      size_t left = clen;
      while (left > 0 && clen <= 16 * 1024 * 1024) {
        size_t n = c->len < left ? c->len : left;
        srv_consume (c, n);
        left -= n;
        if (left > 0 && srv_read_more (c) <= 0)
          break;
      }
      srv_reply_error (rep, 400, "Request body too large");
      return -1;
    }
  }
  if (clen > c->len) {
    const char *expect = srv_header (r, "expect");
    /* libcurl asks before it sends a larger body */
    if (expect && !strcasecmp (expect, "100-continue")
        && srv_write_all (c, "HTTP/1.1 100 Continue\r\n\r\n", 25) == -1)
      return -1;
  }
  while (c->len < clen)
    if (srv_read_more (c) <= 0)
      return -1;
  r->body = malloc (clen + 1);
  if (r->body == NULL)
    return -1;
  memcpy (r->body, c->buf, clen);
  r->body[clen] = 0;
  r->body_len = clen;
  srv_consume (c, clen);
  return 1;
bad:
  if (line) {
    OPENSSL_cleanse (line, hlen - 4);
    free (line);
  }
  srv_reply_error (rep, 400, "bad request");
  return -1;
}

/* BackupNamespace::new of NS (NULL: root); true with REP filled if it
 * fails. */
static bool
ns_error (const char *ns, struct srv_reply *rep)
{
  size_t depth = 0, n;

  if (ns == NULL || *ns == 0)
    return false;
  for (n = 0; ns[n]; n++)
    depth += ns[n] == '/';
  if (depth >= 7) {
    srv_reply_error (rep, 400, "namespace too deep, 7 >= max 7");
    return true;
  }
  /* push_do: the length with the new component (and its separator) may
   * not exceed 256, which only a single 256-character component does. */
  if (depth == 0 && n >= 256) {
    srv_reply_error (rep, 400, "namespace length exceeded");
    return true;
  }
  return false;
}

/* GET /api2/json/backup or /api2/json/reader with an Upgrade header
 * (§1.3).  Returns true if the connection now belongs to HTTP/2. */
static bool
upgrade (struct srv_conn *c, const struct srv_request *req,
         struct srv_reply *rep, bool reader)
{
  const char *proto = reader ? "proxmox-backup-reader-protocol-v1"
                             : "proxmox-backup-protocol-v1";
  struct srv_auth auth;
  char err[300], *errtext = NULL, head[256];
  json_t *params;
  struct srv_store *st;
  const char *up;
  struct srv_env *env;
  int n;

  if (srv_authenticate (req, &auth, err, sizeof err) == -1) {
    srv_log ("conn %u: authentication failure: %s", c->id, err);
    /* The reason is only logged (proxmox-rest-server src/rest.rs since
     * "rest server: unify returned error message for auth failure"). */
    srv_reply_error (rep, 401, "authentication failed");
    rep->content_type = NULL; /* an error of handle_request, unformatted */
    return false;
  }
  params = srv_query_params (req->query,
                             reader ? srv_reader_upgrade_schema
                                    : srv_backup_upgrade_schema,
                             &errtext);
  if (params == NULL) {
    srv_reply_error (rep, 400, "%s", errtext ? errtext : "out of memory");
    free (errtext);
    return false;
  }
  /* optional_ns_param parses the namespace before anything else: the
   * schema allows 8 levels and 256 characters, BackupNamespace::push
   * only 7 levels (pbs-api-types src/datastore.rs). */
  if (ns_error (json_string_value (json_object_get (params, "ns")), rep))
    goto out;
  /* Every authenticated user has Datastore.Backup on every store (see
   * README), so the privilege check of step 2 always passes. */
  st = srv_find_store (json_string_value (json_object_get (params, "store")));
  if (st == NULL) {
    srv_reply_error (rep, 400, "no such datastore '%s'",
                     json_string_value (json_object_get (params, "store")));
    goto out;
  }
  up = srv_header (req, "upgrade");
  if (up == NULL) {
    srv_reply_error (rep, 400, "missing Upgrade header");
    goto out;
  }
  if (strcmp (up, proto) != 0) {
    srv_reply_error (rep, 400, "invalid protocol name");
    goto out;
  }
  /* hyper upgrades only HTTP/1.1 requests; PBS itself refuses >= 2. */
  if (req->minor_version != 1) {
    srv_reply_error (rep, 400, "unexpected http version");
    goto out;
  }
  env = reader ? srv_reader_env_new (st, &auth, params, c->id, rep)
               : srv_backup_env_new (st, &auth, params, c->id, rep);
  if (env == NULL)
    goto out;
  json_decref (params);
  n = snprintf (head, sizeof head,
                "HTTP/1.1 101 Switching Protocols\r\n"
                "connection: upgrade\r\nupgrade: %s\r\n\r\n", proto);
  if (srv_write_all (c, head, (size_t) n) == 0) {
    srv_log ("conn %u: %s protocol started by %s", c->id,
             reader ? "reader" : "backup", auth.auth_id);
    srv_h2_run (c, env);
  }
  env->end (env);
  return true;
out:
  json_decref (params);
  return false;
}

void
srv_serve_connection (struct srv_conn *c)
{
  for (;;) {
    struct srv_request req;
    struct srv_reply rep = { 0 };
    const char *conn_hdr;
    bool close;
    int rc = read_request (c, &req, &rep);

    if (rc <= 0) {
      if (rc == -1 && rep.status)
        write_reply (c, &rep, true);
      srv_reply_free (&rep);
      request_free (&req);
      return;
    }
    conn_hdr = srv_header (&req, "connection");
    close = req.minor_version == 0
            || (conn_hdr && !strcasecmp (conn_hdr, "close"));
    if (req.path == NULL) {
      /* normalize_path failed: a plain error, no content type */
      srv_reply_error (&rep, 400, "path contains illegal components");
      rep.content_type = NULL;
    }
    else if (strlen (req.path) + (req.query ? strlen (req.query) : 0)
             > SRV_MAX_URI) {
      /* MAX_URI_QUERY_LENGTH: 414 with an empty body, no content type */
      rep.status = 414;
      rep.content_type = NULL;
    }
    else if (!strcmp (req.method, "GET")
             && (!strcmp (req.path, "/api2/json/backup")
                 || !strcmp (req.path, "/api2/json/reader"))) {
      bool reader = !strcmp (req.path, "/api2/json/reader");
      if (upgrade (c, &req, &rep, reader)) {
        request_free (&req);
        return;
      }
    }
    else
      srv_rest (&req, &rep);
    srv_log ("conn %u: %s %s -> %d", c->id, req.method,
             req.path ? req.path : req.target, rep.status);
    rc = write_reply (c, &rep, close);
    srv_reply_free (&rep);
    request_free (&req);
    if (rc == -1 || close)
      return;
  }
}
