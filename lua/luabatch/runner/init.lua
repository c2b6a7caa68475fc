-- luabatch.runner: the registry of runners (runs-on types).
--
--   local runner = require "luabatch.runner"
--   local mod, msg = runner.get("aws_batch")     -- the runner module | nil, msg
--   local spec = runner.schema("aws_batch")      -- its with: schema | nil (free-form)
--   runner.types()                               -- { "local", "aws_batch", "docker" }
--   runner.max_parallel("aws_batch")             -- 10000 (nil: the local bound, 9)
--
-- A runner is one folder (or file) under luabatch/runner/ and one line
-- here: `module` runs jobs (open_job, or run_job; see runner/local.lua),
-- `schema` (optional) names the module of its with: fields
-- (luabatch.runner.schema; without one, with: is free-form), `ops`
-- (optional) its hooks for the run commands (runner/aws_batch/ops.lua),
-- `max_parallel` (optional) the largest strategy max-parallel it allows
-- (without one: 9, ddeutil-workflow's bound; docs/design.md says why
-- aws_batch's is 10000).

local _M = { _VERSION = "0.1.0" }

local ipairs = ipairs

-- In the order messages list them.
local ORDER = { "local", "aws_batch", "docker" }
local REGISTRY = {
  ["local"] = { module = "luabatch.runner.local" },
  aws_batch = { module = "luabatch.runner.aws_batch", schema = "luabatch.runner.aws_batch.schema",
                ops = "luabatch.runner.aws_batch.ops", max_parallel = 10000 },
  docker = { module = "luabatch.runner.docker", schema = "luabatch.runner.docker.schema" },
}

local require = require
local tostring = tostring
local table_concat = table.concat

function _M.types()
  local out = {}
  for i, t in ipairs(ORDER) do out[i] = t end
  return out
end

--- get(type) -> runner module | nil, message
function _M.get(t)
  local r = REGISTRY[t]
  if not r then
    return nil, "unknown runs-on type '" .. tostring(t) .. "' (supported: " .. table_concat(_M.types(), ", ") .. ")"
  end
  return require(r.module)
end

--- schema(type) -> the runner's with: schema | nil (free-form or unknown)
function _M.schema(t)
  local r = REGISTRY[t]
  return r and r.schema and require(r.schema) or nil
end

--- ops(type) -> the runner's hooks for the run commands (status, logs,
-- cancel, cleanup) | nil, message (a runner whose jobs leave nothing to
-- inspect: local)
function _M.ops(t)
  local r = REGISTRY[t]
  if not (r and r.ops) then return nil, "runs-on type '" .. tostring(t) .. "' has no run operations" end
  return require(r.ops)
end

--- max_parallel(type) -> the largest max-parallel the runner allows | nil
-- (nil: the local bound, 9)
function _M.max_parallel(t)
  local r = REGISTRY[t]
  return r and r.max_parallel or nil
end

--- known(type) -> true when the type is registered
function _M.known(t) return REGISTRY[t] ~= nil end

--- value(kind, v [, spec]): luabatch.runner.schema's, for the loader (a
-- kind of the runner's own: spec.kinds[kind])
function _M.value(kind, v, spec)
  local own = spec and spec.kinds and spec.kinds[kind]
  if own then return own(v) end
  return require("luabatch.runner.schema").value(kind, v)
end

-- The workflow layer learns of the runners here (it never requires them).
require("luabatch.workflow.load").use_runners(_M)
require("luabatch.workflow.engine").use_runners(_M)

return _M
