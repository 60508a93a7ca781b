/* cli-interrupt.c -- Ctrl-C (SIGINT), SIGTERM and SIGHUP during a push.
 *
 * Dying on the spot would leave a local datastore with the unfinished
 * snapshot directory (never a base, but it blocks that backup-time), and a
 * remote push would only end when the server notices the dropped
 * connection.  Instead the first signal is noted and written to a pipe
 * that pbsproto watches in every network wait (cli_cancel_fd, passed in
 * the repository options by cli_open_repo): the
 * push stops at the next chunk or wait, ends its session the normal way
 * (the unfinished snapshot is removed, locally or by the server) and exits
 * with 128 + the signal.  The handler is reset after the first signal, so
 * a second Ctrl-C kills at once. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static volatile sig_atomic_t caught;
static int wake[2] = { -1, -1 };

static void
on_signal (int sig)
{
  int saved = errno;

  caught = sig;
  if (wake[1] >= 0)
    (void) !write (wake[1], "", 1);
  errno = saved;
}

int
cli_catch_interrupts (void)
{
  static const int sigs[] = { SIGINT, SIGTERM, SIGHUP };
  struct sigaction sa;

  if (wake[0] < 0 && pipe2 (wake, O_CLOEXEC | O_NONBLOCK) == -1)
    return -1;
  memset (&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sa.sa_flags = (int) SA_RESETHAND;
  sigemptyset (&sa.sa_mask);
  for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
    if (sigaction (sigs[i], &sa, NULL) == -1)
      return -1;
  return 0;
}

int
cli_cancel_fd (void)
{
  return wake[0];
}

int
cli_interrupted (void)
{
  return caught;
}
