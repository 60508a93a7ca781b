/* push-known.c -- which digests the pipeline need not encode: those of the
 * base indexes (known to the session once downloaded) and those claimed
 * for upload recently.  Only a hint: the consumer asks the session
 * (pbs_backup_known) before every upload, so a digest missing here costs
 * one useless compression, never a wrong index.
 *
 * Memory is what keeps this small on big disks: a base index is looked up
 * through a sorted array of 4-byte positions into the caller's digest
 * array (no copy of the digests), and claims live in a fixed ring. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "push.h"

#define RING 256 /* > the pipeline's slots: covers every in-flight claim */
#define MAX_BASES 64

struct base {
  const uint8_t (*digest)[PBS_DIGEST_LEN];
  uint32_t *order; /* positions sorted by digest */
  size_t n;
};

struct digest_set {
  pthread_mutex_t lock;
  struct base base[MAX_BASES];
  size_t nbases;
  uint8_t ring[RING][PBS_DIGEST_LEN];
  size_t ring_n, ring_next;
};

struct digest_set *
digest_set_new (void)
{
  struct digest_set *s = calloc (1, sizeof *s);

  if (s)
    pthread_mutex_init (&s->lock, NULL);
  return s;
}

void
digest_set_free (struct digest_set *s)
{
  size_t i;

  if (!s)
    return;
  for (i = 0; i < s->nbases; i++)
    free (s->base[i].order);
  pthread_mutex_destroy (&s->lock);
  free (s);
}

static int
cmp_pos (const void *a, const void *b, void *arg)
{
  const uint8_t (*d)[PBS_DIGEST_LEN] = arg;
  return memcmp (d[*(const uint32_t *) a], d[*(const uint32_t *) b],
                 PBS_DIGEST_LEN);
}

int
digest_set_add_base (struct digest_set *s,
                     const uint8_t (*digest)[PBS_DIGEST_LEN], size_t n)
{
  struct base *b;
  size_t i;

  if (s->nbases == MAX_BASES || n > UINT32_MAX)
    return 0; /* only a hint: more bases just cost compression time */
  b = &s->base[s->nbases];
  b->order = malloc ((n ? n : 1) * sizeof *b->order);
  if (!b->order)
    return -1;
  for (i = 0; i < n; i++)
    b->order[i] = (uint32_t) i;
  qsort_r (b->order, n, sizeof *b->order, cmp_pos, (void *) digest);
  b->digest = digest;
  b->n = n;
  pthread_mutex_lock (&s->lock);
  s->nbases++;
  pthread_mutex_unlock (&s->lock);
  return 0;
}

static bool
in_base (const struct base *b, const uint8_t d[PBS_DIGEST_LEN])
{
  size_t lo = 0, hi = b->n;

  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int c = memcmp (b->digest[b->order[mid]], d, PBS_DIGEST_LEN);
    if (c == 0)
      return true;
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return false;
}

/* Lock held. */
static bool
has (const struct digest_set *s, const uint8_t d[PBS_DIGEST_LEN])
{
  size_t i;

  for (i = 0; i < s->ring_n; i++)
    if (memcmp (s->ring[i], d, PBS_DIGEST_LEN) == 0)
      return true;
  for (i = 0; i < s->nbases; i++)
    if (in_base (&s->base[i], d))
      return true;
  return false;
}

bool
digest_set_add (struct digest_set *s, const uint8_t d[PBS_DIGEST_LEN])
{
  bool added = false;

  pthread_mutex_lock (&s->lock);
  if (!has (s, d)) {
    memcpy (s->ring[s->ring_next], d, PBS_DIGEST_LEN);
    s->ring_next = (s->ring_next + 1) % RING;
    if (s->ring_n < RING)
      s->ring_n++;
    added = true;
  }
  pthread_mutex_unlock (&s->lock);
  return added;
}
