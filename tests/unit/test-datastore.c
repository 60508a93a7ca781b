/* test-datastore.c -- the server rules of pbs-datastore.h (§3, §4 of
 * docs/pbs-protocol.md): for each rule a call that breaks it, checked for the
 * rejection, PBS's exact text and the HTTP status; plus the happy path,
 * locking (threads, fork), abort, the failed-verify base rule, the reader
 * rules, listing, and the generic repository layer over the local
 * backend.  On-disk bytes are checked independently by
 * tests/push/test-datastore-layout.sh. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <zlib.h>

#include "pbs-datastore.h"
#include "tap.h"

#define CS PBS_CHUNK_SIZE
#define IMG_SIZE (CS + 1000u)

static char top[256], dspath[300];
static struct pbs_datastore *ds;

static bool
err_is (const char *text)
{
  if (strcmp (pbs_errmsg (), text) == 0)
    return true;
  printf ("#   got error: %s\n#   expected:  %s\n", pbs_errmsg (), text);
  return false;
}

static bool
err_has (const char *text)
{
  if (strstr (pbs_errmsg (), text))
    return true;
  printf ("#   got error: %s\n#   expected to contain: %s\n", pbs_errmsg (),
          text);
  return false;
}

/* The error's context is F (what the test server words as PBS does),
 * with OS_ERRNO and a path ending in PATH_END (NULL: not checked). */
static bool
ctx_is (enum pbs_ds_failure f, int os_errno, const char *path_end)
{
  const struct pbs_ds_error_context *c = pbs_ds_error_context ();
  size_t n = path_end ? strlen (path_end) : 0;

  if (c && c->failure == f && c->os_errno == os_errno &&
      (!path_end || (strlen (c->path) >= n &&
                     strcmp (c->path + strlen (c->path) - n, path_end) == 0)))
    return true;
  printf ("#   got context: %d errno %d path %s\n#   expected: %d errno %d "
          "path ...%s\n",
          c ? (int) c->failure : -1, c ? c->os_errno : -1, c ? c->path : "-",
          (int) f, os_errno, path_end ? path_end : "");
  return false;
}

/* The error's context is an owner check F of AUTH_ID against OWNER. */
static bool
ctx_owner (enum pbs_ds_failure f, const char *auth_id, const char *owner)
{
  const struct pbs_ds_error_context *c = pbs_ds_error_context ();

  if (c && c->failure == f && strcmp (c->auth_id, auth_id) == 0 &&
      strcmp (c->owner, owner) == 0)
    return true;
  printf ("#   got context: %d %s %s\n", c ? (int) c->failure : -1,
          c ? c->auth_id : "-", c ? c->owner : "-");
  return false;
}

struct chunk {
  uint8_t *data;
  size_t len;
  uint8_t d[32];
  char hex[65];
  uint8_t *blob;
  size_t blen;
};

static void
mkchunk (struct chunk *c, size_t len, unsigned seed)
{
  size_t i;
  c->data = malloc (len);
  c->len = len;
  for (i = 0; i < len; i++)
    c->data[i] = (uint8_t)((i * 31 + seed) ^ (i >> 9));
  pbs_chunk_digest (NULL, c->data, len, c->d);
  pbs_digest_hex (c->d, c->hex);
  if (pbs_blob_encode (c->data, len, NULL, true, &c->blob, &c->blen) == -1)
    abort ();
}

static void
freechunk (struct chunk *c)
{
  free (c->data);
  free (c->blob);
}

static struct chunk big, tail, tail2, huge;

static uint8_t *
manifest_blob (const char *id, int64_t t, const uint8_t csum[32], uint64_t size,
               size_t *len)
{
  struct pbs_manifest *m = pbs_manifest_new ("vm", id, t);
  char *json;
  uint8_t *blob;
  if (!m ||
      pbs_manifest_add_file (m, "drive-scsi0.img.fidx", "none", size, csum) ==
          -1 ||
      pbs_manifest_to_json (m, NULL, &json) == -1 ||
      pbs_blob_encode (json, strlen (json), NULL, true, &blob, len) == -1)
    abort ();
  pbs_manifest_free (m);
  free (json);
  return blob;
}

static void
csum_of (const uint8_t (*d)[32], size_t n, uint64_t size, uint8_t out[32])
{
  struct pbs_fidx idx = {
      .size = size, .chunk_size = CS, .count = n, .digest = (uint8_t (*)[32])d};
  pbs_fidx_csum (&idx, out);
}

static void
hex32 (const uint8_t d[32], char out[65])
{
  pbs_digest_hex (d, out);
}

/* pbs_ds_backup_fixed_append with the digests given by pointer. */
static int
append (struct pbs_ds_backup *b, int wid, size_t n, const uint8_t *const *d,
        const uint64_t *off)
{
  uint8_t v[8][32];
  size_t i;

  for (i = 0; i < n && i < 8; i++)
    memcpy (v[i], d[i], 32);
  return pbs_ds_backup_fixed_append (b, wid, n, (const uint8_t (*)[32])v, off);
}

/* pbs_ds_backup_fixed_close with the csum given as hex. */
static int
close_hex (struct pbs_ds_backup *b, int wid, uint64_t count, uint64_t size,
           const char *hex)
{
  uint8_t csum[32];

  if (pbs_digest_parse (hex, csum) == -1)
    abort ();
  return pbs_ds_backup_fixed_close (b, wid, count, size, csum);
}

/* A complete 2-chunk backup of vm/ID at T in NS.  0 or -1. */
static int
do_backup (const char *auth, const char *ns, const char *id, int64_t t)
{
  struct pbs_ds_backup *b = pbs_ds_backup_start (ds, auth, ns, "vm", id, t);
  const uint8_t *hx[2] = {big.d, tail.d};
  uint64_t off[2] = {0, CS};
  uint8_t d[2][32], csum[32], *mb;
  char ch[65];
  size_t ml;
  int wid, r = -1;

  if (!b)
    return -1;
  memcpy (d[0], big.d, 32);
  memcpy (d[1], tail.d, 32);
  csum_of ((const uint8_t (*)[32])d, 2, IMG_SIZE, csum);
  hex32 (csum, ch);
  mb = manifest_blob (id, t, csum, IMG_SIZE, &ml);
  wid = pbs_ds_backup_fixed_index (b, "drive-scsi0.img.fidx", IMG_SIZE, NULL);
  if (wid >= 1 &&
      pbs_ds_backup_fixed_chunk (b, wid, big.d, big.len, big.blen, big.blob,
                                 big.blen) == 0 &&
      pbs_ds_backup_fixed_chunk (b, wid, tail.d, tail.len, tail.blen, tail.blob,
                                 tail.blen) == 0 &&
      append (b, wid, 2, hx, off) == 0 &&
      close_hex (b, wid, 2, IMG_SIZE, ch) == 0 &&
      pbs_ds_backup_blob (b, "index.json.blob", ml, mb, ml) == 0 &&
      pbs_ds_backup_finish (b) == 0)
    r = 0;
  if (r == -1)
    printf ("#   do_backup: %s\n", pbs_errmsg ());
  pbs_ds_backup_end (b);
  free (mb);
  return r;
}

static char *
snapdir (const char *id, int64_t t)
{
  static char p[512];
  char name[21];
  pbs_time_to_rfc3339 (t, name);
  snprintf (p, sizeof p, "%s/vm/%s/%s", dspath, id, name);
  return p;
}

