#!/usr/bin/env python3
"""pve_rules.py -- Proxmox VE's own rules for a PBS VM snapshot, as the
tests check them, independent of qcow2pbs's code.

Quoted from qemu-server 9.2 (src/PVE/QemuServer.pm):
  restore_proxmox_backup_archive:
    if ($info->{filename} =~ m/^(drive-\\S+).img.fidx$/) { ... size ... }
    die "backup does not look like a qemu-server backup (missing
         'qemu-server.conf' file)" unless qemu-server.conf.blob is listed
  parse_backup_hints (reads the config line by line, "\\n" kept):
    if ($line =~ m/^\\#qmdump\\#map:(\\S+):(\\S+):(\\S*):(\\S*):$/) {
        die "archive does not contain data for drive '$virtdev'"
            if !$devinfo->{$devname};
  restore_update_config_line:
    } elsif ($line =~ m/^((ide|scsi|virtio|sata|efidisk|tpmstate)\\d+):\\s*(\\S+)\\s*$/) {
and pve-storage 9 (src/PVE/Storage/PBSPlugin.pm) list_volumes:
    next if !($btype eq 'vm' || $btype eq 'ct');
    next if $bid !~ m/^\\d+$/;
Python's re and Perl agree on these patterns: `$` matches at the end or
before a final newline, \\S excludes \\r.

  check-config CONF ARCHIVE=SIZE...   the rules above; each drive's size=
                                      (parse_size) is the disk's size
  blob FILE [KEYFILE]                 decode a DataBlob (CRC, zstd CLI,
                                      AES-256-GCM with a kdf-none key)
  manifest-file MANIFEST_BLOB NAME BLOBFILE   the manifest lists NAME with
                                      BLOBFILE's size and sha256
"""
import base64
import hashlib
import json
import re
import struct
import subprocess
import sys
import zlib

MAP_RE = re.compile(r"^\#qmdump\#map:(\S+):(\S+):(\S*):(\S*):$")
DRIVE_RE = re.compile(r"^((ide|scsi|virtio|sata|efidisk|tpmstate)\d+):\s*(\S+)\s*$")
MAGIC = {
    "42ab3807be8370a1": ("plain", False),
    "31b958426fb6a37f": ("zstd", False),
    "7b6785be222d4cf0": ("plain", True),
    "e6591bbf0bbfd80b": ("zstd", True),
}


def parse_size(value):
    """PVE::JSONSchema::parse_size (pve-common): 'disk-size' values."""
    m = re.match(r"^(\d+(?:\.\d+)?)\s*([KMGT])?$", value)
    if not m:
        sys.exit("size=%s is not a disk size" % value)
    n = float(m.group(1))
    return int(n * 1024 ** (" KMGT".index(m.group(2) or " ")))


def lines_as_perl_reads(text):
    """<$fh>: lines with their "\\n" (a CR stays in the line)."""
    parts = text.split("\n")
    out = [p + "\n" for p in parts[:-1]]
    if parts[-1]:
        out.append(parts[-1])
    return out


def check_config(path, pairs):
    text = open(path, "rb").read().decode("utf-8")
    devinfo = {}
    for p in pairs:
        archive, size = p.rsplit("=", 1)
        m = re.match(r"^(drive-\S+).img.fidx$", archive)
        if not m:
            sys.exit("archive %s is not restored by Proxmox VE" % archive)
        devinfo[m.group(1)] = int(size)
    mapped = {}
    for line in lines_as_perl_reads(text):
        if line.startswith("#qmdump#") and not MAP_RE.match(line):
            sys.exit("map line skipped by Proxmox VE: %r" % line)
        m = MAP_RE.match(line)
        if m:
            virtdev, devname = m.group(1), m.group(2)
            if devname not in devinfo:
                sys.exit("archive does not contain data for drive '%s'" % virtdev)
            if devname in mapped.values():
                sys.exit("two map lines for %s" % devname)
            mapped[virtdev] = devname
    for devname in devinfo:
        if devname not in mapped.values():
            sys.exit("%s has no map line: Proxmox VE would not restore it" % devname)
    for virtdev, devname in mapped.items():
        if devname != "drive-" + virtdev:
            sys.exit("map %s -> %s: live-restore derives the key from the name"
                     % (virtdev, devname))
        drives = [DRIVE_RE.match(l) for l in lines_as_perl_reads(text)]
        drives = [d for d in drives if d and d.group(1) == virtdev]
        if len(drives) != 1:
            sys.exit("%d drive lines for %s" % (len(drives), virtdev))
        sizes = [o[5:] for o in drives[0].group(3).split(",")
                 if o.startswith("size=")]
        if len(sizes) != 1 or parse_size(sizes[0]) != devinfo[devname]:
            sys.exit("drive %s: size=%s, the disk has %d bytes"
                     % (virtdev, sizes, devinfo[devname]))
    if "\r" in text or not text.endswith("\n"):
        sys.exit("CR in the config, or no final newline")
    print("ok")


def decode_blob(raw, keyfile=None):
    magic, crc = raw[:8].hex(), struct.unpack("<I", raw[8:12])[0]
    kind, encrypted = MAGIC[magic]
    body = raw[44:] if encrypted else raw[12:]
    if zlib.crc32(body) & 0xFFFFFFFF != crc:
        sys.exit("blob: wrong CRC")
    if encrypted:
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
        if not keyfile:
            sys.exit("blob: encrypted")
        key = base64.b64decode(json.load(open(keyfile))["data"])
        iv, tag = raw[12:28], raw[28:44]
        d = Cipher(algorithms.AES(key), modes.GCM(iv, tag)).decryptor()
        body = d.update(body) + d.finalize()
    if kind == "zstd":
        body = subprocess.run(["zstd", "-d", "-q", "-c"], input=body,
                              stdout=subprocess.PIPE, check=True).stdout
    return body


def main(argv):
    if argv[1] == "check-config":
        check_config(argv[2], argv[3:])
    elif argv[1] == "blob":
        sys.stdout.buffer.write(decode_blob(open(argv[2], "rb").read(),
                                            argv[3] if len(argv) > 3 else None))
    elif argv[1] == "manifest-file":
        m = json.loads(decode_blob(open(argv[2], "rb").read()))
        raw = open(argv[4], "rb").read()
        f = [f for f in m["files"] if f["filename"] == argv[3]]
        if len(f) != 1:
            sys.exit("%s not listed once" % argv[3])
        if f[0]["size"] != len(raw) or f[0]["csum"] != hashlib.sha256(raw).hexdigest():
            sys.exit("size/csum differ: %s" % f[0])
        print(f[0]["crypt-mode"])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
