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
local next = next
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
       luabatch run [FILE] --resume RUN_ID|last [options]

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
  --resume RUN_ID   a run that ended (FAILED, CANCEL, or not): run it again
                    as a new run, reusing every job and strategy whose
                    result still holds (same definition, params, needed
                    results and runner: see the README); FILE, --param,
                    --with ... given change it, the rest is as it was.
                    A run whose client died (no end in its journal): take
                    it up where it was (Batch jobs watched, nothing
                    submitted twice).  `last`: the newest run (of FILE)
  -h, --help        this text

Every run is journaled under LUABATCH_HOME (default ~/.luabatch/runs/RUN_ID);
its id is printed on stderr ("run RUN_ID") when it has Batch jobs or stderr
is a terminal.  `luabatch runs` lists them.

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

-- The line of a stage that ended (a terminal shows them above the live
-- table) -> text
local function stage_line(info, model)
  local who = info.key or info.name or "?"
  local where = tostring(info.job or "?")
  if info.strategy and info.strategy ~= "EMPTY" then
    local jobdef = model.jobs and model.jobs[info.job]
    local combo = jobdef and require("luabatch.workflow.job").strategy(jobdef, info.strategy)
    where = require("luabatch.cli.failures").label(where, { matrix = combo and combo.values })
    if where == tostring(info.job) then where = where .. "[" .. tostring(info.strategy) .. "]" end
  end
  local line = str_format("  %s  %-24s %-7s %s", where, tostring(who), tostring(info.status), fmt_secs(info.seconds or 0))
  local m = (info.status == "FAILED" or info.status == "CANCEL") and first_error(info.errors)
  if m then line = line .. "  " .. (m:match("^[^\n]*") or m) end
  return line .. "\n"
end

---------------------------------------------------------------------------
-- Entry
---------------------------------------------------------------------------

-- The columns the live table on stderr may use: COLUMNS, else the terminal's.
local function live_width(env, getenv)
  local cols = tonumber(getenv("COLUMNS") or "")
  if cols and cols > 0 then return math.floor(cols) end
  local tw = env.term_width
  if not tw then
    local ok, le = pcall(require, "luabatch.lineedit")
    tw = ok and type(le) == "table" and le.term_width or nil
  end
  cols = tw and tw(2)
  return type(cols) == "number" and cols > 0 and cols or 80
end

local function absolute(path)
  if path == nil or path:sub(1, 1) == "/" then return path end
  local cwd = require("luabatch.core").getcwd() or "."
  return cwd .. "/" .. (path:gsub("^%./", ""))
end

-- A journaled run's jobs: each ended one's record and key are journaled
-- ("job" event: what a later --resume reuses).  Taking up a run of an
-- older client (no plan events), a local job with a journaled SUCCESS or
-- SKIP record is taken as done.  -> records to start with, on_job_done
local function journaled_jobs(jr, resume, tally)
  local done = {}
  for id, rec in pairs(resume and jr:state().local_jobs or {}) do
    if rec.status == "SUCCESS" or rec.status == "SKIP" then done[id] = rec end
  end
  return done, function(job_id, record, runs_on, how)
    how = how or {}
    if how.cached then tally.cached = tally.cached + 1 end
    tally.jobs = tally.jobs + 1
    local ok, msg = jr:append({ ev = "job", job_id = job_id, status = record.status, record = record,
                                runs_on = runs_on, key = how.key, cached = how.cached, reused = how.reused })
    if not ok then log.warn("journal: cannot record job %s: %s", tostring(job_id), tostring(msg)) end
  end
end

-- --resume RUN_ID|last -> the run's journal (opened) | nil, message
local function open_resumed(journal, home, which, file)
  if which == "last" then
    local want = file and absolute(file)
    for _, r in ipairs(journal.list(home)) do
      if want == nil or r.file == want then which = r.run_id; break end
    end
    if which == "last" then
      return nil, want and ("no journaled run of " .. want) or "no journaled run"
    end
  end
  return journal.open(which, { home = home })
end

