-- luabatch.cli.live (the run's view) and luabatch.runner.aws_batch.waiting
-- (why a Batch job sits RUNNABLE), driven with plain events and a clock.
local live = require "luabatch.cli.live"
local waiting = require "luabatch.runner.aws_batch.waiting"

local function view(tty, width)
  local out, t = {}, { now = 1000 }
  local v = live.new({ write = function(s) out[#out + 1] = s end, tty = tty, width = width,
                       now = function() return t.now end, workflow = "wf", order = { "fan", "after" } })
  return v, out, t
end

-- The last table drawn (the text after the last redraw code).
local function last_table(out)
  local text = table.concat(out)
  return text:match(".*\27%[%d+A\27%[J(.*)$") or text
end

describe("luabatch.cli.live #unit", function()
  it("on a terminal: one row per job, strategies counted by state in run order, redrawn in place", function()
    local v, out, t = view(true, 200)
    v.progress("job-start", { job = "fan", runs_on = "aws_batch" })
    for _, r in ipairs({ "eu", "us", "ap" }) do
      v.progress("strategy", { job = "fan", strategy = "s-" .. r, values = { region = r }, state = "started" })
    end
    t.now = 1001
    v.progress("strategy", { job = "fan", strategy = "s-eu", state = "RUNNING" })
    v.progress("strategy", { job = "fan", strategy = "s-us", state = "RUNNABLE" })
    t.now = 1065
    v.progress("strategy", { job = "fan", strategy = "s-us", state = "RUNNABLE", hint = "RUNNABLE for 64s: queue q DISABLED/VALID" })
    v.tick()
    local tbl = last_table(out)
    assert.truthy(tbl:find("workflow wf  65.0s\n", 1, true), tbl)
    assert.truthy(tbl:find("fan    running  1 SUBMITTING, 1 RUNNABLE, 1 RUNNING  65.0s    fan[region=us]: RUNNABLE for 64s: queue q DISABLED/VALID", 1, true), tbl)
    assert.truthy(tbl:find("after  waiting                                       -", 1, true), tbl)
    assert.truthy(table.concat(out):find("\27[4A\27[J", 1, true))   -- heading + header + 2 rows erased
    -- a line printed while the table is up goes above it: table erased, line, table again
    local n = #out
    v.line("  fan[region=eu]  w  SUCCESS 1.00s\n")
    assert.equal("\27[4A\27[J", out[n + 1])
    assert.equal("  fan[region=eu]  w  SUCCESS 1.00s\n", out[n + 2])
    assert.truthy(out[n + 3]:find("^workflow wf"))
    -- the job ends: its row says so, the hint goes
    v.progress("job", { job = "fan", status = "FAILED", seconds = 70, errors = { name = "JobError", message = "boom\nmore" } })
    v.close()
    tbl = last_table(out)
    assert.truthy(tbl:find("fan    FAILED", 1, true), tbl)
    assert.truthy(tbl:find("boom", 1, true) and not tbl:find("more", 1, true), tbl)
  end)

  it("fits the terminal: the note and the strategies give way, nothing wraps", function()
    local v, out = view(true, 60)
    v.progress("job-start", { job = "fan" })
    v.progress("strategy", { job = "fan", strategy = "a", values = { n = 1 }, state = "started" })
    v.progress("strategy", { job = "fan", strategy = "a", state = "RUNNABLE", hint = string.rep("x", 200) })
    v.tick()
    for line in last_table(out):gmatch("[^\n]+") do assert.is_true(#line <= 60, line) end
  end)

  it("off a terminal: a timestamped line per state change, no codes, no repeats", function()
    local v, out = view(false)
    v.progress("job-start", { job = "fan", runs_on = "aws_batch" })
    v.progress("strategy", { job = "fan", strategy = "a", values = { n = 1 }, state = "started" })
    v.progress("strategy", { job = "fan", strategy = "a", state = "RUNNABLE" })
    v.progress("strategy", { job = "fan", strategy = "a", state = "RUNNABLE" })     -- no change: no line
    v.progress("strategy", { job = "fan", strategy = "a", state = "FAILED", reason = "OutOfMemoryError" })
    v.progress("job", { job = "fan", status = "FAILED", seconds = 3 })
    v.tick()
    v.close()
    local text = table.concat(out)
    assert.equal(table.concat({
      "00:16:40 job fan: running on aws_batch",
      "00:16:40 fan[n=1]: SUBMITTING",
      "00:16:40 fan[n=1]: RUNNABLE",
      "00:16:40 fan[n=1]: FAILED (OutOfMemoryError)",
      "00:16:40 job fan: FAILED (3.00s)", "" }, "\n"), text)
  end)
end)

describe("luabatch.runner.aws_batch.waiting #unit", function()
  local function batch(queue, ces)
    return {
      describe_job_queues = function() return { jobQueues = { queue } } end,
      describe_compute_environments = function() return { computeEnvironments = ces } end,
    }
  end
  local Q = { jobQueueName = "q", state = "ENABLED", status = "VALID",
              computeEnvironmentOrder = { { order = 1, computeEnvironment = "arn:ce" } } }
  local function ce(state, status, max)
    return { computeEnvironmentName = "ce", state = state, status = status,
             computeResources = { type = "EC2", desiredvCpus = 0, maxvCpus = max } }
  end
  local JOB = { jobQueue = "arn:q", container = { resourceRequirements = { { type = "VCPU", value = "4" } } } }

  it("names the queue and its compute environments as Batch describes them", function()
    assert.equal("RUNNABLE for 65.0s: queue q ENABLED/VALID; ce ENABLED/VALID EC2, 0 of 256 vCPUs",
      waiting.hint(batch(Q, { ce("ENABLED", "VALID", 256) }), JOB, 65))
  end)

  it("one look over the waiting jobs describes each queue once", function()
    local calls = 0
    local b = batch(Q, { ce("ENABLED", "VALID", 256) })
    local dq, dc = b.describe_job_queues, b.describe_compute_environments
    b.describe_job_queues = function(...) calls = calls + 1 return dq(...) end
    b.describe_compute_environments = function(...) calls = calls + 1 return dc(...) end
    local seen = {}
    for _ = 1, 5 do assert.truthy(waiting.hint(b, JOB, 70, seen):find("queue q ENABLED/VALID", 1, true)) end
    assert.equal(2, calls)
  end)

  it("says the likely cause: nothing usable, or a job larger than any environment", function()
    assert.truthy(waiting.hint(batch(Q, { ce("DISABLED", "VALID", 256) }), JOB, 5)
      :find("-- no compute environment of the queue is ENABLED and VALID", 1, true))
    assert.truthy(waiting.hint(batch(Q, { ce("ENABLED", "VALID", 2) }), JOB, 5)
      :find("-- the job asks for 4 vCPUs, the largest environment allows 2", 1, true))
    local off = {}
    for k, x in pairs(Q) do off[k] = x end
    off.state = "DISABLED"
    assert.truthy(waiting.hint(batch(off, { ce("ENABLED", "VALID", 256) }), JOB, 5):find("-- the queue is DISABLED", 1, true))
  end)
end)
