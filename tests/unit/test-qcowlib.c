/* test-qcowlib.c -- qcowlib on images built byte by byte in memory.
 *
 * Each image is laid out here from the qcow2 spec (docs/qcow2.md §1-§4),
 * not produced by our own code: cluster 0 header, 1 refcount table,
 * 2 L1 table, 3 L2 table, data from cluster 4.  Expected results are the
 * rules of docs/qcow2.md (decision order, zero flag, subclusters, compressed
 * descriptors, bitmap bit order); compressed payloads come from zlib and
 * libzstd themselves. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include "byteorder.h"
#include "qcowlib.h"
#include "tap.h"

#define COPIED (1ull << 63)
#define COMPRESSED (1ull << 62)

struct img {
  uint8_t *b;
  size_t len;
  unsigned cb;
  uint64_t cs;
  bool ext;
};

/* A v2/v3 image of NCL clusters, virtual size SIZE, one L2 table. */
static void
img_init (struct img *m, unsigned cb, int version, uint64_t size, size_t ncl,
          bool ext)
{
  m->cb = cb;
  m->cs = 1ull << cb;
  m->ext = ext;
  m->len = ncl * m->cs;
  m->b = calloc (1, m->len);
  store_be32 (m->b, 0x514649fb);
  store_be32 (m->b + 4, version);
  store_be32 (m->b + 20, cb);
  store_be64 (m->b + 24, size);
  store_be32 (m->b + 36, 1);            /* l1_size */
  store_be64 (m->b + 40, 2 * m->cs);    /* l1_table_offset */
  store_be64 (m->b + 48, m->cs);        /* refcount_table_offset */
  store_be32 (m->b + 56, 1);            /* refcount_table_clusters */
  if (version == 3) {
    store_be32 (m->b + 96, 4);          /* refcount_order */
    store_be32 (m->b + 100, 112);       /* header_length */
    if (ext)
      store_be64 (m->b + 72, 1ull << 4);
  }
  store_be64 (m->b + 2 * m->cs, COPIED | 3 * m->cs); /* L1[0] -> L2 */
}

static void
l2 (struct img *m, size_t i, uint64_t w0, uint64_t bm)
{
  uint8_t *p = m->b + 3 * m->cs + i * (m->ext ? 16 : 8);
  store_be64 (p, w0);
  if (m->ext)
    store_be64 (p + 8, bm);
}

static void
fill (struct img *m, size_t cluster, int byte)
{
  memset (m->b + cluster * m->cs, byte, m->cs);
}

static struct qcow_chain *
img_open (struct img *m)
{
  return qcow_open_memory (m->b, m->len, 0);
}

/* Header extension at *POS (starts at 112 for v3). */
static void
ext_add (struct img *m, size_t *pos, uint32_t type, const void *data,
         uint32_t len)
{
  store_be32 (m->b + *pos, type);
  store_be32 (m->b + *pos + 4, len);
  memcpy (m->b + *pos + 8, data, len);
  *pos += 8 + ((len + 7) & ~7u);
}

static bool
all_bytes (const uint8_t *p, size_t n, int v)
{
  size_t i;
  for (i = 0; i < n; i++)
    if (p[i] != v)
      return false;
  return true;
}

struct maplog {
  struct qcow_extent e[64];
  size_t n;
};

static int
log_extent (void *opaque, const struct qcow_extent *e)
{
  struct maplog *l = opaque;
  if (l->n < 64)
    l->e[l->n++] = *e;
  return 0;
}

static bool
has_extent (const struct maplog *l, uint64_t start, uint64_t len,
            enum qcow_kind kind)
{
  size_t i;
  for (i = 0; i < l->n; i++)
    if (l->e[i].start == start && l->e[i].length == len &&
        l->e[i].kind == kind)
      return true;
  return false;
}

/* Expect open to fail with ERRNUM and a message containing WHAT. */
static void
open_fails (struct img *m, int errnum, const char *what, const char *desc)
{
  struct qcow_chain *c = img_open (m);
  ok (!c && qcow_errno () == errnum && strstr (qcow_errmsg (), what),
      "%s: %s", desc, c ? "opened" : qcow_errmsg ());
  qcow_close (c);
}

