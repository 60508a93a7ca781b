/* remote-smoke.c -- drive the remote backend's backup and reader sessions
 * directly (below repo.c), so the transport can be tested on its own.
 *
 *   remote-smoke [OPTS] backup SPEC TYPE ID TIME IMAGE.raw
 *   remote-smoke [OPTS] restore SPEC TYPE ID TIME OUT.raw
 *   remote-smoke [OPTS] snapshots SPEC
 * OPTS: --ns NS, --ca FILE, --reuse (reuse-csum against the base: append
 * only chunks that differ from the base's index), --die-after N (exit
 * without finish after N uploads), --pause-after N (print "paused" after
 * N uploads and wait for a line on stdin), --bad-digest N (upload chunk
 * number N, counting from 0, under a wrong digest).
 *
 * Secret from PBS_PASSWORD, pin from PBS_FINGERPRINT.  The archive is
 * drive-scsi0.img.fidx.  Prints "uploaded=N appended=N" after a backup. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "pbs-internal.h"
#include "remote-internal.h"

#define ARCHIVE "drive-scsi0.img.fidx"
#define CS PBS_CHUNK_SIZE

static const char *ns = "";
static const char *ca_file;
static bool reuse;
static long die_after = -1;
static long pause_after = -1;
static long bad_digest = -1;

static int
die (const char *what)
{
  fprintf (stderr, "remote-smoke: %s: %s (errno %d, http %d, transient %d)\n",
           what, pbs_errmsg (), pbs_errno (), pbs_http_status (),
           (int) pbs_error_is_transient ());
  return 1;
}

static void *
open_repo (const char *spec)
{
  struct pbs_repo_opts o = { 0 };
  o.secret = getenv ("PBS_PASSWORD");
  o.fingerprint = getenv ("PBS_FINGERPRINT");
  o.ca_file = ca_file;
  return pbs__remote_open (spec, &o);
}

static int
parse_time (const char *s, int64_t *t)
{
  char *end;
  errno = 0;
  *t = strtoll (s, &end, 10);
  return errno || *end || end == s ? -1 : 0;
}

/* Digests this session may reference (a test helper: linear search). */
struct known {
  uint8_t (*d)[PBS_DIGEST_LEN];
  size_t n, cap;
};

static bool
known_has (struct known *k, const uint8_t d[32])
{
  for (size_t i = 0; i < k->n; i++)
    if (memcmp (k->d[i], d, 32) == 0)
      return true;
  return false;
}

static int
known_add (struct known *k, const uint8_t d[32])
{
  if (k->n == k->cap) {
    size_t cap = k->cap ? 2 * k->cap : 64;
    void *p = realloc (k->d, cap * 32);
    if (!p)
      return -1;
    k->d = p;
    k->cap = cap;
  }
  memcpy (k->d[k->n++], d, 32);
  return 0;
}

