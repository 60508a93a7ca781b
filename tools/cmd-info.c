/* cmd-info.c -- `qcow2pbs info`: the chain layer by layer, as text or as
 * JSON (one object: virtual_size, chain[] = the paths of the layers used,
 * oldest first, and layers[], top first as in qemu-img info). */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"

static const char usage_text[] =
  "Usage: qcow2pbs info [OPTIONS] IMAGE\n"
  "       qcow2pbs info [OPTIONS] --chain FULL,INCR0,...\n"
  "Show a qcow2 backing chain layer by layer, top (depth 0) first: format\n"
  "version, virtual and cluster size, feature bits, compression type,\n"
  "backing and data file names, persistent bitmaps.\n"
  "\n"
  "  --output-format text|json  output format (default text)\n"
  CLI_IMAGE_OPTIONS_HELP
  "  -h, --help                this help\n";

/* Feature bit names, as QEMU's feature name table spells them (short,
 * machine-friendly forms); unknown bits print as "bitN". */
struct feature_name {
  int bit;
  const char *name;
};
static const struct feature_name incompat_names[] = {
  { 0, "dirty" },           { 1, "corrupt" },
  { 2, "external_data_file" }, { 3, "compression_type" },
  { 4, "extended_l2" },     { -1, NULL },
};
static const struct feature_name compat_names[] = {
  { 0, "lazy_refcounts" }, { -1, NULL },
};
static const struct feature_name autoclear_names[] = {
  { 0, "bitmaps" }, { 1, "raw_external_data" }, { -1, NULL },
};

static const char *
feature_name (const struct feature_name *t, int bit, char *buf, size_t len)
{
  for (; t->name; t++)
    if (t->bit == bit)
      return t->name;
  snprintf (buf, len, "bit%d", bit);
  return buf;
}

static const char *
compression_name (int type)
{
  switch (type) {
  case 0: return "zlib";
  case 1: return "zstd";
  default: return "unknown";
  }
}

static const char *
compat_name (int version)
{
  return version == 2 ? "0.10" : version == 3 ? "1.1" : "";
}

static json_t *
features_json (const struct feature_name *t, uint64_t bits)
{
  json_t *a = json_array ();
  char buf[16];
  int i;

  for (i = 0; i < 64 && a; i++)
    if (bits & (UINT64_C (1) << i))
      json_array_append_new (a, json_string (feature_name (t, i, buf,
                                                           sizeof buf)));
  return a;
}

static void
features_text (const struct feature_name *t, uint64_t bits, bool *any)
{
  char buf[16];
  int i;

  for (i = 0; i < 64; i++)
    if (bits & (UINT64_C (1) << i)) {
      printf (" %s", feature_name (t, i, buf, sizeof buf));
      *any = true;
    }
}

/* json_string_nocheck: paths need not be UTF-8, jansson's json_string
 * would refuse them.  The bytes are passed through as they are. */
static json_t *
str_or_null (const char *s)
{
  return s ? json_string_nocheck (s) : json_null ();
}

static json_t *
layer_json (size_t depth, const struct qcow_layer_info *li,
            const struct qcow_bitmap_info *bms, size_t nbms)
{
  json_t *o = json_object (), *bitmaps = json_array ();
  size_t i;

  if (!o || !bitmaps) {
    json_decref (o);
    json_decref (bitmaps);
    return NULL;
  }
  json_object_set_new (o, "depth", json_integer ((json_int_t) depth));
  json_object_set_new (o, "path", str_or_null (li->path));
  json_object_set_new (o, "format", str_or_null (li->format));
  json_object_set_new (o, "virtual_size",
                       json_integer ((json_int_t) li->virtual_size));
  if (li->version) {
    json_object_set_new (o, "version", json_integer (li->version));
    json_object_set_new (o, "compat", json_string (compat_name (li->version)));
    json_object_set_new (o, "cluster_size",
                         json_integer ((json_int_t) li->cluster_size));
    json_object_set_new (o, "refcount_bits", json_integer (li->refcount_bits));
    json_object_set_new (o, "extended_l2", json_boolean (li->extended_l2));
    json_object_set_new (o, "compression_type",
                         json_string (compression_name (li->compression_type)));
    json_object_set_new (o, "incompatible_features",
                         features_json (incompat_names,
                                        li->incompatible_features));
    json_object_set_new (o, "compatible_features",
                         features_json (compat_names, li->compatible_features));
    json_object_set_new (o, "autoclear_features",
                         features_json (autoclear_names,
                                        li->autoclear_features));
    json_object_set_new (o, "backing_name", str_or_null (li->backing_name));
    json_object_set_new (o, "backing_format",
                         str_or_null (li->backing_format));
    json_object_set_new (o, "data_file", str_or_null (li->data_file));
  }
  for (i = 0; i < nbms; i++) {
    json_t *b = json_object ();
    if (!b)
      break;
    json_object_set_new (b, "name", json_string_nocheck (bms[i].name));
    json_object_set_new (b, "granularity",
                         json_integer ((json_int_t) bms[i].granularity));
    json_object_set_new (b, "in_use", json_boolean (bms[i].in_use));
    json_object_set_new (b, "auto", json_boolean (bms[i].enabled));
    json_array_append_new (bitmaps, b);
  }
  json_object_set_new (o, "bitmaps", bitmaps);
  return o;
}

static void
size_text (uint64_t n)
{
  static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB",
                                       "PiB", "EiB" };
  double v = (double) n;
  int u = 0;

  while (v >= 1024 && u < 6) {
    v /= 1024;
    u++;
  }
  if (u == 0)
    printf ("%" PRIu64 " B", n);
  else
    printf ("%" PRIu64 " (%.4g %s)", n, v, units[u]);
}

