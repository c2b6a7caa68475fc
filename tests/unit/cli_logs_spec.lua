-- luabatch logs: the --since values and the line format (time first).
local logs_cli = require "luabatch.cli.logs"

describe("luabatch.cli.logs #unit", function()
  local NOW = 1796530500          -- 2026-12-06T04:15:00Z

  it("--since takes a duration back from now, in ms", function()
    assert.equal((NOW - 30) * 1000, logs_cli.since("30s", NOW))
    assert.equal((NOW - 600) * 1000, logs_cli.since("10m", NOW))
    assert.equal((NOW - 7200) * 1000, logs_cli.since("2h", NOW))
    assert.equal((NOW - 86400) * 1000, logs_cli.since("1d", NOW))
    assert.equal((NOW - 7 * 86400) * 1000, logs_cli.since("1w", NOW))
  end)

  it("--since takes an ISO 8601 time (UTC unless a zone is given), a date, or minutes only", function()
    assert.equal(NOW * 1000, logs_cli.since("2026-12-06T04:15:00Z", NOW + 99))
    assert.equal(NOW * 1000, logs_cli.since("2026-12-06T04:15:00", NOW + 99))
    assert.equal(NOW * 1000, logs_cli.since("2026-12-06T04:15", NOW + 99))
    assert.equal(NOW * 1000, logs_cli.since("2026-12-06T05:15:00+01:00", NOW + 99))
    assert.equal((NOW - 4 * 3600 - 15 * 60) * 1000, logs_cli.since("2026-12-06", NOW + 99))
  end)

  it("a bad --since is exit 2 naming the value", function()
    for _, bad in ipairs({ "10", "5y", "yesterday", "2026-13-45x", "-1h" }) do
      local v, msg = logs_cli.since(bad, NOW)
      assert.is_nil(v, bad)
      assert.truthy(msg:find("got '" .. bad .. "'", 1, true), msg)
    end
    local e = {}
    local code = logs_cli.run({ "20261206-041500-abcd1234", "--since", "soon", "--home", "/nonexistent" },
      { stdout = function() end, stderr = function(s) e[#e + 1] = s end })
    assert.equal(2, code)
    assert.truthy(table.concat(e):find("--since: .* got 'soon'"), table.concat(e))
  end)

  it("each line starts with its event's time (UTC, seconds), then the job's label", function()
    assert.equal("2026-12-06T04:15:00Z hello", logs_cli.line({ timestamp = NOW * 1000 + 999, message = "hello\n" }))
    assert.equal("2026-12-06T04:15:01Z [fan/s1/0] hi", logs_cli.line({ timestamp = NOW * 1000 + 1000, message = "hi" },
      "fan/s1/0"))
    assert.equal("no time", logs_cli.line({ message = "no time" }))
  end)
end)
