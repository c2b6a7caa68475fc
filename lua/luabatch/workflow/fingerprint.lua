-- luabatch.workflow.fingerprint: when a job's earlier result may be reused
-- (`luabatch run --resume RUN` after a run ended).
--
--   local fp = require "luabatch.workflow.fingerprint"
--   local key = fp.job(model, id, params, records, runner)
--
-- A job's key is the SHA-256 of a canonical text of what its result can
-- depend on:
--   * its definition: stages, `if:`, needs, trigger-rule, runs-on (with:
--     as written) -- everything but the strategy block (a strategy is named
--     by its matrix values already), retry, desc and source positions;
--   * every param's value;
--   * the records of the jobs it needs, without timings (the `info` of
--     every record);
--   * the run's runner override: --runs-on and --with.
-- A strategy's result is reusable when its job's key is unchanged and its
-- id (a hash of its matrix values) names a SUCCESS record.
--
-- Values pass through JSON first, so a record read back from a journal
-- keys as the one in memory did (dates as ISO text, every empty table {}).

local json = require "luabatch.json"

local _M = { _VERSION = "0.1.0" }

local type = type
local pairs = pairs
local ipairs = ipairs
local tostring = tostring
local floor = math.floor
local str_format = string.format
local tbl_sort = table.sort
local tbl_concat = table.concat

local core_ok, core = pcall(require, "luabatch.core")

local SKIP_JOB = { strategy = true, retry = true, desc = true }

-- The definition as written: source positions (pos, *_pos) and functions
-- left out.
local function written(v, seen)
  if type(v) ~= "table" then return v end
  if seen[v] then return nil end
  seen[v] = true
  local out = {}
  for k, x in pairs(v) do
    if type(x) ~= "function" and not (type(k) == "string" and (k == "pos" or k:sub(-4) == "_pos")) then
      out[k] = written(x, seen)
    end
  end
  seen[v] = nil
  return out
end

-- Canonical text of a JSON-shaped value: keys sorted, numbers integral
-- where they can be (Lua 5.4 and LuaJIT agree), type-tagged.
local function canon(v, out, drop_info)
  local t = type(v)
  if t == "table" then
    local keys = {}
    for k in pairs(v) do
      if type(k) ~= "string" or not (drop_info and k == "info" and v.status ~= nil) then
        keys[#keys + 1] = tostring(k)
      end
    end
    tbl_sort(keys)
    out[#out + 1] = "{"
    for _, k in ipairs(keys) do
      local x = v[k]
      if x == nil then x = v[tonumber(k)] end
      out[#out + 1] = str_format("%q:", k)
      canon(x, out, drop_info)
    end
    out[#out + 1] = "}"
  elseif t == "number" then
    if v == floor(v) and v > -2 ^ 53 and v < 2 ^ 53 then
      out[#out + 1] = str_format("n%d,", v)
    else
      out[#out + 1] = str_format("n%.17g,", v)
    end
  elseif t == "string" then
    out[#out + 1] = str_format("%q,", v)
  else
    out[#out + 1] = tostring(v) .. ","
  end
end

-- canonical(v, drop_info) -> text: v as JSON shapes it, canonically.
local function canonical(v, drop_info)
  local dv = json.decode(json.encode(v))
  local out = {}
  canon(dv, out, drop_info)
  return tbl_concat(out)
end
_M.canonical = canonical

local function digest(s)
  if core_ok and type(core) == "table" and core.sha256 then return core.sha256(s) end
  return s   -- without the C core the text itself is the key
end

--- job(model, id, params, records, runner) -> key (hex).  records: the
-- run's records so far (those of the job's needs are read); runner:
-- { runs_on?, with? } from the command line.
function _M.job(model, id, params, records, runner)
  local jobdef = model.jobs[id]
  local def = {}
  for k, v in pairs(jobdef) do
    if not SKIP_JOB[k] then def[k] = v end
  end
  def = written(def, {})
  local needs = {}
  for _, n in ipairs(jobdef.needs or {}) do needs[n] = records[n] or false end
  return digest(tbl_concat({
    "job:", tostring(id), "\n",
    "def:", canonical(def, false), "\n",
    "params:", canonical(params or {}, false), "\n",
    "needs:", canonical(needs, true), "\n",
    "runner:", canonical(runner or {}, false), "\n",
  }))
end

return _M
