#!/bin/bash
# test-restore-pipeline.sh -- what restore's chunk pipeline (worker
# threads check and decode the next chunks while the main thread writes)
# could break: the bytes of a disk with zero chunks, written zeros,
# compressible and incompressible chunks and a partial last chunk, to a
# file, to stdout and into a pipe, plain and encrypted; a damaged chunk in
# the middle (flipped byte, re-CRC'd wrong data, cut zstd frame, wrong
# GCM tag) is exit 1 with one line naming its digest, nothing under the
# final name and no temporary (an old file under --force stays as it
# was); SIGINT in the middle leaves nothing.  Oracle: qemu-img convert,
# python3 hashlib/zlib/struct (chunk digests, blob rewrites), cmp.
. "$(dirname "$0")/../helpers/functions.sh"
. "$(dirname "$0")/../helpers/push-functions.sh"
requires qemu-img
requires qemu-io
requires python3
[ -x "$TOOL" ] || skip "qcow2pbs not built"

ds=$DS_TMP/ds
d=$TMP/out; mkdir "$d"
# 10 full chunks and a 1 MiB last one: data, unallocated, written zeros,
# text (zstd blob), random (plain blob).
qemu-img create -q -f qcow2 "$TMP/a.qcow2" 41M
head -c 16777216 /dev/urandom >"$TMP/rand"
qemu-io -c "write -s $TMP/rand 0 4M" -c 'write -P 0x61 4M 4M' \
  -c 'write -z 8M 4M' -c "write -s $TMP/rand 16M 12M" \
  -c 'write -P 0x62 28M 1M' -c "write -s $TMP/rand 40M 1M" \
  "$TMP/a.qcow2" >/dev/null
raw_of "$TMP/a.qcow2" "$TMP/want"
"$TOOL" push --repository "$ds" --backup-id 1 --backup-time 1000 \
  "$TMP/a.qcow2" >/dev/null
unset PBS_ENCRYPTION_PASSWORD
"$TOOL" key create "$TMP/k.key" --kdf none >/dev/null
"$TOOL" push --repository "$ds" --backup-id 2 --backup-time 1000 \
  --keyfile "$TMP/k.key" "$TMP/a.qcow2" >/dev/null
R=("$TOOL" restore --repository "$ds")

# no_temp DIR: no ".NAME.XXXXXX" temporary left in DIR.
no_temp () { ! ls -A "$1" | grep -q '^\.'; }

# --- the bytes: file, stdout into a file, pipe; plain and encrypted
"${R[@]}" vm/1/1000 drive-scsi0 "$d/p.raw"
same_bytes "$d/p.raw" "$TMP/want" "plain: file equals qemu-img convert"
"${R[@]}" vm/1/1000 drive-scsi0 - >"$d/p-stdout.raw"
same_bytes "$d/p-stdout.raw" "$TMP/want" "plain: stdout equals qemu-img convert"
"${R[@]}" vm/1/1000 drive-scsi0 - | cat >"$d/p-pipe.raw"
same_bytes "$d/p-pipe.raw" "$TMP/want" "plain: pipe equals qemu-img convert"
"${R[@]}" --keyfile "$TMP/k.key" vm/2/1000 drive-scsi0 "$d/e.raw"
same_bytes "$d/e.raw" "$TMP/want" "encrypted: file equals qemu-img convert"
"${R[@]}" --keyfile "$TMP/k.key" vm/2/1000 drive-scsi0 - | cat >"$d/e-pipe.raw"
same_bytes "$d/e-pipe.raw" "$TMP/want" "encrypted: pipe equals qemu-img convert"
rm -f "$d"/*.raw

# chunk_file SNAP-DIR-GLOB INDEX: the chunk file of chunk INDEX, its digest
# read from the .fidx by python (header 4096 bytes, then 32-byte digests).
chunk_file () {
  python3 - "$ds" "$1" "$2" <<'EOF'
import glob, sys
ds, snap, i = sys.argv[1], sys.argv[2], int(sys.argv[3])
idx = open(glob.glob("%s/%s/drive-scsi0.img.fidx" % (ds, snap))[0], "rb").read()
h = idx[4096 + 32 * i:4096 + 32 * (i + 1)].hex()
print("%s/.chunks/%s/%s" % (ds, h[:4], h))
EOF
}
# The plain digest of chunk 5 and of chunk 1 (text), by python hashlib.
dig5=$(python3 -c 'import hashlib,sys; d=open(sys.argv[1],"rb").read(); print(hashlib.sha256(d[5<<22:6<<22]).hexdigest())' "$TMP/want")
dig1=$(python3 -c 'import hashlib,sys; d=open(sys.argv[1],"rb").read(); print(hashlib.sha256(d[1<<22:2<<22]).hexdigest())' "$TMP/want")
c5=$(chunk_file 'vm/1/*' 5)
c1=$(chunk_file 'vm/1/*' 1)
check "chunk 5's file is named by its sha256" test "${c5##*/}" = "$dig5"
check "chunk 1's file is named by its sha256" test "${c1##*/}" = "$dig1"
cp "$c5" "$TMP/c5.good"; cp "$c1" "$TMP/c1.good"

