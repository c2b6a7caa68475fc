-- luabatch.credentials.common: what the credential chain and its providers
-- share -- the credentials table and the small helpers around it.
--
--   local common = require "luabatch.credentials.common"
--   local c, why = common.make(access_key, secret_key, token, expiration, source)
--   -- c = { access_key=, secret_key=, session_token=, expiration=epoch|nil, source= }
--   --     (metatable common.creds_mt: tostring shows <redacted> for the secrets)
--   common.nonempty(v) -> v | nil             (a string other than "")
--   common.trim(s) -> s without surrounding white space
--   common.read_file(path) -> text | nil, err
--   common.http(provider, opts) -> resp | nil, msg, code
--
-- make() returns nil, why (no "bad argument": callers add their context).
-- http() sends one request through the provider's transport; a transport
-- that raises becomes nil, msg, "EIO".

local time = require "luabatch.aws.time"

local _M = { _VERSION = "0.1.0" }

local type = type
local tostring = tostring
local pcall = pcall
local setmetatable = setmetatable
local io_open = io.open
local str_gsub = string.gsub


-- Resolved credentials print (tostring) as their source and access key id
-- only; their fields read, copy and JSON-encode as plain fields.
_M.creds_mt = { __tostring = function(c)
  return "credentials (" .. tostring(c.source) .. "): access key " .. tostring(c.access_key)
    .. ", secret key <redacted>" .. (c.session_token and ", session token <redacted>" or "")
end }


function _M.nonempty(v)
  return type(v) == "string" and v ~= "" and v or nil
end


function _M.trim(s)
  return (str_gsub(str_gsub(s, "^%s+", ""), "%s+$", ""))
end


function _M.read_file(path)
  local f, err = io_open(path, "rb")
  if not f then return nil, err end
  local s = f:read("*a")
  f:close()
  return s
end


-- Build a credentials table from raw fields, or nil, why.
function _M.make(access_key, secret_key, token, expiration, source)
  local nonempty = _M.nonempty
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
  }, _M.creds_mt)
end


-- One HTTP request through the provider's transport.
function _M.http(provider, opts)
  local t = provider:transport()
  local ok, resp, msg, code = pcall(t.request, t, opts)
  if not ok then return nil, tostring(resp), "EIO" end
  return resp, msg, code
end


return _M
