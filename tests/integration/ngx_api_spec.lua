-- The run API and dashboard of luabatch.ngx.runs in a real nginx (Debian's
-- nginx + lua module) against Ceph RGW and the Batch emulator: GET /runs
-- (the journals' runs, as `luabatch runs --json`), GET /runs/ID (strategies
-- named by matrix values, failure reasons), the CLI reading nginx's
-- journal (`luabatch runs`, `luabatch status`), a strategy's log tail,
-- DELETE /runs/ID (the emulator sees no SubmitJob after it, the running
-- job terminated, the run ends CANCEL; 409 / 404), a reload and a restart
-- keeping the runs, and the dashboard at GET / rendered by headless
-- Chromium (its DOM shows the jobs and their final states).
--
-- nginx embeds LuaJIT: this spec runs in integration-luajit (pending under
-- Lua 5.4).  The Batch jobs run build/lua5.4/bin/luabatch.
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
  describe("luabatch.ngx runs API and dashboard #integration", function()
    pending("nginx specs run in integration-luajit (nginx embeds LuaJIT)")
  end)
  return
end

local nginx = require "helpers.nginx"
local aws_peers = require "helpers.aws_peers"
local servers = require "helpers.servers"

-- n=1 succeeds, n=2 fails with a message of its own
local MATRIX = [=[
type: Workflow
name: ngx-api-matrix
jobs:
  count:
    strategy:
      max-parallel: 2
      matrix:
        n: [1, 2]
    stages:
      - name: Say
        id: say
        bash: |
          echo "hello from strategy ${{ matrix.n }}"
          echo "last line of ${{ matrix.n }}"
      - name: Check
        id: check
        if: "${{ matrix.n }} == 2"
        raise: "strategy two is broken"
]=]

-- three long strategies one at a time, then a job after them
local LONG = [=[
type: Workflow
name: ngx-api-long
jobs:
  slow:
    strategy:
      max-parallel: 1
      matrix: {n: [1, 2, 3]}
    stages: [{name: Nap, id: nap, bash: "sleep 30"}]
  after:
    needs: [slow]
    stages: [{name: Never, id: never, echo: never}]
]=]

local SHORT = [=[
type: Workflow
name: ngx-api-short
jobs:
  nap:
    stages: [{name: Nap, id: nap, bash: "sleep 2; echo napped"}]
]=]

local function lua_str(s) return string.format("%q", s) end

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

local function chromium()
  for _, c in ipairs({ "/usr/bin/chromium", "/usr/bin/chromium-browser" }) do
    if file_exists(c) then return c end
  end
end

