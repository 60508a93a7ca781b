#!/bin/bash
# test-cli-errors.sh -- the helpers' errors as the user sees them, now that
# they return a struct cli_err and only cmd_* prints (issue 12): the exact
# line and the exit status of each class -- a usage line (exit 2), a bad
# option value named by the option (plain line, exit 2), bad input (exit
# 1) -- in text and JSON, and the warnings and notes that stay printed.
# Most of these lines had no test before; each is the text the tool gave
# before the change.
. "$(dirname "$0")/../helpers/functions.sh"
requires qemu-img
cd "$TMP"

# expect RC 'STDERR' CMD...: exit status RC and exactly this stderr.
# expect_env RC 'STDERR' ENV_ARG... -- CMD...: the same under env ENV_ARG...
pre=()
expect () {
  local rc=$1 want=$2 got=0; shift 2
  ${pre[@]+"${pre[@]}"} "$TOOL" "$@" >out.txt 2>err.txt </dev/null || got=$?
  if [ "$got" = "$rc" ] && [ "$(cat err.txt)" = "$want" ]; then
    pass "$* -> $rc"
  else
    fail "$* -> exit $got, not $rc: $(head -c 400 err.txt)"
  fi
}
expect_env () {
  local rc=$1 want=$2; shift 2
  pre=(env)
  while [ "$1" != -- ]; do pre+=("$1"); shift; done
  shift
  expect "$rc" "$want" "$@"
  pre=()
}

for f in a b FULL-1000-disk INC-1001-disk INC-1002-disk INC-1003-other; do
  qemu-img create -q -f qcow2 "$f.qcow2" 1M
done
mkdir skip adir vms vms/vm1 vms/vm2 "bad name"
for f in FULL-1000 INC-1001 INC-1002; do
  qemu-img create -q -f qcow2 "skip/$f-disk.qcow2" 1M
done
for d in vms/vm1 vms/vm2 "bad name"; do cp FULL-1000-disk.qcow2 "$d/"; done
printf 'notes\0x' >nul.notes
printf 'scsi0: local:vm-100-disk-0,size=1M\n[snap1]\nmemory: 256\n' >snap.conf
tar cf plain.tar a.qcow2
gzip -c plain.tar >comp.tar.gz
R="--repository $DS_TMP/ds"
PBS_ENCRYPTION_PASSWORD=password "$TOOL" key create --kdf scrypt pw.key
try="; try 'qcow2pbs push --help'"

# --chain and the image options: a plain line naming the option, exit 2.
expect 2 "qcow2pbs: --chain: given more than once" \
  info --chain a.qcow2 --chain b.qcow2
expect 2 "qcow2pbs: --chain: empty image name in ',a.qcow2'" \
  info --chain ,a.qcow2
expect 2 "qcow2pbs: --allow-backing-dir: empty directory name" \
  info --allow-backing-dir '' a.qcow2
expect 2 "qcow2pbs: --chain: empty image name in 'x,'" \
  push $R --backup-id 100 --disk 'd=x,'
expect 2 '{"error":"--chain: given more than once","context":"--chain"}' \
  info --output-format json --chain a.qcow2 --chain b.qcow2
# Usage lines, exit 2.
expect 2 "qcow2pbs info: IMAGE b.qcow2 is not the top of --chain (a.qcow2): give IMAGE alone, or --chain ending with it; try 'qcow2pbs info --help'" \
  info --chain a.qcow2 b.qcow2
expect 2 '{"error":"info: IMAGE b.qcow2 is not the top of --chain (a.qcow2): give IMAGE alone, or --chain ending with it; try '"'qcow2pbs info --help'"'","context":"info","usage":true}' \
  info --output-format json --chain a.qcow2 b.qcow2
expect 2 "qcow2pbs map: bad number 'x'; try 'qcow2pbs map --help'" \
  map --start-offset x a.qcow2
expect 2 "qcow2pbs bitmap: bad layer number 'x'; try 'qcow2pbs bitmap --help'" \
  bitmap --layer x a.qcow2 b0
expect 2 "qcow2pbs push: --disk takes NAME=L0,L1,... (oldest layer first), not 'nodisk'$try" \
  push $R --backup-id 100 --disk nodisk
expect 2 "qcow2pbs push: invalid archive name in --disk 'bad name=a.qcow2'$try" \
  push $R --backup-id 100 --disk 'bad name=a.qcow2'
expect 2 "qcow2pbs push: invalid --backup-time '0': the earliest is 1$try" \
  push $R --backup-id 100 --backup-time 0 a.qcow2
expect 2 "qcow2pbs push: unknown option '--bogus'$try" \
  push $R --backup-id 100 --bogus a.qcow2
expect 2 "qcow2pbs push: invalid --pve-memory '5' (16 to 4194304)$try" \
  push $R --backup-id 100 --pve-memory 5 a.qcow2
expect 2 "qcow2pbs push: --pve-disk-format takes NAME=FORMAT with FORMAT raw, qcow2 or vmdk, not 'x=ext4'$try" \
  push $R --backup-id 100 --pve-disk-format x=ext4 a.qcow2
