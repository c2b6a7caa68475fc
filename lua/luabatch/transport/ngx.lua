-- luabatch.transport.ngx: the HTTP transport inside nginx (ngx_lua), built on
-- nginx's own HTTP client instead of libcurl.
--
--   local transport = require("luabatch.transport.ngx").new([topts])
--   transport:request(opts)   -> resp | nil, msg, code
--   transport:close()         (nothing to release; kept for the seam)
--   _M.available([ngx])       -> true | false, why   (running under ngx_lua?)
--   _M.sleep(seconds)         -> true   (ngx.sleep: yields instead of blocking)
--
-- opts and resp are those of transport.curl / core.http_request, with a body
-- string only: body_file, body_reader, output_file and on_data are refused
-- with "EINVAL" (large objects stream through nginx itself, examples/nginx).
-- Request phases use a subrequest to ngx/locations.conf's internal location;
-- timers, and headers a subrequest cannot carry, use a cosocket to the same
-- proxy on a unix socket (ngx/loopback.conf).
-- Errors: nginx's own proxy failures become "ECONNECT" (refused, TLS
-- verification, resolver), "ETIMEDOUT" or "EIO"; phases without subrequests
-- or cosockets (init, init_worker, log, filters) get "ENOTSUP".  A 4xx/5xx
-- of the endpoint is a resp.  Why and how: docs/design.md.

local log = require "luabatch.log"

local _M = { _VERSION = "0.1.0" }
local mt = { __index = _M }

local type = type
local pairs = pairs
local ipairs = ipairs
local tostring = tostring
local tonumber = tonumber
local rawget = rawget
local setmetatable = setmetatable
local getmetatable = getmetatable
local pcall = pcall
local sort = table.sort
local str_lower = string.lower
local str_match = string.match
local str_find = string.find
local str_gsub = string.gsub
local str_sub = string.sub
local concat = table.concat

_M.DEFAULT_LOCATION = "/_luabatch/aws"
_M.SOCKET_NAME = "luabatch.sock"

-- Lowercased header name -> nginx variable of locations.conf.
local HEADER_VARS = {}
for _, name in ipairs({
  "host", "authorization", "x-amz-date", "x-amz-content-sha256", "x-amz-security-token",
  "x-amz-target", "x-amz-user-agent", "content-type", "content-md5", "content-encoding",
  "content-disposition", "content-language", "cache-control", "expires", "range", "if-match",
  "if-none-match", "if-modified-since", "if-unmodified-since", "user-agent", "accept",
  "x-amz-acl", "x-amz-copy-source", "x-amz-copy-source-range", "x-amz-metadata-directive",
  "x-amz-tagging", "x-amz-tagging-directive", "x-amz-storage-class",
  "x-amz-server-side-encryption", "x-amz-expected-bucket-owner", "x-amz-request-payer",
  "x-amz-checksum-sha256", "x-aws-ec2-metadata-token", "x-aws-ec2-metadata-token-ttl-seconds",
}) do
  HEADER_VARS[name] = "lbh_" .. str_gsub(name, "%-", "_")
end
_M.HEADER_VARS = HEADER_VARS

-- Headers nginx computes itself (or hop-by-hop): never forwarded.
local SKIP = {
  ["content-length"] = true, ["connection"] = true, ["transfer-encoding"] = true,
  ["expect"] = true, ["keep-alive"] = true, ["te"] = true, ["upgrade"] = true,
  ["x-luabatch-target"] = true,
}

-- Hop-by-hop answer headers of the loopback (nginx's, not the endpoint's).
local HOP = { ["connection"] = true, ["keep-alive"] = true, ["transfer-encoding"] = true }

-- Status of a truncated, bodiless subrequest answer -> code (nginx's own
-- failure); the loopback's error_page answers 599 with the code as body.
local NGINX_FAILURE = { [500] = "EIO", [502] = "ECONNECT", [503] = "ECONNECT", [504] = "ETIMEDOUT" }
local PROXY_FAILURE = setmetatable({
  ECONNECT = "cannot connect: refused, TLS verification, no resolver or DNS failure",
  ETIMEDOUT = "the endpoint did not answer in time (proxy_*_timeout)",
  EIO = "bad target URL or internal error",
}, { __index = function() return "proxy error" end })

