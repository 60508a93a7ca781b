/* repo.c -- the generic repository layer: argument checks, dispatch to the
 * local or remote backend, and the client-side known-chunk set of a backup
 * session (docs/pbs-protocol.md §3.9 seen from the client: what this session
 * uploaded plus the digests of every previous index it downloaded -- nothing
 * else, because that is all the server will accept by reference). */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "ends-with.h"
#include "ds-internal.h"
#include "pbs-internal.h"

struct pbs_repo {
  const struct pbs_backend_ops *ops;
  void *state;
  bool local;
};

struct pbs_backup {
  struct pbs_repo *repo;
  struct pbs_backend_backup *bb;
  pthread_mutex_t lock; /* KNOWN: pbs_backup_known may run on any thread */
  struct pbs__digest_set *known;
  struct pbs_fidx **parsed; /* base indexes this side parsed (remote) */
  size_t nparsed;
};

struct pbs_reader {
  struct pbs_repo *repo;
  struct pbs_backend_reader *br;
};

static void
einval (const char *what)
{
  pbs__set_error (EINVAL, "%s", what);
}

struct pbs_repo *
pbs_repo_open (const char *spec, const struct pbs_repo_opts *opts)
{
  struct pbs_repo_opts none = {0};
  struct pbs_repo *r;

  if (!spec || !*spec) {
    einval ("empty repository");
    return NULL;
  }
  if (!opts)
    opts = &none;
  r = calloc (1, sizeof *r);
  if (!r) {
    pbs__set_error (ENOMEM, "out of memory");
    return NULL;
  }
  /* §2.3 never contains '/', so any '/' means a directory. */
  r->local = strchr (spec, '/') != NULL;
  r->ops = r->local ? &pbs__local_ops : &pbs__remote_ops;
  r->state =
      r->local ? pbs__local_open (spec, opts) : pbs__remote_open (spec, opts);
  if (!r->state) {
    free (r);
    return NULL;
  }
  return r;
}

void
pbs_repo_close (struct pbs_repo *r)
{
  if (!r)
    return;
  r->ops->close (r->state);
  free (r);
}

bool
pbs_repo_is_local (const struct pbs_repo *r)
{
  return r && r->local;
}

uint64_t
pbs_repo_bytes_sent (const struct pbs_repo *r)
{
  return r && r->ops->bytes_sent ? r->ops->bytes_sent (r->state) : 0;
}

static bool
check_group (const char *ns, const char *type, const char *id)
{
  if (ns && !pbs_valid_ns (ns)) {
    pbs__set_error (EINVAL, "invalid namespace '%s'", ns);
    return false;
  }
  if (type && !pbs_valid_backup_type (type)) {
    pbs__set_error (EINVAL, "invalid backup type '%s'", type);
    return false;
  }
  if (id && !pbs_valid_backup_id (id)) {
    pbs__set_error (EINVAL, "invalid backup id '%s'", id);
    return false;
  }
  return true;
}

/* The arguments every session start takes: a snapshot of one group. */
static bool
check_snapshot_args (const char *fn, struct pbs_repo *r, const char *ns,
                     const char *type, const char *id, int64_t time)
{
  if (!r || !type || !id) {
    pbs__set_error (EINVAL, "%s: NULL argument", fn);
    return false;
  }
  if (!check_group (ns, type, id))
    return false;
  if (time < 1 || time > PBS_TIME_MAX) {
    pbs__set_error (EINVAL, "invalid backup time %lld (1 to %lld, up to "
                    "9999-12-31T23:59:59Z)", (long long) time,
                    (long long) PBS_TIME_MAX);
    return false;
  }
  return true;
}

int
pbs_repo_snapshots (struct pbs_repo *r, const char *ns, const char *type,
                    const char *id, struct pbs_snapshot **out, size_t *n)
{
  if (!r || !out || !n) {
    einval ("pbs_repo_snapshots: NULL argument");
    return -1;
  }
  *out = NULL;
  *n = 0;
  if (!check_group (ns, type, id))
    return -1;
  return r->ops->snapshots (r->state, ns ? ns : "", type, id, out, n);
}

int
pbs_repo_set_protected (struct pbs_repo *r, const char *ns, const char *type,
                        const char *id, int64_t time, bool protect)
{
  if (!r || !type || !id) {
    einval ("pbs_repo_set_protected: NULL argument");
    return -1;
  }
  if (!check_group (ns, type, id))
    return -1;
  return r->ops->set_protected (r->state, ns ? ns : "", type, id, time,
                                protect);
}


/* ------------------------------------------------------------ repair */

