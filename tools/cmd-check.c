/* cmd-check.c -- qcow2pbs check: prove that snapshots can be restored, by
 * reading every chunk they reference (each distinct chunk once, see
 * check-chunks.c), and checking every manifest (signature with the key)
 * and index (checksum and size against the manifest) on the way.  Nothing
 * is written.  Each bad chunk is reported with what is wrong and which
 * byte ranges of which archives of which snapshots it breaks.
 *
 * Snapshots are checked in order; a chunk is proved through the reader
 * session of the first snapshot that references it (a server allows a
 * chunk only after an index naming it was downloaded in the session), and
 * its verdict holds for every later snapshot, so each snapshot's verdict
 * is final once its own new chunks are proved. */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "check.h"
#include "cli.h"
#include "push.h"

enum { OPT_JOBS = CLI_OPT_FIRST_FREE, OPT_REPAIR };

static const struct option longopts[] = {
  { "repository", required_argument, NULL, 'r' },
  CLI_REPO_OPTIONS,
  { "ns", required_argument, NULL, 'n' },
  { "keyfile", required_argument, NULL, 'k' },
  { "jobs", required_argument, NULL, OPT_JOBS },
  { "repair", no_argument, NULL, OPT_REPAIR },
  CLI_OUTPUT_FORMAT_OPTION,
  { "help", no_argument, NULL, 'h' },
  { NULL, 0, NULL, 0 },
};

static void
usage (void)
{
  printf ("Usage: qcow2pbs check [--repository REPO] [--ns NS] "
          "[--keyfile FILE] [--jobs N]\n"
          "         [--output-format text|json] [SNAPSHOT...]\n"
          "       qcow2pbs check [OPTIONS] SNAPSHOT [NAME=]IMAGE ...\n\n"
          "Prove that SNAPSHOTs (default: every finished snapshot of the\n"
          "namespace) restore: each manifest's signature (with --keyfile),\n"
          "each index's checksum and size against the manifest, and every\n"
          "chunk they reference, each distinct chunk once: present, CRC,\n"
          "decryption, SHA-256 equal to its digest, length.  Nothing is\n"
          "written.  With IMAGEs, the snapshot's archives (default names\n"
          "drive-scsi0, drive-scsi1, ...) are also compared with the chains.\n"
          "Prints 'ok' or 'failed' per snapshot and every bad chunk with the\n"
          "byte ranges it breaks.  Exit 0 all ok, 1 damage found, 2 error.\n\n"
          CLI_REPO_ARGS_HELP
          "  --keyfile FILE            the key of encrypted snapshots (password\n"
          "                            from PBS_ENCRYPTION_PASSWORD or a prompt)\n"
          "  --jobs N                  N reader sessions (threads) at once\n"
          "                            (default: the number of CPUs)\n"
          "  --output-format text|json  output format (default text)\n"
          "  --repair                  local datastore: do what PBS's verify\n"
          "                            job does: move each bad chunk aside\n"
          "                            (<digest>.0.bad) and record verify_state\n"
          "                            ok/failed in each checked snapshot, so\n"
          "                            the next push stores those chunks again\n"
          CLI_REPO_OPTIONS_HELP
          "  -h, --help                this help\n");
}

/* Where a bad chunk is used: bytes [START, END) of ARCHIVE of snapshot
 * SNAP. */
struct bad_use {
  size_t snap;
  char *archive;
  uint64_t start, end;
};

struct bad_chunk {
  size_t chunk; /* index in the chunk table */
  struct bad_use *use;
  size_t nuse;
};

struct snap_check {
  char *name; /* TYPE/ID/TIME */
  char *type, *id;
  int64_t time;
  bool failed;
  char **problem; /* what is wrong besides bad chunks */
  size_t nproblem;
  char **compare; /* IMAGE comparison lines (JSON: "NAME: identical") */
  size_t ncompare;
};

struct check {
  struct pbs_repo *repo;
  const struct pbs_key *key;
  const char *ns;
  unsigned jobs;
  struct chunk_table table;
  struct bad_chunk *bad;
  size_t nbad;
  struct snap_check *snap;
  size_t nsnap;
  uint64_t bytes_checked, done_bytes, reported;
  struct progress prog;
};

