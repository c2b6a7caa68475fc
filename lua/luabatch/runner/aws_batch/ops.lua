-- luabatch.runner.aws_batch.ops: what the run commands (status, logs,
-- cancel, cleanup) do to the Batch side of a journaled run -- the runner's
-- own hooks (luabatch.runner.ops("aws_batch")); the commands print, this
-- module acts.
--
--   local ops = require "luabatch.runner.aws_batch.ops"
--   local clients_for = ops.clients_for(st, env)   -- function(job_id) -> clients, cfg
--   ops.refresh(st, clients_for [, { all = true }]) -> true | nil, msg
--   ops.find_by_name(c, cfg, js) -> batch id, status | nil   (a lost SubmitJob answer)
--   ops.terminate(c, js, reason) -> true | nil, msg
--   ops.terminate_unfinished(st, clients_for, o) -> n, failed | nil, msg   (cancel, cleanup, nginx)
--   ops.select_jobs(st, sel), ops.describe_units(units, err), ops.expand_arrays(units, out),
--   ops.group_of(desc, cfg), ops.streams_of(desc)                 (logs)
--   ops.prefixes(st) -> { { bucket, prefix, job_id } }, ops.own_prefix(prefix, run_id)   (cleanup)
--   ops.TERMINAL: Batch's own terminal states (a journaled MISSING is asked again)
-- st is the journal's folded state; env as luabatch.cli.store (env.clients
-- = function(cfg_event) -> clients replaces luabatch.clients in specs).

local batch = require "luabatch.batch"
local log = require "luabatch.log"

local _M = { _VERSION = "0.1.0" }

local type = type
local pcall = pcall
local pairs = pairs
local ipairs = ipairs
local require = require
local tostring = tostring
local str_sub = string.sub
local tbl_concat = table.concat
local floor = math.floor

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
_M.TERMINAL = TERMINAL

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


-- The Batch id of a job whose SubmitJob answer was lost: ListJobs in its
-- queue filtered by its (unique) job name.
function _M.find_by_name(c, cfg, js)
  if not (cfg and type(cfg.queue) == "string" and cfg.queue ~= "" and js.job_name) then return nil end
  local found
  for s in c.batch:list_jobs({ jobQueue = cfg.queue,
    filters = { { name = "JOB_NAME", values = { js.job_name } } } }) do
    if not s then break end
    if s.jobName == js.job_name then
      found = s
      if not batch.TERMINAL[s.status or ""] then break end
    end
  end
  return found and found.jobId, found and found.status
end

--- terminate(c, js, reason) -> true | nil, msg: TerminateJob for js's Batch job
function _M.terminate(c, js, reason)
  local ans, msg = c.batch:terminate_job(js.batch_job_id, reason)
  if not ans then return nil, msg end
  return true
end

--- terminate_unfinished(st, clients_for, o) -> terminated, failed | nil, msg
-- Stop a journaled run's Batch jobs that are not known to be finished:
-- DescribeJobs first (refresh: a finished one is left alone), a job whose
-- SubmitJob answer was lost is found by name (journaled "submitted"), then
-- TerminateJob, each journaled as a "terminate" event.  What `luabatch
-- cancel`, `luabatch cleanup` and nginx's DELETE of a journaled run do.
-- o: reason; journal (its :append(ev) takes the events); on_job(key,
-- batch_id, was, dry) after each TerminateJob; on_error(msg) for each
-- failure; dry_run (nothing terminated or journaled: on_job is called
-- with dry = true); strict (a failed DescribeJobs returns nil, msg before
-- anything is terminated; else it is reported and every job not recorded
-- as finished is terminated).
function _M.terminate_unfinished(st, clients_for, o)
  local report = o.on_error or function() end
  local function append(ev)
    if o.dry_run or not o.journal then return end
    local ok, msg = o.journal:append(ev)
    if not ok then report("journal: " .. tostring(msg)) end
  end
  local pok, rok, rmsg = pcall(_M.refresh, st, clients_for)
  if not pok then rok, rmsg = nil, rok end
  if not rok then
    rmsg = log.redact(tostring(rmsg))
    if o.strict then return nil, "DescribeJobs failed: " .. rmsg end
    report("DescribeJobs failed, terminating every job not recorded as finished: " .. rmsg)
  end
  local done, failed = 0, 0
  for _, key in ipairs(st.order) do
    local js = st.jobs[key]
    local c, cfg = clients_for(js.job_id)
    if not js.batch_job_id and c and not js.status then
      local id, s = _M.find_by_name(c, cfg, js)
      if id then
        js.batch_job_id, js.status = id, s
        append({ ev = "submitted", key = key, batch_job_id = id, job_name = js.job_name })
      end
    end
    if js.batch_job_id and not TERMINAL[js.status or ""] then
      local was = js.status or "SUBMITTED"
      if not c then
        report(key .. ": the journal has no config event (region, endpoints)")
        failed = failed + 1
      elseif o.dry_run then
        if o.on_job then o.on_job(key, js.batch_job_id, was, true) end
      else
        local ans, tmsg = _M.terminate(c, js, o.reason)
        if ans then
          append({ ev = "terminate", key = key, batch_job_id = js.batch_job_id, reason = o.reason })
          if o.on_job then o.on_job(key, js.batch_job_id, was) end
          done = done + 1
        else
          report(key .. " (" .. tostring(js.batch_job_id) .. "): " .. log.redact(tostring(tmsg)))
          failed = failed + 1
        end
      end
    end
  end
  return done, failed
