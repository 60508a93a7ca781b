/* header.c -- parse and check a qcow2 header the way QEMU 7.2 does at
 * open (block/qcow2.c qcow2_do_open, qcow2_read_extensions), plus the
 * stricter rules of this project (duplicate extensions, tables past EOF).
 * Every value read from the file is range-checked before it drives an
 * allocation, a loop or an offset computation. */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "byteorder.h"
#include "checked-overflow.h"
#include "qcow-internal.h"
#include "qcow2-format.h"

#define BAD(l, ...) qcow__set_error (EBADMSG, __VA_ARGS__)

/* Name of feature bit BIT of TYPE from the image's feature-name table, or
 * NULL.  The names are zero-padded but need not be NUL-terminated. */
static void
feature_name (const uint8_t *table, uint32_t len, int type, int bit,
              char *out, size_t outlen)
{
  uint32_t i;

  out[0] = '\0';
  if (!table)
    return;
  for (i = 0; i + QCOW2_FEATURE_ENTRY_SIZE <= len;
       i += QCOW2_FEATURE_ENTRY_SIZE) {
    const uint8_t *e = table + i;
    if (e[0] == type && e[1] == bit) {
      size_t n = strnlen ((const char *) e + 2, 46);
      if (n >= outlen)
        n = outlen - 1;
      memcpy (out, e + 2, n);
      out[n] = '\0';
      return;
    }
  }
}

/* A string stored without NUL: copy it, refusing embedded NULs (QEMU
 * would silently cut the name there). */
static char *
dup_name (struct qcow__layer *l, const uint8_t *p, size_t len,
          const char *what)
{
  char *s;

  if (memchr (p, '\0', len)) {
    BAD (l, "%s: %s contains a NUL byte", l->path, what);
    return NULL;
  }
  s = malloc (len + 1);
  if (!s) {
    qcow__set_error (ENOMEM, "%s: out of memory", l->path);
    return NULL;
  }
  memcpy (s, p, len);
  s[len] = '\0';
  return s;
}

/* QEMU's qcow2_validate_table: an aligned table of ENTRIES entries of
 * ENTRY_LEN bytes, at most MAX_BYTES long, whose end fits in int64. */
static int
validate_table (struct qcow__layer *l, uint64_t offset, uint64_t entries,
                uint64_t entry_len, uint64_t max_bytes, const char *what)
{
  uint64_t bytes, end;

  if (entries > max_bytes / entry_len) {
    BAD (l, "%s: %s too large", l->path, what);
    return -1;
  }
  bytes = entries * entry_len;
  if (ADD_OVERFLOW (offset, bytes, &end) || end > (uint64_t) INT64_MAX ||
      (offset & (l->cluster_size - 1))) {
    BAD (l, "%s: %s offset 0x%" PRIx64 " invalid", l->path, what, offset);
    return -1;
  }
  return 0;
}

/* Walk the snapshot table as qcow2_read_snapshots does, checking its
 * limits.  We never read snapshot data; a bad table still makes QEMU
 * refuse the image, so we refuse it too. */
static int
check_snapshots (struct qcow__layer *l, uint32_t nb, uint64_t offset)
{
  uint64_t pos = offset;
  uint8_t h[QCOW2_SN_HEADER_SIZE];
  uint32_t i;

  if (validate_table (l, offset, nb, QCOW2_SN_HEADER_SIZE,
                      (uint64_t) QCOW2_SN_HEADER_SIZE * QCOW2_MAX_SNAPSHOTS,
                      "snapshot table") == -1)
    return -1;
  for (i = 0; i < nb; i++) {
    uint64_t l1_off, entry_len;
    uint32_t l1_size, extra;

    pos = (pos + 7) & ~(uint64_t) 7;
    if (pos - offset > QCOW2_MAX_SNAPSHOTS_SIZE) {
      BAD (l, "%s: snapshot table too large", l->path);
      return -1;
    }
    /* Entries past EOF read as zeros in QEMU; a snapshot table that
     * reaches past EOF is corrupt in any case: refuse. */
    if (qcow__io_pread_strict (&l->io, l->path, "snapshot table entry", h,
                               sizeof h, pos) == -1)
      return -1;
    l1_off = load_be64 (h + QCOW2_SN_L1_OFFSET);
    l1_size = load_be32 (h + QCOW2_SN_L1_SIZE);
    extra = load_be32 (h + QCOW2_SN_EXTRA_SIZE);
    if (extra > QCOW2_MAX_SNAPSHOT_EXTRA) {
      BAD (l, "%s: too much extra metadata in snapshot table entry %u",
           l->path, i);
      return -1;
    }
    if (validate_table (l, l1_off, l1_size, 8, QCOW2_MAX_L1_BYTES,
                        "snapshot L1 table") == -1)
      return -1;
    entry_len = (uint64_t) QCOW2_SN_HEADER_SIZE + extra +
                load_be16 (h + QCOW2_SN_ID_SIZE) +
                load_be16 (h + QCOW2_SN_NAME_SIZE);
    pos += entry_len;
  }
  if (pos - offset > QCOW2_MAX_SNAPSHOTS_SIZE) {
    BAD (l, "%s: snapshot table too large", l->path);
    return -1;
  }
  return 0;
}

