/* key.c -- PBS key files (docs/pbs-protocol.md §5.4), as
 * pbs-key-config/src/lib.rs:
 *
 *   {"kdf": null | {"Scrypt": {"n","r","p","salt"}} | {"PBKDF2": {"iter",
 *    "salt"}}, "created": RFC 3339, "modified": RFC 3339, "data": base64,
 *    "fingerprint": "aa:bb:...", "hint": "..."}
 *
 * With a kdf, data = iv[16] || tag[16] || AES-256-GCM(KDF(password), iv)
 * (raw key); without one, data is the raw 32-byte key.  Salts are 32
 * random bytes; base64 is the standard alphabet with padding. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "pbs-crypto.h"
#include "pbs-errors.h"

#define MAX_KEY_FILE (64 * 1024)
/* pbs-key-config defaults for new keys. */
#define SCRYPT_N 65536
#define SCRYPT_R 8
#define SCRYPT_P 1
#define PBKDF2_ITER 65535

enum kdf { KDF_NONE, KDF_SCRYPT, KDF_PBKDF2 };
static const char *const kdf_names[] = { "none", "scrypt", "pbkdf2" };

struct key_config {
  json_t *root;
  enum kdf kdf;
  uint64_t n, r, p, iter;
  uint8_t *salt;
  size_t salt_len;
  uint8_t *data;
  size_t data_len;
  const char *fingerprint; /* borrowed from root, or NULL */
};

static void
key_config_free (struct key_config *kc)
{
  json_decref (kc->root);
  free (kc->salt);
  if (kc->data)
    pbs__cleanse (kc->data, kc->data_len);
  free (kc->data);
}

/* Messages never name the key file: every pbs_key_* call is given its
 * path, so the caller prints it as the context ("qcow2pbs: PATH: what is
 * wrong"), also for a message from deeper down (a wrong password). */
static int
not_a_key_file (const char *why)
{
  pbs__set_error (EINVAL, "not a PBS key file (%s)", why);
  return -1;
}

static int
read_small_file (const char *path, char **out, size_t *outlen)
{
  int fd = open (path, O_RDONLY | O_CLOEXEC);
  char *buf = NULL;
  size_t len = 0;
  ssize_t n;

  if (fd == -1) {
    pbs__set_error (errno, "cannot open key file: %s", strerror (errno));
    return -1;
  }
  buf = malloc (MAX_KEY_FILE + 1);
  if (!buf) {
    close (fd);
    pbs__set_error (ENOMEM, "out of memory");
    return -1;
  }
  while (len <= MAX_KEY_FILE) {
    n = read (fd, buf + len, MAX_KEY_FILE + 1 - len);
    if (n == -1 && errno == EINTR)
      continue;
    if (n == -1) {
      pbs__set_error (errno, "cannot read key file: %s", strerror (errno));
      goto err;
    }
    if (n == 0)
      break;
    len += (size_t) n;
  }
  if (len > MAX_KEY_FILE) {
    not_a_key_file ("too large");
    goto err;
  }
  close (fd);
  *out = buf;
  *outlen = len;
  return 0;
err:
  close (fd);
  free (buf);
  return -1;
}

static int
get_u64 (json_t *obj, const char *name, uint64_t *out)
{
  json_t *v = json_object_get (obj, name);
  if (!json_is_integer (v) || json_integer_value (v) <= 0)
    return -1;
  *out = (uint64_t) json_integer_value (v);
  return 0;
}

static int
get_salt (json_t *obj, struct key_config *kc)
{
  const char *s = json_string_value (json_object_get (obj, "salt"));
  return s ? pbs__base64_decode (s, &kc->salt, &kc->salt_len) : -1;
}

