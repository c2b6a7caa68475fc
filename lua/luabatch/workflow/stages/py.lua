-- luabatch.workflow.stages.py: `run:` stages with ddeutil-workflow's exec
-- semantics, and item 7 of README "Differences from ddeutil-workflow".
--
-- `vars` is rendered, `run` is stripped of surrounding newlines, dedented
-- and rendered (templates + ${VAR}); then python3 (LUABATCH_PYTHON chooses
-- another interpreter) runs WRAPPER, which reads {code, vars, marker} as
-- JSON on stdin and does what ddeutil-workflow does:
--     exec(code, globals = vars + {result: R}, locals = {})
-- R.context is a dict; what the code puts there joins the outputs.
-- Outputs = the locals without names starting with "__", modules, classes
-- and `trace`; functions become their name; dates become ISO strings; other
-- values JSON cannot hold become their str() with a warning on stderr.
-- An exception (also SystemExit) ends the stage FAILED with
-- { name = <exception class>, message = str(exc) }; no python3 -> a clear
-- StageError.  The code's prints and stderr go to env.log line by line.
-- Types survive the trip: ints stay integers (Lua 5.4), integral floats
-- stay floats, empty lists stay lists (template.list_mt), maps are maps.
-- How the result comes back: docs/design.md.

local stage = require "luabatch.workflow.stage"
local bash = require "luabatch.workflow.stages.bash"
local cjson = require "cjson"

local _M = { _VERSION = "0.1.0" }

local type = type
local pairs = pairs
local next = next
local tostring = tostring
local str_format = string.format
local str_find = string.find
local str_sub = string.sub
local tointeger = math.tointeger

local NULL = stage.null
local FLOAT_TAG = "\0f"      -- {"\u0000f": 2.0}: an integral Python float
local LIST_TAG = "\0l"       -- {"\u0000l": 0}: an empty Python list

_M.WRAPPER = [==[
import json, os, sys, types, datetime

def _lb_main():
    req = json.loads(sys.stdin.buffer.read().decode("utf-8"))

    class Result:
        """`result` in a py stage: what goes into result.context joins the outputs."""
        def __init__(self):
            self.status = "WAIT"
            self.context = {}
            self.run_id = req.get("run_id")
            self.parent_run_id = req.get("parent_run_id")
            self.extras = {}
        def __repr__(self):
            return "Result(status=%r, context=%r)" % (self.status, self.context)

    result = Result()
    g = dict(req.get("vars") or {})
    g["result"] = result
    lcl = {}
    error = None
    try:
        exec(compile(req["code"], "<py stage>", "exec"), g, lcl)
    except BaseException as e:
        error = {"name": type(e).__name__, "message": str(e)}

    def warn(path, v):
        sys.stderr.write("py stage: output '%s' (%s) is not JSON-serialisable; stored as its str()\n"
                         % (path, type(v).__name__))

    def conv(path, v):
        if v is None or isinstance(v, (bool, str, int)):
            return v
        if isinstance(v, float):
            if v != v or v in (float("inf"), float("-inf")):
                warn(path, v)
                return str(v)
            return {"\u0000f": v} if v.is_integer() else v
        if isinstance(v, (list, tuple)):
            if not v:
                return {"\u0000l": 0}
            return [conv("%s[%d]" % (path, i), x) for i, x in enumerate(v)]
        if isinstance(v, dict):
            out = {}
            for k, x in v.items():
                if isinstance(k, str):
                    pass
                elif k is None or isinstance(k, (bool, int, float)):
                    k = json.dumps(k)
                else:
                    warn(path + " key", k)
                    k = str(k)
                out[k] = conv("%s.%s" % (path, k), x)
            return out
        if isinstance(v, (datetime.date, datetime.time)):
            return v.isoformat()
        if isinstance(v, (types.FunctionType, types.BuiltinFunctionType, types.MethodType)):
            return v.__name__
        warn(path, v)
        return str(v)

    outputs = {}
    for k, v in lcl.items():
        if k.startswith("__") or k == "trace":
            continue
        if isinstance(v, (types.ModuleType, type)):
            continue
        outputs[k] = conv(k, v)
    if error is None and isinstance(result.context, dict):
        for k, v in result.context.items():
            outputs[str(k)] = conv(str(k), v)
    try:
        sys.stdout.flush()
    except Exception:
        pass
    data = ("\n" + req["marker"] + "\n" + json.dumps({"outputs": outputs, "error": error})).encode("utf-8")
    while data:
        n = os.write(1, data)
        data = data[n:]

_lb_main()
]==]

