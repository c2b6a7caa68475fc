-- luabatch.ngx.drive: advance a workflow run on AWS Batch step by step,
-- without ever waiting: the event driver of luabatch.workflow.plan for
-- nginx (luabatch.ngx.runs keeps the run in a shared dict; whoever holds
-- the run's lock calls step()).
--
--   local drive = require "luabatch.ngx.drive"
--   local meta = drive.new_run(app, model, { run_id =, params =, job =, source =, name = })
--   local changed = drive.step(app, meta, model [, on_submit])
--   if meta.done then ... meta.final (the context) ... end
--
-- app is the luabatch.ngx.runs app (dict(), clients(), runner_opts(),
-- getenv, with, policy, prefix, ttl, clock).  meta is plain data (JSON):
--   { run_id, source, name, params, created, job (?job=: only it),
--     order = { job ids }, plan = <the plan's state>,
--     jobs = { <id> = { state = "pending" | "submitted" | "retry" | "done",
--                       attempt, record (once done), queued = { sid... },
--                       submitted = <aws_batch.submit's table of this
--                         attempt, jobs growing as strategies go out; each
--                         entry has at (epoch s) and done (its record went
--                         to the plan)>,
--                       history = { entries of earlier attempts },
--                       terminated / expired = { <batch id> = reason },
--                       retry_at, collect_error } },
--     abort, done, final, wake }
-- The plan decides (needs, if:, max-parallel, fail-fast, retry, the final
-- context); a step turns the poller's summaries into its events (a Batch
-- job terminal: the strategy's record, collected from result.json) and
-- carries its actions out: prepare = the with: check, run = SubmitJob
-- (aws_batch.submit; an array job with with.array), stop = TerminateJob,
-- job_done = cleanup.  The client deadline (timeout x attempts + the
-- policy's margin) is the plan's: its stop terminates the Batch job, whose
-- record then names the deadline.  on_submit(id, ok, msg, code) hears
-- how each job's submission went ("EWITH", "EJOB", "ESUBMIT").
-- Each entry also keeps what a view shows: matrix (its values), and once
-- its record is in, result (the status), failure (why, in one line:
-- luabatch.ngx.view.failure) and ended_at.  meta.cancel = reason (set by the caller) feeds
-- the plan a cancel event once.  The journal: app:journal_event(run_id,
-- ev) when the app has it, for the CLI's plan, job, state and result
-- events (luabatch.ngx.journal).

local log = require "luabatch.log"
local stage = require "luabatch.workflow.stage"
local job = require "luabatch.workflow.job"
local plan = require "luabatch.workflow.plan"
local ngx_poller = require "luabatch.ngx.poller"
local view = require "luabatch.ngx.view"

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
local function run_mod() return require "luabatch.runner.aws_batch.run" end

local function ngx_() return rawget(_G, "ngx") end

-- One event for the run's journal (when the app keeps one).
local function journal(app, meta, ev)
  if app.journal_event then app:journal_event(meta.run_id, ev) end
end

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

--- new_run(app, model, o) -> meta (nothing submitted yet: call step).
-- o = { run_id, params (checked), job (optional), source, name }
function _M.new_run(app, model, o)
  local order = o.job and { o.job } or plan.order(model)
  local jobs = {}
  for _, id in ipairs(order) do jobs[id] = { state = "pending", attempt = 0 } end
  return { run_id = o.run_id, source = o.source, name = o.name, params = o.params, job = o.job,
           workflow = model.name, created = now_of(app), order = stage.array(order), jobs = jobs }
end

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

-- Watch the Batch jobs of fresh entries (the poller's dict).
local function watch_entries(app, meta, entries)
  local d = app:dict()
  for _, e in ipairs(entries) do
    if e.batch_job_id then
      local ok, err = ngx_poller.watch(d, e.batch_job_id, { run_id = meta.run_id, key = e.key },
        { prefix = app.prefix, ttl = app.ttl })
      if not ok then log.error("luabatch.ngx.drive: %s", tostring(err)) end
    end
  end
end

-- When fresh entries were submitted (epoch s): a deadline record's start.
local function stamp(app, entries)
  local t = now_of(app)
  for _, e in ipairs(entries) do e.at = t end
end

-- The clients of a submitted job (its with: endpoints over the app's).
local function clients_of(app, js)
  local sc = js.submitted.config
  local with = {}
  for k, v in pairs(app.with) do with[k] = v end
  for k, v in pairs(sc.client or {}) do with[k] = v end
  return app:clients(with, sc.region)
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

---------------------------------------------------------------------------
-- Events from the poller's summaries
---------------------------------------------------------------------------

-- Entry e's Batch job (summary s) seen waiting for capacity or running ->
-- a "state" event, once each (the client deadline counts from its
-- container's start: luabatch.workflow.plan).
local function state_event(e, s, id, js, evq)
  local state = s and not e.began
    and ((s.status == "RUNNING" and "running") or (s.status == "RUNNABLE" and not e.waited and "waiting"))
  if state then
    if state == "running" then e.began = true else e.waited = true end
    evq[#evq + 1] = { type = "state", job = id, attempt = js.attempt, sid = e.strategy_id, state = state }
  end
end

-- Each entry of js still live: its "state" event (state_event), and the
-- record of one whose Batch job ended -> an "ended" event.
local function ended_events(app, meta, model, id, js, evq)
  local d = app:dict()
  local ro = app:runner_opts(meta.run_id)
  for _, e in ipairs(js.submitted.jobs) do
    if not e.done then
      local bid = e.batch_job_id
      local late = bid and (js.expired or {})[bid]
      local s = bid and ngx_poller.get(d, bid, { prefix = app.prefix })
      state_event(e, s, id, js, evq)
      local rec, own
      if late then
        local sc = js.submitted.config
        rec = run_mod().deadline_record(job.strategy(model.jobs[id], e.strategy_id), tonumber(e.at) or stage.now(),
          merged_policy(app, meta), e.job_name, bid, sc.timeout, sc.attempts)
        own = true
      elseif e.error or (s and TERMINAL[s.status]) then
        local why = bid and (js.terminated or {})[bid]
        -- a run being cancelled: a job Batch ended FAILED was terminated
        -- by the cancel (`luabatch cancel` terminates the jobs itself)
        if not why and bid and meta.cancel and s and s.status == "FAILED" then why = meta.cancel end
        if why and s.status ~= "SUCCEEDED" then
          rec = run_mod().terminated_record(job.strategy(model.jobs[id], e.strategy_id), stage.now(), e.job_name, bid, why)
          own = true
        else
          local ok, r = pcall(aws_batch().collect_strategy, js.submitted, e, s or {},
            { model = model, getenv = app.getenv, runner_opts = ro })
          if ok then
            rec = r
          else
            -- S3 unreachable...: the entry waits; the next step tries again
            js.collect_error = tostring(r)
            log.error("luabatch.ngx.drive: run %s: collecting job %s: %s", meta.run_id, id, tostring(r))
          end
        end
      end
      if rec then
        e.done = true
        js.collect_error = nil
        e.result, e.ended_at = rec.status, now_of(app)
        if rec.status ~= "SUCCESS" and rec.status ~= "SKIP" then e.failure = view.failure(rec) end
        if s and bid then
          journal(app, meta, { ev = "state", key = e.key, batch_job_id = bid, status = s.status, reason = s.reason,
            exit_code = s.exit_code, log_stream = s.log_stream })
        end
        if own and e.key then journal(app, meta, { ev = "result", key = e.key, status = rec.status, record = rec }) end
        evq[#evq + 1] = { type = "ended", job = id, attempt = js.attempt, sid = e.strategy_id, record = rec }
      end
    end
  end
end

---------------------------------------------------------------------------
-- Actions
---------------------------------------------------------------------------

-- prepare: the with: check (before `if`, as the CLI's open_job) -> event
local function prepare(app, meta, model, a, on_submit)
  local jenv, werr = job_env(app, meta, model, a.job, a.wctx, app:runner_opts(meta.run_id))
  local checked, cerr
  if jenv then checked, cerr = aws_batch().check(model, a.job, a.wctx, { env = jenv }) else cerr = werr end
  if not checked then
    meta.jobs[a.job].refused = true
    if on_submit then on_submit(a.job, nil, cerr, "EWITH") end
    return { type = "prepared", job = a.job, error = cerr }
  end
  return { type = "prepared", job = a.job, array = checked.array, deadline = checked.deadline,
           cap = checked.max_parallel }
end

-- run: SubmitJob for these strategies (or one array job) -> entries
local function run(app, meta, model, a, evq, on_submit)
  local id, js = a.job, meta.jobs[a.job]
  if js.submitted and js.submitted_attempt ~= a.attempt then
    -- a retry: the earlier attempt's Batch jobs stay listed (GET /runs/ID)
    local hist = js.history or stage.array({})
    for _, e in ipairs(js.submitted.jobs) do
      hist[#hist + 1] = { key = e.key, strategy_id = e.strategy_id, batch_job_id = e.batch_job_id,
                          job_name = e.job_name, error = e.error, matrix = e.matrix, at = e.at,
                          result = e.result, failure = e.failure, ended_at = e.ended_at }
    end
    js.history, js.submitted, js.terminated, js.expired = hist, nil, nil, nil
  end
  local sids, values = {}, {}
  for i, combo in ipairs(a.combos) do sids[i], values[combo.id] = combo.id, combo.values end
  local sub, serr, scode
  local jenv, werr = job_env(app, meta, model, id, a.wctx, app:runner_opts(meta.run_id))
  if jenv then
    sub, serr, scode = aws_batch().submit(model, id, a.wctx, { env = jenv, attempt = a.attempt,
      strategies = not a.array and sids or nil })
  else
    serr, scode = werr, "EWITH"
  end
  local entries
  if sub then
    entries = sub.jobs
    stamp(app, entries)
    for _, e in ipairs(entries) do e.matrix = values[e.strategy_id] end
    if js.submitted then
      for _, e in ipairs(entries) do js.submitted.jobs[#js.submitted.jobs + 1] = e end
    else
      js.submitted, js.submitted_attempt = sub, a.attempt
    end
    watch_entries(app, meta, entries)
  else
    -- nothing went out: each strategy is FAILED with the reason
    entries = {}
    for _, sid in ipairs(sids) do
      entries[#entries + 1] = { strategy_id = sid, matrix = values[sid],
        error = str_format("job '%s' strategy %s: %s", id, sid, tostring(serr)) }
    end
    if not js.submitted then
      js.submitted = { job_id = id, jobs = entries, config = {}, skip = true }
      js.submitted_attempt = a.attempt
    end
  end
  local any = false
  for _, e in ipairs(entries) do if e.batch_job_id then any = true end end
  if on_submit then
    if any then on_submit(id, true) else on_submit(id, nil, serr or "nothing was submitted", scode or "ESUBMIT") end
  end
  -- a strategy whose SubmitJob failed is FAILED with the reason, as in the CLI
  local rm = run_mod()
  local t0 = stage.now()
  for _, e in ipairs(entries) do
    if e.error and not e.done then
      e.done, e.result, e.failure, e.ended_at = true, "FAILED", tostring(e.error), now_of(app)
      evq[#evq + 1] = { type = "ended", job = id, attempt = a.attempt, sid = e.strategy_id,
        record = rm.failed_record(job.strategy(model.jobs[id], e.strategy_id), t0, rm.error_of(e.error)) }
    end
  end
end

-- The client deadline (the plan's stop): these strategies' live Batch jobs
-- terminated with the policy's reason (an array job through its parent,
-- once) and marked expired, so their records name the deadline.
local function expire(app, meta, js, sids, reason)
  local want = {}
  for _, sid in ipairs(sids) do want[sid] = true end
  local d = app:dict()
  local c = clients_of(app, js)
  js.expired = js.expired or {}
  local seen = {}
  for _, e in ipairs(js.submitted.jobs) do
    local bid = e.batch_job_id
    if bid and want[e.strategy_id] and not e.done then
      js.expired[bid] = reason
      local s = ngx_poller.get(d, bid, { prefix = app.prefix })
      local target = js.submitted.array and js.submitted.array.batch_job_id or bid
      if not (s and TERMINAL[s.status]) and not seen[target] then
        seen[target] = true
        log.warn("luabatch.ngx.drive: run %s: AWS Batch job %s: %s; terminating it", meta.run_id, target, reason)
        local ok, msg = c.batch:terminate_job(target, reason)
        if not ok then log.warn("luabatch.ngx.drive: TerminateJob %s: %s", target, tostring(msg)) end
      end
    end
  end
end

-- stop: TerminateJob for the live Batch jobs of these strategies.
local function stop(app, meta, a)
  local js = meta.jobs[a.job]
  if not js.submitted then return end
  local p = merged_policy(app, meta)
  if a.why == "deadline" then return expire(app, meta, js, a.sids, p.deadline_reason) end
  local reason = a.why == "fail-fast" and p.fail_fast_reason
    or (a.why == "cancel" and type(meta.cancel) == "string" and meta.cancel) or p.terminate_reason
  local want = {}
  for _, sid in ipairs(a.sids) do want[sid] = true end
  local d = app:dict()
  local c = clients_of(app, js)
  js.terminated = js.terminated or {}
  for _, e in ipairs(js.submitted.jobs) do
    local bid = e.batch_job_id
    if bid and want[e.strategy_id] and not e.done and not (js.expired and js.expired[bid]) then
      local s = ngx_poller.get(d, bid, { prefix = app.prefix })
      if not (s and TERMINAL[s.status]) then
        js.terminated[bid] = reason
        local ok, msg = c.batch:terminate_job(bid, reason)
        if not ok then log.warn("luabatch.ngx.drive: TerminateJob %s: %s", bid, tostring(msg)) end
      end
    end
  end
end

local function job_done(app, meta, model, a, on_submit)
  local js = meta.jobs[a.job]
  js.record = a.record
  journal(app, meta, { ev = "job", job_id = a.job, status = a.record.status, record = a.record,
    runs_on = "aws_batch", key = a.key })
  local sub = js.submitted
  if on_submit and a.record.status == "FAILED" and not sub and not js.refused then
    -- refused before any SubmitJob: a bad if:, max-parallel or matrix
    local e = a.record.errors
    on_submit(a.job, nil, type(e) == "table" and e.message or "job failed", "EJOB")
  end
  if sub and sub.results and not sub.skip then
    local ro = app:runner_opts(meta.run_id)
    local ok, err = pcall(aws_batch().cleanup, sub, a.record.status, { model = model, getenv = app.getenv,
      runner_opts = ro, keep_run_prefix = keep_run_prefix(meta, a.job, ro) })
    if not ok then log.error("luabatch.ngx.drive: run %s: cleanup of job %s: %s", meta.run_id, a.job, tostring(err)) end
  end
end

---------------------------------------------------------------------------
-- One step
---------------------------------------------------------------------------

local VIEW = { waiting = "pending", blocked = "pending", preparing = "submitted", running = "submitted",
               whole = "submitted", retry = "retry", done = "done" }

-- The jobs' view (what luabatch.ngx.runs shows) from the plan's state.
local function sync(meta)
  local st = meta.plan
  meta.abort = st.abort                 -- a trigger rule failed: nothing more starts
  for _, id in ipairs(meta.order) do
    local ps, js = st.jobs[id], meta.jobs[id]
    js.state, js.attempt = VIEW[ps.state] or "pending", ps.attempt or 0
    js.retry_at = ps.retry_at
    if ps.state == "done" then js.record = ps.record end
    local q = stage.array({})
    if ps.state == "running" and not ps.stopped then
      for i = ps.next, #ps.combos do q[#q + 1] = ps.combos[i].id end
    end
    js.queued, js.mp = q, ps.mp
  end
end

--- step(app, meta, model [, on_submit]) -> changed (meta updated in place;
-- meta.done and meta.final once nothing more can happen).
function _M.step(app, meta, model, on_submit)
  local evq = {}
  if not meta.plan then
    meta.plan = plan.new(model, { params = meta.params or object(), job = meta.job, now = meta.created })
    evq[1] = { type = "start" }
  end
  local now = now_of(app)
  local changed = #evq > 0
  -- a cancel first: the Batch jobs that end in this step end cancelled
  if meta.cancel and not meta.plan.cancel then
    evq[#evq + 1] = { type = "cancel", reason = meta.cancel }
    changed = true
  end
  for _, id in ipairs(meta.order) do
    local js = meta.jobs[id]
    if js.state == "submitted" and js.submitted then
      local n = #evq
      ended_events(app, meta, model, id, js, evq)
      if #evq > n then changed = true end
    end
  end
  evq[#evq + 1] = { type = "tick" }
  local env = engine().make_env(model, { getenv = app.getenv, run_id = meta.run_id,
    runner_opts = app:runner_opts(meta.run_id), log = function(line) log.info("%s", line) end })
  local i = 1
  while i <= #evq do
    local ev = evq[i]
    ev.now = now
    if ev.type ~= "tick" then journal(app, meta, { ev = "plan", event = ev }) end
    for _, a in ipairs(plan.step(meta.plan, model, ev, env)) do
      changed = true
      if a.op == "prepare" then
        evq[#evq + 1] = prepare(app, meta, model, a, on_submit)
      elseif a.op == "run" then
        run(app, meta, model, a, evq, on_submit)
      elseif a.op == "stop" then
        stop(app, meta, a)
        -- past the deadline: FAILED now, naming it, as the CLI's runner ends it
        if a.why == "deadline" then ended_events(app, meta, model, a.job, meta.jobs[a.job], evq) end
      elseif a.op == "retry" then
        log.info("luabatch.ngx.drive: run %s: job %s failed: attempt %d at %.3f", meta.run_id, a.job,
          a.attempt, a.at)
      elseif a.op == "job_done" then
        job_done(app, meta, model, a, on_submit)
      elseif a.op == "done" then
        meta.done, meta.final = true, a.context
      end
    end
    i = i + 1
  end
  sync(meta)
  meta.wake = _M.wake(app, meta)
  return changed
end

--- wake(app, meta) -> epoch seconds | nil: when the run must be stepped
-- even if no job of it ends (a retry's backoff, a strategy's client
-- deadline: the plan's wake); luabatch.ngx.runs indexes it for the elected
-- poller's tick.
function _M.wake(app, meta)
  return meta.plan and plan.wake(meta.plan) or nil
end

--- final(meta) -> the workflow context once done (plan.context).
function _M.final(meta)
  return meta.final or plan.context(meta.plan, stage.now())
end

return _M
