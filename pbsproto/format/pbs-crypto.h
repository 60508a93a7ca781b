/* pbs-crypto.h -- internals shared by pbsproto's format files (blob.c,
 * digest.c, key.c, manifest.c, fidx.c); not installed.
 *
 * crypt.c is the only file that talks to OpenSSL: hashes, HMAC, KDFs,
 * AES-256-GCM with PBS's 16-byte IV, random bytes and base64.  Each call
 * sets the pbsproto error (EIO for a library failure) and returns -1. */
#ifndef PBS_CRYPTO_H
#define PBS_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#include "pbsproto.h"

/* The key behind struct pbs_key (docs/pbs-protocol.md §5.3): everything is
 * derived once at load time so that the hot paths (digests, blob encryption)
 * never derive. */
struct pbs_key {
  uint8_t enc_key[32];
  uint8_t id_key[32];      /* PBKDF2-HMAC-SHA256(enc_key, "_id_key", 10) */
  uint8_t fingerprint[32]; /* sha256(FINGERPRINT_INPUT || id_key) */
  uint8_t zero_digest[32]; /* digest of one 4 MiB chunk of zeros */
};

/* sha256 over the concatenation of up to two buffers (B may be NULL). */
int pbs__sha256 (const void *a, size_t alen, const void *b, size_t blen,
                 uint8_t out[32]);
/* An incremental sha256 (for data that comes in pieces). */
struct pbs__sha256_ctx;
struct pbs__sha256_ctx *pbs__sha256_new (void);
int pbs__sha256_update (struct pbs__sha256_ctx *c, const void *p, size_t n);
int pbs__sha256_final (struct pbs__sha256_ctx *c, uint8_t out[32]);
void pbs__sha256_free (struct pbs__sha256_ctx *c);

int pbs__hmac_sha256 (const uint8_t *key, size_t keylen, const void *data,
                      size_t len, uint8_t out[32]);
int pbs__pbkdf2_sha256 (const void *pass, size_t passlen, const uint8_t *salt,
                        size_t saltlen, unsigned iter, uint8_t *out,
                        size_t outlen);
int pbs__scrypt (const void *pass, size_t passlen, const uint8_t *salt,
                 size_t saltlen, uint64_t n, uint64_t r, uint64_t p,
                 uint8_t *out, size_t outlen);
int pbs__random (void *buf, size_t len);

/* AES-256-GCM, 16-byte IV, empty AAD, 16-byte tag.  IN and OUT may be the
 * same buffer (in-place).  decrypt returns 0, 1 if the tag does not match
 * (no error set: the caller knows what a mismatch means), -1 on error. */
int pbs__gcm_encrypt (const uint8_t key[32], const uint8_t iv[16],
                      const uint8_t *in, size_t len, uint8_t *out,
                      uint8_t tag[16]);
int pbs__gcm_decrypt (const uint8_t key[32], const uint8_t iv[16],
                      const uint8_t tag[16], const uint8_t *in, size_t len,
                      uint8_t *out);

/* Standard base64 with padding.  encode: malloc'd NUL-terminated text.
 * decode: malloc'd bytes, -1 (EINVAL) on bad input. */
char *pbs__base64_encode (const uint8_t *data, size_t len);
int pbs__base64_decode (const char *text, uint8_t **out, size_t *outlen);

/* Wipe secrets (OPENSSL_cleanse: not optimised away). */
void pbs__cleanse (void *p, size_t len);

/* HEXLEN hex digits (any case) -> HEXLEN/2 bytes; -1 if not hex (no error
 * set: callers describe what the text was). */
int pbs__hex_decode (const char *hex, size_t hexlen, uint8_t *out);


#endif
