/* chunk-store.c -- .chunks/<first 4 hex>/<64 hex>, one DataBlob each,
 * inserted as PBS's ChunkStore::insert_chunk does (docs/pbs-protocol.md §6.3).
 *
 * Durability: no fsync per chunk here.  PBS's default datastore sync level
 * is "filesystem" (pbs-api-types DatastoreFSyncLevel, #[default]
 * Filesystem): one syncfs() when the backup finishes.  ds-backup.c syncs
 * in finish, before the manifest (the mark of a complete snapshot) is
 * renamed into place; see there for the levels.
 *
 * Threads: no store-wide mutex (PBS has one).  Each insert writes a temp
 * file with a unique name in the chunk's own directory and renames it, so
 * concurrent inserts of one digest both end with a complete file under
 * the final name, and the final name never holds a partial chunk. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ds-internal.h"
#include "pbs-internal.h"

static void
chunk_name (const uint8_t digest[32], char name[70])
{
  char hex[65];
  pbs_digest_hex (digest, hex);
  snprintf (name, 70, "%.4s/%s", hex, hex);
}

static bool
is_encrypted_magic (const uint8_t *blob, size_t len)
{
  int k = pbs_blob_kind (blob, len);
  return k == PBS_BLOB_ENCRYPTED || k == PBS_BLOB_ENCRYPTED_ZSTD;
}

/* Magic of the chunk already stored under NAME, for PBS's replace rules. */
static int
stored_kind (struct pbs_datastore *ds, const char *name)
{
  uint8_t head[12];
  ssize_t r;
  int fd = openat (ds->chunksfd, name, O_RDONLY | O_CLOEXEC);

  if (fd == -1)
    return -1;
  r = pread (fd, head, sizeof head, 0);
  close (fd);
  if (r != (ssize_t)sizeof head)
    return -1;
  return pbs_blob_kind (head, sizeof head);
}

/* Is the chunk stored under NAME intact?  BLOB (LEN bytes) is the copy
 * being inserted, already checked by the caller (CRC recomputed; digest and
 * size of an unencrypted one verified by ds-backup.c).
 *
 * PBS's insert_chunk keeps any stored chunk of the same size unread, so a
 * chunk damaged on disk (bit rot, a flipped byte) stays damaged for every
 * later backup that writes it.  Here a stored chunk is only kept after it
 * proved sound: byte-equal to BLOB (the usual case for plain chunks: zstd
 * is deterministic), or else a valid CRC and, unencrypted, data whose
 * sha256 is DIGEST (another zstd version compresses differently).  An
 * encrypted chunk differs from BLOB in its random IV; without the key the
 * CRC is all that can be checked (it catches every 1-byte change).
 * Costs one read of the stored chunk, only for chunks a backup writes,
 * never for chunks it references by digest. */
static bool
stored_chunk_intact (struct pbs_datastore *ds, const char *name,
                     const uint8_t digest[32], const uint8_t *blob,
                     size_t len)
{
  uint8_t *old = NULL, *data = NULL, check[32];
  size_t olen = 0, dlen = 0;
  char *path = NULL;
  bool ok = false;
  int kind;

  if (asprintf (&path, "%s/.chunks/%s", ds->path, name) == -1)
    return true; /* cannot tell: keep it, as PBS would */
  if (pbs__ds_read_file (path, PBS_BLOB_MAX_ENCODED, &old, &olen) == -1)
    goto out;
  if (olen == len && memcmp (old, blob, len) == 0) {
    ok = true;
    goto out;
  }
  kind = pbs_blob_kind (old, olen);
  if (kind < 0 || pbs_blob_check_crc (old, olen) == -1)
    goto out;
  if (kind == PBS_BLOB_ENCRYPTED || kind == PBS_BLOB_ENCRYPTED_ZSTD) {
    ok = true;
    goto out;
  }
  if (pbs_blob_decode (old, olen, NULL, 16u * 1024 * 1024, &data, &dlen) ==
      -1)
    goto out;
  pbs_chunk_digest (NULL, data, dlen, check);
  ok = memcmp (check, digest, 32) == 0;
out:
  free (data);
  free (old);
  free (path);
  return ok;
}

