-- luabatch.poller: watch many AWS Batch jobs with one poller (the policy
-- loop over the C mechanics of core.poller, src/lb_poll.c).
--
--   local poller = require "luabatch.poller"
--   local w = poller.new{
--     batch = client,    -- :describe_jobs(ids) -> { jobs = {JobDetail...} } | nil, msg, code
--     on_change = function(summary) end,   -- once per state change
--     on_cycle = function(c) end,          -- after each cycle: { at, active, calls, ids, errors }
--     clock = core.monotime, sleep = core.sleep, interrupted = core.interrupted,
--     intervals = { fast = 2, fast_growth = 1.25, fast_max = 10, running = 10,
--                   growth = 1.5, max = 60, jitter = 0.2, coalesce = 0.5 },
--     rate = 20, min_rate = 0.5, burst = 1, seed = n,   -- token bucket (shared)
--     max_errors = 10,   -- consecutive failed DescribeJobs calls before giving up
--     max_throttled = 300, -- seconds DescribeJobs may stay throttled (no answer) before giving up
--     max_missing = 10,  -- polls an id may be absent from the answer
--     max_sleep = 5 }    -- longest single sleep (cancellation latency)
--   w:watch(id [, meta [, delay]])  -- start watching (first poll after delay s, default 0)
--   w:unwatch(id)
--   w:cap(id, secs)              -- poll id at most secs apart (0: the intervals again)
--   w:step()                     -> calls made | nil, msg, code   (one cycle)
--   w:run_until(pred)            -> true | false (nothing left to watch)
--                                 | nil, msg, code ("ECANCELED", or the last
--                                   DescribeJobs error after max_errors, or
--                                   after max_throttled s of throttling)
--   w:wait(ids)                  -> { summary, ... } (same order) | nil, msg, code
--   w:take([cost])               -> true | nil, msg, "ECANCELED"   (token for
--                                   SubmitJob/TerminateJob; sleeps as needed)
--   w:throttled(), w:ok()        -- report a throttled / successful Batch call
--   w:summary(id), w:cancel(), w:canceled(), w:stats(), w:core(), w:close()
--
-- summary = { id, status, reason (statusReason), exit_code, log_stream,
--             previous (status before this change), meta, at (clock time of
--             the poll that saw it), job (the raw JobDetail, if any) };
-- status "MISSING" (terminal, synthetic) after max_missing polls in a row
-- without the id.  A cycle and its pacing: docs/design.md.

local batch = require "luabatch.batch"
local core = require "luabatch.core"
local log = require "luabatch.log"
local retry = require "luabatch.retry"

local _M = { _VERSION = "0.1.0" }
local mt = { __index = _M }

local type = type
local error = error
local pairs = pairs
local ipairs = ipairs
local tostring = tostring
local min = math.min
local THROTTLED = retry.THROTTLED
local FINAL = batch.FINAL
local MISSING = batch.MISSING


local function is_throttle(code)
  return code ~= nil and THROTTLED[code] or false
end

local function tbl(v) return type(v) == "table" and v or nil end

local function str(v) return type(v) == "string" and v ~= "" and v or nil end


