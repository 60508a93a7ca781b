#!/bin/bash
# test-cli-json.sh -- --output-format json everywhere: an error is one JSON
# object on one stderr line (stdout empty, exit status as in text mode,
# also for a usage error found before --output-format); export and key
# create report in JSON; push's JSON keeps its field names and adds the
# layers used (oldest first) and backup_time, and its text lists the
# layers.  Golden data: qemu-img info/map/convert, python3 json/datetime.
. "$(dirname "$0")/../helpers/functions.sh"
requires qemu-img
requires python3
d=$TMP/img
mkdir "$d"
qemu-img create -q -f qcow2 "$d/full.qcow2" 64M
qemu-io -c 'write -P 0x11 0 5M' -c 'write -P 0x22 30M 1M' "$d/full.qcow2" >/dev/null
qemu-img create -q -f qcow2 -b full.qcow2 -F qcow2 "$d/incr0.qcow2" 64M
qemu-io -c 'write -P 0x33 4M 2M' -c 'write -z 30M 64k' "$d/incr0.qcow2" >/dev/null
ds=$DS_TMP/ds

# json_error DESCRIPTION STATUS CONTEXT CMD...: CMD exits STATUS with an
# empty stdout and one stderr line that is a JSON object whose "error"
# starts with CONTEXT and whose "context" is CONTEXT.
json_error () {
  local desc=$1 want=$2 ctx=$3 rc=0; shift 3
  "$@" >"$TMP/out" 2>"$TMP/err" </dev/null || rc=$?
  if [ $rc = "$want" ] && [ ! -s "$TMP/out" ] && [ "$(wc -l <"$TMP/err")" = 1 ] &&
     python3 - "$TMP/err" "$ctx" "$want" <<'PY'
import json, sys
o = json.loads(open(sys.argv[1]).read())
ctx, status = sys.argv[2], sys.argv[3]
assert isinstance(o, dict) and isinstance(o["error"], str), o
assert o["error"].startswith(ctx + ": ") and o["context"] == ctx, o
assert o.get("usage", False) == (status == "2"), o
PY
  then pass "$desc: $(cat "$TMP/err")"
  else fail "$desc (exit $rc): $(head -c 300 "$TMP/err")"; fi
}
J="--output-format json"
json_error "info: missing image" 1 "$d/none.qcow2" "$TOOL" info $J "$d/none.qcow2"
json_error "map: missing image" 1 "$d/none.qcow2" "$TOOL" map $J "$d/none.qcow2"
json_error "bitmap: no such bitmap" 1 "$d/incr0.qcow2" "$TOOL" bitmap $J "$d/incr0.qcow2" nosuch
json_error "export: missing image" 1 "$d/none.qcow2" "$TOOL" export $J "$d/none.qcow2" "$TMP/x.raw"
json_error "export: JSON report with OUT '-' is a usage error" 2 export "$TOOL" export $J "$d/incr0.qcow2" -
json_error "push: missing image" 1 "$d/none.qcow2" "$TOOL" push $J --repository "$ds" --backup-id 1 "$d/none.qcow2"
json_error "push: unknown option before --output-format" 2 push "$TOOL" push --frob $J "$d/incr0.qcow2"
json_error "push: --output-format=json form" 2 push "$TOOL" push --frob --output-format=json "$d/incr0.qcow2"
json_error "snapshots: bad namespace" 2 snapshots "$TOOL" snapshots $J --repository "$ds" --ns 'a b'
json_error "snapshots: no repository" 1 repository env -u PBS_REPOSITORY "$TOOL" snapshots $J
json_error "key show: missing file" 1 "$d/none.json" "$TOOL" key show $J "$d/none.json"
"$TOOL" key create --kdf none "$TMP/k.json" || true
json_error "key create: existing file" 1 "$TMP/k.json" "$TOOL" key create $J --kdf none "$TMP/k.json"
check "no datastore made by the failures" test ! -e "$ds"
rc=0; "$TOOL" info "$d/none.qcow2" 2>"$TMP/err" || rc=$?
check "text mode unchanged: one 'qcow2pbs: FILE: ...' line, exit 1" \
  test $rc = 1 -a -n "$(grep "^qcow2pbs: $d/none.qcow2: " "$TMP/err")"

