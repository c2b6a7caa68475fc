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
-- Also the shared plumbing of the run-inspecting commands (logs, cancel,
-- cleanup, attach): opening a run, AWS clients built from
-- the journal's "config" events (region, endpoints; never credentials,
-- which come from the default chain), and the DescribeJobs refresh.
--
-- Exit codes: 0 shown (even when AWS could not be asked: a warning says
-- so), 2 bad usage or unknown run.
--
-- env (all optional, the seam for tests): stdout, stderr (function(s) or
-- anything with :write), getenv, clients = function(cfg_event) -> { batch =,
-- logs =, s3 = } (default: real clients), sleep, now.

local args = require "luabatch.cli.args"
local batch = require "luabatch.batch"
local journal = require "luabatch.journal"
local log = require "luabatch.log"

local _M = { _VERSION = "0.1.0" }

local type = type
local pairs = pairs
local ipairs = ipairs
local require = require
local tostring = tostring
local tonumber = tonumber
local str_format = string.format
local str_rep = string.rep
local str_gsub = string.gsub
local str_find = string.find
local tbl_concat = table.concat
local os_date = os.date
local floor = math.floor

_M.usage = [==[
usage: luabatch status RUN_ID [--json] [--home DIR]

Show the jobs of a run: the journal's record, refreshed from AWS Batch for
the jobs not yet finished (one DescribeJobs call per 100 jobs).

options:
  --json        print the run and its jobs as JSON on stdout
  --home DIR    the journal home (default LUABATCH_HOME, else ~/.luabatch)
  -h, --help    this text

Columns: KEY (job/strategy/attempt), JOB NAME, BATCH ID, STATUS, EXIT, REASON.
Exit codes: 0 shown, 2 bad usage or unknown run.
]==]

---------------------------------------------------------------------------
-- Shared plumbing
---------------------------------------------------------------------------

--- io(env) -> out, err writers
function _M.io(env)
  env = env or {}
  local writer = require("luabatch.cli.out").writer
  return writer(env.stdout or io.stdout, true), writer(env.stderr or io.stderr, true)
end

--- The journal home of a command: --home DIR, else journal.home(getenv).
function _M.home(o, env)
  if o.home and o.home ~= "" then return o.home end
  return journal.home(env and env.getenv)
end

--- open_run(cmd, run_id, home, err) -> j, state | nil, exit code (message printed)
function _M.open_run(cmd, run_id, home, err)
  local j, msg, code = journal.open(run_id, { home = home })
  if not j then
    if code == "ENOENT" then
      err(str_format("luabatch %s: no run '%s' in %s\n", cmd, run_id, home))
    else
      err(str_format("luabatch %s: %s\n", cmd, tostring(msg)))
    end
    return nil, 2
  end
  return j, j:state()
end

-- One set of clients per distinct (region, endpoints) of the config events.
local function client_key(cfg)
  local e = type(cfg.endpoints) == "table" and cfg.endpoints or {}
  return tbl_concat({ tostring(cfg.region), tostring(e.batch), tostring(e.s3), tostring(e.logs) }, "|")
end

local function default_clients(cfg, env)
  local endpoints = {}
  if type(cfg.endpoints) == "table" then
    for k, v in pairs(cfg.endpoints) do
      if type(v) == "string" and v ~= "" then endpoints[k] = v end
    end
  end
  return require("luabatch.clients").set({ endpoints = endpoints, env = env and env.getenv or nil,
    region = type(cfg.region) == "string" and cfg.region ~= "" and cfg.region or nil })
end

--- clients_for(state, env) -> function(job_id) -> clients | nil
-- Clients of a job from the config event of its workflow job (else the
-- run's first config event; nil when the journal has none).
function _M.clients_for(st, env)
  local cache = {}
  local first
  for _, cfg in pairs(st.configs) do
    if not first or tostring(cfg.job_id) < tostring(first.job_id) then first = cfg end
  end
  return function(job_id)
    local cfg = (job_id ~= nil and st.configs[job_id]) or first
    if not cfg then return nil end
    local k = client_key(cfg)
    local c = cache[k]
    if not c then
      local make = env and env.clients
      c = make and make(cfg) or default_clients(cfg, env)
      cache[k] = c
    end
    return c, cfg
  end
end

-- Batch's own terminal states: a job the journal recorded as MISSING (the
-- runner lost sight of it) is asked about again.
local TERMINAL = batch.TERMINAL

--- Fold one DescribeJobs job description into js (status, reason, exit code, log stream).
function _M.apply_description(js, d)
  js.status = d.status or js.status
  local c = type(d.container) == "table" and d.container or {}
  local reason = d.statusReason
  if type(c.reason) == "string" and c.reason ~= "" then
    reason = reason and (reason .. "; " .. c.reason) or c.reason
  end
  js.reason = reason or js.reason
  if type(c.exitCode) == "number" then js.exit_code = c.exitCode end
  if type(c.logStreamName) == "string" and c.logStreamName ~= "" then js.log_stream = c.logStreamName end
  js.description = d
end

--- refresh(state, clients_for [, opts]) -> true | nil, msg
-- DescribeJobs (<= 100 ids per call, one batch per client) for the jobs
-- with a Batch id whose recorded status is not terminal (opts.all: every
-- job with a Batch id).  Updates the js tables in state.jobs in place;
-- js.description = the job description.
function _M.refresh(st, clients_for, opts)
  opts = opts or {}
  local groups, gorder = {}, {}
  for _, key in ipairs(st.order) do
    local js = st.jobs[key]
    if js.batch_job_id and (opts.all or not TERMINAL[js.status or ""]) then
      local c = clients_for(js.job_id)
      if c then
        local g = groups[c]
        if not g then
          g = { ids = {}, by_id = {} }
          groups[c] = g
          gorder[#gorder + 1] = c
        end
        if not g.by_id[js.batch_job_id] then
          g.ids[#g.ids + 1] = js.batch_job_id
          g.by_id[js.batch_job_id] = {}
        end
        local l = g.by_id[js.batch_job_id]
        l[#l + 1] = js
      end
    end
  end
  local errs = {}
  for _, c in ipairs(gorder) do
    local g = groups[c]
    local ans, msg = c.batch:describe_jobs_all(g.ids)
    if not ans then
      errs[#errs + 1] = msg
    else
      for _, d in ipairs(ans.jobs or {}) do
        for _, js in ipairs(g.by_id[d.jobId] or {}) do _M.apply_description(js, d) end
      end
    end
  end
  if #errs > 0 then return nil, tbl_concat(errs, "; ") end
  return true
end

--- A readable time (UTC) of epoch seconds.
function _M.iso(t)
  if type(t) ~= "number" then return "-" end
  return os_date("!%Y-%m-%dT%H:%M:%SZ", floor(t))
end

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
  local out, err = _M.io(env)
  local o, pos = args.parse(argv, { ["--json"] = "flag", ["--home"] = "value" })
  if not o then
    err("luabatch status: " .. pos .. "\n" .. _M.usage)
    return 2
  end
  if o.help then out(_M.usage) return 0 end
  if #pos ~= 1 then
    err("luabatch status: " .. (#pos == 0 and "a RUN_ID is required" or "one RUN_ID expected") .. "\n" .. _M.usage)
    return 2
  end
  local home = _M.home(o, env)
  local j, st = _M.open_run("status", pos[1], home, err)
  if not j then return st end

  local ok, rmsg = _M.refresh(st, _M.clients_for(st, env))
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

  out(str_format("run %s  workflow %s  started %s  %s\n", pos[1], cell(run.workflow), _M.iso(run.at),
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
