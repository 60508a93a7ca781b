/* server.h -- pbs-test-server: a strict PBS-compatible HTTPS server for the
 * tests.  It serves pbsproto's datastore code (pbs-datastore.h) over the
 * same wire protocol as a Proxmox Backup Server 3.2: HTTP/1.1 REST calls,
 * and the backup/reader protocols reached through an HTTP/1.1 Upgrade and
 * then spoken as HTTP/2 on the same TLS connection
 * (docs/pbs-protocol.md sections 1-4, 6.4, 8, 8b).
 *
 * One thread per connection.  The value rules (chunk digests, offsets,
 * owners, locks, ...) live in pbs_ds_*; this program adds what needs the
 * HTTP layer: authentication, routing, parameter schemas, content types,
 * body limits and the response formats. */
#ifndef PBS_TEST_SERVER_H
#define PBS_TEST_SERVER_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <openssl/ssl.h>

#include "pbs-datastore.h"

/* JSON and form bodies must stay under this (proxmox-rest-server 3.x). */
#define SRV_MAX_PARAM_BODY (64 * 1024)
/* Request line + headers of an HTTP/1.1 request. */
#define SRV_MAX_HEADER (16 * 1024)
/* Path plus query (proxmox-rest-server MAX_URI_QUERY_LENGTH -> 414). */
#define SRV_MAX_URI 3072
/* The ticket and CSRF token lifetime (proxmox-auth-api). */
#define SRV_TICKET_LIFETIME 7200

struct srv_store {
  char *name;
  char *path;
  struct pbs_datastore *ds;
};

struct srv_token {
  char *id;     /* user@realm!name */
  char *secret;
  bool expired;
};

struct srv_user {
  char *id;     /* user@realm */
  char *password;
};

struct srv_config {
  struct srv_store *stores;
  size_t nstores;
  struct srv_token *tokens;
  size_t ntokens;
  struct srv_user *users;
  size_t nusers;
  double auth_delay;          /* seconds before a 401 answer */
  uint8_t ticket_key[32];     /* HMAC key for tickets (random per run) */
  uint8_t csrf_key[32];       /* HMAC key for CSRF tokens */
};

extern struct srv_config srv_config;

/* Log one line to stderr with a timestamp (never secrets). */
__attribute__ ((format (printf, 1, 2))) void srv_log (const char *fmt, ...);

struct srv_store *srv_find_store (const char *name);

/* ------------------------------------------------------- connection I/O */

struct srv_conn {
  int fd;
  SSL *ssl;
  unsigned id;     /* for the log */
  size_t slot;     /* in main.c's thread table */
  /* Bytes read from TLS but not consumed yet (after the header block). */
  uint8_t *buf;
  size_t len, cap;
};

int srv_read_more (struct srv_conn *c);     /* >0 bytes, 0 EOF, -1 error */
int srv_write_all (struct srv_conn *c, const void *p, size_t n);
void srv_consume (struct srv_conn *c, size_t n);

/* ------------------------------------------------------ HTTP/1.1 layer */

struct srv_header {
  char *name;  /* lower-cased */
  char *value;
};

struct srv_request {
  char *method;
  char *target;      /* path?query as sent */
  char *path;        /* percent-decoded path */
  char *query;       /* raw query or NULL */
  int minor_version; /* HTTP/1.<minor> */
  struct srv_header *headers;
  size_t nheaders;
  uint8_t *body;
  size_t body_len;
};

const char *srv_header (const struct srv_request *r, const char *name);

/* Serve one TLS connection until it closes. */
void srv_serve_connection (struct srv_conn *c);

/* --------------------------------------------------------- authentication */

struct srv_auth {
  char auth_id[256]; /* user@realm or user@realm!token */
  bool is_token;
};

/* Authenticate a request as PBS does: PBSAuthCookie ticket (+ CSRF token
 * on non-GET) wins over "Authorization: PBSAPIToken".  0 or -1 with the
 * reason in ERR (proxmox-auth-api's text; PBS only logs it and answers
 * "authentication failed"). */
int srv_authenticate (const struct srv_request *r, struct srv_auth *out,
                      char *err, size_t errlen);
