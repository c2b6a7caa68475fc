-- luarocks --lua-version 5.4 make                  (Lua 5.4)
-- luarocks --lua-version 5.1 make LUA_INCDIR=/usr/include/luajit-2.1
--                                                  (LuaJIT 2.1, OpenResty)
--
-- Debian's luarocks works offline with this rockspec; without
-- --lua-version it targets Lua 5.1 (the module then loads in lua5.1 and
-- LuaJIT, not in lua5.4).  type "make": the Makefile's `rock` target builds
-- luabatch.core against the headers LuaRocks gives (LUA_INCDIR), in a
-- build directory of their version's own (never one built for another
-- Lua); Lua 5.2 and 5.3 are refused.  The `luabatch`
-- executable (Lua 5.4 embedded) comes from `make install`.
rockspec_format = "3.0"
package = "luabatch"
version = "scm-1"
source = {
  url = "git+https://example.invalid/luabatch.git",
}
description = {
  summary = "Run ddeutil-workflow style YAML jobs on AWS Batch (or locally): a C core with Lua policy",
  detailed = [[
    luabatch is a small C runtime (SigV4 signing, libcurl HTTP, S3 streaming,
    job polling, YAML loading) with a Lua layer holding the policy.  It runs
    under Lua 5.4, LuaJIT 2.1 and OpenResty, and ships a `luabatch`
    executable with a REPL.
  ]],
  license = "MIT",
}
dependencies = {
  "lua >= 5.1",   -- 5.1 (LuaJIT 2.1's API) or 5.4; the Makefile refuses 5.2 and 5.3
}
external_dependencies = {
  CURL = { library = "curl" },  -- header under the multiarch include dir on Debian
  YAML = { header = "yaml.h", library = "yaml" },
  EXPAT = { header = "expat.h", library = "expat" },
  CRYPTO = { header = "openssl/evp.h", library = "crypto" },
}
build = {
  type = "make",
  build_target = "rock",
  build_variables = {
    CFLAGS = "$(CFLAGS)",
    LIBFLAG = "$(LIBFLAG)",
    LUA_INCDIR = "$(LUA_INCDIR)",
    LUA = "$(LUA)",
  },
  install_target = "install-rock",
  install_variables = {           -- the build's too: install-rock finds its build directory
    CFLAGS = "$(CFLAGS)",
    LIBFLAG = "$(LIBFLAG)",
    LUA_INCDIR = "$(LUA_INCDIR)",
    PREFIX = "$(PREFIX)",
    BINDIR = "$(BINDIR)",
    LIBDIR = "$(LIBDIR)",
    LUADIR = "$(LUADIR)",
  },
  copy_directories = { "tests", "examples" },
}
