#!/bin/bash
# test-qcow-locks.sh -- QEMU's image locks are honoured as qemu-img does.
# A real qemu-system-x86_64 (tests/helpers/qmp.py) holds an image open for writing
# (blockdev-add): qemu-img refuses it, and so do info, map, export, push
# and verify, with one line and exit 1, leaving no output file and no
# snapshot; with --force-share / -U they read it (golden: qemu-img convert
# -U).  The same when QEMU writes only a backing layer, a raw backing file
# or an external data file.  While our tool has the image open, QEMU cannot
# open it for writing (golden: QEMU's own error).
. "$(dirname "$0")/../helpers/functions.sh"
. "$(dirname "$0")/../helpers/push-functions.sh"
requires qemu-system-x86_64
requires qemu-img
requires qemu-io
requires python3
[ -r /proc/locks ] || skip "no /proc/locks"

d=$TMP/img; mkdir "$d"
# QEMU opens a relative data-file name from its working directory.
cd "$d"
ds=$DS_TMP/ds
# base.qcow2 <- top.qcow2; raw base.raw <- rawtop.qcow2; dtop.qcow2 whose
# guest data lives in the external data file data.raw.
qemu-img create -q -f qcow2 "$d/base.qcow2" 8M
qemu-io -c 'write -P 0x11 0 3M' "$d/base.qcow2" >/dev/null
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 "$d/top.qcow2" 8M
qemu-io -c 'write -P 0x22 1M 1M' "$d/top.qcow2" >/dev/null
qemu-img create -q -f raw "$d/base.raw" 8M
qemu-io -f raw -c 'write -P 0x33 2M 1M' "$d/base.raw" >/dev/null
qemu-img create -q -f qcow2 -b base.raw -F raw "$d/rawtop.qcow2" 8M
qemu-io -c 'write -P 0x44 5M 64k' "$d/rawtop.qcow2" >/dev/null
qemu-img create -q -f qcow2 -o data_file=data.raw dtop.qcow2 8M
qemu-io -c 'write -P 0x55 0 1M' dtop.qcow2 >/dev/null
for i in top rawtop dtop; do
  qemu-img convert -O raw "$d/$i.qcow2" "$d/$i.want"
done
# A first snapshot, so that the datastore exists and a refused push can be
# seen to add nothing to it.
"$TOOL" push --repository "$ds" --backup-id other --backup-time 1700000000 \
  "$d/base.qcow2" >/dev/null
snapshots () { (cd "$ds" && find vm -mindepth 2 -maxdepth 2 | sort); }
snapshots >"$TMP/snaps.before"

# The QEMU that holds images: a coprocess that takes one command a line
# and answers "ok" or "error DESC".  "add NODE FORMAT PATH" opens PATH for
# writing (blockdev-add, read-only off, and a writable NBD export of it);
# "node NODE FORMAT PATH" only adds the node; "mirror JOB SRC TARGET"
# starts a mirror job at 1 byte/s, so it stays unfinished; "cancel JOB"
# ends it; "del NODE" closes a node.
cat >"$TMP/lockvm.py" <<'EOF'
import os, sys
sys.path.insert(0, sys.argv[1])
from qmp import VM, QMPError
vm = VM(sys.argv[2]).start()
# A writable NBD export of a node is the user that makes QEMU take the
# write permission (a bare raw node has no user; a qcow2 node writes its
# metadata, so it takes it anyway).
vm.cmd("nbd-server-start", addr={"type": "unix", "data": {
    "path": os.path.join(sys.argv[3], "nbd.sock")}})
