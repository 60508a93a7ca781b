/* repo.c -- placeholder until the repository layer lands. */
#include <errno.h>

#include "pbs-internal.h"

struct pbs_repo *
pbs_repo_open (const char *spec, const struct pbs_repo_opts *opts)
{
  (void) opts;
  pbs__set_error (ENOTSUP, "%s: repositories are not implemented yet", spec);
  return NULL;
}
