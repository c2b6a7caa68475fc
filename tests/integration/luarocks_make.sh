#!/bin/sh
# `luarocks make` with the rockspec (Debian's luarocks, offline) into a
# throw-away tree, then load the installed modules with the Lua it targets.
set -u
tree=$(mktemp -d)
trap 'rm -rf "$tree" build/rock' EXIT
pass=0 fail=0
if luarocks make --tree "$tree" luabatch-scm-1.rockspec >"$tree.log" 2>&1; then
  pass=$((pass + 1))
else
  fail=$((fail + 1)); cat "$tree.log"
fi
rm -f "$tree.log"
lv=$(luarocks config lua_version 2>/dev/null || echo 5.1)
out=$(eval "$(luarocks --tree "$tree" path)"; cd /tmp && "lua$lv" -e '
  local core = require "luabatch.core"
  local r = assert(core.sigv4_sign{ method = "GET", url = "https://example.amazonaws.com/",
    service = "service", region = "us-east-1", access_key = "AKIDEXAMPLE",
    secret_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", date = "20150830T123600Z" })
  print(r.signature, require("luabatch.config")._VERSION)' 2>&1)
if [ "$out" = "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31	0.1.0" ]; then
  pass=$((pass + 1))
else
  fail=$((fail + 1)); echo "installed modules did not load: $out"
fi
echo "TEST luarocks-make: $pass passed, $fail failed"
[ $fail -eq 0 ]
