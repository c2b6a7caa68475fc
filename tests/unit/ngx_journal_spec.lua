-- luabatch.ngx.journal without nginx (no thread pool: the worker side calls
-- the file side itself): the events of a run through journal's own reader,
-- and a listing that does not read a journal again while it is unchanged.
local journal = require "luabatch.journal"
local files = require "helpers.files"
local ngx_journal = require "luabatch.ngx.journal"

local RUN = "20261201-100000-0badcafe"

describe("luabatch.ngx.journal #unit", function()
  local home
  before_each(function() home = files.mkdtemp() end)
  after_each(function() os.execute("rm -rf " .. files.sh_quote(home)) end)

  it("reads a run's events as luabatch.journal does: a torn last line and an over-long line are skipped", function()
    local nj = ngx_journal.new({ home = home })
    assert(nj:append(RUN, { ev = "run", run_id = RUN, workflow = "w" }))
    assert(nj:flush(RUN))
    local f = assert(io.open(home .. "/runs/" .. RUN .. "/journal.jsonl", "ab"))
    f:write('{"ev":"plan","pad":"', ("x"):rep(5000), '"}\n', '{"ev":"end","sta')   -- too long; torn
    f:close()
    local saved = journal.MAX_LINE
    finally(function() journal.MAX_LINE = saved end)
    journal.MAX_LINE = 1000
    local events = assert(nj:events(RUN))
    assert.equal(1, #events)
    assert.equal("run", events[1].ev)
    assert.same(assert(journal.open(RUN, { home = home })):events(), events)
    local none, _, code = nj:events("20261201-100000-00000000")
    assert.is_nil(none)
    assert.equal("ENOENT", code)
  end)

  it("lists runs with cleaned, and reads only the journals changed since its last listing", function()
    local nj = ngx_journal.new({ home = home })
    for i = 1, 3 do
      local id = string.format("20261201-10000%d-0badcafe", i)
      assert(nj:append(id, { ev = "run", run_id = id, workflow = "w" .. i, at = 100 + i }))
      assert(nj:append(id, { ev = "end", status = "SUCCESS", at = 200 + i }))
      if i == 1 then assert(nj:append(id, { ev = "cleanup", scope = "run", at = 300 })) end
      assert(nj:flush(id))
    end
    local each_line, reads = journal.each_line, 0
    finally(function() journal.each_line = each_line end)
    journal.each_line = function(...) reads = reads + 1 return each_line(...) end
    local first = assert(nj:list(0))
    assert.equal(3, #first)
    assert.equal(3, reads)
    local by = {}
    for _, r in ipairs(first) do by[r.run_id] = r end
    assert.equal(300, by["20261201-100001-0badcafe"].cleaned)
    assert.equal("w2", by["20261201-100002-0badcafe"].workflow)
    reads = 0
    local again = assert(nj:list(0))
    assert.equal(0, reads)
    assert.same(first, again)
    -- one run goes on: only its journal is read
    assert(nj:append("20261201-100002-0badcafe", { ev = "cleanup", scope = "run", at = 400 }))
    assert(nj:flush("20261201-100002-0badcafe"))
    reads = 0
    local third = assert(nj:list(0))
    assert.equal(1, reads)
    by = {}
    for _, r in ipairs(third) do by[r.run_id] = r end
    assert.equal(400, by["20261201-100002-0badcafe"].cleaned)
    assert.equal("w3", by["20261201-100003-0badcafe"].workflow)
  end)
end)
