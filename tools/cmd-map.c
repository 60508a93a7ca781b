/* cmd-map.c -- `qcow2pbs map`: which layer owns every range of the merged
 * disk, in qemu-img map's vocabulary so the JSON can be compared with
 * `qemu-img map --output=json` of the same chain. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char usage_text[] =
  "Usage: qcow2pbs map [OPTIONS] IMAGE\n"
  "       qcow2pbs map [OPTIONS] --chain FULL,INCR0,...\n"
  "Show which layer owns every range of the merged disk.  JSON is an array\n"
  "of {start, length, depth, present, zero, data, compressed} objects with\n"
  "qemu-img map's meanings: depth 0 is the top layer; present = some layer\n"
  "allocates the range (data or zero flag); zero = reads as zeros; data =\n"
  "guest data stored in layer `depth`.\n"
  "\n"
  "  --output-format text|json  output format (default text)\n"
  "  --start-offset N          start at guest byte N (default 0)\n"
  "  --max-length N            map at most N bytes\n"
  CLI_IMAGE_OPTIONS_HELP
  "  -h, --help                this help\n";

struct map_state {
  bool json;
  bool have;          /* pending holds an extent not printed yet */
  uint64_t count;     /* extents printed */
  struct qcow_extent pending;
};

static const char *
kind_name (const struct qcow_extent *e)
{
  switch (e->kind) {
  case QCOW_KIND_DATA: return e->compressed ? "compressed" : "data";
  case QCOW_KIND_ZERO: return "zero";
  default: return "unallocated";
  }
}

static void
print_header (void)
{
  printf ("%-20s %-20s %-6s %s\n", "Start", "Length", "Depth", "Kind");
}

/* The opening "[" or the header comes with the first extent, so an error
 * found before it leaves stdout empty. */
static void
print_extent (struct map_state *s, const struct qcow_extent *e)
{
  bool present = e->kind != QCOW_KIND_UNALLOCATED;
  bool data = e->kind == QCOW_KIND_DATA;

  if (s->json)
    printf ("%s{ \"start\": %" PRIu64 ", \"length\": %" PRIu64
            ", \"depth\": %zu, \"present\": %s, \"zero\": %s"
            ", \"data\": %s, \"compressed\": %s}",
            s->count ? ",\n" : "[", e->start, e->length, e->depth,
            present ? "true" : "false", data ? "false" : "true",
            data ? "true" : "false",
            data && e->compressed ? "true" : "false");
  else {
    if (s->count == 0)
      print_header ();
    printf ("%-20" PRIu64 " %-20" PRIu64 " %-6zu %s\n", e->start, e->length,
            e->depth, kind_name (e));
  }
  s->count++;
}

/* qcowlib merges within one walk already; merging here as well keeps the
 * promise "adjacent equal attributes merged" whatever the lib delivers. */
static int
on_extent (void *opaque, const struct qcow_extent *e)
{
  struct map_state *s = opaque;
  struct qcow_extent *p = &s->pending;

  if (s->have && p->start + p->length == e->start && p->depth == e->depth
      && p->kind == e->kind
      && (e->kind != QCOW_KIND_DATA || p->compressed == e->compressed)) {
    p->length += e->length;
    return 0;
  }
  if (s->have)
    print_extent (s, p);
  *p = *e;
  if (p->kind != QCOW_KIND_DATA)
    p->compressed = false;
  s->have = true;
  return ferror (stdout) ? -1 : 0;
}

/* cmd_map's own options, after the shared ones. */
enum { OPT_START = CLI_OPT_FIRST_FREE, OPT_LENGTH };

static int
parse_u64 (const char *s, uint64_t *out)
{
  char *end;
  unsigned long long v;

  errno = 0;
  if (*s < '0' || *s > '9')
    return -1;
  v = strtoull (s, &end, 0);
  if (errno || end == s || *end)
    return -1;
  *out = v;
  return 0;
}

/* --start-offset and --max-length, in guest bytes. */
struct map_range {
  uint64_t start, length;
};

static int
map_option (void *opaque, int opt, const char *arg, struct cli_err *err)
{
  struct map_range *r = opaque;

  if (parse_u64 (arg, opt == OPT_START ? &r->start : &r->length) == -1)
    return cli_err_usage (err, "map", "bad number '%s'", arg);
  return 0;
}

int
cmd_map (int argc, char **argv)
{
  static const struct option longopts[] = {
    CLI_IMAGE_OPTIONS,
    CLI_OUTPUT_FORMAT_OPTION,
    { "start-offset", required_argument, NULL, OPT_START },
    { "max-length", required_argument, NULL, OPT_LENGTH },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  struct map_range r = { 0, UINT64_MAX };
  struct cli_image_args a = { .cmd = "map", .usage = usage_text,
                              .option = map_option, .opaque = &r };
  struct qcow_chain *c = NULL;
  struct map_state s = { 0 };
  uint64_t size;
  int ret = 1;

  if (cli_parse_image_args (&a, argc, argv, longopts) == -1)
    return a.status ? cli_err_print (&a.err) : 0;
  s.json = a.json;

  c = cli_open_chain (a.image, &a.opts, &a.err);
  if (!c) {
    cli_err_print (&a.err);
    goto out;
  }
  size = qcow_virtual_size (c);
  if (r.start > size)
    r.start = size;
  if (r.length > size - r.start)
    r.length = size - r.start;

  if (r.length > 0 && qcow_map (c, r.start, r.length, on_extent, &s) == -1) {
    if (ferror (stdout))
      cli_error ("stdout", "write error");
    else
      cli_qcow_error (a.context);
    goto out;
  }
  if (s.have)
    print_extent (&s, &s.pending);
  if (s.json)
    printf ("%s]\n", s.count ? "" : "[");
  else if (s.count == 0)
    print_header ();
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
