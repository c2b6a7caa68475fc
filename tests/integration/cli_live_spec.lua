-- The live view of a run through the executable against the Batch emulator
-- (Ceph RGW for S3): off a terminal one line per state change, with Batch's
-- states and the reason a job waits; on a terminal (a pty: script(1)) a
-- table redrawn in place and the stage lines of the Batch jobs.
local core = require "luabatch.core"
local aws_peers = require "helpers.aws_peers"

local ROOT = os.getenv("PWD")
local POLICY = ROOT .. "/tests/fixtures/aws-batch/policy_fast.lua"

if rawget(_G, "jit") and not os.getenv("LUABATCH_TEST_EXE") then
  describe("the live view of a run #integration", function()
    pending("runs through the Lua 5.4 executable in integration-lua5.4 (the executable embeds Lua 5.4)")
  end)
  return
end

local WF = [=[
type: Workflow
name: live
jobs:
  fan:
    runs-on: {type: aws_batch, with: {job_queue_arn: "${AWS_BATCH_JOB_QUEUE_ARN}", s3_bucket: "${AWS_S3_BUCKET}"}}
    strategy: {max-parallel: 3, matrix: {region: [eu, us]}}
    stages:
      - {name: Work, id: w, bash: 'echo "work-${{ matrix.region }}"'}
]=]

describe("the live view of a run #integration", function()
  local p, dir, wf, policy

  setup(function()
    -- jobs sit RUNNABLE 2.5 s: long enough for a hint after 1 s
    p = assert(aws_peers.start({ delays = { RUNNABLE = 2.5 } }))
    dir = p.dir
    wf = dir .. "/live.yml"
    local f = assert(io.open(wf, "w"))
    f:write(WF)
    f:close()
    policy = dir .. "/policy_live.lua"
    f = assert(io.open(policy, "w"))
    f:write("local p = dofile(" .. string.format("%q", POLICY) .. ")\np.runnable_hint = 1\nreturn p\n")
    f:close()
  end)

  teardown(function()
    if p then p:stop() end
  end)

  it("off a terminal: a line per state change, Batch states, strategies by matrix values, why a job waits", function()
    local out, err, code = p:run({ "run", wf, "--policy", policy, "--json" })
    assert.equal(0, code, err)
    assert.truthy(out:find('"status": "SUCCESS"', 1, true), out)     -- --json unchanged
    for _, region in ipairs({ "eu", "us" }) do
      local who = "fan[region=" .. region .. "]"
      local seen = {}
      for state in err:gmatch("%d%d:%d%d:%d%d " .. who:gsub("%p", "%%%0") .. ": (%u+)") do seen[#seen + 1] = state end
      local text = table.concat(seen, " ")
      -- in the order Batch passes them, ending in the collected record's status
      assert.truthy(text:find("SUBMITTING.*RUNNABLE.*SUCCEEDED.*SUCCESS"), err)
    end
    -- the wait explained: the queue and its compute environment, as Batch describes them
    assert.truthy(err:find("fan%[region=%a+%]: RUNNABLE for [%d.]+s: queue %S+ ENABLED/VALID; %S+ ENABLED/VALID EC2, 0 of 256 vCPUs"), err)
    assert.truthy(err:find("job fan: SUCCESS", 1, true), err)
    assert.is_nil(err:find("\27[", 1, true), "no terminal codes off a terminal")
  end)

  it("on a terminal: the table redrawn in place, and the Batch job's stage lines without -f", function()
    local cmd = string.format("%s run %s --policy %s", p.exe, wf, policy)
    local proc = assert(core.proc_spawn({ argv = { "script", "-qec", cmd, "/dev/null" },
      env = p:env_with({ COLUMNS = "100", TERM = "xterm" }), cwd = dir, stdin = "" }))
    local r = assert(aws_peers.wait(proc, 120))
    local text = (r.stdout or ""):gsub("\r", "")
    assert.equal(0, r.exit, text)
    assert.truthy(text:find("JOB%s+STATE%s+STRATEGIES%s+ELAPSED%s+NOTE"), text)
    assert.truthy(text:find("\27%[%d+A\27%[J"), "no redraw in place: " .. text)
    assert.truthy(text:find("fan%s+running%s+[^\n]*RUNNABLE"), text)        -- Batch states counted
    assert.truthy(text:find("fan%s+SUCCESS%s+2 SUCCESS"), text)              -- the last table
    assert.truthy(text:find("fan%[region=eu%]%s+w%s+SUCCESS"), text)        -- stage lines of Batch jobs
    for line in text:gmatch("[^\n]+") do                                     -- nothing wider than COLUMNS
      local plain = line:gsub("\27%[[%d;]*%a", "")
      assert.is_true(#plain:gsub("[\128-\191]", "") <= 100, plain)   -- characters, not bytes
    end
  end)
end)
