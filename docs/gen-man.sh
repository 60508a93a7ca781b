#!/bin/sh
# gen-man.sh TOOL TEMPLATE -- print qcow2pbs(1): TEMPLATE (docs/qcow2pbs.1.in)
# with its @COMMANDS@ line replaced by every command's --help text in roff.
# The help texts in tools/cmd-*.c are the one source of the options: a new
# option described there appears here at the next build.
#
# The help texts follow one layout, which this relies on:
#   "Usage: qcow2pbs CMD ..." and "       qcow2pbs CMD ..." lines,
#   prose lines starting in column 0, blank lines between paragraphs,
#   option lines "  -o, --opt ARG   text" (the text after 2+ spaces) and
#   their continuation lines indented by more than 4 spaces.
# A command whose usage names subcommands (key create, key show) is
# described by each subcommand's help.
set -eu
tool=$1 template=$2

commands=$("$tool" --help | awk '/^Commands:/ { on = 1; next } on && /^  [a-z]/ { print $1 }')

# The names after "qcow2pbs CMD" in CMD's usage lines that are
# subcommands (lower-case words), e.g. "create" and "show" for key.
subcommands () {
  "$tool" help "$1" | awk -v c="$1" '
    /^(Usage:|      ) +qcow2pbs / {
      for (i = 1; i < NF; i++)
        if ($i == "qcow2pbs" && $(i + 1) == c && $(i + 2) ~ /^[a-z][a-z-]*$/)
          print $(i + 2)
    }' | uniq
}

# roff for one help text on stdin.
to_roff () {
  awk -v name="$1" '
    function esc(s) {
      gsub(/\\/, "\\e", s)
      return s
    }
    # Option names in bold with \- for their dashes; arguments in italics.
    function optspec(s,   n, w, i, out, t) {
      n = split(s, w, " ")
      out = ""
      for (i = 1; i <= n; i++) {
        t = esc(w[i])
        if (t ~ /^-/) {
          sub(/,$/, "", t)
          gsub(/-/, "\\-", t)
          t = "\\fB" t "\\fR" (w[i] ~ /,$/ ? "," : "")
        }
        else
          t = "\\fI" t "\\fR"
        out = out (i > 1 ? " " : "") t
      }
      return out
    }
    function text(s) {
      s = esc(s)
      if (s ~ /^[.\047]/)
        s = "\\&" s
      return s
    }
    BEGIN { print ".SS \"qcow2pbs " name "\"" }
    /^Usage: / || (/^       qcow2pbs / && state == "usage") {
      if (state != "usage") { print ".nf"; state = "usage" }
      sub(/^(Usage:)? +/, "")
      print text($0)
      next
    }
    state == "usage" { print ".fi"; state = "" }
    /^$/ { if (state != "para") print ".PP"; state = "para"; next }
    /^  -/ {
      line = $0
      sub(/^  /, "", line)
      spec = line; desc = ""
      if (match(line, /   *[^ ]/) && RSTART > 1) {
        spec = substr(line, 1, RSTART - 1)
        desc = substr(line, RSTART + RLENGTH - 1)
      }
      print ".TP"
      print optspec(spec)
      if (desc != "") print text(desc)
      state = "opt"
      next
    }
    /^     / && state == "opt" { sub(/^ +/, ""); print text($0); next }
    { if (state == "opt") print ".PP"; sub(/^ +/, ""); print text($0); state = "text" }
    END { if (state == "usage") print ".fi" }
  '
}

body=$(
  for c in $commands; do
    subs=$(subcommands "$c")
    if [ -n "$subs" ]; then
      for s in $subs; do "$tool" help "$c" "$s" | to_roff "$c $s"; done
    else
      "$tool" help "$c" | to_roff "$c"
    fi
  done
)
# ENVIRON, not -v: awk would interpret the backslashes of -v values.
BODY=$body awk '$0 == "@COMMANDS@" { print ENVIRON["BODY"]; next } { print }' "$template"
