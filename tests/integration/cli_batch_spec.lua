-- The run-inspecting commands (status, logs, cancel, cleanup, attach's
-- checks) against the Batch + Logs emulator and Ceph RGW: real jobs are
-- submitted with luabatch.batch, a journal is written with their ids (as
-- the provider does), and the CLI modules run in-process with the
-- environment a user would have (credentials from AWS_* variables; region
-- and endpoints from the journal's "config" events).  The built executable
-- is run once per command family to prove the wiring.
local core = require "luabatch.core"
local config = require "luabatch.config"
local credentials = require "luabatch.credentials"
local batchmod = require "luabatch.batch"
local s3mod = require "luabatch.s3"
local json = require "luabatch.json"
local journal = require "luabatch.journal"
local emulator = require "helpers.batch_emulator"
local servers = require "helpers.servers"
local lfs = require "lfs"

local status_cli = require "luabatch.cli.status"
local logs_cli = require "luabatch.cli.logs"
local cancel_cli = require "luabatch.cli.cancel"
local cleanup_cli = require "luabatch.cli.cleanup"
local attach_cli = require "luabatch.cli.attach"
local failures = require "luabatch.cli.failures"
local reason = require "luabatch.runner.aws_batch.reason"

local function sh_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
local function pat(s) return (s:gsub("%p", "%%%0")) end
-- logs lines start with their event's time: check it is there, then drop it
local TS = "%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%dZ "
local function untimed(out)
  local n_lines, n_ts = select(2, out:gsub("\n", "")), select(2, out:gsub("%f[^\n%z]" .. TS, ""))
  assert.equal(n_lines, n_ts, out)
  return (out:gsub("%f[^\n%z]" .. TS, ""))
end

describe("luabatch status/logs/cancel/cleanup against the emulator and RGW #integration", function()
  local emu, rgw, key, secret
  local batch, s3, getenv, home, QUEUE, def_arn
  local tag = core.hex(core.random_bytes(4))
  local bucket = "lb-cli-" .. tag
  local REGION = "us-east-1"

  -- run a CLI module in-process: code, stdout, stderr
  local function cli(mod, args, extra)
    local o, e = {}, {}
    local env = { stdout = function(s) o[#o + 1] = s end, stderr = function(s) e[#e + 1] = s end,
                  getenv = getenv }
    for k, v in pairs(extra or {}) do env[k] = v end
    local code = mod.run(args, env)
    return code, table.concat(o), table.concat(e)
  end

  local function wait_job(id, pred, secs)
    local deadline = core.monotime() + (secs or 30)
    local last
    repeat
      local ans = assert(batch:describe_jobs({ id }))
      last = ans.jobs[1]
      if last and pred(last) then return last end
      core.sleep(0.1)
    until core.monotime() > deadline
    error("job " .. id .. " never reached the expected state (last: " .. tostring(last and last.status) .. ")")
  end
  local function terminal(j) return batchmod.TERMINAL[j.status] end
  local function running(j) return j.status == "RUNNING" end

  local function submit(name, script)
    local ans = assert(batch:submit_job({ jobName = name, jobQueue = QUEUE, jobDefinition = def_arn,
      containerOverrides = { command = { "sh", "-c", script } } }))
    return ans.jobId
  end

  -- A journal as the provider writes it: run, config per job, submit/submitted per key.
  local function make_run(jobs, opts)
    opts = opts or {}
    local run_id = opts.run_id or journal.new_run_id()
    local j = assert(journal.open(run_id, { home = home, create = true }))
    assert(j:append({ ev = "run", run_id = run_id, file = "/wf/x.yml", workflow = "wf-cli", params = {} }))
    for _, job in ipairs(jobs) do
      local job_id = job.key:match("^([^/]+)")
      assert(j:append({ ev = "config", job_id = job_id, queue = QUEUE, bucket = bucket,
        prefix = opts.prefix or ("luabatch/runs/" .. run_id), region = REGION,
        endpoints = { batch = emu.endpoint, s3 = rgw, logs = emu.endpoint }, log_group = "/aws/batch/job",
        platform = "EC2" }))
      assert(j:append({ ev = "submit", key = job.key, job_id = job_id, strategy_id = "EMPTY", attempt = 0,
        job_name = job.name }))
      if job.id then
        assert(j:append({ ev = "submitted", key = job.key, batch_job_id = job.id, job_name = job.name }))
        assert(j:append({ ev = "state", key = job.key, batch_job_id = job.id, status = "RUNNABLE" }))
      end
    end
    return run_id, j
  end

  local function put(k) assert(s3:put_object(bucket, k, "x")) end
  local function exists(k) return s3:head_object(bucket, k) ~= nil end

  lazy_setup(function()
    local err
    rgw, key, secret = servers.rgw()
    assert(rgw, key)
    -- one key pair for both peers: the CLI takes credentials from the default chain
    emu, err = emulator.start({ delay = 0.03, kill_grace = 0.3, access_key = key, secret_key = secret })
    assert(emu, err)
    QUEUE = emu.queue or "lb-queue"
    home = os.tmpname()
    os.remove(home)
    local envt = { AWS_ACCESS_KEY_ID = key, AWS_SECRET_ACCESS_KEY = secret, AWS_REGION = REGION,
                   AWS_CONFIG_FILE = "/nonexistent/config", AWS_SHARED_CREDENTIALS_FILE = "/nonexistent/creds",
                   HOME = home, LUABATCH_HOME = home }
    getenv = function(n) return envt[n] end
    local creds = credentials.static({ access_key = key, secret_key = secret })
    batch = batchmod.new({ config = config.new({ env = {}, region = REGION, endpoints = { batch = emu.endpoint } }),
      credentials = creds })
    s3 = s3mod.new({ config = config.new({ env = {}, region = REGION }), credentials = creds,
      endpoint = rgw, region = REGION })
    assert(s3:create_bucket(bucket))
    local d = assert(batch:register_job_definition({ jobDefinitionName = "lb-cli-" .. tag, type = "container",
      containerProperties = { image = "debian:bookworm-slim", command = { "sh", "-c", "echo default" },
        resourceRequirements = { { type = "VCPU", value = "1" }, { type = "MEMORY", value = "256" } } } }))
    def_arn = d.jobDefinitionArn
  end)

  lazy_teardown(function()
    if emu then emu.stop() end
    if s3 then pcall(function() s3:delete_prefix(bucket, "") s3:delete_bucket(bucket) end) end
    servers.stop_all()
    if home and home:match("^/tmp/") then os.execute("rm -rf " .. sh_quote(home)) end
  end)

  describe("with three jobs: running, succeeded, failed", function()
    local run_id, j, ida, idb, idc

    lazy_setup(function()
      ida = submit("cli-a-" .. tag, "echo hello-a; sleep 30")
      idb = submit("cli-b-" .. tag, "echo hello-b; echo second-b")
      idc = submit("cli-c-" .. tag, "echo oops >&2; exit 3")
      run_id, j = make_run({ { key = "a/EMPTY/0", name = "cli-a-" .. tag, id = ida },
                             { key = "b/EMPTY/0", name = "cli-b-" .. tag, id = idb },
                             { key = "c/EMPTY/0", name = "cli-c-" .. tag, id = idc } })
      wait_job(idb, terminal)
      wait_job(idc, terminal)
      wait_job(ida, running)
    end)

    it("status refreshes the unfinished jobs with one DescribeJobs and prints the table", function()
      emu:reset_calls()
      local code, out, err = cli(status_cli, { run_id })
      assert.equal(0, code, err)
      assert.equal("", err)
      assert.equal(1, emu:calls().counts.DescribeJobs)
      assert.truthy(out:find("run " .. run_id .. "  workflow wf-cli", 1, true), out)
      assert.truthy(out:find("JOB%s+BATCH ID%s+STATUS%s+EXIT%s+STARTED%s+DURATION%s+REASON\n"), out)
      local rows = {}
      for line in out:gmatch("[^\n]+") do
        local k = line:match("^([abc])%s")
        if k then rows[k] = line end
      end
      assert.truthy(rows.a:find("^a%s+" .. pat(ida) .. "%s+RUNNING%s+%-%s+%d%d:%d%d:%d%d%s+%S+$"), rows.a)
      -- a success: no reason (Batch's "Essential container in task exited" is noise there)
      assert.truthy(rows.b:find("^b%s+" .. pat(idb) .. "%s+SUCCEEDED%s+0%s+%d%d:%d%d:%d%d%s+%S+$"), rows.b)
      assert.truthy(rows.c:find("^c%s+" .. pat(idc) .. "%s+FAILED%s+3%s+%S+%s+%S+%s+Essential container in task exited$"),
        rows.c)
    end)

    it("status --json gives the same states; the journal is only read", function()
      local before = #j:events()
      local code, out = cli(status_cli, { run_id, "--json" })
      assert.equal(0, code)
      local v = assert(json.decode(out))
      assert.equal(run_id, v.run_id)
      assert.equal("wf-cli", v.workflow)
      local by = {}
      for _, x in ipairs(v.jobs) do by[x.key] = x end
      assert.equal("RUNNING", by["a/EMPTY/0"].status)
      assert.equal("SUCCEEDED", by["b/EMPTY/0"].status)
      assert.equal(0, by["b/EMPTY/0"].exit_code)
      assert.equal("FAILED", by["c/EMPTY/0"].status)
      assert.equal(3, by["c/EMPTY/0"].exit_code)
      assert.equal(idc, by["c/EMPTY/0"].batch_job_id)
      assert.equal(before, #j:events())
    end)

    it("status of an unknown run says so and exits 2", function()
      local code, out, err = cli(status_cli, { "20200101-000000-00000000" })
      assert.equal(2, code)
      assert.equal("", out)
      assert.equal("luabatch status: no run '20200101-000000-00000000' in " .. home .. "\n", err)
      -- no RUN_ID: the list of runs (it was an error)
      local lout
      code, lout = cli(status_cli, {})
      assert.equal(0, code)
      assert.truthy(lout:find("^RUN%s+WORKFLOW") or lout:find("^no runs under"), lout)
      code = cli(status_cli, { "a", "b" })
      assert.equal(2, code)
      local c2, usage = cli(status_cli, { "-h" })
      assert.equal(0, c2)
      assert.truthy(usage:find("usage: luabatch status", 1, true))
    end)

    it("logs prints every job's stream, each line prefixed with its key", function()
      local code, out, err = cli(logs_cli, { run_id })
      assert.equal(0, code, err)
      out = untimed(out)
      assert.truthy(out:find("[a/EMPTY/0] hello-a\n", 1, true), out)
      assert.truthy(out:find("[b/EMPTY/0] hello-b\n[b/EMPTY/0] second-b\n", 1, true), out)
      assert.truthy(out:find("[c/EMPTY/0] oops\n", 1, true), out)
    end)

    it("logs --job selects one job (by key, workflow job id or Batch id), without prefixes", function()
      for _, sel in ipairs({ "b/EMPTY/0", "b", idb }) do
        local code, out, err = cli(logs_cli, { run_id, "--job", sel })
        assert.equal(0, code, err)
        assert.equal("hello-b\nsecond-b\n", untimed(out))
      end
      local code, _, err = cli(logs_cli, { run_id, "--job", "nope" })
      assert.equal(2, code)
      assert.truthy(err:find("no job 'nope'", 1, true))
    end)

    it("logs --since is GetLogEvents' startTime: a later time shows nothing, an hour back everything", function()
      local code, out, err = cli(logs_cli, { run_id, "--job", "b", "--since", "1h" })
      assert.equal(0, code, err)
      assert.equal("hello-b\nsecond-b\n", untimed(out))
      -- the event times, read back: the same day as now
      assert.truthy(out:find("^" .. pat(os.date("!%Y-%m-%d")) .. "T"), out)
      code, out, err = cli(logs_cli, { run_id, "--job", "b", "--since", os.date("!%Y-%m-%dT%H:%M:%SZ", os.time() + 3600) })
      assert.equal(0, code, err)
      assert.equal("", out)
      code, out, err = cli(logs_cli, { run_id, "--since", "last tuesday" })
      assert.equal(2, code)
      assert.equal("", out)
      assert.truthy(err:find("got 'last tuesday'", 1, true), err)
    end)

    it("cancel terminates the unfinished job only, with the reason, and journals it", function()
      local code, out, err = cli(cancel_cli, { run_id, "--reason", "stopped by the cli spec" })
      assert.equal(0, code, err)
      assert.truthy(out:find("terminated a/EMPTY/0 (" .. ida, 1, true), out)
      assert.is_nil(out:find("b/EMPTY/0", 1, true))
      assert.is_nil(out:find("c/EMPTY/0", 1, true))
      local d = wait_job(ida, terminal, 20)
      assert.equal("FAILED", d.status)
      assert.equal("stopped by the cli spec", d.statusReason)
      local st = j:state()
      assert.is_true(st.jobs["a/EMPTY/0"].terminated)
      assert.equal("stopped by the cli spec", st.jobs["a/EMPTY/0"].terminate_reason)
      assert.is_nil(st.jobs["b/EMPTY/0"].terminated)
      -- nothing left: a second cancel has nothing to do
      code, out = cli(cancel_cli, { run_id })
      assert.equal(0, code)
      assert.truthy(out:find("no unfinished Batch job", 1, true))
    end)
  end)

  it("status asks for at most 100 ids per DescribeJobs call", function()
    local jobs = {}
    for i = 1, 150 do
      jobs[i] = { key = "m/" .. i .. "/0", name = "cli-m-" .. i, id = string.format("00000000-0000-0000-0000-%012d", i) }
    end
    local run_id = make_run(jobs)
    emu:reset_calls()
    local code, out, err = cli(status_cli, { run_id, "--json" })
    assert.equal(0, code, err)
    local calls = emu:calls()
    assert.equal(2, calls.counts.DescribeJobs)
    assert.equal(150, calls.describe_ids)
    assert.equal(150, #assert(json.decode(out)).jobs)
  end)

  it("logs of an array job prints each child's stream as [key:i]", function()
    local ans = assert(batch:submit_job({ jobName = "cli-arr-" .. tag, jobQueue = QUEUE, jobDefinition = def_arn,
      arrayProperties = { size = 2 },
      containerOverrides = { command = { "sh", "-c", "echo child-$AWS_BATCH_JOB_ARRAY_INDEX" } } }))
    wait_job(ans.jobId, terminal)
    local run_id = make_run({ { key = "arr/@array/0", name = "cli-arr-" .. tag, id = ans.jobId } })
    local code, out, err = cli(logs_cli, { run_id })
    assert.equal(0, code, err)
    assert.equal("[arr/@array/0:0] child-0\n[arr/@array/0:1] child-1\n", untimed(out))
  end)

  it("logs -f follows a running job until it ends", function()
    local id = submit("cli-f-" .. tag, "echo one; sleep 1; echo two")
    local run_id = make_run({ { key = "f/EMPTY/0", name = "cli-f-" .. tag, id = id } })
    local t0 = core.monotime()
    local code, out, err = cli(logs_cli, { run_id, "-f" }, { interval = 0.2 })
    assert.equal(0, code, err)
    assert.equal("one\ntwo\n", untimed(out))
    assert.is_true(core.monotime() - t0 >= 0.9)
    assert.equal("SUCCEEDED", assert(batch:describe_jobs({ id })).jobs[1].status)
  end)

  it("cancel finds a job whose SubmitJob answer was lost (by name) and terminates it", function()
    local name = "cli-lost-" .. tag
    local id = submit(name, "sleep 30")
    local run_id, j = make_run({ { key = "l/EMPTY/0", name = name } })  -- no "submitted" event
    wait_job(id, running)
    local code, out, err = cli(cancel_cli, { run_id })
    assert.equal(0, code, err)
    assert.truthy(out:find("terminated l/EMPTY/0 (" .. id, 1, true), out)
    assert.equal("FAILED", wait_job(id, terminal, 20).status)
    assert.equal(id, j:state().jobs["l/EMPTY/0"].batch_job_id)
  end)

  describe("cleanup", function()
    local function seed(run_id)
      local p = "luabatch/runs/" .. run_id
      put(p .. "/a/bundle.json")
      put(p .. "/a/EMPTY/result.json")
      put(p .. "/a/EMPTY/output.log")
    end

    it("deletes exactly the run's prefix and keeps the journal, marked cleaned (--dry-run first)", function()
      local run_id, j = make_run({ { key = "a/EMPTY/0", name = "n" } })
      seed(run_id)
      local sibling = "luabatch/runs/" .. run_id .. "0/keep.json"   -- shares the prefix's characters
      local other = journal.new_run_id()
      put(sibling)
      put("luabatch/runs/" .. other .. "/a/bundle.json")
      put("outside/keep.txt")

      -- not ended yet: refused
      local code, out, err = cli(cleanup_cli, { run_id })
      assert.equal(1, code)
      assert.truthy(err:find("has not ended", 1, true))
      assert.is_true(exists("luabatch/runs/" .. run_id .. "/a/bundle.json"))
      assert(j:append({ ev = "end", status = "SUCCESS" }))

      code, out, err = cli(cleanup_cli, { run_id, "--dry-run" })
      assert.equal(0, code, err)
      assert.equal(("would delete 3 objects under s3://%s/luabatch/runs/%s/\nwould keep journal %s (marked cleaned)\n")
        :format(bucket, run_id, home .. "/runs/" .. run_id), out)
      assert.is_true(exists("luabatch/runs/" .. run_id .. "/a/EMPTY/result.json"))
      assert.truthy(journal.open(run_id, { home = home }))

      code, out, err = cli(cleanup_cli, { run_id })
      assert.equal(0, code, err)
      assert.equal(("deleted 3 objects under s3://%s/luabatch/runs/%s/\nkept journal %s (marked cleaned; --purge "
        .. "removes it)\n"):format(bucket, run_id, home .. "/runs/" .. run_id), out)
      assert.is_false(exists("luabatch/runs/" .. run_id .. "/a/bundle.json"))
      assert.is_false(exists("luabatch/runs/" .. run_id .. "/a/EMPTY/result.json"))
      assert.is_true(exists(sibling))
      assert.is_true(exists("luabatch/runs/" .. other .. "/a/bundle.json"))
      assert.is_true(exists("outside/keep.txt"))
      -- the journal stays and says so: runs and status show the run, cleaned
      local ev = j:state().cleanups
      assert.equal("run", ev[#ev].scope)
      assert.equal(3, ev[#ev].deleted)
      local _, rout = cli(require("luabatch.cli.runs"), { "--limit", "0" })
      assert.truthy(rout:find(pat(run_id) .. "%s+wf%-cli%s+.-SUCCESS%s+%S+%s+%d%d%d%d%-%d%d%-%d%dT%S+Z\n"), rout)
      local _, sout = cli(status_cli, { run_id })
      assert.truthy(sout:find("ended SUCCESS  cleaned %d%d%d%d%-"), sout)
      -- --purge: the journal goes too
      code, out, err = cli(cleanup_cli, { run_id, "--purge" })
      assert.equal(0, code, err)
      assert.truthy(out:find("deleted 0 objects under", 1, true), out)
      assert.truthy(out:find("removed journal " .. home .. "/runs/" .. run_id .. "\n", 1, true), out)
      assert.is_nil(lfs.attributes(home .. "/runs/" .. run_id))
      code, _, err = cli(cleanup_cli, { run_id })
      assert.equal(2, code)
      assert.truthy(err:find("no run '" .. run_id .. "'", 1, true))
    end)

    it("terminates the run's Batch jobs still running (--force on a run that has not ended)", function()
      local name = "cli-left-" .. tag
      local id = submit(name, "sleep 30")
      local run_id, j = make_run({ { key = "l/EMPTY/0", name = name, id = id } })
      seed(run_id)
      wait_job(id, running)
      local code, out, err = cli(cleanup_cli, { run_id, "--force", "--dry-run" })
      assert.equal(0, code, err)
      assert.truthy(out:find("would terminate l/EMPTY/0 (" .. id .. ", RUNNING)\n", 1, true), out)
      assert.equal("RUNNING", assert(batch:describe_jobs({ id })).jobs[1].status)
      code, out, err = cli(cleanup_cli, { run_id, "--force" })
      assert.equal(0, code, err)
      assert.truthy(out:find("terminated l/EMPTY/0 (" .. id .. ", was RUNNING)\n", 1, true), out)
      local d = wait_job(id, terminal, 20)
      assert.equal("FAILED", d.status)
      assert.equal("luabatch: cleanup of run " .. run_id, d.statusReason)
      assert.is_true(j:state().jobs["l/EMPTY/0"].terminated)
      assert.is_false(exists("luabatch/runs/" .. run_id .. "/a/bundle.json"))
    end)

    it("refuses a recorded prefix that is not the run's own", function()
      local run_id, j = make_run({ { key = "a/EMPTY/0", name = "n" } }, { prefix = "luabatch/runs" })
      assert(j:append({ ev = "end", status = "SUCCESS" }))
      seed(run_id)
      local code, out, err = cli(cleanup_cli, { run_id })
      assert.equal(1, code)
      assert.equal("", out)
      assert.truthy(err:find("refusing to delete s3://" .. bucket .. "/luabatch/runs/", 1, true), err)
      assert.is_true(exists("luabatch/runs/" .. run_id .. "/a/bundle.json"))
      assert.truthy(journal.open(run_id, { home = home }))
    end)

    it("--older-than cleans the runs whose journal is older, and only those", function()
      local old_id, jo = make_run({ { key = "a/EMPTY/0", name = "n" } })
      assert(jo:append({ ev = "end", status = "FAILED" }))
      local dead_id, jd = make_run({ { key = "a/EMPTY/0", name = "n" } })   -- never ended, untouched
      local new_id, jn = make_run({ { key = "a/EMPTY/0", name = "n" } })
      assert(jn:append({ ev = "end", status = "SUCCESS" }))
      for _, id in ipairs({ old_id, dead_id, new_id }) do seed(id) end
      local now = os.time()
      assert(lfs.touch(jo:path(), now - 3 * 86400, now - 3 * 86400))
      assert(lfs.touch(jd:path(), now - 2 * 86400 - 60, now - 2 * 86400 - 60))
      assert(lfs.touch(jn:path(), now - 3600, now - 3600))

      local code, out, err = cli(cleanup_cli, { "--older-than", "2d", "--dry-run" })
      assert.equal(0, code, err)
      assert.truthy(out:find("would delete 3 objects under s3://" .. bucket .. "/luabatch/runs/" .. old_id .. "/", 1, true))
      assert.truthy(out:find("would delete 3 objects under s3://" .. bucket .. "/luabatch/runs/" .. dead_id .. "/", 1, true))
      assert.is_nil(out:find(new_id, 1, true))

      code, out, err = cli(cleanup_cli, { "--older-than", "2d" })
      assert.equal(0, code, err)
      assert.is_false(exists("luabatch/runs/" .. old_id .. "/a/bundle.json"))
      assert.is_false(exists("luabatch/runs/" .. dead_id .. "/a/EMPTY/output.log"))
      assert.is_true(exists("luabatch/runs/" .. new_id .. "/a/bundle.json"))
      assert.truthy(out:find("kept journal " .. home .. "/runs/" .. old_id, 1, true))
      assert.equal("run", jo:state().cleanups[1].scope)
      assert.equal("run", jd:state().cleanups[1].scope)
      assert.equal(0, #jn:state().cleanups)

      -- cleaned runs are not cleaned again; --purge removes their journals
      for _, jj in ipairs({ jo, jd }) do assert(lfs.touch(jj:path(), now - 3 * 86400, now - 3 * 86400)) end
      code, out = cli(cleanup_cli, { "--older-than", "2d" })
      assert.equal(0, code)
      assert.equal("no run older than 2d in " .. home .. "\n", out)
      code, out, err = cli(cleanup_cli, { "--older-than", "2d", "--purge" })
      assert.equal(0, code, err)
      assert.is_nil(journal.open(old_id, { home = home }))
      assert.is_nil(journal.open(dead_id, { home = home }))
      assert.truthy(journal.open(new_id, { home = home }))
      assert.truthy(out:find("removed journal " .. home .. "/runs/" .. old_id, 1, true))

      code, out = cli(cleanup_cli, { "--older-than", "30m" })
      assert.equal(0, code)
      assert.is_false(exists("luabatch/runs/" .. new_id .. "/a/bundle.json"))

      code, _, err = cli(cleanup_cli, { "--older-than", "7x" })
      assert.equal(2, code)
      assert.truthy(err:find("Nd, Nh or Nm", 1, true))
      code = cli(cleanup_cli, { "r", "--older-than", "7d" })
      assert.equal(2, code)
    end)
  end)

  describe("failure causes as Batch reports them", function()
    -- the report of a failed strategy from the job's description, as the
    -- Batch runner builds it (reason.facts, reason.error, reason.info)
    local function report(d, run_id, key)
      local f = reason.facts(d)
      local lines = reason.log_tail(nil, f.log_group, f.log_stream, 0)
      local rec = { status = "FAILED", matrix = { region = "eu" }, stages = {},
        errors = reason.error(f, lines, { batch_job_id = d.jobId }), info = { aws_batch = reason.info(f, d.jobId, key) } }
      local ctx = { jobs = { fan = { status = "FAILED", strategies = { s1 = rec } } } }
      return failures.report(ctx, { job_order = { "fan" } }, { run_id = run_id }), f
    end

    it("a job over its MEMORY is killed: OutOfMemoryError, exit 137; the report names it and its log", function()
      local ans = assert(batch:submit_job({ jobName = "cli-oom-" .. tag, jobQueue = QUEUE, jobDefinition = def_arn,
        containerOverrides = { resourceRequirements = { { type = "MEMORY", value = "16" } },
          command = { "sh", "-c", "echo allocating; x=$(head -c 100000000 /dev/zero | tr '\\0' a); sleep 20; echo kept" } } }))
      local d = wait_job(ans.jobId, terminal, 30)
      assert.equal("FAILED", d.status)
      assert.equal("Essential container in task exited", d.statusReason)
      assert.equal("OutOfMemoryError: Container killed due to memory usage", d.container.reason)
      assert.equal(137, d.container.exitCode)
      assert.equal("OutOfMemoryError: Container killed due to memory usage", d.attempts[1].container.reason)
      local run_id = make_run({ { key = "fan/s1/0", name = "cli-oom-" .. tag, id = ans.jobId } })
      local text, f = report(d, run_id, "fan/s1/0")
      assert.equal("oom", f.kind)
      assert.truthy(text:find("^FAILED job fan%[region=eu%], AWS Batch job " .. pat(ans.jobId)
        .. ": OutOfMemoryError: Container killed due to memory usage\n"), text)
      local hint = ("\n  full log: luabatch logs %s --job fan/s1/0 (CloudWatch /aws/batch/job %s)\n")
        :format(run_id, d.container.logStreamName)
      assert.truthy(text:find(hint, 1, true), text)
      -- the command the report names prints that log
      local code, out, err = cli(logs_cli, { run_id, "--job", "fan/s1/0" })
      assert.equal(0, code, err)
      assert.equal("allocating\n", untimed(out))
    end)

    it("a job past its timeout: 'Job attempt duration exceeded timeout' is the cause", function()
      emu:config({ timeout_scale = 0.02 })      -- 60 s -> 1.2 s
      finally(function() emu:config({ timeout_scale = 1 }) end)
      local ans = assert(batch:submit_job({ jobName = "cli-tmo-" .. tag, jobQueue = QUEUE, jobDefinition = def_arn,
        timeout = { attemptDurationSeconds = 60 }, containerOverrides = { command = { "sh", "-c", "echo slow; sleep 30" } } }))
      local d = wait_job(ans.jobId, terminal, 30)
      assert.equal("FAILED", d.status)
      assert.equal("Job attempt duration exceeded timeout", d.statusReason)
      local text, f = report(d, "R", "fan/s1/0")
      assert.equal("timeout", f.kind)
      assert.truthy(text:find("^FAILED job fan%[region=eu%], AWS Batch job " .. pat(ans.jobId)
        .. ": Job attempt duration exceeded timeout\n"), text)
    end)

    it("a job killed by SIGKILL without a memory reason: exit 137, 'killed (SIGKILL, often out of memory)'", function()
      local id = submit("cli-k9-" .. tag, "echo bye; kill -9 $$")
      local d = wait_job(id, terminal, 30)
      assert.equal(137, d.container.exitCode)
      assert.is_nil(d.container.reason)
      local text = report(d, "R", "fan/s1/0")
      assert.truthy(text:find("^FAILED job fan%[region=eu%], AWS Batch job " .. pat(id)
        .. ": exit code 137, killed %(SIGKILL, often out of memory%)\n"), text)
    end)
  end)

  it("attach checks the run before handing over to run --resume", function()
    local code, _, err = cli(attach_cli, { "20200101-000000-00000000" })
    assert.equal(2, code)
    assert.equal("luabatch attach: no run '20200101-000000-00000000' in " .. home .. "\n", err)
  end)

  describe("the executable", function()
    -- the executable is built for Lua 5.4 only (make); it is its own process
    local exe = "build/lua5.4/bin/luabatch"
    local have = io.open(exe, "rb")
    if have then have:close() end

    local function run_exe(args, more)
      local envs = { "LUABATCH_HOME=" .. home, "HOME=" .. home, "AWS_ACCESS_KEY_ID=" .. key,
        "AWS_SECRET_ACCESS_KEY=" .. secret, "AWS_REGION=" .. REGION,
        "AWS_CONFIG_FILE=/nonexistent/config", "AWS_SHARED_CREDENTIALS_FILE=/nonexistent/creds",
        "AWS_ENDPOINT_URL_BATCH=" .. emu.endpoint, "AWS_ENDPOINT_URL_LOGS=" .. emu.endpoint,
        "AWS_ENDPOINT_URL_S3=" .. rgw }
      for _, e in ipairs(more or {}) do envs[#envs + 1] = e end
      local q = {}
      for i, e in ipairs(envs) do q[i] = sh_quote(e) end
      local a = {}
      for i, x in ipairs(args) do a[i] = sh_quote(x) end
      local p = io.popen("env -i PATH=/usr/bin:/bin " .. table.concat(q, " ") .. " " .. exe .. " "
        .. table.concat(a, " ") .. " 2>&1; echo \"rc=$?\"")
      local out = p:read("a")
      p:close()
      local rc = tonumber(out:match("rc=(%d+)\n$"))
      return rc, out:gsub("rc=%d+\n$", "")
    end

    local it_exe = have and it or pending
    it_exe("runs status and logs with endpoints from the environment (journal without endpoints)", function()
      local id = submit("cli-x-" .. tag, "echo from-the-exe")
      wait_job(id, terminal)
      local run_id = journal.new_run_id()
      local j = assert(journal.open(run_id, { home = home, create = true }))
      assert(j:append({ ev = "run", run_id = run_id, workflow = "wf-exe" }))
      assert(j:append({ ev = "config", job_id = "x", queue = QUEUE, bucket = bucket,
        prefix = "luabatch/runs/" .. run_id, region = REGION, endpoints = {} }))
      assert(j:append({ ev = "submit", key = "x/EMPTY/0", job_id = "x", strategy_id = "EMPTY", attempt = 0,
        job_name = "cli-x-" .. tag }))
      assert(j:append({ ev = "submitted", key = "x/EMPTY/0", batch_job_id = id, job_name = "cli-x-" .. tag }))
      local rc, out = run_exe({ "status", run_id })
      assert.equal(0, rc, out)
      assert.truthy(out:find("\nx%s+" .. pat(id) .. "%s+SUCCEEDED%s+0%s"), out)
      rc, out = run_exe({ "logs", run_id })
      assert.equal(0, rc, out)
      assert.equal("from-the-exe\n", untimed(out))
      -- stdout is a pipe: whole lines, whatever COLUMNS says
      rc, out = run_exe({ "status", run_id }, { "COLUMNS=30" })
      assert.equal(0, rc, out)
      assert.truthy(out:find("\nx%s+" .. pat(id) .. "%s+SUCCEEDED%s+0%s+%d%d:%d%d:%d%d%s+%S+\n"), out)
      rc, out = run_exe({ "logs", run_id, "--since", "yesterday-ish" })
      assert.equal(2, rc)
      assert.truthy(out:find("--since: .*got 'yesterday%-ish'"), out)
      rc, out = run_exe({ "status", "nope-run" })
      assert.equal(2, rc)
      assert.equal("luabatch status: no run 'nope-run' in " .. home .. "\n", out)
    end)
  end)
end)
