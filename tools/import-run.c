/* import-run.c -- push the points of the groups: each point is one run of
 * `qcow2pbs push --disk ...` in a child process (so one push's state,
 * limits and signal handling stay exactly those of push), the points of a
 * group in order, up to JOBS groups at a time.
 *
 * Before a point is pushed the group's listing decides:
 *  - a finished snapshot at the same time whose qcow2pbs record names the
 *    same files (path, size, mtime) holds it already: "present";
 *  - a time not newer than the group's newest snapshot cannot be added
 *    (PBS only appends to a group): "skipped", or "failed" when the same
 *    time holds a different snapshot.
 * Secrets are read once and handed to every child through a pipe
 * (PBS_PASSWORD_FD, PBS_ENCRYPTION_PASSWORD_FD), never argv. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "cli.h"
#include "import-run.h"
#include "push.h"
#include "tar-index.h"

/* ------------------------------------------------------------ records */

/* Does the manifest record of archive A name exactly the layers of D?
 * Files: the same real path, size and mtime.  Unpacked archive members
 * (a new temporary folder each run): the same name, size and mtime. */
static bool
record_matches (json_t *archives, const struct import_point_disk *d,
                bool member, const char *archive_file)
{
  json_t *layers = json_object_get (json_object_get (archives, d->archive),
                                    "layers");
  size_t i;

  if (!json_is_array (layers)
      || json_array_size (layers) != d->last - d->first + 1)
    return false;
  for (i = 0; i < json_array_size (layers); i++) {
    const struct import_layer *l = &d->chain->l[d->first + i];
    json_t *e = json_array_get (layers, i);
    char *rp;
    if (l->tm) {
      /* Read in place: the same archive file, and in it a member of the
       * same name, size, time and headers. */
      json_t *am = json_object_get (e, "archive-member");
      const char *had = json_string_value (json_object_get (e, "realpath"));
      const char *an = json_string_value (json_object_get (am, "name"));
      const char *ah = json_string_value (json_object_get (am,
                                                          "tar-header-sha256"));
      char *arp = archive_file ? realpath (archive_file, NULL) : NULL;
      bool ok = arp && had && an && ah && !strcmp (had, arp)
                && !strcmp (an, l->tm->name)
                && !strcmp (ah, l->tm->header_sha256)
                && json_integer_value (json_object_get (e, "size"))
                       == (json_int_t) l->tm->size
                && json_integer_value (json_object_get (e, "mtime-ns"))
                       == (json_int_t) l->tm->mtime_ns;
      free (arp);
      if (!ok)
        return false;
      continue;
    }
    rp = realpath (l->path, NULL);
    struct stat st;
    const char *had = json_string_value (json_object_get (e, "realpath"));
    const char *hb = had ? strrchr (had, '/') : NULL, *rb;
    bool ok = rp && had && stat (l->path, &st) == 0;
    rb = rp ? strrchr (rp, '/') : NULL;
    ok = ok && (member ? hb && rb && !strcmp (hb, rb) : !strcmp (had, rp));
    ok = ok
              && json_integer_value (json_object_get (e, "size"))
                     == (json_int_t) st.st_size
              && json_integer_value (json_object_get (e, "mtime-ns"))
                     == (json_int_t) st.st_mtim.tv_sec * 1000000000
                            + st.st_mtim.tv_nsec;
    free (rp);
    if (!ok)
      return false;
  }
  return true;
}

/* Is snapshot TIME of the group the point P (its record names P's files)?
 * -1 on a repository error (message in WHY). */
