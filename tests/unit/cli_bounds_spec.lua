-- Every numeric command-line option has a bound and a clear message (exit 2),
-- never a traceback from a layer below.

local function cli(mod, args)
  local o, e = {}, {}
  local code = require(mod).run(args, { stdout = function(s) o[#o + 1] = s end,
    stderr = function(s) e[#e + 1] = s end, home = "/nonexistent" })
  return code, table.concat(o), table.concat(e)
end

describe("numeric options are bounded", function()
  it("s3 --concurrency: 1..64, the S3 core's bound", function()
    local s3 = require "luabatch.cli.s3"
    for _, v in ipairs({ "1000", "65", "0", "1.5", "x" }) do
      local o, msg = s3.parse({ "cp", "--concurrency", v, "a", "s3://bkt/k" })
      assert.is_nil(o)
      assert.equal("--concurrency wants 1..64, got '" .. v .. "'", msg)
    end
    assert.equal(64, s3.parse({ "cp", "--concurrency", "64", "a", "s3://bkt/k" }).concurrency)
  end)

  it("s3 --part-size and --expires name their ranges", function()
    local s3 = require "luabatch.cli.s3"
    local _, msg = s3.parse({ "cp", "--part-size", "99999999999999999999G", "a", "s3://bkt/k" })
    assert.equal("--part-size wants 1..5G (S3's largest part), got '99999999999999999999G'", msg)
    _, msg = s3.parse({ "presign", "--expires", "1e400", "s3://bkt/k" })
    assert.equal("--expires wants whole seconds in 1..604800, got '1e400'", msg)
  end)

  it("runs --limit refuses infinity", function()
    local code, _, err = cli("luabatch.cli.runs", { "--limit", "1e400" })
    assert.equal(2, code)
    assert.matches("--limit wants a whole number >= 0, got '1e400'", err, 1, true)
  end)

  it("--older-than is at most 36500d (cleanup and s3 abort-uploads)", function()
    local cleanup = require "luabatch.cli.cleanup"
    assert.equal(36500 * 86400, cleanup.parse_age("36500d"))
    assert.is_nil(cleanup.parse_age("36501d"))
    assert.is_nil(cleanup.parse_age("99999999999999999999999d"))
    local code, _, err = cli("luabatch.cli.cleanup", { "--older-than", "99999999999999999999999d" })
    assert.equal(2, code)
    assert.matches("--older-than: Nd, Nh or Nm (at most 36500d) expected, got '99999999999999999999999d'",
      err, 1, true)
  end)

  it("logs --since refuses a duration reaching before 1970", function()
    local since = require("luabatch.cli.logs").since
    local t, msg = since("99999999999999999999w", 1700000000)
    assert.is_nil(t)
    assert.equal("'99999999999999999999w' reaches before 1970", msg)
    assert.equal(0, since("1700000000s", 1700000000))
  end)
end)
