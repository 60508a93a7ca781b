/* names.c -- snapshot times and the id rules of pbs-api-types. */
#include <errno.h>
#include <string.h>
#include <time.h>

#include "pbs-errors.h"

void
pbs_time_to_rfc3339 (int64_t t, char out[21])
{
  struct tm tm;
  time_t tt = (time_t) t;

  /* Snapshot directories are named in UTC with a 'Z' (backup_info.rs);
   * years outside 0..9999 cannot be named and do not occur. */
  if (!gmtime_r (&tt, &tm) || tm.tm_year + 1900 < 0
      || tm.tm_year + 1900 > 9999) {
    memcpy (out, "0000-00-00T00:00:00Z", 21);
    return;
  }
  strftime (out, 21, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* N decimal digits at S; -1 if any is not a digit. */
static int
digits (const char *s, int n)
{
  int v = 0, i;

  for (i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9')
      return -1;
    v = v * 10 + (s[i] - '0');
  }
  return v;
}

static int
days_in_month (int y, int m)
{
  static const int d[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
  bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  return m == 2 && leap ? 29 : d[m - 1];
}

static int
parse_rfc3339 (const char *s, int64_t *out)
{
  int y, mo, d, h, mi, sec, off = 0;
  const char *p;
  struct tm tm;

  if (strlen (s) < 20 || s[4] != '-' || s[7] != '-'
      || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') || s[13] != ':'
      || s[16] != ':')
    return -1;
  y = digits (s, 4);
  mo = digits (s + 5, 2);
  d = digits (s + 8, 2);
  h = digits (s + 11, 2);
  mi = digits (s + 14, 2);
  sec = digits (s + 17, 2);
  if (y < 0 || mo < 1 || mo > 12 || d < 1 || d > days_in_month (y, mo)
      || h < 0 || h > 23 || mi < 0 || mi > 59 || sec < 0 || sec > 60)
    return -1;
  p = s + 19;
  if (*p == '.') { /* fractions are allowed and dropped (1 s resolution) */
    p++;
    if (*p < '0' || *p > '9')
      return -1;
    while (*p >= '0' && *p <= '9')
      p++;
  }
  if ((*p == 'Z' || *p == 'z') && p[1] == '\0')
    off = 0;
  else if ((*p == '+' || *p == '-') && strlen (p) == 6 && p[3] == ':') {
    int oh = digits (p + 1, 2), om = digits (p + 4, 2);
    if (oh < 0 || oh > 23 || om < 0 || om > 59)
      return -1;
    off = (oh * 60 + om) * 60 * (*p == '-' ? -1 : 1);
  } else
    return -1;
  memset (&tm, 0, sizeof tm);
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = sec == 60 ? 59 : sec; /* a leap second is its predecessor */
  *out = (int64_t) timegm (&tm) - off;
  return 0;
}

int
pbs_parse_time (const char *s, int64_t *out)
{
  size_t i, n = s ? strlen (s) : 0;

  int64_t v = 0;
  bool parsed = false;

  if (n > 0 && n <= 12 && strspn (s, "0123456789") == n) {
    for (i = 0; i < n; i++)
      v = v * 10 + (s[i] - '0');
    parsed = true;
  }
  else if (n > 0 && n < 64 && parse_rfc3339 (s, &v) == 0)
    parsed = true;
  if (parsed) {
    /* A time outside this range has no snapshot name (it used to come
     * out as "0000-00-00T00:00:00Z"). */
    if (v < 0 || v > PBS_TIME_MAX) {
      pbs__set_error (EINVAL, "'%.64s' is outside the times a snapshot can "
                      "be named with (1970 to 9999)", s);
      return -1;
    }
    *out = v;
    return 0;
  }
  pbs__set_error (EINVAL, "'%.64s' is neither epoch seconds nor an RFC 3339 "
                  "time", s ? s : "");
  return -1;
}

static bool
id_char (char c, bool first)
{
  if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
      || (c >= '0' && c <= '9') || c == '_')
    return true;
  return !first && (c == '.' || c == '-');
}

/* [A-Za-z0-9_][A-Za-z0-9._-]* of at most MAX bytes: PROXMOX_SAFE_ID_REGEX
 * and BACKUP_ID_REGEX are this same pattern. */
static bool
safe_id (const char *s, size_t len, size_t max)
{
  size_t i;

  if (!s || len == 0 || len > max)
    return false;
  for (i = 0; i < len; i++)
    if (!id_char (s[i], i == 0))
      return false;
  return true;
}

bool
pbs_valid_safe_id (const char *s)
{
  return s && safe_id (s, strlen (s), 128);
}

bool
pbs_valid_backup_id (const char *s)
{
  return s && safe_id (s, strlen (s), 128);
}

bool
pbs_valid_backup_type (const char *s)
{
  return s
         && (strcmp (s, "vm") == 0 || strcmp (s, "ct") == 0
             || strcmp (s, "host") == 0);
}

bool
pbs_valid_ns (const char *s)
{
  /* pbs-api-types: at most 7 levels (MAX_NAMESPACE_DEPTH), each a safe
   * id of at most 32 bytes, '/' between them, 256 bytes in all. */
  size_t depth = 0, total;
  const char *p, *slash;

  if (!s)
    return false;
  total = strlen (s);
  if (total == 0)
    return true;
  if (total > 256)
    return false;
  for (p = s;; p = slash + 1) {
    slash = strchr (p, '/');
    size_t len = slash ? (size_t) (slash - p) : strlen (p);
    if (!safe_id (p, len, 32) || ++depth > 7)
      return false;
    if (!slash)
      return true;
  }
}
