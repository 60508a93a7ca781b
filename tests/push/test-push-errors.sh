#!/bin/bash
# test-push-errors.sh -- bad input gives one clear line and exit 1 (usage
# errors exit 2), and leaves nothing half-done: no snapshot directory
# without a manifest, no temporary files, every chunk file decodes to data
# whose sha256 is its name, and earlier snapshots still verify.  The full
# disk case is test-push-diskfull.sh.
. "$(dirname "$0")/../helpers/functions.sh"
. "$(dirname "$0")/../helpers/push-functions.sh"
requires qemu-img
requires qemu-io
requires python3
requires zstd

ds=$TMP/ds
d=$TMP/img; mkdir "$d"
qemu-img create -q -f qcow2 "$d/full.qcow2" 64M
qemu-io -c 'write -P 1 0 6M' "$d/full.qcow2" >/dev/null
"$TOOL" push --repository "$ds" --backup-id 300 --backup-time 1700000100 \
  "$d/full.qcow2" >/dev/null
s0=vm/300/1700000100

for c in push restore verify snapshots; do
  check "$c --help exits 0" "$TOOL" $c --help
done
rc=0; "$TOOL" push --repository "$ds" "$d/full.qcow2" 2>/dev/null || rc=$?
check "push without --backup-id is a usage error (2)" test $rc = 2
rc=0; "$TOOL" restore --repository "$ds" "$s0" 2>/dev/null || rc=$?
check "restore with too few arguments is a usage error (2)" test $rc = 2

echo "this is not a disk image" >"$d/text.qcow2"
expect_fail "image that is not qcow2" \
  "$TOOL" push --repository "$ds" --backup-id 300 "$d/text.qcow2"
expect_fail "missing image" \
  "$TOOL" push --repository "$ds" --backup-id 300 "$d/nonexistent.qcow2"
expect_fail "backup-time not newer" \
  "$TOOL" push --repository "$ds" --backup-id 300 --backup-time 1700000000 "$d/full.qcow2"
expect_fail "backup-time equal" \
  "$TOOL" push --repository "$ds" --backup-id 300 --backup-time 1700000100 "$d/full.qcow2"
: >"$TMP/afile"
expect_fail "datastore path that is a file" \
  "$TOOL" push --repository "$TMP/afile" --backup-id 300 "$d/full.qcow2"
expect_fail "datastore path under a file" \
  "$TOOL" push --repository "$TMP/afile/ds" --backup-id 300 "$d/full.qcow2"
# One push per group at a time: hold the group's lock (flock on its
# directory, as the datastore does) while a second push starts.
if command -v flock >/dev/null; then
  expect_fail "second push while the group is locked" \
    flock "$ds/vm/300" "$TOOL" push --repository "$ds" --backup-id 300 "$d/full.qcow2"
  check "locked: error names the running backup" \
    grep -q 'another backup is already running' "$TMP/ef.err"
fi
expect_fail "restore of a missing snapshot" \
  "$TOOL" restore --repository "$ds" vm/300/1600000000 drive-scsi0 "$TMP/x.raw"
expect_fail "restore of a missing archive" \
  "$TOOL" restore --repository "$ds" "$s0" drive-virtio7 "$TMP/x.raw"
check "no restore output left" test ! -e "$TMP/x.raw"
check "one snapshot, consistent" test "$(ls "$ds/vm/300" | grep -c T)" = 1
check "datastore consistent after the errors" ds_consistent "$ds"
check "previous snapshot still verifies after the errors" \
  "$TOOL" verify --repository "$ds" "$s0" "$d/full.qcow2"
out=$("$TOOL" snapshots --repository "$ds" --output-format json)
check "snapshots json lists it" python3 -c '
import json, sys
j = json.loads(sys.argv[1])
assert [(e["backup-type"], e["backup-id"], e["backup-time"]) for e in j] == [("vm", "300", 1700000100)]
assert sorted(f["filename"] for f in j[0]["files"]) == ["drive-scsi0.img.fidx", "index.json.blob"]
assert j[0]["size"] >= 64 << 20' "$out"

# Damage last (the datastore is not copied: 65536 directories are slow).
# A chunk with other content under its name: restore refuses it.
c=$(find "$ds/.chunks" -type f ! -name "bb9f8df6*" | head -1)
python3 - "$c" <<'EOF2'
import sys, zlib
p = sys.argv[1]
data = bytes(1000) + b"x"   # other data, a valid plain blob
open(p, "wb").write(bytes.fromhex("42ab3807be8370a1") +
                    zlib.crc32(data).to_bytes(4, "little") + data)
EOF2
expect_fail "restore of a chunk with wrong content" \
  "$TOOL" restore --repository "$ds" "$s0" drive-scsi0 "$TMP/x.raw"
check "no restore output left" test ! -e "$TMP/x.raw"
# A truncated index: restore and verify refuse it.
truncate -s -32 "$ds/vm/300/2023-11-14T22:15:00Z/drive-scsi0.img.fidx"
expect_fail "restore of a corrupt index" \
  "$TOOL" restore --repository "$ds" "$s0" drive-scsi0 "$TMP/x.raw"
expect_fail2 "verify of a corrupt index: exit 2" \
  "$TOOL" verify --repository "$ds" "$s0" "$d/full.qcow2"
done_testing
