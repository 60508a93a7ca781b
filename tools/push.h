/* push.h -- what push, restore, verify and snapshots share: repository
 * arguments, keys, the known-digest set, the chunk pipeline, the chunk plan
 * and the identity record of a pushed chain (docs/incremental-identity.md).
 *
 * Calls that take a struct cli_err (cli.h) print nothing and leave the
 * error for the command to print; the cmd-*.c functions declared here
 * print the one-line "qcow2pbs: CONTEXT: message" themselves. */
#ifndef QCOW2PBS_PUSH_H
#define QCOW2PBS_PUSH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>

#include "pbsproto.h"
#include "qcowlib.h"

struct cli_err; /* cli.h */

/* ------------------------------------------------ repo-args.c */

/* Load --keyfile PATH; the password (only for a kdf other than none) comes
 * from PBS_ENCRYPTION_PASSWORD or a TTY prompt, never argv.  NULL with
 * ERR. */
struct pbs_key *push_load_key (const char *path, struct cli_err *err);
/* "fa:..:12" of KEY, or NULL for no key: malloc'd. */
char *push_key_fingerprint (const struct pbs_key *key);

/* "vm/ID/2024-06-05T15:06:40Z" or "vm/ID/EPOCH" -> parts (TYPE and ID
 * malloc'd).  Returns 0 or -1 with ERR. */
int push_parse_snapshot (const char *spec, char **type, char **id,
                         int64_t *time, struct cli_err *err);

/* What restore and verify read a snapshot through. */
struct snapshot_source {
  struct pbs_key *key;   /* NULL without --keyfile */
  struct pbs_repo *repo;
  struct pbs_reader *rd;
};
/* Load KEYFILE (if not NULL), open the repository and a reader session of
 * SNAPSHOT ("vm/ID/TIME") in NS.  Returns 0, or -1 with ERR.  Either way
 * the caller ends with snapshot_source_close. */
int snapshot_source_open (struct snapshot_source *src, const char *snapshot,
                          const char *repo_spec, const char *fingerprint,
                          const char *ns, const char *keyfile,
                          struct cli_err *err);
void snapshot_source_close (struct snapshot_source *src);
/* "drive-scsi0" / "drive-scsi0.img" / "drive-scsi0.img.fidx" ->
 * "drive-scsi0.img.fidx" (malloc'd), or NULL if not a safe name. */
char *push_archive_name (const char *arg);

/* push-disks.c: --disk NAME=L0,L1,... (the --chain syntax, oldest first).
 * Each call appends one disk to *LIST; 0, or the exit status after a
 * message (2 usage, 1 error). */
struct tar_member;
struct push_disk {
  char *name;                 /* archive name, drive-scsi0.img.fidx */
  struct qcow_open_opts oo;   /* oo.chain: the layers */
  /* --from-archive: oo.chain[i] is the tar file, spans[i] member i's
   * bytes in it, member[i] what its index says (owned by the index). */
  struct qcow_span *spans;
  const struct tar_member **member;
};
/* One --disk ARG into *LIST.  0, or -1 with ERR (a usage error). */
int push_disk_option (struct push_disk **list, size_t *n, const char *arg,
                      struct cli_err *err);
/* --from-archive ARCHIVE: the layers of every --disk are members of the
 * uncompressed tar ARCHIVE, read in place.  *IX (the caller's, freed after
 * the disks) gets its index.  0, or -1 with ERR. */
struct tar_index;
int push_disks_from_archive (struct push_disk *list, size_t n,
                             const char *archive, struct tar_index *ix,
                             struct cli_err *err);
void push_disks_free (struct push_disk *list, size_t n);
/* restore-blob.c: restore ARG, a blob archive of the snapshot
 * ("qemu-server.conf" or "qemu-server.conf.blob"), decrypted, to OUT_PATH
 * ("-": stdout; an existing file only with FORCE).  0 done, 1 when the
 * snapshot has no such blob (ARG may name a disk), -1 with ERR. */
