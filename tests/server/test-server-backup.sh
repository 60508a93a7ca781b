#!/bin/bash
# test-server-backup.sh -- pbs-test-server: every backup-protocol rule of
# docs/pbs-protocol.md §3/§4 that an image backup meets, each bad request sent
# directly over HTTP/2 with the raw client.  Chunks, blobs, csums and
# manifests come from tests/server/pbs_testdata.py (python hashlib/zlib),
# and results are checked on disk with the same independent decoder.
. "$(dirname "$0")/../helpers/functions.sh"
. "$top/tests/helpers/server-lib.sh"

srv_start
R=$TMP/auth-root
CT='application/json;charset=UTF-8'
MiB=1048576
T1=1700000000

# Test data: a 5 MiB image = one full chunk c0 and a short last chunk c1.
pbsdata data a $((4 * MiB)) "$TMP/c0"
pbsdata data b $MiB "$TMP/c1"
pbsdata data c $((2 * MiB)) "$TMP/c2"
pbsdata data d 4096 "$TMP/c3"
read -r d0 s0 e0 < <(pbsdata blob "$TMP/c0" "$TMP/c0.blob")
read -r d1 s1 e1 < <(pbsdata blob "$TMP/c1" "$TMP/c1.blob")
read -r d2 s2 e2 < <(pbsdata blob "$TMP/c2" "$TMP/c2.blob")
read -r d3 s3 e3 < <(pbsdata blob "$TMP/c3" "$TMP/c3.blob" bad-crc)
head -c $((e0 - 1)) "$TMP/c0.blob" >"$TMP/c0.short"
cat "$TMP/c0.blob" "$TMP/c3" >"$TMP/c0.long"
csum=$(pbsdata csum "$d0" "$d1")
csum_c0=$(pbsdata csum "$d0")
printf 'name: test\n' >"$TMP/conf"
read -r _ _ econf < <(pbsdata blob "$TMP/conf" "$TMP/conf.blob")
pbsdata blob "$TMP/conf" "$TMP/conf-bad.blob" bad-crc >/dev/null
read -r mlen _ < <(pbsdata manifest vm 100 $T1 "$TMP/m1.blob" \
  "drive-scsi0.img.fidx:none:$((5 * MiB)):$csum" \
  "qemu-server.conf.blob:none:$econf:$(sha256sum "$TMP/conf.blob" | cut -d' ' -f1)")
python3 -c 'import json; print(json.dumps({"wid":1,"digest-list":["0"*64]*1100,"offset-list":[0]*1100}))' >"$TMP/big.json"
E='^400 application/json;charset=UTF-8 '
# Parameter errors leave handle_api_request through '?', and H2Service
# answers those without a content type (proxmox-rest-server h2service.rs);
# the raw client prints a missing content type as '-'.
P='^400 - '
PV='parameter verification failed -'
# several errors: "parameter verification failed:\n- 'a': ...\n- 'b': ..."
NL='\\n'
FC="POST /fixed_chunk?wid=1&digest=$d0&size=$s0&encoded-size=$e0"