static bool
exists (const char *path)
{
  struct stat st;
  return stat (path, &st) == 0;
}

static bool
exists2 (const char *dir, const char *name)
{
  char p[700];
  snprintf (p, sizeof p, "%s/%s", dir, name);
  return exists (p);
}

/* Rewrite the manifest of vm/ID/T with unprotected.verify_state, as a PBS
 * verify job does. */
static void
set_verify_state (const char *id, int64_t t, const char *state,
                  const char *upid)
{
  char path[700], js[512], *json;
  uint8_t *blob, *raw;
  size_t len, rlen;
  struct pbs_manifest *m;
  FILE *f;

  snprintf (path, sizeof path, "%s/index.json.blob", snapdir (id, t));
  f = fopen (path, "rb");
  blob = malloc (1 << 20);
  len = fread (blob, 1, 1 << 20, f);
  fclose (f);
  if (pbs_blob_decode (blob, len, NULL, 1 << 20, &raw, &rlen) == -1)
    abort ();
  m = pbs_manifest_parse ((char *)raw, rlen, NULL, PBS_MANIFEST_NO_VERIFY);
  snprintf (js, sizeof js, "{\"state\": \"%s\", \"upid\": \"%s\"}", state,
            upid);
  if (!m || pbs_manifest_set_unprotected (m, "verify_state", js) == -1 ||
      pbs_manifest_to_json (m, NULL, &json) == -1)
    abort ();
  free (blob);
  pbs_blob_encode (json, strlen (json), NULL, true, &blob, &len);
  f = fopen (path, "wb");
  fwrite (blob, 1, len, f);
  fclose (f);
  free (blob);
  free (raw);
  free (json);
  pbs_manifest_free (m);
}

#define UPID                                                                   \
  "UPID:pbs:000004D2:0000162E:00000001:65536E10:verify:store1:root@pam:"

/* ------------------------------------------------------------- tests */

static void
test_open (void)
{
  char p[400];
  struct pbs_datastore *x;
  int fd;

  snprintf (p, sizeof p, "%s/afile", top);
  fd = open (p, O_WRONLY | O_CREAT, 0644);
  close (fd);
  x = pbs_datastore_open (p, true);
  /* The caller names the path (pbsproto.h "Errors"). */
  ok (!x && pbs_errno () == ENOTDIR && err_has ("not a directory") &&
          !err_has ("afile"),
      "open on a regular file: ENOTDIR, 'not a directory', path not repeated");
  snprintf (p, sizeof p, "%s/nothere", top);
  x = pbs_datastore_open (p, false);
  ok (!x && pbs_errno () == ENOENT && err_has ("no datastore here") &&
          !err_has ("nothere"),
      "open of a missing dir without create: 'no datastore here'");
  x = pbs_datastore_open (top, false);
  ok (!x, "a directory without .chunks is not a datastore");
  x = pbs_datastore_open (top, true);
  ok (!x && pbs_errno () == EEXIST && err_has ("not empty"),
      "create refuses a non-empty directory that is no datastore");
  snprintf (p, sizeof p, "%s/.chunks/0000", top);
  ok (!exists (p), "... and wrote nothing there");
  snprintf (p, sizeof p, "%s/half", top);
  mkdir (p, 0755);
  snprintf (p, sizeof p, "%s/half/.chunks", top);
  mkdir (p, 0755);
  snprintf (p, sizeof p, "%s/half", top);
  x = pbs_datastore_open (p, true);
  snprintf (p, sizeof p, "%s/half/.chunks/beef", top);
  ok (x && exists (p), "an interrupted creation (.chunks, no .lock) resumes");
  pbs_datastore_close (x);
  ds = pbs_datastore_open (dspath, true);
  ok (ds != NULL, "create datastore %s", dspath);
  if (!ds)
    exit (1);
  snprintf (p, sizeof p, "%s/.chunks/ffff", dspath);
  ok (exists (p), ".chunks/ffff exists");
  snprintf (p, sizeof p, "%s/.lock", dspath);
  ok (exists (p), ".lock exists");
  x = pbs_datastore_open (dspath, false);
  ok (x != NULL, "reopen without create");
  pbs_datastore_close (x);
}

static void
test_happy (void)
{
  char p[700];
  int64_t prev = 0;
  struct pbs_ds_backup *b;

  ok (do_backup ("root@pam", "", "100", 1000) == 0, "happy backup vm/100");
  ok (exists2 (snapdir ("100", 1000), "drive-scsi0.img.fidx"),
      ".fidx in place");
  ok (exists2 (snapdir ("100", 1000), "index.json.blob"), "manifest in place");
  ok (!exists2 (snapdir ("100", 1000), "drive-scsi0.img.tmp_fidx"),
      "no .tmp_fidx left");
  snprintf (p, sizeof p, "%s/vm/100/owner", dspath);
  {
    FILE *f = fopen (p, "r");
    char buf[64] = "";
    if (f) {
      if (!fgets (buf, sizeof buf, f))
        buf[0] = 0;
      fclose (f);
    }
    ok (strcmp (buf, "root@pam\n") == 0, "owner file is root@pam\\n");
  }
  ok (pbs_datastore_has_chunk (ds, big.d) &&
          pbs_datastore_has_chunk (ds, tail.d),
      "both chunks stored");

  b = pbs_ds_backup_start (ds, "root@pam", "", "vm", "100", 1001);
  ok (b && pbs_ds_backup_previous_time (b, &prev) == 0 && prev == 1000,
      "previous_time is the last snapshot");
  pbs_ds_backup_end (b);
  ok (!exists (snapdir ("100", 1001)),
      "ended unfinished session removed its dir");
  snprintf (p, sizeof p, "%s/vm/100/owner", dspath);
  ok (exists (p), "group and owner kept after abort (PBS 3.2.4)");
}