static int
cmp_u32 (const void *a, const void *b)
{
  uint32_t x = *(const uint32_t *) a, y = *(const uint32_t *) b;
  return x < y ? -1 : x > y;
}

struct exts {
  const uint8_t *feature_table;
  uint32_t feature_table_len;
  bool have_bitmaps;
  const uint8_t *bitmaps;
  bool have_crypto;
};

/* qcow2_read_extensions over [START, END) of the header cluster HC. */
static int
read_extensions (struct qcow__layer *l, const uint8_t *hc, uint64_t start,
                 uint64_t end, struct exts *x)
{
  uint64_t off = start;
  uint32_t *seen = NULL;
  size_t nseen = 0, i;
  int ret = -1;

  memset (x, 0, sizeof *x);
  /* At most one extension per 8 bytes of the area. */
  if (end > start) {
    seen = malloc ((size_t) ((end - start) / 8 + 1) * sizeof *seen);
    if (!seen) {
      qcow__set_error (ENOMEM, "%s: out of memory", l->path);
      return -1;
    }
  }
  while (off < end) {
    uint32_t type, len;
    const uint8_t *data;

    if (end - off < 8) {
      BAD (l, "%s: header extension at 0x%" PRIx64 " too large", l->path,
           off);
      goto out;
    }
    type = load_be32 (hc + off);
    len = load_be32 (hc + off + 4);
    off += 8;
    if (len > end - off) {
      BAD (l, "%s: header extension 0x%08x at 0x%" PRIx64 " too large",
           l->path, type, off - 8);
      goto out;
    }
    data = hc + off;
    if (type == QCOW2_EXT_END)
      break;
    seen[nseen++] = type;
    switch (type) {
    case QCOW2_EXT_BACKING_FORMAT:
      if (len > QCOW2_MAX_FORMAT_NAME) {
        BAD (l, "%s: backing format name too long (%u bytes)", l->path, len);
        goto out;
      }
      l->backing_format = dup_name (l, data, len, "backing format name");
      if (!l->backing_format)
        goto out;
      break;
    case QCOW2_EXT_FEATURE_TABLE:
      x->feature_table = data;
      x->feature_table_len = len;
      break;
    case QCOW2_EXT_CRYPTO:
      /* We refuse crypt_method != 0, and QEMU refuses this extension
       * without LUKS. */
      BAD (l, "%s: crypto header extension without LUKS encryption",
           l->path);
      goto out;
    case QCOW2_EXT_BITMAPS:
      if (len != QCOW2_BMEXT_SIZE) {
        BAD (l, "%s: bitmaps extension: invalid length %u", l->path, len);
        goto out;
      }
      x->have_bitmaps = true;
      x->bitmaps = data;
      break;
    case QCOW2_EXT_DATA_FILE:
      if (len == 0 || len > PATH_MAX) {
        BAD (l, "%s: invalid external data file name length %u", l->path,
             len);
        goto out;
      }
      l->data_file_name = dup_name (l, data, len, "data file name");
      if (!l->data_file_name)
        goto out;
      break;
    default:
      break; /* unknown: QEMU preserves and otherwise ignores them */
    }
    off += ((uint64_t) len + 7) & ~(uint64_t) 7;
  }
  /* The spec allows each extension once; QEMU does not check, we do, so
   * that two readers cannot disagree on which copy counts. */
  if (nseen > 1) {
    qsort (seen, nseen, sizeof *seen, cmp_u32);
    for (i = 1; i < nseen; i++)
      if (seen[i] == seen[i - 1]) {
        BAD (l, "%s: duplicate header extension 0x%08x", l->path, seen[i]);
        goto out;
      }
  }
  ret = 0;
out:
  free (seen);
  return ret;
}

