/* lookup.c -- what one layer says about a guest range: the cluster type
 * decision of QEMU 7.2 (block/qcow2.h qcow2_get_cluster_type,
 * qcow2_get_subcluster_type; block/qcow2-cluster.c qcow2_get_host_offset)
 * applied to a run of L2 entries at once, so walks and reads cost one
 * call per run, not per byte or per cluster. */
#include <errno.h>
#include <inttypes.h>
#include <unistd.h>

#include "byteorder.h"
#include "qcow-internal.h"
#include "qcow2-format.h"

/* Type and host offset of the unit (cluster, or subcluster with extended
 * L2) number U.  TABLE is the L2 table at L2OFF holding it. */
static int
classify (const struct qcow__layer *l, const uint8_t *table, uint64_t l2off,
          uint64_t u, enum qcow__type *type, uint64_t *host, uint64_t *l2e)
{
  unsigned per_cluster_bits = l->cluster_bits - l->sc_bits;
  uint64_t guest_cluster = (u >> per_cluster_bits) << l->cluster_bits;
  size_t ci = (size_t) ((u >> per_cluster_bits) &
                        ((1ull << l->l2_bits) - 1));
  unsigned sc = (unsigned) (u & ((1u << per_cluster_bits) - 1));
  const uint8_t *p = table + (ci << (l->extended_l2 ? 4 : 3));
  uint64_t w0 = load_be64 (p);
  uint64_t bm = l->extended_l2 ? load_be64 (p + 8) : 0;
  uint64_t hoff = w0 & QCOW2_L2E_OFFSET_MASK;
  bool normal;

  *l2e = w0;
  /* Compressed first: in a compressed descriptor bit 0 belongs to the
   * byte offset, it is not the zero flag. */
  if (w0 & QCOW2_OFLAG_COMPRESSED) {
    if (l->has_data_file) {
      qcow__set_error (EBADMSG,
                       "%s: L2 entry %zu of L2 table at 0x%" PRIx64
                       ": compressed cluster in an image with an external "
                       "data file",
                       l->path, ci, l2off);
      return -1;
    }
    *type = QCOW__COMPRESSED;
    return 0;
  }
  if ((w0 & QCOW2_OFLAG_ZERO) && !l->extended_l2) {
    if (l->version < 3) {
      qcow__set_error (EBADMSG,
                       "%s: L2 entry %zu of L2 table at 0x%" PRIx64
                       ": zero cluster entry found in pre-v3 image",
                       l->path, ci, l2off);
      return -1;
    }
    *type = QCOW__ZERO;
    normal = hoff != 0; /* ZERO_ALLOC is checked like a data cluster */
  }
  else {
    /* Offset 0 is "unallocated" even with COPIED set, except with an
     * external data file, where guest cluster 0 lives at host 0. */
    normal = hoff != 0 || (l->has_data_file && (w0 & QCOW2_OFLAG_COPIED));
    if (!l->extended_l2)
      *type = normal ? QCOW__DATA : QCOW__UNALLOC;
    else if (normal) {
      if ((bm >> 32) & bm & QCOW2_L2_BITMAP_ALL_ALLOC)
        goto invalid;
      if (bm & (1ull << (32 + sc)))
        *type = QCOW__ZERO;
      else if (bm & (1ull << sc))
        *type = QCOW__DATA;
      else
        *type = QCOW__UNALLOC; /* UNALLOCATED_ALLOC: the backing decides */
    }
    else {
      if (bm & QCOW2_L2_BITMAP_ALL_ALLOC)
        goto invalid;
      *type = (bm & (1ull << (32 + sc))) ? QCOW__ZERO : QCOW__UNALLOC;
    }
  }
  if (normal) {
    if (hoff & (l->cluster_size - 1)) {
      qcow__set_error (EBADMSG,
                       "%s: L2 entry %zu of L2 table at 0x%" PRIx64
                       ": unaligned offset 0x%" PRIx64,
                       l->path, ci, l2off, hoff);
      return -1;
    }
    if (l->has_data_file && hoff != guest_cluster) {
      qcow__set_error (EBADMSG,
                       "%s: L2 entry %zu of L2 table at 0x%" PRIx64
                       ": data file offset 0x%" PRIx64
                       " does not match guest offset 0x%" PRIx64,
                       l->path, ci, l2off, hoff, guest_cluster);
      return -1;
    }
    *host = hoff + ((uint64_t) sc << l->sc_bits);
  }
  return 0;

invalid:
  qcow__set_error (EBADMSG,
                   "%s: L2 entry %zu of L2 table at 0x%" PRIx64
                   ": invalid subcluster bitmap 0x%016" PRIx64,
                   l->path, ci, l2off, bm);
  return -1;
}

