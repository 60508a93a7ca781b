/* pbs-internal.h -- the client layer's backends; not installed.
 *
 * A repository is a backend (local datastore or remote server) behind a
 * table of operations mirroring PBS's backup and reader protocols.  The
 * generic layer (repo.c) keeps the client-side known-chunk set and checks
 * arguments; backends only move bytes. */
#ifndef PBS_INTERNAL_H
#define PBS_INTERNAL_H

#include "pbs-errors.h"
#include "pbsproto.h"

struct pbs_backend_backup; /* backend's session state */
struct pbs_backend_reader;

struct pbs_backend_ops {
  const char *name; /* "local" or "remote" */
  void (*close) (void *repo_state);
  uint64_t (*bytes_sent) (void *repo_state); /* NULL: nothing sent */
  int (*snapshots) (void *repo_state, const char *ns, const char *type,
                    const char *id, struct pbs_snapshot **out, size_t *n);
  int (*set_protected) (void *repo_state, const char *ns, const char *type,
                        const char *id, int64_t time, bool protect);

  struct pbs_backend_backup *(*backup_start) (void *repo_state,
                                              const char *ns,
                                              const char *type,
                                              const char *id, int64_t time);
  int (*previous_time) (struct pbs_backend_backup *b, int64_t *out);
  int (*download_previous) (struct pbs_backend_backup *b, const char *name,
                            uint8_t **data, size_t *len);
  /* Optional (a backend that parses the base's .fidx anyway): that index,
   * parsed, borrowed until backup_free.  Without it the client parses
   * what download_previous gives. */
  const struct pbs_fidx *(*previous_index) (struct pbs_backend_backup *b,
                                            const char *name);
  int (*fixed_index) (struct pbs_backend_backup *b, const char *name,
                      uint64_t size, const uint8_t *reuse_csum);
  /* TAKE is NULL (BLOB is copied if kept) or BLOB itself, malloc'd:
   * the backend then frees it, on success and on error. */
  int (*fixed_chunk) (struct pbs_backend_backup *b, int wid,
                      const uint8_t digest[32], uint32_t size,
                      const uint8_t *blob, size_t blob_len, uint8_t *take);
  int (*fixed_append) (struct pbs_backend_backup *b, int wid, size_t n,
                       const uint8_t (*digests)[32], const uint64_t *offsets);
  int (*fixed_close) (struct pbs_backend_backup *b, int wid,
                      uint64_t chunk_count, uint64_t size,
                      const uint8_t csum[32]);
  int (*blob) (struct pbs_backend_backup *b, const char *name,
               const uint8_t *blob, size_t len);
  int (*finish) (struct pbs_backend_backup *b);
  void (*backup_free) (struct pbs_backend_backup *b); /* aborts unless finished */
  /* What backup_start cleaned up, one line each, or NULL; may be NULL. */
  const char *(*backup_notes) (struct pbs_backend_backup *b);

  struct pbs_backend_reader *(*reader_start) (void *repo_state,
                                              const char *ns,
                                              const char *type,
                                              const char *id, int64_t time);
  int (*reader_download) (struct pbs_backend_reader *r, const char *name,
                          uint8_t **data, size_t *len);
  int (*reader_chunk) (struct pbs_backend_reader *r, const uint8_t digest[32],
                       uint8_t **blob, size_t *len);
  /* Optional (NULL: prefetching does nothing).  1 started, 0 not. */
  int (*reader_prefetch) (struct pbs_backend_reader *r,
                          const uint8_t digest[32]);
  void (*reader_free) (struct pbs_backend_reader *r);

  /* Direct access to the chunk store and manifests: local datastores only
   * (NULL: the repository layer answers ENOTSUP).  See pbsproto.h. */
  int (*has_chunk) (void *repo_state, const uint8_t digest[32]);
  int (*rename_bad_chunk) (void *repo_state, const uint8_t digest[32],
                           char **new_path);
  int (*set_verify_state) (void *repo_state, const char *ns,
                           const char *type, const char *id, int64_t time,
                           bool ok);
};

/* Backend constructors (local-backend.c, remote-repo.c).  Return the
 * backend's repo state or NULL. */
void *pbs__local_open (const char *path, const struct pbs_repo_opts *opts);
extern const struct pbs_backend_ops pbs__local_ops;
/* local-repair.c: the local backend's repair operations. */
int pbs__local_has_chunk (void *st, const uint8_t digest[32]);
int pbs__local_rename_bad_chunk (void *st, const uint8_t digest[32],
                                 char **new_path);
int pbs__local_set_verify_state (void *st, const char *ns, const char *type,
                                 const char *id, int64_t time, bool ok);
void *pbs__remote_open (const char *spec, const struct pbs_repo_opts *opts);
extern const struct pbs_backend_ops pbs__remote_ops;

#endif
