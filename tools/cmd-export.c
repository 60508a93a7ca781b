/* cmd-export.c -- `qcow2pbs export`: the merged disk as a sparse raw file.
 *
 * The chain's map (metadata only) tells which ranges hold data; everything
 * else becomes a hole without being read.  Data ranges are read in pieces of
 * up to 4 MiB by two reader threads into a small ring of buffers and written
 * in order by the main thread, so reading (decompression included) overlaps
 * writing and the output can be a pipe.  The file appears under its final
 * name only when complete (out_file). */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "cli.h"

static const char usage_text[] =
  "Usage: qcow2pbs export [OPTIONS] IMAGE OUT.raw\n"
  "       qcow2pbs export [OPTIONS] --chain FULL,INCR0,... OUT.raw\n"
  "Write the merged disk of a qcow2 chain as a sparse raw file: holes for\n"
  "unallocated, zero-flagged and all-zero ranges.  The file is written under\n"
  "a temporary name in the same directory and renamed when complete.\n"
  "OUT.raw '-' writes to stdout.  A block device is written in place, a\n"
  "FIFO or character device streamed, a symlink followed.\n"
  "\n"
  "  --output-format text|json  JSON: print {output, size, data_bytes (in\n"
  "                            data extents, as qemu-img map's data:true),\n"
  "                            layers (oldest first)} when done (not with\n"
  "                            OUT.raw '-'); default text: print nothing\n"
  "  --force                   replace an existing file (keeping its owner\n"
  "                            and mode) or overwrite a block device\n"
  "  --discard                 discard a block device's zero ranges (they\n"
  "                            still read back as zeros)\n"
  "  --no-sync                 rename without fsync first (faster; after a\n"
  "                            system crash OUT.raw may be incomplete)\n"
  CLI_IMAGE_OPTIONS_HELP
  "  -h, --help                this help\n";

#define PIECE_MAX ((uint32_t) 4 << 20) /* one pread; a PBS chunk's size */
/* Data ranges closer than this are read as one piece: reading the gap
 * (zeros from qcowlib, no I/O) is cheaper than another round trip. */
#define PIECE_GAP ((uint64_t) 1 << 20)
/* The map is walked window by window so the piece list stays small no
 * matter how large or fragmented the disk. */
#define WINDOW ((uint64_t) 256 << 20)
#define NTHREADS 2
#define NSLOTS 4 /* buffers in flight: 16 MiB */

struct piece {
  uint64_t off;
  uint32_t len;
};

struct exporter {
  struct qcow_chain *c;
  pthread_mutex_t lock;
  pthread_cond_t cond;
  struct piece *pieces;
  size_t npieces, cap;
  size_t next;              /* next piece a reader claims */
  size_t consumed;          /* pieces the writer has written */
  size_t ready[NSLOTS];     /* piece index + 1 whose data is in the slot */
  unsigned char *buf[NSLOTS];
  bool failed;              /* a reader failed */
  bool stop;                /* the writer is done with this window */
  bool nomem;               /* the piece list could not grow */
  char errmsg[512];         /* the failing reader's qcowlib message */
  uint64_t data_bytes;      /* guest bytes in data extents, for the report */
};

static int
add_piece (struct exporter *x, uint64_t off, uint64_t len)
{
  struct piece *last = x->npieces ? &x->pieces[x->npieces - 1] : NULL;
  struct piece *grown;
  uint64_t n;

  while (len > 0) {
    if (last && off - (last->off + last->len) <= PIECE_GAP
        && off + len - last->off <= PIECE_MAX) {
      last->len = (uint32_t) (off + len - last->off);
      return 0;
    }
    if (x->npieces == x->cap) {
      size_t cap = x->cap ? x->cap * 2 : 64;
      grown = realloc (x->pieces, cap * sizeof *grown);
      if (!grown) {
        x->nomem = true;
        return -1;
      }
      x->pieces = grown;
      x->cap = cap;
    }
    /* Split at 4 MiB-aligned guest offsets, as later chunking does. */
    n = PIECE_MAX - off % PIECE_MAX;
    if (n > len)
      n = len;
    last = &x->pieces[x->npieces++];
    last->off = off;
    last->len = (uint32_t) n;
    off += n;
    len -= n;
  }
  return 0;
}

static int
on_extent (void *opaque, const struct qcow_extent *e)
{
  struct exporter *x = opaque;

  if (e->kind != QCOW_KIND_DATA)
    return 0;
  x->data_bytes += e->length;
  return add_piece (x, e->start, e->length);
}

