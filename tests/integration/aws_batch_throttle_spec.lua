-- Endless throttling: DescribeJobs answering 429 forever ends a run with a
-- clear error after policy.max_throttled seconds (bursts are ridden out:
-- aws_batch_e2e_spec.lua (e)).  The real `luabatch` executable against the
-- Batch emulator and Ceph RGW (tests/helpers/aws_peers.lua).
local core = require "luabatch.core"
local cjson = require "cjson.safe"
local aws_peers = require "helpers.aws_peers"
local servers = require "helpers.servers"

if rawget(_G, "jit") and not os.getenv("LUABATCH_TEST_EXE") then
  describe("AWS Batch endless throttling #integration", function()
    pending("runs through the Lua 5.4 executable in integration-lua5.4 (the executable embeds Lua 5.4)")
  end)
  return
end

describe("AWS Batch endless throttling #integration", function()
  local p

  setup(function() p = assert(aws_peers.start({ delay = 0.05 })) end)
  teardown(function()
    if p then p:stop() end
    servers.stop_all()
  end)

  it("gives up after policy.max_throttled seconds of 429s on DescribeJobs, naming the cause", function()
    local dir = p.dir
    local wf = dir .. "/throttled.yml"
    local f = assert(io.open(wf, "w"))
    f:write([[
type: Workflow
name: throttled
jobs:
  only:
    runs-on: {type: aws_batch, with: {job_queue_arn: "${AWS_BATCH_JOB_QUEUE_ARN}", s3_bucket: "${AWS_S3_BUCKET}"}}
    stages:
      - {name: One, id: one, run: "x = 1"}
]])
    f:close()
    local policy = dir .. "/policy_throttle.lua"
    f = assert(io.open(policy, "w"))
    f:write([[return { intervals = { fast = 0.2, fast_max = 0.5, running = 0.3, max = 1 }, wait_slice = 0.2,
      max_throttled = 2 }]])
    f:close()
    p.emu:fault({ operation = "DescribeJobs", action = "throttle", times = -1 })
    local t0 = core.monotime()
    local out, err, code = p:run({ "run", wf, "--json", "--policy", policy })
    local took = core.monotime() - t0
    p.emu:clear_faults()
    assert.are.equal(1, code, err .. out)
    local ctx = cjson.decode(out)
    assert.is_table(ctx, out)
    assert.are.equal("FAILED", ctx.status)
    local text = out .. err
    assert.is_truthy(text:find("DescribeJobs throttled", 1, true), text)
    assert.is_truthy(text:find("max_throttled", 1, true), text)
    -- bounded: without the policy the run would wait forever (default 300 s)
    assert.is_true(took < 120, "took " .. took .. " s")
    assert.is_true((p.emu:calls().faulted.DescribeJobs or 0) >= 2)
  end)
end)