struct pbs_reader;
int restore_blob (struct pbs_reader *rd, const struct pbs_key *key,
                  const char *snap, const char *arg, const char *out_path,
                  bool force, struct cli_err *err);
/* "NAME=IMAGE" or "IMAGE" (-> default name drive-scsiN for argument N):
 * *NAME malloc'd archive name (.img.fidx), *IMAGE borrowed. */
int push_parse_image_arg (const char *arg, size_t n, char **name,
                          const char **image, struct cli_err *err);

/* Download and decode SNAPSHOT's manifest through a reader session; with
 * VERIFY the signature is checked against KEY (a keyed manifest without a
 * key is "missing key").  Returns the manifest, or NULL with ERR. */
struct pbs_manifest *push_fetch_manifest (struct pbs_reader *rd,
                                          const struct pbs_key *key,
                                          bool verify, const char *context,
                                          struct cli_err *err);
/* Download ARCHIVE (.fidx) through READER (or, when B is non-NULL, the
 * base of backup session B), parse it and check its csum and size against
 * the manifest entry.  Returns the index, or NULL with ERR. */
struct pbs_fidx *push_fetch_index (struct pbs_reader *rd,
                                   struct pbs_backup *b,
                                   const struct pbs_manifest *m,
                                   const char *archive, const char *context,
                                   struct cli_err *err);

/* Compare archive NAME of a snapshot (manifest M, read through RD) with
 * the merged disk of IMAGE (or OO's --chain), printing the differing
 * ranges or "NAME: identical" on stdout, or with ARCHIVES (a JSON
 * array, else NULL) appending its result there (cmd-verify.c).
 * 0 identical, 1 different, -1 error (printed). */
struct json_t;
int verify_archive (struct pbs_reader *rd, const struct pbs_manifest *m,
                    const struct pbs_key *key, const char *snap,
                    const char *name, const char *image,
                    const struct qcow_open_opts *oo,
                    struct json_t *archives);

/* "vm/ID/TIME" (malloc'd). */
char *push_snapshot_name (const char *type, const char *id, int64_t t);

/* ------------------------------------------------ push-known.c */

/* Digests the pipeline need not encode (a hint, thread-safe): base
 * indexes plus a ring of recent claims.  4 bytes per base chunk. */
struct digest_set;
struct digest_set *digest_set_new (void);
void digest_set_free (struct digest_set *s);
/* Add a base index's digests by reference (DIGEST must outlive S). */
int digest_set_add_base (struct digest_set *s,
                         const uint8_t (*digest)[PBS_DIGEST_LEN], size_t n);
/* Claim D; true if it was neither a base digest nor claimed recently. */
bool digest_set_add (struct digest_set *s, const uint8_t d[PBS_DIGEST_LEN]);

/* ------------------------------------------------ chunk-pipeline.c */

/* One 4 MiB chunk of work: read (or zero-fill) LEN bytes at OFF, digest,
 * and -- with ENCODE, if the digest was not yet claimed in KNOWN -- encode
 * the blob.  Results come back in submission order. */
struct chunk_job {
  uint64_t index;   /* chunk number */
  uint64_t off;
  uint32_t len;
  bool zero_fill;   /* do not read: the chunk is LEN zero bytes */
  /* Decode mode (restore): the stored blob (malloc'd, the pipeline frees
   * it) and the digest its data must have. */
  uint8_t *blob;
  size_t blob_len;
  uint8_t expect[PBS_DIGEST_LEN];
};

struct chunk_result {
  struct chunk_job job;
  uint8_t digest[PBS_DIGEST_LEN];
  uint8_t *blob;    /* malloc'd encoded chunk or NULL (not claimed) */
  size_t blob_len;
  const uint8_t *data; /* the raw bytes (valid until the next call) */
};

