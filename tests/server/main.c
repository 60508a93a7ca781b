/* main.c -- pbs-test-server: options, configuration files, the TLS
 * listener on 127.0.0.1, one thread per connection, clean exit on
 * SIGTERM/SIGINT.  Usage and files: tests/server/README.md. */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/rand.h>

#include "server.h"

struct srv_config srv_config;

static SSL_CTX *ssl_ctx;
static int listen_fd = -1;
static _Atomic int stopping; /* set by the signal thread */

/* Connection threads, so that SIGTERM can end them (their threads then
 * end their sessions, which removes unfinished snapshots) and join them:
 * joining, rather than detaching, lets every thread finish its OpenSSL
 * thread-exit cleanup before the process exits. */
struct slot {
  bool used, done;
  int fd;
  pthread_t th;
};
static pthread_mutex_t conns_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t conns_cond = PTHREAD_COND_INITIALIZER;
static struct slot slots[1024];
static unsigned next_conn_id;

void
srv_log (const char *fmt, ...)
{
  char line[1024];
  struct timespec ts;
  struct tm tm;
  va_list ap;
  int n;

  clock_gettime (CLOCK_REALTIME, &ts);
  gmtime_r (&ts.tv_sec, &tm);
  n = (int) strftime (line, sizeof line, "%H:%M:%S", &tm);
  n += snprintf (line + n, sizeof line - (size_t) n, ".%03ld ",
                 ts.tv_nsec / 1000000);
  va_start (ap, fmt);
  vsnprintf (line + n, sizeof line - (size_t) n - 1, fmt, ap);
  va_end (ap);
  fprintf (stderr, "%s\n", line);
}

struct srv_store *
srv_find_store (const char *name)
{
  size_t i;

  if (name == NULL)
    return NULL;
  for (i = 0; i < srv_config.nstores; i++)
    if (!strcmp (srv_config.stores[i].name, name))
      return &srv_config.stores[i];
  return NULL;
}

static void
usage (FILE *f)
{
  fprintf (f,
           "Usage: pbs-test-server --cert FILE --key FILE "
           "--datastore NAME=PATH...\n"
           "         [--tokens FILE] [--users FILE] [--port N] "
           "[--auth-delay SECONDS]\n"
           "A strict PBS-compatible HTTPS test server on 127.0.0.1.\n"
           "Prints \"READY <port>\" on stdout when it accepts connections.\n"
           "  --datastore NAME=PATH  serve the datastore directory PATH as "
           "NAME (repeatable;\n"
           "                         created if missing)\n"
           "  --tokens FILE          API tokens, lines "
           "\"user@realm!name SECRET [expired]\"\n"
           "  --users FILE           ticket-login users, lines "
           "\"user@realm PASSWORD\"\n"
           "  --cert FILE --key FILE TLS certificate (PEM) and its key\n"
           "  --port N               TCP port (default 0: a free one)\n"
           "  --auth-delay SECONDS   delay before every 401 answer "
           "(default 0; PBS: 3)\n");
}

static int
die (const char *fmt, ...) __attribute__ ((format (printf, 1, 2)));

static int
die (const char *fmt, ...)
{
  va_list ap;

  fprintf (stderr, "pbs-test-server: ");
  va_start (ap, fmt);
  vfprintf (stderr, fmt, ap);
  va_end (ap);
  fprintf (stderr, "\n");
  exit (1);
}

/* Lines of whitespace-separated words; '#' starts a comment line. */
static void
load_words (const char *path, void (*fn) (const char *path, unsigned lineno,
                                          char **w, size_t n))
{
  FILE *f = fopen (path, "re");
  char *line = NULL, *q, *w[4];
  size_t cap = 0, n;
  unsigned lineno = 0;

  if (f == NULL)
    die ("%s: %s", path, strerror (errno));
  while (getline (&line, &cap, f) != -1) {
    lineno++;
    n = 0;
    q = line;
    for (;;) {
      q += strspn (q, " \t\r\n");
      if (*q == 0 || n == 4)
        break;
      w[n++] = q;
      q += strcspn (q, " \t\r\n");
      if (*q)
        *q++ = 0;
    }
    if (n == 0 || w[0][0] == '#')
      continue;
    fn (path, lineno, w, n);
  }
  free (line);
  fclose (f);
}

