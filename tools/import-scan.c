/* import-scan.c -- find the groups, chains and points of a backup folder.
 *
 * Two layouts (docs/import.md):
 *  - qmpbackup (github abbbi/qmpbackup, libqmpbackup/image.py): per disk a
 *    folder named after the disk's image file holding FULL-<t>-<file>,
 *    INC-<t>-<file> and COPY-<t>-<file> (t = unix time of the run, one t
 *    for all disks of a run); `--no-subdir` puts them in one folder;
 *    `--monthly` adds YYYY-MM/ folders, each starting new chains.  INC
 *    files have no backing pointer: the order is the time in the names,
 *    never the file times.  *.partial = an interrupted run.  "uuid" and
 *    "<file>.config" are side files.
 *  - chains linked by backing pointers (qemu-img create -b, libvirt): each
 *    layer is a point; its time comes from its name or its mtime. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cli.h"
#include "import.h"
#include "pbsproto.h"
#include "push.h"
#include "tar-index.h"

#include <fcntl.h>
#include <unistd.h>
#include <jansson.h>

/* ------------------------------------------------------------ names */

/* "FULL-1700000000-disk.qcow2[.partial]" */
static bool
qmp_name (const char *name, enum import_kind *kind, int64_t *t,
          char **file, bool *partial)
{
  static const struct {
    const char *p;
    enum import_kind k;
  } pre[] = { { "FULL-", IMPORT_FULL },
              { "INC-", IMPORT_INC },
              { "COPY-", IMPORT_COPY } };
  const char *s = NULL, *end;
  size_t i, len;
  int64_t v = 0;

  for (i = 0; i < sizeof pre / sizeof pre[0] && !s; i++)
    if (strncmp (name, pre[i].p, strlen (pre[i].p)) == 0) {
      s = name + strlen (pre[i].p);
      *kind = pre[i].k;
    }
  if (!s || !isdigit ((unsigned char) *s))
    return false;
  for (end = s; isdigit ((unsigned char) *end) && end - s < 12; end++)
    v = v * 10 + (*end - '0');
  if (*end != '-' || !end[1])
    return false;
  len = strlen (end + 1);
  *partial = len > 8 && strcmp (end + 1 + len - 8, ".partial") == 0;
  if (*partial)
    len -= 8;
  *file = strndup (end + 1, len);
  *t = v;
  return *file != NULL;
}

static bool
is_month (const char *n)
{
  return strlen (n) == 7 && isdigit ((unsigned char) n[0])
         && isdigit ((unsigned char) n[1]) && isdigit ((unsigned char) n[2])
         && isdigit ((unsigned char) n[3]) && n[4] == '-'
         && isdigit ((unsigned char) n[5]) && isdigit ((unsigned char) n[6]);
}

/* "scsi0.qcow2" -> "scsi0": the disk name without its image extension. */
static char *
disk_name (const char *file)
{
  static const char *const ext[] = { ".qcow2", ".qcow", ".img", ".raw" };
  size_t len = strlen (file), i;

  for (i = 0; i < sizeof ext / sizeof ext[0]; i++) {
    size_t el = strlen (ext[i]);
    if (len > el && strcmp (file + len - el, ext[i]) == 0)
      return strndup (file, len - el);
  }
  return strdup (file);
}

static int64_t
utc (int y, int mo, int d, int h, int mi, int s)
{
  struct tm tm = { 0 };

  if (y < 1970 || y > 9999 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23
      || mi > 59 || s > 60)
    return -1;
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = s;
  return (int64_t) timegm (&tm);
}

/* N digits at P as a number, or -1. */
static int
digits (const char *p, int n)
{
  int v = 0, i;

  for (i = 0; i < n; i++) {
    if (!isdigit ((unsigned char) p[i]))
      return -1;
    v = v * 10 + (p[i] - '0');
  }
  return v;
}

int64_t
import_time_from_name (const char *name)
{
  const char *p;

  /* 2024-06-05T15:06:40 / 2024-06-05_15-06-40 / 20240605T150640 /
   * 20240605-150640 / 20240605150640 (UTC), or a 10-digit epoch. */
  for (p = name; *p; p++) {
    if (p > name && isdigit ((unsigned char) p[-1]))
      continue;
    if (digits (p, 4) >= 1970 && p[4] == '-' && digits (p + 5, 2) >= 0
        && p[7] == '-' && digits (p + 8, 2) >= 0
        && strchr ("T_ ", p[10]) && p[10] && digits (p + 11, 2) >= 0
        && strchr (":-", p[13]) && p[13] && digits (p + 14, 2) >= 0
        && strchr (":-", p[16]) && p[16] && digits (p + 17, 2) >= 0
        && !isdigit ((unsigned char) p[19]))
      return utc (digits (p, 4), digits (p + 5, 2), digits (p + 8, 2),
                  digits (p + 11, 2), digits (p + 14, 2), digits (p + 17, 2));
    if (digits (p, 8) >= 0) {
      const char *q = p + 8;
      if (*q == 'T' || *q == '-' || *q == '_')
        q++;
      if (digits (q, 6) >= 0 && !isdigit ((unsigned char) q[6])
          && (q != p + 8 || !isdigit ((unsigned char) p[14]) || true))
        return utc (digits (p, 4), digits (p + 4, 2), digits (p + 6, 2),
                    digits (q, 2), digits (q + 2, 2), digits (q + 4, 2));
    }
    if (digits (p, 10) >= 0 && *p == '1' && !isdigit ((unsigned char) p[10]))
      return (int64_t) strtoll (p, NULL, 10);
  }
  return -1;
}

/* ------------------------------------------------------------ archives
 *
 * An uncompressed tar is scanned in place: its index stands in for the
 * folder tree (paths "ARCHIVE/member"), so no member is ever written.
 * One scan at a time (import_scan_archive sets these). */