struct chunk_pipeline_opts {
  struct qcow_chain *chain;
  const struct pbs_key *key; /* digests and encryption */
  bool encode;               /* produce blobs for unclaimed digests */
  bool keep_data;            /* keep raw bytes for the consumer */
  struct digest_set *known;  /* claimed digests (with ENCODE) */
  struct pbs_backup *session; /* or NULL: digests it knows are not encoded */
  /* Decode mode: jobs carry blobs instead of disk offsets; each is
   * checked (crypt mode ENCRYPTED, digest, length LEN) and decoded. */
  bool decode, encrypted;
  unsigned threads;          /* 0 = number of online CPUs */
  const char *context;       /* for error messages: the image */
  struct cli_err *err;       /* where a failure is described (required) */
  /* The job source: fills *JOB with the next job, returns false at end
   * (or on error, setting *FAILED after describing it in ERR).  Called on
   * the consumer's thread, without the pipeline's lock, so it may block
   * (e.g. download a chunk). */
  bool (*next_job) (void *opaque, struct chunk_job *job, bool *failed);
  void *opaque;
};

struct chunk_pipeline;
struct chunk_pipeline *chunk_pipeline_start (
    const struct chunk_pipeline_opts *opts);
/* The next result in job order: 1 = got one, 0 = end, -1 = error (in
 * OPTS->err, not printed).  The result's blob is owned by the caller.
 * chunk_pipeline_start's NULL also leaves its error there. */
int chunk_pipeline_next (struct chunk_pipeline *p, struct chunk_result *r);
/* Stop the workers and free everything (also after an error). */
void chunk_pipeline_free (struct chunk_pipeline *p);

/* ------------------------------------------------ push-plan.c */

enum chunk_plan {
  PLAN_READ = 0,   /* read from the chain and hash */
  PLAN_ZERO = 1,   /* full 4 MiB chunk that reads as zeros (metadata) */
  PLAN_REUSE = 2,  /* unchanged since the base: its digest is reused */
  PLAN_ZERO_DATA = 3, /* short last chunk of zeros: hashed, not read */
};

/* Mark, for each chunk of the merged disk, whether some byte of it is DATA
 * (1) or all of it reads as zeros from metadata alone (0).  *OUT is
 * malloc'd, one byte per chunk.  Both return 0, or -1 with the error in
 * *ERR (CONTEXT: message), printed by nobody yet. */
int plan_data_chunks (struct qcow_chain *c, const char *context,
                      uint8_t **out, uint64_t *nchunks, struct cli_err *err);
/* Add to TOUCHED (one byte per chunk of the top's size) the chunks that
 * layer DEPTH allocates (data or zero flag). */
int plan_touch_layer (struct qcow_chain *c, size_t depth, uint8_t *touched,
                      uint64_t nchunks, const char *context,
                      struct cli_err *err);

/* ------------------------------------------------ push-evidence.c */

/* What push records about one layer of a chain (oldest first). */
struct layer_identity {
  char *path;       /* a tar member: its name */
  char *realpath;   /* a tar member: the archive's */
  char *archive;    /* a tar member: the archive as named, else NULL */
  char tar_header_sha256[65]; /* a tar member: its headers' hash */
  uint64_t archive_offset;
  uint64_t dev, ino, size;
  int64_t mtime_ns, ctime_ns;
  uint64_t virtual_size;
  char header_sha256[65];
  bool has_data_file;
  bool block_device; /* writes change neither its size nor its times */
};

struct chain_identity {
  size_t n; /* layers, oldest first */
  struct layer_identity *layer;
};

/* 0, or -1 with the error in *ERR (not printed). */
int identity_collect (struct qcow_chain *c, struct chain_identity *out,
                      const char *context, struct cli_err *err);
/* The same for a chain read from tar members: MEMBER[i] (oldest first)
 * describes layer i, or is NULL for a file. */
int identity_collect_members (struct qcow_chain *c,
                              struct chain_identity *out,
                              const char *context,
                              const struct tar_member *const *member,
                              struct cli_err *err);