static void
add_token (const char *path, unsigned lineno, char **w, size_t n)
{
  struct srv_token *t;

  if (n < 2 || n > 3 || strchr (w[0], '!') == NULL
      || (n == 3 && strcmp (w[2], "expired")))
    die ("%s:%u: expected \"user@realm!name SECRET [expired]\"", path,
         lineno);
  t = realloc (srv_config.tokens,
               (srv_config.ntokens + 1) * sizeof *srv_config.tokens);
  if (t == NULL)
    die ("out of memory");
  srv_config.tokens = t;
  t = &t[srv_config.ntokens++];
  t->id = strdup (w[0]);
  t->secret = strdup (w[1]);
  t->expired = n == 3;
}

static void
add_user (const char *path, unsigned lineno, char **w, size_t n)
{
  struct srv_user *u;

  if (n != 2 || strchr (w[0], '@') == NULL || strchr (w[0], '!'))
    die ("%s:%u: expected \"user@realm PASSWORD\"", path, lineno);
  u = realloc (srv_config.users,
               (srv_config.nusers + 1) * sizeof *srv_config.users);
  if (u == NULL)
    die ("out of memory");
  srv_config.users = u;
  u = &u[srv_config.nusers++];
  u->id = strdup (w[0]);
  u->password = strdup (w[1]);
}

static void
add_store (const char *arg)
{
  const char *eq = strchr (arg, '=');
  struct srv_store *s;

  if (eq == NULL || eq == arg || eq[1] == 0)
    die ("--datastore %s: expected NAME=PATH", arg);
  s = realloc (srv_config.stores,
               (srv_config.nstores + 1) * sizeof *srv_config.stores);
  if (s == NULL)
    die ("out of memory");
  srv_config.stores = s;
  s = &s[srv_config.nstores++];
  s->name = strndup (arg, (size_t) (eq - arg));
  s->path = strdup (eq + 1);
  if (!srv_fmt_safe_id (s->name) || strlen (s->name) < 3
      || strlen (s->name) > 32)
    die ("--datastore %s: the name must be a safe id of 3-32 characters",
         arg);
  s->ds = pbs_datastore_open (s->path, true);
  if (s->ds == NULL)
    die ("%s: %s", s->path, pbs_errmsg ());
}

/* Join the threads that have finished.  Called with conns_lock held. */
static void
reap (void)
{
  size_t i;

  for (i = 0; i < sizeof slots / sizeof slots[0]; i++)
    if (slots[i].used && slots[i].done) {
      pthread_join (slots[i].th, NULL);
      slots[i].used = false;
    }
}

static size_t
running (void)
{
  size_t i, n = 0;

  for (i = 0; i < sizeof slots / sizeof slots[0]; i++)
    n += slots[i].used && !slots[i].done;
  return n;
}

/* Socket reads of up to 1 MiB through a buffering BIO, from which
 * OpenSSL takes each record header and body.  OpenSSL's own read-ahead
 * cannot do this: its buffer holds one record (a larger one is memmoved
 * for every record), and one read() per 16 KiB record made the kernel
 * send a window update for nearly every read -- on an upload that was a
 * third of the connection thread's time, more than the decryption.
 * Read-ahead stays off: the buffering BIO blocks until it can give all
 * that was asked, which must never be more than the peer has sent.  h2.c
 * polls only when this buffer is empty too. */
static bool
buffer_reads (SSL *ssl)
{
  BIO *sock = SSL_get_rbio (ssl), *rb = BIO_new (BIO_f_buffer ());

  if (!rb || BIO_set_read_buffer_size (rb, 1 << 20) != 1
      || !BIO_up_ref (sock)) {
    BIO_free (rb);
    return false;
  }
  BIO_push (rb, sock);
  SSL_set0_rbio (ssl, rb);
  return true;
}

