/* import-archive.c -- a tar archive (plain, gz, zst, xz: found by content
 * through libarchive) read as a stream, for import (docs/import.md):
 *
 *  - import_archive_skeleton, the plan's pass: every member's size, time
 *    and first 64 KiB (the qcow2 header with its backing name) go into a
 *    temporary folder, in files of the members' full sizes that are
 *    otherwise holes, so the folder can be scanned like any other
 *    (import-scan.c); it also counts the bytes each member would take
 *    unpacked (its non-zero 4 KiB pages), for the temporary-space plan;
 *  - import_archive_stream, the data pass: the members the caller wants
 *    are written whole (sparse: zero pages stay holes) over their
 *    skeletons, and the caller hears of each as it arrives
 *    (import-stream.c runs a group as soon as its members are there).
 *
 * Member names are refused when absolute or climbing out with "..", as
 * tar -x refuses them; only folders and regular files are taken: a link
 * or special member makes the plan's pass refuse the archive.  Errors
 * go into a struct cli_err; nothing here prints. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>

#include "cli.h"
#include "import.h"
#include "tar-index.h"

#define SKELETON_BYTES (64u << 10)
#define PAGE 4096u

/* mkdir -p of the folders of REL below ROOT (REL's last part excluded). */
static int
make_parents (const char *root, const char *rel)
{
  char *p = NULL, *s;

  if (asprintf (&p, "%s/%s", root, rel) == -1)
    return -1;
  for (s = p + strlen (root) + 1; (s = strchr (s, '/')); s++) {
    *s = 0;
    if (mkdir (p, 0700) == -1 && errno != EEXIST) {
      free (p);
      return -1;
    }
    *s = '/';
  }
  free (p);
  return 0;
}

static bool
all_zero (const unsigned char *b, size_t n)
{
  return n == 0 || (b[0] == 0 && memcmp (b, b + 1, n - 1) == 0);
}

/* Write BUF[0..LEN) at OFF to FD.  0 or -1 (errno). */
static int
write_all (int fd, const unsigned char *buf, size_t len, uint64_t off)
{
  while (len > 0) {
    ssize_t r = pwrite (fd, buf, len, (off_t) off);
    if (r <= 0)
      return -1;
    buf += r;
    len -= (size_t) r;
    off += (uint64_t) r;
  }
  return 0;
}

/* The bytes of data block BUF[0..LEN) at file offset OFF that are not in
 * all-zero pages: written to FD (when FD >= 0; runs of them in one
 * write) and counted in *PAGES as whole 4 KiB pages (*LAST: 1 + the last
 * page counted; blocks come in file order).  0, or -1 (errno). */
static int
put_block (int fd, const unsigned char *buf, size_t len, uint64_t off,
           uint64_t *pages, uint64_t *last)
{
  size_t done = 0, run = 0, run_len = 0;

  while (done < len) {
    uint64_t at = off + done, page = at / PAGE;
    size_t n = (size_t) ((page + 1) * PAGE - at);
    if (n > len - done)
      n = len - done;
    if (!all_zero (buf + done, n)) {
      if (*last != page + 1) {
        *pages += PAGE;
        *last = page + 1;
      }
      if (!run_len)
        run = done;
      run_len += n;
    }
    else if (run_len) {
      if (fd >= 0 && write_all (fd, buf + run, run_len, off + run) == -1)
        return -1;
      run_len = 0;
    }
    done += n;
  }
  if (run_len && fd >= 0 && write_all (fd, buf + run, run_len, off + run) == -1)
    return -1;
  return 0;
}

/* Read the current member's data: write it to FD (all, or with SKELETON
 * its first 64 KiB; FD -1: nothing), count its non-zero pages in *PAGES,
 * and call TICK after each block (it stops the read by returning -1).
 * 0; -1 write error (errno); -2 archive error; -3 stopped by TICK. */
