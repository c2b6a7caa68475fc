-- luabatch.workflow.template_filter: the post-filters of a template,
-- `${{ path | name(args) | ... }}`, as the reference names and applies them.
--
-- filter.parse(text) -> f | false | nil, msg
--   The text of one `| ...` part: f = { name, args = {...}, kwargs =
--   {...} }, the arguments Python literals ('a', "b", 1, -2.5, True, False,
--   None, k=v).  false: not a filter call at all (the caller leaves the whole
--   `${{ }}` literally).  msg: "The post-filter: 'x' does not support yet."
--   or "... has bad arguments (why)."
-- filter.apply(v, filters, order) -> true, value | nil, msg
--   Runs the parsed filters in turn; msg: "The post-filter: 'int' does not
--   fit with 'a' (type: str)." or the filter's own (getindex out of range).
-- Filters: abs str rstr int list dict title upper lower keys values
--   fmt(fmt='%Y-%m-%d %H:%M:%S') coalesce(default) getitem(key, default)
--   getindex(index).  order = fn(map) -> keys in source order, as in
--   luabatch.workflow.template_py.  Nothing raises; nothing keeps state.

local cjson = require "cjson"
local json = require "luabatch.json"
local py = require "luabatch.workflow.template_py"
local date = require "luabatch.workflow.template_date"

-- MAX_LIST_CHARS: bytes of a string `| list` splits (an item per character
-- costs ~40 times the text).  A value shown in an error is cut to SHOW bytes.
local _M = { _VERSION = "0.1.0", MAX_LIST_CHARS = 1024 * 1024, SHOW = 200 }

local NULL = cjson.null
local ARRAY_MT = json.list_mt
local str_format = string.format
local str_sub = string.sub
local str_find = string.find
local tbl_concat = table.concat
local tointeger = math.tointeger
local is_null, is_list, pytype, map_keys = py.is_null, py.is_list, py.pytype, py.map_keys
local pystr, pyrepr, str_repr, number_str = py.pystr, py.pyrepr, py.str_repr, py.number_str

local FILTERS = {}
local BAD = {} -- sentinel: the filter does not fit the value


-- arguments -----------------------------------------------------------------

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

-- One filter part: f | false (not a filter call) | nil, msg.
function _M.parse(text)
  local name, rest = py.strip(text):match("^([%w_]+)(.*)$")
  if not name or #name < 3 then return false end
  local args, kwargs = {}, {}
  if rest ~= "" then
    local a = rest:match("^%s*%((.*)%)$")
    if not a then return false end
    args, kwargs = parse_args(a)
    if not args then
      return nil, str_format("The post-filter: '%s' has bad arguments (%s).", name, kwargs)
    end
  end
  if not FILTERS[name] then return nil, str_format("The post-filter: '%s' does not support yet.", name) end
  return { name = name, args = args, kwargs = kwargs }
end


-- the filters ---------------------------------------------------------------
-- Each is fn(value, args, kwargs, order) -> result | BAD | nil, msg.

local function list_of(t) return setmetatable(t, ARRAY_MT) end

local function title(s)
  return (s:gsub("(%a)(%a*)", function(a, b) return a:upper() .. b:lower() end))
end

FILTERS.abs = function(v)
  if type(v) == "number" then return math.abs(v) end
  if type(v) == "boolean" then return v and 1 or 0 end
  return BAD
end
FILTERS.str = function(v, _, _, order) return pystr(v, order) end
FILTERS.rstr = function(v, _, _, order) return str_repr(pystr(v, order)) end
FILTERS.int = function(v)
  local r = py.to_int(v)
  if r == nil then return BAD end
  return r
end
FILTERS.list = function(v, _, _, order)
  if type(v) == "string" then
    if #v > _M.MAX_LIST_CHARS then
      return nil, str_format("The post-filter: 'list' of a string of %d bytes: more than the limit of %d",
        #v, _M.MAX_LIST_CHARS)
    end
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
      local k = p[1]
      -- a key Lua cannot hold (NaN) or Python cannot hash (list, dict)
      if k ~= k or type(k) == "table" then return BAD end
      out[k] = p[2]
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
  local t = date.parse_iso(v)
  if not t then return BAD end
  return date.strftime(t, f)
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
  -- not a whole number (0.5, NaN): no item, Python's TypeError
  if type(i) ~= "number" or i ~= math.floor(i) then return BAD end
  local n = #v
  local j = i < 0 and n + i + 1 or i + 1
  if j < 1 or j > n then
    return nil, str_format("The post-filter: 'getindex' index %s is out of range for a list of %d items.",
      number_str(i), n)
  end
  return v[j]
end

function _M.apply(v, filters, order)
  for _, f in ipairs(filters) do
    local r, err = FILTERS[f.name](v, f.args, f.kwargs, order)
    if r == nil then return nil, err end
    if r == BAD then
      local shown = pyrepr(v, order)
      if #shown > _M.SHOW then shown = str_sub(shown, 1, _M.SHOW) .. "..." end
      return nil, str_format("The post-filter: '%s' does not fit with %s (type: %s).", f.name, shown, pytype(v))
    end
    v = r
  end
  return true, v
end

return _M
