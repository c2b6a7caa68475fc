-- Facts defined once: AWS Batch's terminal states and the throttling error
-- codes each have one literal definition under lua/ (luabatch.batch and
-- luabatch.retry); every other module uses those tables.  A second literal
-- creeping back fails here.

local ROOT = os.getenv("ROOT") or "."


-- Every .lua file under lua/ -> { path = text }.
local function sources()
  local out = {}
  local p = assert(io.popen("find '" .. ROOT .. "/lua' -name '*.lua' -type f | sort"))
  for path in p:lines() do
    local f = assert(io.open(path, "rb"))
    out[path:sub(#ROOT + 2)] = f:read("*a")
    f:close()
  end
  p:close()
  return out
end


-- The files (relative paths, sorted) whose code matches pattern; comments
-- are ignored.
local function files_with(src, pattern)
  local hits = {}
  for path, text in pairs(src) do
    for line in (text .. "\n"):gmatch("([^\n]*)\n") do
      local code = line:gsub("%-%-.*$", "")
      if code:find(pattern) then
        hits[#hits + 1] = path
        break
      end
    end
  end
  table.sort(hits)
  return hits
end


describe("facts defined once #unit", function()
  local src = sources()

  it("finds the Lua sources", function()
    assert.is_truthy(src["lua/luabatch/batch.lua"])
    assert.is_truthy(src["lua/luabatch/retry.lua"])
  end)

  it("has one literal set of Batch's terminal states (luabatch.batch)", function()
    for _, key in ipairs({ "SUCCEEDED", "FAILED" }) do
      assert.same({ "lua/luabatch/batch.lua" }, files_with(src, "%f[%w_]" .. key .. "%s*=%s*true"), key)
    end
    -- the synthetic MISSING: named once, and FINAL is built from TERMINAL
    assert.same({ "lua/luabatch/batch.lua" }, files_with(src, "MISSING%s*=%s*\"MISSING\""))
    assert.same({}, files_with(src, "%f[%w_]MISSING%s*=%s*true"))
  end)

  it("has one literal list of throttling codes (luabatch.retry)", function()
    for _, key in ipairs({ "ThrottlingException", "TooManyRequestsException", "Throttling", "HTTP_429" }) do
      assert.same({ "lua/luabatch/retry.lua" }, files_with(src, "%f[%w_]" .. key .. "%s*=%s*true"), key)
    end
  end)

  it("shares those tables everywhere", function()
    local batch = require "luabatch.batch"
    local retry = require "luabatch.retry"
    assert.same({ SUCCEEDED = true, FAILED = true }, batch.TERMINAL)
    assert.same({ SUCCEEDED = true, FAILED = true, MISSING = true }, batch.FINAL)
    assert.equal("MISSING", batch.MISSING)
    for code in pairs(retry.THROTTLING_CODES) do assert.is_true(retry.THROTTLED[code], code) end
    assert.is_true(retry.THROTTLED.HTTP_429)
    assert.equal(batch.FINAL, require("luabatch.runner.aws_batch.session").TERMINAL)
    assert.equal(retry.THROTTLED, require("luabatch.runner.aws_batch.session").THROTTLE)
    assert.equal(batch.FINAL, require("luabatch.ngx.poller").TERMINAL)
  end)
end)
