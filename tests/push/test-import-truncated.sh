#!/bin/bash
# test-import-truncated.sh -- a tar archive cut exactly at a member
# boundary (its last member and the end-of-archive zero blocks missing) is
# refused before any push, read in place (.tar) or streamed (.tar.zst),
# with --dry-run too; complete archives made by GNU tar (default, pax and
# gnu --sparse, padded to 10240-byte records) and by python's tarfile,
# one ending in a single zero block, and their gz/zst/xz, still import.  Golden data: a
# qmpbackup folder of real blockdev-backup jobs
# (tests/helpers/qmpbackup_fixture.py), each point restoring
# byte-identical to `qemu-img convert` of its chain; the cut offsets come
# from python's tarfile.
. "$(dirname "$0")/../helpers/functions.sh"
requires qemu-img
requires qemu-system-x86_64
requires python3
requires zstd
requires xz
[ -x "$TOOL" ] || skip "qcow2pbs not built"
T0=1700000000 T1=1700000100 T2=1700000200

mkdir "$TMP/src"
python3 "$top/tests/helpers/qmpbackup_fixture.py" "$TMP/src/vm1" --disks sda --points 3 --flat
mv "$TMP/src/vm1.expect" "$TMP/"
# Member order: the folder, its side files, then the images by time (the
# last INC last, so that a cut can drop just it).
( cd "$TMP/src" && { echo vm1; find vm1 -type f ! -name '*-sda.qcow2' | sort;
  find vm1 -name 'FULL-*'; find vm1 -name 'INC-*' | sort; } >"$TMP/order" )
tar -C "$TMP/src" --no-recursion -cf "$TMP/vm1.tar" -T "$TMP/order"

# end_of TAR K: the end of member K's padded data (K counted from the end:
# -1 the last); name_of TAR K: its name.
end_of () { python3 -c '
import sys, tarfile
m = tarfile.open(sys.argv[1]).getmembers()[int(sys.argv[2])]
print(m.offset_data + (m.size + 511) // 512 * 512)' "$@"; }
name_of () { python3 -c '
import sys, tarfile
print(tarfile.open(sys.argv[1]).getmembers()[int(sys.argv[2])].name)' "$@"; }
check "GNU tar: the last member is the last INC" \
  test "$(name_of "$TMP/vm1.tar" -1)" = "vm1/INC-$T2-sda.qcow2"
cut=$(end_of "$TMP/vm1.tar" -2)
head -c "$cut" "$TMP/vm1.tar" >"$TMP/cut.tar"
zstd -q -c "$TMP/cut.tar" >"$TMP/cut.tar.zst"
check "the cut copy reads without error in python, up to the first INC" \
  test "$(name_of "$TMP/cut.tar" -1)" = "vm1/INC-$T1-sda.qcow2"

nothing_stored () { # DS
  ! find "$1" -name index.json.blob 2>/dev/null | grep -q . &&
  ! find "$1/vm" -mindepth 1 2>/dev/null | grep -q .
}
n=0
for f in cut.tar cut.tar.zst; do
  for dry in "" --dry-run; do
    n=$((n + 1)); ds=$DS_TMP/cut$n
    expect_fail "$f ${dry:-import}: refused" \
      "$TOOL" import --repository "$ds" $dry "$TMP/$f"
    check "$f ${dry:-import}: the line names the missing marker and the last member" \
      grep -q "^qcow2pbs: $TMP/$f: truncated archive: no end-of-archive marker after member vm1/INC-$T1-sda.qcow2; the copy is incomplete\$" "$TMP/ef.err"
    check "$f ${dry:-import}: nothing stored" nothing_stored "$ds"
  done
done

# Complete archives import; every point restores = qemu-img convert.
restores_all () { # DS
  local t bad=0
  for t in $T0 $T1 $T2; do
    rm -f "$TMP/r.raw"
    if ! "$TOOL" restore --repository "$1" "vm/vm1/$t" drive-sda "$TMP/r.raw" 2>"$TMP/r.err" ||
       ! cmp -s "$TMP/r.raw" "$TMP/vm1.expect/sda-$t.raw"; then
      bad=1; echo "# point $t differs: $(cat "$TMP/r.err")"
    fi
  done
  return $bad
}
tar -C "$TMP/src" --no-recursion --format=pax --sparse -cf "$TMP/pax.tar" -T "$TMP/order"
python3 -c '
import os, sys, tarfile
os.chdir(sys.argv[2])
with tarfile.open(sys.argv[1], "w") as t:
    for name in open(sys.argv[3]).read().split():
        t.add(name, recursive=False)' "$TMP/py.tar" "$TMP/src" "$TMP/order"
# The marker's minimum: one zero block after the last member.
head -c $(($(end_of "$TMP/vm1.tar" -1) + 512)) "$TMP/vm1.tar" >"$TMP/one.tar"
tar -C "$TMP/src" --no-recursion --format=gnu --sparse -cf "$TMP/gnusparse.tar" -T "$TMP/order"
zstd -q -c "$TMP/vm1.tar" >"$TMP/vm1.tar.zst"
gzip -c "$TMP/py.tar" >"$TMP/py.tar.gz"
xz -c "$TMP/pax.tar" >"$TMP/pax.tar.xz"
check "GNU tar pads to 10240-byte records" test $(($(stat -c %s "$TMP/vm1.tar") % 10240)) = 0
n=0
for f in vm1.tar pax.tar gnusparse.tar py.tar one.tar vm1.tar.zst py.tar.gz pax.tar.xz; do
  n=$((n + 1)); ds=$DS_TMP/full$n
  if "$TOOL" import --repository "$ds" "$TMP/$f" >"$TMP/i.out" 2>"$TMP/i.err"; then
    pass "$f: imported"
  else
    fail "$f: $(cat "$TMP/i.err")"
  fi
  check "$f: every point restores = qemu-img convert of its chain" restores_all "$ds"
done

done_testing
