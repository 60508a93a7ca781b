#!/bin/bash
# test-qcow-chain-safety.sh -- chains that would make a wrong disk are
# refused, never read: --chain together with an IMAGE that is not its top;
# --chain in the wrong order, with a gap, or starting above the base; layers
# without backing names that do not fit (size, raw in the middle, qmpbackup
# names out of order, of another disk, or leaving out an INC of the same
# folder); backing and data files that lead
# outside the image's directory (absolute, "..", symlink) unless
# --allow-backing-dir;
# files that are not qcow2 are named for what they are.  A lone incremental
# (qmpbackup INC file) is pushed with a warning.  Golden data: qemu-img
# convert of the chains as QEMU links them, qemu-img info for formats.
. "$(dirname "$0")/../helpers/functions.sh"
. "$(dirname "$0")/../helpers/qcow-lib.sh"
. "$(dirname "$0")/../helpers/push-functions.sh"
requires zstd

# refused DESC STATUS TEXT CMD...: CMD exits STATUS; stderr starts with
# "qcow2pbs", holds TEXT, and is one line for status 1.
refused () {
  local d=$1 want=$2 text=$3 rc=0; shift 3
  "$@" >"$TMP/r.out" 2>"$TMP/r.err" || rc=$?
  if [ $rc = "$want" ] && head -1 "$TMP/r.err" | grep -q '^qcow2pbs' &&
     grep -qF -- "$text" "$TMP/r.err" &&
     { [ "$want" = 2 ] || [ "$(wc -l <"$TMP/r.err")" = 1 ]; }; then
    pass "$d"
  else
    fail "$d (exit $rc, want $want, '$text'): $(head -c 400 "$TMP/r.err")"
  fi
}
# snapshots DS: how many snapshots (manifests) DS holds
snapshots () { find "$1" -name index.json.blob 2>/dev/null | wc -l; }

# ---- a chain with backing names: full <- incr0 <- incr1
d=$TMP/c
mkdir "$d"
mk "$d/full.qcow2" 8M
io "$d/full.qcow2" 'write -P 0x11 0 2M' 'write -P 0x12 5M 64k'
overlay "$d/incr0.qcow2" "$d/full.qcow2"
io "$d/incr0.qcow2" 'write -P 0x21 1M 64k' 'write -z 5M 64k'
overlay "$d/incr1.qcow2" "$d/incr0.qcow2"
io "$d/incr1.qcow2" 'write -P 0x31 7M 64k' 'discard 0 64k'
raw_of "$d/incr1.qcow2" "$TMP/incr1.raw"
F=$d/full.qcow2 I0=$d/incr0.qcow2 I1=$d/incr1.qcow2

# 1. --chain plus an IMAGE that is not its top: every command refuses.
ds=$DS_TMP/ds1
refused "push --chain full,incr0 incr1: refused" 2 "not the top of --chain" \
  "$TOOL" push --repository "$ds" --backup-id a --backup-time 1000 \
  --chain "$F,$I0" "$I1"
check "push --chain full,incr0 incr1: no snapshot" test "$(snapshots "$ds")" = 0
refused "push --chain full,incr0 NAME=incr1: refused" 2 "not the top of --chain" \
  "$TOOL" push --repository "$ds" --backup-id a --backup-time 1000 \
  --chain "$F,$I0" "disk=$I1"
for cmd in info map bitmap; do
  a=(); [ $cmd = bitmap ] && a=(b0)
  refused "$cmd --chain full,incr0 incr1: refused" 2 "not the top of --chain" \
    "$TOOL" $cmd --chain "$F,$I0" "$I1" "${a[@]}"
done
refused "export --chain full,incr0 incr1 OUT: refused" 2 "not the top of --chain" \
  "$TOOL" export --chain "$F,$I0" "$I1" "$TMP/x.raw"
check "export refused: no output" test ! -e "$TMP/x.raw"
# IMAGE that is the top of --chain (also through a symlink): the chain.
ln -s incr1.qcow2 "$d/latest.qcow2"
if "$TOOL" export --chain "$F,$I0,$I1" "$d/latest.qcow2" "$TMP/x.raw"; then
  same_bytes "$TMP/incr1.raw" "$TMP/x.raw" "export --chain ...,incr1 incr1 = qemu-img convert"
