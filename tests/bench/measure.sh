# measure.sh -- sourced by tests/bench/bench-*.sh after ../functions.sh.
# measure CMD...: "seconds peak-RSS-KiB exit-status" of CMD, measured by
# python (resource.getrusage of its only child), so it works without
# /usr/bin/time.
measure () {
  python3 - "$@" <<'PY'
import resource, subprocess, sys, time
t = time.monotonic()
p = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL)
secs = time.monotonic() - t
rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print("%.3f %d %d" % (secs, rss, p.returncode))
PY
}
