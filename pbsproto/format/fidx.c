/* fidx.c -- fixed index files (docs/pbs-protocol.md §5.6), as pbs-datastore's
 * fixed_index.rs:
 *
 *   0     magic[8]   2f 7f 41 ed 91 fd 0f cd
 *   8     uuid[16]   random v4
 *   24    ctime      i64 LE, Unix seconds
 *   32    csum[32]   sha256(digest[0] || ... || digest[n-1])
 *   64    size       u64 LE, image bytes
 *   72    chunk_size u64 LE
 *   80    zero up to 4096
 *   4096  digest[n][32], n = ceil(size / chunk_size)
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "byteorder.h"
#include "checked-overflow.h"
#include "pbs-crypto.h"
#include "pbs-errors.h"

#define FIDX_HDR 4096

/* First 8 bytes of sha256("Proxmox Backup fixed sized chunk index v1.0"). */
static const uint8_t fidx_magic[8] = { 47, 127, 65, 237, 145, 253, 15, 205 };

/* PBS's reader takes any chunk size (and would divide by zero on 0); the
 * server only ever writes 4 MiB.  We accept powers of two from 4 KiB to
 * 16 MiB, the largest chunk the upload schema allows, so that a chunk of
 * the index can always be held and checked. */
static bool
chunk_size_ok (uint64_t cs)
{
  return cs >= 4096 && cs <= PBS_CHUNK_MAX_RAW && (cs & (cs - 1)) == 0;
}

/* Number of chunks, or -1 if SIZE and CHUNK_SIZE make no usable index. */
static int
chunk_count (uint64_t size, uint64_t chunk_size, size_t *count)
{
  uint64_t n = size / chunk_size + (size % chunk_size != 0);
  size_t bytes;

  if (n > SIZE_MAX || MUL_OVERFLOW ((size_t) n, (size_t) PBS_DIGEST_LEN,
                                    &bytes)
      || ADD_OVERFLOW (bytes, (size_t) FIDX_HDR, &bytes)) {
    pbs__set_error (EINVAL, "fixed index too large (%llu bytes)",
                    (unsigned long long) size);
    return -1;
  }
  *count = (size_t) n;
  return 0;
}

static struct pbs_fidx *
fidx_alloc (uint64_t size, uint64_t chunk_size)
{
  struct pbs_fidx *idx;
  size_t count;

  if (!chunk_size_ok (chunk_size)) {
    pbs__set_error (EINVAL, "fixed index: unsupported chunk size %llu",
                    (unsigned long long) chunk_size);
    return NULL;
  }
  if (chunk_count (size, chunk_size, &count) == -1)
    return NULL;
  idx = calloc (1, sizeof *idx);
  if (idx)
    idx->digest = calloc (count ? count : 1, PBS_DIGEST_LEN);
  if (!idx || !idx->digest) {
    free (idx);
    pbs__set_error (ENOMEM, "out of memory");
    return NULL;
  }
  idx->size = size;
  idx->chunk_size = chunk_size;
  idx->count = count;
  return idx;
}

struct pbs_fidx *
pbs_fidx_new (uint64_t size, uint64_t chunk_size)
{
  struct pbs_fidx *idx = fidx_alloc (size, chunk_size);

  if (!idx)
    return NULL;
  if (pbs__random (idx->uuid, 16) == -1) {
    pbs_fidx_free (idx);
    return NULL;
  }
  idx->uuid[6] = (idx->uuid[6] & 0x0f) | 0x40; /* version 4 */
  idx->uuid[8] = (idx->uuid[8] & 0x3f) | 0x80; /* RFC 4122 variant */
  idx->ctime = (int64_t) time (NULL);
  return idx;
}

