/* out-file.c -- an output file that appears under its final name only when
 * complete, with holes for zeros.
 *
 * The data goes to ".NAME.XXXXXX" in the destination's directory (same
 * file system, so rename(2) is atomic) and is renamed by out_file_commit.
 * SIGINT, SIGTERM and SIGHUP unlink every temporary still open before the
 * process dies, so an interrupted export leaves nothing behind.  "-" is
 * stdout: no temporary, and real zeros unless stdout is a seekable regular
 * file. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

/* Zero runs shorter than this are written, not skipped: file systems
 * allocate whole blocks anyway, and qemu-img convert's default -S is 4k. */
#define HOLE_GRANULE 4096
/* Written bytes handed to writeback at a time (see start_writeback). */
#define WRITEBACK_STEP ((uint64_t) 8 << 20)

/* Temporaries the signal handler removes.  A fixed table of pointers
 * because the handler may only call async-signal-safe functions; a command
 * has at most a few output files open. */
#define MAX_TEMPS 8
static char *volatile temps[MAX_TEMPS];
static bool handler_installed;

static void
on_signal (int sig)
{
  size_t i;

  for (i = 0; i < MAX_TEMPS; i++)
    if (temps[i])
      unlink (temps[i]);
  signal (sig, SIG_DFL);
  raise (sig);
}

