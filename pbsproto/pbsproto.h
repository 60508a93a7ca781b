/* pbsproto.h -- Proxmox Backup Server formats and transports.
 *
 * Two layers, as in casync's caformat/caremote split:
 *  - formats (pure functions over caller buffers, no I/O, fuzzable): blobs,
 *    fixed indexes, manifests, key files, digests, names and times;
 *  - repositories: a local datastore directory in PBS's on-disk layout, or a
 *    PBS server over HTTPS + HTTP/2.  Both offer the same backup session
 *    (struct pbs_backup, a 1:1 image of PBS's backup protocol) and reader
 *    session (struct pbs_reader), so the tool has one code path above them.
 *
 * Facts: docs/pbs-protocol.md (section numbers below refer to it).
 *
 * Errors: calls return -1 or NULL; pbs_errmsg(), pbs_errno() and
 * pbs_http_status() describe the calling thread's last failure.  A
 * message never starts with the name the caller passed (the repository
 * SPEC or path, a snapshot, a file name): the caller puts it in front.
 * A path inside a message is that of another file (below a datastore).
 * Threads: format functions are reentrant.  A repository, backup or reader
 * handle is used by one thread at a time unless a call says otherwise.
 */
#ifndef PBSPROTO_H
#define PBSPROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PBS_DIGEST_LEN 32
#define PBS_CHUNK_SIZE (4u * 1024 * 1024) /* fixed by the server for .fidx */
/* A DataBlob's header (docs/pbs-protocol.md §5.2): magic, CRC32; encrypted ones add IV, tag. */
#define PBS_BLOB_HEADER_LEN 12u
#define PBS_BLOB_ENCRYPTED_HEADER_LEN 44u
/* The largest chunk (raw bytes) the upload schema accepts, and the largest
 * decoded blob this code reads (a chunk, a manifest). */
#define PBS_CHUNK_MAX_RAW (16u * 1024 * 1024)
#define PBS_BLOB_MAX_ENCODED (PBS_CHUNK_MAX_RAW + PBS_BLOB_ENCRYPTED_HEADER_LEN)
/* The snapshot's manifest: its presence marks a finished snapshot. */
#define PBS_MANIFEST_NAME "index.json.blob"

/* ---------------------------------------------------------------- errors */

extern const char *pbs_errmsg (void);
/* EINVAL bad input, EBADMSG corrupt data, EACCES auth/permission/key,
 * ENOENT missing, EEXIST exists, EBUSY locked, ENOSPC disk full,
 * ECONNRESET/ETIMEDOUT/EPROTO transport, ENOMEM, EIO. */
extern int pbs_errno (void);
/* HTTP status of the last failed server call (0: none, e.g. local store). */
extern int pbs_http_status (void);
/* True if the last failure is worth a fresh session: broken connection,
 * timeout or 5xx.  4xx and local errors are not. */
extern bool pbs_error_is_transient (void);

/* ------------------------------------------------------ keys and digests */

struct pbs_key; /* opaque: enc_key, id_key, fingerprint (§5.3) */

/* A key from its 32 raw bytes. */
extern struct pbs_key *pbs_key_from_raw (const uint8_t raw[32]);
/* Load a PBS key file (§5.4).  PASSWORD may be NULL for kdf none.  A wrong
 * password gives EACCES "wrong password"; a file that is not a key file
 * gives EINVAL naming the file. */
extern struct pbs_key *pbs_key_load (const char *path, const char *password);
/* Create a new random key file (mode 0600, written atomically).  KDF is
 * "none", "scrypt" or "pbkdf2"; PASSWORD (>= 5 bytes) unless kdf none. */
extern int pbs_key_create (const char *path, const char *kdf,
                           const char *password);
/* pbs_key_create with an optional HINT (stored in the file, shown by
 * `key show`; NULL: none). */
extern int pbs_key_create_hint (const char *path, const char *kdf,
                                const char *password, const char *hint);
/* Describe a key file without decrypting it: malloc'd JSON text
 * {"path","kdf","created","modified","fingerprint","hint"}: kdf "none",
 * "scrypt" or "pbkdf2"; created/modified epoch seconds; fingerprint and
 * hint strings or null (as proxmox-backup-client's `key show`). */
