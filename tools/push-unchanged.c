/* push-unchanged.c -- does a snapshot of the group already hold the chain
 * about to be pushed?  Pushing the same layers again, or an older chain
 * after a newer one (incr0 after incr1), makes a new "latest" snapshot of
 * old data; the identity record (push-evidence.c) of the base snapshot
 * says so, and push tells the user (or, with --skip-unchanged, skips a
 * push of an unchanged chain). */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "push.h"

/* The older snapshots searched for the one that holds an older chain:
 * each costs a reader session and a manifest download. */
#define MAX_SEARCH 64

enum identity_state
push_state_vs (const struct pbs_manifest *m, const char *const *names,
               const struct chain_identity *const *ids, size_t n,
               const char *key_fp)
{
  char *record = pbs_manifest_get_unprotected (m, "qcow2pbs");
  enum identity_state all = IDENTITY_SAME;
  size_t i;

  for (i = 0; i < n && all != IDENTITY_OTHER; i++) {
    enum identity_state s = identity_compare (record, names[i], ids[i],
                                              key_fp);
    if (s == IDENTITY_OTHER || s == IDENTITY_OLDER)
      all = s;
  }
  /* A snapshot with more archives than we push is not "the same". */
  if (all == IDENTITY_SAME && pbs_manifest_file_count (m) != n)
    all = IDENTITY_OTHER;
  free (record);
  return all;
}

/* SNAPSHOT's manifest, without a signature check (the record is only
 * used to name a snapshot, never to reuse data).  NULL on any error. */
static struct pbs_manifest *
manifest_of (struct pbs_repo *repo, const char *ns, const char *type,
             const char *id, int64_t t)
{
  struct pbs_reader *rd = pbs_reader_start (repo, ns, type, id, t);
  uint8_t *blob = NULL, *json = NULL;
  size_t blen = 0, jlen = 0;
  struct pbs_manifest *m = NULL;

  if (!rd)
    return NULL;
  if (pbs_reader_download (rd, "index.json.blob", &blob, &blen) == 0
      && pbs_blob_decode (blob, blen, NULL, 16u * 1024 * 1024, &json, &jlen)
             == 0)
    m = pbs_manifest_parse ((const char *) json, jlen, NULL,
                            PBS_MANIFEST_NO_VERIFY);
  free (blob);
  free (json);
  pbs_reader_free (rd);
  return m;
}

char *
push_find_holder (struct pbs_repo *repo, const char *ns, const char *type,
                  const char *id, int64_t before, const char *const *names,
                  const struct chain_identity *const *ids, size_t n,
                  const char *key_fp)
{
  struct pbs_snapshot *s = NULL;
  size_t count = 0, i, tried = 0;
  char *holder = NULL;

  if (pbs_repo_snapshots (repo, ns, type, id, &s, &count) == -1)
    return NULL;
  for (i = count; i-- > 0 && !holder && tried < MAX_SEARCH;) {
    struct pbs_manifest *m;
    if (!s[i].finished || s[i].time >= before)
      continue;
    tried++;
    m = manifest_of (repo, ns, type, id, s[i].time);
    if (m && push_state_vs (m, names, ids, n, key_fp) == IDENTITY_SAME)
      holder = push_snapshot_name (type, id, s[i].time);
    pbs_manifest_free (m);
  }
  pbs_snapshots_free (s, count);
  return holder;
}
