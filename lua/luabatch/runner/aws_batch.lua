-- luabatch.runner.aws_batch: a workflow job's strategies on AWS Batch.
--
--   -- the engine's seam (luabatch.workflow.plan decides if:, max-parallel,
--   -- fail-fast and retries; the handle runs strategies):
--   local h = runner.open_job(model, job_id, wctx, { env = jenv })
--   local rec = h:run_strategy(combo, wctx, senv)      -- or h:run_all (with.array)
--   h:close(status)                                     -- cleanup by policy
--   local record, jctx = runner.run_job(model, job_id, context, opts)   -- one job
--   -- without waiting (luabatch.ngx.drive): check, submit, then per
--   -- strategy collect_strategy once its Batch job is terminal, cleanup
--   local cfg = runner.check(model, job_id, context, opts)
--   local submitted = runner.submit(model, job_id, context, opts)
--   local rec = runner.collect_strategy(submitted, entry, summary, opts)
--   runner.cleanup(submitted, status, opts)
--
-- opts.env is the engine's stage environment for the job: env.job_with =
-- its effective runs-on `with:`, env.run_id, env.runner_opts = { journal,
-- policy, follow, resume }, env.cancelled(), env.log(line).
--   1. with: is checked first (aws_batch/check.lua): a bad field is the
--      job's FAILED record naming the field; nothing is submitted.
--   2. On the first strategy: the job definition (reused by content hash:
--      aws_batch/jobdef.lua) and the bundle (credentials stripped:
--      aws_batch/bundle.lua) at s3://<bucket>/<s3_prefix>/<run_id>/<job_id>/.
--   3. One SubmitJob per strategy (or one array job), a lost answer looked
--      up by name and adopted; one poller watches every job of the run.
--   4. Terminal: <job_id>/<sid>/result.json is the strategy record, else a
--      FAILED record with the real reason (aws_batch/reason.lua).
--   5. A cancel terminates every live job of the run; fail-fast the
--      siblings; the client deadline (timeout x attempts + margin) too.
--   6. Cleanup by policy, inside the run's prefix only.
-- Steps 2-6 are the Run of aws_batch/run.lua.  Every step is journalled
-- (runner_opts.journal); with runner_opts.resume a recorded result is
-- reused, a recorded job id watched again, a lost submit looked up by name.

local log = require "luabatch.log"
local registry = require "luabatch.runner"   -- registered with the loader and the engine
local job = require "luabatch.workflow.job"
local stage = require "luabatch.workflow.stage"
local policy_mod = require "luabatch.runner.aws_batch.policy"
local session_mod = require "luabatch.runner.aws_batch.session"
local check_mod = require "luabatch.runner.aws_batch.check"
local run_mod = require "luabatch.runner.aws_batch.run"

local _M = { _VERSION = "0.1.0" }

local type = type
local pairs = pairs
local ipairs = ipairs
local pcall = pcall
local error = error
local require = require
local tostring = tostring
local setmetatable = setmetatable
local str_format = string.format
local floor = math.floor

local failed_record = run_mod.failed_record
local error_of = run_mod.error_of
local failed_job = run_mod.failed_job

---------------------------------------------------------------------------
-- The seam
---------------------------------------------------------------------------

-- What run_job, submit and collect share: the job's env (the engine's, or
-- one made for a direct call), its checked with:, the session, the clients
-- and a Run.  -> run | nil, message (with: rejected), jobdef, t0
local function open_run(fname, model, job_id, context, opts)
  local jobdef, env, wctx = require("luabatch.runner.local").open(fname, model, job_id, context, opts, 2)
  local t0 = stage.now()
  local with = env.job_with
  if with == nil then with = (jobdef.runs_on and jobdef.runs_on.with) or {} end
  local s = session_mod.get(env)
  local cfg, cerr = check_mod.check(with, job_id, s.policy, env.getenv, s.run_id)
  if not cfg then return nil, cerr, jobdef, t0 end
  local c = s:clients(with, cfg.region, env.getenv)
  local run = run_mod.new({ s = s, c = c, cfg = cfg, with = with, model = model, job_id = job_id,
    jobdef = jobdef, env = env, wctx = wctx })
  return run, nil, jobdef, t0
end