local SUBREQUEST_PHASES = { rewrite = true, access = true, content = true }
local COSOCKET_PHASES = {
  rewrite = true, access = true, content = true, timer = true,
  ssl_cert = true, ssl_session_fetch = true, ssl_client_hello = true,
}

-- Request options this transport cannot honour (streams and files).
local UNSUPPORTED = { "body_file", "body_reader", "output_file", "on_data" }

-- Methods that carry a body (always given one, so nginx never forwards the
-- parent request's body into the subrequest).
local BODY_METHODS = { PUT = true, POST = true, PATCH = true }


local function get_ngx(self)
  return self._ngx or rawget(_G, "ngx")
end


--- Running under ngx_lua, outside the init phase?  true | false, why.
function _M.available(ngx)
  ngx = ngx or rawget(_G, "ngx")
  if type(ngx) ~= "table" then return false, "not running inside nginx (no ngx)" end
  if type(ngx.location) ~= "table" or type(ngx.socket) ~= "table"
      or type(ngx.get_phase) ~= "function" then
    return false, "ngx has no location/socket/get_phase (not ngx_lua)"
  end
  local phase = ngx.get_phase()
  if phase == "init" then return false, "init phase (no subrequests or cosockets)" end
  return true
end


--- ngx.sleep as luabatch's sleep(seconds) -> true (yields; never blocks).
function _M.sleep(s)
  local ngx = rawget(_G, "ngx")
  if s > 0 then ngx.sleep(s) end
  return true
end


--- transport.ngx.new([topts]) -> transport
-- topts.location   internal location of locations.conf (default "/_luabatch/aws")
-- topts.socket     loopback socket: "unix:/path" or "/path" (default
--                  "unix:" .. ngx.config.prefix() .. "luabatch.sock", at first use)
-- topts.mode       "auto" (subrequest in request phases, loopback in timers) |
--                  "subrequest" | "loopback" (default "auto")
-- topts.keepalive  idle ms of pooled loopback connections (60000; 0 = close)
-- topts.pool_size  loopback connections kept per worker (16)
-- topts.ngx        stand-in for the ngx table (specs)
function _M.new(topts)
  topts = topts or {}
  if type(topts) ~= "table" then
    error("bad argument #1 to 'new' (table expected, got " .. type(topts) .. ")", 2)
  end
  local mode = topts.mode or "auto"
  if mode ~= "auto" and mode ~= "subrequest" and mode ~= "loopback" then
    error("bad argument #1 to 'new' (mode must be auto, subrequest or loopback, got "
      .. tostring(mode) .. ")", 2)
  end
  local location = topts.location or _M.DEFAULT_LOCATION
  if type(location) ~= "string" or str_sub(location, 1, 1) ~= "/" then
    error("bad argument #1 to 'new' (location must be a path starting with '/')", 2)
  end
  local socket = topts.socket
  if socket ~= nil then
    if type(socket) ~= "string" or socket == "" then
      error("bad argument #1 to 'new' (socket must be a path)", 2)
    end
    if str_sub(socket, 1, 5) ~= "unix:" then socket = "unix:" .. socket end
  end
  return setmetatable({
    _location = location,
    _socket = socket,
    _mode = mode,
    _keepalive = topts.keepalive or 60000,
    _pool_size = topts.pool_size or 16,
    _ngx = topts.ngx,
  }, mt)
end


--- The loopback socket ("unix:/path").
function _M:socket_path()
  if not self._socket then
    local ngx = get_ngx(self)
    local prefix = ngx and ngx.config and ngx.config.prefix and ngx.config.prefix() or ""
    if prefix ~= "" and str_sub(prefix, -1) ~= "/" then prefix = prefix .. "/" end
    self._socket = "unix:" .. prefix .. _M.SOCKET_NAME
  end
  return self._socket
end


-- "scheme://authority/path?query" -> target "scheme://authority", uri, authority
local function split_url(url)
  local scheme, rest = str_match(url, "^(%a[%w+.-]*)://(.*)$")
  if not scheme then return nil end
  local authority = str_match(rest, "^([^/?#]*)")
  if authority == "" then return nil end
  local uri = str_sub(rest, #authority + 1)
  uri = str_gsub(uri, "#.*$", "")
  if uri == "" then uri = "/"
  elseif str_sub(uri, 1, 1) == "?" then uri = "/" .. uri end
  return str_lower(scheme) .. "://" .. authority, uri, authority
end


-- Normalise opts.headers (list of pairs or map) to a list of pairs; nil, bad
-- header name when a value or name has a line break.
local function header_list(h)
  local list = {}
  if h == nil then return list end
  if h[1] ~= nil then
    for i = 1, #h do list[#list + 1] = { tostring(h[i][1]), tostring(h[i][2]) } end
  else
    local names = {}
    for k in pairs(h) do names[#names + 1] = k end
    sort(names)
    for _, k in ipairs(names) do list[#list + 1] = { tostring(k), tostring(h[k]) } end
  end
  for _, kv in ipairs(list) do
    if str_find(kv[1], "[%c%s:]") or str_find(kv[2], "[\r\n]") then return nil, kv[1] end
  end
  return list
end


-- Build resp from a header iterator: resp.headers lowercased, repeats joined.
local function add_header(resp, name, value)
  local hl = resp.header_list
  hl[#hl + 1] = { name, value }
  local lname = str_lower(name)
  local old = resp.headers[lname]
  resp.headers[lname] = old and (old .. ", " .. value) or value
end


local function fail(opts, method, msg, code)
  return nil, "ngx transport: " .. method .. " " .. log.redact(opts.url) .. ": " .. msg, code
end


local function elapsed(ngx, t0)
  if ngx.update_time then ngx.update_time() end
  return ngx.now() - t0
end


---------------------------------------------------------------------------
-- Subrequest (request phases)
---------------------------------------------------------------------------

local function via_subrequest(self, ngx, opts, method, target, uri, headers, body)
  local vars = { luabatch_target = target, luabatch_uri = uri }
  for _, var in pairs(HEADER_VARS) do vars[var] = "" end
  for _, kv in ipairs(headers) do
    local var = HEADER_VARS[str_lower(kv[1])]
    if vars[var] ~= "" then vars[var] = vars[var] .. "," .. kv[2] else vars[var] = kv[2] end
  end
  local copts = { method = ngx["HTTP_" .. method], vars = vars, ctx = {} }
  if body ~= nil then copts.body = body
  elseif BODY_METHODS[method] then copts.body = "" end
  local res = ngx.location.capture(self._location, copts)
  if type(res) ~= "table" or not res.status then
    return fail(opts, method, "subrequest to " .. self._location .. " failed", "EIO")
  end
  if res.truncated then
    -- nginx's own failure (no connection, TLS, resolver, timeout): an error
    -- status, no body, no Date (only Content-Type), the flag set; an
    -- endpoint's complete 5xx answer is not truncated.  A HEAD answer is
    -- always flagged (Content-Length without a body): not a failure.
    local code = NGINX_FAILURE[res.status]
    local h = res.header or {}
    if code and (res.body or "") == "" and h.Date == nil and h.date == nil then
      return fail(opts, method, "nginx proxy failed (HTTP " .. res.status .. " from nginx: "
        .. PROXY_FAILURE[code] .. "; the nginx error log has the details)", code)
    end
    if method ~= "HEAD" then
      return fail(opts, method, "the answer was cut short (HTTP " .. res.status .. ")", "EIO")
    end
  end
  local resp = { status = res.status, headers = {}, header_list = {}, body = res.body or "" }
  local names = {}
  for name in pairs(res.header or {}) do names[#names + 1] = name end
  sort(names)
  for _, name in ipairs(names) do
    local v = res.header[name]
    if type(v) == "table" then
      for i = 1, #v do add_header(resp, name, tostring(v[i])) end
    else
      add_header(resp, name, tostring(v))
    end
  end
  return resp
end


---------------------------------------------------------------------------
-- Loopback cosocket (timers, and headers the subrequest cannot carry)
---------------------------------------------------------------------------

local function sock_code(err)
  if err == "timeout" then return "ETIMEDOUT" end
  return "EIO"
end


local function via_loopback(self, ngx, opts, method, target, uri, headers, body)
  local path = self:socket_path()
  local sock, err = ngx.socket.tcp()
  if not sock then return fail(opts, method, "no cosocket: " .. tostring(err), "EIO") end
  local connect_ms = (opts.connect_timeout or 10) * 1000
  local read_ms = (opts.read_timeout or 60) * 1000
  if opts.timeout and opts.timeout * 1000 < read_ms then read_ms = opts.timeout * 1000 end
  sock:settimeouts(connect_ms, read_ms, read_ms)
  local ok
  ok, err = sock:connect(path)
  if not ok then
    return fail(opts, method, "cannot connect to the luabatch loopback " .. path .. " ("
      .. tostring(err) .. "; is ngx/loopback.conf included in a server listening there?)",
      "ECONNECT")
  end
  local req = { method, " ", uri, " HTTP/1.1\r\n", "X-Luabatch-Target: ", target, "\r\n" }
  for _, kv in ipairs(headers) do
    req[#req + 1] = kv[1]
    req[#req + 1] = ": "
    req[#req + 1] = kv[2]
    req[#req + 1] = "\r\n"
  end
  if body == nil and BODY_METHODS[method] then body = "" end
  if body ~= nil then req[#req + 1] = "Content-Length: " .. #body .. "\r\n" end
  req[#req + 1] = "\r\n"
  if body ~= nil and body ~= "" then req[#req + 1] = body end
  local sent
  sent, err = sock:send(req)
  if not sent then
    sock:close()
    return fail(opts, method, "sending to the loopback " .. path .. ": " .. tostring(err),
      sock_code(err))
  end

  local line
  line, err = sock:receive("*l")
  if not line then
    sock:close()
    return fail(opts, method, "reading the answer from the loopback " .. path .. ": "
      .. tostring(err), sock_code(err))
  end
  local status = tonumber(str_match(line, "^HTTP/1%.%d (%d%d%d)"))
  if not status then
    sock:close()
    return fail(opts, method, "bad status line from the loopback: " .. str_sub(line, 1, 80), "EHTTP")
  end
  local resp = { status = status, headers = {}, header_list = {} }
  local length, keep = nil, true
  while true do
    line, err = sock:receive("*l")
    if not line then
      sock:close()
      return fail(opts, method, "reading headers from the loopback: " .. tostring(err), sock_code(err))
    end
    if line == "" then break end
    local name, value = str_match(line, "^([^:]+):%s*(.-)%s*$")
    if name then
      local lname = str_lower(name)
      if lname == "content-length" then length = tonumber(value) end
      if lname == "connection" and str_find(str_lower(value), "close", 1, true) then keep = false end
      if not HOP[lname] then add_header(resp, name, value) end
    end
  end
  local data = ""
  if method == "HEAD" or status == 204 or status == 304 or status < 200 then
    data = ""
  elseif length then
    if length > 0 then
      data, err = sock:receive(length)
      if not data then
        sock:close()
        return fail(opts, method, "reading the body from the loopback: " .. tostring(err),
          sock_code(err))
      end
    end
  else
    keep = false
    data, err = sock:receive("*a")
    if not data then
      sock:close()
      return fail(opts, method, "reading the body from the loopback: " .. tostring(err),
        sock_code(err))
    end
  end
  if keep and self._keepalive > 0 then
    sock:setkeepalive(self._keepalive, self._pool_size)
  else
    sock:close()
  end
  if status == 599 then
    local code = str_match(data, "^(E%u+)") or "EIO"
    return fail(opts, method, "nginx proxy failed (" .. PROXY_FAILURE[code] .. "; the nginx "
      .. "error log has the details)", code)
  end
  resp.body = data
  return resp
end


---------------------------------------------------------------------------
-- The seam
---------------------------------------------------------------------------

--- Run one request; resp, or nil, msg, code.
function _M.request(self, opts)
  if getmetatable(self) ~= mt then
    error("bad argument #1 to 'request' (transport expected, got " .. type(self) .. ")", 2)
  end
  if type(opts) ~= "table" then
    error("bad argument #1 to 'request' (table expected, got " .. type(opts) .. ")", 2)
  end
  if type(opts.url) ~= "string" then
    error("bad argument #1 to 'request' (opts.url string expected)", 2)
  end
  local method = opts.method or (opts.body and "PUT" or "GET")
  method = tostring(method):upper()
  for _, name in ipairs(UNSUPPORTED) do
    if opts[name] ~= nil then
      return fail(opts, method, "opts." .. name .. " is not supported by the ngx transport "
        .. "(body string and in-memory answers only)", "EINVAL")
    end
  end
  local body = opts.body
  if body ~= nil and type(body) ~= "string" then
    return fail(opts, method, "opts.body must be a string", "EINVAL")
  end
  local ngx = get_ngx(self)
  if type(ngx) ~= "table" then
    return fail(opts, method, "not running inside nginx (no ngx)", "ENOTSUP")
  end
  if not ngx["HTTP_" .. method] then
    return fail(opts, method, "method not supported by ngx.location.capture", "EINVAL")
  end
  local target, uri, authority = split_url(opts.url)
  if not target then return fail(opts, method, "not an absolute http(s) URL", "EINVAL") end
  local headers, bad = header_list(opts.headers)
  if not headers then
    return fail(opts, method, "header " .. tostring(bad) .. " has a bad name or a line break",
      "EINVAL")
  end

  -- what goes to nginx: no hop-by-hop headers, always a Host
  local out, fits, has_host = {}, true, false
  for _, kv in ipairs(headers) do
    local lname = str_lower(kv[1])
    if not SKIP[lname] then
      out[#out + 1] = kv
      if lname == "host" then has_host = true end
      if not HEADER_VARS[lname] then fits = false end
    end
  end
  if not has_host then out[#out + 1] = { "Host", authority } end

  local phase = ngx.get_phase and ngx.get_phase() or "?"
  local use
  if self._mode ~= "loopback" and SUBREQUEST_PHASES[phase] and fits then
    use = "subrequest"
  elseif self._mode ~= "subrequest" and COSOCKET_PHASES[phase] then
    use = "loopback"
  elseif self._mode == "subrequest" and SUBREQUEST_PHASES[phase] and not fits then
    local names = {}
    for _, kv in ipairs(out) do
      if not HEADER_VARS[str_lower(kv[1])] then names[#names + 1] = kv[1] end
    end
    return fail(opts, method, "header(s) " .. concat(names, ", ") .. " cannot pass the "
      .. "subrequest location (see HEADER_VARS; the loopback mode passes any header)", "EINVAL")
  else
    return fail(opts, method, "no HTTP from the " .. tostring(phase) .. " phase of nginx "
      .. "(subrequests need rewrite/access/content, cosockets also work in timers)", "ENOTSUP")
  end

  local debug = log.enabled("debug")
  if ngx.update_time then ngx.update_time() end
  local t0 = ngx.now()
  if debug then
    log.debug("http > %s %s (ngx %s, %d headers)", method, log.redact(opts.url), use, #out)
  end
  local resp, msg, code
  if use == "subrequest" then
    resp, msg, code = via_subrequest(self, ngx, opts, method, target, uri, out, body)
  else
    resp, msg, code = via_loopback(self, ngx, opts, method, target, uri, out, body)
  end
  local dt = elapsed(ngx, t0)
  if resp then
    resp.bytes_in = #resp.body
    resp.seconds = dt
    if opts.on_progress then
      pcall(opts.on_progress, resp.bytes_in, resp.bytes_in, body and #body or 0, body and #body or 0)
    end
  end
  if debug then
    if resp then
      log.debug("http < %s %s: %d (%.3f s, %d bytes)", method, log.redact(opts.url), resp.status,
        dt, resp.bytes_in)
    else
      log.debug("http < %s %s: %s (%.3f s)", method, log.redact(opts.url), tostring(code), dt)
    end
  end
  return resp, msg, code
end


--- Nothing to release (connections belong to nginx); harmless to call.
function _M.close(self)
  if getmetatable(self) ~= mt then
    error("bad argument #1 to 'close' (transport expected, got " .. type(self) .. ")", 2)
  end
end


return _M
