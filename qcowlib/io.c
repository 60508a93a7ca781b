/* io.c -- positioned reads from an image file or a memory buffer.
 *
 * Only pread(2), never lseek+read, so several threads can read one handle.
 * Reads past the end of the file return zeros: QEMU's file driver
 * zero-fills short reads (block/file-posix.c), and qemu-img convert of an
 * image whose data cluster lies partly past EOF yields zeros there, so we
 * must too.  Metadata (L1, L2, bitmap tables) is held to the stricter
 * qcow__io_pread_strict. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checked-overflow.h"
#include "qcow-internal.h"

/* What an image path that is no file is (probe.c names the non-qcow2
 * files). */
static void
qcow__not_a_file (const char *path, const struct stat *st)
{
  if (S_ISDIR (st->st_mode))
    qcow__set_error (EISDIR,
                     "%s: a directory, not an image: give the image file "
                     "in it (qmpbackup keeps one directory per disk)",
                     path);
  else
    qcow__set_error (EINVAL, "%s: not a regular file or block device", path);
}

int
qcow__io_open (struct qcow__io *io, const char *path, struct stat *st)
{
  int fd, flags;

  /* O_NONBLOCK so that a FIFO named as a backing file cannot hang us
   * at open; we refuse anything but regular files and block devices. */
  fd = open (path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd == -1) {
    qcow__set_error (errno, "%s: %s", path, strerror (errno));
    return -1;
  }
  if (fstat (fd, st) == -1) {
    qcow__set_error (errno, "%s: %s", path, strerror (errno));
    goto err;
  }
  if (!S_ISREG (st->st_mode) && !S_ISBLK (st->st_mode)) {
    qcow__not_a_file (path, st);
    goto err;
  }
  flags = fcntl (fd, F_GETFL);
  if (flags != -1)
    fcntl (fd, F_SETFL, flags & ~O_NONBLOCK);
  io->fd = fd;
  io->mem = NULL;
  io->base = 0;
  io->span = false;
  io->ext = NULL;
  io->next = 0;
  if (S_ISBLK (st->st_mode)) {
    off_t end = lseek (fd, 0, SEEK_END); /* at open only: no race yet */
    io->size = end < 0 ? 0 : (uint64_t) end;
  }
  else
    io->size = (uint64_t) st->st_size;
  return 0;
err:
  close (fd);
  return -1;
}

int
qcow__io_span (struct qcow__io *io, const char *path, uint64_t offset,
               uint64_t length)
{
  uint64_t end;

  if (io->fd < 0 || ADD_OVERFLOW (offset, length, &end) || end > io->size
      || end > (uint64_t) INT64_MAX) {
    qcow__set_error (EINVAL,
                     "%s: bytes %llu..%llu lie past the end of the file "
                     "(%llu bytes)",
                     path, (unsigned long long) offset,
                     (unsigned long long) offset + length,
                     (unsigned long long) io->size);
    return -1;
  }
  io->base = offset;
  io->size = length;
  io->span = true;
  return 0;
}

int
qcow__io_span_extents (struct qcow__io *io, const char *path,
                       uint64_t offset, uint64_t length,
                       const struct qcow_span_piece *ext, size_t n)
{
  uint64_t prev = 0, fend, lend;

  for (size_t i = 0; i < n; i++)
    if (ext[i].offset < prev || ADD_OVERFLOW (ext[i].offset, ext[i].length,
                                              &lend)
        || lend > length
        || ADD_OVERFLOW (ext[i].file_offset, ext[i].length, &fend)
        || fend > io->size || fend > (uint64_t) INT64_MAX) {
      qcow__set_error (EINVAL, "%s: sparse piece %zu lies outside the "
                       "image or the file", path, i);
      return -1;
    }
    else
      prev = lend;
  if (n && !(io->ext = malloc (n * sizeof *io->ext))) {
    qcow__set_error (ENOMEM, "%s: out of memory", path);
    return -1;
  }
  if (n)
    memcpy (io->ext, ext, n * sizeof *ext);
  io->next = n;
  io->base = offset; /* not for reads: tells spans of one file apart */
  io->size = length;
  io->span = true;
  return 0;
}

