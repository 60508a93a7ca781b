#!/bin/bash
# test-import-layouts.sh -- an archive is grouped exactly as the folder it
# unpacks to (issue 8): for each backup layout (qmpbackup's per-disk
# folders, old node-named disk folders, --no-subdir, --monthly, a folder
# of several VMs, the issue's own example) the dry-run plan of the folder
# must equal that of its tar (read in place) and of its tar.zst / tar.gz
# (streamed), for tars made with a top folder (`tar cf x.tar vm1`,
# `tar cf x.tar ./vm1`), from inside the folder (`tar -C vm1 -cf x.tar .`)
# and of the folder's entries (`tar -C vm1 -cf x.tar a b`).  Groups,
# backup-ids, points, times, archive names and layer names must match;
# only where the layers lie differs.  The groups expected are written
# here from each layout.  One layout is imported from its tar and every
# snapshot restored byte-identical to `qemu-img convert` of its chain.
. "$(dirname "$0")/../helpers/functions.sh"
requires qemu-img
requires qemu-io
requires python3
requires zstd
[ -x "$TOOL" ] || skip "qcow2pbs not built"
T0=1700000000 T1=1700000100 T2=1700000200 T3=1700000300
EXP=$TMP/expect
mkdir -p "$TMP/work" "$EXP" "$TMP/tmpd"

# disk OUTDIR FILE KEY T...: a chain of one disk as qmpbackup leaves it:
# OUTDIR/FULL-<t>-FILE at the first T, INC-<t>-FILE after, without backing
# pointers (qmpbackup's INC files have none).  Each point's disk, from
# `qemu-img convert` of the chain while its pointers are there, goes to
# $EXP/KEY-T.raw.
disk () {
  local out=$1 file=$2 key=$3 t prev="" k=0 kind w
  shift 3
  mkdir -p "$out"
  for t in "$@"; do
    w=$TMP/work/$key-$t.qcow2
    if [ -z "$prev" ]; then
      qemu-img create -q -f qcow2 "$w" 8M
    else
      qemu-img create -q -f qcow2 -b "$prev" -F qcow2 "$w"
      qemu-io -c "write -z $(( (k + 3) % 8 ))M 256k" "$w" >/dev/null
    fi
    qemu-io -c "write -P $((0x20 + k)) $((k % 8))M 384k" "$w" >/dev/null
    qemu-img convert -O raw "$w" "$EXP/$key-$t.raw"
    prev=$w
    k=$((k + 1))
  done
  kind=FULL
  for t in "$@"; do
    cp "$TMP/work/$key-$t.qcow2" "$out/$kind-$t-$file"
    qemu-img rebase -u -b "" "$out/$kind-$t-$file"
    touch -d "@$t" "$out/$kind-$t-$file"
    kind=INC
  done
}
# side DIR FILE...: qmpbackup's side files of a backup folder (uuid, and
# <file>.config: qemu-img info --output json of the original disk).
side () {
  local d=$1 f
  shift
  echo 4b4d6b1e-0000-4000-8000-000000000001 >"$d/uuid"
  for f in "$@"; do
    echo '{"format": "qcow2", "virtual-size": 8388608}' >"$d/$f.config"
  done
}

