#!/bin/bash
# test-server-auth.sh -- pbs-test-server: authentication, the REST calls and
# the checks of the backup/reader upgrade (docs/pbs-protocol.md §1.3, §2,
# §6.4), each bad request sent directly with the raw client.
. "$(dirname "$0")/../helpers/functions.sh"
. "$top/tests/helpers/server-lib.sh"

srv_start
J='application/json;charset=UTF-8'
o=$TMP/o
# A 401 is returned as an error of the request handler: plain text without
# a content type, and the reason is only logged (proxmox-rest-server
# src/rest.rs, "rest server: unify returned error message for auth failure").
U401='^401 - authentication failed$'

# --- authentication ----------------------------------------------------
raw "$PORT" GET /api2/json/version >"$o"
expect_line 1 "$U401" "$o" "no credentials: 401"
grep -q 'authentication failure: no authentication credentials provided\.$' "$SRVLOG" &&
  pass "no credentials: reason logged" || fail "no credentials: reason not logged"
raw -A "$TMP/auth-wrong" "$PORT" GET /api2/json/version >"$o"
expect_line 1 "$U401" "$o" "wrong token secret: 401"
raw -A "$TMP/auth-expired" "$PORT" GET /api2/json/version >"$o"
expect_line 1 "$U401" "$o" "expired token: 401"
printf 'Authorization: PBSAPIToken nobody@pam!tok:x\n' >"$TMP/auth-unknown"
raw -A "$TMP/auth-unknown" "$PORT" GET /api2/json/version >"$o"
expect_line 1 "^401 " "$o" "unknown token: 401"
raw -A "$TMP/auth-root" "$PORT" GET /api2/json/version >"$o"
expect_line 1 "^200 $J \{\"data\":\{.*\"version\":\"3\.2\.4\"" "$o" "token auth: version"
# PBSAPIToken=... form and a percent-encoded secret (the client encodes it)
printf 'Authorization: PBSAPIToken=bob@pbs!x%%y:s3cr%%3Aet%%2520%%2Fwith%%26odd%%3Dchars\n' >"$TMP/auth-bob"
raw -A "$TMP/auth-bob" "$PORT" GET /api2/json/version >"$o"
expect_line 1 "^200 " "$o" "PBSAPIToken= form with a percent-encoded secret"

# --- ticket login --------------------------------------------------------
raw "$PORT" POST /api2/json/access/ticket -H 'Content-Type: application/json' \
  -D <(printf '{"username":"alice@pbs","password":"wrong"}') >"$o"
expect_line 1 "^401 $J permission check failed\.$" "$o" "wrong password: 401"
raw "$PORT" POST /api2/json/access/ticket -H 'Content-Type: application/json' \
  -D <(printf '{"username":"alice@pbs","password":"alicepw","bogus":1}') >"$o"
# JSON bodies go through verify_json: no full stop after these two texts
expect_line 1 "${E400}parameter verification failed - 'bogus': schema does not allow additional properties$" "$o" "ticket: unknown parameter"
raw "$PORT" POST /api2/json/access/ticket -H 'Content-Type: application/json' \
  -D <(printf '{"password":"alicepw","port":"1"}') >"$o"
expect_line 1 "${E400}parameter verification failed:\\\\n- 'port': Expected integer value\.\\\\n- 'username': property is missing and it is not optional$" "$o" "ticket: two errors, one per line"
raw "$PORT" POST /api2/json/access/ticket -H 'Content-Type: application/json' \
  -D <(printf '{"username":"alice@pbs"}') >"$o"
expect_line 1 "${E400}no password provided$" "$o" "ticket: no password"
raw "$PORT" POST /api2/json/access/ticket -H 'Content-Type: application/json' \
  -D <(printf '["alice@pbs"]') >"$o"
expect_line 1 "${E400}Expected object - got array\.$" "$o" "ticket: JSON array body"
raw "$PORT" POST /api2/json/access/ticket -H 'Content-Type: application/json' \
  -D <(printf '{"username":"al ice@pbs","password":"x"}') >"$o"
