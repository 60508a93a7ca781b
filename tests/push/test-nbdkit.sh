#!/bin/bash
# test-nbdkit.sh -- build/nbdkit-qcow2pbs-plugin.so under `nbdkit --run`:
# the served disk equals the chain (qemu-img compare, and nbdcopy's copy
# byte-compared with qemu-img convert), the full zero chunks are zero in
# `qemu-img map --output=json` over NBD (expected set computed by python3
# over the raw disk), locally, encrypted, and through the HTTPS test
# server; a damaged chunk gives a read error, never other bytes; secrets
# on the command line are refused.  A 96 MiB disk of random and patterned
# chunks read by many parallel requests (nbdcopy --connections=4, a small
# cache) equals python3's bytes, a damaged chunk among them fails alone
# while parallel readers read the others, and the peak RSS of the nbdkit
# process (/proc VmHWM) stays under 64 MiB + cache=.
. "$(dirname "$0")/../helpers/functions.sh"
. "$(dirname "$0")/../helpers/push-functions.sh"
requires qemu-img
requires qemu-io
requires nbdkit
requires nbdcopy
requires python3
requires pgrep
PLUGIN=$B/nbdkit-qcow2pbs-plugin.so
[ -f "$PLUGIN" ] || skip "$PLUGIN not built (nbdkit-plugin-dev missing)"

ds=$DS_TMP/ds
d=$TMP/img; mkdir "$d"
# 9 chunks + a short last one: data, a zeroed range inside data, holes,
# explicit zero writes (stored as zero chunks too).
qemu-img create -q -f qcow2 "$d/full.qcow2" $((37 * 1024 * 1024 + 4096))
qemu-io -c 'write -P 0x11 0 6M' -c 'write -z 1M 1M' -c 'write -P 0x22 17M 64k' \
  -c 'write -P 0 24M 4M' -c 'write -P 0x33 36M 1M' "$d/full.qcow2" >/dev/null
qemu-img create -q -f qcow2 -b full.qcow2 -F qcow2 "$d/incr.qcow2"
qemu-io -c 'write -P 0x44 8M 4M' -c 'write -z 17M 64k' "$d/incr.qcow2" >/dev/null
raw_of "$d/incr.qcow2" "$TMP/incr.raw"
unset PBS_ENCRYPTION_PASSWORD PBS_REPOSITORY
export PBS_ENCRYPTION_PASSWORD=pw-for-the-key
"$TOOL" key create "$TMP/s.key" --kdf scrypt >/dev/null 2>&1
p () { "$TOOL" push --repository "$ds" "$@" >/dev/null; }
p --backup-id 100 --backup-time 1000 "$d/full.qcow2"
p --backup-id 100 --backup-time 2000 "$d/incr.qcow2"
p --backup-id 200 --backup-time 2000 --keyfile "$TMP/s.key" "$d/incr.qcow2"
S=vm/100/1970-01-01T00:33:20Z SE=vm/200/2000

# 24 chunks: 0-11 random (stored plain), 12-23 each one byte 0x40+N
# (stored compressed); python3 writes the golden raw disk.
python3 - "$TMP/big.raw" <<'PY'
import os, sys
C = 4 << 20
with open(sys.argv[1], "wb") as f:
    for i in range(24):
        f.write(os.urandom(C) if i < 12 else bytes([0x40 + i]) * C)
PY
qemu-img convert -O qcow2 "$TMP/big.raw" "$d/big.qcow2"
p --backup-id 300 --backup-time 3000 "$d/big.qcow2"
SB=vm/300/3000

