-- luabatch.credentials: the AWS credential provider chain, cached and
-- refreshed before expiry.
--
--   local creds = require("luabatch.credentials").new({ config = cfg })
--   local c, msg, code = creds:get()
--   -- c = { access_key=, secret_key=, session_token=, expiration=epoch|nil, source="env"|... }
--
-- Chain (first that yields wins): explicit -> env -> profile (static keys,
-- role_arn + web_identity_token_file / source_profile / credential_source,
-- credential_process) -> web identity from env -> ECS container endpoint ->
-- EC2 IMDSv2.  A provider that is not configured is skipped and noted; a
-- provider that is configured but fails stops the chain with its error
-- (as botocore does), except IMDS, which is only a last resort.
--
-- Nothing is probed at require time or in new(): the first :get() does it.
-- Messages name the provider and the endpoint or file, never a secret;
-- tostring() of a provider or of the credentials shows <redacted> for them.

local log = require "luabatch.log"
local time = require "luabatch.aws.time"

local _M = { _VERSION = "0.1.0" }
local mt = { __index = _M }

local type = type
local ipairs = ipairs
local tostring = tostring
local tonumber = tonumber
local pcall = pcall
local getmetatable = getmetatable
local setmetatable = setmetatable
local require = require
local rawget = rawget
local io_open = io.open
local io_popen = io.popen
local os_time = os.time
local str_find = string.find
local str_match = string.match
local str_lower = string.lower
local str_sub = string.sub
local str_gsub = string.gsub
local concat = table.concat
local floor = math.floor

-- cjson.safe returns nil, err instead of raising (lua-cjson, OpenResty and
-- the executable all ship it).
local cjson = require "cjson.safe"


_M.DEFAULT_CHAIN = { "explicit", "env", "profile", "web_identity", "ecs", "imds" }
_M.ADVISORY_WINDOW = 15 * 60     -- refresh when less than this is left
_M.MANDATORY_WINDOW = 10 * 60    -- (informational: failures here are warned louder)
_M.FAILED_REFRESH_BACKOFF = 30   -- seconds between refresh attempts after a failure

local ECS_HOST = "http://169.254.170.2"
local IMDS_ENDPOINT = "http://169.254.169.254"
local IMDS_ENDPOINT_V6 = "http://[fd00:ec2::254]"
local IMDS_TOKEN_TTL = "21600"
local STS_VERSION = "2011-06-15"
local MAX_ROLE_CHAIN = 5

local TRUE_WORDS = { ["true"] = true, ["1"] = true, yes = true, on = true }

-- Hosts a plain-http AWS_CONTAINER_CREDENTIALS_FULL_URI may name.
local ALLOWED_HTTP_HOSTS = {
  ["localhost"] = true,
  ["169.254.170.2"] = true,       -- ECS
  ["169.254.170.23"] = true,      -- EKS Pod Identity
  ["[fd00:ec2::23]"] = true,      -- EKS Pod Identity, IPv6
  ["[::1]"] = true,
}


---------------------------------------------------------------------------
-- Helpers
---------------------------------------------------------------------------

local function read_file(path)
  local f, err = io_open(path, "rb")
  if not f then return nil, err end
  local s = f:read("*a")
  f:close()
  return s
end


local function trim(s)
  return (str_gsub(str_gsub(s, "^%s+", ""), "%s+$", ""))
end


local function is_true(v)
  return type(v) == "string" and TRUE_WORDS[str_lower(v)] == true
end


local function nonempty(v)
  return type(v) == "string" and v ~= "" and v or nil
end


-- Resolved credentials print (tostring) as their source and access key id
-- only; their fields read, copy and JSON-encode as plain fields.
local creds_mt = { __tostring = function(c)
  return "credentials (" .. tostring(c.source) .. "): access key " .. tostring(c.access_key)
    .. ", secret key <redacted>" .. (c.session_token and ", session token <redacted>" or "")
end }


