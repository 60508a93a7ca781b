/* cli.h -- what the qcow2pbs subcommands share: error reporting, option
 * helpers and the atomic, sparse output file. */
#ifndef QCOW2PBS_CLI_H
#define QCOW2PBS_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

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
int cmd_import (int argc, char **argv);
int cmd_check (int argc, char **argv);

/* "qcow2pbs: CONTEXT: message" on stderr (one line).  Returns 1, so
 * `return cli_error (path, "...")` ends a command with exit status 1. */
__attribute__ ((format (printf, 2, 3))) int cli_error (const char *context,
                                                       const char *fmt, ...);
/* A helper's error, returned for the cmd_* layer to print: helpers fill
 * it (cli_err_set & co., -1) and print nothing; the command prints it
 * once (cli_err_print, which returns the exit status it carries) -- or
 * keeps it, e.g. while a retry may still help.  Only cmd-*.c and
 * cli-errors.c print (tests/cli/test-cli-idiom.sh checks it).  The buffers
 * hold a few whole paths: a message is never cut. */
struct cli_err {
  char ctx[4352], msg[16384];
  int status;  /* exit status: 1 bad input, 2 usage error */
  bool usage;  /* a usage line: "qcow2pbs CMD: msg; try 'qcow2pbs CMD
                  --help'" (CTX = CMD), as cli_usage_error */
};
/* "CONTEXT: message", exit status 1. */
__attribute__ ((format (printf, 3, 4))) int
cli_err_set (struct cli_err *e, const char *context, const char *fmt, ...);
/* A usage error of command CMD (cli_usage_error's line), exit status 2. */
__attribute__ ((format (printf, 3, 4))) int
cli_err_usage (struct cli_err *e, const char *cmd, const char *fmt, ...);
/* A bad option value: the plain "CONTEXT: message" line (CONTEXT names
 * the option, "--chain"), but exit status 2. */
__attribute__ ((format (printf, 3, 4))) int
cli_err_arg (struct cli_err *e, const char *context, const char *fmt, ...);
/* The last pbsproto error, as cli_pbs_error prints it.  Returns -1. */
int cli_err_pbs (struct cli_err *e, const char *context);
/* getopt_long's bad option, as cli_getopt_error prints it.  Returns -1. */
struct option;
int cli_err_getopt (struct cli_err *e, const char *cmd, int opt, char **argv,
                    const struct option *longopts);
/* No message (yet): cli_err_print prints nothing and returns 1. */
void cli_err_clear (struct cli_err *e);
/* Print E in the current mode; returns its exit status (1 or 2). */
int cli_err_print (const struct cli_err *e);
/* One "qcow2pbs: CONTEXT: message" line on stderr that is no error (what
 * a command left out, e.g.), escaped as cli_error's. */
__attribute__ ((format (printf, 2, 3))) void cli_note (const char *context,
                                                       const char *fmt, ...);
/* One "CMD: message" line on stderr: what command CMD tells while it
 * runs ("push: waiting for the next second"), escaped as cli_error's. */
__attribute__ ((format (printf, 2, 3))) void cli_cmd_note (const char *cmd,
                                                           const char *fmt,
                                                           ...);
/* One "qcow2pbs: warning: ..." line on stderr, control characters shown
 * as '?': the one way a helper's warning (not an error) is printed. */
__attribute__ ((format (printf, 1, 2))) void cli_warning (const char *fmt,
                                                          ...);
/* The last qcowlib error into E: its message names the file already
 * ("top.qcow2: L2 entry ..."), so it becomes the whole line (empty ctx)
 * and CONTEXT is only for a message that names none, as in
 * cli_qcow_error.  Returns -1. */
int cli_err_qcow (struct cli_err *e, const char *context);
/* A line "CONTEXT: message" already formatted (e.g. a library message
 * that names its file), printed like cli_error.  Returns 1. */
int cli_error_line (const char *line);
/* In JSON mode (set by cli_parse_output_format, or by main when the
 * command line holds --output-format json) every error above is one JSON
 * object on stderr instead of a text line (cli-errors.c). */
void cli_set_json_errors (bool on);
bool cli_json_errors (void);
/* cli_error (CONTEXT, pbs_errmsg ()): CONTEXT is the name the failed call
 * was given (pbsproto's messages never start with it).  Returns 1. */
int cli_pbs_error (const char *context);
/* Untrusted text (names from a manifest or a server, paths from an image)
 * for text output: control characters as \xNN / \u00NN, '\\' doubled
 * (cli-escape.c).  cli_escape returns a malloc'd copy (NULL: out of
 * memory); cli_fputs_escaped writes it to F.  The cli_*error functions
 * escape their whole line already. */
