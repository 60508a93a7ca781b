/* check-chunks.c -- prove stored chunks: present, a blob of the expected
 * crypt mode, CRC, decryption and decompression, SHA-256 (with the id_key
 * when encrypted) equal to the digest, length as the index says.  Each
 * thread owns one reader session and takes every NREADERS-th chunk, with
 * the next few announced to the session (pbs_reader_prefetch) so that a
 * server's round trips overlap. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"

/* ------------------------------------------------------------ the table */

static uint64_t
slot_hash (const uint8_t *d, uint32_t len, bool enc)
{
  uint64_t h;
  memcpy (&h, d, sizeof h); /* a digest is already uniform */
  return h ^ ((uint64_t) len * 0x9e3779b97f4a7c15ull) ^ (enc ? 1 : 0);
}

static int
grow_slots (struct chunk_table *t)
{
  size_t ns = t->nslots ? t->nslots * 2 : 1024, i;
  uint32_t *s = calloc (ns, sizeof *s);

  if (!s)
    return -1;
  for (i = 0; i < t->n; i++) {
    const struct check_chunk *c = &t->chunk[i];
    size_t j = slot_hash (c->digest, c->len, c->encrypted) & (ns - 1);
    while (s[j])
      j = (j + 1) & (ns - 1);
    s[j] = (uint32_t) (i + 1);
  }
  free (t->slot);
  t->slot = s;
  t->nslots = ns;
  return 0;
}

int64_t
chunk_table_get (struct chunk_table *t, const uint8_t digest[PBS_DIGEST_LEN],
                 uint32_t len, bool encrypted)
{
  size_t j;

  if (t->nslots) {
    j = slot_hash (digest, len, encrypted) & (t->nslots - 1);
    for (; t->slot[j]; j = (j + 1) & (t->nslots - 1)) {
      struct check_chunk *c = &t->chunk[t->slot[j] - 1];
      if (c->len == len && c->encrypted == encrypted
          && memcmp (c->digest, digest, PBS_DIGEST_LEN) == 0)
        return t->slot[j] - 1;
    }
  }
  if (t->n >= UINT32_MAX - 1)
    return -1;
  /* Keep the load factor at most 1/2. */
  if ((t->n + 1) * 2 > t->nslots && grow_slots (t) == -1)
    return -1;
  if (t->n == t->cap) {
    size_t nc = t->cap ? t->cap * 2 : 1024;
    struct check_chunk *c = realloc (t->chunk, nc * sizeof *c);
    if (!c)
      return -1;
    t->chunk = c;
    t->cap = nc;
  }
  memset (&t->chunk[t->n], 0, sizeof t->chunk[t->n]);
  memcpy (t->chunk[t->n].digest, digest, PBS_DIGEST_LEN);
  t->chunk[t->n].len = len;
  t->chunk[t->n].encrypted = encrypted;
  j = slot_hash (digest, len, encrypted) & (t->nslots - 1);
  while (t->slot[j])
    j = (j + 1) & (t->nslots - 1);
  t->slot[j] = (uint32_t) (t->n + 1);
  return (int64_t) t->n++;
}

void
chunk_table_free (struct chunk_table *t)
{
  size_t i;

  for (i = 0; i < t->n; i++)
    free (t->chunk[i].why);
  free (t->chunk);
  free (t->slot);
  memset (t, 0, sizeof *t);
}

/* ------------------------------------------------------------ proving */

struct prover {
  struct chunk_table *t;
  size_t from, to;
  unsigned nthreads;
  const struct pbs_key *key;
  uint64_t *done_bytes;
  pthread_mutex_t lock;
  pthread_cond_t cond;
  unsigned running;
  bool failed; /* a transport failure: every thread stops */
  char *err;
  size_t errlen;
};

struct worker {
  struct prover *p;
  struct pbs_reader *rd;
  unsigned n; /* takes chunks from + n, from + n + nthreads, ... */
  pthread_t tid;
};

/* The verdict on one stored blob: NULL if it is the chunk C, else why not
 * (malloc'd).  BUF (PBS_CHUNK_SIZE bytes, the thread's own) takes what
 * has to be decoded; a plain blob is hashed where it lies, as restore
 * does. */
static char *
judge (const struct check_chunk *c, const uint8_t *blob, size_t len,
       const struct pbs_key *key, uint8_t *buf)
{
  int kind = pbs_blob_kind (blob, len);
  bool enc = kind == PBS_BLOB_ENCRYPTED || kind == PBS_BLOB_ENCRYPTED_ZSTD;
  const uint8_t *data = NULL;
  uint8_t d[PBS_DIGEST_LEN];
  size_t dlen;
  char *why = NULL;

  if (kind == -1)
    return strdup (len < 12 ? "truncated: too short for a blob"
                            : "not a blob (bad magic)");
  if (pbs_blob_check_crc (blob, len) == -1)
    return strdup ("CRC mismatch: the stored file is damaged or truncated");
  if (enc != c->encrypted)
    return strdup (enc ? "stored encrypted, the index expects a plain chunk"
                       : "stored unencrypted, the index expects an "
                         "encrypted chunk");
  /* The CRC was checked above: decode_to leaves it out. */
  if (pbs_blob_decode_to (blob, len, c->encrypted ? key : NULL, buf,
                          PBS_CHUNK_SIZE, &data, &dlen)
      == -1) {
    if (asprintf (&why, "%s: %s",
                  c->encrypted ? "cannot be decrypted/decompressed"
                               : "cannot be decompressed",
                  pbs_errmsg ())
        == -1)
      why = NULL;
    return why ? why : strdup ("cannot be decoded");
  }
  pbs_chunk_digest (c->encrypted ? key : NULL, data, dlen, d);
  if (memcmp (d, c->digest, PBS_DIGEST_LEN) != 0)
    return strdup ("SHA-256 of its data differs from its digest");
  if (dlen != c->len) {
    if (asprintf (&why, "holds %zu bytes, the index expects %u", dlen,
                  c->len)
        == -1)
      why = NULL;
    return why ? why : strdup ("wrong length");
  }
  return NULL;
}

