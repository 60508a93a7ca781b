/* read.c -- qcow_pread: the merged guest view of a chain.
 *
 * A range is resolved layer by layer, top first, as QEMU's block layer
 * does: bytes at or past a layer's own virtual size read as zeros for that
 * layer and for everything beneath it; zero-flag ranges read as zeros and
 * never fall through; unallocated ranges go to the next layer.  Runs of
 * adjacent data clusters are read with one pread. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "qcow-internal.h"

struct rctx {
  struct qcow_chain *c;
  uint8_t *cbuf;                    /* last decompressed cluster */
  size_t cbuf_size;
  const struct qcow__layer *clayer; /* whose cluster cbuf holds */
  uint64_t cguest;
  void *zctx;
};

static int
read_compressed (struct rctx *x, struct qcow__layer *l,
                 const struct qcow__run *r, uint8_t *buf, uint64_t off)
{
  uint64_t gc = off & ~(l->cluster_size - 1);

  if (x->clayer != l || x->cguest != gc) {
    if (x->cbuf_size < l->cluster_size) {
      free (x->cbuf);
      x->cbuf_size = 0;
      x->cbuf = malloc ((size_t) l->cluster_size);
      if (!x->cbuf) {
        qcow__set_error (ENOMEM, "%s: out of memory", l->path);
        return -1;
      }
      x->cbuf_size = (size_t) l->cluster_size;
    }
    x->clayer = NULL;
    if (qcow__decompress (l, r->l2e, gc, x->cbuf, &x->zctx) == -1)
      return -1;
    x->clayer = l;
    x->cguest = gc;
  }
  memcpy (buf, x->cbuf + (off - gc), (size_t) r->len);
  return 0;
}

static int
read_layer (struct rctx *x, size_t d, uint8_t *buf, uint64_t len,
            uint64_t off)
{
  struct qcow_chain *c = x->c;
  struct qcow__layer *l;

  if (d >= c->n || off >= c->layers[d]->size) {
    memset (buf, 0, (size_t) len);
    return 0;
  }
  l = c->layers[d];
  if (len > l->size - off) {
    uint64_t avail = l->size - off;
    memset (buf + avail, 0, (size_t) (len - avail));
    len = avail;
  }
  while (len > 0) {
    struct qcow__run r;

    if (qcow__layer_status (c, l, off, len, &r) == -1)
      return -1;
    switch (r.type) {
    case QCOW__DATA:
      if (qcow__io_pread (&l->dio, l->data_path ? l->data_path : l->path,
                          buf, (size_t) r.len, r.host) == -1)
        return -1;
      break;
    case QCOW__ZERO:
      memset (buf, 0, (size_t) r.len);
      break;
    case QCOW__UNALLOC:
      if (read_layer (x, d + 1, buf, r.len, off) == -1)
        return -1;
      break;
    case QCOW__COMPRESSED:
      if (read_compressed (x, l, &r, buf, off) == -1)
        return -1;
      break;
    }
    buf += r.len;
    off += r.len;
    len -= r.len;
  }
  return 0;
}

int
qcow_pread (struct qcow_chain *c, void *buf, size_t len, uint64_t off)
{
  struct rctx x = { 0 };
  int ret;

  if (!c || (!buf && len)) {
    qcow__set_error (EINVAL, "qcow_pread: invalid argument");
    return -1;
  }
  x.c = c;
  ret = read_layer (&x, 0, buf, len, off);
  free (x.cbuf);
  qcow__decompress_end (x.zctx);
  return ret;
}
