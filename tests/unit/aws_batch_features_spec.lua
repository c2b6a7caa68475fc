-- The Batch features of runs-on aws_batch (issue: secrets, fair share,
-- storage, multi-node): with: fields checked (schema + aws_batch/kinds.lua),
-- turned into the job definition Batch expects (jobdef.spec), and covered
-- by its hash -- without any server.
require "luabatch.runner"
local jobdef = require "luabatch.runner.aws_batch.jobdef"
local check = require "luabatch.runner.aws_batch.check"
local policy = require "luabatch.runner.aws_batch.policy"
local schema = require "luabatch.runner.schema"
local fields = require "luabatch.runner.aws_batch.schema"
local load = require "luabatch.workflow.load"

local ROLE = "arn:aws:iam::1:role/exec"
local SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:db-pass-AbCdEf"
local PARAM = "arn:aws:ssm:us-east-1:123456789012:parameter/team/token"

local function spec(w)
  local all = { job_queue_arn = "q", s3_bucket = "b" }
  for k, v in pairs(w) do all[k] = v end
  local out, field, msg = schema.check(fields, all)
  if not out then return nil, "with." .. field .. " " .. msg end
  return jobdef.spec(out, policy.merge())
end

local function cfg(w)
  local base = { job_queue_arn = "q", s3_bucket = "b", region_name = "us-east-1" }
  for k, v in pairs(w) do base[k] = v end
  return check.check(base, "j", policy.merge(), function() return nil end, "run1")
end