extern char *pbs_key_show (const char *path);
extern void pbs_key_free (struct pbs_key *k); /* cleanses; NULL ok */
extern void pbs_key_fingerprint (const struct pbs_key *k, uint8_t out[32]);
/* "aa:bb:..." (95 chars + NUL). */
extern void pbs_fingerprint_string (const uint8_t fp[32], char out[96]);

/* Chunk digest: sha256(data), or sha256(data || id_key) with a key. */
extern void pbs_chunk_digest (const struct pbs_key *key, const void *data,
                              size_t len, uint8_t out[PBS_DIGEST_LEN]);
/* Digest of one PBS_CHUNK_SIZE chunk of zeros for KEY (NULL: unencrypted,
 * bb9f8df6...3af8).  Precomputed when the key is made: costs nothing. */
extern void pbs_zero_chunk_digest (const struct pbs_key *key,
                                   uint8_t out[PBS_DIGEST_LEN]);
/* Digest of LEN zero bytes (e.g. a short last chunk) without allocating
 * them.  0 or -1. */
extern int pbs_zeros_digest (const struct pbs_key *key, uint64_t len,
                             uint8_t out[PBS_DIGEST_LEN]);
extern void pbs_digest_hex (const uint8_t d[PBS_DIGEST_LEN], char out[65]);
/* Lower- or upper-case 64 hex chars -> 32 bytes.  Returns 0 or -1. */
extern int pbs_digest_parse (const char *hex, uint8_t out[PBS_DIGEST_LEN]);

/* ------------------------------------------------------------ DataBlob */

enum pbs_blob_kind {
  PBS_BLOB_PLAIN,
  PBS_BLOB_ZSTD,
  PBS_BLOB_ENCRYPTED,
  PBS_BLOB_ENCRYPTED_ZSTD,
};

/* Encode DATA as a DataBlob (§5.2): zstd level 1 kept only when smaller,
 * encrypted with KEY if non-NULL, CRC32 over the payload.  *OUT is
 * malloc'd; caller frees. */
extern int pbs_blob_encode (const void *data, size_t len,
                            const struct pbs_key *key, bool compress,
                            uint8_t **out, size_t *outlen);
/* Decode a DataBlob: checks magic and CRC, decompresses (output capped at
 * MAX_LEN), decrypts with KEY (EACCES if encrypted and KEY is NULL).
 * *OUT is malloc'd; caller frees. */
extern int pbs_blob_decode (const uint8_t *blob, size_t len,
                            const struct pbs_key *key, size_t max_len,
                            uint8_t **out, size_t *outlen);
/* As pbs_blob_decode, without allocating the result and without checking
 * the CRC: the caller must check the result's digest (pbs_chunk_digest),
 * as PBS's own client does.  *DATA points into BLOB itself for an
 * unencrypted, uncompressed blob, else into BUF, where the data was
 * decoded (at most CAP bytes, else EBADMSG).  *DATA stays valid while
 * both BLOB and BUF do.  Any thread. */
extern int pbs_blob_decode_to (const uint8_t *blob, size_t len,
                               const struct pbs_key *key, uint8_t *buf,
                               size_t cap, const uint8_t **data,
                               size_t *dlen);
/* The blob's kind from its magic, or -1 (EBADMSG) if it is not a blob. */
extern int pbs_blob_kind (const uint8_t *blob, size_t len);
/* Verify the blob's CRC: 0 ok, -1 (EBADMSG) if wrong. */
extern int pbs_blob_check_crc (const uint8_t *blob, size_t len);

/* ------------------------------------------------------- fixed index */

struct pbs_fidx {
  uint8_t uuid[16];
  int64_t ctime;
  uint8_t csum[32];    /* as stored in the header (not trusted by readers) */
  uint64_t size;       /* image bytes */
  uint64_t chunk_size; /* 4 MiB for every index made over the protocol */
  size_t count;        /* ceil(size / chunk_size) */
  uint8_t (*digest)[PBS_DIGEST_LEN];
};

