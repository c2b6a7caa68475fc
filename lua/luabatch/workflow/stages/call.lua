-- luabatch.workflow.stages.call: `uses: path/func@tag` with `with:` args
-- calls a Lua function from a registry module.
--
-- Registry: the directories in LUABATCH_REGISTRY (':'-separated; default
-- ./registry).  `path` names the module file <dir>/<path>.lua (dots become
-- '/'), or <dir>/<path>/init.lua; it is loaded once and returns a table:
--
--   return {
--     ["say-hello"] = {                       -- func name ("_" and "-" match)
--       tag = "latest",                       -- default "latest"
--       args = { name = "str", times = { type = "int", default = 1 } },
--       fn = function(args, ctx) return { message = "hi " .. args.name } end,
--     },
--     ["other@v2"] = function(args, ctx) ... end,   -- a bare function: no checks
--     ["multi"] = { { tag = "v1", fn = ... }, { tag = "v2", fn = ... } },
--   }
--
-- Arg types: str, int, float (number), bool, map, list (array), any.  A
-- declared arg without `default` and without `required = false` must be
-- given.  fn receives the rendered args (defaults filled in) and ctx =
-- { params, matrix, stages, jobs, log = fn(line), sched = the scheduler
-- module, result = { context = {} } }; it returns a table: the outputs.
-- Python call targets are not supported.
--
-- Exported for the aws_batch bundle (luabatch.runner.aws_batch.bundle):
-- parse_uses(uses) -> path, func, tag; split_path(registry) -> dirs;
-- resolve(registry, path) -> file, rel | nil, msg (the file execute loads).

local stage = require "luabatch.workflow.stage"

local _M = { _VERSION = "0.1.0" }

local type = type
local pairs = pairs
local ipairs = ipairs
local pcall = pcall
local tostring = tostring
local str_format = string.format
local tbl_concat = table.concat
local tbl_sort = table.sort

local cache = setmetatable({}, { __mode = "k" })

local function file_exists(p)
  local f = io.open(p, "r")
  if f then f:close() return true end
  return false
end

