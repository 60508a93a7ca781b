#!/bin/bash
# test-push-retry.sh -- a push to a server whose connection breaks in the
# middle of the chunk uploads (a TCP proxy in python cuts it once) starts a
# new session and succeeds (--retries default 3); with --retries 0 it fails
# with one line and leaves no unfinished snapshot.  A server killed in the
# middle of a push (the proxy holds the upload while the test kills and
# restarts it) leaves its unfinished directory, as PBS does; the retry
# then takes a new backup-time and succeeds.  Oracle for the result:
# qemu-img convert of the pushed image.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/remote-functions.sh"
. "$(dirname "$0")/push-functions.sh"
requires qemu-img
requires qemu-io
requires python3
[ -x "$TOOL" ] || skip "qcow2pbs not built"

setup_remote
start_server "$TMP/ds"
export PBS_PASSWORD=$TOKEN_SECRET PBS_FINGERPRINT=$FP

# start_proxy [HOLD_FIFO]: forwards 127.0.0.1:PPORT to the server; the
# first connection that carries more than 2 MiB towards the server is cut
# (RST) once.  With HOLD_FIFO it says "holding" first and waits until a
# line can be read from that FIFO (the test kills the server meanwhile).
_px=0
start_proxy () {
  local fifo=$TMP/proxy.$_px fd line
  _px=$((_px + 1))
  mkfifo "$fifo"
  exec {fd}<>"$fifo"
  python3 - "$PORT" "${1:-}" >"$fifo" 2>>"$TMP/proxy.log" <<'EOF' &
import socket, struct, sys, threading
target = int(sys.argv[1])
hold = sys.argv[2]
lst = socket.socket(); lst.bind(("127.0.0.1", 0)); lst.listen(16)
print("READY %d" % lst.getsockname()[1], flush=True)
cut = threading.Event()
def pump(a, b, upstream):
    n = 0
    try:
        while True:
            d = a.recv(65536)
            if not d:
                break
            n += len(d)
            if upstream and n > 2 << 20 and not cut.is_set():
                cut.set()
                if hold:
                    print("holding after %d bytes" % n, file=sys.stderr,
                          flush=True)
                    open(hold).readline()
                print("cut after %d bytes" % n, file=sys.stderr, flush=True)
                for s in (a, b):   # RST, not FIN: a broken connection
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                 struct.pack("ii", 1, 0))
                    # SHUT_RD wakes the other pump's recv without a FIN, so
                    # that close() really releases the socket (and resets).
                    s.shutdown(socket.SHUT_RD)
                    s.close()
                return
            b.sendall(d)
    except OSError:
        pass
    for s in (a, b):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
while True:
    c, _ = lst.accept()
    s = socket.create_connection(("127.0.0.1", target))
    threading.Thread(target=pump, args=(c, s, True), daemon=True).start()
    threading.Thread(target=pump, args=(s, c, False), daemon=True).start()
EOF
  PROXY_PID=$!
  cleanup_fn "kill $PROXY_PID 2>/dev/null"
  read -r -t 60 -u "$fd" line || true
  PPORT=${line#READY }
}

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
