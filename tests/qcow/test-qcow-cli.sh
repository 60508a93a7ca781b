#!/bin/bash
# test-qcow-cli.sh -- the command-line contract of info, map, export and
# bitmap: --help (exit 0), usage errors (exit 2), export's output file
# (sparse, atomic: a temporary renamed at the end, removed on error and on
# SIGINT/SIGTERM, an existing file untouched on failure, usual mode).
. "$(dirname "$0")/../helpers/functions.sh"
. "$(dirname "$0")/../helpers/qcow-lib.sh"

for c in info map export bitmap; do
  rc=0; "$TOOL" $c --help >"$TMP/help" 2>&1 || rc=$?
  check "$c --help exits 0" [ $rc = 0 ]
  check "$c --help prints usage" grep -q "^Usage: qcow2pbs $c" "$TMP/help"
  for bad in "" "--no-such-option" "--output-format xml x.qcow2" "a b c d"; do
    [ "$c" = export ] && [ "$bad" = "--output-format xml x.qcow2" ] && continue
    rc=0; "$TOOL" $c $bad >/dev/null 2>"$TMP/err" || rc=$?
    check "$c '$bad': usage error, exit 2" [ $rc = 2 ]
  done
done

d=$TMP/img
mkdir "$d"
mk "$d/a.qcow2" 64M
io "$d/a.qcow2" 'write -P 0 0 32M' 'write -P 0x11 40M 1M' 'write -z 48M 1M'
qemu-img convert -O raw "$d/a.qcow2" "$TMP/ref.raw"

# Sparse: zero data clusters, zero flags and unallocated ranges are holes.
o=$TMP/out
mkdir "$o"
(umask 022 && "$TOOL" export "$d/a.qcow2" "$o/a.raw")
same_bytes "$TMP/ref.raw" "$o/a.raw" "export content"
alloc=$(( $(stat -c %b "$o/a.raw") * $(stat -c %B "$o/a.raw") ))
check "export is sparse ($alloc bytes allocated of 64 MiB)" [ "$alloc" -le $((2 << 20)) ]
check "export has the full size" [ "$(stat -c %s "$o/a.raw")" = 67108864 ]
# A disk is private until its owner says otherwise (issue 11).
check "export mode 0600 under umask 022" [ "$(stat -c %a "$o/a.raw")" = 600 ]
check "only the output file in its directory" [ "$(ls -A "$o")" = a.raw ]

# A failing export leaves an existing file as it was, and no temporary.
echo "previous contents" >"$o/keep.raw"
variant=$TMP/bad.qcow2
cp "$d/a.qcow2" "$variant"
io "$variant" 'write -c -P 0x22 60M 64k'
read -r cpos cval <<<"$(python3 "$QT" l2 "$variant" $((60 << 20)))"
python3 "$QT" patch "$variant" "$cpos" Q $(( (cval & ~((1 << 54) - 1)) | 0x40000005 ))
expect_fail "export of a damaged image over an existing file" \
  "$TOOL" export --force "$variant" "$o/keep.raw"
check "existing file unchanged" grep -qx "previous contents" "$o/keep.raw"
check "no temporary left" [ "$(ls -A "$o" | sort | tr '\n' ' ')" = "a.raw keep.raw " ]
expect_fail "export into a missing directory" "$TOOL" export "$d/a.qcow2" "$TMP/nodir/x.raw"
expect_fail "export to a directory name" "$TOOL" export "$d/a.qcow2" "$o/"
mkdir "$o/sub"
expect_fail "export to an existing directory" "$TOOL" export "$d/a.qcow2" "$o/sub"
rmdir "$o/sub"
rm -f "$o"/*
cp "$d/a.qcow2" "$o/self.qcow2"
expect_fail "export over its own input image" "$TOOL" export "$o/self.qcow2" "$o/self.qcow2"
check "input image intact" qemu-img compare -q "$o/self.qcow2" "$d/a.qcow2"
check "no temporary left" [ "$(ls -A "$o")" = self.qcow2 ]
rm -f "$o"/*

# SIGTERM / SIGINT while exporting: the temporary goes away.  A watcher
# (inotify) sends the signal the moment the temporary appears.
mk "$d/big.qcow2" 1G
io "$d/big.qcow2" 'write -P 0x33 0 96M'
for sig in TERM INT; do
  python3 - "$TOOL" "$d/big.qcow2" "$o" "$sig" <<'PY' >"$TMP/sig" 2>&1
import ctypes, os, signal, struct, subprocess, sys
tool, img, outdir, sig = sys.argv[1:]
libc = ctypes.CDLL(None, use_errno=True)
fd = libc.inotify_init1(os.O_CLOEXEC)
IN_CREATE = 0x100
if fd < 0 or libc.inotify_add_watch(fd, outdir.encode(), IN_CREATE) < 0:
    print("inotify unavailable"); sys.exit(77)
p = subprocess.Popen([tool, "export", img, os.path.join(outdir, "big.raw")],
                     start_new_session=True)
buf = os.read(fd, 4096)   # blocks until the temporary is created
p.send_signal(getattr(signal, "SIG" + sig))
rc = p.wait()
name = buf[16:].split(b"\0", 1)[0].decode()
print("temp %s, exit %d" % (name, rc))
# As push does: one "interrupted" line and exit 128 + the signal.
sys.exit(0 if rc == 128 + getattr(signal, "SIG" + sig) and name.startswith(".big.raw.") else 1)
PY
  rc=$?
  check "SIG$sig during export: exit 128+SIG ($(tr '\n' ' ' <"$TMP/sig"))" [ $rc = 0 ]
  check "SIG$sig during export: nothing left" [ -z "$(ls -A "$o")" ]
done

# info/map/bitmap keep stdout empty on errors.
rc=0; "$TOOL" map --output-format json "$TMP/nonexistent.qcow2" >"$TMP/stdout" 2>/dev/null || rc=$?
check "map error: exit 1, empty stdout" [ $rc = 1 ] && [ ! -s "$TMP/stdout" ]
rc=0; "$TOOL" bitmap --output-format json "$d/a.qcow2" nosuch >"$TMP/stdout" 2>/dev/null || rc=$?
check "bitmap error: exit 1, empty stdout" [ $rc = 1 ] && [ ! -s "$TMP/stdout" ]
# map windows: --start-offset/--max-length agree with qemu-img's
"$TOOL" map --output-format json --start-offset 41943040 --max-length 8388608 "$d/a.qcow2" >"$TMP/o.json"
qemu-img map --output=json --start-offset 41943040 --max-length 8388608 "$d/a.qcow2" >"$TMP/q.json"
python3 - "$TMP/o.json" "$TMP/q.json" <<'PY' && pass "map window = qemu-img map window" || fail "map window differs"
import json, sys
o = json.load(open(sys.argv[1])); q = json.load(open(sys.argv[2]))
k = lambda l: [(e["start"], e["length"], e["depth"], e["present"], e["data"]) for e in l]
sys.exit(0 if k(o) == k(q) else 1)
PY

done_testing
