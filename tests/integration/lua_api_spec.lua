-- The Lua API (`require("luabatch").workflow`, `.runs`): load, run,
-- journal, list, get, resume -- in-process under Lua 5.4 and LuaJIT -- and
-- the README's orchestration example (examples/lua/per_file.lua) through
-- the executable against Ceph RGW.
local luabatch = require "luabatch"
local json = require "luabatch.json"
local servers = require "helpers.servers"

local ROOT = os.getenv("PWD")

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local tmp = os.tmpname()
os.remove(tmp)
os.execute("mkdir -p " .. q(tmp))
local home = tmp .. "/home"

local function write(name, text)
  local f = assert(io.open(tmp .. "/" .. name, "w"))
  f:write(text)
  f:close()
  return tmp .. "/" .. name
end

local WF = [=[
type: Workflow
name: api-demo
params:
  n: {type: int, default: 2}
  flag: {type: str, default: ""}
jobs:
  fan:
    strategy: {matrix: {i: [1, 2, 3]}, max-parallel: 3}
    stages:
      - name: Work
        id: w
        lua: |
          if matrix.i == 2 and params.flag ~= "fixed" then error("two fails") end
          return { v = matrix.i * params.n }
  sum:
    needs: [fan]
    stages:
      - name: Sum
        id: s
        lua: |
          local t = 0
          for _, r in pairs(jobs.fan.strategies) do t = t + r.stages.w.outputs.v end
          return { total = t }
]=]

