/* remote-rest.c -- the plain REST calls to a PBS server (ticket login,
 * snapshot listing) through libcurl: the one file that uses it.
 *
 * The certificate decision is remote-certs.c's, installed into curl's
 * SSL_CTX, so REST calls and the protocol upgrades (remote-tls.c) trust
 * exactly the same servers.  curl's own checks stay on where they agree
 * with it (the handshake must verify), its host-name check is off because
 * the policy does that itself -- except for a pinned certificate, whose
 * name the official client ignores too.  The only proxy is ALL_PROXY's
 * (remote-proxy.c), as for the upgrades: curl's own proxy variables and
 * NO_PROXY would send half a session another way. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "remote-internal.h"

#define REST_BODY_MAX ((size_t) 256 * 1024 * 1024)
#define MAX_HEADERS 8

struct rest_call {
  struct pbs_remote *r;
  struct pbs_cert_policy policy; /* lives as long as curl's SSL_CTX */
  bool setup_failed;             /* applying the policy failed (set) */
  uint8_t *body;
  size_t len, cap;
  bool too_large;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_result;

static void
init_curl (void)
{
  curl_init_result = curl_global_init (CURL_GLOBAL_DEFAULT);
}

static CURLcode
on_ssl_ctx (CURL *curl, void *ssl_ctx, void *arg)
{
  struct rest_call *c = arg;
  (void) curl;
  if (pbs__cert_policy_apply (ssl_ctx, &c->policy, c->r) == -1) {
    c->setup_failed = true;
    return CURLE_SSL_CERTPROBLEM;
  }
  return CURLE_OK;
}

/* curl's progress callback, here only to stop at pbs_set_cancel_fd. */
static int
on_progress (void *arg, curl_off_t dltotal, curl_off_t dlnow,
             curl_off_t ultotal, curl_off_t ulnow)
{
  (void) arg;
  (void) dltotal;
  (void) dlnow;
  (void) ultotal;
  (void) ulnow;
  return pbs__cancelled () ? 1 : 0;
}

static size_t
on_body (char *data, size_t size, size_t n, void *arg)
{
  struct rest_call *c = arg;
  size_t len = size * n;

  if (len > REST_BODY_MAX - c->len) {
    c->too_large = true;
    return 0; /* curl aborts the transfer */
  }
  if (c->len + len + 1 > c->cap) {
    size_t cap = c->cap ? c->cap : 16384;
    uint8_t *nb;
    while (cap < c->len + len + 1)
      cap *= 2;
    nb = realloc (c->body, cap);
    if (!nb)
      return 0;
    c->body = nb;
    c->cap = cap;
  }
  memcpy (c->body + c->len, data, len);
  c->len += len;
  c->body[c->len] = 0;
  return len;
}

/* Turn the CRLF-separated header lines of AUTH (modified in place) into
 * a curl list made of NODES, so that no other copy of a secret is made
 * on our side. */
static struct curl_slist *
header_list (char *auth, struct curl_slist *nodes, size_t max,
             const char *extra)
{
  struct curl_slist *head = NULL, **tail = &head;
  size_t n = 0;

  for (char *line = auth; line && *line && n + 1 < max;) {
    char *end = strstr (line, "\r\n");
    if (end)
      *end = 0;
    nodes[n].data = line;
    nodes[n].next = NULL;
    *tail = &nodes[n];
    tail = &nodes[n].next;
    n++;
    line = end ? end + 2 : NULL;
  }
  if (extra) {
    nodes[n].data = (char *) extra;
    nodes[n].next = NULL;
    *tail = &nodes[n];
  }
  return head;
}

