/* map.c -- extent walks: the merged view (qcow_map, with qemu-img map's
 * depth semantics) and one layer alone (qcow_layer_map).  Metadata only.
 *
 * qemu-img map reports a range nobody allocates with the depth of the last
 * layer its lookup reached: the bottom layer, or the layer whose backing
 * is too short to cover the range (QEMU 7.2, checked with qemu-img map on
 * chains with shorter backing files). */
#include <errno.h>
#include <string.h>

#include "qcow-internal.h"

struct emitter {
  qcow_extent_fn fn;
  void *opaque;
  bool have;
  struct qcow_extent cur;
};

/* Returns -1 when the callback stopped the walk. */
static int
emit (struct emitter *m, uint64_t start, uint64_t len, size_t depth,
      enum qcow_kind kind, bool compressed)
{
  if (len == 0)
    return 0;
  if (m->have && m->cur.start + m->cur.length == start &&
      m->cur.depth == depth && m->cur.kind == kind &&
      m->cur.compressed == compressed) {
    m->cur.length += len;
    return 0;
  }
  if (m->have && m->fn (m->opaque, &m->cur) == -1)
    return -1;
  m->have = true;
  m->cur.start = start;
  m->cur.length = len;
  m->cur.depth = depth;
  m->cur.kind = kind;
  m->cur.compressed = compressed;
  return 0;
}

static int
flush (struct emitter *m)
{
  if (m->have) {
    m->have = false;
    return m->fn (m->opaque, &m->cur);
  }
  return 0;
}

/* D >= 1 whenever the range is past the end of layer D or D == n: the top
 * layer's size clips every walk first. */
static int
map_layer (struct qcow_chain *c, struct emitter *m, size_t d, uint64_t off,
           uint64_t len)
{
  struct qcow__layer *l;
  uint64_t end = off + len, orig_end = end;

  if (d >= c->n || off >= c->layers[d]->size)
    return emit (m, off, len, d - 1, QCOW_KIND_UNALLOCATED, false);
  l = c->layers[d];
  if (end > l->size)
    end = l->size;
  while (off < end) {
    struct qcow__run r;
    int ret = 0;

    if (qcow__layer_status (c, l, off, end - off, &r) == -1)
      return -1;
    switch (r.type) {
    case QCOW__DATA:
      ret = emit (m, off, r.len, d, QCOW_KIND_DATA, false);
      break;
    case QCOW__COMPRESSED:
      ret = emit (m, off, r.len, d, QCOW_KIND_DATA, true);
      break;
    case QCOW__ZERO:
      ret = emit (m, off, r.len, d, QCOW_KIND_ZERO, false);
      break;
    case QCOW__UNALLOC:
      ret = map_layer (c, m, d + 1, off, r.len);
      break;
    }
    if (ret == -1)
      return -1;
    off += r.len;
  }
  /* The part past this layer's size: cut off, nobody owns it. */
  if (off < orig_end)
    return emit (m, off, orig_end - off, d - 1, QCOW_KIND_UNALLOCATED, false);
  return 0;
}

static bool
clip (uint64_t size, uint64_t *start, uint64_t *length)
{
  if (*start >= size)
    return false;
  if (*length > size - *start)
    *length = size - *start;
  return *length > 0;
}

int
qcow_map (struct qcow_chain *c, uint64_t start, uint64_t length,
          qcow_extent_fn fn, void *opaque)
{
  struct emitter m = { 0 };
  uint64_t end;

  if (!c || !fn) {
    qcow__set_error (EINVAL, "qcow_map: invalid argument");
    return -1;
  }
  if (!clip (c->layers[0]->size, &start, &length))
    return 0;
  m.fn = fn;
  m.opaque = opaque;
  end = start + length;
  if (map_layer (c, &m, 0, start, end - start) == -1)
    return -1;
  return flush (&m);
}

int
qcow_layer_map (struct qcow_chain *c, size_t depth, uint64_t start,
                uint64_t length, qcow_extent_fn fn, void *opaque)
{
  struct emitter m = { 0 };
  struct qcow__layer *l;
  uint64_t off, end;

  if (!c || !fn || depth >= c->n) {
    qcow__set_error (EINVAL, "qcow_layer_map: invalid argument");
    return -1;
  }
  l = c->layers[depth];
  if (!clip (l->size, &start, &length))
    return 0;
  m.fn = fn;
  m.opaque = opaque;
  end = start + length;
  for (off = start; off < end;) {
    struct qcow__run r;
    int ret = 0;

    if (qcow__layer_status (c, l, off, end - off, &r) == -1)
      return -1;
    if (r.type == QCOW__DATA || r.type == QCOW__COMPRESSED)
      ret = emit (&m, off, r.len, depth, QCOW_KIND_DATA,
                  r.type == QCOW__COMPRESSED);
    else if (r.type == QCOW__ZERO)
      ret = emit (&m, off, r.len, depth, QCOW_KIND_ZERO, false);
    if (ret == -1)
      return -1;
    off += r.len;
  }
  return flush (&m);
}
