-- luabatch.runner.aws_batch.submit / collect (the non-waiting halves that
-- luabatch.ngx.runs uses) against fake Batch / S3 / Logs clients: submit
-- returns at once with one Batch job per strategy (or one array job),
-- collect turns terminal summaries into the same job record run_job gives.
require "luabatch.runner"   -- the runners' types and with: schemas, for the loader
local load = require "luabatch.workflow.load"
local json = require "luabatch.json"
local aws_batch = require "luabatch.runner.aws_batch"
local fake_aws = require "helpers.fake_aws"

local NO_ENV = function() return nil end
local RUN_ID = "20260101-000000-0badcafe"

local MATRIX = [[
jobs:
  m:
    if: "params.go != 'no'"
    strategy:
      matrix:
        n: [1, 2]
    stages:
      - name: s
        echo: "n=${{ matrix.n }}"
]]

local function model(yaml)
  return assert(load.string(yaml or MATRIX, "t.yml", { getenv = NO_ENV }))
end

local function world()
  local W = fake_aws.new()
  W.t = 0
  local clients = W.clients
  W.ro = function()
    return { clients = function() return clients end,
             clock = function() return W.t end,
             sleep = function(d) W.t = W.t + d; return true end }
  end
  return W
end

local WITH = { job_queue_arn = "q", s3_bucket = "b", region_name = "us-east-1" }

local function env_of(W, m, with, params)
  local engine = require "luabatch.workflow.engine"
  local env = engine.make_env(m, { getenv = NO_ENV, run_id = RUN_ID, runner_opts = W.ro() })
  return setmetatable({ job_id = "m", job_with = with or WITH }, { __index = env })
end

local function result(n, out)
  return json.encode({ status = "SUCCESS", matrix = { n = n }, stages = { s = { outputs = out } },
    info = { exec_start = "2026-01-01T00:00:00Z", exec_end = "2026-01-01T00:00:01Z", exec_latency = 1.0 } })
end