describe("luabatch.ngx runs API and dashboard #integration", function()
  local p, ng, skip_why, start_opts
  local matrix_id

  setup(function()
    local ok, why = nginx.available()
    if not ok then skip_why = why return end
    if not file_exists(EXE) then skip_why = "no " .. EXE .. " (make)" return end
    aws_peers.exe = function() return EXE end
    p = assert(aws_peers.start({ delay = 0.05 }))
    -- the CLI of this spec (p:run) and nginx share one journal home; the
    -- journal's file I/O goes through nginx's thread pool
    start_opts = nginx.runs_opts(p, { main_extra = "thread_pool luabatch threads=2;",
      fields = "home = " .. lua_str(p.home) .. ", thread_pool = 'luabatch', policy = dofile(" .. lua_str(POLICY) .. ")" })
    ng = assert(nginx.start(start_opts))
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

  -- the specs after the first read its run
  local function need_matrix()
    if not need() then return false end
    if not matrix_id then pending("needs the first test's run (run the whole file)") return false end
    return true
  end

  local function wait_for(run_id, pred, timeout, what)
    local last
    local deadline = core.monotime() + (timeout or 90)
    while core.monotime() < deadline do
      local st, body, raw = get_json(ng.url .. "/runs/" .. run_id)
      assert.equal(200, st, raw)
      last = body
      if pred(body) then return body end
      core.sleep(0.2)
    end
    error("run " .. run_id .. ": " .. (what or "not done") .. ": " .. tostring(cjson.encode(last)) .. "\n" .. ng.error_log())
  end

  local function wait_done(run_id, timeout)
    return wait_for(run_id, function(b) return b.result ~= nil end, timeout)
  end

  local function post(yaml)
    local st, body = http("POST", ng.url .. "/runs", yaml)
    assert.equal(201, st, body .. "\n" .. ng.error_log())
    return cjson.decode(body).run_id
  end

  it("GET /runs lists the runs newest first; GET /runs/ID names strategies by matrix values and says why they failed", function()
    if not need() then return end
    local first = post(SHORT)
    wait_done(first)
    matrix_id = post(MATRIX)
    local done = wait_done(matrix_id)
    assert.equal("FAILED", done.status, cjson.encode(done))
    assert.equal("ngx-api-matrix", done.workflow)
    assert.is_number(done.started)
    local by_label = {}
    for _, j in ipairs(done.jobs) do by_label[j.label] = j end
    assert.equal("SUCCESS", by_label["count[n=1]"].result, cjson.encode(done.jobs))
    assert.equal("FAILED", by_label["count[n=2]"].result)
    assert.truthy(by_label["count[n=2]"].failure:find("strategy two is broken", 1, true), by_label["count[n=2]"].failure)
    assert.is_nil(by_label["count[n=1]"].failure)
    assert.equal("done", done.workflow_jobs[1].state)
    assert.equal("FAILED", done.workflow_jobs[1].status)
    assert.truthy(done.workflow_jobs[1].reason:find("strategy two is broken", 1, true))

    local st, list, raw = get_json(ng.url .. "/runs")
    assert.equal(200, st, raw)
    assert.is_true(#list >= 2, raw)
    assert.equal(matrix_id, list[1].run_id)
    assert.equal(first, list[2].run_id)
    assert.same({ run_id = matrix_id, workflow = "ngx-api-matrix", status = "FAILED",
                  jobs = { ok = 0, failed = 1, skipped = 0, cancelled = 0 } },
      { run_id = list[1].run_id, workflow = list[1].workflow, status = list[1].status, jobs = list[1].jobs })
    assert.equal("SUCCESS", list[2].status)
    assert.is_number(list[1].duration)
    local _, one = get_json(ng.url .. "/runs?limit=1")
    assert.equal(1, #one)
    -- the journal went through the thread pool (no fallback to the worker)
    assert.falsy(ng.error_log():find("journal I/O in the worker", 1, true), ng.error_log())
  end)

  it("the CLI reads nginx's journal: luabatch runs --json and luabatch status ID --json", function()
    if not need_matrix() then return end
    local out, err, code = p:run({ "runs", "--json" })
    assert.equal(0, code, err)
    local runs = assert(cjson.decode(out), out)
    local mine
    for _, r in ipairs(runs) do if r.run_id == matrix_id then mine = r end end
    assert.is_table(mine, out)
    assert.equal("FAILED", mine.status)
    assert.equal("ngx-api-matrix", mine.workflow)
    assert.same({ ok = 0, failed = 1, skipped = 0, cancelled = 0 }, mine.jobs)
    local sout, serr, scode = p:run({ "status", matrix_id, "--json" })
    assert.equal(0, scode, serr)
    local s = assert(cjson.decode(sout), sout)
    assert.equal("FAILED", s.ended)
    local by_label = {}
    for _, j in ipairs(s.jobs) do by_label[j.label] = j end
    assert.equal("SUCCESS", by_label["count[n=1]"].result, sout)
    assert.equal("FAILED", by_label["count[n=2]"].result, sout)
    assert.is_string(by_label["count[n=1]"].batch_job_id)
  end)

  it("GET /runs/ID/logs?key=KEY&tail=N: a strategy's last log lines as JSON", function()
    if not need_matrix() then return end
    local _, run = get_json(ng.url .. "/runs/" .. matrix_id)
    local key
    for _, j in ipairs(run.jobs) do if j.label == "count[n=1]" then key = j.key end end
    local st, t, raw = get_json(ng.url .. "/runs/" .. matrix_id .. "/logs?tail=50&key=" .. key)
    assert.equal(200, st, raw)
    assert.equal(key, t.key)
    local text = {}
    for _, l in ipairs(t.lines) do text[#text + 1] = l.m end
    text = table.concat(text, "\n")
    assert.truthy(text:find("hello from strategy 1", 1, true), raw)
    assert.truthy(text:find("last line of 1", 1, true), raw)
    assert.falsy(text:find("strategy 2", 1, true), raw)
    local _, t1 = get_json(ng.url .. "/runs/" .. matrix_id .. "/logs?tail=1&key=" .. key)
    assert.equal(1, #t1.lines)
    local st4 = http("GET", ng.url .. "/runs/" .. matrix_id .. "/logs?key=nope/EMPTY/0")
    assert.equal(404, st4)
  end)

  it("DELETE /runs/ID cancels: nothing submitted after it, the running job terminated, the run ends CANCEL", function()
    if not need() then return end
    local id = post(LONG)
    wait_for(id, function(b) return b.jobs[1] and b.jobs[1].status == "RUNNING" end, 60, "not running")
    p.emu:reset_calls()
    local st, body = http("DELETE", ng.url .. "/runs/" .. id .. "?reason=stop%20it")
    assert.equal(202, st, body)
    assert.equal("stop it", cjson.decode(body).cancel)
    local done = wait_done(id, 60)
    assert.equal("CANCEL", done.status, cjson.encode(done))
    assert.equal(1, #done.jobs, cjson.encode(done.jobs))
    assert.equal("CANCEL", done.jobs[1].result)
    assert.equal("FAILED", done.jobs[1].status)
    local calls = p.emu:calls()
    assert.is_nil(calls.counts.SubmitJob, cjson.encode(calls))
    assert.equal(1, calls.counts.TerminateJob, cjson.encode(calls))
    -- Batch recorded the reason
    local jd = assert(p.batch:describe_jobs({ done.jobs[1].job_id })).jobs[1]
    assert.truthy(tostring(jd.statusReason):find("stop it", 1, true), jd.statusReason)
    local states = {}
    for _, w in ipairs(done.workflow_jobs) do states[w.job] = w.status end
    assert.equal("CANCEL", states.slow)
    -- again: 409; unknown: 404
    local st2, b2 = http("DELETE", ng.url .. "/runs/" .. id)
    assert.equal(409, st2, b2)
    assert.truthy(cjson.decode(b2).error:find("already ended (CANCEL)", 1, true), b2)
    assert.equal(404, (http("DELETE", ng.url .. "/runs/20990101-000000-deadbeef")))
    -- the journal says so too
    local out = p:run({ "runs", "--json" })
    local found
    for _, r in ipairs(cjson.decode(out)) do if r.run_id == id then found = r end end
    assert.equal("CANCEL", found and found.status, out)
  end)

  it("`luabatch cancel ID` on the host stops a run nginx drives: nothing submitted after it, the run ends CANCEL", function()
    if not need() then return end
    local id = post(LONG)
    wait_for(id, function(b) return b.jobs[1] and b.jobs[1].status == "RUNNING" end, 60, "not running")
    p.emu:reset_calls()
    local out, err, code = p:run({ "cancel", id })
    assert.equal(0, code, err .. out)
    local done = wait_done(id, 60)
    assert.equal("CANCEL", done.status, cjson.encode(done))
    assert.equal(1, #done.jobs, cjson.encode(done.jobs))
    assert.equal("CANCEL", done.jobs[1].result)
    assert.truthy(done.cancel, cjson.encode(done))
    -- the CLI's TerminateJob, and nginx's own when its step saw the marker before
    -- the poller saw the job end (TerminateJob is idempotent)
    local calls = p.emu:calls()
    assert.is_nil(calls.counts.SubmitJob, cjson.encode(calls))
    assert.is_true(calls.counts.TerminateJob >= 1, cjson.encode(calls))
  end)

  it("a reload keeps runs going and listed; after a restart they are read from the journal", function()
    if not need_matrix() then return end
    local id = post(SHORT)
    assert(ng.reload())
    local done = wait_done(id, 60)
    assert.equal("SUCCESS", done.status, cjson.encode(done))
    assert.equal("live", done.source)
    -- a run still going when nginx stops: after the restart only its journal is left
    local orphan = post(LONG)
    wait_for(orphan, function(b) return b.jobs[1] and b.jobs[1].status == "RUNNING" end, 60, "not running")
    ng.stop()
    ng = assert(nginx.start(start_opts))
    local st, list = get_json(ng.url .. "/runs")
    assert.equal(200, st)
    local ids = {}
    for i, r in ipairs(list) do ids[r.run_id] = i end
    assert.equal(1, ids[orphan])
    assert.equal(2, ids[id])
    assert.is_number(ids[matrix_id])
    local st2, again, raw = get_json(ng.url .. "/runs/" .. matrix_id)
    assert.equal(200, st2, raw)
    assert.equal("journal", again.source)
    assert.equal("FAILED", again.status)
    assert.equal("FAILED", again.result.status)
    local by_label = {}
    for _, j in ipairs(again.jobs) do by_label[j.label] = j end
    assert.equal("SUCCESS", by_label["count[n=1]"].result, raw)
    assert.equal("SUCCEEDED", by_label["count[n=1]"].status, raw)
    assert.truthy(by_label["count[n=2]"].failure:find("strategy two is broken", 1, true), raw)
    assert.equal("FAILED", again.workflow_jobs[1].status)
    -- DELETE of the orphan: its running Batch job terminated from the journal, nothing submitted, CANCEL
    local _, o = get_json(ng.url .. "/runs/" .. orphan)
    assert.equal("RUNNING", o.status)
    assert.equal("journal", o.source)
    p.emu:reset_calls()
    local st3, b3 = http("DELETE", ng.url .. "/runs/" .. orphan)
    assert.equal(202, st3, b3)
    local c = cjson.decode(b3)
    assert.equal("CANCEL", c.status, b3)
    local calls = p.emu:calls()
    assert.is_nil(calls.counts.SubmitJob, cjson.encode(calls))
    assert.equal(1, calls.counts.TerminateJob, cjson.encode(calls))
    local jd
    assert.truthy(aws_peers.wait_until(function()
      jd = assert(p.batch:describe_jobs({ c.jobs[1].job_id })).jobs[1]
      return jd.status == "FAILED"
    end, 30), cjson.encode(jd))
    assert.equal(409, (http("DELETE", ng.url .. "/runs/" .. orphan)))
  end)

  it("GET / is a dashboard: headless Chromium renders the runs and the picked run's jobs with their final states", function()
    if not need_matrix() then return end
    local st, html, resp = http("GET", ng.url .. "/")
    assert.equal(200, st)
    assert.matches("text/html", resp.headers["content-type"])
    local bin = chromium()
    if not bin then pending("no chromium (tools/deps.sh test installs it)") return end
    local dir = p.dir .. "/chromium"
    local cmd = string.format("%s --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --no-proxy-server "
      .. "--user-data-dir=%s --virtual-time-budget=4000 --dump-dom '%s/#%s' 2>/dev/null", bin, dir, ng.url, matrix_id)
    local f = assert(io.popen(cmd))
    local dom = f:read("*a")
    f:close()
    -- the runs table lists the run; its jobs table shows each strategy and its state
    assert.truthy(dom:find('data-run="' .. matrix_id .. '"', 1, true), dom)
    local rows = {}
    for tr in dom:gmatch('<tr class="strategy"[^>]*>(.-)</tr>') do
      local label = tr:match('<td class="label">([^<]*)</td>')
      local result = tr:match('<td class="result[^"]*">([^<]*)</td>')
      local bstatus = tr:match('<td class="bstatus[^"]*">([^<]*)</td>')
      rows[label] = { result, bstatus, tr }
    end
    assert.equal("SUCCESS", rows["count[n=1]"] and rows["count[n=1]"][1], dom)
    assert.equal("SUCCEEDED", rows["count[n=1]"][2])
    assert.equal("FAILED", rows["count[n=2]"] and rows["count[n=2]"][1], dom)
    assert.truthy(rows["count[n=2]"][3]:find("strategy two is broken", 1, true), rows["count[n=2]"][3])
    local wjob = dom:match('<tr class="wjob" data%-job="count">(.-)</tr>')
    assert.truthy(wjob and wjob:find(">FAILED<", 1, true), dom)
  end)
end)