static void
test_start_rules (void)
{
  struct pbs_ds_backup *a, *b;
  int64_t prev;

  b = pbs_ds_backup_start (ds, "root@pam", "", "vm", "100", 1000);
  ok (!b && err_is ("backup timestamp is older than last backup.") &&
          pbs_errno () == EINVAL,
      "same time as base: refused with PBS's text, 400");
  b = pbs_ds_backup_start (ds, "root@pam", "", "vm", "100", 999);
  ok (!b && err_is ("backup timestamp is older than last backup."),
      "older than base: refused");
  mkdir (snapdir ("100", 5000), 0755);
  {
    /* Held, as by a live session or reader: never cleaned up. */
    int held = open (snapdir ("100", 5000), O_RDONLY | O_DIRECTORY);
    flock (held, LOCK_SH);
    b = pbs_ds_backup_start (ds, "root@pam", "", "vm", "100", 5000);
    ok (!b && err_is ("backup directory already exists.") &&
            pbs_errno () == EEXIST,
        "existing (unfinished, held) snapshot dir: 'backup directory "
        "already exists.'");
    ok (exists (snapdir ("100", 5000)), "... and that dir was not removed");
    close (held);
  }
  /* Nobody holds it (the push was killed): a server keeps it, as PBS
   * does; with client cleanup it is removed, with a note. */
  b = pbs_ds_backup_start (ds, "root@pam", "", "vm", "100", 5001);
  ok (b && exists (snapdir ("100", 5000)) && !pbs_ds_backup_notes (b),
      "server rules: an unfinished snapshot nobody holds is kept");
  pbs_ds_backup_end (b);
  pbs_datastore_set_client_cleanup (ds, true);
  b = pbs_ds_backup_start (ds, "root@pam", "", "vm", "100", 5001);
  ok (b && !exists (snapdir ("100", 5000)) && pbs_ds_backup_notes (b) &&
          strstr (pbs_ds_backup_notes (b),
                  "removed unfinished snapshot vm/100/"),
      "client cleanup: an unfinished snapshot nobody holds is removed, "
      "with a note");
  pbs_ds_backup_end (b);
  pbs_datastore_set_client_cleanup (ds, false);

  b = pbs_ds_backup_start (ds, "other@pbs", "", "vm", "100", 2000);
  ok (!b &&
          err_is ("backup group vm/100 belongs to root@pam, not to "
                  "other@pbs: back up as its owner or into another group") &&
          pbs_errno () == EACCES &&
          ctx_owner (PBS_DS_FAIL_OWNER, "other@pbs", "root@pam"),
      "foreign user: owner check failed");
  ok (do_backup ("user@pbs!tok", "", "tokgroup", 1000) == 0,
      "token creates group");
  ok (do_backup ("user@pbs", "", "tokgroup", 1001) == 0,
      "user may write into its token's group");
  ok (do_backup ("user@pbs", "", "usergroup", 1000) == 0, "user group");
  b = pbs_ds_backup_start (ds, "user@pbs!tok", "", "vm", "usergroup", 1001);
  ok (!b &&
          err_is ("backup group vm/usergroup belongs to user@pbs, not to "
                  "user@pbs!tok: back up as its owner or into another "
                  "group") &&
          ctx_owner (PBS_DS_FAIL_OWNER, "user@pbs!tok", "user@pbs"),
      "token may not write into its user's group");

  b = pbs_ds_backup_start (ds, "root@pam", "nosuch", "vm", "100", 3000);
  ok (pbs_ds_error_context () == NULL,
      "... an error without context: none left over from the owner check");
  ok (!b && err_is ("namespace not found") && pbs_errno () == ENOENT,
      "missing namespace: 404 'namespace not found'");
  b = pbs_ds_backup_start (ds, "root@pam", "", "qemu", "100", 3000);
  ok (!b && pbs_errno () == EINVAL, "bad backup type rejected");
  b = pbs_ds_backup_start (ds, "root@pam", "", "vm", "-x", 3000);
  ok (!b, "bad backup id rejected");
  b = pbs_ds_backup_start (ds, "root@pam", "", "vm", "100", 0);
  ok (!b, "backup-time 0 rejected");
  b = pbs_ds_backup_start (ds, "root@pam", "", "host", "benchmark", 3000);
  ok (!b && err_is ("unable to run benchmark without --benchmark flags"),
      "host/benchmark needs the benchmark flag");

  /* One backup per group: in process (flock is per open file). */
  a = pbs_ds_backup_start (ds, "root@pam", "", "vm", "100", 3000);
  ok (a != NULL, "first session on vm/100");
  b = pbs_ds_backup_start (ds, "root@pam", "", "vm", "100", 3001);
  ok (!b && err_has ("another backup is already running") &&
          pbs_errno () == EBUSY,
      "second session on the same group: EBUSY, PBS's text");
  ok (!exists (snapdir ("100", 3001)), "the refused session made no dir");
  b = pbs_ds_backup_start (ds, "root@pam", "", "vm", "101", 3000);
  ok (b != NULL, "another group is not blocked");
  pbs_ds_backup_end (b);
  ok (pbs_ds_backup_previous_time (a, &prev) == 0 && prev == 1000,
      "first session still fine");
  pbs_ds_backup_end (a);
}

static void
test_lock_fork (void)
{
  int p1[2], p2[2];
  pid_t pid;
  char c = 0;
  struct pbs_ds_backup *b;
  int st;

  if (pipe (p1) == -1 || pipe (p2) == -1)
    abort ();
  pid = fork ();
  if (pid == 0) {
    struct pbs_ds_backup *cb =
        pbs_ds_backup_start (ds, "root@pam", "", "vm", "100", 4000);
    c = cb ? 'y' : 'n';
    if (write (p1[1], &c, 1) != 1 || read (p2[0], &c, 1) != 1)
      _exit (3);
    pbs_ds_backup_end (cb);
    _exit (0);
  }
  ok (read (p1[0], &c, 1) == 1 && c == 'y', "child process holds a backup");
  b = pbs_ds_backup_start (ds, "root@pam", "", "vm", "100", 4001);
  ok (!b && pbs_errno () == EBUSY &&
          err_has ("another backup is already running"),
      "parent's backup of the same group: EBUSY");
  pbs_ds_backup_end (b);
  c = 'x';
  if (write (p2[1], &c, 1) != 1)
    abort ();
  waitpid (pid, &st, 0);
  ok (WIFEXITED (st) && WEXITSTATUS (st) == 0, "child ended its session");
  ok (!exists (snapdir ("100", 4000)), "child's unfinished snapshot removed");
  b = pbs_ds_backup_start (ds, "root@pam", "", "vm", "100", 4001);
  ok (b != NULL, "after the child ended, the group is free");
  pbs_ds_backup_end (b);
  close (p1[0]);
  close (p1[1]);
  close (p2[0]);
  close (p2[1]);
}

static struct pbs_ds_backup *
session (const char *id, int64_t t)
{
  struct pbs_ds_backup *b =
      pbs_ds_backup_start (ds, "root@pam", "", "vm", id, t);
  if (!b) {
    printf ("#   session: %s\n", pbs_errmsg ());
    exit (1);
  }
  return b;
}

