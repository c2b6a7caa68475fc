-- The `luabatch` executable as users run it: from any directory with no
-- LUA_PATH, scripts with arguments and exit codes, -e, `sign`, and SIGINT
-- stopping an HTTP transfer in progress.
local core = require "luabatch.core"

local ROOT = os.getenv("PWD")
local EXE = ROOT .. "/build/lua5.4/bin/luabatch"

-- Run a shell command; return its stdout, stderr and exit code.
local function run(cmd)
  local errf = os.tmpname()
  local p = io.popen("( " .. cmd .. " ) 2>" .. errf .. "; echo \"<rc=$?>\"")
  local out = p:read("a")
  p:close()
  local f = io.open(errf)
  local err = f:read("a")
  f:close()
  os.remove(errf)
  local rc = tonumber(out:match("<rc=(%d+)>%s*$"))
  return out:gsub("<rc=%d+>%s*$", ""), err, rc
end

local function in_tmp(cmd)  -- from an empty directory, no Lua search paths
  return run("cd /tmp && env -u LUA_PATH -u LUA_CPATH -u LUA_PATH_5_4 -u LUA_CPATH_5_4 " .. cmd)
end

describe("luabatch executable #integration", function()
  it("prints its version", function()
    local out, _, rc = in_tmp(EXE .. " --version")
    assert.are.equal(0, rc)
    assert.is_truthy(out:match("^luabatch %d+%.%d+%.%d+ %(Lua 5%.4%)"))
  end)

  it("runs scripts from any directory with its modules preloaded", function()
    local script = os.tmpname()
    local f = io.open(script, "w")
    f:write([[
      local core = require "luabatch.core"
      local cjson = require "cjson"
      local repl = require "luabatch.repl"
      assert(package.searchpath("luabatch.repl", package.path) == nil, "must not come from LUA_PATH")
      print(select("#", ...), table.concat({ ... }, ","), arg[0] ~= nil, cjson.encode({ core.sha256("abc") }))
      return 7
    ]])
    f:close()
    local out, err, rc = in_tmp(EXE .. " " .. script .. " one two")
    os.remove(script)
    assert.are.equal("", err)
    assert.are.equal(7, rc)
    assert.are.equal('2\tone,two\ttrue\t["ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"]\n', out)
  end)

  it("reports a script error with exit code 1 and a missing script with 2", function()
    local _, err, rc = in_tmp(EXE .. " -e 'error(\"boom\")'")
    assert.are.equal(1, rc)
    assert.is_truthy(err:find("boom", 1, true))
    _, err, rc = in_tmp(EXE .. " /nonexistent/script.lua")
    assert.are.equal(2, rc)
    assert.is_truthy(err:find("/nonexistent/script.lua", 1, true))
    _, err, rc = in_tmp(EXE .. " --no-such-option")
    assert.are.equal(2, rc)
    assert.is_truthy(err:find("unknown option --no-such-option", 1, true))
  end)

  it("refuses a mistyped command with a suggestion (exit 2), and still runs an existing script", function()
    local out, err, rc = in_tmp(EXE .. " stauts")
    assert.are.equal(2, rc)
    assert.are.equal("", out)
    assert.is_truthy(err:find("luabatch: unknown command 'stauts' (did you mean 'status'?)", 1, true), err)
    assert.is_nil(err:find("cannot open", 1, true))
    _, err, rc = in_tmp(EXE .. " xyzzy")
    assert.are.equal(2, rc)
    assert.is_truthy(err:find("unknown command 'xyzzy'\n", 1, true), err)
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir " .. dir .. " && printf 'return 5' > " .. dir .. "/stauts"))
    _, err, rc = run("cd " .. dir .. " && " .. EXE .. " stauts")   -- a file of that name: a script
    os.execute("rm -rf " .. dir)
    assert.are.equal(5, rc, err)
  end)

  it("signs the AWS test-suite vanilla request with `sign`", function()
    local out, err, rc = in_tmp("env -u AWS_SESSION_TOKEN -u AWS_PROFILE AWS_ACCESS_KEY_ID=AKIDEXAMPLE "
      .. "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY "
      .. EXE .. " sign GET https://example.amazonaws.com/ --service service --region us-east-1 "
      .. "--date 20150830T123600Z")
    assert.are.equal(0, rc, err)
    assert.is_truthy(out:find("Signature: 5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31", 1, true))
    assert.is_nil(out:find("wJalrXUtnFEMI", 1, true))
    local _, _, bad = in_tmp(EXE .. " sign")
    assert.are.equal(2, bad)
  end)

  it("stops an HTTP transfer in progress on SIGINT", function()
    local server = assert(io.popen("echo $$; exec /usr/bin/python3 tests/servers/httpd.py --port 0"))
    local spid = tonumber(server:read("l"))
    local port = tonumber(server:read("l"))
    finally(function() os.execute("kill " .. spid); server:close() end)
    local code = ("local r, m, c = require('luabatch.core').http_request{url='http://127.0.0.1:%d/slow?delay=30'} "
      .. "print(r, m, c)"):format(port)
    local t0 = core.monotime()
    -- The executable ignores nothing: SIGINT 1 s after start must end the
    -- 30 s request and the script promptly.
    local out, err, rc = run(("%s -e %q & pid=$!; sleep 1; kill -INT $pid; wait $pid"):format(EXE, code))
    local took = core.monotime() - t0
    assert.is_true(took < 20, "took " .. took .. " s (the request alone: 30 s)")
    assert.are_not.equal(0, rc)
    assert.is_truthy((out .. err):find("interrupted", 1, true), out .. err)
  end)
end)
