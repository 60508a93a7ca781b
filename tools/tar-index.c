/* tar-index.c -- find where each member of a tar archive keeps its bytes.
 *
 * libarchive reads the headers (it knows pax, GNU and every quirk); for an
 * archive without compression the data of a plain member is one piece of
 * the file, so it can be read in place (import, push --from-archive).
 * libarchive gives the position of a member's first header block
 * (archive_read_header_position); extension headers may come first (pax
 * 'x'/'g', GNU long names 'L'/'K'), so we walk the 512-byte blocks from
 * there to the member's own header (POSIX ustar layout: type flag at 156,
 * size at 124, octal or GNU base-256) and its data follows it.  The
 * member's own header must agree with libarchive (regular type, size), so
 * a wrong offset is never used: such a member is just not in place.  GNU
 * sparse members ('S', or pax GNU.sparse keys) are not in one piece:
 * their stored pieces follow each other in the order of the sparse map
 * libarchive read (sparse_pieces), and must add up to the stored size. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>
#include <openssl/evp.h>

#include "cli.h"
#include "pbsproto.h"
#include "tar-index.h"

#define BLOCK 512
/* Extension headers before one member: pax and long names are small. */
#define MAX_EXT_BYTES (1u << 20)

bool
tar_name_safe (const char *name)
{
  const char *p = name;

  if (!*name || name[0] == '/')
    return false;
  while (*p) {
    size_t n = strcspn (p, "/");
    if (n == 2 && p[0] == '.' && p[1] == '.')
      return false;
    p += n;
    while (*p == '/')
      p++;
  }
  return true;
}

char *
tar_name_normal (const char *name)
{
  char *out = malloc (strlen (name) + 1), *q = out;
  const char *p = name;

  if (!out)
    return NULL;
  while (*p) {
    size_t n;
    while (*p == '/')
      p++;
    n = strcspn (p, "/");
    if (n == 1 && p[0] == '.') {
      p += n;
      continue;
    }
    if (n) {
      if (q != out)
        *q++ = '/';
      memcpy (q, p, n);
      q += n;
    }
    p += n;
  }
  *q = 0;
  return out;
}

bool
tar_member_link (struct archive_entry *e, char **msg)
{
  const char *name = archive_entry_pathname (e);
  const char *target = archive_entry_hardlink (e), *what;
  mode_t type = archive_entry_filetype (e);
  int r;

  *msg = NULL;
  if (!name)
    name = "";
  /* A hard link reads as a regular file (of size 0) in libarchive. */
  if (target)
    r = asprintf (msg, "member %s: a hard link to %s; links are not read "
                  "from archives: unpack it and import the folder, or make "
                  "the archive with tar --hard-dereference", name, target);
  else if (type == AE_IFLNK)
    r = asprintf (msg, "member %s: a symbolic link to %s; links are not "
                  "read from archives: unpack it and import the folder, or "
                  "make the archive with tar --dereference (-h)", name,
                  archive_entry_symlink (e) ? archive_entry_symlink (e)
                                            : "");
  else if (type != AE_IFREG && type != AE_IFDIR) {
    what = type == AE_IFIFO ? "a FIFO"
           : type == AE_IFCHR ? "a character device"
           : type == AE_IFBLK ? "a block device"
           : type == AE_IFSOCK ? "a socket" : "not a regular file";
    r = asprintf (msg, "member %s: %s; only folders and regular files are "
                  "read from archives: make the archive without it", name,
                  what);
  }
  else
    return false;
  if (r == -1)
    *msg = NULL;
  return true;
}

/* A ustar number field: octal (NUL/space ended) or GNU base-256. */
static bool
tar_number (const unsigned char *f, size_t len, uint64_t *v)
{
  size_t i = 0;

  *v = 0;
  if (f[0] & 0x80) {
    if (f[0] != 0x80)
      return false; /* negative, or more than 7 bytes of it */
    for (i = 1; i < len; i++) {
      if (*v >> 56)
        return false;
      *v = (*v << 8) | f[i];
    }
    return true;
  }
  while (i < len && f[i] == ' ')
    i++;
  for (; i < len && f[i] >= '0' && f[i] <= '7'; i++) {
    if (*v >> 60)
      return false;
    *v = (*v << 3) | (uint64_t) (f[i] - '0');
  }
  return i == len || f[i] == 0 || f[i] == ' ';
}

