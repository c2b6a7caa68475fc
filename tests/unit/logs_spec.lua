-- Specs for luabatch.logs with a fake transport (no network): the json-1.1
-- wire shape (POST /, X-Amz-Target Logs_20140328.<Op>, the JSON body as in
-- the botocore model logs/2014-03-28), the end-of-log rule of GetLogEvents
-- (the same forward token comes back), tailing across polls, pagination
-- and error mapping.

local logsmod = require "luabatch.logs"
local config = require "luabatch.config"
local credentials = require "luabatch.credentials"
local retry = require "luabatch.retry"
local real_core = require "luabatch.core"
local cjson = require "cjson.safe"

local ENDPOINT = "https://logs.eu-west-1.amazonaws.com"
local GROUP, STREAM = "/aws/batch/job", "wf-abc/default/0123456789abcdef"


local function fake_transport(script)
  local t = { calls = {} }
  function t.request(self, opts)
    local call = { method = opts.method, url = opts.url, headers = opts.headers, body = opts.body }
    call.json = opts.body and cjson.decode(opts.body) or nil
    self.calls[#self.calls + 1] = call
    local r = table.remove(script, 1)
    assert(r, "fake transport: unexpected request " .. tostring(opts.body))
    if type(r) == "function" then r = r(opts, call) end
    if r.err then return nil, r.err, r.code end
    local body = r.body
    if type(body) == "table" then body = cjson.encode(body) end
    return { status = r.status or 200, headers = r.headers or { ["content-type"] = "application/x-amz-json-1.1" },
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
  now = function() return 1700000000 end,
  monotime = function() return 0 end,
  sleep = function() return true end,
}, { __index = real_core })


local function client(t, o)
  o = o or {}
  return logsmod.new({
    config = config.new({ env = { AWS_REGION = "eu-west-1" } }),
    credentials = credentials.static({ access_key = "AKIDEXAMPLE", secret_key = "SECRETEXAMPLEKEY" }),
    transport = t,
    retry = retry.new({ rand = function() return 0.5 end, max_attempts = o.max_attempts or 1 }),
    core = fake_core,
  })
end


local function check_call(call, op, body)
  assert.are.equal("POST", call.method)
  assert.are.equal(ENDPOINT .. "/", call.url)
  assert.are.equal("Logs_20140328." .. op, header(call.headers, "X-Amz-Target"))
  assert.are.equal("application/x-amz-json-1.1", header(call.headers, "Content-Type"))
  assert.truthy(header(call.headers, "Authorization"):find("/eu%-west%-1/logs/aws4_request", 1, false))
  assert.are.same(body, call.json)
end


local function ev(ts, msg) return { timestamp = ts, message = msg, ingestionTime = ts + 1 } end

local function page(events, fwd, back)
  return { body = { events = events, nextForwardToken = fwd, nextBackwardToken = back or "b/0" } }
end


local function not_found()
  return { status = 400, body = { __type = "com.amazonaws.logs#ResourceNotFoundException",
    message = "The specified log stream does not exist." } }
end


