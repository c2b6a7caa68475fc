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

local args = require "luabatch.cli.args"
local store = require "luabatch.cli.store"

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

function _M.run(argv, env)
  env = env or {}
  local out, err = store.io(env)
  local o, words = args.parse(argv, { ["--home"] = "value" }, { keep_unknown = true })
  if not o then
    err("luabatch attach: " .. words .. "\n" .. _M.usage)
    return 2
  end
  if o.help then out(_M.usage) return 0 end
  local run_id
  local pass = {}                       -- everything else goes to `luabatch run`
  for _, a in ipairs(words) do
    if not run_id and str_sub(a, 1, 1) ~= "-" then run_id = a else pass[#pass + 1] = a end
  end
  if not run_id then
    err("luabatch attach: a RUN_ID is required\n" .. _M.usage)
    return 2
  end
  local home = store.home(o, env)
  local j, code = store.open_run("attach", run_id, home, err)
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
  local run_argv = { "--resume", run_id }
  for _, a in ipairs(pass) do run_argv[#run_argv + 1] = a end
  return require("luabatch.cli.run").run(run_argv, renv)
end

return _M