expect 2 "qcow2pbs push: give --notes or --notes-file, not both$try" \
  push $R --backup-id 100 --notes x --notes-file y a.qcow2
expect 2 "qcow2pbs push: backup id 'abc' is not numeric: Proxmox VE lists only vm groups named by a VMID, e.g. --backup-id 100$try" \
  push $R --backup-id abc --pve-config auto a.qcow2
expect 2 "qcow2pbs push: IMAGE b.qcow2 is not the top of --chain (a.qcow2): give IMAGE alone, or --chain ending with it$try" \
  push $R --backup-id 100 --chain a.qcow2 b.qcow2
expect 2 "qcow2pbs push: invalid --pve-memory '5' (16 to 4194304)$try" \
  import $R --pve-memory 5 adir
# Bad input, exit 1.
expect 1 "qcow2pbs: nonexist.qcow2: No such file or directory" \
  push $R --backup-id 100 --chain a.qcow2 nonexist.qcow2
expect 1 "qcow2pbs: FULL-1000-disk.qcow2: a qmpbackup full backup, but --chain gives INC-1001-disk.qcow2 below it: its empty areas would show that older data; start --chain with it" \
  info --chain INC-1001-disk.qcow2,FULL-1000-disk.qcow2
expect 1 "qcow2pbs: INC-1003-other.qcow2: a qmpbackup backup of disk other.qcow2, but --chain gives FULL-1000-disk.qcow2 (a backup of disk.qcow2) before it: give the layers of one disk" \
  info --chain FULL-1000-disk.qcow2,INC-1003-other.qcow2
expect 1 "qcow2pbs: skip/INC-1002-disk.qcow2: --chain skips INC-1001-disk.qcow2 (same folder, made after skip/FULL-1000-disk.qcow2 and before this file): an incremental holds only the changes since the backup before it; give every layer, oldest first" \
  info --chain skip/FULL-1000-disk.qcow2,skip/INC-1002-disk.qcow2
expect 1 "qcow2pbs: bad name=a.qcow2: invalid archive name" \
  push $R --backup-id 100 'bad name=a.qcow2'
expect 1 "qcow2pbs: x=: no image given" push $R --backup-id 100 'x='
expect 1 "qcow2pbs: comp.tar.gz: --from-archive reads an uncompressed tar in place, this one is compressed: unpack it (or use qcow2pbs import, which does)" \
  push $R --backup-id 100 --from-archive comp.tar.gz --disk x=a.qcow2
expect 1 "qcow2pbs: plain.tar: has no file member 'b.qcow2' (give member paths as tar -tf lists them)" \
  push $R --backup-id 100 --from-archive plain.tar --disk x=b.qcow2
expect 1 "qcow2pbs: nonexist: cannot open: No such file or directory" \
  push $R --backup-id 100 --notes-file nonexist a.qcow2
expect 1 "qcow2pbs: adir: not a regular file" \
  push $R --backup-id 100 --fw-config adir a.qcow2
expect 1 "qcow2pbs: adir: is a local directory; write a local datastore as ./adir (a name without '/' means a server's datastore, e.g. localhost:adir)" \
  push --repository adir --backup-id 100 a.qcow2
expect_env 1 "qcow2pbs: QCOW2PBS_DATASTORE_SYNC: 'bogus' is not own, filesystem or none" \
  QCOW2PBS_DATASTORE_SYNC=bogus -- push $R --backup-id 100 a.qcow2
expect_env 1 "qcow2pbs: PBS_PASSWORD_FD: not a file descriptor number" \
  -u PBS_PASSWORD PBS_PASSWORD_FD=abc -- snapshots --repository localhost:store
expect_env 1 "qcow2pbs: PBS_PASSWORD_CMD: the command failed (status 3)" \
  -u PBS_PASSWORD "PBS_PASSWORD_CMD=exit 3" -- snapshots --repository localhost:store
expect 1 "qcow2pbs: bogus: not a snapshot name (TYPE/ID/TIME)" \
  restore $R bogus drive-scsi0 out.raw
expect 1 "qcow2pbs: vms: holds 2 VMs: --backup-id names one group; leave it out to take the folder names" \
  import $R --backup-id 5 vms
expect 1 "qcow2pbs: bad name: 'bad name' is not a valid backup id; give --backup-id" \
  import $R "bad name"
expect 1 "qcow2pbs: $TMP/nonexist: cannot make a temporary folder: No such file or directory (--tmpdir)" \
  import $R --dry-run --tmpdir "$TMP/nonexist" comp.tar.gz
# A warning and a note, exit 0.
expect 0 "qcow2pbs: warning: INC-1001-disk.qcow2 is a qmpbackup incremental (INC) file with no backing file: the disk read holds only its changes, zeros elsewhere; give the whole chain with --chain FULL,...,INC-1001-disk.qcow2, or import the whole backup folder with 'qcow2pbs import'" \
  export INC-1001-disk.qcow2 out.raw
expect 0 "qcow2pbs: snap.conf: snapshot, pending and special sections and lock/parent/unused lines are left out, as vzdump leaves them" \
  push $R --backup-id 100 -q --pve-config snap.conf a.qcow2
