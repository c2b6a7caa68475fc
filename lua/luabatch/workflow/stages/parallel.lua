-- luabatch.workflow.stages.parallel: `parallel: {branch: [stages]}` runs all
-- branches concurrently, at most `max-workers` (1..19, default 2; a template
-- string is rendered) at once.  Each branch runs its stages in order in a
-- copy of the render context with `branch` set.
-- Outputs { workers = n, parallel = { <branch> = { status, branch, stages[, errors] } } };
-- a failing branch makes the stage FAILED with errors { <branch> = {name, message} }.

local stage = require "luabatch.workflow.stage"

local _M = { _VERSION = "0.1.0" }

local str_format = string.format

function _M.execute(st, rctx, env)
  local mw = st.max_workers
  if mw == nil then mw = st["max-workers"] end
  if mw == nil then mw = 2 end
  if type(mw) == "string" then
    local v, err = stage.render_or_error(env, mw, rctx)
    if v == nil then return nil, err end
    mw = v
  end
  local n = tonumber(mw)
  if n == nil or n ~= math.floor(n) or n < 1 or n > 19 then
    return nil, { name = "StageError", message = str_format(
      "parallel: max-workers must be an integer from 1 to 19, not %s", tostring(mw)) }
  end
  local branches = {}
  local order = st.branch_order or st.parallel_order
  if type(order) ~= "table" then
    order = {}
    for name in pairs(st.parallel or {}) do order[#order + 1] = name end
    table.sort(order, function(a, b) return tostring(a) < tostring(b) end)
  end
  for i, name in ipairs(order) do branches[i] = name end
  local results = stage.map_concurrent(branches, n, function(_, name)
    local bctx = stage.child_ctx(rctx, { branch = name })
    local status, records, failed = stage.run_list(st.parallel[name] or {}, bctx, env)
    local rec = { status = status, branch = name, stages = records }
    if status == "FAILED" or status == "CANCEL" then
      rec.errors = { name = status == "CANCEL" and "StageCancelError" or "StageError",
        message = failed and str_format("Break branch: '%s' because nested stage: '%s', failed.", name, failed)
          or str_format("Branch '%s' was canceled.", name) }
    end
    return rec
  end)
  local out = { workers = n, parallel = stage.object() }
  local errs, any_failed, any_cancel = stage.object(), false, false
  for i, name in ipairs(branches) do
    local rec = results[i]
    if rec then
      out.parallel[name] = rec
      if rec.errors then errs[name] = rec.errors end
      if rec.status == "FAILED" then any_failed = true end
      if rec.status == "CANCEL" then any_cancel = true end
    end
  end
  if any_failed then return nil, errs, out end
  if any_cancel then
    local e = { status = "CANCEL" }
    for k, v in pairs(errs) do e[k] = v end
    return nil, e, out
  end
  return out
end

return _M