static void
test_header (void)
{
  struct img m;
  struct qcow_chain *c;
  size_t pos;
  uint8_t table[48] = { 0 };

  img_init (&m, 9, 3, 1000, 8, false);
  c = img_open (&m);
  ok (c && qcow_virtual_size (c) == 512,
      "virtual size 1000 is floored to 512 (docs/qcow2.md §0.7)");
  qcow_close (c);

  store_be32 (m.b, 0x514649fa);
  open_fails (&m, EBADMSG, "magic", "bad magic refused");
  store_be32 (m.b, 0x514649fb);
  store_be32 (m.b + 4, 4);
  open_fails (&m, ENOTSUP, "version", "version 4 refused");
  store_be32 (m.b + 4, 3);
  store_be32 (m.b + 20, 8);
  open_fails (&m, EBADMSG, "cluster size", "cluster_bits 8 refused");
  store_be32 (m.b + 20, 22);
  open_fails (&m, EBADMSG, "cluster size", "cluster_bits 22 refused");
  store_be32 (m.b + 20, 9);
  store_be32 (m.b + 100, 100);
  open_fails (&m, EBADMSG, "too short", "header_length 100 refused");
  store_be32 (m.b + 100, 1024);
  open_fails (&m, EBADMSG, "exceeds cluster", "header_length > cluster");
  store_be32 (m.b + 100, 112);
  store_be32 (m.b + 96, 7);
  open_fails (&m, EBADMSG, "width", "refcount_order 7 refused");
  store_be32 (m.b + 96, 6);
  c = img_open (&m);
  ok (c != NULL, "refcount_order 6 accepted");
  qcow_close (c);
  store_be32 (m.b + 96, 4);

  store_be64 (m.b + 72, 1ull << 5);
  open_fails (&m, ENOTSUP, "bit 5", "unknown incompatible bit 5 refused");
  /* The feature-name table names it. */
  table[0] = 0;
  table[1] = 5;
  memcpy (table + 2, "shiny feature", 13);
  pos = 112;
  ext_add (&m, &pos, 0x6803f857, table, sizeof table);
  open_fails (&m, ENOTSUP, "shiny feature", "unknown bit named from table");
  memset (m.b + 112, 0, 64);
  store_be64 (m.b + 72, 1ull << 1);
  open_fails (&m, EBADMSG, "corrupt", "corrupt bit refused");
  store_be64 (m.b + 72, 1ull << 0);
  c = img_open (&m);
  ok (c != NULL, "dirty bit accepted (read-only)");
  qcow_close (c);
  store_be64 (m.b + 72, 0);
  store_be64 (m.b + 80, 0xfffffffffffffffeull);
  store_be64 (m.b + 88, 0xfffffffffffffffcull);
  c = img_open (&m);
  ok (c != NULL, "unknown compatible and autoclear bits ignored");
  qcow_close (c);
  store_be64 (m.b + 80, 0);
  store_be64 (m.b + 88, 0);

  store_be32 (m.b + 32, 1);
  open_fails (&m, ENOTSUP, "encrypt", "crypt_method 1 refused");
  store_be32 (m.b + 32, 0);

  m.b[104] = 1;
  open_fails (&m, EBADMSG, "bit 3", "zstd without incompat bit 3 refused");
  store_be64 (m.b + 72, 1ull << 3);
  c = img_open (&m);
  ok (c != NULL, "zstd with incompat bit 3 accepted");
  qcow_close (c);
  m.b[104] = 0;
  open_fails (&m, EBADMSG, "bit 3", "incompat bit 3 with deflate refused");
  m.b[104] = 2;
  open_fails (&m, ENOTSUP, "compression type", "compression type 2 refused");
  m.b[104] = 0;
  store_be64 (m.b + 72, 0);
  /* header_length 104: compression_type absent = deflate even if the
   * byte there is not zero. */
  store_be32 (m.b + 100, 104);
  m.b[104] = 1;
  c = img_open (&m);
  ok (c != NULL, "compression byte past header_length ignored");
  qcow_close (c);
  m.b[104] = 0;
  store_be32 (m.b + 100, 112);

  store_be64 (m.b + 72, 1ull << 4);
  open_fails (&m, EBADMSG, "16384", "extended L2 with 512-byte clusters");
  store_be64 (m.b + 72, 1ull << 2);
  open_fails (&m, EINVAL, "data file", "data-file bit without a name");
  pos = 112;
  ext_add (&m, &pos, 0x44415441, "x.data", 6);
  open_fails (&m, EPERM, "x.data", "data file refused for memory images");
  memset (m.b + 112, 0, 64);
  store_be64 (m.b + 72, 0);
  store_be64 (m.b + 88, 2);
  open_fails (&m, EBADMSG, "data-file-raw", "raw-data bit without data file");
  store_be64 (m.b + 88, 0);

  /* L1 checks. */
  store_be32 (m.b + 36, 0);
  open_fails (&m, EBADMSG, "too small", "L1 table too small");
  store_be32 (m.b + 36, 4194305);
  open_fails (&m, EBADMSG, "too large", "L1 table over 32 MiB refused");
  store_be32 (m.b + 36, 1);
  store_be64 (m.b + 40, 0);
  open_fails (&m, EBADMSG, "overlaps the header", "L1 table at offset 0");
  store_be64 (m.b + 40, 0x100000);
  open_fails (&m, EBADMSG, "past the end", "L1 table past EOF");
  store_be64 (m.b + 40, 0x500);
  open_fails (&m, EBADMSG, "invalid", "unaligned L1 table");
  store_be64 (m.b + 40, 2 * m.cs);
  store_be32 (m.b + 56, 0);
  open_fails (&m, EBADMSG, "reference count", "no refcount table");
  store_be32 (m.b + 56, 1);
  store_be32 (m.b + 60, 65537);
  open_fails (&m, EBADMSG, "snapshots", "too many snapshots");
  store_be32 (m.b + 60, 0);

  /* Extension walk. */
  pos = 112;
  ext_add (&m, &pos, 0x12345678, "abcd", 4);
  ext_add (&m, &pos, 0x12345678, "abcd", 4);
  open_fails (&m, EBADMSG, "duplicate", "duplicate header extension");
  memset (m.b + 112, 0, 64);
  store_be32 (m.b + 112, 0x12345678);
  store_be32 (m.b + 116, 1000);
  open_fails (&m, EBADMSG, "too large", "extension past the header cluster");
  memset (m.b + 112, 0, 64);
  pos = 112;
  ext_add (&m, &pos, 0xe2792aca, "qcow2qcow2qcow2q", 16);
  open_fails (&m, EBADMSG, "too long", "backing format name of 16 bytes");
  memset (m.b + 112, 0, 64);
  /* Backing name: offset past the cluster, or too long for it. */
  store_be64 (m.b + 8, 1000);
  store_be32 (m.b + 16, 4);
  open_fails (&m, EBADMSG, "backing file offset", "backing offset > cluster");
  store_be64 (m.b + 8, 500);
  store_be32 (m.b + 16, 20);
  open_fails (&m, EBADMSG, "too long", "backing name past the cluster");
  store_be64 (m.b + 8, 0);
  store_be32 (m.b + 16, 0);

  m.len = 103;
  open_fails (&m, EBADMSG, "truncated", "truncated v3 header");
  m.len = 8 * m.cs;
  free (m.b);
}

