#!/bin/bash
# test-qcow-layout.sh -- chains whose layers differ in layout: extended L2
# with partly allocated / partly zero subclusters, cluster sizes 4 KiB,
# 64 KiB and 2 MiB in one chain, disk resizes (grow, shrink, grow), and a
# shorter middle layer that hides deeper data.  Every layer: export =
# qemu-img convert, map = qemu-img map.
. "$(dirname "$0")/../helpers/functions.sh"
. "$(dirname "$0")/../helpers/qcow-lib.sh"

# Extended L2 (64 KiB clusters = 32 subclusters of 2 KiB): subcluster
# writes leave the rest of the cluster unallocated (reads fall through to
# the backing file), zeroing subclusters sets their zero bits.
d=$TMP/extl2
mkdir "$d"
mk "$d/base.qcow2" 4M
io "$d/base.qcow2" 'write -P 0x11 0 1M' 'write -P 0x12 2M 256k'
overlay "$d/top.qcow2" "$d/base.qcow2" -o extended_l2=on,cluster_size=64k
io "$d/top.qcow2" 'write -P 0x21 2048 2048' 'write -P 0x22 10240 6144' \
  'write -z 20480 4096' 'write -z -u 65536 2048' 'write -P 0x23 131072 65536' \
  'write -z 133120 2048' 'write -c -P 0x24 196608 65536' \
  'discard 2162688 4096' 'write -P 0x25 2099200 512'
overlay "$d/top2.qcow2" "$d/top.qcow2" -o extended_l2=on,cluster_size=128k
io "$d/top2.qcow2" 'write -P 0x31 4096 4096' 'write -z 12288 4096' \
  'write -P 0x32 2101248 8192'
check_chain "extended L2" "$d/base.qcow2" "$d/top.qcow2" "$d/top2.qcow2"

# Cluster sizes 4 KiB, 64 KiB and 2 MiB mixed in one chain, writes that
# straddle the other layers' cluster boundaries.
d=$TMP/mixed
mkdir "$d"
mk "$d/c4k.qcow2" 12M -o cluster_size=4k
io "$d/c4k.qcow2" 'write -P 0x41 0 6M' 'write -z 1M 4k' 'write -c -P 0x42 9M 4k' \
  'write -P 0x43 10M 1M'
overlay "$d/c2m.qcow2" "$d/c4k.qcow2" -o cluster_size=2M
io "$d/c2m.qcow2" 'write -P 0x51 61440 8192' 'write -z 4M 2M' \
  'write -P 0x52 8392704 4096' 'write -c -P 0x53 10M 2M'
overlay "$d/c64k.qcow2" "$d/c2m.qcow2" -o cluster_size=64k
io "$d/c64k.qcow2" 'write -P 0x61 4194304 4096' 'write -z -u 8388608 65536' \
  'write -P 0x62 2093056 8192'
check_chain "mixed clusters" "$d/c4k.qcow2" "$d/c2m.qcow2" "$d/c64k.qcow2"

# Resize: grow, then shrink, then grow again, each in a new overlay.
# Growing reads zeros above the old size; shrinking cuts deeper data off
# for good (later growth must not resurrect it).
d=$TMP/resize
mkdir "$d"
mk "$d/r0.qcow2" 4M
io "$d/r0.qcow2" 'write -P 0x71 0 4M'
overlay "$d/r1.qcow2" "$d/r0.qcow2"
qemu-img resize -q "$d/r1.qcow2" 9437696          # grow to 9 MiB + 512
io "$d/r1.qcow2" 'write -P 0x72 6M 64k' 'write -P 0x73 9437184 512'
overlay "$d/r2.qcow2" "$d/r1.qcow2"
qemu-img resize -q --shrink "$d/r2.qcow2" 3M       # shrink
io "$d/r2.qcow2" 'write -P 0x74 1M 64k'
overlay "$d/r3.qcow2" "$d/r2.qcow2"
qemu-img resize -q "$d/r3.qcow2" 10M              # grow again
io "$d/r3.qcow2" 'write -P 0x75 8M 64k'
check_chain "resize" "$d/r0.qcow2" "$d/r1.qcow2" "$d/r2.qcow2" "$d/r3.qcow2"

# A shorter middle layer: base 4 MiB <- mid 1 MiB <- top 4 MiB.  The top's
# unallocated bytes above 1 MiB read zeros, not base data.
d=$TMP/short
mkdir "$d"
mk "$d/base.qcow2" 4M
io "$d/base.qcow2" 'write -P 0x81 0 4M'
overlay "$d/mid.qcow2" "$d/base.qcow2" -o size=1M
io "$d/mid.qcow2" 'write -P 0x82 512k 64k'
overlay "$d/top.qcow2" "$d/mid.qcow2" -o size=4M
io "$d/top.qcow2" 'write -P 0x83 3M 64k'
check_chain "short middle" "$d/base.qcow2" "$d/mid.qcow2" "$d/top.qcow2"

done_testing
