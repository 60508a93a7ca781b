#!/bin/bash
# test-import.sh -- qcow2pbs import of backup folders.  Golden data: chains
# made by real blockdev-backup jobs (tests/helpers/qmp.py via
# tests/helpers/qmpbackup_fixture.py), laid out and named exactly as qmpbackup
# names them, backing pointers removed with `qemu-img rebase -u -b ""`;
# every point of every disk must restore byte-identical to `qemu-img
# convert` of that point's chain (made before the pointers were removed).
. "$(dirname "$0")/../helpers/functions.sh"
requires qemu-img
requires qemu-system-x86_64
requires python3
[ -x "$TOOL" ] || skip "qcow2pbs not built"
fixture () { python3 "$top/tests/helpers/qmpbackup_fixture.py" "$@"; }

# restores_all DS ID FIXTURE DISKS T...: every point restores as expected
restores_all () {
  local ds=$1 id=$2 fx=$3 disks=$4 t d bad=0
  shift 4
  for t in "$@"; do
    for d in ${disks//,/ }; do
      rm -f "$TMP/r.raw"
      if ! "$TOOL" restore --repository "$ds" "vm/$id/$t" "drive-$d" "$TMP/r.raw" 2>"$TMP/r.err" ||
         ! cmp -s "$TMP/r.raw" "$fx.expect/$d-$t.raw"; then
        bad=1; echo "# point $t disk $d differs: $(cat "$TMP/r.err")"
      fi
    done
  done
  return $bad
}
finished () { "$TOOL" snapshots --repository "$1" --output-format json | python3 -c '
import json, sys
print(" ".join(str(s["backup-time"]) for s in json.load(sys.stdin) if s["backup-id"] == sys.argv[1] and "size" in s))' "$2"; }

T0=1700000000 T1=1700000100 T2=1700000200 T3=1700000300

# --- one VM, two disks, three points, as a folder
fixture "$TMP/vm1" --disks sda,sdb --points 3
ds=$DS_TMP/ds1
if "$TOOL" import --repository "$ds" --output-format json "$TMP/vm1" >"$TMP/i1.json" 2>"$TMP/i1.err"; then
  pass "import of a qmpbackup folder"
else
  fail "import: $(cat "$TMP/i1.err")"
fi
check "three snapshots, named by the times in the file names" test "$(finished "$ds" vm1)" = "$T0 $T1 $T2"
check "every point of both disks restores = qemu-img convert of its chain" \
  restores_all "$ds" vm1 "$TMP/vm1" sda,sdb $T0 $T1 $T2
check "JSON: stored, one archive per disk, later points incremental" python3 -c '
import json, sys
p = json.load(open(sys.argv[1]))["points"]
assert [x["status"] for x in p] == ["stored"] * 3, p
assert all(sorted(a["name"] for a in x["archives"]) == ["drive-sda.img.fidx", "drive-sdb.img.fidx"] for x in p)
assert all(a["incremental"] for x in p[1:] for a in x["archives"]), p
assert p[0]["snapshot"] == "vm/vm1/2023-11-14T22:13:20Z" and p[0]["time"] == 1700000000' "$TMP/i1.json"

# --- a re-run adds nothing
"$TOOL" import --repository "$ds" --output-format json "$TMP/vm1" >"$TMP/i2.json" 2>&1 &&
  pass "re-run exits 0" || fail "re-run: $(cat "$TMP/i2.json")"
check "re-run: every point present, nothing new" python3 -c '
import json, sys
p = json.load(open(sys.argv[1]))["points"]
sys.exit(0 if [x["status"] for x in p] == ["present"] * 3 else 1)' "$TMP/i2.json"
check "still three snapshots" test "$(finished "$ds" vm1)" = "$T0 $T1 $T2"

# --- interrupted after the first point, run again
ds=$DS_TMP/ds2
mkfifo "$TMP/out.fifo"
"$TOOL" import --repository "$ds" "$TMP/vm1" >"$TMP/out.fifo" 2>"$TMP/int.err" &
ipid=$!
# One read end for the whole run: reopening the FIFO after the import has
# exited would wait for a writer forever.
exec {ofd}<"$TMP/out.fifo"
read -r -u $ofd first || true
kill -INT $ipid 2>/dev/null || true
cat <&$ofd >/dev/null 2>&1 || true
exec {ofd}<&-
rc=0; wait $ipid || rc=$?
check "interrupted import exits 130 after '$first'" test $rc = 130
n=$(finished "$ds" vm1 | wc -w)
check "interrupted: fewer than three snapshots ($n), none unfinished" \
  sh -c "[ $n -lt 3 ] && ! ls '$ds/vm/vm1' | grep -v owner | while read d; do [ -e '$ds/vm/vm1/'\$d/index.json.blob ] || echo \$d; done | grep -q ."
"$TOOL" import --repository "$ds" "$TMP/vm1" >"$TMP/resume.out" 2>&1 &&
  pass "resumed import exits 0" || fail "resume: $(cat "$TMP/resume.out")"
check "resumed: the same three snapshots" test "$(finished "$ds" vm1)" = "$T0 $T1 $T2"
check "resumed: every point restores" restores_all "$ds" vm1 "$TMP/vm1" sda,sdb $T0 $T1 $T2

# --- the same VM as a .tar and as a .tar.zst (told by content, not name)
tar -C "$TMP/vm1" -cf "$TMP/vm1.tar" .
tar -C "$TMP" -cf - vm1 | zstd -q -o "$TMP/vm1-zst.bin"
mkdir "$TMP/tmpd"
for a in vm1.tar vm1-zst.bin; do
  ds=$DS_TMP/ds-$a
  "$TOOL" import --repository "$ds" --backup-id vm1 --tmpdir "$TMP/tmpd" "$TMP/$a" >"$TMP/a.out" 2>&1 &&
    pass "import of $a" || fail "import of $a: $(cat "$TMP/a.out")"
  check "$a: every point restores" restores_all "$ds" vm1 "$TMP/vm1" sda,sdb $T0 $T1 $T2
  check "$a: the temporary folder is removed" test -z "$(ls -A "$TMP/tmpd")"
  "$TOOL" import --repository "$ds" --backup-id vm1 --tmpdir "$TMP/tmpd" "$TMP/$a" >"$TMP/a2.out" 2>&1
  check "$a: a re-run finds every point present" grep -q '0 stored, 3 present' "$TMP/a2.out"
done

# --- an uncompressed tar is read in place: no temporary byte, no member
# file ever made.  --tmpdir and TMPDIR name folders that do not exist, so
# any attempt to unpack (or to make a temporary folder) would fail.
ds=$DS_TMP/ds-inplace
rc=0; TMPDIR="$TMP/no-such-tmp" "$TOOL" import --repository "$ds" --backup-id vm1 \
  --tmpdir "$TMP/no-such-dir" --output-format json "$TMP/vm1.tar" >"$TMP/ip.json" 2>"$TMP/ip.err" || rc=$?
check "in place: import of the .tar with no usable temporary folder exits 0 ($(head -c 300 "$TMP/ip.err"))" test $rc = 0
check "in place: no temporary folder was made" test ! -e "$TMP/no-such-dir" -a ! -e "$TMP/no-such-tmp"
check "in place: every point restores = qemu-img convert" restores_all "$ds" vm1 "$TMP/vm1" sda,sdb $T0 $T1 $T2
check "in place: the layers are named as members of the archive" python3 -c '
import json, sys
p = json.load(open(sys.argv[1]))["points"]
assert [x["status"] for x in p] == ["stored"] * 3, p
ls = [l for x in p for a in x["archives"] for l in a["layers"]]
import re
assert ls and all(re.match(r"sd[ab]\.qcow2/(FULL|INC)-", l) for l in ls), ls
assert all(a["incremental"] for x in p[1:] for a in x["archives"]), p' "$TMP/ip.json"
mkdir "$TMP/empty-tmp"
"$TOOL" import --repository "$ds" --backup-id vm1 --tmpdir "$TMP/empty-tmp" \
  --output-format json "$TMP/vm1.tar" >"$TMP/ip2.json" 2>&1
check "in place: a re-run of the same tar finds every point present" python3 -c '
import json, sys
p = json.load(open(sys.argv[1]))["points"]
sys.exit(0 if [x["status"] for x in p] == ["present"] * 3 else 1)' "$TMP/ip2.json"
check "in place: the empty --tmpdir stays empty" test -z "$(ls -A "$TMP/empty-tmp")"
"$TOOL" import --dry-run --tmpdir "$TMP/no-such-dir" --backup-id vm1 "$TMP/vm1.tar" >"$TMP/ipd.out" 2>&1 || true
check "in place: the plan needs no temporary space" grep -q "0 B of temporary space" "$TMP/ipd.out"
# the same members in another archive are other files: not present
cp "$TMP/vm1.tar" "$TMP/vm1-copy.tar"
"$TOOL" import --repository "$ds" --backup-id vm1 --output-format json "$TMP/vm1-copy.tar" >"$TMP/ip3.json" 2>&1 || true
check "in place: another archive file is not taken for the one recorded" python3 -c '
import json, sys
p = json.load(open(sys.argv[1]))["points"]
sys.exit(0 if all(x["status"] == "failed" and "other files" in x["reason"] for x in p) else 1)' "$TMP/ip3.json"

# --- a tar with GNU sparse members (tar --sparse: old GNU 'S' headers,
# and pax 1.0) is read in place through the members' sparse maps: no
# temporary folder (--tmpdir and TMPDIR name folders that do not exist)
tar -C "$TMP/vm1" --sparse --format=gnu -cf "$TMP/vm1-sparse.tar" .
tar -C "$TMP/vm1" --sparse --format=posix --sparse-version=1.0 -cf "$TMP/vm1-sparse10.tar" .
check "the sparse tar holds GNU sparse members (type S)" python3 -c '
import sys, tarfile
sys.exit(0 if any(m.type == tarfile.GNUTYPE_SPARSE for m in tarfile.open(sys.argv[1])) else 1)' "$TMP/vm1-sparse.tar"
check "the pax tar holds GNU sparse 1.0 members" python3 -c '
import sys, tarfile
sys.exit(0 if any(m.pax_headers.get("GNU.sparse.major") == "1" for m in tarfile.open(sys.argv[1])) else 1)' "$TMP/vm1-sparse10.tar"
for a in vm1-sparse.tar vm1-sparse10.tar; do
  ds=$DS_TMP/ds-$a
  rc=0; TMPDIR="$TMP/no-such-tmp" "$TOOL" import --repository "$ds" --backup-id vm1 \
    --tmpdir "$TMP/no-such-dir" "$TMP/$a" >"$TMP/sp.out" 2>&1 || rc=$?
  check "$a: import with no usable temporary folder exits 0 ($(tail -1 "$TMP/sp.out"))" test $rc = 0
  check "$a: no temporary folder was made" test ! -e "$TMP/no-such-dir" -a ! -e "$TMP/no-such-tmp"
  check "$a: every point restores = qemu-img convert" restores_all "$ds" vm1 "$TMP/vm1" sda,sdb $T0 $T1 $T2
done
"$TOOL" import --dry-run --tmpdir "$TMP/no-such-dir" --backup-id vm1 "$TMP/vm1-sparse.tar" >"$TMP/spd.out" 2>&1 || true
check "sparse tar: the plan needs no temporary space" grep -q "0 B of temporary space" "$TMP/spd.out"

# --- push --from-archive: members by their paths; refusals name the fix
ds=$DS_TMP/ds-fa
"$TOOL" push --repository "$ds" --backup-id 7 --backup-time $T1 --from-archive "$TMP/vm1.tar" \
  --disk "drive-sda=sda.qcow2/FULL-$T0-sda.qcow2,./sda.qcow2/INC-$T1-sda.qcow2" >"$TMP/fa.out" 2>&1 &&
  pass "push --from-archive" || fail "push --from-archive: $(cat "$TMP/fa.out")"
rm -f "$TMP/r.raw"; "$TOOL" restore --repository "$ds" vm/7/$T1 drive-sda "$TMP/r.raw" 2>/dev/null || true
same_bytes "$TMP/r.raw" "$TMP/vm1.expect/sda-$T1.raw" "push --from-archive: restores = qemu-img convert"
expect_fail "push --from-archive of a compressed archive" "$TOOL" push --repository "$ds" --backup-id 7 \
  --from-archive "$TMP/vm1-zst.bin" --disk "drive-sda=vm1/sda.qcow2/FULL-$T0-sda.qcow2"
expect_fail "push --from-archive of a missing member" "$TOOL" push --repository "$ds" --backup-id 7 \
  --from-archive "$TMP/vm1.tar" --disk "drive-sda=sda.qcow2/FULL-1-sda.qcow2"
"$TOOL" push --repository "$ds" --backup-id 8 --backup-time $T1 --from-archive "$TMP/vm1-sparse.tar" \
  --disk "drive-sda=sda.qcow2/FULL-$T0-sda.qcow2,sda.qcow2/INC-$T1-sda.qcow2" >"$TMP/fa.out" 2>&1 &&
  pass "push --from-archive of GNU sparse members" || fail "push --from-archive, sparse: $(cat "$TMP/fa.out")"
rm -f "$TMP/r.raw"; "$TOOL" restore --repository "$ds" vm/8/$T1 drive-sda "$TMP/r.raw" 2>/dev/null || true
same_bytes "$TMP/r.raw" "$TMP/vm1.expect/sda-$T1.raw" "push --from-archive, sparse members: restores = qemu-img convert"

# --- qmpbackup's <file>.config gives the disk's format for the Proxmox VE
# map line (qemu-server's regex, PVE::QemuServer restore_update_config_line:
# ^\#qmdump\#map:(\S+):(\S+):(\S*):(\S*):$ = key, archive, storage, format)
fixture "$TMP/pv" --disks sda --points 2
python3 -c 'import json, sys; json.dump({"format": "raw", "virtual-size": 1}, open(sys.argv[1], "w"))' \
  "$TMP/pv/sda.qcow2.config"
tar -C "$TMP/pv" -cf "$TMP/pv.tar" .
for src in "$TMP/pv" "$TMP/pv.tar"; do
  ds=$DS_TMP/ds-pve-$(basename "$src")
  "$TOOL" import --repository "$ds" --backup-id 100 --archive-name sda=drive-scsi0 \
    --pve-config auto "$src" >"$TMP/pv.out" 2>&1 &&
    pass "import --pve-config auto of $(basename "$src")" || fail "pve import: $(cat "$TMP/pv.out")"
  rm -f "$TMP/conf"
  "$TOOL" restore --repository "$ds" vm/100/$T1 qemu-server.conf "$TMP/conf" 2>/dev/null || true
  check "$(basename "$src"): the map line's format is the .config's (raw)" python3 -c '
import re, sys
lines = open(sys.argv[1], "rb").read().decode().split("\n")
m = [re.match(r"^\#qmdump\#map:(\S+):(\S+):(\S*):(\S*):$", l) for l in lines if l.startswith("#qmdump#map:")]
assert len(m) == 1 and m[0], lines
assert m[0].group(1) == "scsi0" and m[0].group(2) == "drive-scsi0" and m[0].group(4) == "raw", m[0].groups()' "$TMP/conf"
done
head -c 300000 "$TMP/vm1.tar" >"$TMP/cut.tar"
ds=$DS_TMP/ds-cut
expect_fail "a truncated archive" "$TOOL" import --repository "$ds" --tmpdir "$TMP/tmpd" "$TMP/cut.tar"
check "truncated archive: no snapshot, no datastore, no temporary files" \
  sh -c "[ ! -e '$ds' ] && [ -z \"\$(ls -A '$TMP/tmpd')\" ]"

# --- monthly folders: each month starts a new chain in the same group
fixture "$TMP/vm2" --disks sda --points 4 --monthly 2
ds=$DS_TMP/ds3
"$TOOL" import --repository "$ds" "$TMP/vm2" >"$TMP/m.out" 2>&1 &&
  pass "import of monthly folders" || fail "monthly: $(cat "$TMP/m.out")"
check "monthly: four snapshots" test "$(finished "$ds" vm2)" = "$T0 $T1 $T2 $T3"
check "monthly: every point restores" restores_all "$ds" vm2 "$TMP/vm2" sda $T0 $T1 $T2 $T3

# --- a .partial point: it and the later points of its chain are skipped
fixture "$TMP/vm3" --disks sda --points 3 --partial sda:1
ds=$DS_TMP/ds4
rc=0; "$TOOL" import --repository "$ds" --output-format json "$TMP/vm3" >"$TMP/p.json" 2>&1 || rc=$?
check "partial: exit 0 (nothing failed)" test $rc = 0
check "partial: first stored, the .partial point and the one after skipped, saying why" python3 -c '
import json, sys
p = json.load(open(sys.argv[1]))["points"]
assert [x["status"] for x in p] == ["stored", "skipped", "skipped"], p
assert ".partial" in p[1]["reason"] and ".partial" in p[2]["reason"], p' "$TMP/p.json"
check "partial: the first point restores" restores_all "$ds" vm3 "$TMP/vm3" sda $T0

# --- the --no-subdir layout
fixture "$TMP/vm4" --disks sda,sdb --points 2 --flat
ds=$DS_TMP/ds5
"$TOOL" import --repository "$ds" "$TMP/vm4" >"$TMP/f.out" 2>&1 &&
  pass "import of the flat layout" || fail "flat: $(cat "$TMP/f.out")"
check "flat: every point restores" restores_all "$ds" vm4 "$TMP/vm4" sda,sdb $T0 $T1

# --- a folder with two VMs, --jobs 2
mkdir "$TMP/mix"
fixture "$TMP/mix/web" --disks sda --points 2
fixture "$TMP/mix/db" --disks sda,sdb --points 2
mv "$TMP/mix/web.expect" "$TMP/mix/db.expect" "$TMP/"
ds=$DS_TMP/ds6
"$TOOL" import --repository "$ds" --jobs 2 "$TMP/mix" >"$TMP/j.out" 2>&1 &&
  pass "two VMs with --jobs 2" || fail "jobs: $(cat "$TMP/j.out")"
check "two groups: web" test "$(finished "$ds" web)" = "$T0 $T1"
check "two groups: db" test "$(finished "$ds" db)" = "$T0 $T1"
check "web restores" restores_all "$ds" web "$TMP/web" sda $T0 $T1
check "db restores" restores_all "$ds" db "$TMP/db" sda,sdb $T0 $T1

# --- --shard splits a set: no group twice, none missing
mkdir "$TMP/set"
for v in alpha beta gamma delta epsilon zeta eta theta; do
  mkdir "$TMP/set/$v"
  qemu-img create -q -f qcow2 "$TMP/set/$v/disk-20231114T221320.qcow2" 1M
done
all=$("$TOOL" import --dry-run --output-format json "$TMP/set" | python3 -c '
import json, sys; print(" ".join(sorted({p["backup-id"] for p in json.load(sys.stdin)["points"]})))')
got=
for k in 1 2 3; do
  got="$got $("$TOOL" import --dry-run --shard $k/3 --output-format json "$TMP/set" | python3 -c '
import json, sys; print(" ".join(sorted({p["backup-id"] for p in json.load(sys.stdin)["points"]})))')"
done
check "the set has 8 groups" test "$(echo $all | wc -w)" = 8
check "shards 1..3 of 3 hold every group once" test "$(echo $got | tr ' ' '\n' | sort | paste -sd' ')" = "$all"

# --- bad input: a clear reason per point, nothing half-made
fixture "$TMP/bad" --disks sda --points 3
rm "$TMP/bad/sda.qcow2/FULL-$T0-sda.qcow2"
ds=$DS_TMP/ds7
rc=0; "$TOOL" import --repository "$ds" --output-format json "$TMP/bad" >"$TMP/b.json" 2>&1 || rc=$?
check "INC without a FULL: exit 1" test $rc = 1
check "INC without a FULL: the points fail saying so" python3 -c '
import json, sys
p = json.load(open(sys.argv[1]))["points"]
assert all(x["status"] == "failed" and "without a FULL" in x["reason"] for x in p), p' "$TMP/b.json"
check "INC without a FULL: no snapshot" test -z "$(finished "$ds" bad 2>/dev/null)"

# --- chains linked by backing pointers: every layer is a point
mkdir "$TMP/lk"
qemu-img create -q -f qcow2 "$TMP/lk/base-20231114T221320.qcow2" 8M
qemu-io -c 'write -P 0x51 0 1M' "$TMP/lk/base-20231114T221320.qcow2" >/dev/null
qemu-img create -q -f qcow2 -b base-20231114T221320.qcow2 -F qcow2 "$TMP/lk/top-20231114T221500.qcow2"
qemu-io -c 'write -P 0x52 2M 1M' "$TMP/lk/top-20231114T221500.qcow2" >/dev/null
qemu-img convert -O raw "$TMP/lk/base-20231114T221320.qcow2" "$TMP/lk0.raw"
qemu-img convert -O raw "$TMP/lk/top-20231114T221500.qcow2" "$TMP/lk1.raw"
ds=$DS_TMP/ds8
"$TOOL" import --repository "$ds" "$TMP/lk" >"$TMP/lk.out" 2>&1 &&
  pass "import of a backing-linked chain" || fail "linked: $(cat "$TMP/lk.out")"
check "linked: two points with the times in the names" test "$(finished "$ds" lk)" = "$T0 $T1"
rm -f "$TMP/r.raw"; "$TOOL" restore --repository "$ds" vm/lk/$T1 drive-scsi0 "$TMP/r.raw" 2>/dev/null || true
same_bytes "$TMP/r.raw" "$TMP/lk1.raw" "linked: the top point restores = qemu-img convert"
# a gap: the middle layer is gone
mkdir "$TMP/gap"
qemu-img create -q -f qcow2 "$TMP/gap/a.qcow2" 1M
qemu-img create -q -f qcow2 -u -b b.qcow2 -F qcow2 "$TMP/gap/c.qcow2" 1M
rc=0; "$TOOL" import --repository "$ds" --backup-id gap --output-format json "$TMP/gap" >"$TMP/g.json" 2>&1 || rc=$?
check "a gap in a linked chain: exit 1, the point names the missing file" python3 -c '
import json, sys
p = json.load(open(sys.argv[1]))["points"]
assert any(x["status"] == "failed" and "b.qcow2" in x["reason"] for x in p), p' "$TMP/g.json"

# --- a disk missing at the newest point (a run still being copied): that
# point is skipped, not stored without the disk; --allow-missing-disks
# takes it as it is
cp -a "$TMP/vm1" "$TMP/inc1"
rm "$TMP/inc1/sdb.qcow2/INC-$T2-sdb.qcow2"
ds=$DS_TMP/ds-inc
rc=0; "$TOOL" import --repository "$ds" --output-format json "$TMP/inc1" >"$TMP/inc.json" 2>&1 || rc=$?
check "incomplete point: skipped with the disk named, exit 0" python3 -c '
import json, sys
p = json.load(open(sys.argv[1]))["points"]
assert [x["status"] for x in p] == ["stored", "stored", "skipped"], p
assert "disk sdb" in p[2]["reason"], p' "$TMP/inc.json"
check "incomplete point: no snapshot lacking sdb" test "$(finished "$ds" inc1)" = "$T0 $T1"
"$TOOL" import --repository "$ds" --allow-missing-disks "$TMP/inc1" >/dev/null 2>&1
check "--allow-missing-disks stores it with sda only" test "$(finished "$ds" inc1)" = "$T0 $T1 $T2"
expect_fail "a qcow2 image given as SOURCE" "$TOOL" import --repository "$ds" "$TMP/vm1/sda.qcow2/FULL-$T0-sda.qcow2"
check "  ... says to use push" grep -q 'qcow2pbs push' "$TMP/ef.err"

# --- points older than the group's newest snapshot cannot be added
ds=$DS_TMP/ds9
"$TOOL" push --repository "$ds" --backup-id vm1 --backup-time $((T0 + 1000)) "$TMP/lk/base-20231114T221320.qcow2" >/dev/null 2>&1
rc=0; "$TOOL" import --repository "$ds" --output-format json "$TMP/vm1" >"$TMP/o.json" 2>&1 || rc=$?
check "older points: skipped with the reason, exit 0" python3 -c '
import json, sys
p = json.load(open(sys.argv[1]))["points"]
assert all(x["status"] == "skipped" and "newest snapshot" in x["reason"] for x in p), p' "$TMP/o.json"
check "older points: exit 0" test $rc = 0
# --- --pve-config needs a VMID: a folder name that is none is refused
# before any point, with one line naming the folder (not once per point
# with push's message)
ds=$DS_TMP/ds10
rc=0; "$TOOL" import --repository "$ds" --pve-config auto --archive-name sda=drive-scsi0 \
  --archive-name sdb=drive-scsi1 "$TMP/vm1" >"$TMP/pv.out" 2>"$TMP/pv.err" || rc=$?
check "pve-config, folder name no VMID: exit 1, one line naming the folder and --backup-id" \
  test $rc = 1 -a "$(wc -l <"$TMP/pv.err")" = 1 -a ! -s "$TMP/pv.out"
check "pve-config, folder name no VMID: the message" \
  grep -q "^qcow2pbs: $TMP/vm1: its group id 'vm1' is not numeric.*--backup-id" "$TMP/pv.err"
check "pve-config, folder name no VMID: no snapshot" test ! -e "$ds/vm"
rc=0; "$TOOL" import --repository "$ds" --backup-type host --pve-config auto \
  "$TMP/vm1" >"$TMP/pv.out" 2>"$TMP/pv.err" || rc=$?
check "pve-config with --backup-type host: usage error (exit 2), no snapshot" \
  test $rc = 2 -a ! -e "$ds/host"
done_testing
