/* h2.c -- the HTTP/2 server session after the upgrade (docs/pbs-protocol.md
 * §1.4): nghttp2 in memory mode over the blocking TLS connection.
 *
 * The connection thread does the I/O; a worker thread runs the handlers,
 * one request at a time in the order their last frame arrived (the
 * pbs_ds session is single-threaded), so the next chunk upload is read
 * and decrypted while the previous one is checked and stored.  Many
 * streams may be open at once (each chunk upload is one).  Settings as
 * PBS sets them: initial stream window 32 MiB, connection window 32 MiB,
 * max frame size 4 MiB. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <nghttp2/nghttp2.h>

#include "server.h"

#define WINDOW (32 * 1024 * 1024)
#define MAX_FRAME (4 * 1024 * 1024)

struct h2_stream {
  struct h2_stream *prev, *next; /* every stream we own */
  struct h2_stream *qnext;       /* in the work or done queue */
  int32_t id;
  bool busy;   /* handed to the worker, not answered yet */
  bool closed; /* nghttp2 closed it while busy: free when done */
  char *method;
  char *target; /* :path */
  char *content_type;
  uint8_t *body;
  size_t len, cap, limit;
  bool limit_known, too_large;
  struct srv_reply rep;
  size_t off;
};

struct h2_ctx {
  struct srv_conn *c;
  struct srv_env *env;
  nghttp2_session *s;
  bool failed;
  struct h2_stream *streams;
  /* the worker */
  pthread_t worker;
  pthread_mutex_t lock;
  pthread_cond_t cond;
  struct h2_stream *work, **work_tail, *done, **done_tail;
  bool quit;
  int efd;     /* eventfd: "a job is done" for the I/O thread */
  size_t busy; /* jobs handed out and not collected (I/O thread only) */
};

static void
stream_free (struct h2_stream *st)
{
  if (st == NULL)
    return;
  free (st->method);
  free (st->target);
  free (st->content_type);
  free (st->body);
  srv_reply_free (&st->rep);
  free (st);
}

static ssize_t
read_body (nghttp2_session *s, int32_t id, uint8_t *buf, size_t length,
           uint32_t *flags, nghttp2_data_source *src, void *user)
{
  struct h2_stream *st = src->ptr;
  size_t n = st->rep.len - st->off;

  (void) s;
  (void) id;
  (void) user;
  if (n > length)
    n = length;
  if (n)
    memcpy (buf, st->rep.body + st->off, n);
  st->off += n;
  if (st->off == st->rep.len)
    *flags |= NGHTTP2_DATA_FLAG_EOF;
  return (ssize_t) n;
}

static int
respond (struct h2_ctx *h, int32_t id, struct h2_stream *st)
{
  char status[8], clen[32];
  nghttp2_nv nv[3];
  size_t nnv = 0;
  nghttp2_data_provider prd;

#define NV(n, v)                                                            \
  do {                                                                      \
    nv[nnv].name = (uint8_t *) (n);                                         \
    nv[nnv].namelen = strlen (n);                                           \
    nv[nnv].value = (uint8_t *) (v);                                        \
    nv[nnv].valuelen = strlen (v);                                          \
    nv[nnv].flags = NGHTTP2_NV_FLAG_NONE;                                   \
    nnv++;                                                                  \
  } while (0)

  snprintf (status, sizeof status, "%d", st->rep.status);
  NV (":status", status);
  if (st->rep.content_type)
    NV ("content-type", st->rep.content_type);
  if (!st->rep.streamed) {
    snprintf (clen, sizeof clen, "%zu", st->rep.len);
    NV ("content-length", clen);
  }
#undef NV
  prd.source.ptr = st;
  prd.read_callback = read_body;
  (void) h;
  return nghttp2_submit_response (h->s, id, nv, nnv, &prd);
}

