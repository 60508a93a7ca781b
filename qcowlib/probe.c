/* probe.c -- naming what a file is when it is not a qcow2 image, so that
 * "not a qcow2 image" becomes "a tar archive: extract it first".
 *
 * Signatures are the formats' own (as QEMU's block drivers probe them:
 * block/vmdk.c, vhdx.c, vdi.c, vpc.c, qed.c, qcow.c, crypto.c) plus the
 * containers a backup is commonly wrapped in (tar, gzip, zstd, xz,
 * bzip2).  Anything else is raw data as far as anyone can tell. */
#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "byteorder.h"
#include "qcow-internal.h"
#include "qcow2-format.h"

#define CONVERT "convert it to qcow2 first (qemu-img convert -O qcow2 FILE NEW.qcow2)"

struct signature {
  uint32_t offset;
  const char *magic;
  size_t len;
  const char *what;
};

static const struct signature signatures[] = {
  { 0, "KDMV", 4, "a VMDK image, not qcow2: " CONVERT },
  { 0, "# Disk DescriptorFile", 21, "a VMDK descriptor, not qcow2: " CONVERT },
  { 0, "vhdxfile", 8, "a VHDX image, not qcow2: " CONVERT },
  { 0, "conectix", 8, "a VHD (vpc) image, not qcow2: " CONVERT },
  { 64, "\x7f\x10\xda\xbe", 4, "a VirtualBox VDI image, not qcow2: " CONVERT },
  { 0, "QED\0", 4, "a QED image, not qcow2: " CONVERT },
  { 0, "LUKS\xba\xbe", 6,
    "a LUKS-encrypted image: qcow2pbs cannot read encrypted images; "
    "decrypt it to qcow2 first (qemu-img convert --object secret,... "
    "-O qcow2)" },
  { 257, "ustar", 5, "a tar archive, not a disk image: extract it first" },
  { 0, "\x1f\x8b", 2, "gzip-compressed: decompress it first (gunzip)" },
  { 0, "\x28\xb5\x2f\xfd", 4, "zstd-compressed: decompress it first (unzstd)" },
  { 0, "\xfd" "7zXZ\0", 6, "xz-compressed: decompress it first (unxz)" },
  { 0, "BZh", 3, "bzip2-compressed: decompress it first (bunzip2)" },
};

/* What to say about a raw file: qcow2pbs takes raw data only below qcow2
 * layers (a raw backing file, or the base of --chain), never alone. */
#define RAW_ADVICE                                                            \
  "qcow2pbs reads qcow2 images (raw only as the base below qcow2 layers "     \
  "in --chain); " CONVERT

void
qcow__not_qcow2 (struct qcow__layer *l)
{
  uint8_t buf[512];
  size_t n, i;

  if (l->io.size == 0) {
    qcow__set_error (EBADMSG,
                     "%s: an empty file (0 bytes), not a disk image: an "
                     "unfinished copy or backup?",
                     l->path);
    return;
  }
  n = l->io.size < sizeof buf ? (size_t) l->io.size : sizeof buf;
  memset (buf, 0, sizeof buf);
  if (qcow__io_pread (&l->io, l->path, buf, n, 0) == -1)
    return;
  if (n >= 8 && load_be32 (buf) == QCOW2_MAGIC) {
    uint32_t v = load_be32 (buf + 4);
    if (v == 1)
      qcow__set_error (ENOTSUP, "%s: a qcow version 1 image, not qcow2: %s",
                       l->path, CONVERT);
    else if (v == 2 || v == 3)
      qcow__set_error (EBADMSG, "%s: truncated qcow2 header (%" PRIu64
                       " bytes)", l->path, l->io.size);
    else
      qcow__set_error (ENOTSUP, "%s: unknown qcow version %" PRIu32,
                       l->path, v);
    return;
  }
  for (i = 0; i < sizeof signatures / sizeof signatures[0]; i++) {
    const struct signature *s = &signatures[i];
    if (s->offset + s->len <= n
        && memcmp (buf + s->offset, s->magic, s->len) == 0) {
      qcow__set_error (EBADMSG, "%s: %s", l->path, s->what);
      return;
    }
  }
  if (n == sizeof buf && buf[510] == 0x55 && buf[511] == 0xaa)
    qcow__set_error (EBADMSG,
                     "%s: a raw disk image (it has a partition table), not "
                     "qcow2: " RAW_ADVICE,
                     l->path);
  else
    qcow__set_error (EBADMSG,
                     "%s: not a qcow2 image (no qcow2 magic): raw data or an unknown "
                     "format; "
                     RAW_ADVICE,
                     l->path);
}

