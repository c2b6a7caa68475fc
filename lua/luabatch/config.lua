-- luabatch.config: region, profile, shared config files, endpoints, retry
-- settings and CA bundle, resolved the way the AWS SDKs do.
--
--   local cfg = require("luabatch.config").new({ region = "eu-west-1" })
--   cfg:region()            -> "eu-west-1" | nil, msg, "NoRegion"
--   cfg:endpoint("s3")      -> "https://s3.eu-west-1.amazonaws.com", source
--
-- Precedence everywhere: explicit option > environment > profile > default.
-- Nothing is read at require time: files are parsed on first use and cached
-- in the config object.  The environment is injectable (opts.env = table or
-- function(name)) so specs never touch the real one.

local log = require "luabatch.log"

local _M = { _VERSION = "0.1.0" }
local mt = { __index = _M }

local type = type
local pairs = pairs
local ipairs = ipairs
local tostring = tostring
local tonumber = tonumber
local io_open = io.open
local os_getenv = os.getenv
local str_match = string.match
local str_gsub = string.gsub
local str_lower = string.lower
local str_upper = string.upper
local str_sub = string.sub
local str_find = string.find
local concat = table.concat


-- Service ids as botocore names them (AWS_ENDPOINT_URL_<ID>, with spaces
-- turned into "_" and upper-cased; the services-section key is the lower
-- case form).  Short names are accepted too (AWS_ENDPOINT_URL_LOGS).
local SERVICE_IDS = {
  s3 = "S3",
  batch = "Batch",
  logs = "CloudWatch Logs",
  sts = "STS",
  ecr = "ECR",
  iam = "IAM",
  ec2 = "EC2",
}

-- Endpoint host prefix per service name (default: the name itself).
local ENDPOINT_PREFIX = {}

local RETRY_MODES = { standard = true, adaptive = true, legacy = true }

local TRUE_WORDS = { ["true"] = true, ["1"] = true, yes = true, on = true }

_M.SERVICE_IDS = SERVICE_IDS


---------------------------------------------------------------------------
-- INI parsing (AWS shared config/credentials format)
---------------------------------------------------------------------------

local function trim(s)
  return (str_gsub(s, "^%s+", ""):gsub("%s+$", ""))
end


-- Strip an inline comment: " #" or " ;" (whitespace before) starts one.
local function strip_inline_comment(v)
  local i = str_find(v, "%s[#;]")
  if i then v = str_sub(v, 1, i - 1) end
  return v
end


