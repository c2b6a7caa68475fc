-- luabatch.workflow.params: workflow parameter declarations and the
-- coercion of given values (ddeutil-workflow's param types; our fixes are
-- item 2 of README "Differences from ddeutil-workflow").
--
--   params.parse_decl(name, raw [, index]) -> decl | nil, msg
--   params.receive(decls, given [, opts]) -> values | nil, msg, errname
--   params.coerce(decl, value [, opts]) -> value | nil, msg
--
-- raw = "str" (shorthand) or { type, desc, required, default, options (choice),
-- precision (float, decimal) }; unknown keys are ignored.  decl = { name, type,
-- desc, required, default (coerced; nil = none), options, precision, index
-- (orders declarations in messages) }.
-- receive(): decls = { name -> decl }; given = { name -> string (command line)
-- or native value }; values = the undeclared given keys untouched plus every
-- declared param: the given value coerced, else its default (without one:
-- today / now (opts.now, epoch s) for date / datetime, the first option, {},
-- [], else null).
-- errname: "ParamError" (a value that does not fit), "WorkflowError" (required
-- params missing: "Required Param on this workflow setting does not set: 'a', 'b'.").
-- Values in the context (and in JSON output):
--   str       string (Python str(): True -> "True", 1.5 -> "1.5", lists -> "['a']")
--   int       integer (a boolean stays a boolean)
--   float, decimal  number rounded to `precision` (default 6; no exact decimal)
--   date      "YYYY-MM-DD" (a datetime string gives its date part)
--   datetime  "YYYY-MM-DDTHH:MM:SS[.ffffff]Z": a naive value is taken as UTC,
--             an offset is applied; a date gives midnight UTC
--   choice    the matching option; null -> the first; the text of a
--             non-string option selects it ("2" for 2)
--   map, array  table (a JSON object / array string is decoded; an array is
--             marked with template.list_mt)
--   null      cjson.null

local cjson = require "cjson"
local template = require "luabatch.workflow.template"
local expr = require "luabatch.workflow.expr"

local _M = { _VERSION = "0.1.0" }

local NULL = cjson.null
local str_format = string.format
local tointeger = math.tointeger
local is_list = template.is_list
local pystr = template.pystr
local strip = template.strip

local TYPES = { "str", "int", "float", "decimal", "date", "datetime", "choice", "map", "array" }
local KNOWN = {}
for _, t in ipairs(TYPES) do KNOWN[t] = true end

local function is_null(v) return v == nil or v == NULL end