/* --repair: what PBS's verify job does on a datastore (verify.rs): each
 * bad chunk is renamed to <digest>.N.bad (rename_corrupted_chunk), and
 * each checked snapshot gets verify_state ok or failed.  A failed
 * snapshot is no base for the next push, and a moved chunk is no longer
 * "known", so that push reads and stores its data again.  One line per
 * action on stderr.  0, or -1 after printing an error. */
static int
repair_store (struct check *ck)
{
  char hex[65], *moved;
  size_t i;
  int r;

  for (i = 0; i < ck->nbad; i++) {
    const struct check_chunk *c = &ck->table.chunk[ck->bad[i].chunk];
    pbs_digest_hex (c->digest, hex);
    r = pbs_repo_rename_bad_chunk (ck->repo, c->digest, &moved);
    if (r == -1)
      return cli_pbs_error (hex), -1;
    if (r == 1)
      fprintf (stderr, "check: repair: chunk %s moved aside to %s\n", hex,
               moved);
    free (moved);
  }
  for (i = 0; i < ck->nsnap; i++) {
    const struct snap_check *s = &ck->snap[i];
    if (pbs_repo_set_verify_state (ck->repo, ck->ns, s->type, s->id,
                                   s->time, !s->failed)
        == -1)
      return cli_pbs_error (s->name), -1;
    fprintf (stderr, "check: repair: %s verify_state %s\n", s->name,
             s->failed ? "failed" : "ok");
  }
  return 0;
}

static int
add_string (char ***v, size_t *n, const char *fmt, ...)
    __attribute__ ((format (printf, 3, 4)));
static int
add_string (char ***v, size_t *n, const char *fmt, ...)
{
  va_list ap;
  char *s, **nv;
  int r;

  va_start (ap, fmt);
  r = vasprintf (&s, fmt, ap);
  va_end (ap);
  if (r == -1)
    return -1;
  nv = realloc (*v, (*n + 1) * sizeof *nv);
  if (!nv) {
    free (s);
    return -1;
  }
  nv[(*n)++] = s;
  *v = nv;
  return 0;
}

/* Record that bytes [START, END) of ARCHIVE of snapshot SI need bad chunk
 * entry CI; consecutive chunks of one range become one range. */
static int
note_bad_use (struct check *ck, size_t ci, size_t si, const char *archive,
              uint64_t start, uint64_t end)
{
  struct bad_chunk *b = NULL;
  struct bad_use *u;
  size_t i;

  for (i = 0; i < ck->nbad; i++)
    if (ck->bad[i].chunk == ci)
      b = &ck->bad[i];
  if (!b) {
    struct bad_chunk *nb = realloc (ck->bad, (ck->nbad + 1) * sizeof *nb);
    if (!nb)
      return -1;
    ck->bad = nb;
    b = &ck->bad[ck->nbad++];
    memset (b, 0, sizeof *b);
    b->chunk = ci;
  }
  if (b->nuse) {
    u = &b->use[b->nuse - 1];
    if (u->snap == si && strcmp (u->archive, archive) == 0 && u->end == start) {
      u->end = end;
      return 0;
    }
  }
  u = realloc (b->use, (b->nuse + 1) * sizeof *u);
  if (!u)
    return -1;
  b->use = u;
  u = &b->use[b->nuse];
  u->archive = strdup (archive);
  if (!u->archive)
    return -1;
  u->snap = si;
  u->start = start;
  u->end = end;
  b->nuse++;
  return 0;
}

static void
tick (void *opaque)
{
  struct check *ck = opaque;
  uint64_t d = __atomic_load_n (&ck->done_bytes, __ATOMIC_RELAXED);

  progress_add (&ck->prog, d - ck->reported);
  ck->reported = d;
}

/* The manifest of snapshot S through RD, or NULL with the reason added to
 * S's problems.  *FATAL: the repository could not be asked. */
