-- luabatch.workflow.plan: what a workflow run means, as a state machine.
--
--   local plan = require "luabatch.workflow.plan"
--   local st = plan.new(model, { params = p, job = id?, jobs = records?, now = t,
--                                cache = { [id] = { key, record } }?, runner = { runs_on?, with? }? })
--   local actions = plan.step(st, model, event, env)
--
-- No I/O, no coroutine, no clock: time comes in with each event (`now`,
-- epoch seconds), and st is plain data (JSON-safe), so a driver may keep it
-- anywhere (a coroutine, an nginx shared dict, a journal replay).  env is
-- the engine's stage environment (render, eval: what `if:` and a templated
-- max-parallel need; no I/O).
--
-- Events (every one has `now`):
--   { type = "start" }
--   { type = "prepared", job, array = bool, deadline = s?, cap = n? }
--                                                  the runner took the job (deadline:
--                                                  seconds a strategy may run, the
--                                                  client deadline; nil: none; cap: the
--                                                  largest max-parallel it allows, nil: 9)
--   { type = "prepared", job, error = msg | record = job record }
--                                                  the runner refused it
--   { type = "ended", job, attempt, sid, record }  a strategy ended
--   { type = "job_ended", job, record }            a whole-job runner ended
--   { type = "state", job, attempt, sid, state = "waiting" | "running" }
--                                                  a strategy's job was seen waiting
--                                                  for capacity / its container running
--   { type = "cancel", reason }
--   { type = "tick" }                              a timer (plan.wake) is due
-- Actions (a list, in order):
--   { op = "prepare", job, wctx }                  open the job's runner
--   { op = "run", job, attempt, combos, wctx, array = bool }
--                                                  start these strategies
--   { op = "stop", job, attempt, sids, why = "fail-fast" | "cancel" | "deadline" }
--   { op = "retry", job, attempt (the next), at, errors }
--   { op = "job_done", job, record, seconds, key, reused = n? | cached = true? }
--                                                  key: the job's fingerprint
--   { op = "done", context }
--
-- The rules, each here once:
--   * needs + trigger rules (check_needs); a rule that fails aborts the run
--     (nothing more starts, running jobs finish); a need without a record
--     blocks its dependents; with opts.job only that job runs, needs unread.
--   * a job: the runner first (prepare: with:, runs-on), then each attempt
--     evaluates `if:` (false: SKIP), max-parallel (1..9) and the matrix;
--     strategies start in matrix order, at most max-parallel at once (an
--     array runner takes all at once); fail-fast: the first FAILED one
--     stops the running siblings and starts no more.
--   * job retry: a FAILED attempt runs again from scratch (same context)
--     up to `retry` times, at once after the first, 1.2^(k+1) s after
--     attempt k >= 1; the record is the last attempt's.
--   * cancel: nothing more starts, running strategies are stopped, no retry.
--   * the client deadline: a strategy running longer than the runner's
--     deadline is stopped (its runner ends it FAILED).  It counts from the
--     strategy's start, or from its container's start once a "state" event
--     says so: a strategy seen waiting for capacity has none until then.
--   * reuse (a run resuming an ended one: opts.cache, its jobs' keys and
--     records): a job whose key (luabatch.workflow.fingerprint) is unchanged
--     and whose record is SUCCESS or SKIP is taken as is, nothing runs; with
--     the key unchanged, a strategy that ended SUCCESS is taken, the rest run.
--   * the final status and errors (plan.context).

local stage = require "luabatch.workflow.stage"
local job = require "luabatch.workflow.job"
local fingerprint = require "luabatch.workflow.fingerprint"

local _M = { _VERSION = "0.1.0" }

local type = type
local pairs = pairs
local ipairs = ipairs
local next = next
local tostring = tostring
local tonumber = tonumber
local str_format = string.format

local object = stage.object

---------------------------------------------------------------------------
-- Trigger rules
---------------------------------------------------------------------------

local function is_failed(r) return r.errors ~= nil or r.status == "FAILED" end
local function is_success(r) return r.errors == nil and r.status == "SUCCESS" end