else fail "export --chain with its own top as IMAGE"; fi
rm -f "$TMP/x.raw"
"$TOOL" push --repository "$ds" --backup-id a --backup-time 1001 \
  --chain "$F,$I0,$I1" "$I1" >/dev/null ||
  fail "push --chain ...,incr1 incr1 refused"
restore_equals "$ds" vm/a/1001 drive-scsi0 "$I1" "push --chain ...,incr1 incr1: restore = qemu-img convert"
refused "verify --chain full,incr0 SNAP incr1: refused" 2 "not the top of --chain" \
  "$TOOL" verify --repository "$ds" --chain "$F,$I0" vm/a/1001 "$I1"
check "verify --chain ...,incr1 SNAP incr1: identical" \
  "$TOOL" verify --repository "$ds" --chain "$F,$I0,$I1" vm/a/1001 "$I1" \
  >/dev/null

# 2. --chain against the backing names the layers record.
refused "--chain in reverse order: refused, shows the recorded name" 1 \
  "incr1.qcow2: its backing file is incr0.qcow2" \
  "$TOOL" export --chain "$I1,$I0,$F" "$TMP/x.raw"
check "reverse order: no output" test ! -e "$TMP/x.raw"
refused "--chain with a gap (full,incr1): refused" 1 \
  "incr1.qcow2: its backing file is incr0.qcow2, but --chain gives $F before it" \
  "$TOOL" export --chain "$F,$I1" "$TMP/x.raw"
refused "--chain starting above the base (incr0,incr1): refused" 1 \
  "incr0.qcow2: its backing file is full.qcow2, but it comes first in --chain" \
  "$TOOL" info --chain "$I0,$I1"
refused "push --chain with a gap: refused" 1 "its backing file is incr0.qcow2" \
  "$TOOL" push --repository "$DS_TMP/ds2" --backup-id a --chain "$F,$I1"
check "push with a gap: no snapshot" test "$(snapshots "$DS_TMP/ds2")" = 0
# A pointer to a file that is gone (a moved chain, or a deleted layer):
# refused, with the command that records the new name.
cp "$I1" "$d/moved.qcow2"
qemu-img rebase -u -b /gone/incr0.qcow2 -F qcow2 "$d/moved.qcow2"
refused "--chain: a backing name that leads nowhere: refused with the fix" 1 \
  "its backing file /gone/incr0.qcow2 does not exist, and --chain gives $I0 before it; if that is the same layer moved, record its name first (qemu-img rebase -u -b $I0 -F qcow2 $d/moved.qcow2)" \
  "$TOOL" export --chain "$F,$I0,$d/moved.qcow2" "$TMP/x.raw"
qemu-img rebase -u -b "$I0" -F qcow2 "$d/moved.qcow2"
if "$TOOL" export --chain "$F,$I0,$d/moved.qcow2" "$TMP/x.raw"; then
  same_bytes "$TMP/incr1.raw" "$TMP/x.raw" "after that rebase: export = qemu-img convert"
else fail "after the suggested rebase: still refused"; fi
rm -f "$TMP/x.raw"
cp "$I0" "$d/i0-raw.qcow2"
qemu-img rebase -u -b full.qcow2 -F raw "$d/i0-raw.qcow2"
refused "--chain: backing format recorded as raw, layer is qcow2: refused" 1 \
  "as format raw, but it is qcow2" \
  "$TOOL" map --chain "$F,$d/i0-raw.qcow2"

# Layers without backing names (qmpbackup's INC files), from a real QMP
# chain: FULL-, INC-, INC- in time order.
q=$TMP/q
layers=$(python3 "$top/tests/helpers/qmp.py" chain --dir "$q" --size 16M \
           --incrementals 2 --seed 11) || { fail "qmp.py chain"; done_testing; exit; }
IFS=, read -r qf qi0 qi1 <<<"$layers"
raw_of "$qi1" "$TMP/q.raw"
raw_of "$qi0" "$TMP/q0.raw"
m=$TMP/m
mkdir "$m"
QF=$m/FULL-1700000000-disk.qcow2 Q0=$m/INC-1700000100-disk.qcow2
Q1=$m/INC-1700000200-disk.qcow2
cp "$qf" "$QF"; cp "$qi0" "$Q0"; cp "$qi1" "$Q1"
qemu-img rebase -u -b '' "$Q0"
qemu-img rebase -u -b '' "$Q1"
if "$TOOL" export --chain "$QF,$Q0,$Q1" "$TMP/x.raw"; then
  same_bytes "$TMP/q.raw" "$TMP/x.raw" "qmpbackup chain in order: export = qemu-img convert"
