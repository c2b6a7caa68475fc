-- luabatch.request: the one generic AWS request path.
--
--   local client = request.new({ service = "batch", protocol = "rest-json", credentials = creds })
--   local resp, msg, code = client:send({
--     method = "POST", path = "/v1/describejobs", json = { jobs = ids },
--     operation = "DescribeJobs", resource = "batch job queue q",
--   })
--
-- Builds the URL from the configured endpoint, signs with core.sigv4_sign
-- (credentials from the provider, clock corrected by the measured skew),
-- sends through the transport, retries per luabatch.retry (sleeping with
-- core.sleep, interruptible) and turns AWS error bodies into
-- `nil, "Op target: HTTP 403 Code: message (hint: ...)", code, resp`.
-- On success returns resp ({ status, headers, body, ... }) with resp.json
-- for the json and rest-json protocols.

local log = require "luabatch.log"
local retry_mod = require "luabatch.retry"

local _M = { _VERSION = "0.1.0" }
local mt = { __index = _M }

local type = type
local pairs = pairs
local ipairs = ipairs
local tostring = tostring
local pcall = pcall
local require = require
local str_format = string.format
local str_gsub = string.gsub
local str_match = string.match
local str_find = string.find
local str_byte = string.byte
local str_lower = string.lower
local str_sub = string.sub
local concat = table.concat
local sort = table.sort
local floor = math.floor

-- cjson.safe returns nil, err instead of raising (lua-cjson, OpenResty and
-- the executable all ship it).
local cjson = require "cjson.safe"


local PROTOCOLS = { ["rest-xml"] = true, ["rest-json"] = true, json = true, query = true }

local USER_AGENT = "luabatch/" .. _M._VERSION

-- Errors worth one re-signed retry after dropping cached credentials.
local EXPIRED_TOKEN = {
  ExpiredToken = true,
  ExpiredTokenException = true,
  TokenRefreshRequired = true,
}


---------------------------------------------------------------------------
-- Encoding helpers
---------------------------------------------------------------------------

--- RFC 3986 percent-encoding (unreserved characters kept), as SigV4 wants.
local function uri_encode(s)
  return (str_gsub(tostring(s), "[^%w%-%._~]", function(c)
    return str_format("%%%02X", str_byte(c))
  end))
end
_M.uri_encode = uri_encode


