/* nbdkit-qcow2pbs-plugin.c -- serve one archive of a PBS snapshot as a
 * read-only NBD disk, on the library code `qcow2pbs restore` uses.
 *
 *   nbdkit qcow2pbs repository=REPO snapshot=vm/100/TIME [archive=drive-scsi0]
 *          [ns=NS] [keyfile=FILE] [fingerprint=FP] [cache=64M]
 *
 * Secrets never come from the command line: the repository password or
 * token secret from PBS_PASSWORD (or its _FD/_FILE/_CMD forms), a key
 * file's password from PBS_ENCRYPTION_PASSWORD, as for the tool
 * (tools/cli-password.c, shared, not copied).
 *
 * Chunks are downloaded when first read, their digest and length checked
 * before any byte is served, and kept decoded in a bounded LRU cache
 * (cache=, default 64 MiB).  Full zero chunks are never downloaded: they
 * read as zeros and are reported as zero holes by .extents, so nbdcopy,
 * qemu-img convert and qemu-img map skip them.  A read that continues
 * the previous one of its stream (nbdcopy reads several regions at once)
 * queues the next chunks for the readahead threads.
 *
 * Threads: a pool of NREADERS reader sessions, each used by one thread
 * at a time, so that several chunks are read, checked and decoded at once
 * (one session under one lock was the bottleneck: nbdcopy ran at 0.6x the
 * speed of restore).  Two requests for one chunk wait for one download
 * (a C_LOADING cache entry).  The cache is under CACHE_LOCK, the pool
 * under POOL_LOCK, the readahead queue under RA_LOCK; downloads, decoding
 * and digesting run outside all of them. */
#define NBDKIT_API_VERSION 2
#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nbdkit-plugin.h>

#include "cli.h"
#include "push.h"

#define CHUNK PBS_CHUNK_SIZE
/* Sessions: chunks fetched at once (fewer if a server refuses more).  One
 * more than the readahead threads, so that a read the readahead did not
 * foresee does not wait for all of them. */
#define NREADERS 3
#define NRA_THREADS (NREADERS - 1)
#define RA_CHUNKS 4 /* chunks read ahead of a sequential stream, at most */
#define NSTREAMS 8  /* sequential streams followed at once (multi-conn) */

/* Parameters. */
static char *repository, *snapshot, *archive, *ns, *keyfile, *fingerprint;
static int64_t cache_max = 64 << 20;

/* The snapshot, set up in .get_ready. */
static struct pbs_key *key;
static struct pbs_repo *repo;
static struct pbs_fidx *idx;
static bool encrypted;
static uint8_t zero_digest[PBS_DIGEST_LEN];
static char *snap_type, *snap_id;
static int64_t snap_time;

/* The session pool: POOL[i] is used by one thread while BUSY[i]; NULL
 * until first needed (or after it broke). */
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pool_cond = PTHREAD_COND_INITIALIZER;
static struct pbs_reader *pool[NREADERS];
static bool busy[NREADERS];
static int npool; /* sessions opened in get_ready: 1 to NREADERS */

/* ------------------------------------------------------------ config */

static void
qp_unload (void)
{
  free (repository);
  free (snapshot);
  free (archive);
  free (ns);
  free (keyfile);
  free (fingerprint);
}

/* 4 MiB chunk buffers come and go on many threads: with glibc's default
 * of 8 arenas a core they pile up in per-thread arenas, and the RSS grew
 * to ~250 MiB whatever cache= says (measured with nbdcopy).  A fixed 1 MiB
 * mmap threshold kept the RSS down but cost an mmap, a munmap and 2048
 * page faults a chunk (half of nbdkit's time, perf).  One arena reuses
 * the freed buffers: with the 64 MiB cache, 1 GiB through nbdcopy peaks
 * at ~78 MiB (two arenas: 100-115 MiB, the same speed). */
static void
qp_load (void)
{
  mallopt (M_ARENA_MAX, 1);
}

static int
set_string (char **dst, const char *value)
{
  free (*dst);
  *dst = strdup (value);
  if (!*dst) {
    nbdkit_error ("strdup: %m");
    return -1;
  }
  return 0;
}

