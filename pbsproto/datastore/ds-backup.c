/* ds-backup.c -- the server side of PBS's backup protocol
 * (docs/pbs-protocol.md §3, §4) over a datastore directory: PBS's
 * BackupEnvironment plus the checks of
 * src/api2/backup/{mod.rs,upload_chunk.rs} for image (fixed index) backups,
 * with PBS's error texts and HTTP status codes.
 *
 * Parameter names are the HTTP layer's business; values are checked here,
 * so the local backend and the HTTPS test server enforce the same rules.
 *
 * Deliberate difference from PBS: an uploaded index.json.blob is kept in
 * memory and written only by finish, after syncfs().  On PBS the uploaded
 * manifest sits in the snapshot directory between "POST blob" and "POST
 * finish", so a server crash in between leaves a directory that counts as
 * finished.  Here a snapshot directory holds index.json.blob only when
 * everything it references is on disk. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>

#include "ends-with.h"
#include "checked-overflow.h"
#include "ds-internal.h"
#include "pbs-errors.h"

#define MAX_WID 256
#define MANIFEST_NAME "index.json.blob"
/* Largest index we read back: 4096 + 32 * chunks; 1 GiB covers 128 TiB. */
#define MAX_INDEX_FILE (1024u * 1024 * 1024)

struct upload_stat {
  uint64_t count, size, compressed_size, duplicates;
};

struct fixed_writer {
  char *name;
  char *tmp_path;
  char *final_path;
  int fd;
  struct pbs_fidx *idx;
  uint64_t size;
  uint64_t chunk_count; /* appended pairs */
  unsigned small_chunks;
  bool incremental;
  struct upload_stat stat;
};

struct pbs_ds_backup {
  struct pbs_datastore *ds;
  char *auth_id;
  char *group_path;
  char *snap_path;
  char snap_name[21];
  int group_fd, snap_fd, base_fd;
  int ns_fd, type_fd; /* to remove what a failed first push created */
  bool created_type, created_group;
  char type_name[8]; /* "vm", "ct", "host" */
  char *notes; /* what start cleaned up, one line each (pbs_ds_backup_notes) */
  bool has_base;
  int64_t base_time;
  char *base_path;
  bool created;
  bool require_chunks; /* pbs_ds_backup_require_chunks */

  pthread_mutex_t lock; /* everything below */
  bool finished;
  struct pbs__digest_set *known;
  struct fixed_writer *writers[MAX_WID + 1];
  int uid;
  size_t file_counter;
  struct upload_stat total;
  uint8_t *manifest;
  size_t manifest_len;
  uint8_t (*new_chunks)[32]; /* inserted (not duplicates), to fsync */
  size_t nnew, new_cap;
};

__attribute__ ((format (printf, 1, 2))) static void
bad (const char *fmt, ...)
{
  char msg[512];
  va_list ap;
  va_start (ap, fmt);
  vsnprintf (msg, sizeof msg, fmt, ap);
  va_end (ap);
  pbs__set_http_error (400, EINVAL, "%s", msg);
}

static void
oom (void)
{
  pbs__set_http_error (500, ENOMEM, "out of memory");
}

/* -1 (errno) after an OS error, with PBS's "<what> <path:?> - <io
 * error>"; Rust prints an io::Error as "<strerror> (os error N)". */
static void
os_error (int e, const char *what, const char *path)
{
  pbs__set_http_error (400, e, "%s \"%s\" - %s (os error %d)", what, path,
                       strerror (e), e);
}

/* The last N components of PATH ("vm/100" of ".../vm/100"). */
static const char *
path_tail (const char *path, int n)
{
  const char *p = path + strlen (path);

  while (p > path) {
    if (p[-1] == '/' && --n == 0)
      break;
    p--;
  }
  return p;
}

/* The Rust io::Error text of the failed pbs__ds_read_file: our own
 * checks (EINVAL, EFBIG) keep their text after "path: ". */
static void
read_error_text (char *buf, size_t n)
{
  int e = pbs_errno ();
  const char *m = pbs_errmsg (), *colon = strstr (m, ": ");

  if (e == EINVAL || e == EFBIG || e == ENOMEM)
    snprintf (buf, n, "%s", colon ? colon + 2 : m);
  else
    snprintf (buf, n, "%s (os error %d)", strerror (e), e);
}

/* flock FD (a directory opened without following symlinks) the way
 * lock_dir does; -1 with the same messages.  FD stays open either way. */
static int
lock_fd (int fd, const char *path, int how, const char *what,
         const char *busy)
{
  if (flock (fd, how | LOCK_NB) == -1) {
    int e = errno;
    if (e == EWOULDBLOCK)
      pbs__set_http_error (400, EBUSY,
                           "unable to acquire lock on %s directory \"%s\" - "
                           "%s",
                           what, path, busy);
    else
      pbs__set_http_error (400, e,
                           "unable to acquire lock on %s directory \"%s\" - "
                           "%s (os error %d)",
                           what, path, strerror (e), e);
    return -1;
  }
  return 0;
}

/* Open directory NAME of DIRFD (SHOWN in messages) without following a
 * symlink; as a 400 error if it fails. */
static int
open_dir_400 (int dirfd, const char *name, const char *shown, bool create,
              bool *created)
{
  int fd = pbs__ds_open_dir (dirfd, name, shown, create, created);
  if (fd == -1)
    pbs__ds_restate_error (pbs_errno () == ENOSPC ? 500 : 400, NULL);
  return fd;
}

__attribute__ ((format (printf, 2, 3))) static void
note (struct pbs_ds_backup *b, const char *fmt, ...)
{
  char line[1024], *n = NULL;
  va_list ap;

  va_start (ap, fmt);
  vsnprintf (line, sizeof line, fmt, ap);
  va_end (ap);
  if (asprintf (&n, "%s%s\n", b->notes ? b->notes : "", line) == -1)
    return; /* a lost note loses nothing else */
  free (b->notes);
  b->notes = n;
}

static void
writer_free (struct fixed_writer *w, bool remove_tmp)
{
  if (!w)
    return;
  if (w->fd >= 0)
    close (w->fd);
  if (remove_tmp && w->tmp_path)
    unlink (w->tmp_path);
  pbs_fidx_free (w->idx);
  free (w->name);
  free (w->tmp_path);
  free (w->final_path);
  free (w);
}

static int
ensure_unfinished (struct pbs_ds_backup *b)
{
  if (b->finished) {
    bad ("backup already marked as finished.");
    return -1;
  }
  return 0;
}

/* ------------------------------------------------------------- start */

