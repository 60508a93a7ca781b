/* local-repair.c -- what a local datastore offers beyond the backup and
 * reader protocols: the direct look at the chunk store that repairing a
 * damaged store needs (pbsproto.h "repair").  A PBS server does the same in
 * its verify job; over the network there is no such call. */
#include "ds-internal.h"
#include "pbs-internal.h"

#define LOCAL_AUTH_ID "root@pam" /* as local-backend.c */

int
pbs__local_has_chunk (void *st, const uint8_t digest[32])
{
  return pbs_datastore_has_chunk (st, digest) ? 1 : 0;
}

int
pbs__local_rename_bad_chunk (void *st, const uint8_t digest[32],
                             char **new_path)
{
  return pbs_datastore_rename_bad_chunk (st, digest, new_path);
}

int
pbs__local_set_verify_state (void *st, const char *ns, const char *type,
                             const char *id, int64_t time, bool ok)
{
  return pbs_ds_set_verify_state (st, LOCAL_AUTH_ID, ns, type, id, time, ok);
}
