-- luabatch.s3.stream: GetObject streamed into a sink, resumed where it
-- stopped.  HeadObject first (size, ETag); then GETs with If-Match on that
-- ETag, and after a connection reset, a timeout, a 5xx or a throttle --
-- before the first byte or in the middle -- the next GET asks for
-- Range: bytes=<bytes written>-, so the sink gets every byte once, in order.
-- Gives up after max_attempts failures in a row with no byte of progress.
--
--   local stream = require "luabatch.s3.stream"
--   local res, msg, code = stream.get(s3, "b", "k", function(chunk) return io.stdout:write(chunk) end)
--
-- write(chunk) -> truthy | nil, msg, errno: a failure stops the transfer at
-- once: nil, "<op> s3://b/k: write <sink_name>: msg (errno N)", "EWRITE".
-- opts: max_attempts (5), sink_name ("the output"), sleep (function(s)),
-- backoff (function(failures) -> seconds; default jittered, 20 s cap).
-- res = { bytes, etag, resumed = number of ranged resumptions }.
-- An object changed mid-stream is refused (412: code "PreconditionFailed").

local retry_mod = require "luabatch.retry"
local url = require "luabatch.s3.url"

local _M = { _VERSION = "0.1.0" }

local tostring = tostring
local tonumber = tonumber
local floor = math.floor

-- The outcome luabatch.retry classifies, from get_object's failure.
local function outcome(msg, code, resp)
  local status = resp and resp.status or tonumber(tostring(code):match("^HTTP_(%d+)$"))
  return { status = status, code = code, message = msg }
end

local function default_sleep(s3, s)
  if s <= 0 then return true end
  if s3._sleep then return s3._sleep(s) end
  return s3:core().sleep(s)
end

function _M.get(s3, bucket, key, write, opts)
  opts = opts or {}
  local res = url.resource(bucket, key)
  local max_attempts = opts.max_attempts or 5
  local policy = retry_mod.new({ max_attempts = max_attempts, quota = false })
  local backoff = opts.backoff or function(n) return policy:backoff(n) end
  local sleep = opts.sleep or function(s) return default_sleep(s3, s) end
  local head, msg, code = s3:head_object(bucket, key)
  if not head then                     -- a HEAD's error has no body: S3's words come with a GET
    local _, gmsg, gcode = s3:get_object(bucket, key, { range = "bytes=0-0" })
    if gcode then return nil, gmsg, gcode end
    return nil, msg, code
  end
  local size, etag = head.size, head.etag
  local written, failures, resumed = 0, 0, 0
  local werr
  local function on_data(chunk)
    local ok, e, en = write(chunk)
    if not ok then
      werr = "write " .. (opts.sink_name or "the output") .. ": " .. tostring(e)
        .. (en and (" (errno " .. tostring(en) .. ")") or "")
      return false
    end
    written = written + #chunk
    return true
  end
  while true do
    local before = written
    local range = written > 0 and { written } or nil
    if size and written >= size then break end
    local body, m, c, resp = s3:get_object(bucket, key, { range = range, if_match = etag, on_data = on_data })
    if werr then return nil, "GetObject " .. res .. ": " .. werr, "EWRITE" end
    if body then
      if not size or written >= size then break end
      m, c = "answer ended after " .. written .. " of " .. size .. " bytes", "EIO"
      m = "GetObject " .. res .. ": " .. m
    end
    if c == "PreconditionFailed" or (resp and resp.status == 412) then
      return nil, "GetObject " .. res .. ": the object changed during the download (ETag " .. tostring(etag)
        .. " no longer matches); " .. written .. " bytes were written", "PreconditionFailed"
    end
    if written > before then failures = 0 end
    failures = failures + 1
    local class = policy:classify(outcome(m, c, resp))
    if not class or class == "skew" or failures >= max_attempts then
      if written > 0 then
        m = tostring(m) .. " (" .. written .. " of " .. tostring(size) .. " bytes written, "
          .. resumed .. " resumptions)"
      end
      return nil, m, c
    end
    local ok, _, sc = sleep(backoff(failures))
    if ok == nil and sc == "ECANCELED" then return nil, "GetObject " .. res .. ": interrupted", "ECANCELED" end
    if written > 0 then resumed = resumed + 1 end
  end
  return { bytes = written, etag = etag, resumed = resumed, size = floor(size or written) }
end

return _M
