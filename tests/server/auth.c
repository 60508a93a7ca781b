/* auth.c -- API tokens, ticket login and CSRF tokens, shaped like
 * proxmox-auth-api's (docs/pbs-protocol.md §2).
 *
 * Tickets are "PBS:<userid>:<8 upper-case hex time>::<signature>".  Real
 * PBS signs them with its private key; we use HMAC-SHA256 with a key made
 * at start-up, which a client can not tell apart (it treats the ticket as
 * an opaque string).  CSRF tokens are "<8 hex time>:<base64 HMAC>". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "server.h"

static void
hmac_b64 (const uint8_t key[32], const char *msg, char out[64])
{
  uint8_t mac[32];
  unsigned maclen = sizeof mac;
  char *eq;

  HMAC (EVP_sha256 (), key, 32, (const uint8_t *) msg, strlen (msg), mac,
        &maclen);
  EVP_EncodeBlock ((unsigned char *) out, mac, 32);
  /* proxmox uses base64 without padding */
  eq = strchr (out, '=');
  if (eq)
    *eq = 0;
}

static bool
time_valid (long t)
{
  long age = (long) time (NULL) - t;
  /* proxmox-auth-api: tickets from up to 5 minutes in the future (clock
   * skew) and up to the lifetime in the past are accepted. */
  return age > -300 && age < SRV_TICKET_LIFETIME;
}

static bool
parse_hex_time (const char *s, size_t n, long *out)
{
  char buf[16], *end;

  if (n != 8)
    return false;
  memcpy (buf, s, 8);
  buf[8] = 0;
  *out = strtol (buf, &end, 16);
  return *end == 0;
}

static char *
make_ticket (const char *userid)
{
  char data[400], sig[64], *t;
  size_t len;

  snprintf (data, sizeof data, "PBS:%s:%08lX", userid, (long) time (NULL));
  hmac_b64 (srv_config.ticket_key, data, sig);
  len = strlen (data) + strlen (sig) + 3;
  t = malloc (len);
  if (t)
    snprintf (t, len, "%s::%s", data, sig);
  return t;
}

/* Returns the user id in USERID (size 256) or -1 with ERR (the texts of
 * proxmox-auth-api src/ticket.rs; they only reach the log). */
static int
check_ticket (const char *ticket, char *userid, const char **err)
{
  const char *sep, *u, *ts;
  char data[400], sig[64];
  long t;

  if (strncmp (ticket, "PBS:", 4) != 0) {
    *err = "ticket with invalid prefix";
    return -1;
  }
  sep = strstr (ticket, "::");
  if (sep == NULL || (size_t) (sep - ticket) >= sizeof data) {
    *err = "ticket without signature";
    return -1;
  }
  memcpy (data, ticket, (size_t) (sep - ticket));
  data[sep - ticket] = 0;
  hmac_b64 (srv_config.ticket_key, data, sig);
  if (strlen (sig) != strlen (sep + 2)
      || CRYPTO_memcmp (sig, sep + 2, strlen (sig)) != 0) {
    *err = "ticket with invalid signature";
    return -1;
  }
  u = data + 4;
  ts = strrchr (u, ':');
  if (ts == NULL || !parse_hex_time (ts + 1, strlen (ts + 1), &t)
      || (size_t) (ts - u) >= 256) {
    *err = "invalid ticket";
    return -1;
  }
  if (!time_valid (t)) {
    *err = (long) time (NULL) - t <= -300
             ? "invalid ticket - timestamp newer than expected"
             : "invalid ticket - expired";
    return -1;
  }
  memcpy (userid, u, (size_t) (ts - u));
  userid[ts - u] = 0;
  return 0;
}

static char *
make_csrf (const char *userid)
{
  char msg[400], sig[64], *out;
  long now = (long) time (NULL);

  snprintf (msg, sizeof msg, "%08lX:%s", now, userid);
  hmac_b64 (srv_config.csrf_key, msg, sig);
  out = malloc (80);
  if (out)
    snprintf (out, 80, "%08lX:%s", now, sig);
  return out;
}

static bool
check_csrf (const char *token, const char *userid)
{
  const char *colon = strchr (token, ':');
  char msg[400], sig[64];
  long t;

  if (colon == NULL || !parse_hex_time (token, (size_t) (colon - token), &t)
      || !time_valid (t))
    return false;
  snprintf (msg, sizeof msg, "%.8s:%s", token, userid);
  hmac_b64 (srv_config.csrf_key, msg, sig);
  return strlen (sig) == strlen (colon + 1)
         && CRYPTO_memcmp (sig, colon + 1, strlen (sig)) == 0;
}