-- status, reason, exit code, log stream of a JobDetail.
local function read_detail(job)
  local c = tbl(job.container)
  local exit, stream
  if c then
    exit = type(c.exitCode) == "number" and c.exitCode or nil
    stream = str(c.logStreamName)
  end
  local attempts = tbl(job.attempts)
  if attempts and #attempts > 0 then
    local ac = tbl(tbl(attempts[#attempts]) and attempts[#attempts].container)
    if ac then
      if exit == nil and type(ac.exitCode) == "number" then exit = ac.exitCode end
      if stream == nil then stream = str(ac.logStreamName) end
    end
  end
  return job.status, str(job.statusReason), exit, stream
end
_M.read_detail = read_detail


function _M.new(opts)
  if type(opts) ~= "table" then
    error("bad argument #1 to 'new' (table expected, got " .. type(opts) .. ")", 2)
  end
  local batch = opts.batch
  if type(batch) ~= "table" and type(batch) ~= "userdata" then
    error("bad argument #1 to 'new' (field 'batch': client expected)", 2)
  end
  for _, f in ipairs({ "on_change", "on_cycle", "clock", "sleep", "interrupted" }) do
    if opts[f] ~= nil and type(opts[f]) ~= "function" then
      error("bad argument #1 to 'new' (field '" .. f .. "': function expected)", 2)
    end
  end
  local iv = opts.intervals or {}
  if type(iv) ~= "table" then
    error("bad argument #1 to 'new' (field 'intervals': table expected)", 2)
  end
  local p, msg, code = core.poller({
    fast_interval = iv.fast, fast_growth = iv.fast_growth, fast_max = iv.fast_max,
    run_interval = iv.running, run_growth = iv.growth, max_interval = iv.max,
    jitter = iv.jitter, coalesce = iv.coalesce,
    rate = opts.rate, min_rate = opts.min_rate, burst = opts.burst,
    throttle_window = opts.throttle_window, recover_factor = opts.recover_factor,
    recover_window = opts.recover_window, recover_count = opts.recover_count,
    seed = opts.seed,
  })
  if not p then return nil, msg, code end
  return setmetatable({
    _p = p,
    _batch = batch,
    _on_change = opts.on_change,
    _on_cycle = opts.on_cycle,
    _clock = opts.clock or core.monotime,
    _sleep = opts.sleep or core.sleep,
    _interrupted = opts.interrupted or core.interrupted,
    _max_errors = opts.max_errors or 10,
    _max_throttled = opts.max_throttled or 300,
    _throttled_since = nil, -- clock time of the first throttle since the last answer
    _max_missing = opts.max_missing or 10,
    _max_sleep = opts.max_sleep or 5,
    _status = {},         -- id -> last reported status
    _missing = {},        -- id -> consecutive polls without an answer
    _final = {},          -- id -> summary of a job given up as MISSING
    _errors = 0,          -- consecutive failed calls
    _canceled = false,
    _st = { cycles = 0, calls = 0, ids = 0, errors = 0, throttled = 0, missing = 0,
            last_cycle_calls = 0, max_cycle_calls = 0, slept = 0 },
  }, mt)
end


function _M:core() return self._p end


-- watch(id [, meta [, delay]]): first poll after `delay` seconds (default
-- 0).  A job just submitted is SUBMITTED for a while: delaying its first
-- poll by the fast interval lets the ids of a burst of submits share one
-- DescribeJobs call instead of one call per submit.
function _M:watch(id, meta, delay)
  if type(id) ~= "string" or id == "" then
    error("bad argument #1 to 'watch' (job id expected, got " .. type(id) .. ")", 2)
  end
  if delay ~= nil and (type(delay) ~= "number" or delay < 0) then
    error("bad argument #3 to 'watch' (delay in seconds expected)", 2)
  end
  self._final[id] = nil
  return self._p:add(id, meta, self._clock() + (delay or 0))
end


function _M:unwatch(id)
  self._status[id], self._missing[id], self._final[id] = nil, nil, nil
  return self._p:remove(id)
end


-- cap(id, secs): the longest interval between two polls of id, in every
-- phase (0 removes it; the interval then grows from where it is).  For a
-- job whose end others wait on (a slot under max-parallel).
function _M:cap(id, secs)
  if type(secs) ~= "number" or secs < 0 then
    error("bad argument #2 to 'cap' (seconds >= 0 expected)", 2)
  end
  return self._p:cap(id, secs, self._clock())
end


function _M:summary(id)
  local f = self._final[id]
  if f then return f end
  local s = self._p:get(id)
  if not s or not s.status then return s end
  return { id = id, status = s.status, reason = s.reason, exit_code = s.exit_code,
           log_stream = s.log_stream, meta = s.meta, at = s.changed_at }
end


function _M:cancel()
  self._canceled = true
  self._p:cancel()
end


function _M:canceled() return self._canceled end


local function stopped(self)
  if self._canceled then return "poller: cancelled" end
  if self._interrupted() then return "poller: interrupted" end
  return nil
end


-- Sleep s seconds (in slices of max_sleep, checking for cancellation).
local function nap(self, s)
  while s > 0 do
    local why = stopped(self)
    if why then return nil, why, "ECANCELED" end
    local d = min(s, self._max_sleep)
    local ok, msg, code = self._sleep(d)
    if ok == nil and code == "ECANCELED" then return nil, "poller: interrupted", "ECANCELED" end
    if ok == nil then return nil, msg, code end
    self._st.slept = self._st.slept + d
    s = s - d
  end
  return true
end


function _M:take(cost)
  cost = cost or 1
  while true do
    local why = stopped(self)
    if why then return nil, why, "ECANCELED" end
    local wait = self._p:acquire(cost, self._clock())
    if wait <= 0 then return true end
    local ok, msg, code = nap(self, wait)
    if not ok then return nil, msg, code end
  end
end


function _M:throttled() return self._p:throttled(self._clock()) end


function _M:ok() return self._p:ok(self._clock()) end


local function report(self, id, job, now)
  local prev = self._status[id]
  local s = self._p:get(id)
  self._status[id] = s.status
  if self._on_change then
    self._on_change({ id = id, status = s.status, reason = s.reason, exit_code = s.exit_code,
                      log_stream = s.log_stream, previous = prev, meta = s.meta, at = now,
                      job = job })
  end
end


-- Apply one DescribeJobs answer for the ids asked.
local function apply(self, ids, res, now)
  local p, seen = self._p, {}
  local jobs = tbl(res) and tbl(res.jobs) or {}
  for _, job in ipairs(jobs) do
    local id = type(job) == "table" and job.jobId
    if type(id) == "string" and type(job.status) == "string" and not seen[id] then
      seen[id] = true
      local status, reason, exit, stream = read_detail(job)
      local changed = p:update(id, status, reason, exit, stream, now)
      self._missing[id] = nil
      if changed then report(self, id, job, now) end
    end
  end
  for _, id in ipairs(ids) do
    if not seen[id] then
      local n = (self._missing[id] or 0) + 1
      self._missing[id] = n
      if n >= self._max_missing then
        self._st.missing = self._st.missing + 1
        local s = p:get(id)
        local f = { id = id, status = MISSING, previous = self._status[id], meta = s and s.meta,
                    reason = "not returned by DescribeJobs " .. n .. " times", at = now }
        p:remove(id)
        self._status[id], self._missing[id] = nil, nil
        self._final[id] = f
        log.warn("poller: job %s not found by DescribeJobs, giving up on it", id)
        if self._on_change then self._on_change(f) end
      end
    end
  end
end


-- One cycle: poll every due job, 100 ids per DescribeJobs call.
function _M:step()
  local p, st = self._p, self._st
  local now = self._clock()
  local info = { at = now, active = p:pending(), calls = 0, ids = 0, errors = 0 }
  local fail_msg, fail_code
  while true do
    local why = stopped(self)
    if why then fail_msg, fail_code = why, "ECANCELED"; break end
    local ids = p:due(now)
    if #ids == 0 then break end
    local ok, msg, code = self:take(1)
    if not ok then
      for _, id in ipairs(ids) do p:reschedule(id, now) end
      fail_msg, fail_code = msg, code
      break
    end
    info.calls, info.ids = info.calls + 1, info.ids + #ids
    local res
    res, msg, code = self._batch:describe_jobs(ids)
    now = self._clock()
    if res then
      self._errors = 0
      self._throttled_since = nil
      p:ok(now)
      apply(self, ids, res, now)
    else
      info.errors = info.errors + 1
      st.errors = st.errors + 1
      if code == "ECANCELED" then
        for _, id in ipairs(ids) do p:reschedule(id, now) end
        fail_msg, fail_code = msg, code
        break
      elseif is_throttle(code) then
        st.throttled = st.throttled + 1
        local rate = p:throttled(now)
        log.debug("poller: DescribeJobs throttled (%s), rate now %.2f/s", tostring(code), rate)
        for _, id in ipairs(ids) do p:reschedule(id, now) end
        self._throttled_since = self._throttled_since or now
        local for_s = now - self._throttled_since
        if for_s >= self._max_throttled then
          fail_msg = ("DescribeJobs throttled (%s) for %d s without an answer; giving up "
            .. "(policy.max_throttled = %g s): %s"):format(tostring(code), math.floor(for_s),
            self._max_throttled, tostring(msg))
          fail_code = code
        end
        break             -- the token bucket paces the retry
      else
        self._errors = self._errors + 1
        log.warn("poller: DescribeJobs of %d jobs failed: %s", #ids, tostring(msg))
        if self._errors >= self._max_errors then
          fail_msg, fail_code = msg, code
          break
        end
      end
    end
  end
  if info.calls > 0 then
    st.cycles = st.cycles + 1
    st.calls = st.calls + info.calls
    st.ids = st.ids + info.ids
    st.last_cycle_calls = info.calls
    if info.calls > st.max_cycle_calls then st.max_cycle_calls = info.calls end
    if self._on_cycle then self._on_cycle(info) end
  end
  if fail_code then return nil, fail_msg, fail_code end
  return info.calls
end


-- Cycle until pred(self) is true (default: nothing left to poll).
function _M:run_until(pred)
  if pred ~= nil and type(pred) ~= "function" then
    error("bad argument #1 to 'run_until' (function expected, got " .. type(pred) .. ")", 2)
  end
  while true do
    local calls, msg, code = self:step()
    if not calls then return nil, msg, code end
    if pred and pred(self) then return true end
    local at = self._p:next_wakeup()
    if not at then
      if self._canceled then return nil, "poller: cancelled", "ECANCELED" end
      return pred == nil
    end
    local d = at - self._clock()
    if d > 0 then
      local ok, m, c = nap(self, d)
      if not ok then return nil, m, c end
    end
  end
end


function _M:wait(ids)
  if type(ids) ~= "table" then
    error("bad argument #1 to 'wait' (table of job ids expected, got " .. type(ids) .. ")", 2)
  end
  for _, id in ipairs(ids) do
    if not self._final[id] and not self._p:get(id) then self:watch(id) end
  end
  local function done()
    for _, id in ipairs(ids) do
      local s = self._final[id] or self._p:get(id)
      if not (s and FINAL[s.status]) then return false end
    end
    return true
  end
  if not done() then
    local ok, msg, code = self:run_until(done)
    if not ok then return nil, msg or "poller: nothing left to watch", code or "EINVAL" end
  end
  local out = {}
  for i, id in ipairs(ids) do out[i] = self:summary(id) end
  return out
end


function _M:stats()
  local s = self._p:stats()
  for k, v in pairs(self._st) do s[k] = v end
  s.calls_per_cycle = s.cycles > 0 and s.calls / s.cycles or 0
  return s
end


function _M:close()
  self._p:close()
end


return _M
