/* cmd-push.c -- qcow2pbs push: store qcow2 chains as one complete PBS image
 * snapshot, reusing the previous snapshot's digests for every chunk the new
 * layers did not touch -- but only with evidence (push-evidence.c) that the
 * previous snapshot was made from exactly the layers below them.
 *
 * Per archive the index is written with strategy B of docs/pbs-protocol.md
 * §7.3 (reuse-csum: the server clones the base's digests, we send only
 * touched chunks) when the base is proven and the size is unchanged, else
 * with strategy A (every digest appended; reused ones taken from the base). */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "cli.h"
#include "push.h"
#include "pve-push.h"
#include "tar-index.h"

#define APPEND_BATCH 128 /* pairs per PUT fixed_index, as PVE's QEMU */

struct archive {
  char *name;        /* drive-scsi0.img.fidx */
  const char *image; /* as given */
  const struct qcow_open_opts *oo; /* --disk: this disk's chain, or NULL */
  const struct tar_member *const *member; /* --from-archive: per layer */
  struct qcow_chain *chain;
  struct chain_identity ident;
  uint64_t size, nchunks;
  uint8_t *data;     /* per chunk: 1 if some byte is DATA (plan_data_chunks) */
  uint8_t *plan;     /* per chunk: enum chunk_plan, for this attempt */
  struct pbs_fidx *base; /* the base's index (checked), or NULL */
  bool incremental;
  char reason[512];
  uint8_t csum[32];
  uint64_t zero_chunks, reused_chunks, read_chunks, read_bytes;
  uint64_t stored_chunks, stored_bytes;
};

struct push {
  const char *repo_spec, *fingerprint, *ns, *type, *id;
  int64_t time;
  bool time_given; /* --backup-time: kept across retries */
  struct pbs_key *key;
  char *key_fp;
  bool full, dry_run, json;
  unsigned retries;
  struct archive *a;
  size_t na;
  uint8_t zero_digest[PBS_DIGEST_LEN];
  /* This attempt. */
  struct pbs_repo *repo;
  struct pbs_backup *b;         /* NULL in --dry-run */
  struct pbs_manifest *base_m;  /* the base's manifest, if usable */
  char base_why[512];           /* why there is no usable base */
  int64_t base_time;
  struct digest_set *known;
  /* First failure of this attempt, printed once at the end. */
  char err_ctx[256], err_msg[768];
  bool err_printed, transient;
  bool retrying; /* a previous attempt failed transiently */
  bool zero_stored; /* the zero chunk is known in this attempt */
  struct progress prog;
  struct pve_push pve; /* Proxmox VE config, notes, protection */
};

static const struct option longopts[] = {
  { "repository", required_argument, NULL, 'r' },
  CLI_REPO_OPTIONS,
  { "backup-id", required_argument, NULL, 'i' },
  { "backup-type", required_argument, NULL, 't' },
  { "ns", required_argument, NULL, 'n' },
  { "backup-time", required_argument, NULL, 'T' },
  { "keyfile", required_argument, NULL, 'k' },
  CLI_IMAGE_OPTIONS,
  { "full", no_argument, NULL, 'F' },
  { "dry-run", no_argument, NULL, 'd' },
  { "retries", required_argument, NULL, 'R' },
  { "output-format", required_argument, NULL, 'o' },
  CLI_PROGRESS_OPTIONS,
  { "disk", required_argument, NULL, 'D' },
  { "from-archive", required_argument, NULL, 'A' },
  PVE_PUSH_OPTIONS,
  { "help", no_argument, NULL, 'h' },
  { NULL, 0, NULL, 0 },
};

static const char usage_text[] =
  "Usage: qcow2pbs push [OPTIONS] --backup-id ID [NAME=]IMAGE ...\n"
  "       qcow2pbs push [OPTIONS] --backup-id ID --chain FULL,INCR0,...\n"
  "       qcow2pbs push [OPTIONS] --backup-id ID --disk NAME=L0,L1,... ...\n"
  "Store each IMAGE (the newest layer of a qcow2 chain) as the complete\n"
  "disk NAME.img.fidx of one new snapshot.  NAME defaults to drive-scsi0,\n"
  "drive-scsi1, ... in argument order.  Chunks the new layers did not\n"
  "touch are taken from the group's previous snapshot when its qcow2pbs\n"
  "record proves it was made from the layers below them; otherwise the\n"
  "whole chain is read (still storing only chunks the repository lacks).\n"
  "\n"
  CLI_REPO_ARGS_HELP
  "  --backup-id ID            the snapshot group's id, e.g. the VM id\n"
  "  --backup-type vm|host|ct  the group's type (default vm)\n"
  "  --backup-time TIME        the snapshot's time, epoch seconds or\n"
  "                            RFC 3339 (default: now)\n"
  "  --keyfile FILE            encrypt with this key (password from\n"
  "                            PBS_ENCRYPTION_PASSWORD or a prompt)\n"
  CLI_IMAGE_OPTIONS_HELP
  CLI_REPO_OPTIONS_HELP
  "  --disk NAME=L0,L1,...     instead of IMAGE arguments: the disk\n"
  "                            archive NAME from this chain, oldest layer\n"
  "                            first (the --chain syntax; ',,' = ',');\n"
  "                            repeat it for each disk of the VM\n"
  "  --from-archive TAR        the --disk layers are members of the\n"
  "                            uncompressed tar TAR (paths as tar -tf\n"
  "                            lists them), read in place: no copy\n"
  "  --full                    read everything, reuse nothing\n"
  "  --dry-run                 report what would be read and stored (an\n"
  "                            upper bound: repeats far apart count twice);\n"
  "                            write nothing\n"
  "  --retries N               restart a remote session after transient\n"
  "                            errors (default 3), with backoff; each new\n"
  "                            session takes the current time unless\n"
  "                            --backup-time was given\n"
  "  --output-format text|json  output format (default text)\n"
  CLI_PROGRESS_OPTIONS_HELP
  PVE_PUSH_OPTIONS_HELP
  "  -h, --help                this help\n";

