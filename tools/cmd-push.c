/* cmd-push.c -- qcow2pbs push: store qcow2 chains as one complete PBS image
 * snapshot, reusing the previous snapshot's digests for every chunk the new
 * layers did not touch -- but only with evidence (push-evidence.c) that the
 * previous snapshot was made from exactly the layers below them.
 *
 * This file opens the chains and runs the attempts: one backup session
 * each, a new one after a transient error.  The parts of an attempt live
 * in push-base.c (base and plan), push-writer.c (chunks and indexes) and
 * push-manifest.c; see push-run.h. */
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "push-run.h"

/* ------------------------------------------------------ one attempt */

static void
reset_attempt (struct push *p)
{
  size_t i;

  for (i = 0; i < p->na; i++) {
    struct archive *a = &p->a[i];
    pbs_fidx_free (a->base_owned);
    a->base_owned = NULL;
    a->base = NULL;
    a->incremental = false;
    a->reason[0] = 0;
    a->zero_chunks = a->reused_chunks = a->read_chunks = a->read_bytes = 0;
    a->stored_chunks = a->stored_bytes = 0;
  }
  pbs_backup_free (p->b);
  p->b = NULL;
  pbs_manifest_free (p->base_m);
  p->base_m = NULL;
  digest_set_free (p->known);
  p->known = NULL;
  cli_close_repo (p->repo);
  p->repo = NULL;
  p->base_why[0] = 0;
  p->err_ctx[0] = p->err_msg[0] = 0;
  p->err_printed = p->transient = false;
  p->zero_stored = false;
}

static int
attempt (struct push *p)
{
  struct pbs_reader *rd = NULL;
  uint8_t *blob = NULL;
  size_t blen, i;
  uint64_t total = 0;
  char why[512];
  bool base_failed = false;
  struct cli_err err;
  int ret = -1;

  if (cli_interrupted ()) /* during the backoff before a retry */
    return push_fail (p, "push", "interrupted");
  p->repo = cli_open_repo_create (p->repo_spec, p->fingerprint, !p->dry_run,
                                  &err);
  if (!p->repo) {
    cli_err_print (&err);
    return push_failed_printed (p);
  }
  p->known = digest_set_new ();
  if (!p->known)
    return push_fail (p, "push", "out of memory");
  if (push_check_time (p->repo, p->ns, p->type, p->id, &p->time,
                       p->time_given, p->err_ctx, sizeof p->err_ctx,
                       p->err_msg, sizeof p->err_msg) == -1)
    return -1;

  if (p->dry_run) {
    /* The base the server would pick. */
    if (push_group_base (p, &p->base_time, &base_failed) == -1) {
      push_fail_pbs (p, p->repo_spec);
      goto out;
    }
    if (p->base_time >= 0) {
      rd = pbs_reader_start (p->repo, p->ns, p->type, p->id, p->base_time);
      if (!rd) {
        push_fail_pbs (p, p->repo_spec);
        goto out;
      }
    }
  }
  else {
    p->b = pbs_backup_start (p->repo, p->ns, p->type, p->id, p->time);
    if (!p->b) {
      char *snap = push_snapshot_name (p->type, p->id, p->time);
      bool busy = pbs_errno () == EBUSY;
      push_fail_pbs (p, snap ? snap : p->id);
      /* After a broken connection the server may still hold our own
       * session's group lock until it notices: worth another try. */
      if (busy && p->retrying)
        p->transient = true;
      free (snap);
      goto out;
    }
    if (pbs_backup_notes (p->b)) /* cleanups of the local datastore */
      push_print_notes (pbs_backup_notes (p->b));
    if (pbs_backup_previous_time (p->b, &p->base_time) == -1) {
      push_fail_pbs (p, "previous_backup_time");
      goto out;
    }
    /* No base: say why when it is a failed verification.  Only a hint
     * (the server decided), so a listing error is ignored. */
    if (p->base_time < 0) {
      int64_t t;
      if (push_group_base (p, &t, &base_failed) == -1)
        base_failed = false;
    }
  }

  if (p->base_time < 0)
    snprintf (p->base_why, sizeof p->base_why, "%s",
              base_failed ? FAILED_VERIFICATION : "no previous snapshot");
  else {
    int r = p->b ? pbs_backup_download_previous (p->b, "index.json.blob",
                                                 &blob, &blen)
                 : pbs_reader_download (rd, "index.json.blob", &blob, &blen);
    if (r == -1) {
      if (pbs_error_is_transient ()) {
        push_fail_pbs (p, "index.json.blob");
        goto out;
      }
      snprintf (p->base_why, sizeof p->base_why,
                "previous manifest unreadable: %s", pbs_errmsg ());
    }
    else
      push_load_base_manifest (p, blob, blen);
  }

  if (p->base_m && push_check_unchanged (p) == 1) {
    ret = 0; /* the session ends unfinished: no snapshot */
    goto out;
  }
  for (i = 0; i < p->na; i++) {
    if (push_load_base_index (p, rd, &p->a[i]) == -1
        || push_make_plan (p, &p->a[i]) == -1)
      goto out;
    total += p->a[i].size;
  }
  progress_init (&p->prog, "push", total);
  for (i = 0; i < p->na; i++)
    if (push_write_archive (p, &p->a[i]) == -1)
      goto out;
  progress_end (&p->prog);

  /* The record must describe what was read: refuse if a layer changed
   * while we read it. */
  for (i = 0; i < p->na; i++)
    if (identity_recheck (&p->a[i].ident, why, sizeof why) == -1) {
      push_fail (p, p->a[i].image, "%s", why);
      goto out;
    }
  if (p->b) {
    if (cli_interrupted ()) { /* the last moment to leave no snapshot */
      push_fail (p, "push", "interrupted");
      goto out;
    }
    if (push_write_manifest (p) == -1)
      goto out;
    if (pbs_backup_finish (p->b) == -1) {
      push_fail_pbs (p, "finish");
      goto out;
    }
  }
  ret = 0;
out:
  free (blob);
  pbs_reader_free (rd);
  return ret;
}

