#!/bin/bash
# test-push-fallback.sh -- the cases where reusing the previous snapshot
# would be wrong, and the ones where it is right.  Each ends with a restore
# compared byte for byte with `qemu-img convert` of the pushed chain.
# Chains are made with qemu-img/qemu-io (64 MiB virtual, a few MiB data).
. "$(dirname "$0")/../helpers/functions.sh"
. "$(dirname "$0")/../helpers/push-functions.sh"
requires qemu-img
requires qemu-io
requires python3
requires zstd

ds=$TMP/ds
mk () { qemu-img create -q -f qcow2 "$@"; }
io () { local f=$1; shift; local a=(); for c in "$@"; do a+=(-c "$c"); done
        qemu-io "${a[@]}" "$f" >/dev/null; }
T=1700000000
# push ID IMAGE [options]: push with a fresh time; JSON in $TMP/last.json,
# snapshot name in $snap.
push () {
  local id=$1 img=$2; shift 2
  T=$((T + 10))
  if ! "$TOOL" push --repository "$ds" --backup-id "$id" --backup-time $T \
       --output-format json "$@" "$img" >"$TMP/last.json" 2>"$TMP/last.err"; then
    fail "push $id $(basename "$img"): $(cat "$TMP/last.err")"; snap=; return 1
  fi
  snap=$(snap_of "$TMP/last.json")
}
inc () { json_field "$TMP/last.json" 'a["incremental"]'; }
why () { json_field "$TMP/last.json" 'a["reason"]'; }
field () { json_field "$TMP/last.json" "a[\"$1\"]"; }

# ---- the normal case and a skipped layer (union of two new layers)
d=$TMP/skip; mkdir "$d"
mk "$d/full.qcow2" 64M; io "$d/full.qcow2" 'write -P 1 0 8M' 'write -P 2 32M 1M'
mk -b full.qcow2 -F qcow2 "$d/incr0.qcow2"; io "$d/incr0.qcow2" 'write -P 3 5M 4k'
mk -b incr0.qcow2 -F qcow2 "$d/incr1.qcow2"; io "$d/incr1.qcow2" 'write -P 4 17M 4k'
mk -b incr1.qcow2 -F qcow2 "$d/incr2.qcow2"; io "$d/incr2.qcow2" 'write -z 32M 1M' 'write -P 5 60M 4M'
push skip "$d/full.qcow2"
push skip "$d/incr0.qcow2"
check "incr0 on its pushed base is incremental" test "$(inc)" = True
push skip "$d/incr2.qcow2"   # incr1 was never pushed
check "incr2 after incr0 (incr1 skipped) is incremental" test "$(inc)" = True
want=$(expected_counts "$d/incr2.qcow2" "$d/incr1.qcow2" "$d/incr2.qcow2")
check "skipped layer: touched = union of incr1 and incr2 ($want)" \
  test "$(got_counts "$TMP/last.json")" = "$want"
restore_equals "$ds" "$snap" drive-scsi0 "$d/incr2.qcow2" "skipped layer: restore equals chain"
# Same chain again: nothing new, everything reused.
push skip "$d/incr2.qcow2"
check "same chain again: all reused" test "$(field reused_chunks)" = 16

# ---- a full backup rewritten in place (same path, same layout)
d=$TMP/inplace; mkdir "$d"
mk "$d/full.qcow2" 64M; io "$d/full.qcow2" 'write -P 1 0 8M'
push inplace "$d/full.qcow2"
io "$d/full.qcow2" 'write -P 9 0 8M'   # same clusters, new data
mk -b full.qcow2 -F qcow2 "$d/incr0.qcow2"; io "$d/incr0.qcow2" 'write -P 3 40M 4k'
push inplace "$d/incr0.qcow2"
check "rewritten full: falls back" test "$(inc)" = False
check "rewritten full: reason names the layer ($(why))" \
  grep -q "full.qcow2 changed since previous snapshot" <<<"$(why)"
restore_equals "$ds" "$snap" drive-scsi0 "$d/incr0.qcow2" "rewritten full: restore equals chain"

# ---- a different full backup of the same disk, identical cluster layout,
# put in place of the old one
d=$TMP/other; mkdir "$d"
mk "$d/full.qcow2" 64M; io "$d/full.qcow2" 'write -P 1 0 8M'
mk "$d/full2.qcow2" 64M; io "$d/full2.qcow2" 'write -P 7 0 8M'
push other "$d/full.qcow2"
mv "$d/full2.qcow2" "$d/full.qcow2"
mk -b full.qcow2 -F qcow2 "$d/incr0.qcow2"; io "$d/incr0.qcow2" 'write -P 3 40M 4k'
push other "$d/incr0.qcow2"
check "other full, same layout: falls back" test "$(inc)" = False
restore_equals "$ds" "$snap" drive-scsi0 "$d/incr0.qcow2" "other full: restore equals chain"

