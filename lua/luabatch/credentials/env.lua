-- luabatch.credentials.env: the environment provider of the credential
-- chain (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN or
-- AWS_SECURITY_TOKEN, AWS_CREDENTIAL_EXPIRATION).
--
--   local env = require "luabatch.credentials.env"
--   env.provider(provider) -> creds | false, note | nil, msg, code
--
-- provider is a luabatch.credentials provider (its :env(name) is read).
-- Neither key set: false, note.  Only one of them: nil, msg,
-- "PartialCredentials".

local common = require "luabatch.credentials.common"

local _M = { _VERSION = "0.1.0" }


function _M.provider(self)
  local ak = self:env("AWS_ACCESS_KEY_ID")
  local sk = self:env("AWS_SECRET_ACCESS_KEY")
  if not ak and not sk then return false, "AWS_ACCESS_KEY_ID not set" end
  if not ak then
    return nil, "env: AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not", "PartialCredentials"
  end
  if not sk then
    return nil, "env: AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not", "PartialCredentials"
  end
  return common.make(ak, sk, self:env("AWS_SESSION_TOKEN") or self:env("AWS_SECURITY_TOKEN"),
    self:env("AWS_CREDENTIAL_EXPIRATION"), "env")
end


return _M
