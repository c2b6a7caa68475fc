-- luabatch.workflow.engine: run a loaded workflow model.
--
--   local engine = require "luabatch.workflow.engine"
--   local ctx, err, code = engine.run(model, opts)
--
-- opts (all optional):
--   params     map of given params (strings from the CLI or native values)
--   job        run only this job id (its needs are not run)
--   getenv     function(name) -> value for ${VAR} (default os.getenv)
--   progress   function(event, info): "job-start", "job", "job-retry",
--              "stage-start", "stage" (see luabatch.cli.run for the fields)
--   log        function(line) for stage output lines (echo, ...)
--   output_line  function(line, fd) for the output of bash stages while they run
--   registry   directory list for call stages (default LUABATCH_REGISTRY or ./registry)
--   conf       directory searched by trigger stages (default: the workflow file's dir)
--   runners    map runs-on type -> runner module ({ run_job = fn }) overriding the defaults
--   cancelled  function() -> bool, asked at every stage boundary (SIGINT is always honoured)
--   run_id     this run's id (default: a new "YYYYMMDD-HHMMSS-<8 hex>")
--   runs_on    "local" | "aws_batch": run every job there, whatever its runs-on says
--   with       map merged under each job's runs-on `with:` (CLI --with K=V)
--   runner_opts  table handed to runners as env.runner_opts (journal, policy, follow, resume)
--
-- Runners get env.run_id, env.runner_opts, env.model, env.job_id and
-- env.job_with: the job's effective runs-on `with:` (opts.with under it,
-- `${{ }}` templates rendered against the workflow context).
--
-- Returns the final context { status, params, jobs = {<id> = record}, errors?,
-- info = {exec_start, exec_end, exec_latency} }, or nil, message, code when
-- the input is bad before anything ran (code "EPARAM": a missing required
-- param or one that does not coerce; the message names file:line).
--
-- Jobs run in `needs` order; a job starts as soon as its needs are done, so
-- independent jobs run concurrently (scheduler tasks).  Trigger rules
-- (all_success default, all_done, all_failed, one_success = at least one,
-- one_failed = at least one, none_skipped, none_failed); a rule that fails
-- aborts the workflow (no further job starts).  Workflow status =
-- validate_statuses over the job records.

local stage = require "luabatch.workflow.stage"
local job = require "luabatch.workflow.job"

local _M = { _VERSION = "0.1.0" }

local type = type
local pairs = pairs
local ipairs = ipairs
local pcall = pcall
local require = require
local tostring = tostring
local setmetatable = setmetatable
local str_format = string.format
local os_getenv = os.getenv

local object = stage.object

local core_ok, core = pcall(require, "luabatch.core")

local function interrupted()
  return core_ok and core.interrupted and core.interrupted() or false
end

local function dirname(path)
  if type(path) ~= "string" then return "." end
  local d = path:match("^(.*)/[^/]*$")
  if d == nil then return "." end
  if d == "" then return "/" end
  return d
end

---------------------------------------------------------------------------
-- Trigger rules
---------------------------------------------------------------------------

local function is_failed(r) return r.errors ~= nil or r.status == "FAILED" end
local function is_success(r) return r.errors == nil and r.status == "SUCCESS" end

--- check_needs(jobdef, records) -> "SUCCESS" | "FAILED" | "SKIP" | "CANCEL" | "WAIT"
function _M.check_needs(jobdef, records)
  local needs = jobdef.needs or {}
  if #needs == 0 then return "SUCCESS" end
  local recs = {}
  for i, n in ipairs(needs) do
    local r = records[n]
    if r == nil or r.status == "WAIT" then return "WAIT" end
    if r == false or (type(r) == "table" and next(r) == nil) then r = { status = "SUCCESS" } end
    recs[i] = r
  end
  local skips, cancel = 0, false
  for _, r in ipairs(recs) do
    if r.status == "SKIP" then skips = skips + 1 end
    if r.status == "CANCEL" then cancel = true end
  end
  if skips == #recs then return "SKIP" end
  if cancel then return "CANCEL" end
  local rule = jobdef.trigger_rule or "all_success"
  local ok
  if rule == "all_done" then
    ok = true
  elseif rule == "all_success" then
    ok = true
    for _, r in ipairs(recs) do if not is_success(r) then ok = false end end
  elseif rule == "all_failed" then
    ok = true
    for _, r in ipairs(recs) do if not is_failed(r) then ok = false end end
  elseif rule == "one_success" then
    ok = false
    for _, r in ipairs(recs) do if is_success(r) then ok = true end end
  elseif rule == "one_failed" then
    ok = false
    for _, r in ipairs(recs) do if is_failed(r) then ok = true end end
  elseif rule == "none_skipped" then
    ok = true
    for _, r in ipairs(recs) do if r.status == "SKIP" then ok = false end end
  elseif rule == "none_failed" then
    ok = true
    for _, r in ipairs(recs) do if is_failed(r) then ok = false end end
  else
    ok = false
  end
  return ok and "SUCCESS" or "FAILED"
