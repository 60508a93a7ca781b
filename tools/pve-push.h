/* pve-push.h -- what push adds so that Proxmox VE restores a snapshot as a
 * VM: qemu-server.conf.blob, fw.conf.blob, notes and protection
 * (docs/proxmox-ve.md). */
#ifndef QCOW2PBS_PVE_PUSH_H
#define QCOW2PBS_PVE_PUSH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pbsproto.h"
#include "pve-config.h"

struct cli_err; /* cli.h */

struct pve_push {
  /* Options. */
  const char *config_arg; /* --pve-config FILE|auto, or NULL */
  const char *storage;    /* --pve-storage ID */
  unsigned memory_mib, cores;
  bool memory_set, cores_set;
  const char *fw_path;    /* --fw-config FILE */
  const char *notes_arg;  /* --notes TEXT */
  const char *notes_path; /* --notes-file FILE */
  bool protect;           /* --protected */
  /* --pve-disk-format NAME=FORMAT, as given (borrowed from argv). */
  const char *disk_format[64];
  size_t ndisk_format;
  /* Made by pve_push_prepare. */
  char *config;           /* qemu-server.conf text, or NULL */
  char *fw;               /* fw.conf text, or NULL */
  size_t fw_len;
  char *notes;            /* NULL: no notes */
};

/* Option codes (above every other command's) and their getopt entries. */
enum {
  PVE_OPT_CONFIG = 0x300,
  PVE_OPT_STORAGE,
  PVE_OPT_MEMORY,
  PVE_OPT_CORES,
  PVE_OPT_FW_CONFIG,
  PVE_OPT_NOTES,
  PVE_OPT_NOTES_FILE,
  PVE_OPT_PROTECTED,
  PVE_OPT_DISK_FORMAT,
  PVE_OPT_LAST = PVE_OPT_DISK_FORMAT
};
#define PVE_PUSH_OPTIONS                                                      \
  { "pve-config", required_argument, NULL, PVE_OPT_CONFIG },                  \
  { "pve-storage", required_argument, NULL, PVE_OPT_STORAGE },                \
  { "pve-memory", required_argument, NULL, PVE_OPT_MEMORY },                  \
  { "pve-cores", required_argument, NULL, PVE_OPT_CORES },                    \
  { "fw-config", required_argument, NULL, PVE_OPT_FW_CONFIG },                \
  { "notes", required_argument, NULL, PVE_OPT_NOTES },                        \
  { "notes-file", required_argument, NULL, PVE_OPT_NOTES_FILE },              \
  { "protected", no_argument, NULL, PVE_OPT_PROTECTED },                      \
  { "pve-disk-format", required_argument, NULL, PVE_OPT_DISK_FORMAT }
#define PVE_PUSH_OPTIONS_HELP                                                 \
  "Proxmox VE (restore the snapshot as a VM with qmrestore or the GUI):\n"    \
  "  --pve-config FILE|auto  store qemu-server.conf: FILE is your VM\n"     \
  "                     config (its disk keys must match the archives,\n"    \
  "                     e.g. scsi0 for drive-scsi0); sizes and the\n"        \
  "                     #qmdump#map lines are set for you; auto makes a\n"   \
  "                     config that boots.  Needs --backup-type vm and a\n"  \
  "                     numeric --backup-id (the VMID)\n"                    \
  "  --pve-storage ID   storage id in the drive and map lines; without\n"   \
  "                     it qmrestore puts disks on its --storage, or on\n"   \
  "                     'local' (the GUI's restore dialog asks)\n"           \
  "  --pve-memory MIB   memory of the auto config (default 2048)\n"         \
  "  --pve-cores N      cores of the auto config (default 1)\n"             \
  "  --fw-config FILE   store the VM's firewall rules as fw.conf\n"         \
  "  --notes TEXT       snapshot notes (the first line is the comment in\n" \
  "                     listings)\n"                                          \
  "  --notes-file FILE  the notes from a file\n"                            \
  "  --protected        protect the snapshot from pruning and removal\n"     \
  "  --pve-disk-format NAME=FORMAT  the format (raw, qcow2 or vmdk) in the\n"\
  "                     #qmdump#map line of disk archive NAME: the format\n"\
  "                     the restore allocates; import takes it from\n"      \
  "                     qmpbackup's <file>.config\n"

/* Take option OPT; 0, or -1 with ERR (a usage error). */
int pve_push_option (struct pve_push *pp, int opt, const char *arg,
                     struct cli_err *err);
/* Check the options against the group (a usage error), read the files and
 * build the config for DISKS (an error); 0 when ready, else -1 with ERR. */
int pve_push_prepare (struct pve_push *pp, const char *type, const char *id,
                      const struct pve_disk *disks, size_t n,
                      struct cli_err *err);
/* Upload the blobs into backup session B and list them in manifest M
 * (encrypted with KEY, like the disks); set the notes.  0, or -1 with
 * pbs_errmsg naming the file. */
int pve_push_store (struct pve_push *pp, struct pbs_backup *b,
                    struct pbs_manifest *m, const struct pbs_key *key);
/* After the session ended: protect the snapshot if asked.  0, or -1 with
 * ERR. */
int pve_push_protect (struct pve_push *pp, struct pbs_repo *r,
                      const char *ns, const char *type, const char *id,
                      int64_t time, struct cli_err *err);
/* The --pve-disk-format of archive NAME ("drive-scsi0.img.fidx"), or
 * NULL. */
const char *pve_push_disk_format (const struct pve_push *pp,
                                  const char *archive);
void pve_push_free (struct pve_push *pp);

#endif