static struct pbs_manifest *
read_manifest (struct check *ck, struct pbs_reader *rd, struct snap_check *s,
               bool *fatal)
{
  uint8_t *blob = NULL, *json = NULL;
  size_t blen, jlen;
  struct pbs_manifest *m = NULL;

  if (pbs_reader_download (rd, "index.json.blob", &blob, &blen) == -1) {
    *fatal = pbs_error_is_transient () || pbs_errno () == ECANCELED;
    add_string (&s->problem, &s->nproblem, "index.json.blob: %s",
                pbs_errmsg ());
    return NULL;
  }
  if (pbs_blob_decode (blob, blen, NULL, 16u * 1024 * 1024, &json, &jlen)
      == -1)
    add_string (&s->problem, &s->nproblem, "index.json.blob: %s",
                pbs_errmsg ());
  else if (!(m = pbs_manifest_parse ((const char *) json, jlen, ck->key, 0)))
    add_string (&s->problem, &s->nproblem, "index.json.blob: %s%s",
                pbs_errmsg (),
                ck->key ? "" : " (give its key with --keyfile)");
  free (blob);
  free (json);
  return m;
}

/* Download and check index NAME; NULL with a problem noted if it is bad
 * or does not match the manifest entry F. */
static struct pbs_fidx *
read_index (struct pbs_reader *rd, struct snap_check *s,
            const struct pbs_manifest_file *f, bool *fatal)
{
  uint8_t *data = NULL, csum[32];
  size_t len;
  struct pbs_fidx *idx;

  if (pbs_reader_download (rd, f->filename, &data, &len) == -1) {
    *fatal = pbs_error_is_transient () || pbs_errno () == ECANCELED;
    add_string (&s->problem, &s->nproblem, "%s: %s", f->filename,
                pbs_errmsg ());
    return NULL;
  }
  idx = pbs_fidx_parse (data, len);
  free (data);
  if (!idx) {
    add_string (&s->problem, &s->nproblem, "%s: %s", f->filename,
                pbs_errmsg ());
    return NULL;
  }
  pbs_fidx_csum (idx, csum);
  if (memcmp (csum, f->csum, 32) != 0 || idx->size != f->size
      || idx->chunk_size != PBS_CHUNK_SIZE) {
    add_string (&s->problem, &s->nproblem,
                "%s: index does not match the manifest (%s)", f->filename,
                memcmp (csum, f->csum, 32) != 0 ? "checksum" : "size");
    pbs_fidx_free (idx);
    return NULL;
  }
  return idx;
}

/* A blob file of the snapshot: its bytes are what the manifest's csum and
 * size describe, then its CRC and decoding. */
static void
check_blob (struct check *ck, struct pbs_reader *rd, struct snap_check *s,
            const struct pbs_manifest_file *f, bool *fatal)
{
  uint8_t *data = NULL, *raw = NULL, csum[32];
  size_t len, rlen;

  if (pbs_reader_download (rd, f->filename, &data, &len) == -1) {
    *fatal = pbs_error_is_transient () || pbs_errno () == ECANCELED;
    add_string (&s->problem, &s->nproblem, "%s: %s", f->filename,
                pbs_errmsg ());
    return;
  }
  pbs_chunk_digest (NULL, data, len, csum); /* plain SHA-256 */
  if (len != f->size || memcmp (csum, f->csum, 32) != 0)
    add_string (&s->problem, &s->nproblem,
                "%s: does not match the manifest (checksum or size)",
                f->filename);
  else if (pbs_blob_decode (data, len,
                            strcmp (f->crypt_mode, "encrypt") == 0 ? ck->key
                                                                   : NULL,
                            PBS_BLOB_MAX_ENCODED, &raw, &rlen)
           == -1)
    add_string (&s->problem, &s->nproblem, "%s: %s", f->filename,
                pbs_errmsg ());
  free (data);
  free (raw);
}

static void
free_indexes (struct pbs_fidx **idx, size_t n)
{
  size_t i;
  for (i = 0; i < n; i++)
    pbs_fidx_free (idx[i]);
  free (idx);
}

/* Check snapshot SI.  Returns 0 (its verdict recorded) or -1 after
 * printing why the repository could not be asked (exit 2). */
