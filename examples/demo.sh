#!/bin/bash
# demo.sh -- the main job on built-in sample data.
#
# Builds qcow2pbs (installing missing Debian packages when run as root),
# makes a small backup chain full.qcow2 <- incr0.qcow2 <- incr1.qcow2 with
# qemu-img/qemu-io, shows what each layer owns, pushes the three layers as
# three complete snapshots into a local datastore, restores the newest and
# proves it equals the chain.  Everything goes to ${DEMO_DIR:-./demo}.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
if ! command -v make >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq make >/dev/null
fi
make -C "$top" --no-print-directory deps
make -C "$top" --no-print-directory -j"$(nproc)"
q=$top/build/qcow2pbs

dir=${DEMO_DIR:-$PWD/demo}
rm -rf "$dir"
mkdir -p "$dir"
cd "$dir"
step () { printf '\n== %s\n' "$*"; }

step "a 256 MiB disk: full backup, then two incrementals"
qemu-img create -q -f qcow2 full.qcow2 256M
qemu-io -c 'write -P 0x11 0 12M' -c 'write -P 0x22 100M 3M' \
        -c 'write -P 0x33 250M 1M' full.qcow2 >/dev/null
qemu-img create -q -f qcow2 -b full.qcow2 -F qcow2 incr0.qcow2
qemu-io -c 'write -P 0x44 4M 64k' -c 'write -z 100M 1M' incr0.qcow2 >/dev/null
qemu-img create -q -f qcow2 -b incr0.qcow2 -F qcow2 incr1.qcow2
qemu-io -c 'write -P 0x55 200M 2M' incr1.qcow2 >/dev/null

step "qcow2pbs info incr1.qcow2"
"$q" info incr1.qcow2
step "qcow2pbs map incr1.qcow2 (which layer owns what)"
"$q" map incr1.qcow2

step "qcow2pbs export incr1.qcow2 merged.raw (the merged disk, sparse)"
"$q" export --force incr1.qcow2 merged.raw
qemu-img convert -O raw incr1.qcow2 expected.raw
cmp merged.raw expected.raw && echo "merged.raw == qemu-img convert of incr1.qcow2"
du -h --apparent-size merged.raw; du -h merged.raw

step "push the three layers as three snapshots into ./datastore"
t=$(( $(date +%s) - 60 ))
for layer in full incr0 incr1; do
  t=$((t + 1))
  "$q" push --repository ./datastore --backup-id demo --backup-time "$t" \
       "drive-scsi0=$layer.qcow2"
done
"$q" snapshots --repository ./datastore

step "restore the newest snapshot and compare with qemu-img convert"
snap=$("$q" snapshots --repository ./datastore --output-format json |
       python3 -c 'import json,sys,time; s=json.load(sys.stdin)[-1]
print("%s/%s/%s" % (s["backup-type"], s["backup-id"],
      time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(s["backup-time"]))))')
"$q" restore --force --repository ./datastore "$snap" drive-scsi0 restored.raw
cmp restored.raw expected.raw && echo "restored disk == qemu-img convert of incr1.qcow2"
"$q" verify --repository ./datastore "$snap" drive-scsi0=incr1.qcow2