else fail "qmpbackup chain in order refused"; fi
rm -f "$TMP/x.raw"
refused "qmpbackup INC files out of time order: refused" 1 \
  "INC-1700000100-disk.qcow2: made at 1700000100" \
  "$TOOL" export --chain "$QF,$Q1,$Q0" "$TMP/x.raw"
refused "qmpbackup FULL above an INC: refused" 1 \
  "FULL-1700000000-disk.qcow2: a qmpbackup full backup" \
  "$TOOL" export --chain "$Q0,$QF,$Q1" "$TMP/x.raw"
check "refused qmpbackup chains: no output" test ! -e "$TMP/x.raw"
mk "$m/INC-1700000300-other.qcow2" 32M
refused "layer without backing name of another size: refused" 1 \
  "layers without a backing name must be of one size" \
  "$TOOL" info --chain "$QF,$Q0,$m/INC-1700000300-other.qcow2"
# Another disk's INC of the same size (qmpbackup names it after the disk
# file; --no-subdir puts the disks side by side): a mixed disk, refused.
cp "$Q0" "$m/INC-1700000100-sdb.qcow2"
refused "qmpbackup INC of another disk (same size) in --chain: refused" 1 \
  "INC-1700000100-sdb.qcow2: a qmpbackup backup of disk sdb.qcow2" \
  "$TOOL" export --chain "$QF,$m/INC-1700000100-sdb.qcow2" "$TMP/x.raw"
check "another disk's INC: no output" test ! -e "$TMP/x.raw"
# An INC left out: INC-1700000200 holds only the changes since
# INC-1700000100, which lies in the same folder.  Refused, nothing written.
refused "qmpbackup INC left out of --chain (it is in the folder): refused" 1 \
  "--chain skips INC-1700000100-disk.qcow2" \
  "$TOOL" export --chain "$QF,$Q1" "$TMP/x.raw"
check "INC left out: no output" test ! -e "$TMP/x.raw"
refused "push with an INC left out of --chain: refused" 1 \
  "--chain skips INC-1700000100-disk.qcow2" \
  "$TOOL" push --repository "$DS_TMP/gap-ds" --backup-id gap --chain "$QF,$Q1"
check "INC left out: no snapshot" test "$(snapshots "$DS_TMP/gap-ds")" = 0
qemu-img convert -O raw "$Q0" "$m/middle.raw"
check "fixture: middle.raw is raw (qemu-img info)" \
  test "$(qemu-img info --output=json "$m/middle.raw" | python3 -c 'import json,sys; print(json.load(sys.stdin)["format"])')" = raw
refused "raw layer in the middle of --chain: refused, says raw" 1 \
  "raw only as the base below qcow2 layers in --chain" \
  "$TOOL" info --chain "$QF,$m/middle.raw,$Q1"
"$TOOL" info --output-format json --chain "$QF,$Q0,$Q1" >"$TMP/info.json" || true
check "info --chain JSON: chain[] = the layers used, oldest first" python3 -c '
import json, sys
j = json.load(open(sys.argv[1]))
l = [x["path"] for x in j["layers"]]   # top first, as qemu-img info
sys.exit(0 if j["chain"] == sys.argv[2:] and l == sys.argv[:1:-1] else 1)' \
  "$TMP/info.json" "$QF" "$Q0" "$Q1"
"$TOOL" info --chain "$QF,$Q0,$Q1" >"$TMP/info.txt" || true
check "info --chain text: the layers used, oldest first" \
  grep -qxF "layers used, oldest first: $QF <- $Q0 <- $Q1" "$TMP/info.txt"

# 3. A lone incremental: pushed with one warning line pointing to --chain.
ds=$DS_TMP/ds3
rc=0
"$TOOL" push --repository "$ds" --backup-id inc --backup-time 2000 "$Q1" \
  >/dev/null 2>"$TMP/w.err" || rc=$?
