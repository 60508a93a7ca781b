/* decompress.c -- compressed clusters (block/qcow2-threads.c of QEMU 7.2).
 *
 * The descriptor gives a byte offset (not aligned: bit 0 is part of it)
 * and a length in 512-byte sectors that is only approximate, so we read
 * (nb_sectors * 512 - (offset & 511)) bytes and decode until exactly one
 * cluster came out, ignoring whatever input is left.  Bytes past EOF read
 * as zeros, as in QEMU; a stream cut short then fails to decode. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <zlib.h>
#include <zstd.h>

#include "qcow-internal.h"
#include "qcow2-format.h"

/* deflate: raw deflate, 4 KiB window (inflateInit2 (-12) as QEMU), so a
 * stream QEMU rejects is rejected here too.  Z_BUF_ERROR with a full
 * output buffer is success: the input length is approximate. */
static int
inflate_cluster (const uint8_t *in, size_t inlen, uint8_t *out, size_t outlen)
{
  z_stream s = { 0 };
  int r;

  if (inflateInit2 (&s, -12) != Z_OK)
    return -1;
  s.next_in = (Bytef *) in;
  s.avail_in = (uInt) inlen;
  s.next_out = out;
  s.avail_out = (uInt) outlen;
  r = inflate (&s, Z_FINISH);
  inflateEnd (&s);
  return (r == Z_STREAM_END || r == Z_BUF_ERROR) && s.avail_out == 0 ? 0
                                                                     : -1;
}

/* zstd: one or more frames, no length prefix; stop when the cluster is
 * full, fail on no progress or if the last frame is still open then. */
static int
zstd_cluster (const uint8_t *in, size_t inlen, uint8_t *out, size_t outlen,
              void **zctx)
{
  ZSTD_inBuffer ib = { in, inlen, 0 };
  ZSTD_outBuffer ob = { out, outlen, 0 };
  ZSTD_DCtx *d = *zctx;
  size_t r = 0;

  if (!d) {
    d = ZSTD_createDCtx ();
    if (!d)
      return -1;
    *zctx = d;
    /* QEMU compresses one cluster (<= 2 MiB) in one call, so zstd sizes
     * the window to it; a crafted frame asking for more than 16 MiB must
     * not make us allocate it (the default limit is 128 MiB). */
    ZSTD_DCtx_setParameter (d, ZSTD_d_windowLogMax, 24);
  }
  else
    ZSTD_DCtx_reset (d, ZSTD_reset_session_only);
  while (ob.pos < ob.size) {
    size_t in0 = ib.pos, out0 = ob.pos;
    r = ZSTD_decompressStream (d, &ob, &ib);
    if (ZSTD_isError (r))
      return -1;
    if (ib.pos <= in0 && ob.pos <= out0)
      return -1;
  }
  return r > 0 ? -1 : 0;
}

void
qcow__decompress_end (void *zctx)
{
  ZSTD_freeDCtx (zctx);
}

int
qcow__decompress (struct qcow__layer *l, uint64_t l2e, uint64_t guest,
                  uint8_t *out, void **zctx)
{
  unsigned shift = 62 - (l->cluster_bits - 8);
  uint64_t coffset = l2e & ((1ull << shift) - 1);
  uint64_t nb = ((l2e >> shift) & ((1ull << (l->cluster_bits - 8)) - 1)) + 1;
  size_t csize = (size_t) (nb * 512 - (coffset & 511)); /* <= 2 clusters */
  uint8_t *in;
  int r;

  in = malloc (csize);
  if (!in) {
    qcow__set_error (ENOMEM, "%s: out of memory", l->path);
    return -1;
  }
  if (qcow__io_pread (&l->io, l->path, in, csize, coffset) == -1) {
    free (in);
    return -1;
  }
  if (l->compression_type == QCOW2_COMPRESSION_ZSTD)
    r = zstd_cluster (in, csize, out, (size_t) l->cluster_size, zctx);
  else
    r = inflate_cluster (in, csize, out, (size_t) l->cluster_size);
  free (in);
  if (r == -1) {
    qcow__set_error (EBADMSG,
                     "%s: cannot decompress the %s cluster at guest offset "
                     "0x%" PRIx64 " (host 0x%" PRIx64 ", %zu bytes)",
                     l->path,
                     l->compression_type == QCOW2_COMPRESSION_ZSTD ? "zstd"
                                                                   : "deflate",
                     guest, coffset, csize);
    return -1;
  }
  return 0;
}
