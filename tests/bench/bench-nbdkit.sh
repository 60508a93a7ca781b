#!/bin/bash
# bench-nbdkit.sh -- sequential reads through the nbdkit plugin (`nbdcopy`
# from it to null:) against `qcow2pbs restore` of the same snapshot to
# /dev/null from the same local datastore (target: plugin >= 0.8x restore
# throughput, i.e. restore secs / nbdcopy secs >= 0.8), and the plugin's
# peak RSS (target <= 64 MiB + its 64 MiB cache).  BENCH_MIB (default
# 1024) MiB of incompressible data in a datastore on tmpfs ($DS_TMP).  The
# two are run interleaved, BENCH_ROUNDS (default 5) times each, so that a
# shared machine's load falls on both alike; every pair is printed (with
# the CPU seconds of each, which the load disturbs less), then the median
# ratio.  Two more figures explain it: the ratio against restore to a
# file (the issue's restore benchmark writes one), and NBD's own floor,
# nbdkit's pattern plugin (no fetching or checking) copied the same way.
# No timing assertions.
. "$(dirname "$0")/../helpers/functions.sh"
. "$(dirname "$0")/measure.sh"
requires qemu-img
requires nbdkit
requires nbdcopy
requires python3
PLUGIN=$B/nbdkit-qcow2pbs-plugin.so
[ -f "$PLUGIN" ] || skip "$PLUGIN not built"
mib=${BENCH_MIB:-1024}
rounds=${BENCH_ROUNDS:-5}
ds=$DS_TMP/ds
head -c ${mib}M /dev/urandom >"$TMP/d.raw"
qemu-img convert -O qcow2 "$TMP/d.raw" "$TMP/d.qcow2"; rm -f "$TMP/d.raw"
"$TOOL" push --repository "$ds" --backup-id b --backup-time 1000 \
  "$TMP/d.qcow2" >/dev/null
s=vm/b/1000
# measure_cpu CMD...: "seconds cpu-seconds peak-RSS-KiB exit-status".
measure_cpu () {
  python3 - "$@" <<'PY'
import resource, subprocess, sys, time
t = time.monotonic()
p = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL)
secs = time.monotonic() - t
u = resource.getrusage(resource.RUSAGE_CHILDREN)
print("%.3f %.3f %d %d" % (secs, u.ru_utime + u.ru_stime, u.ru_maxrss,
                           p.returncode))
PY
}
: >"$TMP/pairs"
for i in $(seq "$rounds"); do
  read -r tr cr _ rc < <(measure_cpu sh -c \
    "'$TOOL' restore --repository '$ds' $s drive-scsi0 - >/dev/null")
  [ "$rc" = 0 ] || { echo "restore failed"; exit 1; }
  # measure's RSS is the largest of nbdkit's processes: the server.
  read -r tn cn rss rc < <(measure_cpu nbdkit -U - "$PLUGIN" repository="$ds" \
    snapshot=$s --run 'nbdcopy "$uri" null:')
  [ "$rc" = 0 ] || { echo "nbdcopy through the plugin failed"; exit 1; }
  read -r tf _ _ rc < <(measure_cpu "$TOOL" restore --repository "$ds" \
    $s drive-scsi0 "$TMP/out.raw")
  [ "$rc" = 0 ] || { echo "restore to a file failed"; exit 1; }
  rm -f "$TMP/out.raw"
  read -r tp _ _ rc < <(measure_cpu nbdkit -U - pattern ${mib}M \
    --run 'nbdcopy "$uri" null:')
  [ "$rc" = 0 ] || tp=0
  echo "$tr $tn $rss $cr $cn $tf $tp" >>"$TMP/pairs"
done
python3 - "$mib" "$TMP/pairs" <<'PY'
import statistics, sys
mib = int(sys.argv[1])
pairs = [tuple(map(float, l.split())) for l in open(sys.argv[2])]
for n, (tr, tn, rss, cr, cn, tf, tp) in enumerate(pairs, 1):
    print("bench nbdkit-seq run=%d restore_secs=%.2f nbdcopy_secs=%.2f "
          "ratio=%.2f restore_cpu=%.2f nbdkit_nbdcopy_cpu=%.2f rss_mib=%d "
          "restore_file_secs=%.2f pattern_nbdcopy_secs=%.2f"
          % (n, tr, tn, tr / tn, cr, cn, rss // 1024, tf, tp))
print("bench nbdkit-seq mib=%d median_ratio=%.2f (target >= 0.8) "
      "median_ratio_vs_restore_to_file=%.2f peak_rss_mib=%d "
      "(target <= 128) nbd_floor_secs=%.2f"
      % (mib, statistics.median(p[0] / p[1] for p in pairs),
         statistics.median(p[5] / p[1] for p in pairs),
         max(p[2] for p in pairs) // 1024,
         statistics.median(p[6] for p in pairs)))
PY
