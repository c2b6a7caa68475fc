-- luabatch.ngx.credentials: AWS credentials inside nginx, shared by every
-- worker through a lua_shared_dict and refreshed before they expire by one
-- worker at a time.
--
--   # nginx.conf (http level)
--   lua_shared_dict luabatch 1m;
--   init_by_lua_block { require("luabatch.ngx.credentials").init() }
--   init_worker_by_lua_block { require("luabatch.ngx.credentials").init_worker() }
--
--   -- in a handler or timer
--   local creds = require("luabatch.ngx.credentials").new()
--   local b = require("luabatch.batch").new({ credentials = creds })
--   creds:get() -> { access_key, secret_key, session_token, expiration, source }
--                  | nil, msg, code
--
-- The chain is luabatch.credentials' (explicit, env, profile files, web
-- identity, ECS/EKS container endpoint, IMDS), run with the ngx transport
-- (the container and IMDS endpoints are fetched through nginx: subrequests
-- in request phases, the unix-socket loopback in timers) and ngx.sleep.
--
-- init() (init_by_lua, in the master) takes a snapshot of the AWS_*
-- environment variables into the dict and resolves environment credentials
-- at once: nginx clears the workers' environment (only `env NAME;`
-- directives pass variables on), so this is where they are read.  Workers
-- look variables up in that snapshot first, then os.getenv.
--
-- Dict keys (prefix "cred:" by default; `name` tells providers apart):
--   cred:<name>        JSON of the credentials, TTL = until they expire
--   cred:<name>:lock   held (dict:add, TTL lock_ttl) by the worker fetching
--                      or refreshing; after a failed refresh it stays for
--                      failed_refresh_backoff seconds, so workers do not
--                      hammer the endpoint
--   cred:<name>:error  the last fetch error, for error_ttl seconds, so
--                      workers waiting on a failed first fetch fail at once
--   cred:env           the environment snapshot of init()
-- Credentials with less than refresh_window (300 s) left are refreshed by
-- the first worker that takes the lock; the others keep serving the cached
-- ones meanwhile (no thundering herd).  With none cached, one worker
-- fetches and the others wait for its result (up to `wait` seconds).
-- Secrets are registered with log.add_secret in every worker that reads them.

local log = require "luabatch.log"
local cjson = require "cjson.safe"

local _M = { _VERSION = "0.1.0" }
local mt = { __index = _M }

local type = type
local pairs = pairs
local ipairs = ipairs
local pcall = pcall
local tostring = tostring
local rawget = rawget
local setmetatable = setmetatable
local io_open = io.open
local os_getenv = os.getenv
local str_match = string.match
local str_sub = string.sub
local floor = math.floor

_M.DEFAULT_DICT = "luabatch"
_M.DEFAULT_NAME = "default"
_M.REFRESH_WINDOW = 300          -- refresh when less than this is left
_M.LOCK_TTL = 30                 -- a crashed refresher's lock goes away after this
_M.FAILED_REFRESH_BACKOFF = 30   -- between refresh attempts after a failure
_M.ERROR_TTL = 2                 -- a failed first fetch is reported this long
_M.WAIT = 10                     -- a worker waits this long for another's fetch
_M.TIMER_INTERVAL = 60           -- init_worker's refresh timer

-- Variables read when /proc/self/environ cannot be listed.
local ENV_NAMES = {
  "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
  "AWS_CREDENTIAL_EXPIRATION", "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_REGION",
  "AWS_DEFAULT_REGION", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE",
  "AWS_ROLE_ARN", "AWS_ROLE_SESSION_NAME", "AWS_WEB_IDENTITY_TOKEN_FILE",
  "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
  "AWS_CONTAINER_AUTHORIZATION_TOKEN", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
  "AWS_EC2_METADATA_DISABLED", "AWS_EC2_METADATA_SERVICE_ENDPOINT",
  "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", "AWS_EC2_METADATA_V1_DISABLED",
  "AWS_METADATA_SERVICE_TIMEOUT", "AWS_METADATA_SERVICE_NUM_ATTEMPTS", "AWS_ENDPOINT_URL",
  "AWS_MAX_ATTEMPTS", "AWS_RETRY_MODE", "AWS_CA_BUNDLE", "AWS_STS_REGIONAL_ENDPOINTS",
}


local function get_ngx(opts)
  local ngx = opts and opts.ngx or rawget(_G, "ngx")
  if type(ngx) ~= "table" or type(ngx.shared) ~= "table" then
    error("luabatch.ngx.credentials: not running inside nginx (no ngx.shared)", 3)
  end
  return ngx
end


local function get_dict(ngx, d, fname)
  d = d or _M.DEFAULT_DICT
  if type(d) == "table" then return d end
  local dict = ngx.shared[d]
  if not dict then
    error("bad argument #1 to '" .. fname .. "' (lua_shared_dict '" .. tostring(d)
      .. "' is not declared in nginx.conf)", 3)
  end
  return dict
end


