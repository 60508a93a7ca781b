/* test-pbs-blob.c -- DataBlobs and digests against independent oracles:
 * python3 (hashlib, zlib.crc32, struct, cryptography's AESGCM) and the zstd
 * CLI check the bytes we write; blobs the zstd CLI made (streamed, no content
 * size) must decode.  Known answers from docs/pbs-protocol.md §5. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <pthread.h>
#include <unistd.h>

#include "pbsproto.h"
#include "tap.h"

static char tmpdir[512];

static void
path_of (char *out, size_t n, const char *name)
{
  snprintf (out, n, "%s/%s", tmpdir, name);
}

static int
write_file (const char *name, const void *p, size_t len)
{
  char path[1024];
  FILE *f;
  path_of (path, sizeof path, name);
  f = fopen (path, "wb");
  if (!f || fwrite (p, 1, len, f) != len) {
    if (f)
      fclose (f);
    return -1;
  }
  return fclose (f);
}

static uint8_t *
read_file (const char *name, size_t *len)
{
  char path[1024];
  FILE *f;
  uint8_t *buf;
  long n;
  path_of (path, sizeof path, name);
  f = fopen (path, "rb");
  if (!f)
    return NULL;
  fseek (f, 0, SEEK_END);
  n = ftell (f);
  rewind (f);
  buf = malloc (n ? (size_t) n : 1);
  if (fread (buf, 1, (size_t) n, f) != (size_t) n) {
    free (buf);
    buf = NULL;
  }
  fclose (f);
  *len = (size_t) n;
  return buf;
}

/* Run a shell command in the scratch directory; true if it exits 0. */
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

/* The python3 oracle: check.py BLOB DATA KIND [KEYHEX] verifies magic
 * (sha256 of the quoted string), CRC (zlib.crc32 over the payload, or the
 * ciphertext only), decrypts with AESGCM (16-byte IV, empty AAD) and
 * decompresses with the zstd CLI, then compares with DATA. */
static const char check_py[] =
  "import hashlib, zlib, struct, subprocess, sys\n"
  "blob = open(sys.argv[1], 'rb').read()\n"
  "data = open(sys.argv[2], 'rb').read()\n"
  "kind = sys.argv[3]\n"
  "names = {'plain': 'uncompressed blob', 'zstd': 'zstd compressed blob',\n"
  "  'enc': 'encrypted blob', 'enczstd': 'zstd compressed encrypted blob'}\n"
  "magic = hashlib.sha256(('Proxmox Backup %s v1.0' % names[kind])"
  ".encode()).digest()[:8]\n"
  "assert blob[:8] == magic, 'magic'\n"
  "crc = struct.unpack('<I', blob[8:12])[0]\n"
  "if kind.startswith('enc'):\n"
  "  from cryptography.hazmat.primitives.ciphers.aead import AESGCM\n"
  "  iv, tag, ct = blob[12:28], blob[28:44], blob[44:]\n"
  "  assert crc == zlib.crc32(ct), 'crc'\n"
  "  payload = AESGCM(bytes.fromhex(sys.argv[4])).decrypt(iv, ct + tag, None)\n"
  "else:\n"
  "  payload = blob[12:]\n"
  "  assert crc == zlib.crc32(payload), 'crc'\n"
  "if 'zstd' in kind:\n"
  "  payload = subprocess.run(['zstd', '-d', '-c'], input=payload,\n"
  "    stdout=subprocess.PIPE, check=True).stdout\n"
  "  assert len(payload) < 12 + len(data)\n"
  "assert payload == data, 'payload'\n";

static const char *const kind_names[]
    = { "plain", "zstd", "enc", "enczstd" };

static void
fill_random (uint8_t *p, size_t n, uint32_t seed)
{
  size_t i;
  for (i = 0; i < n; i++) {
    seed = seed * 1103515245u + 12345u;
    p[i] = (uint8_t) (seed >> 16);
  }
}

static void
fill_text (uint8_t *p, size_t n)
{
  size_t i;
  for (i = 0; i < n; i++)
    p[i] = (uint8_t) "the quick brown fox jumps over the lazy dog\n"[i % 44];
}

/* pbs_blob_decode_to into a buffer of exactly LEN bytes (restore's chunk
 * buffer): the data, in place for a plain blob, and one byte less of room
 * is refused when the data is not empty. */
