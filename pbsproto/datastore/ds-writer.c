/* ds-writer.c -- the fixed index writer of a backup session
 * (docs/pbs-protocol.md §3.3-§3.6, PBS's FixedIndexWriter and
 * upload_chunk.rs): open, chunks (checked, or trusted from the local
 * backend), appends, close. */
#include <ctype.h>
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
    pbs__dsb_bad (
        "parameter verification failed - 'wid': value must have a %s value "
        "of %d (got %d)",
        wid < 1 ? "minimum" : "maximum", wid < 1 ? 1 : MAX_WID, wid);
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

int
pbs_ds_backup_fixed_index (struct pbs_ds_backup *b, const char *name,
                           uint64_t size, const char *reuse_csum)
{
  struct fixed_writer *w = NULL;
  const struct pbs_fidx *base = NULL;
  struct pbs_fidx *base_parsed = NULL; /* a base not downloaded before */
  uint8_t *enc = NULL;
  size_t enclen = 0;
  int wid = -1;

  if (!name || !pbs_valid_safe_id (name)) {
    pbs__dsb_bad (
        "parameter verification failed - 'archive-name': value does not "
        "match the regex pattern");
    return -1;
  }
  if (size < 1 || size > INT64_MAX) {
    pbs__dsb_bad (
        "parameter verification failed - 'size': value must have a minimum "
        "value of 1 (got %" PRIu64 ")",
        size);
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
    uint8_t *data = NULL, csum[32];
    size_t len = 0;
    char hex[65];

    if (!b->has_base) {
      pbs__dsb_bad ("cannot reuse index - no valid previous backup exists");
      goto out;
    }
    /* Read and parsed once per session: a base the client downloaded
     * (pbs_ds_backup_previous) is not read again. */
    base = pbs__dsb_base_index (b, name);
    if (!base
        && pbs__dsb_read_base_file (b, name, MAX_INDEX_FILE, &data, &len) == 0)
      base = base_parsed = pbs_fidx_parse (data, len);
    free (data);
    if (!base) {
      pbs__dsb_bad (
          "cannot reuse index - no previous backup exists for archive");
      goto out;
    }
    pbs_fidx_csum (base, csum);
    pbs_digest_hex (csum, hex);
    /* A string comparison with the lower-case hex, as PBS does: an
     * upper-case reuse-csum never matches. */
    if (strcmp (hex, reuse_csum) != 0) {
      pbs__dsb_bad (
          "expected csum (%s) doesn't match last backup's (%s), cannot do "
          "incremental backup",
          reuse_csum, hex);
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
    pbs__dsb_bad (
        "parameter verification failed - 'size': value must have a %s value "
        "of %u (got %" PRIu64 ")",
        size < 1 ? "minimum" : "maximum", size < 1 ? 1 : PBS_CHUNK_MAX_RAW,
        size);
    return -1;
  }
  if (encoded_size < 13 || encoded_size > PBS_BLOB_MAX_ENCODED) {
    pbs__dsb_bad (
        "parameter verification failed - 'encoded-size': value must have a "
        "%s value of %u (got %" PRIu64 ")",
        encoded_size < 13 ? "minimum" : "maximum",
        encoded_size < 13 ? 13 : PBS_BLOB_MAX_ENCODED, encoded_size);
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
    pbs__ds_restate_error (pbs_errno () == ENOSPC ? 500 : 400, NULL);
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
                           const char *digest_hex, uint64_t size,
                           uint64_t encoded_size, const uint8_t *blob,
                           size_t len)
{
  uint8_t digest[32], *copy = NULL;
  size_t hdr;
  uint32_t crc;
  int kind, r = -1;

  if (!wid_in_range (wid))
    return -1;
  if (!pbs__ds_is_lower_hex64 (digest_hex)) {
    pbs__dsb_bad (
        "parameter verification failed - 'digest': value does not match "
        "the regex pattern");
    return -1;
  }
  if (check_chunk_shape (size, encoded_size, blob, len, &kind, &hdr) == -1)
    return -1;
  pbs_digest_parse (digest_hex, digest);
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
pbs_ds_backup_fixed_append_lists (struct pbs_ds_backup *b, int wid,
                                  size_t ndigests,
                                  const char *const *digest_hex,
                                  size_t noffsets, const uint64_t *offsets)
{
  size_t i;

  if (!wid_in_range (wid))
    return -1;
  for (i = 0; i < ndigests; i++)
    if (!pbs__ds_is_lower_hex64 (digest_hex[i])) {
      pbs__dsb_bad (
          "parameter verification failed - 'digest-list': [%zu]: value "
          "does not match the regex pattern",
          i);
      return -1;
    }
  for (i = 0; i < noffsets; i++)
    if (offsets[i] > INT64_MAX) {
      pbs__dsb_bad (
          "parameter verification failed - 'offset-list': [%zu]: expected "
          "integer",
          i);
      return -1;
    }
  if (noffsets != ndigests) {
    pbs__dsb_bad ("offset list has wrong length (%zu != %zu)", noffsets,
                  ndigests);
    return -1;
  }
  /* Pairs one by one: an error leaves the earlier pairs applied (§3.5). */
  for (i = 0; i < ndigests; i++) {
    uint8_t d[32];
    uint32_t clen;
    struct fixed_writer *w;
    size_t slot;

    pbs_digest_parse (digest_hex[i], d);
    pthread_mutex_lock (&b->lock);
    if (!pbs__digest_set_get (b->known, d, &clen)) {
      pthread_mutex_unlock (&b->lock);
      pbs__dsb_bad ("no such chunk %s", digest_hex[i]);
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
    memcpy (w->idx->digest[slot], d, 32);
    pthread_mutex_unlock (&b->lock);
  }
  return 0;
}

int
pbs_ds_backup_fixed_append (struct pbs_ds_backup *b, int wid, size_t n,
                            const char *const *digest_hex,
                            const uint64_t *offsets)
{
  return pbs_ds_backup_fixed_append_lists (b, wid, n, digest_hex, n, offsets);
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
      pbs__set_http_error (400, ENOENT,
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
                           const char *csum_hex)
{
  struct fixed_writer *w;
  uint8_t csum[32], *enc = NULL;
  size_t enclen = 0, i;
  int r = -1;

  if (!wid_in_range (wid))
    return -1;
  if (chunk_count > INT64_MAX || size > INT64_MAX) {
    pbs__dsb_bad ("parameter verification failed - '%s': expected integer",
                  chunk_count > INT64_MAX ? "chunk-count" : "size");
    return -1;
  }
  /* "csum" is any-case hex of exactly 32 bytes: <[u8; 32]>::from_hex,
   * with the hex crate's FromHexError texts (odd length first, then the
   * length, then the first bad character). */
  if (!csum_hex)
    csum_hex = "";
  for (i = 0; csum_hex[i]; i++)
    ;
  if (i % 2 != 0) {
    pbs__dsb_bad ("Odd number of digits");
    return -1;
  }
  if (i != 64) {
    pbs__dsb_bad ("Invalid string length");
    return -1;
  }
  for (i = 0; i < 64; i++)
    if (!isxdigit ((unsigned char) csum_hex[i])) {
      unsigned char c = (unsigned char) csum_hex[i];
      /* {:?} of the byte as a char: printable ASCII as is, a quote and a
       * backslash escaped, anything else as \u{..} (approximately). */
      if (c == '\'' || c == '\\')
        pbs__dsb_bad ("Invalid character '\\%c' at position %zu", c, i);
      else if (c >= 0x20 && c < 0x7f)
        pbs__dsb_bad ("Invalid character '%c' at position %zu", c, i);
      else
        pbs__dsb_bad ("Invalid character '\\u{%x}' at position %zu", c, i);
      return -1;
    }
  if (pbs_digest_parse (csum_hex, csum) == -1) {
    pbs__dsb_bad ("Invalid string length");
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