/* errors.c -- per-thread error state of pbsproto (the libnbd model):
 * a fixed buffer, so reporting an error never allocates. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

#include "pbs-errors.h"

static _Thread_local char errmsg[512];
static _Thread_local int errnum_last;
static _Thread_local int http_status_last;
static _Thread_local bool transient_last;
static _Thread_local unsigned long serial_last; /* errors set so far */

static void
set_error_v (int http_status, int errnum, const char *fmt, va_list ap)
{
  vsnprintf (errmsg, sizeof errmsg, fmt, ap);
  serial_last++;
  errnum_last = errnum;
  http_status_last = http_status;
  transient_last = http_status >= 500
                   || (http_status == 0
                       && (errnum == ECONNRESET || errnum == ETIMEDOUT
                           || errnum == EPIPE || errnum == ECONNABORTED));
}

void
pbs__set_error (int errnum, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  set_error_v (0, errnum, fmt, ap);
  va_end (ap);
}

void
pbs__set_http_error (int http_status, int errnum, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  set_error_v (http_status, errnum, fmt, ap);
  va_end (ap);
}

const char *
pbs_errmsg (void)
{
  return errmsg[0] ? errmsg : "no error";
}

unsigned long
pbs__error_serial (void)
{
  return serial_last;
}

int
pbs_errno (void)
{
  return errnum_last;
}

int
pbs_http_status (void)
{
  return http_status_last;
}

bool
pbs_error_is_transient (void)
{
  return transient_last;
}
