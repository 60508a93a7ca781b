/* fuzz-main.c -- replay a fuzz target's corpus as a plain regression test.
 *
 * Linked with one tests/fuzz/fuzz-<target>.c into replay-<target>.  With
 * arguments, every file in each named directory (or each named file) is
 * fed to LLVMFuzzerTestOneInput; without, the corpus directory is found
 * from the program's own name: "replay-<target>" replays
 * tests/fuzz/corpus/<target>/ relative to the current directory (make
 * check runs from the top of the tree).  A crash, sanitizer report or hang
 * fails the run; otherwise each input is one TAP line. */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static int n_ok, n_failed;

static int
cmp_str (const void *a, const void *b)
{
  return strcmp (*(char *const *) a, *(char *const *) b);
}

static void
replay_file (const char *path)
{
  FILE *f = fopen (path, "rb");
  uint8_t *buf = NULL;
  long len = -1;

  if (f && fseek (f, 0, SEEK_END) == 0)
    len = ftell (f);
  if (len >= 0 && fseek (f, 0, SEEK_SET) == 0)
    buf = malloc (len ? (size_t) len : 1);
  if (!buf || fread (buf, 1, (size_t) len, f) != (size_t) len) {
    printf ("not ok %d - %s: cannot read it\n", n_ok + n_failed + 1, path);
    n_failed++;
  }
  else {
    LLVMFuzzerTestOneInput (buf, (size_t) len);
    printf ("ok %d - %s\n", n_ok + n_failed + 1, path);
    n_ok++;
  }
  fflush (stdout);
  free (buf);
  if (f)
    fclose (f);
}

static void
replay_dir (const char *dir)
{
  DIR *d = opendir (dir);
  struct dirent *e;
  char **names = NULL;
  size_t n = 0, cap = 0, i;

  if (!d) {
    printf ("not ok %d - %s: %s\n", n_ok + n_failed + 1, dir,
            strerror (errno));
    n_failed++;
    return;
  }
  for (e = readdir (d); e; e = readdir (d)) {
    if (e->d_name[0] == '.')
      continue;
    if (n == cap) {
      char **nn;
      cap = cap ? cap * 2 : 64;
      nn = realloc (names, cap * sizeof *names);
      if (!nn)
        abort ();
      names = nn;
    }
    if (asprintf (&names[n], "%s/%s", dir, e->d_name) == -1)
      abort ();
    n++;
  }
  closedir (d);
  qsort (names, n, sizeof *names, cmp_str);
  for (i = 0; i < n; i++) {
    struct stat st;
    if (stat (names[i], &st) == 0 && S_ISREG (st.st_mode))
      replay_file (names[i]);
    free (names[i]);
  }
  free (names);
}

static void
replay (const char *path)
{
  struct stat st;

  if (stat (path, &st) == 0 && S_ISDIR (st.st_mode))
    replay_dir (path);
  else
    replay_file (path);
}

int
main (int argc, char **argv)
{
  int i;

  if (argc > 1)
    for (i = 1; i < argc; i++)
      replay (argv[i]);
  else {
    const char *base = strrchr (argv[0], '/');
    char *dir;
    base = base ? base + 1 : argv[0];
    if (strncmp (base, "replay-", 7) != 0 || !base[7]) {
      fprintf (stderr, "usage: replay-TARGET [CORPUS-DIR|FILE]...\n");
      return 2;
    }
    if (asprintf (&dir, "tests/fuzz/corpus/%s", base + 7) == -1)
      return 1;
    replay (dir);
    free (dir);
  }
  printf ("1..%d\n# %d passed, %d failed\n", n_ok + n_failed, n_ok,
          n_failed);
  return n_failed ? 1 : 0;
}
