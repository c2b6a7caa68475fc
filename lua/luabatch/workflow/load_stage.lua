-- luabatch.workflow.load_stage: validate the stages of a job and turn them
-- into stage models.
--
-- Contract: parse_stages(cx, list, p, what) -> { stage... } for a YAML list of
-- stage mappings (cx as in luabatch.workflow.load_check; cx.name is the
-- workflow's name, used to reject a trigger of itself).  Each stage's kind
-- is inferred from its keys (infer_kind) or given by `type:`, its keys are
-- checked against that kind, and ids (or names) must be unique in a list.
-- Problems raise through load_check.fail ("FILE:LINE:COL: msg"); the caller
-- protects.  Stage model: see the header of luabatch.workflow.load.

local _M = { _VERSION = "0.1.0" }

local check = require "luabatch.workflow.load_check"

local type, pairs, ipairs, tostring = type, pairs, ipairs, tostring
local str_find, str_gsub, str_match = string.find, string.gsub, string.match

local fail, P, keypos, valpos, itempos, key_order = check.fail, check.P, check.keypos, check.valpos,
  check.itempos, check.key_order
local is_null, is_seq, is_map, kind_of, is_scalar, show = check.is_null, check.is_seq, check.is_map,
  check.kind_of, check.is_scalar, check.show
local has_template, check_template, check_templates_deep, check_expression = check.has_template,
  check.check_template, check.check_templates_deep, check.check_expression
local want_str, want_bool, want_int, want_text, want_map, want_seq = check.want_str, check.want_bool,
  check.want_int, check.want_text, check.want_map, check.want_seq
local check_keys, set = check.check_keys, check.set


-- Stage kinds ---------------------------------------------------------------

local COMMON = { "name", "id", "desc", "if", "extras", "type" }
local KIND_KEYS = {
  empty = { "echo", "sleep" },
  bash = { "bash", "env", "retry", "timeout" },
  py = { "run", "vars", "retry", "timeout" },
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

-- The kind a stage's keys select, and the key that selected it
-- (ddeutil-workflow's precedence, plus `lua`).
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

-- Only ${{ matrix.* }} templates may appear in a stage id or name (as in
-- ddeutil-workflow).
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
  -- bash and py: the process group is killed after `timeout` seconds (one week at most)
  st.timeout = want_int(cx, raw, "timeout", what, 1, 604800, nil)

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


_M.infer_kind = infer_kind
_M.parse_stage = parse_stage
_M.parse_stages = parse_stages

return _M
