#!/bin/bash
# test-systemd-example.sh -- examples/systemd/: the units pass
# `systemd-analyze verify` (no warning; skipped without systemd-analyze),
# the timer is weekly and persistent, and the services' ExecStart lines,
# run as systemd would (tests/helpers/run_unit.py: their EnvironmentFile,
# LoadCredential, ProtectSystem=strict with ReadWritePaths imitated in a
# read-only mount namespace), work: push@ of a QMP backup chain (made by
# tests/helpers/qmp.py) gives a snapshot that restores byte-identical to qemu-img
# convert of the newest layer, locally and through the HTTPS test server
# with the password only in the credential file; check@ says ok, and
# exit 1 with the digest after a chunk is damaged.
. "$(dirname "$0")/../helpers/functions.sh"
requires qemu-img
requires qemu-system-x86_64
requires python3
src=$top/examples/systemd
RUN=$top/tests/helpers/run_unit.py

# The units with their install paths pointed at this tree and $TMP.
u=$TMP/units; mkdir "$u"
etc=$TMP/etc; mkdir -m 700 "$etc"
srv=$DS_TMP/srv; mkdir "$srv"
for f in "$src"/*; do
  sed -e "s|/usr/local/bin/qcow2pbs|$TOOL|g" \
      -e "s|/usr/local/lib/qcow2pbs/|$top/examples/|g" \
      -e "s|/etc/qcow2pbs/|$etc/|g" -e "s|/srv/pbs|$srv|g" "$f" >"$u/${f##*/}"
done
check "push@ runs examples/qmp-backup.sh push" \
  grep -q '^ExecStart=/usr/local/lib/qcow2pbs/qmp-backup.sh push ' "$src/qcow2pbs-push@.service"
check "check@ runs qcow2pbs check" \
  grep -q '^ExecStart=/usr/local/bin/qcow2pbs check ' "$src/qcow2pbs-check@.service"
check "timer: OnCalendar=weekly, Persistent=true" \
  eval 'grep -qx OnCalendar=weekly "$src/qcow2pbs-check@.timer" &&
        grep -qx Persistent=true "$src/qcow2pbs-check@.timer"'