exports = set()
print("ready", flush=True)
for line in sys.stdin:
    w = line.rstrip("\n").split(None, 3)
    try:
        if w[0] in ("add", "node"):
            vm.add_disk(w[3], w[1], fmt=w[2])
            if w[0] == "add":
                vm.cmd("block-export-add", type="nbd", id="e" + w[1],
                       **{"node-name": w[1], "writable": True})
                exports.add(w[1])
        elif w[0] == "mirror":
            vm.cmd("blockdev-mirror", **{"job-id": w[1], "device": w[2],
                                         "target": w[3], "sync": "full",
                                         "speed": 1})
        elif w[0] == "cancel":
            vm.cmd("block-job-cancel", device=w[1], force=True)
            vm.qmp.wait_event("BLOCK_JOB_CANCELLED", {"device": w[1]}, 60)
        elif w[0] == "del":
            if w[1] in exports:
                exports.discard(w[1])
                vm.cmd("block-export-del", id="e" + w[1])
                vm.qmp.wait_event("BLOCK_EXPORT_DELETED", {"id": "e" + w[1]},
                                  60)
            vm.del_disk(w[1])
        else:
            break
        print("ok", flush=True)
    except QMPError as e:
        print("error " + str(e).replace("\n", " "), flush=True)
try:
    vm.quit()
except QMPError:
    pass
EOF
coproc QVM { python3 "$TMP/lockvm.py" "$top/tests/helpers" "$d" "$TMP" 2>&1; }
cleanup_fn "kill $QVM_PID 2>/dev/null"
qvm () { # qvm COMMAND...: send it, answer in $reply
  echo "$*" >&"${QVM[1]}"
  reply=; read -r -t 120 reply <&"${QVM[0]}" || true
}
read -r -t 120 reply <&"${QVM[0]}" || true
[ "$reply" = ready ] || { fail "QEMU did not start: $reply"; done_testing; exit; }
qvm_ok () { qvm "$@"; check "QEMU: $* ($reply)" [ "$reply" = ok ]; }

# refused DESC FILE CMD...: exit 1, one line naming FILE, QEMU's write lock
# and --force-share.
refused () {
  local desc=$1 file=$2; shift 2
  expect_fail "$desc" "$@"
  if grep -q "^qcow2pbs: .*$file: QEMU holds a write lock on it.*--force-share" \
       "$TMP/ef.err"; then
    pass "$desc: message names $file, the lock and --force-share"
  else fail "$desc: message: $(cat "$TMP/ef.err")"; fi
}

# no_traces DESC: no export output (nor its temporary), no new snapshot.
no_traces () {
  if [ -z "$(find "$TMP" -maxdepth 1 -name '*out.raw*')" ]; then
    pass "$1: no output file left"
  else fail "$1: left $(ls -a "$TMP" | grep out.raw)"; fi
  snapshots >"$TMP/snaps.now"
  if cmp -s "$TMP/snaps.before" "$TMP/snaps.now"; then
    pass "$1: no snapshot made"
  else fail "$1: snapshots now: $(tr '\n' ' ' <"$TMP/snaps.now")"; fi
}

# qemu_refuses DESC IMAGE: qemu-img convert (a reader, as we are) refuses
# IMAGE with QEMU's lock error.
qemu_refuses () {
  if qemu-img convert -O raw "$2" "$TMP/qi.raw" 2>"$TMP/qi.err"; then
    fail "$1: qemu-img convert read it"
  elif grep -q 'Failed to get shared "write" lock' "$TMP/qi.err"; then
    pass "$1: qemu-img convert refuses: $(head -1 "$TMP/qi.err")"
  else fail "$1: qemu-img convert: $(cat "$TMP/qi.err")"; fi
  rm -f "$TMP/qi.raw"
}

# shared_read DESC IMAGE WANT OPT: export OPT = the disk qemu-img read
# before QEMU opened it, and = qemu-img convert -U now.
shared_read () {
  local desc=$1 img=$2 want=$3 opt=$4
  rm -f "$TMP/out.raw" "$TMP/qu.raw"
  qemu-img convert -U -O raw "$img" "$TMP/qu.raw"
  same_bytes "$want" "$TMP/qu.raw" "$desc: qemu-img convert -U reads the disk"
  if "$TOOL" export "$opt" "$img" "$TMP/out.raw" 2>"$TMP/sr.err"; then
    same_bytes "$TMP/qu.raw" "$TMP/out.raw" "$desc: export $opt = qemu-img convert -U"
  else fail "$desc: export $opt: $(cat "$TMP/sr.err")"; fi
  rm -f "$TMP/out.raw" "$TMP/qu.raw"
}

