/* local-backend.c -- a datastore directory as a repository: the backend
 * ops call the server-side rules of pbs-datastore.h in process, as user
 * root@pam (the owner written into new groups).  So a local push meets
 * exactly the checks a PBS server would make.
 *
 * Differences from talking to a server: errors are the datastore's errno
 * and message as they are (no HTTP status), and a namespace is created on
 * first use (on PBS an admin creates it). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ds-internal.h"
#include "pbs-internal.h"

#define LOCAL_AUTH_ID "root@pam"

void *
pbs__local_open (const char *path, const struct pbs_repo_opts *opts)
{
  struct pbs_datastore *ds = pbs_datastore_open (path, opts && opts->create);

  /* We are the only client here: clean up after crashed or failed ones
   * (a server leaves that to its admin, as PBS does). */
  if (ds) {
    pbs_datastore_set_client_cleanup (ds, true);
    pbs_datastore_set_sync (ds, opts->sync);
  }
  return ds;
}

static void
l_close (void *st)
{
  pbs_datastore_close (st);
}

static int
l_snapshots (void *st, const char *ns, const char *type, const char *id,
             struct pbs_snapshot **out, size_t *n)
{
  return pbs_datastore_snapshots (st, ns, type, id, out, n);
}

static int
l_set_protected (void *st, const char *ns, const char *type, const char *id,
                 int64_t time, bool protect)
{
  return pbs_ds_set_protection (st, ns, type, id, time, protect);
}

/* mkdir ns/a, ns/a/ns/b, ... below the datastore. */
static int
create_ns (struct pbs_datastore *ds, const char *ns)
{
  char *nsp = pbs__ds_ns_path (ns), *p;
  char *path = NULL;
  int r = -1;

  if (!nsp)
    return -1;
  if (asprintf (&path, "%s/%s", ds->path, nsp) == -1) {
    pbs__set_error (ENOMEM, "out of memory");
    free (nsp);
    return -1;
  }
  for (p = path + strlen (ds->path) + 1;; p++) {
    if (*p == '/' || *p == 0) {
      char c = *p;
      *p = 0;
      if (mkdir (path, 0755) == -1 && errno != EEXIST) {
        pbs__set_error (errno, "%s: %s", path, strerror (errno));
        goto out;
      }
      *p = c;
      if (!c)
        break;
    }
  }
  r = 0;
out:
  free (path);
  free (nsp);
  return r;
}

static struct pbs_backend_backup *
l_backup_start (void *st, const char *ns, const char *type, const char *id,
                int64_t time)
{
  struct pbs_ds_backup *b;

  if (ns && *ns && create_ns (st, ns) == -1)
    return NULL;
  b = pbs_ds_backup_start (st, LOCAL_AUTH_ID, ns, type, id, time);
  if (b) /* a local snapshot never references a missing chunk */
    pbs_ds_backup_require_chunks (b);
  return (struct pbs_backend_backup *)b;
}

#define DSB(bb) ((struct pbs_ds_backup *)(bb))

static int
l_previous_time (struct pbs_backend_backup *bb, int64_t *out)
{
  return pbs_ds_backup_previous_time (DSB (bb), out);
}

static int
l_download_previous (struct pbs_backend_backup *bb, const char *name,
                     uint8_t **data, size_t *len)
{
  return pbs_ds_backup_previous (DSB (bb), name, data, len);
}

/* The datastore parses the base index to register its digests: hand
 * that parse up instead of the bytes. */
static const struct pbs_fidx *
l_previous_index (struct pbs_backend_backup *bb, const char *name)
{
  return pbs_ds_backup_previous_index (DSB (bb), name);
}

static int
l_fixed_index (struct pbs_backend_backup *bb, const char *name, uint64_t size,
               const uint8_t *reuse_csum)
{
  return pbs_ds_backup_fixed_index (DSB (bb), name, size, reuse_csum);
}

static int
l_fixed_chunk (struct pbs_backend_backup *bb, int wid, const uint8_t digest[32],
               uint32_t size, const uint8_t *blob, size_t blob_len,
               uint8_t *take)
{
  int r;

  /* The caller computed DIGEST from the bytes it encoded into BLOB, in
   * this process: the datastore need not check them a second time. */
  r = pbs_ds_backup_fixed_chunk_trusted (DSB (bb), wid, digest, size, blob,
                                         blob_len);
  free (take); /* written synchronously: nothing keeps it */
  return r;
}

static int
l_fixed_append (struct pbs_backend_backup *bb, int wid, size_t n,
                const uint8_t (*digests)[32], const uint64_t *offsets)
{
  return pbs_ds_backup_fixed_append (DSB (bb), wid, n, digests, offsets);
}

static int
l_fixed_close (struct pbs_backend_backup *bb, int wid, uint64_t chunk_count,
               uint64_t size, const uint8_t csum[32])
{
  return pbs_ds_backup_fixed_close (DSB (bb), wid, chunk_count, size, csum);
}

static int
l_blob (struct pbs_backend_backup *bb, const char *name, const uint8_t *blob,
        size_t len)
{
  return pbs_ds_backup_blob (DSB (bb), name, len, blob, len);
}

static int
l_finish (struct pbs_backend_backup *bb)
{
  return pbs_ds_backup_finish (DSB (bb));
}

static const char *
l_backup_notes (struct pbs_backend_backup *bb)
{
  return pbs_ds_backup_notes (DSB (bb));
}

static void
l_backup_free (struct pbs_backend_backup *bb)
{
  pbs_ds_backup_end (DSB (bb));
}

static struct pbs_backend_reader *
l_reader_start (void *st, const char *ns, const char *type, const char *id,
                int64_t time)
{
  return (struct pbs_backend_reader *)pbs_ds_reader_start (st, LOCAL_AUTH_ID,
                                                           ns, type, id, time);
}

static int
l_reader_download (struct pbs_backend_reader *br, const char *name,
                   uint8_t **data, size_t *len)
{
  return pbs_ds_reader_download ((struct pbs_ds_reader *)br, name, data, len);
}

static int
l_reader_chunk (struct pbs_backend_reader *br, const uint8_t digest[32],
                uint8_t **blob, size_t *len)
{
  return pbs_ds_reader_chunk ((struct pbs_ds_reader *)br, digest, blob, len);
}

static void
l_reader_free (struct pbs_backend_reader *br)
{
  pbs_ds_reader_end ((struct pbs_ds_reader *)br);
}

const struct pbs_backend_ops pbs__local_ops = {
    .name = "local",
    .close = l_close,
    .snapshots = l_snapshots,
    .set_protected = l_set_protected,
    .backup_start = l_backup_start,
    .previous_time = l_previous_time,
    .download_previous = l_download_previous,
    .previous_index = l_previous_index,
    .fixed_index = l_fixed_index,
    .fixed_chunk = l_fixed_chunk,
    .fixed_append = l_fixed_append,
    .fixed_close = l_fixed_close,
    .blob = l_blob,
    .finish = l_finish,
    .backup_free = l_backup_free,
    .backup_notes = l_backup_notes,
    .reader_start = l_reader_start,
    .reader_download = l_reader_download,
    .reader_chunk = l_reader_chunk,
    .reader_free = l_reader_free,
    .has_chunk = pbs__local_has_chunk,
    .rename_bad_chunk = pbs__local_rename_bad_chunk,
    .set_verify_state = pbs__local_set_verify_state,
};
