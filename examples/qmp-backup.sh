#!/bin/bash
# qmp-backup.sh -- incremental VM disk backups with QEMU + qcow2pbs.
#
# The workflow: a persistent dirty bitmap on the VM's disk records writes;
# blockdev-backup sync=full writes full.qcow2, each later blockdev-backup
# sync=incremental writes only what the bitmap marked into incrN.qcow2
# (backed by the previous layer); `qcow2pbs push` turns the newest layer
# into a complete PBS snapshot, reading only what that layer changed.
#
# Usage:
#   qmp-backup.sh demo DIR
#       Self-contained: starts a QEMU (no guest, just the block layer),
#       makes DIR/disk.qcow2, writes to it, takes a full backup and two
#       incrementals, pushes each to the datastore DIR/datastore, restores
#       every snapshot and compares it with qemu-img's view of the layer.
#   qmp-backup.sh full QMP_SOCKET NODE DIR
#   qmp-backup.sh incremental QMP_SOCKET NODE DIR
#       Talk to a running VM's QMP socket (start QEMU with e.g.
#       -qmp unix:/run/vm100.qmp,server=on,wait=off) and back up the block
#       node NODE (its node-name, see query-named-block-nodes) into DIR.
#       `full` also creates the persistent bitmap "qcow2pbs" in the same
#       transaction, so no write falls between the two.
#   qmp-backup.sh push DIR REPOSITORY BACKUP_ID [qcow2pbs push options]
#       Push the newest layer in DIR (REPOSITORY: a datastore directory or
#       user@realm@host:store; password from PBS_PASSWORD).
#
# Needs: bash, python3, qemu-img, qemu-system-x86_64 (demo), qcow2pbs
# (found as $QCOW2PBS, on PATH, or as ../build/qcow2pbs next to this file).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
Q=${QCOW2PBS:-$(command -v qcow2pbs || echo "$here/../build/qcow2pbs")}
die () { echo "qmp-backup.sh: $*" >&2; exit 1; }

# The QMP part, in python (standard library only).
qmp () {
  python3 - "$@" <<'PY'
import json, os, select, shutil, socket, subprocess, sys, tempfile, time

BITMAP = "qcow2pbs"

class QMP:
    def __init__(self, sock):
        self.f = sock.makefile("rwb")
        self.events = []
        self.n = 0
        if "QMP" not in self.read():
            sys.exit("no QMP greeting")
        self.cmd("qmp_capabilities")
    def read(self):
        line = self.f.readline()
        if not line:
            sys.exit("QEMU closed the QMP connection")
        return json.loads(line)
    def cmd(self, name, **args):
        self.n += 1
        msg = {"execute": name, "id": self.n}
        if args:
            msg["arguments"] = args
        self.f.write(json.dumps(msg).encode() + b"\n"); self.f.flush()
        while True:
            r = self.read()
            if "event" in r:
                self.events.append(r); continue
            if r.get("id") == self.n:
                if "error" in r:
                    sys.exit("%s: %s" % (name, r["error"]["desc"]))
                return r.get("return")
    def wait_job(self, job):
        while True:
            for i, e in enumerate(self.events):
                if e["event"] == "BLOCK_JOB_COMPLETED" and \
                        e["data"].get("device") == job:
                    del self.events[i]
                    if "error" in e["data"]:
                        sys.exit("backup job failed: " + e["data"]["error"])
                    return
            self.events.append(self.read())

def layers(d):
    """full.qcow2, incr0.qcow2, incr1.qcow2, ... present in D, in order."""
    out = []
    if os.path.exists(os.path.join(d, "full.qcow2")):
        out.append(os.path.join(d, "full.qcow2"))
        i = 0
        while os.path.exists(os.path.join(d, "incr%d.qcow2" % i)):
            out.append(os.path.join(d, "incr%d.qcow2" % i)); i += 1
    return out

def backup(q, node, d, sync):
    size = next(n["image"]["virtual-size"]
                for n in q.cmd("query-named-block-nodes", flat=True)
                if n["node-name"] == node)
    have = layers(d)
    if sync == "full":
        target = os.path.join(d, "full.qcow2")
        if have:
            sys.exit("%s already has a full backup" % d)
        create = ["qemu-img", "create", "-q", "-f", "qcow2", target, str(size)]
    else:
        if not have:
            sys.exit("no full backup in %s yet" % d)
        target = os.path.join(d, "incr%d.qcow2" % (len(have) - 1))
        # The new layer's backing name is relative: the chain can move.
        create = ["qemu-img", "create", "-q", "-f", "qcow2", "-b",
                  os.path.basename(have[-1]), "-F", "qcow2", target, str(size)]
    subprocess.run(create, check=True)
    tag = os.path.basename(target).split(".")[0]
    tnode, job = "qcow2pbs-target-" + tag, "qcow2pbs-backup-" + tag
    q.cmd("blockdev-add", **{"driver": "qcow2", "node-name": tnode,
          "file": {"driver": "file", "filename": os.path.abspath(target)}})
    actions = []
    bk = {"job-id": job, "device": node, "target": tnode, "sync": sync}
    if sync == "full":
        actions.append({"type": "block-dirty-bitmap-add",
                        "data": {"node": node, "name": BITMAP,
                                 "persistent": True}})
    else:
        bk["bitmap"] = BITMAP    # the job clears it on success
    actions.append({"type": "blockdev-backup", "data": bk})
    try:
        q.cmd("transaction", actions=actions)
        q.wait_job(job)
    finally:
        q.cmd("blockdev-del", **{"node-name": tnode})
    print(target)
    return target

def connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    return QMP(s)

def demo(d, tool):
    """A QEMU without a guest; qemu-io (through HMP) plays the guest."""
    sockdir = tempfile.mkdtemp(prefix="qmp.")
    path = os.path.join(sockdir, "qmp.sock")
    lst = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    lst.bind(path); lst.listen(1)
    disk = os.path.join(d, "disk.qcow2")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", disk, "256M"],
                   check=True)
    vm = subprocess.Popen(["qemu-system-x86_64", "-machine", "none",
                           "-nodefaults", "-display", "none",
                           "-no-user-config", "-chardev",
                           "socket,id=m,path=" + path,
                           "-mon", "chardev=m,mode=control"],
                          stdin=subprocess.DEVNULL,
                          stdout=subprocess.DEVNULL)   # qemu-io chatter
    try:
        # QEMU connects to us when its monitor is up: no polling.
        while not select.select([lst], [], [], 1.0)[0]:
            if vm.poll() is not None:
                sys.exit("QEMU did not start")
        q = QMP(lst.accept()[0])
        q.cmd("blockdev-add", **{"driver": "qcow2", "node-name": "drive0",
              "file": {"driver": "file", "filename": disk}})
        guest = lambda c: q.cmd("human-monitor-command",
                                **{"command-line": 'qemu-io drive0 "%s"' % c})
        bdir = os.path.join(d, "backup")
        os.makedirs(bdir, exist_ok=True)
        rounds = [["write -P 0x11 0 16M", "write -P 0x22 100M 1M"],
                  ["write -P 0x33 8M 64k", "write -z 100M 1M"],
                  ["write -P 0x44 200M 8M", "discard 0 64k"]]
        t = int(time.time())
        for i, writes in enumerate(rounds):
            for w in writes:
                guest(w)
            layer = backup(q, "drive0", bdir, "full" if i == 0 else
                           "incremental")
            # A push per backup; the VM keeps running meanwhile.
            subprocess.run([tool, "push", "--repository",
                            os.path.join(d, "datastore"), "--backup-id", "100",
                            "--backup-time", str(t + i), layer], check=True)
        q.cmd("quit")
        vm.wait()
    finally:
        if vm.poll() is None:
            vm.kill()
        shutil.rmtree(sockdir, ignore_errors=True)