# --- session 1: a complete backup, with every bad request on the way -----
session "$R" $BACKUP_PROTO "/api2/json/backup?$(backup_q vm 100 $T1)" <<EOF
GET /previous_backup_time => ^200 $CT \{"data":null\}$ :: first backup: no base
GET /previous?archive-name=index.json.blob => ${E}no valid previous backup$ :: previous without a base
POST /fixed_index?archive-name=drive-scsi0.img.fidx&size=$((5 * MiB)) => ^200 $CT \{"data":1\}$ :: fixed_index (form/query) -> wid 1
POST /fixed_index?archive-name=x.img.fidx&size=5&bogus=1 => ${P}${PV} 'bogus': schema does not allow additional properties\.$ :: fixed_index: unknown parameter
POST /fixed_index?archive-name=x.img.fidx&size=5 ct=text/plain => ${P}unsupported content type Ok\("text/plain"\)$ :: fixed_index: wrong content type
POST /fixed_index ct=application/json {"archive-name":"x.img.fidx","size":"5"} => ${P}${PV} 'size': Expected integer value\.$ :: JSON integers must be numbers
POST /fixed_index?archive-name=x.img.fidx&size=5 ct=application/json {} => ${P}parameter verification failed:${NL}- 'archive-name': property is missing and it is not optional${NL}- 'size': property is missing and it is not optional$ :: JSON body: the query is ignored
POST /fixed_index?archive-name=x.img.fidx&size=0 => ${P}${PV} 'size': value must have a minimum value of 1 \(got 0\)$ :: fixed_index: size 0
POST /fixed_index?archive-name=x.blob&size=5 => ${E}wrong archive extension: 'x.blob'$ :: fixed_index: archive name must end .fidx
POST /fixed_chunk?wid=1&digest=${d0^^}&size=$s0&encoded-size=$e0 @$TMP/c0.blob => ${P}${PV} 'digest': value does not match the regex pattern$ :: upper-case digest rejected
$FC&x=1 @$TMP/c0.blob => ${P}${PV} 'x': schema does not allow additional properties\.$ :: fixed_chunk: unknown parameter
POST /fixed_chunk?wid=0&digest=$d0&size=$s0&encoded-size=$e0 @$TMP/c0.blob => ${P}${PV} 'wid': value must have a minimum value of 1 \(got 0\)$ :: wid 0
POST /fixed_chunk?wid=257&digest=$d0&size=$s0&encoded-size=$e0 @$TMP/c0.blob => ${P}${PV} 'wid': value must have a maximum value of 256 \(got 257\)$ :: wid 257
POST /fixed_chunk?wid=1&digest=$d0&size=0&encoded-size=$e0 @$TMP/c0.blob => ${P}${PV} 'size': value must have a minimum value of 1 \(got 0\)$ :: chunk size 0
POST /fixed_chunk?wid=1&digest=$d0&size=$((16 * MiB + 1))&encoded-size=$e0 @$TMP/c0.blob => ${P}${PV} 'size': value must have a maximum value of $((16 * MiB)) \(got $((16 * MiB + 1))\)$ :: chunk size over 16 MiB
POST /fixed_chunk?wid=1&digest=$d0&size=$s0&encoded-size=12 @$TMP/c0.blob => ${P}${PV} 'encoded-size': value must have a minimum value of 13 \(got 12\)$ :: encoded-size 12
POST /fixed_chunk?wid=x&digest=$d0&size=$s0&encoded-size=1 @$TMP/c0.blob => ${P}parameter verification failed:${NL}- 'wid': invalid digit found in string${NL}- 'encoded-size': value must have a minimum value of 13 \(got 1\)$ :: two query errors, in query order
POST /fixed_chunk?wid=1&digest=$d0&size=$s0 @$TMP/c0.blob => ${P}${PV} 'encoded-size': parameter is missing and it is not optional\.$ :: encoded-size missing
POST /fixed_chunk ct=application/json {"wid":1,"digest":"$d0","size":$s0,"encoded-size":$e0} => ${P}parameter verification failed:${NL}- 'digest': parameter is missing and it is not optional\.${NL}- 'encoded-size': .*${NL}- 'size': .*${NL}- 'wid': parameter is missing and it is not optional\.$ :: upload handler: parameters only from the query
$FC @$TMP/c0.short => ${E}uploaded chunk has unexpected size\.$ :: body shorter than encoded-size
$FC @$TMP/c0.long => ${E}uploaded chunk is larger than announced\.$ :: body longer than encoded-size
POST /fixed_chunk?wid=1&digest=$d1&size=$s0&encoded-size=$e0 @$TMP/c0.blob => ${E}detected chunk with wrong digest\.$ :: chunk whose sha256 is not its digest
POST /fixed_chunk?wid=1&digest=$d0&size=$((s0 - 1))&encoded-size=$e0 @$TMP/c0.blob => ${E}detected chunk with wrong length :: chunk whose length is not size
PUT /fixed_index ct=application/json $(pbsdata append 1 "$d0:0") => ${E}no such chunk $d0$ :: known-chunk rule: append of an unknown digest
$FC @$TMP/c0.blob => ^200 $CT \{"data":"$d0"\}$ :: chunk upload answers its digest
PUT /fixed_index ct=application/json $(pbsdata append 1 "$d0:0") => ^200 $CT \{"data":null\}$ :: digest uploaded in this session may be appended
PUT /fixed_index ct=application/json $(pbsdata append 1 "$d0:4096") => ${E}got unaligned chunk :: unaligned offset
PUT /fixed_index ct=application/json $(pbsdata append 1 "$d0:$((4 * MiB))") => ${E}chunk data exceeds size :: chunk beyond the image size
PUT /fixed_index ct=application/json {"wid":1,"digest-list":["$d0"],"offset-list":[0,0]} => ${E}offset list has wrong length :: digest and offset lists of unequal length
PUT /fixed_index ct=application/json {"wid":1,"digest-list":["${d0^^}"],"offset-list":[0]} => ${P}${PV} 'digest-list/\[0\]': value does not match the regex pattern$ :: upper-case digest in digest-list
PUT /fixed_index ct=application/json {"wid":1,"digest-list":["$d0","x","y"],"offset-list":0} => ${P}parameter verification failed:${NL}- 'digest-list/\[1\]': value does not match the regex pattern${NL}- 'offset-list': Expected array - got scalar value\.$ :: JSON: only the first bad list item, keys in name order
PUT /fixed_index ct=application/json {"wid":1,"digest-list":["$d0"],"offset-list":["0"]} => ${P}${PV} 'offset-list/\[0\]': Expected integer value\.$ :: offsets must be JSON numbers
PUT /fixed_index ct=application/json {"wid":1,"digest-list":["$d0"],"offset-list":[0],"x":1} => ${P}${PV} 'x': schema does not allow additional properties$ :: PUT fixed_index: unknown parameter
PUT /fixed_index ct=application/json @$TMP/big.json => ${P}Request body too large$ :: JSON body over 64 KiB
PUT /fixed_index ct=application/json $(pbsdata append 9 "$d0:0") => ^400 .*'9' :: append to an unknown wid
POST /fixed_chunk?wid=1&digest=$d1&size=$s1&encoded-size=$e1 @$TMP/c1.blob => ^200  :: short last chunk uploaded
PUT /fixed_index ct=application/json $(pbsdata append 1 "$d1:0") => ${E}chunk with unexpected length :: only the last chunk may be short
POST /fixed_chunk?wid=1&digest=$d2&size=$s2&encoded-size=$e2 @$TMP/c2.blob => ${E}.*detected multiple end chunks :: a second short chunk in one writer
POST /fixed_chunk?wid=1&digest=$d3&size=$s3&encoded-size=$e3 @$TMP/c3.blob => ${E}.*detected multiple end chunks :: (chunk with a bad CRC is stored, then the writer rule)
PUT /fixed_index ct=application/json $(pbsdata append 1 "$d1:$((4 * MiB))") => ^200  :: short chunk at the end
POST /fixed_index?archive-name=cnt.img.fidx&size=$((4 * MiB)) => ^200 $CT \{"data":2\}$ :: second writer -> wid 2
PUT /fixed_index ct=application/json $(pbsdata append 2 "$d0:0") => ^200  :: append to wid 2
POST /fixed_close?wid=2&chunk-count=2&size=$((4 * MiB))&csum=$csum_c0 => ${E}fixed writer '.*' close failed - received wrong number of chunk :: close with the wrong chunk count
POST /fixed_close?wid=2&chunk-count=1&size=$((4 * MiB))&csum=$csum_c0 => ^400 .*'2' not registered :: a failed close loses the writer
POST /fixed_index?archive-name=sum.img.fidx&size=$((4 * MiB)) => ^200 $CT \{"data":3\}$ :: third writer -> wid 3
PUT /fixed_index ct=application/json $(pbsdata append 3 "$d0:0") => ^200  :: append to wid 3
POST /fixed_close?wid=3&chunk-count=1&size=$((4 * MiB))&csum=$csum => ${E}fixed writer '.*' close failed - got unexpected checksum$ :: close with the wrong csum
POST /fixed_close?wid=1&chunk-count=2&size=$((5 * MiB))&csum=$csum&x=1 => ${P}${PV} 'x': schema does not allow additional properties\.$ :: fixed_close: unknown parameter
POST /fixed_close?wid=1&chunk-count=2&size=$((5 * MiB))&csum=abc => ${E}Odd number of digits$ :: csum: odd length (hex crate)
POST /fixed_close?wid=1&chunk-count=2&size=$((5 * MiB))&csum=abcd => ${E}Invalid string length$ :: csum: not 32 bytes
POST /fixed_close?wid=1&chunk-count=2&size=$((5 * MiB))&csum=${csum:0:10}g${csum:11} => ${E}Invalid character 'g' at position 10$ :: csum: not hex (the writer stays)
POST /fixed_close ct=application/json {"wid":1,"chunk-count":2,"size":$((5 * MiB)),"csum":"${csum^^}"} => ^200 $CT \{"data":null\}$ :: close (JSON, upper-case csum accepted)
POST /blob?file-name=qemu-server.conf.blob&encoded-size=$econf @$TMP/conf-bad.blob => ${E}Data blob has wrong CRC checksum\.$ :: blob CRC is verified
POST /blob?file-name=qemu-server.conf.blob&encoded-size=$((econf + 1)) @$TMP/conf.blob => ${E}got blob with unexpected length :: blob length != encoded-size
POST /blob?file-name=qemu-server.conf&encoded-size=$((econf + 1)) @$TMP/conf.blob => ${E}wrong blob file extension: 'qemu-server.conf'$ :: blob name must end .blob (checked before the length)
POST /blob?file-name=qemu-server.conf.blob&encoded-size=$econf&y=2 @$TMP/conf.blob => ${P}${PV} 'y': schema does not allow additional properties\.$ :: blob: unknown parameter
POST /blob?file-name=qemu-server.conf.blob&encoded-size=$econf @$TMP/conf.blob => ^200 $CT \{"data":null\}$ :: config blob
POST /blob?file-name=index.json.blob&encoded-size=$mlen @$TMP/m1.blob => ^200  :: manifest blob
POST /finish?x=1 => ${P}${PV} 'x': schema does not allow additional properties\.$ :: finish: unknown parameter
POST /finish => ^200 $CT \{"data":null\}$ :: finish
POST /finish => ${E}backup already marked as finished\.$ :: second finish
GET /fixed_chunk => ^404 $CT Path '/fixed_chunk' not found\.$ :: wrong method: 404
POST /dynamic_index?archive-name=a.didx => ^501  :: dynamic index: not implemented (501)
EOF
wait_log 'backup session closed'
S1=$(snapdir vm 100 $T1)
pbsdata fidx "$S1/drive-scsi0.img.fidx" >"$TMP/fidx1"
check "stored index: size, 4 MiB chunks, count, csum" \
  grep -qx "$((5 * MiB)) 4194304 2 $csum" "$TMP/fidx1"
