#!/bin/bash
# bench-restore.sh -- restore's numbers (issue 10), no timing assertions:
# 1 GiB of incompressible data (256 chunks) restored from a local
# datastore (on the disk, beside $TMP) to a new file (fsync'd, as restore
# does), to stdout redirected to a file, and into a pipe, against
# `qemu-img convert -O raw` + fsync of the same disk from qcow2.  Best of
# 3 each.  Prints "bench NAME key=value ..." lines.
. "$(dirname "$0")/../functions.sh"
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

# best3 CMD...: the best of three runs' seconds; OUT files removed first.
best3 () {
  local best= t rc i
  for i in 1 2 3; do
    rm -f "$d/out.raw"
    read -r t _ rc < <(measure "$@")
    [ "$rc" = 0 ] || { echo "failed: $*" >&2; return 1; }
    best=$(python3 -c 'import sys; a=sys.argv[1:]; print(min(map(float, [x for x in a if x])))' $best $t)
  done
  echo "$best"
}
R="'$TOOL' restore --repository '$d/ds' vm/g/1000 drive-scsi0"
t_qemu=$(best3 sh -c "qemu-img convert -O raw '$d/g1.qcow2' '$d/out.raw' && sync '$d/out.raw'")
t_file=$(best3 sh -c "$R '$d/out.raw'")
t_stdout=$(best3 sh -c "$R - >'$d/out.raw'")
t_pipe=$(best3 sh -c "$R - | cat >/dev/null")
"$TOOL" restore --repository "$d/ds" --force vm/g/1000 drive-scsi0 "$d/out.raw"
cmp "$d/out.raw" "$d/g1.raw" || { echo "restore differs" >&2; exit 1; }
ratio () { python3 -c 'import sys; print("%.2f" % (float(sys.argv[1]) / float(sys.argv[2])))' "$1" "$2"; }
echo "bench restore-1g-file secs=$t_file qemu_convert_fsync=$t_qemu ratio=$(ratio "$t_file" "$t_qemu")"
echo "bench restore-1g-stdout-file secs=$t_stdout ratio=$(ratio "$t_stdout" "$t_qemu")"
echo "bench restore-1g-pipe secs=$t_pipe ratio=$(ratio "$t_pipe" "$t_qemu")"
