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
-- The providers are luabatch.credentials.env, .files (profile), .sts
-- (web_identity), .container (ecs) and .imds; each is called with the
-- provider object and returns creds | false, note | nil, msg, code.
--
-- Nothing is probed at require time or in new(): the first :get() does it.
-- Messages name the provider and the endpoint or file, never a secret;
-- tostring() of a provider or of the credentials shows <redacted> for them.

local log = require "luabatch.log"
local common = require "luabatch.credentials.common"
local env = require "luabatch.credentials.env"
local files = require "luabatch.credentials.files"
local sts = require "luabatch.credentials.sts"
local container = require "luabatch.credentials.container"
local imds = require "luabatch.credentials.imds"

local _M = { _VERSION = "0.1.0" }
local mt = { __index = _M }

local type = type
local ipairs = ipairs
local tostring = tostring
local pcall = pcall
local getmetatable = getmetatable
local setmetatable = setmetatable
local require = require
local rawget = rawget
local os_time = os.time
local str_sub = string.sub
local concat = table.concat
local floor = math.floor

local make_creds = common.make
local nonempty = common.nonempty
local creds_mt = common.creds_mt


_M.DEFAULT_CHAIN = { "explicit", "env", "profile", "web_identity", "ecs", "imds" }
_M.ADVISORY_WINDOW = 15 * 60     -- refresh when less than this is left
_M.MANDATORY_WINDOW = 10 * 60    -- (informational: failures here are warned louder)
_M.FAILED_REFRESH_BACKOFF = 30   -- seconds between refresh attempts after a failure


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


---------------------------------------------------------------------------
-- Providers (name -> fn(provider) -> creds | false, note | nil, msg, code)
---------------------------------------------------------------------------

local P = {
  explicit = function(self)
    if self._explicit then return self._explicit end
    return false, "none given"
  end,
  env = env.provider,
  profile = files.provider,
  web_identity = sts.provider,
  ecs = container.provider,
  imds = imds.provider,
}
_M.PROVIDERS = P


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
