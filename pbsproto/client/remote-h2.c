/* remote-h2.c -- HTTP/2 on a connection upgraded by the backup or reader
 * protocol: the one file that uses nghttp2.
 *
 * After the 101 both sides speak HTTP/2 directly (docs/pbs-protocol.md §1.4):
 * a plain client session (not nghttp2_session_upgrade2: there is no implicit
 * stream 1), with proxmox-backup-client's settings: stream and connection
 * windows of 2^31-2, frames up to 4 MiB.  The socket is non-blocking; one
 * thread drives the session with pbs__h2_step, so many uploads share the
 * connection while the caller keeps producing chunks. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nghttp2/nghttp2.h>

#include "remote-internal.h"

#define H2_WINDOW ((1u << 31) - 2)
#define H2_MAX_FRAME (4u * 1024 * 1024)
#define OUTBUF_SIZE (256u * 1024)
#define INBUF_SIZE (256u * 1024)
#define ERROR_BODY_MAX (64u * 1024)

struct pbs_h2 {
  struct pbs_conn *conn;
  nghttp2_session *session;
  char *authority;
  uint8_t *out; /* serialized frames not yet written */
  size_t out_len, out_off;
  uint8_t *in;
  bool body_written; /* send_body wrote a DATA frame */
  bool broken;
  int broken_errno;
  char broken_msg[256];
};

static void
set_broken (struct pbs_h2 *h, int errnum, const char *msg)
{
  if (h->broken)
    return;
  h->broken = true;
  h->broken_errno = errnum;
  snprintf (h->broken_msg, sizeof h->broken_msg, "%s", msg);
}

/* The errno a failed connection call left, unless it is a plain I/O failure:
 * then DFLT (a reset or a timeout, worth a new session).  A cancel
 * (ECANCELED) must not turn into a retry. */
static int
cause (int dflt)
{
  return pbs_errno () == ECANCELED ? ECANCELED : dflt;
}

static int
broken_error (const struct pbs_h2 *h)
{
  pbs__set_error (h->broken_errno ? h->broken_errno : ECONNRESET, "%s",
                  h->broken_msg);
  return -1;
}

bool
pbs__h2_broken (const struct pbs_h2 *h)
{
  return h->broken;
}

/* ----------------------------------------------------- callbacks */

static int
on_header (nghttp2_session *s, const nghttp2_frame *frame,
           const uint8_t *name, size_t namelen, const uint8_t *value,
           size_t valuelen, uint8_t flags, void *user)
{
  struct pbs_h2_req *rq;
  (void) flags;
  (void) user;
  if (frame->hd.type != NGHTTP2_HEADERS)
    return 0;
  rq = nghttp2_session_get_stream_user_data (s, frame->hd.stream_id);
  if (!rq)
    return 0;
  if (namelen == 7 && memcmp (name, ":status", 7) == 0 && valuelen == 3) {
    int st = 0;
    for (size_t i = 0; i < 3; i++) {
      if (value[i] < '0' || value[i] > '9')
        return NGHTTP2_ERR_CALLBACK_FAILURE;
      st = st * 10 + (value[i] - '0');
    }
    rq->status = st;
  }
  else if (namelen == 14 && memcmp (name, "content-length", 14) == 0) {
    uint64_t n = 0;
    size_t i;
    for (i = 0; i < valuelen && value[i] >= '0' && value[i] <= '9'
                && n < ((uint64_t) 1 << 40);
         i++)
      n = n * 10 + (uint64_t) (value[i] - '0');
    /* Only a size hint: the body's own length is what counts. */
    if (i == valuelen && valuelen > 0)
      rq->content_length = n;
  }
  return 0;
}

