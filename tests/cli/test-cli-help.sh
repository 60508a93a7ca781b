#!/bin/bash
# test-cli-help.sh -- every option of every command (read from the C
# getopt tables by tests/helpers/getopt-tables.py, not from the tool) is described
# in that command's --help and in its section of qcow2pbs(1); `help
# COMMAND` prints exactly `COMMAND --help`; -V/--version work; a bad option
# is one line naming it, exit 2; the man page renders without warnings.
. "$(dirname "$0")/../helpers/functions.sh"
requires python3
MAN=$B/qcow2pbs.1

# help_of "key create" -> the tool's help text for it
help_of () { "$TOOL" $1 --help; }

# The section of the man page for COMMAND, as roff.
man_section () {
  awk -v h=".SS \"qcow2pbs $1\"" '$0 == h { on = 1; next } on && /^\.S[SH] / { exit } on' "$MAN" 2>/dev/null || true
}

tables=$(python3 "$top/tests/helpers/getopt-tables.py" "$top")
check "option tables found for 12 commands" test "$(wc -l <<<"$tables")" = 12
check "man page built" test -s "$MAN"
while IFS=$'\t' read -r cmd opts; do
  help_of "$cmd" >"$TMP/help" 2>&1 || true
  man_section "$cmd" >"$TMP/man"
  missing_help= missing_man=
  for o in $opts; do
    # An option line: "  --opt ..." or "  -q, --quiet ..." ("-U, ...").
    grep -Eq -- "^  (-[a-zA-Z], )?$o([ ,]|\$)" "$TMP/help" || missing_help+=" $o"
    grep -Fq -- "\\fB${o//-/\\-}\\fR" "$TMP/man" || missing_man+=" $o"
  done
  check "$cmd: every option in --help${missing_help:+ (missing:$missing_help)}" test -z "$missing_help"
  check "$cmd: every option in qcow2pbs(1)${missing_man:+ (missing:$missing_man)}" test -z "$missing_man"

  rc=0; "$TOOL" help $cmd >"$TMP/h1" 2>&1 || rc=$?
  help_of "$cmd" >"$TMP/h2" 2>&1 || true
  check "help $cmd = $cmd --help (exit $rc)" cmp -s "$TMP/h1" "$TMP/h2"

  for bad in --frob -Z; do
    rc=0; "$TOOL" $cmd $bad x >"$TMP/out" 2>"$TMP/err" || rc=$?
    check "$cmd $bad: exit 2, one line naming it, stdout empty (exit $rc: $(head -3 "$TMP/err" | tr '\n' '|'))" \
      test $rc = 2 -a "$(wc -l <"$TMP/err")" = 1 -a ! -s "$TMP/out" \
           -a "$(cat "$TMP/err")" = "qcow2pbs $cmd: unknown option '$bad'; try 'qcow2pbs $cmd --help'"
  done
  if grep -qw -- --output-format <<<"$opts"; then
    rc=0; "$TOOL" $cmd --output-format >"$TMP/out" 2>"$TMP/err" || rc=$?
    check "$cmd --output-format without its value: exit 2, one line" \
      test $rc = 2 -a "$(cat "$TMP/err")" = "qcow2pbs $cmd: option '--output-format' needs an argument; try 'qcow2pbs $cmd --help'"
  fi
done <<<"$tables"

rc=0; "$TOOL" push --full=yes >/dev/null 2>"$TMP/err" || rc=$?
check "an argument for a flag: exit 2, one line" \
  test $rc = 2 -a "$(cat "$TMP/err")" = "qcow2pbs push: option '--full' takes no argument; try 'qcow2pbs push --help'"
rc=0; "$TOOL" push --backup >/dev/null 2>"$TMP/err" || rc=$?
check "an ambiguous abbreviation: exit 2, one line" \
  test $rc = 2 -a "$(cat "$TMP/err")" = "qcow2pbs push: ambiguous option '--backup'; try 'qcow2pbs push --help'"
rc=0; "$TOOL" frob >/dev/null 2>"$TMP/err" || rc=$?
check "an unknown command: exit 2, one line" test $rc = 2 -a "$(wc -l <"$TMP/err")" = 1

for v in -V --version; do
  rc=0; out=$("$TOOL" $v 2>&1) || rc=$?
  check "$v: exit 0, 'qcow2pbs VERSION' (got $rc: $out)" test $rc = 0 -a -n "$(grep -E '^qcow2pbs [0-9]+\.[0-9]+' <<<"$out")"
done
rc=0; "$TOOL" help >"$TMP/h1" || rc=$?
"$TOOL" --help >"$TMP/h2"
check "help (exit $rc) = --help" cmp -s "$TMP/h1" "$TMP/h2"

if command -v groff >/dev/null; then
  groff -man -ww -z "$MAN" 2>"$TMP/groff.err" || true
  check "groff -man -ww: no warnings ($(head -2 "$TMP/groff.err"))" test ! -s "$TMP/groff.err"
fi
if command -v man >/dev/null; then
  LC_ALL=C MANWIDTH=80 man --warnings -l "$MAN" >"$TMP/man.txt" 2>"$TMP/man.err" || true
  check "man --warnings -l: no warnings ($(head -2 "$TMP/man.err"))" test ! -s "$TMP/man.err"
  check "man renders every command's section" \
    test "$(grep -cE '^   qcow2pbs (info|map|export|bitmap|push|restore|verify|snapshots|key create|key show)$' "$TMP/man.txt")" = 10
fi
done_testing
