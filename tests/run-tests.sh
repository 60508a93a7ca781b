#!/bin/bash
# run-tests.sh -- run unit binaries and test scripts, one at a time.
# Exit status 0 = pass, 77 = skip (with a reason on the last line), else fail.
# Each test's output goes to $B/logs/<name>.log; failures print their log tail.
# The last line is "N passed, N failed, N skipped" and the exit status is 0
# only if nothing failed.
B=${B:-build}
export B
logs=$B/logs
mkdir -p "$logs"
pass=0 fail=0 skip=0 failed=()
for t in "$@"; do
  name=$(basename "$t")
  log=$logs/$name.log
  start=$(date +%s)
  case "$t" in
    *.sh) timeout "${TEST_TIMEOUT:-900}" bash "$t" >"$log" 2>&1 ;;
    *) timeout "${TEST_TIMEOUT:-900}" "$t" >"$log" 2>&1 ;;
  esac
  rc=$?
  secs=$(( $(date +%s) - start ))
  if [ $rc = 0 ]; then
    pass=$((pass + 1)); echo "PASS: $name (${secs}s)"
  elif [ $rc = 77 ]; then
    skip=$((skip + 1)); echo "SKIP: $name: $(tail -n 1 "$log")"
  else
    fail=$((fail + 1)); failed+=("$name"); echo "FAIL: $name (exit $rc, ${secs}s)"
    tail -n 30 "$log" | sed 's/^/    /'
  fi
done
[ ${#failed[@]} = 0 ] || echo "failed: ${failed[*]}"
echo "$pass passed, $fail failed, $skip skipped"
[ $fail = 0 ]
