#!/usr/bin/env python3
"""qmp.py -- drive QEMU over QMP to make real backup chains (stdlib only).

This is the project's reusable QMP helper: test scripts and examples/ use
its command line, Python code imports it.

How QEMU is started (QEMU 7.2): qemu-system-x86_64 -machine none -accel tcg
-nodefaults -display none, with the QMP monitor on a unix socket.  QEMU is
the *client* of that socket (-chardev socket,path=SOCK without server=on):
we listen first and QEMU connects as soon as its monitor is up, so
readiness is the accept() returning -- no polling, no sleeps.  (A
server=on,wait=off monitor works too; QMP(path) connects to one.)

The backup workflow is the one incremental-backup tools use:

  source disk    -blockdev qcow2 node-name=drive0, discard=unmap (on
                 the command line; add_disk() adds more disks later)
  full backup    transaction [block-dirty-bitmap-add persistent=true,
                              blockdev-backup sync=full] into full.qcow2
  guest writes   human-monitor-command "qemu-io drive0 \\"write ...\\""
                 (write -P, write -z, write -z -u, write -c, discard)
  incremental    qemu-img create -f qcow2 -b PREV -F qcow2 incrN.qcow2,
                 blockdev-add it, blockdev-backup sync=incremental
                 bitmap=b0, wait for BLOCK_JOB_COMPLETED, blockdev-del
  end            quit (clean shutdown: the bitmap is stored in the source)

Python API:

  with VM(workdir) as vm:                   # starts QEMU, connects QMP
      vm.add_disk("src.qcow2", "drive0")    # blockdev-add, discard=unmap
      vm.qemu_io("drive0", "write -P 0xaa 0 1M")
      b = BackupChain(vm, "drive0", workdir, bitmap="b0")
      b.full()                              # -> path of full.qcow2
      vm.qemu_io("drive0", "write -z 1M 64k")
      b.incremental()                       # -> path of incr0.qcow2
  # vm.quit() happened on exit; b.layers lists the chain oldest first

  QMP(path).cmd("query-block-jobs") talks to any QMP server socket.

Command line:

  qmp.py chain --dir D --size 64M [--incrementals N] [--script FILE]
               [--bitmap b0] [--granularity BYTES] [--seed N]
               [--source-opts O] [--target-opts O]

  Makes D/src.qcow2 (the guest disk) and D/full.qcow2, D/incr0.qcow2, ...
  and prints the chain oldest first, comma separated (ready for
  `qcow2pbs --chain`).  --script FILE: one qemu-io command per line for
  drive0, `backup` takes the next backup (the first is the full one),
  `#` starts a comment.  Without a script, a deterministic workload (seeded
  by --seed) of data writes, write -z, write -z -u and discards is run with
  N incrementals.  -o options go to qemu-img create (e.g. "compat=0.10",
  "cluster_size=4096", "extended_l2=on").  After the last backup the script
  may keep writing: those writes stay in the source's bitmap, which is how
  the bitmap tests get dirty ranges.
"""

import argparse
import json
import os
import random
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time


class QMPError(Exception):
    """A QMP command failed, or QEMU went away."""