static const struct tar_index *vtar;
static const char *vroot;

/* PATH's member name inside the archive being scanned ("" for its root),
 * or NULL when PATH is a real file. */
static const char *
vmember (const char *path)
{
  size_t n;

  if (!vtar)
    return NULL;
  n = strlen (vroot);
  if (strncmp (path, vroot, n) != 0 || (path[n] && path[n] != '/'))
    return NULL;
  return path[n] ? path + n + 1 : "";
}

/* Is REL a folder of the archive (a folder member, or a prefix)? */
static bool
vis_dir (const char *rel)
{
  size_t n = strlen (rel), i;

  if (!n)
    return true;
  for (i = 0; i < vtar->n; i++)
    if (!strncmp (vtar->m[i].name, rel, n)
        && (vtar->m[i].name[n] == '/'
            || (!vtar->m[i].name[n] && vtar->m[i].dir)))
      return true;
  return false;
}

/* stat of PATH, real or a member: 0 or -1. */
static int
vstat (const char *path, struct stat *st)
{
  const char *rel = vmember (path);
  const struct tar_member *m;

  if (!rel)
    return stat (path, st);
  memset (st, 0, sizeof *st);
  m = *rel ? tar_index_find (vtar, rel) : NULL;
  if (m && !m->dir) {
    st->st_mode = S_IFREG | 0400;
    st->st_size = (off_t) m->size;
    st->st_mtim.tv_sec = (time_t) (m->mtime_ns / 1000000000);
    st->st_mtim.tv_nsec = (long) (m->mtime_ns % 1000000000);
    return 0;
  }
  if (vis_dir (rel)) {
    st->st_mode = S_IFDIR | 0500;
    return 0;
  }
  errno = ENOENT;
  return -1;
}

static int
vprobe (const char *path, struct qcow_probe_info *pi)
{
  const char *rel = vmember (path);
  const struct tar_member *m;

  if (!rel)
    return qcow_probe (path, pi);
  m = tar_index_find (vtar, rel);
  if (!m || m->dir || !m->in_place) {
    memset (pi, 0, sizeof *pi);
    return -1;
  }
  {
    struct qcow_span sp = { .offset = m->offset, .length = m->size,
                            .name = rel, .extents = m->ext,
                            .nextents = m->next };
    return qcow_probe_in_span (vroot, &sp, pi);
  }
}

/* The entries of archive folder REL, as list_dir gives them. */
static int
vlist (const char *rel, char ***names, size_t *n)
{
  size_t len = strlen (rel), i, j;

  for (i = 0; i < vtar->n; i++) {
    const char *nm = vtar->m[i].name, *c;
    char *child, **g;
    if (len && (strncmp (nm, rel, len) != 0 || nm[len] != '/'))
      continue;
    c = len ? nm + len + 1 : nm;
    if (!*c)
      continue;
    child = strndup (c, strcspn (c, "/"));
    if (!child)
      return -1;
    for (j = 0; j < *n && strcmp ((*names)[j], child); j++)
      ;
    if (j < *n) {
      free (child);
      continue;
    }
    g = realloc (*names, (*n + 1) * sizeof **names);
    if (!g) {
      free (child);
      return -1;
    }
    *names = g;
    g[(*n)++] = child;
  }
  return 0;
}

/* ------------------------------------------------------------ folders */

struct dirent_list {
  char **name;
  bool *is_dir;
  size_t n;
};

static int
name_cmp (const void *a, const void *b)
{
  return strcmp (*(char *const *) a, *(char *const *) b);
}

/* The entries of DIR, sorted; symlinks are taken as what they point to
 * only when that is a regular file in the same folder tree. */
static int
list_dir (const char *dir, struct dirent_list *out, struct cli_err *err)
{
  DIR *d = vmember (dir) ? NULL : opendir (dir);
  struct dirent *de;
  char **names = NULL;
  size_t n = 0, i;

  memset (out, 0, sizeof *out);
  if (vmember (dir)) {
    if (vlist (vmember (dir), &names, &n) == -1) {
      for (i = 0; i < n; i++)
        free (names[i]);
      free (names);
      return cli_err_set (err, dir, "out of memory");
    }
  }
  else if (!d)
    return cli_err_set (err, dir, "cannot read the folder: %s",
                        strerror (errno));
  while (d && (de = readdir (d))) {
    char **g;
    if (!strcmp (de->d_name, ".") || !strcmp (de->d_name, ".."))
      continue;
    g = realloc (names, (n + 1) * sizeof *names);
    if (!g || !(g[n] = strdup (de->d_name))) {
      free (g ? g : names);
      closedir (d);
      return cli_err_set (err, dir, "out of memory");
    }
    names = g;
    n++;
  }
  if (d)
    closedir (d);
  if (n) /* an empty folder: NAMES is NULL, which qsort may not take */
    qsort (names, n, sizeof *names, name_cmp);
  out->name = names;
  out->n = n;
  out->is_dir = calloc (n ? n : 1, sizeof *out->is_dir);
  if (!out->is_dir)
    return cli_err_set (err, dir, "out of memory");
  for (i = 0; i < n; i++) {
    char *p = NULL;
    struct stat st;
    if (asprintf (&p, "%s/%s", dir, names[i]) != -1
        && (vmember (p) ? vstat (p, &st) : lstat (p, &st)) == 0)
      out->is_dir[i] = S_ISDIR (st.st_mode);
    free (p);
  }
  return 0;
}

static void
free_list (struct dirent_list *l)
{
  for (size_t i = 0; i < l->n; i++)
    free (l->name[i]);
  free (l->name);
  free (l->is_dir);
}

static char *
join (const char *a, const char *b)
{
  char *p = NULL;
  if (asprintf (&p, "%s/%s", a, b) == -1)
    return NULL;
  return p;
}

