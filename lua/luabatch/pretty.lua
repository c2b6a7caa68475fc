-- luabatch.pretty: render Lua values for people (the REPL, debug output).
--
-- pretty.format(value [, opts]) -> string.  Tables are printed as Lua table
-- constructors, keys sorted (array part first, in order), nested tables
-- indented, cycles shown as <cycle>, depth limited (opts.depth, default 8),
-- long tables cut after opts.max_items (default 200) entries.
--
-- Secrets are never shown: a string under a key that names one
-- (log.secret_name: secret_key, session_token, password, ...) prints as
-- <redacted>, and every other string passes through log.redact (registered
-- credentials, Authorization headers, ...).  Access key ids are shown.
--
-- Lazily loaded modules: a table whose metatable has __lazy = { key =
-- "module.name" } (the luabatch entry point) lists those keys too, as
-- <module NAME, not loaded> before first use and <module NAME> after,
-- never loading one and never printing a whole module inside another.

local log = require "luabatch.log"

local _M = { _VERSION = "0.1.0" }

local str_format = string.format
local tbl_concat = table.concat
local tbl_sort = table.sort
local redact = log.redact
local secret_name = log.secret_name

local REDACTED = "<redacted>"

local KEYWORDS = {}
for w in ("and break do else elseif end false for function goto if in local nil not or "
  .. "repeat return then true until while"):gmatch("%a+") do KEYWORDS[w] = true end

local function is_identifier(k)
  return type(k) == "string" and k:match("^[%a_][%w_]*$") and not KEYWORDS[k]
end

local function scalar(v)
  local t = type(v)
  if t == "string" then
    v = redact(v)
    if v == REDACTED then return REDACTED end
    return (str_format("%q", v):gsub("\\\n", "\\n"))
  end
  if t == "number" then
    if v ~= v then return "0/0" end
    if v == math.huge then return "math.huge" end
    if v == -math.huge then return "-math.huge" end
    return tostring(v)
  end
  if t == "userdata" and tostring(v):match("^userdata: %(?nil%)?") then return "null" end
  return tostring(v)
end

local NO_LAZY = {}

-- { key = module name } of a table's lazily loaded submodules, or {}.
local function lazy_modules(t)
  local mt = getmetatable(t)
  local lazy = type(mt) == "table" and rawget(mt, "__lazy")
  return type(lazy) == "table" and lazy or NO_LAZY
end

local function key_order(a, b)
  local ta, tb = type(a), type(b)
  if ta ~= tb then return ta < tb end
  if ta == "number" or ta == "string" then return a < b end
  return tostring(a) < tostring(b)
end

local function render(v, indent, depth, seen, opts, out)
  if type(v) ~= "table" then
    out[#out + 1] = scalar(v)
    return
  end
  if seen[v] then out[#out + 1] = "<cycle>"; return end
  if depth >= opts.depth then out[#out + 1] = "{...}"; return end
  local n = #v
  local keys = {}
  for k in pairs(v) do
    if not (type(k) == "number" and k >= 1 and k <= n and k % 1 == 0) then keys[#keys + 1] = k end
  end
  local lazy = lazy_modules(v)
  for k in pairs(lazy) do
    if rawget(v, k) == nil then keys[#keys + 1] = k end
  end
  if n == 0 and #keys == 0 then out[#out + 1] = "{}"; return end
  tbl_sort(keys, key_order)
  seen[v] = true
  local pad = indent .. "  "
  out[#out + 1] = "{\n"
  local count = 0
  for i = 1, n do
    count = count + 1
    if count > opts.max_items then break end
    out[#out + 1] = pad
    render(v[i], pad, depth + 1, seen, opts, out)
    out[#out + 1] = ",\n"
  end
  for _, k in ipairs(keys) do
    count = count + 1
    if count > opts.max_items then break end
    out[#out + 1] = pad
    out[#out + 1] = is_identifier(k) and k or ("[" .. scalar(k) .. "]")
    out[#out + 1] = " = "
    local x
    if lazy[k] then x = rawget(v, k) else x = v[k] end
    if lazy[k] then
      out[#out + 1] = str_format("<module %s%s>", lazy[k], x == nil and ", not loaded" or "")
    elseif secret_name(k) and type(x) == "string" and x ~= "" then
      out[#out + 1] = REDACTED
    else
      render(x, pad, depth + 1, seen, opts, out)
    end
    out[#out + 1] = ",\n"
  end
  if count > opts.max_items then
    out[#out + 1] = pad .. str_format("-- %d more entries\n", n + #keys - opts.max_items)
  end
  out[#out + 1] = indent .. "}"
  seen[v] = nil
end

function _M.format(value, opts)
  opts = opts or {}
  local o = { depth = opts.depth or 8, max_items = opts.max_items or 200 }
  local out = {}
  render(value, "", 0, {}, o, out)
  return tbl_concat(out)
end


--- secs(s) -> a duration for people: "0.52s", "12.3s", "2m05s"
function _M.secs(s)
  if s < 10 then return string.format("%.2fs", s) end
  if s < 120 then return string.format("%.1fs", s) end
  return string.format("%dm%02ds", math.floor(s / 60), math.floor(s % 60))
end

return _M
