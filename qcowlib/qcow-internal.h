/* qcow-internal.h -- what the files of qcowlib share.  Not installed. */
#ifndef QCOWLIB_QCOW_INTERNAL_H
#define QCOWLIB_QCOW_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "qcowlib.h"

#define QCOW_DEFAULT_MAX_DEPTH 64
#define QCOW_MAX_DEPTH_LIMIT 4096
/* Upper bound on cached L2 tables per chain (bytes).  Tables are one
 * cluster each, so this is 512 tables of 64 KiB or 16 of 2 MiB. */
#ifndef QCOW_L2_CACHE_BYTES
#define QCOW_L2_CACHE_BYTES (32u << 20)
#endif

/* A file we read from: a descriptor, or a buffer (qcow_open_memory). */
struct qcow__io {
  int fd;              /* -1 for memory */
  const uint8_t *mem;  /* memory image, or NULL */
  uint64_t size;       /* file size at open (a span: its length) */
  uint64_t base;       /* a span: where it starts in the file */
  bool span;           /* reads are clipped to SIZE */
  struct qcow_span_piece *ext; /* a sparse span: where its bytes are, or NULL */
  size_t next;
};

/* What one layer says about a guest range (qcow__layer_status). */
enum qcow__type {
  QCOW__UNALLOC,    /* ask the backing layer */
  QCOW__ZERO,       /* zero flag: reads zeros, never the backing */
  QCOW__DATA,       /* plain data at `host` in the data file */
  QCOW__COMPRESSED, /* one compressed cluster, descriptor in `l2e` */
};

struct qcow__run {
  enum qcow__type type;
  uint64_t len;  /* bytes from the queried offset */
  uint64_t host; /* DATA: host offset of the first byte */
  uint64_t l2e;  /* COMPRESSED: the L2 entry */
};

struct qcow__bitmap {
  struct qcow_bitmap_info info;
  uint64_t table_offset;
  uint32_t table_size;
  uint32_t flags;
  uint8_t gran_bits;
};

struct qcow__layer {
  size_t depth;         /* 0 = top */
  char *path;           /* as opened (a span: its name) */
  char *file;           /* a span: the container file; else NULL */
  struct qcow__io io;   /* the image file */
  struct qcow__io dio;  /* where guest data lives (data file or io) */
  char *data_path;      /* resolved data-file path, or NULL */
  struct stat st;
  bool raw;
  int version;
  unsigned cluster_bits;
  uint64_t cluster_size;
  uint64_t size;        /* virtual size, floored to 512 */
  uint64_t incompat, compat, autoclear;
  int compression_type;
  bool extended_l2;
  bool has_data_file;
  int refcount_order;
  unsigned l2_bits;     /* log2 (L2 entries per table) */
  unsigned sc_bits;     /* log2 (subcluster size) */
  uint32_t l1_size;     /* entries used: ceil (size / L1 entry span) */
  uint32_t l1_entries;  /* the header's l1_size, as stored (identity.c) */
  uint64_t l1_offset;   /* the header's l1_table_offset */
  uint64_t *l1;         /* host byte order */
  char *backing_name, *backing_format, *data_file_name;
  struct qcow__bitmap *bitmaps;
  struct qcow_bitmap_info *bitmap_info;
  size_t nb_bitmaps;
};

struct qcow__l2cache; /* l2cache.c */

struct qcow_chain {
  size_t n;                    /* layers; [0] = top */
  struct qcow__layer **layers;
  struct qcow__l2cache *l2cache;
};

/* errors.c: set the calling thread's error.  Messages start with the file
 * they are about. */
__attribute__ ((format (printf, 2, 3))) void
qcow__set_error (int errnum, const char *fmt, ...);
void qcow__clear_error (void);

/* io.c */
int qcow__io_open (struct qcow__io *io, const char *path, struct stat *st);
void qcow__io_close (struct qcow__io *io);
/* Narrow the open IO to [OFFSET, OFFSET+LENGTH) of its file (PATH names
 * it in errors): the range must lie inside the file. */