static bool
is_side_file (const char *n)
{
  size_t l = strlen (n);
  return !strcmp (n, "uuid") || (l > 7 && !strcmp (n + l - 7, ".config"));
}

/* A regular file that is qcow2 (by content, not name). */
static bool
is_qcow2_file (const char *path)
{
  struct qcow_probe_info pi;
  bool q;

  if (vprobe (path, &pi) == -1)
    return false;
  q = pi.is_qcow2;
  qcow_probe_free (&pi);
  return q;
}

/* A folder that cannot be listed while the scan only probes for backups
 * is passed over (false) with a warning: the scan goes on without it, so
 * it is no error (not in JSON mode either). */
static bool
probe_failed (const struct cli_err *err)
{
  cli_warning ("%s: %s", err->ctx, err->msg);
  return false;
}

/* Does DIR hold backups of one VM (qmpbackup files, month folders, disk
 * folders, or qcow2 images)? */
static bool
is_vm_root (const char *dir, int depth)
{
  struct cli_err err;
  struct dirent_list l;
  bool yes = false;
  size_t i;

  if (list_dir (dir, &l, &err) == -1)
    return probe_failed (&err);
  for (i = 0; i < l.n && !yes; i++) {
    enum import_kind k;
    int64_t t;
    char *f = NULL, *p = join (dir, l.name[i]);
    bool partial;
    if (!p)
      break;
    if (!l.is_dir[i]) {
      if (qmp_name (l.name[i], &k, &t, &f, &partial) || is_qcow2_file (p))
        yes = true;
    }
    else if (depth > 0 && (is_month (l.name[i]) || is_vm_root (p, depth - 1)))
      yes = true;
    free (f);
    free (p);
  }
  free_list (&l);
  return yes;
}

/* A disk folder of a VM: no sub-folders, and qmpbackup files named after
 * the folder (FULL-<t>-NAME), or qcow2 images in a folder named like an
 * image file ("sda.qcow2", as qmpbackup names disk folders).  A plain
 * folder of images is a VM of its own. */
static bool
is_disk_folder (const char *dir, const char *name)
{
  struct cli_err err;
  struct dirent_list l;
  bool files = false, ok = true, qmp = false;
  size_t i;

  if (list_dir (dir, &l, &err) == -1)
    return probe_failed (&err);
  for (i = 0; i < l.n && ok; i++) {
    enum import_kind k;
    int64_t t;
    char *f = NULL, *p;
    bool partial;
    if (l.is_dir[i]) {
      ok = false;
      break;
    }
    if (qmp_name (l.name[i], &k, &t, &f, &partial)) {
      ok = strcmp (f, name) == 0;
      files = qmp = true;
    }
    else if ((p = join (dir, l.name[i]))) {
      files |= is_qcow2_file (p);
      free (p);
    }
    free (f);
  }
  free_list (&l);
  if (ok && files && !qmp) {
    char *dn = disk_name (name);
    ok = dn && strcmp (dn, name) != 0; /* it had an image extension */
    free (dn);
  }
  return ok && files;
}

/* Does SOURCE hold several VM folders (and no backups of its own)? */
static bool
holds_vms (const char *source)
{
  struct cli_err err;
  struct dirent_list l;
  bool vms = false, own = false;
  size_t i;

  if (list_dir (source, &l, &err) == -1)
    return probe_failed (&err);
  for (i = 0; i < l.n; i++) {
    char *p = join (source, l.name[i]);
    enum import_kind k;
    int64_t t;
    char *f = NULL;
    bool partial;
    if (!p)
      continue;
    /* qmpbackup writes its side files (uuid, <file>.config) into the
     * VM's backup folder, never into a folder of VMs: with them, the
     * sub-folders are that VM's disks, whatever they are named (before
     * 2026-01 qmpbackup named them after the QEMU node: drive0/ holding
     * FULL-<t>-sda.qcow2). */
    if (!l.is_dir[i])
      own |= qmp_name (l.name[i], &k, &t, &f, &partial) || is_qcow2_file (p)
             || is_side_file (l.name[i]);
    else if (is_month (l.name[i]) || is_disk_folder (p, l.name[i]))
      own = true;
    else if (is_vm_root (p, 2))
      vms = true;
    free (f);
    free (p);
  }
  free_list (&l);
  return vms && !own;
}

/* ------------------------------------------------------------ groups */

struct scan {
  const struct import_opts *o;
  struct import_group *g;
  bool failed;
  struct cli_err *err; /* why the scan failed (when it says) */
};

static struct import_chain *
new_chain (struct scan *s, const char *disk)
{
  struct import_group *g = s->g;
  struct import_chain *c = realloc (g->c, (g->nc + 1) * sizeof *g->c);

  if (!c)
    return NULL;
  g->c = c;
  c = &g->c[g->nc++];
  memset (c, 0, sizeof *c);
  c->disk = strdup (disk);
  return c->disk ? c : NULL;
}

static int
add_layer (struct import_chain *c, const struct import_layer *l)
{
  struct import_layer *n = realloc (c->l, (c->n + 1) * sizeof *c->l);

  if (!n)
    return -1;
  c->l = n;
  c->l[c->n++] = *l;
  return 0;
}

struct qmp_file {
  char *path, *disk;
  enum import_kind kind;
  int64_t time;
  bool partial;
};

static int
qmp_cmp (const void *a, const void *b)
{
  const struct qmp_file *x = a, *y = b;
  int c = strcmp (x->disk, y->disk);

  if (c)
    return c;
  if (x->time != y->time)
    return x->time < y->time ? -1 : 1;
  return (int) x->kind - (int) y->kind;
}

/* Chains from qmpbackup files (one era, any disks): per disk, each FULL
 * starts a chain, each INC extends the current one, each COPY is a chain
 * of its own. */
