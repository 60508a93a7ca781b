/* import-run.h -- pushing the points of import groups (import-run.c). */
#ifndef QCOW2PBS_IMPORT_RUN_H
#define QCOW2PBS_IMPORT_RUN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "import.h"
#include "pbsproto.h"

struct import_ctx {
  struct pbs_repo *repo;  /* the parent's own connection, for listings */
  const char *repo_spec, *ns, *type;
  const char *const *pass; /* options handed to every push */
  size_t npass;
  char *secret;            /* PBS_PASSWORD for the children, or NULL */
  char *key_secret;        /* PBS_ENCRYPTION_PASSWORD, or NULL */
  size_t jobs;             /* groups at a time */
  bool dry_run;
  bool pve_config;         /* --pve-config: pass each disk's format */
  /* Progress. */
  size_t done_points, total_points;
  uint64_t done_bytes, total_bytes;
  bool interrupted, newest_changed;
  void (*on_point) (struct import_ctx *x, const struct import_group *g,
                    const struct import_point *p);
  /* Called when every point of G is settled (its files may go). */
  void (*on_group_done) (struct import_ctx *x, struct import_group *g);
  void *opaque;            /* for the callbacks */
};

struct import_job {
  struct import_group *g;
  size_t cur;  /* the point being pushed (SIZE_MAX before the first) */
  pid_t pid;
  int out, err; /* the child's stdout and stderr (memfd) */
};

/* Groups started one by one (a streamed archive starts each group when
 * its members have arrived), up to JOBS at a time. */
struct import_runner {
  struct import_job *jobs; /* x->jobs slots; g NULL: free */
  size_t running;          /* children alive */
};
struct cli_err;
int import_runner_init (struct import_ctx *x, struct import_runner *r,
                        struct cli_err *e);
/* Start G in a free slot, waiting for one (pushes ending meanwhile are
 * handled).  0, or -1 (errno) when waiting fails. */
int import_runner_add (struct import_ctx *x, struct import_runner *r,
                       struct import_group *g);
/* Handle one ended push, if any (BLOCK: wait for one while any runs);
 * stops the pushes on Ctrl-C.  1 handled, 0 none, -1 (errno). */
int import_runner_poll (struct import_ctx *x, struct import_runner *r,
                        bool block);
/* Until no push runs.  0 or -1 (errno). */
int import_runner_wait (struct import_ctx *x, struct import_runner *r);
void import_runner_free (struct import_runner *r);

/* Decide every point of G that the group's listing settles (present,
 * older) without pushing: for --dry-run and streamed archives.  0 or -1
 * (E). */
int import_judge (struct import_ctx *x, struct import_group *g,
                  struct cli_err *e);

#endif
