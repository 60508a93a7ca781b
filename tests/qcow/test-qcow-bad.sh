#!/bin/bash
# test-qcow-bad.sh -- damaged images, made by patching real qemu-img images
# at the offsets of the qcow2 spec (docs/qcow2.md §1.1 header, §2.2 L1/L2
# masks, §2.4 compressed descriptors).  Each must fail with exit 1 and one
# error line naming the file, quickly (timeout), leaving no output file.
# Where QEMU refuses too, qemu-img convert is asked as a second opinion.
. "$(dirname "$0")/../helpers/functions.sh"
. "$(dirname "$0")/../helpers/qcow-lib.sh"

g=$TMP/good.qcow2
mk "$g" 4M
io "$g" 'write -P 0x11 0 1M' 'write -c -P 0x22 2M 64k'
g2=$TMP/good-v2.qcow2
mk "$g2" 4M -o compat=0.10
io "$g2" 'write -P 0x11 0 1M'
check_image "unpatched fixture" "$g"

n=0
variant () { # variant SRC: a fresh copy to patch, path in $v
  n=$((n + 1)); v=$TMP/bad$n.qcow2; cp "$1" "$v"
}
patch () { python3 "$QT" patch "$v" "$@"; }
qemu_refuses () { # qemu_refuses DESC: QEMU also fails on $v
  if qemu-img convert -f qcow2 -O raw "$v" "$TMP/q.raw" >/dev/null 2>&1; then
    fail "$1: qemu-img convert accepts it (fixture is not bad?)"
  else pass "$1: qemu-img convert refuses it too"; fi
  rm -f "$TMP/q.raw"
}

variant "$g"; head -c 50 "$g" >"$v"
expect_bad_open "truncated header (50 bytes)" "$v"
variant "$g"; head -c 100 "$g" >"$v"
expect_bad_open "truncated v3 header (100 bytes)" "$v"
variant "$g"; patch 0 I 0x514649fa
expect_bad_open "bad magic" "$v"; qemu_refuses "bad magic"
variant "$g"; patch 4 I 4
expect_bad_open "version 4" "$v"; qemu_refuses "version 4"
variant "$g"; patch 72 Q 0x20
expect_bad_open "unknown incompatible bit 5" "$v"; qemu_refuses "unknown incompatible bit"
variant "$g"; patch 72 Q 0x8000000000000000
expect_bad_open "unknown incompatible bit 63" "$v"
variant "$g"; patch 72 Q 0x2
expect_bad_open "corrupt bit" "$v"
variant "$g"; patch 20 I 8
expect_bad_open "cluster_bits 8" "$v"; qemu_refuses "cluster_bits 8"
variant "$g"; patch 20 I 22
expect_bad_open "cluster_bits 22" "$v"; qemu_refuses "cluster_bits 22"
variant "$g"; patch 20 I 0xffffffff
expect_bad_open "cluster_bits 2^32-1" "$v"
variant "$g"; patch 40 Q 0x40000000
expect_bad_open "L1 table past EOF" "$v"
variant "$g"; patch 40 Q 0
expect_bad_open "L1 table overlapping the header" "$v"
variant "$g"; patch 40 Q 0x10200
expect_bad_open "L1 table offset unaligned" "$v"; qemu_refuses "L1 unaligned"
variant "$g"; patch 36 I 0x2000000
expect_bad_open "huge L1 size" "$v"; qemu_refuses "huge L1 size"
variant "$g"; patch 36 I 0
expect_bad_open "L1 size too small for the disk" "$v"; qemu_refuses "L1 too small"
variant "$g"; patch 24 Q 0xffffffffffffff00
expect_bad_open "huge virtual size" "$v"; qemu_refuses "huge virtual size"
variant "$g"; patch 100 I 0x20000
expect_bad_open "header_length past the cluster" "$v"; qemu_refuses "header_length"
variant "$g"; patch 96 I 7
expect_bad_open "refcount_order 7" "$v"; qemu_refuses "refcount_order 7"
variant "$g"; patch 32 I 1
expect_bad_open "encrypted (AES)" "$v"
variant "$g"; patch 16 I 0x10000; patch 8 Q 0x200
expect_bad_open "backing name too long" "$v"; qemu_refuses "backing name too long"

# L1/L2 entries (located by reading the tables, as the spec lays them out).
read -r l2pos l2val <<<"$(python3 "$QT" l2 "$g" 0)"
l1=$(python3 "$QT" header "$g" | sed -n 's/^l1_table_offset=//p')
variant "$g"; patch "$l2pos" Q $((l2val + 0x200))
expect_bad "L2 entry with unaligned offset" "$v"; qemu_refuses "L2 unaligned"
expect_fail "L2 entry with unaligned offset: map" timeout 20 "$TOOL" map "$v"
variant "$g"; patch "$l1" Q $(( $(od -An -td8 --endian=big -j "$l1" -N8 "$g") + 0x200 ))
expect_bad "L1 entry with unaligned L2 table" "$v"; qemu_refuses "L1 entry unaligned"
# Compressed cluster (at 2 MiB): keep the sector count, move the byte
# offset far past EOF; QEMU zero-fills the read and fails to decode.
read -r cpos cval <<<"$(python3 "$QT" l2 "$g" 0x200000)"
if [ $(( (cval >> 62) & 1 )) = 1 ]; then pass "fixture: compressed entry at 2M"
else fail "fixture: entry at 2M not compressed ($cval)"; fi
variant "$g"; patch "$cpos" Q $(( (cval & ~((1 << 54) - 1)) | 0x4000005 ))
expect_bad "compressed descriptor past EOF" "$v"; qemu_refuses "compressed past EOF"
# Zero flag in a v2 image: corruption (QEMU: EIO).
read -r zpos zval <<<"$(python3 "$QT" l2 "$g2" 0)"
variant "$g2"; patch "$zpos" Q $((zval | 1))
expect_bad "zero flag in a v2 image" "$v"; qemu_refuses "v2 zero flag"

# The damaged image may sit below a good overlay: the error still names
# the damaged file.
variant "$g"; patch 72 Q 0x20
qemu-img create -q -f qcow2 -u -b "$(basename "$v")" -F qcow2 "$TMP/over.qcow2" 4M
expect_bad_open "damaged backing file" "$TMP/over.qcow2"
if grep -q "$(basename "$v")" "$TMP/ef.err"; then pass "error names the damaged backing file"
else fail "error does not name $(basename "$v"): $(cat "$TMP/ef.err")"; fi

# Empty file and a directory.
: >"$TMP/empty.qcow2"
expect_bad_open "empty file" "$TMP/empty.qcow2"
mkdir "$TMP/dir.qcow2"
expect_bad_open "directory" "$TMP/dir.qcow2"

done_testing