static void *
conn_thread (void *arg)
{
  struct srv_conn *c = arg;

  c->ssl = SSL_new (ssl_ctx);
  if (c->ssl && SSL_set_fd (c->ssl, c->fd) == 1 && buffer_reads (c->ssl)
      && SSL_accept (c->ssl) == 1)
    srv_serve_connection (c);
  else
    srv_log ("conn %u: TLS handshake failed", c->id);
  ERR_clear_error ();
  if (c->ssl)
    SSL_free (c->ssl);
  close (c->fd);
  pthread_mutex_lock (&conns_lock);
  slots[c->slot].done = true;
  pthread_cond_broadcast (&conns_cond);
  pthread_mutex_unlock (&conns_lock);
  free (c->buf);
  free (c);
  return NULL;
}

static void *
signal_thread (void *arg)
{
  sigset_t *set = arg;
  int sig;

  if (sigwait (set, &sig) == 0) {
    srv_log ("signal %d: shutting down", sig);
    stopping = 1;
    shutdown (listen_fd, SHUT_RDWR);
  }
  return NULL;
}

static void
setup_tls (const char *cert, const char *key)
{
  ssl_ctx = SSL_CTX_new (TLS_server_method ());
  if (ssl_ctx == NULL)
    die ("SSL_CTX_new failed");
  SSL_CTX_set_min_proto_version (ssl_ctx, TLS1_2_VERSION);
  SSL_CTX_set_options (ssl_ctx, SSL_OP_NO_RENEGOTIATION);
  if (SSL_CTX_use_certificate_chain_file (ssl_ctx, cert) != 1)
    die ("%s: cannot load the certificate", cert);
  if (SSL_CTX_use_PrivateKey_file (ssl_ctx, key, SSL_FILETYPE_PEM) != 1
      || SSL_CTX_check_private_key (ssl_ctx) != 1)
    die ("%s: cannot load the key or it does not match the certificate",
         key);
}

