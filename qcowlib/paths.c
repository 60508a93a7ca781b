/* paths.c -- file names stored in images, resolved as QEMU does. */
#include <stdlib.h>
#include <string.h>

#include "qcow-internal.h"

/* QEMU's path_has_protocol (block.c): a ':' before any '/' makes a name
 * a protocol or pseudo-protocol ("json:", "nbd:", "http:", "file:"). */
bool
qcow__has_protocol (const char *name)
{
  const char *p = name + strcspn (name, ":/");
  return *p == ':';
}

/* QEMU's path_combine: NAME relative to the directory part of BASE, purely
 * lexically (no realpath, symlinks not followed).  Absolute NAMEs are
 * returned as they are.  Returns a malloc'd string or NULL (ENOMEM). */
char *
qcow__path_combine (const char *base, const char *name)
{
  const char *slash;
  size_t dirlen, nlen = strlen (name);
  char *r;

  slash = strrchr (base, '/');
  if (name[0] == '/' || !slash)
    return strdup (name);
  dirlen = (size_t) (slash - base) + 1;
  r = malloc (dirlen + nlen + 1);
  if (!r)
    return NULL;
  memcpy (r, base, dirlen);
  memcpy (r + dirlen, name, nlen + 1);
  return r;
}

/* Skip "./" parts and repeated slashes at *P; the length of the next
 * part. */
static size_t
next_part (const char **p)
{
  for (;;) {
    while (**p == '/')
      (*p)++;
    if ((*p)[0] == '.' && ((*p)[1] == '/' || !(*p)[1]))
      (*p)++;
    else
      return strcspn (*p, "/");
  }
}

/* Do A and B name the same member of a container, lexically ("./a//b"
 * and "a/b" do; ".." is never resolved, so it never matches a name
 * without it)? */
bool
qcow__same_member (const char *a, const char *b)
{
  for (;;) {
    size_t na = next_part (&a), nb = next_part (&b);
    if (na != nb || strncmp (a, b, na) != 0)
      return false;
    if (!na)
      return true;
    a += na;
    b += nb;
  }
}
