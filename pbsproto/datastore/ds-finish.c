/* ds-finish.c -- the end of a backup session: blobs (the manifest kept
 * in memory until finish), finish (§3.8) and durability: how the snapshot
 * reaches the disk before its manifest appears (the sync levels of
 * pbs-datastore.h; chunk-store.c writes without fsync). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ds-backup-internal.h"
#include "ends-with.h"
#include "pbs-errors.h"

int
pbs_ds_backup_blob (struct pbs_ds_backup *b, const char *name,
                    uint64_t encoded_size, const uint8_t *blob, size_t len)
{
  int r = -1;

  if (!name || !pbs_valid_safe_id (name)) {
    pbs__dsb_bad ("invalid file name '%s'", name ? name : "");
    return -1;
  }
  if (encoded_size < PBS_BLOB_HEADER_LEN
      || encoded_size > PBS_BLOB_MAX_ENCODED) {
    pbs__dsb_bad ("blob size %" PRIu64 " out of range (%u to %u)", encoded_size,
                  PBS_BLOB_HEADER_LEN, PBS_BLOB_MAX_ENCODED);
    return -1;
  }
  if (!ends_with (name, ".blob")) {
    pbs__dsb_bad ("wrong blob file extension: '%s'", name);
    return -1;
  }
  if (encoded_size != len) {
    pbs__dsb_bad ("got blob with unexpected length (%" PRIu64 " != %zu)",
                  encoded_size, len);
    return -1;
  }
  if (pbs_blob_kind (blob, len) < 0) {
    pbs__dsb_bad ("unable to parse raw blob - wrong magic");
    return -1;
  }
  if (len < pbs__dsb_blob_header_len (pbs_blob_kind (blob, len))) {
    pbs__dsb_bad ("encrypted blob too small (%zu bytes).", len);
    return -1;
  }
  if (pbs_blob_check_crc (blob, len) == -1) {
    pbs__dsb_bad ("Data blob has wrong CRC checksum.");
    return -1;
  }

  pthread_mutex_lock (&b->lock);
  if (strcmp (name, PBS_MANIFEST_NAME) == 0) {
    /* Kept until finish; see the comment at the top. */
    uint8_t *copy = malloc (len);
    if (!copy) {
      pbs__dsb_oom ();
      goto out;
    }
    memcpy (copy, blob, len);
    free (b->manifest);
    b->manifest = copy;
    b->manifest_len = len;
  } else if (pbs__ds_replace_file (b->snap_path, name, blob, len, false) ==
             -1) {
    goto out;
  }
  b->file_counter++;
  b->total.size += len;
  r = 0;
out:
  pthread_mutex_unlock (&b->lock);
  return r;
}

static int
fsync_at (int dirfd, const char *name, int flags)
{
  int fd = openat (dirfd, name, O_RDONLY | O_CLOEXEC | flags);
  int r;
  if (fd == -1)
    return -1;
  r = fsync (fd);
  close (fd);
  return r;
}

static int
cmp_digest (const void *a, const void *b)
{
  return memcmp (a, b, 32);
}

/* Level "own": fsync every chunk this session inserted and the
 * directories they were renamed into, the snapshot's files and the
 * snapshot directory itself.  Costs what this backup wrote, while syncfs()
 * also waits for every unrelated dirty page of the filesystem (a freshly
 * written 8 GiB image next to the datastore, say). */
static int
sync_own (struct pbs_ds_backup *b)
{
  DIR *d;
  struct dirent *de;
  char name[70], hex[65], last_dir[5] = "";
  size_t i;
  int fd;

  if (b->nnew)
    qsort (b->new_chunks, b->nnew, 32, cmp_digest);
  for (i = 0; i < b->nnew; i++) {
    pbs_digest_hex (b->new_chunks[i], hex);
    snprintf (name, sizeof name, "%.4s/%s", hex, hex);
    if (fsync_at (b->ds->chunksfd, name, 0) == -1) {
      pbs__dsb_os_error (errno, "fsync failed on chunk", name);
      return -1;
    }
    if (i + 1 == b->nnew ||
        memcmp (b->new_chunks[i + 1], b->new_chunks[i], 2) != 0) {
      memcpy (last_dir, hex, 4);
      if (fsync_at (b->ds->chunksfd, last_dir, O_DIRECTORY) == -1) {
        pbs__dsb_os_error (errno, "fsync failed on chunk directory", last_dir);
        return -1;
      }
    }
  }
  fd = dup (b->snap_fd);
  d = fd >= 0 ? fdopendir (fd) : NULL;
  if (!d) {
    if (fd >= 0)
      close (fd);
    pbs__dsb_os_error (errno, "unable to list snapshot", b->snap_path);
    return -1;
  }
  rewinddir (d);
  while ((de = readdir (d)))
    if (de->d_name[0] != '.' && fsync_at (b->snap_fd, de->d_name, 0) == -1) {
      pbs__dsb_os_error (errno, "fsync failed on", de->d_name);
      closedir (d);
      return -1;
    }
  closedir (d);
  if (fsync (b->snap_fd) == -1 || fsync (b->group_fd) == -1) {
    pbs__dsb_os_error (errno, "fsync failed on", b->snap_path);
    return -1;
  }
  return 0;
}

