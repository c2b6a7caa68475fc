-- luabatch.ngx.drive against fake Batch / S3 clients and a fake shared
-- dict: a run advances one step at a time (roots first, needs' records in
-- the next job's bundle, max-parallel queueing, fail-fast termination,
-- trigger-rule abort, skips, job-level retry:, the client deadline), and
-- every step returns at once.  Also luabatch.ngx.runs' wake index and the
-- poller's on_tick hook that drive a run past a deadline without a GET.
require "luabatch.runner"   -- the runners' types and with: schemas, for the loader
local load = require "luabatch.workflow.load"
local json = require "luabatch.json"
local cjson = require "cjson"
local drive = require "luabatch.ngx.drive"
local fake_aws = require "helpers.fake_aws"

local NO_ENV = function() return nil end
local RUN_ID = "20260101-000000-0badcafe"
local PREFIX = "b/luabatch/runs/" .. RUN_ID .. "/"

local function world()
  local W = fake_aws.new()
  W.dict = fake_aws.dict()
  local clients = W.clients
  W.t = 1000
  W.app = {
    with = { job_queue_arn = "q", s3_bucket = "b", region_name = "us-east-1" },
    getenv = NO_ENV, prefix = "", ttl = 100,
    clock = function() return W.t end,
    dict = function() return W.dict end,
    clients = function() return clients end,
    runner_opts = function(_, run_id)
      return { clients = function() return clients end, run_id = run_id, policy = W.policy,
               clock = function() return 0 end, sleep = function() return true end }
    end,
  }
  -- the poller's view of a Batch job
  function W.state(id, status) W.dict:set("job:" .. id, cjson.encode({ id = id, status = status })) end
  -- a strategy's result.json (what `luabatch task` uploads)
  function W.result(job_id, sid, status, outputs, n)
    W.objects[PREFIX .. job_id .. "/" .. sid .. "/result.json"] = json.encode({ status = status,
      matrix = n and { n = n } or {}, stages = { s = { status = status, outputs = outputs or {} } } })
  end
  return W
end

local function start(W, yaml, params)
  local m = assert(load.string(yaml, "t.yml", { getenv = NO_ENV }))
  local meta = drive.new_run(W.app, m, { run_id = RUN_ID, params = params or {}, source = yaml, name = "t.yml" })
  return m, meta
end

-- JSON round trip between steps: what the shared dict keeps
local function step(W, m, meta)
  local changed = drive.step(W.app, meta, m)
  return changed, json.decode(json.encode(meta))
end

local CHAIN = [[
jobs:
  a:
    stages: [{name: s, id: s, echo: a}]
  b:
    needs: [a]
    strategy:
      max-parallel: 1
      matrix: {n: [1, 2, 3]}
    stages: [{name: s, id: s, echo: b}]
  c:
    needs: [b]
    if: "'${{ jobs.b.status }}' == 'nope'"
    stages: [{name: s, id: s, echo: c}]
  d:
    needs: [c]
    stages: [{name: s, id: s, echo: d}]
]]