/* Record the first failure of this attempt.  Printed once by the caller,
 * so that a retried session leaves no stray lines. */
__attribute__ ((format (printf, 3, 4))) static int
fail (struct push *p, const char *ctx, const char *fmt, ...)
{
  va_list ap;

  if (p->err_msg[0] || p->err_printed)
    return -1;
  snprintf (p->err_ctx, sizeof p->err_ctx, "%s", ctx);
  va_start (ap, fmt);
  vsnprintf (p->err_msg, sizeof p->err_msg, fmt, ap);
  va_end (ap);
  return -1;
}

/* A pbs_* call failed: remember whether a new session might help. */
static int
fail_pbs (struct push *p, const char *ctx)
{
  if (!p->err_msg[0] && !p->err_printed)
    p->transient = pbs_error_is_transient ();
  return fail (p, ctx, "%s", pbs_errmsg ());
}

/* Helpers that print their own errors (pipeline, plan) call this. */
static int
failed_printed (struct push *p)
{
  if (!p->err_msg[0])
    p->err_printed = true;
  return -1;
}

/* ------------------------------------------------------ the base */

/* Decode the base manifest and decide whether it may serve as a base at
 * all (same key).  Sets p->base_m or p->base_why. */
static int
load_base_manifest (struct push *p, const uint8_t *blob, size_t blen)
{
  uint8_t *json = NULL;
  size_t jlen;
  struct pbs_manifest *m;
  const char *fp;

  if (pbs_blob_decode (blob, blen, NULL, 16u * 1024 * 1024, &json, &jlen)
      == -1) {
    snprintf (p->base_why, sizeof p->base_why,
              "previous manifest unreadable: %s", pbs_errmsg ());
    return 0;
  }
  m = pbs_manifest_parse ((const char *) json, jlen, NULL,
                          PBS_MANIFEST_NO_VERIFY);
  if (!m) {
    snprintf (p->base_why, sizeof p->base_why,
              "previous manifest unreadable: %s", pbs_errmsg ());
    free (json);
    return 0;
  }
  fp = pbs_manifest_key_fingerprint (m);
  if ((fp == NULL) != (p->key_fp == NULL)
      || (fp && strcmp (fp, p->key_fp) != 0)) {
    snprintf (p->base_why, sizeof p->base_why, "key changed");
    pbs_manifest_free (m);
    free (json);
    return 0;
  }
  if (p->key) {
    /* Same fingerprint: the signature must hold too. */
    pbs_manifest_free (m);
    m = pbs_manifest_parse ((const char *) json, jlen, p->key, 0);
    if (!m) {
      snprintf (p->base_why, sizeof p->base_why,
                "previous manifest signature invalid: %s", pbs_errmsg ());
      free (json);
      return 0;
    }
  }
  free (json);
  if (pbs_manifest_time (m) != p->base_time) {
    snprintf (p->base_why, sizeof p->base_why,
              "previous manifest has another backup-time");
    pbs_manifest_free (m);
    return 0;
  }
  p->base_m = m;
  return 0;
}

/* Download the base's index of archive A (registering its digests as
 * known) and check it against the base manifest. */
static int
load_base_index (struct push *p, struct pbs_reader *rd, struct archive *a)
{
  struct pbs_manifest_file f;
  uint8_t *data = NULL, csum[32];
  size_t len;
  int r;

  if (!p->base_m) {
    snprintf (a->reason, sizeof a->reason, "%s", p->base_why);
    return 0;
  }
  if (pbs_manifest_find (p->base_m, a->name, &f) == -1) {
    snprintf (a->reason, sizeof a->reason,
              "previous snapshot has no %s", a->name);
    return 0;
  }
  /* A sign-only base with our key has plain chunks: not reusable in an
   * encrypted index (and the other way round). */
  if (strcmp (f.crypt_mode, p->key ? "encrypt" : "none") != 0) {
    snprintf (a->reason, sizeof a->reason,
              "previous snapshot has crypt-mode %s", f.crypt_mode);
    return 0;
  }
  r = p->b ? pbs_backup_download_previous (p->b, a->name, &data, &len)
           : pbs_reader_download (rd, a->name, &data, &len);
  if (r == -1) {
    if (pbs_error_is_transient ())
      return fail_pbs (p, a->name);
    snprintf (a->reason, sizeof a->reason,
              "previous index unreadable: %s", pbs_errmsg ());
    return 0;
  }
  a->base = pbs_fidx_parse (data, len);
  free (data);
  if (!a->base) {
    snprintf (a->reason, sizeof a->reason,
              "previous index unreadable: %s", pbs_errmsg ());
    return 0;
  }
  pbs_fidx_csum (a->base, csum);
  if (memcmp (csum, f.csum, 32) != 0 || a->base->size != f.size
      || a->base->chunk_size != PBS_CHUNK_SIZE) {
    snprintf (a->reason, sizeof a->reason,
              "previous index checksum mismatch");
    pbs_fidx_free (a->base);
    a->base = NULL;
    return 0;
  }
  if (digest_set_add_base (p->known,
                           (const uint8_t (*)[PBS_DIGEST_LEN]) a->base->digest,
                           a->base->count)
      == -1)
    return fail (p, a->image, "out of memory");
  return 0;
}

