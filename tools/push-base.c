/* push-base.c -- the base of a push: the snapshot the server picks
 * (docs/pbs-protocol.md §4.2), its manifest and indexes checked, and the
 * chunk plan that reuses its digests only with evidence (push-evidence.c)
 * that it was made from the layers below the new ones. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "push-run.h"

/* Does manifest M carry verify_state "failed"?  PBS (and the local store)
 * offers such a snapshot as no base at all (§4.2); this catches a base
 * that a server offered anyway, whatever its upid looks like. */
static bool
manifest_failed_verification (const struct pbs_manifest *m)
{
  char *text = pbs_manifest_get_unprotected (m, "verify_state");
  json_t *v = text ? json_loads (text, 0, NULL) : NULL;
  const char *st = json_string_value (json_object_get (v, "state"));
  bool failed = st && strcmp (st, "failed") == 0;

  json_decref (v);
  free (text);
  return failed;
}

/* The base the server picks (§4.2, PBS's last_backup(true)): the group's
 * last finished snapshot, none if that one failed verification.  *T: its
 * time or -1; *FAILED: there is a last snapshot but it failed.  ENOENT
 * (no such group) is no error. */
int
push_group_base (struct push *p, int64_t *t, bool *failed)
{
  struct pbs_snapshot *s = NULL;
  size_t n = 0, i;

  *t = -1;
  *failed = false;
  if (pbs_repo_snapshots (p->repo, p->ns, p->type, p->id, &s, &n) == -1)
    return pbs_errno () == ENOENT ? 0 : -1;
  for (i = n; i-- > 0;)
    if (s[i].finished) {
      if (s[i].verify_state && strcmp (s[i].verify_state, "failed") == 0)
        *failed = true;
      else
        *t = s[i].time;
      break;
    }
  pbs_snapshots_free (s, n);
  return 0;
}

/* A base digest is reused only while the repository still has its chunk.
 * A local store leaves a chunk that a repair moved aside out of the
 * session's known set (pbs_backup_download_previous); a dry run asks the
 * store.  A server's chunks cannot be seen from here: there its verify job
 * marking the snapshot failed is what stops the reuse. */
static bool
base_chunk_present (struct push *p, const uint8_t d[PBS_DIGEST_LEN])
{
  if (p->b)
    return pbs_backup_known (p->b, d);
  return pbs_repo_has_chunk (p->repo, d) != 0; /* -1: remote, unknown */
}

/* Decode the base manifest and decide whether it may serve as a base at
 * all (same key).  Sets p->base_m or p->base_why. */
int
push_load_base_manifest (struct push *p, const uint8_t *blob, size_t blen)
{
  uint8_t *json = NULL;
  size_t jlen;
  struct pbs_manifest *m;
  const char *fp;

  if (pbs_blob_decode (blob, blen, NULL, 16u * 1024 * 1024, &json, &jlen)
      == -1) {
    snprintf (p->base_why, sizeof p->base_why,
              "previous manifest unreadable: %s", pbs_errmsg ());
    return 0;
  }
  m = pbs_manifest_parse ((const char *) json, jlen, NULL,
                          PBS_MANIFEST_NO_VERIFY);
  if (!m) {
    snprintf (p->base_why, sizeof p->base_why,
              "previous manifest unreadable: %s", pbs_errmsg ());
    free (json);
    return 0;
  }
  if (manifest_failed_verification (m)) {
    snprintf (p->base_why, sizeof p->base_why, FAILED_VERIFICATION);
    pbs_manifest_free (m);
    free (json);
    return 0;
  }
  fp = pbs_manifest_key_fingerprint (m);
  if ((fp == NULL) != (p->key_fp == NULL)
      || (fp && strcmp (fp, p->key_fp) != 0)) {
    snprintf (p->base_why, sizeof p->base_why, "key changed");
    pbs_manifest_free (m);
    free (json);
    return 0;
  }
  if (p->key) {
    /* Same fingerprint: the signature must hold too. */
    pbs_manifest_free (m);
    m = pbs_manifest_parse ((const char *) json, jlen, p->key, 0);
    if (!m) {
      snprintf (p->base_why, sizeof p->base_why,
                "previous manifest signature invalid: %s", pbs_errmsg ());
      free (json);
      return 0;
    }
  }
  free (json);
  if (pbs_manifest_time (m) != p->base_time) {
    snprintf (p->base_why, sizeof p->base_why,
              "previous manifest has another backup-time");
    pbs_manifest_free (m);
    return 0;
  }
  p->base_m = m;
  return 0;
}

/* Download the base's index of archive A (registering its digests as
 * known) and check it against the base manifest. */
int
push_load_base_index (struct push *p, struct pbs_reader *rd,
                      struct archive *a)
{
  struct pbs_manifest_file f;
  uint8_t *data = NULL, csum[32];
  size_t len;

