/* identity.c -- the hash that identifies a layer's metadata, which push
 * records to decide later whether a layer is still the one it read
 * (docs/incremental-identity.md).  It lives here, not in the tool,
 * because only the reader knows where the header and the L1 table are,
 * and it reads them through the descriptor the chain was opened with:
 * the very file (or span of a tar member) that qcow_open checked.
 *
 * The bytes must never change: manifests written by earlier versions
 * record this value, and a different one would make every next push a
 * full read. */
#include <errno.h>
#include <stdlib.h>

#include <openssl/evp.h>

#include "qcow-internal.h"

#define RAW_HASH_BYTES (64u * 1024)
#define HASH_BUF       (64u * 1024)

/* Hash [OFF, OFF+LEN) of L's image file, clipped to its size at open. */
static int
hash_range (EVP_MD_CTX *ctx, const struct qcow__layer *l, uint8_t *buf,
            uint64_t off, uint64_t len)
{
  uint64_t size = l->io.size;

  if (off >= size)
    return 0;
  if (len > size - off)
    len = size - off;
  while (len) {
    size_t n = len < HASH_BUF ? (size_t) len : HASH_BUF;
    if (qcow__io_pread_strict (&l->io, l->path, "header", buf, n, off) == -1)
      return -1;
    if (EVP_DigestUpdate (ctx, buf, n) != 1) {
      qcow__set_error (ENOMEM, "%s: sha256 failed", l->path);
      return -1;
    }
    off += n;
    len -= n;
  }
  return 0;
}

int
qcow_layer_header_sha256 (const struct qcow_chain *c, size_t depth,
                          uint8_t out[QCOW_HEADER_HASH_LEN])
{
  const struct qcow__layer *l;
  EVP_MD_CTX *ctx = NULL;
  uint8_t *buf = NULL;
  unsigned mdlen;
  int ret = -1;

  if (!c || !out || depth >= c->n) {
    qcow__set_error (EINVAL, "qcow_layer_header_sha256: invalid argument");
    return -1;
  }
  l = c->layers[depth];
  buf = malloc (HASH_BUF);
  ctx = EVP_MD_CTX_new ();
  if (!buf || !ctx || EVP_DigestInit_ex (ctx, EVP_sha256 (), NULL) != 1) {
    qcow__set_error (ENOMEM, "%s: out of memory", l->path);
    goto out;
  }
  if (l->raw) {
    if (hash_range (ctx, l, buf, 0, RAW_HASH_BYTES) == -1)
      goto out;
  }
  /* The L1 range as the header states it, not the entries the virtual
   * size needs (l->l1_size): the VM state area counts too. */
  else if (hash_range (ctx, l, buf, 0, l->cluster_size) == -1
           || hash_range (ctx, l, buf, l->l1_offset,
                          (uint64_t) l->l1_entries * 8) == -1)
    goto out;
  if (EVP_DigestFinal_ex (ctx, out, &mdlen) != 1) {
    qcow__set_error (ENOMEM, "%s: sha256 failed", l->path);
    goto out;
  }
  ret = 0;
out:
  EVP_MD_CTX_free (ctx);
  free (buf);
  return ret;
}
