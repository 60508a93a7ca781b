/* remote-backup.c -- the backup protocol (docs/pbs-protocol.md §3) on an
 * upgraded HTTP/2 connection.
 *
 * Chunk uploads are asynchronous: pbs_backup_fixed_chunk queues a POST on
 * its own stream and returns; at most UPLOAD_WINDOW bytes of bodies and
 * UPLOAD_STREAMS streams are in flight, beyond that the call drives the
 * session until uploads complete.  Appends are buffered and sent as PUT
 * batches of APPEND_BATCH pairs (as proxmox-backup-qemu), and a pair
 * whose chunk is still uploading waits until that upload returned 200
 * (§1.4 "pipelining").  The first failure of an asynchronous request is
 * kept and returned by every later call; the session is then useless, as
 * in the official client, and the caller starts a new one. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "remote-internal.h"

#define UPLOAD_WINDOW ((size_t) 64 * 1024 * 1024)
#define UPLOAD_STREAMS 128
#define APPEND_BATCH 128
#define SMALL_ANSWER ((size_t) 64 * 1024)
#define DOWNLOAD_MAX ((size_t) 1024 * 1024 * 1024)

struct upload {
  struct pbs_h2_req rq; /* first: the done callback casts back */
  struct pbs_backend_backup *b;
  uint8_t digest[32];
  size_t bytes;
  bool is_put;
  struct upload *prev, *next;
};

struct append {
  int wid;
  uint64_t offset;
  uint8_t digest[32];
};

struct pbs_backend_backup {
  struct pbs_remote *r;
  struct pbs_h2 *h;
  struct upload *inflight; /* chunk POSTs and PUT batches */
  size_t nuploads, upload_bytes, nputs;
  struct append *pending;
  size_t npending, pending_cap;
  bool failed;
  int fail_status, fail_errno;
  char fail_msg[400];
};

static void
record_failure (struct pbs_backend_backup *b)
{
  if (b->failed)
    return;
  b->failed = true;
  b->fail_status = pbs_http_status ();
  b->fail_errno = pbs_errno ();
  snprintf (b->fail_msg, sizeof b->fail_msg, "%s", pbs_errmsg ());
}

/* Re-raise the kept failure.  -1 if the session has failed, else 0. */
static int
check_failed (struct pbs_backend_backup *b)
{
  if (!b->failed)
    return 0;
  pbs__set_http_error (b->fail_status, b->fail_errno, "%s", b->fail_msg);
  return -1;
}

static void
unlink_upload (struct pbs_backend_backup *b, struct upload *u)
{
  if (u->prev)
    u->prev->next = u->next;
  else
    b->inflight = u->next;
  if (u->next)
    u->next->prev = u->prev;
  if (u->is_put)
    b->nputs--;
  else {
    b->nuploads--;
    b->upload_bytes -= u->bytes;
  }
}

static void
upload_done (struct pbs_h2_req *rq)
{
  struct upload *u = (struct upload *) rq;
  struct pbs_backend_backup *b = u->b;

  unlink_upload (b, u);
  if (rq->status != 200 || rq->reset) {
    char hex[65];
    pbs_digest_hex (u->digest, hex);
    pbs__h2_req_error (rq, u->is_put ? "append to index" : "upload chunk");
    if (!u->is_put) {
      /* Name the chunk: the server's text alone may not. */
      char msg[400];
      snprintf (msg, sizeof msg, "%s", pbs_errmsg ());
      pbs__set_http_error (pbs_http_status (), pbs_errno (), "%s (chunk %s)",
                           msg, hex);
    }
    record_failure (b);
  }
  pbs__h2_req_release (rq);
  free (u);
}

/* One round of I/O; BLOCK waits for something to happen. */
static int
pump (struct pbs_backend_backup *b, bool block)
{
  if (check_failed (b) == -1)
    return -1;
  if (pbs__h2_step (b->h, block) == -1) {
    record_failure (b);
    return -1;
  }
  return check_failed (b);
}

static bool
in_flight (const struct pbs_backend_backup *b, const uint8_t digest[32])
{
  for (const struct upload *u = b->inflight; u; u = u->next)
    if (!u->is_put && memcmp (u->digest, digest, 32) == 0)
      return true;
  return false;
}

