/* ds-digest-set.c -- a hash set of chunk digests (server-side known-chunk
 * map with lengths, reader allow-list, client-side known set).
 *
 * Digests are sha256 outputs, so their first 8 bytes are already a good
 * hash; open addressing with linear probing, kept at most half full.
 * 40 bytes per slot: a 1 TiB disk (262144 chunks) costs ~20 MiB at worst. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ds-internal.h"
#include "pbs-internal.h"

struct slot {
  uint8_t digest[32];
  uint32_t value;
  uint32_t used;
};

struct pbs__digest_set {
  struct slot *slots;
  size_t cap; /* power of two */
  size_t count;
};

static size_t
slot_hash (const uint8_t d[32])
{
  uint64_t h;
  memcpy (&h, d, sizeof h);
  return (size_t) h;
}

struct pbs__digest_set *
pbs__digest_set_new (void)
{
  struct pbs__digest_set *s = calloc (1, sizeof *s);
  if (!s)
    goto oom;
  s->cap = 64;
  s->slots = calloc (s->cap, sizeof *s->slots);
  if (!s->slots) {
    free (s);
    goto oom;
  }
  return s;
oom:
  pbs__set_error (ENOMEM, "out of memory");
  return NULL;
}

void
pbs__digest_set_free (struct pbs__digest_set *s)
{
  if (!s)
    return;
  free (s->slots);
  free (s);
}

static struct slot *
find (const struct pbs__digest_set *s, const uint8_t d[32])
{
  size_t mask = s->cap - 1, i = slot_hash (d) & mask;
  for (;;) {
    struct slot *sl = &s->slots[i];
    if (!sl->used || memcmp (sl->digest, d, 32) == 0)
      return sl;
    i = (i + 1) & mask;
  }
}

static int
grow (struct pbs__digest_set *s)
{
  struct pbs__digest_set n = { 0 };
  size_t i;

  n.cap = s->cap * 2;
  n.slots = calloc (n.cap, sizeof *n.slots);
  if (!n.slots) {
    pbs__set_error (ENOMEM, "out of memory");
    return -1;
  }
  for (i = 0; i < s->cap; i++)
    if (s->slots[i].used)
      *find (&n, s->slots[i].digest) = s->slots[i];
  free (s->slots);
  s->slots = n.slots;
  s->cap = n.cap;
  return 0;
}

int
pbs__digest_set_put (struct pbs__digest_set *s, const uint8_t d[32],
                     uint32_t value)
{
  struct slot *sl;

  if ((s->count + 1) * 2 > s->cap && grow (s) == -1)
    return -1;
  sl = find (s, d);
  if (!sl->used) {
    memcpy (sl->digest, d, 32);
    sl->used = 1;
    s->count++;
  }
  sl->value = value;
  return 0;
}

bool
pbs__digest_set_get (const struct pbs__digest_set *s, const uint8_t d[32],
                     uint32_t *value)
{
  const struct slot *sl = find (s, d);
  if (!sl->used)
    return false;
  if (value)
    *value = sl->value;
  return true;
}

size_t
pbs__digest_set_count (const struct pbs__digest_set *s)
{
  return s->count;
}
