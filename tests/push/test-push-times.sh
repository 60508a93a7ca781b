#!/bin/bash
# test-push-times.sh -- backup times and repeated chains:
#  - an equal --backup-time says "same time", not "older"; an older one
#    names the group's last snapshot; --dry-run reports both as the real
#    push does;
#  - times a snapshot cannot be named with (after 9999, before 1970) are
#    refused; 9999-12-31T23:59:59Z is the last one accepted;
#  - without --backup-time, a push in the same second as the group's last
#    snapshot waits for the next second and succeeds;
#  - the same chain pushed again is named ("already holds this chain"),
#    --skip-unchanged makes no snapshot (text and JSON say so); an older
#    chain after a newer one is named with the snapshot of that state.
# Oracles: qemu-img convert (restores), python3 (times, JSON), ls.
. "$(dirname "$0")/../helpers/functions.sh"
. "$(dirname "$0")/../helpers/push-functions.sh"
requires qemu-img
requires qemu-io
requires python3
[ -x "$TOOL" ] || skip "qcow2pbs not built"

d=$TMP/img; mkdir "$d"
qemu-img create -q -f qcow2 "$d/full.qcow2" 16M
qemu-io -c 'write -P 1 0 1M' "$d/full.qcow2" >/dev/null
qemu-img create -q -f qcow2 -b full.qcow2 -F qcow2 "$d/i0.qcow2"
qemu-io -c 'write -P 2 4M 1M' "$d/i0.qcow2" >/dev/null
qemu-img create -q -f qcow2 -b i0.qcow2 -F qcow2 "$d/i1.qcow2"
qemu-io -c 'write -P 3 8M 1M' "$d/i1.qcow2" >/dev/null
DS=$DS_TMP/ds
push () { "$TOOL" push --repository "$DS" "$@"; }
rfc () { python3 -c 'import sys,datetime
print(datetime.datetime.fromtimestamp(int(sys.argv[1]), datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))' "$1"; }
T0=1700000000

# --- equal and older times, for the real push and --dry-run
push --backup-id t --backup-time $T0 "$d/full.qcow2" >/dev/null
for mode in push dry-run; do
  extra=; [ $mode = dry-run ] && extra=--dry-run
  expect_fail "$mode: equal --backup-time" \
    push $extra --backup-id t --backup-time $T0 "$d/full.qcow2"
  check "$mode: equal time says so" grep -q 'has this same time' "$TMP/ef.err"
  check "$mode: equal time does not say 'older'" bash -c "! grep -q older '$TMP/ef.err'"
  expect_fail "$mode: older --backup-time" \
    push $extra --backup-id t --backup-time $((T0 - 100)) "$d/full.qcow2"
  check "$mode: older time names the last snapshot" \
    grep -q "older than the group's last snapshot vm/t/$(rfc $T0)" "$TMP/ef.err"
done
check "still one snapshot" test "$(ls "$DS/vm/t" | grep -c T)" = 1

# --- the range a snapshot name can hold
for bad in 999999999999 253402300800 1969-12-31T23:59:59Z 0; do
  rc=0; push --backup-id range --backup-time $bad "$d/full.qcow2" \
    >/dev/null 2>"$TMP/r.err" || rc=$?
  check "--backup-time $bad refused as a usage error (exit $rc): $(head -1 "$TMP/r.err")" \
    test $rc = 2
done
check "no snapshot named 0000-00-00T00:00:00Z (or any)" test ! -e "$DS/vm/range"
check "--backup-time 253402300799 (the last second of 9999) works" \
  push --backup-id range --backup-time 253402300799 "$d/full.qcow2"
check "... named 9999-12-31T23:59:59Z" test -d "$DS/vm/range/9999-12-31T23:59:59Z"

# --- same second without --backup-time: waits for the next second.
# Start just after a second begins, so both pushes fall into it.
python3 -c 'import time; time.sleep(1 - time.time() % 1 + 0.01)'
now=$(date +%s)
push --backup-id s --backup-time "$now" "$d/full.qcow2" >/dev/null
rc=0; push --backup-id s "$d/i0.qcow2" >/dev/null 2>"$TMP/s.err" || rc=$?
check "same second: the push without --backup-time succeeds (exit $rc): $(cat "$TMP/s.err")" \
  test $rc = 0
check "same second: two snapshots" test "$(ls "$DS/vm/s" | grep -c T)" = 2
second=$(ls "$DS/vm/s" | grep T | tail -1)
check "same second: the second one is later ($second)" test "$second" != "$(rfc "$now")"
if grep -q "waiting for the next one" "$TMP/s.err"; then
  check "same second: one line says it waited" \
    test "$(grep -c "^push: vm/s/$(rfc "$now") was made in this second" "$TMP/s.err")" = 1
else
  echo "# the second push started in a later second: no wait needed"
fi
restore_equals "$DS" "vm/s/$second" drive-scsi0 "$d/i0.qcow2" \
  "same second: the later snapshot restores to i0"

# --- the same chain again, --skip-unchanged, an older chain
push --backup-id u --backup-time $((T0 + 1)) "$d/full.qcow2" >/dev/null
push --backup-id u --backup-time $((T0 + 2)) "$d/i0.qcow2" >/dev/null
push --backup-id u --backup-time $((T0 + 3)) "$d/i1.qcow2" >/dev/null
check "same chain again: push succeeds" bash -c \
  "'$TOOL' push --repository '$DS' --backup-id u --backup-time $((T0 + 4)) '$d/i1.qcow2' >/dev/null 2>'$TMP/u.err'"
check "same chain again: one line names the snapshot that holds it: $(cat "$TMP/u.err")" \
  test "$(grep -c "^push: vm/u/$(rfc $((T0 + 3))) already holds this chain" "$TMP/u.err")" = 1
restore_equals "$DS" vm/u/$((T0 + 4)) drive-scsi0 "$d/i1.qcow2" \
  "same chain again: the snapshot restores to i1"
rc=0; push --skip-unchanged --backup-id u --backup-time $((T0 + 5)) "$d/i1.qcow2" \
  >"$TMP/k.out" 2>"$TMP/k.err" || rc=$?
check "--skip-unchanged: exit 0 (got $rc)" test $rc = 0
check "--skip-unchanged: no snapshot made" test ! -e "$DS/vm/u/$(rfc $((T0 + 5)))"
check "--skip-unchanged: says so, naming the snapshot: $(cat "$TMP/k.out")" \
  grep -q "^unchanged since vm/u/$(rfc $((T0 + 4)))" "$TMP/k.out"
push --skip-unchanged --output-format json --backup-id u --backup-time $((T0 + 5)) \
  "$d/i1.qcow2" >"$TMP/k.json" || true
check "--skip-unchanged JSON: skipped true, snapshot named, old fields kept" \
  python3 -c 'import json,sys
j = json.load(open(sys.argv[1]))
assert j["skipped"] is True and j["snapshot"] == sys.argv[2], j
assert {"ns", "dry_run", "archives"} <= set(j), j' "$TMP/k.json" "vm/u/$(rfc $((T0 + 4)))"
rc=0; push --skip-unchanged --backup-id u --backup-time $((T0 + 6)) "$d/i0.qcow2" \
  >/dev/null 2>"$TMP/o.err" || rc=$?
check "older chain: pushed (exit $rc; --skip-unchanged skips only the same chain)" test $rc = 0
check "older chain: one line names the newer snapshot and the one of this state: $(cat "$TMP/o.err")" \
  grep -q "older than the group's last snapshot vm/u/$(rfc $((T0 + 4))) .*already held by vm/u/$(rfc $((T0 + 2)))" "$TMP/o.err"
restore_equals "$DS" vm/u/$((T0 + 6)) drive-scsi0 "$d/i0.qcow2" \
  "older chain: the new snapshot restores to i0"
check "--help describes --skip-unchanged" \
  bash -c "'$TOOL' push --help | grep -q -- --skip-unchanged"
done_testing