static void
fail_all (struct prover *p, const char *hex, const char *msg)
{
  pthread_mutex_lock (&p->lock);
  if (!p->failed)
    snprintf (p->err, p->errlen, "chunk %s: %s", hex, msg);
  p->failed = true;
  pthread_mutex_unlock (&p->lock);
}

static void *
work (void *arg)
{
  struct worker *w = arg;
  struct prover *p = w->p;
  size_t i, ahead;
  uint8_t *buf = malloc (PBS_CHUNK_SIZE);

  if (!buf)
    fail_all (p, "-", "out of memory");
  ahead = p->from + w->n;
  for (i = buf ? p->from + w->n : p->to; i < p->to; i += p->nthreads) {
    struct check_chunk *c = &p->t->chunk[i];
    uint8_t *blob = NULL;
    size_t len;
    bool stop;

    pthread_mutex_lock (&p->lock);
    stop = p->failed;
    pthread_mutex_unlock (&p->lock);
    if (stop)
      break;
    /* Keep the next chunks of this thread downloading meanwhile. */
    if (ahead <= i)
      ahead = i + p->nthreads;
    for (; ahead < p->to; ahead += p->nthreads)
      if (pbs_reader_prefetch (w->rd, p->t->chunk[ahead].digest) != 1)
        break;
    if (pbs_reader_chunk (w->rd, c->digest, &blob, &len) == -1) {
      char hex[65];
      pbs_digest_hex (c->digest, hex);
      /* A broken connection says nothing about the chunk. */
      if (pbs_error_is_transient () || pbs_errno () == ECANCELED
          || pbs_errno () == ENOMEM) {
        fail_all (p, hex, pbs_errmsg ());
        break;
      }
      if (asprintf (&c->why, "missing or unreadable: %s", pbs_errmsg ())
          == -1)
        c->why = NULL;
    }
    else {
      c->why = judge (c, blob, len, p->key, buf);
      free (blob);
    }
    c->state = c->why ? CHUNK_BAD : CHUNK_OK;
    __atomic_add_fetch (p->done_bytes, (uint64_t) c->len, __ATOMIC_RELAXED);
  }
  free (buf);
  pthread_mutex_lock (&p->lock);
  p->running--;
  pthread_cond_signal (&p->cond);
  pthread_mutex_unlock (&p->lock);
  return NULL;
}

int
check_chunks (struct chunk_table *t, size_t from, size_t to,
              struct pbs_reader **readers, unsigned nreaders,
              const struct pbs_key *key, uint64_t *done_bytes,
              void (*tick) (void *opaque), void *opaque, char *err,
              size_t errlen)
{
  struct prover p = { 0 };
  struct worker *w;
  unsigned i, started = 0;

  if (from >= to)
    return 0;
  if (nreaders > to - from)
    nreaders = (unsigned) (to - from);
  w = calloc (nreaders, sizeof *w);
  if (!w) {
    snprintf (err, errlen, "out of memory");
    return -1;
  }
  p.t = t;
  p.from = from;
  p.to = to;
  p.nthreads = nreaders;
  p.key = key;
  p.done_bytes = done_bytes;
  p.err = err;
  p.errlen = errlen;
  pthread_mutex_init (&p.lock, NULL);
  pthread_cond_init (&p.cond, NULL);
  p.running = nreaders;
  for (i = 0; i < nreaders; i++) {
    w[i].p = &p;
    w[i].rd = readers[i];
    w[i].n = i;
    if (pthread_create (&w[i].tid, NULL, work, &w[i]) != 0) {
      pthread_mutex_lock (&p.lock);
      p.running -= nreaders - i;
      if (!p.failed)
        snprintf (err, errlen, "cannot start a thread");
      p.failed = true;
      pthread_mutex_unlock (&p.lock);
      break;
    }
    started++;
  }
  pthread_mutex_lock (&p.lock);
  while (p.running) {
    struct timespec ts;
    clock_gettime (CLOCK_REALTIME, &ts);
    ts.tv_nsec += 250000000;
    if (ts.tv_nsec >= 1000000000) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000;
    }
    pthread_cond_timedwait (&p.cond, &p.lock, &ts);
    if (tick) {
      pthread_mutex_unlock (&p.lock);
      tick (opaque);
      pthread_mutex_lock (&p.lock);
    }
  }
  pthread_mutex_unlock (&p.lock);
  for (i = 0; i < started; i++)
    pthread_join (w[i].tid, NULL);
  free (w);
  pthread_mutex_destroy (&p.lock);
  pthread_cond_destroy (&p.cond);
  return p.failed ? -1 : 0;
}
