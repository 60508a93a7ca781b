#!/bin/bash
# live-restore.sh -- restore a PBS snapshot into a qcow2 image by QEMU's
# block-stream, the way Proxmox VE's live restore does it, on plain QEMU.
#
#   live-restore.sh REPOSITORY SNAPSHOT ARCHIVE TARGET.qcow2
#       e.g. live-restore.sh /srv/pbs/store1 vm/100/2024-05-01T10:00:00Z \
#                            drive-scsi0 /var/lib/vm/100-disk0.qcow2
#
# 1. nbdkit-qcow2pbs-plugin.so serves the archive as a read-only NBD disk
#    on a private unix socket (chunks fetched on demand, digests checked).
# 2. TARGET.qcow2.partial is created as a qcow2 overlay whose backing file
#    is that NBD export: from now on it reads as the backed-up disk.
# 3. A qemu-system-x86_64 (no guest: -machine none) opens the overlay and
#    runs a QMP block-stream job, which copies every block from the backup
#    into the overlay and then drops the backing file.
# 4. nbdkit stops; the overlay, now standalone, is renamed to TARGET.
#
# Environment (as for qcow2pbs; secrets never on the command line):
#   PBS_PASSWORD (or PBS_PASSWORD_FILE/_FD/_CMD), PBS_FINGERPRINT,
#   KEYFILE (an encrypted snapshot's key; its password in
#   PBS_ENCRYPTION_PASSWORD), PLUGIN (path of nbdkit-qcow2pbs-plugin.so),
#   QMP_PY (tests/helpers/qmp.py of qcow2pbs, the QMP helper), QEMU
#   (qemu-system-x86_64).
# Exit 0: TARGET is a complete, standalone copy of the archive.  Exit 1:
# failed; a TARGET.qcow2.partial that is left is incomplete and still backed
# by the (now stopped) NBD export.  Exit 2: usage.  An existing TARGET or
# TARGET.partial is never touched.
set -u
me=live-restore.sh
die () { echo "$me: $*" >&2; exit 1; }
[ $# = 4 ] || { echo "usage: $me REPOSITORY SNAPSHOT ARCHIVE TARGET.qcow2" >&2; exit 2; }
repo=$1 snap=$2 archive=$3 target=$4
partial=$target.partial
here=$(cd "$(dirname "$0")" && pwd)
PLUGIN=${PLUGIN:-$here/../build/nbdkit-qcow2pbs-plugin.so}
QMP_PY=${QMP_PY:-$here/../tests/helpers/qmp.py}
QEMU=${QEMU:-qemu-system-x86_64}

{ [ -e "$target" ] || [ -L "$target" ]; } && die "$target: exists; give a new path (a restore never overwrites)"
{ [ -e "$partial" ] || [ -L "$partial" ]; } && die "$partial: left by an earlier failed restore; remove it first"
[ -d "$(dirname "$target")" ] || die "$target: its directory does not exist"
for c in nbdkit qemu-img python3 "$QEMU"; do
  command -v "$c" >/dev/null || die "$c: not installed"
done
[ -f "$PLUGIN" ] || die "$PLUGIN: no such plugin (set PLUGIN to nbdkit-qcow2pbs-plugin.so)"
[ -f "$QMP_PY" ] || die "$QMP_PY: no such file (set QMP_PY to tests/helpers/qmp.py of qcow2pbs)"
[ -z "${KEYFILE:-}" ] || [ -r "$KEYFILE" ] || die "$KEYFILE: cannot read the key file"

# Everything temporary (socket, logs) in one private directory; nbdkit runs
# in its own process group, so its --run child (python, and the QEMU it
# starts) goes with it on every exit, Ctrl-C and kill included.
work=$(mktemp -d "${TMPDIR:-/tmp}/live-restore.XXXXXX") || die "cannot make a temporary directory"
npid=
cleanup () {
  if [ -n "$npid" ]; then
    # The whole group: nbdkit, the python driver and its QEMU.  Wait until
    # all are gone (QEMU may take a moment to quit), at most ~10 s.
    kill -TERM -- "-$npid" 2>/dev/null
    wait "$npid" 2>/dev/null
    local i=0
    while kill -0 -- "-$npid" 2>/dev/null && [ $i -lt 100 ]; do
      sleep 0.1; i=$((i + 1))
    done
    kill -KILL -- "-$npid" 2>/dev/null
  fi
  rm -rf "$work"
}
trap cleanup EXIT
interrupted () {
  if [ -e "$partial" ]; then
    echo "$me: interrupted; $partial is incomplete and still needs the backup (delete it to try again)" >&2
  else
    echo "$me: interrupted" >&2
  fi
  exit 1
}
trap interrupted INT TERM HUP

cat >"$work/stream.py" <<'PY'
# Runs under `nbdkit --run`: argv = socket, overlay, qmp.py's directory.
import json, os, signal, subprocess, sys, time
sock, overlay, qmpdir, errfile = sys.argv[1:5]
sys.path.insert(0, qmpdir)
import qmp
signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))  # VM.__exit__ kills QEMU