static int
qp_config (const char *k, const char *v)
{
  if (strcmp (k, "repository") == 0)
    return set_string (&repository, v);
  if (strcmp (k, "snapshot") == 0)
    return set_string (&snapshot, v);
  if (strcmp (k, "archive") == 0)
    return set_string (&archive, v);
  if (strcmp (k, "ns") == 0)
    return set_string (&ns, v);
  if (strcmp (k, "keyfile") == 0)
    return set_string (&keyfile, v);
  if (strcmp (k, "fingerprint") == 0)
    return set_string (&fingerprint, v);
  if (strcmp (k, "cache") == 0) {
    cache_max = nbdkit_parse_size (v);
    if (cache_max == -1)
      return -1;
    if (cache_max < (int64_t) CHUNK) {
      nbdkit_error ("cache=%s: at least 4M (one chunk)", v);
      return -1;
    }
    return 0;
  }
  if (strcmp (k, "password") == 0 || strcmp (k, "secret") == 0) {
    nbdkit_error ("%s=: secrets are never taken from the command line; "
                  "set PBS_PASSWORD (or PBS_PASSWORD_FILE, _FD, _CMD) and "
                  "PBS_ENCRYPTION_PASSWORD", k);
    return -1;
  }
  nbdkit_error ("unknown parameter '%s'", k);
  return -1;
}

static int
qp_config_complete (void)
{
  struct cli_err err;
  char *a;

  if (!snapshot) {
    nbdkit_error ("snapshot=TYPE/ID/TIME is required");
    return -1;
  }
  if (!repository && !getenv ("PBS_REPOSITORY")) {
    nbdkit_error ("repository= (or PBS_REPOSITORY) is required");
    return -1;
  }
  if (ns && !pbs_valid_ns (ns)) {
    nbdkit_error ("ns=%s: not a valid namespace", ns);
    return -1;
  }
  a = push_archive_name (archive ? archive : "drive-scsi0");
  if (!a) {
    nbdkit_error ("archive=%s: not a valid archive name", archive);
    return -1;
  }
  free (archive);
  archive = a;
  if (push_parse_snapshot (snapshot, &snap_type, &snap_id, &snap_time, &err)
      == -1) {
    cli_err_print (&err);
    nbdkit_error ("snapshot=%s: not TYPE/ID/TIME", snapshot);
    return -1;
  }
  return 0;
}

#define qp_config_help                                                       \
  "repository=REPO      datastore path or [USER@REALM[!TOKEN]@]HOST[:PORT]:STORE\n" \
  "snapshot=TYPE/ID/TIME  (required)\n"                                      \
  "archive=NAME         default drive-scsi0\n"                               \
  "ns=NS                namespace\n"                                         \
  "keyfile=FILE         key of an encrypted snapshot\n"                      \
  "fingerprint=FP       pin the server certificate\n"                        \
  "cache=SIZE           decoded chunk cache, default 64M\n"                  \
  "Secrets: PBS_PASSWORD[_FD|_FILE|_CMD], PBS_ENCRYPTION_PASSWORD[...]."

/* A reader session with the index downloaded (a server allows a chunk
 * only after an index naming it).  QUIET: a failure is only a debug
 * message. */
static struct pbs_reader *
open_reader (bool quiet)
{
  struct pbs_reader *rd;
  uint8_t *data;
  size_t len;
  void (*say) (const char *, ...) = quiet ? nbdkit_debug : nbdkit_error;

  rd = pbs_reader_start (repo, ns ? ns : "", snap_type, snap_id, snap_time);
  if (!rd) {
    say ("%s: %s", snapshot, pbs_errmsg ());
    return NULL;
  }
  if (pbs_reader_download (rd, archive, &data, &len) == -1) {
    say ("%s: %s: %s", snapshot, archive, pbs_errmsg ());
    pbs_reader_free (rd);
    return NULL;
  }
  free (data);
  return rd;
}

/* Everything is opened and checked before nbdkit serves or runs its
 * --run command, so a wrong key or a bad snapshot stops it at once.
 * Sockets survive nbdkit's fork into the background; the readahead
 * threads start only with the first connection. */