--- Encode a query: map { k = v } (sorted by key) or list { {k, v}, ... }
-- (order kept).  v == true gives a bare key.
local function encode_query(q)
  if q == nil then return "" end
  local parts = {}
  local function add(k, v)
    if v == true then
      parts[#parts + 1] = uri_encode(k)
    elseif v ~= nil and v ~= false then
      parts[#parts + 1] = uri_encode(k) .. "=" .. uri_encode(v)
    end
  end
  if #q > 0 then
    for _, kv in ipairs(q) do add(kv[1], kv[2]) end
  else
    local keys = {}
    for k in pairs(q) do keys[#keys + 1] = k end
    sort(keys)
    for _, k in ipairs(keys) do add(k, q[k]) end
  end
  return concat(parts, "&")
end
_M.encode_query = encode_query


--- Form body of the query protocol: params flattened (lists become
-- "Name.member.N", nested maps "Name.Key") and sorted.
local function flatten_params(params, prefix, out)
  for k, v in pairs(params) do
    local key = prefix and (prefix .. "." .. k) or tostring(k)
    if type(v) == "table" then
      if #v > 0 then
        for i, item in ipairs(v) do
          if type(item) == "table" then
            flatten_params(item, key .. ".member." .. i, out)
          else
            out[key .. ".member." .. i] = item
          end
        end
      else
        flatten_params(v, key, out)
      end
    elseif type(v) == "boolean" then
      out[key] = v and "true" or "false"
    else
      out[key] = v
    end
  end
  return out
end


local function headers_to_list(h)
  local list = {}
  if h == nil then return list end
  if #h > 0 then
    for _, kv in ipairs(h) do list[#list + 1] = { kv[1], kv[2] } end
  else
    local keys = {}
    for k in pairs(h) do keys[#keys + 1] = k end
    sort(keys)
    for _, k in ipairs(keys) do list[#list + 1] = { k, tostring(h[k]) } end
  end
  return list
end


local function has_header(list, name)
  name = str_lower(name)
  for _, kv in ipairs(list) do
    if str_lower(kv[1]) == name then return true end
  end
  return false
end


-- The URL for logs: X-Amz-* query parameters (credential, signature,
-- token) are dropped.
local function loggable_url(url)
  return (str_gsub(url, "([?&])[Xx]%-[Aa]mz%-[%w%-]+=[^&]*", "%1"))
end


--- xml_child(el, name) -> the first child element of a core.xml_parse
-- tree named `name` | nil (el may be nil)
local function xml_child(el, name)
  if type(el) ~= "table" then return nil end
  for i = 1, #el do
    if el[i].name == name then return el[i] end
  end
  return nil
end
_M.xml_child = xml_child


---------------------------------------------------------------------------
-- Error bodies
---------------------------------------------------------------------------

--- Extract code, message, request id from an AWS error response.
-- parse_error(resp, xml_parse) -> code|nil, message|nil, request_id|nil
function _M.parse_error(resp, xml_parse)
  local headers = resp.headers or {}
  local code, message
  local request_id = headers["x-amz-request-id"] or headers["x-amzn-requestid"]
  local htype = headers["x-amzn-errortype"]
  if htype and htype ~= "" then code = str_match(htype, "^([^:]*)") end
  local body = resp.body or ""
  local first = str_match(body, "^%s*(.)")
  if first == "<" and xml_parse then
    local ok, root = pcall(xml_parse, body)
    if ok and type(root) == "table" then
      local err = root
      if root.name == "ErrorResponse" then
        err = xml_child(root, "Error")
        local rid = xml_child(root, "RequestId")
        request_id = request_id or (rid and rid.text)
      elseif root.name == "Response" then          -- EC2 style
        err = xml_child(xml_child(root, "Errors"), "Error")
        local rid = xml_child(root, "RequestID")
        request_id = request_id or (rid and rid.text)
      end
      if err and err.name == "Error" then
        local c, m = xml_child(err, "Code"), xml_child(err, "Message")
        code = code or (c and c.text ~= "" and c.text) or nil
        message = m and m.text or nil
        local rid = xml_child(err, "RequestId") or xml_child(root, "RequestId")
        request_id = request_id or (rid and rid.text)
      end
    end
  elseif first == "{" then
    local doc = cjson.decode(body)
    if type(doc) == "table" then
      local t = doc.__type or doc.code or doc.Code
      if type(t) == "string" and t ~= "" then
        t = str_match(t, "([^#]*)$")
        t = str_match(t, "^([^:]*)")
        code = code or t
      end
      local m = doc.message or doc.Message or doc.errorMessage
      if type(m) == "string" then message = m end
    end
  end
  if code == "" then code = nil end
  return code, message, request_id
end


---------------------------------------------------------------------------
-- Client
---------------------------------------------------------------------------

--- request.new(opts) -> client
-- opts.service      "s3" | "batch" | "logs" | "sts" | ... (required)
-- opts.protocol     "rest-xml" | "rest-json" | "json" | "query" (required)
-- opts.config       luabatch.config object (default config.new())
-- opts.credentials  object with :get() (required unless unsigned)
-- opts.transport    object with :request(opts) (default luabatch.transport.curl)
-- opts.retry        luabatch.retry policy (default from config:retry_settings())
-- opts.region       signing region (default config:region())
-- opts.endpoint     base URL (default config:endpoint(service, region))
-- opts.signing_name SigV4 service name (default service)
-- opts.unsigned     true: send without signing (STS web identity)
-- opts.json_version "1.1" (json protocol Content-Type)
-- opts.timeout, opts.connect_timeout, opts.read_timeout   transport timeouts
-- opts.core, opts.sleep   stand-ins for luabatch.core / core.sleep (specs)
function _M.new(opts)
  if type(opts) ~= "table" then
    error("bad argument #1 to 'new' (table expected, got " .. type(opts) .. ")", 2)
  end
  if type(opts.service) ~= "string" or opts.service == "" then
    error("bad argument #1 to 'new' (service name expected, got " .. type(opts.service) .. ")", 2)
  end
  if not PROTOCOLS[opts.protocol] then
    error("bad argument #1 to 'new' (protocol must be rest-xml, rest-json, json or query, got "
      .. tostring(opts.protocol) .. ")", 2)
  end
  local cfg = opts.config or require("luabatch.config").new()
  return setmetatable({
    service = opts.service,
    protocol = opts.protocol,
    signing_name = opts.signing_name or opts.service,
    _cfg = cfg,
    _creds = opts.credentials,
    _transport = opts.transport,
    _retry = opts.retry,
    _region = opts.region,
    _endpoint = opts.endpoint and (str_gsub(opts.endpoint, "/+$", "")) or nil,
    _unsigned = opts.unsigned and true or false,
    _json_version = opts.json_version or "1.1",
    _core = opts.core,
    _sleep = opts.sleep,
    _timeouts = {
      timeout = opts.timeout,
      connect_timeout = opts.connect_timeout,
      read_timeout = opts.read_timeout,
    },
    _skew = 0,
  }, mt)
end



function _M:core()
  if not self._core then self._core = require "luabatch.core" end
  return self._core
end


function _M:transport()
  if not self._transport then
    self._transport = require("luabatch.transport.default").transport()
  end
  return self._transport
end


--- The credentials provider (opts.credentials: the clients give one,
-- luabatch.aws.client / luabatch.s3 choose the default).
function _M:credentials()
  if not self._creds then
    error("luabatch.request: no credentials provider (opts.credentials) for an unsigned=false client", 2)
  end
  return self._creds
end


--- The retry policy: nil, msg, code when the configuration is invalid.
function _M:retry_policy()
  if not self._retry then
    local s, msg, code = self._cfg:retry_settings()
    if not s then return nil, msg, code end
    local core = self:core()
    self._retry = retry_mod.new({ mode = s.mode, max_attempts = s.max_attempts,
      clock = core.monotime })
  end
  return self._retry
end


--- Signing region: region | nil, msg, code.
function _M:region()
  if self._region then return self._region end
  local r, msg, code = self._cfg:region()
  if not r then return nil, msg, code end
  self._region = r
  return r
end


--- Base endpoint URL: url, source | nil, msg, code.
function _M:endpoint()
  if self._endpoint then return self._endpoint, self._endpoint_source or "explicit" end
  local url, src, code = self._cfg:endpoint(self.service, self._region)
  if not url then return nil, src, code end
  self._endpoint, self._endpoint_source = url, src
  return url, src
end


--- Current clock-skew correction in seconds (server - local).
function _M:skew()
  return self._skew
end


local function sleep(self, s)
  if s <= 0 then return true end
  if self._sleep then return self._sleep(s) end
  local default = require "luabatch.transport.default"
  if default.in_nginx() then return default.sleep(s) end
  return self:core().sleep(s)
end


local function now(self)
  return self:core().now()
end


local function monotime(self)
  local core = self:core()
  return core.monotime and core.monotime() or os.clock()
end


-- The hint appended to an error message.
local function hint_for(self, req, status, code, retries, creds_source, resp)
  local region = self._region or "?"
  local op = req.operation or "?"
  local retried = retries > 0 and ("retried " .. retries .. " time" .. (retries > 1 and "s" or "")) or "not retried"
  local cls = code and retry_mod.THROTTLING_CODES[code]
  if cls or status == 429 then
    return "throttled by AWS, " .. retried .. "; lower the request rate, or raise AWS_MAX_ATTEMPTS "
      .. "or use AWS_RETRY_MODE=adaptive"
  end
  if code == "RequestTimeTooSkewed" or code == "RequestExpired" or code == "RequestInTheFuture" then
    return "the clock of this machine differs from AWS time (measured skew "
      .. floor(self._skew + 0.5) .. " s); synchronise it (NTP)"
  end
  if code == "SignatureDoesNotMatch" or code == "InvalidSignatureException" then
    return "the signature did not match: check the secret key of the credentials (source: "
      .. tostring(creds_source) .. ") and the region (" .. region .. ")"
  end
  if code == "InvalidAccessKeyId" or code == "UnrecognizedClientException"
      or code == "InvalidClientTokenId" then
    return "the access key id is not known to AWS: check the credentials (source: "
      .. tostring(creds_source) .. ")"
  end
  if code and EXPIRED_TOKEN[code] then
    return "the session token expired: refresh the credentials (source: " .. tostring(creds_source) .. ")"
  end
  if code == "PermanentRedirect" or code == "AuthorizationHeaderMalformed" or status == 301 then
    local br = resp and resp.headers and resp.headers["x-amz-bucket-region"]
    return "wrong region (" .. region .. ")" .. (br and ("; the bucket is in " .. br) or "")
      .. ": set AWS_REGION"
  end
  if status == 401 or status == 403 then
    return "check the credentials (source: " .. tostring(creds_source) .. "), the region ("
      .. region .. ") and that the IAM policy allows " .. self.signing_name .. ":" .. op
  end
  if status == 404 then
    return "check that " .. (req.resource or "the resource") .. " exists in region " .. region
  end
  if status == 409 then
    return (req.resource or "the resource") .. " already exists or is in a conflicting state"
  end
  if status and status >= 500 then
    return "AWS service error, " .. retried
  end
  return nil
end


local TRANSPORT_HINTS = {
  ECONNECT = "connection failed: check the endpoint URL, the network and proxies",
  ETIMEDOUT = "timed out: the endpoint did not answer in time",
  ETLS = "TLS failure: check AWS_CA_BUNDLE / ca_bundle and the endpoint's certificate",
}


--- Send one API request with signing and retries.
-- req.method, req.path (already encoded, starting with "/"), req.query
-- (map or list of pairs), req.headers (list of pairs or map),
-- body: req.body (string) | req.body_file [+ body_offset, body_length] |
-- req.body_reader (+ body_length; never retried) | req.json (table, json
-- protocols) | req.params (map, query protocol);
-- req.payload_hash (passed to the signer), req.target (X-Amz-Target),
-- req.operation ("PutObject"), req.resource ("s3://bucket/key"),
-- req.expect (list of success statuses; default any 2xx),
-- req.output_file / output_offset / on_data / on_progress (transport sinks),
-- req.timeout (overrides the client's), req.retry = false (no retries).
-- Returns resp | nil, msg, code, resp_or_nil.
function _M:send(req)
  if type(req) ~= "table" then
    error("bad argument #1 to 'send' (table expected, got " .. type(req) .. ")", 2)
  end
  if type(req.method) ~= "string" then
    error("bad argument #1 to 'send' (req.method string expected)", 2)
  end
  local path = req.path or "/"
  if type(path) ~= "string" or str_sub(path, 1, 1) ~= "/" then
    error("bad argument #1 to 'send' (req.path must start with '/')", 2)
  end
  local op = req.operation or (req.method .. " " .. path)
  local target = req.resource or (self.service .. " " .. path)
  local prefix = op .. " " .. target .. ": "

  local policy, msg, code = self:retry_policy()
  if not policy then return nil, prefix .. msg, code end
  local region
  if not self._unsigned then
    region, msg, code = self:region()
    if not region then return nil, prefix .. msg, code end
  else
    region = self._region
  end
  local base
  base, msg, code = self:endpoint()
  if not base then return nil, prefix .. msg, code end

  -- URL
  local qs = encode_query(req.query)
  local url = base .. path
  if qs ~= "" then url = url .. "?" .. qs end

  -- headers and body
  local headers = headers_to_list(req.headers)
  local body = req.body
  local proto = self.protocol
  if proto == "query" then
    if body == nil and req.params then
      body = encode_query(flatten_params(req.params, nil, {}))
    end
    if not has_header(headers, "Content-Type") then
      headers[#headers + 1] = { "Content-Type", "application/x-www-form-urlencoded; charset=utf-8" }
    end
  elseif proto == "json" or proto == "rest-json" then
    if body == nil and req.json ~= nil then
      local err
      body, err = cjson.encode(req.json)
      if not body then
        error("bad argument #1 to 'send' (req.json cannot be encoded: " .. tostring(err) .. ")", 2)
      end
    elseif body == nil and proto == "json" then
      body = "{}"
    end
    if not has_header(headers, "Content-Type") and (body ~= nil or proto == "json") then
      headers[#headers + 1] = { "Content-Type", proto == "json"
        and ("application/x-amz-json-" .. self._json_version) or "application/json" }
    end
    if req.target then headers[#headers + 1] = { "X-Amz-Target", req.target } end
  end
  if not has_header(headers, "User-Agent") then
    headers[#headers + 1] = { "User-Agent", USER_AGENT }
  end

  local replayable = req.body_reader == nil and (req.on_data == nil or req.retry == true)
  local max_attempts = (req.retry == false or not replayable) and 1 or nil
  local ctx = {}
  local attempt = 0
  local creds_source
  local timeouts = self._timeouts
  local ca_bundle = self._cfg.ca_bundle and self._cfg:ca_bundle() or nil

  while true do
    attempt = attempt + 1

    -- adaptive mode: client-side rate limit
    local wait = policy:acquire()
    if wait > 0 then
      local ok, _, c = sleep(self, wait)
      if ok == nil and c == "ECANCELED" then return nil, prefix .. "interrupted", "ECANCELED" end
    end

    -- sign
    local send_url, send_headers = url, headers
    if not self._unsigned then
      local creds
      creds, msg, code = self:credentials():get()
      if not creds then return nil, prefix .. msg, code end
      creds_source = creds.source
      local signed
      signed, msg, code = self:core().sigv4_sign({
        method = req.method,
        url = url,
        headers = headers,
        body = body,
        body_file = req.body_file,
        body_offset = req.body_offset,
        body_length = req.body_length,
        payload_hash = req.payload_hash or (req.body_reader and "UNSIGNED-PAYLOAD") or nil,
        region = region,
        service = self.signing_name,
        access_key = creds.access_key,
        secret_key = creds.secret_key,
        session_token = creds.session_token,
        time = now(self) + self._skew,
      })
      if not signed then return nil, prefix .. "signing failed: " .. tostring(msg), code or "ESIGN" end
      send_url, send_headers = signed.url or url, signed.headers
    end

    -- send
    local t0 = monotime(self)
    local topts = {
      method = req.method,
      url = send_url,
      headers = send_headers,
      body = body,
      body_file = req.body_file,
      body_offset = req.body_offset,
      body_length = req.body_length,
      body_reader = req.body_reader,
      output_file = req.output_file,
      output_offset = req.output_offset,
      on_data = req.on_data,
      on_progress = req.on_progress,
      timeout = req.timeout or timeouts.timeout,
      connect_timeout = req.connect_timeout or timeouts.connect_timeout,
      read_timeout = req.read_timeout or timeouts.read_timeout,
      ca_bundle = ca_bundle,
    }
    local transport = self:transport()
    local ok, resp, tmsg, tcode = pcall(transport.request, transport, topts)
    if not ok then resp, tmsg, tcode = nil, tostring(resp), "EIO" end
    local ms = floor((monotime(self) - t0) * 1000 + 0.5)
    log.debug("%s %s -> %s (%d ms, attempt %d)", req.method, loggable_url(send_url),
      resp and tostring(resp.status) or tostring(tcode), ms, attempt)

    -- classify
    local outcome
    if not resp then
      outcome = { code = tcode or "EIO", message = tmsg }
    else
      local expect = req.expect
      local good
      if expect then
        for _, s in ipairs(expect) do if s == resp.status then good = true end end
      else
        good = resp.status >= 200 and resp.status < 300
      end
      if good then
        policy:record(nil)
        policy:on_success(ctx)
        if (proto == "json" or proto == "rest-json") and req.output_file == nil and req.on_data == nil then
          local b = resp.body
          if b and str_find(b, "%S") then
            local doc, derr = cjson.decode(b)
            if doc == nil then
              return nil, prefix .. "unparsable JSON answer (HTTP " .. resp.status .. "): "
                .. tostring(derr), "EPARSE", resp
            end
            resp.json = doc
          else
            resp.json = {}
          end
        end
        resp.attempts = attempt
        return resp
      end
      local acode, amsg, rid = _M.parse_error(resp, self:core().xml_parse)
      outcome = { status = resp.status, code = acode, message = amsg, request_id = rid }
    end

    local class = policy:classify(outcome)
    policy:record(class)
    ctx.code = outcome.code
    local delay, why
    if class == "skew" and resp then
      local offset = retry_mod.skew_from_date_header(resp.headers and resp.headers.date, now(self))
      if offset then
        log.info("%s: clock skew of %d s measured from the Date header; re-signing", prefix,
          floor(offset + 0.5))
        self._skew = offset
        delay, why = policy:decide(attempt, class, ctx)
      else
        why = "no Date header to correct the clock"
      end
    elseif outcome.code and EXPIRED_TOKEN[outcome.code] and not ctx.token_refreshed
        and not self._unsigned then
      ctx.token_refreshed = true
      self:credentials():invalidate()
      delay = 0
    elseif max_attempts and attempt >= max_attempts then
      why = "not retried (body cannot be replayed or retry disabled)"
    else
      delay, why = policy:decide(attempt, class, ctx)
    end

    if delay == nil then
      local retries = attempt - 1
      local m
      if not resp then
        local h = TRANSPORT_HINTS[outcome.code]
        m = prefix .. tostring(outcome.message or outcome.code)
          .. (retries > 0 and (" (retried " .. retries .. " times)") or "")
          .. (h and (" (hint: " .. h .. ")") or "")
        return nil, log.redact(m), outcome.code
      end
      local rcode = outcome.code or (resp.status == 404 and "NotFound") or ("HTTP_" .. resp.status)
      m = prefix .. "HTTP " .. resp.status
      if outcome.code then m = m .. " " .. outcome.code end
      if outcome.message and outcome.message ~= "" then m = m .. ": " .. outcome.message end
      local h = hint_for(self, req, resp.status, outcome.code, retries, creds_source, resp)
      if h then m = m .. " (hint: " .. h .. ")" end
      log.debug("%s gave up: %s", prefix, tostring(why))
      -- a server's message can quote the request (SignatureDoesNotMatch
      -- echoes the canonical request, security token included)
      return nil, log.redact(m), rcode, resp
    end

    if delay > 0 then
      log.debug("%sretrying in %.2f s (%s)", prefix, delay, tostring(class or outcome.code))
      local sok, _, scode = sleep(self, delay)
      if sok == nil and scode == "ECANCELED" then return nil, prefix .. "interrupted", "ECANCELED" end
    end
  end
end


return _M