op = sys.argv[1]
if op == "demo":
    demo(sys.argv[2], sys.argv[3])
else:
    backup(connect(sys.argv[2]), sys.argv[3], sys.argv[4], op)
PY
}

[ $# -ge 1 ] || { sed -n '2,/^set /p' "$0" | sed 's/^# \{0,1\}//;$d'; exit 2; }
case $1 in
  demo)
    [ $# = 2 ] || die "usage: qmp-backup.sh demo DIR"
    [ -x "$Q" ] || die "qcow2pbs not found (set QCOW2PBS)"
    mkdir -p "$2"
    d=$(cd "$2" && pwd)
    qmp demo "$d" "$Q"
    "$Q" snapshots --repository "$d/datastore"
    # Each snapshot restores to exactly its layer's disk.
    set -- "$d"/backup/full.qcow2 "$d"/backup/incr*.qcow2
    snaps=($("$Q" snapshots --repository "$d/datastore" --output-format json |
             python3 -c 'import json,sys
for e in json.load(sys.stdin): print("%s/%s/%d" % (e["backup-type"], e["backup-id"], e["backup-time"]))'))
    i=0
    for layer in "$@"; do
      "$Q" restore --force --repository "$d/datastore" "${snaps[$i]}" drive-scsi0 "$d/restored.raw"
      qemu-img convert -O raw "$layer" "$d/expected.raw"
      cmp "$d/restored.raw" "$d/expected.raw" || die "${snaps[$i]} differs"
      "$Q" verify --repository "$d/datastore" "${snaps[$i]}" "$layer" >/dev/null
      echo "${snaps[$i]}: restore and verify match $(basename "$layer")"
      i=$((i + 1))
    done
    rm -f "$d/restored.raw" "$d/expected.raw"
    ;;
  full|incremental)
    [ $# = 4 ] || die "usage: qmp-backup.sh $1 QMP_SOCKET NODE DIR"
    mkdir -p "$4"
    qmp "$1" "$2" "$3" "$4"
    ;;
  push)
    [ $# -ge 4 ] || die "usage: qmp-backup.sh push DIR REPOSITORY BACKUP_ID [options]"
    dir=$2 repo=$3 id=$4; shift 4
    # The newest layer: full.qcow2, then incr0.qcow2, incr1.qcow2, ... as
    # `full` and `incremental` name them (the same walk as layers() above).
    top=$dir/full.qcow2
    [ -f "$top" ] || die "no full backup in $dir (run: qmp-backup.sh full QMP_SOCKET NODE $dir)"
    i=0
    while [ -f "$dir/incr$i.qcow2" ]; do top=$dir/incr$i.qcow2; i=$((i + 1)); done
    exec "$Q" push --repository "$repo" --backup-id "$id" "$@" "$top"
    ;;
  *) die "unknown command '$1' (demo, full, incremental, push)" ;;
esac
