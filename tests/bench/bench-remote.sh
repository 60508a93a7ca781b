#!/bin/bash
# bench-remote.sh -- incremental push of an 8 GiB chain (64 MiB changed)
# through the HTTPS test server on loopback versus into a local datastore,
# in the same run, and the bytes the client sent over TLS for it; then the
# restore of that snapshot from each (reported only).
#
# Targets (issue 4): remote time <= 1.5 x local time; TLS bytes sent <=
# 1.1 x (compressed size of the touched chunks + their digests).
# The compressed size is computed independently: each touched 4 MiB chunk of
# `qemu-img convert -O raw` compressed by the zstd CLI at level 1 (kept only
# if smaller, as PBS does) plus the 12-byte blob header, plus 32 bytes of
# digest per chunk.
#
# Usage: B=build tests/bench/bench-remote.sh     (also run by `make bench`)
# BENCH_SIZE (default 8G), BENCH_CHANGED_MB (default 64) override.
. "$(dirname "$0")/../helpers/functions.sh"
. "$(dirname "$0")/../helpers/remote-functions.sh"
requires qemu-img
requires qemu-io
requires zstd
requires python3

SIZE=${BENCH_SIZE:-8G}
CHANGED_MB=${BENCH_CHANGED_MB:-64}
MB=1048576

setup_remote
start_server "$TMP/rds"
REPO="root@pam!tok@127.0.0.1:$PORT:$STORE"
export PBS_PASSWORD=$TOKEN_SECRET PBS_FINGERPRINT=$FP

# The chain: a full layer with 256 MiB of data spread over the disk (random
# 4 MiB runs, so compression cannot hide anything), and an incremental
# layer that rewrites CHANGED_MB MiB in 1 MiB pieces at spread offsets.
# Every run has its own random bytes: no two chunks deduplicate.
qemu-img create -q -f qcow2 "$TMP/full.qcow2" "$SIZE"
vsize=$(qemu-img info --output=json "$TMP/full.qcow2" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["virtual-size"])')
cmds=()
for i in $(seq 0 63); do
  head -c $((4 * MB)) /dev/urandom >"$TMP/r4.$i"
  cmds+=(-c "write -s $TMP/r4.$i $(( (vsize / 64 * i) / (4 * MB) * 4 * MB )) 4M")
done
qemu-io "${cmds[@]}" "$TMP/full.qcow2" >/dev/null
rm -f "$TMP"/r4.*
qemu-img create -q -f qcow2 -b "$TMP/full.qcow2" -F qcow2 "$TMP/incr0.qcow2"
cmds=()
for i in $(seq 0 $((CHANGED_MB - 1))); do
  head -c $MB /dev/urandom >"$TMP/r1.$i"
  cmds+=(-c "write -s $TMP/r1.$i $(( (vsize / CHANGED_MB * i + 3 * MB) / MB * MB )) 1M")
done
qemu-io "${cmds[@]}" "$TMP/incr0.qcow2" >/dev/null
rm -f "$TMP"/r1.*

now () { date +%s.%N; }
elapsed () { python3 -c 'import sys; print("%.3f" % (float(sys.argv[2]) - float(sys.argv[1])))' "$1" "$2"; }

# Each repository gets three groups with the full layer (untimed); the
# incremental push into each is timed and the median kept.
median () { printf '%s\n' "$@" | sort -g | sed -n 2p; }
for id in 100 101 102; do
  "$TOOL" push --repository "$TMP/lds" --backup-id $id --backup-time 1700000000 \
    "$TMP/full.qcow2" >/dev/null
  "$TOOL" push --repository "$REPO" --backup-id $id --backup-time 1700000000 \
    "$TMP/full.qcow2" >/dev/null
