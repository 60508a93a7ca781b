/* bitmap.c -- persistent dirty bitmaps (qcow2 "bitmaps" extension).
 *
 * The directory is parsed and checked at open, as QEMU 7.2 does in
 * block/qcow2-bitmap.c (bitmap_list_load, check_dir_entry): a broken
 * directory makes QEMU refuse the whole image, so it makes us refuse it.
 * Bitmap data is read on demand by qcow_bitmap_ranges: bit n covers guest
 * bytes [n*granularity, (n+1)*granularity) and is stored LSB first (byte
 * n/8, bit n%8), because QEMU serialises its words little-endian. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "byteorder.h"
#include "checked-overflow.h"
#include "qcow-internal.h"
#include "qcow2-format.h"

static int
cmp_name (const void *a, const void *b)
{
  const struct qcow__bitmap *x = *(const struct qcow__bitmap *const *) a;
  const struct qcow__bitmap *y = *(const struct qcow__bitmap *const *) b;
  return strcmp (x->info.name, y->info.name);
}

/* check_dir_entry of QEMU, plus extra data (unsupported in QEMU). */
static int
check_entry (struct qcow__layer *l, const struct qcow__bitmap *b,
             uint32_t extra, uint16_t name_size, uint8_t type, size_t idx)
{
  uint64_t phys;

  if (b->table_size == 0 || b->table_offset == 0 ||
      (b->table_offset & (l->cluster_size - 1)) ||
      b->table_size > QCOW2_BME_MAX_TABLE ||
      b->gran_bits > QCOW2_BME_MAX_GRAN_BITS ||
      b->gran_bits < QCOW2_BME_MIN_GRAN_BITS ||
      (b->flags & QCOW2_BME_RESERVED) || name_size > QCOW2_BME_MAX_NAME ||
      type != QCOW2_BME_TYPE_DIRTY) {
    qcow__set_error (EBADMSG, "%s: bitmap directory entry %zu is invalid",
                     l->path, idx);
    return -1;
  }
  phys = (uint64_t) b->table_size << l->cluster_bits; /* <= 2^48 */
  if (phys > QCOW2_BME_MAX_PHYS) {
    qcow__set_error (EBADMSG, "%s: bitmap %zu too large", l->path, idx);
    return -1;
  }
  /* (phys * 8) << 31 fits: phys <= 2^29. */
  if (!(b->flags & QCOW2_BME_FLAG_IN_USE) &&
      l->size > ((phys * 8) << b->gran_bits)) {
    qcow__set_error (EBADMSG,
                     "%s: bitmap %zu table too small for the virtual size",
                     l->path, idx);
    return -1;
  }
  if (extra != 0) {
    qcow__set_error (ENOTSUP, "%s: bitmap %zu has extra data (unsupported)",
                     l->path, idx);
    return -1;
  }
  return 0;
}

/* Read and check the bitmap table of B (QBM bitmap_table_load,
 * check_table_entry).  Returns a malloc'd table of B->table_size
 * big-endian entries, or NULL. */
static uint8_t *
load_table (struct qcow__layer *l, const struct qcow__bitmap *b)
{
  uint8_t *table = malloc ((size_t) b->table_size * 8);
  uint32_t t;

  if (!table) {
    qcow__set_error (ENOMEM, "%s: out of memory", l->path);
    return NULL;
  }
  if (qcow__io_pread_strict (&l->io, l->path, "bitmap table", table,
                             (size_t) b->table_size * 8,
                             b->table_offset) == -1)
    goto err;
  for (t = 0; t < b->table_size; t++) {
    uint64_t ent = load_be64 (table + (size_t) t * 8);
    uint64_t off = ent & QCOW2_BME_TABLE_OFFSET_MASK;
    if ((ent & QCOW2_BME_TABLE_RESERVED) ||
        (off && ((ent & 1) || (off & (l->cluster_size - 1))))) {
      qcow__set_error (EBADMSG,
                       "%s: bitmap '%s': invalid table entry %u: 0x%016" PRIx64,
                       l->path, b->info.name, t, ent);
      goto err;
    }
  }
  return table;
err:
  free (table);
  return NULL;
}