static int
register_temp (char *path)
{
  static const int sigs[] = { SIGINT, SIGTERM, SIGHUP };
  struct sigaction sa;
  size_t i;

  if (!handler_installed) {
    memset (&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset (&sa.sa_mask);
    for (i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
      sigaddset (&sa.sa_mask, sigs[i]);
    for (i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
      struct sigaction prev;
      /* A signal the caller ignores (nohup, background job) stays
       * ignored. */
      if (sigaction (sigs[i], NULL, &prev) == 0
          && prev.sa_handler == SIG_IGN)
        continue;
      if (sigaction (sigs[i], &sa, NULL) == -1)
        return -1;
    }
    handler_installed = true;
  }
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

/* ".NAME.XXXXXX" beside PATH. */
static char *
temp_name (const char *path)
{
  const char *slash = strrchr (path, '/');
  size_t dirlen = slash ? (size_t) (slash - path) + 1 : 0;
  const char *base = path + dirlen;
  size_t len = dirlen + 1 + strlen (base) + 8;
  char *t = malloc (len);

  if (!t)
    return NULL;
  memcpy (t, path, dirlen);
  snprintf (t + dirlen, len - dirlen, ".%s.XXXXXX", base);
  return t;
}

int
out_file_open (struct out_file *f, const char *path)
{
  sigset_t block, old;
  struct stat st;
  mode_t mask;
  int flags;

  memset (f, 0, sizeof *f);
  f->fd = -1;
  if (strcmp (path, "-") == 0) {
    f->fd = STDOUT_FILENO;
    /* Holes only where a seek really makes one: a regular file, opened
     * without O_APPEND (which would put every write at the end). */
    flags = fcntl (f->fd, F_GETFL);
    f->is_regular = fstat (f->fd, &st) == 0 && S_ISREG (st.st_mode)
                    && flags != -1 && !(flags & O_APPEND)
                    && lseek (f->fd, 0, SEEK_CUR) != -1;
    if (f->is_regular) {
      /* Writing starts at the current position; the file is truncated to
       * its end at commit, so a pre-existing longer file is cut. */
      f->base = lseek (f->fd, 0, SEEK_CUR);
    }
    return 0;
  }
  /* Found now rather than by the rename after all the work. */
  if (!*path || path[strlen (path) - 1] == '/'
      || (stat (path, &st) == 0 && S_ISDIR (st.st_mode))) {
    errno = EISDIR;
    return -1;
  }
  f->path = strdup (path);
  f->tmp_path = temp_name (path);
  if (!f->path || !f->tmp_path)
    goto err;
  /* Signals wait while the file is created and registered: one arriving
   * in between would otherwise leave the temporary behind. */
  sigemptyset (&block);
  sigaddset (&block, SIGINT);
  sigaddset (&block, SIGTERM);
  sigaddset (&block, SIGHUP);
  pthread_sigmask (SIG_BLOCK, &block, &old);
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
    pthread_sigmask (SIG_SETMASK, &old, NULL);
    errno = e;
  }
  if (f->fd == -1)
    goto err;
  /* mkostemp creates 0600; give the file the mode open(2) would. */
  mask = umask (0);
  umask (mask);
  if (fchmod (f->fd, 0666 & ~mask) == -1)
    goto err_unlink;
  f->is_regular = true;
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
write_all (struct out_file *f, const void *buf, size_t len)
{
  const char *p = buf;
  ssize_t r;

  while (len > 0) {
    if (f->is_regular)
      r = pwrite (f->fd, p, len, (off_t) (f->base + f->size));
    else
      r = write (f->fd, p, len);
    if (r == -1) {
      if (errno == EINTR)
        continue;
      return -1;
    }
    if (r == 0) {
      errno = ENOSPC;
      return -1;
    }
    p += r;
    len -= (size_t) r;
    f->size += (uint64_t) r;
  }
  return 0;
}

/* Start writeback of what was written since the last call, without
 * waiting: the fsync in out_file_commit then finds little left to do
 * (an export is otherwise dominated by that final flush). */
static void
start_writeback (struct out_file *f, uint64_t written)
{
  uint64_t end = f->base + f->size;

  f->unsynced += written;
  if (!f->path || f->no_sync || f->unsynced < WRITEBACK_STEP)
    return;
  sync_file_range (f->fd, (off_t) f->synced, (off_t) (end - f->synced),
                   SYNC_FILE_RANGE_WRITE);
  f->synced = end;
  f->unsynced = 0;
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
  uint64_t written = 0;
  size_t n, run;

  if (!f->is_regular)
    return write_all (f, buf, len);
  /* Alternate runs of data and of all-zero granules; granules are aligned
   * to the file offset so holes line up with file system blocks. */
  while (len > 0) {
    n = HOLE_GRANULE - (size_t) ((f->base + f->size) % HOLE_GRANULE);
    if (n > len)
      n = len;
    if (n == HOLE_GRANULE && all_zero (p, n)) {
      run = 0;
      while (run + HOLE_GRANULE <= len && all_zero (p + run, HOLE_GRANULE))
        run += HOLE_GRANULE;
      f->size += run;
    }
    else {
      run = n;
      while (run + HOLE_GRANULE <= len
             && !all_zero (p + run, HOLE_GRANULE))
        run += HOLE_GRANULE;
      if (write_all (f, p, run) == -1)
        return -1;
      written += run;
    }
    p += run;
    len -= run;
  }
  start_writeback (f, written);
  return 0;
}

int
out_file_zeros (struct out_file *f, uint64_t len)
{
  static const char zeros[65536];
  size_t n;

  if (f->is_regular) {
    if (f->size + len < f->size) {
      errno = EFBIG;
      return -1;
    }
    f->size += len;
    return 0;
  }
  while (len > 0) {
    n = len < sizeof zeros ? (size_t) len : sizeof zeros;
    if (write_all (f, zeros, n) == -1)
      return -1;
    len -= n;
  }
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

int
out_file_commit (struct out_file *f)
{
  int e;

  if (!f->path) {
    /* stdout: a trailing hole needs the size set; pipes need nothing. */
    if (f->is_regular && ftruncate (f->fd, (off_t) (f->base + f->size)) == -1)
      return -1;
    return 0;
  }
  /* fsync before rename: after a crash the final name holds either the
   * old file or the complete new one, never a renamed, unwritten file. */
  if (ftruncate (f->fd, (off_t) f->size) == -1
      || (!f->no_sync && fsync (f->fd) == -1))
    goto err;
  if (close (f->fd) == -1) {
    f->fd = -1;
    goto err;
  }
  f->fd = -1;
  if (rename (f->tmp_path, f->path) == -1)
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