static int
qp_get_ready (void)
{
  struct pbs_reader *rd = NULL;
  struct pbs_manifest *m = NULL;
  struct pbs_manifest_file f;
  struct cli_err err;
  int ret = -1;

  if (keyfile && !(key = push_load_key (keyfile, &err))) {
    cli_err_print (&err);
    nbdkit_error ("keyfile=%s: cannot load the key (see above)", keyfile);
    return -1;
  }
  repo = cli_open_repo (repository, fingerprint, &err);
  if (!repo) {
    cli_err_print (&err);
    nbdkit_error ("cannot open the repository (see above)");
    return -1;
  }
  rd = pbs_reader_start (repo, ns ? ns : "", snap_type, snap_id, snap_time);
  if (!rd) {
    nbdkit_error ("%s: %s", snapshot, pbs_errmsg ());
    return -1;
  }
  /* The same checks as restore: manifest signature, index csum and size
   * against the manifest. */
  m = push_fetch_manifest (rd, key, true, snapshot, &err);
  if (!m) {
    nbdkit_error ("%s: cannot read the manifest: %s%s", snapshot, err.msg,
                  key ? "" : "; an encrypted snapshot needs keyfile=");
    goto out;
  }
  if (pbs_manifest_find (m, archive, &f) == -1) {
    nbdkit_error ("%s: %s: not in the snapshot", snapshot, archive);
    goto out;
  }
  encrypted = strcmp (f.crypt_mode, "encrypt") == 0;
  if (encrypted && !key) {
    nbdkit_error ("%s: %s is encrypted: give keyfile=", snapshot, archive);
    goto out;
  }
  idx = push_fetch_index (rd, NULL, m, archive, snapshot, &err);
  if (!idx) {
    cli_err_print (&err);
    nbdkit_error ("%s: %s: bad index (see above)", snapshot, archive);
    goto out;
  }
  pbs_zero_chunk_digest (encrypted ? key : NULL, zero_digest);
  pool[0] = rd;
  rd = NULL;
  /* The other sessions now, before nbdkit forks, like the first; a
   * server that refuses more serves on fewer. */
  for (npool = 1; npool < NREADERS; npool++)
    if (!(pool[npool] = open_reader (true)))
      break;
  nbdkit_debug ("%d reader sessions", npool);
  ret = 0;
out:
  pbs_manifest_free (m);
  pbs_reader_free (rd);
  return ret;
}

static void
qp_cleanup (void)
{
  int i;

  for (i = 0; i < NREADERS; i++)
    pbs_reader_free (pool[i]);
  pbs_fidx_free (idx);
  pbs_repo_close (repo);
  pbs_key_free (key);
  free (snap_type);
  free (snap_id);
}

/* ------------------------------------------------------------ chunks */

static uint32_t
chunk_len (uint64_t i)
{
  uint64_t off = i * (uint64_t) CHUNK;
  return off + CHUNK <= idx->size ? CHUNK : (uint32_t) (idx->size - off);
}

/* A full chunk whose digest is the zero chunk's: zeros, never fetched. */
static bool
is_zero_chunk (uint64_t i)
{
  return chunk_len (i) == CHUNK
         && memcmp (idx->digest[i], zero_digest, PBS_DIGEST_LEN) == 0;
}

/* A session of the pool, held until give_reader: an opened one if one
 * is free (one that broke is NULL until reopened). */
static int
take_reader (void)
{
  int i, pick;

  pthread_mutex_lock (&pool_lock);
  for (;;) {
    pick = -1;
    for (i = 0; i < npool; i++)
      if (!busy[i] && (pick == -1 || (!pool[pick] && pool[i])))
        pick = i;
    if (pick != -1)
      break;
    pthread_cond_wait (&pool_cond, &pool_lock);
  }
  busy[pick] = true;
  pthread_mutex_unlock (&pool_lock);
  return pick;
}

static void
give_reader (int i)
{
  pthread_mutex_lock (&pool_lock);
  busy[i] = false;
  pthread_cond_signal (&pool_cond);
  pthread_mutex_unlock (&pool_lock);
}

/* The stored blob of chunk I, on a session of the pool.  A broken or
 * timed-out session is replaced once. */
