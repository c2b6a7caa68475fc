-- luabatch.ngx.view: what GET /runs/ID answers, from a live run (the
-- shared dict's meta + the poller's summaries) or from its journal alone
-- (a run this server no longer holds: after a restart, or a CLI run).
--
--   local view = require "luabatch.ngx.view"
--   view.live(app, meta)          -> body (see luabatch.ngx.runs' header)
--   view.journaled(run_id, events) -> the same shape from journal events
--   view.label("fan", { n = 2 }, 1) -> "fan[n=2] try 2"
--
-- body = { run_id, workflow, started, ended?, status, cancel?, job?, source
--   ("live" | "journal"), jobs = [ { job, key, strategy_id, label, matrix,
--   attempt, job_id (Batch), job_name, status (Batch's), reason, exit_code,
--   log_stream, submitted_at, ended_at, result (the strategy record's
--   status), failure (its first error message) } ], workflow_jobs = [ { job,
--   state, queued, strategies, attempt, status?, reason?, error? } ],
--   result (the final context, once done) }.  Pure: no I/O but the dict.

local stage = require "luabatch.workflow.stage"
local job = require "luabatch.workflow.job"
local journal = require "luabatch.journal"
local ngx_poller = require "luabatch.ngx.poller"

local _M = { _VERSION = "0.1.0" }

local type = type
local pairs = pairs
local ipairs = ipairs
local tostring = tostring
local tonumber = tonumber
local str_match = string.match
local concat = table.concat
local sort = table.sort

local TERMINAL = ngx_poller.TERMINAL
local first_error = stage.first_error

--- failure(rec) -> one line of why a record failed: its failed stages'
-- first errors ("stage: message", stages sorted), else its own first error;
-- a matrix job's record: its first failed strategy's; nil for a success
function _M.failure(rec)
  if type(rec) ~= "table" or rec.status == "SUCCESS" or rec.status == "SKIP" then return nil end
  local parts = {}
  if type(rec.stages) == "table" then
    local keys = {}
    for k, r in pairs(rec.stages) do
      if type(r) == "table" and r.status == "FAILED" then keys[#keys + 1] = tostring(k) end
    end
    sort(keys)
    for _, k in ipairs(keys) do
      local m = first_error(rec.stages[k].errors)
      if m then parts[#parts + 1] = k .. ": " .. m end
    end
  end
  if #parts > 0 then return concat(parts, "; ") end
  if type(rec.strategies) == "table" then
    local sids = {}
    for sid in pairs(rec.strategies) do sids[#sids + 1] = tostring(sid) end
    sort(sids)
    for _, sid in ipairs(sids) do
      local r = rec.strategies[sid]
      local m = _M.failure(r)
      if m and type(r) == "table" and r.status ~= "CANCEL" then return _M.label("", r.matrix) .. " " .. m end
    end
  end
  return first_error(rec.errors)
end

local function attempt_of(key)
  return tonumber(str_match(tostring(key or ""), "/(%d+)$")) or 0
end

--- label(job_id, matrix, attempt) -> "job[k=v,...] try N":
-- luabatch.workflow.job.label, as the CLI names a strategy
_M.label = job.label

--------------------------------------------------------------------------
-- A live run
---------------------------------------------------------------------------

--- states(app, meta) -> the run's Batch jobs with their summaries (every
-- workflow job in order; earlier attempts first), each with its config
function _M.states(app, meta)
  local d = app:dict()
  local out = {}
  for _, id in ipairs(meta.order or {}) do
    local js = meta.jobs[id]
    local list = {}
    for _, j in ipairs(js.history or {}) do list[#list + 1] = j end
    for _, j in ipairs(js.submitted and js.submitted.jobs or {}) do list[#list + 1] = j end
    for _, j in ipairs(list) do
      local att = attempt_of(j.key)
      local e = { job = id, key = j.key, strategy_id = j.strategy_id, job_id = j.batch_job_id,
                  job_name = j.job_name, matrix = j.matrix, attempt = att, label = _M.label(id, j.matrix, att),
                  submitted_at = j.at, ended_at = j.ended_at, result = j.result, failure = j.failure }
      if j.error then
        e.status, e.reason = "FAILED", j.error
      else
        local s = ngx_poller.get(d, j.batch_job_id, { prefix = app.prefix })
        if s then
          e.status, e.reason, e.exit_code, e.log_stream = s.status, s.reason, s.exit_code, s.log_stream
        else
          e.status = "SUBMITTED"
        end
      end
      e.config = js.submitted and js.submitted.config
      out[#out + 1] = e
    end
  end
  return out
end

local job_reason = _M.failure

--- live(app, meta) -> the answer of GET /runs/ID (and POST's)
function _M.live(app, meta)
  local jobs = _M.states(app, meta)
  local wjobs = {}
  local running = false
  for _, j in ipairs(jobs) do
    if j.status == "RUNNING" or TERMINAL[j.status] then running = true end
    j.config = nil
  end
  for _, id in ipairs(meta.order or {}) do
    local js = meta.jobs[id]
    local e = { job = id, state = js.state, queued = js.queued and #js.queued or 0,
                strategies = js.submitted and #js.submitted.jobs or 0, attempt = tonumber(js.attempt) or 0 }
    if js.state == "done" then
      e.status = js.record and js.record.status
      e.reason = job_reason(js.record)
      running = true
    end
    if js.collect_error then e.error = js.collect_error end
    wjobs[#wjobs + 1] = e
  end
  local order = meta.order or {}
  local body = { run_id = meta.run_id, workflow = meta.workflow, started = meta.created, ended = meta.ended_at,
                 cancel = meta.cancel, source = "live", job = meta.job or (#order == 1 and order[1]) or nil,
                 jobs = stage.array(jobs), workflow_jobs = stage.array(wjobs) }
  if meta.done and meta.final then
    body.status, body.result = meta.final.status, meta.final
  else
    body.status = running and "RUNNING" or "SUBMITTED"
  end
  return body
end

---------------------------------------------------------------------------
-- From the journal
---------------------------------------------------------------------------

--- journaled(run_id, events) -> the answer of GET /runs/ID from the
-- journal's events (the CLI's or this server's)
function _M.journaled(run_id, events)
  local st = journal.fold(events)
  local run = st.run or {}
  local submits, ended_at, jobs_done = {}, {}, {}
  for _, e in ipairs(events) do
    if e.ev == "submit" and type(e.key) == "string" then
      submits[e.key] = e
    elseif (e.ev == "result" or (e.ev == "state" and TERMINAL[e.status or ""])) and type(e.key) == "string" then
      ended_at[e.key] = ended_at[e.key] or tonumber(e.at)
    elseif e.ev == "job" and e.job_id ~= nil then
      jobs_done[e.job_id] = e.record
    end
  end
  local order, seen = {}, {}
  local function add(id)
    if id ~= nil and not seen[id] then seen[id] = true order[#order + 1] = id end
  end
  for _, id in ipairs(type(run.jobs) == "table" and run.jobs or {}) do add(id) end
  local rows, per = {}, {}
  for _, key in ipairs(st.order) do
    local js = st.jobs[key]
    add(js.job_id)
    local sub = submits[key] or {}
    local rec = st.results[key]
    local matrix = sub.matrix or (type(rec) == "table" and rec.matrix) or nil
    local att = tonumber(js.attempt) or attempt_of(key)
    local e = { job = js.job_id, key = key, strategy_id = js.strategy_id, job_id = js.batch_job_id,
                job_name = js.job_name, matrix = matrix, attempt = att, label = _M.label(js.job_id, matrix, att),
                status = js.status or (js.batch_job_id and "SUBMITTED" or "NOT SUBMITTED"),
                reason = js.reason or (js.terminated and js.terminate_reason) or nil, exit_code = js.exit_code,
                log_stream = js.log_stream, submitted_at = tonumber(sub.at), ended_at = ended_at[key],
                result = type(rec) == "table" and rec.status or js.result_status or nil }
    if e.result and e.result ~= "SUCCESS" and e.result ~= "SKIP" then e.failure = _M.failure(rec) end
    rows[#rows + 1] = e
    per[js.job_id] = (per[js.job_id] or 0) + 1
  end
  for id in pairs(jobs_done) do add(id) end
  local wjobs = {}
  for _, id in ipairs(order) do
    local rec = jobs_done[id]
    local e = { job = id, queued = 0, strategies = per[id] or 0, attempt = 0 }
    if rec then
      e.state, e.status, e.reason = "done", type(rec) == "table" and rec.status or nil, job_reason(rec)
    else
      e.state = per[id] and "submitted" or "pending"
    end
    wjobs[#wjobs + 1] = e
  end
  local body = { run_id = run_id, workflow = run.workflow, started = tonumber(run.at), source = "journal",
                 job = run.job, cancel = st.cancel and st.cancel.reason or nil,
                 jobs = stage.array(rows), workflow_jobs = stage.array(wjobs) }
  if st.ended then
    body.status, body.ended = st.ended.status or "UNKNOWN", tonumber(st.ended.at)
    body.result = st.ended.context
  else
    body.status = "RUNNING"
  end
  return body
end

return _M
