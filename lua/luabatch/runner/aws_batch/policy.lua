-- luabatch.runner.aws_batch.policy: the rules of the AWS Batch provider in
-- one readable table (naming, retry, timeouts, cleanup, failure report,
-- polling).  A user overrides any field with `luabatch run --policy FILE.lua`
-- (FILE returns a table; it reaches the runner as runner_opts.policy):
--
--   -- my-policy.lua
--   return {
--     cleanup = "on_success",              -- keep everything of a failed job
--     log_lines = 50,
--     job_name = function(c) return "team-x-" .. c.job_id .. "-" .. c.strategy_id end,
--   }
--
--   local policy = require "luabatch.runner.aws_batch.policy"
--   local p = policy.merge(user_table)     -- defaults overlaid by the user's fields
--   p.job_name{ run_id =, job_id =, strategy_id =, attempt =, workflow = } -> name
--   p.jobdef_name{ image =, platform = } -> name
--   p.retry_strategy(with) -> SubmitJob retryStrategy
--
-- Names are always passed through policy.sanitize afterwards (<= 128
-- characters of [A-Za-z0-9_-], the first alphanumeric): a user function
-- cannot produce a name Batch refuses.

local core = require "luabatch.core"

local _M = { _VERSION = "0.1.0" }

local type = type
local pairs = pairs
local ipairs = ipairs
local tonumber = tonumber
local floor = math.floor
local tostring = tostring
local str_gsub = string.gsub
local str_sub = string.sub
local str_find = string.find

_M.MAX_NAME = 128

--- sanitize(s [, max]) -> a valid Batch name (job or job definition).
-- Characters outside [A-Za-z0-9_-] become "-", a non-alphanumeric first
-- character gets an "x" in front; when anything changed or the name is too
-- long, an 8-hex digest of the original is appended so two different
-- inputs never map to the same name.
function _M.sanitize(s, max)
  max = max or _M.MAX_NAME
  s = tostring(s)
  local out = str_gsub(s, "[^A-Za-z0-9_-]", "-")
  if not str_find(out, "^[A-Za-z0-9]") then out = "x" .. out end
  if out == s and #out <= max then return out end
  local digest = str_sub(core.sha256(s), 1, 8)
  if #out > max - 9 then out = str_sub(out, 1, max - 9) end
  return out .. "-" .. digest
end


