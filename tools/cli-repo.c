/* cli-repo.c -- open a repository from --repository / PBS_REPOSITORY.
 * Placeholder: local datastores only until the remote transport lands. */
#include <stdlib.h>

#include "cli.h"
#include "pbsproto.h"

struct pbs_repo *
cli_open_repo (const char *spec, const char *fingerprint)
{
  struct pbs_repo_opts opts = { 0 };
  struct pbs_repo *r;

  if (!spec)
    spec = getenv ("PBS_REPOSITORY");
  if (!spec || !*spec) {
    cli_error ("repository", "no repository given (--repository or PBS_REPOSITORY)");
    return NULL;
  }
  opts.fingerprint = fingerprint;
  r = pbs_repo_open (spec, &opts);
  if (!r)
    cli_error (spec, "%s", pbs_errmsg ());
  return r;
}