static int
on_data_chunk (nghttp2_session *s, uint8_t flags, int32_t stream_id,
               const uint8_t *data, size_t len, void *user)
{
  struct pbs_h2_req *rq = nghttp2_session_get_stream_user_data (s, stream_id);
  size_t max;
  (void) flags;
  (void) user;
  if (!rq || (rq->body_max == 0 && rq->status >= 200 && rq->status <= 299))
    return 0; /* not wanted, or already cancelled as too large */
  /* Error texts are small; keep the start of a long one only. */
  max = rq->status >= 200 && rq->status <= 299 ? rq->body_max
                                                : ERROR_BODY_MAX;
  if (rq->body_len + len > max) {
    if (rq->status < 200 || rq->status > 299)
      len = rq->body_len < max ? max - rq->body_len : 0;
    else {
      nghttp2_submit_rst_stream (s, NGHTTP2_FLAG_NONE, stream_id,
                                 NGHTTP2_CANCEL);
      rq->body_max = 0; /* marks "too large" */
      return 0;
    }
  }
  if (rq->body_len + len + 1 > rq->body_cap) {
    size_t cap = rq->body_cap ? rq->body_cap : 4096;
    uint8_t *nb;
    /* A 4 MiB chunk in one allocation of its size, not grown by
     * doubling (copies, and 8 MiB for 4 MiB + 12 bytes). */
    if (!rq->body_cap && rq->content_length >= rq->body_len + len
        && rq->content_length < max)
      cap = (size_t) rq->content_length + 1;
    while (cap < rq->body_len + len + 1)
      cap *= 2;
    nb = realloc (rq->body, cap);
    if (!nb)
      return NGHTTP2_ERR_CALLBACK_FAILURE;
    rq->body = nb;
    rq->body_cap = cap;
  }
  memcpy (rq->body + rq->body_len, data, len);
  rq->body_len += len;
  rq->body[rq->body_len] = 0;
  return 0;
}

static int
on_stream_close (nghttp2_session *s, int32_t stream_id, uint32_t error_code,
                 void *user)
{
  struct pbs_h2_req *rq = nghttp2_session_get_stream_user_data (s, stream_id);
  (void) user;
  if (!rq)
    return 0;
  nghttp2_session_set_stream_user_data (s, stream_id, NULL);
  rq->done = true;
  if (error_code != NGHTTP2_NO_ERROR || rq->status == 0)
    rq->reset = true;
  if (rq->on_done)
    rq->on_done (rq);
  return 0;
}

/* Bodies are never copied into nghttp2: read_body only reserves the
 * bytes of the next DATA frame (NO_COPY) and send_body writes them to TLS
 * straight from the request's buffer.  A 4 MiB chunk used to be copied
 * into nghttp2's frame buffer first, a third of the client's CPU time
 * outside hashing on a loopback push. */
static ssize_t
read_body (nghttp2_session *s, int32_t stream_id, uint8_t *buf, size_t len,
           uint32_t *data_flags, nghttp2_data_source *source, void *user)
{
  struct pbs_h2_req *rq = source->ptr;
  size_t n = rq->send_len - rq->send_off;
  (void) s;
  (void) stream_id;
  (void) buf;
  (void) user;
  if (n > len)
    n = len;
  rq->send_off += n;
  if (n)
    *data_flags |= NGHTTP2_DATA_FLAG_NO_COPY;
  if (rq->send_off == rq->send_len)
    *data_flags |= NGHTTP2_DATA_FLAG_EOF;
  return (ssize_t) n;
}

/* Write one DATA frame (no padding is ever chosen): the frame header goes
 * out with the small frames queued before it, the payload in one piece. */
static int
send_body (nghttp2_session *s, nghttp2_frame *frame, const uint8_t *framehd,
           size_t length, nghttp2_data_source *source, void *user)
{
  struct pbs_h2 *h = user;
  struct pbs_h2_req *rq = source->ptr;
  (void) s;
  (void) frame;

  if (h->out_len + 9 > OUTBUF_SIZE) {
    if (pbs__conn_write_all (h->conn, h->out, h->out_len) == -1)
      goto err;
    h->out_len = 0;
  }
  memcpy (h->out + h->out_len, framehd, 9);
  h->out_len += 9;
  if (pbs__conn_write_all (h->conn, h->out, h->out_len) == -1)
    goto err;
  h->out_len = 0;
  if (pbs__conn_write_all (h->conn, rq->send + rq->send_sent, length) == -1)
    goto err;
  rq->send_sent += length;
  h->body_written = true;
  if (rq->send_sent == rq->send_len) {
    /* Written: give the memory back before the answer arrives. */
    free (rq->send_owned);
    rq->send_owned = NULL;
    rq->send = NULL;
  }
  return 0;
err:
  set_broken (h, cause (ECONNRESET), pbs_errmsg ());
  return NGHTTP2_ERR_CALLBACK_FAILURE;
}

