-- luabatch.workflow.load_check: positioned validation primitives shared by
-- luabatch.workflow.load and luabatch.workflow.load_stage.
--
-- Contract: every function takes a load context `cx` = { file, pos (the
-- positions table core.yaml_load_file gives), warnings = {}, getenv,
-- template, expr } (built by load) where it needs one.  fail() raises a
-- FAIL-marked error "FILE:LINE:COL: msg"; protect(fn, ...) turns it into
-- nil, msg, "EINVAL" and re-raises anything else.  warn() appends to
-- cx.warnings.  Nothing here reads files or keeps state.

local _M = { _VERSION = "0.1.0" }

local core = require "luabatch.core"

local type, pairs, ipairs, tostring, tonumber = type, pairs, ipairs, tostring, tonumber
local pcall, error, setmetatable, getmetatable, next = pcall, error, setmetatable, getmetatable, next
local str_format, str_find, str_gsub, str_sub = string.format, string.find, string.gsub, string.sub
local tbl_concat, tbl_sort = table.concat, table.sort
local math_type, math_floor = math.type, math.floor
local NULL = core.null


local FAIL = {}   -- marker metatable of validation errors raised inside a load

local function fail(cx, p, fmt, ...)
  local line, col = 1, 1
  if p then line, col = p.line or 1, p.col or 1 end
  local msg = str_format("%s:%d:%d: ", cx.file, line, col) .. str_format(fmt, ...)
  error(setmetatable({ msg = msg }, FAIL), 0)
end

