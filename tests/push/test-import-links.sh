#!/bin/bash
# test-import-links.sh -- a tar archive holding a link (hard or symbolic)
# or a special file (a FIFO) is refused by import before any push, in
# place (.tar) and streamed (.tar.gz), with --dry-run too: one line naming
# the archive and the member and what to do, exit 1, no group made.  The
# old import ignored such members and exited 0 with a wrong set of
# snapshots (a VM left out, points lacking an INC's changes).  The same
# trees archived with the links dereferenced import as they should: every
# snapshot restores byte-identical to qemu-img convert of its chain.
. "$(dirname "$0")/../helpers/functions.sh"
requires qemu-img
requires qemu-io
requires tar
requires gzip
[ -x "$TOOL" ] || skip "qcow2pbs not built"
T0=1700000000 T1=1700086400 T2=1700172800
W=$TMP/work EXP=$TMP/expect
mkdir -p "$W" "$EXP" "$TMP/tmpd"

# chain KEY T...: qmpbackup layers $W/KEY/{FULL,INC}-<t>-sda.qcow2 without
# backing pointers; each point's disk from qemu-img convert of the chain
# (pointers still there) in $EXP/KEY-<t>.raw.
chain () {
  local key=$1 t prev="" k=0 kind=FULL
  shift
  mkdir -p "$W/$key"
  for t in "$@"; do
    if [ -z "$prev" ]; then
      qemu-img create -q -f qcow2 "$W/$key/$t.qcow2" 4M
    else
      qemu-img create -q -f qcow2 -b "$prev" -F qcow2 "$W/$key/$t.qcow2"
    fi
    qemu-io -c "write -P $((0x31 + k)) $((k))M 256k" "$W/$key/$t.qcow2" >/dev/null
    qemu-img convert -O raw "$W/$key/$t.qcow2" "$EXP/$key-$t.raw"
    prev=$W/$key/$t.qcow2
    k=$((k + 1))
  done
  for t in "$@"; do
    cp "$W/$key/$t.qcow2" "$W/$key/$kind-$t-sda.qcow2"
    qemu-img rebase -u -b "" "$W/$key/$kind-$t-sda.qcow2"
    touch -d "@$t" "$W/$key/$kind-$t-sda.qcow2"
    kind=INC
  done
}
chain hl $T0
chain sym $T0 $T1 $T2

# hl/vms: vmB's FULL, and vmA's the same file (ln).
H=$TMP/hl
mkdir -p "$H/vms/vmA/sda.qcow2" "$H/vms/vmB/sda.qcow2"
cp "$W/hl/FULL-$T0-sda.qcow2" "$H/vms/vmB/sda.qcow2/"
ln "$H/vms/vmB/sda.qcow2/FULL-$T0-sda.qcow2" "$H/vms/vmA/sda.qcow2/"
tar -C "$H" -cf "$H/hl.tar" vms
gzip -c "$H/hl.tar" >"$H/hl.tar.gz"
tar -C "$H" --hard-dereference -cf "$H/hl-deref.tar" vms
# sym/vm1: the middle INC a symbolic link to the real file elsewhere.
S=$TMP/sym
mkdir -p "$S/vm1/sda.qcow2" "$S/store"
cp "$W/sym/FULL-$T0-sda.qcow2" "$W/sym/INC-$T2-sda.qcow2" "$S/vm1/sda.qcow2/"
cp -p "$W/sym/INC-$T1-sda.qcow2" "$S/store/"
ln -s "../../store/INC-$T1-sda.qcow2" "$S/vm1/sda.qcow2/INC-$T1-sda.qcow2"
tar -C "$S" -cf "$S/sym.tar" vm1
gzip -c "$S/sym.tar" >"$S/sym.tar.gz"
tar -C "$S" -h -cf "$S/sym-deref.tar" vm1
# fifo/vm1: a FIFO named as a layer beside a real FULL.
F=$TMP/fifo
mkdir -p "$F/vm1/sda.qcow2"
cp "$W/hl/FULL-$T0-sda.qcow2" "$F/vm1/sda.qcow2/"
mkfifo "$F/vm1/sda.qcow2/INC-$T1-sda.qcow2"
tar -C "$F" -cf "$F/fifo.tar" vm1

