/* ds-snapshots.c -- list the snapshots of a namespace as PBS's admin API
 * "snapshots" does (docs/pbs-protocol.md §6.4): walk
 * <ns path>/<type>/<id>/<time>/, a snapshot is finished when it has
 * index.json.blob; files, sizes, verify state and key fingerprint come from
 * the manifest, owner from the group.  Sorted by type, id, time (PBS streams
 * them in directory order). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "ends-with.h"
#include "ds-internal.h"
#include "pbs-errors.h"

struct list {
  struct pbs_snapshot *v;
  size_t n, cap;
};

static int
add_file (struct pbs_snapshot *s, const char *name)
{
  char **f = realloc (s->files, (s->nfiles + 1) * sizeof *f);
  if (!f)
    return -1;
  s->files = f;
  f[s->nfiles] = strdup (name);
  if (!f[s->nfiles])
    return -1;
  s->nfiles++;
  return 0;
}

static char *
read_owner (const char *group)
{
  char *path = NULL, *owner = NULL;
  uint8_t *d = NULL;
  size_t len = 0, n;

  if (asprintf (&path, "%s/owner", group) == -1)
    return NULL;
  if (pbs__ds_read_file (path, 4096, &d, &len) == 0) {
    for (n = 0; n < len && d[n] != '\n' && d[n] != '\r'; n++)
      ;
    if (n > 0)
      owner = strndup ((char *)d, n);
  }
  free (d);
  free (path);
  return owner;
}

/* PBS's listing shows the first line of unprotected.notes as "comment"
 * (list_snapshots in src/api2/admin/datastore.rs).  *OUT stays NULL
 * without notes; -1 only for out of memory. */
static int
first_line_of_notes (const struct pbs_manifest *m, char **out)
{
  char *text = pbs_manifest_get_unprotected (m, "notes");
  json_t *v = text ? json_loads (text, JSON_DECODE_ANY, NULL) : NULL;
  int r = 0;

  if (json_is_string (v)) {
    const char *n = json_string_value (v);
    size_t len = strcspn (n, "\n"); /* Rust's lines(): "\r\n" ends too */
    if (len > 0 && n[len - 1] == '\r')
      len--;
    if (*n) {
      *out = strndup (n, len);
      r = *out ? 0 : -1;
    }
  }
  json_decref (v);
  free (text);
  return r;
}

/* Fill S from the snapshot directory DIR.  -1 only for out of memory: an
 * unreadable manifest just leaves the snapshot without details. */
static int
describe (struct pbs_snapshot *s, const char *dir)
{
  char *mpath = NULL, *ppath = NULL;
  uint8_t *blob = NULL;
  size_t blen = 0, i;
  struct stat st;
  int r = -1;

  if (asprintf (&mpath, "%s/" PBS_MANIFEST_NAME, dir) == -1 ||
      asprintf (&ppath, "%s/.protected", dir) == -1) {
    mpath = ppath = NULL;
    goto out;
  }
  s->protected_ = stat (ppath, &st) == 0;
  s->finished = stat (mpath, &st) == 0 && S_ISREG (st.st_mode);
  if (s->finished &&
      pbs__ds_read_file (mpath, PBS_BLOB_MAX_ENCODED, &blob, &blen) == 0) {
    struct pbs_manifest *m = pbs__ds_manifest_from_blob (blob, blen, mpath);
    if (m) {
      const char *vs = pbs__ds_verify_state (m);
      const char *fp = pbs_manifest_key_fingerprint (m);
      for (i = 0; i < pbs_manifest_file_count (m); i++) {
        struct pbs_manifest_file f;
        if (pbs_manifest_file (m, i, &f) == -1)
          continue;
        if (add_file (s, f.filename) == -1) {
          pbs_manifest_free (m);
          goto out;
        }
        s->size += f.size;
      }
      /* Listed by PBS too, with the raw blob size. */
      if (add_file (s, PBS_MANIFEST_NAME) == -1) {
        pbs_manifest_free (m);
        goto out;
      }
      s->size += blen;
      if (first_line_of_notes (m, &s->comment) == -1) {
        pbs_manifest_free (m);
        goto out;
      }
      s->verify_state = vs ? strdup (vs) : NULL;
      s->fingerprint = fp ? strdup (fp) : NULL;
      if ((vs && !s->verify_state) || (fp && !s->fingerprint)) {
        pbs_manifest_free (m);
        goto out;
      }
      pbs_manifest_free (m);
      r = 0;
      goto out;
    }
  }
  {
    /* Unfinished (or unreadable): the file names only. */
    DIR *d = opendir (dir);
    struct dirent *de;
    if (d) {
      while ((de = readdir (d)))
        if (ends_with (de->d_name, ".fidx") ||
            ends_with (de->d_name, ".didx") || ends_with (de->d_name, ".blob"))
          if (de->d_name[0] != '.' && add_file (s, de->d_name) == -1) {
            closedir (d);
            goto out;
          }
      closedir (d);
    }
  }
  r = 0;
out:
  free (blob);
  free (mpath);
  free (ppath);
  return r;
}

/* Is NAME in DIRFD a symlink?  Then the error names it (PARENT/NAME): a
 * datastore holds none, and the listing does not follow them. */