/* Send one PUT fixed_index of N pairs (§3.5) without waiting for it. */
static int
send_put (struct pbs_backend_backup *b, int wid, const struct append *a,
          size_t n)
{
  json_t *obj, *dl, *ol;
  char *body = NULL;
  struct upload *u;
  int rc;

  obj = json_object ();
  dl = json_array ();
  ol = json_array ();
  if (!obj || !dl || !ol)
    goto nomem;
  for (size_t i = 0; i < n; i++) {
    char hex[65];
    pbs_digest_hex (a[i].digest, hex);
    if (json_array_append_new (dl, json_string (hex)) == -1
        || json_array_append_new (ol, json_integer ((json_int_t) a[i].offset))
               == -1)
      goto nomem;
  }
  if (json_object_set_new (obj, "wid", json_integer (wid)) == -1
      || json_object_set (obj, "digest-list", dl) == -1
      || json_object_set (obj, "offset-list", ol) == -1)
    goto nomem;
  body = json_dumps (obj, JSON_COMPACT);
  if (!body)
    goto nomem;
  u = calloc (1, sizeof *u);
  if (!u)
    goto nomem;
  u->b = b;
  u->is_put = true;
  u->rq.on_done = upload_done;
  u->rq.body_max = SMALL_ANSWER;
  rc = pbs__h2_submit (b->h, &u->rq, "PUT", "fixed_index", "application/json",
                       body, strlen (body), PBS_H2_BODY_TAKE);
  body = NULL; /* taken, even on error */
  if (rc == -1) {
    free (u);
    goto err;
  }
  u->next = b->inflight;
  if (u->next)
    u->next->prev = u;
  b->inflight = u;
  b->nputs++;
  json_decref (obj);
  json_decref (dl);
  json_decref (ol);
  return 0;
nomem:
  pbs__set_error (ENOMEM, "out of memory");
err:
  free (body);
  json_decref (obj);
  json_decref (dl);
  json_decref (ol);
  record_failure (b);
  return -1;
}

/* Send the buffered pairs whose chunks are not uploading any more, in
 * batches per writer; ALL also sends a short last batch. */
static int
flush_appends (struct pbs_backend_backup *b, bool all)
{
  struct append batch[APPEND_BATCH];

  for (;;) {
    size_t nb = 0, keep = 0;
    int wid = 0;

    for (size_t i = 0; i < b->npending; i++) {
      struct append *a = &b->pending[i];
      if (nb < APPEND_BATCH && (nb == 0 || a->wid == wid)
          && !in_flight (b, a->digest)) {
        wid = a->wid;
        batch[nb++] = *a;
      }
      else
        b->pending[keep++] = *a;
    }
    if (nb == 0)
      return 0;
    if (nb < APPEND_BATCH && !all) {
      /* Not worth a request yet: put them back. */
      memmove (b->pending + nb, b->pending, keep * sizeof *b->pending);
      memcpy (b->pending, batch, nb * sizeof *batch);
      return 0;
    }
    b->npending = keep;
    if (send_put (b, wid, batch, nb) == -1)
      return -1;
  }
}

/* Wait until every chunk upload and every PUT has been answered, and all
 * buffered pairs are sent. */
static int
drain (struct pbs_backend_backup *b)
{
  while (b->nuploads > 0)
    if (pump (b, true) == -1)
      return -1;
  if (flush_appends (b, true) == -1)
    return -1;
  while (b->nputs > 0)
    if (pump (b, true) == -1)
      return -1;
  return check_failed (b);
}

/* ------------------------------------------------------ endpoints */

struct pbs_backend_backup *
pbs__remote_backup_start (void *repo, const char *ns, const char *type,
                          const char *id, int64_t time)
{
  struct pbs_remote *r = repo;
  struct pbs_backend_backup *b;
  char *q, *target = NULL;

  q = pbs__remote_session_query (r->spec.store, ns, type, id, time, true);
  if (!q)
    return NULL;
  if (asprintf (&target, "/api2/json/backup?%s", q) == -1) {
    free (q);
    pbs__set_error (ENOMEM, "out of memory");
    return NULL;
  }
  free (q);
  b = calloc (1, sizeof *b);
  if (!b) {
    free (target);
    pbs__set_error (ENOMEM, "out of memory");
    return NULL;
  }
  b->r = r;
  b->h = pbs__h2_open (r, target, "proxmox-backup-protocol-v1");
  free (target);
  if (!b->h) {
    free (b);
    return NULL;
  }
  return b;
}

int
pbs__json_data_parse (const uint8_t *ans, size_t len, json_t **data,
                      const char *what)
{
  json_t *root = json_loadb ((const char *) ans, len, 0, NULL);

  if (!json_is_object (root) || !json_object_get (root, "data")) {
    json_decref (root);
    pbs__set_error (EPROTO, "%s: unexpected answer from the server", what);
    return -1;
  }
  if (data) {
    *data = json_object_get (root, "data");
    json_incref (*data);
  }
  json_decref (root);
  return 0;
}

