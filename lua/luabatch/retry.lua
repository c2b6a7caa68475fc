-- luabatch.retry: AWS retry policy (botocore "standard" and "adaptive" modes).
--
-- Pure policy: it classifies outcomes and returns decisions (delays in
-- seconds); it never sleeps and never does I/O.  The caller (request.lua)
-- sleeps, re-signs and resends.  Randomness and the clock are injectable.
--
--   local p = retry.new({ mode = "standard", max_attempts = 3 })
--   local ctx = {}                                -- one per API call
--   local wait = p:acquire()                      -- adaptive: client-side rate limit
--   local class = p:classify(outcome)             -- "throttling"|"transient"|"skew"|nil
--   p:record(class)                               -- adaptive: feed every response
--   local delay, why = p:decide(attempt, class, ctx)  -- nil = give up (why says so)
--   p:on_success(ctx)                             -- refunds the retry quota
--
-- An outcome is a table: { status = 503, code = "SlowDown", message = "..." }
-- where code is the AWS error code or a transport code (ECONNECT, ETIMEDOUT,
-- ...).  Mirrors botocore/retries/{standard,quota,adaptive,throttling,bucket}.py.

local time = require "luabatch.aws.time"

local _M = { _VERSION = "0.1.0" }
local mt = { __index = _M }

local floor = math.floor
local min = math.min
local max = math.max
local random = math.random
local pairs = pairs
local tostring = tostring
local type = type
local str_find = string.find


_M.DEFAULT_MAX_ATTEMPTS = 3          -- standard and adaptive
_M.LEGACY_MAX_ATTEMPTS = 5
_M.MAX_BACKOFF = 20                  -- seconds
_M.QUOTA_CAPACITY = 500
_M.RETRY_COST = 5
_M.TIMEOUT_RETRY_COST = 10
_M.NO_RETRY_INCREMENT = 1

local MODES = { standard = true, adaptive = true, legacy = true }

-- botocore retries/standard.py TransientRetryableChecker
local TRANSIENT_CODES = {
  RequestTimeout = true,
  RequestTimeoutException = true,
  PriorRequestNotComplete = true,
  -- transport failures (ConnectionError / HTTPClientError in botocore)
  ECONNECT = true,
  ETIMEDOUT = true,
  EHTTP = true,
  EIO = true,
}
local TRANSIENT_STATUS = { [500] = true, [502] = true, [503] = true, [504] = true }

-- botocore retries/standard.py ThrottledRetryableChecker (all 14)
local THROTTLING_CODES = {
  Throttling = true,
  ThrottlingException = true,
  ThrottledException = true,
  RequestThrottledException = true,
  TooManyRequestsException = true,
  ProvisionedThroughputExceededException = true,
  TransactionInProgressException = true,
  RequestLimitExceeded = true,
  BandwidthLimitExceeded = true,
  LimitExceededException = true,
  RequestThrottled = true,
  SlowDown = true,
  PriorRequestNotComplete = true,
  EC2ThrottledException = true,
}

-- Clock-skew errors: retried once after correcting the signing clock.
local SKEW_CODES = {
  RequestTimeTooSkewed = true,
  RequestExpired = true,
  RequestInTheFuture = true,
}
-- Codes that are skew only when the message says the signature expired.
local SKEW_IF_EXPIRED = {
  InvalidSignatureException = true,
  SignatureDoesNotMatch = true,
  AuthFailure = true,
}

-- The codes luabatch's clients return for a throttled call (the only
-- definition): the AWS codes above plus HTTP_429 (a 429 naming no code).
local THROTTLED = { HTTP_429 = true }
for c in pairs(THROTTLING_CODES) do THROTTLED[c] = true end

_M.TRANSIENT_CODES = TRANSIENT_CODES
_M.THROTTLING_CODES = THROTTLING_CODES
_M.THROTTLED = THROTTLED
_M.SKEW_CODES = SKEW_CODES


---------------------------------------------------------------------------
-- Adaptive mode: CUBIC rate adjustment, a rate clocker and a token bucket.
---------------------------------------------------------------------------

local CUBIC_SCALE = 0.4
local CUBIC_BETA = 0.7
local MIN_FILL_RATE = 0.5
local SMOOTHING = 0.8
local TIME_BUCKET_RANGE = 0.5
local MAX_RATE_ADJUST_SCALE = 2.0

local limiter_mt = {}
limiter_mt.__index = limiter_mt


local function cubic_zero_point(self)
  return ((self._w_max * (1 - CUBIC_BETA)) / CUBIC_SCALE) ^ (1 / 3)
end


-- TokenBucket._refill
local function bucket_refill(self)
  local now = self._clock()
  if self._last_timestamp == nil then
    self._last_timestamp = now
    return
  end
  local fill = (now - self._last_timestamp) * self._fill_rate
  self._capacity = min(self._max_capacity, self._capacity + fill)
  self._last_timestamp = now
