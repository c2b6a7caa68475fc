-- The AWS Batch run end to end, through the real `luabatch` executable:
-- Ceph RGW for S3, the project's Batch emulator for Batch + CloudWatch Logs
-- + the ECS credentials endpoint (tests/helpers/aws_peers.lua).  Every case
-- is a subprocess run of build/<lua>/bin/luabatch, as a user runs it; the
-- Batch jobs are `luabatch task` processes the emulator starts.
--
--   (a) the seed's example (examples/aws-batch/aws-batch-example.yml: data
--       processing, a matrix over three datasets, a model fit) gives the same
--       final context on aws_batch as locally
--   (b) a failing job reports exit code, reason and its last log lines
--   (c) SIGINT terminates the remote job (TerminateJob, reason recorded)
--   (d) kill -9 of the client, then `luabatch attach` completes the run
--       with no job submitted twice
--   (e) throttling (429) and 500s are ridden out
--   (f) no credential in S3, job definitions, job details, logs, journal
--   (g) a second run registers no second job definition
--   (h) cleanup empties the run's prefix and nothing else
require "luabatch.runner"   -- the runners' types and with: schemas, for the loader
local core = require "luabatch.core"
local cjson = require "cjson.safe"
local aws_peers = require "helpers.aws_peers"
local servers = require "helpers.servers"

local ROOT = os.getenv("PWD")
local EXAMPLE = ROOT .. "/examples/aws-batch/aws-batch-example.yml"
local FIXTURES = ROOT .. "/tests/fixtures/aws-batch"
local POLICY = FIXTURES .. "/policy_fast.lua"

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

-- The context without what legitimately differs between two runs: the
-- `info` blocks (timings; the aws_batch runner's job ids).
local function strip(v)
  if type(v) ~= "table" then return v end
  local out = {}
  for k, x in pairs(v) do
    if k ~= "info" then out[k] = strip(x) end
  end
  return out
end

local function new_run_id()
  return os.date("!%Y%m%d-%H%M%S") .. "-" .. core.hex(core.random_bytes(4))
end

-- Ids of the emulator's jobs now (to tell a run's new jobs apart).
local function job_ids(emu)
  local ids = {}
  for _, j in ipairs(emu:jobs()) do ids[j.jobId] = j end
  return ids
end

local function new_jobs(emu, before)
  local out = {}
  for _, j in ipairs(emu:jobs()) do
    if not before[j.jobId] then out[#out + 1] = j end
  end
  return out
end

-- The first of the run's new jobs RUNNING (with its process when
-- with_pid) within 30 s; fails the spec otherwise.
local function wait_running(emu, before, with_pid)
  local running = aws_peers.wait_until(function()
    for _, j in ipairs(new_jobs(emu, before)) do
      if j.status == "RUNNING" and (type(j.pid) == "number" or not with_pid) then return j end
    end
  end, 30)
  assert.is_table(running, "no job RUNNING within 30 s")
  return running
end

local function alive(pid)
  local ok = os.execute("kill -0 " .. pid .. " 2>/dev/null")
  return ok == true or ok == 0
end

-- The client here is the `luabatch` executable, which embeds Lua 5.4: this
-- spec runs once, in the Lua 5.4 integration step.  Under LuaJIT the same
-- provider code is exercised in-process by runner_aws_batch_spec.lua.
if rawget(_G, "jit") and not os.getenv("LUABATCH_TEST_EXE") then
  describe("AWS Batch end to end #integration", function()
    pending("runs through the Lua 5.4 executable in integration-lua5.4 (the executable embeds Lua 5.4)")
  end)
  return
end

