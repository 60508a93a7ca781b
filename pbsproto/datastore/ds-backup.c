/* ds-backup.c -- a backup session: the server side of PBS's backup protocol
 * (docs/pbs-protocol.md §3, §4) over a datastore directory: PBS's
 * BackupEnvironment plus the checks of
 * src/api2/backup/{mod.rs,upload_chunk.rs} for image (fixed index) backups,
 * with PBS's rule texts and an errno (PBS's wording of OS errors and the
 * HTTP status are the test server's choice).
 *
 * Parameter names and schemas are the HTTP layer's business; values are
 * checked here, so the local backend and the HTTPS test server enforce the
 * same rules.
 *
 * Deliberate difference from PBS: an uploaded index.json.blob is kept in
 * memory and written only by finish, after syncfs().  On PBS the uploaded
 * manifest sits in the snapshot directory between "POST blob" and "POST
 * finish", so a server crash in between leaves a directory that counts as
 * finished.  Here a snapshot directory holds index.json.blob only when
 * everything it references is on disk.
 *
 * The session's other files: ds-group.c (group, owner, locks, cleanup),
 * ds-writer.c (the fixed index writer and its chunks), ds-finish.c (blobs,
 * finish, durability), ds-session.c (session state the writer needs too),
 * ds-errtext.c (PBS's error texts). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ds-backup-internal.h"
#include "ends-with.h"
#include "pbs-errors.h"


struct pbs_ds_backup *
pbs_ds_backup_start (struct pbs_datastore *ds, const char *auth_id,
                     const char *ns, const char *type, const char *id,
                     int64_t time)
{
  struct pbs_ds_backup *b = NULL;
  char *nsp = NULL;
  int64_t last = 0;
  bool found;

  if (!ns)
    ns = "";
  if (!auth_id || !*auth_id || !strchr (auth_id, '@')) {
    pbs__dsb_bad ("invalid auth id");
    return NULL;
  }
  if (!type || !pbs_valid_backup_type (type)) {
    pbs__dsb_bad ("invalid backup type '%s'", type ? type : "");
    return NULL;
  }
  if (!id || !pbs_valid_backup_id (id)) {
    pbs__dsb_bad ("invalid backup id '%s'", id ? id : "");
    return NULL;
  }
  if (time < 1) {
    pbs__dsb_bad ("invalid backup time %" PRId64 " (the first is 1)", time);
    return NULL;
  }
  /* No snapshot name for it (PBS fails formatting the time as well). */
  if (time > PBS_TIME_MAX) {
    pbs__dsb_bad ("backup time %" PRId64 " is after 9999-12-31T23:59:59Z",
                  time);
    return NULL;
  }
  nsp = pbs__ds_ns_path (ns);
  if (!nsp) {
    pbs__dsb_bad ("invalid namespace '%s'", ns);
    return NULL;
  }
  /* §1.3 step 7; this API has no benchmark flag, i.e. benchmark=false. */
  if (strcmp (type, "host") == 0 && strcmp (id, "benchmark") == 0) {
    free (nsp);
    pbs__dsb_bad ("unable to run benchmark without --benchmark flags");
    return NULL;
  }

  b = calloc (1, sizeof *b);
  if (!b) {
    free (nsp);
    pbs__dsb_oom ();
    return NULL;
  }
  b->ds = ds;
  b->group_fd = b->snap_fd = b->base_fd = b->ns_fd = b->type_fd = -1;
  pthread_mutex_init (&b->lock, NULL);
  b->auth_id = strdup (auth_id);
  b->known = pbs__digest_set_new ();
  if (!b->auth_id || !b->known) {
    pbs__dsb_oom ();
    goto err;
  }
  if (pbs__dsb_open_group (b, ns, nsp, type, id) == -1)
    goto err;

  if (pbs__dsb_last_finished (b->group_fd, b->group_path, &last, &found) == -1)
    goto err;
  if (found) {
    char name[21], *mpath = NULL;
    uint8_t *blob = NULL;
    size_t blen = 0;
    struct pbs_manifest *m;

    pbs_time_to_rfc3339 (last, name);
    if (asprintf (&b->base_path, "%s/%s", b->group_path, name) == -1 ||
        asprintf (&mpath, "%s/" PBS_MANIFEST_NAME, b->base_path) == -1) {
      b->base_path = NULL;
      pbs__dsb_oom ();
      goto err;
    }
    /* load_manifest -> load_blob (pbs-datastore src/backup_info.rs) */
    if (pbs__ds_read_file (mpath, PBS_BLOB_MAX_ENCODED, &blob, &blen) == -1) {
      pbs__ds_fail_read (PBS_DS_FAIL_LOAD_MANIFEST, EINVAL,
                         "cannot read the last snapshot's manifest", mpath);
      free (mpath);
      goto err;
    }
    m = pbs__ds_manifest_from_blob (blob, blen, mpath);
    free (blob);
    free (mpath);
    if (!m) {
      pbs__dsb_bad ("unable to load manifest of last backup - %s",
                    pbs_errmsg ());
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
      pbs__dsb_bad ("backup timestamp is older than last backup.");
      goto err;
    }
    /* Keep the base from being pruned while it is referenced. */
    b->base_fd =
        pbs__ds_open_dir (b->group_fd, pbs__dsb_path_tail (b->base_path, 1),
                          b->base_path, false, NULL);
    if (b->base_fd == -1 ||
        pbs__dsb_lock_fd (
            b->base_fd, b->base_path, LOCK_SH, "snapshot",
            "base snapshot is already locked by another operation") == -1)
      goto err;
  } else {
    free (b->base_path);
    b->base_path = NULL;
  }

  pbs_time_to_rfc3339 (time, b->snap_name);
  if (asprintf (&b->snap_path, "%s/%s", b->group_path, b->snap_name) == -1) {
    b->snap_path = NULL;
    pbs__dsb_oom ();
    goto err;
  }
  if (mkdirat (b->group_fd, b->snap_name, 0755) == -1) {
    if (errno == EEXIST)
      pbs__set_error (EEXIST, "backup directory already exists.");
    else {
      int e = errno;
      pbs__set_error (e, "cannot create snapshot directory %s: %s",
                      b->snap_path, strerror (e));
      pbs__ds_fail_context (PBS_DS_FAIL_BARE, e, NULL, NULL, b->snap_path);
    }
    goto err;
  }
  b->created = true;
  b->snap_fd =
      pbs__ds_open_dir (b->group_fd, b->snap_name, b->snap_path, false, NULL);
  if (b->snap_fd == -1 ||
      pbs__dsb_lock_fd (
          b->snap_fd, b->snap_path, LOCK_EX, "snapshot",
          "internal error - tried creating snapshot that's already in "
          "use") == -1)
    goto err;
  free (nsp);
  return b;
