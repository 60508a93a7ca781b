#!/bin/bash
# test-key.sh -- `qcow2pbs key create|show`: key files checked by python3
# (hashlib.scrypt / pbkdf2_hmac, cryptography's AESGCM with the 16-byte IV,
# the fingerprint rule of docs/pbs-protocol.md §5.3), the password sources of
# proxmox-backup-client, and the CLI error rules.
source "$(dirname "$0")/../helpers/functions.sh"
requires python3
[ -x "$TOOL" ] || skip "$TOOL not built"
python3 -c 'import cryptography.hazmat.primitives.ciphers.aead' 2>/dev/null ||
  skip "python3-cryptography not installed (the AES-GCM oracle)"
unset PBS_ENCRYPTION_PASSWORD PBS_ENCRYPTION_PASSWORD_FD \
  PBS_ENCRYPTION_PASSWORD_FILE PBS_ENCRYPTION_PASSWORD_CMD
cd "$TMP"

cat >check.py <<'PY'
import base64, hashlib, json, sys
path, pw, want_kdf = sys.argv[1], sys.argv[2].encode(), sys.argv[3]
k = json.load(open(path))
b64 = lambda s: base64.b64decode(s, validate=True)
data = b64(k['data'])
if k['kdf'] is None:
    assert want_kdf == 'none'
    raw = data
else:
    (name, p), = k['kdf'].items()
    salt = b64(p['salt'])
    if name == 'Scrypt':
        assert want_kdf == 'scrypt' and (p['n'], p['r'], p['p']) == (65536, 8, 1)
        d = hashlib.scrypt(pw, salt=salt, n=p['n'], r=p['r'], p=p['p'],
                           maxmem=256 << 20, dklen=32)
    else:
        assert want_kdf == 'pbkdf2' and name == 'PBKDF2'
        d = hashlib.pbkdf2_hmac('sha256', pw, salt, p['iter'], 32)
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    raw = AESGCM(d).decrypt(data[:16], data[32:] + data[16:32], None)
assert len(raw) == 32
idk = hashlib.pbkdf2_hmac('sha256', raw, b'_id_key', 10, 32)
fpi = hashlib.sha256(b'Proxmox Backup Encryption Key Fingerprint').digest()
fp = ':'.join('%02x' % b for b in hashlib.sha256(fpi + idk).digest())
assert fp == k['fingerprint'], 'fingerprint in file'
print(fp)
PY

# key_ok FILE PASSWORD KDF DESCRIPTION: python3 decrypts FILE with PASSWORD
# and its fingerprint is what `key show` reports.
key_ok () {
  local fp show
  if fp=$(python3 check.py "$1" "$2" "$3") &&
     show=$("$TOOL" key show --output-format json "$1") &&
     [ "$(python3 -c 'import json,sys; print(json.load(sys.stdin)["fingerprint"])' <<<"$show")" = "$fp" ] &&
     [ "$(stat -c %a "$1")" = 600 ]; then
    pass "$4"
  else
    fail "$4"
  fi
}

# path_once FILE: the last expect_fail line is "qcow2pbs: FILE: ..." and
# names FILE exactly once.
path_once () {
  local line; line=$(cat "$TMP/ef.err")
  [ "${line#"qcow2pbs: $1: "}" != "$line" ] && [ "$(grep -o -F -- "$1" "$TMP/ef.err" | wc -l)" = 1 ]
}
# key_error DESCRIPTION FILE CMD...: expect_fail, then path_once FILE.
key_error () {
  local d=$1 f=$2
  shift 2
  expect_fail "$d" "$@"
  check "$d: path once" path_once "$f"
}

check "key --help" "$TOOL" key --help
check "key create --help" "$TOOL" key create --help
check "key show --help" "$TOOL" key show --help

PBS_ENCRYPTION_PASSWORD=correct-horse "$TOOL" key create --hint 'the horse' k1.json
key_ok k1.json correct-horse scrypt "default kdf scrypt, password from PBS_ENCRYPTION_PASSWORD"
"$TOOL" key show k1.json >show.txt
check "text show lists kdf and hint" grep -q '^kdf: *scrypt$' show.txt
check "text show has the hint" grep -q '^hint: *the horse$' show.txt

"$TOOL" key create k2.json --kdf none </dev/null  # options after FILE too
key_ok k2.json "" none "kdf none needs no password"

printf 'from-a-file\nsecond line is ignored\n' >pw.txt
PBS_ENCRYPTION_PASSWORD_FILE=pw.txt "$TOOL" key create --kdf pbkdf2 k3.json
key_ok k3.json from-a-file pbkdf2 "PBS_ENCRYPTION_PASSWORD_FILE, first line only"

PBS_ENCRYPTION_PASSWORD_FD=3 "$TOOL" key create k4.json 3< <(printf 'via-fd-3\nxx\n')
key_ok k4.json via-fd-3 scrypt "PBS_ENCRYPTION_PASSWORD_FD"

PBS_ENCRYPTION_PASSWORD_CMD="printf 'from-cmd\nmore\n'" "$TOOL" key create --kdf pbkdf2 k5.json
key_ok k5.json from-cmd pbkdf2 "PBS_ENCRYPTION_PASSWORD_CMD"

