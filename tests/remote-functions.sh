# remote-functions.sh -- sourced by tests/test-remote-*.sh after
# functions.sh: a self-signed certificate made by the openssl CLI, token and
# user files, and the HTTPS test server (tests/server, see its README)
# started on a free port.  Readiness is the server's "READY <port>" line,
# read from a FIFO: no sleeps.

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

# start_server DSDIR [PORT]: sets PORT and SERVER_PID; killed at exit.
# CERT_DIR (default $TMP) holds the cert.pem and key.pem it serves.
_srv_n=0
start_server () {
  local fifo line fd
  _srv_n=$((_srv_n + 1))
  fifo=$TMP/ready.$_srv_n
  mkfifo "$fifo"
  exec {fd}<>"$fifo"
  "$SERVER" --datastore "$STORE=$1" --tokens "$TMP/tokens" \
    --users "$TMP/users" --cert "${CERT_DIR:-$TMP}/cert.pem" \
    --key "${CERT_DIR:-$TMP}/key.pem" \
    --port "${2:-0}" >"$fifo" 2>>"$TMP/server.log" &
  SERVER_PID=$!
  cleanup_fn "kill $SERVER_PID 2>/dev/null; wait $SERVER_PID 2>/dev/null"
  line=
  read -r -t 120 -u "$fd" line || true
  case "$line" in
    "READY "*) PORT=${line#READY } ;;
    *) echo "server did not start: '$line'"; tail -5 "$TMP/server.log"; exit 1 ;;
  esac
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

# start_proxy [HOLD_FIFO]: a TCP proxy in python, 127.0.0.1:PPORT to the
# server at $PORT (sets PPORT, PROXY_PID; log in $TMP/proxy.log).  The
# first connection that carries more than 2 MiB towards the server is cut
# (RST) once.  With HOLD_FIFO it says "holding" first and waits until a
# line can be read from that FIFO (the test acts meanwhile).
_px=0
start_proxy () {
  local fifo=$TMP/proxy.$_px fd line
  _px=$((_px + 1))
  mkfifo "$fifo"
  exec {fd}<>"$fifo"
  python3 - "$PORT" "${1:-}" >"$fifo" 2>>"$TMP/proxy.log" <<'EOF' &
import socket, struct, sys, threading
target = int(sys.argv[1])
hold = sys.argv[2]
lst = socket.socket(); lst.bind(("127.0.0.1", 0)); lst.listen(16)
print("READY %d" % lst.getsockname()[1], flush=True)
cut = threading.Event()
def pump(a, b, upstream):
    n = 0
    try:
        while True:
            d = a.recv(65536)
            if not d:
                break
            n += len(d)
            if upstream and n > 2 << 20 and not cut.is_set():
                cut.set()
                if hold:
                    print("holding after %d bytes" % n, file=sys.stderr,
                          flush=True)
                    open(hold).readline()
                print("cut after %d bytes" % n, file=sys.stderr, flush=True)
                for s in (a, b):   # RST, not FIN: a broken connection
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                 struct.pack("ii", 1, 0))
                    # SHUT_RD wakes the other pump's recv without a FIN, so
                    # that close() really releases the socket (and resets).
                    s.shutdown(socket.SHUT_RD)
                    s.close()
                return
            b.sendall(d)
    except OSError:
        pass
    for s in (a, b):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
while True:
    c, _ = lst.accept()
    s = socket.create_connection(("127.0.0.1", target))
    threading.Thread(target=pump, args=(c, s, True), daemon=True).start()
    threading.Thread(target=pump, args=(s, c, False), daemon=True).start()
EOF
  PROXY_PID=$!
  cleanup_fn "kill $PROXY_PID 2>/dev/null"
  read -r -t 60 -u "$fd" line || true
  PPORT=${line#READY }
}
