/* push-manifest.c -- the snapshot's manifest, with the qcow2pbs record
 * (docs/incremental-identity.md) that lets the next push prove its base,
 * and the Proxmox VE blobs. */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "push-run.h"

int
push_write_manifest (struct push *p)
{
  struct pbs_manifest *m;
  json_t *rec, *archives;
  char *text = NULL, *json = NULL;
  uint8_t *blob = NULL;
  size_t blen, i;
  int ret = -1;

  m = pbs_manifest_new (p->type, p->id, p->time);
  if (!m)
    return push_fail_pbs (p, "manifest");
  archives = json_object ();
  for (i = 0; i < p->na; i++) {
    struct archive *a = &p->a[i];
    char *s;
    if (pbs_manifest_add_file (m, a->name, p->key ? "encrypt" : "none",
                               a->size, a->csum)
        == -1) {
      push_fail_pbs (p, "manifest");
      goto out;
    }
    s = identity_archive_json (&a->ident, a->csum, a->size, p->key_fp);
    if (!s) {
      push_fail (p, "manifest", "out of memory");
      goto out;
    }
    json_object_set_new (archives, a->name, json_loads (s, 0, NULL));
    free (s);
  }
  rec = json_pack ("{s:i, s:s, s:O}", "version", 1, "tool", "qcow2pbs 0.1",
                   "archives", archives);
  text = rec ? json_dumps (rec, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
  json_decref (rec);
  if (!text) {
    push_fail (p, "manifest", "out of memory");
    goto out;
  }
  if (pve_push_store (&p->pve, p->b, m, p->key) == -1) {
    push_fail_pbs (p, "qemu-server.conf.blob");
    goto out;
  }
  if (pbs_manifest_set_unprotected (m, "qcow2pbs", text) == -1
      || pbs_manifest_to_json (m, p->key, &json) == -1) {
    push_fail_pbs (p, "manifest");
    goto out;
  }
  /* The manifest is never encrypted (PBS reads it without a key). */
  if (pbs_blob_encode (json, strlen (json), NULL, true, &blob, &blen) == -1
      || pbs_backup_blob (p->b, "index.json.blob", blob, blen) == -1) {
    push_fail_pbs (p, "index.json.blob");
    goto out;
  }
  ret = 0;
out:
  json_decref (archives);
  pbs_manifest_free (m);
  free (text);
  free (json);
  free (blob);
  return ret;
}