static bool
repair_supported (struct pbs_repo *r, const char *fn, bool args_ok,
                  bool supported)
{
  if (!r || !args_ok) {
    pbs__set_error (EINVAL, "%s: NULL argument", fn);
    return false;
  }
  if (!supported) {
    pbs__set_error (ENOTSUP, "repair needs direct access to the datastore; "
                    "run PBS's verify job");
    return false;
  }
  return true;
}

int
pbs_repo_has_chunk (struct pbs_repo *r, const uint8_t digest[PBS_DIGEST_LEN])
{
  if (!repair_supported (r, "pbs_repo_has_chunk", digest != NULL,
                         r && r->ops->has_chunk))
    return -1;
  return r->ops->has_chunk (r->state, digest);
}

int
pbs_repo_rename_bad_chunk (struct pbs_repo *r,
                           const uint8_t digest[PBS_DIGEST_LEN],
                           char **new_path)
{
  if (new_path)
    *new_path = NULL;
  if (!repair_supported (r, "pbs_repo_rename_bad_chunk", digest != NULL,
                         r && r->ops->rename_bad_chunk))
    return -1;
  return r->ops->rename_bad_chunk (r->state, digest, new_path);
}

int
pbs_repo_set_verify_state (struct pbs_repo *r, const char *ns,
                           const char *type, const char *id, int64_t time,
                           bool ok)
{
  if (!check_snapshot_args ("pbs_repo_set_verify_state", r, ns, type, id,
                            time) ||
      !repair_supported (r, "pbs_repo_set_verify_state", true,
                         r->ops->set_verify_state != NULL))
    return -1;
  return r->ops->set_verify_state (r->state, ns ? ns : "", type, id, time,
                                   ok);
}

/* ------------------------------------------------------------ backup */

struct pbs_backup *
pbs_backup_start (struct pbs_repo *r, const char *ns, const char *type,
                  const char *id, int64_t time)
{
  struct pbs_backup *b;

  if (!check_snapshot_args ("pbs_backup_start", r, ns, type, id, time))
    return NULL;
  b = calloc (1, sizeof *b);
  if (b)
    b->known = pbs__digest_set_new ();
  if (!b || !b->known) {
    free (b);
    pbs__set_error (ENOMEM, "out of memory");
    return NULL;
  }
  pthread_mutex_init (&b->lock, NULL);
  b->repo = r;
  b->bb = r->ops->backup_start (r->state, ns ? ns : "", type, id, time);
  if (!b->bb) {
    pthread_mutex_destroy (&b->lock);
    pbs__digest_set_free (b->known);
    free (b);
    return NULL;
  }
  return b;
}

const char *
pbs_backup_notes (struct pbs_backup *b)
{
  if (!b || !b->repo->ops->backup_notes)
    return NULL;
  return b->repo->ops->backup_notes (b->bb);
}

int
pbs_backup_previous_time (struct pbs_backup *b, int64_t *out)
{
  if (!b || !out) {
    einval ("pbs_backup_previous_time: NULL argument");
    return -1;
  }
  return b->repo->ops->previous_time (b->bb, out);
}

/* The server registered the digests of base index IDX; mirror that here.
 * Where we can see the chunk store (a local datastore), a digest whose
 * chunk file is gone is left unknown, so that the caller reads and stores
 * that chunk instead of referencing a chunk that is not there: PBS
 * registers them all unchecked (src/api2/backup/mod.rs download_previous). */
static int
register_known (struct pbs_backup *b, const struct pbs_fidx *idx)
{
  const struct pbs_backend_ops *ops = b->repo->ops;
  size_t i;

  pthread_mutex_lock (&b->lock);
  for (i = 0; i < idx->count; i++) {
    if (pbs__digest_set_get (b->known, idx->digest[i], NULL))
      continue;
    if (ops->has_chunk && ops->has_chunk (b->repo->state, idx->digest[i]) != 1)
      continue;
    if (pbs__digest_set_put (b->known, idx->digest[i], 1) == -1)
      break;
  }
  pthread_mutex_unlock (&b->lock);
  return i < idx->count ? -1 : 0;
}

int
pbs_backup_download_previous (struct pbs_backup *b, const char *name,
                              uint8_t **data, size_t *len)
{
  struct pbs_fidx *idx;

  if (!b || !name || !data || !len) {
    einval ("pbs_backup_download_previous: NULL argument");
    return -1;
  }
  if (!pbs_valid_safe_id (name)) {
    pbs__set_error (EINVAL, "invalid archive name '%s'", name);
    return -1;
  }
  *data = NULL;
  *len = 0;
  if (b->repo->ops->download_previous (b->bb, name, data, len) == -1)
    return -1;
  if (!ends_with (name, ".fidx"))
    return 0;
  idx = pbs_fidx_parse (*data, *len);
  if (!idx || register_known (b, idx) == -1) {
    pbs_fidx_free (idx);
    free (*data);
    *data = NULL;
    *len = 0;
    return -1;
  }
  pbs_fidx_free (idx);
  return 0;
}

