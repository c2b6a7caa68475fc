-- luabatch.ngx.runs in a real nginx (Debian's nginx + lua module) against
-- Ceph RGW and the Batch emulator: POST /runs with a 2-strategy matrix, GET
-- /runs/ID until done (the result equals `luabatch run --runs-on aws_batch
-- --json`, minus the info timings), GET /runs/ID/logs streams the jobs'
-- output, and bad input gets a 400 that names the problem.  Whole workflows
-- (needs, max-parallel, fail-fast, if:, trigger rules), the job-level
-- `retry:` (a job failing its first attempt succeeds on the second: same
-- context as the CLI's) and the client deadline (a job past with.timeout x
-- attempts + policy.deadline_margin is terminated by the poller's tick, no
-- GET needed).  The app's policy has deadline_margin = -57 (Batch's minimum
-- timeout is 60 s: the deadline is 3 s); only jobs with with.timeout have one.
--
-- nginx runs OpenResty's LuaJIT, so the module under test is the LuaJIT
-- build: this spec runs in integration-luajit; under Lua 5.4 it is pending.
-- The Batch jobs are `luabatch task` processes of the Lua 5.4 executable
-- (build/lua5.4/bin/luabatch, on the emulator's PATH).
local core = require "luabatch.core"
local cjson = require "cjson.safe"

local ROOT = os.getenv("PWD")
local POLICY = ROOT .. "/tests/fixtures/aws-batch/policy_fast.lua"
local EXE = ROOT .. "/build/lua5.4/bin/luabatch"

local function file_exists(p)
  local f = io.open(p, "rb")
  if f then f:close() return true end
  return false
end

if not rawget(_G, "jit") then
  describe("luabatch.ngx.runs in nginx #integration", function()
    pending("nginx specs run in integration-luajit (nginx embeds LuaJIT)")
  end)
  return
end

local nginx = require "helpers.nginx"
local aws_peers = require "helpers.aws_peers"
local servers = require "helpers.servers"

local WF = [=[
type: Workflow
name: ngx-matrix
params:
  greeting: {type: str, default: Hello}
jobs:
  count:
    strategy:
      matrix:
        n: [1, 2]
    stages:
      - name: Say
        id: say
        bash: |
          echo "${{ params.greeting }} from strategy ${{ matrix.n }}"
          echo "second line of ${{ matrix.n }}"
      - name: Double
        id: double
        lua: |
          return { doubled = matrix.n * 2, greeting = params.greeting }
]=]

-- A whole workflow: roots first and boom, a 3-strategy matrix with
-- max-parallel 1 fed by first's output, a job after it, a skipped job (if:
-- false) and one after it (skipped too: its only need was), and a trigger
-- rule (all_done) running after a failure.
local CHAIN = [=[
type: Workflow
name: ngx-chain
params:
  base: {type: int, default: 10}
  mode: {type: str, default: quick}
jobs:
  first:
    stages: [{name: Produce, id: produce, run: "value = ${{ params.base }}"}]
  fan:
    needs: [first]
    strategy:
      max-parallel: 1
      matrix: {n: [1, 2, 3]}
    stages:
      - {name: Nap, id: nap, bash: "sleep 0.3"}
      - {name: Add, id: add, run: "v = ${{ jobs.first.stages.produce.outputs.value }} + ${{ matrix.n }}"}
  last:
    needs: [fan]
    stages: [{name: Sum, id: sum, run: 'prev = "${{ jobs.fan.status }}"'}]
  skipped:
    needs: [first]
    if: "'${{ params.mode }}' == 'full'"
    stages: [{name: Never, id: never, echo: never}]
  after_skip:
    needs: [skipped]
    stages: [{name: Never2, id: never2, echo: never}]
  boom:
    stages: [{name: Boom, id: boom, raise: "source unavailable"}]
  rescue:
    needs: [boom]
    trigger-rule: all_done
    stages: [{name: Note, id: note, run: 'prev = "${{ jobs.boom.status }}"'}]
]=]