/* A sparse span of LENGTH bytes stored in EXT[0..N) (copied), its
 * stored data starting at OFFSET (which tells it from other spans). */
int qcow__io_span_extents (struct qcow__io *io, const char *path,
                           uint64_t offset, uint64_t length,
                           const struct qcow_span_piece *ext, size_t n);
int qcow__io_span (struct qcow__io *io, const char *path, uint64_t offset,
                   uint64_t length);
/* Read LEN bytes at OFF; bytes past the end of the file read as zeros,
 * as QEMU's file driver does.  On error sets a message naming PATH. */
int qcow__io_pread (const struct qcow__io *io, const char *path, void *buf,
                    size_t len, uint64_t off);
/* Like qcow__io_pread, but the whole range must lie inside the file. */
int qcow__io_pread_strict (const struct qcow__io *io, const char *path,
                           const char *what, void *buf, size_t len,
                           uint64_t off);

/* lock.c: check and take QEMU's image locks on IO's file (PATH names it
 * in errors), as qemu-img convert does; QCOW_OPEN_FORCE_SHARE in FLAGS
 * as its -U.  The locks go with the descriptor. */
int qcow__lock_image (const struct qcow__io *io, const char *path,
                      unsigned flags);

/* header.c: parse and check the header, extensions, L1 table, snapshot
 * table and bitmap directory of L (whose io is open). */
int qcow__parse_qcow2 (struct qcow__layer *l);
void qcow__layer_free (struct qcow__layer *l);

/* bitmap.c */
int qcow__parse_bitmaps (struct qcow__layer *l, uint32_t nb,
                         uint64_t dir_size, uint64_t dir_offset);

/* l2cache.c: borrowed L2 tables.  qcow__l2_get returns a pointer valid
 * until the matching qcow__l2_put. */
struct qcow__l2cache *qcow__l2cache_new (void);
void qcow__l2cache_free (struct qcow__l2cache *c);
const uint8_t *qcow__l2_get (struct qcow_chain *c, struct qcow__layer *l,
                             uint64_t offset, void **token);
void qcow__l2_put (struct qcow_chain *c, void *token);

/* lookup.c: what layer L says about [OFF, OFF+MAXLEN), which must lie
 * below L->size.  R->len is at least 1 and at most MAXLEN. */
int qcow__layer_status (struct qcow_chain *c, struct qcow__layer *l,
                        uint64_t off, uint64_t maxlen, struct qcow__run *r);

/* decompress.c: decode the compressed cluster described by L2 entry L2E
 * into OUT (cluster_size bytes).  GUEST names the cluster in errors.
 * *ZCTX caches a zstd context across calls (free with
 * qcow__decompress_end). */
int qcow__decompress (struct qcow__layer *l, uint64_t l2e, uint64_t guest,
                      uint8_t *out, void **zctx);
void qcow__decompress_end (void *zctx);

/* confine.c: the directories (real paths) that backing and data files
 * may lie in or below. */
struct qcow__roots {
  char **dirs;
  size_t n, cap;
};
void qcow__roots_free (struct qcow__roots *r);
/* Add the directory of image PATH (as named, and as it really is). */
int qcow__roots_add_image (struct qcow__roots *r, const char *path);
/* Add directory DIR (an explicitly allowed one; must exist). */
int qcow__roots_add_dir (struct qcow__roots *r, const char *dir);
/* 0 if PATH (the file that NAME, stored in image WHO as its WHAT, leads
 * to) resolves inside one of R's directories; else -1 with a message
 * naming the real path and --allow-backing-dir. */
int qcow__roots_check (const struct qcow__roots *r, const char *who,
                       const char *what, const char *name, const char *path);

/* probe.c: set the error for image L whose first bytes are not a qcow2
 * header: what the file is, and what to do with it. */
void qcow__not_qcow2 (struct qcow__layer *l);
/* The same for PATH that is not a regular file or block device. */

/* paths.c */
bool qcow__has_protocol (const char *name);
char *qcow__path_combine (const char *base, const char *name);
bool qcow__same_member (const char *a, const char *b);

#endif
