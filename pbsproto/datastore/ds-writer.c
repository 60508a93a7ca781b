/* ds-writer.c -- the fixed index writer of a backup session
 * (docs/pbs-protocol.md §3.3-§3.6, PBS's FixedIndexWriter and
 * upload_chunk.rs): open, chunks (checked, or trusted from the local
 * backend), appends, close. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zlib.h>

#include "checked-overflow.h"
#include "ds-backup-internal.h"
#include "ends-with.h"
#include "pbs-errors.h"

void
pbs__dsb_writer_free (struct fixed_writer *w, bool remove_tmp)
{
  if (!w)
    return;
  if (w->fd >= 0)
    close (w->fd);
  if (remove_tmp && w->tmp_path)
    unlink (w->tmp_path);
  pbs_fidx_free (w->idx);
  free (w->name);
  free (w->tmp_path);
  free (w->final_path);
  free (w);
}

static bool
wid_in_range (int wid)
{
  if (wid < 1 || wid > MAX_WID) {
    pbs__dsb_bad ("invalid writer id %d (1 to %d)", wid, MAX_WID);
    return false;
  }
  return true;
}

size_t
pbs__dsb_blob_header_len (int kind)
{
  return kind == PBS_BLOB_ENCRYPTED || kind == PBS_BLOB_ENCRYPTED_ZSTD
             ? PBS_BLOB_ENCRYPTED_HEADER_LEN
             : PBS_BLOB_HEADER_LEN;
}

/* Lock held: the base index NAME that a reuse checksum refers to
 * (*BASE; *PARSED if read here, for the caller to free), and its
 * checksum.  PBS's texts (src/api2/backup/mod.rs create_fixed_index).
 * 0 or -1. */
static int
reuse_base (struct pbs_ds_backup *b, const char *name,
            const struct pbs_fidx **base, struct pbs_fidx **parsed,
            uint8_t csum[32])
{
  uint8_t *data = NULL;
  size_t len = 0;

  *base = NULL;
  *parsed = NULL;
  if (!b->has_base) {
    pbs__dsb_bad ("cannot reuse index - no valid previous backup exists");
    return -1;
  }
  /* Read and parsed once per session: a base the client downloaded
   * (pbs_ds_backup_previous) is not read again. */
  *base = pbs__dsb_base_index (b, name);
  if (!*base
      && pbs__dsb_read_base_file (b, name, MAX_INDEX_FILE, &data, &len) == 0)
    *base = *parsed = pbs_fidx_parse (data, len);
  free (data);
  if (!*base) {
    pbs__dsb_bad ("cannot reuse index - no previous backup exists for archive");
    return -1;
  }
  pbs_fidx_csum (*base, csum);
  return 0;
}

int
pbs_ds_backup_base_csum (struct pbs_ds_backup *b, const char *name,
                         uint8_t csum[32])
{
  const struct pbs_fidx *base;
  struct pbs_fidx *parsed = NULL;
  int r = -1;

  if (!name || !pbs_valid_safe_id (name)) {
    pbs__dsb_bad ("invalid archive name '%s'", name ? name : "");
    return -1;
  }
  pthread_mutex_lock (&b->lock);
  if (pbs__dsb_ensure_unfinished (b) == 0)
    r = reuse_base (b, name, &base, &parsed, csum);
  pthread_mutex_unlock (&b->lock);
  pbs_fidx_free (parsed);
  return r;
}

