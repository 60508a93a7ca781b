#!/bin/bash
# test-push-diskfull.sh -- a push that runs out of space (a 20 MiB tmpfs,
# 32 MiB of incompressible data) fails with one clear line, leaves nothing
# half-done, and the previous snapshot still verifies.  Exit 77 when a
# tmpfs cannot be mounted (not root).
. "$(dirname "$0")/../helpers/functions.sh"
. "$(dirname "$0")/../helpers/push-functions.sh"
requires qemu-img
requires qemu-io
requires python3
requires zstd

d=$TMP/img; mkdir "$d"
mnt=$TMP/mnt; mkdir "$mnt"
mount -t tmpfs -o size=20m tmpfs "$mnt" 2>/dev/null ||
  skip "cannot mount a tmpfs here (needs root); disk-full case not run"
cleanup_fn umount "$mnt"
qemu-img create -q -f qcow2 "$d/small.qcow2" 8M
qemu-io -c 'write -P 7 0 1M' "$d/small.qcow2" >/dev/null
"$TOOL" push --repository "$mnt/ds" --backup-id 400 --backup-time 1700000100 "$d/small.qcow2" >/dev/null
qemu-img create -q -f qcow2 -b small.qcow2 -F qcow2 "$d/big.qcow2" 64M
head -c 33554432 /dev/urandom >"$TMP/rand"
qemu-io -c "write -s $TMP/rand 0 32M" "$d/big.qcow2" >/dev/null
rm "$TMP/rand"
expect_fail "disk full" \
  "$TOOL" push --repository "$mnt/ds" --backup-id 400 --backup-time 1700000200 "$d/big.qcow2"
check "disk full: error says so" grep -qi 'space' "$TMP/ef.err"
check "disk full: still one snapshot" test "$(ls "$mnt/ds/vm/400" | grep -c T)" = 1
check "disk full: nothing half-done" ds_consistent "$mnt/ds"
check "disk full: previous snapshot still verifies" \
  "$TOOL" verify --repository "$mnt/ds" vm/400/1700000100 "$d/small.qcow2"
done_testing
