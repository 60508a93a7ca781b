#!/usr/bin/env python3
"""pbs_testdata.py -- an independent encoder/decoder for the server tests.

Builds PBS DataBlobs, digests, index checksums and manifests from the rules
in docs/pbs-protocol.md (sections 5.2, 5.6, 5.8) with python's hashlib,
zlib and struct only (zstd frames are decoded with the zstd CLI), so the
tests never check the server with the project's own encoder.

  data SEED SIZE OUT          SIZE pseudo-random bytes (SEED "zero": zeros)
  blob IN OUT [bad-crc]       plain DataBlob of IN; prints DIGEST SIZE ENCSIZE
  digest IN                   sha256 hex of IN
  csum HEX...                 index csum: sha256 over the digests
  append WID HEX:OFF...       JSON body of PUT fixed_index
  manifest TYPE ID TIME OUT NAME:CRYPT:SIZE:CSUM...   manifest as plain blob
  fidx FILE                   "SIZE CHUNKSIZE COUNT CSUM" then one digest a line
  blob-check FILE DIGEST      decode a stored blob (CRC, zstd) and check sha256
  set-verify BLOB STATE       rewrite a manifest blob with verify_state STATE
"""
import hashlib
import json
import random
import struct
import subprocess
import sys
import zlib

MAGIC_PLAIN = bytes.fromhex("42ab3807be8370a1")
MAGIC_ZSTD = bytes.fromhex("31b958426fb6a37f")
MAGIC_FIDX = bytes.fromhex("2f7f41ed91fd0fcd")


def plain_blob(data, bad_crc=False):
    crc = zlib.crc32(data) & 0xFFFFFFFF
    if bad_crc:
        crc ^= 1
    return MAGIC_PLAIN + struct.pack("<I", crc) + data


def decode_blob(raw):
    magic, crc = raw[:8], struct.unpack("<I", raw[8:12])[0]
    payload = raw[12:]
    if zlib.crc32(payload) & 0xFFFFFFFF != crc:
        raise SystemExit("blob: wrong CRC")
    if magic == MAGIC_PLAIN:
        return payload
    if magic == MAGIC_ZSTD:
        return subprocess.run(["zstd", "-d", "-q", "-c"], input=payload,
                              stdout=subprocess.PIPE, check=True).stdout
    raise SystemExit("blob: unknown magic %s" % magic.hex())


def main(argv):
    cmd = argv[1]
    if cmd == "data":
        seed, size, out = argv[2], int(argv[3]), argv[4]
        if seed == "zero":
            data = bytes(size)
        else:
            data = random.Random(seed).randbytes(size)
        open(out, "wb").write(data)
    elif cmd == "blob":
        data = open(argv[2], "rb").read()
        blob = plain_blob(data, len(argv) > 4 and argv[4] == "bad-crc")
        open(argv[3], "wb").write(blob)
        print(hashlib.sha256(data).hexdigest(), len(data), len(blob))
    elif cmd == "digest":
        print(hashlib.sha256(open(argv[2], "rb").read()).hexdigest())
    elif cmd == "csum":
        print(hashlib.sha256(b"".join(bytes.fromhex(h)
                                      for h in argv[2:])).hexdigest())
    elif cmd == "append":
        pairs = [a.split(":") for a in argv[3:]]
        print(json.dumps({"wid": int(argv[2]),
                          "digest-list": [p[0] for p in pairs],
                          "offset-list": [int(p[1]) for p in pairs]},
                         separators=(",", ":")))
    elif cmd == "manifest":
        typ, bid, t, out = argv[2], argv[3], int(argv[4]), argv[5]
        files = []
        for spec in argv[6:]:
            name, crypt, size, csum = spec.split(":")
            files.append({"filename": name, "crypt-mode": crypt,
                          "size": int(size), "csum": csum})
        m = {"backup-type": typ, "backup-id": bid, "backup-time": t,
             "files": files, "unprotected": {}, "signature": None}
        blob = plain_blob(json.dumps(m, indent=2).encode())
        open(out, "wb").write(blob)
        print(len(blob), hashlib.sha256(blob).hexdigest())
    elif cmd == "fidx":
        raw = open(argv[2], "rb").read()
        if raw[:8] != MAGIC_FIDX:
            raise SystemExit("fidx: bad magic")
        size, cs = struct.unpack("<QQ", raw[64:80])
        count = (size + cs - 1) // cs
        if len(raw) != 4096 + 32 * count:
            raise SystemExit("fidx: bad length")
        digests = [raw[4096 + 32 * i:4096 + 32 * (i + 1)].hex()
                   for i in range(count)]
        csum = hashlib.sha256(b"".join(bytes.fromhex(d)
                                       for d in digests)).hexdigest()
        print(size, cs, count, csum)
        for d in digests:
            print(d)
    elif cmd == "blob-check":
        data = decode_blob(open(argv[2], "rb").read())
        if hashlib.sha256(data).hexdigest() != argv[3]:
            raise SystemExit("blob-check: digest mismatch")
        print(len(data))
    elif cmd == "set-verify":
        path, state = argv[2], argv[3]
        m = json.loads(decode_blob(open(path, "rb").read()))
        upid = ("UPID:pbs:0000162E:0000C8D7:00000002:65F1A2B3:verify:"
                "store1\\x3avm-100:root@pam:")
        m.setdefault("unprotected", {})["verify_state"] = {
            "state": state, "upid": upid}
        open(path, "wb").write(plain_blob(json.dumps(m, indent=2).encode()))
    else:
        raise SystemExit("unknown command " + cmd)


if __name__ == "__main__":
    main(sys.argv)
