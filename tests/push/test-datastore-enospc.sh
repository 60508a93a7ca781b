#!/bin/bash
# test-datastore-enospc.sh -- a full disk while chunks are stored: a clear
# "No space left on device", no temp file and no snapshot directory left,
# the earlier snapshot untouched.  Needs root to mount a small tmpfs.
. "$(dirname "$0")/../helpers/functions.sh"
HELPER=$B/tests/helpers/ds-write-sample
[ -x "$HELPER" ] || skip "$HELPER not built"
[ "$(id -u)" = 0 ] || skip "needs root to mount a 7 MiB tmpfs"
mnt=$TMP/mnt
mkdir "$mnt"
mount -t tmpfs -o size=7m,mode=0755 tmpfs "$mnt" 2>/dev/null ||
  skip "cannot mount tmpfs here"
cleanup_fn umount "$mnt"
ds=$mnt/ds

check "compressible backup fits" "$HELPER" "$ds" "$TMP/a.raw" "" 1000
if "$HELPER" "$ds" "$TMP/b.raw" "" 2000 random 2>"$TMP/err"; then
  fail "8 MiB of incompressible chunks cannot fit into 7 MiB"
else
  check "error says 'No space left on device'" \
    grep -q "No space left on device" "$TMP/err"
fi
echo "# $(cat "$TMP/err")"
check "no snapshot directory for the failed backup" \
  test ! -e "$ds/vm/sample/1970-01-01T00:33:20Z"
check "no temp file left in .chunks" \
  test -z "$(find "$ds/.chunks" -mindepth 2 -name '*tmp*')"
check "no temp file left in the group" \
  test -z "$(find "$ds/vm" -name '*tmp*')"
check "the earlier snapshot is intact" \
  test -s "$ds/vm/sample/1970-01-01T00:16:40Z/index.json.blob"
check "every stored chunk is complete (size > 12, a blob magic)" python3 - "$ds" <<'PY'
import hashlib, os, sys
ok = {hashlib.sha256(s.encode()).digest()[:8] for s in (
    "Proxmox Backup uncompressed blob v1.0",
    "Proxmox Backup zstd compressed blob v1.0")}
root = os.path.join(sys.argv[1], ".chunks")
for d in os.listdir(root):
    for f in os.listdir(os.path.join(root, d)):
        b = open(os.path.join(root, d, f), "rb").read()
        if len(b) < 12 or b[:8] not in ok:
            sys.exit("bad chunk " + f)
PY
done_testing
