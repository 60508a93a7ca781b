/* chain.c -- opening a chain: the top image, its backing files (or an
 * explicit --chain list), data files; and the handle accessors.
 *
 * Safety rules beyond QEMU: json:/protocol backing names are refused (QEMU
 * would open them: any host file or URL); a backing file without a
 * recorded format is refused unless the caller allows probing; loops are
 * found by device/inode and the depth is bounded (QEMU recurses without
 * bound on a self-referencing image); backing files must resolve inside
 * the top image's directory or an allowed one (confine.c); data-file names
 * must be relative to the image's own directory and must not climb out of
 * it, through ".." or a symlink (QEMU uses the process CWD and follows
 * absolute names).
 *
 * An explicit chain (--chain) is checked against what its layers record:
 * a layer that names a backing file must name the layer given before it
 * (same device and inode), so a wrong order or a missing layer is refused
 * instead of read as a wrong disk. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "byteorder.h"
#include "qcow-internal.h"
#include "qcow2-format.h"

enum layer_format { FMT_QCOW2, FMT_RAW, FMT_PROBE };

static struct qcow__layer *
layer_new (const char *path)
{
  struct qcow__layer *l = calloc (1, sizeof *l);

  if (!l) {
    qcow__set_error (ENOMEM, "%s: out of memory", path);
    return NULL;
  }
  l->io.fd = -1;
  l->dio.fd = -1;
  l->path = strdup (path);
  if (!l->path) {
    free (l);
    qcow__set_error (ENOMEM, "%s: out of memory", path);
    return NULL;
  }
  return l;
}

static bool
has_dotdot (const char *name)
{
  const char *p = name;

  while (*p) {
    size_t n = strcspn (p, "/");
    if (n == 2 && p[0] == '.' && p[1] == '.')
      return true;
    p += n;
    while (*p == '/')
      p++;
  }
  return false;
}

static int
open_data_file (struct qcow__layer *l, unsigned flags,
                const struct qcow__roots *allowed)
{
  const char *name = l->data_file_name;
  struct stat st;

  if (l->io.mem) {
    qcow__set_error (EPERM,
                     "%s: external data file '%s' not available for an "
                     "in-memory image",
                     l->path, name);
    return -1;
  }
  if (qcow__has_protocol (name)) {
    qcow__set_error (EPERM, "%s: refusing protocol data file name '%s'",
                     l->path, name);
    return -1;
  }
  if (name[0] == '/' && !(flags & QCOW_OPEN_ALLOW_ABSOLUTE_DATA_FILE)) {
    qcow__set_error (EPERM,
                     "%s: refusing absolute data file name '%s' (allow it "
                     "explicitly with --allow-absolute-data-file)",
                     l->path, name);
    return -1;
  }
  if (name[0] != '/' && has_dotdot (name)) {
    qcow__set_error (EPERM,
                     "%s: refusing data file name '%s' outside the image's "
                     "directory",
                     l->path, name);
    return -1;
  }
  l->data_path = qcow__path_combine (l->path, name);
  if (!l->data_path) {
    qcow__set_error (ENOMEM, "%s: out of memory", l->path);
    return -1;
  }
  /* A relative name without ".." can still leave the directory through a
   * symlink ("sub/x" with sub -> /): the real path must stay inside.  An
   * absolute name the user allowed is followed as it is. */
  if (name[0] != '/') {
    struct qcow__roots own = { 0 };
    size_t i;
    int r = qcow__roots_add_image (&own, l->path);
    for (i = 0; r == 0 && allowed && i < allowed->n; i++)
      r = qcow__roots_add_dir (&own, allowed->dirs[i]);
    if (r == 0)
      r = qcow__roots_check (&own, l->path, "data file", name, l->data_path);
    qcow__roots_free (&own);
    if (r == -1)
      return -1;
  }
  if (qcow__io_open (&l->dio, l->data_path, &st) == -1) {
    int e = qcow_errno ();
    qcow__set_error (e, "%s: data file '%s': %s", l->path, l->data_path,
                     strerror (e));
    return -1;
  }
  if (qcow__lock_image (&l->dio, l->data_path, flags) == -1)
    return -1;
  return 0;
}

