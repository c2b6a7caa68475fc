-- luarocks make   (Debian's luarocks works offline with this rockspec)
--
-- type "make": the Makefile builds both the luabatch.core module and the
-- luabatch executable (which builtin cannot), taking LuaRocks' variables.
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
  "lua >= 5.1",
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
  install_variables = {
    PREFIX = "$(PREFIX)",
    BINDIR = "$(BINDIR)",
    LIBDIR = "$(LIBDIR)",
    LUADIR = "$(LUADIR)",
  },
  copy_directories = { "tests", "examples" },
}
