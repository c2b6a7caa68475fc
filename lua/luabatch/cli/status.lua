-- luabatch.cli.status: `luabatch status RUN_ID [--json] [--home DIR]`
--
--   local code = require("luabatch.cli.status").run({ "20261124-101500-a1b2c3d4" }, env)
--
-- Reads the run's journal, asks AWS Batch for the current state of the jobs
-- the journal does not know to be finished (one DescribeJobs per 100 ids),
-- and prints one row per journal key: the job or strategy (named by its
-- matrix values, as failure reports name it: luabatch.workflow.job.label; a
-- retry says "try N"), Batch job id, status, exit code, when it was
-- submitted, how long it took (until now while it runs) and, unless it
-- succeeded, the reason (the container's own when Batch's is only
-- "Essential container in task exited").  The table fits the terminal (tabular.lua: COLUMNS
-- or the terminal's width; long cells end in an ellipsis; no limit when
-- stdout is not a terminal).  A run whose files `luabatch cleanup` deleted
-- says "cleaned".  With --json: { run_id, workflow, started, ended,
-- cleaned, jobs = [ { key, label, started_at, ended_at, ... } ] } on
-- stdout.  The journal is only read, and once.
--
-- Exit codes: 0 shown (even when AWS could not be asked: a warning says
-- so), 2 bad usage or unknown run.
--
-- env: as luabatch.cli.store (the run store these commands share), plus
-- now = function() -> epoch s, isatty, term_width (as luabatch.cli.tabular).

local args = require "luabatch.cli.args"
local store = require "luabatch.cli.store"
local job = require "luabatch.workflow.job"
local tabular = require "luabatch.cli.tabular"
local log = require "luabatch.log"

local _M = { _VERSION = "0.1.0" }

local type = type
local next = next
local ipairs = ipairs
local require = require
local tostring = tostring
local tonumber = tonumber
local str_format = string.format
local os_date = os.date
local os_time = os.time
local floor = math.floor
local cell = tabular.cell

