-- luabatch.credentials.files: the profile provider of the credential chain
-- -- the shared config and credentials files (through luabatch.config):
-- static keys, role_arn (web_identity_token_file, source_profile chains,
-- credential_source) and credential_process.
--
--   local files = require "luabatch.credentials.files"
--   files.provider(provider) -> creds | false, note | nil, msg, code
--
-- provider is a luabatch.credentials provider (its config: profile name,
-- profiles, describe_files; :env, transport, sleep, options for the
-- providers a role reaches).  A profile absent or without credentials is
-- false, note, unless it was named explicitly ("ProfileNotFound").
-- Errors: "PartialCredentials", "InvalidConfig" (loops, chains longer than
-- 5, a role with no source), "NotSupported" (mfa_serial, SSO),
-- "CredentialProcessError", "NoCredentials" (a credential_source found
-- nothing), and STS's (luabatch.credentials.sts).

local common = require "luabatch.credentials.common"
local env = require "luabatch.credentials.env"
local container = require "luabatch.credentials.container"
local imds = require "luabatch.credentials.imds"
local sts = require "luabatch.credentials.sts"

-- cjson.safe returns nil, err instead of raising.
local cjson = require "cjson.safe"

local _M = { _VERSION = "0.1.0" }

local type = type
local tostring = tostring
local io_popen = io.popen
local str_match = string.match

local make_creds = common.make
local nonempty = common.nonempty

local MAX_ROLE_CHAIN = 5

-- credential_source values and the providers they name.
local CREDENTIAL_SOURCES = {
  Environment = env.provider,
  Ec2InstanceMetadata = imds.provider,
  EcsContainer = container.provider,
}


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
    return sts.web_identity(self, p.role_arn,
      self._cfg.expand_home(self._cfg, p.web_identity_token_file),
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
    local fn = CREDENTIAL_SOURCES[cs]
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
    RoleSessionName = sts.session_name(self, p.role_session_name),
  }
  if p.external_id then params.ExternalId = p.external_id end
  if p.duration_seconds then params.DurationSeconds = p.duration_seconds end
  local creds
  creds, msg, code = sts.call(self, "AssumeRole", params, source, p.role_arn)
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


function _M.provider(self)
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


return _M
