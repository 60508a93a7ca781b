#!/bin/bash
# test-cli-progress.sh -- --progress prints whole progress lines when
# stderr is not a terminal (a log): at least the final one, "WHAT:
# DONE/TOTAL MiB (P%), RATE MiB/s read|written, ETA Ns", no carriage returns; without it
# a log stays empty; --quiet prints nothing at all on success (JSON asked
# for is still printed).  push, restore and verify.  No timing assertions:
# a line every 10 s is not waited for.
. "$(dirname "$0")/../helpers/functions.sh"
requires qemu-img
requires python3
d=$TMP/img
mkdir "$d"
qemu-img create -q -f qcow2 "$d/a.qcow2" 48M
qemu-io -c 'write -P 0x5a 0 9M' -c 'write -P 0x6b 20M 3M' "$d/a.qcow2" >/dev/null
qemu-img convert -O raw "$d/a.qcow2" "$TMP/ref.raw"
ds=$DS_TMP/ds
R=(--repository "$ds")
re='^(push|restore|verify): [0-9]+/48 MiB \([0-9]+%\), [0-9]+\.[0-9] MiB/s (read|written), ETA [0-9]+s$'

# progress_lines DESCRIPTION WHAT FILE: FILE is only progress lines of
# WHAT, the last one complete (48/48 MiB, 100%), no \r.
progress_lines () {
  if [ -s "$3" ] && ! grep -q $'\r' "$3" && ! grep -Evq "$re" "$3" &&
     tail -1 "$3" | grep -Eq "^$2: 48/48 MiB \(100%\),"; then
    pass "$1: $(tail -1 "$3")"
  else
    fail "$1: $(head -c 300 "$3" | od -c | head -3)"
  fi
}
snapshot_count () { "$TOOL" snapshots "${R[@]}" --output-format json | python3 -c 'import json, sys; print(len(json.load(sys.stdin)))'; }

rc=0; "$TOOL" push "${R[@]}" --backup-id 1 --progress "$d/a.qcow2" >"$TMP/out" 2>"$TMP/err" || rc=$?
check "push --progress: exit 0 (got $rc)" test $rc = 0
progress_lines "push --progress into a file" push "$TMP/err"
check "push --progress: the summary still on stdout" grep -q '^snapshot vm/1/' "$TMP/out"
snap=$(sed -n 's/^snapshot //p' "$TMP/out")

rc=0; "$TOOL" push "${R[@]}" --backup-id 2 "$d/a.qcow2" >"$TMP/out" 2>"$TMP/err" || rc=$?
check "push without --progress, not a terminal: stderr empty" test $rc = 0 -a ! -s "$TMP/err"

n=$(snapshot_count)
rc=0; "$TOOL" push "${R[@]}" --backup-id 3 --quiet "$d/a.qcow2" >"$TMP/out" 2>"$TMP/err" || rc=$?
check "push --quiet: exit 0, nothing printed" test $rc = 0 -a ! -s "$TMP/out" -a ! -s "$TMP/err"
check "push --quiet: the snapshot was made" test "$(snapshot_count)" = $((n + 1))
rc=0; "$TOOL" push "${R[@]}" --backup-id 4 -q --progress --output-format json "$d/a.qcow2" >"$TMP/out" 2>"$TMP/err" || rc=$?
check "push -q --progress --output-format json: exit 0, the JSON on stdout" \
  python3 -c 'import json, sys; json.load(open(sys.argv[1]))' "$TMP/out"
progress_lines "push -q --progress: the last of the two wins" push "$TMP/err"
rc=0; "$TOOL" push "${R[@]}" --backup-id 5 --progress -q --output-format json "$d/a.qcow2" >"$TMP/out" 2>"$TMP/err" || rc=$?
check "push --progress -q --output-format json: the JSON only" \
  python3 -c 'import json, sys; json.load(open(sys.argv[1])); sys.exit(open(sys.argv[2]).read() != "")' "$TMP/out" "$TMP/err"

rc=0; "$TOOL" restore "${R[@]}" --progress "$snap" drive-scsi0 "$TMP/r1.raw" >"$TMP/out" 2>"$TMP/err" || rc=$?
check "restore --progress: exit 0 (got $rc)" test $rc = 0
progress_lines "restore --progress into a file" restore "$TMP/err"
same_bytes "$TMP/r1.raw" "$TMP/ref.raw" "restore --progress: the disk as qemu-img convert"
rc=0; "$TOOL" restore "${R[@]}" --quiet "$snap" drive-scsi0 "$TMP/r2.raw" >"$TMP/out" 2>"$TMP/err" || rc=$?
check "restore --quiet: exit 0, nothing printed" test $rc = 0 -a ! -s "$TMP/out" -a ! -s "$TMP/err"
same_bytes "$TMP/r2.raw" "$TMP/ref.raw" "restore --quiet: the disk as qemu-img convert"

rc=0; "$TOOL" verify "${R[@]}" --progress "$snap" "$d/a.qcow2" >"$TMP/out" 2>"$TMP/err" || rc=$?
check "verify --progress: exit 0 (got $rc)" test $rc = 0
progress_lines "verify --progress into a file" verify "$TMP/err"
rc=0; "$TOOL" verify "${R[@]}" --quiet "$snap" "$d/a.qcow2" >"$TMP/out" 2>"$TMP/err" || rc=$?
check "verify --quiet: exit 0, no progress (its finding stays on stdout)" \
  test $rc = 0 -a ! -s "$TMP/err" -a "$(tail -1 "$TMP/out")" = identical

# Errors are still printed with --quiet.
rc=0; "$TOOL" push "${R[@]}" --backup-id 1 --quiet "$d/none.qcow2" >"$TMP/out" 2>"$TMP/err" || rc=$?
check "push --quiet: an error is still one line, exit 1" \
  test $rc = 1 -a "$(wc -l <"$TMP/err")" = 1
done_testing