end


-- TokenBucket.max_rate setter
local function bucket_set_rate(self, value)
  bucket_refill(self)
  self._fill_rate = max(value, MIN_FILL_RATE)
  self._max_capacity = value >= 1 and value or 1
  self._capacity = min(self._capacity, self._max_capacity)
end


--- A client-side rate limiter as botocore adaptive mode builds it.
-- clock: function() -> seconds (float).
function _M.new_rate_limiter(clock)
  if type(clock) ~= "function" then
    error("bad argument #1 to 'new_rate_limiter' (function expected, got " .. type(clock) .. ")", 2)
  end
  local now = clock()
  local self = setmetatable({
    _clock = clock,
    _enabled = false,
    -- CubicCalculator(starting_max_rate=0, start_time=now)
    _w_max = 0,
    _k = 0,
    _last_fail = now,
    -- RateClocker
    _measured_rate = 0,
    _last_bucket = floor(now),
    _count = 0,
    -- TokenBucket(max_rate=1)
    _fill_rate = nil,
    _max_capacity = nil,
    _capacity = 0,
    _last_timestamp = nil,
  }, limiter_mt)
  self._k = cubic_zero_point(self)
  bucket_set_rate(self, 1)
  return self
end


--- Take a send token.  Returns the number of seconds the caller must wait
-- before sending (0 = send now).  Never blocks; the token is reserved, so
-- concurrent callers get increasing delays.
function limiter_mt:acquire(amount)
  if not self._enabled then return 0 end
  amount = amount or 1
  bucket_refill(self)
  if amount <= self._capacity then
    self._capacity = self._capacity - amount
    return 0
  end
  local wait = (amount - self._capacity) / self._fill_rate
  self._capacity = self._capacity - amount       -- reserved: refill repays it
  return wait
end


-- RateClocker.record
local function clock_record(self)
  local t = self._clock()
  local scale = 1 / TIME_BUCKET_RANGE
  local bucket = floor(t * scale) / scale
  self._count = self._count + 1
  if bucket > self._last_bucket then
    local current = self._count / (bucket - self._last_bucket)
    self._measured_rate = current * SMOOTHING + self._measured_rate * (1 - SMOOTHING)
    self._count = 0
    self._last_bucket = bucket
  end
  return self._measured_rate
end


--- Feed one response (ClientRateLimiter.on_receiving_response).
function limiter_mt:update(throttled)
  local measured = clock_record(self)
  local now = self._clock()
  local new_rate
  if not throttled then
    -- CubicCalculator.success_received
    local dt = now - self._last_fail
    new_rate = CUBIC_SCALE * (dt - self._k) ^ 3 + self._w_max
  else
    local rate = self._enabled and min(measured, self._fill_rate) or measured
    -- CubicCalculator.error_received
    self._w_max = rate
    self._k = cubic_zero_point(self)
    self._last_fail = now
    new_rate = rate * CUBIC_BETA
    self._enabled = true
  end
  bucket_set_rate(self, min(new_rate, MAX_RATE_ADJUST_SCALE * measured))
  return self._fill_rate
end


--- Read-only state for debugging and tests.
function limiter_mt:state()
  return {
    enabled = self._enabled,
    fill_rate = self._fill_rate,
    max_capacity = self._max_capacity,
    capacity = self._capacity,
    measured_rate = self._measured_rate,
    w_max = self._w_max,
    k = self._k,
    last_fail = self._last_fail,
  }
end


---------------------------------------------------------------------------
-- The policy
---------------------------------------------------------------------------

local function default_clock()
  return os.time()
end


--- retry.new(opts) -> policy
-- opts.mode          "standard" (default) | "adaptive" | "legacy" (standard
--                    classification, 5 attempts, no quota)
-- opts.max_attempts  total attempts including the first (default 3; legacy 5)
-- opts.base          backoff scale in seconds (default 1)
-- opts.max_backoff   cap in seconds (default 20)
-- opts.quota         retry quota capacity (default 500; false disables)
-- opts.rand          function() -> [0,1) (default math.random)
-- opts.clock         function() -> seconds (adaptive mode; default os.time,
--                    request.lua passes core.monotime)
function _M.new(opts)
  opts = opts or {}
  if type(opts) ~= "table" then
    error("bad argument #1 to 'new' (table expected, got " .. type(opts) .. ")", 2)
  end
  local mode = opts.mode or "standard"
  if not MODES[mode] then
    error("bad argument #1 to 'new' (mode must be standard, adaptive or legacy, got "
      .. tostring(mode) .. ")", 2)
  end
  local max_attempts = opts.max_attempts
    or (mode == "legacy" and _M.LEGACY_MAX_ATTEMPTS or _M.DEFAULT_MAX_ATTEMPTS)
  if type(max_attempts) ~= "number" or max_attempts < 1 or max_attempts ~= floor(max_attempts) then
    error("bad argument #1 to 'new' (max_attempts must be an integer >= 1, got "
      .. tostring(max_attempts) .. ")", 2)
  end
  local quota = opts.quota
  if quota == nil then quota = mode ~= "legacy" and _M.QUOTA_CAPACITY or false end
  local self = setmetatable({
    mode = mode,
    max_attempts = max_attempts,
    base = opts.base or 1,
    max_backoff = opts.max_backoff or _M.MAX_BACKOFF,
    _rand = opts.rand or random,
    _clock = opts.clock or default_clock,
    _quota_max = quota or nil,
    _quota = quota or nil,
    _limiter = nil,
  }, mt)
  if mode == "adaptive" then
    self._limiter = _M.new_rate_limiter(self._clock)
  end
  return self