int
pbs_ds_backup_finish (struct pbs_ds_backup *b)
{
  struct pbs_manifest *m = NULL;
  char *json = NULL, stats[256];
  uint8_t *blob = NULL;
  size_t blen = 0;
  int i, r = -1;

  pthread_mutex_lock (&b->lock);
  if (pbs__dsb_ensure_unfinished (b) == -1)
    goto out;
  for (i = 1; i <= MAX_WID; i++)
    if (b->writers[i]) {
      pbs__dsb_bad ("found open index writer - unable to finish backup");
      goto out;
    }
  if (b->file_counter == 0) {
    pbs__dsb_bad ("backup does not contain valid files (file count == 0)");
    goto out;
  }
  if (!b->manifest) {
    char path[4096];
    snprintf (path, sizeof path, "%s/" PBS_MANIFEST_NAME, b->snap_path);
    pbs__dsb_bad ("unable to update manifest blob: no %s was uploaded "
                  "(upload it before finish)", PBS_MANIFEST_NAME);
    pbs__ds_fail_context (PBS_DS_FAIL_NO_MANIFEST, ENOENT, NULL, NULL, path);
    goto out;
  }
  m = pbs__ds_manifest_from_blob (b->manifest, b->manifest_len,
                                  PBS_MANIFEST_NAME);
  if (!m) {
    pbs__dsb_bad ("unable to update manifest blob - %s", pbs_errmsg ());
    goto out;
  }
  snprintf (stats, sizeof stats,
            "{\"compressed_size\": %" PRIu64 ", \"count\": %" PRIu64
            ", \"duplicates\": %" PRIu64 ", \"size\": %" PRIu64 "}",
            b->total.compressed_size, b->total.count, b->total.duplicates,
            b->total.size);
  if (pbs_manifest_set_unprotected (m, "chunk_upload_stats", stats) == -1 ||
      pbs_manifest_to_json (m, NULL, &json) == -1 ||
      pbs_blob_encode (json, strlen (json), NULL, true, &blob, &blen) == -1) {
    pbs__dsb_bad ("unable to update manifest blob - %s", pbs_errmsg ());
    goto out;
  }
  if (b->has_base && access (b->base_path, F_OK) == -1) {
    /* base.backup_dir.dir(): "type/id/time", without the namespace */
    pbs__dsb_bad (
        "base snapshot %s was removed during backup, cannot finish as "
        "chunks might be missing",
        pbs__dsb_path_tail (b->base_path, 3));
    goto out;
  }
  /* Durable before the manifest appears, so a snapshot with a manifest
   * never references data still only in the page cache.  (PBS syncs after
   * writing the manifest.) */
  if (b->ds->sync == PBS_DS_SYNC_FILESYSTEM && syncfs (b->ds->dirfd) == -1) {
    pbs__dsb_os_error (errno, "syncfs failed on datastore", b->ds->path);
    goto out;
  }
  if (b->ds->sync == PBS_DS_SYNC_OWN && sync_own (b) == -1)
    goto out;
  if (pbs__ds_replace_file (b->snap_path, PBS_MANIFEST_NAME, blob, blen,
                            b->ds->sync != PBS_DS_SYNC_NONE) == -1) {
    pbs__ds_prefix_error ("unable to update manifest blob - ");
    goto out;
  }
  if (b->ds->sync != PBS_DS_SYNC_NONE)
    fsync (b->snap_fd); /* the rename itself */
  b->finished = true;
  r = 0;
out:
  pthread_mutex_unlock (&b->lock);
  pbs_manifest_free (m);
  free (json);
  free (blob);
  return r;
}