-- A value as it appears in a message: strings JSON-quoted, others as Python.
local function show(v)
  if type(v) == "string" then
    return '"' .. v:gsub('[%c"\\]', function(c)
      local e = { ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\t"] = "\\t", ["\r"] = "\\r" }
      return e[c] or str_format("\\u%04x", c:byte())
    end) .. '"'
  end
  if type(v) == "table" then return (cjson.encode(v)) end
  return pystr(v)
end

local function bad(decl, v, what)
  return nil, str_format("param '%s': %s is not %s", decl.name, show(v), what)
end

local function round(x, p)
  if x ~= x or x == math.huge or x == -math.huge then return x + 0.0 end
  local r = tonumber(str_format("%." .. p .. "f", x))
  return r + 0.0
end

local function parse_float(s)
  s = strip(s):lower():gsub("_", "")
  if s:match("^[-+]?inf$") or s:match("^[-+]?infinity$") then
    return s:sub(1, 1) == "-" and -math.huge or math.huge
  end
  if s:match("^[-+]?nan$") then return 0 / 0 end
  if not (s:match("^[-+]?%d+%.?%d*$") or s:match("^[-+]?%.%d+$") or s:match("^[-+]?%d+%.?%d*e[-+]?%d+$")
      or s:match("^[-+]?%.%d+e[-+]?%d+$")) then
    return nil
  end
  return tonumber(s)
end

local function now_utc(opts)
  local t = os.date("!*t", math.floor(opts and opts.now or os.time()))
  return { y = t.year, m = t.month, d = t.day, H = t.hour, M = t.min, S = t.sec, us = 0, offset = 0 }
end

local COERCE = {}

COERCE.str = function(_, v) return pystr(v) end

COERCE.int = function(decl, v)
  if type(v) == "boolean" then return v end
  if type(v) == "number" then
    if template.is_int(v) then return v end
    return bad(decl, v, "an int")
  end
  if type(v) == "string" then
    local r = template.parse_pyint(v)
    if r == nil then return bad(decl, v, "an int") end
    return r
  end
  return bad(decl, v, "an int")
end

local function coerce_float(decl, v, what)
  local x
  if type(v) == "number" then x = v
  elseif type(v) == "boolean" then x = v and 1 or 0
  elseif type(v) == "string" then x = parse_float(v)
  end
  if x == nil then return bad(decl, v, what) end
  return round(x, decl.precision or 6)
end
COERCE.float = function(decl, v) return coerce_float(decl, v, "a float") end
COERCE.decimal = function(decl, v)
  if type(v) == "boolean" then return bad(decl, v, "a decimal") end
  return coerce_float(decl, v, "a decimal")
end

COERCE.date = function(decl, v)
  local t = type(v) == "string" and template.parse_iso(strip(v))
  if not t then return bad(decl, v, "a date (YYYY-MM-DD)") end
  return template.iso_date(t)
end

COERCE.datetime = function(decl, v)
  local t = type(v) == "string" and template.parse_iso(strip(v))
  if not t then return bad(decl, v, "a datetime (ISO 8601)") end
  return template.iso_datetime(template.to_utc(t))
end

COERCE.choice = function(decl, v)
  for _, o in ipairs(decl.options) do
    if type(o) == type(v) and expr.equal(o, v) then return o end
  end
  if type(v) == "string" then
    for _, o in ipairs(decl.options) do
      if type(o) ~= "string" and type(o) ~= "table" and pystr(o) == v then return o end
    end
  end
  return nil, str_format("param '%s': %s does not match any value in choice options (%s).", decl.name, show(v),
    template.pystr(decl.options))
end

local function decode(v, want_list)
  local ok, r = pcall(cjson.decode, v)
  if not ok or type(r) ~= "table" then return nil end
  local first = strip(v):sub(1, 1)
  if want_list ~= (first == "[") then return nil end
  return r
end

COERCE.map = function(decl, v)
  if type(v) == "string" then v = decode(v, false) or v end
  if type(v) ~= "table" or (is_list(v) and next(v) ~= nil) then return bad(decl, v, "a map (a JSON object)") end
  return v
end

COERCE.array = function(decl, v)
  if type(v) == "string" then v = decode(v, true) or v end
  if type(v) ~= "table" or (not is_list(v) and next(v) ~= nil) then
    return bad(decl, v, "an array (a JSON list)")
  end
  local out = {}
  for i = 1, #v do out[i] = v[i] end
  return template.list(out)
end

-- The default used when the value is absent or null.
local function default_of(decl, opts)
  if decl.default ~= nil and decl.default ~= NULL then return decl.default end
  local ty = decl.type
  if ty == "date" then return template.iso_date(now_utc(opts)) end
  if ty == "datetime" then return template.iso_datetime(now_utc(opts)) end
  if ty == "choice" then return decl.options[1] end
  if ty == "map" then return {} end
  if ty == "array" then return template.list({}) end
  return NULL
end

function _M.coerce(decl, v, opts)
  if is_null(v) then return default_of(decl, opts) end
  return COERCE[decl.type](decl, v, opts)
end

function _M.parse_decl(name, raw, index)
  if type(name) ~= "string" then
    error("bad argument #1 to 'parse_decl' (string expected, got " .. type(name) .. ")", 2)
  end
  if type(raw) == "string" then raw = { type = raw } end
  if type(raw) ~= "table" or is_list(raw) then
    return nil, str_format("param '%s': the declaration must be a type name or a map with 'type'", name)
  end
  local ty = raw.type
  if not KNOWN[ty] then
    return nil, str_format("param '%s': unknown type %s (expected one of %s)", name, show(ty or NULL),
      table.concat(TYPES, ", "))
  end
  local decl = { name = name, type = ty, index = index }
  if not is_null(raw.desc) then
    if type(raw.desc) ~= "string" then return nil, str_format("param '%s': desc must be a string", name) end
    decl.desc = raw.desc
  end
  local req = raw.required
  if is_null(req) then req = (ty == "choice") end
  if type(req) ~= "boolean" then return nil, str_format("param '%s': required must be true or false", name) end
  decl.required = req
  if ty == "choice" then
    local opt = raw.options
    if type(opt) ~= "table" or not is_list(opt) then
      return nil, str_format("param '%s': a choice needs a non-empty list of options", name)
    end
    decl.options = opt
  end
  if ty == "float" or ty == "decimal" then
    local p = raw.precision
    if is_null(p) then p = 6 end
    if type(p) ~= "number" or p ~= math.floor(p) or p < 0 or p > 17 then
      return nil, str_format("param '%s': precision must be an integer from 0 to 17", name)
    end
    decl.precision = tointeger and tointeger(p) or p
  end
  if not is_null(raw.default) then
    local d, err = COERCE[ty](decl, raw.default)
    if d == nil then return nil, err .. " (the default)" end
    decl.default = d
  end
  return decl
end

local function ordered_names(decls)
  local names = {}
  for n in pairs(decls) do names[#names + 1] = n end
  table.sort(names, function(a, b)
    local ia, ib = decls[a].index, decls[b].index
    if ia and ib and ia ~= ib then return ia < ib end
    if (ia == nil) ~= (ib == nil) then return ia ~= nil end
    return a < b
  end)
  return names
end

function _M.receive(decls, given, opts)
  if type(decls) ~= "table" then
    error("bad argument #1 to 'receive' (table expected, got " .. type(decls) .. ")", 2)
  end
  given = given or {}
  local names = ordered_names(decls)
  local missing = {}
  for _, n in ipairs(names) do
    if decls[n].required and given[n] == nil then missing[#missing + 1] = "'" .. n .. "'" end
  end
  if #missing > 0 then
    return nil, "Required Param on this workflow setting does not set: " .. table.concat(missing, ", ") .. ".",
      "WorkflowError"
  end
  local out = {}
  for k, v in pairs(given) do out[k] = v end
  for _, n in ipairs(names) do
    local v, err = _M.coerce(decls[n], given[n], opts)
    if v == nil then return nil, err, "ParamError" end
    out[n] = v
  end
  return out
end

return _M
