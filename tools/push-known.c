/* push-known.c -- a thread-safe set of chunk digests: the chunks this push
 * session may reference without uploading (the base index's digests and
 * everything uploaded or claimed for upload so far).  Digests are SHA-256
 * values, so their first bytes are already a good hash. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "push.h"

struct digest_set {
  pthread_mutex_t lock;
  uint8_t (*slot)[PBS_DIGEST_LEN];
  uint8_t *used;
  size_t cap, n; /* cap is a power of two, kept at most half full */
};

struct digest_set *
digest_set_new (void)
{
  struct digest_set *s = calloc (1, sizeof *s);

  if (!s)
    return NULL;
  pthread_mutex_init (&s->lock, NULL);
  s->cap = 1024;
  s->slot = calloc (s->cap, sizeof *s->slot);
  s->used = calloc (s->cap, 1);
  if (!s->slot || !s->used) {
    digest_set_free (s);
    return NULL;
  }
  return s;
}

void
digest_set_free (struct digest_set *s)
{
  if (!s)
    return;
  pthread_mutex_destroy (&s->lock);
  free (s->slot);
  free (s->used);
  free (s);
}

static size_t
hash (const uint8_t d[PBS_DIGEST_LEN])
{
  uint64_t h;
  memcpy (&h, d, sizeof h);
  return (size_t) h;
}

/* The slot holding D, or the empty slot where it belongs. */
static size_t
find (const struct digest_set *s, const uint8_t d[PBS_DIGEST_LEN])
{
  size_t i = hash (d) & (s->cap - 1);

  while (s->used[i] && memcmp (s->slot[i], d, PBS_DIGEST_LEN) != 0)
    i = (i + 1) & (s->cap - 1);
  return i;
}

static int
grow (struct digest_set *s)
{
  struct digest_set t = *s;
  size_t i;

  t.cap = s->cap * 2;
  t.slot = calloc (t.cap, sizeof *t.slot);
  t.used = calloc (t.cap, 1);
  if (!t.slot || !t.used) {
    free (t.slot);
    free (t.used);
    return -1;
  }
  for (i = 0; i < s->cap; i++)
    if (s->used[i]) {
      size_t j = find (&t, s->slot[i]);
      memcpy (t.slot[j], s->slot[i], PBS_DIGEST_LEN);
      t.used[j] = 1;
    }
  free (s->slot);
  free (s->used);
  s->slot = t.slot;
  s->used = t.used;
  s->cap = t.cap;
  return 0;
}

bool
digest_set_has (struct digest_set *s, const uint8_t d[PBS_DIGEST_LEN])
{
  bool r;

  pthread_mutex_lock (&s->lock);
  r = s->used[find (s, d)];
  pthread_mutex_unlock (&s->lock);
  return r;
}

bool
digest_set_add (struct digest_set *s, const uint8_t d[PBS_DIGEST_LEN])
{
  size_t i;
  bool added = false;

  pthread_mutex_lock (&s->lock);
  i = find (s, d);
  if (!s->used[i]) {
    /* Out of memory while growing: keep the table as it is (it still has
     * room); a missing entry only costs a duplicate upload. */
    if (2 * (s->n + 1) > s->cap && grow (s) == 0)
      i = find (s, d);
    if (2 * (s->n + 1) <= s->cap || s->n + 1 < s->cap) {
      memcpy (s->slot[i], d, PBS_DIGEST_LEN);
      s->used[i] = 1;
      s->n++;
    }
    added = true;
  }
  pthread_mutex_unlock (&s->lock);
  return added;
}