describe("aws_batch features #unit", function()
  it("secrets: valueFrom in the definition, the execution role required, names checked", function()
    local s = assert(spec({ execution_role_arn = ROLE, secrets = { DB_PASS = SECRET, TOKEN = PARAM } }))
    assert.same({ { name = "DB_PASS", valueFrom = SECRET }, { name = "TOKEN", valueFrom = PARAM } },
      s.request.containerProperties.secrets)
    local _, err = spec({ secrets = { DB_PASS = SECRET } })
    assert.truthy(err:find("with.execution_role_arn is required with secrets", 1, true), err)
    _, err = spec({ execution_role_arn = ROLE, secrets = { DB_PASS = "hunter2" } })
    assert.truthy(err:find("with.secrets.DB_PASS must be the ARN of a Secrets Manager secret", 1, true), err)
    _, err = spec({ execution_role_arn = ROLE, secrets = { X = SECRET }, environment = { X = "1" } })
    assert.truthy(err:find("with.secrets.X is also in with.environment", 1, true), err)
    _, err = cfg({ execution_role_arn = ROLE, secrets = { AWS_SECRET_ACCESS_KEY = SECRET } })
    assert.truthy(err:find("with.secrets.AWS_SECRET_ACCESS_KEY must not be set", 1, true), err)
    -- the value never passes through the client: only the ARN is in the request
    assert.is_nil(require("luabatch.json").encode(s.request):find("hunter2", 1, true))
  end)

  it("fair share: share_identifier and scheduling_priority reach the checked configuration", function()
    local c = assert(cfg({ share_identifier = "teamA", scheduling_priority = 7 }))
    assert.equal("teamA", c.share_identifier)
    assert.equal(7, c.scheduling_priority)
    local _, err = cfg({ scheduling_priority = 10000 })
    assert.truthy(err:find("with.scheduling_priority must be a whole number in 0..9999", 1, true), err)
  end)

  it("storage: host and EFS volumes with mount points, shared memory, tmpfs; Fargate's ephemeral storage", function()
    local s = assert(spec({
      volumes = { { name = "data", host = "/mnt/data" },
                  { name = "shared", efs = { file_system_id = "fs-12ab", access_point_id = "fsap-0f", iam = true,
                                              transit_encryption = true, root_directory = "/exports" } } },
      mount_points = { { volume = "data", path = "/data", read_only = true }, { volume = "shared", path = "/shared" } },
      shared_memory = 2048, tmpfs = { { path = "/scratch", size = 512, options = { "rw", "noexec" } } } }))
    local p = s.request.containerProperties
    assert.same({ name = "data", host = { sourcePath = "/mnt/data" } }, p.volumes[1])
    assert.same({ name = "shared", efsVolumeConfiguration = { fileSystemId = "fs-12ab", rootDirectory = "/exports",
      transitEncryption = "ENABLED", authorizationConfig = { accessPointId = "fsap-0f", iam = "ENABLED" } } }, p.volumes[2])
    assert.same({ { sourceVolume = "data", containerPath = "/data", readOnly = true },
                  { sourceVolume = "shared", containerPath = "/shared", readOnly = false } }, p.mountPoints)
    assert.same({ sharedMemorySize = 2048, tmpfs = { { containerPath = "/scratch", size = 512,
      mountOptions = { "rw", "noexec" } } } }, p.linuxParameters)
    local f = assert(spec({ platform = "FARGATE", execution_role_arn = ROLE, ephemeral_storage = 100 }))
    assert.same({ sizeInGiB = 100 }, f.request.containerProperties.ephemeralStorage)
    local cases = {
      { { mount_points = { { volume = "nope", path = "/x" } } }, "with.mount_points.1.volume 'nope' is not in with.volumes" },
      { { volumes = { { name = "v", host = "rel/path" } } }, "with.volumes.1.host must be an absolute path" },
      { { volumes = { { name = "v", efs = { file_system_id = "fs-1", iam = true } } } },
        "with.volumes.1.efs.transit_encryption must be true when access_point_id or iam is set" },
      { { volumes = { { name = "v", host = "/a", efs = { file_system_id = "fs-1" } } } }, "with.volumes.1 must be either host or efs" },
      { { platform = "FARGATE", execution_role_arn = ROLE, volumes = { { name = "v", host = "/a" } } },
        "with.volumes.1.host is not available on FARGATE" },
      { { platform = "FARGATE", execution_role_arn = ROLE, shared_memory = 64 }, "with.shared_memory is not available on FARGATE" },
      { { ephemeral_storage = 100 }, "with.ephemeral_storage is for FARGATE" },
      { { platform = "FARGATE", execution_role_arn = ROLE, ephemeral_storage = 20 }, "with.ephemeral_storage must be a whole number of GiB in 21..200" },
      { { tmpfs = { { path = "/t" } } }, "with.tmpfs.1.size must be a positive whole number of MiB" },
    }
    for _, c in ipairs(cases) do
      local _, err = spec(c[1])
      assert.truthy(err and err:find(c[2], 1, true), tostring(err) .. " (wanted: " .. c[2] .. ")")
    end
  end)

  it("multi-node: a multinode definition, the container on every node; EC2 only; not with array", function()
    local s = assert(spec({ nodes = { count = 3, main = 1 } }))
    assert.equal("multinode", s.request.type)
    assert.is_nil(s.request.containerProperties)
    local np = s.request.nodeProperties
    assert.equal(3, np.numNodes)
    assert.equal(1, np.mainNode)
    assert.equal("0:", np.nodeRangeProperties[1].targetNodes)
    assert.same(jobdef.COMMAND, np.nodeRangeProperties[1].container.command)
    local _, err = spec({ nodes = { count = 1 } })
    assert.truthy(err:find("with.nodes.count must be a whole number in 2..1000", 1, true), err)
    _, err = spec({ nodes = { count = 2, main = 2 } })
    assert.truthy(err:find("with.nodes.main must be a node index in 0..1", 1, true), err)
    _, err = spec({ nodes = { count = 2 }, array = true })
    assert.truthy(err:find("with.nodes and with.array do not go together", 1, true), err)
    _, err = spec({ nodes = { count = 2 }, platform = "FARGATE", execution_role_arn = ROLE })
    assert.truthy(err:find("with.nodes is not available on FARGATE", 1, true), err)
  end)

  it("the definition's hash covers each feature: a change is a new revision, the same settings reuse it", function()
    local base = assert(spec({}))
    local seen = { [base.hash] = "base" }
    for name, w in pairs({
      secrets = { execution_role_arn = ROLE, secrets = { A = SECRET } },
      volumes = { volumes = { { name = "v", host = "/a" } }, mount_points = { { volume = "v", path = "/a" } } },
      shm = { shared_memory = 64 }, tmpfs = { tmpfs = { { path = "/t", size = 8 } } },
      nodes = { nodes = { count = 2 } },
    }) do
      local a, b = assert(spec(w)), assert(spec(w))
      assert.equal(a.hash, b.hash, name)
      assert.is_nil(seen[a.hash], name .. " has the hash of " .. tostring(seen[a.hash]))
      seen[a.hash] = name
    end
    -- no new field given: the hash of a definition made before these fields existed
    assert.equal(jobdef.canonical({ platform = "EC2", containerProperties = base.request.containerProperties }),
      jobdef.canonical({ platform = "EC2", containerProperties = base.request.containerProperties }))
  end)

  it("at load: a bad structured field names FILE:LINE:COL and the path inside it", function()
    local m, err = load.string([[
jobs:
  a:
    runs-on:
      type: aws_batch
      with:
        job_queue_arn: q
        s3_bucket: b
        volumes: [{name: v, host: relative}]
    stages: [{name: s, echo: x}]
]], "vol.yml", {})
    assert.is_nil(m)
    assert.truthy(err:find("vol.yml:", 1, true) and err:find("volumes.1.host", 1, true), err)
  end)
end)
