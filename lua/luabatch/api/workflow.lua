-- luabatch.api.workflow: run workflows from Lua as `luabatch run` does
-- (`require("luabatch").workflow`).
--
--   local workflow = require("luabatch").workflow
--   local wf, err, code = workflow.load("wf.yml" [, { conf = DIR }])
--   local wf = workflow.load(yaml_text, { name = "inline.yml" })      -- text: has a newline
--   local ctx, info = wf:run({ params = { n = 3 }, runs_on = "aws_batch",
--                              with = { s3_bucket = "b" }, on_event = fn })
--   local ctx, info = workflow.resume("last" | RUN_ID [, o])
--
-- wf: { name, file, params (declared: name -> { type, default?, ... }),
--       param_order, jobs (ids, needs first), model (the loaded model) }.
-- run options (all optional):
--   params, job, runs_on ("local" | "aws_batch"), with (under each job's
--   own runs-on with:), policy (the Batch policy table) or policy_file
--   (a Lua file returning it: journaled, so a resume reads it again), run_id,
--   on_event   function(event, info): progress ("job-start", "job",
--              "strategy", "stage", ...: luabatch.workflow.engine)
--   on_start   function(info) once the run has its id: { run_id, batch,
--              attach, resumed_from, journaled }
--   on_load    (resume) function(model) once the workflow is loaded
--   log, output_line  stage output lines; follow (Batch log lines)
--   cancelled  function() -> reason | false, asked at every wait (<= 1 s)
--   journal    false: no journal (default: every run is journaled under
--              home or LUABATCH_HOME; a run with Batch jobs needs one)
--   home, getenv, conf, registry
-- -> ctx (the context `luabatch run --json` prints), info { run_id,
--    resumed_from?, jobs = n, reused = n } | nil, message, code:
--    "ELOAD" | "EPARAM" | "EJOB" | "EWITH" | "EPOLICY" | "EJOURNAL" |
--    "ERESUME" (bad input: nothing ran, no journal), "ECYCLE".
--
-- resume(which, o): an ended run (FAILED, CANCEL, or not) runs again as a
-- new run reusing every job and strategy whose fingerprint holds
-- (o.file, o.params, o.with ... given change it; the rest as journaled);
-- a run whose client died is taken up where it was (o may not change it).

require "luabatch.runner"   -- the runners, registered with the loader and the engine
local journal = require "luabatch.journal"
local log = require "luabatch.log"

local _M = { _VERSION = "0.1.0" }

local type = type
local pcall = pcall
local loadfile = loadfile
local next = next
local pairs = pairs
local ipairs = ipairs
local tostring = tostring
local setmetatable = setmetatable
local str_format = string.format
local tbl_concat = table.concat

local Workflow = {}
Workflow.__index = Workflow

local function absolute(path)
  if path == nil or path:sub(1, 1) == "/" then return path end
  local cwd = require("luabatch.core").getcwd() or "."
  return cwd .. "/" .. (path:gsub("^%./", ""))
end

