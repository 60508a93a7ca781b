/* ds-repair.c -- drive the repair calls of pbsproto.h from a test, as
 * `check --repair` will (tests/push/test-repair.sh).
 *
 *   ds-repair REPO has DIGEST            print "present" or "absent"
 *   ds-repair REPO bad DIGEST            move the chunk aside; print the
 *                                        new path or "absent"
 *   ds-repair REPO state SNAPSHOT ok|failed [NS]
 *                                        record verify_state
 *
 * SNAPSHOT is TYPE/ID/EPOCH.  For a remote REPO the secret comes from
 * PBS_PASSWORD (never argv).  Errors: "ds-repair: message", exit 1. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pbsproto.h"

static int
die (void)
{
  fprintf (stderr, "ds-repair: %s (errno %d)\n", pbs_errmsg (), pbs_errno ());
  return 1;
}

int
main (int argc, char **argv)
{
  struct pbs_repo_opts o = { 0 };
  struct pbs_repo *r;
  uint8_t d[PBS_DIGEST_LEN];
  int ret = 1, k;

  if (argc < 4) {
    fprintf (stderr, "usage: ds-repair REPO has|bad DIGEST\n"
                     "       ds-repair REPO state TYPE/ID/EPOCH ok|failed "
                     "[NS]\n");
    return 2;
  }
  o.secret = getenv ("PBS_PASSWORD");
  o.fingerprint = getenv ("PBS_FINGERPRINT");
  o.quiet = true;
  r = pbs_repo_open (argv[1], &o);
  if (!r)
    return die ();
  if (strcmp (argv[2], "has") == 0 || strcmp (argv[2], "bad") == 0) {
    char *path = NULL;
    if (pbs_digest_parse (argv[3], d) == -1) {
      fprintf (stderr, "ds-repair: bad digest %s\n", argv[3]);
      goto out;
    }
    k = strcmp (argv[2], "has") == 0 ? pbs_repo_has_chunk (r, d)
                                     : pbs_repo_rename_bad_chunk (r, d, &path);
    if (k == -1) {
      ret = die ();
      goto out;
    }
    printf ("%s\n", path ? path : k ? "present" : "absent");
    free (path);
    ret = 0;
  }
  else if (strcmp (argv[2], "state") == 0 && argc >= 5) {
    char type[16], id[128];
    long long t;
    if (sscanf (argv[3], "%15[^/]/%127[^/]/%lld", type, id, &t) != 3) {
      fprintf (stderr, "ds-repair: bad snapshot %s\n", argv[3]);
      goto out;
    }
    if (pbs_repo_set_verify_state (r, argc > 5 ? argv[5] : "", type, id, t,
                                   strcmp (argv[4], "ok") == 0) == -1) {
      ret = die ();
      goto out;
    }
    ret = 0;
  }
  else
    fprintf (stderr, "ds-repair: unknown command %s\n", argv[2]);
out:
  pbs_repo_close (r);
  return ret;
}