check "no secret on a command line: passwords come from LoadCredential" \
  eval '[ "$(cat "$src"/*.service | grep -c "^LoadCredential=pbs-password:/etc/qcow2pbs/%i.password$")" = 2 ] &&
        ! grep -q "PBS_PASSWORD=" "$src"/*.service'

if command -v systemd-analyze >/dev/null; then
  (cd "$u" && systemd-analyze verify --man=no ./qcow2pbs-push@vm100.service \
     ./qcow2pbs-check@store1.service ./qcow2pbs-check@store1.timer) >"$TMP/verify.out" 2>&1 &&
    rc=0 || rc=$?
  check "systemd-analyze verify: exit 0" test $rc = 0
  check "systemd-analyze verify: no warning" test ! -s "$TMP/verify.out"
  cat "$TMP/verify.out"
  check "systemd-analyze calendar weekly: parses" \
    eval 'systemd-analyze calendar weekly | grep -q "Next elapse"'
else
  echo "# systemd-analyze not installed: verify skipped"
fi

# A QMP backup chain, as qmp-backup.sh full/incremental name it.
bk=$TMP/backup/vm100; mkdir -p "$bk"
python3 "$top/tests/helpers/qmp.py" chain --dir "$bk" --size 24M --incrementals 2 >/dev/null
rm "$bk/src.qcow2"        # the VM's disk, not a backup layer
qemu-img convert -O raw "$bk/incr1.qcow2" "$TMP/want.raw"

# The imitated sandbox really is read-only outside ReadWritePaths.
printf '[Service]\nProtectSystem=strict\nReadWritePaths=%s\nExecStart=/bin/sh -c "touch %s/ok && touch %s/no"\n' \
  "$srv" "$srv" "$TMP" >"$u/probe.service"
if [ "$(id -u)" = 0 ] && command -v unshare >/dev/null; then
  python3 "$RUN" "$u/probe.service" x "$TMP/cred0" 2>/dev/null && rc=0 || rc=$?
  check "sandbox: ReadWritePaths writable, the rest read-only" \
    eval 'test $rc != 0 -a -f "$srv/ok" -a ! -e "$TMP/no"'
else
  echo "# not root or no unshare: ProtectSystem=strict not imitated"
fi

# run NAME UNIT INSTANCE: the ExecStart of qcow2pbs-UNIT (a template),
# as systemd runs it for that instance.
run () {
  rm -rf "$TMP/cred.$1"
  rc=0
  python3 "$RUN" "$u/qcow2pbs-$2" "$3" "$TMP/cred.$1" --argv "$TMP/$1.argv" \
    >"$TMP/$1.out" 2>"$TMP/$1.err" || rc=$?
}
restores () { # restores WHERE REPO SNAPSHOT: equals qemu-img convert
  rm -f "$TMP/got.raw"
  "$TOOL" restore --repository "$2" "$3" drive-scsi0 "$TMP/got.raw" >/dev/null
  same_bytes "$TMP/got.raw" "$TMP/want.raw" "$1: the pushed snapshot restores as qemu-img convert of the newest layer"
}
newest () { # newest REPO: vm/100/TIME of the newest snapshot
  "$TOOL" snapshots --repository "$1" --output-format json | python3 -c '
import json, sys
s = [x for x in json.load(sys.stdin) if x["backup-id"] == "100"]
print("vm/100/%d" % max(x["backup-time"] for x in s), len(s))'
}

# --- local datastore
ds=$srv/store1
printf 'PBS_REPOSITORY=%s\nBACKUP_DIR=%s\nBACKUP_ID=100\n' "$ds" "$bk" >"$etc/vm100.conf"
printf 'unused-for-a-local-datastore\n' >"$etc/vm100.password"
chmod 600 "$etc"/*
run push push@.service vm100
check "push@vm100: exit 0" test $rc = 0
printf '%s\n' "$top/examples/qmp-backup.sh" push "$bk" "$ds" 100 >"$TMP/push.want"
check "push@vm100: ExecStart expands to qmp-backup.sh push DIR REPO ID" \
  cmp -s "$TMP/push.argv" "$TMP/push.want"
read -r snap n <<<"$(newest "$ds")"
check "push@vm100: one snapshot" test "$n" = 1
restores local "$ds" "$snap"

printf 'PBS_REPOSITORY=%s\n' "$ds" >"$etc/store1.conf"
printf 'unused\n' >"$etc/store1.password"
chmod 600 "$etc"/*
run check check@.service store1
check "check@store1: exit 0, ok" eval 'test $rc = 0 && grep -q ": ok" "$TMP/check.out"'
# One flipped byte in the first chunk of the disk (python3 hashlib).
dig=$(python3 -c 'import hashlib,sys
print(hashlib.sha256(open(sys.argv[1],"rb").read(4 << 20)).hexdigest())' "$TMP/want.raw")
f=$ds/.chunks/${dig:0:4}/$dig
python3 -c 'import sys
p = sys.argv[1]; b = bytearray(open(p, "rb").read()); b[-1] ^= 1
open(p, "wb").write(b)' "$f"
run bad check@.service store1
check "check@store1 after damage: exit 1 (the unit fails)" test $rc = 1
check "check@store1 after damage: the digest is named" grep -q "$dig" "$TMP/bad.out" "$TMP/bad.err"

# --- the HTTPS test server: the password only in the credential file
if [ -x "$SERVER" ] && command -v openssl >/dev/null; then
  . "$(dirname "$0")/../helpers/remote-functions.sh"
  setup_remote
  mkdir "$srv/remote"
  start_server "$srv/remote"
  R=root@pam@127.0.0.1:$PORT:$STORE
  printf 'PBS_REPOSITORY=%s\nPBS_FINGERPRINT=%s\nBACKUP_DIR=%s\nBACKUP_ID=100\n' \
    "$R" "$FP" "$bk" >"$etc/vm100.conf"
  printf '%s\n' "$USER_PASSWORD" >"$etc/vm100.password"
  chmod 600 "$etc"/*
  ( unset PBS_PASSWORD; run rpush push@.service vm100; exit $rc ) && rc=0 || rc=$?
  check "remote push@vm100: exit 0" test $rc = 0
  check "remote push@vm100: the password is in no argument" \
    eval '! grep -qF "$USER_PASSWORD" "$TMP/rpush.argv"'
  export PBS_FINGERPRINT=$FP PBS_PASSWORD=$USER_PASSWORD
  read -r snap n <<<"$(newest "$R")"
  restores remote "$R" "$snap"
  unset PBS_PASSWORD
  printf 'PBS_REPOSITORY=%s\nPBS_FINGERPRINT=%s\n' "$R" "$FP" >"$etc/store1.conf"
  printf '%s\n' "$USER_PASSWORD" >"$etc/store1.password"
  run rcheck check@.service store1
  check "remote check@store1: exit 0, ok" eval 'test $rc = 0 && grep -q ": ok" "$TMP/rcheck.out"'
else
  echo "# remote cases skipped: no test server"
fi
done_testing
