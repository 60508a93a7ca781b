#!/bin/bash
# test-push-crypt.sh -- encrypted push + restore round trips with keys made
# by `qcow2pbs key create` (kdf none and scrypt), a key change between two
# pushes (falls back, restores right), and the key errors: wrong password,
# a file that is not a key, a keyed snapshot restored without a key.
# Chunk files are checked independently (CRC with python zlib; encrypted
# chunks must carry an encrypted-blob magic).
. "$(dirname "$0")/../helpers/functions.sh"
. "$(dirname "$0")/../helpers/push-functions.sh"
requires qemu-img
requires qemu-io
requires python3
requires zstd

ds=$TMP/ds
d=$TMP/img; mkdir "$d"
qemu-img create -q -f qcow2 "$d/full.qcow2" 64M
qemu-io -c 'write -P 1 0 6M' -c 'write -P 2 30M 64k' "$d/full.qcow2" >/dev/null
qemu-img create -q -f qcow2 -b full.qcow2 -F qcow2 "$d/incr0.qcow2"
qemu-io -c 'write -P 3 41M 4k' "$d/incr0.qcow2" >/dev/null
qemu-img create -q -f qcow2 -b incr0.qcow2 -F qcow2 "$d/incr1.qcow2"
qemu-io -c 'write -P 4 50M 4k' "$d/incr1.qcow2" >/dev/null

unset PBS_ENCRYPTION_PASSWORD
"$TOOL" key create "$TMP/a.key" --kdf none >/dev/null 2>&1 ||
  skip "qcow2pbs key create does not work yet"
PBS_ENCRYPTION_PASSWORD=secret1 "$TOOL" key create "$TMP/b.key" --kdf scrypt >/dev/null
check "key files made" test -s "$TMP/a.key" -a -s "$TMP/b.key"

T=1700000000
push () { # push IMAGE KEY [env...]
  T=$((T + 10))
  "$TOOL" push --repository "$ds" --backup-id 200 --backup-time $T \
    --keyfile "$2" --output-format json "$1" >"$TMP/last.json"
}

push "$d/full.qcow2" "$TMP/a.key"
s0=$(snap_of "$TMP/last.json")
check "kdf none key: push ok" test -n "$s0"
push "$d/incr0.qcow2" "$TMP/a.key"
s1=$(snap_of "$TMP/last.json")
check "same key: incremental" test "$(json_field "$TMP/last.json" 'a["incremental"]')" = True
restore_equals "$ds" "$s0" drive-scsi0 "$d/full.qcow2" "kdf none: restore full" --keyfile "$TMP/a.key"
restore_equals "$ds" "$s1" drive-scsi0 "$d/incr0.qcow2" "kdf none: restore incr0" --keyfile "$TMP/a.key"

export PBS_ENCRYPTION_PASSWORD=secret1
push "$d/incr1.qcow2" "$TMP/b.key"
s2=$(snap_of "$TMP/last.json")
check "key changed: falls back" test "$(json_field "$TMP/last.json" 'a["reason"]')" = "key changed"
restore_equals "$ds" "$s2" drive-scsi0 "$d/incr1.qcow2" "scrypt key: restore after key change" --keyfile "$TMP/b.key"
check "scrypt key: verify identical" \
  "$TOOL" verify --repository "$ds" --keyfile "$TMP/b.key" "$s2" "$d/incr1.qcow2"
unset PBS_ENCRYPTION_PASSWORD

python3 - "$ds" "$s2" <<'EOF'
import json, subprocess, sys, zlib
ds, snap = sys.argv[1:]
b = open("%s/%s/index.json.blob" % (ds, snap), "rb").read()
# The manifest is never encrypted: a plain or zstd blob with a good CRC.
assert b[:8].hex() in ("42ab3807be8370a1", "31b958426fb6a37f"), b[:8].hex()
assert zlib.crc32(b[12:]) == int.from_bytes(b[8:12], "little")
data = b[12:] if b[:8].hex() == "42ab3807be8370a1" else subprocess.run(
    ["zstd", "-d", "-c", "-q"], input=b[12:], stdout=subprocess.PIPE, check=True).stdout