static void
test_l2_entries (void)
{
  struct img m;
  struct qcow_chain *c;
  struct maplog log = { 0 };
  uint8_t buf[8 * 512];

  img_init (&m, 9, 3, 16 * 512, 12, false);
  fill (&m, 4, 0xaa);
  fill (&m, 5, 0xbb);
  fill (&m, 6, 0xcc);
  fill (&m, 7, 0xdd);
  l2 (&m, 0, COPIED | 4 * 512, 0);               /* data */
  l2 (&m, 1, COPIED | 5 * 512, 0);               /* contiguous data */
  l2 (&m, 2, 1, 0);                              /* ZERO_PLAIN */
  l2 (&m, 3, COPIED | 6 * 512 | 1, 0);           /* ZERO_ALLOC, stale 0xcc */
  l2 (&m, 4, COPIED, 0);                         /* offset 0 + COPIED */
  l2 (&m, 5, COPIED | 7 * 512 | 0x3f000000000001feull, 0); /* reserved */
  l2 (&m, 6, COPIED | 100 * 512, 0);             /* data past EOF */
  c = img_open (&m);
  ok (c != NULL, "v3 image with assorted L2 entries opens");
  ok (qcow_pread (c, buf, sizeof buf, 0) == 0, "read 8 clusters");
  ok (all_bytes (buf, 512, 0xaa) && all_bytes (buf + 512, 512, 0xbb),
      "data clusters read their host clusters");
  ok (all_bytes (buf + 1024, 512, 0), "zero flag reads zeros");
  ok (all_bytes (buf + 1536, 512, 0),
      "ZERO_ALLOC reads zeros, not the stale host data (docs/qcow2.md §0.2)");
  ok (all_bytes (buf + 2048, 512, 0),
      "offset 0 with COPIED is unallocated (docs/qcow2.md §0.4)");
  ok (all_bytes (buf + 2560, 512, 0xdd), "reserved bits ignored on read");
  ok (all_bytes (buf + 3072, 512, 0), "data past EOF reads zeros");
  ok (qcow_pread (c, buf, 100, 16 * 512 - 50) == 0 &&
          all_bytes (buf, 100, 0),
      "read across the virtual size reads zeros");
  ok (qcow_pread (c, buf, 700, 300) == 0 && all_bytes (buf, 212, 0xaa) &&
          all_bytes (buf + 212, 488, 0xbb),
      "unaligned read across two clusters");
  qcow_map (c, 0, UINT64_MAX, log_extent, &log);
  ok (has_extent (&log, 0, 1024, QCOW_KIND_DATA), "map merges 2 clusters");
  ok (has_extent (&log, 1024, 1024, QCOW_KIND_ZERO),
      "map: ZERO_PLAIN + ZERO_ALLOC as one zero extent");
  ok (has_extent (&log, 2048, 512, QCOW_KIND_UNALLOCATED),
      "map: offset 0 + COPIED unallocated");
  ok (has_extent (&log, 2560, 1024, QCOW_KIND_DATA),
      "map: reserved-bit entry and past-EOF entry are data");
  ok (log.n > 0 && log.e[log.n - 1].start + log.e[log.n - 1].length ==
                       16 * 512,
      "map ends at the virtual size");
  qcow_close (c);

  /* Unaligned data offset (1 KiB clusters so bit 9 is inside one). */
  free (m.b);
  img_init (&m, 10, 3, 8 * 1024, 8, false);
  l2 (&m, 0, COPIED | (5 * 1024 + 512), 0);
  c = img_open (&m);
  ok (c && qcow_pread (c, buf, 512, 0) == -1 && qcow_errno () == EBADMSG &&
          strstr (qcow_errmsg (), "unaligned"),
      "unaligned data offset: %s", qcow_errmsg ());
  ok (c && qcow_map (c, 0, UINT64_MAX, log_extent, &log) == -1,
      "map refuses it too");
  qcow_close (c);
  l2 (&m, 0, 0, 0);
  store_be64 (m.b + 2 * 1024, COPIED | (3 * 1024 + 512));
  c = img_open (&m);
  ok (c && qcow_pread (c, buf, 512, 0) == -1 && qcow_errno () == EBADMSG,
      "unaligned L2 table offset: %s", qcow_errmsg ());
  qcow_close (c);
  store_be64 (m.b + 2 * 1024, COPIED | 0x100000);
  c = img_open (&m);
  ok (c && qcow_pread (c, buf, 512, 0) == -1 && qcow_errno () == EBADMSG,
      "L2 table past EOF: %s", qcow_errmsg ());
  qcow_close (c);
  free (m.b);

  /* v2: the zero flag is corruption. */
  img_init (&m, 9, 2, 4 * 512, 8, false);
  l2 (&m, 1, 1, 0);
  c = img_open (&m);
  ok (c && qcow_pread (c, buf, 512, 0) == 0, "v2: cluster 0 readable");
  ok (c && qcow_pread (c, buf, 512, 512) == -1 &&
          strstr (qcow_errmsg (), "pre-v3"),
      "v2: zero flag refused: %s", qcow_errmsg ());
  qcow_close (c);
  free (m.b);
}

