-- luabatch.cli.runs: `luabatch runs [--json] [--limit N] [--home DIR]`
--
--   local code = require("luabatch.cli.runs").run({ "--json" }, env)
--
-- The runs of the journal home, newest first: id, workflow, started,
-- duration, status (RUNNING while no end is journaled), the jobs
-- ok/failed and when `luabatch cleanup` deleted its files (CLEANED; its
-- journal kept).  With --json: [ { run_id, workflow, started, ended,
-- status, jobs, cleaned } ] on stdout.  Only the journals are read.  Exit codes: 0, 2 bad
-- usage.  env: as luabatch.cli.store.

local args = require "luabatch.cli.args"
local store = require "luabatch.cli.store"

local _M = { _VERSION = "0.1.0" }

local type = type
local ipairs = ipairs
local tonumber = tonumber
local str_format = string.format

_M.usage = [==[
usage: luabatch runs [--json] [--limit N] [--home DIR]

List the runs journaled under the journal home (runs with Batch jobs),
newest first: id, workflow, start, duration, status, jobs ok/failed, and
when `luabatch cleanup` deleted the run's files (CLEANED).

options:
  --json        print them as JSON on stdout
  --limit N     the N newest only (default 50; 0: all)
  --home DIR    the journal home (default LUABATCH_HOME, else ~/.luabatch)
  -h, --help    this text
]==]

local function check_limit(v)
  local n = tonumber(v)
  if not n or n < 0 or n ~= math.floor(n) or n >= 2 ^ 53 then
    return nil, "--limit wants a whole number >= 0, got '" .. v .. "'"
  end
  return n
end

local function duration(r)
  local t0, t1 = tonumber(r.started), tonumber(r.ended or r.last)
  if not t0 or not t1 then return "-" end
  return require("luabatch.pretty").secs(t1 - t0)
end

function _M.run(argv, env)
  env = env or {}
  local out, err = store.io(env)
  local o, pos = args.parse(argv, { ["--json"] = "flag", ["--home"] = "value",
    ["--limit"] = { "value", check = check_limit } })
  if not o then
    err("luabatch runs: " .. pos .. "\n" .. _M.usage)
    return 2
  end
  if o.help then out(_M.usage) return 0 end
  if #pos > 0 then
    err("luabatch runs: unexpected argument '" .. pos[1] .. "' (luabatch status RUN_ID shows one run)\n")
    return 2
  end
  local rows = require("luabatch.api.runs").list({ home = store.home(o, env), limit = o.limit or 50 })
  for _, r in ipairs(rows) do r.duration = duration(r) end
  if o.json then
    local json = require "luabatch.json"
    local list_out = json.list({})
    for i, r in ipairs(rows) do
      list_out[i] = { run_id = r.run_id, workflow = r.workflow, started = r.started, ended = r.ended,
                      status = r.status, jobs = r.jobs, cleaned = r.cleaned }
    end
    out(json.encode(list_out, { indent = "  " }) .. "\n")
    return 0
  end
  if #rows == 0 then
    out("no runs under " .. store.home(o, env) .. "/runs\n")
    return 0
  end
  local tabular = require "luabatch.cli.tabular"
  local cells = {}
  for _, r in ipairs(rows) do
    local jobs = type(r.jobs) == "table" and str_format("%d/%d", tonumber(r.jobs.ok) or 0, tonumber(r.jobs.failed) or 0)
      or "-"
    cells[#cells + 1] = { r.run_id, tabular.cell(r.workflow), store.iso(r.started), r.duration, r.status, jobs,
      r.cleaned and store.iso(r.cleaned) or "" }
  end
  out(tabular.render({ "RUN", "WORKFLOW", "STARTED", "DURATION", "STATUS", "JOBS OK/FAILED", "CLEANED" }, cells,
    { width = tabular.width(env), shrink = { 2 }, ellipsis = tabular.ellipsis(env) }))
  return 0
end

return _M