static int
load_config (const char *path, struct key_config *kc)
{
  char *text;
  size_t len;
  json_error_t jerr;
  json_t *kdf, *v;
  const char *data;

  memset (kc, 0, sizeof *kc);
  if (read_small_file (path, &text, &len) == -1)
    return -1;
  kc->root = json_loadb (text, len, 0, &jerr);
  free (text);
  if (!kc->root || !json_is_object (kc->root))
    return not_a_key_file ("not a JSON object");
  kdf = json_object_get (kc->root, "kdf");
  data = json_string_value (json_object_get (kc->root, "data"));
  if (!kdf || !data)
    return not_a_key_file ("no kdf or data");
  if (json_is_null (kdf))
    kc->kdf = KDF_NONE;
  else if ((v = json_object_get (kdf, "Scrypt"))) {
    kc->kdf = KDF_SCRYPT;
    if (json_object_size (kdf) != 1 || get_u64 (v, "n", &kc->n) == -1
        || get_u64 (v, "r", &kc->r) == -1 || get_u64 (v, "p", &kc->p) == -1
        || get_salt (v, kc) == -1)
      return not_a_key_file ("bad Scrypt parameters");
  } else if ((v = json_object_get (kdf, "PBKDF2"))) {
    kc->kdf = KDF_PBKDF2;
    if (json_object_size (kdf) != 1 || get_u64 (v, "iter", &kc->iter) == -1
        || kc->iter > 0x7fffffff || get_salt (v, kc) == -1)
      return not_a_key_file ("bad PBKDF2 parameters");
  } else
    return not_a_key_file ("unknown kdf");
  if (pbs__base64_decode (data, &kc->data, &kc->data_len) == -1)
    return not_a_key_file ("data is not base64");
  if (kc->kdf == KDF_NONE ? kc->data_len != 32 : kc->data_len != 32 + 32)
    return not_a_key_file ("data has the wrong length");
  v = json_object_get (kc->root, "fingerprint");
  if (v && !json_is_null (v)) {
    kc->fingerprint = json_string_value (v);
    if (!kc->fingerprint || strlen (kc->fingerprint) != 95)
      return not_a_key_file ("bad fingerprint");
  }
  return 0;
}

static int
derive (enum kdf kdf, const char *password, const uint8_t *salt,
        size_t salt_len, uint64_t n, uint64_t r, uint64_t p, uint64_t iter,
        uint8_t out[32])
{
  if (kdf == KDF_SCRYPT)
    return pbs__scrypt (password, strlen (password), salt, salt_len, n, r, p,
                        out, 32);
  return pbs__pbkdf2_sha256 (password, strlen (password), salt, salt_len,
                             (unsigned) iter, out, 32);
}

struct pbs_key *
pbs_key_load (const char *path, const char *password)
{
  struct key_config kc;
  struct pbs_key *k = NULL;
  uint8_t derived[32], raw[32];
  int r;

  if (load_config (path, &kc) == -1)
    goto out;
  if (kc.kdf == KDF_NONE)
    memcpy (raw, kc.data, 32);
  else {
    if (!password) {
      pbs__set_error (EACCES, "key file is protected by a password, but none "
                              "was given");
      goto out;
    }
    if (derive (kc.kdf, password, kc.salt, kc.salt_len, kc.n, kc.r, kc.p,
                kc.iter, derived)
        == -1)
      goto out;
    r = pbs__gcm_decrypt (derived, kc.data, kc.data + 16, kc.data + 32, 32,
                          raw);
    pbs__cleanse (derived, sizeof derived);
    if (r == 1)
      pbs__set_error (EACCES, "wrong password");
    if (r != 0)
      goto out;
  }
  k = pbs_key_from_raw (raw);
  pbs__cleanse (raw, sizeof raw);
  if (k && kc.fingerprint) {
    char fp[96];
    pbs_fingerprint_string (k->fingerprint, fp);
    if (strcasecmp (fp, kc.fingerprint) != 0) {
      pbs__set_error (EBADMSG, "key does not match its fingerprint %s",
                      kc.fingerprint);
      pbs_key_free (k);
      k = NULL;
    }
  }
out:
  key_config_free (&kc);
  return k;
}

