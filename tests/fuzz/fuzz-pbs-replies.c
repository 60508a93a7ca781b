/* fuzz-pbs-replies.c -- what a server sends back, through the parsing code
 * the client uses.  The first byte picks the parser for the rest:
 *   0  an HTTP/1.1 answer to the upgrade GET (remote-http1.c); a 101 hands
 *      the bytes after its header to a new HTTP/2 session, as pbs__h2_open
 *      does, any other status its body to the error text (remote-errors.c)
 *   1  HTTP/2 bytes after the 101 (remote-h2.c's nghttp2 session and
 *      callbacks), answering one GET on stream 1; a finished 2xx answer's
 *      body goes on to the backup protocol's {"data": ...} reader, any
 *      other end to the request's error; the second byte splits the bytes
 *      into two reads
 *   2  the snapshot listing's JSON (remote-repo.c), unfiltered and filtered
 *   3  a backup-protocol JSON answer {"data": ...} (remote-backup.c) */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "pbsproto.h"
#include "remote-internal.h"

#define AUTHORITY "pbs.example:8007"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static void
http1_answer (const uint8_t *p, size_t len)
{
  struct pbs_http_resp resp;
  struct pbs_h2 *h;

  if (pbs__http1_parse_response (p, len, &resp) == -1)
    return;
  if (resp.status == 101) {
    h = pbs__h2_detached (AUTHORITY, resp.extra, resp.extra_len);
    pbs__h2_close (h);
  }
  else
    pbs__remote_http_error (NULL, resp.status, (const char *) resp.body,
                            resp.body_len);
  pbs__http_resp_free (&resp);
}

static void
h2_answer (const uint8_t *p, size_t len)
{
  struct pbs_h2_req rq = { 0 };
  struct pbs_h2 *h;
  json_t *d = NULL;
  size_t split;

  if (len < 1)
    return;
  split = (size_t) p[0] * (len - 1) / 255;
  p++;
  len--;
  h = pbs__h2_detached (AUTHORITY, NULL, 0);
  if (!h)
    return;
  rq.body_max = 64 * 1024; /* remote-backup.c's SMALL_ANSWER */
  if (pbs__h2_submit (h, &rq, "GET", "previous_backup_time", NULL, NULL, 0,
                      PBS_H2_BODY_BORROW)
          == 0
      && pbs__h2_feed (h, p, split) == 0)
    pbs__h2_feed (h, p + split, len - split);
  if (rq.done) {
    if (rq.status >= 200 && rq.status <= 299 && !rq.reset
        && rq.body_max != 0) {
      if (pbs__json_data_parse (rq.body ? rq.body : (const uint8_t *) "",
                                rq.body_len, &d, "fuzz")
          == 0)
        json_decref (d);
    }
    else
      pbs__h2_req_error (&rq, "fuzz");
  }
  /* nghttp2_session_del calls no callback: RQ may still be open. */
  pbs__h2_close (h);
  pbs__h2_req_release (&rq);
}

static void
snapshot_list (const uint8_t *p, size_t len)
{
  struct pbs_snapshot *s;
  size_t n;

  if (pbs__snapshots_parse ((const char *) p, len, "", NULL, NULL, &s, &n)
      == 0)
    pbs_snapshots_free (s, n);
  if (pbs__snapshots_parse ((const char *) p, len, "ns1", "vm", "100", &s,
                            &n)
      == 0)
    pbs_snapshots_free (s, n);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  json_t *d = NULL;

  if (size < 1)
    return 0;
  switch (data[0] % 4) {
  case 0:
    http1_answer (data + 1, size - 1);
    break;
  case 1:
    h2_answer (data + 1, size - 1);
    break;
  case 2:
    snapshot_list (data + 1, size - 1);
    break;
  case 3:
    if (pbs__json_data_parse (data + 1, size - 1, &d, "fuzz") == 0)
      json_decref (d);
    break;
  }
  return 0;
}