static int
check_snapshot (struct check *ck, size_t si)
{
  struct snap_check *s = &ck->snap[si];
  struct pbs_reader **rd = NULL;
  struct pbs_manifest *m = NULL;
  struct pbs_fidx **idx = NULL;
  const char **names = NULL;
  bool *enc = NULL, fatal = false;
  size_t nf, i, j, from = ck->table.n, nidx = 0;
  unsigned nrd = 0, r;
  uint64_t todo = 0;
  char err[512];
  int ret = -1;

  rd = calloc (ck->jobs, sizeof *rd);
  if (!rd)
    goto oom;
  rd[0] = pbs_reader_start (ck->repo, ck->ns, s->type, s->id, s->time);
  if (!rd[0]) {
    cli_pbs_error (s->name);
    goto out;
  }
  nrd = 1;
  m = read_manifest (ck, rd[0], s, &fatal);
  if (!m)
    goto verdict;
  nf = pbs_manifest_file_count (m);
  idx = calloc (nf ? nf : 1, sizeof *idx);
  names = calloc (nf ? nf : 1, sizeof *names);
  enc = calloc (nf ? nf : 1, sizeof *enc);
  if (!idx || !names || !enc)
    goto oom;
  for (i = 0; i < nf && !fatal; i++) {
    struct pbs_manifest_file f;
    size_t n;
    if (pbs_manifest_file (m, i, &f) == -1)
      continue;
    n = strlen (f.filename);
    if (n > 5 && strcmp (f.filename + n - 5, ".fidx") == 0) {
      struct pbs_fidx *x = read_index (rd[0], s, &f, &fatal);
      if (!x)
        continue;
      names[nidx] = f.filename;
      enc[nidx] = strcmp (f.crypt_mode, "encrypt") == 0;
      idx[nidx++] = x;
      if (enc[nidx - 1] && !ck->key)
        add_string (&s->problem, &s->nproblem,
                    "%s: encrypted: give its key with --keyfile",
                    f.filename);
    }
    else if (n > 5 && strcmp (f.filename + n - 5, ".blob") == 0)
      check_blob (ck, rd[0], s, &f, &fatal);
    else
      add_string (&s->problem, &s->nproblem,
                  "%s: cannot check this kind of file (only .fidx and "
                  ".blob)", f.filename);
  }
  if (fatal)
    goto transport;
  /* The new distinct chunks of this snapshot. */
  for (i = 0; i < nidx; i++) {
    if (enc[i] && !ck->key)
      continue;
    for (j = 0; j < idx[i]->count; j++) {
      uint64_t off = j * (uint64_t) PBS_CHUNK_SIZE;
      uint32_t len = off + PBS_CHUNK_SIZE <= idx[i]->size
                         ? PBS_CHUNK_SIZE
                         : (uint32_t) (idx[i]->size - off);
      size_t before = ck->table.n;
      if (chunk_table_get (&ck->table, idx[i]->digest[j], len, enc[i]) == -1)
        goto oom;
      if (ck->table.n != before)
        todo += len;
    }
  }
  /* More sessions for parallel downloads; each one is allowed the
   * chunks of the indexes it downloaded. */
  while (nrd < ck->jobs && ck->table.n - from > nrd) {
    struct pbs_reader *x
        = pbs_reader_start (ck->repo, ck->ns, s->type, s->id, s->time);
    if (!x)
      break; /* fewer sessions, not an error */
    for (i = 0; i < nidx; i++) {
      uint8_t *data;
      size_t len;
      if (pbs_reader_download (x, names[i], &data, &len) == -1)
        break;
      free (data);
    }
    if (i < nidx) {
      pbs_reader_free (x);
      break;
    }
    rd[nrd++] = x;
  }
  progress_init (&ck->prog, s->name, todo);
  ck->done_bytes = ck->reported = 0;
  if (check_chunks (&ck->table, from, ck->table.n, rd, nrd, ck->key,
                    &ck->done_bytes, tick, ck, err, sizeof err)
      == -1) {
    cli_error (s->name, "%s", err);
    goto out;
  }
  tick (ck);
  progress_end (&ck->prog);
  ck->bytes_checked += todo;
  /* Every chunk of this snapshot has its verdict now. */
  for (i = 0; i < nidx; i++) {
    if (enc[i] && !ck->key)
      continue;
    for (j = 0; j < idx[i]->count; j++) {
      uint64_t off = j * (uint64_t) PBS_CHUNK_SIZE;
      uint32_t len = off + PBS_CHUNK_SIZE <= idx[i]->size
                         ? PBS_CHUNK_SIZE
                         : (uint32_t) (idx[i]->size - off);
      int64_t ci = chunk_table_get (&ck->table, idx[i]->digest[j], len,
                                    enc[i]);
      if (ci == -1)
        goto oom;
      if (ck->table.chunk[ci].state != CHUNK_OK) {
        s->failed = true;
        if (note_bad_use (ck, (size_t) ci, si, names[i], off, off + len)
            == -1)
          goto oom;
      }
    }
  }
verdict:
  if (fatal)
    goto transport;
  if (s->nproblem)
    s->failed = true;
  ret = 0;
  goto out;
transport:
  cli_error (s->name, "%s", s->problem[s->nproblem - 1]);
  goto out;
oom:
  cli_error (s->name, "out of memory");
out:
  for (r = 0; r < nrd; r++)
    pbs_reader_free (rd[r]);
  free (rd);
  if (idx)
    free_indexes (idx, nidx);
  free (names);
  free (enc);
  pbs_manifest_free (m);
  return ret;
}