/* With a checked base index: decide reuse and fill A->plan. */
static int
make_plan (struct push *p, struct archive *a)
{
  uint8_t *touched = NULL;
  size_t base_layers = 0, n = a->ident.n, i;
  uint64_t c, minsize;
  char *record = NULL;

  a->incremental = false;
  if (p->full)
    snprintf (a->reason, sizeof a->reason, "--full");
  else if (a->base) {
    uint8_t csum[32];
    record = pbs_manifest_get_unprotected (p->base_m, "qcow2pbs");
    pbs_fidx_csum (a->base, csum);
    if (identity_match (record, a->name, &a->ident, csum, a->base->size,
                        p->key_fp, &base_layers, a->reason,
                        sizeof a->reason)
        == 0)
      a->incremental = true;
    free (record);
  }
  if (a->incremental) {
    touched = calloc (a->nchunks ? a->nchunks : 1, 1);
    if (!touched)
      return fail (p, a->image, "out of memory");
    /* Layers base_layers..n-1 (oldest first) are new: depth n-1-i. */
    for (i = base_layers; i < n; i++)
      if (plan_touch_layer (a->chain, n - 1 - i, touched, a->nchunks,
                            a->image)
          == -1) {
        free (touched);
        return failed_printed (p);
      }
    /* A shorter layer hides what lies above its size in the layers below,
     * and a grown disk has new bytes: [min size, top size) is touched. */
    minsize = a->ident.layer[base_layers - 1].virtual_size;
    for (i = base_layers; i < n; i++)
      if (a->ident.layer[i].virtual_size < minsize)
        minsize = a->ident.layer[i].virtual_size;
    for (c = minsize / PBS_CHUNK_SIZE; c < a->nchunks; c++)
      touched[c] = 1;
    a->reason[0] = 0;
  }
  for (c = 0; c < a->nchunks; c++) {
    uint64_t end = (c + 1) * (uint64_t) PBS_CHUNK_SIZE;
    if (touched && !touched[c] && end <= a->size && end <= a->base->size)
      a->plan[c] = PLAN_REUSE;
    else if (a->data[c])
      a->plan[c] = PLAN_READ;
    else if (end <= a->size)
      a->plan[c] = PLAN_ZERO;
    else
      a->plan[c] = PLAN_ZERO_DATA; /* a short chunk is hashed as data */
  }
  free (touched);
  return 0;
}

/* ------------------------------------------------------ writing */

struct writer {
  struct push *p;
  struct archive *a;
  int wid;
  bool reuse;  /* strategy B */
  uint8_t dig[APPEND_BATCH][PBS_DIGEST_LEN];
  uint64_t off[APPEND_BATCH];
  size_t n;
  uint64_t appended, appended_bytes;
  EVP_MD_CTX *csum;
  uint64_t next; /* job cursor */
};

static int
flush (struct writer *w)
{
  if (w->n && w->p->b
      && pbs_backup_fixed_append (w->p->b, w->wid, w->n,
                                  (const uint8_t (*)[PBS_DIGEST_LEN]) w->dig,
                                  w->off)
             == -1)
    return fail_pbs (w->p, w->a->name);
  w->n = 0;
  return 0;
}

static int
append (struct writer *w, uint64_t c, const uint8_t d[PBS_DIGEST_LEN],
        bool send)
{
  uint64_t off = c * (uint64_t) PBS_CHUNK_SIZE;

  EVP_DigestUpdate (w->csum, d, PBS_DIGEST_LEN);
  if (!send)
    return 0;
  memcpy (w->dig[w->n], d, PBS_DIGEST_LEN);
  w->off[w->n++] = off;
  w->appended++;
  w->appended_bytes += off + PBS_CHUNK_SIZE <= w->a->size
                           ? PBS_CHUNK_SIZE
                           : w->a->size - off;
  return w->n == APPEND_BATCH ? flush (w) : 0;
}

static bool
is_known (struct push *p, const uint8_t d[PBS_DIGEST_LEN])
{
  return p->b ? pbs_backup_known (p->b, d) : false;
}

/* Store a chunk unless the session knows it.  BLOB may be NULL (then it is
 * encoded here from DATA); it is freed. */
static int
store (struct push *p, struct writer *w, const uint8_t d[PBS_DIGEST_LEN],
       const uint8_t *data, uint32_t len, uint8_t *blob, size_t blob_len)
{
  if (p->b ? pbs_backup_known (p->b, d)
           : (!blob && !digest_set_add (p->known, d))) {
    free (blob);
    return 0;
  }
  if (!blob) {
    if (!data) {
      free (blob);
      return fail (p, w->a->name, "internal error: no chunk data");
    }
    if (pbs_blob_encode (data, len, p->key, true, &blob, &blob_len) == -1)
      return fail (p, w->a->name, "encoding chunk: %s", pbs_errmsg ());
  }
  if (!p->b)
    free (blob); /* dry run */
  else if (pbs_backup_fixed_chunk_take (p->b, w->wid, d, len, blob, blob_len)
           == -1)
    return fail_pbs (p, w->a->name);
  w->a->stored_chunks++;
  w->a->stored_bytes += blob_len;
  return 0;
}