static void
decode_to_case (const char *what, const uint8_t *blob, size_t blen,
                const uint8_t *data, size_t len, const struct pbs_key *key,
                int kind)
{
  uint8_t *buf = malloc (len ? len : 1);
  const uint8_t *got = NULL;
  size_t glen = 0;

  ok (pbs_blob_decode_to (blob, blen, key, buf, len, &got, &glen) == 0
          && glen == len && memcmp (got, data, len) == 0,
      "%s: decode_to gives the data", what);
  if (kind == PBS_BLOB_PLAIN)
    ok (got == blob + 12, "%s: decode_to uses a plain blob in place", what);
  else
    ok (got == buf, "%s: decode_to decodes into the buffer", what);
  if (len > 0)
    ok (pbs_blob_decode_to (blob, blen, key, buf, len - 1, &got, &glen) == -1
            && pbs_errno () == EBADMSG,
        "%s: decode_to refuses one byte less room (%s)", what,
        pbs_errmsg ());
  free (buf);
}

/* Encode DATA, check the kind, hand it to the python oracle, and decode
 * it again. */
static void
blob_case (const char *what, const uint8_t *data, size_t len,
           const struct pbs_key *key, const char *keyhex, bool compress,
           int want_kind, bool have_oracle)
{
  uint8_t *blob = NULL, *back = NULL;
  size_t blen, backlen;

  ok (pbs_blob_encode (data, len, key, compress, &blob, &blen) == 0,
      "%s: encode", what);
  if (!blob)
    return;
  ok (pbs_blob_kind (blob, blen) == want_kind, "%s: kind %s", what,
      kind_names[want_kind]);
  ok (pbs_blob_check_crc (blob, blen) == 0, "%s: crc ok", what);
  if (have_oracle) {
    write_file ("blob", blob, blen);
    write_file ("data", data, len);
    ok (sh ("python3 check.py blob data %s %s", kind_names[want_kind],
            keyhex ? keyhex : ""),
        "%s: python3/zstd oracle agrees", what);
  }
  ok (pbs_blob_decode (blob, blen, key, len, &back, &backlen) == 0
          && backlen == len && memcmp (back, data, len) == 0,
      "%s: decodes to the data", what);
  free (back);
  decode_to_case (what, blob, blen, data, len, key, want_kind);
  free (blob);
}

/* Threads that encode and decode, then exit: per-thread zstd and OpenSSL
 * contexts must not mix up and must be freed with their thread (the ASan
 * build's leak check sees it otherwise). */
struct thread_arg {
  const struct pbs_key *key;
  const uint8_t *data;
  size_t len;
  int ok;
};

static void *
thread_main (void *p)
{
  struct thread_arg *a = p;
  int i;

  a->ok = 1;
  for (i = 0; i < 8; i++) {
    uint8_t *blob, *back, d1[32], d2[32];
    size_t blen, backlen;
    if (pbs_blob_encode (a->data + i, a->len - 8, a->key, true, &blob, &blen)
            != 0
        || pbs_blob_decode (blob, blen, a->key, a->len, &back, &backlen) != 0) {
      a->ok = 0;
      return NULL;
    }
    pbs_chunk_digest (a->key, a->data + i, a->len - 8, d1);
    pbs_chunk_digest (a->key, back, backlen, d2);
    if (backlen != a->len - 8 || memcmp (d1, d2, 32) != 0)
      a->ok = 0;
    free (blob);
    free (back);
  }
  return NULL;
}

