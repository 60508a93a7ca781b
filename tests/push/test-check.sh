#!/bin/bash
# test-check.sh -- qcow2pbs check, locally and through the HTTPS test
# server (reader protocol) over the same datastore: an intact store checks
# ok (and check writes nothing); a flipped byte, a truncated chunk file, a
# missing chunk, a chunk encrypted with another key and an index that does
# not match its manifest are each found (exit 1, the snapshot "failed",
# the bad digest and the byte range it breaks named); a snapshot made with
# another key is found; IMAGE arguments compare with the chain.
# Oracles: digests and byte ranges from python3 hashlib over the raw disk
# (qemu-img convert) and struct over the .fidx files on disk; each damaged
# chunk file is proved damaged by python3 (zlib.crc32 of the blob).
. "$(dirname "$0")/../helpers/functions.sh"
. "$(dirname "$0")/../helpers/push-functions.sh"
requires qemu-img
requires qemu-io
requires python3

ds=$DS_TMP/ds
d=$TMP/img; mkdir "$d"
qemu-img create -q -f qcow2 "$d/full.qcow2" 64M
qemu-io -c 'write -P 1 0 4M' -c 'write -P 2 4M 4M' -c 'write -P 3 8M 2M' \
  -c 'write -P 4 40M 64k' "$d/full.qcow2" >/dev/null
qemu-img create -q -f qcow2 -b full.qcow2 -F qcow2 "$d/incr.qcow2"
qemu-io -c 'write -P 5 20M 1M' "$d/incr.qcow2" >/dev/null
raw_of "$d/full.qcow2" "$TMP/full.raw"
raw_of "$d/incr.qcow2" "$TMP/incr.raw"
unset PBS_ENCRYPTION_PASSWORD PBS_REPOSITORY
"$TOOL" key create "$TMP/a.key" --kdf none >/dev/null 2>&1
"$TOOL" key create "$TMP/b.key" --kdf none >/dev/null 2>&1
p () { "$TOOL" push --repository "$ds" "$@" >/dev/null; }
p --backup-id 100 --backup-time 1000 "$d/full.qcow2"
p --backup-id 100 --backup-time 2000 "$d/incr.qcow2"
p --backup-id 200 --backup-time 1000 --keyfile "$TMP/a.key" "$d/full.qcow2"
p --backup-id 300 --backup-time 1000 --keyfile "$TMP/b.key" "$d/full.qcow2" --ns other 2>/dev/null ||
  { mkdir -p "$ds/ns/other"; p --ns other --backup-id 300 --backup-time 1000 --keyfile "$TMP/b.key" "$d/full.qcow2"; }
S1=vm/100/1970-01-01T00:16:40Z S2=vm/100/1970-01-01T00:33:20Z
SE=vm/200/1970-01-01T00:16:40Z SB=vm/300/1970-01-01T00:16:40Z

# piece_digest RAW N: sha256 of 4 MiB piece N of RAW.
piece_digest () {
  python3 -c 'import hashlib,sys
f=open(sys.argv[1],"rb"); f.seek(int(sys.argv[2])*4194304)
print(hashlib.sha256(f.read(4194304)).hexdigest())' "$1" "$2"
}
# fidx_digest FIDX N: digest N of a .fidx on disk (header 4096 bytes).
fidx_digest () {
  python3 -c 'import sys
b=open(sys.argv[1],"rb").read(); n=int(sys.argv[2])
print(b[4096+32*n:4096+32*n+32].hex())' "$1" "$2"
}
# crc_ok FILE: the blob's CRC (bytes 8..12, over the rest) is right.
crc_ok () {
  python3 -c 'import hashlib,struct,sys,zlib
b=open(sys.argv[1],"rb").read()
enc=[hashlib.sha256(m.encode()).digest()[:8] for m in
     ("Proxmox Backup encrypted blob v1.0",
      "Proxmox Backup zstd compressed encrypted blob v1.0")]
h=44 if b[:8] in enc else 12   # pbs-protocol.md 5.2
sys.exit(0 if len(b)>=h and struct.unpack("<I",b[8:12])[0]==zlib.crc32(b[h:]) else 1)' "$1"
}
chunk_file () { echo "$ds/.chunks/${1:0:4}/$1"; }

# ck NAME ARGS...: run check; output in $TMP/NAME.out/.err, status in $rc.
ck () {
  local n=$1; shift
  rc=0
  "$TOOL" check "${REPO_ARGS[@]}" "$@" >"$TMP/$n.out" 2>"$TMP/$n.err" || rc=$?
  [ -z "${CK_DEBUG:-}" ] || cat "$TMP/$n.err" >&2
}

