/* manifest.c -- index.json.blob (docs/pbs-protocol.md §5.8) and its signature
 * (§5.5), as pbs-datastore's manifest.rs.
 *
 * The manifest lives as its JSON tree, so that fields this code does not
 * know survive a parse/serialise round trip and are covered by the
 * signature exactly as PBS covers them (it signs the parsed JSON value).
 * Both serialisers are ours: PBS writes serde_json's pretty form and
 * signs proxmox-serde's canonical form, and jansson's dump escapes
 * differently ('\u001F' upper-case, for one). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "pbs-crypto.h"
#include "pbs-errors.h"

/* Upload schema: an encoded blob holds at most 16 MiB (§5.2). */
#define MAX_MANIFEST_TEXT PBS_CHUNK_MAX_RAW

struct pbs_manifest {
  json_t *root; /* an object; "files" an array of valid file objects */
};

/* -------------------------------------------------- text building */

struct sbuf {
  char *p;
  size_t len, cap;
  int failed; /* 0, or the errno of the first failure */
};

static void
sb_add (struct sbuf *b, const char *s, size_t n)
{
  if (b->failed)
    return;
  if (b->len + n + 1 > b->cap) {
    size_t ncap = b->cap ? b->cap : 1024;
    char *np;
    while (ncap < b->len + n + 1)
      ncap *= 2;
    if (ncap > MAX_MANIFEST_TEXT + 1) {
      b->failed = E2BIG;
      return;
    }
    np = realloc (b->p, ncap);
    if (!np) {
      b->failed = ENOMEM;
      return;
    }
    b->p = np;
    b->cap = ncap;
  }
  memcpy (b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
}

static void
sb_str (struct sbuf *b, const char *s)
{
  sb_add (b, s, strlen (s));
}

/* A JSON string as serde_json writes it: only '"', '\\' and control
 * characters are escaped; '/', DEL and non-ASCII bytes are raw. */
static void
sb_json_string (struct sbuf *b, const char *s, size_t n)
{
  static const char hex[] = "0123456789abcdef";
  size_t i, run = 0;

  sb_add (b, "\"", 1);
  for (i = 0; i < n; i++) {
    unsigned char c = (unsigned char) s[i];
    char esc[7];
    const char *e = NULL;
    size_t elen = 2;

    switch (c) {
    case '"': e = "\\\""; break;
    case '\\': e = "\\\\"; break;
    case '\b': e = "\\b"; break;
    case '\f': e = "\\f"; break;
    case '\n': e = "\\n"; break;
    case '\r': e = "\\r"; break;
    case '\t': e = "\\t"; break;
    default:
      if (c < 0x20) {
        memcpy (esc, "\\u00", 4);
        esc[4] = hex[c >> 4];
        esc[5] = hex[c & 15];
        e = esc;
        elen = 6;
      }
    }
    if (e) {
      sb_add (b, s + i - run, run);
      run = 0;
      sb_add (b, e, elen);
    } else
      run++;
  }
  sb_add (b, s + n - run, run);
  sb_add (b, "\"", 1);
}

static int
cmp_keys (const void *a, const void *b)
{
  /* strcmp compares as unsigned char: byte order, as Rust's BTreeMap. */
  return strcmp (*(const char *const *) a, *(const char *const *) b);
}

static void
sb_indent (struct sbuf *b, int level)
{
  int i;
  for (i = 0; i < level; i++)
    sb_add (b, "  ", 2);
}

enum style { CANONICAL, PRETTY };

/* Serialise V.  CANONICAL: proxmox-serde's to_canonical_json (sorted
 * keys, no whitespace, null is an error).  PRETTY: serde_json's
 * to_string_pretty of a Value (sorted keys, two-space indent).  At the
 * top level (LEVEL 0) SKIP_UNSIGNED leaves out "unprotected" and
 * "signature", the parts the signature does not cover. */
static int
emit (struct sbuf *b, json_t *v, enum style st, int level, bool skip_unsigned)
{
  char num[32];

  switch (json_typeof (v)) {
  case JSON_OBJECT: {
    size_t n = json_object_size (v), i, k = 0;
    const char **keys;
    const char *key;
    json_t *val;

    keys = malloc ((n ? n : 1) * sizeof *keys);
    if (!keys) {
      pbs__set_error (ENOMEM, "out of memory");
      return -1;
    }
    json_object_foreach (v, key, val) {
      if (skip_unsigned && level == 0
          && (strcmp (key, "unprotected") == 0
              || strcmp (key, "signature") == 0))
        continue;
      keys[k++] = key;
    }
    qsort (keys, k, sizeof *keys, cmp_keys);
    sb_add (b, "{", 1);
    for (i = 0; i < k; i++) {
      if (i)
        sb_add (b, ",", 1);
      if (st == PRETTY) {
        sb_add (b, "\n", 1);
        sb_indent (b, level + 1);
      }
      sb_json_string (b, keys[i], strlen (keys[i]));
      sb_str (b, st == PRETTY ? ": " : ":");
      if (emit (b, json_object_get (v, keys[i]), st, level + 1, false)
          == -1) {
        free (keys);
        return -1;
      }
    }
    if (st == PRETTY && k) {
      sb_add (b, "\n", 1);
      sb_indent (b, level);
    }
    sb_add (b, "}", 1);
    free (keys);
    return 0;
  }
  case JSON_ARRAY: {
    size_t i, n = json_array_size (v);
    sb_add (b, "[", 1);
    for (i = 0; i < n; i++) {
      if (i)
        sb_add (b, ",", 1);
      if (st == PRETTY) {
        sb_add (b, "\n", 1);
        sb_indent (b, level + 1);
      }
      if (emit (b, json_array_get (v, i), st, level + 1, false) == -1)
        return -1;
    }
    if (st == PRETTY && n) {
      sb_add (b, "\n", 1);
      sb_indent (b, level);
    }
    sb_add (b, "]", 1);
    return 0;
  }
  case JSON_STRING:
    sb_json_string (b, json_string_value (v), json_string_length (v));
    return 0;
  case JSON_INTEGER:
    snprintf (num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value (v));
    sb_str (b, num);
    return 0;
  case JSON_REAL: {
    char *t;
    /* Manifests hold integers only; a float in the signed part would
     * need serde's shortest-representation printing to sign alike. */
    if (st == CANONICAL) {
      pbs__set_error (EINVAL, "manifest: floating point number in the "
                      "signed part");
      return -1;
    }
    t = json_dumps (v, JSON_ENCODE_ANY);
    if (!t) {
      pbs__set_error (ENOMEM, "out of memory");
      return -1;
    }
    sb_str (b, t);
    free (t);
    return 0;
  }
  case JSON_TRUE:
    sb_str (b, "true");
    return 0;
  case JSON_FALSE:
    sb_str (b, "false");
    return 0;
  case JSON_NULL:
    if (st == CANONICAL) {
      pbs__set_error (EINVAL, "canonical JSON: got unexpected null value");
      return -1;
    }
    sb_str (b, "null");
    return 0;
  }
  pbs__set_error (EINVAL, "manifest: unknown JSON value");
  return -1;
}

static char *
serialise (json_t *v, enum style st, bool skip_unsigned)
{
  struct sbuf b = { NULL, 0, 0, 0 };

  if (emit (&b, v, st, 0, skip_unsigned) == -1) {
    free (b.p);
    return NULL;
  }
  if (b.failed) {
    free (b.p);
    pbs__set_error (b.failed, b.failed == ENOMEM ? "out of memory"
                                                 : "manifest too large");
    return NULL;
  }
  return b.p;
}

/* ------------------------------------------------------- signature */

static int
signature_hex (const struct pbs_manifest *m, const struct pbs_key *key,
               char out[65])
{
  char *canon = serialise (m->root, CANONICAL, true);
  uint8_t mac[32];

  if (!canon)
    return -1;
  if (pbs__hmac_sha256 (key->id_key, 32, canon, strlen (canon), mac) == -1) {
    free (canon);
    return -1;
  }
  free (canon);
  pbs_digest_hex (mac, out);
  return 0;
}

char *
pbs_manifest_canonical (const struct pbs_manifest *m)
{
  return serialise (m->root, CANONICAL, true);
}

/* ------------------------------------------------- construction */

static bool
valid_crypt_mode (const char *s)
{
  return strcmp (s, "none") == 0 || strcmp (s, "encrypt") == 0
         || strcmp (s, "sign-only") == 0;
}

static struct pbs_manifest *
wrap (json_t *root)
{
  struct pbs_manifest *m = malloc (sizeof *m);
  if (!m) {
    json_decref (root);
    pbs__set_error (ENOMEM, "out of memory");
    return NULL;
  }
  m->root = root;
  return m;
}

struct pbs_manifest *
pbs_manifest_new (const char *type, const char *id, int64_t time)
{
  json_t *root;

  if (!pbs_valid_backup_type (type) || !id || !*id) {
    pbs__set_error (EINVAL, "manifest: bad backup type or id");
    return NULL;
  }
  root = json_pack ("{s:s, s:s, s:I, s:[], s:{}, s:n}", "backup-type", type,
                    "backup-id", id, "backup-time", (json_int_t) time,
                    "files", "unprotected", "signature");
  if (!root) {
    pbs__set_error (ENOMEM, "out of memory");
    return NULL;
  }
  return wrap (root);
}

void
pbs_manifest_free (struct pbs_manifest *m)
{
  if (m) {
    json_decref (m->root);
    free (m);
  }
}

/* "aa:bb:..." -> 32 bytes; -1 if not of that form. */
static int
parse_fingerprint (const char *s, uint8_t out[32])
{
  size_t i;

  if (strlen (s) != 95)
    return -1;
  for (i = 0; i < 32; i++)
    if ((i < 31 && s[i * 3 + 2] != ':')
        || pbs__hex_decode (s + i * 3, 2, out + i) == -1)
      return -1;
  return 0;
}

/* Check the shape serde's BackupManifest would accept (manifest.rs), and
 * fill in what PBS defaults: crypt-mode "none", an empty unprotected. */
static int
check_shape (json_t *root, bool normalise)
{
  json_t *files, *f, *v;
  size_t i;

  if (!json_is_object (root))
    goto bad;
  v = json_object_get (root, "backup-type");
  if (!json_is_string (v) || !pbs_valid_backup_type (json_string_value (v)))
    goto bad_field_type;
  if (!json_is_string (json_object_get (root, "backup-id"))
      || !json_is_integer (json_object_get (root, "backup-time")))
    goto bad;
  files = json_object_get (root, "files");
  if (!json_is_array (files))
    goto bad;
  json_array_foreach (files, i, f) {
    json_t *fn = json_object_get (f, "filename");
    json_t *cm = json_object_get (f, "crypt-mode");
    json_t *sz = json_object_get (f, "size");
    json_t *cs = json_object_get (f, "csum");
    uint8_t tmp[32];

    if (!json_is_object (f) || !json_is_string (fn)
        || (cm && !json_is_string (cm))
        || (cm && !valid_crypt_mode (json_string_value (cm)))
        || !json_is_integer (sz) || json_integer_value (sz) < 0
        || !json_is_string (cs) || json_string_length (cs) != 64
        || pbs__hex_decode (json_string_value (cs), 64, tmp) == -1) {
      pbs__set_error (EBADMSG, "manifest: bad entry %zu in 'files'", i);
      return -1;
    }
    if (!cm && normalise
        && json_object_set_new (f, "crypt-mode", json_string ("none")) == -1)
      goto nomem;
  }
  v = json_object_get (root, "unprotected");
  if (v && !json_is_object (v) && !json_is_null (v))
    goto bad;
  if ((!v || json_is_null (v)) && normalise
      && json_object_set_new (root, "unprotected", json_object ()) == -1)
    goto nomem;
  v = json_object_get (root, "unprotected");
  if (v) {
    json_t *fp = json_object_get (v, "key-fingerprint");
    uint8_t tmp[32];
    if (fp && !json_is_null (fp)
        && (!json_is_string (fp)
            || parse_fingerprint (json_string_value (fp), tmp) == -1)) {
      pbs__set_error (EBADMSG, "manifest: bad key-fingerprint");
      return -1;
    }
  }
  v = json_object_get (root, "signature");
  if (v && !json_is_null (v) && !json_is_string (v))
    goto bad;
  if (!v && normalise
      && json_object_set_new (root, "signature", json_null ()) == -1)
    goto nomem;
  return 0;
bad_field_type:
  pbs__set_error (EBADMSG, "manifest: bad backup-type");
  return -1;
bad:
  pbs__set_error (EBADMSG, "not a backup manifest (bad or missing field)");
  return -1;
nomem:
  pbs__set_error (ENOMEM, "out of memory");
  return -1;
}

const char *
pbs_manifest_key_fingerprint (const struct pbs_manifest *m)
{
  json_t *u = json_object_get (m->root, "unprotected");
  return json_string_value (json_object_get (u, "key-fingerprint"));
}

/* The checks of BackupManifest::from_data and check_fingerprint. */
static int
verify (const struct pbs_manifest *m, const struct pbs_key *key)
{
  const char *fp = pbs_manifest_key_fingerprint (m);
  const char *sig = json_string_value (json_object_get (m->root,
                                                       "signature"));
  char ours[96], expect[65];
  uint8_t fpb[32];

  if (fp && !key) {
    pbs__set_error (EACCES, "missing key - manifest was created with key %s",
                    fp);
    return -1;
  }
  if (!key)
    return 0;
  pbs_fingerprint_string (key->fingerprint, ours);
  if (fp && (parse_fingerprint (fp, fpb) == -1
             || memcmp (fpb, key->fingerprint, 32) != 0)) {
    pbs__set_error (EACCES,
                    "wrong key - manifest's key %s does not match provided "
                    "key %s",
                    fp, ours);
    return -1;
  }
  /* An unsigned manifest read with a key is accepted, as PBS does (a
   * backup made without a key); the caller sees no fingerprint. */
  if (!sig)
    return 0;
  if (signature_hex (m, key, expect) == -1)
    return -1;
  if (strcmp (sig, expect) != 0) {
    pbs__set_error (EBADMSG, "wrong signature in manifest");
    return -1;
  }
  return 0;
}

struct pbs_manifest *
pbs_manifest_parse (const char *json, size_t len, const struct pbs_key *key,
                    unsigned flags)
{
  json_error_t jerr;
  json_t *root;
  struct pbs_manifest *m;

  if (len > MAX_MANIFEST_TEXT) {
    pbs__set_error (EBADMSG, "manifest too large (%zu bytes)", len);
    return NULL;
  }
  /* ALLOW_NUL: serde_json takes "\u0000" in strings, so we must too. */
  root = json_loadb (json, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL,
                     &jerr);
  if (!root) {
    pbs__set_error (EBADMSG, "manifest is not JSON: line %d: %s", jerr.line,
                    jerr.text);
    return NULL;
  }
  m = wrap (root);
  if (!m)
    return NULL;
  /* Verify the tree as it came (defaults would change what was signed),
   * then fill in the defaults. */
  if (check_shape (root, false) == -1
      || (!(flags & PBS_MANIFEST_NO_VERIFY) && verify (m, key) == -1)
      || check_shape (root, true) == -1) {
    pbs_manifest_free (m);
    return NULL;
  }
  return m;
}

/* ------------------------------------------------------ accessors */

const char *
pbs_manifest_type (const struct pbs_manifest *m)
{
  return json_string_value (json_object_get (m->root, "backup-type"));
}

const char *
pbs_manifest_id (const struct pbs_manifest *m)
{
  return json_string_value (json_object_get (m->root, "backup-id"));
}

int64_t
pbs_manifest_time (const struct pbs_manifest *m)
{
  return (int64_t) json_integer_value (json_object_get (m->root,
                                                        "backup-time"));
}

size_t
pbs_manifest_file_count (const struct pbs_manifest *m)
{
  return json_array_size (json_object_get (m->root, "files"));
}

static void
fill_file (json_t *f, struct pbs_manifest_file *out)
{
  out->filename = json_string_value (json_object_get (f, "filename"));
  out->crypt_mode = json_string_value (json_object_get (f, "crypt-mode"));
  out->size = (uint64_t) json_integer_value (json_object_get (f, "size"));
  pbs__hex_decode (json_string_value (json_object_get (f, "csum")), 64,
                   out->csum);
}

int
pbs_manifest_file (const struct pbs_manifest *m, size_t i,
                   struct pbs_manifest_file *out)
{
  json_t *f = json_array_get (json_object_get (m->root, "files"), i);

  if (!f) {
    pbs__set_error (EINVAL, "manifest: no file %zu", i);
    return -1;
  }
  fill_file (f, out);
  return 0;
}

int
pbs_manifest_find (const struct pbs_manifest *m, const char *name,
                   struct pbs_manifest_file *out)
{
  json_t *files = json_object_get (m->root, "files"), *f;
  size_t i;

  json_array_foreach (files, i, f) {
    if (strcmp (json_string_value (json_object_get (f, "filename")), name)
        == 0) {
      fill_file (f, out);
      return 0;
    }
  }
  pbs__set_error (ENOENT, "manifest has no file '%s'", name);
  return -1;
}

int
pbs_manifest_add_file (struct pbs_manifest *m, const char *name,
                       const char *crypt_mode, uint64_t size,
                       const uint8_t csum[32])
{
  struct pbs_manifest_file dup;
  char hex[65];
  json_t *f;

  if (!name || !*name || !crypt_mode || !valid_crypt_mode (crypt_mode)
      || size > (uint64_t) INT64_MAX) {
    pbs__set_error (EINVAL, "manifest: bad file entry '%s'",
                    name ? name : "(null)");
    return -1;
  }
  if (pbs_manifest_find (m, name, &dup) == 0) {
    pbs__set_error (EEXIST, "manifest already lists '%s'", name);
    return -1;
  }
  pbs_digest_hex (csum, hex);
  f = json_pack ("{s:s, s:s, s:I, s:s}", "filename", name, "crypt-mode",
                 crypt_mode, "size", (json_int_t) size, "csum", hex);
  if (!f || json_array_append_new (json_object_get (m->root, "files"), f)
                == -1) {
    pbs__set_error (ENOMEM, "out of memory");
    return -1;
  }
  return 0;
}

char *
pbs_manifest_get_unprotected (const struct pbs_manifest *m, const char *key)
{
  json_t *v = json_object_get (json_object_get (m->root, "unprotected"), key);
  char *t;

  if (!v) {
    pbs__set_error (ENOENT, "manifest: no unprotected '%s'", key);
    return NULL;
  }
  t = json_dumps (v, JSON_ENCODE_ANY | JSON_COMPACT | JSON_SORT_KEYS);
  if (!t)
    pbs__set_error (ENOMEM, "out of memory");
  return t;
}

int
pbs_manifest_set_unprotected (struct pbs_manifest *m, const char *key,
                              const char *json_text)
{
  json_t *u = json_object_get (m->root, "unprotected"), *v;
  json_error_t jerr;

  if (!key || !json_text) {
    pbs__set_error (EINVAL, "manifest: no unprotected key or value");
    return -1;
  }
  v = json_loads (json_text, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
  if (!v) {
    pbs__set_error (EINVAL, "unprotected '%s': not JSON: %s", key, jerr.text);
    return -1;
  }
  if (json_object_set_new (u, key, v) == -1) {
    pbs__set_error (ENOMEM, "out of memory");
    return -1;
  }
  return 0;
}

int
pbs_manifest_to_json (struct pbs_manifest *m, const struct pbs_key *key,
                      char **out)
{
  char *text;

  if (key) {
    char sig[65], fp[96];
    if (signature_hex (m, key, sig) == -1)
      return -1;
    pbs_fingerprint_string (key->fingerprint, fp);
    if (json_object_set_new (m->root, "signature", json_string (sig)) == -1
        || json_object_set_new (json_object_get (m->root, "unprotected"),
                                "key-fingerprint", json_string (fp))
               == -1) {
      pbs__set_error (ENOMEM, "out of memory");
      return -1;
    }
  }
  text = serialise (m->root, PRETTY, false);
  if (!text)
    return -1;
  *out = text;
  return 0;
}
