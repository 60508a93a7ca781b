#!/bin/bash
# test-verify-chain.sh -- qcow2pbs verify: identical chain -> exit 0 and
# "identical"; writes into the chain (qemu-io) -> exit 1 with exactly the
# chunk ranges the writes cover (computed here from the offsets); a grown
# or shrunk chain -> exit 1 naming both sizes; trouble (a missing snapshot
# or image) -> exit 2, as cmp does; --output-format json gives the same
# verdict and ranges as one object.
. "$(dirname "$0")/../helpers/functions.sh"
. "$(dirname "$0")/../helpers/push-functions.sh"
requires qemu-img
requires qemu-io

ds=$TMP/ds
qemu-img create -q -f qcow2 "$TMP/full.qcow2" 64M
qemu-io -c 'write -P 1 0 10M' -c 'write -P 2 40M 64k' "$TMP/full.qcow2" >/dev/null
"$TOOL" push --repository "$ds" --backup-id v --backup-time 1000 "$TMP/full.qcow2" >/dev/null
s=vm/v/1000

check "identical: exit 0" "$TOOL" verify --repository "$ds" "$s" "$TMP/full.qcow2"
check "identical: prints identical" \
  test "$("$TOOL" verify --repository "$ds" "$s" "$TMP/full.qcow2" | tail -1)" = identical

vf () { # vf IMAGE: verify, output in $TMP/v.out, exit status in $rc
  rc=0
  "$TOOL" verify --repository "$ds" "$s" "$1" >"$TMP/v.out" 2>"$TMP/v.err" || rc=$?
}
qemu-img create -q -f qcow2 -b full.qcow2 -F qcow2 "$TMP/top.qcow2"
qemu-io -c 'write -P 9 13M 9M' -c 'write -z 40M 64k' -c 'write -P 1 0 4k' "$TMP/top.qcow2" >/dev/null
vf "$TMP/top.qcow2"
check "changed chain: exit 1" test $rc = 1
# 13M..22M covers chunks 3-5; 40M zeroed: chunk 10; chunk 0 rewritten with
# the same bytes is still identical.
check "changed chain: ranges" diff - "$TMP/v.out" <<EOF2
drive-scsi0.img.fidx: differs: bytes 12582912-25165823 (chunks 3-5)
drive-scsi0.img.fidx: differs: bytes 41943040-46137343 (chunks 10-10)
EOF2
check "changed chain: one stderr line" test "$(wc -l <"$TMP/v.err")" = 1

qemu-img create -q -f qcow2 -b full.qcow2 -F qcow2 "$TMP/grow.qcow2" 70M
vf "$TMP/grow.qcow2"
check "grown chain: exit 1" test $rc = 1
check "grown chain: new chunks and sizes named" grep -q \
  'bytes 67108864-73400319 (chunks 16-17)' "$TMP/v.out"
check "grown chain: sizes" grep -q 'size 67108864 in the snapshot, 73400320 in the chain' "$TMP/v.out"
qemu-img create -q -f qcow2 -b full.qcow2 -F qcow2 "$TMP/shrink.qcow2" 62M
vf "$TMP/shrink.qcow2"
check "shrunk chain: exit 1, last chunks differ" \
  grep -q 'bytes 62914560-67108863 (chunks 15-15)' "$TMP/v.out"
expect_fail2 "verify of a missing snapshot: exit 2" \
  "$TOOL" verify --repository "$ds" vm/v/999 "$TMP/full.qcow2"
expect_fail2 "verify of a missing image: exit 2" \
  "$TOOL" verify --repository "$ds" "$s" "$TMP/nothere.qcow2"

# JSON: the verdict and the ranges as offset/length (from the writes above).
jv () { # jv IMAGE: JSON verify into $TMP/v.json, exit status in $rc
  rc=0
  "$TOOL" verify --repository "$ds" --output-format json "$s" "$1" \
    >"$TMP/v.json" 2>"$TMP/v.err" || rc=$?
}
jq_ () { python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$TMP/v.json" "$1" 2>/dev/null; }
jv "$TMP/full.qcow2"
check "json identical: exit 0" test $rc = 0
check "json identical: identical true" test "$(jq_ 'j["identical"], j["archives"][0]["identical"], j["archives"][0]["differences"]')" = "(True, True, [])"
jv "$TMP/top.qcow2"
check "json changed: exit 1" test $rc = 1
check "json changed: ranges" test \
  "$(jq_ '[(r["offset"], r["length"]) for r in j["archives"][0]["differences"]]')" \
  = "[(12582912, 12582912), (41943040, 4194304)]"
check "json changed: identical false" test "$(jq_ 'j["identical"]')" = False
jv "$TMP/grow.qcow2"
check "json grown: both sizes" test \
  "$(jq_ 'j["archives"][0]["snapshot_size"], j["archives"][0]["chain_size"]')" \
  = "(67108864, 73400320)"
done_testing
