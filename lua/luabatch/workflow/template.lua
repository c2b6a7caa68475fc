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
--   `${VAR}` the loader already substituted, such as runs-on `with:`).
--   opts.getenv = fn(name) (default os.getenv); opts.order = fn(map) -> list
--   of keys in source order (used when a map is printed; default: keys
--   sorted).
--   A string rendering to more than MAX_BYTES (64 MiB) is the error
--   "template '<text>' renders to more than N bytes" (checked as it grows).
-- template.env(str [, getenv]) -> str | nil, msg, "UtilError"
--   `${NAME}`, `${ NAME }`, `${NAME:default}` (the default is the literal text
--   after the first ':'), `$$` -> `$`; `$1` and `$NAME` are left alone.  An
--   unset variable without a default is an error naming it; a variable set to
--   "" gives "" (or its default when one is given).  `${}` is an error.
-- template.check(str) -> true | nil, msg   (syntax only: filters, `${}`)
-- template.has(str) -> bool                (the string holds a `${{`)
-- template.paths(str) -> { path, ... }     (the paths its templates read)
-- template.pystr(value [, order]) / template.pyrepr(value [, order])
--   Python str() / repr() of a value: None, True, 3, 0.5, 'a', ['a', 'b'],
--   {'k': 1}.  Lists are tables marked with template.list_mt (luabatch.json's
--   list marker) or non-empty sequences; every other table is a map.
-- template.list([t]) -> t marked as a list; template.list_mt
-- template.null = cjson.null (the value of YAML/JSON null and Python None).
-- Also re-exported, contracts in their modules: is_list, is_int, pytype,
-- map_keys, float_repr, str_repr, strip, parse_pyint, to_int
-- (luabatch.workflow.template_py); parse_iso, to_utc, iso_date, iso_datetime,
-- days_from_civil, civil_from_days (luabatch.workflow.template_date).  The
-- filters are luabatch.workflow.template_filter.
--
-- Paths: dot-separated; every segment before the last may hold only
-- letters, '_', '-' and a trailing '?'; the last one may also hold digits and
-- . ' " ( ) [ ] { }.  A `${{ }}` whose path breaks these rules is left in the
-- text literally, as the reference does.  `seg?` gives null when that segment
-- is missing; a missing segment without '?' is the error
-- "Parameters does not get dot with caller: '<path>'." (UtilError).
-- Dates and datetimes are ISO strings ("2024-03-01", "2024-03-01T04:05:06Z").

local cjson = require "cjson"
local json = require "luabatch.json"
local py = require "luabatch.workflow.template_py"
local date = require "luabatch.workflow.template_date"
local filter = require "luabatch.workflow.template_filter"

local _M = { _VERSION = "0.1.0", MAX_BYTES = 64 * 1024 * 1024 }

local NULL = cjson.null
-- the list markers are luabatch.json's
local ARRAY_MT = json.list_mt
local EMPTY_ARRAY_MT = json.empty_list_mt
local str_format = string.format
local str_sub = string.sub
local str_find = string.find
local tbl_concat = table.concat
local strip, pystr = py.strip, py.pystr

local ERR = "UtilError"

_M.null = NULL
_M.list_mt = ARRAY_MT

-- Mark a table as a list (also an empty one) and return it.
function _M.list(t) return setmetatable(t or {}, ARRAY_MT) end

for _, name in ipairs({ "is_list", "is_int", "pytype", "map_keys", "float_repr", "str_repr", "pystr", "pyrepr",
  "strip", "parse_pyint", "to_int" }) do
  _M[name] = py[name]
end
for _, name in ipairs({ "parse_iso", "to_utc", "iso_date", "iso_datetime", "days_from_civil",
  "civil_from_days" }) do
  _M[name] = date[name]
end

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
    local f, err = filter.parse(parts[i])
    if not f then return f, err end
    filters[#filters + 1] = f
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

-- rendering -----------------------------------------------------------------

local function eval_spec(spec, ctx, order)
  local ok, v = getdot(spec.path, ctx)
  if not ok then return nil, v end
  return filter.apply(v, spec.filters, order)
end

-- `${VAR}` substitution happens once, on the workflow's own text (the
-- literal parts around the templates), never on a template's value: a
-- param, an output or a record holding "${AWS_SECRET_ACCESS_KEY}" stays
-- that text (the reference substitutes the rendered result, once or twice).
local TOO_BIG = {}   -- the error of add() past MAX_BYTES

local function too_big(s)
  local shown = #s > 80 and (str_sub(s, 1, 77) .. "...") or s
  return nil, str_format("template '%s' renders to more than %d bytes", shown, _M.MAX_BYTES), ERR
end

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
        if type(v) == "string" and #v > _M.MAX_BYTES then return too_big(s) end
        return v
      end
    end
  end
  local out, pos, size = {}, 1, 0
  local function add(text)
    size = size + #text
    if size > _M.MAX_BYTES then return nil, TOO_BIG end
    out[#out + 1] = text
    return true
  end
  local function literal(text)
    if opts.expand_env == false then return add(text) end
    local e, err = env_sub(text, getenv)
    if not e then return nil, err end
    return add(e)
  end
  local ok, err = each_template(s, function(x, y, inner)
    local spec, perr = parse_inner(inner)
    if spec == nil then return nil, perr end
    if spec then
      local good, v = eval_spec(spec, ctx, order)
      if not good then return nil, v end
      local lok, lerr = literal(str_sub(s, pos, x - 1))
      if not lok then return nil, lerr end
      local aok, aerr = add(pystr(v, order))
      if not aok then return nil, aerr end
      pos = y + 1
    end
    return true
  end)
  if ok then ok, err = literal(str_sub(s, pos)) end
  if err == TOO_BIG then return too_big(s) end
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