-- luabatch.cli.cancel: `luabatch cancel RUN_ID [--reason TEXT] [--home DIR]`
--
--   local code = require("luabatch.cli.cancel").run({ run_id, "--reason", "why" }, env)
--
-- Stops the run.  First the request, for the run's live client (if any):
-- a "cancel" event and a marker beside the journal (journal:request_cancel),
-- which the client reads within one wait slice -- it then submits nothing
-- more (no queued strategy, no downstream job) and ends the run CANCEL.
-- Then, so a run whose client is gone stops too, it terminates every Batch
-- job of the run that is not finished: the journal's
-- states refreshed with DescribeJobs first (a job that already SUCCEEDED or
-- FAILED is left alone), then TerminateJob for each of the others (an array
-- job's parent stops its children), each recorded in the journal as a
-- "terminate" event {key, batch_job_id, reason}.  A job whose SubmitJob
-- answer was lost (a "submit" without "submitted") is looked up by name in
-- its queue (ListJobs) and terminated when found.
--
-- Exit codes: 0 every unfinished job terminated (or none left), 1 some
-- TerminateJob failed, 2 bad usage or unknown run.
--
-- env: as luabatch.cli.store.

local args = require "luabatch.cli.args"
local store = require "luabatch.cli.store"

local _M = { _VERSION = "0.1.0" }

local pairs = pairs
local require = require
local tostring = tostring
local str_format = string.format

_M.usage = [==[
usage: luabatch cancel RUN_ID [--reason TEXT] [--home DIR]

Stop a run: its live client (if any) submits nothing more and ends the
run CANCEL; every Batch job of the run that has not finished is terminated
(TerminateJob); both are recorded in the run's journal.

options:
  --reason TEXT   the reason Batch records (default: the policy's
                  terminate_reason, "luabatch: cancelled by user")
  --home DIR      the journal home (default LUABATCH_HOME, else ~/.luabatch)
  -h, --help      this text

Exit codes: 0 done (or nothing left to cancel), 1 some TerminateJob failed,
2 bad usage or unknown run.
]==]

function _M.run(argv, env)
  env = env or {}
  local out, err = store.io(env)
  local o, pos = args.parse(argv, { ["--reason"] = "value", ["--home"] = "value" })
  if not o then
    err("luabatch cancel: " .. pos .. "\n" .. _M.usage)
    return 2
  end
  if o.help then out(_M.usage) return 0 end
  if #pos ~= 1 then
    err("luabatch cancel: " .. (#pos == 0 and "a RUN_ID is required" or "one RUN_ID expected") .. "\n" .. _M.usage)
    return 2
  end
  local run_id = pos[1]
  local home = store.home(o, env)
  local j, st = store.open_run("cancel", run_id, home, err)   -- the messages of a missing run
  if not j then return st end
  if st.ended then out(str_format("run %s already ended (%s)\n", run_id, tostring(st.ended.status))) end
  local ro = {}
  for k, v in pairs(env) do ro[k] = v end
  ro.home, ro.reason = home, o.reason
  ro.on_job = function(key, id, was) out(str_format("terminated %s (%s, was %s)\n", key, id, was)) end
  ro.on_error = function(msg) err("luabatch cancel: " .. msg .. "\n") end
  local done, failed = require("luabatch.api.runs").cancel(run_id, ro)
  if not done then
    err("luabatch cancel: " .. tostring(failed) .. "\n")
    return 1
  end
  if done == 0 and failed == 0 then out(str_format("run %s: no unfinished Batch job\n", run_id)) end
  return failed > 0 and 1 or 0
end

return _M