/* The decimal number at *P (ended by '\n'), moving *P past it. */
static bool
map_number (const char **p, const char *end, uint64_t *v)
{
  const char *q = *p;

  *v = 0;
  if (q == end || *q < '0' || *q > '9')
    return false;
  for (; q < end && *q >= '0' && *q <= '9'; q++) {
    if (*v > (UINT64_MAX - 9) / 10)
      return false;
    *v = *v * 10 + (uint64_t) (*q - '0');
  }
  if (q == end || *q != '\n')
    return false;
  *p = q + 1;
  return true;
}

/* A GNU sparse member whose own header is at HDR and whose data (after
 * 'S' extension blocks) starts at DATA, STORED bytes of it: its pieces
 * lie one after the other from there, in the order of the map MAP[0..N)
 * libarchive read; format 1.0 (pax GNU.sparse.major=1) first stores the
 * map itself, which must be the same.  Fills M->ext and says whether
 * the pieces add up to STORED. */
static bool
sparse_pieces (int fd, uint64_t data, uint64_t stored, bool v1,
               const la_int64_t (*map)[2], size_t n, struct tar_member *m)
{
  uint64_t sum = 0, at = data;
  size_t k = 0, i;

  if (v1) {
    /* "count\n" then "offset\nlength\n" per piece, padded to 512. */
    char buf[65536];
    const char *p = buf, *end;
    uint64_t cnt, v;
    ssize_t r = pread (fd, buf, sizeof buf, (off_t) data);
    if (r <= 0)
      return false;
    end = buf + r;
    uint64_t o;
    size_t j = 0;
    if (!map_number (&p, end, &cnt) || cnt > MAX_EXT_BYTES)
      return false;
    /* The same pieces (empty ones, the end marker, not compared). */
    for (i = 0; i < cnt; i++) {
      if (!map_number (&p, end, &o) || !map_number (&p, end, &v))
        return false;
      if (v == 0)
        continue;
      while (j < n && map[j][1] == 0)
        j++;
      if (j == n || (la_int64_t) o != map[j][0] || (la_int64_t) v != map[j][1])
        return false;
      j++;
    }
    while (j < n && map[j][1] == 0)
      j++;
    if (j != n)
      return false;
    at += ((uint64_t) (p - buf) + BLOCK - 1) / BLOCK * BLOCK;
  }
  m->ext = calloc (n + 1, sizeof *m->ext);
  if (!m->ext)
    return false;
  for (i = 0; i < n; i++) {
    if (map[i][1] == 0)
      continue; /* the end marker */
    if (map[i][0] < 0 || map[i][1] < 0)
      return false;
    m->ext[k].offset = (uint64_t) map[i][0];
    m->ext[k].length = (uint64_t) map[i][1];
    m->ext[k].file_offset = at;
    at += (uint64_t) map[i][1];
    sum += (uint64_t) map[i][1];
    k++;
  }
  m->next = k;
  return at - data == stored && sum <= m->size;
}

/* Walk from the member's first header at POS to its own header: fill
 * M->offset, M->in_place, M->sparse and the header hash.  0, or -1 on a
 * read error (ERR). */
static int
locate (int fd, const char *path, uint64_t pos, struct tar_member *m,
        const char *name, const la_int64_t (*map)[2], size_t nmap,
        struct cli_err *err)
{
  bool v1 = false;
  unsigned char b[BLOCK], md[32];
  uint64_t start = pos, size, ext = 0;
  bool extended = false;
  EVP_MD_CTX *ctx = EVP_MD_CTX_new ();
  unsigned mdlen;
  int ret = -1;

