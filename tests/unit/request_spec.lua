-- Specs for luabatch.request with a fake transport (no network).

local request = require "luabatch.request"
local config = require "luabatch.config"
local credentials = require "luabatch.credentials"
local retry = require "luabatch.retry"
local log = require "luabatch.log"
local real_core = require "luabatch.core"

local SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
local TOKEN = "FwoGZXIvYXdzEXAMPLESESSIONTOKENVALUE0123456789"
local NOW = 1440938160            -- 2015-08-30T12:36:00Z


-- A transport that answers from a script: each entry is a response table,
-- { err = msg, code = c } or a function(opts) -> resp | nil, msg, code.
local function fake_transport(script)
  local t = { calls = {} }
  function t.request(self, opts)
    self.calls[#self.calls + 1] = opts
    local r = table.remove(script, 1)
    assert(r, "fake transport: unexpected request " .. tostring(opts.method) .. " " .. tostring(opts.url))
    if type(r) == "function" then return r(opts) end
    if r.err then return nil, r.err, r.code end
    r.headers = r.headers or {}
    return r
  end
  return t
end


local function header(list, name)
  name = name:lower()
  for _, kv in ipairs(list) do
    if kv[1]:lower() == name then return kv[2] end
  end
  return nil
end


describe("luabatch.request #unit", function()
  local sleeps, now, core

  before_each(function()
    sleeps = {}
    now = NOW
    core = setmetatable({
      now = function() return now end,
      monotime = function() return now end,
      sleep = function(s)
        sleeps[#sleeps + 1] = s
        now = now + s
        return true
      end,
    }, { __index = real_core })
  end)

  local function client(t, o)
    o = o or {}
    return request.new({
      service = o.service or "batch",
      protocol = o.protocol or "rest-json",
      config = o.config or config.new({ env = o.env or { AWS_REGION = "us-east-1" } }),
      credentials = o.credentials or credentials.static({ access_key = "AKIDEXAMPLE",
        secret_key = SECRET, session_token = TOKEN }),
      transport = t,
      retry = o.retry or retry.new({ rand = function() return 0.5 end, max_attempts = o.max_attempts }),
      core = core,
      endpoint = o.endpoint,
      unsigned = o.unsigned,
    })
  end

  describe("building requests", function()
    it("signs a rest-json request against the configured endpoint", function()
      local t = fake_transport({ { status = 200, body = '{"jobs":[]}' } })
      local c = client(t, { env = { AWS_REGION = "eu-west-1", AWS_ENDPOINT_URL_BATCH = "http://127.0.0.1:9/" } })
      local resp = assert(c:send({ method = "POST", path = "/v1/describejobs",
        json = { jobs = { "a" } }, operation = "DescribeJobs" }))
      assert.are.same({ jobs = {} }, resp.json)
      local call = t.calls[1]
      assert.are.equal("http://127.0.0.1:9/v1/describejobs", call.url)
      assert.are.equal('{"jobs":["a"]}', call.body)
      assert.are.equal("application/json", header(call.headers, "Content-Type"))
      assert.are.equal("20150830T123600Z", header(call.headers, "X-Amz-Date"))
      assert.are.equal(TOKEN, header(call.headers, "X-Amz-Security-Token"))
      local auth = header(call.headers, "Authorization")
      assert.matches("^AWS4%-HMAC%-SHA256 Credential=AKIDEXAMPLE/20150830/eu%-west%-1/batch/aws4_request", auth)
      -- the signature is what core.sigv4_sign computes for this request
      local expect = real_core.sigv4_sign({ method = "POST", url = call.url,
        headers = { { "Content-Type", "application/json" }, { "User-Agent", header(call.headers, "User-Agent") } },
        body = call.body, region = "eu-west-1", service = "batch", access_key = "AKIDEXAMPLE",
        secret_key = SECRET, session_token = TOKEN, time = NOW })
      assert.are.equal(expect.authorization, auth)
    end)

    it("encodes the query (map sorted, list in order, bare keys)", function()
      local t = fake_transport({ { status = 200, body = "" }, { status = 200, body = "" } })
      local c = client(t, { service = "s3", protocol = "rest-xml", endpoint = "http://h:1" })
      assert(c:send({ method = "GET", path = "/b", query = { prefix = "a b/ü", ["list-type"] = 2, uploads = true } }))
      assert.are.equal("http://h:1/b?list-type=2&prefix=a%20b%2F%C3%BC&uploads", t.calls[1].url)
      assert(c:send({ method = "GET", path = "/b", query = { { "z", "1" }, { "a", "~x" } } }))
      assert.are.equal("http://h:1/b?z=1&a=~x", t.calls[2].url)
    end)

    it("sets Content-Type and X-Amz-Target for the json protocol", function()
      local t = fake_transport({ { status = 200, body = '{"events":[1]}' } })
      local c = client(t, { service = "logs", protocol = "json" })
      local resp = assert(c:send({ method = "POST", path = "/", target = "Logs_20140328.GetLogEvents" }))
      assert.are.same({ events = { 1 } }, resp.json)
      local call = t.calls[1]
      assert.are.equal("https://logs.us-east-1.amazonaws.com/", call.url)
      assert.are.equal("{}", call.body)
      assert.are.equal("application/x-amz-json-1.1", header(call.headers, "Content-Type"))
      assert.are.equal("Logs_20140328.GetLogEvents", header(call.headers, "X-Amz-Target"))
    end)

    it("form-encodes query-protocol params, flattening lists", function()
      local t = fake_transport({ { status = 200, body = "<ok/>" } })
      local c = client(t, { service = "sts", protocol = "query", unsigned = true })
      assert(c:send({ method = "POST", path = "/", params = { Action = "X", Version = "2011-06-15",
        RoleArn = "arn:aws:iam::1:role/r", Tags = { "a", "b" } } }))
      local call = t.calls[1]
      assert.are.equal("Action=X&RoleArn=arn%3Aaws%3Aiam%3A%3A1%3Arole%2Fr&Tags.member.1=a&Tags.member.2=b"
        .. "&Version=2011-06-15", call.body)
      assert.are.equal("application/x-www-form-urlencoded; charset=utf-8", header(call.headers, "Content-Type"))
      assert.is_nil(header(call.headers, "Authorization"))          -- unsigned
    end)

    it("accepts a map of headers and passes transport options through", function()
      local t = fake_transport({ { status = 206, body = "xy" } })
      local c = client(t, { service = "s3", protocol = "rest-xml" })
      local resp = assert(c:send({ method = "GET", path = "/b/k", headers = { Range = "bytes=0-1" },
        expect = { 206 }, output_file = "/dev/null", timeout = 7 }))
      assert.are.equal(206, resp.status)
      assert.are.equal("bytes=0-1", header(t.calls[1].headers, "Range"))
      assert.are.equal("/dev/null", t.calls[1].output_file)
      assert.are.equal(7, t.calls[1].timeout)
    end)

    it("raises on misuse", function()
      assert.has_error(function() request.new({ service = "s3" }) end)
      assert.has_error(function() request.new({ protocol = "json" }) end)
      local c = client(fake_transport({}))
      assert.has_error(function() c:send({ path = "/" }) end)
      assert.has_error(function() c:send({ method = "GET", path = "x" }) end)
      assert.has_error(function() c:send("GET /") end)
    end)
  end)

  describe("errors", function()
    it("parses JSON errors: __type with # prefix, message", function()
      local t = fake_transport({ { status = 400, body =
        '{"__type":"com.amazonaws.batch#ClientException","message":"Job queue q does not exist"}' } })
      local r, msg, code, resp = client(t):send({ method = "POST", path = "/v1/submitjob",
        operation = "SubmitJob", resource = "job queue q" })
      assert.is_nil(r)
      assert.are.equal("ClientException", code)
      assert.are.equal("SubmitJob job queue q: HTTP 400 ClientException: Job queue q does not exist", msg)
      assert.are.equal(400, resp.status)
      assert.are.equal(1, #t.calls)
    end)

    it("prefers the x-amzn-ErrorType header, stripping the ':' suffix", function()
      local t = fake_transport({ { status = 404, headers = {
        ["x-amzn-errortype"] = "ResourceNotFoundException:http://internal.amazon.com/" },
        body = '{"Message":"The specified log group does not exist."}' } })
      local _, msg, code = client(t, { service = "logs", protocol = "json" }):send({
        method = "POST", path = "/", operation = "GetLogEvents", resource = "log group /aws/batch/job" })
      assert.are.equal("ResourceNotFoundException", code)
      assert.matches("^GetLogEvents log group /aws/batch/job: HTTP 404 ResourceNotFoundException: "
        .. "The specified log group does not exist%. %(hint: check that log group /aws/batch/job exists "
        .. "in region us%-east%-1%)$", msg)
    end)

    it("turns an empty 404 into NotFound with a hint naming the resource", function()
      local t = fake_transport({ { status = 404, body = "" } })
      local _, msg, code = client(t, { service = "s3", protocol = "rest-xml" }):send({
        method = "HEAD", path = "/b/k", operation = "HeadObject", resource = "s3://b/k" })
      assert.are.equal("NotFound", code)
      assert.are.equal("HeadObject s3://b/k: HTTP 404 (hint: check that s3://b/k exists in region us-east-1)", msg)
    end)

    it("uses HTTP_<status> when there is no AWS code", function()
      local t = fake_transport({ { status = 418, body = "teapot" } })
      local _, msg, code = client(t):send({ method = "GET", path = "/x" })
      assert.are.equal("HTTP_418", code)
      assert.are.equal("GET /x batch /x: HTTP 418", msg)
    end)

    it("hints at credentials, region and the IAM action on 403", function()
      local t = fake_transport({ { status = 403, body = '{"__type":"AccessDeniedException","Message":"no"}' } })
      local _, msg, code = client(t):send({ method = "POST", path = "/v1/submitjob",
        operation = "SubmitJob", resource = "job j" })
      assert.are.equal("AccessDeniedException", code)
      assert.matches("hint: check the credentials %(source: explicit%), the region %(us%-east%-1%) "
        .. "and that the IAM policy allows batch:SubmitJob", msg)
      assert.are.equal(1, #t.calls)                         -- not retried
    end)

    it("hints at conflicts on 409", function()
      local t = fake_transport({ { status = 409, body = '{"__type":"ConflictException"}' } })
      local _, msg = client(t):send({ method = "POST", path = "/x", operation = "CreateX", resource = "x 1" })
      assert.matches("hint: x 1 already exists", msg)
    end)

    it("parses XML errors with core.xml_parse", function()
      if not real_core.xml_parse then
        pending("core.xml_parse not built yet")
        return
      end
      local t = fake_transport({
        { status = 404, body = "<?xml version=\"1.0\"?><Error><Code>NoSuchKey</Code>"
          .. "<Message>The specified key does not exist.</Message><RequestId>R1</RequestId></Error>" },
        { status = 400, body = "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">"
          .. "<Error><Type>Sender</Type><Code>InvalidIdentityToken</Code><Message>bad token</Message>"
          .. "</Error><RequestId>R2</RequestId></ErrorResponse>" },
      })
      local _, msg, code = client(t, { service = "s3", protocol = "rest-xml" }):send({
        method = "GET", path = "/b/k", operation = "GetObject", resource = "s3://b/k" })
      assert.are.equal("NoSuchKey", code)
      assert.matches("^GetObject s3://b/k: HTTP 404 NoSuchKey: The specified key does not exist%.", msg)
      _, msg, code = client(t, { service = "sts", protocol = "query", unsigned = true }):send({
        method = "POST", path = "/", params = { Action = "A" }, operation = "AssumeRoleWithWebIdentity",
        resource = "arn:r" })
      assert.are.equal("InvalidIdentityToken", code)
      assert.matches("HTTP 400 InvalidIdentityToken: bad token", msg)
    end)

    it("reports a missing region before sending", function()
      local t = fake_transport({})
      local _, msg, code = client(t, { env = {} }):send({ method = "GET", path = "/", operation = "ListJobs" })
      assert.are.equal("NoRegion", code)
      assert.matches("^ListJobs batch /: no AWS region", msg)
      assert.are.equal(0, #t.calls)
    end)

    it("reports a credentials failure without sending", function()
      local t = fake_transport({})
      local c = client(t, { credentials = { get = function()
        return nil, "no AWS credentials found; tried: env (AWS_ACCESS_KEY_ID not set)", "NoCredentials"
      end } })
      local _, msg, code = c:send({ method = "GET", path = "/", operation = "ListJobs", resource = "queue q" })
      assert.are.equal("NoCredentials", code)
      assert.are.equal("ListJobs queue q: no AWS credentials found; tried: env (AWS_ACCESS_KEY_ID not set)", msg)
      assert.are.equal(0, #t.calls)
    end)

    it("never puts a secret in a message or a debug line", function()
      local lines = {}
      local old_sink = log.set_sink(function(l) lines[#lines + 1] = l end)
      local old_level = log.level()
      log.set_level("debug")
      local t = fake_transport({ { status = 403, body = '{"__type":"SignatureDoesNotMatch","message":"m"}' } })
      local _, msg = client(t):send({ method = "GET", path = "/", query = { ["X-Amz-Security-Token"] = TOKEN } })
      log.set_sink(old_sink)
      log.set_level(old_level)
      assert.is_truthy(#lines > 0)
      for _, s in ipairs(lines) do
        assert.is_nil(s:find(SECRET, 1, true))
        assert.is_nil(s:find(TOKEN, 1, true))
      end
      assert.is_nil(msg:find(SECRET, 1, true))
      assert.is_nil(msg:find(TOKEN, 1, true))
      assert.matches("secret key", msg)
    end)
  end)

  describe("error texts", function()
    it("pass through the redactor: a server echoing the canonical request, a transport quoting a header", function()
      local echoed = "The request signature we calculated does not match.\n\nThe Canonical String for this "
        .. "request should have been\n'POST\n/v1/submitjob\n\nhost:b\nx-amz-security-token:LBECHOEDTOKEN"
        .. "0123456789abcdef\n\nhost;x-amz-security-token\n'"
      local t = fake_transport({
        { status = 403, body = require("cjson").encode({ __type = "InvalidSignatureException", message = echoed }) },
        { err = "proxy said: X-Amz-Security-Token: LBECHOEDTOKEN0123456789abcdef", code = "EPROTO" },
      })
      local c = client(t, { max_attempts = 1 })
      local _, msg = c:send({ method = "POST", path = "/v1/submitjob", operation = "SubmitJob" })
      assert.truthy(msg:find("x-amz-security-token:<redacted>", 1, true), msg)
      assert.is_nil(msg:find("LBECHOEDTOKEN", 1, true), msg)
      local _, msg2 = c:send({ method = "POST", path = "/v1/submitjob", operation = "SubmitJob" })
      assert.truthy(msg2:find("<redacted>", 1, true), msg2)
      assert.is_nil(msg2:find("LBECHOEDTOKEN", 1, true), msg2)
    end)
  end)

  describe("retries", function()
    it("retries a 503 with backoff and succeeds", function()
      local t = fake_transport({ { status = 503, body = "" }, { status = 200, body = "{}" } })
      local resp = assert(client(t):send({ method = "GET", path = "/x" }))
      assert.are.equal(2, resp.attempts)
      assert.are.same({ 0.5 }, sleeps)                       -- rand 0.5 * 2^0
      assert.are.equal(2, #t.calls)
    end)

    it("gives up on throttling after max attempts and says how often it retried", function()
      local body = '{"__type":"ThrottlingException","message":"Rate exceeded"}'
      local t = fake_transport({ { status = 400, body = body }, { status = 400, body = body },
        { status = 400, body = body } })
      local _, msg, code = client(t):send({ method = "POST", path = "/v1/describejobs",
        operation = "DescribeJobs", resource = "3 jobs" })
      assert.are.equal("ThrottlingException", code)
      assert.are.equal(3, #t.calls)
      assert.are.same({ 0.5, 1 }, sleeps)
      assert.matches("HTTP 400 ThrottlingException: Rate exceeded %(hint: throttled by AWS, retried 2 times", msg)
    end)

    it("retries transport failures and keeps their code", function()
      local t = fake_transport({ { err = "connect to 10.0.0.1:443 failed", code = "ECONNECT" },
        { err = "connect to 10.0.0.1:443 failed", code = "ECONNECT" },
        { err = "connect to 10.0.0.1:443 failed", code = "ECONNECT" } })
      local _, msg, code = client(t):send({ method = "GET", path = "/", operation = "ListJobs", resource = "q" })
      assert.are.equal("ECONNECT", code)
      assert.are.equal(3, #t.calls)
      assert.matches("^ListJobs q: connect to 10%.0%.0%.1:443 failed %(retried 2 times%) %(hint: connection failed", msg)
    end)

    it("corrects the clock from the Date header and re-signs once", function()
      local server = NOW + 600
      local t = fake_transport({
        { status = 400, headers = { date = os.date("!%a, %d %b %Y %H:%M:%S GMT", server) },
          body = '{"__type":"InvalidSignatureException","message":"Signature expired: 20150830T123600Z is now earlier than 20150830T124100Z"}' },
        { status = 200, body = "{}" },
      })
      local c = client(t, { max_attempts = 1 })
      assert(c:send({ method = "POST", path = "/v1/listjobs" }))
      assert.are.equal(600, c:skew())
      assert.are.equal("20150830T123600Z", header(t.calls[1].headers, "X-Amz-Date"))
      assert.are.equal("20150830T124600Z", header(t.calls[2].headers, "X-Amz-Date"))
      assert.are.same({}, sleeps)
    end)

    it("does not loop on persistent skew", function()
      local date = os.date("!%a, %d %b %Y %H:%M:%S GMT", NOW + 900)
      local r = { status = 403, headers = { date = date }, body = '{"__type":"RequestTimeTooSkewed"}' }
      local t = fake_transport({ r, { status = 403, headers = { date = date }, body = r.body } })
      local _, msg, code = client(t):send({ method = "GET", path = "/" })
      assert.are.equal("RequestTimeTooSkewed", code)
      assert.are.equal(2, #t.calls)
      assert.matches("synchronise it", msg)
    end)

    it("drops expired credentials and retries once with fresh ones", function()
      local n = 0
      local provider = {
        get = function()
          n = n + 1
          return { access_key = "AKID" .. n, secret_key = SECRET, source = "ecs" }
        end,
        invalidate = function() end,
      }
      local t = fake_transport({ { status = 400, body = '{"__type":"ExpiredTokenException"}' },
        { status = 200, body = "{}" } })
      assert(client(t, { credentials = provider }):send({ method = "GET", path = "/" }))
      assert.matches("Credential=AKID1/", header(t.calls[1].headers, "Authorization"))
      assert.matches("Credential=AKID2/", header(t.calls[2].headers, "Authorization"))
    end)

    it("does not retry a streamed body", function()
      local t = fake_transport({ { status = 503, body = "" } })
      local chunks = { "a", "" }
      local _, _, code = client(t, { service = "s3", protocol = "rest-xml" }):send({
        method = "PUT", path = "/b/k", body_reader = function() return table.remove(chunks, 1) end,
        body_length = 1 })
      assert.are.equal("HTTP_503", code)
      assert.are.equal(1, #t.calls)
      assert.matches("UNSIGNED%-PAYLOAD", header(t.calls[1].headers, "X-Amz-Content-Sha256"))
    end)

    it("stops when the sleep is interrupted", function()
      core.sleep = function() return nil, "sleep: interrupted", "ECANCELED" end
      local t = fake_transport({ { status = 500, body = "" } })
      local _, msg, code = client(t):send({ method = "GET", path = "/", operation = "ListJobs", resource = "q" })
      assert.are.equal("ECANCELED", code)
      assert.are.equal("ListJobs q: interrupted", msg)
    end)

    it("waits for the adaptive rate limiter before sending", function()
      local p = retry.new({ mode = "adaptive", rand = function() return 0 end, max_attempts = 5,
        clock = function() return now end })
      local body = '{"__type":"ThrottlingException"}'
      local t = fake_transport({ { status = 400, body = body }, { status = 200, body = "{}" } })
      assert(client(t, { retry = p }):send({ method = "GET", path = "/" }))
      -- after the throttle the bucket is enabled and (almost) empty: the
      -- second send waits for a token
      assert.are.equal(1, #sleeps)
      assert.is_true(sleeps[1] > 0)
      assert.is_true(p:rate_limiter():state().enabled)
    end)

    it("builds its retry policy from the configuration", function()
      local t = fake_transport({ { status = 500 }, { status = 500 }, { status = 500 }, { status = 500 },
        { status = 500 } })
      local c = request.new({ service = "batch", protocol = "rest-json", transport = t, core = core,
        config = config.new({ env = { AWS_REGION = "us-east-1", AWS_MAX_ATTEMPTS = "5" } }),
        credentials = credentials.static({ access_key = "AKID", secret_key = SECRET }) })
      local _, _, code = c:send({ method = "GET", path = "/" })
      assert.are.equal("HTTP_500", code)
      assert.are.equal(5, #t.calls)
      local bad = request.new({ service = "batch", protocol = "rest-json", transport = t, core = core,
        config = config.new({ env = { AWS_REGION = "us-east-1", AWS_RETRY_MODE = "never" } }),
        credentials = credentials.static({ access_key = "AKID", secret_key = SECRET }) })
      local _, msg2, code2 = bad:send({ method = "GET", path = "/" })
      assert.are.equal("InvalidConfig", code2)
      assert.matches("never", msg2)
    end)
  end)
end)
