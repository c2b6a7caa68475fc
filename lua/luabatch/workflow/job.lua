-- luabatch.workflow.job: one job's pieces (the plan decides when they run).
--
--   local job = require "luabatch.workflow.job"
--   job.strategies(jobdef) -> { { id = sid | "EMPTY", values }, ... } | nil, err
--   job.max_parallel(jobdef, wctx, env [, cap]) -> 1..(cap or 9) | nil, msg
--     (a template is rendered; cap = the runner's bound: aws_batch's 10000)
--   job.fail_fast(jobdef) -> bool ; job.has_matrix(jobdef) -> bool
--   job.run_stages(jobdef, combo, wctx, senv) -> strategy record (here)
--   job.run_strategy(jobdef, combo, wctx, env [, group]) -> the same, with a
--     fail-fast group ({ cancel, fail_fast }): what `luabatch task` runs
--   job.record(jobdef, jctx) -> the record in `jobs.<id>`
--   job.label("fan", { n = 2 }, 1) -> "fan[n=2] try 2": how every view names a strategy
--
-- The local job context (ddeutil-workflow's, also what a remote runner
-- writes as result.json):
--   { status = S, [<strategy id> | "EMPTY"] = { status, matrix, stages[, errors] },
--     errors = {name, message} (no matrix) | { <sid> = {name, message} } (matrix) }
-- The record: no matrix  { status, stages[, errors] }
--             matrix     { status, strategies = { <sid> = {...} }[, errors] }
-- A strategy runs the stages in order and stops at the first FAILED/CANCEL
-- stage (senv.cancelled() is asked between stages).

local stage = require "luabatch.workflow.stage"

local _M = { _VERSION = "0.1.0" }

local type = type
local pairs = pairs
local ipairs = ipairs
local require = require
local tostring = tostring
local tonumber = tonumber
local setmetatable = setmetatable
local next = next
local str_format = string.format
local floor = math.floor
local sort = table.sort
local concat = table.concat

local object = stage.object

local MAX_PARALLEL = 9

-- Strategy handling ----------------------------------------------------------

local function matrix_set(strategy)
  if type(strategy) ~= "table" or type(strategy.matrix) ~= "table" then return false end
  return next(strategy.matrix) ~= nil
end
_M.has_matrix = function(jobdef) return matrix_set(jobdef.strategy) end

-- Combos as { id = sid, values = {k = v} } in run order, or nil, err.
local function strategies(jobdef)
  if not matrix_set(jobdef.strategy) then
    return { { id = "EMPTY", values = object() } }
  end
  local matrix = require "luabatch.workflow.matrix"
  local combos, err = matrix.expand(jobdef.strategy, jobdef.strategy.key_order)
  if not combos then return nil, err end
  local out = {}
  for i, c in ipairs(combos) do
    local values, keys = c, nil
    if type(c.values) == "table" then values, keys = c.values, c.keys end
    local id = c.id
    if id == nil then id = matrix.id(c, keys) end
    local v = object()
    for k, x in pairs(values) do v[k] = x end
    out[i] = { id = id, values = v }
  end
  return out
end

local function max_parallel(jobdef, wctx, env, cap)
  local mp = jobdef.strategy and (jobdef.strategy.max_parallel or jobdef.strategy["max-parallel"])
  if mp == nil then return 1 end
  if type(mp) == "string" then
    local v, err = stage.render_or_error(env, mp, wctx)
    if v == nil then return nil, err.message end
    mp = v
  end
  local n = tonumber(mp)
  if n == nil or n ~= floor(n) then
    return nil, str_format("The max-parallel value should be an integer, not %s.", tostring(mp))
  end
  if n > (cap or MAX_PARALLEL) then
    if cap == nil or cap == MAX_PARALLEL then   -- the local bound: ddeutil-workflow's words
      return nil, str_format("The max-parallel value should not more than 10, the current value was set: %d.", n)
    end
    return nil, str_format("The max-parallel value should be at most %d on this job's runner, "
      .. "the current value was set: %d.", cap, n)
  end
  if n < 1 then
    return nil, str_format("The max-parallel value should be at least 1, the current value was set: %d.", n)
  end
  return n
end

--- max_parallel(jobdef, wctx, env [, cap]) -> n (1..cap) | nil, message:
-- cap is the largest value the job's runner allows (nil: 9, ddeutil's
-- bound and its error wording; runs-on aws_batch: luabatch.runner's 10000).
_M.max_parallel = max_parallel
_M.MAX_PARALLEL = MAX_PARALLEL

--- fail_fast(jobdef) -> bool
function _M.fail_fast(jobdef)
  local st = jobdef.strategy
  return st ~= nil and (st.fail_fast or st["fail-fast"]) == true