describe("the Lua API #integration", function()
  local workflow, runs = luabatch.workflow, luabatch.runs

  it("loads a workflow from a path or from text; bad input is nil, FILE:LINE:COL message, ELOAD", function()
    local path = write("api.yml", WF)
    local wf = assert(workflow.load(path))
    assert.equal("api-demo", wf.name)
    assert.same({ "fan", "sum" }, wf.jobs)
    assert.same({ "n", "flag" }, wf.param_order)
    assert.equal("int", wf.params.n.type)
    assert.equal("api-demo", assert(workflow.load(WF, { name = "inline.yml" })).name)
    local none, msg, code = workflow.load("type: Workflow\njobs:\n  a:\n    stages: [{name: x, nope: 1}]\n",
      { name = "bad.yml" })
    assert.is_nil(none)
    assert.equal("ELOAD", code)
    assert.truthy(msg:find("^bad%.yml:%d+:%d+:"), msg)
    none, msg, code = workflow.load(tmp .. "/missing.yml")
    assert.is_nil(none)
    assert.equal("ELOAD", code)
    -- the runner every job will run on sets the bounds: max-parallel 50 is Batch's, not local's
    local wide = "jobs:\n  a:\n    strategy: {max-parallel: 50, matrix: {n: [1, 2]}}\n    stages: [{name: s, echo: x}]\n"
    none, msg = workflow.load(wide, { name = "wide.yml" })
    assert.is_nil(none)
    assert.truthy(msg:find("max-parallel", 1, true), msg)
    assert.is_table(workflow.load(wide, { name = "wide.yml", runs_on = "aws_batch" }))
  end)

  it("runs: the context `run --json` prints, progress events, a journal; bad params before anything runs", function()
    local wf = assert(workflow.load(write("api.yml", WF)))
    local events = {}
    local ctx, info = wf:run({ params = { n = 10, flag = "fixed" }, home = home,
      on_event = function(ev, i) events[#events + 1] = ev .. ":" .. tostring(i.job) end })
    assert.is_table(ctx, info)
    assert.equal("SUCCESS", ctx.status)
    assert.equal(60, ctx.jobs.sum.stages.s.outputs.total)
    assert.equal(10, ctx.params.n)
    assert.truthy(table.concat(events, " "):find("job-start:fan", 1, true))
    assert.truthy(table.concat(events, " "):find("job:sum", 1, true))
    assert.matches("^%d+%-%d+%-%x+$", info.run_id)
    -- journaled: listed and readable
    local r = assert(runs.get(info.run_id, { home = home }))
    assert.equal("SUCCESS", r.status)
    assert.equal(60, r.jobs.sum.stages.s.outputs.total)
    assert.equal(info.run_id, runs.list({ home = home })[1].run_id)
    -- bad input: nil, message, code; nothing journaled
    local before = #runs.list({ home = home })
    local none, msg, code = wf:run({ params = { nosuch = 1 }, home = home })
    assert.is_nil(none)
    assert.equal("EPARAM", code)
    assert.truthy(msg:find("--param nosuch: the workflow has no such param", 1, true), msg)
    none, msg, code = wf:run({ job = "nope", home = home })
    assert.equal("EJOB", code)
    none, msg, code = wf:run({ runs_on = "aws_batch", home = home })
    assert.equal("EWITH", code)
    assert.truthy(msg:find("with.job_queue_arn is required", 1, true), msg)
    assert.equal(before, #runs.list({ home = home }))
    -- a local run's journal is not fsync'd per event; one with Batch jobs is
    local journal = require "luabatch.journal"
    local open, seen = journal.open, {}
    journal.open = function(id, o) seen[#seen + 1] = o and o.nosync; return open(id, o) end
    local ok = pcall(function()
      assert(wf:run({ params = { flag = "fixed" }, home = home }))
      wf:run({ runs_on = "aws_batch", with = { job_queue_arn = "q", s3_bucket = "b", region_name = "us-east-1",
        endpoint_url = "http://127.0.0.1:9" }, home = home, params = { flag = "fixed" } })
    end)
    journal.open = open
    assert.is_true(ok)
    assert.same({ true, false }, { seen[1], seen[2] })
    before = #runs.list({ home = home })
    -- journal = false: nothing recorded
    assert(wf:run({ params = { flag = "fixed" }, home = home, journal = false }))
    assert.equal(before, #runs.list({ home = home }))
  end)

  it("resumes an ended run after a fix: only what failed runs again", function()
    local wf = assert(workflow.load(write("api.yml", WF)))
    local ctx, info = wf:run({ home = home })
    assert.equal("FAILED", ctx.status)
    local ran = {}
    ctx, info = runs.resume(info.run_id, { home = home, params = { flag = "fixed" },
      on_event = function(ev, i) if ev == "strategy" and i.state == "started" then ran[#ran + 1] = i.values.i end end })
    assert.is_table(ctx, info)
    -- a param changed: every fingerprint moved, all three run
    assert.equal("SUCCESS", ctx.status)
    assert.same({ 1, 2, 3 }, ran)
    -- the cause fixed outside the workflow (here: a file the stage reads): the failed strategy only
    local flag = tmp .. "/fixed-flag"
    local path = write("api2.yml", WF:gsub('params.flag ~= "fixed"', ("params.flag ~= 'fixed' and not io.open(%q)"):format(flag)))
    local c1, i1 = assert(workflow.load(path)):run({ home = home })
    assert.equal("FAILED", c1.status)
    io.open(flag, "w"):close()
    ran = {}
    local c2, i2 = workflow.resume("last", { home = home, file = path,
      on_event = function(ev, i) if ev == "strategy" and i.state == "started" then ran[#ran + 1] = i.values.i end end })
    assert.is_table(c2, i2)
    assert.equal("SUCCESS", c2.status)
    assert.same({ 2 }, ran)
    assert.equal(i1.run_id, i2.resumed_from)
    assert.equal(i1.run_id, assert(runs.get(i2.run_id, { home = home })).resumed_from)
    local none, _, code = runs.resume("20990101-000000-00000000", { home = home })
    assert.is_nil(none)
    assert.equal("ERESUME", code)
  end)

  describe("the orchestration example, through the executable, against RGW", function()
    if rawget(_G, "jit") then
      pending("runs the Lua 5.4 executable in integration-lua5.4")
      return
    end
    local endpoint, key, secret

    lazy_setup(function()
      endpoint, key, secret = servers.rgw()
      assert(endpoint, key)
    end)

    lazy_teardown(function() servers.stop_all() end)     -- the RGW this block started, by PID

    it("runs examples/lua/per_file.lua: one run per object, results collected", function()
      local s3 = require("luabatch.s3").new({
        config = require("luabatch.config").new({ env = {}, region = "us-east-1" }),
        credentials = require("luabatch.credentials").new({ access_key = key, secret_key = secret, env = {} }),
        endpoint = endpoint, region = "us-east-1" })
      local bucket = "lb-api-" .. require("luabatch.core").hex(require("luabatch.core").random_bytes(4))
      assert(s3:create_bucket(bucket))
      assert(s3:put_object(bucket, "in/a.txt", "1\n2\n"))
      assert(s3:put_object(bucket, "in/b.txt", "1\n2\n3\n"))
      assert(s3:put_object(bucket, "in/c.txt", ""))
      local env = { "LUABATCH_HOME=" .. q(tmp .. "/home-example"), "AWS_ACCESS_KEY_ID=" .. q(key),
        "AWS_SECRET_ACCESS_KEY=" .. q(secret), "AWS_ENDPOINT_URL_S3=" .. q(endpoint), "AWS_REGION=us-east-1",
        "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null", "AWS_EC2_METADATA_DISABLED=true" }
      local p = io.popen("cd " .. q(tmp) .. " && env " .. table.concat(env, " ") .. " " .. q(ROOT .. "/build/lua5.4/bin/luabatch")
        .. " " .. q(ROOT .. "/examples/lua/per_file.lua") .. " s3://" .. bucket .. "/in/ 2>&1; echo rc=$?")
      local out = p:read("a")
      p:close()
      assert.truthy(out:find("rc=0", 1, true), out)
      local summary = json.decode(out:match("\n(%b{})\n"))
      assert.equal(3, summary.files)
      assert.equal(0, summary.failed)
      local lines = {}
      for _, r in ipairs(summary.results) do lines[r.input:match("[^/]+$")] = r.lines end
      assert.same({ ["a.txt"] = 2, ["b.txt"] = 3, ["c.txt"] = 0 }, lines)
      s3:delete_prefix(bucket, "")
      s3:delete_bucket(bucket)
    end)
  end)
end)