local RULES = {
  all_done = function() return true end,
  all_success = function(recs)
    for _, r in ipairs(recs) do if not is_success(r) then return false end end
    return true
  end,
  all_failed = function(recs)
    for _, r in ipairs(recs) do if not is_failed(r) then return false end end
    return true
  end,
  one_success = function(recs)
    for _, r in ipairs(recs) do if is_success(r) then return true end end
    return false
  end,
  one_failed = function(recs)
    for _, r in ipairs(recs) do if is_failed(r) then return true end end
    return false
  end,
  none_skipped = function(recs)
    for _, r in ipairs(recs) do if r.status == "SKIP" then return false end end
    return true
  end,
  none_failed = function(recs)
    for _, r in ipairs(recs) do if is_failed(r) then return false end end
    return true
  end,
}

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
  local rule = RULES[jobdef.trigger_rule or "all_success"]
  return (rule and rule(recs)) and "SUCCESS" or "FAILED"
end

--- skip_record(jobdef) -> the record of a job skipped by its needs
function _M.skip_record(jobdef)
  local r = { status = "SKIP" }
  if job.has_matrix(jobdef) then r.strategies = object() end
  return r
end

--- order(model) -> job ids, needs first (load rejects cycles)
function _M.order(model)
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

---------------------------------------------------------------------------
-- State
---------------------------------------------------------------------------