/* DATA frames as large as the peer and the windows allow (PBS: 4 MiB)
 * instead of nghttp2's default of 16 KiB: a chunk body then leaves
 * nghttp2 as one frame that flush_out writes straight to TLS, without
 * the copy through h->out and 255 frames of overhead. */
static ssize_t
data_length (nghttp2_session *s, uint8_t frame_type, int32_t stream_id,
             int32_t session_window, int32_t stream_window,
             uint32_t max_frame, void *user)
{
  ssize_t n = (ssize_t) max_frame;

  (void) s;
  (void) frame_type;
  (void) stream_id;
  (void) user;
  if (n > session_window)
    n = session_window;
  if (n > stream_window)
    n = stream_window;
  return n > 0 ? n : 1;
}

/* ----------------------------------------------------- session */

static int
session_init (struct pbs_h2 *h, const uint8_t *extra, size_t extra_len)
{
  nghttp2_session_callbacks *cb;
  nghttp2_option *opt;
  nghttp2_settings_entry iv[] = {
    { NGHTTP2_SETTINGS_ENABLE_PUSH, 0 },
    { NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, H2_WINDOW },
    { NGHTTP2_SETTINGS_MAX_FRAME_SIZE, H2_MAX_FRAME },
  };
  int rv;

  if (nghttp2_session_callbacks_new (&cb) != 0)
    goto nomem;
  nghttp2_session_callbacks_set_on_header_callback (cb, on_header);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback (cb,
                                                             on_data_chunk);
  nghttp2_session_callbacks_set_on_stream_close_callback (cb,
                                                          on_stream_close);
  nghttp2_session_callbacks_set_data_source_read_length_callback (
      cb, data_length);
  nghttp2_session_callbacks_set_send_data_callback (cb, send_body);
  if (nghttp2_option_new (&opt) != 0) {
    nghttp2_session_callbacks_del (cb);
    goto nomem;
  }
  /* The server's SETTINGS have no max concurrent streams (hyper default),
   * so do not cap ours before they arrive. */
  nghttp2_option_set_peer_max_concurrent_streams (opt, 100);
  rv = nghttp2_session_client_new2 (&h->session, cb, h, opt);
  nghttp2_option_del (opt);
  nghttp2_session_callbacks_del (cb);
  if (rv != 0)
    goto nomem;
  rv = nghttp2_submit_settings (h->session, NGHTTP2_FLAG_NONE, iv,
                                sizeof iv / sizeof iv[0]);
  if (rv == 0)
    rv = nghttp2_session_set_local_window_size (h->session,
                                                NGHTTP2_FLAG_NONE, 0,
                                                (int32_t) H2_WINDOW);
  if (rv != 0) {
    pbs__set_error (EPROTO, "HTTP/2 setup: %s", nghttp2_strerror (rv));
    return -1;
  }
  if (extra_len) {
    ssize_t n = nghttp2_session_mem_recv (h->session, extra, extra_len);
    if (n < 0) {
      pbs__set_error (EPROTO, "HTTP/2 from the server: %s",
                      nghttp2_strerror ((int) n));
      return -1;
    }
  }
  return 0;
nomem:
  pbs__set_error (ENOMEM, "out of memory");
  return -1;
}

/* A session's buffers, no connection or nghttp2 session yet.  NULL (set). */
static struct pbs_h2 *
h2_alloc (const char *authority)
{
  struct pbs_h2 *h = calloc (1, sizeof *h);

  if (h) {
    h->out = malloc (OUTBUF_SIZE);
    h->in = malloc (INBUF_SIZE);
    h->authority = strdup (authority);
    if (h->out && h->in && h->authority)
      return h;
    pbs__h2_close (h);
  }
  pbs__set_error (ENOMEM, "out of memory");
  return NULL;
}

