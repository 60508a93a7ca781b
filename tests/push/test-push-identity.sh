#!/bin/bash
# test-push-identity.sh -- the "header-sha256" each push records per layer
# (docs/incremental-identity.md) is qcowlib's qcow_layer_header_sha256:
#  - it is SHA-256 over exactly the documented bytes: for qcow2 the first
#    cluster and the L1 table as the header states it (also when a shrink
#    left the table longer than the disk needs, with 512-byte clusters
#    and with 2 MiB ones); for raw
#    the first 64 KiB; for a tar member read in place, the member's own
#    bytes;
#  - a record written by an earlier build (B_OLD, default
#    /tmp/base-s14/build: the build before the hash moved into qcowlib)
#    is still recognised: the same chain is "unchanged" (--skip-unchanged
#    makes no snapshot) and a new layer on top is an incremental push.
# Oracles: qemu-img, qemu-io, python3 hashlib/struct/tarfile, tar.
. "$(dirname "$0")/../helpers/functions.sh"
. "$(dirname "$0")/../helpers/push-functions.sh"
requires qemu-img
requires qemu-io
requires python3
requires tar
[ -x "$TOOL" ] || skip "qcow2pbs not built"
B_OLD=${B_OLD:-/tmp/base-s14/build}

d=$TMP/img; mkdir "$d"
# A raw base, a qcow2 layer with 512-byte clusters, one with 2 MiB
# clusters, one shrunk after it was written (QEMU keeps the longer L1
# table).
qemu-img create -q -f raw "$d/base.raw" 16M
qemu-io -f raw -c 'write -P 1 0 1M' "$d/base.raw" >/dev/null
qemu-img create -q -f qcow2 -o cluster_size=512 -b base.raw -F raw "$d/i0.qcow2"
qemu-io -c 'write -P 2 4M 1M' "$d/i0.qcow2" >/dev/null
qemu-img create -q -f qcow2 -o cluster_size=2M -b i0.qcow2 -F qcow2 "$d/i1.qcow2"
qemu-io -c 'write -P 3 8M 1M' "$d/i1.qcow2" >/dev/null
qemu-img create -q -f qcow2 -b i1.qcow2 -F qcow2 "$d/i2.qcow2" 64G
qemu-io -c 'write -P 4 12M 1M' "$d/i2.qcow2" >/dev/null
qemu-img resize -q --shrink "$d/i2.qcow2" 16M

# want_hash FILE [OFFSET LENGTH]: the documented bytes, hashed by python.
want_hash () {
  python3 - "$@" <<'PY'
import hashlib, struct, sys
f = open(sys.argv[1], "rb")
off = int(sys.argv[2]) if len(sys.argv) > 2 else 0
f.seek(0, 2)
size = int(sys.argv[3]) if len(sys.argv) > 3 else f.tell()
def rd(o, n):
    if o >= size: return b""
    n = min(n, size - o); f.seek(off + o); b = f.read(n); assert len(b) == n; return b
h = hashlib.sha256()
hdr = rd(0, 48)
if hdr[:4] == b"QFI\xfb":
    cluster = 1 << struct.unpack(">I", hdr[20:24])[0]
    l1_size, l1_off = struct.unpack(">IQ", hdr[36:48])
    h.update(rd(0, cluster)); h.update(rd(l1_off, l1_size * 8))
else:
    h.update(rd(0, 65536))
print(h.hexdigest())
PY
}
# recorded SNAPDIR: "path header-sha256" per layer of drive-scsi0's record.
recorded () {
  python3 "$top/tests/helpers/pve_rules.py" blob "$1/index.json.blob" | python3 -c '
import json, sys
m = json.load(sys.stdin)
for l in m["unprotected"]["qcow2pbs"]["archives"]["drive-scsi0.img.fidx"]["layers"]:
    print(l["path"], l["header-sha256"])'
}
check "i2's L1 table is longer than its 16 MiB needs (qemu-img shrink keeps it)" python3 -c '
import struct, sys
h = open(sys.argv[1], "rb").read(48)
assert struct.unpack(">I", h[36:40])[0] > 1, h[36:40]' "$d/i2.qcow2"

