-- luabatch.workflow.stage: the common stage wrapper (identity, `if`, retry,
-- record) and small helpers shared by the engine, the job runner and the
-- nested stage kinds.
--
--   local stage = require "luabatch.workflow.stage"
--   local record, key = stage.execute(st, rctx, env)
--   local status, records, failed = stage.run_list(stages, rctx, env)
--
-- record = { outputs = {...}, status = "SUCCESS"|"FAILED"|"SKIP"|"CANCEL",
--   errors = {name=, message=} (a map of them for nested kinds),
--   info = {exec_start, exec_end, exec_latency} }
-- key: the rendered `id`; a stage without `id` runs but records nothing (as
-- in ddeutil-workflow, whose stage_default_id is false).
-- `if`: absent or true runs, false skips; a string is rendered (templates +
-- ${VAR}) and evaluated by luabatch.workflow.expr, and must give a boolean (a
-- whole `${{ }}` template that renders to a boolean is that boolean).
-- retry: up to retry+1 attempts; attempt 1 follows attempt 0 at once, after
-- attempt k >= 1 fails the wrapper sleeps 1.2^(k+1) s; SKIP and CANCEL are not
-- retried; `retry` (the attempt) is in the render context, not the outputs.
-- A kind module (luabatch.workflow.stages.<kind>) returns { execute =
-- function(stage, rctx, env) -> outputs | nil, err[, outputs] }: err is
-- {name=, message=} (a map for nested kinds), with `status = "SKIP"|"CANCEL"`
-- to end with that status instead of FAILED.  A Lua error a kind raises is
-- caught: a {name, message} table as is, else {name = "StageError", ...}.

local _M = { _VERSION = "0.1.0" }

local type = type
local pairs = pairs
local ipairs = ipairs
local pcall = pcall
local require = require
local tostring = tostring
local tonumber = tonumber
local setmetatable = setmetatable
local getmetatable = getmetatable
local str_format = string.format
local floor = math.floor
local os_date = os.date

local core_ok, core = pcall(require, "luabatch.core")

---------------------------------------------------------------------------
-- Time
---------------------------------------------------------------------------

--- Wall clock, epoch seconds (float).
function _M.now()
  if core_ok and core.now then return core.now() end
  return os.time()
end

--- ISO 8601 UTC timestamp with microseconds: 2024-01-02T03:04:05.123456+00:00
function _M.iso(t)
  local s = floor(t)
  local us = floor((t - s) * 1e6 + 0.5)
  if us >= 1000000 then s, us = s + 1, us - 1000000 end
  return os_date("!%Y-%m-%dT%H:%M:%S", s) .. str_format(".%06d+00:00", us)
end

--- The `info` timing map of a record.
function _M.info(t0, t1)
  return { exec_start = _M.iso(t0), exec_end = _M.iso(t1),
           exec_latency = floor((t1 - t0) * 1e6 + 0.5) / 1e6 }
end

---------------------------------------------------------------------------
-- JSON shape markers: tables built by the engine whose keys may be integers
-- (foreach items, until loops) or that may be empty are marked so the JSON
-- encoder writes an object (or an array) whatever their content.
---------------------------------------------------------------------------

-- The markers are luabatch.json's (defined there once).
local json = require "luabatch.json"
_M.null = json.null
_M.object = json.object
_M.array = json.list
_M.jsontype = json.jsontype

---------------------------------------------------------------------------
-- Statuses
---------------------------------------------------------------------------

--- ddeutil-workflow's validate_statuses: any FAILED -> FAILED, else any CANCEL
-- -> CANCEL, else any WAIT -> WAIT, all SKIP (non-empty) -> SKIP, else SUCCESS.
function _M.validate_statuses(list)
  local n, skip = 0, 0
  local seen = {}
  for _, s in ipairs(list) do
    n = n + 1
    seen[s] = true
    if s == "SKIP" then skip = skip + 1 end
  end
  if seen.FAILED then return "FAILED" end
  if seen.CANCEL then return "CANCEL" end
  if seen.WAIT then return "WAIT" end
  if n > 0 and skip == n then return "SKIP" end
  return "SUCCESS"
end

---------------------------------------------------------------------------
-- Errors
---------------------------------------------------------------------------

--- first_error(errors) -> the first message in an errors tree (a record's
-- errors: {name, message} or a map of them, nested), or nil.
local function first_error(errors)
  if type(errors) ~= "table" then return nil end
  if errors.message then return tostring(errors.message) end
  for _, e in pairs(errors) do
    local m = first_error(e)
    if m then return m end
  end
end
_M.first_error = first_error

