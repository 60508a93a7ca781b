/* pbs-datastore.h -- a datastore directory in PBS's on-disk layout (§6) and
 * the server-side rules of the backup and reader protocols (§3, §4).
 *
 * This is the "server" half.  The local repository backend calls it in
 * process; tests/server (the HTTPS test server) calls it for each request.
 * Both therefore write identical layouts and enforce identical rules, with
 * PBS's own error texts (§1.6) and HTTP status codes (pbs_http_status():
 * 400 by default, 401/403/404 where PBS uses them).
 *
 * Digests cross this API as the hex strings the protocol carries, so that
 * the lower-case rule (§3.4, trap 5) is checked in exactly one place.
 *
 * Threads: a datastore handle may be shared by threads (chunk inserts are
 * atomic renames); a backup or reader session is used by one thread.
 */
#ifndef PBS_DATASTORE_H
#define PBS_DATASTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pbsproto.h"

struct pbs_datastore; /* opaque */

/* Open the datastore at PATH.  CREATE: make PATH, .chunks/0000..ffff and
 * .lock if missing (as PBS does when a datastore is created; .lock last,
 * so an interrupted creation resumes).  A PATH that is a file (ENOTDIR),
 * a directory without .chunks when !CREATE (ENOENT), or a non-empty
 * directory without .chunks (EEXIST) is an error.  Finish syncs at
 * PBS_SYNC_OWN until pbs_datastore_set_sync says otherwise. */
extern struct pbs_datastore *pbs_datastore_open (const char *path,
                                                 bool create);
/* How finish makes a snapshot durable before its manifest appears (see
 * enum pbs_sync_level). */
extern void pbs_datastore_set_sync (struct pbs_datastore *ds,
                                    enum pbs_sync_level level);
extern void pbs_datastore_close (struct pbs_datastore *ds);
extern const char *pbs_datastore_path (const struct pbs_datastore *ds);

/* Insert an encoded chunk as PBS's insert_chunk (§6.3): temp file in the
 * chunk's directory, rename (no fsync here: see the sync level above); an
 * existing chunk of the same size is kept (and its atime touched).
 * *DUPLICATE tells which happened.  Thread-safe.  ENOSPC: "No space left
 * on device", the temp file removed. */
extern int pbs_datastore_insert_chunk (struct pbs_datastore *ds,
                                       const uint8_t digest[32],
                                       const uint8_t *blob, size_t len,
                                       bool *duplicate);
extern int pbs_datastore_load_chunk (struct pbs_datastore *ds,
                                     const uint8_t digest[32],
                                     uint8_t **blob, size_t *len);
extern bool pbs_datastore_has_chunk (struct pbs_datastore *ds,
                                     const uint8_t digest[32]);

/* Snapshot listing for the admin API and the local backend. */
extern int pbs_datastore_snapshots (struct pbs_datastore *ds, const char *ns,
                                    const char *type, const char *id,
                                    struct pbs_snapshot **out, size_t *n);

/* ---------------------------------------------- backup environment */

struct pbs_ds_backup; /* opaque */

/* The checks of §1.3 steps 6-10 and §4: namespace exists (404 "namespace
 * not found"), group lock ("another backup is already running"), owner
 * (created with AUTH_ID; "backup owner check failed (a != b)"), base
 * selection (last finished snapshot; none if its verify_state failed), time
 * strictly newer than the base ("backup timestamp is older than last
 * backup."), snapshot dir created ("backup directory already exists."). */
extern struct pbs_ds_backup *pbs_ds_backup_start (struct pbs_datastore *ds,
                                                  const char *auth_id,
                                                  const char *ns,
                                                  const char *type,
                                                  const char *id,
                                                  int64_t time);
/* -1 in *OUT when there is no base. */
extern int pbs_ds_backup_previous_time (struct pbs_ds_backup *b,
                                        int64_t *out);
/* §3.2: "no valid previous backup" without a base; a .fidx registers all
 * its digests as known with their lengths. */
extern int pbs_ds_backup_previous (struct pbs_ds_backup *b, const char *name,
                                   uint8_t **data, size_t *len);
/* §3.3; returns the wid. */
extern int pbs_ds_backup_fixed_index (struct pbs_ds_backup *b,
                                      const char *name, uint64_t size,
                                      const char *reuse_csum);
/* §3.4: checks lengths, magic, (unencrypted) digest and size, stores the
 * chunk with a recomputed CRC, then registers it. */
extern int pbs_ds_backup_fixed_chunk (struct pbs_ds_backup *b, int wid,
                                      const char *digest_hex, uint64_t size,
                                      uint64_t encoded_size,
                                      const uint8_t *blob, size_t len);
/* §3.5: pairs applied one by one. */
extern int pbs_ds_backup_fixed_append (struct pbs_ds_backup *b, int wid,
                                       size_t n,
                                       const char *const *digest_hex,
                                       const uint64_t *offsets);
/* The same with the two lists of the request as received, so that
 * unequal lengths get PBS's "offset list has wrong length (a != b)". */
extern int pbs_ds_backup_fixed_append_lists (struct pbs_ds_backup *b, int wid,
                                             size_t ndigests,
                                             const char *const *digest_hex,
                                             size_t noffsets,
                                             const uint64_t *offsets);
/* §3.6. */
extern int pbs_ds_backup_fixed_close (struct pbs_ds_backup *b, int wid,
                                      uint64_t chunk_count, uint64_t size,
                                      const char *csum_hex);
/* §3.7: CRC verified, written atomically. */
extern int pbs_ds_backup_blob (struct pbs_ds_backup *b, const char *name,
                               uint64_t encoded_size, const uint8_t *blob,
                               size_t len);
/* §3.8: rewrites the manifest with unprotected.chunk_upload_stats. */
extern int pbs_ds_backup_finish (struct pbs_ds_backup *b);
/* End the session: an unfinished snapshot directory is removed ("removing
 * unfinished backup"), locks released.  NULL: no-op. */
extern void pbs_ds_backup_end (struct pbs_ds_backup *b);

/* ---------------------------------------------- reader environment */

struct pbs_ds_reader; /* opaque */

/* §3.10: the snapshot must exist; a shared lock is held while reading. */
extern struct pbs_ds_reader *pbs_ds_reader_start (struct pbs_datastore *ds,
                                                  const char *auth_id,
                                                  const char *ns,
                                                  const char *type,
                                                  const char *id,
                                                  int64_t time);
/* A file; for an index, its digests become allowed chunk downloads. */
extern int pbs_ds_reader_download (struct pbs_ds_reader *r, const char *name,
                                   uint8_t **data, size_t *len);
/* 401 "download chunk <hex> not allowed" unless allowed. */
extern int pbs_ds_reader_chunk (struct pbs_ds_reader *r,
                                const char *digest_hex, uint8_t **blob,
                                size_t *len);
extern void pbs_ds_reader_end (struct pbs_ds_reader *r);

#endif
