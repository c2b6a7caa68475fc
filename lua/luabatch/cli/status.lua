-- luabatch.cli.status: `luabatch status RUN_ID [--json] [--home DIR]`
--
--   local code = require("luabatch.cli.status").run({ "20261124-101500-a1b2c3d4" }, env)
--
-- Reads the run's journal, asks AWS Batch for the current state of the jobs
-- the journal does not know to be finished (one DescribeJobs per 100 ids),
-- and prints one row per journal key: key, Batch job name, Batch job id,
-- status, exit code, reason.  With --json: { run_id, workflow, started,
-- ended, jobs = [ ... ] } on stdout.  The journal is only read.
--
-- Exit codes: 0 shown (even when AWS could not be asked: a warning says
-- so), 2 bad usage or unknown run.
--
-- env: as luabatch.cli.store (the run store these commands share).

local args = require "luabatch.cli.args"
local store = require "luabatch.cli.store"
local journal = require "luabatch.journal"
local log = require "luabatch.log"

local _M = { _VERSION = "0.1.0" }

local type = type
local ipairs = ipairs
local require = require
local tostring = tostring
local str_format = string.format
local str_rep = string.rep
local str_gsub = string.gsub
local tbl_concat = table.concat
local floor = math.floor

_M.usage = [==[
usage: luabatch status [RUN_ID] [--json] [--home DIR]

Show the jobs of a run: the journal's record, refreshed from AWS Batch for
the jobs not yet finished (one DescribeJobs call per 100 jobs).  Without a
RUN_ID: the list of runs, newest first (luabatch runs).

options:
  --json        print the run and its jobs as JSON on stdout
  --home DIR    the journal home (default LUABATCH_HOME, else ~/.luabatch)
  -h, --help    this text

Columns: KEY (job/strategy/attempt), JOB NAME, BATCH ID, STATUS, EXIT, REASON.
Exit codes: 0 shown, 2 bad usage or unknown run.
]==]

---------------------------------------------------------------------------
-- status
---------------------------------------------------------------------------

local function cell(v)
  if v == nil then return "-" end
  if type(v) == "number" and v == floor(v) then return str_format("%d", v) end
  local s = str_gsub(tostring(v), "[\r\n\t]", " ")
  return s
end

local function table_text(rows, headers)
  local widths = {}
  for i, h in ipairs(headers) do widths[i] = #h end
  for _, r in ipairs(rows) do
    for i = 1, #headers - 1 do
      if #r[i] > widths[i] then widths[i] = #r[i] end
    end
  end
  local lines = {}
  local function line(r)
    local parts = {}
    for i = 1, #headers do
      if i < #headers then parts[i] = r[i] .. str_rep(" ", widths[i] - #r[i])
      else parts[i] = r[i] end
    end
    lines[#lines + 1] = (str_gsub(tbl_concat(parts, "  "), "%s+$", ""))
  end
  line(headers)
  for _, r in ipairs(rows) do line(r) end
  return tbl_concat(lines, "\n") .. "\n"
end

function _M.run(argv, env)
  env = env or {}
  local out, err = store.io(env)
  local o, pos = args.parse(argv, { ["--json"] = "flag", ["--home"] = "value" })
  if not o then
    err("luabatch status: " .. pos .. "\n" .. _M.usage)
    return 2
  end
  if o.help then out(_M.usage) return 0 end
  if #pos == 0 then
    -- no run named: the list of runs (luabatch runs)
    local rargv = {}
    if o.json then rargv[#rargv + 1] = "--json" end
    if o.home then rargv[#rargv + 1] = "--home"; rargv[#rargv + 1] = o.home end
    return require("luabatch.cli.runs").run(rargv, env)
  end
  if #pos ~= 1 then
    err("luabatch status: one RUN_ID expected\n" .. _M.usage)
    return 2
  end
  local home = store.home(o, env)
  local j, st = store.open_run("status", pos[1], home, err)
  if not j then return st end

  local ops = store.ops(st)
  local ok, rmsg = ops.refresh(st, ops.clients_for(st, env))
  if not ok then
    err("luabatch status: cannot ask AWS Batch, showing the journal's states: " .. log.redact(rmsg) .. "\n")
  end

  local run = st.run or {}
  if o.json then
    local jobs = {}
    for _, key in ipairs(st.order) do
      local js = st.jobs[key]
      jobs[#jobs + 1] = { key = key, job_id = js.job_id, strategy_id = js.strategy_id,
        attempt = js.attempt, job_name = js.job_name, batch_job_id = js.batch_job_id,
        status = js.status, exit_code = js.exit_code, reason = js.reason,
        log_stream = js.log_stream, terminated = js.terminated or nil,
        array_size = js.array_size, result = js.result_status }
    end
    local json = require "luabatch.json"
    local stage = require "luabatch.workflow.stage"
    out(json.encode({ run_id = pos[1], workflow = run.workflow, file = run.file,
      started = run.at, ended = st.ended and st.ended.status or nil,
      refreshed = ok and true or false, jobs = stage.array(jobs) }, { indent = "  " }) .. "\n")
    return 0
  end

  out(str_format("run %s  workflow %s  started %s  %s\n", pos[1], cell(run.workflow), store.iso(run.at),
    st.ended and ("ended " .. cell(st.ended.status)) or "not ended"))
  if #st.order == 0 then
    out("no Batch jobs recorded\n")
    return 0
  end
  local rows = {}
  for _, key in ipairs(st.order) do
    local js = st.jobs[key]
    local status = js.status
    if not status then status = js.batch_job_id and "SUBMITTED" or "NOT SUBMITTED" end
    local reason = js.reason
    if js.terminated and not reason then reason = js.terminate_reason end
    rows[#rows + 1] = { cell(key), cell(js.job_name), cell(js.batch_job_id), cell(status),
      cell(js.exit_code), cell(reason) }
  end
  out(table_text(rows, { "KEY", "JOB NAME", "BATCH ID", "STATUS", "EXIT", "REASON" }))
  return 0
end

return _M
