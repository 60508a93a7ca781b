/* repo-args.c -- arguments push, restore, verify and snapshots share:
 * key files, snapshot names, archive names, and fetching a snapshot's
 * manifest and index with the checks every PBS client makes. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "cli.h"
#include "push.h"

struct pbs_key *
push_load_key (const char *path, struct cli_err *err)
{
  char *info, *password = NULL;
  json_t *j;
  const char *kdf = NULL;
  bool need_password = true;
  struct pbs_key *k;

  /* pbs_key_show reads the file without decrypting it: ask for a password
   * (PBS_ENCRYPTION_PASSWORD, its _FD/_FILE/_CMD forms, or the TTY) only
   * when the key is protected by one. */
  info = pbs_key_show (path);
  if (!info) {
    cli_err_set (err, path, "%s", pbs_errmsg ());
    return NULL;
  }
  j = json_loads (info, 0, NULL);
  free (info);
  if (j) {
    kdf = json_string_value (json_object_get (j, "kdf"));
    if (kdf && strcmp (kdf, "none") == 0)
      need_password = false;
  }
  json_decref (j);
  if (need_password) {
    password = cli_read_secret ("PBS_ENCRYPTION_PASSWORD",
                                "Encryption key password: ", err);
    if (!password)
      return NULL; /* cli_read_secret said why */
  }
  k = pbs_key_load (path, password);
  if (password) {
    explicit_bzero (password, strlen (password));
    free (password);
  }
  if (!k)
    cli_err_set (err, path, "%s", pbs_errmsg ());
  return k;
}

char *
push_key_fingerprint (const struct pbs_key *key)
{
  uint8_t fp[32];
  char s[96];

  if (!key)
    return NULL;
  pbs_key_fingerprint (key, fp);
  pbs_fingerprint_string (fp, s);
  return strdup (s);
}

int
push_parse_snapshot (const char *spec, char **type, char **id,
                     int64_t *t, struct cli_err *err)
{
  const char *s1, *s2;

  s1 = strchr (spec, '/');
  s2 = s1 ? strchr (s1 + 1, '/') : NULL;
  if (!s1 || !s2 || strchr (s2 + 1, '/'))
    return cli_err_set (err, spec, "not a snapshot name (TYPE/ID/TIME)");
  *type = strndup (spec, (size_t) (s1 - spec));
  *id = strndup (s1 + 1, (size_t) (s2 - s1 - 1));
  if (!*type || !*id || !pbs_valid_backup_type (*type)
      || !pbs_valid_backup_id (*id) || pbs_parse_time (s2 + 1, t) == -1) {
    free (*type);
    free (*id);
    *type = *id = NULL;
    return cli_err_set (err, spec, "not a snapshot name (TYPE/ID/TIME)");
  }
  return 0;
}

char *
push_archive_name (const char *arg)
{
  size_t n = strlen (arg);
  char *s;

  if (n > 9 && strcmp (arg + n - 9, ".img.fidx") == 0)
    s = strdup (arg);
  else if (n > 4 && strcmp (arg + n - 4, ".img") == 0) {
    s = malloc (n + 6);
    if (s)
      snprintf (s, n + 6, "%s.fidx", arg);
  }
  else {
    s = malloc (n + 10);
    if (s)
      snprintf (s, n + 10, "%s.img.fidx", arg);
  }
  if (s && !pbs_valid_safe_id (s)) {
    free (s);
    return NULL;
  }
  return s;
}

int
push_parse_image_arg (const char *arg, size_t n, char **name,
                      const char **image, struct cli_err *err)
{
  const char *eq = strchr (arg, '=');
  char buf[64];

  /* NAME=IMAGE only when the part before '=' is a plain name: a path such
   * as ./a=b.qcow2 stays a path. */
  if (eq && eq != arg && !memchr (arg, '/', (size_t) (eq - arg))) {
    char *nm = strndup (arg, (size_t) (eq - arg));
    if (!nm)
      return cli_err_set (err, arg, "out of memory");
    *name = push_archive_name (nm);
    free (nm);
    *image = eq + 1;
  }
  else {
    /* PVE names a VM's disks by drive id; we number SCSI drives in
     * argument order: drive-scsi0, drive-scsi1, ... */
    snprintf (buf, sizeof buf, "drive-scsi%zu", n);
    *name = push_archive_name (buf);
    *image = arg;
  }
  if (!*name)
    return cli_err_set (err, arg, "invalid archive name");
  if (!**image) {
    free (*name);
    *name = NULL;
    return cli_err_set (err, arg, "no image given");
  }
  return 0;
}

