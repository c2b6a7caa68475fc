-- luabatch.runner.aws_batch.reason: the real reason a Batch job failed, as
-- text a user can act on.
--
--   local reason = require "luabatch.runner.aws_batch.reason"
--   local facts = reason.facts(job_detail)
--   -- { status, status_reason, attempt_reason, container_reason, exit_code,
--   --   log_group, log_stream, kind }
--   local lines = reason.log_tail(logs, facts.log_group, facts.log_stream, 20)
--   local err = reason.error(facts, lines [, ctx])
--   -- { name = "AWSBatchJobError", message = "..." }
--   record.info.aws_batch = reason.info(facts, batch_job_id, key)
--
-- kind classifies the failure: "image" (CannotPullContainerError, ...),
-- "oom", "timeout", "host" (EC2 host / Spot task lost), "misconfiguration"
-- (MISCONFIGURATION:*), "terminated" (TerminateJob / CancelJob), "exit"
-- (the command exited non-zero), "missing" (DescribeJobs lost the job) or
-- "unknown".

local batch_mod = require "luabatch.batch"

local _M = { _VERSION = "0.1.0" }

local type = type
local ipairs = ipairs
local tostring = tostring
local str_find = string.find
local str_format = string.format
local str_sub = string.sub
local str_byte = string.byte
local concat = table.concat

_M.ERROR_NAME = "AWSBatchJobError"

local HINTS = {
  image = "the image could not be pulled or started: check with.image and the execution role / registry access",
  oom = "the container ran out of memory: raise with.memory",
  timeout = "the attempt ran longer than with.timeout",
  host = "the EC2 host or Spot task was lost (retried by the retry strategy when attempts remain)",
  misconfiguration = "the job can never be scheduled on this queue: check vCPU/memory/GPU against the "
    .. "compute environment and the service role",
  terminated = "the job was terminated",
}

local function str(v) return type(v) == "string" and v ~= "" and v or nil end

-- An exit code as an integer (JSON decoders may give 137.0).
local function int(v)
  if type(v) ~= "number" or v ~= math.floor(v) then return nil end
  local ti = math.tointeger
  return ti and ti(v) or v
end
_M.int = int
local function tbl(v) return type(v) == "table" and v or nil end

