#!/bin/bash
# test-remote-proxy.sh -- ALL_PROXY, as proxmox-backup-client reads it
# ("[http://][USER:PASS@]HOST[:PORT]"): push, restore and snapshots go
# through CONNECT tunnels of an HTTP proxy (tests/helpers/tcp_proxy.py), the REST
# calls (libcurl) as well as the protocol upgrades; proxy credentials are
# sent as Basic authorization and never shown; a refused tunnel, an
# unsupported scheme and curl's own proxy variables are handled as the
# official client does.  Oracle for the data: qemu-img convert of the image.
. "$(dirname "$0")/../helpers/functions.sh"
. "$(dirname "$0")/../helpers/remote-functions.sh"
. "$(dirname "$0")/../helpers/push-functions.sh"
requires qemu-img
requires qemu-io
requires python3
[ -x "$TOOL" ] || skip "qcow2pbs not built"

setup_remote
start_server "$TMP/ds"
export PBS_PASSWORD=$TOKEN_SECRET PBS_FINGERPRINT=$FP
REPO="root@pam!tok@127.0.0.1:$PORT:$STORE"
USR="root@pam@127.0.0.1:$PORT:$STORE"

# start_connect_proxy LOG [USER:PASS]: an HTTP proxy that only tunnels
# (tcp_proxy.py --connect), logging "CONNECT target auth=ok|none|bad" per
# request; with USER:PASS it answers 407 unless they come as Basic
# authorization.  Sets CPORT.
start_connect_proxy () {
  start_tcp_proxy "$1" --connect ${2:+--auth "$2"}
  CPORT=$PPORT
}

qemu-img create -q -f qcow2 "$TMP/img.qcow2" 24M
qemu-io -c 'write -P 0x5a 0 5M' -c 'write -P 0xa5 16M 3M' "$TMP/img.qcow2" >/dev/null

# --- an open proxy, with and without the scheme
start_connect_proxy "$TMP/open.log"
check "token push through ALL_PROXY" env ALL_PROXY="http://127.0.0.1:$CPORT" \
  "$TOOL" push --repository "$REPO" --backup-id 100 --backup-time 1700000000 \
  "$TMP/img.qcow2"
check "the upgrade went through the proxy" \
  grep -q "^CONNECT 127.0.0.1:$PORT auth=none" "$TMP/open.log"
n=$(wc -l <"$TMP/open.log")
check "snapshots (REST, libcurl) through ALL_PROXY without a scheme" \
  env ALL_PROXY="127.0.0.1:$CPORT" "$TOOL" snapshots --repository "$REPO"
check "the REST call went through the proxy" \
  test "$(wc -l <"$TMP/open.log")" -gt "$n"
n=$(wc -l <"$TMP/open.log")
check "ticket login and restore through ALL_PROXY" \
  env ALL_PROXY="http://127.0.0.1:$CPORT/" PBS_PASSWORD="$USER_PASSWORD" \
  "$TOOL" restore --repository "$USR" vm/100/1700000000 drive-scsi0 "$TMP/r.raw"
raw_of "$TMP/img.qcow2" "$TMP/want.raw"
same_bytes "$TMP/r.raw" "$TMP/want.raw" "restore through the proxy = the image"
check "login and reader: two more tunnels" \
  test "$(wc -l <"$TMP/open.log")" -ge $((n + 2))
n=$(wc -l <"$TMP/open.log")
check "without ALL_PROXY: direct, curl's https_proxy ignored" \
  env -u ALL_PROXY https_proxy="http://127.0.0.1:$CPORT" \
  HTTPS_PROXY="http://127.0.0.1:$CPORT" "$TOOL" snapshots --repository "$REPO"
check "without ALL_PROXY: the proxy saw nothing" \
  test "$(wc -l <"$TMP/open.log")" = "$n"

# --- a proxy that wants credentials
start_connect_proxy "$TMP/auth.log" "alice:s3cr3t"
check "credentials in ALL_PROXY: push" \
  env ALL_PROXY="http://alice:s3cr3t@127.0.0.1:$CPORT" "$TOOL" push \
  --repository "$REPO" --backup-id 100 --backup-time 1700000100 "$TMP/img.qcow2"
check "credentials: Basic authorization for every tunnel" \
  test "$(grep -c 'auth=ok' "$TMP/auth.log")" -ge 1 -a \
  "$(grep -vc 'auth=ok' "$TMP/auth.log")" = 0
expect_fail "wrong credentials: the push fails" \
  env ALL_PROXY="http://alice:wrong@127.0.0.1:$CPORT" "$TOOL" push \
  --repository "$REPO" --backup-id 100 --backup-time 1700000200 --retries 0 \
  "$TMP/img.qcow2"
check "wrong credentials: says the proxy refused ($(cat "$TMP/ef.err"))" \
  grep -q "proxy 127.0.0.1 port $CPORT: CONNECT refused: .*407" "$TMP/ef.err"
if grep -q 'wrong\|s3cr3t' "$TMP/ef.err"; then
  fail "wrong credentials: the password is shown"
else
  pass "wrong credentials: the password is not shown"
fi
expect_fail "no credentials: snapshots (REST) fails" \
  env ALL_PROXY="http://127.0.0.1:$CPORT" "$TOOL" snapshots --repository "$REPO"
check "no credentials: REST says the proxy refused ($(cat "$TMP/ef.err"))" \
  grep -q "CONNECT refused: .*407" "$TMP/ef.err"

# --- what the official client refuses
expect_fail "socks5 proxy: unsupported" env ALL_PROXY="socks5://127.0.0.1:1080" \
  "$TOOL" snapshots --repository "$REPO"
check "socks5: names the scheme ($(cat "$TMP/ef.err"))" \
  grep -q "unsupported proxy scheme 'socks5'" "$TMP/ef.err"
expect_fail "proxy port out of range" env ALL_PROXY="http://127.0.0.1:99999" \
  "$TOOL" snapshots --repository "$REPO"

done_testing