static void
test_fixed_index_rules (void)
{
  struct pbs_ds_backup *b = session ("100", 6000);
  uint8_t d[2][32], csum[32];
  char ch[65];
  int wid;

  ok (pbs_ds_backup_fixed_index (b, "disk.img.blob", 10, NULL) == -1 &&
          err_is ("wrong archive extension: 'disk.img.blob'") &&
          pbs_errno () == EINVAL,
      "fixed_index: wrong archive extension");
  ok (pbs_ds_backup_fixed_index (b, "a/b.fidx", 10, NULL) == -1,
      "fixed_index: name not a safe id");
  ok (pbs_ds_backup_fixed_index (b, "x.fidx", 0, NULL) == -1,
      "fixed_index: size 0 rejected");
  memcpy (d[0], big.d, 32);
  memcpy (d[1], tail.d, 32);
  csum_of ((const uint8_t (*)[32])d, 2, IMG_SIZE, csum);
  hex32 (csum, ch);
  {
    /* PBS's string comparison (an upper-case reuse-csum never matches)
     * and its text are the test server's (test-server-backup.sh). */
    char msg[400];
    uint8_t zero[32] = {0}, sum[32];
    snprintf (msg, sizeof msg,
              "reuse checksum %064d does not match the base index's %s: "
              "cannot do an incremental backup of drive-scsi0.img.fidx",
              0, ch);
    ok (pbs_ds_backup_fixed_index (b, "drive-scsi0.img.fidx", IMG_SIZE,
                                   zero) == -1 &&
            err_is (msg) && pbs_errno () == EINVAL &&
            ctx_is (PBS_DS_FAIL_REUSE_CSUM, 0, NULL) &&
            strcmp (pbs_ds_error_context ()->detail, ch) == 0,
        "wrong reuse checksum: refused, the base's checksum in the context");
    ok (pbs_ds_backup_base_csum (b, "drive-scsi0.img.fidx", sum) == 0 &&
            memcmp (sum, csum, 32) == 0,
        "base_csum: the base index's checksum");
    ok (pbs_ds_backup_base_csum (b, "other.img.fidx", sum) == -1 &&
            err_is ("cannot reuse index - no previous backup exists for "
                    "archive"),
        "base_csum of an archive the base lacks");
  }
  ok (pbs_ds_backup_fixed_index (b, "other.img.fidx", IMG_SIZE, csum) == -1 &&
          err_is ("cannot reuse index - no previous backup exists for "
                  "archive"),
      "reuse-csum for an archive the base lacks");
  ok (pbs_ds_backup_fixed_index (b, "drive-scsi0.img.fidx", 3 * CS, csum) ==
              -1 &&
          err_is ("clone_data_from failed - index sizes not equal"),
      "reuse-csum with another chunk count");
  wid = pbs_ds_backup_fixed_index (b, "drive-scsi0.img.fidx", IMG_SIZE, csum);
  ok (wid == 1, "reuse-csum matching: wid 1");
  {
    const uint8_t *hx[1] = {big.d};
    uint64_t off[1] = {0};
    ok (append (b, wid, 1, hx, off) == -1 && err_has ("no such chunk ") &&
            err_has (big.hex),
        "reuse-csum does not make the base's chunks known");
  }
  /* Incremental close: count and size are informational. */
  ok (close_hex (b, wid, 0, 12345, ch) == 0,
      "incremental close with 0 appends, copied digests, right csum");
  ok (exists2 (snapdir ("100", 6000), "drive-scsi0.img.fidx"),
      "cloned index written");
  pbs_ds_backup_end (b);
  ok (!exists (snapdir ("100", 6000)), "not finished: removed at end");

  b = session ("nobase", 1000);
  ok (pbs_ds_backup_fixed_index (b, "drive-scsi0.img.fidx", IMG_SIZE, csum) ==
              -1 &&
          err_is ("cannot reuse index - no valid previous backup exists"),
      "reuse-csum without a base");
  pbs_ds_backup_end (b);
}

static void
test_chunk_rules (void)
{
  struct pbs_ds_backup *b = session ("100", 7000);
  struct chunk c;
  char path[700];
  uint8_t *bad;
  int wid = pbs_ds_backup_fixed_index (b, "drive-scsi0.img.fidx", 3 * CS, NULL);
  ok (wid == 1, "writer 1 (3 chunks)");

  ok (pbs_ds_backup_fixed_chunk (b, 0, big.d, big.len, big.blen, big.blob,
                                 big.blen) == -1 &&
          pbs_errno () == EINVAL,
      "wid 0 rejected");
  ok (pbs_ds_backup_fixed_chunk (b, 257, big.d, big.len, big.blen, big.blob,
                                 big.blen) == -1,
      "wid 257 rejected");
  mkchunk (&c, 5000, 77);
  ok (pbs_ds_backup_fixed_chunk (b, 5, c.d, c.len, c.blen, c.blob, c.blen) ==
              -1 &&
          err_is ("fixed writer '5' not registered"),
      "unregistered wid: PBS's text");
  ok (pbs_datastore_has_chunk (ds, c.d),
      "... but the chunk was stored first, as PBS does");
  ok (pbs_ds_backup_fixed_chunk (b, wid, c.d, 0, c.blen, c.blob, c.blen) == -1,
      "size 0 rejected");
  ok (pbs_ds_backup_fixed_chunk (b, wid, c.d, 16 * 1024 * 1024 + 1, c.blen,
                                 c.blob, c.blen) == -1,
      "size > 16 MiB rejected");
  ok (pbs_ds_backup_fixed_chunk (b, wid, c.d, c.len, 12, c.blob, 12) == -1,
      "encoded-size 12 rejected (minimum 13)");
  ok (pbs_ds_backup_fixed_chunk (b, wid, c.d, c.len, c.blen - 1, c.blob,
                                 c.blen) == -1 &&
          err_is ("uploaded chunk is larger than announced."),
      "body longer than encoded-size");
  ok (pbs_ds_backup_fixed_chunk (b, wid, c.d, c.len, c.blen + 1, c.blob,
                                 c.blen) == -1 &&
          err_is ("uploaded chunk has unexpected size."),
      "body shorter than encoded-size");
  bad = malloc (c.blen);
  memcpy (bad, c.blob, c.blen);
  bad[0] ^= 0xff;
  ok (pbs_ds_backup_fixed_chunk (b, wid, c.d, c.len, c.blen, bad, c.blen) ==
              -1 &&
          err_has ("wrong magic"),
      "bad magic rejected");
  ok (pbs_ds_backup_fixed_chunk (b, wid, tail.d, c.len, c.blen, c.blob,
                                 c.blen) == -1 &&
          err_is ("detected chunk with wrong digest."),
      "digest of other data: 'detected chunk with wrong digest.'");
  ok (pbs_ds_backup_fixed_chunk (b, wid, c.d, 4999, c.blen, c.blob, c.blen) ==
              -1 &&
          err_is ("detected chunk with wrong length (4999 != 5000)"),
      "wrong size: 'detected chunk with wrong length (4999 != 5000)'");
  /* Trap 7: a wrong CRC is rewritten, not rejected. */
  memcpy (bad, c.blob, c.blen);
  bad[8] ^= 0x55;
  {
    char hex4[5];
    memcpy (hex4, c.hex, 4);
    hex4[4] = 0;
    snprintf (path, sizeof path, "%s/.chunks/%s/%s", dspath, hex4, c.hex);
  }
  unlink (path);
  ok (pbs_ds_backup_fixed_chunk (
          b, pbs_ds_backup_fixed_index (b, "crc.img.fidx", c.len, NULL), c.d,
          c.len, c.blen, bad, c.blen) == 0,
      "wrong chunk CRC accepted (server recomputes it)");
  {
    uint8_t *st = NULL;
    size_t sl = 0;
    ok (pbs_datastore_load_chunk (ds, c.d, &st, &sl) == 0 && sl == c.blen &&
            pbs_blob_check_crc (st, sl) == 0 &&
            (uint32_t)crc32 (0, st + 12, (uInt)(sl - 12)) ==
                (uint32_t)(st[8] | st[9] << 8 | st[10] << 16 |
                           (uint32_t)st[11] << 24),
        "stored chunk carries the correct CRC");
    free (st);
  }
  free (bad);
  ok (pbs_ds_backup_fixed_chunk (b, wid, huge.d, huge.len, huge.blen, huge.blob,
                                 huge.blen) == -1 &&
          err_is ("fixed writer 'drive-scsi0.img.fidx' - got large chunk "
                  "(4194305 > 4194304"),
      "chunk > 4 MiB: 'got large chunk' (PBS's text, sic)");
  {
    /* Encrypted: only magic and length can be checked (§3.4). */
    uint8_t raw[32], *eb = NULL, ed[32];
    size_t el = 0;
    struct pbs_key *k;
    memset (raw, 7, sizeof raw);
    k = pbs_key_from_raw (raw);
    ok (k && pbs_blob_encode (c.data, 4000, k, true, &eb, &el) == 0 &&
            pbs_blob_kind (eb, el) >= PBS_BLOB_ENCRYPTED,
        "encrypted chunk encoded");
    pbs_chunk_digest (k, c.data, 4000, ed);
    ok (pbs_ds_backup_fixed_chunk (
            b, pbs_ds_backup_fixed_index (b, "enc.img.fidx", 4000, NULL), ed,
            4000, el, eb, el) == 0,
        "encrypted chunk stored without digest check");
    ok (pbs_ds_backup_fixed_chunk (b, wid, ed, 4000, 40, eb, 40) == -1 &&
            pbs_errno () == EINVAL,
        "encrypted chunk shorter than its 44-byte header rejected");
    free (eb);
    pbs_key_free (k);
  }
  ok (pbs_ds_backup_fixed_chunk (b, wid, tail.d, tail.len, tail.blen, tail.blob,
                                 tail.blen) == 0,
      "first short chunk ok");
  ok (pbs_ds_backup_fixed_chunk (b, wid, tail2.d, tail2.len, tail2.blen,
                                 tail2.blob, tail2.blen) == -1 &&
          err_is ("fixed writer '1' - detected multiple end chunks (chunk "
                  "size too small)"),
      "second short chunk: 'detected multiple end chunks'");
  ok (pbs_ds_backup_fixed_chunk (b, wid, big.d, big.len, big.blen, big.blob,
                                 big.blen) == 0,
      "full chunk (duplicate in store) ok");
  pbs_ds_backup_end (b);
  freechunk (&c);
}

