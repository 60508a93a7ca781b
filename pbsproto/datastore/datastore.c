/* datastore.c -- open a datastore directory in PBS's layout
 * (docs/pbs-protocol.md §6.1) and the small file helpers the ds-*.c files
 * share.
 *
 * Creation follows PBS's ChunkStore::create: PATH, PATH/.chunks with its
 * 65536 prefix directories 0000..ffff, and PATH/.lock.  .lock is created
 * last, so an interrupted creation (Ctrl-C after 30000 directories) is
 * finished by the next open instead of leaving a store with holes. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "ds-internal.h"
#include "pbs-errors.h"

static int
mkdir_p (const char *path, mode_t mode)
{
  char *p = strdup (path), *s;
  int r = 0;

  if (!p) {
    errno = ENOMEM;
    return -1;
  }
  for (s = p + 1; *s; s++) {
    if (*s != '/')
      continue;
    *s = 0;
    if (mkdir (p, mode) == -1 && errno != EEXIST) {
      r = -1;
      break;
    }
    *s = '/';
  }
  if (r == 0 && mkdir (p, mode) == -1 && errno != EEXIST)
    r = -1;
  free (p);
  return r;
}

/* .chunks, never through a symlink (chunks would land elsewhere). */
static int
chunks_fd (struct pbs_datastore *ds)
{
  char *shown = NULL;

  if (asprintf (&shown, "%s/.chunks", ds->path) == -1) {
    pbs__set_error (ENOMEM, "out of memory");
    return -1;
  }
  ds->chunksfd = pbs__ds_open_dir (ds->dirfd, ".chunks", shown, false, NULL);
  free (shown);
  return ds->chunksfd == -1 ? -1 : 0;
}

static int
create_chunk_tree (struct pbs_datastore *ds)
{
  char name[8];
  unsigned i;
  int fd;

  if (mkdirat (ds->dirfd, ".chunks", 0755) == -1 && errno != EEXIST) {
    pbs__set_error (errno, "%s/.chunks: %s", ds->path, strerror (errno));
    return -1;
  }
  if (chunks_fd (ds) == -1)
    return -1;
  for (i = 0; i < 0x10000; i++) {
    snprintf (name, sizeof name, "%04x", i);
    if (mkdirat (ds->chunksfd, name, 0755) == -1 && errno != EEXIST) {
      pbs__set_error (errno, "%s/.chunks/%s: %s", ds->path, name,
                      strerror (errno));
      return -1;
    }
  }
  fd = openat (ds->dirfd, ".lock", O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd == -1) {
    pbs__set_error (errno, "%s/.lock: %s", ds->path, strerror (errno));
    return -1;
  }
  close (fd);
  return 0;
}

static bool
dir_is_empty (int dirfd)
{
  int fd = dup (dirfd);
  DIR *d = fd >= 0 ? fdopendir (fd) : NULL;
  struct dirent *de;
  bool empty = true;

  if (!d) {
    if (fd >= 0)
      close (fd);
    return false;
  }
  rewinddir (d);
  while (empty && (de = readdir (d)))
    empty = strcmp (de->d_name, ".") == 0 || strcmp (de->d_name, "..") == 0;
  closedir (d);
  return empty;
}