# ---- QEMU writes the top image
qvm_ok add d0 qcow2 "$d/top.qcow2"
if qemu-img info "$d/top.qcow2" >/dev/null 2>"$TMP/qi.err"; then
  fail "qemu-img info read a write-locked image"
elif grep -q 'Failed to get shared "write" lock' "$TMP/qi.err" &&
     grep -q 'Is another process using the image' "$TMP/qi.err"; then
  pass "qemu-img info refuses: $(tr '\n' ' ' <"$TMP/qi.err")"
else fail "qemu-img info: $(cat "$TMP/qi.err")"; fi
qemu_refuses "top written" "$d/top.qcow2"
refused "info, top written" top.qcow2 "$TOOL" info "$d/top.qcow2"
refused "map, top written" top.qcow2 "$TOOL" map "$d/top.qcow2"
refused "export, top written" top.qcow2 "$TOOL" export "$d/top.qcow2" "$TMP/out.raw"
refused "export to stdout, top written" top.qcow2 \
  sh -c '"$0" export "$1" - >"$2"' "$TOOL" "$d/top.qcow2" "$TMP/out.raw"
check "export to stdout wrote nothing" [ ! -s "$TMP/out.raw" ]
rm -f "$TMP/out.raw"
refused "export --chain, top written" top.qcow2 \
  "$TOOL" export --chain "$d/base.qcow2,$d/top.qcow2" "$TMP/out.raw"
refused "push, top written" top.qcow2 \
  "$TOOL" push --repository "$ds" --backup-id locked "$d/top.qcow2"
refused "push --dry-run, top written" top.qcow2 \
  "$TOOL" push --repository "$ds" --backup-id locked --dry-run "$d/top.qcow2"
no_traces "top written"
"$TOOL" verify --repository "$ds" vm/other/1700000000 "$d/top.qcow2" \
  >/dev/null 2>"$TMP/v.err" && rc=0 || rc=$?
if [ $rc != 0 ] && [ "$(wc -l <"$TMP/v.err")" = 1 ] &&
   grep -q 'top.qcow2: QEMU holds a write lock' "$TMP/v.err"; then
  pass "verify, top written: refused ($(cat "$TMP/v.err"))"
else fail "verify, top written (exit $rc): $(cat "$TMP/v.err")"; fi

# The running QEMU has the backing layer open read-only: that one reads
# without -U, for qemu-img and for us (a base under a live overlay).
rm -f "$TMP/out.raw"
qemu-img convert -O raw "$d/base.qcow2" "$TMP/qb.raw"
if "$TOOL" export "$d/base.qcow2" "$TMP/out.raw" 2>"$TMP/b.err"; then
  same_bytes "$TMP/qb.raw" "$TMP/out.raw" "backing layer of the written top: export = qemu-img convert"
else fail "backing layer of the written top: $(cat "$TMP/b.err")"; fi
rm -f "$TMP/out.raw" "$TMP/qb.raw"
shared_read "top written" "$d/top.qcow2" "$d/top.want" --force-share
shared_read "top written" "$d/top.qcow2" "$d/top.want" -U
quiet () { "$@" >/dev/null; }
check "info -U, top written" quiet "$TOOL" info -U "$d/top.qcow2"
check "map --force-share, top written" quiet "$TOOL" map --force-share "$d/top.qcow2"
if "$TOOL" push --repository "$ds" --backup-id shared --backup-time 1700000100 \
     -U "$d/top.qcow2" >/dev/null 2>"$TMP/p.err"; then
  pass "push -U, top written"
  rm -f "$TMP/re.raw"
  "$TOOL" restore --repository "$ds" vm/shared/1700000100 drive-scsi0.img \
    "$TMP/re.raw"
  same_bytes "$d/top.want" "$TMP/re.raw" \
    "push -U, top written: restore = qemu-img convert (before QEMU)"
  rm -f "$TMP/re.raw"
  # verify -U of the snapshot it just made.
  check "verify --force-share, top written" \
    quiet "$TOOL" verify --repository "$ds" --force-share vm/shared/1700000100 \
    "$d/top.qcow2"
