/* remote-tls.c -- TCP connection and TLS to a PBS server for the protocol
 * upgrades, which need the raw connection afterwards (libcurl cannot hand
 * it over).  The certificate is checked during the handshake by
 * remote-certs.c, so nothing is sent before the decision.
 *
 * QCOW2PBS_STATS=1 prints "bytes_sent=N" (TLS application bytes written)
 * to stderr at exit, for the bandwidth benchmark. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdbool.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "remote-internal.h"

struct pbs_tls {
  int fd;
  SSL_CTX *ctx;
  SSL *ssl;
  BIO *wbio; /* buffering BIO over the socket (owned by ssl) */
  struct pbs_cert_policy policy; /* the certificate check's state */
};

/* Records are at most 16 KiB; written one by one they cost a write()
 * each, and on loopback each write() also runs the receiver's TCP path.
 * Buffering them sends a 256 KiB run per syscall. */
#define TLS_WBUF (256 * 1024)

/* Push buffered records to the socket as far as it takes them. */
static void
flush_wbio (struct pbs_tls *t)
{
  if (t->wbio && BIO_wpending (t->wbio) > 0)
    (void) BIO_flush (t->wbio);
}

static void pipe_block (sigset_t *old);
static void pipe_unblock (const sigset_t *old);

/* flush_wbio where SIGPIPE is not blocked yet. */
static void
flush_wbio_safe (struct pbs_tls *t)
{
  sigset_t old;

  if (!t->wbio || BIO_wpending (t->wbio) == 0)
    return;
  pipe_block (&old);
  (void) BIO_flush (t->wbio);
  ERR_clear_error ();
  pipe_unblock (&old);
}

static atomic_ullong bytes_sent;
static atomic_int stats_registered;

static void
print_stats (void)
{
  fprintf (stderr, "bytes_sent=%llu\n",
           (unsigned long long) atomic_load (&bytes_sent));
}

static void
maybe_register_stats (void)
{
  const char *s = getenv ("QCOW2PBS_STATS");
  if (s && strcmp (s, "1") == 0 && atomic_exchange (&stats_registered, 1) == 0)
    atexit (print_stats);
}

/* A peer that closed the socket must give EPIPE, not kill the process:
 * SIGPIPE is blocked around every call that may write to the socket, and
 * one raised by it is swallowed before the old mask returns. */
static void
pipe_block (sigset_t *old)
{
  sigset_t set;
  sigemptyset (&set);
  sigaddset (&set, SIGPIPE);
  pthread_sigmask (SIG_BLOCK, &set, old);
}

static void
pipe_unblock (const sigset_t *old)
{
  sigset_t set;
  struct timespec zero = { 0, 0 };

  sigemptyset (&set);
  sigaddset (&set, SIGPIPE);
  if (!sigismember (old, SIGPIPE))
    while (sigtimedwait (&set, NULL, &zero) == SIGPIPE)
      ;
  pthread_sigmask (SIG_SETMASK, old, NULL);
}

/* The first OpenSSL error as text, then clears the queue. */
static const char *
ssl_error_text (char *buf, size_t len)
{
  unsigned long e = ERR_get_error ();
  if (e == 0)
    snprintf (buf, len, "%s", errno ? strerror (errno) : "unknown error");
  else
    ERR_error_string_n (e, buf, len);
  ERR_clear_error ();
  return buf;
}

