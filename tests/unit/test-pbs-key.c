/* test-pbs-key.c -- key files (docs/pbs-protocol.md §5.4) checked by python3
 * (hashlib.scrypt, hashlib.pbkdf2_hmac, cryptography's AESGCM, base64), a key
 * file written by python3 loaded by us, the error rules; and names/times
 * (§6.1). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pbsproto.h"
#include "tap.h"

static char tmpdir[512];
static char path[1024];

__attribute__ ((format (printf, 1, 2))) static int
sh (const char *fmt, ...)
{
  char cmd[4096], full[4096 + 600];
  va_list ap;
  va_start (ap, fmt);
  vsnprintf (cmd, sizeof cmd, fmt, ap);
  va_end (ap);
  snprintf (full, sizeof full, "cd %s && %s", tmpdir, cmd);
  return system (full) == 0;
}

static const char *
at (const char *name)
{
  snprintf (path, sizeof path, "%s/%s", tmpdir, name);
  return path;
}

/* check.py FILE PASSWORD FPR: decrypt the key with python's own KDFs and
 * AESGCM, recompute the fingerprint, compare with the file and FPR. */
static const char check_py[]
    = "import base64, hashlib, json, sys, datetime\n"
      "k = json.load(open(sys.argv[1]))\n"
      "pw = sys.argv[2].encode()\n"
      "b64 = lambda s: base64.b64decode(s, validate=True)\n"
      "assert set(k) <= {'kdf','created','modified','data','fingerprint',"
      "'hint'}\n"
      "for t in ('created', 'modified'):\n"
      "  assert datetime.datetime.fromisoformat(k[t]).utcoffset() is not None\n"
      "data = b64(k['data'])\n"
      "kdf = k['kdf']\n"
      "if kdf is None:\n"
      "  raw = data\n"
      "else:\n"
      "  (name, p), = kdf.items()\n"
      "  salt = b64(p['salt'])\n"
      "  assert len(salt) == 32\n"
      "  if name == 'Scrypt':\n"
      "    assert (p['n'], p['r'], p['p']) == (65536, 8, 1)\n"
      "    d = hashlib.scrypt(pw, salt=salt, n=p['n'], r=p['r'], p=p['p'], "
      "maxmem=256<<20, dklen=32)\n"
      "  else:\n"
      "    assert name == 'PBKDF2' and p['iter'] == 65535\n"
      "    d = hashlib.pbkdf2_hmac('sha256', pw, salt, p['iter'], 32)\n"
      "  from cryptography.hazmat.primitives.ciphers.aead import AESGCM\n"
      "  raw = AESGCM(d).decrypt(data[:16], data[32:] + data[16:32], None)\n"
      "assert len(raw) == 32\n"
      "idk = hashlib.pbkdf2_hmac('sha256', raw, b'_id_key', 10, 32)\n"
      "fpi = hashlib.sha256(b'Proxmox Backup Encryption Key Fingerprint')"
      ".digest()\n"
      "fp = ':'.join('%02x' % b for b in hashlib.sha256(fpi + idk).digest())\n"
      "assert fp == k['fingerprint'] == sys.argv[3], (fp, k['fingerprint'])\n";

/* Writes a scrypt key file for raw key 0..31 (password "secret"), as PBS
 * would, without our code. */
static const char make_py[]
    = "import base64, hashlib, json, os\n"
      "from cryptography.hazmat.primitives.ciphers.aead import AESGCM\n"
      "salt, iv = os.urandom(32), os.urandom(16)\n"
      "d = hashlib.scrypt(b'secret', salt=salt, n=65536, r=8, p=1, "
      "maxmem=256<<20, dklen=32)\n"
      "ct = AESGCM(d).encrypt(iv, bytes(range(32)), None)\n"
      "data = iv + ct[32:] + ct[:32]\n"
      "e = lambda b: base64.b64encode(b).decode()\n"
      "json.dump({'kdf': {'Scrypt': {'n': 65536, 'r': 8, 'p': 1, "
      "'salt': e(salt)}}, 'created': '2024-06-05T12:00:00+02:00', "
      "'modified': '2024-06-05T12:00:00+02:00', 'data': e(data)}, "
      "open('py.key', 'w'))\n";

/* The last error does not name P: the caller prints P as its context
 * ("qcow2pbs: P: what is wrong"), so a path never shows twice. */
static bool
names_no_path (const char *p)
{
  const char *m = pbs_errmsg ();

  return *m && !strstr (m, p);
}

static void
save (const char *name, const char *text)
{
  FILE *f = fopen (at (name), "w");
  if (f) {
    fputs (text, f);
    fclose (f);
  }
}

