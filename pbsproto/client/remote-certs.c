/* remote-certs.c -- the server certificate policy of proxmox-backup-client
 * (§1.2), in one place for every connection (remote-conn.c installs it
 * into libcurl's SSL_CTX).
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
 * here), and a pinned self-signed server is the common PBS setup.
 * The library reads no environment: OpenSSL finds the system CAs. */
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

static bool
is_ip_literal (const char *host)
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

/* Whether the chain of SCTX verifies with what STORE holds now: a trial
 * on a context of its own, as a context verifies only once. */
static bool
verifies_now (X509_STORE *store, X509_STORE_CTX *sctx)
{
  X509_STORE_CTX *t = X509_STORE_CTX_new ();
  bool ok = t
            && X509_STORE_CTX_init (t, store, X509_STORE_CTX_get0_cert (sctx),
                                    X509_STORE_CTX_get0_untrusted (sctx))
                   == 1
            && X509_VERIFY_PARAM_set1 (X509_STORE_CTX_get0_param (t),
                                       X509_STORE_CTX_get0_param (sctx))
                   == 1
            && X509_verify_cert (t) == 1;
  X509_STORE_CTX_free (t);
  ERR_clear_error ();
  return ok;
}

/* The system CAs where SSL_CTX_set_default_verify_paths finds them --
 * OpenSSL itself reads SSL_CERT_DIR and SSL_CERT_FILE, or uses its
 * defaults -- plus the CA_FILE option.  The hashed directory first: it
 * is read lazily, one issuer at a time.  Only if the chain does not
 * verify with it is the bundle file parsed (a missing one is no error). */
static int
load_cas (X509_STORE *store, X509_STORE_CTX *sctx, const char *ca_file)
{
  X509_LOOKUP *dir = X509_STORE_add_lookup (store, X509_LOOKUP_hash_dir ());
  X509_LOOKUP *file;

  if (!dir || X509_LOOKUP_add_dir (dir, NULL, X509_FILETYPE_DEFAULT) != 1)
    return -1;
  if (ca_file && X509_STORE_load_file (store, ca_file) != 1)
    return -1;
  if (verifies_now (store, sctx))
    return 0;
  file = X509_STORE_add_lookup (store, X509_LOOKUP_file ());
  if (!file)
    return -1;
  (void) X509_LOOKUP_load_file (file, NULL, X509_FILETYPE_DEFAULT);
  ERR_clear_error ();
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
    if (load_cas (X509_STORE_CTX_get0_store (sctx), sctx, p->ca_file)
        == -1) {
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
  if (is_ip_literal (r->spec.host)
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