int
qcow__parse_bitmaps (struct qcow__layer *l, uint32_t nb, uint64_t dir_size,
                     uint64_t dir_offset)
{
  uint8_t *dir = NULL;
  struct qcow__bitmap **sorted = NULL;
  uint64_t pos = 0;
  size_t i, n = 0;
  int ret = -1;

  if (nb == 0 || nb > QCOW2_MAX_BITMAPS) {
    qcow__set_error (EBADMSG, "%s: bitmaps extension: invalid count %u",
                     l->path, nb);
    return -1;
  }
  if (dir_offset & (l->cluster_size - 1)) {
    qcow__set_error (EBADMSG,
                     "%s: bitmaps extension: invalid directory offset "
                     "0x%" PRIx64,
                     l->path, dir_offset);
    return -1;
  }
  if (dir_size > QCOW2_MAX_BITMAP_DIR) {
    qcow__set_error (EBADMSG,
                     "%s: bitmaps extension: directory too large "
                     "(%" PRIu64 " bytes)",
                     l->path, dir_size);
    return -1;
  }
  /* dir_size is bounded by the file size here, so is the allocation. */
  dir = malloc (dir_size ? (size_t) dir_size : 1);
  l->bitmaps = calloc (nb, sizeof *l->bitmaps);
  l->bitmap_info = calloc (nb, sizeof *l->bitmap_info);
  if (!dir || !l->bitmaps || !l->bitmap_info) {
    qcow__set_error (ENOMEM, "%s: out of memory", l->path);
    goto out;
  }
  if (qcow__io_pread_strict (&l->io, l->path, "bitmap directory", dir,
                             (size_t) dir_size, dir_offset) == -1)
    goto out;
  while (pos < dir_size) {
    const uint8_t *e = dir + pos;
    struct qcow__bitmap *b;
    uint32_t extra;
    uint16_t name_size;
    uint64_t len;
    char *name;

    if (dir_size - pos < QCOW2_BME_HEADER_SIZE) {
      qcow__set_error (EBADMSG, "%s: broken bitmap directory", l->path);
      goto out;
    }
    extra = load_be32 (e + 20);
    name_size = load_be16 (e + 18);
    len = ((uint64_t) QCOW2_BME_HEADER_SIZE + extra + name_size + 7) &
          ~(uint64_t) 7;
    if (len > dir_size - pos) {
      qcow__set_error (EBADMSG, "%s: broken bitmap directory", l->path);
      goto out;
    }
    if (n >= nb) {
      qcow__set_error (EBADMSG,
                       "%s: more bitmaps found than specified in the "
                       "header extension",
                       l->path);
      goto out;
    }
    b = &l->bitmaps[n];
    b->table_offset = load_be64 (e);
    b->table_size = load_be32 (e + 8);
    b->flags = load_be32 (e + 12);
    b->gran_bits = e[17];
    if (check_entry (l, b, extra, name_size, e[16], n) == -1)
      goto out;
    name = malloc ((size_t) name_size + 1);
    if (!name) {
      qcow__set_error (ENOMEM, "%s: out of memory", l->path);
      goto out;
    }
    memcpy (name, e + QCOW2_BME_HEADER_SIZE + extra, name_size);
    name[name_size] = '\0';
    b->info.name = name;
    n++; /* from here on qcow__layer_free frees the name */
    l->nb_bitmaps = n;
    if (strlen (name) != name_size) {
      qcow__set_error (EBADMSG, "%s: bitmap %zu name contains a NUL byte",
                       l->path, n - 1);
      goto out;
    }
    b->info.granularity = 1ull << b->gran_bits;
    b->info.in_use = !!(b->flags & QCOW2_BME_FLAG_IN_USE);
    b->info.enabled = !!(b->flags & QCOW2_BME_FLAG_AUTO);
    pos += len;
  }
  if (n != nb) {
    qcow__set_error (EBADMSG,
                     "%s: fewer bitmaps found than specified in the header "
                     "extension",
                     l->path);
    goto out;
  }
  /* Names must be unique (spec; QEMU fails to load duplicates). */
  sorted = malloc (n * sizeof *sorted);
  if (!sorted) {
    qcow__set_error (ENOMEM, "%s: out of memory", l->path);
    goto out;
  }
  for (i = 0; i < n; i++)
    sorted[i] = &l->bitmaps[i];
  qsort (sorted, n, sizeof *sorted, cmp_name);
  for (i = 1; i < n; i++)
    if (strcmp (sorted[i]->info.name, sorted[i - 1]->info.name) == 0) {
      qcow__set_error (EBADMSG, "%s: duplicate bitmap name '%s'", l->path,
                       sorted[i]->info.name);
      goto out;
    }
  /* QEMU loads every consistent bitmap at open, and a bad table makes
   * the whole image fail to open; in_use ones are only marked stale. */
  for (i = 0; i < n; i++) {
    if (!l->bitmaps[i].info.in_use) {
      uint8_t *table = load_table (l, &l->bitmaps[i]);
      if (!table)
        goto out;
      free (table);
    }
    l->bitmap_info[i] = l->bitmaps[i].info;
  }
  ret = 0;
out:
  free (sorted);
  free (dir);
  return ret;
}

