/* cmd-verify.c -- qcow2pbs verify: prove that a snapshot's archives equal
 * qcow2 chains without restoring them.  Only the manifest and the indexes
 * are downloaded; the chains' chunk digests are computed here (zero chunks
 * from metadata, the rest read and hashed on all cores) and compared. */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "push.h"

static const struct option longopts[] = {
  { "repository", required_argument, NULL, 'r' },
  CLI_REPO_OPTIONS,
  { "ns", required_argument, NULL, 'n' },
  { "keyfile", required_argument, NULL, 'k' },
  CLI_IMAGE_OPTIONS,
  CLI_PROGRESS_OPTIONS,
  CLI_OUTPUT_FORMAT_OPTION,
  { "help", no_argument, NULL, 'h' },
  { NULL, 0, NULL, 0 },
};

static const char usage_text[] =
  "Usage: qcow2pbs verify [OPTIONS] SNAPSHOT [NAME=]IMAGE ...\n"
  "       qcow2pbs verify [OPTIONS] --chain FULL,INCR0,... SNAPSHOT\n"
  "Compare each archive NAME.img.fidx (default drive-scsi0, drive-scsi1,\n"
  "...) of SNAPSHOT with the merged disk of IMAGE's chain.  Prints\n"
  "\"identical\" and exits 0, or prints the differing ranges and exits 1;\n"
  "exits 2 on trouble (as cmp does).  Only the index's chunk digests are\n"
  "compared: the stored chunks are not read, so a damaged chunk goes\n"
  "unnoticed here ('qcow2pbs check' reads and proves them).\n"
  "\n"
  CLI_REPO_ARGS_HELP
  "  --keyfile FILE            the key of an encrypted snapshot (password\n"
  "                            from PBS_ENCRYPTION_PASSWORD or a prompt)\n"
  CLI_IMAGE_OPTIONS_HELP
  CLI_REPO_OPTIONS_HELP
  "  --output-format text|json  JSON: one object: identical, and the\n"
  "                            differing ranges of each archive\n"
  CLI_PROGRESS_OPTIONS_HELP
  "  -h, --help                this help\n";

struct vjob {
  const uint8_t *data; /* 1 = chunk has DATA */
  uint64_t n, size, next;
};

static bool
next_job (void *opaque, struct chunk_job *job, bool *failed)
{
  struct vjob *v = opaque;

  (void) failed;
  /* Full chunks without data are zero chunks: digest known, not read. */
  while (v->next < v->n && !v->data[v->next]
         && (v->next + 1) * (uint64_t) PBS_CHUNK_SIZE <= v->size)
    v->next++;
  if (v->next >= v->n)
    return false;
  job->index = v->next;
  job->off = v->next * (uint64_t) PBS_CHUNK_SIZE;
  job->len = job->off + PBS_CHUNK_SIZE <= v->size
                 ? PBS_CHUNK_SIZE
                 : (uint32_t) (v->size - job->off);
  job->zero_fill = !v->data[v->next];
  v->next++;
  return true;
}

/* RANGES: the JSON array of differing ranges, NULL for text output. */
static void
report_range (const char *name, uint64_t first, uint64_t last,
              uint64_t size, bool *any, json_t *ranges)
{
  uint64_t a = first * PBS_CHUNK_SIZE;
  uint64_t b = (last + 1) * (uint64_t) PBS_CHUNK_SIZE;

  if (b > size)
    b = size;
  if (ranges)
    json_array_append_new (
        ranges, json_pack ("{s:I, s:I, s:I, s:I}", "offset", (json_int_t) a,
                           "length", (json_int_t) (b - a), "first_chunk",
                           (json_int_t) first, "last_chunk",
                           (json_int_t) last));
  else
    printf ("%s: differs: bytes %llu-%llu (chunks %llu-%llu)\n", name,
            (unsigned long long) a, (unsigned long long) (b - 1),
            (unsigned long long) first, (unsigned long long) last);
  *any = true;
}

