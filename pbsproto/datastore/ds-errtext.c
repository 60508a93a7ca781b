/* ds-errtext.c -- the backup session's error messages (errno + text, the
 * texts PBS uses, docs/pbs-protocol.md §1.6: Rust's io::Error form,
 * proxmox's messages).  Which HTTP status a server answers is not the
 * datastore's business (tests/server/reply.c). */
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

/* -1 (errno) after an OS error, with PBS's "<what> <path:?> - <io
 * error>"; Rust prints an io::Error as "<strerror> (os error N)". */
void
pbs__dsb_os_error (int e, const char *what, const char *path)
{
  pbs__set_error (e, "%s \"%s\" - %s (os error %d)", what, path, strerror (e),
                  e);
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

/* The Rust io::Error text of the failed pbs__ds_read_file: our own
 * checks (EINVAL, EFBIG) keep their text after "path: ". */
void
pbs__dsb_read_error_text (char *buf, size_t n)
{
  int e = pbs_errno ();
  const char *m = pbs_errmsg (), *colon = strstr (m, ": ");

  if (e == EINVAL || e == EFBIG || e == ENOMEM)
    snprintf (buf, n, "%s", colon ? colon + 2 : m);
  else
    snprintf (buf, n, "%s (os error %d)", strerror (e), e);
}
