/* test-pbs-fidx.c -- fixed indexes: what we write is parsed by an independent
 * python3 struct/hashlib reader following docs/pbs-protocol.md §5.6; bad
 * files are rejected. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "byteorder.h"
#include "pbsproto.h"
#include "tap.h"

static char tmpdir[512];

static const char check_py[] =
  "import hashlib, struct, sys, time\n"
  "b = open(sys.argv[1], 'rb').read()\n"
  "size, cs, n = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])\n"
  "magic = hashlib.sha256(b'Proxmox Backup fixed sized chunk index v1.0')"
  ".digest()[:8]\n"
  "assert b[:8] == magic, 'magic'\n"
  "uuid = b[8:24]\n"
  "assert uuid[6] >> 4 == 4 and uuid[8] >> 6 == 2, 'uuid v4'\n"
  "ctime, = struct.unpack('<q', b[24:32])\n"
  "assert abs(ctime - time.time()) < 3600, 'ctime'\n"
  "fsize, fcs = struct.unpack('<QQ', b[64:80])\n"
  "assert (fsize, fcs) == (size, cs), 'size/chunk_size'\n"
  "assert b[80:4096] == bytes(4016), 'reserved zero'\n"
  "cnt = (size + cs - 1) // cs\n"
  "assert cnt == n and len(b) == 4096 + 32 * cnt, 'length'\n"
  "digests = b[4096:]\n"
  "assert b[32:64] == hashlib.sha256(digests).digest(), 'index csum'\n"
  "for i in range(cnt):\n"
  "  assert digests[32*i:32*i+32] == hashlib.sha256(b'%d' % i).digest()\n"
  "print(hashlib.sha256(digests).hexdigest())\n";

__attribute__ ((format (printf, 1, 2))) static int
sh (const char *fmt, ...)
{
  char cmd[2048], full[2048 + 600];
  va_list ap;
  va_start (ap, fmt);
  vsnprintf (cmd, sizeof cmd, fmt, ap);
  va_end (ap);
  snprintf (full, sizeof full, "cd %s && %s", tmpdir, cmd);
  return system (full) == 0;
}

static void
save (const char *name, const void *p, size_t n)
{
  char path[1024];
  FILE *f;
  snprintf (path, sizeof path, "%s/%s", tmpdir, name);
  f = fopen (path, "wb");
  if (f) {
    fwrite (p, 1, n, f);
    fclose (f);
  }
}

/* Make an index of SIZE bytes whose digest i is sha256("i"), the rule
 * the python oracle recomputes. */
static void
index_case (uint64_t size, bool oracle)
{
  struct pbs_fidx *idx = pbs_fidx_new (size, PBS_CHUNK_SIZE), *back;
  uint8_t *buf = NULL, csum[32];
  size_t len, i, expect = (size_t) ((size + PBS_CHUNK_SIZE - 1)
                                    / PBS_CHUNK_SIZE);
  char num[32];

  ok (idx && idx->count == expect, "size %llu: %zu chunks",
      (unsigned long long) size, expect);
  if (!idx)
    return;
  for (i = 0; i < idx->count; i++) {
    int n = snprintf (num, sizeof num, "%zu", i);
    pbs_chunk_digest (NULL, num, (size_t) n, idx->digest[i]);
  }
  int r = pbs_fidx_encode (idx, &buf, &len);
  ok (r == 0 && len == 4096 + 32 * expect,
      "size %llu: encoded %zu bytes", (unsigned long long) size, len);
  if (oracle) {
    save ("idx", buf, len);
    ok (sh ("python3 check.py idx %llu %u %zu > csum",
            (unsigned long long) size, PBS_CHUNK_SIZE, expect),
        "size %llu: python3 struct reader agrees", (unsigned long long) size);
  }
  back = pbs_fidx_parse (buf, len);
  pbs_fidx_csum (idx, csum);
  ok (back && back->size == size && back->chunk_size == PBS_CHUNK_SIZE
          && back->count == expect
          && memcmp (back->uuid, idx->uuid, 16) == 0
          && back->ctime == idx->ctime
          && memcmp (back->csum, csum, 32) == 0
          && (expect == 0
              || memcmp (back->digest, idx->digest, 32 * expect) == 0),
      "size %llu: parses back", (unsigned long long) size);
  pbs_fidx_free (back);
  {
    /* Digest by digest, as a writer computes it: the same csum (which
     * python3 hashlib checked in the encoded header). */
    struct pbs_fidx_csum_ctx *cc = pbs_fidx_csum_new ();
    uint8_t step[32];
    for (i = 0; cc && i < idx->count; i++)
      pbs_fidx_csum_add (cc, idx->digest[i]);
    ok (cc && pbs_fidx_csum_final (cc, step) == 0
            && memcmp (step, csum, 32) == 0,
        "size %llu: csum digest by digest is the index csum",
        (unsigned long long) size);
  }
  /* One byte more or less: wrong length. */
  back = pbs_fidx_parse (buf, len - 1);
  ok (back == NULL && pbs_errno () == EBADMSG,
      "size %llu: short file rejected (%s)", (unsigned long long) size,
      pbs_errmsg ());
  free (buf);
  pbs_fidx_free (idx);
}

