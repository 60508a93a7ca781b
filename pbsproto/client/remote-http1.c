/* remote-http1.c -- the GET that upgrades a connection to the backup or
 * reader protocol (§1.3), written by us on a raw connection (remote-conn.c)
 * because the connection must go on as HTTP/2 after the 101, and libcurl
 * does not hand it over after a request of its own.
 *
 * A refusal's answer may be chunked, carry a Content-Length, or end at
 * EOF; it is read whole (capped) for the server's message. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "remote-internal.h"

#define HEADER_MAX (64 * 1024)
#define BODY_MAX ((size_t) 256 * 1024 * 1024)

struct rbuf {
  uint8_t *p;
  size_t len, cap;
};

static int
rbuf_reserve (struct rbuf *b, size_t more)
{
  size_t need = b->len + more + 1, cap = b->cap ? b->cap : 16384;
  uint8_t *np;
  if (need <= b->cap)
    return 0;
  while (cap < need)
    cap *= 2;
  np = realloc (b->p, cap);
  if (!np) {
    pbs__set_error (ENOMEM, "out of memory");
    return -1;
  }
  b->p = np;
  b->cap = cap;
  return 0;
}

/* Read more bytes into B (at least one).  0, 1 at EOF, -1 on error.
 * Without a connection (T NULL: an answer already whole in B, as
 * pbs__http1_parse_response has it) every read is at EOF. */
static int
read_more (struct pbs_conn *t, struct rbuf *b)
{
  if (!t)
    return 1;
  for (;;) {
    ssize_t n;
    if (rbuf_reserve (b, 65536) == -1)
      return -1;
    n = pbs__conn_read (t, b->p + b->len, b->cap - b->len - 1);
    if (n > 0) {
      b->len += (size_t) n;
      b->p[b->len] = 0;
      return 0;
    }
    if (n == 0)
      return 1;
    if (n == -1)
      return -1;
    if (pbs__conn_wait (t, false, PBS_REMOTE_REQUEST_TIMEOUT_MS) == -1)
      return -1;
  }
}

static const uint8_t *
find_crlfcrlf (const uint8_t *p, size_t len)
{
  return memmem (p, len, "\r\n\r\n", 4);
}

/* Value of header NAME in the header block HDR (NUL-terminated), copied
 * to OUT.  true if present. */
static bool
header_value (const char *hdr, const char *name, char *out, size_t outlen)
{
  const char *line = strstr (hdr, "\r\n");
  size_t nl = strlen (name);

  while (line) {
    const char *end;
    line += 2;
    end = strstr (line, "\r\n");
    if (!end || end == line)
      break;
    if ((size_t) (end - line) > nl && strncasecmp (line, name, nl) == 0
        && line[nl] == ':') {
      const char *v = line + nl + 1;
      size_t vl;
      while (*v == ' ' || *v == '\t')
        v++;
      vl = (size_t) (end - v);
      while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
        vl--;
      if (vl >= outlen)
        vl = outlen - 1;
      memcpy (out, v, vl);
      out[vl] = 0;
      return true;
    }
    line = end;
  }
  return false;
}

static int
parse_u64 (const char *s, int base, uint64_t *out)
{
  char *end;
  unsigned long long v;
  errno = 0;
  v = strtoull (s, &end, base);
  if (errno || end == s)
    return -1;
  while (*end == ' ' || *end == '\t')
    end++;
  if (*end && *end != ';') /* chunk extensions after ';' */
    return -1;
  *out = v;
  return 0;
}

/* Decode a chunked body starting at B->p[START]. */
static int
read_chunked (struct pbs_conn *t, struct rbuf *b, size_t start,
              struct pbs_http_resp *resp)
{
  struct rbuf out = { 0 };
  size_t pos = start;

  for (;;) {
    uint8_t *eol;
    uint64_t n;
    char line[64];
    size_t ll;

    while (!(eol = memmem (b->p + pos, b->len - pos, "\r\n", 2))) {
      if (b->len - pos > 1024 || read_more (t, b) != 0)
        goto bad;
    }
    ll = (size_t) (eol - (b->p + pos));
    if (ll >= sizeof line)
      goto bad;
    memcpy (line, b->p + pos, ll);
    line[ll] = 0;
    if (parse_u64 (line, 16, &n) == -1)
      goto bad;
    pos += ll + 2;
    if (n == 0)
      break; /* trailers ignored: we close the connection anyway */
    if (n > BODY_MAX || out.len + n > BODY_MAX) {
      pbs__set_error (EPROTO, "server answer too large");
      goto err;
    }
    while (b->len - pos < n + 2)
      if (read_more (t, b) != 0)
        goto bad;
    if (rbuf_reserve (&out, n) == -1)
      goto err;
    memcpy (out.p + out.len, b->p + pos, n);
    out.len += n;
    out.p[out.len] = 0;
    pos += n + 2;
  }
  if (!out.p && rbuf_reserve (&out, 0) == -1)
    goto err;
  out.p[out.len] = 0;
  resp->body = out.p;
  resp->body_len = out.len;
  return 0;
bad:
  pbs__set_error (ECONNRESET, "bad or truncated chunked answer");
err:
  free (out.p);
  return -1;
}

static int read_answer (struct pbs_conn *t, struct rbuf *b,
                        struct pbs_http_resp *resp);

int
pbs__http1_request (struct pbs_conn *t, const struct pbs_remote *r,
                    const char *method, const char *target,
                    const char *headers, const char *content_type,
                    const void *body, size_t body_len,
                    struct pbs_http_resp *resp)
{
  struct rbuf b = { 0 };
  char *req = NULL;
  int rc;

