#!/bin/bash
# test-live-restore.sh -- examples/live-restore.sh end to end: the
# nbdkit plugin serves a snapshot, a qcow2 overlay backed by that NBD export
# is streamed full by a real qemu-system-x86_64 (QMP block-stream), then it
# has no backing file and `qemu-img compare` finds it identical to the
# source chain; locally, encrypted, and through the HTTPS test server.  A
# damaged chunk makes the stream fail: exit 1, the digest named, no TARGET,
# TARGET.partial still backed.  Existing targets are refused; nothing
# (nbdkit, QEMU, sockets) is left behind.
. "$(dirname "$0")/../helpers/functions.sh"
requires qemu-img
requires qemu-io
requires nbdkit
requires qemu-system-x86_64
requires python3
export PLUGIN=$B/nbdkit-qcow2pbs-plugin.so
[ -f "$PLUGIN" ] || skip "$PLUGIN not built (nbdkit-plugin-dev missing)"
LR=$top/examples/live-restore.sh
export QMP_PY=$top/tests/helpers/qmp.py

ds=$DS_TMP/ds
d=$TMP/img; mkdir "$d"
# 5 chunks + a short last one: data, holes, explicit zeros, a backing layer.
qemu-img create -q -f qcow2 "$d/full.qcow2" $((21 * 1024 * 1024 + 4096))
qemu-io -c 'write -P 0x11 0 6M' -c 'write -z 1M 1M' -c 'write -P 0 12M 4M' \
  -c 'write -P 0x33 20M 1M' "$d/full.qcow2" >/dev/null
qemu-img create -q -f qcow2 -b full.qcow2 -F qcow2 "$d/incr.qcow2"
qemu-io -c 'write -P 0x44 8M 4M' -c 'write -P 0x55 21M 4096' "$d/incr.qcow2" >/dev/null
unset PBS_REPOSITORY KEYFILE
export PBS_ENCRYPTION_PASSWORD=pw-for-the-key
"$TOOL" key create "$TMP/s.key" --kdf scrypt >/dev/null 2>&1
p () { "$TOOL" push --repository "$ds" "$@" >/dev/null; }
p --backup-id 100 --backup-time 1000 "$d/full.qcow2"
p --backup-id 100 --backup-time 2000 "$d/incr.qcow2"
p --backup-id 200 --backup-time 2000 --keyfile "$TMP/s.key" "$d/incr.qcow2"
S=vm/100/1970-01-01T00:33:20Z

# A private TMPDIR: the script's socket and QEMU's QMP directory live
# there, and must be gone after every run.
export TMPDIR=$TMP/tmpdir; mkdir "$TMPDIR"
out=$TMP/out; mkdir "$out"

# lr NAME ARGS...: run the script, rc in $rc, output in $TMP/NAME.{out,err}
lr () {
  local n=$1; shift
  rc=0
  "$LR" "$@" >"$TMP/$n.out" 2>"$TMP/$n.err" || rc=$?
}
no_backing () { # the image has no backing file (qemu-img info, python3)
  qemu-img info -U --output=json "$1" | python3 -c 'import json,sys
sys.exit("backing-filename" in json.load(sys.stdin))'
}
nothing_left () { # no file in TMPDIR, no nbdkit/QEMU of ours running
  # (QEMU's command line holds its QMP socket path, under TMPDIR)
  [ -z "$(ls -A "$TMPDIR")" ] && ! pgrep -f "$PLUGIN" >/dev/null &&
    ! pgrep -f "$TMPDIR" >/dev/null
}
one_line () { # one_line FILE: exactly one stderr line from the script
  [ "$(wc -l <"$1")" = 1 ] && grep -q '^live-restore.sh: ' "$1"
}

restored () { # restored WHERE TARGET CHAIN
  check "$1: exit 0" test $rc = 0
  check "$1: no backing file left (qemu-img info)" no_backing "$2"
  check "$1: qemu-img compare with the chain: identical" \
    qemu-img compare -q "$2" "$3"
  check "$1: qemu-img check: clean" qemu-img check -q "$2"
  check "$1: no .partial left" test ! -e "$2.partial"
  check "$1: nbdkit, QEMU and the socket are gone" nothing_left
}

lr local "$ds" $S drive-scsi0 "$out/local.qcow2"
restored local "$out/local.qcow2" "$d/incr.qcow2"
# The full zero chunk (12M..16M) stayed unallocated (detect-zeroes=unmap),
# a data chunk is allocated: qemu-img map --output=json, read by python3.
qemu-img map --output=json "$out/local.qcow2" >"$TMP/map.json"
check "local: the zero chunk is not stored as data, the data chunk is" \
  python3 - "$TMP/map.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
def data_at(off):
    return any(e["start"] <= off < e["start"] + e["length"] and e["data"] for e in m)
sys.exit(data_at(13 << 20) or not data_at(9 << 20))
PY
lr older "$ds" vm/100/1000 drive-scsi0 "$out/older.qcow2"
restored "older snapshot (relative snapshot time)" "$out/older.qcow2" "$d/full.qcow2"

KEYFILE=$TMP/s.key lr enc "$ds" vm/200/2000 drive-scsi0 "$out/enc.qcow2"
restored encrypted "$out/enc.qcow2" "$d/incr.qcow2"