describe("luabatch.ngx.drive #unit", function()
  it("roots first; the next job gets its needs' records; max-parallel 1 queues; skips end the run", function()
    local W = world()
    local m, meta = start(W, CHAIN)
    local changed
    changed, meta = step(W, m, meta)
    assert.is_true(changed)
    assert.equal(1, W.calls.SubmitJob)
    assert.equal("submitted", meta.jobs.a.state)
    assert.equal("pending", meta.jobs.b.state)
    -- nothing terminal: a step changes nothing and submits nothing
    changed, meta = step(W, m, meta)
    assert.is_false(changed)
    assert.equal(1, W.calls.SubmitJob)
    -- a ends: collected, b goes out one strategy at a time
    local aid = meta.jobs.a.submitted.jobs[1].batch_job_id
    W.result("a", "EMPTY", "SUCCESS", { said = "a" })
    W.state(aid, "SUCCEEDED")
    changed, meta = step(W, m, meta)
    assert.equal("done", meta.jobs.a.state)
    assert.equal("SUCCESS", meta.jobs.a.record.status)
    assert.equal("submitted", meta.jobs.b.state)
    assert.equal(2, W.calls.SubmitJob)
    assert.equal(1, #meta.jobs.b.submitted.jobs)
    assert.equal(2, #meta.jobs.b.queued)
    -- b's bundle holds a's record and every strategy
    local bundle = json.decode(W.objects[PREFIX .. "b/bundle.json"])
    assert.same({ said = "a" }, bundle.context.jobs.a.stages.s.outputs)
    assert.equal(3, #bundle.strategies)
    for i = 1, 3 do
      local sj = meta.jobs.b.submitted.jobs[i]
      assert.is_table(sj, "strategy " .. i .. " not submitted")
      -- the next strategy only once this one is terminal
      W.state(sj.batch_job_id, "RUNNING")
      changed, meta = step(W, m, meta)
      assert.equal(i, #meta.jobs.b.submitted.jobs)
      W.result("b", sj.strategy_id, "SUCCESS", { i = i }, i)
      W.state(sj.batch_job_id, "SUCCEEDED")
      changed, meta = step(W, m, meta)
    end
    assert.equal(4, W.calls.SubmitJob)
    -- c: if false -> SKIP; d: its only need skipped -> SKIP; the run is over
    assert.is_true(meta.done)
    local ctx = meta.final
    assert.equal("SUCCESS", ctx.status)
    assert.equal("SKIP", ctx.jobs.c.status)
    assert.equal("SKIP", ctx.jobs.d.status)
    local n = 0
    for _, rec in pairs(ctx.jobs.b.strategies) do n = n + 1; assert.equal("SUCCESS", rec.status) end
    assert.equal(3, n)
  end)

  it("fail-fast: the first FAILED strategy terminates the running one; the queued one never runs", function()
    local W = world()
    local m, meta = start(W, [[
jobs:
  f:
    strategy:
      fail-fast: true
      max-parallel: 2
      matrix: {n: [1, 2, 3]}
    stages: [{name: s, id: s, echo: f}]
]])
    local _
    _, meta = step(W, m, meta)
    assert.equal(2, W.calls.SubmitJob)
    local j1, j2 = meta.jobs.f.submitted.jobs[1], meta.jobs.f.submitted.jobs[2]
    W.state(j2.batch_job_id, "RUNNING")
    W.result("f", j1.strategy_id, "FAILED", {}, 1)
    W.state(j1.batch_job_id, "FAILED")
    _, meta = step(W, m, meta)
    assert.equal(1, W.calls.TerminateJob)
    assert.equal(j2.batch_job_id, W.terminated[1].id)
    assert.matches("fail", W.terminated[1].reason)
    assert.equal(0, #meta.jobs.f.queued)
    assert.equal(2, W.calls.SubmitJob)
    assert.is_nil(meta.done)
    W.state(j2.batch_job_id, "FAILED")
    _, meta = step(W, m, meta)
    assert.is_true(meta.done)
    local rec = meta.final.jobs.f
    assert.equal("FAILED", rec.status)
    assert.equal("FAILED", rec.strategies[j1.strategy_id].status)
    assert.equal("CANCEL", rec.strategies[j2.strategy_id].status)
    local n = 0
    for _ in pairs(rec.strategies) do n = n + 1 end
    assert.equal(2, n)
    assert.equal(2, W.calls.SubmitJob)
  end)

  it("a failed trigger rule aborts: nothing else starts, the run FAILED with the engine's message", function()
    local W = world()
    local m, meta = start(W, [[
jobs:
  a:
    stages: [{name: s, id: s, echo: a}]
  b:
    needs: [a]
    stages: [{name: s, id: s, echo: b}]
  c:
    needs: [a]
    trigger-rule: all_failed
    stages: [{name: s, id: s, echo: c}]
]])
    local _
    _, meta = step(W, m, meta)
    W.result("a", "EMPTY", "SUCCESS")
    W.state(meta.jobs.a.submitted.jobs[1].batch_job_id, "SUCCEEDED")
    _, meta = step(W, m, meta)
    -- b (all_success) went out before c's rule failed; after that nothing starts
    assert.is_true(meta.abort)
    assert.equal("submitted", meta.jobs.b.state)
    assert.equal("pending", meta.jobs.c.state)
    W.result("b", "EMPTY", "SUCCESS")
    W.state(meta.jobs.b.submitted.jobs[1].batch_job_id, "SUCCEEDED")
    _, meta = step(W, m, meta)
    assert.is_true(meta.done)
    assert.equal("FAILED", meta.final.status)
    assert.equal("Validate job trigger rule was failed with 'all_failed'.", meta.final.errors.message)
    assert.is_nil(meta.final.jobs.c)
    assert.equal(2, W.calls.SubmitJob)
  end)

  it("cleanup: the run's prefix stays while another job runs or an earlier job's objects were kept", function()
    local TWO = [[
jobs:
  a:
    stages: [{name: s, id: s, echo: a}]
  b:
    stages: [{name: s, id: s, echo: b}]
]]
    local run_prefix = "luabatch/runs/" .. RUN_ID .. "/"
    local W = world()
    local m, meta = start(W, TWO)
    local _
    _, meta = step(W, m, meta)
    assert.equal(2, W.calls.SubmitJob)
    -- a ends while b still runs: a's part only
    W.result("a", "EMPTY", "SUCCESS")
    W.state(meta.jobs.a.submitted.jobs[1].batch_job_id, "SUCCEEDED")
    W.state(meta.jobs.b.submitted.jobs[1].batch_job_id, "RUNNING")
    _, meta = step(W, m, meta)
    assert.equal("done", meta.jobs.a.state)
    assert.same({ run_prefix .. "a/" }, W.deleted)
    -- b, the last one: its part, then the run's prefix
    W.result("b", "EMPTY", "SUCCESS")
    W.state(meta.jobs.b.submitted.jobs[1].batch_job_id, "SUCCEEDED")
    _, meta = step(W, m, meta)
    assert.is_true(meta.done)
    assert.same({ run_prefix .. "a/", run_prefix .. "b/", run_prefix }, W.deleted)

    -- cleanup on_success: a FAILED job's objects are kept, so the run's prefix is too
    W = world()
    W.policy = { cleanup = "on_success" }
    m, meta = start(W, TWO)
    _, meta = step(W, m, meta)
    W.result("a", "EMPTY", "FAILED")
    W.state(meta.jobs.a.submitted.jobs[1].batch_job_id, "FAILED")
    W.state(meta.jobs.b.submitted.jobs[1].batch_job_id, "RUNNING")
    _, meta = step(W, m, meta)
    assert.equal("FAILED", meta.jobs.a.record.status)
    assert.same({}, W.deleted)
    W.result("b", "EMPTY", "SUCCESS")
    W.state(meta.jobs.b.submitted.jobs[1].batch_job_id, "SUCCEEDED")
    _, meta = step(W, m, meta)
    assert.is_true(meta.done)
    assert.same({ run_prefix .. "b/" }, W.deleted)
  end)

  it("with.array: one array job for every strategy; its children are watched", function()
    local W = world()
    W.app.with = { job_queue_arn = "q", s3_bucket = "b", region_name = "us-east-1", array = true }
    local m, meta = start(W, [[
jobs:
  x:
    strategy:
      max-parallel: 1
      matrix: {n: [1, 2, 3]}
    stages: [{name: s, id: s, echo: x}]
]])
    local _
    _, meta = step(W, m, meta)
    assert.equal(1, W.calls.SubmitJob)
    assert.equal(3, W.submits[1].arrayProperties.size)
    local js = meta.jobs.x
    assert.equal("submitted", js.state)
    assert.equal(3, #js.submitted.jobs)
    assert.equal(0, #js.queued)
    for i, j in ipairs(js.submitted.jobs) do
      assert.equal("job-1:" .. (i - 1), j.batch_job_id)
      assert.equal(RUN_ID, cjson.decode(W.dict:get("watch:" .. j.batch_job_id)).meta.run_id)
      W.result("x", j.strategy_id, "SUCCESS", { i = i }, i)
      W.state(j.batch_job_id, "SUCCEEDED")
    end
    _, meta = step(W, m, meta)
    assert.is_true(meta.done)
    assert.equal("SUCCESS", meta.final.status)
    assert.equal(1, W.calls.SubmitJob)
  end)

  it("a bad with: of a later job is its FAILED record, not an error", function()
    local W = world()
    local m, meta = start(W, [[
jobs:
  a:
    stages: [{name: s, id: s, echo: a}]
  b:
    needs: [a]
    runs-on: {type: local, with: {retry_attempts: 99}}
    stages: [{name: s, id: s, echo: b}]
]])
    local _
    _, meta = step(W, m, meta)
    W.result("a", "EMPTY", "SUCCESS")
    W.state(meta.jobs.a.submitted.jobs[1].batch_job_id, "SUCCEEDED")
    _, meta = step(W, m, meta)
    assert.is_true(meta.done)
    assert.equal("FAILED", meta.final.jobs.b.status)
    assert.matches("retry_attempts", meta.final.jobs.b.errors.message)
    assert.equal("Job execution, 'b', was failed.", meta.final.errors.message)
    assert.equal(1, W.calls.SubmitJob)
  end)

  describe("job-level retry:", function()
    local RETRY = [[
jobs:
  r:
    retry: %d
    stages: [{name: s, id: s, echo: r}]
  after:
    needs: [r]
    stages: [{name: s, id: s, echo: after}]
]]
    local KEY = PREFIX .. "r/EMPTY/result.json"

    it("a FAILED job runs again from scratch: attempt keys, old result.json gone, the last record only", function()
      local W = world()
      local m, meta = start(W, RETRY:format(1))
      local _
      _, meta = step(W, m, meta)
      local first = meta.jobs.r.submitted.jobs[1]
      assert.equal("r/EMPTY/0", first.key)
      -- attempt 0 fails, with a stage attempt 1 will not have
      W.objects[KEY] = json.encode({ status = "FAILED", matrix = {}, errors = { name = "JobError", message = "x" },
        stages = { s = { status = "FAILED" }, stale = { status = "SUCCESS", outputs = { old = 1 } } } })
      W.state(first.batch_job_id, "FAILED")
      _, meta = step(W, m, meta)
      -- retried at once (no backoff after the first attempt), nothing cleaned between attempts
      local js = meta.jobs.r
      assert.equal("submitted", js.state)
      assert.equal(1, js.attempt)
      assert.equal(2, W.calls.SubmitJob)
      local second = js.submitted.jobs[1]
      assert.equal("r/EMPTY/1", second.key)
      assert.matches("%-1$", W.submits[2].jobName)
      assert.not_equal(first.batch_job_id, second.batch_job_id)
      assert.is_nil(W.objects[KEY], "attempt 0's result.json must be gone before attempt 1 runs")
      assert.same({}, W.deleted)
      assert.equal(first.batch_job_id, js.history[1].batch_job_id)
      assert.equal("pending", meta.jobs.after.state)
      -- attempt 1 succeeds: the record is its own, the next job runs
      W.result("r", "EMPTY", "SUCCESS", { new = 2 })
      W.state(second.batch_job_id, "SUCCEEDED")
      _, meta = step(W, m, meta)
      assert.equal("done", meta.jobs.r.state)
      local rec = meta.jobs.r.record
      assert.equal("SUCCESS", rec.status)
      assert.is_nil(rec.errors)
      assert.is_nil(rec.stages.stale)
      assert.same({ new = 2 }, rec.stages.s.outputs)
      assert.equal("submitted", meta.jobs.after.state)
      assert.equal("luabatch/runs/" .. RUN_ID .. "/r/", W.deleted[1])
    end)

    it("retries run out: FAILED after retry + 1 attempts; from the second retry on, the backoff 1.2^(k+1) s", function()
      local W = world()
      local m, meta = start(W, RETRY:format(2))
      local _
      _, meta = step(W, m, meta)
      for k = 0, 2 do
        local js = meta.jobs.r
        assert.equal("submitted", js.state, "attempt " .. k)
        assert.equal("r/EMPTY/" .. k, js.submitted.jobs[1].key)
        W.result("r", "EMPTY", "FAILED")
        W.state(js.submitted.jobs[1].batch_job_id, "FAILED")
        _, meta = step(W, m, meta)
        if k == 1 then
          -- attempt 1 failed: attempt 2 waits 1.2^2 s; the run says when to wake it
          assert.equal("retry", meta.jobs.r.state)
          assert.equal(2, W.calls.SubmitJob)
          assert.near(1000 + 1.44, meta.wake, 1e-9)
          W.t = 1001
          _, meta = step(W, m, meta)
          assert.equal("retry", meta.jobs.r.state)
          W.t = 1001.5
          _, meta = step(W, m, meta)
        end
      end
      assert.equal(3, W.calls.SubmitJob)
      assert.is_true(meta.done)
      assert.equal("FAILED", meta.final.jobs.r.status)
      -- after's trigger rule (all_success) fails: the engine's abort
      assert.equal("Validate job trigger rule was failed with 'all_success'.", meta.final.errors.message)
      assert.is_nil(meta.final.jobs.after)
      assert.is_nil(meta.wake)
    end)
  end)

  describe("the client deadline", function()
    local SLOW = [[
jobs:
  s:
    runs-on: {type: local, with: {timeout: 60}}
    strategy:
      max-parallel: 2
      matrix: {n: [1, 2]}
    stages: [{name: s, id: s, bash: "sleep 30"}]
]]

    -- SLOW submitted at 1000 with a 60 - 57 = 3 s deadline -> W, m, meta
    local function submitted()
      local W = world()
      W.policy = { deadline_margin = -57 }
      local m, meta = start(W, SLOW)
      local _
      _, meta = step(W, m, meta)
      return W, m, meta
    end

    it("a live job past timeout x attempts + margin is terminated once, FAILED naming the deadline", function()
      local W, m, meta = submitted()
      local _
      local js = meta.jobs.s
      assert.equal(2, #js.submitted.jobs)
      -- the plan keeps each strategy's deadline (SubmitJob at 1000 + 60 x 1 - 57)
      for _, j in ipairs(js.submitted.jobs) do assert.equal(1003, meta.plan.jobs.s.due[j.strategy_id]) end
      assert.equal(1003, meta.wake)
      -- strategy 1 ends in time; strategy 2 still runs
      local j1, j2 = js.submitted.jobs[1], js.submitted.jobs[2]
      W.result("s", j1.strategy_id, "SUCCESS", {}, 1)
      W.state(j1.batch_job_id, "SUCCEEDED")
      W.state(j2.batch_job_id, "RUNNING")
      W.t = 1002.9
      _, meta = step(W, m, meta)
      assert.is_nil(W.calls.TerminateJob)
      -- its container is seen running now: the deadline counts from here
      assert.is_true(math.abs(meta.wake - 1005.9) < 1e-6, tostring(meta.wake))
      W.t = 1005.8
      _, meta = step(W, m, meta)
      assert.is_nil(W.calls.TerminateJob)
      W.t = 1005.9
      _, meta = step(W, m, meta)
      assert.equal(1, W.calls.TerminateJob)
      assert.equal(j2.batch_job_id, W.terminated[1].id)
      assert.equal("luabatch: client deadline exceeded", W.terminated[1].reason)
      -- done at once, as run_job's wait ends at the deadline
      assert.is_true(meta.done)
      local rec = meta.final.jobs.s
      assert.equal("FAILED", rec.status)
      assert.equal("SUCCESS", rec.strategies[j1.strategy_id].status)
      local late = rec.strategies[j2.strategy_id]
      assert.equal("FAILED", late.status)
      assert.equal(string.format("AWS Batch job %s (%s): luabatch: client deadline exceeded (timeout 60 s x 1 "
        .. "attempts + -57 s margin); terminated", j2.job_name, j2.batch_job_id), late.errors.message)
      assert.same(late.errors, rec.errors[j2.strategy_id])
      _, meta = step(W, m, meta)
      assert.equal(1, W.calls.TerminateJob)
      assert.is_nil(meta.wake)
    end)

    it("a job waiting for capacity is not past the deadline; it counts once the container runs", function()
      local W, m, meta = submitted()
      local _
      local js = meta.jobs.s
      for _, j in ipairs(js.submitted.jobs) do W.state(j.batch_job_id, "RUNNABLE") end
      W.t = 1001
      _, meta = step(W, m, meta)
      assert.is_nil(meta.wake)
      W.t = 5000                        -- an hour in the queue
      _, meta = step(W, m, meta)
      assert.is_nil(W.calls.TerminateJob)
      for _, j in ipairs(js.submitted.jobs) do W.state(j.batch_job_id, "RUNNING") end
      W.t = 5001
      _, meta = step(W, m, meta)
      assert.equal(5004, meta.wake)
      assert.is_nil(W.calls.TerminateJob)
      W.t = 5004
      _, meta = step(W, m, meta)
      assert.equal(2, W.calls.TerminateJob)
      assert.equal("FAILED", meta.final.jobs.s.status)
    end)

    it("with.array: the parent is terminated once; with retry: the job runs again", function()
      local W = world()
      W.policy = { deadline_margin = -57 }
      W.app.with = { job_queue_arn = "q", s3_bucket = "b", region_name = "us-east-1", array = true }
      local m, meta = start(W, SLOW:gsub("  s:\n", "  s:\n    retry: 1\n"))
      local _
      _, meta = step(W, m, meta)
      local js = meta.jobs.s
      assert.equal(1, W.calls.SubmitJob)
      for _, j in ipairs(js.submitted.jobs) do W.state(j.batch_job_id, "RUNNING") end
      W.t = 1001                        -- seen running: 3 s from here
      _, meta = step(W, m, meta)
      assert.is_nil(W.calls.TerminateJob)
      W.t = 1010
      _, meta = step(W, m, meta)
      assert.equal(1, W.calls.TerminateJob)
      assert.equal("job-1", W.terminated[1].id)
      -- both children FAILED by the deadline -> the job FAILED -> retry: 1
      js = meta.jobs.s
      assert.equal("submitted", js.state)
      assert.equal(1, js.attempt)
      assert.equal(2, W.calls.SubmitJob)
      assert.equal(2, W.submits[2].arrayProperties.size)
      assert.equal(1013, meta.plan.jobs.s.due[js.submitted.jobs[1].strategy_id])
      for _, j in ipairs(js.submitted.jobs) do
        W.result("s", j.strategy_id, "SUCCESS", {}, 1)
        W.state(j.batch_job_id, "SUCCEEDED")
      end
      _, meta = step(W, m, meta)
      assert.is_true(meta.done)
      assert.equal("SUCCESS", meta.final.status)
      assert.equal(1, W.calls.TerminateJob)
    end)

    it("no timeout, no deadline: nothing is terminated however long it runs", function()
      local W = world()
      W.policy = { deadline_margin = -57 }
      local m, meta = start(W, SLOW:gsub("with: {timeout: 60}", "with: {}"))
      local _
      _, meta = step(W, m, meta)
      assert.is_nil(next(meta.plan.jobs.s.due))
      assert.is_nil(meta.wake)
      W.t = 1e6
      _, meta = step(W, m, meta)
      assert.is_nil(W.calls.TerminateJob)
    end)
  end)

  it("runs: the journal's cancel marker is read at most once a second per run, at once after a job's end", function()
    local runs = require "luabatch.ngx.runs"
    local W = world()
    local app = runs.new({ with = W.app.with })
    app.dict = function() return W.dict end
    app.clock = function() return W.t end
    local reads = 0
    app.journal = { cancel_requested = function() reads = reads + 1 return reads >= 3 and "stop" or nil end }
    assert.is_nil(app:cancel_marker("r1"))
    assert.is_nil(app:cancel_marker("r1"))      -- the same second: not read again
    W.t = W.t + 0.5
    assert.is_nil(app:cancel_marker("r1"))
    assert.equal(1, reads)
    assert.is_nil(app:cancel_marker("r2"))      -- another run has its own second
    assert.equal(2, reads)
    W.dict:set("ended:r1", true)                -- kick(r1, true): a job of r1 ended
    assert.equal("stop", app:cancel_marker("r1"))
    assert.equal(3, reads)
    assert.is_nil(W.dict:get("ended:r1"))
    W.t = W.t + 1
    assert.equal("stop", app:cancel_marker("r1"))
    assert.equal(4, reads)
  end)

  it("runs: save_run indexes the wake time; the elected poller's tick kicks the runs that are due", function()
    local runs = require "luabatch.ngx.runs"
    local ngx_poller = require "luabatch.ngx.poller"
    local W = world()
    local app = runs.new({ with = W.app.with })
    local kicked = {}
    app.dict = function() return W.dict end
    app.clock = function() return W.t end
    app.kick = function(_, id) kicked[#kicked + 1] = id end
    assert(app:save_run({ run_id = "r1", wake = 1005 }))
    assert(app:save_run({ run_id = "r2" }))
    assert.equal(1005, W.dict:get("wake:r1"))
    assert.is_nil(W.dict:get("wake:r2"))
    -- the poller calls on_tick at the end of each leader tick
    local ticks = {}
    local w = assert(ngx_poller.new({ dict = W.dict, pid = 7, ngx = { now = function() return W.t end },
      batch = { describe_jobs = function() return { jobs = {} } end },
      on_tick = function(_, fresh) ticks[#ticks + 1] = fresh; app:tick_runs(fresh) end }))
    assert.equal("leader", w:tick())
    assert.same({ true }, ticks)
    assert.same({}, kicked)
    W.t = 1005
    w:tick()
    assert.same({ true, false }, ticks)
    assert.same({ "r1" }, kicked)
    -- not again at the next tick unless a second has passed
    w:tick()
    assert.same({ "r1" }, kicked)
    -- the step moved the wake time: queued, picked up, due later
    local meta = { run_id = "r1", wake = 1020, wake_sent = 1005 }
    assert(app:save_run(meta))
    W.t = 1010
    w:tick()
    assert.same({ "r1" }, kicked)
    W.t = 1020
    w:tick()
    assert.same({ "r1", "r1" }, kicked)
    -- the run is over: the index forgets it
    meta.wake = nil
    assert(app:save_run(meta))
    assert.is_nil(W.dict:get("wake:r1"))
    W.t = 1030
    w:tick()
    assert.same({ "r1", "r1" }, kicked)
  end)
end)