check "stored index digests in order" \
  diff <(tail -n +2 "$TMP/fidx1") <(printf '%s\n' "$d0" "$d1")
check "uploaded chunk stored and decodable" quiet \
  pbsdata blob-check "$DS/.chunks/${d0:0:4}/$d0" "$d0"
check "chunk with a bad CRC stored with a recomputed CRC (trap 7)" quiet \
  pbsdata blob-check "$DS/.chunks/${d3:0:4}/$d3" "$d3"
check "no temporary index left" \
  test -z "$(find "$S1" -name '*.tmp_fidx')"
check "owner file names the token" grep -qx 'root@pam!tok' "$DS/vm/100/owner"
check "failed-csum close left its index (trap 12)" test -f "$S1/sum.img.fidx"

# --- time ordering against the base ---------------------------------------
for t in $T1 $((T1 - 10)); do
  raw -A "$R" -u $BACKUP_PROTO "$PORT" GET "/api2/json/backup?$(backup_q vm 100 $t)" </dev/null >"$TMP/o"
  expect_line 1 "${E}backup timestamp is older than last backup\.$" "$TMP/o" "backup-time $t not newer than the base"
done

# --- session 2: the base, known chunks by downloading, reuse-csum; drop ---
T2=$((T1 + 100))
session "$R" $BACKUP_PROTO "/api2/json/backup?$(backup_q vm 100 $T2)" <<EOF
GET /previous_backup_time => ^200 $CT \{"data":$T1\}$ :: base time
POST /fixed_index?archive-name=drive-scsi0.img.fidx&size=$((5 * MiB))&reuse-csum=$(printf '0%.0s' {1..64}) => ${E}.*doesn't match last backup's :: reuse-csum of another index refused
POST /fixed_index?archive-name=drive-scsi0.img.fidx&size=$((5 * MiB))&reuse-csum=${csum^^} => ${E}.*doesn't match last backup's :: reuse-csum compared as lower-case string
POST /fixed_index?archive-name=other.img.fidx&size=$((5 * MiB))&reuse-csum=$csum => ^400 .*no previous backup exists for archive :: reuse-csum for an archive the base lacks
POST /fixed_index?archive-name=drive-scsi0.img.fidx&size=$((5 * MiB))&reuse-csum=$csum => ^200 $CT \{"data":[0-9]+\}$ :: reuse-csum of the base index
PUT /fixed_index ct=application/json $(pbsdata append 1 "$d0:0") => ${E}no such chunk $d0$ :: reuse-csum does not register the base's chunks
GET /previous?archive-name=drive-scsi0.img.fidx&x=1 => ${P}${PV} 'x': schema does not allow additional properties\.$ :: previous: unknown parameter
GET /previous?archive-name=drive-scsi0.img => ${E}unknown archive type: "drive-scsi0\.img"$ :: previous: unknown archive type
GET /previous?archive-name=drive-scsi0.img.fidx out=$TMP/prev.fidx => ^200 application/octet-stream <$((4096 + 64)) bytes>$ :: download the previous index
PUT /fixed_index ct=application/json $(pbsdata append 1 "$d0:0") => ^200  :: digest registered by the previous index
PUT /fixed_index ct=application/json $(pbsdata append 1 "$d1:$((4 * MiB))") => ^200  :: short last digest registered with its length
POST /fixed_close?wid=1&chunk-count=2&size=$((5 * MiB))&csum=$csum => ^200  :: close the reused index
GET /previous?archive-name=index.json.blob out=$TMP/prev.manifest => ^200 application/octet-stream  :: download the previous manifest
GET /previous?archive-name=nothing.img.fidx => ${E}Unable to open fixed index ".*/nothing\.img\.fidx" - No such file or directory \(os error 2\)$ :: previous of a missing index: 400
GET /previous?archive-name=nothing.blob => ^404 $CT open file ".*/nothing\.blob" failed - not found$ :: previous of a missing blob: 404
DROP
EOF
check "downloaded previous index == stored file" cmp -s "$TMP/prev.fidx" "$S1/drive-scsi0.img.fidx"
check "downloaded previous manifest is the stored one" cmp -s "$TMP/prev.manifest" "$S1/index.json.blob"
wait_log 'removing unfinished backup'
wait_log 'backup session closed'
check "snapshot removed when the connection dropped before finish" \
  test ! -e "$(snapdir vm 100 $T2)"
