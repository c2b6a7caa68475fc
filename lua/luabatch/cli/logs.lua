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
-- env: as luabatch.cli.runs, plus sleep = function(s) and interval (s, -f
-- polling period, default 2).

local args = require "luabatch.cli.args"
local batch = require "luabatch.batch"
local runs = require "luabatch.cli.runs"
local log = require "luabatch.log"

local _M = { _VERSION = "0.1.0" }

local type = type
local pairs = pairs
local ipairs = ipairs
local require = require
local tostring = tostring
local str_format = string.format
local str_gsub = string.gsub
local floor = math.floor

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

local TERMINAL = batch.TERMINAL

local function select_jobs(st, sel)
  local out = {}
  for _, key in ipairs(st.order) do
    local js = st.jobs[key]
    if js.batch_job_id and (sel == nil or key == sel or js.job_id == sel or js.batch_job_id == sel) then
      out[#out + 1] = js
    end
  end
  return out
end

-- The log group of a described job (its awslogs options), else the run's.
local function group_of(d, cfg)
  local batch = require "luabatch.batch"
  local lc = type(d.container) == "table" and d.container.logConfiguration
  if type(lc) == "table" and type(lc.options) == "table" then
    local g = lc.options["awslogs-group"]
    if type(g) == "string" and g ~= "" then return g end
  end
  if cfg and type(cfg.log_group) == "string" and cfg.log_group ~= "" then return cfg.log_group end
  return batch.DEFAULT_LOG_GROUP
end

-- Every log stream of a described job, in attempt order.
local function streams_of(d)
  local list, seen = {}, {}
  local function add(s)
    if type(s) == "string" and s ~= "" and not seen[s] then
      seen[s] = true
      list[#list + 1] = s
    end
  end
  if type(d.attempts) == "table" then
    for _, a in ipairs(d.attempts) do
      if type(a) == "table" and type(a.container) == "table" then add(a.container.logStreamName) end
    end
  end
  if type(d.container) == "table" then add(d.container.logStreamName) end
  return list
end

-- Units to print: one per plain job, one per child of an array job.
-- unit = { label, js, id, client, cfg, desc, tailers = { [stream] = t }, streams = {...}, done }
local function describe_units(units, err)
  local groups, gorder = {}, {}
  for _, u in ipairs(units) do
    if not u.done then
      local g = groups[u.client]
      if not g then
        g = { ids = {}, by_id = {} }
        groups[u.client] = g
        gorder[#gorder + 1] = u.client
      end
      if not g.by_id[u.id] then g.ids[#g.ids + 1] = u.id end
      g.by_id[u.id] = u
    end
  end
  local ok = true
  for _, c in ipairs(gorder) do
    local g = groups[c]
    local ans, msg = c.batch:describe_jobs_all(g.ids)
    if not ans then
      err("luabatch logs: " .. log.redact(msg) .. "\n")
      ok = false
    else
      for _, d in ipairs(ans.jobs or {}) do
        local u = g.by_id[d.jobId]
        if u then u.desc = d end
      end
    end
  end
  return ok
end

local function expand_arrays(units, sel_units)
  -- an array parent is replaced by its children "<id>:<i>"
  for _, u in ipairs(units) do
    local d = u.desc
    local size = d and type(d.arrayProperties) == "table" and d.arrayProperties.size
    if type(size) == "number" and size > 0 and not u.child then
      for i = 0, floor(size) - 1 do
        sel_units[#sel_units + 1] = { label = u.label .. ":" .. i, js = u.js, id = u.id .. ":" .. i,
          client = u.client, cfg = u.cfg, tailers = {}, streams = {}, child = true }
      end
    else
      sel_units[#sel_units + 1] = u
    end
  end
end

function _M.run(argv, env)
  env = env or {}
  local out, err = runs.io(env)
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
  local home = runs.home(o, env)
  local j, st = runs.open_run("logs", pos[1], home, err)
  if not j then return st end

  local jobs = select_jobs(st, o.job)
  if #jobs == 0 then
    if o.job then
      err(str_format("luabatch logs: no job '%s' with a Batch id in run %s\n", o.job, pos[1]))
      return 2
    end
    err(str_format("luabatch logs: run %s has no submitted Batch job\n", pos[1]))
    return 0
  end
  local clients_for = runs.clients_for(st, env)
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
  if not describe_units(units, err) then rc = 1 end
  local all = {}
  expand_arrays(units, all)
  units = all
  if #units ~= #jobs then
    if not describe_units(units, err) then rc = 1 end
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
    local group = group_of(d, u.cfg)
    for _, s in ipairs(streams_of(d)) do
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
        if u.desc and TERMINAL[u.desc.status or ""] then
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
    if not describe_units(units, err) then rc = 1 end
  end
  return rc
end

return _M