local function split_path(s)
  local out = {}
  for d in tostring(s):gmatch("[^:]+") do out[#out + 1] = d end
  if #out == 0 then out[1] = "./registry" end
  return out
end

-- The files a registry `path` may be, in search order: { {file, rel} }
-- (rel: the file's path inside its registry directory).
local function candidates(dirs, path)
  local rel = path:gsub("%.", "/")
  local out = {}
  for _, d in ipairs(dirs) do
    for _, r in ipairs({ rel .. ".lua", rel .. "/init.lua" }) do
      out[#out + 1] = { file = d .. "/" .. r, rel = r }
    end
  end
  return out
end

local function load_module(dirs, path, env)
  local tried = {}
  local store = cache[env] or {}
  cache[env] = store
  for _, c in ipairs(candidates(dirs, path)) do
    local cand = c.file
    tried[#tried + 1] = cand
    if store[cand] then return store[cand] end
    if file_exists(cand) then
      local fn, err = loadfile(cand)
      if not fn then return nil, str_format("registry module %s: %s", cand, tostring(err)) end
      local ok, mod = pcall(fn)
      if not ok then return nil, str_format("registry module %s: %s", cand, tostring(mod)) end
      if type(mod) ~= "table" then
        return nil, str_format("registry module %s must return a table of functions", cand)
      end
      store[cand] = mod
      return mod
    end
  end
  return nil, str_format("no registry module '%s' (searched %s); call targets are Lua functions (Python call targets are not supported)",
    path, tbl_concat(tried, ", "))
end

local function find_func(mod, func, tag)
  local names = { func, (func:gsub("_", "-")), (func:gsub("-", "_")) }
  for _, n in ipairs(names) do
    local e = mod[n .. "@" .. tag]
    if e ~= nil then
      if type(e) == "function" then return { fn = e, tag = tag } end
      if type(e) == "table" and type(e.fn) == "function" then return e end
    end
  end
  for _, n in ipairs(names) do
    local e = mod[n]
    if type(e) == "function" then
      if tag == "latest" then return { fn = e, tag = "latest" } end
    elseif type(e) == "table" then
      if type(e.fn) == "function" then
        if (e.tag or "latest") == tag then return e end
      else
        for _, v in ipairs(e) do
          if type(v) == "table" and type(v.fn) == "function" and (v.tag or "latest") == tag then return v end
        end
      end
    end
  end
end

local function is_int(v)
  return type(v) == "number" and v == math.floor(v)
end

local CHECK = {
  str = function(v) return type(v) == "string" end,
  string = function(v) return type(v) == "string" end,
  int = is_int,
  integer = is_int,
  float = function(v) return type(v) == "number" end,
  number = function(v) return type(v) == "number" end,
  bool = function(v) return type(v) == "boolean" end,
  boolean = function(v) return type(v) == "boolean" end,
  map = function(v) return type(v) == "table" end,
  dict = function(v) return type(v) == "table" end,
  list = function(v) return type(v) == "table" end,
  array = function(v) return type(v) == "table" end,
  any = function() return true end,
}

local function check_args(uses, spec, args)
  if type(spec.args) ~= "table" then return args end
  local out = {}
  for k, v in pairs(args) do out[k] = v end
  local missing = {}
  local names = {}
  for name in pairs(spec.args) do names[#names + 1] = name end
  tbl_sort(names)
  for _, name in ipairs(names) do
    local decl = spec.args[name]
    if type(decl) == "string" then decl = { type = decl } end
    local v = out[name]
    if v == nil or (stage.null ~= nil and v == stage.null and decl.default ~= nil) then
      if decl.default ~= nil then
        out[name] = decl.default
      elseif decl.required ~= false then
        missing[#missing + 1] = name
      end
    else
      local chk = CHECK[decl.type or "any"]
      if chk == nil then
        return nil, str_format("call '%s': arg '%s' declares an unknown type '%s'", uses, name, tostring(decl.type))
      end
      if not chk(v) and not (stage.null ~= nil and v == stage.null and decl.required == false) then
        return nil, str_format("call '%s': arg '%s' must be a %s, got %s", uses, name, decl.type, type(v))
      end
    end
  end
  if #missing > 0 then
    return nil, str_format("call '%s': missing required args: %s", uses, tbl_concat(missing, ", "))
  end
  return out
end

--- "path/func@tag" (or "path/func": tag "latest") -> path, func, tag | nil.
function _M.parse_uses(uses)
  if type(uses) ~= "string" then return nil end
  local path, func, tag = uses:match("^(.+)/([^/@]+)@([^@]+)$")
  if not path then
    path, func = uses:match("^(.+)/([^/@]+)$")
    tag = "latest"
  end
  if not path then return nil end
  return path, func, tag
end

--- The registry directories of a LUABATCH_REGISTRY-style value (':'-separated;
-- empty -> { "./registry" }).
_M.split_path = split_path

--- The module file a registry `path` resolves to, exactly as execute finds
-- it: registry is the ':'-separated directory list (env.registry_path).
-- -> file, rel (its path inside the registry directory, e.g. "mods/greet.lua"
-- or "mods/greet/init.lua") | nil, message naming what was searched.
function _M.resolve(registry, path)
  local tried = {}
  for _, c in ipairs(candidates(split_path(registry), path)) do
    if file_exists(c.file) then return c.file, c.rel end
    tried[#tried + 1] = c.file
  end
  return nil, str_format("no registry module '%s' (searched %s)", path, tbl_concat(tried, ", "))
end

function _M.execute(st, rctx, env)
  local uses, err = stage.render_or_error(env, st.uses, rctx)
  if uses == nil then return nil, err end
  if type(uses) ~= "string" then
    return nil, { name = "StageError", message = "call: 'uses' must be a string path/func@tag" }
  end
  local path, func, tag = _M.parse_uses(uses)
  if not path then
    return nil, { name = "StageError", message = str_format("call: '%s' is not of the form path/func@tag", uses) }
  end
  local mod, merr = load_module(split_path(env.registry_path), path, env)
  if not mod then return nil, { name = "StageError", message = merr } end
  local spec = find_func(mod, func, tag)
  if not spec then
    return nil, { name = "StageError", message = str_format(
      "call '%s': no function '%s' with tag '%s' in registry module '%s'", uses, func, tag, path) }
  end
  local args = {}
  local with = st.with or st.args
  if with ~= nil then
    local a, aerr = stage.render_or_error(env, with, rctx)
    if a == nil then return nil, aerr end
    if type(a) ~= "table" then
      return nil, { name = "StageError", message = str_format("call '%s': 'with' must be a map", uses) }
    end
    args = a
  end
  local cargs, cerr = check_args(uses, spec, args)
  if not cargs then return nil, { name = "StageError", message = cerr } end
  local ctx = { params = rctx.params, matrix = rctx.matrix, stages = rctx.stages, jobs = rctx.jobs,
                log = env.log, sched = env.sched, result = { context = {} } }
  local ok, ret = pcall(spec.fn, cargs, ctx)
  if not ok then
    if type(ret) == "table" and (ret.name or ret.message) then return nil, stage.error_of(ret, "CallError") end
    return nil, { name = "CallError", message = tostring(ret) }
  end
  if ret == nil then ret = ctx.result.context end
  if type(ret) ~= "table" then
    return nil, { name = "TypeError", message = str_format(
      "call '%s': the function returned a %s, not a table of outputs", uses, type(ret)) }
  end
  if next(ret) == nil then return stage.object() end
  return ret
end

return _M