static void *
reader (void *opaque)
{
  struct exporter *x = opaque;
  size_t i, slot;

  for (;;) {
    pthread_mutex_lock (&x->lock);
    while (!x->failed && !x->stop && x->next < x->npieces
           && x->next >= x->consumed + NSLOTS)
      pthread_cond_wait (&x->cond, &x->lock);
    if (x->failed || x->stop || x->next >= x->npieces) {
      pthread_mutex_unlock (&x->lock);
      return NULL;
    }
    i = x->next++;
    pthread_mutex_unlock (&x->lock);

    slot = i % NSLOTS;
    if (qcow_pread (x->c, x->buf[slot], x->pieces[i].len, x->pieces[i].off)
        == -1) {
      pthread_mutex_lock (&x->lock);
      if (!x->failed)
        snprintf (x->errmsg, sizeof x->errmsg, "%s", qcow_errmsg ());
      x->failed = true;
      pthread_cond_broadcast (&x->cond);
      pthread_mutex_unlock (&x->lock);
      return NULL;
    }
    pthread_mutex_lock (&x->lock);
    x->ready[slot] = i + 1;
    pthread_cond_broadcast (&x->cond);
    pthread_mutex_unlock (&x->lock);
  }
}

/* Print a reader's saved qcowlib message like cli_qcow_error does. */
static int
reader_error (struct exporter *x, const char *context)
{
  if (!strstr (x->errmsg, ": "))
    return cli_error (context, "%s", x->errmsg[0] ? x->errmsg : "read error");
  return cli_error_line (x->errmsg);
}

/* Read and write the pieces of one window; *POS is the output position.
 * Returns 0, or -1: x->failed set for a read error (x->errmsg), else an
 * output error with errno set. */
static int
run_window (struct exporter *x, struct out_file *out, uint64_t *pos)
{
  pthread_t tids[NTHREADS];
  size_t nt = 0, i, slot;
  int r = 0, e = 0;

  x->next = x->consumed = 0;
  x->stop = false;
  for (i = 0; i < NSLOTS; i++)
    x->ready[i] = 0;
  for (; nt < NTHREADS && nt < x->npieces; nt++)
    if (pthread_create (&tids[nt], NULL, reader, x) != 0)
      break;
  if (nt == 0 && x->npieces > 0) {
    errno = EAGAIN;
    return -1;
  }
  for (i = 0; i < x->npieces; i++) {
    slot = i % NSLOTS;
    pthread_mutex_lock (&x->lock);
    while (!x->failed && x->ready[slot] != i + 1)
      pthread_cond_wait (&x->cond, &x->lock);
    pthread_mutex_unlock (&x->lock);
    if (x->failed) {
      r = -1;
      break;
    }
    if (out_file_zeros (out, x->pieces[i].off - *pos) == -1
        || out_file_write (out, x->buf[slot], x->pieces[i].len) == -1) {
      e = errno;
      r = -1;
      break;
    }
    *pos = x->pieces[i].off + x->pieces[i].len;
    pthread_mutex_lock (&x->lock);
    x->consumed = i + 1;
    pthread_cond_broadcast (&x->cond);
    pthread_mutex_unlock (&x->lock);
  }
  pthread_mutex_lock (&x->lock);
  x->stop = true;
  pthread_cond_broadcast (&x->cond);
  pthread_mutex_unlock (&x->lock);
  while (nt > 0)
    pthread_join (tids[--nt], NULL);
  errno = e;
  return r;
}

/* Replacing an input image with its own export would destroy it once the
 * temporary is renamed over it. */
static bool
overwrites_layer (struct qcow_chain *c, const char *out_path)
{
  struct qcow_layer_info li;
  struct stat st;
  size_t d;

  if (strcmp (out_path, "-") == 0 || stat (out_path, &st) == -1)
    return false;
  for (d = 0; d < qcow_depth (c); d++)
    if (qcow_layer_info (c, d, &li) == 0 && li.st.st_dev == st.st_dev
        && li.st.st_ino == st.st_ino)
      return true;
  return false;
}

/* --output-format json: what was written, from which layers (oldest
 * first), printed once OUT.raw is complete. */
static int
print_report (struct qcow_chain *c, const char *out_path, uint64_t size,
              uint64_t data_bytes)
{
  json_t *o = json_object (), *layers = json_array ();
  struct qcow_layer_info li;
  size_t d;
  char *text;

  for (d = qcow_depth (c); layers && d-- > 0;)
    if (qcow_layer_info (c, d, &li) == 0 && li.path)
      json_array_append_new (layers, json_string_nocheck (li.path));
  json_object_set_new (o, "output", json_string_nocheck (out_path));
  json_object_set_new (o, "size", json_integer ((json_int_t) size));
  json_object_set_new (o, "data_bytes", json_integer ((json_int_t) data_bytes));
  json_object_set_new (o, "layers", layers);
  text = json_dumps (o, JSON_INDENT (2) | JSON_PRESERVE_ORDER);
  json_decref (o);
  if (!text)
    return cli_error ("export", "out of memory");
  printf ("%s\n", text);
  free (text);
  if (fflush (stdout) == EOF || ferror (stdout))
    return cli_error ("stdout", "write error");
  return 0;
}

