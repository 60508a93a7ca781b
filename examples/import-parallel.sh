#!/bin/bash
# import-parallel.sh -- split a large set of old backups over several
# machines with GNU parallel: each host runs `qcow2pbs import --shard K/N`
# on the same SOURCE (a shared folder, or the same archive path on every
# host) against one PBS.  Every group (VM) falls in exactly one shard, by a
# stable hash of its backup-id, so no VM is imported twice and none is
# left out; the points of one VM stay in order on one host.
#
#   PBS_REPOSITORY=backup@pbs@pbs.example:store \
#   PBS_PASSWORD_FILE=/root/.pbs-pass \
#   examples/import-parallel.sh "host1 host2 host3" /backups/qmpbackup
#
# Re-running it is safe: points already stored are skipped ("present"), so
# a failed or interrupted host is simply run again.  The password is read
# on each host from PBS_PASSWORD_FILE (never put it on the command line).
set -euo pipefail

hosts=${1:?usage: $0 "HOST..." SOURCE [import options...]}
source=${2:?usage: $0 "HOST..." SOURCE [import options...]}
shift 2
: "${PBS_REPOSITORY:?set PBS_REPOSITORY}"
n=$(wc -w <<<"$hosts")
qcow2pbs=${QCOW2PBS:-qcow2pbs}
# ssh hands one string to the remote shell: quote every word once.
opts=$(printf '%q ' "$@")

# One job per host ({%} is the job slot, 1..n, so each host gets one
# shard); --tag prefixes every output line with the host.
# shellcheck disable=SC2086
printf '%s\n' $hosts | parallel --tag -j "$n" --halt never \
  ssh {} env PBS_REPOSITORY="$(printf %q "$PBS_REPOSITORY")" \
    PBS_PASSWORD_FILE="$(printf %q "${PBS_PASSWORD_FILE:-}")" \
    "$qcow2pbs" import --shard "{%}/$n" --jobs 2 "$opts" \
    "$(printf %q "$source")"
