/* ds-base-index.c -- the base indexes a backup session has read, each
 * parsed once: pbs_ds_backup_previous registers its digests and lends it
 * (pbs_ds_backup_previous_index), and a writer with reuse-csum clones it
 * (ds-writer.c) instead of reading and parsing the file again.  The base
 * is locked shared for the whole session and never rewritten, so the
 * parse stays true until pbs_ds_backup_end. */
#include <stdlib.h>
#include <string.h>

#include "ds-backup-internal.h"

int
pbs__dsb_keep_base_index (struct pbs_ds_backup *b, const char *name,
                          struct pbs_fidx *idx)
{
  struct pbs__dsb_base_index *n;

  n = realloc (b->base_idx, (b->nbase_idx + 1) * sizeof *n);
  if (!n) {
    pbs__dsb_oom ();
    return -1;
  }
  b->base_idx = n;
  n = &b->base_idx[b->nbase_idx];
  n->name = strdup (name);
  if (!n->name) {
    pbs__dsb_oom ();
    return -1;
  }
  n->idx = idx;
  b->nbase_idx++;
  return 0;
}

const struct pbs_fidx *
pbs__dsb_base_index (const struct pbs_ds_backup *b, const char *name)
{
  size_t i;

  for (i = 0; i < b->nbase_idx; i++)
    if (strcmp (b->base_idx[i].name, name) == 0)
      return b->base_idx[i].idx;
  return NULL;
}

void
pbs__dsb_free_base_indexes (struct pbs_ds_backup *b)
{
  size_t i;

  for (i = 0; i < b->nbase_idx; i++) {
    free (b->base_idx[i].name);
    pbs_fidx_free (b->base_idx[i].idx);
  }
  free (b->base_idx);
  b->base_idx = NULL;
  b->nbase_idx = 0;
}
