/* confine.c -- the directories a chain's backing and data files may come
 * from.
 *
 * A backing name is whatever the image's writer put there: an overlay
 * naming "/etc/shadow" (format raw) would put that file's bytes into the
 * backup.  QEMU follows any name; offline we allow only files whose real
 * path (realpath: "..", symlinks and absolute names all resolved) lies in
 * or below the directory of the top image (or of the layers given with
 * --chain), or of a directory the caller allows explicitly.  libvirt's
 * absolute names (/var/lib/libvirt/images/base.qcow2 under an overlay in
 * the same directory) stay allowed: they resolve inside it. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "qcow-internal.h"

void
qcow__roots_free (struct qcow__roots *r)
{
  size_t i;

  for (i = 0; i < r->n; i++)
    free (r->dirs[i]);
  free (r->dirs);
  r->dirs = NULL;
  r->n = r->cap = 0;
}

static int
roots_push (struct qcow__roots *r, char *dir)
{
  size_t i;

  for (i = 0; i < r->n; i++)
    if (strcmp (r->dirs[i], dir) == 0) {
      free (dir);
      return 0;
    }
  if (r->n == r->cap) {
    size_t cap = r->cap ? r->cap * 2 : 8;
    char **d = realloc (r->dirs, cap * sizeof *d);
    if (!d) {
      free (dir);
      qcow__set_error (ENOMEM, "qcow_open: out of memory");
      return -1;
    }
    r->dirs = d;
    r->cap = cap;
  }
  r->dirs[r->n++] = dir;
  return 0;
}

/* The real path of the directory part of PATH ("." when it has none). */
static char *
real_dirname (const char *path)
{
  const char *slash = strrchr (path, '/');
  char *dir, *real;

  if (!slash)
    return realpath (".", NULL);
  dir = slash == path ? strdup ("/") : strndup (path, (size_t) (slash - path));
  if (!dir)
    return NULL;
  real = realpath (dir, NULL);
  free (dir);
  return real;
}

int
qcow__roots_add_image (struct qcow__roots *r, const char *path)
{
  char *dir, *real;

  /* Both the directory the image is named in (where QEMU resolves its
   * relative names) and the one it really lies in, when it is a symlink. */
  dir = real_dirname (path);
  if (!dir) {
    qcow__set_error (errno, "%s: %s", path, strerror (errno));
    return -1;
  }
  if (roots_push (r, dir) == -1)
    return -1;
  real = realpath (path, NULL);
  if (!real)
    return 0; /* opening it reports the error */
  dir = real_dirname (real);
  free (real);
  if (!dir)
    return 0;
  return roots_push (r, dir);
}

int
qcow__roots_add_dir (struct qcow__roots *r, const char *dir)
{
  char *real = realpath (dir, NULL);

  if (!real) {
    qcow__set_error (errno, "%s: allowed backing directory: %s", dir,
                     strerror (errno));
    return -1;
  }
  return roots_push (r, real);
}

static bool
under (const char *path, const char *dir)
{
  size_t n = strlen (dir);

  if (strcmp (dir, "/") == 0)
    return true;
  return strncmp (path, dir, n) == 0 && (path[n] == '/' || path[n] == '\0');
}

int
qcow__roots_check (const struct qcow__roots *r, const char *who,
                   const char *what, const char *name, const char *path)
{
  char *real = realpath (path, NULL);
  const char *slash;
  size_t i;
  int dirlen;

  if (!real) {
    int e = errno;
    qcow__set_error (e, "%s: %s %s: %s", who, what, path, strerror (e));
    return -1;
  }
  for (i = 0; i < r->n; i++)
    if (under (real, r->dirs[i])) {
      free (real);
      return 0;
    }
  slash = strrchr (real, '/');
  dirlen = slash == real ? 1 : (int) (slash - real);
  if (strcmp (name, real) == 0)
    qcow__set_error (EPERM,
                     "%s: refusing %s %s: it lies outside the image's "
                     "directory; allow it with --allow-backing-dir %.*s",
                     who, what, real, dirlen, real);
  else
    qcow__set_error (EPERM,
                     "%s: refusing %s '%s' (%s): it lies outside the image's "
                     "directory; allow it with --allow-backing-dir %.*s",
                     who, what, name, real, dirlen, real);
  free (real);
  return -1;
}
