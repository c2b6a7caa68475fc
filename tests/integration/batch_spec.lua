-- luabatch.batch and luabatch.logs against the Batch + Logs emulator
-- (tests/servers/batch_emulator.py, started through
-- tests/helpers/batch_emulator.lua): real HTTP, real SigV4 (the emulator
-- verifies it with botocore), real job processes.
local core = require "luabatch.core"
local config = require "luabatch.config"
local credentials = require "luabatch.credentials"
local retry = require "luabatch.retry"
local batchmod = require "luabatch.batch"
local logsmod = require "luabatch.logs"
local emulator = require "helpers.batch_emulator"


describe("luabatch.batch + luabatch.logs against the emulator #integration", function()
  local emu, batch, logs, QUEUE
  local tag = core.hex(core.random_bytes(4))
  local def_arn

  -- Describe a job until pred(job) or the deadline: job | error.
  local function wait_job(id, pred, secs)
    local deadline = core.monotime() + (secs or 30)
    local last
    repeat
      local ans = assert(batch:describe_jobs({ id }))
      last = ans.jobs[1]
      if last and pred(last) then return last end
      core.sleep(0.1)
    until core.monotime() > deadline
    error("job " .. id .. " never reached the expected state (last: " .. tostring(last and last.status) .. ")")
  end

  local function terminal(j) return batchmod.TERMINAL[j.status] end

  lazy_setup(function()
    emu = assert(emulator.start({ delay = 0.02 }))
    QUEUE = emu.queue or "lb-queue"
    local cfg = config.new({ env = { AWS_REGION = emu.region or "us-east-1" },
      endpoints = { batch = emu.endpoint, logs = emu.endpoint } })
    local creds = credentials.static({ access_key = emu.access_key or "LBTESTKEY",
      secret_key = emu.secret_key or "LBTESTSECRET" })
    local pol = retry.new({ max_attempts = 4 })
    batch = batchmod.new({ config = cfg, credentials = creds, retry = pol })
    logs = logsmod.new({ config = cfg, credentials = creds, retry = pol })
  end)

  lazy_teardown(function()
    if emu then emu.stop() end
  end)

  before_each(function()
    emu:clear_faults()
  end)

  it("registers a job definition and finds it ACTIVE by name", function()
    local name = "lb-int-" .. tag
    local ans = assert(batch:register_job_definition({
      jobDefinitionName = name, type = "container",
      parameters = { greeting = "hi" },
      containerProperties = { image = "debian:bookworm-slim", command = { "sh", "-c", "echo Ref::greeting" },
        resourceRequirements = { { type = "VCPU", value = "1" }, { type = "MEMORY", value = "256" } } },
      tags = { suite = "integration" },
    }))
    assert.are.equal(name, ans.jobDefinitionName)
    assert.are.equal(1, ans.revision)
    def_arn = ans.jobDefinitionArn
    local found = {}
    for d, msg in batch:job_definitions({ name = name, status = "ACTIVE" }) do
      assert(d, msg)
      found[#found + 1] = d
    end
    assert.are.equal(1, #found)
    assert.are.equal(def_arn, found[1].jobDefinitionArn)
    assert.are.same({ "sh", "-c", "echo Ref::greeting" }, found[1].containerProperties.command)
    local tags = assert(batch:list_tags_for_resource(def_arn))
    assert.are.equal("integration", tags.tags.suite)
  end)

  it("submits sh -c 'echo hi', sees it SUCCEEDED and reads its log to the end", function()
    local job = assert(batch:submit_job({ jobName = "hi-" .. tag, jobQueue = QUEUE, jobDefinition = def_arn,
      containerOverrides = { command = { "sh", "-c", "echo hi; echo second line >&2" } },
      tags = { run = tag } }))
    assert.is_string(job.jobId)
    local seen = {}
    local j = wait_job(job.jobId, function(d) seen[d.status] = true return terminal(d) end)
    assert.are.equal("SUCCEEDED", j.status, j.statusReason)
    assert.are.equal(0, j.container.exitCode)
    assert.is_true(seen.SUCCEEDED)

    local group, stream = batchmod.log_location(j)
    assert.are.equal("/aws/batch/job", group)
    assert.is_string(stream)
    local lines = {}
    for ev, msg in logs:events(group, stream) do
      assert(ev, msg)
      lines[#lines + 1] = ev.message
    end
    assert.are.same({ "hi", "second line" }, lines)

    -- the tailer sees the same lines once, then nothing new
    local t = logs:tail(group, stream)
    local evs = assert(t:poll())
    assert.are.equal(2, #evs)
    assert.is_true(t.at_end)
    assert.are.same({}, assert(t:poll()))
    -- the stream is listed
    local names = {}
    for s, msg in logs:log_streams(group, { prefix = "lb-int-" .. tag .. "/" }) do
      assert(s, msg)
      names[#names + 1] = s.logStreamName
    end
    assert.are.same({ stream }, names)
    local f = assert(logs:filter_log_events(group, { stream_names = { stream }, filter_pattern = "second" }))
    assert.are.equal(1, #f.events)
    assert.are.equal("second line", f.events[1].message)
  end)

  it("follows a long log over many small pages (logs_page_limit)", function()
    emu:config({ logs_page_limit = 7 })
    local job = assert(batch:submit_job({ jobName = "seq-" .. tag, jobQueue = QUEUE, jobDefinition = def_arn,
      containerOverrides = { command = { "sh", "-c", "i=1; while [ $i -le 40 ]; do echo line$i; i=$((i+1)); done" } } }))
    local j = wait_job(job.jobId, terminal)
    assert.are.equal("SUCCEEDED", j.status)
    local group, stream = batchmod.log_location(j)
    emu:reset_calls()
    local n = 0
    for ev, msg in logs:events(group, stream) do
      assert(ev, msg)
      n = n + 1
      assert.are.equal("line" .. n, ev.message)
    end
    assert.are.equal(40, n)
    -- 40 events in pages of 7 = 6 pages, plus the call that returns the same token
    assert.are.equal(7, emu:calls().counts.GetLogEvents)
    emu:config({ logs_page_limit = 10000 })
  end)

  it("lists jobs over several pages (maxResults 2, JOB_NAME filter)", function()
    local ids = {}
    for i = 1, 5 do
      local job = assert(batch:submit_job({ jobName = "pg-" .. tag .. "-" .. i, jobQueue = QUEUE,
        jobDefinition = def_arn }))
      ids[job.jobId] = true
    end
    emu:reset_calls()
    local got = {}
    for s, msg in batch:list_jobs({ jobQueue = QUEUE, maxResults = 2,
        filters = { { name = "JOB_NAME", values = { "pg-" .. tag .. "-*" } } } }) do
      assert(s, msg)
      assert.is_true(ids[s.jobId])
      got[#got + 1] = s.jobId
    end
    assert.are.equal(5, #got)
    assert.are.equal(3, emu:calls().counts.ListJobs)
    -- all five can be described in one call
    local list = {}
    for id in pairs(ids) do list[#list + 1] = id end
    local d = assert(batch:describe_jobs(list))
    assert.are.equal(5, #d.jobs)
  end)

  it("terminates a running job with its reason", function()
    local job = assert(batch:submit_job({ jobName = "long-" .. tag, jobQueue = QUEUE, jobDefinition = def_arn,
      containerOverrides = { command = { "sh", "-c", "echo started; sleep 60" } } }))
    wait_job(job.jobId, function(d) return d.status == "RUNNING" end)
    assert(batch:terminate_job(job.jobId, "stopped by the integration spec"))
    local j = wait_job(job.jobId, terminal)
    assert.are.equal("FAILED", j.status)
    assert.are.equal("stopped by the integration spec", j.statusReason)
  end)

  it("maps service errors: an unknown queue is a ClientException naming the queue", function()
    local ans, msg, code = batch:submit_job({ jobName = "x", jobQueue = "no-such-queue-" .. tag,
      jobDefinition = def_arn })
    assert.is_nil(ans)
    assert.are.equal("ClientException", code)
    assert.truthy(msg:find("SubmitJob queue no-such-queue-" .. tag .. " (job x): HTTP 400 ClientException", 1, true))
    local _, _, lcode = logs:get_log_events("/aws/batch/job", "no/such/stream-" .. tag)
    assert.are.equal("ResourceNotFoundException", lcode)
    local t = logs:tail("/aws/batch/job", "no/such/stream-" .. tag)
    assert.are.same({}, assert(t:poll()))
    assert.is_true(t.missing)
  end)

  it("rides out throttling of DescribeJobs (429 TooManyRequestsException)", function()
    emu:fault({ operation = "DescribeJobs", action = "throttle", times = 2 })
    emu:reset_calls()
    local d = assert(batch:describe_jobs({ "00000000-0000-0000-0000-000000000000" }))
    assert.are.same({}, d.jobs)
    local calls = emu:calls()
    assert.are.equal(3, calls.counts.DescribeJobs)
  end)

  it("describes queues and compute environments, tags and deregisters", function()
    local q = assert(batch:describe_job_queues(QUEUE))
    assert.are.equal(QUEUE, q.jobQueues[1].jobQueueName)
    assert.are.equal("VALID", q.jobQueues[1].status)
    local ces = assert(batch:describe_compute_environments())
    assert.is_true(#ces.computeEnvironments >= 1)
    assert(batch:tag_resource(q.jobQueues[1].jobQueueArn, { owner = tag }))
    assert.are.equal(tag, assert(batch:list_tags_for_resource(q.jobQueues[1].jobQueueArn)).tags.owner)
    assert(batch:deregister_job_definition(def_arn))
    local d = assert(batch:describe_job_definitions({ definitions = { def_arn } }))
    assert.are.equal("INACTIVE", d.jobDefinitions[1].status)
  end)
end)
