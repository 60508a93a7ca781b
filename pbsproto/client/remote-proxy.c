/* remote-proxy.c -- an HTTP proxy between us and the PBS server, as
 * proxmox-backup-client has it: only the ALL_PROXY variable counts,
 * "[http://][USER:PASS@]HOST[:PORT]" (port 1080 by default, like curl's),
 * and every connection to the server is a CONNECT tunnel through it
 * (proxmox-http's ProxyConfig and HttpsConnector).  libcurl is given the
 * same proxy for the REST calls; this file makes the tunnel for the
 * protocol upgrades. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <openssl/evp.h>

#include "remote-internal.h"

#define PROXY_DEFAULT_PORT 1080
#define PROXY_ANSWER_MAX 16384

void
pbs__proxy_free (struct pbs_proxy *p)
{
  free (p->host);
  free (p->url);
  if (p->auth) {
    explicit_bzero (p->auth, strlen (p->auth));
    free (p->auth);
  }
  memset (p, 0, sizeof *p);
}

/* Split "HOST[:PORT]" or "[V6]:PORT" (length N) into P. */
static int
parse_host_port (const char *s, size_t n, struct pbs_proxy *p)
{
  const char *colon = NULL, *hend = s + n;
  unsigned long port = PROXY_DEFAULT_PORT;

  if (n && s[0] == '[') {
    const char *close = memchr (s, ']', n);
    if (!close)
      return -1;
    p->host = strndup (s + 1, (size_t) (close - s - 1));
    if (close + 1 < s + n) {
      if (close[1] != ':')
        return -1;
      colon = close + 1;
    }
  }
  else {
    colon = memchr (s, ':', n);
    if (colon)
      hend = colon;
    p->host = strndup (s, (size_t) (hend - s));
  }
  if (!p->host || !*p->host)
    return -1;
  if (colon) {
    char *end;
    errno = 0;
    port = strtoul (colon + 1, &end, 10);
    if (errno || end != s + n || end == colon + 1 || port < 1
        || port > 65535)
      return -1;
  }
  p->port = (unsigned) port;
  return 0;
}

int
pbs__proxy_from_env (struct pbs_proxy *p)
{
  const char *v = getenv ("ALL_PROXY"), *sep, *at;
  size_t n;

  memset (p, 0, sizeof *p);
  if (!v || !*v)
    return 0;
  sep = strstr (v, "://");
  if (sep) {
    if ((size_t) (sep - v) != 4 || strncasecmp (v, "http", 4) != 0) {
      pbs__set_error (EINVAL, "ALL_PROXY: unsupported proxy scheme '%.*s'",
                      (int) (sep - v < 32 ? sep - v : 32), v);
      return -1;
    }
    v = sep + 3;
  }
  n = strcspn (v, "/?#");
  if (v[n] && strcmp (v + n, "/") != 0) {
    pbs__set_error (EINVAL, "ALL_PROXY: a proxy has no path");
    return -1;
  }
  /* The credentials end at the last '@' of the authority. */
  at = NULL;
  for (const char *q = v; q < v + n; q++)
    if (*q == '@')
      at = q;
  if (at) {
    p->auth = strndup (v, (size_t) (at - v));
    if (!p->auth) {
      pbs__set_error (ENOMEM, "out of memory");
      return -1;
    }
    n -= (size_t) (at + 1 - v);
    v = at + 1;
  }
  if (parse_host_port (v, n, p) == -1) {
    pbs__proxy_free (p);
    pbs__set_error (EINVAL, "ALL_PROXY: not [http://][USER:PASS@]HOST[:PORT]");
    return -1;
  }
  {
    char *a = pbs__authority (p->host, p->port);
    if (!a || asprintf (&p->url, "http://%s", a) == -1) {
      p->url = NULL;
      free (a);
      pbs__proxy_free (p);
      pbs__set_error (ENOMEM, "out of memory");
      return -1;
    }
    free (a);
  }
  return 0;
}

