/* blob.c -- DataBlob encode/decode (docs/pbs-protocol.md §5.2), as
 * pbs-datastore's data_blob.rs:
 *
 *   plain:      magic[8] | crc32 LE[4] | payload (raw or zstd)
 *   encrypted:  magic[8] | crc32 LE[4] | iv[16] | tag[16] | ciphertext
 *
 * The CRC (zlib crc32) covers everything after the header, so for
 * encrypted blobs only the ciphertext.  The one file that sees zstd. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>
#include <zstd.h>

#include "byteorder.h"
#include "pbs-crypto.h"
#include "pbs-errors.h"

#define HDR_PLAIN PBS_BLOB_HEADER_LEN
#define HDR_CRYPT PBS_BLOB_ENCRYPTED_HEADER_LEN
/* DataBlob::encode refuses more (data_blob.rs MAX_BLOB_SIZE). */
#define MAX_BLOB_DATA (128u * 1024 * 1024)

/* First 8 bytes of sha256 of "Proxmox Backup uncompressed blob v1.0",
 * "... zstd compressed blob v1.0", "... encrypted blob v1.0" and
 * "... zstd compressed encrypted blob v1.0" (file_formats.rs). */
static const uint8_t magics[4][8] = {
  [PBS_BLOB_PLAIN] = { 66, 171, 56, 7, 190, 131, 112, 161 },
  [PBS_BLOB_ZSTD] = { 49, 185, 88, 66, 111, 182, 163, 127 },
  [PBS_BLOB_ENCRYPTED] = { 123, 103, 133, 190, 34, 45, 76, 240 },
  [PBS_BLOB_ENCRYPTED_ZSTD] = { 230, 89, 27, 191, 11, 191, 216, 11 },
};

/* ---------------------------------------- per-thread zstd contexts */

/* Compression runs for every chunk on every pipeline thread; a context
 * per thread avoids re-allocating zstd's tables each time.  pthread keys
 * (not _Thread_local) so that contexts die with their thread. */
static pthread_once_t ctx_once = PTHREAD_ONCE_INIT;
static pthread_key_t cctx_key, dctx_key;

static void
free_cctx (void *p)
{
  ZSTD_freeCCtx (p);
}

static void
free_dctx (void *p)
{
  ZSTD_freeDCtx (p);
}

static void
ctx_keys_init (void)
{
  pthread_key_create (&cctx_key, free_cctx);
  pthread_key_create (&dctx_key, free_dctx);
}

static ZSTD_CCtx *
thread_cctx (void)
{
  ZSTD_CCtx *c;

  pthread_once (&ctx_once, ctx_keys_init);
  c = pthread_getspecific (cctx_key);
  if (!c) {
    c = ZSTD_createCCtx ();
    if (!c)
      return NULL;
    /* Level 1 as PBS; no checksum (the blob has its CRC). */
    if (ZSTD_isError (ZSTD_CCtx_setParameter (c, ZSTD_c_compressionLevel, 1))
        || pthread_setspecific (cctx_key, c) != 0) {
      ZSTD_freeCCtx (c);
      return NULL;
    }
  }
  return c;
}

static ZSTD_DCtx *
thread_dctx (void)
{
  ZSTD_DCtx *d;

  pthread_once (&ctx_once, ctx_keys_init);
  d = pthread_getspecific (dctx_key);
  if (!d) {
    d = ZSTD_createDCtx ();
    if (!d)
      return NULL;
    if (pthread_setspecific (dctx_key, d) != 0) {
      ZSTD_freeDCtx (d);
      return NULL;
    }
  }
  return d;
}

/* Compress SRC into DST (capacity LEN - 1, so only a smaller result fits).
 * Returns the compressed size, or 0 when compression does not pay off or
 * fails (the caller then stores the data raw, which is always valid). */
static size_t
compress_smaller (const void *src, size_t len, uint8_t *dst)
{
  ZSTD_CCtx *c;
  size_t n;

  if (len < 2)
    return 0;
  c = thread_cctx ();
  if (!c)
    return 0;
  ZSTD_CCtx_reset (c, ZSTD_reset_session_only);
  n = ZSTD_compress2 (c, dst, len - 1, src, len);
  if (ZSTD_isError (n) || n >= len)
    return 0;
  return n;
}