static int
holds_point (struct import_ctx *x, const struct import_group *g,
             const struct import_point *p, char *why, size_t whylen)
{
  struct pbs_reader *rd;
  struct pbs_manifest *m;
  char *rec;
  json_t *root, *archives;
  struct cli_err err;
  size_t i;
  int r = 0;

  rd = pbs_reader_start (x->repo, x->ns, x->type, g->id, p->time);
  if (!rd) {
    snprintf (why, whylen, "%s", pbs_errmsg ());
    return -1;
  }
  m = push_fetch_manifest (rd, NULL, false, g->id, &err);
  pbs_reader_free (rd);
  if (!m) {
    snprintf (why, whylen, "%.200s", err.msg); /* index.json.blob: ... */
    return -1;
  }
  rec = pbs_manifest_get_unprotected (m, "qcow2pbs");
  root = rec ? json_loads (rec, 0, NULL) : NULL;
  archives = json_object_get (root, "archives");
  if (json_is_object (archives)
      && json_object_size (archives) == p->nd) {
    r = 1;
    for (i = 0; i < p->nd; i++)
      if (!record_matches (archives, &p->d[i], g->from_archive,
                           g->archive))
        r = 0;
  }
  json_decref (root);
  free (rec);
  pbs_manifest_free (m);
  return r;
}

/* Decide P from the group's listing S[0..N): 1 to push, 0 decided. */
static int
judge_against_group (struct import_ctx *x, const struct import_group *g,
                     struct import_point *p, const struct pbs_snapshot *s,
                     size_t n)
{
  int64_t newest = -1;
  char ts[21], nts[21], why[256];
  size_t i;

  for (i = 0; i < n; i++)
    if (s[i].finished && s[i].time > newest)
      newest = s[i].time;
  pbs_time_to_rfc3339 (p->time, ts);
  for (i = 0; i < n; i++)
    if (s[i].time == p->time) {
      int h = s[i].finished ? holds_point (x, g, p, why, sizeof why) : 0;
      if (h == 1) {
        p->status = IMPORT_PRESENT;
        snprintf (p->reason, sizeof p->reason,
                  "the group holds this point already");
      }
      else {
        p->status = IMPORT_FAILED;
        snprintf (p->reason, sizeof p->reason,
                  "the group holds another snapshot at %s%s%s (%s); remove "
                  "it or import into another namespace (--ns)",
                  ts, h == -1 ? ": " : "", h == -1 ? why : "",
                  s[i].finished ? "made from other files" : "unfinished");
      }
      return 0;
    }
  if (p->time < newest) {
    pbs_time_to_rfc3339 (newest, nts);
    p->status = IMPORT_SKIPPED;
    snprintf (p->reason, sizeof p->reason,
              "older than the group's newest snapshot %s: a PBS group only "
              "takes newer snapshots (import older points into another "
              "namespace)",
              nts);
    return 0;
  }
  return 1;
}

/* ------------------------------------------------------------ children */

/* "a,b" with ',' doubled, for --disk (the --chain syntax). */
static char *
disk_arg (const struct import_point_disk *d)
{
  size_t len = strlen (d->archive) + 2, i, k;
  char *s, *q;

  for (k = d->first; k <= d->last; k++)
    len += 2 * strlen (d->chain->l[k].path) + 1;
  s = malloc (len);
  if (!s)
    return NULL;
  q = s + sprintf (s, "%s=", d->archive);
  for (k = d->first; k <= d->last; k++) {
    /* A member read in place is named as in the archive. */
    const char *p = d->chain->l[k].tm ? d->chain->l[k].tm->name
                                      : d->chain->l[k].path;
    if (k > d->first)
      *q++ = ',';
    for (i = 0; p[i]; i++) {
      if (p[i] == ',')
        *q++ = ',';
      *q++ = p[i];
    }
  }
  *q = 0;
  return s;
}

/* A pipe holding SECRET and a newline, for a child's *_FD variable. */
static int
secret_pipe (const char *secret)
{
  int fds[2];
  size_t len = strlen (secret);

  if (pipe2 (fds, O_CLOEXEC) == -1)
    return -1;
  if (write (fds[1], secret, len) != (ssize_t) len
      || write (fds[1], "\n", 1) != 1) {
    close (fds[0]);
    close (fds[1]);
    return -1;
  }
  close (fds[1]);
  return fds[0];
}

