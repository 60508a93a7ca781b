#!/bin/bash
# test-qcow-chain.sh -- how the chain is found: --chain for overlays whose
# backing pointer is missing or stale (qmpbackup writes INC files without
# one), relative/absolute/raw backing files, a backing name without a
# format (refused unless --probe-backing-format), and the names and shapes
# that must be refused: json: and protocol names, loops, missing files.
. "$(dirname "$0")/../helpers/functions.sh"
. "$(dirname "$0")/../helpers/qcow-lib.sh"

d=$TMP/c
mkdir "$d"
mk "$d/full.qcow2" 8M
io "$d/full.qcow2" 'write -P 0x11 0 2M' 'write -P 0x12 5M 64k'
overlay "$d/incr0.qcow2" "$d/full.qcow2"
io "$d/incr0.qcow2" 'write -P 0x21 1M 64k' 'write -z 5M 64k'
overlay "$d/incr1.qcow2" "$d/incr0.qcow2"
io "$d/incr1.qcow2" 'write -P 0x31 7M 64k' 'discard 0 64k'
qemu-img convert -O raw "$d/incr1.qcow2" "$TMP/ref.raw"
qemu-img map --output=json "$d/incr1.qcow2" >"$TMP/qemu.json"

# The same images without backing pointers (as qmpbackup leaves them):
# --chain gives the order.  (A stale pointer, one that does not name the
# layer before it, is refused: see test-qcow-chain-safety.sh.)
n=$TMP/nb
mkdir "$n"
cp "$d"/*.qcow2 "$n/"
qemu-img rebase -u -b '' "$n/incr0.qcow2"
qemu-img rebase -u -b stale.qcow2 -F qcow2 "$n/incr1.qcow2"
expect_fail "--chain: a stale backing pointer is refused" \
  "$TOOL" info --chain "$n/full.qcow2,$n/incr0.qcow2,$n/incr1.qcow2"
qemu-img rebase -u -b '' "$n/incr1.qcow2"
chain="$n/full.qcow2,$n/incr0.qcow2,$n/incr1.qcow2"
"$TOOL" export --chain "$chain" "$TMP/out.raw"
same_bytes "$TMP/ref.raw" "$TMP/out.raw" "--chain without backing pointers: export"
"$TOOL" map --output-format json --chain "$chain" >"$TMP/ours.json"
if python3 "$QT" mapcmp "$TMP/ours.json" "$TMP/qemu.json" >"$TMP/cmp"; then
  pass "--chain without backing pointers: map"
else fail "--chain map differs: $(head -3 "$TMP/cmp")"; fi
"$TOOL" info --output-format json --chain "$chain" >"$TMP/info.json"
check "--chain: info has 3 layers" python3 -c '
import json, sys; i = json.load(open(sys.argv[1]))
sys.exit(0 if len(i["layers"]) == 3 and i["layers"][2]["path"].endswith("full.qcow2") else 1)' "$TMP/info.json"
qemu-img rebase -u -b stale.qcow2 -F qcow2 "$n/incr1.qcow2"
expect_bad_open "stale backing pointer without --chain" "$n/incr1.qcow2"
qemu-img rebase -u -b '' "$n/incr1.qcow2"
# A file name with a comma, escaped as ",,".
cp "$n/full.qcow2" "$n/fu,ll.qcow2"
rm "$TMP/out.raw"
"$TOOL" export --chain "$n/fu,,ll.qcow2,$n/incr0.qcow2,$n/incr1.qcow2" "$TMP/out.raw"
same_bytes "$TMP/ref.raw" "$TMP/out.raw" "--chain: ',,' escapes a comma"
rc=0; "$TOOL" export --chain "$n/full.qcow2,,$n/incr0.qcow2," "$TMP/o.raw" 2>/dev/null || rc=$?
check "--chain with an empty name: usage error" [ $rc = 2 ]
rc=0; "$TOOL" map --chain "$chain" "$n/incr0.qcow2" 2>/dev/null || rc=$?
check "--chain plus an IMAGE that is not its top: usage error" [ $rc = 2 ]
rc=0; "$TOOL" map --chain "$chain" "$n/incr1.qcow2" >/dev/null || rc=$?
check "--chain plus its own top as IMAGE: accepted" [ $rc = 0 ]
rm -f "$TMP/out.raw"

# Raw and absolute backing files are followed (one outside the top's
# directory only when that directory is allowed).
r=$TMP/raw
mkdir "$r"
python3 -c 'import sys; open(sys.argv[1], "wb").write(bytes(range(256)) * 4096 * 4)' "$r/base.raw"
qemu-img create -q -f qcow2 -b base.raw -F raw "$r/top.qcow2"
io "$r/top.qcow2" 'write -P 0x41 64k 64k'
check_image "raw backing file" "$r/top.qcow2"
qemu-img create -q -f qcow2 -b "$d/incr0.qcow2" -F qcow2 "$r/abs.qcow2"
io "$r/abs.qcow2" 'write -P 0x42 3M 4k'
expect_bad_open "absolute backing name outside the directory" "$r/abs.qcow2"
check_image "absolute backing name, --allow-backing-dir" "$r/abs.qcow2" \
  --allow-backing-dir "$d"

# No backing format stored: refused, unless --probe-backing-format (then
# the result is what QEMU's probing gives).
p=$TMP/probe
mkdir "$p"
cp "$d/full.qcow2" "$p/"
overlay "$p/top.qcow2" "$p/full.qcow2"
python3 "$QT" dropext "$p/top.qcow2" 0xe2792aca
io "$p/top.qcow2" 'write -P 0x51 0 64k'
if qemu-img info --output=json "$p/top.qcow2" | grep -q backing-filename-format; then
  fail "fixture: backing format still stored"
else pass "fixture: no backing format stored"; fi
expect_bad_open "backing without format" "$p/top.qcow2"
check_image "--probe-backing-format" "$p/top.qcow2" --probe-backing-format

# Names and shapes that are refused.
b=$TMP/bad
mkdir "$b"
mk "$b/self.qcow2" 1M
qemu-img rebase -u -b self.qcow2 -F qcow2 "$b/self.qcow2"
expect_bad_open "backing loop (self)" "$b/self.qcow2"
mk "$b/a.qcow2" 1M
mk "$b/b.qcow2" 1M
qemu-img rebase -u -b b.qcow2 -F qcow2 "$b/a.qcow2"
qemu-img rebase -u -b a.qcow2 -F qcow2 "$b/b.qcow2"
expect_bad_open "backing loop (two files)" "$b/a.qcow2"
ln -s a.qcow2 "$b/alias.qcow2"
mk "$b/c.qcow2" 1M
qemu-img rebase -u -b alias.qcow2 -F qcow2 "$b/c.qcow2"
qemu-img rebase -u -b c.qcow2 -F qcow2 "$b/a.qcow2"
expect_bad_open "backing loop through a symlink" "$b/c.qcow2"
echo "SECRET-CONTENT-123" >"$b/secret.txt"
mk "$b/json.qcow2" 1M
qemu-img rebase -u -F raw \
  -b "json:{\"driver\":\"raw\",\"file\":{\"driver\":\"file\",\"filename\":\"$b/secret.txt\"}}" \
  "$b/json.qcow2"
expect_bad_open "json: backing name" "$b/json.qcow2"
mk "$b/nbd.qcow2" 1M
qemu-img rebase -u -F raw -b "nbd+unix:///x?socket=$b/none.sock" "$b/nbd.qcow2"
expect_bad_open "protocol backing name" "$b/nbd.qcow2"
cp "$d/full.qcow2" "$d/incr0.qcow2" "$b/"
overlay "$b/top.qcow2" "$b/incr0.qcow2"
rm "$b/full.qcow2"
expect_bad_open "missing backing file" "$b/top.qcow2"
if grep -q "full.qcow2" "$TMP/ef.err"; then pass "error names the missing file"
else fail "error does not name full.qcow2: $(cat "$TMP/ef.err")"; fi
expect_bad_open "missing image" "$b/nonexistent.qcow2"
expect_bad_open "not qcow2 (raw file as IMAGE)" "$r/base.raw"

done_testing
