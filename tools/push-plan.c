/* push-plan.c -- which chunks must be read: metadata walks only, never
 * guest data.  A chunk is "data" if any byte of it is owned by a DATA
 * extent of the merged view; "touched" if a new layer allocates any byte
 * of it (data or zero flag). */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "push.h"

struct mark {
  uint8_t *map;
  uint64_t nchunks;
  bool data_only;
};

static int
mark_extent (void *opaque, const struct qcow_extent *e)
{
  struct mark *m = opaque;
  uint64_t first, last;

  if (e->length == 0 || (m->data_only && e->kind != QCOW_KIND_DATA))
    return 0;
  first = e->start / PBS_CHUNK_SIZE;
  last = (e->start + e->length - 1) / PBS_CHUNK_SIZE;
  if (last >= m->nchunks)
    last = m->nchunks - 1;
  if (first < m->nchunks)
    memset (m->map + first, 1, last - first + 1);
  return 0;
}

int
plan_data_chunks (struct qcow_chain *c, const char *context, uint8_t **out,
                  uint64_t *nchunks, struct cli_err *err)
{
  uint64_t size = qcow_virtual_size (c);
  struct mark m;

  m.nchunks = (size + PBS_CHUNK_SIZE - 1) / PBS_CHUNK_SIZE;
  m.map = calloc (m.nchunks ? m.nchunks : 1, 1);
  m.data_only = true;
  if (!m.map)
    return cli_err_set (err, context, "out of memory");
  if (size && qcow_map (c, 0, size, mark_extent, &m) == -1) {
    free (m.map);
    return cli_err_qcow (err, context);
  }
  *out = m.map;
  *nchunks = m.nchunks;
  return 0;
}

int
plan_touch_layer (struct qcow_chain *c, size_t depth, uint8_t *touched,
                  uint64_t nchunks, const char *context,
                  struct cli_err *err)
{
  struct qcow_layer_info li;
  struct mark m = { touched, nchunks, false };

  if (qcow_layer_info (c, depth, &li) == -1)
    return cli_err_qcow (err, context);
  if (nchunks && li.virtual_size
      && qcow_layer_map (c, depth, 0, li.virtual_size, mark_extent, &m)
             == -1)
    return cli_err_qcow (err, context);
  return 0;
}
