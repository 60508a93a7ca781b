/* remote-internal.h -- the remote (PBS server) backend's pieces; not
 * installed.  Files, bottom up; each calls only files above it in this
 * list (tests/remote/test-remote-layers.sh checks that):
 *
 *   remote-spec.c    repository strings (§2.3), URL and query encoding
 *   remote-proxy.c   the proxy option, parsed as proxmox-backup-client
 *                    parses ALL_PROXY
 *   remote-errors.c  error texts of HTTP answers (§1.6)
 *   remote-auth.c    authentication headers (§2)
 *   remote-certs.c   the certificate policy (§1.2)
 *   remote-conn.c    libcurl: connections (TLS, proxy tunnel, policy),
 *                    raw ones for the upgrades, waiting and cancelling
 *   remote-http1.c   the Upgrade request over a raw connection (§1.3)
 *   remote-rest.c    the plain REST calls (login, listing) on libcurl
 *   remote-login.c   ticket login and renewal (§2.2)
 *   remote-h2.c      nghttp2 client session on the upgraded connection (§1.4)
 *   remote-backup.c  backup protocol endpoints (§3)
 *   remote-reader.c  reader protocol endpoints (§3.10)
 *   remote-admin.c   snapshot administration over REST (protection)
 *   remote-repo.c    open/close, snapshot listing (§6.4), the ops table
 *
 * Facts: docs/pbs-protocol.md. */
#ifndef PBS_REMOTE_INTERNAL_H
#define PBS_REMOTE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "pbs-internal.h"

#define PBS_REMOTE_DEFAULT_PORT 8007
#define PBS_REMOTE_CONNECT_TIMEOUT_MS (10 * 1000)  /* http_client.rs */
#define PBS_REMOTE_REQUEST_TIMEOUT_MS (120 * 1000) /* HTTP_TIMEOUT */

/* ------------------------------------------------ remote-spec.c */

/* A parsed repository string (§2.3). */
struct pbs_remote_spec {
  char *auth_id; /* "user@realm" or "user@realm!token" */
  char *host;    /* without IPv6 brackets */
  unsigned port;
  char *authority; /* "HOST:PORT", "[V6]:PORT": Host header, URLs */
  char *store;
  bool is_token;
};

/* HOST:PORT as an HTTP authority (an IPv6 address in brackets),
 * malloc'd; NULL (ENOMEM set) if out of memory. */
char *pbs__authority (const char *host, unsigned port);

/* Parse [[USER@REALM[!TOKEN]@]HOST[:PORT]:]DATASTORE.  0 or -1 (EINVAL). */
int pbs__remote_parse_spec (const char *spec, struct pbs_remote_spec *out);
void pbs__remote_spec_free (struct pbs_remote_spec *s);

/* Percent-encode all but unreserved characters (FORM: ' ' as '+'),
 * malloc'd; NULL (ENOMEM set). */
char *pbs__pct_encode (const char *s, bool form);
/* x-www-form-urlencoded value (§1.3), appended to *BUF (malloc'd,
 * growing).  0 or -1. */
int pbs__query_add (char **buf, const char *key, const char *value);
/* Query of the upgrade GET (§1.3) for backup (BACKUP true) or reader
 * sessions; malloc'd. */
char *pbs__remote_session_query (const char *store, const char *ns,
                                 const char *type, const char *id,
                                 int64_t time, bool backup);

/* ------------------------------------------------ remote-proxy.c */

/* An HTTP proxy, "[http://][USER:PASS@]HOST[:PORT]". */
struct pbs_proxy {
  char *host;   /* NULL: no proxy */
  unsigned port;
  char *url;    /* "http://HOST:PORT", without the credentials */
  char *auth;   /* "USER:PASS" or NULL; cleansed on free */
};

/* Parse VALUE (NULL or "": no proxy).  0 or -1 (EINVAL). */
int pbs__proxy_parse (const char *value, struct pbs_proxy *p);
void pbs__proxy_free (struct pbs_proxy *p);

/* The repository state of the remote backend. */
struct pbs_remote {
  struct pbs_remote_spec spec;
  char *secret;      /* password or token secret; cleansed on close */
  char *fingerprint; /* pinned, lower-case colon form, or NULL */
  char *ca_file;
  char *ticket;      /* ticket login: PBSAuthCookie value */
  char *csrf;        /* and its CSRFPreventionToken */
  int64_t ticket_time; /* CLOCK_MONOTONIC seconds of the login */
  struct pbs_proxy proxy;
  int cancel_fd;       /* readable: give up waiting; -1 none */
  uint64_t bytes_sent; /* application bytes written (atomic adds) */
  bool quiet;
};

