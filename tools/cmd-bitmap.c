/* cmd-bitmap.c -- `qcow2pbs bitmap`: the dirty ranges of one persistent
 * dirty bitmap, as "start length" lines or a JSON array. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char usage_text[] =
  "Usage: qcow2pbs bitmap [OPTIONS] IMAGE NAME\n"
  "       qcow2pbs bitmap [OPTIONS] --chain FULL,INCR0,... NAME\n"
  "Show the dirty ranges of persistent bitmap NAME: text lines\n"
  "\"START LENGTH\" (bytes, decimal) or a JSON array of {start, length}.\n"
  "A bitmap marked in use (not saved cleanly) is refused: it is stale.\n"
  "\n"
  "  --layer N                 bitmap of layer N (0 = top, the default)\n"
  "  --output-format text|json  output format (default text)\n"
  CLI_IMAGE_OPTIONS_HELP
  "  -h, --help                this help\n";

struct bitmap_state {
  bool json;
  bool have;
  uint64_t count;
  uint64_t start, length; /* pending range, merged with adjacent ones */
};

static void
print_range (struct bitmap_state *s)
{
  if (s->json)
    printf ("%s{ \"start\": %" PRIu64 ", \"length\": %" PRIu64 "}",
            s->count ? ",\n" : "[", s->start, s->length);
  else
    printf ("%" PRIu64 " %" PRIu64 "\n", s->start, s->length);
  s->count++;
}

static int
on_range (void *opaque, const struct qcow_extent *e)
{
  struct bitmap_state *s = opaque;

  if (s->have && s->start + s->length == e->start) {
    s->length += e->length;
    return 0;
  }
  if (s->have)
    print_range (s);
  s->start = e->start;
  s->length = e->length;
  s->have = true;
  return ferror (stdout) ? -1 : 0;
}

/* --layer N, bitmap's one option of its own. */
enum { OPT_LAYER = CLI_OPT_FIRST_FREE };

static int
bitmap_option (void *opaque, int opt, const char *arg,
               struct cli_err *err)
{
  unsigned long long *layer = opaque;
  char *end;

  (void) opt;
  errno = 0;
  *layer = strtoull (arg, &end, 10);
  if (errno || end == arg || *end || *arg == '-')
    return cli_err_usage (err, "bitmap", "bad layer number '%s'", arg);
  return 0;
}

int
cmd_bitmap (int argc, char **argv)
{
  static const struct option longopts[] = {
    CLI_IMAGE_OPTIONS,
    CLI_OUTPUT_FORMAT_OPTION,
    { "layer", required_argument, NULL, OPT_LAYER },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  unsigned long long layer = 0;
  struct cli_image_args a = { .cmd = "bitmap", .usage = usage_text,
                              .arg_name = "NAME",
                              .option = bitmap_option, .opaque = &layer };
  struct qcow_chain *c = NULL;
  struct bitmap_state s = { 0 };
  const char *context;
  struct qcow_layer_info li;
  int ret = 1;

  if (cli_parse_image_args (&a, argc, argv, longopts) == -1)
    return a.status ? cli_err_print (&a.err) : 0;
  s.json = a.json;
  context = a.context;

  c = cli_open_chain (a.image, &a.opts, &a.err);
  if (!c) {
    cli_err_print (&a.err);
    goto out;
  }
  if (layer >= qcow_depth (c)) {
    ret = cli_error (context, "no layer %llu: the chain has %zu layer%s",
                     layer, qcow_depth (c), qcow_depth (c) == 1 ? "" : "s");
    goto out;
  }
  if (qcow_layer_info (c, (size_t) layer, &li) == 0 && li.path)
    context = li.path;

  /* "[" comes with the first range, so a refused bitmap prints nothing. */
  if (qcow_bitmap_ranges (c, (size_t) layer, a.arg, on_range, &s) == -1) {
    if (ferror (stdout))
      cli_error ("stdout", "write error");
    else
      cli_qcow_error (context);
    goto out;
  }
  if (s.have)
    print_range (&s);
  if (s.json)
    printf ("%s]\n", s.count ? "" : "[");
  if (fflush (stdout) == EOF || ferror (stdout)) {
    cli_error ("stdout", "write error");
    goto out;
  }
  ret = 0;

out:
  qcow_close (c);
  cli_free_chain (&a.opts);
  return ret;
}
