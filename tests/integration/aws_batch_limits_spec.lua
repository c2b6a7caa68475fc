-- The AWS Batch provider's limits, in-process against Ceph RGW (S3) and the
-- Batch emulator, the Batch jobs being real `luabatch task` processes:
--   * the client deadline (with.timeout x attempts + policy.deadline_margin):
--     a job still running after it is terminated with policy.deadline_reason
--     (one TerminateJob per Batch job: per strategy, or the array parent
--     alone), its record is FAILED and names the deadline, and Batch ends it
--     FAILED with that reason; Batch's own attempt timeout still fires first
--     when it is the shorter one (no TerminateJob then)
--   * FARGATE: the definition (platformCapabilities, platformVersion,
--     executionRoleArn, networkConfiguration, a Fargate task size) is
--     registered once and reused, the job runs on the Fargate queue; EC2 and
--     FARGATE definitions of one image have different names; a FARGATE job
--     sent to an EC2 queue fails with Batch's own error; a task size Fargate
--     does not have is refused before anything is registered.
-- The emulator's timeout_scale is set per test: 1 where the client deadline
-- must come first (Batch's minimum attempt timeout, 60 s, never fires), 0.02
-- where Batch's timeout must (60 s -> 1.2 s).
require "luabatch.runner"   -- the runners' types and with: schemas, for the loader
local core = require "luabatch.core"
local provider = require "helpers.provider"
local load = require "luabatch.workflow.load"
local engine = require "luabatch.workflow.engine"
local policy_mod = require "luabatch.runner.aws_batch.policy"
local jobdef_mod = require "luabatch.runner.aws_batch.jobdef"

local FAST, new_run_id = provider.FAST, provider.new_run_id
local DEADLINE_REASON = policy_mod.defaults.deadline_reason
local ROLE = "arn:aws:iam::123456789012:role/ecsTaskExecutionRole"

-- Two strategies that sleep far longer than any deadline here.
local SLOW = [[
wf-slow:
  type: Workflow
  jobs:
    slow:
      strategy:
        max-parallel: 2
        matrix:
          n: [1, 2]
      stages:
        - name: nap
          id: nap
          bash: "sleep 30"
]]

-- Where did it run?  AWS_EXECUTION_ENV is AWS_ECS_FARGATE on a Fargate queue.
local WHERE = [[
wf-where:
  type: Workflow
  jobs:
    far:
      stages:
        - name: where
          id: where
          lua: |
            return { env = os.getenv("AWS_EXECUTION_ENV") or "none" }
]]

local NO_ENV = function() return nil end

local function merged(a, b)
  local out = {}
  for k, v in pairs(a or {}) do out[k] = v end
  for k, v in pairs(b or {}) do out[k] = v end
  return out
end

describe("luabatch.runner.aws_batch limits: client deadline and FARGATE #integration", function()
  local peers, emu, batch
  local slow_m, where_m

  setup(function()
    peers = provider.start({ bucket_prefix = "lb-limits-" })
    emu, batch = peers.emu, peers.batch
    slow_m = assert(load.string(SLOW, "slow.yml", { getenv = NO_ENV }))
    where_m = assert(load.string(WHERE, "where.yml", { getenv = NO_ENV }))
  end)

  teardown(function()
    if peers then peers:stop() end
  end)

  local function with(extra) return peers:with(extra) end

  local function run(m, extra, policy)
    local t0 = core.monotime()
    local ctx = assert(engine.run(m, { runs_on = "aws_batch", with = with(extra), run_id = new_run_id(),
      runner_opts = { policy = merged(FAST, policy) }, getenv = NO_ENV, log = function() end }))
    return ctx, core.monotime() - t0
  end

  -- The Batch jobs the emulator got since `before` (an index into emu:jobs()).
  local function new_jobs(before)
    local all, out = emu:jobs(), {}
    for i = before + 1, #all do out[#out + 1] = all[i] end
    return out
  end

  -- DescribeJobs until every id is terminal -> { id = job detail }
  local function wait_final(ids)
    local out
    for _ = 1, 150 do
      out = {}
      local d = assert(batch:describe_jobs(ids))
      local n = 0
      for _, j in ipairs(d.jobs) do
        if j.status == "SUCCEEDED" or j.status == "FAILED" then
          out[j.jobId] = j
          n = n + 1
        end
      end
      if n == #ids then return out end
      core.sleep(0.1)
    end
    error("jobs did not end: " .. table.concat(ids, " "))
  end

  local function strategies(jctx)
    local out = {}
    for _, st in pairs(jctx.strategies or {}) do out[#out + 1] = st end
    return out
  end

  describe("the client deadline", function()
    -- timeout 60 s (the Batch minimum) with Batch's clock at 1:1, so only
    -- the client's deadline can end the job within the test: 60 x 1 - 57 = 3 s.
    local TIGHT = { deadline_margin = -57 }

    before_each(function() emu:config({ timeout_scale = 1 }) end)
    after_each(function() emu:config({ timeout_scale = 0.02 }) end)

    it("terminates each strategy's job once, records FAILED naming the deadline, Batch ends them FAILED", function()
      local before = #emu:jobs()
      emu:reset_calls()
      local ctx, took = run(slow_m, { timeout = 60 }, TIGHT)
      assert.is_true(took < 20, "the client waited " .. took .. " s")
      assert.equal("FAILED", ctx.status)
      assert.equal("FAILED", ctx.jobs.slow.status)
      local sts = strategies(ctx.jobs.slow)
      assert.equal(2, #sts)
      for _, st in ipairs(sts) do
        assert.equal("FAILED", st.status)
        assert.equal("AWSBatchJobError", st.errors.name)
        assert.matches(DEADLINE_REASON, st.errors.message, 1, true)
        assert.matches("timeout 60 s x 1 attempts + -57 s margin); terminated", st.errors.message, 1, true)
      end
      local calls = emu:calls()
      assert.equal(2, calls.counts.TerminateJob)           -- one per Batch job, no more
      assert.equal(2, calls.counts.SubmitJob)
      local ids = {}
      for _, j in ipairs(new_jobs(before)) do ids[#ids + 1] = j.jobId end
      assert.equal(2, #ids)
      for _, j in pairs(wait_final(ids)) do
        assert.equal("FAILED", j.status)
        assert.equal(DEADLINE_REASON, j.statusReason)
        assert.equal(60, j.timeout.attemptDurationSeconds)  -- Batch's own timeout was still set
      end
    end)

    it("counts from the container's start: a job that waits in the queue past it is not terminated", function()
      -- WHERE runs at once; the jobs sit RUNNABLE 6 s, twice the 3 s deadline
      local saved = emu:config()
      emu:config({ delays = { RUNNABLE = 6 } })
      emu:reset_calls()
      local ok, ctx = pcall(run, where_m, { timeout = 60 }, TIGHT)
      emu:config({ delays = saved.delays })
      assert(ok, ctx)
      assert.equal("SUCCESS", ctx.status)
      assert.is_nil(emu:calls().counts.TerminateJob)
    end)

    it("terminates an array job through its parent alone", function()
      local before = #emu:jobs()
      emu:reset_calls()
      local ctx, took = run(slow_m, { timeout = 60, array = true }, TIGHT)
      assert.is_true(took < 20, "the client waited " .. took .. " s")
      assert.equal("FAILED", ctx.jobs.slow.status)
      local sts = strategies(ctx.jobs.slow)
      assert.equal(2, #sts)
      for _, st in ipairs(sts) do
        assert.equal("FAILED", st.status)
        assert.matches(DEADLINE_REASON, st.errors.message, 1, true)
      end
      local calls = emu:calls()
      assert.equal(1, calls.counts.SubmitJob)
      assert.equal(1, calls.counts.TerminateJob)           -- the parent; Batch ends its children
      local jobs = new_jobs(before)
      assert.equal(3, #jobs)                               -- parent + 2 children
      local ids = {}
      for _, j in ipairs(jobs) do ids[#ids + 1] = j.jobId end
      local fin = wait_final(ids)
      for id, j in pairs(fin) do
        assert.equal("FAILED", j.status, id)
        assert.equal(DEADLINE_REASON, j.statusReason, id)
      end
    end)

    it("terminates each array child itself when terminating the parent failed", function()
      local before = #emu:jobs()
      emu:reset_calls()
      emu:fault({ operation = "TerminateJob", action = "error", times = 1, status = 400,
        code = "ClientException", message = "refused once" })
      local ctx = run(slow_m, { timeout = 60, array = true }, TIGHT)
      emu:clear_faults()
      assert.equal("FAILED", ctx.jobs.slow.status)
      assert.equal(3, emu:calls().counts.TerminateJob)     -- the parent (refused), then each child
      local ids = {}
      for _, j in ipairs(new_jobs(before)) do
        if j.jobId:find(":", 1, true) then ids[#ids + 1] = j.jobId end
      end
      assert.equal(2, #ids)
      for _, j in pairs(wait_final(ids)) do
        assert.equal("FAILED", j.status)
        assert.equal(DEADLINE_REASON, j.statusReason)
      end
    end)

    it("leaves it to Batch's attempt timeout when that is shorter", function()
      emu:config({ timeout_scale = 0.02 })                 -- 60 s -> 1.2 s; the client's is 60 + 30 s
      local before = #emu:jobs()
      emu:reset_calls()
      local ctx, took = run(slow_m, { timeout = 60 }, { deadline_margin = 30 })
      assert.is_true(took < 20, "the client waited " .. took .. " s")
      assert.equal("FAILED", ctx.jobs.slow.status)
      for _, st in ipairs(strategies(ctx.jobs.slow)) do
        assert.equal("FAILED", st.status)
        assert.matches("Job attempt duration exceeded timeout", st.errors.message, 1, true)
        assert.is_nil(st.errors.message:find(DEADLINE_REASON, 1, true))
      end
      assert.is_nil(emu:calls().counts.TerminateJob)
      local ids = {}
      for _, j in ipairs(new_jobs(before)) do ids[#ids + 1] = j.jobId end
      for _, j in pairs(wait_final(ids)) do
        assert.equal("Job attempt duration exceeded timeout", j.statusReason)
      end
    end)
  end)

  describe("FARGATE", function()
    local FAR = { platform = "FARGATE", execution_role_arn = ROLE, vcpus = 0.5, memory = 1024 }

    local function def_named(name, hash)
      for d in batch:job_definitions({ jobDefinitionName = name, status = "ACTIVE" }) do
        assert(d)
        if d.parameters.luabatch_hash == hash then return d end
      end
      return nil
    end

    it("registers the definition once (platformVersion as given) and runs on the Fargate queue", function()
      -- as `--with` gives them: strings
      local w = merged(FAR, { job_queue_arn = emu.fargate_queue, platform_version = "1.4.0",
        assign_public_ip = "false" })
      emu:reset_calls()
      local ctx = run(where_m, w)
      assert.equal("SUCCESS", ctx.status)
      assert.equal("AWS_ECS_FARGATE", ctx.jobs.far.stages.where.outputs.env)
      assert.equal(1, emu:calls().counts.RegisterJobDefinition)
      local spec = assert(jobdef_mod.spec(with(w), policy_mod.merge()))
      local d = assert(def_named(spec.name, spec.hash))
      assert.same({ "FARGATE" }, d.platformCapabilities)
      local cp = d.containerProperties
      assert.equal("1.4.0", cp.fargatePlatformConfiguration.platformVersion)
      assert.equal("DISABLED", cp.networkConfiguration.assignPublicIp)
      assert.equal(ROLE, cp.executionRoleArn)
      assert.same({ { type = "VCPU", value = "0.5" }, { type = "MEMORY", value = "1024" } }, cp.resourceRequirements)
      -- the job ran under it, on the Fargate queue
      local jobs = assert(batch:describe_jobs({ (emu:jobs())[#emu:jobs()].jobId })).jobs
      assert.equal(d.jobDefinitionArn, jobs[1].jobDefinition)
      assert.equal("job-queue/" .. emu.fargate_queue, jobs[1].jobQueue:match("job%-queue/.*$"))
      -- a second run reuses it
      emu:reset_calls()
      ctx = run(where_m, w)
      assert.equal("SUCCESS", ctx.status)
      assert.is_nil(emu:calls().counts.RegisterJobDefinition)
      -- without platform_version: LATEST, a new revision of the same name
      local w2 = merged(FAR, { job_queue_arn = emu.fargate_queue })
      ctx = run(where_m, w2)
      assert.equal("SUCCESS", ctx.status)
      assert.equal(1, emu:calls().counts.RegisterJobDefinition)
      local spec2 = assert(jobdef_mod.spec(with(w2), policy_mod.merge()))
      assert.equal(spec.name, spec2.name)
      local d2 = assert(def_named(spec2.name, spec2.hash))
      assert.equal("LATEST", d2.containerProperties.fargatePlatformConfiguration.platformVersion)
      assert.equal("ENABLED", d2.containerProperties.networkConfiguration.assignPublicIp)
    end)

    it("names EC2 and FARGATE definitions of one image apart", function()
      local ctx = run(where_m, { image = "luabatch:limits" })
      assert.equal("SUCCESS", ctx.status)
      assert.equal("AWS_ECS_EC2", ctx.jobs.far.stages.where.outputs.env)
      local wf = merged(FAR, { job_queue_arn = emu.fargate_queue, image = "luabatch:limits" })
      ctx = run(where_m, wf)
      assert.equal("SUCCESS", ctx.status)
      local e = assert(jobdef_mod.spec(with({ image = "luabatch:limits" }), policy_mod.merge()))
      local f = assert(jobdef_mod.spec(with(wf), policy_mod.merge()))
      assert.are_not.equal(e.name, f.name)
      local de, df = assert(def_named(e.name, e.hash)), assert(def_named(f.name, f.hash))
      assert.same({ "EC2" }, de.platformCapabilities)
      assert.is_nil(de.containerProperties.fargatePlatformConfiguration)
      assert.is_nil(de.containerProperties.networkConfiguration)
      assert.same({ "FARGATE" }, df.platformCapabilities)
      assert.equal("luabatch:limits", df.containerProperties.image)
    end)

    it("surfaces Batch's error when a FARGATE job is sent to an EC2 queue", function()
      local before = #emu:jobs()
      local ctx = run(where_m, merged(FAR, { job_queue_arn = emu.queue }))
      assert.equal("FAILED", ctx.jobs.far.status)
      local msg = ctx.jobs.far.errors.message
      assert.matches("job 'far'", msg, 1, true)
      assert.matches("Job Queue is attached to Compute Environment that can not run Jobs with capability FARGATE",
        msg, 1, true)
      assert.equal(0, #new_jobs(before))
    end)

    it("refuses a task size Fargate does not have before registering anything", function()
      emu:reset_calls()
      local ctx = run(where_m, merged(FAR, { job_queue_arn = emu.fargate_queue, vcpus = 4, memory = 2048 }))
      assert.equal("FAILED", ctx.jobs.far.status)
      local msg = ctx.jobs.far.errors.message
      assert.matches("with.memory 2048 MiB is not a FARGATE size for 4 vCPU", msg, 1, true)
      assert.matches("nothing was submitted", msg, 1, true)
      local calls = emu:calls().counts
      assert.is_nil(calls.RegisterJobDefinition)
      assert.is_nil(calls.SubmitJob)
      ctx = run(where_m, merged(FAR, { job_queue_arn = emu.fargate_queue, gpus = 1 }))
      assert.matches("with.gpus is not available on FARGATE", ctx.jobs.far.errors.message, 1, true)
    end)
  end)
end)
