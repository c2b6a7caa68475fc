-- luabatch.workflow.stages.until: repeat `stages` until the `until`
-- expression is true, at most `max-loop` (1..99, default 10) times.
-- `item` (initial value, default 0, rendered) and `loop` (from 1) are in the
-- render context.  After each loop the next item is the `item` output of the
-- last nested stage that produced one, else loop + 1; then `until` is
-- rendered with the new item and loop and evaluated (must be a boolean).
-- Outputs { until = { <loop> = { status, loop, item, stages } } }.
-- More loops than max-loop -> FAILED "Loop was exceed the maximum N loops.".

local stage = require "luabatch.workflow.stage"

local _M = { _VERSION = "0.1.0" }

local str_format = string.format

function _M.execute(st, rctx, env)
  local item = st.item
  if item == nil then item = 0 end
  local err
  item, err = stage.render_or_error(env, item, rctx)
  if item == nil then return nil, err end
  local max_loop = st.max_loop
  if max_loop == nil then max_loop = st["max-loop"] end
  if max_loop == nil then max_loop = 10 end
  max_loop = tonumber(max_loop)
  if max_loop == nil or max_loop ~= math.floor(max_loop) or max_loop < 1 or max_loop > 99 then
    return nil, { name = "StageError", message = "until: max-loop must be an integer from 1 to 99" }
  end
  local loops = stage.object()
  local out = { ["until"] = loops }
  local loop = 1
  while true do
    local lctx = stage.child_ctx(rctx, { item = item, loop = loop })
    local status, records, failed = stage.run_list(st.stages or {}, lctx, env)
    local rec = { status = status, loop = loop, item = item, stages = records }
    loops[loop] = rec
    if status == "FAILED" then
      rec.errors = { name = "StageError", message = str_format(
        "Loop %d was break because its nested-stage, '%s', failed.", loop, tostring(failed)) }
      local e = stage.object()
      e[loop] = rec.errors
      return nil, e, out
    elseif status == "CANCEL" then
      return nil, { status = "CANCEL", name = "StageCancelError",
        message = str_format("Loop %d was canceled before its next nested stage.", loop) }, out
    end
    local next_item
    for _, child in ipairs(st.stages or {}) do
      local k = stage.key(child, lctx, env)
      local r = k and records[k]
      if r and type(r.outputs) == "table" and r.outputs.item ~= nil then next_item = r.outputs.item end
    end
    if next_item == nil then next_item = loop + 1 end
    item = next_item
    loop = loop + 1
    local ok, cerr = stage.condition(st["until"], { params = rctx.params, matrix = rctx.matrix,
      stages = lctx.stages, jobs = rctx.jobs, item = item, loop = loop, branch = rctx.branch,
      case = rctx.case, retry = rctx.retry, status = rctx.status }, env)
    if ok == nil then
      return nil, { name = "StageError", message = "until: " .. tostring(cerr) }, out
    end
    if ok then break end
    if loop > max_loop then
      return nil, { name = "StageError", message = str_format(
        "Loop was exceed the maximum %d loops.", max_loop) }, out
    end
  end
  return out
end

return _M