static int
fetch_blob (uint64_t i, uint8_t **blob, size_t *len)
{
  int attempt, rc = -1, s = take_reader ();

  for (attempt = 0; attempt < 2; attempt++) {
    if (!pool[s] && !(pool[s] = open_reader (false)))
      break;
    rc = pbs_reader_chunk (pool[s], idx->digest[i], blob, len);
    if (rc == 0 || !pbs_error_is_transient ())
      break;
    nbdkit_debug ("chunk %" PRIu64 ": %s: new reader session", i,
                  pbs_errmsg ());
    pbs_reader_free (pool[s]);
    pool[s] = NULL;
  }
  if (rc == -1) {
    char hex[65];
    pbs_digest_hex (idx->digest[i], hex);
    nbdkit_error ("%s: chunk %s: %s", snapshot, hex, pbs_errmsg ());
  }
  give_reader (s);
  return rc;
}

/* Download chunk I and prove it (crypt mode, digest, length) before
 * its bytes are used.  *MEM is malloc'd and holds the chunk's bytes at
 * *DATA: a plain blob's in place (no copy), else the decoded copy. */
static int
load_chunk (uint64_t i, uint8_t **mem, const uint8_t **data)
{
  uint8_t *blob = NULL, *buf = NULL, d[PBS_DIGEST_LEN];
  const uint8_t *bytes = NULL;
  size_t blen, dlen = 0;
  int kind;
  char hex[65];
  const char *why = NULL;

  *mem = NULL;
  *data = NULL;
  if (fetch_blob (i, &blob, &blen) == -1)
    return -1;
  kind = pbs_blob_kind (blob, blen);
  if (kind == -1
      || encrypted != (kind == PBS_BLOB_ENCRYPTED
                       || kind == PBS_BLOB_ENCRYPTED_ZSTD))
    why = "wrong crypt mode or not a blob";
  /* A plain blob is served in place; the others are decoded into BUF.
   * The CRC is left to the server, as PBS's client does: the digest
   * below proves the bytes (docs/pbs-protocol.md §5.2). */
  else if (kind != PBS_BLOB_PLAIN && !(buf = malloc (CHUNK)))
    why = "out of memory";
  else if (pbs_blob_decode_to (blob, blen, encrypted ? key : NULL, buf,
                               CHUNK, &bytes, &dlen)
           == -1)
    why = pbs_errmsg ();
  if (!why) {
    pbs_chunk_digest (encrypted ? key : NULL, bytes, dlen, d);
    if (memcmp (d, idx->digest[i], PBS_DIGEST_LEN) != 0)
      why = "digest mismatch: the stored chunk is damaged";
    else if (dlen != chunk_len (i))
      why = "wrong length";
  }
  if (why) {
    pbs_digest_hex (idx->digest[i], hex);
    nbdkit_error ("%s: chunk %s: %s (run qcow2pbs check)", snapshot, hex,
                  why);
    free (blob);
    free (buf);
    errno = EIO;
    return -1;
  }
  if (buf) {
    free (blob);
    *mem = buf;
  }
  else
    *mem = blob;
  *data = bytes;
  return 0;
}

/* ------------------------------------------------------------ the cache */

enum { C_LOADING, C_READY, C_FAILED };

struct centry {
  uint64_t chunk; /* index; chunks are cached by position */
  uint8_t *mem;       /* malloc'd, holds DATA */
  const uint8_t *data; /* the chunk's bytes */
  int state;
  unsigned refs;
  bool ahead; /* loaded by the readahead and not read since */
  uint64_t served; /* bytes of it sent so far: all of them = read through */
  struct centry *prev, *next; /* LRU list, most recent first */
};

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cache_cond = PTHREAD_COND_INITIALIZER;
static struct centry *lru_head, *lru_tail;
static int64_t cache_bytes;

static void
lru_unlink (struct centry *e)
{
  if (e->prev)
    e->prev->next = e->next;
  else
    lru_head = e->next;
  if (e->next)
    e->next->prev = e->prev;
  else
    lru_tail = e->prev;
  e->prev = e->next = NULL;
}

static void
lru_push_front (struct centry *e)
{
  e->next = lru_head;
  e->prev = NULL;
  if (lru_head)
    lru_head->prev = e;
  lru_head = e;
  if (!lru_tail)
    lru_tail = e;
}