static char *
read_owner (const char *group_path)
{
  char *path = NULL, *owner = NULL;
  uint8_t *data = NULL;
  size_t len = 0, n;

  if (asprintf (&path, "%s/owner", group_path) == -1) {
    oom ();
    return NULL;
  }
  /* get_owner: proxmox-sys file_read_firstline, "unable to read
   * {path:?} - {err}" */
  if (pbs__ds_read_file (path, 4096, &data, &len) == -1) {
    char detail[300];
    read_error_text (detail, sizeof detail);
    bad ("unable to read \"%s\" - %s", path, detail);
    goto out;
  }
  for (n = 0; n < len && data[n] != '\n' && data[n] != '\r'; n++)
    ;
  while (n > 0 && (data[n - 1] == ' ' || data[n - 1] == '\t'))
    n--;
  /* Authid::from_str fails without an '@' (proxmox-auth-api
   * src/types.rs); the group is printed "type/id". */
  if (n == 0 || memchr (data, 0, n) || !memchr (data, '@', n)) {
    bad ("parsing owner for %s failed: not a valid user id",
         path_tail (group_path, 2));
    goto out;
  }
  owner = strndup ((char *)data, n);
  if (!owner)
    oom ();
out:
  free (data);
  free (path);
  return owner;
}

static int
write_owner (const char *group_path, const char *auth_id)
{
  char *path = NULL;
  int fd, r = -1;
  size_t n = strlen (auth_id);

  if (asprintf (&path, "%s/owner", group_path) == -1) {
    oom ();
    return -1;
  }
  /* Exclusive create, as PBS's set_owner (force = false). */
  fd = open (path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd == -1) {
    os_error (errno, "unable to create owner file", path);
    goto out;
  }
  if (pbs__ds_write_all (fd, (const uint8_t *)auth_id, n, 0) == -1 ||
      pbs__ds_write_all (fd, (const uint8_t *)"\n", 1, n) == -1) {
    /* sic: two spaces (pbs-datastore src/datastore.rs set_owner) */
    os_error (errno, "unable to write owner file ", path);
    close (fd);
    unlink (path);
    goto out;
  }
  close (fd);
  r = 0;
out:
  free (path);
  return r;
}

/* §4.1: the owner itself, or the user of an owning token. */
static bool
owner_ok (const char *owner, const char *auth_id)
{
  const char *bang = strchr (owner, '!');
  if (strcmp (owner, auth_id) == 0)
    return true;
  return bang && strlen (auth_id) == (size_t)(bang - owner) &&
         memcmp (owner, auth_id, (size_t)(bang - owner)) == 0;
}

/* The group's last finished snapshot (greatest time with index.json.blob),
 * §4.2.  0 with *FOUND false when there is none.  A snapshot name that is
 * a symlink is an error: it is never followed. */
static int
last_finished (int group_fd, const char *group_path, int64_t *t, bool *found)
{
  int fd = dup (group_fd);
  DIR *d = fd >= 0 ? fdopendir (fd) : NULL;
  struct dirent *de;

  *found = false;
  if (!d) {
    os_error (errno, "unable to list backup group", group_path);
    if (fd >= 0)
      close (fd);
    return -1;
  }
  rewinddir (d);
  while ((de = readdir (d))) {
    int64_t st;
    char mpath[300];
    struct stat sb;
    if (pbs__ds_parse_snapshot_name (de->d_name, &st) == -1)
      continue;
    if (fstatat (group_fd, de->d_name, &sb, AT_SYMLINK_NOFOLLOW) == 0 &&
        S_ISLNK (sb.st_mode)) {
      bad ("%s/%s is a symlink; a datastore holds none, so it is not "
           "followed (remove it)", group_path, de->d_name);
      closedir (d);
      return -1;
    }
    snprintf (mpath, sizeof mpath, "%s/" MANIFEST_NAME, de->d_name);
    if (fstatat (group_fd, mpath, &sb, AT_SYMLINK_NOFOLLOW) == 0 &&
        S_ISREG (sb.st_mode) && (!*found || st > *t)) {
      *t = st;
      *found = true;
    }
  }
  closedir (d);
  return 0;
}

/* Remove the plain files of directory FD (a snapshot: only plain files
 * are ever written there; a symlink is removed, not followed). */
static void
remove_files (int fd)
{
  int dfd = dup (fd);
  DIR *d = dfd >= 0 ? fdopendir (dfd) : NULL;
  struct dirent *de;

  if (!d) {
    if (dfd >= 0)
      close (dfd);
    return;
  }
  rewinddir (d);
  while ((de = readdir (d)))
    if (strcmp (de->d_name, ".") != 0 && strcmp (de->d_name, "..") != 0)
      unlinkat (fd, de->d_name, 0);
  closedir (d);
}

/* Before a push into an existing group (locked by us): remove every
 * unfinished snapshot (no manifest) whose lock nobody holds -- what a push
 * killed with SIGKILL or a crash leaves; a live session holds its
 * snapshot's lock, and such a snapshot is left alone.  Then a group
 * without an owner file and without anything else (a first push that
 * failed before our cleanup existed, e.g. on a full disk) is taken over:
 * 1 is returned and the caller writes the owner.  0: a normal group; -1:
 * error.  Each removal is a note. */