L=$TMP/L
# vmdir: qmpbackup since 2026-01 (a8723aa): a folder per disk named after
# the disk's image file.
disk "$L/vmdir/vm1/sda.qcow2" sda.qcow2 vmdir-vm1-sda $T0 $T1 $T2
disk "$L/vmdir/vm1/sdb.qcow2" sdb.qcow2 vmdir-vm1-sdb $T0 $T1 $T2
side "$L/vmdir/vm1" sda.qcow2 sdb.qcow2
# nodedir: qmpbackup before that: a folder per disk named after the QEMU
# node, the files after the image file.
disk "$L/nodedir/vm1/drive0" sda.qcow2 nodedir-vm1-drive0 $T0 $T1
disk "$L/nodedir/vm1/drive1" sdb.qcow2 nodedir-vm1-drive1 $T0 $T1
side "$L/nodedir/vm1" sda.qcow2 sdb.qcow2
# flat: --no-subdir.
disk "$L/flat/vm1" sda.qcow2 flat-vm1-sda $T0 $T1 $T2
disk "$L/flat/vm1" sdb.qcow2 flat-vm1-sdb $T0 $T1 $T2
side "$L/flat/vm1" sda.qcow2 sdb.qcow2
# monthly: --monthly, each month its own uuid, configs and chains.
disk "$L/monthly/vm1/2023-11/sda.qcow2" sda.qcow2 monthly-vm1-sda-a $T0 $T1
disk "$L/monthly/vm1/2023-12/sda.qcow2" sda.qcow2 monthly-vm1-sda-b $T2 $T3
side "$L/monthly/vm1/2023-11" sda.qcow2
side "$L/monthly/vm1/2023-12" sda.qcow2
# vms: a folder of VM folders (flat; per-disk folders; no side files).
disk "$L/vms/vms/vm1" sda.qcow2 vms-vm1-sda $T0 $T1 $T2
side "$L/vms/vms/vm1" sda.qcow2
disk "$L/vms/vms/vm2/sda.qcow2" sda.qcow2 vms-vm2-sda $T0 $T1
disk "$L/vms/vms/vm2/sdb.qcow2" sdb.qcow2 vms-vm2-sdb $T0 $T1
side "$L/vms/vms/vm2" sda.qcow2 sdb.qcow2
disk "$L/vms/vms/vm3" disk.qcow2 vms-vm3-disk $T0
# onedisk: one disk folder and nothing else (side files left behind):
# `tar -C vm1 -cf vm1.tar .` stores ./sda.qcow2/... under the member "./",
# the archive's root, which is the VM folder, not sda.qcow2/.
disk "$L/onedisk/vm1/sda.qcow2" sda.qcow2 onedisk-vm1-sda $T0 $T1
# issue: the issue's example, as given.
mkdir -p "$L/issue/vms/vm1" "$L/issue/vms/vm2"
for v in vm1 vm2; do
  qemu-img create -q -f qcow2 "$L/issue/vms/$v/FULL-1700000000-disk.qcow2" 16M
done

# The groups each layout must give: "id:archive,archive ..." per group.
declare -A WANT=(
  [vmdir]="vm1:drive-sda.img.fidx,drive-sdb.img.fidx"
  [nodedir]="vm1:drive-drive0.img.fidx,drive-drive1.img.fidx"
  [flat]="vm1:drive-sda.img.fidx,drive-sdb.img.fidx"
  [monthly]="vm1:drive-sda.img.fidx"
  [onedisk]="vm1:drive-sda.img.fidx"
  [vms]="vm1:drive-sda.img.fidx vm2:drive-sda.img.fidx,drive-sdb.img.fidx vm3:drive-disk.img.fidx"
  [issue]="vm1:drive-disk.img.fidx vm2:drive-disk.img.fidx"
)
declare -A NAME=([vmdir]=vm1 [nodedir]=vm1 [flat]=vm1 [monthly]=vm1 [onedisk]=vm1 [vms]=vms [issue]=vms)

# norm.py JSON PREFIX-REGEX: the plan without where its layers lie: each
# layer path must start with PREFIX (the SOURCE folder), which is cut.
cat >"$TMP/norm.py" <<'EOF'
import json, re, sys
plan = json.load(open(sys.argv[1]))
pre = re.compile(sys.argv[2])
out = []
for p in plan["points"]:
    arch = []
    for a in p["archives"]:
        lay = []
        for l in a["layers"]:
            m = pre.match(l)
            lay.append(l[m.end():] if m else "NOT BELOW THE SOURCE: " + l)
        arch.append({"name": a["name"], "layers": lay})
    out.append({"id": p["backup-id"], "time": p["time"],
                "status": p["status"], "time-from": p["time-from"],
                "reason": p["reason"] is not None,
                "read-bytes": p["read-bytes"], "archives": arch})