DS=$DS_TMP/ds
T0=1700000000
"$TOOL" push --repository "$DS" --backup-id n --backup-time $T0 "$d/i2.qcow2" >/dev/null
snap=$DS/vm/n/$(ls "$DS/vm/n" | grep T | head -1)
recorded "$snap" >"$TMP/rec"
check "four layers recorded" test "$(wc -l <"$TMP/rec")" = 4
while read -r path hash; do
  check "header-sha256 of $(basename "$path") = python's hash of the documented bytes" \
    test "$hash" = "$(want_hash "$path")"
done <"$TMP/rec"

# --- a tar member read in place: the member's bytes, not the archive's
tar -C "$d" -cf "$TMP/c.tar" base.raw i0.qcow2 i1.qcow2
"$TOOL" push --repository "$DS" --backup-id t --backup-time $T0 --from-archive "$TMP/c.tar" \
  --disk "drive-scsi0=base.raw,i0.qcow2,i1.qcow2" >/dev/null
snap=$DS/vm/t/$(ls "$DS/vm/t" | grep T | head -1)
recorded "$snap" >"$TMP/trec"
python3 -c '
import sys, tarfile
for m in tarfile.open(sys.argv[1]):
    print(m.name, m.offset_data, m.size)' "$TMP/c.tar" >"$TMP/members"
while read -r name off len; do
  check "tar member $name: header-sha256 = python's hash of the member's bytes" \
    test "$(awk -v n="$name" '$1 == n { print $2 }' "$TMP/trec")" = "$(want_hash "$TMP/c.tar" "$off" "$len")"
done <"$TMP/members"

# --- records written by the earlier build are still recognised
if [ -x "$B_OLD/qcow2pbs" ]; then
  OLD=$DS_TMP/old
  for src in file tar; do
    if [ $src = file ]; then args=("$d/i1.qcow2"); more=("$d/i2.qcow2")
    else args=(--from-archive "$TMP/c.tar" --disk "drive-scsi0=base.raw,i0.qcow2,i1.qcow2")
         more=(); fi
    "$B_OLD/qcow2pbs" push --repository "$OLD" --backup-id $src --backup-time $T0 "${args[@]}" >/dev/null
    rc=0; "$TOOL" push --repository "$OLD" --backup-id $src --backup-time $((T0 + 1)) \
      --skip-unchanged "${args[@]}" >"$TMP/o.out" 2>&1 || rc=$?
    check "$src: the earlier build's record: the same chain is unchanged (exit $rc): $(head -c 300 "$TMP/o.out")" \
      test $rc = 0 -a ! -e "$OLD/vm/$src/2023-11-14T22:13:21Z"
    check "$src: ... --skip-unchanged says so" grep -q "unchanged since vm/$src/2023-11-14T22:13:20Z: no snapshot made" "$TMP/o.out"
    if [ ${#more[@]} -gt 0 ]; then
      "$TOOL" push --repository "$OLD" --backup-id $src --backup-time $((T0 + 2)) \
        --output-format json "${more[@]}" >"$TMP/o.json"
      check "$src: a new layer over the earlier build's snapshot is incremental ($(json_field "$TMP/o.json" 'a.get("reason")'))" \
        test "$(json_field "$TMP/o.json" 'a["incremental"]')" = True
      check "$src: ... reads only what the new layer touched ($(got_counts "$TMP/o.json"))" \
        test "$(got_counts "$TMP/o.json")" = "$(expected_counts "$d/i2.qcow2" "$d/i2.qcow2")"
    fi
  done
else
  echo "# $B_OLD/qcow2pbs not built: the earlier build's records are not checked"
fi
done_testing