static void
key_case (const char *kdf, const char *pw, bool oracle)
{
  struct pbs_key *k;
  struct stat st;
  uint8_t fpb[32];
  char fp[96], name[32];
  int r;

  snprintf (name, sizeof name, "%s.key", kdf);
  r = pbs_key_create_hint (at (name), kdf, pw, "a hint");
  ok (r == 0, "%s: created (%s)", kdf, r ? pbs_errmsg () : "ok");
  ok (stat (at (name), &st) == 0 && (st.st_mode & 0777) == 0600,
      "%s: mode 0600", kdf);
  k = pbs_key_load (at (name), pw);
  ok (k != NULL, "%s: loads with the password", kdf);
  if (!k)
    return;
  pbs_key_fingerprint (k, fpb);
  pbs_fingerprint_string (fpb, fp);
  if (oracle)
    ok (sh ("python3 check.py %s '%s' %s", name, pw ? pw : "", fp),
        "%s: python3 decrypts the key and agrees on the fingerprint", kdf);
  pbs_key_free (k);
  if (pw) {
    k = pbs_key_load (at (name), "wrong password");
    ok (!k && pbs_errno () == EACCES
            && strcmp (pbs_errmsg (), "wrong password") == 0,
        "%s: wrong password: EACCES", kdf);
    k = pbs_key_load (at (name), NULL);
    ok (!k && pbs_errno () == EACCES, "%s: no password: EACCES", kdf);
  }
  r = pbs_key_create (at (name), kdf, pw);
  ok (r == -1 && pbs_errno () == EEXIST, "%s: existing file not replaced",
      kdf);
  ok (names_no_path (path), "%s: existing file: %s", kdf, pbs_errmsg ());
}

