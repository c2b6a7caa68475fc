-- luabatch.runner.aws_batch against fake Batch / S3 / Logs clients and a
-- virtual clock: job definitions, naming, bundle, retry strategy,
-- max-parallel, fail-fast, failure reasons, cleanup, resume, cancellation.
require "luabatch.runner"   -- the runners' types and with: schemas, for the loader
local load = require "luabatch.workflow.load"
local engine = require "luabatch.workflow.engine"
local sched = require "luabatch.workflow.sched"
local json = require "luabatch.json"
local policy = require "luabatch.runner.aws_batch.policy"
local jobdef = require "luabatch.runner.aws_batch.jobdef"
local reason = require "luabatch.runner.aws_batch.reason"

local NO_ENV = function() return nil end
local RUN_ID = "20260101-000000-abcdef01"
local SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRETKEY"
local TOKEN = "FwoGZXIvYXdzEXAMPLESESSIONTOKEN0123456789"
local ACCESS = "AKIAEXAMPLEACCESS01"

local function model(yaml)
  return assert(load.string(yaml, "t.yml", { getenv = NO_ENV }))
end

---------------------------------------------------------------------------
-- Fakes
---------------------------------------------------------------------------

-- A world: Batch jobs advance one state per DescribeJobs; at the end the
-- "task" writes result.json (plan.result) to the fake bucket.
local function world(plan_fn)
  local W = { t = 1000, defs = {}, jobs = {}, order = {}, objects = {}, calls = {}, submits = {},
              terminated = {}, deleted = {}, streams = {}, inflight = 0, max_inflight = 0, seq = 0 }
  local function count(op) W.calls[op] = (W.calls[op] or 0) + 1 end
  W.clock = function() return W.t end
  W.sleep = function(d)
    W.t = W.t + d
    if sched.current() then sched.sleep(0) end
    return true
  end

  local batch = {}
  function batch:job_definitions(filter)
    count("DescribeJobDefinitions")
    local list = {}
    for _, d in ipairs(W.defs) do
      if d.jobDefinitionName == filter.jobDefinitionName and d.status == (filter.status or d.status) then
        list[#list + 1] = d
      end
    end
    local i = 0
    return function() i = i + 1; return list[i] end
  end
  function batch:register_job_definition(def)
    count("RegisterJobDefinition")
    local rev = 1
    for _, d in ipairs(W.defs) do if d.jobDefinitionName == def.jobDefinitionName then rev = rev + 1 end end
    local arn = "arn:aws:batch:us-east-1:1:job-definition/" .. def.jobDefinitionName .. ":" .. rev
    W.defs[#W.defs + 1] = { jobDefinitionName = def.jobDefinitionName, jobDefinitionArn = arn, revision = rev,
      status = "ACTIVE", parameters = def.parameters, containerProperties = def.containerProperties,
      request = def }
    return { jobDefinitionName = def.jobDefinitionName, jobDefinitionArn = arn, revision = rev }
  end
  local function new_job(req, index, parent)
    W.seq = W.seq + 1
    local id = parent and (parent.jobId .. ":" .. index) or ("job-" .. W.seq)
    local sid = req.parameters.strategy
    local j = { jobId = id, jobName = req.jobName, status = "SUBMITTED", req = req, steps = 0, index = index,
                parent = parent }
    j.plan = plan_fn(req, index) or {}
    W.jobs[id] = j
    W.order[#W.order + 1] = j
    return j
  end
  function batch:submit_job(req)
    count("SubmitJob")
    W.submits[#W.submits + 1] = req
    local j = new_job(req)
    if req.arrayProperties then
      j.children = {}
      for i = 0, req.arrayProperties.size - 1 do j.children[#j.children + 1] = new_job(req, i, j) end
    end
    if W.lose_answer and W.lose_answer > 0 then
      W.lose_answer = W.lose_answer - 1
      return nil, "SubmitJob: connection closed before the answer", "EIO"
    end
    return { jobId = j.jobId, jobName = j.jobName }
  end
  local function finish(j, status)
    j.status = status
    if not j.children then W.inflight = W.inflight - 1 end
    local p = j.plan
    if p.result ~= nil and status ~= "FAILED" or (p.result ~= nil and p.write_on_fail) then
      local sid = j.req.parameters.strategy
      local key = p.result_key or sid
      W.objects["b/luabatch/runs/" .. RUN_ID .. "/" .. j.req.tags["luabatch:job"] .. "/" .. key .. "/result.json"]
        = json.encode(p.result)
    end
  end
  local function advance(j)
    if j.status == "SUCCEEDED" or j.status == "FAILED" then return end
    if j.children then
      local all, failed = true, false
      for _, c in ipairs(j.children) do
        if c.status ~= "SUCCEEDED" and c.status ~= "FAILED" then all = false end
        if c.status == "FAILED" then failed = true end
      end
      if all then j.status = failed and "FAILED" or "SUCCEEDED" else j.status = "PENDING" end
      return
    end
    j.steps = j.steps + 1
    local p = j.plan
    local run_at = 2
    local end_at = p.steps or 4
    if j.steps == 1 then
      j.status = "RUNNABLE"
      W.inflight = W.inflight + 1
      if W.inflight > W.max_inflight then W.max_inflight = W.inflight end
    elseif j.steps >= run_at and j.steps < end_at then
      j.status = "RUNNING"
      j.stream = "lb/default/" .. j.jobId
      W.streams[j.stream] = W.streams[j.stream] or {}
      for _, l in ipairs(p.logs or {}) do table.insert(W.streams[j.stream], { message = l, timestamp = 1 }) end
      p.logs = nil
    elseif j.steps >= end_at then
      finish(j, p.final or "SUCCEEDED")
    end
  end
  local function detail(j)
    local d = { jobId = j.jobId, jobName = j.jobName, status = j.status, statusReason = j.statusReason }
    if j.status == "FAILED" and not j.statusReason then d.statusReason = j.plan.status_reason end
    if j.stream then
      d.container = { logStreamName = j.stream, exitCode = (j.status == "FAILED" or j.status == "SUCCEEDED")
        and (j.plan.exit_code or (j.status == "SUCCEEDED" and 0 or nil)) or nil,
        reason = j.plan.container_reason }
      d.attempts = { { container = { logStreamName = j.stream, exitCode = d.container.exitCode,
        reason = j.plan.container_reason }, statusReason = j.plan.attempt_reason } }
    end
    return d
  end
  function batch:describe_jobs(ids)
    count("DescribeJobs")
    W.max_ids = math.max(W.max_ids or 0, #ids)
    assert(#ids <= 100)
    local out = {}
    for _, id in ipairs(ids) do
      local j = W.jobs[id]
      if j then advance(j); out[#out + 1] = detail(j) end
    end
    -- array parents follow their children
    for _, id in ipairs(ids) do
      local j = W.jobs[id]
      if j and j.children then advance(j) end
    end
    return { jobs = out }
  end
  function batch:list_jobs(args)
    count("ListJobs")
    local v = args.filters and args.filters[1].values[1]
    local list = {}
    for _, j in ipairs(W.order) do
      if not j.parent and j.jobName == v then list[#list + 1] = { jobId = j.jobId, jobName = j.jobName, status = j.status } end
    end
    local i = 0
    return function() i = i + 1; return list[i] end
  end
  function batch:terminate_job(id, why)
    count("TerminateJob")
    W.terminated[#W.terminated + 1] = { id = id, reason = why }
    local j = W.jobs[id]
    local function kill(x)
      if x.status ~= "SUCCEEDED" and x.status ~= "FAILED" then
        x.statusReason = why
        if x.steps >= 1 and not x.children then W.inflight = W.inflight - 1 end
        x.status = "FAILED"
      end
    end
    if j then
      for _, c in ipairs(j.children or {}) do kill(c) end
      kill(j)
    end
    return {}
  end

  local s3 = {}
  function s3:put_object(bucket, key, body)
    count("PutObject")
    W.objects[bucket .. "/" .. key] = body
    return { etag = "x" }
  end
  function s3:get_object(bucket, key)
    count("GetObject")
    local b = W.objects[bucket .. "/" .. key]
    if not b then return nil, "GetObject " .. key .. ": NoSuchKey", "NoSuchKey" end
    return b, {}
  end
  function s3:delete_object(bucket, key)
    W.objects[bucket .. "/" .. key] = nil
    return true
  end
  function s3:delete_prefix(bucket, prefix)
    W.deleted[#W.deleted + 1] = prefix
    local n = 0
    for k in pairs(W.objects) do
      if k:sub(1, #bucket + 1 + #prefix) == bucket .. "/" .. prefix then W.objects[k] = nil; n = n + 1 end
    end
    return n, {}
  end
  function s3:endpoint() return "http://127.0.0.1:9", "explicit" end

  local logs = {}
  function logs:get_log_events(group, stream, opts)
    count("GetLogEvents")
    local evs = W.streams[stream] or {}
    local out = {}
    local first = math.max(1, #evs - (opts.limit or 10000) + 1)
    for i = first, #evs do out[#out + 1] = evs[i] end
    return { events = out }
  end
  function logs:tail(group, stream)
    local pos = 0
    return { stream = stream, poll = function()
      local evs = W.streams[stream] or {}
      local out = {}
      for i = pos + 1, #evs do out[#out + 1] = evs[i] end
      pos = #evs
      return out
    end }
  end

  W.batch, W.s3, W.logs = batch, s3, logs
  W.clients = function() return { batch = batch, s3 = s3, logs = logs } end
  return W
end

local function fake_journal(state)
  local j = { events = {} }
  function j:append(ev)
    self.events[#self.events + 1] = json.decode(json.encode(ev))
    return true
  end
  function j:state() return state end
  return j
end

local BASE_WITH = { job_queue_arn = "lb-queue", s3_bucket = "b", region_name = "us-east-1" }

local function run(W, m, o)
  o = o or {}
  local with = {}
  for k, v in pairs(BASE_WITH) do with[k] = v end
  for k, v in pairs(o.with or {}) do with[k] = v end
  local lines = {}
  local ro = { clients = W.clients, clock = W.clock, sleep = W.sleep, journal = o.journal,
               policy = o.policy, follow = o.follow, resume = o.resume }
  local ctx, err = engine.run(m, { runs_on = "aws_batch", with = with, run_id = RUN_ID, runner_opts = ro,
    getenv = NO_ENV, cancelled = o.cancelled, log = function(l) lines[#lines + 1] = l end })
  assert(ctx, err)
  return ctx, lines
end

local function ok_record(values, out)
  return { status = "SUCCESS", matrix = values or {}, stages = { s = { outputs = out or { remote = true } } },
           info = { exec_start = "2026-01-01T00:00:00Z", exec_end = "2026-01-01T00:00:01Z", exec_latency = 1.0 } }
end

local SIMPLE = [[
jobs:
  j:
    stages:
      - name: s
        echo: hi
]]

local MATRIX = [[
jobs:
  m:
    strategy:
      max-parallel: %d
      fail-fast: %s
      matrix:
        n: [1, 2, 3, 4, 5]
    stages:
      - name: s
        echo: "n=${{ matrix.n }}"
]]

---------------------------------------------------------------------------

describe("luabatch.runner.aws_batch #unit", function()
  it("reads result.json as the strategy record", function()
    local W = world(function() return { result = ok_record({}, { answer = 42 }) } end)
    local ctx = run(W, model(SIMPLE))
    assert.equal("SUCCESS", ctx.status)
    assert.equal(42, ctx.jobs.j.stages.s.outputs.answer)
    assert.equal(1, W.calls.SubmitJob)
    local req = W.submits[1]
    assert.equal("lb-queue", req.jobQueue)
    assert.equal("EMPTY", req.parameters.strategy)
    assert.equal("s3://b/luabatch/runs/" .. RUN_ID .. "/j/bundle.json", req.parameters.bundle)
    assert.equal(RUN_ID, req.tags["luabatch:run"])
    assert.equal("j", req.tags["luabatch:job"])
    assert.is_true(req.propagateTags)
    local env = {}
    for _, e in ipairs(req.containerOverrides.environment) do env[e.name] = e.value end
    assert.equal(RUN_ID, env.LUABATCH_RUN_ID)
    assert.equal("us-east-1", env.AWS_REGION)
    assert.equal("http://127.0.0.1:9", env.AWS_ENDPOINT_URL_S3)
  end)

  it("reuses an ACTIVE job definition with the same hash: a second run registers nothing", function()
    local W = world(function() return { result = ok_record() } end)
    run(W, model(SIMPLE))
    assert.equal(1, W.calls.RegisterJobDefinition)
    local def = W.defs[1]
    assert.equal(jobdef.COMMAND[3], def.containerProperties.command[3])
    assert.same({ "luabatch", "task", "Ref::bundle", "--strategy", "Ref::strategy" }, def.containerProperties.command)
    assert.is_string(def.parameters.luabatch_hash)
    assert.is_nil(def.request.timeout)
    assert.is_nil(def.request.retryStrategy)
    run(W, model(SIMPLE))                  -- a new session: found by DescribeJobDefinitions
    assert.equal(1, W.calls.RegisterJobDefinition)
    assert.equal(W.defs[1].jobDefinitionArn, W.submits[2].jobDefinition)
    run(W, model(SIMPLE), { with = { memory = 4096 } })   -- other content: a new revision
    assert.equal(2, W.calls.RegisterJobDefinition)
    assert.equal(2, W.defs[2].revision)
    assert.equal(W.defs[1].jobDefinitionName, W.defs[2].jobDefinitionName)
  end)

  it("builds FARGATE definitions and names the missing execution role", function()
    local W = world(function() return { result = ok_record() } end)
    local ctx = run(W, model(SIMPLE), { with = { platform = "FARGATE" } })
    assert.equal("FAILED", ctx.jobs.j.status)
    assert.matches("execution_role_arn", ctx.jobs.j.errors.message)
    assert.is_nil(W.calls.SubmitJob)
    ctx = run(W, model(SIMPLE), { with = { platform = "FARGATE", execution_role_arn = "arn:aws:iam::1:role/x",
      vcpus = 0.5, memory = 1024, log_group = "/lb/jobs" } })
    assert.equal("SUCCESS", ctx.status)
    local d = W.defs[1].request
    assert.same({ "FARGATE" }, d.platformCapabilities)
    assert.equal("ENABLED", d.containerProperties.networkConfiguration.assignPublicIp)
    assert.same({ { type = "VCPU", value = "0.5" }, { type = "MEMORY", value = "1024" } },
      d.containerProperties.resourceRequirements)
    assert.equal("/lb/jobs", d.containerProperties.logConfiguration.options["awslogs-group"])
  end)

  it("validates with: up front and submits nothing", function()
    local W = world(function() return {} end)
    local m = model(SIMPLE)
    local ctx = engine.run(m, { runs_on = "aws_batch", with = { s3_bucket = "b", region_name = "r" },
      run_id = RUN_ID, runner_opts = { clients = W.clients, clock = W.clock, sleep = W.sleep }, getenv = NO_ENV })
    assert.equal("FAILED", ctx.jobs.j.status)
    assert.matches("job 'j'", ctx.jobs.j.errors.message)
    assert.matches("job_queue_arn", ctx.jobs.j.errors.message)
    ctx = engine.run(m, { runs_on = "aws_batch", with = { job_queue_arn = "q", region_name = "r" },
      run_id = RUN_ID, runner_opts = { clients = W.clients, clock = W.clock, sleep = W.sleep }, getenv = NO_ENV })
    assert.matches("s3_bucket", ctx.jobs.j.errors.message)
    assert.is_nil(W.calls.SubmitJob)
    assert.is_nil(W.calls.PutObject)
  end)

  it("sanitises names: valid, <= 128 characters, distinct", function()
    local re = "^[A-Za-z0-9][A-Za-z0-9_-]*$"
    local a = policy.sanitize("lb-run-my.job-1-0")
    local b = policy.sanitize("lb-run-my_job-1-0")
    assert.matches(re, a)
    assert.are_not.equal(a, b)
    local long = policy.sanitize("_" .. string.rep("x", 300))
    assert.matches(re, long)
    assert.is_true(#long <= 128)
    assert.equal("plain-name_1", policy.sanitize("plain-name_1"))
    local W = world(function() return { result = ok_record() } end)
    run(W, model([[
jobs:
  my.job:
    stages:
      - name: s
        echo: hi
]]), { with = { image = "registry.example.com/team/luabatch:1.2" } })
    assert.matches(re, W.submits[1].jobName)
    assert.matches(re, W.defs[1].jobDefinitionName)
    assert.matches("^lb%-" .. RUN_ID:gsub("%-", "%%-"), W.submits[1].jobName)
  end)

  it("uploads a bundle without any credential; the journal and SubmitJob carry none either", function()
    local W = world(function() return { result = ok_record() } end)
    local j = fake_journal()
    run(W, model(SIMPLE), { journal = j, with = { aws_access_key_id = ACCESS, aws_secret_access_key = SECRET,
      aws_session_token = TOKEN, environment = { STAGE = "prod" } } })
    local bundle = W.objects["b/luabatch/runs/" .. RUN_ID .. "/j/bundle.json"]
    -- the bundle is deleted by cleanup; the run records every upload
    assert.is_nil(bundle)
    local W2 = world(function() return { result = ok_record() } end)
    run(W2, model(SIMPLE), { journal = j, policy = { cleanup = "never" }, with = { aws_access_key_id = ACCESS,
      aws_secret_access_key = SECRET, aws_session_token = TOKEN } })
    bundle = assert(W2.objects["b/luabatch/runs/" .. RUN_ID .. "/j/bundle.json"])
    local texts = { bundle, json.encode(W.submits[1]), json.encode(W2.submits[1]), json.encode(j.events),
                    json.encode(W.defs[1].request) }
    for _, t in ipairs(texts) do
      for _, secret in ipairs({ SECRET, TOKEN, ACCESS }) do
        assert.is_nil(t:find(secret, 1, true), "credential found in " .. t:sub(1, 200))
      end
    end
    local env = {}
    for _, e in ipairs(W.submits[1].containerOverrides.environment) do env[e.name] = e.value end
    assert.equal("prod", env.STAGE)
    local evs = {}
    for _, e in ipairs(j.events) do evs[e.ev] = (evs[e.ev] or 0) + 1 end
    for _, name in ipairs({ "config", "jobdef", "upload", "submit", "submitted", "state", "result", "cleanup" }) do
      assert.is_truthy(evs[name], "no " .. name .. " event")
    end
  end)

  it("refuses credentials in with.environment", function()
    local W = world(function() return {} end)
    local ctx = run(W, model(SIMPLE), { with = { environment = { AWS_SECRET_ACCESS_KEY = "x" } } })
    assert.equal("FAILED", ctx.status)
    assert.matches("environment.AWS_SECRET_ACCESS_KEY", ctx.jobs.j.errors.message)
    assert.is_nil(W.calls.SubmitJob)
  end)

  it("submits a retry strategy ending in a catch-all EXIT rule, and the timeout", function()
    local W = world(function() return { result = ok_record() } end)
    run(W, model(SIMPLE), { with = { retry_attempts = 3, timeout = 90 } })
    local rs = W.submits[1].retryStrategy
    assert.equal(3, rs.attempts)
    local last = rs.evaluateOnExit[#rs.evaluateOnExit]
    assert.same({ onReason = "*", action = "EXIT" }, last)
    assert.equal("RETRY", rs.evaluateOnExit[1].action)
    assert.equal(90, W.submits[1].timeout.attemptDurationSeconds)
    -- under Batch's minimum: refused as the loader refuses it, nothing submitted
    local ctx = run(W, model(SIMPLE), { with = { timeout = 30 } })
    assert.equal("FAILED", ctx.jobs.j.status)
    assert.matches("with.timeout must be an integer number of seconds >= 60", ctx.jobs.j.errors.message, 1, true)
    assert.equal(1, W.calls.SubmitJob)
  end)

  it("a with: field the runner does not have is refused at run time too (a --with typo)", function()
    local W = world(function() return { result = ok_record() } end)
    local ctx = run(W, model(SIMPLE), { with = { memroy = "4096" } })
    assert.equal("FAILED", ctx.jobs.j.status)
    assert.matches("with.memroy is not a field of this runner", ctx.jobs.j.errors.message, 1, true)
    assert.is_nil(W.calls.SubmitJob)
  end)

  it("never has more than max-parallel Batch jobs in flight", function()
    local W = world(function(req) return { steps = 6, result = ok_record() } end)
    local ctx = run(W, model(MATRIX:format(2, "false")))
    assert.equal("SUCCESS", ctx.status)
    assert.equal(5, W.calls.SubmitJob)
    assert.equal(2, W.max_inflight)
    -- one poller: jobs waiting at once share DescribeJobs calls
    assert.is_true((W.max_ids or 0) >= 2)
  end)

  it("fail-fast terminates the running siblings", function()
    local W
    W = world(function(req)
      local sid = req.parameters.strategy
      if #W.submits == 1 then
        return { steps = 3, final = "FAILED", exit_code = 1, status_reason = "Essential container in task exited" }
      end
      return { steps = 50, result = ok_record() }
    end)
    local ctx = run(W, model(MATRIX:format(3, "true")))
    assert.equal("FAILED", ctx.status)
    assert.equal(3, W.calls.SubmitJob)
    assert.equal(2, #W.terminated)
    for _, t in ipairs(W.terminated) do assert.matches("fail%-fast", t.reason) end
    local cancel = 0
    for _, r in pairs(ctx.jobs.m.strategies) do if r.status == "CANCEL" then cancel = cancel + 1 end end
    assert.equal(2, cancel)
  end)

  it("explains a failure: exit code, reasons and the last log lines", function()
    local lines = {}
    for i = 1, 25 do lines[i] = "log line " .. i end
    local W = world(function() return { steps = 4, final = "FAILED", exit_code = 3.0, logs = lines,
      status_reason = "Essential container in task exited", container_reason = "OutOfMemoryError: Container killed" } end)
    local ctx = run(W, model(SIMPLE))
    assert.equal("FAILED", ctx.status)
    local msg = ctx.jobs.j.errors.message
    assert.equal("AWSBatchJobError", ctx.jobs.j.errors.name)
    assert.matches("exit code 3;", msg)          -- an integer even when JSON gave 3.0
    assert.matches("Essential container in task exited", msg)
    assert.matches("OutOfMemoryError", msg)
    assert.matches("raise with.memory", msg)
    assert.matches("log line 25", msg)
    assert.matches("log line 6\n", msg)
    assert.is_nil(msg:find("log line 5\n", 1, true))
  end)

  it("keeps at most TAIL_MAX_LINES log lines in a failure report, each cut to LINE_MAX bytes", function()
    local lines = { ("é"):rep(10) .. "tail", "short" }
    local W = world(function() return { steps = 4, final = "FAILED", exit_code = 1, logs = lines } end)
    local saved_n, saved_b = reason.TAIL_MAX_LINES, reason.LINE_MAX
    reason.TAIL_MAX_LINES, reason.LINE_MAX = 1, 7
    local ok, ctx = pcall(run, W, model(SIMPLE))
    reason.TAIL_MAX_LINES, reason.LINE_MAX = saved_n, saved_b
    assert(ok, ctx)
    local msg = ctx.jobs.j.errors.message
    assert.matches("short", msg)
    assert.is_nil(msg:find("tail", 1, true))
    lines[#lines] = nil                           -- the long line last: cut at a character boundary
    W = world(function() return { steps = 4, final = "FAILED", exit_code = 1, logs = lines } end)
    reason.LINE_MAX = 7
    ok, ctx = pcall(run, W, model(SIMPLE))
    reason.LINE_MAX = saved_b
    assert(ok, ctx)
    assert.matches("ééé [luabatch: 18 more bytes cut]", ctx.jobs.j.errors.message, 1, true)
  end)

  it("refuses a result.json over RESULT_MAX unread, naming the object and the limit", function()
    local run_mod = require "luabatch.runner.aws_batch.run"
    local W = world(function() return { result = ok_record({}, { answer = ("x"):rep(300) }) } end)
    local saved = run_mod.RESULT_MAX
    run_mod.RESULT_MAX = 200
    local ok, ctx = pcall(run, W, model(SIMPLE))
    run_mod.RESULT_MAX = saved
    assert(ok, ctx)
    assert.equal("FAILED", ctx.status)
    local obj = ("s3://b/luabatch/runs/" .. RUN_ID .. "/j/EMPTY/result.json"):gsub("%p", "%%%0")
    assert.matches("result%.json is not a strategy record: " .. obj
      .. ": %d+ bytes exceeds the limit of 200 bytes for JSON", ctx.jobs.j.errors.message)
  end)

  it("classifies Batch reasons", function()
    local function kind(d) return reason.facts(d).kind end
    assert.equal("image", kind({ status = "FAILED", container = { reason = "CannotPullContainerError: x" } }))
    assert.equal("timeout", kind({ status = "FAILED", statusReason = "Job attempt duration exceeded timeout" }))
    assert.equal("host", kind({ status = "FAILED", attempts = { { statusReason = "Host EC2 (instance i-1) terminated." } } }))
    assert.equal("misconfiguration", kind({ status = "FAILED", statusReason = "MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT" }))
    assert.equal("exit", kind({ status = "FAILED", container = { exitCode = 2 } }))
  end)

  it("cleans up the run prefix only, and keeps it on failure when asked", function()
    local W = world(function() return { result = ok_record() } end)
    run(W, model(SIMPLE))
    assert.same({ "luabatch/runs/" .. RUN_ID .. "/j/", "luabatch/runs/" .. RUN_ID .. "/" }, W.deleted)
    local W2 = world(function() return { steps = 3, final = "FAILED", exit_code = 1 } end)
    run(W2, model(SIMPLE), { with = { keep_on_failure = true } })
    assert.same({}, W2.deleted)
    local W3 = world(function() return { result = ok_record() } end)
    run(W3, model(SIMPLE), { with = { s3_prefix = "/team/x/" } })
    assert.same({ "team/x/" .. RUN_ID .. "/j/", "team/x/" .. RUN_ID .. "/" }, W3.deleted)
  end)

  it("adopts a job whose SubmitJob answer was lost instead of submitting twice", function()
    local W = world(function() return { result = ok_record() } end)
    W.lose_answer = 1
    local ctx = run(W, model(SIMPLE))
    assert.equal("SUCCESS", ctx.status)
    assert.equal(1, W.calls.SubmitJob)
    assert.equal(1, W.calls.ListJobs)
  end)

  it("resume: reuses results, watches submitted ids, looks up unanswered submits", function()
    local W = world(function() return { result = ok_record() } end)
    -- a job submitted before the client died, answer never recorded
    local pre = W.batch:submit_job({ jobName = policy.sanitize("lb-" .. RUN_ID .. "-j-EMPTY-0"), jobQueue = "lb-queue",
      jobDefinition = "x", parameters = { strategy = "EMPTY", bundle = "s3://b/k" }, tags = { ["luabatch:job"] = "j" } })
    W.calls.SubmitJob = 0
    local state = { jobs = { ["j/EMPTY/0"] = { key = "j/EMPTY/0", job_name = "lb-" .. RUN_ID .. "-j-EMPTY-0" } },
                    results = {} }
    local ctx = run(W, model(SIMPLE), { resume = true, journal = fake_journal(state) })
    assert.equal("SUCCESS", ctx.status)
    assert.equal(0, W.calls.SubmitJob)
    assert.equal(1, W.calls.ListJobs)
    -- a recorded id is watched again
    local W2 = world(function() return { result = ok_record() } end)
    local pre2 = W2.batch:submit_job({ jobName = "whatever", jobQueue = "lb-queue", jobDefinition = "x",
      parameters = { strategy = "EMPTY", bundle = "s3://b/k" }, tags = { ["luabatch:job"] = "j" } })
    W2.calls.SubmitJob = 0
    state = { jobs = { ["j/EMPTY/0"] = { key = "j/EMPTY/0", batch_job_id = pre2.jobId } }, results = {} }
    ctx = run(W2, model(SIMPLE), { resume = true, journal = fake_journal(state) })
    assert.equal("SUCCESS", ctx.status)
    assert.equal(0, W2.calls.SubmitJob)
    assert.is_nil(W2.calls.ListJobs)
    -- a recorded result is reused without any call
    local W3 = world(function() error("nothing may be submitted") end)
    state = { jobs = {}, results = { ["j/EMPTY/0"] = { status = "SUCCESS", record = ok_record({}, { resumed = true }) } } }
    ctx = run(W3, model(SIMPLE), { resume = true, journal = fake_journal(state) })
    assert.equal("SUCCESS", ctx.status)
    assert.is_true(ctx.jobs.j.stages.s.outputs.resumed)
    assert.is_nil(W3.calls.SubmitJob)
    assert.truthy(pre)
  end)

  it("submits one array job for the matrix when with.array is set", function()
    local W = world(function(req, index)
      if index == nil then return {} end
      local n = index + 1
      return { result = ok_record({ n = n }, { n = n }), result_key = nil, steps = 3 }
    end)
    -- children write result.json under their strategy id: map index -> sid
    local m = model(MATRIX:format(2, "false"))
    local combos = require("luabatch.workflow.job").strategies(m.jobs.m)
    local inner = W.batch.submit_job
    W.batch.submit_job = function(self, req)
      local r, msg, code = inner(self, req)
      for _, j in ipairs(W.order) do
        if j.index ~= nil then j.plan.result_key = combos[j.index + 1].id end
      end
      return r, msg, code
    end
    local ctx = run(W, m, { with = { array = true } })
    assert.equal(1, W.calls.SubmitJob)
    assert.equal(5, W.submits[1].arrayProperties.size)
    assert.equal("@array", W.submits[1].parameters.strategy)
    assert.equal("SUCCESS", ctx.status)
    local seen = {}
    for _, r in pairs(ctx.jobs.m.strategies) do seen[#seen + 1] = r.stages.s.outputs.n end
    table.sort(seen)
    assert.same({ 1, 2, 3, 4, 5 }, seen)
    -- a single strategy cannot be an array job
    local W2 = world(function() return { result = ok_record() } end)
    run(W2, model(SIMPLE), { with = { array = true } })
    assert.is_nil(W2.submits[1].arrayProperties)
  end)

  it("cancellation terminates every running job of the run and gives CANCEL", function()
    local W = world(function() return { steps = 100, result = ok_record() } end)
    local stop = false
    local inner = W.batch.describe_jobs
    W.batch.describe_jobs = function(self, ids)
      local r = inner(self, ids)
      if W.calls.DescribeJobs >= 4 then stop = true end
      return r
    end
    local ctx = run(W, model(MATRIX:format(3, "false")), { cancelled = function() return stop end })
    assert.equal("CANCEL", ctx.status)
    assert.equal(3, #W.terminated)
    for _, t in ipairs(W.terminated) do assert.matches("cancelled", t.reason) end
  end)

  it("SIGINT: terminates the run's jobs (the flag is cleared for the calls, then kept)", function()
    local core = require "luabatch.core"
    local W = world(function() return { steps = 100, result = ok_record() } end)
    local inner = W.batch.describe_jobs
    local j = fake_journal()
    W.batch.describe_jobs = function(self, ids)
      local r = inner(self, ids)
      if W.calls.DescribeJobs == 3 then core.raise_interrupt() end
      return r
    end
    local ok, ctx = pcall(run, W, model(MATRIX:format(2, "false")), { journal = j })
    local still = core.interrupted()
    core.clear_interrupt()
    assert(ok, ctx)
    assert.is_true(still)
    assert.equal(2, #W.terminated)
    for _, t in ipairs(W.terminated) do assert.matches("interrupted", t.reason) end
    assert.equal(2, W.calls.SubmitJob)
    local terms = 0
    for _, e in ipairs(j.events) do if e.ev == "terminate" then terms = terms + 1 end end
    assert.equal(2, terms)
    assert.equal("CANCEL", ctx.status)
  end)

  it("follows the logs of running jobs as [job/sid] lines", function()
    local W = world(function() return { steps = 5, logs = { "hello", "world" }, result = ok_record() } end)
    local _, lines = run(W, model(SIMPLE), { follow = true })
    local got = {}
    for _, l in ipairs(lines) do if l:find("^%[j/EMPTY%]") then got[#got + 1] = l end end
    assert.same({ "[j/EMPTY] hello", "[j/EMPTY] world" }, got)
  end)

  it("one meaning: the CLI engine and the nginx driver give the same context for the same Batch outcomes", function()
    local WF = model([[
jobs:
  first:
    stages: [{name: s, id: s, echo: a}]
  fan:
    needs: [first]
    strategy: {max-parallel: 2, matrix: {n: [1, 2, 3]}}
    stages: [{name: s, id: s, echo: "${{ matrix.n }}"}]
  flaky:
    needs: [first]
    retry: 1
    stages: [{name: s, id: s, echo: f}]
  never:
    needs: [fan]
    trigger-rule: all_done
    if: "'${{ jobs.fan.status }}' == 'nope'"
    stages: [{name: s, id: s, echo: n}]
  last:
    needs: [never, flaky]
    trigger-rule: all_done
    stages: [{name: s, id: s, echo: l}]
]])
    local values = {}
    for _, c in ipairs(require("luabatch.workflow.job").strategies(WF.jobs.fan)) do values[c.id] = c.values end
    -- the same outcomes for both: fan n=2 FAILED (its result.json says why),
    -- flaky FAILED on its first attempt only, everything else SUCCEEDED
    local function outcomes()
      local seen = {}
      return function(req)
        local id, sid = req.tags["luabatch:job"], req.parameters.strategy
        seen[id] = (seen[id] or 0) + 1
        local v = values[sid] or {}
        local bad = (id == "fan" and v.n == 2) or (id == "flaky" and seen[id] == 1)
        local r = ok_record(v, { who = id, n = v.n })
        if bad then
          r.status = "FAILED"
          r.errors = { name = "StageError", message = id .. " broke" }
        end
        return { result = r, final = bad and "FAILED" or "SUCCEEDED", write_on_fail = true }
      end
    end
    local function strip(v)
      if type(v) ~= "table" then return v end
      local out = {}
      for k, x in pairs(v) do if k ~= "info" then out[k] = strip(x) end end
      return out
    end

    local Wc = world(outcomes())
    local cli = run(Wc, WF)

    local Wn = world(outcomes())
    local d = require("helpers.fake_aws").dict()
    local drive = require "luabatch.ngx.drive"
    local app = { with = BASE_WITH, getenv = NO_ENV, prefix = "", ttl = 100, clock = Wn.clock,
      dict = function() return d end, clients = function() return Wn.clients() end,
      runner_opts = function(_, id) return { clients = Wn.clients, run_id = id, clock = Wn.clock,
        sleep = Wn.sleep } end }
    local meta = drive.new_run(app, WF, { run_id = RUN_ID, params = {}, source = "", name = "t.yml" })
    for _ = 1, 200 do
      drive.step(app, meta, WF)
      if meta.done then break end
      meta = json.decode(json.encode(meta))        -- what the shared dict keeps
      Wn.t = Wn.t + 1
      -- the elected poller's view: each watched job one DescribeJobs further
      for k in pairs(d.data) do
        local bid = k:match("^watch:(.+)$")
        if bid then
          local ans = Wn.batch:describe_jobs({ bid })
          local jd = ans.jobs[1]
          d:set("job:" .. bid, require("cjson").encode({ id = bid, status = jd.status, reason = jd.statusReason,
            exit_code = jd.container and jd.container.exitCode, log_stream = jd.container and jd.container.logStreamName }))
        end
      end
    end
    assert.is_true(meta.done)
    local ngx_ctx = meta.final
    assert.equal("FAILED", cli.status)
    assert.equal("FAILED", cli.jobs.fan.status)
    assert.equal("SUCCESS", cli.jobs.flaky.status)
    assert.equal("SKIP", cli.jobs.never.status)
    assert.equal("SUCCESS", cli.jobs.last.status)
    assert.same(strip(cli), strip(json.decode(json.encode(ngx_ctx))))
    assert.same(strip(json.decode(json.encode(cli))), strip(json.decode(json.encode(ngx_ctx))))
    -- and the same Batch work: one SubmitJob per strategy and attempt
    assert.equal(Wc.calls.SubmitJob, Wn.calls.SubmitJob)
    assert.equal(7, Wc.calls.SubmitJob)
  end)

  it("gives the same canonical hash whatever the key order", function()
    assert.equal(jobdef.canonical({ b = 1, a = { 2, 3 }, c = { x = "y" } }),
      jobdef.canonical({ c = { x = "y" }, a = { 2, 3 }, b = 1 }))
    assert.equal('{"a":[2,3],"b":1}', jobdef.canonical({ b = 1, a = { 2, 3 } }))
  end)
end)
