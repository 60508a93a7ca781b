/* test-ds-repair.c -- the datastore side of issue 10 (docs/pbs-protocol.md
 * §4.3, §6.3): moving a bad chunk aside as PBS's verify job names it, the
 * verify_state record, the read-back of an existing chunk on insert, the
 * close check for missing chunks, the local repository's known set, and
 * ENOTSUP for a remote repository.  The shell tests (test-repair*.sh) check
 * the same through the tool with independent oracles. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pbs-datastore.h"
#include "tap.h"

#define CS PBS_CHUNK_SIZE

static char top[256], dspath[300];
static struct pbs_datastore *ds;

struct chunk {
  uint8_t *data, *blob, d[32];
  size_t len, blen;
  char hex[65];
};

static void
mkchunk (struct chunk *c, size_t len, unsigned seed, bool compress)
{
  size_t i;

  c->data = malloc (len);
  c->len = len;
  for (i = 0; i < len; i++)
    c->data[i] = (uint8_t)((i * 13 + seed) ^ (i >> 10));
  pbs_chunk_digest (NULL, c->data, len, c->d);
  pbs_digest_hex (c->d, c->hex);
  if (pbs_blob_encode (c->data, len, NULL, compress, &c->blob, &c->blen) == -1)
    abort ();
}

static void
chunk_file (const char *hex, const char *suffix, char *out, size_t n)
{
  snprintf (out, n, "%s/.chunks/%.4s/%s%s", dspath, hex, hex, suffix);
}

/* The stored file's bytes equal BLOB? */
static bool
file_is (const char *path, const uint8_t *blob, size_t len)
{
  struct stat st;
  uint8_t *buf;
  bool same;
  int fd = open (path, O_RDONLY);

  if (fd == -1 || fstat (fd, &st) == -1 || (size_t)st.st_size != len) {
    if (fd >= 0)
      close (fd);
    return false;
  }
  buf = malloc (len);
  same = buf && read (fd, buf, len) == (ssize_t)len &&
         memcmp (buf, blob, len) == 0;
  free (buf);
  close (fd);
  return same;
}

static void
flip_byte (const char *path, off_t off)
{
  uint8_t b;
  int fd = open (path, O_RDWR);

  if (fd == -1 || pread (fd, &b, 1, off) != 1)
    abort ();
  b ^= 0xff;
  if (pwrite (fd, &b, 1, off) != 1)
    abort ();
  close (fd);
}

static void
write_file (const char *path, const char *text)
{
  FILE *f = fopen (path, "w");

  if (!f)
    abort ();
  fputs (text, f);
  fclose (f);
}

static struct chunk c1, c2, c3;

/* A finished backup of vm/ID at T: chunk C1 then C2 (a short tail). */
static int
backup (const char *id, int64_t t)
{
  struct pbs_ds_backup *b = pbs_ds_backup_start (ds, "root@pam", "", "vm",
                                                 id, t);
  struct pbs_fidx idx = {.size = CS + c2.len, .chunk_size = CS, .count = 2};
  uint8_t d[2][32], csum[32], *mb = NULL;
  uint64_t off[2] = {0, CS};
  struct pbs_manifest *m;
  char *json = NULL;
  size_t mlen;
  int wid, r = -1;

  if (!b)
    return -1;
  memcpy (d[0], c1.d, 32);
  memcpy (d[1], c2.d, 32);
  idx.digest = d;
  pbs_fidx_csum (&idx, csum);
  m = pbs_manifest_new ("vm", id, t);
  if (!m ||
      pbs_manifest_add_file (m, "drive-scsi0.img.fidx", "none", CS + c2.len,
                             csum) == -1 ||
      pbs_manifest_to_json (m, NULL, &json) == -1 ||
      pbs_blob_encode (json, strlen (json), NULL, true, &mb, &mlen) == -1)
    goto out;
  wid = pbs_ds_backup_fixed_index (b, "drive-scsi0.img.fidx", CS + c2.len,
                                   NULL);
  if (wid < 1 ||
      pbs_ds_backup_fixed_chunk (b, wid, c1.d, c1.len, c1.blen, c1.blob,
                                 c1.blen) == -1 ||
      pbs_ds_backup_fixed_chunk (b, wid, c2.d, c2.len, c2.blen, c2.blob,
                                 c2.blen) == -1 ||
      pbs_ds_backup_fixed_append (b, wid, 2, (const uint8_t (*)[32])d, off) ==
          -1 ||
      pbs_ds_backup_fixed_close (b, wid, 2, CS + c2.len, csum) == -1 ||
      pbs_ds_backup_blob (b, "index.json.blob", mlen, mb, mlen) == -1 ||
      pbs_ds_backup_finish (b) == -1)
    goto out;
  r = 0;
out:
  if (r == -1)
    printf ("#   backup %s/%lld: %s\n", id, (long long)t, pbs_errmsg ());
  pbs_ds_backup_end (b);
  pbs_manifest_free (m);
  free (json);
  free (mb);
  return r;
}

