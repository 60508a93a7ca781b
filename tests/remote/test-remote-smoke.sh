#!/bin/bash
# test-remote-smoke.sh -- the remote backend (pbsproto/remote-*.c) below
# the CLI, driven by tests/helpers/remote-smoke against the HTTPS test
# server: backup and restore over HTTP/2 with a token and with a ticket,
# reuse-csum, the snapshot listing, certificate pinning and CA files,
# authentication failures, a connection dropped before finish and a
# server killed in the middle of a push.
# Oracles: the raw image itself (cmp), python3 hashlib over its 4 MiB
# pieces against the .fidx on disk, the openssl CLI's fingerprint, the
# datastore directory.
. "$(dirname "$0")/../helpers/functions.sh"
. "$(dirname "$0")/../helpers/remote-functions.sh"
requires qemu-img
requires qemu-io
requires python3
SMOKE=$B/tests/helpers/remote-smoke
[ -x "$SMOKE" ] || skip "remote-smoke helper not built"

setup_remote
start_server "$TMP/ds"
fp_lower=$(echo "$FP" | tr 'A-F' 'a-f')
# The same fingerprint with its first digit changed.
case $fp_lower in 0*) fp_wrong=1${fp_lower#?} ;; *) fp_wrong=0${fp_lower#?} ;; esac
TOK="root@pam!tok@127.0.0.1:$PORT:$STORE"
USR="root@pam@127.0.0.1:$PORT:$STORE"
export PBS_FINGERPRINT=$FP
export PBS_PASSWORD=$TOKEN_SECRET
T1=1700000000 T2=1700000100 T3=1700000200 T4=1700000300

# smoke ARGS...: run the helper, output in $TMP/s.out / s.err.
smoke () { "$SMOKE" "$@" >"$TMP/s.out" 2>"$TMP/s.err"; }

# fidx_matches SNAPDIR RAW: the stored index's size and digests equal
# sha256 of each 4 MiB piece of RAW (python3 hashlib).
fidx_matches () {
  python3 - "$1/drive-scsi0.img.fidx" "$2" <<'EOF'
import hashlib, struct, sys
idx = open(sys.argv[1], "rb").read()
raw = open(sys.argv[2], "rb").read()
C = 4194304
assert idx[:8] == bytes.fromhex("2f7f41ed91fd0fcd"), "magic"
size, cs = struct.unpack_from("<QQ", idx, 64)
assert size == len(raw) and cs == C, (size, cs)
n = (size + C - 1) // C
assert len(idx) == 4096 + 32 * n
for i in range(n):
    want = hashlib.sha256(raw[i * C:(i + 1) * C]).digest()
    assert idx[4096 + 32 * i:4096 + 32 * (i + 1)] == want, "chunk %d" % i
EOF
}

snapdir () { echo "$TMP/ds/vm/$1/$(date -u -d "@$2" +%Y-%m-%dT%H:%M:%SZ)"; }

# --- a full backup with a token, restore, index on disk
qemu-img create -q -f raw "$TMP/a.raw" 22M
qemu-io -f raw -c 'write -P 0xaa 0 5M' -c 'write -P 0x11 12M 3M' \
  -c 'write -P 0x33 21M 1M' "$TMP/a.raw" >/dev/null
check "token: full backup" smoke backup "$TOK" vm 100 $T1 "$TMP/a.raw"
check "token: first backup has no base" grep -qx 'previous=-1' "$TMP/s.out"
check "token: every distinct chunk uploaded once (4 data + 1 zero)" \
  grep -qx 'uploaded=5 appended=6' "$TMP/s.out"
check "stored index = sha256 of each 4 MiB piece (python hashlib)" \
  fidx_matches "$(snapdir 100 $T1)" "$TMP/a.raw"
check "token: restore" smoke restore "$TOK" vm 100 $T1 "$TMP/r1.raw"
same_bytes "$TMP/r1.raw" "$TMP/a.raw" "token: restore equals the image"

# --- incremental with reuse-csum: one changed chunk, one upload, one PUT pair
cp "$TMP/a.raw" "$TMP/b.raw"
qemu-io -f raw -c 'write -P 0x22 4M 1M' "$TMP/b.raw" >/dev/null
check "reuse-csum backup" smoke --reuse backup "$TOK" vm 100 $T2 "$TMP/b.raw"
check "base is the first snapshot" grep -qx "previous=$T1" "$TMP/s.out"
check "only the changed chunk sent" grep -qx 'uploaded=1 appended=1' "$TMP/s.out"
check "incremental index = sha256 of the new image's pieces" \
  fidx_matches "$(snapdir 100 $T2)" "$TMP/b.raw"
check "restore incremental" smoke restore "$TOK" vm 100 $T2 "$TMP/r2.raw"
same_bytes "$TMP/r2.raw" "$TMP/b.raw" "incremental restore equals the image"

# --- listing through the REST API, sorted
check "token: snapshots" smoke snapshots "$TOK"
printf 'vm/100/2023-11-14T22:13:20Z 1700000000 finished\nvm/100/2023-11-14T22:15:00Z 1700000100 finished\n' >"$TMP/want.list"
cut -d' ' -f1-3 "$TMP/s.out" >"$TMP/got.list"
same_bytes "$TMP/got.list" "$TMP/want.list" "listing: both snapshots, finished, in time order"

# --- ticket login (a password with : % / & +)
check "ticket: snapshots" env PBS_PASSWORD="$USER_PASSWORD" "$SMOKE" snapshots "$USR"
check "ticket: backup (CSRF token on POST/PUT)" \
  env PBS_PASSWORD="$USER_PASSWORD" "$SMOKE" backup "$USR" vm 200 $T1 "$TMP/b.raw"
check "ticket: restore" \
  env PBS_PASSWORD="$USER_PASSWORD" "$SMOKE" restore "$USR" vm 200 $T1 "$TMP/r3.raw"
same_bytes "$TMP/r3.raw" "$TMP/b.raw" "ticket: restore equals the image"
check "ticket: owner file names the user" grep -qx 'root@pam' "$TMP/ds/vm/200/owner"

# expect_smoke_fail DESCRIPTION PATTERN CMD...: exit 1, stderr matches.
expect_smoke_fail () {
  local d=$1 pat=$2 rc=0; shift 2
  "$@" >"$TMP/f.out" 2>"$TMP/f.err" || rc=$?
  if [ $rc = 1 ] && grep -q -- "$pat" "$TMP/f.err"; then
    pass "$d: $(cat "$TMP/f.err")"
  else
    fail "$d (exit $rc): $(cat "$TMP/f.err")"
  fi
}

# --- authentication failures
expect_smoke_fail "wrong password" "login as root@pam failed.*401" \
  env PBS_PASSWORD=wrong "$SMOKE" snapshots "$USR"
expect_smoke_fail "wrong token secret" "http 401" \
  env PBS_PASSWORD=wrong "$SMOKE" snapshots "$TOK"
expect_smoke_fail "wrong token secret on the upgrade" "http 401" \
  env PBS_PASSWORD=wrong "$SMOKE" backup "$TOK" vm 100 $T3 "$TMP/b.raw"
expect_smoke_fail "expired token" "http 401" \
  "$SMOKE" snapshots "root@pam!old@127.0.0.1:$PORT:$STORE"
expect_smoke_fail "no secret" "no API token secret given" \
  env -u PBS_PASSWORD "$SMOKE" snapshots "$TOK"
if grep -q -- "$TOKEN_SECRET\|$USER_PASSWORD" "$TMP/f.err" "$TMP/s.err"; then
  fail "a secret appears in an error message"
else
  pass "no secret in error messages"
fi

# --- certificate policy (docs/pbs-protocol.md §1.2)
expect_smoke_fail "no pin, untrusted: refused, fingerprint printed" \
  "its fingerprint is $fp_lower" env -u PBS_FINGERPRINT "$SMOKE" snapshots "$TOK"
expect_smoke_fail "wrong pin refused, real fingerprint printed" \
  "fingerprint $fp_lower does not match" \
  env PBS_FINGERPRINT="$fp_wrong" "$SMOKE" snapshots "$TOK"
expect_smoke_fail "colon-less pin never matches" "does not match" \
  env PBS_FINGERPRINT="${fp_lower//:/}" "$SMOKE" snapshots "$TOK"
check "lower-case pin accepted" env PBS_FINGERPRINT="$fp_lower" "$SMOKE" snapshots "$TOK"
check "CA file: verified chain, no pin needed (IP SAN)" \
  env -u PBS_FINGERPRINT "$SMOKE" --ca "$TMP/cert.pem" snapshots "$TOK"
check "CA file: verified chain, no pin needed (DNS SAN)" \
  env -u PBS_FINGERPRINT "$SMOKE" --ca "$TMP/cert.pem" snapshots \
  "root@pam!tok@localhost:$PORT:$STORE"
# System CAs as OpenSSL finds them (SSL_CERT_DIR, SSL_CERT_FILE), made by
# the openssl CLI: a hashed directory is read lazily, a bundle file whole.
mkdir "$TMP/cadir" "$TMP/emptydir"
cp "$TMP/cert.pem" "$TMP/cadir/server.pem"
openssl rehash "$TMP/cadir" 2>/dev/null || c_rehash "$TMP/cadir" >/dev/null
check "system CAs: hashed SSL_CERT_DIR verifies, no pin needed" \
  env -u PBS_FINGERPRINT SSL_CERT_DIR="$TMP/cadir" SSL_CERT_FILE=/nonexistent \
  "$SMOKE" snapshots "$TOK"
check "system CAs: SSL_CERT_FILE verifies, no pin needed" \
  env -u PBS_FINGERPRINT SSL_CERT_DIR="$TMP/emptydir" \
  SSL_CERT_FILE="$TMP/cert.pem" "$SMOKE" snapshots "$TOK"
expect_smoke_fail "system CAs without this one: refused" "certificate not trusted" \
  env -u PBS_FINGERPRINT SSL_CERT_DIR="$TMP/emptydir" SSL_CERT_FILE=/nonexistent \
  "$SMOKE" snapshots "$TOK"
# CA-verified or pinned (§1.2): a stale pin does not refuse a trusted
# certificate (the pin is tried first, then the CAs on a new connection).
check "stale pin, CA-verified certificate: accepted" \
  env PBS_FINGERPRINT="$fp_wrong" SSL_CERT_DIR="$TMP/emptydir" \
  SSL_CERT_FILE="$TMP/cert.pem" "$SMOKE" snapshots "$TOK"
expect_smoke_fail "refused port: transient error" "transient 1" \
  "$SMOKE" snapshots "root@pam!tok@127.0.0.1:1:$STORE"

# --- server rule surfaces with its text, not transient
expect_smoke_fail "older backup-time: server's message, not transient" \
  "backup timestamp is older than last backup.*transient 0" \
  "$SMOKE" backup "$TOK" vm 100 $((T1 + 1)) "$TMP/b.raw"

# --- an asynchronous upload refused: the server's text at a later call
from=$(($(wc -l <"$TMP/server.log") + 1))
expect_smoke_fail "chunk under a wrong digest: server's message, not transient" \
  "detected chunk with wrong digest.*chunk .*http 400, transient 0" \
  "$SMOKE" --bad-digest 0 backup "$TOK" vm 100 $T3 "$TMP/a.raw"
wait_line "$TMP/server.log" 'removing unfinished backup' "$from" || true

# --- a connection dropped before finish: the server removes the snapshot
head -c 30M /dev/urandom >"$TMP/c.raw"
from=$(($(wc -l <"$TMP/server.log") + 1))
"$SMOKE" --die-after 3 backup "$TOK" vm 100 $T3 "$TMP/c.raw" >"$TMP/d.out" 2>&1 || true
# The server logs the removal when it sees the connection end.
wait_line "$TMP/server.log" 'removing unfinished backup' "$from" || true
if [ -e "$(snapdir 100 $T3)" ]; then
  fail "dropped connection: snapshot directory left behind"
else
  pass "dropped connection: no snapshot left"
fi

# --- the server killed in the middle of a push
mkfifo "$TMP/go"
exec {go}<>"$TMP/go"
"$SMOKE" --pause-after 2 backup "$TOK" vm 100 $T3 "$TMP/c.raw" <&$go >"$TMP/k.out" 2>"$TMP/k.err" &
smoke_pid=$!
wait_line "$TMP/k.out" paused || true
kill -KILL "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true
echo go >&$go
rc=0; wait $smoke_pid || rc=$?
if [ $rc = 1 ] && grep -q 'transient 1' "$TMP/k.err"; then
  pass "server killed: push fails with a transient error: $(cat "$TMP/k.err")"
else
  fail "server killed (exit $rc): $(cat "$TMP/k.err")"
fi
start_server "$TMP/ds"
TOK="root@pam!tok@127.0.0.1:$PORT:$STORE"
check "after restart: snapshots" smoke snapshots "$TOK"
if grep -q " $T3 finished" "$TMP/s.out"; then
  fail "killed push left a finished snapshot"
else
  pass "killed push: no finished snapshot"
fi
check "after restart: previous snapshot restores" smoke restore "$TOK" vm 100 $T2 "$TMP/r4.raw"
same_bytes "$TMP/r4.raw" "$TMP/b.raw" "after restart: restore equals the image"
check "after restart: next push succeeds" smoke --reuse backup "$TOK" vm 100 $T4 "$TMP/c.raw"
check "after restart: base is still the last finished snapshot" grep -qx "previous=$T2" "$TMP/s.out"
check "after restart: restore the new push" smoke restore "$TOK" vm 100 $T4 "$TMP/r5.raw"
same_bytes "$TMP/r5.raw" "$TMP/c.raw" "after restart: new push restores"

# --- the host name is part of the CA check, not of the pin (§1.2): a
# server whose certificate names only other.invalid
mkdir "$TMP/other"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -keyout "$TMP/other/key.pem" -out "$TMP/other/cert.pem" -days 2 \
  -subj /CN=other.invalid -addext "subjectAltName=DNS:other.invalid" 2>/dev/null
other_fp=$(openssl x509 -in "$TMP/other/cert.pem" -noout -fingerprint -sha256 |
           cut -d= -f2 | tr 'A-F' 'a-f')
CERT_DIR=$TMP/other start_server "$TMP/ds"
expect_smoke_fail "CA-valid certificate of another name: refused" \
  "certificate not trusted (IP address mismatch); its fingerprint is $other_fp" \
  env -u PBS_FINGERPRINT "$SMOKE" --ca "$TMP/other/cert.pem" snapshots \
  "root@pam!tok@127.0.0.1:$PORT:$STORE"
expect_smoke_fail "CA-valid certificate of another name (DNS): refused" \
  "certificate not trusted (hostname mismatch)" \
  env -u PBS_FINGERPRINT "$SMOKE" --ca "$TMP/other/cert.pem" snapshots \
  "root@pam!tok@localhost:$PORT:$STORE"
check "certificate of another name, pinned: accepted" \
  env PBS_FINGERPRINT="$other_fp" "$SMOKE" snapshots \
  "root@pam!tok@127.0.0.1:$PORT:$STORE"

done_testing
