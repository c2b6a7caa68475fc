-- examples/nginx as shipped: examples/nginx/run.sh starts nginx with
-- nginx.conf.in against Ceph RGW and the Batch emulator, and every endpoint
-- answers: POST /runs (?file=NAME + params, and a YAML body), GET /runs/ID
-- until done, GET /runs/ID/logs, GET /objects/KEY (an object the run wrote
-- and one put by the test), plus the error answers.
--
-- nginx runs OpenResty's LuaJIT: this spec runs in integration-luajit; under
-- Lua 5.4 it is pending.  The Batch jobs are `luabatch task` processes of
-- the Lua 5.4 executable (build/lua5.4/bin/luabatch, on the emulator's PATH).
local core = require "luabatch.core"
local cjson = require "cjson.safe"

local ROOT = os.getenv("PWD")
local POLICY = ROOT .. "/tests/fixtures/aws-batch/policy_fast.lua"
local EXE = ROOT .. "/build/lua5.4/bin/luabatch"

if not rawget(_G, "jit") then
  describe("examples/nginx #integration", function()
    pending("nginx specs run in integration-luajit (nginx embeds LuaJIT)")
  end)
  return
end

local nginx = require "helpers.nginx"
local aws_peers = require "helpers.aws_peers"
local servers = require "helpers.servers"
local s3mod = require "luabatch.s3"

local WF = [=[
type: Workflow
name: ngx-example
params:
  greeting: {type: str, default: Hello}
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
          echo "${{ params.greeting }} from strategy ${{ matrix.n }}"
      - name: Double
        id: double
        lua: |
          return { doubled = matrix.n * 2 }
]=]

local ONE = [=[
type: Workflow
name: ngx-example-one
jobs:
  single:
    stages:
      - name: Echo
        id: echo
        bash: echo "body workflow ran"
]=]

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function sh(cmd)
  local p = io.popen(cmd)
  local out = p:read("*a")
  local ok = p:close()
  return out, ok
end

local function http(method, url, body)
  local resp, msg = core.http_request({ method = method, url = url, body = body, timeout = 60,
    headers = body and { { "Content-Type", "application/yaml" } } or nil })
  assert(resp, msg)
  return resp.status, resp.body, resp
end

local function file_exists(p)
  local f = io.open(p, "rb")
  if f then f:close() return true end
  return false
end

describe("examples/nginx #integration", function()
  local p, url, prefix, skip_why, wfdir

  setup(function()
    local ok, why = nginx.available()
    if not ok then skip_why = why return end
    if not file_exists(EXE) then skip_why = "no " .. EXE .. " (make)" return end
    aws_peers.exe = function() return EXE end
    p = assert(aws_peers.start({ delay = 0.05 }))
    wfdir = p.dir .. "/workflows"
    assert(os.execute("mkdir -p " .. q(wfdir)))
    local f = assert(io.open(wfdir .. "/matrix.yml", "w"))
    f:write(WF)
    f:close()
    local env = {}
    for k, v in pairs(p.env) do env[#env + 1] = k .. "=" .. q(v) end
    env[#env + 1] = "LUABATCH_EXAMPLES=" .. q(wfdir)
    -- the fast polling policy, keeping the runs' S3 objects (cleanup =
    -- never) so the test can read a job's result.json through /objects/
    local pol = p.dir .. "/policy.lua"
    f = assert(io.open(pol, "w"))
    f:write("local p = dofile(" .. ("%q"):format(POLICY) .. ")\np.cleanup = 'never'\nreturn p\n")
    f:close()
    env[#env + 1] = "LUABATCH_POLICY=" .. q(pol)
    env[#env + 1] = "NGINX_WORKERS=2"
    local port = servers.free_port()
    local out, started = sh(("env -i %s examples/nginx/run.sh start %d %s %s %s %s %s 2>&1"):format(
      table.concat(env, " "), port, q(p.s3_endpoint), q(p.emu.endpoint), q(p.emu.endpoint),
      q(p.bucket), q(p.emu.queue)))
    prefix = out:match("prefix=(%S+)")
    url = out:match("url=(%S+)")
    assert(started and url, "run.sh start failed:\n" .. out)
  end)

  teardown(function()
    if prefix then
      sh("examples/nginx/run.sh stop " .. q(prefix))
      if os.getenv("LUABATCH_KEEP_NGINX") ~= "1" then os.execute("rm -rf " .. q(prefix)) end
    end
    if p then p:stop() end
    servers.stop_all()
  end)

  local function need()
    if skip_why then pending(skip_why) return false end
    return true
  end

  local function error_log()
    local f = io.open(prefix .. "/error.log")
    if not f then return "" end
    local s = f:read("*a")
    f:close()
    return s
  end

  local function wait_done(run_id, timeout)
    local last
    local deadline = core.monotime() + (timeout or 90)
    while core.monotime() < deadline do
      local st, body = http("GET", url .. "/runs/" .. run_id)
      assert.equal(200, st, body)
      last = cjson.decode(body)
      if last and last.result then return last end
      core.sleep(0.2)
    end
    error("run " .. run_id .. " not done: " .. tostring(cjson.encode(last)) .. "\n" .. error_log())
  end

  it("run.sh started it: /healthz answers, the pid file names a live master", function()
    if not need() then return end
    assert.equal(204, (http("GET", url .. "/healthz")))
    local pid = assert(io.open(prefix .. "/nginx.pid")):read("*a"):match("%d+")
    assert.equal("alive\n", (sh("kill -0 " .. pid .. " && echo alive")))
  end)

  it("POST /runs?file=NAME&param.K=V -> GET /runs/ID until done -> GET /runs/ID/logs -> "
    .. "GET /objects/<its result.json>", function()
    if not need() then return end
    local st, body = http("POST", url .. "/runs?file=matrix&param.greeting=Salut")
    assert.equal(201, st, body .. "\n" .. error_log())
    local ans = cjson.decode(body)
    assert.is_string(ans.run_id)
    assert.equal(2, #ans.jobs)
    for _, j in ipairs(ans.jobs) do assert.is_string(j.job_id) end

    local done = wait_done(ans.run_id)
    assert.equal("SUCCESS", done.status, cjson.encode(done))
    for _, j in ipairs(done.jobs) do assert.equal("SUCCEEDED", j.status) end
    local doubled = {}
    for _, rec in pairs(done.result.jobs.count.strategies) do
      doubled[#doubled + 1] = rec.stages.double.outputs.doubled
    end
    table.sort(doubled)
    assert.same({ 2, 4 }, doubled)
    assert.equal("Salut", done.result.params.greeting)

    local lst, text = http("GET", url .. "/runs/" .. ans.run_id .. "/logs")
    assert.equal(200, lst, text)
    assert.matches("Salut from strategy 1", text, 1, true)
    assert.matches("Salut from strategy 2", text, 1, true)

    -- the jobs' result.json files, through the signed S3 proxy
    local found = 0
    for _, k in ipairs(p:keys()) do
      if k:match("result%.json$") then
        local want = assert(p:get(k))
        local ost, got = http("GET", url .. "/objects/" .. s3mod.encode_key(k))
        assert.equal(200, ost, k)
        assert.equal(want, got, k)
        found = found + 1
      end
    end
    assert.is_true(found >= 2, "result.json objects found: " .. found)
  end)

  it("POST /runs with a YAML body; bad input is a 400, an unknown run a 404", function()
    if not need() then return end
    local st, body = http("POST", url .. "/runs", ONE)
    assert.equal(201, st, body .. "\n" .. error_log())
    local ans = cjson.decode(body)
    assert.equal(1, #ans.jobs)
    local done = wait_done(ans.run_id)
    assert.equal("SUCCESS", done.status, cjson.encode(done))
    local _, text = http("GET", url .. "/runs/" .. ans.run_id .. "/logs")
    assert.matches("body workflow ran", text, 1, true)
    -- the run is journaled (LUABATCH_HOME, through the thread pool) and listed; GET / is the dashboard
    local lst, ltext = http("GET", url .. "/runs?limit=1")
    assert.equal(200, lst, ltext)
    local list = cjson.decode(ltext)
    assert.equal(ans.run_id, list[1].run_id, ltext)
    assert.equal("SUCCESS", list[1].status)
    assert.falsy(error_log():find("journal I/O in the worker", 1, true), error_log())
    local dst, page, resp = http("GET", url .. "/")
    assert.equal(200, dst)
    assert.matches("text/html", resp.headers["content-type"])
    assert.matches("<title>luabatch runs</title>", page, 1, true)

    st, body = http("POST", url .. "/runs", "jobs: [unclosed")
    assert.equal(400, st, body)
    st = http("POST", url .. "/runs?file=..%2Fetc%2Fpasswd")
    assert.equal(400, st)
    st = http("GET", url .. "/runs/no-such-run")
    assert.equal(404, st)
  end)

  it("GET /objects/KEY streams an object (Range too); a missing one is a clear 404", function()
    if not need() then return end
    local key = "ngx example/ünïcödé.txt"
    p:put(key, "0123456789abcdef")
    local st, got = http("GET", url .. "/objects/" .. s3mod.encode_key(key))
    assert.equal(200, st, got .. "\n" .. error_log())
    assert.equal("0123456789abcdef", got)
    local resp = assert(core.http_request({ url = url .. "/objects/" .. s3mod.encode_key(key),
      headers = { { "Range", "bytes=10-15" } } }))
    assert.equal(206, resp.status)
    assert.equal("abcdef", resp.body)
    st, got = http("GET", url .. "/objects/missing/key")
    assert.equal(404, st)
    assert.equal("NoSuchKey", cjson.decode(got).error)
  end)
end)
