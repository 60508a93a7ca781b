/* ds-verify.c -- record the result of a verification in a snapshot's
 * manifest, as PBS's verify job does (src/backup/verify.rs
 * verify_backup_dir_with_lock, then BackupDir::update_manifest):
 *
 *   "unprotected": { "verify_state": { "state": "ok" | "failed",
 *                                      "upid": "UPID:node:...:" }, ... }
 *
 * PBS deserialises this as SnapshotVerifyState, whose upid must parse as a
 * UPID; a state with anything else is read as "no state" (see
 * pbs__ds_verify_state).  So we write a real UPID of the form proxmox-schema
 * prints (src/upid.rs Display):
 *
 *   UPID:{node}:{pid:08X}:{pstart:08X}:{task_id:08X}:{starttime:08X}:
 *        {worker_type}:{escaped worker_id}:{auth_id}:
 *
 * with worker type "verify_snapshot" and worker id
 * "{store}:{ns}/{type}/{id}/{time:08X}", as PBS's verify API names a
 * one-snapshot verification (src/api2/admin/datastore.rs verify). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "ds-internal.h"
#include "pbs-errors.h"


/* The node part: PBS's regex [a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?, taken
 * from the host name up to its first dot. */
static void
node_name (char *out, size_t n)
{
  char host[256] = "";
  size_t i, j = 0;

  if (gethostname (host, sizeof host - 1) == -1)
    host[0] = 0;
  for (i = 0; host[i] && host[i] != '.' && j + 1 < n; i++) {
    char c = host[i];
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
        (c >= '0' && c <= '9') || (c == '-' && j > 0))
      out[j++] = c;
  }
  while (j > 0 && out[j - 1] == '-')
    j--;
  out[j] = 0;
  if (j == 0)
    snprintf (out, n, "localhost");
}

/* Field 22 of /proc/self/stat: the process start time in clock ticks
 * (PBS's pstart).  0 if unreadable. */
static unsigned long long
process_start (void)
{
  char buf[1024], *p;
  unsigned long long v = 0;
  FILE *f = fopen ("/proc/self/stat", "re");
  size_t len;
  int field;

  if (!f)
    return 0;
  len = fread (buf, 1, sizeof buf - 1, f);
  fclose (f);
  buf[len] = 0;
  p = strrchr (buf, ')'); /* the command name may contain spaces */
  if (!p)
    return 0;
  /* ") S ppid ...": field 3 is the state after ") " */
  for (field = 2; *p && field < 22; p++)
    if (*p == ' ')
      field++;
  if (field == 22)
    v = strtoull (p, NULL, 10);
  return v;
}

/* proxmox-schema escape_id: '/' -> '-', anything but [_.0-9a-zA-Z] (and a
 * leading '.') -> \xNN.  OUT has 4 * strlen (IN) + 1 bytes. */
static void
escape_id (const char *in, char *out)
{
  size_t i;

  for (i = 0; in[i]; i++) {
    unsigned char c = (unsigned char)in[i];
    if (c == '/')
      *out++ = '-';
    else if ((i == 0 && c == '.') ||
             !(c == '_' || c == '.' || (c >= '0' && c <= '9') ||
               (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))) {
      sprintf (out, "\\x%02x", c);
      out += 4;
    }
    else
      *out++ = (char)c;
  }
  *out = 0;
}

/* A UPID for a verification of TYPE/ID/SNAP_TIME in NS of DS by AUTH_ID;
 * malloc'd. */
