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
};

struct import_job {
  struct import_group *g;
  size_t cur;  /* the point being pushed (SIZE_MAX before the first) */
  pid_t pid;
  int out, err; /* the child's stdout and stderr (memfd) */
};

/* Decide every point of G that the group's listing settles (present,
 * older) without pushing: for --dry-run.  0 or -1. */
int import_judge (struct import_ctx *x, struct import_group *g);
/* Push every point still to do.  0, or -1 on an internal error. */
int import_run (struct import_ctx *x, struct import_group *g, size_t ng);

#endif