check "the finished snapshot is still there" test -f "$S1/index.json.blob"

# --- one backup per group at a time ---------------------------------------
mkfifo "$TMP/hold"
raw -A "$R" -u $BACKUP_PROTO "$PORT" GET "/api2/json/backup?$(backup_q vm 100 $((T1 + 200)))" \
  <"$TMP/hold" >"$TMP/held.out" &
held=$!
exec 7>"$TMP/hold"
wait_for "$TMP/held.out" '^101' >/dev/null
raw -A "$R" -u $BACKUP_PROTO "$PORT" GET "/api2/json/backup?$(backup_q vm 100 $((T1 + 300)))" </dev/null >"$TMP/o"
expect_line 1 "${E}.*another backup is already running" "$TMP/o" "second backup of a locked group refused"
raw -A "$R" -u $BACKUP_PROTO "$PORT" GET "/api2/json/backup?$(backup_q vm 101 $((T1 + 300)))" </dev/null >"$TMP/o"
expect_line 1 '^101 upgraded$' "$TMP/o" "another group at the same time"
echo "GET /previous_backup_time" >&7
exec 7>&-
wait $held || true
expect_line 2 "^200 $CT \{\"data\":$T1\}$" "$TMP/held.out" "the first session kept working"
wait_log "conn [0-9]+: backup session closed"