int
main (void)
{
  struct pbs_key *k;
  uint8_t fpb[32];
  char fp[96], *show, t[21];
  int64_t v;
  int r;
  bool oracle;

  snprintf (tmpdir, sizeof tmpdir, "%s/test-pbs-key.XXXXXX",
            getenv ("TMPDIR") ? getenv ("TMPDIR") : "/tmp");
  if (!mkdtemp (tmpdir))
    return 99;
  oracle = system ("python3 -c 'import hashlib, cryptography.hazmat."
                   "primitives.ciphers.aead' 2>/dev/null")
           == 0;
  if (!oracle)
    printf ("# python3 cryptography missing: oracle checks skipped\n");
  save ("check.py", check_py);
  save ("make.py", make_py);

  key_case ("scrypt", "hunter22", oracle);
  key_case ("pbkdf2", "hunter22", oracle);
  key_case ("none", NULL, oracle);
  ok (sh ("test $(ls -A | grep -c keyfile) = 0"), "no temporary files left");

  show = pbs_key_show (at ("scrypt.key"));
  ok (show && strstr (show, "\"kdf\":\"scrypt\"")
          && strstr (show, "\"hint\":\"a hint\"")
          && strstr (show, "\"fingerprint\":\""),
      "key show: %s", show ? show : pbs_errmsg ());
  free (show);

  r = pbs_key_create (at ("short.key"), "scrypt", "1234");
  ok (r == -1 && pbs_errno () == EINVAL, "4-byte password refused");
  r = pbs_key_create (at ("x.key"), "argon", "12345678");
  ok (r == -1 && pbs_errno () == EINVAL, "unknown kdf refused");
  ok (access (at ("short.key"), F_OK) == -1, "nothing written on refusal");

  save ("notkey.json", "{\"hello\": 1}");
  k = pbs_key_load (at ("notkey.json"), "x");
  ok (!k && pbs_errno () == EINVAL && !strstr (pbs_errmsg (), "notkey.json"),
      "JSON that is no key file: EINVAL (%s)", pbs_errmsg ());
  ok (names_no_path (path), "no key file: no path: %s", pbs_errmsg ());
  save ("garbage", "\x7f" "ELF binary stuff");
  k = pbs_key_load (at ("garbage"), "x");
  ok (!k && pbs_errno () == EINVAL, "garbage: EINVAL");
  ok (names_no_path (path), "garbage: no path: %s", pbs_errmsg ());
  show = pbs_key_show (at ("garbage"));
  ok (!show && pbs_errno () == EINVAL, "show garbage: EINVAL");
  ok (names_no_path (path), "show garbage: no path: %s", pbs_errmsg ());
  save ("argon.key", "{\"kdf\": {\"Argon2\": {}}, \"data\": \"AAAA\"}");
  k = pbs_key_load (at ("argon.key"), "x");
  ok (!k && pbs_errno () == EINVAL && names_no_path (path),
      "unsupported kdf: EINVAL, no path: %s", pbs_errmsg ());
  k = pbs_key_load (at ("absent"), "x");
  ok (!k && pbs_errno () == ENOENT, "absent file: ENOENT");
  ok (names_no_path (path), "absent file: no path: %s", pbs_errmsg ());
  show = pbs_key_show (at ("absent"));
  ok (!show && pbs_errno () == ENOENT && names_no_path (path),
      "show absent file: ENOENT, no path: %s", pbs_errmsg ());
  r = pbs_key_create (at ("absent/x.key"), "none", NULL);
  ok (r == -1 && pbs_errno () == ENOENT && names_no_path (path),
      "create in a missing directory: ENOENT, no path: %s", pbs_errmsg ());
  /* A fingerprint that is not the key's. */
  /* Its first byte changed: to ff, or to 00 when it was ff (a random key
   * starts with ff one time in 256). */
  ok (sh ("sed 's/\"fingerprint\": \"../\"fingerprint\": \"ff/' none.key > "
          "badfp.key && { ! cmp -s none.key badfp.key || sed "
          "'s/\"fingerprint\": \"../\"fingerprint\": \"00/' none.key > "
          "badfp.key; }"),
      "edited fingerprint");
  k = pbs_key_load (at ("badfp.key"), NULL);
  ok (!k && pbs_errno () == EBADMSG, "fingerprint mismatch: %s",
      pbs_errmsg ());
  ok (names_no_path (path), "fingerprint mismatch: no path");

  if (oracle) {
    ok (sh ("python3 make.py"), "python3 wrote a PBS scrypt key file");
    k = pbs_key_load (at ("py.key"), "secret");
    ok (k != NULL, "we load it");
    if (k) {
      pbs_key_fingerprint (k, fpb);
      pbs_fingerprint_string (fpb, fp);
      ok (strcmp (fp, "0e:ab:d4:46:0b:6e:b9:ca:34:50:23:de:e2:b7:78:c7:90:e5:"
                      "4a:16:83:b9:65:9c:0a:57:ae:19:90:90:15:9b")
              == 0,
          "and get key 0..31's fingerprint");
    }
    pbs_key_free (k);
    show = pbs_key_show (at ("py.key"));
    ok (show && strstr (show, "\"created\":1717581600")
            && strstr (show, "\"fingerprint\":null"),
        "show of a file without fingerprint: %s", show ? show : "");
    free (show);
  }

  /* Names and times. */
  pbs_time_to_rfc3339 (1593179765, t);
  ok (strcmp (t, "2020-06-26T13:56:05Z") == 0, "rfc3339 %s", t);
  pbs_time_to_rfc3339 (0, t);
  ok (strcmp (t, "1970-01-01T00:00:00Z") == 0, "rfc3339 epoch 0");
  ok (pbs_parse_time ("1593179765", &v) == 0 && v == 1593179765,
      "epoch parses");
  ok (pbs_parse_time ("2020-06-26T13:56:05Z", &v) == 0 && v == 1593179765,
      "Z parses");
  ok (pbs_parse_time ("2020-06-26T15:56:05+02:00", &v) == 0
          && v == 1593179765,
      "+02:00 parses");
  ok (pbs_parse_time ("2020-06-26T09:26:05.123-04:30", &v) == 0
          && v == 1593179765,
      "fraction and -04:30 parse");
  ok (pbs_parse_time ("2024-02-29T00:00:00Z", &v) == 0 && v == 1709164800,
      "leap day");
  ok (pbs_parse_time ("2023-02-29T00:00:00Z", &v) == -1, "no leap day");
  ok (pbs_parse_time ("2020-06-26T13:56:05", &v) == -1, "no zone: refused");
  ok (pbs_parse_time ("2020-06-26 13:56:05Z", &v) == 0, "space separator");
  ok (pbs_parse_time ("12abc", &v) == -1 && pbs_errno () == EINVAL,
      "garbage refused");
  ok (pbs_parse_time ("", &v) == -1, "empty refused");
  if (oracle)
    ok (sh ("python3 -c \"import datetime; assert datetime.datetime."
            "fromtimestamp(1709164800, datetime.timezone.utc).isoformat() == "
            "'2024-02-29T00:00:00+00:00'\""),
        "python3 agrees on the leap day epoch");
  ok (pbs_valid_backup_id ("100") && pbs_valid_backup_id ("_a.b-c")
          && !pbs_valid_backup_id ("-a") && !pbs_valid_backup_id ("a/b")
          && !pbs_valid_backup_id ("") && !pbs_valid_backup_id (".x"),
      "backup id rule");
  ok (pbs_valid_backup_type ("vm") && pbs_valid_backup_type ("ct")
          && pbs_valid_backup_type ("host") && !pbs_valid_backup_type ("VM"),
      "backup types");
  ok (pbs_valid_ns ("") && pbs_valid_ns ("a") && pbs_valid_ns ("a/b/c/d/e/f/g")
          && !pbs_valid_ns ("a/b/c/d/e/f/g/h") && !pbs_valid_ns ("/a")
          && !pbs_valid_ns ("a/") && !pbs_valid_ns ("a//b"),
      "namespaces");
  ok (pbs_valid_safe_id ("drive-scsi0.img.fidx") && !pbs_valid_safe_id ("a b"),
      "safe ids");

  sh ("rm -rf %s", tmpdir);
  return tap_done ();
}