int
qcow_bitmap_list (struct qcow_chain *c, size_t depth,
                  const struct qcow_bitmap_info **out, size_t *n)
{
  qcow__clear_error ();
  if (!c || !out || !n || depth >= c->n) {
    qcow__set_error (EINVAL, "qcow_bitmap_list: invalid argument");
    return -1;
  }
  *out = c->layers[depth]->bitmap_info;
  *n = c->layers[depth]->nb_bitmaps;
  return 0;
}

/* Collects set bits into merged byte ranges. */
struct run_state {
  struct qcow__layer *l;
  const struct qcow__bitmap *b;
  qcow_extent_fn fn;
  void *opaque;
  bool in_run;
  uint64_t run_start; /* bit index */
};

static int
flush_run (struct run_state *s, uint64_t end_bit)
{
  struct qcow_extent e = { 0 };
  uint64_t start, end;

  s->in_run = false;
  start = s->run_start << s->b->gran_bits;
  if (start >= s->l->size)
    return 0;
  /* end_bit << gran_bits cannot overflow: end_bit <= bits covering size. */
  end = end_bit << s->b->gran_bits;
  if (end > s->l->size || end < start)
    end = s->l->size;
  e.start = start;
  e.length = end - start;
  e.depth = s->l->depth;
  e.kind = QCOW_KIND_DATA;
  return s->fn (s->opaque, &e);
}

int
qcow_bitmap_ranges (struct qcow_chain *c, size_t depth, const char *name,
                    qcow_extent_fn fn, void *opaque)
{
  struct qcow__layer *l;
  const struct qcow__bitmap *b = NULL;
  struct run_state s = { 0 };
  uint8_t *table = NULL, *data = NULL;
  uint64_t nbits, bit = 0;
  size_t i;
  uint32_t t;
  int ret = -1;

  qcow__clear_error ();
  if (!c || !name || !fn || depth >= c->n) {
    qcow__set_error (EINVAL, "qcow_bitmap_ranges: invalid argument");
    return -1;
  }
  l = c->layers[depth];
  for (i = 0; i < l->nb_bitmaps; i++)
    if (strcmp (l->bitmaps[i].info.name, name) == 0)
      b = &l->bitmaps[i];
  if (!b) {
    qcow__set_error (ENOENT, "%s: no bitmap named '%s'", l->path, name);
    return -1;
  }
  if (b->info.in_use) {
    qcow__set_error (EBUSY,
                     "%s: bitmap '%s' is in use (not saved cleanly); its "
                     "contents are stale",
                     l->path, name);
    return -1;
  }
  nbits = (l->size >> b->gran_bits) +
          ((l->size & ((1ull << b->gran_bits) - 1)) != 0);
  table = load_table (l, b);
  if (!table)
    goto out;
  data = malloc (l->cluster_size);
  if (!data) {
    qcow__set_error (ENOMEM, "%s: out of memory", l->path);
    goto out;
  }
  s.l = l;
  s.b = b;
  s.fn = fn;
  s.opaque = opaque;
  for (t = 0; t < b->table_size && bit < nbits; t++) {
    uint64_t ent = load_be64 (table + (size_t) t * 8);
    uint64_t off = ent & QCOW2_BME_TABLE_OFFSET_MASK;
    uint64_t nbytes = l->cluster_size, j;

    if (off == 0) {
      /* A whole cluster of zeros (bit 0 clear) or ones (bit 0 set). */
      bool ones = ent & 1;
      if (ones && !s.in_run) {
        s.in_run = true;
        s.run_start = bit;
      }
      else if (!ones && s.in_run && flush_run (&s, bit) == -1)
        goto stopped;
      bit += nbytes * 8;
      continue;
    }
    if (qcow__io_pread (&l->io, l->path, data, l->cluster_size, off) == -1)
      goto out;
    for (j = 0; j < nbytes && bit < nbits; j++) {
      uint8_t v = data[j];
      unsigned k;

      if (j % 8 == 0 && nbytes - j >= 8) {
        /* Skip 64 bits at once while nothing changes. */
        uint64_t w;
        memcpy (&w, data + j, 8);
        if ((w == 0 && !s.in_run) || (w == UINT64_MAX && s.in_run)) {
          bit += 64;
          j += 7;
          continue;
        }
      }
      if ((v == 0 && !s.in_run) || (v == 0xff && s.in_run)) {
        bit += 8;
        continue;
      }
      for (k = 0; k < 8; k++) {
        bool set = (v >> k) & 1;
        if (set && !s.in_run) {
          s.in_run = true;
          s.run_start = bit + k;
        }
        else if (!set && s.in_run && flush_run (&s, bit + k) == -1)
          goto stopped;
      }
      bit += 8;
    }
  }
  if (s.in_run && flush_run (&s, nbits) == -1)
    goto stopped;
  ret = 0;
  goto out;
stopped:
  ret = -1; /* the callback stopped the walk: no error set */
out:
  free (table);
  free (data);
  return ret;
}
