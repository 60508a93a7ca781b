/* pve-config.c -- build and check the qemu-server.conf that Proxmox VE's
 * restore reads (docs/proxmox-ve.md).  The rules, from qemu-server's
 * PVE/QemuServer.pm and PVE/VZDump/QemuServer.pm:
 *  - parse_backup_hints restores a disk only when a line matches
 *    ^\#qmdump\#map:(\S+):(\S+):(\S*):(\S*):$ exactly; a trailing space,
 *    a CR or a missing final colon makes it skip the disk without a word;
 *  - the second field is the archive name without ".img.fidx";
 *  - vzdump's assemble keeps the main section only (snapshots, [PENDING]
 *    and [special:...] sections are not backed up) and drops lock:,
 *    parent: and unusedN: lines, then appends the map lines. */
#include <ctype.h>
#include <inttypes.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pve-config.h"

/* qemu-server's drive key families and their counts (MAX_IDE_DISKS ...). */
static const struct {
  const char *prefix;
  unsigned count;
} families[] = {
  { "ide", 4 },    { "sata", 6 },    { "scsi", 31 },
  { "virtio", 16 }, { "efidisk", 1 }, { "tpmstate", 1 },
};

#define MAP_PREFIX "#qmdump#map:"
#define ARCHIVE_SUFFIX ".img.fidx"

__attribute__ ((format (printf, 3, 4))) static void
say (char *err, size_t errlen, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  vsnprintf (err, errlen, fmt, ap);
  va_end (ap);
}

/* Is S (LEN bytes) a config key of a family above ("scsi12")? */
static bool
is_drive_key (const char *s, size_t len)
{
  size_t i, p;

  for (i = 0; i < sizeof families / sizeof families[0]; i++) {
    unsigned long v = 0;
    p = strlen (families[i].prefix);
    if (len <= p || strncmp (s, families[i].prefix, p) != 0)
      continue;
    if (len - p > 2 || (s[p] == '0' && len - p > 1))
      return false;
    for (; p < len; p++) {
      if (!isdigit ((unsigned char) s[p]))
        return false;
      v = v * 10 + (unsigned long) (s[p] - '0');
    }
    return v < families[i].count;
  }
  return false;
}

bool
pve_disk_key (const char *archive, char key[16])
{
  size_t len = strlen (archive), sl = strlen (ARCHIVE_SUFFIX);

  if (strncmp (archive, "drive-", 6) != 0 || len <= 6 + sl
      || strcmp (archive + len - sl, ARCHIVE_SUFFIX) != 0
      || len - 6 - sl >= 16 || !is_drive_key (archive + 6, len - 6 - sl))
    return false;
  memcpy (key, archive + 6, len - 6 - sl);
  key[len - 6 - sl] = 0;
  return true;
}

bool
pve_valid_storage_id (const char *s)
{
  /* pve-storage-id: ^(?i:[a-z][a-z0-9\-\_\.]*[a-z0-9])$ */
  size_t i, n = strlen (s);

  if (n < 2 || !isalpha ((unsigned char) s[0])
      || !isalnum ((unsigned char) s[n - 1]))
    return false;
  for (i = 1; i < n; i++)
    if (!isalnum ((unsigned char) s[i]) && !strchr ("-_.", s[i]))
      return false;
  return true;
}

/* The exact size in the largest unit that divides it ("32G", else
 * bytes): a value PVE::JSONSchema::parse_size reads back exactly. */
static void
format_size (uint64_t size, char out[32])
{
  static const char units[] = "KMGT";
  int u = -1;

  while (u < 3 && size % 1024 == 0 && size > 0) {
    size /= 1024;
    u++;
  }
  if (u < 0)
    snprintf (out, 32, "%" PRIu64, size);
  else
    snprintf (out, 32, "%" PRIu64 "%c", size, units[u]);
}

/* A drive line "KEY: VALUE" of the families above: KEY's length, or 0. */
static size_t
drive_line_key (const char *line)
{
  const char *colon = strchr (line, ':');

  if (!colon || !is_drive_key (line, (size_t) (colon - line)))
    return 0;
  return (size_t) (colon - line);
}

/* Does the drive VALUE ("local:vm-100-disk-0,size=32G,media=cdrom") hold
 * a disk that vzdump backs up?  Not a CD-ROM, not "none", not a
 * cloud-init volume, not backup=0. */
