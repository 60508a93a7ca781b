#!/usr/bin/env python3
"""qcowtest.py -- oracle-side helpers for the qcow2 tests (stdlib only).

Nothing here uses qcow2pbs or qcowlib: maps come from qemu-img, images are
patched at offsets taken from the qcow2 spec (docs/qcow2.md
§1.1, §2.2, §2.4).

  qcowtest.py mapcmp OURS.json QEMU.json
      Compare `qcow2pbs map --output-format json` with `qemu-img map
      --output=json` byte range by byte range: depth, present and data must
      agree everywhere; zero only where qemu says data=false (qemu-img
      reports host-file holes inside data clusters as zero=true).  Both
      must cover the same range.  Exit 0 = agree, 1 = differ (first
      differences on stdout).

  qcowtest.py bitmapcmp OURS.json NBD.json
      OURS: `qcow2pbs bitmap --output-format json` ([{start, length}]);
      NBD: `qemu-img map --output=json` of a qemu-nbd export with
      x-dirty-bitmap, where dirty ranges are the ones with "data": false.
      Exit 0 when the dirty byte sets are equal.

  qcowtest.py infocmp OURS.json QEMU.json
      OURS: `qcow2pbs info --output-format json`; QEMU: `qemu-img info
      --backing-chain --output=json` of the same image.  Layer by layer
      (top first): format, virtual size, cluster size, compat, compression
      type, extended L2, backing name and format, data file, bitmaps
      (name, granularity, in-use/auto flags).

  qcowtest.py patch FILE OFFSET FMT VALUE
      struct.pack_into(">"+FMT, file, OFFSET, VALUE): FMT is B, H, I or Q;
      OFFSET and VALUE accept 0x.. hex; VALUE is taken modulo 2^bits, so
      negative numbers from bash's signed arithmetic work.

  qcowtest.py dropext FILE TYPE
      Turn the header extension of TYPE (e.g. 0xe2792aca, the backing
      format) into an unknown one (type 0x0badcafe), which readers skip:
      the way to make an image without a stored backing format, since
      qemu-img no longer writes those.

  qcowtest.py header FILE
      Print the header fields as NAME=VALUE lines (shell-eval-able).

  qcowtest.py l2 FILE GUEST_OFFSET
      Print "ENTRY_FILE_OFFSET ENTRY_VALUE" of the L2 entry that maps
      GUEST_OFFSET (first 64-bit word for extended L2); the value as a
      signed 64-bit number, for bash arithmetic.
"""

import json
import struct
import sys


def load(path):
    with open(path) as f:
        return json.load(f)


def boundaries(*lists):
    b = set()
    for lst in lists:
        for e in lst:
            b.add(e["start"])
            b.add(e["start"] + e["length"])
    return sorted(b)


def lookup(lst, off):
    """The entry of a sorted extent list that contains OFF (bisect)."""
    lo, hi = 0, len(lst)
    while lo < hi:
        mid = (lo + hi) // 2
        e = lst[mid]
        if off < e["start"]:
            hi = mid
        elif off >= e["start"] + e["length"]:
            lo = mid + 1
        else:
            return e
    return None


def check_cover(name, lst):
    pos = 0
    for e in lst:
        if e["start"] != pos:
            return "%s: gap or overlap at %d (next extent starts at %d)" % (
                name, pos, e["start"])
        if e["length"] <= 0:
            return "%s: empty extent at %d" % (name, pos)
        pos += e["length"]
    return None


def mapcmp(ours_path, qemu_path):
    ours = sorted(load(ours_path), key=lambda e: e["start"])
    qemu = sorted(load(qemu_path), key=lambda e: e["start"])
    errs = [m for m in (check_cover("ours", ours), check_cover("qemu", qemu))
            if m]
    end_o = ours[-1]["start"] + ours[-1]["length"] if ours else 0
    end_q = qemu[-1]["start"] + qemu[-1]["length"] if qemu else 0
    if end_o != end_q:
        errs.append("ours covers %d bytes, qemu %d" % (end_o, end_q))
    # Adjacent ours entries must differ in some attribute (merged).
    for a, b in zip(ours, ours[1:]):
        if all(a[k] == b[k] for k in ("depth", "present", "zero", "data",
                                      "compressed")):
            errs.append("ours: unmerged neighbours at %d" % b["start"])
            break
    bs = boundaries(ours, qemu)
    for lo, hi in zip(bs, bs[1:]):
        o, q = lookup(ours, lo), lookup(qemu, lo)
        if o is None or q is None:
            continue
        diffs = [k for k in ("depth", "present", "data") if o[k] != q[k]]
        if not q["data"] and o["zero"] != q["zero"]:
            diffs.append("zero")
        if diffs:
            errs.append("[%d, %d): %s: ours %s, qemu %s" % (
                lo, hi, ",".join(diffs),
                {k: o[k] for k in diffs}, {k: q[k] for k in diffs}))
        if len(errs) >= 10:
            break
    for e in errs:
        print(e)
    return 1 if errs else 0


def ranges_to_set(ranges):
    """Merge [start, length) pairs into sorted disjoint (lo, hi)."""
    out = []
    for lo, ln in sorted(ranges):
        hi = lo + ln
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def bitmapcmp(ours_path, nbd_path):
    ours = ranges_to_set((e["start"], e["length"]) for e in load(ours_path))
    dirty = ranges_to_set((e["start"], e["length"]) for e in load(nbd_path)
                          if not e["data"])
    if ours == dirty:
        return 0
    print("ours:", ours[:20])
    print("qemu:", dirty[:20])
    return 1


