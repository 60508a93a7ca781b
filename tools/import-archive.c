/* import-archive.c -- a tar archive (plain, gz, zst, xz: found by content
 * through libarchive) as a folder to import: its members are written into
 * a temporary folder, sparse, with their mtimes, and the folder is scanned
 * like any other (import-scan.c).
 *
 * A plan (--dry-run, and the space check before any work) needs only each
 * member's size, time and first 64 KiB (the qcow2 header with its backing
 * name): import_archive_unpack with SKELETON writes just that, into files
 * of the members' full sizes that are otherwise holes.  Member names are
 * refused when absolute or climbing out with "..", as tar -x refuses
 * them; only folders and regular files are taken. */
#include <errno.h>
#include <fcntl.h>
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


/* Write the current member's data (all, or its first SKELETON_BYTES) to
 * FD: holes stay holes (offsets from libarchive, sparse members too). */
static int
write_member (struct archive *a, int fd, int64_t size, bool skeleton,
              uint64_t *written)
{
  const void *buf;
  size_t len;
  la_int64_t off;
  int r;

  while ((r = archive_read_data_block (a, &buf, &len, &off)) == ARCHIVE_OK) {
    const unsigned char *b = buf;
    size_t done = 0;
    if (skeleton && (uint64_t) off >= SKELETON_BYTES)
      break;
    while (done < len) {
      ssize_t w = pwrite (fd, b + done, len - done, (off_t) off + done);
      if (w <= 0)
        return -1;
      done += (size_t) w;
    }
    *written += len;
  }
  if (r != ARCHIVE_OK && r != ARCHIVE_EOF && !skeleton)
    return -2;
  return ftruncate (fd, (off_t) size) == 0 ? 0 : -1;
}

int
import_archive_unpack (const char *archive, const char *dir, bool skeleton,
                       uint64_t *need, uint64_t *written)
{
  struct archive *a = archive_read_new ();
  struct archive_entry *e;
  uint64_t total = 0, w = 0;
  int r, members = 0, ret = -1;

  if (!a)
    return cli_error (archive, "out of memory"), -1;
  archive_read_support_filter_all (a);
  archive_read_support_format_tar (a);
  if (archive_read_open_filename (a, archive, 1 << 20) != ARCHIVE_OK) {
    cli_error (archive, "%s", archive_error_string (a));
    goto out;
  }
  while ((r = archive_read_next_header (a, &e)) == ARCHIVE_OK
         || r == ARCHIVE_WARN) {
    const char *name = archive_entry_pathname (e);
    mode_t type = archive_entry_filetype (e);
    char *path = NULL;
    int fd, wr;
    members++;
    if (cli_interrupted ()) {
      cli_error (archive, "interrupted");
      goto out;
    }
    if (!name || !tar_name_safe (name)) {
      cli_error (archive, "member '%s' is an absolute path or climbs out "
                 "with '..': refused", name ? name : "");
      goto out;
    }
    if (type != AE_IFREG && type != AE_IFDIR)
      continue; /* links, devices: not backups */
    if (make_parents (dir, name) == -1 || asprintf (&path, "%s/%s", dir,
                                                     name) == -1) {
      cli_error (archive, "%s: %s", dir, strerror (errno));
      goto out;
    }
    if (type == AE_IFDIR) {
      if (mkdir (path, 0700) == -1 && errno != EEXIST) {
        cli_error (path, "%s", strerror (errno));
        free (path);
        goto out;
      }
      free (path);
      continue;
    }
    total += (uint64_t) archive_entry_size (e);
    fd = open (path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
               0600);
    if (fd == -1) {
      cli_error (path, "%s", strerror (errno));
      free (path);
      goto out;
    }
    wr = write_member (a, fd, archive_entry_size (e), skeleton, &w);
    if (wr == 0 && fsync (fd) == -1 && !skeleton)
      wr = -1;
    if (wr == 0 && archive_entry_mtime_is_set (e)) {
      /* The member's time: points may take their time from it. */
      struct timespec ts[2] = {
        { archive_entry_mtime (e), archive_entry_mtime_nsec (e) },
        { archive_entry_mtime (e), archive_entry_mtime_nsec (e) }
      };
      futimens (fd, ts);
    }
    close (fd);
    if (wr == -2) {
      cli_error (archive, "member %s: %s (truncated or corrupt archive)",
                 name, archive_error_string (a));
      free (path);
      goto out;
    }
    if (wr == -1) {
      cli_error (path, "cannot write: %s", strerror (errno));
      free (path);
      goto out;
    }
    free (path);
  }
  if (r != ARCHIVE_EOF) {
    cli_error (archive, "%s (truncated or corrupt archive)",
               archive_error_string (a));
    goto out;
  }
  if (members == 0) {
    cli_error (archive, "not a tar archive (tar, tar.gz, tar.zst, tar.xz), "
               "or an empty one");
    goto out;
  }
  if (need)
    *need = total;
  if (written)
    *written = w;
  ret = 0;
out:
  archive_read_free (a);
  return ret;
}
