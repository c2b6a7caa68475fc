-- luabatch.cli.attach: `luabatch attach RUN_ID [--follow] [--json] [--home DIR]`
--
--   local code = require("luabatch.cli.attach").run({ run_id, "--follow" }, env)
--
-- Picks up a run whose client died: the same as
-- `luabatch run --resume RUN_ID ...` (the run's journal gives the workflow,
-- params and options; jobs already submitted are watched and collected,
-- never submitted twice).  Other options are passed to `luabatch run`.
--
-- Exit codes: those of `luabatch run`; 2 bad usage or unknown run.
--
-- env: as luabatch.cli.run (stdout, stderr, getenv, isatty).

local status = require "luabatch.cli.status"

local _M = { _VERSION = "0.1.0" }

local ipairs = ipairs
local pairs = pairs
local require = require
local str_sub = string.sub

_M.usage = [==[
usage: luabatch attach RUN_ID [--follow] [--json] [--home DIR]

Resume a run whose client died: watch its Batch jobs, collect their
results and finish the run, submitting nothing twice.  The same as
`luabatch run --resume RUN_ID`; other options go to `luabatch run`.

options:
  --follow      print the jobs' log lines as they come
  --json        print the final context as JSON on stdout
  --home DIR    the journal home (default LUABATCH_HOME, else ~/.luabatch)
  -h, --help    this text

Exit codes: 0 success, 1 a job failed, 2 bad usage or unknown run.
]==]

function _M.run(args, env)
  env = env or {}
  local out, err = status.io(env)
  local run_id, home
  local pass = {}
  local i = 1
  while i <= #args do
    local a = args[i]
    if a == "-h" or a == "--help" then
      out(_M.usage)
      return 0
    elseif a == "--home" then
      i = i + 1
      home = args[i]
      if not home then err("luabatch attach: --home needs a value\n" .. _M.usage) return 2 end
    elseif str_sub(a, 1, 7) == "--home=" then
      home = str_sub(a, 8)
    elseif str_sub(a, 1, 1) ~= "-" and not run_id then
      run_id = a
    else
      pass[#pass + 1] = a
    end
    i = i + 1
  end
  if not run_id then
    err("luabatch attach: a RUN_ID is required\n" .. _M.usage)
    return 2
  end
  home = status.home({ home = home }, env)
  local j, code = status.open_run("attach", run_id, home, err)
  if not j then return code end
  j:close()

  -- luabatch run finds the journal through LUABATCH_HOME
  local getenv = env.getenv or os.getenv
  local renv = {}
  for k, v in pairs(env) do renv[k] = v end
  renv.getenv = function(name)
    if name == "LUABATCH_HOME" then return home end
    return getenv(name)
  end
  local argv = { "--resume", run_id }
  for _, a in ipairs(pass) do argv[#argv + 1] = a end
  return require("luabatch.cli.run").run(argv, renv)
end

return _M