static int
open_archives (struct push *p, struct qcow_open_opts *oo)
{
  struct cli_err err;
  size_t i, j;

  for (i = 0; i < p->na; i++) {
    struct archive *a = &p->a[i];
    for (j = 0; j < i; j++)
      if (strcmp (p->a[j].name, a->name) == 0)
        return cli_error (a->name, "archive name given twice"), -1;
    if (a->oo) { /* --disk: its own chain, the command's open flags */
      struct qcow_open_opts mine = *a->oo;
      mine.flags |= oo->flags;
      a->chain = cli_open_chain (NULL, &mine, &err);
    }
    else
      a->chain = cli_open_chain (oo->chain_len ? NULL : a->image, oo, &err);
    if (!a->chain)
      return cli_err_print (&err), -1;
    cli_warn_lone_incremental (a->chain);
    a->size = qcow_virtual_size (a->chain);
    if (a->size == 0)
      return cli_error (a->image, "disk has size 0"), -1;
    if (identity_collect_members (a->chain, &a->ident, a->image, a->member,
                                  &err) == -1
        || plan_data_chunks (a->chain, a->image, &a->data, &a->nchunks,
                             &err)
               == -1)
      return cli_err_print (&err), -1;
    a->plan = calloc (a->nchunks, 1);
    if (!a->plan)
      return cli_error (a->image, "out of memory"), -1;
  }
  return 0;
}