/* Compressed descriptor for data at byte COFF of LEN bytes (QCL:862). */
static uint64_t
cdesc (unsigned cb, uint64_t coff, uint64_t len)
{
  unsigned x = 62 - (cb - 8);
  uint64_t nsec1 = (coff + len - 1) / 512 - coff / 512;
  return COMPRESSED | (nsec1 << x) | coff;
}

static size_t
deflate_raw (const uint8_t *in, size_t inlen, uint8_t *out, size_t outlen)
{
  z_stream s = { 0 };
  size_t n;
  deflateInit2 (&s, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -12, 9,
                Z_DEFAULT_STRATEGY);
  s.next_in = (Bytef *) in;
  s.avail_in = inlen;
  s.next_out = out;
  s.avail_out = outlen;
  deflate (&s, Z_FINISH);
  n = outlen - s.avail_out;
  deflateEnd (&s);
  return n;
}

static void
test_compressed (void)
{
  struct img m;
  struct qcow_chain *c;
  uint8_t plain[1024], z[2048], buf[1024];
  size_t zlen, zlen2, i;
  uint64_t off;
  struct maplog log = { 0 };

  for (i = 0; i < sizeof plain; i++)
    plain[i] = (uint8_t) (i * 7 / 13);
  /* deflate, 1 KiB clusters, two streams sharing a sector at odd
   * offsets. */
  img_init (&m, 10, 3, 4 * 1024, 8, false);
  zlen = deflate_raw (plain, 1024, z, sizeof z);
  off = 4 * 1024 + 5;                 /* odd byte offset: bit 0 set */
  memcpy (m.b + off, z, zlen);
  l2 (&m, 0, cdesc (10, off, zlen), 0);
  memset (plain, 0x5c, sizeof plain);
  zlen2 = deflate_raw (plain, 1024, z, sizeof z);
  memcpy (m.b + off + zlen, z, zlen2);
  l2 (&m, 1, cdesc (10, off + zlen, zlen2), 0);
  /* Garbage after the streams, within the last sector: ignored. */
  m.b[off + zlen + zlen2] = 0xff;
  c = img_open (&m);
  ok (c && qcow_pread (c, buf, 1024, 0) == 0 && buf[13] == 13 * 7 / 13 &&
          buf[1023] == (uint8_t) (1023 * 7 / 13),
      "deflate cluster at an odd offset: %s", qcow_errmsg ());
  ok (c && qcow_pread (c, buf, 1024, 1024) == 0 && all_bytes (buf, 1024, 0x5c),
      "second deflate cluster sharing the sector");
  ok (c && qcow_pread (c, buf, 100, 1000) == 0 && buf[99] == 0x5c,
      "read across two compressed clusters");
  qcow_map (c, 0, UINT64_MAX, log_extent, &log);
  ok (log.n >= 1 && log.e[0].kind == QCOW_KIND_DATA && log.e[0].compressed &&
          log.e[0].length == 2048,
      "map: compressed data extent");
  qcow_close (c);

  /* Compressed stream whose last sectors lie past EOF: what exists is
   * read, the rest is zeros, and it still decodes (QEMU zero-fills). */
  m.len = off + zlen + zlen2;
  l2 (&m, 1, cdesc (10, off + zlen, zlen2) | (3ull << (62 - 2)), 0);
  c = img_open (&m);
  ok (c && qcow_pread (c, buf, 1024, 1024) == 0 && all_bytes (buf, 1024, 0x5c),
      "compressed extent past EOF decodes what exists");
  qcow_close (c);
  /* Truncated stream: decode error naming file and guest offset. */
  m.len = off + zlen + zlen2 / 2;
  c = img_open (&m);
  ok (c && qcow_pread (c, buf, 1024, 1024) == -1 &&
          qcow_errno () == EBADMSG && strstr (qcow_errmsg (), "0x400"),
      "truncated deflate stream: %s", qcow_errmsg ());
  qcow_close (c);
  m.len = 8 * 1024;
  free (m.b);

  /* zstd: two frames that together make one cluster. */
  img_init (&m, 10, 3, 2 * 1024, 8, false);
  store_be64 (m.b + 72, 1ull << 3);
  m.b[104] = 1;
  memset (plain, 0x31, 512);
  memset (plain + 512, 0x32, 512);
  zlen = ZSTD_compress (z, sizeof z, plain, 512, 3);
  zlen2 = ZSTD_compress (z + zlen, sizeof z - zlen, plain + 512, 512, 3);
  off = 4 * 1024 + 3;
  memcpy (m.b + off, z, zlen + zlen2);
  l2 (&m, 1, cdesc (10, off, zlen + zlen2), 0);
  c = img_open (&m);
  ok (c && qcow_pread (c, buf, 1024, 1024) == 0 && all_bytes (buf, 512, 0x31) &&
          all_bytes (buf + 512, 512, 0x32),
      "zstd cluster of two frames: %s", qcow_errmsg ());
  qcow_close (c);
  /* A single frame that is too short for the cluster. */
  zlen = ZSTD_compress (z, sizeof z, plain, 512, 3);
  memset (m.b + off, 0, 2048);
  memcpy (m.b + off, z, zlen);
  l2 (&m, 1, cdesc (10, off, zlen), 0);
  c = img_open (&m);
  ok (c && qcow_pread (c, buf, 1024, 1024) == -1 && qcow_errno () == EBADMSG,
      "zstd stream shorter than a cluster refused: %s", qcow_errmsg ());
  qcow_close (c);
  free (m.b);
}

