/* ds-internal.h -- shared by the datastore files (datastore.c,
 * chunk-store.c, ds-*.c) and the client-side known set of repo.c; not
 * installed.  The public face is pbs-datastore.h. */
#ifndef PBS_DS_INTERNAL_H
#define PBS_DS_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pbs-datastore.h"

/* How finish makes a snapshot durable before its manifest appears
 * (pbs_datastore_set_sync; see ds-backup.c). */
enum pbs__ds_sync {
  PBS_DS_SYNC_OWN,        /* "own" (default): fsync what this backup wrote */
  PBS_DS_SYNC_FILESYSTEM, /* "filesystem": syncfs(), PBS's default level */
  PBS_DS_SYNC_NONE,       /* "none": leave it to the kernel's writeback */
};

struct pbs_datastore {
  enum pbs__ds_sync sync;
  char *path;   /* as given, without trailing '/' */
  int dirfd;    /* O_DIRECTORY of PATH, for syncfs */
  int chunksfd; /* O_DIRECTORY of PATH/.chunks */
  pthread_mutex_t tmp_lock;
  uint64_t tmp_counter; /* unique temp names across threads */
  bool client_cleanup;  /* pbs_datastore_set_client_cleanup */
};

/* PBS's snapshot name regex ^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$ plus the
 * parsed time.  0 or -1. */
int pbs__ds_parse_snapshot_name (const char *name, int64_t *t);
/* "ns/a/ns/b" for "a/b" ("" for root), malloc'd; NULL (EINVAL) if the
 * namespace is not valid. */
char *pbs__ds_ns_path (const char *ns);
/* PATH/<ns path>/TYPE/ID, malloc'd. */
char *pbs__ds_group_path (struct pbs_datastore *ds, const char *ns,
                          const char *type, const char *id);
/* Open directory NAME below DIRFD (O_DIRECTORY, never through a symlink:
 * one planted in a datastore would send files outside it).  CREATE: mkdir
 * it first (*CREATED, if given, says whether it was made).  A symlink is
 * ELOOP "SHOWN is a symlink; ...".  The fd, or -1. */
int pbs__ds_open_dir (int dirfd, const char *name, const char *shown,
                      bool create, bool *created);
/* The directory REL ("ns/a/vm/100", "" = the root) below the datastore
 * root, walked one component at a time with pbs__ds_open_dir.  Its fd, or
 * -1 (ENOENT, ELOOP naming the symlink, ...). */
int pbs__ds_open_path (struct pbs_datastore *ds, const char *rel);
/* Read a whole (small) file, at most MAX bytes; ENOENT, EFBIG, EIO, ELOOP
 * (the file is a symlink: not followed). */
int pbs__ds_read_file (const char *path, size_t max, uint8_t **data,
                       size_t *len);
/* pwrite all of P at OFF; -1 with errno. */
int pbs__ds_write_all (int fd, const uint8_t *p, size_t len, uint64_t off);
/* Write DATA to DIR/NAME via a temp file + rename ("replace_file"). */
int pbs__ds_replace_file (const char *dir, const char *name,
                          const uint8_t *data, size_t len, bool sync);
/* Rewrite DIR's manifest M with unprotected[KEY] = VALUE (JSON text), as
 * PBS's update_manifest: the signature covers only the protected part, so
 * it stays valid.  "unable to update manifest blob - ..." on error. */
struct pbs_manifest;
int pbs__ds_update_unprotected (struct pbs_datastore *ds, const char *dir,
                                struct pbs_manifest *m, const char *key,
                                const char *value);
/* Put PREFIX (what was being done) before the calling thread's current
 * message, errno kept (safe although the message is the error buffer). */
void pbs__ds_prefix_error (const char *prefix);
/* Decode + parse an index.json.blob image (no signature check). */
struct pbs_manifest *pbs__ds_manifest_from_blob (const uint8_t *blob,
                                                 size_t len, const char *what);
/* "ok", "failed" (only with a UPID-shaped upid, as PBS's serde parse
 * requires) or NULL from the manifest's unprotected.verify_state. */
const char *pbs__ds_verify_state (const struct pbs_manifest *m);

/* A hash set of 32-byte digests with a u32 value >= 1 each (the chunk
 * length for the server's known-chunk map; 1 elsewhere).  Not locked. */
struct pbs__digest_set;
struct pbs__digest_set *pbs__digest_set_new (void);
void pbs__digest_set_free (struct pbs__digest_set *s);
int pbs__digest_set_put (struct pbs__digest_set *s, const uint8_t d[32],
                         uint32_t value);
bool pbs__digest_set_get (const struct pbs__digest_set *s, const uint8_t d[32],
                          uint32_t *value);

/* The last N components of PATH ("vm/100" of ".../vm/100"). */
const char *pbs__dsb_path_tail (const char *path, int n);
/* Errors with context (ds-errtext.c), for pbs_ds_error_context. */
/* Record F for the error just set (pbs__set_error); DETAIL NULL:
 * strerror (OS_ERRNO). */
void pbs__ds_fail_context (enum pbs_ds_failure f, int os_errno,
                           const char *detail, const char *what,
                           const char *path);
/* Record an owner check failure (F: PBS_DS_FAIL_OWNER or _READER_OWNER). */
void pbs__ds_fail_owner (enum pbs_ds_failure f, const char *auth_id,
                         const char *owner);
/* Why the last pbs__ds_read_file failed into BUF; its errno, or 0 when
 * one of its own checks failed (BUF has the check's words). */
int pbs__ds_read_failure (char *buf, size_t n);
/* After a failed pbs__ds_read_file of PATH: "<what> <path>: <why>" with
 * ERRNUM (0: the read's errno), context F. */
void pbs__ds_fail_read (enum pbs_ds_failure f, int errnum, const char *what,
                        const char *path);

#endif