/* POST /access/ticket: check USERNAME/PASSWORD (or a valid ticket as the
 * password) and mint a ticket and CSRF token.  0 or -1. */
int srv_login (const char *username, const char *password, char **ticket,
               char **csrf);
/* Does AUTH own a group whose owner file says OWNER (PBS
 * check_backup_owner: equal, or OWNER is a token of AUTH's user)? */
bool srv_owner_ok (const char *owner, const char *auth_id);

/* ------------------------------------------------------------ parameters */

enum srv_ptype {
  SRV_P_STRING,
  SRV_P_INT,
  SRV_P_BOOL,
  SRV_P_DIGEST_LIST, /* array of lower-case sha256 hex */
  SRV_P_INT_LIST,    /* array of integers */
};

struct srv_param {
  const char *name;
  enum srv_ptype type;
  bool optional;
  int64_t min, max;               /* integers: value; strings: length */
  bool (*format) (const char *s); /* strings and list items, or NULL */
};

/* An object schema: PARAMS terminated by a NULL name. */

/* Parse the query "a=b&c=d" (form encoding: '+' is a space, %XX) into
 * OBJ, converting and checking each value as its schema type wants it
 * (arrays only for list types), as parse_parameter_strings does.  Errors
 * go to ERRS in input order (ParameterError style).  FORM may be NULL. */
void srv_form_to_json (const char *form, size_t len,
                       const struct srv_param *schema, json_t *obj,
                       json_t *errs);
/* Verify OBJ against SCHEMA as proxmox-schema does for a JSON object:
 * unknown keys, types, ranges, formats, missing required keys. */
void srv_verify_params (json_t *obj, const struct srv_param *schema,
                        json_t *errs);
/* "parameter verification failed - 'x': ..." (one error) or
 * "parameter verification failed:\n- 'x': ...\n- 'y': ..." (several), or
 * NULL when ERRS is empty.  malloc'd. */
char *srv_param_errors_text (json_t *errs);
/* Query-only parameters (upload/download handlers and the upgrade).
 * Returns a new object, or NULL with *ERRTEXT malloc'd. */
json_t *srv_query_params (const char *query, const struct srv_param *schema,
                          char **errtext);
/* Parameters of a "sync" handler: JSON body (query ignored) or form body
 * plus query; other content types are refused.  NULL with *ERRTEXT. */
json_t *srv_sync_params (const char *content_type, const uint8_t *body,
                         size_t len, const char *query,
                         const struct srv_param *schema, char **errtext);

/* Like srv_sync_params, plus URI parameters (NAME, VALUE, ..., NULL)
 * as the router adds them (the store of .../datastore/{store}/...). */
json_t *srv_sync_params_uri (const char *content_type, const uint8_t *body,
                             size_t len, const char *query,
                             const char *const *uri_params,
                             const struct srv_param *schema,
                             char **errtext);
/* Is S[0..LEN) valid UTF-8 (Rust's str::from_utf8)?  If not,
 * *VALID_UP_TO and *ERROR_LEN (0 = incomplete at the end) as in Rust's
 * Utf8Error. */
bool srv_utf8_check (const uint8_t *s, size_t len, size_t *valid_up_to,
                     size_t *error_len);

/* Formats used by the schemas. */
bool srv_fmt_safe_id (const char *s);
bool srv_fmt_digest (const char *s);
bool srv_fmt_backup_type (const char *s);
bool srv_fmt_backup_id (const char *s);
bool srv_fmt_ns (const char *s);
bool srv_fmt_userid (const char *s);

/* Percent-decode S[0..LEN) (form: '+' -> ' '); a '%' without two hex
 * digits stays as it is (percent-encoding crate).  malloc'd,
 * NUL-terminated; NULL on an embedded NUL. */
char *srv_percent_decode (const char *s, size_t len, bool form);
/* normalize_path (proxmox-rest-server src/lib.rs) of the raw path
 * S[0..LEN) -- hyper does not percent-decode it: empty components
 * dropped, "/a/b" or "" (malloc'd); NULL if a component starts with '.'
 * (answered 400 "path contains illegal components"). */
char *srv_normalize_path (const char *s, size_t len);

/* ------------------------------------------------------------ responses */