static void
test_extended_l2 (void)
{
  struct img m;
  struct qcow_chain *c;
  struct maplog log = { 0 };
  uint8_t *buf = malloc (16384);
  const uint64_t sc = 512; /* 16 KiB / 32 */

  img_init (&m, 14, 3, 2 * 16384, 6, true);
  fill (&m, 4, 0xe1);
  /* Cluster 0: subclusters 0-1 allocated, 2 zero, rest unallocated;
   * bit 0 of word 0 (the standard zero flag) is reserved here. */
  l2 (&m, 0, COPIED | 4 * 16384 | 1, 0x3ull | (1ull << (32 + 2)));
  /* Cluster 1: unallocated cluster with subcluster 5 reading zeros. */
  l2 (&m, 1, 0, 1ull << (32 + 5));
  c = img_open (&m);
  ok (c && qcow_pread (c, buf, 16384, 0) == 0, "extended L2 read");
  ok (all_bytes (buf, 2 * sc, 0xe1), "allocated subclusters read data");
  ok (all_bytes (buf + 2 * sc, 30 * sc, 0),
      "zero and unallocated subclusters read zeros");
  qcow_map (c, 0, UINT64_MAX, log_extent, &log);
  ok (has_extent (&log, 0, 2 * sc, QCOW_KIND_DATA) &&
          has_extent (&log, 2 * sc, sc, QCOW_KIND_ZERO) &&
          has_extent (&log, 3 * sc, 16384 + 2 * sc, QCOW_KIND_UNALLOCATED) &&
          has_extent (&log, 16384 + 5 * sc, sc, QCOW_KIND_ZERO),
      "map at subcluster granularity (%zu extents)", log.n);
  qcow_close (c);
  /* Allocated and zero bits for the same subcluster: invalid. */
  l2 (&m, 0, COPIED | 4 * 16384, 0x1ull | (1ull << 32));
  c = img_open (&m);
  ok (c && qcow_pread (c, buf, 512, 8192) == -1 && qcow_errno () == EBADMSG,
      "alloc+zero bits refused: %s", qcow_errmsg ());
  qcow_close (c);
  /* Allocation bit in an unallocated cluster: invalid. */
  l2 (&m, 0, 0, 0x4);
  c = img_open (&m);
  ok (c && qcow_pread (c, buf, 512, 0) == -1 && qcow_errno () == EBADMSG,
      "alloc bit without a host cluster refused: %s", qcow_errmsg ());
  qcow_close (c);
  free (m.b);
  free (buf);
}

