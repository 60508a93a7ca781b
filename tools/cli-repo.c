/* cli-repo.c -- open a repository from --repository / PBS_REPOSITORY.
 *
 * For a server the secret (password or API token secret) comes, as in
 * proxmox-backup-client (docs/pbs-protocol.md §2.4), from the first of
 * PBS_PASSWORD, PBS_PASSWORD_FD, PBS_PASSWORD_FILE, PBS_PASSWORD_CMD that is
 * set (first line only), else from a prompt when stdin is a terminal
 * (cli_read_secret).  Secrets never come from argv.  --fingerprint or
 * PBS_FINGERPRINT pins the server certificate.
 *
 * pbsproto reads no environment: the rest of what the official client
 * takes from it is read here and passed in the options -- ALL_PROXY (the
 * only proxy), and for a local datastore QCOW2PBS_DATASTORE_SYNC -- with
 * the descriptor that cancels network waits (cli-interrupt.c). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "pbsproto.h"

struct pbs_repo *
cli_open_repo_with (const char *spec, const char *fingerprint,
                    const char *given, bool create, struct cli_err *err)
{
  struct pbs_repo_opts opts = { 0 };
  struct stat st;
  struct pbs_repo *r;
  char *secret = NULL;

  if (!spec)
    spec = getenv ("PBS_REPOSITORY");
  if (!spec || !*spec) {
    cli_err_set (err, "repository",
                 "no repository given (--repository or PBS_REPOSITORY)");
    return NULL;
  }
  /* A bare name that is also a directory here is almost always a local
   * datastore written without its "./": say so before asking for a
   * password or touching the network.  (The server's datastore of that
   * name stays reachable as localhost:NAME.) */
  if (!strchr (spec, '/') && !strchr (spec, ':') && stat (spec, &st) == 0
      && S_ISDIR (st.st_mode)) {
    cli_err_set (err, spec, "is a local directory; write a local datastore "
                 "as ./%s (a name without '/' means a server's datastore, "
                 "e.g. localhost:%s)", spec, spec);
    return NULL;
  }
  if (strchr (spec, '/')) {
    const char *lvl = getenv ("QCOW2PBS_DATASTORE_SYNC");
    if (!lvl || !*lvl || strcmp (lvl, "own") == 0)
      opts.sync = PBS_SYNC_OWN;
    else if (strcmp (lvl, "filesystem") == 0)
      opts.sync = PBS_SYNC_FILESYSTEM;
    else if (strcmp (lvl, "none") == 0)
      opts.sync = PBS_SYNC_NONE;
    else {
      cli_err_set (err, "QCOW2PBS_DATASTORE_SYNC",
                   "'%s' is not own, filesystem or none", lvl);
      return NULL;
    }
  }
  else {
    /* A server (§2.3): a local datastore is always a path. */
    secret = given ? strdup (given)
                   : cli_read_secret ("PBS_PASSWORD", "Password: ", err);
    if (!secret) {
      if (given)
        cli_err_set (err, spec, "out of memory");
      return NULL; /* else cli_read_secret said why */
    }
    if (!fingerprint)
      fingerprint = getenv ("PBS_FINGERPRINT");
    if (fingerprint && !*fingerprint)
      fingerprint = NULL;
  }
  opts.secret = secret;
  opts.fingerprint = fingerprint;
  opts.create = create;
  opts.proxy = getenv ("ALL_PROXY");
  opts.cancel_fd = cli_cancel_fd ();
  r = pbs_repo_open (spec, &opts);
  if (secret) {
    explicit_bzero (secret, strlen (secret));
    free (secret);
  }
  if (!r)
    cli_err_pbs (err, spec);
  return r;
}

struct pbs_repo *
cli_open_repo (const char *spec, const char *fingerprint,
               struct cli_err *err)
{
  return cli_open_repo_with (spec, fingerprint, NULL, false, err);
}

struct pbs_repo *
cli_open_repo_create (const char *spec, const char *fingerprint, bool create,
                      struct cli_err *err)
{
  return cli_open_repo_with (spec, fingerprint, NULL, create, err);
}

void
cli_close_repo (struct pbs_repo *r)
{
  const char *stats = getenv ("QCOW2PBS_STATS");

  /* For the bandwidth benchmark (tests/bench/bench-remote.sh). */
  if (r && !pbs_repo_is_local (r) && stats && strcmp (stats, "1") == 0)
    fprintf (stderr, "bytes_sent=%" PRIu64 "\n", pbs_repo_bytes_sent (r));
  pbs_repo_close (r);
}