static bool
next_job (void *opaque, struct chunk_job *job, bool *failed)
{
  struct writer *w = opaque;
  struct archive *a = w->a;

  (void) failed;
  while (w->next < a->nchunks && a->plan[w->next] != PLAN_READ
         && a->plan[w->next] != PLAN_ZERO_DATA)
    w->next++;
  if (w->next >= a->nchunks)
    return false;
  job->index = w->next;
  job->off = w->next * (uint64_t) PBS_CHUNK_SIZE;
  job->len = job->off + PBS_CHUNK_SIZE <= a->size
                 ? PBS_CHUNK_SIZE
                 : (uint32_t) (a->size - job->off);
  job->zero_fill = a->plan[w->next] == PLAN_ZERO_DATA;
  w->next++;
  return true;
}

static int
write_archive (struct push *p, struct archive *a)
{
  struct writer *w = calloc (1, sizeof *w);
  struct chunk_pipeline *pl = NULL;
  struct chunk_pipeline_opts po = { 0 };
  struct chunk_result r;
  char reuse_hex[65];
  unsigned mdlen;
  uint64_t c;
  int ret = -1;

  if (!w)
    return fail (p, a->image, "out of memory");
  w->p = p;
  w->a = a;
  w->csum = EVP_MD_CTX_new ();
  if (!w->csum || EVP_DigestInit_ex (w->csum, EVP_sha256 (), NULL) != 1) {
    fail (p, a->image, "sha256 failed");
    goto out;
  }
  /* Strategy B needs equal chunk counts; equal sizes keep it simple. */
  w->reuse = a->incremental && a->base->size == a->size;
  if (w->reuse) {
    uint8_t bc[32];
    pbs_fidx_csum (a->base, bc);
    pbs_digest_hex (bc, reuse_hex);
  }
  if (p->b) {
    w->wid = pbs_backup_fixed_index (p->b, a->name, a->size,
                                     w->reuse ? reuse_hex : NULL);
    if (w->wid == -1) {
      fail_pbs (p, a->name);
      goto out;
    }
  }
  po.chain = a->chain;
  po.key = p->key;
  po.encode = true;
  po.known = p->known;
  po.context = a->image;
  po.next_job = next_job;
  po.opaque = w;
  pl = chunk_pipeline_start (&po);
  if (!pl) {
    failed_printed (p);
    goto out;
  }
  for (c = 0; c < a->nchunks; c++) {
    if (cli_interrupted ()) {
      fail (p, "push", "interrupted");
      goto out;
    }
    switch (a->plan[c]) {
    case PLAN_REUSE:
      a->reused_chunks++;
      if (append (w, c, a->base->digest[c], !w->reuse) == -1)
        goto out;
      progress_add (&p->prog, PBS_CHUNK_SIZE);
      break;
    case PLAN_ZERO:
      a->zero_chunks++;
      /* Stored once per session: PBS references only known digests. */
      if (!p->zero_stored && !is_known (p, p->zero_digest)) {
        uint8_t *zeros = calloc (1, PBS_CHUNK_SIZE);
        int rc;
        if (!zeros) {
          fail (p, a->image, "out of memory");
          goto out;
        }
        rc = store (p, w, p->zero_digest, zeros, PBS_CHUNK_SIZE, NULL, 0);
        free (zeros);
        if (rc == -1)
          goto out;
      }
      p->zero_stored = true;
      if (append (w, c, p->zero_digest, true) == -1)
        goto out;
      progress_add (&p->prog, PBS_CHUNK_SIZE);
      break;
    default:
      switch (chunk_pipeline_next (pl, &r)) {
      case 1:
        break;
      case 0:
        fail (p, a->image, "internal error: pipeline ended early");
        goto out;
      default:
        failed_printed (p);
        goto out;
      }
      if (r.job.index != c) {
        free (r.blob);
        fail (p, a->image, "internal error: chunk order");
        goto out;
      }
      if (!r.job.zero_fill) {
        a->read_chunks++;
        a->read_bytes += r.job.len;
      }
      if (store (p, w, r.digest, r.data, r.job.len, r.blob, r.blob_len)
              == -1
          || append (w, c, r.digest, true) == -1)
        goto out;
      progress_add (&p->prog, r.job.len);
      break;
    }
  }
  if (flush (w) == -1)
    goto out;
  if (EVP_DigestFinal_ex (w->csum, a->csum, &mdlen) != 1) {
    fail (p, a->image, "sha256 failed");
    goto out;
  }
  if (p->b
      && pbs_backup_fixed_close (p->b, w->wid,
                                 w->reuse ? w->appended : a->nchunks,
                                 w->reuse ? w->appended_bytes : a->size,
                                 a->csum)
             == -1) {
    fail_pbs (p, a->name);
    goto out;
  }
  ret = 0;
out:
  chunk_pipeline_free (pl);
  EVP_MD_CTX_free (w->csum);
  free (w);
  return ret;
}

/* ------------------------------------------------------ manifest */