static char *
make_upid (struct pbs_datastore *ds, const char *auth_id, const char *ns,
           const char *type, const char *id, int64_t snap_time)
{
  static atomic_uint task_counter;
  const char *store = strrchr (ds->path, '/');
  char node[64], *wid = NULL, *esc = NULL, *upid = NULL;

  store = store ? store + 1 : ds->path;
  if (!*store)
    store = "datastore";
  node_name (node, sizeof node);
  if (asprintf (&wid, "%s:%s/%s/%s/%08" PRIX64, store, ns, type, id,
                (uint64_t)snap_time) == -1)
    wid = NULL;
  esc = wid ? malloc (4 * strlen (wid) + 1) : NULL;
  if (esc) {
    escape_id (wid, esc);
    if (asprintf (&upid, "UPID:%s:%08X:%08llX:%08X:%08llX:verify_snapshot:"
                  "%s:%s:", node, (unsigned)getpid (), process_start (),
                  atomic_fetch_add (&task_counter, 1),
                  (unsigned long long)time (NULL), esc, auth_id) == -1)
      upid = NULL;
  }
  if (!upid)
    pbs__set_error (ENOMEM, "out of memory");
  free (wid);
  free (esc);
  return upid;
}

int
pbs_ds_set_verify_state (struct pbs_datastore *ds, const char *auth_id,
                         const char *ns, const char *type, const char *id,
                         int64_t time, bool ok)
{
  char ts[21], *group = NULL, *dir = NULL, *mpath = NULL, *upid = NULL;
  char *value = NULL;
  uint8_t *blob = NULL;
  size_t blen = 0;
  struct pbs_manifest *m = NULL;
  struct stat st;
  json_t *v = NULL;
  int lock = -1, r = -1;

  if (!ns)
    ns = "";
  if (!auth_id || !strchr (auth_id, '@') || strchr (auth_id, ':') ||
      !type || !pbs_valid_backup_type (type) || !id ||
      !pbs_valid_backup_id (id) || time < 1) {
    pbs__set_error (EINVAL, "invalid snapshot or auth id");
    return -1;
  }
  group = pbs__ds_group_path (ds, ns, type, id);
  if (!group)
    return -1;
  pbs_time_to_rfc3339 (time, ts);
  if (asprintf (&dir, "%s/%s", group, ts) == -1)
    dir = NULL;
  else if (asprintf (&mpath, "%s/" PBS_MANIFEST_NAME, dir) == -1)
    mpath = NULL;
  if (!mpath) {
    pbs__set_error (ENOMEM, "out of memory");
    goto out;
  }
  if (lstat (dir, &st) == -1 || !S_ISDIR (st.st_mode)) {
    pbs__set_error (ENOENT, "snapshot %s/%s/%s does not exist!", type, id, ts);
    goto out;
  }
  /* verify_backup_dir: lock_dir_noblock_shared (dir, "snapshot", "locked
   * by another operation"); a running backup holds it exclusively. */
  lock = open (dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (lock == -1 || flock (lock, LOCK_SH | LOCK_NB) == -1) {
    int e = errno;
    pbs__set_error (e == EWOULDBLOCK ? EBUSY : e,
                    "unable to acquire lock on snapshot directory "
                    "\"%s\" - locked by another operation",
                    dir);
    goto out;
  }
  if (pbs__ds_read_file (mpath, PBS_BLOB_MAX_ENCODED, &blob, &blen) == -1) {
    pbs__ds_prefix_error ("unable to load manifest - ");
    goto out;
  }
  m = pbs__ds_manifest_from_blob (blob, blen, mpath);
  if (!m) {
    goto out;
  }
  upid = make_upid (ds, auth_id, ns, type, id, time);
  if (!upid)
    goto out;
  v = json_pack ("{s:s, s:s}", "state", ok ? "ok" : "failed", "upid", upid);
  value = v ? json_dumps (v, JSON_COMPACT) : NULL;
  if (!value) {
    pbs__set_error (ENOMEM, "out of memory");
    goto out;
  }
  /* The signature covers only the protected part: the manifest stays
   * valid for its key. */
  if (pbs__ds_update_unprotected (ds, dir, m, "verify_state", value) == -1)
    goto out;
  r = 0;
out:
  if (lock >= 0)
    close (lock);
  json_decref (v);
  pbs_manifest_free (m);
  free (value);
  free (blob);
  free (upid);
  free (mpath);
  free (dir);
  free (group);
  return r;
}
