/* remote-conn.c -- connections to a PBS server, all made by libcurl: the
 * one file that sets libcurl up.
 *
 * Two kinds: a plain REST call (remote-rest.c runs the transfer on the
 * handle made here), and the raw connection the protocol upgrades need
 * (§1.3): CURLOPT_CONNECT_ONLY=1 on an https URL has libcurl resolve,
 * connect, open the CONNECT tunnel of the proxy if there is one, and do
 * the TLS handshake; then remote-http1.c sends the Upgrade request and
 * remote-h2.c speaks HTTP/2 over curl_easy_send/curl_easy_recv.  Both
 * kinds trust exactly the same servers: the certificate decision is
 * remote-certs.c's, installed through curl's SSL_CTX callback, so nothing
 * is sent before it.  curl's own checks stay on where they agree with it
 * (the handshake must verify); its host-name check is off because the
 * policy does that itself -- except for a pinned certificate, whose name
 * the official client ignores too.
 *
 * The only proxy is the one in the repository options (the tool takes
 * it from ALL_PROXY, as proxmox-backup-client does): curl's own proxy
 * variables and NO_PROXY would send half a session another way.
 *
 * Waiting is ours: poll on CURLINFO_ACTIVESOCKET and on the repository's
 * cancel descriptor.  curl sends with MSG_NOSIGNAL, so a peer that went
 * away gives an error, not SIGPIPE. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "remote-internal.h"

struct pbs_conn {
  CURL *curl;
  struct pbs_curl_call call; /* the certificate policy's state */
  curl_socket_t fd;
  int cancel_fd;
  uint64_t *bytes_sent; /* the repository's counter */
};

/* ------------------------------------------------- waiting, cancel */

static int64_t
now_ms (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool
pbs__remote_cancelled (const struct pbs_remote *r)
{
  struct pollfd p = { r->cancel_fd, POLLIN, 0 };
  return p.fd >= 0 && poll (&p, 1, 0) == 1;
}

/* Wait up to TIMEOUT_MS for EVENTS on FD, or for CANCEL_FD.
 * 1 ready, 0 timed out, -1 cancelled (ECANCELED) or failed (set). */
static int
wait_fd (int fd, short events, int cancel_fd, int timeout_ms)
{
  struct pollfd p[2] = { { fd, events, 0 }, { cancel_fd, POLLIN, 0 } };
  int64_t deadline = now_ms () + timeout_ms;
  nfds_t n = cancel_fd >= 0 ? 2 : 1;

  for (;;) {
    int left = (int) (deadline - now_ms ()), rc;
    rc = poll (p, n, left > 0 ? left : 0);
    if (rc == -1 && errno == EINTR)
      continue; /* a cancelling signal shows on the descriptor */
    if (rc == -1) {
      pbs__set_error (EIO, "poll: %s", strerror (errno));
      return -1;
    }
    if (n == 2 && p[1].revents) {
      pbs__set_error (ECANCELED, "interrupted");
      return -1;
    }
    return rc > 0 ? 1 : 0;
  }
}

/* ------------------------------------------------- libcurl handles */

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
  struct pbs_curl_call *c = arg;
  (void) curl;
  if (pbs__cert_policy_apply (ssl_ctx, &c->policy, c->r) == -1) {
    c->setup_failed = true;
    return CURLE_SSL_CERTPROBLEM;
  }
  return CURLE_OK;
}

/* curl's progress callback, here only to stop at the cancel descriptor. */
static int
on_progress (void *arg, curl_off_t dltotal, curl_off_t dlnow,
             curl_off_t ultotal, curl_off_t ulnow)
{
  struct pbs_curl_call *c = arg;
  (void) dltotal;
  (void) dlnow;
  (void) ultotal;
  (void) ulnow;
  return pbs__remote_cancelled (c->r) ? 1 : 0;
}

