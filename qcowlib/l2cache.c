/* l2cache.c -- a bounded, thread-safe LRU of L2 tables, shared by all
 * layers of a chain.
 *
 * Readers borrow a table (reference count) and return it; only unborrowed
 * tables are evicted, so a table never disappears under a reader.  The
 * lock is held only for the lookup, never across I/O: two threads missing
 * the same table both read it and the second copy is dropped.  Memory is
 * bounded by QCOW_L2_CACHE_BYTES plus the tables currently borrowed (one
 * per reading thread). */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>

#include "qcow-internal.h"

#define NBUCKETS 4096

struct l2entry {
  const struct qcow__layer *layer;
  uint64_t offset;
  uint8_t *data;
  size_t size;
  unsigned refs;
  struct l2entry *hnext;            /* hash chain */
  struct l2entry *newer, *older;    /* LRU list */
};

struct qcow__l2cache {
  pthread_mutex_t lock;
  struct l2entry *buckets[NBUCKETS];
  struct l2entry *newest, *oldest;
  size_t bytes;
};

struct qcow__l2cache *
qcow__l2cache_new (void)
{
  struct qcow__l2cache *c = calloc (1, sizeof *c);

  if (!c)
    return NULL;
  pthread_mutex_init (&c->lock, NULL);
  return c;
}

void
qcow__l2cache_free (struct qcow__l2cache *c)
{
  struct l2entry *e, *next;

  if (!c)
    return;
  for (e = c->newest; e; e = next) {
    next = e->older;
    free (e->data);
    free (e);
  }
  pthread_mutex_destroy (&c->lock);
  free (c);
}

static size_t
bucket (const struct qcow__layer *l, uint64_t offset)
{
  uint64_t h = (offset >> 9) * 0x9e3779b97f4a7c15ull + l->depth;
  return (size_t) (h >> 52) % NBUCKETS;
}

static void
lru_unlink (struct qcow__l2cache *c, struct l2entry *e)
{
  if (e->newer)
    e->newer->older = e->older;
  else
    c->newest = e->older;
  if (e->older)
    e->older->newer = e->newer;
  else
    c->oldest = e->newer;
  e->newer = e->older = NULL;
}

static void
lru_push (struct qcow__l2cache *c, struct l2entry *e)
{
  e->older = c->newest;
  e->newer = NULL;
  if (c->newest)
    c->newest->newer = e;
  c->newest = e;
  if (!c->oldest)
    c->oldest = e;
}

static struct l2entry *
find (struct qcow__l2cache *c, const struct qcow__layer *l, uint64_t offset)
{
  struct l2entry *e;

  for (e = c->buckets[bucket (l, offset)]; e; e = e->hnext)
    if (e->layer == l && e->offset == offset)
      return e;
  return NULL;
}

static void
evict (struct qcow__l2cache *c)
{
  struct l2entry *e = c->oldest, *prev;

  while (e && c->bytes > QCOW_L2_CACHE_BYTES) {
    prev = e->newer;
    if (e->refs == 0) {
      struct l2entry **pp = &c->buckets[bucket (e->layer, e->offset)];
      while (*pp != e)
        pp = &(*pp)->hnext;
      *pp = e->hnext;
      lru_unlink (c, e);
      c->bytes -= e->size;
      free (e->data);
      free (e);
    }
    e = prev;
  }
}

const uint8_t *
qcow__l2_get (struct qcow_chain *ch, struct qcow__layer *l, uint64_t offset,
              void **token)
{
  struct qcow__l2cache *c = ch->l2cache;
  struct l2entry *e, *mine;
  size_t size = (size_t) l->cluster_size;

  pthread_mutex_lock (&c->lock);
  e = find (c, l, offset);
  if (e) {
    e->refs++;
    lru_unlink (c, e);
    lru_push (c, e);
    pthread_mutex_unlock (&c->lock);
    *token = e;
    return e->data;
  }
  pthread_mutex_unlock (&c->lock);

  mine = calloc (1, sizeof *mine);
  if (mine)
    mine->data = malloc (size);
  if (!mine || !mine->data) {
    if (mine)
      free (mine);
    qcow__set_error (ENOMEM, "%s: out of memory for an L2 table", l->path);
    return NULL;
  }
  /* QEMU would read an L2 table past EOF as zeros (all unallocated); a
   * table there is corruption, and we report it instead. */
  if (qcow__io_pread_strict (&l->io, l->path, "L2 table", mine->data, size,
                             offset) == -1) {
    free (mine->data);
    free (mine);
    return NULL;
  }
  mine->layer = l;
  mine->offset = offset;
  mine->size = size;
  mine->refs = 1;

  pthread_mutex_lock (&c->lock);
  e = find (c, l, offset);
  if (e) {
    e->refs++;
    pthread_mutex_unlock (&c->lock);
    free (mine->data);
    free (mine);
    *token = e;
    return e->data;
  }
  {
    size_t b = bucket (l, offset);
    mine->hnext = c->buckets[b];
    c->buckets[b] = mine;
  }
  lru_push (c, mine);
  c->bytes += size;
  evict (c);
  pthread_mutex_unlock (&c->lock);
  *token = mine;
  return mine->data;
}

void
qcow__l2_put (struct qcow_chain *ch, void *token)
{
  struct qcow__l2cache *c = ch->l2cache;
  struct l2entry *e = token;

  pthread_mutex_lock (&c->lock);
  e->refs--;
  if (e->refs == 0 && c->bytes > QCOW_L2_CACHE_BYTES)
    evict (c);
  pthread_mutex_unlock (&c->lock);
}
