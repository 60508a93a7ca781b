#!/bin/bash
# test-import-stream.sh -- import of compressed archives reads the data
# once, as a stream: a group runs as soon as its members have arrived and
# its members are deleted when it is done, so the temporary folder holds
# about one group, not the archive (issue 8).  Golden data: qmpbackup
# chains made by real blockdev-backup jobs (tests/helpers/qmpbackup_fixture.py),
# each point restoring byte-identical to `qemu-img convert` of its chain;
# the temporary space a schedule needs is computed here, in Python, from
# the archive itself (tarfile: member order, non-zero 4 KiB pages).
. "$(dirname "$0")/../helpers/functions.sh"
requires qemu-img
requires qemu-system-x86_64
requires python3
requires zstd
requires xz
[ -x "$TOOL" ] || skip "qcow2pbs not built"
fixture () { python3 "$top/tests/helpers/qmpbackup_fixture.py" "$@"; }
T0=1700000000 T1=1700000100 T2=1700000200

restores_all () { # DS ID FIXTURE DISK T...
  local ds=$1 id=$2 fx=$3 d=$4 t bad=0
  shift 4
  for t in "$@"; do
    rm -f "$TMP/r.raw"
    if ! "$TOOL" restore --repository "$ds" "vm/$id/$t" "drive-$d" "$TMP/r.raw" 2>"$TMP/r.err" ||
       ! cmp -s "$TMP/r.raw" "$fx.expect/$d-$t.raw"; then
      bad=1; echo "# $id point $t differs: $(cat "$TMP/r.err")"
    fi
  done
  return $bad
}
finished () { "$TOOL" snapshots --repository "$1" --output-format json | python3 -c '
import json, sys
print(" ".join(str(s["backup-time"]) for s in json.load(sys.stdin) if s["backup-id"] == sys.argv[1] and "size" in s))' "$2"; }
no_unfinished () { # DS: every snapshot folder has its manifest
  ! find "$1/vm" -mindepth 2 -maxdepth 2 -type d 2>/dev/null | while read -r d; do
    [ -e "$d/index.json.blob" ] || echo "$d"; done | grep -q .
}

# Two VMs (two groups), three points each.
mkdir "$TMP/set"
fixture "$TMP/set/vmA" --disks sda --points 3
fixture "$TMP/set/vmB" --disks sda --points 3
mv "$TMP/set/vmA.expect" "$TMP/set/vmB.expect" "$TMP/"
# Member order: vmA then vmB; and interleaved: A's FULL, all of B, A's rest.
( cd "$TMP/set" && find vmA -type f | sort >"$TMP/order-ab" && find vmB -type f | sort >>"$TMP/order-ab" &&
  { grep '^vmA/.*FULL' "$TMP/order-ab"; grep '^vmB/' "$TMP/order-ab";
    grep '^vmA/' "$TMP/order-ab" | grep -v FULL; } >"$TMP/order-aba" )
tar -C "$TMP/set" --no-recursion -cf "$TMP/ab.tar" -T "$TMP/order-ab"
tar -C "$TMP/set" --no-recursion -cf "$TMP/aba.tar" -T "$TMP/order-aba"
gzip -c "$TMP/ab.tar" >"$TMP/ab.tar.gz"
zstd -q -c "$TMP/ab.tar" >"$TMP/ab.tar.zst"
xz -c "$TMP/ab.tar" >"$TMP/ab.tar.xz"
gzip -c "$TMP/aba.tar" >"$TMP/aba.tar.gz"

# expected_peak TAR JOBS: the most the stream's folder holds (bytes of the
# non-zero 4 KiB pages of the images present at once): the members of
# groups not complete, the group completing now, and up to JOBS-1 groups
# completed before; plus the members' count (the skeleton bound: at most
# 64 KiB each).
expected_peak () { python3 - "$@" <<'PY'
import sys, tarfile
tar, jobs = sys.argv[1], int(sys.argv[2])
def pages(f, size):
    n, off, last = 0, 0, -1
    while off < size:
        b = f.read(4096)
        if b.strip(b"\0"):
            n += 4096
        off += len(b)
    return n
members = []
with tarfile.open(tar) as t:
    for m in t:
        if m.isfile():
            members.append((m.name, pages(t.extractfile(m), m.size)))
imgs = [(n, p) for n, p in members if "/sda.qcow2/" in n]
need = {}
for n, p in imgs:
    need.setdefault(n.split("/")[0], set()).add(n)
gbytes = {g: sum(p for n, p in imgs if n in s) for g, s in need.items()}
arrived, done, peak = set(), [], 0
for n, p in imgs:
    arrived.add(n)
    now = [g for g, s in need.items() if n in s and s <= arrived]
    before = sorted((gbytes[g] for g in done), reverse=True)[:jobs - 1]
    partial = sum(q for m, q in imgs if m in arrived and not any(m in need[g] for g in done + now))
    peak = max(peak, partial + sum(gbytes[g] for g in now) + sum(before))
    done += now
print(peak, len(members))
PY
}
whole=$(du -sB1 "$TMP/set" | cut -f1)
read -r peak_ab nmem < <(expected_peak "$TMP/ab.tar" 1)
read -r peak_aba _ < <(expected_peak "$TMP/aba.tar" 1)
echo "# unpacked set: $whole bytes; one group at a time: $peak_ab; A,B,A order: $peak_aba; $nmem members"
check "the test's premise: one group at a time needs much less than the whole set" \
  test $((peak_ab + nmem * 65536)) -lt $((whole * 3 / 4))

# A temporary folder with room for one group but not for the archive: a
# tmpfs of that size when we may mount one, else a plain folder (then
# only the polled usage below is checked).
tmpd=$TMP/tmpd
mkdir "$tmpd"
room=$(( (peak_ab + nmem * 65536 + 1048576 + 4095) / 4096 * 4096 ))
small=no
if [ "$(id -u)" = 0 ] && mount -t tmpfs -o size=$room tmpfs "$tmpd" 2>/dev/null; then
  small=yes
  cleanup_fn "umount '$tmpd'"
fi
echo "# --tmpdir on a tmpfs of $room bytes: $small"

# poll_peak PID FILE: the largest usage of $tmpd seen while PID runs
poll_peak () {
  local max=0 u
  while kill -0 "$1" 2>/dev/null; do
    u=$(du -sB1 "$tmpd" 2>/dev/null | cut -f1) || u=0
    [ "${u:-0}" -gt $max ] && max=$u
    sleep 0.05
  done
  echo $max >"$2"
}

for a in ab.tar.gz ab.tar.zst ab.tar.xz; do
  ds=$DS_TMP/ds-$a
  rc=0; "$TOOL" import --dry-run --output-format json --tmpdir "$tmpd" "$TMP/$a" >"$TMP/dry.json" 2>"$TMP/dry.err" || rc=$?
  check "$a: dry run exits 0 ($(head -c 300 "$TMP/dry.err"))" test $rc = 0
  check "$a: the plan's temporary space covers the schedule and is not the archive's" python3 -c '
import json, sys
t = json.load(open(sys.argv[1]))["temporary-bytes"]
peak, n = int(sys.argv[2]), int(sys.argv[3])
assert peak <= t <= peak + n * (65536 + 4096), (t, peak, n)' "$TMP/dry.json" $peak_ab $nmem
  check "$a: dry run leaves the temporary folder empty, no datastore" \
    sh -c "[ -z \"\$(ls -A '$tmpd' | grep -v lost+found)\" ] && [ ! -e '$ds' ]"
  "$TOOL" import --repository "$ds" --tmpdir "$tmpd" --output-format json "$TMP/$a" >"$TMP/i.json" 2>"$TMP/i.err" &
  ipid=$!
  poll_peak $ipid "$TMP/peak"
  rc=0; wait $ipid || rc=$?
  check "$a: import exits 0 with --tmpdir room for one group ($(head -c 300 "$TMP/i.err"))" test $rc = 0
  check "$a: six points stored" python3 -c '
import json, sys
p = json.load(open(sys.argv[1]))["points"]
assert sorted((x["backup-id"], x["status"]) for x in p) == [("vmA", "stored")] * 3 + [("vmB", "stored")] * 3, p' "$TMP/i.json"
  check "$a: vmA restores = qemu-img convert" restores_all "$ds" vmA "$TMP/vmA" sda $T0 $T1 $T2
  check "$a: vmB restores = qemu-img convert" restores_all "$ds" vmB "$TMP/vmB" sda $T0 $T1 $T2
  check "$a: temporary usage seen ($(cat "$TMP/peak")) within the plan" python3 -c '
import json, sys
assert int(open(sys.argv[1]).read()) <= json.load(open(sys.argv[2]))["temporary-bytes"] + 65536' "$TMP/peak" "$TMP/dry.json"
  check "$a: the temporary folder is removed" sh -c "[ -z \"\$(ls -A '$tmpd')\" ]"
  "$TOOL" import --repository "$ds" --tmpdir "$tmpd" "$TMP/$a" >"$TMP/re.out" 2>&1 || true
  check "$a: a re-run finds every point present" grep -q '0 stored, 6 present' "$TMP/re.out"
done

# --- the whole archive does not fit: refused before any work
if [ $small = yes ]; then
  check "the unpacked set would not fit the tmpfs ($whole > $room)" test "$whole" -gt "$room"
fi
ds=$DS_TMP/ds-tight
mkdir "$TMP/tight"
if [ "$(id -u)" = 0 ] && mount -t tmpfs -o size=$(( (peak_ab / 2 + nmem * 65536 + 4095) / 4096 * 4096 )) tmpfs "$TMP/tight" 2>/dev/null; then
  cleanup_fn "umount '$TMP/tight'"
  expect_fail "too little temporary space for one group" "$TOOL" import --repository "$ds" --tmpdir "$TMP/tight" "$TMP/ab.tar.gz"
  check "  ... says how much and what to do" grep -q 'temporary space.*--tmpdir' "$TMP/ef.err"
  check "  ... before any work: no datastore made, the folder left empty" \
    sh -c "[ ! -e '$ds/vm' ] && [ -z \"\$(ls -A '$TMP/tight')\" ]"
fi

# --- interleaved member order (A, B, A): B runs first, A once complete
ds=$DS_TMP/ds-aba
"$TOOL" import --dry-run --output-format json --tmpdir "$TMP" "$TMP/aba.tar.gz" >"$TMP/dry2.json" 2>&1 || true
check "A,B,A: the plan's temporary space covers A's FULL held while B runs" python3 -c '
import json, sys
t = json.load(open(sys.argv[1]))["temporary-bytes"]
peak, n = int(sys.argv[2]), int(sys.argv[3])
assert peak <= t <= peak + n * (65536 + 4096), (t, peak, n)' "$TMP/dry2.json" $peak_aba $nmem
mkdir "$TMP/tmpd2"
rc=0; "$TOOL" import --repository "$ds" --tmpdir "$TMP/tmpd2" "$TMP/aba.tar.gz" >"$TMP/aba.out" 2>&1 || rc=$?
check "A,B,A: import exits 0 ($(tail -1 "$TMP/aba.out"))" test $rc = 0
check "A,B,A: vmA restores" restores_all "$ds" vmA "$TMP/vmA" sda $T0 $T1 $T2
check "A,B,A: vmB restores" restores_all "$ds" vmB "$TMP/vmB" sda $T0 $T1 $T2
check "A,B,A: the temporary folder is removed" test -z "$(ls -A "$TMP/tmpd2")"

# --- --jobs 2: both groups at once, the same snapshots
ds=$DS_TMP/ds-j2
rc=0; "$TOOL" import --repository "$ds" --jobs 2 --tmpdir "$TMP/tmpd2" "$TMP/ab.tar.zst" >"$TMP/j2.out" 2>&1 || rc=$?
check "--jobs 2: exit 0 ($(tail -1 "$TMP/j2.out"))" test $rc = 0
check "--jobs 2: vmA restores" restores_all "$ds" vmA "$TMP/vmA" sda $T0 $T1 $T2
check "--jobs 2: vmB restores" restores_all "$ds" vmB "$TMP/vmB" sda $T0 $T1 $T2

# --- Ctrl-C mid-stream: no temporary folder, no half snapshot, exit 130
ds=$DS_TMP/ds-int
mkfifo "$TMP/out.fifo"
"$TOOL" import --repository "$ds" --tmpdir "$TMP/tmpd2" "$TMP/ab.tar.gz" >"$TMP/out.fifo" 2>"$TMP/int.err" &
ipid=$!
exec {ofd}<"$TMP/out.fifo"
read -r first <&$ofd || true
kill -INT $ipid 2>/dev/null || true
cat <&$ofd >/dev/null 2>&1 || true
exec {ofd}<&-
rc=0; wait $ipid || rc=$?
check "interrupted after '$first': exit 130" test $rc = 130
check "interrupted: the temporary folder is removed" test -z "$(ls -A "$TMP/tmpd2")"
check "interrupted: no unfinished snapshot" no_unfinished "$ds"
check "interrupted: not every point stored ($(finished "$ds" vmA) / $(finished "$ds" vmB))" \
  test "$(finished "$ds" vmA | wc -w)$(finished "$ds" vmB | wc -w)" != 33
rc=0; "$TOOL" import --repository "$ds" --tmpdir "$TMP/tmpd2" "$TMP/ab.tar.gz" >"$TMP/res.out" 2>&1 || rc=$?
check "resumed: exit 0" test $rc = 0
check "resumed: vmA restores" restores_all "$ds" vmA "$TMP/vmA" sda $T0 $T1 $T2
check "resumed: vmB restores" restores_all "$ds" vmB "$TMP/vmB" sda $T0 $T1 $T2

# --- dry run, text: the archive line and the peak
"$TOOL" import --dry-run --tmpdir "$TMP/tmpd2" "$TMP/ab.tar.xz" >"$TMP/dry.txt" 2>&1 || true
check "dry run (text) says the archive is streamed and its most at once" \
  grep -q "ab.tar.xz: read twice as a stream.*at most .* at once" "$TMP/dry.txt"

done_testing
