#!/bin/bash
# test-remote-layers.sh -- the remote backend's files call only downward,
# in the order pbsproto/client/remote-internal.h lists them (bottom first), and
# the libraries keep no process-wide state of the caller's: no getenv,
# no atexit, no global cancel descriptor.  Oracle: nm on the objects.
. "$(dirname "$0")/../helpers/functions.sh"
requires nm
[ -f "$B/libpbsproto.a" ] || skip "libpbsproto.a not built"

# The layer order: " *   remote-NAME.c   ..." lines of the header.
mapfile -t order < <(sed -n 's/^ \*   \(remote-[a-z0-9]*\)\.c .*/\1/p' \
                       "$top/pbsproto/client/remote-internal.h")
check "the header lists the layers (${#order[@]})" test "${#order[@]}" -ge 10
declare -A rank
for i in "${!order[@]}"; do rank[${order[$i]}]=$i; done
for c in "$top"/pbsproto/client/remote-*.c; do
  f=$(basename "$c" .c)
  check "$f.c has its place in the order" test -n "${rank[$f]:-}"
done

bash "$top/tests/helpers/remote-calls.sh" "$B" >"$TMP/calls" ||
  fail "remote-calls.sh failed"
check "calls between the remote files found ($(wc -l <"$TMP/calls"))" \
  test -s "$TMP/calls"
while read -r from _ to syms; do
  to=${to%:}
  if [ "${rank[$to]:-99}" -lt "${rank[$from]:--1}" ]; then
    pass "$from -> $to (down)"
  else
    fail "$from -> $to goes up or sideways: $syms"
  fi
done <"$TMP/calls"

# Each external library behind its files.
for o in "$B"/pbsproto/*/*.o; do
  f=$(basename "$o" .o)
  if nm -u "$o" | grep -q ' curl_'; then
    case $f in remote-conn|remote-rest) ;; *) fail "$f uses libcurl" ;; esac
  fi
  if nm -u "$o" | grep -q ' nghttp2_'; then
    [ "$f" = remote-h2 ] || fail "$f uses nghttp2"
  fi
done
pass "libcurl only in remote-conn and remote-rest, nghttp2 only in remote-h2"

# No hidden process-wide state in the libraries.
for lib in libpbsproto.a libqcowlib.a; do
  for sym in getenv secure_getenv atexit; do
    if nm -u "$B/$lib" 2>/dev/null | grep -qw "$sym"; then
      fail "$lib calls $sym"
    else
      pass "$lib does not call $sym"
    fi
  done
done
if nm --defined-only "$B/libpbsproto.a" 2>/dev/null |
   grep -qw 'pbs_set_cancel_fd\|pbs__tls_fd\|pbs__set_transient'; then
  fail "libpbsproto.a still defines a removed function"
else
  pass "no pbs_set_cancel_fd, pbs__tls_fd, pbs__set_transient"
fi

done_testing