static int
qmp_chains (struct scan *s, struct qmp_file *f, size_t n)
{
  struct import_chain *cur = NULL;
  const char *cur_disk = NULL;
  size_t i;

  qsort (f, n, sizeof *f, qmp_cmp);
  for (i = 0; i < n; i++) {
    struct import_layer l = { 0 };
    struct qcow_probe_info pi;
    struct stat st;

    if (!cur_disk || strcmp (cur_disk, f[i].disk) != 0) {
      cur = NULL;
      cur_disk = f[i].disk;
    }
    l.path = f[i].path;
    f[i].path = NULL;
    l.time = f[i].time;
    l.time_from_name = true;
    l.kind = f[i].kind;
    l.tm = vmember (l.path) ? tar_index_find (vtar, vmember (l.path)) : NULL;
    l.partial = f[i].partial;
    if (vstat (l.path, &st) == 0)
      l.size = (uint64_t) st.st_size;
    if (vprobe (l.path, &pi) == 0) {
      l.raw = !pi.is_qcow2;
      qcow_probe_free (&pi);
    }
    if (l.kind == IMPORT_INC && cur) {
      if (add_layer (cur, &l) == -1)
        return -1;
      continue;
    }
    /* FULL, COPY, or an INC with nothing before it (its point fails). */
    cur = new_chain (s, f[i].disk);
    if (!cur || add_layer (cur, &l) == -1)
      return -1;
    if (l.kind == IMPORT_COPY)
      cur = NULL;
  }
  return 0;
}

/* Chains linked by backing pointers among the qcow2 files of DIR. */
static int
linked_chains (struct scan *s, const char *dir, const char *disk,
               struct dirent_list *l, bool single_disk)
{
  char **path = calloc (l->n + 1, sizeof *path);
  char **base = calloc (l->n + 1, sizeof *base);
  bool *used = calloc (l->n + 1, sizeof *used);
  size_t i, j, tops = 0;
  int r = -1;

  if (!path || !base || !used)
    goto out;
  for (i = 0; i < l->n; i++) {
    struct qcow_probe_info pi;
    if (l->is_dir[i] || is_side_file (l->name[i]))
      continue;
    path[i] = join (dir, l->name[i]);
    if (!path[i] || vprobe (path[i], &pi) == -1 || !pi.is_qcow2) {
      free (path[i]);
      path[i] = NULL;
      continue;
    }
    if (pi.backing_name) {
      /* Resolve like QEMU: relative to the image's own folder. */
      const char *slash = strrchr (pi.backing_name, '/');
      base[i] = strdup (slash ? slash + 1 : pi.backing_name);
      if (vmember (dir) && (pi.backing_name[0] == '/' || slash)) {
        /* In an archive names are only compared, lexically: one that
         * leads out of this folder is a gap. */
        char *want = join (vmember (dir), pi.backing_name);
        const struct tar_member *bm = want && pi.backing_name[0] != '/'
                                          ? tar_index_find (vtar, want)
                                          : NULL;
        const char *bs = bm ? strrchr (bm->name, '/') : NULL;
        size_t dl = strlen (vmember (dir));
        if (!bm || (dl ? !bs || (size_t) (bs - bm->name) != dl
                             || strncmp (bm->name, vmember (dir), dl)
                   : bs != NULL)) {
          free (base[i]);
          base[i] = strdup (pi.backing_name); /* kept: a gap */
        }
        free (want);
      }
      else if (pi.backing_name[0] == '/' || slash) {
        char *want = pi.backing_name[0] == '/' ? strdup (pi.backing_name)
                                               : join (dir, pi.backing_name);
        char *rw = want ? realpath (want, NULL) : NULL;
        char *rd = realpath (dir, NULL);
        /* Only a name inside this folder can be a layer here. */
        if (!rw || !rd || strncmp (rw, rd, strlen (rd)) != 0
            || strchr (rw + strlen (rd) + 1, '/')) {
          free (base[i]);
          base[i] = strdup (pi.backing_name); /* kept: a gap */
        }
        free (want);
        free (rw);
        free (rd);
      }
    }
    qcow_probe_free (&pi);
  }
  for (i = 0; i < l->n; i++)
    for (j = 0; j < l->n; j++)
      if (path[j] && base[j] && path[i] && !strcmp (base[j], l->name[i]))
        used[i] = true;
  for (i = 0; i < l->n; i++)
    tops += path[i] && !used[i];
  /* One chain in a folder of its own: the disk the folder names (or
   * scsi0, push's default); several: each named after its base layer. */
  single_disk = single_disk || tops == 1;
  for (i = 0; i < l->n; i++) {
    struct import_chain *c;
    size_t k, order[64], depth = 0;
    char diskbuf[300];
    if (!path[i] || used[i])
      continue; /* not a top */
    /* Walk down from the top to the base. */
    for (k = i;;) {
      if (depth == 64)
        break;
      order[depth++] = k;
      if (!base[k])
        break;
      for (j = 0; j < l->n; j++)
        if (path[j] && !strcmp (base[k], l->name[j]))
          break;
      if (j == l->n) { /* the backing file is not here */
        order[depth++] = SIZE_MAX;
        break;
      }
      k = j;
    }
    if (single_disk)
      snprintf (diskbuf, sizeof diskbuf, "%s", disk);
    else {
      char *dn = disk_name (l->name[order[depth - 1] == SIZE_MAX
                                     ? order[depth - 2]
                                     : order[depth - 1]]);
      snprintf (diskbuf, sizeof diskbuf, "%s", dn ? dn : "disk");
      free (dn);
    }
    c = new_chain (s, diskbuf);
    if (!c)
      goto out;
    for (k = depth; k-- > 0;) {
      struct import_layer ly = { 0 };
      struct stat st;
      if (order[k] == SIZE_MAX) {
        /* A layer that names a missing backing file: a gap.  Marked
         * partial-like through kind INC without a FULL: its points fail
         * with the name it gives. */
        ly.path = strdup (base[order[k - 1]]);
        ly.kind = IMPORT_INC;
        ly.time = INT64_MIN;
        if (!ly.path || add_layer (c, &ly) == -1)
          goto out;
        continue;
      }
      ly.path = path[order[k]];
      path[order[k]] = NULL;
      ly.kind = IMPORT_LINKED;
      ly.tm = vmember (ly.path) ? tar_index_find (vtar, vmember (ly.path))
                                : NULL;
      if (vstat (ly.path, &st) == 0) {
        ly.size = (uint64_t) st.st_size;
        ly.time = (int64_t) st.st_mtime;
      }
      if (s->o->time_from != IMPORT_TIME_MTIME) {
        const char *bn = strrchr (ly.path, '/');
        int64_t t = import_time_from_name (bn ? bn + 1 : ly.path);
        if (t >= 0) {
          ly.time = t;
          ly.time_from_name = true;
        }
      }
      if (add_layer (c, &ly) == -1)
        goto out;
    }
  }
  r = 0;
out:
  for (i = 0; path && i < l->n; i++)
    free (path[i]);
  for (i = 0; base && i < l->n; i++)
    free (base[i]);
  free (path);
  free (base);
  free (used);
  return r;
}