  if (!ctx || EVP_DigestInit_ex (ctx, EVP_sha256 (), NULL) != 1) {
    cli_err_set (err, path, "sha256 failed");
    goto out;
  }
  for (;;) {
    if (pread (fd, b, BLOCK, (off_t) pos) != BLOCK) {
      cli_err_set (err, path, "member %s: cannot read its header: %s",
                   name, errno ? strerror (errno) : "short read");
      goto out;
    }
    if (!tar_number (b + 124, 12, &size))
      break; /* not what libarchive saw: not in place */
    if (b[156] == 'x' || b[156] == 'g' || b[156] == 'L' || b[156] == 'K') {
      uint64_t len = (size + BLOCK - 1) / BLOCK * BLOCK;
      if (size > MAX_EXT_BYTES || (ext += BLOCK + len) > MAX_EXT_BYTES)
        break;
      if (b[156] == 'x') {
        /* pax: GNU sparse keys make a sparse member of a plain type. */
        char *text = malloc ((size_t) size + 1);
        if (!text
            || pread (fd, text, (size_t) size, (off_t) (pos + BLOCK))
                   != (ssize_t) size) {
          free (text);
          cli_err_set (err, path, "member %s: cannot read its pax header",
                       name);
          goto out;
        }
        text[size] = 0;
        if (memmem (text, (size_t) size, "GNU.sparse.", 11))
          m->sparse = true;
        if (memmem (text, (size_t) size, " GNU.sparse.major=1\n", 20))
          v1 = true;
        EVP_DigestUpdate (ctx, b, BLOCK);
        EVP_DigestUpdate (ctx, text, (size_t) size);
        free (text);
      }
      else
        EVP_DigestUpdate (ctx, b, BLOCK);
      extended = true;
      pos += BLOCK + len;
      continue;
    }
    EVP_DigestUpdate (ctx, b, BLOCK);
    if (b[156] == 'S')
      m->sparse = true;
    if (m->sparse && nmap && (b[156] == 'S' || b[156] == '0' || b[156] == 0)) {
      /* Read in place through its map: after an old GNU 'S' header come
       * its extension blocks (flag at 482, then 504 of each), then the
       * pieces; a pax one's pieces follow its header. */
      uint64_t data = pos + BLOCK, blocks = 0;
      bool more = b[156] == 'S' && b[482];
      unsigned char x[BLOCK];
      while (more && blocks++ < MAX_EXT_BYTES / BLOCK) {
        if (pread (fd, x, BLOCK, (off_t) data) != BLOCK)
          break;
        EVP_DigestUpdate (ctx, x, BLOCK); /* the rest of its map */
        data += BLOCK;
        more = x[504] != 0;
      }
      if (!more && sparse_pieces (fd, data, size, v1, map, nmap, m)) {
        m->in_place = true;
        m->offset = data;
      }
      else {
        free (m->ext);
        m->ext = NULL;
        m->next = 0;
      }
    }
    /* The member's own header: a plain file whose size is what libarchive
     * read (a pax size may stand in for a too large ustar field) and,
     * without extension headers, whose ustar name is its name. */
    if (!m->sparse && (b[156] == '0' || b[156] == 0 || b[156] == '7')
        && (size == m->size || extended)) {
      char full[260];
      snprintf (full, sizeof full, "%.155s%s%.100s", (const char *) b + 345,
                b[345] ? "/" : "", (const char *) b);
      if (extended || !strcmp (full, name)) {
        m->in_place = true;
        m->offset = pos + BLOCK;
      }
    }
    break;
  }
  (void) start;
  if (EVP_DigestFinal_ex (ctx, md, &mdlen) != 1) {
    cli_err_set (err, path, "sha256 failed");
    goto out;
  }
  pbs_digest_hex (md, m->header_sha256);
  ret = 0;
out:
  EVP_MD_CTX_free (ctx);
  return ret;
}

int
tar_next_header (struct archive *a, struct archive_entry **entry,
                 bool *in_member, bool *marked)
{
  la_int64_t end;
  int r;

  /* Skip the rest of the member (its padding too), so that the format
   * reader stands at the end of its padded data: filter 0 is the one the
   * format reads from (the uncompressed bytes). */
  if (*in_member && archive_read_data_skip (a) != ARCHIVE_OK)
    return ARCHIVE_FATAL;
  end = archive_filter_bytes (a, 0);
  r = archive_read_next_header (a, entry);
  *marked = false;
  if (r == ARCHIVE_EOF)
    /* The tar reader consumes a zero block it ends on; it consumes
     * nothing when the data just stops. */
    *marked = !*in_member || archive_filter_bytes (a, 0) > end;
  else if (r == ARCHIVE_OK || r == ARCHIVE_WARN)
    *in_member = true;
  return r;
}

