# push-functions.sh -- sourced by tests/push/test-push-*.sh, test-restore-*.sh
# and test-verify-*.sh after functions.sh.  Every oracle here is
# independent of our code: qemu-img, python3 hashlib/zlib/json and the
# zstd CLI.

CHUNK=4194304

# raw_of IMAGE OUT: the merged disk as QEMU reads it.
raw_of () { qemu-img convert -O raw "$1" "$2"; }

# restore_equals DS SNAPSHOT ARCHIVE IMAGE DESCRIPTION [restore options]:
# restore the archive and compare it with qemu-img's view of IMAGE.
restore_equals () {
  local ds=$1 snap=$2 arch=$3 img=$4 d=$5; shift 5
  rm -f "$TMP/re.raw" "$TMP/re.want"
  if ! "$TOOL" restore --repository "$ds" "$@" "$snap" "$arch" "$TMP/re.raw" \
       2>"$TMP/re.err"; then
    fail "$d: restore failed: $(cat "$TMP/re.err")"; return
  fi
  raw_of "$img" "$TMP/re.want"
  same_bytes "$TMP/re.raw" "$TMP/re.want" "$d"
}

# json_field FILE EXPR: evaluate a python expression over the push JSON
# (bound to j; a = j["archives"][0]).
json_field () {
  python3 -c 'import json,sys
j = json.load(open(sys.argv[1])); a = j["archives"][0]
print(eval(sys.argv[2]))' "$1" "$2"
}

# snap_of FILE: the "snapshot" of a push JSON.
snap_of () { json_field "$1" 'j["snapshot"]'; }

# expected_counts TOP NEWLAYER...: from qemu-img map (depth-0 extents of
# each new layer, data extents of the merged top), print
# "reused=N read=N zero=N" for an incremental push of TOP whose new
# layers are NEWLAYER...  (unchanged disk size assumed); NEWLAYER "ALL"
# gives the figures of a full read.
expected_counts () {
  python3 - "$@" <<'EOF'
import json, subprocess, sys
C = 4194304
top, new = sys.argv[1], sys.argv[2:]
def qmap(img):
    return json.loads(subprocess.check_output(
        ["qemu-img", "map", "--output=json", img]))
def chunks(ext):
    s = set()
    for e in ext:
        if e["length"]:
            s.update(range(e["start"] // C, (e["start"] + e["length"] - 1) // C + 1))
    return s
touched = set()
m = qmap(top)
size = max(e["start"] + e["length"] for e in m)
n = (size + C - 1) // C
for l in new:
    if l == "ALL":   # a full read: every chunk counts as touched
        touched |= set(range(n))
    else:
        touched |= chunks([e for e in qmap(l) if e["depth"] == 0])
data = chunks([e for e in m if e["data"]])
touched = {c for c in touched if c < n}
print("reused=%d read=%d zero=%d" % (n - len(touched), len(touched & data),
                                     len(touched - data)))
EOF
}

# got_counts JSON: the same figures from a push's JSON output.
got_counts () {
  json_field "$1" '"reused=%d read=%d zero=%d" % (a["reused_chunks"], a["read_chunks"], a["zero_chunks"])'
}

# ds_consistent DS: nothing half-done in datastore DS: no temporary files,
# no snapshot directory without a manifest, every plain chunk decodes
# (CRC via zlib.crc32, zstd via the zstd CLI) to data whose sha256 is its
# name, every encrypted chunk has a valid CRC.  Prints problems; exit 1.
ds_consistent () {
  python3 - "$1" <<'EOF'
import hashlib, os, re, subprocess, sys, zlib
ds = sys.argv[1]
PLAIN = bytes.fromhex("42ab3807be8370a1"); ZSTD = bytes.fromhex("31b958426fb6a37f")
ENC = bytes.fromhex("7b6785be222d4cf0"); ENCZ = bytes.fromhex("e6591bbf0bbfd80b")
bad = []
for root, dirs, files in os.walk(ds):
    for f in files:
        p = os.path.join(root, f)
        if ".tmp" in f or f.startswith(".") and f not in (".lock", ".gc-status"):
            bad.append("temporary file " + p)
    if re.search(r"/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", root) and \
            "index.json.blob" not in files:
        bad.append("snapshot without manifest " + root)
chunks = os.path.join(ds, ".chunks")
n = 0
for sub in (os.listdir(chunks) if os.path.isdir(chunks) else []):
    for f in os.listdir(os.path.join(chunks, sub)):
        p = os.path.join(chunks, sub, f)
        b = open(p, "rb").read()
        n += 1
        magic, crc = b[:8], int.from_bytes(b[8:12], "little")
        if magic in (ENC, ENCZ):
            if zlib.crc32(b[44:]) != crc:
                bad.append("bad crc " + p)
            continue
        if magic not in (PLAIN, ZSTD) or zlib.crc32(b[12:]) != crc:
            bad.append("bad blob " + p); continue
        data = b[12:] if magic == PLAIN else subprocess.run(
            ["zstd", "-d", "-c", "-q"], input=b[12:], stdout=subprocess.PIPE,
            check=True).stdout
        if hashlib.sha256(data).hexdigest() != f or not f.startswith(sub):
            bad.append("wrong content " + p)
for x in bad:
    print(x)
print("checked %d chunks" % n, file=sys.stderr)
sys.exit(1 if bad else 0)
EOF
}

# all_verify DS IMAGE SNAPSHOT...: each snapshot still verifies against
# its own chain is not generally possible (chains change); instead check
# that each snapshot restores with every chunk digest-checked.
all_restore_ok () {
  local ds=$1 s; shift
  for s in "$@"; do
    "$TOOL" restore --repository "$ds" "$s" drive-scsi0 "$TMP/aro.raw" \
      2>"$TMP/aro.err" || { echo "restore $s: $(cat "$TMP/aro.err")"; return 1; }
  done
  rm -f "$TMP/aro.raw"
}
