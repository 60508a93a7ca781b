/* import.h -- qcow2pbs import: whole backup folders (qmpbackup's layout,
 * or chains linked by backing pointers) become one snapshot per point in
 * time, oldest first (docs/import.md).
 *
 * import-scan.c finds the groups, chains and points; import-run.c pushes
 * the points by running `qcow2pbs push` for each; cmd-import.c is the
 * command line, the plan and the report. */
#ifndef QCOW2PBS_IMPORT_H
#define QCOW2PBS_IMPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum import_kind {
  IMPORT_FULL,   /* qmpbackup FULL-<t>-<file> */
  IMPORT_INC,    /* qmpbackup INC-<t>-<file>: no backing pointer */
  IMPORT_COPY,   /* qmpbackup COPY-<t>-<file>: a full copy outside chains */
  IMPORT_LINKED, /* a layer of a chain linked by backing pointers */
};

struct import_layer {
  char *path;           /* the file */
  int64_t time;         /* its point in time */
  bool time_from_name;  /* else from the file's mtime */
  enum import_kind kind;
  bool raw;             /* a raw image (qmpbackup FULL of a raw disk) */
  bool partial;         /* *.partial: an interrupted run */
  uint64_t size;        /* file size, for the plan's byte counts */
  /* A member of an uncompressed tar read in place (PATH is then
   * "ARCHIVE/member"), else NULL.  Owned by the archive's index. */
  const struct tar_member *tm;
};

/* One disk's layers that build on each other, oldest first. */
struct import_chain {
  char *disk;    /* disk name: "scsi0" (folder scsi0.qcow2), "sda", ... */
  char *format;  /* the original disk's format from qmpbackup's
                  * <file>.config (raw, qcow2, vmdk), or NULL */
  struct import_layer *l;
  size_t n;
};

enum import_status {
  IMPORT_TODO,    /* to push */
  IMPORT_STORED,  /* pushed now */
  IMPORT_PRESENT, /* the group holds it already (same time and record) */
  IMPORT_SKIPPED, /* cannot or need not be pushed: reason says why */
  IMPORT_FAILED,
};

struct import_point_disk {
  char *archive;                    /* drive-scsi0.img.fidx */
  const struct import_chain *chain;
  size_t first, last;               /* layers first..last of the chain */
};

struct import_point {
  int64_t time;
  bool time_from_name;
  struct import_point_disk *d;
  size_t nd;
  enum import_status status;
  char reason[512];
  uint64_t read_bytes; /* plan: bytes of the layers new in this point */
  char *push_json;     /* the push's JSON answer (archives), or NULL */
};

struct import_group {
  char *source;  /* the folder it came from */
  char *id;      /* backup-id */
  struct import_chain *c;
  size_t nc;
  struct import_point *p; /* oldest first */
  size_t np;
  uint64_t hash;          /* stable, for --shard */
  bool from_archive;      /* layers are unpacked archive members */
  char *archive;          /* layers are members of this uncompressed tar,
                           * read in place (tm), or NULL */
  size_t stream;          /* 1 + the index of the streamed archive whose
                           * members its layers are (import-stream.c), or 0 */
};

enum import_time_from { IMPORT_TIME_AUTO, IMPORT_TIME_NAME, IMPORT_TIME_MTIME };

struct import_rename { const char *disk, *name; };

struct import_opts {
  enum import_time_from time_from;
  bool include_raw;
  bool allow_missing_disks; /* take points that lack a started disk */
  const char *backup_id;           /* --backup-id: one group only */
  const struct import_rename *rename; /* --archive-name DISK=NAME */
  size_t nrename;
};

/* Find the groups of folder DIR and append them to *G.  SOURCE names DIR
 * to the user (the archive it was unpacked from, or DIR itself) and gives
 * the default backup-id.  0, or -1 with ERR (which may be empty: nothing
 * to say, cli_err_print prints nothing). */
struct cli_err;
int import_scan (const char *dir, const char *source,
                 const struct import_opts *o, struct import_group **g,
                 size_t *ng, struct cli_err *err);

/* import-archive.c: a tar archive read as a stream.  The regular members
 * in archive order: name (normalised, "a/b"), size, and the bytes it
 * takes unpacked (its non-zero 4 KiB pages: zero pages stay holes). */
struct import_member {
  char *name;
  uint64_t size, pages;
};
struct import_members {
  struct import_member *m;
  size_t n;
  uint64_t skeleton_bytes; /* what the skeleton folder takes */
};
struct cli_err;
/* The plan's pass: ARCHIVE's folders and members into folder DIR, each
 * member as a file of its size and mtime holding only its first 64 KiB
 * (enough to scan: names, qcow2 headers, backing names); *MS the members.
 * 0, or -1 (E). */
int import_archive_skeleton (const char *archive, const char *dir,
                             struct import_members *ms, struct cli_err *e);
/* The data pass: the members (index IDX into MS) for which WANT says so
 * are written whole over their skeletons; ARRIVED follows each (-1 stops
 * the stream), TICK every block read (-1 stops it: Ctrl-C).  0, or -1
 * (E). */
struct import_stream_ops {
  bool (*want) (void *opaque, size_t idx);
  int (*arrived) (void *opaque, size_t idx);
  int (*tick) (void *opaque);
};
int import_archive_stream (const char *archive, const char *dir,
                           const struct import_members *ms,
                           const struct import_stream_ops *ops,
                           void *opaque, struct cli_err *e);
void import_members_free (struct import_members *ms);
/* Scan the uncompressed tar ARCHIVE in place through its index IX (which
 * must outlive the groups): the same groups as import_scan of the
 * unpacked folder, whose layers name members (tm). */
struct tar_index;
int import_scan_archive (const char *archive, const struct tar_index *ix,
                         const struct import_opts *o,
                         struct import_group **g, size_t *ng,
                         struct cli_err *err);
void import_groups_free (struct import_group *g, size_t ng);
void import_group_clear (struct import_group *g); /* contents only */

/* "YYYY-MM-DDTHH:MM:SSZ"-style names and epochs in file names: the time,
 * or -1 when NAME holds none (import-scan.c; tested through the CLI). */
int64_t import_time_from_name (const char *name);

#endif
