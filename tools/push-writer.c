/* push-writer.c -- write one archive's index: chunks read through the
 * pipeline, stored unless known, their digests appended in batches.
 *
 * The index is written with strategy B of docs/pbs-protocol.md §7.3
 * (reuse-csum: the server clones the base's digests, we send only touched
 * chunks) when the base is proven and the size is unchanged, else with
 * strategy A (every digest appended; reused ones taken from the base). */
#include <stdlib.h>
#include <string.h>

#include "push-run.h"

#define APPEND_BATCH 128 /* pairs per PUT fixed_index, as PVE's QEMU */

struct writer {
  struct push *p;
  struct archive *a;
  int wid;
  bool reuse;  /* strategy B */
  uint8_t dig[APPEND_BATCH][PBS_DIGEST_LEN];
  uint64_t off[APPEND_BATCH];
  size_t n;
  uint64_t appended, appended_bytes;
  struct pbs_fidx_csum_ctx *csum; /* of the index written */
  uint64_t next; /* job cursor */
};

static int
flush (struct writer *w)
{
  if (w->n && w->p->b
      && pbs_backup_fixed_append (w->p->b, w->wid, w->n,
                                  (const uint8_t (*)[PBS_DIGEST_LEN]) w->dig,
                                  w->off)
             == -1)
    return push_fail_pbs (w->p, w->a->name);
  w->n = 0;
  return 0;
}

static int
append (struct writer *w, uint64_t c, const uint8_t d[PBS_DIGEST_LEN],
        bool send)
{
  uint64_t off = c * (uint64_t) PBS_CHUNK_SIZE;

  pbs_fidx_csum_add (w->csum, d);
  if (!send)
    return 0;
  memcpy (w->dig[w->n], d, PBS_DIGEST_LEN);
  w->off[w->n++] = off;
  w->appended++;
  w->appended_bytes += off + PBS_CHUNK_SIZE <= w->a->size
                           ? PBS_CHUNK_SIZE
                           : w->a->size - off;
  return w->n == APPEND_BATCH ? flush (w) : 0;
}

static bool
is_known (struct push *p, const uint8_t d[PBS_DIGEST_LEN])
{
  return p->b ? pbs_backup_known (p->b, d) : false;
}

/* Store a chunk unless the session knows it.  BLOB may be NULL (then it is
 * encoded here from DATA); it is freed. */
static int
store (struct push *p, struct writer *w, const uint8_t d[PBS_DIGEST_LEN],
       const uint8_t *data, uint32_t len, uint8_t *blob, size_t blob_len)
{
  if (p->b ? pbs_backup_known (p->b, d)
           : (!blob && !digest_set_add (p->known, d))) {
    free (blob);
    return 0;
  }
  if (!blob) {
    if (!data) {
      free (blob);
      return push_fail (p, w->a->name, "internal error: no chunk data");
    }
    if (pbs_blob_encode (data, len, p->key, true, &blob, &blob_len) == -1)
      return push_fail (p, w->a->name, "encoding chunk: %s", pbs_errmsg ());
  }
  if (!p->b)
    free (blob); /* dry run */
  else if (pbs_backup_fixed_chunk_take (p->b, w->wid, d, len, blob, blob_len)
           == -1)
    return push_fail_pbs (p, w->a->name);
  w->a->stored_chunks++;
  w->a->stored_bytes += blob_len;
  return 0;
}

static bool
next_job (void *opaque, struct chunk_job *job, bool *failed)
{
  struct writer *w = opaque;
  struct archive *a = w->a;

  (void) failed;
  while (w->next < a->nchunks && a->plan[w->next] != PLAN_READ
         && a->plan[w->next] != PLAN_ZERO_DATA)
    w->next++;
  if (w->next >= a->nchunks)
    return false;
  job->index = w->next;
  job->off = w->next * (uint64_t) PBS_CHUNK_SIZE;
  job->len = job->off + PBS_CHUNK_SIZE <= a->size
                 ? PBS_CHUNK_SIZE
                 : (uint32_t) (a->size - job->off);
  job->zero_fill = a->plan[w->next] == PLAN_ZERO_DATA;
  w->next++;
  return true;
}

