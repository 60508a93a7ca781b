/* cli-chain-names.c -- what a chain's file names say about its layers,
 * where the images themselves say nothing.
 *
 * qmpbackup (libqmpbackup/image.py, create()) names its targets
 * LEVEL-UNIXTIME-DISKFILE with LEVEL FULL, INC, DIFF or COPY, and writes
 * INC and DIFF files without a backing pointer: the name is the only
 * record of where a layer belongs.  Those names are certain evidence.
 *
 * The size of a layer is not: measured on chains made by QEMU through
 * tests/helpers/qmp.py (64 MiB disk, blockdev-backup), the full backup of a mostly
 * empty disk allocates 5.6 % of its virtual size and each incremental
 * 1.9 %; the targets carry no bitmap.  Any threshold that catches the
 * incrementals flags sparse full backups too, so a lone layer is called an
 * incremental only by its name: a qmpbackup INC/DIFF name, or a name with
 * a word such as "incr" or "incremental" in it (incr0.qcow2, as
 * examples/qmp-backup.sh and many scripts write them). */
#include <ctype.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

enum qmpb_level { QMPB_NONE, QMPB_FULL, QMPB_INC, QMPB_DIFF, QMPB_COPY };

static const char *
base_name (const char *path)
{
  const char *s = strrchr (path, '/');
  return s ? s + 1 : path;
}

/* "INC-1700000000-disk.qcow2" -> QMPB_INC, *TIME = 1700000000, *DISK =
 * "disk.qcow2" (the image file qmpbackup backed up: one name per disk). */
static enum qmpb_level
qmpbackup_level (const char *path, unsigned long long *time,
                 const char **disk)
{
  static const struct {
    const char *prefix;
    enum qmpb_level level;
  } levels[] = { { "FULL-", QMPB_FULL }, { "INC-", QMPB_INC },
                 { "DIFF-", QMPB_DIFF }, { "COPY-", QMPB_COPY } };
  const char *name = base_name (path), *p;
  char *end;
  size_t i, n;

  *disk = "";
  for (i = 0; i < sizeof levels / sizeof levels[0]; i++) {
    n = strlen (levels[i].prefix);
    if (strncmp (name, levels[i].prefix, n) != 0)
      continue;
    p = name + n;
    if (!isdigit ((unsigned char) *p))
      return QMPB_NONE;
    *time = strtoull (p, &end, 10);
    *disk = end + 1;
    return *end == '-' && end[1] ? levels[i].level : QMPB_NONE;
  }
  return QMPB_NONE;
}

/* A word of the name (letters between non-letters) that says
 * "incremental": incr0.qcow2, vm-incr-3.qcow2, disk.delta.qcow2. */
static bool
name_says_incremental (const char *path)
{
  /* Not "inc" alone: "Acme-Inc-web.qcow2" is a full disk as likely. */
  static const char *const words[] = { "incr", "incremental", "diff",
                                       "differential", "delta" };
  const char *p = base_name (path);
  size_t i, n;

  while (*p) {
    while (*p && !isalpha ((unsigned char) *p))
      p++;
    for (n = 0; isalpha ((unsigned char) p[n]); n++)
      ;
    for (i = 0; n && i < sizeof words / sizeof words[0]; i++)
      if (strlen (words[i]) == n && strncasecmp (p, words[i], n) == 0)
        return true;
    p += n;
  }
  return false;
}

/* A FULL or INC file of DISK in the folder of PATH made after BELOW and
 * before TIME: an INC made at TIME holds only the changes since that one
 * (each run clears the bitmap), so a chain without it loses them.  Returns
 * its name (malloc'd) or NULL.  A folder that cannot be read proves
 * nothing. */
static char *
skipped_layer (const char *path, const char *disk, unsigned long long below,
               unsigned long long time)
{
  const char *slash = strrchr (path, '/');
  char *dir, *found = NULL;
  const char *d;
  struct dirent *e;
  unsigned long long t;
  enum qmpb_level lv;
  DIR *dp;

  dir = slash ? strndup (path, (size_t) (slash - path) + 1) : strdup (".");
  if (!dir)
    return NULL;
  dp = opendir (dir);
  free (dir);
  if (!dp)
    return NULL;
  while (!found && (e = readdir (dp))) {
    lv = qmpbackup_level (e->d_name, &t, &d);
    if ((lv == QMPB_INC || lv == QMPB_FULL) && t > below && t < time
        && strcmp (d, disk) == 0)
      found = strdup (e->d_name);
  }
  closedir (dp);
  return found;
}

