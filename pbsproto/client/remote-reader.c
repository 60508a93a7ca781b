/* remote-reader.c -- the reader protocol (docs/pbs-protocol.md §3.10):
 * download a snapshot's files and, after its index was downloaded, the
 * index's chunks.
 *
 * Chunks the caller announces (prefetch) are requested at once, each on a
 * stream of its own, and wait in a FIFO until asked for: one chunk at a
 * time, every chunk cost a full round trip plus the server's read of the
 * chunk file, with the connection idle meanwhile. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "remote-internal.h"

/* An index of a 10 TiB disk is 80 MiB; chunks are <= 16 MiB + 44. */
#define READER_DOWNLOAD_MAX ((size_t) 1024 * 1024 * 1024)
#define READER_CHUNK_MAX ((size_t) 16 * 1024 * 1024 + 64)

/* At most this many chunk downloads in flight: 4 x 4 MiB of answers. */
#define PREFETCH_MAX 4

struct fetch {
  struct pbs_h2_req rq; /* first: the h2 layer's pointer is ours */
  uint8_t digest[32];
  struct fetch *next;
};

struct pbs_backend_reader {
  struct pbs_h2 *h;
  struct fetch *head, **tail; /* prefetched, oldest first */
  size_t nfetch;
};

struct pbs_backend_reader *
pbs__remote_reader_start (void *repo, const char *ns, const char *type,
                          const char *id, int64_t time)
{
  struct pbs_remote *r = repo;
  struct pbs_backend_reader *rd;
  char *q, *target = NULL;

  q = pbs__remote_session_query (r->spec.store, ns, type, id, time, false);
  if (!q)
    return NULL;
  if (asprintf (&target, "/api2/json/reader?%s", q) == -1) {
    free (q);
    pbs__set_error (ENOMEM, "out of memory");
    return NULL;
  }
  free (q);
  rd = calloc (1, sizeof *rd);
  if (!rd) {
    free (target);
    pbs__set_error (ENOMEM, "out of memory");
    return NULL;
  }
  rd->tail = &rd->head;
  rd->h = pbs__h2_open (r, target, "proxmox-backup-reader-protocol-v1");
  free (target);
  if (!rd->h) {
    free (rd);
    return NULL;
  }
  return rd;
}

int
pbs__remote_reader_download (struct pbs_backend_reader *rd, const char *name,
                             uint8_t **data, size_t *len)
{
  char *q = NULL, *path = NULL;
  int rc;

  if (pbs__query_add (&q, "file-name", name) == -1)
    return -1;
  if (asprintf (&path, "download?%s", q) == -1) {
    free (q);
    pbs__set_error (ENOMEM, "out of memory");
    return -1;
  }
  free (q);
  rc = pbs__h2_call (rd->h, "GET", path, NULL, NULL, 0, READER_DOWNLOAD_MAX,
                     data, len, name);
  free (path);
  return rc;
}

static void
chunk_path (const uint8_t digest[32], char path[128])
{
  char hex[65];

  pbs_digest_hex (digest, hex);
  snprintf (path, 128, "chunk?digest=%s", hex);
}

int
pbs__remote_reader_prefetch (struct pbs_backend_reader *rd,
                             const uint8_t digest[32])
{
  struct fetch *f;
  char path[128];

  if (rd->nfetch >= PREFETCH_MAX)
    return 0; /* the window is full */
  f = calloc (1, sizeof *f);
  if (!f) {
    pbs__set_error (ENOMEM, "out of memory");
    return -1;
  }
  memcpy (f->digest, digest, 32);
  f->rq.body_max = READER_CHUNK_MAX;
  chunk_path (digest, path);
  if (pbs__h2_submit (rd->h, &f->rq, "GET", path, NULL, NULL, 0,
                      PBS_H2_BODY_BORROW)
      == -1) {
    free (f);
    return -1;
  }
  *rd->tail = f;
  rd->tail = &f->next;
  rd->nfetch++;
  /* Send the request now, not when the next answer is awaited.  A broken
   * connection shows at pbs__remote_reader_chunk. */
  (void) pbs__h2_step (rd->h, false);
  return 1;
}

/* Take the oldest prefetched download of DIGEST out of the FIFO. */
static struct fetch *
take_fetch (struct pbs_backend_reader *rd, const uint8_t digest[32])
{
  for (struct fetch **pp = &rd->head; *pp; pp = &(*pp)->next) {
    struct fetch *f = *pp;
    if (memcmp (f->digest, digest, 32) != 0)
      continue;
    *pp = f->next;
    if (rd->tail == &f->next)
      rd->tail = pp;
    rd->nfetch--;
    return f;
  }
  return NULL;
}

int
pbs__remote_reader_chunk (struct pbs_backend_reader *rd,
                          const uint8_t digest[32], uint8_t **blob,
                          size_t *len)
{
  struct fetch *f = take_fetch (rd, digest);
  char path[128];
  int rc;

  if (!f) {
    chunk_path (digest, path);
    return pbs__h2_call (rd->h, "GET", path, NULL, NULL, 0,
                         READER_CHUNK_MAX, blob, len, "chunk download");
  }
  rc = pbs__h2_wait (rd->h, &f->rq, "chunk download");
  if (rc == -1 && !f->rq.done) {
    /* The connection broke with streams open: nghttp2 still points at
     * them, so the session is never driven again and F lives on until
     * the reader is freed. */
    f->next = rd->head;
    rd->head = f;
    if (rd->tail == &rd->head)
      rd->tail = &f->next;
    rd->nfetch++;
    return -1;
  }
  if (rc == 0) {
    if (!f->rq.body && !(f->rq.body = calloc (1, 1))) {
      pbs__set_error (ENOMEM, "out of memory");
      rc = -1;
    }
    else {
      *blob = f->rq.body;
      *len = f->rq.body_len;
      f->rq.body = NULL;
    }
  }
  pbs__h2_req_release (&f->rq);
  free (f);
  return rc;
}

void
pbs__remote_reader_free (struct pbs_backend_reader *rd)
{
  if (!rd)
    return;
  /* The session first: it may still point at the FIFO's requests. */
  pbs__h2_close (rd->h);
  while (rd->head) {
    struct fetch *f = rd->head;
    rd->head = f->next;
    pbs__h2_req_release (&f->rq);
    free (f);
  }
  free (rd);
}