/* Up to MAX bytes of PATH (real, or a member read in place), NUL-ended,
 * malloc'd; NULL if it cannot be read or is larger. */
static char *
vread_small (const char *path, size_t max)
{
  const char *rel = vmember (path);
  const struct tar_member *m = rel ? tar_index_find (vtar, rel) : NULL;
  const char *file = rel ? vroot : path;
  uint64_t off = m ? m->offset : 0;
  struct stat st;
  char *buf = NULL;
  ssize_t r;
  int fd;

  if (rel && (!m || m->dir || !m->in_place || m->next || m->size > max))
    return NULL;
  fd = open (file, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd == -1)
    return NULL;
  if (rel)
    st.st_size = (off_t) m->size;
  else if (fstat (fd, &st) == -1 || !S_ISREG (st.st_mode)
           || (uint64_t) st.st_size > max) {
    close (fd);
    return NULL;
  }
  buf = malloc ((size_t) st.st_size + 1);
  r = buf ? pread (fd, buf, (size_t) st.st_size, (off_t) off) : -1;
  close (fd);
  if (r != (ssize_t) st.st_size) {
    free (buf);
    return NULL;
  }
  buf[r] = 0;
  return buf;
}

/* qmpbackup's image.save_info writes `qemu-img info --output json` of
 * each disk's image file to <backup dir>/<file>.config, <file> being the
 * name part of FULL-<t>-<file>: its "format" is the disk's original
 * format (what the Proxmox VE config's map line asks the restore to
 * allocate).  Chains FIRST.. of the group came from DIR. */
static void
read_side_formats (struct scan *s, const char *dir, size_t first)
{
  size_t i;

  for (i = first; i < s->g->nc; i++) {
    struct import_chain *c = &s->g->c[i];
    const char *bn;
    enum import_kind k;
    int64_t t;
    char *file = NULL, *cfg = NULL, *text;
    bool partial;
    json_t *j;
    const char *fmt;
    if (!c->n || c->format)
      continue;
    bn = strrchr (c->l[0].path, '/');
    bn = bn ? bn + 1 : c->l[0].path;
    if (!qmp_name (bn, &k, &t, &file, &partial))
      continue;
    if (asprintf (&cfg, "%s/%s.config", dir, file) == -1)
      cfg = NULL;
    free (file);
    text = cfg ? vread_small (cfg, 1u << 20) : NULL;
    free (cfg);
    j = text ? json_loads (text, 0, NULL) : NULL;
    free (text);
    fmt = json_string_value (json_object_get (j, "format"));
    if (fmt && (!strcmp (fmt, "raw") || !strcmp (fmt, "qcow2")
                || !strcmp (fmt, "vmdk")))
      c->format = strdup (fmt);
    json_decref (j);
  }
}

/* One era (the VM folder itself, or a YYYY-MM folder in it). */
static int
scan_era (struct scan *s, const char *dir)
{
  struct dirent_list l;
  struct qmp_file *f = NULL;
  size_t nf = 0, i, ndirs = 0, first_chain = s->g->nc;
  int r = -1;

  if (list_dir (dir, &l, s->err) == -1)
    return -1;
  for (i = 0; i < l.n; i++) {
    enum import_kind k;
    int64_t t;
    char *file = NULL;
    bool partial;
    if (l.is_dir[i]) {
      if (!is_month (l.name[i]))
        ndirs++;
      continue;
    }
    if (qmp_name (l.name[i], &k, &t, &file, &partial)) {
      struct qmp_file *g = realloc (f, (nf + 1) * sizeof *f);
      if (!g) {
        free (file);
        goto out;
      }
      f = g;
      f[nf].kind = k;
      f[nf].time = t;
      f[nf].partial = partial;
      f[nf].disk = disk_name (file);
      f[nf].path = join (dir, l.name[i]);
      free (file);
      if (!f[nf].disk || !f[nf].path)
        goto out;
      nf++;
    }
  }
  if (nf) { /* qmpbackup --no-subdir */
    if (qmp_chains (s, f, nf) == -1)
      goto out;
  }
  else if (linked_chains (s, dir, "scsi0", &l, false) == -1)
    goto out;
  /* Disk folders. */
  for (i = 0; i < l.n; i++) {
    struct dirent_list dl;
    char *sub, *dn;
    size_t j;
    int rr;
    if (!l.is_dir[i] || is_month (l.name[i]))
      continue;
    sub = join (dir, l.name[i]);
    dn = disk_name (l.name[i]);
    if (!sub || !dn || list_dir (sub, &dl, s->err) == -1) {
      free (sub);
      free (dn);
      goto out;
    }
    for (j = 0; j < nf; j++) {
      free (f[j].path);
      free (f[j].disk);
    }
    nf = 0;
    for (j = 0; j < dl.n; j++) {
      enum import_kind k;
      int64_t t;
      char *file = NULL;
      bool partial;
      struct qmp_file *g;
      if (dl.is_dir[j] || !qmp_name (dl.name[j], &k, &t, &file, &partial))
        continue;
      free (file);
      g = realloc (f, (nf + 1) * sizeof *f);
      if (!g)
        break;
      f = g;
      f[nf].kind = k;
      f[nf].time = t;
      f[nf].partial = partial;
      f[nf].disk = strdup (dn); /* the folder names the disk */
      f[nf].path = join (sub, dl.name[j]);
      nf++;
    }
    rr = nf ? qmp_chains (s, f, nf) : linked_chains (s, sub, dn, &dl, true);
    free_list (&dl);
    free (sub);
    free (dn);
    if (rr == -1)
      goto out;
  }
  (void) ndirs;
  read_side_formats (s, dir, first_chain);
  r = 0;
out:
  for (i = 0; i < nf; i++) {
    free (f[i].path);
    free (f[i].disk);
  }
  free (f);
  free_list (&l);
  return r;
}

