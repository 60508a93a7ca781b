/* push-run.h -- the state of one push (cmd-push.c) and the files that
 * each do one part of it: options (push-options.c), the base and the
 * chunk plan (push-base.c), the chunk writer (push-writer.c), the
 * manifest and its qcow2pbs record (push-manifest.c), the output
 * (push-output.c) and the first failure of an attempt (push-fail.c).
 * Private to push. */
#ifndef QCOW2PBS_PUSH_RUN_H
#define QCOW2PBS_PUSH_RUN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cli.h"
#include "push.h"
#include "tar-index.h"
#include "pve-push.h"

struct archive {
  char *name;        /* drive-scsi0.img.fidx */
  const char *image; /* as given */
  const struct qcow_open_opts *oo; /* --disk: this disk's chain, or NULL */
  const struct tar_member *const *member; /* --from-archive: per layer */
  struct qcow_chain *chain;
  struct chain_identity ident;
  uint64_t size, nchunks;
  uint8_t *data;     /* per chunk: 1 if some byte is DATA (plan_data_chunks) */
  uint8_t *plan;     /* per chunk: enum chunk_plan, for this attempt */
  /* The base's index (checked), or NULL: parsed once, borrowed from the
   * backup session (pbs_backup_previous_index), or in a dry run our own
   * parse (BASE_OWNED). */
  const struct pbs_fidx *base;
  struct pbs_fidx *base_owned;
  bool incremental;
  char reason[512];
  uint8_t csum[32];
  uint64_t zero_chunks, reused_chunks, read_chunks, read_bytes;
  uint64_t stored_chunks, stored_bytes;
};

struct push {
  const char *repo_spec, *fingerprint, *ns, *type, *id;
  int64_t time;
  bool time_given; /* --backup-time: kept across retries */
  struct pbs_key *key;
  char *key_fp;
  bool full, dry_run, json;
  bool skip_unchanged; /* --skip-unchanged */
  char *skipped;       /* the snapshot that holds the unchanged chain */
  unsigned retries;
  struct archive *a;
  size_t na;
  uint8_t zero_digest[PBS_DIGEST_LEN];
  /* This attempt. */
  struct pbs_repo *repo;
  struct pbs_backup *b;         /* NULL in --dry-run */
  struct pbs_manifest *base_m;  /* the base's manifest, if usable */
  char base_why[512];           /* why there is no usable base */
  int64_t base_time;
  struct digest_set *known;
  /* First failure of this attempt, printed once at the end. */
  char err_ctx[256], err_msg[768];
  bool err_printed, transient;
  bool retrying; /* a previous attempt failed transiently */
  bool zero_stored; /* the zero chunk is known in this attempt */
  struct progress prog;
  struct pve_push pve; /* Proxmox VE config, notes, protection */
};

/* What the command line gave besides struct push (push-options.c). */
struct push_args {
  struct qcow_open_opts oo; /* the image options and --chain */
  const char *keyfile;
  const char *chain;        /* --chain's top layer, or NULL */
  struct push_disk *disks;  /* --disk */
  size_t ndisks;
  const char *from_archive; /* --from-archive: --disk names its members */
  struct tar_index tix;     /* that archive's members */
  int first_image;          /* argv index of the first IMAGE argument */
  struct cli_err err;       /* why push_parse_options or
                               push_name_archives stopped */
};

#define FAILED_VERIFICATION "the previous snapshot failed verification"

/* push-options.c: parse ARGV into P and ARGS.  Returns -1 to go on, or the
 * exit status to end with: 0 after --help, else ARGS->err's (not
 * printed). */
int push_parse_options (struct push *p, struct push_args *args, int argc,
                        char **argv);
/* Allocate p->a and name each archive from the disks or the IMAGE
 * arguments.  0, or -1 with ARGS->err. */
int push_name_archives (struct push *p, struct push_args *args, int argc,
                        char **argv);

/* push-fail.c: record the first failure of this attempt (-1). */
__attribute__ ((format (printf, 3, 4))) int
push_fail (struct push *p, const char *ctx, const char *fmt, ...);
int push_fail_pbs (struct push *p, const char *ctx);
int push_failed_printed (struct push *p);

/* push-base.c */
int push_group_base (struct push *p, int64_t *t, bool *failed);
int push_load_base_manifest (struct push *p, const uint8_t *blob,
                             size_t blen);
int push_load_base_index (struct push *p, struct pbs_reader *rd,
                          struct archive *a);
int push_make_plan (struct push *p, struct archive *a);
int push_check_unchanged (struct push *p);

/* push-writer.c */
int push_write_archive (struct push *p, struct archive *a);

/* push-manifest.c */
int push_write_manifest (struct push *p);

/* push-output.c */
void push_print_notes (const char *notes);
void push_print_result (struct push *p);

#endif
