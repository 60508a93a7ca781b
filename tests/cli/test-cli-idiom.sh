#!/bin/bash
# test-cli-idiom.sh -- one error idiom in the tool (issue 12): helpers
# return a struct cli_err (message and exit status) and print nothing;
# only the cmd_* files and cli-errors.c, the one printing module, write to
# stderr.  Every other printing site in tools/*.c is listed below with its
# reason, so a new one fails here until it is returned or listed.  Also
# checks that the scan finds a planted site, and that the listed ones
# still exist (a stale exception is removed, not kept).
. "$(dirname "$0")/../helpers/functions.sh"

# FILE:FUNCTION (or FILE:* for the whole file) and why it may print.
exceptions='
qcow2pbs.c:main             the dispatcher: its own "unknown command" usage line
qcow2pbs.c:help             the same for "qcow2pbs help CMD"
out-file.c:on_signal        the signal handler'"'"'s one line (async-signal-safe write; restore path)
push-progress.c:*           the progress line, output rather than an error
cli-repo.c:cli_close_repo   QCOW2PBS_STATS=1 bytes_sent line (bench hook; issue 12 removes it)
'

# sites DIR: "FILE:FUNCTION:LINE: text" for each printing call in DIR/*.c
# outside cmd-*.c and cli-errors.c.  FUNCTION is the last definition
# ("name (" at the start of a line) above the call.
sites () {
  local f
  for f in "$1"/*.c; do
    case ${f##*/} in cmd-*.c|cli-errors.c) continue ;; esac
    awk -v file="${f##*/}" '
      /^[a-z_][a-z0-9_]* \(/ { fn = $1 }
      /fprintf *\( *stderr|vfprintf *\( *stderr|fput[sc] *\(.*stderr|perror *\(|dprintf *\( *(2|STDERR_FILENO)|write *\( *(2|STDERR_FILENO) *,|(^|[^a-z_])(warnx?|errx?|cli_error|cli_usage_error|cli_error_line|cli_qcow_error|cli_pbs_error|cli_err_print|cli_getopt_error) *\(/ {
        sub (/^[ \t]+/, ""); print file ":" fn ":" FNR ": " $0
      }' "$f"
  done
}

allowed () { # allowed FILE:FUNCTION
  local file=${1%%:*}
  grep -qE "^($(printf '%s' "$1" | sed 's/[.]/[.]/g')|${file//./[.]}:[*])[[:space:]]" <<<"$exceptions"
}

unlisted () { # unlisted DIR: the sites no exception covers
  local s
  sites "$1" | while IFS= read -r s; do
    allowed "$(cut -d: -f1,2 <<<"$s")" || echo "$s"
  done
}

bad=$(unlisted "$top/tools")
if [ -z "$bad" ]; then
  pass "no printing outside cmd_* and cli-errors.c but the listed exceptions"
else
  fail "helpers print instead of returning a struct cli_err:"
  sed 's/^/#   /' <<<"$bad"
fi

# Each exception still names a file (and function) that prints.
all=$(sites "$top/tools" | cut -d: -f1,2 | sort -u)
while read -r e _; do
  [ -n "$e" ] || continue
  case $e in
    *:\*) grep -q "^${e%%:*}:" <<<"$all" ;;
    *) grep -qxF "$e" <<<"$all" ;;
  esac && pass "exception $e still prints" || fail "exception $e prints nothing now: remove it"
done <<<"$exceptions"

# The scan is not blind: a helper that prints is caught, and a cmd_* file
# is not.
mkdir "$TMP/tools"
cp "$top/tools/"*.c "$TMP/tools/"
printf 'static void\nplanted (void)\n{\n  fprintf (stderr, "x\\n");\n}\n' >>"$TMP/tools/push-disks.c"
printf 'static int\nplanted2 (void)\n{\n  return cli_error ("x", "y");\n}\n' >>"$TMP/tools/pve-push.c"
printf 'static void\nplanted3 (void)\n{\n  fprintf (stderr, "x\\n");\n}\n' >>"$TMP/tools/cmd-info.c"
planted=$(unlisted "$TMP/tools")
check "a planted fprintf (stderr in push-disks.c is found" \
  grep -q '^push-disks.c:planted:' <<<"$planted"
check "a planted cli_error in pve-push.c is found" \
  grep -q '^pve-push.c:planted2:' <<<"$planted"
check "cmd-info.c may print" test -z "$(grep '^cmd-info.c:' <<<"$planted")"
check "nothing else is found in the copy" \
  test "$(wc -l <<<"$planted")" = 2

done_testing