static void
drop (struct centry *e)
{
  lru_unlink (e);
  cache_bytes -= CHUNK;
  free (e->mem);
  free (e);
}

/* Has every byte of E been sent?  A sequential reader (nbdcopy: 16
 * requests per chunk, several streams at once) needs a chunk until then;
 * evicting it earlier made it load twice (half the chunks of a 4-stream
 * copy, measured with strace). */
static bool
read_through (const struct centry *e)
{
  return e->served >= chunk_len (e->chunk);
}

/* Evict unused entries until NEED more bytes fit: read-through ones first,
 * then the others, oldest first.  Entries in use stay: the cache may
 * exceed its size by the chunks being read right now. */
static void
make_room (int64_t need)
{
  struct centry *e, *prev;
  int pass;

  for (pass = 0; pass < 2; pass++)
    for (e = lru_tail; e && cache_bytes + need > cache_max; e = prev) {
      prev = e->prev;
      if (!e->refs && e->state != C_LOADING && (pass || read_through (e)))
        drop (e);
    }
}

/* Is there room for a chunk read ahead: free space, or an unused entry
 * that was read through?  Evicting anything else for readahead throws
 * away work a reader still needs when the cache is small for the number
 * of streams.  CACHE_LOCK held. */
static bool
room_ahead (void)
{
  struct centry *e;

  if (cache_bytes + CHUNK <= cache_max)
    return true;
  for (e = lru_tail; e; e = e->prev)
    if (!e->refs && e->state != C_LOADING && read_through (e))
      return true;
  return false;
}

/* Chunk I, decoded and proved, held (release with put_chunk).  AHEAD (the
 * readahead): only if there is room_ahead, else NULL with no error. */
static struct centry *
get_chunk (uint64_t i, bool ahead)
{
  struct centry *e;
  uint8_t *mem;
  const uint8_t *data;
  int rc;

  pthread_mutex_lock (&cache_lock);
  for (e = lru_head; e; e = e->next)
    if (e->chunk == i)
      break;
  if (e) {
    e->refs++;
    if (!ahead)
      e->ahead = false;
    lru_unlink (e);
    lru_push_front (e);
    while (e->state == C_LOADING)
      pthread_cond_wait (&cache_cond, &cache_lock);
    if (e->state == C_FAILED) {
      if (--e->refs == 0)
        drop (e);
      pthread_mutex_unlock (&cache_lock);
      nbdkit_error ("%s: chunk %" PRIu64 " could not be read (see above)",
                    snapshot, i);
      errno = EIO;
      return NULL;
    }
    pthread_mutex_unlock (&cache_lock);
    return e;
  }
  if (ahead && !room_ahead ()) {
    pthread_mutex_unlock (&cache_lock);
    return NULL;
  }
  e = calloc (1, sizeof *e);
  if (!e) {
    pthread_mutex_unlock (&cache_lock);
    nbdkit_error ("calloc: %m");
    return NULL;
  }
  make_room (CHUNK);
  e->ahead = ahead;
  e->chunk = i;
  e->state = C_LOADING;
  e->refs = 1;
  lru_push_front (e);
  cache_bytes += CHUNK;
  pthread_mutex_unlock (&cache_lock);

  rc = load_chunk (i, &mem, &data);

  pthread_mutex_lock (&cache_lock);
  e->mem = mem;
  e->data = data;
  e->state = rc == 0 ? C_READY : C_FAILED;
  pthread_cond_broadcast (&cache_cond);
  if (rc == -1) {
    /* Not cached: the next read tries again. */
    if (--e->refs == 0)
      drop (e);
    e = NULL;
  }
  pthread_mutex_unlock (&cache_lock);
  if (!e)
    errno = EIO;
  return e;
}

/* Release E after sending SENT bytes of it. */
static void
put_chunk (struct centry *e, uint64_t sent)
{
  pthread_mutex_lock (&cache_lock);
  e->refs--;
  e->served += sent;
  pthread_mutex_unlock (&cache_lock);
}

/* ------------------------------------------------------------ readahead */

/* NRA_THREADS threads load the chunks queued by note_read, so that one
 * sequential stream is read, checked and decoded on several cores. */
