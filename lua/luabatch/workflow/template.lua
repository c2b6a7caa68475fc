-- luabatch.workflow.template: `${{ path | filter(args) }}` templates and
-- `${VAR}` environment substitution, as ddeutil-workflow (the reference)
-- renders them.
--
-- template.render(value, ctx [, opts]) -> rendered | nil, msg, "UtilError"
--   Strings, lists and maps (element-wise; keys are not rendered).  A string
--   is stripped; a string that is exactly one template gives the native value
--   (number, boolean, table, cjson.null); otherwise each template is replaced
--   by Python's str() of its value, a result of exactly "None" becomes null.
--   `${VAR}` substitution runs once, on the literal text around the
--   templates only (never on a value: see render_string).  opts.env = true
--   marks the reference's "R+E" fields: a result of exactly "null" becomes
--   null there.  opts.expand_env = false: templates only (text whose
--   `${VAR}` the loader already substituted, such as runs-on `with:`).  opts.getenv = fn(name) (default
--   os.getenv); opts.order = fn(map) -> list of keys in source order (used
--   when a map is printed; default: keys sorted).
-- template.env(str [, getenv]) -> str | nil, msg, "UtilError"
--   `${NAME}`, `${ NAME }`, `${NAME:default}` (the default is the literal text
--   after the first ':'), `$$` -> `$`; `$1` and `$NAME` are left alone.  An
--   unset variable without a default is an error naming it; a variable set to
--   "" gives "" (or its default when one is given).  `${}` is an error.
-- template.check(str) -> true | nil, msg   (syntax only: filters, `${}`)
-- template.has(str) -> bool                (the string holds a `${{`)
-- template.pystr(value [, order]) / template.pyrepr(value [, order])
--   Python str() / repr() of a value: None, True, 3, 0.5, 'a', ['a', 'b'],
--   {'k': 1}.  Lists are tables marked with template.list_mt (= cjson.array_mt
--   when this cjson has it) or non-empty sequences; every other table is a map.
-- template.list([t]) -> t marked as a list; template.list_mt
-- template.null = cjson.null (the value of YAML/JSON null and Python None).
--
-- Paths: dot-separated; every segment before the last may hold only
-- letters, '_', '-' and a trailing '?'; the last one may also hold digits and
-- . ' " ( ) [ ] { }.  A `${{ }}` whose path breaks these rules is left in the
-- text literally, as the reference does.  `seg?` gives null when that segment
-- is missing; a missing segment without '?' is the error
-- "Parameters does not get dot with caller: '<path>'." (UtilError).
-- Dates and datetimes are ISO strings ("2024-03-01", "2024-03-01T04:05:06Z").

local cjson = require "cjson"

local _M = { _VERSION = "0.1.0" }

local json = require "luabatch.json"

local NULL = cjson.null
-- the list markers are luabatch.json's
local ARRAY_MT = json.list_mt
local EMPTY_ARRAY_MT = json.empty_list_mt
local str_format = string.format
local str_byte = string.byte
local str_sub = string.sub
local str_find = string.find
local tbl_concat = table.concat
local tbl_sort = table.sort
local math_type = math.type
local math_floor = math.floor
local tointeger = math.tointeger

_M.null = NULL
_M.list_mt = ARRAY_MT

-- Mark a table as a list (also an empty one) and return it.
function _M.list(t) return setmetatable(t or {}, ARRAY_MT) end

local ERR = "UtilError"

-- value kinds ---------------------------------------------------------------

local function is_null(v) return v == nil or v == NULL end

-- A list: marked by cjson's array metatables or a non-empty sequence.
local function is_list(t)
  local mt = getmetatable(t)
  if mt ~= nil and (mt == ARRAY_MT or mt == EMPTY_ARRAY_MT or mt.__jsontype == "array") then return true end
  local n = #t
  if n == 0 then return false end
  local count = 0
  for k in pairs(t) do
    if type(k) ~= "number" then return false end
    count = count + 1
  end
  return count == n