/* A new index of SIZE bytes: random uuid, ctime now, zeroed digests. */
extern struct pbs_fidx *pbs_fidx_new (uint64_t size, uint64_t chunk_size);
/* Parse a .fidx file (§5.6); the length must be exact. */
extern struct pbs_fidx *pbs_fidx_parse (const uint8_t *buf, size_t len);
/* Serialise; recomputes the header csum from the digests first. */
extern int pbs_fidx_encode (struct pbs_fidx *idx, uint8_t **out,
                            size_t *outlen);
/* sha256 over all digests in order: the index csum of §3.6 / §5.6. */
extern void pbs_fidx_csum (const struct pbs_fidx *idx, uint8_t out[32]);
/* The same csum computed digest by digest, for a writer that does not
 * hold the whole index: new, add each digest in index order, final (which
 * frees it; -1 only if OpenSSL fails).  free: give up without a result. */
struct pbs_fidx_csum_ctx; /* opaque */
extern struct pbs_fidx_csum_ctx *pbs_fidx_csum_new (void);
extern void pbs_fidx_csum_add (struct pbs_fidx_csum_ctx *c,
                               const uint8_t digest[PBS_DIGEST_LEN]);
extern int pbs_fidx_csum_final (struct pbs_fidx_csum_ctx *c, uint8_t out[32]);
extern void pbs_fidx_csum_free (struct pbs_fidx_csum_ctx *c);
extern void pbs_fidx_free (struct pbs_fidx *idx);

/* ------------------------------------------------------------ manifest */

struct pbs_manifest; /* opaque; index.json.blob (§5.8) */

struct pbs_manifest_file {
  const char *filename;   /* borrowed */
  const char *crypt_mode; /* "none", "encrypt" or "sign-only" */
  uint64_t size;
  uint8_t csum[32];
};

#define PBS_MANIFEST_NO_VERIFY 0x1u /* parse without key/signature checks */

extern struct pbs_manifest *pbs_manifest_new (const char *type,
                                              const char *id, int64_t time);
/* Parse manifest JSON (already taken out of its blob).  Unless
 * PBS_MANIFEST_NO_VERIFY: a manifest with a key-fingerprint needs KEY
 * ("missing key - manifest was created with key ..."), the fingerprint
 * must be KEY's and the signature must match. */
extern struct pbs_manifest *pbs_manifest_parse (const char *json, size_t len,
                                                const struct pbs_key *key,
                                                unsigned flags);
extern void pbs_manifest_free (struct pbs_manifest *m);
extern const char *pbs_manifest_type (const struct pbs_manifest *m);
extern const char *pbs_manifest_id (const struct pbs_manifest *m);
extern int64_t pbs_manifest_time (const struct pbs_manifest *m);
/* Full key fingerprint string from unprotected.key-fingerprint, or NULL. */
extern const char *pbs_manifest_key_fingerprint (const struct pbs_manifest *m);
extern int pbs_manifest_add_file (struct pbs_manifest *m, const char *name,
                                  const char *crypt_mode, uint64_t size,
                                  const uint8_t csum[32]);
extern size_t pbs_manifest_file_count (const struct pbs_manifest *m);
/* File I; 0 or -1.  FIND: by name, -1 (ENOENT) if absent. */
extern int pbs_manifest_file (const struct pbs_manifest *m, size_t i,
                              struct pbs_manifest_file *out);
extern int pbs_manifest_find (const struct pbs_manifest *m, const char *name,
                              struct pbs_manifest_file *out);
/* unprotected[KEY] as malloc'd JSON text, or NULL (ENOENT) if absent. */
extern char *pbs_manifest_get_unprotected (const struct pbs_manifest *m,
                                           const char *key);
/* Set unprotected[KEY] to the JSON value JSON_TEXT (parsed; EINVAL if bad). */
extern int pbs_manifest_set_unprotected (struct pbs_manifest *m,
                                         const char *key,
                                         const char *json_text);
/* Serialise as PBS writes it (sorted keys, pretty).  With KEY: adds
 * unprotected.key-fingerprint and the HMAC signature (§5.5).
 * *OUT is malloc'd, NUL-terminated. */
extern int pbs_manifest_to_json (struct pbs_manifest *m,
                                 const struct pbs_key *key, char **out);
/* The canonical JSON that is signed (§5.5); malloc'd. */
extern char *pbs_manifest_canonical (const struct pbs_manifest *m);