-- The AWS_* variables of this process: /proc/self/environ, else a fixed list.
local function env_snapshot()
  local snap = {}
  local f = io_open("/proc/self/environ", "rb")
  if f then
    local data = f:read("*a") or ""
    f:close()
    for entry in data:gmatch("([^%z]+)") do
      local k, v = str_match(entry, "^(AWS_[%w_]*)=(.*)$")
      if k then snap[k] = v end
    end
    return snap
  end
  for _, k in ipairs(ENV_NAMES) do
    local v = os_getenv(k)
    if v then snap[k] = v end
  end
  return snap
end


local function key_prefix(opts)
  return (opts.prefix or "cred:") .. (opts.name or _M.DEFAULT_NAME)
end


--- init([opts]) in init_by_lua: snapshot the AWS_* environment into the
-- dict and store environment credentials (if any) at once.
-- opts.dict, opts.prefix, opts.name as new(); opts.env (table) replaces
-- the real environment (specs).  Returns the credentials stored or false.
function _M.init(opts)
  opts = opts or {}
  local ngx = get_ngx(opts)
  local dict = get_dict(ngx, opts.dict, "init")
  local snap = opts.env or env_snapshot()
  local prefix = opts.prefix or "cred:"
  local ok, err = dict:set(prefix .. "env", cjson.encode(snap))
  if not ok then
    return nil, "luabatch.ngx.credentials: cannot store the environment: " .. tostring(err), "ENOMEM"
  end
  local ak, sk = snap.AWS_ACCESS_KEY_ID, snap.AWS_SECRET_ACCESS_KEY
  if ak and ak ~= "" and sk and sk ~= "" then
    local base = require "luabatch.credentials"
    local c, msg, code = base.new({ env = snap, providers = { "env" } }):get()
    if not c then return nil, msg, code end
    local p = setmetatable({ _dict = dict, _key = key_prefix(opts), _ngx = ngx,
      _opts = opts }, mt)
    local stored
    stored, msg, code = p:_store(c)
    if not stored then return nil, msg, code end
    return c
  end
  return false
end


--- init_worker([opts]) in init_worker_by_lua: a provider (new(opts)) whose
-- credentials are fetched at once (timer) and checked every
-- opts.interval (60) s, so requests rarely wait for a fetch or refresh.
-- Returns the provider.
function _M.init_worker(opts)
  opts = opts or {}
  local p = _M.new(opts)
  local ngx = p._ngx
  local function tick(premature)
    if premature then return end
    local c, msg = p:get()
    if not c then log.warn("credentials: %s", tostring(msg)) end
  end
  ngx.timer.at(0, tick)
  ngx.timer.every(opts.interval or _M.TIMER_INTERVAL, tick)
  return p
end


