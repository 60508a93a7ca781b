# remote-functions.sh -- sourced by tests/remote/test-remote-*.sh (and the
# remote push tests) after functions.sh: a self-signed certificate made by
# the openssl CLI, token and user files, the HTTPS test server (tests/server,
# see its README) started on a free port, and TCP proxies
# (tests/helpers/tcp_proxy.py).  Readiness is their "READY <port>" line, read from
# a FIFO: no sleeps.

[ -x "$SERVER" ] || skip "pbs-test-server not built ($SERVER)"
requires openssl

TOKEN_SECRET=0d5c9f0e-3b7a-4f43-9d1e-5a8f2f7c11aa
USER_PASSWORD='pa:ss%/w&rd+1'
STORE=store1

# make_cert DIR: cert.pem + key.pem for CN=localhost, SAN localhost and
# 127.0.0.1; FP = its SHA-256 fingerprint as openssl prints it (upper case).
make_cert () {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$1/key.pem" -out "$1/cert.pem" -days 2 -subj /CN=localhost \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" 2>/dev/null
  FP=$(openssl x509 -in "$1/cert.pem" -noout -fingerprint -sha256 | cut -d= -f2)
}

# run_ready NAME LOG CMD...: start CMD in the background, its stderr
# appended to LOG, and wait (at most 120 s) for its "READY <port>" line on
# stdout, read from a FIFO; sets READY_PID and READY_PORT.  CMD is killed
# at exit; a CMD that does not get ready ends the test.
_ready_n=0
run_ready () {
  local name=$1 log=$2 fifo fd line
  shift 2
  _ready_n=$((_ready_n + 1))
  fifo=$TMP/ready.$_ready_n
  mkfifo "$fifo"
  exec {fd}<>"$fifo"
  "$@" >"$fifo" 2>>"$log" &
  READY_PID=$!
  cleanup_fn "kill $READY_PID 2>/dev/null; wait $READY_PID 2>/dev/null"
  line=
  read -r -t 120 -u "$fd" line || true
  case "$line" in
    "READY "*) READY_PORT=${line#READY } ;;
    *) echo "$name did not start: '$line'"; tail -5 "$log"; exit 1 ;;
  esac
}

# start_server DSDIR [PORT]: sets PORT and SERVER_PID; killed at exit.
# CERT_DIR (default $TMP) holds the cert.pem and key.pem it serves.
start_server () {
  run_ready server "$TMP/server.log" "$SERVER" --datastore "$STORE=$1" \
    --tokens "$TMP/tokens" --users "$TMP/users" \
    --cert "${CERT_DIR:-$TMP}/cert.pem" --key "${CERT_DIR:-$TMP}/key.pem" \
    --port "${2:-0}"
  SERVER_PID=$READY_PID PORT=$READY_PORT
}

stop_server () {
  kill "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
}

setup_remote () {
  make_cert "$TMP"
  printf 'root@pam!tok %s\nroot@pam!old %s expired\n' "$TOKEN_SECRET" \
    "$TOKEN_SECRET" >"$TMP/tokens"
  printf 'root@pam %s\n' "$USER_PASSWORD" >"$TMP/users"
}

# wait_line FILE TEXT [FROM]: block until a line containing TEXT appears in
# FILE at line FROM (default 1) or later (at most 60 s).  Returns 1 if it
# never did.
wait_line () {
  local fd pid line
  exec {fd}< <(exec timeout 60 tail -n +"${3:-1}" -f "$1")
  pid=$!
  while read -r -u "$fd" line; do
    case "$line" in *"$2"*) kill "$pid" 2>/dev/null; exec {fd}<&-; return 0 ;; esac
  done
  exec {fd}<&-
  return 1
}

# start_tcp_proxy LOG OPTION...: tests/helpers/tcp_proxy.py with those options
# (see its usage), its events appended to LOG; sets PPORT and PROXY_PID,
# killed at exit.
start_tcp_proxy () {
  local log=$1
  shift
  run_ready proxy "$log" python3 "$top/tests/helpers/tcp_proxy.py" "$@"
  PROXY_PID=$READY_PID PPORT=$READY_PORT
}

# start_proxy [HOLD_FIFO]: a TCP proxy to the server at $PORT (log in
# $TMP/proxy.log).  The first connection that carries more than 2 MiB
# towards the server is cut (RST) once.  With HOLD_FIFO it says "holding"
# first and waits until a line can be read from that FIFO (the test acts
# meanwhile).
start_proxy () {
  start_tcp_proxy "$TMP/proxy.log" --target "$PORT" --cut-after $((2 << 20)) \
    --reset ${1:+--hold "$1"}
}