int
main (int argc, char **argv)
{
  static const struct option opts[] = {
    { "datastore", required_argument, NULL, 'd' },
    { "tokens", required_argument, NULL, 't' },
    { "users", required_argument, NULL, 'u' },
    { "cert", required_argument, NULL, 'c' },
    { "key", required_argument, NULL, 'k' },
    { "port", required_argument, NULL, 'p' },
    { "auth-delay", required_argument, NULL, 'D' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  const char *cert = NULL, *key = NULL;
  unsigned long port = 0;
  struct sockaddr_in sa;
  socklen_t salen = sizeof sa;
  sigset_t sigs;
  pthread_t sigth;
  int c, one = 1;
  char *end;

  /* Every chunk upload is a 4 MiB body buffer.  By default glibc mmaps
   * each one and unmaps it on free, so every upload page-faults and
   * zeroes 1024 fresh pages (measured: ~7% of the server's CPU time in
   * the benchmark); keep such buffers in the heap for reuse instead. */
  mallopt (M_MMAP_THRESHOLD, 64 * 1024 * 1024);
  mallopt (M_TRIM_THRESHOLD, 256 * 1024 * 1024);

  while ((c = getopt_long (argc, argv, "", opts, NULL)) != -1) {
    switch (c) {
    case 'd':
      add_store (optarg);
      break;
    case 't':
      load_words (optarg, add_token);
      break;
    case 'u':
      load_words (optarg, add_user);
      break;
    case 'c':
      cert = optarg;
      break;
    case 'k':
      key = optarg;
      break;
    case 'p':
      errno = 0;
      port = strtoul (optarg, &end, 10);
      if (*optarg == 0 || *end || errno || port > 65535)
        die ("--port %s: not a port number", optarg);
      break;
    case 'D':
      errno = 0;
      srv_config.auth_delay = strtod (optarg, &end);
      if (*optarg == 0 || *end || errno || srv_config.auth_delay < 0
          || srv_config.auth_delay > 60)
        die ("--auth-delay %s: expected 0..60 seconds", optarg);
      break;
    case 'h':
      usage (stdout);
      return 0;
    default:
      usage (stderr);
      return 2;
    }
  }
  if (optind != argc || cert == NULL || key == NULL
      || srv_config.nstores == 0) {
    usage (stderr);
    return 2;
  }
  if (RAND_bytes (srv_config.ticket_key, 32) != 1
      || RAND_bytes (srv_config.csrf_key, 32) != 1)
    die ("no random bytes");
  setup_tls (cert, key);

  listen_fd = socket (AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listen_fd == -1)
    die ("socket: %s", strerror (errno));
  setsockopt (listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  memset (&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_port = htons ((uint16_t) port);
  sa.sin_addr.s_addr = htonl (INADDR_LOOPBACK); /* loopback only */
  if (bind (listen_fd, (struct sockaddr *) &sa, sizeof sa) == -1
      || listen (listen_fd, 64) == -1
      || getsockname (listen_fd, (struct sockaddr *) &sa, &salen) == -1)
    die ("127.0.0.1:%lu: %s", port, strerror (errno));

  signal (SIGPIPE, SIG_IGN);
  sigemptyset (&sigs);
  sigaddset (&sigs, SIGTERM);
  sigaddset (&sigs, SIGINT);
  pthread_sigmask (SIG_BLOCK, &sigs, NULL);
  if (pthread_create (&sigth, NULL, signal_thread, &sigs) != 0)
    die ("pthread_create failed");

  srv_log ("listening on 127.0.0.1:%u", ntohs (sa.sin_port));
  printf ("READY %u\n", ntohs (sa.sin_port));
  fflush (stdout);

  while (!stopping) {
    int fd = accept4 (listen_fd, NULL, NULL, SOCK_CLOEXEC);
    struct srv_conn *conn;

    if (fd == -1) {
      if (stopping)
        break;
      if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE
          || errno == ENFILE)
        continue;
      die ("accept: %s", strerror (errno));
    }
    setsockopt (fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    conn = calloc (1, sizeof *conn);
    if (conn == NULL) {
      close (fd);
      continue;
    }
    conn->fd = fd;
    pthread_mutex_lock (&conns_lock);
    reap ();
    conn->id = ++next_conn_id;
    for (conn->slot = 0; conn->slot < sizeof slots / sizeof slots[0];
         conn->slot++)
      if (!slots[conn->slot].used)
        break;
    if (conn->slot == sizeof slots / sizeof slots[0]
        || pthread_create (&slots[conn->slot].th, NULL, conn_thread, conn)
             != 0) {
      pthread_mutex_unlock (&conns_lock);
      srv_log ("too many connections");
      close (fd);
      free (conn);
      continue;
    }
    slots[conn->slot].used = true;
    slots[conn->slot].done = false;
    slots[conn->slot].fd = fd;
    pthread_mutex_unlock (&conns_lock);
  }
  pthread_join (sigth, NULL);

  /* End open connections; each thread ends its session (an unfinished
   * backup is removed) before it unregisters. */
  pthread_mutex_lock (&conns_lock);
  for (size_t i = 0; i < sizeof slots / sizeof slots[0]; i++)
    if (slots[i].used && !slots[i].done)
      shutdown (slots[i].fd, SHUT_RDWR);
  while (running () > 0) {
    struct timespec ts;
    clock_gettime (CLOCK_REALTIME, &ts);
    ts.tv_sec += 10;
    if (pthread_cond_timedwait (&conns_cond, &conns_lock, &ts) == ETIMEDOUT)
      break;
  }
  reap ();
  pthread_mutex_unlock (&conns_lock);
  close (listen_fd);
  for (size_t i = 0; i < srv_config.nstores; i++)
    pbs_datastore_close (srv_config.stores[i].ds);
  SSL_CTX_free (ssl_ctx);
  srv_log ("exiting");
  return 0;
}
