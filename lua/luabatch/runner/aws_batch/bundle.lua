-- luabatch.runner.aws_batch.bundle: the document a remote task runs from.
--
--   local bundle = require "luabatch.runner.aws_batch.bundle"
--   local t, dropped = bundle.build{ run_id = id, workflow = model.name, job_id = "count",
--                                    jobdef = model.jobs.count, context = wctx,
--                                    strategies = combos,          -- optional
--                                    results = "s3://bucket/prefix/run/count/" }
--   local text = bundle.encode(t)
--   local t2, msg, code = bundle.decode(text, "s3://bucket/.../bundle.json")
--   local combo, msg = bundle.strategy(t2, "1234567890")   -- or a 0-based index
--   local ok, path = bundle.secret_free(t2, { secret_key, session_token })
--
-- Format "luabatch-bundle/1":
--   { format, run_id, workflow, job_id,
--     job = <the loaded job definition, deep-copied: runs_on.with removed
--            (credentials and all; runs_on.type kept), strategy.key_order
--            removed, anything JSON cannot hold (functions, userdata,
--            threads, non string/number keys, cycles) removed>,
--     context = { params = {...}, jobs = { <records of the jobs in job.needs> } },
--     strategies = [ { id = "<sid>" | "EMPTY", values = {...} }, ... ],
--     results = "s3://<bucket>/<run prefix>/<job_id>/" }   (always ends in "/")
-- An array child i runs strategies[i + 1].
--
-- build() raises on misuse (bad argument ...); its second return lists the
-- paths it dropped ("job.runs_on.with", "job.strategy.key_order", ...).
-- decode() returns nil, "<name>: <field>: <what is wrong>", "EBUNDLE" for any
-- text that is not a valid bundle (bad JSON included).
-- JSON goes through luabatch.json (integers vs floats and empty objects vs
-- arrays survive the trip); lua-cjson is the fallback when it is absent.

local stage = require "luabatch.workflow.stage"

local _M = { _VERSION = "0.1.0", FORMAT = "luabatch-bundle/1" }

local type = type
local pairs = pairs
local ipairs = ipairs
local pcall = pcall
local next = next
local require = require
local tostring = tostring
local getmetatable = getmetatable
local setmetatable = setmetatable
local str_format = string.format
local str_find = string.find
local str_sub = string.sub
local tbl_sort = table.sort
local floor = math.floor

local object, array, jsontype = stage.object, stage.array, stage.jsontype
local NULL = stage.null

local function codec()
  local ok, json = pcall(require, "luabatch.json")
  if ok and type(json) == "table" and json.encode and json.decode then return json, true end
  return require "cjson", false
end

---------------------------------------------------------------------------
-- Copying what JSON can hold
---------------------------------------------------------------------------

local function keystr(k)
  if type(k) == "number" then return "[" .. tostring(k) .. "]" end
  return "." .. tostring(k)
end