void identity_free (struct chain_identity *id);
/* Re-stat each layer: 0 if all are as collected, else -1 with a reason in
 * WHY (caller's buffer). */
int identity_recheck (const struct chain_identity *id, char *why,
                      size_t whylen);

/* The JSON record of one archive (malloc'd text):
 * {"index-csum","size","key-fingerprint","layers":[...]} */
char *identity_archive_json (const struct chain_identity *id,
                             const uint8_t csum[32], uint64_t size,
                             const char *key_fp);

/* Decide whether the base snapshot may be reused for ARCHIVE.  RECORD is
 * the base manifest's unprotected["qcow2pbs"] JSON text (or NULL).  On
 * success *BASE_LAYERS = how many oldest layers of CUR the base covers
 * (1..CUR->n) and 0 is returned; otherwise 1 with a reason in WHY. */
int identity_match (const char *record, const char *archive,
                    const struct chain_identity *cur,
                    const uint8_t base_csum[32], uint64_t base_size,
                    const char *key_fp, size_t *base_layers, char *why,
                    size_t whylen);

/* How the chain CUR of ARCHIVE relates to a snapshot's record: the same
 * layers, unchanged (SAME: that snapshot holds this state), a strict
 * prefix of its layers, unchanged (OLDER: the chain is older than that
 * snapshot), or anything else (no record, another key, a changed layer). */
enum identity_state { IDENTITY_OTHER, IDENTITY_SAME, IDENTITY_OLDER };
enum identity_state identity_compare (const char *record, const char *archive,
                                      const struct chain_identity *cur,
                                      const char *key_fp);

/* ------------------------------------------------ push-time.c */

/* Check the new snapshot's time *T against the group's snapshots (listed
 * through REPO): GIVEN (--backup-time) and not later than the base is an
 * error that says which case it is (equal, older, taken); without GIVEN, a
 * push in the same second as the newest snapshot waits for the next
 * second (one stderr line) and updates *T.  0, or -1 with CTX and MSG set
 * for the caller's one error line. */
struct pbs_repo;
int push_check_time (struct pbs_repo *repo, const char *ns, const char *type,
                     const char *id, int64_t *t, bool given, char *ctx,
                     size_t ctxlen, char *msg, size_t msglen);

/* ------------------------------------------------ push-unchanged.c */

/* The state of the chain being pushed (archive NAMES[i] made from IDS[i],
 * N archives) against manifest M's record: SAME if every archive is SAME
 * and M has no other archive, OLDER if each is SAME or OLDER, else OTHER. */
struct pbs_manifest;
enum identity_state push_state_vs (const struct pbs_manifest *m,
                                   const char *const *names,
                                   const struct chain_identity *const *ids,
                                   size_t n, const char *key_fp);
/* "type/id/time" (malloc'd) of the newest finished snapshot older than
 * BEFORE that holds this chain (SAME), searching at most 64; NULL if none
 * or on any error (best effort: only used to name it). */
char *push_find_holder (struct pbs_repo *repo, const char *ns,
                        const char *type, const char *id, int64_t before,
                        const char *const *names,
                        const struct chain_identity *const *ids, size_t n,
                        const char *key_fp);

/* ------------------------------------------------ push-progress.c */

struct progress {
  bool on;           /* progress is shown */
  bool lines;        /* as whole lines every 10 s (stderr not a TTY) */
  uint64_t total, done; /* disk bytes: the position */
  uint64_t io;       /* bytes really read or written (the rate) */
  const char *io_verb; /* "read" (default) or "written" */
  double start, last;
  const char *what;
};
void progress_init (struct progress *p, const char *what, uint64_t total);
void progress_add (struct progress *p, uint64_t bytes);
/* Bytes really read or written: the rate shown counts these, not the
 * position, which jumps over zero and reused chunks. */
void progress_io (struct progress *p, uint64_t bytes);
void progress_end (struct progress *p);

double push_now (void); /* monotonic seconds */

#endif