/* ------------------------------------------------ remote-errors.c */

/* Set the error for a failed HTTP answer: the server's text (plain, §1.6),
 * its status, transient for 5xx. */
void pbs__remote_http_error (const char *what, int status, const char *body,
                             size_t len);
/* After a 401: current servers give no reason ("authentication failed";
 * only their log says why), so add what the user should check. */
void pbs__remote_explain_401 (const struct pbs_remote *r);

/* ------------------------------------------------ remote-auth.c */

/* Authentication headers for one HTTP/1.1 request ("Authorization: ..."
 * or "Cookie: ..." [+ CSRF for non-GET]), CRLF-terminated, malloc'd.
 * Secrets only ever travel here. */
char *pbs__remote_auth_headers (const struct pbs_remote *r, bool is_get);

/* ------------------------------------------------ remote-certs.c */

/* The state of one connection's certificate check (§1.2); it must live as
 * long as the SSL_CTX it is applied to. */
struct pbs_cert_policy {
  const char *pin;     /* pinned fingerprint, lower-case colon form */
  const char *ca_file; /* extra trusted CAs (library option) */
  bool cas_loaded;     /* system CAs read (only when the pin did not match) */
  bool refused;        /* the handshake failed on the policy */
  char seen_fp[96];    /* the server's leaf fingerprint */
  char reason[160];    /* why the chain was not trusted */
};

struct ssl_ctx_st; /* OpenSSL's SSL_CTX */
/* Make CTX verify the peer by the policy: CA-validated chain and host
 * name, or the pinned leaf fingerprint.  0 or -1 (error set). */
int pbs__cert_policy_apply (struct ssl_ctx_st *ctx, struct pbs_cert_policy *p,
                            const struct pbs_remote *r);
/* After a failed handshake: if the policy refused the certificate, set
 * the error (naming the fingerprint to pin) and return true. */
bool pbs__cert_policy_error (const struct pbs_cert_policy *p,
                             const char *host);

/* ------------------------------------------------ remote-conn.c */

/* One libcurl handle's state besides the handle. */
struct pbs_curl_call {
  struct pbs_remote *r;
  struct pbs_cert_policy policy; /* lives as long as curl's SSL_CTX */
  bool setup_failed;             /* applying the policy failed (set) */
  bool too_large;                /* the body callback refused an answer */
  char errbuf[256];              /* CURL_ERROR_SIZE */
};
typedef void CURL; /* as curl/curl.h has it */

/* A libcurl handle for https://AUTHORITY TARGET with the repository's
 * proxy, certificate policy, timeouts and cancel descriptor.  NULL on
 * error (set).  C must outlive the handle. */
CURL *pbs__curl_handle (struct pbs_curl_call *c, struct pbs_remote *r,
                        const char *target);
/* Set the error for a failed transfer (RC is a CURLcode). */
void pbs__curl_error (struct pbs_curl_call *c, CURL *curl, int rc);

/* Whether the repository's cancel descriptor is readable. */
bool pbs__remote_cancelled (const struct pbs_remote *r);

struct pbs_conn; /* a connected, verified TLS connection (non-blocking) */

/* Connect (through the proxy, if any) and shake hands.  NULL on error. */
struct pbs_conn *pbs__conn_open (struct pbs_remote *r);
void pbs__conn_close (struct pbs_conn *t);
/* > 0 bytes moved; 0 end of stream (read only); PBS_CONN_AGAIN when the
 * socket is not ready; -1 error (set). */
#define PBS_CONN_AGAIN (-2)
ssize_t pbs__conn_read (struct pbs_conn *t, void *buf, size_t len);
ssize_t pbs__conn_write (struct pbs_conn *t, const void *buf, size_t len);
/* Wait until the socket is readable (or writable, WANT_WRITE), up to
 * TIMEOUT_MS.  0, or -1 (ETIMEDOUT, ECANCELED). */
int pbs__conn_wait (struct pbs_conn *t, bool want_write, int timeout_ms);
/* All of BUF, waiting up to the request timeout.  0 or -1. */
int pbs__conn_write_all (struct pbs_conn *t, const void *buf, size_t len);

