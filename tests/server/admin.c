/* admin.c -- a snapshot's notes and protection over REST:
 * GET/PUT /api2/json/admin/datastore/{store}/notes and .../protected
 * (get_notes, set_notes, get_protection, set_protection in proxmox-backup
 * src/api2/admin/datastore.rs).  Their permission: Datastore.Audit (read)
 * or Datastore.Modify (write) for any group, else Datastore.Backup and
 * owning the group (check_privs_and_load_store).  Every user of this
 * server has Datastore.Backup only (README), so the owner check decides:
 * 400 "backup owner check failed (AUTH != OWNER)". */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server.h"

#define SNAPSHOT_PARAMS                                                       \
  { "store", SRV_P_STRING, false, 3, 32, srv_fmt_safe_id },                   \
  { "ns", SRV_P_STRING, true, 0, 256, srv_fmt_ns },                           \
  { "backup-type", SRV_P_STRING, false, 0, 0, srv_fmt_backup_type },          \
  { "backup-id", SRV_P_STRING, false, 0, 0, srv_fmt_backup_id },              \
  { "backup-time", SRV_P_INT, false, 1, INT64_MAX, NULL }

static const struct srv_param get_schema[] = {
  SNAPSHOT_PARAMS,
  { NULL, 0, false, 0, 0, NULL },
};
static const struct srv_param notes_schema[] = {
  SNAPSHOT_PARAMS,
  { "notes", SRV_P_STRING, false, 0, 0, NULL },
  { NULL, 0, false, 0, 0, NULL },
};
static const struct srv_param protected_schema[] = {
  SNAPSHOT_PARAMS,
  { "protected", SRV_P_BOOL, false, 0, 0, NULL },
  { NULL, 0, false, 0, 0, NULL },
};

/* check_backup_owner against the group's owner file. */
static int
check_owner (struct srv_store *st, const char *ns, const char *type,
             const char *id, const struct srv_auth *auth,
             struct srv_reply *rep)
{
  struct pbs_snapshot *s = NULL;
  size_t n = 0;
  int r = -1;

  if (pbs_datastore_snapshots (st->ds, ns, type, id, &s, &n) == -1) {
    srv_reply_ds_error (rep, 404, 400); /* "namespace not found" */
    return -1;
  }
  if (n == 0 || !s[0].owner)
    /* get_owner: file_read_firstline of a missing owner file */
    srv_reply_error (rep, 400, "unable to read owner of group %s/%s - "
                     "No such file or directory (os error 2)", type, id);
  else if (!srv_owner_ok (s[0].owner, auth->auth_id))
    srv_reply_error (rep, 400, "backup owner check failed (%s != %s)",
                     auth->auth_id, s[0].owner);
  else
    r = 0;
  pbs_snapshots_free (s, n);
  return r;
}

void
srv_admin (const struct srv_request *req, struct srv_reply *rep,
           const struct srv_auth *auth, const char *store, const char *what)
{
  const char *uri[] = { "store", store, NULL };
  bool put = strcmp (req->method, "PUT") == 0;
  bool notes = strcmp (what, "notes") == 0;
  const struct srv_param *schema
      = !put ? get_schema : notes ? notes_schema : protected_schema;
  char *text;
  json_t *p = srv_params_or_reply (req, schema, uri, rep);
  struct srv_store *st;
  const char *ns, *type, *id;
  int64_t t;
  struct pbs_snapshot *s = NULL;
  size_t n = 0, i;
  bool prot = false;

  if (p == NULL)
    return;
  st = srv_find_store (store);
  if (st == NULL) {
    srv_reply_error (rep, 400, "no such datastore '%s'", store);
    goto out;
  }
  ns = json_string_value (json_object_get (p, "ns"));
  type = json_string_value (json_object_get (p, "backup-type"));
  id = json_string_value (json_object_get (p, "backup-id"));
  t = (int64_t) json_integer_value (json_object_get (p, "backup-time"));
  if (check_owner (st, ns ? ns : "", type, id, auth, rep) == -1)
    goto out;
  if (notes && put) {
    if (pbs_ds_set_notes (st->ds, ns ? ns : "", type, id, t,
                          json_string_value (json_object_get (p, "notes")))
        == -1)
      srv_reply_ds_error (rep, 400, 400); /* "does not exist!" */
    else
      srv_reply_data (rep, NULL);
  }
  else if (notes) {
    text = pbs_ds_get_notes (st->ds, ns ? ns : "", type, id, t);
    if (!text)
      srv_reply_ds_error (rep, 400, 400); /* "does not exist!" */
    else
      srv_reply_data (rep, json_string (text));
    free (text);
  }
  else if (put) {
    if (pbs_ds_set_protection (st->ds, ns ? ns : "", type, id, t,
                               json_is_true (json_object_get (p,
                                                              "protected")))
        == -1)
      srv_reply_ds_error (rep, 400, 400); /* "does not exist!" */
    else
      srv_reply_data (rep, NULL);
  }
  else if (pbs_datastore_snapshots (st->ds, ns ? ns : "", type, id, &s, &n)
           == -1)
    srv_reply_ds_error (rep, 404, 400); /* "namespace not found" */
  else {
    /* get_protection: backup_dir.is_protected(); no existence check */
    for (i = 0; i < n; i++)
      if (s[i].time == t)
        prot = s[i].protected_;
    srv_reply_data (rep, json_boolean (prot));
  }
out:
  pbs_snapshots_free (s, n);
  json_decref (p);
}