static int
read_member (struct archive *a, int fd, int64_t size, bool skeleton,
             uint64_t *pages, int (*tick) (void *), void *opaque)
{
  const void *buf;
  size_t len;
  la_int64_t off;
  uint64_t last = 0, last_w = 0, ignore = 0;
  int r;

  while ((r = archive_read_data_block (a, &buf, &len, &off)) == ARCHIVE_OK) {
    if (!skeleton) {
      if (put_block (fd, buf, len, (uint64_t) off, pages ? pages : &ignore,
                     &last) == -1)
        return -1;
    }
    else {
      /* A skeleton holds the first 64 KiB exactly; all pages are counted
       * (the plan needs them). */
      size_t head = (uint64_t) off >= SKELETON_BYTES ? 0
                    : len < SKELETON_BYTES - (uint64_t) off
                        ? len : (size_t) (SKELETON_BYTES - (uint64_t) off);
      if (fd >= 0 && head && put_block (fd, buf, head, (uint64_t) off,
                                        &ignore, &last_w) == -1)
        return -1;
      put_block (-1, buf, len, (uint64_t) off, pages ? pages : &ignore,
                 &last);
    }
    if (tick && tick (opaque) == -1)
      return -3;
  }
  if (r != ARCHIVE_EOF)
    return -2;
  if (fd >= 0 && ftruncate (fd, (off_t) size) == -1)
    return -1;
  return 0;
}

static struct archive *
open_archive (const char *archive, struct cli_err *e)
{
  struct archive *a = archive_read_new ();

  if (!a) {
    cli_err_set (e, archive, "out of memory");
    return NULL;
  }
  archive_read_support_filter_all (a);
  archive_read_support_format_tar (a);
  if (archive_read_open_filename (a, archive, 1 << 20) != ARCHIVE_OK) {
    cli_err_set (e, archive, "%s", archive_error_string (a));
    archive_read_free (a);
    return NULL;
  }
  return a;
}

/* Where a reading of the archive is: a member read yet, and its name. */
struct reading {
  bool in_member;
  char *last;
};

/* The next member's header: 1 (*ENTRY set), 0 at the end (the archive's
 * end-of-archive marker seen), -1 (E). */
static int
next_member (struct archive *a, const char *archive,
             struct archive_entry **entry, struct reading *rd,
             struct cli_err *e)
{
  const char *name;
  bool marked;
  int r = tar_next_header (a, entry, &rd->in_member, &marked);

  if (r == ARCHIVE_EOF && !marked)
    return cli_err_set (e, archive, "truncated archive: no end-of-archive "
                        "marker after member %s; the copy is incomplete",
                        rd->last ? rd->last : "");
  if (r == ARCHIVE_EOF)
    return 0;
  if (r != ARCHIVE_OK && r != ARCHIVE_WARN)
    return cli_err_set (e, archive, "%s (truncated or corrupt archive)",
                        archive_error_string (a));
  name = archive_entry_pathname (*entry);
  if (!name || !tar_name_safe (name))
    return cli_err_set (e, archive, "member '%s' is an absolute path or "
                        "climbs out with '..': refused", name ? name : "");
  free (rd->last);
  if (!(rd->last = strdup (name)))
    return cli_err_set (e, archive, "out of memory");
  return 1;
}

/* Open DIR/NAME for writing (its folders made).  FD or -1 (E). */
static int
open_out (const char *dir, const char *name, struct cli_err *e)
{
  char *path = NULL;
  int fd;

  if (make_parents (dir, name) == -1
      || asprintf (&path, "%s/%s", dir, name) == -1)
    return cli_err_set (e, dir, "%s", strerror (errno));
  fd = open (path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
             0600);
  if (fd == -1)
    cli_err_set (e, path, "%s", strerror (errno));
  free (path);
  return fd;
}

/* After a member is written: its mtime (points may take their time from
 * it) and, for data, fsync.  0 or -1 (errno). */
