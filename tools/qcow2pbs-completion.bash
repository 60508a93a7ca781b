# bash completion for qcow2pbs: commands, each command's options and their
# values, file names.  The options are read from `qcow2pbs help COMMAND`
# when completing, so they are never out of date with the tool itself.
# Installed by `make install` as share/bash-completion/completions/qcow2pbs.

# _qcow2pbs_help TOOL CMD [SUB]: the option lines of CMD's help, one per
# line as "NAMES<TAB>ARG": "--repository<TAB>REPO", "-q --quiet<TAB>".
_qcow2pbs_options () {
  "$@" --help 2>/dev/null | awk '
    /^  -/ {
      names = ""; arg = ""
      for (i = 1; i <= NF; i++) {
        w = $i
        sub(/,$/, "", w)
        if (w ~ /^-/) names = names (names ? " " : "") w
        else { if (w ~ /^[A-Z]|\|/) arg = w; break }
      }
      print names "\t" arg
    }'
}

_qcow2pbs () {
  local cur=${COMP_WORDS[COMP_CWORD]} prev=
  local tool=${COMP_WORDS[0]} cmd=${COMP_WORDS[1]:-} line names arg opts=
  local -a help_cmd
  ((COMP_CWORD > 0)) && prev=${COMP_WORDS[COMP_CWORD - 1]}
  COMPREPLY=()
  tool=${tool/#\~/$HOME}
  type -P "$tool" >/dev/null 2>&1 || [[ -x $tool ]] || tool=qcow2pbs

  local commands
  commands=$("$tool" --help 2>/dev/null |
             awk '/^Commands:/ { on = 1; next } on && /^  [a-z]/ { print $1 }')
  if ((COMP_CWORD == 1)); then
    COMPREPLY=($(compgen -W "$commands help --help --version -V" -- "$cur"))
    return
  fi
  case $cmd in
    help)
      ((COMP_CWORD == 2)) && COMPREPLY=($(compgen -W "$commands" -- "$cur"))
      return ;;
    key)
      if ((COMP_CWORD == 2)); then
        COMPREPLY=($(compgen -W "create show --help" -- "$cur"))
        return
      fi
      help_cmd=("$tool" key "${COMP_WORDS[2]}") ;;
    *) help_cmd=("$tool" "$cmd") ;;
  esac

  # The value of the option before the cursor: a choice ("text|json"),
  # file names for a FILE/IMAGE/REPO-like value, nothing for others.
  while IFS=$'\t' read -r names arg; do
    opts+=" $names"
    if [[ -n $arg && " $names " == *" $prev "* ]]; then
      if [[ $arg == *"|"* ]]; then
        COMPREPLY=($(compgen -W "${arg//|/ }" -- "$cur"))
      elif [[ $arg == *,* ]]; then        # --chain A,B,C: a list of files
        local head=
        [[ $cur == *,* ]] && head=${cur%,*},
        COMPREPLY=($(compgen -f -- "${cur##*,}"))
        COMPREPLY=("${COMPREPLY[@]/#/$head}")
        compopt -o nospace 2>/dev/null
      else
        case $arg in
          FILE|IMAGE|REPO|DIR|OUT*)
            compopt -o filenames 2>/dev/null
            COMPREPLY=($(compgen -f -- "$cur")) ;;
        esac
      fi
      return
    fi
  done < <(_qcow2pbs_options "${help_cmd[@]}")

  if [[ $cur == -* ]]; then
    COMPREPLY=($(compgen -W "$opts" -- "$cur"))
    return
  fi
  compopt -o filenames 2>/dev/null
  COMPREPLY=($(compgen -f -- "$cur"))
}
complete -F _qcow2pbs qcow2pbs
