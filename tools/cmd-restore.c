/* cmd-restore.c -- qcow2pbs restore: write a snapshot's disk as a sparse raw
 * file, checking everything a PBS client checks (manifest signature, index
 * csum and size against the manifest, every chunk's crypt mode and digest)
 * plus what proxmox-backup-client does not: every chunk's decoded length.
 * This thread downloads chunks in index order; the chunk pipeline's
 * workers decode and check them on all cores. */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "push.h"

enum { OPT_FORCE = CLI_OPT_FIRST_FREE, OPT_DISCARD };

static const struct option longopts[] = {
  { "repository", required_argument, NULL, 'r' },
  CLI_REPO_OPTIONS,
  { "ns", required_argument, NULL, 'n' },
  { "keyfile", required_argument, NULL, 'k' },
  { "force", no_argument, NULL, OPT_FORCE },
  { "discard", no_argument, NULL, OPT_DISCARD },
  CLI_OUTPUT_FORMAT_OPTION,
  CLI_PROGRESS_OPTIONS,
  { "help", no_argument, NULL, 'h' },
  { NULL, 0, NULL, 0 },
};

static const char usage_text[] =
  "Usage: qcow2pbs restore [OPTIONS] SNAPSHOT ARCHIVE OUT\n"
  "Write ARCHIVE (e.g. drive-scsi0, with or without .img.fidx) of\n"
  "SNAPSHOT (TYPE/ID/TIME, TIME in RFC 3339 or epoch seconds) as a\n"
  "sparse raw file OUT ('-' = stdout).  Every chunk is checked\n"
  "against its digest; a new OUT appears only when complete.  A block\n"
  "device is written in place, a FIFO or character device streamed, a\n"
  "symlink followed.  A blob archive\n"
  "(e.g. qemu-server.conf or fw.conf, with or without .blob) is written\n"
  "decrypted, checked against the manifest.\n"
  "\n"
  CLI_REPO_ARGS_HELP
  "  --keyfile FILE            the key of an encrypted snapshot (password\n"
  "                            from PBS_ENCRYPTION_PASSWORD or a prompt)\n"
  "  --force                   replace an existing file (keeping its\n"
  "                            owner and mode) or overwrite a block\n"
  "                            device\n"
  "  --discard                 discard a block device's zero ranges\n"
  "                            (they still read back as zeros)\n"
  "  --output-format text|json  JSON: one object on stdout (not with\n"
  "                            OUT '-')\n"
  CLI_REPO_OPTIONS_HELP
  CLI_PROGRESS_OPTIONS_HELP
  "  -h, --help                this help\n";

/* The job source: every chunk that is not a full zero chunk, fetched here
 * (the reader session is used by this thread only) and decoded by the
 * pipeline's workers. */
struct rjob {
  struct pbs_reader *rd;
  const struct pbs_fidx *idx;
  const uint8_t *zero_digest;
  const char *snap;
  struct cli_err *err; /* the pipeline's */
  uint64_t next;
  uint64_t ahead; /* chunks before this one were announced to prefetch */
};

static bool
is_hole (const struct pbs_fidx *idx, uint64_t i, const uint8_t *zero)
{
  return (i + 1) * (uint64_t) PBS_CHUNK_SIZE <= idx->size
         && memcmp (idx->digest[i], zero, PBS_DIGEST_LEN) == 0;
}

static bool
next_job (void *opaque, struct chunk_job *job, bool *failed)
{
  struct rjob *r = opaque;
  uint64_t i;

  while (r->next < r->idx->count && is_hole (r->idx, r->next, r->zero_digest))
    r->next++;
  if (r->next >= r->idx->count)
    return false;
  i = r->next++;
  job->index = i;
  job->off = i * (uint64_t) PBS_CHUNK_SIZE;
  job->len = job->off + PBS_CHUNK_SIZE <= r->idx->size
                 ? PBS_CHUNK_SIZE
                 : (uint32_t) (r->idx->size - job->off);
  memcpy (job->expect, r->idx->digest[i], PBS_DIGEST_LEN);
  /* Keep the next chunks downloading while this one is awaited. */
  if (r->ahead <= i)
    r->ahead = i + 1;
  for (; r->ahead < r->idx->count; r->ahead++)
    if (!is_hole (r->idx, r->ahead, r->zero_digest)
        && pbs_reader_prefetch (r->rd, r->idx->digest[r->ahead]) != 1)
      break; /* window full, local store, or error: only a hint */
  if (pbs_reader_chunk (r->rd, r->idx->digest[i], &job->blob,
                        &job->blob_len) == -1) {
    char hex[65];
    pbs_digest_hex (r->idx->digest[i], hex);
    if (strstr (pbs_errmsg (), hex)) /* the server's text names it */
      cli_err_set (r->err, r->snap, "%s", pbs_errmsg ());
    else
      cli_err_set (r->err, r->snap, "chunk %s: %s", hex, pbs_errmsg ());
    *failed = true;
    return false;
  }
  return true;
}

