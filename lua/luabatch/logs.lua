-- luabatch.logs: the CloudWatch Logs reads a Batch run needs (json 1.1,
-- 2014-03-28): GetLogEvents with forward tokens, FilterLogEvents,
-- DescribeLogStreams.
--
--   local logs = require("luabatch.logs").new({ region = "eu-west-1" })
--   -- a finished job's whole log
--   for ev, msg, code in logs:events("/aws/batch/job", stream) do
--     if not ev then error(msg) end
--     io.write(ev.message, "\n")
--   end
--   -- a running job's log, a bit more at every poll
--   local t = logs:tail("/aws/batch/job", stream)
--   local evs = assert(t:poll())      -- the events written since the last poll
--   save(t.next_token)                -- resume later: logs:tail(g, s, { next_token = tok })
--
-- GetLogEvents pages may be empty without being the end: the end of a
-- stream is reached when the service answers the forward token it was
-- sent.  A group given as an ARN ("arn:aws:logs:...") is sent as
-- logGroupIdentifier, else as logGroupName.  Every failure is nil, msg,
-- code with the service's error code ("ResourceNotFoundException",
-- "InvalidParameterException", "ThrottlingException",
-- "ServiceUnavailableException"), "HTTP_<n>" or a transport code; messages
-- name the operation and the group/stream.

local client = require "luabatch.aws.client"

local _M = { _VERSION = "0.1.0" }
local mt = { __index = _M }
local tail_mt = {}
tail_mt.__index = tail_mt

local type = type
local tostring = tostring
local setmetatable = setmetatable
local require = require
local str_sub = string.sub

local TARGET_PREFIX = "Logs_20140328."

--- Most pages one events() / tail:poll() reads before returning (a busy
-- stream read from its head may never "end").
_M.MAX_PAGES = 1000
--- What one tail:poll() keeps before it returns (the next poll goes on from
-- there): events, and bytes of their messages.
_M.MAX_POLL_EVENTS = 10000
_M.MAX_POLL_BYTES = 8 * 1024 * 1024


---------------------------------------------------------------------------
-- Construction
---------------------------------------------------------------------------

--- logs.new([opts]) -> client
-- opts.config, opts.credentials, opts.transport, opts.region, opts.endpoint,
-- opts.retry, opts.core, opts.sleep, opts.timeout, opts.connect_timeout,
-- opts.read_timeout: as luabatch.batch.new (service "logs").
function _M.new(opts)
  return setmetatable({ _opts = client.options(opts) }, mt)
end


--- The underlying luabatch.request client (created on first use).
function _M:client()
  local c = self._client
  if c then return c end
  c = client.for_service(self._opts, "logs", { protocol = "json", json_version = "1.1" })
  self._client = c
  return c
end


---------------------------------------------------------------------------
-- Helpers
---------------------------------------------------------------------------

local function argerror(n, fname, msg)
  error("bad argument #" .. n .. " to '" .. fname .. "' (" .. msg .. ")", 3)
end


local function check_string(v, n, fname, what)
  if type(v) ~= "string" or v == "" then
    argerror(n, fname, what .. " expected, got "
      .. (type(v) == "string" and "an empty string" or type(v)))
  end
end


local function check_opts(v, n, fname)
  if v ~= nil and type(v) ~= "table" then
    argerror(n, fname, "options table expected, got " .. type(v))
  end
  return v or {}
end


local function set_group(body, group)
  if str_sub(group, 1, 4) == "arn:" then
    body.logGroupIdentifier = group
  else
    body.logGroupName = group
  end
  return body
end


-- One json-1.1 call: answer | nil, msg, code.
local function call(self, op, body, resource)
  local resp, msg, code = self:client():send({
    method = "POST", path = "/", target = TARGET_PREFIX .. op, json = body,
    operation = op, resource = resource,
  })
  if not resp then return nil, msg, code end
  return resp.json
end


---------------------------------------------------------------------------
-- GetLogEvents
---------------------------------------------------------------------------

local function events_body(group, stream, opts)
  local body = set_group({ logStreamName = stream }, group)
  -- startFromHead defaults to true here (the API's default is false, which
  -- reads backwards from the tail and must be true with a forward token).
  if opts.start_from_head == false then body.startFromHead = false else body.startFromHead = true end
  body.nextToken = opts.next_token
  body.limit = opts.limit
  body.startTime = opts.start_time
  body.endTime = opts.end_time
  return body
end