expect_line 1 "${E400}parameter verification failed - 'username': value does not match the regex pattern$" "$o" "ticket: bad user id"
raw "$PORT" POST /api2/json/access/ticket -H 'Content-Type: application/json' \
  -D <(printf '{"username":"alice@pbs","password":"\xff"}') >"$o"
expect_line 1 "${E400}Request body not uft8: invalid utf-8 sequence of 1 bytes from index 36$" "$o" "ticket: body not UTF-8"
raw "$PORT" POST /api2/json/access/ticket -H 'Content-Type: application/json' \
  -D <(printf '{"username":"alice@pbs","password":"alicepw"}') >"$o"
expect_line 1 "^200 " "$o" "ticket login (JSON)"
ticket=$(cut -d' ' -f3- "$o" | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["ticket"])')
csrf=$(cut -d' ' -f3- "$o" | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["CSRFPreventionToken"])')
case $ticket in PBS:alice@pbs:????????::*) pass "ticket format $(echo "$ticket" | cut -d: -f1-3)" ;;
  *) fail "ticket format: $ticket" ;; esac
raw "$PORT" POST /api2/json/access/ticket -H 'Content-Type: application/x-www-form-urlencoded' \
  -D <(printf 'username=alice%%40pbs&password=alicepw') >"$o"