/* A raw layer allocates everything.  Like qemu-img map, its host-file
 * holes and the tail past EOF (the size is rounded up to 512) are reported
 * as allocated zeros, not data.  lseek (SEEK_DATA/SEEK_HOLE) moves the file
 * offset, which we never use (all reads are pread), so this is safe from
 * several threads. */
static int
raw_status (struct qcow__layer *l, uint64_t off, uint64_t maxlen,
            struct qcow__run *r)
{
  uint64_t end = l->io.size;
  off_t d, h;

  r->type = QCOW__DATA;
  r->host = off;
  r->len = maxlen;
  if (off >= end) {
    r->type = QCOW__ZERO;
    return 0;
  }
  if (maxlen > end - off)
    r->len = end - off;
  if (l->io.fd < 0 || !S_ISREG (l->st.st_mode) || l->io.span)
    return 0; /* a span's holes are the container's: taken as data */
  d = lseek (l->io.fd, (off_t) off, SEEK_DATA);
  if (d == -1 && errno == ENXIO)
    d = (off_t) end; /* a hole up to EOF */
  if (d == -1)
    return 0; /* no SEEK_DATA here: all data */
  if ((uint64_t) d > off) {
    r->type = QCOW__ZERO;
    if ((uint64_t) d - off < r->len)
      r->len = (uint64_t) d - off;
    return 0;
  }
  h = lseek (l->io.fd, (off_t) off, SEEK_HOLE);
  if (h != -1 && (uint64_t) h > off && (uint64_t) h - off < r->len)
    r->len = (uint64_t) h - off;
  return 0;
}

int
qcow__layer_status (struct qcow_chain *c, struct qcow__layer *l,
                    uint64_t off, uint64_t maxlen, struct qcow__run *r)
{
  unsigned span_bits, ub;
  uint64_t l1_idx, limit, table_end, l1e, l2off, u, pos, host = 0, l2e = 0;
  enum qcow__type type;
  const uint8_t *table;
  void *token;

  r->host = 0;
  r->l2e = 0;
  if (l->raw)
    return raw_status (l, off, maxlen, r);
  /* off < l->size <= INT64_MAX, so none of this overflows. */
  span_bits = l->cluster_bits + l->l2_bits;
  l1_idx = off >> span_bits;
  table_end = (l1_idx + 1) << span_bits;
  limit = off + maxlen < table_end ? off + maxlen : table_end;
  if (l1_idx >= l->l1_size) {
    r->type = QCOW__UNALLOC;
    r->len = limit - off;
    return 0;
  }
  l1e = l->l1[l1_idx];
  l2off = l1e & QCOW2_L1E_OFFSET_MASK;
  if (l2off == 0) {
    r->type = QCOW__UNALLOC;
    r->len = limit - off;
    return 0;
  }
  if (l2off & (l->cluster_size - 1)) {
    qcow__set_error (EBADMSG,
                     "%s: L1 entry %" PRIu64 ": unaligned L2 table offset "
                     "0x%" PRIx64,
                     l->path, l1_idx, l2off);
    return -1;
  }
  table = qcow__l2_get (c, l, l2off, &token);
  if (!table)
    return -1;

  ub = l->sc_bits;
  u = off >> ub;
  if (classify (l, table, l2off, u, &type, &host, &l2e) == -1)
    goto err;
  r->type = type;
  r->l2e = l2e;
  if (type == QCOW__DATA)
    r->host = host + (off & ((1ull << ub) - 1));
  pos = (u + 1) << ub;
  if (type == QCOW__COMPRESSED) {
    /* One compressed cluster per run: each is decoded separately. */
    pos = ((off >> l->cluster_bits) + 1) << l->cluster_bits;
  }
  else {
    while (pos < limit) {
      enum qcow__type t2;
      uint64_t h2 = 0, e2;
      if (classify (l, table, l2off, pos >> ub, &t2, &h2, &e2) == -1)
        goto err;
      if (t2 != type)
        break;
      if (type == QCOW__DATA && h2 != r->host + (pos - off))
        break;
      pos += 1ull << ub;
    }
  }
  qcow__l2_put (c, token);
  r->len = (pos < limit ? pos : limit) - off;
  return 0;
err:
  qcow__l2_put (c, token);
  return -1;
}
