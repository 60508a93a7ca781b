/* crypt.c -- the one file of pbsproto that talks to OpenSSL: sha256, HMAC,
 * PBKDF2, scrypt, AES-256-GCM with PBS's 16-byte IV, random bytes, base64.
 * OpenSSL failures become EIO errors here, so no other file sees ERR_*. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <pthread.h>

#include "pbs-crypto.h"
#include "pbs-errors.h"

static int
ossl_error (const char *what)
{
  unsigned long e = ERR_get_error ();
  char buf[256];

  if (e) {
    ERR_error_string_n (e, buf, sizeof buf);
    ERR_clear_error ();
    pbs__set_error (EIO, "%s: %s", what, buf);
  } else
    pbs__set_error (EIO, "%s failed", what);
  return -1;
}

void
pbs__cleanse (void *p, size_t len)
{
  if (p)
    OPENSSL_cleanse (p, len);
}

/* ------------------------------------------------- per-thread contexts */

/* Contexts cached per thread in pthread keys, not _Thread_local pointers:
 * the key's destructor frees them when a pipeline thread exits (LSan would
 * otherwise report every exited thread's context as a leak). */
static pthread_once_t keys_once = PTHREAD_ONCE_INIT;
static pthread_key_t md_key, cipher_key;

static void
free_md (void *p)
{
  EVP_MD_CTX_free (p);
}

static void
free_cipher (void *p)
{
  EVP_CIPHER_CTX_free (p);
}

static void
keys_init (void)
{
  pthread_key_create (&md_key, free_md);
  pthread_key_create (&cipher_key, free_cipher);
}

static EVP_MD_CTX *
thread_md (void)
{
  EVP_MD_CTX *c;

  pthread_once (&keys_once, keys_init);
  c = pthread_getspecific (md_key);
  if (!c) {
    c = EVP_MD_CTX_new ();
    if (c && pthread_setspecific (md_key, c) != 0) {
      EVP_MD_CTX_free (c);
      c = NULL;
    }
  }
  return c;
}

static EVP_CIPHER_CTX *
thread_cipher (void)
{
  EVP_CIPHER_CTX *c;

  pthread_once (&keys_once, keys_init);
  c = pthread_getspecific (cipher_key);
  if (!c) {
    c = EVP_CIPHER_CTX_new ();
    if (c && pthread_setspecific (cipher_key, c) != 0) {
      EVP_CIPHER_CTX_free (c);
      c = NULL;
    }
  }
  return c;
}

/* -------------------------------------------------------------- sha256 */

struct pbs__sha256_ctx {
  EVP_MD_CTX *md;
};

/* EVP_sha256() makes OpenSSL 3 fetch the implementation on every init;
 * fetching it once saves a lock round trip per chunk. */
