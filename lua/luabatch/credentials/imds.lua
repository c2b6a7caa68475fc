-- luabatch.credentials.imds: the EC2 instance metadata (IMDSv2, falling
-- back to v1 unless disabled) provider of the credential chain.
--
--   local imds = require "luabatch.credentials.imds"
--   imds.provider(provider) -> creds | false, note | nil, msg, code
--
-- provider is a luabatch.credentials provider (its :env, config profile
-- values, transport, sleep and options imds_timeout / imds_attempts are
-- used).  Settings as the AWS SDKs: AWS_EC2_METADATA_DISABLED,
-- AWS_EC2_METADATA_SERVICE_ENDPOINT(_MODE), AWS_METADATA_SERVICE_TIMEOUT
-- (1 s) and _NUM_ATTEMPTS (1), AWS_EC2_METADATA_V1_DISABLED, or their
-- profile keys.  A last resort: no endpoint, no token or no role is
-- false, note; only a role whose credentials cannot be read is an error
-- ("HTTP_<status>", "EPARSE", "IMDSError"), and an interrupted sleep is
-- "ECANCELED".

local common = require "luabatch.credentials.common"

-- cjson.safe returns nil, err instead of raising.
local cjson = require "cjson.safe"

local _M = { _VERSION = "0.1.0" }

local type = type
local tostring = tostring
local tonumber = tonumber
local str_match = string.match
local str_lower = string.lower
local str_gsub = string.gsub

local IMDS_ENDPOINT = "http://169.254.169.254"
local IMDS_ENDPOINT_V6 = "http://[fd00:ec2::254]"
local IMDS_TOKEN_TTL = "21600"

local TRUE_WORDS = { ["true"] = true, ["1"] = true, yes = true, on = true }


local function is_true(v)
  return type(v) == "string" and TRUE_WORDS[str_lower(v)] == true
end


function _M.provider(self)
  local cfg = self._cfg
  local trim = common.trim
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
      resp, msg, code = common.http(self, { method = method, url = base .. path, headers = headers,
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
  local creds, why = common.make(doc.AccessKeyId, doc.SecretAccessKey, doc.Token, doc.Expiration,
    "imds")
  if not creds then return nil, where .. ": credentials of role " .. role .. ": " .. why, "EPARSE" end
  return creds
end


return _M
