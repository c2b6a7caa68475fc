-- luabatch.runner.aws_batch.bundle: the document a remote task runs from.
--
--   local bundle = require "luabatch.runner.aws_batch.bundle"
--   local files, notes = bundle.collect_files(jobdef, env [, { max_bytes =, secrets = }])
--   local t, dropped = bundle.build{ run_id = id, workflow = model.name, job_id = "count",
--                                    jobdef = model.jobs.count, context = wctx,
--                                    strategies = combos, files = files,   -- optional
--                                    results = "s3://bucket/prefix/run/count/" }
--   local text = bundle.encode(t)
--   local t2, msg, code = bundle.decode(text, "s3://bucket/.../bundle.json")
--   local combo, msg = bundle.strategy(t2, "1234567890")   -- or a 0-based index
--   local ok, path = bundle.secret_free(t2, { secret_key, session_token })
--
-- Format "luabatch-bundle/1":
--   { format, run_id, workflow, job_id,
--     job = the job definition, deep-copied, without runs_on.with (credentials),
--           strategy.key_order and anything JSON cannot hold,
--     context = { params = {...}, jobs = { <records of the jobs in job.needs> } },
--     strategies = [ { id = "<sid>" | "EMPTY", values = {...} }, ... ],  -- array child i: [i + 1]
--     results = "s3://<bucket>/<run prefix>/<job_id>/",   (always ends in "/")
--     files = { registry = { ["<rel>.lua"] = "<source>" },          -- optional
--               workflows = { ["<name>"] = "<yaml source>" } } }
-- files: the registry modules of literal `call:` targets and the workflow files
-- of literal `trigger:` names, nested stages and triggered workflows included;
-- notes = what was left to the image, one line each.
-- Errors: build() raises on misuse (its second return lists the paths dropped:
-- "job.runs_on.with", ...); decode() -> nil, "<name>: <field>: <what is wrong>",
-- "EBUNDLE"; collect_files() -> nil, msg (over max_bytes, default 4 MiB; a
-- file holding one of opts.secrets).  A bundle's JSON is at most MAX_BYTES
-- (256 MiB): build() raises past it, decode() refuses a longer text unread.
-- Why and what is left out: docs/design.md.

local stage = require "luabatch.workflow.stage"

local _M = { _VERSION = "0.1.0", FORMAT = "luabatch-bundle/1", MAX_FILES_BYTES = 4 * 1024 * 1024,
  MAX_BYTES = 256 * 1024 * 1024 }

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
  if o.files ~= nil then
    local files, ferr = _M.check_files(o.files)
    if not files then error("bad argument #1 to 'build' (files: " .. ferr .. ")", 2) end
    if files.registry or files.workflows then t.files = files end
  end
  local size = #_M.encode(t)
  if size > _M.MAX_BYTES then
    error(str_format("%d bytes of JSON, more than the limit of %d bytes for a bundle", size, _M.MAX_BYTES), 0)
  end
  return t, dropped
end

---------------------------------------------------------------------------
-- files: registry modules and workflow sources for call/trigger stages
---------------------------------------------------------------------------

-- A registry key is a relative path of plain components ending in .lua.
local function bad_registry_key(k)
  if type(k) ~= "string" or k == "" then return "a non-empty string is required" end
  if str_sub(k, 1, 1) == "/" then return "must be a relative path" end
  if not str_find(k, "%.lua$") then return "must end in .lua" end
  for part in (k .. "/"):gmatch("([^/]*)/") do
    if part == "" or part == "." or part == ".." then
      return "must not hold empty, '.' or '..' components"
    end
    if not str_find(part, "^[%w_%-%.]+$") then return "may hold only letters, digits, '_', '-', '.'" end
  end
  return nil
end

