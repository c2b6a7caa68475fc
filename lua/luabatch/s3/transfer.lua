-- luabatch.s3.transfer: the options of the C transfer engine
-- (core.s3_upload / core.s3_download) for one object, and the engine itself.
--
--   local transfer = require "luabatch.s3.transfer"
--   local f, msg, code = transfer.engine(core, "s3_upload", "PutObject", "s3://b/k")
--   local t = transfer.options({ endpoint = ep, path_style = true, region = "us-east-1",
--     creds = creds, ca_bundle = nil, connect_timeout = 10, read_timeout = 60 },
--     bucket, key, opts)
--   t.file = "big.bin"; local res, msg, code = f(t)
--
-- options copies the caller's transfer options (part_size,
-- concurrency, max_attempts, on_progress, verify, connect_timeout,
-- read_timeout, content_type, metadata, multipart_threshold,
-- unsigned_payload, checksum, fsync) over what the client resolved; it
-- checks nothing (the client checks the bucket and key first).  engine is
-- nil, "<op> <res>: core.<name> is not available in this build", "ENOTSUP"
-- in a build without it.

local _M = { _VERSION = "0.1.0" }

-- What a server without aws-chunked bodies (SigV4 streaming) answers.
_M.CHUNKED_REFUSED = { NotImplemented = true, HTTP_501 = true }

local SKEW_CODES = require("luabatch.retry").SKEW_CODES
local log = require "luabatch.log"
local EXPIRED = { ExpiredToken = true, ExpiredTokenException = true, TokenRefreshRequired = true }

local type = type
local ipairs = ipairs
local tostring = tostring

local OPTIONS = { "part_size", "concurrency", "max_attempts", "on_progress", "verify",
  "connect_timeout", "read_timeout", "content_type", "metadata", "multipart_threshold",
  "unsigned_payload", "checksum", "fsync" }


--- options(conn, bucket, key, opts) -> the engine's option table.
-- conn = { endpoint, path_style, region, creds = { access_key, secret_key,
-- session_token }, ca_bundle, connect_timeout, read_timeout } (the
-- client's); opts = the caller's, which win for the names above.
function _M.options(conn, bucket, key, opts)
  local creds = conn.creds
  local t = {
    endpoint = conn.endpoint, bucket = bucket, key = key, region = conn.region,
    access_key = creds.access_key, secret_key = creds.secret_key,
    session_token = creds.session_token,
    path_style = conn.path_style,
    ca_bundle = conn.ca_bundle,
    connect_timeout = conn.connect_timeout,
    read_timeout = conn.read_timeout,
  }
  for _, k in ipairs(OPTIONS) do
    if opts[k] ~= nil then t[k] = opts[k] end
  end
  return t
end


--- unchunked(t, code [, key]) -> true when a file upload (t.direction
-- "upload") refused with code should go again as UNSIGNED-PAYLOAD: the
-- server takes no aws-chunked bodies (t.unsigned_payload is then set, and a
-- warning names the object, key or t.key).
function _M.unchunked(t, code, key)
  if not _M.CHUNKED_REFUSED[code] or t.unsigned_payload or t.reader or t.direction ~= "upload" then
    return false
  end
  t.unsigned_payload = true
  log.warn("s3: s3://%s/%s: the server refused an aws-chunked body (%s); sending unsigned payloads "
    .. "(nothing checks them on the way but TLS; the lb-crc32c tag still checks downloads)",
    tostring(t.bucket), tostring(key or t.key), code)
  return true
end


--- run(f, t, hooks) -> f(t)'s results, signed with the corrected clock and
-- live credentials.  hooks = { offset = function() -> seconds to add to
-- time() when signing, probe = function() (a request through
-- luabatch.request, which measures the skew from the server's Date when the
-- server says the clock is off), refresh = function() -> fresh credentials
-- | nil }.  On RequestTimeTooSkewed/RequestExpired (or a bodiless 403, a
-- HEAD's) the engine runs once more if the probe measured a new offset, on
-- ExpiredToken once more with fresh credentials, on a refused aws-chunked
-- upload once more unsigned (never for a reader: its bytes are gone); a
-- skew that stays says so.
function _M.run(f, t, hooks)
  t.time_offset = hooks.offset()
  local res, msg, code = f(t)
  if not res and t.file and _M.unchunked(t, code) then
    res, msg, code = f(t)
  end
  if not res and EXPIRED[code] and not t.reader then
    local c = hooks.refresh()
    if c then
      t.access_key, t.secret_key, t.session_token = c.access_key, c.secret_key, c.session_token
      res, msg, code = f(t)
    end
  end
  if not res and (SKEW_CODES[code] or code == "HTTP_403") then   -- a HEAD's 403 has no code
    hooks.probe()
    local off = hooks.offset()
    if off ~= t.time_offset and not t.reader then
      t.time_offset = off
      res, msg, code = f(t)
    end
    if not res and SKEW_CODES[code] then
      msg = tostring(msg) .. " (hint: the clock of this machine differs from the server's by "
        .. off .. " s; synchronise it (NTP)" .. (t.reader and "; a stream cannot be re-sent" or "") .. ")"
    end
  end
  return res, msg, code
end


--- engine(core, name, op, res) -> core[name] | nil, msg, "ENOTSUP".
function _M.engine(core, name, op, res)
  local f = core[name]
  if type(f) ~= "function" then
    return nil, op .. " " .. res .. ": core." .. name .. " is not available in this build", "ENOTSUP"
  end
  return f
end


return _M