else fail "push -U, top written: $(cat "$TMP/p.err")"; fi
snapshots >"$TMP/snaps.before"
qvm_ok del d0

# ---- QEMU writes only the backing layer
qvm_ok add b0 qcow2 "$d/base.qcow2"
qemu_refuses "backing written" "$d/top.qcow2"
refused "info, backing written" base.qcow2 "$TOOL" info "$d/top.qcow2"
refused "export, backing written" base.qcow2 "$TOOL" export "$d/top.qcow2" "$TMP/out.raw"
refused "push, backing written" base.qcow2 \
  "$TOOL" push --repository "$ds" --backup-id locked "$d/top.qcow2"
no_traces "backing written"
shared_read "backing written" "$d/top.qcow2" "$d/top.want" -U
qvm_ok del b0

# ---- QEMU writes a raw backing file
qvm_ok add r0 raw "$d/base.raw"
qemu_refuses "raw backing written" "$d/rawtop.qcow2"
refused "export, raw backing written" base.raw \
  "$TOOL" export "$d/rawtop.qcow2" "$TMP/out.raw"
no_traces "raw backing written"
shared_read "raw backing written" "$d/rawtop.qcow2" "$d/rawtop.want" --force-share
qvm_ok del r0

# ---- QEMU writes an external data file
qvm_ok add x0 raw "$d/data.raw"
qemu_refuses "data file written" "$d/dtop.qcow2"
refused "export, data file written" data.raw \
  "$TOOL" export "$d/dtop.qcow2" "$TMP/out.raw"
no_traces "data file written"
shared_read "data file written" "$d/dtop.qcow2" "$d/dtop.want" -U
qvm_ok del x0

# ---- The target of an unfinished mirror job: QEMU does not share
# consistent reads of it, and qemu-img refuses it even with -U.
qemu-img create -q -f qcow2 "$d/mirror.qcow2" 8M
qvm_ok node s0 qcow2 "$d/top.qcow2"
qvm_ok node t0 qcow2 "$d/mirror.qcow2"
qvm_ok mirror m0 s0 t0
if qemu-img convert -U -O raw "$d/mirror.qcow2" "$TMP/qi.raw" 2>"$TMP/qi.err"; then
  fail "mirror target: qemu-img convert -U read it"
elif grep -q 'Failed to get "consistent read" lock' "$TMP/qi.err"; then
  pass "mirror target: qemu-img convert -U refuses: $(head -1 "$TMP/qi.err")"
else fail "mirror target: qemu-img convert -U: $(cat "$TMP/qi.err")"; fi
rm -f "$TMP/qi.raw"
for opt in --force-share ""; do
  expect_fail "export ${opt:-without -U}, mirror target" \
    "$TOOL" export $opt "$d/mirror.qcow2" "$TMP/out.raw"
  if grep -q "mirror.qcow2: QEMU does not let others read it consistently" \
       "$TMP/ef.err"; then
    pass "export ${opt:-without -U}, mirror target: message names the consistent-read lock"
  else fail "export ${opt:-without -U}, mirror target: message: $(cat "$TMP/ef.err")"; fi
done
no_traces "mirror target"
qvm_ok cancel m0
qvm_ok del t0
qvm_ok del s0

# ---- QEMU closed everything: all reads work again
for i in top rawtop dtop; do
  rm -f "$TMP/out.raw"
  "$TOOL" export "$d/$i.qcow2" "$TMP/out.raw"
  same_bytes "$d/$i.want" "$TMP/out.raw" "$i.qcow2 after blockdev-del: export = qemu-img convert"
