#!/bin/bash
# bench-restore.sh -- restore's numbers (issue 10), no timing assertions:
# 1 GiB of incompressible data (256 chunks) restored from a local
# datastore (on the disk, beside $TMP) to a new file (fsync'd, as restore
# does), to stdout redirected to a file, and into a pipe, against
# `qemu-img convert -O raw` + fsync of the same disk from qcow2, in
# BENCH_ROUNDS (5) interleaved rounds; best of each and the median of the
# rounds' ratios.  Prints "bench NAME key=value ..." lines.
. "$(dirname "$0")/../helpers/functions.sh"
. "$(dirname "$0")/measure.sh"
requires qemu-img
requires python3
[ -x "$TOOL" ] || skip "$TOOL not built"

d=$TMP
python3 - "$d/g1.raw" <<'PY'
import os, sys
with open(sys.argv[1], "wb") as f:
    for _ in range(256):
        f.write(os.urandom(4194304))
PY
qemu-img convert -O qcow2 "$d/g1.raw" "$d/g1.qcow2"
"$TOOL" push --repository "$d/ds" --backup-id g --backup-time 1000 \
  "$d/g1.qcow2" >/dev/null
cat "$d/g1.qcow2" "$d"/ds/.chunks/*/* >/dev/null 2>&1 || true

# one CMD...: the seconds of one run (OUT removed first).
one () {
  local t rc
  rm -f "$d/out.raw"
  read -r t _ rc < <(measure "$@")
  [ "$rc" = 0 ] || { echo "failed: $*" >&2; return 1; }
  echo "$t"
}
ratio () { python3 -c 'import sys; print("%.2f" % (float(sys.argv[1]) / float(sys.argv[2])))' "$1" "$2"; }
best () { python3 -c 'import sys; print(min(map(float, sys.argv[1:])))' "$@"; }
median () { python3 -c 'import sys, statistics; print("%.2f" % statistics.median(map(float, sys.argv[1:])))' "$@"; }
# The issue's figure: restore to a new file (fsync'd, renamed) against
# qemu-img convert -O raw + fsync of its output, runs interleaved (the
# machine's load changes under a long benchmark), every run printed.
R="'$TOOL' restore --repository '$d/ds' vm/g/1000 drive-scsi0"
ROUNDS=${BENCH_ROUNDS:-5}
q=() f=() so=() pp=() rr=()
for i in $(seq "$ROUNDS"); do
  tq=$(one sh -c "qemu-img convert -O raw '$d/g1.qcow2' '$d/out.raw' && sync '$d/out.raw'")
  tf=$(one sh -c "$R '$d/out.raw'")
  ts=$(one sh -c "$R - >'$d/out.raw'")
  tp=$(one sh -c "$R - | cat >/dev/null")
  q+=("$tq") f+=("$tf") so+=("$ts") pp+=("$tp") rr+=("$(ratio "$tf" "$tq")")
  echo "bench restore-1g-run round=$i qemu_convert_fsync=$tq file=$tf stdout_file=$ts pipe=$tp ratio=$(ratio "$tf" "$tq")"
done
"$TOOL" restore --repository "$d/ds" --force vm/g/1000 drive-scsi0 "$d/out.raw"
cmp "$d/out.raw" "$d/g1.raw" || { echo "restore differs" >&2; exit 1; }
t_qemu=$(best "${q[@]}")
echo "bench restore-1g-file secs=$(best "${f[@]}") qemu_convert_fsync=$t_qemu ratio=$(ratio "$(best "${f[@]}")" "$t_qemu") median_round_ratio=$(median "${rr[@]}")"
echo "bench restore-1g-stdout-file secs=$(best "${so[@]}") ratio=$(ratio "$(best "${so[@]}")" "$t_qemu")"
echo "bench restore-1g-pipe secs=$(best "${pp[@]}") ratio=$(ratio "$(best "${pp[@]}")" "$t_qemu")"
