-- luabatch.json: JSON that round-trips a workflow context exactly.
--
--   local json = require "luabatch.json"
--   local s = json.encode(ctx [, { indent = "  " }])
--   local v, msg, code = json.decode(s [, name [, { max = bytes }]])
--       -- code "EPARSE", or "ELIMIT" for a text over max (default json.MAX)
--
-- Why not lua-cjson alone: on Lua 5.4 cjson decodes every number as a float
-- (3 comes back as 3.0, and renders "3.0" in a template), and an empty
-- table cannot say whether it was [] or {}.  A context that travels to a
-- Batch container and back (the bundle, result.json, the journal) must
-- come back equal, so:
--   encode  keys sorted (stable output, diffable); integers as "3", integral
--           floats as "3.0" on Lua 5.4; tables marked as lists (list_mt:
--           cjson's array_mt) or non-empty sequences -> arrays;
--           tables whose metatable says __jsontype = "object" and every
--           other table -> objects; cjson.null -> null; NaN/inf -> null.
--   decode  "3" -> integer, "3.0"/"3e0" -> float (LuaJIT: both numbers);
--           arrays come back marked as lists, objects marked __jsontype =
--           "object", so encode(decode(s)) == encode(original).
-- Errors name the input (`name`, default "json") and the byte offset.
-- Decoding costs several times the text in tables, so a text over
-- max (default MAX, 64 MiB, the HTTP body cap) is refused unread.

local cjson = require "cjson"

local _M = { _VERSION = "0.1.0", MAX = 64 * 1024 * 1024 }

local type = type
local pairs = pairs
local ipairs = ipairs
local tostring = tostring
local tonumber = tonumber
local getmetatable = getmetatable
local setmetatable = setmetatable
local str_format = string.format
local str_rep = string.rep
local str_find = string.find
local str_sub = string.sub
local str_char = string.char
local tbl_concat = table.concat
local tbl_sort = table.sort
local floor = math.floor
local math_type = math.type
local tointeger = math.tointeger

-- The shape markers, defined here once (template, stage and the engine use
-- them): a list is marked with cjson's array metatable when this cjson has
-- one (so it encodes as an array even when empty), else with our own.
local NULL = cjson.null
local LIST_MT = cjson.array_mt or { __name = "luabatch.list", __jsontype = "array" }
local EMPTY_LIST_MT = cjson.empty_array_mt or LIST_MT
local OBJECT_MT = { __jsontype = "object" }

_M.null = NULL
_M.list_mt = LIST_MT
_M.empty_list_mt = EMPTY_LIST_MT
_M.object_mt = OBJECT_MT

--- list([t]) / object([t]) -> t marked (an empty one too)
function _M.list(t) return setmetatable(t or {}, LIST_MT) end
function _M.object(t) return setmetatable(t or {}, OBJECT_MT) end

--- "array", "object" or nil (decide by content) for a table.
local function jsontype(t)
  local mt = getmetatable(t)
  if mt == nil then return nil end
  if mt == LIST_MT or mt == EMPTY_LIST_MT then return "array" end
  return mt.__jsontype
end
_M.jsontype = jsontype

---------------------------------------------------------------------------
-- Encoding
---------------------------------------------------------------------------

local ESC = { ['"'] = '\\"', ['\\'] = '\\\\', ['\b'] = '\\b', ['\f'] = '\\f',
              ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t' }

local function jstr(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    return ESC[c] or str_format("\\u%04x", c:byte())
  end) .. '"'
end

local function jnum(n)
  if n ~= n or n == math.huge or n == -math.huge then return "null" end
  if math_type and math_type(n) == "integer" then return str_format("%d", n) end
  if n == floor(n) and n > -2 ^ 53 and n < 2 ^ 53 then
    if math_type then return str_format("%.1f", n) end
    return str_format("%d", n)
  end
  for p = 15, 17 do
    local s = str_format("%." .. p .. "g", n)
    if tonumber(s) == n then return s end
  end
  return str_format("%.17g", n)
end

local function is_seq(t)
  local n = #t
  if n == 0 then return false end
  local c = 0
  for k in pairs(t) do
    if type(k) ~= "number" then return false end
    c = c + 1
  end
  return c == n
end

--- is_list(t) -> true when t encodes as an array: marked as a list, or a
-- non-empty sequence
function _M.is_list(t)
  local kind = jsontype(t)
  if kind ~= nil then return kind == "array" end
  return is_seq(t)
end

local function key_less(a, b)
  local ta, tb = type(a), type(b)
  if ta ~= tb then return ta < tb end
  if ta == "number" or ta == "string" then return a < b end
  return tostring(a) < tostring(b)
end

local function encode(v, out, indent, depth, seen)
  local t = type(v)
  if v == nil or v == NULL then
    out[#out + 1] = "null"
  elseif t == "boolean" then
    out[#out + 1] = v and "true" or "false"
  elseif t == "number" then
    out[#out + 1] = jnum(v)
  elseif t == "string" then
    out[#out + 1] = jstr(v)
  elseif t == "table" then
    if seen[v] then error("json.encode: a cycle in the value", 0) end
    seen[v] = true
    local kind = jsontype(v)
    if kind == nil then kind = is_seq(v) and "array" or "object" end
    local nl = indent and ("\n" .. str_rep(indent, depth + 1)) or ""
    local close = indent and ("\n" .. str_rep(indent, depth)) or ""
    if kind == "array" then
      if #v == 0 then
        out[#out + 1] = "[]"
      else
        out[#out + 1] = "["
        for i = 1, #v do
          if i > 1 then out[#out + 1] = "," end
          out[#out + 1] = nl
          encode(v[i], out, indent, depth + 1, seen)
        end
        out[#out + 1] = close .. "]"
      end
    else
      local keys = {}
      for k, x in pairs(v) do
        local tx = type(x)
        if tx ~= "function" and tx ~= "userdata" and tx ~= "thread" or x == NULL then
          keys[#keys + 1] = k
        end
      end
      tbl_sort(keys, key_less)
      if #keys == 0 then
        out[#out + 1] = "{}"
      else
        out[#out + 1] = "{"
        for i, k in ipairs(keys) do
          if i > 1 then out[#out + 1] = "," end
          local ks
          if type(k) == "number" then ks = jnum(k) else ks = tostring(k) end
          out[#out + 1] = nl .. jstr(ks) .. (indent and ": " or ":")
          encode(v[k], out, indent, depth + 1, seen)
        end
        out[#out + 1] = close .. "}"
      end
    end
    seen[v] = nil
  else
    out[#out + 1] = jstr(tostring(v))
  end
end

--- JSON text of v; opts.indent = "  " for pretty output.  Functions and
-- userdata inside objects are left out; elsewhere they become strings.
function _M.encode(v, opts)
  local out = {}
  encode(v, out, opts and opts.indent, 0, {})
  return tbl_concat(out)
end

---------------------------------------------------------------------------
-- Decoding
---------------------------------------------------------------------------

local UNESC = { ['"'] = '"', ['\\'] = '\\', ['/'] = '/', b = '\b', f = '\f',
                n = '\n', r = '\r', t = '\t' }

local function utf8_char(c)
  if c < 0x80 then return str_char(c) end
  if c < 0x800 then return str_char(0xC0 + floor(c / 64), 0x80 + c % 64) end
  if c < 0x10000 then
    return str_char(0xE0 + floor(c / 4096), 0x80 + floor(c / 64) % 64, 0x80 + c % 64)
  end
  return str_char(0xF0 + floor(c / 262144), 0x80 + floor(c / 4096) % 64,
                  0x80 + floor(c / 64) % 64, 0x80 + c % 64)
end

local Decoder = {}
Decoder.__index = Decoder

function Decoder:fail(msg, pos)
  error({ json_error = str_format("%s: byte %d: %s", self.name, pos or self.pos, msg) }, 0)
end

function Decoder:skip()
  local _, e = str_find(self.s, "^[ \t\r\n]*", self.pos)
  self.pos = e + 1
end

function Decoder:string()
  local s, pos = self.s, self.pos + 1
  local parts = {}
  while true do
    local a, b = str_find(s, '["\\%c]', pos)
    if not a then self:fail("unterminated string", self.pos) end
    if a > pos then parts[#parts + 1] = str_sub(s, pos, a - 1) end
    local c = str_sub(s, a, b)
    if c == '"' then
      self.pos = a + 1
      return tbl_concat(parts)
    elseif c == "\\" then
      local e = str_sub(s, a + 1, a + 1)
      if UNESC[e] then
        parts[#parts + 1] = UNESC[e]
        pos = a + 2
      elseif e == "u" then
        local hex = str_sub(s, a + 2, a + 5)
        if not str_find(hex, "^%x%x%x%x$") then self:fail("bad \\u escape", a) end
        local code = tonumber(hex, 16)
        pos = a + 6
        if code >= 0xD800 and code <= 0xDBFF and str_sub(s, pos, pos + 1) == "\\u" then
          local lo = tonumber(str_sub(s, pos + 2, pos + 5), 16)
          if lo and lo >= 0xDC00 and lo <= 0xDFFF then
            code = 0x10000 + (code - 0xD800) * 1024 + (lo - 0xDC00)
            pos = pos + 6
          end
        end
        parts[#parts + 1] = utf8_char(code)
      else
        self:fail("bad escape \\" .. e, a)
      end
    else
      self:fail("control character in string", a)
    end
  end
end

function Decoder:number()
  local s, pos = self.s, self.pos
  local a, b = str_find(s, "^-?%d+%.?%d*[eE]?[-+]?%d*", pos)
  if not a then self:fail("unexpected character '" .. str_sub(s, pos, pos) .. "'") end
  local text = str_sub(s, a, b)
  local n = tonumber(text)
  if n == nil then self:fail("bad number '" .. text .. "'") end
  if tointeger and not str_find(text, "[.eE]") then n = tointeger(n) or n end
  if tointeger and str_find(text, "[.eE]") then n = n + 0.0 end
  self.pos = b + 1
  return n
end

local LITERALS = { t = { "true", true }, f = { "false", false }, n = { "null", NULL } }

function Decoder:value(depth)
  if depth > 512 then self:fail("nested too deeply") end
  self:skip()
  local s, pos = self.s, self.pos
  local c = str_sub(s, pos, pos)
  if c == "{" then
    local obj = setmetatable({}, OBJECT_MT)
    self.pos = pos + 1
    self:skip()
    if str_sub(s, self.pos, self.pos) == "}" then self.pos = self.pos + 1; return obj end
    while true do
      self:skip()
      if str_sub(s, self.pos, self.pos) ~= '"' then self:fail("object key expected") end
      local k = self:string()
      self:skip()
      if str_sub(s, self.pos, self.pos) ~= ":" then self:fail("':' expected") end
      self.pos = self.pos + 1
      obj[k] = self:value(depth + 1)
      self:skip()
      local d = str_sub(s, self.pos, self.pos)
      self.pos = self.pos + 1
      if d == "}" then return obj end
      if d ~= "," then self:fail("',' or '}' expected", self.pos - 1) end
    end
  elseif c == "[" then
    local arr = setmetatable({}, LIST_MT)
    self.pos = pos + 1
    self:skip()
    if str_sub(s, self.pos, self.pos) == "]" then self.pos = self.pos + 1; return arr end
    local n = 0
    while true do
      n = n + 1
      arr[n] = self:value(depth + 1)
      self:skip()
      local d = str_sub(s, self.pos, self.pos)
      self.pos = self.pos + 1
      if d == "]" then return arr end
      if d ~= "," then self:fail("',' or ']' expected", self.pos - 1) end
    end
  elseif c == '"' then
    return self:string()
  elseif LITERALS[c] then
    local lit = LITERALS[c]
    if str_sub(s, pos, pos + #lit[1] - 1) ~= lit[1] then self:fail("unexpected character '" .. c .. "'") end
    self.pos = pos + #lit[1]
    return lit[2]
  elseif c == "" then
    self:fail("unexpected end of input")
  else
    return self:number()
  end
end

--- decode(s [, name [, opts]]) -> value | nil, "name: byte N: what", "EPARSE"
-- | nil, "name: N bytes exceeds the limit of M bytes for JSON", "ELIMIT"
function _M.decode(s, name, opts)
  if type(s) ~= "string" then
    error("bad argument #1 to 'decode' (string expected, got " .. type(s) .. ")", 2)
  end
  local max = opts and opts.max or _M.MAX
  if #s > max then
    return nil, str_format("%s: %d bytes exceeds the limit of %d bytes for JSON", name or "json", #s, max), "ELIMIT"
  end
  local d = setmetatable({ s = s, pos = 1, name = name or "json" }, Decoder)
  local ok, v = pcall(function()
    local r = d:value(0)
    d:skip()
    if d.pos <= #s then d:fail("trailing characters") end
    return r
  end)
  if ok then return v end
  if type(v) == "table" and v.json_error then return nil, v.json_error, "EPARSE" end
  error(v, 0)
end

return _M
