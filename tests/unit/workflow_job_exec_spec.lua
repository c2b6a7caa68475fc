-- The runner seam of the engine: a runner's open_job handle runs strategies
-- elsewhere (AWS Batch) while the plan keeps max-parallel, fail-fast, retry
-- and the record shape as locally; the engine passes run_id, runs_on, with
-- and runner_opts to runners.
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

-- Run job j through the engine (the plan's coroutine driver) with a
-- runner whose handle runs each strategy with `strategy` (or every one at
-- once with `all`, an array runner) -> the job record, and the jctx.
local function run_exec(m, exec)
  local runner = { open_job = function()
    local h = { array = exec.all and true or nil }
    function h.run_strategy(_, combo, wctx, senv) return exec.strategy(m.jobs.j, combo, wctx, senv) end
    function h.run_all(_, combos, wctx, aenv, group) return exec.all(m.jobs.j, combos, wctx, aenv, group) end
    return h
  end }
  local ctx = assert(engine.run(m, { runners = { ["local"] = runner } }))
  return ctx.jobs.j
end

local function count(strategies)
  local n = 0
  for _ in pairs(strategies or {}) do n = n + 1 end
  return n
end

describe("workflow job execution seam #unit", function()
  it("the engine runs every strategy through the runner's handle within max-parallel, concurrently", function()
    local m = model(MATRIX:format("false"))
    local log = { running = 0, max = 0, started = {}, cancelled = {}, attempts = {} }
    local rec = run_exec(m, { strategy = fake_remote(nil, log) })
    assert.equal("SUCCESS", rec.status)
    assert.same({ 1, 2, 3, 4, 5 }, log.started)
    assert.equal(2, log.max)
    assert.equal(5, count(rec.strategies))
    for _, v in pairs(rec.strategies) do assert.is_true(v.stages.s.outputs.remote) end
  end)

  it("fail-fast: a failed strategy stops the running ones (they see senv.cancelled) and starts no more", function()
    local m = model(MATRIX:format("true"))
    local log = { running = 0, max = 0, started = {}, cancelled = {}, attempts = {} }
    local rec = run_exec(m, { strategy = fake_remote(1, log) })
    assert.equal("FAILED", rec.status)
    assert.same({ 1, 2 }, log.started)
    assert.same({ 2 }, log.cancelled)
    assert.equal(2, count(rec.strategies))
  end)

  it("an array runner gets every strategy at once, with the job's fail-fast", function()
    local m = model(MATRIX:format("true"))
    local got
    local rec = run_exec(m, { all = function(jobdef, combos, wctx, aenv, group)
      got = { n = #combos, fail_fast = group.fail_fast, attempt = aenv.attempt }
      local out = {}
      for i, c in ipairs(combos) do out[i] = { status = "SUCCESS", matrix = c.values, stages = {} } end
      return out
    end })
    assert.same({ n = 5, fail_fast = true, attempt = 0 }, got)
    assert.equal("SUCCESS", rec.status)
    assert.equal(5, count(rec.strategies))
  end)

  it("job retry re-runs the strategies with the attempt index", function()
    local m = model([[
jobs:
  j:
    retry: 1
    stages:
      - name: s
        echo: hi
]])
    local attempts = {}
    local rec = run_exec(m, { strategy = function(jobdef, combo, wctx, senv)
      attempts[#attempts + 1] = senv.attempt
      return { status = #attempts == 1 and "FAILED" or "SUCCESS", matrix = combo.values, stages = {} }
    end })
    assert.equal("SUCCESS", rec.status)
    assert.same({ 0, 1 }, attempts)
  end)

  it("a runner's error in a strategy is that strategy's FAILED record, the run goes on", function()
    local m = model(MATRIX:format("false"))
    local rec = run_exec(m, { strategy = function(jobdef, combo)
      if combo.values.n == 3 then error("runner exploded") end
      return { status = "SUCCESS", matrix = combo.values, stages = {} }
    end })
    assert.equal("FAILED", rec.status)
    local failed = 0
    for _, v in pairs(rec.strategies) do
      if v.status == "FAILED" then
        failed = failed + 1
        assert.matches("runner exploded", v.errors.message)
      end
    end
    assert.equal(1, failed)
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

describe("a resumed run (engine opts.replay) #unit", function()
  local WF = [[
jobs:
  a:
    strategy: {max-parallel: 2, matrix: {n: [1, 2, 3]}}
    stages: [{name: s, echo: a}]
  b:
    needs: [a]
    stages: [{name: s, echo: b}]
]]
  local function strip(v)
    if type(v) ~= "table" then return v end
    local out = {}
    for k, x in pairs(v) do if k ~= "info" then out[k] = strip(x) end end
    return out
  end
  -- a runner logging which strategy runs, each SUCCESS
  local function logging_runner(ran)
    return { open_job = function(m, id)
      return { run_strategy = function(_, combo)
        ran[#ran + 1] = id .. ":" .. tostring(combo.values.n)
        return { status = "SUCCESS", matrix = combo.values, stages = { s = { outputs = { n = combo.values.n } } } }
      end }
    end }
  end

  it("rebuilds the plan from the journaled events: ended strategies are not run again, live ones are, the rest goes on", function()
    local m = model(WF)
    local ran1, events = {}, {}
    local ctx1 = assert(engine.run(m, { runners = { ["local"] = logging_runner(ran1) },
      on_event = function(ev) events[#events + 1] = require("luabatch.json").decode(require("luabatch.json").encode(ev)) end }))
    assert.equal("SUCCESS", ctx1.status)
    assert.equal(4, #ran1)
    -- the client died after the first strategy of a ended: two had started
    local cut
    for i, ev in ipairs(events) do
      if ev.type == "ended" then cut = i break end
    end
    assert.is_number(cut)
    local replay = {}
    for i = 1, cut do replay[i] = events[i] end
    local ended_sid = events[cut].sid
    local ran2 = {}
    local ctx2 = assert(engine.run(m, { runners = { ["local"] = logging_runner(ran2) }, replay = replay }))
    assert.same(strip(ctx1), strip(ctx2))
    -- n=1 ended before the crash: only n=2 (live), n=3 (queued) and b run now
    assert.same({ "a:2", "a:3", "b:nil" }, ran2)
    assert.is_string(ended_sid)
  end)

  it("a replayed cancel ends the resumed run CANCEL without starting anything", function()
    local m = model(WF)
    local events = {}
    engine.run(m, { runners = { ["local"] = logging_runner({}) },
      on_event = function(ev) events[#events + 1] = ev end })
    local replay = { events[1], events[2], { type = "cancel", reason = "user", now = events[2].now } }
    local ran = {}
    local ctx = assert(engine.run(m, { runners = { ["local"] = logging_runner(ran) }, replay = replay }))
    assert.same({ "a:1", "a:2" }, ran)          -- the live ones run to their end (stopped at a stage boundary)
    assert.is_nil(ctx.jobs.b)
    assert.equal("CANCEL", ctx.status)
  end)
end)