struct pbs_h2 *
pbs__h2_open (struct pbs_remote *r, const char *path_query,
              const char *protocol)
{
  struct pbs_h2 *h;
  struct pbs_http_resp resp;
  char *auth = NULL, *hdrs = NULL;
  int rc;

  h = h2_alloc (r->spec.authority);
  if (!h)
    return NULL;
  if (pbs__remote_refresh (r) == -1)
    goto err;
  auth = pbs__remote_auth_headers (r, true);
  if (!auth)
    goto err;
  if (asprintf (&hdrs, "%sConnection: upgrade\r\nUpgrade: %s\r\n", auth,
                protocol)
      == -1) {
    hdrs = NULL;
    pbs__set_error (ENOMEM, "out of memory");
    goto err;
  }
  h->conn = pbs__conn_open (r);
  if (!h->conn)
    goto err;
  rc = pbs__http1_request (h->conn, r, "GET", path_query, hdrs,
                           "application/x-www-form-urlencoded", NULL, 0,
                           &resp);
  if (rc == -1)
    goto err;
  if (resp.status != 101) {
    pbs__remote_http_error (NULL, resp.status, (char *) resp.body,
                            resp.body_len);
    pbs__remote_explain_401 (r);
    pbs__http_resp_free (&resp);
    goto err;
  }
  rc = session_init (h, resp.extra, resp.extra_len);
  pbs__http_resp_free (&resp);
  if (rc == -1)
    goto err;
  explicit_bzero (auth, strlen (auth));
  explicit_bzero (hdrs, strlen (hdrs));
  free (auth);
  free (hdrs);
  return h;

err:
  if (auth)
    explicit_bzero (auth, strlen (auth));
  if (hdrs)
    explicit_bzero (hdrs, strlen (hdrs));
  free (auth);
  free (hdrs);
  pbs__h2_close (h);
  return NULL;
}

void
pbs__h2_close (struct pbs_h2 *h)
{
  if (!h)
    return;
  /* nghttp2_session_del does not call on_stream_close; owners free their
   * requests themselves. */
  if (h->session)
    nghttp2_session_del (h->session);
  pbs__conn_close (h->conn);
  free (h->authority);
  free (h->out);
  free (h->in);
  free (h);
}

int
pbs__h2_submit (struct pbs_h2 *h, struct pbs_h2_req *rq, const char *method,
                const char *path_query, const char *content_type,
                const void *body, size_t len, enum pbs_h2_body mode)
{
  char path[4096];
  nghttp2_data_provider prd;
  int32_t id;
  int n;

  if (h->broken) {
    if (mode == PBS_H2_BODY_TAKE)
      free ((void *) body);
    return broken_error (h);
  }
  n = snprintf (path, sizeof path, "/%s", path_query);
  if (n < 0 || (size_t) n >= sizeof path) {
    if (mode == PBS_H2_BODY_TAKE)
      free ((void *) body);
    /* The official client refuses queries over 4096 bytes too (§1.4). */
    pbs__set_error (EINVAL, "request path too long");
    return -1;
  }
  {
    nghttp2_nv nva[] = {
#define NV(n, v)                                                               \
  { (uint8_t *) (n), (uint8_t *) (v), strlen (n), strlen (v),                  \
    NGHTTP2_NV_FLAG_NONE }
      NV (":method", method),
      NV (":scheme", "https"),
      NV (":authority", h->authority),
      NV (":path", path),
      NV ("user-agent", "proxmox-backup-client/1.0"),
      NV ("content-type",
          content_type ? content_type : "application/x-www-form-urlencoded"),
#undef NV
    };
    rq->status = 0;
    rq->content_length = 0;
    rq->done = rq->reset = false;
    rq->body_len = 0;
    rq->send_off = rq->send_sent = 0;
    rq->send_len = len;
    rq->send_owned = mode == PBS_H2_BODY_TAKE ? (uint8_t *) body : NULL;
    rq->send = body;
    if (mode == PBS_H2_BODY_COPY && len) {
      rq->send_owned = malloc (len);
      if (!rq->send_owned) {
        pbs__set_error (ENOMEM, "out of memory");
        return -1;
      }
      memcpy (rq->send_owned, body, len);
      rq->send = rq->send_owned;
    }
    prd.source.ptr = rq;
    prd.read_callback = read_body;
    id = nghttp2_submit_request (h->session, NULL, nva,
                                 sizeof nva / sizeof nva[0],
                                 len || strcmp (method, "GET") != 0 ? &prd
                                                                    : NULL,
                                 rq);
  }
  if (id < 0) {
    free (rq->send_owned);
    rq->send_owned = NULL;
    pbs__set_error (EPROTO, "HTTP/2 request: %s", nghttp2_strerror (id));
    return -1;
  }
  rq->stream_id = id;
  return 0;
}

