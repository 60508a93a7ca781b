#!/bin/bash
# bench-qcow.sh -- the qcow2 side's numbers (issue 2), no assertions:
#  * export of a sparse 4 GiB chain (64 MiB of random data in 1 MiB pieces
#    spread over the disk, two incrementals) vs qemu-img convert -O raw of
#    the same image in the same run: best of 5 each, and the ratio;
#  * map of an 8 GiB image whose every cluster has the zero flag;
#  * peak RSS of both (bounded by chain metadata, not by disk size).
# Fixtures live in a temporary directory that is removed at the end.
. "$(dirname "$0")/../helpers/functions.sh"
. "$(dirname "$0")/measure.sh"
requires qemu-img
requires qemu-io
requires python3
[ -x "$TOOL" ] || skip "$TOOL not built"

best_of_5 () { # best_of_5 CMD...: "secs rss" of the fastest run
  local i best="" out
  for i in 1 2 3 4 5; do
    rm -f "$TMP"/out*.raw
    out=$(measure "$@")
    [ "${out##* }" = 0 ] || { echo "command failed: $*" >&2; return 1; }
    if [ -z "$best" ] || python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) < float(sys.argv[2]) else 1)' "${out%% *}" "${best%% *}"; then
      best=$out
    fi
  done
  echo "${best% *}"
}

d=$TMP/bench
mkdir "$d"
python3 - "$d" <<'PY'
import os, sys
d = sys.argv[1]
for i in range(4):
    with open(os.path.join(d, "rand%d.bin" % i), "wb") as f:
        f.write(os.urandom(1 << 20))
PY
# full: 64 x 1 MiB at a 64 MiB stride (+ an odd 4 KiB shift per piece)
cmds=()
for i in $(seq 0 63); do
  cmds+=(-c "write -s $d/rand$((i % 4)).bin $(( i * (64 << 20) + (i * 4096) )) 1M")
done
qemu-img create -q -f qcow2 "$d/full.qcow2" 4G
qemu-io -f qcow2 "${cmds[@]}" "$d/full.qcow2" >/dev/null
qemu-img create -q -f qcow2 -b full.qcow2 -F qcow2 "$d/incr0.qcow2"
cmds=()
for i in $(seq 0 31); do
  cmds+=(-c "write -s $d/rand$((i % 4)).bin $(( i * (128 << 20) + (32 << 20) )) 1M")
done
cmds+=(-c "write -z 0 512k" -c "write -z -u $((1 << 30)) 1M")
qemu-io -f qcow2 "${cmds[@]}" "$d/incr0.qcow2" >/dev/null
qemu-img create -q -f qcow2 -b incr0.qcow2 -F qcow2 "$d/incr1.qcow2"
cmds=()
for i in $(seq 0 15); do
  cmds+=(-c "write -s $d/rand$((i % 4)).bin $(( i * (256 << 20) + (96 << 20) )) 512k")
done
qemu-io -f qcow2 "${cmds[@]}" "$d/incr1.qcow2" >/dev/null

ours=$(best_of_5 "$TOOL" export --force "$d/incr1.qcow2" "$TMP/out-ours.raw") || exit 1
nosync=$(best_of_5 "$TOOL" export --force --no-sync "$d/incr1.qcow2" "$TMP/out-ours.raw") || exit 1
qemu=$(best_of_5 qemu-img convert -O raw "$d/incr1.qcow2" "$TMP/out-qemu.raw") || exit 1
# The same durability as ours: qemu-img, then fsync of its output (sync FILE).
qsync=$(best_of_5 sh -c 'qemu-img convert -O raw "$1" "$2" && sync "$2"' sh \
          "$d/incr1.qcow2" "$TMP/out-qemu.raw") || exit 1
# correctness of what was timed
"$TOOL" export --force "$d/incr1.qcow2" "$TMP/out-ours.raw"
qemu-img convert -O raw "$d/incr1.qcow2" "$TMP/out-qemu.raw"
# (qemu-img compare skips holes; cmp would read 8 GiB of zeros)
if [ "$(stat -c %s "$TMP/out-ours.raw")" != "$(stat -c %s "$TMP/out-qemu.raw")" ] ||
   ! qemu-img compare -q -f raw -F raw "$TMP/out-ours.raw" "$TMP/out-qemu.raw"; then
  echo "export differs from qemu-img convert" >&2; exit 1
fi
rm -f "$TMP"/out*.raw
python3 - "$ours" "$qemu" "$nosync" "$qsync" <<'PY'
import sys
o, orss = sys.argv[1].split(); q, qrss = sys.argv[2].split()
n, nrss = sys.argv[3].split(); qs, _ = sys.argv[4].split()
print("bench export_vs_qemu_img ratio=%.2f ours=%ss qemu=%ss (4 GiB virtual, 88 MiB data, 3 layers, best of 5; ours fsyncs, qemu-img does not)"
      % (float(o) / float(q), o, q))
print("bench export_nosync_vs_qemu_img ratio=%.2f ours=%ss qemu=%ss (export --no-sync: no fsync either)"
      % (float(n) / float(q), n, q))
print("bench export_vs_qemu_img_synced ratio=%.2f ours=%ss qemu+fsync=%ss (both durable)"
      % (float(o) / float(qs), o, qs))
print("bench export_peak_rss ours=%sKiB qemu=%sKiB" % (orss, qrss))
PY

# map of an 8 GiB image whose every cluster carries the zero flag
qemu-img create -q -f qcow2 "$d/zero.qcow2" 8G
cmds=()
for i in 0 1 2 3 4 5 6 7; do cmds+=(-c "write -z ${i}G 1G"); done
qemu-io -f qcow2 "${cmds[@]}" "$d/zero.qcow2" >/dev/null
rm -f "$d"/full.qcow2 "$d"/incr*.qcow2
mo=$(best_of_5 "$TOOL" map --output-format json "$d/zero.qcow2") || exit 1
mq=$(best_of_5 qemu-img map --output=json "$d/zero.qcow2") || exit 1
n=$("$TOOL" map --output-format json "$d/zero.qcow2" | grep -c start)
echo "bench map_zero_8g seconds=${mo%% *} peak_rss=${mo##* }KiB extents=$n qemu_img_map=${mq%% *}s"