static bool
drive_is_backed_up (const char *value)
{
  char *copy = strdup (value), *save = NULL, *opt;
  bool disk = true, first = true;

  if (!copy)
    return true;
  for (opt = strtok_r (copy, ",", &save); opt;
       opt = strtok_r (NULL, ",", &save), first = false) {
    const char *file = NULL;
    if (strncmp (opt, "file=", 5) == 0)
      file = opt + 5;
    else if (first && !strchr (opt, '='))
      file = opt;
    if (file && (strcmp (file, "none") == 0 || strstr (file, "cloudinit")))
      disk = false;
    if (strcmp (opt, "media=cdrom") == 0 || strcmp (opt, "backup=0") == 0
        || strcmp (opt, "backup=no") == 0 || strcmp (opt, "backup=off") == 0)
      disk = false;
  }
  free (copy);
  return disk;
}

/* VALUE with its size= option set to SIZE (added when missing). */
static void
put_drive_value (FILE *f, const char *value, uint64_t size)
{
  char sz[32], *copy = strdup (value), *save = NULL, *opt;
  bool first = true;

  format_size (size, sz);
  if (!copy)
    return;
  for (opt = strtok_r (copy, ",", &save); opt;
       opt = strtok_r (NULL, ",", &save)) {
    if (strncmp (opt, "size=", 5) == 0)
      continue;
    fprintf (f, "%s%s", first ? "" : ",", opt);
    first = false;
  }
  fprintf (f, ",size=%s", sz);
  free (copy);
}

static const struct pve_disk *
disk_of_key (const struct pve_disk *d, size_t n, const char *key,
             size_t keylen)
{
  char k[16];
  size_t i;

  for (i = 0; i < n; i++)
    if (pve_disk_key (d[i].archive, k) && strlen (k) == keylen
        && strncmp (k, key, keylen) == 0)
      return &d[i];
  return NULL;
}

/* "a, b, c" of the archives' keys into OUT. */
static void
archive_keys (const struct pve_disk *d, size_t n, char *out, size_t cap)
{
  char k[16];
  size_t i, used = 0;

  out[0] = 0;
  for (i = 0; i < n && used < cap; i++) {
    if (!pve_disk_key (d[i].archive, k))
      continue;
    used += (size_t) snprintf (out + used, cap - used, "%s%s",
                               used ? ", " : "", k);
  }
  if (!out[0])
    snprintf (out, cap, "none");
}

static void
put_map_lines (FILE *f, const struct pve_disk *d, size_t n,
               const char *storage)
{
  char k[16];
  size_t i;

  for (i = 0; i < n; i++)
    if (pve_disk_key (d[i].archive, k))
      fprintf (f, MAP_PREFIX "%s:drive-%s:%s:%s:\n", k, k, storage,
               d[i].format ? d[i].format : "");
}

/* The user's config: main section, sizes set, map lines appended. */
static int
from_user (FILE *f, const struct pve_config_opts *o,
           const struct pve_disk *d, size_t n, bool *dropped, char *err,
           size_t errlen)
{
  const char *p = o->user_text, *end = o->user_text + o->user_len;
  char seen[64][16], want[512], got[512];
  size_t nseen = 0, i, used = 0;

  got[0] = 0;
  while (p < end) {
    const char *nl = memchr (p, '\n', (size_t) (end - p));
    size_t len = nl ? (size_t) (nl - p) : (size_t) (end - p), key;
    char *line;

    if (len > 0 && p[len - 1] == '\r') /* CRLF: PVE would skip the line */
      len--;
    line = strndup (p, len);
    if (!line)
      return say (err, errlen, "out of memory"), -1;
    p = nl ? nl + 1 : end;
    if (line[0] == '[') { /* snapshot, [PENDING] or [special:...] */
      *dropped = true;
      free (line);
      break;
    }
    if (strncmp (line, "#qmdump#", 8) == 0
        || strncmp (line, "#vzdump#", 8) == 0) {
      free (line); /* replaced below */
      continue;
    }
    if (strncmp (line, "lock:", 5) == 0 || strncmp (line, "parent:", 7) == 0
        || (strncmp (line, "unused", 6) == 0
            && isdigit ((unsigned char) line[6]))) {
      *dropped = true;
      free (line);
      continue;
    }
    key = drive_line_key (line);
    if (key) {
      const char *v = line + key + 1;
      size_t vl;
      while (*v == ' ' || *v == '\t')
        v++;
      vl = strlen (v);
      while (vl > 0 && isspace ((unsigned char) v[vl - 1]))
        vl--;
      if (memchr (v, ' ', vl) || memchr (v, '\t', vl) || vl == 0) {
        say (err, errlen,
             "drive line '%.*s' has a space in its value or none: Proxmox "
             "VE would not read it",
             (int) key, line);
        free (line);
        return -1;
      }
      if (drive_is_backed_up (v)) {
        const struct pve_disk *disk = disk_of_key (d, n, line, key);
        for (i = 0; i < nseen; i++)
          if (strlen (seen[i]) == key && strncmp (seen[i], line, key) == 0) {
            say (err, errlen, "drive %.*s is defined twice", (int) key, line);
            free (line);
            return -1;
          }
        if (nseen < 64) {
          memcpy (seen[nseen], line, key);
          seen[nseen++][key] = 0;
        }
        used += (size_t) snprintf (got + used,
                                   used < sizeof got ? sizeof got - used : 0,
                                   "%s%.*s", used ? ", " : "", (int) key,
                                   line);
        if (disk) {
          char *val = strndup (v, vl);
          if (!val) {
            free (line);
            return say (err, errlen, "out of memory"), -1;
          }
          fprintf (f, "%.*s: ", (int) key, line);
          put_drive_value (f, val, disk->size);
          fputc ('\n', f);
          free (val);
          free (line);
          continue;
        }
      }
    }
    fprintf (f, "%s\n", line);
    free (line);
  }
  /* The drives backed up must be exactly the archives. */
  archive_keys (d, n, want, sizeof want);
  for (i = 0; i < n; i++) {
    char k[16];
    size_t j;
    bool found = false;
    if (!pve_disk_key (d[i].archive, k))
      continue;
    for (j = 0; j < nseen; j++)
      found |= strcmp (seen[j], k) == 0;
    if (!found)
      break;
  }
  if (i < n || nseen != n) {
    say (err, errlen,
         "the config's disks (%s) do not match the archives (%s); name the "
         "archives after the config keys (drive-KEY=IMAGE) or edit the "
         "config",
         got[0] ? got : "none", want);
    return -1;
  }
  put_map_lines (f, d, n, o->storage ? o->storage : "");
  return 0;
}