  memset (resp, 0, sizeof *resp);
  if (asprintf (&req,
                "%s %s HTTP/1.1\r\n"
                "Host: %s\r\n"
                "User-Agent: proxmox-backup-client/1.0\r\n"
                "%s%s%s"
                "Content-Length: %zu\r\n"
                "%s\r\n",
                method, target, r->spec.authority,
                content_type ? "Content-Type: " : "",
                content_type ? content_type : "", content_type ? "\r\n" : "",
                body_len, headers ? headers : "")
      == -1) {
    pbs__set_error (ENOMEM, "out of memory");
    return -1;
  }
  rc = pbs__conn_write_all (t, req, strlen (req));
  /* The request carries the secret: wipe it before freeing. */
  explicit_bzero (req, strlen (req));
  free (req);
  if (rc == -1)
    return -1;
  if (body_len && pbs__conn_write_all (t, body, body_len) == -1)
    return -1;
  return read_answer (t, &b, resp);
}

/* Read (from T, after what B holds) and parse one answer into RESP; frees
 * B.  0 (any status) or -1 (set). */
static int
read_answer (struct pbs_conn *t, struct rbuf *b0, struct pbs_http_resp *resp)
{
  struct rbuf b = *b0;
  char *hdr = NULL, val[64];
  const uint8_t *hend;
  size_t hlen, start;
  int rc, major, minor, status;

  while (!(hend = b.p ? find_crlfcrlf (b.p, b.len) : NULL)) {
    if (b.len > HEADER_MAX) {
      pbs__set_error (EPROTO, "server answer header too large");
      goto err;
    }
    rc = read_more (t, &b);
    if (rc == -1)
      goto err;
    if (rc == 1) {
      pbs__set_error (ECONNRESET, "connection closed before an answer");
      goto err;
    }
  }
  hlen = (size_t) (hend - b.p) + 2; /* keep one CRLF to end the last line */
  /* The checks below index the copy by HLEN: a NUL would cut it short
   * (and no HTTP header holds one). */
  if (memchr (b.p, 0, hlen)) {
    pbs__set_error (EPROTO, "not an HTTP answer (a NUL byte in its header)");
    goto err;
  }
  hdr = strndup ((const char *) b.p, hlen);
  if (!hdr) {
    pbs__set_error (ENOMEM, "out of memory");
    goto err;
  }
  start = hlen + 2;
  major = minor = status = 0;
  if (strncmp (hdr, "HTTP/", 5) != 0 || hlen < 12 || hdr[6] != '.'
      || hdr[8] != ' ') {
    pbs__set_error (EPROTO, "not an HTTP answer");
    goto err;
  }
  major = hdr[5] - '0';
  minor = hdr[7] - '0';
  for (int i = 9; i < 12; i++) {
    if (hdr[i] < '0' || hdr[i] > '9') {
      pbs__set_error (EPROTO, "bad HTTP status line");
      goto err;
    }
    status = status * 10 + (hdr[i] - '0');
  }
  (void) major;
  (void) minor;
  resp->status = status;

  if (status == 101) {
    resp->extra_len = b.len - start;
    resp->extra = malloc (resp->extra_len + 1);
    if (!resp->extra) {
      pbs__set_error (ENOMEM, "out of memory");
      goto err;
    }
    memcpy (resp->extra, b.p + start, resp->extra_len);
    goto done;
  }

  if (header_value (hdr, "Transfer-Encoding", val, sizeof val)
      && strcasestr (val, "chunked")) {
    if (read_chunked (t, &b, start, resp) == -1)
      goto err;
  }
  else {
    uint64_t clen = 0;
    bool have_len = header_value (hdr, "Content-Length", val, sizeof val);
    if (have_len && (parse_u64 (val, 10, &clen) == -1 || clen > BODY_MAX)) {
      pbs__set_error (EPROTO, "bad Content-Length in answer");
      goto err;
    }
    for (;;) {
      if (have_len && b.len - start >= clen)
        break;
      if (b.len - start > BODY_MAX) {
        pbs__set_error (EPROTO, "server answer too large");
        goto err;
      }
      rc = read_more (t, &b);
      if (rc == -1)
        goto err;
      if (rc == 1) {
        if (have_len) {
          pbs__set_error (ECONNRESET, "answer truncated by the server");
          goto err;
        }
        break;
      }
    }
    if (!have_len)
      clen = b.len - start;
    resp->body = malloc (clen + 1);
    if (!resp->body) {
      pbs__set_error (ENOMEM, "out of memory");
      goto err;
    }
    memcpy (resp->body, b.p + start, clen);
    resp->body[clen] = 0;
    resp->body_len = clen;
  }
done:
  free (hdr);
  free (b.p);
  return 0;
err:
  free (hdr);
  free (b.p);
  pbs__http_resp_free (resp);
  return -1;
}

int
pbs__http1_parse_response (const uint8_t *buf, size_t len,
                           struct pbs_http_resp *resp)
{
  struct rbuf b = { 0 };

  memset (resp, 0, sizeof *resp);
  if (rbuf_reserve (&b, len) == -1)
    return -1;
  if (len)
    memcpy (b.p, buf, len);
  b.len = len;
  b.p[len] = 0;
  return read_answer (NULL, &b, resp);
}

void
pbs__http_resp_free (struct pbs_http_resp *resp)
{
  free (resp->body);
  free (resp->extra);
  memset (resp, 0, sizeof *resp);
}
