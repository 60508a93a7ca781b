#!/bin/bash
# test-datastore-safety.sh -- the local datastore is only written by a
# real push, and only inside itself:
#  - snapshots, restore, verify and push --dry-run on a mistyped path say
#    "no datastore here" (exit 1) and create nothing;
#  - a bare name that is a local directory is refused before any password
#    prompt, pointing to ./NAME;
#  - a first push that fails (full disk) leaves no group behind, a later
#    push works; a half-made group (no owner) and an unfinished snapshot
#    nobody holds (as kill -9 leaves them) are cleaned up with one line
#    each; a snapshot a live process holds is left alone;
#  - a symlinked group or .chunks/XXXX directory is an error naming it and
#    nothing lands outside the datastore (find);
#  - PBS_PASSWORD_CMD does not see PBS_ENCRYPTION_PASSWORD & co;
#  - names from a manifest are printed escaped.
# Oracles: qemu-img convert (restores), python3 hashlib (chunk names),
# find, env.
. "$(dirname "$0")/../helpers/functions.sh"
. "$(dirname "$0")/../helpers/push-functions.sh"
requires qemu-img
requires qemu-io
requires python3
requires flock
[ -x "$TOOL" ] || skip "qcow2pbs not built"

img=$TMP/img; mkdir "$img"
qemu-img create -q -f qcow2 "$img/a.qcow2" 16M
qemu-io -c 'write -P 9 0 4M' -c 'write -P 5 8M 1M' "$img/a.qcow2" >/dev/null
cd "$DS_TMP"
# to OUT ERR CMD...: CMD with its output in files (for check).
to () { local o=$1 e=$2; shift 2; "$@" >"$o" 2>"$e"; }

# --- commands that must not write
for c in snapshots restore verify dry-run; do
  case $c in
    snapshots) set -- snapshots --repository ./typo ;;
    restore) set -- restore --repository ./typo vm/1/1700000000 drive-scsi0 "$TMP/out.raw" ;;
    verify) set -- verify --repository ./typo vm/1/1700000000 "$img/a.qcow2" ;;
    dry-run) set -- push --dry-run --repository ./typo --backup-id 1 "$img/a.qcow2" ;;
  esac
  # verify exits 2 on trouble, as cmp does (1 means "differs").
  if [ $c = verify ]; then ef=expect_fail2; else ef=expect_fail; fi
  $ef "$c on a mistyped path" "$TOOL" "$@"
  check "$c: says 'no datastore here'" \
    grep -q '^qcow2pbs: \./typo: no datastore here' "$TMP/ef.err"
  check "$c: created nothing" test ! -e ./typo
  check "$c: wrote no output file" test ! -e "$TMP/out.raw"
done
mkdir empty
expect_fail "snapshots on an empty directory" \
  "$TOOL" snapshots --repository ./empty
check "empty directory: no .chunks made" test ! -e empty/.chunks

# --- a bare name that is a local directory
mkdir ds2
unset PBS_PASSWORD PBS_PASSWORD_FD PBS_PASSWORD_FILE PBS_PASSWORD_CMD
PBS_PASSWORD_CMD="touch $TMP/asked; echo pw" expect_fail \
  "--repository ds2 (a local directory)" "$TOOL" snapshots --repository ds2 </dev/null
check "bare name: says it is a local directory and how to write it" \
  grep -q "ds2: is a local directory; write a local datastore as ./ds2" "$TMP/ef.err"
check "bare name: no password asked" test ! -e "$TMP/asked"

# --- the password command sees no other secret
PBS_PASSWORD_CMD="env >$TMP/env.out; echo pw" \
PBS_ENCRYPTION_PASSWORD=enc-secret-1 PBS_ENCRYPTION_PASSWORD_FILE=/x \
  "$TOOL" snapshots --repository 'root@pam@127.0.0.1:1:store' \
  </dev/null >/dev/null 2>&1 || true
check "password command ran" test -s "$TMP/env.out"
check "password command: no PBS_ENCRYPTION_PASSWORD*" \
  bash -c "! grep -q '^PBS_ENCRYPTION_PASSWORD' '$TMP/env.out'"