static int
do_backup (const char *spec, const char *type, const char *id, int64_t time,
           const char *image)
{
  const struct pbs_backend_ops *ops = &pbs__remote_ops;
  void *repo;
  struct pbs_backend_backup *b = NULL;
  struct pbs_fidx *prev = NULL, *idx = NULL;
  struct known known = { 0 };
  struct pbs_manifest *m = NULL;
  uint8_t *buf = NULL, *blob = NULL, *data;
  size_t blen, dlen, uploaded = 0, appended = 0;
  int64_t prev_time;
  char *json = NULL;
  uint8_t csum[32];
  struct stat st;
  int fd, wid, rc = 1;

  fd = open (image, O_RDONLY);
  if (fd == -1 || fstat (fd, &st) == -1) {
    perror (image);
    return 1;
  }
  repo = open_repo (spec);
  if (!repo)
    return die ("open");
  b = ops->backup_start (repo, ns, type, id, time);
  if (!b) {
    rc = die ("backup start");
    goto out;
  }
  if (ops->previous_time (b, &prev_time) == -1) {
    rc = die ("previous_backup_time");
    goto out;
  }
  printf ("previous=%lld\n", (long long) prev_time);
  if (prev_time >= 0) {
    if (ops->download_previous (b, ARCHIVE, &data, &dlen) == -1) {
      if (pbs_errno () != ENOENT) {
        rc = die ("previous " ARCHIVE);
        goto out;
      }
    }
    else {
      prev = pbs_fidx_parse (data, dlen);
      free (data);
      if (!prev) {
        rc = die ("parse previous index");
        goto out;
      }
      for (size_t i = 0; i < prev->count; i++)
        if (known_add (&known, prev->digest[i]) == -1)
          goto out;
    }
  }
  if (reuse && (!prev || prev->size != (uint64_t) st.st_size))
    reuse = false;
  idx = pbs_fidx_new ((uint64_t) st.st_size, CS);
  if (!idx)
    goto out;
  if (reuse)
    pbs_fidx_csum (prev, csum);
  wid = ops->fixed_index (b, ARCHIVE, (uint64_t) st.st_size,
                          reuse ? csum : NULL);
  if (wid == -1) {
    rc = die ("fixed_index");
    goto out;
  }
  buf = malloc (CS);
  if (!buf)
    goto out;
  for (size_t i = 0; i < idx->count; i++) {
    uint64_t off = (uint64_t) i * CS;
    size_t len = (uint64_t) st.st_size - off < CS ? (size_t) (st.st_size - off)
                                                   : CS;
    if (pread (fd, buf, len, (off_t) off) != (ssize_t) len) {
      perror ("pread");
      goto out;
    }
    pbs_chunk_digest (NULL, buf, len, idx->digest[i]);
    if (reuse && memcmp (prev->digest[i], idx->digest[i], 32) == 0)
      continue;
    if (!known_has (&known, idx->digest[i])) {
      if (pbs_blob_encode (buf, len, NULL, true, &blob, &blen) == -1) {
        rc = die ("blob encode");
        goto out;
      }
      uint8_t sent[32];
      memcpy (sent, idx->digest[i], 32);
      if ((long) uploaded == bad_digest)
        sent[31] ^= 1; /* must be refused: docs/pbs-protocol.md §3.4 */
      /* Handed over: the backend frees it, on error too. */
      if (ops->fixed_chunk (b, wid, sent, (uint32_t) len, blob, blen, blob)
          == -1) {
        rc = die ("fixed_chunk");
        goto out;
      }
      known_add (&known, idx->digest[i]);
      uploaded++;
      if (pause_after >= 0 && (long) uploaded == pause_after) {
        char line[16];
        /* The test kills the server now, then lets us go on. */
        printf ("paused\n");
        fflush (stdout);
        if (!fgets (line, sizeof line, stdin))
          line[0] = 0;
      }
      if (die_after >= 0 && (long) uploaded >= die_after) {
        printf ("dying after %zu uploads\n", uploaded);
        fflush (stdout);
        _exit (3);
      }
    }
    if (ops->fixed_append (b, wid, 1,
                           (const uint8_t (*)[32]) idx->digest[i], &off)
        == -1) {
      rc = die ("fixed_append");
      goto out;
    }
    appended++;
  }
  pbs_fidx_csum (idx, csum);
  if (ops->fixed_close (b, wid, reuse ? appended : idx->count,
                        (uint64_t) st.st_size, csum)
      == -1) {
    rc = die ("fixed_close");
    goto out;
  }
  m = pbs_manifest_new (type, id, time);
  if (!m || pbs_manifest_add_file (m, ARCHIVE, "none", (uint64_t) st.st_size,
                                   csum)
                == -1
      || pbs_manifest_to_json (m, NULL, &json) == -1
      || pbs_blob_encode (json, strlen (json), NULL, true, &blob, &blen)
             == -1) {
    rc = die ("manifest");
    goto out;
  }
  if (ops->blob (b, "index.json.blob", blob, blen) == -1) {
    free (blob);
    rc = die ("blob index.json.blob");
    goto out;
  }
  free (blob);
  if (ops->finish (b) == -1) {
    rc = die ("finish");
    goto out;
  }
  printf ("uploaded=%zu appended=%zu\n", uploaded, appended);
  rc = 0;
out:
  if (b)
    ops->backup_free (b);
  ops->close (repo);
  pbs_manifest_free (m);
  free (json);
  free (buf);
  free (known.d);
  pbs_fidx_free (prev);
  pbs_fidx_free (idx);
  close (fd);
  return rc;
}