/* Fill h->out from nghttp2 and write it.  Sets *PROGRESS. */
static int
flush_out (struct pbs_h2 *h, bool *progress, bool *want_write)
{
  for (;;) {
    ssize_t n;
    if (h->out_off == h->out_len) {
      h->out_off = h->out_len = 0;
      while (h->out_len < OUTBUF_SIZE) {
        const uint8_t *data;
        ssize_t m = nghttp2_session_mem_send (h->session, &data);
        if (m < 0) {
          set_broken (h, EPROTO, nghttp2_strerror ((int) m));
          return -1;
        }
        if (m == 0)
          break;
        if ((size_t) m > OUTBUF_SIZE - h->out_len) {
          /* Bigger than the space left: write what we have first, then
           * this piece directly (it is valid until the next mem_send). */
          if (h->out_len && pbs__conn_write_all (h->conn, h->out, h->out_len)
                                == -1)
            goto write_err;
          h->out_len = 0;
          if (pbs__conn_write_all (h->conn, data, (size_t) m) == -1)
            goto write_err;
          *progress = true;
          continue;
        }
        memcpy (h->out + h->out_len, data, (size_t) m);
        h->out_len += (size_t) m;
      }
      if (h->body_written) {
        h->body_written = false;
        *progress = true;
      }
      if (h->out_len == 0)
        return 0;
    }
    n = pbs__conn_write (h->conn, h->out + h->out_off,
                         h->out_len - h->out_off);
    if (n == PBS_CONN_AGAIN) {
      *want_write = true;
      return 0;
    }
    if (n <= 0)
      goto write_err;
    h->out_off += (size_t) n;
    *progress = true;
  }
write_err:
  set_broken (h, cause (ECONNRESET), pbs_errmsg ());
  return -1;
}

/* Hand bytes from the server to nghttp2 (whose callbacks above collect the
 * answers).  0, or -1 with the session broken. */
static int
recv_bytes (struct pbs_h2 *h, const uint8_t *buf, size_t len)
{
  ssize_t m = nghttp2_session_mem_recv (h->session, buf, len);

  if (m < 0) {
    char msg[128];
    snprintf (msg, sizeof msg, "HTTP/2 from the server: %s",
              nghttp2_strerror ((int) m));
    set_broken (h, EPROTO, msg);
    return -1;
  }
  return 0;
}

static int
read_in (struct pbs_h2 *h, bool *progress)
{
  for (;;) {
    ssize_t n = pbs__conn_read (h->conn, h->in, INBUF_SIZE);
    if (n == PBS_CONN_AGAIN)
      return 0;
    if (n == 0) {
      set_broken (h, ECONNRESET, "connection closed by the server");
      return -1;
    }
    if (n < 0) {
      set_broken (h, cause (ECONNRESET), pbs_errmsg ());
      return -1;
    }
    *progress = true;
    if (recv_bytes (h, h->in, (size_t) n) == -1)
      return -1;
  }
}

struct pbs_h2 *
pbs__h2_detached (const char *authority, const uint8_t *extra,
                  size_t extra_len)
{
  struct pbs_h2 *h = h2_alloc (authority);

  if (h && session_init (h, extra, extra_len) == -1) {
    pbs__h2_close (h);
    return NULL;
  }
  return h;
}

