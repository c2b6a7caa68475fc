-- luabatch.cli.store: the run store the run commands share (status, logs,
-- cancel, cleanup, attach): a run's journal opened by id, and the hooks of
-- the runner that journaled its jobs (luabatch.runner.ops: clients from the
-- journal's config events, the refresh, terminate, logs, storage).
--
--   local store = require "luabatch.cli.store"
--   local out, err = store.io(env)
--   local j, st, events = store.open_run("status", run_id, store.home(o, env), err)  -- nil, exit code
--   local ops = store.ops(st)                         -- runner/aws_batch/ops.lua today
--   local ok, msg = ops.refresh(st, ops.clients_for(st, env))
--
-- env (all optional, the seam for tests): stdout, stderr (function(s) or
-- anything with :write), getenv, clients = function(cfg_event) -> { batch =,
-- logs =, s3 = } (default: luabatch.clients), sleep, now.

local journal = require "luabatch.journal"

local _M = { _VERSION = "0.1.0" }

local type = type
local pairs = pairs
local ipairs = ipairs
local require = require
local tostring = tostring
local str_format = string.format
local os_date = os.date
local floor = math.floor

---------------------------------------------------------------------------
-- Shared plumbing
---------------------------------------------------------------------------

--- io(env) -> out, err writers
function _M.io(env)
  env = env or {}
  local writer = require("luabatch.cli.out").writer
  return writer(env.stdout or io.stdout, true), writer(env.stderr or io.stderr, true)
end

--- The journal home of a command: --home DIR, else journal.home(getenv).
function _M.home(o, env)
  if o.home and o.home ~= "" then return o.home end
  return journal.home(env and env.getenv)
end

--- open_run(cmd, run_id, home, err) -> j, state, events | nil, exit code
-- (message printed).  The journal is read once: state is its events folded.
function _M.open_run(cmd, run_id, home, err)
  local j, msg, code = journal.open(run_id, { home = home })
  if not j then
    if code == "ENOENT" then
      err(str_format("luabatch %s: no run '%s' in %s\n", cmd, run_id, home))
    else
      err(str_format("luabatch %s: %s\n", cmd, tostring(msg)))
    end
    return nil, 2
  end
  local events = j:events()
  return j, journal.fold(events), events
end

--- ops(st) -> the run's runner hooks (luabatch.api.runs.ops)
function _M.ops(st) return require("luabatch.api.runs").ops(st) end

--- A readable time (UTC) of epoch seconds.
function _M.iso(t)
  if type(t) ~= "number" then return "-" end
  return os_date("!%Y-%m-%dT%H:%M:%SZ", floor(t))
end

--- cleaned(st) -> the last "cleanup" event `luabatch cleanup` journaled
-- (scope "run": the run's files are gone, its journal kept), or nil
function _M.cleaned(st)
  local last
  for _, e in ipairs(st.cleanups or {}) do
    if type(e) == "table" and e.scope == "run" then last = e end
  end
  return last
end

return _M