end

---------------------------------------------------------------------------
-- The stage environment
---------------------------------------------------------------------------

local function param_error_message(model, err)
  local msg = type(err) == "table" and (err.message or tostring(err)) or tostring(err)
  if model.file and not msg:find(model.file, 1, true) then
    local line
    local name = msg:match("^param '([^']+)'")
    local decl = name and model.params and model.params[name]
    if type(decl) == "table" and type(decl.pos) == "table" then
      line = decl.pos.line
    elseif type(model.params_pos) == "table" then
      line = model.params_pos.line
    end
    if line then
      msg = str_format("%s:%d: %s", model.file, line, msg)
    else
      msg = str_format("%s: %s", model.file, msg)
    end
  end
  return msg
end

--- The environment passed to stage kinds (see wf.md): built once per run.
function _M.make_env(model, opts)
  opts = opts or {}
  local template = require "luabatch.workflow.template"
  local expr = require "luabatch.workflow.expr"
  local sched = require "luabatch.workflow.sched"
  local getenv = opts.getenv or os_getenv
  local env = {}
  env.sched = sched
  env.getenv = getenv
  env.model = model
  env.workflow_name = model.name
  env.render = function(value, ctx, o)
    local ro = { getenv = getenv, env = true }
    if o then for k, v in pairs(o) do ro[k] = v end end
    if ro.getenv == nil then ro.getenv = getenv end
    return template.render(value, ctx, ro)
  end
  env.eval = function(src, ctx) return expr.eval(src, ctx) end
  env.log = opts.log or function(line)
    require("luabatch.log").info("%s", line)
  end
  env.progress = opts.progress
  env.output_line = opts.output_line   -- function(line, fd): bash output while it runs
  local user_cancelled = opts.cancelled
  env.cancelled = function()
    return interrupted() or (user_cancelled ~= nil and user_cancelled()) or false
  end
  env.run_stages = function(stages, rctx, e) return stage.run_list(stages, rctx, e or env) end
  local reg = opts.registry or getenv("LUABATCH_REGISTRY") or "./registry"
  env.registry_path = reg
  env.conf = opts.conf or dirname(model.file)
  env.tmpdir = opts.tmpdir or getenv("TMPDIR") or "/tmp"
  env.load_workflow = function(name)
    local load = require "luabatch.workflow.load"
    return load.find(env.conf, name, { getenv = getenv })
  end
  env.run_workflow = function(child, params)
    local o = {}
    for k, v in pairs(opts) do o[k] = v end
    o.params = params
    o.job = nil
    o.conf = env.conf
    o.parents = {}
    for k, v in pairs(opts.parents or {}) do o.parents[k] = v end
    o.parents[model.name or "?"] = true
    return _M.run(child, o)
  end
  env.parents = opts.parents or {}
  env.run_id = opts.run_id
  env.runner_opts = opts.runner_opts or {}
  return env
end

---------------------------------------------------------------------------
-- Runners
---------------------------------------------------------------------------

local function runner_for(jobdef, opts)
  local t = opts.runs_on or (jobdef.runs_on and jobdef.runs_on.type) or "local"
  if opts.runners and opts.runners[t] then return opts.runners[t] end
  if t == "local" then return require "luabatch.runner.local" end
  local ok, mod = pcall(require, "luabatch.runner." .. t)
  if ok and type(mod) == "table" and mod.run_job then return mod end
  return nil, str_format("Job runs-on type: '%s' is not available in this build (runners: local, aws_batch).", t)
end

-- The job's effective runs-on `with:`: opts.with under the job's own,
-- `${{ }}` templates rendered -> map | nil, message.
local function job_with(env, jobdef, opts, wctx)
  local with = {}
  for k, v in pairs(opts.with or {}) do with[k] = v end
  local own = jobdef.runs_on and jobdef.runs_on.with
  if type(own) == "table" then
    for k, v in pairs(own) do
      if k ~= "pos" then with[k] = v end
    end
  end
  -- the loader substituted `${VAR}` in with: already (once is the rule)
  local v, err = env.render(with, wctx, { expand_env = false })
  if v == nil then return nil, "runs-on with: " .. tostring(err) end
  return v
