-- luabatch.runner.aws_batch.jobdef: the FARGATE rules of jobdef.spec (task
-- sizes, GPU, execution role, platform_version, assign_public_ip) and the
-- EC2/FARGATE split, without any server.
require "luabatch.runner"   -- the runners' types and with: schemas, for the loader
local jobdef = require "luabatch.runner.aws_batch.jobdef"
local policy = require "luabatch.runner.aws_batch.policy"

local ROLE = "arn:aws:iam::1:role/exec"

local function far(extra)
  local w = { platform = "FARGATE", execution_role_arn = ROLE }
  for k, v in pairs(extra or {}) do w[k] = v end
  return jobdef.spec(w, policy.merge())
end

describe("luabatch.runner.aws_batch.jobdef #unit", function()
  it("accepts every Fargate task size of the Batch model's table", function()
    local ok = {
      { 0.25, 512 }, { 0.25, 1024 }, { 0.25, 2048 }, { 0.5, 1024 }, { 0.5, 3072 }, { 0.5, 4096 },
      { 1, 2048 }, { 1, 5120 }, { 1, 8192 }, { 2, 4096 }, { 2, 9216 }, { 2, 16384 }, { 4, 8192 },
      { 4, 17408 }, { 4, 30720 }, { 8, 8192 }, { 8, 16384 }, { 8, 36864 }, { 8, 61440 },
      { 16, 32768 }, { 16, 65536 }, { 16, 122880 },
    }
    for _, p in ipairs(ok) do
      local s, err = far({ vcpus = p[1], memory = p[2] })
      assert.is_table(s, tostring(p[1]) .. "/" .. tostring(p[2]) .. ": " .. tostring(err))
      local rr = s.request.containerProperties.resourceRequirements
      assert.equal(jobdef.num_string(p[1]), rr[1].value)
      assert.equal(jobdef.num_string(p[2]), rr[2].value)
    end
  end)

  it("refuses the sizes Fargate does not have, naming the field", function()
    local bad = {
      { 0.25, 1536, "with.memory" }, { 0.25, 4096, "with.memory" }, { 0.5, 512, "with.memory" },
      { 1, 1024, "with.memory" }, { 1, 2560, "with.memory" }, { 2, 2048, "with.memory" },
      { 4, 2048, "with.memory" }, { 8, 20000, "with.memory" }, { 8, 12288, "with.memory" },
      { 16, 16384, "with.memory" }, { 16, 36864, "with.memory" },
      { 3, 8192, "with.vcpus" }, { 0.75, 2048, "with.vcpus" }, { 32, 131072, "with.vcpus" },
    }
    for _, p in ipairs(bad) do
      local s, err = far({ vcpus = p[1], memory = p[2] })
      assert.is_nil(s, tostring(p[1]) .. "/" .. tostring(p[2]))
      assert.equal(p[3], err:match("^with%.[%w_]+"), err)
      assert.matches("FARGATE", err, 1, true)
    end
    -- the defaults (1 vCPU, 2048 MiB) are a Fargate size; 4 vCPU with them is not
    assert.is_table(far())
    local _, err = far({ vcpus = 4 })
    assert.equal("with.memory 2048 MiB is not a FARGATE size for 4 vCPU (8192 to 30720 MiB in steps of 1024)", err)
    -- EC2 has no such table
    assert.is_table(jobdef.spec({ vcpus = 3, memory = 1000 }, policy.merge()))
  end)

  it("refuses GPUs and a missing execution role on FARGATE only", function()
    local _, err = far({ gpus = 1 })
    assert.matches("^with%.gpus is not available on FARGATE", err)
    assert.is_table(far({ gpus = 0 }))
    _, err = jobdef.spec({ platform = "fargate" }, policy.merge())
    assert.matches("^with%.execution_role_arn is required on FARGATE", err)
    local s = assert(jobdef.spec({ gpus = 1 }, policy.merge()))
    assert.same({ type = "GPU", value = "1" }, s.request.containerProperties.resourceRequirements[3])
  end)

  it("sends platform_version (default LATEST) and assign_public_ip (booleans or their strings)", function()
    local function net(extra)
      local s, err = far(extra)
      if not s then return nil, err end
      local cp = s.request.containerProperties
      return cp.fargatePlatformConfiguration.platformVersion, cp.networkConfiguration.assignPublicIp, s
    end
    local pv, ip, s = net()
    assert.equal("LATEST", pv)
    assert.equal("ENABLED", ip)
    assert.same({ "FARGATE" }, s.request.platformCapabilities)
    pv, ip = net({ platform_version = "1.4.0", assign_public_ip = false })
    assert.equal("1.4.0", pv)
    assert.equal("DISABLED", ip)
    -- `--with K=V` and ${VAR} give strings
    for v, want in pairs({ ["false"] = "DISABLED", ["FALSE"] = "DISABLED", DISABLED = "DISABLED",
                           ["true"] = "ENABLED", enabled = "ENABLED" }) do
      local _, got = net({ assign_public_ip = v })
      assert.equal(want, got, v)
    end
    local _, err = net({ assign_public_ip = "maybe" })
    assert.equal("with.assign_public_ip must be true or false, got maybe", err)
    _, err = net({ platform_version = "newest" })
    assert.matches("^with%.platform_version must be LATEST or a Fargate version", err)
    -- a different version is different content: another revision, not another name
    local a, b = assert(far({ platform_version = "1.4.0" })), assert(far({ platform_version = "1.3.0" }))
    assert.equal(a.name, b.name)
    assert.are_not.equal(a.hash, b.hash)
  end)

  it("keeps Fargate-only fields out of EC2 definitions and names the two platforms apart", function()
    local e = assert(jobdef.spec({ platform_version = "1.4.0", assign_public_ip = false, image = "img:1" },
      policy.merge()))
    local cp = e.request.containerProperties
    assert.is_nil(cp.fargatePlatformConfiguration)
    assert.is_nil(cp.networkConfiguration)
    assert.same({ "EC2" }, e.request.platformCapabilities)
    local f = assert(far({ image = "img:1" }))
    assert.are_not.equal(e.name, f.name)
    assert.matches("fargate", f.name, 1, true)
  end)
end)
