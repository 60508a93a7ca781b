#!/bin/bash
# bench-import.sh -- import's numbers (issue 8), no timing assertions:
# one uncompressed tar in qmpbackup's layout holding a FULL of an 8 GiB
# disk with 1 GiB of data and 10 INCs (no backing pointers) of 64 MiB each.
#  * time of `import` vs the sum of pushing the same points one by one
#    with `push --disk` from the unpacked files (same run); target <= 1.15;
#  * bytes read by the import and all its children (rchar of a wrapper
#    shell: the kernel adds the I/O of every reaped child to its parent's,
#    so /proc/$$/io after the import holds the whole tree; rchar counts
#    every read/pread, page cache hits too, so a warm cache cannot hide
#    reads) vs the FULL's data plus the INCs' data; target <= 1.05;
#  * temporary bytes: --tmpdir is an empty folder that must stay empty;
#  * peak RSS (largest of the import and its pushes) vs 64 MiB + 40 bytes
#    a chunk;
#  * the same folder as a .tar.zst, streamed: bytes of the archive read
#    (strace of read() on it, the import and its children) / the archive's
#    size -- 2.0: the plan's skeleton pass and the data pass, 1.0 each --
#    and the temporary space: the most seen in --tmpdir (du, polled), the
#    plan's figure, and the unpacked archive's (here one group: the chain
#    is the archive, so the peak is all of it; two groups:
#    tests/push/test-import-stream.sh).
# Prints "bench NAME key=value ..." lines.  Fixtures in $TMP, removed.
. "$(dirname "$0")/../helpers/functions.sh"
. "$(dirname "$0")/measure.sh"
requires qemu-img
requires qemu-io
requires python3
[ -x "$TOOL" ] || skip "$TOOL not built"

ratio () { python3 -c 'import sys; print("%.4f" % (float(sys.argv[1]) / float(sys.argv[2])))' "$1" "$2"; }
M4=4194304 G8=$((8 << 30)) T0=1700000000
d=$TMP vm=$TMP/vm/sda.qcow2
mkdir -p "$vm" "$d/tmpd"
ds_dir=${DS_TMP:-$d}
# FULL: 256 random 4 MiB pieces (1 GiB) spread over 8 GiB, made sparse by
# qemu-img convert (zeros stay unallocated).
python3 - "$d/full.raw" $G8 <<'PY'
import os, sys
with open(sys.argv[1], "wb") as f:
    f.truncate(int(sys.argv[2]))
    for c in range(0, 2048, 8):
        f.seek(c * 4194304)
        f.write(os.urandom(4194304))
PY
qemu-img convert -O qcow2 "$d/full.raw" "$vm/FULL-$T0-sda.qcow2"
rm "$d/full.raw"
full_data=$((256 * M4))
prev=FULL-$T0-sda.qcow2
head -c $M4 /dev/urandom >"$d/piece.raw"
for i in $(seq 1 10); do
  inc=INC-$((T0 + 100 * i))-sda.qcow2
  qemu-img create -q -f qcow2 -b "$prev" -F qcow2 "$vm/$inc"
  for k in $(seq 0 15); do   # 16 pieces = 64 MiB, chunk-aligned
    c=$(( (i * 131 + k * 127) % 2048 ))
    qemu-io -c "write -s $d/piece.raw $((c * M4)) 4M" "$vm/$inc" >/dev/null
  done
  head -c $M4 /dev/urandom >"$d/piece.raw"
  prev=$inc
