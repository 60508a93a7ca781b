/* push-fail.c -- the first failure of a push attempt, kept (not printed)
 * so that cmd_push prints it once, or retries without a stray line. */
#include <stdarg.h>
#include <stdio.h>

#include "push-run.h"

/* Record the first failure of this attempt.  Printed once by the caller,
 * so that a retried session leaves no stray lines. */
int
push_fail (struct push *p, const char *ctx, const char *fmt, ...)
{
  va_list ap;

  if (p->err_msg[0] || p->err_printed)
    return -1;
  snprintf (p->err_ctx, sizeof p->err_ctx, "%s", ctx);
  va_start (ap, fmt);
  vsnprintf (p->err_msg, sizeof p->err_msg, fmt, ap);
  va_end (ap);
  return -1;
}

/* A pbs_* call failed: remember whether a new session might help. */
int
push_fail_pbs (struct push *p, const char *ctx)
{
  if (!p->err_msg[0] && !p->err_printed)
    p->transient = pbs_error_is_transient ();
  return push_fail (p, ctx, "%s", pbs_errmsg ());
}

/* Helpers that print their own errors (the repository's open) call
 * this. */
int
push_failed_printed (struct push *p)
{
  if (!p->err_msg[0])
    p->err_printed = true;
  return -1;
}