# damaged WHAT DIGEST RESTORE-ARGS...: exit 1, one line naming DIGEST,
# nothing new in $d, an old file kept under --force.
damaged () {
  local what=$1 dig=$2; shift 2
  expect_fail "$what: restore fails" "${R[@]}" "$@" "$d/x.raw"
  check "$what: the message names chunk $dig" grep -q "$dig" "$TMP/ef.err"
  check "$what: no OUT, no temporary" test -z "$(ls -A "$d")"
  echo old >"$d/old.raw"
  expect_fail "$what: --force fails" "${R[@]}" --force "$@" "$d/old.raw"
  check "$what: the old file is untouched, no temporary" \
    test "$(ls -A "$d")" = old.raw -a "$(cat "$d/old.raw")" = old
  rm -f "$d/old.raw"
  # Into a pipe the disk is partly out already; the exit status says so.
  local rc
  "${R[@]}" "$@" - 2>"$TMP/pipe.err" | cat >/dev/null
  rc=${PIPESTATUS[0]}
  check "$what: to a pipe, exit 1 naming the chunk (rc $rc)" \
    bash -c '[ "$1" = 1 ] && grep -q "$2" "$3"' _ "$rc" "$dig" "$TMP/pipe.err"
}

# --- a flipped byte in the middle of chunk 5 (plain blob: CRC)
python3 - "$c5" <<'EOF'
import sys
p = sys.argv[1]; b = bytearray(open(p, "rb").read()); b[len(b) // 2] ^= 1
open(p, "wb").write(b)
EOF
damaged "flipped byte" "$dig5" vm/1/1000 drive-scsi0
# --- wrong data under a right CRC: only SHA-256 sees it
python3 - "$c5" "$TMP/c5.good" <<'EOF'
import struct, sys, zlib
b = bytearray(open(sys.argv[2], "rb").read()); b[100] ^= 0x80
b[8:12] = struct.pack("<I", zlib.crc32(bytes(b[12:])))
open(sys.argv[1], "wb").write(b)
EOF
damaged "re-CRC'd wrong data" "$dig5" vm/1/1000 drive-scsi0
cp "$TMP/c5.good" "$c5"
# --- chunk 1 (text, a zstd blob) cut short under a right CRC
python3 - "$c1" "$TMP/c1.good" <<'EOF'
import hashlib, struct, sys, zlib
b = open(sys.argv[2], "rb").read()
m = hashlib.sha256(b"Proxmox Backup zstd compressed blob v1.0").digest()[:8]
assert b[:8] == m, "chunk 1 is not a zstd blob"
z = b[12:-8]
open(sys.argv[1], "wb").write(m + struct.pack("<I", zlib.crc32(z)) + z)
EOF
damaged "cut zstd frame" "$dig1" vm/1/1000 drive-scsi0
cp "$TMP/c1.good" "$c1"
# --- encrypted chunk 5: a wrong GCM tag under a right CRC
e5=$(chunk_file 'vm/2/*' 5)
cp "$e5" "$TMP/e5.good"
python3 - "$e5" <<'EOF'
import sys
p = sys.argv[1]; b = bytearray(open(p, "rb").read()); b[30] ^= 1
open(p, "wb").write(b)
EOF
damaged "encrypted, wrong tag" "${e5##*/}" --keyfile "$TMP/k.key" \
  vm/2/1000 drive-scsi0
cp "$TMP/e5.good" "$e5"
# --- a missing chunk file
mv "$c5" "$TMP/c5.moved"
damaged "missing chunk file" "$dig5" vm/1/1000 drive-scsi0
mv "$TMP/c5.moved" "$c5"
"${R[@]}" vm/1/1000 drive-scsi0 "$d/again.raw"
same_bytes "$d/again.raw" "$TMP/want" "repaired store restores again"
rm -f "$d/again.raw"

# --- SIGINT in the middle of a 256 MiB restore, no SIGSTOP: workers busy
qemu-img create -q -f qcow2 "$TMP/big.qcow2" 256M
head -c 268435456 /dev/urandom >"$TMP/rand"
qemu-io -c "write -s $TMP/rand 0 256M" "$TMP/big.qcow2" >/dev/null
rm "$TMP/rand"
"$TOOL" push --repository "$ds" --backup-id 3 --backup-time 1000 \
  "$TMP/big.qcow2" >/dev/null
mkdir "$d/int"
rc=$(python3 - "$d/int" "${R[@]}" vm/3/1000 drive-scsi0 "$d/int/big.raw" <<'EOF'
import os, signal, subprocess, sys, time
d, cmd = sys.argv[1], sys.argv[2:]
p = subprocess.Popen(cmd, stderr=open(d + "/../int.err", "w"))
while p.poll() is None and not any(n.startswith(".") for n in os.listdir(d)):
    time.sleep(0.001)
if p.poll() is not None:
    print("missed"); sys.exit()
def size(n):
    try:
        return os.stat(os.path.join(d, n)).st_size
    except FileNotFoundError:
        return 1 << 62
# Some chunks written: the temporary has data, workers are mid-chunk.
while p.poll() is None and all(size(n) < (8 << 20) for n in os.listdir(d)):
    time.sleep(0.001)
p.send_signal(signal.SIGINT)
print(p.wait())
EOF
)
if [ "$rc" = missed ]; then
  echo "# SIGINT: restore finished before its temporary was seen"
else
  check "SIGINT: exit 130 (got $rc)" test "$rc" = 130
  check "SIGINT: one line ($(cat "$d/int.err"))" \
    bash -c '[ "$(wc -l <"$1")" = 1 ] && grep -q "^qcow2pbs: restore: interrupted" "$1"' _ "$d/int.err"
  check "SIGINT: no temporary, no OUT" test -z "$(ls -A "$d/int")"
fi
done_testing
