/* fuzz-pbs-fidx.c -- fixed index parsing on arbitrary bytes; whatever
 * parses must encode back to the same bytes apart from the header csum
 * (which readers do not trust) and the reserved area. */
#include <stdlib.h>
#include <string.h>

#include "pbsproto.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  struct pbs_fidx *idx = pbs_fidx_parse (data, size);
  uint8_t *out, csum[32];
  size_t outlen;

  if (!idx)
    return 0;
  pbs_fidx_csum (idx, csum);
  if (pbs_fidx_encode (idx, &out, &outlen) == 0) {
    if (outlen != size || memcmp (out, data, 32) != 0
        || memcmp (out + 64, data + 64, 16) != 0
        || memcmp (out + 4096, data + 4096, size - 4096) != 0
        || memcmp (out + 32, csum, 32) != 0)
      abort ();
    free (out);
  }
  pbs_fidx_free (idx);
  return 0;
}
