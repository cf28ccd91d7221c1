# bash completion for kiln and kiln-dist (zsh: autoload -U bashcompinit && bashcompinit first).
# Install: source this file from ~/.bashrc, or copy it to /etc/bash_completion.d/ (or
# ~/.local/share/bash-completion/completions/kiln and …/kiln-dist).

_kiln() {
  local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
  local opts="--start-server --stop-server -s --show-stats --stats-format -z --zero-stats -C --clear
    -M --max-size -p --show-config --dist-status --dist-test-conn --install-bins --package-toolchain
    --help --version"
  if [ "$COMP_CWORD" -eq 1 ]; then
    if [[ $cur == -* ]]; then
      mapfile -t COMPREPLY < <(compgen -W "$opts" -- "$cur")
    else
      mapfile -t COMPREPLY < <(compgen -c -- "$cur")
    fi
    return
  fi
  case $prev in
    --stats-format) mapfile -t COMPREPLY < <(compgen -W "text json" -- "$cur"); return ;;
    -s | --show-stats) mapfile -t COMPREPLY < <(compgen -W "--stats-format" -- "$cur"); return ;;
    -C | --clear) mapfile -t COMPREPLY < <(compgen -W "--toolchains" -- "$cur"); return ;;
    --dist-status) mapfile -t COMPREPLY < <(compgen -W "--json" -- "$cur"); return ;;
    --install-bins) mapfile -t COMPREPLY < <(compgen -d -- "$cur"); return ;;
    -M | --max-size) return ;;
  esac
  if [[ ${COMP_WORDS[1]} == --package-toolchain && $COMP_CWORD -eq 2 ]]; then
    mapfile -t COMPREPLY < <(compgen -c -- "$cur")
    return
  fi
  # kiln <compiler> <args…>: complete as for the compiler (files), with bash-completion's help
  # when it is installed.
  if declare -F _command_offset >/dev/null; then
    _command_offset 1
  else
    mapfile -t COMPREPLY < <(compgen -f -- "$cur")
  fi
}

_kiln_dist() {
  local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
  local cmd=${COMP_WORDS[1]} sub=${COMP_WORDS[2]}
  case $prev in
    --config)
      mapfile -t COMPREPLY < <(compgen -d -- "$cur"; compgen -f -- "$cur" | grep -E '\.(toml|conf)$')
      return
      ;;
    --out | --secret-key-file) mapfile -t COMPREPLY < <(compgen -f -- "$cur"); return ;;
    --worker | --server | --days) return ;;
  esac
  if [ "$COMP_CWORD" -eq 1 ]; then
    mapfile -t COMPREPLY < <(compgen -W "scheduler worker tls auth migrate-config help --help --version" -- "$cur")
    return
  fi
  local words=""
  case $cmd in
    scheduler | worker) words="--config" ;;
    migrate-config) mapfile -t COMPREPLY < <(compgen -f -- "$cur"); return ;;
    tls) [ "$COMP_CWORD" -eq 2 ] && words="fingerprint --help" || words="--config" ;;
    auth)
      if [ "$COMP_CWORD" -eq 2 ]; then
        words="generate-jwt-hs256-key generate-jwt-hs256-worker-token rotate-worker-token generate-jwt-hs256-server-token --help"
      else
        case $sub in
          generate-jwt-hs256-key) words="--out" ;;
          generate-jwt-hs256-worker-token) words="--worker --days --out --config --secret-key-file" ;;
          rotate-worker-token) words="--worker --out --days --config --secret-key-file" ;;
          generate-jwt-hs256-server-token) words="--server --days --out --config --secret-key-file" ;;
        esac
      fi
      ;;
  esac
  mapfile -t COMPREPLY < <(compgen -W "$words" -- "$cur")
}

complete -F _kiln kiln
complete -F _kiln_dist kiln-dist