err:
  free (nsp);
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

/* Read NAME of the base snapshot into *DATA (unless DATA is NULL); a
 * .fidx is also parsed, once per session, its digests registered as known,
 * and kept (*IDX_OUT, borrowed) for the caller and for a writer that
 * reuses it (pbs__dsb_base_index).  0 or -1. */
static int
previous_file (struct pbs_ds_backup *b, const char *name, uint8_t **data,
               size_t *len, const struct pbs_fidx **idx_out)
{
  struct pbs_fidx *idx;
  uint8_t *buf = NULL;
  size_t i, buflen = 0;
  int r = -1;

  *idx_out = NULL;

  if (!name || !pbs_valid_safe_id (name)) {
    pbs__dsb_bad ("invalid archive name '%s'", name ? name : "");
    return -1;
  }
  if (!b->has_base) {
    pbs__set_error (ENOENT, "no valid previous backup");
    return -1;
  }
  if (ends_with (name, ".blob")) {
    /* src/api2/helpers.rs create_download_response */
    if (pbs__dsb_read_base_file (b, name, PBS_BLOB_MAX_ENCODED, data, len) ==
        -1) {
      char path[4096];
      snprintf (path, sizeof path, "%s/%s", b->base_path, name);
      pbs__ds_fail_read (PBS_DS_FAIL_OPEN_FILE, 0, "cannot read", path);
      return -1;
    }
    return 0;
  }
  if (ends_with (name, ".didx")) {
    pbs__dsb_bad ("dynamic indexes are not supported by this datastore");
    return -1;
  }
  if (!ends_with (name, ".fidx")) {
    /* ArchiveType::from_path prints the name with {:?} */
    pbs__dsb_bad ("unknown archive type: \"%s\"", name);
    return -1;
  }
  pthread_mutex_lock (&b->lock);
  r = pbs__dsb_ensure_unfinished (b);
  idx = (struct pbs_fidx *) pbs__dsb_base_index (b, name);
  pthread_mutex_unlock (&b->lock);
  if (r == -1)
    return -1;
  r = -1;
  if (idx && !data) {
    *idx_out = idx; /* already read, parsed and registered */
    return 0;
  }
  /* FixedIndexReader::open: one prefix for open and parse errors */
  if (pbs__dsb_read_base_file (b, name, MAX_INDEX_FILE, &buf, &buflen) == -1) {
    char path[4096];
    snprintf (path, sizeof path, "%s/%s", b->base_path, name);
    pbs__ds_fail_read (PBS_DS_FAIL_OPEN_INDEX, 0, "cannot read fixed index",
                       path);
    return -1;
  }
  if (idx)
    goto done;
  idx = pbs_fidx_parse (buf, buflen);
  if (!idx) {
    char why[300], path[4096];
    snprintf (why, sizeof why, "%s", pbs_errmsg ());
    snprintf (path, sizeof path, "%s/%s", b->base_path, name);
    pbs__dsb_bad ("cannot read fixed index %s: %s", path, why);
    pbs__ds_fail_context (PBS_DS_FAIL_OPEN_INDEX, 0, why, NULL, path);
    goto out;
  }
  pthread_mutex_lock (&b->lock);
  if (pbs__dsb_ensure_unfinished (b) == 0) {
    /* §3.2: each digest becomes known with its length in this index. */
    for (i = 0; i < idx->count; i++) {
      uint64_t start = (uint64_t)i * idx->chunk_size;
      uint64_t l = idx->size - start;
      if (l > idx->chunk_size)
        l = idx->chunk_size;
      if (pbs__digest_set_put (b->known, idx->digest[i], (uint32_t)l) == -1)
        break;
    }
    if (i == idx->count && pbs__dsb_keep_base_index (b, name, idx) == 0)
      r = 0;
  }
  pthread_mutex_unlock (&b->lock);
  if (r == -1)
    pbs_fidx_free (idx);
out:
  if (r == -1) {
    free (buf);
    return -1;
  }
done:
  *idx_out = idx;
  if (data) {
    *data = buf;
    *len = buflen;
  }
  else
    free (buf);
  return 0;
}

