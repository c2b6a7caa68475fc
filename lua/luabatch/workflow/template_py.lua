-- luabatch.workflow.template_py: Python's view of template values — type
-- names, str() and repr(), int(), str.strip() — as the reference prints them.
--
-- py.pystr(v [, order]) / py.pyrepr(v [, order]) -> string
--   None, True, 3, 0.5, 'a', ['a', 'b'], {'k': 1}; order = fn(map) -> keys in
--   source order (default: keys sorted).  A table met again inside itself
--   prints as [...] / {...}.
-- py.is_null(v), py.is_list(t), py.is_int(n) -> bool;  py.pytype(v) -> "int", ...
--   A list is a table marked with luabatch.json's list markers or a
--   non-empty sequence; every other table is a map.
-- py.map_keys(t [, order]) -> keys (source order when order knows them, then
--   the rest; else sorted)
-- py.float_repr(x), py.number_str(n), py.str_repr(s) -> string
-- py.strip(s) -> s without leading and trailing white space
-- py.parse_pyint(s) -> integer | nil   (Python int(str): "-1_000" ok, "1.5" not)
-- py.to_int(v) -> integer | nil        (Python int() of a bool, number or str)
-- Nothing raises; nothing keeps state.

local cjson = require "cjson"
local json = require "luabatch.json"

local _M = { _VERSION = "0.1.0" }

local NULL = cjson.null
local str_format = string.format
local str_byte = string.byte
local str_sub = string.sub
local str_find = string.find
local tbl_concat = table.concat
local tbl_sort = table.sort
local math_type = math.type
local math_floor = math.floor
local tointeger = math.tointeger


-- value kinds ---------------------------------------------------------------

local function is_null(v) return v == nil or v == NULL end
_M.is_null = is_null

