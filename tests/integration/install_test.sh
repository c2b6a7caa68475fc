#!/bin/bash
# `make install DESTDIR=...` puts the executable, the modules, the man page
# and the bash completion in place, and the installed completion answers as
# bash would ask it (COMP_WORDS/COMP_CWORD set, the function called).
set -u
cd "$(dirname "$0")/../.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
check() {  # check DESCRIPTION COMMAND...
  local what=$1; shift
  if "$@"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: $what"; fi
}

dest=$tmp/dest
if make -s install DESTDIR="$dest" PREFIX=/usr/local >"$tmp/install.log" 2>&1; then
  pass=$((pass + 1))
else
  fail=$((fail + 1)); echo "FAIL: make install"; tail -n 20 "$tmp/install.log"
fi
p=$dest/usr/local
check "executable installed and runs" test "$("$p/bin/luabatch" --version | cut -d' ' -f1)" = luabatch
check "core module installed" test -f "$p/lib/lua/5.4/luabatch/core.so"
check "Lua modules installed" test -f "$p/share/lua/5.4/luabatch/cli.lua"
check "man page installed" grep -q '^\.TH LUABATCH 1' "$p/share/man/man1/luabatch.1"
comp=$p/share/bash-completion/completions/luabatch
check "bash completion installed" test -f "$comp"

# complete WORDS...: what the installed completion offers for the last word.
complete_words() {
  (cd "$tmp/work" && bash -c 'source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1))
    _luabatch; printf "%s\n" "${COMPREPLY[@]}"' _ "$comp" "$@")
}
mkdir -p "$tmp/work/flows" && touch "$tmp/work/wf.yml" "$tmp/work/notes.txt"
check "luabatch sta<TAB> offers status" test "$(complete_words luabatch sta)" = status
offers() { local want=$1; shift; complete_words "$@" | grep -qx -- "$want"; }
check "luabatch s3 <TAB> offers cp" offers cp luabatch s3 ''
check "luabatch status --j<TAB> offers --json" test "$(complete_words luabatch status --j)" = --json
check "luabatch -v run --fo<TAB> offers --follow" test "$(complete_words luabatch -v run --fo)" = --follow
check "luabatch run <TAB> offers workflow files and directories, not others" \
  test "$(complete_words luabatch run '' | sort | tr '\n' ' ')" = "flows wf.yml "
check "luabatch run --runs-on <TAB> offers the runner types" \
  test "$(complete_words luabatch run --runs-on '' | tr '\n' ' ')" = "local aws_batch "

echo "TEST install: $pass passed, $fail failed"
[ $fail -eq 0 ]