class QMP:
    """A QMP connection: cmd() sends a command and returns its "return"
    value; events that arrive meanwhile are queued for wait_event()."""

    def __init__(self, path=None, sock=None, timeout=120):
        if sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(path)
        self.sock = sock
        self.sock.settimeout(timeout)
        self.file = sock.makefile("rwb")
        self.events = []
        self.next_id = 0
        greeting = self._read()
        if "QMP" not in greeting:
            raise QMPError("no QMP greeting: %r" % greeting)
        self.version = greeting["QMP"]["version"]["qemu"]
        self.cmd("qmp_capabilities")

    def _read(self):
        line = self.file.readline()
        if not line:
            raise QMPError("QEMU closed the QMP connection")
        return json.loads(line)

    def cmd(self, name, **args):
        """Run command NAME with keyword ARGS (use a dict with ** for
        argument names that are not identifiers, e.g. **{"job-id": "j"})."""
        self.next_id += 1
        msg = {"execute": name, "id": self.next_id}
        if args:
            msg["arguments"] = args
        self.file.write(json.dumps(msg).encode() + b"\n")
        self.file.flush()
        while True:
            r = self._read()
            if "event" in r:
                self.events.append(r)
                continue
            if r.get("id") != self.next_id:
                continue
            if "error" in r:
                raise QMPError("%s: %s" % (name, r["error"].get("desc", r)))
            return r.get("return")

    def hmp(self, command_line):
        """Run a human monitor command and return its output text."""
        return self.cmd("human-monitor-command",
                        **{"command-line": command_line})

    def wait_event(self, name, match=None, timeout=600):
        """Return the first event NAME whose data contains MATCH (a dict),
        taking queued events first."""
        deadline = time.monotonic() + timeout
        while True:
            for i, e in enumerate(self.events):
                data = e.get("data", {})
                if e["event"] == name and all(
                        data.get(k) == v for k, v in (match or {}).items()):
                    return self.events.pop(i)
            left = deadline - time.monotonic()
            if left <= 0:
                raise QMPError("timed out waiting for event %s" % name)
            self.sock.settimeout(left)
            self.events.append(self._read())

    def close(self):
        try:
            self.file.close()
        finally:
            self.sock.close()


def blockdev_options(path, node, fmt="qcow2", discard="unmap",
                     read_only=False, **extra):
    """The blockdev-add / -blockdev options for image PATH as node NODE.
    discard=unmap on both the format and the file node, so guest discards
    and `write -z -u` really unmap."""
    opts = {"driver": fmt, "node-name": node, "discard": discard,
            "read-only": read_only,
            "file": {"driver": "file", "filename": os.path.abspath(path),
                     "discard": discard}}
    opts.update(extra)
    return opts


