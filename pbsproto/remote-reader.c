/* remote-reader.c -- the reader protocol (§3.10): download a snapshot's
 * files and, after its index was downloaded, the index's chunks. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "remote-internal.h"

/* An index of a 10 TiB disk is 80 MiB; chunks are <= 16 MiB + 44. */
#define READER_DOWNLOAD_MAX ((size_t) 1024 * 1024 * 1024)
#define READER_CHUNK_MAX ((size_t) 16 * 1024 * 1024 + 64)

struct pbs_backend_reader {
  struct pbs_h2 *h;
};

struct pbs_backend_reader *
pbs__remote_reader_start (void *repo, const char *ns, const char *type,
                          const char *id, int64_t time)
{
  struct pbs_remote *r = repo;
  struct pbs_backend_reader *rd;
  char *q, *target = NULL;

  q = pbs__remote_session_query (r, ns, type, id, time, false);
  if (!q)
    return NULL;
  if (asprintf (&target, "/api2/json/reader?%s", q) == -1) {
    free (q);
    pbs__set_error (ENOMEM, "out of memory");
    return NULL;
  }
  free (q);
  rd = calloc (1, sizeof *rd);
  if (!rd) {
    free (target);
    pbs__set_error (ENOMEM, "out of memory");
    return NULL;
  }
  rd->h = pbs__h2_open (r, target, "proxmox-backup-reader-protocol-v1");
  free (target);
  if (!rd->h) {
    free (rd);
    return NULL;
  }
  return rd;
}

int
pbs__remote_reader_download (struct pbs_backend_reader *rd, const char *name,
                             uint8_t **data, size_t *len)
{
  char *q = NULL, *path = NULL;
  int rc;

  if (pbs__query_add (&q, "file-name", name) == -1)
    return -1;
  if (asprintf (&path, "download?%s", q) == -1) {
    free (q);
    pbs__set_error (ENOMEM, "out of memory");
    return -1;
  }
  free (q);
  rc = pbs__h2_call (rd->h, "GET", path, NULL, NULL, 0, READER_DOWNLOAD_MAX,
                     data, len, name);
  free (path);
  return rc;
}

int
pbs__remote_reader_chunk (struct pbs_backend_reader *rd,
                          const uint8_t digest[32], uint8_t **blob,
                          size_t *len)
{
  char path[128], hex[65];

  for (int i = 0; i < 32; i++)
    snprintf (hex + 2 * i, 3, "%02x", digest[i]);
  snprintf (path, sizeof path, "chunk?digest=%s", hex);
  return pbs__h2_call (rd->h, "GET", path, NULL, NULL, 0, READER_CHUNK_MAX,
                       blob, len, "chunk");
}

void
pbs__remote_reader_free (struct pbs_backend_reader *rd)
{
  if (!rd)
    return;
  pbs__h2_close (rd->h);
  free (rd);
}
