/* cli-password.c -- secrets from the environment or a terminal, the way
 * proxmox-backup-client finds them (pbs-client/src/tools/mod.rs), never
 * from argv.  The secret is never printed, not even in error messages. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "cli.h"

/* A secret's first line is all that counts; anything longer than this is
 * not a password. */
#define MAX_SECRET 65536

struct secret_buf {
  char *p;
  size_t len;
};

static void
secret_wipe (struct secret_buf *b)
{
  if (b->p) {
    explicit_bzero (b->p, b->len);
    free (b->p);
  }
  b->p = NULL;
  b->len = 0;
}

/* Read FD up to EOF, the first newline or MAX_SECRET bytes. */
static int
read_first_line (int fd, struct secret_buf *b)
{
  b->p = malloc (MAX_SECRET + 1);
  b->len = 0;
  if (!b->p)
    return -1;
  while (b->len < MAX_SECRET) {
    ssize_t n = read (fd, b->p + b->len, MAX_SECRET - b->len);
    if (n == -1 && errno == EINTR)
      continue;
    if (n == -1) {
      secret_wipe (b);
      return -1;
    }
    if (n == 0)
      break;
    b->len += (size_t) n;
    if (memchr (b->p + b->len - n, '\n', (size_t) n))
      break;
  }
  b->p[b->len] = '\0';
  b->p[strcspn (b->p, "\n")] = '\0';
  return 0;
}

static char *
take (struct secret_buf *b)
{
  char *s = strdup (b->p);
  secret_wipe (b);
  return s;
}

/* Variables that carry a secret or say where one is: PBS_PASSWORD and
 * PBS_ENCRYPTION_PASSWORD with their _FD, _FILE and _CMD forms. */
static bool
secret_var (const char *entry)
{
  static const char *const prefix[] = { "PBS_PASSWORD",
                                        "PBS_ENCRYPTION_PASSWORD" };
  size_t i, n;

  for (i = 0; i < sizeof prefix / sizeof *prefix; i++) {
    n = strlen (prefix[i]);
    if (strncmp (entry, prefix[i], n) == 0
        && (entry[n] == '=' || entry[n] == '_'))
      return true;
  }
  return false;
}

/* The environment without the secret variables, for the command that
 * prints one secret: it has no business seeing the others (a password
 * command must not learn the encryption password).  Built before fork,
 * as the child may not allocate.  The strings are borrowed. */
static char **
scrubbed_environ (void)
{
  extern char **environ;
  size_t n = 0, i, j = 0;
  char **env;

  while (environ && environ[n])
    n++;
  env = calloc (n + 1, sizeof *env);
  if (!env)
    return NULL;
  for (i = 0; i < n; i++)
    if (!secret_var (environ[i]))
      env[j++] = environ[i];
  return env;
}

/* PREFIX_CMD: /bin/sh -c CMD, stdout is the secret. */
static char *
from_command (const char *var, const char *cmd, struct cli_err *err)
{
  struct secret_buf b = { NULL, 0 };
  int pfd[2], status;
  pid_t pid;
  char *s = NULL, **env;

  env = scrubbed_environ ();
  if (!env) {
    cli_err_set (err, var, "cannot run the command: out of memory");
    return NULL;
  }
  if (pipe2 (pfd, O_CLOEXEC) == -1) {
    cli_err_set (err, var, "cannot run the command: %m");
    free (env);
    return NULL;
  }
  pid = fork ();
  if (pid == -1) {
    cli_err_set (err, var, "cannot run the command: %m");
    close (pfd[0]);
    close (pfd[1]);
    free (env);
    return NULL;
  }
  if (pid == 0) {
    dup2 (pfd[1], STDOUT_FILENO);
    execle ("/bin/sh", "sh", "-c", cmd, (char *) NULL, env);
    _exit (127);
  }
  free (env);
  close (pfd[1]);
  if (read_first_line (pfd[0], &b) == -1)
    cli_err_set (err, var, "cannot read the command's output: %m");
  else {
    /* Drain the rest, so that the command does not die of SIGPIPE. */
    char sink[4096];
    ssize_t n;
    do
      n = read (pfd[0], sink, sizeof sink);
    while (n > 0 || (n == -1 && errno == EINTR));
  }
  close (pfd[0]);
  while (waitpid (pid, &status, 0) == -1 && errno == EINTR)
    ;
  if (b.p && (!WIFEXITED (status) || WEXITSTATUS (status) != 0)) {
    cli_err_set (err, var, "the command failed (status %d)",
                   WIFEXITED (status) ? WEXITSTATUS (status) : -1);
    secret_wipe (&b);
  }
  if (b.p)
    s = take (&b);
  return s;
}

