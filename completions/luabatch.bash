# bash completion for luabatch -- installed by `make install` as
# $(PREFIX)/share/bash-completion/completions/luabatch.
# Completes the commands, each command's options (kept equal to its parser
# by tests/unit/cli_usage_spec.lua: every one offered), run's workflow files (*.yml, *.yaml),
# run ids from the journal ($LUABATCH_HOME/runs), s3's subcommands, and the
# values of a few options (directories, files, runs-on types).

# _luabatch_options COMMAND: the options COMMAND takes.
_luabatch_options() {
  case $1 in
    run)     echo "-j --job -p --param -c --conf --json --runs-on --with --policy -f --follow --run-id --resume -h --help" ;;
    runs)    echo "--json --limit --home -h --help" ;;
    status)  echo "--json --home -h --help" ;;
    logs)    echo "--job --since -f --follow --home -h --help" ;;
    cancel)  echo "--reason --home -h --help" ;;
    attach)  echo "--follow --json --home -h --help" ;;
    cleanup) echo "--purge --older-than --dry-run --force --home -h --help" ;;
    s3)      echo "-r --recursive -q --quiet --content-type --metadata --part-size --concurrency --expires --method --local --older-than --dry-run --dryrun --exclude --include --delete --unsigned-payload --region --endpoint-url --addressing -h --help" ;;
    sign)    echo "-H --header --body --body-file --service --region --date --presign --unsigned-payload -h --help" ;;
    task)    echo "-s --strategy -h --help" ;;
  esac
}

_luabatch_commands="run runs status logs cancel attach cleanup s3 sign task help"

# The run ids under the journal home, newest first.
_luabatch_runs() {
  local home=${LUABATCH_HOME:-$HOME/.luabatch}
  [ -d "$home/runs" ] && ls -t "$home/runs" 2>/dev/null
}

_luabatch() {
  local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
  local i cmd="" npos=0
  COMPREPLY=()
  for ((i = 1; i < COMP_CWORD; i++)); do
    case ${COMP_WORDS[i]} in
      -v|-vv) ;;
      *) cmd=${COMP_WORDS[i]}; break ;;
    esac
  done
  if [ -z "$cmd" ]; then
    if [[ $cur == -* ]]; then
      COMPREPLY=($(compgen -W "-v -vv -e --version --help" -- "$cur"))
    else
      COMPREPLY=($(compgen -W "$_luabatch_commands" -- "$cur"))
    fi
    return 0
  fi
  case $prev in                       # an option's value
    --home|--conf|-c|--local) COMPREPLY=($(compgen -d -- "$cur")); return 0 ;;
    --policy|--body-file) COMPREPLY=($(compgen -f -- "$cur")); return 0 ;;
    --runs-on) COMPREPLY=($(compgen -W "local aws_batch" -- "$cur")); return 0 ;;
    --addressing) COMPREPLY=($(compgen -W "auto path virtual" -- "$cur")); return 0 ;;
    --method) COMPREPLY=($(compgen -W "GET PUT" -- "$cur")); return 0 ;;
    --resume) COMPREPLY=($(compgen -W "last $(_luabatch_runs)" -- "$cur")); return 0 ;;
    -j|--job|-p|--param|--with|--run-id|--limit|--since|--reason|--older-than|--content-type|\
    --metadata|--part-size|--concurrency|--expires|--region|--endpoint-url|-H|--header|--body|\
    --service|--date|--presign|-s|--strategy) return 0 ;;
  esac
  if [[ $cur == -* ]]; then
    COMPREPLY=($(compgen -W "$(_luabatch_options "$cmd")" -- "$cur"))
    return 0
  fi
  for ((i = i + 1; i < COMP_CWORD; i++)); do
    [[ ${COMP_WORDS[i]} == -* ]] || npos=$((npos + 1))
  done
  case $cmd in
    run)
      local f
      compopt -o filenames 2>/dev/null
      for f in $(compgen -f -- "$cur"); do
        if [ -d "$f" ]; then COMPREPLY+=("$f")
        else case $f in *.yml|*.yaml) COMPREPLY+=("$f") ;; esac
        fi
      done ;;
    status|logs|cancel|attach|cleanup)
      [ $npos -eq 0 ] && COMPREPLY=($(compgen -W "$(_luabatch_runs)" -- "$cur")) ;;
    s3)
      if [ $npos -eq 0 ]; then COMPREPLY=($(compgen -W "cp sync ls rm mb presign abort-uploads" -- "$cur"))
      else compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -f -- "$cur"))
      fi ;;
    help) ;;
    *) compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -f -- "$cur")) ;;
  esac
  return 0
}

complete -F _luabatch luabatch
