-- The runner seam of luabatch.workflow.job: job.execute(jobdef, wctx, env,
-- exec) runs strategies elsewhere (AWS Batch) with the same max-parallel,
-- fail-fast, retry and record shape as locally; the engine passes run_id,
-- runs_on, with and runner_opts to runners.
local load = require "luabatch.workflow.load"
local engine = require "luabatch.workflow.engine"
local job = require "luabatch.workflow.job"
local sched = require "luabatch.workflow.sched"

local NO_ENV = function() return nil end

local function model(yaml)
  return assert(load.string(yaml, "t.yml", { getenv = NO_ENV }))
end

local MATRIX = [[
jobs:
  j:
    strategy:
      max-parallel: 2
      fail-fast: %s
      matrix:
        n: [1, 2, 3, 4, 5]
    stages:
      - name: s
        echo: "n=${{ matrix.n }}"
]]

-- A fake remote strategy runner: takes `secs` per strategy, fails n == bad.
local function fake_remote(bad, log)
  return function(jobdef, combo, wctx, senv, group)
    log.running = log.running + 1
    if log.running > log.max then log.max = log.running end
    log.started[#log.started + 1] = combo.values.n
    local t = 0
    local secs = combo.values.n == bad and 0.1 or 0.3
    while t < secs do
      if senv.cancelled() then
        log.running = log.running - 1
        log.cancelled[#log.cancelled + 1] = combo.values.n
        return { status = "CANCEL", matrix = combo.values, stages = {},
                 errors = { name = "JobCancelError", message = "terminated" } }
      end
      sched.sleep(0.05)
      t = t + 0.05
    end
    log.running = log.running - 1
    log.attempts[#log.attempts + 1] = senv.attempt
    local status = combo.values.n == bad and "FAILED" or "SUCCESS"
    return { status = status, matrix = combo.values, stages = { s = { outputs = { remote = true } } },
             errors = status == "FAILED" and { name = "JobError", message = "boom" } or nil }
  end
end

local function run_exec(m, exec)
  local s = sched.new()
  local jctx
  s:spawn(function()
    local env = engine.make_env(m, {})
    jctx = job.execute(m.jobs.j, { params = {}, jobs = {}, status = "WAIT" }, env, exec)
  end)
  s:run()
  return jctx
end

describe("workflow job execution seam #unit", function()
  it("runs every strategy through exec.strategy within max-parallel", function()
    local m = model(MATRIX:format("false"))
    local log = { running = 0, max = 0, started = {}, cancelled = {}, attempts = {} }
    local jctx = run_exec(m, { strategy = fake_remote(nil, log) })
    assert.equal("SUCCESS", jctx.status)
    assert.equal(5, #log.started)
    assert.equal(2, log.max)
    local n = 0
    for k, v in pairs(jctx) do
      if type(v) == "table" and v.stages then n = n + 1; assert.is_true(v.stages.s.outputs.remote) end
    end
    assert.equal(5, n)
    local rec = job.record(m.jobs.j, jctx)
    assert.is_table(rec.strategies)
  end)

  it("fail-fast: a failed remote strategy cancels the running ones and starts no more", function()
    local m = model(MATRIX:format("true"))
    local log = { running = 0, max = 0, started = {}, cancelled = {}, attempts = {} }
    local jctx = run_exec(m, { strategy = fake_remote(1, log) })
    assert.equal("FAILED", jctx.status)
    assert.is_true(#log.started < 5, table.concat(log.started, ",") .. " / " .. table.concat(log.cancelled, ","))
    assert.is_true(#log.cancelled >= 1)
  end)

  it("exec.all replaces the loop (an array job) and gets max-parallel", function()
    local m = model(MATRIX:format("false"))
    local got
    local jctx = run_exec(m, { all = function(jobdef, combos, wctx, env, group, mp)
      got = { n = #combos, mp = mp }
      local out = {}
      for i, c in ipairs(combos) do out[i] = { status = "SUCCESS", matrix = c.values, stages = {} } end
      return out
    end })
    assert.same({ n = 5, mp = 2 }, got)
    assert.equal("SUCCESS", jctx.status)
  end)

  it("job retry re-runs remote strategies with the attempt index", function()
    local m = model([[
jobs:
  j:
    retry: 1
    stages:
      - name: s
        echo: hi
]])
    local log = { running = 0, max = 0, started = {}, cancelled = {}, attempts = {} }
    local calls = 0
    local jctx = run_exec(m, { strategy = function(jobdef, combo, wctx, senv, group)
      calls = calls + 1
      log.attempts[#log.attempts + 1] = senv.attempt
      return { status = calls == 1 and "FAILED" or "SUCCESS", matrix = combo.values, stages = {} }
    end })
    assert.equal("SUCCESS", jctx.status)
    assert.same({ 0, 1 }, log.attempts)
  end)

  it("run_strategy runs one strategy locally -> the strategy record", function()
    local m = model(MATRIX:format("false"))
    local combos = assert(job.strategies(m.jobs.j))
    assert.equal(5, #combos)
    local rec
    local s = sched.new()
    s:spawn(function()
      rec = job.run_strategy(m.jobs.j, combos[3], { params = {}, jobs = {}, status = "WAIT" },
        engine.make_env(m, {}))
    end)
    s:run()
    assert.equal("SUCCESS", rec.status)
    assert.equal(3, rec.matrix.n)
    assert.is_table(rec.info)
  end)

  it("the engine hands run_id, runs_on override, with and runner_opts to the runner", function()
    local m = model([[
params:
  bucket: {type: str, default: b1}
jobs:
  a:
    runs-on:
      type: local
      with:
        s3_bucket: "${{ params.bucket }}"
    stages:
      - name: s
        echo: hi
]])
    local seen
    local fake = { run_job = function(mdl, id, context, opts)
      local env = opts.env
      seen = { run_id = env.run_id, with = env.job_with, ro = env.runner_opts, id = env.job_id }
      return { status = "SUCCESS", stages = {} }
    end }
    local ctx = assert(engine.run(m, { run_id = "r-1", runs_on = "fake", runners = { fake = fake },
      with = { job_queue_arn = "q", s3_bucket = "ignored" }, runner_opts = { follow = true } }))
    assert.equal("SUCCESS", ctx.status)
    assert.equal("r-1", seen.run_id)
    assert.equal("a", seen.id)
    assert.equal("b1", seen.with.s3_bucket)       -- the job's own with: wins, rendered
    assert.equal("q", seen.with.job_queue_arn)    -- --with fills the gaps
    assert.is_true(seen.ro.follow)
  end)

  it("a with: template that fails is a FAILED job naming runs-on, nothing run", function()
    local m = model([[
jobs:
  a:
    runs-on:
      type: local
      with:
        s3_bucket: "${{ jobs.nope.stages }}"
    stages:
      - name: s
        echo: hi
]])
    local called = false
    local fake = { run_job = function() called = true end }
    local ctx = assert(engine.run(m, { runners = { ["local"] = fake } }))
    assert.equal("FAILED", ctx.jobs.a.status)
    assert.matches("runs%-on with:", ctx.jobs.a.errors.message)
    assert.is_false(called)
  end)

  it("engine output_line gets a bash stage's lines while it runs, the last unterminated one too", function()
    local m = model([[
jobs:
  a:
    stages:
      - name: talk
        id: talk
        bash: |
          echo first
          echo oops >&2
          sleep 0.8
          printf last
]])
    local core = require "luabatch.core"
    local lines, t0, t_first = {}, core.monotime(), nil
    local ctx = assert(engine.run(m, { output_line = function(line, fd)
      t_first = t_first or (core.monotime() - t0)
      lines[#lines + 1] = fd .. " " .. line
    end }))
    assert.equal("SUCCESS", ctx.status)
    assert.same({ "1 first", "2 oops", "1 last" }, lines)
    assert.is_true(t_first < 0.6, "first line after " .. tostring(t_first) .. " s")
    assert.equal("first\nlast", ctx.jobs.a.stages.talk.outputs.stdout)
  end)
end)
