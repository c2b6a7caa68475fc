-- luabatch.runner.aws_batch.ops.terminate_unfinished: what `luabatch
-- cancel`, `luabatch cleanup` and nginx's DELETE of a journaled run do to
-- its Batch jobs, against a fake Batch client -- and nginx's DELETE itself
-- (luabatch.ngx.api.cancel, its journal written by the worker), which finds
-- a job whose SubmitJob answer was lost by its name as the CLI does.
local journal = require "luabatch.journal"
local ops = require "luabatch.runner.aws_batch.ops"

local RUN_ID = "20261201-100000-0badcafe"

local files = require "helpers.files"

-- A Batch that holds one job named lb-lost (RUNNABLE) and one named lb-known.
local function fake_batch()
  local B = { terminated = {}, listed = 0 }
  local jobs = { { jobId = "batch-lost", jobName = "lb-lost", status = "RUNNABLE" },
                 { jobId = "batch-known", jobName = "lb-known", status = "RUNNING" } }
  function B:describe_jobs_all(ids)
    local out = {}
    for _, id in ipairs(ids) do
      for _, j in ipairs(jobs) do if j.jobId == id then out[#out + 1] = j end end
    end
    return { jobs = out }
  end
  function B:list_jobs(req)
    B.listed = B.listed + 1
    local name = req.filters[1].values[1]
    local i = 0
    return function()
      i = i + 1
      while jobs[i] and jobs[i].jobName ~= name do i = i + 1 end
      return jobs[i]
    end
  end
  function B:terminate_job(id, reason)
    B.terminated[#B.terminated + 1] = { id = id, reason = reason }
    return {}
  end
  return B
end

-- A run with two jobs: "known" (SubmitJob answered) and "lost" (journaled
-- before SubmitJob, its answer never journaled).
local function write_run(home)
  local j = assert(journal.open(RUN_ID, { home = home, create = true }))
  assert(j:append({ ev = "run", run_id = RUN_ID, workflow = "w", at = 1000 }))
  assert(j:append({ ev = "config", job_id = "a", runner = "aws_batch", queue = "q", region = "us-east-1" }))
  assert(j:append({ ev = "submit", key = "a/EMPTY/0", job_id = "a", strategy_id = "EMPTY", attempt = 0,
                    job_name = "lb-known" }))
  assert(j:append({ ev = "submitted", key = "a/EMPTY/0", batch_job_id = "batch-known", job_name = "lb-known" }))
  assert(j:append({ ev = "submit", key = "a/s2/0", job_id = "a", strategy_id = "s2", attempt = 0,
                    job_name = "lb-lost" }))
  return j
end

local function events_of(home, ev)
  local out = {}
  for _, e in ipairs(assert(journal.open(RUN_ID, { home = home })):events()) do
    if e.ev == ev then out[#out + 1] = e end
  end
  return out
end

describe("luabatch.runner.aws_batch.ops.terminate_unfinished #unit", function()
  local home, B
  before_each(function()
    home = files.mkdtemp()
    B = fake_batch()
  end)
  after_each(function() os.execute("rm -rf " .. files.sh_quote(home)) end)

  local function clients_for(st) return ops.clients_for(st, { clients = function() return { batch = B } end }) end

  it("terminates the unfinished jobs, the one whose SubmitJob answer was lost found by name; all journaled", function()
    local j = write_run(home)
    local st = j:state()
    local seen = {}
    local n, failed = ops.terminate_unfinished(st, clients_for(st), { reason = "stop", journal = j,
      on_job = function(key, id, was) seen[#seen + 1] = key .. " " .. id .. " " .. was end })
    assert.equal(2, n)
    assert.equal(0, failed)
    assert.same({ "a/EMPTY/0 batch-known RUNNING", "a/s2/0 batch-lost RUNNABLE" }, seen)
    assert.same({ { id = "batch-known", reason = "stop" }, { id = "batch-lost", reason = "stop" } }, B.terminated)
    local sub = events_of(home, "submitted")
    assert.equal("batch-lost", sub[2].batch_job_id)
    assert.equal(2, #events_of(home, "terminate"))
  end)

  it("dry_run terminates and journals nothing; strict stops at a failed DescribeJobs", function()
    local j = write_run(home)
    local st = j:state()
    local seen = {}
    local n = ops.terminate_unfinished(st, clients_for(st), { reason = "stop", journal = j, dry_run = true,
      on_job = function(key, _, _, dry) seen[#seen + 1] = key .. (dry and " dry" or "") end })
    assert.equal(0, n)
    assert.same({ "a/EMPTY/0 dry", "a/s2/0 dry" }, seen)
    assert.same({}, B.terminated)
    assert.equal(1, #events_of(home, "submitted"))
    st = j:state()
    B.describe_jobs_all = function() return nil, "Throttled" end
    local none, msg = ops.terminate_unfinished(st, clients_for(st), { reason = "stop", journal = j, strict = true })
    assert.is_nil(none)
    assert.equal("DescribeJobs failed: Throttled", msg)
    assert.same({}, B.terminated)
  end)

  it("nginx's DELETE of a journaled run finds the lost job by name, terminates it and ends the run CANCEL", function()
    write_run(home)
    local saved_ngx, saved_clients = rawget(_G, "ngx"), package.loaded["luabatch.clients"]
    finally(function()
      rawset(_G, "ngx", saved_ngx)
      package.loaded["luabatch.clients"] = saved_clients
    end)
    rawset(_G, "ngx", { req = { get_uri_args = function() return { reason = "by test" } end } })
    package.loaded["luabatch.clients"] = { set = function() return { batch = B } end }
    local nj = require("luabatch.ngx.journal").new({ home = home })
    local app = { journal = nj, getenv = function() return nil end,
      load_run = function() return nil, 404, "not in the dict" end,
      journal_event = function(self, id, ev) assert(self.journal:append(id, ev)) end,
      reply = function(status, body) return status, body end,
      fail = function(status, msg) return status, msg end }
    local status, body = require("luabatch.ngx.api").cancel(app, RUN_ID)
    assert.equal(202, status)
    assert.equal("CANCEL", body.status)
    assert.same({ { id = "batch-known", reason = "by test" }, { id = "batch-lost", reason = "by test" } },
      B.terminated)
    local sub = events_of(home, "submitted")
    assert.equal(2, #sub)
    assert.equal("batch-lost", sub[2].batch_job_id)
    assert.equal(2, #events_of(home, "terminate"))
    local ids = {}
    for _, r in ipairs(body.jobs) do ids[r.key] = r.job_id end
    assert.equal("batch-lost", ids["a/s2/0"])
  end)
end)