/* An incremental backup of vm/ID at T over the base by reuse-csum, nothing
 * uploaded; with REQUIRE the close checks the chunks.  The close's
 * result; the session is ended unfinished (no snapshot stays). */
static int
reuse_backup (const char *id, int64_t t, bool require)
{
  struct pbs_ds_backup *b = pbs_ds_backup_start (ds, "root@pam", "", "vm",
                                                 id, t);
  uint8_t *data = NULL, csum[32];
  char chex[65];
  size_t len;
  struct pbs_fidx *idx;
  int wid, r = -1;

  if (!b)
    return -1;
  if (require)
    pbs_ds_backup_require_chunks (b);
  if (pbs_ds_backup_previous (b, "drive-scsi0.img.fidx", &data, &len) == 0 &&
      (idx = pbs_fidx_parse (data, len))) {
    pbs_fidx_csum (idx, csum);
    pbs_fidx_free (idx);
    pbs_digest_hex (csum, chex);
    wid = pbs_ds_backup_fixed_index (b, "drive-scsi0.img.fidx", CS + c2.len,
                                     csum);
    if (wid >= 1)
      r = pbs_ds_backup_fixed_close (b, wid, 0, 0, csum);
  }
  free (data);
  pbs_ds_backup_end (b);
  return r;
}

static void
test_rename (void)
{
  char path[512], bad[512], *np = NULL;
  bool dup;
  int i;

  ok (pbs_datastore_insert_chunk (ds, c3.d, c3.blob, c3.blen, &dup) == 0,
      "insert a chunk");
  ok (pbs_datastore_rename_bad_chunk (ds, c3.d, &np) == 1,
      "rename_bad_chunk: 1 when renamed");
  chunk_file (c3.hex, ".0.bad", bad, sizeof bad);
  chunk_file (c3.hex, "", path, sizeof path);
  ok (np && strcmp (np, bad) == 0, "first bad copy: <hex>.0.bad (%s)",
      np ? np : "NULL");
  ok (file_is (bad, c3.blob, c3.blen) && access (path, F_OK) == -1,
      "the chunk moved, not copied");
  free (np);
  np = (char *)"x";
  ok (pbs_datastore_rename_bad_chunk (ds, c3.d, &np) == 0 && np == NULL,
      "rename_bad_chunk of a missing chunk: 0 (PBS ignores NotFound)");
  pbs_datastore_insert_chunk (ds, c3.d, c3.blob, c3.blen, &dup);
  ok (!dup, "re-inserted after the move: written, not a duplicate");
  pbs_datastore_rename_bad_chunk (ds, c3.d, &np);
  chunk_file (c3.hex, ".1.bad", bad, sizeof bad);
  ok (np && strcmp (np, bad) == 0, "second bad copy: <hex>.1.bad");
  free (np);
  for (i = 2; i <= 9; i++) {
    char sfx[24];
    snprintf (sfx, sizeof sfx, ".%d.bad", i);
    chunk_file (c3.hex, sfx, bad, sizeof bad);
    write_file (bad, "old");
  }
  pbs_datastore_insert_chunk (ds, c3.d, c3.blob, c3.blen, &dup);
  ok (pbs_datastore_rename_bad_chunk (ds, c3.d, &np) == 1 && np &&
          strcmp (np, bad) == 0 && file_is (bad, c3.blob, c3.blen),
      ".0 to .9 taken: .9.bad is replaced, as PBS's counter < 9");
  free (np);
}

