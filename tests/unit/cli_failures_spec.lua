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
      "FAILED job fan[n=2], stage 'boom': exit code 4: oops-2",
      "FAILED job single, stage 'k': killed by signal 9: partial",
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