static int
write_manifest (struct push *p)
{
  struct pbs_manifest *m;
  json_t *rec, *archives;
  char *text = NULL, *json = NULL;
  uint8_t *blob = NULL;
  size_t blen, i;
  int ret = -1;

  m = pbs_manifest_new (p->type, p->id, p->time);
  if (!m)
    return fail_pbs (p, "manifest");
  archives = json_object ();
  for (i = 0; i < p->na; i++) {
    struct archive *a = &p->a[i];
    char *s;
    if (pbs_manifest_add_file (m, a->name, p->key ? "encrypt" : "none",
                               a->size, a->csum)
        == -1) {
      fail_pbs (p, "manifest");
      goto out;
    }
    s = identity_archive_json (&a->ident, a->csum, a->size, p->key_fp);
    if (!s) {
      fail (p, "manifest", "out of memory");
      goto out;
    }
    json_object_set_new (archives, a->name, json_loads (s, 0, NULL));
    free (s);
  }
  rec = json_pack ("{s:i, s:s, s:O}", "version", 1, "tool", "qcow2pbs 0.1",
                   "archives", archives);
  text = rec ? json_dumps (rec, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
  json_decref (rec);
  if (!text) {
    fail (p, "manifest", "out of memory");
    goto out;
  }
  if (pve_push_store (&p->pve, p->b, m, p->key) == -1) {
    fail_pbs (p, "qemu-server.conf.blob");
    goto out;
  }
  if (pbs_manifest_set_unprotected (m, "qcow2pbs", text) == -1
      || pbs_manifest_to_json (m, p->key, &json) == -1) {
    fail_pbs (p, "manifest");
    goto out;
  }
  /* The manifest is never encrypted (PBS reads it without a key). */
  if (pbs_blob_encode (json, strlen (json), NULL, true, &blob, &blen) == -1
      || pbs_backup_blob (p->b, "index.json.blob", blob, blen) == -1) {
    fail_pbs (p, "index.json.blob");
    goto out;
  }
  ret = 0;
out:
  json_decref (archives);
  pbs_manifest_free (m);
  free (text);
  free (json);
  free (blob);
  return ret;
}

/* ------------------------------------------------------ one attempt */

static void
reset_attempt (struct push *p)
{
  size_t i;

  for (i = 0; i < p->na; i++) {
    struct archive *a = &p->a[i];
    pbs_fidx_free (a->base);
    a->base = NULL;
    a->incremental = false;
    a->reason[0] = 0;
    a->zero_chunks = a->reused_chunks = a->read_chunks = a->read_bytes = 0;
    a->stored_chunks = a->stored_bytes = 0;
  }
  pbs_backup_free (p->b);
  p->b = NULL;
  pbs_manifest_free (p->base_m);
  p->base_m = NULL;
  digest_set_free (p->known);
  p->known = NULL;
  pbs_repo_close (p->repo);
  p->repo = NULL;
  p->base_why[0] = 0;
  p->err_ctx[0] = p->err_msg[0] = 0;
  p->err_printed = p->transient = false;
  p->zero_stored = false;
}

/* For --dry-run: the base the server would pick (§4.2): the group's last
 * finished snapshot, none if that one failed verification. */
static int
dry_run_base (struct push *p, int64_t *t)
{
  struct pbs_snapshot *s = NULL;
  size_t n = 0, i;

  *t = -1;
  if (pbs_repo_snapshots (p->repo, p->ns, p->type, p->id, &s, &n) == -1) {
    if (pbs_errno () == ENOENT)
      return 0;
    return fail_pbs (p, p->repo_spec);
  }
  for (i = n; i-- > 0;)
    if (s[i].finished) {
      if (!s[i].verify_state || strcmp (s[i].verify_state, "failed") != 0)
        *t = s[i].time;
      break;
    }
  pbs_snapshots_free (s, n);
  return 0;
}

static int
attempt (struct push *p)
{
  struct pbs_reader *rd = NULL;
  uint8_t *blob = NULL;
  size_t blen, i;
  uint64_t total = 0;
  char why[512];
  int ret = -1;

  if (cli_interrupted ()) /* during the backoff before a retry */
    return fail (p, "push", "interrupted");
  p->repo = cli_open_repo (p->repo_spec, p->fingerprint);
  if (!p->repo)
    return failed_printed (p);
  p->known = digest_set_new ();
  if (!p->known)
    return fail (p, "push", "out of memory");

  if (p->dry_run) {
    if (dry_run_base (p, &p->base_time) == -1)
      goto out;
    if (p->base_time >= 0) {
      rd = pbs_reader_start (p->repo, p->ns, p->type, p->id, p->base_time);
      if (!rd) {
        fail_pbs (p, p->repo_spec);
        goto out;
      }
    }
  }
  else {
    p->b = pbs_backup_start (p->repo, p->ns, p->type, p->id, p->time);
    if (!p->b) {
      char *snap = push_snapshot_name (p->type, p->id, p->time);
      bool busy = pbs_errno () == EBUSY;
      fail_pbs (p, snap ? snap : p->id);
      /* After a broken connection the server may still hold our own
       * session's group lock until it notices: worth another try. */
      if (busy && p->retrying)
        p->transient = true;
      free (snap);
      goto out;
    }
    if (pbs_backup_previous_time (p->b, &p->base_time) == -1) {
      fail_pbs (p, "previous_backup_time");
      goto out;
    }
  }

  if (p->base_time < 0)
    snprintf (p->base_why, sizeof p->base_why, "no previous snapshot");
  else {
    int r = p->b ? pbs_backup_download_previous (p->b, "index.json.blob",
                                                 &blob, &blen)
                 : pbs_reader_download (rd, "index.json.blob", &blob, &blen);
    if (r == -1) {
      if (pbs_error_is_transient ()) {
        fail_pbs (p, "index.json.blob");
        goto out;
      }
      snprintf (p->base_why, sizeof p->base_why,
                "previous manifest unreadable: %s", pbs_errmsg ());
    }
    else
      load_base_manifest (p, blob, blen);
  }

  for (i = 0; i < p->na; i++) {
    if (load_base_index (p, rd, &p->a[i]) == -1
        || make_plan (p, &p->a[i]) == -1)
      goto out;
    total += p->a[i].size;
  }
  progress_init (&p->prog, "push", total);
  for (i = 0; i < p->na; i++)
    if (write_archive (p, &p->a[i]) == -1)
      goto out;
  progress_end (&p->prog);

  /* The record must describe what was read: refuse if a layer changed
   * while we read it. */
  for (i = 0; i < p->na; i++)
    if (identity_recheck (&p->a[i].ident, why, sizeof why) == -1) {
      fail (p, p->a[i].image, "%s", why);
      goto out;
    }
  if (p->b) {
    if (cli_interrupted ()) { /* the last moment to leave no snapshot */
      fail (p, "push", "interrupted");
      goto out;
    }
    if (write_manifest (p) == -1)
      goto out;
    if (pbs_backup_finish (p->b) == -1) {
      fail_pbs (p, "finish");
      goto out;
    }
  }
  ret = 0;
out:
  free (blob);
  pbs_reader_free (rd);
  return ret;
}

/* ------------------------------------------------------ output */

/* The layers an archive was made from, oldest first, as given or as
 * found through backing names. */
static json_t *
layers_json (const struct archive *a)
{
  json_t *arr = json_array ();
  size_t i;

  for (i = 0; arr && i < a->ident.n; i++)
    json_array_append_new (arr, json_string_nocheck (a->ident.layer[i].path));
  return arr;
}

static void
print_result (struct push *p)
{
  char ts[21];
  size_t i, j;

  pbs_time_to_rfc3339 (p->time, ts);
  if (p->json) {
    json_t *o, *arr = json_array ();
    for (i = 0; i < p->na; i++) {
      struct archive *a = &p->a[i];
      json_array_append_new (
          arr,
          json_pack ("{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:b, "
                     "s:o, s:o}",
                     "name", a->name, "size", (json_int_t) a->size, "chunks",
                     (json_int_t) a->nchunks, "zero_chunks",
                     (json_int_t) a->zero_chunks, "reused_chunks",
                     (json_int_t) a->reused_chunks, "read_chunks",
                     (json_int_t) a->read_chunks, "read_bytes",
                     (json_int_t) a->read_bytes, "stored_chunks",
                     (json_int_t) a->stored_chunks, "stored_bytes",
                     (json_int_t) a->stored_bytes, "incremental",
                     a->incremental,
                     "reason", a->incremental ? json_null ()
                                              : json_string (a->reason),
                     "layers", layers_json (a)));
    }
    o = json_pack ("{s:s++++, s:s, s:b, s:I, s:o}", "snapshot", p->type,
                   "/", p->id, "/", ts, "ns", p->ns, "dry_run", p->dry_run,
                   "backup_time", (json_int_t) p->time, "archives", arr);
    if (o) {
      char *s = json_dumps (o, JSON_INDENT (2) | JSON_PRESERVE_ORDER);
      if (s)
        printf ("%s\n", s);
      free (s);
    }
    json_decref (o);
    return;
  }
  if (cli_quiet ())
    return;
  printf ("%s%s/%s/%s%s%s\n", p->dry_run ? "would create " : "snapshot ",
          p->type, p->id, ts, *p->ns ? " in ns " : "", p->ns);
  for (i = 0; i < p->na; i++) {
    struct archive *a = &p->a[i];
    printf ("  %s: %llu bytes, %llu chunks: %llu read, %llu reused, %llu "
            "zero; %s %llu chunks (%llu bytes); %s%s\n",
            a->name, (unsigned long long) a->size,
            (unsigned long long) a->nchunks,
            (unsigned long long) a->read_chunks,
            (unsigned long long) a->reused_chunks,
            (unsigned long long) a->zero_chunks,
            p->dry_run ? "would store" : "stored",
            (unsigned long long) a->stored_chunks,
            (unsigned long long) a->stored_bytes,
            a->incremental ? "incremental" : "full read: ",
            a->incremental ? "" : a->reason);
    printf ("    layers (oldest first):");
    for (j = 0; j < a->ident.n; j++)
      printf (" %s", a->ident.layer[j].path);
    printf ("\n");
  }
}

/* ------------------------------------------------------ main */

static int
open_archives (struct push *p, struct qcow_open_opts *oo)
{
  size_t i, j;

  for (i = 0; i < p->na; i++) {
    struct archive *a = &p->a[i];
    for (j = 0; j < i; j++)
      if (strcmp (p->a[j].name, a->name) == 0)
        return cli_error (a->name, "archive name given twice"), -1;
    if (a->oo) { /* --disk: its own chain, the command's open flags */
      struct qcow_open_opts mine = *a->oo;
      mine.flags |= oo->flags;
      a->chain = cli_open_chain (NULL, &mine);
    }
    else
      a->chain = cli_open_chain (oo->chain_len ? NULL : a->image, oo);
    if (!a->chain)
      return -1;
    cli_warn_lone_incremental (a->chain);
    a->size = qcow_virtual_size (a->chain);
    if (a->size == 0)
      return cli_error (a->image, "disk has size 0"), -1;
    if (identity_collect_members (a->chain, &a->ident, a->image, a->member)
            == -1
        || plan_data_chunks (a->chain, a->image, &a->data, &a->nchunks)
               == -1)
      return -1;
    a->plan = calloc (a->nchunks, 1);
    if (!a->plan)
      return cli_error (a->image, "out of memory"), -1;
  }
  return 0;
}

int
cmd_push (int argc, char **argv)
{
  struct push p = { 0 };
  struct qcow_open_opts oo = { 0 };
  const char *keyfile = NULL, *chain, *from_archive = NULL;
  struct tar_index tix = { 0 };
  struct push_disk *disks = NULL;
  size_t ndisks = 0;
  unsigned attempt_no;
  char *end;
  size_t i;
  int opt, ret = 1;

  /* Every chunk needs a few 4 MiB buffers (encoded blob, the store's
   * copy); served by mmap each time they cost page faults on every use.
   * Keeping them in the heap makes the pipeline noticeably faster. */
  mallopt (M_MMAP_THRESHOLD, 64 << 20);
  mallopt (M_TRIM_THRESHOLD, 128 << 20);
  p.type = "vm";
  p.ns = "";
  p.retries = 3;
  p.time = (int64_t) time (NULL);
  optind = 1;
  opterr = 0;
  while ((opt = getopt_long (argc, argv, ":hq" CLI_IMAGE_SHORTOPTS, longopts,
                             NULL))
         != -1) {
    switch (opt) {
    case 'r': p.repo_spec = optarg; break;
    case CLI_OPT_FINGERPRINT: p.fingerprint = optarg; break;
    case 'i': p.id = optarg; break;
    case 't': p.type = optarg; break;
    case 'n': p.ns = optarg; break;
    case 'T':
      if (pbs_parse_time (optarg, &p.time) == -1)
        return cli_usage_error ("push", "invalid --backup-time '%s'", optarg);
      p.time_given = true;
      break;
    case 'k': keyfile = optarg; break;
    case CLI_OPT_CHAIN:
    case CLI_OPT_ALLOW_ABSOLUTE_DATA_FILE:
    case CLI_OPT_PROBE_BACKING_FORMAT:
    case CLI_OPT_FORCE_SHARE:
    case 'U':
    case CLI_OPT_ALLOW_BACKING_DIR:
      if (cli_image_option (opt, optarg, &oo) == -1) {
        cli_free_chain (&oo);
        return 2;
      }
      break;
    case 'F': p.full = true; break;
    case 'd': p.dry_run = true; break;
    case 'R':
      errno = 0;
      p.retries = (unsigned) strtoul (optarg, &end, 10);
      if (errno || *end || !*optarg || p.retries > 100)
        return cli_usage_error ("push", "invalid --retries '%s'", optarg);
      break;
    case 'o':
      if (cli_parse_output_format (optarg, &p.json) == -1)
        return cli_usage_error ("push", "invalid --output-format '%s'",
                                optarg);
      break;
    case 'q': cli_set_progress_mode (CLI_PROGRESS_QUIET); break;
    case CLI_OPT_PROGRESS: cli_set_progress_mode (CLI_PROGRESS_LINES); break;
    case 'h': fputs (usage_text, stdout); cli_free_chain (&oo); return 0;
    case 'D':
      if ((ret = push_disk_option (&disks, &ndisks, optarg)) != 0) {
        push_disks_free (disks, ndisks);
        cli_free_chain (&oo);
        return ret;
      }
      ret = 1;
      break;
    case 'A': from_archive = optarg; break;
    case PVE_OPT_CONFIG: case PVE_OPT_STORAGE: case PVE_OPT_MEMORY:
    case PVE_OPT_CORES: case PVE_OPT_FW_CONFIG: case PVE_OPT_NOTES:
    case PVE_OPT_NOTES_FILE: case PVE_OPT_PROTECTED: case PVE_OPT_DISK_FORMAT:
      if (pve_push_option (&p.pve, opt, optarg) != 0) {
        cli_free_chain (&oo);
        return 2;
      }
      break;
    default:
      cli_free_chain (&oo);
      return cli_getopt_error ("push", opt, argv, longopts);
    }
  }
  chain = oo.chain_len ? oo.chain[oo.chain_len - 1] : NULL;
  if (!p.id)
    return cli_usage_error ("push", "--backup-id is required");
  if (!pbs_valid_backup_id (p.id))
    return cli_usage_error ("push", "invalid backup id '%s'", p.id);
  if (!pbs_valid_backup_type (p.type))
    return cli_usage_error ("push", "invalid backup type '%s'", p.type);
  if (!pbs_valid_ns (p.ns))
    return cli_usage_error ("push", "invalid namespace '%s'", p.ns);
  if (ndisks && (chain || optind < argc)) {
    push_disks_free (disks, ndisks);
    cli_free_chain (&oo);
    return cli_usage_error ("push", "--disk replaces IMAGE arguments and "
                            "--chain: give the disks one way");
  }
  if (optind >= argc && !chain && !ndisks)
    return cli_usage_error ("push", "no image given");
  if (from_archive && !ndisks) {
    cli_free_chain (&oo);
    return cli_usage_error ("push", "--from-archive names the archive "
                            "whose members --disk gives: give --disk");
  }
  if (from_archive
      && (ret = push_disks_from_archive (disks, ndisks, from_archive, &tix))
             != 0) {
    push_disks_free (disks, ndisks);
    tar_index_free (&tix);
    cli_free_chain (&oo);
    return ret;
  }
  ret = 1;
  if (chain && argc - optind > 1)
    return cli_usage_error ("push", "--chain works with one image only");

  p.na = ndisks ? ndisks : argc - optind > 0 ? (size_t) (argc - optind) : 1;
  p.a = calloc (p.na, sizeof *p.a);
  if (!p.a) {
    push_disks_free (disks, ndisks);
    return cli_error ("push", "out of memory");
  }
  for (i = 0; i < ndisks; i++) {
    p.a[i].name = disks[i].name; /* taken */
    disks[i].name = NULL;
    p.a[i].oo = &disks[i].oo;
    p.a[i].image = disks[i].spans
                       ? disks[i].spans[disks[i].oo.chain_len - 1].name
                       : disks[i].oo.chain[disks[i].oo.chain_len - 1];
    p.a[i].member = disks[i].member;
  }
  for (i = 0; i < p.na && !ndisks; i++) {
    const char *arg = optind + (int) i < argc ? argv[optind + i] : "";
    if (!*arg) { /* --chain alone: the image is the chain's top */
      char *nm = push_archive_name ("drive-scsi0");
      p.a[i].name = nm;
      p.a[i].image = chain;
      if (!nm)
        goto out;
    }
    else if (push_parse_image_arg (arg, i, &p.a[i].name, &p.a[i].image)
             == -1)
      goto out;
    else if ((opt = cli_check_chain_top ("push", p.a[i].image, &oo)) != 0) {
      ret = opt;
      goto out;
    }
  }
  if (keyfile) {
    p.key = push_load_key (keyfile);
    if (!p.key)
      goto out;
    p.key_fp = push_key_fingerprint (p.key);
  }
  pbs_zero_chunk_digest (p.key, p.zero_digest);
  if (open_archives (&p, &oo) == -1)
    goto out;
  {
    struct pve_disk *pd = calloc (p.na, sizeof *pd);
    int st;
    if (!pd) {
      cli_error ("push", "out of memory");
      goto out;
    }
    for (i = 0; i < p.na; i++) {
      pd[i].archive = p.a[i].name;
      pd[i].size = p.a[i].size;
      pd[i].format = pve_push_disk_format (&p.pve, p.a[i].name);
    }
    st = pve_push_prepare (&p.pve, p.type, p.id, pd, p.na);
    free (pd);
    if (st != 0) {
      ret = st;
      goto out;
    }
  }

  if (cli_catch_interrupts () == -1) {
    cli_error ("push", "cannot catch signals: %s", strerror (errno));
    goto out;
  }
  for (attempt_no = 0;; attempt_no++) {
    if (attempt (&p) == 0)
      break;
    if (cli_interrupted ()) {
      bool printed = p.err_printed; /* e.g. by the repository's open */
      reset_attempt (&p); /* ends the session: no snapshot stays */
      if (!printed)
        cli_error ("push", "interrupted; no snapshot was made");
      ret = 128 + cli_interrupted ();
      goto out;
    }
    if (!p.transient || attempt_no >= p.retries || !p.repo
        || pbs_repo_is_local (p.repo)) {
      if (p.err_msg[0])
        cli_error (p.err_ctx, "%s", p.err_msg);
      goto out;
    }
    if (isatty (STDERR_FILENO) && !cli_quiet ())
      fprintf (stderr, "push: %s: %s; retrying\n", p.err_ctx, p.err_msg);
    reset_attempt (&p);
    p.retrying = true;
    sleep (1u << (attempt_no < 5 ? attempt_no : 5)); /* a signal ends it */
    /* A new session, a new backup-time (unless one was given), as a new
     * run of proxmox-backup-client would have: a server that crashed
     * keeps the old session's unfinished directory, and the same time
     * again would only get "backup directory already exists". */
    if (!p.time_given) {
      int64_t now = (int64_t) time (NULL);
      p.time = now > p.time ? now : p.time + 1;
    }
  }
  /* Protection needs the snapshot lock that the session holds. */
  pbs_backup_free (p.b);
  p.b = NULL;
  if (!p.dry_run
      && pve_push_protect (&p.pve, p.repo, p.ns, p.type, p.id, p.time) != 0)
    goto out;
  print_result (&p);
  ret = 0;
out:
  pve_push_free (&p.pve);
  reset_attempt (&p);
  for (i = 0; i < p.na; i++) {
    free (p.a[i].name);
    qcow_close (p.a[i].chain);
    identity_free (&p.a[i].ident);
    free (p.a[i].data);
    free (p.a[i].plan);
  }
  free (p.a);
  push_disks_free (disks, ndisks);
  tar_index_free (&tix);
  cli_free_chain (&oo);
  pbs_key_free (p.key);
  free (p.key_fp);
  return ret;
}