/* Decompress a zstd payload, output capped at MAX_LEN.  The frame may
 * lack a content size (PBS writes streamed frames), so this streams into
 * a growing buffer instead of trusting a header field. */
static int
decompress_capped (const uint8_t *src, size_t n, size_t max_len,
                   uint8_t **out, size_t *outlen)
{
  ZSTD_DCtx *d = thread_dctx ();
  ZSTD_inBuffer in = { src, n, 0 };
  unsigned long long fcs;
  size_t cap, pos = 0, limit;
  uint8_t *buf, *nb;

  if (!d) {
    pbs__set_error (ENOMEM, "out of memory");
    return -1;
  }
  ZSTD_DCtx_reset (d, ZSTD_reset_session_only);
  /* One byte beyond MAX_LEN tells "too large" apart from "exactly". */
  limit = max_len == SIZE_MAX ? max_len : max_len + 1;
  fcs = ZSTD_getFrameContentSize (src, n);
  if (fcs != ZSTD_CONTENTSIZE_UNKNOWN && fcs != ZSTD_CONTENTSIZE_ERROR
      && fcs < limit)
    cap = (size_t) fcs + 1;
  else
    cap = n < limit / 4 ? n * 4 : limit;
  if (cap < 4096)
    cap = limit < 4096 ? limit : 4096;
  buf = malloc (cap ? cap : 1);
  if (!buf) {
    pbs__set_error (ENOMEM, "out of memory");
    return -1;
  }
  for (;;) {
    ZSTD_outBuffer o = { buf, cap, pos };
    size_t before_in = in.pos, r;

    r = ZSTD_decompressStream (d, &o, &in);
    if (ZSTD_isError (r)) {
      pbs__set_error (EBADMSG, "corrupt zstd data in blob: %s",
                      ZSTD_getErrorName (r));
      goto err;
    }
    pos = o.pos;
    if (pos > max_len) {
      pbs__set_error (EBADMSG, "blob decompresses to more than %zu bytes",
                      max_len);
      goto err;
    }
    if (r == 0 && in.pos == in.size)
      break;
    if (pos == cap) {
      size_t ncap = cap > limit / 2 ? limit : cap * 2;
      nb = realloc (buf, ncap);
      if (!nb) {
        pbs__set_error (ENOMEM, "out of memory");
        goto err;
      }
      buf = nb;
      cap = ncap;
    } else if (in.pos == in.size || in.pos == before_in) {
      pbs__set_error (EBADMSG, "truncated zstd data in blob");
      goto err;
    }
  }
  *out = buf;
  *outlen = pos;
  return 0;
err:
  free (buf);
  return -1;
}

/* Decompress a zstd payload into BUF (CAP bytes), for restore's fixed
 * chunk buffers.  As decompress_capped, the frame's content size is not
 * trusted: output beyond CAP is noticed by asking for one more byte. */
static int
decompress_into (const uint8_t *src, size_t n, uint8_t *buf, size_t cap,
                 size_t *outlen)
{
  ZSTD_DCtx *d = thread_dctx ();
  ZSTD_inBuffer in = { src, n, 0 };
  ZSTD_outBuffer o = { buf, cap, 0 };
  uint8_t extra;
  ZSTD_outBuffer x = { &extra, 1, 0 };

  if (!d) {
    pbs__set_error (ENOMEM, "out of memory");
    return -1;
  }
  ZSTD_DCtx_reset (d, ZSTD_reset_session_only);
  for (;;) {
    ZSTD_outBuffer *ob = o.pos < o.size ? &o : &x;
    size_t before_in = in.pos, before_out = ob->pos, r;

    r = ZSTD_decompressStream (d, ob, &in);
    if (ZSTD_isError (r)) {
      pbs__set_error (EBADMSG, "corrupt zstd data in blob: %s",
                      ZSTD_getErrorName (r));
      return -1;
    }
    if (x.pos) {
      pbs__set_error (EBADMSG, "blob decompresses to more than %zu bytes",
                      cap);
      return -1;
    }
    if (r == 0 && in.pos == in.size)
      break;
    /* Every round makes progress or ends: input and output are finite. */
    if ((in.pos == before_in && ob->pos == before_out)
        || (in.pos == in.size && ob->pos < ob->size)) {
      pbs__set_error (EBADMSG, "truncated zstd data in blob");
      return -1;
    }
  }
  *outlen = o.pos;
  return 0;
}