static int
check_features (struct qcow__layer *l, const struct exts *x)
{
  uint64_t unknown = l->incompat & ~QCOW2_INCOMPAT_KNOWN;

  if (unknown) {
    int bit = __builtin_ctzll (unknown);
    char name[47];
    feature_name (x->feature_table, x->feature_table_len, 0, bit, name,
                  sizeof name);
    qcow__set_error (ENOTSUP,
                     "%s: unsupported incompatible feature bit %d%s%s%s",
                     l->path, bit, name[0] ? " (" : "", name,
                     name[0] ? ")" : "");
    return -1;
  }
  if (l->incompat & QCOW2_INCOMPAT_CORRUPT) {
    BAD (l,
         "%s: image is marked corrupt (incompatible feature bit 1); "
         "check it with 'qemu-img check'",
         l->path);
    return -1;
  }
  if (l->compression_type != QCOW2_COMPRESSION_DEFLATE &&
      l->compression_type != QCOW2_COMPRESSION_ZSTD) {
    qcow__set_error (ENOTSUP, "%s: unknown compression type %d", l->path,
                     l->compression_type);
    return -1;
  }
  /* validate_compression_type: both directions. */
  if ((l->compression_type != QCOW2_COMPRESSION_DEFLATE) !=
      !!(l->incompat & QCOW2_INCOMPAT_COMPRESSION)) {
    BAD (l,
         "%s: compression type %d inconsistent with incompatible feature "
         "bit 3",
         l->path, l->compression_type);
    return -1;
  }
  if (l->extended_l2 && l->cluster_bits < 14) {
    BAD (l,
         "%s: extended L2 entries need a cluster size of at least 16384 "
         "bytes",
         l->path);
    return -1;
  }
  if (l->has_data_file && !l->data_file_name) {
    qcow__set_error (EINVAL,
                     "%s: image uses an external data file but does not "
                     "name it",
                     l->path);
    return -1;
  }
  if (!l->has_data_file && (l->autoclear & QCOW2_AUTOCLEAR_DATA_RAW)) {
    BAD (l, "%s: data-file-raw set without an external data file",
         l->path);
    return -1;
  }
  return 0;
}

/* Load the L1 entries the virtual size needs; the rest (VM state area) is
 * never looked at.  The whole declared table must lie inside the file and
 * must not overlap the header cluster: QEMU would read zeros past EOF, we
 * call such an image corrupt. */
static int
load_l1 (struct qcow__layer *l, uint32_t l1_size, uint64_t l1_offset)
{
  unsigned shift = l->cluster_bits + l->l2_bits;
  uint64_t need, i;
  uint8_t *raw;

  if ((uint64_t) l1_size > QCOW2_MAX_L1_BYTES / 8) {
    BAD (l, "%s: active L1 table too large (%u entries)", l->path, l1_size);
    return -1;
  }
  need = (l->size >> shift) + ((l->size & ((1ull << shift) - 1)) != 0);
  if (need > INT_MAX) {
    BAD (l, "%s: image is too big", l->path);
    return -1;
  }
  if (l1_size < need) {
    BAD (l, "%s: L1 table is too small (%u entries, %" PRIu64 " needed)",
         l->path, l1_size, need);
    return -1;
  }
  if (validate_table (l, l1_offset, l1_size, 8, QCOW2_MAX_L1_BYTES,
                      "active L1 table") == -1)
    return -1;
  if (l1_size > 0 && l1_offset < l->cluster_size) {
    BAD (l, "%s: L1 table at 0x%" PRIx64 " overlaps the header", l->path,
         l1_offset);
    return -1;
  }
  if (l1_size > 0 && l1_offset + (uint64_t) l1_size * 8 > l->io.size) {
    BAD (l, "%s: L1 table at 0x%" PRIx64 " (%u entries) lies past the end "
         "of the file",
         l->path, l1_offset, l1_size);
    return -1;
  }
  l->l1_size = (uint32_t) need;
  if (need == 0)
    return 0;
  raw = malloc ((size_t) need * 8);
  l->l1 = malloc ((size_t) need * sizeof *l->l1);
  if (!raw || !l->l1) {
    free (raw);
    qcow__set_error (ENOMEM, "%s: out of memory for the L1 table", l->path);
    return -1;
  }
  if (qcow__io_pread (&l->io, l->path, raw, (size_t) need * 8, l1_offset) ==
      -1) {
    free (raw);
    return -1;
  }
  for (i = 0; i < need; i++)
    l->l1[i] = load_be64 (raw + i * 8);
  free (raw);
  return 0;
}