/* A handler's answer: STATUS with BODY of LEN bytes (malloc'd, owned) and
 * CONTENT_TYPE (static; NULL: no content-type header, as PBS's answers
 * to bad URIs, 414 and HTTP/2 parameter errors). */
struct srv_reply {
  int status;
  const char *content_type;
  uint8_t *body;
  size_t len;
  bool streamed; /* no content-length (downloads, §8b) */
};

#define SRV_CT_JSON "application/json;charset=UTF-8"
#define SRV_CT_OCTET "application/octet-stream"

/* {"data": VALUE} compact (VALUE stolen; NULL = null). */
void srv_reply_data (struct srv_reply *r, json_t *value);
/* STATUS (0: 400) with the plain MESSAGE as body, JSON content type. */
__attribute__ ((format (printf, 3, 4))) void
srv_reply_error (struct srv_reply *r, int status, const char *fmt, ...);
/* The datastore's error of the failed call (pbs_errno; its text as PBS
 * words it, srv_ds_error_text) with the status PBS's handler answers: 400 (an error of a handler), 500 for
 * ENOMEM, ENOENT_STATUS for ENOENT (404 where PBS answers "not found")
 * and ENOSPC_STATUS for ENOSPC (500 where PBS's handler reports a failed
 * write as a server error). */
void srv_reply_ds_error (struct srv_reply *r, int enoent_status,
                         int enospc_status);
/* The calling thread's datastore error as PBS's handler words it (Rust's
 * io::Error form, its texts; ds-errors.c), into BUF; returns BUF. */
const char *srv_ds_error_text (char *buf, size_t n);
/* PBS's lower-case SHA-256 hex (SHA256_HEX_REGEX, checked by the schema)
 * into 32 bytes; -1 if S is not that. */
int srv_digest_parse (const char *s, uint8_t out[32]);
void srv_reply_free (struct srv_reply *r);

/* ----------------------------------------------------- REST (HTTP/1.1) */

/* Handle a plain REST call (not an upgrade). */
void srv_rest (const struct srv_request *req, struct srv_reply *rep);
/* A REST call's parameters (body and query) against SCHEMA; NULL after
 * answering 400 with the schema error in REP. */
json_t *srv_params_or_reply (const struct srv_request *req,
                             const struct srv_param *schema,
                             const char *const *uri_params,
                             struct srv_reply *rep);
/* admin.c: GET/PUT .../{store}/notes and .../{store}/protected (WHAT). */
struct srv_auth;
void srv_admin (const struct srv_request *req, struct srv_reply *rep,
                const struct srv_auth *auth, const char *store,
                const char *what);

/* ----------------------------------------------------- HTTP/2 sessions */

struct srv_h2_request {
  const char *method;
  const char *path;   /* without query, percent-decoded */
  const char *query;  /* or NULL */
  const char *content_type; /* or NULL */
  const uint8_t *body;
  size_t body_len;
  bool body_too_large;
};

/* A protocol environment: answers one HTTP/2 request at a time. */
struct srv_env {
  void (*handle) (struct srv_env *env, const struct srv_h2_request *req,
                  struct srv_reply *rep);
  /* How many body bytes a request to PATH may carry before it is cut
   * (and answered as too large). */
  size_t (*body_limit) (struct srv_env *env, const char *method,
                        const char *path);
  void (*end) (struct srv_env *env); /* connection gone */
};

/* Run an HTTP/2 server session on C (already upgraded) until it ends. */
void srv_h2_run (struct srv_conn *c, struct srv_env *env);

/* The backup and reader environments (backup-env.c, reader-env.c).
 * NULL with REP filled when the upgrade is refused. */
struct srv_env *srv_backup_env_new (struct srv_store *st,
                                    const struct srv_auth *auth,
                                    json_t *params, unsigned conn_id,
                                    struct srv_reply *rep);
struct srv_env *srv_reader_env_new (struct srv_store *st,
                                    const struct srv_auth *auth,
                                    json_t *params, unsigned conn_id,
                                    struct srv_reply *rep);

/* Query-parameter schemas of the two upgrades. */
extern const struct srv_param srv_backup_upgrade_schema[];
extern const struct srv_param srv_reader_upgrade_schema[];

#endif
