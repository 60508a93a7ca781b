#!/bin/bash
# test-repair.sh -- a damaged local datastore noticed and healed (issue 10):
#  - a chunk with one flipped byte, or truncated, is replaced when a push
#    writes that digest (a push with no base), plain and encrypted;
#  - the repair calls (tests/helpers/ds-repair, what `check --repair` does):
#    the bad chunk moved aside to <digest>.0.bad (.1.bad next time) and the
#    snapshots' manifests marked verify_state failed with a PBS-shaped UPID;
#    the next push takes nothing from the failed base, says why (text, JSON,
#    --dry-run) and makes a snapshot that restores;
#  - a chunk missing from the store is never referenced by an incremental
#    push: it is read and stored again;
#  - the repair calls refuse a remote repository.
# Oracles: qemu-img convert (the expected disk), python3 hashlib (chunk
# digests and so chunk paths), tests/server/pbs_testdata.py (an independent
# .fidx parser), python3 json + the zstd CLI (the manifest).
. "$(dirname "$0")/../helpers/functions.sh"
. "$(dirname "$0")/../helpers/push-functions.sh"
requires qemu-img
requires qemu-io
requires python3
requires zstd
[ -x "$TOOL" ] || skip "qcow2pbs not built"
HELPER=$B/tests/helpers/ds-repair
PBSDATA="python3 $top/tests/server/pbs_testdata.py"

ds=$DS_TMP/ds
A=drive-scsi0.img.fidx

# chain NAME P: NAME-base.qcow2 (16 MiB: chunk 0 pattern P, chunk 1 P+1,
# chunk 2 unallocated, chunk 3 P+2) <- NAME-top.qcow2 (1 MiB of P+3 in
# chunk 3), and NAME-top.raw, the merged disk by qemu-img.  Patterns differ
# per case, so cases share no chunk but the zero chunk.
chain () {
  local n=$1 p=$2
  qemu-img create -q -f qcow2 "$TMP/$n-base.qcow2" 16M
  qemu-io -c "write -P $p 0 4M" -c "write -P $((p + 1)) 4M 4M" \
    -c "write -P $((p + 2)) 12M 4M" "$TMP/$n-base.qcow2" >/dev/null
  qemu-img create -q -f qcow2 -b "$n-base.qcow2" -F qcow2 "$TMP/$n-top.qcow2"
  qemu-io -c "write -P $((p + 3)) 13M 1M" "$TMP/$n-top.qcow2" >/dev/null
  raw_of "$TMP/$n-top.qcow2" "$TMP/$n-top.raw"
}

# chunk_digest RAW I: sha256 of chunk I of a raw disk (an unencrypted
# chunk's digest, hence its file name).
chunk_digest () {
  python3 -c 'import hashlib, sys
f = open(sys.argv[1], "rb"); f.seek(int(sys.argv[2]) * 4194304)
print(hashlib.sha256(f.read(4194304)).hexdigest())' "$1" "$2"
}
chunk_path () { echo "$ds/.chunks/${1:0:4}/$1"; }

# blob_ok DIGEST: the stored chunk decodes (CRC, zstd) to data of that sha256.
blob_ok () { $PBSDATA blob-check "$(chunk_path "$1")" "$1" >/dev/null; }

