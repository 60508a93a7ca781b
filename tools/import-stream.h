/* import-stream.h -- a compressed archive (or a tar with GNU sparse
 * members) imported in one streaming data pass (import-stream.c). */
#ifndef QCOW2PBS_IMPORT_STREAM_H
#define QCOW2PBS_IMPORT_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "import-run.h"
#include "import.h"

struct import_stream {
  const char *archive;        /* as given */
  char *dir;                  /* its temporary folder */
  struct import_members ms;   /* its regular members, in archive order */
  size_t id;                  /* import_group.stream of its groups */
  /* The plan (import_stream_plan). */
  struct import_group **g;    /* its groups */
  size_t ng;
  size_t **need, *nneed;      /* per group: the members its points read */
  uint64_t *gbytes;           /* per group: what those take unpacked */
  unsigned *users;            /* per member: groups still needing it */
  uint64_t peak;              /* at most this much more than the skeleton,
                               * at any moment of the data pass */
  /* While running. */
  size_t *missing;            /* per group: members not yet arrived */
  struct import_ctx *x;
  struct import_runner *r;
};

/* Which members each group of S (the groups of G[0..NG) whose stream is
 * S->id) reads for its points still to do, and the most temporary space
 * the data pass can take with JOBS groups at a time: the stream reads on
 * only while fewer than JOBS groups run, so at any moment the folder
 * holds the members that arrived for groups not yet complete, the groups
 * completing now, and at most JOBS - 1 groups completed earlier.  0, or
 * -1 (E). */
int import_stream_plan (struct import_stream *s, struct import_group *g,
                        size_t ng, size_t jobs, struct cli_err *e);
/* The data pass: each group of S is added to R as soon as its members
 * are there, and its members are deleted when it is done (X's
 * on_group_done must be import_stream_group_done, X->opaque S).  Groups
 * left incomplete by an error fail their points with its message.  0, or
 * -1 (E; interrupted: x->interrupted). */
int import_stream_run (struct import_stream *s, struct import_ctx *x,
                       struct import_runner *r, struct cli_err *e);
void import_stream_group_done (struct import_ctx *x, struct import_group *g);
void import_stream_free (struct import_stream *s);

#endif