/* RFC 3339 in local time with its offset, as proxmox_time writes it. */
static void
local_rfc3339 (time_t t, char out[32])
{
  struct tm tm;
  long off;
  char sign;

  localtime_r (&t, &tm);
  strftime (out, 20, "%Y-%m-%dT%H:%M:%S", &tm);
  off = tm.tm_gmtoff / 60;
  sign = off < 0 ? '-' : '+';
  if (off < 0)
    off = -off;
  snprintf (out + 19, 13, "%c%02ld:%02ld", sign, (off / 60) % 100, off % 60);
}

/* Write TEXT to PATH (mode 0600) through a temporary file in the same
 * directory; an existing PATH is never replaced. */
static int
write_new_file (const char *path, const char *text)
{
  char *dcopy = strdup (path), *tmp = NULL;
  size_t len = strlen (text), done = 0;
  int fd = -1, r = -1;

  if (!dcopy || asprintf (&tmp, "%s/.keyfile.XXXXXX", dirname (dcopy)) < 0) {
    tmp = NULL;
    pbs__set_error (ENOMEM, "out of memory");
    goto out;
  }
  fd = mkostemp (tmp, O_CLOEXEC); /* mode 0600 */
  if (fd == -1) {
    pbs__set_error (errno, "cannot create: %s", strerror (errno));
    goto out;
  }
  while (done < len) {
    ssize_t n = write (fd, text + done, len - done);
    if (n == -1 && errno == EINTR)
      continue;
    if (n == -1) {
      pbs__set_error (errno, "cannot write: %s", strerror (errno));
      goto out_unlink;
    }
    done += (size_t) n;
  }
  if (fsync (fd) == -1 || close (fd) == -1) {
    fd = -1;
    pbs__set_error (errno, "cannot write: %s", strerror (errno));
    goto out_unlink;
  }
  fd = -1;
  /* renameat2 NOREPLACE where the filesystem has it, else link, which
   * also fails on an existing name. */
  if (renameat2 (AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE) == 0) {
    r = 0;
    goto out;
  }
  if (errno != EINVAL && errno != ENOSYS && errno != ENOTSUP) {
    pbs__set_error (errno, errno == EEXIST ? "already exists"
                                           : "cannot create: %m");
    goto out_unlink;
  }
  if (link (tmp, path) == -1) {
    pbs__set_error (errno, errno == EEXIST ? "already exists"
                                           : "cannot create: %m");
    goto out_unlink;
  }
  r = 0;
out_unlink:
  unlink (tmp);
out:
  if (fd != -1)
    close (fd);
  free (tmp);
  free (dcopy);
  return r;
}