/* Bitmaps extension + one directory entry + a table of one cluster. */
static void
test_bitmaps (void)
{
  struct img m;
  struct qcow_chain *c;
  struct maplog log = { 0 };
  const struct qcow_bitmap_info *bi;
  size_t n = 0, pos = 112;
  uint8_t ext[24] = { 0 };
  uint8_t *d;

  /* 32 KiB disk, 512-byte granularity: 64 bits = 8 bytes. */
  img_init (&m, 9, 3, 32768, 10, false);
  store_be64 (m.b + 88, 1); /* autoclear bit 0: bitmaps are valid */
  store_be32 (ext, 1);
  store_be64 (ext + 8, 32);
  store_be64 (ext + 16, 5 * 512);
  ext_add (&m, &pos, 0x23852875, ext, 24);
  d = m.b + 5 * 512;
  store_be64 (d, 6 * 512);      /* table offset */
  store_be32 (d + 8, 1);        /* table size */
  store_be32 (d + 12, 2);       /* flags: auto */
  d[16] = 1;                    /* type */
  d[17] = 9;                    /* granularity bits */
  d[18] = 0;                    /* name size (be16) */
  d[19] = 2;
  memcpy (d + 24, "b0", 2);
  store_be64 (m.b + 6 * 512, 7 * 512);
  /* LSB first: byte 0 = 0x06 sets bits 1 and 2; byte 2 = 0x80 bit 23;
   * byte 3 = 0x01 bit 24 (adjacent to 23: one range); byte 7 bit 63. */
  m.b[7 * 512 + 0] = 0x06;
  m.b[7 * 512 + 2] = 0x80;
  m.b[7 * 512 + 3] = 0x01;
  m.b[7 * 512 + 7] = 0x80;
  c = img_open (&m);
  ok (c && qcow_bitmap_list (c, 0, &bi, &n) == 0 && n == 1 &&
          strcmp (bi[0].name, "b0") == 0 && bi[0].granularity == 512 &&
          bi[0].enabled && !bi[0].in_use,
      "bitmap listed: %s", c ? "" : qcow_errmsg ());
  ok (c && qcow_bitmap_ranges (c, 0, "b0", log_extent, &log) == 0 &&
          log.n == 3 && has_extent (&log, 512, 1024, QCOW_KIND_DATA) &&
          has_extent (&log, 23 * 512, 1024, QCOW_KIND_DATA) &&
          has_extent (&log, 63 * 512, 512, QCOW_KIND_DATA),
      "dirty ranges LSB first (%zu ranges)", log.n);
  ok (c && qcow_bitmap_ranges (c, 0, "nope", log_extent, &log) == -1 &&
          qcow_errno () == ENOENT,
      "unknown bitmap name");
  qcow_close (c);
  store_be32 (d + 12, 3); /* in_use */
  c = img_open (&m);
  ok (c && qcow_bitmap_ranges (c, 0, "b0", log_extent, &log) == -1 &&
          qcow_errno () == EBUSY,
      "in_use bitmap refused with EBUSY");
  qcow_close (c);
  store_be32 (d + 12, 2);
  store_be64 (m.b + 88, 0);
  c = img_open (&m);
  ok (c && qcow_bitmap_list (c, 0, &bi, &n) == 0 && n == 0,
      "autoclear bit 0 clear: bitmaps ignored");
  qcow_close (c);
  store_be64 (m.b + 88, 1);
  d[17] = 8;
  open_fails (&m, EBADMSG, "bitmap", "granularity 2^8 refused");
  d[17] = 9;
  store_be32 (m.b + 112 + 8, 2);
  open_fails (&m, EBADMSG, "fewer bitmaps", "bitmap count mismatch");
  store_be32 (m.b + 112 + 8, 1);
  store_be32 (d + 12, 6);
  open_fails (&m, EBADMSG, "bitmap", "reserved bitmap flag refused");
  /* Bitmap table entry with an offset and bit 0 set: QEMU loads
   * consistent bitmaps at open and refuses the image. */
  store_be32 (d + 12, 2);
  store_be64 (m.b + 6 * 512, 7 * 512 | 1);
  open_fails (&m, EBADMSG, "table entry", "bad bitmap table entry refused");
  store_be32 (d + 12, 3);
  c = img_open (&m);
  ok (c != NULL, "in_use bitmap's table not loaded at open (as QEMU)");
  qcow_close (c);
  free (m.b);
}

