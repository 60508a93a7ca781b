/* push-progress.c -- "disk position/total (percent), rate of the bytes
 * really read or written, ETA" on stderr.  On a terminal it is rewritten
 * in place with \r at most a few times a second; elsewhere (logs,
 * journald) it is printed only with --progress, as one whole line every
 * PROGRESS_LINE_SECS and one at the end, so a log shows that a long push
 * is alive without filling up.  --quiet shows none. */
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "push.h"

#define PROGRESS_LINE_SECS 10.0

static enum cli_progress_mode mode = CLI_PROGRESS_AUTO;

void
cli_set_progress_mode (enum cli_progress_mode m)
{
  mode = m;
}

bool
cli_quiet (void)
{
  return mode == CLI_PROGRESS_QUIET;
}

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
  bool tty = isatty (STDERR_FILENO);

  p->on = mode != CLI_PROGRESS_QUIET
          && (tty || mode == CLI_PROGRESS_LINES);
  p->lines = !tty;
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
  double pct = p->total ? 100.0 * (double) p->done / (double) p->total : 100;

  fprintf (stderr, "%s%s: %llu/%llu MiB (%.0f%%), %.1f MiB/s %s, ETA %.0fs%s",
           p->lines ? "" : "\r", p->what,
           (unsigned long long) (p->done >> 20),
           (unsigned long long) (p->total >> 20), pct, rate / (1 << 20),
           p->io_verb, eta, p->lines ? "\n" : "   ");
}

void
progress_add (struct progress *p, uint64_t bytes)
{
  double now;

  p->done += bytes;
  if (!p->on)
    return;
  now = push_now ();
  if (now - p->last >= (p->lines ? PROGRESS_LINE_SECS : 0.25)) {
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
  if (!p->lines)
    fputc ('\n', stderr);
}