int
pbs_key_create_hint (const char *path, const char *kdf_name,
                     const char *password, const char *hint)
{
  uint8_t raw[32], derived[32], salt[32], data[64];
  struct pbs_key *k = NULL;
  json_t *root = NULL, *kdf;
  char *b64 = NULL, *salt64 = NULL, *text = NULL, fp[96], now[32];
  enum kdf kd;
  int r = -1;

  for (kd = KDF_NONE; kd <= KDF_PBKDF2; kd++)
    if (kdf_name && strcmp (kdf_name, kdf_names[kd]) == 0)
      break;
  if (kd > KDF_PBKDF2) {
    pbs__set_error (EINVAL, "unknown kdf '%s' (none, scrypt or pbkdf2)",
                    kdf_name ? kdf_name : "(null)");
    return -1;
  }
  if (kd != KDF_NONE && (!password || strlen (password) < 5)) {
    pbs__set_error (EINVAL, "password is too short (at least 5 bytes)");
    return -1;
  }
  if (access (path, F_OK) == 0) {
    pbs__set_error (EEXIST, "already exists");
    return -1;
  }
  if (pbs__random (raw, 32) == -1)
    return -1;
  k = pbs_key_from_raw (raw);
  if (!k)
    goto out;
  pbs_fingerprint_string (k->fingerprint, fp);

  if (kd == KDF_NONE) {
    b64 = pbs__base64_encode (raw, 32);
    kdf = json_null ();
  } else {
    if (pbs__random (salt, 32) == -1 || pbs__random (data, 16) == -1
        || derive (kd, password, salt, 32, SCRYPT_N, SCRYPT_R, SCRYPT_P,
                   PBKDF2_ITER, derived)
               == -1
        || pbs__gcm_encrypt (derived, data, raw, 32, data + 32, data + 16)
               == -1)
      goto out;
    b64 = pbs__base64_encode (data, 64);
    salt64 = pbs__base64_encode (salt, 32);
    if (!salt64)
      goto out;
    if (kd == KDF_SCRYPT)
      kdf = json_pack ("{s:{s:i, s:i, s:i, s:s}}", "Scrypt", "n", SCRYPT_N,
                       "r", SCRYPT_R, "p", SCRYPT_P, "salt", salt64);
    else
      kdf = json_pack ("{s:{s:i, s:s}}", "PBKDF2", "iter", PBKDF2_ITER,
                       "salt", salt64);
  }
  if (!b64)
    goto out;
  local_rfc3339 (time (NULL), now);
  /* Field order of pbs-key-config's KeyConfig; "hint" only when given. */
  root = json_pack ("{s:o, s:s, s:s, s:s, s:s}", "kdf", kdf, "created", now,
                    "modified", now, "data", b64, "fingerprint", fp);
  if (root && hint
      && json_object_set_new (root, "hint", json_string (hint)) == -1) {
    pbs__set_error (EINVAL, "hint is not valid UTF-8");
    goto out;
  }
  if (root)
    text = json_dumps (root, JSON_INDENT (2) | JSON_PRESERVE_ORDER);
  if (!text) {
    pbs__set_error (ENOMEM, "out of memory");
    goto out;
  }
  r = write_new_file (path, text);
out:
  pbs__cleanse (raw, sizeof raw);
  pbs__cleanse (derived, sizeof derived);
  pbs__cleanse (data, sizeof data);
  if (b64)
    pbs__cleanse (b64, strlen (b64));
  if (text)
    pbs__cleanse (text, strlen (text));
  free (b64);
  free (salt64);
  free (text);
  json_decref (root);
  pbs_key_free (k);
  return r;
}

int
pbs_key_create (const char *path, const char *kdf, const char *password)
{
  return pbs_key_create_hint (path, kdf, password, NULL);
}

char *
pbs_key_show (const char *path)
{
  struct key_config kc;
  json_t *out = NULL, *v;
  int64_t created = 0, modified = 0;
  char *text = NULL;
  const char *s;

  if (load_config (path, &kc) == -1)
    goto done;
  s = json_string_value (json_object_get (kc.root, "created"));
  if (!s || pbs_parse_time (s, &created) == -1) {
    not_a_key_file ("bad created time");
    goto done;
  }
  s = json_string_value (json_object_get (kc.root, "modified"));
  if (s && pbs_parse_time (s, &modified) == -1) {
    not_a_key_file ("bad modified time");
    goto done;
  }
  if (!s)
    modified = created;
  v = json_object_get (kc.root, "hint");
  out = json_pack ("{s:s, s:s, s:I, s:I, s:s?, s:O?}", "path", path, "kdf",
                   kdf_names[kc.kdf], "created", (json_int_t) created,
                   "modified", (json_int_t) modified, "fingerprint",
                   kc.fingerprint, "hint", json_is_string (v) ? v : NULL);
  if (out)
    text = json_dumps (out, JSON_PRESERVE_ORDER | JSON_COMPACT);
  if (!text)
    pbs__set_error (ENOMEM, "out of memory");
done:
  json_decref (out);
  key_config_free (&kc);
  return text;
}
