#!/bin/bash
# test-remote-restore.sh -- restore's chunk pipeline over the reader
# protocol (downloads announced ahead while workers check earlier chunks
# and the main thread writes): a disk with zero, zstd, plain and partial
# chunks restores byte-identical, plain and encrypted, to a file and a
# pipe; a damaged chunk in the middle is exit 1 with one line naming its
# digest and nothing under the final name.  Oracle: qemu-img convert,
# python3 hashlib, cmp.
. "$(dirname "$0")/../helpers/functions.sh"
. "$(dirname "$0")/../helpers/remote-functions.sh"
. "$(dirname "$0")/../helpers/push-functions.sh"
requires qemu-img
requires qemu-io
requires python3
[ -x "$TOOL" ] || skip "qcow2pbs not built"

setup_remote
ds=$DS_TMP/ds
d=$TMP/out; mkdir "$d"
qemu-img create -q -f qcow2 "$TMP/a.qcow2" 41M
head -c 16777216 /dev/urandom >"$TMP/rand"
qemu-io -c "write -s $TMP/rand 0 4M" -c 'write -P 0x61 4M 4M' \
  -c 'write -z 8M 4M' -c "write -s $TMP/rand 16M 12M" \
  -c 'write -P 0x62 28M 1M' -c "write -s $TMP/rand 40M 1M" \
  "$TMP/a.qcow2" >/dev/null
raw_of "$TMP/a.qcow2" "$TMP/want"
unset PBS_ENCRYPTION_PASSWORD
"$TOOL" key create "$TMP/k.key" --kdf none >/dev/null
"$TOOL" push --repository "$ds" --backup-id 1 --backup-time 1000 \
  "$TMP/a.qcow2" >/dev/null
"$TOOL" push --repository "$ds" --backup-id 2 --backup-time 1000 \
  --keyfile "$TMP/k.key" "$TMP/a.qcow2" >/dev/null
start_server "$ds"
# root@pam: the local pushes made it the groups' owner.
export PBS_PASSWORD=$USER_PASSWORD PBS_FINGERPRINT=$FP
R=("$TOOL" restore --repository "root@pam@127.0.0.1:$PORT:$STORE")

"${R[@]}" vm/1/1000 drive-scsi0 "$d/p.raw"
same_bytes "$d/p.raw" "$TMP/want" "remote plain: file equals qemu-img convert"
"${R[@]}" vm/1/1000 drive-scsi0 - | cat >"$d/p-pipe.raw"
same_bytes "$d/p-pipe.raw" "$TMP/want" "remote plain: pipe equals qemu-img convert"
"${R[@]}" --keyfile "$TMP/k.key" vm/2/1000 drive-scsi0 "$d/e.raw"
same_bytes "$d/e.raw" "$TMP/want" "remote encrypted: file equals qemu-img convert"
rm -f "$d"/*.raw

# Chunk 5 (random, a plain blob) gets a flipped byte in the middle.
dig5=$(python3 -c 'import hashlib,sys; d=open(sys.argv[1],"rb").read(); print(hashlib.sha256(d[5<<22:6<<22]).hexdigest())' "$TMP/want")
c5=$ds/.chunks/${dig5:0:4}/$dig5
check "chunk 5 is stored under its sha256" test -f "$c5"
cp "$c5" "$TMP/c5.good"
python3 - "$c5" <<'EOF'
import sys
p = sys.argv[1]; b = bytearray(open(p, "rb").read()); b[len(b) // 2] ^= 1
open(p, "wb").write(b)
EOF
expect_fail "remote damaged chunk: restore fails" "${R[@]}" vm/1/1000 \
  drive-scsi0 "$d/x.raw"
check "remote damaged chunk: the message names $dig5" grep -q "$dig5" "$TMP/ef.err"
check "remote damaged chunk: no OUT, no temporary" test -z "$(ls -A "$d")"
rm -f "$c5"
expect_fail "remote missing chunk: restore fails" "${R[@]}" vm/1/1000 \
  drive-scsi0 "$d/x.raw"
check "remote missing chunk: the message names $dig5" grep -q "$dig5" "$TMP/ef.err"
check "remote missing chunk: no OUT, no temporary" test -z "$(ls -A "$d")"
cp "$TMP/c5.good" "$c5"
"${R[@]}" vm/1/1000 drive-scsi0 "$d/again.raw"
same_bytes "$d/again.raw" "$TMP/want" "remote: repaired store restores again"
done_testing