char *cli_escape (const char *s);
void cli_fputs_escaped (const char *s, FILE *f);


/* "qcow2pbs CMD: message; try 'qcow2pbs CMD --help'" (one line).
 * Returns 2. */
__attribute__ ((format (printf, 2, 3))) int cli_usage_error (const char *cmd,
                                                             const char *fmt,
                                                             ...);

/* Report what getopt_long returned for a bad option (OPT '?' or ':'): one
 * usage line naming the option as written.  Commands set opterr = 0 and
 * start their short options with ':' so that getopt prints nothing itself
 * and a missing argument is told apart.  Returns 2. */
struct option;
int cli_getopt_error (const char *cmd, int opt, char **argv,
                      const struct option *longopts);

/* --quiet (-q) and --progress, for the commands that show progress (push,
 * restore, verify).  Default: a progress line rewritten in place when
 * stderr is a terminal, nothing otherwise.  --progress: the same on a
 * terminal, else one line every 10 s and one at the end (logs,
 * journald).  --quiet: no progress and no informational output; errors
 * (and JSON output asked for) are still printed.  (push-progress.c) */
enum cli_progress_mode { CLI_PROGRESS_AUTO, CLI_PROGRESS_QUIET,
                         CLI_PROGRESS_LINES };
void cli_set_progress_mode (enum cli_progress_mode m);
bool cli_quiet (void);
#define CLI_PROGRESS_OPTIONS                                                  \
  { "quiet", no_argument, NULL, 'q' },                                        \
  { "progress", no_argument, NULL, CLI_OPT_PROGRESS }
#define CLI_PROGRESS_OPTIONS_HELP                                             \
  "  -q, --quiet               print no progress and no informational\n"    \
  "                            lines (errors and results still)\n"         \
  "  --progress                progress also when stderr is not a terminal:\n" \
  "                            one line every 10 s and at the end\n"

/* --chain a,b,c: split into a malloc'd NULL-terminated array (oldest
 * first) stored in opts->chain/chain_len.  Returns 0 or -1 (ERR, exit
 * status 2).  Free with cli_free_chain. */
int cli_parse_chain (const char *arg, struct qcow_open_opts *opts,
                     struct cli_err *err);
void cli_free_chain (struct qcow_open_opts *opts);
/* With --chain, an IMAGE given too must be the top of that chain (the same
 * file): else the chain would be read and IMAGE silently dropped.  Returns
 * 0, or -1 with ERR (exit status 2: not the top, 1: IMAGE cannot be
 * looked at). */
int cli_check_chain_top (const char *cmd, const char *image,
                         const struct qcow_open_opts *opts,
                         struct cli_err *err);
/* Open IMAGE (or the --chain); NULL with "FILE: error" in ERR on
 * failure. */
struct qcow_chain *cli_open_chain (const char *image,
                                   const struct qcow_open_opts *opts,
                                   struct cli_err *err);

/* cli-chain-names.c: what qmpbackup's file names (FULL-, INC-, DIFF-,
 * COPY-<unixtime>-DISK) say about layers that have no backing name.
 * cli_check_chain_names refuses a full backup above other layers, layers
 * out of time order or of another disk, and an INC above a layer when
 * its folder holds a FULL/INC of that disk made between them (returns -1
 * with ERR; 0 when fine; run by cli_open_chain).
 * cli_warn_lone_incremental prints one warning line (cli_warning) when
 * the chain's base looks like an incremental by its name (qmpbackup's, or
 * a word like "incr"): a disk of changes only. */
int cli_check_chain_names (struct qcow_chain *c, struct cli_err *err);
void cli_warn_lone_incremental (struct qcow_chain *c);

/* (cli-errors.c) Print the calling thread's last qcowlib error as
 * "qcow2pbs: FILE: msg" (CONTEXT stands in when the message names no
 * file).  Returns 1. */
int cli_qcow_error (const char *context);

/* "text" or "json" -> false/true; anything else is a usage error (-1).
 * "json" also turns on JSON errors (cli_set_json_errors). */
int cli_parse_output_format (const char *s, bool *json);

/* getopt_long entries shared by every command that opens an image (include
 * <getopt.h>): --chain, --allow-absolute-data-file, --probe-backing-format,
 * --force-share (-U).
 * Hand their codes to cli_image_option, which fills OPTS; it returns 0, or
 * -1 with ERR (a usage error: exit status 2). */
