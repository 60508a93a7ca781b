/* test-pbs-manifest.c -- manifests: PBS's signature test vector
 * (manifest.rs test_manifest_signature, docs/pbs-protocol.md §5.5), the
 * verification rules, and our canonical and pretty JSON compared with
 * python3's json module (sorted keys, no ASCII escaping: the same
 * escaping rules as serde_json). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "pbsproto.h"
#include "tap.h"

static char tmpdir[512];

__attribute__ ((format (printf, 1, 2))) static int
sh (const char *fmt, ...)
{
  char cmd[2048], full[2048 + 600];
  va_list ap;
  va_start (ap, fmt);
  vsnprintf (cmd, sizeof cmd, fmt, ap);
  va_end (ap);
  snprintf (full, sizeof full, "cd %s && %s", tmpdir, cmd);
  return system (full) == 0;
}

static void
save (const char *name, const char *text)
{
  char path[1024];
  FILE *f;
  snprintf (path, sizeof path, "%s/%s", tmpdir, name);
  f = fopen (path, "w");
  if (f) {
    fputs (text, f);
    fclose (f);
  }
}

/* Replace the first FROM in TEXT by TO (same length). */
static char *
edit (const char *text, const char *from, const char *to)
{
  char *s = strdup (text), *p = strstr (s, from);
  if (p)
    memcpy (p, to, strlen (to));
  return s;
}

static const char expect_canonical[]
    = "{\"backup-id\":\"elsa\",\"backup-time\":1593179765,\"backup-type\":"
      "\"host\",\"files\":[{\"crypt-mode\":\"encrypt\",\"csum\":"
      "\"0101010101010101010101010101010101010101010101010101010101010101\","
      "\"filename\":\"test1.img.fidx\",\"size\":200},{\"crypt-mode\":\"none\","
      "\"csum\":"
      "\"0202020202020202020202020202020202020202020202020202020202020202\","
      "\"filename\":\"abc.blob\",\"size\":200}]}";

/* A manifest with awkward strings and unknown fields. */
static const char tricky[]
    = "{\"backup-type\":\"vm\",\"backup-id\":\"100\",\"backup-time\":5,"
      "\"zz-extra\":{\"b\":[1,true,false,{}],\"a\":\"q\\\"b\\\\s/\\u0001\\u001f"
      "\\b\\f\\n\\r\\t\\u007f\xc3\xbc\xe2\x82\xac\xf0\x9f\x98\x80\"},"
      "\"Zed\":[],\"\xc3\xa4\":1,\"a\":\"n\\u0000ul\","
      "\"files\":[{\"filename\":\"drive-scsi0.img.fidx\",\"size\":"
      "34359738368,\"csum\":\"ABCDEF0123456789abcdef0123456789ABCDEF0123456"
      "789abcdef0123456789\"}],"
      "\"unprotected\":{\"notes\":\"x\",\"chunk_upload_stats\":{\"count\":3}},"
      "\"signature\":null}";

static const char oracle_py[]
    = "import json, sys\n"
      "m = json.load(open('m.json', encoding='utf-8'))\n"
      "for f in m['files']: f.setdefault('crypt-mode', 'none')\n"
      "canon = open('canon', encoding='utf-8').read()\n"
      "pretty = open('pretty', encoding='utf-8').read()\n"
      "p = json.loads(pretty)\n"
      "assert p == m, 'pretty parses to the same value'\n"
      "assert pretty == json.dumps(p, indent=2, sort_keys=True, "
      "ensure_ascii=False), 'pretty bytes'\n"
      "s = {k: v for k, v in m.items() if k not in ('unprotected', "
      "'signature')}\n"
      "want = json.dumps(s, sort_keys=True, separators=(',', ':'), "
      "ensure_ascii=False)\n"
      "assert canon == want, (canon, want)\n";