static void
layer_text (size_t depth, size_t nlayers, const struct qcow_layer_info *li,
            const struct qcow_bitmap_info *bms, size_t nbms)
{
  bool any = false;
  size_t i;

  printf ("layer %zu%s: %s\n", depth,
          depth == 0 ? " (top)" : depth + 1 == nlayers ? " (base)" : "",
          li->path ? li->path : "");
  if (!li->version) {
    printf ("  format:           %s\n", li->format ? li->format : "?");
    printf ("  virtual size:     ");
    size_text (li->virtual_size);
    printf ("\n");
    return;
  }
  printf ("  format:           %s v%d (compat %s)\n", li->format, li->version,
          compat_name (li->version));
  printf ("  virtual size:     ");
  size_text (li->virtual_size);
  printf ("\n  cluster size:     %" PRIu32 "%s\n", li->cluster_size,
          li->extended_l2 ? " (extended L2: 32 subclusters)" : "");
  printf ("  refcount bits:    %d\n", li->refcount_bits);
  printf ("  compression:      %s\n", compression_name (li->compression_type));
  printf ("  features:        ");
  features_text (incompat_names, li->incompatible_features, &any);
  features_text (compat_names, li->compatible_features, &any);
  features_text (autoclear_names, li->autoclear_features, &any);
  printf ("%s\n", any ? "" : " none");
  if (li->backing_name)
    printf ("  backing file:     %s (format %s)\n", li->backing_name,
            li->backing_format ? li->backing_format : "not stored");
  if (li->data_file)
    printf ("  data file:        %s\n", li->data_file);
  for (i = 0; i < nbms; i++)
    printf ("  bitmap:           %s (granularity %" PRIu64 "%s%s)\n",
            bms[i].name, bms[i].granularity,
            bms[i].enabled ? ", auto" : ", disabled",
            bms[i].in_use ? ", in use: stale" : "");
}

/* The layers actually read, oldest first: what an explicit --chain was
 * checked into, or what the backing names led to. */
static void
used_text (const struct qcow_chain *c)
{
  struct qcow_layer_info li;
  size_t d = qcow_depth (c);

  printf ("layers used, oldest first:");
  while (d-- > 0)
    if (qcow_layer_info (c, d, &li) == 0)
      printf (" %s%s", li.path, d ? " <-" : "");
  printf ("\n");
}

static json_t *
used_json (const struct qcow_chain *c)
{
  struct qcow_layer_info li;
  size_t d = qcow_depth (c);
  json_t *a = json_array ();

  while (a && d-- > 0)
    if (qcow_layer_info (c, d, &li) == 0)
      json_array_append_new (a, str_or_null (li.path));
  return a;
}

int
cmd_info (int argc, char **argv)
{
  static const struct option longopts[] = {
    CLI_IMAGE_OPTIONS,
    CLI_OUTPUT_FORMAT_OPTION,
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  struct cli_image_args a = { .cmd = "info", .usage = usage_text };
  struct qcow_chain *c = NULL;
  json_t *root = NULL, *layers = NULL;
  int ret = 1;
  size_t d, n;

  if (cli_parse_image_args (&a, argc, argv, longopts) == -1)
    return a.status ? cli_err_print (&a.err) : 0;

  c = cli_open_chain (a.image, &a.opts, &a.err);
  if (!c) {
    cli_err_print (&a.err);
    goto out;
  }
  n = qcow_depth (c);
  if (a.json) {
    root = json_object ();
    layers = json_array ();
    if (!root || !layers) {
      cli_error ("info", "out of memory");
      goto out;
    }
    json_object_set_new (root, "virtual_size",
                         json_integer ((json_int_t) qcow_virtual_size (c)));
    json_object_set_new (root, "depth", json_integer ((json_int_t) n));
    json_object_set_new (root, "chain", used_json (c));
    json_object_set (root, "layers", layers);
  }
  else {
    printf ("chain of %zu layer%s, virtual size %" PRIu64 "\n", n,
            n == 1 ? "" : "s", qcow_virtual_size (c));
    used_text (c);
  }
  for (d = 0; d < n; d++) {
    struct qcow_layer_info li;
    const struct qcow_bitmap_info *bms = NULL;
    size_t nbms = 0;

    if (qcow_layer_info (c, d, &li) == -1) {
      cli_qcow_error (a.image ? a.image : "info");
      goto out;
    }
    if (li.version >= 3 && qcow_bitmap_list (c, d, &bms, &nbms) == -1) {
      cli_qcow_error (li.path ? li.path : "info");
      goto out;
    }
    if (a.json) {
      json_t *o = layer_json (d, &li, bms, nbms);
      if (!o || json_array_append_new (layers, o) == -1) {
        cli_error ("info", "out of memory");
        goto out;
      }
    }
    else
      layer_text (d, n, &li, bms, nbms);
  }
  if (a.json
      && json_dumpf (root, stdout, JSON_INDENT (2) | JSON_PRESERVE_ORDER)
           == -1) {
    cli_error ("stdout", "cannot write JSON");
    goto out;
  }
  if (a.json)
    putchar ('\n');
  if (fflush (stdout) == EOF || ferror (stdout)) {
    cli_error ("stdout", "write error");
    goto out;
  }
  ret = 0;

out:
  json_decref (layers);
  json_decref (root);
  qcow_close (c);
  cli_free_chain (&a.opts);
  return ret;
}