enum {
  CLI_OPT_CHAIN = 0x100,
  CLI_OPT_ALLOW_ABSOLUTE_DATA_FILE,
  CLI_OPT_PROBE_BACKING_FORMAT,
  CLI_OPT_ALLOW_BACKING_DIR,
  CLI_OPT_FINGERPRINT,
  CLI_OPT_OUTPUT_FORMAT, /* CLI_OUTPUT_FORMAT_OPTION */
  CLI_OPT_FORCE_SHARE,   /* --force-share, also -U (CLI_IMAGE_SHORTOPTS) */
  CLI_OPT_PROGRESS,      /* CLI_PROGRESS_OPTIONS */
  CLI_OPT_FIRST_FREE = 0x180 /* commands number their own options from here */
};
#define CLI_IMAGE_OPTIONS                                                     \
  { "chain", required_argument, NULL, CLI_OPT_CHAIN },                        \
  { "allow-absolute-data-file", no_argument, NULL,                            \
    CLI_OPT_ALLOW_ABSOLUTE_DATA_FILE },                                       \
  { "probe-backing-format", no_argument, NULL, CLI_OPT_PROBE_BACKING_FORMAT }, \
  { "force-share", no_argument, NULL, CLI_OPT_FORCE_SHARE },                  \
  { "allow-backing-dir", required_argument, NULL, CLI_OPT_ALLOW_BACKING_DIR }
/* Short options of CLI_IMAGE_OPTIONS, for getopt_long's string: -U
 * (qemu-img's name for --force-share); hand 'U' to cli_image_option. */
#define CLI_IMAGE_SHORTOPTS "U"
/* Help text lines for CLI_IMAGE_OPTIONS. */
#define CLI_IMAGE_OPTIONS_HELP                                                \
  "  --chain A,B,C             open this chain (oldest first, ',,' = ','):\n" \
  "                            for layers without backing names; a layer\n"  \
  "                            that has one must name the layer before it;\n" \
  "                            an IMAGE given too must be the top\n"          \
  "  --allow-absolute-data-file  follow an absolute external data-file name\n" \
  "  --probe-backing-format    probe a backing file without a format name\n"  \
  "  -U, --force-share         read images that a running QEMU holds open\n"   \
  "                            for writing (qemu-img's -U; the copy may be\n"   \
  "                            inconsistent); without it they are refused\n"   \
  "  --allow-backing-dir DIR   also follow backing files in DIR (repeatable;\n" \
  "                            default: only the top image's directory)\n"
int cli_image_option (int opt, const char *arg, struct qcow_open_opts *opts,
                      struct cli_err *err);

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
   * or -1 with ERR (e.g. cli_err_usage).  NULL when the command has no
   * options of its own. */
  int (*option) (void *opaque, int opt, const char *arg,
                 struct cli_err *err);
  void *opaque;

  /* Filled by cli_parse_image_args. */
  int status;                 /* exit status when it returned -1 */
  struct cli_err err;         /* why, when STATUS is not 0 */
  struct qcow_open_opts opts; /* the caller frees it with cli_free_chain */
  bool json;                  /* --output-format json */
  const char *image;          /* IMAGE (borrowed from argv), NULL: --chain */
  const char *arg;            /* the ARG_NAME argument, or NULL */
  const char *context;        /* IMAGE, else the top of --chain: names
                                 errors about the chain */
};
/* Parse ARGV (argv[0] = command name) with LONGOPTS.  Returns 0, or -1
 * when the command ends here with A->status: 0 after --help, else the
 * status of A->err (not printed: the command prints it with
 * cli_err_print).  A->opts is freed already when it returns -1. */
int cli_parse_image_args (struct cli_image_args *a, int argc, char **argv,
                          const struct option *longopts);

/* --fingerprint, taken by every command that opens a repository. */
#define CLI_REPO_OPTIONS                                                      \
  { "fingerprint", required_argument, NULL, CLI_OPT_FINGERPRINT }
/* Help lines for --repository and --ns, which every command that opens a
 * repository has in its own table. */
#define CLI_REPO_ARGS_HELP                                                    \
  "  --repository REPO         a local datastore directory, or\n"            \
  "                            [USER@REALM@]HOST:STORE\n"                     \
  "                            (default $PBS_REPOSITORY)\n"                   \
  "  --ns NS                   namespace, e.g. a/b (default: the root)\n"
#define CLI_REPO_OPTIONS_HELP                                                 \
  "  --fingerprint FP          accept a server certificate that the system\n" \
  "                            CAs reject only if its SHA-256 fingerprint\n"  \
  "                            is FP (aa:bb:...; default $PBS_FINGERPRINT)\n"