/* A read of a sparse span: the stored pieces from the file, zeros
 * between them. */
static int
pread_extents (const struct qcow__io *io, const char *path, uint8_t *p,
               size_t len, uint64_t off)
{
  size_t lo = 0, hi = io->next;

  memset (p, 0, len);
  /* The first piece that ends after OFF. */
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (io->ext[mid].offset + io->ext[mid].length <= off)
      lo = mid + 1;
    else
      hi = mid;
  }
  for (; lo < io->next && io->ext[lo].offset < off + len; lo++) {
    const struct qcow_span_piece *x = &io->ext[lo];
    uint64_t from = x->offset > off ? x->offset : off;
    uint64_t to = x->offset + x->length < off + len ? x->offset + x->length
                                                     : off + len;
    uint8_t *q = p + (from - off);
    uint64_t at = x->file_offset + (from - x->offset);
    size_t n = (size_t) (to - from);
    while (n > 0) {
      ssize_t r = pread (io->fd, q, n, (off_t) at);
      if (r == -1 && errno == EINTR)
        continue;
      if (r <= 0) {
        qcow__set_error (EIO, "%s: read at 0x%llx: %s", path,
                         (unsigned long long) at,
                         r == 0 ? "the file ends early" : strerror (errno));
        return -1;
      }
      q += r;
      n -= (size_t) r;
      at += (uint64_t) r;
    }
  }
  return 0;
}

void
qcow__io_close (struct qcow__io *io)
{
  free (io->ext);
  io->ext = NULL;
  io->next = 0;
  if (io->fd >= 0)
    close (io->fd);
  io->fd = -1;
}

int
qcow__io_pread (const struct qcow__io *io, const char *path, void *buf,
                size_t len, uint64_t off)
{
  uint8_t *p = buf;

  if (io->mem) {
    size_t n = 0;
    if (off < io->size)
      n = io->size - off < len ? (size_t) (io->size - off) : len;
    if (n)
      memcpy (p, io->mem + off, n);
    memset (p + n, 0, len - n);
    return 0;
  }
  if (io->span && io->ext) {
    /* A sparse span: past its length zeros, as below. */
    size_t n = 0;
    if (off < io->size)
      n = io->size - off < len ? (size_t) (io->size - off) : len;
    memset (p + n, 0, len - n);
    return pread_extents (io, path, p, n, off);
  }
  if (io->span) {
    /* A span ends at its length: what follows belongs to someone else
     * (the next tar member) and must read as zeros, like EOF. */
    size_t n = 0;
    if (off < io->size)
      n = io->size - off < len ? (size_t) (io->size - off) : len;
    memset (p + n, 0, len - n);
    len = n;
    off += io->base;
  }
  while (len > 0) {
    ssize_t r;
    if (off > (uint64_t) INT64_MAX - len) {
      /* Nothing can be stored there: past EOF, reads as zeros. */
      memset (p, 0, len);
      return 0;
    }
    r = pread (io->fd, p, len, (off_t) off);
    if (r == -1) {
      if (errno == EINTR)
        continue;
      qcow__set_error (EIO, "%s: read at 0x%llx: %s", path,
                       (unsigned long long) off, strerror (errno));
      return -1;
    }
    if (r == 0) {
      memset (p, 0, len);
      return 0;
    }
    p += r;
    len -= (size_t) r;
    off += (uint64_t) r;
  }
  return 0;
}

int
qcow__io_pread_strict (const struct qcow__io *io, const char *path,
                       const char *what, void *buf, size_t len, uint64_t off)
{
  uint64_t end;

  if (ADD_OVERFLOW (off, (uint64_t) len, &end) || end > io->size) {
    qcow__set_error (EBADMSG,
                     "%s: %s at 0x%llx (%zu bytes) lies past the end of the "
                     "file (%llu bytes)",
                     path, what, (unsigned long long) off, len,
                     (unsigned long long) io->size);
    return -1;
  }
  return qcow__io_pread (io, path, buf, len, off);
}
