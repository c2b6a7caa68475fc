-- The acceptance cases of the reference model (c01..c20), adapted to our
-- decisions (spec/workflow.md): each run compares the WHOLE final context
-- (the timing `info` fields removed) produced by the engine API, and a few
-- through the executable (`luabatch run FILE --json`).
local cjson = require "cjson"
local load = require "luabatch.workflow.load"
local engine = require "luabatch.workflow.engine"
local runcli = require "luabatch.cli.run"
local core = require "luabatch.core"

local NULL = cjson.null
local ROOT = os.getenv("PWD")
local EXE = ROOT .. "/build/lua5.4/bin/luabatch"

local ENV = { DEPLOY_ENV = "prod" }
local function getenv(k)
  if k == "NOT_SET_VAR" then return nil end
  if ENV[k] ~= nil then return ENV[k] end
  return os.getenv(k)
end

local function strip_info(v)
  if type(v) ~= "table" then return v end
  local o = {}
  for k, x in pairs(v) do
    if k ~= "info" then o[k] = strip_info(x) end
  end
  return o
end

-- JSON round trip (the CLI's encoder) then drop `info`: plain tables.
local function normal(ctx)
  return strip_info(cjson.decode(runcli.json(ctx)))
end

local tmpdir = os.tmpname()
os.remove(tmpdir)
os.execute("mkdir -p " .. tmpdir)

local function write(name, text)
  local path = tmpdir .. "/" .. name
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
  return path
end

local function run(name, yaml, params, opts)
  local path = write(name .. ".yml", yaml)
  local model, err = load.file(path, { getenv = getenv })
  assert(model, err)
  local o = { params = params, getenv = getenv, conf = tmpdir }
  for k, v in pairs(opts or {}) do o[k] = v end
  local ctx, rerr = engine.run(model, o)
  assert(ctx, rerr)
  return normal(ctx), ctx
end

local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local function cli(args)
  local cmd = { q(EXE), "run" }
  for _, a in ipairs(args) do cmd[#cmd + 1] = q(a) end
  local outf = os.tmpname()
  local errf = os.tmpname()
  local ok, _, code = os.execute(table.concat(cmd, " ") .. " >" .. outf .. " 2>" .. errf)
  local function slurp(p)
    local f = io.open(p)
    local s = f:read("a")
    f:close()
    os.remove(p)
    return s
  end
  local out, err = slurp(outf), slurp(errf)
  if type(ok) == "number" then code = ok / 256 end -- LuaJIT
  return out, err, code
end

local S = function(outputs) return { outputs = outputs or {}, status = "SUCCESS" } end

describe("workflow acceptance cases #integration", function()
  teardown(function() os.execute("rm -rf " .. tmpdir) end)

  it("c01 basic outputs (engine API and CLI agree)", function()
    local yaml = [=[
type: Workflow
params: {name: str}
jobs:
  greet:
    stages:
      - {name: Say hello, id: hello, echo: "Hello ${{ params.name }}"}
      - name: Compute
        id: calc
        vars: {who: "${{ params.name }}"}
        run: |
          msg = "hi " + who
          n: int = len(who)
]=]
    local want = {
      status = "SUCCESS",
      params = { name = "Ann" },
      jobs = { greet = { status = "SUCCESS", stages = {
        hello = S(), calc = S({ msg = "hi Ann", n = 3 }) } } },
    }
    assert.same(want, (run("c01", yaml, { name = "Ann" })))
    local out, err, code = cli({ tmpdir .. "/c01.yml", "--param", "name=Ann", "--json" })
    assert.equal(0, code, err)
    assert.same(want, strip_info(cjson.decode(out)))
  end)

  it("c02 coercion; defaults ARE injected (decision 4)", function()
    local yaml = [=[
type: Workflow
params:
  run-date: date
  limit: int
  mode: {type: choice, options: [full, delta]}
  tag: {type: str, default: nightly}
jobs:
  show:
    stages:
      - name: Types
        id: types
        run: |
          limit_type = type(${{ params.limit }}).__name__
          d = "${{ params.run-date }}"
      - {name: Missing default, id: tag, echo: "tag=${{ params.tag }}"}
]=]
    local got = run("c02", yaml, { ["run-date"] = "2024-03-01", limit = "10", mode = "delta" })
    assert.same({
      status = "SUCCESS",
      params = { ["run-date"] = "2024-03-01", limit = 10, mode = "delta", tag = "nightly" },
      jobs = { show = { status = "SUCCESS", stages = {
        types = S({ limit_type = "int", d = "2024-03-01" }), tag = S() } } },
    }, got)
  end)

  it("c03 matrix include/exclude with the reference's strategy ids", function()
    local yaml = [=[
type: Workflow
jobs:
  build:
    strategy:
      max-parallel: 2
      matrix: {os: [linux, mac], py: ["3.10", "3.11"]}
      exclude: [{os: mac, py: "3.10"}]
      include: [{os: win, py: "3.11"}]
    stages:
      - {name: "Build ${{ matrix.os }}", id: "build-${{ matrix.os }}", echo: "${{ matrix.os }} ${{ matrix.py }}"}
]=]
    local function strat(os_, py)
      return { status = "SUCCESS", matrix = { os = os_, py = py },
               stages = { ["build-" .. os_] = S() } }
    end
    assert.same({
      status = "SUCCESS", params = {},
      jobs = { build = { status = "SUCCESS", strategies = {
        ["4839621107"] = strat("linux", "3.10"),
        ["5446499804"] = strat("linux", "3.11"),
        ["4839117674"] = strat("mac", "3.11"),
        ["7494745413"] = strat("win", "3.11"),
      } } },
    }, (run("c03", yaml)))
  end)

  it("c04 matrix without fail-fast, one failing strategy", function()
    local yaml = [=[
type: Workflow
jobs:
  flaky:
    strategy: {fail-fast: false, matrix: {n: [1, 2, 3]}}
    stages:
      - name: Check
        id: check
        run: |
          if ${{ matrix.n }} == 2:
              raise ValueError("n is two")
          ok = ${{ matrix.n }} * 10
]=]
    local jerr = { name = "JobError", message = "Strategy execution was break because its nested-stage, 'check', failed." }
    assert.same({
      status = "FAILED", params = {},
      errors = { name = "WorkflowError", message = "Job execution, 'flaky', was failed." },
      jobs = { flaky = { status = "FAILED",
        errors = { ["7604506846"] = jerr },
        strategies = {
          ["1396677874"] = { status = "SUCCESS", matrix = { n = 1 }, stages = { check = S({ ok = 10 }) } },
          ["3472248012"] = { status = "SUCCESS", matrix = { n = 3 }, stages = { check = S({ ok = 30 }) } },
          ["7604506846"] = { status = "FAILED", matrix = { n = 2 }, errors = jerr, stages = {
            check = { status = "FAILED", outputs = {}, errors = { name = "ValueError", message = "n is two" } } } },
        } } },
    }, (run("c04", yaml)))
  end)

  it("c05 stage if: `if: true` RUNS (decision 6)", function()
    local yaml = [=[
type: Workflow
params: {env: str}
jobs:
  deploy:
    stages:
      - {name: Only prod, id: only-prod, if: "'${{ params.env }}' == 'prod'", echo: deploying}
      - {name: Literal true, id: lit-true, if: true, echo: runs}
      - {name: Literal false, id: lit-false, if: false, echo: never runs}
      - {name: Always, id: always, echo: done}
]=]
    assert.same({
      status = "SUCCESS", params = { env = "dev" },
      jobs = { deploy = { status = "SUCCESS", stages = {
        ["only-prod"] = { outputs = {}, status = "SKIP" },
        ["lit-true"] = S(),
        ["lit-false"] = { outputs = {}, status = "SKIP" },
        always = S() } } },
    }, (run("c05", yaml, { env = "dev" })))
  end)

  it("c06 job if + SKIP propagation", function()
    local yaml = [=[
type: Workflow
params: {enabled: str}
jobs:
  gated:
    if: "'${{ params.enabled }}' == 'yes'"
    stages: [{name: Work, id: work, echo: working}]
  after:
    needs: [gated]
    stages: [{name: Next, id: next, echo: next}]
]=]
    assert.same({
      status = "SKIP", params = { enabled = "no" },
      jobs = { gated = { status = "SKIP" }, after = { status = "SKIP" } },
    }, (run("c06", yaml, { enabled = "no" })))
  end)

  it("c07 bash outputs, env EXPORTED (decision 8), exit code", function()
    local yaml = [=[
type: Workflow
jobs:
  sh:
    stages:
      - name: Shell ok
        id: ok
        env: {GREETING: hello}
        bash: |
          echo "$GREETING world"
          sh -c 'echo "child sees [$GREETING]"'
          echo "warn" >&2
      - name: Shell fail
        id: bad
        bash: |
          echo about to fail
          exit 3
]=]
    local got = run("c07", yaml)
    local bad = got.jobs.sh.stages.bad
    assert.equal("FAILED", bad.status)
    assert.equal("StageError", bad.errors.name)
    assert.matches("exit 3", bad.errors.message, 1, true)
    got.jobs.sh.stages.bad = nil
    assert.same({
      status = "FAILED", params = {},
      errors = { name = "WorkflowError", message = "Job execution, 'sh', was failed." },
      jobs = { sh = { status = "FAILED",
        errors = { name = "JobError", message = "Strategy execution was break because its nested-stage, 'bad', failed." },
        stages = { ok = S({ return_code = 0, stdout = "hello world\nchild sees [hello]", stderr = "warn" }) } } },
    }, got)
  end)

  it("c08 type preservation through templates", function()
    local yaml = [=[
type: Workflow
params: {items: array, cfg: map, n: int}
jobs:
  j:
    stages:
      - name: T
        id: t
        vars:
          whole: "${{ params.items }}"
          embedded: "items=${{ params.items }}"
          num: "${{ params.n }}"
          num_str: "n=${{ params.n }}"
          key: "${{ params.cfg.region }}"
          missing: "${{ params.nope? }}"
          up: "${{ params.cfg.region | upper }}"
        run: |
          a = whole
          b = embedded
          c = num
          d = num_str
          e = key
          f = missing
          g = up
]=]
    local got = run("c08", yaml, { items = '["x", "y"]', cfg = { region = "eu-west-1" }, n = 7 })
    assert.same({ a = { "x", "y" }, b = "items=['x', 'y']", c = 7, d = "n=7", e = "eu-west-1",
                  f = NULL, g = "EU-WEST-1" }, got.jobs.j.stages.t.outputs)
    assert.same({ status = "SUCCESS", params = { items = { "x", "y" }, cfg = { region = "eu-west-1" }, n = 7 } },
      { status = got.status, params = got.params })
  end)

  it("c09 foreach with concurrent items", function()
    local yaml = [=[
type: Workflow
params: {tables: array}
jobs:
  load:
    stages:
      - name: Per table
        id: per-table
        foreach: "${{ params.tables }}"
        concurrent: 2
        stages:
          - name: Load one
            id: load-one
            run: |
              rows = len("${{ item }}") * 100
              idx = ${{ loop }}
]=]
    assert.same({
      status = "SUCCESS", params = { tables = { "orders", "users" } },
      jobs = { load = { status = "SUCCESS", stages = { ["per-table"] = S({
        items = { "orders", "users" },
        foreach = {
          orders = { status = "SUCCESS", item = "orders", stages = { ["load-one"] = S({ rows = 600, idx = 0 }) } },
          users = { status = "SUCCESS", item = "users", stages = { ["load-one"] = S({ rows = 500, idx = 1 }) } },
        } }) } } },
    }, (run("c09", yaml, { tables = { "orders", "users" } })))
  end)

  it("c10 case fallback", function()
    local yaml = [=[
type: Workflow
params: {region: str}
jobs:
  j:
    stages:
      - name: Route
        id: route
        case: "${{ params.region }}"
        match:
          - case: us
            stages: [{name: US path, id: us, echo: us}]
          - case: _
            stages: [{name: Fallback, id: other, run: 'chosen = "${{ case }}"'}]
]=]
    assert.same({
      status = "SUCCESS", params = { region = "apac" },
      jobs = { j = { status = "SUCCESS", stages = { route = S({
        case = "_", stages = { other = S({ chosen = "_" }) } }) } } },
    }, (run("c10", yaml, { region = "apac" })))
  end)

  it("c11 until", function()
    local yaml = [=[
type: Workflow
jobs:
  j:
    stages:
      - name: Count
        id: count
        item: 1
        until: "${{ item }} >= 4"
        max-loop: 5
        stages:
          - {name: Bump, id: bump, run: "item = ${{ item }} + 1"}
]=]
    local function loop(n)
      return { status = "SUCCESS", loop = n, item = n, stages = { bump = S({ item = n + 1 }) } }
    end
    assert.same({
      status = "SUCCESS", params = {},
      jobs = { j = { status = "SUCCESS", stages = { count = S({
        ["until"] = { ["1"] = loop(1), ["2"] = loop(2), ["3"] = loop(3) } }) } } },
    }, (run("c11", yaml)))
  end)

  it("c12 parallel with a failing branch", function()
    local yaml = [=[
type: Workflow
jobs:
  fan:
    stages:
      - name: Fan out
        id: fan
        max-workers: 2
        parallel:
          left: [{name: L, id: l, run: 'side = "${{ branch }}"'}]
          right: [{name: R, id: r, raise: "right branch broke"}]
]=]
    local berr = { name = "StageError", message = "Break branch: 'right' because nested stage: 'r', failed." }
    assert.same({
      status = "FAILED", params = {},
      errors = { name = "WorkflowError", message = "Job execution, 'fan', was failed." },
      jobs = { fan = { status = "FAILED",
        errors = { name = "JobError", message = "Strategy execution was break because its nested-stage, 'fan', failed." },
        stages = { fan = { status = "FAILED", errors = { right = berr }, outputs = {
          workers = 2,
          parallel = {
            left = { status = "SUCCESS", branch = "left", stages = { l = S({ side = "left" }) } },
            right = { status = "FAILED", branch = "right", errors = berr, stages = {
              r = { status = "FAILED", outputs = {}, errors = { name = "StageError", message = "right branch broke" } } } },
          } } } } } },
    }, (run("c12", yaml)))
  end)

  it("c13 trigger rules: all_done runs after a failure; all_success aborts", function()
    local base = [=[
type: Workflow
jobs:
  extract:
    stages: [{name: Boom, id: boom, raise: "source unavailable"}]
]=]
    local boom = { status = "FAILED", outputs = {}, errors = { name = "StageError", message = "source unavailable" } }
    local extract = { status = "FAILED", stages = { boom = boom },
      errors = { name = "JobError", message = "Strategy execution was break because its nested-stage, 'boom', failed." } }
    local a = run("c13a", base .. [=[
  notify:
    needs: [extract]
    trigger-rule: all_done
    stages: [{name: Notify, id: notify, run: 'prev = "${{ jobs.extract.status }}"'}]
]=])
    assert.same({ status = "FAILED", params = {},
      errors = { name = "WorkflowError", message = "Job execution, 'extract', was failed." },
      jobs = { extract = extract, notify = { status = "SUCCESS", stages = { notify = S({ prev = "FAILED" }) } } },
    }, a)
    local b = run("c13b", base .. [=[
  publish:
    needs: [extract]
    stages: [{name: Publish, id: publish, echo: publishing}]
]=])
    assert.same({ status = "FAILED", params = {},
      errors = { name = "WorkflowError", message = "Validate job trigger rule was failed with 'all_success'." },
      jobs = { extract = extract },
    }, b)
  end)

  it("c13c one_success / one_failed mean 'at least one' (decision 14)", function()
    local yaml = [=[
type: Workflow
jobs:
  a: {stages: [{name: A, id: a, echo: a}]}
  b: {stages: [{name: B, id: b, echo: b}]}
  c: {stages: [{name: C, id: c, raise: broken}]}
  any-ok:
    needs: [a, b, c]
    trigger-rule: one_success
    stages: [{name: X, id: x, echo: x}]
  any-failed:
    needs: [a, b, c]
    trigger-rule: one_failed
    stages: [{name: Y, id: y, echo: y}]
]=]
    local got = run("c13c", yaml)
    assert.same({ status = "SUCCESS", stages = { x = S() } }, got.jobs["any-ok"])
    assert.same({ status = "SUCCESS", stages = { y = S() } }, got.jobs["any-failed"])
    assert.equal("FAILED", got.status)
  end)

  it("c14 stage retry: the backoff, and `retry` not in outputs (decision 7)", function()
    local yaml = [=[
type: Workflow
jobs:
  j:
    stages:
      - name: Flaky
        id: flaky
        retry: 2
        lua: |
          if retry < 2 then error("attempt " .. retry) end
          return { attempt = retry }
]=]
    local t0 = core.monotime()
    local got = run("c14", yaml)
    local dt = core.monotime() - t0
    assert.same({ status = "SUCCESS", params = {},
      jobs = { j = { status = "SUCCESS", stages = { flaky = S({ attempt = 2 }) } } } }, got)
    assert.is_true(dt >= 1.4 and dt < 20, "took " .. dt)   -- the backoff was waited; an upper bound only for a hang
  end)

  it("c15 SKIP-only jobs", function()
    local yaml = [=[
type: Workflow
jobs:
  nothing: {stages: []}
  all-skipped:
    stages: [{name: Off, id: off, if: "1 == 2", echo: never}]
]=]
    assert.same({ status = "SKIP", params = {},
      jobs = { nothing = { status = "SKIP", stages = {} },
               ["all-skipped"] = { status = "SKIP", stages = { off = { outputs = {}, status = "SKIP" } } } },
    }, (run("c15", yaml)))
  end)

  it("c16 env substitution (an unset ${VAR} is an error, decision 2)", function()
    local yaml = [=[
type: Workflow
jobs:
  j:
    stages:
      - name: Env
        id: env
        vars: {a: "${DEPLOY_ENV}", c: "${NOT_SET_VAR:fallback}", d: "cost: $$5"}
        run: |
          va, vc, vd = a, c, d
]=]
    assert.same({ status = "SUCCESS", params = {},
      jobs = { j = { status = "SUCCESS", stages = { env = S({ va = "prod", vc = "fallback", vd = "cost: $5" }) } } },
    }, (run("c16", yaml)))
    local bad = write("c16bad.yml", yaml:gsub('a: "%${DEPLOY_ENV}"', 'a: "${NOT_SET_VAR}"'))
    local model, err = load.file(bad, { getenv = getenv })
    if model then
      local ctx = assert(engine.run(model, { getenv = getenv }))
      local st = ctx.jobs.j.stages.env
      assert.equal("FAILED", st.status)
      assert.matches("NOT_SET_VAR", st.errors.message, 1, true)
    else
      assert.matches("NOT_SET_VAR", err, 1, true)
      assert.matches("c16bad.yml:%d+", err)
    end
  end)

  it("c17 max-parallel guard", function()
    local yaml = [=[
type: Workflow
params: {workers: str}
jobs:
  too-wide:
    strategy: {max-parallel: "${{ params.workers }}", matrix: {x: [1, 2]}}
    stages: [{name: S, id: s, echo: x}]
]=]
    assert.same({ status = "FAILED", params = { workers = "12" },
      errors = { name = "WorkflowError", message = "Job execution, 'too-wide', was failed." },
      jobs = { ["too-wide"] = { status = "FAILED", strategies = {},
        errors = { name = "JobError", message = "The max-parallel value should not more than 10, the current value was set: 12." } } },
    }, (run("c17", yaml, { workers = "12" })))
  end)

  it("c18 cross-job reference", function()
    local yaml = [=[
type: Workflow
jobs:
  first:
    stages: [{name: Produce, id: produce, run: "value = 41"}]
  second:
    needs: [first]
    stages: [{name: Consume, id: consume, run: "total = ${{ jobs.first.stages.produce.outputs.value }} + 1"}]
]=]
    assert.same({ status = "SUCCESS", params = {},
      jobs = { first = { status = "SUCCESS", stages = { produce = S({ value = 41 }) } },
               second = { status = "SUCCESS", stages = { consume = S({ total = 42 }) } } },
    }, (run("c18", yaml)))
  end)

  it("c19 a stage that does not validate is a load error, not an empty stage (decision 5)", function()
    local path = write("c19.yml", [=[
type: Workflow
jobs:
  j:
    stages:
      - {name: Looks like bash, id: sh, env: {PORT: [8080]}, bash: 'echo "port $PORT"'}
]=])
    local model, err = load.file(path)
    assert.is_nil(model)
    assert.matches("c19.yml:5:%d+:", err)
    local _, stderr, code = cli({ path, "--json" })
    assert.equal(2, code)
    assert.matches("c19.yml:5:%d+:", stderr)
  end)

  it("c20 job retry works and leaves no stale keys (decision 14)", function()
    local marker = tmpdir .. "/c20.marker"
    local yaml = ([=[
type: Workflow
jobs:
  once-flaky:
    retry: 1
    stages:
      - name: Flaky
        id: flaky
        lua: |
          local f = io.open("%s")
          if not f then
            io.open("%s", "w"):close()
            error("first attempt fails")
          end
          f:close()
          return { ok = true }
  after:
    needs: [once-flaky]
    stages: [{name: After, id: after, echo: after}]
]=]):format(marker, marker)
    assert.same({ status = "SUCCESS", params = {},
      jobs = { ["once-flaky"] = { status = "SUCCESS", stages = { flaky = S({ ok = true }) } },
               after = { status = "SUCCESS", stages = { after = S() } } },
    }, (run("c20", yaml)))
  end)

  it("lua, call and trigger stages, nested kinds sharing outputs", function()
    os.execute("mkdir -p " .. tmpdir .. "/registry")
    write("registry/tasks.lua", [=[
return {
  ["add-one"] = { args = { n = "int", label = { type = "str", default = "x" } },
                  fn = function(a) return { n = a.n + 1, label = a.label } end },
}
]=])
    write("child.yml", [=[
type: Workflow
name: child
params: {n: int}
jobs:
  c:
    stages: [{name: Double, id: double, lua: "return { v = params.n * 2 }"}]
]=])
    local yaml = [=[
type: Workflow
name: parent
jobs:
  j:
    stages:
      - {name: Call, id: call, uses: "tasks/add-one@latest", with: {n: 41}}
      - {name: Trig, id: trig, trigger: child, params: {n: "${{ stages.call.outputs.n }}"}}
      - name: Last
        id: last
        lua: |
          result.context.v = stages.trig.outputs.jobs.c.stages.double.outputs.v
]=]
    local got = run("parent", yaml, nil, { registry = tmpdir .. "/registry" })
    assert.same({ status = "SUCCESS", params = {},
      jobs = { j = { status = "SUCCESS", stages = {
        call = S({ n = 42, label = "x" }),
        trig = S({ params = { n = 42 }, jobs = { c = { status = "SUCCESS", stages = { double = S({ v = 84 }) } } } }),
        last = S({ v = 84 }),
      } } } }, got)
  end)
end)