/* A synchronous call answering {"data": X}; *DATA gets X (new ref). */
static int
json_call (struct pbs_backend_backup *b, const char *method, const char *path,
           json_t *body, json_t **data, const char *what)
{
  char *text = NULL;
  uint8_t *ans = NULL;
  size_t len = 0;
  int rc;

  if (check_failed (b) == -1)
    return -1;
  if (body) {
    text = json_dumps (body, JSON_COMPACT);
    if (!text) {
      pbs__set_error (ENOMEM, "out of memory");
      return -1;
    }
  }
  rc = pbs__h2_call (b->h, method, path, body ? "application/json" : NULL,
                     text, text ? strlen (text) : 0, SMALL_ANSWER, &ans, &len,
                     what);
  free (text);
  if (rc == -1) {
    if (pbs__h2_broken (b->h))
      record_failure (b);
    return -1;
  }
  rc = pbs__json_data_parse (ans, len, data, what);
  free (ans);
  return rc;
}

int
pbs__remote_previous_time (struct pbs_backend_backup *b, int64_t *out)
{
  json_t *d;

  if (json_call (b, "GET", "previous_backup_time", NULL, &d,
                 "previous_backup_time")
      == -1)
    return -1;
  if (json_is_null (d))
    *out = -1;
  else if (json_is_integer (d))
    *out = json_integer_value (d);
  else {
    json_decref (d);
    pbs__set_error (EPROTO, "previous_backup_time: unexpected answer");
    return -1;
  }
  json_decref (d);
  return 0;
}

int
pbs__remote_download_previous (struct pbs_backend_backup *b,
                               const char *name, uint8_t **data, size_t *len)
{
  char *q = NULL, *path = NULL, what[300];
  int rc;

  if (check_failed (b) == -1)
    return -1;
  if (pbs__query_add (&q, "archive-name", name) == -1)
    return -1;
  if (asprintf (&path, "previous?%s", q) == -1) {
    free (q);
    pbs__set_error (ENOMEM, "out of memory");
    return -1;
  }
  free (q);
  snprintf (what, sizeof what, "previous %s", name);
  rc = pbs__h2_call (b->h, "GET", path, NULL, NULL, 0, DOWNLOAD_MAX, data,
                     len, what);
  free (path);
  if (rc == -1) {
    if (pbs__h2_broken (b->h))
      record_failure (b);
    else if (pbs_http_status () == 400 || pbs_http_status () == 404) {
      /* "no valid previous backup" (400) or a missing file (404): both
       * mean "nothing to reuse" to the caller (ENOENT). */
      char msg[400];
      int st = pbs_http_status ();
      snprintf (msg, sizeof msg, "%s", pbs_errmsg ());
      pbs__set_http_error (st, ENOENT, "%s", msg);
    }
  }
  return rc;
}

int
pbs__remote_fixed_index (struct pbs_backend_backup *b, const char *name,
                         uint64_t size, const uint8_t *reuse_csum)
{
  json_t *body, *d;
  int wid;
  char hex[65];

  if (reuse_csum)
    pbs_digest_hex (reuse_csum, hex); /* PBS compares it as lower-case hex */
  body = json_pack ("{s:s, s:I}", "archive-name", name, "size",
                    (json_int_t) size);
  if (!body
      || (reuse_csum
          && json_object_set_new (body, "reuse-csum",
                                  json_string (hex))
                 == -1)) {
    json_decref (body);
    pbs__set_error (ENOMEM, "out of memory");
    return -1;
  }
  if (json_call (b, "POST", "fixed_index", body, &d, name) == -1) {
    json_decref (body);
    return -1;
  }
  json_decref (body);
  if (!json_is_integer (d) || json_integer_value (d) < 1
      || json_integer_value (d) > 256) {
    json_decref (d);
    pbs__set_error (EPROTO, "fixed_index: unexpected writer id");
    return -1;
  }
  wid = (int) json_integer_value (d);
  json_decref (d);
  return wid;
}

