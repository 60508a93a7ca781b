/* cli.h -- what the qcow2pbs subcommands share: error reporting, option
 * helpers and the atomic, sparse output file. */
#ifndef QCOW2PBS_CLI_H
#define QCOW2PBS_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qcowlib.h"

/* Subcommands: each parses its own argv (argv[0] = subcommand name) and
 * returns the process exit status: 0 ok, 1 error, 2 usage error. */
int cmd_info (int argc, char **argv);
int cmd_map (int argc, char **argv);
int cmd_export (int argc, char **argv);
int cmd_bitmap (int argc, char **argv);
int cmd_key (int argc, char **argv);
int cmd_push (int argc, char **argv);
int cmd_restore (int argc, char **argv);
int cmd_verify (int argc, char **argv);
int cmd_snapshots (int argc, char **argv);
int cmd_check (int argc, char **argv);

/* "qcow2pbs: CONTEXT: message" on stderr (one line).  Returns 1, so
 * `return cli_error (path, "...")` ends a command with exit status 1. */
__attribute__ ((format (printf, 2, 3))) int cli_error (const char *context,
                                                       const char *fmt, ...);
/* cli_error (CONTEXT, pbs_errmsg ()), without repeating CONTEXT when the
 * library's message already starts with it (local-store messages name
 * their path).  Returns 1. */
int cli_pbs_error (const char *context);
/* "qcow2pbs CMD: message" + "Try 'qcow2pbs CMD --help'." Returns 2. */
__attribute__ ((format (printf, 2, 3))) int cli_usage_error (const char *cmd,
                                                             const char *fmt,
                                                             ...);

/* --chain a,b,c: split into a malloc'd NULL-terminated array (oldest
 * first) stored in opts->chain/chain_len.  Returns 0 or -1 (message
 * printed).  Free with cli_free_chain. */
int cli_parse_chain (const char *arg, struct qcow_open_opts *opts);
void cli_free_chain (struct qcow_open_opts *opts);
/* Open IMAGE (or the --chain) and print "qcow2pbs: FILE: error" on
 * failure. */
struct qcow_chain *cli_open_chain (const char *image,
                                   const struct qcow_open_opts *opts);

/* Print the calling thread's last qcowlib error as "qcow2pbs: FILE: msg"
 * (CONTEXT stands in when the message names no file).  Returns 1. */
int cli_qcow_error (const char *context);

/* "text" or "json" -> false/true; anything else is a usage error (-1). */
int cli_parse_output_format (const char *s, bool *json);

/* getopt_long entries shared by every command that opens an image (include
 * <getopt.h>): --chain, --allow-absolute-data-file, --probe-backing-format.
 * Hand their codes to cli_image_option, which fills OPTS; it returns 0, or
 * -1 after printing a message (a usage error: exit 2). */
enum {
  CLI_OPT_CHAIN = 0x100,
  CLI_OPT_ALLOW_ABSOLUTE_DATA_FILE,
  CLI_OPT_PROBE_BACKING_FORMAT,
  CLI_OPT_FINGERPRINT,
  CLI_OPT_OUTPUT_FORMAT, /* CLI_OUTPUT_FORMAT_OPTION */
  CLI_OPT_FIRST_FREE = 0x180 /* commands number their own options from here */
};
#define CLI_IMAGE_OPTIONS                                                     \
  { "chain", required_argument, NULL, CLI_OPT_CHAIN },                        \
  { "allow-absolute-data-file", no_argument, NULL,                            \
    CLI_OPT_ALLOW_ABSOLUTE_DATA_FILE },                                       \
  { "probe-backing-format", no_argument, NULL, CLI_OPT_PROBE_BACKING_FORMAT }
/* Help text lines for CLI_IMAGE_OPTIONS. */
#define CLI_IMAGE_OPTIONS_HELP                                                \
  "  --chain A,B,C             open this chain (oldest first) instead of\n"  \
  "                            IMAGE and its backing names (',,' = ',')\n"    \
  "  --allow-absolute-data-file  follow an absolute external data-file name\n" \
  "  --probe-backing-format    probe a backing file without a format name\n"
int cli_image_option (int opt, const char *arg, struct qcow_open_opts *opts);

/* --output-format text|json, for cli_parse_image_args. */
#define CLI_OUTPUT_FORMAT_OPTION                                              \
  { "output-format", required_argument, NULL, CLI_OPT_OUTPUT_FORMAT }

/* The command line of a command that reads one chain (info, map, export,
 * bitmap): options, then IMAGE or --chain, then ARG when ARG_NAME is set.
 * The command fills the first part and hands its getopt_long table, which
 * holds CLI_IMAGE_OPTIONS, {"help", 'h'}, CLI_OUTPUT_FORMAT_OPTION if the
 * command has that option, and its own options numbered from
 * CLI_OPT_FIRST_FREE. */
