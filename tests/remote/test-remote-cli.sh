#!/bin/bash
# test-remote-cli.sh -- qcow2pbs push / restore / verify / snapshots against
# the HTTPS test server, through the same code path as a local datastore:
# with an API token and with a ticket login (password from PBS_PASSWORD,
# PBS_PASSWORD_FD and PBS_PASSWORD_FILE), certificate pinning, auth
# failures as one-line errors, and a server killed in the middle of a push.
# Oracles: qemu-img convert -O raw of the same layer, the openssl CLI's
# certificate fingerprint, python3 json over the listing.
. "$(dirname "$0")/../helpers/functions.sh"
. "$(dirname "$0")/../helpers/remote-functions.sh"
requires qemu-img
requires qemu-io
requires python3
[ -x "$TOOL" ] || skip "qcow2pbs not built"

setup_remote
start_server "$TMP/ds"
fp_lower=$(echo "$FP" | tr 'A-F' 'a-f')
# The same fingerprint with its first digit changed.
case $fp_lower in 0*) fp_wrong=1${fp_lower#?} ;; *) fp_wrong=0${fp_lower#?} ;; esac
export PBS_REPOSITORY="root@pam!tok@127.0.0.1:$PORT:$STORE"
export PBS_PASSWORD=$TOKEN_SECRET PBS_FINGERPRINT=$FP
USR="root@pam@127.0.0.1:$PORT:$STORE"

# A chain: full (data in three places, a zero tail) <- incr0 (one change).
qemu-img create -q -f qcow2 "$TMP/full.qcow2" 40M
qemu-io -c 'write -P 0xaa 0 5M' -c 'write -P 0x11 20M 3M' \
  -c 'write -P 0x33 36M 1M' "$TMP/full.qcow2" >/dev/null
qemu-img create -q -f qcow2 -b "$TMP/full.qcow2" -F qcow2 "$TMP/incr0.qcow2"
qemu-io -c 'write -P 0x22 6M 1M' "$TMP/incr0.qcow2" >/dev/null
qemu-img convert -O raw "$TMP/full.qcow2" "$TMP/full.raw"
qemu-img convert -O raw "$TMP/incr0.qcow2" "$TMP/incr0.raw"

S1=vm/100/2023-11-14T22:13:20Z S2=vm/100/2023-11-14T22:15:00Z
A=drive-scsi0.img.fidx

# --- token: full then incremental push, restore, verify, listing
"$TOOL" push --backup-id 100 --backup-time 1700000000 --output-format json \
  "$TMP/full.qcow2" >"$TMP/p1.json" 2>"$TMP/p1.err" &&
  pass "token: push full" || fail "token: push full: $(cat "$TMP/p1.err")"
"$TOOL" push --backup-id 100 --backup-time 1700000100 --output-format json \
  "$TMP/incr0.qcow2" >"$TMP/p2.json" 2>"$TMP/p2.err" &&
  pass "token: push incremental" || fail "token: push incremental: $(cat "$TMP/p2.err")"
check "token: incremental push reused the base" python3 -c '
import json, sys
a = json.load(open(sys.argv[1]))["archives"][0]
sys.exit(0 if a["incremental"] and a["read_chunks"] == 1 and a["stored_chunks"] == 1 else 1)' "$TMP/p2.json"
for s in "$S1=full" "$S2=incr0"; do
  snap=${s%=*} layer=${s#*=}
  rm -f "$TMP/r.raw"
  if "$TOOL" restore "$snap" "$A" "$TMP/r.raw" 2>"$TMP/r.err"; then
    same_bytes "$TMP/r.raw" "$TMP/$layer.raw" "token: restore $snap = qemu-img convert of $layer"
  else
    fail "token: restore $snap: $(cat "$TMP/r.err")"
  fi
done
check "token: verify incr0 against its snapshot" "$TOOL" verify "$S2" "$TMP/incr0.qcow2"
rc=0; "$TOOL" verify "$S2" "$TMP/full.qcow2" >/dev/null 2>&1 || rc=$?
[ $rc = 1 ] && pass "token: verify full against the incremental snapshot differs" ||
  fail "token: verify of a different disk exited $rc"
"$TOOL" snapshots --output-format json >"$TMP/l.json" 2>"$TMP/l.err" || true
check "token: snapshots lists both, sorted, finished" python3 -c '
import json, sys
j = json.load(open(sys.argv[1]))
got = [(s["backup-type"], s["backup-id"], s["backup-time"],
        "index.json.blob" in [f["filename"] for f in s["files"]]) for s in j]
print(got)
sys.exit(0 if got == [("vm", "100", 1700000000, True), ("vm", "100", 1700000100, True)] else 1)' "$TMP/l.json"

# --- ticket login; password sources in the official order
export -n PBS_PASSWORD
printf '%s\nsecond line is ignored\n' "$USER_PASSWORD" >"$TMP/pw"
check "ticket (PBS_PASSWORD_FILE): push" env -u PBS_PASSWORD \
  PBS_PASSWORD_FILE="$TMP/pw" "$TOOL" push --repository "$USR" --backup-id 200 \
  --backup-time 1700000000 "$TMP/incr0.qcow2"
rm -f "$TMP/r.raw"
check "ticket (PBS_PASSWORD_FD): restore" env -u PBS_PASSWORD PBS_PASSWORD_FD=7 \
  "$TOOL" restore --repository "$USR" vm/200/2023-11-14T22:13:20Z "$A" "$TMP/r.raw" 7<"$TMP/pw"
same_bytes "$TMP/r.raw" "$TMP/incr0.raw" "ticket: restore = qemu-img convert of incr0"
check "ticket (PBS_PASSWORD): verify" env PBS_PASSWORD="$USER_PASSWORD" \
  "$TOOL" verify --repository "$USR" vm/200/2023-11-14T22:13:20Z "$TMP/incr0.qcow2"
check "ticket: snapshots" env PBS_PASSWORD="$USER_PASSWORD" "$TOOL" snapshots \
  --repository "$USR"
expect_fail "PBS_PASSWORD wins over PBS_PASSWORD_FILE" env PBS_PASSWORD=wrong \
  PBS_PASSWORD_FILE="$TMP/pw" "$TOOL" snapshots --repository "$USR"
expect_fail "wrong password" env PBS_PASSWORD=wrong "$TOOL" snapshots --repository "$USR"
grep -q 'login as root@pam failed' "$TMP/ef.err" &&
  pass "wrong password: says the login failed" || fail "wrong password: $(cat "$TMP/ef.err")"
expect_fail "no password at all (stdin not a terminal)" env -u PBS_PASSWORD \
  "$TOOL" snapshots --repository "$USR" </dev/null
check "ticket (PBS_PASSWORD_CMD): snapshots" env -u PBS_PASSWORD \
  PBS_PASSWORD_CMD="head -n 1 $TMP/pw" "$TOOL" snapshots --repository "$USR"

# While a secret is in memory the process cannot dump core, and other
# processes of its user cannot read its memory: checked in /proc while it
# waits on a FIFO for its password.  A non-dumpable process's /proc files
# belong to root, so the tool runs as nobody when the test runs as root.
mkdir -m 0777 "$TMP/pub"
mkfifo -m 0666 "$TMP/pub/pwfifo"
chmod 0755 "$TMP"
as_user=()
[ "$(id -u)" = 0 ] && command -v setpriv >/dev/null &&
  as_user=(setpriv --reuid=65534 --regid=65534 --clear-groups)
env -u PBS_PASSWORD PBS_PASSWORD_FILE="$TMP/pub/pwfifo" "${as_user[@]}" \
  "$TOOL" snapshots --repository "$USR" >"$TMP/pub/fifo.out" 2>&1 &
fifo_pid=$!
exec {pw_fd}>"$TMP/pub/pwfifo" # returns once the tool opened it
check "secrets: core file size limit 0" \
  grep -Eq '^Max core file size +0 +0 ' "/proc/$fifo_pid/limits"
if [ "$(id -u)" = 0 ] && [ ${#as_user[@]} = 0 ]; then
  echo "# (running as root without setpriv: dumpable flag not observable)"
else
  check "secrets: process not dumpable (/proc/PID/mem belongs to root)" \
    test "$(stat -c %u "/proc/$fifo_pid/mem")" = 0
fi
printf '%s\n' "$USER_PASSWORD" >&$pw_fd
exec {pw_fd}>&-
rc=0; wait $fifo_pid || rc=$?
check "secrets: the tool then logs in and lists (exit $rc)" \
  grep -q 'vm/200/' "$TMP/pub/fifo.out"
chmod 0700 "$TMP"
export PBS_PASSWORD=$TOKEN_SECRET

# --- token failures and the certificate, as one-line CLI errors
expect_fail "wrong token secret" env PBS_PASSWORD=nope "$TOOL" snapshots
grep -q 'authentication failed (HTTP 401)' "$TMP/ef.err" && pass "wrong token: server's answer shown" ||
  fail "wrong token: $(cat "$TMP/ef.err")"
# PBS answers every authentication failure with the same text; the reason
# (here "user account or token disabled or expired.") is only logged.
expect_fail "expired token" "$TOOL" snapshots --repository "root@pam!old@127.0.0.1:$PORT:$STORE"
grep -q 'authentication failed (HTTP 401); check the API token root@pam!old and its secret, and whether it has expired' \
  "$TMP/ef.err" && pass "expired token: 401 shown with what to check" ||
  fail "expired token: $(cat "$TMP/ef.err")"
expect_fail "expired token cannot push" "$TOOL" push \
  --repository "root@pam!old@127.0.0.1:$PORT:$STORE" --backup-id 300 "$TMP/full.qcow2"
grep -q 'check the API token root@pam!old' "$TMP/ef.err" &&
  pass "expired token, push (upgrade): says what to check" ||
  fail "expired token, push: $(cat "$TMP/ef.err")"
expect_fail "no pin: refused" env -u PBS_FINGERPRINT "$TOOL" snapshots
grep -q "$fp_lower" "$TMP/ef.err" && pass "no pin: error prints the openssl fingerprint" ||
  fail "no pin: fingerprint missing: $(cat "$TMP/ef.err")"
expect_fail "wrong pin: refused" env PBS_FINGERPRINT="$fp_wrong" \
  "$TOOL" restore "$S1" "$A" "$TMP/never.raw"
grep -q "$fp_lower" "$TMP/ef.err" && pass "wrong pin: error prints the real fingerprint" ||
  fail "wrong pin: $(cat "$TMP/ef.err")"
[ ! -e "$TMP/never.raw" ] && pass "wrong pin: no output file" || fail "wrong pin: output written"
# --fingerprint on the command line pins like PBS_FINGERPRINT, and wins over it.
check "--fingerprint pins the certificate" \
  env -u PBS_FINGERPRINT "$TOOL" snapshots --fingerprint "$FP" >/dev/null
expect_fail "--fingerprint wrong: refused" \
  "$TOOL" snapshots --fingerprint "$fp_wrong"
if grep -rq -- "$TOKEN_SECRET\|$USER_PASSWORD" "$TMP"/*.err "$TMP/server.log" 2>/dev/null; then
  fail "a secret appears in an error message or the server log"
else
  pass "no secret in errors or logs"
fi

# --- the server killed in the middle of a push
head -c 160M /dev/urandom >"$TMP/big.raw"
qemu-img convert -f raw -O qcow2 "$TMP/big.raw" "$TMP/big.qcow2"
"$TOOL" push --backup-id 400 --backup-time 1700000000 "$TMP/full.qcow2" >/dev/null
from=$(($(wc -l <"$TMP/server.log") + 1))
"$TOOL" push --backup-id 400 --backup-time 1700000100 --retries 0 \
  "$TMP/big.qcow2" >"$TMP/k.out" 2>"$TMP/k.err" &
push_pid=$!
# The server logs every request: kill it after the first chunk arrived.
wait_line "$TMP/server.log" 'fixed_chunk' "$from" || true
kill -KILL "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true
rc=0; wait $push_pid || rc=$?
if [ $rc = 1 ] && [ "$(wc -l <"$TMP/k.err")" = 1 ]; then
  pass "server killed: push fails with one error line: $(cat "$TMP/k.err")"
else
  fail "server killed: push exit $rc: $(cat "$TMP/k.err")"
fi
start_server "$TMP/ds"
export PBS_REPOSITORY="root@pam!tok@127.0.0.1:$PORT:$STORE"
"$TOOL" snapshots --output-format json >"$TMP/l2.json"
check "server killed: no finished snapshot from the killed push" python3 -c '
import json, sys
j = json.load(open(sys.argv[1]))
bad = [s for s in j if s["backup-id"] == "400" and s["backup-time"] == 1700000100
       and "index.json.blob" in [f["filename"] for f in s["files"]]]
sys.exit(1 if bad else 0)' "$TMP/l2.json"
rm -f "$TMP/r.raw"
check "server killed: previous snapshot still restores" "$TOOL" restore \
  vm/400/2023-11-14T22:13:20Z "$A" "$TMP/r.raw"
same_bytes "$TMP/r.raw" "$TMP/full.raw" "server killed: previous restore = qemu-img convert of full"
check "server killed: the next push succeeds" "$TOOL" push --backup-id 400 \
  --backup-time 1700000200 "$TMP/incr0.qcow2"
rm -f "$TMP/r.raw"
check "server killed: the new snapshot restores" "$TOOL" restore \
  vm/400/2023-11-14T22:16:40Z "$A" "$TMP/r.raw"
same_bytes "$TMP/r.raw" "$TMP/incr0.raw" "server killed: new restore = qemu-img convert of incr0"

# --- a broken connection in the middle of a push: the server removes the
# unfinished snapshot, the tool starts a fresh session (--retries) and the
# snapshot is complete.  A TCP proxy (tests/helpers/tcp_proxy.py) cuts the first
# connection that carries more than 20 MB towards the server (FIN).
start_tcp_proxy "$TMP/proxy.log" --target "$PORT" --cut-after 20000000
from=$(($(wc -l <"$TMP/server.log") + 1))
rc=0
"$TOOL" push --repository "root@pam!tok@127.0.0.1:$PPORT:$STORE" --backup-id 400 \
  --backup-time 1700000300 --retries 3 "$TMP/big.qcow2" >"$TMP/k2.out" 2>"$TMP/k2.err" ||
  rc=$?
[ $rc = 0 ] && pass "broken connection: the push retried and succeeded" ||
  fail "broken connection: push exit $rc: $(cat "$TMP/k2.err" "$TMP/k2.out"; tail -n +"$from" "$TMP/server.log" | grep -v fixed_chunk)"
check "broken connection: the proxy did cut a connection" \
  grep -q '^cut after' "$TMP/proxy.log"
check "broken connection: the server removed the first attempt" \
  grep -q 'removing unfinished backup' <(tail -n +"$from" "$TMP/server.log")
rm -f "$TMP/r.raw"
check "retried push: restore" "$TOOL" restore vm/400/2023-11-14T22:18:20Z "$A" "$TMP/r.raw"
same_bytes "$TMP/r.raw" "$TMP/big.raw" "retried push: restore = the image"

# --- restore keeps several chunk downloads in flight; one of them missing
# on the server (its file moved away) fails the restore with its digest
# and leaves no output file.  The digest comes from python3 hashlib.
missing=$(python3 -c '
import hashlib, sys
data = open(sys.argv[1], "rb").read()
print(hashlib.sha256(data[30 << 22:31 << 22]).hexdigest())' "$TMP/big.raw")
mv "$TMP/ds/.chunks/${missing:0:4}/$missing" "$TMP/moved-chunk"
rm -f "$TMP/m.raw"
expect_fail "restore: a chunk missing on the server" \
  "$TOOL" restore vm/400/2023-11-14T22:18:20Z "$A" "$TMP/m.raw"
check "restore: the error names the missing chunk" grep -q "$missing" "$TMP/ef.err"
check "restore: no output file" test ! -e "$TMP/m.raw"
mv "$TMP/moved-chunk" "$TMP/ds/.chunks/${missing:0:4}/$missing"
rm -f "$TMP/r.raw"
check "restore: with the chunk back it succeeds" \
  "$TOOL" restore vm/400/2023-11-14T22:18:20Z "$A" "$TMP/r.raw"
same_bytes "$TMP/r.raw" "$TMP/big.raw" "restore with downloads in flight = the image"

done_testing
