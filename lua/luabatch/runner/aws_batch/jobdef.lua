-- luabatch.runner.aws_batch.jobdef: the job definition a job runs under,
-- reused by name + content hash, never registered per run.
--
--   local jobdef = require "luabatch.runner.aws_batch.jobdef"
--   local spec, err = jobdef.spec(with, policy)
--   -- spec = { name, hash, platform, request = RegisterJobDefinition body }
--   local def, msg, code = jobdef.ensure(batch, spec [, cache])
--   -- def = { name, arn, revision, hash, registered = bool }
--
-- hash = sha256 of a canonical JSON (sorted keys) of the platform and the
-- container properties, kept in the definition's parameters as
-- `luabatch_hash`.  ensure() reuses an ACTIVE revision of the name with that
-- hash (DescribeJobDefinitions, every page) and registers one only when none
-- has it; `cache` (a table kept for the session) remembers the answer.
-- FARGATE (with.platform): with.execution_role_arn is required, vcpus and
-- memory must be a Fargate task size, no gpus; with.platform_version
-- (default LATEST) and with.assign_public_ip (default true) are sent on
-- Fargate only.  spec() -> nil, err naming the with: field.
-- The container runs `luabatch task Ref::bundle --strategy Ref::strategy`;
-- SubmitJob fills both parameters, and sets the timeout and retry strategy.

local core = require "luabatch.core"
local policy_mod = require "luabatch.runner.aws_batch.policy"

local _M = { _VERSION = "0.1.0" }

local type = type
local next = next
local pairs = pairs
local ipairs = ipairs
local tostring = tostring
local tonumber = tonumber
local floor = math.floor
local str_format = string.format
local concat = table.concat
local sort = table.sort

local cjson = require "cjson"

_M.COMMAND = { "luabatch", "task", "Ref::bundle", "--strategy", "Ref::strategy" }

---------------------------------------------------------------------------
-- Canonical JSON (sorted keys; sequences as arrays): stable across Lua
-- versions and json libraries, so the hash never changes by accident.
---------------------------------------------------------------------------