/* export's options of its own. */
enum { OPT_NO_SYNC = CLI_OPT_FIRST_FREE, OPT_FORCE, OPT_DISCARD };

static int
export_option (void *opaque, int opt, const char *arg,
               struct cli_err *err)
{
  struct out_file_opts *oo = opaque;

  (void) arg;
  (void) err;
  if (opt == OPT_NO_SYNC)
    oo->no_sync = true;
  else if (opt == OPT_FORCE)
    oo->force = true;
  else if (opt == OPT_DISCARD)
    oo->discard = true;
  return 0;
}

int
cmd_export (int argc, char **argv)
{
  static const struct option longopts[] = {
    CLI_IMAGE_OPTIONS,
    { "no-sync", no_argument, NULL, OPT_NO_SYNC },
    CLI_OUTPUT_FORMAT_OPTION,
    { "force", no_argument, NULL, OPT_FORCE },
    { "discard", no_argument, NULL, OPT_DISCARD },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  bool out_open = false, sync_ok = false;
  struct out_file_opts oo = { .cmd = "export" };
  struct cli_image_args a = { .cmd = "export", .usage = usage_text,
                              .arg_name = "OUT.raw",
                              .option = export_option, .opaque = &oo };
  struct exporter x = { 0 };
  struct out_file out = { .fd = -1 };
  const char *out_path;
  uint64_t size, w, wlen, pos = 0;
  int ret = 1;
  size_t i;

  if (cli_parse_image_args (&a, argc, argv, longopts) == -1)
    return a.status ? cli_err_print (&a.err) : 0;
  out_path = a.arg;
  if (a.json && strcmp (out_path, "-") == 0) {
    cli_free_chain (&a.opts);
    return cli_usage_error ("export", "--output-format json prints its "
                            "report on stdout: give OUT.raw a file name, "
                            "not '-'");
  }

  if (pthread_mutex_init (&x.lock, NULL) != 0
      || pthread_cond_init (&x.cond, NULL) != 0) {
    cli_error ("export", "cannot create a lock");
    goto out;
  }
  sync_ok = true;
  /* Open the chain first: a bad image must not leave even a temporary. */
  x.c = cli_open_chain (a.image, &a.opts, &a.err);
  if (!x.c) {
    cli_err_print (&a.err);
    goto out;
  }
  cli_warn_lone_incremental (x.c);
  for (i = 0; i < NSLOTS; i++) {
    x.buf[i] = malloc (PIECE_MAX);
    if (!x.buf[i]) {
      cli_error ("export", "out of memory");
      goto out;
    }
  }
  if (overwrites_layer (x.c, out_path)) {
    cli_error (out_path, "is a layer of the chain being exported");
    goto out;
  }
  size = qcow_virtual_size (x.c);
  oo.disk_size = size;
  if (out_file_open (&out, out_path, &oo) == -1) {
    cli_error (out_path, "%s", out_file_error (&out));
    goto out;
  }
  out_open = true;

  for (w = 0; w < size; w += wlen) {
    wlen = size - w < WINDOW ? size - w : WINDOW;
    x.npieces = 0;
    if (qcow_map (x.c, w, wlen, on_extent, &x) == -1) {
      if (x.nomem)
        cli_error ("export", "out of memory");
      else
        cli_qcow_error (a.context);
      goto out;
    }
    if (run_window (&x, &out, &pos) == -1) {
      if (x.failed)
        reader_error (&x, a.context);
      else
        cli_error (out_path, "%s", out_file_error (&out));
      goto out;
    }
  }
  if (out_file_zeros (&out, size - pos) == -1) {
    cli_error (out_path, "%s", out_file_error (&out));
    goto out;
  }
  out_open = false; /* a failed commit cleans up itself */
  if (out_file_commit (&out) == -1) {
    cli_error (out_path, "%s", out_file_error (&out));
    goto out;
  }
  ret = a.json ? print_report (x.c, out_path, size, x.data_bytes) : 0;

out:
  if (out_open)
    out_file_abort (&out);
  for (i = 0; i < NSLOTS; i++)
    free (x.buf[i]);
  free (x.pieces);
  qcow_close (x.c);
  if (sync_ok) {
    pthread_mutex_destroy (&x.lock);
    pthread_cond_destroy (&x.cond);
  }
  cli_free_chain (&a.opts);
  return ret;
}
