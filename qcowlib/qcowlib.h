/* qcowlib.h -- read-only access to qcow2 images and their backing chains.
 *
 * A chain is opened once (qcow_open) and then read through the merged view
 * (qcow_pread, qcow_map) or layer by layer (qcow_layer_map,
 * qcow_bitmap_*).  Read results follow QEMU 7.2 exactly (see
 * docs/qcow2.md); what QEMU would follow but is unsafe (json: and
 * protocol backing names, absolute data-file names, loops) is refused.
 *
 * Threads: all read calls (qcow_pread, qcow_map, qcow_layer_map,
 * qcow_bitmap_ranges) may run on one handle from several threads at once.
 * qcow_open and qcow_close must not race with anything on the same handle.
 *
 * Errors: calls return -1 or NULL; qcow_errmsg() and qcow_errno() describe
 * the last failure of the calling thread.  Messages name the file:
 * "incr0.qcow2: L2 entry 5 of L2 table at 0x50000: unaligned offset".
 */
#ifndef QCOWLIB_H
#define QCOWLIB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#ifdef __cplusplus
extern "C" {
#endif

struct qcow_chain; /* opaque */

/* Flags for qcow_open_opts.flags. */
#define QCOW_OPEN_ALLOW_ABSOLUTE_DATA_FILE 0x1u /* follow absolute data-file names */
#define QCOW_OPEN_PROBE_BACKING_FORMAT     0x2u /* no format ext: probe qcow2 magic, else raw */
#define QCOW_OPEN_NO_BACKING               0x4u /* open the named image alone */
/* Read files that a running QEMU holds open for writing (qemu-img -U).
 * Without it every file of the chain is refused while QEMU holds its write
 * or resize lock, and QEMU's shared read locks are held on each until
 * qcow_close, so no QEMU can start writing it meanwhile (lock.c). */
#define QCOW_OPEN_FORCE_SHARE              0x8u

/* One image stored as a byte range of a bigger file (a member of an
 * uncompressed tar archive, read in place): OFFSET and LENGTH bound what
 * the image can see (LENGTH is its file size; reads past it give zeros,
 * never the bytes that follow), NAME is what it is called inside the
 * container (for messages and for matching backing names, which are
 * resolved lexically against it).  QEMU's image locks are taken on the
 * container file. */
struct qcow_span_piece {
  uint64_t offset, length; /* bytes of the image ... */
  uint64_t file_offset;    /* ... and where they lie in the container */
};
struct qcow_span {
  uint64_t offset, length;
  const char *name;
  /* A GNU sparse tar member: only these byte ranges of the image are
   * stored (ascending, not overlapping, inside LENGTH; file offsets
   * absolute); the rest reads as zeros, and OFFSET, where its stored data
   * starts, only tells it from other spans of the file.  NEXTENTS 0: one
   * piece at OFFSET. */
  const struct qcow_span_piece *extents;
  size_t nextents;
};

struct qcow_open_opts {
  unsigned flags;
  /* Explicit chain, oldest first (base ... top), overriding the backing
   * names stored in the images (--chain a,b,c).  chain_len 0 = follow the
   * images' own backing names from the top image given to qcow_open. */
  const char *const *chain;
  size_t chain_len;
  /* NULL, or chain_len entries: chain[i] is then the container file and
   * spans[i] the image's place in it.  Only with an explicit chain.
   * External data files are refused in a span (nothing names them). */
  const struct qcow_span *spans;
  size_t max_depth; /* 0 = default (64 layers) */
  /* Every backing file name (and relative data-file name) is resolved
   * with realpath and must lead into the directory of the top image
   * (the image's own, for a data file), or below it, or into one of
   * these directories (--allow-backing-dir); else EPERM. */
  const char *const *allowed_dirs;
  size_t allowed_dirs_len;
};

/* Open PATH (the top layer) and its backing chain.  OPTS may be NULL.  When
 * OPTS->chain is set, PATH is ignored (the top is the last chain entry),
 * and each layer that records a backing name must name the layer before it
 * (same file), a layer without one must have that layer's virtual size,
 * and only the first may be raw (EINVAL otherwise).
 * Returns NULL on error.  Free with qcow_close. */
extern struct qcow_chain *qcow_open (const char *path,
                                     const struct qcow_open_opts *opts);

/* Open one image held in memory (no backing file, no data file): for
 * fuzzing and unit tests.  BUF must outlive the handle. */
extern struct qcow_chain *qcow_open_memory (const void *buf, size_t len,
                                            unsigned flags);

extern void qcow_close (struct qcow_chain *c); /* NULL: no-op */

/* What PATH says about itself, without opening a chain or checking more
 * than the magic: for discovering chains in a folder.  A file that is
 * not qcow2 gives 0 with IS_QCOW2 false.  0 or -1. */
struct qcow_probe_info {
  bool is_qcow2;
  uint64_t file_size;
  uint64_t virtual_size; /* qcow2 only, as stored */
  char *backing_name;    /* as stored, or NULL; malloc'd */
};
extern int qcow_probe (const char *path, struct qcow_probe_info *out);
/* The same for the image at [OFFSET, OFFSET+LENGTH) of PATH (a tar
 * member); FILE_SIZE is then LENGTH. */
extern int qcow_probe_span (const char *path, uint64_t offset,
                            uint64_t length, struct qcow_probe_info *out);
/* The same for the image SPAN of PATH (its extents too). */
extern int qcow_probe_in_span (const char *path, const struct qcow_span *span,
                               struct qcow_probe_info *out);
extern void qcow_probe_free (struct qcow_probe_info *info);

/* Guest-visible size of the top layer (floored to 512 bytes, as QEMU). */
extern uint64_t qcow_virtual_size (const struct qcow_chain *c);

/* Number of layers: 1 = no backing file.  Depth 0 is the top. */
extern size_t qcow_depth (const struct qcow_chain *c);

struct qcow_layer_info {
  const char *path;           /* as opened (lexically resolved); borrowed */
  const char *format;         /* "qcow2" or "raw" */
  int version;                /* 2 or 3; 0 for raw */
  uint64_t virtual_size;      /* floored to 512 */
  uint32_t cluster_size;      /* 0 for raw */
  uint64_t incompatible_features, compatible_features, autoclear_features;
  int compression_type;       /* 0 deflate (zlib), 1 zstd */
  bool extended_l2;
  int refcount_bits;
  const char *backing_name;   /* as stored, or NULL */
  const char *backing_format; /* as stored, or NULL */
  const char *data_file;      /* as stored, or NULL */
  size_t nb_bitmaps;
  struct stat st;             /* fstat of the open file, for identity checks */
  /* A layer opened from a span (qcow_open_opts.spans): PATH is the span's
   * name, FILE the container file, and the image lies at FILE_OFFSET for
   * FILE_LENGTH bytes.  Otherwise FILE == PATH, FILE_OFFSET 0,
   * FILE_LENGTH the file size, and SPAN false. */
  const char *file;
  uint64_t file_offset, file_length;
  bool span;
};

/* Describe layer DEPTH (0 = top).  Strings are borrowed from the handle. */
extern int qcow_layer_info (const struct qcow_chain *c, size_t depth,
                            struct qcow_layer_info *out);

/* SHA-256 of layer DEPTH's metadata, read from the descriptor the chain
 * was opened with (a span: from its own bytes): for qcow2 the first
 * cluster (header, extensions, usually the backing name) followed by the
 * active L1 table as the header gives it (l1_size entries of 8 bytes at
 * l1_table_offset); for raw the first 64 KiB.  Each range is clipped to
 * the file (span) size at open.  Any rewrite that moves data changes it:
 * the "header-sha256" of docs/incremental-identity.md.  Computed on
 * request (it reads up to a 2 MiB cluster).  0 or -1. */
#define QCOW_HEADER_HASH_LEN 32
extern int qcow_layer_header_sha256 (const struct qcow_chain *c, size_t depth,
                                     uint8_t out[QCOW_HEADER_HASH_LEN]);

enum qcow_kind {
  QCOW_KIND_DATA,        /* data (possibly compressed) owned by `depth` */
  QCOW_KIND_ZERO,        /* zero flag owned by `depth`; for a raw layer
                          * also its host-file holes and the tail past
                          * EOF (raw sizes round up to 512), as qemu-img
                          * map reports them ("present", not "data") */
  QCOW_KIND_UNALLOCATED, /* no layer allocates it: reads as zeros */
};

struct qcow_extent {
  uint64_t start, length; /* guest byte range */
  size_t depth;           /* owning layer; see qemu-img map for UNALLOCATED */
  enum qcow_kind kind;
  bool compressed;        /* DATA only */
};

/* Callback for the map walks: return 0 to continue, -1 to stop (the walk
 * then returns -1 without touching the error state). */
typedef int (*qcow_extent_fn) (void *opaque, const struct qcow_extent *e);

/* Walk the merged view of [START, START+LENGTH) (clipped to the virtual
 * size) in order.  Adjacent extents with equal attributes are merged.
 * For UNALLOCATED ranges `depth` is what qemu-img map reports: the last
 * layer the lookup reached (the bottom layer, or the layer whose shorter
 * backing cut it off).  Metadata only: never reads guest data. */
extern int qcow_map (struct qcow_chain *c, uint64_t start, uint64_t length,
                     qcow_extent_fn fn, void *opaque);

/* Walk what layer DEPTH alone allocates (data or zero flag) in
 * [START, START+LENGTH) of its own guest range, ignoring all other layers:
 * the cheap "what did this incremental touch" walk.  Extents have kind DATA
 * or ZERO and depth = DEPTH.  Unallocated ranges are not reported. */
extern int qcow_layer_map (struct qcow_chain *c, size_t depth, uint64_t start,
                           uint64_t length, qcow_extent_fn fn, void *opaque);

/* Read LEN bytes of the merged disk at OFF.  Bytes at or past the virtual
 * size read as zeros.  Returns 0 or -1. */
extern int qcow_pread (struct qcow_chain *c, void *buf, size_t len,
                       uint64_t off);

struct qcow_bitmap_info {
  const char *name;      /* borrowed */
  uint64_t granularity;  /* bytes */
  bool in_use;           /* not saved cleanly: contents are stale */
  bool enabled;          /* the "auto" flag: records writes */
};

/* List the persistent bitmaps of layer DEPTH.  *OUT is borrowed from the
 * handle (valid until qcow_close); *N may be 0. */
extern int qcow_bitmap_list (struct qcow_chain *c, size_t depth,
                             const struct qcow_bitmap_info **out, size_t *n);

/* Report the dirty ranges of bitmap NAME of layer DEPTH, in order, merged,
 * clipped to that layer's virtual size.  FN gets extents with kind DATA.
 * An in_use bitmap is refused (EBUSY): its contents are stale.  No bitmap
 * of that name: ENOENT.  Bitmaps of an image whose autoclear bit 0 is
 * clear are not listed at all (QEMU ignores them too). */
extern int qcow_bitmap_ranges (struct qcow_chain *c, size_t depth,
                               const char *name, qcow_extent_fn fn,
                               void *opaque);

/* The calling thread's last error: a message valid until its next qcow_*
 * call, and an errno value: EINVAL (bad argument), ENOTSUP (feature not
 * supported), EBADMSG (corrupt image), ELOOP (backing loop or too deep),
 * EPERM (refused by a safety rule), ENOENT, EIO, ENOMEM, EBUSY (a bitmap
 * in use; an image locked by QEMU). */
extern const char *qcow_errmsg (void);
extern int qcow_errno (void);

#ifdef __cplusplus
}
#endif
#endif /* QCOWLIB_H */