static void
test_append_close_rules (void)
{
  struct pbs_ds_backup *b = session ("100", 8000);
  uint64_t size = 2 * CS + 1000;
  const uint8_t *hx[3];
  uint64_t off[3];
  uint8_t d[3][32], csum[32];
  char ch[65], path[700];
  int wid = pbs_ds_backup_fixed_index (b, "drive-scsi0.img.fidx", size, NULL);

  ok (wid == 1, "writer for 2 MiB*4 + 1000");
  hx[0] = big.d;
  off[0] = 0;
  ok (append (b, wid, 1, hx, off) == -1 && err_has ("no such chunk ") &&
          err_has (big.hex),
      "unknown digest: 'no such chunk <hex>'");
  pbs_ds_backup_fixed_chunk (b, wid, big.d, big.len, big.blen, big.blob,
                             big.blen);
  pbs_ds_backup_fixed_chunk (b, wid, tail.d, tail.len, tail.blen, tail.blob,
                             tail.blen);
  off[0] = 1;
  ok (append (b, wid, 1, hx, off) == -1 &&
          err_is ("got unaligned chunk (pos = 1)"),
      "unaligned offset: 'got unaligned chunk'");
  off[0] = 2 * CS;
  ok (append (b, wid, 1, hx, off) == -1 && err_has ("chunk data exceeds size"),
      "4 MiB chunk past the end: 'chunk data exceeds size'");
  hx[0] = tail.d;
  off[0] = 0;
  ok (append (b, wid, 1, hx, off) == -1 &&
          err_has ("chunk with unexpected length"),
      "short chunk not at the end: 'chunk with unexpected length'");
  hx[0] = big.d;
  hx[1] = big.d;
  off[0] = 0;
  off[1] = CS;
  hx[1] = tail.d;
  off[1] = 5;
  ok (append (b, wid, 2, hx, off) == -1, "pair 2 bad: call fails");
  memset (csum, 0, 32);
  hex32 (csum, ch);
  ok (close_hex (b, wid, 0, size, ch) == -1 &&
          err_is ("fixed writer 'drive-scsi0.img.fidx' close failed - "
                  "received wrong number of chunk (1 != 0)"),
      "pairs applied one by one: the first counted (1 != 0)");
  ok (close_hex (b, wid, 1, size, ch) == -1 &&
          err_is ("fixed writer '1' not registered"),
      "a failed close loses the writer");
  snprintf (path, sizeof path, "%s/drive-scsi0.img.tmp_fidx",
            snapdir ("100", 8000));
  ok (!exists (path), "... and its .tmp_fidx");

  wid = pbs_ds_backup_fixed_index (b, "drive-scsi0.img.fidx", size, NULL);
  hx[0] = big.d;
  hx[1] = big.d;
  hx[2] = tail.d;
  off[0] = 0;
  off[1] = CS;
  off[2] = 2 * CS;
  ok (wid == 2 && append (b, wid, 3, hx, off) == 0,
      "wid 2 (per-session counter); 3 pairs appended");
  ok (pbs_ds_backup_finish (b) == -1 &&
          err_is ("found open index writer - unable to finish backup"),
      "finish with an open writer");
  memcpy (d[0], big.d, 32);
  memcpy (d[1], big.d, 32);
  memcpy (d[2], tail.d, 32);
  csum_of ((const uint8_t (*)[32])d, 3, size, csum);
  hex32 (csum, ch);
  ok (close_hex (b, wid, 3, size + 1, ch) == -1 &&
          err_is ("fixed writer 'drive-scsi0.img.fidx' close failed - "
                  "unexpected file size (8389608 != 8389609)"),
      "close with wrong size");
  wid = pbs_ds_backup_fixed_index (b, "drive-scsi0.img.fidx", size, NULL);
  append (b, wid, 2, hx, off);
  ok (close_hex (b, wid, 2, size, ch) == -1 &&
          err_is ("fixed writer 'drive-scsi0.img.fidx' close failed - "
                  "unexpected chunk count (3 != 2)"),
      "close with fewer chunks than the index has");
  wid = pbs_ds_backup_fixed_index (b, "drive-scsi0.img.fidx", size, NULL);
  append (b, wid, 3, hx, off);
  {
    char upper[65];
    size_t i;
    for (i = 0; i < 65; i++)
      upper[i] = (char)(ch[i] >= 'a' ? ch[i] - 32 : ch[i]);
    ch[0] = ch[0] == '0' ? '1' : '0';
    ok (close_hex (b, wid, 3, size, ch) == -1 &&
            err_is ("fixed writer 'drive-scsi0.img.fidx' close failed - "
                    "got unexpected checksum"),
        "close with a wrong csum");
    ok (exists2 (snapdir ("100", 8000), "drive-scsi0.img.fidx"),
        "... the final .fidx is on disk anyway (trap 12)");
    wid = pbs_ds_backup_fixed_index (b, "drive-scsi0.img.fidx", size, NULL);
    append (b, wid, 3, hx, off);
    ok (close_hex (b, wid, 3, size, upper) == 0, "close with the right csum");
  }
  ok (pbs_ds_backup_finish (b) == -1 &&
          err_is ("unable to update manifest blob: no index.json.blob was "
                  "uploaded (upload it before finish)") &&
          ctx_is (PBS_DS_FAIL_NO_MANIFEST, ENOENT, "Z/index.json.blob"),
      "finish without index.json.blob: 'unable to update manifest blob: "
      "...'");
  pbs_ds_backup_end (b);
  ok (!exists (snapdir ("100", 8000)), "unfinished session removed");
}

