#!/bin/bash
# test-push-example.sh -- examples/qmp-backup.sh demo runs as documented:
# a QEMU over QMP makes full + 2 incrementals, each pushed, restored and
# compared with qemu-img convert of its layer by the script itself.
. "$(dirname "$0")/functions.sh"
requires qemu-img
requires qemu-system-x86_64
requires python3
out=$(QCOW2PBS=$TOOL "$top/examples/qmp-backup.sh" demo "$TMP/demo" 2>&1) ||
  { fail "demo failed: $(tail -5 <<<"$out")"; done_testing; exit; }
check "demo pushed 3 snapshots" test "$(grep -c 'restore and verify match' <<<"$out")" = 3
check "the incrementals were incremental" test "$(grep -c '; incremental$' <<<"$out")" = 2
done_testing
