/* push-disks.c -- push's --disk NAME=L0,L1,...: one explicit chain (oldest
 * first, the --chain syntax) per disk archive, for disks whose layers have
 * no backing pointers (qmpbackup's INC files) and VMs with several disks.
 * An option, not a positional form, so that no file name can be taken for
 * it. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "push.h"
#include "tar-index.h"

int
push_disk_option (struct push_disk **list, size_t *n, const char *arg,
                  struct cli_err *err)
{
  const char *eq = strchr (arg, '=');
  struct push_disk *grown, *d;
  char *nm;

  if (!eq || eq == arg || memchr (arg, '/', (size_t) (eq - arg)))
    return cli_err_usage (err, "push", "--disk takes NAME=L0,L1,... (oldest "
                          "layer first), not '%s'", arg);
  grown = realloc (*list, (*n + 1) * sizeof **list);
  if (!grown)
    return cli_err_set (err, "push", "out of memory");
  *list = grown;
  d = &grown[*n];
  memset (d, 0, sizeof *d);
  nm = strndup (arg, (size_t) (eq - arg));
  d->name = nm ? push_archive_name (nm) : NULL;
  free (nm);
  if (!d->name)
    return cli_err_usage (err, "push", "invalid archive name in --disk '%s'",
                          arg);
  if (cli_parse_chain (eq + 1, &d->oo, err) == -1) {
    free (d->name);
    return -1;
  }
  (*n)++;
  return 0;
}

/* --from-archive: each layer name is a member path of the archive.  Only
 * an uncompressed tar's plain members lie in one piece, and its GNU
 * sparse members in pieces libarchive's map finds (tar-index.c); others
 * are refused with what to do (unpack, or let import do it). */
int
push_disks_from_archive (struct push_disk *list, size_t n,
                         const char *archive, struct tar_index *ix,
                         struct cli_err *err)
{
  size_t i, k;

  if (tar_index_read (archive, ix, err) == -1)
    return -1;
  if (ix->compressed)
    return cli_err_set (err, archive, "--from-archive reads an uncompressed "
                        "tar in place, this one is compressed: unpack it (or "
                        "use qcow2pbs import, which does)");
  for (i = 0; i < n; i++) {
    struct push_disk *d = &list[i];
    d->spans = calloc (d->oo.chain_len, sizeof *d->spans);
    d->member = calloc (d->oo.chain_len, sizeof *d->member);
    if (!d->spans || !d->member)
      return cli_err_set (err, "push", "out of memory");
    for (k = 0; k < d->oo.chain_len; k++) {
      const char *name = d->oo.chain[k];
      const struct tar_member *m = tar_index_find (ix, name);
      char *file;
      if (!m || m->dir)
        return cli_err_set (err, archive, "has no file member '%s' (give "
                            "member paths as tar -tf lists them)", name);
      if (!m->in_place)
        return cli_err_set (err, archive, "member %s is %s: it cannot be "
                            "read in place; unpack it", name,
                            m->sparse ? "a GNU sparse file" : "not plain");
      file = strdup (archive);
      if (!file)
        return cli_err_set (err, "push", "out of memory");
      /* The member name moves to the span; the chain names the file. */
      d->spans[k].name = name;
      d->spans[k].offset = m->offset;
      d->spans[k].length = m->size;
      d->spans[k].extents = m->ext; /* a GNU sparse member: its pieces */
      d->spans[k].nextents = m->next;
      d->member[k] = m;
      ((const char **) d->oo.chain)[k] = file;
    }
    d->oo.spans = d->spans;
  }
  return 0;
}

void
push_disks_free (struct push_disk *list, size_t n)
{
  size_t i, k;

  for (i = 0; i < n; i++) {
    if (list[i].spans)
      for (k = 0; k < list[i].oo.chain_len; k++)
        free ((char *) list[i].spans[k].name);
    free (list[i].spans);
    free (list[i].member);
    list[i].oo.spans = NULL;
    free (list[i].name);
    cli_free_chain (&list[i].oo);
  }
  free (list);
}
