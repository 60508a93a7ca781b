/* fuzz-pbs-blob.c -- DataBlob decoding (pbs_blob_decode and friends) on
 * arbitrary bytes, with and without a key, and the re-encode round trip of
 * whatever decodes. */
#include <stdlib.h>
#include <string.h>

#include "pbsproto.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  static struct pbs_key *key;
  uint8_t *out = NULL, *blob = NULL, *back = NULL;
  size_t outlen, blen, backlen;

  if (!key) {
    uint8_t raw[32];
    size_t i;
    for (i = 0; i < 32; i++)
      raw[i] = (uint8_t) i;
    key = pbs_key_from_raw (raw);
  }
  pbs_blob_kind (data, size);
  pbs_blob_check_crc (data, size);
  /* A small cap so that decompression bombs stay cheap. */
  if (pbs_blob_decode (data, size, key, 1 << 20, &out, &outlen) == 0) {
    if (pbs_blob_encode (out, outlen, key, true, &blob, &blen) == 0
        && (pbs_blob_decode (blob, blen, key, outlen, &back, &backlen) != 0
            || backlen != outlen || memcmp (back, out, outlen) != 0))
      abort ();
    free (back);
    free (blob);
    free (out);
  }
  if (pbs_blob_decode (data, size, NULL, 4096, &out, &outlen) == 0)
    free (out);
  return 0;
}