/* The error of a transfer that did not get an answer. */
static void
transport_error (struct rest_call *c, CURL *curl, CURLcode rc,
                 const char *errbuf)
{
  const char *host = c->r->spec.host;
  const char *msg = *errbuf ? errbuf : curl_easy_strerror (rc);
  long connect_code = 0;

  if (c->setup_failed || pbs__cert_policy_error (&c->policy, host))
    return;
  /* A proxy that refused the tunnel: as remote-proxy.c reports it. */
  if (c->r->proxy.host
      && curl_easy_getinfo (curl, CURLINFO_HTTP_CONNECTCODE, &connect_code)
             == CURLE_OK
      && connect_code >= 300) {
    pbs__set_error (connect_code >= 500 ? ECONNRESET : EACCES,
                    "proxy %s port %u: CONNECT refused: HTTP %ld",
                    c->r->proxy.host, c->r->proxy.port, connect_code);
    return;
  }
  switch (rc) {
  case CURLE_ABORTED_BY_CALLBACK:
    pbs__set_error (ECANCELED, "interrupted");
    break;
  case CURLE_OUT_OF_MEMORY:
    pbs__set_error (ENOMEM, "out of memory");
    break;
  case CURLE_COULDNT_RESOLVE_HOST:
    pbs__set_error (ENOENT, "%s: %s", host, msg);
    break;
  case CURLE_OPERATION_TIMEDOUT:
    pbs__set_error (ETIMEDOUT, "%s port %u: %s", host, c->r->spec.port, msg);
    break;
  case CURLE_WRITE_ERROR:
    if (c->too_large) {
      pbs__set_error (EPROTO, "%s: answer too large", host);
      break;
    }
    pbs__set_error (ENOMEM, "out of memory");
    break;
  default:
    /* Refused, reset, TLS failures: worth a retry, as in remote-tls.c. */
    pbs__set_error (ECONNRESET, "%s port %u: %s", host, c->r->spec.port, msg);
  }
}

int
pbs__remote_rest (struct pbs_remote *r, const char *method,
                  const char *target, const char *json_body,
                  struct pbs_http_resp *resp)
{
  struct rest_call c = { .r = r };
  struct curl_slist nodes[MAX_HEADERS], *headers;
  char errbuf[CURL_ERROR_SIZE] = "", *auth, *url = NULL;
  size_t auth_len = 0;
  long status = 0;
  CURLcode rc;
  CURL *curl;
  int ret = -1;