int
main (void)
{
  uint8_t raw[32], csum1[32], csum2[32];
  struct pbs_key *key, *other;
  struct pbs_manifest *m, *p;
  struct pbs_manifest_file f;
  char *canon, *json = NULL, *bad, *t, fp[96];
  int r;
  bool oracle;

  snprintf (tmpdir, sizeof tmpdir, "%s/test-pbs-manifest.XXXXXX",
            getenv ("TMPDIR") ? getenv ("TMPDIR") : "/tmp");
  if (!mkdtemp (tmpdir))
    return 99;
  oracle = system ("python3 -c 'import json'") == 0;

  /* scrypt("test", empty salt, n=65536, r=8, p=1), computed by OpenSSL
   * directly, as in manifest.rs's test. */
  if (EVP_PBE_scrypt ("test", 4, (const unsigned char *) "", 0, 65536, 8, 1,
                      1025ull << 20, raw, 32)
      != 1)
    return 99;
  key = pbs_key_from_raw (raw);
  raw[0] ^= 1;
  other = pbs_key_from_raw (raw);
  memset (csum1, 1, 32);
  memset (csum2, 2, 32);

  m = pbs_manifest_new ("host", "elsa", 1593179765);
  ok (m && pbs_manifest_add_file (m, "test1.img.fidx", "encrypt", 200, csum1)
                   == 0
          && pbs_manifest_add_file (m, "abc.blob", "none", 200, csum2) == 0,
      "vector manifest built");
  r = pbs_manifest_add_file (m, "abc.blob", "none", 1, csum2);
  ok (r == -1 && pbs_errno () == EEXIST, "duplicate file name refused");
  r = pbs_manifest_add_file (m, "x", "bogus", 1, csum2);
  ok (r == -1 && pbs_errno () == EINVAL, "bad crypt-mode refused");
  canon = pbs_manifest_canonical (m);
  ok (canon && strcmp (canon, expect_canonical) == 0,
      "canonical JSON as in PBS's test");
  free (canon);
  ok (pbs_manifest_set_unprotected (
          m, "note", "\"This is not protected by the signature.\"")
          == 0,
      "unprotected note set");
  ok (pbs_manifest_to_json (m, key, &json) == 0, "serialised with key");
  ok (json && strstr (json, "\"signature\": \"d7b446fb7db081662081d4b40fedd85"
                            "8a1d6307a5aff4ecff7d5bf4fd35679e9\""),
      "signature d7b446fb... as in PBS's test");
  pbs_key_fingerprint (key, raw);
  pbs_fingerprint_string (raw, fp);
  ok (json && strstr (json, fp), "key-fingerprint written");
  pbs_manifest_free (m);

  /* Reading it back under the verification rules. */
  p = pbs_manifest_parse (json, strlen (json), key, 0);
  ok (p != NULL, "parses with the key");
  if (p) {
    ok (strcmp (pbs_manifest_type (p), "host") == 0
            && strcmp (pbs_manifest_id (p), "elsa") == 0
            && pbs_manifest_time (p) == 1593179765
            && pbs_manifest_file_count (p) == 2,
        "type, id, time, file count");
    ok (pbs_manifest_key_fingerprint (p)
            && strcmp (pbs_manifest_key_fingerprint (p), fp) == 0,
        "key fingerprint read back");
    ok (pbs_manifest_find (p, "abc.blob", &f) == 0 && f.size == 200
            && strcmp (f.crypt_mode, "none") == 0
            && memcmp (f.csum, csum2, 32) == 0,
        "find abc.blob");
    r = pbs_manifest_find (p, "nope", &f);
    ok (r == -1 && pbs_errno () == ENOENT, "find: absent name");
    t = pbs_manifest_get_unprotected (p, "note");
    ok (t && strcmp (t, "\"This is not protected by the signature.\"") == 0,
        "unprotected note read back");
    free (t);
    t = pbs_manifest_get_unprotected (p, "nope");
    ok (!t && pbs_errno () == ENOENT, "absent unprotected key: ENOENT");
    /* Changing unprotected keeps the signature valid. */
    pbs_manifest_set_unprotected (p, "qcow2pbs", "{\"b\":1,\"a\":[\"x\"]}");
    free (json);
    json = NULL;
    pbs_manifest_to_json (p, NULL, &json);
    pbs_manifest_free (p);
    p = pbs_manifest_parse (json, strlen (json), key, 0);
    ok (p != NULL, "unprotected edits keep the signature valid");
    t = p ? pbs_manifest_get_unprotected (p, "qcow2pbs") : NULL;
    ok (t && strcmp (t, "{\"a\":[\"x\"],\"b\":1}") == 0,
        "unprotected JSON value round trip: %s", t ? t : "(null)");
    free (t);
    pbs_manifest_free (p);
  }
  p = pbs_manifest_parse (json, strlen (json), NULL, 0);
  ok (!p && pbs_errno () == EACCES
          && strstr (pbs_errmsg (), "missing key - manifest was created "
                                    "with key"),
      "no key: %s", pbs_errmsg ());
  p = pbs_manifest_parse (json, strlen (json), other, 0);
  ok (!p && pbs_errno () == EACCES && strstr (pbs_errmsg (), "wrong key"),
      "other key: %s", pbs_errmsg ());
  p = pbs_manifest_parse (json, strlen (json), NULL, PBS_MANIFEST_NO_VERIFY);
  ok (p != NULL, "NO_VERIFY parses without a key");
  pbs_manifest_free (p);
  bad = edit (json, "\"size\": 200", "\"size\": 201");
  p = pbs_manifest_parse (bad, strlen (bad), key, 0);
  ok (!p && pbs_errno () == EBADMSG
          && strcmp (pbs_errmsg (), "wrong signature in manifest") == 0,
      "tampered size: %s", pbs_errmsg ());
  free (bad);
  bad = edit (json, "\"signature\": \"d", "\"signature\": \"e");
  p = pbs_manifest_parse (bad, strlen (bad), key, 0);
  ok (!p && pbs_errno () == EBADMSG, "tampered signature rejected");
  free (bad);
  free (json);

  /* Defaults and shape checks. */
  {
    static const char old[]
        = "{\"backup-type\":\"vm\",\"backup-id\":\"1\",\"backup-time\":1,"
          "\"files\":[{\"filename\":\"a.img.fidx\",\"size\":1,\"csum\":"
          "\"00000000000000000000000000000000000000000000000000000000000000"
          "00\"}]}";
    p = pbs_manifest_parse (old, strlen (old), key, 0);
    ok (p && pbs_manifest_file (p, 0, &f) == 0
            && strcmp (f.crypt_mode, "none") == 0,
        "missing crypt-mode reads as none; unsigned manifest ok with key");
    ok (p && !pbs_manifest_key_fingerprint (p), "no fingerprint");
    ok (p && pbs_manifest_file (p, 1, &f) == -1, "file 1: out of range");
    pbs_manifest_free (p);
    bad = edit (old, "\"size\":1", "\"size\":-");
    p = pbs_manifest_parse (bad, strlen (bad), NULL, 0);
    ok (!p && pbs_errno () == EBADMSG, "bad JSON: %s", pbs_errmsg ());
    free (bad);
    bad = edit (old, "\"csum\":\"0", "\"csum\":\"g");
    p = pbs_manifest_parse (bad, strlen (bad), NULL, 0);
    ok (!p && pbs_errno () == EBADMSG, "non-hex csum: %s", pbs_errmsg ());
    free (bad);
    bad = edit (old, "\"vm\"", "\"xx\"");
    p = pbs_manifest_parse (bad, strlen (bad), NULL, 0);
    ok (!p, "unknown backup-type rejected");
    free (bad);
    bad = edit (old, "\"backup-time\":1", "\"backup-time\":n");
    p = pbs_manifest_parse (bad, strlen (bad), NULL, 0);
    ok (!p, "non-integer backup-time rejected");
    free (bad);
  }
  {
    static const char withnull[]
        = "{\"backup-type\":\"vm\",\"backup-id\":\"1\",\"backup-time\":1,"
          "\"files\":[],\"x\":null,\"signature\":\"00\"}";
    p = pbs_manifest_parse (withnull, strlen (withnull), NULL,
                            PBS_MANIFEST_NO_VERIFY);
    canon = p ? pbs_manifest_canonical (p) : NULL;
    ok (p && !canon && strstr (pbs_errmsg (), "unexpected null"),
        "null in the signed part: %s", pbs_errmsg ());
    pbs_manifest_free (p);
    p = pbs_manifest_parse (withnull, strlen (withnull), key, 0);
    ok (!p, "signed manifest with a null cannot verify");
  }

  /* Escaping, key order and pretty layout against python3's json. */
  p = pbs_manifest_parse (tricky, sizeof tricky - 1, NULL, 0);
  ok (p != NULL, "tricky manifest parses (%s)", p ? "ok" : pbs_errmsg ());
  if (p && oracle) {
    save ("m.json", tricky);
    save ("oracle.py", oracle_py);
    canon = pbs_manifest_canonical (p);
    json = NULL;
    pbs_manifest_to_json (p, NULL, &json);
    save ("canon", canon ? canon : "");
    save ("pretty", json ? json : "");
    ok (canon && json && sh ("python3 oracle.py"),
        "canonical and pretty JSON equal python3's json.dumps");
    free (canon);
    free (json);
  }
  pbs_manifest_free (p);
  p = pbs_manifest_new ("vm", "100", 1717600000);
  json = NULL;
  ok (p && pbs_manifest_to_json (p, NULL, &json) == 0 && json
          && strcmp (json, "{\n  \"backup-id\": \"100\",\n  \"backup-time\": "
                           "1717600000,\n  \"backup-type\": \"vm\",\n  "
                           "\"files\": [],\n  \"signature\": null,\n  "
                           "\"unprotected\": {}\n}")
                 == 0,
      "empty manifest as serde_json's to_string_pretty");
  free (json);
  pbs_manifest_free (p);
  ok (!pbs_manifest_new ("vm", "", 1), "empty backup-id refused");

  sh ("rm -rf %s", tmpdir);
  pbs_key_free (key);
  pbs_key_free (other);
  return tap_done ();
}
