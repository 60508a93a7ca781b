#!/bin/bash
# test-push-blockdev.sh -- a layer on a block device is never taken as
# unchanged: writing a device changes neither its size (stat says 0) nor
# its times, so the identity push records cannot prove anything about it.
#  - --skip-unchanged after the device's contents changed makes a new
#    snapshot, and it restores to the device's new state;
#  - an overlay pushed on top of the device reads the device in full
#    instead of reusing the previous snapshot's chunks.
# Oracles: qemu-img convert (restores), qemu-io (writes), losetup.
. "$(dirname "$0")/../helpers/functions.sh"
. "$(dirname "$0")/../helpers/push-functions.sh"
requires qemu-img
requires qemu-io
requires losetup
[ -x "$TOOL" ] || skip "qcow2pbs not built"
[ "$(id -u)" = 0 ] || skip "needs root for a loop device"

d=$TMP/img; mkdir "$d"
qemu-img create -q -f qcow2 "$d/base.qcow2" 16M
qemu-io -c 'write -P 1 0 6M' "$d/base.qcow2" >/dev/null
truncate -s 32M "$d/dev.img"
dd if="$d/base.qcow2" of="$d/dev.img" conv=notrunc,sparse status=none
L=$(losetup -f --show "$d/dev.img" 2>/dev/null) || skip "no loop device"
cleanup_fn losetup -d "$L"
qemu-img create -q -f qcow2 -b "$L" -F qcow2 "$d/top.qcow2"
qemu-io -c 'write -P 2 8M 1M' "$d/top.qcow2" >/dev/null
DS=$DS_TMP/ds
push () { "$TOOL" push --repository "$DS" --backup-id b --allow-backing-dir /dev "$@"; }
T0=1700000000

check "push of a chain whose base is the block device $L" \
  push --backup-time $T0 "$d/top.qcow2"
restore_equals "$DS" vm/b/$T0 drive-scsi0 "$d/top.qcow2" "first snapshot"

# Rewrite data inside clusters the device's qcow2 already has, through
# another node of the same device (as a VM or a container with its own
# /dev would): header and L1 stay the same, and the chain's node keeps its
# size (0) and times.
mknod "$TMP/alias" b $((0x$(stat -c %t "$L"))) $((0x$(stat -c %T "$L")))
stat -c '%s %Y %Z' "$L" >"$TMP/t1"
qemu-io -f qcow2 -c 'write -P 7 1M 64k' "$TMP/alias" >/dev/null
stat -c '%s %Y %Z' "$L" >"$TMP/t2"
check "(the chain's device node kept its size and times)" cmp -s "$TMP/t1" "$TMP/t2"

rc=0; push --skip-unchanged --backup-time $((T0 + 10)) "$d/top.qcow2" \
  >"$TMP/s.out" 2>&1 || rc=$?
check "--skip-unchanged after the device changed: exit 0 (got $rc)" test $rc = 0
check "... makes a snapshot: nothing proves the device unchanged" \
  test -d "$DS/vm/b/$(date -u -d @$((T0 + 10)) +%Y-%m-%dT%H:%M:%SZ)"
restore_equals "$DS" vm/b/$((T0 + 10)) drive-scsi0 "$d/top.qcow2" \
  "that snapshot restores to the device's new contents"

# An overlay on top: its untouched chunks must come from the device, not
# from the previous snapshot.
qemu-io -f qcow2 -c 'write -P 8 2M 64k' "$TMP/alias" >/dev/null
qemu-img create -q -f qcow2 -b top.qcow2 -F qcow2 "$d/top2.qcow2"
qemu-io -c 'write -P 3 12M 1M' "$d/top2.qcow2" >/dev/null
push --backup-time $((T0 + 20)) "$d/top2.qcow2" >"$TMP/p.out" 2>&1
check "push of an overlay on the chain" test $? = 0
restore_equals "$DS" vm/b/$((T0 + 20)) drive-scsi0 "$d/top2.qcow2" \
  "overlay snapshot restores to the whole chain as it is now"
done_testing