# --- verify_state: a failed last snapshot is no base ----------------------
pbsdata set-verify "$S1/index.json.blob" failed
session "$R" $BACKUP_PROTO "/api2/json/backup?$(backup_q vm 100 $((T1 - 50)))" <<EOF
GET /previous_backup_time => ^200 $CT \{"data":null\}$ :: failed verification: no base offered
GET /previous?archive-name=drive-scsi0.img.fidx => ${E}no valid previous backup$ :: failed verification: no previous
POST /fixed_index?archive-name=drive-scsi0.img.fidx&size=$((5 * MiB))&reuse-csum=$csum => ${E}cannot reuse index - no valid previous backup exists :: failed verification: no reuse-csum
EOF
pass "no base: an older backup-time is accepted (no ordering check)"
pbsdata set-verify "$S1/index.json.blob" ok
session "$R" $BACKUP_PROTO "/api2/json/backup?$(backup_q vm 100 $((T1 + 400)))" <<EOF
GET /previous_backup_time => ^200 $CT \{"data":$T1\}$ :: verify_state ok: base offered again
EOF

# --- owners (§4.1) --------------------------------------------------------
A=$TMP/auth-alice-tok
raw -A "$A" -u $BACKUP_PROTO "$PORT" GET "/api2/json/backup?$(backup_q vm 100 $((T1 + 500)))" </dev/null >"$TMP/o"
expect_line 1 "${E}backup owner check failed \(alice@pbs!tok != root@pam!tok\)$" "$TMP/o" "foreign group refused"
raw "$PORT" POST /api2/json/access/ticket -H 'Content-Type: application/json' \
  -D <(printf '{"username":"alice@pbs","password":"alicepw"}') >"$TMP/o"