# Refusals: nothing touched, one line.
sha=$(sha256sum <"$out/local.qcow2")
lr exists "$ds" $S drive-scsi0 "$out/local.qcow2"
check "existing target: refused (exit 1)" test $rc = 1
check "existing target: one line naming it" one_line "$TMP/exists.err"
check "existing target: unchanged (sha256sum)" test "$(sha256sum <"$out/local.qcow2")" = "$sha"
: >"$out/p.qcow2.partial"
lr partial "$ds" $S drive-scsi0 "$out/p.qcow2"
check "existing .partial: refused (exit 1)" test $rc = 1
check "existing .partial: says remove it" grep -q "remove it" "$TMP/partial.err"
rm "$out/p.qcow2.partial"
lr usage "$ds" $S
check "missing arguments: exit 2" test $rc = 2
lr nosnap "$ds" vm/100/3000 drive-scsi0 "$out/nosnap.qcow2"
check "missing snapshot: exit 1" test $rc = 1
check "missing snapshot: one line" one_line "$TMP/nosnap.err"
check "missing snapshot: no target, no .partial" \
  test ! -e "$out/nosnap.qcow2" -a ! -e "$out/nosnap.qcow2.partial"
lr nokey "$ds" vm/200/2000 drive-scsi0 "$out/nokey.qcow2"
check "encrypted without KEYFILE: exit 1, says set KEYFILE" \
  eval 'test $rc = 1 && grep -q "set KEYFILE" "$TMP/nokey.err"'
check "refusals: nothing left behind" nothing_left
cat "$TMP/exists.err" "$TMP/nosnap.err" "$TMP/nokey.err"

# A damaged chunk (chunk 2, pattern 0x44, only in the incremental): the
# plugin refuses to serve it, the stream job fails.
dig=$(qemu-img convert -O raw "$d/incr.qcow2" "$TMP/incr.raw" && python3 -c '
import hashlib, sys
f = open(sys.argv[1], "rb"); f.seek(2 << 22)
print(hashlib.sha256(f.read(4 << 20)).hexdigest())' "$TMP/incr.raw")
f=$ds/.chunks/${dig:0:4}/$dig
cp "$f" "$TMP/save"
python3 -c 'import sys
p = sys.argv[1]; b = bytearray(open(p, "rb").read()); b[-1] ^= 1
open(p, "wb").write(b)' "$f"
lr bad "$ds" $S drive-scsi0 "$out/bad.qcow2"
check "damaged chunk: exit 1" test $rc = 1
check "damaged chunk: one line" one_line "$TMP/bad.err"
check "damaged chunk: says the stream failed" grep -q "block-stream failed" "$TMP/bad.err"
check "damaged chunk: the digest is named" grep -q "$dig" "$TMP/bad.err"
check "damaged chunk: no target" test ! -e "$out/bad.qcow2"
check "damaged chunk: .partial kept" test -f "$out/bad.qcow2.partial"
check "damaged chunk: .partial still has its backing file" \
  eval '! no_backing "$out/bad.qcow2.partial"'
check "damaged chunk: nbdkit, QEMU and the socket are gone" nothing_left

# Interrupted mid-stream: chunk 2 is a FIFO, so the plugin's read of it
# blocks with QEMU streaming; python3 opens the FIFO's other end and says
# so (the open returns only once the plugin has opened it), then the
# script gets SIGTERM.
rm "$f"; mkfifo "$f"
mkfifo "$TMP/gate"; exec {gate}<>"$TMP/gate"
python3 -c 'import os, signal, sys
signal.alarm(120)
fd = os.open(sys.argv[1], os.O_WRONLY)
open(sys.argv[2], "w").write("opened\n")
signal.pause()' "$f" "$TMP/gate" &
holder=$!
cleanup_fn "kill $holder 2>/dev/null"
"$LR" "$ds" $S drive-scsi0 "$out/int.qcow2" >"$TMP/int.out" 2>"$TMP/int.err" &
lrpid=$!
line=; read -r -t 60 -u "$gate" line || true
check "interrupt: the stream reached the held chunk" test "$line" = opened
check "interrupt: .partial exists meanwhile" test -f "$out/int.qcow2.partial"
kill -TERM "$lrpid"
rc=0; wait "$lrpid" || rc=$?
check "interrupt: exit 1" test $rc = 1
check "interrupt: one line, says incomplete" \
  eval 'one_line "$TMP/int.err" && grep -q "int.qcow2.partial is incomplete" "$TMP/int.err"'
check "interrupt: no target" test ! -e "$out/int.qcow2"
cat "$TMP/int.err"
check "interrupt: nbdkit, QEMU and the socket are gone" nothing_left
kill "$holder" 2>/dev/null || true; wait "$holder" 2>/dev/null || true
rm "$f"; cp "$TMP/save" "$f"

# --- the same datastore through the test server
if [ -x "$SERVER" ] && command -v openssl >/dev/null; then
  . "$(dirname "$0")/../helpers/remote-functions.sh"
  setup_remote
  start_server "$ds"
  PBS_FINGERPRINT=$FP PBS_PASSWORD=$USER_PASSWORD \
    lr remote "root@pam@127.0.0.1:$PORT:$STORE" $S drive-scsi0 "$out/remote.qcow2"
  restored remote "$out/remote.qcow2" "$d/incr.qcow2"
  PBS_FINGERPRINT=$FP PBS_PASSWORD=wrong \
    lr remotepw "root@pam@127.0.0.1:$PORT:$STORE" $S drive-scsi0 "$out/remotepw.qcow2"
  check "remote, wrong password: exit 1, one line" \
    eval 'test $rc = 1 && one_line "$TMP/remotepw.err"'
  check "remote, wrong password: the password is not in the message" \
    eval '! grep -q wrong "$TMP/remotepw.err"'
else
  echo "# remote cases skipped: no test server"
fi
done_testing