check "lone INC file: push still runs (exit 0)" test $rc = 0
if [ "$(wc -l <"$TMP/w.err")" = 1 ] && grep -q "^qcow2pbs: warning: .*INC-1700000200-disk.qcow2 is a qmpbackup incremental.*--chain" "$TMP/w.err"
then pass "lone INC file: one warning line naming --chain"
else fail "lone INC file: no warning: $(cat "$TMP/w.err")"; fi
cp "$Q0" "$m/incr0.qcow2"
"$TOOL" export "$m/incr0.qcow2" "$TMP/x.raw" 2>"$TMP/w.err" || true
rm -f "$TMP/x.raw"
check "export of incr0.qcow2 without backing: warning by name" \
  grep -q "warning: .*incr0.qcow2 is by its name an incremental" "$TMP/w.err"
# No warning for a sparse full backup (QMP sync=full of a mostly empty
# disk allocates only a few % of its size) nor for a chain with its base.
"$TOOL" push --repository "$ds" --backup-id full --backup-time 2000 "$QF" \
  >/dev/null 2>"$TMP/w.err" || true
check "sparse FULL file: no warning" test ! -s "$TMP/w.err"
"$TOOL" push --repository "$ds" --backup-id full --backup-time 2001 \
  --chain "$QF,$Q0,$Q1" >/dev/null 2>"$TMP/w.err" || true
check "INC files with --chain: no warning" test ! -s "$TMP/w.err"
restore_equals "$ds" vm/full/2001 drive-scsi0 "$qi1" "qmpbackup chain push: restore = qemu-img convert"

# 4. Backing and data files stay in the image's directory.
s=$TMP/secret
mkdir "$s"
python3 -c 'import sys; open(sys.argv[1], "wb").write(b"SECRET-BYTES-4711" * 65536)' "$s/secret.img"
e=$TMP/e
mkdir "$e"
qemu-img create -q -f qcow2 -b "$s/secret.img" -F raw "$e/abs.qcow2" 1M
refused "absolute backing name outside: refused, names path and option" 1 \
  "refusing backing file $s/secret.img: it lies outside the image's directory; allow it with --allow-backing-dir $s" \
  "$TOOL" export "$e/abs.qcow2" "$TMP/x.raw"
check "absolute outside: no output" test ! -e "$TMP/x.raw"
refused "absolute backing outside: push refused" 1 "--allow-backing-dir" \
  "$TOOL" push --repository "$DS_TMP/ds4" --backup-id e "$e/abs.qcow2"
check "absolute outside: no snapshot" test "$(snapshots "$DS_TMP/ds4")" = 0
qemu-img create -q -f qcow2 -b ../secret/secret.img -F raw "$e/dotdot.qcow2" 1M
refused "relative ../ backing outside: refused" 1 "($s/secret.img)" \
  "$TOOL" info "$e/dotdot.qcow2"
ln -s "$s/secret.img" "$e/base.img"
qemu-img create -q -f qcow2 -b base.img -F raw "$e/link.qcow2" 1M
refused "backing through a symlink to outside: refused" 1 "'base.img' ($s/secret.img)" \
  "$TOOL" map "$e/link.qcow2"
(cd "$e" && qemu-img convert -O raw abs.qcow2 "$TMP/abs.raw")
if "$TOOL" export --allow-backing-dir "$s" "$e/abs.qcow2" "$TMP/x.raw"; then
  same_bytes "$TMP/abs.raw" "$TMP/x.raw" "--allow-backing-dir: export = qemu-img convert"
else fail "--allow-backing-dir refused"; fi
rm -f "$TMP/x.raw"
refused "--allow-backing-dir of a missing directory: refused" 1 "allowed backing directory" \
  "$TOOL" info --allow-backing-dir "$TMP/nonexistent" "$e/abs.qcow2"
