#!/bin/sh
# layers.sh B -- the build's layer rule: a layer calls only the layers below
# it (docs/architecture.md).  qcowlib and pbsproto are independent
# libraries; pbsproto is format < datastore < client; tools sit on top.
# Reads the objects in build directory B with nm; prints each call that
# goes up or across and fails.
set -eu
B=$1
forbidden () { # LAYER: the layers it may not call
  case $1 in
    qcowlib) echo "pbsproto/format pbsproto/datastore pbsproto/client tools" ;;
    pbsproto/format) echo "qcowlib pbsproto/datastore pbsproto/client tools" ;;
    pbsproto/datastore) echo "qcowlib pbsproto/client tools" ;;
    pbsproto/client) echo "qcowlib tools" ;;
  esac
}
bad=0
for low in qcowlib pbsproto/format pbsproto/datastore pbsproto/client; do
  for high in $(forbidden "$low"); do
    ls "$B/$high"/*.o >/dev/null 2>&1 || continue
    nm --defined-only -g "$B/$high"/*.o | awk 'NF == 3 { print $3 }' | sort -u >"$B/.layers.defs"
    for o in "$B/$low"/*.o; do
      for s in $(nm -u "$o" | awk '{ print $2 }' | sort -u | comm -12 - "$B/.layers.defs"); do
        echo "layers: ${o#"$B"/} calls $s, defined in $high: $low may not call it" >&2
        bad=1
      done
    done
  done
done
rm -f "$B/.layers.defs"
# The datastore reports errno and a message; HTTP statuses and the hex of
# the protocol belong to its HTTP front (tests/server).
for o in "$B"/pbsproto/datastore/*.o; do
  for s in $(nm -u "$o" | awk '$2 ~ /http|digest_parse/ { print $2 }'); do
    echo "layers: ${o#"$B"/} calls $s: the datastore knows no HTTP and takes binary digests" >&2
    bad=1
  done
done
# Nor does it word errors as PBS's REST server does: Rust's io::Error form
# and proxmox-schema's texts are tests/server/ds-errors.c's (string
# literals only; comments may cite them).
src=$(dirname "$0")/../../pbsproto/datastore
[ -d "$src" ] || { echo "layers: $src: no such folder" >&2; exit 1; }
if grep -nE '"[^"]*(os error|parameter verification)' "$src"/*.[ch] >&2; then
  echo "layers: pbsproto/datastore words an error as PBS's REST server (the lines above): keep its messages plain" >&2
  bad=1
fi
exit $bad