# flip FILE: invert the byte in the middle of FILE, in place.
flip () {
  python3 -c 'import os, sys
fd = os.open(sys.argv[1], os.O_RDWR); n = os.fstat(fd).st_size
b = os.pread(fd, 1, n // 2); os.pwrite(fd, bytes([b[0] ^ 0xff]), n // 2)' "$1"
}

push () { # push ID TIME IMAGE [options]: JSON output in $TMP/push.json
  local id=$1 t=$2 img=$3; shift 3
  rm -f "$TMP/push.json"
  "$TOOL" push --repository "$ds" --backup-id "$id" --backup-time "$t" \
    --output-format json "$@" "$img" >"$TMP/push.json" 2>"$TMP/push.err" ||
    { fail "push $id/$t: $(cat "$TMP/push.err")"; return 1; }
}

# restores SNAPSHOT RAW DESCRIPTION [options]: restore and compare.
restores () {
  local s=$1 raw=$2 d=$3; shift 3
  rm -f "$TMP/r.raw"
  if "$TOOL" restore --repository "$ds" "$@" "$s" "$A" "$TMP/r.raw" \
       2>"$TMP/r.err"; then
    same_bytes "$TMP/r.raw" "$raw" "$d"
  else
    fail "$d: restore failed: $(cat "$TMP/r.err")"
  fi
}

# verify_state SNAPSHOT-DIR: "state upid-ok" from the manifest, decoded
# with python zlib + the zstd CLI; upid-ok: matches PBS's UPID regex
# (proxmox-schema src/upid.rs) with worker type verify_snapshot.
verify_state () {
  python3 - "$1/index.json.blob" <<'EOF'
import json, re, subprocess, sys, zlib
b = open(sys.argv[1], "rb").read()
assert zlib.crc32(b[12:]) == int.from_bytes(b[8:12], "little"), "bad crc"
j = b[12:]
if b[:8] == bytes.fromhex("31b958426fb6a37f"):
    j = subprocess.run(["zstd", "-d", "-q", "-c"], input=j,
                       stdout=subprocess.PIPE, check=True).stdout
vs = json.loads(j)["unprotected"].get("verify_state")
if vs is None:
    print("none"); sys.exit(0)
rx = (r"^UPID:[a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?:[0-9A-Fa-f]{8}:"
      r"[0-9A-Fa-f]{8,9}:[0-9A-Fa-f]{8,16}:[0-9A-Fa-f]{8}:"
      r"verify_snapshot:[^:\s]*:[^:\s]+:$")
print(vs["state"], "upid-ok" if re.match(rx, vs["upid"]) else "upid-bad:" + vs["upid"])
EOF
}
snapdir () { # snapdir ID EPOCH
  echo "$ds/vm/$1/$(date -u -d "@$2" +%Y-%m-%dT%H:%M:%SZ)"
}
# repair ID DIGEST EPOCH...: what check --repair does: the chunk aside,
# each snapshot failed.
repair () {
  local id=$1 d=$2 t; shift 2
  "$HELPER" "$ds" bad "$d" >"$TMP/bad.out" 2>"$TMP/bad.err" ||
    { fail "repair: moving $d aside: $(cat "$TMP/bad.err")"; return 1; }
  for t in "$@"; do
    "$HELPER" "$ds" state "vm/$id/$t" failed 2>"$TMP/st.err" ||
      { fail "repair: marking vm/$id/$t failed: $(cat "$TMP/st.err")"; return 1; }
  done
}

# --- 1: a flipped byte, then a push that writes that digest ----------------
# Another group of the same disk (a clone) has no base: it stores every
# chunk, and the store must not keep the damaged copy.
chain flip 16
push flip 1000 "$TMP/flip-top.qcow2" || true
d0=$(chunk_digest "$TMP/flip-top.raw" 0)
check "flip: chunk 0 is stored under its sha256" test -s "$(chunk_path "$d0")"
flip "$(chunk_path "$d0")"
push flipclone 1000 "$TMP/flip-top.qcow2" || true
restores vm/flipclone/1000 "$TMP/flip-top.raw" \
  "flip: a push writing the damaged digest restores = qemu-img convert"
check "flip: the stored chunk is sound again" blob_ok "$d0"
restores vm/flip/1000 "$TMP/flip-top.raw" "flip: so the old snapshot restores again"

# --- 2: a truncated chunk, then a push that writes that digest ---------------
chain trunc 32
push trunc 1000 "$TMP/trunc-top.qcow2" || true
d1=$(chunk_digest "$TMP/trunc-top.raw" 1)
p=$(chunk_path "$d1")
truncate -s $(( $(stat -c %s "$p") - 7 )) "$p"
push truncclone 1000 "$TMP/trunc-top.qcow2" || true
restores vm/truncclone/1000 "$TMP/trunc-top.raw" \
  "truncated: a push writing the truncated digest restores = qemu-img convert"

# --- 3: repair a flipped byte, then an incremental push ----------------------
chain rep 48
push rep 1000 "$TMP/rep-base.qcow2" || true
push rep 2000 "$TMP/rep-top.qcow2" || true
d0=$(chunk_digest "$TMP/rep-top.raw" 0)
flip "$(chunk_path "$d0")"
if repair rep "$d0" 1000 2000; then
  check "repair: chunk moved to <digest>.0.bad" \
    test "$(cat "$TMP/bad.out")" = "$(chunk_path "$d0").0.bad" -a \
    -s "$(chunk_path "$d0").0.bad" -a ! -e "$(chunk_path "$d0")"
  for t in 1000 2000; do
    check "repair: vm/rep/$t marked failed with a PBS UPID" \
      test "$(verify_state "$(snapdir rep $t)")" = "failed upid-ok"
  done
fi
"$TOOL" push --repository "$ds" --backup-id rep --backup-time 3000 --dry-run \
  "$TMP/rep-top.qcow2" >"$TMP/dry.txt" 2>&1 || true
check "repair: --dry-run says the previous snapshot failed verification" \
  grep -q 'full read: the previous snapshot failed verification$' "$TMP/dry.txt"
"$TOOL" push --repository "$ds" --backup-id rep --backup-time 3000 \
  "$TMP/rep-top.qcow2" >"$TMP/push.txt" 2>"$TMP/push.err" ||
  fail "repair: push: $(cat "$TMP/push.err")"
check "repair: push text says the previous snapshot failed verification" \
  grep -q 'full read: the previous snapshot failed verification$' "$TMP/push.txt"
restores vm/rep/3000 "$TMP/rep-top.raw" \
  "repair: the push after a repair restores = qemu-img convert"
check "repair: the chunk is back, sound" blob_ok "$d0"
# Damaged again and repaired again: the next free name.
flip "$(chunk_path "$d0")"
if repair rep "$d0" 3000; then
  check "repair: a second bad copy goes to .1.bad" \
    test "$(cat "$TMP/bad.out")" = "$(chunk_path "$d0").1.bad" -a \
    -s "$(chunk_path "$d0").0.bad"
fi
push rep 4000 "$TMP/rep-top.qcow2" &&
  check "repair: JSON reason names the failed verification" \
    test "$(json_field "$TMP/push.json" 'a["reason"]')" = "the previous snapshot failed verification"
restores vm/rep/4000 "$TMP/rep-top.raw" "repair: second repair, push restores"
# verify_state ok: the base is used again.
"$HELPER" "$ds" state vm/rep/4000 ok 2>/dev/null || fail "repair: state ok"
check "repair: state ok recorded" test "$(verify_state "$(snapdir rep 4000)")" = "ok upid-ok"
push rep 5000 "$TMP/rep-top.qcow2" &&
  check "repair: a base verified ok is reused" \
    test "$(json_field "$TMP/push.json" 'a["incremental"]')" = True

# --- 4: a truncated chunk repaired, then an incremental push -----------------
chain rtr 64
push rtr 1000 "$TMP/rtr-base.qcow2" || true
d1=$(chunk_digest "$TMP/rtr-top.raw" 1)
p=$(chunk_path "$d1")
truncate -s $(( $(stat -c %s "$p") / 2 )) "$p"
repair rtr "$d1" 1000 || true
push rtr 2000 "$TMP/rtr-top.qcow2" || true
restores vm/rtr/2000 "$TMP/rtr-top.raw" \
  "repaired truncated chunk: push restores = qemu-img convert"

# --- 5: a chunk missing from the store (base not marked) ---------------------
chain miss 80
push miss 1000 "$TMP/miss-base.qcow2" || true
d1=$(chunk_digest "$TMP/miss-top.raw" 1)
rm "$(chunk_path "$d1")"
"$TOOL" push --repository "$ds" --backup-id miss --backup-time 2000 --dry-run \
  --output-format json "$TMP/miss-top.qcow2" >"$TMP/dry.json" 2>&1 || true
push miss 2000 "$TMP/miss-top.qcow2" || true
# qemu-img map: the top layer touches chunk 3 only, so an intact store
# gives reused=3 read=1; chunk 1 missing moves one chunk from reused to read.
want=$(expected_counts "$TMP/miss-top.qcow2" "$TMP/miss-top.qcow2")
check "missing: the intact figures are $want" test "$want" = "reused=3 read=1 zero=0"
check "missing: incremental push reads the missing chunk again" \
  test "$(got_counts "$TMP/push.json")" = "reused=2 read=2 zero=0"
check "missing: --dry-run counts the same" \
  test "$(got_counts "$TMP/dry.json")" = "reused=2 read=2 zero=0"
restores vm/miss/2000 "$TMP/miss-top.raw" \
  "missing: the incremental push restores = qemu-img convert"
check "missing: the chunk is stored again" blob_ok "$d1"

# --- 6: a base marked failed, its damaged chunk still in place --------------
# (as a verify job that could not move the chunk aside leaves it): no
# reuse, every chunk written, the damaged one replaced.
chain fb 96
push fb 1000 "$TMP/fb-base.qcow2" || true
d0=$(chunk_digest "$TMP/fb-top.raw" 0)
flip "$(chunk_path "$d0")"
# Marked by an independent encoder, as a PBS verify job writes it.
$PBSDATA set-verify "$(snapdir fb 1000)/index.json.blob" failed
push fb 2000 "$TMP/fb-top.qcow2" &&
  check "failed base: JSON reason" \
    test "$(json_field "$TMP/push.json" '(a["incremental"], a["reason"])')" = \
    "(False, 'the previous snapshot failed verification')"
restores vm/fb/2000 "$TMP/fb-top.raw" "failed base: push restores = qemu-img convert"

# --- 7: encrypted: a flipped byte in an encrypted chunk ---------------------
"$TOOL" key create --kdf none "$TMP/k.json" >/dev/null 2>&1 ||
  fail "key create"
chain enc 112
push enc 1000 "$TMP/enc-top.qcow2" --keyfile "$TMP/k.json" || true
$PBSDATA fidx "$(snapdir enc 1000)/$A" >"$TMP/enc.fidx"
e0=$(sed -n 2p "$TMP/enc.fidx")
flip "$(chunk_path "$e0")"
push encclone 1000 "$TMP/enc-top.qcow2" --keyfile "$TMP/k.json" || true
restores vm/encclone/1000 "$TMP/enc-top.raw" \
  "encrypted: a push writing the damaged digest restores" --keyfile "$TMP/k.json"
# A signed manifest stays valid after verify_state is recorded.
"$HELPER" "$ds" state vm/encclone/1000 ok 2>/dev/null || fail "encrypted: state ok"
restores vm/encclone/1000 "$TMP/enc-top.raw" \
  "encrypted: restore checks the signature after verify_state" --keyfile "$TMP/k.json"

# --- 8: the repair calls need the datastore itself ---------------------------
rc=0
PBS_PASSWORD=secret "$HELPER" 'root@pam!tok@127.0.0.1:1:store' bad "$d0" \
  >/dev/null 2>"$TMP/remote.err" || rc=$?
check "remote: repair refused with ENOTSUP and what to do" \
  grep -q "repair needs direct access to the datastore; run PBS's verify job (errno $(python3 -c 'import errno; print(errno.ENOTSUP)'))" "$TMP/remote.err"
check "remote: exit 1" test $rc = 1

check "datastore consistent (but the .bad files)" bash -c \
  "find '$ds/.chunks' -name '*.bad' -delete; $(declare -f ds_consistent); ds_consistent '$ds' 2>/dev/null"
done_testing