struct thr {
  struct qcow_chain *c;
  int bad;
};

static void *
reader (void *opaque)
{
  struct thr *t = opaque;
  uint8_t buf[512];
  int i;

  for (i = 0; i < 2000; i++) {
    unsigned cl = (unsigned) (i * 7) % 64;
    if (qcow_pread (t->c, buf, 512, cl * 512ull) == -1 ||
        !all_bytes (buf, 512, cl % 3 == 0 ? 0 : cl))
      t->bad++;
  }
  return NULL;
}

static void
test_threads (void)
{
  struct img m;
  struct thr t[4];
  pthread_t tid[4];
  int i, bad = 0;

  img_init (&m, 9, 3, 64 * 512, 70, false);
  for (i = 0; i < 64; i++) {
    fill (&m, 4 + i, i);
    if (i % 3)
      l2 (&m, i, COPIED | (4ull + i) * 512, 0);
  }
  t[0].c = img_open (&m);
  for (i = 0; i < 4; i++) {
    t[i].c = t[0].c;
    t[i].bad = 0;
    pthread_create (&tid[i], NULL, reader, &t[i]);
  }
  for (i = 0; i < 4; i++) {
    pthread_join (tid[i], NULL);
    bad += t[i].bad;
  }
  ok (t[0].c && bad == 0, "4 threads read one handle (%d bad reads)", bad);
  qcow_close (t[0].c);
  free (m.b);
}

/* An OFD lock of TYPE on byte BYTE of FD (F_OFD_SETLK), or F_UNLCK. */
static int
ofd_set (int fd, short type, int byte)
{
  struct flock fl = { .l_type = type, .l_whence = SEEK_SET,
                      .l_start = byte, .l_len = 1 };
  return fcntl (fd, F_OFD_SETLK, &fl);
}

