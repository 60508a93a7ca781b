/* errors.c -- the calling thread's last error (message + errno).
 * Fixed thread-local buffers, so setting an error never allocates and one
 * thread's failure never clobbers another's. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

#include "qcow-internal.h"

static _Thread_local char errmsg[1024];
static _Thread_local int errnum_last;

void
qcow__set_error (int errnum, const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  vsnprintf (errmsg, sizeof errmsg, fmt, ap);
  va_end (ap);
  errnum_last = errnum;
}

void
qcow__clear_error (void)
{
  errmsg[0] = '\0';
  errnum_last = 0;
}

const char *
qcow_errmsg (void)
{
  return errmsg;
}

int
qcow_errno (void)
{
  return errnum_last;
}
