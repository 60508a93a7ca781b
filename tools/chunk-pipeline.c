/* chunk-pipeline.c -- read, hash and encode 4 MiB chunks on all cores with
 * bounded memory.
 *
 * A fixed ring of 2 x threads slots, each with one 4 MiB buffer: the
 * consumer (the thread that talks to the repository) submits jobs in order
 * into free slots, workers take the oldest pending slot, and the consumer
 * takes results back in submission order.  Memory is therefore at most
 * slots x (4 MiB + one encoded blob), whatever the disk size. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "push.h"

enum slot_state { SLOT_FREE, SLOT_PENDING, SLOT_BUSY, SLOT_DONE };

struct slot {
  enum slot_state state;
  uint64_t seq;
  struct chunk_job job;
  uint8_t *buf;
  const uint8_t *data; /* the raw bytes: BUF, or inside JOB.BLOB */
  uint8_t digest[PBS_DIGEST_LEN];
  uint8_t *blob;
  size_t blob_len;
  char err[512]; /* non-empty: the job failed */
  bool err_names_file; /* ERR is a qcowlib message: "FILE: what" */
};

struct chunk_pipeline {
  struct chunk_pipeline_opts o;
  pthread_mutex_t lock;
  pthread_cond_t work, done;
  pthread_t *tid;
  unsigned nthreads, nstarted;
  struct slot *slot;
  size_t nslots;
  uint64_t submitted, consumed;
  bool held;     /* the consumer still uses slot[consumed % nslots] */
  bool no_more;  /* next_job returned false */
  bool stop;
};

/* Decode mode: check the stored blob and decode it into the slot buffer;
 * an unencrypted, uncompressed blob's bytes are used where they are, so
 * the blob lives until the consumer is done with the slot (restore is
 * bound by the bytes it moves: no copy that is not needed). */
static void
decode (struct chunk_pipeline *p, struct slot *s)
{
  const struct chunk_pipeline_opts *o = &p->o;
  int kind = pbs_blob_kind (s->job.blob, s->job.blob_len);
  const uint8_t *data = NULL;
  size_t dlen;
  char hex[65];

  pbs_digest_hex (s->job.expect, hex);
  if (kind == -1
      || (o->encrypted != (kind == PBS_BLOB_ENCRYPTED
                           || kind == PBS_BLOB_ENCRYPTED_ZSTD)))
    snprintf (s->err, sizeof s->err, "chunk %s: wrong crypt mode or not a "
              "blob", hex);
  else if (pbs_blob_decode_to (s->job.blob, s->job.blob_len, o->key,
                               s->buf, PBS_CHUNK_SIZE, &data, &dlen) == -1)
    snprintf (s->err, sizeof s->err, "chunk %s: %s", hex, pbs_errmsg ());
  else {
    pbs_chunk_digest (o->key, data, dlen, s->digest);
    if (memcmp (s->digest, s->job.expect, PBS_DIGEST_LEN) != 0)
      snprintf (s->err, sizeof s->err, "chunk %s: digest mismatch", hex);
    else if (dlen != s->job.len)
      snprintf (s->err, sizeof s->err, "chunk %s: %zu bytes, index "
                "expects %u", hex, dlen, s->job.len);
    else
      s->data = data;
  }
}

static void
process (struct chunk_pipeline *p, struct slot *s)
{
  const struct chunk_pipeline_opts *o = &p->o;

  s->data = s->buf;
  if (o->decode) {
    decode (p, s);
    return;
  }
  if (s->job.zero_fill)
    memset (s->buf, 0, s->job.len);
  else if (qcow_pread (o->chain, s->buf, s->job.len, s->job.off) == -1) {
    snprintf (s->err, sizeof s->err, "%s", qcow_errmsg ());
    s->err_names_file = strstr (s->err, ": ") != NULL; /* qcowlib.h */
    return;
  }
  pbs_chunk_digest (o->key, s->buf, s->job.len, s->digest);
  /* Claim the digest before encoding so that two workers never compress
   * the same data; the consumer encodes itself in the rare case that a
   * later chunk carrying the claimed digest arrives first. */
  if (o->encode && !(o->session && pbs_backup_known (o->session, s->digest))
      && digest_set_add (o->known, s->digest)
      && pbs_blob_encode (s->buf, s->job.len, o->key, true, &s->blob,
                          &s->blob_len) == -1)
    snprintf (s->err, sizeof s->err, "encoding chunk %llu: %s",
              (unsigned long long) s->job.index, pbs_errmsg ());
}

static void *
worker (void *arg)
{
  struct chunk_pipeline *p = arg;
  struct slot *s;
  size_t i;

  pthread_setname_np (pthread_self (), "qcow2pbs-work");
  pthread_mutex_lock (&p->lock);
  for (;;) {
    s = NULL;
    for (i = 0; i < p->nslots; i++)
      if (p->slot[i].state == SLOT_PENDING
          && (!s || p->slot[i].seq < s->seq))
        s = &p->slot[i];
    if (!s) {
      if (p->stop)
        break;
      pthread_cond_wait (&p->work, &p->lock);
      continue;
    }
    s->state = SLOT_BUSY;
    pthread_mutex_unlock (&p->lock);
    process (p, s);
    pthread_mutex_lock (&p->lock);
    s->state = SLOT_DONE;
    pthread_cond_broadcast (&p->done);
  }
  pthread_mutex_unlock (&p->lock);
  return NULL;
}

