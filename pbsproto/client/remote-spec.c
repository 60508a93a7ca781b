/* remote-spec.c -- the strings of the remote backend: repository strings
 * (§2.3), HTTP authorities, and URL and query encoding (§1.3). */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "remote-internal.h"

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

/* ------------------------------------------------- encoding */

/* Percent-encode everything but unreserved characters: a superset of
 * PBS's DEFAULT_ENCODE_SET, which the server decodes all the same. */
char *
pbs__pct_encode (const char *s, bool form)
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
  char *v = pbs__pct_encode (value, true), *nb;
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

char *
pbs__remote_session_query (const char *store, const char *ns,
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
      || pbs__query_add (&q, "store", store) == -1
      || (ns && *ns && pbs__query_add (&q, "ns", ns) == -1)
      || pbs__query_add (&q, "debug", "false") == -1
      || (backup && pbs__query_add (&q, "benchmark", "false") == -1)) {
    free (q);
    return NULL;
  }
  return q;
}