int
pbs_ds_backup_previous (struct pbs_ds_backup *b, const char *name,
                        uint8_t **data, size_t *len)
{
  const struct pbs_fidx *idx;

  return previous_file (b, name, data, len, &idx);
}

const struct pbs_fidx *
pbs_ds_backup_previous_index (struct pbs_ds_backup *b, const char *name)
{
  const struct pbs_fidx *idx = NULL;

  if (!name || !ends_with (name, ".fidx")) {
    pbs__dsb_bad ("not a fixed index: '%s'", name ? name : "");
    return NULL;
  }
  if (previous_file (b, name, NULL, NULL, &idx) == -1)
    return NULL;
  return idx;
}

/* Remove the unfinished snapshot directory we created: its files (only
 * plain files are ever written there), then the directory. */
static void
remove_snapshot (struct pbs_ds_backup *b)
{
  pbs__dsb_remove_files (b->snap_fd);
  unlinkat (b->group_fd, b->snap_name, AT_REMOVEDIR);
}

void
pbs_ds_backup_end (struct pbs_ds_backup *b)
{
  int i;

  if (!b)
    return;
  for (i = 1; i <= MAX_WID; i++)
    pbs__dsb_writer_free (b->writers[i], true);
  if (b->created && !b->finished && b->snap_fd >= 0)
    remove_snapshot (b);
  else if (b->created && !b->finished)
    unlinkat (b->group_fd, b->snap_name, AT_REMOVEDIR);
  if (b->snap_fd >= 0)
    close (b->snap_fd);
  if (b->base_fd >= 0)
    close (b->base_fd);
  pbs__dsb_group_cleanup (b);
  if (b->group_fd >= 0)
    close (b->group_fd);
  if (b->type_fd >= 0)
    close (b->type_fd);
  if (b->ns_fd >= 0)
    close (b->ns_fd);
  free (b->notes);
  pbs__dsb_free_base_indexes (b);
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