/* Worker side: answer one request into ST->rep. */
static void
run (struct h2_ctx *h, struct h2_stream *st)
{
  struct srv_h2_request req = { 0 };
  struct timespec t0 = { 0, 0 }, t1 = { 0, 0 };
  char *q, *path;

  q = strchr (st->target, '?');
  path = srv_normalize_path (st->target, q ? (size_t) (q - st->target)
                                           : strlen (st->target));
  req.method = st->method;
  req.path = path ? path : "";
  req.query = q ? q + 1 : NULL;
  req.content_type = st->content_type;
  req.body = st->body ? st->body : (const uint8_t *) "";
  req.body_len = st->len;
  req.body_too_large = st->too_large;
  /* H2Service: an illegal path is an HttpError answered without a
   * content type; it has no URI length limit (that is only in the HTTP/1
   * handler, rest.rs MAX_URI_QUERY_LENGTH). */
  if (path == NULL) {
    srv_reply_error (&st->rep, 400, "path contains illegal components");
    st->rep.content_type = NULL;
  }
  else {
    clock_gettime (CLOCK_MONOTONIC, &t0);
    h->env->handle (h->env, &req, &st->rep);
    clock_gettime (CLOCK_MONOTONIC, &t1);
  }
  srv_log ("conn %u: h2 %s %s -> %d (%.1f ms)", h->c->id, st->method,
           req.path, st->rep.status,
           (double) (t1.tv_sec - t0.tv_sec) * 1e3
             + (double) (t1.tv_nsec - t0.tv_nsec) / 1e6);
  free (path);
  /* The request body is not needed any more. */
  free (st->body);
  st->body = NULL;
  st->len = st->cap = 0;
}

static void *
worker (void *arg)
{
  struct h2_ctx *h = arg;
  struct h2_stream *st;
  uint64_t one = 1;

  pthread_mutex_lock (&h->lock);
  for (;;) {
    while (h->work == NULL && !h->quit)
      pthread_cond_wait (&h->cond, &h->lock);
    /* After a disconnect, queued requests are dropped unanswered (as
     * PBS drops their futures): a queued finish must not run then. */
    if (h->quit)
      break;
    st = h->work;
    h->work = st->qnext;
    if (h->work == NULL)
      h->work_tail = &h->work;
    pthread_mutex_unlock (&h->lock);
    run (h, st);
    pthread_mutex_lock (&h->lock);
    st->qnext = NULL;
    *h->done_tail = st;
    h->done_tail = &st->qnext;
    if (write (h->efd, &one, sizeof one) != sizeof one)
      srv_log ("conn %u: eventfd write failed", h->c->id);
  }
  pthread_mutex_unlock (&h->lock);
  return NULL;
}

/* I/O side: hand a complete request to the worker. */
static void
process (struct h2_ctx *h, struct h2_stream *st)
{
  if (st->method == NULL || st->target == NULL) {
    nghttp2_submit_rst_stream (h->s, NGHTTP2_FLAG_NONE, st->id,
                               NGHTTP2_PROTOCOL_ERROR);
    return;
  }
  st->busy = true;
  h->busy++;
  pthread_mutex_lock (&h->lock);
  st->qnext = NULL;
  *h->work_tail = st;
  h->work_tail = &st->qnext;
  pthread_cond_signal (&h->cond);
  pthread_mutex_unlock (&h->lock);
}

static void unlink_stream (struct h2_ctx *h, struct h2_stream *st);

/* I/O side: submit the answers the worker has finished. */
static void
collect (struct h2_ctx *h)
{
  struct h2_stream *st, *next;
  uint64_t v;

  if (read (h->efd, &v, sizeof v) == -1 && errno != EAGAIN)
    h->failed = true;
  pthread_mutex_lock (&h->lock);
  st = h->done;
  h->done = NULL;
  h->done_tail = &h->done;
  pthread_mutex_unlock (&h->lock);
  for (; st; st = next) {
    next = st->qnext;
    st->busy = false;
    h->busy--;
    if (st->closed) {
      unlink_stream (h, st);
      stream_free (st);
    }
    else if (respond (h, st->id, st) != 0)
      h->failed = true;
  }
}

static void
unlink_stream (struct h2_ctx *h, struct h2_stream *st)
{
  if (st->prev)
    st->prev->next = st->next;
  else
    h->streams = st->next;
  if (st->next)
    st->next->prev = st->prev;
}

static int
on_begin_headers (nghttp2_session *s, const nghttp2_frame *f, void *user)
{
  struct h2_ctx *h = user;
  struct h2_stream *st;

  if (f->hd.type != NGHTTP2_HEADERS
      || f->headers.cat != NGHTTP2_HCAT_REQUEST)
    return 0;
  st = calloc (1, sizeof *st);
  if (st == NULL)
    return NGHTTP2_ERR_CALLBACK_FAILURE;
  st->id = f->hd.stream_id;
  st->next = h->streams;
  if (h->streams)
    h->streams->prev = st;
  h->streams = st;
  nghttp2_session_set_stream_user_data (s, f->hd.stream_id, st);
  return 0;
}

