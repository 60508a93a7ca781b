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
#include "pbs-errors.h"

/* The chunk's file name (64 hex) and its directory's (the first 4). */
static void
chunk_name (const uint8_t digest[32], char hex[65], char prefix[5])
{
  pbs_digest_hex (digest, hex);
  memcpy (prefix, hex, 4);
  prefix[4] = 0;
}

/* .chunks/PREFIX, never through a symlink: a planted one would put chunks
 * (and their renames) outside the datastore. */
static int
prefix_fd (struct pbs_datastore *ds, const char *prefix)
{
  char shown[4200];

  snprintf (shown, sizeof shown, "%s/.chunks/%s", ds->path, prefix);
  return pbs__ds_open_dir (ds->chunksfd, prefix, shown, false, NULL);
}

static bool
is_encrypted_magic (const uint8_t *blob, size_t len)
{
  int k = pbs_blob_kind (blob, len);
  return k == PBS_BLOB_ENCRYPTED || k == PBS_BLOB_ENCRYPTED_ZSTD;
}

/* Magic of the chunk already stored under HEX, for PBS's replace rules. */
static int
stored_kind (int pfd, const char *hex)
{
  uint8_t head[12];
  ssize_t r;
  int fd = openat (pfd, hex, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);

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
stored_chunk_intact (struct pbs_datastore *ds, const char *prefix,
                     const char *hex, const uint8_t digest[32],
                     const uint8_t *blob, size_t len)
{
  uint8_t *old = NULL, *data = NULL, check[32];
  size_t olen = 0, dlen = 0;
  char *path = NULL;
  bool ok = false;
  int kind;

  /* The directory is no symlink (prefix_fd); the file is read with
   * O_NOFOLLOW by pbs__ds_read_file. */
  if (asprintf (&path, "%s/.chunks/%s/%s", ds->path, prefix, hex) == -1)
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
  if (pbs_blob_decode (old, olen, NULL, PBS_CHUNK_MAX_RAW, &data, &dlen) ==
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

static int
insert_chunk (struct pbs_datastore *ds, int pfd, const char *prefix,
              const char *hex, const uint8_t digest[32],
              const uint8_t *blob, size_t len,
              bool *duplicate)
{
  char tmp[128];
  struct stat st;
  uint64_t n;
  int fd;

  if (fstatat (pfd, hex, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
      S_ISLNK (st.st_mode)) {
    pbs__set_error (ELOOP, "%s/.chunks/%s/%s is a symlink; a datastore holds "
                    "none, so it is not followed (remove it)", ds->path,
                    prefix, hex);
    return -1;
  }
  if (fstatat (pfd, hex, &st, AT_SYMLINK_NOFOLLOW) == 0 && st.st_size > 0 &&
      stored_chunk_intact (ds, prefix, hex, digest, blob, len)) {
    bool new_enc = is_encrypted_magic (blob, len);
    int old = stored_kind (pfd, hex);
    bool old_enc = old == PBS_BLOB_ENCRYPTED || old == PBS_BLOB_ENCRYPTED_ZSTD;
    bool keep;

    if ((uint64_t)st.st_size == len)
      keep = true;
    else if (new_enc && !old_enc && old >= 0) {
      pbs__set_error (EEXIST,
                      "chunk %s: refusing to replace an unencrypted "
                      "chunk with an encrypted one",
                      hex);
      return -1;
    } else if (new_enc && old == PBS_BLOB_ENCRYPTED &&
               pbs_blob_kind (blob, len) == PBS_BLOB_ENCRYPTED) {
      pbs__set_error (EBADMSG,
                      "chunk %s: encrypted chunk with a different "
                      "size is already stored",
                      hex);
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
      if (utimensat (pfd, hex, ts, AT_SYMLINK_NOFOLLOW) == -1) {
        pbs__set_error (errno, "%s/.chunks/%s/%s: %s", ds->path, prefix, hex,
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
  snprintf (tmp, sizeof tmp, "%s.tmp_%ld_%llu", hex, (long)getpid (),
            (unsigned long long)n);
  fd = openat (pfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd == -1) {
    pbs__set_error (errno, "%s/.chunks/%s/%s: %s", ds->path, prefix, tmp,
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
  if (renameat (pfd, tmp, pfd, hex) == -1)
    goto fail;
  return 0;
fail : {
  int e = errno;
  unlinkat (pfd, tmp, 0);
  pbs__set_error (e, "%s/.chunks/%s/%s: %s", ds->path, prefix, hex,
                  strerror (e));
  return -1;
}
}

int
pbs_datastore_insert_chunk (struct pbs_datastore *ds, const uint8_t digest[32],
                            const uint8_t *blob, size_t len, bool *duplicate)
{
  char hex[65], prefix[5];
  int pfd, r;

  if (duplicate)
    *duplicate = false;
  chunk_name (digest, hex, prefix);
  pfd = prefix_fd (ds, prefix);
  if (pfd == -1)
    return -1;
  r = insert_chunk (ds, pfd, prefix, hex, digest, blob, len, duplicate);
  close (pfd);
  return r;
}

int
pbs_datastore_load_chunk (struct pbs_datastore *ds, const uint8_t digest[32],
                          uint8_t **blob, size_t *len)
{
  char hex[65], prefix[5], *path = NULL;
  int r, pfd;

  chunk_name (digest, hex, prefix);
  pfd = prefix_fd (ds, prefix);
  if (pfd == -1)
    return -1;
  close (pfd);
  /* The directory is no symlink (checked just now); the file itself is
   * opened with O_NOFOLLOW by pbs__ds_read_file. */
  if (asprintf (&path, "%s/.chunks/%s/%s", ds->path, prefix, hex) == -1) {
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
  char hex[65], prefix[5];
  struct stat st;
  bool has;
  int pfd;

  chunk_name (digest, hex, prefix);
  pfd = prefix_fd (ds, prefix);
  if (pfd == -1)
    return false;
  has = fstatat (pfd, hex, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
        S_ISREG (st.st_mode) && st.st_size > 0;
  close (pfd);
  return has;
}

int
pbs_datastore_rename_bad_chunk (struct pbs_datastore *ds,
                                const uint8_t digest[32], char **new_path)
{
  char hex[65], prefix[5], bad[80];
  struct stat st;
  int counter, pfd, r = -1;

  if (new_path)
    *new_path = NULL;
  chunk_name (digest, hex, prefix);
  pfd = prefix_fd (ds, prefix);
  if (pfd == -1)
    return -1;
  /* PBS's rename_corrupted_chunk (src/backup/verify.rs): the first free
   * <hex>.N.bad for N = 0..9; when all ten exist, .9.bad is replaced. */
  for (counter = 0;; counter++) {
    snprintf (bad, sizeof bad, "%s.%d.bad", hex, counter);
    if (counter == 9
        || (fstatat (pfd, bad, &st, AT_SYMLINK_NOFOLLOW) == -1
            && errno == ENOENT))
      break;
  }
  if (renameat (pfd, hex, pfd, bad) == -1) {
    if (errno == ENOENT)
      r = 0; /* PBS ignores a chunk that is already gone */
    else
      pbs__set_error (errno, "%s/.chunks/%s/%s: could not rename corrupted "
                      "chunk: %s", ds->path, prefix, hex, strerror (errno));
    goto out;
  }
  if (new_path
      && asprintf (new_path, "%s/.chunks/%s/%s", ds->path, prefix, bad)
             == -1) {
    *new_path = NULL;
    pbs__set_error (ENOMEM, "out of memory");
    goto out;
  }
  r = 1;
out:
  close (pfd);
  return r;
}
