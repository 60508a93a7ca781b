#!/bin/bash
# test-push-error-path.sh -- an error names its file once.  qcowlib's
# messages start with the layer they are about; push and verify used to
# put the image in front of them again ("top.qcow2: top.qcow2: L2 entry
# ..."), and for a broken lower layer named the top first.  The
# corruption (an unaligned L2 entry) is made with python3 struct and
# confirmed by qemu-img check, not by our code.
. "$(dirname "$0")/../helpers/functions.sh"
requires qemu-img
requires qemu-io
requires python3

d=$TMP/img; mkdir "$d"; cd "$d" || exit 1
qemu-img create -q -f qcow2 good.qcow2 16M
qemu-io -c 'write -P 0x5a 0 1M' good.qcow2 >/dev/null
ds=$DS_TMP/ds
"$TOOL" push --repository "$ds" --backup-id 1 --backup-time 1000 \
  good.qcow2 >/dev/null
# bad.qcow2: L2 entry 0 moved 512 bytes off its cluster boundary.
cp good.qcow2 bad.qcow2
python3 - bad.qcow2 <<'PY'
import struct, sys
M = 0x00fffffffffffe00
f = open(sys.argv[1], 'r+b'); h = f.read(48)
f.seek(struct.unpack('>Q', h[40:48])[0])
l2 = struct.unpack('>Q', f.read(8))[0] & M
f.seek(l2); e = struct.unpack('>Q', f.read(8))[0]
f.seek(l2); f.write(struct.pack('>Q', (e & ~M) | ((e & M) + 0x200)))
PY
rc=0; qemu-img check bad.qcow2 >/dev/null 2>&1 || rc=$?
check "qemu-img check finds bad.qcow2 corrupt" test $rc != 0
# top.qcow2: a clean layer over the broken one.
qemu-img create -q -f qcow2 -b bad.qcow2 -F qcow2 top.qcow2

# once FILE: the error line names FILE exactly once, right after the prefix
once () {
  grep -q "^qcow2pbs: $1: " "$TMP/ef.err" &&
    [ "$(grep -o "$1" "$TMP/ef.err" | wc -l)" = 1 ]
}
expect_fail "push of a broken image" \
  "$TOOL" push --repository "$ds" --backup-id 2 bad.qcow2
check "push: bad.qcow2 named once: $(cat "$TMP/ef.err")" once bad.qcow2
expect_fail "push of a chain with a broken base" \
  "$TOOL" push --repository "$ds" --backup-id 3 top.qcow2
check "push: the broken layer named once, the top not in front of it" \
  once bad.qcow2
expect_fail2 "verify against a broken image" \
  "$TOOL" verify --repository "$ds" vm/1/1000 bad.qcow2
check "verify: bad.qcow2 named once: $(cat "$TMP/ef.err")" once bad.qcow2
rc=0
"$TOOL" push --repository "$ds" --backup-id 2 --output-format json \
  bad.qcow2 2>"$TMP/ef.err" || rc=$?
check "JSON: exit 1" test $rc = 1
check "JSON: error names bad.qcow2 once, context is bad.qcow2" python3 -c '
import json, sys
o = json.loads(open(sys.argv[1]).read())
assert o["context"] == "bad.qcow2", o
e = o["error"]
assert e.startswith("bad.qcow2: ") and e.count("bad.qcow2") == 1, o
' "$TMP/ef.err"
check "no snapshot of group 2 or 3" test ! -e "$ds/vm/2" -a ! -e "$ds/vm/3"
done_testing