/* Decrypt the PLEN bytes of ciphertext of encrypted blob BLOB (header H
 * bytes) into PLAIN (PLEN bytes); on failure PLAIN is wiped.  0 or -1. */
static int
decrypt_into (const uint8_t *blob, size_t h, size_t plen,
              const struct pbs_key *key, uint8_t *plain)
{
  int r = pbs__gcm_decrypt (key->enc_key, blob + 12, blob + 28, blob + h,
                            plen, plain);

  if (r == 0)
    return 0;
  if (r == 1)
    pbs__set_error (EACCES, "cannot decrypt blob: wrong key or "
                            "corrupt data");
  pbs__cleanse (plain, plen);
  return -1;
}

/* ------------------------------------------------------------ public */

int
pbs_blob_kind (const uint8_t *blob, size_t len)
{
  int k;

  if (len >= HDR_PLAIN)
    for (k = 0; k < 4; k++)
      if (memcmp (blob, magics[k], 8) == 0) {
        if ((k == PBS_BLOB_ENCRYPTED || k == PBS_BLOB_ENCRYPTED_ZSTD)
            && len < HDR_CRYPT)
          break;
        return k;
      }
  pbs__set_error (EBADMSG, "not a DataBlob (bad magic or too short)");
  return -1;
}

static size_t
header_len (int kind)
{
  return kind >= PBS_BLOB_ENCRYPTED ? HDR_CRYPT : HDR_PLAIN;
}

int
pbs_blob_check_crc (const uint8_t *blob, size_t len)
{
  int kind = pbs_blob_kind (blob, len);
  size_t h;

  if (kind == -1)
    return -1;
  h = header_len (kind);
  if ((uint32_t) crc32_z (0, blob + h, len - h) != load_le32 (blob + 8)) {
    pbs__set_error (EBADMSG, "blob has wrong CRC checksum");
    return -1;
  }
  return 0;
}

int
pbs_blob_encode (const void *data, size_t len, const struct pbs_key *key,
                 bool compress, uint8_t **out, size_t *outlen)
{
  size_t h = key ? HDR_CRYPT : HDR_PLAIN, plen = 0;
  uint8_t *buf, *shrunk;
  int kind;

  if (len > MAX_BLOB_DATA) {
    pbs__set_error (EINVAL, "blob data too large (%zu bytes, max %u)", len,
                    MAX_BLOB_DATA);
    return -1;
  }
  /* One buffer of the raw size: compression writes into the payload area
   * and only a smaller result fits; otherwise the data is copied there.
   * Encryption then runs in place. */
  buf = malloc (h + len + 1);
  if (!buf) {
    pbs__set_error (ENOMEM, "out of memory");
    return -1;
  }
  if (compress)
    plen = compress_smaller (data, len, buf + h);
  if (plen) {
    kind = key ? PBS_BLOB_ENCRYPTED_ZSTD : PBS_BLOB_ZSTD;
  } else {
    kind = key ? PBS_BLOB_ENCRYPTED : PBS_BLOB_PLAIN;
    if (len)
      memcpy (buf + h, data, len);
    plen = len;
  }
  memcpy (buf, magics[kind], 8);
  if (key) {
    if (pbs__random (buf + 12, 16) == -1
        || pbs__gcm_encrypt (key->enc_key, buf + 12, buf + h, plen, buf + h,
                             buf + 28)
               == -1) {
      pbs__cleanse (buf + h, plen);
      free (buf);
      return -1;
    }
  }
  store_le32 (buf + 8, (uint32_t) crc32_z (0, buf + h, plen));
  if (h + plen < h + len) {
    shrunk = realloc (buf, h + plen);
    if (shrunk)
      buf = shrunk;
  }
  *out = buf;
  *outlen = h + plen;
  return 0;
}

