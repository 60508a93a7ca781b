/* snapshot-list.c -- freeing the snapshot lists that the datastore and
 * the remote client both make (struct pbs_snapshot, pbsproto.h). */
#include <stdlib.h>
#include <string.h>

#include "pbs-errors.h"

void
pbs__snapshot_clear (struct pbs_snapshot *s)
{
  size_t j;

  free (s->ns);
  free (s->type);
  free (s->id);
  for (j = 0; j < s->nfiles; j++)
    free (s->files[j]);
  free (s->files);
  free (s->owner);
  free (s->verify_state);
  free (s->comment);
  free (s->fingerprint);
  memset (s, 0, sizeof *s);
}

void
pbs_snapshots_free (struct pbs_snapshot *s, size_t n)
{
  size_t i;

  if (!s)
    return;
  for (i = 0; i < n; i++)
    pbs__snapshot_clear (&s[i]);
  free (s);
}
