#!/bin/bash
# test-cli-install.sh -- `make install DESTDIR=... PREFIX=/usr` puts the
# tool, the libraries, qcow2pbs(1) and the bash completion in place; the
# installed man page renders without warnings; the completion, sourced and
# called as bash calls it (COMP_WORDS/COMP_CWORD), completes commands,
# each command's options, option values and file names; `make uninstall`
# removes every installed file.
. "$(dirname "$0")/../helpers/functions.sh"
requires make
root=$TMP/root
make -s -C "$top" B="$B" install DESTDIR="$root" PREFIX=/usr >"$TMP/make.out" 2>&1 ||
  { fail "make install: $(tail -3 "$TMP/make.out")"; done_testing; exit; }
for f in bin/qcow2pbs include/qcowlib.h include/pbsproto.h lib/libqcowlib.a \
         lib/libpbsproto.a share/man/man1/qcow2pbs.1 \
         share/bash-completion/completions/qcow2pbs; do
  check "installed /usr/$f" test -s "$root/usr/$f"
done
check "the tool is executable" test -x "$root/usr/bin/qcow2pbs"
man1=$root/usr/share/man/man1/qcow2pbs.1
if command -v man >/dev/null; then
  LC_ALL=C MANWIDTH=80 man --warnings -l "$man1" >"$TMP/man.txt" 2>"$TMP/man.err" || true
  check "installed man page renders without warnings ($(head -1 "$TMP/man.err"))" \
    test ! -s "$TMP/man.err" -a -n "$(grep -F -- '--backup-id' "$TMP/man.txt")"
fi

# Completion, with the installed tool first on PATH, in a clean bash.
mkdir "$TMP/files" && touch "$TMP/files/full.qcow2" "$TMP/files/incr0.qcow2"
complete_words () { # complete_words WORD... : COMPREPLY for the last WORD
  (cd "$TMP/files" && PATH=$root/usr/bin:$PATH bash --norc --noprofile -c '
    source "$1"; shift
    COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1))
    _qcow2pbs
    [ ${#COMPREPLY[@]} = 0 ] || printf "%s\n" "${COMPREPLY[@]}" | sort | tr "\n" " "' \
    _ "$root/usr/share/bash-completion/completions/qcow2pbs" "$@")
}
expect_completion () { # DESCRIPTION EXPECTED WORD...
  local d=$1 want=$2 got; shift 2
  got=$(complete_words "$@")
  if [ "$got" = "$want" ]; then pass "$d"; else fail "$d: got '$got', want '$want'"; fi
}
expect_completion "commands" "push " qcow2pbs pu
expect_completion "all commands and help" \
  "--help --version -V bitmap check export help import info key map push restore snapshots verify " qcow2pbs ""
expect_completion "push options" "--backup-id --backup-time --backup-type " qcow2pbs push --backup-
expect_completion "restore --progress/--quiet" "--progress " qcow2pbs restore --pro
expect_completion "option values" "json text " qcow2pbs info --output-format ""
expect_completion "backup types" "ct host vm " qcow2pbs push --backup-type ""
expect_completion "key subcommands" "--help create show " qcow2pbs key ""
expect_completion "key create options" "--kdf " qcow2pbs key create --k
expect_completion "files for IMAGE" "full.qcow2 " qcow2pbs push f
expect_completion "files for --keyfile" "incr0.qcow2 " qcow2pbs push --keyfile i
expect_completion "--chain: files after the comma" "full.qcow2,incr0.qcow2 " qcow2pbs info --chain full.qcow2,i
expect_completion "help COMMAND" "snapshots " qcow2pbs help sn
expect_completion "nothing for --backup-id's value" "" qcow2pbs push --backup-id f

make -s -C "$top" B="$B" uninstall DESTDIR="$root" PREFIX=/usr >"$TMP/make.out" 2>&1 ||
  fail "make uninstall: $(tail -3 "$TMP/make.out")"
left=$(find "$root" ! -type d)
check "make uninstall leaves no file${left:+ (left: $left)}" test -z "$left"
done_testing