/* ------------------------------------------------------------ points */

static const char *
archive_for (const struct import_opts *o, const char *disk)
{
  for (size_t i = 0; i < o->nrename; i++)
    if (!strcmp (o->rename[i].disk, disk))
      return o->rename[i].name;
  return NULL;
}

static int
time_cmp (const void *a, const void *b)
{
  const struct import_point *x = a, *y = b;
  return x->time < y->time ? -1 : x->time > y->time;
}

/* Every distinct layer time is a point; it holds the disks that have a
 * layer at that time (as a qmpbackup run backs up its disks at one t). */
static int
make_points (struct scan *s)
{
  struct import_group *g = s->g;
  size_t i, j, k;

  for (i = 0; i < g->nc; i++)
    for (j = 0; j < g->c[i].n; j++) {
      const struct import_layer *ly = &g->c[i].l[j];
      struct import_point *p = NULL;
      struct import_point_disk *d;
      char *nm = NULL, buf[300];
      const char *given;
      if (ly->time == INT64_MIN)
        continue; /* the missing layer of a gap */
      for (k = 0; k < g->np; k++)
        if (g->p[k].time == ly->time)
          p = &g->p[k];
      if (!p) {
        p = realloc (g->p, (g->np + 1) * sizeof *g->p);
        if (!p)
          return -1;
        g->p = p;
        p = &g->p[g->np++];
        memset (p, 0, sizeof *p);
        p->time = ly->time;
        p->time_from_name = ly->time_from_name;
      }
      d = realloc (p->d, (p->nd + 1) * sizeof *p->d);
      if (!d)
        return -1;
      p->d = d;
      d = &p->d[p->nd++];
      memset (d, 0, sizeof *d);
      d->chain = &g->c[i];
      d->first = 0;
      d->last = j;
      given = archive_for (s->o, g->c[i].disk);
      if (given)
        nm = push_archive_name (given);
      else {
        snprintf (buf, sizeof buf, "drive-%s", g->c[i].disk);
        nm = push_archive_name (buf);
      }
      d->archive = nm;
      if (!nm) {
        snprintf (p->reason, sizeof p->reason,
                  "disk %s: '%s' is not a valid archive name; give "
                  "--archive-name %s=NAME", g->c[i].disk,
                  given ? given : buf, g->c[i].disk);
        p->status = IMPORT_FAILED;
      }
    }
  qsort (g->p, g->np, sizeof *g->p, time_cmp);
  return 0;
}

/* Why point P cannot be pushed (status and reason), from its layers. */
static void
judge_point (struct scan *s, struct import_point *p)
{
  size_t i, j, k;

  for (i = 0; i < p->nd && p->status == IMPORT_TODO; i++) {
    const struct import_point_disk *d = &p->d[i];
    const struct import_chain *c = d->chain;
    for (j = 0; j < i; j++)
      if (!strcmp (p->d[j].archive, d->archive)) {
        snprintf (p->reason, sizeof p->reason,
                  "two layers of disk %s have this time (%s and %s); "
                  "snapshot times are whole seconds: rename the layers "
                  "with their times (e.g. NAME-20240605T150640.qcow2)",
                  c->disk, p->d[j].chain->l[p->d[j].last].path,
                  c->l[d->last].path);
        p->status = IMPORT_FAILED;
      }
    for (k = d->first; k <= d->last && p->status == IMPORT_TODO; k++) {
      const struct import_layer *l = &c->l[k];
      if (l->time == INT64_MIN) {
        snprintf (p->reason, sizeof p->reason,
                  "a gap in the chain of %s: its backing file %s is not in "
                  "the folder",
                  c->disk, l->path);
        p->status = IMPORT_FAILED;
      }
      else if (l->partial) {
        snprintf (p->reason, sizeof p->reason,
                  "%s is .partial (an interrupted run): this point and the "
                  "later ones of this chain are skipped, as qmprestore "
                  "refuses them",
                  l->path);
        p->status = IMPORT_SKIPPED;
      }
      else if (k == 0 && l->kind == IMPORT_INC) {
        snprintf (p->reason, sizeof p->reason,
                  "%s: an INC without a FULL before it", l->path);
        p->status = IMPORT_FAILED;
      }
      else if (l->raw && l->kind != IMPORT_FULL && l->kind != IMPORT_COPY) {
        snprintf (p->reason, sizeof p->reason,
                  "%s is raw: a raw incremental cannot tell written zeros "
                  "from holes, so it cannot be layered",
                  l->path);
        p->status = IMPORT_FAILED;
      }
      else if (l->raw && !s->o->include_raw) {
        snprintf (p->reason, sizeof p->reason,
                  "%s is a raw disk, not qcow2: give --include-raw to take "
                  "raw FULL files",
                  l->path);
        p->status = IMPORT_SKIPPED;
      }
      else if (k > 0 && l->time <= c->l[k - 1].time
               && c->l[k - 1].time != INT64_MIN) {
        snprintf (p->reason, sizeof p->reason,
                  "%s is not newer than the layer below it (%s time): "
                  "give --time-from name, or rename the files",
                  l->path, l->time_from_name ? "name" : "file");
        p->status = IMPORT_FAILED;
      }
      else if (s->o->time_from == IMPORT_TIME_NAME && !l->time_from_name) {
        snprintf (p->reason, sizeof p->reason,
                  "%s: no time in its name (--time-from name)", l->path);
        p->status = IMPORT_FAILED;
      }
    }
  }
}