struct pbs_datastore *
pbs_datastore_open (const char *path, bool create)
{
  struct pbs_datastore *ds = NULL;
  struct stat st;
  size_t n;

  if (!path || !*path) {
    pbs__set_error (EINVAL, "datastore path is empty");
    return NULL;
  }
  if (stat (path, &st) == -1) {
    if (errno == ENOENT && !create) {
      pbs__set_error (ENOENT, "no datastore here (a push creates one; "
                              "check the path)");
      return NULL;
    }
    if (errno != ENOENT) {
      pbs__set_error (errno, "%s", strerror (errno));
      return NULL;
    }
    if (mkdir_p (path, 0755) == -1) {
      pbs__set_error (errno, "cannot create the datastore: %s",
                      strerror (errno));
      return NULL;
    }
  } else if (!S_ISDIR (st.st_mode)) {
    pbs__set_error (ENOTDIR, "not a directory; a datastore is a directory");
    return NULL;
  }

  ds = calloc (1, sizeof *ds);
  if (ds)
    ds->path = strdup (path);
  if (!ds || !ds->path) {
    free (ds);
    pbs__set_error (ENOMEM, "out of memory");
    return NULL;
  }
  ds->sync = PBS_DS_SYNC_OWN;
  n = strlen (ds->path);
  while (n > 1 && ds->path[n - 1] == '/')
    ds->path[--n] = 0;
  ds->chunksfd = -1;
  pthread_mutex_init (&ds->tmp_lock, NULL);
  ds->dirfd = open (ds->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (ds->dirfd == -1) {
    pbs__set_error (errno, "%s", strerror (errno));
    goto err;
  }
  if (faccessat (ds->dirfd, ".lock", F_OK, 0) == 0 &&
      faccessat (ds->dirfd, ".chunks", F_OK, 0) == 0) {
    if (chunks_fd (ds) == -1)
      goto err;
  } else if (!create) {
    pbs__set_error (ENOENT, "no datastore here (no .chunks and .lock; "
                            "a push creates one)");
    goto err;
  } else if (faccessat (ds->dirfd, ".chunks", F_OK, 0) == -1 &&
             !dir_is_empty (ds->dirfd)) {
    /* "./" or a home directory given by mistake must not receive 65536
     * directories.  (.chunks without .lock: an interrupted creation,
     * resumed below.) */
    pbs__set_error (EEXIST, "not a datastore and not empty; a new datastore "
                            "needs an empty or missing directory");
    goto err;
  } else if (create_chunk_tree (ds) == -1)
    goto err;
  return ds;
err:
  pbs_datastore_close (ds);
  return NULL;
}

void
pbs_datastore_close (struct pbs_datastore *ds)
{
  if (!ds)
    return;
  if (ds->chunksfd >= 0)
    close (ds->chunksfd);
  if (ds->dirfd >= 0)
    close (ds->dirfd);
  pthread_mutex_destroy (&ds->tmp_lock);
  free (ds->path);
  free (ds);
}

void
pbs_datastore_set_client_cleanup (struct pbs_datastore *ds, bool on)
{
  ds->client_cleanup = on;
}

void
pbs_datastore_set_sync (struct pbs_datastore *ds, enum pbs_sync_level level)
{
  ds->sync = level == PBS_SYNC_FILESYSTEM ? PBS_DS_SYNC_FILESYSTEM
             : level == PBS_SYNC_NONE     ? PBS_DS_SYNC_NONE
                                          : PBS_DS_SYNC_OWN;
}

/* ------------------------------------------------------------ helpers */

int
pbs__ds_open_dir (int dirfd, const char *name, const char *shown, bool create,
                  bool *created)
{
  struct stat st;
  int fd, e;

  if (created)
    *created = false;
  if (create) {
    if (mkdirat (dirfd, name, 0755) == 0) {
      if (created)
        *created = true;
    } else if (errno != EEXIST) {
      pbs__set_error (errno, "%s: %s", shown, strerror (errno));
      return -1;
    }
  }
  fd = openat (dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd >= 0)
    return fd;
  e = errno;
  if ((e == ELOOP || e == ENOTDIR) &&
      fstatat (dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
      S_ISLNK (st.st_mode)) {
    pbs__set_error (ELOOP, "%s is a symlink; a datastore holds none, so it "
                    "is not followed (remove it)", shown);
    return -1;
  }
  pbs__set_error (e, "%s: %s", shown, strerror (e));
  return -1;
}

int
pbs__ds_open_path (struct pbs_datastore *ds, const char *rel)
{
  char *shown = NULL, *p;
  int fd = dup (ds->dirfd), next;

  if (fd == -1) {
    pbs__set_error (errno, "cannot open the datastore directory: %s",
                    strerror (errno));
    return -1;
  }
  if (!*rel)
    return fd;
  if (asprintf (&shown, "%s/%s", ds->path, rel) == -1) {
    close (fd);
    pbs__set_error (ENOMEM, "out of memory");
    return -1;
  }
  /* SHOWN is cut after each component in turn, so an error names the
   * path up to the bad one. */
  for (p = shown + strlen (ds->path) + 1;; p++) {
    if (*p == '/' || *p == 0) {
      char c = *p, *name;
      *p = 0;
      name = strrchr (shown, '/') + 1;
      next = pbs__ds_open_dir (fd, name, shown, false, NULL);
      close (fd);
      fd = next;
      *p = c;
      if (fd == -1 || !c)
        break;
    }
  }
  free (shown);
  return fd;
}


static bool
digits (const char *s, size_t n)
{
  size_t i;
  for (i = 0; i < n; i++)
    if (s[i] < '0' || s[i] > '9')
      return false;
  return true;
}

int
pbs__ds_parse_snapshot_name (const char *name, int64_t *t)
{
  struct tm tm = {0};
  char back[32];
  time_t tt;

  if (strlen (name) != 20 || !digits (name, 4) || name[4] != '-' ||
      !digits (name + 5, 2) || name[7] != '-' || !digits (name + 8, 2) ||
      name[10] != 'T' || !digits (name + 11, 2) || name[13] != ':' ||
      !digits (name + 14, 2) || name[16] != ':' || !digits (name + 17, 2) ||
      name[19] != 'Z')
    return -1;
  tm.tm_year = (name[0] - '0') * 1000 + (name[1] - '0') * 100 +
               (name[2] - '0') * 10 + (name[3] - '0') - 1900;
  tm.tm_mon = (name[5] - '0') * 10 + (name[6] - '0') - 1;
  tm.tm_mday = (name[8] - '0') * 10 + (name[9] - '0');
  tm.tm_hour = (name[11] - '0') * 10 + (name[12] - '0');
  tm.tm_min = (name[14] - '0') * 10 + (name[15] - '0');
  tm.tm_sec = (name[17] - '0') * 10 + (name[18] - '0');
  tt = timegm (&tm);
  /* Round trip, so "2024-02-31T..." is not silently another day. */
  if (!gmtime_r (&tt, &tm) ||
      strftime (back, sizeof back, "%Y-%m-%dT%H:%M:%SZ", &tm) != 20 ||
      strcmp (back, name) != 0)
    return -1;
  *t = (int64_t)tt;
  return 0;
}

char *
pbs__ds_ns_path (const char *ns)
{
  size_t n, cap;
  char *out, *o;
  const char *p;

  if (!ns)
    ns = "";
  if (!pbs_valid_ns (ns)) {
    pbs__set_error (EINVAL, "invalid namespace '%s'", ns);
    return NULL;
  }
  n = strlen (ns);
  cap = n * 4 + 8;
  out = malloc (cap);
  if (!out) {
    pbs__set_error (ENOMEM, "out of memory");
    return NULL;
  }
  o = out;
  *o = 0;
  for (p = ns; *p;) {
    const char *e = strchr (p, '/');
    size_t len = e ? (size_t)(e - p) : strlen (p);
    if (o != out)
      *o++ = '/';
    memcpy (o, "ns/", 3);
    o += 3;
    memcpy (o, p, len);
    o += len;
    *o = 0;
    p += len;
    if (*p == '/')
      p++;
  }
  return out;
}

char *
pbs__ds_group_path (struct pbs_datastore *ds, const char *ns, const char *type,
                    const char *id)
{
  char *nsp = pbs__ds_ns_path (ns), *out = NULL;

  if (!nsp)
    return NULL;
  if (asprintf (&out, "%s/%s%s%s/%s", ds->path, nsp, *nsp ? "/" : "", type,
                id) == -1) {
    out = NULL;
    pbs__set_error (ENOMEM, "out of memory");
  }
  free (nsp);
  return out;
}

int
pbs__ds_read_file (const char *path, size_t max, uint8_t **data, size_t *len)
{
  struct stat st;
  uint8_t *buf = NULL;
  size_t done = 0;
  /* The last component may be a planted symlink: never followed. */
  int fd = open (path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);

  if (fd == -1 && errno == ELOOP) {
    pbs__set_error (ELOOP, "%s is a symlink; a datastore holds none, so it "
                    "is not followed (remove it)", path);
    return -1;
  }
  if (fd == -1) {
    pbs__set_error (errno, "%s: %s", path, strerror (errno));
    return -1;
  }
  if (fstat (fd, &st) == -1) {
    pbs__set_error (errno, "%s: %s", path, strerror (errno));
    goto err;
  }
  if (!S_ISREG (st.st_mode)) {
    pbs__set_error (EINVAL, "%s: not a regular file", path);
    goto err;
  }
  if ((uint64_t)st.st_size > max) {
    pbs__set_error (EFBIG, "%s: file too large (%lld bytes)", path,
                    (long long)st.st_size);
    goto err;
  }
  buf = malloc (st.st_size ? (size_t)st.st_size : 1);
  if (!buf) {
    pbs__set_error (ENOMEM, "out of memory");
    goto err;
  }
  while (done < (size_t)st.st_size) {
    ssize_t r = read (fd, buf + done, (size_t)st.st_size - done);
    if (r == -1 && errno == EINTR)
      continue;
    if (r <= 0) {
      pbs__set_error (r == 0 ? EIO : errno, "%s: %s", path,
                      r == 0 ? "file shrank while reading" : strerror (errno));
      goto err;
    }
    done += (size_t)r;
  }
  close (fd);
  *data = buf;
  *len = done;
  return 0;
err:
  free (buf);
  close (fd);
  return -1;
}

int
pbs__ds_write_all (int fd, const uint8_t *p, size_t len, uint64_t off)
{
  while (len > 0) {
    ssize_t r = pwrite (fd, p, len, (off_t)off);
    if (r == -1 && errno == EINTR)
      continue;
    if (r == -1)
      return -1;
    if (r == 0) {
      errno = EIO;
      return -1;
    }
    p += r;
    len -= (size_t)r;
    off += (uint64_t)r;
  }
  return 0;
}

int
pbs__ds_replace_file (const char *dir, const char *name, const uint8_t *data,
                      size_t len, bool sync)
{
  char *tmp = NULL, *dst = NULL;
  int fd = -1, r = -1;

  if (asprintf (&tmp, "%s/.%s.tmp_XXXXXX", dir, name) == -1 ||
      asprintf (&dst, "%s/%s", dir, name) == -1) {
    pbs__set_error (ENOMEM, "out of memory");
    tmp = dst = NULL;
    goto out;
  }
  fd = mkostemp (tmp, O_CLOEXEC);
  if (fd == -1) {
    pbs__set_error (errno, "%s: %s", dst, strerror (errno));
    goto out;
  }
  /* mkostemp makes 0600; blobs are world-readable on PBS (0644). */
  if (fchmod (fd, 0644) == -1 || pbs__ds_write_all (fd, data, len, 0) == -1 ||
      (sync && fsync (fd) == -1) || close (fd) == -1) {
    int e = errno;
    fd = -1;
    unlink (tmp);
    pbs__set_error (e, "%s: %s", dst, strerror (e));
    goto out;
  }
  fd = -1;
  if (rename (tmp, dst) == -1) {
    int e = errno;
    unlink (tmp);
    pbs__set_error (e, "%s: %s", dst, strerror (e));
    goto out;
  }
  r = 0;
out:
  if (fd >= 0) {
    close (fd);
    unlink (tmp);
  }
  free (tmp);
  free (dst);
  return r;
}

void
pbs__ds_prefix_error (const char *prefix)
{
  char msg[512];
  int e = pbs_errno ();

  /* Copy first: the message lives in the buffer we are about to fill. */
  snprintf (msg, sizeof msg, "%s", pbs_errmsg ());
  pbs__set_error (e, "%s%s", prefix, msg);
}

struct pbs_manifest *
pbs__ds_manifest_from_blob (const uint8_t *blob, size_t len, const char *what)
{
  uint8_t *json = NULL;
  size_t jlen = 0;
  struct pbs_manifest *m;
  int kind = pbs_blob_kind (blob, len);

  if (kind == PBS_BLOB_ENCRYPTED || kind == PBS_BLOB_ENCRYPTED_ZSTD) {
    pbs__set_error (EBADMSG, "%s: manifest blob is encrypted", what);
    return NULL;
  }
  if (pbs_blob_decode (blob, len, NULL, PBS_BLOB_MAX_ENCODED * 8, &json,
                       &jlen) == -1)
    return NULL;
  m = pbs_manifest_parse ((const char *)json, jlen, NULL,
                          PBS_MANIFEST_NO_VERIFY);
  free (json);
  return m;
}

/* PBS's UPID regex, reduced to its shape: UPID:node:pid:pstart:task_id:
 * starttime:worker_type:worker_id:authid: (9 fields, trailing colon). */
static bool
upid_shaped (const char *s)
{
  int fields = 0;
  const char *p;

  if (strncmp (s, "UPID:", 5) != 0)
    return false;
  for (p = s + 5; *p; p++) {
    if (*p == ':')
      fields++;
    else if (*p == ' ' || *p == '\t' || *p == '\n')
      return false;
  }
  return fields == 8 && p[-1] == ':';
}

const char *
pbs__ds_verify_state (const struct pbs_manifest *m)
{
  char *text = pbs_manifest_get_unprotected (m, "verify_state");
  const char *state = NULL;
  json_t *v, *st, *upid;

  if (!text)
    return NULL;
  v = json_loads (text, 0, NULL);
  free (text);
  if (!v)
    return NULL;
  st = json_object_get (v, "state");
  upid = json_object_get (v, "upid");
  /* PBS deserialises {upid, state} strictly; anything else is "no verify
   * state" and the snapshot stays a valid base (§8b). */
  if (json_is_string (st) && json_is_string (upid) &&
      upid_shaped (json_string_value (upid))) {
    if (strcmp (json_string_value (st), "ok") == 0)
      state = "ok";
    else if (strcmp (json_string_value (st), "failed") == 0)
      state = "failed";
  }
  json_decref (v);
  return state;
}

int
pbs__ds_update_unprotected (struct pbs_datastore *ds, const char *dir,
                            struct pbs_manifest *m, const char *key,
                            const char *value)
{
  char *json = NULL;
  uint8_t *blob = NULL;
  size_t blen;
  int r = -1;

  if (pbs_manifest_set_unprotected (m, key, value) == -1
      || pbs_manifest_to_json (m, NULL, &json) == -1
      || pbs_blob_encode (json, strlen (json), NULL, true, &blob, &blen) == -1
      || pbs__ds_replace_file (dir, PBS_MANIFEST_NAME, blob, blen,
                               ds->sync != PBS_DS_SYNC_NONE)
             == -1)
    pbs__ds_prefix_error ("unable to update manifest blob - ");
  else
    r = 0;
  free (json);
  free (blob);
  return r;
}