--- get_log_events(group, stream [, opts]) -> answer | nil, msg, code: one
-- GetLogEvents call.  opts.start_from_head (default true), opts.next_token,
-- opts.limit (1..10000), opts.start_time, opts.end_time (ms since the epoch).
-- answer: { events = { {timestamp, message, ingestionTime}, ... },
--           nextForwardToken, nextBackwardToken }.
function _M:get_log_events(group, stream, opts)
  check_string(group, 1, "get_log_events", "log group name or ARN")
  check_string(stream, 2, "get_log_events", "log stream name")
  opts = check_opts(opts, 3, "get_log_events")
  local ans, msg, code = call(self, "GetLogEvents", events_body(group, stream, opts),
    "log stream " .. group .. " " .. stream)
  if not ans then return nil, msg, code end
  if type(ans.events) ~= "table" then ans.events = {} end
  return ans
end


-- Read pages forward from body.nextToken until the service answers the
-- token it was sent (the end), max_pages calls, or on_page(events) (called
-- per non-empty page) returning true (enough); body.nextToken always holds
-- the token to resume from.  Returns true, reached_end | nil, msg, code.
local function drain(self, group, stream, body, max_pages, on_page)
  local res = "log stream " .. group .. " " .. stream
  for _ = 1, max_pages do
    local ans, msg, code = call(self, "GetLogEvents", body, res)
    if not ans then return nil, msg, code end
    local evs = type(ans.events) == "table" and ans.events or {}
    local enough = #evs > 0 and on_page(evs)
    local tok = ans.nextForwardToken
    -- tokens are never null on AWS; without one there is nothing to follow
    if type(tok) ~= "string" or tok == "" or tok == body.nextToken then return true, true end
    body.nextToken = tok
    if enough then return true, false end
  end
  return true, false
end


--- events(group, stream [, opts]) -> iterator over the events of a stream,
-- following nextForwardToken until the same token comes back (the end);
-- yields false, msg, code once on a failure.  opts as get_log_events, plus
-- opts.max_pages (default logs.MAX_PAGES: stop after that many calls).
function _M:events(group, stream, opts)
  check_string(group, 1, "events", "log group name or ARN")
  check_string(stream, 2, "events", "log stream name")
  opts = check_opts(opts, 3, "events")
  local body = events_body(group, stream, opts)
  body.startFromHead = true
  local max_pages = opts.max_pages or _M.MAX_PAGES
  local res = "log stream " .. group .. " " .. stream
  local buf, i = {}, 0
  local done = false
  local pages = 0
  return function()
    while true do
      i = i + 1
      if buf[i] ~= nil then return buf[i] end
      if done then return nil end
      if pages >= max_pages then done = true return nil end
      pages = pages + 1
      local ans, msg, code = call(self, "GetLogEvents", body, res)
      if not ans then
        done = true
        return false, msg, code
      end
      buf, i = type(ans.events) == "table" and ans.events or {}, 0
      local tok = ans.nextForwardToken
      if type(tok) ~= "string" or tok == "" or tok == body.nextToken then
        done = true
      else
        body.nextToken = tok
      end
    end
  end
end


--- tail(group, stream [, opts]) -> tailer: follows a (running) stream
-- across calls, remembering the forward token.
--   tailer:poll() -> events (list, maybe empty) | nil, msg, code
--     reads every page written since the previous poll (up to
--     opts.max_pages calls, MAX_POLL_EVENTS events or MAX_POLL_BYTES of
--     messages: the next poll reads on); a stream that does not exist yet
--     (ResourceNotFoundException: the job is not RUNNING) gives {} and
--     tailer.missing = true.
--   tailer.next_token   the forward token to resume from (persist it)
--   tailer.at_end       true when the last poll reached the current end
-- opts.next_token (resume), opts.limit, opts.start_time, opts.max_pages.
function _M:tail(group, stream, opts)
  check_string(group, 1, "tail", "log group name or ARN")
  check_string(stream, 2, "tail", "log stream name")
  opts = check_opts(opts, 3, "tail")
  return setmetatable({
    client = self,
    group = group,
    stream = stream,
    next_token = opts.next_token,
    limit = opts.limit,
    start_time = opts.start_time,
    max_pages = opts.max_pages or _M.MAX_PAGES,
    missing = false,
    at_end = false,
  }, tail_mt)
end


