/* ds-errtext.c -- the backup session's error messages (errno + text, the
 * plain text, and what failed for pbs_ds_error_context).  PBS's own
 * wording of these errors (Rust's io::Error form, docs/pbs-protocol.md
 * §1.6) and the HTTP status are the test server's business
 * (tests/server/ds-errors.c, reply.c). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "ds-backup-internal.h"
#include "pbs-errors.h"

__attribute__ ((format (printf, 1, 2))) void
pbs__dsb_bad (const char *fmt, ...)
{
  char msg[512];
  va_list ap;
  va_start (ap, fmt);
  vsnprintf (msg, sizeof msg, fmt, ap);
  va_end (ap);
  pbs__set_error (EINVAL, "%s", msg);
}

void
pbs__dsb_oom (void)
{
  pbs__set_error (ENOMEM, "out of memory");
}

/* The context of this thread's last datastore error, current while
 * pbs__error_serial () still equals CONTEXT_SERIAL. */
static _Thread_local struct pbs_ds_error_context context;
static _Thread_local unsigned long context_serial;

const struct pbs_ds_error_context *
pbs_ds_error_context (void)
{
  return context_serial != 0 && context_serial == pbs__error_serial ()
             ? &context
             : NULL;
}

void
pbs__ds_fail_context (enum pbs_ds_failure f, int os_errno, const char *detail,
                      const char *what, const char *path)
{
  memset (&context, 0, sizeof context);
  context.failure = f;
  context.os_errno = os_errno;
  snprintf (context.detail, sizeof context.detail, "%s",
            detail ? detail : os_errno ? strerror (os_errno) : "");
  snprintf (context.what, sizeof context.what, "%s", what ? what : "");
  snprintf (context.path, sizeof context.path, "%s", path ? path : "");
  context_serial = pbs__error_serial ();
}

void
pbs__ds_fail_owner (enum pbs_ds_failure f, const char *auth_id,
                    const char *owner)
{
  pbs__ds_fail_context (f, 0, NULL, NULL, NULL);
  snprintf (context.auth_id, sizeof context.auth_id, "%s", auth_id);
  snprintf (context.owner, sizeof context.owner, "%s", owner);
}

/* -1 (errno) after an OS error: "<what> <path>: <strerror>". */
void
pbs__dsb_os_error (int e, const char *what, const char *path)
{
  size_t n = strlen (what);

  while (n > 0 && what[n - 1] == ' ')
    n--;
  pbs__set_error (e, "%.*s %s: %s", (int) n, what, path, strerror (e));
  pbs__ds_fail_context (PBS_DS_FAIL_OS, e, NULL, what, path);
}

/* The last N components of PATH ("vm/100" of ".../vm/100"). */
const char *
pbs__dsb_path_tail (const char *path, int n)
{
  const char *p = path + strlen (path);

  while (p > path) {
    if (p[-1] == '/' && --n == 0)
      break;
    p--;
  }
  return p;
}

/* Why the last pbs__ds_read_file failed, into BUF: our own checks
 * (EINVAL, EFBIG, ENOMEM) keep their words after "path: " and give 0,
 * an OS error gives its strerror and errno. */
int
pbs__ds_read_failure (char *buf, size_t n)
{
  int e = pbs_errno ();
  const char *m = pbs_errmsg (), *colon = strstr (m, ": ");

  if (e == EINVAL || e == EFBIG || e == ENOMEM) {
    snprintf (buf, n, "%s", colon ? colon + 2 : m);
    return 0;
  }
  snprintf (buf, n, "%s", strerror (e));
  return e;
}

void
pbs__ds_fail_read (enum pbs_ds_failure f, int errnum, const char *what,
                   const char *path)
{
  char detail[300];
  int e = errnum ? errnum : pbs_errno ();
  int os = pbs__ds_read_failure (detail, sizeof detail);

  pbs__set_error (e, "%s %s: %s", what, path, detail);
  pbs__ds_fail_context (f, os, detail, NULL, path);
}
