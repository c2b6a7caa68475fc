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
--     jobs = { <id> = { state = "pending" | "submitted" | "retry" | "done",
--                       submitted = <aws_batch.submit's table, jobs growing
--                                    as queued strategies go out; each entry
--                                    also has at (submitted, epoch s) and
--                                    deadline (the client deadline, epoch s,
--                                    when with.timeout / policy.timeout)>,
--                       queued = { sid, ... } (beyond max-parallel),
--                       mp, fail_fast, ff (fail-fast fired),
--                       terminated = { <batch id> = reason } (fail-fast),
--                       expired = { <batch id> = reason } (client deadline),
--                       attempt (job-level retry:, 0 first), retry_at,
--                       history = { entries of earlier attempts },
--                       record = <the job record, once done> } },
--     abort (a trigger rule failed: nothing else starts), errors, done,
--     wake (when a step is due without any job ending: see wake()),
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
--   * the client deadline (Run:deadline() in runner/aws_batch/run.lua: with.timeout x
--     with.retry_attempts + policy.deadline_margin, counted from each
--     SubmitJob): a live Batch job past it is terminated with
--     policy.deadline_reason (an array job through its parent, once) and is
--     FAILED at once, its record run_job's ("AWS Batch job NAME (ID):
--     <reason> (timeout T s x N attempts + M s margin); terminated"); it
--     counts as a failure for fail-fast, as in the CLI.
--   * job-level `retry: N` (job.execute's loop): a job whose record is
--     FAILED goes to state "retry" and runs again from scratch (if:,
--     max-parallel, every strategy; aws_batch.submit opts.attempt = k: keys
--     and job names carry k, the earlier result.json is deleted first) with
--     the context its first attempt saw, at once after the first failure and
--     1.2^(k+1) s after attempt k >= 1; collect(opts.retry) leaves the
--     objects of a failed attempt for the next.  The record is the last
--     attempt's only (no stale keys).  A job refused before any SubmitJob
--     (with:, a bad if:) is not retried: its record would not change.
--   * done = nothing submitted, retrying or startable; the final context is
--     what `luabatch run --runs-on aws_batch --json` prints.
-- Time: app.clock() (specs) or ngx.now() — epoch seconds, shared by the
-- workers.  A run moves when a job of it ends, on GET, and at wake(meta)
-- (luabatch.ngx.runs indexes it for the elected poller's tick).
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
local tonumber = tonumber
local setmetatable = setmetatable
local str_format = string.format

local object = stage.object
local TERMINAL = ngx_poller.TERMINAL

local function engine() return require "luabatch.workflow.engine" end
local function aws_batch() return require "luabatch.runner.aws_batch" end
local function policy() return require "luabatch.runner.aws_batch.policy" end

local function ngx_() return rawget(_G, "ngx") end

-- Epoch seconds: app.clock (specs), else ngx.now, else the wall clock.
local function now_of(app)
  if type(app.clock) == "function" then return app.clock() end
  local n = ngx_()
  if n and n.now then return n.now() end
  return stage.now()
end
_M.now = now_of

local function merged_policy(app, meta)
  local ro = app:runner_opts(meta.run_id)
  return policy().merge(type(ro.policy) == "table" and ro.policy or nil)
end

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

-- The client deadline of freshly submitted entries (Run:deadline() in
-- runner/aws_batch/run.lua: timeout * attempts + policy.deadline_margin
-- from the SubmitJob), kept on each entry as epoch seconds.
local function stamp(app, meta, sub, entries)
  local t = now_of(app)
  local timeout = tonumber(sub.config and sub.config.timeout)
  local margin = merged_policy(app, meta).deadline_margin or 600
  for _, e in ipairs(entries) do
    e.at = t
    if timeout and e.batch_job_id then
      e.deadline = t + timeout * (tonumber(sub.config.attempts) or 1) + margin
    end
  end
end

-- Start job id (again, for a retry: js.attempt > 0) -> true | nil, msg,
-- code ("EWITH" / "EJOB" / "ESUBMIT"); a job that ends at once (if: false,
-- a bad max-parallel) is done.  jobs_ctx = the `jobs` of the context it
-- sees (a retry sees the first attempt's, as job.execute's loop does).
local function start_job(app, meta, model, id, jobs_ctx)
  local js = meta.jobs[id]
  local jobdef = model.jobs[id]
  local attempt = tonumber(js.attempt) or 0
  if js.submitted then
    -- a retry: the earlier attempt's Batch jobs stay listed (GET /runs/ID)
    local hist = js.history or stage.array({})
    for _, e in ipairs(js.submitted.jobs) do
      hist[#hist + 1] = { key = e.key, strategy_id = e.strategy_id, batch_job_id = e.batch_job_id,
                          job_name = e.job_name, error = e.error }
    end
    js.history = hist
  end
  js.submitted, js.queued, js.ff, js.terminated, js.expired = nil, nil, nil, nil, nil
  js.record, js.retry_at, js.collect_error = nil, nil, nil
  local wctx = { params = meta.params, jobs = jobs_ctx, status = "WAIT" }
  local ro = app:runner_opts(meta.run_id)
  local jenv, werr = job_env(app, meta, model, id, wctx, ro)
  if not jenv then
    job_done(meta, id, failed_job(jobdef, werr))
    return nil, werr, "EWITH"
  end
  -- with: checked first (aws_batch.run_job does too: no strategy given,
  -- nothing submitted), then if:, max-parallel and the strategies, as
  -- job.execute decides them (a bad `if` / matrix: job.execute's record)
  local checked, cerr, ccode = aws_batch().submit(model, id, wctx, { env = jenv, strategies = {},
    attempt = attempt })
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
    local submitted, serr, scode = aws_batch().submit(model, id, wctx, { env = jenv, attempt = attempt })
    if not submitted then
      job_done(meta, id, failed_job(jobdef, tostring(serr)))
      return nil, serr, scode
    end
    stamp(app, meta, submitted, submitted.jobs)
    js.state, js.submitted, js.queued, js.mp = "submitted", submitted, stage.array({}), #plan.combos
    js.fail_fast, js.terminated = plan.fail_fast == true, {}
    watch_entries(app, meta, submitted.jobs)
    return true
  end
  local first, queued = {}, {}
  for i, combo in ipairs(plan.combos) do
    if i <= plan.mp then first[#first + 1] = combo.id else queued[#queued + 1] = combo.id end
  end
  local submitted, serr, scode = aws_batch().submit(model, id, wctx, { env = jenv, strategies = first,
    attempt = attempt })
  if not submitted then
    job_done(meta, id, failed_job(jobdef, tostring(serr)))
    return nil, serr, scode
  end
  stamp(app, meta, submitted, submitted.jobs)
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
  local expired = js.expired or {}
  for _, j in ipairs(js.submitted.jobs) do
    if j.batch_job_id and expired[j.batch_job_id] then
      -- past the client deadline and terminated: FAILED now, as run_job's
      -- wait ends there (its record is the deadline's, see deadline_record)
      local s = ngx_poller.get(d, j.batch_job_id, { prefix = app.prefix })
      if not (s and TERMINAL[s.status]) then
        s = { id = j.batch_job_id, status = "FAILED", reason = expired[j.batch_job_id] }
      end
      sums[j.batch_job_id] = s
      failed = true
    elseif j.batch_job_id then
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

-- The clients of a submitted job (its with: endpoints over the app's).
local function clients_of(app, js)
  local sc = js.submitted.config
  local with = {}
  for k, v in pairs(app.with) do with[k] = v end
  for k, v in pairs(sc.client or {}) do with[k] = v end
  return app:clients(with, sc.region)
end

-- The client deadline: every live Batch job of js past its deadline is
-- terminated with policy.deadline_reason (an array job through its parent,
-- once) and marked js.expired -> changed.
local function expire(app, meta, js, now)
  local d = app:dict()
  local due = {}
  for _, j in ipairs(js.submitted.jobs) do
    local bid = j.batch_job_id
    if bid and j.deadline and now >= j.deadline and not (js.expired and js.expired[bid])
        and not (js.terminated and js.terminated[bid]) then
      local s = ngx_poller.get(d, bid, { prefix = app.prefix })
      if not (s and TERMINAL[s.status]) then due[#due + 1] = j end
    end
  end
  if #due == 0 then return false end
  local reason = merged_policy(app, meta).deadline_reason
  local c = clients_of(app, js)
  js.expired = js.expired or {}
  local targets, seen = {}, {}
  for _, j in ipairs(due) do
    js.expired[j.batch_job_id] = reason
    local target = js.submitted.array and js.submitted.array.batch_job_id or j.batch_job_id
    if not seen[target] then
      seen[target] = true
      targets[#targets + 1] = target
    end
  end
  for _, target in ipairs(targets) do
    log.warn("luabatch.ngx.drive: run %s: AWS Batch job %s: %s; terminating it", meta.run_id, target, reason)
    local ok, msg = c.batch:terminate_job(target, reason)
    if not ok then log.warn("luabatch.ngx.drive: TerminateJob %s: %s", target, tostring(msg)) end
  end
  return true
end

-- fail-fast: terminate the live siblings, drop the queue.
local function fail_fast(app, meta, js, sums)
  local ro = app:runner_opts(meta.run_id)
  local reason = policy().merge(type(ro.policy) == "table" and ro.policy or nil).fail_fast_reason
  local c = clients_of(app, js)
  js.ff = true
  js.queued = stage.array({})
  js.terminated = js.terminated or {}
  for _, j in ipairs(js.submitted.jobs) do
    local sm = j.batch_job_id and sums[j.batch_job_id]
    if j.batch_job_id and not (sm and TERMINAL[sm.status]) and not (js.expired and js.expired[j.batch_job_id]) then
      js.terminated[j.batch_job_id] = reason
      local ok, msg = c.batch:terminate_job(j.batch_job_id, reason)
      if not ok then log.warn("luabatch.ngx.drive: TerminateJob %s: %s", j.batch_job_id, tostring(msg)) end
    end
  end
end

-- run_job's record of a strategy ended by the client deadline (Run:finish in runner/aws_batch/run.lua).
local function deadline_record(app, meta, js, j, combo, why)
  local sc = js.submitted.config
  local p = merged_policy(app, meta)
  local t = stage.now()
  return { status = "FAILED", matrix = combo.values, stages = object(),
           info = stage.info(tonumber(j.at) or t, now_of(app)),
           errors = { name = require("luabatch.runner.aws_batch.reason").ERROR_NAME, message = str_format(
             "AWS Batch job %s (%s): %s (timeout %s s x %d attempts + %s s margin); terminated",
             tostring(j.job_name), j.batch_job_id, tostring(why), tostring(sc.timeout),
             tonumber(sc.attempts) or 1, tostring(p.deadline_margin)) } }
end

-- The CLI's records when the drive stepped in: never-started strategies
-- absent, fail-fast-terminated ones CANCEL, deadline-terminated ones
-- FAILED naming the deadline; status and errors as job.execute computes them.
local function rebuilt_record(app, meta, model, id, js, jctx)
  local jobdef = model.jobs[id]
  local combos = job.strategies(jobdef) or {}
  local by_sid = {}
  for _, j in ipairs(js.submitted.jobs) do by_sid[j.strategy_id] = j end
  local out = { info = jctx.info }
  local statuses, errs, nerr = {}, object(), 0
  for _, combo in ipairs(combos) do
    local j = by_sid[combo.id]
    local rec = j and jctx[combo.id]
    local why = j and j.batch_job_id and (js.terminated or {})[j.batch_job_id]
    local late = j and j.batch_job_id and (js.expired or {})[j.batch_job_id]
    if j and late then
      rec = deadline_record(app, meta, js, j, combo, late)
    elseif j and why then
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
    if oid ~= id and (o.state == "submitted" or o.state == "retry") then return true end
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
  local changed = expire(app, meta, js, now_of(app))
  local sums, live, failed = summaries(app, js)
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
      sub, werr = aws_batch().submit(model, id, wctx, { env = jenv, strategies = now,
        attempt = tonumber(js.attempt) or 0 })
    end
    if not sub then
      log.error("luabatch.ngx.drive: run %s job %s: %s", meta.run_id, id, tostring(werr))
      js.queued = stage.array({})
    else
      js.queued = stage.array(rest)
      stamp(app, meta, sub, sub.jobs)
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
  local attempt = tonumber(js.attempt) or 0
  local retries = tonumber(model.jobs[id].retry) or 0
  local ok, rec, jctx = pcall(aws_batch().collect, js.submitted, sums, { model = model, getenv = app.getenv,
    runner_opts = ro, keep_run_prefix = keep_run_prefix(meta, id, ro), retry = attempt < retries })
  if not ok or not rec then
    -- S3 unreachable...: the job stays "submitted"; the next step tries again
    local msg = ok and tostring(jctx) or tostring(rec)
    log.error("luabatch.ngx.drive: run %s: collecting job %s: %s", meta.run_id, id, msg)
    js.collect_error = msg
    return true
  end
  js.collect_error = nil
  if js.ff or js.expired or #js.submitted.jobs < #(job.strategies(model.jobs[id]) or {}) then
    rec = rebuilt_record(app, meta, model, id, js, jctx)
  end
  if rec.status == "FAILED" and attempt < retries then
    -- job-level retry: (job.execute's loop) the whole job again, from
    -- scratch, after 1.2^(k+1) s when attempt k >= 1 failed
    log.info("luabatch.ngx.drive: run %s: job %s failed (attempt %d of %d): retrying", meta.run_id, id,
      attempt + 1, retries + 1)
    js.state, js.attempt = "retry", attempt + 1
    js.retry_at = now_of(app) + (attempt >= 1 and 1.2 ^ (attempt + 1) or 0)
    return true
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
    local js = meta.jobs[id]
    if js.state == "retry" and now_of(app) >= (tonumber(js.retry_at) or 0) then
      -- the next attempt sees the context the first one saw (an abort of
      -- the run does not stop it: job.execute's loop goes on there too)
      local ok, msg, code = start_job(app, meta, model, id, (js.submitted.context or {}).jobs or object())
      if not ok then
        log.error("luabatch.ngx.drive: run %s: job %s attempt %d: %s (%s)", meta.run_id, id,
          tonumber(js.attempt) or 0, tostring(msg), tostring(code))
      end
      changed = true
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
          local ok, msg, code = start_job(app, meta, model, id, stage.shallow(records))
          if on_submit then on_submit(id, ok, msg, code) end
          changed = true
          if js.state == "done" then again = true end
        end
      end
    end
  end
  local busy = false
  for _, id in ipairs(meta.order) do
    local st = meta.jobs[id].state
    if st == "submitted" or st == "retry" then busy = true end
  end
  meta.wake = _M.wake(app, meta)
  if not busy and not meta.done then
    -- pending jobs left are blocked for good (abort): the run is over
    meta.done = true
    meta.final = _M.final(meta)
    changed = true
  end
  return changed
end

--- wake(app, meta) -> epoch seconds | nil: when the run must be stepped
-- even if no job of it ends (the earliest client deadline of a live Batch
-- job, or a retry's backoff end); luabatch.ngx.runs keeps it in an index
-- the elected poller's tick reads.
function _M.wake(app, meta)
  local at
  local function min(t)
    t = tonumber(t)
    if t and (at == nil or t < at) then at = t end
  end
  local d
  for _, id in ipairs(meta.order) do
    local js = meta.jobs[id]
    if js.state == "retry" then
      min(js.retry_at or 0)
    elseif js.state == "submitted" then
      for _, j in ipairs(js.submitted.jobs) do
        local bid = j.batch_job_id
        if bid and j.deadline and not (js.expired and js.expired[bid]) then
          d = d or app:dict()
          local s = ngx_poller.get(d, bid, { prefix = app.prefix })
          if not (s and TERMINAL[s.status]) then min(j.deadline) end
        end
      end
    end
  end
  return at
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