int
pbs_blob_decode (const uint8_t *blob, size_t len, const struct pbs_key *key,
                 size_t max_len, uint8_t **out, size_t *outlen)
{
  int kind = pbs_blob_kind (blob, len), r;
  size_t h, plen;
  uint8_t *plain = NULL;

  if (kind == -1 || pbs_blob_check_crc (blob, len) == -1)
    return -1;
  h = header_len (kind);
  plen = len - h;
  switch (kind) {
  case PBS_BLOB_PLAIN:
    if (plen > max_len) {
      pbs__set_error (EBADMSG, "blob holds more than %zu bytes", max_len);
      return -1;
    }
    plain = malloc (plen ? plen : 1);
    if (!plain) {
      pbs__set_error (ENOMEM, "out of memory");
      return -1;
    }
    memcpy (plain, blob + h, plen);
    *out = plain;
    *outlen = plen;
    return 0;
  case PBS_BLOB_ZSTD:
    return decompress_capped (blob + h, plen, max_len, out, outlen);
  default:
    break;
  }

  if (!key) {
    pbs__set_error (EACCES, "blob is encrypted, but no key was given");
    return -1;
  }
  /* The compressed form is kept only when smaller than the data, so the
   * ciphertext is never longer than MAX_LEN in a valid blob. */
  if (plen > max_len) {
    pbs__set_error (EBADMSG, "blob holds more than %zu bytes", max_len);
    return -1;
  }
  plain = malloc (plen ? plen : 1);
  if (!plain) {
    pbs__set_error (ENOMEM, "out of memory");
    return -1;
  }
  if (decrypt_into (blob, h, plen, key, plain) == -1) {
    free (plain);
    return -1;
  }
  if (kind == PBS_BLOB_ENCRYPTED) {
    *out = plain;
    *outlen = plen;
    return 0;
  }
  r = decompress_capped (plain, plen, max_len, out, outlen);
  pbs__cleanse (plain, plen);
  free (plain);
  return r;
}

int
pbs_blob_decode_to (const uint8_t *blob, size_t len,
                    const struct pbs_key *key, uint8_t *buf, size_t cap,
                    const uint8_t **data, size_t *dlen)
{
  int kind = pbs_blob_kind (blob, len), r;
  size_t h, plen;
  uint8_t *plain;

  /* No CRC here: the caller proves the decoded bytes by their digest,
   * which covers more than the CRC does.  PBS's client does the same
   * (its DataBlob leaves the CRC to the server side; docs/pbs-protocol.md
   * §5.2).  A damaged zstd frame or ciphertext still fails to decode. */
  if (kind == -1)
    return -1;
  h = header_len (kind);
  plen = len - h;
  if (kind == PBS_BLOB_ZSTD) {
    if (decompress_into (blob + h, plen, buf, cap, dlen) == -1)
      return -1;
    *data = buf;
    return 0;
  }
  /* Plain data and ciphertext are never longer than the data (§5.2). */
  if (plen > cap) {
    pbs__set_error (EBADMSG, "blob holds more than %zu bytes", cap);
    return -1;
  }
  if (kind == PBS_BLOB_PLAIN) {
    /* No copy: the caller hashes and writes the stored bytes. */
    *data = blob + h;
    *dlen = plen;
    return 0;
  }
  if (!key) {
    pbs__set_error (EACCES, "blob is encrypted, but no key was given");
    return -1;
  }
  plain = kind == PBS_BLOB_ENCRYPTED ? buf : malloc (plen ? plen : 1);
  if (!plain) {
    pbs__set_error (ENOMEM, "out of memory");
    return -1;
  }
  if (decrypt_into (blob, h, plen, key, plain) == -1) {
    if (plain != buf)
      free (plain);
    return -1;
  }
  if (kind == PBS_BLOB_ENCRYPTED) {
    *data = buf;
    *dlen = plen;
    return 0;
  }
  r = decompress_into (plain, plen, buf, cap, dlen);
  pbs__cleanse (plain, plen);
  free (plain);
  if (r == -1)
    return -1;
  *data = buf;
  return 0;
}