/* 0 identical, 1 different, -1 error (push.h). */
int
verify_archive (struct pbs_reader *rd, const struct pbs_manifest *m,
                const struct pbs_key *key, const char *snap,
                const char *name, const char *image,
                const struct qcow_open_opts *oo, json_t *archives)
{
  json_t *ranges = archives ? json_array () : NULL;
  struct pbs_manifest_file f;
  struct pbs_fidx *idx = NULL;
  struct qcow_chain *c = NULL;
  struct chunk_pipeline *pl = NULL;
  struct chunk_pipeline_opts po = { 0 };
  struct chunk_result r;
  struct vjob v = { 0 };
  uint8_t *data = NULL, zero_digest[PBS_DIGEST_LEN], d[PBS_DIGEST_LEN];
  const struct pbs_key *dkey;
  uint64_t i, nchunks, first = 0, common;
  bool in_diff = false, any = false;
  struct progress prog;
  struct cli_err err;
  int ret = -1;

  if (pbs_manifest_find (m, name, &f) == -1) {
    cli_error (snap, "%s: not in the snapshot", name);
    goto out;
  }
  if (strcmp (f.crypt_mode, "encrypt") == 0 && !key) {
    cli_error (snap, "missing key - %s is encrypted", name);
    goto out;
  }
  dkey = strcmp (f.crypt_mode, "encrypt") == 0 ? key : NULL;
  idx = push_fetch_index (rd, NULL, m, name, snap, &err);
  if (!idx) {
    cli_err_print (&err);
    goto out;
  }
  c = cli_open_chain (oo->chain_len ? NULL : image, oo, &err);
  if (!c) {
    cli_err_print (&err);
    goto out;
  }
  if (plan_data_chunks (c, image, &data, &nchunks, &err) == -1) {
    cli_err_print (&err);
    goto out;
  }
  pbs_zero_chunk_digest (dkey, zero_digest);
  v.data = data;
  v.n = nchunks;
  v.size = qcow_virtual_size (c);
  po.chain = c;
  po.key = dkey;
  po.context = image;
  po.err = &err;
  po.next_job = next_job;
  po.opaque = &v;
  pl = chunk_pipeline_start (&po);
  if (!pl) {
    cli_err_print (&err);
    goto out;
  }
  progress_init (&prog, "verify", v.size);

  common = nchunks < idx->count ? nchunks : idx->count;
  for (i = 0; i < nchunks; i++) {
    bool same;
    uint64_t len = (i + 1) * (uint64_t) PBS_CHUNK_SIZE <= v.size
                       ? PBS_CHUNK_SIZE
                       : v.size - i * (uint64_t) PBS_CHUNK_SIZE;
    if (!data[i] && len == PBS_CHUNK_SIZE)
      memcpy (d, zero_digest, PBS_DIGEST_LEN);
    else {
      int rc = chunk_pipeline_next (pl, &r);
      if (rc != 1 || r.job.index != i) {
        if (rc == 1 || rc == 0)
          cli_error (image, "internal error: chunk order");
        else
          cli_err_print (&err);
        goto out;
      }
      memcpy (d, r.digest, PBS_DIGEST_LEN);
      if (!r.job.zero_fill)
        progress_io (&prog, r.job.len);
    }
    progress_add (&prog, len);
    /* The last chunk of either side only matches with equal sizes. */
    same = i < common && memcmp (d, idx->digest[i], PBS_DIGEST_LEN) == 0
           && (idx->size == v.size
               || (i + 1) * (uint64_t) PBS_CHUNK_SIZE
                      <= (idx->size < v.size ? idx->size : v.size));
    if (!same && !in_diff) {
      first = i;
      in_diff = true;
    }
    else if (same && in_diff) {
      report_range (name, first, i - 1, v.size, &any, ranges);
      in_diff = false;
    }
  }
  /* Chunks only the snapshot has. */
  if (idx->count > nchunks) {
    if (!in_diff)
      first = nchunks;
    in_diff = true;
    i = idx->count;
  }
  if (in_diff)
    report_range (name, first, i - 1, v.size > idx->size ? v.size
                                                         : idx->size, &any,
                  ranges);
  progress_end (&prog);
  if (idx->size != v.size) {
    if (!ranges)
      printf ("%s: differs: size %llu in the snapshot, %llu in the chain\n",
              name, (unsigned long long) idx->size,
              (unsigned long long) v.size);
    any = true;
  }
  if (ranges) {
    json_array_append_new (
        archives,
        json_pack ("{s:s, s:s, s:b, s:I, s:I, s:O}", "archive", name,
                   "image", image, "identical", !any, "snapshot_size",
                   (json_int_t) idx->size, "chain_size",
                   (json_int_t) v.size, "differences", ranges));
  }
  else if (!any)
    printf ("%s: identical\n", name);
  ret = any ? 1 : 0;
out:
  chunk_pipeline_free (pl);
  free (data);
  qcow_close (c);
  pbs_fidx_free (idx);
  json_decref (ranges);
  return ret;
}

