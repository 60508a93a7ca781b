/* fuzz-pbs-blob.c -- DataBlob decoding (pbs_blob_decode, pbs_blob_decode_to
 * and friends) on arbitrary bytes, with and without a key, the re-encode
 * round trip of whatever decodes, and both decoders agreeing. */
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "byteorder.h"
#include "pbsproto.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static void decode_all (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  uint8_t *fixed;
  int kind;

  decode_all (data, size);
  /* Mutations rarely keep the CRC right; decode a copy with the CRC
   * repaired too, so that the zstd and AES-GCM paths get fuzzed. */
  kind = pbs_blob_kind (data, size);
  if (kind >= 0) {
    size_t h = kind >= PBS_BLOB_ENCRYPTED ? 44 : 12;
    fixed = malloc (size);
    memcpy (fixed, data, size);
    store_le32 (fixed + 8, (uint32_t) crc32_z (0, fixed + h, size - h));
    decode_all (fixed, size);
    free (fixed);
  }
  return 0;
}

/* Decode with the key (and re-encode what decodes), then without. */
static void
decode_all (const uint8_t *data, size_t size)
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
  /* Restore's decode into a fixed buffer must agree with the allocating
   * one: same success, same bytes.  It skips the CRC (its callers check
   * the digest), so it is compared where the CRC is right. */
  if (pbs_blob_check_crc (data, size) == 0) {
    static uint8_t buf[1 << 20];
    const uint8_t *got = NULL;
    size_t glen = 0;
    int a = pbs_blob_decode (data, size, key, sizeof buf, &out, &outlen);
    int b = pbs_blob_decode_to (data, size, key, buf, sizeof buf, &got,
                                &glen);
    if (a != b || (a == 0 && (glen != outlen || memcmp (got, out, glen))))
      abort ();
    if (a == 0)
      free (out);
  }
}