const struct pbs_fidx *
pbs_backup_previous_index (struct pbs_backup *b, const char *name)
{
  const struct pbs_fidx *idx = NULL;
  struct pbs_fidx *mine = NULL, **n;
  uint8_t *data = NULL;
  size_t len = 0;

  if (!b || !name) {
    einval ("pbs_backup_previous_index: NULL argument");
    return NULL;
  }
  if (!pbs_valid_safe_id (name) || !ends_with (name, ".fidx")) {
    pbs__set_error (EINVAL, "invalid index name '%s'", name);
    return NULL;
  }
  /* One parse: the backend's own if it parses the index anyway (a local
   * datastore), else ours of the downloaded bytes, kept until
   * pbs_backup_free. */
  if (b->repo->ops->previous_index)
    idx = b->repo->ops->previous_index (b->bb, name);
  else if (b->repo->ops->download_previous (b->bb, name, &data, &len) == 0) {
    idx = mine = pbs_fidx_parse (data, len);
    free (data);
    n = mine ? realloc (b->parsed, (b->nparsed + 1) * sizeof *n) : NULL;
    if (mine && !n) {
      pbs__set_error (ENOMEM, "out of memory");
      pbs_fidx_free (mine);
      return NULL;
    }
    if (n) {
      b->parsed = n;
      b->parsed[b->nparsed++] = mine;
    }
  }
  if (!idx || register_known (b, idx) == -1)
    return NULL;
  return idx;
}

int
pbs_backup_fixed_index (struct pbs_backup *b, const char *name, uint64_t size,
                        const uint8_t *reuse_csum)
{
  if (!b || !name) {
    einval ("pbs_backup_fixed_index: NULL argument");
    return -1;
  }
  if (!pbs_valid_safe_id (name)) {
    pbs__set_error (EINVAL, "invalid archive name '%s'", name);
    return -1;
  }
  return b->repo->ops->fixed_index (b->bb, name, size, reuse_csum);
}

bool
pbs_backup_known (struct pbs_backup *b, const uint8_t digest[PBS_DIGEST_LEN])
{
  bool k;

  if (!b || !digest)
    return false;
  pthread_mutex_lock (&b->lock);
  k = pbs__digest_set_get (b->known, digest, NULL);
  pthread_mutex_unlock (&b->lock);
  return k;
}

static int
fixed_chunk (struct pbs_backup *b, int wid,
             const uint8_t digest[PBS_DIGEST_LEN], uint32_t size,
             const uint8_t *blob, size_t blob_len, uint8_t *take)
{
  int r;

  if (!b || !digest || !blob) {
    free (take);
    einval ("pbs_backup_fixed_chunk: NULL argument");
    return -1;
  }
  if (wid < 1 || size < 1 || size > PBS_CHUNK_SIZE || blob_len < 13 ||
      blob_len > PBS_BLOB_MAX_ENCODED) {
    free (take);
    pbs__set_error (EINVAL,
                    "pbs_backup_fixed_chunk: invalid wid %d, size "
                    "%u or encoded size %zu",
                    wid, size, blob_len);
    return -1;
  }
  if (b->repo->ops->fixed_chunk (b->bb, wid, digest, size, blob, blob_len,
                                 take) == -1)
    return -1;
  pthread_mutex_lock (&b->lock);
  r = pbs__digest_set_put (b->known, digest, size);
  pthread_mutex_unlock (&b->lock);
  return r;
}

int
pbs_backup_fixed_chunk (struct pbs_backup *b, int wid,
                        const uint8_t digest[PBS_DIGEST_LEN], uint32_t size,
                        const uint8_t *blob, size_t blob_len)
{
  return fixed_chunk (b, wid, digest, size, blob, blob_len, NULL);
}

int
pbs_backup_fixed_chunk_take (struct pbs_backup *b, int wid,
                             const uint8_t digest[PBS_DIGEST_LEN],
                             uint32_t size, uint8_t *blob, size_t blob_len)
{
  return fixed_chunk (b, wid, digest, size, blob, blob_len, blob);
}