CURL *
pbs__curl_handle (struct pbs_curl_call *c, struct pbs_remote *r,
                  const char *target)
{
  CURL *curl;
  char *url = NULL;
  CURLcode rc = CURLE_OK;

  memset (c, 0, sizeof *c);
  c->r = r;
  pthread_once (&curl_once, init_curl);
  if (curl_init_result != CURLE_OK) {
    pbs__set_error (EIO, "libcurl: %s", curl_easy_strerror (curl_init_result));
    return NULL;
  }
  if (asprintf (&url, "https://%s%s", r->spec.authority, target) == -1) {
    pbs__set_error (ENOMEM, "out of memory");
    return NULL;
  }
  curl = curl_easy_init ();
  if (!curl) {
    free (url);
    pbs__set_error (ENOMEM, "out of memory");
    return NULL;
  }
#define SET(opt, val)                                                          \
  do                                                                           \
    if (rc == CURLE_OK)                                                        \
      rc = curl_easy_setopt (curl, opt, val);                                  \
  while (0)
  SET (CURLOPT_URL, url);
  SET (CURLOPT_PROTOCOLS_STR, "https");
  SET (CURLOPT_NOSIGNAL, 1L);
  /* The repository's proxy only; "" also keeps curl from reading
   * http(s)_proxy. */
  SET (CURLOPT_PROXY, r->proxy.url ? r->proxy.url : "");
  SET (CURLOPT_NOPROXY, "");
  if (r->proxy.url) {
    SET (CURLOPT_HTTPPROXYTUNNEL, 1L);
    SET (CURLOPT_PROXYUSERPWD, r->proxy.auth);
  }
  /* HTTP/1.1 also in ALPN: the upgrades start as HTTP/1.1 requests. */
  SET (CURLOPT_HTTP_VERSION, (long) CURL_HTTP_VERSION_1_1);
  SET (CURLOPT_USERAGENT, "proxmox-backup-client/1.0");
  SET (CURLOPT_CONNECTTIMEOUT_MS, (long) PBS_REMOTE_CONNECT_TIMEOUT_MS);
  /* Keepalive as the official client (§1.1); curl sets TCP_NODELAY. */
  SET (CURLOPT_TCP_KEEPALIVE, 1L);
  SET (CURLOPT_TCP_KEEPIDLE, 120L);
  SET (CURLOPT_SSLVERSION, (long) CURL_SSLVERSION_TLSv1_2);
  SET (CURLOPT_SSL_VERIFYPEER, 1L);
  SET (CURLOPT_SSL_VERIFYHOST, 0L);
  /* The policy loads the CAs only when it needs them; curl would parse
   * the whole bundle for every connection. */
  SET (CURLOPT_CAINFO, NULL);
  SET (CURLOPT_CAPATH, NULL);
  SET (CURLOPT_SSL_CTX_FUNCTION, on_ssl_ctx);
  SET (CURLOPT_SSL_CTX_DATA, c);
  SET (CURLOPT_XFERINFOFUNCTION, on_progress);
  SET (CURLOPT_XFERINFODATA, c);
  SET (CURLOPT_NOPROGRESS, 0L);
  SET (CURLOPT_ERRORBUFFER, c->errbuf);
#undef SET
  free (url); /* curl keeps its own copy */
  if (rc != CURLE_OK) {
    curl_easy_cleanup (curl);
    pbs__set_error (EIO, "libcurl lacks a needed option (7.85 or later)");
    return NULL;
  }
  return curl;
}

_Static_assert (sizeof ((struct pbs_curl_call *) 0)->errbuf
                    >= CURL_ERROR_SIZE,
                "errbuf holds CURL_ERROR_SIZE bytes");

void
pbs__curl_error (struct pbs_curl_call *c, CURL *curl, int code)
{
  CURLcode rc = (CURLcode) code;
  const struct pbs_remote *r = c->r;
  const char *host = r->spec.host;
  const char *msg = c->errbuf[0] ? c->errbuf : curl_easy_strerror (rc);
  long connect_code = 0;

  if (c->setup_failed || pbs__cert_policy_error (&c->policy, host))
    return;
  /* A proxy that refused the tunnel: 5xx means it could not reach the
   * server -- as a refused connection, worth a retry. */
  if (r->proxy.host
      && curl_easy_getinfo (curl, CURLINFO_HTTP_CONNECTCODE, &connect_code)
             == CURLE_OK
      && connect_code >= 300) {
    pbs__set_error (connect_code >= 500 ? ECONNRESET : EACCES,
                    "proxy %s port %u: CONNECT refused: HTTP %ld",
                    r->proxy.host, r->proxy.port, connect_code);
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
    pbs__set_error (ETIMEDOUT, "%s port %u: %s", host, r->spec.port, msg);
    break;
  case CURLE_WRITE_ERROR:
    if (c->too_large) {
      pbs__set_error (EPROTO, "%s: answer too large", host);
      break;
    }
    pbs__set_error (ENOMEM, "out of memory");
    break;
  default:
    /* Refused, reset, TLS failures: worth a retry. */
    pbs__set_error (ECONNRESET, "%s port %u: %s", host, r->spec.port, msg);
  }
}