ticket=$(cut -d' ' -f3- "$TMP/o" | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["ticket"])')
printf 'Cookie: PBSAuthCookie=%s\n' "$(python3 -c 'import sys,urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$ticket")" >"$TMP/alice-user"
# A finished backup of each group keeps the group (and owner) in place.
pbsdata manifest vm 300 $T1 "$TMP/m300.blob" >"$TMP/m300.len"
pbsdata manifest vm 301 $T1 "$TMP/m301.blob" >"$TMP/m301.len"
session "$A" $BACKUP_PROTO "/api2/json/backup?$(backup_q vm 300 $T1)" <<EOF
POST /blob?file-name=index.json.blob&encoded-size=$(cut -d' ' -f1 "$TMP/m300.len") @$TMP/m300.blob => ^200  :: token: manifest of vm/300
POST /finish => ^200  :: token: finish vm/300
EOF
session "$TMP/alice-user" $BACKUP_PROTO "/api2/json/backup?$(backup_q vm 301 $T1)" <<EOF
POST /blob?file-name=index.json.blob&encoded-size=$(cut -d' ' -f1 "$TMP/m301.len") @$TMP/m301.blob => ^200  :: user (ticket): manifest of vm/301
POST /finish => ^200  :: user (ticket): finish vm/301 (CSRF token not needed over HTTP/2)
EOF
check "owner of vm/300 is the token" grep -qx 'alice@pbs!tok' "$DS/vm/300/owner"
check "owner of vm/301 is the user" grep -qx 'alice@pbs' "$DS/vm/301/owner"
raw -A "$TMP/alice-user" -u $BACKUP_PROTO "$PORT" GET "/api2/json/backup?$(backup_q vm 300 $((T1 + 1)))" </dev/null >"$TMP/o"
expect_line 1 '^101 upgraded$' "$TMP/o" "a user may back up into its token's group"
raw -A "$A" -u $BACKUP_PROTO "$PORT" GET "/api2/json/backup?$(backup_q vm 301 $((T1 + 1)))" </dev/null >"$TMP/o"
expect_line 1 "${E}backup owner check failed \(alice@pbs!tok != alice@pbs\)$" "$TMP/o" "a token may not back up into its user's group"

