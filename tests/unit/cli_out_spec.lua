-- luabatch.cli.out: every write and flush checked; a failure is an error
-- naming the output and the errno (luabatch exits 1 with it).
local out = require "luabatch.cli.out"

describe("luabatch.cli.out #unit", function()
  it("raises 'write NAME: reason (errno N)' when a write or a flush fails", function()
    local full = { name = "report.txt",
      write = function() return nil, "No space left on device", 28 end }
    local ok, e = pcall(out.writer(full), "x")
    assert.is_false(ok)
    assert.are.equal("write report.txt: No space left on device (errno 28)", tostring(e))
    assert.are.equal(28, e.errno)
    local late = { write = function(self) return self end,
      flush = function() return nil, "Broken pipe", 32 end }
    ok, e = pcall(out.writer(late, true), "y")
    assert.is_false(ok)
    assert.are.equal("write output: Broken pipe (errno 32)", tostring(e))
  end)

  it("passes text through, redacted when asked, to a function or a file-like sink", function()
    local got = {}
    out.writer(function(s) got[#got + 1] = s end)("plain")
    local sink = { write = function(self, s) got[#got + 1] = s return self end, flush = function() return true end }
    out.writer(sink, true)("token X-Amz-Security-Token=SECRET123&x")
    assert.are.equal("plain", got[1])
    assert.is_nil(got[2]:find("SECRET123", 1, true))
  end)
end)