--- Check a files table (see the header) -> a copy with only non-empty maps
-- (object-marked) | nil, "<field>: <what is wrong>".
function _M.check_files(f)
  if type(f) ~= "table" or (is_list(f) and next(f) ~= nil) then
    return nil, str_format("an object {registry, workflows} is required, got %s", type(f))
  end
  local out = {}
  for k in pairs(f) do
    if k ~= "registry" and k ~= "workflows" then
      return nil, str_format("unknown field %q (registry and workflows are known)", tostring(k))
    end
  end
  for _, kind in ipairs({ "registry", "workflows" }) do
    local m = f[kind]
    if m ~= nil then
      if type(m) ~= "table" or (is_list(m) and next(m) ~= nil) then
        return nil, str_format("%s: an object of names to sources is required, got %s", kind, type(m))
      end
      local c = object()
      for k, v in pairs(m) do
        local why
        if kind == "registry" then
          why = bad_registry_key(k)
        elseif type(k) ~= "string" or k == "" then
          why = "a non-empty workflow name is required"
        end
        if why then return nil, str_format("%s[%s]: %s", kind, str_format("%q", tostring(k)), why) end
        if type(v) ~= "string" then
          return nil, str_format("%s[%q]: the source must be a string, got %s", kind, k, type(v))
        end
        c[k] = v
      end
      if next(c) ~= nil then out[kind] = c end
    end
  end
  return out
end

local function read_all(path)
  local fh, err = io.open(path, "rb")
  if not fh then return nil, tostring(err) end
  local s = fh:read("a")
  fh:close()
  if s == nil then return nil, "cannot read " .. path end
  return s
end

local SKIP_FIELDS = { pos = true, with = true, args = true, params = true, vars = true }

