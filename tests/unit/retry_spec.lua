-- Specs for luabatch.retry (pure policy: no sleeping, no I/O).

local retry = require "luabatch.retry"


local function fixed(v) return function() return v end end


describe("luabatch.retry #unit", function()
  describe("classify", function()
    local p = retry.new()

    it("knows all 14 botocore throttling codes", function()
      local codes = {
        "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException",
        "TooManyRequestsException", "ProvisionedThroughputExceededException",
        "TransactionInProgressException", "RequestLimitExceeded", "BandwidthLimitExceeded",
        "LimitExceededException", "RequestThrottled", "SlowDown", "PriorRequestNotComplete",
        "EC2ThrottledException",
      }
      for _, c in ipairs(codes) do
        assert.are.equal("throttling", p:classify({ status = 400, code = c }), c)
      end
      local n = 0
      for _ in pairs(retry.THROTTLING_CODES) do n = n + 1 end
      assert.are.equal(14, n)
    end)

    it("treats 429 without a code as throttling", function()
      assert.are.equal("throttling", p:classify({ status = 429 }))
    end)

    it("classifies transient codes, 5xx statuses and transport failures", function()
      assert.are.equal("transient", p:classify({ status = 400, code = "RequestTimeout" }))
      assert.are.equal("transient", p:classify({ status = 400, code = "RequestTimeoutException" }))
      for _, s in ipairs({ 500, 502, 503, 504 }) do
        assert.are.equal("transient", p:classify({ status = s }), s)
      end
      assert.are.equal("transient", p:classify({ code = "ECONNECT" }))
      assert.are.equal("transient", p:classify({ code = "ETIMEDOUT" }))
      -- 503 SlowDown is throttling first (it costs the same but matters for adaptive)
      assert.are.equal("throttling", p:classify({ status = 503, code = "SlowDown" }))
    end)

    it("classifies clock-skew errors", function()
      assert.are.equal("skew", p:classify({ status = 403, code = "RequestTimeTooSkewed" }))
      assert.are.equal("skew", p:classify({ status = 400, code = "RequestExpired" }))
      assert.are.equal("skew", p:classify({ status = 400, code = "InvalidSignatureException",
        message = "Signature expired: 20150830T123600Z is now earlier than 20150830T124100Z" }))
      assert.are.equal("skew", p:classify({ status = 403, code = "SignatureDoesNotMatch",
        message = "Signature expired" }))
    end)

    it("does not retry permanent errors", function()
      assert.is_nil(p:classify({ status = 403, code = "SignatureDoesNotMatch",
        message = "The request signature we calculated does not match" }))
      assert.is_nil(p:classify({ status = 403, code = "AccessDenied" }))
      assert.is_nil(p:classify({ status = 404, code = "NoSuchKey" }))
      assert.is_nil(p:classify({ status = 400 }))
      assert.is_nil(p:classify({ code = "ECANCELED" }))
      assert.is_nil(p:classify({ code = "ETLS" }))
      assert.is_nil(p:classify(nil))
    end)
  end)

  describe("standard mode", function()
    it("backs off rand * min(2^(attempt-1), 20)", function()
      local p = retry.new({ rand = fixed(0.5), max_attempts = 20, quota = false })
      assert.are.equal(0.5, p:decide(1, "transient", {}))
      assert.are.equal(1, p:decide(2, "transient", {}))
      assert.are.equal(2, p:decide(3, "transient", {}))
      assert.are.equal(8, p:decide(5, "transient", {}))
      assert.are.equal(10, p:decide(6, "transient", {}))    -- 32 capped at 20
      assert.are.equal(10, p:decide(15, "transient", {}))
    end)

    it("scales the backoff with base and max_backoff", function()
      local p = retry.new({ rand = fixed(1), base = 0.1, max_backoff = 0.3, max_attempts = 9 })
      assert.is_true(math.abs(p:decide(1, "transient", {}) - 0.1) < 1e-9)
      assert.is_true(math.abs(p:decide(2, "transient", {}) - 0.2) < 1e-9)
      assert.is_true(math.abs(p:decide(3, "transient", {}) - 0.3) < 1e-9)
    end)

    it("gives up after max attempts (3 by default)", function()
      local p = retry.new({ rand = fixed(0) })
      assert.are.equal(3, p.max_attempts)
      local ctx = {}
      assert.are.equal(0, p:decide(1, "throttling", ctx))
      assert.are.equal(0, p:decide(2, "throttling", ctx))
      local d, why = p:decide(3, "throttling", ctx)
      assert.is_nil(d)
      assert.matches("max attempts", why)
      assert.are.equal(2, ctx.retries)
    end)

    it("never retries an unclassified outcome", function()
      local p = retry.new()
      local d, why = p:decide(1, nil, {})
      assert.is_nil(d)
      assert.are.equal("not retryable", why)
    end)

    it("drains the retry quota by 5 per retry and 10 per timeout", function()
      local p = retry.new({ rand = fixed(0), max_attempts = 2 })
      assert.are.equal(500, p:quota())
      p:decide(1, "transient", {})
      assert.are.equal(495, p:quota())
      p:decide(1, "transient", { timeout = true })
      assert.are.equal(485, p:quota())
      p:decide(1, "transient", { code = "ETIMEDOUT" })
      assert.are.equal(475, p:quota())
    end)

    it("stops retrying when the quota is exhausted", function()
      local p = retry.new({ rand = fixed(0), max_attempts = 2 })
      for _ = 1, 100 do assert.are.equal(0, p:decide(1, "transient", {})) end
      assert.are.equal(0, p:quota())
      local d, why = p:decide(1, "transient", {})
      assert.is_nil(d)
      assert.matches("quota", why)
    end)

    it("refunds 1 on success without retry, the retry cost after retries, capped", function()
      local p = retry.new({ rand = fixed(0), max_attempts = 5 })
      p:on_success({})
      assert.are.equal(500, p:quota())                     -- capped at capacity
      local ctx = {}
      p:decide(1, "transient", ctx)
      p:decide(2, "transient", { timeout = true })
      assert.are.equal(485, p:quota())
      p:on_success({})
      assert.are.equal(486, p:quota())
      p:on_success(ctx)                                    -- ctx.retry_cost == 5
      assert.are.equal(491, p:quota())
    end)

    it("retries a skew error once, immediately, without quota", function()
      local p = retry.new({ max_attempts = 1 })
      local ctx = {}
      assert.are.equal(0, p:decide(1, "skew", ctx))
      local d, why = p:decide(2, "skew", ctx)
      assert.is_nil(d)
      assert.matches("skew", why)
      assert.are.equal(500, p:quota())
    end)

    it("has no client-side rate limit", function()
      local p = retry.new()
      assert.are.equal(0, p:acquire())
      assert.is_nil(p:rate_limiter())
      p:record("throttling")
      assert.are.equal(0, p:acquire())
    end)

    it("legacy mode has 5 attempts and no quota", function()
      local p = retry.new({ mode = "legacy", rand = fixed(0) })
      assert.are.equal(5, p.max_attempts)
      assert.is_nil(p:quota())
      for i = 1, 4 do assert.are.equal(0, p:decide(i, "transient", {})) end
      assert.is_nil(p:decide(5, "transient", {}))
    end)

    it("raises on misuse", function()
      assert.has_error(function() retry.new({ mode = "fast" }) end)
      assert.has_error(function() retry.new({ max_attempts = 0 }) end)
      assert.has_error(function() retry.new({ max_attempts = 2.5 }) end)
      assert.has_error(function() retry.new("standard") end)
      assert.has_error(function() retry.new():decide("1", "transient") end)
    end)
  end)

  describe("adaptive mode", function()
    -- Expected values computed with botocore's ClientRateLimiter
    -- (retries/adaptive.py, throttling.py, bucket.py) on the same event
    -- sequence with a fake clock starting at 10.0.
    local EVENTS = {
      { 10.1, false, 0.5, 0 },
      { 10.6, false, 0.5, 3.2 },
      { 11.0, false, 0.5, 2.24 },
      { 11.2, false, 0.6911999999999988, 2.24 },
      { 11.7, true, 2.5536, 3.648 },
      { 12.0, false, 3.1175749859795117, 2.3296 },
      { 12.4, false, 3.5115992217896386, 2.3296 },
      { 13.1, true, 1.446144, 2.06592 },
      { 13.5, false, 1.8922940593574684, 2.013184 },
      { 14.2, false, 2.0658453163027026, 2.0026368 },
      { 15.0, false, 2.2298862121408916, 1.20052736 },
      { 16.3, false, 2.080210944, 1.040105472 },
      { 18.0, false, 1.2160421888, 0.6080210944 },
    }

    local function close(a, b) return math.abs(a - b) < 1e-9 end

    it("follows botocore's CUBIC rate adjustment step for step", function()
      local now = 10.0
      local p = retry.new({ mode = "adaptive", clock = function() return now end })
      local lim = p:rate_limiter()
      assert.is_not_nil(lim)
      for _, ev in ipairs(EVENTS) do
        now = ev[1]
        p:record(ev[2] and "throttling" or nil)
        local st = lim:state()
        assert.is_true(close(ev[3], st.fill_rate), ("t=%s fill %s ~= %s"):format(ev[1], ev[3], st.fill_rate))
        assert.is_true(close(ev[4], st.measured_rate), ("t=%s rate %s ~= %s"):format(ev[1], ev[4], st.measured_rate))
      end
    end)

    it("does not delay sends until the first throttle", function()
      local now = 0
      local p = retry.new({ mode = "adaptive", clock = function() return now end })
      for i = 1, 50 do
        now = i * 0.01
        assert.are.equal(0, p:acquire())
        p:record(nil)
      end
    end)

    it("returns the wait for the next token once throttled", function()
      local now = 10.0
      local p = retry.new({ mode = "adaptive", clock = function() return now end })
      for i = 1, 5 do
        now = EVENTS[i][1]
        p:record(EVENTS[i][2] and "throttling" or nil)
      end
      -- botocore state at 11.7: capacity 0.9955999999999989, fill rate 2.5536
      local st = p:rate_limiter():state()
      assert.is_true(close(0.9955999999999989, st.capacity))
      local wait = p:acquire()
      assert.is_true(close((1 - 0.9955999999999989) / 2.5536, wait))
      -- the token was reserved: a second caller waits one more token period
      local wait2 = p:acquire()
      assert.is_true(close(wait + 1 / 2.5536, wait2))
      -- once that time has passed the reservations are repaid: the next
      -- caller waits exactly one token period
      now = now + wait2
      assert.is_true(close(1 / 2.5536, p:acquire()))
    end)

    it("never drops below the minimum rate of 0.5 rps", function()
      local now = 0
      local p = retry.new({ mode = "adaptive", clock = function() return now end })
      for i = 1, 40 do
        now = i * 0.3
        p:record("throttling")
        assert.is_true(p:rate_limiter():state().fill_rate >= 0.5)
      end
    end)
  end)

  describe("skew_from_date_header", function()
    it("returns server minus local time", function()
      -- Sun, 06 Nov 1994 08:49:37 GMT = 784111777
      assert.are.equal(300, retry.skew_from_date_header("Sun, 06 Nov 1994 08:49:37 GMT", 784111477))
      assert.are.equal(-60, retry.skew_from_date_header("Sun, 06 Nov 1994 08:49:37 GMT", 784111837))
    end)

    it("accepts an ISO 8601 date and rejects garbage", function()
      assert.are.equal(0, retry.skew_from_date_header("1994-11-06T08:49:37Z", 784111777))
      assert.is_nil(retry.skew_from_date_header("yesterday", 1))
      assert.is_nil(retry.skew_from_date_header(nil, 1))
    end)
  end)
end)