int
cmd_verify (int argc, char **argv)
{
  const char *fingerprint = NULL;
  const char *repo_spec = NULL, *ns = "", *keyfile = NULL, *chain;
  struct qcow_open_opts oo = { 0 };
  struct snapshot_source src = { 0 };
  struct pbs_manifest *m = NULL;
  json_t *archives = NULL;
  struct cli_err err;
  bool json = false;
  int opt, ret = 2, i, n, differ = 0; /* 2: trouble, as cmp says it */

  optind = 1;
  opterr = 0;
  while ((opt = getopt_long (argc, argv, ":hq" CLI_IMAGE_SHORTOPTS, longopts,
                             NULL))
         != -1) {
    switch (opt) {
    case 'r': repo_spec = optarg; break;
    case CLI_OPT_FINGERPRINT: fingerprint = optarg; break;
    case 'n': ns = optarg; break;
    case 'k': keyfile = optarg; break;
    case CLI_OPT_CHAIN:
    case CLI_OPT_ALLOW_ABSOLUTE_DATA_FILE:
    case CLI_OPT_PROBE_BACKING_FORMAT:
    case CLI_OPT_FORCE_SHARE:
    case 'U':
    case CLI_OPT_ALLOW_BACKING_DIR:
      if (cli_image_option (opt, optarg, &oo, &err) == -1) {
        cli_free_chain (&oo);
        return cli_err_print (&err);
      }
      break;
    case 'q': cli_set_progress_mode (CLI_PROGRESS_QUIET); break;
    case CLI_OPT_PROGRESS: cli_set_progress_mode (CLI_PROGRESS_LINES); break;
    case 'h': fputs (usage_text, stdout); cli_free_chain (&oo); return 0;
    case CLI_OPT_OUTPUT_FORMAT:
      if (cli_parse_output_format (optarg, &json) == -1) {
        cli_free_chain (&oo);
        return cli_usage_error ("verify", "unknown output format '%s'",
                                optarg);
      }
      break;
    default:
      cli_free_chain (&oo);
      return cli_getopt_error ("verify", opt, argv, longopts);
    }
  }
  chain = oo.chain_len ? oo.chain[oo.chain_len - 1] : NULL;
  n = argc - optind - 1;
  if (n < 0 || (n == 0 && !chain))
    return cli_usage_error ("verify", "expected SNAPSHOT [NAME=]IMAGE ...");
  if (chain && n > 1)
    return cli_usage_error ("verify", "--chain works with one image only");
  if (!pbs_valid_ns (ns))
    return cli_usage_error ("verify", "invalid namespace '%s'", ns);
  if (snapshot_source_open (&src, argv[optind], repo_spec, fingerprint, ns,
                            keyfile, &err) == -1) {
    cli_err_print (&err);
    goto out;
  }
  m = push_fetch_manifest (src.rd, src.key, true, argv[optind], &err);
  if (!m) {
    cli_err_print (&err);
    goto out;
  }
  if (json && !(archives = json_array ())) {
    cli_error ("verify", "out of memory");
    goto out;
  }
  for (i = 0; i < (n ? n : 1); i++) {
    char *name = NULL;
    const char *image = chain;
    int r;
    if (n && push_parse_image_arg (argv[optind + 1 + i], (size_t) i, &name,
                                   &image, &err)
                 == -1) {
      cli_err_print (&err);
      goto out;
    }
    if (cli_check_chain_top ("verify", image, &oo, &err) != 0) {
      free (name);
      ret = cli_err_print (&err);
      goto out;
    }
    if (!n)
      name = push_archive_name ("drive-scsi0");
    r = name ? verify_archive (src.rd, m, src.key, argv[optind], name, image, &oo,
                           archives)
             : -1;
    free (name);
    if (r == -1)
      goto out;
    differ |= r;
  }
  if (json) {
    json_t *o = json_pack ("{s:s, s:b, s:O}", "snapshot", argv[optind],
                           "identical", !differ, "archives", archives);
    char *text = o ? json_dumps (o, JSON_INDENT (2)) : NULL;
    json_decref (o);
    if (!text) {
      cli_error ("verify", "out of memory");
      goto out;
    }
    printf ("%s\n", text);
    free (text);
  }
  else if (differ)
    cli_error (argv[optind], "differs from the chain");
  else
    printf ("identical\n");
  ret = differ ? 1 : 0;
out:
  json_decref (archives);
  pbs_manifest_free (m);
  snapshot_source_close (&src);
  cli_free_chain (&oo);
  return ret;
}
