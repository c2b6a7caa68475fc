-- Specs for luabatch.batch with a fake transport (no network): the exact
-- method, path and JSON body of every operation (as in the botocore model
-- batch/2016-08-10), pagination, argument checks and error mapping.

local batchmod = require "luabatch.batch"
local config = require "luabatch.config"
local credentials = require "luabatch.credentials"
local retry = require "luabatch.retry"
local real_core = require "luabatch.core"
local cjson = require "cjson.safe"

local NOW = 1700000000
local ENDPOINT = "https://batch.eu-west-1.amazonaws.com"


-- A transport answering from a script: each entry is a table { status,
-- body (string or table, JSON-encoded), headers } or a function(opts, call)
-- returning one, or { err = msg, code = code }.
local function fake_transport(script)
  local t = { calls = {} }
  function t.request(self, opts)
    local call = { method = opts.method, url = opts.url, headers = opts.headers, body = opts.body }
    call.json = opts.body and cjson.decode(opts.body) or nil
    self.calls[#self.calls + 1] = call
    local r = table.remove(script, 1)
    assert(r, "fake transport: unexpected request " .. tostring(opts.method) .. " " .. tostring(opts.url))
    if type(r) == "function" then r = r(opts, call) end
    if r.err then return nil, r.err, r.code end
    local body = r.body
    if type(body) == "table" then body = cjson.encode(body) end
    return { status = r.status or 200, headers = r.headers or { ["content-type"] = "application/json" },
      body = body or "" }
  end
  return t
end


local function header(list, name)
  name = name:lower()
  for _, kv in ipairs(list or {}) do
    if kv[1]:lower() == name then return kv[2] end
  end
  return nil
end


local fake_core = setmetatable({
  now = function() return NOW end,
  monotime = function() return 0 end,
  sleep = function() return true end,
}, { __index = real_core })


local function client(t, o)
  o = o or {}
  return batchmod.new({
    config = config.new({ env = { AWS_REGION = "eu-west-1" } }),
    credentials = credentials.static({ access_key = "AKIDEXAMPLE", secret_key = "SECRETEXAMPLEKEY",
      session_token = o.token }),
    transport = t,
    retry = retry.new({ rand = function() return 0.5 end, max_attempts = o.max_attempts or 1 }),
    core = fake_core,
    endpoint = o.endpoint,
  })
end


local function client_error(status, code, message)
  return { status = status, headers = { ["content-type"] = "application/json",
    ["x-amzn-errortype"] = code .. ":http://internal.amazon.com/coral/com.amazonaws.batch/" },
    body = { __type = code, message = message } }
end


-- Check one call: method, full URL and the decoded JSON body.
local function check_call(call, method, path, body)
  assert.are.equal(method, call.method)
  assert.are.equal(ENDPOINT .. path, call.url)
  if body == nil then
    assert.is_nil(call.body)
  else
    assert.are.same(body, call.json)
    assert.are.equal("application/json", header(call.headers, "Content-Type"))
  end
  assert.is_nil(header(call.headers, "X-Amz-Target"))
  local auth = header(call.headers, "Authorization")
  assert.truthy(auth:find("/eu%-west%-1/batch/aws4_request", 1, false))
end


describe("luabatch.batch #unit", function()

  describe("operations on the wire", function()
    it("RegisterJobDefinition: POST /v1/registerjobdefinition with the definition", function()
      local def = {
        jobDefinitionName = "wf-abc", type = "container",
        parameters = { bundle = "s3://b/run/bundle.tar" },
        containerProperties = { image = "debian:bookworm-slim",
          command = { "luabatch", "task", "Ref::bundle" },
          resourceRequirements = { { type = "VCPU", value = "1" }, { type = "MEMORY", value = "512" } } },
        retryStrategy = { attempts = 2, evaluateOnExit = { { onExitCode = "*", action = "EXIT" } } },
        timeout = { attemptDurationSeconds = 600 },
        tags = { run = "r1" }, propagateTags = true, platformCapabilities = { "EC2" },
      }
      local t = fake_transport({ { body = { jobDefinitionName = "wf-abc", revision = 3,
        jobDefinitionArn = "arn:aws:batch:eu-west-1:123456789012:job-definition/wf-abc:3" } } })
      local ans = assert(client(t):register_job_definition(def))
      assert.are.equal(3, ans.revision)
      assert.are.equal("arn:aws:batch:eu-west-1:123456789012:job-definition/wf-abc:3", ans.jobDefinitionArn)
      check_call(t.calls[1], "POST", "/v1/registerjobdefinition", def)
    end)

    it("DescribeJobDefinitions: one page, with name/status and the lower-case conveniences", function()
      local t = fake_transport({
        { body = { jobDefinitions = { { jobDefinitionName = "wf", revision = 1, status = "ACTIVE" } },
          nextToken = "t2" } },
        { body = { jobDefinitions = {} } },
      })
      local c = client(t)
      local ans = assert(c:describe_job_definitions({ jobDefinitionName = "wf", status = "ACTIVE" }))
      assert.are.equal("t2", ans.nextToken)
      assert.are.equal("wf", ans.jobDefinitions[1].jobDefinitionName)
      check_call(t.calls[1], "POST", "/v1/describejobdefinitions", { jobDefinitionName = "wf", status = "ACTIVE" })
      assert(c:describe_job_definitions({ definitions = { "wf:1", "wf:2" }, maxResults = 5 }))
      check_call(t.calls[2], "POST", "/v1/describejobdefinitions",
        { jobDefinitions = { "wf:1", "wf:2" }, maxResults = 5 })
    end)

    it("DescribeJobDefinitions without a filter sends an empty object", function()
      local t = fake_transport({ { body = { jobDefinitions = {} } } })
      assert(client(t):describe_job_definitions())
      assert.are.equal("{}", t.calls[1].body)
    end)

    it("DeregisterJobDefinition: POST /v1/deregisterjobdefinition", function()
      local t = fake_transport({ { body = "" } })
      local ans = assert(client(t):deregister_job_definition("wf:3"))
      assert.are.same({}, ans)
      check_call(t.calls[1], "POST", "/v1/deregisterjobdefinition", { jobDefinition = "wf:3" })
    end)

    it("SubmitJob: POST /v1/submitjob with the request as given", function()
      local args = { jobName = "j1", jobQueue = "q", jobDefinition = "wf:3",
        parameters = { bundle = "s3://b/k" }, tags = { run = "r1", job = "build" },
        containerOverrides = { environment = { { name = "A", value = "1" } } },
        arrayProperties = { size = 3 }, dependsOn = { { jobId = "dep-1", type = "SEQUENTIAL" } } }
      local t = fake_transport({ { body = { jobId = "id-1", jobName = "j1",
        jobArn = "arn:aws:batch:eu-west-1:123456789012:job/id-1" } } })
      local ans = assert(client(t):submit_job(args))
      assert.are.equal("id-1", ans.jobId)
      check_call(t.calls[1], "POST", "/v1/submitjob", args)
    end)

    it("DescribeJobs: POST /v1/describejobs { jobs = ids }", function()
      local t = fake_transport({ { body = { jobs = {
        { jobId = "a", status = "RUNNING" }, { jobId = "b", status = "SUCCEEDED" } } } } })
      local ans = assert(client(t):describe_jobs({ "a", "b" }))
      assert.are.equal("SUCCEEDED", ans.jobs[2].status)
      check_call(t.calls[1], "POST", "/v1/describejobs", { jobs = { "a", "b" } })
    end)

    it("DescribeJobs: 100 ids is one call, an empty list is no call, 101 raises", function()
      local ids = {}
      for i = 1, 100 do ids[i] = "job-" .. i end
      local t = fake_transport({ { body = { jobs = {} } } })
      local c = client(t)
      assert(c:describe_jobs(ids))
      assert.are.equal(100, #t.calls[1].json.jobs)
      assert.are.same({ jobs = {} }, c:describe_jobs({}))
      assert.are.equal(1, #t.calls)
      ids[101] = "job-101"
      assert.has_error(function() c:describe_jobs(ids) end,
        "bad argument #1 to 'describe_jobs' (at most 100 job ids per call, got 101)")
      assert.has_error(function() c:describe_jobs("a") end)
      assert.has_error(function() c:describe_jobs({ x = "a" }) end)
    end)

    it("describe_jobs_all splits 250 ids into calls of 100, 100 and 50", function()
      local ids = {}
      for i = 1, 250 do ids[i] = "job-" .. i end
      local function echo(_, call)
        local jobs = {}
        for _, id in ipairs(call.json.jobs) do jobs[#jobs + 1] = { jobId = id, status = "RUNNING" } end
        return { body = { jobs = jobs } }
      end
      local t = fake_transport({ echo, echo, echo })
      local ans = assert(client(t):describe_jobs_all(ids))
      assert.are.equal(3, #t.calls)
      assert.are.equal(100, #t.calls[1].json.jobs)
      assert.are.equal(100, #t.calls[2].json.jobs)
      assert.are.equal(50, #t.calls[3].json.jobs)
      assert.are.equal("job-201", t.calls[3].json.jobs[1])
      assert.are.equal(250, #ans.jobs)
      assert.are.equal("job-250", ans.jobs[250].jobId)
    end)

    it("TerminateJob and CancelJob: jobId + reason", function()
      local t = fake_transport({ { body = {} }, { body = {} } })
      local c = client(t)
      assert(c:terminate_job("id-1", "interrupted by the user (SIGINT)"))
      assert(c:cancel_job("id-2", "run cancelled"))
      check_call(t.calls[1], "POST", "/v1/terminatejob", { jobId = "id-1", reason = "interrupted by the user (SIGINT)" })
      check_call(t.calls[2], "POST", "/v1/canceljob", { jobId = "id-2", reason = "run cancelled" })
      assert.has_error(function() c:terminate_job("id-1") end,
        "bad argument #2 to 'terminate_job' (reason expected, got nil)")
    end)

    it("DescribeJobQueues / DescribeComputeEnvironments: names, and every page", function()
      local t = fake_transport({
        { body = { jobQueues = { { jobQueueName = "q", state = "ENABLED", status = "VALID" } } } },
        { body = { computeEnvironments = { { computeEnvironmentName = "ce1" } }, nextToken = "n2" } },
        { body = { computeEnvironments = { { computeEnvironmentName = "ce2" } } } },
      })
      local c = client(t)
      local q = assert(c:describe_job_queues("q"))
      assert.are.equal("VALID", q.jobQueues[1].status)
      check_call(t.calls[1], "POST", "/v1/describejobqueues", { jobQueues = { "q" } })
      local ce = assert(c:describe_compute_environments())
      assert.are.equal(2, #ce.computeEnvironments)
      assert.are.equal("ce2", ce.computeEnvironments[2].computeEnvironmentName)
      assert.is_nil(ce.nextToken)
      check_call(t.calls[2], "POST", "/v1/describecomputeenvironments", {})
      check_call(t.calls[3], "POST", "/v1/describecomputeenvironments", { nextToken = "n2" })
    end)

    it("TagResource / ListTagsForResource / UntagResource: the ARN percent-encoded in the path", function()
      local arn = "arn:aws:batch:eu-west-1:123456789012:job/id-1"
      local enc = "/v1/tags/arn%3Aaws%3Abatch%3Aeu-west-1%3A123456789012%3Ajob%2Fid-1"
      local t = fake_transport({ { body = {} }, { body = { tags = { run = "r1" } } }, { body = {} } })
      local c = client(t)
      assert(c:tag_resource(arn, { run = "r1" }))
      check_call(t.calls[1], "POST", enc, { tags = { run = "r1" } })
      local ans = assert(c:list_tags_for_resource(arn))
      assert.are.same({ run = "r1" }, ans.tags)
      check_call(t.calls[2], "GET", enc, nil)
      assert(c:untag_resource(arn, { "run", "job" }))
      check_call(t.calls[3], "DELETE", enc .. "?tagKeys=run&tagKeys=job", nil)
      assert.has_error(function() c:tag_resource(arn, {}) end)
      assert.has_error(function() c:tag_resource(arn, { run = 1 }) end)
    end)

    it("uses the configured endpoint (emulator) and its region", function()
      local t = fake_transport({ { body = { jobs = {} } } })
      local c = batchmod.new({
        config = config.new({ env = { AWS_REGION = "us-west-2",
          AWS_ENDPOINT_URL_BATCH = "http://127.0.0.1:4567/" } }),
        credentials = credentials.static({ access_key = "AK", secret_key = "SK" }),
        transport = t, retry = retry.new({ max_attempts = 1 }), core = fake_core,
      })
      assert(c:describe_jobs({ "x" }))
      assert.are.equal("http://127.0.0.1:4567/v1/describejobs", t.calls[1].url)
      assert.truthy(header(t.calls[1].headers, "Authorization"):find("/us%-west%-2/batch/", 1, false))
    end)
  end)

  describe("pagination", function()
    it("list_jobs follows nextToken over every page and yields the summaries", function()
      local t = fake_transport({
        { body = { jobSummaryList = { { jobId = "1" }, { jobId = "2" } }, nextToken = "p2" } },
        { body = { jobSummaryList = {}, nextToken = "p3" } },   -- an empty page is not the end
        { body = { jobSummaryList = { { jobId = "3" } } } },
      })
      local args = { jobQueue = "q", jobStatus = "RUNNING", maxResults = 2 }
      local ids = {}
      for s, msg in client(t):list_jobs(args) do
        assert(s, msg)
        ids[#ids + 1] = s.jobId
      end
      assert.are.same({ "1", "2", "3" }, ids)
      assert.are.equal(3, #t.calls)
      check_call(t.calls[1], "POST", "/v1/listjobs", { jobQueue = "q", jobStatus = "RUNNING", maxResults = 2 })
      check_call(t.calls[2], "POST", "/v1/listjobs",
        { jobQueue = "q", jobStatus = "RUNNING", maxResults = 2, nextToken = "p2" })
      check_call(t.calls[3], "POST", "/v1/listjobs",
        { jobQueue = "q", jobStatus = "RUNNING", maxResults = 2, nextToken = "p3" })
      assert.is_nil(args.nextToken)        -- the caller's table is left alone
    end)

    it("list_jobs with filters (JOB_NAME) and a single page", function()
      local args = { jobQueue = "q", filters = { { name = "JOB_NAME", values = { "run-1-*" } } } }
      local t = fake_transport({ { body = { jobSummaryList = { { jobId = "9", jobName = "run-1-a" } } } } })
      local page = assert(client(t):list_jobs_page(args))
      assert.are.equal("run-1-a", page.jobSummaryList[1].jobName)
      check_call(t.calls[1], "POST", "/v1/listjobs", args)
    end)

    it("list_jobs yields false, msg, code once on a failure after the first page", function()
      local t = fake_transport({
        { body = { jobSummaryList = { { jobId = "1" } }, nextToken = "p2" } },
        client_error(400, "ClientException", "nextToken is invalid"),
      })
      local got, fails = {}, {}
      for s, msg, code in client(t):list_jobs({ jobQueue = "q" }) do
        if s then got[#got + 1] = s.jobId else fails[#fails + 1] = { msg, code } end
      end
      assert.are.same({ "1" }, got)
      assert.are.equal(1, #fails)
      assert.are.equal("ClientException", fails[1][2])
      assert.truthy(fails[1][1]:find("ListJobs queue q: HTTP 400 ClientException: nextToken is invalid", 1, true))
    end)

    it("list_jobs stops when the service repeats a token", function()
      local t = fake_transport({
        { body = { jobSummaryList = { { jobId = "1" } }, nextToken = "same" } },
        { body = { jobSummaryList = { { jobId = "2" } }, nextToken = "same" } },
      })
      local got, fail
      got = {}
      for s, msg, code in client(t):list_jobs({ jobQueue = "q" }) do
        if s then got[#got + 1] = s.jobId else fail = { msg, code } end
      end
      assert.are.same({ "1", "2" }, got)
      assert.are.equal("EPARSE", fail[2])
      assert.truthy(fail[1]:find("ListJobs", 1, true))
    end)

    it("list_jobs needs a queue, an array job or a multi-node job", function()
      assert.has_error(function() client(fake_transport({})):list_jobs({ jobStatus = "RUNNING" }) end)
      assert.has_error(function() client(fake_transport({})):list_jobs() end)
    end)

    it("job_definitions iterates over every page", function()
      local t = fake_transport({
        { body = { jobDefinitions = { { revision = 1 } }, nextToken = "x" } },
        { body = { jobDefinitions = { { revision = 2 }, { revision = 3 } } } },
      })
      local revs = {}
      for d, msg in client(t):job_definitions({ name = "wf", status = "ACTIVE" }) do
        assert(d, msg)
        revs[#revs + 1] = d.revision
      end
      assert.are.same({ 1, 2, 3 }, revs)
      check_call(t.calls[2], "POST", "/v1/describejobdefinitions",
        { jobDefinitionName = "wf", status = "ACTIVE", nextToken = "x" })
    end)
  end)

  describe("errors", function()
    it("maps a ClientException to nil, message naming operation and queue, code", function()
      local t = fake_transport({ client_error(400, "ClientException",
        "Job Queue q does not exist or is not in VALID state") })
      local ans, msg, code = client(t):submit_job({ jobName = "j1", jobQueue = "q", jobDefinition = "wf:1" })
      assert.is_nil(ans)
      assert.are.equal("ClientException", code)
      assert.truthy(msg:find("^SubmitJob queue q %(job j1%): HTTP 400 ClientException: Job Queue q does not exist"))
      assert.is_nil(msg:find("SECRETEXAMPLEKEY", 1, true))
    end)

    it("takes the code from the body when there is no x-amzn-errortype header", function()
      local t = fake_transport({ { status = 500, body = { __type = "ServerException", message = "boom" } } })
      local _, msg, code = client(t):describe_jobs({ "a" })
      assert.are.equal("ServerException", code)
      assert.truthy(msg:find("DescribeJobs jobs a: HTTP 500 ServerException: boom (hint: AWS service error", 1, true))
    end)

    it("retries throttling (429 TooManyRequestsException) then succeeds", function()
      local t = fake_transport({
        client_error(429, "TooManyRequestsException", "Too Many Requests"),
        { status = 500, body = { __type = "ServerException", message = "x" } },
        { body = { jobId = "id-1", jobName = "j" } },
      })
      local ans = assert(client(t, { max_attempts = 3 }):submit_job({ jobName = "j", jobQueue = "q",
        jobDefinition = "d" }))
      assert.are.equal("id-1", ans.jobId)
      assert.are.equal(3, #t.calls)
    end)

    it("gives up on throttling with the code and a hint", function()
      local t = fake_transport({
        client_error(429, "TooManyRequestsException", "Too Many Requests"),
        client_error(429, "TooManyRequestsException", "Too Many Requests"),
      })
      local _, msg, code = client(t, { max_attempts = 2 }):terminate_job("id-9", "stop")
      assert.are.equal("TooManyRequestsException", code)
      assert.truthy(msg:find("TerminateJob job id-9: HTTP 429 TooManyRequestsException", 1, true))
      assert.truthy(msg:find("(hint: throttled by AWS, retried 1 time", 1, true))
    end)

    it("an answer without an error code gives HTTP_<status>", function()
      local t = fake_transport({ { status = 403, headers = {}, body = "" } })
      local _, msg, code = client(t):describe_job_queues({ "q1", "q2" })
      assert.are.equal("HTTP_403", code)
      assert.truthy(msg:find("DescribeJobQueues job queues (2: q1, ...): HTTP 403", 1, true))
    end)

    it("passes transport failures through", function()
      local t = fake_transport({ { err = "connection refused", code = "ECONNECT" } })
      local _, msg, code = client(t):cancel_job("id-1", "r")
      assert.are.equal("ECONNECT", code)
      assert.truthy(msg:find("^CancelJob job id%-1: connection refused"))
    end)

    it("an unparsable answer is EPARSE", function()
      local t = fake_transport({ { body = "{not json" } })
      local _, _, code = client(t):describe_jobs({ "a" })
      assert.are.equal("EPARSE", code)
    end)

    it("raises on misuse", function()
      local c = client(fake_transport({}))
      assert.has_error(function() c:submit_job({ jobName = "j", jobQueue = "q" }) end,
        "bad argument #1 to 'submit_job' (args.jobDefinition expected, got nil)")
      assert.has_error(function() c:register_job_definition({ jobDefinitionName = "x" }) end)
      assert.has_error(function() c:deregister_job_definition("") end)
      assert.has_error(function() batchmod.new(3) end)
    end)
  end)

  describe("helpers", function()
    it("log_location: group from the log configuration, stream per attempt", function()
      local job = {
        container = { logStreamName = "def/default/cur",
          logConfiguration = { logDriver = "awslogs", options = { ["awslogs-group"] = "/wf/logs" } } },
        attempts = { { container = { logStreamName = "def/default/first" } } },
      }
      assert.are.same({ "/wf/logs", "def/default/cur" }, { batchmod.log_location(job) })
      assert.are.same({ "/wf/logs", "def/default/first" }, { batchmod.log_location(job, 1) })
      assert.are.same({ "/aws/batch/job", "s" }, { batchmod.log_location({ container = { logStreamName = "s" } }) })
      assert.is_nil(batchmod.log_location({ container = {} }))
      assert.is_nil(batchmod.log_location({ container = { logStreamName = "s",
        logConfiguration = { logDriver = "json-file" } } }))
    end)

    it("short_name strips the ARN prefix", function()
      assert.are.equal("q", batchmod.short_name("arn:aws:batch:eu-west-1:123456789012:job-queue/q"))
      assert.are.equal("wf:3", batchmod.short_name("arn:aws:batch:eu-west-1:123456789012:job-definition/wf:3"))
      assert.are.equal("plain", batchmod.short_name("plain"))
    end)

    it("creates nothing until the first call", function()
      local c = batchmod.new({ region = "eu-west-1" })
      assert.is_nil(rawget(c, "_client"))
    end)
  end)
end)