out.sort(key=lambda p: (p["id"], p["time"]))
print(json.dumps(out, indent=1, sort_keys=True))
EOF
# groups.py NORMALISED: "id:archive,archive ..." (archives of all points).
cat >"$TMP/groups.py" <<'EOF'
import json, sys
g = {}
for p in json.load(open(sys.argv[1])):
    g.setdefault(p["id"], set()).update(a["name"] for a in p["archives"])
print(" ".join("%s:%s" % (i, ",".join(sorted(g[i]))) for i in sorted(g)))
EOF

plan () { # OUT SOURCE PREFIX-REGEX: the normalised dry-run plan
  local rc=0
  "$TOOL" import --dry-run --output-format json --tmpdir "$TMP/tmpd" "$2" \
    >"$TMP/plan.json" 2>"$TMP/plan.err" || rc=$?
  if [ $rc != 0 ]; then
    echo "exit $rc: $(head -c 300 "$TMP/plan.err")" >"$1"
    return
  fi
  python3 "$TMP/norm.py" "$TMP/plan.json" "$3" >"$1"
}
same_plan () { # DESCRIPTION FOLDER-PLAN FORM-PLAN
  if cmp -s "$2" "$3"; then pass "$1"
  else fail "$1: $(diff "$2" "$3" | head -12 | tr '\n' ' ')"; fi
}
esc () { python3 -c 'import re, sys; print(re.escape(sys.argv[1]))' "$1"; }
STREAM='.*/qcow2pbs-import\.[^/]+/'

for lay in vmdir nodedir flat monthly onedisk vms issue; do
  n=${NAME[$lay]} root=$L/$lay a=$TMP/A/$lay
  mkdir -p "$a/top" "$a/dottop" "$a/dot" "$a/list"
  plan "$TMP/$lay.folder" "$root/$n" "$(esc "$root/$n/")"
  got=$(python3 "$TMP/groups.py" "$TMP/$lay.folder" 2>&1 || head -c 200 "$TMP/$lay.folder")
  check "$lay: folder $n gives the groups $(echo ${WANT[$lay]}) (got: $got)" \
    test "$got" = "${WANT[$lay]}"
  # The same tree, archived four ways; each .tar also compressed.
  tar -C "$root" -cf "$a/top/$n.tar" "$n"
  tar -C "$root" -cf "$a/dottop/$n.tar" "./$n"
  tar -C "$root/$n" -cf "$a/dot/$n.tar" .
  (cd "$root/$n" && tar -cf "$a/list/$n.tar" *)
  for f in top dottop dot list; do
    zstd -q -c "$a/$f/$n.tar" >"$a/$f/$n.tar.zst"
  done
  gzip -c "$a/dot/$n.tar" >"$a/dot/$n.tar.gz"
  for f in top dottop; do
    if [ $f = top ]; then how="tar cf $n.tar $n"; else how="tar cf $n.tar ./$n"; fi
    plan "$TMP/$lay.$f.tar" "$a/$f/$n.tar" "$(esc "$a/$f/$n.tar/$n/")"
    same_plan "$lay: $how, read in place, is planned as the folder" \
      "$TMP/$lay.folder" "$TMP/$lay.$f.tar"
    plan "$TMP/$lay.$f.zst" "$a/$f/$n.tar.zst" "$STREAM$(esc "$n/")"
    same_plan "$lay: its .tar.zst (streamed) too" "$TMP/$lay.folder" "$TMP/$lay.$f.zst"
  done
  for f in dot list; do
    # onedisk's entries are its one folder: that archive unpacks to
    # sda.qcow2/, not to the VM folder.
    [ $lay.$f = onedisk.list ] && continue
    plan "$TMP/$lay.$f.tar" "$a/$f/$n.tar" "$(esc "$a/$f/$n.tar/")"
    if [ $f = dot ]; then how="tar -C $n -cf $n.tar ."; else how="tar -C $n -cf $n.tar <its entries>"; fi
    same_plan "$lay: $how, read in place, is planned as the folder" \
      "$TMP/$lay.folder" "$TMP/$lay.$f.tar"
    plan "$TMP/$lay.$f.zst" "$a/$f/$n.tar.zst" "$STREAM"
    same_plan "$lay: its .tar.zst (streamed) too" "$TMP/$lay.folder" "$TMP/$lay.$f.zst"
  done
  plan "$TMP/$lay.dot.gz" "$a/dot/$n.tar.gz" "$STREAM"
  same_plan "$lay: the .tar.gz made in the folder (streamed) too" \
    "$TMP/$lay.folder" "$TMP/$lay.dot.gz"