# ---- a chain moved to another directory: the files (inodes) are the same
# and unchanged, so reuse is correct; a layer renamed itself changes its
# ctime, so that falls back.
d=$TMP/move; mkdir "$d"
mk "$d/full.qcow2" 64M; io "$d/full.qcow2" 'write -P 1 0 8M'
mk -b full.qcow2 -F qcow2 "$d/incr0.qcow2"; io "$d/incr0.qcow2" 'write -P 3 40M 4k'
push move "$d/incr0.qcow2" --chain "$d/full.qcow2,$d/incr0.qcow2"
mv "$d" "$TMP/moved"; d=$TMP/moved
mk -b incr0.qcow2 -F qcow2 "$d/incr1.qcow2"; io "$d/incr1.qcow2" 'write -P 4 44M 4k'
push move "$d/incr1.qcow2"
check "moved directory: reuses (same files)" test "$(inc)" = True
restore_equals "$ds" "$snap" drive-scsi0 "$d/incr1.qcow2" "moved directory: restore equals chain"
mv "$d/incr1.qcow2" "$d/incr1b.qcow2"
mk -b incr1b.qcow2 -F qcow2 "$d/incr2.qcow2"; io "$d/incr2.qcow2" 'write -P 5 48M 4k'
push move "$d/incr2.qcow2"
check "renamed layer: falls back" test "$(inc)" = False
restore_equals "$ds" "$snap" drive-scsi0 "$d/incr2.qcow2" "renamed layer: restore equals chain"

# ---- a layer edited after upload
d=$TMP/edit; mkdir "$d"
mk "$d/full.qcow2" 64M; io "$d/full.qcow2" 'write -P 1 0 8M'
mk -b full.qcow2 -F qcow2 "$d/incr0.qcow2"; io "$d/incr0.qcow2" 'write -P 3 40M 4k'
push edit "$d/full.qcow2"
push edit "$d/incr0.qcow2"
io "$d/incr0.qcow2" 'write -P 8 52M 4k'
mk -b incr0.qcow2 -F qcow2 "$d/incr1.qcow2"; io "$d/incr1.qcow2" 'write -P 4 44M 4k'
push edit "$d/incr1.qcow2"
check "edited incr0: falls back" test "$(inc)" = False
check "edited incr0: reason names it ($(why))" grep -q "incr0.qcow2 changed" <<<"$(why)"
check "fallback stores only new chunks ($(field stored_chunks))" \
  test "$(field stored_chunks)" -le 3
restore_equals "$ds" "$snap" drive-scsi0 "$d/incr1.qcow2" "edited incr0: restore equals chain"

# ---- resize: grow, shrink, grow again; then the shrunk snapshot pruned
d=$TMP/resize; mkdir "$d"
mk "$d/full.qcow2" 64M; io "$d/full.qcow2" 'write -P 1 0 8M' 'write -P 2 36M 8M' 'write -P 6 62M 2M'
push resize "$d/full.qcow2"
mk -b full.qcow2 -F qcow2 "$d/incr0.qcow2"
qemu-img resize -q "$d/incr0.qcow2" 82M
io "$d/incr0.qcow2" 'write -P 3 70M 4k' 'write -P 3 81M 4k'
push resize "$d/incr0.qcow2"
check "grown disk: incremental" test "$(inc)" = True
check "grown disk: 16 whole old chunks reused" test "$(field reused_chunks)" = 16
restore_equals "$ds" "$snap" drive-scsi0 "$d/incr0.qcow2" "grown disk: restore equals chain"
mk -b incr0.qcow2 -F qcow2 "$d/incr1.qcow2"
qemu-img resize -q --shrink "$d/incr1.qcow2" 38M
push resize "$d/incr1.qcow2"; shrunk=$snap
check "shrunk disk: incremental" test "$(inc)" = True
check "shrunk disk: 9 whole chunks reused" test "$(field reused_chunks)" = 9
restore_equals "$ds" "$snap" drive-scsi0 "$d/incr1.qcow2" "shrunk disk: restore equals chain"
mk -b incr1.qcow2 -F qcow2 "$d/incr2.qcow2"
qemu-img resize -q "$d/incr2.qcow2" 64M
io "$d/incr2.qcow2" 'write -P 5 4M 4k'
# Prune the shrunk snapshot: the base is incr0's again, new layers are
# incr1 (38 MiB: hides incr0's bytes above it) and incr2.
rm -r "$ds/vm/resize/${shrunk##*/}"
push resize "$d/incr2.qcow2"
check "after prune: incremental over two layers" test "$(inc)" = True
check "after prune: reuses chunks below 36 MiB except the touched one" \
  test "$(field reused_chunks)" = 8
restore_equals "$ds" "$snap" drive-scsi0 "$d/incr2.qcow2" \
  "shrink+grow across a pruned snapshot: restore equals chain (hidden data reads as zeros)"

