#!/bin/bash
# test-qcow-qmp.sh -- chains made by the real backup workflow: QEMU over
# QMP (tests/helpers/qmp.py), blockdev-backup sync=full + a persistent bitmap, guest
# writes (data, write -z, write -z -u, discard) and sync=incremental into
# overlays.  Every layer of every chain: export = qemu-img convert, map =
# qemu-img map; info = qemu-img info; --chain = the images' own chain.
. "$(dirname "$0")/../helpers/functions.sh"
. "$(dirname "$0")/../helpers/qcow-lib.sh"
requires qemu-system-x86_64

run_chain () { # run_chain DIR ARGS... -> the layers, comma separated
  local dir=$1; shift
  python3 "$top/tests/helpers/qmp.py" chain --dir "$dir" "$@"
}

# 12 incrementals of a 64 MiB disk (v3 targets).
chain=$(run_chain "$TMP/q12" --size 64M --incrementals 12 --seed 3)
IFS=, read -ra layers <<<"$chain"
check "13 layers" [ ${#layers[@]} = 13 ]
check_chain "qmp" "${layers[@]}"
top_img=${layers[-1]}

# The incrementals hold zero flags for zeroed/discarded ranges (the v3
# encoding of "changed to zeros"), as qemu-img map shows.
if qemu-img map --output=json "$top_img" | grep -q '"present": true, "zero": true, "data": false'; then
  pass "qmp chain has zero-flag clusters"
else fail "qmp chain has no zero-flag clusters"; fi

"$TOOL" info --output-format json "$top_img" >"$TMP/oi.json"
qemu-img info --backing-chain --output=json "$top_img" >"$TMP/qi.json"
if python3 "$QT" infocmp "$TMP/oi.json" "$TMP/qi.json" >"$TMP/cmp"; then
  pass "qmp: info = qemu-img info --backing-chain"
else fail "qmp: info differs: $(head -5 "$TMP/cmp")"; fi

qemu-img convert -O raw "$top_img" "$TMP/ref.raw"
"$TOOL" export --chain "$chain" "$TMP/chain.raw"
same_bytes "$TMP/ref.raw" "$TMP/chain.raw" "qmp: export --chain = qemu-img convert of the top"
"$TOOL" export "$top_img" - >"$TMP/stdout.raw"
same_bytes "$TMP/ref.raw" "$TMP/stdout.raw" "qmp: export to stdout (regular file)"
"$TOOL" export "$top_img" - | cat >"$TMP/pipe.raw"
same_bytes "$TMP/ref.raw" "$TMP/pipe.raw" "qmp: export to a pipe"
rm -f "$TMP"/*.raw

# v2 (compat=0.10) targets: zeroing arrives as zero data, not zero flags.
chain=$(run_chain "$TMP/qv2" --size 16M --incrementals 3 --seed 5 \
          --target-opts compat=0.10)
IFS=, read -ra layers <<<"$chain"
check_chain "qmp v2 targets" "${layers[@]}"

# Targets with other layouts than the source: 4 KiB clusters and extended
# L2 with 128 KiB clusters; the bitmap granularity (64 KiB) is the copy
# unit.
chain=$(run_chain "$TMP/q4k" --size 16M --incrementals 2 --seed 7 \
          --target-opts cluster_size=4096)
IFS=, read -ra layers <<<"$chain"
check_chain "qmp 4k targets" "${layers[@]}"
chain=$(run_chain "$TMP/qx" --size 16M --incrementals 2 --seed 9 \
          --target-opts extended_l2=on,cluster_size=128k --granularity 16384)
IFS=, read -ra layers <<<"$chain"
check_chain "qmp extended-L2 targets" "${layers[@]}"

done_testing
