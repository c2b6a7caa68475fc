-- luabatch.workflow.load: read a workflow YAML file (or find one by name in a
-- --conf directory) and turn it into a validated model.
--
-- Every problem is reported as "FILE:LINE:COL: what is wrong" (the position of
-- the offending key or value, from core.yaml_load_file's positions table) and
-- returned as nil, msg, "EINVAL".  Nothing is run here: templates and `if:`
-- expressions are only syntax-checked; a template naming a missing path is
-- found when the engine renders it.
--
-- Model (see the project notes for the consumers):
--   { name, desc, file, line, col, params = {name -> decl}, param_order,
--     param_pos = {name -> {line, col} of its declaration}, params_pos = {line, col} of params:,
--     jobs = {id -> job}, job_order = {ids in YAML order}, tags, on, extras,
--     warnings = {"FILE:L:C: ..."}, pos = positions table (pos[tbl] as core gives it) }
--   job = { id, desc, runs_on = {type, with}, ["if"], stages = {stage...}, retry,
--           trigger_rule, needs = {...}, strategy = nil | { matrix = {k -> {values}},
--           matrix_keys = {k...} (also as matrix_order), include = {{..}}, include_keys = {{k..}},
--           exclude = {{..}}, key_order = fn(map) -> its keys in source order,
--           max_parallel (int or template string), fail_fast, pos }, pos = {file, line, col (of the
--           job's key), keys, values}, needs_pos = {{line, col}...} }
--   stage = { kind, id, name, desc, ["if"], retry, extras, pos = {file, line, col, keys, values},
--             <kind fields, YAML names with '-' -> '_'> }
--     empty: echo, sleep          bash: bash, env         py: run, vars
--     lua: lua, vars              call: uses, with        trigger: trigger, params
--     raise: raise                parallel: parallel = {branch -> {stages}}, branch_order, max_workers
--     foreach: foreach, stages, concurrent, use_index_as_key
--     case: case, match = {{case = v | nil, is_else = bool, stages, pos}}, skip_not_match
--     until: item, until, stages, max_loop

-- Split: this module builds the workflow/job model and is the public entry;
-- luabatch.workflow.discover reads files and searches the conf dir,
-- luabatch.workflow.load_stage validates stages, and
-- luabatch.workflow.load_check holds the shared positioned checks.

local _M = { _VERSION = "0.1.0" }

local core = require "luabatch.core"
local check = require "luabatch.workflow.load_check"
local load_stage = require "luabatch.workflow.load_stage"
local discover = require "luabatch.workflow.discover"
local template = require "luabatch.workflow.template"
local log = require "luabatch.log"

local type, pairs, ipairs, tostring, tonumber = type, pairs, ipairs, tostring, tonumber
local pcall, error = pcall, error
local str_format, str_find, str_gsub, str_match = string.format, string.find, string.gsub, string.match
local tbl_concat, tbl_sort = table.concat, table.sort
local math_floor = math.floor
local NULL = core.null

local fail, warn, protect = check.fail, check.warn, check.protect
local P, keypos, valpos, itempos, key_order = check.P, check.keypos, check.valpos, check.itempos, check.key_order
local is_null, is_seq, is_map, kind_of, is_scalar, show = check.is_null, check.is_seq, check.is_map,
  check.kind_of, check.is_scalar, check.show
local check_expression, substitute_env_deep = check.check_expression, check.substitute_env_deep
local want_str, want_bool, want_int, want_map, want_seq = check.want_str, check.want_bool, check.want_int,
  check.want_map, check.want_seq
local allowed_list, check_keys, set = check.allowed_list, check.check_keys, check.set
local parse_stages = load_stage.parse_stages
local read_yaml, scan_conf = discover.read_yaml, discover.scan



-- runs-on -------------------------------------------------------------------
-- The type must be a registered runner (luabatch.runner); its with: fields
-- are checked against the runner's schema (luabatch.runner.schema): an
-- unknown field is an error, a literal value of the wrong kind too; a
-- value holding a `${{ }}` template is checked when it is rendered.

-- The runner registry (types, with: schemas): luabatch.runner sets it when
-- loaded (the runners are the layer above); without one only `local` loads.
local runners = { known = function(t) return t == "local" end, types = function() return { "local" } end,
                  schema = function() return nil end, max_parallel = function() return nil end }
function _M.use_runners(reg) runners = reg end

local RUNS_ON_KNOWN = set({ "self_hosted", "docker", "container", "gcp_batch", "azure_batch", "cloud_batch" })

local function check_with_field(cx, spec, k, v, p, what)
  local kind = spec.fields[k]
  if type(v) == "string" and template.has(v) then return v end
  local nv, expect, sub = runners.value(kind, v, spec)
  if nv == nil then
    if sub ~= nil then
      local at = type(v) == "table" and v[sub] ~= nil and valpos(cx, v, sub) or nil
      fail(cx, at or p, "%s: '%s.%s' must be %s", what, k, tostring(sub), expect)
    end
    fail(cx, p, "%s: '%s' must be %s, got %s", what, k, expect, show(v))
  end
  return nv
end

local function parse_runs_on(cx, job, what)
  local raw = job["runs-on"]
  local rp = valpos(cx, job, "runs-on")
  if is_null(raw) then return { type = "local", with = {} } end
  local typ, with, tp
  if type(raw) == "string" then
    typ, with, tp = raw, nil, rp
  elseif is_map(cx, raw) then
    check_keys(cx, raw, { type = true, with = true }, what .. " runs-on")
    typ = raw.type
    tp = valpos(cx, raw, "type")
    if is_null(typ) then fail(cx, rp, "%s: runs-on needs a 'type' (local or aws_batch)", what) end
    if type(typ) ~= "string" then fail(cx, tp, "%s: runs-on 'type' must be a string", what) end
    with = raw.with
  else
    fail(cx, rp, "%s: runs-on must be a type name or a mapping with 'type' and 'with'", what)
  end
  if not runners.known(typ) then
    local list = table.concat(runners.types(), ", ")
    if RUNS_ON_KNOWN[typ] then
      fail(cx, tp, "runs-on type '%s' is not supported by this build (supported: %s)", typ, list)
    end
    fail(cx, tp, "unknown runs-on type '%s' (supported: %s)", typ, list)
  end
  local spec = runners.schema(typ)
  local wp = type(raw) == "table" and valpos(cx, raw, "with") or rp
  if is_null(with) then with = nil end
  if with ~= nil and not is_map(cx, with) then fail(cx, wp, "%s: runs-on 'with' must be a mapping", what) end
  local out = {}
  if with then
    local order = key_order(cx, with)
    for _, k in ipairs(order) do
      local kp, vp = keypos(cx, with, k), valpos(cx, with, k)
      local why = spec and spec.ignored and spec.ignored[k]
      if why then
        warn(cx, kp, "%s: runs-on.with key '%s' is ignored by %s (%s)", what, tostring(k), typ, why)
      elseif spec and not spec.fields[k] then
        local names = {}
        for f in pairs(spec.fields) do names[#names + 1] = f end
        table.sort(names)
        fail(cx, kp, "%s: runs-on.with key '%s' is not a field of %s (fields: %s)", what, tostring(k), typ,
          table.concat(names, ", "))
      end
      local v = not why and substitute_env_deep(cx, with[k], vp, what .. ": runs-on.with." .. tostring(k))
      if why then
        -- nothing kept
      elseif not spec then
        out[k] = v
      elseif not is_null(v) then
        out[k] = check_with_field(cx, spec, k, v, vp, what .. ": runs-on.with")
      end
    end
  end
  if spec then
    for _, r in ipairs(spec.required or {}) do
      local name, alias = r, nil
      if type(r) == "table" then name, alias = r[1], r[2] end
      if out[name] == nil and (alias == nil or out[alias] == nil) then
        fail(cx, wp, "%s: runs-on %s needs with.%s", what, typ, name)
      end
    end
    for _, name in ipairs(spec.secrets or {}) do log.add_secret(out[name]) end
  end
  return { type = typ, with = out }
end


-- Strategy (matrix values may be any scalar) --------------------------------

local function scalar_map(cx, m, p, what)
  if not is_map(cx, m) then fail(cx, p, "%s must be a mapping of names to scalars", what) end
  local keys = key_order(cx, m)
  for _, k in ipairs(keys) do
    local v, vp = m[k], valpos(cx, m, k)
    if not is_scalar(v) then
      fail(cx, vp, "%s: value of '%s' must be a scalar, got %s", what, tostring(k), kind_of(cx, v, vp))
    end
  end
  return keys
end

-- max-parallel's bound at load is the bound of the runner the job will run
-- on: its runs-on type, or opts.runs_on (the CLI's --runs-on) when given --
-- local 9 (ddeutil-workflow's), aws_batch 10000 (luabatch.runner).  A
-- template is checked when rendered (luabatch.workflow.job.max_parallel,
-- with the runner's bound), and so is a value the load let through for a
-- runner the job does not run on after all.
local function max_parallel_bound(cx, typ)
  typ = cx.runs_on or typ or "local"
  local cap = runners.max_parallel and runners.max_parallel(typ)
  return cap or require("luabatch.workflow.job").MAX_PARALLEL, typ
end

local function parse_strategy(cx, job, what, runs_on)
  local raw = want_map(cx, job, "strategy", what)
  if not raw then return nil end
  local sw = what .. " strategy"
  check_keys(cx, raw, set({ "matrix", "include", "exclude", "max-parallel", "fail-fast" }), sw)
  local sp = P(cx, raw)
  local s = { matrix = {}, matrix_keys = {}, include = {}, include_keys = {}, exclude = {},
    pos = { file = cx.file, line = sp and sp.line or 1, col = sp and sp.col or 1 } }
  local m = want_map(cx, raw, "matrix", sw)
  if m then
    for _, k in ipairs(key_order(cx, m)) do
      local list, lp = m[k], valpos(cx, m, k)
      if type(k) ~= "string" then fail(cx, keypos(cx, m, k), "%s: matrix key %s must be a name", sw, show(k)) end
      if not is_seq(cx, list) then
        fail(cx, lp, "%s: matrix '%s' must be a list of values, got %s", sw, k, kind_of(cx, list, lp))
      end
      for i = 1, #list do
        local v, ip = list[i], itempos(cx, list, i)
        if not is_scalar(v) then
          fail(cx, ip, "%s: matrix '%s' item %d must be a scalar, got %s", sw, k, i, kind_of(cx, v, ip))
        end
      end
      s.matrix[k] = list
      s.matrix_keys[#s.matrix_keys + 1] = k
    end
  end
  local inc = want_seq(cx, raw, "include", sw)
  if inc then
    for i = 1, #inc do
      s.include_keys[i] = scalar_map(cx, inc[i], itempos(cx, inc, i), sw .. " include entry " .. i)
      s.include[i] = inc[i]
    end
  end
  local exc = want_seq(cx, raw, "exclude", sw)
  if exc then
    for i = 1, #exc do
      scalar_map(cx, exc[i], itempos(cx, exc, i), sw .. " exclude entry " .. i)
      for k in pairs(exc[i]) do
        if #s.matrix_keys > 0 and s.matrix[k] == nil then
          fail(cx, keypos(cx, exc[i], k), "%s: exclude key '%s' is not a matrix key", sw, tostring(k))
        end
      end
      s.exclude[i] = exc[i]
    end
  end
  s.matrix_order = s.matrix_keys   -- the name luabatch.workflow.matrix reads
  local pos = cx.pos
  s.key_order = function(t)          -- source key order of matrix/include/exclude maps
    local p = pos[t]
    if p and p.order then return p.order end
    for i = 1, #s.include do if s.include[i] == t then return s.include_keys[i] end end
    return nil
  end
  local cap, typ = max_parallel_bound(cx, runs_on and runs_on.type)
  local mp = raw["max-parallel"]
  if type(mp) == "number" and mp == math.floor(mp) and mp > cap then   -- the runner's bound, named
    local batch_cap = runners.max_parallel and runners.max_parallel("aws_batch")
    fail(cx, valpos(cx, raw, "max-parallel"), "%s: 'max-parallel' must be between 1 and %d, got %d (runs-on %s%s)",
      sw, cap, mp, typ, (batch_cap and typ ~= "aws_batch") and str_format("; aws_batch allows up to %d", batch_cap) or "")
  end
  s.max_parallel = want_int(cx, raw, "max-parallel", sw, 1, cap, 1, true)
  s.fail_fast = want_bool(cx, raw, "fail-fast", sw, false)
  return s
end


-- Jobs ----------------------------------------------------------------------

local JOB_KEYS = set({ "id", "desc", "runs-on", "if", "stages", "retry", "trigger-rule", "needs", "strategy", "extras" })
local TRIGGER_RULES = set({ "all_success", "all_failed", "all_done", "one_failed", "one_success", "none_failed",
  "none_skipped" })
local JOB_HINTS = { runs_on = "runs-on", trigger_rule = "trigger-rule", condition = "if", max_parallel = "strategy.max-parallel",
  fail_fast = "strategy.fail-fast" }

local function parse_job(cx, id, raw, p, kp)
  local what = "job '" .. id .. "'"
  if not is_map(cx, raw) then fail(cx, p, "%s must be a mapping", what) end
  for _, k in ipairs(key_order(cx, raw)) do
    if not JOB_KEYS[k] then
      local hint = JOB_HINTS[k] and (" (did you mean '" .. JOB_HINTS[k] .. "'?)") or ""
      fail(cx, keypos(cx, raw, k), "unknown key '%s' in %s%s", tostring(k), what, hint)
    end
  end
  local jp = P(cx, raw) or p
  kp = kp or jp
  local job = { id = id, pos = { file = cx.file, line = kp and kp.line or 1, col = kp and kp.col or 1,
    keys = jp and jp.keys, values = jp and jp.values } }
  if not is_null(raw.id) and raw.id ~= id then
    warn(cx, valpos(cx, raw, "id"), "%s: 'id: %s' is ignored: a job's id is its key", what, tostring(raw.id))
  end
  job.desc = want_str(cx, raw, "desc", what)
  job.runs_on = parse_runs_on(cx, raw, what)
  local cond = raw["if"]
  if not is_null(cond) then
    if type(cond) == "string" then
      check_expression(cx, cond, valpos(cx, raw, "if"), what .. ": if")
    elseif type(cond) ~= "boolean" then
      fail(cx, valpos(cx, raw, "if"), "%s: 'if' must be a string expression or true/false", what)
    end
    job["if"] = cond
  end
  job.retry = want_int(cx, raw, "retry", what, 0, 19, 0)
  local rule = raw["trigger-rule"]
  if is_null(rule) then rule = "all_success" end
  if not TRIGGER_RULES[rule] then
    fail(cx, valpos(cx, raw, "trigger-rule"), "%s: unknown trigger-rule %s (one of: %s)", what, show(rule),
      allowed_list(TRIGGER_RULES))
  end
  job.trigger_rule = rule
  local needs = raw.needs
  job.needs, job.needs_pos = {}, {}
  if type(needs) == "string" then
    job.needs[1], job.needs_pos[1] = needs, valpos(cx, raw, "needs")
  elseif not is_null(needs) then
    needs = want_seq(cx, raw, "needs", what)
    for i = 1, #needs do
      local n, np = needs[i], itempos(cx, needs, i)
      if type(n) ~= "string" then fail(cx, np, "%s: needs entries must be job ids, got %s", what, show(n)) end
      job.needs[i], job.needs_pos[i] = n, np
    end
  end
  job.strategy = parse_strategy(cx, raw, what, job.runs_on)
  job.extras = want_map(cx, raw, "extras", what)
  local stages = want_seq(cx, raw, "stages", what)
  job.stages = stages and parse_stages(cx, stages, valpos(cx, raw, "stages"), what) or {}
  return job
end

-- needs must name jobs; a cycle is an error naming it (README Differences, item 4).
local function check_needs(cx, model)
  for _, id in ipairs(model.job_order) do
    local job = model.jobs[id]
    for i, n in ipairs(job.needs) do
      if not model.jobs[n] then
        fail(cx, job.needs_pos[i], "job '%s' needs '%s', which is not a job of this workflow (jobs: %s)", id, n,
          tbl_concat(model.job_order, ", "))
      end
    end
  end
  local state, stack = {}, {}
  local function visit(id)
    state[id] = "open"
    stack[#stack + 1] = id
    local job = model.jobs[id]
    for i, n in ipairs(job.needs) do
      if state[n] == "open" then
        local path, start = {}, nil
        for j = 1, #stack do if stack[j] == n then start = j end end
        for j = start, #stack do path[#path + 1] = stack[j] end
        path[#path + 1] = n
        fail(cx, job.needs_pos[i], "needs cycle: %s", tbl_concat(path, " -> "))
      elseif not state[n] then
        visit(n)
      end
    end
    stack[#stack] = nil
    state[id] = "done"
  end
  for _, id in ipairs(model.job_order) do
    if not state[id] then visit(id) end
  end
end


-- Params --------------------------------------------------------------------

local PARAM_TYPES = set({ "str", "int", "float", "decimal", "date", "datetime", "choice", "map", "array" })

-- Used while luabatch.workflow.params is not there: the declaration's shape.
local function fallback_decl(name, raw)
  if type(raw) == "string" then raw = { type = raw } end
  if type(raw) ~= "table" then return nil, "param '" .. name .. "': declaration must be a type name or a mapping" end
  if not PARAM_TYPES[raw.type] then
    return nil, "param '" .. name .. "': unknown type " .. show(raw.type) .. " (one of: " .. allowed_list(PARAM_TYPES) .. ")"
  end
  local d = { name = name, type = raw.type, desc = raw.desc, default = raw.default, options = raw.options,
    precision = raw.precision }
  if raw.type == "choice" then
    if type(raw.options) ~= "table" or #raw.options == 0 then
      return nil, "param '" .. name .. "': a choice needs a non-empty 'options' list"
    end
    d.required = raw.required == nil and true or raw.required
  else
    d.required = raw.required == true
  end
  return d
end

local function parse_params(cx, body, model)
  local raw = want_map(cx, body, "params", "workflow")
  model.params, model.param_order, model.param_pos = {}, {}, {}
  if not raw then return end
  local bp = valpos(cx, body, "params")
  model.params_pos = { line = bp and bp.line or 1, col = bp and bp.col or 1 }   -- the params: block
  local params = cx.params
  for _, name in ipairs(key_order(cx, raw)) do
    local decl_raw, vp = raw[name], valpos(cx, raw, name)
    if type(name) ~= "string" then fail(cx, keypos(cx, raw, name), "param name %s must be a string", show(name)) end
    if is_null(decl_raw) then fail(cx, vp, "param '%s': missing type", name) end
    local decl, err
    if params and params.parse_decl then
      decl, err = params.parse_decl(name, decl_raw)
    else
      decl, err = fallback_decl(name, decl_raw)
    end
    if not decl then
      local p = vp
      if type(decl_raw) == "table" and type(err) == "string" then
        for k in pairs(decl_raw) do   -- point at the offending field when the message names it
          if type(k) == "string" and str_find(err, "'" .. k .. "'", 1, true) then p = valpos(cx, decl_raw, k) end
        end
        if p == vp and decl_raw.type ~= nil and str_find(err, "type", 1, true) then p = valpos(cx, decl_raw, "type") end
      end
      fail(cx, p, "%s", tostring(err))
    end
    model.params[name] = decl
    model.param_order[#model.param_order + 1] = name
    model.param_pos[name] = { line = vp and vp.line or 1, col = vp and vp.col or 1 }
  end
end


-- Workflow ------------------------------------------------------------------

local TOP_KEYS = set({ "type", "name", "desc", "params", "on", "jobs", "tags", "extras" })

local function build(cx, body, name)
  local bp = P(cx, body)
  local model = { name = name, file = cx.file, line = bp and bp.line or 1, col = bp and bp.col or 1,
    pos = cx.pos, warnings = cx.warnings }
  cx.name = name
  if type(name) == "string" and str_find(name, "${{", 1, true) then
    fail(cx, valpos(cx, body, "name") or bp, "workflow name must not contain a template")
  end
  for _, k in ipairs(key_order(cx, body)) do
    if not TOP_KEYS[k] then warn(cx, keypos(cx, body, k), "unknown workflow key '%s' (ignored)", tostring(k)) end
  end
  if not is_null(body.type) and body.type ~= "Workflow" then
    fail(cx, valpos(cx, body, "type"), "'type' must be Workflow, got %s", show(body.type))
  end
  model.desc = want_str(cx, body, "desc", "workflow")
  model.tags = not is_null(body.tags) and body.tags or nil
  model.on = not is_null(body.on) and body.on or nil
  model.extras = want_map(cx, body, "extras", "workflow") or {}
  parse_params(cx, body, model)
  local jobs = want_map(cx, body, "jobs", "workflow")
  model.jobs, model.job_order = {}, {}
  if jobs then
    for _, id in ipairs(key_order(cx, jobs)) do
      if type(id) ~= "string" then fail(cx, keypos(cx, jobs, id), "job id %s must be a string", show(id)) end
      if str_find(id, "${{", 1, true) then fail(cx, keypos(cx, jobs, id), "job id '%s' must not contain a template", id) end
      model.jobs[id] = parse_job(cx, id, jobs[id], valpos(cx, jobs, id), keypos(cx, jobs, id))
      model.job_order[#model.job_order + 1] = id
    end
  end
  check_needs(cx, model)
  return model
end

local function new_cx(file, pos, opts)
  opts = opts or {}
  return { file = file, pos = pos or {}, getenv = opts.getenv or os.getenv, warnings = {}, runs_on = opts.runs_on,
    template = template, expr = require "luabatch.workflow.expr",
    params = require "luabatch.workflow.params" }
end

local function stem(path)
  local base = str_match(path, "([^/]+)$") or path
  return (str_gsub(base, "%.[yY][aA]?[mM][lL]$", ""))
end

-- Is this body a workflow?  direct: a file given by path also counts a body
-- with `jobs:` and no `type:` (a file given directly needs no `type:`).
local function is_workflow(body, direct)
  if type(body) ~= "table" then return false end
  if body.type == "Workflow" then return true end
  return direct and is_null(body.type) and body.jobs ~= nil
end

-- Pick the workflow body in a loaded document.
local function select_body(cx, doc, want, direct)
  if type(doc) ~= "table" or not is_map(cx, doc) then
    fail(cx, P(cx, doc), "a workflow file must hold a mapping, got %s", kind_of(cx, doc, nil))
  end
  if is_workflow(doc, direct) or (direct and doc.type ~= nil) then
    local name = doc.name
    if is_null(name) then name = direct and stem(cx.file) or nil end
    if want and name ~= want then return nil end
    if type(name) ~= "string" then fail(cx, valpos(cx, doc, "name"), "workflow 'name' must be a string") end
    return doc, name
  end
  if want then
    local body = doc[want]
    if is_workflow(body, direct) then return body, want end
    return nil
  end
  local found = {}
  for _, k in ipairs(key_order(cx, doc)) do
    if is_workflow(doc[k], direct) then found[#found + 1] = k end
  end
  if #found == 1 then return doc[found[1]], found[1] end
  if #found == 0 then
    fail(cx, P(cx, doc), "no workflow here: expected 'type: Workflow' with 'jobs:' (or workflows keyed by name)")
  end
  fail(cx, P(cx, doc), "this file holds several workflows (%s): name the one to run", tbl_concat(found, ", "))
end

local function load_doc(file, doc, pos, opts)
  local cx = new_cx(file, pos, opts)
  return protect(function()
    local body, name = select_body(cx, doc, opts and opts.name, true)
    if not body then
      fail(cx, P(cx, doc), "no workflow named '%s' in this file", tostring(opts.name))
    end
    return build(cx, body, name)
  end)
end

--- Load the workflow in the file at `path`.
-- opts: { name = workflow to pick when the file keys several by name,
--         getenv = fn(name) (default os.getenv),
--         runs_on = the runs-on type every job will run on (the CLI's
--           --runs-on): the bound of max-parallel is that runner's }.
-- Returns model | nil, "FILE:LINE:COL: msg", "EINVAL".
function _M.file(path, opts)
  if type(path) ~= "string" then error("bad argument #1 to 'file' (string expected)", 2) end
  local doc, pos = read_yaml(path)
  if doc == nil and type(pos) == "string" then return nil, pos, "EINVAL" end
  return load_doc(path, doc, pos, opts)
end

--- Load a workflow from YAML text; `name` is the file name used in messages
-- (default "workflow.yml").  Same opts and results as load.file.
function _M.string(text, name, opts)
  if type(text) ~= "string" then error("bad argument #1 to 'string' (string expected)", 2) end
  name = name or "workflow.yml"
  local doc, pos = read_yaml(nil, text, name)
  if doc == nil and type(pos) == "string" then return nil, pos, "EINVAL" end
  return load_doc(name, doc, pos, opts)
end


-- Conf directory (one workflow per file, or many keyed by name) --------------

--- Names of the workflows (type: Workflow) found under conf_dir, sorted.
-- Returns list | nil, msg, "EINVAL".
function _M.workflow_names(conf_dir)
  if type(conf_dir) ~= "string" then error("bad argument #1 to 'workflow_names' (string expected)", 2) end
  local all, err = scan_conf(conf_dir)
  if not all then return nil, err, "EINVAL" end
  local seen, names = {}, {}
  for _, e in ipairs(all) do
    if not seen[e.name] then seen[e.name] = true; names[#names + 1] = e.name end
  end
  tbl_sort(names)
  return names
end

--- Find the workflow `name` under conf_dir (one per file with
-- `name:`, or several keyed by name; `type: Workflow` required; the newest
-- file wins when several define it) and load it.  opts as load.file.
function _M.find(conf_dir, name, opts)
  if type(conf_dir) ~= "string" then error("bad argument #1 to 'find' (string expected)", 2) end
  if type(name) ~= "string" then error("bad argument #2 to 'find' (string expected)", 2) end
  local all, err = scan_conf(conf_dir)
  if not all then return nil, err, "EINVAL" end
  for _, e in ipairs(all) do
    if e.name == name then
      local cx = new_cx(e.path, e.pos, opts)
      return protect(build, cx, e.body, name)
    end
  end
  return nil, str_format("workflow '%s' was not found in conf dir '%s'", name, conf_dir), "EINVAL"
end

--- `luabatch run TARGET [--conf DIR]`: a readable file is loaded directly,
-- otherwise TARGET is a workflow name searched in opts.conf.
function _M.resolve(target, opts)
  opts = opts or {}
  -- a symlink judged by its target; anything there but a directory is meant
  -- as a file: load.file refuses a device or FIFO without blocking on it
  local st = core.stat(target, true)
  if st and st.type ~= "directory" then return _M.file(target, opts) end
  if opts.conf then return _M.find(opts.conf, target, opts) end
  return nil, str_format("open '%s': no such file (give a workflow file, or a name with --conf DIR)", target), "EINVAL"
end


-- Params at run time ----------------------------------------------------------

local function copy(t)
  local o = {}
  for k, v in pairs(t) do o[k] = v end
  return o
end

--- Check the given params against the model's declarations (absent optional
-- params get their defaults: README Differences, item 2) with
-- params.receive.  Returns values | nil, "FILE:LINE:COL: msg" (the line of
-- the param's declaration), "EINVAL".
function _M.check_params(model, given)
  if type(model) ~= "table" then error("bad argument #1 to 'check_params' (model expected)", 2) end
  given = given or {}
  local function at(name, msg)
    local p = model.param_pos and model.param_pos[name] or { line = model.line or 1, col = model.col or 1 }
    return str_format("%s:%d:%d: %s", model.file, p.line, p.col, msg)
  end
  for _, name in ipairs(model.param_order or {}) do
    local d = model.params[name]
    if type(d) == "table" and d.required == true and is_null(given[name]) then
      return nil, at(name, str_format("param '%s' is required but was not given", name)), "EINVAL"
    end
  end
  local values, err = require("luabatch.workflow.params").receive(model.params, given)
  if values == nil then
    err = tostring(err)
    local who = str_match(err, "param '([^']+)'")
    if not (who and model.param_pos and model.param_pos[who]) then
      who = nil
      for _, name in ipairs(model.param_order or {}) do
        if str_find(err, "'" .. name .. "'", 1, true) then who = name; break end
      end
    end
    if who then return nil, at(who, err), "EINVAL" end
    return nil, str_format("%s:%d:%d: %s", model.file, model.line or 1, model.col or 1, err), "EINVAL"
  end
  return values
end

return _M