--- The defaults.
_M.defaults = {
  -- Batch job name, unique per journal key (run, job, strategy, attempt).
  job_name = function(c)
    return "lb-" .. c.run_id .. "-" .. c.job_id .. "-" .. c.strategy_id .. "-" .. tostring(c.attempt)
  end,
  -- Job definition name: one per image (the content hash tells revisions apart).
  jobdef_name = function(c)
    local name = "luabatch-" .. c.image
    if c.platform == "FARGATE" then name = name .. "-fargate" end
    return name
  end,
  -- Batch-level retries (attempts of the same job): spot/host loss is
  -- retried, everything else ends the job (without the catch-all EXIT rule
  -- Batch retries every unmatched failure).
  retry_rules = {
    { onStatusReason = "Host EC2*", action = "RETRY" },
    { onReason = "*", action = "EXIT" },
  },
  retry_strategy = nil,         -- function(with, policy) -> retryStrategy (set below)
  image = "luabatch:latest",
  vcpus = 1,
  memory = 2048,                -- MiB
  platform = "EC2",
  s3_prefix = "luabatch/runs",
  log_group = nil,              -- nil: Batch's default /aws/batch/job
  timeout = nil,                -- default attempt timeout (s); with.timeout wins
  min_timeout = 60,             -- Batch refuses attemptDurationSeconds < 60
  deadline_margin = 600,        -- client deadline = timeout * attempts + margin
  cleanup = "always",           -- "always" | "on_success" | "never"
  keep_on_failure = false,      -- with.keep_on_failure overrides
  log_lines = 20,               -- log lines a failure report shows
  terminate_reason = "luabatch: cancelled by user",
  fail_fast_reason = "luabatch: fail-fast, another strategy of the job failed",
  deadline_reason = "luabatch: client deadline exceeded",
  -- poller intervals (seconds; see luabatch.poller)
  -- (make bench: growing x1.5 from 10 s made a 5-24 s job's end seen up to
  -- 27 s late; x1.1 to 30 s keeps short jobs near 10 s and still cuts
  -- calls 3x for long ones.  A new job's first poll waits one `fast`.)
  intervals = { fast = 2, fast_growth = 1.25, fast_max = 10, running = 10, growth = 1.1, max = 30,
                jitter = 0.2, coalesce = 0.5 },
  -- while strategies of a job wait for a slot (max-parallel), its live
  -- Batch jobs are polled at most this far apart (seconds; nil/0: the
  -- intervals above), so a freed slot is refilled about this soon after
  -- the job ends (make bench: 500 live jobs cost ~5 DescribeJobs per 2 s)
  slot_poll = 2,
  rate = 20,                    -- token bucket: Batch calls per second (shared)
  max_throttled = 300,          -- seconds DescribeJobs may answer only 429 before the run gives up
  wait_slice = 1,               -- longest sleep of a waiting strategy (cancellation latency)
  follow_interval = nil,        -- seconds between log tails (nil: the poll cadence, >= 2)
  runnable_hint = 60,           -- seconds RUNNABLE before the run says why a job may wait (0: never)
  array = false,                -- with.array overrides
}

function _M.defaults.retry_strategy(with, p)
  local n = tonumber(with.retry_attempts) or 1
  if n < 1 then n = 1 end
  if n > 10 then n = 10 end
  local rules = {}
  for i, r in ipairs(p.retry_rules) do
    local c = {}
    for k, v in pairs(r) do c[k] = v end
    rules[i] = c
  end
  return { attempts = floor(n), evaluateOnExit = rules }
end


--- merge([user]) -> policy: the defaults overlaid by the user's fields
-- (tables are replaced as a whole, except `intervals`, merged by key).
function _M.merge(user)
  if user ~= nil and type(user) ~= "table" then
    error("bad argument #1 to 'merge' (policy table expected, got " .. type(user) .. ")", 2)
  end
  local p = {}
  for k, v in pairs(_M.defaults) do p[k] = v end
  local iv = {}
  for k, v in pairs(_M.defaults.intervals) do iv[k] = v end
  p.intervals = iv
  for k, v in pairs(user or {}) do
    if k == "intervals" and type(v) == "table" then
      for ik, iv2 in pairs(v) do iv[ik] = iv2 end
    else
      p[k] = v
    end
  end
  if p.cleanup ~= "always" and p.cleanup ~= "on_success" and p.cleanup ~= "never" then
    error("bad argument #1 to 'merge' (policy.cleanup must be always, on_success or never, got "
      .. tostring(p.cleanup) .. ")", 2)
  end
  return p
end


--- The Batch job name of a journal key, valid and unique.
function _M.job_name(p, c)
  return _M.sanitize(p.job_name(c))
end


--- The job definition name for an image/platform, valid.
function _M.jobdef_name(p, c)
  return _M.sanitize(p.jobdef_name(c))
end


--- Whether the run's objects are deleted after a job ended with `status`.
function _M.should_cleanup(p, status, keep_on_failure)
  if p.cleanup == "never" then return false end
  local ok = status == "SUCCESS" or status == "SKIP"
  if p.cleanup == "on_success" then return ok end
  if not ok and keep_on_failure then return false end
  return true
end


--- deadline_after(p, timeout, attempts) -> seconds from a SubmitJob to the
-- client deadline (timeout x attempts + p.deadline_margin) | nil (no timeout)
function _M.deadline_after(p, timeout, attempts)
  timeout = tonumber(timeout)
  if not timeout then return nil end
  return timeout * (tonumber(attempts) or 1) + (p.deadline_margin or 600)
end

return _M
