-- Specs for loading libcurl on first HTTP use (src/lb_curl.h): start-up
-- does not map libcurl, the first http client does, and without libcurl
-- the first client fails with EHTTP naming the library while everything
-- else keeps working.  Run in child processes: the load is once per process.

local ROOT = os.getenv("PWD") or "."
local IMPL = os.getenv("LUABATCH_TEST_LUA") or (rawget(_G, "jit") and "luajit" or "lua5.4")
local EXE = os.getenv("LUABATCH_TEST_EXE") or (ROOT .. "/build/lua5.4/bin/luabatch")

-- Lua that prints whether libcurl is mapped, before and after a client.
local PROBE = [[
local function mapped()
  local f = assert(io.open("/proc/self/maps"))
  local m = f:read("*a"):find("libcurl", 1, true) ~= nil
  f:close()
  return tostring(m)
end
local core = require "luabatch.core"
local before = mapped()
local c, msg, code = core.http_client{}
io.write(before, " ", mapped(), " ", tostring(c ~= nil), " ", tostring(code), " ", tostring(msg), "\n")
]]

local function sh_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local function run(cmd)
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = p:read("*a")
  p:close()
  return out
end

local function module_cmd(env)
  return env .. " LUA_PATH=" .. sh_quote(ROOT .. "/lua/?.lua;" .. ROOT .. "/lua/?/init.lua;;")
    .. " LUA_CPATH=" .. sh_quote(ROOT .. "/build/" .. IMPL .. "/?.so;;") .. " " .. IMPL
    .. " -e " .. sh_quote(PROBE)
end

describe("libcurl loaded on first HTTP use #unit", function()
  it("the module maps libcurl only when the first http client is made", function()
    assert.are.equal("false true true nil nil\n", run(module_cmd("")))
  end)

  it("the executable starts without libcurl and loads it for HTTP", function()
    assert.are.equal("false true true nil nil\n", run(sh_quote(EXE) .. " -e " .. sh_quote(PROBE)))
  end)

  it("without libcurl: a clear EHTTP error at the first client, the rest works", function()
    local out = run(module_cmd("LUABATCH_LIBCURL=/nonexistent/libcurl.so.4"))
    assert.truthy(out:find("^false false false EHTTP http client: libcurl is not available "
      .. "%(/nonexistent/libcurl%.so%.4; install libcurl4%)"), out)
    out = run("LUABATCH_LIBCURL=/nonexistent/libcurl.so.4 " .. sh_quote(EXE)
      .. " -e " .. sh_quote("print(require('luabatch.core').sha256(''))"))
    assert.are.equal("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n", out)
    assert.truthy(run("LUABATCH_LIBCURL=/nonexistent " .. sh_quote(EXE) .. " --version"):find("luabatch"))
  end)
end)