/* ------------------------------------------------ remote-http1.c */

struct pbs_http_resp {
  int status;
  uint8_t *body; /* NUL-terminated for convenience; malloc'd */
  size_t body_len;
  uint8_t *extra; /* bytes after a 101's header (HTTP/2 already) */
  size_t extra_len;
};

/* One HTTP/1.1 request on T.  HEADERS: extra header lines, CRLF each.
 * A 101 answer stops after the header.  0 (any status) or -1 (transport
 * error, set). */
int pbs__http1_request (struct pbs_conn *t, const struct pbs_remote *r,
                        const char *method, const char *target,
                        const char *headers, const char *content_type,
                        const void *body, size_t body_len,
                        struct pbs_http_resp *resp);
void pbs__http_resp_free (struct pbs_http_resp *resp);
/* The answer-reading half of pbs__http1_request, on an answer already
 * whole in BUF (its end is the connection's end): for the fuzz target. */
int pbs__http1_parse_response (const uint8_t *buf, size_t len,
                               struct pbs_http_resp *resp);

/* ------------------------------------------------ remote-rest.c */

/* A REST call (libcurl) on a fresh connection, with authentication.
 * Returns 0 and fills RESP (status, body) only for a 2xx answer;
 * otherwise -1 with the error set. */
int pbs__remote_rest (struct pbs_remote *r, const char *method,
                      const char *target, const char *json_body,
                      struct pbs_http_resp *resp);

/* ------------------------------------------------ remote-login.c */

/* POST /api2/json/access/ticket (§2.2): a fresh ticket.  0 or -1. */
int pbs__remote_login (struct pbs_remote *r);
/* Before opening a connection: renew a ticket older than an hour (they
 * live 2 h, §2.2), so that a session restarted late in a long push can
 * still authenticate.  0 or -1. */
int pbs__remote_refresh (struct pbs_remote *r);

/* ------------------------------------------------ remote-h2.c */

struct pbs_h2;
struct pbs_h2_req;

/* Called once when the request's stream is closed (answered, reset or the
 * connection failed).  The h2 layer does not touch RQ afterwards. */
typedef void (*pbs_h2_done_fn) (struct pbs_h2_req *rq);

struct pbs_h2_req {
  int32_t stream_id;
  int status;            /* :status, 0 if none */
  uint8_t *body;         /* answer, malloc'd, NUL-terminated */
  size_t body_len, body_cap, body_max;
  uint64_t content_length; /* announced by the answer, 0 if not */
  const uint8_t *send;   /* request body (not owned unless send_owned) */
  size_t send_len;
  size_t send_off;       /* bytes given to DATA frames */
  size_t send_sent;      /* bytes of those written to TLS */
  uint8_t *send_owned;
  bool done;
  bool reset;            /* stream reset or connection lost */
  pbs_h2_done_fn on_done;
  void *opaque;
  struct pbs_h2_req *next; /* for the owner's lists */
};

/* HTTP/1.1 upgrade on a new connection: GET PATH_QUERY with "Upgrade:
 * PROTOCOL", then an HTTP/2 client session with the official client's
 * settings.  NULL on error (the server's text for a refusal). */
struct pbs_h2 *pbs__h2_open (struct pbs_remote *r, const char *path_query,
                             const char *protocol);
/* Close the connection; requests still open get no callback. */
void pbs__h2_close (struct pbs_h2 *h);
/* What pbs__h2_submit does with a request body. */
enum pbs_h2_body {
  PBS_H2_BODY_BORROW, /* caller keeps it alive until RQ is done */
  PBS_H2_BODY_COPY,   /* copied */
  PBS_H2_BODY_TAKE,   /* malloc'd; freed by the h2 layer, even on error */
};
/* Start a request.  PATH_QUERY without leading '/'.  0 or -1. */
int pbs__h2_submit (struct pbs_h2 *h, struct pbs_h2_req *rq,
                    const char *method, const char *path_query,
                    const char *content_type, const void *body, size_t len,
                    enum pbs_h2_body mode);
/* Move bytes once (send what can be sent, read what is there; if nothing
 * moved and BLOCK, wait up to the request timeout).  0, or -1 if the
 * connection is broken (ECONNRESET / ETIMEDOUT, transient). */