# The chunks of the raw disk that are 4 MiB of zeros (python3), as
# "first-last" chunk numbers, one a line.
python3 - "$TMP/incr.raw" >"$TMP/zero.want" <<'PY'
import sys
raw = open(sys.argv[1], "rb").read(); C = 4 << 20
for i in range(len(raw) // C):
    if raw[i*C:(i+1)*C].count(0) == C:
        print(i)
PY
check "the fixture has zero chunks" test -s "$TMP/zero.want"

# serve NAME PARAMS... -- CMD: nbdkit --run CMD with the plugin.
serve () {
  local n=$1; shift
  local params=()
  while [ "$1" != -- ]; do params+=("$1"); shift; done
  shift
  rc=0
  nbdkit -U - "$PLUGIN" "${params[@]}" --run "$*" >"$TMP/$n.out" 2>"$TMP/$n.err" || rc=$?
}
# The zero chunks as qemu-img map over NBD reports them.
map_zero () {
  python3 -c 'import json,sys
C = 4 << 20
z = set()
for e in json.load(open(sys.argv[1])):
    if e["zero"] and not e["data"]:
        assert e["start"] % C == 0 and e["length"] % C == 0, e
        z.update(range(e["start"] // C, (e["start"] + e["length"]) // C))
print("\n".join(str(i) for i in sorted(z)))' "$1"
}

cases () { # cases WHERE REPO [--ns NS]
  local w=$1 repo=$2
  serve cmp$w repository="$repo" snapshot=$S -- 'qemu-img compare "$uri" '"$d/incr.qcow2"
  check "$w: qemu-img compare over NBD: identical" test $rc = 0
  serve map$w repository="$repo" snapshot=$S archive=drive-scsi0 -- 'qemu-img map --output=json "$uri"'
  map_zero "$TMP/map$w.out" >"$TMP/zero$w.got"
  check "$w: qemu-img map: exactly the zero chunks are zero" cmp -s "$TMP/zero.want" "$TMP/zero$w.got"
  serve copy$w repository="$repo" snapshot=$S cache=8M -- 'nbdcopy "$uri" '"$TMP/copy.raw"
  same_bytes "$TMP/copy.raw" "$TMP/incr.raw" "$w: nbdcopy (cache=8M) equals qemu-img convert"
  rm -f "$TMP/copy.raw"
  # Many requests at once over four connections, readahead of several
  # streams into a cache of two chunks.
  serve mc$w repository="$repo" snapshot=$SB cache=8M -- \
    'nbdcopy --connections=4 --requests=16 "$uri" '"$TMP/mc.raw"
  same_bytes "$TMP/mc.raw" "$TMP/big.raw" "$w: nbdcopy --connections=4 (cache=8M) of 24 chunks equals python3's disk"
  rm -f "$TMP/mc.raw"
  serve mcenc$w repository="$repo" snapshot=$SE keyfile="$TMP/s.key" cache=8M -- \
    'nbdcopy --connections=4 "$uri" '"$TMP/mc.raw"
  same_bytes "$TMP/mc.raw" "$TMP/incr.raw" "$w: encrypted: nbdcopy --connections=4 equals qemu-img convert"
  rm -f "$TMP/mc.raw"
  serve enc$w repository="$repo" snapshot=$SE keyfile="$TMP/s.key" -- \
    'qemu-img compare "$uri" '"$d/incr.qcow2"' && qemu-img map --output=json "$uri"'
  check "$w: encrypted: qemu-img compare identical" test $rc = 0
  sed -n '/^\[/,$p' "$TMP/enc$w.out" >"$TMP/encmap$w.json"
  map_zero "$TMP/encmap$w.json" >"$TMP/zeroenc$w.got"
  check "$w: encrypted: qemu-img map: the zero chunks are zero" cmp -s "$TMP/zero.want" "$TMP/zeroenc$w.got"
  serve nokey$w repository="$repo" snapshot=$SE -- 'true'
  check "$w: encrypted without keyfile: nbdkit refuses to start" test $rc != 0
  check "$w: encrypted without keyfile: says give keyfile" grep -q "keyfile" "$TMP/nokey$w.err"
  check "$w: encrypted without keyfile: nbdkit's error says why" \
    grep -q "error: $SE: cannot read the manifest: index.json.blob: missing key" "$TMP/nokey$w.err"
}

cases local "$ds"

# A damaged chunk (the pattern-0x44 chunk 2 of incr): reads of it fail
# with EIO and the digest named; other chunks still read.
dig=$(python3 -c 'import hashlib,sys
f=open(sys.argv[1],"rb"); f.seek(2*4194304); print(hashlib.sha256(f.read(4194304)).hexdigest())' "$TMP/incr.raw")
f=$ds/.chunks/${dig:0:4}/$dig
cp "$f" "$TMP/save"
python3 -c 'import sys
p=sys.argv[1]; b=bytearray(open(p,"rb").read()); b[-1]^=1; open(p,"wb").write(b)' "$f"
serve bad repository="$ds" snapshot=$S -- \
  'nbdcopy "$uri" '"$TMP/bad.raw"
check "damaged chunk: nbdcopy fails" test $rc != 0
check "damaged chunk: the digest is named" grep -q "chunk $dig" "$TMP/bad.err"
serve bad2 repository="$ds" snapshot=$S -- \
  'qemu-io -r -f raw -c "read -P 0x11 0 1M" -c "read -P 0x44 8M 4k" "$uri"'
check "damaged chunk: chunk 0 still reads" grep -q "read 1048576/1048576" "$TMP/bad2.out"
check "damaged chunk: its own read fails" eval '! grep -q "read 4096/4096" "$TMP/bad2.out"'
cp "$TMP/save" "$f"

# A damaged chunk among parallel reads: chunk 14 (0x4e) of the 24-chunk
# disk.  nbdcopy over four connections fails naming it, while qemu-io
# reads its neighbours through the same server at the same time.
dig=$(python3 -c 'import hashlib; print(hashlib.sha256(bytes([0x4e]) * 4194304).hexdigest())')
f=$ds/.chunks/${dig:0:4}/$dig
cp "$f" "$TMP/save"
python3 -c 'import sys
p=sys.argv[1]; b=bytearray(open(p,"rb").read()); b[-1]^=1; open(p,"wb").write(b)' "$f"
serve badmc repository="$ds" snapshot=$SB cache=8M -- \
  '{ nbdcopy --connections=4 "$uri" '"$TMP/badmc.raw"'; echo "nbdcopy exit $?"; } &
   qemu-io -r -f raw -c "read -P 0x4d 52M 4M" -c "read -P 0x4f 60M 4M" \
     -c "read -P 0x4e 56M 4k" -c "read -P 0x57 92M 4M" "$uri"; wait'
check "damaged chunk, parallel: nbdcopy --connections=4 fails" eval '! grep -q "nbdcopy exit 0" "$TMP/badmc.out"'
check "damaged chunk, parallel: the digest is named" grep -q "chunk $dig" "$TMP/badmc.err"
check "damaged chunk, parallel: the chunks beside it read" test "$(grep -c "read 4194304/4194304" "$TMP/badmc.out")" = 3
check "damaged chunk, parallel: its own read fails" eval '! grep -q "read 4096/4096" "$TMP/badmc.out"'
cp "$TMP/save" "$f"

# The cache bound: the server's peak RSS after many parallel reads of
# the 96 MiB disk stays under 64 MiB + cache=.  nbdkit --run forks the
# server beside the command's shell: the nbdkit child of the shell's
# parent, checked to have the plugin loaded; VmHWM from its /proc.
for c in 16 64; do
  serve rss$c repository="$ds" snapshot=$SB cache=${c}M -- \
    'nbdcopy --connections=4 "$uri" null: && srv=$(pgrep -P $PPID -x nbdkit) && grep -q nbdkit-qcow2pbs-plugin /proc/$srv/maps && grep VmHWM /proc/$srv/status'
  hwm=$(awk '/^VmHWM:/ { print $2 }' "$TMP/rss$c.out")
  echo "# cache=${c}M: peak RSS ${hwm:-?} KiB"
  check "cache=${c}M: nbdcopy ran, /proc of the server read" test -n "$hwm"
  check "cache=${c}M: peak RSS ${hwm:-?} KiB <= (64 + $c) MiB" test "${hwm:-999999999}" -le $(((64 + c) * 1024))
done

serve pw repository="$ds" snapshot=$S password=x -- 'true'
check "password= on the command line: refused" grep -q "never taken from the command line" "$TMP/pw.err"

# --- the same datastore through the test server
if [ -x "$SERVER" ] && command -v openssl >/dev/null; then
  . "$(dirname "$0")/../helpers/remote-functions.sh"
  setup_remote
  start_server "$ds"
  # Pushed locally, owned by root@pam: its password, from the environment.
  export PBS_FINGERPRINT=$FP PBS_PASSWORD=$USER_PASSWORD
  cases remote "root@pam@127.0.0.1:$PORT:$STORE"
else
  echo "# remote cases skipped: no test server"
fi
done_testing