static int
run_point (struct import_ctx *x, struct import_job *j)
{
  const struct import_point *p = &j->g->p[j->cur];
  char **argv = calloc (32 + 4 * p->nd + x->npass, sizeof *argv);
  char **disks = calloc (2 * p->nd + 1, sizeof *disks);
  char tbuf[32], self[PATH_MAX];
  int argc = 0, pw = -1, kp = -1, ret = -1;
  ssize_t sl;
  size_t i;
  pid_t pid;

  sl = readlink ("/proc/self/exe", self, sizeof self - 1);
  if (!argv || !disks || sl <= 0)
    goto out;
  self[sl] = 0;
  snprintf (tbuf, sizeof tbuf, "%lld", (long long) p->time);
  argv[argc++] = (char *) "qcow2pbs";
  argv[argc++] = (char *) "push";
  argv[argc++] = (char *) "--repository";
  argv[argc++] = (char *) x->repo_spec;
  argv[argc++] = (char *) "--backup-type";
  argv[argc++] = (char *) x->type;
  argv[argc++] = (char *) "--backup-id";
  argv[argc++] = j->g->id;
  argv[argc++] = (char *) "--backup-time";
  argv[argc++] = tbuf;
  argv[argc++] = (char *) "--output-format";
  argv[argc++] = (char *) "json";
  if (*x->ns) {
    argv[argc++] = (char *) "--ns";
    argv[argc++] = (char *) x->ns;
  }
  for (i = 0; i < x->npass; i++)
    argv[argc++] = (char *) x->pass[i];
  if (j->g->archive) {
    argv[argc++] = (char *) "--from-archive";
    argv[argc++] = j->g->archive;
  }
  for (i = 0; i < p->nd; i++) {
    if (!(disks[i] = disk_arg (&p->d[i])))
      goto out;
    argv[argc++] = (char *) "--disk";
    argv[argc++] = disks[i];
    /* qmpbackup's <file>.config: the disk's format, for the map line. */
    if (x->pve_config && p->d[i].chain->format) {
      if (asprintf (&disks[p->nd + i], "%s=%s", p->d[i].archive,
                    p->d[i].chain->format) == -1) {
        disks[p->nd + i] = NULL;
        goto out;
      }
      argv[argc++] = (char *) "--pve-disk-format";
      argv[argc++] = disks[p->nd + i];
    }
  }
  j->out = memfd_create ("push-out", MFD_CLOEXEC);
  j->err = memfd_create ("push-err", MFD_CLOEXEC);
  if (j->out == -1 || j->err == -1)
    goto out;
  if (x->secret && (pw = secret_pipe (x->secret)) == -1)
    goto out;
  if (x->key_secret && (kp = secret_pipe (x->key_secret)) == -1)
    goto out;
  pid = fork ();
  if (pid == -1)
    goto out;
  if (pid == 0) {
    char fdbuf[16];
    int devnull = open ("/dev/null", O_RDONLY);
    if (devnull == -1 || dup2 (devnull, 0) == -1 || dup2 (j->out, 1) == -1
        || dup2 (j->err, 2) == -1)
      _exit (2);
    if (pw >= 0) {
      /* The first of PBS_PASSWORD, _FD, _FILE, _CMD wins: leave FD. */
      unsetenv ("PBS_PASSWORD");
      unsetenv ("PBS_PASSWORD_FILE");
      unsetenv ("PBS_PASSWORD_CMD");
      snprintf (fdbuf, sizeof fdbuf, "%d", dup (pw)); /* not CLOEXEC */
      setenv ("PBS_PASSWORD_FD", fdbuf, 1);
    }
    if (kp >= 0) {
      unsetenv ("PBS_ENCRYPTION_PASSWORD");
      unsetenv ("PBS_ENCRYPTION_PASSWORD_FILE");
      unsetenv ("PBS_ENCRYPTION_PASSWORD_CMD");
      snprintf (fdbuf, sizeof fdbuf, "%d", dup (kp));
      setenv ("PBS_ENCRYPTION_PASSWORD_FD", fdbuf, 1);
    }
    execv (self, argv);
    _exit (127);
  }
  j->pid = pid;
  ret = 0;
out:
  if (pw >= 0)
    close (pw);
  if (kp >= 0)
    close (kp);
  if (ret == -1) {
    if (j->out >= 0)
      close (j->out);
    if (j->err >= 0)
      close (j->err);
    j->out = j->err = -1;
  }
  for (i = 0; disks && i < 2 * p->nd; i++)
    free (disks[i]);
  free (disks);
  free (argv);
  return ret;
}