int
pbs_datastore_insert_chunk (struct pbs_datastore *ds, const uint8_t digest[32],
                            const uint8_t *blob, size_t len, bool *duplicate)
{
  char name[70], tmp[128];
  struct stat st;
  uint64_t n;
  int fd;

  if (duplicate)
    *duplicate = false;
  chunk_name (digest, name);
  if (fstatat (ds->chunksfd, name, &st, 0) == 0 && st.st_size > 0 &&
      stored_chunk_intact (ds, name, digest, blob, len)) {
    bool new_enc = is_encrypted_magic (blob, len);
    int old = stored_kind (ds, name);
    bool old_enc = old == PBS_BLOB_ENCRYPTED || old == PBS_BLOB_ENCRYPTED_ZSTD;
    bool keep;

    if ((uint64_t)st.st_size == len)
      keep = true;
    else if (new_enc && !old_enc && old >= 0) {
      pbs__set_error (EEXIST,
                      "chunk %s: refusing to replace an unencrypted "
                      "chunk with an encrypted one",
                      name + 5);
      return -1;
    } else if (new_enc && old == PBS_BLOB_ENCRYPTED &&
               pbs_blob_kind (blob, len) == PBS_BLOB_ENCRYPTED) {
      pbs__set_error (EBADMSG,
                      "chunk %s: encrypted chunk with a different "
                      "size is already stored",
                      name + 5);
      return -1;
    } else if (new_enc)
      keep = true; /* other encrypted mismatches: PBS keeps the old one */
    else
      /* Plain: a smaller stored chunk (better compressed) stays; a bigger
       * one, or one we cannot read, is replaced. */
      keep = old >= 0 && (uint64_t)st.st_size < len;
    if (keep) {
      /* Touch atime: PBS's GC deletes chunks whose atime is older than
       * the GC start minus 24h5m, so a reference must refresh it. */
      struct timespec ts[2] = {{.tv_nsec = UTIME_NOW}, {.tv_nsec = UTIME_OMIT}};
      if (utimensat (ds->chunksfd, name, ts, 0) == -1) {
        pbs__set_error (errno, "%s/.chunks/%s: %s", ds->path, name,
                        strerror (errno));
        return -1;
      }
      if (duplicate)
        *duplicate = true;
      return 0;
    }
  }

  pthread_mutex_lock (&ds->tmp_lock);
  n = ++ds->tmp_counter;
  pthread_mutex_unlock (&ds->tmp_lock);
  snprintf (tmp, sizeof tmp, "%s.tmp_%ld_%llu", name, (long)getpid (),
            (unsigned long long)n);
  fd =
      openat (ds->chunksfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd == -1) {
    pbs__set_error (errno, "%s/.chunks/%s: %s", ds->path, tmp,
                    strerror (errno));
    return -1;
  }
  if (pbs__ds_write_all (fd, blob, len, 0) == -1) {
    int e = errno;
    close (fd);
    errno = e;
    goto fail;
  }
  if (close (fd) == -1)
    goto fail;
  if (renameat (ds->chunksfd, tmp, ds->chunksfd, name) == -1)
    goto fail;
  return 0;
fail : {
  int e = errno;
  unlinkat (ds->chunksfd, tmp, 0);
  pbs__set_error (e, "%s/.chunks/%s: %s", ds->path, name, strerror (e));
  return -1;
}
}

int
pbs_datastore_load_chunk (struct pbs_datastore *ds, const uint8_t digest[32],
                          uint8_t **blob, size_t *len)
{
  char name[70], *path = NULL;
  int r;

  chunk_name (digest, name);
  if (asprintf (&path, "%s/.chunks/%s", ds->path, name) == -1) {
    pbs__set_error (ENOMEM, "out of memory");
    return -1;
  }
  r = pbs__ds_read_file (path, PBS_BLOB_MAX_ENCODED, blob, len);
  free (path);
  return r;
}

bool
pbs_datastore_has_chunk (struct pbs_datastore *ds, const uint8_t digest[32])
{
  char name[70];
  struct stat st;

  chunk_name (digest, name);
  return fstatat (ds->chunksfd, name, &st, 0) == 0 && S_ISREG (st.st_mode) &&
         st.st_size > 0;
}

int
pbs_datastore_rename_bad_chunk (struct pbs_datastore *ds,
                                const uint8_t digest[32], char **new_path)
{
  char name[70], bad[80];
  struct stat st;
  int counter;

  if (new_path)
    *new_path = NULL;
  chunk_name (digest, name);
  /* PBS's rename_corrupted_chunk (src/backup/verify.rs): the first free
   * <hex>.N.bad for N = 0..9; when all ten exist, .9.bad is replaced. */
  for (counter = 0;; counter++) {
    snprintf (bad, sizeof bad, "%s.%d.bad", name, counter);
    if (counter == 9 || (fstatat (ds->chunksfd, bad, &st,
                                  AT_SYMLINK_NOFOLLOW) == -1 &&
                         errno == ENOENT))
      break;
  }
  if (renameat (ds->chunksfd, name, ds->chunksfd, bad) == -1) {
    if (errno == ENOENT)
      return 0; /* PBS ignores a chunk that is already gone */
    pbs__set_error (errno, "%s/.chunks/%s: could not rename corrupted "
                    "chunk: %s", ds->path, name, strerror (errno));
    return -1;
  }
  if (new_path &&
      asprintf (new_path, "%s/.chunks/%s", ds->path, bad) == -1) {
    *new_path = NULL;
    pbs__set_error (ENOMEM, "out of memory");
    return -1;
  }
  return 1;
}