#define RA_QUEUE 32
static pthread_mutex_t ra_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t ra_cond = PTHREAD_COND_INITIALIZER;
static uint64_t ra_queue[RA_QUEUE]; /* a ring of chunk numbers */
static unsigned ra_head, ra_len;
static bool ra_stop, ra_started;
static pthread_t ra_tid[NRA_THREADS];
static unsigned ra_nthreads;
/* Where each followed stream's last read ended (UINT64_MAX: none) and
 * below which chunk its readahead was queued. */
static struct { uint64_t end, queued_to; } stream[NSTREAMS];
static unsigned stream_victim; /* the next slot a new stream takes */

static bool
cached (uint64_t i)
{
  struct centry *e;
  bool r = false;

  pthread_mutex_lock (&cache_lock);
  for (e = lru_head; e && !r; e = e->next)
    r = e->chunk == i;
  pthread_mutex_unlock (&cache_lock);
  return r;
}

static void *
readahead (void *arg)
{
  (void) arg;
  pthread_mutex_lock (&ra_lock);
  while (!ra_stop) {
    uint64_t i;
    if (!ra_len) {
      pthread_cond_wait (&ra_cond, &ra_lock);
      continue;
    }
    i = ra_queue[ra_head];
    ra_head = (ra_head + 1) % RA_QUEUE;
    ra_len--;
    pthread_mutex_unlock (&ra_lock);
    if (!cached (i)) {
      struct centry *e = get_chunk (i, true);
      if (e)
        put_chunk (e, 0);
    }
    pthread_mutex_lock (&ra_lock);
  }
  pthread_mutex_unlock (&ra_lock);
  return NULL;
}

/* Queue chunk I for the readahead threads (RA_LOCK held).  A full queue
 * drops it: the read itself will load it. */
static void
ra_queue_chunk (uint64_t i)
{
  if (ra_len == RA_QUEUE || i >= idx->count || is_zero_chunk (i))
    return;
  ra_queue[(ra_head + ra_len) % RA_QUEUE] = i;
  ra_len++;
  pthread_cond_signal (&ra_cond);
}

/* How far a stream reads ahead: at most a quarter of the cache, so that
 * the chunks read ahead for a few streams are not evicted before they
 * are read. */
static uint64_t
ra_ahead (void)
{
  uint64_t n = (uint64_t) cache_max / CHUNK / 4;
  return n < 1 ? 1 : n > RA_CHUNKS ? RA_CHUNKS : n;
}

/* Note a read of [OFF, END): if it starts near where a followed stream's
 * last read ended (within a chunk: parallel requests arrive a little out
 * of order), that stream is sequential: queue its next chunks.  Otherwise
 * it may start a stream, in the slot of the oldest. */
static void
note_read (uint64_t off, uint64_t end)
{
  unsigned s;
  uint64_t next, last;

  pthread_mutex_lock (&ra_lock);
  for (s = 0; s < NSTREAMS; s++)
    if (stream[s].end != UINT64_MAX && off + CHUNK >= stream[s].end
        && off <= stream[s].end + CHUNK)
      break;
  if (s == NSTREAMS) {
    s = stream_victim++ % NSTREAMS;
    stream[s].end = end;
    stream[s].queued_to = 0;
    pthread_mutex_unlock (&ra_lock);
    return;
  }
  if (end > stream[s].end)
    stream[s].end = end;
  next = (end - 1) / CHUNK + 1;
  last = next + ra_ahead ();
  if (stream[s].queued_to < next)
    stream[s].queued_to = next;
  if (ra_started)
    for (; stream[s].queued_to < last; stream[s].queued_to++)
      ra_queue_chunk (stream[s].queued_to);
  pthread_mutex_unlock (&ra_lock);
}

/* ------------------------------------------------------------ serving */

static void *
qp_open (int readonly)
{
  static int handle;
  unsigned s;

  (void) readonly;
  pthread_mutex_lock (&ra_lock);
  if (!ra_started && idx) {
    for (s = 0; s < NSTREAMS; s++)
      stream[s].end = UINT64_MAX;
    while (ra_nthreads < NRA_THREADS
           && pthread_create (&ra_tid[ra_nthreads], NULL, readahead, NULL)
                  == 0)
      ra_nthreads++;
    ra_started = ra_nthreads > 0;
  }
  pthread_mutex_unlock (&ra_lock);
  return &handle;
}