-- Decoded JSON -> our values (see the tags in WRAPPER).
local function restore(v)
  if type(v) == "number" then
    return tointeger and tointeger(v) or v
  end
  if type(v) ~= "table" or v == NULL then return v end
  local only = next(v)
  if only ~= nil and next(v, only) == nil then
    if only == FLOAT_TAG then return v[only] + 0.0 end
    if only == LIST_TAG then return stage.array({}) end
  end
  if v[1] ~= nil then
    local out = {}
    for i = 1, #v do out[i] = restore(v[i]) end
    return stage.array(out)
  end
  local out = {}
  for k, x in pairs(v) do out[k] = restore(x) end
  return stage.object(out)
end

local function random_hex()
  local ok, core = pcall(require, "luabatch.core")
  if ok and core.random_bytes and core.hex then return core.hex(core.random_bytes(16)) end
  return str_format("%d%09d", os.time(), math.random(0, 999999999))
end

local function log_lines(env, text)
  if not env.log or text == "" then return end
  for line in text:gmatch("[^\n]+") do env.log(line) end
end

function _M.execute(st, rctx, env)
  local sched = env.sched or require "luabatch.workflow.sched"
  if type(st.run) ~= "string" then
    return nil, { name = "StageError", message = "py stage: 'run' must be a string of Python code" }
  end
  local vars, err = {}, nil
  if st.vars ~= nil then
    vars, err = stage.render_or_error(env, st.vars, rctx)
    if vars == nil then return nil, err end
    if type(vars) ~= "table" then
      return nil, { name = "StageError", message = "py stage: 'vars' must be a map" }
    end
  end
  local code
  code, err = stage.render_or_error(env, bash.dedent(bash.strip_nl(st.run)), rctx)
  if code == nil then return nil, err end
  if type(code) ~= "string" then code = tostring(code) end

  local marker = "<<<luabatch-py-result-" .. random_hex() .. ">>>"
  local ok, input = pcall(cjson.encode, { code = code, vars = next(vars) and vars or stage.object(), marker = marker })
  if not ok then
    return nil, { name = "StageError", message = "py stage: vars cannot be passed as JSON: " .. tostring(input) }
  end
  if env.cancelled and env.cancelled() then
    return nil, { name = "StageCancelError", message = "Execution was canceled: py stage not started", status = "CANCEL" }
  end
  local getenv = env.getenv or os.getenv
  local python = getenv("LUABATCH_PYTHON") or "python3"
  if python == "" then python = "python3" end
  local r, msg, ecode = sched.exec({ python, "-c", _M.WRAPPER },
    { stdin = input, cwd = env.cwd, env = { PYTHONIOENCODING = "utf-8" }, timeout = st.timeout })
  if not r then
    if ecode == "ECANCELED" then
      return nil, { name = "StageCancelError", message = "Execution was canceled: " .. tostring(msg), status = "CANCEL" }
    end
    return nil, { name = "StageError",
      message = str_format("py stage needs %s: %s (install python3 or set LUABATCH_PYTHON)", python, tostring(msg)) }
  end
  local at = str_find(r.stdout, "\n" .. marker .. "\n", 1, true)
  log_lines(env, at and str_sub(r.stdout, 1, at - 1) or r.stdout)
  log_lines(env, r.stderr)
  if r.timed_out then
    return nil, { name = "StageTimeoutError", message = str_format("py stage timed out after %s s (killed by signal %d)",
      tostring(r.timed_out), r.signal or 0) }
  end
  if not at then
    local how = r.signal and ("killed by signal " .. r.signal) or ("exit code " .. tostring(r.exit))
    local tail = bash.strip_nl(r.stderr)
    if #tail > 2000 then tail = "..." .. str_sub(tail, -2000) end
    return nil, { name = "StageError",
      message = str_format("py stage: %s ended without a result (%s)%s", python, how,
        tail ~= "" and (": " .. tail) or "") }
  end
  local ok2, res = pcall(cjson.decode, str_sub(r.stdout, at + #marker + 2))
  if not ok2 or type(res) ~= "table" then
    return nil, { name = "StageError", message = "py stage: unreadable result from the wrapper: " .. tostring(res) }
  end
  if type(res.error) == "table" then
    return nil, { name = tostring(res.error.name), message = tostring(res.error.message) }
  end
  local outputs = restore(res.outputs or {})
  if type(outputs) ~= "table" or outputs[1] ~= nil then outputs = stage.object() end
  return stage.object(outputs)
end

return _M
