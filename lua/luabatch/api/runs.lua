-- luabatch.api.runs: the journaled runs from Lua (`require("luabatch").runs`),
-- what `luabatch runs`, `status`, `cancel` and `run --resume` do.
--
--   local runs = require("luabatch").runs
--   for _, r in ipairs(runs.list()) do print(r.run_id, r.workflow, r.status) end
--   local r = runs.get(run_id)            -- { run_id, workflow, file, status, jobs = { id = record }, ... }
--   local n = runs.cancel(run_id, { reason = "superseded" })
--   local ctx, info = runs.resume("last", { file = "wf.yml" })   -- = luabatch.workflow.resume
--
-- o (all optional): home (default LUABATCH_HOME, else ~/.luabatch),
-- getenv, clients = function(config event) -> { batch, logs, s3 } (tests).
-- Errors: nil, message, code ("ENOENT": no such run).

local journal = require "luabatch.journal"

local _M = { _VERSION = "0.1.0" }

local pairs = pairs
local ipairs = ipairs
local tostring = tostring
local require = require

local function home_of(o)
  o = o or {}
  if o.home and o.home ~= "" then return o.home end
  return journal.home(o.getenv)
end

--- list([o]) -> { { run_id, workflow, file, started, ended, status
-- (RUNNING while no end is journaled), jobs = { ok, failed, skipped,
-- cancelled }?, cleaned }, ... } newest first; o.limit: the newest N.
function _M.list(o)
  o = o or {}
  local out = {}
  for _, r in ipairs(journal.list(home_of(o), { limit = o.limit })) do
    out[#out + 1] = { run_id = r.run_id, workflow = r.workflow, file = r.file, started = r.started,
                      ended = r.ended_at, last = r.last_at, status = r.ended_status or "RUNNING", jobs = r.jobs,
                      cleaned = r.cleaned }
  end
  return out
end

--- get(run_id [, o]) -> { run_id, workflow, file, params, status, started,
-- ended, resumed_from, jobs = { [job_id] = record }, cancel = reason? } |
-- nil, message, code
function _M.get(run_id, o)
  local j, msg, code = journal.open(run_id, { home = home_of(o) })
  if not j then return nil, msg, code end
  local st = j:state()
  local run = st.run or {}
  local jobs = {}
  for id, f in pairs(st.finished) do jobs[id] = f.record end
  for id, rec in pairs(st.local_jobs) do if jobs[id] == nil then jobs[id] = rec end end
  return { run_id = run_id, workflow = run.workflow, file = run.file, params = run.params, started = run.at,
           ended = st.ended and st.ended.at, status = st.ended and st.ended.status or "RUNNING",
           resumed_from = run.resumed_from, jobs = jobs, cancel = st.cancel and st.cancel.reason }
end

--- ops(st) -> the run's runner hooks (luabatch.runner.ops of the runner
-- that journaled its jobs: its config events say which; aws_batch before
-- they did)
function _M.ops(st)
  local t
  for _, cfg in pairs(st.configs) do t = t or cfg.runner end
  return require("luabatch.runner").ops(t or "aws_batch")
end

--- cancel(run_id [, o]) -> terminated, failed | nil, message, code.
-- The run's live client (if any) is asked to stop (a "cancel" event and a
-- marker beside the journal: it submits nothing more and ends the run
-- CANCEL), then every unfinished Batch job is terminated (DescribeJobs
-- first: a finished one is left alone; one whose SubmitJob answer was lost
-- is found by name), each recorded as a "terminate" event.
-- o.reason (default the policy's terminate_reason); o.on_job(key, batch_id,
-- was) after each TerminateJob, o.on_error(message) for each failure;
-- o.ended: true when the run had already ended (nothing asked of it).
function _M.cancel(run_id, o)
  o = o or {}
  local j, msg, code = journal.open(run_id, { home = home_of(o) })
  if not j then return nil, msg, code end
  local st = j:state()
  local reason = o.reason or require("luabatch.runner.aws_batch.policy").defaults.terminate_reason
  local core = require "luabatch.core"
  if core.clear_interrupt then core.clear_interrupt() end
  if not st.ended then
    local ok, cmsg = j:request_cancel(reason)
    if not ok then return nil, tostring(cmsg), "EIO" end
  end
  local ops = _M.ops(st)
  local done, failed = ops.terminate_unfinished(st, ops.clients_for(st, o),
    { reason = reason, journal = j, on_job = o.on_job, on_error = o.on_error })
  return done, failed, st.ended ~= nil
end

--- resume(which [, o]) -> ctx, info | nil, message, code: luabatch.workflow.resume
function _M.resume(which, o)
  return require("luabatch.api.workflow").resume(which, o)
end

return _M