/* Bytes each point reads: the layers it adds over the chain's previous
 * point. */
static void
count_bytes (struct import_group *g)
{
  size_t i, j, k, q;

  for (i = 0; i < g->np; i++)
    for (j = 0; j < g->p[i].nd; j++) {
      const struct import_point_disk *d = &g->p[i].d[j];
      size_t from = d->first;
      for (q = 0; q < i; q++)
        for (k = 0; k < g->p[q].nd; k++)
          if (g->p[q].d[k].chain == d->chain)
            from = g->p[q].d[k].last + 1;
      for (k = from; k <= d->last; k++)
        g->p[i].read_bytes += d->chain->l[k].size;
    }
}

/* A point that lacks a disk whose chain began before it is incomplete: a
 * run still being written (rsync, qmpbackup itself) or a disk left out.
 * Storing it would make a snapshot without that disk, and the point could
 * never be completed later (a group takes a time once): skip it, say why. */
static void
skip_incomplete (struct import_group *g)
{
  size_t i, j, k;

  for (i = 0; i < g->np; i++) {
    struct import_point *p = &g->p[i];
    for (j = 0; j < g->nc && p->status == IMPORT_TODO; j++) {
      const struct import_chain *c = &g->c[j];
      bool in = false;
      if (c->n == 0 || c->l[0].kind == IMPORT_COPY || c->l[0].time >= p->time)
        continue; /* not started yet, or a copy outside chains */
      for (k = 0; k < p->nd; k++)
        in |= !strcmp (p->d[k].chain->disk, c->disk);
      if (in)
        continue;
      snprintf (p->reason, sizeof p->reason,
                "disk %s has no layer at this time although its chain "
                "began earlier (a run still being written, or the disk was "
                "left out): skipped, so no snapshot lacks it; "
                "--allow-missing-disks takes such points as they are",
                c->disk);
      p->status = IMPORT_SKIPPED;
    }
  }
}

static uint64_t
fnv1a (const char *s)
{
  uint64_t h = 1469598103934665603ull;
  for (; *s; s++)
    h = (h ^ (unsigned char) *s) * 1099511628211ull;
  return h;
}

static int
scan_group (const char *root, const char *shown, const char *id,
            const struct import_opts *o, struct import_group **gs,
            size_t *ng, struct cli_err *err)
{
  struct import_group *all = realloc (*gs, (*ng + 1) * sizeof **gs);
  struct scan s = { .o = o, .err = err };
  struct dirent_list l;
  size_t i, months = 0;

  if (!all)
    return cli_err_set (err, root, "out of memory");
  *gs = all;
  s.g = &all[*ng];
  memset (s.g, 0, sizeof *s.g);
  (*ng)++;
  s.g->source = strdup (shown);
  s.g->id = strdup (id);
  if (!s.g->source || !s.g->id)
    return cli_err_set (err, root, "out of memory");
  s.g->hash = fnv1a (id);
  if (list_dir (root, &l, err) == -1)
    return -1;
  for (i = 0; i < l.n; i++)
    if (l.is_dir[i] && is_month (l.name[i])) {
      char *m = join (root, l.name[i]);
      months++;
      if (!m || scan_era (&s, m) == -1) {
        free (m);
        free_list (&l);
        return -1;
      }
      free (m);
    }
  free_list (&l);
  if (scan_era (&s, root) == -1)
    return -1;
  (void) months;
  if (make_points (&s) == -1)
    return cli_err_set (err, root, "out of memory");
  for (i = 0; i < s.g->np; i++)
    judge_point (&s, &s.g->p[i]);
  /* A skipped .partial point makes the later points of its chain skip. */
  for (i = 0; i < s.g->np; i++) {
    struct import_point *p = &s.g->p[i];
    size_t j, k, q;
    if (p->status != IMPORT_TODO)
      continue;
    for (j = 0; j < p->nd && p->status == IMPORT_TODO; j++)
      for (q = 0; q < i; q++)
        for (k = 0; k < s.g->p[q].nd; k++)
          if (s.g->p[q].d[k].chain == p->d[j].chain
              && s.g->p[q].status == IMPORT_SKIPPED
              && strstr (s.g->p[q].reason, ".partial")) {
            snprintf (p->reason, sizeof p->reason,
                      "after the interrupted run at %lld in the chain of "
                      "%s (.partial): skipped, as qmprestore refuses it",
                      (long long) s.g->p[q].time, p->d[j].chain->disk);
            p->status = IMPORT_SKIPPED;
          }
  }
  if (!o->allow_missing_disks)
    skip_incomplete (s.g);
  count_bytes (s.g);
  return 0;
}

/* "vm1.tar.gz" -> "vm1"; a folder keeps its name. */
static char *
source_id (const char *source)
{
  char *copy = strdup (source), *b, *dot;
  size_t len;

  if (!copy)
    return NULL;
  len = strlen (copy);
  while (len > 1 && copy[len - 1] == '/')
    copy[--len] = 0;
  b = strrchr (copy, '/');
  b = strdup (b ? b + 1 : copy);
  free (copy);
  if (b && (dot = strstr (b, ".tar")) && dot != b)
    *dot = 0;
  return b;
}