# Absolute names inside the top's tree, as libvirt writes them: followed.
l=$TMP/libvirt
mkdir -p "$l/sub"
cp "$F" "$l/base.qcow2"
qemu-img create -q -f qcow2 -b "$l/base.qcow2" -F qcow2 "$l/vm.qcow2"
io "$l/vm.qcow2" 'write -P 0x51 3M 64k'
cp "$F" "$l/sub/deep.qcow2"
qemu-img create -q -f qcow2 -b "$l/sub/../sub/deep.qcow2" -F qcow2 "$l/vm2.qcow2"
check_image "libvirt absolute name in the same directory" "$l/vm.qcow2"
check_image "absolute name in a subdirectory" "$l/vm2.qcow2"
# A relative data-file name that leaves through a symlink.
df=$TMP/df
mkdir "$df"
(cd "$df" && qemu-img create -q -f qcow2 -o data_file=disk.data,data_file_raw=on disk.qcow2 1M &&
  io disk.qcow2 'write -P 0x61 0 1M')
(cd "$df" && qemu-img convert -O raw disk.qcow2 "$TMP/df.raw")
if "$TOOL" export "$df/disk.qcow2" "$TMP/x.raw"; then
  same_bytes "$TMP/df.raw" "$TMP/x.raw" "data file in the directory: export = qemu-img convert"
else fail "data file in the directory refused"; fi
rm -f "$TMP/x.raw"
rm "$df/disk.data"
ln -s "$s/secret.img" "$df/disk.data"
refused "data file through a symlink to outside: refused" 1 \
  "refusing data file 'disk.data' ($s/secret.img)" \
  "$TOOL" export "$df/disk.qcow2" "$TMP/x.raw"
check "data file outside: no output" test ! -e "$TMP/x.raw"

# 5. Files that are not qcow2 say what they are and what to do.
n=$TMP/n
mkdir "$n"
: >"$n/empty.qcow2"
python3 -c 'import os,sys; open(sys.argv[1], "wb").write(os.urandom(1 << 20))' "$n/random.img"
for fmt in vmdk vhdx vdi qed vpc qcow; do
  qemu-img create -q -f $fmt "$n/disk.$fmt" 1M
  check "fixture: disk.$fmt is $fmt (qemu-img info)" \
    test "$(qemu-img info --output=json "$n/disk.$fmt" | python3 -c 'import json,sys; print(json.load(sys.stdin)["format"])')" = $fmt
done
# qemu-img times its key derivation and gives up now and then on a busy
# machine ("Unable to get accurate CPU usage"): a few tries.
for _ in 1 2 3; do
  qemu-img create -q -f luks --object secret,id=s0,data=pw -o key-secret=s0,iter-time=10 \
    "$n/disk.luks" 1M 2>/dev/null && break
  rm -f "$n/disk.luks"
done
tar -C "$d" -cf "$n/chain.tar" full.qcow2
gzip -c "$F" >"$n/full.qcow2.gz"
zstd -q -c "$F" >"$n/full.qcow2.zst"
xz -c "$F" >"$n/full.qcow2.xz" 2>/dev/null || true
while IFS='|' read -r file text; do
  if [ "$file" = disk.luks ] && [ ! -e "$n/$file" ]; then
    echo "# skipped: qemu-img could not make a LUKS image"; continue
  fi
  [ -e "$n/$file" ] || [ "$file" = . ] || { fail "fixture $file missing"; continue; }
  refused "not qcow2: $file says '$text'" 1 "$text" "$TOOL" info "$n/$file"
done <<EOF
empty.qcow2|an empty file (0 bytes)
random.img|raw data or an unknown format; qcow2pbs reads qcow2 images (raw only as the base below qcow2 layers in --chain); convert it
disk.vmdk|a VMDK image, not qcow2: convert it
disk.vhdx|a VHDX image
disk.vdi|a VirtualBox VDI image
disk.qed|a QED image
disk.vpc|a VHD (vpc) image
disk.qcow|a qcow version 1 image, not qcow2: convert it
disk.luks|a LUKS-encrypted image
chain.tar|a tar archive, not a disk image: extract it first
full.qcow2.gz|gzip-compressed: decompress it first
full.qcow2.zst|zstd-compressed: decompress it first
.|a directory, not an image
EOF
if [ -e "$n/full.qcow2.xz" ]; then
  refused "not qcow2: xz says so" 1 "xz-compressed" "$TOOL" info "$n/full.qcow2.xz"
fi
refused "not qcow2 in push: tar archive named" 1 "a tar archive" \
  "$TOOL" push --repository "$DS_TMP/ds5" --backup-id n "$n/chain.tar"

done_testing
