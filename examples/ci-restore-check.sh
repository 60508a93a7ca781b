#!/bin/bash
# ci-restore-check.sh -- for a CI job: prove that the newest snapshot of a
# group restores, and, when the source chain is at hand, that it equals it.
#   ci-restore-check.sh GROUP [CHAIN_TOP.qcow2]      (GROUP: vm/100)
# Environment: PBS_REPOSITORY, PBS_PASSWORD (or _FILE/_FD), PBS_FINGERPRINT,
# KEYFILE (optional; its password in PBS_ENCRYPTION_PASSWORD), QCOW2PBS,
# PLUGIN (build/nbdkit-qcow2pbs-plugin.so).  Exit 0: restorable (and equal);
# 1: damage or difference; 2: could not check.
set -u
group=${1:?usage: ci-restore-check.sh TYPE/ID [CHAIN_TOP.qcow2]}
chain=${2:-}
Q=${QCOW2PBS:-qcow2pbs}
PLUGIN=${PLUGIN:-nbdkit-qcow2pbs-plugin.so}
key=(); [ -n "${KEYFILE:-}" ] && key=(--keyfile "$KEYFILE")

snap=$("$Q" snapshots --output-format json | python3 -c '
import json, sys, time
t, i = sys.argv[1].split("/")
s = [x for x in json.load(sys.stdin) if x["backup-type"] == t
     and x["backup-id"] == i and x.get("size")]
if not s: sys.exit(1)
b = max(x["backup-time"] for x in s)
print("%s/%s/%s" % (t, i, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(b))))' "$group") ||
  { echo "ci-restore-check: no finished snapshot of $group" >&2; exit 2; }
echo "checking $snap"
"$Q" check "${key[@]}" "$snap"; rc=$?
[ $rc = 0 ] || exit $rc
[ -n "$chain" ] || exit 0
# The snapshot served as a disk, compared with the chain by qemu-img.
nbdkit -U - "$PLUGIN" snapshot="$snap" ${KEYFILE:+keyfile="$KEYFILE"} \
  --run "qemu-img compare \"\$uri\" '$chain'"; rc=$?
case $rc in 0) exit 0 ;; 1) exit 1 ;; *) exit 2 ;; esac
