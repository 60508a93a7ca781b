/* pbs-datastore.h -- a datastore directory in PBS's on-disk layout
 * (docs/pbs-protocol.md §6) and the server-side rules of the backup and
 * reader protocols (§3, §4).
 *
 * This is the "server" half.  The local repository backend calls it in
 * process; tests/server (the HTTPS test server) calls it for each request.
 * Both therefore write identical layouts and enforce identical rules.
 *
 * Errors: -1 (or NULL) with errno and a plain message in the calling
 * thread's error state (pbs_errno, pbs_errmsg): what failed, on what, and
 * why (strerror or the check's words); never starting with the datastore's
 * path.  Rule texts PBS's clients know ("backup timestamp is older than
 * last backup.") are kept.  Where PBS words an error its own way (Rust's
 * io::Error form, its handlers' texts) the datastore also records what
 * failed (pbs_ds_error_context) and the test server words it as PBS does.
 * Nothing here knows HTTP: the test server maps errno to PBS's statuses.
 *
 * Digests cross this API as 32 bytes; the hex of the protocol is parsed
 * (and its lower-case rule checked, §3.4, trap 5) by the test server.
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

/* What the calling thread's last datastore error was doing, for a caller
 * that must word it as PBS does (tests/server/ds-errors.c). */
enum pbs_ds_failure {
  PBS_DS_FAIL_OS,          /* WHAT on PATH failed */
  PBS_DS_FAIL_BARE,        /* an OS call; WHAT ("" or a phrase), no path */
  PBS_DS_FAIL_OPEN_FILE,   /* reading file PATH (a blob, a previous file) */
  PBS_DS_FAIL_OPEN_INDEX,  /* reading or parsing the fixed index PATH */
  PBS_DS_FAIL_LOAD_MANIFEST,   /* the base snapshot's manifest PATH */
  PBS_DS_FAIL_NO_MANIFEST,     /* finish without a manifest uploaded (PATH) */
  PBS_DS_FAIL_READ_CHUNK,  /* the chunk file PATH */
  PBS_DS_FAIL_OWNER,       /* backup: group owned by OWNER, not AUTH_ID */
  PBS_DS_FAIL_READER_OWNER, /* reader: the same check, worded apart */
  PBS_DS_FAIL_REUSE_CSUM,  /* reuse checksum not the base's (DETAIL, hex) */
};
struct pbs_ds_error_context {
  enum pbs_ds_failure failure;
  int os_errno;      /* the OS call's errno; 0: DETAIL is a check's words */
  char detail[300];  /* without os_errno: why (e.g. "file too large") */
  char what[128];
  char path[4096];
  char auth_id[256], owner[256];
};
/* The context of the calling thread's current error if a datastore call
 * set it, else NULL (the message alone says it all).  Valid until the
 * thread's next error. */
extern const struct pbs_ds_error_context *pbs_ds_error_context (void);

/* Open the datastore at PATH (messages do not repeat PATH).  CREATE: make PATH,
 * .chunks/0000..ffff and .lock if missing (as PBS does when a datastore is
 * created; .lock last, so an interrupted creation resumes).  A PATH that is a
 * file (ENOTDIR), a directory without .chunks when !CREATE (ENOENT), or a
 * non-empty directory without .chunks (EEXIST) is an error.  Finish syncs at
 * PBS_SYNC_OWN until pbs_datastore_set_sync says otherwise. */
extern struct pbs_datastore *pbs_datastore_open (const char *path,
                                                 bool create);
/* How finish makes a snapshot durable before its manifest appears (see
 * enum pbs_sync_level). */
extern void pbs_datastore_set_sync (struct pbs_datastore *ds,
                                    enum pbs_sync_level level);
extern void pbs_datastore_close (struct pbs_datastore *ds);
/* ON: backups clean up after failed ones, as a client that owns the store
 * should (the local backend): a failed first backup removes the group it
 * made, and a new one removes unfinished snapshots no process holds and
 * takes over a group left without owner file and snapshots, each with a
 * note (pbs_ds_backup_notes).  Off (default, the test server): PBS's own
 * behaviour, which keeps both. */
extern void pbs_datastore_set_client_cleanup (struct pbs_datastore *ds,
                                              bool on);