int pbs__h2_step (struct pbs_h2 *h, bool block);
/* Step until RQ is done.  0 if it completed with 2xx, else -1 (set). */
int pbs__h2_wait (struct pbs_h2 *h, struct pbs_h2_req *rq, const char *what);
/* Error of a finished request (not 2xx): set the error.  Returns -1. */
int pbs__h2_req_error (const struct pbs_h2_req *rq, const char *what);
void pbs__h2_req_release (struct pbs_h2_req *rq); /* frees buffers only */
bool pbs__h2_broken (const struct pbs_h2 *h);
/* For the fuzz target: a session on no connection, started as pbs__h2_open
 * starts one after the 101 (EXTRA: the bytes that came with it), and
 * pbs__h2_feed, which counts what the session would send as sent and
 * hands BUF to it as bytes read from the server.  Requests submitted
 * must be GETs (no body to write).  NULL / -1 (set). */
struct pbs_h2 *pbs__h2_detached (const char *authority, const uint8_t *extra,
                                 size_t extra_len);
int pbs__h2_feed (struct pbs_h2 *h, const uint8_t *buf, size_t len);

/* One synchronous request; on success *DATA (malloc'd) holds the body.
 * MAX caps the answer. */
int pbs__h2_call (struct pbs_h2 *h, const char *method,
                  const char *path_query, const char *content_type,
                  const void *body, size_t len, size_t max, uint8_t **data,
                  size_t *data_len, const char *what);

/* remote-backup.c: a backup-protocol answer {"data": X} (ANS, LEN); *DATA
 * (if DATA) gets X, a new reference.  0 or -1 (EPROTO, naming WHAT). */
struct json_t;
int pbs__json_data_parse (const uint8_t *ans, size_t len,
                          struct json_t **data, const char *what);

/* remote-repo.c: the snapshot listing's JSON (§6.4) as remote_snapshots
 * reads it: entries of namespace NS ("" root), only TYPE / ID if not NULL,
 * sorted.  0 or -1 (EPROTO). */
struct pbs_snapshot;
int pbs__snapshots_parse (const char *body, size_t len, const char *ns,
                          const char *type, const char *id,
                          struct pbs_snapshot **out, size_t *n);

/* remote-backup.c / remote-reader.c: the ops of pbs__remote_ops. */
struct pbs_backend_backup *pbs__remote_backup_start (void *repo,
                                                     const char *ns,
                                                     const char *type,
                                                     const char *id,
                                                     int64_t time);
int pbs__remote_previous_time (struct pbs_backend_backup *b, int64_t *out);
int pbs__remote_download_previous (struct pbs_backend_backup *b,
                                   const char *name, uint8_t **data,
                                   size_t *len);
int pbs__remote_fixed_index (struct pbs_backend_backup *b, const char *name,
                             uint64_t size, const uint8_t *reuse_csum);
int pbs__remote_fixed_chunk (struct pbs_backend_backup *b, int wid,
                             const uint8_t digest[32], uint32_t size,
                             const uint8_t *blob, size_t blob_len,
                             uint8_t *take);
int pbs__remote_fixed_append (struct pbs_backend_backup *b, int wid, size_t n,
                              const uint8_t (*digests)[32],
                              const uint64_t *offsets);
int pbs__remote_fixed_close (struct pbs_backend_backup *b, int wid,
                             uint64_t chunk_count, uint64_t size,
                             const uint8_t csum[32]);
int pbs__remote_blob (struct pbs_backend_backup *b, const char *name,
                      const uint8_t *blob, size_t len);
int pbs__remote_finish (struct pbs_backend_backup *b);
void pbs__remote_backup_free (struct pbs_backend_backup *b);

struct pbs_backend_reader *pbs__remote_reader_start (void *repo,
                                                     const char *ns,
                                                     const char *type,
                                                     const char *id,
                                                     int64_t time);
int pbs__remote_reader_prefetch (struct pbs_backend_reader *rd,
                                 const uint8_t digest[32]);
int pbs__remote_reader_download (struct pbs_backend_reader *rd,
                                 const char *name, uint8_t **data,
                                 size_t *len);
int pbs__remote_reader_chunk (struct pbs_backend_reader *rd,
                              const uint8_t digest[32], uint8_t **blob,
                              size_t *len);
void pbs__remote_reader_free (struct pbs_backend_reader *rd);

/* ------------------------------------------------ remote-admin.c */

/* The set_protected backend op (PUT .../protected). */
int pbs__remote_set_protected (void *state, const char *ns, const char *type,
                               const char *id, int64_t time, bool protect);

#endif