struct restore_args {
  const char *snap, *archive, *out;
  struct out_file_opts oo;
  bool json;
};

static void
print_json (const struct restore_args *a, const struct out_file *out,
            uint64_t size, uint64_t zero_skipped, uint64_t downloaded,
            double secs)
{
  json_t *o = json_pack ("{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:f}",
                         "snapshot", a->snap, "archive", a->archive,
                         "output", a->out, "size", (json_int_t) size,
                         "bytes_written", (json_int_t) out->written,
                         "zero_bytes_skipped", (json_int_t) zero_skipped,
                         "zeroed_bytes", (json_int_t) out->zeroed,
                         "chunks_downloaded", (json_int_t) downloaded,
                         "seconds", secs);
  char *text = o ? json_dumps (o, JSON_INDENT (2)) : NULL;

  if (text)
    printf ("%s\n", text);
  else
    cli_error ("restore", "out of memory");
  free (text);
  json_decref (o);
}

static int
restore (struct pbs_reader *rd, const struct pbs_key *key,
         struct restore_args *a)
{
  const char *snap = a->snap, *archive = a->archive, *outpath = a->out;
  uint64_t zero_skipped = 0, downloaded = 0, written;
  double t0 = push_now ();
  struct pbs_manifest *m = NULL;
  struct pbs_manifest_file f;
  struct pbs_fidx *idx = NULL;
  struct out_file out;
  bool out_open = false, encrypted;
  uint8_t zero_digest[PBS_DIGEST_LEN];
  struct chunk_pipeline *pl = NULL;
  struct chunk_pipeline_opts po = { 0 };
  struct chunk_result res;
  struct rjob rj = { 0 };
  struct cli_err err;
  struct progress prog;
  uint64_t i;
  int ret = 1;

  m = push_fetch_manifest (rd, key, true, snap, &err);
  if (!m) {
    cli_err_print (&err);
    goto out;
  }
  if (pbs_manifest_find (m, archive, &f) == -1) {
    cli_error (snap, "%s: not in the snapshot", archive);
    goto out;
  }
  encrypted = strcmp (f.crypt_mode, "encrypt") == 0;
  if (encrypted && !key) {
    cli_error (snap, "missing key - %s is encrypted", archive);
    goto out;
  }
  idx = push_fetch_index (rd, NULL, m, archive, snap, &err);
  if (!idx) {
    cli_err_print (&err);
    goto out;
  }
  /* Encrypted chunks are digested with the id_key, plain ones without. */
  po.key = encrypted ? key : NULL;
  pbs_zero_chunk_digest (po.key, zero_digest);
  a->oo.disk_size = idx->size;
  if (out_file_open (&out, outpath, &a->oo) == -1) {
    cli_error (outpath, "%s", out_file_error (&out));
    goto out;
  }
  out_open = true;
  rj.rd = rd;
  rj.idx = idx;
  rj.zero_digest = zero_digest;
  rj.snap = snap;
  rj.err = &err;
  po.err = &err;
  po.decode = true;
  po.encrypted = encrypted;
  po.context = snap;
  po.next_job = next_job;
  po.opaque = &rj;
  pl = chunk_pipeline_start (&po);
  if (!pl) {
    cli_err_print (&err);
    goto out;
  }
  progress_init (&prog, "restore", idx->size);
  prog.io_verb = "written";

