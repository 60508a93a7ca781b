/* h2-raw-client.c -- a tiny PBS protocol client for the server tests: TLS
 * (no certificate check: test use only), one HTTP/1.1 request, and after a
 * 101 answer HTTP/2 requests read from stdin, so that a test can send
 * every deliberately bad request directly and see the server's answer.
 *
 *   h2-raw-client [options] PORT METHOD TARGET
 *     -H 'Name: value'   add a request header (repeatable)
 *     -A FILE            add the header lines in FILE (keeps secrets out
 *                        of argv)
 *     -d TEXT | -D FILE  request body
 *     -u TOKEN           upgrade: "Connection: upgrade" + "Upgrade: TOKEN"
 *     -0                 send HTTP/1.0 instead of HTTP/1.1
 *     -o FILE            write the response body to FILE
 *
 * Every answer is printed as one line "STATUS CONTENT-TYPE BODY" (CONTENT-
 * TYPE "-" when absent; BODY with \n escaped, or "<N bytes>" when it is
 * binary or written to a file).  After a 101 ("101 upgraded") each stdin
 * line is one HTTP/2 request, answered before the next is read:
 *
 *     METHOD PATH [ct=TYPE|ct=none] [out=FILE] [@BODYFILE | BODY TEXT...]
 *     ECHO TEXT    print TEXT (a marker for the test)
 *     DROP         close the TCP connection at once (no GOAWAY)
 *     SETTINGS     print the server's HTTP/2 settings and how many bytes
 *                  the connection window lets us send
 *
 * The default content type is application/x-www-form-urlencoded, as the
 * official client sends it.  End of input sends GOAWAY and closes. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

struct buf {
  uint8_t *p;
  size_t len, cap;
};

static SSL *ssl;
static int sock = -1;
static struct buf in; /* received, not yet consumed */

static void
die (const char *fmt, ...) __attribute__ ((format (printf, 1, 2), noreturn));

static void
die (const char *fmt, ...)
{
  va_list ap;

  fprintf (stderr, "h2-raw-client: ");
  va_start (ap, fmt);
  vfprintf (stderr, fmt, ap);
  va_end (ap);
  fprintf (stderr, "\n");
  exit (1);
}

static void
buf_add (struct buf *b, const void *p, size_t n)
{
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + n + 1)
      cap *= 2;
    b->p = realloc (b->p, cap);
    if (b->p == NULL)
      die ("out of memory");
    b->cap = cap;
  }
  memcpy (b->p + b->len, p, n);
  b->len += n;
  b->p[b->len] = 0;
}

static int
read_more (void)
{
  uint8_t tmp[65536];
  int n = SSL_read (ssl, tmp, sizeof tmp);

  if (n <= 0)
    return 0;
  buf_add (&in, tmp, (size_t) n);
  return n;
}

static void
write_all (const void *p, size_t n)
{
  const uint8_t *b = p;

  while (n > 0) {
    int w = SSL_write (ssl, b, (int) n);
    if (w <= 0)
      die ("connection lost while writing");
    b += w;
    n -= (size_t) w;
  }
}

static void
read_file (const char *path, struct buf *b)
{
  FILE *f = fopen (path, "rb");
  char tmp[65536];
  size_t n;

  if (f == NULL)
    die ("%s: %s", path, strerror (errno));
  while ((n = fread (tmp, 1, sizeof tmp, f)) > 0)
    buf_add (b, tmp, n);
  fclose (f);
}

/* "STATUS CT BODY" */
static void
print_answer (int status, const char *ct, const struct buf *body,
              const char *out)
{
  size_t i;
  bool text = true;

  if (out) {
    FILE *f = fopen (out, "wb");
    if (f == NULL || fwrite (body->p ? body->p : (uint8_t *) "", 1,
                             body->len, f) != body->len || fclose (f) != 0)
      die ("%s: cannot write", out);
    printf ("%d %s <%zu bytes>\n", status, ct ? ct : "-", body->len);
    fflush (stdout);
    return;
  }
  for (i = 0; i < body->len; i++)
    if (body->p[i] < 0x20 && body->p[i] != '\n' && body->p[i] != '\t')
      text = false;
  printf ("%d %s ", status, ct ? ct : "-");
  if (!text)
    printf ("<%zu bytes>", body->len);
  else
    for (i = 0; i < body->len; i++) {
      if (body->p[i] == '\n')
        fputs ("\\n", stdout);
      else
        putchar (body->p[i]);
    }
  putchar ('\n');
  fflush (stdout);
}

/* ------------------------------------------------------------- HTTP/2 */

struct answer {
  int32_t id;
  int status;
  char ct[256];
  struct buf body;
  bool done;
};

static struct answer ans;

