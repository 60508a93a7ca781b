/* pve-push.c -- push's Proxmox VE options: the VM config and firewall
 * rules as blobs, notes in the manifest, protection after the snapshot is
 * finished (docs/proxmox-ve.md). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "cli.h"
#include "pve-push.h"

#define TEXT_MAX (1u << 20) /* configs and notes: far below a blob's limit */

/* Read a small text file whole: malloc'd, NUL-terminated; NULL with
 * ERR. */
static char *
read_text (const char *path, size_t *lenp, struct cli_err *err)
{
  char *buf = NULL;
  size_t len = 0;
  struct stat st;
  ssize_t r;
  int fd = open (path, O_RDONLY | O_CLOEXEC);

  if (fd == -1) {
    cli_err_set (err, path, "cannot open: %s", strerror (errno));
    return NULL;
  }
  if (fstat (fd, &st) == -1 || !S_ISREG (st.st_mode)) {
    cli_err_set (err, path, "not a regular file");
    goto fail;
  }
  if ((uint64_t) st.st_size > TEXT_MAX) {
    cli_err_set (err, path, "larger than %u bytes: not a config or notes "
                 "file", TEXT_MAX);
    goto fail;
  }
  buf = malloc ((size_t) st.st_size + 1);
  if (!buf) {
    cli_err_set (err, path, "out of memory");
    goto fail;
  }
  while ((r = read (fd, buf + len, (size_t) st.st_size - len)) > 0)
    len += (size_t) r;
  if (r == -1) {
    cli_err_set (err, path, "read failed: %s", strerror (errno));
    goto fail;
  }
  buf[len] = 0;
  close (fd);
  if (lenp)
    *lenp = len;
  return buf;
fail:
  free (buf);
  close (fd);
  return NULL;
}

static int
parse_uint (const char *opt, const char *arg, unsigned lo, unsigned hi,
            unsigned *out, struct cli_err *err)
{
  char *end;
  unsigned long v;

  errno = 0;
  v = strtoul (arg, &end, 10);
  if (errno || *end || !*arg || *arg == '-' || v < lo || v > hi)
    return cli_err_usage (err, "push", "invalid %s '%s' (%u to %u)", opt,
                          arg, lo, hi);
  *out = (unsigned) v;
  return 0;
}

int
pve_push_option (struct pve_push *pp, int opt, const char *arg,
                 struct cli_err *err)
{
  switch (opt) {
  case PVE_OPT_CONFIG: pp->config_arg = arg; return 0;
  case PVE_OPT_STORAGE:
    if (*arg && !pve_valid_storage_id (arg))
      return cli_err_usage (err, "push", "invalid --pve-storage '%s' (a "
                            "Proxmox VE storage id, e.g. local-lvm)", arg);
    pp->storage = arg;
    return 0;
  case PVE_OPT_MEMORY:
    pp->memory_set = true;
    /* qemu-server's memory: 16 MiB minimum */
    return parse_uint ("--pve-memory", arg, 16, 4u << 20, &pp->memory_mib,
                       err);
  case PVE_OPT_CORES:
    pp->cores_set = true;
    return parse_uint ("--pve-cores", arg, 1, 1024, &pp->cores, err);
  case PVE_OPT_FW_CONFIG: pp->fw_path = arg; return 0;
  case PVE_OPT_NOTES: pp->notes_arg = arg; return 0;
  case PVE_OPT_NOTES_FILE: pp->notes_path = arg; return 0;
  case PVE_OPT_PROTECTED: pp->protect = true; return 0;
  case PVE_OPT_DISK_FORMAT: {
    /* Proxmox VE's disk formats (PVE::Storage's valid formats); the map
     * line's field is (\S*), so nothing else may go in. */
    const char *eq = strchr (arg, '=');
    if (!eq || eq == arg
        || (strcmp (eq + 1, "raw") && strcmp (eq + 1, "qcow2")
            && strcmp (eq + 1, "vmdk")))
      return cli_err_usage (err, "push", "--pve-disk-format takes "
                            "NAME=FORMAT with FORMAT raw, qcow2 or vmdk, "
                            "not '%s'", arg);
    if (pp->ndisk_format == sizeof pp->disk_format / sizeof *pp->disk_format)
      return cli_err_usage (err, "push", "too many --pve-disk-format");
    pp->disk_format[pp->ndisk_format++] = arg;
    return 0;
  }
  }
  return cli_err_usage (err, "push", "invalid option");
}

const char *
pve_push_disk_format (const struct pve_push *pp, const char *archive)
{
  size_t i;

  /* NAME as --disk takes it: drive-scsi0, .img or .img.fidx. */
  for (i = 0; i < pp->ndisk_format; i++) {
    const char *a = pp->disk_format[i], *eq = strchr (a, '=');
    size_t n = (size_t) (eq - a);
    if (strncmp (a, archive, n) == 0
        && (!archive[n] || !strcmp (archive + n, ".img.fidx")
            || !strcmp (archive + n, ".fidx")))
      return eq + 1; /* the first wins: the user's before import's */
  }
  return NULL;
}

static bool
all_digits (const char *s)
{
  if (!*s)
    return false;
  for (; *s; s++)
    if (*s < '0' || *s > '9')
      return false;
  return true;
}

