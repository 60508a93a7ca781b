#!/bin/bash
# test-push-retry.sh -- a push to a server whose connection breaks in the
# middle of the chunk uploads (a TCP proxy in python cuts it once) starts a
# new session and succeeds (--retries default 3); with --retries 0 it fails
# with one line and leaves no unfinished snapshot.  A server killed in the
# middle of a push (the proxy holds the upload while the test kills and
# restarts it) leaves its unfinished directory, as PBS does; the retry
# then takes a new backup-time and succeeds.  Oracle for the result:
# qemu-img convert of the pushed image.
. "$(dirname "$0")/../helpers/functions.sh"
. "$(dirname "$0")/../helpers/remote-functions.sh"
. "$(dirname "$0")/../helpers/push-functions.sh"
requires qemu-img
requires qemu-io
requires python3
[ -x "$TOOL" ] || skip "qcow2pbs not built"

setup_remote
start_server "$TMP/ds"
export PBS_PASSWORD=$TOKEN_SECRET PBS_FINGERPRINT=$FP


qemu-img create -q -f qcow2 "$TMP/full.qcow2" 40M
head -c 12582912 /dev/urandom >"$TMP/rand"
qemu-io -c "write -s $TMP/rand 0 12M" "$TMP/full.qcow2" >/dev/null
rm "$TMP/rand"

start_proxy
rc=0
"$TOOL" push --repository "root@pam!tok@127.0.0.1:$PPORT:$STORE" \
  --backup-id 100 --backup-time 1700000000 --output-format json \
  "$TMP/full.qcow2" >"$TMP/p.json" 2>"$TMP/p.err" || rc=$?
check "connection was cut once" grep -q '^cut after' "$TMP/proxy.log"
check "push retried and succeeded ($(cat "$TMP/p.err"))" test $rc = 0
check "nothing on stderr (not a TTY)" test ! -s "$TMP/p.err"
restore_equals "root@pam!tok@127.0.0.1:$PORT:$STORE" vm/100/1700000000 \
  drive-scsi0 "$TMP/full.qcow2" "retried push restores to the image"
kill $PROXY_PID 2>/dev/null; wait $PROXY_PID 2>/dev/null || true

# New data (nothing known), so that the uploads go through the cut.
head -c 12582912 /dev/urandom >"$TMP/rand"
qemu-io -c "write -s $TMP/rand 0 12M" "$TMP/full.qcow2" >/dev/null
rm "$TMP/rand"
start_proxy
from=$(( $(wc -l <"$TMP/server.log") + 1 ))
expect_fail "--retries 0: the cut connection fails the push" \
  "$TOOL" push --repository "root@pam!tok@127.0.0.1:$PPORT:$STORE" \
  --backup-id 100 --backup-time 1700000100 --retries 0 "$TMP/full.qcow2"
check "--retries 0: server removed the unfinished snapshot" \
  wait_line "$TMP/server.log" "removing unfinished backup" "$from"
check "--retries 0: no snapshot left" \
  test "$(ls "$TMP/ds/vm/100" | grep -c T)" = 1
kill $PROXY_PID 2>/dev/null; wait $PROXY_PID 2>/dev/null || true

# --- the server dies in the middle of a push (no --backup-time given)
head -c 12582912 /dev/urandom >"$TMP/rand"
qemu-io -c "write -s $TMP/rand 0 12M" "$TMP/full.qcow2" >/dev/null
rm "$TMP/rand"
mkfifo "$TMP/hold"
start_proxy "$TMP/hold"
"$TOOL" push --repository "root@pam!tok@127.0.0.1:$PPORT:$STORE" \
  --backup-id 300 --output-format json "$TMP/full.qcow2" \
  >"$TMP/c.json" 2>"$TMP/c.err" &
push_pid=$!
check "crash: the upload reached the proxy" \
  wait_line "$TMP/proxy.log" "holding after"
kill -KILL "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true
crashed=$(ls "$TMP/ds/vm/300" | grep T)
start_server "$TMP/ds" "$PORT"
echo go >"$TMP/hold"
rc=0; wait $push_pid || rc=$?
check "crash: push retried and succeeded ($(cat "$TMP/c.err"))" test $rc = 0
snap=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["snapshot"])' \
  "$TMP/c.json" 2>/dev/null || true)
check "crash: the killed session's directory stayed, unfinished ($crashed)" \
  test -n "$crashed" -a -d "$TMP/ds/vm/300/$crashed" \
  -a ! -e "$TMP/ds/vm/300/$crashed/index.json.blob"
check "crash: the retry took a new backup-time ($snap)" \
  test -n "$snap" -a "${snap##*/}" != "$crashed"
restore_equals "root@pam!tok@127.0.0.1:$PORT:$STORE" "$snap" drive-scsi0 \
  "$TMP/full.qcow2" "crash: the retried push restores to the image"
"$TOOL" snapshots --repository "root@pam!tok@127.0.0.1:$PORT:$STORE" \
  --output-format json >"$TMP/l.json"
check "crash: only the retried snapshot is listed as finished" python3 -c '
import json, sys
j = [s for s in json.load(open(sys.argv[1])) if s["backup-id"] == "300"]
done = [s for s in j if "index.json.blob" in [f["filename"] for f in s["files"]]]
sys.exit(0 if len(done) == 1 else 1)' "$TMP/l.json"
done_testing