/* Where restore and export write a disk (out-file.c has the rules): a new
 * or --force'd regular file through ".NAME.XXXXXX" renamed by
 * out_file_commit (removed by out_file_abort, and on SIGINT/SIGTERM/SIGHUP
 * by a handler that also prints "CMD: interrupted" and exits 128+signal),
 * a block device written in place, a FIFO or character device streamed.
 * PATH "-" = stdout.  Every failure leaves its message for
 * out_file_error. */
enum out_kind { OUT_NEW_FILE, OUT_STDOUT_FILE, OUT_STREAM, OUT_DEVICE };
struct out_file_opts {
  const char *cmd;    /* "restore": names the command when interrupted */
  uint64_t disk_size; /* a block device must hold this much */
  bool force;         /* replace a regular file, overwrite a block device */
  bool discard;       /* BLKDISCARD a device's zero ranges before zeroing */
  bool no_sync;       /* commit without fsync */
};
struct out_file {
  int fd;
  enum out_kind kind;
  char *path;     /* final name of a new file, else NULL */
  char *tmp_path; /* its temporary name, else NULL */
  bool replaces;  /* the new file replaces an existing one (--force) */
  bool discard, no_sync;
  uint64_t size;  /* bytes of disk so far (zero ranges included) */
  uint64_t base;  /* file offset where the disk starts (stdout file) */
  uint64_t old_end; /* stdout file: its size when opened */
  uint64_t written; /* bytes really written (write/pwrite) */
  uint64_t zeroed;  /* bytes made zero without writing them */
  uint64_t synced;  /* file offset up to which writeback was started */
  uint64_t synced_written; /* WRITTEN then */
  char err[4200];
};
int out_file_open (struct out_file *f, const char *path,
                   const struct out_file_opts *o);
/* Write LEN bytes of disk; zero runs become holes, punched or zeroed
 * ranges where that reads back as zeros, written zeros elsewhere. */
int out_file_write (struct out_file *f, const void *buf, size_t len);
/* LEN zero bytes of disk. */
int out_file_zeros (struct out_file *f, uint64_t len);
/* Set the size, fsync, rename (new file) or fsync (device). */
int out_file_commit (struct out_file *f);
void out_file_abort (struct out_file *f);
/* Install that signal handler now, before OUT is opened (a restore
 * fetches its index first): "CMD: interrupted; OUT was not written".
 * 0 or -1 (errno). */
int out_file_catch_signals (const char *cmd, const char *path);
/* Why the last out_file call failed (one line, without the path). */
const char *out_file_error (const struct out_file *f);

/* Open the repository SPEC (or $PBS_REPOSITORY when SPEC is NULL).  For a
 * server: the password or token secret from PBS_PASSWORD, PBS_PASSWORD_FD,
 * PBS_PASSWORD_FILE or a TTY prompt; FINGERPRINT (or PBS_FINGERPRINT) pins
 * the certificate.  NULL with "REPO: error" in ERR on failure. */
struct pbs_repo;
struct pbs_repo *cli_open_repo (const char *spec, const char *fingerprint,
                                struct cli_err *err);
/* The same; CREATE: a local datastore is made if missing (a real push
 * only: the other commands refuse "PATH: no datastore here"). */
struct pbs_repo *cli_open_repo_create (const char *spec,
                                       const char *fingerprint, bool create,
                                       struct cli_err *err);
/* The same with the server's SECRET already read (NULL: read it as
 * above). */
struct pbs_repo *cli_open_repo_with (const char *spec,
                                     const char *fingerprint,
                                     const char *secret, bool create,
                                     struct cli_err *err);
/* Close R; with QCOW2PBS_STATS=1 first print "bytes_sent=N" (what went
 * to the server) on stderr. */
void cli_close_repo (struct pbs_repo *r);

/* SIGINT, SIGTERM and SIGHUP end a push cleanly (cli-interrupt.c): the
 * first is noted, wakes pbsproto's network waits (through cli_cancel_fd,
 * which cli_open_repo passes in the options) and is reported by
 * cli_interrupted (its number, else 0); a second one kills.  0 or -1
 * (errno). */
int cli_catch_interrupts (void);
int cli_cancel_fd (void); /* -1 before cli_catch_interrupts */
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
 * (explicit_bzero) and frees, or NULL with "PREFIX: ..." in ERR. */
char *cli_read_secret (const char *env_prefix, const char *prompt,
                       struct cli_err *err);
/* The same for a new password: a terminal asks twice (key create). */
char *cli_read_new_secret (const char *env_prefix, const char *prompt,
                           struct cli_err *err);

#endif