int
qcow__parse_qcow2 (struct qcow__layer *l)
{
  uint8_t h[QCOW2_HDR_V3_MIN_LENGTH + 8];
  uint8_t *hc = NULL;
  uint64_t backing_off, reft_off, snap_off, l1_off, size, ext_end, hlen;
  uint32_t backing_len, crypt, l1_size, reft_clusters, nb_snap;
  struct exts x;
  int ret = -1;

  if (l->io.size < QCOW2_HDR_V2_LENGTH) {
    qcow__not_qcow2 (l); /* says what it is, even empty */
    return -1;
  }
  if (qcow__io_pread (&l->io, l->path, h, sizeof h, 0) == -1)
    return -1;
  if (load_be32 (h + QCOW2_HDR_MAGIC) != QCOW2_MAGIC
      || load_be32 (h + QCOW2_HDR_VERSION) == 1) {
    qcow__not_qcow2 (l);
    return -1;
  }
  l->version = (int) load_be32 (h + QCOW2_HDR_VERSION);
  if (l->version != 2 && l->version != 3) {
    qcow__set_error (ENOTSUP, "%s: unsupported qcow2 version %u", l->path,
                     load_be32 (h + QCOW2_HDR_VERSION));
    return -1;
  }
  l->cluster_bits = load_be32 (h + QCOW2_HDR_CLUSTER_BITS);
  if (l->cluster_bits < QCOW2_MIN_CLUSTER_BITS ||
      l->cluster_bits > QCOW2_MAX_CLUSTER_BITS) {
    BAD (l, "%s: unsupported cluster size: 2^%u", l->path, l->cluster_bits);
    return -1;
  }
  l->cluster_size = 1ull << l->cluster_bits;
  size = load_be64 (h + QCOW2_HDR_SIZE);
  if (size > (uint64_t) INT64_MAX) {
    BAD (l, "%s: virtual size too large", l->path);
    return -1;
  }
  /* QEMU 7.2 keeps size / 512 sectors (qcow2.c), dropping a partial
   * last sector. */
  l->size = size & ~(uint64_t) 511;

  if (l->version == 2) {
    l->incompat = l->compat = l->autoclear = 0;
    l->refcount_order = 4;
    hlen = QCOW2_HDR_V2_LENGTH;
  }
  else {
    l->incompat = load_be64 (h + QCOW2_HDR_INCOMPAT);
    l->compat = load_be64 (h + QCOW2_HDR_COMPAT);
    l->autoclear = load_be64 (h + QCOW2_HDR_AUTOCLEAR);
    l->refcount_order = (int) load_be32 (h + QCOW2_HDR_REFCOUNT_ORDER);
    if (l->io.size < QCOW2_HDR_V3_MIN_LENGTH) {
      BAD (l, "%s: truncated qcow2 header (%" PRIu64 " bytes)", l->path,
           l->io.size);
      return -1;
    }
    hlen = load_be32 (h + QCOW2_HDR_HEADER_LENGTH);
    if (hlen < QCOW2_HDR_V3_MIN_LENGTH) {
      BAD (l, "%s: qcow2 header too short (%" PRIu64 " bytes)", l->path,
           hlen);
      return -1;
    }
    if (hlen > l->cluster_size) {
      BAD (l, "%s: qcow2 header exceeds cluster size", l->path);
      return -1;
    }
    if (hlen > l->io.size) {
      BAD (l, "%s: truncated qcow2 header (%" PRIu64 " of %" PRIu64
           " bytes)",
           l->path, l->io.size, hlen);
      return -1;
    }
    if (load_be32 (h + QCOW2_HDR_REFCOUNT_ORDER) > QCOW2_MAX_REFCOUNT_ORDER) {
      BAD (l, "%s: reference count entry width too large (order %u)",
           l->path, load_be32 (h + QCOW2_HDR_REFCOUNT_ORDER));
      return -1;
    }
  }
  /* Fields beyond header_length are absent; absent = 0. */
  l->compression_type = hlen > QCOW2_HDR_COMPRESSION
                            ? h[QCOW2_HDR_COMPRESSION]
                            : QCOW2_COMPRESSION_DEFLATE;
  l->extended_l2 = !!(l->incompat & QCOW2_INCOMPAT_EXTL2);
  l->has_data_file = !!(l->incompat & QCOW2_INCOMPAT_DATA_FILE);
  l->l2_bits = l->cluster_bits - (l->extended_l2 ? 4 : 3);
  l->sc_bits = l->extended_l2 ? l->cluster_bits - 5 : l->cluster_bits;

  crypt = load_be32 (h + QCOW2_HDR_CRYPT_METHOD);
  if (crypt != 0) {
    qcow__set_error (ENOTSUP, "%s: encrypted images are not supported "
                     "(crypt_method %u)",
                     l->path, crypt);
    return -1;
  }

  /* The whole header cluster; past EOF reads as zeros, as in QEMU. */
  hc = malloc (l->cluster_size);
  if (!hc) {
    qcow__set_error (ENOMEM, "%s: out of memory", l->path);
    return -1;
  }
  if (qcow__io_pread (&l->io, l->path, hc, l->cluster_size, 0) == -1)
    goto out;

  backing_off = load_be64 (h + QCOW2_HDR_BACKING_OFFSET);
  backing_len = load_be32 (h + QCOW2_HDR_BACKING_SIZE);
  if (backing_off > l->cluster_size) {
    BAD (l, "%s: invalid backing file offset 0x%" PRIx64, l->path,
         backing_off);
    goto out;
  }
  ext_end = backing_off ? backing_off : l->cluster_size;
  if (read_extensions (l, hc, hlen, ext_end, &x) == -1)
    goto out;
  if (check_features (l, &x) == -1)
    goto out;

  if (backing_off && backing_len) {
    if (backing_len > QCOW2_MAX_BACKING_NAME ||
        backing_len > l->cluster_size - backing_off) {
      BAD (l, "%s: backing file name too long", l->path);
      goto out;
    }
    l->backing_name =
        dup_name (l, hc + backing_off, backing_len, "backing file name");
    if (!l->backing_name)
      goto out;
  }

  reft_off = load_be64 (h + QCOW2_HDR_REFT_OFFSET);
  reft_clusters = load_be32 (h + QCOW2_HDR_REFT_CLUSTERS);
  if (reft_clusters == 0) {
    BAD (l, "%s: image does not contain a reference count table", l->path);
    goto out;
  }
  if (validate_table (l, reft_off, reft_clusters, l->cluster_size,
                      QCOW2_MAX_REFTABLE_BYTES, "reference count table") == -1)
    goto out;

  nb_snap = load_be32 (h + QCOW2_HDR_NB_SNAPSHOTS);
  snap_off = load_be64 (h + QCOW2_HDR_SNAPSHOTS_OFF);
  if (nb_snap > QCOW2_MAX_SNAPSHOTS) {
    BAD (l, "%s: too many snapshots (%u)", l->path, nb_snap);
    goto out;
  }
  /* QEMU validates the table's offset even when there are no snapshots. */
  if (check_snapshots (l, nb_snap, snap_off) == -1)
    goto out;

  l1_size = load_be32 (h + QCOW2_HDR_L1_SIZE);
  l1_off = load_be64 (h + QCOW2_HDR_L1_OFFSET);
  l->l1_entries = l1_size;
  l->l1_offset = l1_off;
  if (load_l1 (l, l1_size, l1_off) == -1)
    goto out;

  /* Bitmaps count only with autoclear bit 0: without it, a program that
   * does not know bitmaps has written the image (QEMU ignores them). */
  if (x.have_bitmaps && (l->autoclear & QCOW2_AUTOCLEAR_BITMAPS)) {
    const uint8_t *b = x.bitmaps;
    if (load_be32 (b + 4) != 0) {
      BAD (l, "%s: bitmaps extension: reserved field is not zero", l->path);
      goto out;
    }
    if (qcow__parse_bitmaps (l, load_be32 (b), load_be64 (b + 8),
                             load_be64 (b + 16)) == -1)
      goto out;
  }
  ret = 0;
out:
  free (hc);
  return ret;
}

void
qcow__layer_free (struct qcow__layer *l)
{
  if (!l)
    return;
  if (l->dio.fd >= 0 && l->dio.fd != l->io.fd)
    qcow__io_close (&l->dio);
  qcow__io_close (&l->io);
  free (l->path);
  free (l->file);
  free (l->data_path);
  free (l->l1);
  free (l->backing_name);
  free (l->backing_format);
  free (l->data_file_name);
  if (l->bitmaps)
    for (size_t i = 0; i < l->nb_bitmaps; i++)
      free ((char *) l->bitmaps[i].info.name);
  free (l->bitmaps);
  free (l->bitmap_info);
  free (l);
}
