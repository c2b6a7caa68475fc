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
local log = require "luabatch.log"

local _M = { _VERSION = "0.1.0" }

local ipairs = ipairs
local pcall = pcall
local require = require
local tostring = tostring
local type = type
local str_format = string.format

local DEFAULT_REASON = "luabatch: cancelled by user"

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

local function default_reason()
  local ok, policy = pcall(require, "luabatch.runner.aws_batch.policy")
  if ok and type(policy) == "table" then
    local r = policy.terminate_reason or (type(policy.defaults) == "table" and policy.defaults.terminate_reason)
    if type(r) == "string" and r ~= "" then return r end
  end
  return DEFAULT_REASON
end

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
  local reason = o.reason or default_reason()
  local home = store.home(o, env)
  local j, st = store.open_run("cancel", run_id, home, err)
  if not j then return st end

  local core = require "luabatch.core"
  if core.clear_interrupt then core.clear_interrupt() end

  if st.ended then
    out(str_format("run %s already ended (%s)\n", run_id, tostring(st.ended.status)))
  else
    local cok, cmsg = j:request_cancel(reason)
    if not cok then
      err("luabatch cancel: " .. tostring(cmsg) .. "\n")
      return 1
    end
  end

  local ops = store.ops(st)
  local clients_for = ops.clients_for(st, env)
  local ok, rmsg = ops.refresh(st, clients_for)
  if not ok then
    err("luabatch cancel: DescribeJobs failed, terminating every job not recorded as finished: "
      .. log.redact(rmsg) .. "\n")
  end

  local rc, done, failed = 0, 0, 0
  for _, key in ipairs(st.order) do
    local js = st.jobs[key]
    local c, cfg = clients_for(js.job_id)
    if not js.batch_job_id and c and not js.status then
      local id, s = ops.find_by_name(c, cfg, js)
      if id then
        js.batch_job_id, js.status = id, s
        j:append({ ev = "submitted", key = key, batch_job_id = id, job_name = js.job_name })
      end
    end
    if js.batch_job_id and not ops.TERMINAL[js.status or ""] then
      if not c then
        err(str_format("luabatch cancel: %s: the journal has no config event (region, endpoints)\n", key))
        failed = failed + 1
      else
        local ans, msg = ops.terminate(c, js, reason)
        if ans then
          local aok, amsg = j:append({ ev = "terminate", key = key, batch_job_id = js.batch_job_id,
            reason = reason })
          if not aok then err("luabatch cancel: journal: " .. tostring(amsg) .. "\n") end
          out(str_format("terminated %s (%s, was %s)\n", key, js.batch_job_id, js.status or "SUBMITTED"))
          done = done + 1
        else
          err(str_format("luabatch cancel: %s (%s): %s\n", key, js.batch_job_id, log.redact(msg)))
          failed = failed + 1
        end
      end
    end
  end
  if failed > 0 then rc = 1 end
  if done == 0 and failed == 0 then out(str_format("run %s: no unfinished Batch job\n", run_id)) end
  return rc
end

return _M