end

local function strategy_error(status, failed)
  if status == "FAILED" then
    return { name = "JobError", message = str_format(
      "Strategy execution was break because its nested-stage, '%s', failed.", tostring(failed)) }
  elseif status == "CANCEL" then
    return { name = "JobCancelError",
      message = "Strategy execution was canceled from the event before start stage execution." }
  end
end

-- The environment one strategy runs in: its id, and a cancelled() that is
-- also true once a fail-fast sibling failed.
local function strategy_env(env, combo, group)
  local parent_cancelled = env.cancelled
  return setmetatable({
    strategy = combo.id,
    cancelled = function()
      return group.cancel or (parent_cancelled ~= nil and parent_cancelled()) or false
    end,
  }, { __index = env })
end

-- Run the stages of one strategy here -> strategy record.
local function local_strategy(jobdef, combo, wctx, senv)
  local t0 = stage.now()
  local rctx = { params = wctx.params, jobs = wctx.jobs, status = wctx.status,
                 matrix = combo.values, stages = object() }
  local status, records, failed = stage.run_list(jobdef.stages or {}, rctx, senv)
  local rec = { status = status, matrix = combo.values, stages = records }
  rec.errors = strategy_error(status, failed)
  rec.info = stage.info(t0, stage.now())
  return rec
end

--- run_stages(jobdef, combo, wctx, senv) -> strategy record: the job's
-- stages for one strategy, here (senv.cancelled() is asked between stages).
_M.run_stages = local_strategy

--- failed_strategy(combo, message) -> the record of a strategy whose runner
-- failed (an error, not a stage).
function _M.failed_strategy(combo, message)
  local t = stage.now()
  return { status = "FAILED", matrix = combo.values, stages = object(), info = stage.info(t, t),
           errors = { name = "JobError", message = tostring(message) } }
end

local function run_with(fn, jobdef, combo, wctx, env, group)
  local rec = fn(jobdef, combo, wctx, strategy_env(env, combo, group), group)
  if rec.status == "FAILED" and group.fail_fast then group.cancel = true end
  return rec
end

--- Run ONE strategy of the job on this machine -> strategy record
-- { status, matrix, stages, errors?, info }.  group (optional) is shared by
-- the strategies of one attempt: { cancel = bool, fail_fast = bool }.
-- This is what `luabatch task` runs inside a Batch container.
function _M.run_strategy(jobdef, combo, wctx, env, group)
  return run_with(local_strategy, jobdef, combo, wctx, env, group or { cancel = false })
end

--- The job's strategies in run order: { { id = sid | "EMPTY", values }, ... }
-- | nil, err.
_M.strategies = strategies

--- strategy(jobdef, sid) -> its combo { id, values } (values empty when the
-- matrix has no such id, e.g. a record of an older definition)
function _M.strategy(jobdef, sid)
  for _, combo in ipairs(strategies(jobdef) or {}) do
    if combo.id == sid then return combo end
  end
  return { id = sid, values = object() }
end

--- label(job_id, matrix, attempt) -> "job[k=v,...]" (matrix values, keys
-- sorted), "job" without a matrix; " try N" for attempt N-1 > 0.  The one
-- name of a strategy: failure reports, `luabatch status`, the live view and
-- nginx's GET /runs/ID all show it.
function _M.label(job_id, matrix, attempt)
  local l = tostring(job_id)
  if type(matrix) == "table" and next(matrix) ~= nil then
    local keys = {}
    for k in pairs(matrix) do keys[#keys + 1] = tostring(k) end
    sort(keys)
    local parts = {}
    for i, k in ipairs(keys) do parts[i] = k .. "=" .. tostring(matrix[k]) end
    l = str_format("%s[%s]", l, concat(parts, ","))
  end
  local a = tonumber(attempt)
  if a and a > 0 then l = l .. " try " .. floor(a + 1) end
  return l
end

--- The job record kept in the workflow context `jobs.<id>`.
function _M.record(jobdef, jctx)
  local rec = { status = jctx.status, info = jctx.info }
  if matrix_set(jobdef.strategy) then
    local strat = object()
    for k, v in pairs(jctx) do
      if k ~= "status" and k ~= "errors" and k ~= "info" and type(v) == "table" then
        strat[k] = v
      end
    end
    rec.strategies = strat
    rec.errors = jctx.errors
  else
    local e = jctx.EMPTY
    if e then
      rec.stages = e.stages
    elseif jctx.status ~= "SKIP" and jctx.status ~= "FAILED" then
      rec.stages = object()
    end
    rec.errors = jctx.errors or (e and e.errors) or nil
  end
  return rec
end

return _M