def infocmp(ours_path, qemu_path):
    ours = load(ours_path)["layers"]
    qemu = load(qemu_path)
    errs = []
    if len(ours) != len(qemu):
        errs.append("ours has %d layers, qemu %d" % (len(ours), len(qemu)))
    for o, q in zip(ours, qemu):
        spec = q.get("format-specific", {}).get("data", {})
        want = {
            "format": q["format"],
            "virtual_size": q["virtual-size"],
            "cluster_size": q.get("cluster-size"),
            "compat": spec.get("compat"),
            "compression_type": spec.get("compression-type"),
            "extended_l2": spec.get("extended-l2", False),
            "backing_name": q.get("backing-filename"),
            "backing_format": q.get("backing-filename-format"),
            "data_file": spec.get("data-file"),
            "bitmaps": sorted(
                (b["name"], b["granularity"], "in-use" in b["flags"],
                 "auto" in b["flags"]) for b in spec.get("bitmaps", [])),
        }
        got = dict((k, o.get(k)) for k in want)
        got["extended_l2"] = bool(got["extended_l2"])
        got["bitmaps"] = sorted((b["name"], b["granularity"], b["in_use"],
                                 b["auto"]) for b in o.get("bitmaps", []))
        for k in want:
            if want[k] != got[k]:
                errs.append("layer %s: %s: ours %r, qemu %r"
                            % (o.get("depth"), k, got[k], want[k]))
    for e in errs:
        print(e)
    return 1 if errs else 0


def num(s):
    return int(s, 0)


def patch(path, off, fmt, value):
    size = struct.calcsize(">" + fmt)
    with open(path, "r+b") as f:
        f.seek(off)
        buf = bytearray(f.read(size).ljust(size, b"\0"))
        # bash arithmetic is signed 64-bit: take values modulo 2^bits
        struct.pack_into(">" + fmt, buf, 0, value & ((1 << 8 * size) - 1))
        f.seek(off)
        f.write(buf)
    return 0


HEADER = [  # docs/qcow2.md §1.1
    ("magic", 0, "I"), ("version", 4, "I"), ("backing_file_offset", 8, "Q"),
    ("backing_file_size", 16, "I"), ("cluster_bits", 20, "I"),
    ("size", 24, "Q"), ("crypt_method", 32, "I"), ("l1_size", 36, "I"),
    ("l1_table_offset", 40, "Q"), ("refcount_table_offset", 48, "Q"),
    ("refcount_table_clusters", 56, "I"), ("nb_snapshots", 60, "I"),
    ("snapshots_offset", 64, "Q"), ("incompatible_features", 72, "Q"),
    ("compatible_features", 80, "Q"), ("autoclear_features", 88, "Q"),
    ("refcount_order", 96, "I"), ("header_length", 100, "I"),
]


def read_header(path):
    with open(path, "rb") as f:
        buf = f.read(112)
    h = {}
    for name, off, fmt in HEADER:
        if off + struct.calcsize(">" + fmt) <= len(buf):
            h[name] = struct.unpack_from(">" + fmt, buf, off)[0]
    if h.get("version") == 2:
        for k in ("incompatible_features", "compatible_features",
                  "autoclear_features"):
            h[k] = 0
    return h


def header(path):
    for k, v in read_header(path).items():
        print("%s=%d" % (k, v))
    return 0


def dropext(path, ext_type):
    h = read_header(path)
    off = h.get("header_length", 72) if h["version"] >= 3 else 72
    end = h["backing_file_offset"] or (1 << h["cluster_bits"])
    with open(path, "r+b") as f:
        while off + 8 <= end:
            f.seek(off)
            t, ln = struct.unpack(">II", f.read(8))
            if t == 0:
                break
            if t == ext_type:
                f.seek(off)
                f.write(struct.pack(">I", 0x0badcafe))
                return 0
            off += 8 + ((ln + 7) & ~7)
    print("no extension 0x%x" % ext_type, file=sys.stderr)
    return 1


def l2(path, guest):
    h = read_header(path)
    cb = h["cluster_bits"]
    ext = bool(h.get("incompatible_features", 0) & (1 << 4))
    entry_size = 16 if ext else 8
    l2_entries = (1 << cb) // entry_size
    cluster = guest >> cb
    l1_index, l2_index = divmod(cluster, l2_entries)
    with open(path, "rb") as f:
        f.seek(h["l1_table_offset"] + 8 * l1_index)
        l1e = struct.unpack(">Q", f.read(8))[0]
        l2_off = l1e & 0x00fffffffffffe00
        if not l2_off:
            print("no L2 table for guest offset %d" % guest, file=sys.stderr)
            return 1
        pos = l2_off + entry_size * l2_index
        f.seek(pos)
        # signed, so that bash arithmetic can use it
        print("%d %d" % (pos, struct.unpack(">q", f.read(8))[0]))
    return 0


def main(argv):
    if len(argv) == 3 and argv[0] == "mapcmp":
        return mapcmp(argv[1], argv[2])
    if len(argv) == 3 and argv[0] == "infocmp":
        return infocmp(argv[1], argv[2])
    if len(argv) == 3 and argv[0] == "bitmapcmp":
        return bitmapcmp(argv[1], argv[2])
    if len(argv) == 5 and argv[0] == "patch":
        return patch(argv[1], num(argv[2]), argv[3], num(argv[4]))
    if len(argv) == 3 and argv[0] == "dropext":
        return dropext(argv[1], num(argv[2]))
    if len(argv) == 2 and argv[0] == "header":
        return header(argv[1])
    if len(argv) == 3 and argv[0] == "l2":
        return l2(argv[1], num(argv[2]))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
