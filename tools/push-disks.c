/* push-disks.c -- push's --disk NAME=L0,L1,...: one explicit chain (oldest
 * first, the --chain syntax) per disk archive, for disks whose layers have
 * no backing pointers (qmpbackup's INC files) and VMs with several disks.
 * An option, not a positional form, so that no file name can be taken for
 * it. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "push.h"

int
push_disk_option (struct push_disk **list, size_t *n, const char *arg)
{
  const char *eq = strchr (arg, '=');
  struct push_disk *grown, *d;
  char *nm;

  if (!eq || eq == arg || memchr (arg, '/', (size_t) (eq - arg)))
    return cli_usage_error ("push", "--disk takes NAME=L0,L1,... (oldest "
                            "layer first), not '%s'", arg);
  grown = realloc (*list, (*n + 1) * sizeof **list);
  if (!grown)
    return cli_error ("push", "out of memory");
  *list = grown;
  d = &grown[*n];
  memset (d, 0, sizeof *d);
  nm = strndup (arg, (size_t) (eq - arg));
  d->name = nm ? push_archive_name (nm) : NULL;
  free (nm);
  if (!d->name)
    return cli_usage_error ("push", "invalid archive name in --disk '%s'",
                            arg);
  if (cli_parse_chain (eq + 1, &d->oo) == -1) {
    free (d->name);
    return 2;
  }
  (*n)++;
  return 0;
}

void
push_disks_free (struct push_disk *list, size_t n)
{
  size_t i;

  for (i = 0; i < n; i++) {
    free (list[i].name);
    cli_free_chain (&list[i].oo);
  }
  free (list);
}