static void
test_blob_finish_rules (void)
{
  struct pbs_ds_backup *b = session ("100", 9000);
  uint8_t *blob, *bad, csum[32], d[2][32];
  size_t len;
  char ch[65];
  const uint8_t *hx[2] = {big.d, tail.d};
  uint64_t off[2] = {0, CS};
  int wid;

  ok (pbs_ds_backup_finish (b) == -1 &&
          err_is ("backup does not contain valid files (file count == 0)"),
      "finish with no files");
  pbs_blob_encode ("hello", 5, NULL, false, &blob, &len);
  ok (pbs_ds_backup_blob (b, "notes.txt", len, blob, len) == -1 &&
          err_is ("wrong blob file extension: 'notes.txt'"),
      "blob: wrong extension");
  ok (pbs_ds_backup_blob (b, "x.blob", len + 1, blob, len) == -1 &&
          err_is ("got blob with unexpected length (18 != 17)"),
      "blob: encoded-size != body length");
  bad = malloc (len);
  memcpy (bad, blob, len);
  bad[8] ^= 1;
  ok (pbs_ds_backup_blob (b, "x.blob", len, bad, len) == -1 &&
          err_is ("Data blob has wrong CRC checksum."),
      "blob: wrong CRC");
  free (bad);
  ok (pbs_ds_backup_blob (b, "qemu-server.conf.blob", len, blob, len) == 0,
      "blob stored");
  ok (exists2 (snapdir ("100", 9000), "qemu-server.conf.blob"),
      "blob file present");
  free (blob);
  /* A manifest that is not one. */
  pbs_blob_encode ("[1,2]", 5, NULL, false, &blob, &len);
  pbs_ds_backup_blob (b, "index.json.blob", len, blob, len);
  free (blob);
  ok (pbs_ds_backup_finish (b) == -1 &&
          err_has ("unable to update manifest blob - "),
      "finish with an invalid manifest");
  ok (!exists2 (snapdir ("100", 9000), "index.json.blob"),
      "no manifest appears before finish succeeds");

  wid = pbs_ds_backup_fixed_index (b, "drive-scsi0.img.fidx", IMG_SIZE, NULL);
  pbs_ds_backup_fixed_chunk (b, wid, big.d, big.len, big.blen, big.blob,
                             big.blen);
  pbs_ds_backup_fixed_chunk (b, wid, tail.d, tail.len, tail.blen, tail.blob,
                             tail.blen);
  append (b, wid, 2, hx, off);
  memcpy (d[0], big.d, 32);
  memcpy (d[1], tail.d, 32);
  csum_of ((const uint8_t (*)[32])d, 2, IMG_SIZE, csum);
  hex32 (csum, ch);
  ok (close_hex (b, wid, 2, IMG_SIZE, ch) == 0, "close ok");
  blob = manifest_blob ("100", 9000, csum, IMG_SIZE, &len);
  pbs_ds_backup_blob (b, "index.json.blob", len, blob, len);
  free (blob);
  ok (pbs_ds_backup_finish (b) == 0, "finish ok");
  ok (pbs_ds_backup_finish (b) == -1 &&
          err_is ("backup already marked as finished."),
      "finish twice: 'backup already marked as finished.'");
  ok (pbs_ds_backup_fixed_index (b, "y.fidx", 10, NULL) == -1 &&
          err_is ("backup already marked as finished."),
      "no new writer after finish");
  pbs_ds_backup_end (b);
  ok (exists2 (snapdir ("100", 9000), "index.json.blob"),
      "finished snapshot kept at end");
  {
    /* The stored manifest: chunk_upload_stats added, compressed, plain. */
    char p[700];
    uint8_t *raw, *json;
    size_t rl, jl;
    struct pbs_manifest *m;
    char *stats;
    FILE *f;
    snprintf (p, sizeof p, "%s/index.json.blob", snapdir ("100", 9000));
    f = fopen (p, "rb");
    raw = malloc (1 << 16);
    rl = fread (raw, 1, 1 << 16, f);
    fclose (f);
    ok (pbs_blob_kind (raw, rl) == PBS_BLOB_ZSTD,
        "manifest stored as zstd blob");
    pbs_blob_decode (raw, rl, NULL, 1 << 20, &json, &jl);
    m = pbs_manifest_parse ((char *)json, jl, NULL, PBS_MANIFEST_NO_VERIFY);
    stats = m ? pbs_manifest_get_unprotected (m, "chunk_upload_stats") : NULL;
    ok (stats && strstr (stats, "\"count\"") &&
            strstr (stats, "\"duplicates\"") &&
            strstr (stats, "\"compressed_size\"") && strstr (stats, "\"size\""),
        "chunk_upload_stats {count,size,compressed_size,duplicates}: %s",
        stats ? stats : "(none)");
    free (stats);
    pbs_manifest_free (m);
    free (raw);
    free (json);
  }
}

static void
test_previous (void)
{
  struct pbs_ds_backup *b;
  uint8_t *data;
  size_t len;
  int64_t prev;
  const uint8_t *hx[2] = {big.d, tail.d};
  uint64_t off[2] = {0, CS};
  int wid;

  b = session ("fresh", 1000);
  ok (pbs_ds_backup_previous (b, "drive-scsi0.img.fidx", &data, &len) == -1 &&
          err_is ("no valid previous backup"),
      "previous without base: 'no valid previous backup'");
  pbs_ds_backup_end (b);

  b = session ("100", 9500);
  ok (pbs_ds_backup_previous (b, "missing.blob", &data, &len) == -1 &&
          pbs_errno () == ENOENT,
      "previous: missing blob is 404");
  ok (pbs_ds_backup_previous (b, "index.json.blob", &data, &len) == 0 &&
          pbs_blob_kind (data, len) >= 0,
      "previous: manifest blob downloaded");
  free (data);
  wid = pbs_ds_backup_fixed_index (b, "drive-scsi0.img.fidx", IMG_SIZE, NULL);
  ok (append (b, wid, 2, hx, off) == -1,
      "before previous .fidx: digests unknown");
  ok (pbs_ds_backup_previous (b, "drive-scsi0.img.fidx", &data, &len) == 0 &&
          len == 4096 + 64,
      "previous .fidx downloaded");
  free (data);
  ok (append (b, wid, 2, hx, off) == 0,
      "after previous .fidx: digests known with their lengths");
  pbs_ds_backup_end (b);

  /* Trap 14: a failed verify of the last snapshot means no base at all. */
  ok (do_backup ("root@pam", "", "ver", 1000) == 0 &&
          do_backup ("root@pam", "", "ver", 2000) == 0,
      "two snapshots of vm/ver");
  set_verify_state ("ver", 2000, "failed", UPID);
  b = session ("ver", 1500);
  ok (b && pbs_ds_backup_previous_time (b, &prev) == 0 && prev == -1,
      "last snapshot failed verify: no base, even the older one is not used");
  ok (pbs_ds_backup_previous (b, "drive-scsi0.img.fidx", &data, &len) == -1 &&
          err_is ("no valid previous backup"),
      "... previous fails");
  pbs_ds_backup_end (b);
  set_verify_state ("ver", 2000, "failed", "not-a-upid");
  b = session ("ver", 2500);
  ok (pbs_ds_backup_previous_time (b, &prev) == 0 && prev == 2000,
      "verify_state with an unparsable upid is ignored (base kept)");
  pbs_ds_backup_end (b);
  set_verify_state ("ver", 2000, "ok", UPID);
  b = pbs_ds_backup_start (ds, "root@pam", "", "vm", "ver", 1500);
  ok (!b && err_is ("backup timestamp is older than last backup."),
      "verify ok: base is back, time rule applies");
}