end
_M.is_list = is_list

local function is_int(v)
  if math_type then return math_type(v) == "integer" end
  return v == math_floor(v) and v > -2 ^ 63 and v < 2 ^ 63
end
_M.is_int = is_int

-- Python's type name of a value (for messages).
local function pytype(v)
  if is_null(v) then return "NoneType" end
  local t = type(v)
  if t == "boolean" then return "bool" end
  if t == "number" then return is_int(v) and "int" or "float" end
  if t == "string" then return "str" end
  if t == "table" then return is_list(v) and "list" or "dict" end
  return t
end
_M.pytype = pytype

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

local function pystr(v, order)
  if type(v) == "string" then return v end
  return pyrepr(v, order)
end

_M.pystr = pystr
_M.pyrepr = function(v, order) return pyrepr(v, order) end

-- strings -------------------------------------------------------------------

local function strip(s)
  local i = str_find(s, "%S")
  if not i then return "" end
  local j = #s
  while j > i and str_find(str_sub(s, j, j), "^%s") do j = j - 1 end
  return str_sub(s, i, j)
end
_M.strip = strip

-- environment substitution -------------------------------------------------

local function env_sub(s, getenv)
  if not str_find(s, "$", 1, true) then return s end
  getenv = getenv or os.getenv
  local out, pos, n = {}, 1, #s
  while pos <= n do
    local d = str_find(s, "$", pos, true)
    if not d then out[#out + 1] = str_sub(s, pos); break end
    out[#out + 1] = str_sub(s, pos, d - 1)
    local c = str_sub(s, d + 1, d + 1)
    if c == "$" then
      out[#out + 1] = "$"
      pos = d + 2
    elseif c == "{" then
      -- ${ NAME } | ${NAME:default}  (one optional space inside each brace)
      local close = str_find(s, "}", d + 2, true)
      local body = close and str_sub(s, d + 2, close - 1)
      if body == nil then
        out[#out + 1] = "$"; pos = d + 1
      elseif body == "" then
        return nil, "'${}' names no environment variable", ERR
      else
        local inner = body:gsub("^ ", "", 1)
        local name, rest = inner:match("^([%a_][%w_]*)(.*)$")
        local default
        if name and rest ~= "" then
          if str_sub(rest, 1, 1) == ":" then
            default = str_sub(rest, 2):gsub(" $", "", 1)
          elseif rest ~= " " then
            name = nil
          end
        end
        if not name then
          out[#out + 1] = "$"; pos = d + 1
        else
          local v = getenv(name)
          if v == nil or (v == "" and default ~= nil) then
            if default == nil then
              return nil, str_format("environment variable '%s' is not set (write ${%s:default} to give a default)",
                name, name), ERR
            end
            v = default
          end
          out[#out + 1] = v
          pos = close + 1
        end
      end
    else
      out[#out + 1] = "$"
      pos = d + 1
    end
  end
  return tbl_concat(out)
end

function _M.env(s, getenv)
  if type(s) ~= "string" then error("bad argument #1 to 'env' (string expected, got " .. type(s) .. ")", 2) end
  return env_sub(s, getenv)
end

-- template parsing -----------------------------------------------------------

local function valid_path(p)
  if p == "" then return false end
  -- everything up to the last interior '?' must be simple segments
  local last_q
  local i = 0
  while true do
    i = str_find(p, "?", i + 1, true)
    if not i or i == #p then break end
    last_q = i
  end
  local tail = p
  if last_q then
    if str_sub(p, last_q + 1, last_q + 1) ~= "." then return false end
    local head = str_sub(p, 1, last_q)
    tail = str_sub(p, last_q + 2)
    for seg in (head .. "."):gmatch("([^.]*)%.") do
      if not seg:match("^[%a_%-]+%??$") then return false end
    end
  end
  return tail:match("^[%w_%-%.'\"%(%)%[%]{}]+%??$") ~= nil
end

-- Parse Python literal arguments: 'a', "b", 1, -2.5, True, False, None, k=v.
local function parse_args(src)
  local args, kwargs = {}, {}
  local pos, n = 1, #src
  local function skip() pos = (str_find(src, "%S", pos)) or n + 1 end
  local function literal()
    skip()
    local c = str_sub(src, pos, pos)
    if c == "'" or c == '"' then
      local buf = {}
      local j = pos + 1
      while j <= n do
        local ch = str_sub(src, j, j)
        if ch == "\\" then
          local nx = str_sub(src, j + 1, j + 1)
          buf[#buf + 1] = ({ n = "\n", t = "\t", r = "\r", ["\\"] = "\\", ["'"] = "'", ['"'] = '"' })[nx]
            or ("\\" .. nx)
          j = j + 2
        elseif ch == c then
          pos = j + 1
          return true, tbl_concat(buf)
        else
          buf[#buf + 1] = ch
          j = j + 1
        end
      end
      return false, "unterminated string"
    end
    local num = src:match("^[-+]?%d[%d_]*%.?%d*[eE]?[-+]?%d*", pos) or src:match("^[-+]?%.%d+", pos)
    if num then
      local v = tonumber((num:gsub("_", "")))
      if v == nil then return false, "bad number '" .. num .. "'" end
      if not num:find("[.eE]") then v = tointeger and tointeger(v) or v end
      pos = pos + #num
      return true, v
    end
    local word = src:match("^[%a_][%w_]*", pos)
    if word == "True" or word == "False" or word == "None" then
      pos = pos + #word
      if word == "None" then return true, NULL end
      return true, word == "True"
    end
    return false, "expected a literal at '" .. str_sub(src, pos) .. "'"
  end
  skip()
  if pos > n then return args, kwargs end
  while true do
    skip()
    local key = src:match("^([%a_][%w_]*)%s*=[^=]", pos)
    if key then pos = str_find(src, "=", pos, true) + 1 end
    local ok, v = literal()
    if not ok then return nil, v end
    if key then kwargs[key] = v else
      if next(kwargs) then return nil, "positional argument after a keyword argument" end
      args[#args + 1] = v
    end
    skip()
    local c = str_sub(src, pos, pos)
    if c == "," then pos = pos + 1
    elseif pos > n then return args, kwargs
    else return nil, "unexpected '" .. str_sub(src, pos) .. "'" end
  end
end

local FILTERS = {}

-- Split the text between `${{` and `}}` into the path and its filters.
-- Returns spec | false (not a template: left literally) | nil, err.
local function parse_inner(inner)
  local parts, buf, quote = {}, {}, nil
  for i = 1, #inner do
    local c = str_sub(inner, i, i)
    if quote then
      if c == quote then quote = nil end
      buf[#buf + 1] = c
    elseif c == "'" or c == '"' then
      quote = c; buf[#buf + 1] = c
    elseif c == "|" then
      parts[#parts + 1] = tbl_concat(buf); buf = {}
    else
      buf[#buf + 1] = c
    end
  end
  parts[#parts + 1] = tbl_concat(buf)
  local path = strip(parts[1])
  if not valid_path(path) then return false end
  local filters = {}
  for i = 2, #parts do
    local f = strip(parts[i])
    local name, rest = f:match("^([%w_]+)(.*)$")
    if not name or #name < 3 then return false end
    local args, kwargs = {}, {}
    if rest ~= "" then
      local a = rest:match("^%s*%((.*)%)$")
      if not a then return false end
      local err
      args, kwargs = parse_args(a)
      if not args then
        err = kwargs
        return nil, str_format("The post-filter: '%s' has bad arguments (%s).", name, err)
      end
    end
    if not FILTERS[name] then return nil, str_format("The post-filter: '%s' does not support yet.", name) end
    filters[#filters + 1] = { name = name, args = args, kwargs = kwargs }
  end
  return { path = path, filters = filters }
end

-- Iterate templates in s: calls fn(start, stop, inner) for each `${{ ... }}`.
local function each_template(s, fn)
  local pos = 1
  while true do
    local a = str_find(s, "${{", pos, true)
    if not a then return true end
    local b = str_find(s, "}}", a + 3, true)
    if not b then return true end
    local ok, err = fn(a, b + 1, str_sub(s, a + 3, b - 1))
    if ok == nil then return nil, err end
    pos = b + 2
  end
end

-- lookup --------------------------------------------------------------------

local function getdot(path, ctx)
  local cur = ctx
  local segs = {}
  for seg in (path .. "."):gmatch("([^.]*)%.") do segs[#segs + 1] = seg end
  for i, seg in ipairs(segs) do
    local opt = str_sub(seg, -1) == "?"
    local key = opt and str_sub(seg, 1, -2) or seg
    local v
    if type(cur) == "table" then
      v = cur[key]
      if v == nil and key:match("^%d+$") then v = cur[tonumber(key)] end
    end
    if v == nil then
      if opt then return true, NULL end
      return nil, str_format("Parameters does not get dot with caller: '%s'.", path)
    end
    if i < #segs and type(v) ~= "table" then
      if opt then return true, NULL end
      return nil, str_format("Parameters does not get dot with caller: '%s'.", path)
    end
    cur = v
  end
  return true, cur
end

-- filters -------------------------------------------------------------------

local function list_of(t) return setmetatable(t, ARRAY_MT) end

local function parse_pyint(s)
  s = strip(s)
  if not s:match("^[-+]?%d+$") and not s:match("^[-+]?%d[%d_]*%d$") then return nil end
  if s:find("__", 1, true) then return nil end
  local v = tonumber((s:gsub("_", "")))
  if v and tointeger then v = tointeger(v) end
  return v
end
_M.parse_pyint = parse_pyint

local MONTHS = { "January", "February", "March", "April", "May", "June", "July", "August", "September",
  "October", "November", "December" }
local DAYS = { "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday" }

-- days since 1970-01-01 (proleptic Gregorian)
local function days_from_civil(y, m, d)
  y = m <= 2 and y - 1 or y
  local era = math_floor(y / 400)
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = math_floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + math_floor(yoe / 4) - math_floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end
_M.days_from_civil = days_from_civil

local function civil_from_days(z)
  z = z + 719468
  local era = math_floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math_floor((doe - math_floor(doe / 1460) + math_floor(doe / 36524) - math_floor(doe / 146096)) / 365)
  local y = yoe + era * 400
  local doy = doe - (365 * yoe + math_floor(yoe / 4) - math_floor(yoe / 100))
  local mp = math_floor((5 * doy + 2) / 153)
  local d = doy - math_floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  if m <= 2 then y = y + 1 end
  return y, m, d
end
_M.civil_from_days = civil_from_days

local function month_len(y, m)
  if m == 2 then return ((y % 4 == 0 and y % 100 ~= 0) or y % 400 == 0) and 29 or 28 end
  return ({ 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 })[m]
end

-- Parse an ISO date or datetime string.  Returns a table
-- { y, m, d, H, M, S, us, offset = minutes | nil, date_only = bool } or nil, why.
local function parse_iso(s)
  if type(s) ~= "string" then return nil, "not a string" end
  local y, m, d, rest = s:match("^(%d%d%d%d)-(%d%d)-(%d%d)(.*)$")
  if not y then y, m, d, rest = s:match("^(%d%d%d%d)(%d%d)(%d%d)(.*)$") end
  if not y then return nil, "not an ISO date" end
  local t = { y = tonumber(y), m = tonumber(m), d = tonumber(d), H = 0, M = 0, S = 0, us = 0 }
  if t.m < 1 or t.m > 12 or t.d < 1 or t.d > month_len(t.y, t.m) then return nil, "day is out of range" end
  if rest == "" then t.date_only = true; return t end
  local sep, hh, mi, tail = rest:match("^([Tt ])(%d%d):?(%d%d)(.*)$")
  if not sep then
    sep, hh, tail = rest:match("^([Tt ])(%d%d)(.*)$")
    mi = "00"
    if not sep then return nil, "bad time" end
  end
  t.H, t.M = tonumber(hh), tonumber(mi)
  local ss, tail2 = tail:match("^:?(%d%d)(.*)$")
  if ss then
    t.S = tonumber(ss); tail = tail2
    local frac, tail3 = tail:match("^[.,](%d+)(.*)$")
    if frac then
      t.us = tonumber(str_sub(frac .. "000000", 1, 6)); tail = tail3
    end
  end
  if tail == "Z" or tail == "z" then
    t.offset = 0
  elseif tail ~= "" then
    local sg, oh, om = tail:match("^%s*([-+])(%d%d):?(%d%d)$")
    if not sg then sg, oh = tail:match("^%s*([-+])(%d%d)$"); om = "00" end
    if not sg then return nil, "bad time zone" end
    t.offset = (tonumber(oh) * 60 + tonumber(om)) * (sg == "-" and -1 or 1)
  end
  if t.H > 23 or t.M > 59 or t.S > 59 then return nil, "time is out of range" end
  return t
end
_M.parse_iso = parse_iso

local function iso_date(t) return str_format("%04d-%02d-%02d", t.y, t.m, t.d) end

-- Convert a parsed datetime to UTC (a naive one is taken as UTC).
local function to_utc(t)
  local off = t.offset or 0
  local days = days_from_civil(t.y, t.m, t.d)
  local mins = days * 1440 + t.H * 60 + t.M - off
  local nd = math_floor(mins / 1440)
  local rem = mins - nd * 1440
  local y, m, d = civil_from_days(nd)
  return { y = y, m = m, d = d, H = math_floor(rem / 60), M = rem % 60, S = t.S, us = t.us, offset = 0 }
end
_M.to_utc = to_utc

local function iso_datetime(t)
  local s = str_format("%04d-%02d-%02dT%02d:%02d:%02d", t.y, t.m, t.d, t.H, t.M, t.S)
  if t.us ~= 0 then s = s .. str_format(".%06d", t.us) end
  return s .. "Z"
end
_M.iso_date = iso_date
_M.iso_datetime = iso_datetime

local function strftime(t, fmt)
  local wd = (days_from_civil(t.y, t.m, t.d) + 3) % 7 + 1 -- 1 = Monday
  local yday = days_from_civil(t.y, t.m, t.d) - days_from_civil(t.y, 1, 1) + 1
  local function off()
    if not t.offset then return "" end
    local o = t.offset
    return str_format("%s%02d%02d", o < 0 and "-" or "+", math_floor(math.abs(o) / 60), math.abs(o) % 60)
  end
  local map = {
    Y = function() return str_format("%04d", t.y) end, y = function() return str_format("%02d", t.y % 100) end,
    m = function() return str_format("%02d", t.m) end, d = function() return str_format("%02d", t.d) end,
    H = function() return str_format("%02d", t.H) end, M = function() return str_format("%02d", t.M) end,
    S = function() return str_format("%02d", t.S) end, f = function() return str_format("%06d", t.us) end,
    I = function() return str_format("%02d", (t.H + 11) % 12 + 1) end,
    p = function() return t.H < 12 and "AM" or "PM" end,
    j = function() return str_format("%03d", yday) end,
    a = function() return str_sub(DAYS[wd], 1, 3) end, A = function() return DAYS[wd] end,
    b = function() return str_sub(MONTHS[t.m], 1, 3) end, B = function() return MONTHS[t.m] end,
    w = function() return tostring(wd % 7) end,
    z = off, Z = function() return t.offset and (t.offset == 0 and "UTC" or off()) or "" end,
    F = function() return iso_date(t) end, T = function() return str_format("%02d:%02d:%02d", t.H, t.M, t.S) end,
    ["%"] = function() return "%" end,
  }
  return (fmt:gsub("%%(.)", function(c)
    local f = map[c]
    return f and f() or ("%" .. c)
  end))
end

local function title(s)
  return (s:gsub("(%a)(%a*)", function(a, b) return a:upper() .. b:lower() end))
end

local function to_int(v)
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
_M.to_int = to_int

local BAD = {} -- sentinel: the filter does not fit the value

FILTERS.abs = function(v)
  if type(v) == "number" then return math.abs(v) end
  if type(v) == "boolean" then return v and 1 or 0 end
  return BAD
end
FILTERS.str = function(v, _, _, order) return pystr(v, order) end
FILTERS.rstr = function(v, _, _, order) return str_repr(pystr(v, order)) end
FILTERS.int = function(v)
  local r = to_int(v)
  if r == nil then return BAD end
  return r
end
FILTERS.list = function(v, _, _, order)
  if type(v) == "string" then
    local out = {}
    for ch in v:gmatch("[%z\1-\127\194-\244][\128-\191]*") do out[#out + 1] = ch end
    return list_of(out)
  end
  if type(v) ~= "table" then return BAD end
  if is_list(v) then
    local out = {}
    for i = 1, #v do out[i] = v[i] end
    return list_of(out)
  end
  return list_of(map_keys(v, order))
end
FILTERS.dict = function(v)
  if type(v) ~= "table" then return BAD end
  local out = {}
  if is_list(v) then
    for i = 1, #v do
      local p = v[i]
      if type(p) ~= "table" or #p ~= 2 then return BAD end
      out[p[1]] = p[2]
    end
    return out
  end
  for k, x in pairs(v) do out[k] = x end
  return out
end
FILTERS.title = function(v) if type(v) ~= "string" then return BAD end return title(v) end
FILTERS.upper = function(v) if type(v) ~= "string" then return BAD end return v:upper() end
FILTERS.lower = function(v) if type(v) ~= "string" then return BAD end return v:lower() end
FILTERS.keys = function(v, _, _, order)
  if type(v) ~= "table" or is_list(v) then return BAD end
  return list_of(map_keys(v, order))
end
FILTERS.values = function(v, _, _, order)
  if type(v) ~= "table" or is_list(v) then return BAD end
  local out = {}
  for _, k in ipairs(map_keys(v, order)) do out[#out + 1] = v[k] end
  return list_of(out)
end
FILTERS.fmt = function(v, args, kwargs)
  local f = args[1] or kwargs.fmt or "%Y-%m-%d %H:%M:%S"
  if type(f) ~= "string" then return BAD end
  local t = parse_iso(v)
  if not t then return BAD end
  return strftime(t, f)
end
FILTERS.coalesce = function(v, args, kwargs)
  if is_null(v) then
    local d = args[1]
    if d == nil then d = kwargs.default end
    if d == nil then d = NULL end
    return d
  end
  return v
end
FILTERS.getitem = function(v, args, kwargs)
  if type(v) ~= "table" or is_list(v) then return BAD end
  local key = args[1]
  if key == nil then key = kwargs.key end
  local d = args[2]
  if d == nil then d = kwargs.default end
  local r = v[key]
  if r == nil then r = d end
  if r == nil then r = NULL end
  return r
end
FILTERS.getindex = function(v, args, kwargs)
  if type(v) ~= "table" or not is_list(v) and next(v) ~= nil then return BAD end
  local i = args[1]
  if i == nil then i = kwargs.index end
  if type(i) ~= "number" then return BAD end
  local n = #v
  local j = i < 0 and n + i + 1 or i + 1
  if j < 1 or j > n then
    return nil, str_format("The post-filter: 'getindex' index %s is out of range for a list of %d items.",
      number_str(i), n)
  end
  return v[j]
end

local function apply_filters(v, filters, order)
  for _, f in ipairs(filters) do
    local r, err = FILTERS[f.name](v, f.args, f.kwargs, order)
    if r == nil then return nil, err end
    if r == BAD then
      return nil, str_format("The post-filter: '%s' does not fit with %s (type: %s).", f.name, pyrepr(v, order),
        pytype(v))
    end
    v = r
  end
  return true, v
end

-- rendering -----------------------------------------------------------------

local function eval_spec(spec, ctx, order)
  local ok, v = getdot(spec.path, ctx)
  if not ok then return nil, v end
  return apply_filters(v, spec.filters, order)
end

-- `${VAR}` substitution happens once, on the workflow's own text (the
-- literal parts around the templates), never on a template's value: a
-- param, an output or a record holding "${AWS_SECRET_ACCESS_KEY}" stays
-- that text (the reference substitutes the rendered result, once or twice).
local function render_string(s, ctx, opts)
  local getenv, order = opts.getenv, opts.order
  s = strip(s)
  if str_find(s, "${{", 1, true) then
    -- exactly one template spanning the whole string: native value
    local a, b = str_find(s, "}}", 4, true)
    if str_sub(s, 1, 3) == "${{" and b == #s and not str_find(s, "${{", 4, true) then
      local spec, perr = parse_inner(str_sub(s, 4, a - 1))
      if spec == nil then return nil, perr, ERR end
      if spec then
        local ok, v = eval_spec(spec, ctx, order)
        if not ok then return nil, v, ERR end
        return v
      end
    end
  end
  local out, pos = {}, 1
  local function literal(text)
    if opts.expand_env == false then
      out[#out + 1] = text
      return true
    end
    local e, err = env_sub(text, getenv)
    if not e then return nil, err end
    out[#out + 1] = e
    return true
  end
  local ok, err = each_template(s, function(x, y, inner)
    local spec, perr = parse_inner(inner)
    if spec == nil then return nil, perr end
    if spec then
      local good, v = eval_spec(spec, ctx, order)
      if not good then return nil, v end
      local lok, lerr = literal(str_sub(s, pos, x - 1))
      if not lok then return nil, lerr end
      out[#out + 1] = pystr(v, order)
      pos = y + 1
    end
    return true
  end)
  if ok then ok, err = literal(str_sub(s, pos)) end
  if not ok then return nil, err, ERR end
  local result = tbl_concat(out)
  if result == "None" or (opts.env and result == "null") then return NULL end
  return result
end

local function render(v, ctx, opts)
  local t = type(v)
  if t == "string" then return render_string(v, ctx, opts) end
  if t ~= "table" then return v end
  local out = {}
  for k, x in pairs(v) do
    local r, err, code = render(x, ctx, opts)
    if r == nil then return nil, err, code end
    out[k] = r
  end
  local mt = getmetatable(v)
  if mt == ARRAY_MT or mt == EMPTY_ARRAY_MT then setmetatable(out, mt) end
  return out
end

local NO_OPTS = {}

function _M.render(value, ctx, opts)
  if ctx ~= nil and type(ctx) ~= "table" then
    error("bad argument #2 to 'render' (table expected, got " .. type(ctx) .. ")", 2)
  end
  return render(value, ctx or NO_OPTS, opts or NO_OPTS)
end

function _M.has(s)
  return type(s) == "string" and str_find(s, "${{", 1, true) ~= nil
end

-- Syntax check (load time): unknown filters, bad filter arguments, `${}`.
function _M.check(s)
  if type(s) ~= "string" then error("bad argument #1 to 'check' (string expected, got " .. type(s) .. ")", 2) end
  local ok, err = each_template(s, function(_, _, inner)
    local spec, perr = parse_inner(inner)
    if spec == nil then return nil, perr end
    return true
  end)
  if not ok then return nil, err end
  local e, eerr = env_sub(s, function() return "" end)
  if not e then return nil, eerr end
  return true
end

-- The paths a string's templates refer to (for load-time checks).
function _M.paths(s)
  local out = {}
  if type(s) ~= "string" then return out end
  each_template(s, function(_, _, inner)
    local spec = parse_inner(inner)
    if spec then out[#out + 1] = spec.path end
    return true
  end)
  return out
end

return _M
