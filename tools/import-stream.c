/* import-stream.c -- import a compressed archive in one data pass
 * (docs/import.md, "Archives").
 *
 * The plan was made from a skeleton of the archive (import-archive.c):
 * every member's name, size and first 64 KiB.  Here the archive is read
 * again, once, as a stream: each member a group needs is written whole
 * into the temporary folder as it arrives; when the last member a group
 * needs has arrived the group is started (its points in order, as any
 * group), and when its points are done its members are deleted.  Members
 * of groups not yet complete stay until their group is, so interleaved
 * archives (A, B, A) work, at the cost of the space they take; the plan
 * says the most that can be, from the member order and sizes, and the
 * stream never holds more. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "import-stream.h"

/* The last member named REL (tar -x keeps the last of a name): its
 * index, or -1. */
static ssize_t
member_of (const struct import_members *ms, const char *rel)
{
  for (size_t i = ms->n; i-- > 0;)
    if (!strcmp (ms->m[i].name, rel))
      return (ssize_t) i;
  return -1;
}

/* Add member I to group K's list (once). */
static int
need_member (struct import_stream *s, size_t k, size_t i)
{
  size_t *n;

  for (size_t j = 0; j < s->nneed[k]; j++)
    if (s->need[k][j] == i)
      return 0;
  n = realloc (s->need[k], (s->nneed[k] + 1) * sizeof *n);
  if (!n)
    return -1;
  s->need[k] = n;
  n[s->nneed[k]++] = i;
  s->gbytes[k] += s->ms.m[i].pages;
  s->users[i]++;
  return 0;
}

/* The members group K reads: the layers of its points still to do. */
static int
find_needs (struct import_stream *s, size_t k, struct cli_err *e)
{
  const struct import_group *g = s->g[k];
  size_t dl = strlen (s->dir);

  for (size_t j = 0; j < g->np; j++) {
    const struct import_point *p = &g->p[j];
    if (p->status != IMPORT_TODO)
      continue;
    for (size_t d = 0; d < p->nd; d++)
      for (size_t l = p->d[d].first; l <= p->d[d].last; l++) {
        const char *path = p->d[d].chain->l[l].path;
        ssize_t i = -1;
        if (!strncmp (path, s->dir, dl) && path[dl] == '/')
          i = member_of (&s->ms, path + dl + 1);
        if (i < 0)
          return cli_err_set (e, s->archive, "layer %s is no member of "
                              "the archive", path);
        if (need_member (s, k, (size_t) i) == -1)
          return cli_err_set (e, s->archive, "out of memory");
      }
  }
  return 0;
}

/* The sum of the TAKE largest of V[0..N). */
static uint64_t
largest_sum (const uint64_t *v, size_t n, size_t take)
{
  uint64_t sum = 0, prev = UINT64_MAX;
  size_t taken = 0, same;

  /* Descending by distinct values; few groups, so O(n * distinct). */
  while (taken < take) {
    uint64_t best = 0;
    bool any = false;
    for (size_t i = 0; i < n; i++)
      if (v[i] < prev && (!any || v[i] > best)) {
        best = v[i];
        any = true;
      }
    if (!any)
      break;
    same = 0;
    for (size_t i = 0; i < n; i++)
      same += v[i] == best;
    for (; same && taken < take; same--, taken++)
      sum += best;
    prev = best;
  }
  return sum;
}

static bool
needs (const struct import_stream *s, size_t k, size_t i)
{
  for (size_t j = 0; j < s->nneed[k]; j++)
    if (s->need[k][j] == i)
      return true;
  return false;
}

int
import_stream_plan (struct import_stream *s, struct import_group *g,
                    size_t ng, size_t jobs, struct cli_err *e)
{
  size_t i, k, ndone = 0;
  size_t *missing = NULL;
  unsigned *open = NULL;
  uint64_t *done = NULL, partial = 0, peak = 0;
  bool *arrived = NULL;
  int ret = -1;

  for (i = 0; i < ng; i++)
    if (g[i].stream == s->id) {
      struct import_group **n = realloc (s->g, (s->ng + 1) * sizeof *n);
      if (!n)
        return cli_err_set (e, s->archive, "out of memory");
      s->g = n;
      s->g[s->ng++] = &g[i];
    }
  s->need = calloc (s->ng + 1, sizeof *s->need);
  s->nneed = calloc (s->ng + 1, sizeof *s->nneed);
  s->gbytes = calloc (s->ng + 1, sizeof *s->gbytes);
  s->missing = calloc (s->ng + 1, sizeof *s->missing);
  s->users = calloc (s->ms.n + 1, sizeof *s->users);
  missing = calloc (s->ng + 1, sizeof *missing);
  done = calloc (s->ng + 1, sizeof *done);
  open = calloc (s->ms.n + 1, sizeof *open);
  arrived = calloc (s->ms.n + 1, sizeof *arrived);
  if (!s->need || !s->nneed || !s->gbytes || !s->missing || !s->users
      || !missing || !done || !open || !arrived) {
    cli_err_set (e, s->archive, "out of memory");
    goto out;
  }
  for (k = 0; k < s->ng; k++) {
    if (find_needs (s, k, e) == -1)
      goto out;
    missing[k] = s->nneed[k];
  }
  for (i = 0; i < s->ms.n; i++)
    open[i] = s->users[i]; /* groups needing it that are not complete */
  /* Walk the archive in order.  After member I the folder holds:
   * PARTIAL, the members that arrived for groups not complete; NOW, the
   * groups completing at I (they start at once); and at most JOBS - 1 of
   * the groups completed before (the stream reads on only while a slot
   * is free, so those still running are fewer than JOBS). */
  for (i = 0; i < s->ms.n; i++) {
    uint64_t now = 0, before;
    size_t nd0 = ndone;
    if (!s->users[i])
      continue;
    arrived[i] = true;
    partial += s->ms.m[i].pages;
    for (k = 0; k < s->ng; k++) {
      if (!needs (s, k, i) || --missing[k] != 0)
        continue;
      now += s->gbytes[k];
      done[ndone++] = s->gbytes[k];
      for (size_t j = 0; j < s->nneed[k]; j++) {
        size_t m = s->need[k][j];
        if (--open[m] == 0 && arrived[m])
          partial -= s->ms.m[m].pages;
      }
    }
    before = largest_sum (done, nd0, jobs - 1);
    if (partial + now + before > peak)
      peak = partial + now + before;
  }
  s->peak = peak;
  ret = 0;
out:
  free (missing);
  free (done);
  free (open);
  free (arrived);
  return ret;
}

