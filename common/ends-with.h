/* ends-with.h -- does a name end with a suffix (".fidx", ".blob")?  The
 * archive type of a PBS file is its extension. */
#ifndef COMMON_ENDS_WITH_H
#define COMMON_ENDS_WITH_H
#include <stdbool.h>
#include <string.h>

static inline bool
ends_with (const char *s, const char *suffix)
{
  size_t a = strlen (s), b = strlen (suffix);
  return a >= b && memcmp (s + a - b, suffix, b) == 0;
}
#endif
