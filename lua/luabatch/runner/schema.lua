-- luabatch.runner.schema: the kinds of a runner's `with:` fields, one rule
-- each, used at load (a literal value: file:line:col errors) and at run
-- time (a value a template or --with gave).
--
--   local schema = require "luabatch.runner.schema"
--   local v, expect = schema.value("posint", "4")   -- 4 | nil, "a positive integer"
--   local out, field, msg = schema.check(spec, with) -- out | nil, field, message
--
-- spec = { fields = { <name> = kind }, required = { name | { name, alias } },
--          secrets = { name... }, ignored = { <name> = why },
--          kinds = { <kind> = fn(v) -> v | nil, expect [, bad key] } } (a
--          runner's: kinds of its own, for structured fields).
-- Kinds: str (a non-empty string; a number is turned into one), posnum,
-- posint, nonnegint, timeout (whole seconds >= 60, AWS Batch's minimum),
-- attempts (1..10), platform (EC2 | FARGATE, any case), bool (true/false or
-- "true"/"false"), strmap (a map of names to scalars -> strings).

local _M = { _VERSION = "0.1.0" }

local type = type
local pairs = pairs
local ipairs = ipairs
local next = next
local tostring = tostring
local tonumber = tonumber
local floor = math.floor

local function number(v)
  if type(v) == "string" then return tonumber(v) end
  return v
end

local function whole(v) return type(v) == "number" and v == floor(v) end

local KINDS = {
  str = function(v)
    if type(v) == "number" then v = tostring(v) end
    if type(v) ~= "string" or v == "" then return nil, "a non-empty string" end
    return v
  end,
  posnum = function(v)
    v = number(v)
    if type(v) ~= "number" or v <= 0 then return nil, "a positive number" end
    return v
  end,
  posint = function(v)
    v = number(v)
    if not whole(v) or v < 1 then return nil, "a positive integer" end
    return v
  end,
  nonnegint = function(v)
    v = number(v)
    if not whole(v) or v < 0 then return nil, "an integer >= 0" end
    return v
  end,
  timeout = function(v)
    v = number(v)
    if not whole(v) or v < 60 then return nil, "an integer number of seconds >= 60 (the AWS Batch minimum)" end
    return v
  end,
  attempts = function(v)
    v = number(v)
    if not whole(v) or v < 1 or v > 10 then return nil, "an integer in 1..10" end
    return v
  end,
  platform = function(v)
    if type(v) ~= "string" or (v:upper() ~= "EC2" and v:upper() ~= "FARGATE") then return nil, "EC2 or FARGATE" end
    return v:upper()
  end,
  bool = function(v)
    if v == "true" then return true elseif v == "false" then return false end
    if type(v) ~= "boolean" then return nil, "true or false" end
    return v
  end,
  strlist = function(v)
    if type(v) ~= "table" or (next(v) ~= nil and v[1] == nil) then return nil, "a list of strings" end
    local out = {}
    for i, x in pairs(v) do
      if type(i) ~= "number" or type(x) ~= "string" or x == "" then return nil, "a list of non-empty strings" end
      out[i] = x
    end
    return out
  end,
  strmap = function(v)
    if type(v) ~= "table" or v[1] ~= nil then return nil, "a mapping of names to strings" end
    local out = {}
    for k, x in pairs(v) do
      local t = type(x)
      if type(k) ~= "string" or (t ~= "string" and t ~= "number" and t ~= "boolean") then
        return nil, "a mapping of names to strings", k
      end
      out[k] = t == "string" and x or tostring(x)
    end
    return out
  end,
}

--- value(kind, v) -> normalised v | nil, what it must be [, the bad key of a map]
function _M.value(kind, v)
  local f = KINDS[kind]
  if not f then error("bad argument #1 to 'value' (unknown kind '" .. tostring(kind) .. "')", 2) end
  return f(v)
end

--- check(spec, with) -> out | nil, field, message: every field known and
-- of its kind (nil values left out), the required ones there.
function _M.check(spec, with)
  local out = {}
  for k, v in pairs(with) do
    local kind = spec.fields[k]
    if not kind and not (spec.ignored and spec.ignored[k]) then
      return nil, tostring(k), "is not a field of this runner"
    end
    if kind and v ~= nil then
      local own = spec.kinds and spec.kinds[kind]
      local nv, expect, sub
      if own then nv, expect, sub = own(v) else nv, expect, sub = _M.value(kind, v) end
      if nv == nil then
        return nil, sub and (k .. "." .. tostring(sub)) or k, "must be " .. expect
      end
      out[k] = nv
    end
  end
  for _, r in ipairs(spec.required or {}) do
    local name, alias = r, nil
    if type(r) == "table" then name, alias = r[1], r[2] end
    if out[name] == nil and (alias == nil or out[alias] == nil) then return nil, name, "is required" end
  end
  return out
end

return _M
