#!/bin/bash
# test-pve.sh -- snapshots that Proxmox VE restores as VMs: push
# --pve-config (auto and the user's own), --fw-config, --notes,
# --protected; the config checked against Proxmox VE's own rules
# (tests/helpers/pve_rules.py quotes them from qemu-server and pve-storage), the
# manifest's size and sha256 of each blob recomputed with python hashlib,
# encrypted config blobs decrypted by python's cryptography, notes and
# protection in the listing; on a local datastore and on the test server
# (with PBS's notes and protection endpoints and their owner rule).
. "$(dirname "$0")/../helpers/functions.sh"
. "$(dirname "$0")/../helpers/remote-functions.sh"
requires qemu-img
requires qemu-io
requires python3
requires zstd
requires curl
[ -x "$TOOL" ] || skip "qcow2pbs not built"
rules=$top/tests/helpers/pve_rules.py

qemu-img create -q -f qcow2 "$TMP/a.qcow2" 64M
qemu-io -c 'write -P 0xa1 1M 2M' "$TMP/a.qcow2" >/dev/null
qemu-img create -q -f qcow2 "$TMP/b.qcow2" 33M
qemu-io -c 'write -P 0xb2 0 1M' "$TMP/b.qcow2" >/dev/null
vsize () { qemu-img info --output=json "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["virtual-size"])'; }
SA=$(vsize "$TMP/a.qcow2") SB=$(vsize "$TMP/b.qcow2")
printf 'first line of the notes\nsecond line\n' >"$TMP/notes"
printf '[OPTIONS]\nenable: 1\n\n[RULES]\nIN ACCEPT -p tcp -dport 22\n' >"$TMP/fw"

ds=$DS_TMP/ds
T1=1700000000 S1=vm/100/2023-11-14T22:13:20Z
snapdir=$ds/vm/100/2023-11-14T22:13:20Z

# --- auto config, storage, firewall, notes, protection (local)
if "$TOOL" push --repository "$ds" --backup-id 100 --backup-time $T1 \
     --pve-config auto --pve-storage local-lvm --pve-memory 1024 \
     --pve-cores 2 --fw-config "$TMP/fw" --notes-file "$TMP/notes" \
     --protected drive-scsi0=$TMP/a.qcow2 drive-virtio1=$TMP/b.qcow2 \
     >"$TMP/p1.out" 2>"$TMP/p1.err"; then
  pass "push with --pve-config auto"
else
  fail "push with --pve-config auto: $(cat "$TMP/p1.err")"
fi
python3 "$rules" blob "$snapdir/qemu-server.conf.blob" >"$TMP/conf1"
check "auto config passes Proxmox VE's restore rules" \
  python3 "$rules" check-config "$TMP/conf1" \
  drive-scsi0.img.fidx=$SA drive-virtio1.img.fidx=$SB
check "auto config: map lines name storage local-lvm" \
  grep -qx '#qmdump#map:virtio1:drive-virtio1:local-lvm::' "$TMP/conf1"
check "auto config: boots from scsi0, memory and cores as given" \
  sh -c "grep -qx 'boot: order=scsi0' '$TMP/conf1' && grep -qx 'cores: 2' '$TMP/conf1' && grep -qx 'memory: 1024' '$TMP/conf1'"
check "manifest lists qemu-server.conf.blob with its size and sha256" \
  python3 "$rules" manifest-file "$snapdir/index.json.blob" qemu-server.conf.blob "$snapdir/qemu-server.conf.blob"
check "manifest lists fw.conf.blob with its size and sha256" \
  python3 "$rules" manifest-file "$snapdir/index.json.blob" fw.conf.blob "$snapdir/fw.conf.blob"
python3 "$rules" blob "$snapdir/fw.conf.blob" >"$TMP/fw.back"
same_bytes "$TMP/fw.back" "$TMP/fw" "fw.conf.blob holds the firewall file"
"$TOOL" restore --repository "$ds" $S1 qemu-server.conf - >"$TMP/conf1.r" 2>"$TMP/r.err" || true
same_bytes "$TMP/conf1.r" "$TMP/conf1" "restore SNAPSHOT qemu-server.conf - prints the stored config"
"$TOOL" restore --repository "$ds" $S1 fw.conf.blob "$TMP/fw.r" 2>"$TMP/r.err" || true
same_bytes "$TMP/fw.r" "$TMP/fw" "restore SNAPSHOT fw.conf.blob FILE writes the firewall file"
check "the snapshot is protected (.protected, as PBS)" test -f "$snapdir/.protected"
python3 - "$snapdir/index.json.blob" "$rules" "$TMP/notes" <<'EOF' && pass "manifest notes = the notes file" || fail "manifest notes"
import json, subprocess, sys
m = json.loads(subprocess.run(["python3", sys.argv[2], "blob", sys.argv[1]], stdout=subprocess.PIPE, check=True).stdout)
sys.exit(0 if m["unprotected"]["notes"] == open(sys.argv[3]).read() else 1)
EOF
"$TOOL" snapshots --repository "$ds" --output-format json >"$TMP/l1.json"
check "listing: protected and the first line of the notes as comment" python3 -c '
import json, sys
s = [x for x in json.load(open(sys.argv[1])) if x["backup-id"] == "100"][0]
sys.exit(0 if s["protected"] is True and s["comment"] == "first line of the notes" else 1)' "$TMP/l1.json"
"$TOOL" snapshots --repository "$ds" >"$TMP/l1.txt"
check "text listing shows protection and notes" grep -q 'protected.*notes: first line of the notes' "$TMP/l1.txt"
rm -f "$TMP/d.raw"
"$TOOL" restore --repository "$ds" $S1 drive-virtio1 "$TMP/d.raw" 2>/dev/null || true
qemu-img convert -O raw "$TMP/b.qcow2" "$TMP/b.raw"
same_bytes "$TMP/d.raw" "$TMP/b.raw" "the disk of that snapshot restores = qemu-img convert"

# --- the user's config: CRLF, a cdrom, a stale map line with a trailing
# space, lock/unused lines and a snapshot section (vzdump drops those).
printf '%s\r\n' 'boot: order=scsi0;ide2' 'cores: 4' 'ide2: local:iso/debian.iso,media=cdrom' \
  'memory: 4096' 'lock: backup' 'name: web1' 'net0: virtio=BC:24:11:00:00:01,bridge=vmbr0' \
  'scsi0: local-lvm:vm-100-disk-0,discard=on,size=1G' 'scsihw: virtio-scsi-single' \
  'unused0: local-lvm:vm-100-disk-9' 'virtio1: local-lvm:vm-100-disk-1,iothread=1' \
  '#qmdump#map:scsi0:drive-scsi0:old:raw: ' '' '[before-upgrade]' 'scsi0: local-lvm:vm-100-disk-0,size=1G' \
  >"$TMP/user.conf"
if "$TOOL" push --repository "$ds" --backup-id 100 --backup-time $((T1 + 100)) \
     --pve-config "$TMP/user.conf" drive-scsi0=$TMP/a.qcow2 drive-virtio1=$TMP/b.qcow2 \
     >/dev/null 2>"$TMP/p2.err"; then
  pass "push with the user's config"
else
  fail "push with the user's config: $(cat "$TMP/p2.err")"
fi
check "it says what vzdump leaves out" grep -q 'left out' "$TMP/p2.err"
"$TOOL" restore --repository "$ds" vm/100/$((T1 + 100)) qemu-server.conf "$TMP/conf2" 2>/dev/null || true
check "user config passes Proxmox VE's restore rules (no CR, one map line each)" \
  python3 "$rules" check-config "$TMP/conf2" \
  drive-scsi0.img.fidx=$SA drive-virtio1.img.fidx=$SB
python3 - "$TMP/user.conf" "$TMP/conf2" <<'EOF' && pass "every line of the main section kept; lock, unused, stale map line and snapshot section gone" || fail "user lines"
import sys
user = open(sys.argv[1], newline="").read().split("\r\n")
main = user[:user.index("[before-upgrade]")]
keep = [l for l in main if l and not l.startswith(("lock:", "unused0:", "#qmdump#", "scsi0:", "virtio1:"))]
out = open(sys.argv[2], newline="").read().split("\n")
assert all(l in out for l in keep), [l for l in keep if l not in out]
assert not any(l.startswith(("lock:", "unused0:", "[")) for l in out)
assert "ide2: local:iso/debian.iso,media=cdrom" in out
assert "scsi0: local-lvm:vm-100-disk-0,discard=on,size=64M" in out, out
assert "virtio1: local-lvm:vm-100-disk-1,iothread=1,size=%d" % (33 << 20) in out or any(l.startswith("virtio1:") for l in out)
EOF

# --- refusals: nothing stored
count () { ls "$ds/vm/100" | grep -c T; }
before=$(count)
printf 'scsi0: local-lvm:vm-100-disk-0\nscsi1: local-lvm:vm-100-disk-1\n' >"$TMP/mismatch.conf"
expect_fail "config whose disks do not match the archives" \
  "$TOOL" push --repository "$ds" --backup-id 100 --pve-config "$TMP/mismatch.conf" \
  drive-scsi0=$TMP/a.qcow2 drive-virtio1=$TMP/b.qcow2
check "the refusal names both lists" grep -q 'scsi0, scsi1.*scsi0, virtio1' "$TMP/ef.err"
rc=0; "$TOOL" push --repository "$ds" --backup-id web1 --pve-config auto "$TMP/a.qcow2" \
  >/dev/null 2>"$TMP/e.err" || rc=$?
[ $rc = 2 ] && grep -q 'not numeric' "$TMP/e.err" && pass "non-numeric vm id refused (exit 2)" ||
  fail "non-numeric id: exit $rc: $(cat "$TMP/e.err")"
expect_fail "an archive name Proxmox VE cannot map" \
  "$TOOL" push --repository "$ds" --backup-id 100 --pve-config auto disk0=$TMP/a.qcow2
check "no snapshot made by the refusals" test "$(count)" = "$before"

# --- encrypted: the config blob is encrypted like the disks
"$TOOL" key create --kdf none "$TMP/k.key" >/dev/null 2>&1
"$TOOL" push --repository "$ds" --backup-id 101 --backup-time $T1 --keyfile "$TMP/k.key" \
  --pve-config auto "$TMP/a.qcow2" >/dev/null 2>"$TMP/p3.err" ||
  fail "encrypted push: $(cat "$TMP/p3.err")"
edir=$ds/vm/101/2023-11-14T22:13:20Z
check "encrypted: manifest lists the config blob with crypt-mode encrypt" \
  test "$(python3 "$rules" manifest-file "$edir/index.json.blob" qemu-server.conf.blob "$edir/qemu-server.conf.blob")" = encrypt
python3 "$rules" blob "$edir/qemu-server.conf.blob" "$TMP/k.key" >"$TMP/conf3" ||
  fail "python could not decrypt the config blob"
check "decrypted config passes Proxmox VE's rules" \
  python3 "$rules" check-config "$TMP/conf3" drive-scsi0.img.fidx=$SA
"$TOOL" restore --repository "$ds" --keyfile "$TMP/k.key" vm/101/$T1 qemu-server.conf - >"$TMP/conf3.r" 2>/dev/null || true
same_bytes "$TMP/conf3.r" "$TMP/conf3" "restore with the key prints the decrypted config"
expect_fail "restore of the encrypted config without a key" \
  "$TOOL" restore --repository "$ds" vm/101/$T1 qemu-server.conf -

# --- import: --pve-config applies to every point
if command -v qemu-system-x86_64 >/dev/null; then
  python3 "$top/tests/helpers/qmpbackup_fixture.py" "$TMP/qb" --disks sda --points 2
  expect_fail "import --pve-config with a disk name Proxmox VE cannot map" \
    "$TOOL" import --repository "$ds" --backup-id 102 --pve-config auto "$TMP/qb"
  check "  ... the refusal names --archive-name" grep -q 'archive-name sda=drive-scsi0' "$TMP/ef.err"
  "$TOOL" import --repository "$ds" --backup-id 102 --pve-config auto \
    --archive-name sda=drive-scsi0 --protected "$TMP/qb" >/dev/null 2>"$TMP/i.err" ||
    fail "import with --pve-config: $(cat "$TMP/i.err")"
  for t in 2023-11-14T22:13:20Z 2023-11-14T22:15:00Z; do
    python3 "$rules" blob "$ds/vm/102/$t/qemu-server.conf.blob" >"$TMP/ic.conf" 2>/dev/null
    check "import: point $t has a config Proxmox VE restores, and is protected" \
      sh -c "python3 '$rules' check-config '$TMP/ic.conf' drive-scsi0.img.fidx=$((32 << 20)) >/dev/null && [ -f '$ds/vm/102/$t/.protected' ]"
  done
fi

# --- the test server: notes and protection over REST, the owner rule
setup_remote
printf 'alice@pbs!tok %s\n' "$TOKEN_SECRET" >>"$TMP/tokens"
start_server "$DS_TMP/srv"
R="root@pam!tok@127.0.0.1:$PORT:$STORE"
export PBS_PASSWORD=$TOKEN_SECRET PBS_FINGERPRINT=$FP
if "$TOOL" push --repository "$R" --backup-id 100 --backup-time $T1 --pve-config auto \
     --notes $'remote notes\nmore' --protected "$TMP/a.qcow2" >/dev/null 2>"$TMP/p4.err"; then
  pass "remote push with config, notes and protection"
else
  fail "remote push: $(cat "$TMP/p4.err")"
fi
check "server: .protected in the snapshot directory" test -f "$DS_TMP/srv/vm/100/2023-11-14T22:13:20Z/.protected"
"$TOOL" snapshots --repository "$R" --output-format json >"$TMP/l4.json" 2>/dev/null
check "remote listing: protected, comment" python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))[0]
sys.exit(0 if s["protected"] is True and s["comment"] == "remote notes" else 1)' "$TMP/l4.json"
"$TOOL" restore --repository "$R" vm/100/$T1 qemu-server.conf "$TMP/conf4" 2>/dev/null || true
check "remote: config passes Proxmox VE's rules" \
  python3 "$rules" check-config "$TMP/conf4" drive-scsi0.img.fidx=$SA