-- Fails its first attempt (no marker yet), succeeds on the second; the
-- job after it sees the retried job's record.
local RETRY = [=[
type: Workflow
name: ngx-retry
params:
  marker: {type: str}
jobs:
  flaky:
    retry: 1
    stages:
      - name: Try
        id: try
        bash: |
          if [ -e "${{ params.marker }}" ]; then echo "second attempt"; exit 0; fi
          touch "${{ params.marker }}"
          exit 4
      - {name: Mark, id: mark, run: 'ok = "yes"'}
  after:
    needs: [flaky]
    stages: [{name: Use, id: use, run: 'prev = "${{ jobs.flaky.status }}-${{ jobs.flaky.stages.mark.outputs.ok }}"'}]
]=]

-- Runs far longer than its client deadline (60 x 1 - 57 = 3 s).
local DEADLINE = [=[
type: Workflow
name: ngx-deadline
jobs:
  slow:
    runs-on: {type: local, with: {timeout: 60}}
    stages: [{name: Nap, id: nap, bash: "sleep 40"}]
]=]

local FAILFAST = [=[
type: Workflow
name: ngx-failfast
jobs:
  ff:
    strategy:
      fail-fast: true
      max-parallel: 2
      matrix: {n: [1, 2, 3]}
    stages:
      - name: Work
        id: work
        bash: |
          if [ "${{ matrix.n }}" = "1" ]; then sleep 0.5; exit 3; fi
          sleep 30
]=]

local function http(method, url, body)
  local resp, msg = core.http_request({ method = method, url = url, body = body, timeout = 60,
    headers = body and { { "Content-Type", "application/yaml" } } or nil })
  assert(resp, msg)
  return resp.status, resp.body, resp
end

local function get_json(url)
  local st, body = http("GET", url)
  return st, cjson.decode(body), body
end

-- The context without what legitimately differs between runs.
local function strip(v)
  if type(v) ~= "table" then return v end
  local out = {}
  for k, x in pairs(v) do
    if k ~= "info" then out[k] = strip(x) end
  end
  return out
end

local function lua_str(s) return string.format("%q", s) end

