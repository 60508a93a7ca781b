/* remote-admin.c -- snapshot administration over the REST API: protection
 * (PUT /api2/json/admin/datastore/{store}/protected, set_protection in
 * proxmox-backup src/api2/admin/datastore.rs; it needs Datastore.Modify,
 * or Datastore.Backup as the group's owner). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include <jansson.h>

#include "pbs-internal.h"
#include "remote-internal.h"

int
pbs__remote_set_protected (void *state, const char *ns, const char *type,
                           const char *id, int64_t time, bool protect)
{
  struct pbs_remote *r = state;
  struct pbs_http_resp resp;
  char *target = NULL, *body = NULL;
  json_t *o;
  int rc = -1;

  /* A store name is a safe id: nothing to escape in the path. */
  o = json_pack ("{s:s, s:s, s:I, s:b}", "backup-type", type, "backup-id",
                 id, "backup-time", (json_int_t) time, "protected",
                 protect);
  if (o && ns && *ns)
    json_object_set_new (o, "ns", json_string (ns));
  body = o ? json_dumps (o, JSON_COMPACT) : NULL;
  json_decref (o);
  if (!body
      || asprintf (&target, "/api2/json/admin/datastore/%s/protected",
                   r->spec.store)
             == -1) {
    target = NULL;
    pbs__set_error (ENOMEM, "out of memory");
    goto out;
  }
  if (pbs__remote_refresh (r) == -1
      || pbs__remote_rest (r, "PUT", target, body, &resp) == -1)
    goto out;
  pbs__http_resp_free (&resp);
  rc = 0;
out:
  free (body);
  free (target);
  return rc;
}
