-- luabatch.credentials.container: the ECS / EKS Pod Identity container
-- credentials endpoint provider of the credential chain.
--
--   local container = require "luabatch.credentials.container"
--   container.provider(provider) -> creds | false, note | nil, msg, code
--
-- provider is a luabatch.credentials provider (its :env, transport, sleep
-- and options container_timeout (2), container_attempts (3) and
-- container_retry_delay (0.5) are used).  Reads
-- AWS_CONTAINER_CREDENTIALS_RELATIVE_URI (on 169.254.170.2) or _FULL_URI
-- (https, or http to loopback or the ECS/EKS agent only), with
-- AWS_CONTAINER_AUTHORIZATION_TOKEN(_FILE) as the Authorization header.
-- Neither URI set: false, note.  Errors: "InvalidConfig" (URL, host,
-- token), "ENOENT" (token file), "HTTP_<status>" or the transport's code
-- (5xx and 429 are retried), "EPARSE", "ECANCELED" (sleep interrupted).

local common = require "luabatch.credentials.common"

-- cjson.safe returns nil, err instead of raising (lua-cjson, OpenResty and
-- the executable all ship it).
local cjson = require "cjson.safe"

local _M = { _VERSION = "0.1.0" }

local type = type
local tostring = tostring
local str_find = string.find
local str_match = string.match
local str_lower = string.lower
local str_sub = string.sub
local str_gsub = string.gsub

local ECS_HOST = "http://169.254.170.2"

-- Hosts a plain-http AWS_CONTAINER_CREDENTIALS_FULL_URI may name.
local ALLOWED_HTTP_HOSTS = {
  ["localhost"] = true,
  ["169.254.170.2"] = true,       -- ECS
  ["169.254.170.23"] = true,      -- EKS Pod Identity
  ["[fd00:ec2::23]"] = true,      -- EKS Pod Identity, IPv6
  ["[::1]"] = true,
}


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


function _M.provider(self)
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
    local t, err = common.read_file(token_file)
    if not t then
      return nil, "ecs: cannot read AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE " .. token_file .. ": "
        .. tostring(err), "ENOENT"
    end
    token = common.trim(t)
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
    resp, msg, code = common.http(self, { method = "GET", url = url, headers = headers,
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
  local creds, why = common.make(doc.AccessKeyId, doc.SecretAccessKey, doc.Token, doc.Expiration,
    "ecs")
  if not creds then
    return nil, "ecs: container credentials endpoint " .. url .. ": " .. why, "EPARSE"
  end
  return creds
end


return _M
