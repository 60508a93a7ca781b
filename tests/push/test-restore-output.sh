#!/bin/bash
# test-restore-output.sh -- where `restore` writes (issue 11): an existing
# file is refused without --force and keeps owner, group and mode with it;
# new files are 0600; a stdout opened without truncation (1<>file) gets
# real zeros and is not shortened; a block device (loop) is written in
# place; a FIFO, a null device and symlinks are followed; a socket or a
# directory is refused; every error (missing directory, read-only place,
# full disk) is one line and leaves no temporary; a long name works;
# Ctrl-C/SIGTERM print push's line and exit 130/143.  Oracle: qemu-img
# convert -O raw of the image, cmp, stat, python3.
. "$(dirname "$0")/../helpers/functions.sh"
. "$(dirname "$0")/../helpers/push-functions.sh"
requires qemu-img
requires qemu-io
requires python3
[ -x "$TOOL" ] || skip "qcow2pbs not built"

ds=$DS_TMP/ds
d=$TMP/out; mkdir "$d"
SIZE=67108864
qemu-img create -q -f qcow2 "$TMP/a.qcow2" 64M
head -c 4194304 /dev/urandom >"$TMP/rand"
qemu-io -c 'write -P 7 0 1M' -c 'write -P 9 20M 5M' -c 'write -z 21M 1M' \
  -c "write -s $TMP/rand 40M 4M" "$TMP/a.qcow2" >/dev/null
raw_of "$TMP/a.qcow2" "$TMP/want"
"$TOOL" push --repository "$ds" --backup-id 1 --backup-time 1000 \
  "$TMP/a.qcow2" >/dev/null
S=vm/1/1000
R=("$TOOL" restore --repository "$ds")

# no_temp DIR: no ".NAME.XXXXXX" temporary left in DIR.
no_temp () { ! ls -A "$1" | grep -q '^\.'; }
# ones FILE SIZE: a file of SIZE 0xff bytes (old contents to overwrite).
ones () { python3 -c 'import sys; open(sys.argv[1], "wb").write(b"\xff" * int(sys.argv[2]))' "$1" "$2"; }

# --- a new file: right bytes, 0600 whatever the umask
(umask 000; "${R[@]}" $S drive-scsi0 "$d/new.raw")
same_bytes "$d/new.raw" "$TMP/want" "new file: equals qemu-img convert"
check "new file: mode 0600 under umask 000 ($(stat -c %a "$d/new.raw"))" \
  test "$(stat -c %a "$d/new.raw")" = 600

# --- JSON: the counts against python's count of the raw disk's chunks
"${R[@]}" --output-format json $S drive-scsi0 "$d/j.raw" >"$TMP/r.json" || true
same_bytes "$d/j.raw" "$TMP/want" "json: the disk"
check "json: names, size, counts" python3 - "$TMP/r.json" "$TMP/want" "$d/j.raw" <<'EOF'
import json, sys
try:
    j = json.load(open(sys.argv[1]))
except ValueError:
    print("no JSON"); sys.exit(1)
raw = open(sys.argv[2], "rb").read()
C = 4194304
chunks = [raw[i:i + C] for i in range(0, len(raw), C)]
zero = [c == bytes(len(c)) and len(c) == C for c in chunks]
want = {"snapshot": "vm/1/1000", "archive": "drive-scsi0.img.fidx",
        "output": sys.argv[3], "size": len(raw),
        "chunks_downloaded": zero.count(False),
        "zero_bytes_skipped": zero.count(True) * C}
bad = {k: (j.get(k), v) for k, v in want.items() if j.get(k) != v}
if j["bytes_written"] + j["zeroed_bytes"] != len(raw):
    bad["written+zeroed"] = (j["bytes_written"] + j["zeroed_bytes"], len(raw))
print(bad or "ok"); sys.exit(bool(bad))
EOF

# --- an existing file: refused, untouched; --force keeps owner and mode
ones "$d/mine" 1000
cp "$d/mine" "$TMP/mine.orig"
expect_fail "existing file without --force" "${R[@]}" $S drive-scsi0 "$d/mine"
check "existing file: error names --force" grep -q -- '--force' "$TMP/ef.err"
same_bytes "$d/mine" "$TMP/mine.orig" "existing file: untouched"
check "existing file: no temporary" no_temp "$d"
chown 1234:5678 "$d/mine"; chmod 0640 "$d/mine"
check "--force: exit 0" "${R[@]}" --force $S drive-scsi0 "$d/mine"
same_bytes "$d/mine" "$TMP/want" "--force: replaced by the disk"
check "--force: owner, group, mode kept ($(stat -c %u:%g:%a "$d/mine"))" \
  test "$(stat -c %u:%g:%a "$d/mine")" = 1234:5678:640