--- Parse the text of a shared config/credentials file.
-- Returns a list of sections { name = "profile x", props = { k = v | {sub} },
-- line = n } in file order (a section name appearing twice is merged later).
-- Malformed lines are reported through `warn(lineno, text)` and skipped.
function _M.parse_ini(text, warn)
  local sections = {}
  local current, last_key, last_sub
  local lineno = 0
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    lineno = lineno + 1
    line = str_gsub(line, "\r$", "")
    local indented = str_find(line, "^[ \t]") ~= nil
    local body = trim(line)
    if body == "" or str_find(body, "^[#;]") then
      -- blank or comment: nothing
    elseif not indented and str_sub(body, 1, 1) == "[" then
      local name = str_match(body, "^%[%s*(.-)%s*%]")
      if not name or name == "" then
        if warn then warn(lineno, "bad section header") end
        current = nil
      else
        current = { name = name, props = {}, line = lineno }
        sections[#sections + 1] = current
      end
      last_key, last_sub = nil, nil
    elseif not current then
      if warn then warn(lineno, "property outside any section") end
    elseif indented and last_key then
      -- continuation: a sub-property ("  addressing_style = path") when the
      -- parent value was empty, else a continued value
      local k, v = str_match(body, "^([^=]-)%s*=%s*(.*)$")
      if last_sub and k and k ~= "" then
        last_sub[str_lower(trim(k))] = trim(strip_inline_comment(v))
      elseif last_sub then
        if warn then warn(lineno, "bad sub-property") end
      else
        current.props[last_key] = current.props[last_key] .. "\n" .. body
      end
    else
      local k, v = str_match(body, "^([^=]-)%s*=%s*(.*)$")
      if not k or k == "" then
        if warn then warn(lineno, "expected key = value") end
        last_key, last_sub = nil, nil
      else
        k = str_lower(trim(k))
        v = trim(strip_inline_comment(v))
        if v == "" then
          last_sub = {}
          current.props[k] = last_sub
        else
          last_sub = nil
          current.props[k] = v
        end
        last_key = k
      end
    end
  end
  -- an empty parent that got no sub-property is an empty string value
  for _, sec in ipairs(sections) do
    for k, v in pairs(sec.props) do
      if type(v) == "table" and next(v) == nil then sec.props[k] = "" end
    end
  end
  return sections
end


local function read_file(path)
  local f = io_open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end


local function merge_into(dst, src)
  for k, v in pairs(src) do
    if type(v) == "table" and type(dst[k]) == "table" then
      for k2, v2 in pairs(v) do dst[k][k2] = v2 end
    elseif type(v) == "table" then
      local copy = {}
      for k2, v2 in pairs(v) do copy[k2] = v2 end
      dst[k] = copy
    else
      dst[k] = v
    end
  end
end


---------------------------------------------------------------------------
-- Construction and environment
---------------------------------------------------------------------------

local function make_env(env)
  if env == nil then return os_getenv end
  if type(env) == "function" then return env end
  if type(env) == "table" then return function(name) return env[name] end end
  error("bad argument #1 to 'new' (opts.env must be a table or function, got " .. type(env) .. ")", 3)
end


--- config.new(opts) -> config
-- opts.region, opts.profile        explicit values (win over everything)
-- opts.env                         table or function(name) (default os.getenv)
-- opts.files = { config = path, credentials = path }   (default from
--                                  AWS_CONFIG_FILE / AWS_SHARED_CREDENTIALS_FILE,
--                                  then ~/.aws/config and ~/.aws/credentials)
-- opts.endpoint_url                endpoint for every service
-- opts.endpoints = { s3 = url }    endpoint per service
-- opts.max_attempts, opts.retry_mode, opts.ca_bundle
function _M.new(opts)
  opts = opts or {}
  if type(opts) ~= "table" then
    error("bad argument #1 to 'new' (table expected, got " .. type(opts) .. ")", 2)
  end
  local self = setmetatable({
    _opts = opts,
    _getenv = make_env(opts.env),
    _files = nil,          -- parsed lazily
  }, mt)
  return self
end


--- Read an environment variable through the injected environment; empty
-- strings count as unset.
function _M:env(name)
  local v = self._getenv(name)
  if v == nil or v == "" then return nil end
  return v
end


local function expand_home(self, path)
  if str_sub(path, 1, 1) == "~" then
    local home = self:env("HOME") or self:env("USERPROFILE") or ""
    return home .. str_sub(path, 2)
  end
  return path
end
_M.expand_home = expand_home


--- Paths of the shared files: config_path, credentials_path.
function _M:file_paths()
  local files = self._opts.files or {}
  local cfg = files.config or self:env("AWS_CONFIG_FILE") or "~/.aws/config"
  local creds = files.credentials or self:env("AWS_SHARED_CREDENTIALS_FILE") or "~/.aws/credentials"
  return expand_home(self, cfg), expand_home(self, creds)
end


-- Parse both files once: profiles (merged, credentials file wins), the
-- services sections, sso-session sections.
local function load_files(self)
  if self._files then return self._files end
  local config_path, creds_path = self:file_paths()
  local profiles, services, sso_sessions = {}, {}, {}
  local sources = {}     -- profile name -> list of files it appears in

  local function add_profile(name, props, path)
    local p = profiles[name]
    if not p then
      p = {}
      profiles[name] = p
    end
    merge_into(p, props)
    local s = sources[name] or {}
    s[#s + 1] = path
    sources[name] = s
  end

  local text = read_file(config_path)
  if text then
    local sections = _M.parse_ini(text, function(n, what)
      log.warn("config file %s:%d: %s (line ignored)", config_path, n, what)
    end)
    for _, sec in ipairs(sections) do
      local name = sec.name
      local pname = str_match(name, "^profile%s+(.+)$")
      if pname then
        add_profile(trim(pname), sec.props, config_path)
      elseif name == "default" then
        add_profile("default", sec.props, config_path)
      else
        local sname = str_match(name, "^services%s+(.+)$")
        if sname then
          services[trim(sname)] = services[trim(sname)] or {}
          merge_into(services[trim(sname)], sec.props)
        else
          local ss = str_match(name, "^sso%-session%s+(.+)$")
          if ss then sso_sessions[trim(ss)] = sec.props end
          -- other sections without the "profile " prefix are not profiles
        end
      end
    end
  end
  text = read_file(creds_path)
  if text then
    local sections = _M.parse_ini(text, function(n, what)
      log.warn("credentials file %s:%d: %s (line ignored)", creds_path, n, what)
    end)
    for _, sec in ipairs(sections) do
      add_profile(sec.name, sec.props, creds_path)
    end
  end
  self._files = {
    profiles = profiles,
    services = services,
    sso_sessions = sso_sessions,
    sources = sources,
    config_path = config_path,
    credentials_path = creds_path,
  }
  return self._files
end


--- Drop the parsed files (they are re-read on next use).
function _M:reload()
  self._files = nil
end


---------------------------------------------------------------------------
-- Profile and region
---------------------------------------------------------------------------

--- The profile name: explicit > AWS_PROFILE > AWS_DEFAULT_PROFILE > "default".
-- Second value: true when the name was chosen explicitly (opts or env).
function _M:profile_name()
  local p = self._opts.profile
  if p then return p, true end
  p = self:env("AWS_PROFILE") or self:env("AWS_DEFAULT_PROFILE")
  if p then return p, true end
  return "default", false
end


--- The merged profile table (config file, then credentials file on top).
-- profile([name]) -> table (empty when missing), found(bool), files(list)
function _M:profile(name)
  name = name or self:profile_name()
  local files = load_files(self)
  local p = files.profiles[name]
  if p then return p, true, files.sources[name] end
  return {}, false, {}
end


--- Names of all profiles found in the files (sorted).
function _M:profile_names()
  local names = {}
  for k in pairs(load_files(self).profiles) do names[#names + 1] = k end
  table.sort(names)
  return names
end


--- A profile value (string) or nil.
function _M:profile_value(key, name)
  local v = self:profile(name)[key]
  if type(v) == "string" and v ~= "" then return v end
  return nil
end


--- The region: explicit > AWS_REGION > AWS_DEFAULT_REGION > profile region.
-- Returns region, source | nil, msg, "NoRegion".
function _M:region()
  local r = self._opts.region
  if r then return r, "explicit" end
  r = self:env("AWS_REGION")
  if r then return r, "AWS_REGION" end
  r = self:env("AWS_DEFAULT_REGION")
  if r then return r, "AWS_DEFAULT_REGION" end
  local name = self:profile_name()
  r = self:profile_value("region", name)
  if r then return r, "profile " .. name end
  local config_path = self:file_paths()
  return nil, "no AWS region configured: set AWS_REGION (or AWS_DEFAULT_REGION), pass region=, "
    .. "or add region to profile '" .. name .. "' in " .. config_path, "NoRegion"
end


---------------------------------------------------------------------------
-- Endpoints
---------------------------------------------------------------------------

local function env_suffixes(service)
  local id = SERVICE_IDS[service] or service
  local a = str_upper(str_gsub(id, "[%s%-]+", "_"))
  local b = str_upper(str_gsub(service, "[%s%-]+", "_"))
  if a == b then return { a } end
  return { a, b }
end


local function services_key(service)
  local id = SERVICE_IDS[service] or service
  return str_lower(str_gsub(id, "[%s%-]+", "_"))
end


--- DNS suffix of the partition a region belongs to.
function _M.dns_suffix(region)
  if str_find(region, "^cn%-") then return "amazonaws.com.cn" end
  if str_find(region, "^us%-isob%-") then return "sc2s.sgov.gov" end
  if str_find(region, "^us%-iso%-") then return "c2s.ic.gov" end
  return "amazonaws.com"             -- aws and aws-us-gov
end


--- The default AWS endpoint of a service in a region.
-- endpoint_for(service, region [, opts]) -> url
-- opts.fips: use the "<svc>-fips" host (where AWS offers it).
function _M.endpoint_for(service, region, opts)
  if type(service) ~= "string" then
    error("bad argument #1 to 'endpoint_for' (string expected, got " .. type(service) .. ")", 2)
  end
  local prefix = ENDPOINT_PREFIX[service] or service
  if not region then
    if service == "sts" then return "https://sts.amazonaws.com" end
    error("bad argument #2 to 'endpoint_for' (region expected for service " .. service .. ")", 2)
  end
  if opts and opts.fips then prefix = prefix .. "-fips" end
  return "https://" .. prefix .. "." .. region .. "." .. _M.dns_suffix(region)
end


--- The endpoint for a service:
-- explicit (opts.endpoints[svc], opts.endpoint_url) > AWS_ENDPOINT_URL_<SVC>
-- > AWS_ENDPOINT_URL > profile services section (per service) > profile
-- endpoint_url > default AWS endpoint.  AWS_IGNORE_CONFIGURED_ENDPOINT_URLS
-- (or the profile's ignore_configured_endpoint_urls) turns off env and
-- profile values.
-- endpoint(service [, region]) -> url, source | nil, msg, code
-- source: "explicit" | "env" | "profile" | "default"; anything but
-- "default" is a custom endpoint (S3 then uses path-style addressing).
function _M:endpoint(service, region)
  if type(service) ~= "string" then
    error("bad argument #1 to 'endpoint' (string expected, got " .. type(service) .. ")", 2)
  end
  local opts = self._opts
  local url = opts.endpoints and opts.endpoints[service] or opts.endpoint_url
  if url then return (str_gsub(url, "/+$", "")), "explicit" end

  local profile = self:profile()
  local ignore = self:env("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS")
    or profile.ignore_configured_endpoint_urls
  if not (type(ignore) == "string" and TRUE_WORDS[str_lower(ignore)]) then
    for _, suffix in ipairs(env_suffixes(service)) do
      url = self:env("AWS_ENDPOINT_URL_" .. suffix)
      if url then return (str_gsub(url, "/+$", "")), "env" end
    end
    url = self:env("AWS_ENDPOINT_URL")
    if url then return (str_gsub(url, "/+$", "")), "env" end
    local sname = profile.services
    if type(sname) == "string" and sname ~= "" then
      local sec = load_files(self).services[sname]
      local entry = sec and (sec[services_key(service)] or sec[service])
      if type(entry) == "table" and entry.endpoint_url and entry.endpoint_url ~= "" then
        return (str_gsub(entry.endpoint_url, "/+$", "")), "profile"
      end
    end
    if type(profile.endpoint_url) == "string" and profile.endpoint_url ~= "" then
      return (str_gsub(profile.endpoint_url, "/+$", "")), "profile"
    end
  end

  local r, msg, code = region, nil, nil
  if not r then r, msg, code = self:region() end
  if not r then
    if service == "sts" then return _M.endpoint_for("sts", nil), "default" end
    return nil, "endpoint for " .. service .. ": " .. msg, code
  end
  local fips = self:env("AWS_USE_FIPS_ENDPOINT") or profile.use_fips_endpoint
  return _M.endpoint_for(service, r, {
    fips = type(fips) == "string" and TRUE_WORDS[str_lower(fips)] or false,
  }), "default"
end


--- A per-service setting from the profile's nested section
-- (`s3 =\n  addressing_style = path`) -> value | nil.
function _M:service_setting(service, key)
  local sub = self:profile()[service]
  if type(sub) == "table" then return sub[key] end
  return nil
end


---------------------------------------------------------------------------
-- Retries and TLS
---------------------------------------------------------------------------

--- Retry settings: { mode = "standard", max_attempts = 3, source = ... }
-- | nil, msg, "InvalidConfig".  Default mode is standard (3 attempts).
function _M:retry_settings()
  local opts = self._opts
  local mode, mode_src = opts.retry_mode, "explicit"
  if not mode then mode, mode_src = self:env("AWS_RETRY_MODE"), "AWS_RETRY_MODE" end
  if not mode then mode, mode_src = self:profile_value("retry_mode"), "profile retry_mode" end
  if not mode then mode, mode_src = "standard", "default" end
  mode = str_lower(mode)
  if not RETRY_MODES[mode] then
    return nil, "invalid retry mode '" .. tostring(mode) .. "' from " .. mode_src
      .. " (expected standard, adaptive or legacy)", "InvalidConfig"
  end
  local n, n_src = opts.max_attempts, "explicit"
  if not n then n, n_src = self:env("AWS_MAX_ATTEMPTS"), "AWS_MAX_ATTEMPTS" end
  if not n then n, n_src = self:profile_value("max_attempts"), "profile max_attempts" end
  if n then
    local v = tonumber(n)
    if not v or v < 1 or v ~= math.floor(v) then
      return nil, "invalid max attempts '" .. tostring(n) .. "' from " .. n_src
        .. " (expected an integer >= 1)", "InvalidConfig"
    end
    n = v
  else
    n = mode == "legacy" and 5 or 3
  end
  return { mode = mode, max_attempts = n }
end


--- CA bundle path: explicit > AWS_CA_BUNDLE > profile ca_bundle > nil.
function _M:ca_bundle()
  local p = self._opts.ca_bundle or self:env("AWS_CA_BUNDLE") or self:profile_value("ca_bundle")
  if p then return expand_home(self, p) end
  return nil
end


--- A short description of where configuration came from, for messages.
function _M:describe_files()
  local c, k = self:file_paths()
  return concat({ c, k }, ", ")
end


return _M