static int
on_header (nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name,
           size_t namelen, const uint8_t *value, size_t valuelen,
           uint8_t flags, void *user)
{
  (void) s;
  (void) flags;
  (void) user;
  if (f->hd.stream_id != ans.id)
    return 0;
  if (namelen == 7 && !memcmp (name, ":status", 7))
    ans.status = (int) strtol ((const char *) value, NULL, 10);
  else if (namelen == 12 && !memcmp (name, "content-type", 12))
    snprintf (ans.ct, sizeof ans.ct, "%.*s", (int) valuelen, value);
  return 0;
}

static int
on_data (nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data,
         size_t len, void *user)
{
  (void) s;
  (void) flags;
  (void) user;
  if (id == ans.id)
    buf_add (&ans.body, data, len);
  return 0;
}

static int
on_close (nghttp2_session *s, int32_t id, uint32_t code, void *user)
{
  (void) s;
  (void) user;
  if (id == ans.id) {
    ans.done = true;
    if (code && ans.status == 0)
      ans.status = -(int) code;
  }
  return 0;
}

struct body_src {
  const struct buf *b;
  size_t off;
};

static ssize_t
read_body (nghttp2_session *s, int32_t id, uint8_t *out, size_t length,
           uint32_t *flags, nghttp2_data_source *src, void *user)
{
  struct body_src *bs = src->ptr;
  size_t n = bs->b->len - bs->off;

  (void) s;
  (void) id;
  (void) user;
  if (n > length)
    n = length;
  if (n)
    memcpy (out, bs->b->p + bs->off, n);
  bs->off += n;
  if (bs->off == bs->b->len)
    *flags |= NGHTTP2_DATA_FLAG_EOF;
  return (ssize_t) n;
}

/* Send and receive until the current answer is complete (or the session
 * ends).  Returns false if the connection is gone. */
static bool
pump (nghttp2_session *s)
{
  for (;;) {
    const uint8_t *data;
    ssize_t n;

    while ((n = nghttp2_session_mem_send (s, &data)) > 0)
      write_all (data, (size_t) n);
    if (n < 0)
      die ("nghttp2: %s", nghttp2_strerror ((int) n));
    if (ans.done)
      return true;
    if (!nghttp2_session_want_read (s) && !nghttp2_session_want_write (s))
      return false;
    in.len = 0;
    if (read_more () == 0)
      return false;
    n = nghttp2_session_mem_recv (s, in.p, in.len);
    in.len = 0;
    if (n < 0)
      die ("nghttp2: %s", nghttp2_strerror ((int) n));
  }
}

static void
h2_request (nghttp2_session *s, char *line)
{
  char *p = line;
  const char *ct = "application/x-www-form-urlencoded";
  char *out = NULL, *method, *path;
  struct buf body = { 0 };
  struct body_src src = { &body, 0 };
  nghttp2_data_provider prd = { .source.ptr = &src,
                                .read_callback = read_body };
  nghttp2_nv nv[6];
  size_t nnv = 0;
  bool has_body = false;

  method = strsep (&p, " ");
  path = p ? strsep (&p, " ") : NULL;
  if (path == NULL)
    die ("bad command: %s", line);
  while (p && *p) {
    if (!strncmp (p, "ct=", 3) || !strncmp (p, "out=", 4)) {
      char *w = strsep (&p, " ");
      if (w[0] == 'c')
        ct = !strcmp (w + 3, "none") ? NULL : w + 3;
      else
        out = w + 4;
      continue;
    }
    if (*p == '@')
      read_file (p + 1, &body);
    else
      buf_add (&body, p, strlen (p));
    has_body = true;
    break;
  }
#define NV(n, v)                                                            \
  do {                                                                      \
    nv[nnv].name = (uint8_t *) (n);                                         \
    nv[nnv].namelen = strlen (n);                                           \
    nv[nnv].value = (uint8_t *) (v);                                        \
    nv[nnv].valuelen = strlen (v);                                          \
    nv[nnv].flags = NGHTTP2_NV_FLAG_NONE;                                   \
    nnv++;                                                                  \
  } while (0)
  NV (":method", method);
  NV (":scheme", "https");
  NV (":authority", "localhost:8007");
  NV (":path", path);
  NV ("user-agent", "proxmox-backup-client/1.0");
  if (ct)
    NV ("content-type", ct);
#undef NV
  free (ans.body.p);
  memset (&ans, 0, sizeof ans);
  ans.id = nghttp2_submit_request (s, NULL, nv, nnv,
                                   has_body ? &prd : NULL, NULL);
  if (ans.id < 0)
    die ("nghttp2_submit_request: %s", nghttp2_strerror (ans.id));
  if (!pump (s)) {
    printf ("connection closed\n");
    fflush (stdout);
    exit (0);
  }
  print_answer (ans.status, ans.ct[0] ? ans.ct : NULL, &ans.body, out);
  free (body.p);
}