/* Compare SNAPSHOT's archives with the IMAGE arguments (cmd-verify.c);
 * 0 identical, 1 different, -1 error (printed).  In JSON mode verify's
 * lines go to stderr so that stdout stays one JSON document. */
static int
compare_images (struct check *ck, struct snap_check *s, char **images,
                int nimages, bool json)
{
  struct pbs_reader *rd;
  struct pbs_manifest *m;
  struct qcow_open_opts oo = { 0 };
  struct cli_err err;
  int i, r, differ = 0, saved = -1;

  rd = pbs_reader_start (ck->repo, ck->ns, s->type, s->id, s->time);
  if (!rd)
    return cli_pbs_error (s->name), -1;
  m = push_fetch_manifest (rd, ck->key, true, s->name, &err);
  if (!m) {
    cli_err_print (&err);
    pbs_reader_free (rd);
    return -1;
  }
  if (json) {
    fflush (stdout);
    saved = dup (STDOUT_FILENO);
    if (saved == -1 || dup2 (STDERR_FILENO, STDOUT_FILENO) == -1) {
      cli_error (s->name, "dup: %s", strerror (errno));
      if (saved != -1)
        close (saved);
      saved = -1;
      differ = -1;
      i = nimages;
    }
  }
  for (i = 0; i < nimages && differ != -1; i++) {
    char *name = NULL;
    const char *image;
    if (push_parse_image_arg (images[i], (size_t) i, &name, &image, &err)
        == -1) {
      cli_err_print (&err);
      differ = -1;
      break;
    }
    r = verify_archive (rd, m, ck->key, s->name, name, image, &oo, NULL);
    if (r == -1)
      differ = -1;
    else {
      differ |= r;
      add_string (&s->compare, &s->ncompare, "%s: %s", name,
                  r ? "differs from the chain" : "identical to the chain");
      if (r)
        s->failed = true;
    }
    free (name);
  }
  if (saved != -1) {
    fflush (stdout);
    dup2 (saved, STDOUT_FILENO);
    close (saved);
  }
  pbs_manifest_free (m);
  pbs_reader_free (rd);
  return differ;
}