local function is_seq(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n > 0 and n == #t
end

local function canon(v, out)
  local tv = type(v)
  if tv == "table" then
    if next(v) == nil then
      out[#out + 1] = "{}"
    elseif is_seq(v) then
      out[#out + 1] = "["
      for i = 1, #v do
        if i > 1 then out[#out + 1] = "," end
        canon(v[i], out)
      end
      out[#out + 1] = "]"
    else
      local keys = {}
      for k in pairs(v) do keys[#keys + 1] = tostring(k) end
      sort(keys)
      out[#out + 1] = "{"
      for i, k in ipairs(keys) do
        if i > 1 then out[#out + 1] = "," end
        out[#out + 1] = cjson.encode(k)
        out[#out + 1] = ":"
        local x = v[k]
        if x == nil then x = v[tonumber(k)] end
        canon(x, out)
      end
      out[#out + 1] = "}"
    end
  elseif tv == "number" then
    if v == floor(v) and v > -1e15 and v < 1e15 then
      out[#out + 1] = str_format("%d", v)
    else
      out[#out + 1] = str_format("%.17g", v)
    end
  elseif tv == "string" then
    out[#out + 1] = cjson.encode(v)
  elseif tv == "boolean" then
    out[#out + 1] = tostring(v)
  else
    out[#out + 1] = "null"
  end
end

--- canonical(v) -> string
function _M.canonical(v)
  local out = {}
  canon(v, out)
  return concat(out)
end


---------------------------------------------------------------------------
-- The definition from with:
---------------------------------------------------------------------------

-- A number as Batch wants it in resourceRequirements ("1", "0.5", "2048").
local function num_string(v)
  local n = tonumber(v)
  if n == nil then return nil end
  if n == floor(n) then return str_format("%d", n) end
  return (str_format("%.6f", n):gsub("0+$", ""):gsub("%.$", ""))
end
_M.num_string = num_string

local function positive(with, field, default)
  local v = with[field]
  if v == nil then v = default end
  local n = tonumber(v)
  if n == nil or n <= 0 then
    return nil, str_format("with.%s must be a positive number, got %s", field, tostring(v))
  end
  return n
end

--- resources(with, policy) -> resourceRequirements list | nil, msg
function _M.resources(with, p)
  local vcpus, err = positive(with, "vcpus", p.vcpus)
  if not vcpus then return nil, err end
  local memory
  memory, err = positive(with, "memory", p.memory)
  if not memory then return nil, err end
  if memory ~= floor(memory) then
    return nil, "with.memory must be a whole number of MiB, got " .. tostring(with.memory)
  end
  local rr = {
    { type = "VCPU", value = num_string(vcpus) },
    { type = "MEMORY", value = num_string(memory) },
  }
  if with.gpus ~= nil and tonumber(with.gpus) ~= 0 then
    local g = tonumber(with.gpus)
    if g == nil or g < 0 or g ~= floor(g) then
      return nil, "with.gpus must be a whole number, got " .. tostring(with.gpus)
    end
    rr[#rr + 1] = { type = "GPU", value = num_string(g) }
  end
  return rr
end

---------------------------------------------------------------------------
-- Fargate: the task sizes Batch accepts (botocore model, ResourceRequirement)
-- and the Fargate-only with: fields.
---------------------------------------------------------------------------

-- vCPU -> { lowest MiB, highest MiB, step MiB } (0.25 vCPU: 512, 1024 or
-- 2048 only; 8 vCPU also 8192, which the model's table lists).
local FARGATE_SIZES = {
  [0.25] = { 512, 2048, 512 }, [0.5] = { 1024, 4096, 1024 }, [1] = { 2048, 8192, 1024 },
  [2] = { 4096, 16384, 1024 }, [4] = { 8192, 30720, 1024 }, [8] = { 16384, 61440, 4096 },
  [16] = { 32768, 122880, 8192 },
}

--- fargate_size_ok(vcpus, memory) -> true | nil, msg (msg names the with: field)
function _M.fargate_size_ok(vcpus, memory)
  local r = FARGATE_SIZES[vcpus]
  if not r then
    return nil, str_format("with.vcpus must be one of 0.25, 0.5, 1, 2, 4, 8, 16 on FARGATE, got %s",
      num_string(vcpus))
  end
  local lo, hi, step = r[1], r[2], r[3]
  if vcpus == 0.25 then
    if memory == 512 or memory == 1024 or memory == 2048 then return true end
    return nil, str_format("with.memory %s MiB is not a FARGATE size for 0.25 vCPU (512, 1024 or 2048 MiB)",
      num_string(memory))
  end
  if vcpus == 8 and memory == 8192 then return true end
  if memory >= lo and memory <= hi and (memory - lo) % step == 0 then return true end
  return nil, str_format("with.memory %s MiB is not a FARGATE size for %s vCPU (%d to %d MiB in steps of %d)",
    num_string(memory), num_string(vcpus), lo, hi, step)
end

-- with.assign_public_ip -> "ENABLED" | "DISABLED" | nil, msg (default ENABLED:
-- a task in a public subnet needs it to pull its image).
local function public_ip(v)
  if v == nil or v == true then return "ENABLED" end
  if v == false then return "DISABLED" end
  local s = type(v) == "string" and v:lower() or nil
  if s == "true" or s == "enabled" then return "ENABLED" end
  if s == "false" or s == "disabled" then return "DISABLED" end
  return nil, "with.assign_public_ip must be true or false, got " .. tostring(v)
end

-- Secrets, storage and shared memory (with: as aws_batch/kinds.lua
-- normalised it) into the container properties -> true | nil, msg
local function extras(with, props, platform)
  local fargate = platform == "FARGATE"
  if with.secrets ~= nil then
    if not props.executionRoleArn then
      return nil, "with.execution_role_arn is required with secrets (the ECS task execution role reads them: "
        .. "secretsmanager:GetSecretValue, ssm:GetParameters)"
    end
    local names = {}
    for k in pairs(with.secrets) do names[#names + 1] = k end
    sort(names)
    local list = {}
    for i, k in ipairs(names) do
      if with.environment and with.environment[k] ~= nil then
        return nil, "with.secrets." .. k .. " is also in with.environment (one source per name)"
      end
      list[i] = { name = k, valueFrom = with.secrets[k] }
    end
    props.secrets = list
  end
  local vols = {}
  for i, v in ipairs(with.volumes or {}) do
    vols[v.name] = true
    if v.host then
      if fargate then return nil, "with.volumes." .. i .. ".host is not available on FARGATE (use efs)" end
      props.volumes = props.volumes or {}
      props.volumes[i] = { name = v.name, host = { sourcePath = v.host } }
    else
      local e = v.efs
      local auth
      if e.access_point_id or e.iam then
        auth = { accessPointId = e.access_point_id, iam = e.iam and "ENABLED" or "DISABLED" }
      end
      props.volumes = props.volumes or {}
      props.volumes[i] = { name = v.name, efsVolumeConfiguration = { fileSystemId = e.file_system_id,
        rootDirectory = e.root_directory, transitEncryption = e.transit_encryption and "ENABLED" or "DISABLED",
        authorizationConfig = auth } }
    end
  end
  for i, m in ipairs(with.mount_points or {}) do
    if not vols[m.volume] then
      return nil, str_format("with.mount_points.%d.volume '%s' is not in with.volumes", i, tostring(m.volume))
    end
    props.mountPoints = props.mountPoints or {}
    props.mountPoints[i] = { sourceVolume = m.volume, containerPath = m.path, readOnly = m.read_only }
  end
  if with.shared_memory ~= nil or with.tmpfs ~= nil then
    if fargate then
      return nil, str_format("with.%s is not available on FARGATE (linuxParameters: EC2 only)",
        with.shared_memory ~= nil and "shared_memory" or "tmpfs")
    end
    local lp = {}
    lp.sharedMemorySize = with.shared_memory
    for i, t in ipairs(with.tmpfs or {}) do
      lp.tmpfs = lp.tmpfs or {}
      lp.tmpfs[i] = { containerPath = t.path, size = t.size, mountOptions = t.options }
    end
    props.linuxParameters = lp
  end
  if with.ephemeral_storage ~= nil then
    if not fargate then
      return nil, "with.ephemeral_storage is for FARGATE (on EC2 the instance's volume decides)"
    end
    props.ephemeralStorage = { sizeInGiB = with.ephemeral_storage }
  end
  return true
end

--- spec(with, policy) -> { name, hash, platform, image, nodes?, request } |
-- nil, msg (msg names the with: field at fault).  with.nodes: a multinode
-- definition (every node runs the container; EC2 only).
function _M.spec(with, p)
  p = p or policy_mod.merge()
  local platform = tostring(with.platform or p.platform or "EC2"):upper()
  if platform ~= "EC2" and platform ~= "FARGATE" then
    return nil, "with.platform must be EC2 or FARGATE, got " .. tostring(with.platform)
  end
  local image = with.image or p.image
  if type(image) ~= "string" or image == "" then
    return nil, "with.image must be a container image name"
  end
  local rr, err = _M.resources(with, p)
  if not rr then return nil, err end
  local props = {
    image = image,
    command = { _M.COMMAND[1], _M.COMMAND[2], _M.COMMAND[3], _M.COMMAND[4], _M.COMMAND[5] },
    resourceRequirements = rr,
  }
  if with.job_role_arn ~= nil and with.job_role_arn ~= "" then
    props.jobRoleArn = tostring(with.job_role_arn)
  end
  if with.execution_role_arn ~= nil and with.execution_role_arn ~= "" then
    props.executionRoleArn = tostring(with.execution_role_arn)
  end
  local group = with.log_group or p.log_group
  if group ~= nil and group ~= "" then
    props.logConfiguration = { logDriver = "awslogs", options = { ["awslogs-group"] = tostring(group) } }
  end
  if platform == "FARGATE" then
    if not props.executionRoleArn then
      return nil, "with.execution_role_arn is required on FARGATE (the ECS task execution role that "
        .. "pulls the image and writes the logs)"
    end
    for _, r in ipairs(rr) do
      if r.type == "GPU" then
        return nil, "with.gpus is not available on FARGATE (GPU jobs need an EC2 queue)"
      end
    end
    local ok, serr = _M.fargate_size_ok(tonumber(rr[1].value), tonumber(rr[2].value))
    if not ok then return nil, serr end
    local ip, ierr = public_ip(with.assign_public_ip)
    if not ip then return nil, ierr end
    local pv = with.platform_version
    if pv == nil or pv == "" then pv = "LATEST" end
    if type(pv) == "number" then pv = num_string(pv) end
    if type(pv) ~= "string" or not (pv == "LATEST" or pv:match("^%d+%.%d+%.%d+$")) then
      return nil, "with.platform_version must be LATEST or a Fargate version such as 1.4.0, got " .. tostring(pv)
    end
    props.networkConfiguration = { assignPublicIp = ip }
    props.fargatePlatformConfiguration = { platformVersion = pv }
  end
  local ok, xerr = extras(with, props, platform)
  if not ok then return nil, xerr end
  local nodes = with.nodes
  local request = { type = "container", platformCapabilities = { platform } }
  local shape
  if nodes then
    if platform == "FARGATE" then return nil, "with.nodes is not available on FARGATE (multi-node jobs run on EC2)" end
    if with.array == true or with.array == "true" then return nil, "with.nodes and with.array do not go together" end
    request.type = "multinode"
    request.nodeProperties = { numNodes = nodes.count, mainNode = nodes.main,
                               nodeRangeProperties = { { targetNodes = "0:", container = props } } }
    shape = { platform = platform, nodeProperties = request.nodeProperties }
  else
    request.containerProperties = props
    shape = { platform = platform, containerProperties = props }
  end
  local hash = core.sha256(_M.canonical(shape))
  local name = policy_mod.jobdef_name(p, { image = image, platform = platform })
  request.jobDefinitionName = name
  request.parameters = { bundle = "", strategy = "", luabatch_hash = hash }
  request.tags = { ["luabatch:hash"] = hash }
  return { name = name, hash = hash, platform = platform, image = image, nodes = nodes, request = request }
end


--- ensure(batch, spec [, cache]) -> { name, arn, revision, hash, registered } | nil, msg, code
function _M.ensure(batch, spec, cache)
  local ck = spec.name .. "@" .. spec.hash
  if cache and cache[ck] then
    local c = cache[ck]
    return { name = c.name, arn = c.arn, revision = c.revision, hash = c.hash, registered = false }
  end
  local best
  for d, msg, code in batch:job_definitions({ jobDefinitionName = spec.name, status = "ACTIVE" }) do
    if not d then
      return nil, "job definition " .. spec.name .. ": " .. tostring(msg), code
    end
    local params = type(d.parameters) == "table" and d.parameters or {}
    if d.status ~= "INACTIVE" and params.luabatch_hash == spec.hash
        and (best == nil or (tonumber(d.revision) or 0) > (tonumber(best.revision) or 0)) then
      best = d
    end
  end
  local out
  if best then
    out = { name = spec.name, arn = best.jobDefinitionArn, revision = best.revision, hash = spec.hash,
            registered = false }
  else
    local ans, msg, code = batch:register_job_definition(spec.request)
    if not ans then return nil, msg, code end
    out = { name = spec.name, arn = ans.jobDefinitionArn, revision = ans.revision, hash = spec.hash,
            registered = true }
  end
  if cache then
    cache[ck] = { name = out.name, arn = out.arn, revision = out.revision, hash = out.hash }
  end
  return out
end


return _M