static int64_t
qp_get_size (void *h)
{
  (void) h;
  return (int64_t) idx->size;
}

static int
qp_can_write (void *h)
{
  (void) h;
  return 0;
}

static int
qp_can_multi_conn (void *h)
{
  (void) h;
  return 1; /* read-only: every connection sees the same bytes */
}

static int
qp_can_extents (void *h)
{
  (void) h;
  return 1;
}

static int
qp_can_cache (void *h)
{
  (void) h;
  return NBDKIT_CACHE_NATIVE;
}

static int
qp_pread (void *h, void *buf, uint32_t count, uint64_t offset,
          uint32_t flags)
{
  uint8_t *out = buf;
  uint64_t end = offset + count;

  (void) h;
  (void) flags;
  note_read (offset, end);
  while (offset < end) {
    uint64_t i = offset / CHUNK, in = offset % CHUNK;
    uint64_t n = CHUNK - in;
    if (n > end - offset)
      n = end - offset;
    if (is_zero_chunk (i))
      memset (out, 0, n);
    else {
      struct centry *e = get_chunk (i, false);
      if (!e)
        return -1;
      memcpy (out, e->data + in, n);
      put_chunk (e, n);
    }
    out += n;
    offset += n;
  }
  return 0;
}

/* NBD_CMD_CACHE: load the chunks of the range into the cache. */
static int
qp_cache (void *h, uint32_t count, uint64_t offset, uint32_t flags)
{
  uint64_t i, last;

  (void) h;
  (void) flags;
  if (!count)
    return 0;
  last = (offset + count - 1) / CHUNK;
  for (i = offset / CHUNK; i <= last; i++)
    if (!is_zero_chunk (i)) {
      struct centry *e = get_chunk (i, false);
      if (!e)
        return -1;
      put_chunk (e, 0);
    }
  return 0;
}

static int
qp_extents (void *h, uint32_t count, uint64_t offset, uint32_t flags,
            struct nbdkit_extents *ex)
{
  uint64_t end = offset + count, i;

  (void) h;
  for (i = offset / CHUNK; i * CHUNK < end && i < idx->count; i++) {
    uint64_t start = i * CHUNK, len = chunk_len (i);
    uint32_t type = is_zero_chunk (i)
                        ? NBDKIT_EXTENT_HOLE | NBDKIT_EXTENT_ZERO
                        : 0;
    if (nbdkit_add_extent (ex, start, len, type) == -1)
      return -1;
    if (flags & NBDKIT_FLAG_REQ_ONE)
      break;
  }
  return 0;
}

static void
qp_unload_all (void)
{
  unsigned t;

  pthread_mutex_lock (&ra_lock);
  ra_stop = true;
  pthread_cond_broadcast (&ra_cond);
  pthread_mutex_unlock (&ra_lock);
  for (t = 0; t < ra_nthreads; t++)
    pthread_join (ra_tid[t], NULL);
  while (lru_head)
    drop (lru_head);
  qp_cleanup ();
  qp_unload ();
}

#define THREAD_MODEL NBDKIT_THREAD_MODEL_PARALLEL

static struct nbdkit_plugin plugin = {
  .name = "qcow2pbs",
  .longname = "qcow2pbs: a Proxmox Backup Server snapshot as a disk",
  .version = "0.1",
  .description = "Serve one archive of a PBS snapshot read-only, chunks "
                 "checked and cached",
  .load = qp_load,
  .config = qp_config,
  .config_complete = qp_config_complete,
  .config_help = qp_config_help,
  .magic_config_key = "snapshot",
  .get_ready = qp_get_ready,
  .unload = qp_unload_all,
  .open = qp_open,
  .get_size = qp_get_size,
  .can_write = qp_can_write,
  .can_multi_conn = qp_can_multi_conn,
  .can_extents = qp_can_extents,
  .can_cache = qp_can_cache,
  .pread = qp_pread,
  .cache = qp_cache,
  .extents = qp_extents,
  .errno_is_preserved = 1,
};

NBDKIT_REGISTER_PLUGIN (plugin)