int
tar_index_read (const char *path, struct tar_index *ix, struct cli_err *err)
{
  struct archive *a = archive_read_new ();
  struct archive_entry *e;
  int r, fd = -1, ret = -1;
  size_t cap = 0;
  bool in_member = false, marked = false;
  char *last = NULL; /* the last member's name */

  memset (ix, 0, sizeof *ix);
  if (!a)
    return cli_err_set (err, path, "out of memory");
  archive_read_support_filter_all (a);
  archive_read_support_format_tar (a);
  fd = open (path, O_RDONLY | O_CLOEXEC);
  if (fd == -1 || fstat (fd, &ix->st) == -1) {
    cli_err_set (err, path, "%s", strerror (errno));
    goto out;
  }
  /* Small blocks: between headers libarchive seeks (an uncompressed
   * file), so an index reads little more than the headers. */
  if (archive_read_open_filename (a, path, 16384) != ARCHIVE_OK) {
    cli_err_set (err, path, "%s", archive_error_string (a));
    goto out;
  }
  while ((r = tar_next_header (a, &e, &in_member, &marked)) == ARCHIVE_OK
         || r == ARCHIVE_WARN) {
    const char *name = archive_entry_pathname (e);
    mode_t type = archive_entry_filetype (e);
    struct tar_member *m;
    la_int64_t pos = archive_read_header_position (a);
    if (!name || !tar_name_safe (name)) {
      cli_err_set (err, path, "member '%s' is an absolute path or climbs "
                   "out with '..': refused", name ? name : "");
      goto out;
    }
    free (last);
    if (!(last = strdup (name))) {
      cli_err_set (err, path, "out of memory");
      goto out;
    }
    if (ix->n == 0) {
      ix->compressed = archive_filter_count (a) != 1
                       || archive_filter_code (a, 0) != ARCHIVE_FILTER_NONE;
      if (ix->compressed) {
        /* Nothing of it can be read in place, and walking it would
         * decompress it all: the caller unpacks it (and checks it). */
        r = ARCHIVE_EOF;
        marked = true; /* the stream's reader checks it */
        ix->n = 1; /* "not empty" */
        ix->m = calloc (1, sizeof *ix->m);
        if (!ix->m || !(ix->m[0].name = strdup (name))) {
          cli_err_set (err, path, "out of memory");
          goto out;
        }
        break;
      }
    }
    if (!ix->link && tar_member_link (e, &ix->link) && !ix->link) {
      cli_err_set (err, path, "out of memory");
      goto out;
    }
    if (type != AE_IFREG && type != AE_IFDIR)
      continue;
    if (ix->n == cap) {
      struct tar_member *g;
      cap = cap ? cap * 2 : 16;
      g = realloc (ix->m, cap * sizeof *g);
      if (!g) {
        cli_err_set (err, path, "out of memory");
        goto out;
      }
      ix->m = g;
    }
    m = &ix->m[ix->n];
    memset (m, 0, sizeof *m);
    m->name = tar_name_normal (name);
    if (!m->name) {
      cli_err_set (err, path, "out of memory");
      goto out;
    }
    ix->n++;
    m->dir = type == AE_IFDIR;
    m->size = archive_entry_size (e) > 0 ? (uint64_t) archive_entry_size (e)
                                         : 0;
    m->mtime_ns = archive_entry_mtime_is_set (e)
                      ? (int64_t) archive_entry_mtime (e) * 1000000000
                            + archive_entry_mtime_nsec (e)
                      : 0;
    m->sparse = archive_entry_sparse_count (e) > 0;
    if (!m->dir && !ix->compressed && pos >= 0) {
      /* libarchive's sparse map (offset, length; a 0-length end). */
      size_t nmap = 0;
      int cnt = archive_entry_sparse_reset (e);
      la_int64_t (*map)[2] = cnt > 0 ? calloc ((size_t) cnt, sizeof *map)
                                      : NULL;
      while (map && nmap < (size_t) cnt
             && archive_entry_sparse_next (e, &map[nmap][0], &map[nmap][1])
                    == ARCHIVE_OK)
        nmap++;
      r = locate (fd, path, (uint64_t) pos, m, name,
                  (const la_int64_t (*)[2]) map, nmap, err);
      free (map);
      if (r == -1)
        goto out;
      r = ARCHIVE_OK;
    }
    if (!m->dir && m->sparse && !m->in_place)
      ix->any_sparse = true;
  }
  if (r != ARCHIVE_EOF) {
    cli_err_set (err, path, "%s (truncated or corrupt archive)",
                 archive_error_string (a));
    goto out;
  }
  if (ix->n == 0) {
    cli_err_set (err, path, "not a tar archive (tar, tar.gz, tar.zst, "
                 "tar.xz), or an empty one");
    goto out;
  }
  if (!marked) {
    cli_err_set (err, path, "truncated archive: no end-of-archive marker "
                 "after member %s; the copy is incomplete", last);
    goto out;
  }
  ret = 0;
out:
  free (last);
  if (fd >= 0)
    close (fd);
  archive_read_free (a);
  if (ret == -1)
    tar_index_free (ix);
  return ret;
}

const struct tar_member *
tar_index_find (const struct tar_index *ix, const char *name)
{
  char *n = tar_name_normal (name);
  const struct tar_member *found = NULL;
  size_t i;

  /* The last of the same name, as tar -x leaves it. */
  for (i = ix->n; n && i-- > 0 && !found;)
    if (!strcmp (ix->m[i].name, n))
      found = &ix->m[i];
  free (n);
  return found;
}

void
tar_index_free (struct tar_index *ix)
{
  for (size_t i = 0; i < ix->n; i++) {
    free (ix->m[i].name);
    free (ix->m[i].ext);
  }
  free (ix->m);
  free (ix->link);
  memset (ix, 0, sizeof *ix);
}