# export's report, against qemu-img.
qemu-img info --backing-chain --output=json "$d/incr0.qcow2" >"$TMP/qinfo.json"
qemu-img map --output=json "$d/incr0.qcow2" >"$TMP/qmap.json"
qemu-img convert -O raw "$d/incr0.qcow2" "$TMP/ref.raw"
rc=0; "$TOOL" export $J "$d/incr0.qcow2" "$TMP/e.raw" >"$TMP/export.json" || rc=$?
check "export JSON: exit 0" test $rc = 0
same_bytes "$TMP/e.raw" "$TMP/ref.raw" "export JSON: the disk as qemu-img convert"
check "export JSON: output, size, data_bytes, layers as qemu-img says" python3 - \
  "$TMP/export.json" "$TMP/qinfo.json" "$TMP/qmap.json" "$TMP/e.raw" <<'PY'
import json, os, sys
r = json.load(open(sys.argv[1]))
chain = json.load(open(sys.argv[2]))
extents = json.load(open(sys.argv[3]))
assert r["output"] == sys.argv[4], r
assert r["size"] == chain[0]["virtual-size"], r
assert r["data_bytes"] == sum(e["length"] for e in extents if e["data"]), r
rp = os.path.realpath
assert [rp(p) for p in r["layers"]] == [rp(l["filename"]) for l in reversed(chain)], r
PY

# key create's report is key show's.
"$TOOL" key create $J --kdf none "$TMP/k2.json" >"$TMP/kc.json" || true
"$TOOL" key show $J "$TMP/k2.json" >"$TMP/ks.json" || true
check "key create JSON = key show JSON" python3 -c 'import json, sys
a, b = (json.load(open(f)) for f in sys.argv[1:])
assert a == b and a["kdf"] == "none", (a, b)' "$TMP/kc.json" "$TMP/ks.json"

# push: the old field names, the layers used, backup_time.
t=1767323045   # 2026-01-02T03:04:05Z
"$TOOL" push $J --repository "$ds" --backup-id 7 --backup-time $t "$d/full.qcow2" >"$TMP/p0.json" || true
"$TOOL" push $J --repository "$ds" --backup-id 7 --backup-time $((t + 60)) "$d/incr0.qcow2" >"$TMP/p1.json" || true
"$TOOL" push $J --dry-run --repository "$ds" --backup-id 7 --backup-time $((t + 120)) "$d/incr0.qcow2" >"$TMP/p2.json" || true
check "push JSON: old fields kept, layers and backup_time added" python3 - \
  "$TMP/qinfo.json" "$t" "$TMP/p0.json" "$TMP/p1.json" "$TMP/p2.json" <<'PY'
import datetime, json, os, sys
chain = [os.path.realpath(l["filename"]) for l in reversed(json.load(open(sys.argv[1])))]
t0 = int(sys.argv[2])
old_top = {"snapshot", "ns", "dry_run", "archives"}
old_arch = {"name", "size", "chunks", "zero_chunks", "reused_chunks",
            "read_chunks", "read_bytes", "stored_chunks", "stored_bytes",
            "incremental", "reason"}
for i, f in enumerate(sys.argv[3:]):
    r = json.load(open(f))
    assert old_top <= set(r), r.keys()
    assert r["backup_time"] == t0 + 60 * i, r
    name_time = r["snapshot"].split("/")[2]
    dt = datetime.datetime.strptime(name_time, "%Y-%m-%dT%H:%M:%SZ")
    assert int(dt.replace(tzinfo=datetime.timezone.utc).timestamp()) == r["backup_time"], r
    a = r["archives"][0]
    assert old_arch <= set(a), a.keys()
    want = chain[:1] if i == 0 else chain
    assert [os.path.realpath(p) for p in a["layers"]] == want, (a["layers"], want)
    assert r["dry_run"] == (i == 2)
PY
"$TOOL" push --repository "$ds" --backup-id 7 --backup-time $((t + 180)) "$d/incr0.qcow2" >"$TMP/p3.txt" || true
check "push text: lists the layers, oldest first" \
  grep -qxF "    layers (oldest first): $d/full.qcow2 $d/incr0.qcow2" "$TMP/p3.txt"
done_testing