int
pbs__remote_fixed_chunk (struct pbs_backend_backup *b, int wid,
                         const uint8_t digest[32], uint32_t size,
                         const uint8_t *blob, size_t blob_len, uint8_t *take)
{
  char hex[65], path[256];
  struct upload *u;

  if (check_failed (b) == -1) {
    free (take);
    return -1;
  }
  /* Bounded memory: wait while the window is full. */
  while (b->nuploads > 0
         && (b->nuploads >= UPLOAD_STREAMS
             || b->upload_bytes + blob_len > UPLOAD_WINDOW))
    if (pump (b, true) == -1) {
      free (take);
      return -1;
    }
  pbs_digest_hex (digest, hex);
  snprintf (path, sizeof path,
            "fixed_chunk?wid=%d&digest=%s&size=%u&encoded-size=%zu", wid, hex,
            size, blob_len);
  u = calloc (1, sizeof *u);
  if (!u) {
    free (take);
    pbs__set_error (ENOMEM, "out of memory");
    return -1;
  }
  u->b = b;
  memcpy (u->digest, digest, 32);
  u->bytes = blob_len;
  u->rq.on_done = upload_done;
  u->rq.body_max = SMALL_ANSWER;
  if (pbs__h2_submit (b->h, &u->rq, "POST", path, "application/octet-stream",
                      blob, blob_len,
                      take ? PBS_H2_BODY_TAKE : PBS_H2_BODY_COPY)
      == -1) {
    free (u);
    record_failure (b);
    return -1;
  }
  u->next = b->inflight;
  if (u->next)
    u->next->prev = u;
  b->inflight = u;
  b->nuploads++;
  b->upload_bytes += blob_len;
  /* Start sending now; the caller reads and compresses the next chunk
   * while the kernel moves this one. */
  return pump (b, false);
}

int
pbs__remote_fixed_append (struct pbs_backend_backup *b, int wid, size_t n,
                          const uint8_t (*digests)[32],
                          const uint64_t *offsets)
{
  if (check_failed (b) == -1)
    return -1;
  if (b->npending + n > b->pending_cap) {
    size_t cap = b->pending_cap ? b->pending_cap : 256;
    struct append *np;
    while (cap < b->npending + n)
      cap *= 2;
    np = realloc (b->pending, cap * sizeof *np);
    if (!np) {
      pbs__set_error (ENOMEM, "out of memory");
      return -1;
    }
    b->pending = np;
    b->pending_cap = cap;
  }
  for (size_t i = 0; i < n; i++) {
    struct append *a = &b->pending[b->npending++];
    a->wid = wid;
    a->offset = offsets[i];
    memcpy (a->digest, digests[i], 32);
  }
  if (pump (b, false) == -1 || flush_appends (b, false) == -1)
    return -1;
  /* Keep the PUT answers from piling up without bound. */
  while (b->nputs > UPLOAD_STREAMS)
    if (pump (b, true) == -1)
      return -1;
  return 0;
}

int
pbs__remote_fixed_close (struct pbs_backend_backup *b, int wid,
                         uint64_t chunk_count, uint64_t size,
                         const uint8_t csum[32])
{
  json_t *body;
  char hex[65];
  int rc;

  if (drain (b) == -1)
    return -1;
  pbs_digest_hex (csum, hex);
  body = json_pack ("{s:i, s:I, s:I, s:s}", "wid", wid, "chunk-count",
                    (json_int_t) chunk_count, "size", (json_int_t) size,
                    "csum", hex);
  if (!body) {
    pbs__set_error (ENOMEM, "out of memory");
    return -1;
  }
  rc = json_call (b, "POST", "fixed_close", body, NULL, "fixed_close");
  json_decref (body);
  return rc;
}

int
pbs__remote_blob (struct pbs_backend_backup *b, const char *name,
                  const uint8_t *blob, size_t len)
{
  char *q = NULL, *path = NULL, lbuf[32];
  uint8_t *ans = NULL;
  size_t alen;
  int rc;

  if (check_failed (b) == -1)
    return -1;
  snprintf (lbuf, sizeof lbuf, "%zu", len);
  if (pbs__query_add (&q, "file-name", name) == -1
      || pbs__query_add (&q, "encoded-size", lbuf) == -1
      || asprintf (&path, "blob?%s", q) == -1) {
    free (q);
    pbs__set_error (ENOMEM, "out of memory");
    return -1;
  }
  free (q);
  rc = pbs__h2_call (b->h, "POST", path, "application/octet-stream", blob,
                     len, SMALL_ANSWER, &ans, &alen, name);
  free (path);
  free (ans);
  if (rc == -1 && pbs__h2_broken (b->h))
    record_failure (b);
  return rc;
}

int
pbs__remote_finish (struct pbs_backend_backup *b)
{
  if (drain (b) == -1)
    return -1;
  /* The last call of a session: only after its 200 does the snapshot
   * count (§1.5). */
  return json_call (b, "POST", "finish", NULL, NULL, "finish");
}

void
pbs__remote_backup_free (struct pbs_backend_backup *b)
{
  struct upload *u, *next;

  if (!b)
    return;
  /* Closing the connection is the abort: the server removes an
   * unfinished snapshot (§1.5).  No callbacks run after this. */
  pbs__h2_close (b->h);
  for (u = b->inflight; u; u = next) {
    next = u->next;
    pbs__h2_req_release (&u->rq);
    free (u);
  }
  free (b->pending);
  free (b);
}