int
cmd_push (int argc, char **argv)
{
  struct push p = { 0 };
  struct push_args args = { 0 };
  unsigned attempt_no;
  size_t i;
  int st, ret = 1;

  /* Every chunk needs a few 4 MiB buffers (encoded blob, the store's
   * copy); served by mmap each time they cost page faults on every use.
   * Keeping them in the heap makes the pipeline noticeably faster. */
  mallopt (M_MMAP_THRESHOLD, 64 << 20);
  mallopt (M_TRIM_THRESHOLD, 128 << 20);
  p.type = "vm";
  p.ns = "";
  p.retries = 3;
  p.time = (int64_t) time (NULL);
  if ((st = push_parse_options (&p, &args, argc, argv)) != -1) {
    /* Whatever the parser had gathered by then (disks, an archive's
     * index, the chain) goes with it. */
    push_disks_free (args.disks, args.ndisks);
    tar_index_free (&args.tix);
    cli_free_chain (&args.oo);
    return st ? cli_err_print (&args.err) : 0;
  }
  if (push_name_archives (&p, &args, argc, argv) != 0) {
    ret = cli_err_print (&args.err);
    goto out;
  }
  if (args.keyfile) {
    p.key = push_load_key (args.keyfile, &args.err);
    if (!p.key) {
      cli_err_print (&args.err);
      goto out;
    }
    p.key_fp = push_key_fingerprint (p.key);
  }
  pbs_zero_chunk_digest (p.key, p.zero_digest);
  if (open_archives (&p, &args.oo) == -1)
    goto out;
  {
    struct pve_disk *pd = calloc (p.na, sizeof *pd);
    if (!pd) {
      cli_error ("push", "out of memory");
      goto out;
    }
    for (i = 0; i < p.na; i++) {
      pd[i].archive = p.a[i].name;
      pd[i].size = p.a[i].size;
      pd[i].format = pve_push_disk_format (&p.pve, p.a[i].name);
    }
    st = pve_push_prepare (&p.pve, p.type, p.id, pd, p.na, &args.err);
    free (pd);
    if (st != 0) {
      ret = cli_err_print (&args.err);
      goto out;
    }
  }

  if (cli_catch_interrupts () == -1) {
    cli_error ("push", "cannot catch signals: %s", strerror (errno));
    goto out;
  }
  for (attempt_no = 0;; attempt_no++) {
    if (attempt (&p) == 0)
      break;
    if (cli_interrupted ()) {
      bool printed = p.err_printed; /* e.g. by the repository's open */
      reset_attempt (&p); /* ends the session: no snapshot stays */
      if (!printed)
        cli_error ("push", "interrupted; no snapshot was made");
      ret = 128 + cli_interrupted ();
      goto out;
    }
    if (!p.transient || attempt_no >= p.retries || !p.repo
        || pbs_repo_is_local (p.repo)) {
      if (p.err_msg[0] && !p.err_ctx[0]) /* the message names its file */
        cli_error_line (p.err_msg);
      else if (p.err_msg[0])
        cli_error (p.err_ctx, "%s", p.err_msg);
      goto out;
    }
    if (isatty (STDERR_FILENO) && !cli_quiet ())
      fprintf (stderr, "push: %s%s%s; retrying\n", p.err_ctx,
               p.err_ctx[0] ? ": " : "", p.err_msg);
    reset_attempt (&p);
    p.retrying = true;
    sleep (1u << (attempt_no < 5 ? attempt_no : 5)); /* a signal ends it */
    /* A new session, a new backup-time (unless one was given), as a new
     * run of proxmox-backup-client would have: a server that crashed
     * keeps the old session's unfinished directory, and the same time
     * again would only get "backup directory already exists". */
    if (!p.time_given) {
      int64_t now = (int64_t) time (NULL);
      p.time = now > p.time ? now : p.time + 1;
    }
  }
  /* Protection needs the snapshot lock that the session holds. */
  pbs_backup_free (p.b);
  p.b = NULL;
  if (!p.dry_run && !p.skipped
      && pve_push_protect (&p.pve, p.repo, p.ns, p.type, p.id, p.time,
                           &args.err)
             != 0) {
    cli_err_print (&args.err);
    goto out;
  }
  push_print_result (&p);
  ret = 0;
out:
  pve_push_free (&p.pve);
  reset_attempt (&p);
  for (i = 0; i < p.na; i++) {
    free (p.a[i].name);
    qcow_close (p.a[i].chain);
    identity_free (&p.a[i].ident);
    free (p.a[i].data);
    free (p.a[i].plan);
  }
  free (p.a);
  push_disks_free (args.disks, args.ndisks);
  tar_index_free (&args.tix);
  cli_free_chain (&args.oo);
  pbs_key_free (p.key);
  free (p.key_fp);
  free (p.skipped);
  return ret;
}
