-- The Batch features pipelines need, end to end through the executable
-- against the emulator and Ceph RGW: secrets (valueFrom, never through the
-- client), fair-share queues (share identifier, priority; refused before
-- any SubmitJob when missing), storage (volumes, mount points, shared
-- memory, tmpfs: in the definition, a change a new revision), multi-node
-- parallel jobs (every node runs, the main node's record is the result).
require "luabatch.runner"
local cjson = require "cjson.safe"
local aws_peers = require "helpers.aws_peers"

local ROOT = os.getenv("PWD")
local POLICY = ROOT .. "/tests/fixtures/aws-batch/policy_fast.lua"

if rawget(_G, "jit") and not os.getenv("LUABATCH_TEST_EXE") then
  describe("Batch features end to end #integration", function()
    pending("runs through the Lua 5.4 executable in integration-lua5.4 (the executable embeds Lua 5.4)")
  end)
  return
end

local SECRET_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:db-pass-AbCdEf"
local SECRET_VALUE = "s3cr3t-Value-7781"
local ROLE = "arn:aws:iam::123456789012:role/exec"

local HEAD = [=[
type: Workflow
name: %s
jobs:
  one:
    runs-on:
      type: aws_batch
      with:
        job_queue_arn: "${AWS_BATCH_JOB_QUEUE_ARN}"
        s3_bucket: "${AWS_S3_BUCKET}"
%s
    stages:
      - {name: Work, id: w, bash: '%s'}
]=]

describe("Batch features end to end #integration", function()
  local p, n = nil, 0

  setup(function() p = assert(aws_peers.start()) end)
  teardown(function() if p then p:stop() end end)

  local function run(with, bash, extra)
    n = n + 1
    local path = p.dir .. "/feat" .. n .. ".yml"
    local f = assert(io.open(path, "w"))
    f:write(HEAD:format("feat" .. n, with, bash))
    f:close()
    local argv = { "run", path, "--policy", extra and extra.policy or POLICY, "--json" }
    local out, err, code = p:run(argv)
    return cjson.decode(out), err, code
  end

  local function jobdefs()
    local all = {}
    for d in p.batch:job_definitions({ status = "ACTIVE" }) do all[#all + 1] = d end
    return all
  end

  it("secrets: the container gets the value from the store; it passes through nothing the client writes", function()
    p.emu:config({ secrets = { [SECRET_ARN] = SECRET_VALUE } })
    local with = ("        execution_role_arn: %s\n        secrets: {DB_PASS: %s}"):format(ROLE, SECRET_ARN)
    local ctx, err, code = run(with, '[ "$DB_PASS" = "' .. SECRET_VALUE .. '" ] && echo secret-ok')
    assert.equal(0, code, err)
    assert.equal("secret-ok", ctx.jobs.one.stages.w.outputs.stdout)
    -- the ARN is in the definition, the value nowhere the client wrote
    local found
    for _, d in ipairs(jobdefs()) do
      for _, s in ipairs((d.containerProperties or {}).secrets or {}) do
        if s.valueFrom == SECRET_ARN then found = d end
      end
    end
    assert.is_table(found, "no job definition with the secret's valueFrom")
    assert.is_nil(cjson.encode(jobdefs()):find(SECRET_VALUE, 1, true))
    for _, key in ipairs(p:keys()) do
      local body = p:get(key)
      assert.is_nil(tostring(body):find(SECRET_VALUE, 1, true), key)
    end
    local jf = assert(io.popen("cat " .. p.home .. "/runs/*/journal.jsonl"))
    assert.is_nil(jf:read("a"):find(SECRET_VALUE, 1, true))
    jf:close()
    -- an ARN the store does not have: the job fails to start, as Batch says
    local bad = "arn:aws:secretsmanager:us-east-1:123456789012:secret:missing-XyZ"
    ctx, err, code = run(("        execution_role_arn: %s\n        secrets: {DB_PASS: %s}"):format(ROLE, bad), "echo never")
    assert.equal(1, code, err)
    assert.truthy(err:find("ResourceInitializationError: unable to pull secrets", 1, true), err)
    assert.truthy(err:find("ResourceNotFoundException", 1, true), err)
  end)

  it("fair share: a fair-share queue without share_identifier is refused before any SubmitJob; with one, it runs", function()
    p.emu:config({ fair_share_queues = { "lb-queue" } })
    p.emu:reset_calls()
    local _, err, code = run("", "echo x")
    assert.equal(1, code, err)
    assert.truthy(err:find("with.share_identifier is required: queue lb-queue is a fair-share queue", 1, true), err)
    assert.is_nil(p.emu:calls().counts.SubmitJob)
    local before = {}
    for _, j in ipairs(p.emu:jobs()) do before[j.jobId] = true end
    local ctx
    ctx, err, code = run("        share_identifier: teamA\n        scheduling_priority: 5", "echo fair")
    assert.equal(0, code, err)
    assert.equal("fair", ctx.jobs.one.stages.w.outputs.stdout)
    local mine
    for _, j in ipairs(p.emu:jobs()) do if not before[j.jobId] then mine = j.jobId end end
    local d = assert(p.batch:describe_jobs({ mine })).jobs[1]
    assert.equal("teamA", d.shareIdentifier)
    assert.equal(5, d.schedulingPriority)
    -- a share identifier on a queue without a policy: refused the same way
    p.emu:config({ fair_share_queues = {} })
    _, err, code = run("        share_identifier: teamA", "echo x")
    assert.equal(1, code, err)
    assert.truthy(err:find("with.share_identifier is only for fair-share queues", 1, true), err)
  end)

  it("storage: volumes, mount points, shared memory and tmpfs in the definition; a change is a new revision", function()
    local with = [==[
        volumes: [{name: data, host: /tmp}, {name: shared, efs: {file_system_id: fs-12ab34, transit_encryption: true}}]
        mount_points: [{volume: data, path: /data, read_only: true}, {volume: shared, path: /shared}]
        shared_memory: 256
        tmpfs: [{path: /scratch, size: 64}]]==]
    local _, err, code = run(with, "echo stored")
    assert.equal(0, code, err)
    local function with_shm(size)
      local out = {}
      for _, d in ipairs(jobdefs()) do
        local cp = d.containerProperties or {}
        if cp.linuxParameters and cp.linuxParameters.sharedMemorySize == size then out[#out + 1] = d end
      end
      return out
    end
    local defs = with_shm(256)
    assert.equal(1, #defs)
    local cp = defs[1].containerProperties
    assert.equal("/tmp", cp.volumes[1].host.sourcePath)
    assert.equal("fs-12ab34", cp.volumes[2].efsVolumeConfiguration.fileSystemId)
    assert.same({ sourceVolume = "data", containerPath = "/data", readOnly = true }, cp.mountPoints[1])
    assert.equal("/scratch", cp.linuxParameters.tmpfs[1].containerPath)
    -- the same settings: reused; another shared memory size: a new revision
    _, err, code = run(with, "echo again")
    assert.equal(0, code, err)
    assert.equal(1, #with_shm(256))
    _, err, code = run((with:gsub("shared_memory: 256", "shared_memory: 512")), "echo more")
    assert.equal(0, code, err)
    assert.equal(1, #with_shm(512))
  end)

  it("a stage's timeout: on Batch too, the stage killed and FAILED 'timed out after N s'", function()
    n = n + 1
    local path = p.dir .. "/timeout.yml"
    local f = assert(io.open(path, "w"))
    f:write(([=[
type: Workflow
name: stage-timeout
jobs:
  one:
    runs-on: {type: aws_batch, with: {job_queue_arn: "${AWS_BATCH_JOB_QUEUE_ARN}", s3_bucket: "${AWS_S3_BUCKET}"}}
    stages:
      - {name: Slow, id: slow, bash: 'echo begun; sleep 60', timeout: 2}
]=]))
    f:close()
    local out, err, code = p:run({ "run", path, "--policy", POLICY, "--json" })
    assert.equal(1, code, err)
    local ctx = cjson.decode(out)
    local st = ctx.jobs.one.stages.slow
    assert.equal("FAILED", st.status)
    assert.truthy(st.errors.message:find("bash stage timed out after 2 s", 1, true), st.errors.message)
    assert.equal("begun", st.outputs.stdout)
  end)

  it("multi-node: every node runs the strategy, the main node's record is the job's result", function()
    -- the main node ends last (when it ends, Batch stops the others), as an MPI main would
    local bash = '[ "$AWS_BATCH_JOB_NODE_INDEX" != 1 ] || sleep 3; '
      .. 'echo "node $AWS_BATCH_JOB_NODE_INDEX of $AWS_BATCH_JOB_NUM_NODES main=$AWS_BATCH_JOB_MAIN_NODE_PRIVATE_IPV4_ADDRESS"'
    local keep = p.dir .. "/policy_keep.lua"          -- the run's files kept: the nodes' logs are looked at
    local f = assert(io.open(keep, "w"))
    f:write(("local p = dofile(%q)\np.cleanup = 'never'\nreturn p\n"):format(POLICY))
    f:close()
    local ctx, err, code = run("        nodes: {count: 3, main: 1}", bash, { policy = keep })
    assert.equal(0, code, err)
    assert.equal("node 1 of 3 main=", ctx.jobs.one.stages.w.outputs.stdout)   -- not set on the main node
    local logs = {}
    for _, key in ipairs(p:keys()) do
      local i = key:match("/node%-(%d)%.log$")
      if i then logs[tonumber(i)] = p:get(key) end
    end
    assert.truthy(tostring(logs[0]):find("node 0 of 3 main=127.0.0.1", 1, true), tostring(logs[0]))
    assert.truthy(tostring(logs[2]):find("node 2 of 3 main=127.0.0.1", 1, true), tostring(logs[2]))
    assert.is_nil(logs[1])                                 -- the main node wrote the result instead
    local md
    for _, d in ipairs(jobdefs()) do if d.type == "multinode" then md = d end end
    assert.is_table(md, "no multinode job definition")
    assert.equal(3, md.nodeProperties.numNodes)
    assert.equal(1, md.nodeProperties.mainNode)
  end)
end)
