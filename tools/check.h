/* check.h -- what `qcow2pbs check` is built from: the table of distinct
 * chunks the checked snapshots reference (each proved once), and the
 * parallel chunk prover over reader sessions.
 *
 * The table keeps every chunk's verdict and the bad ones' reasons, and
 * cmd-check.c keeps where each bad chunk is used, so that a later
 * `check --repair` can act on the same lists. */
#ifndef QCOW2PBS_CHECK_H
#define QCOW2PBS_CHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pbsproto.h"

enum check_state { CHUNK_UNCHECKED = 0, CHUNK_OK, CHUNK_BAD };

/* One distinct chunk: a digest with the length and crypt mode its
 * indexes expect.  Two indexes that expect different lengths for one
 * digest make two entries (at most one of them can be right). */
struct check_chunk {
  uint8_t digest[PBS_DIGEST_LEN];
  uint32_t len;
  bool encrypted;
  uint8_t state; /* enum check_state */
  char *why;     /* CHUNK_BAD: what is wrong (malloc'd) */
};

struct chunk_table {
  struct check_chunk *chunk; /* dense, in order of first sight */
  size_t n, cap;
  uint32_t *slot; /* open addressing: 1 + index into CHUNK, 0 = empty */
  size_t nslots;  /* power of two */
};

/* Index of the entry for (DIGEST, LEN, ENCRYPTED), added (unchecked) if
 * new.  -1 on ENOMEM.  New entries are appended, so those first seen in a
 * snapshot form the range [n before, n after). */
int64_t chunk_table_get (struct chunk_table *t,
                         const uint8_t digest[PBS_DIGEST_LEN], uint32_t len,
                         bool encrypted);
void chunk_table_free (struct chunk_table *t);

/* Prove the chunks T->chunk[FROM..TO) with NREADERS reader sessions of
 * one snapshot (each has downloaded the snapshot's indexes), one thread
 * per session.  KEY decrypts and digests encrypted chunks.  Each entry
 * ends CHUNK_OK or CHUNK_BAD (with why).  *DONE_BYTES grows as chunks are
 * proved (read it for progress; updated atomically).  Returns 0, or -1
 * when the repository could not be asked (transport failure,
 * interruption): then ERR (ERRLEN bytes) says why and the verdicts of
 * unfinished entries stay CHUNK_UNCHECKED. */
int check_chunks (struct chunk_table *t, size_t from, size_t to,
                  struct pbs_reader **readers, unsigned nreaders,
                  const struct pbs_key *key, uint64_t *done_bytes,
                  void (*tick) (void *opaque), void *opaque, char *err,
                  size_t errlen);

#endif