local function wrap(model, source_opts)
  local jobs = {}
  for _, id in ipairs(require("luabatch.workflow.plan").order(model)) do jobs[#jobs + 1] = id end
  return setmetatable({ name = model.name, file = model.file, params = model.params or {},
    param_order = model.param_order or {}, jobs = jobs, model = model, conf = source_opts.conf }, Workflow)
end

--- load(source [, opts]) -> wf | nil, message, "ELOAD".  source: a file
-- path (or, with opts.conf, a workflow name searched there), or YAML text
-- (a string with a newline; opts.name names it in messages).  opts.runs_on:
-- the runner every job will run on (its bounds, e.g. max-parallel, apply).
function _M.load(source, opts)
  opts = opts or {}
  if type(source) ~= "string" then return nil, "workflow.load: a path or YAML text expected", "ELOAD" end
  local load = require "luabatch.workflow.load"
  local model, err
  if source:find("\n", 1, true) then
    model, err = load.string(source, opts.name or "(string)", { getenv = opts.getenv, runs_on = opts.runs_on })
  else
    model, err = load.resolve(source, { conf = opts.conf, getenv = opts.getenv, runs_on = opts.runs_on })
  end
  if not model then return nil, tostring(err), "ELOAD" end
  return wrap(model, opts)
end

--- load_policy(path) -> the Batch policy table a Lua file returns | nil, message
function _M.load_policy(path)
  local chunk, cerr = loadfile(path, "t")
  local ok, p = false, cerr
  if chunk then ok, p = pcall(chunk) end
  if not ok or type(p) ~= "table" then
    return nil, str_format("policy %s: %s", tostring(path), ok and "the file must return a table" or tostring(p))
  end
  return p
end

---------------------------------------------------------------------------
-- Before anything starts
---------------------------------------------------------------------------

-- Every given param is declared, the job exists, and the runs-on `with:`
-- of each job that runs (o.with under the job's own) passes its runner's
-- schema -- a field a template gives is checked when rendered.
-- -> true | nil, "FILE...: message", code
local function preflight(model, o)
  local file = tostring(model.file or "(string)")
  if o.job and not (model.jobs and model.jobs[o.job]) then
    return nil, str_format("%s: no job '%s' (jobs: %s)", file, o.job, tbl_concat(model.job_order or {}, ", ")), "EJOB"
  end
  for k in pairs(o.params) do
    if not (model.params and model.params[k]) then
      return nil, str_format("%s: --param %s: the workflow has no such param (params: %s)", file, k,
        #(model.param_order or {}) > 0 and tbl_concat(model.param_order, ", ") or "none"), "EPARAM"
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
      local p = jd.pos or {}
      if not ok and not later[field] then
        return nil, str_format("%s:%d:%d: job '%s': runs-on %s: with.%s %s%s", file, p.line or 1, p.col or 1,
          id, t, field, msg, given[field] and " (from --with)" or ""), "EWITH"
      end
      -- the rules across fields, when no field waits for a template
      local vok, verr = true, nil
      if ok and spec.validate and next(later) == nil then vok, verr = spec.validate(ok, o.policy) end
      if not vok then
        return nil, str_format("%s:%d:%d: job '%s': runs-on %s: %s", file, p.line or 1, p.col or 1, id, t,
          tostring(verr)), "EWITH"
      end
    end
  end
  return true
end

-- Does any job of this run go to a runner that is not local (then the run
-- cannot go without its journal)?
local function remote(model, o)
  if o.runs_on then return o.runs_on ~= "local" end
  for _, id in ipairs(model.job_order or {}) do
    local j = model.jobs[id]
    if (o.job == nil or o.job == id) and j and j.runs_on and (j.runs_on.type or "local") ~= "local" then return true end
  end
  return false
end

---------------------------------------------------------------------------
-- The journal of a run
---------------------------------------------------------------------------

-- Each ended job's record and key are journaled ("job": what a later
-- resume reuses).  Taking up a run of an older client (no plan events), a
-- local job with a journaled SUCCESS or SKIP record is taken as done.
-- -> records to start with, on_job_done
local function journaled_jobs(jr, attach, tally)
  local done = {}
  for id, rec in pairs(attach and jr:state().local_jobs or {}) do
    if rec.status == "SUCCESS" or rec.status == "SKIP" then done[id] = rec end
  end
  return done, function(job_id, record, runs_on, how)
    how = how or {}
    if how.cached then tally.reused = tally.reused + 1 end
    tally.jobs = tally.jobs + 1
    local ok, msg = jr:append({ ev = "job", job_id = job_id, status = record.status, record = record,
                                runs_on = runs_on, key = how.key, cached = how.cached, reused = how.reused })
    if not ok then log.warn("journal: cannot record job %s: %s", tostring(job_id), tostring(msg)) end
  end
end

-- The journal of a new run (its "run" event first) -> jr | nil (a local
-- run goes on without: warned) | false, message (a remote one cannot)
local function new_journal(model, o, run_id, home, prev)
  -- a run with remote jobs fsyncs each event (re-attaching relies on them);
  -- a local one's events need only outlive the process
  local jr, err = journal.open(run_id, { home = home, create = true, nosync = not remote(model, o) })
  if jr then
    local ok, aerr = jr:append({ ev = "run", run_id = run_id, file = absolute(model.file), conf = o.conf and absolute(o.conf),
      params = o.params, job = o.job, runs_on = o.runs_on, with = o.with, policy_file = absolute(o.policy_file),
      workflow = model.name, resumed_from = prev and prev.id })
    if ok then return jr end
    err = aerr
  end
  if remote(model, o) then return false, "journal: " .. tostring(err) end
  log.warn("journal: %s (the run is not recorded)", tostring(err))
  return nil
end

---------------------------------------------------------------------------
-- Running
---------------------------------------------------------------------------

local function copy(t)
  local c = {}
  for k, v in pairs(t or {}) do c[k] = v end
  return c
end

-- Run model with o; jr: the journal to take up (attach), prev: the ended
-- run it resumes { id, cache }.
local function run(model, o, jr, prev)
  local engine = require "luabatch.workflow.engine"
  local getenv = o.getenv or os.getenv
  local home = o.home or journal.home(getenv)
  local ok, msg, code
  if o.policy == nil and o.policy_file then
    o.policy, msg = _M.load_policy(o.policy_file)
    if not o.policy then return nil, msg, "EPOLICY" end
  end
  ok, msg, code = preflight(model, o)
  if not ok then return nil, msg, code end
  local attach = jr ~= nil
  local run_id = o.run_id or journal.new_run_id()
  local tally = { jobs = 0, reused = 0 }
  if not jr and o.journal ~= false then
    local jerr
    jr, jerr = new_journal(model, o, run_id, home, prev)
    if jr == false then return nil, jerr, "EJOURNAL" end
  end
  local ropts = { params = o.params, job = o.job, conf = o.conf, getenv = getenv, run_id = run_id,
    runs_on = o.runs_on, with = o.with, progress = o.on_event, log = o.log, output_line = o.output_line,
    registry = o.registry, cache = prev and prev.cache,
    runner_opts = { policy = o.policy, follow = o.follow, resume = attach } }
  local asked = o.cancelled
  if jr then
    ropts.runner_opts.journal = jr
    ropts.jobs, ropts.on_job_done = journaled_jobs(jr, attach, tally)
    ropts.on_event = function(ev)     -- every plan event: a resume rebuilds the plan from them
      local aok, amsg = jr:append({ ev = "plan", event = ev })
      if not aok then log.warn("journal: cannot record a %s event: %s", tostring(ev.type), tostring(amsg)) end
    end
    if attach then
      local replay = {}
      for _, e in ipairs(jr:events()) do
        if e.ev == "plan" and type(e.event) == "table" then replay[#replay + 1] = e.event end
      end
      if #replay > 0 then ropts.replay, ropts.jobs = replay, nil end
    end
  end
  -- a `luabatch cancel RUN` from another process (the marker), then the caller's
  ropts.cancelled = function()
    local why = jr and jr:cancel_requested()
    if why then return why end
    return asked and asked() or false
  end
  if o.on_start then
    o.on_start({ run_id = run_id, batch = remote(model, o), attach = attach, resumed_from = prev and prev.id,
                 journaled = jr ~= nil })
  end
  local ctx, rerr, rcode = engine.run(model, ropts)
  if jr then
    jr:append({ ev = "end", status = ctx and ctx.status or "ERROR", jobs = journal.end_counts(ctx and ctx.jobs) })
    jr:close()
  end
  if not ctx then return nil, rerr, rcode end
  return ctx, { run_id = run_id, resumed_from = prev and prev.id, jobs = tally.jobs, reused = tally.reused,
                journaled = jr ~= nil }
end

--- wf:run([o]) -> ctx, info | nil, message, code (see the header)
function Workflow:run(o)
  o = copy(o)
  o.params, o.with = copy(o.params), copy(o.with)
  o.conf = o.conf or self.conf
  return run(self.model, o)
end

---------------------------------------------------------------------------
-- Resuming
---------------------------------------------------------------------------

-- which: RUN_ID | "last" (the newest run, of file when given) -> jr | nil, message
local function open_run(which, home, file)
  if which == "last" then
    local want = file and absolute(file)
    for _, r in ipairs(journal.list(home)) do
      if want == nil or r.file == want then which = r.run_id; break end
    end
    if which == "last" then return nil, want and ("no journaled run of " .. want) or "no journaled run" end
  end
  return journal.open(which, { home = home })
end

--- resume(which [, o]) -> ctx, info | nil, message, code (see the header;
-- o.file: the workflow file, default the journaled one).
function _M.resume(which, o)
  o = copy(o)
  local getenv = o.getenv or os.getenv
  o.home = o.home or journal.home(getenv)
  local jr, jerr = open_run(which, o.home, o.file)
  if not jr then return nil, "resume: " .. tostring(jerr), "ERESUME" end
  local st = jr:state()
  local rec = st.run
  if type(rec) ~= "table" or not rec.file then
    return nil, str_format("resume %s: the journal has no run record", tostring(which)), "ERESUME"
  end
  local params, with = copy(rec.params), copy(rec.with)
  local prev
  if st.ended then
    -- an ended run: a new run, reusing what still holds; o changes it
    for k, v in pairs(o.params or {}) do params[k] = v end
    for k, v in pairs(o.with or {}) do with[k] = v end
    prev = { id = jr.run_id, cache = st.finished }
    if next(st.finished) == nil then
      log.warn("run %s recorded no job keys (an older client): every job runs again", jr.run_id)
    end
    jr = nil
  else
    if o.file or next(o.params or {}) or next(o.with or {}) then
      return nil, str_format("resume %s: the run has not ended (its client died, or is alive): it is taken up "
        .. "as it was, without a file, params or with", tostring(which)), "ERESUME"
    end
    o.run_id = jr.run_id
    if rec.resumed_from then
      local pj = journal.open(rec.resumed_from, { home = o.home })
      prev = { id = rec.resumed_from, cache = pj and pj:state().finished or {} }
    end
  end
  o.params, o.with = params, with
  o.conf, o.job, o.runs_on = o.conf or rec.conf, o.job or rec.job, o.runs_on or rec.runs_on
  o.policy_file = o.policy_file or rec.policy_file
  local wf, lerr, lcode = _M.load(prev and o.file or rec.file, { conf = o.conf, getenv = getenv, runs_on = o.runs_on })
  if not wf then return nil, lerr, lcode end
  if o.on_load then o.on_load(wf.model) end
  return run(wf.model, o, jr, prev)
end

return _M
