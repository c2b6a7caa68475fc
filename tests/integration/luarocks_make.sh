#!/bin/sh
# `luarocks make` as the README gives it, from a clean tree (a clone of
# HEAD), offline: first for Lua 5.4, then -- in the same clone, so a build
# for one Lua must not be reused for the other -- for LuaJIT (LuaRocks'
# Lua 5.1 with LuaJIT's headers); each installed into a throw-away tree and
# loaded there by its interpreter (lua5.4, luajit): the core signs the AWS
# test-suite request, the Lua modules load.
set -u
cd "$(dirname "$0")/../.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); }
ko() { fail=$((fail + 1)); echo "FAIL: $*"; }

git clone -q . "$tmp/src" || { echo "TEST luarocks-make: 0 passed, 1 failed"; exit 1; }

LOAD='
  local core = require "luabatch.core"
  local r = assert(core.sigv4_sign{ method = "GET", url = "https://example.amazonaws.com/",
    service = "service", region = "us-east-1", access_key = "AKIDEXAMPLE",
    secret_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", date = "20150830T123600Z" })
  local where = package.searchpath("luabatch.core", package.cpath)
  print(r.signature, require("luabatch.config")._VERSION, require("luabatch.s3") ~= nil,
    where:sub(1, #TREE) == TREE)'
WANT="5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31	0.1.0	true	true"

# rock VERSION INTERPRETER [VAR=VALUE...]: luarocks make, then load.
rock() {
  v=$1 interp=$2; shift 2
  tree=$tmp/tree-$interp
  if (cd "$tmp/src" && luarocks --lua-version "$v" make --tree "$tree" luabatch-scm-1.rockspec "$@") \
       >"$tmp/$interp.log" 2>&1; then
    ok
  else
    ko "luarocks --lua-version $v make $*"; tail -n 30 "$tmp/$interp.log"
    return
  fi
  out=$(eval "$(luarocks --lua-version "$v" --tree "$tree" path)"; cd /tmp &&
        "$interp" -e "TREE='$tree'" -e "$LOAD" 2>&1)
  if [ "$out" = "$WANT" ]; then ok; else ko "the $interp rock did not load from its tree: $out"; fi
}

rock 5.4 lua5.4
rock 5.1 luajit LUA_INCDIR=/usr/include/luajit-2.1

# Lua 5.2 and 5.3 are refused with a clear message, not half built.
mkdir -p "$tmp/inc53" && printf '#define LUA_VERSION_NUM\t503\n' > "$tmp/inc53/lua.h"
if msg=$(cd "$tmp/src" && make -s rock LUA_INCDIR="$tmp/inc53" 2>&1); then
  ko "make rock accepted Lua 5.3 headers"
else
  case $msg in *"builds for Lua 5.4, or 5.1"*) ok ;; *) ko "make rock for 5.3: $msg" ;; esac
fi

echo "TEST luarocks-make: $pass passed, $fail failed"
[ $fail -eq 0 ]