# The push above made the datastore that check needs.
expect_env 2 "qcow2pbs: PBS_ENCRYPTION_PASSWORD_FILE: cannot open nonexist: No such file or directory" \
  -u PBS_ENCRYPTION_PASSWORD PBS_ENCRYPTION_PASSWORD_FILE=nonexist -- \
  check $R --keyfile pw.key

# The tar index (tar-index.c) and the blob restore (restore-blob.c) return
# their errors to import, push and restore, which print them.
python3 - <<'PY'
import io, tarfile
for out, name in (("abs.tar", "/etc/x.qcow2"), ("up.tar", "a/../../x")):
    t = tarfile.open(out, "w", format=tarfile.USTAR_FORMAT)
    i = tarfile.TarInfo(name); i.size = 3
    t.addfile(i, io.BytesIO(b"abc")); t.close()
PY
: >empty.tar
for c in "import $R --dry-run" \
         "push $R --backup-id 100 --disk x=a.qcow2 --from-archive"; do
  expect 1 "qcow2pbs: abs.tar: member '/etc/x.qcow2' is an absolute path or climbs out with '..': refused" \
    $c abs.tar
  expect 1 "qcow2pbs: up.tar: member 'a/../../x' is an absolute path or climbs out with '..': refused" \
    $c up.tar
  expect 1 "qcow2pbs: empty.tar: Unrecognized archive format" $c empty.tar
done
expect 1 '{"error":"up.tar: member '"'a/../../x'"' is an absolute path or climbs out with '"'..'"': refused","context":"up.tar"}' \
  import $R --dry-run --output-format json up.tar
"$TOOL" push $R --backup-id 300 --backup-time 1700000000 -q \
  --pve-config snap.conf a.qcow2 2>/dev/null
S=vm/300/2023-11-14T22:13:20Z
echo old >old.conf
expect 1 "qcow2pbs: old.conf: exists; add --force to replace it" \
  restore $R $S qemu-server.conf old.conf
check "old.conf is left as it was" grep -qx old old.conf
expect 1 "qcow2pbs: $S: nosuch.img.fidx: not in the snapshot" \
  restore $R $S nosuch out.conf
pre=(sh -c 'exec "$@" >/dev/full' sh) # stdout a full disk
expect 1 "qcow2pbs: -: write failed: No space left on device" \
  restore $R $S qemu-server.conf -
pre=()
printf x >>"$DS_TMP/ds/$S/qemu-server.conf.blob"
expect 1 "qcow2pbs: qemu-server.conf.blob: does not match the manifest's size and checksum: the snapshot is damaged" \
  restore $R $S qemu-server.conf out.conf
mv "$DS_TMP/ds/$S/index.json.blob" "$DS_TMP/ds/$S/index.json.blob.x"
expect 1 "qcow2pbs: $S: index.json.blob: cannot read $DS_TMP/ds/$S/index.json.blob: No such file or directory" \
  restore $R $S qemu-server.conf out.conf

# import: a snapshot at a point's time whose manifest cannot be read makes
# the point fail; its reason says why (no separate error line).
mkdir -p mf/vm9
cp FULL-1000-disk.qcow2 mf/vm9/
"$TOOL" push $R --backup-id vm9 --backup-time 1000 -q a.qcow2 2>/dev/null
echo garbage >"$DS_TMP/ds/vm/vm9/1970-01-01T00:16:40Z/index.json.blob"
got=0
"$TOOL" import $R --dry-run mf >out.txt 2>err.txt || got=$?
check "import over an unreadable manifest: exit 1" test $got = 1
check "import over an unreadable manifest: nothing on stderr" test ! -s err.txt
check "import over an unreadable manifest: the reason says why" grep -qF \
  "the group holds another snapshot at 1970-01-01T00:16:40Z: index.json.blob: not a DataBlob (bad magic or too short) (made from other files)" out.txt

# A folder the scan cannot list while it probes is passed over with a
# warning, exit 0 -- in JSON mode too (no error object).  Root reads any
# folder, so then the scan runs as nobody.
mkdir -p probe/vm1 probe/locked
cp FULL-1000-disk.qcow2 probe/vm1/
chmod 000 probe/locked
nobody=()
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null; then
  nobody=(setpriv --reuid=65534 --regid=65534 --clear-groups)
  chmod a+rx "$TMP" probe probe/vm1 && chmod a+r probe/vm1/*
fi
if [ "$(id -u)" = 0 ] && [ ${#nobody[@]} = 0 ]; then
  echo "# skipped: the unreadable folder (root without setpriv)"
else
  for f in text json; do
    got=0
    ${nobody[@]+"${nobody[@]}"} "$TOOL" import --repository "$TMP/nods" \
      --dry-run --output-format $f probe >out.txt 2>err.txt || got=$?
    check "import ($f) with an unreadable folder: exit 0" test $got = 0
    check "import ($f): each stderr line is the warning" \
      test "$(sort -u err.txt)" = "qcow2pbs: warning: probe/locked: cannot read the folder: Permission denied"
    check "import ($f): vm1 planned still" grep -q vm1 out.txt
  done
fi
chmod 700 probe/locked

done_testing