-- Every call/trigger stage below `stages` (nested kinds included), in order.
local function each_target(stages, fn)
  local seen = {}
  local function walk(v)
    if type(v) ~= "table" or seen[v] then return end
    seen[v] = true
    if type(v.kind) == "string" then
      if v.kind == "call" and type(v.uses) == "string" then fn("call", v.uses, v) end
      if v.kind == "trigger" and type(v.trigger) == "string" then fn("trigger", v.trigger, v) end
    end
    local keys = {}
    for k, x in pairs(v) do
      if type(x) == "table" and not SKIP_FIELDS[k] then keys[#keys + 1] = k end
    end
    tbl_sort(keys, function(a, b)
      if type(a) ~= type(b) then return type(a) < type(b) end
      return a < b
    end)
    for _, k in ipairs(keys) do walk(v[k]) end
  end
  walk(stages)
end

local function has_template(s) return str_find(s, "${{", 1, true) ~= nil end

--- Gather the files the job's call/trigger stages need (see the header)
-- -> files, notes | nil, message.  env: the engine's job env (registry_path,
-- conf, getenv, workflow_name).  opts: max_bytes, secrets (list of strings
-- no file may contain).  notes: what was left to the image, one line each.
-- files is { registry = {...}?, workflows = {...}? } (empty: nothing needed).
function _M.collect_files(jobdef, env, opts)
  if type(jobdef) ~= "table" then
    error("bad argument #1 to 'collect_files' (job definition expected, got " .. type(jobdef) .. ")", 2)
  end
  if type(env) ~= "table" then
    error("bad argument #2 to 'collect_files' (env expected, got " .. type(env) .. ")", 2)
  end
  opts = opts or {}
  local call = require "luabatch.workflow.stages.call"
  local getenv = env.getenv or os.getenv
  local registry = env.registry_path or getenv("LUABATCH_REGISTRY") or "./registry"
  local conf = env.conf or "."
  local max = opts.max_bytes or _M.MAX_FILES_BYTES
  local secrets = opts.secrets or {}
  local reg, wfs = object(), object()
  local notes = {}
  local total = 0
  local failure

  local function take(kind, key, local_path, text)
    if not _M.secret_free(text, secrets) then
      failure = str_format("%s file '%s' (%s) contains a credential (a secret key or session token "
        .. "of this run); refusing to upload it", kind, key, local_path)
      return false
    end
    total = total + #text
    if total > max then
      failure = str_format("%s file '%s' (%s, %d bytes) takes the bundled files to %d bytes, over the "
        .. "limit of %d", kind, key, local_path, #text, total, max)
      return false
    end
    return true
  end

  local scanned
  local function find_workflow(name)
    if not scanned then
      local all, err = require("luabatch.workflow.discover").scan(conf)
      if not all then return nil, err end
      scanned = all
    end
    for _, e in ipairs(scanned) do
      if e.name == name then return e end
    end
    return nil, str_format("not found in conf dir '%s'", conf)
  end

  local visiting = {}
  if type(env.workflow_name) == "string" then visiting[env.workflow_name] = true end
  for k in pairs(env.parents or {}) do visiting[k] = true end

  local visit_stages
  local function on_target(kind, target, st)
    if failure then return end
    local where = str_format("stage '%s'", tostring(st.name or st.id or "?"))
    if has_template(target) then
      notes[#notes + 1] = str_format("%s: %s '%s' is templated: not bundled (the image must have it)",
        where, kind, target)
      return
    end
    if kind == "call" then
      local path = call.parse_uses(target)
      if not path then
        notes[#notes + 1] = str_format("%s: call '%s' is not path/func@tag: not bundled", where, target)
        return
      end
      local file, rel = call.resolve(registry, path)
      if not file then
        notes[#notes + 1] = str_format("%s: call '%s': %s: not bundled", where, target, rel)
        return
      end
      rel = rel:gsub("/+", "/"):gsub("^/", "")
      if reg[rel] ~= nil then return end
      if bad_registry_key(rel) then
        notes[#notes + 1] = str_format("%s: call '%s': %s cannot be bundled (%s)", where, target, file,
          bad_registry_key(rel))
        return
      end
      local text, rerr = read_all(file)
      if not text then
        failure = str_format("registry file '%s' (%s): %s", rel, file, rerr)
        return
      end
      if take("registry", rel, file, text) then reg[rel] = text end
    else
      if visiting[target] or wfs[target] ~= nil then return end
      local e, ferr = find_workflow(target)
      if not e then
        notes[#notes + 1] = str_format("%s: trigger '%s': %s: not bundled", where, target, ferr)
        return
      end
      local text, rerr = read_all(e.path)
      if not text then
        failure = str_format("workflow file '%s' (%s): %s", target, e.path, rerr)
        return
      end
      if not take("workflow", target, e.path, text) then return end
      wfs[target] = text
      local model, lerr = require("luabatch.workflow.load").file(e.path, { name = target, getenv = getenv })
      if not model then
        notes[#notes + 1] = str_format("%s: trigger '%s': %s: its own stages were not searched", where,
          target, tostring(lerr))
        return
      end
      visiting[target] = true
      for _, id in ipairs(model.job_order or {}) do
        local j = model.jobs[id]
        if j then visit_stages(j.stages) end
      end
      visiting[target] = nil
    end
  end
  visit_stages = function(stages)
    if failure or type(stages) ~= "table" then return end
    each_target(stages, on_target)
  end
  visit_stages(jobdef.stages)
  if failure then return nil, failure end
  local files = {}
  if next(reg) ~= nil then files.registry = reg end
  if next(wfs) ~= nil then files.workflows = wfs end
  return files, notes
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
  if #s > _M.MAX_BYTES then
    return nil, str_format("%s: %d bytes exceeds the limit of %d bytes for a bundle", name, #s, _M.MAX_BYTES),
      "EBUNDLE"
  end
  local json, ours = codec()
  local t, err
  if ours then
    t, err = json.decode(s, name, { max = _M.MAX_BYTES })
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
  if t.files ~= nil then
    local files, ferr = _M.check_files(t.files)
    if not files then return bad(name, "files", "%s", ferr) end
    t.files = files
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

--- The credential values of a run that no uploaded file may contain: the
-- with: keys, the AWS_* environment ones and, when a provider with :get()
-- is given (its answer cached by then), the credentials it holds.  Values
-- shorter than 8 characters are left out (they would match by chance).
function _M.secrets_of(with, getenv, provider)
  local out = {}
  local function add(v)
    if type(v) == "string" and #v >= 8 then out[#out + 1] = v end
  end
  with = type(with) == "table" and with or {}
  add(with.aws_secret_access_key)
  add(with.aws_session_token)
  if type(getenv) == "function" then
    add(getenv("AWS_SECRET_ACCESS_KEY"))
    add(getenv("AWS_SESSION_TOKEN"))
    add(getenv("AWS_SECURITY_TOKEN"))
  end
  if type(provider) == "table" and type(provider.get) == "function" then
    local ok, c = pcall(provider.get, provider)
    if ok and type(c) == "table" then
      add(c.secret_key)
      add(c.session_token)
    end
  end
  return out
end

--- upload_text(t, secrets) -> the bundle's JSON text | nil, where: what a
-- runner uploads, refused when a credential of this client (secrets:
-- secrets_of's, plus the access key id) is anywhere in it.
function _M.upload_text(t, secrets)
  local text = _M.encode(t)
  local clean, where = _M.secret_free(text, secrets)
  if not clean then return nil, where end
  return text
end

_M._clean = clean          -- for specs
_M._is_list = is_list

return _M