static int
seal (int fd, struct archive_entry *en, bool sync)
{
  if (sync && fsync (fd) == -1)
    return -1;
  if (archive_entry_mtime_is_set (en)) {
    struct timespec ts[2] = {
      { archive_entry_mtime (en), archive_entry_mtime_nsec (en) },
      { archive_entry_mtime (en), archive_entry_mtime_nsec (en) }
    };
    if (futimens (fd, ts) == -1)
      return -1;
  }
  return 0;
}

/* Report read_member's R for member NAME of ARCHIVE into E: -1. */
static int
member_error (int r, struct archive *a, const char *archive,
              const char *dir, const char *name, struct cli_err *e)
{
  if (r == -2)
    return cli_err_set (e, archive, "member %s: %s (truncated or corrupt "
                        "archive)", name, archive_error_string (a));
  if (r == -3)
    return cli_err_set (e, archive, "interrupted");
  return cli_err_set (e, dir, "cannot write member %s: %s", name,
                      strerror (errno));
}

static int
add_member (struct import_members *ms, const char *name, uint64_t size,
            uint64_t pages)
{
  struct import_member *m = realloc (ms->m, (ms->n + 1) * sizeof *m);

  if (!m)
    return -1;
  ms->m = m;
  m = &ms->m[ms->n];
  if (!(m->name = tar_name_normal (name)))
    return -1;
  m->size = size;
  m->pages = pages;
  ms->n++;
  return 0;
}

int
import_top_add (struct import_top *t, const char *name, bool dir)
{
  size_t n = strcspn (name, "/");

  if (t->none)
    return 0;
  if (!*name || (!name[n] && !dir)) {
    /* The archive's root itself, or a file at the top level: the
     * archive is the folder. */
    t->none = true;
    return 0;
  }
  if (!t->name)
    return (t->name = strndup (name, n)) ? 0 : -1;
  if (strlen (t->name) != n || strncmp (t->name, name, n) != 0)
    t->none = true;
  return 0;
}

const char *
import_top_name (const struct import_top *t)
{
  return t->none ? NULL : t->name;
}

/* The plan's pass stops on Ctrl-C within a member, too. */
static int
stop_on_signal (void *opaque)
{
  (void) opaque;
  return cli_interrupted () ? -1 : 0;
}

static uint64_t tree_bytes;

static int
add_tree_bytes (const char *path, const struct stat *st, int flag,
                struct FTW *ftw)
{
  (void) path;
  (void) flag;
  (void) ftw;
  tree_bytes += (uint64_t) st->st_blocks * 512;
  return 0;
}

int
import_archive_skeleton (const char *archive, const char *dir,
                         struct import_members *ms, struct cli_err *e)
{
  struct archive *a = open_archive (archive, e);
  struct archive_entry *en;
  struct reading rd = { false, NULL };
  int r, members = 0, ret = -1;

