-- luabatch.credentials.sts: credentials from AWS STS (query protocol,
-- through luabatch.request): AssumeRoleWithWebIdentity and AssumeRole.
--
--   local sts = require "luabatch.credentials.sts"
--   sts.provider(provider) -> creds | false, note | nil, msg, code
--     -- web identity from AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN
--     -- (+ AWS_ROLE_SESSION_NAME)
--   sts.web_identity(provider, role_arn, token_file, session_name|nil, source)
--     -> creds | nil, msg, code
--   sts.call(provider, action, params, signing_creds|nil, target)
--     -> creds (source unset) | nil, msg, code
--   sts.session_name(provider, configured|nil) -> name
--
-- provider is a luabatch.credentials provider: its config (region, sts
-- endpoint), transport, sleep, core (xml_parse), clock and options
-- (sts_attempts, sts_timeout, role_session_name) are used, and
-- provider.static makes the signer of an AssumeRole.  Without
-- signing_creds the call goes unsigned.  Errors keep request's codes; an
-- answer without credentials is "EPARSE", a missing or empty token file
-- "ENOENT" / "InvalidIdentityToken".

local common = require "luabatch.credentials.common"

local _M = { _VERSION = "0.1.0" }

local type = type
local tostring = tostring
local require = require
local floor = math.floor

local STS_VERSION = "2011-06-15"


local function xml_child(el, name) return require("luabatch.request").xml_child(el, name) end


local function xml_text(el, name)
  local c = xml_child(el, name)
  return c and c.text or nil
end


function _M.call(self, action, params, signing_creds, target)
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
    credentials = signing_creds and self.static(signing_creds) or nil,
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
  local creds, why = common.make(xml_text(c, "AccessKeyId"), xml_text(c, "SecretAccessKey"),
    xml_text(c, "SessionToken"), xml_text(c, "Expiration"), nil)
  if not creds then
    return nil, action .. " " .. target .. ": bad credentials in the STS answer: " .. why, "EPARSE"
  end
  return creds
end


function _M.session_name(self, configured)
  return configured or self._opts.role_session_name or ("luabatch-" .. floor(self._clock()))
end


function _M.web_identity(self, role_arn, token_file, sess, source)
  local token, err = common.read_file(token_file)
  if not token then
    return nil, "web identity: cannot read token file " .. token_file .. ": " .. tostring(err),
      "ENOENT"
  end
  token = common.trim(token)
  if token == "" then
    return nil, "web identity: token file " .. token_file .. " is empty", "InvalidIdentityToken"
  end
  local creds, msg, code = _M.call(self, "AssumeRoleWithWebIdentity", {
    RoleArn = role_arn,
    RoleSessionName = _M.session_name(self, sess),
    WebIdentityToken = token,
  }, nil, role_arn)
  if not creds then return nil, "web identity: " .. msg, code end
  creds.source = source
  return creds
end


function _M.provider(self)
  local file = self:env("AWS_WEB_IDENTITY_TOKEN_FILE")
  local role = self:env("AWS_ROLE_ARN")
  if not file then return false, "AWS_WEB_IDENTITY_TOKEN_FILE not set" end
  if not role then
    return nil, "web identity: AWS_WEB_IDENTITY_TOKEN_FILE is set but AWS_ROLE_ARN is not",
      "InvalidConfig"
  end
  return _M.web_identity(self, role, file, self:env("AWS_ROLE_SESSION_NAME"), "web_identity")
end


return _M