--- facts(job) -> table (see header); job is a DescribeJobs JobDetail.
function _M.facts(job)
  job = tbl(job) or {}
  local f = { status = job.status, status_reason = str(job.statusReason), id = job.jobId }
  local c = tbl(job.container)
  if c then
    f.container_reason = str(c.reason)
    f.exit_code = int(c.exitCode)
    f.log_stream = str(c.logStreamName)
  end
  local atts = tbl(job.attempts)
  local last = atts and tbl(atts[#atts])
  if last then
    f.attempt_reason = str(last.statusReason)
    f.attempts = #atts
    local ac = tbl(last.container)
    if ac then
      f.container_reason = f.container_reason or str(ac.reason)
      if f.exit_code == nil then f.exit_code = int(ac.exitCode) end
      f.log_stream = str(ac.logStreamName) or f.log_stream
    end
  end
  if f.log_stream then
    local probe = { container = { logStreamName = f.log_stream,
                                  logConfiguration = c and c.logConfiguration or nil } }
    f.log_group = batch_mod.log_location(probe)
  end
  f.log_group = f.log_group or batch_mod.DEFAULT_LOG_GROUP
  f.kind = _M.classify(f)
  return f
end

--- classify(facts) -> kind
function _M.classify(f)
  local texts = { f.status_reason or "", f.attempt_reason or "", f.container_reason or "" }
  local function any(pat)
    for _, t in ipairs(texts) do if str_find(t, pat) then return true end end
    return false
  end
  if f.status == "MISSING" then return "missing" end
  if any("^MISCONFIGURATION:") then return "misconfiguration" end
  if any("CannotPullContainerError") or any("CannotInspectContainerError")
      or any("ResourceInitializationError") or any("CannotStartContainerError") then
    return "image"
  end
  if any("OutOfMemory") then return "oom" end
  if any("Job attempt duration exceeded timeout") then return "timeout" end
  if any("^Host EC2") or any("Spot Task was interrupted") then return "host" end
  if f.terminated or any("^luabatch:") then return "terminated" end
  if f.exit_code ~= nil and f.exit_code ~= 0 then return "exit" end
  return "unknown"
end

-- What a failure report keeps of a log: at most TAIL_MAX_LINES lines, each
-- cut to LINE_MAX bytes (at a UTF-8 boundary) with a note of the rest.
_M.TAIL_MAX_LINES = 1000
_M.LINE_MAX = 8192

local function clip(s)
  local max = _M.LINE_MAX
  if #s <= max then return s end
  local cut = max
  while cut > 0 and (str_byte(s, cut + 1) or 0) >= 0x80 and str_byte(s, cut + 1) < 0xC0 do cut = cut - 1 end
  return str_sub(s, 1, cut) .. str_format(" [luabatch: %d more bytes cut]", #s - cut)
end

--- log_tail(logs, group, stream, n) -> list of the last n lines (n at most
-- TAIL_MAX_LINES, lines clipped), note | nil when the stream cannot be
-- read (note says why).
function _M.log_tail(logs, group, stream, n)
  if not logs or not stream or (n or 0) <= 0 then return {} end
  if n > _M.TAIL_MAX_LINES then n = _M.TAIL_MAX_LINES end
  -- one call: the newest n events (startFromHead = false reads from the end)
  local ans, msg = logs:get_log_events(group, stream, { start_from_head = false, limit = n })
  if not ans then
    return {}, "log stream " .. group .. " " .. stream .. ": " .. tostring(msg)
  end
  local out = {}
  local evs = ans.events or {}
  local first = #evs > n and #evs - n + 1 or 1
  for i = first, #evs do out[#out + 1] = clip(tostring(evs[i].message or "")) end
  return out
end

--- message(facts, lines [, ctx]) -> text
-- ctx.job_id, ctx.strategy_id, ctx.batch_job_id, ctx.job_name, ctx.note
function _M.message(f, lines, ctx)
  ctx = ctx or {}
  local head = str_format("AWS Batch job %s%s %s", tostring(ctx.job_name or f.id or "?"),
    (ctx.batch_job_id or f.id) and (" (" .. tostring(ctx.batch_job_id or f.id) .. ")") or "",
    f.status == "MISSING" and "disappeared" or "failed")
  local parts = { head }
  if f.exit_code ~= nil then parts[#parts + 1] = str_format("exit code %d", f.exit_code) end
  if f.status_reason then parts[#parts + 1] = "reason: " .. f.status_reason end
  if f.attempt_reason and f.attempt_reason ~= f.status_reason then
    parts[#parts + 1] = "attempt: " .. f.attempt_reason
  end
  if f.container_reason then parts[#parts + 1] = "container: " .. f.container_reason end
  if f.attempts and f.attempts > 1 then parts[#parts + 1] = "after " .. f.attempts .. " attempts" end
  local text = concat(parts, "; ")
  if HINTS[f.kind] then text = text .. " (" .. HINTS[f.kind] .. ")" end
  if ctx.note then text = text .. "\n" .. ctx.note end
  if lines and #lines > 0 then
    text = text .. str_format("\nlast %d log line%s (%s %s):\n  %s", #lines, #lines == 1 and "" or "s",
      tostring(f.log_group), tostring(f.log_stream), concat(lines, "\n  "))
  elseif f.log_stream == nil and f.kind ~= "terminated" then
    text = text .. "\n(no log stream: the container never ran)"
  end
  return text
end

--- info(facts, batch_job_id, key) -> the Batch side of a strategy record
-- (record.info.aws_batch): { job_id, key (the journal's), log_group,
-- log_stream, exit_code, kind, status_reason, attempt_reason,
-- container_reason } -- what failure reports name the cause and the log by.
function _M.info(f, id, key)
  return { job_id = id, key = key, log_group = f.log_group, log_stream = f.log_stream, exit_code = f.exit_code,
    kind = f.kind, status_reason = f.status_reason, attempt_reason = f.attempt_reason,
    container_reason = f.container_reason }
end

--- error(facts, lines [, ctx]) -> { name = "AWSBatchJobError", message }
function _M.error(f, lines, ctx)
  return { name = _M.ERROR_NAME, message = _M.message(f, lines, ctx) }
end

return _M
