-- luabatch.transport.curl: the default HTTP transport, on libcurl.
--
--   local transport = require("luabatch.transport.curl").new([copts])
--   transport:request(opts)        -> resp | nil, msg, code
--   transport:request_all(list)    -> { resp | { ok = false, err = msg, code = code }, ... }
--   transport:close()              idempotent; a closed transport raises
--
-- copts = { max_connections = 16, max_concurrency = 16 }.  opts and resp are
-- exactly those of core.http_request (see src/bind_http.c): a 4xx/5xx is a
-- resp; failures carry the codes ECONNECT, ETIMEDOUT, ECANCELED, ETLS, EHTTP,
-- EIO.  Connections are kept alive and reused across requests of one
-- transport.  At debug level each request and its outcome are logged, with
-- header names only (never values) and the URL passed through log.redact, so
-- presigned signatures and tokens do not reach the log.

local core = require "luabatch.core"
local log = require "luabatch.log"

local _M = { _VERSION = "0.1.0" }
local mt = { __index = _M }

local type = type
local tostring = tostring
local concat = table.concat
local monotime = core.monotime


local function header_names(headers)
  if type(headers) ~= "table" then return "" end
  local names = {}
  if headers[1] ~= nil then
    for i = 1, #headers do
      local h = headers[i]
      names[#names + 1] = type(h) == "table" and tostring(h[1]) or "?"
    end
  else
    for k in pairs(headers) do names[#names + 1] = tostring(k) end
    table.sort(names)
  end
  if #names == 0 then return "" end
  return " [" .. concat(names, ", ") .. "]"
end


local function method_of(opts)
  if opts.method then return opts.method end
  if opts.body or opts.body_file or opts.body_reader then return "PUT" end
  return "GET"
end


local function log_request(opts)
  log.debug("http > %s %s%s", tostring(method_of(opts)), log.redact(opts.url),
    header_names(opts.headers))
end


local function log_response(opts, resp, msg, code, t0)
  local dt = monotime() - t0
  if resp then
    log.debug("http < %s %s: %d (%.3f s, %d bytes)", tostring(method_of(opts)),
      log.redact(opts.url), resp.status, dt, resp.bytes_in or 0)
  else
    log.debug("http < %s %s: %s %s (%.3f s)", tostring(method_of(opts)),
      log.redact(opts.url), tostring(code), tostring(msg), dt)
  end
end


local function check_self(self, name)
  if getmetatable(self) ~= mt then
    error("bad argument #1 to '" .. name .. "' (transport expected, got " .. type(self) .. ")", 3)
  end
  if not self._client then
    error("attempt to use a closed transport", 3)
  end
end


--- A transport with its own connection pool.
function _M.new(copts)
  if copts ~= nil and type(copts) ~= "table" then
    error("bad argument #1 to 'new' (table expected, got " .. type(copts) .. ")", 2)
  end
  local client, err, code = core.http_client(copts)
  if not client then return nil, "http transport: " .. tostring(err), code end
  return setmetatable({ _client = client }, mt)
end


--- Run one request; resp, or nil, msg, code.
function _M.request(self, opts)
  check_self(self, "request")
  if type(opts) ~= "table" then
    error("bad argument #1 to 'request' (table expected, got " .. type(opts) .. ")", 2)
  end
  local debug = log.enabled("debug")
  local t0
  if debug then
    log_request(opts)
    t0 = monotime()
  end
  local resp, msg, code = self._client:request(opts)
  if debug then log_response(opts, resp, msg, code, t0) end
  return resp, msg, code
end


--- Run a list of requests concurrently; a list of resp or
-- { ok = false, err = msg, code = code }, in the same order.
function _M.request_all(self, list)
  check_self(self, "request_all")
  if type(list) ~= "table" then
    error("bad argument #1 to 'request_all' (table expected, got " .. type(list) .. ")", 2)
  end
  local debug = log.enabled("debug")
  local t0
  if debug then
    for i = 1, #list do
      if type(list[i]) == "table" then log_request(list[i]) end
    end
    t0 = monotime()
  end
  local results = self._client:request_all(list)
  if debug then
    for i = 1, #results do
      local r = results[i]
      if r.ok == false then log_response(list[i], nil, r.err, r.code, t0)
      else log_response(list[i], r, nil, nil, t0) end
    end
  end
  return results
end


--- Close the connections; calling it again is harmless.
function _M.close(self)
  if getmetatable(self) ~= mt then
    error("bad argument #1 to 'close' (transport expected, got " .. type(self) .. ")", 2)
  end
  if self._client then
    self._client:close()
    self._client = nil
  end
end


return _M