static int64_t
now_ms (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The caller's cancel descriptor (pbs_set_cancel_fd), -1 if none. */
static atomic_int cancel_fd = -1;

void
pbs_set_cancel_fd (int fd)
{
  atomic_store (&cancel_fd, fd);
}

bool
pbs__cancelled (void)
{
  struct pollfd p = { atomic_load (&cancel_fd), POLLIN, 0 };
  return p.fd >= 0 && poll (&p, 1, 0) == 1;
}

/* Wait up to TIMEOUT_MS for EVENTS on FD, or for the cancel descriptor.
 * 1 ready, 0 timed out, -1 cancelled (ECANCELED) or failed (set). */
static int
wait_fd (int fd, short events, int timeout_ms)
{
  struct pollfd p[2] = { { fd, events, 0 },
                         { atomic_load (&cancel_fd), POLLIN, 0 } };
  int64_t deadline = now_ms () + timeout_ms;
  nfds_t n = p[1].fd >= 0 ? 2 : 1;

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

int
pbs__wait_fd (int fd, bool want_read, int timeout_ms)
{
  return wait_fd (fd, want_read ? POLLIN : POLLOUT, timeout_ms);
}

/* Non-blocking connect to every address of HOST in turn, 10 s overall. */
static int
tcp_connect (const char *host, unsigned port_no)
{
  struct addrinfo hints = { 0 }, *res = NULL, *ai;
  char port[16];
  int fd = -1, err, last_errno = ECONNREFUSED;
  int64_t deadline = now_ms () + PBS_REMOTE_CONNECT_TIMEOUT_MS;

  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  snprintf (port, sizeof port, "%u", port_no);
  err = getaddrinfo (host, port, &hints, &res);
  if (err != 0) {
    pbs__set_error (ENOENT, "%s: %s", host, gai_strerror (err));
    return -1;
  }
  for (ai = res; ai; ai = ai->ai_next) {
    int one = 1, soerr = 0, n;
    socklen_t sl = sizeof soerr;

    fd = socket (ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                 ai->ai_protocol);
    if (fd == -1) {
      last_errno = errno;
      continue;
    }
    /* h2 download speed needs NODELAY; keepalive as the client
     * (docs/pbs-protocol.md §1.1). */
    setsockopt (fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt (fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    n = 120;
    setsockopt (fd, IPPROTO_TCP, TCP_KEEPIDLE, &n, sizeof n);
    if (connect (fd, ai->ai_addr, ai->ai_addrlen) == 0)
      break;
    if (errno != EINPROGRESS) {
      last_errno = errno;
      close (fd);
      fd = -1;
      continue;
    }
    n = (int) (deadline - now_ms ());
    n = wait_fd (fd, POLLOUT, n > 0 ? n : 0);
    if (n == -1) {
      close (fd);
      freeaddrinfo (res);
      return -1;
    }
    if (n == 1 && getsockopt (fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0
        && soerr == 0)
      break;
    last_errno = n == 0 ? ETIMEDOUT : (soerr ? soerr : errno);
    close (fd);
    fd = -1;
  }
  freeaddrinfo (res);
  if (fd == -1) {
    /* Refused and unreachable are worth a retry as much as a reset. */
    pbs__set_error (last_errno == ETIMEDOUT ? ETIMEDOUT : ECONNRESET,
                    "connect to %s port %u: %s", host, port_no,
                    strerror (last_errno));
    return -1;
  }
  return fd;
}

static int
handshake (struct pbs_tls *t, const struct pbs_remote *r)
{
  int64_t deadline = now_ms () + PBS_REMOTE_CONNECT_TIMEOUT_MS;
  char buf[256];

  for (;;) {
    sigset_t old;
    int rc, e, left;

    pipe_block (&old);
    rc = SSL_connect (t->ssl);
    e = SSL_get_error (t->ssl, rc);
    pipe_unblock (&old);
    if (rc == 1)
      return 0;
    if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
      /* A refused certificate is final; anything else may pass. */
      if (pbs__cert_policy_error (&t->policy, r->spec.host))
        ERR_clear_error ();
      else
        pbs__set_error (ECONNRESET, "%s: TLS handshake failed: %s",
                        r->spec.host, ssl_error_text (buf, sizeof buf));
      return -1;
    }
    left = (int) (deadline - now_ms ());
    if (left <= 0
        || pbs__tls_wait (t, e == SSL_ERROR_WANT_READ,
                          e == SSL_ERROR_WANT_WRITE, left)
               == -1) {
      pbs__set_error (ETIMEDOUT, "%s: TLS handshake timed out", r->spec.host);
      return -1;
    }
  }
}

struct pbs_tls *
pbs__tls_connect (const struct pbs_remote *r)
{
  struct pbs_tls *t;
  char buf[256];

  maybe_register_stats ();
  t = calloc (1, sizeof *t);
  if (!t) {
    pbs__set_error (ENOMEM, "out of memory");
    return NULL;
  }
  t->fd = -1;
  t->ctx = SSL_CTX_new (TLS_client_method ());
  if (!t->ctx)
    goto ssl_err;
  SSL_CTX_set_min_proto_version (t->ctx, TLS1_2_VERSION);
  if (pbs__cert_policy_apply (t->ctx, &t->policy, r) == -1)
    goto err;
  /* No SSL_MODE_ENABLE_PARTIAL_WRITE: with it every SSL_write returns
   * after one 16 KiB record, and each call pays the SIGPIPE masking (three
   * syscalls) besides the write itself -- measured as most of the
   * client's syscalls on an upload.  Without it one SSL_write sends the
   * whole buffer; after WANT_WRITE our callers retry with the same
   * buffer and length, as OpenSSL then requires. */
  SSL_CTX_set_mode (t->ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  t->ssl = SSL_new (t->ctx);
  if (!t->ssl)
    goto ssl_err;
  if (!pbs__is_ip_literal (r->spec.host))
    SSL_set_tlsext_host_name (t->ssl, r->spec.host);
  if (r->proxy.host) {
    t->fd = tcp_connect (r->proxy.host, r->proxy.port);
    if (t->fd == -1
        || pbs__proxy_connect (t->fd, &r->proxy, r->spec.authority,
                               PBS_REMOTE_CONNECT_TIMEOUT_MS)
               == -1)
      goto err;
  }
  else {
    t->fd = tcp_connect (r->spec.host, r->spec.port);
    if (t->fd == -1)
      goto err;
  }
  if (SSL_set_fd (t->ssl, t->fd) != 1)
    goto ssl_err;
  {
    BIO *sock = SSL_get_wbio (t->ssl), *wb = BIO_new (BIO_f_buffer ());
    if (!wb || BIO_set_write_buffer_size (wb, TLS_WBUF) != 1
        || !BIO_up_ref (sock)) {
      BIO_free (wb);
      goto ssl_err;
    }
    BIO_push (wb, sock);
    SSL_set0_wbio (t->ssl, wb);
    t->wbio = wb;
  }
  if (handshake (t, r) == -1)
    goto err;
  return t;

ssl_err:
  pbs__set_error (EPROTO, "TLS setup: %s", ssl_error_text (buf, sizeof buf));
err:
  pbs__tls_close (t);
  return NULL;
}

void
pbs__tls_close (struct pbs_tls *t)
{
  if (!t)
    return;
  /* No close_notify: the peer learns from the FIN, and a server that
   * vanished must not make us block or raise SIGPIPE here. */
  SSL_free (t->ssl);
  SSL_CTX_free (t->ctx);
  if (t->fd >= 0)
    close (t->fd);
  ERR_clear_error ();
  free (t);
}

int
pbs__tls_fd (const struct pbs_tls *t)
{
  return t->fd;
}

static ssize_t
io_result (struct pbs_tls *t, int rc, const char *op)
{
  char buf[256];
  int e = SSL_get_error (t->ssl, rc);

  switch (e) {
  case SSL_ERROR_WANT_READ:
    return PBS_TLS_AGAIN_READ;
  case SSL_ERROR_WANT_WRITE:
    return PBS_TLS_AGAIN_WRITE;
  case SSL_ERROR_ZERO_RETURN:
    return 0;
  case SSL_ERROR_SYSCALL:
    if (errno == 0 || rc == 0) {
      /* EOF without close_notify: PBS (hyper) just closes. */
      ERR_clear_error ();
      return 0;
    }
    pbs__set_error (ECONNRESET, "connection %s failed: %s", op,
                    strerror (errno));
    ERR_clear_error ();
    return -1;
  default:
    pbs__set_error (ECONNRESET, "connection %s failed: %s", op,
                    ssl_error_text (buf, sizeof buf));
    return -1;
  }
}

ssize_t
pbs__tls_read (struct pbs_tls *t, void *buf, size_t len)
{
  int n = len > INT32_MAX ? INT32_MAX : (int) len;
  sigset_t old;
  ssize_t ret;
  int rc;

  /* SSL_read may write too (alerts, TLS 1.3 key updates). */
  pipe_block (&old);
  flush_wbio (t);
  ERR_clear_error ();
  errno = 0;
  rc = SSL_read (t->ssl, buf, n);
  ret = rc > 0 ? rc : io_result (t, rc, "read");
  flush_wbio (t);
  pipe_unblock (&old);
  return ret;
}

ssize_t
pbs__tls_write (struct pbs_tls *t, const void *buf, size_t len)
{
  int n = len > INT32_MAX ? INT32_MAX : (int) len;
  sigset_t old;
  ssize_t ret;
  int rc;

  pipe_block (&old);
  ERR_clear_error ();
  errno = 0;
  rc = SSL_write (t->ssl, buf, n);
  if (rc > 0) {
    atomic_fetch_add (&bytes_sent, (unsigned long long) rc);
    ret = rc;
    /* What the socket does not take now stays buffered; pbs__tls_wait
     * then also waits for POLLOUT and flushes it. */
    ERR_clear_error ();
    flush_wbio (t);
  }
  else {
    ret = io_result (t, rc, "write");
    if (ret == 0) {
      pbs__set_error (ECONNRESET, "connection closed by the server");
      ret = -1;
    }
  }
  pipe_unblock (&old);
  return ret;
}

int
pbs__tls_wait (struct pbs_tls *t, bool want_read, bool want_write,
               int timeout_ms)
{
  int n;

  /* Data already decrypted inside OpenSSL does not show on the fd. */
  if (want_read && SSL_pending (t->ssl) > 0)
    return 0;
  /* Records still in the write buffer must reach the peer, or it may
   * never answer what we wait for. */
  flush_wbio_safe (t);
  if (t->wbio && BIO_wpending (t->wbio) > 0)
    want_write = true;
  n = wait_fd (t->fd,
               (short) ((want_read ? POLLIN : 0) | (want_write ? POLLOUT : 0)),
               timeout_ms);
  if (n == 0) {
    pbs__set_error (ETIMEDOUT, "no answer from the server for %d s",
                    timeout_ms / 1000);
    return -1;
  }
  if (n == -1)
    return -1;
  flush_wbio_safe (t);
  return 0;
}

int
pbs__tls_write_all (struct pbs_tls *t, const void *buf, size_t len)
{
  const uint8_t *p = buf;

  while (len > 0) {
    ssize_t n = pbs__tls_write (t, p, len);
    if (n == -1)
      return -1;
    if (n == PBS_TLS_AGAIN_READ || n == PBS_TLS_AGAIN_WRITE) {
      if (pbs__tls_wait (t, n == PBS_TLS_AGAIN_READ,
                         n == PBS_TLS_AGAIN_WRITE,
                         PBS_REMOTE_REQUEST_TIMEOUT_MS)
          == -1)
        return -1;
      continue;
    }
    p += n;
    len -= (size_t) n;
  }
  return 0;
}
