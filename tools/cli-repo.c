/* cli-repo.c -- open a repository from --repository / PBS_REPOSITORY.
 *
 * For a server the secret (password or API token secret) comes, as in
 * proxmox-backup-client (§2.4), from the first of PBS_PASSWORD,
 * PBS_PASSWORD_FD, PBS_PASSWORD_FILE that is set (first line only), else
 * from a prompt when stdin is a terminal.  Secrets never come from argv.
 * --fingerprint or PBS_FINGERPRINT pins the server certificate. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "cli.h"
#include "pbsproto.h"

#define SECRET_MAX 4096

/* First line of what FD delivers (up to SECRET_MAX bytes).  malloc'd or
 * NULL with errno set. */
static char *
read_first_line (int fd)
{
  char *buf = malloc (SECRET_MAX + 1);
  size_t len = 0;

  if (!buf)
    return NULL;
  while (len < SECRET_MAX) {
    ssize_t n = read (fd, buf + len, 1);
    if (n == -1 && errno == EINTR)
      continue;
    if (n == -1) {
      int e = errno;
      explicit_bzero (buf, len);
      free (buf);
      errno = e;
      return NULL;
    }
    if (n == 0 || buf[len] == '\n')
      break;
    len++;
  }
  if (len > 0 && buf[len - 1] == '\r')
    len--;
  buf[len] = 0;
  return buf;
}

static char *
prompt_tty (void)
{
  struct termios old, quiet;
  char *line;
  int fd = open ("/dev/tty", O_RDWR | O_CLOEXEC);

  if (fd == -1)
    return NULL;
  if (write (fd, "Password: ", 10) != 10 || tcgetattr (fd, &old) == -1) {
    close (fd);
    return NULL;
  }
  quiet = old;
  quiet.c_lflag &= ~(tcflag_t) ECHO;
  tcsetattr (fd, TCSAFLUSH, &quiet);
  line = read_first_line (fd);
  tcsetattr (fd, TCSAFLUSH, &old);
  if (write (fd, "\n", 1) != 1) {
    /* The newline is cosmetic. */
  }
  close (fd);
  return line;
}

/* The secret for a server repository, or NULL if none was given (the
 * backend then says so).  Returns -1 after printing an error. */
static int
get_secret (char **out)
{
  const char *v;

  *out = NULL;
  v = getenv ("PBS_PASSWORD");
  if (v) {
    size_t n = strcspn (v, "\r\n");
    *out = strndup (v, n);
    if (!*out) {
      cli_error ("PBS_PASSWORD", "out of memory");
      return -1;
    }
    return 0;
  }
  v = getenv ("PBS_PASSWORD_FD");
  if (v) {
    char *end;
    long fd;
    errno = 0;
    fd = strtol (v, &end, 10);
    if (errno || end == v || *end || fd < 0 || fd > 65535) {
      cli_error ("PBS_PASSWORD_FD", "not a file descriptor number");
      return -1;
    }
    *out = read_first_line ((int) fd);
    if (!*out) {
      cli_error ("PBS_PASSWORD_FD", "%s", strerror (errno));
      return -1;
    }
    return 0;
  }
  v = getenv ("PBS_PASSWORD_FILE");
  if (v) {
    int fd = open (v, O_RDONLY | O_CLOEXEC);
    if (fd == -1) {
      cli_error (v, "%s", strerror (errno));
      return -1;
    }
    *out = read_first_line (fd);
    close (fd);
    if (!*out) {
      cli_error (v, "%s", strerror (errno));
      return -1;
    }
    return 0;
  }
  if (isatty (STDIN_FILENO))
    *out = prompt_tty ();
  return 0;
}

struct pbs_repo *
cli_open_repo (const char *spec, const char *fingerprint)
{
  struct pbs_repo_opts opts = { 0 };
  struct pbs_repo *r;
  char *secret = NULL;

  if (!spec)
    spec = getenv ("PBS_REPOSITORY");
  if (!spec || !*spec) {
    cli_error ("repository",
               "no repository given (--repository or PBS_REPOSITORY)");
    return NULL;
  }
  if (!strchr (spec, '/')) {
    /* A server (§2.3): a local datastore is always a path. */
    if (get_secret (&secret) == -1)
      return NULL;
    if (!fingerprint)
      fingerprint = getenv ("PBS_FINGERPRINT");
    if (fingerprint && !*fingerprint)
      fingerprint = NULL;
  }
  opts.secret = secret;
  opts.fingerprint = fingerprint;
  r = pbs_repo_open (spec, &opts);
  if (secret) {
    explicit_bzero (secret, strlen (secret));
    free (secret);
  }
  if (!r)
    cli_error (spec, "%s", pbs_errmsg ());
  return r;
}