D0=$(piece_digest "$TMP/full.raw" 0)   # pattern 1: bytes 0-4194303 of S1, S2, SE(plain digest differs)
D1=$(piece_digest "$TMP/full.raw" 1)   # pattern 2: bytes 4194304-8388607
D10=$(piece_digest "$TMP/full.raw" 10) # pattern 4: bytes 41943040-46137343
D5=$(piece_digest "$TMP/incr.raw" 5)   # only in S2: bytes 20971520-25165823
for x in $D0 $D1 $D10 $D5; do
  [ -f "$(chunk_file $x)" ] || { fail "chunk file of $x exists"; }
done

run_cases () { # run_cases WHERE
  local w=$1 f
  ck intact --keyfile "$TMP/a.key"
  check "$w: intact store: exit 0" test $rc = 0
  check "$w: intact store: three snapshots ok" \
    test "$(grep -c ': ok$' "$TMP/intact.out")" = 3
  check "$w: intact store: no failure" test "$(grep -c failed "$TMP/intact.out")" = 1 # the summary line
  ck intact1 --jobs 1 "$S1"
  check "$w: one snapshot, --jobs 1: exit 0" test $rc = 0

  # A flipped byte in the middle of D1's chunk file.
  f=$(chunk_file "$D1"); cp "$f" "$TMP/save"
  python3 -c 'import sys
p=sys.argv[1]; b=bytearray(open(p,"rb").read()); b[len(b)//2]^=0x40; open(p,"wb").write(b)' "$f"
  check "$w: flipped byte: python3 sees a bad CRC" eval '! crc_ok "$f"'
  ck flip
  check "$w: flipped byte: exit 1" test $rc = 1
  check "$w: flipped byte: S1 failed, digest and range named" \
    grep -qx "  drive-scsi0.img.fidx: bytes 4194304-8388607: chunk $D1: CRC mismatch.*" "$TMP/flip.out"
  check "$w: flipped byte: both snapshots of the group failed" \
    test "$(grep -cE '^vm/100/.*: failed$' "$TMP/flip.out")" = 2
  check "$w: flipped byte: the encrypted snapshot without --keyfile cannot be proved: failed" \
    grep -q "^$SE: failed" "$TMP/flip.out"
  check "$w: flipped byte: one bad chunk, used twice" \
    grep -qx "bad chunk $D1: .*(used 2 times)" "$TMP/flip.out"
  cp "$TMP/save" "$f"

  # A truncated chunk file (D10: the 64 KiB of pattern 4).
  f=$(chunk_file "$D10"); cp "$f" "$TMP/save"
  truncate -s $(( $(stat -c %s "$f") / 2 )) "$f"
  ck trunc "$S2"
  check "$w: truncated chunk: exit 1" test $rc = 1
  check "$w: truncated chunk: digest and range named" \
    grep -q "^  drive-scsi0.img.fidx: bytes 41943040-46137343: chunk $D10: " "$TMP/trunc.out"
  check "$w: truncated chunk: S2 failed" grep -qx "$S2: failed" "$TMP/trunc.out"
  cp "$TMP/save" "$f"

  # A missing chunk (D5, only in S2): S1 stays ok.
  f=$(chunk_file "$D5"); mv "$f" "$TMP/save"
  ck missing "$S1" "$S2"
  check "$w: missing chunk: exit 1" test $rc = 1
  check "$w: missing chunk: S1 ok" grep -qx "$S1: ok" "$TMP/missing.out"
  check "$w: missing chunk: S2 failed" grep -qx "$S2: failed" "$TMP/missing.out"
  check "$w: missing chunk: digest and range named" \
    grep -q "^  drive-scsi0.img.fidx: bytes 20971520-25165823: chunk $D5: missing" "$TMP/missing.out"
  ck missingj "$S2" --output-format json
  check "$w: missing chunk: JSON names the digest and range" python3 -c '
import json, sys
j = json.load(open(sys.argv[1]))
b = j["bad-chunks"]
assert len(b) == 1 and b[0]["digest"] == sys.argv[2], b
u = b[0]["used-by"]
assert u == [{"snapshot": sys.argv[3], "archive": "drive-scsi0.img.fidx",
              "start": 20971520, "end": 25165824}], u
assert j["snapshots"][0]["status"] == "failed"' "$TMP/missingj.out" "$D5" "$S2"
  mv "$TMP/save" "$f"

  # Chunk 0 of the key-a snapshot replaced by chunk 0 of the key-b one
  # (the same data encrypted with another key): a wrong-key chunk.
  local ea eb
  ea=$(fidx_digest "$ds/vm/200/1970-01-01T00:16:40Z/drive-scsi0.img.fidx" 0)
  eb=$(fidx_digest "$ds/ns/other/vm/300/1970-01-01T00:16:40Z/drive-scsi0.img.fidx" 0)
  f=$(chunk_file "$ea"); cp "$f" "$TMP/save"
  cp "$(chunk_file "$eb")" "$f"
  check "$w: wrong-key chunk: python3 sees a good CRC" crc_ok "$f"
  ck wrongchunk --keyfile "$TMP/a.key" "$SE"
  check "$w: wrong-key chunk: exit 1" test $rc = 1
  check "$w: wrong-key chunk: digest and range named" \
    grep -q "^  drive-scsi0.img.fidx: bytes 0-4194303: chunk $ea: cannot be decrypted" "$TMP/wrongchunk.out"
  cp "$TMP/save" "$f"

  # A snapshot made with key b, checked with key a, and without a key.
  ck wrongkey --ns other --keyfile "$TMP/a.key"
  check "$w: wrong-key snapshot: exit 1" test $rc = 1
  check "$w: wrong-key snapshot: failed, both keys named" \
    grep -q "wrong key - manifest's key" "$TMP/wrongkey.out"
  ck nokey --ns other "$SB"
  check "$w: keyless check of an encrypted snapshot: exit 1, says give the key" \
    grep -q "give its key with --keyfile" "$TMP/nokey.out"
  ck rightkey --ns other --keyfile "$TMP/b.key"
  check "$w: the same snapshot with its key: exit 0" test $rc = 0

  # An index whose digest no longer matches the manifest's csum.
  f=$ds/vm/100/1970-01-01T00:16:40Z/drive-scsi0.img.fidx; cp "$f" "$TMP/save"
  python3 -c 'import sys
p=sys.argv[1]; b=bytearray(open(p,"rb").read()); b[4096+32*3]^=1; open(p,"wb").write(b)' "$f"
  ck idx "$S1"
  check "$w: tampered index: exit 1, checksum named" \
    grep -q "drive-scsi0.img.fidx: index does not match the manifest (checksum)" "$TMP/idx.out"
  cp "$TMP/save" "$f"

  # IMAGE arguments.
  ck img "$S2" "$d/incr.qcow2"
  check "$w: check with the source chain: exit 0" test $rc = 0
  ck img2 "$S2" "drive-scsi0=$d/full.qcow2"
  check "$w: check with another chain: exit 1" test $rc = 1
  check "$w: check with another chain: says differs" grep -q "differs from the chain" "$TMP/img2.out"

  ck again --keyfile "$TMP/a.key"
  check "$w: restored store: exit 0 again" test $rc = 0
}

# --- local datastore
REPO_ARGS=(--repository "$ds")
ls_state () { find "$ds" -path "$ds/.chunks" -prune -o -printf '%p %s %T@\n' | sort; \
              find "$ds/.chunks" -type f -printf '%p %s %T@\n' | sort; }
ls_state >"$TMP/before"
ck ro
ls_state >"$TMP/after"
check "check writes nothing into the datastore" cmp -s "$TMP/before" "$TMP/after"
run_cases local
rc=0; "$TOOL" check --repository "$TMP/nostore" >/dev/null 2>"$TMP/ns.err" || rc=$?
check "a missing local datastore: exit 2, not created" test $rc = 2 -a ! -e "$TMP/nostore"
rc=0; "$TOOL" check --repository "$ds" vm/100/999 >/dev/null 2>&1 || rc=$?
check "a missing snapshot: exit 2" test $rc = 2
rc=0; "$TOOL" check --repository "$ds" --jobs 0 >/dev/null 2>&1 || rc=$?
check "--jobs 0: usage error" test $rc = 2

# --- the same datastore through the test server (reader protocol)
if [ -x "$SERVER" ] && command -v openssl >/dev/null; then
  . "$(dirname "$0")/../helpers/remote-functions.sh"
  setup_remote
  start_server "$ds"
  # The snapshots were pushed locally, owned by root@pam: its ticket.
  export PBS_FINGERPRINT=$FP PBS_PASSWORD=$USER_PASSWORD
  REPO_ARGS=(--repository "root@pam@127.0.0.1:$PORT:$STORE" --jobs 3)
  run_cases remote
else
  echo "# remote cases skipped: no test server"
fi
done_testing
