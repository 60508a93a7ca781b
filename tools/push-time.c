/* push-time.c -- the backup time of a new snapshot against the group's
 * existing ones, checked before the session starts.
 *
 * PBS refuses a time that is not later than the last finished snapshot
 * with "backup timestamp is older than last backup." also when the times
 * are equal (src/api2/backup/mod.rs compares with <=), which misleads
 * after two pushes in one second.  Here the client says what is wrong,
 * and a push that takes the current time simply waits for the next
 * second.  --dry-run runs the same check, so it reports what the real
 * push would.  The server still checks: this only names the case. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "push.h"

/* Sleep until the wall clock has passed second LAST; *NOW_S is then the
 * clock's second (time() may lag: glibc reads a coarse clock).  -1 if
 * interrupted. */
static int
wait_past (int64_t last, int64_t *now_s)
{
  struct timespec now, nap;

  for (;;) {
    if (cli_interrupted ())
      return -1;
    clock_gettime (CLOCK_REALTIME, &now);
    if ((int64_t) now.tv_sec > last) {
      *now_s = (int64_t) now.tv_sec;
      return 0;
    }
    nap.tv_sec = 0;
    nap.tv_nsec = 1000000000L - now.tv_nsec + 1000000L;
    if (nap.tv_nsec >= 1000000000L)
      nap.tv_nsec = 999999999L;
    nanosleep (&nap, NULL); /* a signal ends it early: checked above */
  }
}

int
push_check_time (struct pbs_repo *repo, const char *ns, const char *type,
                 const char *id, int64_t *t, bool given, char *ctx,
                 size_t ctxlen, char *msg, size_t msglen)
{
  struct pbs_snapshot *s = NULL;
  size_t n = 0, i;
  int64_t base = -1, newest = -1;
  bool same = false;
  char name[21];
  int ret = 0;

  /* No listing (no group yet, or a token that may not list): the server's
   * own check stays. */
  if (pbs_repo_snapshots (repo, ns, type, id, &s, &n) == -1)
    return 0;
  for (i = 0; i < n; i++) {
    if (s[i].time > newest)
      newest = s[i].time;
    if (s[i].time == *t)
      same = true;
    /* The server's base (§4.2): the last finished snapshot, unless its
     * verification failed; only a base constrains the time. */
    if (s[i].finished && s[i].time > base)
      base = (!s[i].verify_state || strcmp (s[i].verify_state, "failed"))
                 ? s[i].time
                 : -1;
  }
  pbs_snapshots_free (s, n);

  if (!given && newest >= *t) {
    if (newest > *t) {
      pbs_time_to_rfc3339 (newest, name);
      snprintf (ctx, ctxlen, "%s/%s/%s", type, id, name);
      snprintf (msg, msglen, "the group's last snapshot is later than now; "
                "check the clock, or give a later --backup-time");
      return -1;
    }
    pbs_time_to_rfc3339 (newest, name);
    cli_cmd_note ("push", "%s/%s/%s was made in this second; waiting for "
                  "the next one", type, id, name);
    if (wait_past (newest, t) == -1) {
      snprintf (ctx, ctxlen, "push");
      snprintf (msg, msglen, "interrupted");
      return -1;
    }
    return 0;
  }
  pbs_time_to_rfc3339 (*t, name);
  snprintf (ctx, ctxlen, "%s/%s/%s", type, id, name);
  if (base >= 0 && *t == base) {
    snprintf (msg, msglen, "the group's last snapshot has this same time; "
              "a new snapshot needs a later --backup-time");
    ret = -1;
  }
  else if (base >= 0 && *t < base) {
    pbs_time_to_rfc3339 (base, name);
    snprintf (msg, msglen, "older than the group's last snapshot %s/%s/%s; "
              "a new snapshot needs a later --backup-time",
              type, id, name);
    ret = -1;
  }
  else if (same) {
    snprintf (msg, msglen, "a snapshot with this time already exists; "
              "give another --backup-time");
    ret = -1;
  }
  return ret;
}