int
main (void)
{
  const size_t big = 4u * 1024 * 1024;
  uint8_t *rnd = malloc (big), *txt = malloc (big), *zero = calloc (1, big);
  uint8_t raw[32], d[32], *blob = NULL, *out = NULL;
  size_t blen, outlen, i;
  struct pbs_key *key, *other;
  char hex[65], keyhex[65], fp[96];
  bool oracle, have_crypto;

  snprintf (tmpdir, sizeof tmpdir, "%s/test-pbs-blob.XXXXXX",
            getenv ("TMPDIR") ? getenv ("TMPDIR") : "/tmp");
  if (!mkdtemp (tmpdir))
    return 99;
  oracle = system ("python3 -c 'import zlib' && zstd --version >/dev/null")
           == 0;
  have_crypto = oracle
                && system ("python3 -c 'import cryptography.hazmat.primitives"
                           ".ciphers.aead' 2>/dev/null")
                       == 0;
  if (!oracle)
    printf ("# python3 or zstd missing: byte-level oracle checks skipped\n");
  write_file ("check.py", check_py, sizeof check_py - 1);
  fill_random (rnd, big, 1);
  fill_text (txt, big);
  for (i = 0; i < 32; i++)
    raw[i] = (uint8_t) i;
  key = pbs_key_from_raw (raw);
  raw[0] = 0xff;
  other = pbs_key_from_raw (raw);
  raw[0] = 0;
  pbs_digest_hex (raw, keyhex);

  /* Digests and the key fingerprint: known answers (§5.3). */
  pbs_zero_chunk_digest (NULL, d);
  pbs_digest_hex (d, hex);
  ok (strcmp (hex, "bb9f8df61474d25e71fa00722318cd387396ca1736605e1248821cc0"
                   "de3d3af8")
          == 0,
      "zero chunk digest %s", hex);
  pbs_chunk_digest (NULL, zero, big, d);
  pbs_digest_hex (d, hex);
  ok (strcmp (hex, "bb9f8df61474d25e71fa00722318cd387396ca1736605e1248821cc0"
                   "de3d3af8")
          == 0,
      "sha256 of 4 MiB zeros matches");
  pbs_key_fingerprint (key, d);
  pbs_fingerprint_string (d, fp);
  ok (strcmp (fp, "0e:ab:d4:46:0b:6e:b9:ca:34:50:23:de:e2:b7:78:c7:90:e5:4a:"
                  "16:83:b9:65:9c:0a:57:ae:19:90:90:15:9b")
          == 0,
      "fingerprint of key 0..31: %s", fp);
  if (oracle) {
    /* Encrypted digest = sha256(data || id_key), id_key by PBKDF2. */
    uint8_t zd[32], kd[32], sd[32];
    char zh[65], kh[65], sh_[65];
    pbs_zero_chunk_digest (key, zd);
    pbs_chunk_digest (key, txt, 1000, kd);
    ok (pbs_zeros_digest (key, 12345, sd) == 0, "digest of 12345 zeros");
    pbs_digest_hex (zd, zh);
    pbs_digest_hex (kd, kh);
    pbs_digest_hex (sd, sh_);
    write_file ("txt1000", txt, 1000);
    ok (sh ("python3 -c \"import hashlib,sys\n"
            "k=bytes(range(32))\n"
            "idk=hashlib.pbkdf2_hmac('sha256',k,b'_id_key',10,32)\n"
            "assert hashlib.sha256(bytes(4<<20)+idk).hexdigest()=='%s'\n"
            "assert hashlib.sha256(open('txt1000','rb').read()+idk)"
            ".hexdigest()=='%s'\n"
            "assert hashlib.sha256(bytes(12345)+idk).hexdigest()=='%s'\n"
            "fpi=hashlib.sha256(b'Proxmox Backup Encryption Key Fingerprint')"
            ".digest()\n"
            "assert ':'.join('%%02x'%%b for b in hashlib.sha256(fpi+idk)"
            ".digest())=='%s'\"",
            zh, kh, sh_, fp),
        "encrypted digests and fingerprint match python3 hashlib");
  }
  ok (pbs_zeros_digest (NULL, 4096, d) == 0, "zeros digest 4096");
  {
    uint8_t d2[32];
    pbs_chunk_digest (NULL, zero, 4096, d2);
    ok (memcmp (d, d2, 32) == 0, "zeros digest = digest of zero buffer");
  }
  ok (pbs_digest_parse ("BB9F8DF61474D25E71FA00722318CD387396CA1736605E12488"
                        "21CC0DE3D3AF8",
                        d)
          == 0
          && d[0] == 0xbb && d[31] == 0xf8,
      "upper-case hex parses");
  ok (pbs_digest_parse ("bb9f", d) == -1 && pbs_errno () == EINVAL,
      "short hex rejected");

  /* The four kinds, each checked by the oracle. */
  blob_case ("plain random", rnd, 100000, NULL, NULL, false, PBS_BLOB_PLAIN,
             oracle);
  blob_case ("random, compression not kept", rnd, big, NULL, NULL, true,
             PBS_BLOB_PLAIN, oracle);
  blob_case ("zstd text", txt, big, NULL, NULL, true, PBS_BLOB_ZSTD, oracle);
  blob_case ("zstd zeros", zero, big, NULL, NULL, true, PBS_BLOB_ZSTD,
             oracle);
  blob_case ("encrypted random", rnd, big, key, keyhex, true,
             PBS_BLOB_ENCRYPTED, have_crypto);
  blob_case ("encrypted zstd text", txt, 300000, key, keyhex, true,
             PBS_BLOB_ENCRYPTED_ZSTD, have_crypto);
  blob_case ("encrypted, compression off", txt, 5000, key, keyhex, false,
             PBS_BLOB_ENCRYPTED, have_crypto);
  blob_case ("empty plain", rnd, 0, NULL, NULL, true, PBS_BLOB_PLAIN, oracle);
  blob_case ("empty encrypted", rnd, 0, key, keyhex, true, PBS_BLOB_ENCRYPTED,
             have_crypto);
  blob_case ("one byte", rnd, 1, NULL, NULL, true, PBS_BLOB_PLAIN, oracle);

  /* Decoding failures. */
  pbs_blob_encode (txt, 300000, key, true, &blob, &blen);
  i = (size_t) pbs_blob_decode (blob, blen, NULL, big, &out, &outlen);
  ok (i == (size_t) -1 && pbs_errno () == EACCES,
      "encrypted blob without key: EACCES (%s)", pbs_errmsg ());
  i = (size_t) pbs_blob_decode (blob, blen, other, big, &out, &outlen);
  ok (i == (size_t) -1 && pbs_errno () == EACCES,
      "encrypted blob with another key: EACCES (%s)", pbs_errmsg ());
  blob[blen - 1] ^= 1;
  i = (size_t) pbs_blob_decode (blob, blen, key, big, &out, &outlen);
  ok (i == (size_t) -1 && pbs_errno () == EBADMSG,
      "flipped ciphertext bit: EBADMSG (%s)", pbs_errmsg ());
  ok (pbs_blob_check_crc (blob, blen) == -1, "check_crc sees it too");
  {
    uint8_t *buf = malloc (300000);
    const uint8_t *got;
    /* decode_to skips the CRC (its callers check the digest); the GCM
     * tag still refuses a flipped ciphertext bit. */
    ok (pbs_blob_decode_to (blob, blen, key, buf, 300000, &got, &outlen)
            == -1 && pbs_errno () == EACCES,
        "decode_to: flipped ciphertext bit (GCM tag) (%s)", pbs_errmsg ());
    blob[blen - 1] ^= 1;
    ok (pbs_blob_decode_to (blob, blen, NULL, buf, 300000, &got, &outlen)
            == -1 && pbs_errno () == EACCES,
        "decode_to: encrypted without key: EACCES (%s)", pbs_errmsg ());
    ok (pbs_blob_decode_to (blob, blen, other, buf, 300000, &got, &outlen)
            == -1 && pbs_errno () == EACCES,
        "decode_to: another key: EACCES (%s)", pbs_errmsg ());
    free (buf);
  }
  free (blob);
  pbs_blob_encode (txt, 300000, NULL, true, &blob, &blen);
  i = (size_t) pbs_blob_decode (blob, blen, NULL, 299999, &out, &outlen);
  ok (i == (size_t) -1 && pbs_errno () == EBADMSG,
      "zstd output capped at max_len (%s)", pbs_errmsg ());
  ok (pbs_blob_decode (blob, blen, NULL, 300000, &out, &outlen) == 0
          && outlen == 300000,
      "exactly max_len is fine");
  free (out);
  free (blob);
  pbs_blob_encode (rnd, 1000, NULL, false, &blob, &blen);
  ok (pbs_blob_decode (blob, blen, NULL, 999, &out, &outlen) == -1,
      "plain blob larger than max_len rejected");
  blob[3] ^= 1;
  ok (pbs_blob_kind (blob, blen) == -1 && pbs_errno () == EBADMSG,
      "bad magic: not a blob");
  free (blob);
  ok (pbs_blob_kind (rnd, 5) == -1, "5 bytes: not a blob");
  i = (size_t) pbs_blob_encode (rnd, 128u * 1024 * 1024 + 1, NULL, false,
                                &blob, &blen);
  ok (i == (size_t) -1 && pbs_errno () == EINVAL,
      "encode refuses > 128 MiB (%s)", pbs_errmsg ());

  /* Frames the zstd CLI streamed (no content size), wrapped by python. */
  if (oracle) {
    uint8_t *five = malloc (5u << 20);
    fill_text (five, 5u << 20);
    for (i = 0; i < (5u << 20); i += 4096)
      five[i] = (uint8_t) i;
    write_file ("five", five, 5u << 20);
    ok (sh ("zstd -q -3 -c < five > five.zst && python3 -c \""
            "import zlib,struct,hashlib\n"
            "z=open('five.zst','rb').read()\n"
            "fhd=z[4]\n"
            "assert fhd>>6==0 and not fhd&0x20, 'frame has a content size'\n"
            "m=hashlib.sha256(b'Proxmox Backup zstd compressed blob v1.0')"
            ".digest()[:8]\n"
            "open('five.blob','wb').write(m+struct.pack('<I',zlib.crc32(z))"
            "+z)\""),
        "zstd CLI made a streamed frame without content size");
    blob = read_file ("five.blob", &blen);
    ok (blob && pbs_blob_decode (blob, blen, NULL, 16u << 20, &out, &outlen)
                    == 0
            && outlen == (5u << 20) && memcmp (out, five, outlen) == 0,
        "streamed zstd blob decodes (5 MiB, no content size)");
    free (out);
    ok (blob && pbs_blob_decode (blob, blen, NULL, (5u << 20) - 1, &out,
                                 &outlen)
                    == -1,
        "streamed zstd blob still capped");
    {
      uint8_t *buf = malloc (5u << 20);
      const uint8_t *got = NULL;
      ok (blob && pbs_blob_decode_to (blob, blen, NULL, buf, 5u << 20, &got,
                                      &outlen) == 0
              && got == buf && outlen == (5u << 20)
              && memcmp (buf, five, outlen) == 0,
          "decode_to: streamed zstd blob into a buffer of exactly 5 MiB");
      ok (blob && pbs_blob_decode_to (blob, blen, NULL, buf, (5u << 20) - 1,
                                      &got, &outlen) == -1
              && pbs_errno () == EBADMSG,
          "decode_to: streamed zstd blob capped (%s)", pbs_errmsg ());
      free (buf);
    }
    free (blob);
    /* A frame cut short, under a CRC that fits it: only zstd notices. */
    ok (sh ("python3 -c \"import zlib,struct,hashlib\n"
            "z=open('five.zst','rb').read()[:-100]\n"
            "m=hashlib.sha256(b'Proxmox Backup zstd compressed blob v1.0')"
            ".digest()[:8]\n"
            "open('cut.blob','wb').write(m+struct.pack('<I',zlib.crc32(z))"
            "+z)\""),
        "a truncated zstd frame with a matching CRC");
    blob = read_file ("cut.blob", &blen);
    {
      uint8_t *buf = malloc (5u << 20);
      const uint8_t *got = NULL;
      ok (blob && pbs_blob_decode_to (blob, blen, NULL, buf, 5u << 20, &got,
                                      &outlen) == -1
              && pbs_errno () == EBADMSG,
          "decode_to: truncated zstd frame refused (%s)", pbs_errmsg ());
      free (buf);
    }
    free (blob);
    ok (sh ("zstd -q -1 --no-content-size -c < txt1000 > t.zst && cat t.zst "
            "t.zst > tt.zst && python3 -c \"import zlib,struct,hashlib\n"
            "z=open('tt.zst','rb').read()\n"
            "m=hashlib.sha256(b'Proxmox Backup zstd compressed blob v1.0')"
            ".digest()[:8]\n"
            "open('tt.blob','wb').write(m+struct.pack('<I',zlib.crc32(z))"
            "+z)\""),
        "two concatenated frames");
    blob = read_file ("tt.blob", &blen);
    ok (blob && pbs_blob_decode (blob, blen, NULL, 2000, &out, &outlen) == 0
            && outlen == 2000 && memcmp (out, txt, 1000) == 0
            && memcmp (out + 1000, txt, 1000) == 0,
        "concatenated frames decode");
    free (out);
    {
      uint8_t buf[2000];
      const uint8_t *got = NULL;
      ok (blob && pbs_blob_decode_to (blob, blen, NULL, buf, sizeof buf, &got,
                                      &outlen) == 0
              && outlen == 2000 && memcmp (buf, txt, 1000) == 0
              && memcmp (buf + 1000, txt, 1000) == 0,
          "decode_to: concatenated frames");
      ok (blob && pbs_blob_decode_to (blob, blen, NULL, buf, 1999, &got,
                                      &outlen) == -1,
          "decode_to: concatenated frames capped at 1999");
    }
    if (blob) {
      ok (pbs_blob_decode (blob, blen - 3, NULL, 2000, &out, &outlen) == -1,
          "truncated frame (CRC) rejected");
    }
    free (blob);
    free (five);
  }

  {
    pthread_t th[4];
    struct thread_arg args[4];
    int n_ok = 0;
    for (i = 0; i < 4; i++) {
      args[i].key = i % 2 ? key : NULL;
      args[i].data = i < 2 ? txt : rnd;
      args[i].len = 1u << 20;
      pthread_create (&th[i], NULL, thread_main, &args[i]);
    }
    for (i = 0; i < 4; i++) {
      pthread_join (th[i], NULL);
      n_ok += args[i].ok;
    }
    ok (n_ok == 4, "4 threads encode and decode concurrently");
  }

  sh ("rm -rf %s", tmpdir);
  pbs_key_free (key);
  pbs_key_free (other);
  free (rnd);
  free (txt);
  free (zero);
  return tap_done ();
}