static int
tidy_group (struct pbs_ds_backup *b, const char *type, const char *id)
{
  int fd = dup (b->group_fd);
  DIR *d = fd >= 0 ? fdopendir (fd) : NULL;
  struct dirent *de;
  struct stat st;
  bool has_owner;
  size_t others = 0;

  if (!d) {
    os_error (errno, "unable to list backup group", b->group_path);
    if (fd >= 0)
      close (fd);
    return -1;
  }
  rewinddir (d);
  has_owner = fstatat (b->group_fd, "owner", &st, AT_SYMLINK_NOFOLLOW) == 0;
  while ((de = readdir (d))) {
    int64_t t;
    int sfd;
    char mpath[300];

    if (strcmp (de->d_name, ".") == 0 || strcmp (de->d_name, "..") == 0 ||
        strcmp (de->d_name, "owner") == 0)
      continue;
    others++;
    if (pbs__ds_parse_snapshot_name (de->d_name, &t) == -1)
      continue;
    snprintf (mpath, sizeof mpath, "%s/" MANIFEST_NAME, de->d_name);
    if (fstatat (b->group_fd, mpath, &st, AT_SYMLINK_NOFOLLOW) == 0)
      continue; /* finished */
    sfd = openat (b->group_fd, de->d_name,
                  O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (sfd == -1)
      continue; /* a symlink or a file: last_finished names it */
    if (flock (sfd, LOCK_EX | LOCK_NB) == 0) {
      remove_files (sfd);
      if (unlinkat (b->group_fd, de->d_name, AT_REMOVEDIR) == 0) {
        note (b, "removed unfinished snapshot %s/%s/%s (left by an "
              "interrupted backup; no process held it)",
              type, id, de->d_name);
        others--;
      }
    }
    close (sfd); /* drops our lock */
  }
  closedir (d);
  if (has_owner || others)
    return 0;
  note (b, "group %s/%s had no owner file and no snapshots (left by a "
        "failed first backup): taking it over", type, id);
  return 1;
}

struct pbs_ds_backup *
pbs_ds_backup_start (struct pbs_datastore *ds, const char *auth_id,
                     const char *ns, const char *type, const char *id,
                     int64_t time)
{
  struct pbs_ds_backup *b = NULL;
  char *nsp = NULL, *nsdir = NULL, *typedir = NULL, *owner = NULL;
  bool created_group = false;
  int64_t last = 0;
  bool found;

  if (!ns)
    ns = "";
  if (!auth_id || !*auth_id || !strchr (auth_id, '@')) {
    bad ("invalid auth id");
    return NULL;
  }
  if (!type || !pbs_valid_backup_type (type)) {
    bad ("parameter verification failed - 'backup-type': value '%s' is not "
         "defined in the enumeration.",
         type ? type : "");
    return NULL;
  }
  if (!id || !pbs_valid_backup_id (id)) {
    bad ("parameter verification failed - 'backup-id': value does not match "
         "the regex pattern");
    return NULL;
  }
  if (time < 1) {
    bad ("parameter verification failed - 'backup-time': value must have a "
         "minimum value of 1 (got %" PRId64 ")",
         time);
    return NULL;
  }
  /* No snapshot name for it (PBS fails formatting the time as well). */
  if (time > PBS_TIME_MAX) {
    bad ("parameter verification failed - 'backup-time': %" PRId64
         " is after 9999-12-31T23:59:59Z",
         time);
    return NULL;
  }
  nsp = pbs__ds_ns_path (ns);
  if (!nsp) {
    bad ("parameter verification failed - 'ns': invalid namespace '%s'", ns);
    return NULL;
  }
  /* §1.3 step 7; this API has no benchmark flag, i.e. benchmark=false. */
  if (strcmp (type, "host") == 0 && strcmp (id, "benchmark") == 0) {
    free (nsp);
    bad ("unable to run benchmark without --benchmark flags");
    return NULL;
  }

  b = calloc (1, sizeof *b);
  if (!b) {
    free (nsp);
    oom ();
    return NULL;
  }
  b->ds = ds;
  b->group_fd = b->snap_fd = b->base_fd = b->ns_fd = b->type_fd = -1;
  pthread_mutex_init (&b->lock, NULL);
  b->auth_id = strdup (auth_id);
  b->known = pbs__digest_set_new ();
  if (!b->auth_id || !b->known ||
      asprintf (&nsdir, "%s%s%s", ds->path, *nsp ? "/" : "", nsp) == -1 ||
      asprintf (&typedir, "%s/%s", nsdir, type) == -1) {
    nsdir = typedir = NULL;
    oom ();
    goto err;
  }
  /* Walk from the datastore root without following a symlink: one
   * planted inside would send the snapshot's files elsewhere. */
  b->ns_fd = pbs__ds_open_path (ds, nsp);
  if (b->ns_fd == -1) {
    if (pbs_errno () == ENOENT || pbs_errno () == ENOTDIR)
      pbs__set_http_error (404, ENOENT, "namespace not found");
    else
      pbs__ds_restate_error (400, NULL);
    goto err;
  }
  snprintf (b->type_name, sizeof b->type_name, "%s", type);
  b->type_fd = open_dir_400 (b->ns_fd, type, typedir, true, &b->created_type);
  if (b->type_fd == -1)
    goto err;
  b->group_path = pbs__ds_group_path (ds, ns, type, id);
  if (!b->group_path)
    goto err;
  b->group_fd = open_dir_400 (b->type_fd, id, b->group_path, true,
                              &created_group);
  if (b->group_fd == -1)
    goto err;
  if (lock_fd (b->group_fd, b->group_path, LOCK_EX, "backup group",
               "another backup is already running") == -1) {
    created_group = false; /* someone else's: never removed by us */
    goto err;
  }
  b->created_group = created_group;
  if (!created_group && ds->client_cleanup) {
    int t = tidy_group (b, type, id);
    if (t == -1)
      goto err;
    if (t == 1)
      created_group = b->created_group = true;
  }
  if (created_group && write_owner (b->group_path, auth_id) == -1)
    goto err;
  owner = read_owner (b->group_path);
  if (!owner)
    goto err;
  if (!owner_ok (owner, auth_id)) {
    pbs__set_http_error (400, EACCES, "backup owner check failed (%s != %s)",
                         auth_id, owner);
    goto err;
  }

  if (last_finished (b->group_fd, b->group_path, &last, &found) == -1)
    goto err;
  if (found) {
    char name[21], *mpath = NULL;
    uint8_t *blob = NULL;
    size_t blen = 0;
    struct pbs_manifest *m;

    pbs_time_to_rfc3339 (last, name);
    if (asprintf (&b->base_path, "%s/%s", b->group_path, name) == -1 ||
        asprintf (&mpath, "%s/" MANIFEST_NAME, b->base_path) == -1) {
      b->base_path = NULL;
      oom ();
      goto err;
    }
    /* load_manifest -> load_blob (pbs-datastore src/backup_info.rs) */
    if (pbs__ds_read_file (mpath, PBS_BLOB_MAX_ENCODED, &blob, &blen) == -1) {
      char detail[300];
      read_error_text (detail, sizeof detail);
      bad ("unable to load blob '\"%s\"' - %s", mpath, detail);
      free (mpath);
      goto err;
    }
    m = pbs__ds_manifest_from_blob (blob, blen, mpath);
    free (blob);
    free (mpath);
    if (!m) {
      bad ("unable to load manifest of last backup - %s", pbs_errmsg ());
      goto err;
    }
    /* Trap 14: a failed last verify means no base at all. */
    b->has_base = !(pbs__ds_verify_state (m) &&
                    strcmp (pbs__ds_verify_state (m), "failed") == 0);
    pbs_manifest_free (m);
    b->base_time = last;
  }
  if (b->has_base) {
    if (time <= b->base_time) {
      bad ("backup timestamp is older than last backup.");
      goto err;
    }
    /* Keep the base from being pruned while it is referenced. */
    b->base_fd = open_dir_400 (b->group_fd, path_tail (b->base_path, 1),
                               b->base_path, false, NULL);
    if (b->base_fd == -1 ||
        lock_fd (b->base_fd, b->base_path, LOCK_SH, "snapshot",
                 "base snapshot is already locked by another operation") ==
            -1)
      goto err;
  } else {
    free (b->base_path);
    b->base_path = NULL;
  }

  pbs_time_to_rfc3339 (time, b->snap_name);
  if (asprintf (&b->snap_path, "%s/%s", b->group_path, b->snap_name) == -1) {
    b->snap_path = NULL;
    oom ();
    goto err;
  }
  if (mkdirat (b->group_fd, b->snap_name, 0755) == -1) {
    if (errno == EEXIST)
      pbs__set_http_error (400, EEXIST, "backup directory already exists.");
    else /* create_locked_backup_dir: the bare io::Error */
      pbs__set_http_error (400, errno, "%s (os error %d)", strerror (errno),
                           errno);
    goto err;
  }
  b->created = true;
  b->snap_fd = open_dir_400 (b->group_fd, b->snap_name, b->snap_path, false,
                             NULL);
  if (b->snap_fd == -1 ||
      lock_fd (b->snap_fd, b->snap_path, LOCK_EX, "snapshot",
               "internal error - tried creating snapshot that's already in "
               "use") == -1)
    goto err;
  free (nsp);
  free (nsdir);
  free (typedir);
  free (owner);
  return b;
err:
  free (nsp);
  free (nsdir);
  free (typedir);
  free (owner);
  pbs_ds_backup_end (b);
  return NULL;
}

const char *
pbs_ds_backup_notes (const struct pbs_ds_backup *b)
{
  return b ? b->notes : NULL;
}

int
pbs_ds_backup_previous_time (struct pbs_ds_backup *b, int64_t *out)
{
  *out = b->has_base ? b->base_time : -1;
  return 0;
}

/* Read NAME of the base snapshot.  MISSING_STATUS: the HTTP status for an
 * absent file. */
static int
read_base_file (struct pbs_ds_backup *b, const char *name, size_t max,
                uint8_t **data, size_t *len)
{
  char *path = NULL;
  int r;

  if (asprintf (&path, "%s/%s", b->base_path, name) == -1) {
    oom ();
    return -1;
  }
  r = pbs__ds_read_file (path, max, data, len);
  free (path);
  return r;
}

int
pbs_ds_backup_previous (struct pbs_ds_backup *b, const char *name,
                        uint8_t **data, size_t *len)
{
  struct pbs_fidx *idx;
  size_t i;
  int r = -1;

  if (!name || !pbs_valid_safe_id (name)) {
    bad ("parameter verification failed - 'archive-name': value does not "
         "match the regex pattern");
    return -1;
  }
  if (!b->has_base) {
    pbs__set_http_error (400, ENOENT, "no valid previous backup");
    return -1;
  }
  if (ends_with (name, ".blob")) {
    /* src/api2/helpers.rs create_download_response */
    if (read_base_file (b, name, PBS_BLOB_MAX_ENCODED, data, len) == -1) {
      char detail[300];
      if (pbs_errno () == ENOENT)
        pbs__set_http_error (404, ENOENT,
                             "open file \"%s/%s\" failed - not found",
                             b->base_path, name);
      else {
        int e = pbs_errno ();
        read_error_text (detail, sizeof detail);
        pbs__set_http_error (400, e, "open file \"%s/%s\" failed: %s",
                             b->base_path, name, detail);
      }
      return -1;
    }
    return 0;
  }
  if (ends_with (name, ".didx")) {
    bad ("dynamic indexes are not supported by this datastore");
    return -1;
  }
  if (!ends_with (name, ".fidx")) {
    /* ArchiveType::from_path prints the name with {:?} */
    bad ("unknown archive type: \"%s\"", name);
    return -1;
  }
  /* FixedIndexReader::open: one prefix for open and parse errors */
  if (read_base_file (b, name, MAX_INDEX_FILE, data, len) == -1) {
    char detail[300];
    int e = pbs_errno ();
    read_error_text (detail, sizeof detail);
    pbs__set_http_error (400, e, "Unable to open fixed index \"%s/%s\" - %s",
                         b->base_path, name, detail);
    return -1;
  }
  idx = pbs_fidx_parse (*data, *len);
  if (!idx) {
    bad ("Unable to open fixed index \"%s/%s\" - %s", b->base_path, name,
         pbs_errmsg ());
    goto out;
  }
  pthread_mutex_lock (&b->lock);
  if (ensure_unfinished (b) == 0) {
    /* §3.2: each digest becomes known with its length in this index. */
    for (i = 0; i < idx->count; i++) {
      uint64_t start = (uint64_t)i * idx->chunk_size;
      uint64_t l = idx->size - start;
      if (l > idx->chunk_size)
        l = idx->chunk_size;
      if (pbs__digest_set_put (b->known, idx->digest[i], (uint32_t)l) == -1)
        break;
    }
    r = i == idx->count ? 0 : -1;
  }
  pthread_mutex_unlock (&b->lock);
  pbs_fidx_free (idx);
out:
  if (r == -1) {
    free (*data);
    *data = NULL;
  }
  return r;
}

/* -------------------------------------------------------- fixed index */

int
pbs_ds_backup_fixed_index (struct pbs_ds_backup *b, const char *name,
                           uint64_t size, const char *reuse_csum)
{
  struct fixed_writer *w = NULL;
  struct pbs_fidx *base = NULL;
  uint8_t *enc = NULL;
  size_t enclen = 0;
  int wid = -1;

  if (!name || !pbs_valid_safe_id (name)) {
    bad ("parameter verification failed - 'archive-name': value does not "
         "match the regex pattern");
    return -1;
  }
  if (size < 1 || size > INT64_MAX) {
    bad ("parameter verification failed - 'size': value must have a minimum "
         "value of 1 (got %" PRIu64 ")",
         size);
    return -1;
  }
  if (!ends_with (name, ".fidx")) {
    bad ("wrong archive extension: '%s'", name);
    return -1;
  }

  pthread_mutex_lock (&b->lock);
  if (ensure_unfinished (b) == -1)
    goto out;
  if (reuse_csum) {
    uint8_t *data = NULL, csum[32];
    size_t len = 0;
    char hex[65];

    if (!b->has_base) {
      bad ("cannot reuse index - no valid previous backup exists");
      goto out;
    }
    if (read_base_file (b, name, MAX_INDEX_FILE, &data, &len) == 0)
      base = pbs_fidx_parse (data, len);
    if (!base) {
      free (data);
      bad ("cannot reuse index - no previous backup exists for archive");
      goto out;
    }
    free (data);
    pbs_fidx_csum (base, csum);
    pbs_digest_hex (csum, hex);
    /* A string comparison with the lower-case hex, as PBS does: an
     * upper-case reuse-csum never matches. */
    if (strcmp (hex, reuse_csum) != 0) {
      bad ("expected csum (%s) doesn't match last backup's (%s), cannot do "
           "incremental backup",
           reuse_csum, hex);
      goto out;
    }
  }
  if (b->uid >= MAX_WID) {
    bad ("too many index writers in one backup session");
    goto out;
  }

  w = calloc (1, sizeof *w);
  if (!w) {
    oom ();
    goto out;
  }
  w->fd = -1;
  w->size = size;
  w->incremental = reuse_csum != NULL;
  w->name = strdup (name);
  if (!w->name ||
      asprintf (&w->tmp_path, "%s/%.*s.tmp_fidx", b->snap_path,
                (int)(strlen (name) - 5), name) == -1 ||
      asprintf (&w->final_path, "%s/%s", b->snap_path, name) == -1) {
    oom ();
    goto out;
  }
  w->idx = pbs_fidx_new (size, PBS_CHUNK_SIZE);
  if (!w->idx)
    goto out;
  if (base) {
    if (base->count != w->idx->count) {
      bad ("clone_data_from failed - index sizes not equal");
      goto out;
    }
    memcpy (w->idx->digest, base->digest, base->count * (size_t)32);
  }
  /* Like PBS's FixedIndexWriter: the .tmp_fidx exists from now on, with
   * header and digest slots, so a full disk shows up here already. */
  if (pbs_fidx_encode (w->idx, &enc, &enclen) == -1)
    goto out;
  w->fd = open (w->tmp_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (w->fd == -1) {
    os_error (errno, "unable to create fixed index", w->tmp_path);
    goto out;
  }
  if (pbs__ds_write_all (w->fd, enc, enclen, 0) == -1) {
    os_error (errno, "unable to write fixed index", w->tmp_path);
    goto out;
  }
  wid = ++b->uid;
  b->writers[wid] = w;
  w = NULL;
out:
  pthread_mutex_unlock (&b->lock);
  writer_free (w, true);
  pbs_fidx_free (base);
  free (enc);
  return wid;
}

static bool
wid_in_range (int wid)
{
  if (wid < 1 || wid > MAX_WID) {
    bad ("parameter verification failed - 'wid': value must have a %s value "
         "of %d (got %d)",
         wid < 1 ? "minimum" : "maximum", wid < 1 ? 1 : MAX_WID, wid);
    return false;
  }
  return true;
}

static size_t
blob_header_len (int kind)
{
  return kind == PBS_BLOB_ENCRYPTED || kind == PBS_BLOB_ENCRYPTED_ZSTD
             ? PBS_BLOB_ENCRYPTED_HEADER_LEN
             : PBS_BLOB_HEADER_LEN;
}

/* The rules on a chunk's announced sizes and its blob header that hold
 * whoever hands the chunk in (PBS's parameter schema of upload_chunk and
 * DataBlob's header checks).  *KIND and *HDR: the blob's kind and header
 * length. */
static int
check_chunk_shape (uint64_t size, uint64_t encoded_size, const uint8_t *blob,
                   size_t len, int *kind, size_t *hdr)
{
  if (size < 1 || size > PBS_CHUNK_MAX_RAW) {
    bad ("parameter verification failed - 'size': value must have a %s value "
         "of %u (got %" PRIu64 ")",
         size < 1 ? "minimum" : "maximum", size < 1 ? 1 : PBS_CHUNK_MAX_RAW,
         size);
    return -1;
  }
  if (encoded_size < 13 || encoded_size > PBS_BLOB_MAX_ENCODED) {
    bad ("parameter verification failed - 'encoded-size': value must have a "
         "%s value of %u (got %" PRIu64 ")",
         encoded_size < 13 ? "minimum" : "maximum",
         encoded_size < 13 ? 13 : PBS_BLOB_MAX_ENCODED, encoded_size);
    return -1;
  }
  if (len > encoded_size) {
    bad ("uploaded chunk is larger than announced.");
    return -1;
  }
  if (len != encoded_size) {
    bad ("uploaded chunk has unexpected size.");
    return -1;
  }
  *kind = pbs_blob_kind (blob, len);
  if (*kind < 0) {
    bad ("unable to parse raw blob - wrong magic");
    return -1;
  }
  *hdr = blob_header_len (*kind);
  if (len < *hdr) {
    bad ("encrypted blob too small (%zu bytes).", len);
    return -1;
  }
  return 0;
}

/* Store a checked chunk and register it with writer WID: the part of
 * §3.4 after the content checks, the same for both entries. */
static int
store_chunk (struct pbs_ds_backup *b, int wid, const uint8_t digest[32],
             uint64_t size, const uint8_t *blob, size_t len)
{
  struct fixed_writer *w;
  bool dup = false;
  int r = -1;

  /* Stored before the writer is looked up, as PBS does: a bad wid still
   * leaves the chunk in the store. */
  if (pbs_datastore_insert_chunk (b->ds, digest, blob, len, &dup) == -1) {
    pbs__ds_restate_error (pbs_errno () == ENOSPC ? 500 : 400, NULL);
    return -1;
  }

  pthread_mutex_lock (&b->lock);
  if (ensure_unfinished (b) == -1)
    goto unlock;
  w = b->writers[wid];
  if (!w) {
    bad ("fixed writer '%d' not registered", wid);
    goto unlock;
  }
  if (size > PBS_CHUNK_SIZE) {
    /* PBS's text lacks the closing parenthesis; kept verbatim. */
    bad ("fixed writer '%s' - got large chunk (%" PRIu64 " > %u", w->name, size,
         PBS_CHUNK_SIZE);
    goto unlock;
  }
  if (size < PBS_CHUNK_SIZE && ++w->small_chunks > 1) {
    bad ("fixed writer '%d' - detected multiple end chunks (chunk size too "
         "small)",
         wid);
    goto unlock;
  }
  w->stat.count++;
  w->stat.size += size;
  w->stat.compressed_size += len;
  if (dup)
    w->stat.duplicates++;
  else if (b->ds->sync == PBS_DS_SYNC_OWN) {
    if (b->nnew == b->new_cap) {
      size_t cap = b->new_cap ? b->new_cap * 2 : 64;
      uint8_t (*v)[32] = realloc (b->new_chunks, cap * sizeof *v);
      if (!v) {
        oom ();
        goto unlock;
      }
      b->new_chunks = v;
      b->new_cap = cap;
    }
    memcpy (b->new_chunks[b->nnew++], digest, 32);
  }
  if (pbs__digest_set_put (b->known, digest, (uint32_t)size) == -1)
    goto unlock;
  r = 0;
unlock:
  pthread_mutex_unlock (&b->lock);
  return r;
}

int
pbs_ds_backup_fixed_chunk (struct pbs_ds_backup *b, int wid,
                           const char *digest_hex, uint64_t size,
                           uint64_t encoded_size, const uint8_t *blob,
                           size_t len)
{
  uint8_t digest[32], *copy = NULL;
  size_t hdr;
  uint32_t crc;
  int kind, r = -1;

  if (!wid_in_range (wid))
    return -1;
  if (!pbs__ds_is_lower_hex64 (digest_hex)) {
    bad ("parameter verification failed - 'digest': value does not match "
         "the regex pattern");
    return -1;
  }
  if (check_chunk_shape (size, encoded_size, blob, len, &kind, &hdr) == -1)
    return -1;
  pbs_digest_parse (digest_hex, digest);
  /* Trap 7: the server ignores the uploaded CRC and stores its own.  The
   * blob is copied only when the uploaded CRC is wrong. */
  crc = (uint32_t)crc32 (0L, blob + hdr, (uInt)(len - hdr));
  if (crc != ((uint32_t)blob[8] | (uint32_t)blob[9] << 8 |
              (uint32_t)blob[10] << 16 | (uint32_t)blob[11] << 24)) {
    copy = malloc (len);
    if (!copy) {
      oom ();
      return -1;
    }
    memcpy (copy, blob, len);
    copy[8] = crc & 0xff;
    copy[9] = (crc >> 8) & 0xff;
    copy[10] = (crc >> 16) & 0xff;
    copy[11] = (crc >> 24) & 0xff;
    blob = copy;
  }

  if (kind == PBS_BLOB_PLAIN || kind == PBS_BLOB_ZSTD) {
    uint8_t *data = NULL, check[32];
    const uint8_t *p = blob + hdr;
    size_t dlen = len - hdr;

    /* A plain payload is the data itself: no decode, no second CRC. */
    if (kind == PBS_BLOB_ZSTD) {
      if (pbs_blob_decode (blob, len, NULL, PBS_CHUNK_MAX_RAW, &data,
                           &dlen) == -1) {
        bad ("%s", pbs_errmsg ());
        goto out;
      }
      p = data;
    }
    pbs_chunk_digest (NULL, p, dlen, check);
    free (data);
    if (memcmp (check, digest, 32) != 0) {
      bad ("detected chunk with wrong digest.");
      goto out;
    }
    if (dlen != size) {
      bad ("detected chunk with wrong length (%" PRIu64 " != %zu)", size, dlen);
      goto out;
    }
  }
  r = store_chunk (b, wid, digest, size, blob, len);
out:
  free (copy);
  return r;
}

int
pbs_ds_backup_fixed_chunk_trusted (struct pbs_ds_backup *b, int wid,
                                   const uint8_t digest[32], uint64_t size,
                                   const uint8_t *blob, size_t len)
{
  size_t hdr;
  int kind;

  if (!wid_in_range (wid) ||
      check_chunk_shape (size, len, blob, len, &kind, &hdr) == -1)
    return -1;
  return store_chunk (b, wid, digest, size, blob, len);
}

/* PBS's FixedIndexWriter::check_chunk_alignment (END = offset + length). */
static int
check_alignment (struct fixed_writer *w, uint64_t offset, uint32_t clen,
                 size_t *slot)
{
  uint64_t end;

  if (ADD_OVERFLOW (offset, (uint64_t)clen, &end) || end > w->size) {
    bad ("chunk data exceeds size (%" PRIu64 " >= %" PRIu64 ")",
         ADD_OVERFLOW (offset, (uint64_t)clen, &end) ? UINT64_MAX : end,
         w->size);
    return -1;
  }
  if ((end != w->size && clen != PBS_CHUNK_SIZE) || clen > PBS_CHUNK_SIZE ||
      clen == 0) {
    bad ("chunk with unexpected length (%" PRIu32 " != %u", clen,
         PBS_CHUNK_SIZE);
    return -1;
  }
  if (offset % PBS_CHUNK_SIZE != 0) {
    bad ("got unaligned chunk (pos = %" PRIu64 ")", offset);
    return -1;
  }
  *slot = (size_t)(offset / PBS_CHUNK_SIZE);
  if (*slot >= w->idx->count) {
    bad ("add digest failed - index out of range (%zu >= %zu)", *slot,
         w->idx->count);
    return -1;
  }
  return 0;
}

int
pbs_ds_backup_fixed_append_lists (struct pbs_ds_backup *b, int wid,
                                  size_t ndigests,
                                  const char *const *digest_hex,
                                  size_t noffsets, const uint64_t *offsets)
{
  size_t i;

  if (!wid_in_range (wid))
    return -1;
  for (i = 0; i < ndigests; i++)
    if (!pbs__ds_is_lower_hex64 (digest_hex[i])) {
      bad ("parameter verification failed - 'digest-list': [%zu]: value "
           "does not match the regex pattern",
           i);
      return -1;
    }
  for (i = 0; i < noffsets; i++)
    if (offsets[i] > INT64_MAX) {
      bad ("parameter verification failed - 'offset-list': [%zu]: expected "
           "integer",
           i);
      return -1;
    }
  if (noffsets != ndigests) {
    bad ("offset list has wrong length (%zu != %zu)", noffsets, ndigests);
    return -1;
  }
  /* Pairs one by one: an error leaves the earlier pairs applied (§3.5). */
  for (i = 0; i < ndigests; i++) {
    uint8_t d[32];
    uint32_t clen;
    struct fixed_writer *w;
    size_t slot;

    pbs_digest_parse (digest_hex[i], d);
    pthread_mutex_lock (&b->lock);
    if (!pbs__digest_set_get (b->known, d, &clen)) {
      pthread_mutex_unlock (&b->lock);
      bad ("no such chunk %s", digest_hex[i]);
      return -1;
    }
    if (ensure_unfinished (b) == -1) {
      pthread_mutex_unlock (&b->lock);
      return -1;
    }
    w = b->writers[wid];
    if (!w) {
      pthread_mutex_unlock (&b->lock);
      bad ("fixed writer '%d' not registered", wid);
      return -1;
    }
    if (check_alignment (w, offsets[i], clen, &slot) == -1) {
      pthread_mutex_unlock (&b->lock);
      return -1;
    }
    w->chunk_count++;
    memcpy (w->idx->digest[slot], d, 32);
    pthread_mutex_unlock (&b->lock);
  }
  return 0;
}

int
pbs_ds_backup_fixed_append (struct pbs_ds_backup *b, int wid, size_t n,
                            const char *const *digest_hex,
                            const uint64_t *offsets)
{
  return pbs_ds_backup_fixed_append_lists (b, wid, n, digest_hex, n, offsets);
}

void
pbs_ds_backup_require_chunks (struct pbs_ds_backup *b)
{
  b->require_chunks = true;
}

/* -1 with the error set if W's index references a chunk that is not in
 * the store: a digest registered from the base (§3.2) whose chunk was
 * moved aside by a repair, or lost.  PBS accepts such an index; the
 * snapshot would then fail to restore.  One stat per chunk. */
static int
missing_chunk (struct pbs_ds_backup *b, struct fixed_writer *w)
{
  size_t i;
  char hex[65];

  for (i = 0; i < w->idx->count; i++)
    if ((i == 0 || memcmp (w->idx->digest[i], w->idx->digest[i - 1], 32)) &&
        !pbs_datastore_has_chunk (b->ds, w->idx->digest[i])) {
      pbs_digest_hex (w->idx->digest[i], hex);
      pbs__set_http_error (400, ENOENT,
                           "fixed writer '%s' close failed - chunk %s is "
                           "missing from the datastore",
                           w->name, hex);
      return -1;
    }
  return 0;
}

int
pbs_ds_backup_fixed_close (struct pbs_ds_backup *b, int wid,
                           uint64_t chunk_count, uint64_t size,
                           const char *csum_hex)
{
  struct fixed_writer *w;
  uint8_t csum[32], *enc = NULL;
  size_t enclen = 0, i;
  int r = -1;

  if (!wid_in_range (wid))
    return -1;
  if (chunk_count > INT64_MAX || size > INT64_MAX) {
    bad ("parameter verification failed - '%s': expected integer",
         chunk_count > INT64_MAX ? "chunk-count" : "size");
    return -1;
  }
  /* "csum" is any-case hex of exactly 32 bytes: <[u8; 32]>::from_hex,
   * with the hex crate's FromHexError texts (odd length first, then the
   * length, then the first bad character). */
  if (!csum_hex)
    csum_hex = "";
  for (i = 0; csum_hex[i]; i++)
    ;
  if (i % 2 != 0) {
    bad ("Odd number of digits");
    return -1;
  }
  if (i != 64) {
    bad ("Invalid string length");
    return -1;
  }
  for (i = 0; i < 64; i++)
    if (!isxdigit ((unsigned char) csum_hex[i])) {
      unsigned char c = (unsigned char) csum_hex[i];
      /* {:?} of the byte as a char: printable ASCII as is, a quote and a
       * backslash escaped, anything else as \u{..} (approximately). */
      if (c == '\'' || c == '\\')
        bad ("Invalid character '\\%c' at position %zu", c, i);
      else if (c >= 0x20 && c < 0x7f)
        bad ("Invalid character '%c' at position %zu", c, i);
      else
        bad ("Invalid character '\\u{%x}' at position %zu", c, i);
      return -1;
    }
  if (pbs_digest_parse (csum_hex, csum) == -1) {
    bad ("Invalid string length");
    return -1;
  }

  pthread_mutex_lock (&b->lock);
  if (ensure_unfinished (b) == -1)
    goto out;
  /* The writer leaves the session first: any failure below loses it. */
  w = b->writers[wid];
  if (!w) {
    bad ("fixed writer '%d' not registered", wid);
    goto out;
  }
  b->writers[wid] = NULL;
  if (w->chunk_count != chunk_count) {
    bad ("fixed writer '%s' close failed - received wrong number of chunk "
         "(%" PRIu64 " != %" PRIu64 ")",
         w->name, w->chunk_count, chunk_count);
    writer_free (w, true);
    goto out;
  }
  if (!w->incremental) {
    if (chunk_count != w->idx->count) {
      bad ("fixed writer '%s' close failed - unexpected chunk count (%zu != "
           "%" PRIu64 ")",
           w->name, w->idx->count, chunk_count);
      writer_free (w, true);
      goto out;
    }
    if (size != w->size) {
      bad ("fixed writer '%s' close failed - unexpected file size (%" PRIu64
           " != %" PRIu64 ")",
           w->name, w->size, size);
      writer_free (w, true);
      goto out;
    }
  }
  if (b->require_chunks && missing_chunk (b, w) == -1) {
    writer_free (w, true);
    goto out;
  }
  /* Header csum, write, rename into place, THEN compare (trap 12). */
  if (pbs_fidx_encode (w->idx, &enc, &enclen) == -1) {
    bad ("%s", pbs_errmsg ());
    writer_free (w, true);
    goto out;
  }
  if (pbs__ds_write_all (w->fd, enc, enclen, 0) == -1 ||
      ftruncate (w->fd, (off_t)enclen) == -1) {
    os_error (errno, "unable to write fixed index", w->tmp_path);
    writer_free (w, true);
    goto out;
  }
  if (close (w->fd) == -1) {
    w->fd = -1;
    os_error (errno, "unable to write fixed index", w->tmp_path);
    writer_free (w, true);
    goto out;
  }
  w->fd = -1;
  if (rename (w->tmp_path, w->final_path) == -1) {
    os_error (errno, "unable to rename fixed index", w->tmp_path);
    writer_free (w, true);
    goto out;
  }
  pbs_fidx_csum (w->idx, enc); /* enc holds >= 4096 bytes */
  if (memcmp (enc, csum, 32) != 0) {
    bad ("fixed writer '%s' close failed - got unexpected checksum", w->name);
    writer_free (w, false);
    goto out;
  }
  b->file_counter++;
  b->total.count += w->stat.count;
  b->total.size += w->stat.size;
  b->total.compressed_size += w->stat.compressed_size;
  b->total.duplicates += w->stat.duplicates;
  writer_free (w, false);
  r = 0;
out:
  pthread_mutex_unlock (&b->lock);
  free (enc);
  return r;
}

/* --------------------------------------------------------------- blob */

int
pbs_ds_backup_blob (struct pbs_ds_backup *b, const char *name,
                    uint64_t encoded_size, const uint8_t *blob, size_t len)
{
  int r = -1;

  if (!name || !pbs_valid_safe_id (name)) {
    bad ("parameter verification failed - 'file-name': value does not match "
         "the regex pattern");
    return -1;
  }
  if (encoded_size < 12 || encoded_size > PBS_BLOB_MAX_ENCODED) {
    bad ("parameter verification failed - 'encoded-size': value must have a "
         "%s value of %u (got %" PRIu64 ")",
         encoded_size < 12 ? "minimum" : "maximum",
         encoded_size < 12 ? 12 : PBS_BLOB_MAX_ENCODED, encoded_size);
    return -1;
  }
  if (!ends_with (name, ".blob")) {
    bad ("wrong blob file extension: '%s'", name);
    return -1;
  }
  if (encoded_size != len) {
    bad ("got blob with unexpected length (%" PRIu64 " != %zu)", encoded_size,
         len);
    return -1;
  }
  if (pbs_blob_kind (blob, len) < 0) {
    bad ("unable to parse raw blob - wrong magic");
    return -1;
  }
  if (len < blob_header_len (pbs_blob_kind (blob, len))) {
    bad ("encrypted blob too small (%zu bytes).", len);
    return -1;
  }
  if (pbs_blob_check_crc (blob, len) == -1) {
    bad ("Data blob has wrong CRC checksum.");
    return -1;
  }

  pthread_mutex_lock (&b->lock);
  if (strcmp (name, MANIFEST_NAME) == 0) {
    /* Kept until finish; see the comment at the top. */
    uint8_t *copy = malloc (len);
    if (!copy) {
      oom ();
      goto out;
    }
    memcpy (copy, blob, len);
    free (b->manifest);
    b->manifest = copy;
    b->manifest_len = len;
  } else if (pbs__ds_replace_file (b->snap_path, name, blob, len, false) ==
             -1) {
    pbs__ds_restate_error (pbs_errno () == ENOSPC ? 500 : 400, NULL);
    goto out;
  }
  b->file_counter++;
  b->total.size += len;
  r = 0;
out:
  pthread_mutex_unlock (&b->lock);
  return r;
}

/* ------------------------------------------------------------- finish */

static int
fsync_at (int dirfd, const char *name, int flags)
{
  int fd = openat (dirfd, name, O_RDONLY | O_CLOEXEC | flags);
  int r;
  if (fd == -1)
    return -1;
  r = fsync (fd);
  close (fd);
  return r;
}

static int
cmp_digest (const void *a, const void *b)
{
  return memcmp (a, b, 32);
}

/* Level "own": fsync every chunk this session inserted and the
 * directories they were renamed into, the snapshot's files and the
 * snapshot directory itself.  Costs what this backup wrote, while syncfs()
 * also waits for every unrelated dirty page of the filesystem (a freshly
 * written 8 GiB image next to the datastore, say). */
static int
sync_own (struct pbs_ds_backup *b)
{
  DIR *d;
  struct dirent *de;
  char name[70], hex[65], last_dir[5] = "";
  size_t i;
  int fd;

  if (b->nnew)
    qsort (b->new_chunks, b->nnew, 32, cmp_digest);
  for (i = 0; i < b->nnew; i++) {
    pbs_digest_hex (b->new_chunks[i], hex);
    snprintf (name, sizeof name, "%.4s/%s", hex, hex);
    if (fsync_at (b->ds->chunksfd, name, 0) == -1) {
      os_error (errno, "fsync failed on chunk", name);
      return -1;
    }
    if (i + 1 == b->nnew ||
        memcmp (b->new_chunks[i + 1], b->new_chunks[i], 2) != 0) {
      memcpy (last_dir, hex, 4);
      if (fsync_at (b->ds->chunksfd, last_dir, O_DIRECTORY) == -1) {
        os_error (errno, "fsync failed on chunk directory", last_dir);
        return -1;
      }
    }
  }
  fd = dup (b->snap_fd);
  d = fd >= 0 ? fdopendir (fd) : NULL;
  if (!d) {
    if (fd >= 0)
      close (fd);
    os_error (errno, "unable to list snapshot", b->snap_path);
    return -1;
  }
  rewinddir (d);
  while ((de = readdir (d)))
    if (de->d_name[0] != '.' && fsync_at (b->snap_fd, de->d_name, 0) == -1) {
      os_error (errno, "fsync failed on", de->d_name);
      closedir (d);
      return -1;
    }
  closedir (d);
  if (fsync (b->snap_fd) == -1 || fsync (b->group_fd) == -1) {
    os_error (errno, "fsync failed on", b->snap_path);
    return -1;
  }
  return 0;
}

int
pbs_ds_backup_finish (struct pbs_ds_backup *b)
{
  struct pbs_manifest *m = NULL;
  char *json = NULL, stats[256];
  uint8_t *blob = NULL;
  size_t blen = 0;
  int i, r = -1;

  pthread_mutex_lock (&b->lock);
  if (ensure_unfinished (b) == -1)
    goto out;
  for (i = 1; i <= MAX_WID; i++)
    if (b->writers[i]) {
      bad ("found open index writer - unable to finish backup");
      goto out;
    }
  if (b->file_counter == 0) {
    bad ("backup does not contain valid files (file count == 0)");
    goto out;
  }
  if (!b->manifest) {
    bad ("unable to update manifest blob - unable to load blob "
         "'\"%s/" MANIFEST_NAME "\"' - No such file or directory (os error 2)",
         b->snap_path);
    goto out;
  }
  m = pbs__ds_manifest_from_blob (b->manifest, b->manifest_len, MANIFEST_NAME);
  if (!m) {
    bad ("unable to update manifest blob - %s", pbs_errmsg ());
    goto out;
  }
  snprintf (stats, sizeof stats,
            "{\"compressed_size\": %" PRIu64 ", \"count\": %" PRIu64
            ", \"duplicates\": %" PRIu64 ", \"size\": %" PRIu64 "}",
            b->total.compressed_size, b->total.count, b->total.duplicates,
            b->total.size);
  if (pbs_manifest_set_unprotected (m, "chunk_upload_stats", stats) == -1 ||
      pbs_manifest_to_json (m, NULL, &json) == -1 ||
      pbs_blob_encode (json, strlen (json), NULL, true, &blob, &blen) == -1) {
    bad ("unable to update manifest blob - %s", pbs_errmsg ());
    goto out;
  }
  if (b->has_base && access (b->base_path, F_OK) == -1) {
    /* base.backup_dir.dir(): "type/id/time", without the namespace */
    bad ("base snapshot %s was removed during backup, cannot finish as "
         "chunks might be missing",
         path_tail (b->base_path, 3));
    goto out;
  }
  /* Durable before the manifest appears, so a snapshot with a manifest
   * never references data still only in the page cache.  (PBS syncs after
   * writing the manifest.) */
  if (b->ds->sync == PBS_DS_SYNC_FILESYSTEM && syncfs (b->ds->dirfd) == -1) {
    os_error (errno, "syncfs failed on datastore", b->ds->path);
    goto out;
  }
  if (b->ds->sync == PBS_DS_SYNC_OWN && sync_own (b) == -1)
    goto out;
  if (pbs__ds_replace_file (b->snap_path, MANIFEST_NAME, blob, blen,
                            b->ds->sync != PBS_DS_SYNC_NONE) == -1) {
    pbs__ds_restate_error (pbs_errno () == ENOSPC ? 500 : 400,
                           "unable to update manifest blob - ");
    goto out;
  }
  if (b->ds->sync != PBS_DS_SYNC_NONE)
    fsync (b->snap_fd); /* the rename itself */
  b->finished = true;
  r = 0;
out:
  pthread_mutex_unlock (&b->lock);
  pbs_manifest_free (m);
  free (json);
  free (blob);
  return r;
}

/* Remove the unfinished snapshot directory we created: its files (only
 * plain files are ever written there), then the directory. */
static void
remove_snapshot (struct pbs_ds_backup *b)
{
  remove_files (b->snap_fd);
  unlinkat (b->group_fd, b->snap_name, AT_REMOVEDIR);
}

void
pbs_ds_backup_end (struct pbs_ds_backup *b)
{
  int i;

  if (!b)
    return;
  for (i = 1; i <= MAX_WID; i++)
    writer_free (b->writers[i], true);
  if (b->created && !b->finished && b->snap_fd >= 0)
    remove_snapshot (b);
  else if (b->created && !b->finished)
    unlinkat (b->group_fd, b->snap_name, AT_REMOVEDIR);
  if (b->snap_fd >= 0)
    close (b->snap_fd);
  if (b->base_fd >= 0)
    close (b->base_fd);
  /* A failed first backup leaves the group as it was: not there.  Only
   * while we still hold its lock, and only if nothing else is in it. */
  if (!b->finished && b->created_group && b->group_fd >= 0 &&
      b->ds->client_cleanup) {
    unlinkat (b->group_fd, "owner", 0);
    unlinkat (b->type_fd, path_tail (b->group_path, 1), AT_REMOVEDIR);
    if (b->created_type)
      unlinkat (b->ns_fd, b->type_name, AT_REMOVEDIR);
  }
  if (b->group_fd >= 0)
    close (b->group_fd);
  if (b->type_fd >= 0)
    close (b->type_fd);
  if (b->ns_fd >= 0)
    close (b->ns_fd);
  free (b->notes);
  pbs__digest_set_free (b->known);
  pthread_mutex_destroy (&b->lock);
  free (b->manifest);
  free (b->new_chunks);
  free (b->auth_id);
  free (b->group_path);
  free (b->snap_path);
  free (b->base_path);
  free (b);
}