# --- stdout opened without truncation: zeros read back, never shortened
ones "$d/long" $((SIZE + 4096 * 3))
"${R[@]}" $S drive-scsi0 - 1<>"$d/long"
check "1<>longer file: size kept ($(stat -c %s "$d/long"))" \
  test "$(stat -c %s "$d/long")" = $((SIZE + 4096 * 3))
check "1<>longer file: the disk's bytes, zeros included" \
  cmp -n $SIZE "$d/long" "$TMP/want"
check "1<>longer file: bytes past the disk kept" \
  python3 -c 'import sys; f=open(sys.argv[1],"rb"); f.seek(int(sys.argv[2])); sys.exit(f.read() != b"\xff"*12288)' "$d/long" $SIZE
ones "$d/off" 8192
{ printf 'head'; "${R[@]}" $S drive-scsi0 -; } 1<>"$d/off"
check "1<>file at offset 4: size 4 + disk ($(stat -c %s "$d/off"))" \
  test "$(stat -c %s "$d/off")" = $((SIZE + 4))
check "1<>file at offset 4: the disk at offset 4" \
  cmp -i 4:0 "$d/off" "$TMP/want"
"${R[@]}" $S drive-scsi0 - >"$d/trunc"
same_bytes "$d/trunc" "$TMP/want" ">file: equals qemu-img convert"

# --- a FIFO (read by cat), a null device, symlinks
mkfifo "$d/fifo"
cat "$d/fifo" >"$TMP/fifo.got" & cat_pid=$!
check "FIFO: exit 0" "${R[@]}" $S drive-scsi0 "$d/fifo"
# A restore that never opened the FIFO leaves cat waiting for a writer.
[ -p "$d/fifo" ] && [ -s "$TMP/fifo.got" ] || kill $cat_pid 2>/dev/null || true
wait $cat_pid || true
same_bytes "$TMP/fifo.got" "$TMP/want" "FIFO: the reader got the disk"
check "FIFO: still a FIFO" test -p "$d/fifo"
# A null device node of our own: a build that replaces a character device
# with a file must not break the system's /dev/null.
python3 -c 'import os,stat,sys; os.mknod(sys.argv[1], stat.S_IFCHR|0o666, os.makedev(1, 3))' "$d/null"
check "null device: exit 0" "${R[@]}" $S drive-scsi0 "$d/null"
check "null device: still a character device" test -c "$d/null"
ones "$d/target" 100
ln -s target "$d/link"
expect_fail "symlink to a file, no --force" "${R[@]}" $S drive-scsi0 "$d/link"
check "symlink --force: exit 0" "${R[@]}" --force $S drive-scsi0 "$d/link"
check "symlink --force: the link survives" test -L "$d/link"
same_bytes "$d/target" "$TMP/want" "symlink --force: the target holds the disk"
ln -s "$d/dangling.raw" "$d/dlink"
check "dangling symlink: exit 0" "${R[@]}" $S drive-scsi0 "$d/dlink"
check "dangling symlink: still a link" test -L "$d/dlink"
same_bytes "$d/dangling.raw" "$TMP/want" "dangling symlink: its target made"
check "symlinks: no temporary" no_temp "$d"

# --- refusals and errors: one line, nothing left behind
mkdir "$d/dir"
expect_fail "directory as OUT" "${R[@]}" $S drive-scsi0 "$d/dir"
expect_fail "missing directory" "${R[@]}" $S drive-scsi0 "$d/nodir/x.raw"
python3 -c 'import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' "$d/sock"
expect_fail "socket as OUT" "${R[@]}" $S drive-scsi0 "$d/sock"
check "socket: still a socket" test -S "$d/sock"
long=$(printf 'x%.0s' $(seq 250)).raw
check "a 254-character name: exit 0" "${R[@]}" $S drive-scsi0 "$d/$long"
same_bytes "$d/$long" "$TMP/want" "a 254-character name: the disk"
expect_fail "a name longer than NAME_MAX" "${R[@]}" $S drive-scsi0 "$d/xxxxxx$long"
check "a name longer than NAME_MAX: says so" grep -qi 'too long' "$TMP/ef.err"
check "errors: no temporary" no_temp "$d"
check "errors: --output-format json with '-' is a usage error" \
  bash -c '"$@" >/dev/null 2>&1; test $? = 2' _ "${R[@]}" --output-format json $S drive-scsi0 -

mnt=$TMP/mnt; mkdir "$mnt"
if mount -t tmpfs -o size=2m tmpfs "$mnt" 2>/dev/null; then
  cleanup_fn umount "$mnt"
  expect_fail "full disk" "${R[@]}" $S drive-scsi0 "$mnt/full.raw"
  check "full disk: says no space" grep -qi 'space' "$TMP/ef.err"
  check "full disk: nothing left" test -z "$(ls -A "$mnt")"
  mount -o remount,ro "$mnt"
  expect_fail "read-only place" "${R[@]}" $S drive-scsi0 "$mnt/ro.raw"
  check "read-only place: says so" grep -qi 'read-only' "$TMP/ef.err"
