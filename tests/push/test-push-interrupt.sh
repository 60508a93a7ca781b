#!/bin/bash
# test-push-interrupt.sh -- Ctrl-C (SIGINT) and SIGTERM in the middle of a
# push leave no snapshot: the push stops, ends its session the normal way
# and exits with 128 + the signal and one line.  Remote: the upload is held
# by a proxy (so the client waits on the network when the signal comes),
# and the server removes the unfinished snapshot.  Local: a watcher sends
# the signal as soon as the snapshot directory appears; either the push
# was interrupted and the directory is gone, or it had finished and the
# snapshot restores.  Oracle: qemu-img convert of the image.
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
REPO="root@pam!tok@127.0.0.1:$PORT:$STORE"

qemu-img create -q -f qcow2 "$TMP/img.qcow2" 80M
head -c 67108864 /dev/urandom >"$TMP/rand"
qemu-io -c "write -s $TMP/rand 0 64M" "$TMP/img.qcow2" >/dev/null
rm "$TMP/rand"

# one_line FILE TEXT: FILE is exactly one line, containing TEXT.
one_line () { [ "$(wc -l <"$1")" = 1 ] && grep -q -- "$2" "$1"; }

# --- remote: SIGINT while the client waits on the held connection
for sig in INT TERM; do
  id=$([ $sig = INT ] && echo 500 || echo 501)
  mkfifo "$TMP/hold.$sig"
  start_proxy "$TMP/hold.$sig"
  "$TOOL" push --repository "root@pam!tok@127.0.0.1:$PPORT:$STORE" \
    --backup-id $id "$TMP/img.qcow2" >"$TMP/i.out" 2>"$TMP/i.err" &
  pid=$!
  check "remote SIG$sig: the upload is held" \
    wait_line "$TMP/proxy.log" "holding after"
  from=$(($(wc -l <"$TMP/server.log") + 1))
  kill -$sig $pid
  rc=0; wait $pid || rc=$?
  want=$((128 + $(kill -l $sig)))
  check "remote SIG$sig: exit $want (got $rc)" test $rc = $want
  check "remote SIG$sig: one line: $(cat "$TMP/i.err")" \
    one_line "$TMP/i.err" "^qcow2pbs: push: interrupted; no snapshot was made"
  echo go >"$TMP/hold.$sig" # the proxy lets the server see the drop
  check "remote SIG$sig: the server removed the unfinished snapshot" \
    wait_line "$TMP/server.log" "removing unfinished backup" "$from"
  check "remote SIG$sig: no snapshot directory" \
    test "$(ls "$TMP/ds/vm/$id" 2>/dev/null | grep -c T)" = 0
  kill $PROXY_PID 2>/dev/null; wait $PROXY_PID 2>/dev/null || true
  : >"$TMP/proxy.log"
done
check "remote: the next push succeeds" "$TOOL" push --repository "$REPO" \
  --backup-id 500 "$TMP/img.qcow2"
restore_equals "$REPO" "$(ls "$TMP/ds/vm/500" | grep T | sed 's|^|vm/500/|')" \
  drive-scsi0 "$TMP/img.qcow2" "remote: the next push restores to the image"

# --- local: SIGINT once the snapshot directory exists
LDS=$DS_TMP/lds
"$TOOL" push --repository "$LDS" --backup-id 1 "$TMP/img.qcow2" >/dev/null
python3 - "$TOOL" "$LDS" "$TMP/img.qcow2" >"$TMP/w.out" 2>"$TMP/w.err" <<'EOF'
import os, signal, subprocess, sys, time
tool, lds, img = sys.argv[1:]
group = os.path.join(lds, "vm", "600")
p = subprocess.Popen([tool, "push", "--repository", lds, "--backup-id", "600",
                      "--full", img], stdout=subprocess.DEVNULL,
                     stderr=subprocess.PIPE)
# The snapshot directory appears when the session starts; poll for it
# (no inotify in the standard library), at most 60 s.
deadline = time.monotonic() + 60
while p.poll() is None and time.monotonic() < deadline:
    if os.path.isdir(group) and any("T" in d for d in os.listdir(group)):
        p.send_signal(signal.SIGINT)
        break
    time.sleep(0.0005)
err = p.communicate()[1].decode()
left = sorted(d for d in os.listdir(group) if "T" in d) if os.path.isdir(group) else []
print(p.returncode, len(err.splitlines()), " ".join(left))
print(err.strip(), file=sys.stderr)
EOF
read -r lrc lines left <"$TMP/w.out" || true
if [ "$lrc" = 130 ]; then
  check "local SIGINT: one line ($(cat "$TMP/w.err"))" test "$lines" = 1
  check "local SIGINT: the unfinished snapshot directory is gone" test -z "$left"
elif [ "$lrc" = 0 ]; then
  echo "# the push had finished before the signal"
  restore_equals "$LDS" "vm/600/$left" drive-scsi0 "$TMP/img.qcow2" \
    "local: finished before SIGINT, restores"
else
  fail "local SIGINT: exit '$lrc': $(cat "$TMP/w.err")"
fi
check "local: the next push succeeds" "$TOOL" push --repository "$LDS" \
  --backup-id 600 "$TMP/img.qcow2"

done_testing