struct pbs_manifest *
push_fetch_manifest (struct pbs_reader *rd, const struct pbs_key *key,
                     bool verify, const char *context, struct cli_err *err)
{
  uint8_t *blob = NULL, *json = NULL;
  size_t blen, jlen;
  struct pbs_manifest *m = NULL;

  if (pbs_reader_download (rd, "index.json.blob", &blob, &blen) == -1) {
    cli_err_set (err, context, "index.json.blob: %s", pbs_errmsg ());
    return NULL;
  }
  /* A manifest is never encrypted, so no key for the blob itself. */
  if (pbs_blob_decode (blob, blen, NULL, 16u * 1024 * 1024, &json, &jlen)
      == -1) {
    cli_err_set (err, context, "index.json.blob: %s", pbs_errmsg ());
    goto out;
  }
  m = pbs_manifest_parse ((const char *) json, jlen, key,
                          verify ? 0 : PBS_MANIFEST_NO_VERIFY);
  if (!m)
    cli_err_set (err, context, "index.json.blob: %s", pbs_errmsg ());
out:
  free (blob);
  free (json);
  return m;
}

struct pbs_fidx *
push_fetch_index (struct pbs_reader *rd, struct pbs_backup *b,
                  const struct pbs_manifest *m, const char *archive,
                  const char *context, struct cli_err *err)
{
  struct pbs_manifest_file f;
  uint8_t *data = NULL, csum[32];
  size_t len;
  struct pbs_fidx *idx = NULL;
  int r;

  if (pbs_manifest_find (m, archive, &f) == -1) {
    cli_err_set (err, context, "%s: not in the snapshot", archive);
    return NULL;
  }
  r = b ? pbs_backup_download_previous (b, archive, &data, &len)
        : pbs_reader_download (rd, archive, &data, &len);
  if (r == -1) {
    cli_err_set (err, context, "%s: %s", archive, pbs_errmsg ());
    return NULL;
  }
  idx = pbs_fidx_parse (data, len);
  free (data);
  if (!idx) {
    cli_err_set (err, context, "%s: %s", archive, pbs_errmsg ());
    return NULL;
  }
  /* The stored header csum is not trusted: recompute it over the digests
   * and compare with the manifest, as proxmox-backup-client does. */
  pbs_fidx_csum (idx, csum);
  if (memcmp (csum, f.csum, 32) != 0 || idx->size != f.size
      || idx->chunk_size != PBS_CHUNK_SIZE) {
    cli_err_set (err, context, "%s: index does not match the manifest "
                 "(checksum or size)", archive);
    pbs_fidx_free (idx);
    return NULL;
  }
  return idx;
}

char *
push_snapshot_name (const char *type, const char *id, int64_t t)
{
  char ts[21], *s = NULL;

  pbs_time_to_rfc3339 (t, ts);
  if (asprintf (&s, "%s/%s/%s", type, id, ts) == -1)
    return NULL;
  return s;
}

int
snapshot_source_open (struct snapshot_source *src, const char *snapshot,
                      const char *repo_spec, const char *fingerprint,
                      const char *ns, const char *keyfile,
                      struct cli_err *err)
{
  char *type = NULL, *id = NULL;
  int64_t t;
  int ret = -1;

  memset (src, 0, sizeof *src);
  if (push_parse_snapshot (snapshot, &type, &id, &t, err) == -1)
    return -1;
  if (keyfile) {
    src->key = push_load_key (keyfile, err);
    if (!src->key)
      goto out;
  }
  src->repo = cli_open_repo (repo_spec, fingerprint, err);
  if (!src->repo)
    goto out;
  src->rd = pbs_reader_start (src->repo, ns, type, id, t);
  if (!src->rd) {
    cli_err_pbs (err, snapshot);
    goto out;
  }
  ret = 0;
out:
  free (type);
  free (id);
  return ret;
}

void
snapshot_source_close (struct snapshot_source *src)
{
  pbs_reader_free (src->rd);
  cli_close_repo (src->repo);
  pbs_key_free (src->key);
  memset (src, 0, sizeof *src);
}