/* Open one layer file.  FMT_PROBE: qcow2 magic means qcow2, else raw. */
static struct qcow__layer *
layer_open (const char *path, enum layer_format fmt, unsigned flags,
            const struct qcow__roots *allowed, const struct qcow_span *span)
{
  struct qcow__layer *l = layer_new (span ? span->name : path);
  uint8_t magic[4];

  if (!l)
    return NULL;
  if (span && !(l->file = strdup (path))) {
    qcow__set_error (ENOMEM, "%s: out of memory", path);
    goto err;
  }
  if (qcow__io_open (&l->io, path, &l->st) == -1)
    goto err;
  /* Locks belong to the file: a span's are the container's. */
  if (qcow__lock_image (&l->io, path, flags) == -1)
    goto err;
  if (span && (span->nextents
                   ? qcow__io_span_extents (&l->io, path, span->offset,
                                            span->length,
                                            span->extents, span->nextents)
                   : qcow__io_span (&l->io, path, span->offset,
                                    span->length)) == -1)
    goto err;
  path = l->path;
  if (fmt == FMT_PROBE) {
    if (qcow__io_pread (&l->io, path, magic, sizeof magic, 0) == -1)
      goto err;
    fmt = l->io.size >= 4 && load_be32 (magic) == QCOW2_MAGIC ? FMT_QCOW2
                                                              : FMT_RAW;
  }
  if (fmt == FMT_RAW) {
    /* QEMU rounds a raw file's size up to whole sectors; the tail reads as
     * zeros (past EOF). */
    l->raw = true;
    if (l->io.size > (uint64_t) INT64_MAX - 511) {
      qcow__set_error (EBADMSG, "%s: file too large", path);
      goto err;
    }
    l->size = (l->io.size + 511) & ~(uint64_t) 511;
    l->dio = l->io;
    return l;
  }
  if (qcow__parse_qcow2 (l) == -1)
    goto err;
  if (l->has_data_file && span) {
    qcow__set_error (EPERM,
                     "%s: has an external data file, which cannot come "
                     "from inside %s; unpack it",
                     l->path, l->file);
    goto err;
  }
  if (l->has_data_file) {
    if (open_data_file (l, flags, allowed) == -1)
      goto err;
  }
  else
    l->dio = l->io;
  return l;
err:
  qcow__layer_free (l);
  return NULL;
}

static int
chain_add (struct qcow_chain *c, struct qcow__layer *l, size_t max)
{
  size_t i;

  /* Spans of one file are one layer only when they start alike. */
  for (i = 0; i < c->n; i++)
    if (c->layers[i]->st.st_dev == l->st.st_dev &&
        c->layers[i]->st.st_ino == l->st.st_ino &&
        c->layers[i]->io.base == l->io.base) {
      qcow__set_error (ELOOP, "%s: backing loop: %s is already in the chain",
                       c->layers[c->n - 1]->path, l->path);
      return -1;
    }
  if (c->n >= max) {
    qcow__set_error (ELOOP, "%s: backing chain longer than %zu layers",
                     c->layers[c->n - 1]->path, max);
    return -1;
  }
  l->depth = c->n;
  c->layers[c->n++] = l;
  return 0;
}

static struct qcow_chain *
chain_new (size_t max)
{
  struct qcow_chain *c = calloc (1, sizeof *c);

  if (c)
    c->layers = calloc (max, sizeof *c->layers);
  if (c && c->layers)
    c->l2cache = qcow__l2cache_new ();
  if (!c || !c->layers || !c->l2cache) {
    if (c)
      free (c->layers);
    free (c);
    qcow__set_error (ENOMEM, "qcow_open: out of memory");
    return NULL;
  }
  return c;
}

