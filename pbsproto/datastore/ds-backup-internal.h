/* ds-backup-internal.h -- what the files of the backup session share
 * (ds-backup.c the session, ds-group.c group/owner/locks/cleanup,
 * ds-writer.c the fixed index writer, ds-finish.c blobs, finish and
 * durability, ds-errtext.c PBS's error texts); not installed.  The public
 * face is pbs-datastore.h. */
#ifndef PBS_DS_BACKUP_INTERNAL_H
#define PBS_DS_BACKUP_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ds-internal.h"

#define MAX_WID 256
/* Largest index we read back: 4096 + 32 * chunks; 1 GiB covers 128 TiB. */
#define MAX_INDEX_FILE (1024u * 1024 * 1024)

struct upload_stat {
  uint64_t count, size, compressed_size, duplicates;
};

struct fixed_writer {
  char *name;
  char *tmp_path;
  char *final_path;
  int fd;
  struct pbs_fidx *idx;
  uint64_t size;
  uint64_t chunk_count; /* appended pairs */
  unsigned small_chunks;
  bool incremental;
  struct upload_stat stat;
};

/* A base index this session has read (previous_file): parsed once. */
struct pbs__dsb_base_index {
  char *name;
  struct pbs_fidx *idx;
};

struct pbs_ds_backup {
  struct pbs_datastore *ds;
  char *auth_id;
  char *group_path;
  char *snap_path;
  char snap_name[21];
  int group_fd, snap_fd, base_fd;
  int ns_fd, type_fd; /* to remove what a failed first push created */
  bool created_type, created_group;
  char type_name[8]; /* "vm", "ct", "host" */
  char *notes; /* what start cleaned up, one line each (pbs_ds_backup_notes) */
  bool has_base;
  int64_t base_time;
  char *base_path;
  bool created;
  bool require_chunks; /* pbs_ds_backup_require_chunks */
  struct pbs__dsb_base_index *base_idx; /* base indexes read (lock) */
  size_t nbase_idx;

  pthread_mutex_t lock; /* everything below */
  bool finished;
  struct pbs__digest_set *known;
  struct fixed_writer *writers[MAX_WID + 1];
  int uid;
  size_t file_counter;
  struct upload_stat total;
  uint8_t *manifest;
  size_t manifest_len;
  uint8_t (*new_chunks)[32]; /* inserted (not duplicates), to fsync */
  size_t nnew, new_cap;
};

/* ---------------------------------------- error texts (ds-errtext.c)
 * Each sets the thread's error with a plain text and an errno. */

/* EINVAL with FMT. */
__attribute__ ((format (printf, 1, 2))) void pbs__dsb_bad (const char *fmt,
                                                           ...);
/* ENOMEM "out of memory". */
void pbs__dsb_oom (void);
/* E "<what> <path>: <strerror>", context PBS_DS_FAIL_OS. */
void pbs__dsb_os_error (int e, const char *what, const char *path);

/* ---------------------------------- group, owner, locks (ds-group.c) */

/* flock FD non-blocking; PBS's lock_dir messages (BUSY when held). */
int pbs__dsb_lock_fd (int fd, const char *path, int how, const char *what,
                      const char *busy);
/* Open (creating) TYPE/ID below namespace NS (NSP its path), lock the
 * group, clean it up (client cleanup), write and check the owner (§4.1).
 * Fills B's ns_fd, type_fd, group_fd, group_path, created_*.  0 or -1. */
int pbs__dsb_open_group (struct pbs_ds_backup *b, const char *ns,
                         const char *nsp, const char *type, const char *id);
/* The group's last finished snapshot (§4.2). */
int pbs__dsb_last_finished (int group_fd, const char *group_path, int64_t *t,
                            bool *found);
/* Remove the plain files of directory FD. */
void pbs__dsb_remove_files (int fd);
/* With client cleanup: remove the group a failed first backup created. */
void pbs__dsb_group_cleanup (struct pbs_ds_backup *b);

/* ------------------------------------------ the session (ds-backup.c) */

/* -1 with "backup already marked as finished." once finished. */
int pbs__dsb_ensure_unfinished (struct pbs_ds_backup *b);

/* ------------------------- base indexes read once (ds-base-index.c) */

/* Lock held: base index NAME if this session has read it, else NULL. */
const struct pbs_fidx *pbs__dsb_base_index (const struct pbs_ds_backup *b,
                                            const char *name);
/* Lock held: keep IDX (taken on success) as base index NAME.  0 or -1. */
int pbs__dsb_keep_base_index (struct pbs_ds_backup *b, const char *name,
                              struct pbs_fidx *idx);
/* At session end. */
void pbs__dsb_free_base_indexes (struct pbs_ds_backup *b);
/* Read NAME of the base snapshot, at most MAX bytes (pbs__ds_read_file's
 * errors). */
int pbs__dsb_read_base_file (struct pbs_ds_backup *b, const char *name,
                             size_t max, uint8_t **data, size_t *len);

/* ------------------------------------------- index writer (ds-writer.c) */

void pbs__dsb_writer_free (struct fixed_writer *w, bool remove_tmp);
/* 12 or 44 by the blob's kind. */
size_t pbs__dsb_blob_header_len (int kind);

#endif
