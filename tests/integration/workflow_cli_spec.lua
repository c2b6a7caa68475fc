-- `luabatch run` through the executable: exit codes (0 SUCCESS, 1 FAILED,
-- 2 bad input with FILE:LINE), --job, --param, --conf, --json, progress lines
-- on a terminal, real concurrency of a matrix, bash env values intact.
local cjson = require "cjson"
local core = require "luabatch.core"
local runcli = require "luabatch.cli.run"

local ROOT = os.getenv("PWD")
local EXE = ROOT .. "/build/lua5.4/bin/luabatch"
local FIX = "tests/fixtures/workflows/"

local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local function slurp(p)
  local f = io.open(p)
  local s = f and f:read("a") or ""
  if f then f:close() end
  os.remove(p)
  return s
end

-- Run the executable; returns stdout, stderr, exit code.
local function cli(args, envs)
  local cmd = {}
  for k, v in pairs(envs or {}) do cmd[#cmd + 1] = k .. "=" .. q(v) end
  cmd[#cmd + 1] = q(EXE)
  cmd[#cmd + 1] = "run"
  for _, a in ipairs(args) do cmd[#cmd + 1] = q(a) end
  local outf, errf = os.tmpname(), os.tmpname()
  local ok, _, code = os.execute(table.concat(cmd, " ") .. " >" .. outf .. " 2>" .. errf .. " </dev/null")
  if type(ok) == "number" then code = ok / 256 end -- LuaJIT
  return slurp(outf), slurp(errf), code
end

local function strip_info(v)
  if type(v) ~= "table" then return v end
  local o = {}
  for k, x in pairs(v) do if k ~= "info" then o[k] = strip_info(x) end end
  return o
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

local HELLO = [=[
type: Workflow
name: hello
params:
  who: {type: str, default: world}
  n: int
jobs:
  first:
    stages:
      - {name: Say, id: say, lua: "return { msg = 'hello ' .. params.who }"}
  second:
    needs: [first]
    stages:
      - {name: Use, id: use, lua: "return { got = jobs.first.stages.say.outputs.msg, n = params.n }"}
  broken:
    stages:
      - {name: Boom, id: boom, raise: "boom ${{ params.who }}"}
]=]

describe("luabatch run CLI #integration", function()
  teardown(function() os.execute("rm -rf " .. tmpdir) end)

  it("exit 0 on SUCCESS with --job, --param and --json", function()
    local f = write("hello.yml", HELLO)
    local out, err, code = cli({ f, "--job", "first", "--param", "who=Ann", "--json" })
    assert.equal(0, code, err)
    assert.same({ status = "SUCCESS", params = { who = "Ann", n = cjson.null },
      jobs = { first = { status = "SUCCESS", stages = { say = { status = "SUCCESS", outputs = { msg = "hello Ann" } } } } } },
      strip_info(cjson.decode(out)))
  end)

  it("exit 1 on FAILED, the summary names the failure; --param coerces", function()
    local f = write("hello.yml", HELLO)
    local out, err, code = cli({ f, "-p", "n=7", "--json" })
    assert.equal(1, code, err)
    local ctx = cjson.decode(out)
    assert.equal("FAILED", ctx.status)
    assert.same({ got = "hello world", n = 7 }, ctx.jobs.second.stages.use.outputs)
    assert.same({ name = "StageError", message = "boom world" }, ctx.jobs.broken.stages.boom.errors)
    out, err, code = cli({ f })
    assert.equal(1, code, err)
    assert.matches("workflow hello: FAILED", out, 1, true)
  end)

  it("exit 2 with FILE:LINE:COL for every class of bad input, nothing run", function()
    local cases = {
      { "bad_yaml.yml", "bad_yaml.yml:7:1:" },
      { "bad_stage_key.yml", "bad_stage_key.yml:7:%d+: unknown key 'timeuot'" },
      { "bad_stage_nothing.yml", "bad_stage_nothing.yml:7:%d+:.*PORT" },
      { "bad_runs_on.yml", "bad_runs_on.yml:5:%d+:.*gcp_batch" },
      { "bad_cycle.yml", "bad_cycle.yml:%d+:%d+: needs cycle: a %-> b %-> a" },
      { "bad_param_required.yml", "bad_param_required.yml:5:%d+: param 'region' is required" },
      { "bad_param_type.yml", "bad_param_type.yml:5:%d+: param 'when'" },
      { "bad_env_var.yml", "bad_env_var.yml:8:%d+:.*LUABATCH_TEST_UNSET_BUCKET" },
      { "bad_template_path.yml", "bad_template_path.yml:6:%d+:.*params%.tag" },
      { "bad_expr.yml", "bad_expr.yml:8:%d+:.*syntax error" },
    }
    for _, c in ipairs(cases) do
      local out, err, code = cli({ FIX .. c[1], "--json" })
      assert.equal(2, code, c[1] .. ": " .. err)
      assert.equal("", out, c[1])
      assert.matches(c[2], err, 1, false, c[1])
    end
    -- a given param that does not coerce: the declaration's line
    local f = write("hello.yml", HELLO)
    local out, err, code = cli({ f, "--param", "n=abc" })
    assert.equal(2, code)
    assert.equal("", out)
    assert.matches("hello.yml:5:%d+: param 'n'", err)
    -- usage errors
    _, err, code = cli({ f, "--job", "nope" })
    assert.equal(2, code)
    assert.matches("no job 'nope'", err, 1, true)
    _, err, code = cli({ f, "--param", "novalue" })
    assert.equal(2, code)
    assert.matches("KEY=VALUE", err, 1, true)
    _, err, code = cli({ tmpdir .. "/missing.yml" })
    assert.equal(2, code)
    assert.matches("missing.yml", err, 1, true)
  end)

  it("nothing runs when the input is bad (a required param is missing)", function()
    local marker = tmpdir .. "/ran"
    local f = write("guard.yml", ([=[
type: Workflow
params: {must: {type: str, required: true}}
jobs:
  a:
    stages: [{name: Touch, id: t, lua: "io.open('%s', 'w'):close(); return {}"}]
]=]):format(marker))
    local _, err, code = cli({ f })
    assert.equal(2, code)
    assert.matches("guard.yml:2:%d+: param 'must'", err)
    assert.is_nil(io.open(marker))
  end)

  it("bad input found before anything starts is exit 2: an undeclared --param, a runner's with: (no run id, no journal)", function()
    local home = tmpdir .. "/home-preflight"
    local marker = tmpdir .. "/ran-preflight"
    local f = write("preflight.yml", ([=[
type: Workflow
params: {who: {type: str, default: world}}
jobs:
  a:
    stages: [{name: Touch, id: t, lua: "io.open('%s', 'w'):close(); return {}"}]
]=]):format(marker))
    local env = { LUABATCH_HOME = home }
    local _, err, code = cli({ f, "--param", "nosuch=1" }, env)
    assert.equal(2, code, err)
    assert.truthy(err:find("preflight.yml: --param nosuch: the workflow has no such param (params: who)", 1, true), err)
    _, err, code = cli({ f, "--runs-on", "aws_batch" }, env)
    assert.equal(2, code, err)
    assert.truthy(err:find("preflight.yml:4:3: job 'a': runs-on aws_batch: with.job_queue_arn is required", 1, true), err)
    _, err, code = cli({ f, "--runs-on", "aws_batch", "--with", "job_queue_arn=q", "--with", "s3_bucket=b",
      "--with", "memory=abc" }, env)
    assert.equal(2, code, err)
    assert.truthy(err:find("with.memory must be a positive integer (from --with)", 1, true), err)
    -- rules across fields too: a Fargate task size, before anything starts
    _, err, code = cli({ f, "--runs-on", "aws_batch", "--with", "job_queue_arn=q", "--with", "s3_bucket=b",
      "--with", "platform=FARGATE", "--with", "execution_role_arn=arn:aws:iam::1:role/x", "--with", "memory=1024" }, env)
    assert.equal(2, code, err)
    assert.truthy(err:find("preflight.yml:4:3: job 'a': runs-on aws_batch: with.memory 1024 MiB is not a FARGATE size", 1, true), err)
    assert.is_nil(err:find("^run "), err)                   -- no run id was printed
    assert.is_nil(io.open(home .. "/runs"))                  -- no journal
    assert.is_nil(io.open(marker))                           -- nothing ran
  end)

  it("--resume RUN after a fix runs only what failed or changed; --resume last; every run is journaled", function()
    local home = tmpdir .. "/home-resume"
    local log, fixed = tmpdir .. "/resume-ran.txt", tmpdir .. "/resume-fixed"
    local text = ([=[
type: Workflow
name: resumable
params: {tag: {type: str, default: a}}
jobs:
  fan:
    strategy: {matrix: {n: [1, 2, 3]}, max-parallel: 3}
    stages:
      - name: work
        id: w
        bash: 'echo "fan ${{ matrix.n }}" >> %s; [ "${{ matrix.n }}" != 2 ] || [ -e %s ]'
  after:
    needs: [fan]
    stages: [{name: last, id: l, bash: 'echo "after ${{ params.tag }}" >> %s'}]
]=]):format(log, fixed, log)
    local f = write("resumable.yml", text)
    local env = { LUABATCH_HOME = home }
    local function ran()
      local lines = {}
      for l in slurp(log):gmatch("[^\n]+") do lines[#lines + 1] = l end
      table.sort(lines)
      return lines
    end
    local out, err, code = cli({ f }, env)
    assert.equal(1, code, err)
    assert.same({ "fan 1", "fan 2", "fan 3" }, ran())
    local first = assert(io.popen("ls " .. home .. "/runs")):read("a"):match("%S+")
    assert.is_string(first, "a local run is journaled")
    -- the fix; only the failed strategy and the job downstream run
    io.open(fixed, "w"):close()
    out, err, code = cli({ f, "--resume", first }, env)
    assert.equal(0, code, err)
    assert.same({ "after a", "fan 2" }, ran())
    assert.truthy(out:find("[0 of 2 jobs reused from " .. first .. "]", 1, true), out)
    -- nothing changed: nothing runs (--resume last, FILE from the journal)
    out, err, code = cli({ "--resume", "last", "--json" }, env)
    assert.equal(0, code, err)
    assert.same({}, ran())
    local ctx = cjson.decode(out)
    assert.equal("SUCCESS", ctx.jobs.fan.status)
    assert.equal("SUCCESS", ctx.jobs.fan.strategies[next(ctx.jobs.fan.strategies)].status)
    -- a param changed: the jobs run again
    out, err, code = cli({ f, "--resume", "last", "--param", "tag=b" }, env)
    assert.equal(0, code, err)
    assert.same({ "after b", "fan 1", "fan 2", "fan 3" }, ran())
    -- a changed stage of `after` only: fan is reused
    write("resumable.yml", text:gsub('after %${{ params.tag }}', 'after2 ${{ params.tag }}'))
    out, err, code = cli({ f, "--resume", "last" }, env)
    assert.equal(0, code, err)
    assert.same({ "after2 b" }, ran())
    -- an unknown run: exit 2
    _, err, code = cli({ f, "--resume", "20990101-000000-00000000" }, env)
    assert.equal(2, code, err)
  end)

  it("--conf DIR finds a workflow by name", function()
    local dir = tmpdir .. "/conf"
    os.execute("mkdir -p " .. dir)
    local f = assert(io.open(dir .. "/some.yml", "w"))
    f:write(HELLO)
    f:close()
    local out, err, code = cli({ "hello", "--conf", dir, "--job", "first", "--json" })
    assert.equal(0, code, err)
    assert.equal("hello world", cjson.decode(out).jobs.first.stages.say.outputs.msg)
  end)

  it("8 strategies of `sleep 1` with max-parallel 4 take about 2 s", function()
    local f = write("par.yml", [=[
type: Workflow
jobs:
  wide:
    strategy:
      max-parallel: 4
      matrix: {i: [1, 2, 3, 4, 5, 6, 7, 8]}
    stages:
      - {name: Nap, id: nap, bash: "sleep 1; echo ${{ matrix.i }}"}
]=])
    local t0 = core.monotime()
    local out, err, code = cli({ f, "--json" })
    local dt = core.monotime() - t0
    assert.equal(0, code, err)
    local ctx = cjson.decode(out)
    local n = 0
    for _, s in pairs(ctx.jobs.wide.strategies) do
      n = n + 1
      assert.equal(("%d"):format(s.matrix.i), s.stages.nap.outputs.stdout)
    end
    assert.equal(8, n)
    assert.is_true(dt >= 1.5 and dt < 7, ("took %.2f s (one at a time: 8 s)"):format(dt))
  end)

  it("a bash env value with quotes, $ and newlines arrives intact", function()
    -- (`${X}` and `$$` would be environment-substituted: env is an R+E field)
    local value = "it's \"quoted\" $HOME $1 `id` $(id) \\ back; a=b\nsecond 'line'\n"
    local f = write("envq.yml", [=[
type: Workflow
params: {v: str}
jobs:
  j:
    stages:
      - name: Show
        id: show
        env: {VALUE: "${{ params.v }}"}
        bash: printf '|%s|' "$VALUE"; sh -c 'printf "<%s>" "$VALUE"' 
]=])
    local out, err, code = cli({ f, "--param", "v=" .. value, "--json" })
    assert.equal(0, code, err)
    local stdout = cjson.decode(out).jobs.j.stages.show.outputs.stdout
    assert.equal(value, stdout:match("^|(.*)|"))
    assert.equal(value, stdout:match("<(.*)>$"))   -- exported: a child process sees it too
  end)

  it("progress lines on a terminal: job and stage status with durations", function()
    local f = write("hello.yml", HELLO)
    local lines = {}
    local code = runcli.run({ f, "--job", "first" }, {
      stdout = function() end,
      stderr = function(s) lines[#lines + 1] = s end,
      isatty = function() return true end,
    })
    assert.equal(0, code)
    local text = table.concat(lines)
    -- the live table, redrawn in place; the stage lines scroll above it
    assert.matches("JOB%s+STATE%s+STRATEGIES%s+ELAPSED%s+NOTE", text)
    assert.matches("first%s+running%s+1 RUNNING", text)
    assert.matches("\27%[%d+A\27%[J", text)
    assert.matches("first%s+say%s+SUCCESS%s+%d+%.%d+s", text)
    assert.matches("first%s+SUCCESS%s+1 SUCCESS%s+%d+%.%d+s\n$", text)    -- the last table stays
    -- not a terminal: a timestamped line per state change, no terminal codes
    lines = {}
    runcli.run({ f, "--job", "first" }, { stdout = function() end,
      stderr = function(s) lines[#lines + 1] = s end, isatty = function() return false end })
    text = table.concat(lines)
    assert.matches("^%d%d:%d%d:%d%d job first: running\n", text)
    assert.matches("\n%d%d:%d%d:%d%d first: RUNNING\n", text)
    assert.matches("\n%d%d:%d%d:%d%d job first: SUCCESS %(%d+%.%d+s%)\n$", text)
    assert.is_nil(text:find("\27", 1, true))
  end)
end)