describe("luabatch.runner.aws_batch submit/collect #unit", function()
  it("submit: one SubmitJob per strategy, bundle uploaded, back without polling", function()
    local W = world()
    local m = model()
    local sub, err = aws_batch.submit(m, "m", { params = { go = "yes" } }, { env = env_of(W, m) })
    assert.is_table(sub, err)
    assert.equal(2, W.calls.SubmitJob)
    assert.is_nil(W.calls.DescribeJobs)
    assert.equal(2, #sub.jobs)
    assert.equal("m/" .. sub.jobs[1].strategy_id .. "/0", sub.jobs[1].key)
    assert.equal("job-1", sub.jobs[1].batch_job_id)
    assert.equal(RUN_ID, sub.run_id)
    assert.equal("s3://b/luabatch/runs/" .. RUN_ID .. "/m/", sub.results)
    assert.truthy(W.objects["b/luabatch/runs/" .. RUN_ID .. "/m/bundle.json"])
    assert.equal(W.submits[1].parameters.strategy, sub.jobs[1].strategy_id)
    -- plain data: survives JSON
    assert.same(sub, json.decode(json.encode(sub)))
  end)

  it("submit: a journal that cannot record the submit means no SubmitJob (a resume could repeat it)", function()
    local W = world()
    local m = model()
    local ro = W.ro()
    ro.journal = { append = function() return nil, "write: No space left on device (errno 28)" end }
    local engine = require "luabatch.workflow.engine"
    local env = setmetatable({ job_id = "m", job_with = WITH },
      { __index = engine.make_env(m, { getenv = NO_ENV, run_id = RUN_ID, runner_opts = ro }) })
    local sub, err = aws_batch.submit(m, "m", { params = { go = "yes" } }, { env = env })
    assert.is_nil(W.calls.SubmitJob)
    if not sub then   -- nothing submitted at all: the error says why
      assert.truthy(tostring(err):find("No space left on device (errno 28)", 1, true), tostring(err))
      assert.truthy(tostring(err):find("was not submitted", 1, true), tostring(err))
      return
    end
    local errs = sub and sub.jobs or {}
    assert.equal(2, #errs)
    assert.truthy(tostring(errs[1].error):find("No space left on device (errno 28)", 1, true), tostring(errs[1].error))
    assert.truthy(tostring(errs[1].error):find("was not submitted", 1, true), tostring(errs[1].error))
  end)

  it("collect: result.json of each strategy, or the reason; the record run_job gives", function()
    local W = world()
    local m = model()
    local sub = json.decode(json.encode(assert(aws_batch.submit(m, "m", { params = { go = "yes" } }, { env = env_of(W, m) }))))
    local j1, j2 = sub.jobs[1], sub.jobs[2]
    local rec, msg, code = aws_batch.collect(sub, { [j1.batch_job_id] = { status = "RUNNING" } },
      { model = m, getenv = NO_ENV, runner_opts = W.ro() })
    assert.is_nil(rec)
    assert.equal("EAGAIN", code)
    assert.matches(j1.job_name, msg, 1, true)
    -- strategy 1 wrote its result; strategy 2's container died
    W.objects["b/luabatch/runs/" .. RUN_ID .. "/m/" .. j1.strategy_id .. "/result.json"] = result(1, { x = 1 })
    W.streams["lb/default/x2"] = { "working on 2", "oh no" }
    local sums = {
      [j1.batch_job_id] = { status = "SUCCEEDED", exit_code = 0 },
      [j2.batch_job_id] = { status = "FAILED", exit_code = 137, log_stream = "lb/default/x2",
                            reason = "Essential container in task exited" },
    }
    local jctx
    rec, jctx = aws_batch.collect(sub, sums, { model = m, getenv = NO_ENV, runner_opts = W.ro() })
    assert.is_table(rec)
    assert.equal("FAILED", rec.status)
    assert.equal("FAILED", jctx.status)
    local s1, s2 = rec.strategies[j1.strategy_id], rec.strategies[j2.strategy_id]
    assert.equal("SUCCESS", s1.status)
    assert.same({ x = 1 }, s1.stages.s.outputs)
    assert.equal("FAILED", s2.status)
    local text = s2.errors.message
    assert.truthy(text:find("exit code 137", 1, true), text)
    assert.truthy(text:find("Essential container in task exited", 1, true), text)
    assert.truthy(text:find("oh no", 1, true), text)
    assert.same(s2.errors, rec.errors[j2.strategy_id])
    -- cleanup by policy: the job's prefix, then the run's
    assert.same({ "luabatch/runs/" .. RUN_ID .. "/m/", "luabatch/runs/" .. RUN_ID .. "/" }, W.deleted)
  end)

  it("with.array: one array job; its children are watched as <id>:<index>", function()
    local W = world()
    local m = model()
    local with = { job_queue_arn = "q", s3_bucket = "b", region_name = "us-east-1", array = true }
    local sub = assert(aws_batch.submit(m, "m", { params = { go = "yes" } }, { env = env_of(W, m, with) }))
    assert.equal(1, W.calls.SubmitJob)
    assert.equal(2, W.submits[1].arrayProperties.size)
    assert.equal("job-1", sub.array.batch_job_id)
    assert.equal("job-1:0", sub.jobs[1].batch_job_id)
    assert.equal("job-1:1", sub.jobs[2].batch_job_id)
  end)

  it("a bad with: is EWITH and submits nothing; a false `if` submits nothing and collects SKIP", function()
    local W = world()
    local m = model()
    local sub, msg, code = aws_batch.submit(m, "m", { params = { go = "yes" } },
      { env = env_of(W, m, { job_queue_arn = "q", region_name = "us-east-1" }) })
    assert.is_nil(sub)
    assert.equal("EWITH", code)
    assert.matches("s3_bucket", msg)
    assert.is_nil(W.calls.SubmitJob)
    sub = assert(aws_batch.submit(m, "m", { params = { go = "no" } }, { env = env_of(W, m) }))
    assert.is_true(sub.skip)
    assert.is_nil(W.calls.SubmitJob)
    local rec = aws_batch.collect(sub, {}, { model = m, getenv = NO_ENV, runner_opts = W.ro() })
    assert.equal("SKIP", rec.status)
  end)

  it("opts.strategies: only those go out; a later submit of the others reuses the bundle", function()
    local W = world()
    local m = model()
    local ro = W.ro()   -- one session for both submits (as one run)
    local function env()
      local engine = require "luabatch.workflow.engine"
      local e = engine.make_env(m, { getenv = NO_ENV, run_id = RUN_ID, runner_opts = ro })
      return setmetatable({ job_id = "m", job_with = WITH }, { __index = e })
    end
    local sids = {}
    for i, c in ipairs(require("luabatch.workflow.job").strategies(m.jobs.m)) do sids[i] = c.id end
    assert.equal(2, #sids)
    -- an empty list: with:, `if` and the matrix checked, nothing submitted or uploaded
    local sub = assert(aws_batch.submit(m, "m", { params = { go = "yes" } }, { env = env(), strategies = {} }))
    assert.same({}, sub.jobs)
    assert.is_nil(W.calls.SubmitJob)
    assert.is_nil(W.calls.PutObject)
    local _, bad, code = aws_batch.submit(m, "m", { params = { go = "yes" } },
      { env = setmetatable({ job_with = { job_queue_arn = "q", region_name = "us-east-1" } }, { __index = env() }),
        strategies = {} })
    assert.equal("EWITH", code)
    assert.matches("s3_bucket", bad)
    -- the second strategy alone
    sub = assert(aws_batch.submit(m, "m", { params = { go = "yes" } }, { env = env(), strategies = { sids[2] } }))
    assert.equal(1, W.calls.SubmitJob)
    assert.equal(1, #sub.jobs)
    assert.equal(sids[2], sub.jobs[1].strategy_id)
    assert.equal("m/" .. sids[2] .. "/0", sub.jobs[1].key)
    assert.equal(sids[2], W.submits[1].parameters.strategy)
    local bkey = "b/luabatch/runs/" .. RUN_ID .. "/m/bundle.json"
    local first = W.objects[bkey]
    assert.equal(2, #json.decode(first).strategies)   -- the bundle carries every strategy
    -- then the first: the same bundle, the job definition registered once
    local later = assert(aws_batch.submit(m, "m", { params = { go = "yes" } }, { env = env(), strategies = { sids[1] } }))
    assert.equal(2, W.calls.SubmitJob)
    assert.equal(sids[1], later.jobs[1].strategy_id)
    assert.equal(sids[1], W.submits[2].parameters.strategy)
    assert.equal(W.submits[1].jobDefinition, W.submits[2].jobDefinition)
    assert.equal(1, W.calls.RegisterJobDefinition)
    assert.same(json.decode(first), json.decode(W.objects[bkey]))
    -- with.array is not used for a chosen subset: plain jobs
    local arr = { job_queue_arn = "q", s3_bucket = "b", region_name = "us-east-1", array = true }
    sub = assert(aws_batch.submit(m, "m", { params = { go = "yes" } },
      { env = setmetatable({ job_with = arr }, { __index = env() }), strategies = sids }))
    assert.is_true(sub.config.array)
    assert.is_nil(sub.array)
    assert.equal(2, #sub.jobs)
    assert.is_nil(W.submits[3].arrayProperties)
    assert.is_nil(W.submits[4].arrayProperties)
    -- an id the matrix does not have is a caller's bug
    assert.has_error(function()
      aws_batch.submit(m, "m", { params = { go = "yes" } }, { env = env(), strategies = { "nope" } })
    end)
  end)

  it("opts.strategies: a refused SubmitJob is an entry with its error, not ESUBMIT", function()
    local W = world()
    local m = model()
    local ro = W.ro()
    local made = ro.clients()
    local refuse = made.batch.submit_job
    made.batch.submit_job = function(self, req)
      if req.parameters.strategy ~= "x" then return nil, "queue q is DISABLED", "ClientException" end
      return refuse(self, req)
    end
    local engine = require "luabatch.workflow.engine"
    local e = engine.make_env(m, { getenv = NO_ENV, run_id = RUN_ID, runner_opts = ro })
    local sids = {}
    for i, c in ipairs(require("luabatch.workflow.job").strategies(m.jobs.m)) do sids[i] = c.id end
    local sub, msg = aws_batch.submit(m, "m", { params = { go = "yes" } },
      { env = setmetatable({ job_id = "m", job_with = WITH }, { __index = e }), strategies = sids })
    made.batch.submit_job = refuse
    assert.is_table(sub, msg)
    assert.equal(2, #sub.jobs)
    for i, j in ipairs(sub.jobs) do
      assert.equal(sids[i], j.strategy_id)
      assert.is_nil(j.batch_job_id)
      assert.matches("queue q is DISABLED", j.error, 1, true)
      assert.matches("strategy " .. sids[i], j.error, 1, true)
    end
  end)

  it("the bundle's files are checked against the clients' own credentials; what is left out is logged", function()
    local log = require "luabatch.log"
    local secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYPROVIDER01"
    local root = os.tmpname()
    os.remove(root)
    assert(os.execute("mkdir -p '" .. root .. "/tools'"))
    local function write(text)
      local f = assert(io.open(root .. "/tools/x.lua", "wb"))
      f:write(text)
      f:close()
    end
    write("-- " .. secret .. "\nreturn { run = function() return {} end }\n")
    local m = model([[
jobs:
  m:
    stages:
      - name: c
        uses: tools.x/run@latest
      - name: d
        uses: "${{ params.mod }}/run@latest"
]])
    local W = world()
    local ro = W.ro()
    local made = ro.clients()
    -- the provider the S3 client signs with (no secret in with: or the environment)
    made.s3.credentials = function() return { get = function() return { secret_key = secret } end } end
    local engine = require "luabatch.workflow.engine"
    local function env()
      local e = engine.make_env(m, { getenv = NO_ENV, run_id = RUN_ID, runner_opts = ro, registry = root })
      return setmetatable({ job_id = "m", job_with = WITH }, { __index = e })
    end
    local lines = {}
    local old_sink, old_level = log.set_sink(function(line) lines[#lines + 1] = line end), log.level()
    log.set_level("debug")
    local ok, sub, msg, code = pcall(aws_batch.submit, m, "m", { params = { mod = "tools.x" } }, { env = env() })
    local submits_first = W.calls.SubmitJob
    write("return { run = function() return {} end }\n")
    local ok2, sub2, msg2 = pcall(aws_batch.submit, m, "m", { params = { mod = "tools.x" } }, { env = env() })
    log.set_sink(old_sink)
    log.set_level(old_level)
    made.s3.credentials = nil
    os.execute("rm -rf '" .. root .. "'")
    assert.is_true(ok, sub)
    assert.is_nil(sub)
    assert.equal("ESUBMIT", code)
    assert.matches("registry file 'tools/x.lua'", msg, 1, true)
    assert.is_nil(msg:find(secret, 1, true), msg)
    assert.is_nil(submits_first)
    -- the clean file goes; the templated call is named in a debug line
    assert.is_true(ok2, sub2)
    assert.is_table(sub2, msg2)
    assert.equal(1, W.calls.SubmitJob)
    local seen
    for _, l in ipairs(lines) do
      if l:find("debug", 1, true) and l:find("job 'm': bundle:", 1, true) and l:find("templated", 1, true) then
        seen = l
      end
    end
    assert.is_string(seen, table.concat(lines, "\n"))
  end)

  it("a with.environment value holding the client's secret or token stops the job before anything is registered",
    function()
    local secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYENVVALUE01"
    local token = "FwoGZXIvYXdzEXAMPLESESSIONTOKENVALUE0001"
    local vars = { AWS_SESSION_TOKEN = token }
    local m = model([[
jobs:
  m:
    stages:
      - {name: s, echo: hi}
]])
    local cases = {
      -- a value copied from the client's environment (`MY_TOKEN: "${AWS_SESSION_TOKEN}"`)
      { env = { MY_TOKEN = "Bearer " .. token }, getenv = function(n) return vars[n] end, name = "MY_TOKEN" },
      -- the secret of the provider the clients sign with
      { env = { OK = "plain", K = secret }, provider = secret, name = "K" },
    }
    for _, case in ipairs(cases) do
      local W = world()
      local ro = W.ro()
      local made = ro.clients()
      if case.provider then
        made.s3.credentials = function() return { get = function() return { secret_key = case.provider } end } end
      end
      local engine = require "luabatch.workflow.engine"
      local e = engine.make_env(m, { getenv = case.getenv or NO_ENV, run_id = RUN_ID, runner_opts = ro })
      local with = { environment = case.env }
      for k, v in pairs(WITH) do with[k] = v end
      local env = setmetatable({ job_id = "m", job_with = with }, { __index = e })
      local sub, msg, code = aws_batch.submit(m, "m", { params = {} }, { env = env })
      made.s3.credentials = nil
      assert.is_nil(sub)
      assert.equal("ESUBMIT", code)
      assert.matches("with.environment." .. case.name .. " holds a credential", msg, 1, true)
      assert.is_nil(msg:find(secret, 1, true), msg)
      assert.is_nil(msg:find(token, 1, true), msg)
      assert.is_nil(W.calls.RegisterJobDefinition)
      assert.is_nil(W.calls.SubmitJob)
      assert.is_nil(W.calls.PutObject)
    end
  end)

  it("collect: opts.keep_run_prefix removes the job's own objects and keeps the run's prefix", function()
    local W = world()
    local m = model()
    local sub = assert(aws_batch.submit(m, "m", { params = { go = "yes" } }, { env = env_of(W, m) }))
    local sums = {}
    for i, j in ipairs(sub.jobs) do
      W.objects["b/luabatch/runs/" .. RUN_ID .. "/m/" .. j.strategy_id .. "/result.json"] = result(i, { i = i })
      sums[j.batch_job_id] = { status = "SUCCEEDED", exit_code = 0 }
    end
    W.objects["b/luabatch/runs/" .. RUN_ID .. "/other/bundle.json"] = "{}"   -- another job of the run
    local rec = aws_batch.collect(sub, sums, { model = m, getenv = NO_ENV, runner_opts = W.ro(),
      keep_run_prefix = true })
    assert.equal("SUCCESS", rec.status)
    assert.same({ "luabatch/runs/" .. RUN_ID .. "/m/" }, W.deleted)
    assert.is_nil(W.objects["b/luabatch/runs/" .. RUN_ID .. "/m/bundle.json"])
    assert.equal("{}", W.objects["b/luabatch/runs/" .. RUN_ID .. "/other/bundle.json"])
  end)
end)
