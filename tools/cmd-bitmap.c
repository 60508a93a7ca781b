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

int
cmd_bitmap (int argc, char **argv)
{
  enum { OPT_OUTPUT_FORMAT = CLI_OPT_FIRST_FREE, OPT_LAYER };
  static const struct option longopts[] = {
    CLI_IMAGE_OPTIONS,
    { "output-format", required_argument, NULL, OPT_OUTPUT_FORMAT },
    { "layer", required_argument, NULL, OPT_LAYER },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  struct qcow_open_opts opts = { 0 };
  struct qcow_chain *c = NULL;
  struct bitmap_state s = { 0 };
  const char *image = NULL, *name, *context;
  unsigned long long layer = 0;
  struct qcow_layer_info li;
  char *end;
  int opt, ret = 1;

  optind = 1;
  while ((opt = getopt_long (argc, argv, "h", longopts, NULL)) != -1) {
    switch (opt) {
    case 'h':
      fputs (usage_text, stdout);
      ret = 0;
      goto out;
    case OPT_OUTPUT_FORMAT:
      if (cli_parse_output_format (optarg, &s.json) == -1) {
        ret = cli_usage_error ("bitmap", "unknown output format '%s'",
                               optarg);
        goto out;
      }
      break;
    case OPT_LAYER:
      errno = 0;
      layer = strtoull (optarg, &end, 10);
      if (errno || end == optarg || *end || *optarg == '-') {
        ret = cli_usage_error ("bitmap", "bad layer number '%s'", optarg);
        goto out;
      }
      break;
    case CLI_OPT_CHAIN:
    case CLI_OPT_ALLOW_ABSOLUTE_DATA_FILE:
    case CLI_OPT_PROBE_BACKING_FORMAT:
      if (cli_image_option (opt, optarg, &opts) == -1) {
        ret = 2;
        goto out;
      }
      break;
    default:
      ret = cli_usage_error ("bitmap", "bad option");
      goto out;
    }
  }
  if (argc - optind != (opts.chain ? 1 : 2)) {
    ret = cli_usage_error ("bitmap", opts.chain
                                       ? "expected NAME after --chain"
                                       : "expected IMAGE and NAME");
    goto out;
  }
  if (!opts.chain)
    image = argv[optind++];
  name = argv[optind];
  context = image ? image : opts.chain[opts.chain_len - 1];

  c = cli_open_chain (image, &opts);
  if (!c)
    goto out;
  if (layer >= qcow_depth (c)) {
    ret = cli_error (context, "no layer %llu: the chain has %zu layer%s",
                     layer, qcow_depth (c), qcow_depth (c) == 1 ? "" : "s");
    goto out;
  }
  if (qcow_layer_info (c, (size_t) layer, &li) == 0 && li.path)
    context = li.path;

  /* "[" comes with the first range, so a refused bitmap prints nothing. */
  if (qcow_bitmap_ranges (c, (size_t) layer, name, on_range, &s) == -1) {
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
  cli_free_chain (&opts);
  return ret;
}
