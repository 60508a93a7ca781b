/* ds-reader.c -- the server side of PBS's reader protocol
 * (docs/pbs-protocol.md §3.10): the snapshot must exist, it is share-locked
 * while read (a running backup holds it exclusively), and a chunk may be
 * downloaded only after an index naming it was downloaded in this session. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ends-with.h"
#include "ds-internal.h"
#include "pbs-errors.h"

#define MAX_INDEX_FILE (1024u * 1024 * 1024)

struct pbs_ds_reader {
  struct pbs_datastore *ds;
  char *snap_path;
  int snap_fd;
  struct pbs__digest_set *allowed;
};

struct pbs_ds_reader *
pbs_ds_reader_start (struct pbs_datastore *ds, const char *auth_id,
                     const char *ns, const char *type, const char *id,
                     int64_t time)
{
  struct pbs_ds_reader *r = NULL;
  char *group = NULL, name[21];

  if (!auth_id || !strchr (auth_id, '@')) {
    pbs__set_error (EINVAL, "invalid auth id");
    return NULL;
  }
  if (!type || !pbs_valid_backup_type (type) || !id ||
      !pbs_valid_backup_id (id) || time < 1) {
    pbs__set_error (EINVAL, "invalid backup type, id or time");
    return NULL;
  }
  group = pbs__ds_group_path (ds, ns, type, id);
  if (!group) {
    return NULL;
  }
  r = calloc (1, sizeof *r);
  if (!r)
    goto oom;
  r->ds = ds;
  r->snap_fd = -1;
  pbs_time_to_rfc3339 (time, name);
  if (asprintf (&r->snap_path, "%s/%s", group, name) == -1) {
    r->snap_path = NULL;
    goto oom;
  }
  r->allowed = pbs__digest_set_new ();
  if (!r->allowed)
    goto oom;
  /* src/api2/reader/mod.rs: the owner check (for users without
   * Datastore.Read; root@pam has every privilege, other privileges are
   * the HTTP layer's business) comes before the snapshot is looked at. */
  if (strcmp (auth_id, "root@pam") != 0) {
    char *opath = NULL;
    uint8_t *o = NULL;
    size_t olen = 0, n;
    bool ok;
    const char *bang;
    if (asprintf (&opath, "%s/owner", group) == -1)
      goto oom;
    if (pbs__ds_read_file (opath, 4096, &o, &olen) == -1) {
      /* get_owner: proxmox-sys file_read_firstline */
      int e = pbs_errno ();
      pbs__set_error (e, "unable to read %s: %s", opath, strerror (e));
      pbs__ds_fail_context (PBS_DS_FAIL_OS, e, NULL, "unable to read", opath);
      free (opath);
      goto err;
    }
    free (opath);
    for (n = 0; n < olen && o[n] != '\n'; n++)
      ;
    bang = memchr (o, '!', n);
    ok = (strlen (auth_id) == n && memcmp (o, auth_id, n) == 0) ||
         (bang && strlen (auth_id) == (size_t)(bang - (char *)o) &&
          memcmp (o, auth_id, strlen (auth_id)) == 0);
    if (!ok) {
      char *owner = strndup ((char *) o, n);
      pbs__set_error (EACCES,
                      "backup group %s belongs to %s, not to %s: read it "
                      "as its owner",
                      pbs__dsb_path_tail (group, 2),
                      owner ? owner : "another user", auth_id);
      pbs__ds_fail_owner (PBS_DS_FAIL_READER_OWNER, auth_id,
                          owner ? owner : "");
      free (owner);
      free (o);
      goto err;
    }
    free (o);
  }
  {
    /* Walked from the datastore root: a symlink inside is never followed
     * (ELOOP naming it). */
    int gfd = pbs__ds_open_path (ds, group + strlen (ds->path) + 1);
    if (gfd == -1 && pbs_errno () != ENOENT) {
      goto err;
    }
    r->snap_fd = gfd == -1 ? -1
                           : pbs__ds_open_dir (gfd, name, r->snap_path, false,
                                               NULL);
    if (gfd >= 0)
      close (gfd);
    if (r->snap_fd == -1 && pbs_errno () == ELOOP) {
      goto err;
    }
    if (r->snap_fd == -1)
      errno = pbs_errno ();
  }
  if (r->snap_fd == -1) {
    int e = errno;
    if (e == ENOENT)
      /* backup_dir.dir() prints "type/id/time" */
      pbs__set_error (ENOENT, "snapshot %s/%s/%s does not exist.", type, id,
                      name);
    else /* proxmox-sys do_lock_dir_noblock */
      pbs__set_error (e,
                      "unable to open snapshot directory \"%s\" for "
                      "locking - %s: %s",
                      r->snap_path,
                      strerrorname_np (e) ? strerrorname_np (e)
                                          : "UnknownErrno",
                      strerror (e));
    goto err;
  }
  if (flock (r->snap_fd, LOCK_SH | LOCK_NB) == -1) {
    int e = errno;
    pbs__set_error (e == EWOULDBLOCK ? EBUSY : e,
                    "unable to acquire lock on snapshot directory "
                    "\"%s\" - %s",
                    r->snap_path,
                    e == EWOULDBLOCK ? "locked by another operation"
                                     : strerror (e));
    goto err;
  }
  free (group);
  return r;
