#!/usr/bin/env python3
"""qmpbackup_fixture.py -- a VM's backups laid out exactly as qmpbackup lays
them out (github abbbi/qmpbackup, libqmpbackup/image.py), made by real QEMU
blockdev-backup jobs through tests/helpers/qmp.py.

  qmpbackup_fixture.py OUT [--disks sda,sdb] [--points 3] [--size 32M]
                       [--t0 1700000000] [--step 100] [--monthly K]
                       [--flat] [--partial DISK:POINT] [--raw DISK]

OUT/<disk>.qcow2/FULL-<t>-<disk>.qcow2, INC-<t>-<disk>.qcow2, ... for each
point (one t per run for all disks, as qmpbackup does), with the backing
pointers removed (`qemu-img rebase -u -b ""`: qmpbackup's INC files have
none), OUT/uuid and OUT/<disk>.qcow2.config side files.  --flat: the
--no-subdir layout (all files in OUT).  --monthly K: points from K on go to
a second month folder, starting with a new FULL (OUT/2023-11/, OUT/2023-12/).
--partial DISK:POINT renames that file to *.partial (an interrupted run).

The expected disk of every point is written to EXPECT/<disk>-<t>.raw by
`qemu-img convert -O raw` of the chain while its backing pointers are still
there (EXPECT = OUT.expect).  Prints nothing; exits non-zero on error.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qmp  # noqa: E402


def run(*a):
    subprocess.run(list(a), check=True, stdout=subprocess.DEVNULL)


def main(argv):
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--disks", default="sda,sdb")
    ap.add_argument("--points", type=int, default=3)
    ap.add_argument("--size", default="32M")
    ap.add_argument("--t0", type=int, default=1700000000)
    ap.add_argument("--step", type=int, default=100)
    ap.add_argument("--monthly", type=int, default=0)
    ap.add_argument("--flat", action="store_true")
    ap.add_argument("--partial", default="")
    a = ap.parse_args(argv[1:])
    disks = a.disks.split(",")
    out = os.path.abspath(a.out)
    expect = out + ".expect"
    # QEMU's own layers live in a scratch folder outside OUT's parent, so
    # importing that parent finds only the laid-out backups.
    work = tempfile.mkdtemp(prefix="qmpbackup-fixture.")
    for d in (out, expect):
        os.makedirs(d, exist_ok=True)
    size = qmp.parse_size(a.size)
    months = ["2023-11", "2023-12"]
    final = {d: [] for d in disks}  # (layer made by QEMU, its qmpbackup name)
    with qmp.VM(work) as vm:
        chains = {}
        for i, d in enumerate(disks):
            src = os.path.join(work, "%s-src.qcow2" % d)
            run("qemu-img", "create", "-q", "-f", "qcow2", src, str(size))
            vm.add_disk(src, "drive%d" % i)
        for k in range(a.points):
            t = a.t0 + k * a.step
            new_chain = k == 0 or (a.monthly and k == a.monthly)
            for i, d in enumerate(disks):
                node = "drive%d" % i
                # guest writes between backups: data, zeros, a discard
                vm.qemu_io(node, "write -P 0x%02x %dM 1M" % (0x10 + 16 * i + k, (3 * k + i) % 30))
                if k:
                    vm.qemu_io(node, "write -z %dM 512k" % ((5 * k) % 30))
                if new_chain:
                    bm = "b%d" % k
                    chains[d] = qmp.BackupChain(vm, node, work, bitmap=bm,
                                                prefix="%s-%d-" % (d, k))
                    layer = chains[d].full()
                    kind = "FULL"
                else:
                    layer = chains[d].incremental()
                    kind = "INC"
                run("qemu-img", "convert", "-O", "raw", layer,
                    os.path.join(expect, "%s-%d.raw" % (d, t)))
                folder = out
                if a.monthly:
                    folder = os.path.join(folder, months[1 if k >= a.monthly else 0])
                if not a.flat:
                    folder = os.path.join(folder, "%s.qcow2" % d)
                os.makedirs(folder, exist_ok=True)
                name = "%s-%d-%s.qcow2" % (kind, t, d)
                if a.partial == "%s:%d" % (d, k):
                    name += ".partial"
                final[d].append((layer, os.path.join(folder, name)))
    try:
        return layout(out, disks, final, a)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def layout(out, disks, final, a):
    """Copy (sparse) each layer to its qmpbackup name and drop its backing
    pointer, as qmpbackup's INC files have none."""
    for d in disks:
        for src, dst in final[d]:
            run("cp", "--sparse=always", src, dst)
            run("qemu-img", "rebase", "-u", "-b", "", "-f", "qcow2", dst)
    roots = [out]
    if a.monthly:
        roots = [os.path.join(out, m) for m in ("2023-11", "2023-12")]
    for r in roots:
        open(os.path.join(r, "uuid"), "w").write("6a1b2c3d\n")
        for d in disks:
            open(os.path.join(r, "%s.qcow2.config" % d), "w").write(
                json.dumps({"format": "qcow2", "virtual-size": 0}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