def fail(msg):
    open(errfile, "w").write(msg)
    sys.exit(1)

# The overlay: raw NBD backing, its size taken from the export.
r = subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw",
                    "-b", "nbd+unix:///?socket=" + sock, overlay],
                   capture_output=True, text=True)
if r.returncode:
    fail("qemu-img create: " + (r.stderr.strip().splitlines() or ["failed"])[-1])
try:
    with qmp.VM(os.path.dirname(overlay) or ".") as vm:
        # detect-zeroes=unmap: the backup's zero blocks stay unallocated
        # in the overlay instead of being written as data.
        vm.add_disk(overlay, "restore0", **{"detect-zeroes": "unmap"})
        size = next(n["image"]["virtual-size"] for n in
                    vm.cmd("query-named-block-nodes", flat=True)
                    if n["node-name"] == "restore0")
        print("streaming %d MiB from the backup..." % (size >> 20), flush=True)
        vm.cmd("block-stream", **{"job-id": "restore", "device": "restore0"})
        # Progress on a terminal: poll query-block-jobs; the completion
        # event, read meanwhile, waits in the queue for run_job.
        tty = None
        if os.environ.get("LR_TTY"):  # the script's stderr, a terminal
            try:
                tty = os.fdopen(int(os.environ["LR_TTY"]), "w")
            except OSError:
                pass
        while not any(e["event"] == "BLOCK_JOB_COMPLETED"
                      for e in vm.qmp.events):
            jobs = [j for j in vm.cmd("query-block-jobs")
                    if j["device"] == "restore"]
            if not jobs:
                break
            if tty and jobs[0]["len"]:
                tty.write("\r%3d%% streamed" %
                          (100 * jobs[0]["offset"] // jobs[0]["len"]))
                tty.flush()
            time.sleep(1)
        if tty:
            tty.write("\r              \r")
            tty.close()
        try:
            vm.run_job("restore")
        except qmp.QMPError as e:
            fail("block-stream failed: %s" % e)  # QEMU is stopped on the way out
        vm.del_disk("restore0")
except qmp.QMPError as e:
    fail("QEMU: %s" % e)
PY

# nbdkit's own messages (and the plugin's, naming a bad chunk) go to a log
# that is shown, in one line, when something fails.
case $partial in /*) ;; *) partial=$PWD/$partial ;; esac
# Progress goes to the terminal (nbdkit's stderr is the log), on fd 3.
LR_TTY=; [ -t 2 ] && LR_TTY=3
export LR_TTY LR_DIR=$work LR_PARTIAL=$partial LR_QMPDIR=$(cd "$(dirname "$QMP_PY")" && pwd)
setsid nbdkit -U "$work/nbd.sock" "$PLUGIN" repository="$repo" \
  snapshot="$snap" archive="$archive" ${KEYFILE:+keyfile="$KEYFILE"} \
  --run 'python3 "$LR_DIR/stream.py" "$unixsocket" "$LR_PARTIAL" "$LR_QMPDIR" "$LR_DIR/error"' \
  3>&2 2>"$work/nbdkit.log" &
npid=$!
wait "$npid"; rc=$?
npid=
if [ $rc != 0 ]; then
  why=$(head -c 300 "$work/error" 2>/dev/null)
  # The plugin's first error names what broke (a chunk digest, a password).
  plug=$(grep -m1 -E '^qcow2pbs: |error: ' "$work/nbdkit.log" | sed -E 's/^qcow2pbs: //; s/.*error: //')
  ! grep -q 'needs keyfile=' "$work/nbdkit.log" || plug="$plug (an encrypted snapshot: set KEYFILE)"
  [ -n "$why" ] || why=${plug:-nbdkit failed: $(tail -n1 "$work/nbdkit.log")}
  [ -z "$plug" ] || [ "$why" = "$plug" ] || why="$why ($plug)"
  if [ -e "$partial" ]; then
    die "$why; $partial is incomplete and still needs the backup (keep the backup; delete this file to try again)"
  fi
  die "$why"
fi

# Standalone now?  block-stream drops the backing file when it completes.
qemu-img info -U --output=json "$partial" >"$work/info.json" 2>&1 ||
  die "qemu-img info $partial: $(tail -n1 "$work/info.json")"
python3 -c 'import json,sys; sys.exit("backing-filename" in json.load(open(sys.argv[1])))' \
  "$work/info.json" || die "$partial: still has a backing file after the stream; not complete"
sync "$partial" && mv -n "$partial" "$target" && [ ! -e "$partial" ] ||
  die "cannot rename $partial to $target"
echo "$target: restored from $snap ($archive)"
