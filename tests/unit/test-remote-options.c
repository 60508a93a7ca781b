/* test-remote-options.c -- what a remote repository depends on comes in
 * its open options, never from the process: the proxy (the tool reads
 * ALL_PROXY, the library does not), and the cancel descriptor (a
 * descriptor per repository, not a process-wide setting).
 *
 * The cancel case needs a server that never answers: a listening socket
 * of this test that accepts nothing, so the TCP connection is made (the
 * kernel's backlog) and the TLS handshake waits -- until the descriptor,
 * readable from the start, ends it with ECANCELED.  An API token needs no
 * round trip at open (§2.1), so only the session start connects. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "pbsproto.h"
#include "tap.h"

/* A listening socket on 127.0.0.1 that never accepts; its port. */
static int
silent_listener (unsigned *port)
{
  struct sockaddr_in a = { .sin_family = AF_INET };
  socklen_t len = sizeof a;
  int fd = socket (AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

  a.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
  if (fd == -1 || bind (fd, (struct sockaddr *) &a, len) == -1
      || listen (fd, 8) == -1
      || getsockname (fd, (struct sockaddr *) &a, &len) == -1)
    return -1;
  *port = ntohs (a.sin_port);
  return fd;
}

int
main (void)
{
  struct pbs_repo_opts o = { .secret = "s3cr3t" };
  struct pbs_repo *r;
  struct pbs_backup *b;
  char spec[128];
  unsigned port = 0;
  int lfd, p[2];
  time_t t0;

  /* The environment is not the library's: a proxy there changes nothing
   * (here it would be refused as unsupported if it were read). */
  setenv ("ALL_PROXY", "socks5://127.0.0.1:1080", 1);
  r = pbs_repo_open ("root@pam!tok@127.0.0.1:1:store1", &o);
  ok (r != NULL, "ALL_PROXY in the environment is not read (%s)",
      r ? "opened" : pbs_errmsg ());
  pbs_repo_close (r);
  unsetenv ("ALL_PROXY");

  o.proxy = "socks5://127.0.0.1:1080";
  r = pbs_repo_open ("root@pam!tok@127.0.0.1:1:store1", &o);
  ok (!r && pbs_errno () == EINVAL
          && strstr (pbs_errmsg (), "unsupported proxy scheme 'socks5'"),
      "the proxy option is used: socks5 refused (%s)", pbs_errmsg ());
  pbs_repo_close (r);
  o.proxy = "http://127.0.0.1:99999";
  r = pbs_repo_open ("root@pam!tok@127.0.0.1:1:store1", &o);
  ok (!r && pbs_errno () == EINVAL, "proxy port out of range refused (%s)",
      pbs_errmsg ());
  pbs_repo_close (r);
  o.proxy = "";
  r = pbs_repo_open ("root@pam!tok@127.0.0.1:1:store1", &o);
  ok (r != NULL, "an empty proxy option is no proxy");
  ok (pbs_repo_bytes_sent (r) == 0, "nothing sent yet");
  pbs_repo_close (r);
  o.proxy = NULL;

  lfd = silent_listener (&port);
  ok (lfd >= 0 && pipe (p) == 0 && write (p[1], "", 1) == 1,
      "a silent server on port %u and a readable cancel pipe", port);
  snprintf (spec, sizeof spec, "root@pam!tok@127.0.0.1:%u:store1", port);
  o.cancel_fd = p[0];
  r = pbs_repo_open (spec, &o);
  ok (r != NULL, "opened %s", spec);
  t0 = time (NULL);
  b = r ? pbs_backup_start (r, "", "vm", "100", 1700000000) : NULL;
  ok (!b && pbs_errno () == ECANCELED && !pbs_error_is_transient (),
      "the session start gives up on the repository's cancel descriptor "
      "(%s)", pbs_errmsg ());
  ok (time (NULL) - t0 < 8, "well before the 10 s connect timeout");
  pbs_backup_free (b);
  pbs_repo_close (r);

  /* Another repository in the same process without the option: its
   * cancel descriptor is its own (none), so it is not cancelled. */
  o.cancel_fd = 0;
  close (lfd); /* now refused at once: a plain, retryable failure */
  r = pbs_repo_open (spec, &o);
  b = r ? pbs_backup_start (r, "", "vm", "100", 1700000000) : NULL;
  ok (!b && pbs_errno () != ECANCELED && pbs_error_is_transient (),
      "a repository opened without it is not cancelled (%s)", pbs_errmsg ());
  pbs_backup_free (b);
  pbs_repo_close (r);
  return tap_done ();
}