describe("AWS Batch end to end #integration", function()
  local p            -- the peers
  local dir          -- workflow files
  local outputs = {} -- every client stdout/stderr (searched for credentials in (f))

  local function write(name, text)
    local path = dir .. "/" .. name
    local f = assert(io.open(path, "w"))
    f:write(text)
    f:close()
    return path
  end

  local function luabatch(args, extra_env, opts)
    local out, err, code = p:run(args, extra_env, opts)
    outputs[#outputs + 1] = out
    outputs[#outputs + 1] = err
    return out, err, code
  end

  -- luabatch run FILE ARGS... --json; on_batch: true = --runs-on aws_batch,
  -- "file" = as the file says (both with the fast policy), false = --runs-on local
  local function run_wf(file, on_batch, args, extra_env)
    local argv = { "run", file, "--json" }
    if on_batch == "file" then
      for _, a in ipairs({ "--policy", POLICY }) do argv[#argv + 1] = a end
    elseif on_batch then
      for _, a in ipairs({ "--runs-on", "aws_batch", "--policy", POLICY }) do argv[#argv + 1] = a end
    else
      for _, a in ipairs({ "--runs-on", "local" }) do argv[#argv + 1] = a end
    end
    for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
    local out, err, code = luabatch(argv, extra_env)
    return cjson.decode(out), err, code, out
  end

  setup(function()
    p = assert(aws_peers.start({ delay = 0.05 }))
    dir = p.dir .. "/wf"
    assert(os.execute("mkdir -p '" .. dir .. "'"))
    p:put("in/input.csv", read(FIXTURES .. "/input.csv"))
    p:put("in/train.csv", read(FIXTURES .. "/train.csv"))
  end)

  teardown(function()
    if p then p:stop() end
    servers.stop_all()
  end)

  local function example_params()
    return { "--param", "data_source=" .. p:url("in/input.csv"),
             "--param", "train_source=" .. p:url("in/train.csv"),
             "--param", "output_path=" .. p:url("out") }
  end

  it("(a) the seed's three jobs give the same context on aws_batch as locally #container", function()
    local lctx, lerr, lcode, lout = run_wf(EXAMPLE, false, example_params())
    assert.equal(0, lcode, lerr .. lout)
    assert.equal("SUCCESS", lctx.jobs["data-processing"].status)
    assert.equal(40, lctx.jobs["data-processing"].stages.process.outputs.rows_processed)
    assert.equal(5, lctx.jobs["data-processing"].stages.process.outputs.categories_processed)
    local n = 0
    for _, s in pairs(lctx.jobs["parallel-processing"].strategies) do
      n = n + 1
      assert.equal("SUCCESS", s.status)
    end
    assert.equal(3, n)
    local train = lctx.jobs["ml-training"].stages.train.outputs
    assert.is_true(train.r2 > 0.99 and train.mse < 0.05, cjson.encode(train))
    local local_keys = p:keys("out/")
    assert.equal(8, #local_keys, table.concat(local_keys, " "))

    -- the same on Batch, from an empty output prefix
    p.s3:delete_prefix(p.bucket, "out/")
    assert.same({}, p:keys("out/"))
    p.emu:reset_calls()
    local before = job_ids(p.emu)
    local bctx, berr, bcode, bout = run_wf(EXAMPLE, "file", example_params())   -- runs-on: aws_batch
    assert.equal(0, bcode, berr .. bout)
    assert.same(strip(lctx), strip(bctx))
    -- really on Batch: one job per strategy (1 + 1 + 3), each SUCCEEDED
    local jobs = new_jobs(p.emu, before)
    assert.equal(5, #jobs)
    for _, j in ipairs(jobs) do assert.equal("SUCCEEDED", j.status) end
    assert.equal(5, p.emu:calls().counts.SubmitJob)
    -- max-parallel 2 held on Batch: the third dataset's job was submitted
    -- only after one of the first two had stopped
    local ids = {}
    for _, j in ipairs(jobs) do ids[#ids + 1] = j.jobId end
    local par = {}
    for _, d in ipairs(assert(p.batch:describe_jobs(ids)).jobs) do
      if d.jobName:find("parallel-processing", 1, true) then par[#par + 1] = d end
    end
    assert.equal(3, #par)
    table.sort(par, function(x, y) return x.createdAt < y.createdAt end)
    assert.is_true(par[3].createdAt >= math.min(par[1].stoppedAt, par[2].stoppedAt), cjson.encode(par))
    -- and the jobs wrote the outputs
    assert.same(local_keys, p:keys("out/"))
    local body = assert(p:get("out/processed_data.csv"))
    assert.equal(lctx.jobs["data-processing"].stages.process.outputs.processed_csv, body)
  end)

  -- A job whose container dies (the task process killed: no result.json),
  -- after two stages printed lines.
  local FAIL_YML = [=[
type: Workflow
name: e2e-fail
jobs:
  doomed:
    runs-on: {type: aws_batch, with: {job_queue_arn: "${AWS_BATCH_JOB_QUEUE_ARN}", s3_bucket: "${AWS_S3_BUCKET}", keep_on_failure: true}}
    stages:
      - name: Warm up
        bash: |
          echo "loading the widget catalogue"
          echo "catalogue has 42 widgets"
      - name: Crash the task
        run: |
          import os
          os.kill(os.getppid(), 9)
]=]

  -- what a failure report must hold: the exit code (an integer), the
  -- reason Batch gave, the job's last log lines
  local function check_report(where, text)
    assert.truthy(text:find("exit code 137", 1, true), where .. " lacks the exit code: " .. text)
    assert.falsy(text:find("137.0", 1, true), where .. " shows the exit code as a float: " .. text)
    assert.truthy(text:find("Essential container in task exited", 1, true), where .. " lacks the reason: " .. text)
    assert.truthy(text:find("catalogue has 42 widgets", 1, true), where .. " lacks the last log lines: " .. text)
  end

  it("(b) a failing job reports its exit code, reason and last log lines in --json errors", function()
    local ctx, err, code, out = run_wf(write("fail.yml", FAIL_YML), true)
    assert.equal(1, code, err .. out)
    assert.is_table(ctx, out)
    local job = ctx.jobs.doomed
    assert.equal("FAILED", job.status)
    check_report("--json errors", cjson.encode(job.errors) or "")
  end)

  it("(b) ... and on stderr (not a terminal, no --json)", function()
    local out, err, code = luabatch({ "run", write("fail.yml", FAIL_YML), "--runs-on", "aws_batch",
      "--policy", POLICY })
    assert.equal(1, code, err .. out)
    check_report("stderr", err)
  end)

  it("(b) a failed bash stage on Batch: its exit code and stderr on the client, its outputs in --json #container", function()
    local f = write("boom.yml", [=[
type: Workflow
name: e2e-boom
jobs:
  fan:
    runs-on: {type: aws_batch, with: {job_queue_arn: "${AWS_BATCH_JOB_QUEUE_ARN}", s3_bucket: "${AWS_S3_BUCKET}"}}
    strategy: {max-parallel: 2, matrix: {region: [eu, us]}}
    stages:
      - {id: boom, name: Boom, bash: "echo about to fail in ${{ matrix.region }}; echo no-capacity-${{ matrix.region }} >&2; exit 3"}
]=])
    local out, err, code = luabatch({ "run", f, "--runs-on", "aws_batch", "--policy", POLICY })
    assert.equal(1, code, err .. out)
    assert.truthy(err:find("FAILED job fan[region=eu], stage 'boom': exit code 3\n  stderr:\n    no-capacity-eu\n"
      .. "  stdout:\n    about to fail in eu\n", 1, true), err)
    assert.truthy(err:find("FAILED job fan[region=us], stage 'boom': exit code 3: no-capacity-us", 1, true), err)
    local ctx = run_wf(f, true)
    local n = 0
    for _, r in pairs(ctx.jobs.fan.strategies) do
      n = n + 1
      assert.equal(3, r.stages.boom.outputs.return_code)
      assert.truthy(tostring(r.stages.boom.outputs.stderr):find("^no%-capacity%-"))
    end
    assert.equal(2, n)
  end)

  it("(c) SIGINT stops the client within seconds and terminates its Batch job #container", function()
    local f = write("long.yml", [=[
type: Workflow
name: e2e-long
jobs:
  long:
    runs-on: {type: aws_batch, with: {job_queue_arn: "${AWS_BATCH_JOB_QUEUE_ARN}", s3_bucket: "${AWS_S3_BUCKET}"}}
    stages:
      - {name: Nap, bash: "echo napping; sleep 60"}
]=])
    local before = job_ids(p.emu)
    local proc = p:spawn({ "run", f, "--runs-on", "aws_batch", "--policy", POLICY })
    local running = wait_running(p.emu, before, true)
    core.sleep(0.5)       -- the task is inside `sleep 60` now
    local t0 = core.monotime()
    -- one SIGINT, as Ctrl-C on a terminal sends (proc:kill signals the
    -- process group and the process: two, and a second Ctrl-C means "stop now")
    assert(os.execute("kill -INT " .. proc:pid()))
    local r = aws_peers.wait(proc, 15)
    local dt = core.monotime() - t0
    assert.is_table(r, "the client did not exit within 15 s of SIGINT")
    outputs[#outputs + 1] = r.stderr
    assert.is_true(dt < 14, ("client took %.1f s to exit (the task sleeps 60 s)"):format(dt))
    assert.are_not.equal(0, r.exit)
    -- the job: FAILED with the terminate reason, its process gone
    local job = aws_peers.wait_until(function()
      local ans = assert(p.batch:describe_jobs({ running.jobId }))
      local j = ans.jobs[1]
      return j.status == "FAILED" and j or nil
    end, 10)
    assert.is_table(job, "the Batch job is not FAILED: " .. cjson.encode(p.batch:describe_jobs({ running.jobId }))
      .. "\nclient exit " .. tostring(r.exit) .. ", stderr: " .. tostring(r.stderr)
      .. "\nemulator calls: " .. cjson.encode(p.emu:calls().counts))
    assert.truthy(job.statusReason:find("cancelled by user", 1, true), job.statusReason)
    assert.is_false(alive(running.pid), "the job's process is still alive")
    -- the client recorded what it did
    local terminated = false
    for _, run in ipairs(require("luabatch.journal").list(p.home)) do
      local j = assert(require("luabatch.journal").open(run.run_id, { home = p.home }))
      for _, ev in ipairs(j:events()) do
        if ev.ev == "terminate" and ev.batch_job_id == running.jobId then terminated = ev end
      end
    end
    assert.is_table(terminated, "no terminate event in the journal")
    assert.truthy(tostring(terminated.reason):find("cancelled by user", 1, true))
  end)

  it("(c) `luabatch cancel RUN` of a live run: nothing queued or downstream is submitted, the run ends CANCEL "
    .. "#container",
    function()
    -- three strategies at max-parallel 1, then a needs: job: the case that
    -- went on submitting after a cancel from another process
    local f = write("cancel-live.yml", [=[
type: Workflow
name: e2e-cancel-live
jobs:
  fan:
    runs-on: {type: aws_batch, with: {job_queue_arn: "${AWS_BATCH_JOB_QUEUE_ARN}", s3_bucket: "${AWS_S3_BUCKET}"}}
    strategy: {max-parallel: 1, matrix: {n: [1, 2, 3]}}
    stages:
      - {name: Nap, bash: "echo nap-${{ matrix.n }}; sleep 30"}
  after:
    needs: [fan]
    trigger-rule: all_done
    runs-on: {type: aws_batch, with: {job_queue_arn: "${AWS_BATCH_JOB_QUEUE_ARN}", s3_bucket: "${AWS_S3_BUCKET}"}}
    stages:
      - {name: Tail, bash: "echo after"}
]=])
    p.emu:reset_calls()
    local before = job_ids(p.emu)
    local run_id = new_run_id()
    local proc = p:spawn({ "run", f, "--runs-on", "aws_batch", "--policy", POLICY, "--run-id", run_id, "--json" })
    local running = wait_running(p.emu, before, true)
    local out, err, code = luabatch({ "cancel", run_id })
    assert.equal(0, code, err .. out)
    assert.truthy(out:find("terminated", 1, true), out)
    local r = aws_peers.wait(proc, 20)
    assert.is_table(r, "the client did not end within 20 s of the cancel")
    outputs[#outputs + 1] = r.stderr
    assert.equal(1, r.exit, r.stderr)
    local ctx = cjson.decode(r.stdout)
    assert.is_table(ctx, r.stdout .. r.stderr)
    assert.equal("CANCEL", ctx.status, r.stdout)
    assert.equal("CANCEL", ctx.jobs.fan.status)
    assert.is_nil(ctx.jobs.after, "the downstream job has a record")
    -- one SubmitJob in all: the running strategy's; nothing after the cancel
    assert.equal(1, p.emu:calls().counts.SubmitJob, cjson.encode(p.emu:calls().counts))
    local jobs = new_jobs(p.emu, before)
    assert.equal(1, #jobs)
    -- (a container takes a moment to stop after its task's CANCEL upload)
    local ended = aws_peers.wait_until(function()
      local js = new_jobs(p.emu, before)
      return js[1].status == "FAILED" and js[1] or nil
    end, 15)
    assert.is_table(ended, "the Batch job is not FAILED: " .. cjson.encode(new_jobs(p.emu, before)))
    assert.is_false(alive(running.pid), "the job's process is still alive")
    -- the journal says who asked and why; the run ended CANCEL
    local j = assert(require("luabatch.journal").open(run_id, { home = p.home }))
    local st = j:state()
    assert.is_table(st.cancel, "no cancel event in the journal")
    assert.truthy(tostring(st.cancel.reason):find("cancelled by user", 1, true))
    assert.equal("CANCEL", st.ended and st.ended.status)
    assert.same({ ok = 0, failed = 0, skipped = 0, cancelled = 1 }, st.ended.jobs)   -- what `luabatch runs` shows
  end)

  it("(i) --resume RUN after a fix submits only the failed strategy and the job downstream", function()
    local flag = dir .. "/resume-fixed"
    local f = write("resume.yml", ([=[
type: Workflow
name: e2e-resume
jobs:
  fan:
    runs-on: {type: aws_batch, with: {job_queue_arn: "${AWS_BATCH_JOB_QUEUE_ARN}", s3_bucket: "${AWS_S3_BUCKET}"}}
    strategy: {max-parallel: 3, matrix: {n: [1, 2, 3]}}
    stages:
      - {name: Work, id: w, bash: 'echo "fan-${{ matrix.n }}"; [ "${{ matrix.n }}" != 2 ] || [ -e %s ]'}
  after:
    needs: [fan]
    runs-on: {type: aws_batch, with: {job_queue_arn: "${AWS_BATCH_JOB_QUEUE_ARN}", s3_bucket: "${AWS_S3_BUCKET}"}}
    stages:
      - {name: Tail, id: t, bash: "echo after"}
]=]):format(flag))
    os.remove(flag)
    local run_id = new_run_id()
    local out, err, code = luabatch({ "run", f, "--policy", POLICY, "--run-id", run_id, "--json" })
    assert.equal(1, code, err)
    local ctx = cjson.decode(out)
    assert.equal("FAILED", ctx.jobs.fan.status, out)
    assert.is_nil(ctx.jobs.after)
    -- the fix (the task processes run on this host), then the resume
    io.open(flag, "w"):close()
    p.emu:reset_calls()
    local before = job_ids(p.emu)
    out, err, code = luabatch({ "run", f, "--resume", run_id, "--json" })
    os.remove(flag)
    assert.equal(0, code, err)
    ctx = cjson.decode(out)
    assert.equal("SUCCESS", ctx.status, out)
    local n = 0
    for _, srec in pairs(ctx.jobs.fan.strategies) do
      n = n + 1
      assert.equal("SUCCESS", srec.status)
    end
    assert.equal(3, n)
    assert.equal("after", ctx.jobs.after.stages.t.outputs.stdout)
    -- two submissions: fan[n=2] and after (the reused strategies are not run again)
    local jobs = new_jobs(p.emu, before)
    assert.equal(2, p.emu:calls().counts.SubmitJob, cjson.encode(p.emu:calls().counts))
    assert.equal(2, #jobs)
    -- the new run says where it came from
    local new_id = err:match("run (%S+) %(resumes " .. run_id:gsub("%p", "%%%0") .. "%)")
    assert.is_string(new_id, err)
    local st = assert(require("luabatch.journal").open(new_id, { home = p.home })):state()
    assert.equal(run_id, st.run.resumed_from)
  end)

  it("(f) a signature error that echoes the canonical request never shows the session token", function()
    local f = write("badsig.yml", [=[
type: Workflow
name: e2e-badsig
jobs:
  one:
    runs-on: {type: aws_batch, with: {job_queue_arn: "${AWS_BATCH_JOB_QUEUE_ARN}", s3_bucket: "${AWS_S3_BUCKET}"}}
    stages:
      - {name: Hi, bash: "echo hi"}
]=])
    local wrong = "WRONGSECRETwrongsecretWRONGSECRET0123456"
    for _, json_out in ipairs({ true, false }) do
      local argv = { "run", f, "--runs-on", "aws_batch", "--policy", POLICY }
      if json_out then argv[#argv + 1] = "--json" end
      local out, err, code = luabatch(argv, { AWS_SECRET_ACCESS_KEY = wrong, AWS_MAX_ATTEMPTS = "1" })
      assert.equal(1, code, err)
      local text = out .. err
      -- the server's answer is there (the canonical request it expected) ...
      assert.truthy(text:find("Canonical String", 1, true), text)
      assert.truthy(text:lower():find("x-amz-security-token:<redacted>", 1, true), text)
      -- ... without the token or the secret
      assert.is_nil(text:find(p.token, 1, true), text)
      assert.is_nil(text:find(wrong, 1, true), text)
    end
  end)

  it("(j) an array job (with.array): one SubmitJob, each child its strategy, the local context #container",
    function()
    local f = write("array.yml", [=[
type: Workflow
name: e2e-array
jobs:
  arr:
    runs-on: {type: aws_batch, with: {job_queue_arn: "${AWS_BATCH_JOB_QUEUE_ARN}", s3_bucket: "${AWS_S3_BUCKET}", array: true}}
    strategy: {max-parallel: 3, matrix: {n: [1, 2, 3]}}
    stages:
      - {name: Item, id: item, bash: 'echo "item-${{ matrix.n }}"'}
      - {name: Square, id: sq, run: 'sq = ${{ matrix.n }} * ${{ matrix.n }}'}
]=])
    local lctx, lerr, lcode = run_wf(f, false)
    assert.equal(0, lcode, lerr)
    p.emu:reset_calls()
    local bctx, berr, bcode, bout = run_wf(f, "file")
    assert.equal(0, bcode, berr .. bout)
    assert.same(strip(lctx), strip(bctx))
    assert.equal(1, p.emu:calls().counts.SubmitJob, cjson.encode(p.emu:calls().counts))
  end)

  it("(d) kill -9 of the client, then `luabatch attach` completes the run, no job submitted twice #container", function()
    local f = write("attach.yml", [=[
type: Workflow
name: e2e-attach
jobs:
  first:
    runs-on: {type: aws_batch, with: {job_queue_arn: "${AWS_BATCH_JOB_QUEUE_ARN}", s3_bucket: "${AWS_S3_BUCKET}"}}
    stages:
      - {name: Slow, id: slow, bash: "sleep 3; echo first-done"}
  second:
    needs: [first]
    runs-on: {type: aws_batch, with: {job_queue_arn: "${AWS_BATCH_JOB_QUEUE_ARN}", s3_bucket: "${AWS_S3_BUCKET}"}}
    stages:
      - {name: Quick, id: quick, bash: "echo second-after-${{ jobs.first.stages.slow.outputs.stdout }}"}
]=])
    local lctx, lerr, lcode = run_wf(f, false)
    assert.equal(0, lcode, lerr)
    p.emu:reset_calls()
    local before = job_ids(p.emu)
    local run_id = new_run_id()
    local proc = p:spawn({ "run", f, "--runs-on", "aws_batch", "--policy", POLICY, "--run-id", run_id })
    local running = wait_running(p.emu, before)
    proc:kill("KILL")
    local r = aws_peers.wait(proc, 10)
    assert.is_table(r)
    assert.equal(9, r.signal)
    assert.equal(1, p.emu:calls().counts.SubmitJob)

    local out, err, code = luabatch({ "attach", run_id, "--json" })
    assert.equal(0, code, err .. out)
    local actx = cjson.decode(out)
    assert.is_table(actx, out)
    assert.same(strip(lctx).jobs, strip(actx).jobs)
    -- two jobs, each submitted once
    assert.equal(2, p.emu:calls().counts.SubmitJob)
    local jobs = new_jobs(p.emu, before)
    assert.equal(2, #jobs)
    for _, j in ipairs(jobs) do assert.equal("SUCCEEDED", j.status) end
  end)

  it("(d) attach does not re-run a local job that already succeeded #container", function()
    local marks = p.dir .. "/local-runs.txt"
    os.remove(marks)
    local f = write("attach-local.yml", ([=[
type: Workflow
name: e2e-attach-local
jobs:
  prep:
    stages:
      - {name: Mark, id: mark, bash: "echo ran >> '%s'; echo prepared"}
  remote:
    needs: [prep]
    runs-on: {type: aws_batch, with: {job_queue_arn: "${AWS_BATCH_JOB_QUEUE_ARN}", s3_bucket: "${AWS_S3_BUCKET}"}}
    stages:
      - {name: Slow, id: slow, bash: "sleep 3; echo got-${{ jobs.prep.stages.mark.outputs.stdout }}"}
]=]):format(marks))
    local before = job_ids(p.emu)
    local run_id = new_run_id()
    local proc = p:spawn({ "run", f, "--policy", POLICY, "--run-id", run_id })
    local running = wait_running(p.emu, before)
    proc:kill("KILL")
    aws_peers.wait(proc, 10)
    local out, err, code = luabatch({ "attach", run_id, "--json" })
    assert.equal(0, code, err .. out)
    local actx = cjson.decode(out)
    assert.equal("got-prepared", actx.jobs.remote.stages.slow.outputs.stdout)
    assert.equal("prepared", actx.jobs.prep.stages.mark.outputs.stdout)
    -- the local job ran once: before the kill, not again on attach
    assert.equal("ran\n", read(marks))
    assert.equal(1, #new_jobs(p.emu, before))
  end)

  it("(d) a SubmitJob whose answer was lost is found again, not submitted twice", function()
    local f = write("lost.yml", [=[
type: Workflow
name: e2e-lost
jobs:
  once:
    runs-on: {type: aws_batch, with: {job_queue_arn: "${AWS_BATCH_JOB_QUEUE_ARN}", s3_bucket: "${AWS_S3_BUCKET}"}}
    stages:
      - {name: Hi, id: hi, echo: "only once"}
]=])
    p.emu:reset_calls()
    local before = job_ids(p.emu)
    -- the emulator creates the job, then closes the connection unanswered
    p.emu:fault({ operation = "SubmitJob", action = "drop", times = 1 })
    local ctx, err, code, out = run_wf(f, true)
    p.emu:clear_faults()
    assert.equal(0, code, err .. out)
    assert.equal("SUCCESS", ctx.jobs.once.status)
    local jobs = new_jobs(p.emu, before)
    assert.equal(1, #jobs, "jobs created: " .. cjson.encode(jobs))
    assert.equal("SUCCEEDED", jobs[1].status)
  end)

  it("(e) throttling bursts (429) and 500s are ridden out", function()
    local f = write("faults.yml", [=[
type: Workflow
name: e2e-faults
jobs:
  sturdy:
    strategy:
      matrix: {n: [1, 2, 3]}
    runs-on: {type: aws_batch, with: {job_queue_arn: "${AWS_BATCH_JOB_QUEUE_ARN}", s3_bucket: "${AWS_S3_BUCKET}"}}
    stages:
      - {name: Square, id: sq, run: "sq = ${{ matrix.n }} * ${{ matrix.n }}"}
]=])
    local lctx, lerr, lcode = run_wf(f, false)
    assert.equal(0, lcode, lerr)
    p.emu:reset_calls()
    p.emu:fault({ operation = "SubmitJob", action = "throttle", times = 2 })
    p.emu:fault({ operation = "SubmitJob", action = "error", status = 500, times = 1, after = 1 })
    p.emu:fault({ operation = "DescribeJobs", action = "throttle", times = 4 })
    p.emu:fault({ operation = "DescribeJobs", action = "error", status = 500, times = 2, after = 2 })
    p.emu:fault({ operation = "DescribeJobDefinitions", action = "error", status = 500, times = 1 })
    local before = job_ids(p.emu)
    local ctx, err, code, out = run_wf(f, true)
    p.emu:clear_faults()
    assert.equal(0, code, err .. out)
    assert.same(strip(lctx), strip(ctx))
    local calls = p.emu:calls()
    assert.equal(3, #new_jobs(p.emu, before))              -- no duplicate from a retried SubmitJob
    assert.is_true((calls.faulted.SubmitJob or 0) >= 3, cjson.encode(calls))
    assert.is_true((calls.faulted.DescribeJobs or 0) >= 6, cjson.encode(calls))
    assert.is_true(calls.counts.SubmitJob >= 3 + 3, cjson.encode(calls))     -- the retries
  end)

  it("(g) the same workflow twice registers no second job definition", function()
    local f = write("twice.yml", [=[
type: Workflow
name: e2e-twice
jobs:
  hello:
    runs-on: {type: aws_batch, with: {job_queue_arn: "${AWS_BATCH_JOB_QUEUE_ARN}", s3_bucket: "${AWS_S3_BUCKET}", memory: 1536}}
    stages:
      - {name: Hi, id: hi, echo: "hello"}
]=])
    local function defs()
      local n, names = 0, {}
      for d, msg in p.batch:job_definitions({}) do
        assert(d, msg)
        n = n + 1
        names[d.jobDefinitionName] = (names[d.jobDefinitionName] or 0) + 1
      end
      return n, names
    end
    p.emu:reset_calls()
    local _, err, code = run_wf(f, true)
    assert.equal(0, code, err)
    local first = p.emu:calls().counts.RegisterJobDefinition or 0
    local n1 = defs()
    p.emu:reset_calls()
    _, err, code = run_wf(f, true)
    assert.equal(0, code, err)
    assert.is_nil(p.emu:calls().counts.RegisterJobDefinition)
    local n2, names = defs()
    assert.equal(n1, n2)
    assert.equal(1, first)    -- memory 1536: a definition no other case uses
    -- across the whole spec (many runs): every job used one of at most two
    -- definitions (the default resources, and this case's 1536 MiB)
    local ids, used = {}, {}
    for _, j in ipairs(p.emu:jobs()) do ids[#ids + 1] = j.jobId end
    for _, d in ipairs(assert(p.batch:describe_jobs_all(ids)).jobs) do used[d.jobDefinition] = true end
    local n = 0
    for _ in pairs(used) do n = n + 1 end
    assert.is_true(n >= 1 and n <= 2, "job definitions used: " .. cjson.encode(used))
    assert.is_true(n2 <= 2, "job definitions: " .. cjson.encode(names))
  end)

  it("(h) cleanup empties the run's prefix and leaves everything else", function()
    local f = write("clean.yml", [=[
type: Workflow
name: e2e-clean
jobs:
  tidy:
    strategy:
      matrix: {k: [a, b]}
    runs-on: {type: aws_batch, with: {job_queue_arn: "${AWS_BATCH_JOB_QUEUE_ARN}", s3_bucket: "${AWS_S3_BUCKET}"}}
    stages:
      - {name: Echo, id: e, echo: "${{ matrix.k }}"}
]=])
    local run_id = new_run_id()
    local prefix = "luabatch/runs/" .. run_id
    local outside = { prefix .. "x/keep.txt", prefix .. ".keep", "luabatch/runs/keep.txt",
                      "luabatch/runs/other-run/bundle.json", "luabatch/keep.txt" }
    for _, k in ipairs(outside) do p:put(k, "keep me") end
    local uploads = 0
    local ctx, err, code, out = run_wf(f, true, { "--run-id", run_id })
    assert.equal(0, code, err .. out)
    assert.equal("SUCCESS", ctx.jobs.tidy.status)
    -- the run used the prefix (its journal says so), and left it empty
    local j = assert(require("luabatch.journal").open(run_id, { home = p.home }))
    for _, ev in ipairs(j:events()) do
      if ev.ev == "upload" then
        uploads = uploads + 1
        assert.equal(prefix .. "/", ev.key:sub(1, #prefix + 1))
      end
    end
    assert.is_true(uploads >= 1, "no upload event in the journal")
    assert.same({}, p:keys(prefix .. "/"))
    for _, k in ipairs(outside) do
      assert.equal("keep me", (p:get(k)), k .. " was deleted")
    end
  end)

  it("(f) no credential anywhere: S3 objects, job definitions, job details, logs, journal, output", function()
    local needles = { secret = p.secret, token = p.token }
    local hits = {}
    local function search(where, text)
      if type(text) ~= "string" then text = cjson.encode(text) or tostring(text) end
      for name, needle in pairs(needles) do
        if text:find(needle, 1, true) then hits[#hits + 1] = name .. " in " .. where end
      end
    end
    search("a probe", "xx" .. p.secret .. "yy" .. p.token)   -- the search finds a leak
    assert.equal(2, #hits)
    hits = {}
    local searched = { s3 = 0, defs = 0, jobs = 0, events = 0, files = 0 }
    -- every object in the bucket (the failed run of (b) kept its objects)
    local keys = p:keys()
    assert.is_true(#keys > 0)
    local kept = false
    for _, k in ipairs(keys) do
      if k:find("^luabatch/runs/%d+%-%d+%-%x+/doomed/bundle%.json$") then kept = true end
      search("s3://" .. p.bucket .. "/" .. k, k)
      search("s3://" .. p.bucket .. "/" .. k, assert(p:get(k)))
      searched.s3 = searched.s3 + 1
    end
    assert.is_true(kept, "no bundle kept by the failed run: " .. table.concat(keys, " "))
    -- every job definition
    for d, msg in p.batch:job_definitions({}) do
      assert(d, msg)
      search("job definition " .. d.jobDefinitionArn, d)
      searched.defs = searched.defs + 1
    end
    -- every job's details (environment, parameters, command)
    local ids = {}
    for _, j in ipairs(p.emu:jobs()) do ids[#ids + 1] = j.jobId end
    local groups = { ["/aws/batch/job"] = true }
    local ans = assert(p.batch:describe_jobs_all(ids))
    for _, j in ipairs(ans.jobs) do
      search("job " .. j.jobId, j)
      searched.jobs = searched.jobs + 1
      local lc = j.container and j.container.logConfiguration
      local g = lc and lc.options and lc.options["awslogs-group"]
      if g then groups[g] = true end
    end
    -- every log event of every stream
    for g in pairs(groups) do
      for s, msg in p.logs:log_streams(g) do
        assert(s, msg)
        for e, emsg in p.logs:events(g, s.logStreamName, { start_from_head = true }) do
          assert(e, emsg)
          search("log " .. g .. "/" .. s.logStreamName, e.message)
          searched.events = searched.events + 1
        end
      end
    end
    -- every file under LUABATCH_HOME
    local pf = io.popen("find '" .. p.home .. "' -type f")
    for path in pf:lines() do
      search(path, read(path))
      searched.files = searched.files + 1
    end
    pf:close()
    -- what the client printed
    for i, s in ipairs(outputs) do search("client output #" .. i, s) end
    assert.same({}, hits)
    assert.is_true(searched.defs > 0 and searched.jobs > 0 and searched.events > 0 and searched.files > 0,
      cjson.encode(searched))
  end)
end)
