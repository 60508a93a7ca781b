/* ds-errors.c -- PBS's wording of the datastore's errors.  The datastore
 * reports plain messages and, where PBS words an error its own way, what
 * failed (pbs_ds_error_context); this file prints that as PBS's handlers
 * do (docs/pbs-protocol.md §1.6): Rust prints an io::Error as "<strerror>
 * (os error N)" and a path with {:?}, i.e. in double quotes. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "server.h"

/* The io::Error text, or the words of one of our own checks. */
static void
io_text (const struct pbs_ds_error_context *c, char *buf, size_t n)
{
  if (c->os_errno)
    snprintf (buf, n, "%s (os error %d)", strerror (c->os_errno),
              c->os_errno);
  else
    snprintf (buf, n, "%s", c->detail);
}

const char *
srv_ds_error_text (char *buf, size_t n)
{
  const struct pbs_ds_error_context *c = pbs_ds_error_context ();
  char io[400];

  if (!c) {
    snprintf (buf, n, "%s", pbs_errmsg ());
    return buf;
  }
  io_text (c, io, sizeof io);
  switch (c->failure) {
  case PBS_DS_FAIL_OS: /* "unable to create fixed index {path:?} - {err}" */
    snprintf (buf, n, "%s \"%s\" - %s", c->what, c->path, io);
    break;
  case PBS_DS_FAIL_BARE: /* create_locked_backup_dir: the bare io::Error */
    if (c->what[0])
      snprintf (buf, n, "%s: %s", c->what, io);
    else
      snprintf (buf, n, "%s", io);
    break;
  case PBS_DS_FAIL_OPEN_FILE: /* helpers.rs create_download_response */
    if (c->os_errno == ENOENT)
      snprintf (buf, n, "open file \"%s\" failed - not found", c->path);
    else
      snprintf (buf, n, "open file \"%s\" failed: %s", c->path, io);
    break;
  case PBS_DS_FAIL_OPEN_INDEX: /* FixedIndexReader::open */
    snprintf (buf, n, "Unable to open fixed index \"%s\" - %s", c->path, io);
    break;
  case PBS_DS_FAIL_LOAD_MANIFEST: /* load_manifest -> load_blob */
    snprintf (buf, n, "unable to load blob '\"%s\"' - %s", c->path, io);
    break;
  case PBS_DS_FAIL_NO_MANIFEST: /* finish: update_manifest reads it back */
    snprintf (buf, n,
              "unable to update manifest blob - unable to load blob "
              "'\"%s\"' - %s",
              c->path, io);
    break;
  case PBS_DS_FAIL_READ_CHUNK: /* reader download_chunk */
    snprintf (buf, n, "reading file \"%s\" failed: %s", c->path, io);
    break;
  case PBS_DS_FAIL_OWNER: /* check_backup_owner */
    snprintf (buf, n, "backup owner check failed (%s != %s)", c->auth_id,
              c->owner);
    break;
  case PBS_DS_FAIL_READER_OWNER: /* reader/mod.rs: a plain bail! */
    snprintf (buf, n, "backup owner check failed!");
    break;
  default: /* PBS_DS_FAIL_REUSE_CSUM: worded by backup-env.c */
    snprintf (buf, n, "%s", pbs_errmsg ());
  }
  return buf;
}