/* The value of cookie NAME in a Cookie header, malloc'd, or NULL. */
static char *
cookie_value (const char *hdr, const char *name)
{
  size_t nl = strlen (name);
  const char *p = hdr;

  while (p && *p) {
    while (*p == ' ' || *p == ';')
      p++;
    if (!strncmp (p, name, nl) && p[nl] == '=') {
      const char *v = p + nl + 1;
      size_t len = strcspn (v, ";");
      return srv_percent_decode (v, len, false);
    }
    p = strchr (p, ';');
  }
  return NULL;
}

static const struct srv_token *
find_token (const char *id)
{
  size_t i;

  for (i = 0; i < srv_config.ntokens; i++)
    if (!strcmp (srv_config.tokens[i].id, id))
      return &srv_config.tokens[i];
  return NULL;
}

static const struct srv_user *
find_user (const char *id)
{
  size_t i;

  for (i = 0; i < srv_config.nusers; i++)
    if (!strcmp (srv_config.users[i].id, id))
      return &srv_config.users[i];
  return NULL;
}

static bool
secret_eq (const char *a, const char *b)
{
  size_t la = strlen (a);
  return la == strlen (b) && CRYPTO_memcmp (a, b, la) == 0;
}

int
srv_authenticate (const struct srv_request *r, struct srv_auth *out,
                  char *err, size_t errlen)
{
  const char *cookie = srv_header (r, "cookie");
  const char *authz = srv_header (r, "authorization");
  char *ticket = cookie ? cookie_value (cookie, "PBSAuthCookie") : NULL;

  memset (out, 0, sizeof *out);
  /* The cookie wins over the Authorization header (extract_auth_data). */
  if (ticket) {
    const char *e = NULL, *csrf;
    int rc = check_ticket (ticket, out->auth_id, &e);
    free (ticket);
    if (rc == -1) {
      snprintf (err, errlen, "%s", e);
      return -1;
    }
    if (find_user (out->auth_id) == NULL) {
      snprintf (err, errlen, "user account disabled or expired.");
      return -1;
    }
    if (strcmp (r->method, "GET") != 0) {
      csrf = srv_header (r, "csrfpreventiontoken");
      if (csrf == NULL) {
        snprintf (err, errlen, "missing CSRF prevention token");
        return -1;
      }
      if (!check_csrf (csrf, out->auth_id)) {
        snprintf (err, errlen, "invalid csrf token - invalid signature.");
        return -1;
      }
    }
    return 0;
  }
  if (authz && !strncmp (authz, "PBSAPIToken", 11)
      && (authz[11] == ' ' || authz[11] == '=')) {
    const char *id = authz + 12, *colon = strchr (id, ':');
    const struct srv_token *t;
    char *secret;
    bool good;

    if (colon == NULL || (size_t) (colon - id) >= sizeof out->auth_id) {
      snprintf (err, errlen, "failed to split API token header");
      return -1;
    }
    memcpy (out->auth_id, id, (size_t) (colon - id));
    out->auth_id[colon - id] = 0;
    out->is_token = true;
    t = find_token (out->auth_id);
    if (t == NULL || t->expired) {
      snprintf (err, errlen, "user account or token disabled or expired.");
      return -1;
    }
    /* The client percent-encodes the secret. */
    secret = srv_percent_decode (colon + 1, strlen (colon + 1), false);
    if (secret == NULL) {
      snprintf (err, errlen, "failed to decode API token header");
      return -1;
    }
    good = secret_eq (secret, t->secret);
    OPENSSL_cleanse (secret, strlen (secret));
    free (secret);
    if (!good) {
      /* proxmox-sys crypt.rs verify_crypt_pw */
      snprintf (err, errlen, "invalid credentials");
      return -1;
    }
    return 0;
  }
  /* Another Authorization scheme counts as no credentials
   * (extract_auth_data, AuthError::NoData). */
  snprintf (err, errlen, "no authentication credentials provided.");
  return -1;
}

int
srv_login (const char *username, const char *password, char **ticket,
           char **csrf)
{
  const struct srv_user *u = find_user (username);
  char userid[256];
  const char *e;

  if (u == NULL)
    return -1;
  /* Ticket renewal: the old ticket as the password. */
  if (!strncmp (password, "PBS:", 4)) {
    if (check_ticket (password, userid, &e) == -1
        || strcmp (userid, username) != 0)
      return -1;
  }
  else if (!secret_eq (password, u->password))
    return -1;
  *ticket = make_ticket (username);
  *csrf = make_csrf (username);
  if (*ticket == NULL || *csrf == NULL) {
    free (*ticket);
    free (*csrf);
    return -1;
  }
  return 0;
}

bool
srv_owner_ok (const char *owner, const char *auth_id)
{
  const char *bang;

  if (!strcmp (owner, auth_id))
    return true;
  /* A user may use groups owned by its own tokens, not the reverse. */
  bang = strchr (owner, '!');
  return bang && strchr (auth_id, '!') == NULL
         && strlen (auth_id) == (size_t) (bang - owner)
         && !strncmp (owner, auth_id, (size_t) (bang - owner));
}
