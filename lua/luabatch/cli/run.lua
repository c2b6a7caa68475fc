-- luabatch.cli.run: `luabatch run FILE [--job ID] [--param k=v ...] [--conf DIR] [--json]`
--
--   local code = require("luabatch.cli.run").run({ "wf.yml", "--json" }, env)
--
-- Runs a workflow (jobs in `needs` order, independent jobs concurrently) or
-- one job of it on this machine.  FILE is a workflow file; with --conf DIR it
-- may also be a workflow name searched in DIR.
--
-- Output: progress lines (job and stage status with durations) on stderr
-- when stderr is a terminal; with --json the final context on stdout as
-- JSON (dates as ISO strings), else a one-line summary on stdout.
-- Exit codes: 0 SUCCESS (or SKIP), 1 FAILED or CANCEL, 2 bad input (usage,
-- a load error "FILE:LINE:COL: ...", a param error).
--
-- env (all optional, the seam for tests): stdout, stderr (function(s) or
-- anything with :write), isatty = function(fd) -> bool, getenv.

local log = require "luabatch.log"

local _M = { _VERSION = "0.1.0" }

local type = type
local pairs = pairs
local ipairs = ipairs
local pcall = pcall
local require = require
local tostring = tostring
local tonumber = tonumber
local str_format = string.format
local str_rep = string.rep
local tbl_concat = table.concat
local tbl_sort = table.sort
local floor = math.floor

_M.usage = [==[
usage: luabatch run FILE [options]

Run a workflow (ddeutil-workflow YAML) on this machine.

options:
  --job ID          run only this job (its needs are not run)
  --param K=V       a workflow param (repeatable); V is coerced to the
                    declared type (JSON for map and array params)
  --conf DIR        search DIR for workflows: FILE may then be a workflow
                    name; trigger stages search it too
  --json            print the final context as JSON on stdout
  -h, --help        this text

Call stages find their Lua functions in LUABATCH_REGISTRY (default ./registry).
Exit codes: 0 success (or every job skipped), 1 a job failed, 2 bad input.
]==]

local function writer(w)
  if type(w) == "function" then return w end
  return function(s) w:write(s) end
end

local function default_isatty(fd)
  local ok, le = pcall(require, "luabatch.lineedit")
  return ok and type(le) == "table" and le.isatty and le.isatty(fd) or false
end