api () { # api TOKEN METHOD PATH [JSON]
  curl -s -o "$TMP/api.out" -w '%{http_code}' --cacert "$TMP/cert.pem" -X "$2" \
    -H "Authorization: PBSAPIToken $1:$TOKEN_SECRET" ${4:+-H 'Content-Type: application/json' --data "$4"} \
    "https://localhost:$PORT/api2/json/admin/datastore/$STORE/$3"
}
q='backup-type=vm&backup-id=100&backup-time='$T1
check "GET notes gives the whole notes" test "$(api 'root@pam!tok' GET "notes?$q")" = 200
check "  ... as JSON data" python3 -c 'import json,sys; sys.exit(0 if json.load(open(sys.argv[1]))["data"] == "remote notes\nmore" else 1)' "$TMP/api.out"
code=$(api 'alice@pbs!tok' PUT protected '{"backup-type":"vm","backup-id":"100","backup-time":'$T1',"protected":false}')
check "another user cannot unprotect: 400 backup owner check failed" \
  sh -c "[ $code = 400 ] && grep -q 'backup owner check failed (alice@pbs!tok != root@pam!tok)' '$TMP/api.out'"
check "  ... and the snapshot stays protected" test -f "$DS_TMP/srv/vm/100/2023-11-14T22:13:20Z/.protected"
check "the owner unprotects" test "$(api 'root@pam!tok' PUT protected '{"backup-type":"vm","backup-id":"100","backup-time":'$T1',"protected":false}')" = 200
check "  ... .protected is gone" test ! -e "$DS_TMP/srv/vm/100/2023-11-14T22:13:20Z/.protected"
check "GET protected says false" sh -c "[ \"\$(curl -s --cacert '$TMP/cert.pem' -H 'Authorization: PBSAPIToken root@pam!tok:$TOKEN_SECRET' 'https://localhost:$PORT/api2/json/admin/datastore/$STORE/protected?$q')\" = '{\"data\":false}' ]"
check "PUT notes by the owner" test "$(api 'root@pam!tok' PUT notes '{"backup-type":"vm","backup-id":"100","backup-time":'$T1',"notes":"new notes"}')" = 200
"$TOOL" snapshots --repository "$R" --output-format json >"$TMP/l5.json" 2>/dev/null
check "listing shows the new comment" python3 -c '
import json, sys
sys.exit(0 if json.load(open(sys.argv[1]))[0]["comment"] == "new notes" else 1)' "$TMP/l5.json"
check "a missing snapshot: 400 does not exist" \
  test "$(api 'root@pam!tok' PUT protected '{"backup-type":"vm","backup-id":"100","backup-time":5,"protected":true}')" = 400
done_testing
