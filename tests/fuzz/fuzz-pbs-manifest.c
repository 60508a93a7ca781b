/* fuzz-pbs-manifest.c -- manifest parsing (with and without a key), the
 * accessors, canonical JSON, and the serialise/parse round trip. */
#include <stdlib.h>
#include <string.h>

#include "pbsproto.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  static struct pbs_key *key;
  struct pbs_manifest *m, *again;
  struct pbs_manifest_file f;
  char *text = NULL, *canon, *u;
  size_t i, n;

  if (!key) {
    uint8_t raw[32] = { 1, 2, 3 };
    key = pbs_key_from_raw (raw);
  }
  m = pbs_manifest_parse ((const char *) data, size, key, 0);
  pbs_manifest_free (m);
  m = pbs_manifest_parse ((const char *) data, size, NULL,
                          PBS_MANIFEST_NO_VERIFY);
  if (!m)
    return 0;
  pbs_manifest_type (m);
  pbs_manifest_id (m);
  pbs_manifest_time (m);
  pbs_manifest_key_fingerprint (m);
  n = pbs_manifest_file_count (m);
  for (i = 0; i < n; i++)
    if (pbs_manifest_file (m, i, &f) == 0)
      pbs_manifest_find (m, f.filename, &f);
  u = pbs_manifest_get_unprotected (m, "key-fingerprint");
  free (u);
  canon = pbs_manifest_canonical (m);
  free (canon);
  /* Signed with our key, it must parse back under verification, unless
   * the signed part cannot be made canonical (a null, a float). */
  if (pbs_manifest_to_json (m, key, &text) == 0) {
    again = pbs_manifest_parse (text, strlen (text), key, 0);
    if (!again)
      abort ();
    if (pbs_manifest_file_count (again) != n)
      abort ();
    pbs_manifest_free (again);
    free (text);
  }
  pbs_manifest_free (m);
  return 0;
}
