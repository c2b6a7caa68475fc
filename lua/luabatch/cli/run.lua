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

local writer = require("luabatch.cli.out").writer

local _M = { _VERSION = "0.1.0" }

local type = type
local pairs = pairs
local ipairs = ipairs
local pcall = pcall
local require = require
local tostring = tostring
local str_format = string.format
local tbl_concat = table.concat

_M.usage = [==[
usage: luabatch run FILE [options]
       luabatch run [FILE] --resume RUN_ID|last [options]

Run a workflow (ddeutil-workflow YAML): jobs run where their runs-on says
(local: this machine; aws_batch: AWS Batch), or where --runs-on says.

options:
  -j, --job ID      run only this job (its needs are not run)
  -p, --param K=V   a workflow param (repeatable); V is coerced to the
                    declared type (JSON for map and array params)
  -c, --conf DIR    search DIR for workflows: FILE may then be a workflow
                    name; trigger stages search it too
  --json            print the final context as JSON on stdout
  --runs-on TYPE    run every job on TYPE: local, aws_batch or docker
  --with K=V        a runs-on `with:` field for every job (repeatable; the
                    job's own with: wins), e.g. --with s3_bucket=my-bucket
  --policy FILE     a Lua file returning a table that overrides the AWS
                    Batch policy (naming, retries, cleanup, ...)
  -f, --follow      print the log lines of running Batch jobs
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
  local registry = require "luabatch.runner"
  if not registry.known(v) then
    return nil, str_format("--runs-on '%s': expected one of %s", v, tbl_concat(registry.types(), ", "))
  end
  return v
end

local function check_run_id(v)
  if not require("luabatch.journal").valid_run_id(v) then
    return nil, str_format("--run-id '%s': letters, digits, '.', '_' and '-', at most 128", v)
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
local tabular = require "luabatch.cli.tabular"

-- The line of a stage that ended (a terminal shows them above the live
-- table); name: the strategy's name as the view knows it (view.name) -> text
local function stage_line(info, name)
  local who = info.key or info.name or "?"
  local where = tostring(info.job or "?")
  if info.strategy and info.strategy ~= "EMPTY" then
    where = name(info.job, info.strategy) or (where .. "[" .. tostring(info.strategy) .. "]")
  end
  local line = str_format("  %s  %-24s %-7s %s", where, tostring(who), tostring(info.status), fmt_secs(info.seconds or 0))
  local m = (info.status == "FAILED" or info.status == "CANCEL") and first_error(info.errors)
  if m then line = line .. "  " .. (m:match("^[^\n]*") or m) end
  return line .. "\n"
end

---------------------------------------------------------------------------
-- Entry
---------------------------------------------------------------------------

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
  local api = require "luabatch.api.workflow"
  local getenv = env.getenv or os.getenv
  local tty = isatty(2) and true or false
  local failures = require "luabatch.cli.failures"
  local caught = failures.catcher()
  local view, model, started
  -- the run's options: the command line, the views as its hooks
  local ro = { params = o.params, with = o.with, job = o.job, conf = o.conf, runs_on = o.runs_on,
               run_id = o.run_id, follow = o.follow, getenv = getenv, policy_file = o.policy_file }
  if o.policy_file then
    local policy, msg = api.load_policy(o.policy_file)
    if not policy then
      err_w("luabatch run: --" .. msg .. "\n")
      return 2
    end
    ro.policy = policy
  end
  ro.on_start = function(info)
    started = info
    -- the live view: a table redrawn in place on a terminal, else a line per change
    view = require("luabatch.cli.live").new({ write = err_w, tty = tty, now = require("luabatch.workflow.stage").now,
      workflow = model.name, order = o.job and { o.job } or require("luabatch.workflow.plan").order(model),
      width = tabular.width({ isatty = isatty, term_width = env.term_width, getenv = getenv }, 2),
      ellipsis = tabular.ellipsis({ getenv = getenv }) })
    if info.batch or tty then
      err_w(str_format("run %s%s\n", info.run_id, info.attach and " (resumed)"
        or info.resumed_from and (" (resumes " .. info.resumed_from .. ")") or ""))
    end
  end
  ro.on_event = function(event, info)
    caught.progress(event, info)
    if not view then return end
    view.progress(event, info)
    if tty and event == "stage" then view.line(stage_line(info, view.name)) end
  end
  if tty then
    ro.log = function(line) view.line("      | " .. tostring(line):gsub("\n", "\n      | ") .. "\n") end
    ro.output_line = function(line) view.line("      | " .. tostring(line) .. "\n") end
  elseif o.follow then
    ro.log = function(line) err_w(tostring(line) .. "\n") end
  end
  ro.cancelled = function()   -- asked at every wait (<= 1 s): the view's clock too
    if view then view.tick() end
    return false
  end
  -- the workflow: FILE, or (--resume) the journaled one
  local function loaded(m)
    model = m
    for _, w in ipairs(m.warnings or {}) do err_w("luabatch run: warning: " .. w .. "\n") end
  end
  local ctx, info
  if o.resume then
    ro.file = o.target
    ro.on_load = loaded
    ctx, info = api.resume(o.resume, ro)
  else
    local wf, lerr = api.load(o.target, { conf = o.conf, getenv = getenv, runs_on = o.runs_on })
    if not wf then
      err_w("luabatch run: " .. tostring(lerr) .. "\n")
      return 2
    end
    loaded(wf.model)
    ctx, info = wf:run(ro)
  end
  if view then view.close() end
  if not ctx then
    err_w("luabatch run: " .. tostring(info) .. "\n")
    return 2
  end
  if ctx.status == "FAILED" then
    err_w(failures.report(ctx, model, { caught = caught, run_id = info.journaled and info.run_id or nil }))
  end
  if o.json then
    out_w(_M.json(ctx, { indent = "  " }) .. "\n")
  else
    local secs = ctx.info and ctx.info.exec_latency or 0
    local line = str_format("workflow %s: %s (%s)", tostring(model.name), ctx.status, fmt_secs(secs))
    if info.resumed_from and not (started and started.attach) then
      line = str_format("%s [%d of %d jobs reused from %s]", line, info.reused, info.jobs, info.resumed_from)
    end
    local m = first_error(ctx.errors)
    if m then line = line .. ": " .. m end
    out_w(line .. "\n")
  end
  if ctx.status == "SUCCESS" or ctx.status == "SKIP" then return 0 end
  return 1
end

return _M
