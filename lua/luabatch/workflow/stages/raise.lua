-- luabatch.workflow.stages.raise: `raise: text` (rendered) ends the stage
-- FAILED with { name = "StageError", message = text }.

local stage = require "luabatch.workflow.stage"

local _M = { _VERSION = "0.1.0" }

function _M.execute(st, rctx, env)
  local text, err = stage.render_or_error(env, st["raise"], rctx)
  if text == nil then return nil, err end
  if type(text) ~= "string" then text = require("luabatch.workflow.template").pystr(text) end
  return nil, { name = "StageError", message = text }
end

return _M
