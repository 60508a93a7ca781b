#!/bin/bash
# test-qcowlib-random.sh -- differential test of qcowlib against QEMU.
#
# Random two-layer chains (v2/v3, 512 B to 16 KiB clusters, extended L2,
# zlib/zstd) are written with qemu-io (data, write -z, write -z -u,
# discard, compressed writes), then up to three L2 entries of the top are
# overwritten with random descriptors: zero flag on/off, reserved bits,
# offset 0 with COPIED, aligned/unaligned/past-EOF host offsets, random
# subcluster bitmaps, compressed descriptors at random byte offsets.
# Oracle: qemu-img convert -O raw and qemu-img map --output=json.  Where
# QEMU fails to read, `qcow2pbs export` must fail too (exit 1, one line);
# where QEMU reads, the export must be byte-identical and `map` must agree
# on depth/present/data (and zero for non-data ranges).  Deterministic:
# QCOWLIB_RANDOM_SEED (default 1), QCOWLIB_RANDOM_CASES (default 60).
. "$(dirname "$0")/../helpers/functions.sh"
requires qemu-img
requires qemu-io
requires python3
[ -x "$TOOL" ] || skip "$TOOL not built"
cd "$TMP"

python3 - "$TOOL" "${QCOWLIB_RANDOM_SEED:-1}" "${QCOWLIB_RANDOM_CASES:-60}" <<'EOF'
import json, random, struct, subprocess, sys

tool, seed, ncases = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
random.seed(seed)
passed = failed = 0


def report(good, msg):
    global passed, failed
    if good:
        passed += 1
        print("ok - " + msg)
    else:
        failed += 1
        print("not ok - " + msg)
    sys.stdout.flush()


def run(cmd):
    return subprocess.run(cmd, capture_output=True)


def qemu_io(img, ops):
    args = ["qemu-io"]
    for op in ops:
        args += ["-c", op]
    run(args + [img])  # some random ops are refused; that is fine


def extents(lst):
    return [(e["start"], e["length"], e) for e in lst]


def at(lst, pos):
    for s, l, e in lst:
        if s <= pos < s + l:
            return e
    return None


def map_diff(ours, ref):
    o, r = extents(ours), extents(ref)
    cuts = sorted({s for s, _, _ in o + r} | {s + l for s, l, _ in o + r})
    for a in cuts[:-1]:
        x, y = at(o, a), at(r, a)
        if x is None or y is None:
            return "no extent at %d" % a
        kx = (x["depth"], x["present"], x["data"])
        ky = (y["depth"], y["present"], y["data"])
        # qemu-img reports host-file holes of data clusters as zero too.
        if kx != ky or (not y["data"] and x["zero"] != y["zero"]):
            return "at %d: ours %s, qemu %s" % (a, x, y)
    return None


