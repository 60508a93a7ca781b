#!/bin/bash
# test-export-output.sh -- where `export` writes (issue 11), the same rules
# as restore (tools/out-file.c): an existing file is refused without
# --force and keeps owner, group and mode with it, an input layer is
# refused even with --force, new files are 0600, a stdout opened without
# truncation (1<>file) gets real zeros, a block device (loop) is written in
# place, a FIFO and a symlink are followed.  Oracle: qemu-img convert -O
# raw, cmp, stat, python3.  Device nodes are made in $TMP, never in /dev.
. "$(dirname "$0")/../helpers/functions.sh"
requires qemu-img
requires qemu-io
requires python3
[ -x "$TOOL" ] || skip "qcow2pbs not built"

d=$TMP/out; mkdir "$d"
SIZE=67108864
qemu-img create -q -f qcow2 "$TMP/a.qcow2" 64M
qemu-io -c 'write -P 7 0 1M' -c 'write -P 9 20M 5M' -c 'write -z 21M 1M' \
  "$TMP/a.qcow2" >/dev/null
qemu-img convert -O raw "$TMP/a.qcow2" "$TMP/want"
E=("$TOOL" export "$TMP/a.qcow2")

no_temp () { ! ls -A "$1" | grep -q '^\.'; }
ones () { python3 -c 'import sys; open(sys.argv[1], "wb").write(b"\xff" * int(sys.argv[2]))' "$1" "$2"; }
same_bytes_ () { cmp -s "$1" "$2"; }

(umask 000; "${E[@]}" "$d/new.raw")
check "new file: equals qemu-img convert" same_bytes_ "$d/new.raw" "$TMP/want"
check "new file: mode 0600 under umask 000 ($(stat -c %a "$d/new.raw"))" \
  test "$(stat -c %a "$d/new.raw")" = 600

ones "$d/mine" 1000; cp "$d/mine" "$TMP/mine.orig"
expect_fail "existing file without --force" "${E[@]}" "$d/mine"
check "existing file: untouched" same_bytes_ "$d/mine" "$TMP/mine.orig"
chown 1234:5678 "$d/mine"; chmod 0604 "$d/mine"
check "--force: exit 0" "${E[@]}" --force "$d/mine"
check "--force: the disk" same_bytes_ "$d/mine" "$TMP/want"
check "--force: owner, group, mode kept ($(stat -c %u:%g:%a "$d/mine"))" \
  test "$(stat -c %u:%g:%a "$d/mine")" = 1234:5678:604
cp "$TMP/a.qcow2" "$TMP/a.copy"
expect_fail "--force onto the input layer" "$TOOL" export --force "$TMP/a.qcow2" "$TMP/a.qcow2"
check "input layer: untouched" same_bytes_ "$TMP/a.qcow2" "$TMP/a.copy"
check "no temporary" no_temp "$d"

ones "$d/long" $((SIZE + 8192))
"${E[@]}" - 1<>"$d/long"
check "1<>longer file: the disk's bytes, zeros included" cmp -n $SIZE "$d/long" "$TMP/want"
check "1<>longer file: not shortened" test "$(stat -c %s "$d/long")" = $((SIZE + 8192))

mkfifo "$d/fifo"
cat "$d/fifo" >"$TMP/fifo.got" & cat_pid=$!
check "FIFO: exit 0" "${E[@]}" "$d/fifo"
[ -p "$d/fifo" ] && [ -s "$TMP/fifo.got" ] || kill $cat_pid 2>/dev/null || true
wait $cat_pid || true
check "FIFO: the reader got the disk" same_bytes_ "$TMP/fifo.got" "$TMP/want"
check "FIFO: still a FIFO" test -p "$d/fifo"

ones "$d/target" 10; ln -s target "$d/link"
check "symlink --force: exit 0" "${E[@]}" --force "$d/link"
check "symlink --force: the link survives" test -L "$d/link"
check "symlink --force: the target holds the disk" same_bytes_ "$d/target" "$TMP/want"

if [ -e /dev/loop-control ] && ones "$TMP/loop.img" $((SIZE + 65536)) &&
   dev=$(losetup -f --show "$TMP/loop.img" 2>/dev/null); then
  cleanup_fn losetup -d "$dev"
  loop=$TMP/loopdev
  python3 -c 'import os,stat,sys; os.mknod(sys.argv[2], stat.S_IFBLK|0o600, os.stat(sys.argv[1]).st_rdev)' "$dev" "$loop"
  expect_fail "block device without --force" "${E[@]}" "$loop"
  check "block device --force: exit 0" "${E[@]}" --force "$loop"
  check "block device: still a block device" test -b "$loop"
  check "block device: the disk, zeros included" cmp -n $SIZE "$loop" "$TMP/want"
  check "block device: its backing file holds the disk" cmp -n $SIZE "$TMP/loop.img" "$TMP/want"
else
  echo "# no loop device here: block-device cases not run"
fi
done_testing
