-- luabatch.ngx.drive against fake Batch / S3 clients and a fake shared
-- dict: a run advances one step at a time (roots first, needs' records in
-- the next job's bundle, max-parallel queueing, fail-fast termination,
-- trigger-rule abort, skips), and every step returns at once.
local load = require "luabatch.workflow.load"
local json = require "luabatch.json"
local cjson = require "cjson"
local drive = require "luabatch.ngx.drive"

local NO_ENV = function() return nil end
local RUN_ID = "20260101-000000-0badcafe"
local PREFIX = "b/luabatch/runs/" .. RUN_ID .. "/"

local function fake_dict()
  local d = { data = {} }
  function d:get(k) local v = self.data[k]; if type(v) == "table" then return nil end return v end
  function d:set(k, v) self.data[k] = v; return true end
  function d:add(k, v) if self.data[k] ~= nil then return false, "exists" end self.data[k] = v; return true end
  function d:delete(k) self.data[k] = nil end
  function d:lpush(k, v)
    local l = self.data[k] or {}
    self.data[k] = l
    table.insert(l, 1, v)
    return #l
  end
  return d
end

local function world()
  local W = { submits = {}, objects = {}, calls = {}, terminated = {}, deleted = {}, seq = 0, dict = fake_dict() }
  local function count(op) W.calls[op] = (W.calls[op] or 0) + 1 end
  local batch = {}
  function batch:job_definitions() count("DescribeJobDefinitions"); return function() return nil end end
  function batch:register_job_definition(def)
    count("RegisterJobDefinition")
    return { jobDefinitionName = def.jobDefinitionName, revision = 1,
             jobDefinitionArn = "arn:aws:batch:us-east-1:1:job-definition/" .. def.jobDefinitionName .. ":1" }
  end
  function batch:submit_job(req)
    count("SubmitJob")
    W.seq = W.seq + 1
    W.submits[#W.submits + 1] = req
    return { jobId = "job-" .. W.seq, jobName = req.jobName }
  end
  function batch:terminate_job(id, reason)
    count("TerminateJob")
    W.terminated[#W.terminated + 1] = { id = id, reason = reason }
    return {}
  end
  function batch:describe_jobs() return { jobs = {} } end
  function batch:list_jobs() return function() return nil end end
  local s3 = {}
  function s3:put_object(b, k, body) W.objects[b .. "/" .. k] = body; return {} end
  function s3:get_object(b, k)
    local v = W.objects[b .. "/" .. k]
    if not v then return nil, "NoSuchKey " .. k, "NoSuchKey" end
    return v, {}
  end
  function s3:delete_object(b, k) W.objects[b .. "/" .. k] = nil; return true end
  function s3:delete_prefix(_, prefix) W.deleted[#W.deleted + 1] = prefix; return 0, {} end
  function s3:endpoint() return "http://127.0.0.1:9", "explicit" end
  local logs = {}
  function logs:get_log_events() return { events = {} } end
  local clients = { batch = batch, s3 = s3, logs = logs }
  W.app = {
    with = { job_queue_arn = "q", s3_bucket = "b", region_name = "us-east-1" },
    getenv = NO_ENV, prefix = "", ttl = 100,
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
end)