static void
test_insert (void)
{
  char path[512];
  struct stat st;
  struct chunk z, p;
  bool dup;

  chunk_file (c1.hex, "", path, sizeof path);
  ok (pbs_datastore_insert_chunk (ds, c1.d, c1.blob, c1.blen, &dup) == 0 &&
          !dup,
      "insert c1");
  ok (pbs_datastore_insert_chunk (ds, c1.d, c1.blob, c1.blen, &dup) == 0 &&
          dup,
      "intact chunk of the same size: duplicate");
  flip_byte (path, (off_t)c1.blen / 2);
  ok (pbs_datastore_insert_chunk (ds, c1.d, c1.blob, c1.blen, &dup) == 0 &&
          !dup && file_is (path, c1.blob, c1.blen),
      "a flipped byte in the stored chunk: replaced");
  flip_byte (path, 3); /* the magic */
  pbs_datastore_insert_chunk (ds, c1.d, c1.blob, c1.blen, &dup);
  ok (!dup && file_is (path, c1.blob, c1.blen), "a broken magic: replaced");
  if (truncate (path, (off_t)c1.blen - 5) == -1)
    abort ();
  pbs_datastore_insert_chunk (ds, c1.d, c1.blob, c1.blen, &dup);
  ok (!dup && file_is (path, c1.blob, c1.blen),
      "a truncated (smaller) stored chunk: replaced");

  /* PBS's rule for plain chunks stays: a smaller intact one is kept. */
  mkchunk (&z, 100000, 9, true);
  mkchunk (&p, 100000, 9, false);
  ok (z.blen < p.blen, "zstd blob smaller than the plain one");
  chunk_file (z.hex, "", path, sizeof path);
  pbs_datastore_insert_chunk (ds, z.d, z.blob, z.blen, &dup);
  pbs_datastore_insert_chunk (ds, p.d, p.blob, p.blen, &dup);
  ok (dup && file_is (path, z.blob, z.blen),
      "an intact smaller encoding is kept (PBS's rule)");
  flip_byte (path, (off_t)z.blen - 1);
  pbs_datastore_insert_chunk (ds, p.d, p.blob, p.blen, &dup);
  ok (!dup && file_is (path, p.blob, p.blen),
      "a damaged smaller encoding is replaced");
  ok (stat (path, &st) == 0 && (st.st_mode & 0777) == 0644, "mode 0644");
  free (z.data);
  free (z.blob);
  free (p.data);
  free (p.blob);
}

static void
test_verify_state (void)
{
  struct pbs_snapshot *s = NULL;
  struct pbs_ds_backup *b;
  size_t n = 0;
  int64_t prev;
  char path[512];

  ok (backup ("v", 1000) == 0, "a finished backup vm/v/1000");
  ok (pbs_ds_set_verify_state (ds, "root@pam", "", "vm", "v", 999, true) ==
              -1 &&
          pbs_errno () == ENOENT &&
          strstr (pbs_errmsg (), "does not exist"),
      "set_verify_state of a missing snapshot: %s", pbs_errmsg ());
  ok (pbs_ds_set_verify_state (ds, "root@pam", "", "vm", "v", 1000, false) ==
          0,
      "set_verify_state failed");
  ok (pbs_datastore_snapshots (ds, "", "vm", "v", &s, &n) == 0 && n == 1 &&
          s[0].verify_state && strcmp (s[0].verify_state, "failed") == 0,
      "listed as failed: the UPID parses (else it would read as none)");
  pbs_snapshots_free (s, n);
  b = pbs_ds_backup_start (ds, "root@pam", "", "vm", "v", 2000);
  ok (b && pbs_ds_backup_previous_time (b, &prev) == 0 && prev == -1,
      "a failed snapshot is no base");
  /* The session's new snapshot is locked: no verify_state meanwhile. */
  ok (pbs_ds_set_verify_state (ds, "root@pam", "", "vm", "v", 2000, true) ==
              -1 &&
          pbs_errno () == EBUSY,
      "busy while a backup writes the snapshot: %s", pbs_errmsg ());
  pbs_ds_backup_end (b);
  ok (pbs_ds_set_verify_state (ds, "root@pam", "", "vm", "v", 1000, true) ==
          0,
      "set_verify_state ok");
  b = pbs_ds_backup_start (ds, "root@pam", "", "vm", "v", 2000);
  ok (b && pbs_ds_backup_previous_time (b, &prev) == 0 && prev == 1000,
      "ok: the base again");
  pbs_ds_backup_end (b);
  snprintf (path, sizeof path, "%s/vm/v/1970-01-01T00:33:20Z", dspath);
  ok (access (path, F_OK) == -1, "no snapshot left by the ended sessions");
}

