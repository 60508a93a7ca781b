#!/bin/bash
# run-bench.sh -- `make bench`: run every tests/bench/bench-*.sh in turn.
# Benchmarks print "bench NAME key=value ..." lines; they assert nothing
# about timing.  Exit status: 0 unless a benchmark itself failed to run
# (77 = skipped, reported, not a failure).
cd "$(dirname "$0")/../.." || exit 1
B=${B:-build}
export B
rc=0
for b in tests/bench/bench-*.sh; do
  [ -e "$b" ] || continue
  echo "== $(basename "$b")"
  r=0
  bash "$b" || r=$?
  case $r in
    0) ;;
    77) echo "== $(basename "$b"): skipped" ;;
    *) echo "== $(basename "$b"): FAILED (exit $r)"; rc=1 ;;
  esac
done
exit $rc
