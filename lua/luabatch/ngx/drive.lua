-- luabatch.ngx.drive: advance a workflow run on AWS Batch step by step,
-- without ever waiting (luabatch.ngx.runs keeps the run in a shared dict;
-- whoever holds the run's lock calls step()).
--
--   local drive = require "luabatch.ngx.drive"
--   local meta = drive.new_run(app, model, { run_id =, params =, job =, source =, name = })
--   local changed = drive.step(app, meta, model)   -- submit / collect / queue what is due
--   if meta.done then ... drive.final(meta) ... end
--
-- app is the luabatch.ngx.runs app (dict(), clients(), runner_opts(),
-- getenv, with, policy, prefix, ttl).  meta is plain data (JSON-safe):
--   { run_id, source, name, params, created, job (?job= mode: run only it,
--     its needs ignored, as `luabatch run --job`), order = { job ids },
--     jobs = { <id> = { state = "pending" | "submitted" | "done",
--                       submitted = <aws_batch.submit's table, jobs growing
--                                    as queued strategies go out>,
--                       queued = { sid, ... } (beyond max-parallel),
--                       mp, fail_fast, ff (fail-fast fired),
--                       terminated = { <batch id> = reason },
--                       record = <the job record, once done> } },
--     abort (a trigger rule failed: nothing else starts), errors, done,
--     final (the context, once done) }
--
-- One step, the same rules as luabatch.workflow.engine + job.execute:
--   * a submitted job: its Batch jobs' states come from the poller's dict.
--     With fail-fast, the first FAILED strategy terminates the others
--     (TerminateJob, policy.fail_fast_reason) and drops the queued ones;
--     else as strategies end, queued ones are submitted up to max-parallel.
--     Once every submitted one is terminal and none is queued:
--     aws_batch.collect (result.json of each, or the real reason) -> record.
--   * a pending job: engine.check_needs over the records so far (needs +
--     trigger_rule); WAIT stays, SKIP records a skip, FAILED aborts the run
--     (no further job starts); else the job is submitted with its needs'
--     records in the context: `if:`, max-parallel and the strategies are
--     job.execute's own (its exec.all seam), with: rendered by the engine.
--   * done = nothing submitted and nothing startable; the final context is
--     what `luabatch run --runs-on aws_batch --json` prints.
-- Not done here (as before): job-level `retry:`, the client deadline.
--
-- Strategies are submitted with aws_batch.submit(..., { strategies = {
-- sid, ... } }) (the same with: check, job definition, bundle and SubmitJob
-- as the CLI; the bundle always carries every strategy, so one uploaded
-- again for a queued strategy is the same object); an empty list first
-- checks with: (before `if`, as aws_batch.run_job does).  with.array: one
-- array job with every strategy (aws_batch.submit), as the CLI does.
-- A finished job is collected with opts.keep_run_prefix while other jobs
-- of the run are in flight or an earlier job's objects were kept.

local log = require "luabatch.log"
local stage = require "luabatch.workflow.stage"
local job = require "luabatch.workflow.job"
local ngx_poller = require "luabatch.ngx.poller"

local _M = { _VERSION = "0.1.0" }

local type = type
local pairs = pairs
local ipairs = ipairs
local pcall = pcall
local require = require
local tostring = tostring
local setmetatable = setmetatable
local str_format = string.format

local object = stage.object
local TERMINAL = ngx_poller.TERMINAL

local function engine() return require "luabatch.workflow.engine" end
local function aws_batch() return require "luabatch.runner.aws_batch" end
local function policy() return require "luabatch.runner.aws_batch.policy" end

local function ngx_() return rawget(_G, "ngx") end

---------------------------------------------------------------------------
-- A new run
---------------------------------------------------------------------------

--- new_run(app, model, o) -> meta (nothing submitted yet: call step).
-- o = { run_id, params (checked), job (optional), source, name }
function _M.new_run(app, model, o)
  local order
  if o.job then
    order = { o.job }
  else
    order = {}
    for i, id in ipairs(model.job_order or engine().order(model)) do order[i] = id end
  end
  local jobs = {}
  for _, id in ipairs(order) do jobs[id] = { state = "pending" } end
  local n = ngx_()
  return { run_id = o.run_id, source = o.source, name = o.name, params = o.params, job = o.job,
           created = n and n.now() or stage.now(), order = stage.array(order), jobs = jobs }
end

---------------------------------------------------------------------------
-- Records so far
---------------------------------------------------------------------------

local function records_of(meta)
  local out = object()
  for _, id in ipairs(meta.order) do
    local js = meta.jobs[id]
    if js.state == "done" then out[id] = js.record end
  end
  return out
end

local function job_done(meta, id, rec)
  local js = meta.jobs[id]
  js.state, js.record = "done", rec
  if rec.status == "FAILED" then
    meta.errors = { name = "WorkflowError", message = str_format("Job execution, '%s', was failed.", id) }
  elseif rec.status == "CANCEL" then
    meta.errors = { name = "WorkflowCancelError", message = str_format("Job execution, '%s', was canceled.", id) }
  end
end

local function failed_job(jobdef, message)
  local t = stage.now()
  local jctx = { status = "FAILED", errors = { name = "JobError", message = message }, info = stage.info(t, t) }
  local rec = job.record(jobdef, jctx)
  if job.has_matrix(jobdef) and rec.strategies == nil then rec.strategies = object() end
  return rec
end

---------------------------------------------------------------------------
-- Submitting
---------------------------------------------------------------------------

-- The job's engine env (with: rendered against wctx) -> jenv | nil, msg
local function job_env(app, meta, model, id, wctx, ro)
  local e = engine()
  local env = e.make_env(model, { getenv = app.getenv, run_id = meta.run_id, runner_opts = ro,
    log = function(line) log.info("%s", line) end })
  local jobdef = model.jobs[id]
  local with, werr = e.job_with(env, jobdef, { with = app.with }, wctx)
  if with == nil then return nil, werr end
  return setmetatable({ job_id = id, job_with = with }, { __index = env })
end

-- Watch the Batch jobs of submitted entries (the poller's dict) -> any
-- entry was submitted, the last SubmitJob error
local function watch_entries(app, meta, entries)
  local d = app:dict()
  local ok_any, last = false, nil
  for _, e in ipairs(entries) do
    if e.batch_job_id then
      ok_any = true
      local wok, werr = ngx_poller.watch(d, e.batch_job_id, { run_id = meta.run_id, key = e.key },
        { prefix = app.prefix, ttl = app.ttl })
      if not wok then log.error("luabatch.ngx.drive: %s", tostring(werr)) end
    elseif e.error then
      last = tostring(e.error)
    end
  end
  return ok_any, last
end

-- Start job id -> true | nil, msg, code ("EWITH" / "EJOB" / "ESUBMIT");
-- a job that ends at once (if: false, a bad max-parallel) is done.
local function start_job(app, meta, model, id, records)
  local js = meta.jobs[id]
  local jobdef = model.jobs[id]
  local wctx = { params = meta.params, jobs = stage.shallow(records), status = "WAIT" }
  local ro = app:runner_opts(meta.run_id)
  local jenv, werr = job_env(app, meta, model, id, wctx, ro)
  if not jenv then
    job_done(meta, id, failed_job(jobdef, werr))
    return nil, werr, "EWITH"
  end
  -- with: checked first (aws_batch.run_job does too: no strategy given,
  -- nothing submitted), then if:, max-parallel and the strategies, as
  -- job.execute decides them (a bad `if` / matrix: job.execute's record)
  local checked, cerr, ccode = aws_batch().submit(model, id, wctx, { env = jenv, strategies = {} })
  if not checked and ccode == "EWITH" then
    job_done(meta, id, failed_job(jobdef, cerr))
    return nil, cerr, "EWITH"
  end
  local plan
  local penv = setmetatable({ cancelled = function() return true end }, { __index = jenv })
  local jctx = job.execute(jobdef, wctx, penv, { all = function(_, combos, _, _, group, mp)
    plan = { combos = combos, mp = mp, fail_fast = group.fail_fast }
    return {}
  end })
  if not plan then
    -- skipped by if:, or failed before any strategy (bad if / max-parallel / matrix)
    local rec = job.record(jobdef, jctx)
    if jctx.status == "SKIP" and job.has_matrix(jobdef) and rec.strategies == nil then rec.strategies = object() end
    job_done(meta, id, rec)
    if jctx.status == "FAILED" then
      return nil, tostring(jctx.errors and jctx.errors.message or "job failed"), "EJOB"
    end
    return true
  end
  if checked and checked.config.array and #plan.combos >= 2 then
    -- one array job: every strategy at once (the CLI's way too)
    local submitted, serr, scode = aws_batch().submit(model, id, wctx, { env = jenv })
    if not submitted then
      job_done(meta, id, failed_job(jobdef, tostring(serr)))
      return nil, serr, scode
    end
    js.state, js.submitted, js.queued, js.mp = "submitted", submitted, stage.array({}), #plan.combos
    js.fail_fast = plan.fail_fast
    watch_entries(app, meta, submitted.jobs)
    return true
  end
  local first, queued = {}, {}
  for i, combo in ipairs(plan.combos) do
    if i <= plan.mp then first[#first + 1] = combo.id else queued[#queued + 1] = combo.id end
  end
  local submitted, serr, scode = aws_batch().submit(model, id, wctx, { env = jenv, strategies = first })
  if not submitted then
    job_done(meta, id, failed_job(jobdef, tostring(serr)))
    return nil, serr, scode
  end
  js.submitted = submitted
  js.mp, js.fail_fast, js.terminated = plan.mp, plan.fail_fast == true, {}
  js.queued = stage.array(queued)
  js.state = "submitted"
  local ok_any, last = watch_entries(app, meta, submitted.jobs)
  if not ok_any and #queued == 0 then
    -- nothing went out: the record says why (collect turns the errors into
    -- FAILED strategy records)
    return nil, last or "nothing to submit", "ESUBMIT"
  end
  return true
end

---------------------------------------------------------------------------
-- A submitted job
---------------------------------------------------------------------------

local function summaries(app, js)
  local d = app:dict()
  local sums, live, failed = {}, 0, false
  for _, j in ipairs(js.submitted.jobs) do
    if j.batch_job_id then
      local s = ngx_poller.get(d, j.batch_job_id, { prefix = app.prefix })
      if s then sums[j.batch_job_id] = s end
      if not (s and TERMINAL[s.status]) then
        live = live + 1
      elseif s.status ~= "SUCCEEDED" and not (js.terminated or {})[j.batch_job_id] then
        failed = true
      end
    elseif j.error then
      failed = true
    end
  end
  return sums, live, failed
end

-- fail-fast: terminate the live siblings, drop the queue.
local function fail_fast(app, meta, js, sums)
  local ro = app:runner_opts(meta.run_id)
  local reason = policy().merge(type(ro.policy) == "table" and ro.policy or nil).fail_fast_reason
  local sc = js.submitted.config
  local with = {}
  for k, v in pairs(app.with) do with[k] = v end
  for k, v in pairs(sc.client or {}) do with[k] = v end
  local c = app:clients(with, sc.region)
  js.ff = true
  js.queued = stage.array({})
  js.terminated = js.terminated or {}
  for _, j in ipairs(js.submitted.jobs) do
    local sm = j.batch_job_id and sums[j.batch_job_id]
    if j.batch_job_id and not (sm and TERMINAL[sm.status]) then
      js.terminated[j.batch_job_id] = reason
      local ok, msg = c.batch:terminate_job(j.batch_job_id, reason)
      if not ok then log.warn("luabatch.ngx.drive: TerminateJob %s: %s", j.batch_job_id, tostring(msg)) end
    end
  end
end

-- The CLI's records for a fail-fast job: never-started strategies absent,
-- terminated ones CANCEL; status and errors as job.execute computes them.
local function fail_fast_record(model, id, js, jctx)
  local jobdef = model.jobs[id]
  local combos = job.strategies(jobdef) or {}
  local by_sid = {}
  for _, j in ipairs(js.submitted.jobs) do by_sid[j.strategy_id] = j end
  local out = { info = jctx.info }
  local statuses, errs, nerr = {}, object(), 0
  for _, combo in ipairs(combos) do
    local j = by_sid[combo.id]
    local rec = j and jctx[combo.id]
    local why = j and j.batch_job_id and js.terminated[j.batch_job_id]
    if j and why then
      local t = stage.now()
      rec = { status = "CANCEL", matrix = combo.values, stages = object(), info = stage.info(t, t),
              errors = { name = "JobCancelError", message = str_format(
                "Strategy execution was canceled: AWS Batch job %s (%s) terminated: %s",
                tostring(j.job_name), j.batch_job_id, tostring(why)) } }
    end
    if rec then
      out[combo.id] = rec
      statuses[#statuses + 1] = rec.status
      if rec.errors then errs[combo.id] = rec.errors; nerr = nerr + 1 end
    end
  end
  out.status = stage.validate_statuses(statuses)
  if nerr > 0 then
    if job.has_matrix(jobdef) then out.errors = errs else out.errors = errs.EMPTY end
  end
  return job.record(jobdef, out)
end

-- Must collect's cleanup keep the run's prefix (its opts.keep_run_prefix)?
-- Yes while another job of the run is in flight, or when an earlier job's
-- objects were kept by the cleanup policy (they live under that prefix).
local function keep_run_prefix(meta, id, ro)
  local p = policy()
  local pol = p.merge(type(ro.policy) == "table" and ro.policy or nil)
  for _, oid in ipairs(meta.order) do
    local o = meta.jobs[oid]
    if oid ~= id and o.state == "submitted" then return true end
    if oid ~= id and o.state == "done" and o.submitted and o.record and not o.submitted.skip
        and not p.should_cleanup(pol, o.record.status, o.submitted.config.keep_on_failure) then
      return true
    end
  end
  return false
end

-- Advance one submitted job -> changed
local function advance(app, meta, model, id)
  local js = meta.jobs[id]
  local sums, live, failed = summaries(app, js)
  local changed = false
  if failed and js.fail_fast and not js.ff and (live > 0 or #js.queued > 0) then
    fail_fast(app, meta, js, sums)
    changed = true
  end
  if #js.queued > 0 and live < js.mp then
    local wctx = { params = meta.params, jobs = (js.submitted.context or {}).jobs or {}, status = "WAIT" }
    local ro = app:runner_opts(meta.run_id)
    local jenv, werr = job_env(app, meta, model, id, wctx, ro)
    local now, rest = {}, {}
    for _, sid in ipairs(js.queued) do
      if live + #now < js.mp then now[#now + 1] = sid else rest[#rest + 1] = sid end
    end
    local sub
    if jenv then
      -- the same bundle and job definition as the first strategies'
      sub, werr = aws_batch().submit(model, id, wctx, { env = jenv, strategies = now })
    end
    if not sub then
      log.error("luabatch.ngx.drive: run %s job %s: %s", meta.run_id, id, tostring(werr))
      js.queued = stage.array({})
    else
      js.queued = stage.array(rest)
      local list = js.submitted.jobs
      for _, e in ipairs(sub.jobs) do list[#list + 1] = e end
      watch_entries(app, meta, sub.jobs)
      live = live + #sub.jobs
    end
    changed = true
  end
  if live > 0 or #js.queued > 0 then return changed end
  -- every strategy ended: the record
  local ro = app:runner_opts(meta.run_id)
  local ok, rec, jctx = pcall(aws_batch().collect, js.submitted, sums, { model = model, getenv = app.getenv,
    runner_opts = ro, keep_run_prefix = keep_run_prefix(meta, id, ro) })
  if not ok or not rec then
    -- S3 unreachable...: the job stays "submitted"; the next step tries again
    local msg = ok and tostring(jctx) or tostring(rec)
    log.error("luabatch.ngx.drive: run %s: collecting job %s: %s", meta.run_id, id, msg)
    js.collect_error = msg
    return true
  end
  js.collect_error = nil
  if js.ff or #js.submitted.jobs < #(job.strategies(model.jobs[id]) or {}) then
    rec = fail_fast_record(model, id, js, jctx)
  end
  job_done(meta, id, rec)
  return true
end

---------------------------------------------------------------------------
-- One step
---------------------------------------------------------------------------

--- step(app, meta, model [, on_submit]) -> changed (meta updated in place;
-- meta.done once nothing more can happen).  Errors of a job's submission
-- are in its record; on_submit(id, ok, msg, code) hears each start.
-- A job whose results cannot be read yet (S3 unreachable...) stays
-- "submitted" with js.collect_error; a later step tries again.
function _M.step(app, meta, model, on_submit)
  local changed = false
  for _, id in ipairs(meta.order) do
    if meta.jobs[id].state == "submitted" then
      if advance(app, meta, model, id) then changed = true end
    end
  end
  local e = engine()
  local again = true
  while again and not meta.abort do
    again = false
    local records = records_of(meta)
    for _, id in ipairs(meta.order) do
      local js = meta.jobs[id]
      if js.state == "pending" and not meta.abort then
        local jobdef = model.jobs[id]
        local rule = meta.job and "SUCCESS" or e.check_needs(jobdef, records)
        if rule == "FAILED" then
          meta.abort = true
          meta.errors = { name = "WorkflowError", message = str_format(
            "Validate job trigger rule was failed with '%s'.", jobdef.trigger_rule or "all_success") }
          changed = true
        elseif rule == "SKIP" then
          js.state, js.record = "done", e.skip_record(jobdef)
          changed, again = true, true
        elseif rule ~= "WAIT" then
          local ok, msg, code = start_job(app, meta, model, id, records)
          if on_submit then on_submit(id, ok, msg, code) end
          changed = true
          if js.state == "done" then again = true end
        end
      end
    end
  end
  local busy = false
  for _, id in ipairs(meta.order) do
    if meta.jobs[id].state == "submitted" then busy = true end
  end
  if not busy and not meta.done then
    -- pending jobs left are blocked for good (abort): the run is over
    meta.done = true
    meta.final = _M.final(meta)
    changed = true
  end
  return changed
end

--- final(meta) -> the workflow context (as engine.run returns it).
function _M.final(meta)
  local records = records_of(meta)
  local statuses = {}
  for _, id in ipairs(meta.order) do
    if records[id] then statuses[#statuses + 1] = records[id].status end
  end
  local status = stage.validate_statuses(statuses)
  if meta.abort then status = "FAILED" end
  local ctx = { status = status, params = meta.params or object(), jobs = records }
  if meta.errors and status ~= "SUCCESS" and status ~= "SKIP" then ctx.errors = meta.errors end
  ctx.info = stage.info(meta.created or stage.now(), stage.now())
  return ctx
end

return _M
