/* push-evidence.c -- the identity record that makes reuse safe.
 *
 * Each snapshot push writes, into its manifest's unprotected["qcow2pbs"],
 * which files (device, inode, size, mtime, ctime, qcow2 header + L1 hash)
 * made each archive (the header hash is qcowlib's qcow_layer_header_sha256).
 * The next push reuses the base's digests only if the recorded layers
 * are, in order, a prefix of its own chain, unchanged.
 * Design and limits: docs/incremental-identity.md. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "cli.h"
#include "push.h"
#include "tar-index.h"

static int64_t
ts_ns (const struct timespec *t)
{
  return (int64_t) t->tv_sec * 1000000000 + t->tv_nsec;
}

int
identity_collect (struct qcow_chain *c, struct chain_identity *out,
                  const char *context, struct cli_err *err)
{
  return identity_collect_members (c, out, context, NULL, err);
}

int
identity_collect_members (struct qcow_chain *c, struct chain_identity *out,
                          const char *context,
                          const struct tar_member *const *member,
                          struct cli_err *err)
{
  size_t n = qcow_depth (c), i;
  struct qcow_layer_info li;
  uint8_t md[QCOW_HEADER_HASH_LEN];
  char rp[PATH_MAX];

  out->n = 0;
  out->layer = calloc (n, sizeof *out->layer);
  if (!out->layer)
    return cli_err_set (err, context, "out of memory");
  for (i = 0; i < n; i++) {
    struct layer_identity *l = &out->layer[i];
    /* Oldest first: depth n-1 is the base. */
    if (qcow_layer_info (c, n - 1 - i, &li) == -1) {
      cli_err_qcow (err, context);
      goto err;
    }
    out->n++;
    l->path = strdup (li.path);
    l->realpath = strdup (realpath (li.file, rp) ? rp : li.file);
    if (!l->path || !l->realpath) {
      cli_err_set (err, context, "out of memory");
      goto err;
    }
    l->dev = (uint64_t) li.st.st_dev;
    l->ino = (uint64_t) li.st.st_ino;
    l->size = (uint64_t) li.st.st_size;
    l->mtime_ns = ts_ns (&li.st.st_mtim);
    l->ctime_ns = ts_ns (&li.st.st_ctim);
    if (li.span) {
      /* A tar member: the archive's identity (device, inode, ctime) plus
       * the member's own size, time and headers. */
      const struct tar_member *tm = member ? member[i] : NULL;
      if (!tm) {
        cli_err_set (err, context, "internal error: no tar member for %s",
                     li.path);
        goto err;
      }
      l->archive = strdup (li.file);
      if (!l->archive) {
        cli_err_set (err, context, "out of memory");
        goto err;
      }
      l->size = tm->size;
      l->mtime_ns = tm->mtime_ns;
      l->archive_offset = li.file_offset;
      memcpy (l->tar_header_sha256, tm->header_sha256, 65);
    }
    l->virtual_size = li.virtual_size;
    l->has_data_file = li.data_file != NULL;
    /* A device node's size reads 0 and writing the device changes none of
     * its times: nothing proves it unchanged (docs/incremental-identity.md). */
    l->block_device = !li.span && !S_ISREG (li.st.st_mode);
    /* qcowlib hashes the header and L1 table through the descriptor it
     * opened: the same inode the stat values above describe. */
    if (qcow_layer_header_sha256 (c, n - 1 - i, md) == -1) {
      cli_err_qcow (err, context);
      goto err;
    }
    pbs_digest_hex (md, l->header_sha256);
  }
  return 0;
err:
  identity_free (out);
  return -1;
}

void
identity_free (struct chain_identity *id)
{
  size_t i;

  for (i = 0; i < id->n; i++) {
    free (id->layer[i].path);
    free (id->layer[i].realpath);
    free (id->layer[i].archive);
  }
  free (id->layer);
  id->layer = NULL;
  id->n = 0;
}

