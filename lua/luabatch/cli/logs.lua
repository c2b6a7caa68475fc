-- luabatch.cli.logs: `luabatch logs RUN_ID [--job KEY|JOB_ID|BATCH_ID] [--since WHEN] [-f] [--home DIR]`
--
--   local code = require("luabatch.cli.logs").run({ run_id, "-f" }, env)
--
-- Prints the CloudWatch log events of a run's Batch jobs.  The streams come
-- from DescribeJobs (every attempt's container.logStreamName, and each child
-- of an array job); the group from the job's awslogs options, else the
-- run's "config" event (log_group), else /aws/batch/job.  Each line starts
-- with its event's time (ISO 8601 UTC, seconds: "2026-12-06T04:16:41Z ",
-- as aws logs tail shows it; there is no switch to leave it out, as there
-- is none there); with several jobs then "[key] " (array children:
-- "[key:i] ").  --since WHEN (10m, 2h, 1d, 30s, 1w, or an ISO 8601 time:
-- 2026-12-06T04:00:00Z, 2026-12-06T04:00, 2026-12-06; no zone is UTC) is
-- GetLogEvents' startTime: older events are not read.
-- -f follows: new events are printed as they come until every selected job
-- is SUCCEEDED or FAILED (or Ctrl-C).
--
-- Exit codes: 0 printed, 1 a log or DescribeJobs call failed, 2 bad usage
-- (a --since that is neither a duration nor a time), unknown run or no job
-- matching --job.
--
-- env: as luabatch.cli.store, plus sleep = function(s), interval (s, -f
-- polling period, default 2) and now = function() -> epoch s (--since).

local args = require "luabatch.cli.args"
local store = require "luabatch.cli.store"
local log = require "luabatch.log"
local time = require "luabatch.aws.time"

local _M = { _VERSION = "0.1.0" }

local ipairs = ipairs
local require = require
local tostring = tostring
local tonumber = tonumber
local str_format = string.format
local str_gsub = string.gsub
local str_match = string.match
local floor = math.floor

_M.usage = [==[
usage: luabatch logs RUN_ID [--job KEY|JOB_ID|BATCH_ID] [--since WHEN] [-f] [--home DIR]

Print the CloudWatch log events of a run's Batch jobs (every attempt),
each line after its time (UTC, ISO 8601).

options:
  --job SEL     only this job: a journal key (job/strategy/attempt), a
                workflow job id (all its strategies) or a Batch job id
  --since WHEN  only events from then on: a duration back from now (30s,
                10m, 2h, 1d, 1w) or a time (2026-12-06T04:00:00Z,
                2026-12-06T04:00, 2026-12-06; UTC unless a zone is given)
  -f, --follow  keep printing new events until every job has finished
  --home DIR    the journal home (default LUABATCH_HOME, else ~/.luabatch)
  -h, --help    this text

With several jobs each line has "[KEY] " after its time.
Exit codes: 0 printed, 1 a call to AWS failed, 2 bad usage or unknown run.
]==]

local UNITS = { s = 1, m = 60, h = 3600, d = 86400, w = 604800 }

--- since(text, now) -> epoch ms | nil, message: a duration back from now
-- (epoch s) -- "30s", "10m", "2h", "1d", "1w" -- or an ISO 8601 time
-- (a date alone is its midnight; no zone is UTC)
function _M.since(text, now)
  local bad = "a duration (30s, 10m, 2h, 1d, 1w) or an ISO 8601 time (2026-12-06T04:00:00Z) expected, got '"
    .. tostring(text) .. "'"
  if type(text) ~= "string" then return nil, bad end
  local n, u = str_match(text, "^(%d+)([smhdw])$")
  if n then
    local t = now - tonumber(n) * UNITS[u]
    if t < 0 then return nil, "'" .. text .. "' reaches before 1970" end
    return floor(t * 1000)
  end
  local iso = text
  if str_match(iso, "^%d%d%d%d%-%d%d%-%d%d$") then iso = iso .. "T00:00:00Z" end
  local hm, rest = str_match(iso, "^(%d%d%d%d%-%d%d%-%d%d[Tt ]%d%d:%d%d)(.*)$")
  if hm and not str_match(rest, "^:%d%d") then iso = hm .. ":00" .. rest end
  local t = time.parse_iso8601(iso)
  if not t then return nil, bad end
  return floor(t * 1000)