struct cli_image_args {
  const char *cmd;      /* "info": names the command in usage errors */
  const char *usage;    /* printed by --help */
  const char *arg_name; /* "OUT.raw": one argument after IMAGE; NULL: none */
  /* Called for each option numbered from CLI_OPT_FIRST_FREE; returns 0,
   * or the exit status after printing a message (cli_usage_error's 2).
   * NULL when the command has no options of its own. */
  int (*option) (void *opaque, int opt, const char *arg);
  void *opaque;

  /* Filled by cli_parse_image_args. */
  int status;                 /* exit status when it returned -1 */
  struct qcow_open_opts opts; /* the caller frees it with cli_free_chain */
  bool json;                  /* --output-format json */
  const char *image;          /* IMAGE (borrowed from argv), NULL: --chain */
  const char *arg;            /* the ARG_NAME argument, or NULL */
  const char *context;        /* IMAGE, else the top of --chain: names
                                 errors about the chain */
};
/* Parse ARGV (argv[0] = command name) with LONGOPTS.  Returns 0, or -1
 * when the command ends here with A->status: 0 after --help, 2 after a
 * usage error (printed).  A->opts is freed already when it returns -1. */
struct option;
int cli_parse_image_args (struct cli_image_args *a, int argc, char **argv,
                          const struct option *longopts);

/* --fingerprint, taken by every command that opens a repository. */
#define CLI_REPO_OPTIONS                                                      \
  { "fingerprint", required_argument, NULL, CLI_OPT_FINGERPRINT }
#define CLI_REPO_OPTIONS_HELP                                                 \
  "  --fingerprint FP          accept a server certificate that the system\n" \
  "                            CAs reject only if its SHA-256 fingerprint\n"  \
  "                            is FP (aa:bb:...; default $PBS_FINGERPRINT)\n"

/* An output file that appears under its final name only when complete:
 * written to ".NAME.XXXXXX" in the same directory, renamed by
 * out_file_commit, removed by out_file_abort (also on SIGINT/SIGTERM, via
 * a handler that unlinks every open temporary).  PATH "-" = stdout. */
struct out_file {
  int fd;
  char *path;     /* final name, or NULL for stdout */
  char *tmp_path; /* temporary name, or NULL for stdout */
  uint64_t size;  /* logical size so far (holes included) */
  bool is_regular;
  uint64_t base;  /* file offset where writing started (stdout only) */
  uint64_t synced;   /* file offset up to which writeback was started */
  uint64_t unsynced; /* bytes written since then */
  bool no_sync;      /* commit without fsync (set after out_file_open) */
};
int out_file_open (struct out_file *f, const char *path);
/* Write LEN bytes at the current end; all-zero blocks become holes
 * (seek) in regular files, real zeros on pipes. */
int out_file_write (struct out_file *f, const void *buf, size_t len);
/* Append LEN zero bytes (a hole in a regular file). */
int out_file_zeros (struct out_file *f, uint64_t len);
int out_file_commit (struct out_file *f); /* set size, fsync, rename */
void out_file_abort (struct out_file *f);

/* Open the repository SPEC (or $PBS_REPOSITORY when SPEC is NULL).  For a
 * server: the password or token secret from PBS_PASSWORD, PBS_PASSWORD_FD,
 * PBS_PASSWORD_FILE or a TTY prompt; FINGERPRINT (or PBS_FINGERPRINT) pins
 * the certificate.  Prints "qcow2pbs: REPO: error" and returns NULL on
 * failure. */
struct pbs_repo;
struct pbs_repo *cli_open_repo (const char *spec, const char *fingerprint);

/* SIGINT, SIGTERM and SIGHUP end a push cleanly (cli-interrupt.c): the
 * first is noted, wakes pbsproto's network waits (pbs_set_cancel_fd) and
 * is reported by cli_interrupted (its number, else 0); a second one kills.
 * 0 or -1 (errno). */
int cli_catch_interrupts (void);
int cli_interrupted (void);

/* No core files, no same-user memory access: secrets pass through
 * libraries that do not wipe them.  Called first in main. */
void cli_protect_secrets (void);

/* A secret (password or passphrase), never from argv: the environment
 * variable PREFIX, else PREFIX_FD (an fd number), PREFIX_FILE (a path) or
 * PREFIX_CMD (run with /bin/sh -c, its stdout; Proxmox shell-splits it
 * instead): the first one defined wins and only its first line counts, as
 * in proxmox-backup-client.  Else, if stdin is a terminal, PROMPT on
 * /dev/tty with echo off.  E.g. PREFIX "PBS_ENCRYPTION_PASSWORD" or
 * "PBS_PASSWORD".  Returns a malloc'd string the caller wipes
 * (explicit_bzero) and frees, or NULL after printing one
 * "qcow2pbs: PREFIX: ..." line. */
char *cli_read_secret (const char *env_prefix, const char *prompt);
/* The same for a new password: a terminal asks twice (key create). */
char *cli_read_new_secret (const char *env_prefix, const char *prompt);

#endif
