-- luabatch status RUN_ID: the table (labels by matrix values, start and
-- duration, no reason for a success) fitted to the terminal, from a
-- journal and a fake Batch client; and the table layout itself.
local journal = require "luabatch.journal"
local status_cli = require "luabatch.cli.status"
local tabular = require "luabatch.cli.tabular"
local json = require "luabatch.json"

local RUN = "20261206-041500-abcd1234"
local T = 1796530500            -- 2026-12-06T04:15:00Z
local OOM = "OutOfMemoryError: Container killed due to memory usage"

local function tmpdir()
  local d = os.tmpname()
  os.remove(d)
  return d
end

local function lines_of(s)
  local out = {}
  for l in s:gmatch("[^\n]+") do out[#out + 1] = l end
  return out
end

describe("luabatch.cli.tabular #unit", function()
  local H = { "JOB", "STATUS", "REASON" }
  local rows = { { "fan[region=eu]", "FAILED", "OutOfMemoryError: Container killed due to memory usage" },
                 { "single", "SUCCEEDED", "" } }

  it("pads columns two spaces apart and trims trailing blanks", function()
    assert.equal(table.concat({
      "JOB             STATUS     REASON",
      "fan[region=eu]  FAILED     OutOfMemoryError: Container killed due to memory usage",
      "single          SUCCEEDED",
    }, "\n") .. "\n", tabular.render(H, rows))
  end)

  it("cuts the shrinkable columns, in their order, with an ellipsis, to fit the width", function()
    local text = tabular.render(H, rows, { width = 40, shrink = { 3, 1 }, ellipsis = "..." })
    for _, l in ipairs(lines_of(text)) do assert.is_true(#l <= 40, l) end
    local l = lines_of(text)
    assert.equal("fan[region=eu]  FAILED     OutOfMemor...", l[2])
    -- narrower than the reason's header allows: the job column gives way too
    text = tabular.render(H, rows, { width = 24, shrink = { 3, 1 }, ellipsis = "..." })
    assert.same({ "JOB    STATUS     REASON", "fa...  FAILED     Out...", "si...  SUCCEEDED" }, lines_of(text))
  end)

  it("counts characters, not bytes (UTF-8), and cuts between characters", function()
    assert.equal(5, tabular.len("héllo"))
    assert.equal("hé\226\128\166", tabular.cut("héllo wörld", 3, "\226\128\166"))
    assert.equal("héllo", tabular.cut("héllo", 5, "..."))
  end)

  it("a width only for a terminal: COLUMNS, else its size, else 80; the ellipsis by locale", function()
    local envt = { COLUMNS = "72" }
    local env = { getenv = function(n) return envt[n] end, isatty = function() return false end,
                  term_width = function() return 132 end }
    assert.is_nil(tabular.width(env))
    env.isatty = function(fd) return fd == 1 end
    assert.equal(72, tabular.width(env))
    envt.COLUMNS = nil
    assert.equal(132, tabular.width(env))
    env.term_width = function() return nil end
    assert.equal(80, tabular.width(env))
    assert.equal("...", tabular.ellipsis(env))
    envt.LANG = "en_US.UTF-8"
    assert.equal("\226\128\166", tabular.ellipsis(env))
    envt.LC_ALL = "C"
    assert.equal("...", tabular.ellipsis(env))
  end)
end)

describe("luabatch status #unit", function()
  local home, j

  -- the fake Batch: what DescribeJobs says of the job still running
  local function fake_clients()
    return { batch = { describe_jobs_all = function(_, ids)
      local jobs = {}
      for i, id in ipairs(ids) do
        jobs[i] = { jobId = id, status = "RUNNING", createdAt = (T + 30) * 1000, startedAt = (T + 40) * 1000 }
      end
      return { jobs = jobs }
    end } }
  end

  local function cli(args, envt, tty)
    local o, e = {}, {}
    local code = status_cli.run(args, { stdout = function(s) o[#o + 1] = s end,
      stderr = function(s) e[#e + 1] = s end, getenv = function(n) return envt and envt[n] end,
      isatty = function() return tty or false end, term_width = function() return nil end,
      clients = fake_clients, now = function() return T + 400 end })
    return code, table.concat(o), table.concat(e)
  end

  before_each(function()
    home = tmpdir()
    j = assert(journal.open(RUN, { home = home, create = true }))
    local function ev(e) assert(j:append(e)) end
    ev({ ev = "run", run_id = RUN, workflow = "etl", at = T })
    ev({ ev = "config", runner = "aws_batch", job_id = "fan", queue = "q", region = "us-east-1", at = T })
    -- fan[region=eu]: out of memory; fan[region=us]: failed, then its retry succeeded
    ev({ ev = "submit", key = "fan/s1/0", job_id = "fan", strategy_id = "s1", attempt = 0, job_name = "lb-eu",
      matrix = { region = "eu" }, at = T + 5 })
    ev({ ev = "submitted", key = "fan/s1/0", batch_job_id = "id-eu", at = T + 6 })
    ev({ ev = "state", key = "fan/s1/0", batch_job_id = "id-eu", status = "FAILED", exit_code = 137,
      reason = "Essential container in task exited; " .. OOM, at = T + 70 })
    ev({ ev = "result", key = "fan/s1/0", status = "FAILED", record = { status = "FAILED" }, at = T + 72 })
    ev({ ev = "submit", key = "fan/s2/1", job_id = "fan", strategy_id = "s2", attempt = 1, job_name = "lb-us",
      matrix = { region = "us" }, at = T + 100 })
    ev({ ev = "submitted", key = "fan/s2/1", batch_job_id = "id-us", at = T + 101 })
    ev({ ev = "state", key = "fan/s2/1", batch_job_id = "id-us", status = "SUCCEEDED", exit_code = 0,
      reason = "Essential container in task exited", at = T + 220 })
    ev({ ev = "result", key = "fan/s2/1", status = "SUCCESS", record = { status = "SUCCESS" }, at = T + 225 })
    -- a job without a matrix, still running (the fake Batch says so)
    ev({ ev = "submit", key = "tail/EMPTY/0", job_id = "tail", strategy_id = "EMPTY", attempt = 0,
      job_name = "lb-tail", at = T + 300 })
    ev({ ev = "submitted", key = "tail/EMPTY/0", batch_job_id = "id-tail", at = T + 301 })
    ev({ ev = "state", key = "tail/EMPTY/0", batch_job_id = "id-tail", status = "RUNNABLE", at = T + 302 })
  end)
  after_each(function() os.execute("rm -rf '" .. home .. "'") end)

  it("names strategies by their matrix values, with start and duration; a success has no reason", function()
    local code, out, err = cli({ RUN, "--home", home })
    assert.equal(0, code, err)
    local l = lines_of(out)
    assert.equal("run " .. RUN .. "  workflow etl  started 2026-12-06T04:15:00Z  not ended", l[1])
    assert.matches("^JOB%s+BATCH ID%s+STATUS%s+EXIT%s+STARTED%s+DURATION%s+REASON$", l[2])
    assert.matches("^fan%[region=eu%]%s+id%-eu%s+FAILED%s+137%s+04:15:05%s+67%.0s%s+OutOfMemoryError: Container "
      .. "killed due to memory usage$", l[3])
    assert.matches("^fan%[region=us%] try 2%s+id%-us%s+SUCCEEDED%s+0%s+04:16:40%s+2m05s$", l[4])
    -- running: the duration so far (now - submitted)
    assert.matches("^tail%s+id%-tail%s+RUNNING%s+%-%s+04:20:00%s+100%.0s$", l[5])
  end)

  it("fits the terminal's width, cutting the reason with an ellipsis; no cut when not a terminal", function()
    local _, out = cli({ RUN, "--home", home }, { COLUMNS = "70" }, true)
    local l = lines_of(out)
    for i = 2, #l do assert.is_true(#l[i] <= 70, l[i]) end
    assert.matches("^fan%[region=eu%]%s+id%-eu%s+FAILED%s+137%s+04:15:05%s+67%.0s%s+Out.*%.%.%.$", l[3])
    local _, utf = cli({ RUN, "--home", home }, { COLUMNS = "70", LANG = "C.UTF-8" }, true)
    assert.truthy(utf:find("\226\128\166\n", 1, true), utf)
    -- the same COLUMNS, stdout not a terminal: whole lines
    local _, piped = cli({ RUN, "--home", home }, { COLUMNS = "70" }, false)
    assert.truthy(piped:find(OOM .. "\n", 1, true), piped)
  end)

  it("--json keeps the journal key as the key, with the label and the times beside it", function()
    local code, out = cli({ RUN, "--home", home, "--json" })
    assert.equal(0, code)
    local v = assert(json.decode(out))
    local by = {}
    for _, x in ipairs(v.jobs) do by[x.key] = x end
    assert.equal("fan[region=eu]", by["fan/s1/0"].label)
    assert.equal("fan[region=us] try 2", by["fan/s2/1"].label)
    assert.equal(T + 5, by["fan/s1/0"].started_at)
    assert.equal(T + 72, by["fan/s1/0"].ended_at)
    assert.equal("RUNNING", by["tail/EMPTY/0"].status)
    assert.is_nil(by["tail/EMPTY/0"].ended_at)
    assert.is_nil(v.cleaned)
  end)

  it("reads the journal once", function()
    local each_line, reads = journal.each_line, 0
    finally(function() journal.each_line = each_line end)
    journal.each_line = function(...) reads = reads + 1 return each_line(...) end
    assert.equal(0, (cli({ RUN, "--home", home })))
    assert.equal(1, reads)
  end)

  it("a run cleaned by `luabatch cleanup` says so", function()
    assert(j:append({ ev = "end", status = "FAILED", at = T + 500 }))
    assert(j:append({ ev = "cleanup", scope = "run", deleted = 4, terminated = 0, at = T + 600 }))
    local _, out = cli({ RUN, "--home", home })
    assert.equal("run " .. RUN .. "  workflow etl  started 2026-12-06T04:15:00Z  ended FAILED  cleaned "
      .. "2026-12-06T04:25:00Z", lines_of(out)[1])
    local v = json.decode(select(2, cli({ RUN, "--home", home, "--json" })))
    assert.equal(T + 600, v.cleaned)
  end)
end)