--- open_job(model, job_id, wctx, opts) -> handle | nil, record: the
-- engine's seam (luabatch.workflow.engine runs the plan: if:, max-parallel,
-- fail-fast, retries; the handle runs strategies on Batch).
--   handle:run_strategy(combo, wctx, senv) -> strategy record (one job)
--   handle:run_all(combos, wctx, aenv, group) -> records (with.array)
--   handle.array -> with.array; handle:close(status) -> cleanup by policy
--   handle.max_parallel -> the largest max-parallel Batch allows (10000)
-- A rejected with: is nil and the job's FAILED record (nothing submitted).
function _M.open_job(model, job_id, wctx, opts)
  local run, cerr, jobdef, t0 = open_run("open_job", model, job_id, wctx, opts)
  if not run then return nil, (failed_job(jobdef, t0, cerr)) end
  local s, c = run.s, run.c
  run:append_config()
  s.active = s.active + 1
  -- the client deadline, which the plan keeps: a strategy is stopped
  -- (senv.cancelled() == "deadline") when it runs longer
  local h = { array = run.cfg.array or nil, max_parallel = registry.max_parallel("aws_batch"),
              deadline = policy_mod.deadline_after(s.policy, run.cfg.timeout, run.cfg.attempts) }
  function h.run_strategy(_, combo, w, senv) return run:strategy(combo, w, senv) end
  function h.run_all(_, combos, w, aenv, group) return run:all(combos, w, aenv, group) end
  function h.close(_, status)
    -- leave nothing running unobserved (a strategy's task that failed)
    for _, id in ipairs(run.watched) do
      local w = c.watched[id]
      if w and not w.final and not w.terminated then
        s:terminate(c, w, "luabatch: client error: the job ended while this Batch job was live")
      end
      s:unwatch(c, id)
    end
    local ok, err = pcall(run.cleanup, run, status)
    s.active = s.active - 1
    if not ok then log.error("%s", tostring(err)) end
  end
  return h
end

--- check(model, job_id, context, opts) -> { array = bool, deadline = s?,
-- max_parallel = n } | nil, message: the job's with: checked as open_job
-- checks it (nothing is sent).
function _M.check(model, job_id, context, opts)
  local run, cerr = open_run("check", model, job_id, context, opts)
  if not run then return nil, cerr end
  return { array = run.cfg.array and true or false, max_parallel = registry.max_parallel("aws_batch"),
           deadline = policy_mod.deadline_after(run.s.policy, run.cfg.timeout, run.cfg.attempts) }
end

--- run_job(model, job_id, context, opts) -> record, jctx (one job on Batch).
function _M.run_job(model, job_id, context, opts)
  local o = { runner = _M, runs_on = "aws_batch" }
  for k, v in pairs(opts or {}) do if o[k] == nil then o[k] = v end end
  return require("luabatch.workflow.engine").run_job(model, job_id, context, o)
end

---------------------------------------------------------------------------
-- Submit now, collect later (no waiting: for servers such as nginx)
---------------------------------------------------------------------------

--- submit(model, job_id, context, opts) -> submitted | nil, msg, code
-- run_job's first half without waiting: with: checked, job definition
-- ensured, bundle uploaded, one SubmitJob per strategy (or one array job).
-- opts as run_job's, plus:
--   strategies = { sid, ... }: submit only these, as plain jobs in that order
--     (for a caller that paces them: luabatch.ngx.drive); an id the matrix
--     lacks raises; {} submits nothing; a failed SubmitJob is only an entry.
--   attempt = k (default 0): the job-level retry: attempt; for k > 0 the old
--     result.json of each strategy submitted is deleted first.
-- Left to the caller: max-parallel, fail-fast, job-level retry:, the client
-- deadline (config.timeout x config.attempts + policy.deadline_margin),
-- following logs (docs/design.md, "Submit now, collect later").
-- submitted (plain data, JSON-safe) = { format = "luabatch-submitted/1",
--   run_id, workflow, job_id, skip = true (the job's `if` was false) | nil,
--   jobs = { { key, strategy_id, job_name, batch_job_id | error = msg }, ... },
--     (an array child's batch_job_id is "<array job id>:<index>")
--   array = { key, batch_job_id, job_name } | nil,
--   results = "s3://bucket/<run prefix>/<job_id>/",
--   config = { queue, bucket, prefix (run prefix), region, log_group,
--     keep_on_failure, array, timeout (s | nil), attempts, client = the
--     endpoint fields of with: }, context = { params, jobs } }
-- Errors: "EWITH" (with: rejected, nothing submitted), "EJOB" (the job's `if`
-- or matrix is invalid), "ESUBMIT" (no job submitted; msg says which step).
function _M.submit(model, job_id, context, opts)
  local only = opts and opts.strategies
  if only ~= nil and type(only) ~= "table" then
    error("bad argument #4 to 'submit' (opts.strategies: a list of strategy ids expected, got "
      .. type(only) .. ")", 2)
  end
  local attempt = opts and opts.attempt or 0
  if type(attempt) ~= "number" or attempt < 0 or attempt ~= floor(attempt) then
    error("bad argument #4 to 'submit' (opts.attempt: a whole number >= 0 expected)", 2)
  end
  local run, cerr = open_run("submit", model, job_id, context, opts)
  if not run then return nil, cerr, "EWITH" end
  local s, cfg, env, wctx = run.s, run.cfg, run.env, run.wctx
  run:append_config()
  local client = check_mod.client_fields(run.with)
  local submitted = {
    format = "luabatch-submitted/1", run_id = s.run_id, workflow = model.name, job_id = job_id,
    jobs = {}, results = "s3://" .. cfg.bucket .. "/" .. run:s3key() .. "/",
    config = { queue = cfg.queue, bucket = cfg.bucket, prefix = cfg.run_prefix, region = cfg.region,
               log_group = cfg.log_group, keep_on_failure = cfg.keep_on_failure, array = cfg.array,
               timeout = cfg.timeout, attempts = cfg.attempts, client = client },
    context = { params = wctx.params, jobs = wctx.jobs },
  }
  local go, gerr = stage.condition(run.jobdef["if"], wctx, env)
  if go == nil then return nil, str_format("job '%s': if: %s", job_id, tostring(gerr)), "EJOB" end
  if go == false then
    submitted.skip = true
    return submitted
  end
  local combos, serr = job.strategies(run.jobdef)
  if not combos then
    return nil, str_format("job '%s': strategy: %s", job_id, tostring(type(serr) == "table" and serr.message
      or serr)), "EJOB"
  end
  local p = s.policy
  local function name_of(sid)
    return policy_mod.job_name(p, { run_id = s.run_id, job_id = job_id, strategy_id = sid, attempt = attempt,
      workflow = model.name })
  end
  -- a result.json left by an earlier attempt must not be read as this one's
  local function forget(list)
    if attempt == 0 then return end
    for _, sid in ipairs(list) do
      pcall(run.c.s3.delete_object, run.c.s3, cfg.bucket, run:s3key(sid, "result.json"))
    end
  end
  local sids = {}
  for i, combo in ipairs(combos) do sids[i] = combo.id end
  if only ~= nil then
    -- a caller pacing the strategies itself (luabatch.ngx.drive): these only
    local known = {}
    for _, sid in ipairs(sids) do known[sid] = true end
    for i, sid in ipairs(only) do
      if not known[sid] then
        error("bad argument #4 to 'submit' (opts.strategies[" .. i .. "]: job '" .. job_id
          .. "' has no strategy '" .. tostring(sid) .. "')", 2)
      end
    end
    sids = only
  elseif cfg.array and #combos >= 2 then
    local akey, name = run:key("@array", attempt), name_of("array")
    run.attempt_of[akey] = attempt
    forget(sids)
    local id, how = run:submit(akey, name, "@array", #combos)
    if not id then return nil, tostring(how), "ESUBMIT" end
    submitted.array = { key = akey, batch_job_id = id, job_name = name }
    for i, combo in ipairs(combos) do
      submitted.jobs[i] = { key = run:key(combo.id, attempt), strategy_id = combo.id,
        batch_job_id = id .. ":" .. (i - 1), job_name = name .. "[" .. (i - 1) .. "]" }
    end
    return submitted
  end
  local ok_any, last
  forget(sids)
  for i, sid in ipairs(sids) do
    local key, name = run:key(sid, attempt), name_of(sid)
    run.attempt_of[key] = attempt
    local id, how = run:submit(key, name, sid, nil)
    if id then
      ok_any = true
      submitted.jobs[i] = { key = key, strategy_id = sid, batch_job_id = id, job_name = name }
    else
      last = tostring(how)
      submitted.jobs[i] = { key = key, strategy_id = sid, job_name = name,
        error = str_format("job '%s' strategy %s: %s", job_id, sid, last) }
    end
  end
  if not ok_any and only == nil then return nil, last or "nothing to submit", "ESUBMIT" end
  return submitted
end

-- A JobDetail-shaped table from a poller summary (what reason.facts reads).
local function detail_of(id, sm)
  if type(sm.job) == "table" then return sm.job end
  local d = { jobId = id, status = sm.status, statusReason = sm.reason }
  if sm.exit_code ~= nil or sm.log_stream ~= nil then
    d.container = { exitCode = sm.exit_code, logStreamName = sm.log_stream }
  end
  return d
end

-- The Run of a submitted job for collecting (no submission): clients from
-- its config -> run, t0
local function collect_run(submitted, opts, fname)
  if type(submitted) ~= "table" or type(submitted.jobs) ~= "table" or type(submitted.config) ~= "table" then
    error("bad argument #1 to '" .. fname .. "' (submitted table expected)", 3)
  end
  local model = opts.model
  if type(model) ~= "table" or type(model.jobs) ~= "table" or not model.jobs[submitted.job_id] then
    error("bad argument #3 to '" .. fname .. "' (opts.model: the workflow holding job '"
      .. tostring(submitted.job_id) .. "' expected)", 3)
  end
  local sc = submitted.config
  local with = opts.with
  if with == nil then
    with = {}
    for k, v in pairs(sc.client or {}) do with[k] = v end
  end
  local base = require("luabatch.workflow.engine").make_env(model, {
    getenv = opts.getenv, run_id = submitted.run_id, runner_opts = opts.runner_opts or {} })
  local env = setmetatable({ job_id = submitted.job_id }, { __index = base })
  local s = session_mod.get(env)
  local c = s:clients(with, sc.region, env.getenv)
  local cfg = { bucket = sc.bucket, run_prefix = sc.prefix, region = sc.region, log_group = sc.log_group,
                queue = sc.queue, keep_on_failure = sc.keep_on_failure == true, environment = {}, tags = {} }
  local ctx = submitted.context or {}
  local wctx = { params = ctx.params or {}, jobs = ctx.jobs or {}, status = "WAIT" }
  local run = run_mod.new({ s = s, c = c, cfg = cfg, with = with, model = model, job_id = submitted.job_id,
    jobdef = model.jobs[submitted.job_id], env = env, wctx = wctx, touched = true,
    keep_run_prefix = opts.keep_run_prefix == true })
  return run, stage.now()
end

--- collect_strategy(submitted, entry, summary, opts) -> strategy record:
-- one entry of submitted.jobs once its Batch job is terminal (summary: the
-- poller's { status, reason, exit_code, log_stream [, job] }): its
-- result.json, or the real reason of its failure; an entry whose SubmitJob
-- failed is FAILED with that error.  opts as collect's.  Journaled.
function _M.collect_strategy(submitted, entry, summary, opts)
  opts = opts or {}
  local run, t0 = collect_run(submitted, opts, "collect_strategy")
  local combo = job.strategy(run.jobdef, entry.strategy_id)
  if entry.error then return failed_record(combo, t0, error_of(entry.error)) end
  local w = { id = entry.batch_job_id, status = summary.status, reason = summary.reason, name = entry.job_name,
              job = detail_of(entry.batch_job_id, summary) }
  local rec = run:collect(w, combo, t0, entry.key)
  run:record_result(entry.key, rec)
  return rec
end

--- cleanup(submitted, status, opts): the job's objects by policy once its
-- record is final (opts.keep_run_prefix: never the run's prefix).
function _M.cleanup(submitted, status, opts)
  opts = opts or {}
  local run = collect_run(submitted, opts, "cleanup")
  local s = run.s
  s.active = s.active + 1
  local ok, err = pcall(run.cleanup, run, status)
  s.active = s.active - 1
  if not ok then log.error("%s", tostring(err)) end
end

--- collect(submitted, summaries [, opts]) -> record, jctx | nil, msg, code
-- Every strategy at once (collect_strategy each), the job record run_job
-- would have given, then cleanup by policy (opts.cleanup = false keeps the
-- run's objects; opts.retry = true: the caller runs the job again when this
-- record is FAILED, so nothing is cleaned then).  summaries = { [batch id]
-- = summary }; opts.model (required), getenv, runner_opts, with,
-- keep_run_prefix.  Failure: nil, msg, "EAGAIN" while a job is not terminal.
function _M.collect(submitted, summaries, opts)
  if type(summaries) ~= "table" then
    error("bad argument #2 to 'collect' (table of summaries by job id expected)", 2)
  end
  opts = opts or {}
  local run, t0 = collect_run(submitted, opts, "collect")
  for _, j in ipairs(submitted.jobs) do
    local sm = j.batch_job_id and summaries[j.batch_job_id]
    if not j.error and not (type(sm) == "table" and session_mod.TERMINAL[sm.status]) then
      return nil, str_format("AWS Batch job %s (%s) is %s", tostring(j.job_name), tostring(j.batch_job_id),
        type(sm) == "table" and tostring(sm.status) or "not polled yet"), "EAGAIN"
    end
  end
  local jobdef = run.jobdef
  local by_sid = {}
  for _, j in ipairs(submitted.jobs) do by_sid[j.strategy_id] = j end
  local combos = submitted.skip and {} or (job.strategies(jobdef) or {})
  local results = {}
  for _, combo in ipairs(combos) do
    local j = by_sid[combo.id]
    if not j then
      results[combo.id] = failed_record(combo, t0, error_of(str_format("job '%s' strategy %s was not submitted",
        submitted.job_id, combo.id)))
    else
      results[combo.id] = _M.collect_strategy(submitted, j, summaries[j.batch_job_id] or {}, opts)
    end
  end
  local jctx
  if submitted.skip then
    jctx = { status = "SKIP", info = stage.info(t0, stage.now()) }
  else
    jctx = require("luabatch.workflow.plan").job_context(jobdef, combos, results, t0, stage.now())
  end
  if opts.cleanup ~= false and not submitted.skip and not (opts.retry and jctx.status == "FAILED") then
    _M.cleanup(submitted, jctx.status, opts)
  end
  return job.record(jobdef, jctx), jctx
end

return _M
