/* ds-digest-set.c -- a hash set of chunk digests (server-side known-chunk
 * map with lengths, reader allow-list, client-side known set).
 *
 * Digests are sha256 outputs, so their first 8 bytes are already a good
 * hash; open addressing with linear probing, at most 3/4 full.  A slot is
 * 36 bytes (value 0 marks it empty, so callers store values >= 1): 48 to
 * 96 bytes per digest, ~19 MiB for the 262144 chunks of a 1 TiB disk. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ds-internal.h"
#include "pbs-errors.h"

struct slot {
  uint8_t digest[32];
  uint32_t value; /* 0: empty slot */
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
  return (size_t)h;
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
    if (!sl->value || memcmp (sl->digest, d, 32) == 0)
      return sl;
    i = (i + 1) & mask;
  }
}

static int
grow (struct pbs__digest_set *s)
{
  struct pbs__digest_set n = {0};
  size_t i;

  n.cap = s->cap * 2;
  n.slots = calloc (n.cap, sizeof *n.slots);
  if (!n.slots) {
    pbs__set_error (ENOMEM, "out of memory");
    return -1;
  }
  for (i = 0; i < s->cap; i++)
    if (s->slots[i].value)
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

  if (value == 0) {
    pbs__set_error (EINVAL, "digest set: value 0 is reserved");
    return -1;
  }
  if ((s->count + 1) * 4 > s->cap * 3 && grow (s) == -1)
    return -1;
  sl = find (s, d);
  if (!sl->value) {
    memcpy (sl->digest, d, 32);
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
  if (!sl->value)
    return false;
  if (value)
    *value = sl->value;
  return true;
}