# --- listing (§6.4), owner-filtered ---------------------------------------
raw -A "$R" "$PORT" GET /api2/json/admin/datastore/store1/snapshots >"$TMP/o"
cut -d' ' -f3- "$TMP/o" >"$TMP/list.json"
check "listing of root's token: vm/100 finished with sizes" python3 - "$TMP/list.json" $T1 "$csum" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))["data"]
t1 = int(sys.argv[2])
s = [x for x in d if x["backup-type"] == "vm" and x["backup-id"] == "100" and x["backup-time"] == t1]
assert len(s) == 1, d
f = {x["filename"]: x for x in s[0]["files"]}
assert f["drive-scsi0.img.fidx"]["size"] == 5 * 1048576 and f["drive-scsi0.img.fidx"]["crypt-mode"] == "none", f
assert "index.json.blob" in f and s[0]["owner"] == "root@pam!tok", s
assert s[0]["verification"]["state"] == "ok", s
assert not any(x["backup-id"] in ("300", "301") for x in d), d
PY
raw -A "$A" "$PORT" GET '/api2/json/admin/datastore/store1/snapshots?backup-type=vm' >"$TMP/o"
check "listing of alice's token: only its own group" python3 -c '
import json, sys
d = json.loads(sys.argv[1])["data"]
assert sorted({x["backup-id"] for x in d}) == ["300"], d' "$(cut -d' ' -f3- "$TMP/o")"
raw -A "$TMP/alice-user" "$PORT" GET '/api2/json/admin/datastore/store1/snapshots?backup-id=300' >"$TMP/o"
check "listing of alice (user): its token's group too" python3 -c '
import json, sys
d = json.loads(sys.argv[1])["data"]
assert [x["backup-id"] for x in d] == ["300"], d' "$(cut -d' ' -f3- "$TMP/o")"

# --- a namespace (made by hand: the server has no namespace API) ---------
mkdir -p "$DS/ns/dev"
pbsdata manifest vm 100 $T1 "$TMP/mns.blob" >"$TMP/mns.len"
session "$R" $BACKUP_PROTO "/api2/json/backup?$(backup_q vm 100 $T1 '&ns=dev')" <<EOF
GET /previous_backup_time => ^200 $CT \{"data":null\}$ :: namespace: its own groups, no base
POST /blob?file-name=index.json.blob&encoded-size=$(cut -d' ' -f1 "$TMP/mns.len") @$TMP/mns.blob => ^200  :: namespace: manifest
POST /finish => ^200  :: namespace: finish
EOF
check "namespace snapshot stored under ns/dev" \
  test -f "$DS/ns/dev/vm/100/$(basename "$S1")/index.json.blob"
raw -A "$R" "$PORT" GET '/api2/json/admin/datastore/store1/snapshots?ns=dev' >"$TMP/o"
check "namespace listing: one finished snapshot with its manifest size" python3 -c '
import json, os, sys
d = json.loads(sys.argv[1])["data"]
assert len(d) == 1 and d[0]["backup-time"] == int(sys.argv[2]), d
f = {x["filename"]: x for x in d[0]["files"]}
assert f["index.json.blob"]["size"] == os.path.getsize(sys.argv[3]), f' \
  "$(cut -d' ' -f3- "$TMP/o")" $T1 "$DS/ns/dev/vm/100/$(basename "$S1")/index.json.blob"