static void
h2_mode (void)
{
  nghttp2_session_callbacks *cb;
  nghttp2_session *s;
  nghttp2_settings_entry iv[] = {
    /* proxmox-backup-client's settings (docs/pbs-protocol.md §1.4) */
    { NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, (1u << 31) - 2 },
    { NGHTTP2_SETTINGS_MAX_FRAME_SIZE, 4 * 1024 * 1024 },
  };
  char *line = NULL;
  size_t cap = 0;
  ssize_t n;

  nghttp2_session_callbacks_new (&cb);
  nghttp2_session_callbacks_set_on_header_callback (cb, on_header);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback (cb, on_data);
  nghttp2_session_callbacks_set_on_stream_close_callback (cb, on_close);
  if (nghttp2_session_client_new (&s, cb, NULL) != 0)
    die ("nghttp2_session_client_new failed");
  nghttp2_session_callbacks_del (cb);
  nghttp2_submit_settings (s, NGHTTP2_FLAG_NONE, iv, 2);
  nghttp2_session_set_local_window_size (s, NGHTTP2_FLAG_NONE, 0,
                                         (1 << 30) - 1 + (1 << 30) - 1);
  if (in.len) {
    if (nghttp2_session_mem_recv (s, in.p, in.len) < 0)
      die ("bad HTTP/2 data from the server");
    in.len = 0;
  }
  printf ("101 upgraded\n");
  fflush (stdout);
  while ((n = getline (&line, &cap, stdin)) != -1) {
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
      line[--n] = 0;
    if (n == 0 || line[0] == '#')
      continue;
    if (!strncmp (line, "ECHO", 4)) {
      printf ("%s\n", line[4] ? line + 5 : "");
      fflush (stdout);
    }
    else if (!strcmp (line, "SETTINGS")) {
      printf ("initial_window=%u max_frame=%u connection_window=%d\n",
              nghttp2_session_get_remote_settings (
                s, NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE),
              nghttp2_session_get_remote_settings (
                s, NGHTTP2_SETTINGS_MAX_FRAME_SIZE),
              nghttp2_session_get_remote_window_size (s));
      fflush (stdout);
    }
    else if (!strcmp (line, "DROP")) {
      close (sock); /* no TLS close_notify, no GOAWAY */
      exit (0);
    }
    else
      h2_request (s, line);
  }
  free (line);
  nghttp2_session_terminate_session (s, NGHTTP2_NO_ERROR);
  {
    const uint8_t *data;
    while ((n = nghttp2_session_mem_send (s, &data)) > 0)
      write_all (data, (size_t) n);
  }
  nghttp2_session_del (s);
  SSL_shutdown (ssl);
}

/* ----------------------------------------------------------- HTTP/1.1 */

static void
add_header_lines (struct buf *req, const char *text)
{
  const char *p = text;

  while (*p) {
    size_t n = strcspn (p, "\r\n");
    if (n) {
      buf_add (req, p, n);
      buf_add (req, "\r\n", 2);
    }
    p += n;
    p += strspn (p, "\r\n");
  }
}