/* A minimal config that boots: the disks, boot order, SCSI controller,
 * memory, cores, name. */
static int
generated (FILE *f, const struct pve_config_opts *o,
           const struct pve_disk *d, size_t n)
{
  const char *storage = o->storage && *o->storage ? o->storage : "local";
  const char *boot = NULL;
  char k[16], first[16] = "";
  bool efi = false;
  size_t i;

  for (i = 0; i < n; i++) {
    if (!pve_disk_key (d[i].archive, k))
      continue;
    if (strcmp (k, "efidisk0") == 0)
      efi = true;
    else if (strcmp (k, "tpmstate0") != 0 && !first[0])
      snprintf (first, sizeof first, "%s", k);
  }
  boot = first[0] ? first : NULL;
  if (efi)
    fprintf (f, "bios: ovmf\n");
  if (boot)
    fprintf (f, "boot: order=%s\n", boot);
  fprintf (f, "cores: %u\nmemory: %u\n", o->cores, o->memory_mib);
  if (o->name && *o->name)
    fprintf (f, "name: %s\n", o->name);
  fprintf (f, "scsihw: virtio-scsi-single\n");
  for (i = 0; i < n; i++) {
    char sz[32];
    if (!pve_disk_key (d[i].archive, k))
      continue;
    format_size (d[i].size, sz);
    fprintf (f, "%s: %s:vm-%s-disk-%zu,size=%s%s\n", k, storage,
             o->backup_id, i, sz,
             strcmp (k, "tpmstate0") == 0 ? ",version=v2.0" : "");
  }
  put_map_lines (f, d, n, o->storage ? o->storage : "");
  return 0;
}

char *
pve_config_make (const struct pve_config_opts *o,
                 const struct pve_disk *disks, size_t n, bool *dropped,
                 char *err, size_t errlen)
{
  char *text = NULL, k[16];
  size_t len = 0, i;
  bool drop = false;
  FILE *f;
  int r;

  for (i = 0; i < n; i++)
    if (!pve_disk_key (disks[i].archive, k)) {
      say (err, errlen,
           "archive %s: Proxmox VE restores only archives named "
           "drive-KEY.img.fidx with KEY one of ide0-3, sata0-5, scsi0-30, "
           "virtio0-15, efidisk0, tpmstate0",
           disks[i].archive);
      return NULL;
    }
  if (o->storage && *o->storage && !pve_valid_storage_id (o->storage)) {
    say (err, errlen, "'%s' is not a Proxmox VE storage id", o->storage);
    return NULL;
  }
  if (o->user_text && memchr (o->user_text, 0, o->user_len)) {
    say (err, errlen, "the config holds a NUL byte: not a text file");
    return NULL;
  }
  f = open_memstream (&text, &len);
  if (!f) {
    say (err, errlen, "out of memory");
    return NULL;
  }
  r = o->user_text ? from_user (f, o, disks, n, &drop, err, errlen)
                   : generated (f, o, disks, n);
  if (fclose (f) != 0 && r == 0) {
    say (err, errlen, "out of memory");
    r = -1;
  }
  if (r == -1 || pve_config_check (text, disks, n, err, errlen) == -1) {
    free (text);
    return NULL;
  }
  if (dropped)
    *dropped = drop;
  return text;
}

