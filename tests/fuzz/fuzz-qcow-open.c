/* fuzz-qcow-open.c -- libFuzzer target: open an in-memory qcow2 image,
 * walk its map and per-layer map, read parts of every extent, and read
 * every bitmap.  Anything but a clean error or a result is a bug (ASan,
 * UBSan, hangs, leaks). */
#include <stdint.h>
#include <stdlib.h>

#include "qcowlib.h"

#define MAX_EXTENTS 256
#define READ_MAX (256u << 10)

struct walk {
  struct qcow_chain *c;
  unsigned n;
  uint8_t *buf;
};

static int
read_extent (void *opaque, const struct qcow_extent *e)
{
  struct walk *w = opaque;
  uint64_t len = e->length < READ_MAX ? e->length : READ_MAX;

  if (++w->n > MAX_EXTENTS)
    return -1;
  /* The head of the extent, and a short piece of its tail: reads that
   * start inside a cluster and cross cluster boundaries.  A one-layer
   * image's zero and unallocated extents must read as zeros. */
  if (qcow_pread (w->c, w->buf, (size_t) len, e->start) == 0 &&
      e->kind != QCOW_KIND_DATA) {
    uint64_t i;
    for (i = 0; i < len; i++)
      if (w->buf[i])
        abort ();
  }
  if (e->length > 1000)
    qcow_pread (w->c, w->buf, 1000, e->start + e->length - 999);
  return 0;
}

static int
count_extent (void *opaque, const struct qcow_extent *e)
{
  struct walk *w = opaque;
  (void) e;
  return ++w->n > 100000 ? -1 : 0;
}

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  struct walk w = { 0 };
  const struct qcow_bitmap_info *bi;
  size_t nb, i;
  uint64_t vs;

  w.c = qcow_open_memory (data, size, 0);
  if (!w.c)
    return 0;
  w.buf = malloc (READ_MAX);
  if (!w.buf)
    abort ();
  vs = qcow_virtual_size (w.c);
  qcow_map (w.c, 0, UINT64_MAX, read_extent, &w);
  w.n = 0;
  qcow_layer_map (w.c, 0, 0, UINT64_MAX, count_extent, &w);
  /* Reads that straddle the end of the disk. */
  qcow_pread (w.c, w.buf, 4096, vs > 2048 ? vs - 2048 : 0);
  if (qcow_bitmap_list (w.c, 0, &bi, &nb) == 0)
    for (i = 0; i < nb && i < 8; i++) {
      w.n = 0;
      qcow_bitmap_ranges (w.c, 0, bi[i].name, count_extent, &w);
    }
  free (w.buf);
  qcow_close (w.c);
  return 0;
}