/* Read all of memfd FD from the start (a child's output), malloc'd. */
static char *
slurp (int fd)
{
  struct stat st;
  char *s;
  ssize_t r;

  if (fd < 0 || fstat (fd, &st) == -1)
    return NULL;
  s = malloc ((size_t) st.st_size + 1);
  if (!s)
    return NULL;
  r = pread (fd, s, (size_t) st.st_size, 0);
  s[r > 0 ? r : 0] = 0;
  return s;
}

/* The child of job J ended with STATUS: the point's outcome. */
static void
finish_point (struct import_ctx *x, struct import_job *j, int status)
{
  struct import_point *p = &j->g->p[j->cur];
  char *out = slurp (j->out), *err = slurp (j->err), *nl;

  close (j->out);
  close (j->err);
  j->out = j->err = -1;
  j->pid = 0;
  if (WIFEXITED (status) && WEXITSTATUS (status) == 0) {
    json_t *o = out ? json_loads (out, 0, NULL) : NULL;
    json_t *a = json_object_get (o, "archives");
    p->status = IMPORT_STORED;
    p->push_json = a ? json_dumps (a, JSON_COMPACT | JSON_PRESERVE_ORDER)
                     : NULL;
    json_decref (o);
    x->newest_changed = true;
  }
  else {
    p->status = IMPORT_FAILED;
    /* push printed one line: {"error": ...} (it runs with JSON output). */
    if (err && (nl = strchr (err, '\n')))
      *nl = 0;
    if (err && *err == '{') {
      json_t *e = json_loads (err, 0, NULL);
      const char *msg = json_string_value (json_object_get (e, "error"));
      char *copy = msg ? strdup (msg) : NULL;
      json_decref (e);
      if (copy) {
        free (err);
        err = copy;
      }
    }
    snprintf (p->reason, sizeof p->reason, "%s",
              err && *err ? (strncmp (err, "qcow2pbs: ", 10) == 0 ? err + 10
                                                                  : err)
                          : WIFSIGNALED (status) ? "push was killed"
                                                 : "push failed");
    if (WIFEXITED (status) && WEXITSTATUS (status) >= 128)
      x->interrupted = true;
  }
  free (out);
  free (err);
  x->done_points++;
  x->done_bytes += p->read_bytes;
  if (x->on_point)
    x->on_point (x, j->g, p);
}

/* Start the next point of job J's group that needs a push; false when
 * the group is done. */
static bool
next_point (struct import_ctx *x, struct import_job *j)
{
  while (j->cur + 1 < j->g->np) { /* SIZE_MAX + 1 == 0: the first */
    struct import_point *p;
    j->cur++;
    p = &j->g->p[j->cur];
    if (p->status == IMPORT_TODO && !x->interrupted) {
      struct pbs_snapshot *s = NULL;
      size_t n = 0;
      if (pbs_repo_snapshots (x->repo, x->ns, x->type, j->g->id, &s, &n)
              == -1
          && pbs_errno () != ENOENT) {
        p->status = IMPORT_FAILED;
        snprintf (p->reason, sizeof p->reason, "listing the group: %s",
                  pbs_errmsg ());
      }
      else if (judge_against_group (x, j->g, p, s, n) == 1) {
        pbs_snapshots_free (s, n);
        if (run_point (x, j) == 0)
          return true;
        p->status = IMPORT_FAILED;
        snprintf (p->reason, sizeof p->reason, "cannot start push: %s",
                  strerror (errno));
      }
      else
        pbs_snapshots_free (s, n);
    }
    if (p->status != IMPORT_TODO) {
      x->done_points++;
      x->done_bytes += p->read_bytes;
      if (x->on_point)
        x->on_point (x, j->g, p);
    }
  }
  return false;
}