/* Insert an encoded chunk as PBS's insert_chunk (§6.3): temp file in the
 * chunk's directory, rename (no fsync here: see the sync level above); an
 * existing chunk of the same size is kept (and its atime touched) -- unlike
 * PBS only if it is intact (read back: equal to BLOB, or a valid CRC and,
 * unencrypted, the right digest); a damaged one is replaced.
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
/* Move a damaged chunk aside as PBS's verify job does
 * (rename_corrupted_chunk): .chunks/XXXX/<hex> becomes <hex>.N.bad, N the
 * first free of 0..9 (.9.bad is replaced when all exist).  The next backup
 * that has the data stores the chunk again.  1 renamed (*NEW_PATH, if not
 * NULL, the malloc'd new path), 0 no such chunk, -1 on error. */
extern int pbs_datastore_rename_bad_chunk (struct pbs_datastore *ds,
                                           const uint8_t digest[32],
                                           char **new_path);

/* Snapshot listing for the admin API and the local backend. */
extern int pbs_datastore_snapshots (struct pbs_datastore *ds, const char *ns,
                                    const char *type, const char *id,
                                    struct pbs_snapshot **out, size_t *n);

/* ---------------------------------------------- backup environment */

struct pbs_ds_backup; /* opaque */

/* The checks of §1.3 steps 6-10 and §4: namespace exists (ENOENT "namespace
 * not found"), group lock ("another backup is already running"), owner
 * (created with AUTH_ID; EACCES "backup group T/I belongs to O, not to
 * A: ...", context PBS_DS_FAIL_OWNER), base
 * selection (last finished snapshot; none if its verify_state failed), time
 * strictly newer than the base ("backup timestamp is older than last
 * backup."), snapshot dir created ("backup directory already exists."). */
extern struct pbs_ds_backup *pbs_ds_backup_start (struct pbs_datastore *ds,
                                                  const char *auth_id,
                                                  const char *ns,
                                                  const char *type,
                                                  const char *id,
                                                  int64_t time);
/* What start cleaned up in the group, one line each ("removed unfinished
 * snapshot vm/1/... (left by an interrupted backup; no process held it)",
 * "group vm/1 had no owner file and no snapshots ...: taking it over"),
 * or NULL.  Valid until pbs_ds_backup_end. */
extern const char *pbs_ds_backup_notes (const struct pbs_ds_backup *b);
/* -1 in *OUT when there is no base. */
extern int pbs_ds_backup_previous_time (struct pbs_ds_backup *b,
                                        int64_t *out);
/* §3.2: "no valid previous backup" without a base; a .fidx registers all
 * its digests as known with their lengths. */
extern int pbs_ds_backup_previous (struct pbs_ds_backup *b, const char *name,
                                   uint8_t **data, size_t *len);
/* The same for a .fidx, parsed (once per session, whichever of the two
 * reads it first), for a caller in this process that needs the index, not
 * its bytes.  Borrowed: valid until pbs_ds_backup_end. */
struct pbs_fidx;
extern const struct pbs_fidx *
pbs_ds_backup_previous_index (struct pbs_ds_backup *b, const char *name);
/* §3.3; returns the wid.  REUSE_CSUM (32 bytes, or NULL): an incremental
 * index, a clone of the base's index NAME, whose checksum (§3.6) must be
 * REUSE_CSUM. */
extern int pbs_ds_backup_fixed_index (struct pbs_ds_backup *b,
                                      const char *name, uint64_t size,
                                      const uint8_t *reuse_csum);
/* The checksum of the base's index NAME, with fixed_index's errors when
 * there is none. */
extern int pbs_ds_backup_base_csum (struct pbs_ds_backup *b, const char *name,
                                    uint8_t csum[32]);
/* §3.4: checks lengths, magic, (unencrypted) digest and size, stores the
 * chunk with a recomputed CRC, then registers it. */
extern int pbs_ds_backup_fixed_chunk (struct pbs_ds_backup *b, int wid,
                                      const uint8_t digest[32], uint64_t size,
                                      uint64_t encoded_size,
                                      const uint8_t *blob, size_t len);
/* The same for a chunk this process encoded itself from data whose
 * digest it computed (the local backend): DIGEST and SIZE are trusted, so
 * no re-hash, CRC check or zstd decode; the rules on sizes, magic and
 * header length, the writer's rules and insert's replace rules still
 * apply.  Bytes from outside (the test server) take the entry above. */