static void
print_text (const struct check *ck)
{
  size_t i, j, k, nfailed = 0;
  char hex[65];

  for (i = 0; i < ck->nsnap; i++) {
    const struct snap_check *s = &ck->snap[i];
    printf ("%s: %s\n", s->name, s->failed ? "failed" : "ok");
    nfailed += s->failed;
    for (j = 0; j < s->nproblem; j++)
      printf ("  %s\n", s->problem[j]);
    for (j = 0; j < ck->nbad; j++) {
      const struct check_chunk *c = &ck->table.chunk[ck->bad[j].chunk];
      pbs_digest_hex (c->digest, hex);
      for (k = 0; k < ck->bad[j].nuse; k++) {
        const struct bad_use *u = &ck->bad[j].use[k];
        if (u->snap == i)
          printf ("  %s: bytes %llu-%llu: chunk %s: %s\n", u->archive,
                  (unsigned long long) u->start,
                  (unsigned long long) (u->end - 1), hex,
                  c->why ? c->why : "not checked");
      }
    }
    for (j = 0; j < s->ncompare; j++)
      printf ("  %s\n", s->compare[j]);
  }
  for (j = 0; j < ck->nbad; j++) {
    const struct check_chunk *c = &ck->table.chunk[ck->bad[j].chunk];
    pbs_digest_hex (c->digest, hex);
    printf ("bad chunk %s: %s (used %zu times)\n", hex,
            c->why ? c->why : "not checked", ck->bad[j].nuse);
  }
  printf ("%zu snapshots, %zu distinct chunks (%llu MiB) checked: "
          "%zu bad chunks, %zu snapshots failed\n",
          ck->nsnap, ck->table.n,
          (unsigned long long) (ck->bytes_checked >> 20), ck->nbad, nfailed);
}

static void
print_json (const struct check *ck)
{
  json_t *root = json_object (), *snaps = json_array (), *bad = json_array ();
  size_t i, j, k;
  char hex[65], *text;

  for (i = 0; i < ck->nsnap; i++) {
    const struct snap_check *s = &ck->snap[i];
    json_t *o = json_object (), *errs = json_array ();
    json_object_set_new (o, "snapshot", json_string (s->name));
    json_object_set_new (o, "status", json_string (s->failed ? "failed"
                                                             : "ok"));
    for (j = 0; j < s->nproblem; j++)
      json_array_append_new (errs, json_string (s->problem[j]));
    for (j = 0; j < ck->nbad; j++) {
      const struct check_chunk *c = &ck->table.chunk[ck->bad[j].chunk];
      pbs_digest_hex (c->digest, hex);
      for (k = 0; k < ck->bad[j].nuse; k++) {
        const struct bad_use *u = &ck->bad[j].use[k];
        if (u->snap == i)
          json_array_append_new (
              errs, json_pack ("{s:s,s:s,s:I,s:I,s:s}", "archive",
                               u->archive, "digest", hex, "start",
                               (json_int_t) u->start, "end",
                               (json_int_t) u->end, "error",
                               c->why ? c->why : "not checked"));
      }
    }
    json_object_set_new (o, "errors", errs);
    if (s->ncompare) {
      json_t *cmp = json_array ();
      for (j = 0; j < s->ncompare; j++)
        json_array_append_new (cmp, json_string (s->compare[j]));
      json_object_set_new (o, "compare", cmp);
    }
    json_array_append_new (snaps, o);
  }
  for (j = 0; j < ck->nbad; j++) {
    const struct check_chunk *c = &ck->table.chunk[ck->bad[j].chunk];
    json_t *o, *uses = json_array ();
    pbs_digest_hex (c->digest, hex);
    for (k = 0; k < ck->bad[j].nuse; k++) {
      const struct bad_use *u = &ck->bad[j].use[k];
      json_array_append_new (
          uses, json_pack ("{s:s,s:s,s:I,s:I}", "snapshot",
                           ck->snap[u->snap].name, "archive", u->archive,
                           "start", (json_int_t) u->start, "end",
                           (json_int_t) u->end));
    }
    o = json_pack ("{s:s,s:s,s:I,s:o}", "digest", hex, "error",
                   c->why ? c->why : "not checked", "size",
                   (json_int_t) c->len, "used-by", uses);
    json_array_append_new (bad, o);
  }
  json_object_set_new (root, "snapshots", snaps);
  json_object_set_new (root, "bad-chunks", bad);
  json_object_set_new (root, "chunks-checked",
                       json_integer ((json_int_t) ck->table.n));
  json_object_set_new (root, "bytes-checked",
                       json_integer ((json_int_t) ck->bytes_checked));
  text = json_dumps (root, JSON_INDENT (2) | JSON_PRESERVE_ORDER);
  if (text)
    printf ("%s\n", text);
  free (text);
  json_decref (root);
}