class VM:
    """qemu-system-x86_64 without a guest: only the block layer and QMP.
    Use as a context manager, or call start() and quit()."""

    def __init__(self, workdir, qemu="qemu-system-x86_64", extra_args=()):
        self.workdir = workdir
        self.qemu = qemu
        self.extra_args = list(extra_args)
        self.proc = None
        self.qmp = None
        self._sockdir = None

    def start(self):
        # A private directory: socket paths are limited to ~107 bytes and
        # must not collide between parallel tests.
        self._sockdir = tempfile.mkdtemp(prefix="qmp.")
        path = os.path.join(self._sockdir, "qmp.sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        listener.listen(1)
        args = [self.qemu, "-machine", "none", "-accel", "tcg",
                "-nodefaults", "-display", "none", "-no-user-config",
                "-chardev", "socket,id=qmp0,path=" + path,
                "-mon", "chardev=qmp0,mode=control"] + self.extra_args
        # QEMU's stdout and stderr (qemu-io's messages among them) go to a
        # log that quit() checks for failures.
        self.logpath = os.path.join(self._sockdir, "qemu.log")
        with open(self.logpath, "wb") as log:
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=log,
                                         cwd=self.workdir)
        # Wait for QEMU to connect, or to die trying.
        while True:
            r, _, _ = select.select([listener], [], [], 1.0)
            if r:
                break
            if self.proc.poll() is not None:
                listener.close()
                raise QMPError("QEMU exited with status %d before QMP was "
                               "up: %s" % (self.proc.returncode,
                                           self.log().strip()))
        conn, _ = listener.accept()
        listener.close()
        self.qmp = QMP(sock=conn)
        return self

    def cmd(self, name, **args):
        return self.qmp.cmd(name, **args)

    def add_disk(self, path, node, fmt="qcow2", discard="unmap",
                 read_only=False, **extra):
        """blockdev-add PATH as node NODE (its backing chain, if any, is
        opened by QEMU from the image's own backing name)."""
        self.cmd("blockdev-add", **blockdev_options(
            path, node, fmt, discard, read_only, **extra))

    def del_disk(self, node):
        self.cmd("blockdev-del", **{"node-name": node})

    def log(self):
        """What QEMU printed so far (stdout and stderr)."""
        try:
            with open(self.logpath, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def qemu_io(self, node, command):
        """Run one qemu-io command on NODE through HMP.  qemu-io prints its
        results and errors on QEMU's stdout/stderr, not in the HMP reply,
        and the HMP command itself never fails; so failures ("write failed:
        ...", "command ... not found") are found in the log by quit(),
        which then raises."""
        if '"' in command:
            raise ValueError("qemu-io command must not contain '\"'")
        return self.qmp.hmp('qemu-io %s "%s"' % (node, command))

    def run_job(self, job_id, timeout=600):
        """Wait until block job JOB_ID completes; raise if it failed."""
        e = self.qmp.wait_event("BLOCK_JOB_COMPLETED", {"device": job_id},
                                timeout)
        if "error" in e.get("data", {}):
            raise QMPError("job %s failed: %s" % (job_id, e["data"]["error"]))
        return e

    def quit(self):
        if self.proc is None:
            return
        try:
            if self.qmp is not None and self.proc.poll() is None:
                try:
                    self.cmd("quit")
                except QMPError:
                    pass
            rc = self.proc.wait(timeout=120)
            log = self.log()
            if rc != 0:
                raise QMPError("QEMU exited with status %d: %s"
                               % (rc, log.strip()))
            bad = [l for l in log.splitlines()
                   if any(w in l.lower() for w in
                          ("failed", "not found", "error", "invalid",
                           "usage:"))]
            if bad:
                raise QMPError("QEMU reported: %s" % "; ".join(bad[:5]))
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            if self.qmp is not None:
                self.qmp.close()
            if self._sockdir:
                shutil.rmtree(self._sockdir, ignore_errors=True)
            self.proc = self.qmp = None

    def __enter__(self):
        return self.start()

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.quit()
        else:
            # Keep the original error; just make sure QEMU is gone.
            try:
                self.quit()
            except Exception:
                pass


def qemu_img(*args):
    subprocess.run(["qemu-img"] + list(args), check=True,
                   stdout=subprocess.DEVNULL)


class BackupChain:
    """full.qcow2 <- incr0.qcow2 <- ... of node SOURCE, made with
    blockdev-backup and a persistent dirty bitmap, in DIRECTORY."""

    def __init__(self, vm, source, directory, bitmap="b0", granularity=None,
                 target_opts=None, prefix=""):
        self.vm = vm
        self.source = source
        self.dir = directory
        self.bitmap = bitmap
        self.granularity = granularity
        self.target_opts = target_opts
        self.prefix = prefix
        self.layers = []
        self._jobs = 0

    def _source_size(self):
        for node in self.vm.cmd("query-named-block-nodes", flat=True):
            if node["node-name"] == self.source:
                return node["image"]["virtual-size"]
        raise QMPError("no node %s" % self.source)

    def _backup(self, target_path, sync, first_actions=()):
        node = "tgt%d" % self._jobs
        job = "job%d" % self._jobs
        self._jobs += 1
        self.vm.add_disk(target_path, node, discard="ignore")
        backup = {"job-id": job, "device": self.source, "target": node,
                  "sync": sync}
        if sync == "incremental":
            backup["bitmap"] = self.bitmap
        actions = list(first_actions) + [
            {"type": "blockdev-backup", "data": backup}]
        self.vm.cmd("transaction", actions=actions)
        self.vm.run_job(job)
        self.vm.del_disk(node)
        self.layers.append(target_path)
        return target_path

    def _create(self, path, backing=None):
        args = ["create", "-q", "-f", "qcow2"]
        if self.target_opts:
            args += ["-o", self.target_opts]
        if backing:
            args += ["-b", os.path.basename(backing), "-F", "qcow2"]
        args += [path, str(self._source_size())]
        qemu_img(*args)

    def full(self, name=None):
        """sync=full into NAME (default full.qcow2), adding the persistent
        bitmap in the same transaction so no write falls between."""
        path = os.path.join(self.dir, name or self.prefix + "full.qcow2")
        self._create(path)
        add = {"node": self.source, "name": self.bitmap, "persistent": True}
        if self.granularity:
            add["granularity"] = self.granularity
        return self._backup(path, "full", [
            {"type": "block-dirty-bitmap-add", "data": add}])

    def incremental(self, name=None):
        """sync=incremental bitmap=B into a new overlay of the last layer
        (default incrN.qcow2); the job clears the bitmap on success."""
        if not self.layers:
            raise QMPError("incremental before full backup")
        n = len(self.layers) - 1
        path = os.path.join(self.dir,
                            name or "%sincr%d.qcow2" % (self.prefix, n))
        self._create(path, backing=self.layers[-1])
        return self._backup(path, "incremental")


def parse_size(s):
    mult = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    s = s.strip().lower()
    if s and s[-1] in mult:
        return int(s[:-1]) * mult[s[-1]]
    return int(s)


def default_script(size, incrementals, seed):
    """A deterministic workload: data before the full backup, then for each
    incremental some data writes, zeroing with and without unmap, a
    discard, and a compressed write now and then."""
    rnd = random.Random(seed)
    unit = 64 << 10
    slots = max(1, size // unit)

    def rng():
        n = rnd.choice((1, 1, 2, 4, 16))
        off = rnd.randrange(0, max(1, slots - n + 1)) * unit
        return off, min(n * unit, size - off)

    lines = []
    for _ in range(8):
        off, ln = rng()
        lines.append("write -P 0x%02x %d %d" % (rnd.randrange(1, 256),
                                                 off, ln))
    lines.append("backup")
    for i in range(incrementals):
        for _ in range(4):
            off, ln = rng()
            lines.append("write -P 0x%02x %d %d" % (rnd.randrange(1, 256),
                                                     off, ln))
        off, ln = rng()
        lines.append("write -z %d %d" % (off, ln))
        off, ln = rng()
        lines.append("write -z -u %d %d" % (off, ln))
        off, ln = rng()
        lines.append("discard %d %d" % (off, ln))
        if i % 3 == 2:
            off, _ = rng()
            lines.append("write -P 0x5a %d 1024" % (off + 512))
        lines.append("backup")
    return lines


def cmd_chain(a):
    os.makedirs(a.dir, exist_ok=True)
    size = parse_size(a.size)
    src = os.path.join(a.dir, "src.qcow2")
    args = ["create", "-q", "-f", "qcow2"]
    if a.source_opts:
        args += ["-o", a.source_opts]
    qemu_img(*(args + [src, str(size)]))
    if a.script:
        with open(a.script) as f:
            lines = f.read().splitlines()
    else:
        lines = default_script(size, a.incrementals, a.seed)
    # The source disk on the command line, as a VM would have it.
    with VM(a.dir, extra_args=["-blockdev", json.dumps(
            blockdev_options(src, "drive0"))]) as vm:
        chain = BackupChain(vm, "drive0", a.dir, bitmap=a.bitmap,
                            granularity=a.granularity,
                            target_opts=a.target_opts)
        for raw in lines:
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            if line == "backup":
                if chain.layers:
                    chain.incremental()
                else:
                    chain.full()
            else:
                vm.qemu_io("drive0", line)
    # quit closed drive0 cleanly: its persistent bitmap is now stored
    print(",".join(chain.layers))


def main(argv):
    p = argparse.ArgumentParser(
        description="Drive QEMU over QMP (see the module docstring).")
    sub = p.add_subparsers(dest="what", required=True)
    c = sub.add_parser("chain", help="make a backup chain with QMP")
    c.add_argument("--dir", required=True)
    c.add_argument("--size", default="64M")
    c.add_argument("--incrementals", type=int, default=2)
    c.add_argument("--script")
    c.add_argument("--bitmap", default="b0")
    c.add_argument("--granularity", type=int)
    c.add_argument("--seed", type=int, default=1)
    c.add_argument("--source-opts")
    c.add_argument("--target-opts")
    a = p.parse_args(argv)
    try:
        cmd_chain(a)
    except (QMPError, subprocess.CalledProcessError, OSError) as e:
        print("qmp.py: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
