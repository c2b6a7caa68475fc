-- max-parallel beyond ddeutil's 9 on AWS Batch, end to end through the
-- `luabatch` executable against the Batch emulator and Ceph RGW
-- (tests/helpers/aws_peers.lua):
--   * 30 strategies at max-parallel 20: 20 Batch jobs live at once (each
--     waits on a release file, so none ends before the spec says), no 21st
--     submitted while they run, the other 10 once they are released;
--   * max-parallel 500 on a local job is bad input (exit 2, nothing run);
--     an aws_batch job's 500 run with --runs-on local fails the job with
--     ddeutil-workflow's message (exit 1).
-- No wall-clock assertion: the waits are generous upper bounds.
require "luabatch.runner"
local cjson = require "cjson.safe"
local aws_peers = require "helpers.aws_peers"
local servers = require "helpers.servers"
local files = require "helpers.files"

-- The executable embeds Lua 5.4 (see aws_batch_e2e_spec.lua).
if rawget(_G, "jit") and not os.getenv("LUABATCH_TEST_EXE") then
  describe("AWS Batch wide matrix #integration", function()
    pending("runs through the Lua 5.4 executable in integration-lua5.4 (the executable embeds Lua 5.4)")
  end)
  return
end

local POLICY = (os.getenv("PWD") or ".") .. "/tests/fixtures/aws-batch/policy_fast.lua"

describe("AWS Batch wide matrix #integration", function()
  local p, dir

  local function write(name, text)
    local path = dir .. "/" .. name
    files.write_all(path, text)
    return path
  end

  local function live_of(emu, before)
    local n, ended, all = 0, 0, 0
    for _, j in ipairs(emu:jobs()) do
      if not before[j.jobId] then
        all = all + 1
        if j.status == "SUCCEEDED" or j.status == "FAILED" then ended = ended + 1 else n = n + 1 end
      end
    end
    return n, ended, all
  end

  setup(function()
    p = assert(aws_peers.start({ delay = 0.05 }))
    dir = p.dir .. "/wf"
    assert(os.execute("mkdir -p '" .. dir .. "'"))
  end)

  teardown(function()
    if p then p:stop() end
    servers.stop_all()
  end)

  it("30 strategies at max-parallel 20: 20 Batch jobs live at once, the rest as slots free", function()
    local release = dir .. "/release"
    local ns = {}
    for i = 1, 30 do ns[i] = i end
    local f = write("wide.yml", ([[
type: Workflow
name: wide
jobs:
  fan:
    runs-on: {type: aws_batch, with: {job_queue_arn: "${AWS_BATCH_JOB_QUEUE_ARN}", s3_bucket: "${AWS_S3_BUCKET}"}}
    strategy: {max-parallel: 20, matrix: {n: [%s]}}
    stages:
      - name: wait
        env: {REL: "%s"}
        bash: 'n=0; while [ ! -e "$REL" ] && [ $n -lt 1200 ]; do sleep 0.1; n=$((n+1)); done; echo done ${{ matrix.n }}'
]]):format(table.concat(ns, ", "), release))
    local before = {}
    for _, j in ipairs(p.emu:jobs()) do before[j.jobId] = true end
    local proc = p:spawn({ "run", f, "--json", "--policy", POLICY })
    -- 20 submitted and RUNNING, none ended (they wait on the release file)
    local got = aws_peers.wait_until(function()
      local live, ended, all = live_of(p.emu, before)
      assert.equal(0, ended)
      return all >= 20 and live == 20 and all
    end, 120, 0.2)
    assert.equal(20, got, "20 Batch jobs live within 120 s")
    -- max-parallel holds: no 21st while the 20 run
    local more = aws_peers.wait_until(function()
      local _, _, all = live_of(p.emu, before)
      return all > 20
    end, 2, 0.2)
    assert.is_nil(more, "a 21st job was submitted while 20 were live")
    assert(io.open(release, "w")):close()
    local r = assert(aws_peers.wait(proc, 180))
    assert.equal(0, r.exit, r.stderr)
    local ctx = assert(cjson.decode(r.stdout))
    assert.equal("SUCCESS", ctx.status)
    local n = 0
    for _ in pairs(ctx.jobs.fan.strategies) do n = n + 1 end
    assert.equal(30, n)
    -- never more than 20 live: from the jobs' createdAt / stoppedAt
    local ids = {}
    for _, j in ipairs(p.emu:jobs()) do if not before[j.jobId] then ids[#ids + 1] = j.jobId end end
    assert.equal(30, #ids)
    local evs = {}
    for _, j in ipairs(assert(p.batch:describe_jobs_all(ids)).jobs) do
      assert.equal("SUCCEEDED", j.status)
      evs[#evs + 1] = { j.createdAt, 1 }
      evs[#evs + 1] = { j.stoppedAt, -1 }
    end
    table.sort(evs, function(a, b) if a[1] ~= b[1] then return a[1] < b[1] end return a[2] < b[2] end)
    local live, peak = 0, 0
    for _, e in ipairs(evs) do
      live = live + e[2]
      if live > peak then peak = live end
    end
    assert.equal(20, peak)
  end)

  it("max-parallel 500: bad input on a local job, and on an aws_batch job run with --runs-on local", function()
    local f = write("local500.yml", [[
jobs:
  fan:
    strategy: {max-parallel: 500, matrix: {n: [1, 2]}}
    stages:
      - {name: s, echo: hi}
]])
    local out, err, code = p:run({ "run", f })
    assert.equal(2, code, err .. out)
    assert.truthy(err:find("local500.yml:3:30: job 'fan' strategy: 'max-parallel' must be between 1 and 9, got 500 "
      .. "(runs-on local; aws_batch allows up to 10000)", 1, true), err)
    local g = write("batch500.yml", [[
jobs:
  fan:
    runs-on: {type: aws_batch, with: {job_queue_arn: "${AWS_BATCH_JOB_QUEUE_ARN}", s3_bucket: "${AWS_S3_BUCKET}"}}
    strategy: {max-parallel: 500, matrix: {n: [1, 2]}}
    stages:
      - {name: s, echo: hi}
]])
    -- --runs-on local puts every job here: the local bound, known before anything starts
    out, err, code = p:run({ "run", g, "--runs-on", "local", "--json" })
    assert.equal(2, code, err .. out)
    assert.equal("", out)
    assert.truthy(err:find("batch500.yml:4:30: job 'fan' strategy: 'max-parallel' must be between 1 and 9, got 500 "
      .. "(runs-on local; aws_batch allows up to 10000)", 1, true), err)
  end)
end)
