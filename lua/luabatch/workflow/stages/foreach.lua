-- luabatch.workflow.stages.foreach: run `stages` once per item of `foreach`
-- (a list, or a template rendered to a list or to a JSON-list string), at
-- most `concurrent` (1..9, default 1) items at once.  Each item runs in a
-- copy of the render context with `item` and `loop` (0-based index).  Items
-- must be distinct unless `use_index_as_key` (then the key is the index).
-- Fail-fast: after an item fails no further item starts and running ones
-- stop at their next stage boundary (CANCEL).
-- Outputs { items = [...], foreach = { <item|index> = { status, item, stages[, errors] } } };
-- a failure makes the stage FAILED with errors { <key> = {name, message} }.

local stage = require "luabatch.workflow.stage"

local _M = { _VERSION = "0.1.0" }

local str_format = string.format

local function keystr(v)
  if type(v) == "number" or type(v) == "string" or type(v) == "boolean" then return tostring(v) end
  return require("luabatch.workflow.template").pystr(v)
end

function _M.execute(st, rctx, env)
  local items, err = stage.render_or_error(env, st.foreach, rctx)
  if items == nil then return nil, err end
  if type(items) == "string" then
    local ok, cjson = pcall(require, "cjson.safe")
    local dec = ok and cjson.decode(items) or nil
    if type(dec) ~= "table" then
      return nil, { name = "StageError", message = str_format(
        "foreach: '%s' is not a list", items) }
    end
    items = dec
  end
  if type(items) ~= "table" then
    return nil, { name = "StageError", message = "foreach: the value is not a list but a " .. type(items) }
  end
  local n = 0
  for k in pairs(items) do
    n = n + 1
    if type(k) ~= "number" then
      return nil, { name = "StageError", message = "foreach: the value is a map, not a list" }
    end
  end
  if n ~= #items then return nil, { name = "StageError", message = "foreach: the value is not a list" } end
  local by_index = st.use_index_as_key == true
  if not by_index then
    local seen = {}
    for _, v in ipairs(items) do
      local k = type(v) .. ":" .. keystr(v)
      if seen[k] then
        return nil, { name = "StageError", message = str_format(
          "foreach: duplicate item %s (set use_index_as_key: true to allow duplicates)", keystr(v)) }
      end
      seen[k] = true
    end
  end
  local c = st.concurrent
  if c == nil then c = 1 end
  c = tonumber(c)
  if c == nil or c ~= math.floor(c) or c < 1 or c > 9 then
    return nil, { name = "StageError", message = str_format(
      "foreach: concurrent must be an integer from 1 to 9, not %s", tostring(st.concurrent)) }
  end
  local group = { stop = false }
  local parent_cancelled = env.cancelled
  local ienv = setmetatable({
    cancelled = function() return group.stop or (parent_cancelled ~= nil and parent_cancelled()) or false end,
  }, { __index = env })
  local results = stage.map_concurrent(items, c, function(i, item)
    local ictx = stage.child_ctx(rctx, { item = item, loop = i - 1 })
    local status, records, failed = stage.run_list(st.stages or {}, ictx, ienv)
    local rec = { status = status, item = item, stages = records }
    if status == "FAILED" then
      group.stop = true
      rec.errors = { name = "StageError", message = str_format(
        "Break item: '%s' because nested stage: '%s', failed.", keystr(item), tostring(failed)) }
    elseif status == "CANCEL" then
      rec.errors = { name = "StageCancelError", message = str_format(
        "Item '%s' was canceled before its next nested stage.", keystr(item)) }
    end
    return rec
  end, function() return group.stop or (parent_cancelled ~= nil and parent_cancelled()) or false end)
  local out = { items = stage.array(stage.shallow(items)), foreach = stage.object() }
  local errs, failed, cancel = stage.object(), false, false
  for i, item in ipairs(items) do
    local rec = results[i]
    if rec then
      local key = by_index and (i - 1) or item
      out.foreach[key] = rec
      if rec.errors then errs[key] = rec.errors end
      if rec.status == "FAILED" then failed = true end
      if rec.status == "CANCEL" then cancel = true end
    end
  end
  if failed then return nil, errs, out end
  if cancel then
    local e = { status = "CANCEL" }
    for k, v in pairs(errs) do e[k] = v end
    return nil, e, out
  end
  return out
end

return _M