function tail_mt:poll()
  local body = events_body(self.group, self.stream, {
    next_token = self.next_token, limit = self.limit,
    start_time = self.next_token == nil and self.start_time or nil,
  })
  local out, bytes = {}, 0
  local ok, msg, code = drain(self.client, self.group, self.stream, body, self.max_pages, function(evs)
    for j = 1, #evs do
      out[#out + 1] = evs[j]
      bytes = bytes + #tostring(evs[j].message or "")
    end
    return #out >= _M.MAX_POLL_EVENTS or bytes >= _M.MAX_POLL_BYTES
  end)
  if not ok then
    if code == "ResourceNotFoundException" and #out == 0 then
      self.missing = true
      self.at_end = true
      return out
    end
    if #out == 0 then return nil, msg, code end
    -- keep the events already read (the token moved past them); the
    -- failure comes back on the next poll
  end
  self.missing = false
  self.next_token = body.nextToken
  self.at_end = ok and msg or false
  return out
end


---------------------------------------------------------------------------
-- FilterLogEvents
---------------------------------------------------------------------------

local function filter_body(group, opts)
  local body = set_group({}, group)
  body.logStreamNames = opts.stream_names
  body.logStreamNamePrefix = opts.stream_prefix
  body.startTime = opts.start_time
  body.endTime = opts.end_time
  body.filterPattern = opts.filter_pattern
  body.nextToken = opts.next_token
  body.limit = opts.limit
  return body
end


--- filter_log_events(group [, opts]) -> answer | nil, msg, code: one
-- FilterLogEvents call.  opts.stream_names (list) | opts.stream_prefix,
-- opts.start_time, opts.end_time, opts.filter_pattern, opts.next_token,
-- opts.limit.  answer: { events = { {logStreamName, timestamp, message,
-- ingestionTime, eventId}, ... }, nextToken = s|nil (nil: finished) }.
-- Note: FilterLogEvents is limited to 5 calls per second per account.
function _M:filter_log_events(group, opts)
  check_string(group, 1, "filter_log_events", "log group name or ARN")
  opts = check_opts(opts, 2, "filter_log_events")
  if opts.stream_names ~= nil and opts.stream_prefix ~= nil then
    argerror(2, "filter_log_events", "opts.stream_names and opts.stream_prefix are exclusive")
  end
  local ans, msg, code = call(self, "FilterLogEvents", filter_body(group, opts), "log group " .. group)
  if not ans then return nil, msg, code end
  if type(ans.events) ~= "table" then ans.events = {} end
  return ans
end


-- Iterator over result_key of every page of a nextToken-paginated call
-- (the end: no nextToken, or the same one again).
local function paginate(self, op, body, res, result_key, max_pages)
  local buf, i = {}, 0
  local done = false
  local pages = 0
  return function()
    while true do
      i = i + 1
      if buf[i] ~= nil then return buf[i] end
      if done then return nil end
      if pages >= max_pages then done = true return nil end
      pages = pages + 1
      local ans, msg, code = call(self, op, body, res)
      if not ans then
        done = true
        return false, msg, code
      end
      buf, i = type(ans[result_key]) == "table" and ans[result_key] or {}, 0
      local tok = ans.nextToken
      if type(tok) ~= "string" or tok == "" or tok == body.nextToken then
        done = true
      else
        body.nextToken = tok
      end
    end
  end
end


--- filter_events(group [, opts]) -> iterator over the events of every
-- FilterLogEvents page (opts as filter_log_events, plus opts.max_pages);
-- yields false, msg, code once on a failure.
function _M:filter_events(group, opts)
  check_string(group, 1, "filter_events", "log group name or ARN")
  opts = check_opts(opts, 2, "filter_events")
  return paginate(self, "FilterLogEvents", filter_body(group, opts), "log group " .. group,
    "events", opts.max_pages or _M.MAX_PAGES)
end


---------------------------------------------------------------------------
-- DescribeLogStreams
---------------------------------------------------------------------------

local function streams_body(group, opts)
  local body = set_group({}, group)
  body.logStreamNamePrefix = opts.prefix
  body.orderBy = opts.order_by
  body.descending = opts.descending
  body.nextToken = opts.next_token
  body.limit = opts.limit
  return body
end


--- describe_log_streams(group [, opts]) -> answer | nil, msg, code: one
-- DescribeLogStreams call.  opts.prefix, opts.order_by ("LogStreamName" |
-- "LastEventTime"), opts.descending, opts.next_token, opts.limit (1..50).
-- answer: { logStreams = { {logStreamName, creationTime, firstEventTimestamp,
-- lastEventTimestamp, lastIngestionTime, ...}, ... }, nextToken = s|nil }.
function _M:describe_log_streams(group, opts)
  check_string(group, 1, "describe_log_streams", "log group name or ARN")
  opts = check_opts(opts, 2, "describe_log_streams")
  local ans, msg, code = call(self, "DescribeLogStreams", streams_body(group, opts),
    "log group " .. group)
  if not ans then return nil, msg, code end
  if type(ans.logStreams) ~= "table" then ans.logStreams = {} end
  return ans
end


--- log_streams(group [, opts]) -> iterator over the streams of every
-- DescribeLogStreams page (opts as describe_log_streams, plus opts.max_pages).
function _M:log_streams(group, opts)
  check_string(group, 1, "log_streams", "log group name or ARN")
  opts = check_opts(opts, 2, "log_streams")
  return paginate(self, "DescribeLogStreams", streams_body(group, opts), "log group " .. group,
    "logStreams", opts.max_pages or _M.MAX_PAGES)
end


return _M