local function warn(cx, p, fmt, ...)
  local line, col = 1, 1
  if p then line, col = p.line or 1, p.col or 1 end
  cx.warnings[#cx.warnings + 1] = str_format("%s:%d:%d: ", cx.file, line, col) .. str_format(fmt, ...)
end

-- Run fn(...) catching validation errors: model | nil, msg, "EINVAL".
local function protect(fn, ...)
  local ok, res = pcall(fn, ...)
  if ok then return res end
  if type(res) == "table" and getmetatable(res) == FAIL then return nil, res.msg, "EINVAL" end
  error(res, 0)
end


-- Positions -----------------------------------------------------------------

local function P(cx, t) return t ~= nil and cx.pos[t] or nil end
local function keypos(cx, t, k) local p = P(cx, t); return p and p.keys and p.keys[k] or p end
local function valpos(cx, t, k) local p = P(cx, t); return p and p.values and p.values[k] or keypos(cx, t, k) end
local function itempos(cx, t, i) local p = P(cx, t); return p and p.items and p.items[i] or p end

-- Keys of a mapping in source order (falls back to sorted keys).
local function key_order(cx, t)
  local p = P(cx, t)
  if p and p.order then
    local out = {}
    for i = 1, #p.order do out[i] = p.order[i] end
    return out
  end
  local out = {}
  for k in pairs(t) do out[#out + 1] = k end
  tbl_sort(out, function(a, b) return tostring(a) < tostring(b) end)
  return out
end


-- Value kinds ---------------------------------------------------------------

local function is_null(v) return v == nil or v == NULL end

local function is_seq(cx, v)
  if type(v) ~= "table" then return false end
  local p = P(cx, v)
  if p then return p.items ~= nil end
  return #v > 0 or next(v) == nil
end

local function is_map(cx, v)
  if type(v) ~= "table" then return false end
  local p = P(cx, v)
  if p then return p.keys ~= nil end
  return #v == 0
end

-- YAML kind of a value ("str", "int", "float", "bool", "null", "mapping", "sequence").
local function kind_of(cx, v, p)
  if p and p.kind then
    if p.kind == "date" or p.kind == "timestamp" then return "str" end
    return p.kind
  end
  if is_null(v) then return "null" end
  local t = type(v)
  if t == "string" then return "str" end
  if t == "boolean" then return "bool" end
  if t == "number" then
    if math_type then return math_type(v) == "integer" and "int" or "float" end
    return v == math_floor(v) and "int" or "float"
  end
  if t == "table" then return is_seq(cx, v) and "sequence" or "mapping" end
  return t
end

local function is_int(cx, v, p) return type(v) == "number" and kind_of(cx, v, p) == "int" end

local function is_scalar(v)
  local t = type(v)
  return t == "string" or t == "number" or t == "boolean"
end

local function show(v)
  if type(v) == "string" then return '"' .. v .. '"' end
  if is_null(v) then return "null" end
  if type(v) == "table" then return "a table" end
  return tostring(v)
end

local function has_template(s) return type(s) == "string" and str_find(s, "${{", 1, true) ~= nil end


-- Templates, expressions, environment ---------------------------------------

-- Fallback syntax check while luabatch.workflow.template is not there.
local function basic_template_check(s)
  local at = 1
  while true do
    local i = str_find(s, "${{", at, true)
    if not i then return true end
    local j = str_find(s, "}}", i + 3, true)
    if not j then return nil, "unterminated '${{' at column " .. i end
    if not str_find(str_sub(s, i + 3, j - 1), "%S") then return nil, "empty template at column " .. i end
    at = j + 2
  end
end

local function check_template(cx, s, p, what)
  if type(s) ~= "string" or not str_find(s, "${", 1, true) then return end
  local ok, err
  if cx.template and cx.template.check then
    ok, err = cx.template.check(s)
  else
    ok, err = basic_template_check(s)
  end
  if not ok then fail(cx, p, "%s: bad template: %s", what, tostring(err)) end
end

-- Check every string inside v (recursively) as a template.
local function check_templates_deep(cx, v, p, what)
  if type(v) == "string" then return check_template(cx, v, p, what) end
  if type(v) ~= "table" then return end
  if is_seq(cx, v) then
    for i = 1, #v do check_templates_deep(cx, v[i], itempos(cx, v, i), what) end
  else
    for k, x in pairs(v) do check_templates_deep(cx, x, valpos(cx, v, k), what .. "." .. tostring(k)) end
  end
end

-- An expression (if:, until:) may hold templates rendered before evaluation:
-- check them, then compile the text with each template (and ${VAR}) replaced
-- by a name of the same length (what a rendered value stands for
-- syntactically; same length, so error columns still fit the original).
local function placeholder(m) return "_" .. string.rep("x", #m - 1) end

local function check_expression(cx, s, p, what)
  check_template(cx, s, p, what)
  if not (cx.expr and cx.expr.compile) then return end
  local src = str_gsub(s, "%${{.-}}", placeholder)
  src = str_gsub(src, "%${%s?[%a_][%w_]*:?[^}]*}", placeholder)
  local fn, err = cx.expr.compile(src)
  if not fn then
    err = tostring(err)
    if src ~= s then
      local i, j = str_find(err, src, 1, true)
      if i then err = str_sub(err, 1, i - 1) .. s .. str_sub(err, j + 1) end
    end
    fail(cx, p, "%s: %s", what, err)
  end
end

-- ${VAR} / ${ VAR } / ${VAR:default} / $$ on one string, used when
-- luabatch.workflow.template is not there: str | nil, missing variable name.
local function basic_env(s, getenv)
  local missing
  local out = str_gsub(s, "%$(%$?){%s?([%a_][%w_]*)%s?(:?)([^}]*)}", function(dollar, name, colon, default)
    if dollar == "$" then return nil end
    local v = getenv(name)
    if v == nil or v == "" then
      if colon == ":" and default ~= "" then return default end
      if v == "" then return "" end
      missing = missing or name
      return ""
    end
    return v
  end)
  if missing then return nil, "environment variable '" .. missing .. "' is not set (and has no default)" end
  out = str_gsub(out, "%$%$", "$")
  return out
end

local function substitute_env(cx, s, p, what)
  local out, err
  if cx.template and cx.template.env then
    out, err = cx.template.env(s, cx.getenv)
  else
    out, err = basic_env(s, cx.getenv)
  end
  if out == nil then fail(cx, p, "%s: %s", what, tostring(err)) end
  return out
end

-- Substitute ${VAR} in every string inside v; returns a fresh value.
local function substitute_env_deep(cx, v, p, what)
  if type(v) == "string" then return substitute_env(cx, v, p, what) end
  if type(v) ~= "table" then return v end
  local out = {}
  if is_seq(cx, v) then
    for i = 1, #v do out[i] = substitute_env_deep(cx, v[i], itempos(cx, v, i), what) end
  else
    for k, x in pairs(v) do out[k] = substitute_env_deep(cx, x, valpos(cx, v, k), what .. "." .. tostring(k)) end
  end
  return out
end


-- Field checks --------------------------------------------------------------

local function want_str(cx, t, k, what, required)
  local v = t[k]
  if is_null(v) then
    if required then fail(cx, P(cx, t), "%s: missing required key '%s'", what, tostring(k)) end
    return nil
  end
  if type(v) ~= "string" then
    fail(cx, valpos(cx, t, k), "%s: '%s' must be a string, got %s %s", what, tostring(k),
      kind_of(cx, v, valpos(cx, t, k)), show(v))
  end
  return v
end

local function want_bool(cx, t, k, what, default)
  local v = t[k]
  if is_null(v) then return default end
  if type(v) ~= "boolean" then
    fail(cx, valpos(cx, t, k), "%s: '%s' must be true or false, got %s", what, tostring(k), show(v))
  end
  return v
end

-- Integer in lo..hi (or a template string when allow_tpl; a numeric string is
-- taken as its number, as ddeutil-workflow's int() would).
local function want_int(cx, t, k, what, lo, hi, default, allow_tpl)
  local v = t[k]
  if is_null(v) then return default end
  local p = valpos(cx, t, k)
  local from_str = false
  if allow_tpl and type(v) == "string" then
    if has_template(v) then
      check_template(cx, v, p, what .. ": " .. tostring(k))
      return v
    end
    local n = tonumber(v)
    if n then v, from_str = n, true end
  end
  if type(v) ~= "number" or v ~= math_floor(v) or not (from_str or is_int(cx, v, p)) then
    fail(cx, p, "%s: '%s' must be an integer%s, got %s", what, tostring(k),
      allow_tpl and " or a ${{ }} template" or "", show(t[k]))
  end
  if (lo and v < lo) or (hi and v > hi) then
    fail(cx, p, "%s: '%s' must be between %d and %d, got %s", what, tostring(k), lo, hi, tostring(v))
  end
  return v
end

-- A string; numbers and booleans are taken as their text.
local function want_text(cx, t, k, what, required)
  local v = t[k]
  if type(v) == "number" or type(v) == "boolean" then return tostring(v) end
  return want_str(cx, t, k, what, required)
end

local function want_map(cx, t, k, what)
  local v = t[k]
  if is_null(v) then return nil end
  if not is_map(cx, v) then
    fail(cx, valpos(cx, t, k), "%s: '%s' must be a mapping, got %s", what, tostring(k),
      kind_of(cx, v, valpos(cx, t, k)))
  end
  return v
end

local function want_seq(cx, t, k, what)
  local v = t[k]
  if is_null(v) then return nil end
  if not is_seq(cx, v) then
    fail(cx, valpos(cx, t, k), "%s: '%s' must be a list, got %s", what, tostring(k),
      kind_of(cx, v, valpos(cx, t, k)))
  end
  return v
end

local function allowed_list(set)
  local names = {}
  for k in pairs(set) do names[#names + 1] = k end
  tbl_sort(names)
  return tbl_concat(names, ", ")
end

local function check_keys(cx, t, allowed, what)
  for _, k in ipairs(key_order(cx, t)) do
    if not allowed[k] then
      fail(cx, keypos(cx, t, k), "unknown key '%s' in %s (allowed: %s)", tostring(k), what, allowed_list(allowed))
    end
  end
end

local function set(list)
  local s = {}
  for _, k in ipairs(list) do s[k] = true end
  return s
end



-- Exports -------------------------------------------------------------------

_M.fail, _M.warn, _M.protect = fail, warn, protect
_M.P, _M.keypos, _M.valpos, _M.itempos, _M.key_order = P, keypos, valpos, itempos, key_order
_M.is_null, _M.is_seq, _M.is_map, _M.kind_of, _M.is_int, _M.is_scalar = is_null, is_seq, is_map, kind_of, is_int,
  is_scalar
_M.show, _M.has_template = show, has_template
_M.check_template, _M.check_templates_deep, _M.check_expression = check_template, check_templates_deep,
  check_expression
_M.substitute_env, _M.substitute_env_deep = substitute_env, substitute_env_deep
_M.want_str, _M.want_bool, _M.want_int, _M.want_text, _M.want_map, _M.want_seq = want_str, want_bool, want_int,
  want_text, want_map, want_seq
_M.allowed_list, _M.check_keys, _M.set = allowed_list, check_keys, set

return _M