  memset (ms, 0, sizeof *ms);
  if (!a)
    return -1;
  while ((r = next_member (a, archive, &en, &rd, e)) == 1) {
    const char *name = archive_entry_pathname (en);
    mode_t type = archive_entry_filetype (en);
    int64_t size = archive_entry_size (en);
    uint64_t pages = 0;
    int fd, rr;

    members++;
    if (cli_interrupted ()) {
      cli_err_set (e, archive, "interrupted");
      goto out;
    }
    {
      /* Links and special files are refused (tar-index.h): skipped, they
       * would silently drop a VM or a layer. */
      char *msg;
      if (tar_member_link (en, &msg)) {
        cli_err_set (e, archive, "%s", msg ? msg : "out of memory");
        free (msg);
        goto out;
      }
    }
    {
      /* Every member counts for the top folder, links too: each is an
       * entry of the folder the archive unpacks to. */
      char *norm = tar_name_normal (name);
      if (!norm || import_top_add (&ms->top, norm, type == AE_IFDIR) == -1) {
        free (norm);
        cli_err_set (e, archive, "out of memory");
        goto out;
      }
      free (norm);
    }
    if (type == AE_IFDIR) {
      char *path = NULL;
      if (make_parents (dir, name) == -1
          || asprintf (&path, "%s/%s", dir, name) == -1
          || (mkdir (path, 0700) == -1 && errno != EEXIST)) {
        cli_err_set (e, dir, "%s", strerror (errno));
        free (path);
        goto out;
      }
      free (path);
      continue;
    }
    if (type != AE_IFREG)
      continue; /* not reached: links and devices are refused above */
    if ((fd = open_out (dir, name, e)) == -1)
      goto out;
    rr = read_member (a, fd, size < 0 ? 0 : size, true, &pages,
                      stop_on_signal, NULL);
    if (rr == 0 && seal (fd, en, false) == -1)
      rr = -1;
    close (fd);
    if (rr != 0) {
      member_error (rr, a, archive, dir, name, e);
      goto out;
    }
    if (add_member (ms, name, size < 0 ? 0 : (uint64_t) size, pages) == -1) {
      cli_err_set (e, archive, "out of memory");
      goto out;
    }
  }
  if (r == -1)
    goto out;
  if (members == 0) {
    cli_err_set (e, archive, "not a tar archive (tar, tar.gz, tar.zst, "
                 "tar.xz), or an empty one");
    goto out;
  }
  /* What the folder takes now, folders too (du counts them). */
  tree_bytes = 0;
  nftw (dir, add_tree_bytes, 16, FTW_PHYS);
  ms->skeleton_bytes = tree_bytes;
  ret = 0;
out:
  free (rd.last);
  archive_read_free (a);
  if (ret == -1)
    import_members_free (ms);
  return ret;
}

int
import_archive_stream (const char *archive, const char *dir,
                       const struct import_members *ms,
                       const struct import_stream_ops *ops, void *opaque,
                       struct cli_err *e)
{
  struct archive *a = open_archive (archive, e);
  struct archive_entry *en;
  struct reading rd = { false, NULL };
  size_t idx = 0;
  int r, ret = -1;

  if (!a)
    return -1;
  while ((r = next_member (a, archive, &en, &rd, e)) == 1) {
    const char *name = archive_entry_pathname (en);
    int64_t size = archive_entry_size (en);
    char *norm;
    bool same;
    int fd, rr;

    if (archive_entry_filetype (en) != AE_IFREG)
      continue;
    /* The plan was made from the same members in the same order: an
     * archive changed since is not what the plan says. */
    norm = tar_name_normal (name);
    same = norm && idx < ms->n && !strcmp (ms->m[idx].name, norm);
    free (norm);
    if (!same
        || ms->m[idx].size != (uint64_t) (size < 0 ? 0 : size)) {
      cli_err_set (e, archive, "changed while it was imported (member %s "
                   "is not the one planned): run the import again", name);
      goto out;
    }
    if (!ops->want (opaque, idx)) {
      idx++;
      continue;
    }
    if ((fd = open_out (dir, name, e)) == -1)
      goto out;
    rr = read_member (a, fd, size < 0 ? 0 : size, false, NULL, ops->tick,
                      opaque);
    if (rr == 0 && seal (fd, en, true) == -1)
      rr = -1;
    close (fd);
    if (rr != 0) {
      member_error (rr, a, archive, dir, name, e);
      goto out;
    }
    if (ops->arrived (opaque, idx) == -1) {
      cli_err_set (e, archive, "interrupted");
      goto out;
    }
    idx++;
  }
  if (r == -1)
    goto out;
  ret = 0;
out:
  free (rd.last);
  archive_read_free (a);
  return ret;
}

void
import_members_free (struct import_members *ms)
{
  for (size_t i = 0; i < ms->n; i++)
    free (ms->m[i].name);
  free (ms->m);
  free (ms->top.name);
  memset (ms, 0, sizeof *ms);
}
