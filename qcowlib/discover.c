/* discover.c -- what an image file says about itself without opening its
 * chain: is it qcow2, and which backing name does it record.  For tools
 * that discover chains in a folder (import); qcow_open still makes every
 * check before anything is read. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "byteorder.h"
#include "qcow-internal.h"
#include "qcow2-format.h"

static int
probe (const char *path, const struct qcow_span *span,
       struct qcow_probe_info *out)
{
  struct qcow__io io;
  struct stat st;
  uint8_t h[QCOW2_HDR_V2_LENGTH];
  uint64_t boff;
  uint32_t blen, bits;
  int r = -1;

  memset (out, 0, sizeof *out);
  if (qcow__io_open (&io, path, &st) == -1)
    return -1;
  if (span && (span->nextents
                   ? qcow__io_span_extents (&io, path, span->offset,
                                            span->length,
                                            span->extents, span->nextents)
                   : qcow__io_span (&io, path, span->offset, span->length))
                  == -1)
    goto out;
  out->file_size = io.size;
  if (io.size < sizeof h) {
    r = 0; /* too short for qcow2: not one */
    goto out;
  }
  if (qcow__io_pread (&io, path, h, sizeof h, 0) == -1)
    goto out;
  r = 0;
  if (load_be32 (h + QCOW2_HDR_MAGIC) != QCOW2_MAGIC)
    goto out;
  out->is_qcow2 = true;
  out->virtual_size = load_be64 (h + QCOW2_HDR_SIZE);
  boff = load_be64 (h + QCOW2_HDR_BACKING_OFFSET);
  blen = load_be32 (h + QCOW2_HDR_BACKING_SIZE);
  bits = load_be32 (h + QCOW2_HDR_CLUSTER_BITS);
  if (boff && blen) {
    /* The name lies in the first cluster (header.c refuses otherwise). */
    if (bits < QCOW2_MIN_CLUSTER_BITS || bits > QCOW2_MAX_CLUSTER_BITS
        || blen > QCOW2_MAX_BACKING_NAME || boff > (1ull << bits) - blen) {
      qcow__set_error (EBADMSG, "%s: invalid backing file name field", path);
      r = -1;
      goto out;
    }
    out->backing_name = calloc (1, blen + 1);
    if (!out->backing_name) {
      qcow__set_error (ENOMEM, "out of memory");
      r = -1;
      goto out;
    }
    if (qcow__io_pread (&io, path, out->backing_name, blen, boff) == -1
        || memchr (out->backing_name, 0, blen)) {
      if (out->backing_name && memchr (out->backing_name, 0, blen))
        qcow__set_error (EBADMSG, "%s: backing file name holds a NUL byte",
                         path);
      free (out->backing_name);
      out->backing_name = NULL;
      r = -1;
    }
  }
out:
  qcow__io_close (&io);
  return r;
}

int
qcow_probe (const char *path, struct qcow_probe_info *out)
{
  return probe (path, NULL, out);
}

int
qcow_probe_span (const char *path, uint64_t offset, uint64_t length,
                 struct qcow_probe_info *out)
{
  struct qcow_span sp = { .offset = offset, .length = length };

  return probe (path, &sp, out);
}

int
qcow_probe_in_span (const char *path, const struct qcow_span *span,
                    struct qcow_probe_info *out)
{
  return probe (path, span, out);
}

void
qcow_probe_free (struct qcow_probe_info *info)
{
  free (info->backing_name);
  info->backing_name = NULL;
}