-- Build a credentials table from raw fields, or nil, why.
local function make_creds(access_key, secret_key, token, expiration, source)
  if not nonempty(access_key) then return nil, "no access key id" end
  if not nonempty(secret_key) then return nil, "no secret access key" end
  local exp
  if expiration ~= nil and expiration ~= "" then
    exp = type(expiration) == "number" and expiration or time.parse_iso8601(expiration)
    if not exp then return nil, "unparsable expiration '" .. tostring(expiration) .. "'" end
  end
  return setmetatable({
    access_key = access_key,
    secret_key = secret_key,
    session_token = nonempty(token),
    expiration = exp,
    source = source,
  }, creds_mt)
end


local function xml_child(el, name)
  if type(el) ~= "table" then return nil end
  for i = 1, #el do
    if el[i].name == name then return el[i] end
  end
  return nil
end


local function xml_text(el, name)
  local c = xml_child(el, name)
  return c and c.text or nil
end


local function parse_url(url)
  local scheme, rest = str_match(url, "^(%a[%w+.-]*)://(.*)$")
  if not scheme then return nil end
  local authority = str_match(rest, "^([^/?#]*)")
  local host = authority:gsub("^.*@", "")
  if str_sub(host, 1, 1) == "[" then
    host = str_match(host, "^(%[[^%]]*%])") or host
  else
    host = str_gsub(host, ":%d*$", "")
  end
  return str_lower(scheme), str_lower(host)
end


local function is_loopback(host)
  if ALLOWED_HTTP_HOSTS[host] then return true end
  local a = str_match(host, "^127%.(%d+)%.(%d+)%.(%d+)$")
  return a ~= nil
end


---------------------------------------------------------------------------
-- The provider object
---------------------------------------------------------------------------

-- The provider that replaces the default chain inside nginx (registered by
-- luabatch.ngx.credentials when it is loaded: cached across workers).
local nginx_default

--- use_in_nginx(fn): fn(opts) -> provider, used by default() inside nginx
-- with a `luabatch` shared dict.
function _M.use_in_nginx(fn) nginx_default = fn end

--- default(opts) -> the provider a client uses when given none: inside
-- nginx (with a `luabatch` shared dict) the registered one, else new(opts).
function _M.default(opts)
  if nginx_default and require("luabatch.transport.default").in_nginx() then
    local shared = rawget(_G, "ngx").shared
    if type(shared) == "table" and shared.luabatch then return nginx_default(opts) end
  end
  return _M.new(opts)
end

--- A provider that always yields the same credentials (for request.new).
function _M.static(c)
  if type(c) ~= "table" then
    error("bad argument #1 to 'static' (table expected, got " .. type(c) .. ")", 2)
  end
  local creds, why = make_creds(c.access_key, c.secret_key, c.session_token, c.expiration,
    c.source or "explicit")
  if not creds then error("bad argument #1 to 'static' (" .. why .. ")", 2) end
  log.add_secret(creds.secret_key)
  log.add_secret(creds.session_token)
  return setmetatable({ _cached = creds, _static = true }, mt)
end


