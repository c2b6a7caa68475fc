-- luabatch.runner.aws_batch in-process against Ceph RGW (S3) and the Batch
-- emulator (Batch + CloudWatch Logs + ECS credentials), the Batch jobs being
-- real `luabatch task` processes of the built executable:
--   * a 3-strategy matrix with one failing stage gives the same context on
--     aws_batch as locally (timings aside), as separate jobs and as one array job
--   * a second run registers no job definition; the run's prefix is empty
--     afterwards and nothing outside it was touched
--   * a job that cannot start reports the real reason (CannotPullContainerError)
--   * a lost SubmitJob answer is adopted (one job), throttling is ridden out
require "luabatch.runner"   -- the runners' types and with: schemas, for the loader
local provider = require "helpers.provider"
local load = require "luabatch.workflow.load"
local engine = require "luabatch.workflow.engine"

local FAST, strip, new_run_id = provider.FAST, provider.strip, provider.new_run_id

local YAML = [[
wf-provider:
  type: Workflow
  params:
    who:
      type: str
      default: batch
  jobs:
    prep:
      stages:
        - name: prep
          id: prep
          lua: |
            return { base = 40 }
    work:
      needs: [prep]
      strategy:
        max-parallel: 2
        matrix:
          n: [1, 2, 3]
      stages:
        - name: hello
          id: hello
          echo: "hello ${{ params.who }} ${{ matrix.n }}"
        - name: calc
          id: calc
          lua: |
            return { v = jobs.prep.stages.prep.outputs.base + matrix.n, half = matrix.n / 2 }
        - name: check
          id: check
          if: "${{ matrix.n == 2 }}"
          raise: "strategy ${{ matrix.n }} refuses"
        - name: after
          id: after
          echo: "done ${{ matrix.n }}"
]]

local NO_ENV = function() return nil end

describe("luabatch.runner.aws_batch against RGW + the Batch emulator #integration", function()
  local peers, emu, s3, batch, bucket, secret
  local m

  setup(function()
    peers = provider.start({ bucket_prefix = "lb-provider-" })
    emu, s3, batch, bucket, secret = peers.emu, peers.s3, peers.batch, peers.bucket, peers.secret
    assert(s3:put_object(bucket, "outside/keep.txt", "not the run's"))
    m = assert(load.string(YAML, "wf.yml", { getenv = NO_ENV }))
  end)

  teardown(function()
    if peers then peers:stop() end
  end)

  local function with(extra) return peers:with(extra) end

  local function run_batch(extra, ro)
    local run_id = new_run_id()
    local r = { policy = FAST }
    for k, v in pairs(ro or {}) do r[k] = v end
    local ctx = assert(engine.run(m, { runs_on = "aws_batch", with = with(extra), run_id = run_id,
      runner_opts = r, getenv = NO_ENV, log = function() end }))
    return ctx, run_id
  end

  local function count_defs()
    local n = 0
    for d in batch:job_definitions({ status = "ACTIVE" }) do
      assert(d)
      n = n + 1
    end
    return n
  end

  local local_ctx
  local function local_run()
    if not local_ctx then
      local_ctx = assert(engine.run(m, { runs_on = "local", getenv = NO_ENV, log = function() end }))
    end
    return local_ctx
  end

  it("gives the same context as the local run (separate jobs), registers one job definition, cleans up", function()
    local before = #emu:jobs()
    local ctx, run_id = run_batch()
    local lctx = local_run()
    assert.equal("FAILED", lctx.status)
    assert.same(strip(lctx), strip(ctx))
    assert.equal(3 + 1, #emu:jobs() - before)           -- prep + 3 strategies
    assert.equal(1, count_defs())
    assert.same({ "outside/keep.txt" }, (function()
      local keys = {}
      for _, e in ipairs(assert(s3:list_all(bucket))) do keys[#keys + 1] = e.key end
      table.sort(keys)
      return keys
    end)())
    -- the same workflow again: no second job definition
    run_batch()
    assert.equal(1, count_defs())
    assert.truthy(run_id)
  end)

  it("gives the same context with one array job", function()
    local before = #emu:jobs()
    emu:reset_calls()
    local ctx = run_batch({ array = true })
    assert.same(strip(local_run()), strip(ctx))
    local calls = emu:calls()
    assert.equal(2, calls.counts.SubmitJob)              -- prep (plain) + the array
    -- parent + 3 children + prep
    assert.equal(5, #emu:jobs() - before)
  end)

  it("reports the real reason when the container cannot start", function()
    local ctx = run_batch({ image = "invalid/nope:1" })
    assert.equal("FAILED", ctx.status)
    local msg = ctx.jobs.prep.errors.message
    assert.equal("AWSBatchJobError", ctx.jobs.prep.errors.name)
    assert.matches("CannotPullContainerError", msg)
    assert.matches("with.image", msg)
  end)

  it("keeps the run's objects on failure when asked, without credentials in them", function()
    local ctx, run_id = run_batch({ keep_on_failure = true })
    assert.equal("FAILED", ctx.status)
    local found = 0
    for _, e in ipairs(assert(s3:list_all(bucket, { prefix = "luabatch/runs/" .. run_id .. "/" }))) do
      found = found + 1
      local body = assert(s3:get_object(bucket, e.key))
      assert.is_nil(body:find(secret, 1, true), e.key)
    end
    assert.is_true(found >= 5)     -- 2 bundles, 4 result.json, output logs
    assert(s3:delete_prefix(bucket, "luabatch/runs/" .. run_id .. "/"))
  end)

  it("adopts a job whose SubmitJob answer was lost and rides out throttling", function()
    emu:reset_calls()
    emu:fault({ operation = "SubmitJob", action = "drop", times = 1 })
    emu:fault({ operation = "DescribeJobs", action = "throttle", times = 2 })
    local before = #emu:jobs()
    local ctx = run_batch()
    emu:clear_faults()
    assert.same(strip(local_run()), strip(ctx))
    assert.equal(4, #emu:jobs() - before)               -- nothing submitted twice
    assert.is_true(emu:calls().counts.ListJobs >= 1)
  end)
end)