# ---- a previous snapshot made by another tool (no qcow2pbs record)
d=$TMP/foreign; mkdir "$d"
mk "$d/full.qcow2" 64M; io "$d/full.qcow2" 'write -P 1 0 8M'
mk -b full.qcow2 -F qcow2 "$d/incr0.qcow2"; io "$d/incr0.qcow2" 'write -P 3 40M 4k'
push foreign "$d/full.qcow2"
m=$ds/vm/foreign/${snap##*/}/index.json.blob
python3 - "$m" <<'EOF'
import json, subprocess, sys, zlib
p = sys.argv[1]; b = open(p, "rb").read()
PLAIN = bytes.fromhex("42ab3807be8370a1"); ZSTD = bytes.fromhex("31b958426fb6a37f")
assert b[:8] in (PLAIN, ZSTD) and zlib.crc32(b[12:]) == int.from_bytes(b[8:12], "little")
data = b[12:] if b[:8] == PLAIN else subprocess.run(
    ["zstd", "-d", "-c", "-q"], input=b[12:], stdout=subprocess.PIPE, check=True).stdout
m = json.loads(data)
assert "qcow2pbs" in m["unprotected"]
del m["unprotected"]["qcow2pbs"]
out = json.dumps(m, indent=2, sort_keys=True).encode()
open(p, "wb").write(PLAIN + zlib.crc32(out).to_bytes(4, "little") + out)
EOF
push foreign "$d/incr0.qcow2"
check "foreign previous snapshot: falls back" test "$(inc)" = False
check "foreign: reason ($(why))" test "$(why)" = "previous snapshot has no qcow2pbs record"
check "foreign: still stores only the new chunk ($(field stored_chunks))" \
  test "$(field stored_chunks)" = 1
restore_equals "$ds" "$snap" drive-scsi0 "$d/incr0.qcow2" "foreign: restore equals chain"

# ---- --full and --dry-run
push foreign "$d/incr0.qcow2" --full
check "--full: full read" test "$(why)" = "--full"
check "--full: nothing new stored" test "$(field stored_chunks)" = 0
mk -b incr0.qcow2 -F qcow2 "$d/incr1.qcow2"; io "$d/incr1.qcow2" 'write -P 4 44M 4k'
before=$(ls "$ds/vm/foreign" | wc -l)
chunks_before=$(find "$ds/.chunks" -type f | wc -l)
push foreign "$d/incr1.qcow2" --dry-run
check "--dry-run: would be incremental" test "$(inc)" = True
check "--dry-run: one chunk read, one stored" \
  test "$(field read_chunks)/$(field stored_chunks)" = 1/1
check "--dry-run: no snapshot written" test "$(ls "$ds/vm/foreign" | wc -l)" = "$before"
check "--dry-run: no chunk written" \
  test "$(find "$ds/.chunks" -type f | wc -l)" = "$chunks_before"

# ---- several disks in one snapshot
d=$TMP/multi; mkdir "$d"
mk "$d/a.qcow2" 16M; io "$d/a.qcow2" 'write -P 1 0 1M'
mk "$d/b.qcow2" 10M; io "$d/b.qcow2" 'write -P 2 9M 1M'
push multi "$d/a.qcow2"
T=$((T + 10))
"$TOOL" push --repository "$ds" --backup-id multi --backup-time $T \
  --output-format json "$d/a.qcow2" drive-virtio1="$d/b.qcow2" >"$TMP/last.json"
snap=$(snap_of "$TMP/last.json")
check "two disks: names" test "$(json_field "$TMP/last.json" '",".join(x["name"] for x in j["archives"])')" \
  = "drive-scsi0.img.fidx,drive-virtio1.img.fidx"
restore_equals "$ds" "$snap" drive-scsi0 "$d/a.qcow2" "two disks: first restores"
restore_equals "$ds" "$snap" drive-virtio1 "$d/b.qcow2" "two disks: second (short last chunk) restores"
check "two disks: verify" "$TOOL" verify --repository "$ds" "$snap" "$d/a.qcow2" \
  drive-virtio1="$d/b.qcow2"

# ---- a namespace (created as PBS keeps them: ns/a/ns/b)
mkdir -p "$ds/ns/a/ns/b"
d=$TMP/skip
push nsid "$d/incr0.qcow2" --ns a/b
check "ns: snapshot under ns/a/ns/b" test -d "$ds/ns/a/ns/b/vm/nsid"
check "ns: JSON names the namespace" test "$(json_field "$TMP/last.json" 'j["ns"]')" = a/b
push nsid "$d/incr2.qcow2" --ns a/b
check "ns: second push incremental" test "$(inc)" = True
restore_equals "$ds" "$snap" drive-scsi0 "$d/incr2.qcow2" "ns: restore equals chain" --ns a/b
check "ns: listed in its namespace only" python3 -c '
import json, subprocess, sys
tool, ds = sys.argv[1:]
ls = lambda *a: json.loads(subprocess.check_output([tool, "snapshots", "--repository", ds, "--output-format", "json"] + list(a)))
assert [e["backup-id"] for e in ls("--ns", "a/b")] == ["nsid", "nsid"]
assert "nsid" not in [e["backup-id"] for e in ls()]' "$TOOL" "$ds"

check "datastore consistent" ds_consistent "$ds"
done_testing