int
identity_recheck (const struct chain_identity *id, char *why, size_t whylen)
{
  size_t i;
  struct stat st;

  for (i = 0; i < id->n; i++) {
    const struct layer_identity *l = &id->layer[i];
    if (l->archive) {
      /* Any write to the archive moves its ctime. */
      if (stat (l->archive, &st) == -1 || (uint64_t) st.st_dev != l->dev
          || (uint64_t) st.st_ino != l->ino
          || ts_ns (&st.st_ctim) != l->ctime_ns) {
        snprintf (why, whylen, "%s: the archive changed while %s was "
                  "being read", l->archive, l->path);
        return -1;
      }
      continue;
    }
    if (stat (l->path, &st) == -1 || (uint64_t) st.st_dev != l->dev
        || (uint64_t) st.st_ino != l->ino
        || (uint64_t) st.st_size != l->size
        || ts_ns (&st.st_mtim) != l->mtime_ns
        || ts_ns (&st.st_ctim) != l->ctime_ns) {
      snprintf (why, whylen, "%s: layer changed while it was being read",
                l->path);
      return -1;
    }
  }
  return 0;
}

char *
identity_archive_json (const struct chain_identity *id,
                       const uint8_t csum[32], uint64_t size,
                       const char *key_fp)
{
  json_t *o, *layers;
  char hex[65], *s;
  size_t i;

  pbs_digest_hex (csum, hex);
  layers = json_array ();
  for (i = 0; i < id->n; i++) {
    const struct layer_identity *l = &id->layer[i];
    json_t *lo =
        json_pack ("{s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:s}", "path",
                   l->path, "realpath", l->realpath, "dev",
                   (json_int_t) l->dev, "ino", (json_int_t) l->ino, "size",
                   (json_int_t) l->size, "mtime-ns", (json_int_t) l->mtime_ns,
                   "ctime-ns", (json_int_t) l->ctime_ns, "virtual-size",
                   (json_int_t) l->virtual_size, "header-sha256",
                   l->header_sha256);
    if (lo && l->archive)
      json_object_set_new (lo, "archive-member",
                           json_pack ("{s:s, s:I, s:s}", "name", l->path,
                                      "offset",
                                      (json_int_t) l->archive_offset,
                                      "tar-header-sha256",
                                      l->tar_header_sha256));
    json_array_append_new (layers, lo);
  }
  o = json_pack ("{s:s, s:I, s:o, s:o}", "index-csum", hex, "size",
                 (json_int_t) size, "key-fingerprint",
                 key_fp ? json_string (key_fp) : json_null (), "layers",
                 layers);
  if (!o)
    return NULL;
  s = json_dumps (o, JSON_COMPACT | JSON_SORT_KEYS);
  json_decref (o);
  return s;
}

static bool
int_eq (json_t *o, const char *k, uint64_t v)
{
  json_t *x = json_object_get (o, k);
  return json_is_integer (x) && (uint64_t) json_integer_value (x) == v;
}

/* What differs between recorded layer L and current layer C, or NULL. */
static const char *
layer_diff (json_t *l, const struct layer_identity *c)
{
  const char *h = json_string_value (json_object_get (l, "header-sha256"));

  if (!int_eq (l, "dev", c->dev) || !int_eq (l, "ino", c->ino))
    return "not the same file";
  if (!int_eq (l, "size", c->size))
    return "size";
  if (!int_eq (l, "mtime-ns", (uint64_t) c->mtime_ns))
    return "mtime";
  if (!int_eq (l, "ctime-ns", (uint64_t) c->ctime_ns))
    return "ctime";
  if (!int_eq (l, "virtual-size", c->virtual_size))
    return "virtual size";
  if (!h || strcmp (h, c->header_sha256) != 0)
    return "header";
  {
    /* Members of one archive share its device and inode: the member's
     * name and headers tell them apart. */
    json_t *am = json_object_get (l, "archive-member");
    const char *an = json_string_value (json_object_get (am, "name"));
    const char *ah = json_string_value (json_object_get (am,
                                                        "tar-header-sha256"));
    if ((am != NULL) != (c->archive != NULL)
        || (c->archive
            && (!an || !ah || strcmp (an, c->path) != 0
                || strcmp (ah, c->tar_header_sha256) != 0)))
      return "not the same archive member";
  }
  return NULL;
}

