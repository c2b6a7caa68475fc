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

local _M = { _VERSION = "0.1.0" }

local core = require "luabatch.core"

local type, pairs, ipairs, tostring, tonumber = type, pairs, ipairs, tostring, tonumber
local pcall, error, setmetatable, getmetatable, next = pcall, error, setmetatable, getmetatable, next
local str_format, str_find, str_gsub, str_sub, str_match = string.format, string.find, string.gsub,
  string.sub, string.match
local tbl_concat, tbl_sort = table.concat, table.sort
local math_type, math_floor = math.type, math.floor
local NULL = core.null

-- Optional collaborators: load keeps working while they are written.
local function optional(name)
  local ok, mod = pcall(require, name)
  if ok and type(mod) == "table" then return mod end
  return nil
end


local FAIL = {}   -- marker metatable of validation errors raised inside a load

local function fail(cx, p, fmt, ...)
  local line, col = 1, 1
  if p then line, col = p.line or 1, p.col or 1 end
  local msg = str_format("%s:%d:%d: ", cx.file, line, col) .. str_format(fmt, ...)
  error(setmetatable({ msg = msg }, FAIL), 0)
end

local function warn(cx, p, fmt, ...)
  local line, col = 1, 1
  if p then line, col = p.line or 1, p.col or 1 end
  cx.warnings[#cx.warnings + 1] = str_format("%s:%d:%d: ", cx.file, line, col) .. str_format(fmt, ...)
end

-- Run fn(...) catching validation errors: model | nil, msg, "EINVAL".
local function protect(fn, ...)
  local ok, res = pcall(fn, ...)
  if ok then return res end
  if type(res) == "table" and getmetatable(res) == FAIL then return nil, res.msg, "EINVAL" end
  error(res, 0)
end


-- Positions -----------------------------------------------------------------

local function P(cx, t) return t ~= nil and cx.pos[t] or nil end
local function keypos(cx, t, k) local p = P(cx, t); return p and p.keys and p.keys[k] or p end
local function valpos(cx, t, k) local p = P(cx, t); return p and p.values and p.values[k] or keypos(cx, t, k) end
local function itempos(cx, t, i) local p = P(cx, t); return p and p.items and p.items[i] or p end

-- Keys of a mapping in source order (falls back to sorted keys).
local function key_order(cx, t)
  local p = P(cx, t)
  if p and p.order then
    local out = {}
    for i = 1, #p.order do out[i] = p.order[i] end
    return out
  end
  local out = {}
  for k in pairs(t) do out[#out + 1] = k end
  tbl_sort(out, function(a, b) return tostring(a) < tostring(b) end)
  return out
end


-- Value kinds ---------------------------------------------------------------

local function is_null(v) return v == nil or v == NULL end

local function is_seq(cx, v)
  if type(v) ~= "table" then return false end
  local p = P(cx, v)
  if p then return p.items ~= nil end
  return #v > 0 or next(v) == nil
end

local function is_map(cx, v)
  if type(v) ~= "table" then return false end
  local p = P(cx, v)
  if p then return p.keys ~= nil end
  return #v == 0
end

-- YAML kind of a value ("str", "int", "float", "bool", "null", "mapping", "sequence").
local function kind_of(cx, v, p)
  if p and p.kind then
    if p.kind == "date" or p.kind == "timestamp" then return "str" end
    return p.kind
  end
  if is_null(v) then return "null" end
  local t = type(v)
  if t == "string" then return "str" end
  if t == "boolean" then return "bool" end
  if t == "number" then
    if math_type then return math_type(v) == "integer" and "int" or "float" end
    return v == math_floor(v) and "int" or "float"
  end
  if t == "table" then return is_seq(cx, v) and "sequence" or "mapping" end
  return t
end

local function is_int(cx, v, p) return type(v) == "number" and kind_of(cx, v, p) == "int" end

local function is_scalar(v)
  local t = type(v)
  return t == "string" or t == "number" or t == "boolean"
end

local function show(v)
  if type(v) == "string" then return '"' .. v .. '"' end
  if is_null(v) then return "null" end
  if type(v) == "table" then return "a table" end
  return tostring(v)
end

local function has_template(s) return type(s) == "string" and str_find(s, "${{", 1, true) ~= nil end


-- Templates, expressions, environment ---------------------------------------

-- Fallback syntax check while luabatch.workflow.template is not there.
local function basic_template_check(s)
  local at = 1
  while true do
    local i = str_find(s, "${{", at, true)
    if not i then return true end
    local j = str_find(s, "}}", i + 3, true)
    if not j then return nil, "unterminated '${{' at column " .. i end
    if not str_find(str_sub(s, i + 3, j - 1), "%S") then return nil, "empty template at column " .. i end
    at = j + 2
  end
end

local function check_template(cx, s, p, what)
  if type(s) ~= "string" or not str_find(s, "${", 1, true) then return end
  local ok, err
  if cx.template and cx.template.check then
    ok, err = cx.template.check(s)
  else
    ok, err = basic_template_check(s)
  end
  if not ok then fail(cx, p, "%s: bad template: %s", what, tostring(err)) end
end

-- Check every string inside v (recursively) as a template.
local function check_templates_deep(cx, v, p, what)
  if type(v) == "string" then return check_template(cx, v, p, what) end
  if type(v) ~= "table" then return end
  if is_seq(cx, v) then
    for i = 1, #v do check_templates_deep(cx, v[i], itempos(cx, v, i), what) end
  else
    for k, x in pairs(v) do check_templates_deep(cx, x, valpos(cx, v, k), what .. "." .. tostring(k)) end
  end
end

-- An expression (if:, until:) may hold templates rendered before evaluation:
-- check them, then compile the text with each template (and ${VAR}) replaced
-- by a name of the same length (what a rendered value stands for
-- syntactically; same length, so error columns still fit the original).
local function placeholder(m) return "_" .. string.rep("x", #m - 1) end

local function check_expression(cx, s, p, what)
  check_template(cx, s, p, what)
  if not (cx.expr and cx.expr.compile) then return end
  local src = str_gsub(s, "%${{.-}}", placeholder)
  src = str_gsub(src, "%${%s?[%a_][%w_]*:?[^}]*}", placeholder)
  local fn, err = cx.expr.compile(src)
  if not fn then
    err = tostring(err)
    if src ~= s then
      local i, j = str_find(err, src, 1, true)
      if i then err = str_sub(err, 1, i - 1) .. s .. str_sub(err, j + 1) end
    end
    fail(cx, p, "%s: %s", what, err)
  end
end

-- ${VAR} / ${ VAR } / ${VAR:default} / $$ on one string, used when
-- luabatch.workflow.template is not there: str | nil, missing variable name.
local function basic_env(s, getenv)
  local missing
  local out = str_gsub(s, "%$(%$?){%s?([%a_][%w_]*)%s?(:?)([^}]*)}", function(dollar, name, colon, default)
    if dollar == "$" then return nil end
    local v = getenv(name)
    if v == nil or v == "" then
      if colon == ":" and default ~= "" then return default end
      if v == "" then return "" end
      missing = missing or name
      return ""
    end
    return v
  end)
  if missing then return nil, "environment variable '" .. missing .. "' is not set (and has no default)" end
  out = str_gsub(out, "%$%$", "$")
  return out
end

local function substitute_env(cx, s, p, what)
  local out, err
  if cx.template and cx.template.env then
    out, err = cx.template.env(s, cx.getenv)
  else
    out, err = basic_env(s, cx.getenv)
  end
  if out == nil then fail(cx, p, "%s: %s", what, tostring(err)) end
  return out
end

-- Substitute ${VAR} in every string inside v; returns a fresh value.
local function substitute_env_deep(cx, v, p, what)
  if type(v) == "string" then return substitute_env(cx, v, p, what) end
  if type(v) ~= "table" then return v end
  local out = {}
  if is_seq(cx, v) then
    for i = 1, #v do out[i] = substitute_env_deep(cx, v[i], itempos(cx, v, i), what) end
  else
    for k, x in pairs(v) do out[k] = substitute_env_deep(cx, x, valpos(cx, v, k), what .. "." .. tostring(k)) end
  end
  return out
end


-- Field checks --------------------------------------------------------------

local function want_str(cx, t, k, what, required)
  local v = t[k]
  if is_null(v) then
    if required then fail(cx, P(cx, t), "%s: missing required key '%s'", what, tostring(k)) end
    return nil
  end
  if type(v) ~= "string" then
    fail(cx, valpos(cx, t, k), "%s: '%s' must be a string, got %s %s", what, tostring(k),
      kind_of(cx, v, valpos(cx, t, k)), show(v))
  end
  return v
end

local function want_bool(cx, t, k, what, default)
  local v = t[k]
  if is_null(v) then return default end
  if type(v) ~= "boolean" then
    fail(cx, valpos(cx, t, k), "%s: '%s' must be true or false, got %s", what, tostring(k), show(v))
  end
  return v
end

-- Integer in lo..hi (or a template string when allow_tpl; a numeric string is
-- taken as its number, as the reference's int() would).
local function want_int(cx, t, k, what, lo, hi, default, allow_tpl)
  local v = t[k]
  if is_null(v) then return default end
  local p = valpos(cx, t, k)
  local from_str = false
  if allow_tpl and type(v) == "string" then
    if has_template(v) then
      check_template(cx, v, p, what .. ": " .. tostring(k))
      return v
    end
    local n = tonumber(v)
    if n then v, from_str = n, true end
  end
  if type(v) ~= "number" or v ~= math_floor(v) or not (from_str or is_int(cx, v, p)) then
    fail(cx, p, "%s: '%s' must be an integer%s, got %s", what, tostring(k),
      allow_tpl and " or a ${{ }} template" or "", show(t[k]))
  end
  if (lo and v < lo) or (hi and v > hi) then
    fail(cx, p, "%s: '%s' must be between %d and %d, got %s", what, tostring(k), lo, hi, tostring(v))
  end
  return v
end

-- A string; numbers and booleans are taken as their text.
local function want_text(cx, t, k, what, required)
  local v = t[k]
  if type(v) == "number" or type(v) == "boolean" then return tostring(v) end
  return want_str(cx, t, k, what, required)
end

local function want_map(cx, t, k, what)
  local v = t[k]
  if is_null(v) then return nil end
  if not is_map(cx, v) then
    fail(cx, valpos(cx, t, k), "%s: '%s' must be a mapping, got %s", what, tostring(k),
      kind_of(cx, v, valpos(cx, t, k)))
  end
  return v
end

local function want_seq(cx, t, k, what)
  local v = t[k]
  if is_null(v) then return nil end
  if not is_seq(cx, v) then
    fail(cx, valpos(cx, t, k), "%s: '%s' must be a list, got %s", what, tostring(k),
      kind_of(cx, v, valpos(cx, t, k)))
  end
  return v
end

local function allowed_list(set)
  local names = {}
  for k in pairs(set) do names[#names + 1] = k end
  tbl_sort(names)
  return tbl_concat(names, ", ")
end

local function check_keys(cx, t, allowed, what)
  for _, k in ipairs(key_order(cx, t)) do
    if not allowed[k] then
      fail(cx, keypos(cx, t, k), "unknown key '%s' in %s (allowed: %s)", tostring(k), what, allowed_list(allowed))
    end
  end
end

local function set(list)
  local s = {}
  for _, k in ipairs(list) do s[k] = true end
  return s
end


-- Stages --------------------------------------------------------------------

local COMMON = { "name", "id", "desc", "if", "extras", "type" }
local KIND_KEYS = {
  empty = { "echo", "sleep" },
  bash = { "bash", "env", "retry" },
  py = { "run", "vars", "retry" },
  lua = { "lua", "vars", "retry" },
  call = { "uses", "with", "retry" },
  trigger = { "trigger", "params", "retry" },
  raise = { "raise" },
  parallel = { "parallel", "max-workers" },
  foreach = { "foreach", "stages", "concurrent", "use_index_as_key" },
  case = { "case", "match", "skip-not-match" },
  ["until"] = { "until", "item", "stages", "max-loop" },
}
local ALLOWED = {}
for kind, keys in pairs(KIND_KEYS) do
  local s = set(COMMON)
  for _, k in ipairs(keys) do s[k] = true end
  ALLOWED[kind] = s
end

local TYPE_NAMES = { empty = "empty", bash = "bash", py = "py", python = "py", lua = "lua", call = "call",
  trigger = "trigger", raise = "raise", parallel = "parallel", foreach = "foreach", case = "case",
  ["until"] = "until" }

-- §5.1: the kind a stage's keys select, and the key that selected it.
local function infer_kind(s)
  if s.foreach ~= nil then return "foreach", "foreach" end
  if s["until"] ~= nil then return "until", "until" end
  if s.parallel ~= nil then return "parallel", "parallel" end
  if s.case ~= nil then return "case", "case" end
  if s.match ~= nil then return "case", "match" end
  if s.trigger ~= nil then return "trigger", "trigger" end
  if s.bash ~= nil then return "bash", "bash" end
  if s.uses ~= nil then return "call", "uses" end
  if s.run ~= nil and s.deps ~= nil then return "virtual-py", "deps" end
  if s.run ~= nil then return "py", "run" end
  if s.lua ~= nil then return "lua", "lua" end
  if s["raise"] ~= nil then return "raise", "raise" end
  if s.image ~= nil then return "docker", "image" end
  return "empty", nil
end

local parse_stages   -- forward

-- Only ${{ matrix.* }} templates may appear in a stage id or name (§5.2).
local function check_ident_templates(cx, s, p, what)
  if type(s) ~= "string" then return end
  check_template(cx, s, p, what)
  for body in s:gmatch("%${{(.-)}}") do
    local path = str_match(body, "^%s*([^%s|]+)")
    if not path or not str_find(path, "^matrix%.") then
      fail(cx, p, "%s: only ${{ matrix.* }} templates are allowed here, got '${{%s}}'", what, body)
    end
  end
end

local function parse_stage(cx, raw, p, job_what)
  if not is_map(cx, raw) then
    fail(cx, p, "%s: a stage must be a mapping, got %s %s", job_what, kind_of(cx, raw, p), show(raw))
  end
  local sp = P(cx, raw) or p
  local kind, by = infer_kind(raw)
  local explicit = raw.type
  if not is_null(explicit) then
    if type(explicit) ~= "string" then fail(cx, valpos(cx, raw, "type"), "stage 'type' must be a string") end
    local want = TYPE_NAMES[explicit]
    if not want then
      if explicit == "docker" or explicit == "virtual-py" then
        fail(cx, valpos(cx, raw, "type"), "stage type '%s' is not supported by this build", explicit)
      end
      fail(cx, valpos(cx, raw, "type"), "unknown stage type '%s' (known: %s)", explicit,
        "empty, bash, py, lua, call, trigger, raise, parallel, foreach, case, until")
    end
    if by and want ~= kind then
      fail(cx, valpos(cx, raw, "type"), "stage type '%s' does not agree with its keys: key '%s' makes it a %s stage",
        explicit, by, kind)
    end
    kind = want
  end
  if kind == "docker" then
    fail(cx, keypos(cx, raw, "image"), "docker stages (key 'image') are not supported by this build")
  end
  if kind == "virtual-py" then
    fail(cx, keypos(cx, raw, "deps"), "virtual-py stages (run + deps) are not supported by this build; "
      .. "install the packages and use a plain py stage")
  end

  local name = raw.name
  local label = type(name) == "string" and ("'" .. name .. "'") or nil
  local what = (kind == "empty" and not by and not explicit) and ("stage " .. (label or ""))
    or (kind .. " stage" .. (label and (" " .. label) or ""))
  what = str_gsub(what, "%s+$", "")

  -- Unknown keys.  A mapping with no name and no key of any stage kind is
  -- no stage at all: say so rather than listing one kind's keys.
  if kind == "empty" and not explicit and is_null(name) then
    local any = false
    for k in pairs(raw) do if k ~= "id" and k ~= "desc" and k ~= "if" and k ~= "extras" then any = true end end
    if any then
      for _, k in ipairs(key_order(cx, raw)) do
        if not ALLOWED.empty[k] then
          fail(cx, keypos(cx, raw, k), "stage validates as no stage type: unknown key '%s' and no 'name' "
            .. "(a stage needs one of: bash, run, lua, uses, trigger, raise, parallel, foreach, case, until, "
            .. "or a name with echo/sleep)", tostring(k))
        end
      end
    end
  end
  check_keys(cx, raw, ALLOWED[kind], what)

  local st = { kind = kind, pos = { file = cx.file, line = sp and sp.line or 1, col = sp and sp.col or 1,
    keys = sp and sp.keys, values = sp and sp.values } }
  if is_null(name) then
    fail(cx, sp, "%s: missing required key 'name' (a stage validates as nothing without it)", what)
  end
  st.name = want_str(cx, raw, "name", what, true)
  check_ident_templates(cx, st.name, valpos(cx, raw, "name"), what .. ": name")
  st.id = want_str(cx, raw, "id", what)
  check_ident_templates(cx, st.id, valpos(cx, raw, "id"), what .. ": id")
  st.desc = want_str(cx, raw, "desc", what)
  st.extras = want_map(cx, raw, "extras", what)
  local cond = raw["if"]
  if not is_null(cond) then
    if type(cond) == "string" then
      check_expression(cx, cond, valpos(cx, raw, "if"), what .. ": if")
    elseif type(cond) ~= "boolean" then
      fail(cx, valpos(cx, raw, "if"), "%s: 'if' must be a string expression or true/false, got %s", what, show(cond))
    end
    st["if"] = cond
  end
  st.retry = want_int(cx, raw, "retry", what, 0, 19, 0)

  if kind == "empty" then
    st.echo = want_text(cx, raw, "echo", what)
    check_template(cx, st.echo, valpos(cx, raw, "echo"), what .. ": echo")
    local sl = raw.sleep
    if not is_null(sl) then
      if type(sl) ~= "number" or sl < 0 or sl >= 1800 then
        fail(cx, valpos(cx, raw, "sleep"), "%s: 'sleep' must be a number of seconds in 0..1800, got %s", what, show(sl))
      end
      st.sleep = sl
    end

  elseif kind == "bash" then
    st.bash = want_str(cx, raw, "bash", what, true)
    check_template(cx, st.bash, valpos(cx, raw, "bash"), what .. ": bash")
    local env = want_map(cx, raw, "env", what)
    if env then
      for _, k in ipairs(key_order(cx, env)) do
        local v, vp = env[k], valpos(cx, env, k)
        if type(k) ~= "string" or not str_find(k, "^[%a_][%w_]*$") then
          fail(cx, keypos(cx, env, k), "%s: env name '%s' is not a valid variable name", what, tostring(k))
        end
        if type(v) ~= "string" then
          fail(cx, vp, "%s: env value of '%s' must be a string, got %s %s (quote it: %s: \"%s\")", what, k,
            kind_of(cx, v, vp), show(v), k, is_null(v) and "" or tostring(v))
        end
        check_template(cx, v, vp, what .. ": env." .. k)
      end
    end
    st.env = env or {}

  elseif kind == "py" or kind == "lua" then
    if kind == "py" then
      st.run = want_str(cx, raw, "run", what, true)
      check_template(cx, st.run, valpos(cx, raw, "run"), what .. ": run")
    else
      st.lua = want_str(cx, raw, "lua", what, true)
      check_template(cx, st.lua, valpos(cx, raw, "lua"), what .. ": lua")
      if not has_template(st.lua) then
        local fn, err = (loadstring or load)(st.lua, "=lua")
        if not fn then fail(cx, valpos(cx, raw, "lua"), "%s: Lua syntax error: %s", what, tostring(err)) end
      end
    end
    local vars = want_map(cx, raw, "vars", what)
    if vars then check_templates_deep(cx, vars, valpos(cx, raw, "vars"), what .. ": vars") end
    st.vars = vars or {}

  elseif kind == "call" then
    st.uses = want_str(cx, raw, "uses", what, true)
    check_template(cx, st.uses, valpos(cx, raw, "uses"), what .. ": uses")
    if not has_template(st.uses) and not str_find(st.uses, "^[^/@]+/[^/@]+@[^/@]+$") then
      fail(cx, valpos(cx, raw, "uses"), "%s: 'uses' must look like path/function@tag, got \"%s\"", what, st.uses)
    end
    local args = want_map(cx, raw, "with", what)
    if args then
      for _, k in ipairs({ "result", "extras" }) do
        if args[k] ~= nil then fail(cx, keypos(cx, args, k), "%s: 'with' must not set '%s' (it is injected)", what, k) end
      end
      check_templates_deep(cx, args, valpos(cx, raw, "with"), what .. ": with")
    end
    st["with"] = args or {}

  elseif kind == "trigger" then
    st.trigger = want_str(cx, raw, "trigger", what, true)
    check_template(cx, st.trigger, valpos(cx, raw, "trigger"), what .. ": trigger")
    if cx.name and st.trigger == cx.name then
      fail(cx, valpos(cx, raw, "trigger"), "%s: triggers its own workflow '%s' (a cycle)", what, st.trigger)
    end
    local prm = want_map(cx, raw, "params", what)
    if prm then check_templates_deep(cx, prm, valpos(cx, raw, "params"), what .. ": params") end
    st.params = prm or {}

  elseif kind == "raise" then
    st["raise"] = want_text(cx, raw, "raise", what, true)
    check_template(cx, st["raise"], valpos(cx, raw, "raise"), what .. ": raise")

  elseif kind == "parallel" then
    local par = want_map(cx, raw, "parallel", what)
    if not par then fail(cx, sp, "%s: missing required key 'parallel'", what) end
    st.parallel, st.branch_order = {}, {}
    for _, b in ipairs(key_order(cx, par)) do
      if type(b) ~= "string" then b = tostring(b) end
      local list = par[b]
      if not is_seq(cx, list) then
        fail(cx, valpos(cx, par, b), "%s: branch '%s' must be a list of stages", what, b)
      end
      st.branch_order[#st.branch_order + 1] = b
      st.parallel[b] = parse_stages(cx, list, valpos(cx, par, b), what .. " branch '" .. b .. "'")
    end
    st.max_workers = want_int(cx, raw, "max-workers", what, 1, 19, 2, true)

  elseif kind == "foreach" then
    local fe = raw.foreach
    local fp = valpos(cx, raw, "foreach")
    if type(fe) == "string" then
      check_template(cx, fe, fp, what .. ": foreach")
    elseif is_seq(cx, fe) then
      local seen = {}
      local by_index = want_bool(cx, raw, "use_index_as_key", what, false)
      for i = 1, #fe do
        local v, ip = fe[i], itempos(cx, fe, i)
        if not is_scalar(v) then
          fail(cx, ip, "%s: foreach items must be scalars, item %d is %s", what, i, kind_of(cx, v, ip))
        end
        check_template(cx, v, ip, what .. ": foreach")
        if seen[v] and not by_index then
          fail(cx, ip, "%s: duplicate foreach item %s (set use_index_as_key: true to allow it)", what, show(v))
        end
        seen[v] = true
      end
    else
      fail(cx, fp, "%s: 'foreach' must be a list or a ${{ }} template, got %s", what, kind_of(cx, fe, fp))
    end
    st.foreach = fe
    st.use_index_as_key = want_bool(cx, raw, "use_index_as_key", what, false)
    st.concurrent = want_int(cx, raw, "concurrent", what, 1, 9, 1)
    local list = want_seq(cx, raw, "stages", what)
    st.stages = list and parse_stages(cx, list, valpos(cx, raw, "stages"), what) or {}

  elseif kind == "case" then
    local c = raw.case
    if is_null(c) then fail(cx, sp, "%s: missing required key 'case'", what) end
    if not is_scalar(c) then fail(cx, valpos(cx, raw, "case"), "%s: 'case' must be a scalar or a template", what) end
    check_template(cx, c, valpos(cx, raw, "case"), what .. ": case")
    st.case = c
    local m = want_seq(cx, raw, "match", what)
    if not m then fail(cx, sp, "%s: missing required key 'match'", what) end
    st.match = {}
    local else_at
    for i = 1, #m do
      local e, ep = m[i], itempos(cx, m, i)
      if not is_map(cx, e) then fail(cx, ep, "%s: match entry %d must be a mapping", what, i) end
      local entry = { pos = { file = cx.file, line = ep and ep.line or 1, col = ep and ep.col or 1 } }
      if e["else"] ~= nil then
        check_keys(cx, e, { ["else"] = true }, what .. " match 'else' entry")
        if else_at then
          fail(cx, keypos(cx, e, "else"), "%s: a second 'else' entry (the first is at line %d)", what, else_at)
        end
        else_at = entry.pos.line
        entry.is_else = true
        if not is_seq(cx, e["else"]) then fail(cx, valpos(cx, e, "else"), "%s: 'else' must be a list of stages", what) end
        entry.stages = parse_stages(cx, e["else"], valpos(cx, e, "else"), what .. " else")
      else
        check_keys(cx, e, { case = true, stages = true }, what .. " match entry")
        local cv = e.case
        if is_null(cv) or not is_scalar(cv) then
          fail(cx, valpos(cx, e, "case"), "%s: match entry %d needs a scalar 'case'", what, i)
        end
        check_template(cx, cv, valpos(cx, e, "case"), what .. ": match case")
        entry.case = cv
        entry.is_else = (cv == "_")
        local list = want_seq(cx, e, "stages", what .. " match entry")
        entry.stages = list and parse_stages(cx, list, valpos(cx, e, "stages"), what .. " case " .. tostring(cv)) or {}
      end
      st.match[#st.match + 1] = entry
    end
    st.skip_not_match = want_bool(cx, raw, "skip-not-match", what, false)

  elseif kind == "until" then
    local u = want_str(cx, raw, "until", what, true)
    check_expression(cx, u, valpos(cx, raw, "until"), what .. ": until")
    st["until"] = u
    local item = raw.item
    if is_null(item) then item = 0 end
    check_templates_deep(cx, item, valpos(cx, raw, "item"), what .. ": item")
    st.item = item
    st.max_loop = want_int(cx, raw, "max-loop", what, 1, 99, 10)
    local list = want_seq(cx, raw, "stages", what)
    st.stages = list and parse_stages(cx, list, valpos(cx, raw, "stages"), what) or {}
    for _, child in ipairs(st.stages) do
      if child.kind == "parallel" then
        fail(cx, child.pos, "%s: a parallel stage cannot run inside an until stage", what)
      end
    end
  end
  return st
end

-- A list of stages; ids (or names when no id) must be unique in the list.
parse_stages = function(cx, list, p, what)
  local out, seen = {}, {}
  for i = 1, #list do
    local ip = itempos(cx, list, i) or p
    local st = parse_stage(cx, list[i], ip, what)
    local ident = st.id or st.name
    if seen[ident] then
      fail(cx, st.pos, "%s: duplicate stage identity '%s' (first at line %d)", what, ident, seen[ident])
    end
    seen[ident] = st.pos.line
    out[i] = st
  end
  return out
end


-- runs-on (decision 16) -----------------------------------------------------

local RUNS_ON_KNOWN = set({ "self_hosted", "docker", "container", "gcp_batch", "azure_batch", "cloud_batch" })

local AWS_FIELDS = {
  job_queue_arn = "str", s3_bucket = "str", region_name = "str", aws_access_key_id = "str",
  aws_secret_access_key = "str", aws_session_token = "str", image = "str", vcpus = "posnum",
  memory = "posint", gpus = "nonnegint", job_role_arn = "str", execution_role_arn = "str",
  platform = "platform", timeout = "timeout", retry_attempts = "attempts", s3_prefix = "str",
  environment = "strmap", tags = "strmap", array = "array", keep_on_failure = "bool", log_group = "str",
}
local AWS_REQUIRED = { "job_queue_arn", "s3_bucket" }

local function to_number(v)
  if type(v) == "string" then return tonumber(v) end
  return v
end

local function check_aws_field(cx, k, v, p, what)
  local t, orig = AWS_FIELDS[k], v
  local function bad(expect)
    fail(cx, p, "%s: '%s' must be %s, got %s", what, k, expect, show(orig))
  end
  if t == "str" then
    if type(v) == "number" then v = tostring(v) end
    if type(v) ~= "string" then bad("a string") end
    if v == "" then bad("a non-empty string") end
  elseif t == "posnum" then
    v = to_number(v)
    if type(v) ~= "number" or v <= 0 then bad("a positive number") end
  elseif t == "posint" or t == "nonnegint" or t == "timeout" or t == "attempts" or t == "array" then
    v = to_number(v)
    if type(v) ~= "number" or v ~= math_floor(v) then bad("an integer") end
    if t == "posint" and v < 1 then bad("a positive integer") end
    if t == "nonnegint" and v < 0 then bad("an integer >= 0") end
    if t == "timeout" and v < 60 then bad("an integer number of seconds >= 60 (the AWS Batch minimum)") end
    if t == "attempts" and (v < 1 or v > 10) then bad("an integer in 1..10") end
    if t == "array" and (v < 1 or v > 10000) then bad("an array size in 1..10000") end
  elseif t == "platform" then
    if type(v) ~= "string" or (v:upper() ~= "EC2" and v:upper() ~= "FARGATE") then bad("EC2 or FARGATE") end
    v = v:upper()
  elseif t == "bool" then
    if v == "true" then v = true elseif v == "false" then v = false end
    if type(v) ~= "boolean" then bad("true or false") end
  elseif t == "strmap" then
    if type(v) ~= "table" or is_seq(cx, v) and #v > 0 then bad("a mapping of names to strings") end
    local out = {}
    for name, x in pairs(v) do
      if not is_scalar(x) then
        fail(cx, valpos(cx, v, name) or p, "%s: '%s.%s' must be a string, got %s", what, k, tostring(name), show(x))
      end
      out[tostring(name)] = type(x) == "string" and x or tostring(x)
    end
    v = out
  end
  return v
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
  if typ ~= "local" and typ ~= "aws_batch" then
    if RUNS_ON_KNOWN[typ] then
      fail(cx, tp, "runs-on type '%s' is not supported by this build (supported: local, aws_batch)", typ)
    end
    fail(cx, tp, "unknown runs-on type '%s' (supported: local, aws_batch)", typ)
  end
  local wp = type(raw) == "table" and valpos(cx, raw, "with") or rp
  if is_null(with) then with = nil end
  if with ~= nil and not is_map(cx, with) then fail(cx, wp, "%s: runs-on 'with' must be a mapping", what) end
  local out = {}
  if with then
    local order = key_order(cx, with)
    for _, k in ipairs(order) do
      local kp, vp = keypos(cx, with, k), valpos(cx, with, k)
      if typ == "aws_batch" and not AWS_FIELDS[k] then
        warn(cx, kp, "%s: runs-on.with key '%s' is not used by aws_batch (ignored)", what, tostring(k))
      else
        local v = substitute_env_deep(cx, with[k], vp, what .. ": runs-on.with." .. tostring(k))
        if typ ~= "aws_batch" then
          out[k] = v
        elseif not is_null(v) then
          out[k] = check_aws_field(cx, k, v, vp, what .. ": runs-on.with")
        end
      end
    end
  end
  if typ == "aws_batch" then
    for _, k in ipairs(AWS_REQUIRED) do
      if out[k] == nil then fail(cx, wp, "%s: runs-on aws_batch needs with.%s", what, k) end
    end
    local log = optional("luabatch.log")
    if log and log.add_secret then
      log.add_secret(out.aws_secret_access_key)
      log.add_secret(out.aws_session_token)
    end
  end
  return { type = typ, with = out }
end


-- Strategy (§4, decision 15) -------------------------------------------------

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

local function parse_strategy(cx, job, what)
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
  s.max_parallel = want_int(cx, raw, "max-parallel", sw, 1, 9, 1, true)
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
  job.strategy = parse_strategy(cx, raw, what)
  job.extras = want_map(cx, raw, "extras", what)
  local stages = want_seq(cx, raw, "stages", what)
  job.stages = stages and parse_stages(cx, stages, valpos(cx, raw, "stages"), what) or {}
  return job
end

-- needs must name jobs; no cycles (decision 14).
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
  return { file = file, pos = pos or {}, getenv = opts.getenv or os.getenv, warnings = {},
    template = optional("luabatch.workflow.template"), expr = optional("luabatch.workflow.expr"),
    params = optional("luabatch.workflow.params") }
end

local function stem(path)
  local base = str_match(path, "([^/]+)$") or path
  return (str_gsub(base, "%.[yY][aA]?[mM][lL]$", ""))
end

-- Is this body a workflow?  direct: a file given by path also counts a body
-- with `jobs:` and no `type:` (decision 1).
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

local function read_yaml(path, text, name)
  local doc, pos, code
  if text then
    doc, pos, code = core.yaml_load(text, name, { positions = true })
  else
    doc, pos, code = core.yaml_load_file(path, { positions = true })
  end
  if doc == nil then return nil, pos, code end
  if doc == NULL then doc = nil end
  return doc, pos
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
--         getenv = fn(name) (default os.getenv) }.
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


-- Conf directory (decision 1) ------------------------------------------------

local function shell_quote(s) return "'" .. str_gsub(s, "'", "'\\''") .. "'" end

local function glob_to_pattern(g)
  local out = str_gsub(g, "[%^%$%(%)%%%.%[%]%+%-]", "%%%0")
  out = str_gsub(out, "%*", ".*")
  out = str_gsub(out, "%?", ".")
  return "^" .. out .. "$"
end

local function read_ignore(dir)
  local f = io.open(dir .. "/.confignore", "r")
  if not f then return {} end
  local pats = {}
  for line in f:lines() do
    line = str_match(line, "^%s*(.-)%s*$")
    if line ~= "" and str_sub(line, 1, 1) ~= "#" then
      pats[#pats + 1] = glob_to_pattern((str_gsub(line, "/+$", "")))
    end
  end
  f:close()
  return pats
end

local function ignored(pats, rel)
  local base = str_match(rel, "([^/]+)$")
  for _, pat in ipairs(pats) do
    if str_find(rel, pat) or str_find(base, pat) then return true end
    local dir = str_match(rel, "^(.*)/")
    while dir do
      if str_find(dir, pat) then return true end
      dir = str_match(dir, "^(.*)/")
    end
  end
  return false
end

-- *.yml / *.yaml files below dir (recursive), newest first: { {path, mtime} }.
local function list_conf(dir)
  local root = str_gsub(dir, "/+$", "")
  if root == "" then root = "/" end
  local base = str_sub(root, 1, 1) == "-" and ("./" .. root) or root
  local f = io.open(base, "r")
  if not f then return nil, "conf dir '" .. dir .. "': cannot open it" end
  f:close()
  local cmd = "find " .. shell_quote(base) .. " -type f \\( -name '*.yml' -o -name '*.yaml' \\) "
  local p = io.popen(cmd .. "-printf '%T@ %p\\0' 2>/dev/null")
  local out = p and p:read("*a") or ""
  if p then p:close() end
  local files = {}
  if out ~= "" then
    for mt, path in out:gmatch("([%d%.]+) ([^%z]+)%z") do files[#files + 1] = { path = path, mtime = tonumber(mt) or 0 } end
  else   -- find without -printf
    p = io.popen(cmd .. "-print0 2>/dev/null")
    out = p and p:read("*a") or ""
    if p then p:close() end
    for path in out:gmatch("([^%z]+)%z") do files[#files + 1] = { path = path, mtime = 0 } end
  end
  local pats = read_ignore(base)
  local keep = {}
  for _, e in ipairs(files) do
    local rel = str_sub(e.path, #base + 2)
    if not ignored(pats, rel) then keep[#keep + 1] = e end
  end
  tbl_sort(keep, function(a, b)
    if a.mtime ~= b.mtime then return a.mtime > b.mtime end
    return a.path < b.path
  end)
  return keep
end

-- Every workflow body defined in the conf dir: { {name, path, doc, pos, body} } (newest file first).
local function scan_conf(dir)
  local files, err = list_conf(dir)
  if not files then return nil, err end
  local out = {}
  for _, e in ipairs(files) do
    local doc, pos = read_yaml(e.path)
    if doc == nil and type(pos) == "string" then return nil, pos end
    if type(doc) == "table" then
      if doc.type == "Workflow" then
        if type(doc.name) == "string" then
          out[#out + 1] = { name = doc.name, path = e.path, doc = doc, pos = pos, body = doc }
        end
      else
        local order = pos[doc] and pos[doc].order or {}
        for _, k in ipairs(order) do
          local body = doc[k]
          if type(k) == "string" and type(body) == "table" and body.type == "Workflow" then
            out[#out + 1] = { name = k, path = e.path, doc = doc, pos = pos, body = body }
          end
        end
      end
    end
  end
  return out
end

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

--- Find the workflow `name` under conf_dir (decision 1: one per file with
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
  local f = io.open(target, "r")
  if f then
    local got, err = f:read(1)
    f:close()
    if got ~= nil or err == nil then return _M.file(target, opts) end   -- a file (not a directory)
  end
  if opts.conf then return _M.find(opts.conf, target, opts) end
  return nil, str_format("open '%s': no such file (give a workflow file, or a name with --conf DIR)", target), "EINVAL"
end


-- Params at run time ----------------------------------------------------------

local function copy(t)
  local o = {}
  for k, v in pairs(t) do o[k] = v end
  return o
end

--- Check the given params against the model's declarations (decision 4) with
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
  local params = optional("luabatch.workflow.params")
  if params and params.receive then
    local values, err = params.receive(model.params, given)
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
  -- fallback while params.receive is not there: given values plus defaults
  local values = copy(given)
  for _, name in ipairs(model.param_order or {}) do
    local d = model.params[name]
    if values[name] == nil and type(d) == "table" and d.default ~= nil and d.default ~= NULL then
      values[name] = d.default
    end
  end
  return values
end

return _M
