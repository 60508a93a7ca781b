/* pve-config.h -- the qemu-server.conf that makes a snapshot restorable as
 * a VM by Proxmox VE (docs/proxmox-ve.md says which qemu-server code reads
 * what).  Pure text functions: no I/O. */
#ifndef QCOW2PBS_PVE_CONFIG_H
#define QCOW2PBS_PVE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One disk archive of the snapshot. */
struct pve_disk {
  const char *archive; /* "drive-scsi0.img.fidx" */
  uint64_t size;       /* the disk's virtual size in bytes */
  const char *format;  /* map line's format (raw, qcow2, vmdk), or NULL */
};

struct pve_config_opts {
  /* The user's config (--pve-config FILE), or NULL to generate one. */
  const char *user_text;
  size_t user_len;
  const char *storage;   /* storage id for drive and map lines; NULL or "" */
  const char *backup_id; /* numeric: the VMID */
  const char *name;      /* generated config: "name:"; NULL: none */
  unsigned memory_mib;   /* generated config */
  unsigned cores;        /* generated config */
};

/* "drive-scsi0.img.fidx" -> "scsi0" (KEY holds 16 bytes) when the archive
 * name is one Proxmox VE maps to a config key: ide0-3, sata0-5, scsi0-30,
 * virtio0-15, efidisk0, tpmstate0. */
bool pve_disk_key (const char *archive, char key[16]);

/* Is S a Proxmox VE storage id (pve-storage-id)? */
bool pve_valid_storage_id (const char *s);

/* The qemu-server.conf for DISKS: the user's lines (main section only,
 * without lock/parent/unused lines, as vzdump writes it) with each disk's
 * size= set and exactly one "#qmdump#map:" line per archive; or a
 * generated config.  Returns malloc'd text (LF line ends, each line ending
 * in '\n'), or NULL with a one-line reason in ERR.  *DROPPED (may be NULL)
 * is set when sections or lines were left out, as vzdump leaves them. */
char *pve_config_make (const struct pve_config_opts *o,
                       const struct pve_disk *disks, size_t n,
                       bool *dropped, char *err, size_t errlen);

/* Check TEXT as qemu-server's restore reads it: every "#qmdump#map:" line
 * matches its regex and names an archive, each archive has exactly one,
 * each mapped key has a drive line, no CR.  0, or -1 with ERR. */
int pve_config_check (const char *text, const struct pve_disk *disks,
                      size_t n, char *err, size_t errlen);

#endif
