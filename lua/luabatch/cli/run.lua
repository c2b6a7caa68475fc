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
require "luabatch.runner"     -- the runners, registered with the loader and the engine
local writer = require("luabatch.cli.out").writer

local _M = { _VERSION = "0.1.0" }

local type = type
local pairs = pairs
local ipairs = ipairs
local pcall = pcall
local require = require
local tostring = tostring
local tonumber = tonumber
local str_format = string.format
local tbl_concat = table.concat

_M.usage = [==[
usage: luabatch run FILE [options]
       luabatch run --resume RUN_ID [--follow] [--json]

Run a workflow (ddeutil-workflow YAML): jobs run where their runs-on says
(local: this machine; aws_batch: AWS Batch), or where --runs-on says.

options:
  --job ID          run only this job (its needs are not run)
  --param K=V       a workflow param (repeatable); V is coerced to the
                    declared type (JSON for map and array params)
  --conf DIR        search DIR for workflows: FILE may then be a workflow
                    name; trigger stages search it too
  --json            print the final context as JSON on stdout
  --runs-on TYPE    run every job on TYPE: local or aws_batch
  --with K=V        a runs-on `with:` field for every job (repeatable; the
                    job's own with: wins), e.g. --with s3_bucket=my-bucket
  --policy FILE     a Lua file returning a table that overrides the AWS
                    Batch policy (naming, retries, cleanup, ...)
  --follow, -f      print the log lines of running Batch jobs
  --run-id ID       the run's id (default: a new one)
  --resume RUN_ID   resume a run whose client died: its plan rebuilt from
                    the journal, the strategies that had not ended taken
                    up (Batch jobs watched, nothing submitted twice)
  -h, --help        this text

A run with Batch jobs is journaled under LUABATCH_HOME (default
~/.luabatch/runs/RUN_ID); its id is printed on stderr ("run RUN_ID").

Call stages find their Lua functions in LUABATCH_REGISTRY (default ./registry).
Exit codes: 0 success (or every job skipped), 1 a job failed, 2 bad input.
]==]

local function default_isatty(fd)
  local ok, le = pcall(require, "luabatch.lineedit")
  return ok and type(le) == "table" and le.isatty and le.isatty(fd) or false
end

--- JSON text of a context value (luabatch.json); opts.indent = "  " for pretty output.
function _M.json(v, opts)
  return require("luabatch.json").encode(v, opts)
end

---------------------------------------------------------------------------
-- Arguments
---------------------------------------------------------------------------

local function check_runs_on(v)
  if v ~= "local" and v ~= "aws_batch" then
    return nil, str_format("--runs-on '%s': expected local or aws_batch", v)
  end
  return v
end

local function check_run_id(v)
  if not v:match("^[%w][%w_-]*$") then
    return nil, str_format("--run-id '%s': letters, digits, '-' and '_' only", v)
  end
  return v
end

local SPEC = {
  ["--json"] = "flag",
  ["--job"] = { "value", alias = "-j" },
  ["--conf"] = { "value", alias = "-c" },
  ["--runs-on"] = { "value", key = "runs_on", check = check_runs_on },
  ["--with"] = { "map", pattern = "^([%w_]+)=(.*)$" },
  ["--run-id"] = { "value", key = "run_id", check = check_run_id },
  ["--policy"] = { "value", key = "policy_file" },
  ["--follow"] = { "flag", alias = "-f" },
  ["--resume"] = "value",
  ["--param"] = { "map", alias = "-p", key = "params" },
}

local function parse_args(argv)
  local o, pos = require("luabatch.cli.args").parse(argv, SPEC)
  if not o then return nil, pos end
  o.params, o.with = o.params or {}, o.with or {}
  if #pos > 1 then return nil, "unexpected argument '" .. pos[2] .. "' (one workflow at a time)" end
  o.target = pos[1]
  if not o.help and not o.target and not o.resume then return nil, "a workflow FILE is required" end
  return o
end

---------------------------------------------------------------------------
-- Progress
---------------------------------------------------------------------------

local fmt_secs = require("luabatch.pretty").secs
local first_error = require("luabatch.workflow.stage").first_error

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

-- A journaled run's local jobs: each finished one's record is journaled
-- ("job" event); on --resume one with a journaled SUCCESS or SKIP record is
-- taken as done (its side effects happened already), one that failed or
-- never finished runs again.  -> records to start with, on_job_done
local function journaled_local(jr, resume)
  local done = {}
  for id, rec in pairs(resume and jr:state().local_jobs or {}) do
    if rec.status == "SUCCESS" or rec.status == "SKIP" then done[id] = rec end
  end
  return done, function(job_id, record, runs_on)
    if runs_on == "local" then jr:append({ ev = "job", job_id = job_id, status = record.status, record = record }) end
  end
end

-- What can be checked before anything starts (no run id, no journal):
-- every --param is declared, and the runs-on `with:` of each job that runs
-- (--with under the job's own) passes its runner's schema -- the fields a
-- template gives are checked when rendered.  -> nil | "FILE...: message"
local function preflight(model, o)
  local file = tostring(model.file or o.target)
  for k in pairs(o.params) do
    if not (model.params and model.params[k]) then
      local names = {}
      for _, n in ipairs(model.param_order or {}) do names[#names + 1] = n end
      return str_format("%s: --param %s: the workflow has no such param (params: %s)", file, k,
        #names > 0 and table.concat(names, ", ") or "none")
    end
  end
  local registry = require "luabatch.runner"
  local schema = require "luabatch.runner.schema"
  for _, id in ipairs(model.job_order or {}) do
    local jd = model.jobs[id]
    local t = o.runs_on or (jd.runs_on and jd.runs_on.type) or "local"
    local spec = (o.job == nil or o.job == id) and registry.schema(t)
    if spec then
      local with, later, given = {}, {}, {}
      for k, v in pairs(o.with) do with[k], given[k] = v, true end
      for k, v in pairs(jd.runs_on and jd.runs_on.with or {}) do with[k], given[k] = v, nil end
      for k, v in pairs(with) do
        if type(v) == "string" and v:find("${{", 1, true) then with[k], later[k] = nil, true end
      end
      local ok, field, msg = schema.check(spec, with)
      if not ok and not later[field] then
        local p = jd.pos or {}
        return str_format("%s:%d:%d: job '%s': runs-on %s: with.%s %s%s", file, p.line or 1, p.col or 1, id, t,
          field, msg, given[field] and " (from --with)" or "")
      end
    end
  end
  return nil
end

-- Does any job of this run go to AWS Batch (then the run is journaled)?
local function uses_batch(model, o)
  if o.runs_on then return o.runs_on == "aws_batch" end
  for _, id in ipairs(model.job_order or {}) do
    if o.job == nil or o.job == id then
      local j = model.jobs[id]
      if j and j.runs_on and j.runs_on.type == "aws_batch" then return true end
    end
  end
  return false
end

local function absolute(path)
  if path == nil or path:sub(1, 1) == "/" then return path end
  local cwd = require("luabatch.core").getcwd() or "."
  return cwd .. "/" .. (path:gsub("^%./", ""))
end

function _M.run(args, env)
  env = env or {}
  local out_w = writer(env.stdout or io.stdout, true)
  local err_w = writer(env.stderr or io.stderr, true)
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
  local journal = require "luabatch.journal"
  local getenv = env.getenv or os.getenv
  local jr, jerr
  if o.resume then
    jr, jerr = journal.open(o.resume, { home = journal.home(getenv) })
    if not jr then
      err_w("luabatch run: --resume: " .. tostring(jerr) .. "\n")
      return 2
    end
    local run = jr:state().run
    if type(run) ~= "table" or not run.file then
      err_w("luabatch run: --resume " .. o.resume .. ": the journal has no run record\n")
      return 2
    end
    o.target, o.conf, o.job, o.runs_on = run.file, run.conf, run.job, run.runs_on
    o.params, o.with, o.policy_file, o.run_id = run.params or {}, run.with or {}, run.policy_file, o.resume
  end
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
  local bad = preflight(model, o)
  if bad then
    err_w("luabatch run: " .. bad .. "\n")
    return 2
  end
  local policy
  if o.policy_file then
    local chunk, cerr = loadfile(o.policy_file, "t")
    local ok, p = false, cerr
    if chunk then ok, p = pcall(chunk) end
    if not ok or type(p) ~= "table" then
      err_w(str_format("luabatch run: --policy %s: %s\n", o.policy_file,
        ok and "the file must return a table" or tostring(p)))
      return 2
    end
    policy = p
  end
  local tty = isatty(2) and true or false
  local run_id = o.run_id or journal.new_run_id()
  local ropts = { params = o.params, job = o.job, conf = o.conf, getenv = getenv,
                  run_id = run_id, runs_on = o.runs_on, with = o.with,
                  runner_opts = { policy = policy, follow = o.follow, resume = o.resume ~= nil } }
  local failures = require "luabatch.cli.failures"
  local caught = failures.catcher()
  local record_failure = caught.progress
  ropts.progress = record_failure
  if tty then
    local show = progress_printer(err_w)
    ropts.progress = function(event, info)
      record_failure(event, info)
      show(event, info)
    end
    ropts.log = function(line) err_w("      | " .. tostring(line):gsub("\n", "\n      | ") .. "\n") end
    ropts.output_line = function(line) err_w("      | " .. tostring(line) .. "\n") end
  elseif o.follow then
    ropts.log = function(line) err_w(tostring(line) .. "\n") end
  end
  if uses_batch(model, o) then
    if not jr then
      jr, jerr = journal.open(run_id, { home = journal.home(getenv), create = true })
      if not jr then
        err_w("luabatch run: journal: " .. tostring(jerr) .. "\n")
        return 2
      end
      local ok, aerr = jr:append({ ev = "run", run_id = run_id, file = absolute(model.file or o.target),
        conf = o.conf and absolute(o.conf), params = o.params, job = o.job, runs_on = o.runs_on,
        with = o.with, policy_file = o.policy_file and absolute(o.policy_file),
        workflow = model.name })
      if not ok then
        err_w("luabatch run: journal: " .. tostring(aerr) .. "\n")
        return 2
      end
    end
    ropts.runner_opts.journal = jr
    -- `luabatch cancel RUN` from another process: its reason, or nil
    ropts.cancelled = function() return jr:cancel_requested() end
    ropts.jobs, ropts.on_job_done = journaled_local(jr, o.resume ~= nil)
    -- every plan event is journaled; a resume rebuilds the plan from them
    -- (a journal without any, from an older client: the local jobs' records)
    ropts.on_event = function(ev)
      local ok, msg = jr:append({ ev = "plan", event = ev })
      if not ok then log.warn("journal: cannot record a %s event: %s", tostring(ev.type), tostring(msg)) end
    end
    if o.resume then
      local replay = {}
      for _, e in ipairs(jr:events()) do
        if e.ev == "plan" and type(e.event) == "table" then replay[#replay + 1] = e.event end
      end
      if #replay > 0 then ropts.replay, ropts.jobs = replay, nil end
    end
    err_w(str_format("run %s%s\n", run_id, o.resume and " (resumed)" or ""))
  end
  local ctx, rerr = engine.run(model, ropts)
  if jr then
    -- the run's summary for `luabatch runs`: its jobs counted by status
    local counts = { ok = 0, failed = 0, skipped = 0, cancelled = 0 }
    local NAMES = { SUCCESS = "ok", FAILED = "failed", SKIP = "skipped", CANCEL = "cancelled" }
    for _, rec in pairs(ctx and ctx.jobs or {}) do
      local n = NAMES[type(rec) == "table" and rec.status or ""]
      if n then counts[n] = counts[n] + 1 end
    end
    jr:append({ ev = "end", status = ctx and ctx.status or "ERROR", jobs = counts })
    jr:close()
  end
  if not ctx then
    err_w("luabatch run: " .. tostring(rerr) .. "\n")
    return 2
  end
  if ctx.status == "FAILED" then
    err_w(failures.report(ctx, model, { caught = caught, run_id = jr and run_id or nil }))
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
