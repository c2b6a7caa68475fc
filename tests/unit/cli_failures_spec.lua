-- luabatch.cli.failures: the failure report a person reads after a failed
-- run, from the records (and the stage failures progress caught).
local failures = require "luabatch.cli.failures"

local function strategy(n, status, stages, errors)
  return { status = status, matrix = { n = n }, stages = stages or {}, errors = errors }
end

local function bash_fail(code, out, err)
  return { status = "FAILED", outputs = { return_code = code, stdout = out, stderr = err },
           errors = { name = "StageError", message = "Subprocess: " .. tostring(err) .. "\n\t```bash\n\texit\n\t```" } }
end

describe("luabatch.cli.failures #unit", function()
  local model = { job_order = { "fan", "single", "ok" } }

  it("names strategies by their matrix values", function()
    assert.equal("fan[n=2]", failures.label("fan", { matrix = { n = 2 } }))
    assert.equal("fan[a=x,b=1]", failures.label("fan", { matrix = { b = 1, a = "x" } }))
    assert.equal("single", failures.label("single", { matrix = {} }))
    assert.equal("single", failures.label("single", {}))
  end)

  it("the CLI's reports, its status table and nginx's view name a strategy alike (workflow.job.label)", function()
    local label = require("luabatch.workflow.job").label
    local status = require "luabatch.cli.status"
    local view = require "luabatch.ngx.view"
    local m = { b = 1, a = "x" }
    assert.equal("fan[a=x,b=1]", label("fan", m))
    assert.equal(label("fan", m), failures.label("fan", { matrix = m }))
    assert.equal("fan[a=x,b=1] try 3", status.label({ job_id = "fan", strategy_id = "s1", attempt = 2 }, m))
    assert.equal("fan[a=x,b=1] try 3", view.label("fan", m, 2))
    assert.equal("fan/s1", status.label({ job_id = "fan", strategy_id = "s1", attempt = 0 }, nil))
    assert.equal("one", view.label("one", {}, 0))
  end)

  it("shows the first failure whole (stage, exit code, stderr/stdout tails, error), then a line each", function()
    local lines = {}
    for i = 1, 15 do lines[i] = "line " .. i end
    local ctx = { jobs = {
      fan = { status = "FAILED", strategies = {
        s1 = strategy(1, "FAILED", { boom = bash_fail(3, table.concat(lines, "\n"), "oops-1\nreally") }),
        s2 = strategy(2, "FAILED", { boom = bash_fail(4, nil, "oops-2") }),
        s3 = strategy(3, "SUCCESS"),
      } },
      single = { status = "FAILED", stages = { k = bash_fail(-9, "partial", nil) } },
      ok = { status = "SUCCESS", stages = {} },
    } }
    local text = failures.report(ctx, model, { tail = 10 })
    assert.equal(table.concat({
      "FAILED job fan[n=1], stage 'boom': exit code 3",
      "  stderr:",
      "    oops-1",
      "    really",
      "  stdout (last 10 lines):",
      "    line 6", "    line 7", "    line 8", "    line 9", "    line 10",
      "    line 11", "    line 12", "    line 13", "    line 14", "    line 15",
      "  error: Subprocess: oops-1",
      "  full output: stdout and stderr are in the --json context (jobs.fan.strategies.s1.stages.boom.outputs)",
      "FAILED job fan[n=2], stage 'boom': exit code 4: oops-2",
      "FAILED job single, stage 'k': killed by signal 9 (SIGKILL, often out of memory): partial",
    }, "\n") .. "\n", text)
  end)

  it("many failures: a line each up to the limit, then a count naming where the rest is", function()
    local strategies = {}
    for i = 1, 50 do strategies["s" .. i] = strategy(i, "FAILED", { boom = bash_fail(1, nil, "bad " .. i) }) end
    -- no job definition here: ordered by label (n=1, n=10, ...); with one, matrix order
    local ctx = { jobs = { fan = { status = "FAILED", strategies = strategies } } }
    local text = failures.report(ctx, { job_order = { "fan" } }, { run_id = "20261206-000000-abcd1234", limit = 3 })
    local n = select(2, text:gsub("\nFAILED ", "\n"))
    assert.equal(3, n)                                -- the first whole, then 3 lines
    assert.truthy(text:find("\n46 more failures: luabatch status 20261206-000000-abcd1234\n", 1, true), text)
    assert.truthy(text:find("^FAILED job fan%[n=1%]"), text)
  end)

  it("a strategy without a failed stage (a Batch job that died) shows its own error whole", function()
    local ctx = { jobs = { fan = { status = "FAILED", strategies = {
      s1 = strategy(1, "FAILED", {}, { name = "AWSBatchJobError",
        message = "AWS Batch job x (id) failed; exit code 137; reason: Essential container in task exited\n  last lines:\n    catalogue has 42 widgets" }),
    } } } }
    local text = failures.report(ctx, { job_order = { "fan" } })
    assert.truthy(text:find("FAILED job fan[n=1], FAILED\n  error: AWS Batch job x (id) failed; exit code 137", 1, true), text)
    assert.truthy(text:find("catalogue has 42 widgets", 1, true), text)
  end)

  it("names a signal: return_code -N, or an exit code 128+N as a shell or a container reports it", function()
    assert.equal("exit code 3", failures.exit_text(3))
    assert.equal("killed by signal 9 (SIGKILL, often out of memory)", failures.exit_text(-9))
    assert.equal("killed by signal 15 (SIGTERM)", failures.exit_text(-15))
    assert.equal("exit code 137, killed (SIGKILL, often out of memory)", failures.exit_text(137))
    assert.equal("exit code 143, killed (SIGTERM)", failures.exit_text(143))
    assert.equal("exit code 128", failures.exit_text(128))
    assert.is_nil(failures.exit_text(nil))
  end)

  it("a local stage's report says where its whole output is: --json, and the journal of a journaled run", function()
    local ctx = { jobs = { single = { status = "FAILED", stages = { k = bash_fail(-15, "x", "y") } } } }
    local text = failures.report(ctx, model, { run_id = "20261206-000000-abcd1234" })
    assert.truthy(text:find("^FAILED job single, stage 'k': killed by signal 15 %(SIGTERM%)\n"), text)
    assert.truthy(text:find("\n  full output: stdout and stderr are in the --json context (jobs.single.stages.k.outputs)"
      .. " and in the journal of run 20261206-000000-abcd1234\n", 1, true), text)
  end)

  describe("a Batch job (record.info.aws_batch, from the Batch runner)", function()
    local function batch_rec(n, b, message)
      local r = strategy(n, "FAILED", {}, { name = "AWSBatchJobError", message = message or "AWS Batch job x failed" })
      b.job_id = b.job_id or ("id-" .. n)
      b.key = b.key or ("fan/s" .. n .. "/0")
      b.log_group = b.log_group or "/aws/batch/job"
      r.info = { exec_latency = 1, aws_batch = b }
      return r
    end

    it("names the cause: out of memory and timeout by Batch's own reason, 137 as a SIGKILL", function()
      local ctx = { jobs = { fan = { status = "FAILED", strategies = {
        s1 = batch_rec(1, { kind = "oom", exit_code = 137, status_reason = "Essential container in task exited",
          container_reason = "OutOfMemoryError: Container killed due to memory usage", log_stream = "d/default/t1" }),
        s2 = batch_rec(2, { kind = "timeout", exit_code = 137, status_reason = "Job attempt duration exceeded timeout" }),
        s3 = batch_rec(3, { kind = "exit", exit_code = 137, status_reason = "Essential container in task exited" }),
        s4 = batch_rec(4, { kind = "exit", exit_code = 2 }),
      } } } }
      local text = failures.report(ctx, { job_order = { "fan" } }, { run_id = "20261206-000000-abcd1234" })
      local lines = {}
      for l in text:gmatch("[^\n]+") do lines[#lines + 1] = l end
      assert.equal("FAILED job fan[n=1], AWS Batch job id-1: OutOfMemoryError: Container killed due to memory usage",
        lines[1])
      assert.equal("  error: AWS Batch job x failed", lines[2])
      assert.equal("  full log: luabatch logs 20261206-000000-abcd1234 --job fan/s1/0 (CloudWatch /aws/batch/job "
        .. "d/default/t1)", lines[3])
      assert.equal("FAILED job fan[n=2], AWS Batch job id-2: Job attempt duration exceeded timeout: AWS Batch job x failed",
        lines[4])
      assert.equal("FAILED job fan[n=3], AWS Batch job id-3: exit code 137, killed (SIGKILL, often out of memory): "
        .. "AWS Batch job x failed", lines[5])
      assert.equal("FAILED job fan[n=4], AWS Batch job id-4: exit code 2: AWS Batch job x failed", lines[6])
    end)

    it("without a run id the log stream is named; a failed stage of a Batch job points at its log", function()
      local r = strategy(1, "FAILED", { boom = bash_fail(3, "out", "err") })
      r.info = { aws_batch = { job_id = "id-1", key = "fan/s1/0", log_group = "/g", log_stream = "d/default/t1",
        kind = "exit", exit_code = 1 } }
      local ctx = { jobs = { fan = { status = "FAILED", strategies = { s1 = r } } } }
      local text = failures.report(ctx, { job_order = { "fan" } })
      assert.truthy(text:find("^FAILED job fan%[n=1%], stage 'boom': exit code 3\n"), text)
      assert.truthy(text:find("\n  full log: CloudWatch /g d/default/t1\n$"), text)
      text = failures.report(ctx, { job_order = { "fan" } }, { run_id = "R" })
      assert.truthy(text:find("\n  full log: luabatch logs R --job fan/s1/0 (CloudWatch /g d/default/t1)\n", 1, true), text)
    end)
  end)

  it("stage failures that reach no record (no id) come from the progress events", function()
    local c = failures.catcher()
    c.progress("stage", { status = "FAILED", job = "single", strategy = "EMPTY", name = "Unnamed",
      errors = { name = "StageError", message = "Subprocess: nope" }, outputs = { return_code = 2, stderr = "nope" } })
    c.progress("stage", { status = "SUCCESS", job = "single", strategy = "EMPTY", name = "Fine" })
    local ctx = { jobs = { single = { status = "FAILED", stages = {},
      errors = { name = "JobError", message = "Strategy execution was break" } } } }
    local text = failures.report(ctx, model, { caught = c })
    assert.truthy(text:find("FAILED job single, stage 'Unnamed': exit code 2\n  stderr:\n    nope\n", 1, true), text)
  end)

  it("nothing failed: an empty report", function()
    assert.equal("", failures.report({ jobs = { ok = { status = "SUCCESS" } } }, model))
  end)
end)
