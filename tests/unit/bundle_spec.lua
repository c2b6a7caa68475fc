-- luabatch.runner.aws_batch.bundle: what the provider uploads and the task
-- runner reads.  Credentials never go in; the JSON trip keeps integers vs
-- floats and empty objects vs arrays; bad bundles are named field by field.
local bundle = require "luabatch.runner.aws_batch.bundle"
local load = require "luabatch.workflow.load"
local json = require "luabatch.json"
local stage = require "luabatch.workflow.stage"
local job = require "luabatch.workflow.job"

local NO_ENV = function() return nil end

local YAML = [[
wf-bundle:
  type: Workflow
  params:
    name:
      type: str
      default: x
  jobs:
    first:
      stages:
        - name: e
          echo: hi
    other:
      stages:
        - name: e
          echo: hi
    count:
      needs: [first]
      runs-on:
        type: aws_batch
        with:
          job_queue_arn: arn:aws:batch:us-east-1:123456789012:job-queue/q
          s3_bucket: bkt
          aws_access_key_id: AKIAEXAMPLEKEYID0001
          aws_secret_access_key: wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRETKEY
          aws_session_token: FQoGZXIvYXdzSESSIONTOKENVALUE
      strategy:
        max-parallel: 2
        matrix:
          n: [1, 2]
          f: [1.5, 2.0]
      stages:
        - name: b
          id: b
          bash: echo ${{ matrix.n }}
          env:
            K: v
]]

local SECRETS = { "wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRETKEY", "FQoGZXIvYXdzSESSIONTOKENVALUE",
                  "AKIAEXAMPLEKEYID0001" }

local function model()
  return assert(load.string(YAML, "t.yml", { getenv = NO_ENV }))
end

local function build(m, extra)
  local o = { run_id = "20261124-101500-a1b2c3d4", workflow = m.name, job_id = "count",
    jobdef = m.jobs.count,
    context = { params = { name = "x", n = 3, f = 3.0, e = stage.object(), l = stage.array() },
                jobs = { first = { status = "SUCCESS", stages = stage.object() },
                         other = { status = "FAILED" } } },
    results = "s3://bkt/luabatch/runs/R/count" }
  for k, v in pairs(extra or {}) do o[k] = v end
  return bundle.build(o)
end