int
pve_config_check (const char *text, const struct pve_disk *disks, size_t n,
                  char *err, size_t errlen)
{
  regex_t map_re, drive_re;
  unsigned count[64] = { 0 };
  const char *p = text;
  char k[16];
  size_t i;
  int r = -1;

  if (n > 64)
    return say (err, errlen, "too many disks for one config (%zu)", n), -1;
  if (strchr (text, '\r'))
    return say (err, errlen, "the config has CR characters"), -1;
  if (*text && text[strlen (text) - 1] != '\n')
    return say (err, errlen, "the config's last line has no newline"), -1;
  /* The two regexes of parse_backup_hints and restore_update_config_line,
   * in POSIX syntax ([^[:space:]] for Perl's \S). */
  if (regcomp (&map_re,
               "^#qmdump#map:([^[:space:]]+):([^[:space:]]+):"
               "([^[:space:]]*):([^[:space:]]*):$",
               REG_EXTENDED | REG_NOSUB) != 0)
    return say (err, errlen, "regex"), -1;
  if (regcomp (&drive_re,
               "^((ide|scsi|virtio|sata|efidisk|tpmstate)[0-9]+):"
               "[[:space:]]*([^[:space:]]+)[[:space:]]*$",
               REG_EXTENDED) != 0) {
    regfree (&map_re);
    return say (err, errlen, "regex"), -1;
  }
  while (*p) {
    const char *nl = strchr (p, '\n');
    char *line = strndup (p, (size_t) (nl - p));
    p = nl + 1;
    if (!line) {
      say (err, errlen, "out of memory");
      goto out;
    }
    if (strncmp (line, MAP_PREFIX, strlen (MAP_PREFIX)) == 0) {
      char key[64], dev[128], *f = line + strlen (MAP_PREFIX);
      int consumed = 0;
      bool matched = false;
      if (regexec (&map_re, line, 0, NULL, 0) != 0) {
        say (err, errlen, "'%s' is not read by Proxmox VE (it must match "
             "^#qmdump#map:(\\S+):(\\S+):(\\S*):(\\S*):$)", line);
        free (line);
        goto out;
      }
      if (sscanf (f, "%63[^:]:%127[^:]:%n", key, dev, &consumed) != 2) {
        say (err, errlen, "'%s': cannot read its fields", line);
        free (line);
        goto out;
      }
      for (i = 0; i < n; i++) {
        size_t dl = strlen (disks[i].archive) - strlen (ARCHIVE_SUFFIX);
        if (strlen (dev) == dl && strncmp (dev, disks[i].archive, dl) == 0) {
          count[i]++;
          matched = true;
          /* The drive line of this key must exist (drive_re below). */
          if (!pve_disk_key (disks[i].archive, k) || strcmp (k, key) != 0) {
            say (err, errlen, "'%s' maps %s to key %s", line, dev, key);
            free (line);
            goto out;
          }
        }
      }
      if (!matched) {
        /* PVE dies: "archive does not contain data for drive". */
        say (err, errlen, "'%s' names no archive of this snapshot", line);
        free (line);
        goto out;
      }
    }
    free (line);
  }
  for (i = 0; i < n; i++) {
    regmatch_t m[4];
    bool drive = false;
    if (count[i] != 1) {
      say (err, errlen, "archive %s has %u map lines, not one",
           disks[i].archive, count[i]);
      goto out;
    }
    if (!pve_disk_key (disks[i].archive, k))
      goto out;
    for (p = text; *p;) {
      const char *nl = strchr (p, '\n');
      char *line = strndup (p, (size_t) (nl - p));
      p = nl + 1;
      if (line && regexec (&drive_re, line, 4, m, 0) == 0
          && (size_t) (m[1].rm_eo - m[1].rm_so) == strlen (k)
          && strncmp (line + m[1].rm_so, k, strlen (k)) == 0)
        drive = true;
      free (line);
    }
    if (!drive) {
      say (err, errlen, "no drive line for %s", k);
      goto out;
    }
  }
  r = 0;
out:
  regfree (&map_re);
  regfree (&drive_re);
  return r;
}