else
  echo "# no tmpfs mount (not root): full-disk and read-only cases not run"
fi

# --- a block device (loop over a file pre-filled with 0xff), through a
# node of our own in $TMP: a build that replaces device nodes with files
# must not break /dev.
# devnode DEV NODE: a block-device node NODE for DEV.
devnode () {
  python3 -c 'import os,stat,sys; r=os.stat(sys.argv[1]).st_rdev; os.mknod(sys.argv[2], stat.S_IFBLK|0o600, r)' "$1" "$2"
}
if [ -e /dev/loop-control ] && ones "$TMP/loop.img" $((SIZE + 1048576)) &&
   dev=$(losetup -f --show "$TMP/loop.img" 2>/dev/null); then
  cleanup_fn losetup -d "$dev"
  loop=$TMP/loopdev; devnode "$dev" "$loop"
  expect_fail "block device without --force" "${R[@]}" $S drive-scsi0 "$loop"
  check "block device --force: exit 0" "${R[@]}" --force $S drive-scsi0 "$loop"
  check "block device: still a block device" test -b "$loop"
  check "block device: the disk, zeros included" cmp -n $SIZE "$loop" "$TMP/want"
  check "block device: bytes past the disk untouched" \
    python3 -c 'import sys; f=open(sys.argv[1],"rb"); f.seek(int(sys.argv[2])); sys.exit(f.read() != b"\xff"*1048576)' "$loop" $SIZE
  check "block device: its backing file holds the disk" \
    cmp -n $SIZE "$TMP/loop.img" "$TMP/want"
  # Fill the backing file again; drop the device's cached pages.
  ones "$TMP/loop.img" $((SIZE + 1048576))
  blockdev --flushbufs "$loop" 2>/dev/null || true
  ln -s "$loop" "$d/devlink"
  check "symlink to the device --force --discard: exit 0" \
    "${R[@]}" --force --discard $S drive-scsi0 "$d/devlink"
  check "symlink to the device: the device holds the disk" \
    cmp -n $SIZE "$loop" "$TMP/want"
  check "symlink to the device: link and device survive" \
    bash -c 'test -L "$1" && test -b "$2"' _ "$d/devlink" "$loop"
  truncate -s 32M "$TMP/small.img"
  if sdev=$(losetup -f --show "$TMP/small.img" 2>/dev/null); then
    cleanup_fn losetup -d "$sdev"
    small=$TMP/smalldev; devnode "$sdev" "$small"
    expect_fail "too small a device" "${R[@]}" --force $S drive-scsi0 "$small"
    check "too small a device: both sizes named" \
      grep -q "33554432.*$SIZE" "$TMP/ef.err"
  fi
else
  echo "# no loop device here: block-device cases not run"
fi

# --- interrupts: stopped while its temporary exists, then signalled
qemu-img create -q -f qcow2 "$TMP/big.qcow2" 256M
head -c 268435456 /dev/urandom >"$TMP/rand"
qemu-io -c "write -s $TMP/rand 0 256M" "$TMP/big.qcow2" >/dev/null
rm "$TMP/rand"
"$TOOL" push --repository "$ds" --backup-id 2 --backup-time 1000 \
  "$TMP/big.qcow2" >/dev/null
mkdir "$d/int"
for sig in INT TERM; do
  rc=$(python3 - "$d/int" "$sig" "${R[@]}" vm/2/1000 drive-scsi0 "$d/int/big.raw" <<'EOF'
import os, signal, subprocess, sys, time
d, sig, cmd = sys.argv[1], getattr(signal, "SIG" + sys.argv[2]), sys.argv[3:]
p = subprocess.Popen(cmd, stderr=open(d + "/../int.err", "w"))
while p.poll() is None and not any(n.startswith(".") for n in os.listdir(d)):
    time.sleep(0.001)
if p.poll() is not None:
    print("missed"); sys.exit()
p.send_signal(signal.SIGSTOP); p.send_signal(sig); p.send_signal(signal.SIGCONT)
print(p.wait())
EOF
)
  if [ "$rc" = missed ]; then
    echo "# SIG$sig: restore finished before its temporary was seen"; continue
  fi
  want=$((128 + $(kill -l $sig)))
  check "SIG$sig: exit $want (got $rc)" test "$rc" = $want
  check "SIG$sig: one line: $(cat "$d/int.err")" \
    bash -c '[ "$(wc -l <"$1")" = 1 ] && grep -q "^qcow2pbs: restore: interrupted" "$1"' _ "$d/int.err"
  check "SIG$sig: no temporary, no OUT" test -z "$(ls -A "$d/int")"
done
done_testing