-- A list: marked as one, or a non-empty sequence (luabatch.json's rule).
local is_list = json.is_list
_M.is_list = is_list

local function is_int(v)
  if math_type then return math_type(v) == "integer" end
  return v == math_floor(v) and v > -2 ^ 63 and v < 2 ^ 63
end
_M.is_int = is_int

-- Python's type name of a value (for messages).
function _M.pytype(v)
  if is_null(v) then return "NoneType" end
  local t = type(v)
  if t == "boolean" then return "bool" end
  if t == "number" then return is_int(v) and "int" or "float" end
  if t == "string" then return "str" end
  if t == "table" then return is_list(v) and "list" or "dict" end
  return t
end

local function key_less(a, b)
  local ta, tb = type(a), type(b)
  if ta ~= tb then return ta < tb end
  if ta == "number" or ta == "string" then return a < b end
  return tostring(a) < tostring(b)
end

-- Keys of a map in source order when known, else sorted.
local function map_keys(t, order)
  local keys = order and order(t)
  if keys then
    local out, seen = {}, {}
    for _, k in ipairs(keys) do
      if t[k] ~= nil and not seen[k] then out[#out + 1] = k; seen[k] = true end
    end
    for k in pairs(t) do if not seen[k] then out[#out + 1] = k end end
    return out
  end
  keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  tbl_sort(keys, key_less)
  return keys
end
_M.map_keys = map_keys


-- Python repr/str -----------------------------------------------------------

-- Python repr of a float: shortest round-trip digits, fixed notation for
-- exponents -4..15, scientific otherwise ("1e+16", "1.5e-05").
local function float_repr(x)
  if x ~= x then return "nan" end
  if x == math.huge then return "inf" end
  if x == -math.huge then return "-inf" end
  if x == 0 then return (1 / x < 0) and "-0.0" or "0.0" end
  local s
  for p = 1, 17 do
    s = str_format("%." .. (p - 1) .. "e", x)
    if tonumber(s) == x then break end
  end
  local sign, d1, rest, exp = s:match("^(-?)(%d)%.?(%d*)e([-+]%d+)$")
  local digits = (d1 .. rest):gsub("0+$", "")
  if digits == "" then digits = "0" end
  local e = tonumber(exp)
  if e >= -4 and e < 16 then
    local n = #digits
    if e < 0 then
      return sign .. "0." .. string.rep("0", -e - 1) .. digits
    elseif n <= e + 1 then
      return sign .. digits .. string.rep("0", e + 1 - n) .. ".0"
    end
    return sign .. str_sub(digits, 1, e + 1) .. "." .. str_sub(digits, e + 2)
  end
  local mant = #digits > 1 and (str_sub(digits, 1, 1) .. "." .. str_sub(digits, 2)) or digits
  return str_format("%s%se%s%02d", sign, mant, e < 0 and "-" or "+", e < 0 and -e or e)
end
_M.float_repr = float_repr

local function number_str(v)
  if is_int(v) then
    if math_type then return tostring(v) end
    return str_format("%.0f", v)
  end
  return float_repr(v)
end
_M.number_str = number_str

local ESC = { ["\\"] = "\\\\", ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }

-- Python repr of a str: single quotes unless it holds ' and no ".
local function str_repr(s)
  local q = "'"
  if str_find(s, "'", 1, true) and not str_find(s, '"', 1, true) then q = '"' end
  local body = s:gsub("[%c\\'\"]", function(c)
    if ESC[c] then return ESC[c] end
    if c == q then return "\\" .. c end
    if c == "'" or c == '"' then return c end
    return str_format("\\x%02x", str_byte(c))
  end)
  return q .. body .. q
end
_M.str_repr = str_repr

local pyrepr

local function container_repr(t, order, seen)
  if seen[t] then return is_list(t) and "[...]" or "{...}" end
  seen[t] = true
  local parts = {}
  local out
  if is_list(t) then
    for i = 1, #t do parts[i] = pyrepr(t[i], order, seen) end
    out = "[" .. tbl_concat(parts, ", ") .. "]"
  else
    for _, k in ipairs(map_keys(t, order)) do
      parts[#parts + 1] = pyrepr(k, order, seen) .. ": " .. pyrepr(t[k], order, seen)
    end
    out = "{" .. tbl_concat(parts, ", ") .. "}"
  end
  seen[t] = nil
  return out
end

pyrepr = function(v, order, seen)
  if is_null(v) then return "None" end
  local t = type(v)
  if t == "boolean" then return v and "True" or "False" end
  if t == "number" then return number_str(v) end
  if t == "string" then return str_repr(v) end
  if t == "table" then return container_repr(v, order, seen or {}) end
  return tostring(v)
end

function _M.pystr(v, order)
  if type(v) == "string" then return v end
  return pyrepr(v, order)
end

-- The public form takes no `seen` (a caller cannot pass one by accident).
function _M.pyrepr(v, order) return pyrepr(v, order) end


-- strings and int() ---------------------------------------------------------

local function strip(s)
  local i = str_find(s, "%S")
  if not i then return "" end
  local j = #s
  while j > i and str_find(str_sub(s, j, j), "^%s") do j = j - 1 end
  return str_sub(s, i, j)
end
_M.strip = strip

local function parse_pyint(s)
  s = strip(s)
  if not s:match("^[-+]?%d+$") and not s:match("^[-+]?%d[%d_]*%d$") then return nil end
  if s:find("__", 1, true) then return nil end
  local v = tonumber((s:gsub("_", "")))
  if v and tointeger then v = tointeger(v) end
  return v
end
_M.parse_pyint = parse_pyint

function _M.to_int(v)
  local t = type(v)
  if t == "boolean" then return v and 1 or 0 end
  if t == "number" then
    if v ~= v or v == math.huge or v == -math.huge then return nil end
    local r = v < 0 and -math_floor(-v) or math_floor(v)
    return tointeger and (tointeger(r) or r) or r
  end
  if t == "string" then return parse_pyint(v) end
  return nil
end

return _M
