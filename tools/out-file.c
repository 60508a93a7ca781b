/* out-file.c -- where restore and export write a disk, so that no file is
 * lost and no old byte survives where the disk has zeros.
 *
 * OUT is looked at before anything is written (symlinks followed to their
 * final target, which gets the same rules):
 *  - missing: the data goes to ".NAME.XXXXXX" beside it (same file system,
 *    so rename(2) is atomic), created 0600 whatever the umask (it holds a
 *    disk), and is renamed by out_file_commit; zero ranges are holes.
 *  - a regular file: refused unless FORCE; then replaced the same way, the
 *    new file taking the old one's owner, group and mode.  A symlink
 *    survives: the temporary sits beside the target and replaces it.
 *  - a block device: refused unless FORCE (it holds data), and when smaller
 *    than the disk.  Written in place from offset 0, zero ranges zeroed
 *    with BLKZEROOUT (after BLKDISCARD with DISCARD) or written as zeros,
 *    fsync'd at the end.  Bytes past the disk's size are left alone.
 *  - a FIFO or character device (/dev/null): a stream, zeros written.
 *  - a directory, socket or anything else: refused.
 * "-" is stdout.  A pipe, a terminal or an O_APPEND file is a stream.  A
 * seekable regular file (`>file`, `1<>file`, systemd's
 * StandardOutput=file:) gets the disk at its current offset BASE: zero
 * ranges inside the file's old contents are punched (fallocate
 * PUNCH_HOLE|KEEP_SIZE) or written as zeros, so they read back as zeros.
 * The file ends at least at BASE + disk size and is never shortened: a
 * user who wrote `1<>file` asked for the disk at that offset, not for the
 * loss of what follows it (`>file` truncates anyway).
 *
 * SIGINT, SIGTERM and SIGHUP (unless ignored) remove every temporary still
 * open, print one line ("qcow2pbs: CMD: interrupted; ...") and exit with
 * 128 + the signal. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

/* Zero runs shorter than this are written, not skipped: file systems
 * allocate whole blocks anyway, and qemu-img convert's default -S is 4k. */
#define HOLE_GRANULE 4096
/* Zero runs inside old data (stdout file, block device) shorter than this
 * are written: cheaper than a fallocate or ioctl each. */
#define ZERO_CALL_MIN ((uint64_t) 64 << 10)
/* Written bytes handed to writeback at a time (see start_writeback). */
#define WRITEBACK_STEP ((uint64_t) 8 << 20)

static const char zeros[65536];

/* Temporaries the signal handler removes, and the line it prints.  Fixed
 * tables because the handler may only call async-signal-safe functions; a
 * command has at most a few output files open. */
#define MAX_TEMPS 8
static char *volatile temps[MAX_TEMPS];
static char interrupt_line[PATH_MAX + 128];
static volatile size_t interrupt_len;
static bool handler_installed;

static void
on_signal (int sig)
{
  size_t i;

  for (i = 0; i < MAX_TEMPS; i++)
    if (temps[i])
      unlink (temps[i]);
  if (interrupt_len)
    (void) !write (STDERR_FILENO, interrupt_line, interrupt_len);
  _exit (128 + sig);
}