--- credentials.new(opts) -> provider
-- opts.config       luabatch.config object (default config.new({ env = opts.env }))
-- opts.transport    transport with :request(opts) (default: luabatch.transport.curl, lazily)
-- opts.providers    list of provider names (see DEFAULT_CHAIN) or functions
--                   fn(provider) -> creds | false, note | nil, msg, code
-- opts.env          table or function(name) (default: the config's environment)
-- opts.access_key, opts.secret_key, opts.session_token   explicit credentials
-- opts.clock        function() -> epoch seconds (default os.time)
-- opts.sleep        function(seconds) (default core.sleep)
-- opts.core         table standing in for luabatch.core (specs)
-- opts.advisory_window, opts.failed_refresh_backoff   seconds
-- opts.container_timeout (2), opts.container_attempts (3),
-- opts.imds_timeout, opts.imds_attempts (default from env/profile: 1, 1)
-- opts.sts_attempts (3), opts.role_session_name
function _M.new(opts)
  opts = opts or {}
  if type(opts) ~= "table" then
    error("bad argument #1 to 'new' (table expected, got " .. type(opts) .. ")", 2)
  end
  local cfg = opts.config
  if not cfg then
    cfg = require("luabatch.config").new({ env = opts.env, profile = opts.profile,
      region = opts.region })
  end
  local getenv
  if type(opts.env) == "function" then
    getenv = opts.env
  elseif type(opts.env) == "table" then
    local t = opts.env
    getenv = function(n) return t[n] end
  elseif opts.env ~= nil then
    error("bad argument #1 to 'new' (opts.env must be a table or function)", 2)
  else
    getenv = function(n) return cfg:env(n) end
  end
  local providers = opts.providers or _M.DEFAULT_CHAIN
  for i, p in ipairs(providers) do
    if type(p) == "string" then
      if not _M.PROVIDERS[p] then
        error("bad argument #1 to 'new' (unknown provider '" .. p .. "')", 2)
      end
    elseif type(p) ~= "function" then
      error("bad argument #1 to 'new' (providers[" .. i .. "] must be a name or function)", 2)
    end
  end
  local explicit
  if opts.access_key or opts.secret_key then
    local why
    explicit, why = make_creds(opts.access_key, opts.secret_key, opts.session_token, nil, "explicit")
    if not explicit then error("bad argument #1 to 'new' (explicit credentials: " .. why .. ")", 2) end
  end
  return setmetatable({
    _cfg = cfg,
    _getenv = getenv,
    _transport = opts.transport,
    _providers = providers,
    _explicit = explicit,
    _clock = opts.clock or os_time,
    _sleep = opts.sleep,
    _core = opts.core,
    _opts = opts,
    _advisory = opts.advisory_window or _M.ADVISORY_WINDOW,
    _backoff = opts.failed_refresh_backoff or _M.FAILED_REFRESH_BACKOFF,
    _cached = nil,
    _cached_by = nil,
    _next_try = nil,
  }, mt)
end


function _M:env(name)
  local v = self._getenv(name)
  if v == nil or v == "" then return nil end
  return v
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


function _M:sleep(s)
  if self._sleep then return self._sleep(s) end
  local default = require "luabatch.transport.default"
  if default.in_nginx() then return default.sleep(s) end
  return self:core().sleep(s)
end


-- One HTTP request through the transport; returns resp | nil, msg, code.
local function http(self, opts)
  local t = self:transport()
  local ok, resp, msg, code = pcall(t.request, t, opts)
  if not ok then return nil, tostring(resp), "EIO" end
  return resp, msg, code
end


---------------------------------------------------------------------------
-- STS (query protocol) through luabatch.request
---------------------------------------------------------------------------

local function sts_call(self, action, params, signing_creds, target)
  local request = require "luabatch.request"
  local retry = require "luabatch.retry"
  local region = self._cfg:region()
  local endpoint, msg, code = self._cfg:endpoint("sts", region)
  if not endpoint then return nil, msg, code end
  local client = request.new({
    config = self._cfg,
    transport = self:transport(),
    service = "sts",
    region = region or "us-east-1",
    endpoint = endpoint,
    protocol = "query",
    unsigned = signing_creds == nil,
    credentials = signing_creds and _M.static(signing_creds) or nil,
    retry = retry.new({ max_attempts = self._opts.sts_attempts or 3 }),
    core = self._core,
    sleep = self._sleep,
    timeout = self._opts.sts_timeout or 10,
  })
  params.Action = action
  params.Version = STS_VERSION
  local resp
  resp, msg, code = client:send({ method = "POST", path = "/", params = params,
    operation = action, resource = target })
  if not resp then return nil, msg, code end
  local xml_parse = self:core().xml_parse
  if not xml_parse then
    return nil, action .. " " .. target .. ": core.xml_parse is not available", "ENOTSUP"
  end
  local root, perr = xml_parse(resp.body or "")
  if not root then
    return nil, action .. " " .. target .. ": unparsable STS answer from " .. endpoint .. ": "
      .. tostring(perr), "EPARSE"
  end
  local result = xml_child(root, action .. "Result")
  local c = xml_child(result, "Credentials")
  if not c then
    return nil, action .. " " .. target .. ": no Credentials in the STS answer from " .. endpoint,
      "EPARSE"
  end
  local creds, why = make_creds(xml_text(c, "AccessKeyId"), xml_text(c, "SecretAccessKey"),
    xml_text(c, "SessionToken"), xml_text(c, "Expiration"), nil)
  if not creds then
    return nil, action .. " " .. target .. ": bad credentials in the STS answer: " .. why, "EPARSE"
  end
  return creds
end


local function session_name(self, configured)
  return configured or self._opts.role_session_name or ("luabatch-" .. floor(self._clock()))
end


local function web_identity(self, role_arn, token_file, sess, source)
  local token, err = read_file(token_file)
  if not token then
    return nil, "web identity: cannot read token file " .. token_file .. ": " .. tostring(err),
      "ENOENT"
  end
  token = trim(token)
  if token == "" then
    return nil, "web identity: token file " .. token_file .. " is empty", "InvalidIdentityToken"
  end
  local creds, msg, code = sts_call(self, "AssumeRoleWithWebIdentity", {
    RoleArn = role_arn,
    RoleSessionName = session_name(self, sess),
    WebIdentityToken = token,
  }, nil, role_arn)
  if not creds then return nil, "web identity: " .. msg, code end
  creds.source = source
  return creds
end


---------------------------------------------------------------------------
-- Providers
---------------------------------------------------------------------------

local P = {}
_M.PROVIDERS = P


function P.explicit(self)
  if self._explicit then return self._explicit end
  return false, "none given"
end


function P.env(self)
  local ak = self:env("AWS_ACCESS_KEY_ID")
  local sk = self:env("AWS_SECRET_ACCESS_KEY")
  if not ak and not sk then return false, "AWS_ACCESS_KEY_ID not set" end
  if not ak then
    return nil, "env: AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not", "PartialCredentials"
  end
  if not sk then
    return nil, "env: AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not", "PartialCredentials"
  end
  return make_creds(ak, sk, self:env("AWS_SESSION_TOKEN") or self:env("AWS_SECURITY_TOKEN"),
    self:env("AWS_CREDENTIAL_EXPIRATION"), "env")
end


-- credential_process: run the command, parse Version 1 JSON.
local function run_process(self, cmd, where)
  local marker = "LUABATCH_EXIT_STATUS:"     -- no pattern magic characters
  local f, err = io_popen(cmd .. "\nprintf '\\n" .. marker .. "%s' \"$?\"", "r")
  if not f then
    return nil, "credential_process (" .. where .. "): cannot run: " .. tostring(err),
      "CredentialProcessError"
  end
  local out = f:read("*a") or ""
  f:close()
  local body, status = str_match(out, "^(.*)\n" .. marker .. "(%d+)$")
  if not body then body, status = out, "0" end
  local first = str_match(cmd, "^%s*(%S+)") or "?"
  if status ~= "0" then
    return nil, "credential_process (" .. where .. "): command '" .. first .. "' exited with status "
      .. status, "CredentialProcessError"
  end
  local doc = cjson.decode(body)
  if type(doc) ~= "table" then
    return nil, "credential_process (" .. where .. "): command '" .. first
      .. "' did not print a JSON object", "CredentialProcessError"
  end
  if doc.Version ~= 1 then
    return nil, "credential_process (" .. where .. "): unsupported Version "
      .. tostring(doc.Version) .. " (expected 1)", "CredentialProcessError"
  end
  local creds, why = make_creds(doc.AccessKeyId, doc.SecretAccessKey, doc.SessionToken,
    doc.Expiration, "process")
  if not creds then
    return nil, "credential_process (" .. where .. "): " .. why, "CredentialProcessError"
  end
  return creds
end


local resolve_profile     -- forward


-- role_arn in a profile: source_profile / credential_source / web identity.
local function assume_role(self, name, p, depth, seen)
  local where = "profile " .. name
  if p.web_identity_token_file then
    return web_identity(self, p.role_arn, self._cfg.expand_home(self._cfg, p.web_identity_token_file),
      p.role_session_name, "web_identity")
  end
  if p.mfa_serial then
    return nil, where .. ": role_arn with mfa_serial is not supported (no interactive MFA)",
      "NotSupported"
  end
  local source, msg, code
  if p.source_profile then
    if seen[p.source_profile] and p.source_profile ~= name then
      return nil, where .. ": source_profile loop through '" .. p.source_profile .. "'",
        "InvalidConfig"
    end
    if depth >= MAX_ROLE_CHAIN then
      return nil, where .. ": role chain longer than " .. MAX_ROLE_CHAIN, "InvalidConfig"
    end
    seen[name] = true
    local sp, found = self._cfg:profile(p.source_profile)
    if not found then
      return nil, where .. ": source_profile '" .. p.source_profile .. "' not found in "
        .. self._cfg:describe_files(), "ProfileNotFound"
    end
    if p.source_profile == name then
      -- a profile naming itself uses its own static keys
      source, msg = make_creds(sp.aws_access_key_id, sp.aws_secret_access_key,
        sp.aws_session_token, nil, "profile")
      if not source then return nil, where .. ": source_profile is itself and " .. msg, "InvalidConfig" end
    else
      source, msg, code = resolve_profile(self, p.source_profile, sp, depth + 1, seen)
      if source == false then
        return nil, where .. ": source_profile '" .. p.source_profile .. "' has no credentials",
          "InvalidConfig"
      end
      if not source then return nil, msg, code end
    end
  elseif p.credential_source then
    local cs = p.credential_source
    local fn = (cs == "Environment" and P.env) or (cs == "Ec2InstanceMetadata" and P.imds)
      or (cs == "EcsContainer" and P.ecs)
    if not fn then
      return nil, where .. ": unknown credential_source '" .. cs .. "'", "InvalidConfig"
    end
    source, msg, code = fn(self)
    if source == false then
      return nil, where .. ": credential_source " .. cs .. " found nothing (" .. msg .. ")",
        "NoCredentials"
    end
    if not source then return nil, msg, code end
  else
    return nil, where .. ": role_arn needs source_profile, credential_source or "
      .. "web_identity_token_file", "InvalidConfig"
  end
  local params = {
    RoleArn = p.role_arn,
    RoleSessionName = session_name(self, p.role_session_name),
  }
  if p.external_id then params.ExternalId = p.external_id end
  if p.duration_seconds then params.DurationSeconds = p.duration_seconds end
  local creds
  creds, msg, code = sts_call(self, "AssumeRole", params, source, p.role_arn)
  if not creds then return nil, where .. ": " .. msg, code end
  creds.source = "assume_role"
  return creds
end


-- Credentials of one profile table: creds | false, note | nil, msg, code.
resolve_profile = function(self, name, p, depth, seen)
  local where = "profile " .. name
  if p.role_arn then return assume_role(self, name, p, depth, seen) end
  local ak, sk = nonempty(p.aws_access_key_id), nonempty(p.aws_secret_access_key)
  if ak or sk then
    if not (ak and sk) then
      return nil, where .. ": " .. (ak and "aws_secret_access_key" or "aws_access_key_id")
        .. " missing in " .. self._cfg:describe_files(), "PartialCredentials"
    end
    return make_creds(ak, sk, p.aws_session_token or p.aws_security_token, nil, "profile")
  end
  if nonempty(p.credential_process) then
    return run_process(self, p.credential_process, where)
  end
  if p.sso_session or p.sso_start_url then
    return nil, where .. ": SSO profiles are not supported; run `aws sso login` and export "
      .. "credentials, or use credential_process", "NotSupported"
  end
  return false, where .. " has no credentials"
end


function P.profile(self)
  local name, explicit = self._cfg:profile_name()
  local p, found = self._cfg:profile(name)
  if not found then
    if explicit then
      return nil, "profile '" .. name .. "' not found in " .. self._cfg:describe_files(),
        "ProfileNotFound"
    end
    return false, "no profile '" .. name .. "' in " .. self._cfg:describe_files()
  end
  local creds, msg, code = resolve_profile(self, name, p, 0, {})
  if creds == false then return false, msg .. " (" .. self._cfg:describe_files() .. ")" end
  return creds, msg, code
end


function P.web_identity(self)
  local file = self:env("AWS_WEB_IDENTITY_TOKEN_FILE")
  local role = self:env("AWS_ROLE_ARN")
  if not file then return false, "AWS_WEB_IDENTITY_TOKEN_FILE not set" end
  if not role then
    return nil, "web identity: AWS_WEB_IDENTITY_TOKEN_FILE is set but AWS_ROLE_ARN is not",
      "InvalidConfig"
  end
  return web_identity(self, role, file, self:env("AWS_ROLE_SESSION_NAME"), "web_identity")
end


function P.ecs(self)
  local rel = self:env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
  local full = self:env("AWS_CONTAINER_CREDENTIALS_FULL_URI")
  local url
  if rel then
    url = ECS_HOST .. (str_sub(rel, 1, 1) == "/" and rel or "/" .. rel)
  elseif full then
    local scheme, host = parse_url(full)
    if not scheme then
      return nil, "ecs: AWS_CONTAINER_CREDENTIALS_FULL_URI is not a URL: " .. full, "InvalidConfig"
    end
    if scheme ~= "https" and not (scheme == "http" and is_loopback(host)) then
      return nil, "ecs: AWS_CONTAINER_CREDENTIALS_FULL_URI host " .. host .. " is not allowed over "
        .. scheme .. " (https, or http to loopback or the ECS/EKS agent only)", "InvalidConfig"
    end
    url = full
  else
    return false, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI/FULL_URI not set"
  end
  local headers = { { "Accept", "application/json" } }
  local token_file = self:env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")
  local token = self:env("AWS_CONTAINER_AUTHORIZATION_TOKEN")
  if token_file then
    local t, err = read_file(token_file)
    if not t then
      return nil, "ecs: cannot read AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE " .. token_file .. ": "
        .. tostring(err), "ENOENT"
    end
    token = trim(t)
  end
  if token then
    if str_find(token, "[\r\n]") then
      return nil, "ecs: the container authorization token contains a line break", "InvalidConfig"
    end
    headers[#headers + 1] = { "Authorization", token }
  end
  local attempts = self._opts.container_attempts or 3
  local timeout = self._opts.container_timeout or 2
  local resp, msg, code
  for i = 1, attempts do
    resp, msg, code = http(self, { method = "GET", url = url, headers = headers,
      connect_timeout = timeout, timeout = timeout })
    if resp and resp.status == 200 then break end
    if resp then
      local doc = cjson.decode(resp.body or "")
      local detail = type(doc) == "table" and (doc.message or doc.Message) or nil
      msg = "HTTP " .. resp.status .. (detail and (": " .. tostring(detail)) or "")
      code = "HTTP_" .. resp.status
      if resp.status < 500 and resp.status ~= 429 then break end   -- 4xx: no point retrying
    end
    if i < attempts then
      local ok, _, c = self:sleep(self._opts.container_retry_delay or 0.5)
      if ok == nil and c == "ECANCELED" then return nil, "ecs: interrupted", "ECANCELED" end
    end
  end
  if not resp or resp.status ~= 200 then
    return nil, "ecs: container credentials endpoint " .. url .. ": " .. tostring(msg), code
  end
  local doc = cjson.decode(resp.body or "")
  if type(doc) ~= "table" then
    return nil, "ecs: container credentials endpoint " .. url .. " answered no JSON object", "EPARSE"
  end
  local creds, why = make_creds(doc.AccessKeyId, doc.SecretAccessKey, doc.Token, doc.Expiration, "ecs")
  if not creds then
    return nil, "ecs: container credentials endpoint " .. url .. ": " .. why, "EPARSE"
  end
  return creds
end


function P.imds(self)
  local cfg = self._cfg
  local disabled = self:env("AWS_EC2_METADATA_DISABLED")
  if is_true(disabled) then return false, "AWS_EC2_METADATA_DISABLED=true" end
  local base = self:env("AWS_EC2_METADATA_SERVICE_ENDPOINT") or cfg:profile_value("ec2_metadata_service_endpoint")
  if not base then
    local mode = self:env("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE")
      or cfg:profile_value("ec2_metadata_service_endpoint_mode")
    base = (mode and str_lower(mode) == "ipv6") and IMDS_ENDPOINT_V6 or IMDS_ENDPOINT
  end
  base = str_gsub(base, "/+$", "")
  local timeout = self._opts.imds_timeout or tonumber(self:env("AWS_METADATA_SERVICE_TIMEOUT")
    or cfg:profile_value("metadata_service_timeout") or "") or 1
  local attempts = self._opts.imds_attempts or tonumber(self:env("AWS_METADATA_SERVICE_NUM_ATTEMPTS")
    or cfg:profile_value("metadata_service_num_attempts") or "") or 1
  local v1_disabled = is_true(self:env("AWS_EC2_METADATA_V1_DISABLED")
    or cfg:profile_value("ec2_metadata_v1_disabled"))

  local function call(method, path, headers)
    local resp, msg, code
    for i = 1, attempts do
      resp, msg, code = http(self, { method = method, url = base .. path, headers = headers,
        connect_timeout = timeout, timeout = timeout })
      if resp and resp.status < 500 then return resp end
      if resp then msg, code = "HTTP " .. resp.status, "HTTP_" .. resp.status end
      if code == "ECANCELED" then break end
      if i < attempts then self:sleep(0.1) end
    end
    return nil, msg, code
  end

  local where = "imds " .. base
  -- IMDSv2 session token
  local resp, msg, code = call("PUT", "/latest/api/token",
    { { "X-aws-ec2-metadata-token-ttl-seconds", IMDS_TOKEN_TTL } })
  if not resp then
    if code == "ECANCELED" then return nil, where .. ": interrupted", code end
    return false, where .. ": " .. tostring(msg)
  end
  local token
  if resp.status == 200 then
    token = trim(resp.body or "")
  elseif resp.status == 403 or resp.status == 404 or resp.status == 405 then
    if v1_disabled then
      return false, where .. ": no IMDSv2 token (HTTP " .. resp.status .. ") and IMDSv1 is disabled"
    end
  else
    return false, where .. ": token request HTTP " .. resp.status
  end
  local headers = token and { { "X-aws-ec2-metadata-token", token } } or {}
  resp, msg = call("GET", "/latest/meta-data/iam/security-credentials/", headers)
  if not resp then return false, where .. ": " .. tostring(msg) end
  if resp.status ~= 200 then
    return false, where .. ": no instance role (HTTP " .. resp.status .. ")"
  end
  local role = str_match(resp.body or "", "^%s*([^\r\n]+)")
  if not role then return false, where .. ": no instance role attached" end
  role = trim(role)
  resp, msg, code = call("GET", "/latest/meta-data/iam/security-credentials/" .. role, headers)
  if not resp or resp.status ~= 200 then
    return nil, where .. ": credentials of role " .. role .. ": "
      .. (resp and ("HTTP " .. resp.status) or tostring(msg)), resp and ("HTTP_" .. resp.status) or code
  end
  local doc = cjson.decode(resp.body or "")
  if type(doc) ~= "table" then
    return nil, where .. ": credentials of role " .. role .. ": no JSON object", "EPARSE"
  end
  if doc.Code and doc.Code ~= "Success" then
    return nil, where .. ": credentials of role " .. role .. ": " .. tostring(doc.Code), "IMDSError"
  end
  local creds, why = make_creds(doc.AccessKeyId, doc.SecretAccessKey, doc.Token, doc.Expiration, "imds")
  if not creds then return nil, where .. ": credentials of role " .. role .. ": " .. why, "EPARSE" end
  return creds
end


---------------------------------------------------------------------------
-- Chain, cache and refresh
---------------------------------------------------------------------------

local function provider_name(p, i)
  if type(p) == "string" then return p end
  return "custom#" .. i
end


-- A provider prints as its kind and what it holds, never a secret.
mt.__tostring = function(self)
  local c = self._cached
  if self._static then return "credentials provider static: " .. tostring(c) end
  local names = {}
  for i, p in ipairs(self._providers) do names[i] = provider_name(p, i) end
  return "credentials provider chain " .. concat(names, ",") .. ": "
    .. (c and tostring(c) or "not resolved")
end


local function run_one(self, p)
  local fn = type(p) == "string" and P[p] or p
  local ok, a, b, c = pcall(fn, self)
  if not ok then return nil, "provider failed: " .. tostring(a), "EIO" end
  return a, b, c
end


local function accept(self, creds, name)
  if type(creds) ~= "table" or not nonempty(creds.access_key) or not nonempty(creds.secret_key) then
    return nil, "credentials from " .. name .. " lack an access key or secret key", "InvalidCredentials"
  end
  creds.source = creds.source or name
  if getmetatable(creds) == nil then setmetatable(creds, creds_mt) end
  log.add_secret(creds.secret_key)
  log.add_secret(creds.session_token)
  self._cached = creds
  self._cached_by = name
  self._next_try = nil
  log.debug("credentials: using %s (access key %s...)%s", creds.source,
    str_sub(creds.access_key, 1, 4),
    creds.expiration and (", expire in " .. floor(creds.expiration - self._clock()) .. " s") or "")
  return creds
end


local function run_chain(self)
  local tried = {}
  for i, p in ipairs(self._providers) do
    local name = provider_name(p, i)
    local creds, msg, code = run_one(self, p)
    if creds then return accept(self, creds, name) end
    if creds == false then
      tried[#tried + 1] = name .. " (" .. tostring(msg) .. ")"
    else
      return nil, tostring(msg), code or "CredentialsError"
    end
  end
  return nil, "no AWS credentials found; tried: " .. concat(tried, "; "), "NoCredentials"
end


--- Current credentials: { access_key, secret_key, session_token,
-- expiration, source } | nil, msg, code.  Cached; refreshed when less than
-- the advisory window is left.  If a refresh fails while the current ones
-- are still valid, they are kept (with a warning).
function _M:get()
  local c = self._cached
  if self._static then return c end
  local now = self._clock()
  if c then
    if not c.expiration or c.expiration - now > self._advisory then return c end
    if self._next_try and now < self._next_try and c.expiration > now then return c end
    -- refresh through the provider that gave them, else the whole chain
    local name = self._cached_by
    local p
    for i, q in ipairs(self._providers) do
      if provider_name(q, i) == name then p = q end
    end
    local creds, msg, code
    if p then
      creds, msg, code = run_one(self, p)
      if creds then return accept(self, creds, name) end
      if creds == false then creds, msg, code = run_chain(self) end
    else
      creds, msg, code = run_chain(self)
    end
    if creds then return creds end
    if c.expiration > now then
      self._next_try = now + self._backoff
      log.warn("credentials refresh from %s failed: %s; keeping the current credentials "
        .. "(expire in %d s)", tostring(name), tostring(msg), floor(c.expiration - now))
      return c
    end
    return nil, "credentials from " .. tostring(name) .. " expired and refresh failed: "
      .. tostring(msg), code
  end
  return run_chain(self)
end


--- Forget cached credentials (the next get() resolves again).
function _M:invalidate()
  if not self._static then
    self._cached = nil
    self._cached_by = nil
    self._next_try = nil
  end
end


--- credentials.resolve(opts) -> credentials | nil, msg, code  (new(opts):get())
function _M.resolve(opts)
  return _M.new(opts):get()
end


return _M
