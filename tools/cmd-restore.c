/* cmd-restore.c -- qcow2pbs restore: write a snapshot's disk as a sparse raw
 * file, checking everything a PBS client checks (manifest signature, index
 * csum and size against the manifest, every chunk's crypt mode and digest)
 * plus what proxmox-backup-client does not: every chunk's decoded length. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "push.h"

static const struct option longopts[] = {
  { "repository", required_argument, NULL, 'r' },
  { "ns", required_argument, NULL, 'n' },
  { "keyfile", required_argument, NULL, 'k' },
  { "help", no_argument, NULL, 'h' },
  { NULL, 0, NULL, 0 },
};

static void
usage (void)
{
  printf ("Usage: qcow2pbs restore [--repository REPO] [--ns NS] "
          "[--keyfile FILE]\n"
          "         SNAPSHOT ARCHIVE OUT\n\n"
          "Write ARCHIVE (e.g. drive-scsi0, with or without .img.fidx) of\n"
          "SNAPSHOT (TYPE/ID/TIME, TIME in RFC 3339 or epoch seconds) as a\n"
          "sparse raw file OUT ('-' = stdout).  Every chunk is checked\n"
          "against its digest; OUT appears only when complete.\n");
}

static bool
kind_matches (int kind, bool encrypted)
{
  if (encrypted)
    return kind == PBS_BLOB_ENCRYPTED || kind == PBS_BLOB_ENCRYPTED_ZSTD;
  return kind == PBS_BLOB_PLAIN || kind == PBS_BLOB_ZSTD;
}

static int
restore (struct pbs_reader *rd, const struct pbs_key *key,
         const char *snap, const char *archive, const char *outpath)
{
  struct pbs_manifest *m = NULL;
  struct pbs_manifest_file f;
  struct pbs_fidx *idx = NULL;
  struct out_file out;
  bool out_open = false, encrypted;
  const struct pbs_key *dkey;
  uint8_t zero_digest[PBS_DIGEST_LEN], d[PBS_DIGEST_LEN];
  uint8_t *blob = NULL, *data = NULL;
  size_t blen, dlen, i;
  struct progress prog;
  int ret = 1;

  m = push_read_manifest (rd, key, true, snap);
  if (!m)
    goto out;
  if (pbs_manifest_find (m, archive, &f) == -1) {
    cli_error (snap, "%s: not in the snapshot", archive);
    goto out;
  }
  encrypted = strcmp (f.crypt_mode, "encrypt") == 0;
  if (encrypted && !key) {
    cli_error (snap, "missing key - %s is encrypted", archive);
    goto out;
  }
  idx = push_fetch_index (rd, NULL, m, archive, snap);
  if (!idx)
    goto out;
  /* Encrypted chunks are digested with the id_key, plain ones without. */
  dkey = encrypted ? key : NULL;
  pbs_zero_chunk_digest (dkey, zero_digest);
  if (out_file_open (&out, outpath) == -1)
    goto out; /* out_file_open printed why */
  out_open = true;
  progress_init (&prog, "restore", idx->size);

  for (i = 0; i < idx->count; i++) {
    uint64_t off = (uint64_t) i * PBS_CHUNK_SIZE;
    size_t len = off + PBS_CHUNK_SIZE <= idx->size
                     ? PBS_CHUNK_SIZE
                     : (size_t) (idx->size - off);
    int kind;

    /* A full zero chunk becomes a hole without fetching it. */
    if (len == PBS_CHUNK_SIZE
        && memcmp (idx->digest[i], zero_digest, PBS_DIGEST_LEN) == 0) {
      if (out_file_zeros (&out, len) == -1)
        goto out;
      progress_add (&prog, len);
      continue;
    }
    /* Consecutive equal digests (common for repeated data) decode once. */
    if (!data || i == 0
        || memcmp (idx->digest[i], idx->digest[i - 1], PBS_DIGEST_LEN) != 0
        || dlen != len) {
      char hex[65];
      free (data);
      data = NULL;
      pbs_digest_hex (idx->digest[i], hex);
      if (pbs_reader_chunk (rd, idx->digest[i], &blob, &blen) == -1) {
        cli_error (snap, "chunk %s: %s", hex, pbs_errmsg ());
        goto out;
      }
      kind = pbs_blob_kind (blob, blen);
      if (kind == -1 || !kind_matches (kind, encrypted)) {
        cli_error (snap, "chunk %s: wrong crypt mode or not a blob", hex);
        goto out;
      }
      if (pbs_blob_decode (blob, blen, dkey, PBS_CHUNK_SIZE, &data, &dlen)
          == -1) {
        cli_error (snap, "chunk %s: %s", hex, pbs_errmsg ());
        goto out;
      }
      free (blob);
      blob = NULL;
      pbs_chunk_digest (dkey, data, dlen, d);
      if (memcmp (d, idx->digest[i], PBS_DIGEST_LEN) != 0) {
        cli_error (snap, "chunk %s: digest mismatch", hex);
        goto out;
      }
      if (dlen != len) {
        cli_error (snap, "chunk %s: %zu bytes, index expects %zu", hex,
                   dlen, len);
        goto out;
      }
    }
    if (out_file_write (&out, data, len) == -1)
      goto out;
    progress_add (&prog, len);
  }
  if (out_file_commit (&out) == -1)
    goto out;
  out_open = false;
  progress_end (&prog);
  ret = 0;
out:
  if (out_open)
    out_file_abort (&out);
  free (blob);
  free (data);
  pbs_fidx_free (idx);
  pbs_manifest_free (m);
  return ret;
}

int
cmd_restore (int argc, char **argv)
{
  const char *repo_spec = NULL, *ns = "", *keyfile = NULL;
  char *type = NULL, *id = NULL, *archive = NULL;
  int64_t t;
  struct pbs_repo *repo = NULL;
  struct pbs_reader *rd = NULL;
  struct pbs_key *key = NULL;
  int opt, ret = 1;

  optind = 1;
  while ((opt = getopt_long (argc, argv, "h", longopts, NULL)) != -1) {
    switch (opt) {
    case 'r': repo_spec = optarg; break;
    case 'n': ns = optarg; break;
    case 'k': keyfile = optarg; break;
    case 'h': usage (); return 0;
    default: return cli_usage_error ("restore", "invalid option");
    }
  }
  if (argc - optind != 3)
    return cli_usage_error ("restore", "expected SNAPSHOT ARCHIVE OUT");
  if (!pbs_valid_ns (ns))
    return cli_usage_error ("restore", "invalid namespace '%s'", ns);
  archive = push_archive_name (argv[optind + 1]);
  if (!archive)
    return cli_usage_error ("restore", "invalid archive name '%s'",
                            argv[optind + 1]);
  if (push_parse_snapshot (argv[optind], &type, &id, &t) == -1)
    goto out;
  if (keyfile) {
    key = push_load_key (keyfile);
    if (!key)
      goto out;
  }
  repo = cli_open_repo (repo_spec, NULL);
  if (!repo)
    goto out;
  rd = pbs_reader_start (repo, ns, type, id, t);
  if (!rd) {
    cli_error (argv[optind], "%s", pbs_errmsg ());
    goto out;
  }
  ret = restore (rd, key, argv[optind], archive, argv[optind + 2]);
out:
  pbs_reader_free (rd);
  pbs_repo_close (repo);
  pbs_key_free (key);
  free (type);
  free (id);
  free (archive);
  return ret;
}