m = json.loads(data)
assert m["files"][0]["crypt-mode"] == "encrypt", m["files"]
assert m["signature"] and len(m["signature"]) == 64
assert m["unprotected"]["key-fingerprint"]
EOF
check "manifest: plain blob, crypt-mode encrypt, signed" test $? = 0
check "chunk files: CRCs right, plain ones hash to their names" ds_consistent "$ds"
check "encrypted chunks exist" python3 -c '
import os, sys
ds = sys.argv[1] + "/.chunks"
n = sum(1 for s in os.listdir(ds) for f in os.listdir(os.path.join(ds, s))
        if open(os.path.join(ds, s, f), "rb").read(8).hex() in
           ("7b6785be222d4cf0", "e6591bbf0bbfd80b"))
sys.exit(0 if n >= 3 else 1)' "$ds"

# Errors: one line, exit 1, nothing left behind.  Key file errors read
# "qcow2pbs: FILE: what is wrong" and name FILE once (path_once).
path_once () {
  local line; line=$(cat "$TMP/ef.err")
  [ "${line#"qcow2pbs: $1: "}" != "$line" ] && [ "$(grep -o -F -- "$1" "$TMP/ef.err" | wc -l)" = 1 ]
}
push_key_fails () { # push_key_fails DESCRIPTION KEYFILE
  expect_fail "$1" "$TOOL" push --repository "$ds" --backup-id 200 --keyfile "$2" "$d/incr1.qcow2"
  check "$1: path once" path_once "$2"
}
PBS_ENCRYPTION_PASSWORD=wrong push_key_fails "wrong key password" "$TMP/b.key"
echo '{"hello": 1}' >"$TMP/notakey"
push_key_fails "keyfile that is not a key" "$TMP/notakey"
push_key_fails "missing keyfile" "$TMP/nokey"
echo '{"kdf": null, "data": ' >"$TMP/badjson.key"
push_key_fails "keyfile with bad JSON" "$TMP/badjson.key"
python3 - "$TMP" <<'EOF'
import json, sys
k = json.load(open(sys.argv[1] + "/a.key"))
json.dump(dict(k, kdf={"Argon2": {"salt": k["data"]}}), open(sys.argv[1] + "/argon.key", "w"))
json.dump(dict(k, fingerprint=("00" if k["fingerprint"][:2] == "ff" else "ff") + k["fingerprint"][2:]), open(sys.argv[1] + "/otherfp.key", "w"))
EOF
push_key_fails "keyfile with an unsupported kdf" "$TMP/argon.key"
push_key_fails "keyfile whose fingerprint is not its key's" "$TMP/otherfp.key"
PBS_ENCRYPTION_PASSWORD=wrong expect_fail "restore: wrong key password" \
  "$TOOL" restore --repository "$ds" --keyfile "$TMP/b.key" "$s2" drive-scsi0 "$TMP/wrong.raw"
check "restore: wrong key password: path once" path_once "$TMP/b.key"
expect_fail2 "verify: missing keyfile: exit 2" \
  "$TOOL" verify --repository "$ds" --keyfile "$TMP/nokey" "$s2" "$d/incr1.qcow2"
check "verify: missing keyfile: path once" path_once "$TMP/nokey"
# A newline in the name must not split the line: it is shown as \x0a.
cp "$TMP/notakey" "$TMP/new"$'\n'"line.key"
expect_fail "keyfile with a newline in its name: one line" \
  "$TOOL" push --repository "$ds" --backup-id 200 --keyfile "$TMP/new"$'\n'"line.key" "$d/incr1.qcow2"
check "newline in the name shown as \\x0a" path_once "$TMP/new\x0aline.key"
expect_fail "restore of an encrypted snapshot without a key" \
  "$TOOL" restore --repository "$ds" "$s2" drive-scsi0 "$TMP/nokey.raw"
check "no output file left" test ! -e "$TMP/nokey.raw"
PBS_ENCRYPTION_PASSWORD=secret1 expect_fail "restore with another key" \
  "$TOOL" restore --repository "$ds" --keyfile "$TMP/b.key" "$s1" drive-scsi0 "$TMP/other.raw"
check "no temporary output left" test -z "$(ls -A "$TMP" | grep '^\.')"
check "snapshots unchanged (3)" test "$(ls "$ds/vm/200" | grep -c T)" = 3
done_testing