int
pbs_backup_fixed_append (struct pbs_backup *b, int wid, size_t n,
                         const uint8_t (*digests)[PBS_DIGEST_LEN],
                         const uint64_t *offsets)
{
  if (!b || (n && (!digests || !offsets))) {
    einval ("pbs_backup_fixed_append: NULL argument");
    return -1;
  }
  if (wid < 1) {
    pbs__set_error (EINVAL, "pbs_backup_fixed_append: invalid wid %d", wid);
    return -1;
  }
  if (n == 0)
    return 0;
  return b->repo->ops->fixed_append (b->bb, wid, n, digests, offsets);
}

int
pbs_backup_fixed_close (struct pbs_backup *b, int wid, uint64_t chunk_count,
                        uint64_t size, const uint8_t csum[32])
{
  if (!b || !csum) {
    einval ("pbs_backup_fixed_close: NULL argument");
    return -1;
  }
  if (wid < 1) {
    pbs__set_error (EINVAL, "pbs_backup_fixed_close: invalid wid %d", wid);
    return -1;
  }
  return b->repo->ops->fixed_close (b->bb, wid, chunk_count, size, csum);
}

int
pbs_backup_blob (struct pbs_backup *b, const char *name, const uint8_t *blob,
                 size_t len)
{
  if (!b || !name || !blob) {
    einval ("pbs_backup_blob: NULL argument");
    return -1;
  }
  if (!pbs_valid_safe_id (name) || !ends_with (name, ".blob")) {
    pbs__set_error (EINVAL, "invalid blob name '%s'", name);
    return -1;
  }
  if (len < PBS_BLOB_HEADER_LEN || len > PBS_BLOB_MAX_ENCODED) {
    pbs__set_error (EINVAL, "%s: blob of %zu bytes is out of range", name, len);
    return -1;
  }
  return b->repo->ops->blob (b->bb, name, blob, len);
}

int
pbs_backup_finish (struct pbs_backup *b)
{
  if (!b) {
    einval ("pbs_backup_finish: NULL argument");
    return -1;
  }
  return b->repo->ops->finish (b->bb);
}

void
pbs_backup_free (struct pbs_backup *b)
{
  if (!b)
    return;
  b->repo->ops->backup_free (b->bb);
  while (b->nparsed)
    pbs_fidx_free (b->parsed[--b->nparsed]);
  free (b->parsed);
  pbs__digest_set_free (b->known);
  pthread_mutex_destroy (&b->lock);
  free (b);
}

/* ------------------------------------------------------------ reader */

struct pbs_reader *
pbs_reader_start (struct pbs_repo *r, const char *ns, const char *type,
                  const char *id, int64_t time)
{
  struct pbs_reader *rd;

  if (!check_snapshot_args ("pbs_reader_start", r, ns, type, id, time))
    return NULL;
  rd = calloc (1, sizeof *rd);
  if (!rd) {
    pbs__set_error (ENOMEM, "out of memory");
    return NULL;
  }
  rd->repo = r;
  rd->br = r->ops->reader_start (r->state, ns ? ns : "", type, id, time);
  if (!rd->br) {
    free (rd);
    return NULL;
  }
  return rd;
}

int
pbs_reader_download (struct pbs_reader *rd, const char *name, uint8_t **data,
                     size_t *len)
{
  if (!rd || !name || !data || !len) {
    einval ("pbs_reader_download: NULL argument");
    return -1;
  }
  if (!pbs_valid_safe_id (name)) {
    pbs__set_error (EINVAL, "invalid file name '%s'", name);
    return -1;
  }
  *data = NULL;
  *len = 0;
  return rd->repo->ops->reader_download (rd->br, name, data, len);
}

int
pbs_reader_chunk (struct pbs_reader *rd, const uint8_t digest[PBS_DIGEST_LEN],
                  uint8_t **blob, size_t *len)
{
  if (!rd || !digest || !blob || !len) {
    einval ("pbs_reader_chunk: NULL argument");
    return -1;
  }
  *blob = NULL;
  *len = 0;
  return rd->repo->ops->reader_chunk (rd->br, digest, blob, len);
}

int
pbs_reader_prefetch (struct pbs_reader *rd,
                     const uint8_t digest[PBS_DIGEST_LEN])
{
  if (!rd || !digest) {
    einval ("pbs_reader_prefetch: NULL argument");
    return -1;
  }
  if (!rd->repo->ops->reader_prefetch)
    return 0;
  return rd->repo->ops->reader_prefetch (rd->br, digest);
}

void
pbs_reader_free (struct pbs_reader *rd)
{
  if (!rd)
    return;
  rd->repo->ops->reader_free (rd->br);
  free (rd);
}
