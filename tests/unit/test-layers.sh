#!/bin/bash
# test-layers.sh -- the structure issue 12 asks for, read from the built
# objects with nm (the build itself runs tests/helpers/layers.sh for the rule
# between layers): no two files of pbsproto or qcowlib call each other,
# directly or around a circle, the libraries read no environment, and
# the tool uses only their public API.
. "$(dirname "$0")/../helpers/functions.sh"
requires nm
requires python3
[ -f "$B/libpbsproto.a" ] || skip "libpbsproto.a not built"
calls () { # calls DIR...: "caller callee" per call between object files
  local o s n
  declare -A def
  for o in "$@"; do
    n=${o%.o}; n=${n#"$B"/}
    for s in $(nm --defined-only -g "$o" | awk 'NF == 3 { print $3 }'); do def[$s]=$n; done
  done
  for o in "$@"; do
    n=${o%.o}; n=${n#"$B"/}
    for s in $(nm -u "$o" | awk '{ print $2 }'); do
      [ -n "${def[$s]:-}" ] && [ "${def[$s]}" != "$n" ] && echo "$n ${def[$s]}"
    done
  done | sort -u
}
circles () { python3 -c '
import collections, sys
sys.setrecursionlimit(10000)
g = collections.defaultdict(set)
for line in sys.stdin:
    a, b = line.split(); g[a].add(b)
index, low, stack, on, out, n = {}, {}, [], set(), [], [0]
def visit(v):
    index[v] = low[v] = n[0]; n[0] += 1; stack.append(v); on.add(v)
    for w in g[v]:
        if w not in index: visit(w); low[v] = min(low[v], low[w])
        elif w in on: low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        c = []
        while True:
            w = stack.pop(); on.discard(w); c.append(w)
            if w == v: break
        if len(c) > 1: out.append(" ".join(sorted(c)))
for v in list(g):
    if v not in index: visit(v)
if out: print("\n".join(out))'; }
for lib in pbsproto qcowlib; do
  objs=$(find "$B/$lib" -name '*.o' | sort)
  calls $objs >"$TMP/$lib.calls"
  circles <"$TMP/$lib.calls" >"$TMP/$lib.circles"
  check "$lib: $(wc -l <"$TMP/$lib.calls") calls between files, no circle$(sed 's/^/ [/; s/$/]/' "$TMP/$lib.circles" | tr -d '\n')" \
    test ! -s "$TMP/$lib.circles"
done
for lib in libpbsproto.a libqcowlib.a; do
  check "$lib calls no getenv/secure_getenv/atexit" \
    sh -c "! nm -u '$B/$lib' | grep -qw -e getenv -e secure_getenv -e atexit"
done
check "the layer rule holds (tests/helpers/layers.sh)" sh "$top/tests/helpers/layers.sh" "$B"
# The tool uses only the libraries' public API: of their headers it
# includes only the installed ones, it keeps no qcow2 header offsets of
# its own (qcowlib reads the header), and it calls nothing internal.
public=$(sed -n 's|^[[:space:]]*install .* \([^ ]*\.h\) \$(DESTDIR)\$(PREFIX)/include/.*|\1|p' \
  "$top/GNUmakefile" | xargs -n1 basename | sort -u)
internal=$(cd "$top" && find qcowlib pbsproto -name '*.h' -exec basename {} \; | sort -u |
  grep -vxF "$public" | sed 's/\./\\./g' | paste -sd'|')
check "the libraries have internal headers (${internal//\\/})" test -n "$internal"
bad=$(cd "$top" && grep -rnE "^[[:space:]]*#[[:space:]]*include[[:space:]]*[\"<](.*/)?($internal)[\">]" tools || true)
check "tools/ includes no internal header of qcowlib or pbsproto${bad:+: $bad}" test -z "$bad"
bad=$(cd "$top" && grep -rnE '^[[:space:]]*#[[:space:]]*define[[:space:]]+QCOW2_' tools || true)
check "tools/ defines no QCOW2_* constant of its own${bad:+: $bad}" test -z "$bad"
bad=$(find "$B/tools" -name '*.o' | sort | while read -r o; do
  nm -u "$o" | awk '{ print $2 }' | grep -E '^(qcow__|pbs__)' | sed "s|^|${o#"$B"/}: |"; done)
check "tools/ objects call no library-internal function (qcow__*, pbs__*)${bad:+: $bad}" test -z "$bad"
done_testing