/* ------------------------------------------------- names and times */

/* The last second a snapshot name can hold: 9999-12-31T23:59:59Z (PBS
 * prints times as a four-digit year). */
#define PBS_TIME_MAX INT64_C (253402300799)
/* "2024-06-05T15:06:40Z" (21 bytes with NUL), as PBS names snapshots. */
extern void pbs_time_to_rfc3339 (int64_t t, char out[21]);
/* Accepts epoch seconds or RFC 3339 (Z or +hh:mm) from 1970 up to
 * PBS_TIME_MAX; anything else is EINVAL.  0 or -1. */
extern int pbs_parse_time (const char *s, int64_t *out);
extern bool pbs_valid_safe_id (const char *s);    /* store, archive names */
extern bool pbs_valid_backup_id (const char *s);  /* [A-Za-z0-9_][A-Za-z0-9._-]* */
extern bool pbs_valid_backup_type (const char *s); /* vm, ct, host */
extern bool pbs_valid_ns (const char *s);          /* "" or a/b/c, <= 7 levels */

/* ------------------------------------------------------- repositories */

struct pbs_repo; /* opaque */

/* How a local push makes a snapshot durable before its manifest appears:
 * fsync what this backup wrote (the default), syncfs() (PBS's default
 * sync level), or leave it to the kernel's writeback. */
enum pbs_sync_level {
  PBS_SYNC_OWN = 0,
  PBS_SYNC_FILESYSTEM,
  PBS_SYNC_NONE,
};

/* Everything a repository depends on comes in here: the library reads no
 * environment variable and keeps no process-wide setting. */
struct pbs_repo_opts {
  /* Remote only; the tool reads them from options and the environment
   * (PBS_PASSWORD, PBS_FINGERPRINT, ALL_PROXY, ...).  Never logged. */
  const char *secret;      /* password or API token secret */
  const char *fingerprint; /* pinned "aa:bb:..." or NULL */
  const char *ca_file;     /* extra CA bundle (tests) or NULL */
  /* HTTP proxy for every connection (CONNECT tunnels), in the form
   * proxmox-backup-client reads from ALL_PROXY, whose name its errors
   * use: "[http://][USER:PASS@]HOST[:PORT]".  NULL or "": none. */
  const char *proxy;
  /* A descriptor that, once readable, makes every network wait give up
   * with ECANCELED ("interrupted", not transient): a signal handler
   * writes to a pipe whose read end this is.  0 (as in zeroed options;
   * descriptor 0 is stdin) or negative: none. */
  int cancel_fd;
  /* Local only. */
  enum pbs_sync_level sync;
  bool quiet;
  /* Local only: make the datastore (its .chunks tree) if PATH holds none.
   * Only a real backup asks for it; a listing, a restore or a dry run of a
   * mistyped path must not leave 65536 directories behind. */
  bool create;
};

/* Open a repository.  A SPEC containing '/' is a local datastore directory
 * (created with its .chunks tree only with OPTS->create; otherwise a path
 * without one is ENOENT "no datastore here ..."); anything else is
 * [[USER@REALM[!TOKEN]@]HOST[:PORT]:]DATASTORE (§2.3). */
extern struct pbs_repo *pbs_repo_open (const char *spec,
                                       const struct pbs_repo_opts *opts);
extern void pbs_repo_close (struct pbs_repo *r); /* NULL: no-op */
extern bool pbs_repo_is_local (const struct pbs_repo *r);
/* Application bytes written to the server so far (TLS payload, all
 * connections of R); 0 for a local datastore. */
extern uint64_t pbs_repo_bytes_sent (const struct pbs_repo *r);

struct pbs_snapshot {
  char *ns;      /* "" = root */
  char *type;
  char *id;
  int64_t time;
  bool finished; /* has index.json.blob */
  bool protected_;
  uint64_t size; /* sum of file sizes from the manifest (0 if unknown) */
  size_t nfiles;
  char **files;  /* file names */
  char *owner;   /* or NULL */
  char *verify_state; /* "ok", "failed" or NULL */
  char *comment;      /* first line of the notes, or NULL */
  char *fingerprint;  /* key fingerprint or NULL */
};