_M.usage = [==[
usage: luabatch status [RUN_ID] [--json] [--home DIR]

Show the jobs of a run: the journal's record, refreshed from AWS Batch for
the jobs not yet finished (one DescribeJobs call per 100 jobs).  Without a
RUN_ID: the list of runs, newest first (luabatch runs).

options:
  --json        print the run and its jobs as JSON on stdout
  --home DIR    the journal home (default LUABATCH_HOME, else ~/.luabatch)
  -h, --help    this text

Columns: JOB (a strategy by its matrix values, "try N" for a retry), BATCH
ID, STATUS, EXIT, STARTED (UTC; the date when not the run's), DURATION
(so far, while it runs), REASON (none for a success).  The table fits the
terminal (COLUMNS, else its width): long cells end in an ellipsis.
Exit codes: 0 shown, 2 bad usage or unknown run.
]==]

---------------------------------------------------------------------------
-- status
---------------------------------------------------------------------------

-- What the journal's events say of each key beyond the fold: when it was
-- submitted, when its result came, its matrix values.
local function times_of(events)
  local t = {}
  local function of(key)
    local x = t[key]
    if not x then x = {} t[key] = x end
    return x
  end
  for _, e in ipairs(events) do
    if type(e.key) == "string" then
      local x = of(e.key)
      local at = tonumber(e.at)
      if e.ev == "submit" then
        x.submit_at = x.submit_at or at
        if type(e.matrix) == "table" then x.matrix = e.matrix end
      elseif e.ev == "result" then
        x.result_at = at
        if type(e.record) == "table" and type(e.record.matrix) == "table" then x.matrix = e.record.matrix end
      elseif e.ev == "state" then
        x.state_at = at
      end
    end
  end
  return t
end

--- label(js, matrix) -> "fan[region=eu]" (luabatch.workflow.job.label),
-- "job/<strategy id>" when the matrix is unknown; " try N" for attempt N-1 > 0
function _M.label(js, matrix)
  local id, sid = js.job_id, js.strategy_id
  if (type(matrix) ~= "table" or next(matrix) == nil) and sid ~= nil and sid ~= "EMPTY" then
    id = tostring(id) .. "/" .. tostring(sid)
  end
  return job.label(id, matrix, js.attempt)
end

--- when(t, day) -> "HH:MM:SS" when t (epoch s, UTC) falls on `day`
-- ("YYYY-MM-DD"), else "YYYY-MM-DD HH:MM:SS"; "-" for no time
function _M.when(t, day)
  if type(t) ~= "number" then return "-" end
  local d = os_date("!%Y-%m-%d", floor(t))
  if d == day then return os_date("!%H:%M:%S", floor(t)) end
  return os_date("!%Y-%m-%d %H:%M:%S", floor(t))
end

-- Start and end (epoch s) of a key: submitted, then its result (else what
-- Batch said, else the last state event of a finished job).
local function span(js, x, ops)
  x = x or {}
  local d = type(js.description) == "table" and js.description or nil
  local t0 = x.submit_at or (d and tonumber(d.createdAt) and d.createdAt / 1000)
  local t1 = x.result_at
  if not t1 and ops.TERMINAL[js.status or ""] then
    t1 = (d and tonumber(d.stoppedAt) and d.stoppedAt / 1000) or x.state_at
  end
  return t0, t1
end

--- rows(st, events, ops, now) -> list of { key, label, status, reason, started_at, ended_at, js }
function _M.rows(st, events, ops, now)
  local t = times_of(events)
  local list = {}
  for _, key in ipairs(st.order) do
    local js = st.jobs[key]
    local x = t[key]
    local rec = st.results[key]
    local matrix = x and x.matrix or (type(rec) == "table" and rec.matrix) or nil
    local status = js.status
    if not status then status = js.batch_job_id and "SUBMITTED" or "NOT SUBMITTED" end
    local reason = js.reason
    if js.terminated and not reason then reason = js.terminate_reason end
    if status == "SUCCEEDED" then reason = nil end
    -- "Essential container in task exited" says only that it ended: the
    -- container's own reason (out of memory, ...) is the one to see
    if type(reason) == "string" then reason = reason:gsub("^Essential container in task exited; ", "") end
    local t0, t1 = span(js, x, ops)
    list[#list + 1] = { key = key, label = _M.label(js, matrix), status = status, reason = reason,
      started_at = t0, ended_at = t1, running = not t1 and not ops.TERMINAL[status] or nil, js = js,
      now = now }
  end
  return list
end

--- table_text(rows, run_at, opts) -> the status table (opts as tabular.render)
function _M.table_text(rows, run_at, opts)
  local pretty = require "luabatch.pretty"
  local day = type(run_at) == "number" and os_date("!%Y-%m-%d", floor(run_at)) or nil
  local cells = {}
  for _, r in ipairs(rows) do
    local dur = "-"
    local t1 = r.ended_at or (r.running and r.now) or nil
    if r.started_at and t1 and t1 >= r.started_at then dur = pretty.secs(t1 - r.started_at) end
    cells[#cells + 1] = { cell(r.label), cell(r.js.batch_job_id), cell(r.status), cell(r.js.exit_code),
      _M.when(r.started_at, day), dur, r.reason and cell(r.reason) or "" }
  end
  return tabular.render({ "JOB", "BATCH ID", "STATUS", "EXIT", "STARTED", "DURATION", "REASON" }, cells,
    { width = opts and opts.width, shrink = { 7, 1, 2 }, ellipsis = opts and opts.ellipsis })
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
  local j, st, events = store.open_run("status", pos[1], home, err)
  if not j then return st end

  local ops = store.ops(st)
  local ok, rmsg = ops.refresh(st, ops.clients_for(st, env))
  if not ok then
    err("luabatch status: cannot ask AWS Batch, showing the journal's states: " .. log.redact(rmsg) .. "\n")
  end

  local run = st.run or {}
  local now = env.now and env.now() or os_time()
  local rows = _M.rows(st, events, ops, now)
  local cleaned = store.cleaned(st)
  if o.json then
    local jobs = {}
    for _, r in ipairs(rows) do
      local js = r.js
      jobs[#jobs + 1] = { key = r.key, label = r.label, job_id = js.job_id, strategy_id = js.strategy_id,
        attempt = js.attempt, job_name = js.job_name, batch_job_id = js.batch_job_id,
        status = js.status, exit_code = js.exit_code, reason = js.reason,
        log_stream = js.log_stream, terminated = js.terminated or nil,
        array_size = js.array_size, result = js.result_status,
        started_at = r.started_at, ended_at = r.ended_at }
    end
    local json = require "luabatch.json"
    local stage = require "luabatch.workflow.stage"
    out(json.encode({ run_id = pos[1], workflow = run.workflow, file = run.file,
      started = run.at, ended = st.ended and st.ended.status or nil,
      cleaned = cleaned and cleaned.at or nil,
      refreshed = ok and true or false, jobs = stage.array(jobs) }, { indent = "  " }) .. "\n")
    return 0
  end

  out(str_format("run %s  workflow %s  started %s  %s%s\n", pos[1], cell(run.workflow), store.iso(run.at),
    st.ended and ("ended " .. cell(st.ended.status)) or "not ended",
    cleaned and ("  cleaned " .. store.iso(cleaned.at)) or ""))
  if #st.order == 0 then
    out("no Batch jobs recorded\n")
    return 0
  end
  out(_M.table_text(rows, run.at, { width = tabular.width(env), ellipsis = tabular.ellipsis(env) }))
  return 0
end

return _M
