#!/bin/bash
# test-push-qmp.sh -- push full, incr0, incr1 made by real QEMU over QMP
# (tests/helpers/qmp.py: blockdev-backup sync=full/incremental with a persistent
# bitmap) as three snapshots; each restore equals `qemu-img convert` of its
# layer; the incremental pushes read exactly the chunks the new layer's
# clusters cover (expected set from `qemu-img map`); verify says identical,
# and after a qemu-io write into the chain names the right chunk range.
. "$(dirname "$0")/../helpers/functions.sh"
. "$(dirname "$0")/../helpers/push-functions.sh"
requires qemu-img
requires qemu-io
requires qemu-system-x86_64
requires python3
requires zstd

ds=$TMP/ds
cat >"$TMP/script" <<'EOF'
write -P 0x11 0 6M
write -P 0x22 20M 1M
write -P 0x23 33M 64k
backup
write -P 0x33 4M 64k
write -z 20M 1M
write -P 0x44 40M 4M
backup
write -P 0x55 56M 8M
discard 0 64k
write -z -u 33M 64k
backup
EOF
chain=$(python3 "$top/tests/helpers/qmp.py" chain --dir "$TMP/c" --size 64M \
        --script "$TMP/script") || { fail "qmp.py chain"; done_testing; exit; }
IFS=, read -r full incr0 incr1 <<<"$chain"
check "QEMU made full, incr0, incr1" test -f "$incr1"

t=1700000000
n=0
snaps=()
for img in "$full" "$incr0" "$incr1"; do
  t=$((t + 100))
  if "$TOOL" push --repository "$ds" --backup-id 100 --backup-time $t \
       --output-format json "$img" >"$TMP/p$n.json" 2>"$TMP/p$n.err"; then
    pass "push $(basename "$img")"
  else
    fail "push $(basename "$img"): $(cat "$TMP/p$n.err")"; done_testing; exit
  fi
  snaps+=("$(snap_of "$TMP/p$n.json")")
  n=$((n + 1))
done

check "snapshot name is vm/100/RFC3339" \
  test "${snaps[0]}" = "vm/100/2023-11-14T22:15:00Z"
check "first push is a full read" \
  test "$(json_field "$TMP/p0.json" 'a["incremental"]')" = False
check "first push says why" \
  test "$(json_field "$TMP/p0.json" 'a["reason"]')" = "no previous snapshot"
# 64 MiB: 16 chunks; data in chunks 0,1 (0-6M), 5, 8; the rest is zero
# and must not be read.
want=$(expected_counts "$full" ALL)
check "full push reads only chunks with data ($want)" \
  test "$(got_counts "$TMP/p0.json")" = "$want"
check "full push: 4 data chunks" test "$want" = "reused=0 read=4 zero=12"
for i in 1 2; do
  img=$incr0; [ $i = 2 ] && img=$incr1
  check "incr$((i - 1)) push is incremental" \
    test "$(json_field "$TMP/p$i.json" 'a["incremental"]')" = True
  want=$(expected_counts "$img" "$img")
  got=$(got_counts "$TMP/p$i.json")
  if [ "$want" = "$got" ]; then pass "incr$((i - 1)) reads only touched chunks ($got)"
  else fail "incr$((i - 1)) touched chunks: want $want, got $got"; fi
done
check "reused chunks are not stored again" \
  test "$(json_field "$TMP/p1.json" 'a["stored_chunks"] <= a["read_chunks"]')" = True

i=0
for img in "$full" "$incr0" "$incr1"; do
  restore_equals "$ds" "${snaps[$i]}" drive-scsi0 "$img" \
    "restore of snapshot $i equals qemu-img convert of $(basename "$img")"
  i=$((i + 1))
done
# Restoring by epoch and with the full archive name works too.
"$TOOL" restore --repository "$ds" vm/100/$((1700000000 + 300)) \
  drive-scsi0.img.fidx "$TMP/e.raw"
raw_of "$incr1" "$TMP/e.want"
same_bytes "$TMP/e.raw" "$TMP/e.want" "restore by epoch and full archive name"
# Zero chunks become holes.
check "restored file is sparse" \
  test "$(du -k "$TMP/e.raw" | cut -f1)" -lt 40000

# verify: identical, then different after a write into the chain.
out=$("$TOOL" verify --repository "$ds" "${snaps[2]}" "$incr1")
check "verify says identical" grep -qx identical <<<"$out"
qemu-io -c 'write -P 0x77 9M 4k' "$incr1" >/dev/null
rc=0
"$TOOL" verify --repository "$ds" "${snaps[2]}" "$incr1" >"$TMP/v.out" \
  2>"$TMP/v.err" || rc=$?
check "verify after a write exits 1" test $rc = 1
check "verify names the changed chunk" \
  grep -q 'differs: bytes 8388608-12582911 (chunks 2-2)' "$TMP/v.out"
check "datastore consistent" ds_consistent "$ds"
done_testing