# refused DESCRIPTION ARCHIVE REGEX [--dry-run]: import exits 1 with one
# line matching REGEX, no group folder made, no temporary left.
refused () {
  local d=$1 a=$2 re=$3 ds=$DS_TMP/ds-$RANDOM$RANDOM
  shift 3
  expect_fail "$d" "$TOOL" import --repository "$ds" --tmpdir "$TMP/tmpd" "$@" "$a"
  check "$d: the message names the archive, the member and what to do" \
    grep -Eq "^qcow2pbs: .*/$(basename "$a"|sed 's/\./\\./g'): member $re" "$TMP/ef.err"
  check "$d: no group made" test ! -e "$ds/vm"
  check "$d: no temporary left" test -z "$(ls -A "$TMP/tmpd")"
}
HLM="vms/vm[AB]/sda\.qcow2/FULL-$T0-sda\.qcow2: a hard link to vms/vm[AB]/sda\.qcow2/FULL-$T0-sda\.qcow2; .*unpack it and import the folder, or .*--hard-dereference"
SYM="vm1/sda\.qcow2/INC-$T1-sda\.qcow2: a symbolic link to \.\./\.\./store/INC-$T1-sda\.qcow2; .*unpack it and import the folder, or .*--dereference"
cd "$TMP"
refused "hard link, tar (in place)" "$H/hl.tar" "$HLM"
refused "hard link, tar.gz (streamed)" "$H/hl.tar.gz" "$HLM"
refused "hard link, tar, --dry-run" "$H/hl.tar" "$HLM" --dry-run
refused "hard link, tar.gz, --dry-run" "$H/hl.tar.gz" "$HLM" --dry-run
refused "symbolic link, tar (in place)" "$S/sym.tar" "$SYM"
refused "symbolic link, tar.gz (streamed)" "$S/sym.tar.gz" "$SYM"
refused "symbolic link, tar, --dry-run" "$S/sym.tar" "$SYM" --dry-run
refused "FIFO, tar (in place)" "$F/fifo.tar" "vm1/sda\.qcow2/INC-$T1-sda\.qcow2: a FIFO"
# A refused archive among others: nothing of the others is pushed.
ds=$DS_TMP/ds-mixed
expect_fail "a good folder and a hard-link tar" \
  "$TOOL" import --repository "$ds" --tmpdir "$TMP/tmpd" "$S/vm1" "$H/hl.tar"
check "... the good folder is not pushed either" test ! -e "$ds/vm"

# imported NAME ARCHIVE SPEC...: import exits 0; each SPEC id:key:t
# restores byte-identical to $EXP/key-t.raw.
imported () {
  local n=$1 a=$2 ds=$DS_TMP/ds-ok-$RANDOM$RANDOM rc=0 bad=0 spec id key t
  shift 2
  "$TOOL" import --repository "$ds" --tmpdir "$TMP/tmpd" "$a" >"$TMP/i.out" 2>"$TMP/i.err" || rc=$?
  check "$n: the import exits 0 ($(head -c 300 "$TMP/i.err"))" test $rc = 0
  for spec in "$@"; do
    IFS=: read -r id key t <<<"$spec"
    rm -f "$TMP/r.raw"
    if ! "$TOOL" restore --repository "$ds" "vm/$id/$t" drive-sda "$TMP/r.raw" 2>"$TMP/r.err" ||
       ! cmp -s "$TMP/r.raw" "$EXP/$key-$t.raw"; then
      bad=1
      echo "# vm/$id/$t differs: $(head -c 200 "$TMP/r.err")"
    fi
  done
  check "$n: all $# snapshots restore byte-identical to qemu-img convert" test $bad = 0
  check "$n: no other snapshot ($(ls "$ds"/vm/*/ | tr '\n' ' '))" \
    test "$(ls -d "$ds"/vm/*/*/ | wc -l)" = $#
}
imported "tar --hard-dereference" "$H/hl-deref.tar" vmA:hl:$T0 vmB:hl:$T0
imported "tar -h (symbolic links followed)" "$S/sym-deref.tar" \
  vm1:sym:$T0 vm1:sym:$T1 vm1:sym:$T2
done_testing
