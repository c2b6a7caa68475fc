-- max-parallel's bound is the runner's: 9 on runs-on local (ddeutil-workflow's
-- bound and wording), 10000 on runs-on aws_batch (luabatch.runner).  At load
-- a literal beyond the bound of the job's runs-on type (or of opts.runs_on,
-- the CLI's --runs-on) is bad input; at run time job.max_parallel checks the
-- rendered value against the cap the runner's handle gives the plan.
local registry = require "luabatch.runner"
local load = require "luabatch.workflow.load"
local job = require "luabatch.workflow.job"
local plan = require "luabatch.workflow.plan"

local NO_ENV = function() return nil end
local BATCH = "{type: aws_batch, with: {job_queue: q, s3_bucket: b}}"

local function wf(runs_on, mp)
  return ("jobs:\n  a:\n%s    strategy:\n      max-parallel: %s\n      matrix: {x: [1, 2]}\n"
    .. "    stages:\n      - {name: s, echo: hi}\n"):format(runs_on and ("    runs-on: " .. runs_on .. "\n") or "",
    tostring(mp))
end

local function loads(text, opts)
  local o = { getenv = NO_ENV }
  for k, v in pairs(opts or {}) do o[k] = v end
  return load.string(text, "t.yml", o)
end

describe("max-parallel bound by runner #unit", function()
  it("the registry names the bounds: aws_batch 10000, local none (9)", function()
    assert.are.equal(10000, registry.max_parallel("aws_batch"))
    assert.is_nil(registry.max_parallel("local"))
    assert.is_nil(registry.max_parallel("nope"))
  end)

  describe("at load", function()
    it("500 is accepted on runs-on aws_batch, up to 10000", function()
      local m = assert(loads(wf(BATCH, 500)))
      assert.are.equal(500, m.jobs.a.strategy.max_parallel)
      assert.are.equal(10000, assert(loads(wf(BATCH, 10000))).jobs.a.strategy.max_parallel)
    end)

    it("beyond 10000 on aws_batch is bad input naming the bound", function()
      local m, msg, code = loads(wf(BATCH, 10001))
      assert.is_nil(m)
      assert.are.equal("EINVAL", code)
      assert.matches("^t%.yml:5:21: job 'a' strategy: 'max%-parallel' must be between 1 and 10000, got 10001 %(runs%-on aws_batch%)$",
        msg)
    end)

    it("500 on a local job (declared or by default) is refused with ddeutil's range and a hint", function()
      for _, ro in ipairs({ false, "local" }) do
        local m, msg, code = loads(wf(ro or nil, 500))
        assert.is_nil(m)
        assert.are.equal("EINVAL", code)
        assert.is_truthy(msg:find("'max-parallel' must be between 1 and 9, got 500 (runs-on local; aws_batch "
          .. "allows up to 10000)", 1, true), msg)
      end
    end)

    it("opts.runs_on (the CLI's --runs-on) decides the bound for every job", function()
      assert(loads(wf("local", 500), { runs_on = "aws_batch" }))
      local m, msg = loads(wf(BATCH, 500), { runs_on = "local" })
      assert.is_nil(m)
      assert.is_truthy(msg:find("must be between 1 and 9, got 500 (runs-on local", 1, true), msg)
    end)

    it("a template is left for run time; 0 and non-integers stay bad input", function()
      assert.are.equal("${{ params.n }}", assert(loads("params: {n: int}\n" .. wf(nil, '"${{ params.n }}"')))
        .jobs.a.strategy.max_parallel)
      assert.is_nil((loads(wf(BATCH, 0))))
      assert.is_nil((loads(wf(BATCH, 2.5))))
    end)
  end)

  describe("at run time (job.max_parallel)", function()
    local jd = { strategy = { max_parallel = "${{ params.n }}" } }
    local function mp(n, cap)
      return job.max_parallel(jd, { params = { n = n }, jobs = {} }, {}, cap)
    end

    it("without a cap the bound is 9, with ddeutil-workflow's message", function()
      assert.are.equal(9, mp(9))
      local n, msg = mp(500)
      assert.is_nil(n)
      assert.are.equal("The max-parallel value should not more than 10, the current value was set: 500.", msg)
    end)

    it("with the runner's cap: 500 and 10000 pass, 10001 names the runner's bound", function()
      assert.are.equal(500, mp(500, 10000))
      assert.are.equal(10000, mp(10000, 10000))
      local n, msg = mp(10001, 10000)
      assert.is_nil(n)
      assert.are.equal("The max-parallel value should be at most 10000 on this job's runner, the current value "
        .. "was set: 10001.", msg)
      assert.is_nil((mp(0, 10000)))
    end)
  end)

  describe("the plan paces a matrix at the runner's cap", function()
    -- 30 strategies at max-parallel 20 (cap 10000, aws_batch's): 20 start
    -- at once, the 21st when one ends; without a cap the job fails with
    -- ddeutil's message.
    local ns = {}
    for i = 1, 30 do ns[i] = i end
    local text = "jobs:\n  a:\n    runs-on: " .. BATCH .. "\n    strategy:\n      max-parallel: 20\n"
      .. "      matrix: {n: [" .. table.concat(ns, ", ") .. "]}\n    stages:\n      - {name: s, echo: hi}\n"

    local function start(cap)
      local m = assert(loads(text))
      local engine = require "luabatch.workflow.engine"
      local env = engine.make_env(m, { getenv = NO_ENV })
      local st = plan.new(m, { params = {}, now = 0 })
      plan.step(st, m, { type = "start", now = 0 }, env)
      local acts = plan.step(st, m, { type = "prepared", job = "a", cap = cap, now = 0 }, env)
      return st, m, env, acts
    end
    local function op(acts, name)
      for _, a in ipairs(acts) do if a.op == name then return a end end
    end

    it("20 run at once; a freed slot is refilled by the next in matrix order", function()
      local st, m, env, acts = start(registry.max_parallel("aws_batch"))
      local r = assert(op(acts, "run"))
      assert.are.equal(20, #r.combos)
      local c = r.combos[7]
      acts = plan.step(st, m, { type = "ended", job = "a", attempt = 0, sid = c.id,
        record = { status = "SUCCESS", stages = {}, matrix = c.values }, now = 1 }, env)
      r = assert(op(acts, "run"))
      assert.are.equal(1, #r.combos)
      assert.are.equal(21, r.combos[1].values.n)
    end)

    it("the same job on a runner without a cap fails with ddeutil's message", function()
      local _, _, _, acts = start(nil)
      assert.is_nil(op(acts, "run"))
      local d = assert(op(acts, "job_done"))
      assert.are.equal("FAILED", d.record.status)
      assert.are.equal("The max-parallel value should not more than 10, the current value was set: 20.",
        d.record.errors.message)
    end)
  end)
end)