-- Deep copy of v keeping only JSON-able values; JSON shape markers are kept
-- (other metatables are not).  dropped: list of paths left out.
local function clean(v, path, dropped, active)
  local t = type(v)
  if t == "string" or t == "boolean" then return v end
  if t == "number" then
    if v ~= v or v == math.huge or v == -math.huge then
      dropped[#dropped + 1] = path
      return nil
    end
    return v
  end
  if v == NULL then return v end
  if t ~= "table" then
    dropped[#dropped + 1] = path
    return nil
  end
  if active[v] then
    dropped[#dropped + 1] = path .. " (cycle)"
    return nil
  end
  active[v] = true
  local c = {}
  local kind = jsontype(v)
  if kind == "array" then setmetatable(c, getmetatable(v))
  elseif kind == "object" then object(c) end
  for k, x in pairs(v) do
    local kt = type(k)
    local p = path .. keystr(k)
    if kt == "string" or (kt == "number" and k == k and k ~= math.huge and k ~= -math.huge) then
      local cx = clean(x, p, dropped, active)
      if cx ~= nil then c[k] = cx end
    else
      dropped[#dropped + 1] = p
    end
  end
  active[v] = nil
  return c
end

local function is_list(t)
  if type(t) ~= "table" then return false end
  local n = 0
  for k in pairs(t) do
    if type(k) ~= "number" or k < 1 or k ~= floor(k) then return false end
    n = n + 1
  end
  return n == #t
end

local function as_object(t)
  if type(t) ~= "table" then return object() end
  if getmetatable(t) == nil then object(t) end
  return t
end

---------------------------------------------------------------------------
-- build
---------------------------------------------------------------------------

local function need_string(o, field)
  if type(o[field]) ~= "string" or o[field] == "" then
    error(str_format("bad argument #1 to 'build' (%s: non-empty string expected, got %s)", field,
      type(o[field])), 3)
  end
end

--- Build a bundle table (see the header) -> bundle, dropped paths.
function _M.build(o)
  if type(o) ~= "table" then
    error("bad argument #1 to 'build' (table expected, got " .. type(o) .. ")", 2)
  end
  need_string(o, "run_id")
  need_string(o, "job_id")
  need_string(o, "results")
  if type(o.jobdef) ~= "table" then
    error("bad argument #1 to 'build' (jobdef: table expected, got " .. type(o.jobdef) .. ")", 2)
  end
  local results = o.results
  if not str_find(results, "^s3://[^/]+/?") then
    error("bad argument #1 to 'build' (results: s3://bucket/prefix/ expected, got " .. results .. ")", 2)
  end
  if str_sub(results, -1) ~= "/" then results = results .. "/" end

  local dropped = {}
  -- what never goes: runs_on.with (credentials), strategy.key_order
  local jd = o.jobdef
  local src = {}
  for k, v in pairs(jd) do src[k] = v end
  if type(jd.runs_on) == "table" then
    local ro = {}
    for k, v in pairs(jd.runs_on) do if k ~= "with" then ro[k] = v end end
    if jd.runs_on.with ~= nil then dropped[#dropped + 1] = "job.runs_on.with" end
    src.runs_on = ro
  end
  if type(jd.strategy) == "table" and jd.strategy.key_order ~= nil then
    local s = {}
    for k, v in pairs(jd.strategy) do if k ~= "key_order" then s[k] = v end end
    dropped[#dropped + 1] = "job.strategy.key_order"
    src.strategy = s
  end
  local job = clean(src, "job", dropped, {})
  job.stages = array(job.stages or {})
  if job.needs ~= nil and type(job.needs) == "table" then array(job.needs) end

  local strategies = o.strategies
  if strategies == nil then
    local serr
    strategies, serr = require("luabatch.workflow.job").strategies(jd)
    if not strategies then
      error("bad argument #1 to 'build' (strategies: " .. tostring(serr) .. ")", 2)
    end
  end
  if type(strategies) ~= "table" or strategies[1] == nil then
    error("bad argument #1 to 'build' (strategies: non-empty list expected)", 2)
  end
  local combos = array()
  for i, c in ipairs(strategies) do
    if type(c) ~= "table" or (type(c.id) ~= "string" and type(c.id) ~= "number") then
      error(str_format("bad argument #1 to 'build' (strategies[%d]: {id, values} expected)", i), 2)
    end
    local values = clean(c.values or {}, str_format("strategies[%d].values", i), dropped, {})
    combos[i] = { id = tostring(c.id), values = object(values) }
  end

  local context = o.context or {}
  local params = as_object(clean(context.params or {}, "context.params", dropped, {}))
  local jobs = object()
  local given = context.jobs or {}
  for _, need in ipairs(jd.needs or {}) do
    if given[need] ~= nil then
      jobs[need] = clean(given[need], "context.jobs." .. tostring(need), dropped, {})
    end
  end

  local t = {
    format = _M.FORMAT,
    run_id = o.run_id,
    workflow = tostring(o.workflow or ""),
    job_id = o.job_id,
    job = as_object(job),
    context = { params = params, jobs = jobs },
    strategies = combos,
    results = results,
  }
  return t, dropped
end

---------------------------------------------------------------------------
-- encode / decode
---------------------------------------------------------------------------

--- JSON text of a bundle (sorted keys with luabatch.json).
function _M.encode(t)
  if type(t) ~= "table" then
    error("bad argument #1 to 'encode' (table expected, got " .. type(t) .. ")", 2)
  end
  local json = codec()
  return json.encode(t)
end

local function bad(name, field, fmt, ...)
  return nil, str_format("%s: %s: " .. fmt, name, field, ...), "EBUNDLE"
end

local function tname(v)
  if v == NULL then return "null" end
  if type(v) == "table" then return is_list(v) and next(v) ~= nil and "array" or "object" end
  return type(v)
end

--- Parse and validate bundle text -> bundle | nil, msg, "EBUNDLE".
function _M.decode(s, name)
  name = name or "bundle"
  if type(s) ~= "string" then
    return nil, str_format("%s: not a text (%s)", name, type(s)), "EBUNDLE"
  end
  local json, ours = codec()
  local t, err
  if ours then
    t, err = json.decode(s, name)
  else
    local ok, v = pcall(json.decode, s)
    if ok then t = v else err = str_format("%s: %s", name, tostring(v)) end
  end
  if t == nil then
    err = tostring(err or "invalid JSON")
    if not str_find(err, name, 1, true) then err = name .. ": " .. err end
    return nil, err, "EBUNDLE"
  end
  if type(t) ~= "table" or is_list(t) and next(t) ~= nil then
    return nil, str_format("%s: not a bundle (a JSON %s, expected an object)", name, tname(t)), "EBUNDLE"
  end
  if t.format ~= _M.FORMAT then
    return bad(name, "format", "expected %q, got %s", _M.FORMAT,
      type(t.format) == "string" and str_format("%q", t.format) or tname(t.format))
  end
  for _, f in ipairs({ "run_id", "job_id" }) do
    if type(t[f]) ~= "string" or t[f] == "" then
      return bad(name, f, "a non-empty string is required, got %s", tname(t[f]))
    end
  end
  if t.workflow ~= nil and type(t.workflow) ~= "string" then
    return bad(name, "workflow", "a string is required, got %s", tname(t.workflow))
  end
  if type(t.job) ~= "table" then
    return bad(name, "job", "an object is required, got %s", tname(t.job))
  end
  if type(t.job.stages) ~= "table" or not is_list(t.job.stages) then
    return bad(name, "job.stages", "a list is required, got %s", tname(t.job.stages))
  end
  for i, st in ipairs(t.job.stages) do
    if type(st) ~= "table" then
      return bad(name, str_format("job.stages[%d]", i), "an object is required, got %s", tname(st))
    end
  end
  local ss = t.strategies
  if type(ss) ~= "table" or not is_list(ss) or ss[1] == nil then
    return bad(name, "strategies", "a non-empty list is required, got %s",
      type(ss) == "table" and (ss[1] == nil and "an empty one" or "an object") or tname(ss))
  end
  local seen = {}
  for i, c in ipairs(ss) do
    local f = str_format("strategies[%d]", i)
    if type(c) ~= "table" then return bad(name, f, "an object {id, values} is required, got %s", tname(c)) end
    if type(c.id) ~= "string" or c.id == "" then
      return bad(name, f .. ".id", "a non-empty string is required, got %s", tname(c.id))
    end
    if seen[c.id] then return bad(name, f .. ".id", "duplicate strategy id %q", c.id) end
    seen[c.id] = true
    if type(c.values) ~= "table" or (is_list(c.values) and next(c.values) ~= nil) then
      return bad(name, f .. ".values", "an object is required, got %s", tname(c.values))
    end
    if getmetatable(c.values) == nil or jsontype(c.values) == "array" then
      setmetatable(c.values, nil)
      object(c.values)
    end
  end
  if type(t.results) ~= "string" or not str_find(t.results, "^s3://[^/]+/") then
    return bad(name, "results", "an s3://bucket/prefix/ URL is required, got %s",
      type(t.results) == "string" and str_format("%q", t.results) or tname(t.results))
  end
  if t.context == nil then t.context = {} end
  if type(t.context) ~= "table" then
    return bad(name, "context", "an object is required, got %s", tname(t.context))
  end
  for _, f in ipairs({ "params", "jobs" }) do
    local v = t.context[f]
    if v == nil then
      t.context[f] = object()
    elseif type(v) ~= "table" or (is_list(v) and next(v) ~= nil) then
      return bad(name, "context." .. f, "an object is required, got %s", tname(v))
    end
  end
  return t
end

---------------------------------------------------------------------------
-- Selecting a strategy
---------------------------------------------------------------------------

--- The combo { id, values } for a strategy id (string) or a 0-based index
-- (number, the array child index) -> combo | nil, msg.
function _M.strategy(t, sel)
  if type(t) ~= "table" or type(t.strategies) ~= "table" then
    error("bad argument #1 to 'strategy' (bundle expected)", 2)
  end
  local ss = t.strategies
  if type(sel) == "number" then
    if sel ~= floor(sel) or sel < 0 or sel >= #ss then
      return nil, str_format("strategy index %s is out of range (the bundle has %d strateg%s: 0..%d)",
        tostring(sel), #ss, #ss == 1 and "y" or "ies", #ss - 1)
    end
    return ss[floor(sel) + 1]
  end
  if type(sel) ~= "string" then
    error("bad argument #2 to 'strategy' (string id or number index expected, got " .. type(sel) .. ")", 2)
  end
  local ids = {}
  for _, c in ipairs(ss) do
    if c.id == sel then return c end
    ids[#ids + 1] = c.id
  end
  if #ids > 8 then
    local n = #ids
    ids = { ids[1], ids[2], ids[3], ids[4], ids[5], ids[6], ids[7], ids[8] }
    ids[9] = str_format("... %d more", n - 8)
  end
  return nil, str_format("no strategy %q in the bundle (strategies: %s)", sel, table.concat(ids, ", "))
end

---------------------------------------------------------------------------
-- Secret check (tests, and a guard before uploading)
---------------------------------------------------------------------------

--- true when no string (key or value) anywhere in t equals or contains one
-- of the secrets; else false and the path of the first hit.  t may be a
-- string (the encoded bundle).  Empty secrets are ignored.
function _M.secret_free(t, secrets)
  if type(secrets) == "string" then secrets = { secrets } end
  if type(secrets) ~= "table" then
    error("bad argument #2 to 'secret_free' (list of strings expected)", 2)
  end
  local list = {}
  for _, s in pairs(secrets) do
    if type(s) == "string" and s ~= "" then list[#list + 1] = s end
  end
  local function hit(s)
    for _, sec in ipairs(list) do
      if str_find(s, sec, 1, true) then return true end
    end
    return false
  end
  local seen = {}
  local function walk(v, path)
    local ty = type(v)
    if ty == "string" then
      if hit(v) then return path end
    elseif ty == "table" then
      if seen[v] then return nil end
      seen[v] = true
      local keys = {}
      for k in pairs(v) do keys[#keys + 1] = k end
      tbl_sort(keys, function(a, b)
        if type(a) ~= type(b) then return type(a) < type(b) end
        if type(a) == "string" or type(a) == "number" then return a < b end
        return tostring(a) < tostring(b)
      end)
      for _, k in ipairs(keys) do
        local p = path .. keystr(k)
        if type(k) == "string" and hit(k) then return p end
        local r = walk(v[k], p)
        if r then return r end
      end
    end
    return nil
  end
  local p = walk(t, "$")
  if p then return false, p end
  return true
end

_M._clean = clean          -- for specs
_M._is_list = is_list

return _M