check "password command: no PBS_PASSWORD_CMD" \
  bash -c "! grep -q '^PBS_PASSWORD' '$TMP/env.out'"
check "password command: the rest of the environment (PATH) stays" \
  grep -q '^PATH=' "$TMP/env.out"

# --- a failed first push leaves the group as it was
mnt=$TMP/mnt; mkdir "$mnt"
if mount -t tmpfs -o size=8m tmpfs "$mnt" 2>/dev/null; then
  cleanup_fn umount "$mnt"
  "$TOOL" push --repository "$mnt/ds" --backup-id seed --backup-time 1700000000 \
    "$img/a.qcow2" >/dev/null
  dd if=/dev/zero of="$mnt/filler" bs=64k 2>/dev/null || true # fill it up
  expect_fail "first push on a full disk" \
    "$TOOL" push --repository "$mnt/ds" --backup-id first --backup-time 1700000100 "$img/a.qcow2"
  check "full disk: no group left behind" test ! -e "$mnt/ds/vm/first"
  rm "$mnt/filler"
  check "full disk: the next push of that group works" to /dev/null /dev/null \
    "$TOOL" push --repository "$mnt/ds" --backup-id first --backup-time 1700000200 "$img/a.qcow2"
  restore_equals "$mnt/ds" vm/first/1700000200 drive-scsi0 "$img/a.qcow2" \
    "full disk: the later snapshot restores to the image"
else
  echo "# no tmpfs mount (not root): full-disk case not run"
fi

# --- a half-made group (no owner file, nothing else): taken over
"$TOOL" push --repository ./ds --backup-id other --backup-time 1700000000 \
  "$img/a.qcow2" >/dev/null
mkdir ds/vm/half
check "half-made group: push succeeds" to /dev/null "$TMP/half.err" \
  "$TOOL" push --repository ./ds --backup-id half --backup-time 1700000000 \
  "$img/a.qcow2"
check "half-made group: one line says so: $(cat "$TMP/half.err")" \
  test "$(grep -c 'group vm/half had no owner file' "$TMP/half.err")" = 1
check "half-made group: owner written" grep -q root@pam ds/vm/half/owner
restore_equals ./ds vm/half/1700000000 drive-scsi0 "$img/a.qcow2" \
  "half-made group: restores to the image"

# --- unfinished snapshots: removed unless a live process holds them
mkdir ds/vm/other/2023-11-14T00:00:00Z ds/vm/other/2023-11-14T00:00:01Z
echo x >ds/vm/other/2023-11-14T00:00:00Z/drive-scsi0.img.tmp_fidx
# This shell holds the second one, as a live session would (flock on an
# open file: the push, although it inherits fd 9, opens its own).
exec 9<ds/vm/other/2023-11-14T00:00:01Z
flock -s 9
check "unfinished: push succeeds" to /dev/null "$TMP/unf.err" \
  "$TOOL" push --repository ./ds --backup-id other --backup-time 1700000100 \
  "$img/a.qcow2"
check "unfinished: one line names the removed snapshot: $(cat "$TMP/unf.err")" \
  test "$(grep -c '^push: removed unfinished snapshot vm/other/2023-11-14T00:00:00Z' "$TMP/unf.err")" = 1
check "unfinished: it is gone" test ! -e ds/vm/other/2023-11-14T00:00:00Z
check "unfinished: the one a live process holds stays" \
  test -d ds/vm/other/2023-11-14T00:00:01Z
check "unfinished: and is not mentioned" \
  bash -c "! grep -q '00:00:01Z' '$TMP/unf.err'"
exec 9<&-
rmdir ds/vm/other/2023-11-14T00:00:01Z

# A real kill -9 in the middle of a push: the watcher kills it as soon as
# the new snapshot directory appears.
qemu-img create -q -f qcow2 "$img/big.qcow2" 96M
head -c 83886080 /dev/urandom >"$TMP/rand"
qemu-io -c "write -s $TMP/rand 0 80M" "$img/big.qcow2" >/dev/null
rm "$TMP/rand"
"$TOOL" push --repository ./ds --backup-id killed --backup-time 1700000000 \
  "$img/a.qcow2" >/dev/null