int
import_judge (struct import_ctx *x, struct import_group *g,
              struct cli_err *e)
{
  struct pbs_snapshot *s = NULL;
  size_t n = 0, i;

  if (pbs_repo_snapshots (x->repo, x->ns, x->type, g->id, &s, &n) == -1) {
    if (pbs_errno () != ENOENT) {
      /* The local datastore's messages name their path already. */
      const char *msg = pbs_errmsg ();
      bool named = !strncmp (msg, x->repo_spec, strlen (x->repo_spec));
      return cli_err_set (e, named ? "" : x->repo_spec, "%s", msg);
    }
    n = 0;
  }
  for (i = 0; i < g->np; i++)
    if (g->p[i].status == IMPORT_TODO)
      judge_against_group (x, g, &g->p[i], s, n);
  pbs_snapshots_free (s, n);
  return 0;
}

/* Job J's group has no point left: free its slot, tell the caller (a
 * streamed archive deletes the group's members then). */
static void
group_done (struct import_ctx *x, struct import_job *j)
{
  struct import_group *g = j->g;

  j->g = NULL;
  if (x->on_group_done)
    x->on_group_done (x, g);
}

int
import_runner_init (struct import_ctx *x, struct import_runner *r,
                    struct cli_err *e)
{
  memset (r, 0, sizeof *r);
  r->jobs = calloc (x->jobs, sizeof *r->jobs);
  if (!r->jobs)
    return cli_err_set (e, "import", "out of memory");
  return 0;
}

void
import_runner_free (struct import_runner *r)
{
  free (r->jobs);
  r->jobs = NULL;
}

/* Ctrl-C or SIGTERM: stop each running push the same way (it ends its
 * session, so no snapshot is left half made), start nothing new. */
static void
stop_on_interrupt (struct import_ctx *x, struct import_runner *r)
{
  if (cli_interrupted () && !x->interrupted) {
    x->interrupted = true;
    for (size_t i = 0; i < x->jobs; i++)
      if (r->jobs[i].g && r->jobs[i].pid > 0)
        kill (r->jobs[i].pid, cli_interrupted ());
  }
}

int
import_runner_poll (struct import_ctx *x, struct import_runner *r,
                    bool block)
{
  int status;
  pid_t pid;
  size_t i;

  stop_on_interrupt (x, r);
  if (!r->running)
    return 0;
  pid = waitpid (-1, &status, block ? 0 : WNOHANG);
  if (pid == 0)
    return 0;
  if (pid == -1) {
    if (errno == EINTR) {
      stop_on_interrupt (x, r);
      return 0;
    }
    return -1;
  }
  for (i = 0; i < x->jobs; i++)
    if (r->jobs[i].g && r->jobs[i].pid == pid) {
      r->running--;
      finish_point (x, &r->jobs[i], status);
      if (cli_interrupted ())
        x->interrupted = true;
      if (next_point (x, &r->jobs[i]))
        r->running++;
      else
        group_done (x, &r->jobs[i]);
    }
  return 1;
}

int
import_runner_add (struct import_ctx *x, struct import_runner *r,
                   struct import_group *g)
{
  for (;;) {
    for (size_t i = 0; i < x->jobs; i++)
      if (!r->jobs[i].g) {
        struct import_job *j = &r->jobs[i];
        j->g = g;
        j->cur = SIZE_MAX;
        j->out = j->err = -1;
        j->pid = 0;
        /* A group whose points are all settled without a push leaves
         * its slot free at once. */
        if (next_point (x, j))
          r->running++;
        else
          group_done (x, j);
        return 0;
      }
    if (import_runner_poll (x, r, true) == -1)
      return -1;
  }
}

int
import_runner_wait (struct import_ctx *x, struct import_runner *r)
{
  while (r->running)
    if (import_runner_poll (x, r, true) == -1)
      return -1;
  return 0;
}
