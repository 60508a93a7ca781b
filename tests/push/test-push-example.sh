#!/bin/bash
# test-push-example.sh -- examples/qmp-backup.sh runs as documented:
# - demo: a QEMU over QMP makes full + 2 incrementals, each pushed,
#   restored and compared with qemu-img convert of its layer by the script;
# - the real-VM workflow of examples/README.md against a QEMU with a QMP
#   server socket: push before any backup says why, full + push (exit 2
#   without a word before the fix), incremental + push, each snapshot
#   restored and compared with qemu-img convert of its layer.
. "$(dirname "$0")/../helpers/functions.sh"
requires qemu-img
requires qemu-system-x86_64
requires python3
ex=$top/examples/qmp-backup.sh
out=$(QCOW2PBS=$TOOL "$ex" demo "$TMP/demo" 2>&1) ||
  { fail "demo failed: $(tail -5 <<<"$out")"; done_testing; exit; }
check "demo pushed 3 snapshots" test "$(grep -c 'restore and verify match' <<<"$out")" = 3
check "the incrementals were incremental" test "$(grep -c '; incremental$' <<<"$out")" = 2

# The workflow with a "running VM": QEMU with a QMP server socket and the
# disk as block node drive0.  The demo's datastore is reused (another
# backup id): creating one costs seconds.
ds=$TMP/demo/datastore vm=$TMP/vm bk=$TMP/vm/backup
mkdir -p "$vm"
qemu-img create -q -f qcow2 "$vm/disk.qcow2" 64M
qemu-io -c 'write -P 0x11 0 3M' -c 'write -P 0x22 40M 1M' "$vm/disk.qcow2" >/dev/null
sock=$vm/qmp.sock
qemu-system-x86_64 -machine none -nodefaults -display none -no-user-config \
  -qmp "unix:$sock,server=on,wait=off" \
  -blockdev "driver=qcow2,node-name=drive0,file.driver=file,file.filename=$vm/disk.qcow2" \
  </dev/null >"$vm/qemu.log" 2>&1 &
qpid=$!
cleanup_fn "kill $qpid 2>/dev/null; wait $qpid 2>/dev/null"
for _ in $(seq 300); do [ -S "$sock" ] && break; sleep 0.1; done
hmp () {
  python3 -c 'import sys; sys.path.insert(0, sys.argv[1]); import qmp
qmp.QMP(sys.argv[2]).hmp(sys.argv[3])' "$top/tests/helpers" "$sock" "$1"
}
run () { QCOW2PBS=$TOOL "$ex" "$@" >"$TMP/ex.out" 2>"$TMP/ex.err"; }
field () { python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$TMP/ex.out" "$1"; }

rc=0; run push "$bk" "$ds" 101 || rc=$?
check "push before any backup: exit 1 with one line naming the directory" \
  test $rc = 1 -a "$(wc -l <"$TMP/ex.err")" = 1 -a -n "$(grep -F "no full backup in $bk" "$TMP/ex.err")"

run full "$sock" drive0 "$bk"
rc=0; run push "$bk" "$ds" 101 --output-format json || rc=$?
check "push after only a full backup: exit 0 (was 2, silent; got $rc: $(head -c 200 "$TMP/ex.err"))" test $rc = 0
if [ $rc = 0 ]; then
  snap0=$(field 'd["snapshot"]')
  check "it pushed full.qcow2 alone" test "$(field 'd["archives"][0]["layers"]')" = "['$bk/full.qcow2']"
  "$TOOL" restore --repository "$ds" "$snap0" drive-scsi0 "$TMP/r0.raw"
  qemu-img convert -O raw "$bk/full.qcow2" "$TMP/e0.raw"
  same_bytes "$TMP/r0.raw" "$TMP/e0.raw" "full snapshot restores to qemu-img's full.qcow2"
fi

hmp 'qemu-io drive0 "write -P 0x33 8M 64k"'
run incremental "$sock" drive0 "$bk"
rc=0; run push "$bk" "$ds" 101 --output-format json || rc=$?
check "push after an incremental: exit 0 (got $rc)" test $rc = 0
if [ $rc = 0 ]; then
  check "it pushed incr0.qcow2 on full.qcow2" \
    test "$(field 'd["archives"][0]["layers"]')" = "['$bk/full.qcow2', '$bk/incr0.qcow2']"
  check "the push was incremental" test "$(field 'd["archives"][0]["incremental"]')" = True
  "$TOOL" restore --repository "$ds" "$(field 'd["snapshot"]')" drive-scsi0 "$TMP/r1.raw"
  qemu-img convert -O raw "$bk/incr0.qcow2" "$TMP/e1.raw"
  same_bytes "$TMP/r1.raw" "$TMP/e1.raw" "incremental snapshot restores to qemu-img's incr0.qcow2"
  check "the guest's write is in it" python3 -c 'import sys
f = open(sys.argv[1], "rb"); f.seek(8 << 20)
sys.exit(f.read(65536) != b"\x33" * 65536)' "$TMP/r1.raw"
fi
done_testing