static const EVP_MD *
sha256_md (void)
{
  static const EVP_MD *md;
  const EVP_MD *m = __atomic_load_n (&md, __ATOMIC_ACQUIRE);
  if (!m) {
    EVP_MD *f = EVP_MD_fetch (NULL, "SHA256", NULL);
    const EVP_MD *expected = NULL;
    if (!f)
      return EVP_sha256 ();
    if (__atomic_compare_exchange_n (&md, &expected, f, false,
                                     __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
      m = f;
    else {
      EVP_MD_free (f);
      m = expected;
    }
  }
  return m;
}

struct pbs__sha256_ctx *
pbs__sha256_new (void)
{
  struct pbs__sha256_ctx *c = malloc (sizeof *c);
  if (!c) {
    pbs__set_error (ENOMEM, "out of memory");
    return NULL;
  }
  c->md = EVP_MD_CTX_new ();
  if (!c->md || EVP_DigestInit_ex (c->md, sha256_md (), NULL) != 1) {
    ossl_error ("sha256");
    EVP_MD_CTX_free (c->md);
    free (c);
    return NULL;
  }
  return c;
}

int
pbs__sha256_update (struct pbs__sha256_ctx *c, const void *p, size_t n)
{
  if (n && EVP_DigestUpdate (c->md, p, n) != 1)
    return ossl_error ("sha256");
  return 0;
}

int
pbs__sha256_final (struct pbs__sha256_ctx *c, uint8_t out[32])
{
  unsigned int outlen = 32;
  if (EVP_DigestFinal_ex (c->md, out, &outlen) != 1)
    return ossl_error ("sha256");
  return 0;
}

void
pbs__sha256_free (struct pbs__sha256_ctx *c)
{
  if (c) {
    EVP_MD_CTX_free (c->md);
    free (c);
  }
}

int
pbs__sha256 (const void *a, size_t alen, const void *b, size_t blen,
             uint8_t out[32])
{
  /* One context per thread (see thread_md), reset by DigestInit: chunk
   * hashing runs on every pipeline thread for every chunk. */
  EVP_MD_CTX *ctx = thread_md ();
  unsigned int outlen = 32;

  if (!ctx)
    return ossl_error ("sha256");
  if (EVP_DigestInit_ex (ctx, sha256_md (), NULL) != 1
      || (alen && EVP_DigestUpdate (ctx, a, alen) != 1)
      || (b && blen && EVP_DigestUpdate (ctx, b, blen) != 1)
      || EVP_DigestFinal_ex (ctx, out, &outlen) != 1)
    return ossl_error ("sha256");
  return 0;
}

/* --------------------------------------------------------- HMAC, KDFs */

int
pbs__hmac_sha256 (const uint8_t *key, size_t keylen, const void *data,
                  size_t len, uint8_t out[32])
{
  unsigned int outlen = 32;
  if (keylen > INT_MAX
      || !HMAC (EVP_sha256 (), key, (int) keylen, data, len, out, &outlen))
    return ossl_error ("HMAC-SHA256");
  return 0;
}

int
pbs__pbkdf2_sha256 (const void *pass, size_t passlen, const uint8_t *salt,
                    size_t saltlen, unsigned iter, uint8_t *out, size_t outlen)
{
  if (passlen > INT_MAX || saltlen > INT_MAX || outlen > INT_MAX
      || iter == 0 || iter > INT_MAX) {
    pbs__set_error (EINVAL, "PBKDF2: parameters out of range");
    return -1;
  }
  if (PKCS5_PBKDF2_HMAC (pass, (int) passlen, salt, (int) saltlen, (int) iter,
                         EVP_sha256 (), (int) outlen, out)
      != 1)
    return ossl_error ("PBKDF2");
  return 0;
}

int
pbs__scrypt (const void *pass, size_t passlen, const uint8_t *salt,
             size_t saltlen, uint64_t n, uint64_t r, uint64_t p, uint8_t *out,
             size_t outlen)
{
  /* PBS allows scrypt up to 1025 MiB (pbs-key-config); n=65536 r=8 needs
   * 64 MiB.  OpenSSL allocates only what the parameters need and fails
   * cleanly above the cap, so a hostile key file cannot exhaust memory. */
  const uint64_t maxmem = 1025ull * 1024 * 1024;

  if (EVP_PBE_scrypt (pass, passlen, salt, saltlen, n, r, p, maxmem, out,
                      outlen)
      != 1) {
    ERR_clear_error ();
    pbs__set_error (EINVAL, "scrypt: unusable parameters n=%llu r=%llu p=%llu",
                    (unsigned long long) n, (unsigned long long) r,
                    (unsigned long long) p);
    return -1;
  }
  return 0;
}

int
pbs__random (void *buf, size_t len)
{
  if (len > INT_MAX || RAND_bytes (buf, (int) len) != 1)
    return ossl_error ("random bytes");
  return 0;
}

/* ---------------------------------------------------------------- GCM */

/* One cipher context per thread, reset per use: blob encryption runs for
 * every chunk of an encrypted push. */
static EVP_CIPHER_CTX *
gcm_ctx (void)
{
  EVP_CIPHER_CTX *ctx = thread_cipher ();
  if (ctx)
    EVP_CIPHER_CTX_reset (ctx);
  return ctx;
}

/* EVP lengths are int; feed big buffers in slices. */
#define GCM_SLICE (1 << 30)

int
pbs__gcm_encrypt (const uint8_t key[32], const uint8_t iv[16],
                  const uint8_t *in, size_t len, uint8_t *out,
                  uint8_t tag[16])
{
  EVP_CIPHER_CTX *ctx = gcm_ctx ();
  size_t done = 0;
  int n;

  if (!ctx)
    return ossl_error ("AES-256-GCM");
  /* PBS uses a 16-byte IV (not GCM's usual 12): set the length before
   * the key and IV. */
  if (EVP_EncryptInit_ex (ctx, EVP_aes_256_gcm (), NULL, NULL, NULL) != 1
      || EVP_CIPHER_CTX_ctrl (ctx, EVP_CTRL_GCM_SET_IVLEN, 16, NULL) != 1
      || EVP_EncryptInit_ex (ctx, NULL, NULL, key, iv) != 1)
    return ossl_error ("AES-256-GCM");
  while (done < len) {
    int slice = len - done > GCM_SLICE ? GCM_SLICE : (int) (len - done);
    if (EVP_EncryptUpdate (ctx, out + done, &n, in + done, slice) != 1)
      return ossl_error ("AES-256-GCM");
    done += (size_t) slice;
  }
  if (EVP_EncryptFinal_ex (ctx, out + done, &n) != 1
      || EVP_CIPHER_CTX_ctrl (ctx, EVP_CTRL_GCM_GET_TAG, 16, tag) != 1)
    return ossl_error ("AES-256-GCM");
  return 0;
}

int
pbs__gcm_decrypt (const uint8_t key[32], const uint8_t iv[16],
                  const uint8_t tag[16], const uint8_t *in, size_t len,
                  uint8_t *out)
{
  EVP_CIPHER_CTX *ctx = gcm_ctx ();
  uint8_t tagcopy[16];
  size_t done = 0;
  int n;

  if (!ctx)
    return ossl_error ("AES-256-GCM");
  memcpy (tagcopy, tag, 16);
  if (EVP_DecryptInit_ex (ctx, EVP_aes_256_gcm (), NULL, NULL, NULL) != 1
      || EVP_CIPHER_CTX_ctrl (ctx, EVP_CTRL_GCM_SET_IVLEN, 16, NULL) != 1
      || EVP_DecryptInit_ex (ctx, NULL, NULL, key, iv) != 1)
    return ossl_error ("AES-256-GCM");
  while (done < len) {
    int slice = len - done > GCM_SLICE ? GCM_SLICE : (int) (len - done);
    if (EVP_DecryptUpdate (ctx, out + done, &n, in + done, slice) != 1)
      return ossl_error ("AES-256-GCM");
    done += (size_t) slice;
  }
  if (EVP_CIPHER_CTX_ctrl (ctx, EVP_CTRL_GCM_SET_TAG, 16, tagcopy) != 1)
    return ossl_error ("AES-256-GCM");
  if (EVP_DecryptFinal_ex (ctx, out + done, &n) != 1) {
    /* The tag did not match: wrong key or tampered data. */
    ERR_clear_error ();
    return 1;
  }
  return 0;
}

/* ------------------------------------------------------------- base64 */

char *
pbs__base64_encode (const uint8_t *data, size_t len)
{
  size_t outlen = (len + 2) / 3 * 4 + 1;
  char *out;

  if (len > INT_MAX / 2) {
    pbs__set_error (EINVAL, "base64: input too large");
    return NULL;
  }
  out = malloc (outlen);
  if (!out) {
    pbs__set_error (ENOMEM, "out of memory");
    return NULL;
  }
  EVP_EncodeBlock ((unsigned char *) out, data, (int) len);
  return out;
}

int
pbs__base64_decode (const char *text, uint8_t **out, size_t *outlen)
{
  size_t len = strlen (text), pad = 0;
  uint8_t *buf;
  int n;

  /* EVP_DecodeBlock wants a multiple of 4 without whitespace and counts
   * the padding as zero bytes: strip them ourselves afterwards. */
  if (len % 4 != 0 || len > INT_MAX) {
    pbs__set_error (EINVAL, "bad base64 text");
    return -1;
  }
  if (len >= 1 && text[len - 1] == '=')
    pad++;
  if (len >= 2 && text[len - 2] == '=')
    pad++;
  buf = malloc (len / 4 * 3 + 1);
  if (!buf) {
    pbs__set_error (ENOMEM, "out of memory");
    return -1;
  }
  n = EVP_DecodeBlock (buf, (const unsigned char *) text, (int) len);
  if (n < 0 || (size_t) n < pad || memchr (text, '=', len - pad)) {
    free (buf);
    pbs__set_error (EINVAL, "bad base64 text");
    return -1;
  }
  *out = buf;
  *outlen = (size_t) n - pad;
  return 0;
}