extern int pbs_ds_backup_fixed_chunk_trusted (struct pbs_ds_backup *b,
                                              int wid,
                                              const uint8_t digest[32],
                                              uint64_t size,
                                              const uint8_t *blob, size_t len);
/* §3.5: N pairs (DIGESTS[i] at OFFSETS[i]) applied one by one; a digest
 * must be known to the session. */
extern int pbs_ds_backup_fixed_append (struct pbs_ds_backup *b, int wid,
                                       size_t n, const uint8_t (*digests)[32],
                                       const uint64_t *offsets);
/* From now on, §3.6 close refuses an index that references a chunk
 * missing from the store ("chunk <hex> is missing from the datastore").
 * PBS checks nothing of the kind; the local backend turns it on so that a
 * local snapshot never lacks a chunk. */
extern void pbs_ds_backup_require_chunks (struct pbs_ds_backup *b);
/* §3.6: CSUM is the SHA-256 over the index's digests. */
extern int pbs_ds_backup_fixed_close (struct pbs_ds_backup *b, int wid,
                                      uint64_t chunk_count, uint64_t size,
                                      const uint8_t csum[32]);
/* §3.7: CRC verified, written atomically. */
extern int pbs_ds_backup_blob (struct pbs_ds_backup *b, const char *name,
                               uint64_t encoded_size, const uint8_t *blob,
                               size_t len);
/* §3.8: rewrites the manifest with unprotected.chunk_upload_stats. */
extern int pbs_ds_backup_finish (struct pbs_ds_backup *b);
/* End the session: an unfinished snapshot directory is removed ("removing
 * unfinished backup"), and with client cleanup a group this session
 * created (or took over) is removed again with its owner file unless a
 * snapshot was finished, so a failed first backup leaves nothing behind;
 * locks released.  NULL: no-op.
 *
 * Symlinks: the datastore is walked from its root directory with
 * O_NOFOLLOW at each step; a symlink inside it (a namespace, type, group,
 * snapshot or .chunks/XXXX directory, or a file read) is an error naming
 * it, never followed.  The datastore path itself may be a symlink. */
extern void pbs_ds_backup_end (struct pbs_ds_backup *b);

/* ------------------------------------ protection and notes (ds-protect.c) */

/* set_protection / update_protection: create or remove the snapshot's
 * ".protected" under a non-blocking exclusive snapshot lock.  ENOENT "snapshot
 * T/I/TIME does not exist!", busy while a session holds the snapshot. */
extern int pbs_ds_set_protection (struct pbs_datastore *ds, const char *ns,
                                  const char *type, const char *id,
                                  int64_t time, bool protect);
/* get_notes: the manifest's unprotected.notes ("" when absent), malloc'd. */
extern char *pbs_ds_get_notes (struct pbs_datastore *ds, const char *ns,
                               const char *type, const char *id,
                               int64_t time);
/* set_notes: rewrite the manifest with unprotected.notes = NOTES. */
extern int pbs_ds_set_notes (struct pbs_datastore *ds, const char *ns,
                             const char *type, const char *id, int64_t time,
                             const char *notes);

/* ------------------------------------------ verify state (ds-verify.c) */

/* What PBS's verify job writes after checking a snapshot: the manifest's
 * unprotected.verify_state = {"state": "ok"|"failed", "upid": UPID} (PBS's
 * SnapshotVerifyState), the UPID one of a "verify_snapshot" task of
 * AUTH_ID on this host.  Under a shared snapshot lock, as PBS's verify
 * (busy while a backup writes it).  A failed snapshot is no base for the
 * next backup of its group (§4.2). */
extern int pbs_ds_set_verify_state (struct pbs_datastore *ds,
                                    const char *auth_id, const char *ns,
                                    const char *type, const char *id,
                                    int64_t time, bool ok);

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
/* EACCES "download chunk <hex> not allowed" unless an index downloaded
 * in this session references DIGEST. */
extern int pbs_ds_reader_chunk (struct pbs_ds_reader *r,
                                const uint8_t digest[32], uint8_t **blob,
                                size_t *len);
extern void pbs_ds_reader_end (struct pbs_ds_reader *r);

#endif