/* Scan SOURCE folder DIR, shown as SHOWN, its default backup-id ID_FROM's
 * name.  STREAMED: DIR was unpacked from an archive; IN_ARCHIVE: DIR lies
 * in one (streamed, or read in place), so the VM folders in it are shown
 * as "SHOWN:vm1" ("ARCHIVE:TOP/vm1" below a top folder). */
static int
scan_source (const char *dir, const char *shown, const char *id_from,
             bool streamed, bool in_archive, bool below_top,
             const struct import_opts *o, struct import_group **g,
             size_t *ng, struct cli_err *err)
{
  const char *source = dir;
  struct stat st;
  struct dirent_list l;
  size_t i, before = *ng;
  char *id;
  int r = 0;

  if (vstat (source, &st) == -1)
    return cli_err_set (err, shown, "%s", strerror (errno));
  if (!S_ISDIR (st.st_mode))
    return cli_err_set (err, shown, "not a folder");
  if (!is_vm_root (source, 2))
    return cli_err_set (err, shown, "no backups found (qmpbackup folders "
                        "or qcow2 chains)");
  if (holds_vms (source)) {
    if (list_dir (source, &l, err) == -1)
      return -1;
    for (i = 0; i < l.n && r == 0; i++) {
      char *p;
      if (!l.is_dir[i])
        continue;
      p = join (source, l.name[i]);
      if (!p || (is_vm_root (p, 2)
                 && scan_group (p, p, o->backup_id ? o->backup_id : l.name[i],
                                o, g, ng, err) == -1))
        r = -1;
      if (r == 0 && in_archive && *ng > before
          && !strcmp (g[0][*ng - 1].source, p)) {
        /* In an archive: name the member folder in it. */
        free (g[0][*ng - 1].source);
        if (asprintf (&g[0][*ng - 1].source, "%s%s%s", shown,
                      below_top ? "/" : ":", l.name[i]) == -1)
          g[0][*ng - 1].source = NULL;
        g[0][*ng - 1].from_archive = streamed;
      }
      free (p);
    }
    free_list (&l);
    if (r == 0 && o->backup_id && *ng - before > 1)
      return cli_err_set (err, shown, "holds %zu VMs: --backup-id names "
                          "one group; leave it out to take the folder names",
                          *ng - before);
    return r;
  }
  id = o->backup_id ? strdup (o->backup_id) : source_id (id_from);
  if (!id)
    return cli_err_set (err, shown, "out of memory");
  if (!pbs_valid_backup_id (id)) {
    cli_err_set (err, shown, "'%s' is not a valid backup id; give "
                 "--backup-id", id);
    free (id);
    return -1;
  }
  r = scan_group (source, shown, id, o, g, ng, err);
  if (r == 0)
    g[0][*ng - 1].from_archive = streamed;
  free (id);
  return r;
}

int
import_scan (const char *dir, const char *shown, const char *top,
             const struct import_opts *o, struct import_group **g,
             size_t *ng, struct cli_err *err)
{
  bool streamed = strcmp (dir, shown) != 0, in_archive = streamed || vtar;
  char *sdir = NULL, *sshown = NULL;
  int r;

  cli_err_clear (err); /* some failures (out of memory) say nothing */
  if (!top || !in_archive)
    return scan_source (dir, shown, shown, streamed, in_archive, false, o,
                        g, ng, err);
  /* The archive's one top folder is the SOURCE, as `import TOP` of the
   * unpacked archive would take it. */
  if (!(sdir = join (dir, top))
      || asprintf (&sshown, "%s:%s", shown, top) == -1) {
    free (sdir);
    return cli_err_set (err, shown, "out of memory");
  }
  r = scan_source (sdir, sshown, top, streamed, true, true, o, g, ng, err);
  free (sdir);
  free (sshown);
  return r;
}

int
import_scan_archive (const char *archive, const struct tar_index *ix,
                     const struct import_opts *o, struct import_group **g,
                     size_t *ng, struct cli_err *err)
{
  struct import_top top = { 0 };
  size_t before = *ng, i;
  int r = 0;

  /* A link or special member is refused before anything is planned:
   * left out, it would silently drop a VM or a layer. */
  if (ix->link)
    return cli_err_set (err, archive, "%s", ix->link);
  for (i = 0; i < ix->n && r == 0; i++)
    r = import_top_add (&top, ix->m[i].name, ix->m[i].dir);
  if (r == -1)
    return cli_err_set (err, archive, "out of memory");
  vtar = ix;
  vroot = archive;
  r = import_scan (archive, archive, import_top_name (&top), o, g, ng, err);
  vtar = NULL;
  vroot = NULL;
  free (top.name);
  for (i = before; r == 0 && i < *ng; i++) {
    (*g)[i].archive = strdup (archive);
    if (!(*g)[i].archive)
      return cli_err_set (err, archive, "out of memory");
  }
  return r;
}

void
import_group_clear (struct import_group *g)
{
  size_t j, k;

  for (j = 0; j < g->nc; j++) {
    for (k = 0; k < g->c[j].n; k++)
      free (g->c[j].l[k].path);
    free (g->c[j].l);
    free (g->c[j].disk);
    free (g->c[j].format);
  }
  for (j = 0; j < g->np; j++) {
    for (k = 0; k < g->p[j].nd; k++)
      free (g->p[j].d[k].archive);
    free (g->p[j].d);
    free (g->p[j].push_json);
  }
  free (g->c);
  free (g->p);
  free (g->source);
  free (g->id);
  free (g->archive);
  memset (g, 0, sizeof *g);
}

void
import_groups_free (struct import_group *g, size_t ng)
{
  for (size_t i = 0; i < ng; i++)
    import_group_clear (&g[i]);
  free (g);
}
