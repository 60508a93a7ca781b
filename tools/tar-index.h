/* tar-index.h -- where each member of an uncompressed tar archive lies,
 * so that its bytes can be read in place (tar-index.c). */
#ifndef QCOW2PBS_TAR_INDEX_H
#define QCOW2PBS_TAR_INDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "qcowlib.h"

struct tar_member {
  char *name;         /* as stored, without "./" and a trailing "/" */
  bool dir;
  bool sparse;        /* a GNU sparse member: its bytes are not in one piece */
  bool in_place;      /* a plain regular member at OFFSET (uncompressed),
                       * or a sparse one whose pieces are EXT */
  uint64_t size;      /* bytes of data (a sparse member: its real size) */
  uint64_t offset;    /* in_place: where its data starts in the archive */
  int64_t mtime_ns;
  struct qcow_span_piece *ext; /* in_place sparse: its stored pieces */
  size_t next;
  char header_sha256[65]; /* sha256 of its header blocks (pax, long names,
                           * its own, an old GNU sparse map's extension
                           * blocks): name, size, time, mode, owner */
};

struct tar_index {
  struct stat st;     /* of the archive, when it was indexed */
  bool compressed;    /* a compression filter: nothing is in place */
  bool any_sparse;     /* a GNU sparse member that is not in place */
  char *link;         /* the first link or special member (tar_member_link's
                       * message; import refuses the archive), or NULL */
  struct tar_member *m;
  size_t n;
};

/* Index the tar archive PATH (any compression libarchive reads; offsets
 * only when it has none).  0, or -1 with "PATH: what is wrong" in ERR. */
struct cli_err;
int tar_index_read (const char *path, struct tar_index *ix,
                    struct cli_err *err);
/* archive_read_next_header of the tar reader A, which also tells whether
 * the archive's end is marked: libarchive takes a tar that just stops
 * after a member's data as complete (some writers omit the zero blocks),
 * so a copy cut at a member boundary would pass for the whole archive.
 * *IN_MEMBER: a header was read before (set here); at ARCHIVE_EOF,
 * *MARKED says at least one 512-byte zero block followed the last
 * member.  Returns what archive_read_next_header returns. */
struct archive;
struct archive_entry;
int tar_next_header (struct archive *a, struct archive_entry **entry,
                     bool *in_member, bool *marked);
/* The member NAME ("./a//b" = "a/b"), or NULL. */
const struct tar_member *tar_index_find (const struct tar_index *ix,
                                         const char *name);
void tar_index_free (struct tar_index *ix);
/* Refuse absolute member names and ones climbing out with "..", as
 * tar -x does. */
bool tar_name_safe (const char *name);
/* Is member E a hard or symbolic link or a special file (FIFO, device,
 * socket): a member tar -x would not make a folder or a regular file of?
 * Then *MSG is what import says of it, "member NAME: a hard link to
 * TARGET; what to do" (malloc'd; NULL: out of memory).  Import refuses
 * such archives: a link's bytes are not in the member, and leaving it
 * out would silently drop a VM or a layer. */
struct archive_entry;
bool tar_member_link (struct archive_entry *e, char **msg);
/* "./a//b/" -> "a/b" (malloc'd; NULL: out of memory). */
char *tar_name_normal (const char *name);

#endif
