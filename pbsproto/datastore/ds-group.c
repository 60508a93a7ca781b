/* ds-group.c -- a backup's group: its directories, lock, owner and
 * last finished snapshot (docs/pbs-protocol.md §4.1, §4.2), and the
 * cleanup a client that owns the store does after failed backups. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ds-backup-internal.h"
#include "pbs-errors.h"

/* flock FD (a directory opened without following symlinks) the way
 * lock_dir does; -1 with the same messages.  FD stays open either way. */
int
pbs__dsb_lock_fd (int fd, const char *path, int how, const char *what,
                  const char *busy)
{
  if (flock (fd, how | LOCK_NB) == -1) {
    int e = errno;
    if (e == EWOULDBLOCK)
      pbs__set_error (EBUSY,
                      "unable to acquire lock on %s directory \"%s\" - "
                      "%s",
                      what, path, busy);
    else {
      char phrase[64];
      snprintf (phrase, sizeof phrase, "unable to acquire lock on %s directory",
                what);
      pbs__dsb_os_error (e, phrase, path);
    }
    return -1;
  }
  return 0;
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

static char *
read_owner (const char *group_path)
{
  char *path = NULL, *owner = NULL;
  uint8_t *data = NULL;
  size_t len = 0, n;

  if (asprintf (&path, "%s/owner", group_path) == -1) {
    pbs__dsb_oom ();
    return NULL;
  }
  /* get_owner (proxmox-sys file_read_firstline) */
  if (pbs__ds_read_file (path, 4096, &data, &len) == -1) {
    char detail[300];
    int os = pbs__ds_read_failure (detail, sizeof detail);
    pbs__dsb_bad ("unable to read %s: %s", path, detail);
    pbs__ds_fail_context (PBS_DS_FAIL_OS, os, detail, "unable to read", path);
    goto out;
  }
  for (n = 0; n < len && data[n] != '\n' && data[n] != '\r'; n++)
    ;
  while (n > 0 && (data[n - 1] == ' ' || data[n - 1] == '\t'))
    n--;
  /* Authid::from_str fails without an '@' (proxmox-auth-api
   * src/types.rs); the group is printed "type/id". */
  if (n == 0 || memchr (data, 0, n) || !memchr (data, '@', n)) {
    pbs__dsb_bad ("parsing owner for %s failed: not a valid user id",
                  pbs__dsb_path_tail (group_path, 2));
    goto out;
  }
  owner = strndup ((char *)data, n);
  if (!owner)
    pbs__dsb_oom ();
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
    pbs__dsb_oom ();
    return -1;
  }
  /* Exclusive create, as PBS's set_owner (force = false). */
  fd = open (path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd == -1) {
    pbs__dsb_os_error (errno, "unable to create owner file", path);
    goto out;
  }
  if (pbs__ds_write_all (fd, (const uint8_t *)auth_id, n, 0) == -1 ||
      pbs__ds_write_all (fd, (const uint8_t *)"\n", 1, n) == -1) {
    /* sic: two spaces (pbs-datastore src/datastore.rs set_owner) */
    pbs__dsb_os_error (errno, "unable to write owner file ", path);
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
int
pbs__dsb_last_finished (int group_fd, const char *group_path, int64_t *t,
                        bool *found)
{
  int fd = dup (group_fd);
  DIR *d = fd >= 0 ? fdopendir (fd) : NULL;
  struct dirent *de;

  *found = false;
  if (!d) {
    pbs__dsb_os_error (errno, "unable to list backup group", group_path);
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
      pbs__dsb_bad ("%s/%s is a symlink; a datastore holds none, so it is not "
                    "followed (remove it)",
                    group_path, de->d_name);
      closedir (d);
      return -1;
    }
    snprintf (mpath, sizeof mpath, "%s/" PBS_MANIFEST_NAME, de->d_name);
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
void
pbs__dsb_remove_files (int fd)
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
    pbs__dsb_os_error (errno, "unable to list backup group", b->group_path);
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
    snprintf (mpath, sizeof mpath, "%s/" PBS_MANIFEST_NAME, de->d_name);
    if (fstatat (b->group_fd, mpath, &st, AT_SYMLINK_NOFOLLOW) == 0)
      continue; /* finished */
    sfd = openat (b->group_fd, de->d_name,
                  O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (sfd == -1)
      continue; /* a symlink or a file: last_finished names it */
    if (flock (sfd, LOCK_EX | LOCK_NB) == 0) {
      pbs__dsb_remove_files (sfd);
      if (unlinkat (b->group_fd, de->d_name, AT_REMOVEDIR) == 0) {
        note (b,
              "removed unfinished snapshot %s/%s/%s (left by an "
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
  note (b,
        "group %s/%s had no owner file and no snapshots (left by a "
        "failed first backup): taking it over",
        type, id);
  return 1;
}

/* Below the namespace directory: the type and group directories
 * (created if missing), the group lock, cleanup, the owner (§1.3 steps
 * 8-9, §4.1). */
int
pbs__dsb_open_group (struct pbs_ds_backup *b, const char *ns, const char *nsp,
                     const char *type, const char *id)
{
  struct pbs_datastore *ds = b->ds;
  const char *auth_id = b->auth_id;
  char *nsdir = NULL, *typedir = NULL, *owner = NULL;
  bool created_group = false;
  int r = -1;

  if (asprintf (&nsdir, "%s%s%s", ds->path, *nsp ? "/" : "", nsp) == -1 ||
      asprintf (&typedir, "%s/%s", nsdir, type) == -1) {
    nsdir = typedir = NULL;
    pbs__dsb_oom ();
    goto err;
  }
  /* Walk from the datastore root without following a symlink: one
   * planted inside would send the snapshot's files elsewhere. */
  b->ns_fd = pbs__ds_open_path (ds, nsp);
  if (b->ns_fd == -1) {
    if (pbs_errno () == ENOENT || pbs_errno () == ENOTDIR)
      pbs__set_error (ENOENT, "namespace not found");
    goto err;
  }
  snprintf (b->type_name, sizeof b->type_name, "%s", type);
  b->type_fd =
      pbs__ds_open_dir (b->ns_fd, type, typedir, true, &b->created_type);
  if (b->type_fd == -1)
    goto err;
  b->group_path = pbs__ds_group_path (ds, ns, type, id);
  if (!b->group_path)
    goto err;
  b->group_fd =
      pbs__ds_open_dir (b->type_fd, id, b->group_path, true, &created_group);
  if (b->group_fd == -1)
    goto err;
  if (pbs__dsb_lock_fd (b->group_fd, b->group_path, LOCK_EX, "backup group",
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
    pbs__set_error (EACCES,
                    "backup group %s belongs to %s, not to %s: back up as "
                    "its owner or into another group",
                    pbs__dsb_path_tail (b->group_path, 2), owner, auth_id);
    pbs__ds_fail_owner (PBS_DS_FAIL_OWNER, auth_id, owner);
    goto err;
  }

  r = 0;
err:
  free (nsdir);
  free (typedir);
  free (owner);
  return r;
}

void
pbs__dsb_group_cleanup (struct pbs_ds_backup *b)
{
  /* A failed first backup leaves the group as it was: not there.  Only
   * while we still hold its lock, and only if nothing else is in it. */
  if (!b->finished && b->created_group && b->group_fd >= 0 &&
      b->ds->client_cleanup) {
    unlinkat (b->group_fd, "owner", 0);
    unlinkat (b->type_fd, pbs__dsb_path_tail (b->group_path, 1), AT_REMOVEDIR);
    if (b->created_type)
      unlinkat (b->ns_fd, b->type_name, AT_REMOVEDIR);
  }
}