/* All snapshots of namespace NS (NULL or "" = root), optionally only of one
 * group (TYPE and ID non-NULL), sorted by type, id, time. */
extern int pbs_repo_snapshots (struct pbs_repo *r, const char *ns,
                               const char *type, const char *id,
                               struct pbs_snapshot **out, size_t *n);
extern void pbs_snapshots_free (struct pbs_snapshot *s, size_t n);

/* Protect (PROTECT true) or unprotect a snapshot, as PBS's
 * PUT admin/datastore/{store}/protected: a protected snapshot is never
 * pruned or removed.  The snapshot must exist and no session may hold it
 * (end the backup session first).  0 or -1. */
extern int pbs_repo_set_protected (struct pbs_repo *r, const char *ns,
                                   const char *type, const char *id,
                                   int64_t time, bool protect);

/* ------------------------------------- repair (local datastores only) */

/* What PBS's verify job does to a damaged store, for `check --repair`.
 * These need direct access to the datastore: on a remote repository they
 * fail with ENOTSUP "repair needs direct access to the datastore; run
 * PBS's verify job".  Thread-safe on a local repository. */

/* 1 if the chunk file of DIGEST is in the store, 0 if not, -1 on error. */
extern int pbs_repo_has_chunk (struct pbs_repo *r,
                               const uint8_t digest[PBS_DIGEST_LEN]);
/* Move the damaged chunk DIGEST aside as PBS's rename_corrupted_chunk:
 * <hex>.0.bad, .1.bad, ... .9.bad (the last one is replaced when all ten
 * exist).  Every index that references DIGEST then lacks it, so the next
 * backup that has its data stores it again.  1 renamed (*NEW_PATH, unless
 * NEW_PATH is NULL, the malloc'd new file name), 0 no such chunk, -1. */
extern int pbs_repo_rename_bad_chunk (struct pbs_repo *r,
                                      const uint8_t digest[PBS_DIGEST_LEN],
                                      char **new_path);
/* Record the result of checking a snapshot in its manifest as PBS does:
 * unprotected.verify_state = {"state": "ok"|"failed", "upid": <a UPID of a
 * verify_snapshot task>} (PBS's SnapshotVerifyState).  A snapshot whose
 * state is "failed" is no base for the next backup of its group: that
 * backup stores every chunk again.  The manifest's signature stays valid
 * (it covers only the protected part).  EBUSY while a backup writes the
 * snapshot.  0 or -1. */
extern int pbs_repo_set_verify_state (struct pbs_repo *r, const char *ns,
                                      const char *type, const char *id,
                                      int64_t time, bool ok);

/* ------------------------------------------------- backup session (§3) */

struct pbs_backup; /* opaque */

/* Start a backup of group TYPE/ID in NS at TIME (server rules §1.3, §4:
 * group lock, owner, time strictly newer than the base). */
extern struct pbs_backup *pbs_backup_start (struct pbs_repo *r,
                                            const char *ns, const char *type,
                                            const char *id, int64_t time);
/* Local datastore: what the start cleaned up in the group (an unfinished
 * snapshot no process held, a group without owner left by a failed first
 * backup), one line each; NULL if nothing (and always for a server). */
extern const char *pbs_backup_notes (struct pbs_backup *b);
/* The base snapshot's time, or -1 if there is none (§3.1, §4.2). */
extern int pbs_backup_previous_time (struct pbs_backup *b, int64_t *out);
/* A file of the base snapshot (§3.2).  For a .fidx this also makes its
 * digests known in this session (server and client side); on a local
 * repository only those whose chunk file exists (a chunk moved aside by a
 * repair must be stored again).  ENOENT if there is no base or no such
 * file.  *DATA malloc'd. */
extern int pbs_backup_download_previous (struct pbs_backup *b,
                                         const char *name, uint8_t **data,
                                         size_t *len);
/* The base's index NAME (.fidx), parsed once (a local datastore hands up
 * the parse it makes anyway), its digests known as with
 * pbs_backup_download_previous.  The caller still checks it against the
 * base manifest.  Borrowed: valid until pbs_backup_free.  NULL on error
 * (ENOENT: no base or no such index). */
extern const struct pbs_fidx *pbs_backup_previous_index (struct pbs_backup *b,
                                                         const char *name);