/* ---------------------------------------------------------- the run */

static bool
want (void *opaque, size_t idx)
{
  struct import_stream *s = opaque;
  return s->users[idx] > 0;
}

/* Handle ended pushes; while every slot is busy the stream waits (so the
 * folder never holds more than the plan says).  -1 when interrupted. */
static int
tick (void *opaque)
{
  struct import_stream *s = opaque;

  while (import_runner_poll (s->x, s->r, false) == 1)
    ;
  while (!s->x->interrupted && s->r->running >= s->x->jobs)
    if (import_runner_poll (s->x, s->r, true) == -1)
      break;
  return s->x->interrupted || cli_interrupted () ? -1 : 0;
}

static int
arrived (void *opaque, size_t idx)
{
  struct import_stream *s = opaque;

  for (size_t k = 0; k < s->ng; k++)
    for (size_t j = 0; j < s->nneed[k]; j++)
      if (s->need[k][j] == idx && --s->missing[k] == 0
          && import_runner_add (s->x, s->r, s->g[k]) == -1)
        return -1;
  return tick (opaque);
}

void
import_stream_group_done (struct import_ctx *x, struct import_group *g)
{
  struct import_stream *s = x->opaque;

  if (!s || g->stream != s->id)
    return;
  for (size_t k = 0; k < s->ng; k++)
    if (s->g[k] == g)
      for (size_t j = 0; j < s->nneed[k]; j++) {
        size_t i = s->need[k][j];
        char *path = NULL;
        if (--s->users[i] == 0
            && asprintf (&path, "%s/%s", s->dir, s->ms.m[i].name) != -1)
          unlink (path);
        free (path);
      }
}

int
import_stream_run (struct import_stream *s, struct import_ctx *x,
                   struct import_runner *r, struct cli_err *e)
{
  static const struct import_stream_ops ops = { want, arrived, tick };
  size_t k;
  int ret;

  s->x = x;
  s->r = r;
  x->opaque = s;
  for (k = 0; k < s->ng; k++)
    s->missing[k] = s->nneed[k];
  /* Groups with nothing to read (all present or skipped) settle now. */
  for (k = 0; k < s->ng; k++)
    if (!s->missing[k] && import_runner_add (x, r, s->g[k]) == -1)
      return cli_err_set (e, "import", "waiting for a push: %s",
                          strerror (errno));
  ret = import_archive_stream (s->archive, s->dir, &s->ms, &ops, s, e);
  if (ret == -1 && !x->interrupted && !cli_interrupted ())
    for (k = 0; k < s->ng; k++)
      if (s->missing[k])
        for (size_t j = 0; j < s->g[k]->np; j++)
          if (s->g[k]->p[j].status == IMPORT_TODO) {
            s->g[k]->p[j].status = IMPORT_FAILED;
            snprintf (s->g[k]->p[j].reason, sizeof s->g[k]->p[j].reason,
                      "%.200s%s%.300s", e->ctx, *e->ctx ? ": " : "",
                      e->msg);
          }
  if (import_runner_wait (x, r) == -1 && ret == 0)
    ret = cli_err_set (e, "import", "waiting for a push: %s",
                       strerror (errno));
  return ret;
}

void
import_stream_free (struct import_stream *s)
{
  for (size_t k = 0; s->need && k < s->ng; k++)
    free (s->need[k]);
  free (s->need);
  free (s->nneed);
  free (s->gbytes);
  free (s->missing);
  free (s->users);
  free (s->g);
  import_members_free (&s->ms);
  free (s->dir);
  memset (s, 0, sizeof *s);
}
