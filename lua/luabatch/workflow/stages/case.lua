-- luabatch.workflow.stages.case: `case: value` (rendered; a whole template
-- keeps its type) picks the first `match` entry whose rendered `case` equals
-- it (type-sensitive: 1 ~= "1"); `case: _` or an `else:` entry is the
-- fallback.  The chosen stages run in order with `case` in the render
-- context (= "_" for the fallback).  No match and no fallback -> FAILED, or
-- SKIP with `skip-not-match: true`.
-- Outputs { case = <matched case | "_">, stages = { ... } }.

local stage = require "luabatch.workflow.stage"

local _M = { _VERSION = "0.1.0" }

local str_format = string.format

function _M.execute(st, rctx, env)
  local value, err = stage.render_or_error(env, st.case, rctx)
  if value == nil then return nil, err end
  local chosen, fallback, label
  for _, m in ipairs(st.match or {}) do
    if type(m) == "table" then
      if m["else"] ~= nil or m.is_else then
        fallback = fallback or (m["else"] ~= nil and m["else"] or m.stages)
      elseif m.case == "_" then
        fallback = fallback or m.stages
      else
        local c, cerr = stage.render_or_error(env, m.case, rctx)
        if c == nil then return nil, cerr end
        if c == value or (type(c) == "number" and type(value) == "number" and c == value) then
          chosen, label = m.stages, c
          break
        end
      end
    end
  end
  if chosen == nil then
    if fallback == nil then
      if st.skip_not_match == true or st["skip-not-match"] == true then
        return nil, { status = "SKIP", name = "StageSkipError", message = "no case matched" }
      end
      return nil, { name = "StageError", message = "This stage does not set else for support not match any case." }
    end
    chosen, label = fallback, "_"
  end
  local cctx = stage.child_ctx(rctx, { case = label })
  local status, records, failed = stage.run_list(chosen or {}, cctx, env)
  local out = { case = label, stages = records }
  if status == "FAILED" then
    return nil, { name = "StageError", message = str_format(
      "Case-Stage was break because its nested-stage, '%s', failed.", tostring(failed)) }, out
  elseif status == "CANCEL" then
    return nil, { status = "CANCEL", name = "StageCancelError",
      message = "Case-Stage was canceled before its next nested stage." }, out
  end
  return out
end

return _M
