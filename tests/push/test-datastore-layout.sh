#!/bin/bash
# test-datastore-layout.sh -- the on-disk layout of a local datastore, checked
# with independent tools only: python3 (hashlib, zlib.crc32, struct, json),
# the zstd CLI, find/ls.  The sample backup comes from
# tests/helpers/ds-write-sample.c through the public repository API.
. "$(dirname "$0")/../helpers/functions.sh"
requires python3
requires zstd
HELPER=$B/tests/helpers/ds-write-sample
[ -x "$HELPER" ] || skip "$HELPER not built"

ds=$DS_TMP/store
check "first backup writes a snapshot" "$HELPER" "$ds" "$TMP/img.raw"
check "second backup (time + 1) into the same group" "$HELPER" "$ds" "$TMP/img.raw"
check "backup into namespace a/b" "$HELPER" "$ds" "$TMP/img.raw" a/b

check ".chunks has 65536 subdirectories" \
  test "$(find "$ds/.chunks" -mindepth 1 -maxdepth 1 -type d | wc -l)" = 65536
check "chunk subdirectories are named 0000..ffff" \
  test "$(ls "$ds/.chunks" | grep -cE '^[0-9a-f]{4}$')" = 65536
check ".lock exists" test -f "$ds/.lock"
check "owner file is 'root@pam\\n'" \
  test "$(od -An -c "$ds/vm/sample/owner" | tr -s ' ')" = " r o o t @ p a m \n"
check "namespace a/b lives under ns/a/ns/b" test -f "$ds/ns/a/ns/b/vm/sample/owner"
check "no temp files anywhere" \
  test -z "$(find "$ds" -path "$ds/.chunks/*" -prune -o -name '*tmp*' -print; \
             find "$ds/.chunks" -mindepth 2 -name '*tmp*')"

# Every chunk file and every snapshot, checked by python3 with the rules of
# docs/pbs-protocol.md §5.1, §5.2, §5.6, §5.8 and §6.1.
out=$(python3 - "$ds" "$TMP/img.raw" <<'PY'
import hashlib, json, os, re, struct, subprocess, sys, zlib
ds, raw = sys.argv[1], sys.argv[2]
def magic(s): return hashlib.sha256(s.encode()).digest()[:8]
PLAIN = magic("Proxmox Backup uncompressed blob v1.0")
ZSTD = magic("Proxmox Backup zstd compressed blob v1.0")
FIDX = magic("Proxmox Backup fixed sized chunk index v1.0")
def decode(blob):
    assert len(blob) >= 12, "short blob"
    crc = struct.unpack("<I", blob[8:12])[0]
    assert crc == zlib.crc32(blob[12:]) & 0xffffffff, "bad CRC"
    if blob[:8] == PLAIN:
        return blob[12:]
    assert blob[:8] == ZSTD, "unknown magic"
    return subprocess.run(["zstd", "-d", "-q", "-c"], input=blob[12:],
                          stdout=subprocess.PIPE, check=True).stdout
fails = []
chunks = {}
for d in sorted(os.listdir(os.path.join(ds, ".chunks"))):
    for f in os.listdir(os.path.join(ds, ".chunks", d)):
        if not re.fullmatch(r"[0-9a-f]{64}", f) or f[:4] != d:
            fails.append("bad chunk name %s/%s" % (d, f)); continue
        data = decode(open(os.path.join(ds, ".chunks", d, f), "rb").read())
        if hashlib.sha256(data).hexdigest() != f:
            fails.append("chunk %s: sha256 of data differs" % f)
        chunks[f] = data
print("chunks", len(chunks))
zero = hashlib.sha256(bytes(4 << 20)).hexdigest()
if zero != "bb9f8df61474d25e71fa00722318cd387396ca1736605e1248821cc0de3d3af8" or zero not in chunks:
    fails.append("zero chunk missing")
image = open(raw, "rb").read()
snaps = 0
for root, dirs, files in os.walk(ds):
    if ".chunks" in root.split(os.sep): continue
    if "index.json.blob" not in files: continue
    snaps += 1
    name = os.path.basename(root)
    if not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", name):
        fails.append("bad snapshot dir name " + name)
    man = json.loads(decode(open(os.path.join(root, "index.json.blob"), "rb").read()))
    if man["backup-type"] != "vm" or man["backup-id"] != "sample":
        fails.append("manifest group wrong in " + root)
    import time
    if time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(man["backup-time"])) != name:
        fails.append("manifest time != dir name in " + root)
    st = man.get("unprotected", {}).get("chunk_upload_stats")
    if not st or set(st) != {"count", "size", "compressed_size", "duplicates"}:
        fails.append("chunk_upload_stats missing in " + root)
    for fe in man["files"]:
        buf = open(os.path.join(root, fe["filename"]), "rb").read()
        assert fe["filename"].endswith(".fidx")
        if buf[:8] != FIDX: fails.append("fidx magic"); continue
        ctime, = struct.unpack("<q", buf[24:32])
        hcsum = buf[32:64]
        size, cs = struct.unpack("<QQ", buf[64:80])
        n = (size + cs - 1) // cs
        if cs != 4 << 20 or len(buf) != 4096 + 32 * n or any(buf[80:4096]):
            fails.append("fidx header/length"); continue
        digs = [buf[4096 + 32 * i: 4128 + 32 * i] for i in range(n)]
        csum = hashlib.sha256(b"".join(digs)).digest()
        if csum != hcsum: fails.append("fidx header csum")
        if fe["csum"] != csum.hex() or fe["size"] != size:
            fails.append("manifest entry csum/size")
        img = b"".join(chunks[d.hex()] for d in digs)
        if img != image: fails.append("image rebuilt from chunks differs")
print("snapshots", snaps)
for f in fails: print("FAIL", f)
PY
)
echo "$out"
check "every chunk decodes, CRC and sha256 match its name; snapshots rebuild the image" \
  test -z "$(echo "$out" | grep FAIL)"
check "3 distinct chunks (pattern, zero, tail)" grep -qx "chunks 3" <<<"$out"
check "3 finished snapshots" grep -qx "snapshots 3" <<<"$out"

# A snapshot directory without manifest (a crash) is never a base: a
# backup older than it but newer than the last finished one is accepted.
mkdir "$ds/vm/sample/2030-01-01T00:00:00Z"
check "an unfinished dir is not a base" \
  "$HELPER" "$ds" "$TMP/img.raw" "" 1700000005
if "$HELPER" "$ds" "$TMP/img.raw" "" 1700000003 2>"$TMP/err"; then
  fail "older than the last finished snapshot must be refused"
else
  check "older than the last finished snapshot: PBS's error text" \
    grep -q "backup timestamp is older than last backup." "$TMP/err"
fi
check "the refused backup left no directory" \
  test ! -e "$ds/vm/sample/2023-11-14T22:13:23Z"
done_testing