end

--- line(ev, label) -> "2026-12-06T04:16:41Z [label] message" (no time when
-- the event has none; no label when nil)
function _M.line(ev, label)
  local msg = str_gsub(tostring(ev.message or ""), "\n$", "")
  if label then msg = "[" .. label .. "] " .. msg end
  local ts = tonumber(ev.timestamp)
  if ts then msg = time.format_iso8601(ts / 1000) .. " " .. msg end
  return msg
end


function _M.run(argv, env)
  env = env or {}
  local out, err = store.io(env)
  local o, pos = args.parse(argv, { ["--job"] = "value", ["--follow"] = { "flag", alias = "-f" },
    ["--home"] = "value", ["--since"] = "value" })
  if not o then
    err("luabatch logs: " .. pos .. "\n" .. _M.usage)
    return 2
  end
  if o.help then out(_M.usage) return 0 end
  if #pos ~= 1 then
    err("luabatch logs: " .. (#pos == 0 and "a RUN_ID is required" or "one RUN_ID expected") .. "\n" .. _M.usage)
    return 2
  end
  local follow = o.follow
  local start_ms
  if o.since then
    local serr
    start_ms, serr = _M.since(o.since, env.now and env.now() or os.time())
    if not start_ms then
      err("luabatch logs: --since: " .. serr .. "\n")
      return 2
    end
  end
  local home = store.home(o, env)
  local j, st = store.open_run("logs", pos[1], home, err)
  if not j then return st end

  local ops = store.ops(st)
  local jobs = ops.select_jobs(st, o.job)
  if #jobs == 0 then
    if o.job then
      err(str_format("luabatch logs: no job '%s' with a Batch id in run %s\n", o.job, pos[1]))
      return 2
    end
    err(str_format("luabatch logs: run %s has no submitted Batch job\n", pos[1]))
    return 0
  end
  local clients_for = ops.clients_for(st, env)
  local units = {}
  for _, js in ipairs(jobs) do
    local c, cfg = clients_for(js.job_id)
    if not c then
      err(str_format("luabatch logs: run %s has no config event for job %s (region, endpoints)\n",
        pos[1], tostring(js.job_id)))
      return 1
    end
    units[#units + 1] = { label = js.key, js = js, id = js.batch_job_id, client = c, cfg = cfg,
      tailers = {}, streams = {} }
  end

  local rc = 0
  if not ops.describe_units(units, err) then rc = 1 end
  local all = {}
  ops.expand_arrays(units, all)
  units = all
  if #units ~= #jobs then
    if not ops.describe_units(units, err) then rc = 1 end
  end
  local prefix = #units > 1

  local core = require "luabatch.core"
  local sleep = env.sleep or core.sleep
  local interval = env.interval or 2

  local function emit(u, evs)
    for _, ev in ipairs(evs) do out(_M.line(ev, prefix and u.label or nil) .. "\n") end
  end

  -- read what is new in every stream of u (tailers remember their place)
  local function pump(u)
    local d = u.desc
    if not d then return end
    local group = ops.group_of(d, u.cfg)
    for _, s in ipairs(ops.streams_of(d)) do
      local t = u.tailers[s]
      if not t then
        t = u.client.logs:tail(group, s, { start_time = start_ms })
        u.tailers[s] = t
        u.streams[#u.streams + 1] = s
      end
    end
    for _, s in ipairs(u.streams) do
      local evs, msg = u.tailers[s]:poll()
      if not evs then
        err("luabatch logs: " .. log.redact(msg) .. "\n")
        rc = 1
      else
        emit(u, evs)
      end
    end
  end

  if not follow then
    for _, u in ipairs(units) do pump(u) end
    return rc
  end

  while true do
    local pending = 0
    for _, u in ipairs(units) do
      if not u.done then
        pump(u)
        if u.desc and ops.TERMINAL[u.desc.status or ""] then
          u.done = true
        else
          pending = pending + 1
        end
      end
    end
    if pending == 0 then break end
    if core.interrupted and core.interrupted() then break end
    local ok = sleep(interval)
    if ok == nil and core.interrupted and core.interrupted() then break end
    if not ops.describe_units(units, err) then rc = 1 end
  end
  return rc
end

return _M