/* A local datastore must exist: check never creates one (pbs_repo_open
 * would). */
static int
refuse_missing_store (const char *spec)
{
  struct stat st;
  char *p;
  int ok;

  if (!spec)
    spec = getenv ("PBS_REPOSITORY");
  if (!spec || !strchr (spec, '/'))
    return 0;
  if (asprintf (&p, "%s/.chunks", spec) == -1)
    return -1;
  ok = stat (p, &st) == 0 && S_ISDIR (st.st_mode);
  free (p);
  if (!ok)
    cli_error (spec, "not a datastore (no .chunks directory); check never "
               "creates one");
  return ok ? 0 : -1;
}

/* Is ARG a snapshot name (TYPE/ID/TIME) rather than an image path? */
static bool
looks_like_snapshot (const char *arg)
{
  const char *s1 = strchr (arg, '/'), *s2 = s1 ? strchr (s1 + 1, '/') : NULL;
  char type[16];
  int64_t t;
  struct stat st;

  if (!s1 || !s2 || strchr (s2 + 1, '/') || (size_t) (s1 - arg) >= sizeof type
      || stat (arg, &st) == 0)
    return false;
  memcpy (type, arg, (size_t) (s1 - arg));
  type[s1 - arg] = '\0';
  return pbs_valid_backup_type (type) && pbs_parse_time (s2 + 1, &t) == 0;
}

static void
free_check (struct check *ck)
{
  size_t i, j;

  for (i = 0; i < ck->nbad; i++) {
    for (j = 0; j < ck->bad[i].nuse; j++)
      free (ck->bad[i].use[j].archive);
    free (ck->bad[i].use);
  }
  free (ck->bad);
  for (i = 0; i < ck->nsnap; i++) {
    struct snap_check *s = &ck->snap[i];
    for (j = 0; j < s->nproblem; j++)
      free (s->problem[j]);
    for (j = 0; j < s->ncompare; j++)
      free (s->compare[j]);
    free (s->problem);
    free (s->compare);
    free (s->name);
    free (s->type);
    free (s->id);
  }
  free (ck->snap);
  chunk_table_free (&ck->table);
}