int
push_write_archive (struct push *p, struct archive *a)
{
  struct writer *w = calloc (1, sizeof *w);
  struct chunk_pipeline *pl = NULL;
  struct chunk_pipeline_opts po = { 0 };
  struct chunk_result r;
  struct cli_err err;
  uint8_t reuse_csum[32];
  uint64_t c;
  int rc, ret = -1;

  if (!w)
    return push_fail (p, a->image, "out of memory");
  w->p = p;
  w->a = a;
  w->csum = pbs_fidx_csum_new ();
  if (!w->csum) {
    push_fail (p, a->image, "out of memory");
    goto out;
  }
  /* Strategy B needs equal chunk counts; equal sizes keep it simple. */
  w->reuse = a->incremental && a->base->size == a->size;
  if (w->reuse)
    pbs_fidx_csum (a->base, reuse_csum);
  if (p->b) {
    w->wid = pbs_backup_fixed_index (p->b, a->name, a->size,
                                     w->reuse ? reuse_csum : NULL);
    if (w->wid == -1) {
      push_fail_pbs (p, a->name);
      goto out;
    }
  }
  po.chain = a->chain;
  po.key = p->key;
  po.encode = true;
  po.known = p->known;
  po.session = p->b;
  po.context = a->image;
  po.err = &err;
  po.next_job = next_job;
  po.opaque = w;
  pl = chunk_pipeline_start (&po);
  if (!pl) {
    push_fail (p, err.ctx, "%s", err.msg);
    goto out;
  }
  for (c = 0; c < a->nchunks; c++) {
    if (cli_interrupted ()) {
      push_fail (p, "push", "interrupted");
      goto out;
    }
    switch (a->plan[c]) {
    case PLAN_REUSE:
      a->reused_chunks++;
      if (append (w, c, a->base->digest[c], !w->reuse) == -1)
        goto out;
      progress_add (&p->prog, PBS_CHUNK_SIZE);
      break;
    case PLAN_ZERO:
      a->zero_chunks++;
      /* Stored once per session: PBS references only known digests. */
      if (!p->zero_stored && !is_known (p, p->zero_digest)) {
        uint8_t *zeros = calloc (1, PBS_CHUNK_SIZE);
        if (!zeros) {
          push_fail (p, a->image, "out of memory");
          goto out;
        }
        rc = store (p, w, p->zero_digest, zeros, PBS_CHUNK_SIZE, NULL, 0);
        free (zeros);
        if (rc == -1)
          goto out;
      }
      p->zero_stored = true;
      if (append (w, c, p->zero_digest, true) == -1)
        goto out;
      progress_add (&p->prog, PBS_CHUNK_SIZE);
      break;
    default:
      switch (chunk_pipeline_next (pl, &r)) {
      case 1:
        break;
      case 0:
        push_fail (p, a->image, "internal error: pipeline ended early");
        goto out;
      default:
        push_fail (p, err.ctx, "%s", err.msg);
        goto out;
      }
      if (r.job.index != c) {
        free (r.blob);
        push_fail (p, a->image, "internal error: chunk order");
        goto out;
      }
      if (!r.job.zero_fill) {
        a->read_chunks++;
        a->read_bytes += r.job.len;
        progress_io (&p->prog, r.job.len);
      }
      if (store (p, w, r.digest, r.data, r.job.len, r.blob, r.blob_len)
              == -1
          || append (w, c, r.digest, true) == -1)
        goto out;
      progress_add (&p->prog, r.job.len);
      break;
    }
  }
  if (flush (w) == -1)
    goto out;
  rc = pbs_fidx_csum_final (w->csum, a->csum);
  w->csum = NULL;
  if (rc == -1) {
    push_fail (p, a->image, "%s", pbs_errmsg ());
    goto out;
  }
  if (p->b
      && pbs_backup_fixed_close (p->b, w->wid,
                                 w->reuse ? w->appended : a->nchunks,
                                 w->reuse ? w->appended_bytes : a->size,
                                 a->csum)
             == -1) {
    push_fail_pbs (p, a->name);
    goto out;
  }
  ret = 0;
out:
  chunk_pipeline_free (pl);
  pbs_fidx_csum_free (w->csum);
  free (w);
  return ret;
}