/* Open the backing file named by L (the current bottom of C). */
static struct qcow__layer *
open_backing (struct qcow_chain *c, struct qcow__layer *l, unsigned flags,
              size_t max, const struct qcow__roots *roots,
              const struct qcow__roots *allowed)
{
  const char *name = l->backing_name;
  enum layer_format fmt;
  struct qcow__layer *b;
  char *path;

  if (qcow__has_protocol (name)) {
    qcow__set_error (EPERM,
                     "%s: refusing backing file name '%.200s': json: and "
                     "protocol names are not allowed",
                     l->path, name);
    return NULL;
  }
  if (!l->backing_format) {
    if (!(flags & QCOW_OPEN_PROBE_BACKING_FORMAT)) {
      qcow__set_error (EINVAL,
                       "%s: backing format not recorded for '%s'; use "
                       "--chain or --probe-backing-format",
                       l->path, name);
      return NULL;
    }
    fmt = FMT_PROBE;
  }
  else if (strcmp (l->backing_format, "qcow2") == 0)
    fmt = FMT_QCOW2;
  else if (strcmp (l->backing_format, "raw") == 0)
    fmt = FMT_RAW;
  else {
    qcow__set_error (ENOTSUP, "%s: unsupported backing format '%s'",
                     l->path, l->backing_format);
    return NULL;
  }
  if (c->n >= max) {
    qcow__set_error (ELOOP, "%s: backing chain longer than %zu layers",
                     l->path, max);
    return NULL;
  }
  path = qcow__path_combine (l->path, name);
  if (!path) {
    qcow__set_error (ENOMEM, "%s: out of memory", l->path);
    return NULL;
  }
  /* Checked before the open: a FIFO or device outside is never touched.
   * (Whoever can swap a symlink between this check and the open can
   * write the images themselves.) */
  if (qcow__roots_check (roots, l->path, "backing file", name, path) == -1) {
    free (path);
    return NULL;
  }
  b = layer_open (path, fmt, flags, allowed, NULL);
  if (!b) {
    int e = qcow_errno ();
    if (e == ENOENT)
      qcow__set_error (ENOENT, "%s: backing file %s: %s", l->path, path,
                       strerror (e));
  }
  free (path);
  return b;
}

/* Layer L (given with --chain right after PREV, or first when PREV is
 * NULL) must fit below it: a recorded backing name must lead to PREV
 * itself; without one (qmpbackup's INC files) PREV must be a layer of the
 * same disk as far as the headers can tell, i.e. of the same size. */
static int
check_chain_link (const struct qcow__layer *prev, const struct qcow__layer *l)
{
  const char *name = l->backing_name;
  struct stat st;
  char *path;
  bool same, missing;

  if (!name) {
    if (prev && prev->size != l->size) {
      qcow__set_error (EINVAL,
                       "%s: has no backing file name and a virtual size of "
                       "%" PRIu64 " bytes, but --chain gives %s (%" PRIu64
                       " bytes) before it: layers without a backing name "
                       "must be of one size (if the disk was resized, record "
                       "the backing file: qemu-img rebase -u -b %s -F %s %s)",
                       l->path, l->size, prev->path, prev->size, prev->path,
                       prev->raw ? "raw" : "qcow2", l->path);
      return -1;
    }
    return 0;
  }
  if (!prev) {
    qcow__set_error (EINVAL,
                     "%s: its backing file is %.200s, but it comes first in "
                     "--chain: give the layers below it too, oldest first",
                     l->path, name);
    return -1;
  }
  same = missing = false;
  if (l->file || prev->file) {
    /* Spans: the name, resolved against the span's own name as QEMU
     * would against a file's, must be the span before it. */
    path = l->file && prev->file && !qcow__has_protocol (name)
               ? qcow__path_combine (l->path, name)
               : NULL;
    same = path && qcow__same_member (path, prev->path);
    free (path);
    if (!same) {
      qcow__set_error (EINVAL,
                       "%s: its backing file is %.200s, but the chain "
                       "gives %s before it (give the chain oldest first, "
                       "with no layer left out)",
                       l->path, name, prev->path);
      return -1;
    }
    goto format;
  }
  path = qcow__has_protocol (name) ? NULL : qcow__path_combine (l->path, name);
  if (path && stat (path, &st) == 0)
    same = st.st_dev == prev->st.st_dev && st.st_ino == prev->st.st_ino;
  else
    missing = path && (errno == ENOENT || errno == ENOTDIR);
  free (path);
  if (missing) {
    /* A moved chain (absolute names) looks like this too, but a gap
     * whose missing layer was deleted does as well: no guessing. */
    qcow__set_error (EINVAL,
                     "%s: its backing file %.200s does not exist, and "
                     "--chain gives %s before it; if that is the same layer "
                     "moved, record its name first (qemu-img rebase -u -b "
                     "%s -F %s %s)",
                     l->path, name, prev->path, prev->path,
                     prev->raw ? "raw" : "qcow2", l->path);
    return -1;
  }
  if (!same) {
    qcow__set_error (EINVAL,
                     "%s: its backing file is %.200s, but --chain gives %s "
                     "before it (give the chain oldest first, with no layer "
                     "left out)",
                     l->path, name, prev->path);
    return -1;
  }
format:
  if (l->backing_format
      && strcmp (l->backing_format, prev->raw ? "raw" : "qcow2") != 0) {
    qcow__set_error (EINVAL,
                     "%s: records its backing file %s as format %s, but it "
                     "is %s",
                     l->path, prev->path, l->backing_format,
                     prev->raw ? "raw" : "qcow2");
    return -1;
  }
  return 0;
}