end

local function skip_record(jobdef)
  local r = { status = "SKIP" }
  if job.has_matrix(jobdef) then r.strategies = object() end
  return r
end

---------------------------------------------------------------------------
-- Running
---------------------------------------------------------------------------

-- Jobs in an order where needs come first (load rejects cycles).
local function topo(model)
  local order, seen = {}, {}
  local function visit(id)
    if seen[id] then return end
    seen[id] = true
    local j = model.jobs[id]
    for _, n in ipairs((j and j.needs) or {}) do visit(n) end
    order[#order + 1] = id
  end
  local ids = model.job_order
  if not ids then
    ids = {}
    for id in pairs(model.jobs or {}) do ids[#ids + 1] = id end
    table.sort(ids)
  end
  for _, id in ipairs(ids) do visit(id) end
  return order
end

local function spawn(sched, fn)
  if sched.spawn then return sched.spawn(fn) end
  local cur = sched.current and sched.current()
  local s = cur and (cur.sched or cur.scheduler or cur.s)
  return s:spawn(fn)
end

local function run_in_task(model, opts, params)
  local sched = require "luabatch.workflow.sched"
  local env = _M.make_env(model, opts)
  local t0 = stage.now()
  local records = object()
  local state = { abort = false, errors = nil }

  local function run_one(id)
    local jobdef = model.jobs[id]
    local wctx = { params = params, jobs = stage.shallow(records), status = "WAIT" }
    local t1 = stage.now()
    if env.progress then env.progress("job-start", { job = id }) end
    local runner, rerr = runner_for(jobdef, opts)
    local rec
    if not runner then
      rec = { status = "FAILED", errors = { name = "JobError", message = rerr } }
      if job.has_matrix(jobdef) then rec.strategies = object() end
      rec.info = stage.info(t1, stage.now())
    else
      local with, werr = job_with(env, jobdef, opts, wctx)
      if with == nil then
        rec = { status = "FAILED", errors = { name = "JobError", message = werr } }
        if job.has_matrix(jobdef) then rec.strategies = object() end
        rec.info = stage.info(t1, stage.now())
      else
        local jenv = setmetatable({ job_id = id, job_with = with }, { __index = env })
        rec = runner.run_job(model, id, wctx, { env = jenv })
      end
    end
    records[id] = rec
    if env.progress then
      env.progress("job", { job = id, status = rec.status, seconds = stage.now() - t1, errors = rec.errors })
    end
    if rec.status == "FAILED" then
      state.errors = { name = "WorkflowError", message = str_format("Job execution, '%s', was failed.", id) }
    elseif rec.status == "CANCEL" then
      state.errors = { name = "WorkflowCancelError", message = str_format("Job execution, '%s', was canceled.", id) }
    end
  end

  if opts.job then
    if not model.jobs[opts.job] then
      return nil, str_format("%s: no job '%s' in workflow '%s'", tostring(model.file or "?"),
        opts.job, tostring(model.name)), "EJOB"
    end
    run_one(opts.job)
  else
    local tasks = {}
    for _, id in ipairs(topo(model)) do
      local jobdef = model.jobs[id]
      tasks[id] = spawn(sched, function()
        for _, n in ipairs(jobdef.needs or {}) do
          if tasks[n] then sched.join(tasks[n]) end
        end
        if state.abort then return end
        if env.cancelled() then
          state.cancelled = true
          return
        end
        local rule = _M.check_needs(jobdef, records)
        if rule == "WAIT" then return end -- a need left no record: aborted/cancelled
        if rule == "FAILED" then
          state.abort = true
          state.errors = { name = "WorkflowError", message = str_format(
            "Validate job trigger rule was failed with '%s'.", jobdef.trigger_rule or "all_success") }
          return
        end
        if rule == "SKIP" then
          records[id] = skip_record(jobdef)
          if env.progress then env.progress("job", { job = id, status = "SKIP", seconds = 0 }) end
          return
        end
        run_one(id)
      end)
    end
    for _, id in ipairs(topo(model)) do sched.join(tasks[id]) end
  end

  local statuses = {}
  for _, id in ipairs(model.job_order or topo(model)) do
    if records[id] then statuses[#statuses + 1] = records[id].status end
  end
  local status = stage.validate_statuses(statuses)
  if state.abort then status = "FAILED" end
  if state.cancelled and status ~= "FAILED" then
    status = "CANCEL"
    state.errors = state.errors or { name = "WorkflowCancelError",
      message = "Job execution was canceled because the event was set before start job execution." }
  end
  local ctx = { status = status, params = params, jobs = records }
  if state.errors and status ~= "SUCCESS" and status ~= "SKIP" then ctx.errors = state.errors end
  ctx.info = stage.info(t0, stage.now())
  return ctx
end

---------------------------------------------------------------------------
-- Before anything runs: every `${{ params.X }}` (X not optional) must name a
-- param that exists once the params are received; else "FILE:LINE:COL:" error.
---------------------------------------------------------------------------

local function param_refs_check(model, params)
  local template = require "luabatch.workflow.template"
  local bad
  local function at(pos)
    pos = type(pos) == "table" and pos or {}
    return str_format("%s:%d:%d", tostring(pos.file or model.file or "?"), pos.line or model.line or 1,
      pos.col or model.col or 1)
  end
  local function scan(v, pos, seen)
    if bad then return end
    if type(v) == "string" then
      for _, path in ipairs(template.paths(v)) do
        local a, b = path:match("^([^.]+)%.([^.]+)")
        if a == "params" and b and b:sub(-1) ~= "?" and params[b] == nil then
          bad = str_format("%s: template '%s' refers to params.%s, which is neither declared nor given",
            at(pos), v, b)
          return
        end
      end
    elseif type(v) == "table" then
      if seen[v] then return end
      seen[v] = true
      local own = v.pos
      for k, x in pairs(v) do
        if k ~= "pos" and k ~= "with" or (k == "with" and v.kind ~= nil) then
          local p = pos
          if type(own) == "table" then
            p = (own.values and own.values[k]) or own
            if p.file == nil then p = { file = own.file, line = p.line, col = p.col } end
          end
          scan(x, p, seen)
        end
      end
    end
  end
  for _, id in ipairs(model.job_order or {}) do
    local j = model.jobs[id]
    local seen = {}
    scan(j["if"], j.pos, seen)
    if j.strategy then scan(j.strategy.max_parallel, j.strategy.pos or j.pos, seen) end
    scan(j.stages, j.pos, seen)
    if bad then return nil, bad end
  end
  return true
end

---------------------------------------------------------------------------
-- For drivers that advance a run step by step instead of in one call
-- (luabatch.ngx.drive): the pieces run_in_task uses, unchanged.
--   engine.job_with(env, jobdef, opts, wctx) -> with | nil, msg   (opts.with under the job's own)
--   engine.skip_record(jobdef) -> the record of a job skipped by its needs
--   engine.order(model) -> job ids, needs first
--   engine.receive_params(model, given [, opts]) -> params | nil, msg, "EPARAM"
--     (what run() checks before anything runs; opts.skip_ref_check)
---------------------------------------------------------------------------

_M.job_with = job_with
_M.skip_record = skip_record
_M.order = topo

function _M.receive_params(model, given, opts)
  local load = require "luabatch.workflow.load"
  local params, perr
  if load.check_params then
    params, perr = load.check_params(model, given or {})
  else
    params, perr = require("luabatch.workflow.params").receive(model.params or {}, given or {})
  end
  if params == nil then return nil, param_error_message(model, perr), "EPARAM" end
  if not (opts and opts.skip_ref_check) then
    local ok, rerr = param_refs_check(model, params)
    if not ok then return nil, rerr, "EPARAM" end
  end
  return params
end

--- Run a workflow model (see the header) -> context | nil, msg, code.
function _M.run(model, opts)
  opts = opts or {}
  if opts.run_id == nil then
    local o = {}
    for k, v in pairs(opts) do o[k] = v end
    o.run_id = require("luabatch.journal").new_run_id()
    opts = o
  end
  local params, perr, pcode = _M.receive_params(model, opts.params, opts)
  if params == nil then return nil, perr, pcode end
  if opts.parents and opts.parents[model.name] then
    return nil, "Circle execute via trigger itself workflow name.", "ECYCLE"
  end
  local sched = require "luabatch.workflow.sched"
  if sched.current and sched.current() then
    return run_in_task(model, opts, params)
  end
  local s = sched.new()
  local res
  s:spawn(function()
    res = { pcall(run_in_task, model, opts, params) }
  end)
  s:run()
  if not res then return nil, "workflow run ended without a result", "EINTERNAL" end
  if not res[1] then error(res[2], 0) end
  return res[2], res[3], res[4]
end

return _M
