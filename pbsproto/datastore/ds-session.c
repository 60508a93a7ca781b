/* ds-session.c -- the backup session's state that both the session
 * (ds-backup.c) and the fixed index writer (ds-writer.c) consult, kept
 * below both so that they do not call each other. */
#include <stdio.h>
#include <stdlib.h>

#include "ds-backup-internal.h"
#include "pbs-errors.h"

int
pbs__dsb_ensure_unfinished (struct pbs_ds_backup *b)
{
  if (b->finished) {
    pbs__dsb_bad ("backup already marked as finished.");
    return -1;
  }
  return 0;
}

int
pbs__dsb_read_base_file (struct pbs_ds_backup *b, const char *name, size_t max,
                         uint8_t **data, size_t *len)
{
  char *path = NULL;
  int r;

  if (asprintf (&path, "%s/%s", b->base_path, name) == -1) {
    pbs__dsb_oom ();
    return -1;
  }
  r = pbs__ds_read_file (path, max, data, len);
  free (path);
  return r;
}