int
pbs_ds_backup_fixed_index (struct pbs_ds_backup *b, const char *name,
                           uint64_t size, const uint8_t *reuse_csum)
{
  struct fixed_writer *w = NULL;
  const struct pbs_fidx *base = NULL;
  struct pbs_fidx *base_parsed = NULL; /* a base not downloaded before */
  uint8_t *enc = NULL;
  size_t enclen = 0;
  int wid = -1;

  if (!name || !pbs_valid_safe_id (name)) {
    pbs__dsb_bad ("invalid archive name '%s'", name ? name : "");
    return -1;
  }
  if (size < 1 || size > INT64_MAX) {
    pbs__dsb_bad ("invalid index size %" PRIu64, size);
    return -1;
  }
  if (!ends_with (name, ".fidx")) {
    pbs__dsb_bad ("wrong archive extension: '%s'", name);
    return -1;
  }

  pthread_mutex_lock (&b->lock);
  if (pbs__dsb_ensure_unfinished (b) == -1)
    goto out;
  if (reuse_csum) {
    uint8_t csum[32];

    if (reuse_base (b, name, &base, &base_parsed, csum) == -1)
      goto out;
    if (memcmp (csum, reuse_csum, 32) != 0) {
      char want[65], have[65];
      pbs_digest_hex (reuse_csum, want);
      pbs_digest_hex (csum, have);
      pbs__dsb_bad ("reuse checksum %s does not match the base index's %s: "
                    "cannot do an incremental backup of %s",
                    want, have, name);
      pbs__ds_fail_context (PBS_DS_FAIL_REUSE_CSUM, 0, have, NULL, NULL);
      goto out;
    }
  }
  if (b->uid >= MAX_WID) {
    pbs__dsb_bad ("too many index writers in one backup session");
    goto out;
  }

  w = calloc (1, sizeof *w);
  if (!w) {
    pbs__dsb_oom ();
    goto out;
  }
  w->fd = -1;
  w->size = size;
  w->incremental = reuse_csum != NULL;
  w->name = strdup (name);
  if (!w->name ||
      asprintf (&w->tmp_path, "%s/%.*s.tmp_fidx", b->snap_path,
                (int)(strlen (name) - 5), name) == -1 ||
      asprintf (&w->final_path, "%s/%s", b->snap_path, name) == -1) {
    pbs__dsb_oom ();
    goto out;
  }
  w->idx = pbs_fidx_new (size, PBS_CHUNK_SIZE);
  if (!w->idx)
    goto out;
  if (base) {
    if (base->count != w->idx->count) {
      pbs__dsb_bad ("clone_data_from failed - index sizes not equal");
      goto out;
    }
    memcpy (w->idx->digest, base->digest, base->count * (size_t)32);
  }
  /* Like PBS's FixedIndexWriter: the .tmp_fidx exists from now on, with
   * header and digest slots, so a full disk shows up here already. */
  if (pbs_fidx_encode (w->idx, &enc, &enclen) == -1)
    goto out;
  w->fd = open (w->tmp_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (w->fd == -1) {
    pbs__dsb_os_error (errno, "unable to create fixed index", w->tmp_path);
    goto out;
  }
  if (pbs__ds_write_all (w->fd, enc, enclen, 0) == -1) {
    pbs__dsb_os_error (errno, "unable to write fixed index", w->tmp_path);
    goto out;
  }
  wid = ++b->uid;
  b->writers[wid] = w;
  w = NULL;
out:
  pthread_mutex_unlock (&b->lock);
  pbs__dsb_writer_free (w, true);
  pbs_fidx_free (base_parsed);
  free (enc);
  return wid;
}

/* The rules on a chunk's announced sizes and its blob header that hold
 * whoever hands the chunk in (PBS's parameter schema of upload_chunk and
 * DataBlob's header checks).  *KIND and *HDR: the blob's kind and header
 * length. */
static int
check_chunk_shape (uint64_t size, uint64_t encoded_size, const uint8_t *blob,
                   size_t len, int *kind, size_t *hdr)
{
  if (size < 1 || size > PBS_CHUNK_MAX_RAW) {
    pbs__dsb_bad ("chunk size %" PRIu64 " out of range (1 to %u)", size,
                  PBS_CHUNK_MAX_RAW);
    return -1;
  }
  if (encoded_size < 13 || encoded_size > PBS_BLOB_MAX_ENCODED) {
    pbs__dsb_bad ("encoded chunk size %" PRIu64 " out of range (13 to %u)",
                  encoded_size, PBS_BLOB_MAX_ENCODED);
    return -1;
  }
  if (len > encoded_size) {
    pbs__dsb_bad ("uploaded chunk is larger than announced.");
    return -1;
  }
  if (len != encoded_size) {
    pbs__dsb_bad ("uploaded chunk has unexpected size.");
    return -1;
  }
  *kind = pbs_blob_kind (blob, len);
  if (*kind < 0) {
    pbs__dsb_bad ("unable to parse raw blob - wrong magic");
    return -1;
  }
  *hdr = pbs__dsb_blob_header_len (*kind);
  if (len < *hdr) {
    pbs__dsb_bad ("encrypted blob too small (%zu bytes).", len);
    return -1;
  }
  return 0;
}

/* Store a checked chunk and register it with writer WID: the part of
 * §3.4 after the content checks, the same for both entries. */
static int
store_chunk (struct pbs_ds_backup *b, int wid, const uint8_t digest[32],
             uint64_t size, const uint8_t *blob, size_t len)
{
  struct fixed_writer *w;
  bool dup = false;
  int r = -1;

  /* Stored before the writer is looked up, as PBS does: a bad wid still
   * leaves the chunk in the store. */
  if (pbs_datastore_insert_chunk (b->ds, digest, blob, len, &dup) == -1) {
    return -1;
  }

  pthread_mutex_lock (&b->lock);
  if (pbs__dsb_ensure_unfinished (b) == -1)
    goto unlock;
  w = b->writers[wid];
  if (!w) {
    pbs__dsb_bad ("fixed writer '%d' not registered", wid);
    goto unlock;
  }
  if (size > PBS_CHUNK_SIZE) {
    /* PBS's text lacks the closing parenthesis; kept verbatim. */
    pbs__dsb_bad ("fixed writer '%s' - got large chunk (%" PRIu64 " > %u",
                  w->name, size, PBS_CHUNK_SIZE);
    goto unlock;
  }
  if (size < PBS_CHUNK_SIZE && ++w->small_chunks > 1) {
    pbs__dsb_bad (
        "fixed writer '%d' - detected multiple end chunks (chunk size too "
        "small)",
        wid);
    goto unlock;
  }
  w->stat.count++;
  w->stat.size += size;
  w->stat.compressed_size += len;
  if (dup)
    w->stat.duplicates++;
  else if (b->ds->sync == PBS_DS_SYNC_OWN) {
    if (b->nnew == b->new_cap) {
      size_t cap = b->new_cap ? b->new_cap * 2 : 64;
      uint8_t (*v)[32] = realloc (b->new_chunks, cap * sizeof *v);
      if (!v) {
        pbs__dsb_oom ();
        goto unlock;
      }
      b->new_chunks = v;
      b->new_cap = cap;
    }
    memcpy (b->new_chunks[b->nnew++], digest, 32);
  }
  if (pbs__digest_set_put (b->known, digest, (uint32_t)size) == -1)
    goto unlock;
  r = 0;
unlock:
  pthread_mutex_unlock (&b->lock);
  return r;
}

int
pbs_ds_backup_fixed_chunk (struct pbs_ds_backup *b, int wid,
                           const uint8_t digest[32], uint64_t size,
                           uint64_t encoded_size, const uint8_t *blob,
                           size_t len)
{
  uint8_t *copy = NULL;
  size_t hdr;
  uint32_t crc;
  int kind, r = -1;

  if (!wid_in_range (wid))
    return -1;
  if (check_chunk_shape (size, encoded_size, blob, len, &kind, &hdr) == -1)
    return -1;
  /* Trap 7: the server ignores the uploaded CRC and stores its own.  The
   * blob is copied only when the uploaded CRC is wrong. */
  crc = (uint32_t)crc32 (0L, blob + hdr, (uInt)(len - hdr));
  if (crc != ((uint32_t)blob[8] | (uint32_t)blob[9] << 8 |
              (uint32_t)blob[10] << 16 | (uint32_t)blob[11] << 24)) {
    copy = malloc (len);
    if (!copy) {
      pbs__dsb_oom ();
      return -1;
    }
    memcpy (copy, blob, len);
    copy[8] = crc & 0xff;
    copy[9] = (crc >> 8) & 0xff;
    copy[10] = (crc >> 16) & 0xff;
    copy[11] = (crc >> 24) & 0xff;
    blob = copy;
  }

  if (kind == PBS_BLOB_PLAIN || kind == PBS_BLOB_ZSTD) {
    uint8_t *data = NULL, check[32];
    const uint8_t *p = blob + hdr;
    size_t dlen = len - hdr;

    /* A plain payload is the data itself: no decode, no second CRC. */
    if (kind == PBS_BLOB_ZSTD) {
      if (pbs_blob_decode (blob, len, NULL, PBS_CHUNK_MAX_RAW, &data,
                           &dlen) == -1) {
        pbs__dsb_bad ("%s", pbs_errmsg ());
        goto out;
      }
      p = data;
    }
    pbs_chunk_digest (NULL, p, dlen, check);
    free (data);
    if (memcmp (check, digest, 32) != 0) {
      pbs__dsb_bad ("detected chunk with wrong digest.");
      goto out;
    }
    if (dlen != size) {
      pbs__dsb_bad ("detected chunk with wrong length (%" PRIu64 " != %zu)",
                    size, dlen);
      goto out;
    }
  }
  r = store_chunk (b, wid, digest, size, blob, len);
out:
  free (copy);
  return r;
}

int
pbs_ds_backup_fixed_chunk_trusted (struct pbs_ds_backup *b, int wid,
                                   const uint8_t digest[32], uint64_t size,
                                   const uint8_t *blob, size_t len)
{
  size_t hdr;
  int kind;

  if (!wid_in_range (wid) ||
      check_chunk_shape (size, len, blob, len, &kind, &hdr) == -1)
    return -1;
  return store_chunk (b, wid, digest, size, blob, len);
}

/* PBS's FixedIndexWriter::check_chunk_alignment (END = offset + length). */
static int
check_alignment (struct fixed_writer *w, uint64_t offset, uint32_t clen,
                 size_t *slot)
{
  uint64_t end;

  if (ADD_OVERFLOW (offset, (uint64_t)clen, &end) || end > w->size) {
    pbs__dsb_bad ("chunk data exceeds size (%" PRIu64 " >= %" PRIu64 ")",
                  ADD_OVERFLOW (offset, (uint64_t)clen, &end) ? UINT64_MAX
                                                              : end,
                  w->size);
    return -1;
  }
  if ((end != w->size && clen != PBS_CHUNK_SIZE) || clen > PBS_CHUNK_SIZE ||
      clen == 0) {
    pbs__dsb_bad ("chunk with unexpected length (%" PRIu32 " != %u", clen,
                  PBS_CHUNK_SIZE);
    return -1;
  }
  if (offset % PBS_CHUNK_SIZE != 0) {
    pbs__dsb_bad ("got unaligned chunk (pos = %" PRIu64 ")", offset);
    return -1;
  }
  *slot = (size_t)(offset / PBS_CHUNK_SIZE);
  if (*slot >= w->idx->count) {
    pbs__dsb_bad ("add digest failed - index out of range (%zu >= %zu)", *slot,
                  w->idx->count);
    return -1;
  }
  return 0;
}

int
pbs_ds_backup_fixed_append (struct pbs_ds_backup *b, int wid, size_t n,
                            const uint8_t (*digests)[32],
                            const uint64_t *offsets)
{
  size_t i;

  if (!wid_in_range (wid))
    return -1;
  for (i = 0; i < n; i++)
    if (offsets[i] > INT64_MAX) {
      pbs__dsb_bad ("offset %" PRIu64 " is out of range", offsets[i]);
      return -1;
    }
  /* Pairs one by one: an error leaves the earlier pairs applied (§3.5). */
  for (i = 0; i < n; i++) {
    uint32_t clen;
    struct fixed_writer *w;
    size_t slot;

    pthread_mutex_lock (&b->lock);
    if (!pbs__digest_set_get (b->known, digests[i], &clen)) {
      char hex[65];
      pthread_mutex_unlock (&b->lock);
      pbs_digest_hex (digests[i], hex);
      pbs__dsb_bad ("no such chunk %s", hex);
      return -1;
    }
    if (pbs__dsb_ensure_unfinished (b) == -1) {
      pthread_mutex_unlock (&b->lock);
      return -1;
    }
    w = b->writers[wid];
    if (!w) {
      pthread_mutex_unlock (&b->lock);
      pbs__dsb_bad ("fixed writer '%d' not registered", wid);
      return -1;
    }
    if (check_alignment (w, offsets[i], clen, &slot) == -1) {
      pthread_mutex_unlock (&b->lock);
      return -1;
    }
    w->chunk_count++;
    memcpy (w->idx->digest[slot], digests[i], 32);
    pthread_mutex_unlock (&b->lock);
  }
  return 0;
}

void
pbs_ds_backup_require_chunks (struct pbs_ds_backup *b)
{
  b->require_chunks = true;
}

/* -1 with the error set if W's index references a chunk that is not in
 * the store: a digest registered from the base (§3.2) whose chunk was
 * moved aside by a repair, or lost.  PBS accepts such an index; the
 * snapshot would then fail to restore.  One stat per chunk. */
static int
missing_chunk (struct pbs_ds_backup *b, struct fixed_writer *w)
{
  size_t i;
  char hex[65];

  for (i = 0; i < w->idx->count; i++)
    if ((i == 0 || memcmp (w->idx->digest[i], w->idx->digest[i - 1], 32)) &&
        !pbs_datastore_has_chunk (b->ds, w->idx->digest[i])) {
      pbs_digest_hex (w->idx->digest[i], hex);
      pbs__set_error (ENOENT,
                      "fixed writer '%s' close failed - chunk %s is "
                      "missing from the datastore",
                      w->name, hex);
      return -1;
    }
  return 0;
}

int
pbs_ds_backup_fixed_close (struct pbs_ds_backup *b, int wid,
                           uint64_t chunk_count, uint64_t size,
                           const uint8_t csum[32])
{
  struct fixed_writer *w;
  uint8_t *enc = NULL;
  size_t enclen = 0;
  int r = -1;

  if (!wid_in_range (wid))
    return -1;
  if (chunk_count > INT64_MAX || size > INT64_MAX) {
    pbs__dsb_bad ("%s %" PRIu64 " out of range",
                  chunk_count > INT64_MAX ? "chunk count" : "size",
                  chunk_count > INT64_MAX ? chunk_count : size);
    return -1;
  }
  pthread_mutex_lock (&b->lock);
  if (pbs__dsb_ensure_unfinished (b) == -1)
    goto out;
  /* The writer leaves the session first: any failure below loses it. */
  w = b->writers[wid];
  if (!w) {
    pbs__dsb_bad ("fixed writer '%d' not registered", wid);
    goto out;
  }
  b->writers[wid] = NULL;
  if (w->chunk_count != chunk_count) {
    pbs__dsb_bad (
        "fixed writer '%s' close failed - received wrong number of chunk "
        "(%" PRIu64 " != %" PRIu64 ")",
        w->name, w->chunk_count, chunk_count);
    pbs__dsb_writer_free (w, true);
    goto out;
  }
  if (!w->incremental) {
    if (chunk_count != w->idx->count) {
      pbs__dsb_bad (
          "fixed writer '%s' close failed - unexpected chunk count (%zu != "
          "%" PRIu64 ")",
          w->name, w->idx->count, chunk_count);
      pbs__dsb_writer_free (w, true);
      goto out;
    }
    if (size != w->size) {
      pbs__dsb_bad (
          "fixed writer '%s' close failed - unexpected file size (%" PRIu64
          " != %" PRIu64 ")",
          w->name, w->size, size);
      pbs__dsb_writer_free (w, true);
      goto out;
    }
  }
  if (b->require_chunks && missing_chunk (b, w) == -1) {
    pbs__dsb_writer_free (w, true);
    goto out;
  }
  /* Header csum, write, rename into place, THEN compare (trap 12). */
  if (pbs_fidx_encode (w->idx, &enc, &enclen) == -1) {
    pbs__dsb_bad ("%s", pbs_errmsg ());
    pbs__dsb_writer_free (w, true);
    goto out;
  }
  if (pbs__ds_write_all (w->fd, enc, enclen, 0) == -1 ||
      ftruncate (w->fd, (off_t)enclen) == -1) {
    pbs__dsb_os_error (errno, "unable to write fixed index", w->tmp_path);
    pbs__dsb_writer_free (w, true);
    goto out;
  }
  if (close (w->fd) == -1) {
    w->fd = -1;
    pbs__dsb_os_error (errno, "unable to write fixed index", w->tmp_path);
    pbs__dsb_writer_free (w, true);
    goto out;
  }
  w->fd = -1;
  if (rename (w->tmp_path, w->final_path) == -1) {
    pbs__dsb_os_error (errno, "unable to rename fixed index", w->tmp_path);
    pbs__dsb_writer_free (w, true);
    goto out;
  }
  pbs_fidx_csum (w->idx, enc); /* enc holds >= 4096 bytes */
  if (memcmp (enc, csum, 32) != 0) {
    pbs__dsb_bad ("fixed writer '%s' close failed - got unexpected checksum",
                  w->name);
    pbs__dsb_writer_free (w, false);
    goto out;
  }
  b->file_counter++;
  b->total.count += w->stat.count;
  b->total.size += w->stat.size;
  b->total.compressed_size += w->stat.compressed_size;
  b->total.duplicates += w->stat.duplicates;
  pbs__dsb_writer_free (w, false);
  r = 0;
out:
  pthread_mutex_unlock (&b->lock);
  free (enc);
  return r;
}