  if (!p->base_m) {
    snprintf (a->reason, sizeof a->reason, "%s", p->base_why);
    return 0;
  }
  if (pbs_manifest_find (p->base_m, a->name, &f) == -1) {
    snprintf (a->reason, sizeof a->reason,
              "previous snapshot has no %s", a->name);
    return 0;
  }
  /* A sign-only base with our key has plain chunks: not reusable in an
   * encrypted index (and the other way round). */
  if (strcmp (f.crypt_mode, p->key ? "encrypt" : "none") != 0) {
    snprintf (a->reason, sizeof a->reason,
              "previous snapshot has crypt-mode %s", f.crypt_mode);
    return 0;
  }
  /* One parse serves the session's known digests, the checks below, the
   * plan and the writer. */
  if (p->b)
    a->base = pbs_backup_previous_index (p->b, a->name);
  else if (pbs_reader_download (rd, a->name, &data, &len) == 0) {
    a->base = a->base_owned = pbs_fidx_parse (data, len);
    free (data);
  }
  if (!a->base) {
    if (pbs_error_is_transient ())
      return push_fail_pbs (p, a->name);
    snprintf (a->reason, sizeof a->reason,
              "previous index unreadable: %s", pbs_errmsg ());
    return 0;
  }
  pbs_fidx_csum (a->base, csum);
  if (memcmp (csum, f.csum, 32) != 0 || a->base->size != f.size
      || a->base->chunk_size != PBS_CHUNK_SIZE) {
    snprintf (a->reason, sizeof a->reason,
              "previous index checksum mismatch");
    pbs_fidx_free (a->base_owned);
    a->base = a->base_owned = NULL;
    return 0;
  }
  /* A session knows the base's digests itself (pbs_backup_known, which
   * the pipeline asks); a dry run has only this index. */
  if (!p->b
      && digest_set_add_base (p->known,
                              (const uint8_t (*)[PBS_DIGEST_LEN])
                                  a->base->digest,
                              a->base->count)
             == -1)
    return push_fail (p, a->image, "out of memory");
  return 0;
}

/* With a checked base index: decide reuse and fill A->plan. */
int
push_make_plan (struct push *p, struct archive *a)
{
  uint8_t *touched = NULL;
  size_t base_layers = 0, n = a->ident.n, i;
  uint64_t c, minsize;
  char *record = NULL;
  struct cli_err err;

  a->incremental = false;
  if (p->full)
    snprintf (a->reason, sizeof a->reason, "--full");
  else if (a->base) {
    uint8_t csum[32];
    record = pbs_manifest_get_unprotected (p->base_m, "qcow2pbs");
    pbs_fidx_csum (a->base, csum);
    if (identity_match (record, a->name, &a->ident, csum, a->base->size,
                        p->key_fp, &base_layers, a->reason,
                        sizeof a->reason)
        == 0)
      a->incremental = true;
    free (record);
  }
  if (a->incremental) {
    touched = calloc (a->nchunks ? a->nchunks : 1, 1);
    if (!touched)
      return push_fail (p, a->image, "out of memory");
    /* Layers base_layers..n-1 (oldest first) are new: depth n-1-i. */
    for (i = base_layers; i < n; i++)
      if (plan_touch_layer (a->chain, n - 1 - i, touched, a->nchunks,
                            a->image, &err)
          == -1) {
        free (touched);
        return push_fail (p, err.ctx, "%s", err.msg);
      }
    /* A shorter layer hides what lies above its size in the layers below,
     * and a grown disk has new bytes: [min size, top size) is touched. */
    minsize = a->ident.layer[base_layers - 1].virtual_size;
    for (i = base_layers; i < n; i++)
      if (a->ident.layer[i].virtual_size < minsize)
        minsize = a->ident.layer[i].virtual_size;
    for (c = minsize / PBS_CHUNK_SIZE; c < a->nchunks; c++)
      touched[c] = 1;
    a->reason[0] = 0;
  }
  for (c = 0; c < a->nchunks; c++) {
    uint64_t end = (c + 1) * (uint64_t) PBS_CHUNK_SIZE;
    if (touched && !touched[c] && end <= a->size && end <= a->base->size
        && base_chunk_present (p, a->base->digest[c]))
      a->plan[c] = PLAN_REUSE;
    else if (a->data[c])
      a->plan[c] = PLAN_READ;
    else if (end <= a->size)
      a->plan[c] = PLAN_ZERO;
    else
      a->plan[c] = PLAN_ZERO_DATA; /* a short chunk is hashed as data */
  }
  free (touched);
  return 0;
}

/* Does the base (the group's last snapshot) already hold this chain, or
 * a newer one?  Say so on stderr (one line); with --skip-unchanged an
 * unchanged chain is not pushed: 1 (p->skipped names the snapshot). */
int
push_check_unchanged (struct push *p)
{
  const char **names = calloc (p->na, sizeof *names);
  const struct chain_identity **ids = calloc (p->na, sizeof *ids);
  enum identity_state st = IDENTITY_OTHER;
  char *base = NULL, *holder = NULL;
  size_t i;
  int ret = 0;

  if (!names || !ids)
    goto out; /* only a warning is lost */
  for (i = 0; i < p->na; i++) {
    names[i] = p->a[i].name;
    ids[i] = &p->a[i].ident;
  }
  st = push_state_vs (p->base_m, names, ids, p->na, p->key_fp);
  base = push_snapshot_name (p->type, p->id, p->base_time);
  if (!base || st == IDENTITY_OTHER)
    goto out;
  if (st == IDENTITY_SAME && p->skip_unchanged) {
    p->skipped = base;
    base = NULL;
    ret = 1;
  }
  else if (st == IDENTITY_SAME)
    cli_cmd_note ("push", "%s already holds this chain, unchanged; this "
                  "makes another snapshot of the same data "
                  "(--skip-unchanged skips it)", base);
  else {
    holder = push_find_holder (p->repo, p->ns, p->type, p->id, p->base_time,
                               names, ids, p->na, p->key_fp);
    cli_cmd_note ("push", "this chain is older than the group's last "
                  "snapshot %s (made from more layers)%s%s; the new "
                  "snapshot will be the latest but hold older data", base,
                  holder ? "; already held by " : "", holder ? holder : "");
  }
out:
  free (names);
  free (ids);
  free (base);
  free (holder);
  return ret;
}
