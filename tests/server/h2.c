/* h2.c -- the HTTP/2 server session after the upgrade (pbs-protocol.md
 * §1.4): nghttp2 in memory mode over the blocking TLS connection.
 *
 * Requests are answered one at a time, in the order their last frame
 * arrives; many may be open at once (each chunk upload is a stream).
 * Settings as PBS sets them: initial stream window 32 MiB, connection
 * window 32 MiB, max frame size 4 MiB. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nghttp2/nghttp2.h>

#include "server.h"

#define WINDOW (32 * 1024 * 1024)
#define MAX_FRAME (4 * 1024 * 1024)

struct h2_stream {
  struct h2_stream *prev, *next; /* open streams, freed at the end */
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
  NV ("content-type", st->rep.content_type ? st->rep.content_type
                                           : SRV_CT_JSON);
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

static void
process (struct h2_ctx *h, int32_t id, struct h2_stream *st)
{
  struct srv_h2_request req = { 0 };
  char *q, *path;

  if (st->method == NULL || st->target == NULL) {
    nghttp2_submit_rst_stream (h->s, NGHTTP2_FLAG_NONE, id,
                               NGHTTP2_PROTOCOL_ERROR);
    return;
  }
  q = strchr (st->target, '?');
  path = srv_percent_decode (st->target, q ? (size_t) (q - st->target)
                                           : strlen (st->target), false);
  req.method = st->method;
  req.path = path ? path : "";
  req.query = q ? q + 1 : NULL;
  req.content_type = st->content_type;
  req.body = st->body ? st->body : (const uint8_t *) "";
  req.body_len = st->len;
  req.body_too_large = st->too_large;
  if (path == NULL)
    srv_reply_error (&st->rep, 400, "bad path");
  else if (strlen (st->target) > SRV_MAX_URI) {
    st->rep.status = 414;
    st->rep.content_type = SRV_CT_JSON;
  }
  else
    h->env->handle (h->env, &req, &st->rep);
  srv_log ("conn %u: h2 %s %s -> %d", h->c->id, st->method, req.path,
           st->rep.status);
  free (path);
  /* The request body is not needed any more. */
  free (st->body);
  st->body = NULL;
  st->len = st->cap = 0;
  if (respond (h, id, st) != 0)
    h->failed = true;
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
  if (st)
    process (h, f->hd.stream_id, st);
  return 0;
}

static int
on_close (nghttp2_session *s, int32_t id, uint32_t code, void *user)
{
  struct h2_ctx *h = user;
  struct h2_stream *st = nghttp2_session_get_stream_user_data (s, id);

  (void) code;
  if (st) {
    unlink_stream (h, st);
    stream_free (st);
    nghttp2_session_set_stream_user_data (s, id, NULL);
  }
  return 0;
}

void
srv_h2_run (struct srv_conn *c, struct srv_env *env)
{
  nghttp2_session_callbacks *cb;
  struct h2_ctx h = { c, env, NULL, false, NULL };
  nghttp2_settings_entry iv[] = {
    { NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, WINDOW },
    { NGHTTP2_SETTINGS_MAX_FRAME_SIZE, MAX_FRAME },
  };

  if (nghttp2_session_callbacks_new (&cb) != 0)
    return;
  nghttp2_session_callbacks_set_on_begin_headers_callback (cb,
                                                           on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback (cb, on_header);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback (cb, on_data);
  nghttp2_session_callbacks_set_on_frame_recv_callback (cb, on_frame);
  nghttp2_session_callbacks_set_on_stream_close_callback (cb, on_close);
  if (nghttp2_session_server_new (&h.s, cb, &h) != 0) {
    nghttp2_session_callbacks_del (cb);
    return;
  }
  nghttp2_session_callbacks_del (cb);
  nghttp2_submit_settings (h.s, NGHTTP2_FLAG_NONE, iv,
                           sizeof iv / sizeof iv[0]);
  nghttp2_session_set_local_window_size (h.s, NGHTTP2_FLAG_NONE, 0, WINDOW);

  /* Bytes that arrived behind the upgrade request. */
  if (c->len) {
    if (nghttp2_session_mem_recv (h.s, c->buf, c->len) < 0)
      goto out;
    c->len = 0;
  }
  while (!h.failed && (nghttp2_session_want_read (h.s)
                       || nghttp2_session_want_write (h.s))) {
    const uint8_t *data;
    ssize_t n;

    for (;;) {
      n = nghttp2_session_mem_send (h.s, &data);
      if (n < 0)
        goto out;
      if (n == 0)
        break;
      if (srv_write_all (c, data, (size_t) n) == -1)
        goto out;
    }
    if (!nghttp2_session_want_read (h.s))
      break;
    n = srv_read_more (c);
    if (n <= 0)
      break;
    n = nghttp2_session_mem_recv (h.s, c->buf, c->len);
    c->len = 0;
    if (n < 0) {
      srv_log ("conn %u: HTTP/2 error: %s", c->id,
               nghttp2_strerror ((int) n));
      /* flush the GOAWAY nghttp2 queued */
      while ((n = nghttp2_session_mem_send (h.s, &data)) > 0)
        if (srv_write_all (c, data, (size_t) n) == -1)
          break;
      break;
    }
  }
out:
  nghttp2_session_del (h.s);
  while (h.streams) {
    struct h2_stream *st = h.streams;
    h.streams = st->next;
    stream_free (st);
  }
}
