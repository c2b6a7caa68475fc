-- luabatch.workflow.stages.trigger: `trigger: name` runs another workflow
-- (searched by name in the conf directory: --conf, else the directory of the
-- running workflow's file) with the rendered `params`.
-- Outputs: the child context { params, jobs[, errors] }.  A child FAILED ->
-- StageError "Trigger workflow was failed with:\n<child error message>"; a
-- child SKIP or CANCEL gives the stage that status.  Triggering a workflow
-- that is already running in this chain is an error (no cycles).

local stage = require "luabatch.workflow.stage"

local _M = { _VERSION = "0.1.0" }

local str_format = string.format

function _M.execute(st, rctx, env)
  local name, err = stage.render_or_error(env, st.trigger, rctx)
  if name == nil then return nil, err end
  name = tostring(name)
  if name == env.workflow_name or (env.parents and env.parents[name]) then
    return nil, { name = "StageError", message = "Circle execute via trigger itself workflow name." }
  end
  local params = {}
  if st.params ~= nil then
    local p, perr = stage.render_or_error(env, st.params, rctx)
    if p == nil then return nil, perr end
    params = p
  end
  local model, lerr = env.load_workflow(name)
  if not model then
    return nil, { name = "StageError", message = str_format("trigger '%s': %s", name, tostring(lerr)) }
  end
  local ctx, rerr = env.run_workflow(model, params)
  if not ctx then
    return nil, { name = "StageError", message = str_format("trigger '%s': %s", name, tostring(rerr)) }
  end
  local out = { params = ctx.params, jobs = ctx.jobs, errors = ctx.errors }
  if ctx.status == "FAILED" then
    return nil, { name = "StageError", message = "Trigger workflow was failed with:\n" ..
      tostring(ctx.errors and ctx.errors.message or "") }, out
  end
  if ctx.status == "SKIP" or ctx.status == "CANCEL" then
    return nil, { status = ctx.status, name = "StageError", message = str_format(
      "Trigger workflow '%s' ended with %s.", name, ctx.status) }, out
  end
  return out
end

return _M
