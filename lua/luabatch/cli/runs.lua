-- luabatch.cli.runs: the run store the run commands share (status, logs,
-- cancel, cleanup, attach): a run's journal opened by id, the AWS clients
-- of its jobs from the journal's "config" events (region, endpoints; never
-- credentials, which come from the default chain), and the DescribeJobs
-- refresh of what the journal does not know to be finished.
--
--   local runs = require "luabatch.cli.runs"
--   local out, err = runs.io(env)
--   local j, st = runs.open_run("status", run_id, runs.home(o, env), err)  -- nil, exit code
--   local clients_for = runs.clients_for(st, env)   -- function(job_id) -> clients, cfg
--   local ok, msg = runs.refresh(st, clients_for [, { all = true }])
--
-- env (all optional, the seam for tests): stdout, stderr (function(s) or
-- anything with :write), getenv, clients = function(cfg_event) -> { batch =,
-- logs =, s3 = } (default: luabatch.clients), sleep, now.

local batch = require "luabatch.batch"
local journal = require "luabatch.journal"

local _M = { _VERSION = "0.1.0" }

local type = type
local pairs = pairs
local ipairs = ipairs
local require = require
local tostring = tostring
local str_format = string.format
local tbl_concat = table.concat
local os_date = os.date
local floor = math.floor

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


return _M
