#!/bin/bash
# remote-calls.sh -- the calls between pbsproto's remote-*.c files, read
# from their object files: "FROM -> TO: symbols" per pair of files, where
# FROM references (nm -u) what TO defines (nm --defined-only).
#
# Usage: tests/helpers/remote-calls.sh BUILD_DIR   (objects in BUILD_DIR/pbsproto/client)
# Used by tests/remote/test-remote-layers.sh; also handy for a before/after.
set -e
dir=${1:?usage: remote-calls.sh BUILD_DIR}/pbsproto/client
declare -A def
for o in "$dir"/remote-*.o; do
  f=$(basename "$o" .o)
  for s in $(nm --defined-only "$o" | awk '$2 ~ /^[TDBR]$/ {print $3}'); do
    def[$s]=$f
  done
done
for o in "$dir"/remote-*.o; do
  f=$(basename "$o" .o)
  nm -u "$o" | awk '{print $2}' | while read -r s; do
    t=${def[$s]:-}
    if [ -n "$t" ] && [ "$t" != "$f" ]; then echo "$f $t $s"; fi
  done
done | sort | awk '
  { key = $1 " -> " $2; syms[key] = syms[key] (syms[key] ? " " : "") $3 }
  END { for (k in syms) print k ": " syms[k] }' | sort