# --- reader protocol (§3.10) ----------------------------------------------
RQ="/api2/json/reader?$(backup_q vm 100 $T1)"
session "$R" $READER_PROTO "$RQ" <<EOF
GET /chunk?digest=$d0 => ^401 $CT download chunk $d0 not allowed$ :: chunk before its index was downloaded: 401
GET /download?file-name=index.json.blob out=$TMP/r.manifest => ^200 application/octet-stream  :: download the manifest
GET /download?file-name=drive-scsi0.img.fidx&x=1 => ${P}${PV} 'x': schema does not allow additional properties\.$ :: download: unknown parameter
GET /download?file-name=missing.img.fidx => ${E}Unable to open fixed index ".*/missing\.img\.fidx" - No such file or directory \(os error 2\)$ :: download of a missing index: 400
GET /download?file-name=missing.blob => ^404 $CT open file ".*/missing\.blob" failed - not found$ :: download of a missing blob: 404
GET /download?file-name=missing.txt => ${E}unknown archive type: "missing\.txt"$ :: download: unknown archive type
GET /download?file-name=drive-scsi0.img.fidx out=$TMP/r.fidx => ^200 application/octet-stream <$((4096 + 64)) bytes>$ :: download the index
GET /chunk?digest=${d0^^} => ${P}${PV} 'digest': value does not match the regex pattern$ :: reader: upper-case digest
GET /chunk?digest=$d0 out=$TMP/r.c0 => ^200 application/octet-stream <$e0 bytes>$ :: chunk allowed by the downloaded index
GET /chunk?digest=$d1 out=$TMP/r.c1 => ^200 application/octet-stream  :: short last chunk
GET /chunk?digest=$d2 => ^401 $CT download chunk $d2 not allowed$ :: chunk in the store but not in the index: 401
GET /speedtest out=$TMP/r.speed => ^200 application/octet-stream <1048576 bytes>$ :: reader speedtest
POST /download?file-name=index.json.blob => ^404 $CT Path '/download' not found\.$ :: reader: wrong method
EOF
check "reader: manifest == stored file" cmp -s "$TMP/r.manifest" "$S1/index.json.blob"
check "reader: index == stored file" cmp -s "$TMP/r.fidx" "$S1/drive-scsi0.img.fidx"
check "reader: chunk 0 decodes to its digest" quiet pbsdata blob-check "$TMP/r.c0" "$d0"
check "reader: chunk 1 decodes to its digest" quiet pbsdata blob-check "$TMP/r.c1" "$d1"
check "reader: speedtest is 1 MiB of A" cmp -s "$TMP/r.speed" <(head -c 1048576 /dev/zero | tr '\0' A)
raw -A "$TMP/auth-wrong" -u $READER_PROTO "$PORT" GET "$RQ" </dev/null >"$TMP/o"
expect_line 1 "^401 - authentication failed$" "$TMP/o" "reader: wrong token: 401"
raw -A "$A" -u $READER_PROTO "$PORT" GET "$RQ" </dev/null >"$TMP/o"
expect_line 1 "${E}backup owner check failed!$" "$TMP/o" "reader: not the owner: 400 (a plain bail!)"
raw -A "$TMP/alice-user" -u $READER_PROTO "$PORT" GET "/api2/json/reader?$(backup_q vm 300 $T1)" </dev/null >"$TMP/o"
expect_line 1 '^101 upgraded$' "$TMP/o" "reader: a user may read its token's group"

# --- SIGTERM with a backup open: clean exit, the unfinished one removed ----
mkfifo "$TMP/hold2"
raw -A "$R" -u $BACKUP_PROTO "$PORT" GET "/api2/json/backup?$(backup_q vm 100 $((T1 + 600)))" \
  <"$TMP/hold2" >"$TMP/held2.out" 2>/dev/null &
held=$!
exec 7>"$TMP/hold2"
wait_for "$TMP/held2.out" '^101' >/dev/null
check "open backup has its snapshot directory" test -d "$(snapdir vm 100 $((T1 + 600)))"
kill -TERM "$srv_pid"
rc=0; wait "$srv_pid" || rc=$?
exec 7>&-
wait $held || true
check "SIGTERM: exit status 0" test "$rc" = 0
check "SIGTERM: the open backup was removed" test ! -e "$(snapdir vm 100 $((T1 + 600)))"
check "SIGTERM: finished snapshots kept" test -f "$S1/index.json.blob"
check "server log has no sanitizer report" \
  sh -c '! grep -q -E "Sanitizer|runtime error" "$1"' _ "$SRVLOG"
grep -E -A30 "Sanitizer|runtime error" "$SRVLOG" | head -60 || true

done_testing
