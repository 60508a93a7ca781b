#!/bin/bash
# test-repair-remote.sh -- issue 10 against the HTTPS test server: a
# server's verify job marks a snapshot verify_state failed (written here
# with tests/server/pbs_testdata.py set-verify, as PBS writes it); the next
# push takes no reuse from it, says why (text, JSON, --dry-run) and makes a
# snapshot that restores, whether the verify job moved the bad chunk aside
# (<digest>.0.bad, as PBS does) or left it in place.
# Oracles: qemu-img convert, python3 hashlib (chunk digests, so paths),
# pbs_testdata.py (manifest rewrite, blob check).
. "$(dirname "$0")/../helpers/functions.sh"
. "$(dirname "$0")/../helpers/push-functions.sh"
. "$(dirname "$0")/../helpers/remote-functions.sh"
requires qemu-img
requires qemu-io
requires python3
requires zstd
[ -x "$TOOL" ] || skip "qcow2pbs not built"
PBSDATA="python3 $top/tests/server/pbs_testdata.py"
A=drive-scsi0.img.fidx

setup_remote
sds=$DS_TMP/sds
start_server "$sds"
export PBS_REPOSITORY="root@pam!tok@127.0.0.1:$PORT:$STORE"
export PBS_PASSWORD=$TOKEN_SECRET PBS_FINGERPRINT=$FP

# chain NAME P: as in test-repair.sh: NAME-base.qcow2 (16 MiB, chunks 0, 1
# and 3 written) <- NAME-top.qcow2 (1 MiB in chunk 3); NAME-top.raw.
chain () {
  local n=$1 p=$2
  qemu-img create -q -f qcow2 "$TMP/$n-base.qcow2" 16M
  qemu-io -c "write -P $p 0 4M" -c "write -P $((p + 1)) 4M 4M" \
    -c "write -P $((p + 2)) 12M 4M" "$TMP/$n-base.qcow2" >/dev/null
  qemu-img create -q -f qcow2 -b "$n-base.qcow2" -F qcow2 "$TMP/$n-top.qcow2"
  qemu-io -c "write -P $((p + 3)) 13M 1M" "$TMP/$n-top.qcow2" >/dev/null
  raw_of "$TMP/$n-top.qcow2" "$TMP/$n-top.raw"
}
chunk_digest () {
  python3 -c 'import hashlib, sys
f = open(sys.argv[1], "rb"); f.seek(int(sys.argv[2]) * 4194304)
print(hashlib.sha256(f.read(4194304)).hexdigest())' "$1" "$2"
}
chunk_path () { echo "$sds/.chunks/${1:0:4}/$1"; }
blob_ok () { $PBSDATA blob-check "$(chunk_path "$1")" "$1" >/dev/null; }
flip () {
  python3 -c 'import os, sys
fd = os.open(sys.argv[1], os.O_RDWR); n = os.fstat(fd).st_size
b = os.pread(fd, 1, n // 2); os.pwrite(fd, bytes([b[0] ^ 0xff]), n // 2)' "$1"
}
manifest () { # manifest ID EPOCH: the server's manifest file
  echo "$sds/vm/$1/$(date -u -d "@$2" +%Y-%m-%dT%H:%M:%SZ)/index.json.blob"
}
push () { # push ID TIME IMAGE [options]: output in $TMP/push.out
  local id=$1 t=$2 img=$3; shift 3
  rm -f "$TMP/push.out"
  "$TOOL" push --backup-id "$id" --backup-time "$t" "$@" "$img" \
    >"$TMP/push.out" 2>"$TMP/push.err" ||
    { fail "push $id/$t: $(cat "$TMP/push.err")"; return 1; }
}
restores () { # restores SNAPSHOT RAW DESCRIPTION
  rm -f "$TMP/r.raw"
  if "$TOOL" restore "$1" "$A" "$TMP/r.raw" 2>"$TMP/r.err"; then
    same_bytes "$TMP/r.raw" "$2" "$3"
  else
    fail "$3: restore failed: $(cat "$TMP/r.err")"
  fi
}
WHY='the previous snapshot failed verification'

# --- 1: marked failed, the damaged chunk left in place ----------------------
chain inplace 16
push inplace 1000 "$TMP/inplace-base.qcow2" || true
push inplace 2000 "$TMP/inplace-top.qcow2" || true
d0=$(chunk_digest "$TMP/inplace-top.raw" 0)
check "in place: chunk 0 is on the server under its sha256" test -s "$(chunk_path "$d0")"
flip "$(chunk_path "$d0")"
$PBSDATA set-verify "$(manifest inplace 2000)" failed
push inplace 3000 "$TMP/inplace-top.qcow2" --dry-run || true
check "in place: --dry-run says why there is no reuse" \
  grep -q "full read: $WHY\$" "$TMP/push.out"
push inplace 3000 "$TMP/inplace-top.qcow2" || true
check "in place: push says why there is no reuse" \
  grep -q "full read: $WHY\$" "$TMP/push.out"
restores vm/inplace/3000 "$TMP/inplace-top.raw" \
  "in place: the new snapshot restores = qemu-img convert"
check "in place: the server's chunk is sound again" \
  blob_ok "$d0"

# --- 2: as PBS's verify job: chunk moved to .0.bad, snapshots failed --------
chain moved 48
push moved 1000 "$TMP/moved-base.qcow2" || true
push moved 2000 "$TMP/moved-top.qcow2" || true
d1=$(chunk_digest "$TMP/moved-top.raw" 1)
flip "$(chunk_path "$d1")"
mv "$(chunk_path "$d1")" "$(chunk_path "$d1").0.bad"
$PBSDATA set-verify "$(manifest moved 1000)" failed
$PBSDATA set-verify "$(manifest moved 2000)" failed
push moved 3000 "$TMP/moved-top.qcow2" --output-format json || true
check "moved: JSON: not incremental, the failed verification named" \
  test "$(json_field "$TMP/push.out" '(a["incremental"], a["reason"])')" = \
  "(False, '$WHY')"
restores vm/moved/3000 "$TMP/moved-top.raw" \
  "moved: the new snapshot restores = qemu-img convert"
check "moved: the chunk is stored again" \
  blob_ok "$d1"

# --- 3: verify_state ok: the base is used again -----------------------------
$PBSDATA set-verify "$(manifest moved 3000)" ok
push moved 4000 "$TMP/moved-top.qcow2" --output-format json || true
check "ok again: incremental" \
  test "$(json_field "$TMP/push.out" 'a["incremental"]')" = True
restores vm/moved/4000 "$TMP/moved-top.raw" "ok again: restores"
done_testing
