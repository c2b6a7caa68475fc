-- luabatch.workflow.stages.bash / .py: shell and python stages run as
-- child processes (spec decisions 8 and 9, reference §5.5 and §9).
local bash = require "luabatch.workflow.stages.bash"
local py = require "luabatch.workflow.stages.py"
local sched = require "luabatch.workflow.sched"
local template = require "luabatch.workflow.template"
local core = require "luabatch.core"
local cjson = require "cjson"

local VARS = { DEPLOY_ENV = "prod" }
local function getenv(k)
  if VARS[k] ~= nil then return VARS[k] end
  if k == "NOT_SET_VAR" then return nil end
  return os.getenv(k)
end

-- a minimal engine env: the real renderer with a fake environment
local function fake_env(extra)
  local env = {
    sched = sched,
    getenv = getenv,
    logged = {},
    render = function(v, ctx, opts)
      opts = opts or {}
      return template.render(v, ctx, { env = opts.env, getenv = getenv })
    end,
  }
  env.log = function(line) env.logged[#env.logged + 1] = line end
  for k, v in pairs(extra or {}) do env[k] = v end
  return env
end

local function ls(dir)
  local r = sched.exec({ "ls", "-A", dir })
  return r.stdout
end

describe("luabatch.workflow.stages.bash #unit", function()
  it("exports env values with quotes, $, backslashes and newlines intact (c07, fixed)", function()
    local value = "it's \"quoted\" $HOME $(date) `date` \\n back\\slash\nsecond line"
    local out, err = bash.execute({
      bash = [[
        printf '%s|' "$GREETING"
        sh -c 'printf "child:%s" "$GREETING"'
        echo "warn" >&2
      ]],
      env = { GREETING = value },
    }, {}, fake_env())
    assert.is_nil(err)
    -- (rendering strips surrounding whitespace of a value, as the reference)
    assert.are.equal(value .. "|child:" .. value, out.stdout)
    assert.are.equal(0, out.return_code)
    assert.are.equal("warn", out.stderr)
  end)

  it("strips outputs of surrounding newlines; empty becomes null", function()
    local out = assert(bash.execute({ bash = "printf '\\n\\nhello world\\n\\n'" }, {}, fake_env()))
    assert.are.equal("hello world", out.stdout)
    assert.are.equal(cjson.null, out.stderr)
    out = assert(bash.execute({ bash = "true" }, {}, fake_env()))
    assert.are.equal(cjson.null, out.stdout)
  end)

  it("fails on exit > 0 with the reference's message (c07)", function()
    local out, err = bash.execute({ bash = "echo about to fail\nexit 3\n" }, {}, fake_env())
    assert.is_nil(out)
    assert.are.same({ name = "StageError",
      message = "Subprocess: \n\t```bash\n\techo about to fail\n\texit 3\n\t```" }, err)
    _, err = bash.execute({ bash = "echo bad >&2\necho worse >&2\nexit 1" }, {}, fake_env())
    assert.are.equal("Subprocess: bad\nworse\n\t```bash\n\techo bad >&2\n\techo worse >&2\n\texit 1\n\t```",
      err.message)
  end)

  it("fails a script killed by a signal (fixed: the reference says SUCCESS)", function()
    -- kill 0: the stage's own process group (every child gets a new one)
    local out, err = bash.execute({ bash = "echo started\nkill -9 0" }, {}, fake_env())
    assert.is_nil(out)
    assert.are.equal("StageError", err.name)
    assert.matches("^Subprocess: killed by signal 9", err.message)
  end)

  it("dedents and renders the script and env values", function()
    local ctx = { params = { name = "Ann", n = 7 } }
    local out = assert(bash.execute({
      bash = "\n\n    echo \"hi ${{ params.name }}\"\n      echo \"$N/${DEPLOY_ENV}\"\n",
      env = { N = "${{ params.n }}" },
    }, ctx, fake_env()))
    assert.are.equal("hi Ann\n7/prod", out.stdout)
  end)

  it("reports a template error as the stage error", function()
    local out, err = bash.execute({ bash = "echo ${{ params.nope }}" }, { params = {} }, fake_env())
    assert.is_nil(out)
    assert.matches("params.nope", err.message)
  end)

  it("removes its script file and does not start when cancelled", function()
    local dir = os.tmpname()
    os.remove(dir)
    assert(sched.exec({ "mkdir", dir }).exit == 0)
    assert(bash.execute({ bash = "echo x" }, {}, fake_env({ tmpdir = dir })))
    assert.are.equal("", ls(dir))
    local out, err = bash.execute({ bash = "echo x" }, {}, fake_env({ tmpdir = dir, cancelled = function() return true end }))
    assert.is_nil(out)
    assert.are.equal("CANCEL", err.status)
    sched.exec({ "rmdir", dir })
  end)

  it("runs concurrently inside scheduler tasks", function()
    local s, outs = sched.new(), {}
    for i = 1, 4 do
      s:spawn(function()
        outs[i] = bash.execute({ bash = "sleep 2; echo " .. i }, {}, fake_env())
      end)
    end
    local t0 = core.monotime()
    s:run()
    local took = core.monotime() - t0
    assert.is_true(took < 6, "took " .. took)   -- one after the other: 8 s
    for i = 1, 4 do assert.are.equal(tostring(i), outs[i].stdout) end
  end)

  it("dedent follows textwrap.dedent", function()
    assert.are.equal("a\n  b\n\nc", bash.dedent("    a\n      b\n   \n    c"))
    assert.are.equal("a\n b", bash.dedent("\ta\n\t b"))
    assert.are.equal("'it'\\''s'", bash.shell_quote("it's"))
  end)
end)

describe("luabatch.workflow.stages.py #unit", function()
  it("captures locals as outputs (c01)", function()
    local out, err = py.execute({
      vars = { who = "${{ params.name }}" },
      run = "msg = \"hi \" + who\nn: int = len(who)\n",
    }, { params = { name = "Ann" } }, fake_env())
    assert.is_nil(err)
    assert.are.same({ msg = "hi Ann", n = 3 }, out)
    if math.type then assert.are.equal("integer", math.type(out.n)) end
  end)

  it("filters outputs as the reference: no dunders, modules, classes, trace; functions -> name", function()
    local env = fake_env()
    local out = assert(py.execute({ run = [[
      import os
      import json as j
      class C:
          pass
      def helper():
          return 1
      __hidden = 1
      trace = "t"
      keep = [1, "a", None, True, {"k": 2.5}]
      empty = []
      f = 2.0
      s = {3}
    ]] }, {}, env))
    assert.are.same({ "empty", "f", "helper", "keep", "s" }, (function()
      local ks = {}
      for k in pairs(out) do ks[#ks + 1] = k end
      table.sort(ks)
      return ks
    end)())
    assert.are.equal("helper", out.helper)
    assert.are.same({ 1, "a", cjson.null, true, { k = 2.5 } }, out.keep)
    assert.is_true(template.is_list(out.empty))
    assert.are.equal(0, #out.empty)
    assert.are.equal(2.0, out.f)
    if math.type then assert.are.equal("float", math.type(out.f)) end
    assert.are.equal("{3}", out.s)
    local warned = table.concat(env.logged, "\n")
    assert.matches("output 's' %(set%) is not JSON%-serialisable", warned)
  end)

  it("result.context.update joins the outputs (decision 9)", function()
    local out = assert(py.execute({ run = [[
      x = 1
      result.context.update({"records": 10, "name": who})
    ]], vars = { who = "w" } }, {}, fake_env()))
    assert.are.same({ x = 1, records = 10, name = "w" }, out)
  end)

  it("turns an exception into {name, message} (c04)", function()
    local out, err = py.execute({ run = [[
      n = 2
      if n == 2:
          raise ValueError("n is two")
    ]] }, {}, fake_env())
    assert.is_nil(out)
    assert.are.same({ name = "ValueError", message = "n is two" }, err)
    _, err = py.execute({ run = "import sys\nsys.exit(4)" }, {}, fake_env())
    assert.are.same({ name = "SystemExit", message = "4" }, err)
  end)

  it("keeps user prints apart from the result", function()
    local env = fake_env()
    local out = assert(py.execute({ run = [[
      print('{"outputs": {"forged": 1}, "error": null}')
      print("<<<luabatch-py-result-0>>>")
      real = 1
    ]] }, {}, env))
    assert.are.same({ real = 1 }, out)
    assert.are.same({ '{"outputs": {"forged": 1}, "error": null}', "<<<luabatch-py-result-0>>>" }, env.logged)
  end)

  it("preserves types through templates and vars (c08-like)", function()
    local ctx = { params = { items = template.list({ "x", "y" }), cfg = { region = "eu-west-1" }, n = 7 } }
    local out, err = py.execute({
      vars = {
        whole = "${{ params.items }}", embedded = "items=${{ params.items }}", num = "${{ params.n }}",
        num_str = "n=${{ params.n }}", key = "${{ params.cfg.region }}", missing = "${{ params.nope? }}",
        up = "${{ params.cfg.region | upper }}",
      },
      run = [[
        a = whole
        b = embedded
        c = num
        d = num_str
        e = key
        f = missing
        g = up
        types = [type(x).__name__ for x in (whole, num, missing)]
      ]],
    }, ctx, fake_env())
    assert.is_nil(err)
    assert.are.same({ a = { "x", "y" }, b = "items=['x', 'y']", c = 7, d = "n=7", e = "eu-west-1",
      f = cjson.null, g = "EU-WEST-1", types = { "list", "int", "NoneType" } }, out)
  end)

  it("renders templates in the code (c02/c04-like)", function()
    local out = assert(py.execute({ run = [[
      limit_type = type(${{ params.limit }}).__name__
      d = "${{ params.day }}"
    ]] }, { params = { limit = 10, day = "2024-03-01" } }, fake_env()))
    assert.are.same({ limit_type = "int", d = "2024-03-01" }, out)
  end)

  it("substitutes ${VAR} (c16 with decision 2: unset is an error)", function()
    local out, err = py.execute({
      vars = { a = "${DEPLOY_ENV}", c = "${NOT_SET_VAR:fallback}", d = "cost: $$5" },
      run = "va, vc, vd = a, c, d\nve = \"${NOT_SET_VAR:x}\"",
    }, {}, fake_env())
    assert.is_nil(err)
    assert.are.same({ va = "prod", vc = "fallback", vd = "cost: $5", ve = "x" }, out)
    out, err = py.execute({ vars = { b = "${NOT_SET_VAR}" }, run = "vb = b" }, {}, fake_env())
    assert.is_nil(out)
    assert.matches("NOT_SET_VAR", err.message)
  end)

  it("gives a clear error without python3", function()
    local env = fake_env({ getenv = function(k)
      if k == "LUABATCH_PYTHON" then return "no-such-python3-lb" end
      return getenv(k)
    end })
    local out, err = py.execute({ run = "x = 1" }, {}, env)
    assert.is_nil(out)
    assert.are.equal("StageError", err.name)
    assert.matches("py stage needs no%-such%-python3%-lb", err.message)
    assert.matches("not found", err.message)
  end)

  it("fails clearly when the interpreter dies without a result", function()
    local out, err = py.execute({ run = "import os\nos._exit(9)" }, {}, fake_env())
    assert.is_nil(out)
    assert.matches("ended without a result %(exit code 9%)", err.message)
  end)
end)

describe("stage timeout: #unit", function()
  -- the bound (timeout: 1) is what is checked; "well before the 30 s the
  -- children would sleep" is as loose as a loaded machine needs
  local function timed(fn)
    local t0 = core.monotime()
    local a, b, c = fn()
    return core.monotime() - t0, a, b, c
  end

  it("a bash stage past its timeout: its process group killed, FAILED 'timed out after N s', outputs kept", function()
    local marker = os.tmpname()
    local secs, out, err, outputs = timed(function()
      return bash.execute({ bash = "echo started; (sleep 30; touch " .. marker .. ") & sleep 30", timeout = 1 }, {}, fake_env())
    end)
    assert.is_nil(out)
    assert.equal("StageTimeoutError", err.name)
    assert.truthy(err.message:find("bash stage timed out after 1 s", 1, true), err.message)
    assert.equal("started", outputs.stdout)
    assert.is_true(secs < 25, "took " .. secs .. " s")
    os.remove(marker)
    core.sleep(0.3)
    assert.is_nil(io.open(marker), "the background grandchild outlived the stage")
  end)

  it("inside the scheduler too, and a stage within its timeout is untouched", function()
    local s = sched.new()
    local slow, quick
    s:spawn(function()
      slow = { bash.execute({ bash = "sleep 30", timeout = 1 }, {}, fake_env()) }
    end)
    s:spawn(function()
      quick = { bash.execute({ bash = "echo fine", timeout = 20 }, {}, fake_env()) }
    end)
    local secs = timed(function() return s:run() end)
    assert.equal("StageTimeoutError", slow[2].name)
    assert.equal("fine", quick[1].stdout)
    assert.is_true(secs < 25, "took " .. secs .. " s")
  end)

  it("a py stage past its timeout", function()
    local _, out, err = timed(function()
      return py.execute({ run = "import time\ntime.sleep(30)", timeout = 1 }, {}, fake_env())
    end)
    assert.is_nil(out)
    assert.equal("StageTimeoutError", err.name)
    assert.truthy(err.message:find("py stage timed out after 1 s", 1, true), err.message)
  end)

  it("timeout: is checked at load: bash and py only, 1..604800 s", function()
    local load = require "luabatch.workflow.load"
    assert(load.string("jobs:\n  a:\n    stages: [{name: s, bash: 'true', timeout: 5}]\n", "t.yml", {}))
    local _, err = load.string("jobs:\n  a:\n    stages: [{name: s, bash: 'true', timeout: 0}]\n", "t.yml", {})
    assert.truthy(err:find("'timeout' must be between 1 and 604800", 1, true), err)
    _, err = load.string("jobs:\n  a:\n    stages: [{name: s, echo: x, timeout: 5}]\n", "t.yml", {})
    assert.truthy(err and err:find("timeout", 1, true), err)
  end)
end)