static bool
symlink_error (int dirfd, const char *parent, const char *name)
{
  struct stat st;

  if (fstatat (dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
      S_ISLNK (st.st_mode)) {
    pbs__set_error (ELOOP,
                    "%s/%s is a symlink; a datastore holds "
                    "none, so it is not followed (remove it)",
                    parent, name);
    return true;
  }
  return false;
}

/* -1: out of memory (no message yet); -2: error set. */
static int
scan_group (struct list *l, const char *ns, const char *type, const char *id,
            const char *group)
{
  int fd = open (group, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  DIR *d = fd >= 0 ? fdopendir (fd) : NULL;
  struct dirent *de;
  char *owner = NULL;
  int r = -1;

  if (!d) {
    if (fd >= 0)
      close (fd);
    return 0; /* vanished meanwhile (a symlink was named by the caller) */
  }
  owner = read_owner (group);
  while ((de = readdir (d))) {
    struct pbs_snapshot *s;
    char *dir = NULL;
    int64_t t;
    if (pbs__ds_parse_snapshot_name (de->d_name, &t) == -1)
      continue;
    if (symlink_error (dirfd (d), group, de->d_name)) {
      r = -2;
      goto out;
    }
    if (l->n == l->cap) {
      size_t cap = l->cap ? l->cap * 2 : 16;
      struct pbs_snapshot *v = realloc (l->v, cap * sizeof *v);
      if (!v)
        goto out;
      l->v = v;
      l->cap = cap;
    }
    s = &l->v[l->n];
    memset (s, 0, sizeof *s);
    l->n++;
    s->time = t;
    s->ns = strdup (ns);
    s->type = strdup (type);
    s->id = strdup (id);
    s->owner = owner ? strdup (owner) : NULL;
    if (!s->ns || !s->type || !s->id || (owner && !s->owner))
      goto out;
    if (asprintf (&dir, "%s/%s", group, de->d_name) == -1)
      goto out;
    if (describe (s, dir) == -1) {
      free (dir);
      goto out;
    }
    free (dir);
  }
  r = 0;
out:
  free (owner);
  closedir (d);
  return r;
}

static int
cmp_snap (const void *a, const void *b)
{
  const struct pbs_snapshot *x = a, *y = b;
  int c = strcmp (x->type, y->type);
  if (c == 0)
    c = strcmp (x->id, y->id);
  if (c == 0)
    c = x->time < y->time ? -1 : x->time > y->time;
  return c;
}

int
pbs_datastore_snapshots (struct pbs_datastore *ds, const char *ns,
                         const char *type, const char *id,
                         struct pbs_snapshot **out, size_t *n)
{
  static const char *const types[] = {"ct", "host", "vm"};
  struct list l = {0};
  char *nsp, *base = NULL;
  size_t t;

  *out = NULL;
  *n = 0;
  if (!ns)
    ns = "";
  if ((type && !pbs_valid_backup_type (type)) ||
      (id && !pbs_valid_backup_id (id))) {
    pbs__set_error (EINVAL, "invalid backup type or id");
    return -1;
  }
  nsp = pbs__ds_ns_path (ns);
  if (!nsp) {
    return -1;
  }
  if (asprintf (&base, "%s%s%s", ds->path, *nsp ? "/" : "", nsp) == -1) {
    free (nsp);
    goto oom;
  }
  free (nsp);
  {
    const char *rel = base + strlen (ds->path);
    int nfd = pbs__ds_open_path (ds, *rel == '/' ? rel + 1 : "");
    if (nfd == -1) {
      free (base);
      if (pbs_errno () != ELOOP)
        pbs__set_error (ENOENT, "namespace not found");
      return -1;
    }
    close (nfd);
  }
  for (t = 0; t < sizeof types / sizeof *types; t++) {
    char *tdir = NULL;
    DIR *d;
    struct dirent *de;
    if (type && strcmp (type, types[t]) != 0)
      continue;
    if (asprintf (&tdir, "%s/%s", base, types[t]) == -1)
      goto oom_base;
    if (symlink_error (AT_FDCWD, base, types[t])) {
      free (tdir);
      goto err_base;
    }
    d = opendir (tdir);
    while (d && (de = readdir (d))) {
      char *group = NULL;
      int sr;
      if (de->d_name[0] == '.' || !pbs_valid_backup_id (de->d_name) ||
          (id && strcmp (id, de->d_name) != 0))
        continue;
      if (symlink_error (dirfd (d), tdir, de->d_name)) {
        closedir (d);
        free (tdir);
        goto err_base;
      }
      if (asprintf (&group, "%s/%s", tdir, de->d_name) == -1)
        group = NULL;
      sr = group ? scan_group (&l, ns, types[t], de->d_name, group) : -1;
      free (group);
      if (sr < 0) {
        closedir (d);
        free (tdir);
        if (sr == -2)
          goto err_base;
        goto oom_base;
      }
    }
    if (d)
      closedir (d);
    free (tdir);
  }
  free (base);
  if (l.n)
    qsort (l.v, l.n, sizeof *l.v, cmp_snap);
  *out = l.v;
  *n = l.n;
  return 0;
err_base:
  free (base);
  pbs_snapshots_free (l.v, l.n);
  return -1;
oom_base:
  free (base);
oom:
  pbs_snapshots_free (l.v, l.n);
  pbs__set_error (ENOMEM, "out of memory");
  return -1;
}
