/* remote-rest.c -- the plain REST calls to a PBS server (ticket login,
 * snapshot listing): one transfer on a libcurl handle that remote-conn.c
 * set up (TLS, proxy, certificate policy, cancel), with authentication. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "remote-internal.h"

#define REST_BODY_MAX ((size_t) 256 * 1024 * 1024)
#define MAX_HEADERS 8

struct rest_body {
  struct pbs_curl_call *call;
  uint8_t *body;
  size_t len, cap;
};

static size_t
on_body (char *data, size_t size, size_t n, void *arg)
{
  struct rest_body *c = arg;
  size_t len = size * n;

  if (len > REST_BODY_MAX - c->len) {
    c->call->too_large = true;
    return 0; /* curl aborts the transfer */
  }
  if (c->len + len + 1 > c->cap) {
    size_t cap = c->cap ? c->cap : 16384;
    uint8_t *nb;
    while (cap < c->len + len + 1)
      cap *= 2;
    nb = realloc (c->body, cap);
    if (!nb)
      return 0;
    c->body = nb;
    c->cap = cap;
  }
  memcpy (c->body + c->len, data, len);
  c->len += len;
  c->body[c->len] = 0;
  return len;
}

/* Turn the CRLF-separated header lines of AUTH (modified in place) into
 * a curl list made of NODES, so that no other copy of a secret is made
 * on our side. */
static struct curl_slist *
header_list (char *auth, struct curl_slist *nodes, size_t max,
             const char *extra)
{
  struct curl_slist *head = NULL, **tail = &head;
  size_t n = 0;

  for (char *line = auth; line && *line && n + 1 < max;) {
    char *end = strstr (line, "\r\n");
    if (end)
      *end = 0;
    nodes[n].data = line;
    nodes[n].next = NULL;
    *tail = &nodes[n];
    tail = &nodes[n].next;
    n++;
    line = end ? end + 2 : NULL;
  }
  if (extra) {
    nodes[n].data = (char *) extra;
    nodes[n].next = NULL;
    *tail = &nodes[n];
  }
  return head;
}

int
pbs__remote_rest (struct pbs_remote *r, const char *method,
                  const char *target, const char *json_body,
                  struct pbs_http_resp *resp)
{
  struct pbs_curl_call call;
  struct rest_body c = { .call = &call };
  struct curl_slist nodes[MAX_HEADERS], *headers;
  char *auth;
  size_t auth_len = 0;
  long status = 0;
  CURLcode rc;
  CURL *curl = NULL;
  int ret = -1;

  memset (resp, 0, sizeof *resp);
  auth = pbs__remote_auth_headers (r, strcmp (method, "GET") == 0);
  if (!auth)
    return -1;
  auth_len = strlen (auth); /* header_list cuts it into lines */
  curl = pbs__curl_handle (&call, r, target);
  if (!curl)
    goto out;
  headers = header_list (auth, nodes, MAX_HEADERS,
                         json_body ? "Content-Type: application/json" : NULL);
  if (curl_easy_setopt (curl, CURLOPT_TIMEOUT_MS,
                        (long) PBS_REMOTE_REQUEST_TIMEOUT_MS) != CURLE_OK
      || curl_easy_setopt (curl, CURLOPT_HTTPHEADER, headers) != CURLE_OK
      || curl_easy_setopt (curl, CURLOPT_WRITEFUNCTION, on_body) != CURLE_OK
      || curl_easy_setopt (curl, CURLOPT_WRITEDATA, &c) != CURLE_OK) {
    pbs__set_error (EIO, "libcurl lacks a needed option (7.85 or later)");
    goto out;
  }
  if (json_body
      && (curl_easy_setopt (curl, CURLOPT_POSTFIELDS, json_body) != CURLE_OK
          || curl_easy_setopt (curl, CURLOPT_POSTFIELDSIZE,
                               (long) strlen (json_body)) != CURLE_OK)) {
    pbs__set_error (EIO, "libcurl: cannot set the request body");
    goto out;
  }
  if (strcmp (method, "GET") != 0 && strcmp (method, "POST") != 0
      && curl_easy_setopt (curl, CURLOPT_CUSTOMREQUEST, method) != CURLE_OK) {
    pbs__set_error (EIO, "libcurl: cannot set the method");
    goto out;
  }
  rc = curl_easy_perform (curl);
  if (rc != CURLE_OK) {
    pbs__curl_error (&call, curl, rc);
    goto out;
  }
  curl_easy_getinfo (curl, CURLINFO_RESPONSE_CODE, &status);
  if (status < 200 || status > 299) {
    pbs__remote_http_error (target, (int) status, (char *) c.body, c.len);
    pbs__remote_explain_401 (r);
    goto out;
  }
  if (!c.body && !(c.body = calloc (1, 1))) {
    pbs__set_error (ENOMEM, "out of memory");
    goto out;
  }
  resp->status = (int) status;
  resp->body = c.body;
  resp->body_len = c.len;
  c.body = NULL;
  ret = 0;
out:
  if (curl)
    curl_easy_cleanup (curl);
  explicit_bzero (auth, auth_len);
  free (auth);
  free (c.body);
  return ret;
}
