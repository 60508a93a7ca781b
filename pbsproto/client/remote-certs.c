/* remote-certs.c -- the server certificate policy of proxmox-backup-client
 * (docs/pbs-protocol.md §1.2), in one place for both transports: our own TLS
 * connection (remote-tls.c, the protocol upgrades) and libcurl's
 * (remote-rest.c, the plain REST calls).
 *
 * The rule: accept the certificate if OpenSSL validates the chain against
 * the system CAs (plus an optional CA file) and the host name, or else if
 * the leaf's SHA-256 fingerprint equals the pinned one.  There is no
 * insecure mode.  The decision is taken inside the handshake by
 * SSL_CTX_set_cert_verify_callback, so nothing -- not even a login
 * request -- is sent to a server that fails it.
 *
 * A matching pin is checked first: it accepts whatever the CAs say, so
 * the system CAs are then never loaded.  Loading them is the slow part of
 * a connection (parsing the bundle named by SSL_CERT_FILE took 17 ms
 * here), and a pinned self-signed server is the common PBS setup. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "remote-internal.h"

bool
pbs__is_ip_literal (const char *host)
{
  struct in6_addr a6;
  struct in_addr a4;
  return inet_pton (AF_INET, host, &a4) == 1
         || inet_pton (AF_INET6, host, &a6) == 1;
}

/* SHA-256 over the certificate's DER, "aa:bb:..." (§1.2). */
static int
fingerprint (X509 *cert, char out[96])
{
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;

  if (!cert || !X509_digest (cert, EVP_sha256 (), md, &mdlen) || mdlen != 32)
    return -1;
  for (unsigned i = 0; i < 32; i++)
    snprintf (out + 3 * i, 4, i == 31 ? "%02x" : "%02x:", md[i]);
  return 0;
}

/* Whether DIR holds OpenSSL's hash links ("1a2b3c4d.0"), as Debian's
 * update-ca-certificates makes them. */
static bool
has_hash_links (const char *dir)
{
  DIR *d = opendir (dir);
  struct dirent *e;
  bool found = false;

  if (!d)
    return false;
  while (!found && (e = readdir (d))) {
    size_t n = strlen (e->d_name);
    found = n == 10 && strspn (e->d_name, "0123456789abcdef") == 8
            && strcmp (e->d_name + 8, ".0") == 0;
  }
  closedir (d);
  return found;
}

/* The system CAs where SSL_CTX_set_default_verify_paths finds them
 * (SSL_CERT_DIR, SSL_CERT_FILE, OpenSSL's defaults), but through the
 * hashed directory when there is one, which OpenSSL reads lazily, one
 * issuer at a time.  Without hash links the default bundle is read. */
static int
load_cas (X509_STORE *store, const char *ca_file)
{
  const char *file = getenv (X509_get_default_cert_file_env ());
  const char *dir = getenv (X509_get_default_cert_dir_env ());

  if (!dir || !*dir)
    dir = X509_get_default_cert_dir ();
  if (has_hash_links (dir)) {
    if (X509_STORE_load_path (store, dir) != 1)
      return -1;
  }
  else if (!file || !*file)
    file = X509_get_default_cert_file ();
  if (file && *file && access (file, R_OK) == 0
      && X509_STORE_load_file (store, file) != 1)
    return -1;
  if (ca_file && X509_STORE_load_file (store, ca_file) != 1)
    return -1;
  return 0;
}

static int
verify_peer (X509_STORE_CTX *sctx, void *arg)
{
  struct pbs_cert_policy *p = arg;

  if (fingerprint (X509_STORE_CTX_get0_cert (sctx), p->seen_fp) == -1) {
    snprintf (p->reason, sizeof p->reason, "no usable certificate");
    p->refused = true;
    return 0;
  }
  if (p->pin && strcmp (p->pin, p->seen_fp) == 0) {
    X509_STORE_CTX_set_error (sctx, X509_V_OK);
    return 1;
  }
  if (!p->cas_loaded) {
    if (load_cas (X509_STORE_CTX_get0_store (sctx), p->ca_file) == -1) {
      unsigned long e = ERR_peek_last_error ();
      snprintf (p->reason, sizeof p->reason, "cannot load the CAs: %s",
                e ? ERR_reason_error_string (e) : "unknown error");
      p->refused = true;
      return 0;
    }
    p->cas_loaded = true;
  }
  if (X509_verify_cert (sctx) == 1)
    return 1;
  snprintf (p->reason, sizeof p->reason, "%s",
            X509_verify_cert_error_string (X509_STORE_CTX_get_error (sctx)));
  p->refused = true;
  return 0;
}

int
pbs__cert_policy_apply (SSL_CTX *ctx, struct pbs_cert_policy *p,
                        const struct pbs_remote *r)
{
  X509_VERIFY_PARAM *param = SSL_CTX_get0_param (ctx);

  memset (p, 0, sizeof *p);
  p->pin = r->fingerprint;
  p->ca_file = r->ca_file;
  if (r->ca_file && access (r->ca_file, R_OK) != 0) {
    pbs__set_error (EINVAL, "%s: cannot load CA file: %s", r->ca_file,
                    strerror (errno));
    return -1;
  }
  /* The host name is part of the chain check (a pin ignores it, as the
   * official client's fingerprint check does). */
  if (pbs__is_ip_literal (r->spec.host)
          ? X509_VERIFY_PARAM_set1_ip_asc (param, r->spec.host) != 1
          : X509_VERIFY_PARAM_set1_host (param, r->spec.host, 0) != 1) {
    pbs__set_error (EINVAL, "%s: cannot check this host name", r->spec.host);
    return -1;
  }
  SSL_CTX_set_verify (ctx, SSL_VERIFY_PEER, NULL);
  SSL_CTX_set_cert_verify_callback (ctx, verify_peer, p);
  return 0;
}

bool
pbs__cert_policy_error (const struct pbs_cert_policy *p, const char *host)
{
  if (!p->refused)
    return false;
  if (!p->seen_fp[0])
    pbs__set_error (EACCES, "%s: server sent %s", host, p->reason);
  else if (p->pin)
    pbs__set_error (EACCES,
                    "%s: certificate fingerprint %s does not match the "
                    "pinned fingerprint (%s)",
                    host, p->seen_fp, p->reason);
  else
    pbs__set_error (EACCES,
                    "%s: certificate not trusted (%s); its fingerprint is "
                    "%s (pin it with --fingerprint or PBS_FINGERPRINT)",
                    host, p->reason, p->seen_fp);
  return true;
}
