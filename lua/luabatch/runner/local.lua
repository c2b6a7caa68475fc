-- luabatch.runner.local: run one job of a workflow on this machine.
--
--   local runner = require "luabatch.runner.local"
--   local record, jctx = runner.run_job(model, job_id, context, opts)
--   local h = runner.open_job(model, job_id, wctx, opts)   -- the engine's seam
--
-- model    a loaded workflow (luabatch.workflow.load)
-- job_id   a key of model.jobs
-- context  what the job sees: { params = {...}, jobs = {<id> = record of the
--          jobs done so far}, status = "WAIT" }
-- opts     { env = stage environment (default: engine.make_env(model, opts)),
--            plus the engine.run options when env is not given }
--
-- Returns the job record as kept in the workflow context `jobs.<id>` and the
-- local job context (ddeutil-workflow's job result: { status, <sid>|EMPTY = ...,
-- errors? }); the latter is what a remote runner writes as result.json, and
-- job.record() turns it into the former on the host.  This is the seam the
-- aws_batch runner implements too: same signature, same returns.


require "luabatch.runner"     -- registered with the loader and the engine

local _M = { _VERSION = "0.1.0" }

--- The seam's common start for every runner: check the arguments of the
-- runner function `fname` -> jobdef, env, wctx.  Misuse is raised at the
-- caller of `fname`, which is `depth` levels up (1 = open's own caller is
-- fname, the default).
function _M.open(fname, model, job_id, context, opts, depth)
  local level = 2 + (depth or 1)
  if type(model) ~= "table" or type(model.jobs) ~= "table" then
    error("bad argument #1 to '" .. fname .. "' (workflow model expected)", level)
  end
  local jobdef = model.jobs[job_id]
  if jobdef == nil then
    error("bad argument #2 to '" .. fname .. "' (no job '" .. tostring(job_id) .. "')", level)
  end
  opts = opts or {}
  local env = opts.env
  if env == nil then
    env = require("luabatch.workflow.engine").make_env(model, opts)
    env = setmetatable({ job_id = job_id }, { __index = env })
  end
  context = context or {}
  local wctx = { params = context.params or {}, jobs = context.jobs or {},
                 status = context.status or "WAIT" }
  return jobdef, env, wctx
end

--- open_job(model, job_id, wctx, opts) -> handle: the engine's seam
-- (luabatch.workflow.engine runs the plan; the handle runs one strategy).
--   handle:run_strategy(combo, wctx, senv) -> strategy record
--   handle.array -> nil (strategies one by one), handle:close(status)
function _M.open_job(model, job_id, wctx, opts)
  _M.open("open_job", model, job_id, wctx, opts)
  return require("luabatch.workflow.engine").local_job(model, job_id)
end

--- run_job(model, job_id, context, opts) -> record, jctx (one job, here).
function _M.run_job(model, job_id, context, opts)
  _M.open("run_job", model, job_id, context, opts)
  local o = { runner = _M, runs_on = "local" }
  for k, v in pairs(opts or {}) do if o[k] == nil then o[k] = v end end
  return require("luabatch.workflow.engine").run_job(model, job_id, context, o)
end

return _M