oom:
  pbs__set_error (ENOMEM, "out of memory");
err:
  free (group);
  pbs_ds_reader_end (r);
  return NULL;
}

int
pbs_ds_reader_download (struct pbs_ds_reader *r, const char *name,
                        uint8_t **data, size_t *len)
{
  char *path = NULL;
  bool is_fidx;
  int rc;

  if (!name || !pbs_valid_safe_id (name)) {
    pbs__set_error (EINVAL, "invalid file name '%s'", name ? name : "");
    return -1;
  }
  /* download_file (src/api2/reader/mod.rs): archive_type first, then an
   * index is opened (its digests become downloadable), then the file is
   * sent (create_download_response). */
  is_fidx = ends_with (name, ".fidx");
  if (!is_fidx && !ends_with (name, ".blob") && !ends_with (name, ".didx")) {
    pbs__set_error (EINVAL, "unknown archive type: \"%s\"", name);
    return -1;
  }
  if (asprintf (&path, "%s/%s", r->snap_path, name) == -1) {
    pbs__set_error (ENOMEM, "out of memory");
    return -1;
  }
  rc = pbs__ds_read_file (
      path, is_fidx ? MAX_INDEX_FILE : PBS_BLOB_MAX_ENCODED * 8, data, len);
  if (rc == -1) {
    if (is_fidx) /* FixedIndexReader::open */
      pbs__ds_fail_read (PBS_DS_FAIL_OPEN_INDEX, 0, "cannot read fixed index",
                         path);
    else /* create_download_response */
      pbs__ds_fail_read (PBS_DS_FAIL_OPEN_FILE, 0, "cannot read", path);
  }
  if (rc == 0 && is_fidx) {
    /* The index's digests become allowed chunk downloads. */
    struct pbs_fidx *idx = pbs_fidx_parse (*data, *len);
    size_t i;
    if (!idx) {
      char why[300];
      snprintf (why, sizeof why, "%s", pbs_errmsg ());
      pbs__set_error (pbs_errno (), "cannot read fixed index %s: %s", path,
                      why);
      pbs__ds_fail_context (PBS_DS_FAIL_OPEN_INDEX, 0, why, NULL, path);
      rc = -1;
    }
    for (i = 0; rc == 0 && i < idx->count; i++)
      if (pbs__digest_set_put (r->allowed, idx->digest[i], 1) == -1)
        rc = -1;
    pbs_fidx_free (idx);
    if (rc == -1) {
      free (*data);
      *data = NULL;
    }
  }
  free (path);
  return rc;
}

int
pbs_ds_reader_chunk (struct pbs_ds_reader *r, const uint8_t digest[32],
                     uint8_t **blob, size_t *len)
{
  char hex[65];

  pbs_digest_hex (digest, hex);
  if (!pbs__digest_set_get (r->allowed, digest, NULL)) {
    pbs__set_error (EACCES, "download chunk %s not allowed", hex);
    return -1;
  }
  if (pbs_datastore_load_chunk (r->ds, digest, blob, len) == -1) {
    /* download_chunk */
    char path[4096];
    int e = pbs_errno ();
    snprintf (path, sizeof path, "%s/.chunks/%.4s/%s", r->ds->path, hex, hex);
    pbs__set_error (e, "cannot read chunk %s: %s", path, strerror (e));
    pbs__ds_fail_context (PBS_DS_FAIL_READ_CHUNK, e, NULL, NULL, path);
    return -1;
  }
  return 0;
}

void
pbs_ds_reader_end (struct pbs_ds_reader *r)
{
  if (!r)
    return;
  if (r->snap_fd >= 0)
    close (r->snap_fd);
  pbs__digest_set_free (r->allowed);
  free (r->snap_path);
  free (r);
}
