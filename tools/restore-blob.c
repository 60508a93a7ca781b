/* restore-blob.c -- restore a blob archive of a snapshot (qemu-server.conf,
 * fw.conf, ...), decrypted, as `proxmox-backup-client restore SNAPSHOT
 * qemu-server.conf FILE` does: the name with or without ".blob". */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "cli.h"
#include "push.h"

#define BLOB_MAX (16u << 20) /* a blob's upload limit, decoded */

/* 0, or -1 with "PATH: why" in ERR. */
static int
write_out (const char *path, const uint8_t *data, size_t len, bool force,
           struct cli_err *err)
{
  struct out_file_opts o = { .cmd = "restore", .force = force };
  struct out_file f;

  if (strcmp (path, "-") == 0) {
    if (fwrite (data, 1, len, stdout) != len || fflush (stdout) != 0)
      return cli_err_set (err, "-", "write failed: %s", strerror (errno));
    return 0;
  }
  if (out_file_open (&f, path, &o) == -1)
    return cli_err_set (err, path, "%s", out_file_error (&f));
  if (out_file_write (&f, data, len) == -1 || out_file_commit (&f) == -1) {
    cli_err_set (err, path, "%s", out_file_error (&f));
    out_file_abort (&f);
    return -1;
  }
  return 0;
}

int
restore_blob (struct pbs_reader *rd, const struct pbs_key *key,
              const char *snap, const char *arg, const char *out_path,
              bool force, struct cli_err *err)
{
  size_t al = strlen (arg), len = 0, outlen = 0;
  struct pbs_manifest_file f;
  struct pbs_manifest *m;
  uint8_t *data = NULL, *plain = NULL, csum[32];
  unsigned mdlen = 0;
  char *name = NULL;
  int ret = -1;

  if (al >= 5 && strcmp (arg + al - 5, ".blob") == 0)
    name = strdup (arg);
  else if (asprintf (&name, "%s.blob", arg) == -1)
    name = NULL;
  if (!name)
    return cli_err_set (err, snap, "out of memory");
  m = push_fetch_manifest (rd, key, true, snap, err);
  if (!m)
    goto out;
  if (pbs_manifest_find (m, name, &f) == -1) {
    ret = 1; /* not a blob of this snapshot: maybe a disk */
    goto out;
  }
  if (strcmp (f.crypt_mode, "encrypt") == 0 && !key) {
    cli_err_set (err, name, "encrypted; give --keyfile");
    goto out;
  }
  if (pbs_reader_download (rd, name, &data, &len) == -1) {
    cli_err_pbs (err, name);
    goto out;
  }
  /* The manifest lists the blob file's size and sha256 (upload_blob). */
  if (len != f.size
      || EVP_Digest (data, len, csum, &mdlen, EVP_sha256 (), NULL) != 1
      || memcmp (csum, f.csum, 32) != 0) {
    cli_err_set (err, name, "does not match the manifest's size and "
                 "checksum: the snapshot is damaged");
    goto out;
  }
  if (pbs_blob_decode (data, len, key, BLOB_MAX, &plain, &outlen) == -1) {
    cli_err_set (err, name, "%s", pbs_errmsg ());
    goto out;
  }
  ret = write_out (out_path, plain, outlen, force, err);
out:
  pbs_manifest_free (m);
  free (data);
  free (plain);
  free (name);
  return ret;
}