describe("luabatch.ngx.runs in nginx #integration", function()
  local p, ng, wfdir, skip_why

  setup(function()
    local ok, why = nginx.available()
    if not ok then skip_why = why return end
    if not file_exists(EXE) then skip_why = "no " .. EXE .. " (make)" return end
    -- the Batch jobs run the Lua 5.4 executable whatever runs this spec
    aws_peers.exe = function() return EXE end
    p = assert(aws_peers.start({ delay = 0.05 }))
    wfdir = p.dir .. "/workflows"
    assert(os.execute("mkdir -p '" .. wfdir .. "'"))
    local f = assert(io.open(wfdir .. "/matrix.yml", "w"))
    f:write(WF)
    f:close()
    ng = assert(nginx.start(nginx.runs_opts(p, { access_log = true, fields = table.concat({
      "  dir = " .. lua_str(wfdir) .. ",",
      "  policy = (function() local pol = dofile(" .. lua_str(POLICY) .. "); pol.deadline_margin = -57;",
      "    return pol end)()",
    }, "\n") })))
  end)

  teardown(function()
    if ng then ng.stop() end
    if p then p:stop() end
    servers.stop_all()
  end)

  local function need()
    if skip_why then pending(skip_why) return false end
    return true
  end

  local function wait_done(run_id, timeout)
    local last
    local deadline = core.monotime() + (timeout or 90)
    while core.monotime() < deadline do
      local st, body, raw = get_json(ng.url .. "/runs/" .. run_id)
      assert.equal(200, st, raw)
      last = body
      if body.result then return body end
      core.sleep(0.2)
    end
    error("run " .. run_id .. " not done: " .. tostring(cjson.encode(last)) .. "\n" .. ng.error_log())
  end

  it("POST /runs (YAML body) -> GET /runs/ID until done: the CLI's result; /logs streams the output", function()
    if not need() then return end
    local st, body = http("POST", ng.url .. "/runs?param.greeting=Bonjour", WF)
    local ans = cjson.decode(body)
    assert.equal(201, st, body .. "\n" .. ng.error_log())
    assert.is_string(ans.run_id)
    assert.equal("count", ans.job)
    -- max-parallel defaults to 1 (as locally and in the CLI): one strategy
    -- submitted, the other queued until it ends
    assert.equal(1, #ans.jobs, body)
    assert.equal(1, ans.workflow_jobs[1].queued, body)
    for _, j in ipairs(ans.jobs) do
      assert.is_string(j.job_id)
      assert.matches("^count/[^/]+/0$", j.key)
    end
    -- the answer came at once: the jobs are not finished yet
    local st2, now = get_json(ng.url .. "/runs/" .. ans.run_id)
    assert.equal(200, st2)
    assert.is_nil(now.result)

    local done = wait_done(ans.run_id)
    assert.equal("SUCCESS", done.status, cjson.encode(done))
    assert.equal(2, #done.jobs)
    for _, j in ipairs(done.jobs) do assert.equal("SUCCEEDED", j.status) end
    local ctx = done.result
    assert.equal("SUCCESS", ctx.status)
    assert.equal("Bonjour", ctx.params.greeting)
    local strat = ctx.jobs.count.strategies
    local doubled = {}
    for _, rec in pairs(strat) do doubled[#doubled + 1] = rec.stages.double.outputs.doubled end
    table.sort(doubled)
    assert.same({ 2, 4 }, doubled)
    -- a second GET answers the cached final record
    local _, again = get_json(ng.url .. "/runs/" .. ans.run_id)
    assert.same(strip(ctx), strip(again.result))

    -- nothing blocked a worker: the poller (a timer) reached the emulator
    -- through the unix-socket loopback of luabatch.transport.ngx
    local alog = assert(io.open(ng.prefix .. "/access.log")):read("*a")
    assert.truthy(alog:find("unix:", 1, true) and alog:find("POST /v1/describejobs", 1, true), alog)

    -- the same workflow through the CLI
    local wf = p.dir .. "/cli-matrix.yml"
    local f = assert(io.open(wf, "w"))
    f:write(WF)
    f:close()
    local out, err, code = p:run({ "run", wf, "--runs-on", "aws_batch", "--policy", POLICY, "--json",
      "--param", "greeting=Bonjour", "--with", "job_queue_arn=" .. p.emu.queue, "--with", "s3_bucket=" .. p.bucket })
    assert.equal(0, code, err .. out)
    local cli = assert(cjson.decode(out))
    assert.same(strip(cli), strip(ctx))

    -- logs: every line of both jobs, prefixed by its key
    local lst, text, resp = http("GET", ng.url .. "/runs/" .. ans.run_id .. "/logs")
    assert.equal(200, lst, text)
    assert.matches("text/plain", resp.headers["content-type"])
    for _, j in ipairs(done.jobs) do
      assert.truthy(text:find("[" .. j.key .. "] ", 1, true), text)
    end
    assert.truthy(text:find("Bonjour from strategy 1", 1, true), text)
    assert.truthy(text:find("Bonjour from strategy 2", 1, true), text)
    assert.truthy(text:find("second line of 2", 1, true), text)
    -- the lines sit behind the key of the job that printed them
    for line in text:gmatch("[^\n]+") do
      local key, msg = line:match("^%[([^%]]+)%] (.*)$")
      assert.is_string(key, line)
    end
  end)

  it("POST /runs?file=NAME&job=ID runs a workflow of the configured directory", function()
    if not need() then return end
    local st, body = http("POST", ng.url .. "/runs?file=matrix&job=count")
    assert.equal(201, st, body)
    local ans = cjson.decode(body)
    local done = wait_done(ans.run_id)
    assert.equal("SUCCESS", done.status, cjson.encode(done))
    assert.equal("Hello", done.result.params.greeting)
  end)

  -- [startedAt, stoppedAt] (ms) of Batch jobs, from the emulator
  local function spans(ids)
    local out = {}
    local ans = assert(p.batch:describe_jobs(ids))
    for _, jd in ipairs(ans.jobs) do out[jd.jobId] = { jd.startedAt, jd.stoppedAt, jd.status } end
    return out
  end

  local function run_cli(name, yaml, params)
    local wf = p.dir .. "/" .. name .. ".yml"
    local f = assert(io.open(wf, "w"))
    f:write(yaml)
    f:close()
    local argv = { "run", wf, "--runs-on", "aws_batch", "--policy", POLICY, "--json",
      "--with", "job_queue_arn=" .. p.emu.queue, "--with", "s3_bucket=" .. p.bucket }
    for _, kv in ipairs(params or {}) do argv[#argv + 1] = "--param"; argv[#argv + 1] = kv end
    local out, err = p:run(argv)
    return assert(cjson.decode(out), err .. out)
  end

  it("a whole workflow: needs chain, matrix with max-parallel 1, if: false, trigger rule = the CLI's", function()
    if not need() then return end
    local st, body = http("POST", ng.url .. "/runs?param.base=40", CHAIN)
    assert.equal(201, st, body .. "\n" .. ng.error_log())
    local ans = cjson.decode(body)
    assert.is_nil(ans.job)
    -- only the roots went out; the rest waits for its needs
    local state = {}
    for _, w in ipairs(ans.workflow_jobs) do state[w.job] = w.state end
    assert.same({ first = "submitted", boom = "submitted", fan = "pending", last = "pending",
                  skipped = "pending", after_skip = "pending", rescue = "pending" }, state)
    assert.equal(2, #ans.jobs)
    local done = wait_done(ans.run_id, 120)
    local ctx = done.result
    for _, w in ipairs(done.workflow_jobs) do assert.equal("done", w.state, cjson.encode(done)) end
    -- the needs' results reached the next jobs
    local fan = ctx.jobs.fan
    assert.equal("SUCCESS", fan.status, cjson.encode(ctx))
    local vs = {}
    for _, rec in pairs(fan.strategies) do vs[#vs + 1] = rec.stages.add.outputs.v end
    table.sort(vs)
    assert.same({ 41, 42, 43 }, vs)
    assert.equal("SUCCESS", ctx.jobs.last.stages.sum.outputs.prev)
    assert.equal("SKIP", ctx.jobs.skipped.status)
    assert.equal("SKIP", ctx.jobs.after_skip.status)
    assert.equal("FAILED", ctx.jobs.boom.status)
    assert.equal("FAILED", ctx.jobs.rescue.stages.note.outputs.prev)
    assert.equal("FAILED", ctx.status)
    -- max-parallel 1: no two strategies of fan overlapped on Batch
    local ids = {}
    for _, j in ipairs(done.jobs) do if j.job == "fan" then ids[#ids + 1] = j.job_id end end
    assert.equal(3, #ids)
    local sp = spans(ids)
    local list = {}
    for _, id in ipairs(ids) do
      assert.is_number(sp[id][1], id)
      assert.is_number(sp[id][2], id)
      list[#list + 1] = sp[id]
    end
    table.sort(list, function(a, b) return a[1] < b[1] end)
    for i = 2, #list do
      assert.is_true(list[i][1] >= list[i - 1][2], "strategies overlapped: " .. cjson.encode(list))
    end
    -- the CLI gives the same context
    local cli = run_cli("cli-chain", CHAIN, { "base=40" })
    assert.same(strip(cli), strip(ctx))
  end)

  it("fail-fast: the first failed strategy terminates its running sibling; the queued one never starts", function()
    if not need() then return end
    p.emu:reset_calls()
    local st, body = http("POST", ng.url .. "/runs", FAILFAST)
    assert.equal(201, st, body .. "\n" .. ng.error_log())
    local ans = cjson.decode(body)
    assert.equal(2, #ans.jobs, body)
    assert.equal(1, ans.workflow_jobs[1].queued)
    local t0 = core.monotime()
    local done = wait_done(ans.run_id, 60)
    -- the sleeper (30 s) was cut short
    assert.is_true(core.monotime() - t0 < 25, "fail-fast did not terminate the sibling")
    local ctx = done.result
    assert.equal("FAILED", ctx.status)
    local by_n = {}
    for sid, rec in pairs(ctx.jobs.ff.strategies) do by_n[rec.matrix.n] = rec; rec.sid = sid end
    assert.equal("FAILED", by_n[1].status)
    assert.equal("CANCEL", by_n[2].status)
    assert.truthy(by_n[2].errors.message:find("terminated: ", 1, true), by_n[2].errors.message)
    assert.is_nil(by_n[3], "the queued strategy must not run")
    assert.equal("FAILED", ctx.jobs.ff.status)
    assert.equal(2, #done.jobs)
    local calls = p.emu:calls()
    assert.equal(1, calls.counts.TerminateJob, cjson.encode(calls))
    -- the terminated job really ended FAILED on Batch
    for _, j in ipairs(done.jobs) do assert.equal("FAILED", j.status) end
    -- same shape as the CLI's
    local cli = run_cli("cli-ff", FAILFAST)
    local cli_n = {}
    for _, rec in pairs(cli.jobs.ff.strategies) do cli_n[rec.matrix.n] = rec.status end
    assert.same({ [1] = "FAILED", [2] = "CANCEL" }, cli_n)
    assert.equal(cli.status, ctx.status)
  end)

  it("retry: 1: the first attempt fails, the second succeeds; the context equals the CLI's", function()
    if not need() then return end
    local marker = p.dir .. "/retry-marker"
    os.remove(marker)
    local st, body = http("POST", ng.url .. "/runs?param.marker=" .. marker, RETRY)
    assert.equal(201, st, body .. "\n" .. ng.error_log())
    local ans = cjson.decode(body)
    local done = wait_done(ans.run_id, 90)
    local ctx = done.result
    assert.equal("SUCCESS", ctx.status, cjson.encode(done))
    assert.equal("SUCCESS", ctx.jobs.flaky.status)
    assert.is_nil(ctx.jobs.flaky.errors)
    assert.equal("SUCCESS-yes", ctx.jobs.after.stages.use.outputs.prev)
    -- both attempts' Batch jobs are listed: attempt 0 FAILED, attempt 1 SUCCEEDED
    local by_key = {}
    for _, j in ipairs(done.jobs) do by_key[j.key] = j end
    assert.equal("FAILED", by_key["flaky/EMPTY/0"].status, cjson.encode(done.jobs))
    assert.equal("SUCCEEDED", by_key["flaky/EMPTY/1"].status, cjson.encode(done.jobs))
    assert.equal("SUCCEEDED", by_key["after/EMPTY/0"].status)
    assert.not_equal(by_key["flaky/EMPTY/0"].job_id, by_key["flaky/EMPTY/1"].job_id)
    for _, w in ipairs(done.workflow_jobs) do
      if w.job == "flaky" then assert.equal(1, w.attempt) else assert.equal(0, w.attempt) end
    end
    -- the CLI, same workflow and params (the marker removed again)
    os.remove(marker)
    local cli = run_cli("cli-retry", RETRY, { "marker=" .. marker })
    assert.equal("SUCCESS", cli.status)
    assert.same(strip(cli), strip(ctx))
    os.remove(marker)
  end)

  it("the client deadline: the poller's tick terminates the job without any GET; the record names it", function()
    if not need() then return end
    p.emu:reset_calls()
    local t0 = core.monotime()
    local st, body = http("POST", ng.url .. "/runs", DEADLINE)
    assert.equal(201, st, body .. "\n" .. ng.error_log())
    local ans = cjson.decode(body)
    local bid = ans.jobs[1].job_id
    assert.is_string(bid)
    -- watch the emulator only (no GET /runs/ID): Batch ends it FAILED with the reason
    local jd
    while core.monotime() - t0 < 30 do
      local got = assert(p.batch:describe_jobs({ bid }))
      jd = got.jobs[1]
      if jd and jd.status == "FAILED" then break end
      core.sleep(0.2)
    end
    assert.equal("FAILED", jd and jd.status, cjson.encode(jd) .. "\n" .. ng.error_log())
    local took = core.monotime() - t0
    assert.is_true(took >= 2.5 and took < 20, "ended after " .. took .. " s")
    assert.truthy(tostring(jd.statusReason):find("luabatch: client deadline exceeded", 1, true), jd.statusReason)
    local calls = p.emu:calls()
    assert.equal(1, calls.counts.TerminateJob, cjson.encode(calls))
    -- GET: the run is over, its record the CLI's deadline record
    local done = wait_done(ans.run_id, 30)
    local ctx = done.result
    assert.equal("FAILED", ctx.status)
    local rec = ctx.jobs.slow
    assert.equal("FAILED", rec.status)
    local msg = rec.errors.message
    assert.truthy(msg:find("luabatch: client deadline exceeded (timeout 60 s x 1 attempts + -57 s margin); "
      .. "terminated", 1, true), msg)
    assert.truthy(msg:find(bid, 1, true), msg)
    assert.equal(1, p.emu:calls().counts.TerminateJob)
    -- the CLI with the same policy gives the same record (names and ids aside)
    local pol = p.dir .. "/policy_deadline.lua"
    local f = assert(io.open(pol, "w"))
    f:write("local p = dofile(" .. lua_str(POLICY) .. "); p.deadline_margin = -57; return p\n")
    f:close()
    local wf = p.dir .. "/cli-deadline.yml"
    f = assert(io.open(wf, "w"))
    f:write(DEADLINE)
    f:close()
    local out, err = p:run({ "run", wf, "--runs-on", "aws_batch", "--policy", pol, "--json",
      "--with", "job_queue_arn=" .. p.emu.queue, "--with", "s3_bucket=" .. p.bucket })
    local cli = assert(cjson.decode(out), err .. out)
    local function norm(c)
      c = strip(c)
      local e = c.jobs.slow.errors
      e.message = e.message:gsub("AWS Batch job %S+ %(%S+%)", "AWS Batch job N (ID)")
      return c
    end
    assert.same(norm(cli), norm(ctx))
  end)

  it("bad input -> 400 naming the problem; unknown run -> 404", function()
    if not need() then return end
    local cases = {
      { "/runs?file=../etc/passwd", "path traversal" },
      { "/runs?file=a%2Fb", "path traversal" },
      { "/runs?file=nope", "no such workflow", 404 },
      { "/runs", "no workflow" },
      { "/runs?job=nope", "no such job", nil, WF },
      { "/runs", "workflow: ", nil, "jobs: [this is: not: yaml" },
      { "/runs?param.times=many", "times", nil, (WF:gsub("default: Hello}", "default: Hello}\n  times: {type: int, default: 1}")) },
    }
    for _, c in ipairs(cases) do
      local st, body = http("POST", ng.url .. c[1], c[4])
      assert.equal(c[3] or 400, st, c[1] .. ": " .. body)
      local e = cjson.decode(body)
      assert.is_table(e, body)
      assert.is_string(e.error)
      assert.truthy(e.error:find(c[2], 1, true), c[1] .. ": " .. e.error)
    end
    -- a with: the provider rejects: nothing submitted, 400 naming the field
    local bad = WF:gsub("  count:\n", "  count:\n    runs-on: {type: local, with: {retry_attempts: 99}}\n")
    local st, body = http("POST", ng.url .. "/runs", bad)
    assert.equal(400, st, body)
    assert.truthy(cjson.decode(body).error:find("retry_attempts", 1, true), body)
    local st4, body4 = http("GET", ng.url .. "/runs/20990101-000000-deadbeef")
    assert.equal(404, st4)
    assert.truthy(cjson.decode(body4).error:find("no run", 1, true))
  end)
end)
