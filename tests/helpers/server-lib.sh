# server-lib.sh -- sourced by tests/server/test-server-*.sh after functions.sh.
# Starts pbs-test-server with a fresh self-signed certificate, tokens and
# users, waits for its READY line, and gives the raw protocol client.
#   srv_start [ARGS...]   start the server; sets PORT, SRVLOG, DS (store1)
#   wait_log REGEX        wait (no sleep) until the server log has REGEX
#   raw ARGS...           tests/helpers/h2-raw-client
#   pbsdata ARGS...       tests/server/pbs_testdata.py (independent encoder)
#   expect_line N REGEX FILE DESC   line N of FILE matches REGEX
#   backup_q TYPE ID TIME [EXTRA]   query string of a backup upgrade
RAW=$B/tests/helpers/h2-raw-client
requires openssl
requires python3
[ -x "$SERVER" ] || skip "$SERVER not built"
[ -x "$RAW" ] || skip "$RAW not built"

pbsdata () { python3 "$top/tests/server/pbs_testdata.py" "$@"; }
raw () { "$RAW" "$@"; }

openssl req -x509 -newkey rsa:2048 -nodes -keyout "$TMP/key.pem" \
  -out "$TMP/cert.pem" -days 1 -subj /CN=localhost 2>/dev/null ||
  skip "openssl cannot make a certificate"
# Secrets live in files only (never argv): tokens, users, header files.
cat >"$TMP/tokens" <<'EOF'
root@pam!tok 0b6a2c1e-4f5d-4c3b-9a8e-7f6d5c4b3a21
alice@pbs!tok a1b2c3d4-e5f6-4711-8899-aabbccddeeff
alice@pbs!old 11111111-2222-3333-4444-555555555555 expired
bob@pbs!x%y s3cr:et%20/with&odd=chars
EOF
cat >"$TMP/users" <<'EOF'
alice@pbs alicepw
root@pam rootpw
EOF
printf 'Authorization: PBSAPIToken root@pam!tok:0b6a2c1e-4f5d-4c3b-9a8e-7f6d5c4b3a21\n' >"$TMP/auth-root"
printf 'Authorization: PBSAPIToken alice@pbs!tok:a1b2c3d4-e5f6-4711-8899-aabbccddeeff\n' >"$TMP/auth-alice-tok"
printf 'Authorization: PBSAPIToken alice@pbs!old:11111111-2222-3333-4444-555555555555\n' >"$TMP/auth-expired"
printf 'Authorization: PBSAPIToken root@pam!tok:0b6a2c1e-0000-0000-0000-000000000000\n' >"$TMP/auth-wrong"

# wait_for FILE REGEX: print the first line of FILE matching REGEX, waiting
# for it to be written (tail -F; no sleeps).  Fails after 120 s.
wait_for () {
  local rc=0
  coproc WAITP { exec timeout 120 tail -F -n +1 "$1" 2>/dev/null; }
  grep -m1 -E -- "$2" <&"${WAITP[0]}" || rc=1
  kill "$WAITP_PID" 2>/dev/null || true
  wait "$WAITP_PID" 2>/dev/null || true
  return $rc
}

srv_start () {
  DS=$TMP/ds1
  SRVLOG=$TMP/server.log
  "$SERVER" --cert "$TMP/cert.pem" --key "$TMP/key.pem" \
    --datastore store1="$DS" --tokens "$TMP/tokens" --users "$TMP/users" \
    "$@" >"$TMP/server.out" 2>"$SRVLOG" &
  srv_pid=$!
  cleanup_fn "kill $srv_pid 2>/dev/null; wait $srv_pid 2>/dev/null"
  PORT=$(wait_for "$TMP/server.out" '^READY ' | cut -d' ' -f2) || true
  [ -n "$PORT" ] || { cat "$SRVLOG"; echo "server did not start"; exit 1; }
}

wait_log () {
  wait_for "$SRVLOG" "$1" >/dev/null ||
    { echo "timed out waiting for '$1' in the server log"; return 1; }
}

expect_line () { # N REGEX FILE DESC
  local got
  got=$(sed -n "$1p" "$3")
  if printf '%s\n' "$got" | grep -q -E -- "$2"; then pass "$4"
  else fail "$4: line $1 is '$got', expected /$2/"; fi
}

backup_q () {
  printf 'store=store1&backup-type=%s&backup-id=%s&backup-time=%s%s' \
    "$1" "$2" "$3" "${4:-}"
}

BACKUP_PROTO=proxmox-backup-protocol-v1
READER_PROTO=proxmox-backup-reader-protocol-v1
E400='^400 application/json;charset=UTF-8 '

# session AUTHFILE PROTO TARGET: run one upgraded session.  Stdin holds one
# step per line, "REQUEST => REGEX :: DESCRIPTION"; REQUEST goes to the raw
# client, and the answer line must match REGEX.  A last step "DROP" (no
# "=>") ends the connection without a GOAWAY.
session () {
  local spec=$TMP/session.spec out=$TMP/session.out n=2 line req rest re desc
  cat >"$spec"
  while IFS= read -r line; do printf '%s\n' "${line%% => *}"; done \
    <"$spec" >"$TMP/session.req"
  raw -A "$1" -u "$2" "$PORT" GET "$3" <"$TMP/session.req" >"$out" 2>"$TMP/session.err" || echo "session: raw client exit $?: $(head -c 2000 "$TMP/session.err")"
  [ -s "$out" ] || echo "session: no answer to the upgrade GET $3"
  expect_line 1 '^101 upgraded$' "$out" "upgrade $(echo "$3" | cut -c1-60)"
  while IFS= read -r line; do
    case $line in *' => '*) ;; *) continue ;; esac
    rest=${line#* => }; re=${rest%% :: *}; desc=${rest#* :: }
    expect_line $n "$re" "$out" "$desc"
    n=$((n + 1))
  done <"$spec"
}

snapdir () { # TYPE ID TIME -> datastore path of that snapshot
  printf '%s/%s/%s/%s' "$DS" "$1" "$2" "$(date -u -d "@$3" +%Y-%m-%dT%H:%M:%SZ)"
}

quiet () { "$@" >/dev/null; }