end

function _M.select_jobs(st, sel)
  local out = {}
  for _, key in ipairs(st.order) do
    local js = st.jobs[key]
    if js.batch_job_id and (sel == nil or key == sel or js.job_id == sel or js.batch_job_id == sel) then
      out[#out + 1] = js
    end
  end
  return out
end

-- The log group of a described job (its awslogs options), else the run's.
function _M.group_of(d, cfg)
    local lc = type(d.container) == "table" and d.container.logConfiguration
  if type(lc) == "table" and type(lc.options) == "table" then
    local g = lc.options["awslogs-group"]
    if type(g) == "string" and g ~= "" then return g end
  end
  if cfg and type(cfg.log_group) == "string" and cfg.log_group ~= "" then return cfg.log_group end
  return batch.DEFAULT_LOG_GROUP
end

-- Every log stream of a described job, in attempt order.
function _M.streams_of(d)
  local list, seen = {}, {}
  local function add(s)
    if type(s) == "string" and s ~= "" and not seen[s] then
      seen[s] = true
      list[#list + 1] = s
    end
  end
  if type(d.attempts) == "table" then
    for _, a in ipairs(d.attempts) do
      if type(a) == "table" and type(a.container) == "table" then add(a.container.logStreamName) end
    end
  end
  if type(d.container) == "table" then add(d.container.logStreamName) end
  return list
end

-- Units to print: one per plain job, one per child of an array job.
-- unit = { label, js, id, client, cfg, desc, tailers = { [stream] = t }, streams = {...}, done }
function _M.describe_units(units, err)
  local groups, gorder = {}, {}
  for _, u in ipairs(units) do
    if not u.done then
      local g = groups[u.client]
      if not g then
        g = { ids = {}, by_id = {} }
        groups[u.client] = g
        gorder[#gorder + 1] = u.client
      end
      if not g.by_id[u.id] then g.ids[#g.ids + 1] = u.id end
      g.by_id[u.id] = u
    end
  end
  local ok = true
  for _, c in ipairs(gorder) do
    local g = groups[c]
    local ans, msg = c.batch:describe_jobs_all(g.ids)
    if not ans then
      err("luabatch logs: " .. log.redact(msg) .. "\n")
      ok = false
    else
      for _, d in ipairs(ans.jobs or {}) do
        local u = g.by_id[d.jobId]
        if u then u.desc = d end
      end
    end
  end
  return ok
end

function _M.expand_arrays(units, sel_units)
  -- an array parent is replaced by its children "<id>:<i>"
  for _, u in ipairs(units) do
    local d = u.desc
    local size = d and type(d.arrayProperties) == "table" and d.arrayProperties.size
    if type(size) == "number" and size > 0 and not u.child then
      for i = 0, floor(size) - 1 do
        sel_units[#sel_units + 1] = { label = u.label .. ":" .. i, js = u.js, id = u.id .. ":" .. i,
          client = u.client, cfg = u.cfg, tailers = {}, streams = {}, child = true }
      end
    else
      sel_units[#sel_units + 1] = u
    end
  end
end

--- Is `prefix` the run's own prefix (".../<run_id>" or "<run_id>")?
function _M.own_prefix(prefix, run_id)
  if type(prefix) ~= "string" or prefix == "" then return false end
  if prefix == run_id then return true end
  local tail = "/" .. run_id
  return #prefix > #tail and str_sub(prefix, -#tail) == tail
end

-- The distinct (bucket, prefix) pairs of a run's config events.
function _M.prefixes(st)
  local list, seen = {}, {}
  local ids = {}
  for id in pairs(st.configs) do ids[#ids + 1] = tostring(id) end
  table.sort(ids)
  for _, id in ipairs(ids) do
    local cfg = st.configs[id]
    if type(cfg.bucket) == "string" and cfg.bucket ~= "" and cfg.prefix ~= nil then
      local k = cfg.bucket .. "\0" .. tostring(cfg.prefix)
      if not seen[k] then
        seen[k] = true
        list[#list + 1] = { bucket = cfg.bucket, prefix = tostring(cfg.prefix), job_id = cfg.job_id }
      end
    end
  end
  return list
end


return _M