PBS_ENCRYPTION_PASSWORD=first-wins PBS_ENCRYPTION_PASSWORD_FILE=pw.txt \
  "$TOOL" key create --kdf pbkdf2 k6.json
key_ok k6.json first-wins pbkdf2 "PBS_ENCRYPTION_PASSWORD wins over _FILE"

# The terminal prompt, through a pseudo-terminal: asked twice, no echo.
cat >ptyprompt.py <<'PY'
import os, pty, signal, sys
tool, out, first, second = sys.argv[1:5]
signal.alarm(60)  # a lost prompt must fail the test, not hang it
pid, fd = pty.fork()
if pid == 0:
    os.execv(tool, [tool, 'key', 'create', '--kdf', 'pbkdf2', out])
buf = b''
def wait_for(s):
    global buf
    while s not in buf:
        try:
            d = os.read(fd, 1024)
        except OSError:
            d = b''
        if not d:
            sys.exit('no prompt %r in %r' % (s, buf))
        buf += d
    buf = buf[buf.index(s) + len(s):]
wait_for(b'Encryption Key Password: ')
os.write(fd, first.encode() + b'\n')
wait_for(b'Verify Password: ')
os.write(fd, second.encode() + b'\n')
rest = b''
while True:
    try:
        d = os.read(fd, 1024)
    except OSError:
        break
    if not d:
        break
    rest += d
assert first.encode() not in buf + rest, 'password echoed'
_, st = os.waitpid(pid, 0)
print('exit', os.waitstatus_to_exitcode(st))
PY
check "terminal prompt asked twice, echo off" \
  test "$(python3 ptyprompt.py "$TOOL" k11.json tty-secret tty-secret)" = "exit 0"
key_ok k11.json tty-secret pbkdf2 "password from the terminal"
check "different passwords on the terminal: exit 1, no file" \
  test "$(python3 ptyprompt.py "$TOOL" k12.json tty-secret other-one)" = "exit 1" -a ! -e k12.json

cp k1.json k1.orig
key_error "existing file refused" k1.json \
  env PBS_ENCRYPTION_PASSWORD=another-one "$TOOL" key create k1.json
same_bytes k1.json k1.orig "existing key file unchanged"
expect_fail "no password and no terminal" "$TOOL" key create k7.json </dev/null
key_error "password too short" k8.json \
  env PBS_ENCRYPTION_PASSWORD=1234 "$TOOL" key create k8.json
key_error "create in a missing directory" nodir/k8.json \
  "$TOOL" key create --kdf none nodir/k8.json
key_error "hint that is not UTF-8" k8.json \
  "$TOOL" key create --kdf none --hint $'\xff' k8.json
expect_fail "failing password command" \
  env PBS_ENCRYPTION_PASSWORD_CMD=false "$TOOL" key create k9.json
expect_fail "unreadable password file" \
  env PBS_ENCRYPTION_PASSWORD_FILE=/nonexistent "$TOOL" key create k9.json
check "nothing left behind by failures" \
  test -z "$(ls -A | grep -E '^(k7|k8|k9)\.json|keyfile')"
echo '{"kdf": "x"}' >bogus.json
key_error "show: not a key file" bogus.json "$TOOL" key show bogus.json
key_error "show: missing file" missing.json "$TOOL" key show missing.json
echo '{"kdf": nul' >badjson.json
key_error "show: bad JSON" badjson.json "$TOOL" key show badjson.json
python3 -c 'import json, sys
k = json.load(open("k2.json"))
k["kdf"] = {"Argon2": {"salt": k["data"]}}
json.dump(k, open("argon.json", "w"))
k = json.load(open("k2.json"))
k["created"] = "yesterday"
json.dump(k, open("badtime.json", "w"))'
key_error "show: unsupported kdf" argon.json "$TOOL" key show argon.json
key_error "show: bad created time" badtime.json "$TOOL" key show badtime.json
mkdir dir.json
key_error "show: a directory" dir.json "$TOOL" key show dir.json
head -c 70000 /dev/zero >big.json
key_error "show: too large" big.json "$TOOL" key show big.json
# A newline in the name must not split the error line.
cp bogus.json $'new\nline.json'
expect_fail "show: newline in the name" "$TOOL" key show $'new\nline.json'
check "newline in the name: shown escaped (\\x0a)" \
  grep -q -F 'qcow2pbs: new\x0aline.json: not a PBS key file' "$TMP/ef.err"
if grep -rq 'correct-horse' "$TMP"/k*.json show.txt; then
  fail "password leaked into files"
else
  pass "password in no output"
fi

rc=0; "$TOOL" key create --kdf argon k10.json 2>/dev/null || rc=$?
check "bad --kdf is a usage error (2)" test $rc = 2
rc=0; "$TOOL" key show 2>/dev/null || rc=$?
check "missing FILE is a usage error (2)" test $rc = 2
rc=0; "$TOOL" key frobnicate 2>/dev/null || rc=$?
check "unknown subcommand is a usage error (2)" test $rc = 2

done_testing