describe("luabatch.logs #unit", function()

  describe("GetLogEvents", function()
    it("one call: the body and the answer", function()
      local t = fake_transport({ page({ ev(1000, "hi") }, "f/1") })
      local ans = assert(client(t):get_log_events(GROUP, STREAM, { limit = 50 }))
      assert.are.equal("hi", ans.events[1].message)
      assert.are.equal("f/1", ans.nextForwardToken)
      check_call(t.calls[1], "GetLogEvents",
        { logGroupName = GROUP, logStreamName = STREAM, startFromHead = true, limit = 50 })
    end)

    it("passes next_token, start/end times and start_from_head = false", function()
      local t = fake_transport({ page({}, "f/2"), page({}, "f/3") })
      local c = client(t)
      assert(c:get_log_events(GROUP, STREAM, { next_token = "f/1", start_time = 5, end_time = 9 }))
      check_call(t.calls[1], "GetLogEvents", { logGroupName = GROUP, logStreamName = STREAM,
        startFromHead = true, nextToken = "f/1", startTime = 5, endTime = 9 })
      assert(c:get_log_events(GROUP, STREAM, { start_from_head = false }))
      check_call(t.calls[2], "GetLogEvents", { logGroupName = GROUP, logStreamName = STREAM,
        startFromHead = false })
    end)

    it("a group ARN goes as logGroupIdentifier", function()
      local arn = "arn:aws:logs:eu-west-1:123456789012:log-group:/aws/batch/job"
      local t = fake_transport({ page({}, "f/1") })
      assert(client(t):get_log_events(arn, STREAM))
      check_call(t.calls[1], "GetLogEvents", { logGroupIdentifier = arn, logStreamName = STREAM,
        startFromHead = true })
    end)

    it("maps ResourceNotFoundException (the code after '#')", function()
      local t = fake_transport({ not_found() })
      local ans, msg, code = client(t):get_log_events(GROUP, STREAM)
      assert.is_nil(ans)
      assert.are.equal("ResourceNotFoundException", code)
      assert.are.equal("GetLogEvents log stream " .. GROUP .. " " .. STREAM
        .. ": HTTP 400 ResourceNotFoundException: The specified log stream does not exist.", msg)
    end)

    it("retries ThrottlingException", function()
      local t = fake_transport({
        { status = 400, body = { __type = "ThrottlingException", message = "Rate exceeded" } },
        page({ ev(1, "a") }, "f/1"),
      })
      local ans = assert(client(t, { max_attempts = 2 }):get_log_events(GROUP, STREAM))
      assert.are.equal(1, #ans.events)
      assert.are.equal(2, #t.calls)
    end)

    it("raises on misuse", function()
      local c = client(fake_transport({}))
      assert.has_error(function() c:get_log_events(nil, STREAM) end,
        "bad argument #1 to 'get_log_events' (log group name or ARN expected, got nil)")
      assert.has_error(function() c:get_log_events(GROUP, "") end)
      assert.has_error(function() c:get_log_events(GROUP, STREAM, 5) end)
    end)
  end)

  describe("events(): every event to the end of the stream", function()
    it("follows nextForwardToken through empty pages until the same token comes back", function()
      local t = fake_transport({
        page({ ev(1, "one"), ev(2, "two") }, "f/1"),
        page({}, "f/2"),                 -- empty but not the end: the token moved
        page({ ev(3, "three") }, "f/3"),
        page({}, "f/3"),                 -- same token as sent: the end
      })
      local got = {}
      for e, msg in client(t):events(GROUP, STREAM) do
        assert(e, msg)
        got[#got + 1] = e.message
      end
      assert.are.same({ "one", "two", "three" }, got)
      assert.are.equal(4, #t.calls)
      assert.is_nil(t.calls[1].json.nextToken)
      assert.are.equal("f/1", t.calls[2].json.nextToken)
      assert.are.equal("f/2", t.calls[3].json.nextToken)
      assert.are.equal("f/3", t.calls[4].json.nextToken)
      for _, c in ipairs(t.calls) do assert.is_true(c.json.startFromHead) end
    end)

    it("stops after the page that returns the token it was sent, even with events", function()
      local t = fake_transport({
        page({ ev(1, "a") }, "f/1"),
        page({ ev(2, "b") }, "f/1"),
      })
      local n = 0
      for e in client(t):events(GROUP, STREAM) do n = n + (e and 1 or 0) end
      assert.are.equal(2, n)
      assert.are.equal(2, #t.calls)
    end)

    it("resumes from opts.next_token and respects max_pages", function()
      local t = fake_transport({ page({ ev(1, "a") }, "f/6"), page({ ev(2, "b") }, "f/7") })
      local n = 0
      for e in client(t):events(GROUP, STREAM, { next_token = "f/5", max_pages = 2 }) do
        n = n + (e and 1 or 0)
      end
      assert.are.equal(2, n)
      assert.are.equal(2, #t.calls)          -- a third page is never asked for
      assert.are.equal("f/5", t.calls[1].json.nextToken)
    end)

    it("yields false, msg, code once on a failure", function()
      local t = fake_transport({ page({ ev(1, "a") }, "f/1"), not_found() })
      local got, fails = 0, {}
      for e, msg, code in client(t):events(GROUP, STREAM) do
        if e then got = got + 1 else fails[#fails + 1] = code end
      end
      assert.are.equal(1, got)
      assert.are.same({ "ResourceNotFoundException" }, fails)
    end)
  end)

  describe("tail(): a running job's log across polls", function()
    it("remembers the forward token between polls and returns only new events", function()
      local t = fake_transport({
        not_found(),                                           -- poll 1: stream not there yet
        page({ ev(1, "starting") }, "f/1"), page({}, "f/1"),   -- poll 2
        page({}, "f/1"),                                       -- poll 3: nothing new
        page({ ev(2, "working") }, "f/2"), page({ ev(3, "done") }, "f/3"), page({}, "f/3"), -- poll 4
      })
      local tl = client(t):tail(GROUP, STREAM)

      local evs = assert(tl:poll())
      assert.are.same({}, evs)
      assert.is_true(tl.missing)
      assert.is_nil(tl.next_token)

      evs = assert(tl:poll())
      assert.are.equal(1, #evs)
      assert.are.equal("starting", evs[1].message)
      assert.is_false(tl.missing)
      assert.is_true(tl.at_end)
      assert.are.equal("f/1", tl.next_token)

      evs = assert(tl:poll())
      assert.are.same({}, evs)
      assert.are.equal("f/1", t.calls[4].json.nextToken)

      evs = assert(tl:poll())
      assert.are.equal(2, #evs)
      assert.are.equal("working", evs[1].message)
      assert.are.equal("done", evs[2].message)
      assert.are.equal("f/3", tl.next_token)
      assert.are.equal("f/1", t.calls[5].json.nextToken)
      assert.are.equal(7, #t.calls)
    end)

    it("resumes from a persisted token", function()
      local t = fake_transport({ page({ ev(9, "later") }, "f/10"), page({}, "f/10") })
      local tl = client(t):tail(GROUP, STREAM, { next_token = "f/9" })
      local evs = assert(tl:poll())
      assert.are.equal("later", evs[1].message)
      assert.are.equal("f/9", t.calls[1].json.nextToken)
      assert.are.equal("f/10", tl.next_token)
    end)

    it("stops a poll after max_pages and continues from there on the next", function()
      local t = fake_transport({
        page({ ev(1, "a") }, "f/1"), page({ ev(2, "b") }, "f/2"),
        page({ ev(3, "c") }, "f/3"), page({}, "f/3"),
      })
      local tl = client(t):tail(GROUP, STREAM, { max_pages = 2 })
      local evs = assert(tl:poll())
      assert.are.equal(2, #evs)
      assert.is_false(tl.at_end)
      assert.are.equal("f/2", tl.next_token)
      evs = assert(tl:poll())
      assert.are.equal("c", evs[1].message)
      assert.is_true(tl.at_end)
    end)

    it("stops a poll at MAX_POLL_EVENTS or MAX_POLL_BYTES kept; the next poll reads on", function()
      local saved_n, saved_b = logsmod.MAX_POLL_EVENTS, logsmod.MAX_POLL_BYTES
      logsmod.MAX_POLL_EVENTS, logsmod.MAX_POLL_BYTES = 3, 10
      local t = fake_transport({
        page({ ev(1, "a"), ev(2, "b") }, "f/1"), page({ ev(3, "c"), ev(4, "d") }, "f/2"),   -- poll 1: 4 >= 3
        page({ ev(5, ("x"):rep(20)) }, "f/3"),                                            -- poll 2: 20 >= 10 bytes
        page({ ev(6, "e") }, "f/4"), page({}, "f/4"),                                      -- poll 3: the end
      })
      local tl = client(t):tail(GROUP, STREAM)
      local ok, e1 = pcall(tl.poll, tl)
      local ok2, e2 = pcall(tl.poll, tl)
      local ok3, e3 = pcall(tl.poll, tl)
      logsmod.MAX_POLL_EVENTS, logsmod.MAX_POLL_BYTES = saved_n, saved_b
      assert(ok and ok2 and ok3)
      assert.are.equal(4, #e1)
      assert.are.equal(1, #e2)
      assert.are.equal("e", e3[1].message)
      assert.is_true(tl.at_end)
      assert.are.equal(5, #t.calls)
    end)

    it("keeps events read before a failure; reports a failure with nothing read", function()
      local t = fake_transport({
        page({ ev(1, "a") }, "f/1"),
        { status = 500, body = { __type = "ServiceUnavailableException", message = "down" } },
        { status = 500, body = { __type = "ServiceUnavailableException", message = "down" } },
        page({ ev(2, "b") }, "f/2"), page({}, "f/2"),
      })
      local tl = client(t):tail(GROUP, STREAM)
      local evs = assert(tl:poll())
      assert.are.equal(1, #evs)
      assert.are.equal("f/1", tl.next_token)
      local ok, msg, code = tl:poll()
      assert.is_nil(ok)
      assert.are.equal("ServiceUnavailableException", code)
      assert.truthy(msg:find("GetLogEvents log stream", 1, true))
      assert.are.equal("f/1", tl.next_token)
      evs = assert(tl:poll())
      assert.are.equal("b", evs[1].message)
      assert.are.equal("f/1", t.calls[4].json.nextToken)
    end)
  end)

  describe("FilterLogEvents", function()
    it("one call: body with stream names, pattern, times", function()
      local t = fake_transport({ { body = { events = { { logStreamName = "s1", message = "x", eventId = "1" } },
        nextToken = "n2", searchedLogStreams = {} } } })
      local ans = assert(client(t):filter_log_events(GROUP, { stream_names = { "s1", "s2" },
        filter_pattern = "ERROR", start_time = 10, end_time = 20, limit = 100 }))
      assert.are.equal("n2", ans.nextToken)
      check_call(t.calls[1], "FilterLogEvents", { logGroupName = GROUP, logStreamNames = { "s1", "s2" },
        filterPattern = "ERROR", startTime = 10, endTime = 20, limit = 100 })
    end)

    it("stream_names and stream_prefix are exclusive", function()
      assert.has_error(function()
        client(fake_transport({})):filter_log_events(GROUP, { stream_names = { "a" }, stream_prefix = "p" })
      end)
    end)

    it("filter_events follows nextToken until it is absent", function()
      local t = fake_transport({
        { body = { events = { { message = "1" } }, nextToken = "n2" } },
        { body = { events = {}, nextToken = "n3" } },
        { body = { events = { { message = "2" }, { message = "3" } } } },
      })
      local got = {}
      for e, msg in client(t):filter_events(GROUP, { stream_prefix = "wf-abc/" }) do
        assert(e, msg)
        got[#got + 1] = e.message
      end
      assert.are.same({ "1", "2", "3" }, got)
      check_call(t.calls[3], "FilterLogEvents", { logGroupName = GROUP, logStreamNamePrefix = "wf-abc/",
        nextToken = "n3" })
    end)
  end)

  describe("DescribeLogStreams", function()
    it("one call and the iterator over every page", function()
      local t = fake_transport({
        { body = { logStreams = { { logStreamName = "a" } }, nextToken = "n2" } },
        { body = { logStreams = { { logStreamName = "a" } }, nextToken = "n2" } },
        { body = { logStreams = { { logStreamName = "b" } } } },
      })
      local c = client(t)
      local ans = assert(c:describe_log_streams(GROUP, { prefix = "wf-", order_by = "LogStreamName",
        descending = false, limit = 1 }))
      assert.are.equal("a", ans.logStreams[1].logStreamName)
      check_call(t.calls[1], "DescribeLogStreams", { logGroupName = GROUP, logStreamNamePrefix = "wf-",
        orderBy = "LogStreamName", descending = false, limit = 1 })
      local names = {}
      for s, msg in c:log_streams(GROUP, { prefix = "wf-" }) do
        assert(s, msg)
        names[#names + 1] = s.logStreamName
      end
      assert.are.same({ "a", "b" }, names)
      check_call(t.calls[3], "DescribeLogStreams", { logGroupName = GROUP, logStreamNamePrefix = "wf-",
        nextToken = "n2" })
    end)

    it("maps errors with the group in the message", function()
      local t = fake_transport({ { status = 400, body = { __type = "InvalidParameterException",
        message = "1 validation error" } } })
      local _, msg, code = client(t):describe_log_streams(GROUP)
      assert.are.equal("InvalidParameterException", code)
      assert.truthy(msg:find("^DescribeLogStreams log group /aws/batch/job: HTTP 400 InvalidParameterException"))
    end)
  end)
end)
