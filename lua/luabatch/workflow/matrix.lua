-- luabatch.workflow.matrix: strategy expansion and strategy ids, as
-- ddeutil-workflow expands and names them (matrix values may be any scalar).
--
-- matrix.expand(strategy [, order]) -> combos | nil, msg
--   strategy = { matrix = { key -> list of scalars }, include = { map, ... },
--   exclude = { map, ... }, matrix_order = { keys } (optional) }.
--   order (optional) = fn(map) -> list of its keys in source order (e.g. from
--   the YAML positions table: function(t) return pos[t] and pos[t].order end);
--   the matrix key order is strategy.matrix_order, else order(matrix), else
--   sorted; an include entry's key order is order(entry), else sorted.
--   combos = list of { keys = { key, ... } (order), values = { key -> value },
--   id = "EMPTY" | "1234567890" }, in ddeutil-workflow's order: the cartesian
--   product (last key varies fastest) minus excludes, then includes.
--   No matrix (or an empty one) -> { { keys = {}, values = {}, id = "EMPTY" } }.
--   Errors: a matrix entry that is not a list of scalars, an exclude key that
--   is not a matrix key, an include whose keys fit no combination ("Include
--   should have the keys that equal to all final matrix.").
-- matrix.id(values, keys) -> "EMPTY" | 10-digit string
--   The last 10 decimal digits of int(sha256(repr(combo)).hexdigest(), 16)
--   where repr is Python's dict repr in key order: {'os': 'linux', 'py': '3.11'}.
-- matrix.repr(values, keys) -> that Python repr
-- matrix.hash_str(s) -> last 10 decimal digits of sha256(s) as an integer

local core = require "luabatch.core"
local template = require "luabatch.workflow.template"
local expr = require "luabatch.workflow.expr"

local _M = { _VERSION = "0.1.0" }

local str_format = string.format
local pyrepr = template.pyrepr
local equal = expr.equal
local is_list = template.is_list
local map_keys = template.map_keys

function _M.hash_str(s)
  local hex = core.sha256(s)
  local r = 0
  for i = 1, #hex do
    -- r * 16 + 15 < 1.6e11: exact in a double
    r = (r * 16 + tonumber(hex:sub(i, i), 16)) % 1e10
  end
  return str_format("%010.0f", r)
end

function _M.repr(values, keys)
  local parts = {}
  for i, k in ipairs(keys) do parts[i] = pyrepr(k) .. ": " .. pyrepr(values[k]) end
  return "{" .. table.concat(parts, ", ") .. "}"
end

function _M.id(values, keys)
  if type(values) ~= "table" then
    error("bad argument #1 to 'id' (table expected, got " .. type(values) .. ")", 2)
  end
  keys = keys or map_keys(values)
  if #keys == 0 then return "EMPTY" end
  return _M.hash_str(_M.repr(values, keys))
end

local function is_scalar(v)
  local t = type(v)
  return t == "string" or t == "number" or t == "boolean" or v == template.null
end

local function combo(keys, values)
  return { keys = keys, values = values, id = _M.id(values, keys) }
end

local function subset(keys_a, values_b)
  for _, k in ipairs(keys_a) do if values_b[k] == nil then return false end end
  return true
end

function _M.expand(strategy, order)
  if type(strategy) ~= "table" then
    error("bad argument #1 to 'expand' (table expected, got " .. type(strategy) .. ")", 2)
  end
  local m = strategy.matrix
  if type(m) ~= "table" or next(m) == nil then return { combo({}, {}) } end
  if is_list(m) then return nil, "strategy matrix must be a map of key -> list of values" end
  local keys = strategy.matrix_order or (order and order(m)) or map_keys(m)
  keys = map_keys(m, function() return keys end)
  for _, k in ipairs(keys) do
    local list = m[k]
    if type(list) ~= "table" or (next(list) ~= nil and not is_list(list)) then
      return nil, str_format("matrix '%s' must be a list of values", tostring(k))
    end
    for _, v in ipairs(list) do
      if not is_scalar(v) then
        return nil, str_format("matrix '%s' holds %s: values must be strings, numbers or booleans",
          tostring(k), template.pytype(v) == "list" and "a list" or "a map")
      end
    end
  end

  -- cartesian product, last key varying fastest
  local product = { {} }
  for _, k in ipairs(keys) do
    local nextp = {}
    for _, partial in ipairs(product) do
      for _, v in ipairs(m[k]) do
        local c = {}
        for pk, pv in pairs(partial) do c[pk] = pv end
        c[k] = v
        nextp[#nextp + 1] = c
      end
    end
    product = nextp
  end

  local excludes = strategy.exclude or {}
  for i, ex in ipairs(excludes) do
    if type(ex) ~= "table" then return nil, str_format("exclude entry #%d must be a map", i) end
    for k in pairs(ex) do
      if m[k] == nil then
        return nil, str_format("exclude entry #%d names '%s', which is not a matrix key", i, tostring(k))
      end
    end
  end
  local final = {}
  for _, c in ipairs(product) do
    local dropped = false
    for _, ex in ipairs(excludes) do
      local all = true
      for k, v in pairs(ex) do
        if not equal(c[k], v) then all = false; break end
      end
      if all then dropped = true; break end
    end
    if not dropped then final[#final + 1] = c end
  end

  local includes = strategy.include or {}
  if #final == 0 and #includes == 0 then return { combo({}, {}) } end

  local out = {}
  for _, c in ipairs(final) do out[#out + 1] = combo(keys, c) end
  for i, inc in ipairs(includes) do
    if type(inc) ~= "table" or (next(inc) ~= nil and is_list(inc)) then
      return nil, str_format("include entry #%d must be a map", i)
    end
    for k, v in pairs(inc) do
      if not is_scalar(v) then
        return nil, str_format("include entry #%d: '%s' must be a string, number or boolean", i, tostring(k))
      end
    end
    local inc_keys = map_keys(inc, order)
    local fits = false
    for _, c in ipairs(final) do
      if subset(inc_keys, c) then fits = true; break end
    end
    if not fits then return nil, "Include should have the keys that equal to all final matrix." end
    local covered = false
    for _, c in ipairs(out) do
      local all = true
      for k, v in pairs(c.values) do
        if inc[k] == nil or not equal(inc[k], v) then all = false; break end
      end
      if all then covered = true; break end
    end
    if not covered then
      local values = {}
      for k, v in pairs(inc) do values[k] = v end
      out[#out + 1] = combo(inc_keys, values)
    end
  end
  return out
end

return _M