--- Normalise any error value to {name=, message=}.
function _M.error_of(err, default_name)
  if type(err) == "table" then
    if err.name ~= nil or err.message ~= nil then
      return { name = tostring(err.name or default_name or "StageError"),
               message = tostring(err.message or "") }
    end
    return err
  end
  return { name = default_name or "StageError", message = tostring(err) }
end

---------------------------------------------------------------------------
-- Tables
---------------------------------------------------------------------------

function _M.shallow(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end

local function deepcopy(v, seen)
  if type(v) ~= "table" then return v end
  seen = seen or {}
  if seen[v] then return seen[v] end
  local c = {}
  seen[v] = c
  for k, x in pairs(v) do c[deepcopy(k, seen)] = deepcopy(x, seen) end
  local mt = getmetatable(v)
  if mt then setmetatable(c, mt) end
  return c
end
_M.deepcopy = deepcopy

--- A render context for nested stages: the outer one with a fresh `stages`
-- map (a copy, so the outer siblings stay visible) and the extra keys.
function _M.child_ctx(rctx, extra)
  local c = _M.shallow(rctx)
  c.stages = _M.shallow(rctx.stages or {})
  if extra then
    for k, v in pairs(extra) do c[k] = v end
  end
  return c
end

---------------------------------------------------------------------------
-- Concurrency: run fn(i, item) for every item, at most `limit` at once, in
-- scheduler tasks.  `stop()` (optional) is asked before each start: once it
-- is true no further item starts (fail-fast); items not started have no
-- result.  Returns the results table indexed like items (first return of fn)
-- and the count started.  Outside a scheduler task (or with limit 1) the
-- items run one after the other in the caller.
---------------------------------------------------------------------------

local function sched_mod()
  return require "luabatch.workflow.sched"
end

local function spawn(sched, fn, ...)
  if sched.spawn then return sched.spawn(fn, ...) end
  local cur = sched.current and sched.current()
  local s = cur and (cur.sched or cur.scheduler or cur.s)
  if s then return s:spawn(fn, ...) end
  return nil
end

function _M.map_concurrent(items, limit, fn, stop)
  local results = {}
  local n = #items
  local sched = sched_mod()
  local in_task = sched.current and sched.current() ~= nil
  if not in_task or limit <= 1 or n <= 1 then
    local started = 0
    for i = 1, n do
      if stop and stop() then break end
      started = started + 1
      results[i] = fn(i, items[i])
    end
    return results, started
  end
  local lim = sched.limiter(limit)
  local tasks = {}
  local started = 0
  for i = 1, n do
    tasks[i] = spawn(sched, function()
      lim:acquire()
      if stop and stop() then
        lim:release()
        return
      end
      started = started + 1
      local ok, res = pcall(fn, i, items[i])
      lim:release()
      if not ok then error(res, 0) end
      results[i] = res
    end)
  end
  for i = 1, n do
    if tasks[i] then sched.join(tasks[i]) end
  end
  return results, started
end

---------------------------------------------------------------------------
-- The wrapper
---------------------------------------------------------------------------

local kinds = {}

local function kind_module(kind)
  local m = kinds[kind]
  if m then return m end
  local ok, mod = pcall(require, "luabatch.workflow.stages." .. tostring(kind))
  if not ok then return nil, mod end
  kinds[kind] = mod
  return mod
end

local function render(env, value, rctx)
  if env.render then return env.render(value, rctx, { env = true }) end
  return require("luabatch.workflow.template").render(value, rctx, { env = true })
end
_M.render = render

--- Render `value`, returning rendered | nil, {name, message} (the code the
-- renderer gives, e.g. UtilError, is the error name).
function _M.render_or_error(env, value, rctx)
  local v, err, code = render(env, value, rctx)
  if v == nil then
    return nil, _M.error_of(err or "rendering failed", code or "StageError")
  end
  return v
end

local function eval(env, src, rctx)
  if env.eval then return env.eval(src, rctx) end
  return require("luabatch.workflow.expr").eval(src, rctx)
end

--- Rendered output key of a stage (nil when it has no id), or nil, err.
function _M.key(st, rctx, env)
  if st.id == nil then return nil end
  local k, err = _M.render_or_error(env, st.id, rctx)
  if k == nil then return nil, err end
  return tostring(k)
end

--- A name for messages: the rendered id, else the name.
function _M.ident(st, rctx, env)
  local k = _M.key(st, rctx, env)
  if k then return k end
  local n = st.name and render(env, st.name, rctx)
  return tostring(n or st.name or "?")
end

--- Evaluate a stage or job condition: true (run), false (skip), or nil, err.
function _M.condition(cond, rctx, env)
  if cond == nil or cond == true then return true end
  if cond == false then return false end
  if type(cond) ~= "string" then
    return nil, "condition must be a boolean or an expression string, not a " .. type(cond)
  end
  local src, err = _M.render_or_error(env, cond, rctx)
  if src == nil then return nil, err.message end
  if type(src) == "boolean" then return src end
  if type(src) ~= "string" then
    return nil, str_format("condition '%s' rendered to a %s, not an expression", cond, type(src))
  end
  local v, e2 = eval(env, src, rctx)
  if e2 ~= nil then return nil, _M.error_of(e2).message end
  if type(v) ~= "boolean" then
    return nil, str_format("condition '%s' returned a %s, not a boolean", src,
      v == nil and "null" or type(v))
  end
  return v
end

local function status_line(env, st, key, rec, t0, t1)
  if env.progress then
    env.progress("stage", { key = key, name = st.name, kind = st.kind, status = rec.status,
                            seconds = t1 - t0, errors = rec.errors, outputs = rec.outputs, stage = st,
                            job = env.job_id, strategy = env.strategy })
  end
end

--- Run one stage: returns its record and its output key (nil: records nothing).
function _M.execute(st, rctx, env)
  local t0 = _M.now()
  local rec
  local key, kerr = _M.key(st, rctx, env)
  local function finish(r)
    local t1 = _M.now()
    if r.outputs == nil then r.outputs = _M.object() end
    r.info = _M.info(t0, t1)
    status_line(env, st, key, r, t0, t1)
    return r, key
  end
  if kerr then
    return finish({ status = "FAILED", errors = _M.error_of(kerr, "StageError") })
  end
  if env.progress then
    env.progress("stage-start", { key = key, name = st.name, kind = st.kind, stage = st,
                                  job = env.job_id, strategy = env.strategy })
  end
  local ok, cerr = _M.condition(st["if"], rctx, env)
  if ok == nil then
    return finish({ status = "FAILED", errors = { name = "StageError",
      message = "stage if: " .. tostring(cerr) } })
  end
  if ok == false then
    return finish({ status = "SKIP", outputs = _M.object() })
  end
  local mod, merr = kind_module(st.kind)
  if not mod then
    return finish({ status = "FAILED", errors = { name = "StageError",
      message = str_format("stage kind '%s' is not available: %s", tostring(st.kind),
        (tostring(merr):match("^[^\n]*"))) } })
  end
  local retries = tonumber(st.retry) or 0
  local attempt = 0
  while true do
    local actx = rctx
    actx.retry = attempt
    local pok, out, err, partial = pcall(mod.execute, st, actx, env)
    if not pok then
      err = _M.error_of(out, "StageError")
      out = nil
    end
    if out ~= nil then
      if type(out) ~= "table" then out = { result = out } end
      rec = { status = "SUCCESS", outputs = out }
      break
    end
    local status = type(err) == "table" and err.status or nil
    local errors = err
    if type(errors) == "table" and errors.status then
      errors = _M.shallow(errors)
      errors.status = nil
    end
    if errors == nil then errors = { name = "StageError", message = "stage failed" } end
    errors = _M.error_of(errors)
    if status == "SKIP" then
      rec = { status = "SKIP", outputs = partial or _M.object() }
      break
    end
    if status == "CANCEL" then
      rec = { status = "CANCEL", outputs = partial or _M.object(), errors = errors }
      break
    end
    rec = { status = "FAILED", outputs = partial or _M.object(), errors = errors }
    if attempt >= retries or (env.cancelled and env.cancelled()) then break end
    if attempt >= 1 then
      local sched = sched_mod()
      sched.sleep(1.2 ^ (attempt + 1))
    end
    attempt = attempt + 1
  end
  return finish(rec)
end

--- Run a list of stages in order in `rctx`, stopping at the first FAILED or
-- CANCEL.  Each record goes to records[key] and rctx.stages[key].
-- Before each stage env.cancelled() is asked: when true the list ends with
-- CANCEL and that stage leaves no record (as ddeutil-workflow's event check).
-- Returns status (FAILED / CANCEL / SKIP when every stage skipped, also for
-- an empty list / SUCCESS), records, and the failing stage's identity and
-- record (both nil for a cancellation between stages).
function _M.run_list(stages, rctx, env)
  local records = _M.object()
  rctx.stages = rctx.stages or _M.object()
  local n, skipped = 0, 0
  for _, st in ipairs(stages or {}) do
    if env.cancelled and env.cancelled() then
      return "CANCEL", records, nil, nil
    end
    n = n + 1
    local rec, key = _M.execute(st, rctx, env)
    if key ~= nil then
      records[key] = rec
      rctx.stages[key] = rec
    end
    if rec.status == "SKIP" then skipped = skipped + 1 end
    if rec.status == "FAILED" or rec.status == "CANCEL" then
      return rec.status, records, key or _M.ident(st, rctx, env), rec
    end
  end
  if skipped == n then return "SKIP", records end
  return "SUCCESS", records
end

return _M