done

# The plan's text says which folder of the archive is the SOURCE.
"$TOOL" import --dry-run --tmpdir "$TMP/tmpd" "$TMP/A/issue/top/vms.tar" >"$TMP/t.out" 2>&1 || true
check "the text plan names the archive's top folder as the source ($(grep '^group' "$TMP/t.out" | head -2 | tr '\n' ' '))" \
  grep -q "^group vm/vm1 from .*vms.tar:vms/vm1:" "$TMP/t.out"
"$TOOL" import --dry-run --tmpdir "$TMP/tmpd" "$TMP/A/vmdir/dot/vm1.tar" >"$TMP/t.out" 2>&1 || true
check "... and the archive itself when it has no top folder ($(grep '^group' "$TMP/t.out" | tr '\n' ' '))" \
  grep -q "^group vm/vm1 from .*/dot/vm1.tar:" "$TMP/t.out"

# The real import of the folder of VMs from its tar (read in place) and
# from its tar.zst (streamed), every snapshot restored and compared with
# qemu-img convert of its chain.
for a in vms.tar vms.tar.zst; do
  ds=$DS_TMP/ds-$a
  rc=0
  "$TOOL" import --repository "$ds" --output-format json --tmpdir "$TMP/tmpd" \
    "$TMP/A/vms/top/$a" >"$TMP/imp.json" 2>"$TMP/imp.err" || rc=$?
  check "$a: the import exits 0 ($(head -c 300 "$TMP/imp.err"))" test $rc = 0
  check "$a: 6 points stored" python3 -c '
import json, sys
p = json.load(open(sys.argv[1]))["points"]
assert [x["status"] for x in p].count("stored") == 6 == len(p), p' "$TMP/imp.json"
  bad=0 n=0
  for spec in vm1:sda:$T0 vm1:sda:$T1 vm1:sda:$T2 vm2:sda:$T0 vm2:sda:$T1 \
              vm2:sdb:$T0 vm2:sdb:$T1 vm3:disk:$T0; do
    IFS=: read -r id d t <<<"$spec"
    rm -f "$TMP/r.raw"
    n=$((n + 1))
    if ! "$TOOL" restore --repository "$ds" "vm/$id/$t" "drive-$d" "$TMP/r.raw" 2>"$TMP/r.err" ||
       ! cmp -s "$TMP/r.raw" "$EXP/vms-$id-$d-$t.raw"; then
      bad=1
      echo "# vm/$id/$t drive-$d differs: $(head -c 200 "$TMP/r.err")"
    fi
  done
  check "$a: all $n disks of the 6 snapshots restore byte-identical to qemu-img convert of their chains" \
    test $bad = 0
  "$TOOL" import --repository "$ds" --output-format json --tmpdir "$TMP/tmpd" \
    "$TMP/A/vms/top/$a" >"$TMP/imp2.json" 2>"$TMP/imp2.err" || true
  check "$a: a re-run finds the 6 points present ($(head -c 200 "$TMP/imp2.err"))" python3 -c '
import json, sys
p = json.load(open(sys.argv[1]))["points"]
assert [x["status"] for x in p].count("present") == 6 == len(p), p' "$TMP/imp2.json"
done
# A top folder without backups is said as the SOURCE it is.
mkdir -p "$TMP/E/notes" && echo hello >"$TMP/E/notes/README"
tar -C "$TMP/E" -cf "$TMP/E/notes.tar" notes
expect_fail "a tar whose top folder holds no backups" \
  "$TOOL" import --dry-run "$TMP/E/notes.tar"
check "... names the folder in it" grep -q "notes.tar:notes: no backups found" "$TMP/ef.err"
done_testing
