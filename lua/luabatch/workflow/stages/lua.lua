-- luabatch.workflow.stages.lua: `lua: |` runs Lua code in-process (a new
-- kind, not in ddeutil-workflow).
--
-- The chunk runs with its own global table (reads fall back to the normal
-- globals, so the standard libraries and require work; assignments stay in
-- the stage).  Visible: params, matrix, stages, jobs, item, loop, branch,
-- case, retry (deep copies of the render context), the rendered `vars`
-- entries as globals, `result` = { context = {} }, `null` (JSON null),
-- print (to the stage log).  The code is not template-rendered: it reads the
-- values directly.
-- Outputs: the returned table, else result.context (which the code may fill
-- or replace).  Functions and other non-data values in the outputs become
-- strings.  A Lua error ends the stage FAILED with { name = "LuaError",
-- message = "<chunk>:<line>: ..." }; error({ name = ..., message = ... })
-- chooses the name.

local stage = require "luabatch.workflow.stage"

local _M = { _VERSION = "0.1.0" }

local type = type
local pairs = pairs
local tostring = tostring
local setmetatable = setmetatable
local select = select
local tbl_concat = table.concat

local NAMES = { "params", "matrix", "stages", "jobs", "item", "loop", "branch", "case", "retry", "status" }

local function plain(v, seen)
  local t = type(v)
  if t == "table" then
    if stage.null ~= nil and v == stage.null then return v end
    seen = seen or {}
    if seen[v] then return "<cycle>" end
    seen[v] = true
    local c = {}
    for k, x in pairs(v) do
      local kt = type(k)
      if kt == "string" or kt == "number" then c[k] = plain(x, seen) end
    end
    seen[v] = nil
    local mt = getmetatable(v)
    if mt and stage.jsontype(v) then setmetatable(c, mt) end
    return c
  elseif t == "string" or t == "number" or t == "boolean" then
    return v
  elseif t == "nil" then
    return nil
  end
  if stage.null ~= nil and v == stage.null then return v end
  return tostring(v)
end

local function loadcode(code, name, g)
  if setfenv and not pcall(load, "return 1", "x", "t", {}) then
    local fn, err = loadstring(code, name)
    if fn then setfenv(fn, g) end
    return fn, err
  end
  return load(code, name, "t", g)
end

function _M.execute(st, rctx, env)
  local code = st.lua
  if type(code) ~= "string" then
    return nil, { name = "StageError", message = "lua stage: 'lua' must be a string of Lua code" }
  end
  local g = setmetatable({}, { __index = _G })
  for _, k in ipairs(NAMES) do
    if rctx[k] ~= nil then g[k] = stage.deepcopy(rctx[k]) end
  end
  if st.vars ~= nil then
    local vars, err = stage.render_or_error(env, st.vars, rctx)
    if vars == nil then return nil, err end
    if type(vars) == "table" then
      for k, v in pairs(vars) do g[k] = v end
    end
  end
  g.result = { context = {} }
  g.null = stage.null
  g.print = function(...)
    local parts = {}
    for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
    if env.log then env.log(tbl_concat(parts, "\t")) end
  end
  local chunk = "=lua stage '" .. tostring(st.id or st.name or "?") .. "'"
  local fn, err = loadcode(code, chunk, g)
  if not fn then return nil, { name = "LuaSyntaxError", message = tostring(err) } end
  local ok, ret = pcall(fn)
  if not ok then
    if type(ret) == "table" and (ret.name or ret.message) then
      return nil, stage.error_of(ret, "LuaError")
    end
    return nil, { name = "LuaError", message = tostring(ret) }
  end
  local out = ret
  if type(out) ~= "table" then out = g.result and g.result.context end
  if type(out) ~= "table" then out = {} end
  out = plain(out) or {}
  if next(out) == nil then out = stage.object(out) end
  return out
end

return _M
