/* ds-protect.c -- a finished snapshot's protection and notes, as PBS's
 * DataStore::update_protection and BackupDir::update_manifest do them
 * (pbs-datastore src/datastore.rs, src/backup_info.rs; the API calls are
 * set_protection and set_notes in src/api2/admin/datastore.rs).
 *  - protection is the empty file ".protected" in the snapshot directory,
 *    created or removed under a non-blocking exclusive snapshot lock;
 *  - notes are the manifest's unprotected "notes" string: the manifest is
 *    rewritten (the signature covers only the protected part). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "ds-internal.h"
#include "pbs-errors.h"
#include "pbsproto.h"


/* DS/<ns>/TYPE/ID/TIME, malloc'd, after checking that it is a directory:
 * ENOENT "snapshot TYPE/ID/TIME does not exist!" otherwise. */
static char *
snapshot_dir (struct pbs_datastore *ds, const char *ns, const char *type,
              const char *id, int64_t time)
{
  char ts[21], *group = pbs__ds_group_path (ds, ns, type, id), *dir = NULL;
  struct stat st;

  if (!group)
    return NULL;
  pbs_time_to_rfc3339 (time, ts);
  if (asprintf (&dir, "%s/%s", group, ts) == -1) {
    pbs__set_error (ENOMEM, "out of memory");
    dir = NULL;
  }
  else if (lstat (dir, &st) == -1 || !S_ISDIR (st.st_mode)) {
    pbs__set_error (ENOENT, "snapshot %s/%s/%s does not exist!", type, id, ts);
    free (dir);
    dir = NULL;
  }
  free (group);
  return dir;
}

/* proxmox-sys lock_dir_noblock (DIR, "snapshot", "possibly running or in
 * use"): a push still writing it, or a reader, holds the lock. */
static int
lock_snapshot (const char *dir)
{
  int fd = open (dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC), e;

  if (fd == -1) {
    e = errno;
    pbs__set_error (e,
                    "unable to open snapshot directory \"%s\" for "
                    "locking - %s",
                    dir, strerror (e));
    return -1;
  }
  if (flock (fd, LOCK_EX | LOCK_NB) == -1) {
    e = errno;
    close (fd);
    pbs__set_error (e == EWOULDBLOCK ? EBUSY : e,
                    "unable to acquire lock on snapshot directory "
                    "\"%s\" - possibly running or in use",
                    dir);
    return -1;
  }
  return fd;
}

int
pbs_ds_set_protection (struct pbs_datastore *ds, const char *ns,
                       const char *type, const char *id, int64_t time,
                       bool protect)
{
  char *dir = snapshot_dir (ds, ns, type, id, time), *path = NULL;
  int fd = -1, lock, r = -1;

  if (!dir)
    return -1;
  lock = lock_snapshot (dir);
  if (lock == -1)
    goto out;
  if (asprintf (&path, "%s/.protected", dir) == -1) {
    pbs__set_error (ENOMEM, "out of memory");
    path = NULL;
    goto out;
  }
  if (protect) {
    fd = open (path, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd == -1) {
      int e = errno;
      pbs__set_error (e, "could not create protection file %s: %s", path,
                      strerror (e));
      pbs__ds_fail_context (PBS_DS_FAIL_BARE, e, NULL,
                            "could not create protection file", path);
      goto out;
    }
    /* Durable like the snapshot itself: a crash must not unprotect. */
    if (ds->sync != PBS_DS_SYNC_NONE && fsync (lock) == -1) {
      pbs__set_error (errno, "could not sync %s: %s", dir, strerror (errno));
      goto out;
    }
  }
  else if (unlink (path) == -1 && errno != ENOENT) {
    int e = errno;
    pbs__set_error (e, "could not remove protection file %s: %s", path,
                    strerror (e));
    pbs__ds_fail_context (PBS_DS_FAIL_BARE, e, NULL,
                          "could not remove protection file", path);
    goto out;
  }
  r = 0;
out:
  if (fd >= 0)
    close (fd);
  if (lock >= 0)
    close (lock);
  free (path);
  free (dir);
  return r;
}

/* The snapshot's manifest, parsed without signature checks. */
static struct pbs_manifest *
load_manifest (const char *dir)
{
  struct pbs_manifest *m = NULL;
  uint8_t *blob = NULL;
  size_t blen = 0;
  char *path = NULL;

  if (asprintf (&path, "%s/" PBS_MANIFEST_NAME, dir) == -1) {
    pbs__set_error (ENOMEM, "out of memory");
    return NULL;
  }
  if (pbs__ds_read_file (path, PBS_BLOB_MAX_ENCODED, &blob, &blen) == -1)
    pbs__set_error (pbs_errno (), "unable to load blob '%s' - %s", path,
                    pbs_errmsg ());
  else
    m = pbs__ds_manifest_from_blob (blob, blen, path);
  free (blob);
  free (path);
  return m;
}

char *
pbs_ds_get_notes (struct pbs_datastore *ds, const char *ns, const char *type,
                  const char *id, int64_t time)
{
  char *dir = snapshot_dir (ds, ns, type, id, time), *text, *notes = NULL;
  struct pbs_manifest *m;
  json_t *v;

  if (!dir)
    return NULL;
  m = load_manifest (dir);
  free (dir);
  if (!m)
    return NULL;
  text = pbs_manifest_get_unprotected (m, "notes");
  v = text ? json_loads (text, JSON_DECODE_ANY, NULL) : NULL;
  /* as_str().unwrap_or(""): anything but a string reads as no notes */
  notes = strdup (json_is_string (v) ? json_string_value (v) : "");
  if (!notes)
    pbs__set_error (ENOMEM, "out of memory");
  json_decref (v);
  free (text);
  pbs_manifest_free (m);
  return notes;
}

int
pbs_ds_set_notes (struct pbs_datastore *ds, const char *ns, const char *type,
                  const char *id, int64_t time, const char *notes)
{
  char *dir = snapshot_dir (ds, ns, type, id, time), *value = NULL;
  struct pbs_manifest *m = NULL;
  json_t *s;
  int lock = -1, r = -1;

  if (!dir)
    return -1;
  /* update_manifest takes the manifest lock; our writers hold the
   * snapshot lock instead, so a push still writing it is refused. */
  lock = lock_snapshot (dir);
  if (lock == -1)
    goto out;
  m = load_manifest (dir);
  if (!m)
    goto out;
  s = json_string (notes);
  value = s ? json_dumps (s, JSON_ENCODE_ANY) : NULL;
  json_decref (s);
  if (!value) {
    pbs__set_error (EINVAL, "notes are not valid UTF-8 text");
    goto out;
  }
  if (pbs__ds_update_unprotected (ds, dir, m, "notes", value) == -1)
    goto out;
  r = 0;
out:
  if (lock >= 0)
    close (lock);
  pbs_manifest_free (m);
  free (value);
  free (dir);
  return r;
}
