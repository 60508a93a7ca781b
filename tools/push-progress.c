/* push-progress.c -- "disk position/total, rate of bytes really read or
 * written, ETA" on stderr, rewritten in
 * place with \r at most a few times a second, and only when stderr is a
 * terminal (logs and pipes stay quiet). */
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "push.h"

double
push_now (void)
{
  struct timespec t;
  clock_gettime (CLOCK_MONOTONIC, &t);
  return (double) t.tv_sec + (double) t.tv_nsec / 1e9;
}

void
progress_init (struct progress *p, const char *what, uint64_t total)
{
  p->on = isatty (STDERR_FILENO);
  p->total = total;
  p->done = 0;
  p->io = 0;
  p->io_verb = "read";
  p->start = p->last = push_now ();
  p->what = what;
}

static void
show (struct progress *p, double now)
{
  double secs = now - p->start;
  double rate = secs > 0 ? (double) p->io / secs : 0;
  /* The ETA follows the position, which is what finishes the job. */
  double pos_rate = secs > 0 ? (double) p->done / secs : 0;
  double eta = pos_rate > 0 ? (double) (p->total - p->done) / pos_rate : 0;

  fprintf (stderr, "\r%s: at %llu/%llu MiB, %.1f MiB/s %s, ETA %.0fs   ",
           p->what, (unsigned long long) (p->done >> 20),
           (unsigned long long) (p->total >> 20), rate / (1 << 20),
           p->io_verb, eta);
}

void
progress_add (struct progress *p, uint64_t bytes)
{
  double now;

  p->done += bytes;
  if (!p->on)
    return;
  now = push_now ();
  if (now - p->last >= 0.25) {
    p->last = now;
    show (p, now);
  }
}

void
progress_io (struct progress *p, uint64_t bytes)
{
  p->io += bytes;
}

void
progress_end (struct progress *p)
{
  if (!p->on)
    return;
  show (p, push_now ());
  fputc ('\n', stderr);
}
