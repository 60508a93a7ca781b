/* test-remote-spec.c -- repository strings as proxmox-backup-client parses
 * them.  Oracle: BACKUP_REPO_URL_REGEX of pbs-api-types (docs/pbs-protocol.md
 * §2.3):
 * ^(?:(?:(userid|tokenid)@)?(dnsname|ipv4|\[ipv6\]):)?(?:([0-9]{1,5}):)?(safe-id)$
 * evaluated with leftmost-first semantics (Rust's regex crate), with the
 * defaults root@pam, localhost, 8007. */
#include <errno.h>
#include <string.h>

#include "remote-internal.h"
#include "tap.h"

static void
good (const char *spec, const char *auth, bool token, const char *host,
      unsigned port, const char *store)
{
  struct pbs_remote_spec s;
  int rc = pbs__remote_parse_spec (spec, &s);

  ok (rc == 0 && strcmp (s.auth_id, auth) == 0 && s.is_token == token
          && strcmp (s.host, host) == 0 && s.port == port
          && strcmp (s.store, store) == 0,
      "'%s' -> %s%s @ %s port %u store %s", spec, auth, token ? " (token)" : "",
      host, port, store);
  if (rc == 0)
    pbs__remote_spec_free (&s);
}

/* The HTTP authority (RFC 3986 3.2.2: an IPv6 address in brackets) used
 * for the Host header, the URLs and a proxy's CONNECT. */
static void
authority (const char *spec, const char *want)
{
  struct pbs_remote_spec s;
  int rc = pbs__remote_parse_spec (spec, &s);
  ok (rc == 0 && strcmp (s.authority, want) == 0, "'%s' authority %s (%s)",
      spec, want, rc == 0 ? s.authority : pbs_errmsg ());
  if (rc == 0)
    pbs__remote_spec_free (&s);
}

static void
bad (const char *spec)
{
  struct pbs_remote_spec s;
  int rc = pbs__remote_parse_spec (spec, &s);
  ok (rc == -1 && pbs_errno () == EINVAL
          && strstr (pbs_errmsg (), "unable to parse repository url"),
      "'%s' refused: %s", spec, rc == -1 ? pbs_errmsg () : "accepted");
  if (rc == 0)
    pbs__remote_spec_free (&s);
}

int
main (void)
{
  good ("store1", "root@pam", false, "localhost", 8007, "store1");
  good ("host:store1", "root@pam", false, "host", 8007, "store1");
  good ("user@pbs@host:store1", "user@pbs", false, "host", 8007, "store1");
  good ("user@pbs!tok@host:8007:store1", "user@pbs!tok", true, "host", 8007,
        "store1");
  good ("192.168.1.5:1234:store1", "root@pam", false, "192.168.1.5", 1234,
        "store1");
  good ("[fe80::1]:8007:store", "root@pam", false, "fe80::1", 8007, "store");
  good ("[::1]:store", "root@pam", false, "::1", 8007, "store");
  good ("admin@pam@backup.example.com:8008:tank", "admin@pam", false,
        "backup.example.com", 8008, "tank");
  good ("user@pbs!tok@[2001:db8::5]:9000:s_1", "user@pbs!tok", true,
        "2001:db8::5", 9000, "s_1");
  good ("a.b-c@pve@h:st.o-re", "a.b-c@pve", false, "h", 8007, "st.o-re");
  /* Leftmost-first: the optional host group takes "8007" before the port
   * group can (a DNS label may be all digits). */
  good ("8007:store", "root@pam", false, "8007", 8007, "store");
  good ("h:1:store", "root@pam", false, "h", 1, "store");
  authority ("store1", "localhost:8007");
  authority ("192.168.1.5:1234:store1", "192.168.1.5:1234");
  authority ("user@pbs!tok@[2001:db8::5]:9000:s_1", "[2001:db8::5]:9000");

  bad ("");
  bad ("host:");
  bad ("fe80::1:store");       /* IPv6 needs brackets */
  bad ("host:99999:store");    /* not a u16 */
  bad ("host:123456:store");   /* more than 5 digits */
  bad ("user@host:store");     /* user without realm */
  bad ("user@pbs!@host:store");
  bad ("host:store/sub");
  bad ("-host:store");
  bad ("host..x:store");
  bad ("[nothex]:store");
  bad ("us er@pbs@host:store");
  return tap_done ();
}