struct pbs_fidx *
pbs_fidx_parse (const uint8_t *buf, size_t len)
{
  struct pbs_fidx *idx;
  uint64_t size, chunk_size;

  if (len < FIDX_HDR || memcmp (buf, fidx_magic, 8) != 0) {
    pbs__set_error (EBADMSG, "not a fixed index (bad magic or too short)");
    return NULL;
  }
  size = load_le64 (buf + 64);
  chunk_size = load_le64 (buf + 72);
  if (!chunk_size_ok (chunk_size)) {
    pbs__set_error (EBADMSG, "fixed index: unsupported chunk size %llu",
                    (unsigned long long) chunk_size);
    return NULL;
  }
  /* Check the length before allocating anything SIZE asks for. */
  {
    size_t count;
    if (chunk_count (size, chunk_size, &count) == -1
        || (len - FIDX_HDR) / PBS_DIGEST_LEN != count
        || (len - FIDX_HDR) % PBS_DIGEST_LEN != 0) {
      pbs__set_error (EBADMSG, "fixed index has wrong size (%zu bytes for "
                      "an image of %llu bytes)", len,
                      (unsigned long long) size);
      return NULL;
    }
  }
  idx = fidx_alloc (size, chunk_size);
  if (!idx)
    return NULL;
  memcpy (idx->uuid, buf + 8, 16);
  idx->ctime = (int64_t) load_le64 (buf + 24);
  memcpy (idx->csum, buf + 32, 32);
  memcpy (idx->digest, buf + FIDX_HDR, idx->count * PBS_DIGEST_LEN);
  return idx;
}

void
pbs_fidx_csum (const struct pbs_fidx *idx, uint8_t out[32])
{
  /* Only fails if OpenSSL cannot allocate: see pbs_chunk_digest. */
  if (pbs__sha256 (idx->digest, idx->count * PBS_DIGEST_LEN, NULL, 0, out)
      == -1)
    memset (out, 0xff, 32);
}

/* The csum context is an OpenSSL context that failed updates poison: a
 * failed update makes final fail instead of giving a wrong csum. */
struct pbs_fidx_csum_ctx {
  struct pbs__sha256_ctx *sha;
  bool failed;
};

struct pbs_fidx_csum_ctx *
pbs_fidx_csum_new (void)
{
  struct pbs_fidx_csum_ctx *c = calloc (1, sizeof *c);

  if (c)
    c->sha = pbs__sha256_new ();
  if (!c || !c->sha) {
    free (c);
    pbs__set_error (ENOMEM, "out of memory");
    return NULL;
  }
  return c;
}

void
pbs_fidx_csum_add (struct pbs_fidx_csum_ctx *c,
                   const uint8_t digest[PBS_DIGEST_LEN])
{
  if (pbs__sha256_update (c->sha, digest, PBS_DIGEST_LEN) == -1)
    c->failed = true;
}

int
pbs_fidx_csum_final (struct pbs_fidx_csum_ctx *c, uint8_t out[32])
{
  int r = -1;

  if (c->failed)
    pbs__set_error (ENOMEM, "sha256 failed");
  else
    r = pbs__sha256_final (c->sha, out);
  pbs_fidx_csum_free (c);
  return r;
}

void
pbs_fidx_csum_free (struct pbs_fidx_csum_ctx *c)
{
  if (!c)
    return;
  pbs__sha256_free (c->sha);
  free (c);
}

int
pbs_fidx_encode (struct pbs_fidx *idx, uint8_t **out, size_t *outlen)
{
  size_t n = FIDX_HDR + idx->count * PBS_DIGEST_LEN;
  uint8_t *buf;

  if (pbs__sha256 (idx->digest, idx->count * PBS_DIGEST_LEN, NULL, 0,
                   idx->csum)
      == -1)
    return -1;
  buf = calloc (1, n);
  if (!buf) {
    pbs__set_error (ENOMEM, "out of memory");
    return -1;
  }
  memcpy (buf, fidx_magic, 8);
  memcpy (buf + 8, idx->uuid, 16);
  store_le64 (buf + 24, (uint64_t) idx->ctime);
  memcpy (buf + 32, idx->csum, 32);
  store_le64 (buf + 64, idx->size);
  store_le64 (buf + 72, idx->chunk_size);
  memcpy (buf + FIDX_HDR, idx->digest, idx->count * PBS_DIGEST_LEN);
  *out = buf;
  *outlen = n;
  return 0;
}

void
pbs_fidx_free (struct pbs_fidx *idx)
{
  if (idx) {
    free (idx->digest);
    free (idx);
  }
}
