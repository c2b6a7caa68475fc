-- luabatch.workflow.engine: run a loaded workflow model (the coroutine
-- driver of luabatch.workflow.plan, which holds what a run means).
--
--   local engine = require "luabatch.workflow.engine"
--   local ctx, err, code = engine.run(model, opts)
--   local record, jctx = engine.run_job(model, job_id, context, opts)
--
-- opts (all optional):
--   params     map of given params (strings from the CLI or native values)
--   job        run only this job id (its needs are not run)
--   jobs       records taken as done (a resume; with `job`: its context)
--   on_job_done  function(job_id, record, runs_on, how) after each job; how =
--              { key (its fingerprint), cached = true (taken from opts.cache),
--              reused = n (strategies taken from it) }
--   cache      an ended run's jobs { [id] = { key, record } }: what may be
--              reused (luabatch.workflow.plan, "reuse")
--   on_event   function(event) for each plan event (not ticks): a journal of them
--   replay     such events of an earlier client of the run: resume from them
--   getenv     function(name) -> value for ${VAR} (default os.getenv)
--   progress   function(event, info): "job-start" {job, runs_on}, "job",
--              "job-retry", "stage-start", "stage" (see luabatch.cli.run),
--              "strategy" {job, strategy, values, state, attempt}: state
--              "started", then its record's status; a runner may send its
--              own states between (Batch: RUNNABLE, RUNNING, ... with
--              reason, hint).  A job run elsewhere (not local) gets its
--              "stage" events from its strategy records as they end.
--   log        function(line) for stage output lines (echo, ...)
--   output_line  function(line, fd) for the output of bash stages while they run
--   registry   directory list for call stages (default LUABATCH_REGISTRY or ./registry)
--   conf       directory searched by trigger stages (default: the workflow file's dir)
--   runners    map runs-on type -> runner module overriding the defaults: one
--              with open_job (strategies paced by the plan: runner/local.lua)
--              or with run_job only (it runs the whole job itself)
--   cancelled  function() -> reason | false, asked at every wait (<= 1 s)
--              and stage boundary (SIGINT is always honoured)
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
-- the input is bad before anything ran ("EPARAM": a param, the message
-- names file:line; "EJOB": no such job; "ECYCLE": a trigger loop).

local stage = require "luabatch.workflow.stage"
local job = require "luabatch.workflow.job"
local plan = require "luabatch.workflow.plan"

local _M = { _VERSION = "0.1.0" }

local type = type
local pairs = pairs
local ipairs = ipairs
local pcall = pcall
local require = require
local tostring = tostring
local tonumber = tonumber
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
    o.job, o.jobs, o.on_job_done, o.cache, o.replay, o.on_event = nil, nil, nil, nil, nil, nil
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

--- local_job(model, job_id) -> the handle of a job run here: each strategy
-- is its stages (luabatch.runner.local's open_job; the engine's own runner
-- before a registry is in use).
function _M.local_job(model, job_id)
  local jobdef = model.jobs[job_id]
  return { run_strategy = function(_, combo, w, senv) return job.run_stages(jobdef, combo, w, senv) end }
end

-- The runner registry (luabatch.runner sets it when loaded: the runners are
-- the layer above); without one only local jobs run.
local registry
function _M.use_runners(reg) registry = reg end

-- The job's runner: opts.runners[type] (tests, embedders), else the
-- registry's -> module | nil, message
local function runner_for(jobdef, opts)
  local t = opts.runs_on or (jobdef.runs_on and jobdef.runs_on.type) or "local"
  if opts.runners and opts.runners[t] then return opts.runners[t] end
  if registry and registry.known(t) then return registry.get(t) end
  if not registry and t == "local" then return { open_job = _M.local_job } end
  return nil, str_format("Job runs-on type: '%s' is not available in this build (runners: %s).", t,
    registry and table.concat(registry.types(), ", ") or "local")
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

---------------------------------------------------------------------------
-- Running: the coroutine driver of luabatch.workflow.plan
---------------------------------------------------------------------------

-- Open the runner of a job the plan asks for -> the "prepared" event.
-- A runner with open_job runs strategies the plan paces; one with run_job
-- only runs the whole job itself (tests' fakes, third-party runners).
local function prepare(d, a)
  local model, opts, env = d.model, d.opts, d.env
  local id, jobdef = a.job, model.jobs[a.job]
  local now = stage.now()
  local runner, rerr = runner_for(jobdef, opts)
  if not runner then return { type = "prepared", job = id, error = rerr, now = now } end
  local with, werr = job_with(env, jobdef, opts, a.wctx)
  if with == nil then return { type = "prepared", job = id, error = werr, now = now } end
  local jenv = setmetatable({ job_id = id, job_with = with }, { __index = env })
  d.jenv[id], d.types[id] = jenv, opts.runs_on or (jobdef.runs_on and jobdef.runs_on.type) or "local"
  if not runner.open_job then
    d.spawn(function()
      local rec = runner.run_job(model, id, a.wctx, { env = jenv })
      d.push({ type = "job_ended", job = id, record = rec, now = stage.now() })
    end)
    return { type = "prepared", job = id, whole = true, now = now }
  end
  local h, failed = runner.open_job(model, id, a.wctx, { env = jenv })
  if not h then return { type = "prepared", job = id, record = failed, now = stage.now() } end
  d.handles[id] = h
  return { type = "prepared", job = id, array = h.array, deadline = h.deadline, cap = h.max_parallel,
           now = stage.now() }
end

-- Progress of a strategy that ended: its state, and for a job run
-- elsewhere its stage lines (a local one sent them as they ran).
local function strategy_progress(d, id, combo, k, rec)
  local progress = d.env.progress
  if not progress then return end
  if d.types[id] ~= "local" and type(rec.stages) == "table" then
    local list = {}
    for key, srec in pairs(rec.stages) do
      if type(srec) == "table" then
        list[#list + 1] = { key = key, rec = srec, info = type(srec.info) == "table" and srec.info or {} }
      end
    end
    table.sort(list, function(x, y)       -- in the order they ran
      return tostring(x.info.exec_start or "") .. x.key < tostring(y.info.exec_start or "") .. y.key
    end)
    for _, e in ipairs(list) do
      progress("stage", { key = e.key, status = e.rec.status, seconds = tonumber(e.info.exec_latency) or 0,
                          errors = e.rec.errors, outputs = e.rec.outputs, job = id, strategy = combo.id,
                          remote = true })
    end
  end
  progress("strategy", { job = id, strategy = combo.id, values = combo.values, state = rec.status, attempt = k })
end

-- Start the strategies of a "run" action, each a scheduler task.
local function run_strategies(d, a)
  local id, k, h, jenv = a.job, a.attempt, d.handles[a.job], d.jenv[a.job]
  if d.env.progress then
    for _, combo in ipairs(a.combos) do
      d.env.progress("strategy", { job = id, strategy = combo.id, values = combo.values, state = "started", attempt = k })
    end
  end
  local function stopped(sid)
    return function() return d.stops[id .. "/" .. k .. "/" .. sid] or jenv.cancelled() end
  end
  local function guarded(fn, ...)
    local ok, res = pcall(fn, ...)
    if ok then return res end
    require("luabatch.log").error("job '%s': %s", id, tostring(res))
    return nil, tostring(res)
  end
  if a.array then
    d.spawn(function()
      local group = { cancel = false, fail_fast = job.fail_fast(d.model.jobs[id]) }
      local aenv = setmetatable({ attempt = k, cancelled = stopped("@array") }, { __index = jenv })
      local recs, err = guarded(h.run_all, h, a.combos, a.wctx, aenv, group)
      local by_sid = {}
      for i, combo in ipairs(a.combos) do
        by_sid[combo.id] = recs and recs[i] or job.failed_strategy(combo, err or "no record")
        strategy_progress(d, id, combo, k, by_sid[combo.id])
      end
      d.push({ type = "ended", job = id, attempt = k, records = by_sid, now = stage.now() })
    end)
    return
  end
  for _, combo in ipairs(a.combos) do
    d.spawn(function()
      local senv = setmetatable({ strategy = combo.id, attempt = k, cancelled = stopped(combo.id) },
        { __index = jenv })
      local rec, err = guarded(h.run_strategy, h, combo, a.wctx, senv)
      rec = rec or job.failed_strategy(combo, err)
      strategy_progress(d, id, combo, k, rec)
      d.push({ type = "ended", job = id, attempt = k, sid = combo.id, now = stage.now(), record = rec })
    end)
  end
end

local function act(d, a)
  local env = d.env
  local op = a.op
  if op == "prepare" then
    if env.progress then
      local jobdef = d.model.jobs[a.job]
      env.progress("job-start", { job = a.job, runs_on = d.opts.runs_on or (jobdef.runs_on and jobdef.runs_on.type) or "local" })
    end
    d.push(prepare(d, a))
  elseif op == "run" then
    run_strategies(d, a)
  elseif op == "stop" then
    for _, sid in ipairs(a.sids) do d.stops[a.job .. "/" .. a.attempt .. "/" .. sid] = a.why end
    d.stops[a.job .. "/" .. a.attempt .. "/@array"] = a.why
  elseif op == "retry" then
    if env.progress then env.progress("job-retry", { job = a.job, attempt = a.attempt, errors = a.errors }) end
  elseif op == "job_done" then
    local h = d.handles[a.job]
    if h and h.close then
      local ok, err = pcall(h.close, h, a.record.status)
      if not ok then require("luabatch.log").error("job '%s': %s", a.job, tostring(err)) end
    end
    if d.opts.on_job_done then
      d.opts.on_job_done(a.job, a.record, d.types[a.job], { key = a.key, cached = a.cached, reused = a.reused })
    end
    if env.progress then
      env.progress("job", { job = a.job, status = a.record.status, seconds = a.seconds, errors = a.record.errors,
                            cached = a.cached, reused = a.reused })
    end
  elseif op == "done" then
    d.final = a.context
  end
end

-- A resumed run (opts.replay: the plan events of the run so far, as
-- opts.on_event heard them): the plan's state rebuilt from them (their
-- actions happened already), then the jobs in flight taken up again -- each
-- runner reopened and the strategies that had not ended run again (the
-- Batch runner finds them in its journal: a recorded result is reused, a
-- submitted job watched, nothing submitted twice).
local function resume(d, events)
  local st, model = d.st, d.model
  for _, ev in ipairs(events) do plan.step(st, model, ev, d.env) end
  for _, id in ipairs(st.order) do
    local js = st.jobs[id]
    if js.state == "preparing" or js.state == "running" or js.state == "whole" then
      local wctx = { params = js.wctx.params, jobs = js.wctx.jobs, status = "WAIT" }
      local ev = prepare(d, { job = id, wctx = wctx })
      if js.state == "preparing" then
        d.push(ev)
      elseif js.state == "running" then
        local live = {}
        for _, combo in ipairs(js.combos) do if js.live[combo.id] then live[#live + 1] = combo end end
        if ev.record or ev.error then
          -- the runner refuses it now: its live strategies end FAILED
          for _, combo in ipairs(live) do
            d.push({ type = "ended", job = id, attempt = js.attempt, sid = combo.id, now = stage.now(),
                     record = job.failed_strategy(combo, ev.error or "the runner refused the job on resume") })
          end
        elseif #live > 0 then
          run_strategies(d, { job = id, attempt = js.attempt, combos = live, wctx = wctx, array = js.array })
        end
      end
    end
  end
  d.push({ type = "tick", now = stage.now() })
end

local POLL = 1   -- longest wait between looks at the cancel sources (s)

local function run_in_task(model, opts, params, out)
  local sched = require "luabatch.workflow.sched"
  local env = _M.make_env(model, opts)
  local st = plan.new(model, { params = params, job = opts.job, jobs = opts.jobs, now = stage.now(),
                               cache = opts.cache, runner = { runs_on = opts.runs_on, with = opts.with } })
  local outside = env.cancelled          -- SIGINT, opts.cancelled (`luabatch cancel`)
  -- the outside's answer first: a `luabatch cancel` reason (a string the
  -- runner hands to TerminateJob) or SIGINT's true (the policy's reason)
  env.cancelled = function() return outside() or st.cancel ~= nil end
  local sig = sched.signal()
  local d = { model = model, opts = opts, env = env, st = st, queue = {}, handles = {}, jenv = {},
              types = {}, stops = {}, tasks = {} }
  d.push = function(ev)
    d.queue[#d.queue + 1] = ev
    sig:notify()
  end
  d.spawn = function(fn) d.tasks[#d.tasks + 1] = sched.spawn(fn) end
  -- a runner seeing a strategy's job wait for capacity or start (the
  -- client deadline counts from the start: plan's "state" event)
  env.on_state = function(job_id, sid, attempt, state)
    d.push({ type = "state", job = job_id, sid = sid, attempt = attempt, state = state, now = stage.now() })
  end
  if opts.replay and #opts.replay > 0 then
    resume(d, opts.replay)
  else
    d.push({ type = "start", now = stage.now() })
  end
  local heard = opts.on_event
  while not d.final do
    while #d.queue > 0 and not d.final do
      local ev = table.remove(d.queue, 1)
      if heard and ev.type ~= "tick" then heard(ev) end
      for _, a in ipairs(plan.step(st, model, ev, env)) do act(d, a) end
    end
    if d.final then break end
    local why = not st.cancel and outside()
    if why then
      d.push({ type = "cancel", reason = type(why) == "string" and why or "interrupted", now = stage.now() })
    else
      local wake, wait = plan.wake(st), POLL
      if wake then wait = math.max(0, math.min(POLL, wake - stage.now())) end
      if not sig:wait(wait) then d.push({ type = "tick", now = stage.now() }) end
    end
  end
  for _, t in ipairs(d.tasks) do sched.join(t) end
  if out and st.only then out.jctx = st.jobs[st.only].jctx end
  return d.final
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

--- job_with(env, jobdef, opts, wctx) -> with | nil, msg: the job's
-- effective runs-on `with:` (opts.with under the job's own, templates
-- rendered); what every driver hands the runner.
_M.job_with = job_with

--- receive_params(model, given [, opts]) -> params | nil, msg, "EPARAM":
-- what run() checks before anything runs (opts.skip_ref_check).
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

-- Run in a scheduler task (this one, or a scheduler of its own).
local function in_task(model, opts, params, out)
  local sched = require "luabatch.workflow.sched"
  if sched.current() then return run_in_task(model, opts, params, out) end
  local s = sched.new()
  local res
  s:spawn(function()
    res = { pcall(run_in_task, model, opts, params, out) }
  end)
  s:run()
  if not res then return nil, "workflow run ended without a result", "EINTERNAL" end
  if not res[1] then error(res[2], 0) end
  return res[2]
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
  if opts.job and not model.jobs[opts.job] then
    return nil, str_format("%s: no job '%s' in workflow '%s'", tostring(model.file or "?"),
      opts.job, tostring(model.name)), "EJOB"
  end
  local params, perr, pcode = _M.receive_params(model, opts.params, opts)
  if params == nil then return nil, perr, pcode end
  if opts.parents and opts.parents[model.name] then
    return nil, "Circle execute via trigger itself workflow name.", "ECYCLE"
  end
  return in_task(model, opts, params)
end

--- run_job(model, job_id, context, opts) -> record, jctx: one job with the
-- context it sees ({ params, jobs }), as a runner's run_job returns it.
-- opts.env: the job's environment (else engine.make_env(model, opts)); its
-- runner is opts.runner (default: the local one).
function _M.run_job(model, job_id, context, opts)
  opts = opts or {}
  context = context or {}
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  o.job, o.jobs, o.runs_on = job_id, context.jobs, opts.runs_on or "local"
  o.runners = { [o.runs_on] = opts.runner or { open_job = _M.local_job } }
  local base = opts.env
  if base then
    o.getenv, o.progress, o.log, o.output_line = base.getenv, base.progress, base.log, base.output_line
    o.run_id, o.runner_opts, o.cancelled = base.run_id, base.runner_opts, base.cancelled
    o.with = base.job_with
  end
  local out = {}
  local ctx = in_task(model, o, context.params or {}, out)
  local rec = ctx.jobs[job_id]
  return rec, out.jctx
end

return _M
