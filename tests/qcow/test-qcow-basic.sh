#!/bin/bash
# test-qcow-basic.sh -- v3 and v2 chains made with qemu-img/qemu-io: data,
# zero clusters (plain and preallocated), discards, partial clusters, zlib
# and zstd compressed clusters.  Every layer: export = qemu-img convert,
# map = qemu-img map.
. "$(dirname "$0")/../helpers/functions.sh"
. "$(dirname "$0")/../helpers/qcow-lib.sh"

d=$TMP/v3
mkdir "$d"
mk "$d/base.qcow2" 8M
io "$d/base.qcow2" 'write -P 0x11 0 1M' 'write -P 0x22 2M 64k' \
  'write -P 0x33 3146240 1024' 'write -z 4M 128k' \
  'write -c -P 0x44 5M 64k' 'write -P 0x55 6M 64k' 'write -P 0x56 7M 64k'
overlay "$d/mid.qcow2" "$d/base.qcow2"
# write -z on an allocated cluster keeps its host offset (ZERO_ALLOC:
# stale data there must not show); -u frees it (ZERO_PLAIN); discard in an
# overlay stores a zero flag too.
io "$d/mid.qcow2" 'write -P 0x66 512k 128k' 'write -P 0x77 7M 64k' \
  'write -z 7M 64k' 'write -z -u 6M 64k' 'discard 0 64k' \
  'write -P 0x67 1040384 8192'
overlay "$d/top.qcow2" "$d/mid.qcow2"
io "$d/top.qcow2" 'write -c -P 0x88 1M 64k' 'write -P 0x99 8384512 4096' \
  'write -z -u 2M 32k'
check_chain "v3" "$d/base.qcow2" "$d/mid.qcow2" "$d/top.qcow2"

# v2 (compat=0.10): no zero flag; zeroing in an overlay writes zero data,
# discard in an overlay is refused by QEMU (data stays).
d=$TMP/v2
mkdir "$d"
mk "$d/base.qcow2" 8M -o compat=0.10
io "$d/base.qcow2" 'write -P 0x11 0 1M' 'write -c -P 0x44 5M 64k' \
  'write -P 0x22 2M 64k' 'write -z 0 64k'
overlay "$d/top.qcow2" "$d/base.qcow2" -o compat=0.10
io "$d/top.qcow2" 'write -P 0x66 512k 128k' 'write -z 2M 64k' \
  'write -c -P 0x77 6M 64k'
check_chain "v2" "$d/base.qcow2" "$d/top.qcow2"

# Compressed clusters from qemu-img convert -c: partly compressible data
# gives clusters of many different compressed sizes, so descriptors start
# at odd byte offsets and share sectors.  Both compression types.
d=$TMP/comp
mkdir "$d"
python3 - "$d/src.raw" <<'PY'
import random, sys
r = random.Random(7)
with open(sys.argv[1], "wb") as f:
    for i in range(96):
        # 16 KiB..64 KiB of a small alphabet per 64 KiB cluster, then zeros
        n = r.randrange(1, 5) * 16384
        f.write(bytes(r.choice(b"abcdefgh") for _ in range(n)).ljust(65536, b"\0")
                if i % 7 else b"\0" * 65536)
    f.write(bytes(r.randrange(256) for _ in range(65536)))  # incompressible
PY
for ct in zlib zstd; do
  qemu-img convert -c -f raw -O qcow2 -o compression_type=$ct \
    "$d/src.raw" "$d/$ct.qcow2"
  # odd compressed offsets and sector sharing really happened
  if python3 - "$d/$ct.qcow2" <<'PY'
import struct, sys
f = open(sys.argv[1], "rb"); h = f.read(112)
cb = struct.unpack_from(">I", h, 20)[0]; l1 = struct.unpack_from(">Q", h, 40)[0]
f.seek(l1); l2 = struct.unpack(">Q", f.read(8))[0] & 0x00fffffffffffe00
f.seek(l2); es = struct.unpack(">%dQ" % 97, f.read(8 * 97))
x = 62 - (cb - 8)
offs = [e & ((1 << x) - 1) for e in es if e & (1 << 62)]
odd = [o for o in offs if o % 512]
shared = len({o // 512 for o in offs}) < len(offs) or \
  any(a // 512 == (b - 1) // 512 for a, b in zip(offs[1:], offs))
sys.exit(0 if len(offs) > 40 and odd else 1)
PY
  then pass "$ct: fixture has odd compressed offsets"
  else fail "$ct: fixture lacks odd compressed offsets"; fi
  overlay "$d/$ct-top.qcow2" "$d/$ct.qcow2" -o compression_type=$ct
  io "$d/$ct-top.qcow2" 'write -c -P 0x31 64k 64k' 'write -c -P 0x32 192k 64k' \
    'write -c -P 0x33 128k 64k' 'write -P 0x34 320k 4k'
  check_chain "$ct" "$d/$ct.qcow2" "$d/$ct-top.qcow2"
done

# A virtual size that is neither a multiple of the cluster size nor of
# 4 MiB, with data in the last partial cluster.
d=$TMP/odd
mkdir "$d"
mk "$d/a.qcow2" 5308928            # 5 MiB + 65 KiB + 512
io "$d/a.qcow2" 'write -P 0x41 5242880 66048' 'write -P 0x42 0 4096'
overlay "$d/b.qcow2" "$d/a.qcow2"
io "$d/b.qcow2" 'write -c -P 0x43 5308416 512'
check_chain "odd size" "$d/a.qcow2" "$d/b.qcow2"

done_testing
