-- luabatch.workflow.stages.empty: `echo` (rendered, logged) and `sleep`
-- (seconds, 0 <= s < 1800; other scheduler tasks run meanwhile).  Outputs {}.

local stage = require "luabatch.workflow.stage"

local _M = { _VERSION = "0.1.0" }

function _M.execute(st, rctx, env)
  if st.echo ~= nil then
    local text, err = stage.render_or_error(env, st.echo, rctx)
    if text == nil then return nil, err end
    if env.log then
      local t = require("luabatch.workflow.template")
      env.log(type(text) == "string" and text or t.pystr(text))
    end
  end
  local s = tonumber(st.sleep)
  if s and s > 0 then
    if env.sleep then env.sleep(s) else env.sched.sleep(s) end
  end
  return stage.object()
end

return _M
