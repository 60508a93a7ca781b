# functions.sh -- sourced by tests/*/test-*.sh.
# Gives: $TOOL (the built qcow2pbs), $TMP (a scratch dir removed on exit),
# requires CMD (skip with exit 77 when absent), cleanup_fn CMD (run at exit),
# ok/fail reporting, expect_fail (exit 1, one-line "qcow2pbs: FILE: ..." error).
set -eu
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
B=${B:-build}
case "$B" in /*) ;; *) B=$top/$B ;; esac
TOOL=$B/qcow2pbs
SERVER=$B/pbs-test-server
TMP=$(mktemp -d "${TMPDIR:-/tmp}/qcow2pbs-test.XXXXXX")
_cleanup_cmds=()
cleanup_fn () { _cleanup_cmds+=("$*"); }
_run_cleanup () {
  local rc=$? c
  for c in "${_cleanup_cmds[@]+"${_cleanup_cmds[@]}"}"; do eval "$c" || true; done
  rm -rf "$TMP"
  exit $rc
}
trap _run_cleanup EXIT

# DS_TMP: scratch directory for datastores.  A datastore has 65536 chunk
# directories; on tmpfs (/dev/shm) they take about 1 s to create and remove,
# on a busy ext4 up to a minute.  Falls back to $TMP.
DS_TMP=$TMP
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
  DS_TMP=$(mktemp -d /dev/shm/qcow2pbs-ds.XXXXXX 2>/dev/null) || DS_TMP=$TMP
  [ "$DS_TMP" = "$TMP" ] || cleanup_fn "rm -rf '$DS_TMP'"
fi

skip () { echo "skipped: $*"; exit 77; }
requires () { command -v "$1" >/dev/null 2>&1 || skip "$1 not installed"; }

_ok=0 _failed=0
pass () { _ok=$((_ok + 1)); echo "ok - $*"; }
fail () { _failed=$((_failed + 1)); echo "not ok - $*"; }
check () { # check DESCRIPTION CMD...: pass if CMD exits 0
  local d=$1; shift
  if "$@"; then pass "$d"; else fail "$d"; fi
}
done_testing () {
  echo "# $_ok passed, $_failed failed"
  [ "$_failed" = 0 ]
}

# expect_fail DESCRIPTION CMD...: CMD must exit 1 and print exactly one
# stderr line starting "qcow2pbs: ".
expect_fail () {
  local d=$1 rc=0; shift
  "$@" >"$TMP/ef.out" 2>"$TMP/ef.err" || rc=$?
  if [ $rc = 1 ] && [ "$(wc -l <"$TMP/ef.err")" = 1 ] &&
     grep -q '^qcow2pbs: ' "$TMP/ef.err"; then
    pass "$d: $(cat "$TMP/ef.err")"
  else
    fail "$d (exit $rc): $(head -c 400 "$TMP/ef.err")"
  fi
}

# expect_fail2 DESCRIPTION CMD...: as expect_fail, but exit 2 (verify's
# "trouble", as cmp says it).
expect_fail2 () {
  local d=$1 rc=0; shift
  "$@" >"$TMP/ef.out" 2>"$TMP/ef.err" || rc=$?
  if [ $rc = 2 ] && [ "$(wc -l <"$TMP/ef.err")" = 1 ] &&
     grep -q '^qcow2pbs: ' "$TMP/ef.err"; then
    pass "$d: $(cat "$TMP/ef.err")"
  else
    fail "$d (exit $rc): $(head -c 400 "$TMP/ef.err")"
  fi
}

# same_bytes A B DESCRIPTION: byte-identical files
same_bytes () {
  if cmp -s "$1" "$2"; then pass "$3"; else fail "$3: $(cmp "$1" "$2" 2>&1 | head -1)"; fi
}