  memset (resp, 0, sizeof *resp);
  pthread_once (&curl_once, init_curl);
  if (curl_init_result != CURLE_OK) {
    pbs__set_error (EIO, "libcurl: %s", curl_easy_strerror (curl_init_result));
    return -1;
  }
  if (asprintf (&url, "https://%s%s", r->spec.authority, target) == -1) {
    pbs__set_error (ENOMEM, "out of memory");
    return -1;
  }
  auth = pbs__remote_auth_headers (r, strcmp (method, "GET") == 0);
  if (auth)
    auth_len = strlen (auth); /* header_list cuts it into lines */
  curl = auth ? curl_easy_init () : NULL;
  if (!curl) {
    if (auth)
      pbs__set_error (ENOMEM, "out of memory");
    goto out;
  }
  headers = header_list (auth, nodes, MAX_HEADERS,
                         json_body ? "Content-Type: application/json" : NULL);
  if (curl_easy_setopt (curl, CURLOPT_URL, url) != CURLE_OK
      || curl_easy_setopt (curl, CURLOPT_PROTOCOLS_STR, "https") != CURLE_OK
      || curl_easy_setopt (curl, CURLOPT_NOSIGNAL, 1L) != CURLE_OK
      /* ALL_PROXY only, as for the upgrades (remote-proxy.c); "" also
       * keeps curl from reading http(s)_proxy. */
      || curl_easy_setopt (curl, CURLOPT_PROXY,
                           r->proxy.url ? r->proxy.url : "")
             != CURLE_OK
      || curl_easy_setopt (curl, CURLOPT_NOPROXY, "") != CURLE_OK
      || (r->proxy.url
          && (curl_easy_setopt (curl, CURLOPT_HTTPPROXYTUNNEL, 1L) != CURLE_OK
              || curl_easy_setopt (curl, CURLOPT_PROXYUSERPWD,
                                   r->proxy.auth) != CURLE_OK))
      || curl_easy_setopt (curl, CURLOPT_HTTP_VERSION,
                           (long) CURL_HTTP_VERSION_1_1) != CURLE_OK
      || curl_easy_setopt (curl, CURLOPT_USERAGENT,
                           "proxmox-backup-client/1.0") != CURLE_OK
      || curl_easy_setopt (curl, CURLOPT_CONNECTTIMEOUT_MS,
                           (long) PBS_REMOTE_CONNECT_TIMEOUT_MS) != CURLE_OK
      || curl_easy_setopt (curl, CURLOPT_TIMEOUT_MS,
                           (long) PBS_REMOTE_REQUEST_TIMEOUT_MS) != CURLE_OK
      || curl_easy_setopt (curl, CURLOPT_SSLVERSION,
                           (long) CURL_SSLVERSION_TLSv1_2) != CURLE_OK
      || curl_easy_setopt (curl, CURLOPT_SSL_VERIFYPEER, 1L) != CURLE_OK
      || curl_easy_setopt (curl, CURLOPT_SSL_VERIFYHOST, 0L) != CURLE_OK
      /* The policy loads the CAs only when it needs them; curl would
       * parse the whole bundle for every call. */
      || curl_easy_setopt (curl, CURLOPT_CAINFO, NULL) != CURLE_OK
      || curl_easy_setopt (curl, CURLOPT_CAPATH, NULL) != CURLE_OK
      || curl_easy_setopt (curl, CURLOPT_SSL_CTX_FUNCTION, on_ssl_ctx)
             != CURLE_OK
      || curl_easy_setopt (curl, CURLOPT_SSL_CTX_DATA, &c) != CURLE_OK
      || curl_easy_setopt (curl, CURLOPT_HTTPHEADER, headers) != CURLE_OK
      || curl_easy_setopt (curl, CURLOPT_WRITEFUNCTION, on_body) != CURLE_OK
      || curl_easy_setopt (curl, CURLOPT_WRITEDATA, &c) != CURLE_OK
      || curl_easy_setopt (curl, CURLOPT_XFERINFOFUNCTION, on_progress)
             != CURLE_OK
      || curl_easy_setopt (curl, CURLOPT_NOPROGRESS, 0L) != CURLE_OK
      || curl_easy_setopt (curl, CURLOPT_ERRORBUFFER, errbuf) != CURLE_OK) {
    pbs__set_error (EIO, "libcurl lacks a needed option (7.85 or later)");
    goto out;
  }
  if (json_body
      && (curl_easy_setopt (curl, CURLOPT_POSTFIELDS, json_body) != CURLE_OK
          || curl_easy_setopt (curl, CURLOPT_POSTFIELDSIZE,
                               (long) strlen (json_body)) != CURLE_OK)) {
    pbs__set_error (EIO, "libcurl: cannot set the request body");
    goto out;
  }
  if (strcmp (method, "GET") != 0 && strcmp (method, "POST") != 0
      && curl_easy_setopt (curl, CURLOPT_CUSTOMREQUEST, method) != CURLE_OK) {
    pbs__set_error (EIO, "libcurl: cannot set the method");
    goto out;
  }
  rc = curl_easy_perform (curl);
  if (rc != CURLE_OK) {
    transport_error (&c, curl, rc, errbuf);
    goto out;
  }
  curl_easy_getinfo (curl, CURLINFO_RESPONSE_CODE, &status);
  if (status < 200 || status > 299) {
    pbs__remote_http_error (target, (int) status, (char *) c.body, c.len);
    pbs__remote_explain_401 (r);
    goto out;
  }
  if (!c.body && !(c.body = calloc (1, 1))) {
    pbs__set_error (ENOMEM, "out of memory");
    goto out;
  }
  resp->status = (int) status;
  resp->body = c.body;
  resp->body_len = c.len;
  c.body = NULL;
  ret = 0;
out:
  if (curl)
    curl_easy_cleanup (curl);
  if (auth) {
    explicit_bzero (auth, auth_len);
    free (auth);
  }
  free (c.body);
  free (url);
  return ret;
}
