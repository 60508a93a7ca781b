/* digest.c -- chunk digests, the id_key and key fingerprints
 * (docs/pbs-protocol.md §5.3), as pbs-tools/src/crypt_config.rs computes
 * them. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "pbs-crypto.h"
#include "pbs-errors.h"

/* sha256("Proxmox Backup Encryption Key Fingerprint") */
static const uint8_t fingerprint_input[32] = {
  110, 208, 239, 119, 71, 31,  255, 77, 85,  199, 168, 254, 74, 157, 182, 33,
  97,  64,  127, 19,  76, 114, 93,  223, 48, 153, 45,  37,  236, 69, 237, 38,
};

/* sha256 of 4 MiB of zeros: the digest of every unencrypted zero chunk. */
static const uint8_t plain_zero_digest[32] = {
  0xbb, 0x9f, 0x8d, 0xf6, 0x14, 0x74, 0xd2, 0x5e, 0x71, 0xfa, 0x00,
  0x72, 0x23, 0x18, 0xcd, 0x38, 0x73, 0x96, 0xca, 0x17, 0x36, 0x60,
  0x5e, 0x12, 0x48, 0x82, 0x1c, 0xc0, 0xde, 0x3d, 0x3a, 0xf8,
};

static const uint8_t zeros64k[65536];

/* sha256(LEN zero bytes || SUFFIX) without allocating LEN bytes. */
static int
zeros_digest (uint64_t len, const uint8_t *suffix, size_t suffix_len,
              uint8_t out[32])
{
  struct pbs__sha256_ctx *c = pbs__sha256_new ();
  int r = -1;

  if (!c)
    return -1;
  while (len > 0) {
    size_t n = len > sizeof zeros64k ? sizeof zeros64k : (size_t) len;
    if (pbs__sha256_update (c, zeros64k, n) == -1)
      goto out;
    len -= n;
  }
  if (pbs__sha256_update (c, suffix, suffix_len) == -1
      || pbs__sha256_final (c, out) == -1)
    goto out;
  r = 0;
out:
  pbs__sha256_free (c);
  return r;
}

/* Fill K's derived fields from K->enc_key. */
static int
key_derive (struct pbs_key *k)
{
  if (pbs__pbkdf2_sha256 (k->enc_key, 32, (const uint8_t *) "_id_key", 7, 10,
                          k->id_key, 32)
          == -1
      || pbs__sha256 (fingerprint_input, 32, k->id_key, 32, k->fingerprint)
             == -1
      || zeros_digest (PBS_CHUNK_SIZE, k->id_key, 32, k->zero_digest) == -1)
    return -1;
  return 0;
}

struct pbs_key *
pbs_key_from_raw (const uint8_t raw[32])
{
  struct pbs_key *k = calloc (1, sizeof *k);

  if (!k) {
    pbs__set_error (ENOMEM, "out of memory");
    return NULL;
  }
  memcpy (k->enc_key, raw, 32);
  if (key_derive (k) == -1) {
    pbs_key_free (k);
    return NULL;
  }
  return k;
}

void
pbs_key_free (struct pbs_key *k)
{
  if (k) {
    pbs__cleanse (k, sizeof *k);
    free (k);
  }
}

void
pbs_key_fingerprint (const struct pbs_key *k, uint8_t out[32])
{
  memcpy (out, k->fingerprint, 32);
}

void
pbs_fingerprint_string (const uint8_t fp[32], char out[96])
{
  static const char hex[] = "0123456789abcdef";
  size_t i;

  for (i = 0; i < 32; i++) {
    out[i * 3] = hex[fp[i] >> 4];
    out[i * 3 + 1] = hex[fp[i] & 15];
    out[i * 3 + 2] = i == 31 ? '\0' : ':';
  }
}

void
pbs_chunk_digest (const struct pbs_key *key, const void *data, size_t len,
                  uint8_t out[PBS_DIGEST_LEN])
{
  /* sha256 only fails if OpenSSL cannot allocate a context; the API has
   * no error return, so the digest is then all 0xff, which no real chunk
   * has and which every later lookup rejects. */
  if (pbs__sha256 (data, len, key ? key->id_key : NULL, key ? 32 : 0, out)
      == -1)
    memset (out, 0xff, PBS_DIGEST_LEN);
}

void
pbs_zero_chunk_digest (const struct pbs_key *key, uint8_t out[PBS_DIGEST_LEN])
{
  memcpy (out, key ? key->zero_digest : plain_zero_digest, PBS_DIGEST_LEN);
}

int
pbs_zeros_digest (const struct pbs_key *key, uint64_t len,
                  uint8_t out[PBS_DIGEST_LEN])
{
  if (len == PBS_CHUNK_SIZE) {
    pbs_zero_chunk_digest (key, out);
    return 0;
  }
  return zeros_digest (len, key ? key->id_key : NULL, key ? 32 : 0, out);
}

void
pbs_digest_hex (const uint8_t d[PBS_DIGEST_LEN], char out[65])
{
  static const char hex[] = "0123456789abcdef";
  size_t i;

  for (i = 0; i < PBS_DIGEST_LEN; i++) {
    out[i * 2] = hex[d[i] >> 4];
    out[i * 2 + 1] = hex[d[i] & 15];
  }
  out[64] = '\0';
}

static int
hexval (char c)
{
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

int
pbs__hex_decode (const char *hex, size_t hexlen, uint8_t *out)
{
  size_t i;

  if (hexlen % 2)
    return -1;
  for (i = 0; i < hexlen / 2; i++) {
    int hi = hexval (hex[2 * i]), lo = hexval (hex[2 * i + 1]);
    if (hi < 0 || lo < 0)
      return -1;
    out[i] = (uint8_t) (hi << 4 | lo);
  }
  return 0;
}

int
pbs_digest_parse (const char *hex, uint8_t out[PBS_DIGEST_LEN])
{
  if (!hex || strlen (hex) != 64 || pbs__hex_decode (hex, 64, out) == -1) {
    pbs__set_error (EINVAL, "not a digest (64 hex digits): '%.80s'",
                    hex ? hex : "(null)");
    return -1;
  }
  return 0;
}