--- new(model, o) -> st.  o = { params (checked), job (only this one),
-- jobs (records the run starts with: a --job run's context, or jobs a
-- resume takes as done), now, cache (an ended run's jobs: { [id] = { key,
-- record } }), runner (the run's --runs-on/--with: part of every key) }
function _M.new(model, o)
  local order = o.job and { o.job } or _M.order(model)
  local st = { params = o.params or object(), only = o.job, order = order, jobs = {}, t0 = o.now,
               given = object(), cache = o.cache, runner = o.runner or {} }
  for id, rec in pairs(o.jobs or {}) do st.given[id] = rec end
  for _, id in ipairs(order) do
    local rec = o.job == nil and st.given[id] or nil
    st.jobs[id] = rec and { state = "done", record = rec, given = true } or { state = "waiting" }
  end
  return st
end

-- The records so far: given ones, then those of this run.
local function records_of(st)
  local out = object()
  for id, rec in pairs(st.given) do out[id] = rec end
  for _, id in ipairs(st.order) do
    local js = st.jobs[id]
    if js.state == "done" then out[id] = js.record end
  end
  return out
end
_M.records = records_of

--- wake(st) -> the earliest time a tick is due (a retry's backoff, a
-- strategy's deadline) | nil
function _M.wake(st)
  local at
  local function min(t) if t and (at == nil or t < at) then at = t end end
  for _, id in ipairs(st.order) do
    local js = st.jobs[id]
    if js.state == "retry" then min(js.retry_at) end
    if js.state == "running" then
      for sid, due in pairs(js.due or {}) do
        if js.live[sid] and not (js.expired and js.expired[sid]) then min(due) end
      end
    end
  end
  return at
end

--- context(st, now) -> the workflow context (what `luabatch run --json` prints)
function _M.context(st, now)
  local records = records_of(st)
  local statuses = {}
  for _, id in ipairs(st.order) do
    local js = st.jobs[id]
    if js.state == "done" then statuses[#statuses + 1] = js.record.status end
  end
  local status = stage.validate_statuses(statuses)
  local errors = st.errors
  if st.abort then status = "FAILED" end
  if st.cancel_blocked and status ~= "FAILED" then
    status = "CANCEL"
    errors = errors or { name = "WorkflowCancelError",
      message = "Job execution was canceled because the event was set before start job execution." }
  end
  local ctx = { status = status, params = st.params, jobs = records }
  if errors and status ~= "SUCCESS" and status ~= "SKIP" then ctx.errors = errors end
  ctx.info = stage.info(st.t0 or now, now)
  return ctx
end

---------------------------------------------------------------------------
-- One job
---------------------------------------------------------------------------

local function failed_job(jobdef, message, t0, now)
  return job.record(jobdef, { status = "FAILED", errors = { name = "JobError", message = message },
                              info = stage.info(t0, now) })
end

local function job_done(st, id, rec, now, out, cached)
  local js = st.jobs[id]
  js.state, js.record = "done", rec
  if rec.status == "FAILED" then
    st.errors = { name = "WorkflowError", message = str_format("Job execution, '%s', was failed.", id) }
  elseif rec.status == "CANCEL" then
    st.errors = { name = "WorkflowCancelError", message = str_format("Job execution, '%s', was canceled.", id) }
  end
  out[#out + 1] = { op = "job_done", job = id, record = rec, seconds = now - (js.t0 or now), key = js.key,
                    cached = cached, reused = js.reused }
end

-- Strategies of the current attempt that may start now -> combos
local function startable(js, now)
  local list = {}
  if js.stopped then return list end
  while js.next <= #js.combos and js.running < js.mp do
    local combo = js.combos[js.next]
    js.next = js.next + 1
    local kept = js.reuse and js.reuse[combo.id]
    if kept then
      js.results[combo.id] = kept
      js.reused = (js.reused or 0) + 1
    else
      js.running = js.running + 1
      js.live[combo.id] = true
      if js.limit then js.due[combo.id] = now + js.limit end
      list[#list + 1] = combo
    end
  end
  return list
end

local function run_action(js, id, combos)
  return { op = "run", job = id, attempt = js.attempt, combos = combos, array = js.array or nil,
           wctx = { params = js.wctx.params, jobs = js.wctx.jobs, status = "WAIT" } }
end

local function attempt_context(model, id, js, now)
  return _M.job_context(model.jobs[id], js.combos, js.results, js.ta, now)
end

-- Begin attempt js.attempt: if:, max-parallel, the strategies.
local function begin_attempt(st, model, id, env, now, out)
  local js, jobdef = st.jobs[id], model.jobs[id]
  js.ta, js.results, js.live, js.running, js.next, js.stopped = now, object(), {}, 0, 1, nil
  js.reused = nil
  js.due = {}                        -- sid -> the client deadline of a live strategy
  js.began = {}                      -- sid -> true once its container was seen running
  local wctx = { params = js.wctx.params, jobs = js.wctx.jobs, status = "WAIT" }
  local function attempt_done(jctx)
    jctx.info = stage.info(now, now)
    return _M.attempt_ended(st, model, id, jctx, now, out)
  end
  local ok, cerr = stage.condition(jobdef["if"], wctx, env)
  if ok == nil then
    return attempt_done({ status = "FAILED", errors = { name = "JobError", message = "job if: " .. tostring(cerr) } })
  end
  if ok == false then return attempt_done({ status = "SKIP" }) end
  local mp, merr = job.max_parallel(jobdef, wctx, env, js.cap)
  if not mp then return attempt_done({ status = "FAILED", errors = { name = "JobError", message = merr } }) end
  local combos, serr = job.strategies(jobdef)
  if not combos then return attempt_done({ status = "FAILED", errors = stage.error_of(serr, "JobError") }) end
  js.combos, js.fail_fast = combos, job.fail_fast(jobdef)
  js.state, js.mp = "running", (js.array and #combos >= 2) and #combos or mp
  local first = startable(js, now)
  if #first > 0 then out[#out + 1] = run_action(js, id, first) end
  if js.running == 0 and js.next > #combos then   -- every strategy reused
    _M.attempt_ended(st, model, id, attempt_context(model, id, js, now), now, out)
  end
end

--- job_context(jobdef, combos, results, t0, now) -> the job context of
-- one attempt from its strategy records (results[sid]; matrix order; a
-- strategy that never started is absent): status, errors, info.
function _M.job_context(jobdef, combos, results, t0, now)
  local jctx, statuses, errs, nerr = {}, {}, object(), 0
  for _, combo in ipairs(combos) do
    local rec = results[combo.id]
    if rec then
      jctx[combo.id] = rec
      statuses[#statuses + 1] = rec.status
      if rec.errors then errs[combo.id] = rec.errors; nerr = nerr + 1 end
    end
  end
  jctx.status = stage.validate_statuses(statuses)
  if nerr > 0 then
    if job.has_matrix(jobdef) then jctx.errors = errs else jctx.errors = errs.EMPTY end
  end
  jctx.info = stage.info(t0, now)
  return jctx
end


-- An attempt ended with jctx: retry it, or the job is done.
function _M.attempt_ended(st, model, id, jctx, now, out)
  local js, jobdef = st.jobs[id], model.jobs[id]
  local retries = tonumber(jobdef.retry) or 0
  local k = js.attempt
  if jctx.status == "FAILED" and k < retries and not st.cancel then
    js.state, js.attempt, js.failed = "retry", k + 1, jctx
    js.retry_at = now + (k >= 1 and 1.2 ^ (k + 1) or 0)
    out[#out + 1] = { op = "retry", job = id, attempt = k + 1, at = js.retry_at, errors = jctx.errors }
    return
  end
  if st.only then st.jobs[id].jctx = jctx end   -- run_job returns it too
  job_done(st, id, job.record(jobdef, jctx), now, out)
end

local function strategy_ended(st, model, ev, out)
  local js = st.jobs[ev.job]
  if not js or js.state ~= "running" or ev.attempt ~= js.attempt then return end
  local recs = ev.records or { [ev.sid] = ev.record }
  for sid, rec in pairs(recs) do
    if js.live[sid] then
      js.live[sid] = nil
      js.running = js.running - 1
      js.results[sid] = rec
      if rec.status == "FAILED" and js.fail_fast and not js.stopped then
        js.stopped = "fail-fast"
        local sids = {}
        for _, combo in ipairs(js.combos) do if js.live[combo.id] then sids[#sids + 1] = combo.id end end
        if #sids > 0 then
          out[#out + 1] = { op = "stop", job = ev.job, attempt = js.attempt, sids = sids, why = "fail-fast" }
        end
      end
    end
  end
  local more = startable(js, ev.now)
  if #more > 0 then out[#out + 1] = run_action(js, ev.job, more) end
  if js.running == 0 and (js.stopped or js.next > #js.combos) then
    _M.attempt_ended(st, model, ev.job, attempt_context(model, ev.job, js, ev.now), ev.now, out)
  end
end

---------------------------------------------------------------------------
-- The run
---------------------------------------------------------------------------

-- A job about to start: its key, and what an ended run of it may give.
-- -> true when the job is done (its earlier record taken as is)
local function reuse(st, model, id, records, now, out)
  local js = st.jobs[id]
  js.key = fingerprint.job(model, id, st.params, records, st.runner)
  local old = st.cache and st.cache[id]
  if not (old and old.key == js.key and type(old.record) == "table") then return false end
  local rec = old.record
  if rec.status == "SUCCESS" or rec.status == "SKIP" then
    js.t0 = now
    job_done(st, id, rec, now, out, true)
    return true
  end
  local keep
  for sid, srec in pairs(type(rec.strategies) == "table" and rec.strategies or {}) do
    if type(srec) == "table" and srec.status == "SUCCESS" then
      keep = keep or {}
      keep[sid] = srec
    end
  end
  js.reuse = keep
  return false
end

-- Start every job whose needs are settled (repeat: a skip settles more).
local function start_ready(st, model, now, out)
  local again = true
  while again and not st.abort do
    again = false
    local records
    for _, id in ipairs(st.order) do
      local js = st.jobs[id]
      if js.state == "waiting" and not st.abort then
        local jobdef = model.jobs[id]
        local settled = true
        for _, n in ipairs(st.only and {} or jobdef.needs or {}) do
          local ns = st.jobs[n] and st.jobs[n].state
          if ns ~= nil and ns ~= "done" and ns ~= "blocked" then settled = false end
        end
        if settled then
          records = records or records_of(st)
          local rule = st.only and "SUCCESS" or _M.check_needs(jobdef, records)
          if st.cancel then
            js.state, st.cancel_blocked, again = "blocked", true, true
          elseif rule == "WAIT" then
            js.state, again = "blocked", true
          elseif rule == "FAILED" then
            js.state, st.abort = "blocked", true
            st.errors = { name = "WorkflowError", message = str_format(
              "Validate job trigger rule was failed with '%s'.", jobdef.trigger_rule or "all_success") }
          elseif rule == "SKIP" then
            js.t0 = now
            job_done(st, id, _M.skip_record(jobdef), now, out)
            records, again = nil, true
          elseif reuse(st, model, id, records, now, out) then
            records, again = nil, true
          else
            js.state, js.t0, js.attempt = "preparing", now, 0
            js.wctx = { params = st.params, jobs = stage.shallow(records) }
            out[#out + 1] = { op = "prepare", job = id,
                              wctx = { params = st.params, jobs = js.wctx.jobs, status = "WAIT" } }
          end
        end
      end
    end
  end
end

local function busy(st)
  for _, id in ipairs(st.order) do
    local s = st.jobs[id].state
    if s == "preparing" or s == "running" or s == "retry" then return true end
  end
  return false
end

local function cancel(st, model, ev, out)
  if st.cancel then return end
  st.cancel = tostring(ev.reason or "cancelled")
  for _, id in ipairs(st.order) do
    local js = st.jobs[id]
    if js.state == "running" and not js.stopped then
      js.stopped = "cancel"
      local sids = {}
      for _, combo in ipairs(js.combos) do if js.live[combo.id] then sids[#sids + 1] = combo.id end end
      if #sids > 0 then out[#out + 1] = { op = "stop", job = id, attempt = js.attempt, sids = sids, why = "cancel" } end
    elseif js.state == "retry" then
      -- a pending retry does not happen: the failed attempt is the record
      js.retry_at = nil
      job_done(st, id, job.record(model.jobs[id], js.failed), ev.now, out)
    end
  end
end

-- A strategy's job seen waiting (no deadline while it waits for capacity)
-- or running (the deadline counts from now, once: a retry attempt's wait
-- after a first run does not reset it).
local function seen(st, ev)
  local js = st.jobs[ev.job]
  local sid = ev.sid
  if not (js and js.state == "running" and js.limit and ev.attempt == js.attempt and js.live[sid])
      or (js.expired and js.expired[sid]) or (js.began and js.began[sid]) then
    return
  end
  if ev.state == "running" then
    js.began = js.began or {}           -- (a plan kept from before there were state events)
    js.began[sid] = true
    js.due[sid] = ev.now + js.limit
  elseif ev.state == "waiting" then
    js.due[sid] = nil
  end
end

-- The client deadline: a live strategy past its due time is stopped
-- (why "deadline"); its runner ends it FAILED, naming the deadline.
local function expire(st, now, out)
  for _, id in ipairs(st.order) do
    local js = st.jobs[id]
    if js.state == "running" and js.due then
      local sids = {}
      for _, combo in ipairs(js.combos) do
        local sid = combo.id
        local due = js.due[sid]
        if due and js.live[sid] and now >= due and not (js.expired and js.expired[sid]) then
          js.expired = js.expired or {}
          js.expired[sid] = true
          sids[#sids + 1] = sid
        end
      end
      if #sids > 0 then out[#out + 1] = { op = "stop", job = id, attempt = js.attempt, sids = sids, why = "deadline" } end
    end
  end
end

--- step(st, model, event, env) -> actions (st updated in place)
function _M.step(st, model, ev, env)
  local out = {}
  local now = ev.now
  local t = ev.type
  if t == "start" then
    st.t0 = st.t0 or now
  elseif t == "prepared" then
    local js = st.jobs[ev.job]
    if js and js.state == "preparing" then
      if ev.record or ev.error then
        job_done(st, ev.job, ev.record or failed_job(model.jobs[ev.job], tostring(ev.error), js.t0, now), now, out)
      elseif ev.whole then
        js.state = "whole"       -- a runner that runs the whole job itself: job_ended
      else
        js.array = ev.array and true or nil
        js.limit = tonumber(ev.deadline)
        js.cap = tonumber(ev.cap)
        begin_attempt(st, model, ev.job, env, now, out)
      end
    end
  elseif t == "ended" then
    strategy_ended(st, model, ev, out)
  elseif t == "job_ended" then
    local js = st.jobs[ev.job]
    if js and (js.state == "whole" or js.state == "preparing") then job_done(st, ev.job, ev.record, now, out) end
  elseif t == "cancel" then
    cancel(st, model, ev, out)
  elseif t == "state" then
    seen(st, ev)
  elseif t ~= "tick" then
    error("plan.step: unknown event type '" .. tostring(t) .. "'", 2)
  end
  expire(st, now, out)
  for _, id in ipairs(st.order) do
    local js = st.jobs[id]
    if js.state == "retry" and js.retry_at and now >= js.retry_at and not st.cancel then
      js.retry_at, js.failed = nil, nil
      begin_attempt(st, model, id, env, now, out)
    end
  end
  start_ready(st, model, now, out)
  if not st.done and not busy(st) then
    for _, id in ipairs(st.order) do
      if st.jobs[id].state == "waiting" then st.jobs[id].state = "blocked" end
    end
    st.done = true
    out[#out + 1] = { op = "done", context = _M.context(st, now) }
  end
  return out
end

return _M