done
lt=() rt=()
for id in 100 101 102; do
  t0=$(now)
  "$TOOL" push --repository "$TMP/lds" --backup-id $id --backup-time 1700000100 \
    --output-format json "$TMP/incr0.qcow2" >"$TMP/local.json"
  t1=$(now)
  QCOW2PBS_STATS=1 "$TOOL" push --repository "$REPO" --backup-id $id \
    --backup-time 1700000100 --output-format json "$TMP/incr0.qcow2" \
    >"$TMP/remote.json" 2>"$TMP/remote.err"
  t2=$(now)
  lt+=("$(elapsed "$t0" "$t1")") rt+=("$(elapsed "$t1" "$t2")")
done
local_s=$(median "${lt[@]}")
remote_s=$(median "${rt[@]}")

# Restore of the incremental snapshot (its data chunks; the rest are
# holes) from each, median of three; reported, no target.
lr=() rr=()
for id in 100 101 102; do
  rm -f "$TMP/rl.raw" "$TMP/rr.raw"
  t0=$(now)
  "$TOOL" restore --repository "$TMP/lds" vm/$id/1700000100 drive-scsi0 \
    "$TMP/rl.raw"
  t1=$(now)
  "$TOOL" restore --repository "$REPO" vm/$id/1700000100 drive-scsi0 \
    "$TMP/rr.raw"
  t2=$(now)
  lr+=("$(elapsed "$t0" "$t1")") rr+=("$(elapsed "$t1" "$t2")")
done
cmp "$TMP/rl.raw" "$TMP/rr.raw" || { echo "bench: restores differ"; exit 1; }
rm -f "$TMP/rl.raw" "$TMP/rr.raw"
restore_local_s=$(median "${lr[@]}")
restore_remote_s=$(median "${rr[@]}")
sent=$(sed -n 's/^bytes_sent=//p' "$TMP/remote.err" | tail -1)

# Independent size of what had to travel: touched chunks per qemu-img map
# of the new layer, compressed by the zstd CLI, + 12-byte header + digest.
qemu-img convert -O raw "$TMP/incr0.qcow2" "$TMP/incr0.raw"
expected=$(python3 - "$TMP/incr0.qcow2" "$TMP/incr0.raw" <<'EOF'
import hashlib, json, subprocess, sys
C = 4194304
m = json.loads(subprocess.check_output(
    ["qemu-img", "map", "--output=json", sys.argv[1]]))
touched = set()
for e in m:
    if e["depth"] == 0 and e["length"]:
        touched.update(range(e["start"] // C, (e["start"] + e["length"] - 1) // C + 1))
total, seen = 0, set()
with open(sys.argv[2], "rb") as f:
    for c in sorted(touched):
        f.seek(c * C)
        data = f.read(C)
        h = hashlib.sha256(data).digest()
        if h in seen:  # the same chunk twice travels once
            continue
        seen.add(h)
        z = subprocess.run(["zstd", "-1", "-c", "-q"], input=data,
                           stdout=subprocess.PIPE, check=True).stdout
        total += min(len(z), len(data)) + 12 + 32
print(len(touched), total)
EOF
)
nt=${expected% *}
exp_bytes=${expected#* }
rm -f "$TMP/incr0.raw"

python3 - "$restore_local_s" "$restore_remote_s" <<'EOF'
import sys
l, r = float(sys.argv[1]), float(sys.argv[2])
print("bench remote-restore local_s=%.3f remote_s=%.3f ratio=%.2f (reported, no target)"
      % (l, r, r / l))
EOF
python3 - "$local_s" "$remote_s" "$sent" "$exp_bytes" "$nt" "$SIZE" "$CHANGED_MB" <<'EOF'
import sys
l, r, sent, exp, nt = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
print("bench remote-push size=%s changed_mib=%s touched_chunks=%d local_s=%.3f remote_s=%.3f ratio=%.2f target=1.5"
      % (sys.argv[6], sys.argv[7], nt, l, r, r / l))
print("bench remote-bytes tls_bytes_sent=%d touched_compressed_plus_digests=%d ratio=%.3f target=1.1"
      % (sent, exp, sent / exp))
EOF