/* Open an explicit chain, oldest first in OPTS->chain.  Stored backing
 * names are never followed, only checked (check_chain_link); the top is
 * not followed further.  Only the base may be raw: a raw file has no
 * unallocated areas, so nothing below it would ever be read. */
static struct qcow_chain *
open_explicit (const struct qcow_open_opts *opts, size_t max,
               const struct qcow__roots *allowed)
{
  unsigned flags = opts->flags;
  struct qcow_chain *c;
  struct qcow__layer *l;
  size_t i;

  if (!opts->chain || opts->chain_len > max) {
    qcow__set_error (opts->chain ? ELOOP : EINVAL,
                     "qcow_open: chain of %zu layers (at most %zu)",
                     opts->chain_len, max);
    return NULL;
  }
  c = chain_new (max);
  if (!c)
    return NULL;
  for (i = opts->chain_len; i-- > 0;) {
    if (opts->spans && !opts->spans[i].name) {
      qcow__set_error (EINVAL, "qcow_open: span %zu has no name", i);
      goto err;
    }
    l = layer_open (opts->chain[i],
                    i == 0 && opts->chain_len > 1 ? FMT_PROBE : FMT_QCOW2,
                    flags, allowed, opts->spans ? &opts->spans[i] : NULL);
    if (!l)
      goto err;
    if (c->n == 0) {
      l->depth = 0;
      c->layers[c->n++] = l;
    }
    else if (chain_add (c, l, max) == -1) {
      qcow__layer_free (l);
      goto err;
    }
  }
  /* layers[n-1] is the base (chain[0]). */
  for (i = c->n; i-- > 0;)
    if (check_chain_link (i + 1 < c->n ? c->layers[i + 1] : NULL,
                          c->layers[i])
        == -1)
      goto err;
  return c;
err:
  qcow_close (c);
  return NULL;
}