static int
on_header (nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name,
           size_t namelen, const uint8_t *value, size_t valuelen,
           uint8_t flags, void *user)
{
  struct h2_stream *st;
  char **dst = NULL;

  (void) flags;
  (void) user;
  if (f->hd.type != NGHTTP2_HEADERS)
    return 0;
  st = nghttp2_session_get_stream_user_data (s, f->hd.stream_id);
  if (st == NULL)
    return 0;
  if (namelen == 7 && !memcmp (name, ":method", 7))
    dst = &st->method;
  else if (namelen == 5 && !memcmp (name, ":path", 5))
    dst = &st->target;
  else if (namelen == 12 && !memcmp (name, "content-type", 12))
    dst = &st->content_type;
  if (dst) {
    free (*dst);
    *dst = strndup ((const char *) value, valuelen);
  }
  return 0;
}

static int
on_data (nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data,
         size_t len, void *user)
{
  struct h2_ctx *h = user;
  struct h2_stream *st = nghttp2_session_get_stream_user_data (s, id);
  size_t take;

  (void) flags;
  if (st == NULL)
    return 0;
  if (!st->limit_known) {
    char *q = st->target ? strchr (st->target, '?') : NULL;
    char *path = st->target ? strndup (st->target,
                                       q ? (size_t) (q - st->target)
                                         : strlen (st->target))
                            : NULL;
    st->limit = h->env->body_limit (h->env, st->method ? st->method : "",
                                    path ? path : "");
    st->limit_known = true;
    free (path);
    /* An upload announces its length: one allocation instead of a
     * chain of reallocs (and copies) per 4 MiB chunk. */
    if (q && st->limit > SRV_MAX_PARAM_BODY) {
      const char *e = strstr (q, "encoded-size=");
      if (e && (e[-1] == '?' || e[-1] == '&')) {
        unsigned long long n = strtoull (e + 13, NULL, 10);
        if (n > 0 && n < st->limit) {
          st->body = malloc ((size_t) n + 1);
          st->cap = st->body ? (size_t) n + 1 : 0;
        }
      }
    }
  }
  take = len;
  if (st->len + take > st->limit) {
    take = st->limit > st->len ? st->limit - st->len : 0;
    st->too_large = true;
  }
  if (take) {
    if (st->len + take > st->cap) {
      size_t cap = st->cap ? st->cap : 65536;
      uint8_t *p;
      while (cap < st->len + take)
        cap *= 2;
      if (cap > st->limit + 1)
        cap = st->limit + 1;
      p = realloc (st->body, cap);
      if (p == NULL)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
      st->body = p;
      st->cap = cap;
    }
    memcpy (st->body + st->len, data, take);
    st->len += take;
  }
  return 0;
}

static int
on_frame (nghttp2_session *s, const nghttp2_frame *f, void *user)
{
  struct h2_ctx *h = user;
  struct h2_stream *st;

  if ((f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA)
      || !(f->hd.flags & NGHTTP2_FLAG_END_STREAM))
    return 0;
  st = nghttp2_session_get_stream_user_data (s, f->hd.stream_id);
  if (st && !st->busy)
    process (h, st);
  return 0;
}

static int
on_close (nghttp2_session *s, int32_t id, uint32_t code, void *user)
{
  struct h2_ctx *h = user;
  struct h2_stream *st = nghttp2_session_get_stream_user_data (s, id);

  (void) code;
  if (st) {
    nghttp2_session_set_stream_user_data (s, id, NULL);
    if (st->busy)
      st->closed = true; /* the worker has it; collect() frees it */
    else {
      unlink_stream (h, st);
      stream_free (st);
    }
  }
  return 0;
}

static int
flush (struct h2_ctx *h)
{
  const uint8_t *data;
  ssize_t n;

  while ((n = nghttp2_session_mem_send (h->s, &data)) > 0)
    if (srv_write_all (h->c, data, (size_t) n) == -1)
      return -1;
  return n < 0 ? -1 : 0;
}

/* Wait until the client sent something (if we want to read) or the
 * worker finished a job.  Returns true when there is input to read. */