static int
install_handler (void)
{
  static const int sigs[] = { SIGINT, SIGTERM, SIGHUP };
  struct sigaction sa;
  size_t i;

  if (handler_installed)
    return 0;
  memset (&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset (&sa.sa_mask);
  for (i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
    sigaddset (&sa.sa_mask, sigs[i]);
  for (i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
    struct sigaction prev;
    /* A signal the caller ignores (nohup, background job) stays
     * ignored. */
    if (sigaction (sigs[i], NULL, &prev) == 0 && prev.sa_handler == SIG_IGN)
      continue;
    if (sigaction (sigs[i], &sa, NULL) == -1)
      return -1;
  }
  handler_installed = true;
  return 0;
}

static int
register_temp (char *path)
{
  size_t i;

  for (i = 0; i < MAX_TEMPS; i++)
    if (!temps[i]) {
      temps[i] = path;
      return 0;
    }
  errno = EMFILE;
  return -1;
}

static void
unregister_temp (const char *path)
{
  size_t i;

  for (i = 0; i < MAX_TEMPS; i++)
    if (temps[i] == path)
      temps[i] = NULL;
}

static void
set_interrupt_line (const char *cmd, const char *shown, const char *what)
{
  sigset_t block, old;
  int n;

  sigemptyset (&block);
  sigaddset (&block, SIGINT);
  sigaddset (&block, SIGTERM);
  sigaddset (&block, SIGHUP);
  pthread_sigmask (SIG_BLOCK, &block, &old);
  n = snprintf (interrupt_line, sizeof interrupt_line,
                "qcow2pbs: %s: interrupted; %s %s\n", cmd, shown, what);
  interrupt_len = n > 0 && (size_t) n < sizeof interrupt_line ? (size_t) n
                                                              : 0;
  pthread_sigmask (SIG_SETMASK, &old, NULL);
}

int
out_file_catch_signals (const char *cmd, const char *path)
{
  if (install_handler () == -1)
    return -1;
  if (strcmp (path, "-") == 0)
    set_interrupt_line (cmd, "standard output", "was not written");
  else
    set_interrupt_line (cmd, path, "was not written");
  return 0;
}

__attribute__ ((format (printf, 2, 3))) static int
set_err (struct out_file *f, const char *fmt, ...)
{
  va_list ap;
  int e = errno;

  va_start (ap, fmt);
  vsnprintf (f->err, sizeof f->err, fmt, ap);
  va_end (ap);
  errno = e;
  return -1;
}

const char *
out_file_error (const struct out_file *f)
{
  return f->err[0] ? f->err : "output error";
}

/* ".NAME.XXXXXX" beside PATH; NAME cut so that the temporary's name fits
 * NAME_MAX when OUT's own name is long. */
static char *
temp_name (const char *path)
{
  const char *slash = strrchr (path, '/');
  size_t dirlen = slash ? (size_t) (slash - path) + 1 : 0;
  const char *base = path + dirlen;
  size_t blen = strlen (base);
  size_t len, room = NAME_MAX - 8; /* '.' + ".XXXXXX" */
  char *t;

  if (blen > room)
    blen = room;
  len = dirlen + 1 + blen + 8;
  t = malloc (len);
  if (!t)
    return NULL;
  memcpy (t, path, dirlen);
  snprintf (t + dirlen, len - dirlen, ".%.*s.XXXXXX", (int) blen, base);
  return t;
}

/* Follow PATH while it is a symlink; the malloc'd result names something
 * that is not a symlink, or nothing yet (a dangling link's target). */
static char *
resolve_links (struct out_file *f, const char *path)
{
  char *p = strdup (path), *next;
  char target[PATH_MAX];
  struct stat st;
  ssize_t n;
  int hops;

  for (hops = 0; p; hops++) {
    if (lstat (p, &st) == -1 || !S_ISLNK (st.st_mode))
      return p;
    if (hops == 40) {
      errno = ELOOP;
      set_err (f, "too many levels of symbolic links");
      free (p);
      return NULL;
    }
    n = readlink (p, target, sizeof target - 1);
    if (n == -1) {
      set_err (f, "cannot read the symlink: %s", strerror (errno));
      free (p);
      return NULL;
    }
    target[n] = '\0';
    if (target[0] == '/' || !strchr (p, '/'))
      next = strdup (target);
    else {
      size_t dirlen = (size_t) (strrchr (p, '/') - p) + 1;
      next = malloc (dirlen + (size_t) n + 1);
      if (next) {
        memcpy (next, p, dirlen);
        memcpy (next + dirlen, target, (size_t) n + 1);
      }
    }
    free (p);
    p = next;
  }
  set_err (f, "out of memory");
  return NULL;
}

static void
dir_of (const char *path, char *buf, size_t len)
{
  const char *slash = strrchr (path, '/');

  if (!slash)
    snprintf (buf, len, ".");
  else if (slash == path)
    snprintf (buf, len, "/");
  else
    snprintf (buf, len, "%.*s", (int) (slash - path), path);
}

/* A new file via its temporary.  OLD: the regular file it replaces, or
 * NULL. */
static int
open_temp (struct out_file *f, const char *target, const struct stat *old)
{
  sigset_t block, old_mask;
  char dir[PATH_MAX];

  f->path = strdup (target);
  f->tmp_path = temp_name (target);
  if (!f->path || !f->tmp_path) {
    errno = ENOMEM;
    set_err (f, "out of memory");
    goto err;
  }
  /* Signals wait while the file is created and registered: one arriving
   * in between would otherwise leave the temporary behind. */
  sigemptyset (&block);
  sigaddset (&block, SIGINT);
  sigaddset (&block, SIGTERM);
  sigaddset (&block, SIGHUP);
  pthread_sigmask (SIG_BLOCK, &block, &old_mask);
  /* mkostemp creates 0600, and the umask can only narrow it: a disk
   * image is nobody else's business until the user says so. */
  f->fd = mkostemp (f->tmp_path, O_CLOEXEC);
  if (f->fd != -1 && register_temp (f->tmp_path) == -1) {
    int e = errno;
    close (f->fd);
    unlink (f->tmp_path);
    f->fd = -1;
    errno = e;
  }
  {
    int e = errno;
    pthread_sigmask (SIG_SETMASK, &old_mask, NULL);
    errno = e;
  }
  if (f->fd == -1) {
    dir_of (target, dir, sizeof dir);
    if (errno == ENOENT)
      set_err (f, "directory %s does not exist", dir);
    else
      set_err (f, "cannot create a file in %s: %s", dir, strerror (errno));
    goto err;
  }
  if (old) {
    /* Owner first: chown clears the set-id bits that chmod restores. */
    if (fchown (f->fd, old->st_uid, old->st_gid) == -1) {
      set_err (f, "cannot give the new file the old one's owner %u:%u (%s); "
               "run as that user or root",
               (unsigned) old->st_uid, (unsigned) old->st_gid,
               strerror (errno));
      goto err_unlink;
    }
    if (fchmod (f->fd, old->st_mode & 07777) == -1) {
      set_err (f, "cannot give the new file the old one's mode: %s",
               strerror (errno));
      goto err_unlink;
    }
  }
  f->replaces = old != NULL;
  f->kind = OUT_NEW_FILE;
  return 0;

err_unlink:
  {
    int e = errno;
    out_file_abort (f);
    errno = e;
    return -1;
  }
err:
  {
    int e = errno;
    free (f->path);
    free (f->tmp_path);
    f->path = f->tmp_path = NULL;
    errno = e;
    return -1;
  }
}

static int
open_block_device (struct out_file *f, const char *target,
                   const struct out_file_opts *o)
{
  uint64_t dev_size;

  /* O_EXCL on a block device: EBUSY while it is mounted or otherwise
   * claimed by the kernel. */
  f->fd = open (target, O_WRONLY | O_EXCL | O_CLOEXEC);
  if (f->fd == -1) {
    if (errno == EBUSY)
      return set_err (f, "block device is in use (mounted?); unmount it "
                      "first");
    return set_err (f, "cannot open the block device: %s", strerror (errno));
  }
  if (ioctl (f->fd, BLKGETSIZE64, &dev_size) == -1) {
    set_err (f, "cannot read the block device's size: %s", strerror (errno));
    goto err;
  }
  if (dev_size < o->disk_size) {
    errno = ENOSPC;
    set_err (f, "block device is %llu bytes, the disk needs %llu",
             (unsigned long long) dev_size,
             (unsigned long long) o->disk_size);
    goto err;
  }
  f->kind = OUT_DEVICE;
  f->discard = o->discard;
  return 0;

err:
  close (f->fd);
  f->fd = -1;
  return -1;
}

static void
open_stdout (struct out_file *f)
{
  struct stat st;
  int flags;
  off_t pos;

  f->fd = STDOUT_FILENO;
  f->kind = OUT_STREAM;
  /* Positioned writes only where a seek really works: a regular file,
   * opened without O_APPEND (which would put every write at the end). */
  flags = fcntl (f->fd, F_GETFL);
  if (fstat (f->fd, &st) == 0 && S_ISREG (st.st_mode) && flags != -1
      && !(flags & O_APPEND) && (pos = lseek (f->fd, 0, SEEK_CUR)) != -1) {
    f->kind = OUT_STDOUT_FILE;
    f->base = (uint64_t) pos;
    f->old_end = (uint64_t) st.st_size;
  }
}

int
out_file_open (struct out_file *f, const char *path,
               const struct out_file_opts *o)
{
  const char *cmd = o->cmd ? o->cmd : "qcow2pbs";
  char *target = NULL;
  struct stat st;
  int r = -1;

  memset (f, 0, sizeof *f);
  f->fd = -1;
  f->no_sync = o->no_sync;
  if (out_file_catch_signals (cmd, path) == -1)
    return set_err (f, "cannot catch signals: %s", strerror (errno));
  if (strcmp (path, "-") == 0) {
    open_stdout (f);
    set_interrupt_line (cmd, "standard output", "is partly written");
    return 0;
  }
  if (!*path)
    return set_err (f, "empty file name");
  target = resolve_links (f, path);
  if (!target)
    return -1;
  if (path[strlen (path) - 1] == '/') {
    errno = EISDIR;
    set_err (f, "names a directory; give a file name");
    goto out;
  }
  if (stat (target, &st) == -1) {
    if (errno != ENOENT) {
      set_err (f, "%s", strerror (errno));
      goto out;
    }
    r = open_temp (f, target, NULL);
  }
  else if (S_ISREG (st.st_mode)) {
    if (!o->force) {
      errno = EEXIST;
      set_err (f, "exists; add --force to replace it");
      goto out;
    }
    r = open_temp (f, target, &st);
  }
  else if (S_ISBLK (st.st_mode)) {
    if (!o->force) {
      errno = EEXIST;
      set_err (f, "is a block device; add --force to overwrite its "
               "contents");
      goto out;
    }
    r = open_block_device (f, target, o);
  }
  else if (S_ISFIFO (st.st_mode) || S_ISCHR (st.st_mode)) {
    /* Opening a FIFO waits for its reader, as `cat >fifo` does. */
    f->fd = open (target, O_WRONLY | O_CLOEXEC);
    if (f->fd == -1)
      set_err (f, "%s", strerror (errno));
    else {
      f->kind = OUT_STREAM;
      r = 0;
    }
  }
  else if (S_ISDIR (st.st_mode)) {
    errno = EISDIR;
    set_err (f, "is a directory; give a file name inside it");
  }
  else {
    errno = EINVAL;
    set_err (f, "is a %s; write to a file, a block device, a FIFO or '-'",
             S_ISSOCK (st.st_mode) ? "socket" : "special file");
  }
  if (r == 0)
    set_interrupt_line (cmd, path,
                        f->kind == OUT_NEW_FILE
                            ? (f->replaces ? "was left as it was"
                                           : "was not written")
                            : "is partly written");
out:
  free (target);
  return r;
}

static int
pwrite_all (struct out_file *f, const void *buf, size_t len, uint64_t off)
{
  const char *p = buf;
  ssize_t r;

  while (len > 0) {
    if (f->kind == OUT_STREAM)
      r = write (f->fd, p, len);
    else
      r = pwrite (f->fd, p, len, (off_t) off);
    if (r == -1) {
      if (errno == EINTR)
        continue;
      return set_err (f, "%s", strerror (errno));
    }
    if (r == 0) {
      errno = ENOSPC;
      return set_err (f, "%s", strerror (errno));
    }
    p += r;
    off += (uint64_t) r;
    len -= (size_t) r;
    f->written += (uint64_t) r;
  }
  return 0;
}

static int
write_zeros_at (struct out_file *f, uint64_t off, uint64_t len)
{
  size_t n;

  while (len > 0) {
    n = len < sizeof zeros ? (size_t) len : sizeof zeros;
    if (pwrite_all (f, zeros, n, off) == -1)
      return -1;
    off += n;
    len -= n;
  }
  return 0;
}

/* Make [OFF, OFF+LEN) of the output read as zeros, writing as little as
 * the kind of output allows. */
static int
zero_range (struct out_file *f, uint64_t off, uint64_t len)
{
  uint64_t old, r[2];

  switch (f->kind) {
  case OUT_NEW_FILE: /* a fresh file: a hole, set by the final size */
    f->zeroed += len;
    return 0;
  case OUT_STREAM:
    return write_zeros_at (f, off, len);
  case OUT_STDOUT_FILE:
    /* Past the old end a hole is enough (the size is set at commit). */
    old = off < f->old_end ? f->old_end - off : 0;
    if (old > len)
      old = len;
    f->zeroed += len - old;
    if (old == 0)
      return 0;
    if (old >= ZERO_CALL_MIN
        && fallocate (f->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                      (off_t) off, (off_t) old) == 0) {
      f->zeroed += old;
      return 0;
    }
    /* No hole punching here (EOPNOTSUPP and friends): real zeros. */
    return write_zeros_at (f, off, old);
  case OUT_DEVICE:
    if (len >= ZERO_CALL_MIN && off % 512 == 0 && len % 512 == 0) {
      r[0] = off;
      r[1] = len;
      /* Discard only when asked: it may drop more than this range on
       * some devices' granularity, and reads after it need not be zero,
       * hence the zeroout that follows. */
      if (f->discard)
        (void) ioctl (f->fd, BLKDISCARD, r);
      r[0] = off;
      r[1] = len;
      if (ioctl (f->fd, BLKZEROOUT, r) == 0) {
        f->zeroed += len;
        return 0;
      }
    }
    return write_zeros_at (f, off, len);
  }
  return 0;
}

/* Start writeback of what was written since the last call, without
 * waiting: the fsync in out_file_commit then finds little left to do
 * (an export is otherwise dominated by that final flush). */
static void
start_writeback (struct out_file *f)
{
  uint64_t end = f->base + f->size;

  if (f->no_sync || (f->kind != OUT_NEW_FILE && f->kind != OUT_DEVICE)
      || f->written - f->synced_written < WRITEBACK_STEP)
    return;
  sync_file_range (f->fd, (off_t) f->synced, (off_t) (end - f->synced),
                   SYNC_FILE_RANGE_WRITE);
  f->synced = end;
  f->synced_written = f->written;
}

static bool
all_zero (const unsigned char *p, size_t len)
{
  /* The first byte, then the buffer against itself shifted by one. */
  return len == 0 || (p[0] == 0 && memcmp (p, p + 1, len - 1) == 0);
}

int
out_file_write (struct out_file *f, const void *buf, size_t len)
{
  const unsigned char *p = buf;
  size_t n, run;
  uint64_t pos;

  if (f->kind == OUT_STREAM) {
    if (pwrite_all (f, buf, len, 0) == -1)
      return -1;
    f->size += len;
    return 0;
  }
  /* Alternate runs of data and of all-zero granules; granules are aligned
   * to the file offset so holes line up with file system blocks. */
  while (len > 0) {
    pos = f->base + f->size;
    n = HOLE_GRANULE - (size_t) (pos % HOLE_GRANULE);
    if (n > len)
      n = len;
    if (n == HOLE_GRANULE && all_zero (p, n)) {
      run = 0;
      while (run + HOLE_GRANULE <= len && all_zero (p + run, HOLE_GRANULE))
        run += HOLE_GRANULE;
      if (zero_range (f, pos, run) == -1)
        return -1;
    }
    else {
      run = n;
      while (run + HOLE_GRANULE <= len
             && !all_zero (p + run, HOLE_GRANULE))
        run += HOLE_GRANULE;
      if (pwrite_all (f, p, run, pos) == -1)
        return -1;
    }
    f->size += run;
    p += run;
    len -= run;
  }
  start_writeback (f);
  return 0;
}

int
out_file_zeros (struct out_file *f, uint64_t len)
{
  if (f->size + len < f->size) {
    errno = EFBIG;
    return set_err (f, "%s", strerror (errno));
  }
  if (zero_range (f, f->base + f->size, len) == -1)
    return -1;
  f->size += len;
  return 0;
}

/* fsync the directory holding PATH so the rename itself is durable. */
static int
sync_dir (const char *path)
{
  char *copy = strdup (path);
  int fd, r = 0;

  if (!copy)
    return -1;
  fd = open (dirname (copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  free (copy);
  if (fd == -1)
    return -1;
  if (fsync (fd) == -1 && errno != EINVAL)
    r = -1;
  close (fd);
  return r;
}

/* rename, but a file that appeared under the final name since
 * out_file_open is not clobbered unless replacing was asked for. */
static int
put_in_place (struct out_file *f)
{
  if (!f->replaces) {
    if (renameat2 (AT_FDCWD, f->tmp_path, AT_FDCWD, f->path,
                   RENAME_NOREPLACE) == 0)
      return 0;
    if (errno == EEXIST)
      return set_err (f, "appeared while it was being written; add --force "
                      "to replace it");
    if (errno != EINVAL && errno != ENOSYS)
      return set_err (f, "%s", strerror (errno));
  }
  if (rename (f->tmp_path, f->path) == -1)
    return set_err (f, "%s", strerror (errno));
  return 0;
}

static int
commit_stdout_file (struct out_file *f)
{
  struct stat st;
  uint64_t end = f->base + f->size;

  /* Long enough for the disk, never shorter than it was. */
  if (fstat (f->fd, &st) == -1)
    return set_err (f, "%s", strerror (errno));
  if ((uint64_t) st.st_size < end
      && ftruncate (f->fd, (off_t) end) == -1)
    return set_err (f, "%s", strerror (errno));
  return 0;
}

int
out_file_commit (struct out_file *f)
{
  int e;

  switch (f->kind) {
  case OUT_STREAM:
    if (f->fd == STDOUT_FILENO)
      return 0;
    e = close (f->fd);
    f->fd = -1;
    return e == 0 ? 0 : set_err (f, "%s", strerror (errno));
  case OUT_STDOUT_FILE:
    return commit_stdout_file (f);
  case OUT_DEVICE:
    /* The disk is on the device only once fsync says so. */
    e = !f->no_sync && fsync (f->fd) == -1 ? errno : 0;
    if (close (f->fd) == -1 && !e)
      e = errno;
    f->fd = -1;
    if (!e)
      return 0;
    errno = e;
    return set_err (f, "%s", strerror (e));
  case OUT_NEW_FILE:
    break;
  }
  /* fsync before rename: after a crash the final name holds either the
   * old file or the complete new one, never a renamed, unwritten file. */
  if (ftruncate (f->fd, (off_t) f->size) == -1
      || (!f->no_sync && fsync (f->fd) == -1)) {
    set_err (f, "%s", strerror (errno));
    goto err;
  }
  if (close (f->fd) == -1) {
    f->fd = -1;
    set_err (f, "%s", strerror (errno));
    goto err;
  }
  f->fd = -1;
  if (put_in_place (f) == -1)
    goto err;
  unregister_temp (f->tmp_path);
  free (f->tmp_path);
  f->tmp_path = NULL;
  if (!f->no_sync)
    sync_dir (f->path);
  free (f->path);
  f->path = NULL;
  return 0;

err:
  e = errno;
  out_file_abort (f);
  errno = e;
  return -1;
}

void
out_file_abort (struct out_file *f)
{
  if (f->kind == OUT_DEVICE || (f->kind == OUT_STREAM
                                && f->fd != STDOUT_FILENO)) {
    if (f->fd != -1)
      close (f->fd);
    f->fd = -1;
    return;
  }
  if (!f->path)
    return;
  if (f->fd != -1)
    close (f->fd);
  f->fd = -1;
  if (f->tmp_path) {
    unlink (f->tmp_path);
    unregister_temp (f->tmp_path);
  }
  free (f->tmp_path);
  free (f->path);
  f->tmp_path = f->path = NULL;
}
