-- luabatch.workflow.plan: the run's meaning as a pure state machine, driven
-- here with plain tables (events in, actions out, time as an input).
local load = require "luabatch.workflow.load"
local engine = require "luabatch.workflow.engine"
local plan = require "luabatch.workflow.plan"
local json = require "luabatch.json"

local NO_ENV = function() return nil end
local T0 = 1800000000

local function model(yaml)
  return assert(load.string(yaml, "t.yml", { getenv = NO_ENV }))
end

-- A run under test: r:send(event) -> actions; r.acts accumulates them.
local function run(yaml, o)
  o = o or {}
  local m = model(yaml)
  local env = engine.make_env(m, { getenv = NO_ENV })
  local params = assert(engine.receive_params(m, o.params or {}))
  local r = { m = m, env = env, now = T0, acts = {} }
  r.st = plan.new(m, { params = params, job = o.job, jobs = o.jobs, now = T0, cache = o.cache, runner = o.runner })
  function r:send(ev)
    ev.now = ev.now or self.now
    local acts = plan.step(self.st, self.m, ev, self.env)
    for _, a in ipairs(acts) do self.acts[#self.acts + 1] = a end
    return acts
  end
  function r:op(acts, op, job)
    for _, a in ipairs(acts) do
      if a.op == op and (job == nil or a.job == job) then return a end
    end
  end
  function r:ops(acts)
    local out = {}
    for _, a in ipairs(acts) do out[#out + 1] = a.op .. (a.job and (":" .. a.job) or "") end
    return out
  end
  return r
end

local function rec(status, combo)
  local r = { status = status, stages = {}, matrix = combo and combo.values or {} }
  if status == "FAILED" then r.errors = { name = "StageError", message = "boom" } end
  if status == "CANCEL" then r.errors = { name = "JobCancelError", message = "stopped" } end
  return r
end

local function sids(a)
  local out = {}
  for _, c in ipairs(a.combos) do out[#out + 1] = c.values.n end
  return out
end

local CHAIN = [[
jobs:
  a:
    stages: [{name: s, echo: a}]
  b:
    needs: [a]
    stages: [{name: s, echo: b}]
  c:
    stages: [{name: s, echo: c}]
]]

local MATRIX = [[
jobs:
  m:
    retry: %d
    strategy:
      max-parallel: 2
      fail-fast: %s
      matrix:
        n: [1, 2, 3, 4, 5]
    stages: [{name: s, echo: "${{ matrix.n }}"}]
  after:
    needs: [m]
    trigger-rule: all_done
    stages: [{name: s, echo: after}]
]]

describe("luabatch.workflow.plan #unit", function()
  it("needs: independent jobs are prepared at once, a dependent after its need; SUCCESS at the end", function()
    local r = run(CHAIN)
    assert.same({ "prepare:a", "prepare:c" }, r:ops(r:send({ type = "start" })))
    local acts = r:send({ type = "prepared", job = "a" })
    local ra = r:op(acts, "run", "a")
    assert.equal("EMPTY", ra.combos[1].id)
    assert.equal(0, ra.attempt)
    assert.same({}, ra.wctx.jobs)
    acts = r:send({ type = "ended", job = "a", attempt = 0, sid = "EMPTY", record = rec("SUCCESS") })
    assert.same({ "job_done:a", "prepare:b" }, r:ops(acts))
    -- b sees a's record
    assert.equal("SUCCESS", r:op(acts, "prepare", "b").wctx.jobs.a.status)
    r:send({ type = "prepared", job = "c" })
    r:send({ type = "ended", job = "c", attempt = 0, sid = "EMPTY", record = rec("SUCCESS") })
    r:send({ type = "prepared", job = "b" })
    acts = r:send({ type = "ended", job = "b", attempt = 0, sid = "EMPTY", record = rec("SUCCESS"), now = T0 + 3 })
    local done = r:op(acts, "done")
    assert.is_table(done)
    assert.equal("SUCCESS", done.context.status)
    assert.is_nil(done.context.errors)
    assert.same({ "a", "b", "c" }, (function()
      local ids = {}
      for id in pairs(done.context.jobs) do ids[#ids + 1] = id end
      table.sort(ids)
      return ids
    end)())
    assert.equal(3, done.context.info.exec_latency)
    assert.is_true(r.st.done)
  end)

  it("max-parallel: at most 2 strategies at once, in matrix order, a freed slot refilled", function()
    local r = run(MATRIX:format(0, "false"))
    r:send({ type = "start" })
    local acts = r:send({ type = "prepared", job = "m" })
    local first = r:op(acts, "run", "m")
    assert.same({ 1, 2 }, sids(first))
    acts = r:send({ type = "ended", job = "m", attempt = 0, sid = first.combos[2].id, record = rec("SUCCESS", first.combos[2]) })
    assert.same({ 3 }, sids(r:op(acts, "run", "m")))
    local started = { first.combos[1], first.combos[2], r:op(acts, "run", "m").combos[1] }
    for _, c in ipairs({ started[1], started[3] }) do
      acts = r:send({ type = "ended", job = "m", attempt = 0, sid = c.id, record = rec("SUCCESS", c) })
      local nxt = r:op(acts, "run", "m")
      if nxt then started[#started + 1] = nxt.combos[1] end
    end
    assert.equal(5, #started)
    for i = 4, 5 do
      acts = r:send({ type = "ended", job = "m", attempt = 0, sid = started[i].id, record = rec("SUCCESS", started[i]) })
    end
    local done = r:op(acts, "job_done", "m")
    assert.equal("SUCCESS", done.record.status)
    local n = 0
    for _ in pairs(done.record.strategies) do n = n + 1 end
    assert.equal(5, n)
  end)

  it("fail-fast: the first FAILED stops the running sibling, no queued one starts, the job FAILED", function()
    local r = run(MATRIX:format(0, "true"))
    r:send({ type = "start" })
    local first = r:op(r:send({ type = "prepared", job = "m" }), "run", "m")
    local acts = r:send({ type = "ended", job = "m", attempt = 0, sid = first.combos[1].id,
                          record = rec("FAILED", first.combos[1]) })
    local stop = r:op(acts, "stop", "m")
    assert.same({ first.combos[2].id }, stop.sids)
    assert.equal("fail-fast", stop.why)
    assert.is_nil(r:op(acts, "run", "m"))
    acts = r:send({ type = "ended", job = "m", attempt = 0, sid = first.combos[2].id,
                    record = rec("CANCEL", first.combos[2]) })
    local done = r:op(acts, "job_done", "m")
    assert.equal("FAILED", done.record.status)
    local keys = {}
    for k in pairs(done.record.strategies) do keys[#keys + 1] = k end
    assert.equal(2, #keys)                          -- strategies never started are absent
    assert.is_table(done.record.errors[first.combos[1].id])
    -- all_done: `after` still runs; the workflow ends FAILED naming m
    r:send({ type = "prepared", job = "after" })
    acts = r:send({ type = "ended", job = "after", attempt = 0, sid = "EMPTY", record = rec("SUCCESS") })
    local ctx = r:op(acts, "done").context
    assert.equal("FAILED", ctx.status)
    assert.equal("Job execution, 'm', was failed.", ctx.errors.message)
  end)

  it("job retry: again at once after the first failure, 1.2^(k+1) s after attempt k >= 1; the last attempt's record", function()
    local r = run([[
jobs:
  j:
    retry: 2
    stages: [{name: s, echo: x}]
]])
    r:send({ type = "start" })
    r:send({ type = "prepared", job = "j" })
    local acts = r:send({ type = "ended", job = "j", attempt = 0, sid = "EMPTY", record = rec("FAILED") })
    local retry = r:op(acts, "retry", "j")
    assert.equal(1, retry.attempt)
    assert.equal(T0, retry.at)
    assert.equal(1, r:op(acts, "run", "j").attempt)   -- no wait after the first
    -- a stale end of attempt 0 changes nothing
    assert.same({}, r:send({ type = "ended", job = "j", attempt = 0, sid = "EMPTY", record = rec("SUCCESS") }))
    acts = r:send({ type = "ended", job = "j", attempt = 1, sid = "EMPTY", record = rec("FAILED") })
    assert.equal(T0 + 1.2 ^ 2, r:op(acts, "retry", "j").at)
    assert.is_nil(r:op(acts, "run", "j"))
    assert.equal(T0 + 1.44, plan.wake(r.st))
    assert.same({}, r:send({ type = "tick", now = T0 + 1 }))
    acts = r:send({ type = "tick", now = T0 + 1.44 })
    assert.equal(2, r:op(acts, "run", "j").attempt)
    acts = r:send({ type = "ended", job = "j", attempt = 2, sid = "EMPTY", record = rec("SUCCESS"), now = T0 + 2 })
    assert.equal("SUCCESS", r:op(acts, "job_done", "j").record.status)
    assert.equal("SUCCESS", r:op(acts, "done").context.status)
  end)

  it("cancel: running strategies stopped, nothing queued or downstream starts, no retry, the run ends CANCEL", function()
    local r = run(MATRIX:format(3, "false"))
    r:send({ type = "start" })
    local first = r:op(r:send({ type = "prepared", job = "m" }), "run", "m")
    local acts = r:send({ type = "cancel", reason = "user" })
    local stop = r:op(acts, "stop", "m")
    assert.equal("cancel", stop.why)
    assert.equal(2, #stop.sids)
    assert.equal("user", r.st.cancel)
    acts = r:send({ type = "ended", job = "m", attempt = 0, sid = first.combos[1].id, record = rec("FAILED", first.combos[1]) })
    assert.is_nil(r:op(acts, "run", "m"))
    assert.is_nil(r:op(acts, "retry", "m"))
    acts = r:send({ type = "ended", job = "m", attempt = 0, sid = first.combos[2].id, record = rec("CANCEL", first.combos[2]) })
    assert.is_nil(r:op(acts, "prepare", "after"))
    assert.is_nil(r:op(acts, "retry", "m"))
    local ctx = r:op(acts, "done").context
    assert.equal("FAILED", ctx.jobs.m.status)
    assert.is_nil(ctx.jobs.after)
    assert.equal("FAILED", ctx.status)                -- a failure outranks the cancel
  end)

  it("cancel before a job starts: it never starts and the run is CANCEL with the reference's message", function()
    local r = run(CHAIN)
    r:send({ type = "start" })
    r:send({ type = "prepared", job = "a" })
    r:send({ type = "prepared", job = "c" })
    r:send({ type = "ended", job = "c", attempt = 0, sid = "EMPTY", record = rec("SUCCESS") })
    r:send({ type = "cancel", reason = "user" })
    local acts = r:send({ type = "ended", job = "a", attempt = 0, sid = "EMPTY", record = rec("SUCCESS") })
    assert.is_nil(r:op(acts, "prepare", "b"))
    local ctx = r:op(acts, "done").context
    assert.equal("CANCEL", ctx.status)
    assert.equal("WorkflowCancelError", ctx.errors.name)
    assert.is_nil(ctx.jobs.b)
  end)

  it("a pending retry is dropped by a cancel: the failed attempt is the record", function()
    local r = run([[
jobs:
  j:
    retry: 3
    stages: [{name: s, echo: x}]
]])
    r:send({ type = "start" })
    r:send({ type = "prepared", job = "j" })
    r:send({ type = "ended", job = "j", attempt = 0, sid = "EMPTY", record = rec("FAILED") })
    local acts = r:send({ type = "ended", job = "j", attempt = 1, sid = "EMPTY", record = rec("FAILED") })
    assert.is_table(r:op(acts, "retry", "j"))
    acts = r:send({ type = "cancel", reason = "user" })
    assert.equal("FAILED", r:op(acts, "job_done", "j").record.status)
    assert.equal("FAILED", r:op(acts, "done").context.status)
    assert.is_nil(plan.wake(r.st))
  end)

  it("trigger rules: a failed rule aborts (nothing more starts), a skipped need skips, all skipped -> SKIP", function()
    local r = run([[
jobs:
  a:
    stages: [{name: s, echo: a}]
  b:
    needs: [a]
    stages: [{name: s, echo: b}]
  c:
    needs: [b]
    stages: [{name: s, echo: c}]
  d:
    stages: [{name: s, echo: d}]
]])
    r:send({ type = "start" })
    r:send({ type = "prepared", job = "a" })
    r:send({ type = "prepared", job = "d" })
    local acts = r:send({ type = "ended", job = "a", attempt = 0, sid = "EMPTY", record = rec("FAILED") })
    assert.is_nil(r:op(acts, "prepare", "b"))
    assert.is_true(r.st.abort)
    acts = r:send({ type = "ended", job = "d", attempt = 0, sid = "EMPTY", record = rec("SUCCESS") })
    local ctx = r:op(acts, "done").context
    assert.equal("FAILED", ctx.status)
    assert.equal("Validate job trigger rule was failed with 'all_success'.", ctx.errors.message)
    assert.is_nil(ctx.jobs.b)
    assert.is_nil(ctx.jobs.c)

    local s = run([[
jobs:
  a:
    if: "false"
    strategy: {matrix: {n: [1, 2]}}
    stages: [{name: s, echo: a}]
  b:
    needs: [a]
    strategy: {matrix: {n: [1]}}
    stages: [{name: s, echo: b}]
]])
    s:send({ type = "start" })
    acts = s:send({ type = "prepared", job = "a" })
    assert.same({ "job_done:a", "job_done:b", "done" }, s:ops(acts))
    ctx = s:op(acts, "done").context
    assert.equal("SKIP", ctx.status)
    assert.same({}, ctx.jobs.b.strategies)            -- skipped by its needs: an empty map
    assert.is_nil(ctx.jobs.b.info)
    assert.is_table(ctx.jobs.a.info)                  -- skipped by its if: an attempt ran
  end)

  it("a runner that refuses the job: FAILED with the message, nothing run; a whole-job runner's record is taken", function()
    local r = run(MATRIX:format(0, "false"))
    r:send({ type = "start" })
    local acts = r:send({ type = "prepared", job = "m", error = "runs-on with: bad bucket" })
    local done = r:op(acts, "job_done", "m")
    assert.equal("FAILED", done.record.status)
    assert.equal("runs-on with: bad bucket", done.record.errors.message)
    assert.same({}, done.record.strategies)
    assert.is_table(r:op(acts, "prepare", "after"))   -- all_done

    local w = run(CHAIN)
    w:send({ type = "start" })
    assert.same({}, w:send({ type = "prepared", job = "a", whole = true }))
    acts = w:send({ type = "job_ended", job = "a", record = { status = "SUCCESS", stages = {} } })
    assert.same({ "job_done:a", "prepare:b" }, w:ops(acts))
  end)

  it("an array runner takes every strategy at once, whatever max-parallel; its records come together", function()
    local r = run(MATRIX:format(0, "false"))
    r:send({ type = "start" })
    local acts = r:send({ type = "prepared", job = "m", array = true })
    local a = r:op(acts, "run", "m")
    assert.is_true(a.array)
    assert.same({ 1, 2, 3, 4, 5 }, sids(a))
    local recs = {}
    for _, c in ipairs(a.combos) do recs[c.id] = rec(c.values.n == 4 and "FAILED" or "SUCCESS", c) end
    acts = r:send({ type = "ended", job = "m", attempt = 0, records = recs })
    assert.equal("FAILED", r:op(acts, "job_done", "m").record.status)
  end)

  it("a bad if: or max-parallel fails the job with the reference's messages", function()
    local r = run([[
params:
  mp: {type: int, default: 12}
jobs:
  j:
    strategy: {max-parallel: "${{ params.mp }}", matrix: {n: [1]}}
    stages: [{name: s, echo: x}]
  k:
    if: "params.nope == 1"
    stages: [{name: s, echo: x}]
]])
    r:send({ type = "start" })
    local acts = r:send({ type = "prepared", job = "j" })
    local d = r:op(acts, "job_done", "j")
    assert.equal("FAILED", d.record.status)
    assert.matches("max%-parallel value should not more than 10", d.record.errors.message)
    acts = r:send({ type = "prepared", job = "k" })
    d = r:op(acts, "job_done", "k")
    assert.equal("FAILED", d.record.status)
    assert.matches("^job if: ", d.record.errors.message)
  end)

  it("--job: only that job, its needs unread, the given records as its context", function()
    local r = run(CHAIN, { job = "b", jobs = { a = { status = "FAILED" } } })
    local acts = r:send({ type = "start" })
    assert.same({ "prepare:b" }, r:ops(acts))
    assert.equal("FAILED", r:op(acts, "prepare", "b").wctx.jobs.a.status)
  end)

  it("a resume's records are done already: their jobs do not run again", function()
    local r = run(CHAIN, { jobs = { a = { status = "SUCCESS", stages = {} } } })
    assert.same({ "prepare:b", "prepare:c" }, r:ops(r:send({ type = "start" })))
  end)

  it("the state is plain data: a JSON round trip mid-run ends in the same context", function()
    local function drive(roundtrip)
      local r = run(MATRIX:format(1, "true"))
      r:send({ type = "start" })
      local first = r:op(r:send({ type = "prepared", job = "m" }), "run", "m")
      if roundtrip then r.st = json.decode(json.encode(r.st)) end
      r:send({ type = "ended", job = "m", attempt = 0, sid = first.combos[1].id, record = rec("FAILED", first.combos[1]) })
      if roundtrip then r.st = json.decode(json.encode(r.st)) end
      local acts = r:send({ type = "ended", job = "m", attempt = 0, sid = first.combos[2].id,
                            record = rec("CANCEL", first.combos[2]) })
      local again = r:op(acts, "run", "m")
      for _, c in ipairs(again.combos) do
        acts = r:send({ type = "ended", job = "m", attempt = 1, sid = c.id, record = rec("SUCCESS", c) })
        local nxt = r:op(acts, "run", "m")
        while nxt do
          local c2 = nxt.combos[1]
          acts = r:send({ type = "ended", job = "m", attempt = 1, sid = c2.id, record = rec("SUCCESS", c2) })
          nxt = r:op(acts, "run", "m")
        end
      end
      r:send({ type = "prepared", job = "after" })
      acts = r:send({ type = "ended", job = "after", attempt = 0, sid = "EMPTY", record = rec("SUCCESS") })
      return r:op(acts, "done").context
    end
    local a, b = drive(false), drive(true)
    assert.equal("SUCCESS", a.status)
    assert.equal(json.encode(a), json.encode(b))
  end)

  it("the client deadline: a strategy running past the runner's deadline is stopped, a tick wakes it", function()
    local r = run(MATRIX:format(0, "false"))
    r:send({ type = "start" })
    local first = r:op(r:send({ type = "prepared", job = "m", deadline = 30 }), "run", "m")
    assert.equal(T0 + 30, plan.wake(r.st))
    -- n=1 ends in time; its successor n=3 gets its own 30 s from its start
    local acts = r:send({ type = "ended", job = "m", attempt = 0, sid = first.combos[1].id,
                          record = rec("SUCCESS", first.combos[1]), now = T0 + 10 })
    local third = r:op(acts, "run", "m").combos[1]
    assert.same({}, r:send({ type = "tick", now = T0 + 29 }))
    acts = r:send({ type = "tick", now = T0 + 30 })
    local stop = r:op(acts, "stop", "m")
    assert.equal("deadline", stop.why)
    assert.same({ first.combos[2].id }, stop.sids)
    assert.equal(T0 + 40, plan.wake(r.st))             -- n=3's
    assert.same({}, r:send({ type = "tick", now = T0 + 35 })) -- stopped once, not again
    -- the runner ends it FAILED (its words); the queue goes on
    acts = r:send({ type = "ended", job = "m", attempt = 0, sid = first.combos[2].id,
                    record = rec("FAILED", first.combos[2]), now = T0 + 31 })
    assert.is_table(r:op(acts, "run", "m"))
    stop = r:op(r:send({ type = "tick", now = T0 + 40 }), "stop", "m")
    assert.same({ third.id }, stop.sids)
    -- no deadline from the runner: nothing is ever stopped
    local q = run(MATRIX:format(0, "false"))
    q:send({ type = "start" })
    q:send({ type = "prepared", job = "m" })
    assert.is_nil(plan.wake(q.st))
    assert.is_nil(q:op(q:send({ type = "tick", now = T0 + 1e6 }), "stop"))
  end)

  it("the client deadline counts from the container's start: none while the job waits for capacity", function()
    local r = run(MATRIX:format(0, "false"))
    r:send({ type = "start" })
    local first = r:op(r:send({ type = "prepared", job = "m", deadline = 30 }), "run", "m")
    local a, b = first.combos[1].id, first.combos[2].id
    -- a waits in the queue for an hour: no deadline meanwhile
    r:send({ type = "state", job = "m", attempt = 0, sid = a, state = "waiting", now = T0 + 5 })
    assert.equal(T0 + 30, plan.wake(r.st))                      -- b's, from its start
    assert.same({ b }, r:op(r:send({ type = "tick", now = T0 + 30 }), "stop", "m").sids)
    assert.is_nil(r:op(r:send({ type = "tick", now = T0 + 3600 }), "stop"))
    -- its container starts: 30 s from then
    r:send({ type = "state", job = "m", attempt = 0, sid = a, state = "running", now = T0 + 3600 })
    assert.equal(T0 + 3630, plan.wake(r.st))
    -- a later wait (Batch's next attempt) and a second "running" change nothing
    r:send({ type = "state", job = "m", attempt = 0, sid = a, state = "waiting", now = T0 + 3610 })
    r:send({ type = "state", job = "m", attempt = 0, sid = a, state = "running", now = T0 + 3620 })
    assert.is_nil(r:op(r:send({ type = "tick", now = T0 + 3629 }), "stop"))
    assert.same({ a }, r:op(r:send({ type = "tick", now = T0 + 3630 }), "stop", "m").sids)
    -- another attempt's, an unknown strategy's or a stopped one's state: ignored
    r:send({ type = "state", job = "m", attempt = 1, sid = a, state = "waiting", now = T0 + 3631 })
    r:send({ type = "state", job = "m", attempt = 0, sid = "nope", state = "running", now = T0 + 3631 })
    assert.is_nil(r:op(r:send({ type = "tick", now = T0 + 9999 }), "stop"))
  end)

  it("unknown events are a programmer error", function()
    local r = run(CHAIN)
    assert.has_error(function() r:send({ type = "nope" }) end)
  end)

  describe("reuse (a run resuming an ended one)", function()
    -- run a workflow to its end with every strategy ending as outcome(job, n)
    -- says -> the cache a later run gets ({ [id] = { key, record } }), the run
    local function finish(yaml, outcome, o)
      local r = run(yaml, o)
      local cache, queue = {}, r:send({ type = "start" })
      while #queue > 0 do
        local a = table.remove(queue, 1)
        local more = {}
        if a.op == "prepare" then
          more = r:send({ type = "prepared", job = a.job })
        elseif a.op == "run" then
          for _, c in ipairs(a.combos) do
            for _, x in ipairs(r:send({ type = "ended", job = a.job, attempt = a.attempt, sid = c.id,
                                         record = rec(outcome(a.job, c.values.n), c) })) do more[#more + 1] = x end
          end
        elseif a.op == "job_done" then
          cache[a.job] = { key = a.key, record = json.decode(json.encode(a.record)) }   -- as a journal keeps it
        end
        for _, x in ipairs(more) do queue[#queue + 1] = x end
      end
      return cache, r
    end
    local function all(status) return function() return status end end

    it("takes a job whose key is unchanged and whose record is SUCCESS as is: nothing prepared or run", function()
      local cache = finish(CHAIN, all("SUCCESS"))
      local r = run(CHAIN, { cache = cache })
      local acts = r:send({ type = "start" })
      assert.same({ "job_done:a", "job_done:b", "job_done:c", "done" }, r:ops(acts))
      assert.is_true(r:op(acts, "job_done", "a").cached)
      assert.equal(cache.b.key, r:op(acts, "job_done", "b").key)
      assert.equal("SUCCESS", r:op(acts, "done").context.status)
    end)

    it("runs again a job whose definition, params or runner changed, and a job downstream of a changed result", function()
      local cache = finish(CHAIN, all("SUCCESS"))
      -- a's stage changed: a runs; b waits for a's new record
      local r = run(CHAIN:gsub("echo: a", "echo: A"), { cache = cache })
      local acts = r:send({ type = "start" })
      assert.same({ "prepare:a", "job_done:c" }, r:ops(acts))
      acts = r:send({ type = "prepared", job = "a" })
      local ra = r:op(acts, "run", "a")
      -- a's new result equals the old one (timings aside): b is reused
      acts = r:send({ type = "ended", job = "a", attempt = 0, sid = ra.combos[1].id, record = rec("SUCCESS"), now = T0 + 5 })
      assert.same({ "job_done:a", "job_done:b", "done" }, r:ops(acts))
      assert.is_true(r:op(acts, "job_done", "b").cached)
      -- a's result differs: b runs
      r = run(CHAIN:gsub("echo: a", "echo: A"), { cache = cache })
      r:send({ type = "start" })
      ra = r:op(r:send({ type = "prepared", job = "a" }), "run", "a")
      local other = rec("SUCCESS"); other.stages = { s = { outputs = { x = 1 } } }
      acts = r:send({ type = "ended", job = "a", attempt = 0, sid = ra.combos[1].id, record = other })
      assert.same({ "job_done:a", "prepare:b" }, r:ops(acts))
      -- a param's value, the runner (--runs-on / --with) change every key
      local P = "params: {p: {type: int, default: 1}}\n" .. CHAIN
      cache = finish(P, all("SUCCESS"))
      assert.same({ "job_done:a", "job_done:b", "job_done:c", "done" },
        run(P, { cache = cache }):ops(run(P, { cache = cache }):send({ type = "start" })))
      local q = run(P, { cache = cache, params = { p = 2 } })
      assert.same({ "prepare:a", "prepare:c" }, q:ops(q:send({ type = "start" })))
      q = run(P, { cache = cache, runner = { with = { memory = "4096" } } })
      assert.same({ "prepare:a", "prepare:c" }, q:ops(q:send({ type = "start" })))
    end)

    it("in a failed matrix job, runs only the strategies that did not succeed", function()
      local yaml = MATRIX:format(0, "false")
      local cache = finish(yaml, function(job, n) return (job == "m" and n % 2 == 0) and "FAILED" or "SUCCESS" end)
      assert.equal("FAILED", cache.m.record.status)
      local r = run(yaml, { cache = cache })
      assert.same({ "prepare:m" }, r:ops(r:send({ type = "start" })))
      local first = r:op(r:send({ type = "prepared", job = "m" }), "run", "m")
      assert.same({ 2, 4 }, sids(first))                       -- 1, 3, 5 kept; max-parallel 2 holds
      local acts
      for _, c in ipairs(first.combos) do
        acts = r:send({ type = "ended", job = "m", attempt = 0, sid = c.id, record = rec("SUCCESS", c) })
      end
      local done = r:op(acts, "job_done", "m")
      assert.equal("SUCCESS", done.record.status)
      assert.equal(3, done.reused)
      local n = 0
      for _ in pairs(done.record.strategies) do n = n + 1 end
      assert.equal(5, n)
      assert.is_table(r:op(acts, "prepare", "after"))          -- m's record changed: after runs
    end)

    it("keys do not move with source positions, and match after a JSON round-trip of the records", function()
      local fp = require "luabatch.workflow.fingerprint"
      local m1, m2 = model(CHAIN), model("# a comment\n\n" .. CHAIN)
      local recs = { a = { status = "SUCCESS", info = { exec_start = 1 }, stages = { s = { status = "SUCCESS", outputs = {}, info = { t = 2 } } } } }
      local back = json.decode(json.encode(recs))
      back.a.info, back.a.stages.s.info = { exec_start = 9 }, nil
      assert.equal(fp.job(m1, "b", {}, recs), fp.job(m2, "b", {}, back))
      recs.a.stages.s.outputs.x = 1
      assert.are_not.equal(fp.job(m1, "b", {}, recs), fp.job(m2, "b", {}, back))
    end)
  end)
end)