int
cmd_check (int argc, char **argv)
{
  const char *fingerprint = NULL, *repo_spec = NULL, *keyfile = NULL;
  struct check ck = { 0 };
  struct pbs_key *key = NULL;
  struct pbs_snapshot *list = NULL;
  size_t nlist = 0, i;
  bool json = false, failed = false, repair = false;
  struct cli_err err;
  int opt, nargs, nsnaps, ret = 2;
  long cpus = sysconf (_SC_NPROCESSORS_ONLN);

  ck.ns = "";
  ck.jobs = cpus > 0 ? (unsigned) (cpus < 16 ? cpus : 16) : 2;
  optind = 1;
  opterr = 0;
  while ((opt = getopt_long (argc, argv, ":h", longopts, NULL)) != -1) {
    switch (opt) {
    case 'r': repo_spec = optarg; break;
    case CLI_OPT_FINGERPRINT: fingerprint = optarg; break;
    case 'n': ck.ns = optarg; break;
    case 'k': keyfile = optarg; break;
    case OPT_JOBS: {
      char *end;
      long j;
      errno = 0;
      j = strtol (optarg, &end, 10);
      if (errno || end == optarg || *end || j < 1 || j > 64)
        return cli_usage_error ("check", "--jobs must be 1..64, not '%s'",
                                optarg);
      ck.jobs = (unsigned) j;
      break;
    }
    case CLI_OPT_OUTPUT_FORMAT:
      if (cli_parse_output_format (optarg, &json) == -1)
        return cli_usage_error ("check", "invalid --output-format '%s'",
                                optarg);
      break;
    case OPT_REPAIR: repair = true; break;
    case 'h': usage (); return 0;
    default: return cli_getopt_error ("check", opt, argv, longopts);
    }
  }
  if (!pbs_valid_ns (ck.ns))
    return cli_usage_error ("check", "invalid namespace '%s'", ck.ns);
  nargs = argc - optind;
  /* SNAPSHOT... or SNAPSHOT [NAME=]IMAGE...: images follow one snapshot. */
  for (nsnaps = 0; nsnaps < nargs; nsnaps++)
    if (!looks_like_snapshot (argv[optind + nsnaps]))
      break;
  if (nargs && nsnaps == 0)
    return cli_usage_error ("check", "'%s' is not a snapshot name "
                            "(TYPE/ID/TIME)", argv[optind]);
  if (nsnaps < nargs && nsnaps != 1)
    return cli_usage_error ("check", "IMAGE arguments follow exactly one "
                            "SNAPSHOT ('%s' is not a snapshot name)",
                            argv[optind + nsnaps]);
  if (refuse_missing_store (repo_spec) == -1)
    return 2;
  if (keyfile && !(key = push_load_key (keyfile, &err))) {
    cli_err_print (&err);
    return 2;
  }
  ck.key = key;
  ck.repo = cli_open_repo (repo_spec, fingerprint, &err);
  if (!ck.repo) {
    cli_err_print (&err);
    goto out;
  }
  if (repair && !pbs_repo_is_local (ck.repo)) {
    ret = cli_usage_error ("check", "--repair needs direct access to the "
                           "datastore (a local path); on a server, run "
                           "PBS's verify job");
    goto out;
  }
  if (nsnaps == 0) {
    if (pbs_repo_snapshots (ck.repo, ck.ns, NULL, NULL, &list, &nlist)
        == -1) {
      cli_pbs_error (repo_spec ? repo_spec : "repository");
      goto out;
    }
    ck.snap = calloc (nlist ? nlist : 1, sizeof *ck.snap);
    if (!ck.snap)
      goto oom;
    for (i = 0; i < nlist; i++) {
      struct snap_check *s = &ck.snap[ck.nsnap];
      if (!list[i].finished)
        continue; /* being written, or abandoned: nothing to restore */
      s->type = strdup (list[i].type);
      s->id = strdup (list[i].id);
      s->time = list[i].time;
      s->name = push_snapshot_name (s->type, s->id, s->time);
      ck.nsnap++;
      if (!s->type || !s->id || !s->name)
        goto oom;
    }
    if (ck.nsnap == 0) {
      cli_error (repo_spec ? repo_spec : "repository",
                 "no finished snapshots in namespace '%s'", ck.ns);
      goto out;
    }
  }
  else {
    ck.snap = calloc ((size_t) nsnaps, sizeof *ck.snap);
    if (!ck.snap)
      goto oom;
    for (i = 0; i < (size_t) nsnaps; i++) {
      struct snap_check *s = &ck.snap[ck.nsnap];
      if (push_parse_snapshot (argv[optind + (int) i], &s->type, &s->id,
                               &s->time, &err)
          == -1) {
        cli_err_print (&err);
        goto out;
      }
      ck.nsnap++;
      s->name = push_snapshot_name (s->type, s->id, s->time);
      if (!s->name)
        goto oom;
    }
  }
  for (i = 0; i < ck.nsnap; i++)
    if (check_snapshot (&ck, i) == -1)
      goto out;
  if (nargs > nsnaps && !ck.snap[0].failed
      && compare_images (&ck, &ck.snap[0], argv + optind + nsnaps,
                         nargs - nsnaps, json)
             == -1)
    goto out;
  if (nargs > nsnaps && ck.snap[0].failed && !ck.snap[0].ncompare)
    add_string (&ck.snap[0].problem, &ck.snap[0].nproblem,
                "not compared with the images: the snapshot is damaged");
  for (i = 0; i < ck.nsnap; i++)
    failed |= ck.snap[i].failed;
  if (repair && repair_store (&ck) == -1) {
    ret = 2;
    goto out;
  }
  if (json)
    print_json (&ck);
  else
    print_text (&ck);
  ret = failed ? 1 : 0;
  goto out;
oom:
  cli_error ("check", "out of memory");
out:
  fflush (stdout);
  free_check (&ck);
  pbs_snapshots_free (list, nlist);
  pbs_repo_close (ck.repo);
  pbs_key_free (key);
  return ret;
}
