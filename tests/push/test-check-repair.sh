#!/bin/bash
# test-check-repair.sh -- `qcow2pbs check --repair` heals a damaged local
# store as PBS's verify job does: the bad chunk moves aside to
# <digest>.0.bad, the snapshot is marked verify_state failed, and the next
# push stores the chunk again, so its snapshot restores byte-identical to
# `qemu-img convert`.  Chunk digests come from python hashlib over qemu-img's
# output; the manifest is read by python (tests/helpers/pve_rules.py's decoder).
. "$(dirname "$0")/../helpers/functions.sh"
requires qemu-img
requires qemu-io
requires python3
requires zstd
[ -x "$TOOL" ] || skip "qcow2pbs not built"

qemu-img create -q -f qcow2 "$TMP/d.qcow2" 16M
qemu-io -c 'write -P 0x5a 0 4M' -c 'write -P 0x6b 8M 1M' "$TMP/d.qcow2" >/dev/null
qemu-img convert -O raw "$TMP/d.qcow2" "$TMP/d.raw"
ds=$DS_TMP/ds
"$TOOL" push --repository "$ds" --backup-id 7 --backup-time 1700000000 "$TMP/d.qcow2" >/dev/null
# The chunk at 8 MiB, located from its digest (python hashlib).
hex=$(python3 -c '
import hashlib, sys
d = open(sys.argv[1], "rb").read()
print(hashlib.sha256(d[8 << 20:12 << 20]).hexdigest())' "$TMP/d.raw")
chunk=$ds/.chunks/${hex:0:4}/$hex
check "the chunk file exists" test -f "$chunk"
python3 -c '
import sys
p = sys.argv[1]; b = bytearray(open(p, "rb").read()); b[-1] ^= 0xff
open(p, "wb").write(bytes(b))' "$chunk"

rc=0; "$TOOL" check --repository "$ds" --repair >"$TMP/c.out" 2>"$TMP/c.err" || rc=$?
check "check --repair: exit 1 (damage found)" test $rc = 1
check "the bad chunk's digest is named" grep -q "$hex" "$TMP/c.out"
check "it moved to <digest>.0.bad" test -f "$chunk.0.bad" -a ! -e "$chunk"
check "it says so" grep -q "repair: chunk $hex moved aside" "$TMP/c.err"
python3 "$top/tests/helpers/pve_rules.py" blob "$ds/vm/7/2023-11-14T22:13:20Z/index.json.blob" >"$TMP/m.json"
check "the snapshot is marked verify_state failed" python3 -c '
import json, sys
sys.exit(0 if json.load(open(sys.argv[1]))["unprotected"]["verify_state"]["state"] == "failed" else 1)' "$TMP/m.json"

"$TOOL" push --repository "$ds" --backup-id 7 --backup-time 1700000100 --output-format json \
  "$TMP/d.qcow2" >"$TMP/p.json" 2>"$TMP/p.err" || fail "push after repair: $(cat "$TMP/p.err")"
check "the push after the repair does not reuse the failed snapshot" python3 -c '
import json, sys
a = json.load(open(sys.argv[1]))["archives"][0]
sys.exit(0 if not a["incremental"] and "failed verification" in a["reason"] else 1)' "$TMP/p.json"
check "the chunk is stored again" test -f "$chunk"
rm -f "$TMP/r.raw"
"$TOOL" restore --repository "$ds" vm/7/1700000100 drive-scsi0 "$TMP/r.raw" 2>/dev/null || true
same_bytes "$TMP/r.raw" "$TMP/d.raw" "the new snapshot restores = qemu-img convert"
check "check of the new snapshot: ok" "$TOOL" check --repository "$ds" vm/7/1700000100
rc=0; "$TOOL" check --repository "$ds" --repair vm/7/1700000100 >/dev/null 2>"$TMP/c2.err" || rc=$?
check "--repair of a sound snapshot: exit 0, marked ok" sh -c "[ $rc = 0 ] && grep -q 'verify_state ok' '$TMP/c2.err'"

# --repair needs the datastore itself
rc=0; "$TOOL" check --repository "root@pam@127.0.0.1:1:store" --repair >/dev/null 2>"$TMP/r.err" </dev/null || rc=$?
check "--repair on a server: refused before any connection (exit 2)" \
  sh -c "[ $rc = 2 ] || grep -q 'PBS_PASSWORD' '$TMP/r.err'"
done_testing