  for (i = 0; i < idx->count; i++) {
    uint64_t off = i * (uint64_t) PBS_CHUNK_SIZE;
    size_t len = off + PBS_CHUNK_SIZE <= idx->size
                     ? PBS_CHUNK_SIZE
                     : (size_t) (idx->size - off);

    written = out.written;
    /* A full zero chunk is not fetched; out_file makes it read as zeros
     * (a hole, a zeroed range or written zeros). */
    if (is_hole (idx, i, zero_digest)) {
      zero_skipped += len;
      if (out_file_zeros (&out, len) == -1) {
        cli_error (outpath, "%s", out_file_error (&out));
        goto out;
      }
    }
    else {
      int rc = chunk_pipeline_next (pl, &res);
      if (rc != 1 || res.job.index != i) {
        if (rc != -1)
          cli_error (snap, "internal error: chunk order");
        else
          cli_err_print (&err);
        goto out;
      }
      downloaded++;
      if (out_file_write (&out, res.data, len) == -1) {
        cli_error (outpath, "%s", out_file_error (&out));
        goto out;
      }
    }
    progress_add (&prog, len);
    progress_io (&prog, out.written - written);
  }
  chunk_pipeline_free (pl);
  pl = NULL;
  out_open = false;
  if (out_file_commit (&out) == -1) {
    cli_error (outpath, "%s", out_file_error (&out));
    goto out;
  }
  progress_end (&prog);
  if (a->json)
    print_json (a, &out, idx->size, zero_skipped, downloaded,
                push_now () - t0);
  ret = 0;
out:
  chunk_pipeline_free (pl);
  if (out_open)
    out_file_abort (&out);
  pbs_fidx_free (idx);
  pbs_manifest_free (m);
  return ret;
}

int
cmd_restore (int argc, char **argv)
{
  const char *fingerprint = NULL;
  const char *repo_spec = NULL, *ns = "", *keyfile = NULL;
  char *archive = NULL;
  struct snapshot_source src = { 0 };
  struct restore_args ra = { .oo = { .cmd = "restore" } };
  struct cli_err err;
  int opt, ret = 1;

  optind = 1;
  opterr = 0;
  while ((opt = getopt_long (argc, argv, ":hq", longopts, NULL)) != -1) {
    switch (opt) {
    case 'r': repo_spec = optarg; break;
    case CLI_OPT_FINGERPRINT: fingerprint = optarg; break;
    case 'n': ns = optarg; break;
    case 'k': keyfile = optarg; break;
    case 'q': cli_set_progress_mode (CLI_PROGRESS_QUIET); break;
    case CLI_OPT_PROGRESS: cli_set_progress_mode (CLI_PROGRESS_LINES); break;
    case OPT_FORCE: ra.oo.force = true; break;
    case OPT_DISCARD: ra.oo.discard = true; break;
    case CLI_OPT_OUTPUT_FORMAT:
      if (cli_parse_output_format (optarg, &ra.json) == -1)
        return cli_usage_error ("restore", "unknown output format '%s'",
                                optarg);
      break;
    case 'h': fputs (usage_text, stdout); return 0;
    default: return cli_getopt_error ("restore", opt, argv, longopts);
    }
  }
  if (argc - optind != 3)
    return cli_usage_error ("restore", "expected SNAPSHOT ARCHIVE OUT");
  if (!pbs_valid_ns (ns))
    return cli_usage_error ("restore", "invalid namespace '%s'", ns);
  if (ra.json && strcmp (argv[optind + 2], "-") == 0)
    return cli_usage_error ("restore", "--output-format json needs an OUT "
                            "other than '-' (stdout carries the disk)");
  /* From here on Ctrl-C ends with one line and leaves no temporary. */
  if (out_file_catch_signals ("restore", argv[optind + 2]) == -1) {
    cli_error ("restore", "cannot catch signals");
    goto out;
  }
  if (snapshot_source_open (&src, argv[optind], repo_spec, fingerprint, ns,
                            keyfile, &err) == -1) {
    cli_err_print (&err);
    goto out;
  }
  /* A blob archive (qemu-server.conf, fw.conf), else a disk. */
  switch (restore_blob (src.rd, src.key, argv[optind], argv[optind + 1],
                        argv[optind + 2], ra.oo.force, &err)) {
  case 0:
    ret = 0;
    goto out;
  case -1:
    ret = cli_err_print (&err);
    goto out;
  }
  /* Not a blob of the snapshot: a disk. */
  archive = push_archive_name (argv[optind + 1]);
  if (!archive) {
    ret = cli_usage_error ("restore", "invalid archive name '%s'",
                           argv[optind + 1]);
    goto out;
  }
  ra.snap = argv[optind];
  ra.archive = archive;
  ra.out = argv[optind + 2];
  ret = restore (src.rd, src.key, &ra);
out:
  snapshot_source_close (&src);
  free (archive);
  return ret;
}
