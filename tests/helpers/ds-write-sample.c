/* ds-write-sample.c -- write a small image backup into a local datastore
 * through the public repository API, for tests/push/test-datastore-layout.sh.
 *
 *   ds-write-sample DATASTORE RAW-OUT [NS [TIME [random]]]
 *
 * The image (9 MiB + 1000 bytes: a patterned chunk, a zero chunk, a short
 * last chunk) is also written raw to RAW-OUT, so the test can rebuild it
 * from the chunk files with independent tools and compare.  Snapshot
 * vm/sample/TIME, by default 1700000000 (+1 per run in the same group).
 * "random": the first two chunks are incompressible (from /dev/urandom),
 * for the disk-full test.  Prints the snapshot time. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pbsproto.h"

#define SIZE (2u * PBS_CHUNK_SIZE + 1000u)

static struct pbs_backup *b;

/* Report, then end the session as the tool does on every error: an
 * unfinished snapshot is removed. */
static int
die (const char *what)
{
  fprintf (stderr, "ds-write-sample: %s: %s\n", what, pbs_errmsg ());
  pbs_backup_free (b);
  return 1;
}

int
main (int argc, char **argv)
{
  struct pbs_repo *r;
  struct pbs_manifest *m;
  uint8_t *img, (*digests)[32], csum[32];
  uint64_t offsets[3];
  int64_t t = 1700000000, prev;
  size_t i, n = 3;
  char *json;
  uint8_t *blob;
  size_t blen;
  FILE *f;
  int wid;

  if (argc < 3) {
    fprintf (stderr, "usage: ds-write-sample DATASTORE RAW-OUT "
                     "[NS [TIME [random]]]\n");
    return 2;
  }
  if (argc > 4 && pbs_parse_time (argv[4], &t) == -1)
    return die (argv[4]);
  img = calloc (1, SIZE);
  digests = calloc (n, 32);
  if (!img || !digests)
    return 1;
  for (i = 0; i < PBS_CHUNK_SIZE; i++)
    img[i] = (uint8_t)(i * 7 + (i >> 12));
  for (i = 2u * PBS_CHUNK_SIZE; i < SIZE; i++)
    img[i] = (uint8_t)(0xa5 ^ i);
  if (argc > 5 && strcmp (argv[5], "random") == 0) {
    f = fopen ("/dev/urandom", "rb");
    if (!f || fread (img, 1, 2u * PBS_CHUNK_SIZE, f) != 2u * PBS_CHUNK_SIZE) {
      perror ("/dev/urandom");
      return 1;
    }
    fclose (f);
  }
  f = fopen (argv[2], "wb");
  if (!f || fwrite (img, 1, SIZE, f) != SIZE || fclose (f) != 0) {
    perror (argv[2]);
    return 1;
  }

  {
    struct pbs_repo_opts o = { .create = true }; /* it writes a backup */
    r = pbs_repo_open (argv[1], &o);
  }
  if (!r)
    return die (argv[1]);
  b = pbs_backup_start (r, argc > 3 ? argv[3] : "", "vm", "sample", t);
  if (!b && argc <= 4) {
    /* Later runs: one second after the previous snapshot. */
    struct pbs_snapshot *s;
    size_t ns;
    if (pbs_repo_snapshots (r, argc > 3 ? argv[3] : "", "vm", "sample", &s,
                            &ns) == -1 ||
        ns == 0)
      return die ("backup start");
    t = s[ns - 1].time + 1;
    pbs_snapshots_free (s, ns);
    b = pbs_backup_start (r, argc > 3 ? argv[3] : "", "vm", "sample", t);
  }
  if (!b)
    return die ("backup start");
  if (pbs_backup_previous_time (b, &prev) == -1)
    return die ("previous time");
  wid = pbs_backup_fixed_index (b, "drive-scsi0.img.fidx", SIZE, NULL);
  if (wid == -1)
    return die ("fixed_index");
  for (i = 0; i < n; i++) {
    uint64_t off = (uint64_t)i * PBS_CHUNK_SIZE;
    uint32_t len =
        SIZE - off > PBS_CHUNK_SIZE ? PBS_CHUNK_SIZE : (uint32_t)(SIZE - off);
    pbs_chunk_digest (NULL, img + off, len, digests[i]);
    offsets[i] = off;
    if (!pbs_backup_known (b, digests[i])) {
      if (pbs_blob_encode (img + off, len, NULL, true, &blob, &blen) == -1)
        return die ("encode");
      if (pbs_backup_fixed_chunk (b, wid, digests[i], len, blob, blen) == -1)
        return die ("fixed_chunk");
      free (blob);
    }
  }
  if (pbs_backup_fixed_append (b, wid, n, (const uint8_t (*)[32])digests,
                               offsets) == -1)
    return die ("fixed_append");
  {
    struct pbs_fidx idx = {.size = SIZE,
                           .chunk_size = PBS_CHUNK_SIZE,
                           .count = n,
                           .digest = digests};
    pbs_fidx_csum (&idx, csum);
  }
  if (pbs_backup_fixed_close (b, wid, n, SIZE, csum) == -1)
    return die ("fixed_close");
  m = pbs_manifest_new ("vm", "sample", t);
  if (!m ||
      pbs_manifest_add_file (m, "drive-scsi0.img.fidx", "none", SIZE, csum) ==
          -1 ||
      pbs_manifest_to_json (m, NULL, &json) == -1 ||
      pbs_blob_encode (json, strlen (json), NULL, true, &blob, &blen) == -1)
    return die ("manifest");
  if (pbs_backup_blob (b, "index.json.blob", blob, blen) == -1)
    return die ("blob");
  if (pbs_backup_finish (b) == -1)
    return die ("finish");
  pbs_backup_free (b);
  pbs_repo_close (r);
  pbs_manifest_free (m);
  free (json);
  free (blob);
  free (img);
  free (digests);
  printf ("%lld\n", (long long)t);
  return 0;
}