int
pve_push_prepare (struct pve_push *pp, const char *type, const char *id,
                  const struct pve_disk *disks, size_t n, struct cli_err *e)
{
  struct pve_config_opts o = { 0 };
  char err[1024];
  bool dropped = false;
  size_t len = 0;

  if (pp->notes_arg && pp->notes_path)
    return cli_err_usage (e, "push", "give --notes or --notes-file, not both");
  if (!pp->config_arg
      && (pp->storage || pp->memory_set || pp->cores_set))
    return cli_err_usage (e, "push", "--pve-storage, --pve-memory and "
                          "--pve-cores go with --pve-config");
  if (pp->config_arg && strcmp (pp->config_arg, "auto") != 0
      && (pp->memory_set || pp->cores_set))
    return cli_err_usage (e, "push", "--pve-memory and --pve-cores go with "
                          "--pve-config auto; edit your config instead");
  if ((pp->config_arg || pp->fw_path) && strcmp (type, "vm") != 0)
    return cli_err_usage (e, "push", "--pve-config and --fw-config need "
                          "--backup-type vm");
  /* pve-storage's PBS plugin lists only numeric ids (list_volumes). */
  if (pp->config_arg && !all_digits (id))
    return cli_err_usage (e, "push", "backup id '%s' is not numeric: Proxmox "
                          "VE lists only vm groups named by a VMID, e.g. "
                          "--backup-id 100", id);
  if (pp->notes_arg || pp->notes_path) {
    json_t *s;
    pp->notes = pp->notes_path ? read_text (pp->notes_path, NULL, e)
                               : strdup (pp->notes_arg);
    if (!pp->notes)
      return pp->notes_path ? -1 : cli_err_set (e, "push", "out of memory");
    s = json_string (pp->notes);
    json_decref (s);
    if (!s)
      return cli_err_set (e, pp->notes_path ? pp->notes_path : "--notes",
                          "notes must be UTF-8 text without NUL bytes");
  }
  if (pp->fw_path) {
    pp->fw = read_text (pp->fw_path, &pp->fw_len, e);
    if (!pp->fw)
      return -1;
  }
  if (!pp->config_arg)
    return 0;
  o.storage = pp->storage;
  o.backup_id = id;
  o.memory_mib = pp->memory_set ? pp->memory_mib : 2048;
  o.cores = pp->cores_set ? pp->cores : 1;
  o.name = NULL;
  if (strcmp (pp->config_arg, "auto") != 0) {
    char *user = read_text (pp->config_arg, &len, e);
    if (!user)
      return -1;
    o.user_text = user;
    o.user_len = len;
    pp->config = pve_config_make (&o, disks, n, &dropped, err, sizeof err);
    free (user);
    if (!pp->config)
      return cli_err_set (e, pp->config_arg, "%s", err);
    if (dropped)
      cli_note (pp->config_arg, "snapshot, pending and special sections and "
                "lock/parent/unused lines are left out, as vzdump leaves "
                "them");
    return 0;
  }
  {
    char name[64];
    snprintf (name, sizeof name, "vm%s", id);
    o.name = name;
    pp->config = pve_config_make (&o, disks, n, NULL, err, sizeof err);
  }
  if (!pp->config)
    return cli_err_set (e, "--pve-config auto", "%s", err);
  return 0;
}

/* Encode TEXT as blob NAME, upload it and list it in M with the blob's
 * size and sha256, as proxmox-backup-client's upload_blob does. */
static int
store_blob (struct pbs_backup *b, struct pbs_manifest *m,
            const struct pbs_key *key, const char *name, const char *text,
            size_t len)
{
  uint8_t *blob = NULL, csum[32];
  unsigned mdlen = 0;
  size_t blen;
  int r = -1;

  if (pbs_blob_encode (text, len, key, true, &blob, &blen) == -1)
    return -1;
  if (EVP_Digest (blob, blen, csum, &mdlen, EVP_sha256 (), NULL) != 1) {
    free (blob);
    errno = EIO;
    return -1;
  }
  if (pbs_backup_blob (b, name, blob, blen) == 0
      && pbs_manifest_add_file (m, name, key ? "encrypt" : "none", blen, csum)
             == 0)
    r = 0;
  free (blob);
  return r;
}

int
pve_push_store (struct pve_push *pp, struct pbs_backup *b,
                struct pbs_manifest *m, const struct pbs_key *key)
{
  if (pp->config
      && store_blob (b, m, key, "qemu-server.conf.blob", pp->config,
                     strlen (pp->config))
             == -1)
    return -1;
  if (pp->fw
      && store_blob (b, m, key, "fw.conf.blob", pp->fw, pp->fw_len) == -1)
    return -1;
  if (pp->notes) {
    json_t *s = json_string (pp->notes);
    char *v = s ? json_dumps (s, JSON_ENCODE_ANY) : NULL;
    int r = v ? pbs_manifest_set_unprotected (m, "notes", v) : -1;
    json_decref (s);
    free (v);
    if (r == -1)
      return -1;
  }
  return 0;
}

int
pve_push_protect (struct pve_push *pp, struct pbs_repo *r, const char *ns,
                  const char *type, const char *id, int64_t time,
                  struct cli_err *err)
{
  char ts[21];

  if (!pp->protect)
    return 0;
  /* A server releases the finished session's snapshot lock when it has
   * handled the end of the connection, which may come a moment after our
   * side closed it; until then PBS's update_protection answers "possibly
   * running or in use".  Wait for it, briefly. */
  for (unsigned i = 0;; i++) {
    if (pbs_repo_set_protected (r, ns, type, id, time, true) == 0)
      return 0;
    if (i == 20 || !strstr (pbs_errmsg (), "possibly running or in use"))
      break;
    usleep (i < 5 ? 20000 : 200000); /* about 3 s in all */
  }
  pbs_time_to_rfc3339 (time, ts);
  return cli_err_set (err, "push", "snapshot %s/%s/%s was stored but could "
                      "not be protected: %s", type, id, ts, pbs_errmsg ());
}

void
pve_push_free (struct pve_push *pp)
{
  free (pp->config);
  free (pp->fw);
  free (pp->notes);
  pp->config = pp->fw = pp->notes = NULL;
}