done
rm -f "$TMP/out.raw"
check "info after blockdev-del" quiet "$TOOL" info "$d/top.qcow2"

# ---- While we read, QEMU cannot open for writing
# locked_by_us FILE: an OFD lock on byte 201 of FILE (QEMU holds none now,
# so it is ours).  Waits for it: the reader takes it when it opens.
locked_by_us () {
  local ino i
  ino=$(stat -c %i "$1")
  for i in $(seq 600); do
    grep -q "OFDLCK .*:$ino 201 201\$" /proc/locks && return 0
    sleep 0.1
  done
  return 1
}
# qemu_cannot_write DESC NODE FORMAT FILE
qemu_cannot_write () {
  qvm add "$2" "$3" "$4"
  case $reply in
    *'Failed to get "write" lock'*) pass "$1: QEMU refuses to write: $reply" ;;
    ok) fail "$1: QEMU opened it for writing"; qvm del "$2" ;;
    *) fail "$1: QEMU: $reply" ;;
  esac
}

# An export into a pipe that nobody reads yet: it opens the chain, fills
# the pipe and waits.
mkfifo "$TMP/gate"
{ "$TOOL" export "$d/top.qcow2" - ; echo $? >"$TMP/exp.rc"; } |
  { read -r _ <"$TMP/gate"; cat >"$TMP/out.raw"; } &
reader=$!
if locked_by_us "$d/top.qcow2" && locked_by_us "$d/base.qcow2"; then
  pass "export holds QEMU's shared locks on top and base"
else fail "export holds no locks: $(cat /proc/locks)"; fi
qemu_cannot_write "export running" d1 qcow2 "$d/top.qcow2"
qemu_cannot_write "export running, backing layer" b1 qcow2 "$d/base.qcow2"
# A QEMU started now with the image on its command line fails as well.
if echo '{"execute":"qmp_capabilities"} {"execute":"quit"}' |
   timeout 60 qemu-system-x86_64 -machine none -nodefaults -display none \
     -no-user-config -qmp stdio \
     -blockdev "driver=qcow2,node-name=d2,file.driver=file,file.filename=$d/top.qcow2" \
     >"$TMP/qs.out" 2>"$TMP/qs.err"; then
  fail "a new QEMU opened the image for writing during export"
elif grep -q 'Failed to get "write" lock' "$TMP/qs.err"; then
  pass "a new QEMU fails: $(tr '\n' ' ' <"$TMP/qs.err")"
else fail "a new QEMU: $(cat "$TMP/qs.err")"; fi
echo go >"$TMP/gate"
wait "$reader" || true
check "export finished (exit $(cat "$TMP/exp.rc"))" [ "$(cat "$TMP/exp.rc")" = 0 ]
same_bytes "$d/top.want" "$TMP/out.raw" "export while QEMU was refused = qemu-img convert"
rm -f "$TMP/out.raw"
qvm_ok add d3 qcow2 "$d/top.qcow2"
qvm_ok del d3

# A push waiting for its password (PBS_PASSWORD_FILE is a FIFO nobody
# writes) has the image open already.
mkfifo "$TMP/pw"
PBS_PASSWORD_FILE=$TMP/pw "$TOOL" push --repository root@pam@127.0.0.1:1:store \
  --backup-id x "$d/top.qcow2" >/dev/null 2>&1 &
pusher=$!
cleanup_fn "kill $pusher 2>/dev/null"
if locked_by_us "$d/top.qcow2"; then
  pass "push waiting for a password holds QEMU's shared lock"
else fail "push holds no lock"; fi
qemu_cannot_write "push waiting" d4 qcow2 "$d/top.qcow2"
kill "$pusher"; wait "$pusher" 2>/dev/null || true
qvm_ok add d5 qcow2 "$d/top.qcow2"
qvm_ok del d5

qvm quit
done_testing
