-- A freed slot is refilled promptly: while strategies of a job wait for a
-- slot (max-parallel), the Run caps the poll interval of its live Batch
-- jobs at policy.slot_poll (luabatch.poller's cap, lb_poll_cap); once the
-- last strategy has started the caps go.  The result objects of the jobs a
-- poll saw succeed are read together (prefetch), and a waiting strategy's
-- doze ends as soon as its job is seen final.
local load = require "luabatch.workflow.load"
local sched = require "luabatch.workflow.sched"
local poller = require "luabatch.poller"
local run_mod = require "luabatch.runner.aws_batch.run"
local session = require "luabatch.runner.aws_batch.session"

describe("slot refill pacing #unit", function()
  it("poller:cap pulls a RUNNING job's next poll in and keeps it within the cap; 0 lets it grow", function()
    local t = 100
    local answers = {}
    local w = assert(poller.new({ batch = { describe_jobs = function(_, ids)
      local jobs = {}
      for i, id in ipairs(ids) do jobs[i] = { jobId = id, status = answers[id] or "RUNNING" } end
      return { jobs = jobs }
    end }, clock = function() return t end, sleep = function(d) t = t + d return true end,
      intervals = { jitter = 0, running = 10, growth = 1.5, max = 60 } }))
    w:watch("a")
    w:watch("b")
    assert.equal(1, w:step())
    assert.equal(110, w:core():get("a").next_due)
    assert.is_true(w:cap("a", 2))
    assert.equal(102, w:core():get("a").next_due)
    assert.equal(110, w:core():get("b").next_due)
    t = 102
    w:step()                          -- a alone is due (b's 110 is beyond the coalescing reach of 5 s)
    assert.equal(104, w:core():get("a").next_due)
    assert.equal(2, w:core():get("a").cap)
    assert.is_true(w:cap("a", 0))
    t = 104
    w:step()
    assert.is_true(w:core():get("a").interval > 2)
    assert.is_false(w:cap("nope", 1))
    assert.has_error(function() w:cap("a", -1) end)
    w:close()
  end)

  it("a Run caps its jobs while strategies wait, and uncaps them when the last one starts", function()
    local m = assert(load.string("jobs:\n  m:\n    strategy: {max-parallel: 2, matrix: {n: [1, 2, 3, 4]}}\n"
      .. "    stages: [{name: s, echo: hi}]\n", "t.yml", { getenv = function() end }))
    local caps = {}
    local s = { policy = { slot_poll = 2 } }
    function s.cap(_, _, id, secs) caps[#caps + 1] = id .. "=" .. secs end
    local run = run_mod.new({ s = s, c = {}, jobdef = m.jobs.m })
    for i = 1, 3 do
      run:started(0)
      run:pace("job-" .. i, 0)
    end
    assert.same({ "job-1=2", "job-2=2", "job-3=2" }, caps)
    run:started(0)                   -- the 4th (last) strategy: nothing waits any more
    assert.same({ "job-1=2", "job-2=2", "job-3=2", "job-1=0", "job-2=0", "job-3=0" }, caps)
    run:pace("job-4", 0)
    assert.equal(6, #caps)
    -- a job-level retry is a new attempt: its strategies wait again
    run:started(1)
    run:pace("job-5", 1)
    assert.equal("job-5=2", caps[7])
    -- slot_poll off: no caps
    s.policy.slot_poll = nil
    local r2 = run_mod.new({ s = s, c = {}, jobdef = m.jobs.m })
    r2:started(0)
    r2:pace("job-9", 0)
    assert.equal(7, #caps)
  end)

  it("prefetch: the result objects of the jobs one poll saw succeed are read in one request_all", function()
    local sess = setmetatable({ policy = {}, append = function() end }, { __index = session })
    local batches, gets = {}, 0
    local transport = { request_all = function(_, list)
      batches[#batches + 1] = #list
      local out = {}
      for i, r in ipairs(list) do
        out[i] = r.url:find("bad", 1, true) and { status = 403, body = "denied" }
          or { status = 200, body = '{"status":"SUCCESS","from":"' .. r.url .. '"}' }
      end
      return out
    end }
    local s3 = { presign = function(_, m, b, k) return "https://" .. b .. "/" .. k .. "?" .. m end,
                 transport = function() return transport end,
                 get_object = function() gets = gets + 1 end }
    local ws, c = {}, { s3 = s3, watched = {} }
    for i, k in ipairs({ "a", "b", "bad", "d" }) do
      ws[i] = { id = k, final = false, result = { bucket = "bk", key = k .. "/result.json" } }
      c.watched[k] = ws[i]
    end
    c.watched.f = { id = "f", final = false, result = { bucket = "bk", key = "f/result.json" } }
    for _, k in ipairs({ "a", "b", "bad" }) do session._changed(sess, c, { id = k, status = "SUCCEEDED" }) end
    session._changed(sess, c, { id = "f", status = "FAILED" })   -- a failure is explained by collect
    sess:prefetch(c)
    assert.same({ 3 }, batches)
    assert.equal('{"status":"SUCCESS","from":"https://bk/a/result.json?GET"}', ws[1].prefetched)
    assert.is_string(ws[2].prefetched)
    assert.is_nil(ws[3].prefetched)                -- left to Run:collect's get_object
    assert.is_nil(c.watched.f.prefetched)
    assert.is_nil(c.fresh)
    -- one end alone: nothing to gain, collect reads it
    session._changed(sess, c, { id = "d", status = "SUCCEEDED" })
    sess:prefetch(c)
    assert.same({ 3 }, batches)
    assert.is_nil(ws[4].prefetched)
    assert.equal(0, gets)
  end)

  it("an array job's children carry their result objects, so the poll that sees them succeed reads them together", function()
    local m = assert(load.string("jobs:\n  m:\n    strategy: {matrix: {n: [1, 2, 3]}}\n"
      .. "    stages: [{name: s, echo: hi}]\n", "t.yml", { getenv = function() end }))
    local seen
    local s = { policy = require("luabatch.runner.aws_batch.policy").merge({}), run_id = "r1", state = {},
      append = function() end }
    function s.watch(_, _, id, o) return { id = id, key = o.key } end
    function s.wait(_, _, ws)
      seen = ws
      for _, w in ipairs(ws) do w.final, w.status, w.prefetched = true, "SUCCEEDED", '{"status":"SUCCESS"}' end
      return true
    end
    local run = run_mod.new({ s = s, c = {}, env = {}, jobdef = m.jobs.m, job_id = "m", model = m,
      cfg = { bucket = "bk", run_prefix = "runs/r1" } })
    function run.submit() return "arr-1" end
    local combos = require("luabatch.workflow.matrix").expand(m.jobs.m.strategy)
    local out = run:all(combos, {}, { attempt = 0 }, {})
    assert.equal(3, #seen)
    for i, combo in ipairs(combos) do
      assert.same({ bucket = "bk", key = "runs/r1/m/" .. combo.id .. "/result.json" }, seen[i].result)
      assert.equal("SUCCESS", out[i].status)           -- collected from what the poll read
    end
  end)

  it("a watched job seen RUNNABLE or RUNNING tells the plan (on_state: the client deadline's start)", function()
    local got = {}
    local sess = setmetatable({ policy = {}, append = function() end, clock = function() return 0 end,
      on_state = function(...) got[#got + 1] = table.concat({ ... }, " ") end }, { __index = session })
    local c = { watched = { j1 = { id = "j1", key = "m/abc/0" }, x = { id = "x" } } }
    for _, st in ipairs({ "SUBMITTED", "RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED" }) do
      session._changed(sess, c, { id = "j1", status = st })
    end
    session._changed(sess, c, { id = "x", status = "RUNNING" })     -- no journal key: nothing to tell
    assert.same({ "m abc 0 waiting", "m abc 0 running" }, got)
  end)

  it("doze: a waiting task goes on as soon as its job is seen final", function()
    local sess = setmetatable({ policy = {} }, { __index = session })
    local w = { id = "j", final = false }
    local c = { watched = { j = w } }
    local woke
    local sc = sched.new()
    sc:spawn(function()
      local t0 = require("luabatch.core").monotime()
      sess:doze({ w }, 30)
      woke = require("luabatch.core").monotime() - t0
    end)
    sc:spawn(function()
      sched.sleep(0.05)
      sess.append = function() end
      session._changed(sess, c, { id = "j", status = "SUCCEEDED" })
    end)
    assert(sc:run())
    assert.is_true(w.final)
    assert.is_true(woke < 25, "doze ended by the job's end, not its 30 s")
  end)
end)