static int
do_restore (const char *spec, const char *type, const char *id, int64_t time,
            const char *out_path)
{
  const struct pbs_backend_ops *ops = &pbs__remote_ops;
  void *repo;
  struct pbs_backend_reader *rd = NULL;
  struct pbs_manifest *m = NULL;
  struct pbs_manifest_file mf;
  struct pbs_fidx *idx = NULL;
  uint8_t *data = NULL, *raw = NULL, d[32], csum[32];
  size_t dlen, rlen;
  int fd = -1, rc = 1;

  repo = open_repo (spec);
  if (!repo)
    return die ("open");
  rd = ops->reader_start (repo, ns, type, id, time);
  if (!rd) {
    rc = die ("reader start");
    goto out;
  }
  if (ops->reader_download (rd, "index.json.blob", &data, &dlen) == -1) {
    rc = die ("download index.json.blob");
    goto out;
  }
  if (pbs_blob_decode (data, dlen, NULL, 16u << 20, &raw, &rlen) == -1) {
    rc = die ("decode manifest");
    goto out;
  }
  free (data);
  data = NULL;
  m = pbs_manifest_parse ((char *) raw, rlen, NULL, 0);
  free (raw);
  raw = NULL;
  if (!m || pbs_manifest_find (m, ARCHIVE, &mf) == -1) {
    rc = die ("manifest");
    goto out;
  }
  if (ops->reader_download (rd, ARCHIVE, &data, &dlen) == -1) {
    rc = die ("download " ARCHIVE);
    goto out;
  }
  idx = pbs_fidx_parse (data, dlen);
  free (data);
  data = NULL;
  if (!idx) {
    rc = die ("parse index");
    goto out;
  }
  pbs_fidx_csum (idx, csum);
  if (memcmp (csum, mf.csum, 32) != 0 || idx->size != mf.size) {
    fprintf (stderr, "remote-smoke: index does not match the manifest\n");
    goto out;
  }
  fd = open (out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd == -1 || ftruncate (fd, (off_t) idx->size) == -1) {
    perror (out_path);
    goto out;
  }
  for (size_t i = 0; i < idx->count; i++) {
    uint64_t off = (uint64_t) i * CS;
    size_t want = idx->size - off < CS ? (size_t) (idx->size - off) : CS;
    if (ops->reader_chunk (rd, idx->digest[i], &data, &dlen) == -1) {
      rc = die ("chunk");
      goto out;
    }
    if (pbs_blob_decode (data, dlen, NULL, CS, &raw, &rlen) == -1) {
      rc = die ("decode chunk");
      goto out;
    }
    free (data);
    data = NULL;
    pbs_chunk_digest (NULL, raw, rlen, d);
    if (memcmp (d, idx->digest[i], 32) != 0 || rlen != want) {
      fprintf (stderr, "remote-smoke: chunk %zu: wrong digest or length\n",
               i);
      goto out;
    }
    if (pwrite (fd, raw, rlen, (off_t) off) != (ssize_t) rlen) {
      perror ("pwrite");
      goto out;
    }
    free (raw);
    raw = NULL;
  }
  rc = 0;
out:
  if (fd >= 0)
    close (fd);
  free (data);
  free (raw);
  pbs_fidx_free (idx);
  pbs_manifest_free (m);
  if (rd)
    ops->reader_free (rd);
  ops->close (repo);
  return rc;
}

static int
do_snapshots (const char *spec)
{
  void *repo = open_repo (spec);
  struct pbs_snapshot *s;
  size_t n;

  if (!repo)
    return die ("open");
  if (pbs__remote_ops.snapshots (repo, ns, NULL, NULL, &s, &n) == -1) {
    pbs__remote_ops.close (repo);
    return die ("snapshots");
  }
  for (size_t i = 0; i < n; i++) {
    char t[21];
    pbs_time_to_rfc3339 (s[i].time, t);
    printf ("%s/%s/%s %lld %s size=%llu files=%zu owner=%s\n", s[i].type,
            s[i].id, t, (long long) s[i].time,
            s[i].finished ? "finished" : "unfinished",
            (unsigned long long) s[i].size, s[i].nfiles,
            s[i].owner ? s[i].owner : "-");
  }
  pbs_snapshots_free (s, n);
  pbs__remote_ops.close (repo);
  return 0;
}

int
main (int argc, char **argv)
{
  int i = 1;
  int64_t t;

  while (i < argc && strncmp (argv[i], "--", 2) == 0) {
    if (strcmp (argv[i], "--ns") == 0 && i + 1 < argc)
      ns = argv[i + 1];
    else if (strcmp (argv[i], "--ca") == 0 && i + 1 < argc)
      ca_file = argv[i + 1];
    else if (strcmp (argv[i], "--bad-digest") == 0 && i + 1 < argc)
      bad_digest = strtol (argv[i + 1], NULL, 10);
    else if (strcmp (argv[i], "--pause-after") == 0 && i + 1 < argc)
      pause_after = strtol (argv[i + 1], NULL, 10);
    else if (strcmp (argv[i], "--die-after") == 0 && i + 1 < argc)
      die_after = strtol (argv[i + 1], NULL, 10);
    else if (strcmp (argv[i], "--reuse") == 0) {
      reuse = true;
      i++;
      continue;
    }
    else
      break;
    i += 2;
  }
  if (argc - i == 6 && strcmp (argv[i], "backup") == 0
      && parse_time (argv[i + 4], &t) == 0)
    return do_backup (argv[i + 1], argv[i + 2], argv[i + 3], t, argv[i + 5]);
  if (argc - i == 6 && strcmp (argv[i], "restore") == 0
      && parse_time (argv[i + 4], &t) == 0)
    return do_restore (argv[i + 1], argv[i + 2], argv[i + 3], t,
                       argv[i + 5]);
  if (argc - i == 2 && strcmp (argv[i], "snapshots") == 0)
    return do_snapshots (argv[i + 1]);
  fprintf (stderr, "usage: remote-smoke [--ns NS] [--ca FILE] [--reuse] "
                   "[--die-after N] [--pause-after N] [--bad-digest N] backup|restore SPEC TYPE ID TIME FILE\n"
                   "       remote-smoke snapshots SPEC\n");
  return 2;
}