--- new([opts]) -> provider
-- opts.dict        lua_shared_dict name or object (default "luabatch")
-- opts.prefix      key prefix (default "cred:"); opts.name (default "default")
-- opts.refresh_window, opts.lock_ttl, opts.failed_refresh_backoff,
-- opts.error_ttl, opts.wait   seconds (see the module comment)
-- opts.transport   transport for the container/IMDS/STS endpoints
--                  (default luabatch.transport.ngx.new())
-- opts.env         table or function(name) (default: init()'s snapshot, then os.getenv)
-- opts.config, opts.providers, opts.profile, opts.region, and the other
--                  options of luabatch.credentials.new
-- opts.ngx         stand-in for ngx (specs)
function _M.new(opts)
  opts = opts or {}
  if type(opts) ~= "table" then
    error("bad argument #1 to 'new' (table expected, got " .. type(opts) .. ")", 2)
  end
  local ngx = get_ngx(opts)
  local dict = get_dict(ngx, opts.dict, "new")
  return setmetatable({
    _ngx = ngx,
    _dict = dict,
    _key = key_prefix(opts),
    _env_key = (opts.prefix or "cred:") .. "env",
    _opts = opts,
    _window = opts.refresh_window or _M.REFRESH_WINDOW,
    _lock_ttl = opts.lock_ttl or _M.LOCK_TTL,
    _backoff = opts.failed_refresh_backoff or _M.FAILED_REFRESH_BACKOFF,
    _error_ttl = opts.error_ttl or _M.ERROR_TTL,
    _wait = opts.wait or _M.WAIT,
    _raw = nil,       -- last JSON read from the dict, and its decoded table
    _cached = nil,
    _inner = nil,
  }, mt)
end


function _M:_now()
  local ngx = self._ngx
  if ngx.update_time then ngx.update_time() end
  return ngx.now()
end


-- getenv of the workers: init()'s snapshot, then the real environment.
function _M:_getenv()
  if not self._env_fn then
    local o = self._opts.env
    if type(o) == "function" then
      self._env_fn = o
    elseif type(o) == "table" then
      self._env_fn = function(n) return o[n] end
    else
      local snap = cjson.decode(self._dict:get(self._env_key) or "null")
      if type(snap) ~= "table" then snap = {} end
      self._env_fn = function(n)
        local v = snap[n]
        if v == nil then v = os_getenv(n) end
        return v
      end
    end
  end
  return self._env_fn
end


-- The chain (luabatch.credentials) over the ngx transport.
function _M:_chain()
  if not self._inner then
    local o = self._opts
    local tngx = require "luabatch.transport.ngx"
    local copts = {}
    for k, v in pairs(o) do copts[k] = v end
    for _, k in ipairs({ "dict", "prefix", "name", "refresh_window", "lock_ttl",
        "failed_refresh_backoff", "error_ttl", "wait", "ngx", "interval" }) do
      copts[k] = nil
    end
    copts.env = self:_getenv()
    copts.transport = o.transport or tngx.new({ ngx = o.ngx })
    copts.sleep = o.sleep or function(s)
      if s > 0 then self._ngx.sleep(s) end
      return true
    end
    copts.clock = function() return self:_now() end
    if not copts.config then
      copts.config = require("luabatch.config").new({ env = copts.env, profile = o.profile,
        region = o.region })
    end
    self._inner = require("luabatch.credentials").new(copts)
  end
  return self._inner
end


-- Credentials cached in the dict (decoded once per worker per value).
function _M:_read()
  local raw = self._dict:get(self._key)
  if raw == nil then return nil end
  if raw ~= self._raw then
    local c = cjson.decode(raw)
    if type(c) ~= "table" or type(c.access_key) ~= "string" then return nil end
    if c.session_token == cjson.null then c.session_token = nil end
    if c.expiration == cjson.null then c.expiration = nil end
    log.add_secret(c.secret_key)
    log.add_secret(c.session_token)
    self._raw, self._cached = raw, c
  end
  return self._cached
end


function _M:_store(c)
  local now = self:_now()
  local ttl = 0
  if c.expiration then
    ttl = c.expiration - now
    if ttl <= 0 then
      return nil, "credentials from " .. tostring(c.source) .. " are already expired", "ExpiredToken"
    end
  end
  local raw = cjson.encode({ access_key = c.access_key, secret_key = c.secret_key,
    session_token = c.session_token, expiration = c.expiration, source = c.source })
  local ok, err = self._dict:set(self._key, raw, ttl)
  if not ok then
    return nil, "credentials: cannot store them in the shared dict: " .. tostring(err), "ENOMEM"
  end
  return true
end


-- Fetch through the chain (the caller holds the lock); store or record.
function _M:_fetch(refreshing, holding)
  local chain = self:_chain()
  chain:invalidate()
  local c, msg, code = chain:get()
  if c then
    local ok, serr, scode = self:_store(c)
    if holding then self._dict:delete(self._key .. ":lock") end
    self._dict:delete(self._key .. ":error")
    if not ok then return nil, serr, scode end
    log.debug("credentials: %s from %s (access key %s...)%s", refreshing and "refreshed"
      or "fetched", tostring(c.source), str_sub(c.access_key, 1, 4),
      c.expiration and (", expire in " .. floor(c.expiration - self:_now()) .. " s") or "")
    return self:_read() or c
  end
  code = code or "CredentialsError"
  -- keep the lock as a back-off; publish the error for waiting workers
  self._dict:set(self._key .. ":lock", "failed", refreshing and self._backoff or self._error_ttl)
  self._dict:set(self._key .. ":error", code .. "\n" .. tostring(msg), self._error_ttl)
  return nil, msg, code
end


local function usable(c, now)
  return c and (not c.expiration or c.expiration > now)
end


--- Current credentials | nil, msg, code.
function _M:get()
  local now = self:_now()
  local c = self:_read()
  if c and (not c.expiration or c.expiration - now > self._window) then return c end
  local lock = self._key .. ":lock"
  if usable(c, now) then
    -- near expiry: one worker refreshes, the others serve c meanwhile
    if self._dict:add(lock, "refresh", self._lock_ttl) then
      local fresh, msg = self:_fetch(true, true)
      if fresh then return fresh end
      log.warn("credentials refresh from %s failed: %s; keeping the current credentials "
        .. "(expire in %d s)", tostring(c.source), tostring(msg), floor(c.expiration - now))
    end
    return c
  end
  -- none (or expired): one worker fetches, the others wait for its answer
  local deadline = now + self._wait
  while true do
    if self._dict:add(lock, "fetch", self._lock_ttl) then return self:_fetch(false, true) end
    local e = self._dict:get(self._key .. ":error")
    if e then
      local code, msg = str_match(e, "^([^\n]*)\n(.*)$")
      return nil, msg, code
    end
    local ok = pcall(self._ngx.sleep, 0.02)
    if not ok then
      -- this phase cannot yield: fetch without the lock
      return self:_fetch(false, false)
    end
    now = self:_now()
    c = self:_read()
    if usable(c, now) then return c end
    if now > deadline then
      return nil, "credentials: no answer from the worker fetching them within "
        .. self._wait .. " s", "ETIMEDOUT"
    end
  end
end


--- Forget the shared credentials (after ExpiredToken); the next get() fetches.
function _M:invalidate()
  self._dict:delete(self._key)
  self._raw, self._cached = nil, nil
end


-- Clients given no credentials inside nginx use this provider
-- (luabatch.credentials.default).
require("luabatch.credentials").use_in_nginx(function(opts)
  return _M.new({ config = opts and opts.config, transport = opts and opts.transport })
end)

return _M
