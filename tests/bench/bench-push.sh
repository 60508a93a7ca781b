#!/bin/bash
# bench-push.sh -- push's numbers (issue 3), no timing assertions:
#  * incremental push of an 8 GiB virtual disk whose new layer changed
#    64 MiB, vs reading and sha256-hashing the whole merged disk
#    (`qcow2pbs export IMG - | sha256sum`: qemu-img 7.2 cannot convert into
#    a pipe); target <= 0.02;
#  * full push of 1 GiB of incompressible data vs sha256sum of the same
#    bytes (throughput ratio, target >= 0.9), into a datastore on the
#    disk and (if /dev/shm is usable) on tmpfs, which shows the pipeline
#    without the disk's write speed; the datastore (65536 directories) is
#    created before timing;
#  * full push of an empty 8 GiB disk (zero regions must cost nothing);
#  * peak RSS of each push against 64 MiB + 40 bytes per chunk, also for
#    a 1 TiB disk (262144 chunks).
# Prints "bench NAME key=value ..." lines.  Fixtures in $TMP, removed.
. "$(dirname "$0")/../helpers/functions.sh"
. "$(dirname "$0")/measure.sh"
requires qemu-img
requires qemu-io
requires python3
[ -x "$TOOL" ] || skip "$TOOL not built"

ratio () { python3 -c 'import sys; print("%.4f" % (float(sys.argv[1]) / float(sys.argv[2])))' "$1" "$2"; }
budget_kib () { echo $(( (64 * 1048576 + 40 * $1) / 1024 )); }

# Sparse raw images made by python (random 4 MiB pieces at given chunk
# numbers), converted to qcow2 by qemu-img (zeros stay unallocated).
mkraw () { # mkraw FILE SIZE CHUNK...
  python3 - "$@" <<'PY'
import os, sys
path, size, chunks = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
with open(path, "wb") as f:
    f.truncate(size)
    for c in chunks:
        f.seek(int(c) * 4194304)
        f.write(os.urandom(4194304))
PY
}

d=$TMP
G8=$((8 << 30))
# Base: 128 data chunks spread over 8 GiB; new layer: 16 chunks (64 MiB).
mkraw "$d/base.raw" $G8 $(seq 0 16 2047)
qemu-img convert -O qcow2 "$d/base.raw" "$d/full.qcow2"
rm "$d/base.raw"
qemu-img create -q -f qcow2 -b full.qcow2 -F qcow2 "$d/incr0.qcow2"
mkraw "$d/piece.raw" 4194304 0
for c in $(seq 3 128 2047); do
  qemu-io -c "write -s $d/piece.raw $((c * 4194304)) 4M" "$d/incr0.qcow2" >/dev/null
  mkraw "$d/piece.raw" 4194304 0   # new random data for the next piece
done

"$TOOL" push --repository "$d/ds" --backup-id b8 --backup-time 1000 "$d/full.qcow2" >/dev/null
"$TOOL" export "$d/incr0.qcow2" - | sha256sum >/dev/null   # warm up
# Warm the page cache for both sides equally.
cat "$d/full.qcow2" "$d/incr0.qcow2" >/dev/null
read -r t_inc rss_inc rc < <(measure "$TOOL" push --repository "$d/ds" \
  --backup-id b8 --backup-time 2000 "$d/incr0.qcow2")
[ "$rc" = 0 ] || { echo "incremental push failed" >&2; exit 1; }
read -r t_base _ rc < <(measure bash -c \
  "'$TOOL' export '$d/incr0.qcow2' - | sha256sum")
echo "bench push-incremental-8g push_s=$t_inc read_hash_s=$t_base" \
     "ratio=$(ratio "$t_inc" "$t_base") target=0.02"
echo "bench push-incremental-8g-rss peak_kib=$rss_inc budget_kib=$(budget_kib 2048)"

# 1 GiB of incompressible data (256 chunks), full push into a new store.
mkraw "$d/g1.raw" $((1 << 30)) $(seq 0 255)
qemu-img convert -O qcow2 "$d/g1.raw" "$d/g1.qcow2"
cat "$d/g1.raw" "$d/g1.qcow2" >/dev/null
read -r t_sha _ rc < <(measure sha256sum "$d/g1.raw")
qemu-img create -q -f qcow2 "$d/tiny.qcow2" 1M
stores=("$d/ds1")
shm=$(mktemp -d /dev/shm/qcow2pbs-bench.XXXXXX 2>/dev/null) &&
  cleanup_fn rm -rf "$shm" && stores+=("$shm/ds")
for s in "${stores[@]}"; do
  where=disk; case $s in /dev/shm/*) where=tmpfs ;; esac
  "$TOOL" push --repository "$s" --backup-id t --backup-time 1 "$d/tiny.qcow2" >/dev/null
  read -r t_full rss_full rc < <(measure "$TOOL" push --repository "$s" \
    --backup-id g1 --backup-time 1000 "$d/g1.qcow2")
  [ "$rc" = 0 ] || { echo "full push failed" >&2; exit 1; }
  echo "bench push-full-1g-$where push_s=$t_full sha256sum_s=$t_sha" \
       "ratio=$(ratio "$t_sha" "$t_full") target=0.9" \
       "push_MiBps=$(python3 -c "print('%.0f' % (1024 / $t_full))")"
  echo "bench push-full-1g-$where-rss peak_kib=$rss_full budget_kib=$(budget_kib 256)"
done
# The same data again into the same store: dedup only, nothing stored.
read -r t_again _ rc < <(measure "$TOOL" push --repository "$d/ds1" \
  --backup-id g1 --backup-time 2000 --full "$d/g1.qcow2")
echo "bench push-full-1g-known push_s=$t_again ratio=$(ratio "$t_sha" "$t_again")"
rm -f "$d/g1.raw"

# An empty 8 GiB disk: 2048 zero chunks from metadata, nothing read.
qemu-img create -q -f qcow2 "$d/empty.qcow2" 8G
read -r t_zero rss_zero rc < <(measure "$TOOL" push --repository "$d/ds" \
  --backup-id z8 --backup-time 1000 "$d/empty.qcow2")
echo "bench push-zero-8g push_s=$t_zero peak_kib=$rss_zero"

# Memory per chunk: a 1 TiB disk (262144 chunks), full push and then an
# incremental one (the base index of 8 MiB is held and looked up).
qemu-img create -q -f qcow2 "$d/t1.qcow2" 1T
qemu-io -c 'write -P 1 0 1M' "$d/t1.qcow2" >/dev/null
qemu-img create -q -f qcow2 -b t1.qcow2 -F qcow2 "$d/t1i.qcow2"
qemu-io -c 'write -P 2 500G 1M' "$d/t1i.qcow2" >/dev/null
read -r t_t1 rss_t1 rc < <(measure "$TOOL" push --repository "$d/ds" \
  --backup-id t1 --backup-time 1000 "$d/t1.qcow2")
read -r t_t1i rss_t1i rc < <(measure "$TOOL" push --repository "$d/ds" \
  --backup-id t1 --backup-time 2000 "$d/t1i.qcow2")
echo "bench push-1t-rss full_kib=$rss_t1 incremental_kib=$rss_t1i" \
     "budget_kib=$(budget_kib 262144) incremental_s=$t_t1i"