int
pbs__h2_feed (struct pbs_h2 *h, const uint8_t *buf, size_t len)
{
  const uint8_t *data;
  ssize_t m;

  if (h->broken)
    return broken_error (h);
  /* What the session would send first counts as sent: a stream the
   * server answers must have left the client. */
  while ((m = nghttp2_session_mem_send (h->session, &data)) > 0)
    ;
  if (m < 0) {
    set_broken (h, EPROTO, nghttp2_strerror ((int) m));
    return broken_error (h);
  }
  if (recv_bytes (h, buf, len) == -1)
    return broken_error (h);
  return 0;
}

int
pbs__h2_step (struct pbs_h2 *h, bool block)
{
  bool progress = false, want_write = false;

  if (h->broken)
    return broken_error (h);
  if (flush_out (h, &progress, &want_write) == -1
      || read_in (h, &progress) == -1)
    goto broken;
  if (progress || !block)
    return 0;
  if (!nghttp2_session_want_read (h->session)
      && !nghttp2_session_want_write (h->session) && h->out_off == h->out_len) {
    set_broken (h, ECONNRESET, "HTTP/2 session ended by the server");
    goto broken;
  }
  if (pbs__conn_wait (h->conn, want_write || h->out_off < h->out_len,
                      PBS_REMOTE_REQUEST_TIMEOUT_MS)
      == -1) {
    set_broken (h, cause (ETIMEDOUT), pbs_errmsg ());
    goto broken;
  }
  return 0;
broken:
  return broken_error (h);
}

int
pbs__h2_req_error (const struct pbs_h2_req *rq, const char *what)
{
  if (rq->reset && rq->status == 0) {
    pbs__set_error (ECONNRESET, "%s: request reset by the server", what);
    return -1;
  }
  if (rq->status >= 200 && rq->status <= 299 && rq->body_max == 0) {
    pbs__set_error (EPROTO, "%s: answer too large", what);
    return -1;
  }
  pbs__remote_http_error (what, rq->status, (const char *) rq->body,
                          rq->body_len);
  return -1;
}

int
pbs__h2_wait (struct pbs_h2 *h, struct pbs_h2_req *rq, const char *what)
{
  while (!rq->done)
    if (pbs__h2_step (h, true) == -1 && !rq->done)
      return -1; /* an answer followed by EOF in one read still counts */
  if (rq->status >= 200 && rq->status <= 299 && !rq->reset
      && rq->body_max != 0)
    return 0;
  return pbs__h2_req_error (rq, what);
}

void
pbs__h2_req_release (struct pbs_h2_req *rq)
{
  free (rq->body);
  free (rq->send_owned);
  rq->body = rq->send_owned = NULL;
  rq->body_len = rq->body_cap = 0;
}

int
pbs__h2_call (struct pbs_h2 *h, const char *method, const char *path_query,
              const char *content_type, const void *body, size_t len,
              size_t max, uint8_t **data, size_t *data_len, const char *what)
{
  struct pbs_h2_req rq = { 0 };
  int rc;

  rq.body_max = max;
  if (pbs__h2_submit (h, &rq, method, path_query, content_type, body, len,
                      PBS_H2_BODY_BORROW)
      == -1)
    return -1;
  rc = pbs__h2_wait (h, &rq, what);
  if (rc == -1 && !rq.done) {
    /* The connection broke with the stream open: nghttp2 still points at
     * RQ, so the session must never be driven again. */
    set_broken (h, pbs_errno (), pbs_errmsg ());
  }
  if (rc == 0) {
    if (!rq.body) {
      rq.body = malloc (1);
      if (!rq.body) {
        pbs__set_error (ENOMEM, "out of memory");
        return -1;
      }
      rq.body[0] = 0;
    }
    *data = rq.body;
    *data_len = rq.body_len;
    rq.body = NULL;
  }
  pbs__h2_req_release (&rq);
  return rc;
}