static char *
from_fd (const char *var, const char *val, struct cli_err *err)
{
  struct secret_buf b = { NULL, 0 };
  char *end;
  long fd;

  errno = 0;
  fd = strtol (val, &end, 10);
  if (errno || end == val || *end || fd < 0 || fd > INT_MAX) {
    cli_err_set (err, var, "not a file descriptor number");
    return NULL;
  }
  if (read_first_line ((int) fd, &b) == -1) {
    cli_err_set (err, var, "cannot read file descriptor %ld: %m", fd);
    return NULL;
  }
  close ((int) fd);
  return take (&b);
}

static char *
from_file (const char *var, const char *path, struct cli_err *err)
{
  struct secret_buf b = { NULL, 0 };
  int fd = open (path, O_RDONLY | O_CLOEXEC);

  if (fd == -1) {
    cli_err_set (err, var, "cannot open %s: %m", path);
    return NULL;
  }
  if (read_first_line (fd, &b) == -1) {
    cli_err_set (err, var, "cannot read %s: %m", path);
    close (fd);
    return NULL;
  }
  close (fd);
  return take (&b);
}

/* One line from the terminal with echo off. */
static char *
ask (int tty, const char *prompt)
{
  struct termios old, quiet;
  struct secret_buf b = { NULL, 0 };
  bool restore;

  /* Echo off before the prompt appears: whoever answers right after the
   * prompt must not be flushed away nor echoed. */
  restore = tcgetattr (tty, &old) == 0;
  if (restore) {
    quiet = old;
    quiet.c_lflag &= ~(tcflag_t) ECHO;
    quiet.c_lflag |= ECHONL;
    tcsetattr (tty, TCSAFLUSH, &quiet);
  }
  if (write (tty, prompt, strlen (prompt)) < 0) {
    if (restore)
      tcsetattr (tty, TCSAFLUSH, &old);
    return NULL;
  }
  read_first_line (tty, &b);
  if (restore)
    tcsetattr (tty, TCSAFLUSH, &old);
  return b.p ? take (&b) : NULL;
}

static char *
read_secret (const char *env_prefix, const char *prompt, bool confirm,
             struct cli_err *err)
{
  static const char *const suffix[] = { "", "_FD", "_FILE", "_CMD" };
  char var[128], *s, *again;
  const char *val;
  size_t i;
  int tty;

  cli_err_clear (err); /* a source may give nothing and say nothing */
  for (i = 0; i < 4; i++) {
    snprintf (var, sizeof var, "%s%s", env_prefix, suffix[i]);
    val = getenv (var);
    if (!val)
      continue;
    switch (i) {
    case 0: {
      /* The first line only, as for the other sources. */
      size_t n = strcspn (val, "\n");
      s = strndup (val, n);
      if (!s)
        cli_err_set (err, var, "out of memory");
      return s;
    }
    case 1:
      return from_fd (var, val, err);
    case 2:
      return from_file (var, val, err);
    default:
      return from_command (var, val, err);
    }
  }
  if (!isatty (STDIN_FILENO)) {
    cli_err_set (err, env_prefix, "no password given: set %s (or %s_FD, "
                 "_FILE, _CMD) or run on a terminal", env_prefix, env_prefix);
    return NULL;
  }
  tty = open ("/dev/tty", O_RDWR | O_CLOEXEC);
  if (tty == -1) {
    cli_err_set (err, env_prefix, "cannot open the terminal: %m");
    return NULL;
  }
  s = ask (tty, prompt);
  if (s && confirm) {
    again = ask (tty, "Verify Password: ");
    if (!again || strcmp (s, again) != 0) {
      explicit_bzero (s, strlen (s));
      free (s);
      s = NULL;
      if (again)
        cli_err_set (err, env_prefix, "passwords do not match");
      else
        cli_err_set (err, env_prefix, "cannot read the password");
    }
    if (again) {
      explicit_bzero (again, strlen (again));
      free (again);
    }
  } else if (!s)
    cli_err_set (err, env_prefix, "cannot read the password");
  close (tty);
  return s;
}

char *
cli_read_secret (const char *env_prefix, const char *prompt,
                 struct cli_err *err)
{
  return read_secret (env_prefix, prompt, false, err);
}

char *
cli_read_new_secret (const char *env_prefix, const char *prompt,
                     struct cli_err *err)
{
  return read_secret (env_prefix, prompt, true, err);
}

/* Our own copies of a secret are wiped after use, but OpenSSL, libcurl
 * and jansson keep theirs in freed memory (the request that carried a
 * token, the login body), which a core file would show.  So the process
 * never writes one, and other processes of the same user cannot read its
 * memory either (PR_SET_DUMPABLE also guards /proc/PID/mem and ptrace).
 * Programs started for PBS_PASSWORD_CMD get the defaults back at exec,
 * except the core size limit, which they should not need. */
void
cli_protect_secrets (void)
{
  struct rlimit none = { 0, 0 };

  (void) setrlimit (RLIMIT_CORE, &none);
  (void) prctl (PR_SET_DUMPABLE, 0, 0, 0, 0);
}
