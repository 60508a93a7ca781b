#!/bin/bash
# test-qcow-bitmap.sh -- persistent dirty bitmaps: `qcow2pbs bitmap` ranges
# equal what QEMU exports through NBD (qemu-nbd -B NAME + qemu-img map with
# x-dirty-bitmap: dirty = "data": false, docs/qcow2.md §4.5), for bitmaps
# filled by a QMP guest workload and by qemu-io, with several
# granularities, on a layer below the top (--layer), an odd disk size;
# info lists them as qemu-img info does; stale (in-use) and unknown bitmaps
# are refused.
. "$(dirname "$0")/../helpers/functions.sh"
. "$(dirname "$0")/../helpers/qcow-lib.sh"
requires qemu-nbd
requires qemu-system-x86_64

nbd_dirty () { # nbd_dirty IMG NAME OUT.json: QEMU's view of the bitmap
  local img=$1 name=$2 out=$3 sock=$TMP/nbd.sock pid=$TMP/nbd.pid
  # --fork returns once the server is listening: no polling.
  qemu-nbd --fork --pid-file="$pid" -r -t -B "$name" -k "$sock" -f qcow2 "$img"
  cleanup_fn "kill \$(cat '$pid' 2>/dev/null) 2>/dev/null"
  qemu-img map --output=json --image-opts \
    "driver=nbd,server.type=unix,server.path=$sock,x-dirty-bitmap=qemu:dirty-bitmap:$name" >"$out"
  kill "$(cat "$pid")"
  # wait for the server to go before the next one binds the socket
  while kill -0 "$(cat "$pid")" 2>/dev/null; do
    tail --pid="$(cat "$pid")" -f /dev/null
  done
  rm -f "$pid" "$sock"
}

check_bitmap () { # check_bitmap DESC IMG NAME [qcow2pbs options...]
  local d=$1 img=$2 name=$3 layer_img; shift 3
  layer_img=$img
  if [ "${1:-}" = --layer ]; then layer_img=$3; set -- "$1" "$2"; fi
  nbd_dirty "$layer_img" "$name" "$TMP/nbd.json"
  if "$TOOL" bitmap --output-format json "$@" "$img" "$name" >"$TMP/bm.json" 2>"$TMP/err"; then
    if python3 "$QT" bitmapcmp "$TMP/bm.json" "$TMP/nbd.json" >"$TMP/cmp"; then
      pass "$d: bitmap $name = qemu-nbd dirty ranges ($(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))))' "$TMP/bm.json") ranges)"
    else fail "$d: bitmap $name differs: $(head -3 "$TMP/cmp")"; fi
  else fail "$d: bitmap $name failed: $(cat "$TMP/err")"; fi
}

# A QMP chain whose guest keeps writing after the last backup: those
# writes are the dirty ranges of b0 stored in the source image.
cat >"$TMP/script" <<'S'
write -P 0x11 0 4M
backup
write -P 0x22 64k 64k
write -z 1M 128k
backup
write -P 0x33 1048576 4096
write -z -u 2M 64k
discard 3M 192k
write -P 0x44 5M 1024
write -P 0x45 16773120 4096
S
python3 "$top/tests/helpers/qmp.py" chain --dir "$TMP/q" --size 16M \
  --script "$TMP/script" >/dev/null
check_bitmap "qmp source" "$TMP/q/src.qcow2" b0
"$TOOL" bitmap "$TMP/q/src.qcow2" b0 >"$TMP/bm.txt"
# text: "start length" lines, same ranges as the JSON
python3 - "$TMP/bm.txt" "$TMP/bm.json" <<'PY' && pass "text output = JSON output" || fail "text output differs from JSON"
import json, sys
t = [tuple(map(int, l.split())) for l in open(sys.argv[1])]
j = [(e["start"], e["length"]) for e in json.load(open(sys.argv[2]))]
sys.exit(0 if t == j and t else 1)
PY

# Offline bitmaps filled by qemu-io, different granularities, one
# disabled, an odd virtual size (tail bits), on the lower layer of a chain.
d=$TMP/off
mkdir "$d"
mk "$d/base.qcow2" 10486784                        # 10 MiB + 1 KiB
qemu-img bitmap --add -g 4096 "$d/base.qcow2" g4k
qemu-img bitmap --add -g 524288 "$d/base.qcow2" g512k
qemu-img bitmap --add -g 65536 "$d/base.qcow2" gdisabled --disable
io "$d/base.qcow2" 'write -P 0x51 0 4096' 'write -P 0x52 12288 8192' \
  'write -P 0x53 1M 3M' 'write -z 6M 64k' 'write -P 0x54 10485760 1024' \
  'discard 8M 4096'
overlay "$d/top.qcow2" "$d/base.qcow2"
qemu-img bitmap --add -g 65536 "$d/top.qcow2" t0
io "$d/top.qcow2" 'write -P 0x61 2M 4096'
for b in g4k g512k gdisabled; do
  check_bitmap "offline layer 1" "$d/top.qcow2" $b --layer 1 "$d/base.qcow2"
done
check_bitmap "offline top" "$d/top.qcow2" t0
"$TOOL" info --output-format json "$d/top.qcow2" >"$TMP/oi.json"
qemu-img info --backing-chain --output=json "$d/top.qcow2" >"$TMP/qi.json"
if python3 "$QT" infocmp "$TMP/oi.json" "$TMP/qi.json" >"$TMP/cmp"; then
  pass "info lists bitmaps as qemu-img info"
else fail "info differs: $(head -3 "$TMP/cmp")"; fi
"$TOOL" bitmap --output-format json "$d/top.qcow2" gdisabled >"$TMP/x.json" 2>&1 && \
  fail "top has no bitmap gdisabled, but it was found" || pass "bitmap of another layer not found on the top"

# Unknown name, a layer that does not exist, and a stale bitmap (QEMU
# killed while the image was open: in_use stays set) are errors.
expect_fail "unknown bitmap" "$TOOL" bitmap "$d/top.qcow2" nosuch
expect_fail "no such layer" "$TOOL" bitmap --layer 5 "$d/top.qcow2" t0
(qemu-io -c 'write -P 0x71 0 4096' -c abort "$d/top.qcow2" >/dev/null 2>&1) 2>/dev/null || true
if qemu-img info --output=json "$d/top.qcow2" | grep -q in-use; then
  pass "fixture: t0 is in use"
  expect_fail "in-use bitmap" "$TOOL" bitmap "$d/top.qcow2" t0
else fail "fixture: abort did not leave t0 in use"; fi
rc=0; "$TOOL" bitmap "$d/top.qcow2" 2>/dev/null || rc=$?
check "usage: missing NAME exits 2" [ $rc = 2 ]

done_testing