int
main (void)
{
  uint8_t hdr[4096 + 64];
  struct pbs_fidx *idx;
  bool oracle;
  FILE *f;

  snprintf (tmpdir, sizeof tmpdir, "%s/test-pbs-fidx.XXXXXX",
            getenv ("TMPDIR") ? getenv ("TMPDIR") : "/tmp");
  if (!mkdtemp (tmpdir))
    return 99;
  oracle = system ("python3 -c 'import hashlib'") == 0;
  {
    char path[1024];
    snprintf (path, sizeof path, "%s/check.py", tmpdir);
    f = fopen (path, "w");
    fputs (check_py, f);
    fclose (f);
  }
  index_case (0, oracle);
  index_case (1, oracle);
  index_case (PBS_CHUNK_SIZE, oracle);
  index_case (10u * 1024 * 1024 + 5, oracle);
  index_case (1ull << 30, oracle);

  /* Hand-made headers. */
  idx = pbs_fidx_new (2 * PBS_CHUNK_SIZE, PBS_CHUNK_SIZE);
  {
    uint8_t *buf;
    size_t len;
    pbs_fidx_encode (idx, &buf, &len);
    memcpy (hdr, buf, sizeof hdr);
    free (buf);
  }
  pbs_fidx_free (idx);
  hdr[0] ^= 1;
  ok (!pbs_fidx_parse (hdr, sizeof hdr), "bad magic rejected");
  hdr[0] ^= 1;
  ok ((idx = pbs_fidx_parse (hdr, sizeof hdr)) != NULL, "2 chunks parse");
  pbs_fidx_free (idx);
  store_le64 (hdr + 72, 0);
  idx = pbs_fidx_parse (hdr, sizeof hdr);
  ok (!idx && pbs_errno () == EBADMSG, "chunk size 0 rejected (%s)",
      pbs_errmsg ());
  store_le64 (hdr + 72, 3u << 20);
  ok (!pbs_fidx_parse (hdr, sizeof hdr), "chunk size 3 MiB rejected");
  store_le64 (hdr + 72, 32u << 20);
  ok (!pbs_fidx_parse (hdr, sizeof hdr), "chunk size 32 MiB rejected");
  store_le64 (hdr + 72, 1u << 20);
  store_le64 (hdr + 64, 2u << 20);
  ok ((idx = pbs_fidx_parse (hdr, sizeof hdr)) != NULL && idx->count == 2,
      "1 MiB chunks, 2 MiB image parse");
  pbs_fidx_free (idx);
  store_le64 (hdr + 72, PBS_CHUNK_SIZE);
  store_le64 (hdr + 64, UINT64_MAX);
  ok (!pbs_fidx_parse (hdr, sizeof hdr), "size 2^64-1 rejected");
  ok (!pbs_fidx_parse (hdr, 100), "100 bytes rejected");
  ok (!pbs_fidx_new (1, 0) && pbs_errno () == EINVAL, "new: chunk size 0");

  sh ("rm -rf %s", tmpdir);
  return tap_done ();
}