describe("luabatch.runner.aws_batch.bundle #unit", function()
  describe("build", function()
    it("drops runs_on.with (credentials and all) and strategy.key_order, keeps runs_on.type", function()
      local m = model()
      assert.is_function(m.jobs.count.strategy.key_order)
      assert.are.equal("AKIAEXAMPLEKEYID0001", m.jobs.count.runs_on.with.aws_access_key_id)
      local t, dropped = build(m)
      assert.are.equal("aws_batch", t.job.runs_on.type)
      assert.is_nil(t.job.runs_on.with)
      assert.is_nil(t.job.strategy.key_order)
      assert.are.same({ "job.runs_on.with", "job.strategy.key_order" }, dropped)
      -- the model itself is untouched
      assert.is_function(m.jobs.count.strategy.key_order)
      assert.is_table(m.jobs.count.runs_on.with)
      assert.is_true((bundle.secret_free(t, SECRETS)))
      assert.is_true((bundle.secret_free(bundle.encode(t), SECRETS)))
    end)

    it("drops anything JSON cannot hold and reports where", function()
      local m = model()
      local jd = m.jobs.count
      jd.stages[1].hook = function() end
      jd.stages[1].co = coroutine.create(function() end)
      jd.extra = { [true] = 1, ok = 2 }
      local t, dropped = build(m)
      assert.is_nil(t.job.stages[1].hook)
      assert.is_nil(t.job.stages[1].co)
      assert.are.same({ ok = 2 }, t.job.extra)
      table.sort(dropped)
      assert.are.same({ "job.extra.true", "job.runs_on.with", "job.stages[1].co", "job.stages[1].hook",
        "job.strategy.key_order" }, dropped)
      assert.has_no.errors(function() bundle.encode(t) end)
    end)

    it("keeps only the records of the jobs the job needs", function()
      local t = build(model())
      assert.are.same({ "first" }, (function()
        local ks = {}
        for k in pairs(t.context.jobs) do ks[#ks + 1] = k end
        return ks
      end)())
      assert.are.equal("x", t.context.params.name)
    end)

    it("computes the strategies like job.strategies and ends results with /", function()
      local m = model()
      local t = build(m)
      local want = assert(job.strategies(m.jobs.count))
      assert.are.equal(4, #t.strategies)
      for i, c in ipairs(want) do
        assert.are.equal(c.id, t.strategies[i].id)
        assert.are.same(c.values, t.strategies[i].values)
      end
      assert.are.equal("s3://bkt/luabatch/runs/R/count/", t.results)
      assert.are.equal(bundle.FORMAT, t.format)
      assert.are.equal("luabatch-bundle/1", t.format)
    end)

    it("raises on misuse", function()
      local m = model()
      assert.has_error(function() bundle.build() end)
      assert.has_error(function() build(m, { run_id = 3 }) end)
      assert.has_error(function() build(m, { results = "http://x/y" }) end)
      assert.has_error(function() build(m, { jobdef = "nope" }) end)
      assert.has_error(function() build(m, { strategies = {} }) end)
    end)
  end)

  describe("encode/decode", function()
    it("round-trips equal: integers vs floats, empty objects vs arrays", function()
      local m = model()
      local t = build(m)
      local s = bundle.encode(t)
      local t2 = assert(bundle.decode(s, "s3://bkt/x/bundle.json"))
      assert.are.equal(s, bundle.encode(t2))
      assert.are.same(t.strategies, t2.strategies)
      local p = t2.context.params
      assert.are.equal(3, p.n)
      assert.are.equal(3.0, p.f)
      if math.type then
        assert.are.equal("integer", math.type(p.n))
        assert.are.equal("float", math.type(p.f))
        assert.are.equal("integer", math.type(t2.strategies[1].values.n))
        assert.are.equal("float", math.type(t2.strategies[1].values.f))
      end
      assert.are.equal("{}", json.encode(p.e))
      assert.are.equal("[]", json.encode(p.l))
      assert.are.equal("{}", json.encode(t2.context.jobs.first.stages))
      assert.are.equal("v", t2.job.stages[1].env.K)
      assert.is_true(s:find('"f":2.0', 1, true) ~= nil or math.type == nil)
    end)

    local function base()
      return json.decode(bundle.encode((build(model()))))
    end

    local function fails(mut, field, ...)
      local t = base()
      mut(t)
      local r, msg, code = bundle.decode(json.encode(t), "s3://bkt/r/count/bundle.json")
      assert.is_nil(r)
      assert.are.equal("EBUNDLE", code)
      assert.is_truthy(msg:find("s3://bkt/r/count/bundle.json: " .. field .. ":", 1, true), msg)
      for _, part in ipairs({ ... }) do
        assert.is_truthy(msg:find(part, 1, true), msg)
      end
    end

    it("names the field that is wrong", function()
      fails(function(t) t.format = "luabatch-bundle/2" end, "format", "luabatch-bundle/1", "luabatch-bundle/2")
      fails(function(t) t.format = nil end, "format")
      fails(function(t) t.job_id = nil end, "job_id")
      fails(function(t) t.run_id = 7 end, "run_id")
      fails(function(t) t.job = "x" end, "job")
      fails(function(t) t.job.stages = { a = 1 } end, "job.stages", "list")
      fails(function(t) t.job.stages = nil end, "job.stages")
      fails(function(t) t.job.stages[1] = "x" end, "job.stages[1]")
      fails(function(t) t.strategies = json.decode("[]") end, "strategies", "empty")
      fails(function(t) t.strategies = { a = 1 } end, "strategies")
      fails(function(t) t.strategies[2].id = nil end, "strategies[2].id")
      fails(function(t) t.strategies[2].id = t.strategies[1].id end, "strategies[2].id", "duplicate")
      fails(function(t) t.strategies[1].values = "x" end, "strategies[1].values")
      fails(function(t) t.results = "https://bkt/r/" end, "results", "s3://")
      fails(function(t) t.results = nil end, "results")
      fails(function(t) t.context.params = "x" end, "context.params")
      fails(function(t) t.context = 1 end, "context")
    end)

    it("reports bad JSON and non-objects with the name", function()
      local r, msg, code = bundle.decode("{nope", "s3://b/k")
      assert.is_nil(r)
      assert.are.equal("EBUNDLE", code)
      assert.is_truthy(msg:find("s3://b/k", 1, true), msg)
      r, msg, code = bundle.decode("[1,2]", "s3://b/k")
      assert.is_nil(r)
      assert.are.equal("EBUNDLE", code)
      assert.is_truthy(msg:find("s3://b/k: not a bundle", 1, true), msg)
      r, msg = bundle.decode("{}")
      assert.is_nil(r)
      assert.is_truthy(msg:find("^bundle: format:"), msg)
    end)
  end)

  describe("strategy", function()
    it("selects by id or 0-based index and says what exists otherwise", function()
      local t = assert(bundle.decode(bundle.encode((build(model())))))
      assert.are.equal(t.strategies[1], bundle.strategy(t, 0))
      assert.are.equal(t.strategies[4], bundle.strategy(t, 3))
      assert.are.equal(t.strategies[3], bundle.strategy(t, t.strategies[3].id))
      local c, msg = bundle.strategy(t, 4)
      assert.is_nil(c)
      assert.is_truthy(msg:find("0..3", 1, true), msg)
      c, msg = bundle.strategy(t, "0000000000")
      assert.is_nil(c)
      assert.is_truthy(msg:find(t.strategies[1].id, 1, true), msg)
      assert.has_error(function() bundle.strategy(t, {}) end)
    end)
  end)

  describe("secret_free", function()
    it("finds a secret in a value or a key, anywhere, and gives its path", function()
      assert.is_true(bundle.secret_free({ a = { "x", { b = "y" } } }, { "secret" }))
      local ok, path = bundle.secret_free({ a = { "x", { b = "my-secret-here" } } }, { "secret" })
      assert.is_false(ok)
      assert.are.equal("$.a[2].b", path)
      ok, path = bundle.secret_free({ a = { secret = 1 } }, { "secret" })
      assert.is_false(ok)
      assert.are.equal("$.a.secret", path)
      assert.is_false((bundle.secret_free("text with secret", { "secret" })))
      assert.is_true(bundle.secret_free({ a = "x" }, { "" }))
    end)
  end)
end)