struct ins_arg {
  struct chunk *c;
  int fails;
};

static void *
inserter (void *p)
{
  struct ins_arg *a = p;
  int i;
  for (i = 0; i < 20; i++) {
    bool dup;
    if (pbs_datastore_insert_chunk (ds, a->c[i % 4].d, a->c[i % 4].blob,
                                    a->c[i % 4].blen, &dup) == -1)
      a->fails++;
  }
  return NULL;
}

static void
test_threads (void)
{
  struct chunk c[4];
  struct ins_arg a[4];
  pthread_t t[4];
  int i, fails = 0, good = 0;

  for (i = 0; i < 4; i++)
    mkchunk (&c[i], 300000, 1000 + i);
  for (i = 0; i < 4; i++) {
    a[i].c = c;
    a[i].fails = 0;
    pthread_create (&t[i], NULL, inserter, &a[i]);
  }
  for (i = 0; i < 4; i++) {
    pthread_join (t[i], NULL);
    fails += a[i].fails;
  }
  ok (fails == 0, "4 threads x 20 concurrent inserts of 4 chunks: no error");
  for (i = 0; i < 4; i++) {
    uint8_t *s, *data;
    size_t sl, dl;
    uint8_t d[32];
    if (pbs_datastore_load_chunk (ds, c[i].d, &s, &sl) == 0 &&
        pbs_blob_decode (s, sl, NULL, 1 << 20, &data, &dl) == 0) {
      pbs_chunk_digest (NULL, data, dl, d);
      good += memcmp (d, c[i].d, 32) == 0;
      free (data);
      free (s);
    }
  }
  ok (good == 4, "all 4 chunks complete and correct");
  {
    int tmp = 0;
    char dir[400], hex4[5];
    DIR *dd;
    struct dirent *de;
    for (i = 0; i < 4; i++) {
      memcpy (hex4, c[i].hex, 4);
      hex4[4] = 0;
      snprintf (dir, sizeof dir, "%s/.chunks/%s", dspath, hex4);
      dd = opendir (dir);
      while (dd && (de = readdir (dd)))
        tmp += strstr (de->d_name, "tmp") != NULL;
      if (dd)
        closedir (dd);
    }
    ok (tmp == 0, "no temp files left in the chunk dirs");
  }
  for (i = 0; i < 4; i++)
    freechunk (&c[i]);
}

static void
test_reader (void)
{
  struct pbs_ds_reader *r;
  struct pbs_ds_backup *b;
  uint8_t *data;
  size_t len;

  r = pbs_ds_reader_start (ds, "root@pam", "", "vm", "100", 1234);
  /* src/api2/reader/mod.rs: a plain bail!, so 400 */
  ok (!r && pbs_errno () == ENOENT &&
          err_is ("snapshot vm/100/1970-01-01T00:20:34Z does not exist."),
      "reader: missing snapshot is 400 'snapshot ... does not exist.'");
  r = pbs_ds_reader_start (ds, "root@pam", "", "vm", "100", 1000);
  ok (r != NULL, "reader on vm/100/1000");
  ok (pbs_ds_reader_chunk (r, big.d, &data, &len) == -1 &&
          pbs_errno () == EACCES && err_has ("download chunk ") &&
          err_has (" not allowed"),
      "chunk before its index: EACCES (401 from the server) 'download chunk "
      "<hex> not allowed'");
  /* An index is opened first (FixedIndexReader::open, 400); other files
   * are streamed (create_download_response: 404 when absent). */
  ok (pbs_ds_reader_download (r, "nope.fidx", &data, &len) == -1 &&
          pbs_errno () == ENOENT && err_has ("cannot read fixed index /") &&
          err_has ("Z/nope.fidx: No such file or directory") &&
          ctx_is (PBS_DS_FAIL_OPEN_INDEX, ENOENT, "Z/nope.fidx"),
      "missing index: ENOENT 'cannot read fixed index ...' (the server "
      "answers 400 'Unable to open fixed index ...')");
  ok (pbs_ds_reader_download (r, "nope.blob", &data, &len) == -1 &&
          pbs_errno () == ENOENT && err_has ("cannot read /") &&
          err_has ("Z/nope.blob: No such file or directory") &&
          ctx_is (PBS_DS_FAIL_OPEN_FILE, ENOENT, "Z/nope.blob"),
      "missing blob: ENOENT 'cannot read ...' (the server answers 404 'open "
      "file ... failed - not found')");
  ok (pbs_ds_reader_download (r, "nope.txt", &data, &len) == -1 &&
          pbs_errno () == EINVAL &&
          err_is ("unknown archive type: \"nope.txt\""),
      "unknown archive type: 400");
  ok (pbs_ds_reader_download (r, "drive-scsi0.img.fidx", &data, &len) == 0,
      "download index");
  free (data);
  ok (pbs_ds_reader_chunk (r, big.d, &data, &len) == 0 && len == big.blen,
      "chunk after its index: allowed");
  free (data);
  /* A backup of that group can still run (the base is share-locked). */
  b = session ("100", 20000);
  ok (b != NULL, "backup while a reader holds an old snapshot");
  pbs_ds_backup_end (b);
  pbs_ds_reader_end (r);

  b = session ("100", 20001);
  r = pbs_ds_reader_start (ds, "root@pam", "", "vm", "100", 20001);
  ok (!r && pbs_errno () == EBUSY && err_has ("locked by another operation"),
      "reader of the snapshot being written: locked");
  pbs_ds_backup_end (b);
}

static void
test_listing (void)
{
  struct pbs_snapshot *s;
  size_t n, i;
  bool sorted = true;

  mkdir (snapdir ("100", 30000), 0755);
  ok (pbs_datastore_snapshots (ds, "", "vm", "100", &s, &n) == 0 && n >= 3,
      "list vm/100: %zu snapshots", n);
  for (i = 1; i < n; i++)
    sorted &= s[i - 1].time < s[i].time;
  ok (sorted, "sorted by time");
  ok (s[0].time == 1000 && s[0].finished && s[0].nfiles == 2 &&
          s[0].size > IMG_SIZE && s[0].owner &&
          strcmp (s[0].owner, "root@pam") == 0,
      "first: finished, 2 files (.fidx + manifest), size, owner");
  ok (!s[n - 1].finished && s[n - 1].time == 30000,
      "unfinished dir listed as unfinished");
  pbs_snapshots_free (s, n);
  rmdir (snapdir ("100", 30000));
  ok (pbs_datastore_snapshots (ds, "", "vm", "ver", &s, &n) == 0 && n == 2 &&
          s[1].verify_state && strcmp (s[1].verify_state, "ok") == 0,
      "verify state listed");
  pbs_snapshots_free (s, n);
  ok (pbs_datastore_snapshots (ds, "", NULL, NULL, &s, &n) == 0 && n > 5,
      "list all groups");
  sorted = true;
  for (i = 1; i < n; i++)
    sorted &= strcmp (s[i - 1].id, s[i].id) <= 0;
  ok (sorted, "sorted by id");
  pbs_snapshots_free (s, n);
  ok (pbs_datastore_snapshots (ds, "nosuch", NULL, NULL, &s, &n) == -1 &&
          pbs_errno () == ENOENT,
      "listing a missing namespace: 404");
}