int
cli_check_chain_names (struct qcow_chain *c, struct cli_err *err)
{
  struct qcow_layer_info li, below;
  unsigned long long t, tb;
  enum qmpb_level lv, lvb;
  const char *disk, *diskb;
  size_t d, n = qcow_depth (c);

  /* Depth n-1 is the base; each layer is checked against the one below.
   * A layer with a backing name was already matched to it by qcowlib. */
  for (d = n ? n - 1 : 0; d-- > 0;) {
    if (qcow_layer_info (c, d, &li) == -1
        || qcow_layer_info (c, d + 1, &below) == -1)
      return cli_err_qcow (err, "chain");
    if (li.backing_name)
      continue;
    lv = qmpbackup_level (li.path, &t, &disk);
    if (lv == QMPB_FULL || lv == QMPB_COPY)
      return cli_err_set (err, li.path,
                          "a qmpbackup full backup, but --chain gives %s "
                          "below it: its empty areas would show that older "
                          "data; start --chain with it",
                          below.path);
    lvb = qmpbackup_level (below.path, &tb, &diskb);
    if (lv != QMPB_NONE && lvb != QMPB_NONE && t <= tb)
      return cli_err_set (err, li.path,
                          "made at %llu (its qmpbackup name), not after %s "
                          "that --chain gives before it: give the layers "
                          "oldest first",
                          t, below.path);
    /* Same virtual size is no proof of the same disk: a VM's disks are
     * often made alike, and the --no-subdir layout puts them side by
     * side, so a slip of tab completion would merge two disks. */
    if (lv != QMPB_NONE && lvb != QMPB_NONE && strcmp (disk, diskb) != 0)
      return cli_err_set (err, li.path,
                          "a qmpbackup backup of disk %s, but --chain gives "
                          "%s (a backup of %s) before it: give the layers of "
                          "one disk",
                          disk, below.path, diskb);
  }
  /* Then, the order being right, the layers a chain leaves out. */
  for (d = n ? n - 1 : 0; d-- > 0;) {
    if (qcow_layer_info (c, d, &li) == -1
        || qcow_layer_info (c, d + 1, &below) == -1)
      return cli_err_qcow (err, "chain");
    if (li.backing_name)
      continue;
    lv = qmpbackup_level (li.path, &t, &disk);
    lvb = qmpbackup_level (below.path, &tb, &diskb);
    if (lv == QMPB_INC && lvb != QMPB_NONE) {
      char *skipped = skipped_layer (li.path, disk, tb, t);
      if (skipped) {
        cli_err_set (err, li.path,
                     "--chain skips %s (same folder, made after %s and "
                     "before this file): an incremental holds only the "
                     "changes since the backup before it; give every "
                     "layer, oldest first",
                     skipped, below.path);
        free (skipped);
        return -1;
      }
    }
  }
  return 0;
}

void
cli_warn_lone_incremental (struct qcow_chain *c)
{
  struct qcow_layer_info li;
  unsigned long long t;
  enum qmpb_level lv;
  const char *disk;
  size_t n = qcow_depth (c);
  const char *why;

  if (n == 0 || qcow_layer_info (c, n - 1, &li) == -1 || li.backing_name)
    return;
  lv = qmpbackup_level (li.path, &t, &disk);
  if (lv == QMPB_INC || lv == QMPB_DIFF)
    why = lv == QMPB_INC ? "a qmpbackup incremental (INC) file"
                         : "a qmpbackup differential (DIFF) file";
  else if (lv == QMPB_NONE && name_says_incremental (li.path))
    why = "by its name an incremental backup";
  else
    return;
  cli_warning ("%s is %s with no backing file: the disk read holds only "
               "its changes, zeros elsewhere; give the whole chain with "
               "--chain FULL,...,%s, or import the whole backup folder with "
               "'qcow2pbs import'",
               li.path, why, base_name (li.path));
}