struct qcow_chain *
qcow_open (const char *path, const struct qcow_open_opts *opts)
{
  unsigned flags = opts ? opts->flags : 0;
  size_t max = opts && opts->max_depth ? opts->max_depth
                                       : QCOW_DEFAULT_MAX_DEPTH;
  struct qcow__roots allowed = { 0 }, roots = { 0 };
  struct qcow_chain *c = NULL;
  struct qcow__layer *l;
  size_t i;

  qcow__clear_error ();
  /* Each layer holds a descriptor and its L1 table: a caller's larger
   * limit is capped to something a process can actually hold. */
  if (max > QCOW_MAX_DEPTH_LIMIT)
    max = QCOW_MAX_DEPTH_LIMIT;
  for (i = 0; opts && i < opts->allowed_dirs_len; i++)
    if (qcow__roots_add_dir (&allowed, opts->allowed_dirs[i]) == -1)
      goto out;
  if (opts && opts->chain_len) {
    c = open_explicit (opts, max, &allowed);
    goto out;
  }
  if (opts && opts->spans) {
    qcow__set_error (EINVAL, "qcow_open: spans need an explicit chain");
    goto out;
  }
  if (!path) {
    qcow__set_error (EINVAL, "qcow_open: no image given");
    goto out;
  }
  c = chain_new (max);
  if (!c)
    goto out;
  l = layer_open (path, FMT_QCOW2, flags, &allowed, NULL);
  if (!l)
    goto err;
  c->layers[c->n++] = l;
  if (!(flags & QCOW_OPEN_NO_BACKING) && l->backing_name) {
    if (qcow__roots_add_image (&roots, path) == -1)
      goto err;
    for (i = 0; i < allowed.n; i++)
      if (qcow__roots_add_dir (&roots, allowed.dirs[i]) == -1)
        goto err;
  }
  while (!(flags & QCOW_OPEN_NO_BACKING) && l->backing_name) {
    struct qcow__layer *b = open_backing (c, l, flags, max, &roots, &allowed);
    if (!b)
      goto err;
    if (chain_add (c, b, max) == -1) {
      qcow__layer_free (b);
      goto err;
    }
    l = b;
  }
  goto out;
err:
  qcow_close (c);
  c = NULL;
out:
  qcow__roots_free (&allowed);
  qcow__roots_free (&roots);
  return c;
}

struct qcow_chain *
qcow_open_memory (const void *buf, size_t len, unsigned flags)
{
  struct qcow_chain *c;
  struct qcow__layer *l;

  qcow__clear_error ();
  if (!buf && len) {
    qcow__set_error (EINVAL, "qcow_open_memory: invalid argument");
    return NULL;
  }
  c = chain_new (1);
  if (!c)
    return NULL;
  l = layer_new ("<memory>");
  if (!l)
    goto err;
  l->io.mem = buf ? buf : (const void *) "";
  l->io.size = len;
  l->st.st_size = (off_t) len;
  c->layers[c->n++] = l;
  if (qcow__parse_qcow2 (l) == -1)
    goto err;
  if (l->has_data_file) {
    open_data_file (l, flags, NULL);
    goto err;
  }
  l->dio = l->io;
  return c;
err:
  qcow_close (c);
  return NULL;
}

void
qcow_close (struct qcow_chain *c)
{
  size_t i;

  if (!c)
    return;
  for (i = 0; i < c->n; i++)
    qcow__layer_free (c->layers[i]);
  free (c->layers);
  qcow__l2cache_free (c->l2cache);
  free (c);
}

uint64_t
qcow_virtual_size (const struct qcow_chain *c)
{
  return c && c->n ? c->layers[0]->size : 0;
}

size_t
qcow_depth (const struct qcow_chain *c)
{
  return c ? c->n : 0;
}

int
qcow_layer_info (const struct qcow_chain *c, size_t depth,
                 struct qcow_layer_info *out)
{
  const struct qcow__layer *l;

  if (!c || !out || depth >= c->n) {
    qcow__set_error (EINVAL, "qcow_layer_info: invalid argument");
    return -1;
  }
  l = c->layers[depth];
  memset (out, 0, sizeof *out);
  out->path = l->path;
  out->format = l->raw ? "raw" : "qcow2";
  out->version = l->raw ? 0 : l->version;
  out->virtual_size = l->size;
  out->cluster_size = l->raw ? 0 : (uint32_t) l->cluster_size;
  out->incompatible_features = l->incompat;
  out->compatible_features = l->compat;
  out->autoclear_features = l->autoclear;
  out->compression_type = l->compression_type;
  out->extended_l2 = l->extended_l2;
  out->refcount_bits = l->raw ? 0 : 1 << l->refcount_order;
  out->backing_name = l->backing_name;
  out->backing_format = l->backing_format;
  out->data_file = l->data_file_name;
  out->nb_bitmaps = l->nb_bitmaps;
  out->st = l->st;
  out->span = l->file != NULL;
  out->file = l->file ? l->file : l->path;
  out->file_offset = l->io.base;
  out->file_length = l->io.size;
  return 0;
}