/* Open a fixed index writer (§3.3).  REUSE_CSUM: the csum of the base's
 * index of that name (32 bytes, pbs_fidx_csum), or NULL.  Returns the wid
 * (>= 1) or -1. */
extern int pbs_backup_fixed_index (struct pbs_backup *b, const char *name,
                                   uint64_t size,
                                   const uint8_t *reuse_csum);
/* Is DIGEST usable by reference in this session (uploaded or registered
 * through a downloaded previous index)?  Thread-safe (may be called from
 * hashing threads while another thread uploads). */
extern bool pbs_backup_known (struct pbs_backup *b,
                              const uint8_t digest[PBS_DIGEST_LEN]);
/* Upload one chunk (§3.4): BLOB is the encoded DataBlob of SIZE raw bytes.
 * May be asynchronous (remote): errors can surface at a later call.  The
 * digest is known afterwards.  BLOB is copied.  DIGEST must be the
 * chunk digest of the SIZE bytes encoded into BLOB: a server checks that,
 * a local repository trusts it (it is computed in this process). */
extern int pbs_backup_fixed_chunk (struct pbs_backup *b, int wid,
                                   const uint8_t digest[PBS_DIGEST_LEN],
                                   uint32_t size, const uint8_t *blob,
                                   size_t blob_len);
/* The same, but BLOB (malloc'd) is taken over and freed by the library,
 * on success and on error: a remote session sends it without a copy. */
extern int pbs_backup_fixed_chunk_take (struct pbs_backup *b, int wid,
                                        const uint8_t digest[PBS_DIGEST_LEN],
                                        uint32_t size, uint8_t *blob,
                                        size_t blob_len);
/* Place N known digests at chunk start OFFSETS (§3.5).  May be batched;
 * a remote backend sends it only after the chunks' uploads succeeded. */
extern int pbs_backup_fixed_append (struct pbs_backup *b, int wid, size_t n,
                                    const uint8_t (*digests)[PBS_DIGEST_LEN],
                                    const uint64_t *offsets);
/* Close the writer (§3.6): CSUM is the index csum (sha256 over digests). */
extern int pbs_backup_fixed_close (struct pbs_backup *b, int wid,
                                   uint64_t chunk_count, uint64_t size,
                                   const uint8_t csum[32]);
/* Store an encoded blob NAME (§3.7); the manifest is index.json.blob. */
extern int pbs_backup_blob (struct pbs_backup *b, const char *name,
                            const uint8_t *blob, size_t len);
/* Finish (§3.8).  Only after success does the snapshot count. */
extern int pbs_backup_finish (struct pbs_backup *b);
/* End the session.  Unless finished, the server (or local store) removes
 * the unfinished snapshot.  NULL: no-op. */
extern void pbs_backup_free (struct pbs_backup *b);


/* ------------------------------------------------- reader session (§3.10) */

struct pbs_reader; /* opaque */

extern struct pbs_reader *pbs_reader_start (struct pbs_repo *r,
                                            const char *ns, const char *type,
                                            const char *id, int64_t time);
/* A file of the snapshot (manifest blob, .fidx, ...).  *DATA malloc'd. */
extern int pbs_reader_download (struct pbs_reader *rd, const char *name,
                                uint8_t **data, size_t *len);
/* The stored DataBlob of a chunk.  *BLOB malloc'd. */
extern int pbs_reader_chunk (struct pbs_reader *rd,
                             const uint8_t digest[PBS_DIGEST_LEN],
                             uint8_t **blob, size_t *len);
/* A hint that pbs_reader_chunk will soon ask for DIGEST: a remote session
 * starts downloading it now, on a stream of its own, so that the round
 * trips of consecutive chunks overlap.  1 if the download was started, 0
 * if not (enough downloads in flight, or the local store, which has no
 * round trips), -1 on error.  Errors of the download surface at
 * pbs_reader_chunk. */
extern int pbs_reader_prefetch (struct pbs_reader *rd,
                                const uint8_t digest[PBS_DIGEST_LEN]);
extern void pbs_reader_free (struct pbs_reader *rd); /* NULL: no-op */

#ifdef __cplusplus
}
#endif
#endif /* PBSPROTO_H */