-- o with what a resumed run's journal says, where the command line is
-- silent (an ended run: FILE, params and --with given change it).
local function resumed_options(o, run, ended)
  local params, with = {}, {}
  for k, v in pairs(run.params or {}) do params[k] = v end
  for k, v in pairs(run.with or {}) do with[k] = v end
  if ended then
    for k, v in pairs(o.params) do params[k] = v end
    for k, v in pairs(o.with) do with[k] = v end
  end
  o.target = ended and o.target or run.file
  o.conf, o.job, o.runs_on = o.conf or run.conf, o.job or run.job, o.runs_on or run.runs_on
  o.params, o.with, o.policy_file = params, with, o.policy_file or run.policy_file
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
  local home = journal.home(getenv)
  local jr, jerr, prev
  if o.resume then
    jr, jerr = open_resumed(journal, home, o.resume, o.target)
    if not jr then
      err_w("luabatch run: --resume: " .. tostring(jerr) .. "\n")
      return 2
    end
    local jst = jr:state()
    local run = jst.run
    if type(run) ~= "table" or not run.file then
      err_w("luabatch run: --resume " .. o.resume .. ": the journal has no run record\n")
      return 2
    end
    if jst.ended then
      -- an ended run: a new run reusing what still holds
      prev = { id = jr.run_id or run.run_id, cache = jst.finished }
      if next(jst.finished) == nil then
        err_w(str_format("luabatch run: warning: run %s recorded no job keys (an older client): every job runs again\n",
          prev.id))
      end
      jr = nil
      resumed_options(o, run, true)
    else
      if o.target or next(o.params) or next(o.with) then
        err_w(str_format("luabatch run: --resume %s: the run has not ended (its client died, or is alive): "
          .. "it is taken up as it was, without FILE, --param or --with\n", o.resume))
        return 2
      end
      resumed_options(o, run, false)
      o.run_id = jr.run_id or run.run_id
      if run.resumed_from then
        local pj = journal.open(run.resumed_from, { home = home })
        prev = { id = run.resumed_from, cache = pj and pj:state().finished or {} }
      end
    end
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
  local attach = jr ~= nil          -- taking up a run whose client died
  local run_id = o.run_id or journal.new_run_id()
  local ropts = { params = o.params, job = o.job, conf = o.conf, getenv = getenv,
                  run_id = run_id, runs_on = o.runs_on, with = o.with,
                  runner_opts = { policy = policy, follow = o.follow, resume = attach },
                  cache = prev and prev.cache }
  local failures = require "luabatch.cli.failures"
  local caught = failures.catcher()
  local record_failure = caught.progress
  -- the live view: a table redrawn in place on a terminal, else a line per change
  local view = require("luabatch.cli.live").new({ write = err_w, tty = tty, now = require("luabatch.workflow.stage").now,
    workflow = model.name, order = o.job and { o.job } or require("luabatch.workflow.plan").order(model),
    width = tty and live_width(env, getenv) or nil, ellipsis = require("luabatch.cli.tabular").ellipsis({ getenv = getenv }) })
  ropts.progress = function(event, info)
    record_failure(event, info)
    view.progress(event, info)
    if tty and event == "stage" then view.line(stage_line(info, model)) end
  end
  if tty then
    ropts.log = function(line) view.line("      | " .. tostring(line):gsub("\n", "\n      | ") .. "\n") end
    ropts.output_line = function(line) view.line("      | " .. tostring(line) .. "\n") end
  elseif o.follow then
    ropts.log = function(line) err_w(tostring(line) .. "\n") end
  end
  local batch = uses_batch(model, o)
  local tally = { jobs = 0, cached = 0 }
  if not jr then
    -- every run is journaled; one with Batch jobs cannot run without it
    local aerr
    jr, aerr = journal.open(run_id, { home = home, create = true })
    local ok = jr ~= nil
    if ok then
      ok, aerr = jr:append({ ev = "run", run_id = run_id, file = absolute(model.file or o.target),
        conf = o.conf and absolute(o.conf), params = o.params, job = o.job, runs_on = o.runs_on,
        with = o.with, policy_file = o.policy_file and absolute(o.policy_file),
        workflow = model.name, resumed_from = prev and prev.id })
    end
    if not ok then
      if batch then
        err_w("luabatch run: journal: " .. tostring(aerr) .. "\n")
        return 2
      end
      err_w("luabatch run: warning: journal: " .. tostring(aerr) .. " (the run is not recorded)\n")
      jr = nil
    end
  end
  if jr then
    ropts.runner_opts.journal = jr
    -- `luabatch cancel RUN` from another process: its reason, or nil
    local jr_now = jr
    ropts.cancelled = function() return jr_now:cancel_requested() end
    ropts.jobs, ropts.on_job_done = journaled_jobs(jr, attach, tally)
    -- every plan event is journaled; a resume rebuilds the plan from them
    -- (a journal without any, from an older client: the local jobs' records)
    ropts.on_event = function(ev)
      local ok, msg = jr:append({ ev = "plan", event = ev })
      if not ok then log.warn("journal: cannot record a %s event: %s", tostring(ev.type), tostring(msg)) end
    end
    if attach then
      local replay = {}
      for _, e in ipairs(jr:events()) do
        if e.ev == "plan" and type(e.event) == "table" then replay[#replay + 1] = e.event end
      end
      if #replay > 0 then ropts.replay, ropts.jobs = replay, nil end
    end
    if batch or tty then
      err_w(str_format("run %s%s\n", run_id, attach and " (resumed)" or prev and (" (resumes " .. prev.id .. ")") or ""))
    end
  end
  -- the engine asks cancelled() at every wait (<= 1 s): the view's clock too
  local asked = ropts.cancelled
  ropts.cancelled = function()
    view.tick()
    if asked then return asked() end
    return false
  end
  local ctx, rerr = engine.run(model, ropts)
  view.close()
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
    if prev then line = str_format("%s [%d of %d jobs reused from %s]", line, tally.cached, tally.jobs, prev.id) end
    local m = first_error(ctx.errors)
    if m then line = line .. ": " .. m end
    out_w(line .. "\n")
  end
  if ctx.status == "SUCCESS" or ctx.status == "SKIP" then return 0 end
  return 1
end

return _M