end


--- Classify an outcome -> "skew" | "throttling" | "transient" | nil.
-- outcome = { status = n?, code = "AwsCode" or "ETIMEDOUT"?, message = s? }
function _M:classify(outcome)
  if type(outcome) ~= "table" then return nil end
  local code, status = outcome.code, outcome.status
  if code == "ECANCELED" then return nil end           -- the user asked to stop
  if code then
    if SKEW_CODES[code] then return "skew" end
    if SKEW_IF_EXPIRED[code] and type(outcome.message) == "string"
        and str_find(outcome.message:lower(), "signature expired", 1, true) then
      return "skew"
    end
    if THROTTLING_CODES[code] then return "throttling" end
    if TRANSIENT_CODES[code] then return "transient" end
  end
  if status == 429 then return "throttling" end
  if status and TRANSIENT_STATUS[status] then return "transient" end
  return nil
end


--- Is the outcome a timeout (retry costs more quota)?
local function is_timeout(ctx)
  return ctx and (ctx.timeout or ctx.code == "ETIMEDOUT") or false
end


--- Backoff delay before attempt `attempt + 1`, attempt being 1-based.
function _M:backoff(attempt)
  return self._rand() * min(self.base * 2 ^ (attempt - 1), self.max_backoff)
end


--- Decide about a failed attempt.
-- attempt: 1-based number of the attempt that just failed.
-- class:   the result of :classify().
-- ctx:     per-call table (optional but needed for quota refunds and the
--          one-shot skew retry); set ctx.timeout = true (or ctx.code =
--          "ETIMEDOUT") when the failure was a timeout.
-- Returns delay seconds (retry after waiting that long) or nil, reason.
function _M:decide(attempt, class, ctx)
  if type(attempt) ~= "number" then
    error("bad argument #1 to 'decide' (number expected, got " .. type(attempt) .. ")", 2)
  end
  ctx = ctx or {}
  if class == nil then return nil, "not retryable" end
  if class == "skew" then
    -- One re-signed retry with the corrected clock; no quota, no backoff.
    if ctx.skew_retried then return nil, "clock skew persists after correction" end
    ctx.skew_retried = true
    return 0
  end
  if attempt >= self.max_attempts then
    return nil, "max attempts reached (" .. self.max_attempts .. ")"
  end
  if self._quota then
    local cost = is_timeout(ctx) and _M.TIMEOUT_RETRY_COST or _M.RETRY_COST
    if cost > self._quota then
      return nil, "retry quota exhausted"
    end
    self._quota = self._quota - cost
    ctx.retry_cost = cost
  end
  ctx.retries = (ctx.retries or 0) + 1
  return self:backoff(attempt)
end


--- Report a successful call (2xx) so the retry quota is refunded:
-- 1 when it succeeded without retry, the last retry cost otherwise.
-- Accepts the per-call ctx (or nothing).
function _M:on_success(ctx)
  if not self._quota then return end
  local amount = (type(ctx) == "table" and ctx.retry_cost) or _M.NO_RETRY_INCREMENT
  self._quota = min(self._quota_max, self._quota + amount)
end


--- Remaining retry quota (nil when the quota is disabled).
function _M:quota()
  return self._quota
end


--- Adaptive mode: seconds to wait before sending (0 in other modes).
function _M:acquire()
  if self._limiter then return self._limiter:acquire(1) end
  return 0
end


--- Adaptive mode: feed every response's classification (no-op otherwise).
function _M:record(class)
  if self._limiter then self._limiter:update(class == "throttling") end
end


--- The adaptive rate limiter (nil in other modes).
function _M:rate_limiter()
  return self._limiter
end


--- Clock skew from a response Date header:
-- server time - local time, in seconds (nil if the date is unparsable).
function _M.skew_from_date_header(date_string, local_now)
  local server = time.parse_http_date(date_string) or time.parse_iso8601(date_string)
  if not server then return nil end
  return server - (local_now or os.time())
end


return _M