for case in range(ncases):
    ext = random.random() < 0.3
    v2 = not ext and random.random() < 0.3
    cs = 16384 if ext else random.choice([512, 1024, 4096])
    opts = "cluster_size=%d" % cs
    if ext:
        opts += ",extended_l2=on"
    if v2:
        opts += ",compat=0.10"
    elif random.random() < 0.3:
        opts += ",compression_type=zstd"
    size = cs * 16
    run(["rm", "-f", "base.qcow2", "top.qcow2"])
    run(["qemu-img", "create", "-q", "-f", "qcow2", "-o", opts, "base.qcow2",
         str(size)])
    ops = []
    for _ in range(6):
        off = random.randrange(size // 512) * 512
        ln = min(random.choice([512, cs, 2 * cs]), size - off)
        ops.append("write -P %d %d %d" % (random.randrange(1, 255), off, ln))
    ops.append("write -c -P 0x77 %d %d" % (cs * 14, cs))
    qemu_io("base.qcow2", ops)
    run(["qemu-img", "create", "-q", "-f", "qcow2", "-o", opts, "-b",
         "base.qcow2", "-F", "qcow2", "top.qcow2"])
    ops = []
    for _ in range(6):
        off = random.randrange(size // 512) * 512
        ln = min(random.choice([512, cs]), size - off)
        op = random.choice(["write -P 9", "write -z", "write -z -u",
                            "discard", "write -c -P 8"])
        if op.startswith("write -c"):
            off, ln = off - off % cs, cs
        ops.append("%s %d %d" % (op, off, ln))
    qemu_io("top.qcow2", ops)

    d = bytearray(open("top.qcow2", "rb").read())
    cb = cs.bit_length() - 1
    l1 = struct.unpack_from(">Q", d, 40)[0]
    l2 = struct.unpack_from(">Q", d, l1)[0] & 0x00FFFFFFFFFFFE00
    esz = 16 if ext else 8
    nclusters = len(d) // cs + 4
    what = []
    if l2 and random.random() < 0.8:
        for _ in range(random.randrange(1, 4)):
            i = random.randrange(16)
            p = l2 + i * esz
            e = struct.unpack_from(">Q", d, p)[0]
            r = random.random()
            if r < 0.15:
                e ^= 1
                what.append("flip bit 0 of L2[%d]" % i)
            elif r < 0.3:
                e |= random.choice([0x1FE, 0x3F00000000000000])
                what.append("reserved bits in L2[%d]" % i)
            elif r < 0.4:
                e = 1 << 63
                what.append("L2[%d] = COPIED, offset 0" % i)
            elif r < 0.6:
                e = (1 << 63) | random.randrange(1, nclusters) * cs
                e |= random.choice([0, 1])
                what.append("L2[%d] -> cluster 0x%x" % (i, e))
            elif r < 0.7:
                e = (1 << 63) | random.randrange(1, len(d) // 512) * 512
                what.append("L2[%d] -> maybe unaligned 0x%x" % (i, e))
            elif r < 0.8 and ext:
                struct.pack_into(">Q", d, p + 8, random.getrandbits(64))
                what.append("random subcluster bitmap in L2[%d]" % i)
            elif r < 0.9:
                x = 62 - (cb - 8)
                e = (1 << 62) | (random.randrange(3) << x)
                e |= random.randrange(len(d) + 1000)
                what.append("L2[%d] compressed 0x%x" % (i, e))
            else:
                e = 0
                what.append("L2[%d] = 0" % i)
            struct.pack_into(">Q", d, p, e)
    open("top.qcow2", "wb").write(d)
    desc = "case %d (%s; %s)" % (case, opts, ", ".join(what) or "unmodified")

    q = run(["qemu-img", "convert", "-O", "raw", "top.qcow2", "ref.raw"])
    run(["rm", "-f", "our.raw"])
    o = run([tool, "export", "top.qcow2", "our.raw"])
    if q.returncode or o.returncode:
        err = o.stderr.decode(errors="replace").strip()
        good = (q.returncode != 0 and o.returncode == 1 and
                len(err.split("\n")) == 1 and err.startswith("qcow2pbs: "))
        report(good, "%s: both refuse: qemu rc %d, ours rc %d %s" %
               (desc, q.returncode, o.returncode, err))
        continue
    same = open("ref.raw", "rb").read() == open("our.raw", "rb").read()
    report(same, "%s: export equals qemu-img convert" % desc)
    qm = run(["qemu-img", "map", "--output=json", "top.qcow2"])
    om = run([tool, "map", "--output-format", "json", "top.qcow2"])
    if qm.returncode or om.returncode:
        report(qm.returncode and om.returncode,
               "%s: map: qemu rc %d, ours rc %d" %
               (desc, qm.returncode, om.returncode))
        continue
    diff = map_diff(json.loads(om.stdout), json.loads(qm.stdout))
    report(diff is None, "%s: map agrees with qemu-img map%s" %
           (desc, "" if diff is None else ": " + diff))

print("# %d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
EOF