/* ------------------------------------------------- raw connections */

struct pbs_conn *
pbs__conn_open (struct pbs_remote *r)
{
  struct pbs_conn *t = calloc (1, sizeof *t);
  CURLcode rc;

  if (!t) {
    pbs__set_error (ENOMEM, "out of memory");
    return NULL;
  }
  t->fd = CURL_SOCKET_BAD;
  t->cancel_fd = r->cancel_fd;
  t->bytes_sent = &r->bytes_sent;
  t->curl = pbs__curl_handle (&t->call, r, "/");
  if (!t->curl)
    goto err;
  /* 1: connect, tunnel and TLS, then hand over (2 would be WebSocket). */
  rc = curl_easy_setopt (t->curl, CURLOPT_CONNECT_ONLY, 1L);
  if (rc == CURLE_OK)
    rc = curl_easy_perform (t->curl);
  if (rc != CURLE_OK) {
    pbs__curl_error (&t->call, t->curl, rc);
    goto err;
  }
  if (curl_easy_getinfo (t->curl, CURLINFO_ACTIVESOCKET, &t->fd) != CURLE_OK
      || t->fd == CURL_SOCKET_BAD) {
    pbs__set_error (ECONNRESET, "%s: connection lost after the handshake",
                    r->spec.host);
    goto err;
  }
  return t;
err:
  pbs__conn_close (t);
  return NULL;
}

void
pbs__conn_close (struct pbs_conn *t)
{
  if (!t)
    return;
  /* curl sends no close_notify for a CONNECT_ONLY handle's cleanup that
   * could block: the peer learns from the FIN. */
  if (t->curl)
    curl_easy_cleanup (t->curl);
  free (t);
}

static ssize_t
io_error (CURLcode rc, const char *op)
{
  pbs__set_error (ECONNRESET, "connection %s failed: %s", op,
                  curl_easy_strerror (rc));
  return -1;
}

ssize_t
pbs__conn_read (struct pbs_conn *t, void *buf, size_t len)
{
  size_t n = 0;
  CURLcode rc = curl_easy_recv (t->curl, buf, len, &n);

  if (rc == CURLE_AGAIN)
    return PBS_CONN_AGAIN;
  if (rc == CURLE_OK)
    return (ssize_t) n; /* 0: end of stream */
  return io_error (rc, "read");
}

ssize_t
pbs__conn_write (struct pbs_conn *t, const void *buf, size_t len)
{
  size_t n = 0;
  CURLcode rc = curl_easy_send (t->curl, buf, len, &n);

  if (rc == CURLE_AGAIN)
    return PBS_CONN_AGAIN;
  if (rc != CURLE_OK)
    return io_error (rc, "write");
  __atomic_fetch_add (t->bytes_sent, (uint64_t) n, __ATOMIC_RELAXED);
  return (ssize_t) n;
}

int
pbs__conn_wait (struct pbs_conn *t, bool want_write, int timeout_ms)
{
  int n = wait_fd ((int) t->fd, (short) (POLLIN | (want_write ? POLLOUT : 0)),
                   t->cancel_fd, timeout_ms);
  if (n == 0) {
    pbs__set_error (ETIMEDOUT, "no answer from the server for %d s",
                    timeout_ms / 1000);
    return -1;
  }
  return n == 1 ? 0 : -1;
}

int
pbs__conn_write_all (struct pbs_conn *t, const void *buf, size_t len)
{
  const uint8_t *p = buf;

  /* A 4 MiB body goes to curl in one call: OpenSSL cuts it into records
   * and curl writes them as the socket takes them. */
  while (len > 0) {
    ssize_t n = pbs__conn_write (t, p, len);
    if (n == -1)
      return -1;
    if (n == PBS_CONN_AGAIN) {
      int w = wait_fd ((int) t->fd, POLLOUT, t->cancel_fd,
                       PBS_REMOTE_REQUEST_TIMEOUT_MS);
      if (w == 0)
        pbs__set_error (ETIMEDOUT, "no answer from the server for %d s",
                        PBS_REMOTE_REQUEST_TIMEOUT_MS / 1000);
      if (w != 1)
        return -1;
      continue;
    }
    p += n;
    len -= (size_t) n;
  }
  return 0;
}