/* "Proxy-Authorization: Basic ...\r\n" for P, or "" (malloc'd). */
static char *
auth_header (const struct pbs_proxy *p)
{
  size_t n = p->auth ? strlen (p->auth) : 0;
  char *hdr;
  int len;

  if (!p->auth)
    return strdup ("");
  hdr = malloc (40 + 4 * (n / 3 + 1));
  if (!hdr)
    return NULL;
  len = sprintf (hdr, "Proxy-Authorization: Basic ");
  len += EVP_EncodeBlock ((unsigned char *) hdr + len,
                          (const unsigned char *) p->auth, (int) n);
  strcpy (hdr + len, "\r\n");
  return hdr;
}

/* Send all of BUF on the non-blocking FD. */
static int
send_all (int fd, const char *buf, size_t len, int timeout_ms)
{
  while (len > 0) {
    ssize_t w = send (fd, buf, len, MSG_NOSIGNAL);
    if (w > 0) {
      buf += w;
      len -= (size_t) w;
      continue;
    }
    if (w == -1 && errno != EAGAIN && errno != EINTR)
      return -1;
    if (pbs__wait_fd (fd, false, timeout_ms) != 1)
      return -1;
  }
  return 0;
}

int
pbs__proxy_connect (int fd, const struct pbs_proxy *p, const char *authority,
                    int timeout_ms)
{
  char *hdr = auth_header (p), *req = NULL;
  char ans[PROXY_ANSWER_MAX + 1];
  size_t got = 0;
  int status = 0, rc = -1, n;

  if (!hdr) {
    pbs__set_error (ENOMEM, "out of memory");
    return -1;
  }
  n = asprintf (&req, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n%s\r\n",
                authority, authority, hdr);
  explicit_bzero (hdr, strlen (hdr));
  free (hdr);
  if (n == -1) {
    pbs__set_error (ENOMEM, "out of memory");
    return -1;
  }
  if (send_all (fd, req, (size_t) n, timeout_ms) == -1) {
    if (pbs_errno () != ECANCELED)
      pbs__set_error (ECONNRESET, "proxy %s port %u: %s", p->host, p->port,
                      strerror (errno));
    goto out;
  }
  /* The answer's header, and not a byte more: TLS follows on 2xx, and
   * the server speaks only after our ClientHello. */
  while (got < 4 || memcmp (ans + got - 4, "\r\n\r\n", 4) != 0) {
    ssize_t r;
    if (got == PROXY_ANSWER_MAX) {
      pbs__set_error (EPROTO, "proxy %s port %u: answer too long", p->host,
                      p->port);
      goto out;
    }
    r = recv (fd, ans + got, 1, 0);
    if (r == 1) {
      got++;
      continue;
    }
    if (r == 0 || (r == -1 && errno != EAGAIN && errno != EINTR)) {
      pbs__set_error (ECONNRESET, "proxy %s port %u: connection closed",
                      p->host, p->port);
      goto out;
    }
    n = pbs__wait_fd (fd, true, timeout_ms);
    if (n != 1) {
      if (n == 0)
        pbs__set_error (ETIMEDOUT, "proxy %s port %u: no answer", p->host,
                        p->port);
      goto out;
    }
  }
  ans[got] = 0;
  if (sscanf (ans, "HTTP/1.%*1[01] %3d", &status) != 1) {
    pbs__set_error (EPROTO, "proxy %s port %u: not an HTTP answer", p->host,
                    p->port);
    goto out;
  }
  if (status < 200 || status > 299) {
    char *eol = strstr (ans, "\r\n");
    *eol = 0;
    for (char *q = ans; *q; q++)
      if ((unsigned char) *q < 0x20 || *q == 0x7f)
        *q = '?';
    /* 5xx: the proxy could not reach the server -- as a refused
     * connection, worth a retry. */
    pbs__set_error (status >= 500 ? ECONNRESET : EACCES,
                    "proxy %s port %u: CONNECT refused: %s", p->host,
                    p->port, ans);
    goto out;
  }
  rc = 0;
out:
  if (req) {
    explicit_bzero (req, strlen (req));
    free (req);
  }
  return rc;
}