expect_line 1 "^200 " "$o" "ticket login (form)"
enc=$(python3 -c 'import sys,urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$ticket")
printf 'Cookie: PBSAuthCookie=%s\n' "$enc" >"$TMP/cookie"
raw -A "$TMP/cookie" "$PORT" GET /api2/json/version >"$o"
expect_line 1 "^200 " "$o" "ticket cookie auth"
# the cookie wins over a (wrong) token header
cat "$TMP/cookie" "$TMP/auth-wrong" >"$TMP/cookie-wrong"
raw -A "$TMP/cookie-wrong" "$PORT" GET /api2/json/version >"$o"
expect_line 1 "^200 " "$o" "cookie wins over Authorization"
# flip the signature's last character (to one it surely is not)
bad=$(python3 -c 'import sys; t = sys.argv[1]; print(t[:-1] + ("B" if t[-1] == "A" else "A"))' "$enc")
printf 'Cookie: PBSAuthCookie=%s\n' "$bad" >"$TMP/cookie-bad"
raw -A "$TMP/cookie-bad" "$PORT" GET /api2/json/version >"$o"
expect_line 1 "$U401" "$o" "forged ticket: 401"
# renewal: the ticket as password
raw "$PORT" POST /api2/json/access/ticket -H 'Content-Type: application/json' \
  -D <(python3 -c 'import json,sys; print(json.dumps({"username":"alice@pbs","password":sys.argv[1]}))' "$ticket") >"$o"
expect_line 1 "^200 " "$o" "ticket renewal"
# a ticket is bound to its user
raw "$PORT" POST /api2/json/access/ticket -H 'Content-Type: application/json' \
  -D <(python3 -c 'import json,sys; print(json.dumps({"username":"root@pam","password":sys.argv[1]}))' "$ticket") >"$o"
expect_line 1 "^401 " "$o" "another user's ticket is not a password"

# --- REST routing --------------------------------------------------------
raw -A "$TMP/auth-root" "$PORT" GET /api2/json/nothing >"$o"
expect_line 1 "^404 $J Path '/api2/json/nothing' not found\.$" "$o" "unknown path: 404"
raw "$PORT" GET /api2/json/nothing >"$o"
expect_line 1 "$U401" "$o" "unknown path without credentials: 401 first"
raw -A "$TMP/auth-root" "$PORT" GET //api2//json/nothing/ >"$o"
expect_line 1 "^404 $J Path '/api2/json/nothing' not found\.$" "$o" "empty path components are dropped"
raw -A "$TMP/auth-root" "$PORT" GET /api2/json/%76ersion >"$o"
expect_line 1 "^404 $J Path '/api2/json/%76ersion' not found\.$" "$o" "the path is not percent-decoded"
raw -A "$TMP/auth-root" "$PORT" GET /api2/json/../version >"$o"
expect_line 1 "^400 - path contains illegal components$" "$o" "a path component starting with a dot: 400"
raw -A "$TMP/auth-root" "$PORT" GET /api2/xml/version >"$o"
expect_line 1 "^400 - Unsupported output format 'xml'\.$" "$o" "unknown output format: 400"
raw "$PORT" GET /nothing/here >"$o"
expect_line 1 "^404 - no such file: 'nothing/here'$" "$o" "outside /api2: a static file"
raw "$PORT" POST /nothing >"$o"
expect_line 1 "^400 - invalid http method for path$" "$o" "outside /api2: only GET"
raw -A "$TMP/auth-root" "$PORT" GET '/api2/json/version?x=1' >"$o"
expect_line 1 "${E400}parameter verification failed - 'x': schema does not allow additional properties\.$" "$o" "unknown query parameter: 400"
raw -A "$TMP/auth-root" "$PORT" GET '/api2/json/version?x=1&y=%zz' >"$o"
expect_line 1 "${E400}parameter verification failed:\\\\n- 'x': schema does not allow additional properties\.\\\\n- 'y': schema does not allow additional properties\.$" "$o" "two unknown query parameters, in query order"
raw -A "$TMP/auth-root" "$PORT" GET "/api2/json/version?$(head -c 3100 /dev/zero | tr '\0' a)" >"$o"
expect_line 1 "^414 - $" "$o" "URI over 3072 bytes: 414, empty, no content type"
raw -A "$TMP/auth-root" "$PORT" GET '/api2/json/admin/datastore/store1/snapshots?backup-type=xx' >"$o"
expect_line 1 "${E400}parameter verification failed - 'backup-type': value 'xx' is not defined in the enumeration\.$" "$o" "snapshots: bad backup-type"
raw -A "$TMP/auth-root" "$PORT" GET '/api2/json/admin/datastore/nostore/snapshots' >"$o"
expect_line 1 "${E400}no such datastore 'nostore'" "$o" "snapshots: unknown store"
raw -A "$TMP/auth-root" "$PORT" GET '/api2/json/admin/datastore/store1/snapshots?ns=nons' >"$o"
expect_line 1 "^404 $J namespace not found$" "$o" "snapshots: unknown namespace: 404"
raw -A "$TMP/auth-root" "$PORT" GET '/api2/json/admin/datastore/st/snapshots' >"$o"
expect_line 1 "${E400}parameter verification failed - 'store': value must be at least 3 characters long$" "$o" "snapshots: the URI's store is a parameter"
raw -A "$TMP/auth-root" "$PORT" GET '/api2/json/admin/datastore/store1/snapshots?store=store1' >"$o"
expect_line 1 "${E400}parameter verification failed - 'store': duplicate parameter\.$" "$o" "snapshots: store in the query too"
raw -A "$TMP/auth-root" "$PORT" GET '/api2/json/admin/datastore/store1/snapshots' >"$o"
expect_line 1 '^200 .* \{"data":\[\]\}$' "$o" "snapshots: empty store"

raw -A "$TMP/auth-root" -H "X-Big: $(head -c 17000 /dev/zero | tr '\0' a)" "$PORT" GET /api2/json/version >"$o"
expect_line 1 "^431 " "$o" "header block over 16 KiB: 431"
raw "$PORT" POST /api2/json/access/ticket -H 'Content-Type: application/x-www-form-urlencoded' \
  -D <(printf 'username=alice%%40pbs&password=%s' "$(head -c 70000 /dev/zero | tr '\0' a)") >"$o"
expect_line 1 "${E400}Request body too large$" "$o" "HTTP/1.1 form body over 64 KiB: 400"

# --- upgrade checks, in PBS's order --------------------------------------
q=$(backup_q vm 100 1700000000)
raw -u $BACKUP_PROTO "$PORT" GET "/api2/json/backup?$q" </dev/null >"$o"
expect_line 1 "^401 " "$o" "upgrade without credentials: 401"
raw -A "$TMP/auth-expired" -u $BACKUP_PROTO "$PORT" GET "/api2/json/backup?$q" </dev/null >"$o"
expect_line 1 "$U401" "$o" "upgrade with an expired token: 401"
raw -A "$TMP/auth-root" -u $BACKUP_PROTO "$PORT" GET "/api2/json/backup?$q&no-cache=true" </dev/null >"$o"
expect_line 1 "${E400}parameter verification failed - 'no-cache': schema does not allow additional properties\.$" "$o" "upgrade: unknown parameter (4.x no-cache)"
raw -A "$TMP/auth-root" -u $BACKUP_PROTO "$PORT" GET "/api2/json/backup?store=s1&backup-type=vm&backup-id=100&backup-time=1" </dev/null >"$o"
expect_line 1 "${E400}parameter verification failed - 'store': value must be at least 3 characters long$" "$o" "upgrade: store too short"
raw -A "$TMP/auth-root" -u $BACKUP_PROTO "$PORT" GET "/api2/json/backup?$(backup_q vmx 100 5)" </dev/null >"$o"
expect_line 1 "${E400}parameter verification failed - 'backup-type': value 'vmx' is not defined in the enumeration\.$" "$o" "upgrade: bad backup-type"
raw -A "$TMP/auth-root" -u $BACKUP_PROTO "$PORT" GET "/api2/json/backup?$(backup_q vm .x 5)" </dev/null >"$o"
expect_line 1 "${E400}parameter verification failed - 'backup-id': value does not match the regex pattern$" "$o" "upgrade: bad backup-id"
raw -A "$TMP/auth-root" -u $BACKUP_PROTO "$PORT" GET "/api2/json/backup?$(backup_q vm .x 5)&debug=maybe" </dev/null >"$o"
expect_line 1 "${E400}parameter verification failed:\\\\n- 'backup-id': value does not match the regex pattern\\\\n- 'debug': Unable to parse boolean option\.$" "$o" "upgrade: two errors in query order"
raw -A "$TMP/auth-root" -u $BACKUP_PROTO "$PORT" GET "/api2/json/backup?$(backup_q vm 100 0)" </dev/null >"$o"
expect_line 1 "${E400}parameter verification failed - 'backup-time': value must have a minimum value of 1 \(got 0\)$" "$o" "upgrade: backup-time 0"
raw -A "$TMP/auth-root" -u $BACKUP_PROTO "$PORT" GET "/api2/json/backup?$(backup_q vm 100 12x)" </dev/null >"$o"
expect_line 1 "${E400}parameter verification failed - 'backup-time': invalid digit found in string$" "$o" "upgrade: backup-time not an integer"
raw -A "$TMP/auth-root" -u $BACKUP_PROTO "$PORT" GET "/api2/json/backup?$(backup_q vm 100 99999999999999999999)" </dev/null >"$o"
expect_line 1 "${E400}parameter verification failed - 'backup-time': number too large to fit in target type$" "$o" "upgrade: backup-time over i64"
raw -A "$TMP/auth-root" -u $BACKUP_PROTO "$PORT" GET "/api2/json/backup?$(backup_q vm 100 253402300800)" </dev/null >"$o"
expect_line 1 "${E400}parameter verification failed - 'backup-time': 253402300800 is after 9999-12-31T23:59:59Z$" "$o" "upgrade: backup-time after 9999 (no snapshot name)"
raw -A "$TMP/auth-root" -u $BACKUP_PROTO "$PORT" GET "/api2/json/backup?store=store1&backup-type=vm&backup-id=1&backup-time=" </dev/null >"$o"
expect_line 1 "${E400}parameter verification failed - 'backup-time': cannot parse integer from empty string$" "$o" "upgrade: backup-time empty"
raw -A "$TMP/auth-root" -u $BACKUP_PROTO "$PORT" GET "/api2/json/backup?store=store1&backup-type=vm&backup-time=5" </dev/null >"$o"
expect_line 1 "${E400}parameter verification failed - 'backup-id': parameter is missing and it is not optional\.$" "$o" "upgrade: missing backup-id"
raw -A "$TMP/auth-root" -u $BACKUP_PROTO "$PORT" GET "/api2/json/backup?backup-type=vm&backup-time=5" </dev/null >"$o"
expect_line 1 "${E400}parameter verification failed:\\\\n- 'backup-id': parameter is missing and it is not optional\.\\\\n- 'store': parameter is missing and it is not optional\.$" "$o" "upgrade: missing parameters in name order"
raw -A "$TMP/auth-root" -u $BACKUP_PROTO "$PORT" GET "/api2/json/backup?$q&ns=a/b/c/d/e/f/g/h" </dev/null >"$o"
expect_line 1 "${E400}namespace too deep, 7 >= max 7$" "$o" "upgrade: 8 namespace levels pass the schema, not BackupNamespace"
raw -A "$TMP/auth-root" -u $BACKUP_PROTO "$PORT" GET "/api2/json/backup?$q&ns=a/b/c/d/e/f/g/h/i" </dev/null >"$o"
expect_line 1 "${E400}parameter verification failed - 'ns': value does not match the regex pattern$" "$o" "upgrade: 9 namespace levels fail the schema"
raw -A "$TMP/auth-root" -u $BACKUP_PROTO "$PORT" GET "/api2/json/backup?store=nostore&backup-type=vm&backup-id=1&backup-time=5" </dev/null >"$o"
expect_line 1 "${E400}no such datastore 'nostore'$" "$o" "upgrade: unknown datastore"
raw -A "$TMP/auth-root" "$PORT" GET "/api2/json/backup?$q" </dev/null >"$o"
expect_line 1 "${E400}missing Upgrade header$" "$o" "upgrade: missing Upgrade header"
raw -A "$TMP/auth-root" -u $READER_PROTO "$PORT" GET "/api2/json/backup?$q" </dev/null >"$o"
expect_line 1 "${E400}invalid protocol name$" "$o" "upgrade: wrong protocol name"
raw -A "$TMP/auth-root" -u h2c "$PORT" GET "/api2/json/backup?$q" </dev/null >"$o"
expect_line 1 "${E400}invalid protocol name$" "$o" "upgrade: h2c is not the protocol"
raw -0 -A "$TMP/auth-root" -u $BACKUP_PROTO "$PORT" GET "/api2/json/backup?$q" </dev/null >"$o"
expect_line 1 "${E400}unexpected http version$" "$o" "upgrade: HTTP/1.0 refused"
raw -A "$TMP/auth-root" -u $BACKUP_PROTO "$PORT" GET "/api2/json/backup?$q&ns=nons" </dev/null >"$o"
expect_line 1 "^404 $J namespace not found$" "$o" "upgrade: unknown namespace: 404"
raw -A "$TMP/auth-root" -u $BACKUP_PROTO "$PORT" GET "/api2/json/backup?$q&benchmark=true" </dev/null >"$o"
expect_line 1 "${E400}benchmark flags is only allowed on 'host/benchmark'$" "$o" "upgrade: benchmark flag outside host/benchmark"
raw -A "$TMP/auth-root" -u $BACKUP_PROTO "$PORT" GET "/api2/json/backup?$(backup_q host benchmark 5)" </dev/null >"$o"
expect_line 1 "${E400}unable to run benchmark without --benchmark flags$" "$o" "upgrade: host/benchmark needs the flag"
raw -A "$TMP/auth-root" -u $BACKUP_PROTO "$PORT" GET "/api2/json/backup?$q&debug=maybe" </dev/null >"$o"
expect_line 1 "${E400}parameter verification failed - 'debug': Unable to parse boolean option\.$" "$o" "upgrade: bad boolean"
printf 'GET /previous_backup_time\nSETTINGS\n' |
  raw -A "$TMP/auth-root" -u $BACKUP_PROTO "$PORT" GET "/api2/json/backup?$q&debug=true&benchmark=false" >"$o"
expect_line 1 "^101 upgraded$" "$o" "upgrade with a token (debug=true benchmark=false)"
expect_line 3 "^initial_window=33554432 max_frame=4194304 connection_window=33554432$" "$o" "server HTTP/2 settings: 32 MiB windows, 4 MiB frames"
wait_log 'backup session closed'
# a ticket upgrade (GET: no CSRF token needed)
raw -A "$TMP/cookie" -u $BACKUP_PROTO "$PORT" GET "/api2/json/backup?$(backup_q vm 200 1700000000)" </dev/null >"$o"
expect_line 1 "^101 upgraded$" "$o" "upgrade with a ticket"
raw -A "$TMP/auth-root" -u $READER_PROTO "$PORT" GET "/api2/json/reader?$q&benchmark=false" </dev/null >"$o"
expect_line 1 "${E400}parameter verification failed - 'benchmark': schema does not allow additional properties\.$" "$o" "reader upgrade: no benchmark parameter"
raw -A "$TMP/auth-root" -u $READER_PROTO "$PORT" GET "/api2/json/reader?$q" </dev/null >"$o"
expect_line 1 "${E400}snapshot vm/100/2023-11-14T22:13:20Z does not exist\.$" "$o" "reader upgrade: snapshot not found: 400"
raw -A "$TMP/auth-alice-tok" -u $READER_PROTO "$PORT" GET "/api2/json/reader?$q" </dev/null >"$o"
expect_line 1 "${E400}backup owner check failed!$" "$o" "reader upgrade: owner check before the snapshot lookup"
raw -A "$TMP/auth-root" -u $BACKUP_PROTO "$PORT" GET "/api2/json/reader?$q" </dev/null >"$o"
expect_line 1 "${E400}invalid protocol name$" "$o" "reader upgrade: backup protocol name refused"

# --- --auth-delay: a second server on the same (existing) datastore --------
"$SERVER" --cert "$TMP/cert.pem" --key "$TMP/key.pem" --datastore store1="$DS" \
  --tokens "$TMP/tokens" --auth-delay 1.5 >"$TMP/server2.out" 2>"$TMP/server2.log" &
srv2=$!
cleanup_fn "kill $srv2 2>/dev/null; wait $srv2 2>/dev/null"
PORT2=$(wait_for "$TMP/server2.out" '^READY ' | cut -d' ' -f2)
t0=$(date +%s%N)
raw -A "$TMP/auth-wrong" "$PORT2" GET /api2/json/version >"$o"
t1=$(date +%s%N)
expect_line 1 "^401 " "$o" "auth-delay server: wrong token still 401"
check "auth-delay: the 401 came after >= 1.5 s ($(( (t1 - t0) / 1000000 )) ms)" \
  test $(( (t1 - t0) / 1000000 )) -ge 1500
kill -TERM "$srv2"
rc=0; wait "$srv2" || rc=$?
check "second server: SIGTERM exit 0" test "$rc" = 0

# --- no secret ever reaches the log ---------------------------------------
for secret in 0b6a2c1e-4f5d 0b6a2c1e-0000 alicepw 11111111-2222 "$ticket" "${ticket##*::}"; do
  if grep -qF -- "$secret" "$SRVLOG"; then fail "secret '${secret:0:8}...' in the server log"; else pass "secret '${secret:0:8}...' not in the server log"; fi
done

done_testing
