-- luabatch.cli.logs: `luabatch logs RUN_ID [--job KEY|JOB_ID|BATCH_ID] [-f] [--home DIR]`
--
--   local code = require("luabatch.cli.logs").run({ run_id, "-f" }, env)
--
-- Prints the CloudWatch log events of a run's Batch jobs.  The streams come
-- from DescribeJobs (every attempt's container.logStreamName, and each child
-- of an array job); the group from the job's awslogs options, else the
-- run's "config" event (log_group), else /aws/batch/job.  With several jobs
-- each line is prefixed with "[key] " (array children: "[key:i] ").
-- -f follows: new events are printed as they come until every selected job
-- is SUCCEEDED or FAILED (or Ctrl-C).
--
-- Exit codes: 0 printed, 1 a log or DescribeJobs call failed, 2 bad usage,
-- unknown run or no job matching --job.
--
-- env: as luabatch.cli.store, plus sleep = function(s) and interval (s, -f
-- polling period, default 2).

local args = require "luabatch.cli.args"
local store = require "luabatch.cli.store"
local log = require "luabatch.log"

local _M = { _VERSION = "0.1.0" }

local ipairs = ipairs
local require = require
local tostring = tostring
local str_format = string.format
local str_gsub = string.gsub

_M.usage = [==[
usage: luabatch logs RUN_ID [--job KEY|JOB_ID|BATCH_ID] [-f] [--home DIR]

Print the CloudWatch log events of a run's Batch jobs (every attempt).

options:
  --job SEL     only this job: a journal key (job/strategy/attempt), a
                workflow job id (all its strategies) or a Batch job id
  -f, --follow  keep printing new events until every job has finished
  --home DIR    the journal home (default LUABATCH_HOME, else ~/.luabatch)
  -h, --help    this text

With several jobs each line starts with "[KEY] ".
Exit codes: 0 printed, 1 a call to AWS failed, 2 bad usage or unknown run.
]==]


function _M.run(argv, env)
  env = env or {}
  local out, err = store.io(env)
  local o, pos = args.parse(argv, { ["--job"] = "value", ["--follow"] = { "flag", alias = "-f" },
    ["--home"] = "value" })
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
    for _, ev in ipairs(evs) do
      local msg = str_gsub(tostring(ev.message or ""), "\n$", "")
      if prefix then out("[" .. u.label .. "] " .. msg .. "\n") else out(msg .. "\n") end
    end
  end

  -- read what is new in every stream of u (tailers remember their place)
  local function pump(u)
    local d = u.desc
    if not d then return end
    local group = ops.group_of(d, u.cfg)
    for _, s in ipairs(ops.streams_of(d)) do
      local t = u.tailers[s]
      if not t then
        t = u.client.logs:tail(group, s)
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
