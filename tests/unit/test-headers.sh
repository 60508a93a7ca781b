#!/bin/bash
# test-headers.sh -- every public header (each one `make install` puts under
# include/) compiles on its own, as C and as C++, with nothing but a copy of
# itself on the include path: a user's program may include it first, alone,
# from either language.  Each is also included twice (the include guard),
# and a C++ caller refers to its functions by their C names (extern "C":
# without it C++ code compiles but cannot link against the C library).
. "$(dirname "$0")/../helpers/functions.sh"
requires cc
requires c++
requires nm
cd "$top"
# The installed headers, read from the install rule so a new one is covered.
headers=$(sed -n 's|^[[:space:]]*install .* \([^ ]*\.h\) \$(DESTDIR)\$(PREFIX)/include/.*|\1|p' GNUmakefile)
check "the install rule names public headers ($(echo $headers))" test -n "$headers"
for h in $headers; do
  inc=$TMP/inc-$(basename "$h" .h)
  mkdir -p "$inc" && cp "$h" "$inc/"   # alone, as installed: no sibling headers
  printf '#include "%s"\n#include "%s"\n' "$(basename "$h")" "$(basename "$h")" >"$TMP/use.c"
  for lang in c c++; do
    if [ $lang = c ]; then set -- cc -x c -std=gnu11; else set -- c++ -x c++; fi
    if "$@" -fsyntax-only -Wall -Wextra -Werror -I"$inc" "$TMP/use.c" >"$TMP/cc.err" 2>&1; then
      pass "$h compiles alone as $lang"
    else
      fail "$h compiles alone as $lang: $(head -3 "$TMP/cc.err" | tr '\n' ' ')"
    fi
  done
  # Every declared function, taken by address from C++, must be an
  # unmangled undefined symbol in the object file.
  fns=$(sed -n 's/^extern [^"(]*[ *]\([a-z_][a-z0-9_]*\) *(.*/\1/p' "$h")
  { printf '#include "%s"\nvoid (*const used[])(void) = {\n' "$(basename "$h")"
    for f in $fns; do printf '  reinterpret_cast<void (*)(void)> (&%s),\n' "$f"; done
    printf '};\n'; } >"$TMP/use.cc"
  if c++ -c -I"$inc" -o "$TMP/use.o" "$TMP/use.cc" 2>"$TMP/cc.err"; then
    want=$(printf '%s\n' $fns | sort) got=$(nm -u "$TMP/use.o" | awk '{print $2}' | sort)
    missing=$(comm -23 <(echo "$want") <(echo "$got"))
    check "$h: C++ sees its $(echo $fns | wc -w) functions with C linkage${missing:+ (mangled: $(echo $missing))}" \
      test -n "$fns" -a -z "$missing"
  else
    fail "$h: C++ takes its functions' addresses: $(head -3 "$TMP/cc.err" | tr '\n' ' ')"
  fi
done
done_testing