# The watcher starts the push itself, so that it polls from the start.
python3 - ds/vm/killed/2023-11-14T22:21:40Z "$TOOL" push --repository ./ds \
  --backup-id killed --backup-time 1700000500 "$img/big.qcow2" <<'EOF'
import os, signal, subprocess, sys, time
p = subprocess.Popen(sys.argv[2:], stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL)
while p.poll() is None and not os.path.isdir(sys.argv[1]):
    time.sleep(0.001)
if p.poll() is None:
    p.send_signal(signal.SIGKILL)
p.wait()
EOF
if [ -d ds/vm/killed/2023-11-14T22:21:40Z ] &&
   [ ! -e ds/vm/killed/2023-11-14T22:21:40Z/index.json.blob ]; then
  check "kill -9: the next push succeeds" to /dev/null "$TMP/k.err" \
    "$TOOL" push --repository ./ds --backup-id killed --backup-time 1700000600 \
    "$img/big.qcow2"
  check "kill -9: it removed the killed push's snapshot, saying so" \
    grep -q '^push: removed unfinished snapshot vm/killed/2023-11-14T22:21:40Z' "$TMP/k.err"
  check "kill -9: nothing half-done remains" ds_consistent ./ds
  restore_equals ./ds vm/killed/1700000600 drive-scsi0 "$img/big.qcow2" \
    "kill -9: the new snapshot restores to the image"
else
  echo "# kill -9 came too late (the push had finished): case not run"
fi

# --- symlinks inside the datastore are never followed
out=$TMP/outside; mkdir -p "$out/grp" "$out/chk"
ln -s "$out/grp" ds/vm/evil
expect_fail "push into a symlinked group" \
  "$TOOL" push --repository ./ds --backup-id evil "$img/a.qcow2"
check "symlinked group: the error names it" grep -q 'ds/vm/evil is a symlink' "$TMP/ef.err"
expect_fail "snapshots with a symlinked group" "$TOOL" snapshots --repository ./ds
check "snapshots: the error names it" grep -q 'ds/vm/evil is a symlink' "$TMP/ef.err"
rm ds/vm/evil
prefix=$(python3 -c 'import hashlib; print(hashlib.sha256(b"\x09" * 4194304).hexdigest()[:4])')
rm -rf "ds/.chunks/$prefix"
ln -s "$out/chk" "ds/.chunks/$prefix"
expect_fail "push with a symlinked .chunks/$prefix" \
  "$TOOL" push --repository ./ds --backup-id chk "$img/a.qcow2"
check "symlinked chunk dir: the error names it" \
  grep -q "ds/.chunks/$prefix is a symlink" "$TMP/ef.err"
check "symlinks: nothing was written outside the datastore: $(find "$out" -mindepth 2 | head -3)" \
  test -z "$(find "$out" -mindepth 2)"
rm "ds/.chunks/$prefix"; mkdir "ds/.chunks/$prefix"

# --- names from a manifest are printed escaped
python3 - ds/vm/other/2023-11-14T22:13:20Z/index.json.blob <<'EOF'
import json, struct, subprocess, sys, zlib
p = sys.argv[1]
b = open(p, "rb").read()
data = b[12:]
if b[:8] == bytes.fromhex("31b958426fb6a37f"):
    data = subprocess.run(["zstd", "-dc"], input=data, capture_output=True,
                          check=True).stdout
m = json.loads(data)
m["files"][0]["filename"] = "evil\x1b]0;owned\x07\x1b[2J.img.fidx"
out = json.dumps(m).encode()
open(p, "wb").write(bytes.fromhex("42ab3807be8370a1") +
                    struct.pack("<I", zlib.crc32(out)) + out)
EOF
"$TOOL" snapshots --repository ./ds >"$TMP/list.out" 2>&1
check "snapshots: no raw ESC or BEL reaches the terminal" \
  bash -c "! grep -q \$'[\x1b\x07]' '$TMP/list.out'"
check "snapshots: the name is shown escaped" \
  grep -qF 'evil\x1b]0;owned\x07\x1b[2J.img.fidx' "$TMP/list.out"
done_testing