/* Does another open file description than FD's hold a lock on BYTE? */
static bool
ofd_held (int fd, int byte)
{
  struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET,
                      .l_start = byte, .l_len = 1 };
  return fcntl (fd, F_OFD_GETLK, &fl) == 0 && fl.l_type != F_UNLCK;
}

/* QEMU's lock protocol (block/file-posix.c): another open file description
 * of the same file plays the running QEMU. */
static void
test_locks (void)
{
  char path[] = "/tmp/qcowlib-locks.XXXXXX";
  struct qcow_open_opts fs = { .flags = QCOW_OPEN_FORCE_SHARE };
  struct qcow_chain *c;
  struct img m;
  int fd, qemu, probe;

  img_init (&m, 9, 3, 64 * 512, 5, false);
  fd = mkstemp (path);
  if (fd == -1 || write (fd, m.b, m.len) != (ssize_t) m.len) {
    ok (false, "locks: temporary image: %s", strerror (errno));
    free (m.b);
    return;
  }
  close (fd);
  qemu = open (path, O_RDWR); /* O_RDWR: for the F_WRLCK below */
  probe = open (path, O_RDONLY);

  c = qcow_open (path, NULL);
  ok (c && ofd_held (probe, 100) && ofd_held (probe, 201)
          && ofd_held (probe, 203) && !ofd_held (probe, 101)
          && !ofd_held (probe, 200),
      "locks: an open chain holds bytes 100, 201, 203 (consistent read; "
      "write and resize not shared)");
  qcow_close (c);
  ok (!ofd_held (probe, 100) && !ofd_held (probe, 201),
      "locks: qcow_close drops them");

  ofd_set (qemu, F_RDLCK, 101); /* QEMU holds the write permission */
  c = qcow_open (path, NULL);
  ok (!c && qcow_errno () == EBUSY && strstr (qcow_errmsg (), "write lock")
          && strstr (qcow_errmsg (), "--force-share"),
      "locks: write permission held: refused (%s)",
      c ? "opened" : qcow_errmsg ());
  qcow_close (c);
  ok (!ofd_held (probe, 100), "locks: a refused open leaves no lock");
  c = qcow_open (path, &fs);
  ok (c && ofd_held (probe, 100) && !ofd_held (probe, 201)
          && !ofd_held (probe, 203),
      "locks: force-share reads it, holding byte 100 only (%s)",
      c ? "opened" : qcow_errmsg ());
  qcow_close (c);
  ofd_set (qemu, F_UNLCK, 101);

  ofd_set (qemu, F_RDLCK, 103);
  c = qcow_open (path, NULL);
  ok (!c && qcow_errno () == EBUSY && strstr (qcow_errmsg (), "resize lock"),
      "locks: resize permission held: refused (%s)",
      c ? "opened" : qcow_errmsg ());
  qcow_close (c);
  ofd_set (qemu, F_UNLCK, 103);

  ofd_set (qemu, F_RDLCK, 200); /* consistent read not shared */
  c = qcow_open (path, &fs);
  ok (!c && qcow_errno () == EBUSY
          && strstr (qcow_errmsg (), "read it consistently"),
      "locks: consistent read not shared: refused even with force-share "
      "(%s)", c ? "opened" : qcow_errmsg ());
  qcow_close (c);
  ofd_set (qemu, F_UNLCK, 200);

  ofd_set (qemu, F_WRLCK, 201); /* not QEMU: an exclusive lock */
  c = qcow_open (path, NULL);
  ok (!c && qcow_errno () == EBUSY && strstr (qcow_errmsg (), "exclusive"),
      "locks: an exclusive lock on a lock byte: refused (%s)",
      c ? "opened" : qcow_errmsg ());
  qcow_close (c);
  ofd_set (qemu, F_UNLCK, 201);

  c = qcow_open (path, NULL);
  ok (c != NULL, "locks: free again: opens (%s)", c ? "ok" : qcow_errmsg ());
  qcow_close (c);
  close (qemu);
  close (probe);
  unlink (path);
  free (m.b);
}

int
main (void)
{
  test_header ();
  test_l2_entries ();
  test_compressed ();
  test_extended_l2 ();
  test_bitmaps ();
  test_threads ();
  test_locks ();
  return tap_done ();
}
