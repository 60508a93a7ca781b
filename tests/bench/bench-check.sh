#!/bin/bash
# bench-check.sh -- check of a snapshot vs restoring it to /dev/null
# (target >= 0.9x restore speed).  BENCH_MIB (default 1024) MiB of
# incompressible data.  The nbdkit plugin has its own bench-nbdkit.sh.
. "$(dirname "$0")/../helpers/functions.sh"
. "$(dirname "$0")/measure.sh"
requires qemu-img
mib=${BENCH_MIB:-1024}
ds=$DS_TMP/ds
head -c ${mib}M /dev/urandom >"$TMP/d.raw"
qemu-img convert -O qcow2 "$TMP/d.raw" "$TMP/d.qcow2"; rm -f "$TMP/d.raw"
"$TOOL" push --repository "$ds" --backup-id b --backup-time 1000 "$TMP/d.qcow2" >/dev/null
s=vm/b/1000
read -r tr _ _ < <(measure sh -c "'$TOOL' restore --repository '$ds' $s drive-scsi0 - >/dev/null")
read -r tc _ rc < <(measure "$TOOL" check --repository "$ds" $s)
[ "$rc" = 0 ] || { echo "check failed"; exit 1; }
python3 - "$mib" "$tr" "$tc" <<'PY'
import sys
mib, tr, tc = int(sys.argv[1]), *map(float, sys.argv[2:4])
print("bench check: %d MiB restore-to-null %.2fs check %.2fs ratio %.2f (target >= 0.9)"
      % (mib, tr, tc, tr / tc))
PY
