/* remote-proxy.c -- the HTTP proxy option, parsed as proxmox-backup-client
 * parses its ALL_PROXY variable: "[http://][USER:PASS@]HOST[:PORT]" (port
 * 1080 by default, like curl's); every connection to the server is then
 * a CONNECT tunnel through it (proxmox-http's ProxyConfig and
 * HttpsConnector), which remote-conn.c has libcurl make.  The caller
 * reads the variable; errors name it, as that is where the user fixes
 * the value. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "remote-internal.h"

#define PROXY_DEFAULT_PORT 1080

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
pbs__proxy_parse (const char *v, struct pbs_proxy *p)
{
  const char *sep, *at;
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