int
main (int argc, char **argv)
{
  struct buf req = { 0 }, hdrs = { 0 }, body = { 0 }, resp = { 0 };
  const char *upgrade = NULL, *out = NULL, *ct = NULL;
  bool http10 = false, chunked = false;
  long clen = -1;
  unsigned long port;
  struct sockaddr_in sa;
  SSL_CTX *ctx;
  char *end, *hend, *p;
  int opt, status, one = 1;

  while ((opt = getopt (argc, argv, "H:A:d:D:u:0o:")) != -1) {
    switch (opt) {
    case 'H':
      add_header_lines (&hdrs, optarg);
      break;
    case 'A': {
      struct buf f = { 0 };
      read_file (optarg, &f);
      add_header_lines (&hdrs, f.p ? (char *) f.p : "");
      free (f.p);
      break;
    }
    case 'd':
      buf_add (&body, optarg, strlen (optarg));
      break;
    case 'D':
      read_file (optarg, &body);
      break;
    case 'u':
      upgrade = optarg;
      break;
    case '0':
      http10 = true;
      break;
    case 'o':
      out = optarg;
      break;
    default:
      return 2;
    }
  }
  if (argc - optind != 3)
    die ("usage: h2-raw-client [options] PORT METHOD TARGET");
  port = strtoul (argv[optind], &end, 10);
  if (*end || port == 0 || port > 65535)
    die ("bad port %s", argv[optind]);

  signal (SIGPIPE, SIG_IGN);
  sock = socket (AF_INET, SOCK_STREAM, 0);
  memset (&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_port = htons ((uint16_t) port);
  sa.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
  if (connect (sock, (struct sockaddr *) &sa, sizeof sa) == -1)
    die ("connect to 127.0.0.1:%lu: %s", port, strerror (errno));
  setsockopt (sock, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  ctx = SSL_CTX_new (TLS_client_method ());
  SSL_CTX_set_verify (ctx, SSL_VERIFY_NONE, NULL); /* test helper */
  ssl = SSL_new (ctx);
  SSL_set_fd (ssl, sock);
  if (SSL_connect (ssl) != 1)
    die ("TLS handshake failed");

  buf_add (&req, argv[optind + 1], strlen (argv[optind + 1]));
  buf_add (&req, " ", 1);
  buf_add (&req, argv[optind + 2], strlen (argv[optind + 2]));
  buf_add (&req, http10 ? " HTTP/1.0\r\n" : " HTTP/1.1\r\n", 11);
  add_header_lines (&req, "Host: localhost:8007\n"
                          "User-Agent: proxmox-backup-client/1.0");
  if (upgrade) {
    add_header_lines (&req, "Connection: upgrade");
    buf_add (&req, "Upgrade: ", 9);
    buf_add (&req, upgrade, strlen (upgrade));
    buf_add (&req, "\r\n", 2);
  }
  else
    add_header_lines (&req, "Connection: close");
  if (hdrs.len)
    buf_add (&req, hdrs.p, hdrs.len);
  if (body.len) {
    char cl[64];
    snprintf (cl, sizeof cl, "Content-Length: %zu\r\n", body.len);
    buf_add (&req, cl, strlen (cl));
  }
  buf_add (&req, "\r\n", 2);
  if (body.len)
    buf_add (&req, body.p, body.len);
  write_all (req.p, req.len);

  while ((hend = in.len ? memmem (in.p, in.len, "\r\n\r\n", 4) : NULL)
         == NULL)
    if (read_more () == 0)
      die ("connection closed before an answer");
  *hend = 0;
  if (strncmp ((char *) in.p, "HTTP/1.", 7) != 0)
    die ("not an HTTP answer");
  status = (int) strtol ((char *) in.p + 9, NULL, 10);
  for (p = strstr ((char *) in.p, "\r\n"); p; p = strstr (p + 2, "\r\n")) {
    char *h = p + 2;
    if (!strncasecmp (h, "content-type:", 13)) {
      ct = h + 13 + strspn (h + 13, " ");
    }
    else if (!strncasecmp (h, "content-length:", 15))
      clen = strtol (h + 15, NULL, 10);
    else if (!strncasecmp (h, "transfer-encoding:", 18)
             && strstr (h, "chunked"))
      chunked = true;
  }
  {
    /* cut the header values at their line ends */
    char *q;
    for (q = (char *) in.p; q < hend; q++)
      if (*q == '\r')
        *q = 0;
  }
  {
    size_t hl = (size_t) (hend - (char *) in.p) + 4;
    char ctbuf[256];
    snprintf (ctbuf, sizeof ctbuf, "%s", ct ? ct : "-");
    memmove (in.p, in.p + hl, in.len - hl);
    in.len -= hl;
    if (status == 101) {
      h2_mode ();
      goto out;
    }
    /* HTTP/1 body: content-length, chunked, or until the end */
    if (chunked) {
      size_t pos = 0;
      for (;;) {
        char *crlf;
        unsigned long sz;
        while ((crlf = memmem (in.p + pos, in.len - pos, "\r\n", 2)) == NULL)
          if (read_more () == 0)
            die ("truncated chunked answer");
        sz = strtoul ((char *) in.p + pos, NULL, 16);
        pos = (size_t) (crlf - (char *) in.p) + 2;
        while (in.len < pos + sz + 2)
          if (read_more () == 0)
            die ("truncated chunked answer");
        if (sz == 0)
          break;
        buf_add (&resp, in.p + pos, sz);
        pos += sz + 2;
      }
    }
    else {
      while ((clen < 0 || in.len < (size_t) clen) && read_more () > 0)
        ;
      if (clen >= 0 && in.len < (size_t) clen)
        die ("truncated answer");
      buf_add (&resp, in.p ? in.p : (uint8_t *) "",
               clen >= 0 ? (size_t) clen : in.len);
    }
    print_answer (status, strcmp (ctbuf, "-") ? ctbuf : NULL, &resp, out);
  }
  SSL_shutdown (ssl);
out:
  close (sock);
  SSL_free (ssl);
  SSL_CTX_free (ctx);
  free (req.p);
  free (hdrs.p);
  free (body.p);
  free (resp.p);
  free (in.p);
  free (ans.body.p);
  return 0;
}
