-- tests/helpers/nginx.lua: a private nginx with the lua module starts on a
-- free loopback port, finds the luabatch Lua modules and the LuaJIT build of
-- luabatch.core, and stops (only its own master).
local nginx = require "helpers.nginx"

local function sh(cmd)
  local p = io.popen(cmd)
  local out = p:read("*a")
  p:close()
  return out
end

local function get(url)
  return sh("curl -s --max-time 10 -w '%{http_code}' " .. "'" .. url .. "'")
end

describe("tests/helpers/nginx.lua #integration", function()
  local ng

  setup(function()
    local ok, why = nginx.available()
    if not ok then return end
    local err
    ng, err = nginx.start({
      env = { LB_HELPER_SPEC = "from-env" },
      server_extra = [[
        location = /hello { content_by_lua_block { ngx.say("hello ", ngx.config.ngx_lua_version) } }
        location = /env { content_by_lua_block { ngx.say(os.getenv("LB_HELPER_SPEC")) } }
        location = /prefix { return 200 "@PREFIX@"; }
        location = /modules {
          content_by_lua_block {
            local log = require "luabatch.log"
            local core = require "luabatch.core"
            local info = debug.getinfo(log.info, "S").source
            ngx.say(info:match("lua/luabatch/log%.lua$") and "log-from-repo" or info)
            ngx.say(package.searchpath and package.searchpath("luabatch.core", package.cpath) or "?")
            ngx.say(core.sha256("abc"))
          }
        }
        location = /sign {
          content_by_lua_block {
            local core = require "luabatch.core"
            local res = assert(core.sigv4_sign({
              method = "GET", url = "https://examplebucket.s3.amazonaws.com/test.txt",
              headers = { { "Range", "bytes=0-9" } }, payload_hash =
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
              region = "us-east-1", service = "s3",
              access_key = "AKIAIOSFODNN7EXAMPLE",
              secret_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
              date = "20130524T000000Z" }))
            ngx.say(res.signature)
          }
        }
      ]],
    })
    assert(ng, err)
  end)

  teardown(function() if ng then ng.stop() end end)

  it("serves a content_by_lua handler and passes env through", function()
    if not ng then pending("nginx with the lua module is not installed") return end
    assert.matches("^hello %d+\n200$", get(ng.url .. "/hello"))
    assert.equal("from-env\n200", get(ng.url .. "/env"))
    assert.equal(ng.prefix .. "200", get(ng.url .. "/prefix"))
    assert.is_true(#ng.worker_pids() >= 1)
  end)

  it("finds luabatch modules and build/luajit/luabatch/core.so", function()
    if not ng then pending("nginx with the lua module is not installed") return end
    local out = get(ng.url .. "/modules")
    assert.matches("^log%-from%-repo\n", out)
    assert.matches("build/luajit/luabatch/core%.so\n", out)
    assert.matches("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\n200$", out)
  end)

  it("signs with core.sigv4_sign inside nginx (AWS's GET-with-Range example)", function()
    if not ng then pending("nginx with the lua module is not installed") return end
    assert.equal("f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41\n200",
      get(ng.url .. "/sign"))
  end)

  it("stop() ends its own master and its workers", function()
    if not ng then pending("nginx with the lua module is not installed") return end
    local other = assert(nginx.start({}))
    finally(function() other.stop() end)
    local pid, workers = ng.pid, ng.worker_pids()
    assert.is_true(#workers > 0, "no worker pids found (is pgrep installed?)")
    ng.stop()
    assert.is_false(os.execute("kill -0 " .. pid .. " 2>/dev/null") == true
      or os.execute("kill -0 " .. pid .. " 2>/dev/null") == 0)
    for _, w in ipairs(workers) do
      local f = io.open("/proc/" .. w .. "/stat")
      local state = f and f:read("a"):match("^%d+ %b() (%a)")
      if f then f:close() end
      assert.is_true(state == nil or state == "Z", "worker " .. w .. " still runs")
    end
    assert.equal("204", get(other.url .. "/_ngx_helper_ping"))
    assert.equal("000", get(ng.url .. "/hello"))
    other.stop()
    ng = nil
  end)
end)