---------------------------------------------------------------------------
-- JSON (key order sorted; arrays by cjson's array metatables, objects by the
-- engine's marker, otherwise non-empty sequences are arrays)
---------------------------------------------------------------------------

local stage = require "luabatch.workflow.stage"

local ESC = { ['"'] = '\\"', ['\\'] = '\\\\', ['\b'] = '\\b', ['\f'] = '\\f',
              ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t' }

local function jstr(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    return ESC[c] or str_format("\\u%04x", c:byte())
  end) .. '"'
end

local function jnum(n)
  if n ~= n or n == math.huge or n == -math.huge then return "null" end
  if math.type and math.type(n) == "integer" then return str_format("%d", n) end
  if n == floor(n) and n > -2 ^ 53 and n < 2 ^ 53 then
    if math.type then return str_format("%.1f", n) end
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

local function encode(v, out, indent, depth, seen)
  local t = type(v)
  if v == nil or (stage.null ~= nil and v == stage.null) then
    out[#out + 1] = "null"
  elseif t == "boolean" then
    out[#out + 1] = v and "true" or "false"
  elseif t == "number" then
    out[#out + 1] = jnum(v)
  elseif t == "string" then
    out[#out + 1] = jstr(v)
  elseif t == "table" then
    if seen[v] then error("JSON: a cycle in the context", 0) end
    seen[v] = true
    local kind = stage.jsontype(v)
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
      for k in pairs(v) do keys[#keys + 1] = k end
      tbl_sort(keys, function(a, b)
        local ta, tb = type(a), type(b)
        if ta ~= tb then return ta < tb end
        if ta == "number" or ta == "string" then return a < b end
        return tostring(a) < tostring(b)
      end)
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

--- JSON text of a context value; opts.indent = "  " for pretty output.
function _M.json(v, opts)
  local out = {}
  encode(v, out, opts and opts.indent, 0, {})
  return tbl_concat(out)
end

---------------------------------------------------------------------------
-- Arguments
---------------------------------------------------------------------------

local function parse_args(args)
  local o = { params = {} }
  local i = 1
  local function value(name)
    i = i + 1
    local v = args[i]
    if v == nil then return nil, name .. " needs a value" end
    return v
  end
  while i <= #args do
    local a = args[i]
    local err
    if a == "-h" or a == "--help" then
      o.help = true
    elseif a == "--json" then
      o.json = true
    elseif a == "--job" or a == "-j" then
      o.job, err = value(a)
    elseif a:match("^%-%-job=") then
      o.job = a:sub(7)
    elseif a == "--conf" or a == "-c" then
      o.conf, err = value(a)
    elseif a:match("^%-%-conf=") then
      o.conf = a:sub(8)
    elseif a == "--param" or a == "-p" or a:match("^%-%-param=") then
      local kv
      if a:match("^%-%-param=") then kv = a:sub(9) else kv, err = value(a) end
      if kv then
        local k, v = kv:match("^([^=]+)=(.*)$")
        if not k then
          err = str_format("--param '%s': expected KEY=VALUE", kv)
        else
          o.params[k] = v
        end
      end
    elseif a:sub(1, 1) == "-" and a ~= "-" then
      err = "unknown option " .. a
    elseif o.target == nil then
      o.target = a
    else
      err = "unexpected argument '" .. a .. "' (one workflow at a time)"
    end
    if err then return nil, err end
    i = i + 1
  end
  if not o.help and not o.target then return nil, "a workflow FILE is required" end
  return o
end

---------------------------------------------------------------------------
-- Progress
---------------------------------------------------------------------------

local function fmt_secs(s)
  if s < 10 then return str_format("%.2fs", s) end
  if s < 120 then return str_format("%.1fs", s) end
  return str_format("%dm%02ds", floor(s / 60), floor(s % 60))
end

local function first_error(errors)
  if type(errors) ~= "table" then return nil end
  if errors.message then return tostring(errors.message) end
  for _, e in pairs(errors) do
    local m = first_error(e)
    if m then return m end
  end
end

local function progress_printer(err_w)
  return function(event, info)
    if event == "job-start" then
      err_w(str_format("job %s: running\n", info.job))
    elseif event == "job" then
      local line = str_format("job %s: %s (%s)", info.job, info.status, fmt_secs(info.seconds or 0))
      local m = info.status == "FAILED" and first_error(info.errors)
      if m then line = line .. ": " .. (m:match("^[^\n]*") or m) end
      err_w(line .. "\n")
    elseif event == "job-retry" then
      err_w(str_format("job %s: FAILED, retry %d\n", info.job, info.attempt))
    elseif event == "stage" then
      local who = info.key or info.name or "?"
      local where = info.job or "?"
      if info.strategy and info.strategy ~= "EMPTY" then where = where .. "[" .. info.strategy .. "]" end
      local line = str_format("  %s  %-24s %-7s %s", where, tostring(who), info.status, fmt_secs(info.seconds or 0))
      local m = (info.status == "FAILED" or info.status == "CANCEL") and first_error(info.errors)
      if m then line = line .. "  " .. (m:match("^[^\n]*") or m) end
      err_w(line .. "\n")
    end
  end
end

---------------------------------------------------------------------------
-- Entry
---------------------------------------------------------------------------

function _M.run(args, env)
  env = env or {}
  local out_w = writer(env.stdout or io.stdout)
  local err_w = writer(env.stderr or io.stderr)
  local isatty = env.isatty or default_isatty
  local o, perr = parse_args(args or {})
  if not o then
    err_w("luabatch run: " .. perr .. "\n" .. _M.usage)
    return 2
  end
  if o.help then
    out_w(_M.usage)
    return 0
  end
  local load = require "luabatch.workflow.load"
  local engine = require "luabatch.workflow.engine"
  local getenv = env.getenv or os.getenv
  local model, lerr = load.resolve(o.target, { conf = o.conf, getenv = getenv })
  if not model then
    err_w("luabatch run: " .. tostring(lerr) .. "\n")
    return 2
  end
  for _, w in ipairs(model.warnings or {}) do err_w("luabatch run: warning: " .. w .. "\n") end
  if o.job and not (model.jobs and model.jobs[o.job]) then
    local ids = {}
    for _, id in ipairs(model.job_order or {}) do ids[#ids + 1] = id end
    err_w(str_format("luabatch run: %s: no job '%s' (jobs: %s)\n", tostring(model.file), o.job,
      tbl_concat(ids, ", ")))
    return 2
  end
  local tty = isatty(2) and true or false
  local ropts = { params = o.params, job = o.job, conf = o.conf, getenv = getenv }
  if tty then
    ropts.progress = progress_printer(err_w)
    ropts.log = function(line) err_w("      | " .. tostring(line):gsub("\n", "\n      | ") .. "\n") end
  end
  local ctx, rerr = engine.run(model, ropts)
  if not ctx then
    err_w("luabatch run: " .. tostring(rerr) .. "\n")
    return 2
  end
  if o.json then
    out_w(_M.json(ctx, { indent = "  " }) .. "\n")
  else
    local secs = ctx.info and ctx.info.exec_latency or 0
    local line = str_format("workflow %s: %s (%s)", tostring(model.name), ctx.status, fmt_secs(secs))
    local m = first_error(ctx.errors)
    if m then line = line .. ": " .. m end
    out_w(line .. "\n")
  end
  if ctx.status == "SUCCESS" or ctx.status == "SKIP" then return 0 end
  return 1
end

return _M