struct chunk_pipeline *
chunk_pipeline_start (const struct chunk_pipeline_opts *opts)
{
  struct chunk_pipeline *p = calloc (1, sizeof *p);
  long ncpu;
  size_t i;

  if (!p)
    goto nomem;
  p->o = *opts;
  pthread_mutex_init (&p->lock, NULL);
  pthread_cond_init (&p->work, NULL);
  pthread_cond_init (&p->done, NULL);
  ncpu = sysconf (_SC_NPROCESSORS_ONLN);
  p->nthreads = opts->threads ? opts->threads
                              : (unsigned) (ncpu > 0 ? ncpu : 1);
  if (p->nthreads > 64)
    p->nthreads = 64;
  p->nslots = 2 * (size_t) p->nthreads;
  p->slot = calloc (p->nslots, sizeof *p->slot);
  p->tid = calloc (p->nthreads, sizeof *p->tid);
  if (!p->slot || !p->tid)
    goto nomem;
  for (i = 0; i < p->nslots; i++) {
    p->slot[i].buf = malloc (PBS_CHUNK_SIZE);
    if (!p->slot[i].buf)
      goto nomem;
  }
  for (; p->nstarted < p->nthreads; p->nstarted++)
    if (pthread_create (&p->tid[p->nstarted], NULL, worker, p) != 0) {
      cli_err_set (opts->err, opts->context, "cannot start worker threads");
      chunk_pipeline_free (p);
      return NULL;
    }
  return p;

nomem:
  cli_err_set (opts->err, opts->context, "out of memory");
  chunk_pipeline_free (p);
  return NULL;
}

/* Submit jobs into free slots (consumer thread, lock held; dropped while
 * the job source runs).  Only the consumer changes submitted/consumed and
 * only it touches a FREE slot, so that is safe.  Returns -1 if the job
 * source failed. */
static int
fill (struct chunk_pipeline *p)
{
  struct chunk_job job;
  bool more, failed = false;

  while (!p->no_more && p->submitted - p->consumed < p->nslots) {
    struct slot *s = &p->slot[p->submitted % p->nslots];
    memset (&job, 0, sizeof job);
    pthread_mutex_unlock (&p->lock);
    more = p->o.next_job (p->o.opaque, &job, &failed);
    pthread_mutex_lock (&p->lock);
    if (!more) {
      p->no_more = true;
      return failed ? -1 : 0;
    }
    s->job = job;
    s->seq = p->submitted++;
    s->err[0] = 0;
    s->err_names_file = false;
    s->blob = NULL;
    s->blob_len = 0;
    s->state = SLOT_PENDING;
    pthread_cond_signal (&p->work);
  }
  return 0;
}

int
chunk_pipeline_next (struct chunk_pipeline *p, struct chunk_result *r)
{
  struct slot *s;

  pthread_mutex_lock (&p->lock);
  if (p->held) {
    s = &p->slot[p->consumed % p->nslots];
    free (s->job.blob);
    s->job.blob = NULL;
    s->state = SLOT_FREE;
    p->consumed++;
    p->held = false;
  }
  if (fill (p) == -1) {
    pthread_mutex_unlock (&p->lock);
    return -1; /* the job source described why in p->o.err */
  }
  if (p->consumed == p->submitted) {
    pthread_mutex_unlock (&p->lock);
    return 0;
  }
  s = &p->slot[p->consumed % p->nslots];
  while (s->state != SLOT_DONE)
    pthread_cond_wait (&p->done, &p->lock);
  pthread_mutex_unlock (&p->lock);

  if (s->err[0]) {
    cli_err_set (p->o.err, s->err_names_file ? "" : p->o.context, "%s",
                 s->err);
    free (s->blob);
    s->blob = NULL;
    free (s->job.blob);
    s->job.blob = NULL;
    return -1;
  }
  r->job = s->job;
  memcpy (r->digest, s->digest, PBS_DIGEST_LEN);
  r->blob = s->blob;
  r->blob_len = s->blob_len;
  r->data = s->data;
  s->blob = NULL; /* ownership goes to the caller */
  p->held = true;
  return 1;
}

void
chunk_pipeline_free (struct chunk_pipeline *p)
{
  size_t i;

  if (!p)
    return;
  pthread_mutex_lock (&p->lock);
  p->stop = true;
  /* Pending jobs are dropped: nobody will consume them. */
  if (p->slot)
    for (i = 0; i < p->nslots; i++)
      if (p->slot[i].state == SLOT_PENDING) {
        p->slot[i].state = SLOT_FREE;
        free (p->slot[i].job.blob);
        p->slot[i].job.blob = NULL;
      }
  pthread_cond_broadcast (&p->work);
  pthread_mutex_unlock (&p->lock);
  for (i = 0; i < p->nstarted; i++)
    pthread_join (p->tid[i], NULL);
  if (p->slot)
    for (i = 0; i < p->nslots; i++) {
      free (p->slot[i].buf);
      free (p->slot[i].blob);
      free (p->slot[i].job.blob);
    }
  free (p->slot);
  free (p->tid);
  pthread_mutex_destroy (&p->lock);
  pthread_cond_destroy (&p->work);
  pthread_cond_destroy (&p->done);
  free (p);
}