enum identity_state
identity_compare (const char *record, const char *archive,
                  const struct chain_identity *cur, const char *key_fp)
{
  json_t *root, *a, *layers, *fp;
  enum identity_state st = IDENTITY_OTHER;
  size_t i, m;

  if (!record)
    return IDENTITY_OTHER;
  root = json_loads (record, 0, NULL);
  a = json_is_object (root) && int_eq (root, "version", 1)
          ? json_object_get (json_object_get (root, "archives"), archive)
          : NULL;
  layers = json_object_get (a, "layers");
  fp = json_object_get (a, "key-fingerprint");
  m = json_array_size (layers);
  /* Another key makes another snapshot even of the same data. */
  if (!json_is_object (a) || m == 0 || m < cur->n
      || (key_fp ? !json_is_string (fp)
                       || strcmp (json_string_value (fp), key_fp) != 0
                 : !json_is_null (fp)))
    goto out;
  for (i = 0; i < cur->n; i++)
    if (cur->layer[i].has_data_file || cur->layer[i].block_device
        || layer_diff (json_array_get (layers, i), &cur->layer[i]))
      goto out;
  st = m == cur->n ? IDENTITY_SAME : IDENTITY_OLDER;
out:
  json_decref (root);
  return st;
}

int
identity_match (const char *record, const char *archive,
                const struct chain_identity *cur, const uint8_t base_csum[32],
                uint64_t base_size, const char *key_fp, size_t *base_layers,
                char *why, size_t whylen)
{
  json_t *root = NULL, *a, *layers, *fp;
  char hex[65];
  size_t i, m;
  int ret = 1;

  for (i = 0; i < cur->n; i++)
    if (cur->layer[i].has_data_file) {
      snprintf (why, whylen, "layer %s has an external data file",
                cur->layer[i].path);
      return 1;
    }
    else if (cur->layer[i].block_device) {
      snprintf (why, whylen, "layer %s is not a regular file (a device's "
                "times do not change when it is written)", cur->layer[i].path);
      return 1;
    }
  if (!record) {
    snprintf (why, whylen, "previous snapshot has no qcow2pbs record");
    return 1;
  }
  root = json_loads (record, 0, NULL);
  if (!json_is_object (root)
      || !int_eq (root, "version", 1)) {
    snprintf (why, whylen, "previous snapshot's qcow2pbs record is not "
                           "version 1");
    goto out;
  }
  a = json_object_get (json_object_get (root, "archives"), archive);
  if (!json_is_object (a)) {
    snprintf (why, whylen, "previous snapshot has no qcow2pbs record for "
                           "%s", archive);
    goto out;
  }
  pbs_digest_hex (base_csum, hex);
  if (!json_is_string (json_object_get (a, "index-csum"))
      || strcasecmp (json_string_value (json_object_get (a, "index-csum")),
                     hex) != 0) {
    snprintf (why, whylen, "previous index checksum mismatch");
    goto out;
  }
  if (!int_eq (a, "size", base_size)) {
    snprintf (why, whylen, "previous index size mismatch");
    goto out;
  }
  fp = json_object_get (a, "key-fingerprint");
  if (key_fp ? !json_is_string (fp)
                   || strcmp (json_string_value (fp), key_fp) != 0
             : !json_is_null (fp)) {
    snprintf (why, whylen, "key changed");
    goto out;
  }
  layers = json_object_get (a, "layers");
  m = json_array_size (layers);
  if (m == 0) {
    snprintf (why, whylen, "previous snapshot's qcow2pbs record has no "
                           "layers");
    goto out;
  }
  if (m > cur->n) {
    snprintf (why, whylen, "chain has fewer layers (%zu) than the previous "
                           "snapshot (%zu)", cur->n, m);
    goto out;
  }
  for (i = 0; i < m; i++) {
    const struct layer_identity *c = &cur->layer[i];
    const char *what = layer_diff (json_array_get (layers, i), c);
    if (what) {
      snprintf (why, whylen, "layer %s changed since previous snapshot (%s)",
                c->path, what);
      goto out;
    }
  }
  /* The base index must be the merged view of exactly those layers. */
  if (cur->layer[m - 1].virtual_size != base_size) {
    snprintf (why, whylen, "previous index size mismatch");
    goto out;
  }
  *base_layers = m;
  ret = 0;
out:
  json_decref (root);
  return ret;
}