static void
test_missing (void)
{
  struct pbs_repo *r;
  struct pbs_backup *pb;
  uint8_t *data = NULL;
  size_t len;
  char *np = NULL;

  ok (backup ("m", 1000) == 0, "a finished backup vm/m/1000");
  ok (reuse_backup ("m", 1100, true) == 0,
      "reuse-csum close with every chunk present");
  ok (pbs_datastore_rename_bad_chunk (ds, c1.d, &np) == 1, "move c1 aside");
  free (np);
  ok (reuse_backup ("m", 1200, false) == 0,
      "without the check (PBS, the test server) the index closes");
  ok (reuse_backup ("m", 1300, true) == -1 &&
          strstr (pbs_errmsg (), "is missing from the datastore") &&
          strstr (pbs_errmsg (), c1.hex),
      "with it, close refuses: %s", pbs_errmsg ());

  /* The repository layer over the local backend. */
  r = pbs_repo_open (dspath, NULL);
  ok (r && pbs_repo_has_chunk (r, c1.d) == 0 &&
          pbs_repo_has_chunk (r, c2.d) == 1,
      "pbs_repo_has_chunk: 0 moved, 1 present");
  pb = r ? pbs_backup_start (r, "", "vm", "m", 1400) : NULL;
  ok (pb && pbs_backup_download_previous (pb, "drive-scsi0.img.fidx", &data,
                                          &len) == 0,
      "download the base index");
  ok (pb && !pbs_backup_known (pb, c1.d) && pbs_backup_known (pb, c2.d),
      "the missing chunk stays unknown, the present one is known");
  free (data);
  pbs_backup_free (pb);
  ok (r && pbs_repo_set_verify_state (r, "", "vm", "m", 1000, false) == 0 &&
          pbs_repo_rename_bad_chunk (r, c2.d, NULL) == 1 &&
          pbs_repo_has_chunk (r, c2.d) == 0,
      "pbs_repo_set_verify_state, pbs_repo_rename_bad_chunk");
  pbs_repo_close (r);
}

static void
test_remote (void)
{
  struct pbs_repo_opts o = {.secret = "x", .quiet = true};
  struct pbs_repo *r = pbs_repo_open ("root@pam!tok@127.0.0.1:1:store", &o);
  const char *want = "repair needs direct access to the datastore; run "
                     "PBS's verify job";

  ok (r != NULL, "a remote repository (a token: no round trip)");
  if (!r)
    return;
  ok (pbs_repo_rename_bad_chunk (r, c1.d, NULL) == -1 &&
          pbs_errno () == ENOTSUP && strcmp (pbs_errmsg (), want) == 0,
      "remote rename_bad_chunk: ENOTSUP, %s", pbs_errmsg ());
  ok (pbs_repo_set_verify_state (r, "", "vm", "m", 1000, true) == -1 &&
          pbs_errno () == ENOTSUP,
      "remote set_verify_state: ENOTSUP");
  ok (pbs_repo_has_chunk (r, c1.d) == -1 && pbs_errno () == ENOTSUP,
      "remote has_chunk: ENOTSUP");
  pbs_repo_close (r);
}

static void
remove_top (void)
{
  char cmd[512];

  snprintf (cmd, sizeof cmd, "rm -rf '%s'", top);
  if (system (cmd) != 0)
    fprintf (stderr, "test-ds-repair: could not remove %s\n", top);
}

int
main (void)
{
  const char *tmp = getenv ("TMPDIR");

  /* 65536 chunk directories: tmpfs if there is one. */
  if (!tmp && access ("/dev/shm", W_OK) == 0)
    tmp = "/dev/shm";
  snprintf (top, sizeof top, "%s/test-ds-repair.XXXXXX", tmp ? tmp : "/tmp");
  if (!mkdtemp (top)) {
    perror ("mkdtemp");
    return 1;
  }
  atexit (remove_top);
  snprintf (dspath, sizeof dspath, "%s/ds", top);
  setenv ("QCOW2PBS_DATASTORE_SYNC", "none", 1);
  ds = pbs_datastore_open (dspath, true);
  if (!ds) {
    printf ("# %s\n", pbs_errmsg ());
    return 1;
  }
  mkchunk (&c1, CS, 1, true);
  mkchunk (&c2, 1000, 2, true);
  mkchunk (&c3, 5000, 3, true);

  test_rename ();
  test_insert ();
  test_verify_state ();
  test_missing ();
  test_remote ();

  pbs_datastore_close (ds);
  free (c1.data);
  free (c1.blob);
  free (c2.data);
  free (c2.blob);
  free (c3.data);
  free (c3.blob);
  return tap_done ();
}