done
inc_data=$((10 * 16 * M4))
for f in "$vm"/INC-*; do qemu-img rebase -q -u -b "" -f qcow2 "$f"; done
tar -C "$d/vm" -cf "$d/vm100.tar" sda.qcow2
cat "$d/vm100.tar" "$vm"/* >/dev/null   # warm the page cache for both

# Baseline: each point pushed on its own, the same chains import pushes.
t_sum=0 layers=
for f in $(ls "$vm" | sort -t- -k2,2n); do
  layers=${layers:+$layers,}$vm/$f
  t=$(cut -d- -f2 <<<"$f")
  read -r secs _ rc < <(measure "$TOOL" push --repository "$ds_dir/ds-push" \
    --backup-id 100 --backup-time "$t" --disk "drive-sda=$layers")
  [ "$rc" = 0 ] || { echo "push of $f failed" >&2; exit 1; }
  t_sum=$(python3 -c "print($t_sum + $secs)")
done

# The import, under a shell that prints its own I/O after the import.
read -r secs rss rc < <(measure bash -c '"$@" >/dev/null; r=$?; cat /proc/$$/io >"'"$d/io"'"; exit $r' \
  sh "$TOOL" import --repository "$ds_dir/ds-import" --tmpdir "$d/tmpd" "$d/vm100.tar")
[ "$rc" = 0 ] || { echo "import failed" >&2; exit 1; }
rchar=$(awk '/^rchar:/ {print $2}' "$d/io")
tmp_bytes=$(find "$d/tmpd" -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}'); tmp_files=$(ls -A "$d/tmpd" | wc -l)
budget=$(( (64 * 1048576 + 40 * (G8 / M4)) / 1024 ))
echo "bench import-vs-push import_s=$secs push_sum_s=$t_sum ratio=$(ratio "$secs" "$t_sum") target<=1.15"
echo "bench import-read rchar=$rchar data=$((full_data + inc_data)) ratio=$(ratio "$rchar" $((full_data + inc_data))) target<=1.05"
echo "bench import-tmp files=$tmp_files bytes=$tmp_bytes target=0"
echo "bench import-rss peak_kib=$rss budget_kib=$budget ratio=$(ratio "$rss" "$budget") target<1"

# --- compressed: the same folder as a .tar.zst, read as a stream.
requires zstd
zstd -q -1 -T0 -c "$d/vm100.tar" >"$d/vm100.tar.zst"
rm -f "$d/vm100.tar"
mkdir -p "$d/tmpz"
arch=$(stat -c %s "$d/vm100.tar.zst")
whole=$(du -sB1 "$d/vm" | cut -f1)
plan=$("$TOOL" import --dry-run --output-format json --tmpdir "$d/tmpz" "$d/vm100.tar.zst" |
  python3 -c 'import json, sys; print(json.load(sys.stdin).get("temporary-bytes", "n/a"))')
args=(import --repository "$ds_dir/ds-zst" --tmpdir "$d/tmpz" "$d/vm100.tar.zst")
t0=$(date +%s.%N)
if command -v strace >/dev/null; then
  strace -f --seccomp-bpf -e trace=read -y -qq -e signal=none -s 0 -o "$d/st.log" \
    "$TOOL" "${args[@]}" >/dev/null 2>"$d/zst.err" &
else
  "$TOOL" "${args[@]}" >/dev/null 2>"$d/zst.err" &
fi
zpid=$! peak=0
while kill -0 $zpid 2>/dev/null; do
  u=$(du -scB1 "$d"/tmpz/qcow2pbs-import.* 2>/dev/null | tail -1 | cut -f1) || u=0
  [ "${u:-0}" -gt $peak ] && peak=$u
  sleep 0.2
done
rc=0; wait $zpid || rc=$?
[ "$rc" = 0 ] || { echo "import of the .tar.zst failed: $(cat "$d/zst.err")" >&2; exit 1; }
secs=$(python3 -c "import time; print('%.3f' % (time.time() - $t0))")
read_arch=n/a
[ -e "$d/st.log" ] && read_arch=$(awk -v f="<$d/vm100.tar.zst>" 'index($0, f) { n = $NF; if (n + 0 > 0) s += n } END { printf "%.0f\n", s }' "$d/st.log")
echo "bench import-zst-read archive_bytes=$arch read_bytes=$read_arch ratio=$(ratio "${read_arch/n\/a/0}" "$arch") passes=2 (skeleton 1.0 + data 1.0) import_s=$secs"
echo "bench import-zst-tmp peak_seen_bytes=$peak plan_bytes=$plan unpacked_bytes=$whole ratio=$(ratio "$peak" "$whole") left=$(ls -A "$d/tmpz" | wc -l)"