static void
test_repo (void)
{
  char p[400];
  struct pbs_repo *r;
  struct pbs_backup *b;
  struct pbs_reader *rd;
  uint8_t *data, csum[32], d[2][32];
  size_t len;
  int fd, wid;
  uint64_t off[2] = {0, CS};

  snprintf (p, sizeof p, "%s/afile", top);
  fd = open (p, O_WRONLY | O_CREAT, 0644);
  close (fd);
  r = pbs_repo_open (p, NULL);
  ok (!r && pbs_errno () == ENOTDIR && err_has ("not a directory") &&
          !err_has (p),
      "pbs_repo_open on a file: ENOTDIR, the caller names the path");
  {
    struct pbs_repo_opts o = { .create = true };
    r = pbs_repo_open (dspath, &o);
  }
  ok (r && pbs_repo_is_local (r), "pbs_repo_open local");

  b = pbs_backup_start (r, "", "vm", "100", 40000);
  ok (b != NULL, "pbs_backup_start");
  ok (!pbs_backup_known (b, big.d), "nothing known at start");
  ok (pbs_backup_download_previous (b, "drive-scsi0.img.fidx", &data, &len) ==
          0,
      "download previous index");
  free (data);
  ok (pbs_backup_known (b, big.d) && pbs_backup_known (b, tail.d),
      "previous index digests known client-side");
  wid = pbs_backup_fixed_index (b, "drive-scsi0.img.fidx", IMG_SIZE, NULL);
  memcpy (d[0], big.d, 32);
  memcpy (d[1], tail.d, 32);
  ok (wid >= 1 && pbs_backup_fixed_append (b, wid, 2, (const uint8_t (*)[32])d,
                                           off) == 0,
      "append of known digests without upload");
  csum_of ((const uint8_t (*)[32])d, 2, IMG_SIZE, csum);
  ok (pbs_backup_fixed_close (b, wid, 2, IMG_SIZE, csum) == 0, "close");
  pbs_backup_free (b);
  ok (!exists (snapdir ("100", 40000)), "pbs_backup_free without finish "
                                        "removes the snapshot");

  b = pbs_backup_start (r, "", "vm", "fresh2", 1000);
  {
    struct chunk c;
    mkchunk (&c, 777, 9);
    ok (!pbs_backup_known (b, c.d), "new chunk unknown");
    wid = pbs_backup_fixed_index (b, "small.img.fidx", 777, NULL);
    ok (pbs_backup_fixed_chunk (b, wid, c.d, 777, c.blob, c.blen) == 0 &&
            pbs_backup_known (b, c.d),
        "uploaded chunk known");
    ok (pbs_backup_fixed_append (b, wid, 1, (const uint8_t (*)[32])c.d, off) ==
            0,
        "append");
    csum_of ((const uint8_t (*)[32])c.d, 1, 777, csum);
    ok (pbs_backup_fixed_close (b, wid, 1, 777, csum) == 0, "close");
    {
      uint8_t *mb;
      size_t ml;
      struct pbs_manifest *m = pbs_manifest_new ("vm", "fresh2", 1000);
      char *json;
      pbs_manifest_add_file (m, "small.img.fidx", "none", 777, csum);
      pbs_manifest_to_json (m, NULL, &json);
      pbs_blob_encode (json, strlen (json), NULL, true, &mb, &ml);
      ok (pbs_backup_blob (b, "index.json.blob", mb, ml) == 0 &&
              pbs_backup_finish (b) == 0,
          "manifest + finish through the generic layer");
      free (mb);
      free (json);
      pbs_manifest_free (m);
    }
    pbs_backup_free (b);
    rd = pbs_reader_start (r, "", "vm", "fresh2", 1000);
    ok (rd && pbs_reader_download (rd, "small.img.fidx", &data, &len) == 0,
        "reader download");
    free (data);
    ok (pbs_reader_chunk (rd, c.d, &data, &len) == 0 && len == c.blen &&
            memcmp (data, c.blob, 12) == 0,
        "reader chunk: the stored blob");
    free (data);
    pbs_reader_free (rd);
    freechunk (&c);
  }
  {
    struct pbs_snapshot *s;
    size_t n;
    ok (pbs_repo_snapshots (r, "", "vm", "fresh2", &s, &n) == 0 && n == 1 &&
            s[0].finished && pbs_http_status () == 0,
        "pbs_repo_snapshots");
    pbs_snapshots_free (s, n);
  }
  b = pbs_backup_start (r, "x/y", "vm", "nsgroup", 1000);
  ok (b != NULL, "local backend creates namespace x/y on first use");
  pbs_backup_free (b);
  snprintf (p, sizeof p, "%s/ns/x/ns/y", dspath);
  ok (exists (p), "... at ns/x/ns/y");
  snprintf (p, sizeof p, "%s/ns/x/ns/y/vm", dspath);
  ok (!exists (p), "... and the unfinished first session removed the group "
      "and type directories it made");
  b = pbs_backup_start (r, "", "vm", "100", 1);
  ok (!b && err_is ("backup timestamp is older than last backup.") &&
          pbs_http_status () == 0,
      "local errors carry the server text and no HTTP status");
  pbs_repo_close (r);

  snprintf (p, sizeof p, "%s/new/store", top);
  r = pbs_repo_open (p, NULL);
  ok (!r && pbs_errno () == ENOENT && err_has ("no datastore here"),
      "pbs_repo_open without create: a missing directory is no datastore");
  snprintf (p, sizeof p, "%s/new", top);
  ok (!exists (p), "... and nothing was created");
  snprintf (p, sizeof p, "%s/new/store", top);
  {
    struct pbs_repo_opts o = { .create = true };
    r = pbs_repo_open (p, &o);
  }
  ok (r != NULL, "pbs_repo_open with create makes a missing directory");
  pbs_repo_close (r);
}

static void
remove_top (void)
{
  char cmd[400];
  snprintf (cmd, sizeof cmd, "rm -rf '%s'", top);
  if (system (cmd) != 0)
    fprintf (stderr, "test-datastore: could not remove %s\n", top);
}

int
main (void)
{
  const char *tmp = getenv ("TMPDIR");

  /* A datastore is 65536 directories: about 1 s on tmpfs, up to a minute
   * to create and remove on a busy ext4. */
  if (!tmp && access ("/dev/shm", W_OK) == 0)
    tmp = "/dev/shm";
  snprintf (top, sizeof top, "%s/test-datastore.XXXXXX", tmp ? tmp : "/tmp");
  if (!mkdtemp (top)) {
    perror ("mkdtemp");
    return 1;
  }
  atexit (remove_top); /* also after an early exit (1) */
  snprintf (dspath, sizeof dspath, "%s/ds", top);
  mkchunk (&big, CS, 1);
  mkchunk (&tail, 1000, 2);
  mkchunk (&tail2, 2000, 3);
  mkchunk (&huge, CS + 1, 4);

  test_open ();
  test_happy ();
  test_start_rules ();
  test_lock_fork ();
  test_fixed_index_rules ();
  test_chunk_rules ();
  test_append_close_rules ();
  test_blob_finish_rules ();
  test_previous ();
  test_threads ();
  test_reader ();
  test_listing ();
  test_repo ();

  pbs_datastore_close (ds);
  freechunk (&big);
  freechunk (&tail);
  freechunk (&tail2);
  freechunk (&huge);
  return tap_done ();
}
