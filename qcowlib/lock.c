/* lock.c -- QEMU's image locks, honoured the way a reading qemu-img does.
 *
 * QEMU (block/file-posix.c) tells other processes what it does with an
 * image file through shared OFD locks on single bytes: byte 100 + i means
 * "holds permission i", byte 200 + i "does not let anyone else have
 * permission i", with the permissions in the bit order of
 * include/block/block-common.h: 0 consistent read, 1 write, 2 write
 * unchanged, 3 resize.  A process that wants permission i first tests byte
 * 200 + i; one that will not share permission i tests byte 100 + i.  Every
 * lock is a read lock, so the test is F_OFD_GETLK with F_WRLCK.
 *
 * qemu-img convert (a reader of guest data) takes, on every file it reads
 * -- each qcow2 layer, a raw backing file, an external data file -- the
 * consistent-read permission and shares neither write nor resize: it locks
 * bytes 100, 201 and 203 and refuses the file when byte 101, 103 or 200 is
 * held.  With -U (force-share=on) it shares everything: it locks byte 100
 * and still refuses a file on which someone holds byte 200 (say, the
 * target of an unfinished mirror job).  We do the same (checked against
 * QEMU 7.2 in tests/qcow/test-qcow-locks.sh).  The locks belong to the open
 * file description, so they last exactly as long as the layer stays open
 * and a running QEMU cannot start writing in the middle of a read.
 *
 * Where the kernel has no OFD locks QEMU's default (locking=auto) does not
 * lock at all, silently; so do we.  A file system that refuses the locks
 * (ENOLCK: NFS without a lock daemon) makes QEMU fail, -U or not, and
 * leaves file.locking=off as the way out.  We fail too, but with
 * --force-share we read such a file without locks, since that option is
 * our only way out. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>

#include "qcow-internal.h"

#define LOCK_PERM_BASE 100   /* RAW_LOCK_PERM_BASE: permission held */
#define LOCK_SHARED_BASE 200 /* RAW_LOCK_SHARED_BASE: permission not shared */

/* BLK_PERM_* bit numbers. */
enum { PERM_CONSISTENT_READ = 0, PERM_WRITE = 1, PERM_RESIZE = 3 };

#define OVERRIDE                                                              \
  "; reading it now could give an inconsistent backup; use --force-share "   \
  "(qemu-img's -U) to read anyway"

/* Set (F_OFD_SETLK) or test (F_OFD_GETLK) one byte.  Returns 0 or -1 with
 * errno; for a test, *HELD says whether another file description holds a
 * lock on it. */
static int
lock_byte (int fd, int cmd, short type, int byte, bool *held)
{
  struct flock fl;

  memset (&fl, 0, sizeof fl);
  fl.l_type = type;
  fl.l_whence = SEEK_SET;
  fl.l_start = byte;
  fl.l_len = 1;
  if (fcntl (fd, cmd, &fl) == -1)
    return -1;
  if (held)
    *held = fl.l_type != F_UNLCK;
  return 0;
}

/* Why a lock could not be set or tested: 0 to go on without locks, or -1
 * with the error set. */
static int
lock_failed (const char *path, int byte, bool force_share)
{
  int e = errno;

  if (e == EINVAL)
    return 0; /* no OFD locks in this kernel: QEMU does not lock either */
  if (e == EAGAIN || e == EACCES) {
    /* QEMU never takes write locks: someone else does. */
    qcow__set_error (EBUSY,
                     "%s: another process holds an exclusive lock on byte "
                     "%d of it, one of QEMU's lock bytes%s",
                     path, byte, force_share ? "" : OVERRIDE);
    return -1;
  }
  if (force_share)
    return 0;
  qcow__set_error (e,
                   "%s: cannot take QEMU's shared lock on it (%s); use "
                   "--force-share to read it without locks",
                   path, strerror (e));
  return -1;
}

int
qcow__lock_image (const struct qcow__io *io, const char *path,
                  unsigned flags)
{
  bool force_share = flags & QCOW_OPEN_FORCE_SHARE;
  static const int take[] = {
    LOCK_PERM_BASE + PERM_CONSISTENT_READ, /* with -U: only this one */
    LOCK_SHARED_BASE + PERM_WRITE,
    LOCK_SHARED_BASE + PERM_RESIZE,
  };
  /* Tested with -U too, as qemu-img does: sharing does not make data
   * that another job is still writing readable. */
  static const struct {
    int byte;
    const char *perm;
  } test[] = {
    { LOCK_SHARED_BASE + PERM_CONSISTENT_READ, NULL },
    { LOCK_PERM_BASE + PERM_WRITE, "write" },
    { LOCK_PERM_BASE + PERM_RESIZE, "resize" },
  };
  size_t i, ntake = force_share ? 1 : sizeof take / sizeof take[0];
  size_t ntest = force_share ? 1 : sizeof test / sizeof test[0];
  bool held;

  if (io->fd < 0)
    return 0;
  /* Take ours first, then look at the others' (as file-posix.c does), so
   * that a writer starting between the two steps sees our lock. */
  for (i = 0; i < ntake; i++)
    if (lock_byte (io->fd, F_OFD_SETLK, F_RDLCK, take[i], NULL) == -1)
      return lock_failed (path, take[i], force_share);
  for (i = 0; i < ntest; i++) {
    if (lock_byte (io->fd, F_OFD_GETLK, F_WRLCK, test[i].byte, &held) == -1)
      return lock_failed (path, test[i].byte, force_share);
    if (!held)
      continue;
    if (test[i].perm)
      qcow__set_error (EBUSY,
                       "%s: QEMU holds a %s lock on it (a running VM?)"
                       OVERRIDE,
                       path, test[i].perm);
    else
      qcow__set_error (EBUSY,
                       "%s: QEMU does not let others read it consistently "
                       "(the target of an unfinished mirror or backup "
                       "job?); wait until that job ends",
                       path);
    return -1;
  }
  return 0;
}