static bool
wait_input (struct h2_ctx *h, bool want_read)
{
  struct pollfd p[2] = { { h->efd, POLLIN, 0 }, { h->c->fd, POLLIN, 0 } };

  /* TLS, or the buffering BIO under it, may hold bytes that poll()
   * cannot see.  Answers the worker finished are still collected here, or they
   * would wait until the read-ahead buffer runs dry. */
  if (want_read && (SSL_has_pending (h->c->ssl)
                    || BIO_pending (SSL_get_rbio (h->c->ssl)) > 0)) {
    bool done;
    pthread_mutex_lock (&h->lock);
    done = h->done != NULL;
    pthread_mutex_unlock (&h->lock);
    if (done)
      collect (h);
    return true;
  }
  while (poll (p, want_read ? 2 : 1, -1) == -1)
    if (errno != EINTR) {
      h->failed = true;
      return false;
    }
  if (p[0].revents & POLLIN)
    collect (h);
  return want_read && (p[1].revents & (POLLIN | POLLHUP | POLLERR));
}

void
srv_h2_run (struct srv_conn *c, struct srv_env *env)
{
  nghttp2_session_callbacks *cb;
  struct h2_ctx h;
  nghttp2_settings_entry iv[] = {
    { NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, WINDOW },
    { NGHTTP2_SETTINGS_MAX_FRAME_SIZE, MAX_FRAME },
  };
  struct h2_stream *st;

  memset (&h, 0, sizeof h);
  h.c = c;
  h.env = env;
  h.work_tail = &h.work;
  h.done_tail = &h.done;
  pthread_mutex_init (&h.lock, NULL);
  pthread_cond_init (&h.cond, NULL);
  h.efd = eventfd (0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (h.efd == -1)
    return;
  if (nghttp2_session_callbacks_new (&cb) != 0) {
    close (h.efd);
    return;
  }
  nghttp2_session_callbacks_set_on_begin_headers_callback (cb,
                                                           on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback (cb, on_header);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback (cb, on_data);
  nghttp2_session_callbacks_set_on_frame_recv_callback (cb, on_frame);
  nghttp2_session_callbacks_set_on_stream_close_callback (cb, on_close);
  if (nghttp2_session_server_new (&h.s, cb, &h) != 0) {
    nghttp2_session_callbacks_del (cb);
    close (h.efd);
    return;
  }
  nghttp2_session_callbacks_del (cb);
  if (pthread_create (&h.worker, NULL, worker, &h) != 0) {
    nghttp2_session_del (h.s);
    close (h.efd);
    return;
  }
  nghttp2_submit_settings (h.s, NGHTTP2_FLAG_NONE, iv,
                           sizeof iv / sizeof iv[0]);
  nghttp2_session_set_local_window_size (h.s, NGHTTP2_FLAG_NONE, 0, WINDOW);

  /* Bytes that arrived behind the upgrade request. */
  if (c->len) {
    if (nghttp2_session_mem_recv (h.s, c->buf, c->len) < 0)
      h.failed = true;
    c->len = 0;
  }
  while (!h.failed) {
    bool want_read;
    ssize_t n;

    if (flush (&h) == -1)
      break;
    want_read = nghttp2_session_want_read (h.s);
    if (!want_read && h.busy == 0)
      break; /* GOAWAY exchanged and every answer sent */
    if (!wait_input (&h, want_read))
      continue;
    n = srv_read_more (c);
    if (n <= 0)
      break; /* the client is gone */
    n = nghttp2_session_mem_recv (h.s, c->buf, c->len);
    c->len = 0;
    if (n < 0) {
      srv_log ("conn %u: HTTP/2 error: %s", c->id,
               nghttp2_strerror ((int) n));
      flush (&h); /* the GOAWAY nghttp2 queued */
      break;
    }
  }
  /* Stop the worker: the running request completes, queued ones are
   * dropped. */
  pthread_mutex_lock (&h.lock);
  h.quit = true;
  pthread_cond_signal (&h.cond);
  pthread_mutex_unlock (&h.lock);
  pthread_join (h.worker, NULL);
  for (st = h.streams; st; st = st->next)
    nghttp2_session_set_stream_user_data (h.s, st->id, NULL);
  nghttp2_session_del (h.s);
  while (h.streams) {
    st = h.streams;
    h.streams = st->next;
    stream_free (st);
  }
  close (h.efd);
  pthread_mutex_destroy (&h.lock);
  pthread_cond_destroy (&h.cond);
}
